/*
 * check_form.c: the specification of form.c, urlencoded parsing, canonical
 * strings and encoding, including known answers from real signed callbacks.
 */
#include <check.h>
#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "wire/form.h"

#ifndef VECTORS_DIR
#define VECTORS_DIR ""
#endif

/* Stand-in for an output pointer that must not be written on failure. */
static char untouched_mark;
#define UNTOUCHED ((struct form *)(void *)&untouched_mark)

static char err[256];

/* Parse a C string with the given limits; fails the test on error. */
static struct form *parse_lim(const char *body, const struct form_limits *lim)
{
    struct form *f = NULL;
    int r;

    err[0] = '\0';
    r = form_parse(body, strlen(body), lim, &f, err, sizeof(err));
    ck_assert_msg(r == 0, "parse \"%.80s\": %d (%s)", body, r, err);
    ck_assert_ptr_nonnull(f);
    return f;
}

/* Parse a C string with the default limits. */
static struct form *parse(const char *body)
{
    return parse_lim(body, NULL);
}

/* Assert that parsing len bytes fails with want, leaving the output alone;
 * err holds the reason afterwards. */
static void parse_fails_n(const char *body, size_t len, const struct form_limits *lim,
                          int want)
{
    struct form *f = UNTOUCHED;
    int r;

    err[0] = '\0';
    r = form_parse(body, len, lim, &f, err, sizeof(err));
    ck_assert_msg(r == want, "parse \"%.80s\": %d, want %d", body, r, want);
    ck_assert_msg(f == UNTOUCHED, "parse \"%.80s\": output written on failure", body);
    ck_assert_msg(err[0] != '\0', "parse \"%.80s\": no reason given", body);
}

/* Assert that parsing a C string fails with want. */
static void parse_fails(const char *body, int want)
{
    parse_fails_n(body, strlen(body), NULL, want);
}

/* Assert that key is present with exactly the n bytes of want. */
static void value_is(const struct form *f, const char *key, const char *want, size_t n)
{
    size_t len = (size_t)-1;
    const char *v = form_get(f, key, &len);

    ck_assert_msg(v != NULL, "field '%s' missing", key);
    ck_assert_msg(len == n, "field '%s': length %zu, want %zu", key, len, n);
    ck_assert_msg(memcmp(v, want, n) == 0, "field '%s': wrong bytes", key);
    ck_assert_msg(v[n] == '\0', "field '%s': not NUL-terminated", key);
}

/* Assert that key is present with the C string want. */
static void value_eq(const struct form *f, const char *key, const char *want)
{
    value_is(f, key, want, strlen(want));
}

/* A malloc'd string of n copies of unit, then tail. */
static char *repeat(const char *head, const char *unit, size_t n, const char *tail)
{
    size_t hl = strlen(head), ul = strlen(unit), tl = strlen(tail), i;
    char *s = malloc(hl + ul * n + tl + 1);

    ck_assert_ptr_nonnull(s);
    memcpy(s, head, hl);
    for (i = 0; i < n; i++)
        memcpy(s + hl + i * ul, unit, ul);
    memcpy(s + hl + n * ul, tail, tl + 1);
    return s;
}

/* A malloc'd body of n distinct fields "f0=v&f1=v&...". */
static char *n_fields(size_t n)
{
    char *s = malloc(n * 16 + 1);
    size_t i, o = 0;

    ck_assert_ptr_nonnull(s);
    s[0] = '\0';
    for (i = 0; i < n; i++)
        o += (size_t)sprintf(s + o, "%sf%zu=v", i ? "&" : "", i);
    return s;
}

/* The canonical string of f under rule; fails the test on error. */
static char *canon(const struct form *f, const struct form_canon_rule *rule, size_t *len)
{
    char *s = NULL;
    size_t n = (size_t)-1;

    ck_assert_int_eq(form_canonical(f, rule, &s, &n), 0);
    ck_assert_ptr_nonnull(s);
    ck_assert_uint_eq(n, strlen(s));
    if (len)
        *len = n;
    return s;
}

/* Assert the canonical string of body under rule. */
static void canon_is(const char *body, const struct form_canon_rule *rule,
                     const char *want)
{
    struct form *f = parse(body);
    char *s = canon(f, rule, NULL);

    ck_assert_str_eq(s, want);
    free(s);
    form_free(f);
}

static const char *const baidu_exclude[] = {"rsaSign", "sign", "sign_type", NULL};
static const char *const v1_exclude[] = {"sign", "sign_type", NULL};
static const char *const sign_only[] = {"sign", NULL};

START_TEST(decode_plus_and_escapes)
{
    struct form *f = parse("a=1+2&b=%2B&c=a%2Bb+c&d+e=x&f=%20+");

    value_eq(f, "a", "1 2");
    value_eq(f, "b", "+");
    value_eq(f, "c", "a+b c");
    value_eq(f, "d e", "x");
    value_eq(f, "f", "  ");
    ck_assert_uint_eq(form_count(f), 5);
    form_free(f);
}
END_TEST

START_TEST(decode_hex_case)
{
    struct form *f = parse("u=%E6%B5%8B&l=%e6%b5%8b&m=%eA%Fb&p=%25%2541");

    value_eq(f, "u", "\xe6\xb5\x8b");
    value_eq(f, "l", "\xe6\xb5\x8b");
    value_eq(f, "m", "\xea\xfb");
    /* decoded exactly once: %25 is '%', and the result is not decoded again */
    value_eq(f, "p", "%%41");
    form_free(f);
}
END_TEST

START_TEST(decode_raw_bytes_kept)
{
    struct form *f = parse("a=\xe4\xb8\xad&b=x=y;z/?:@~");

    value_eq(f, "a", "\xe4\xb8\xad");
    value_eq(f, "b", "x=y;z/?:@~");
    form_free(f);
}
END_TEST

START_TEST(bad_escapes)
{
    parse_fails("subject=abcd%G1", -EINVAL);
    ck_assert_str_eq(err, "field 'subject': bad percent-encoding at byte 12");
    parse_fails("a=%1G", -EINVAL);
    parse_fails("a=%4", -EINVAL);
    ck_assert_str_eq(err, "field 'a': bad percent-encoding at byte 2");
    parse_fails("a=%", -EINVAL);
    parse_fails("a=%%41", -EINVAL);
    parse_fails("a=%4&b=1", -EINVAL);
    parse_fails("a=1&b=x%", -EINVAL);
    ck_assert_str_eq(err, "field 'b': bad percent-encoding at byte 7");
    parse_fails("a=%+1", -EINVAL);
    parse_fails("a=% 1", -EINVAL);
    parse_fails("x=1&%G1=1", -EINVAL);
    ck_assert_ptr_nonnull(strstr(err, "byte 4"));
    parse_fails("k%=1", -EINVAL);
}
END_TEST

START_TEST(split_at_first_equals)
{
    struct form *f = parse("sign=abc==&b==&c=x=y=z&d%3De=1");

    value_eq(f, "sign", "abc==");
    value_eq(f, "b", "=");
    value_eq(f, "c", "x=y=z");
    value_eq(f, "d=e", "1");
    ck_assert_ptr_null(form_get(f, "d", NULL));
    form_free(f);
}
END_TEST

START_TEST(repeated_key)
{
    parse_fails("sign=1&a=2&sign=3", -EEXIST);
    ck_assert_str_eq(err, "field 'sign' occurs twice");
    parse_fails("a=1&a=1", -EEXIST);
    parse_fails("a=&a=", -EEXIST);
    parse_fails("a=1&%61=2", -EEXIST);
    ck_assert_str_eq(err, "field 'a' occurs twice");
    parse_fails("a+b=1&a%20b=2", -EEXIST);
}
END_TEST

START_TEST(empty_key)
{
    parse_fails("=1", -EINVAL);
    ck_assert_ptr_nonnull(strstr(err, "empty key"));
    parse_fails("a=1&=2", -EINVAL);
    parse_fails("=", -EINVAL);
}
END_TEST

START_TEST(pair_without_equals)
{
    parse_fails("a", -EINVAL);
    parse_fails("a=1&notify_id", -EINVAL);
    ck_assert_ptr_nonnull(strstr(err, "'notify_id'"));
    ck_assert_ptr_nonnull(strstr(err, "without '='"));
    parse_fails("a=1&b&c=2", -EINVAL);
    parse_fails("a%3D1", -EINVAL);
}
END_TEST

START_TEST(empty_values_kept)
{
    struct form *f = parse("promoDetail=&b=2&returnData=");
    const struct form_field *fd;

    ck_assert_uint_eq(form_count(f), 3);
    value_eq(f, "promoDetail", "");
    value_eq(f, "returnData", "");
    fd = form_at(f, 2);
    ck_assert_str_eq(fd->key, "returnData");
    ck_assert_uint_eq(fd->value_len, 0);
    ck_assert_ptr_null(form_get(f, "missing", NULL));
    form_free(f);
}
END_TEST

START_TEST(empty_segments)
{
    struct form *f = parse("&&a=1&&&b=2&");

    ck_assert_uint_eq(form_count(f), 2);
    ck_assert_str_eq(form_at(f, 0)->key, "a");
    ck_assert_str_eq(form_at(f, 1)->key, "b");
    form_free(f);
    f = parse("");
    ck_assert_uint_eq(form_count(f), 0);
    ck_assert_ptr_null(form_at(f, 0));
    form_free(f);
    f = parse("&&&");
    ck_assert_uint_eq(form_count(f), 0);
    form_free(f);
    f = NULL;
    ck_assert_int_eq(form_parse(NULL, 0, NULL, &f, err, sizeof(err)), 0);
    ck_assert_uint_eq(form_count(f), 0);
    form_free(f);
}
END_TEST

START_TEST(nul_in_value)
{
    static const char raw[] = "a=x\0y&b=2";
    struct form *f = parse("a=x%00y&b=%00");
    const struct form_field *fd;

    value_is(f, "a", "x\0y", 3);
    value_is(f, "b", "\0", 1);
    fd = form_at(f, 0);
    ck_assert_uint_eq(fd->value_len, 3);
    form_free(f);
    ck_assert_int_eq(form_parse(raw, sizeof(raw) - 1, NULL, &f, err, sizeof(err)), 0);
    value_is(f, "a", "x\0y", 3);
    value_eq(f, "b", "2");
    form_free(f);
}
END_TEST

START_TEST(nul_in_key)
{
    static const char raw[] = "a\0b=1";

    parse_fails("a%00b=1", -EINVAL);
    ck_assert_ptr_nonnull(strstr(err, "NUL"));
    parse_fails("x=1&%00=1", -EINVAL);
    parse_fails_n(raw, sizeof(raw) - 1, NULL, -EINVAL);
}
END_TEST

START_TEST(limit_fields)
{
    struct form_limits two = {.max_fields = 2};
    char *s = n_fields(128);
    struct form *f = parse(s);

    ck_assert_uint_eq(form_count(f), 128);
    ck_assert_str_eq(form_at(f, 127)->key, "f127");
    value_eq(f, "f0", "v");
    form_free(f);
    free(s);
    s = n_fields(129);
    parse_fails(s, -E2BIG);
    ck_assert_str_eq(err, "too many fields (max 128)");
    free(s);
    /* empty segments are not fields */
    f = parse_lim("a=1&&&b=2&", &two);
    form_free(f);
    parse_fails_n("a=1&b=2&c=3", 11, &two, -E2BIG);
    ck_assert_str_eq(err, "too many fields (max 2)");
}
END_TEST

START_TEST(limit_key)
{
    struct form_limits three = {.max_key = 3};
    char *s = repeat("", "k", 64, "=1");
    struct form *f = parse(s);

    ck_assert_uint_eq(form_at(f, 0)->key_len, 64);
    form_free(f);
    free(s);
    s = repeat("", "k", 65, "=1");
    parse_fails(s, -E2BIG);
    ck_assert_ptr_nonnull(strstr(err, "key longer than 64 bytes"));
    free(s);
    /* the bound is on decoded bytes */
    s = repeat("", "%6B", 64, "=1");
    f = parse(s);
    ck_assert_uint_eq(form_at(f, 0)->key_len, 64);
    form_free(f);
    free(s);
    s = repeat("", "%6B", 65, "=1");
    parse_fails(s, -E2BIG);
    free(s);
    form_free(parse_lim("abc=1", &three));
    parse_fails_n("abcd=1", 6, &three, -E2BIG);
}
END_TEST

START_TEST(limit_value)
{
    struct form_limits four = {.max_value = 4};
    char *s = repeat("subject=", "x", 16384, "");
    struct form *f = parse(s);

    ck_assert_uint_eq(form_at(f, 0)->value_len, 16384);
    form_free(f);
    free(s);
    s = repeat("subject=", "x", 16385, "");
    parse_fails(s, -E2BIG);
    ck_assert_str_eq(err, "field 'subject': value longer than 16384 bytes");
    free(s);
    s = repeat("a=", "%41", 16384, "&b=2");
    f = parse(s);
    ck_assert_uint_eq(form_at(f, 0)->value_len, 16384);
    value_eq(f, "b", "2");
    form_free(f);
    free(s);
    s = repeat("a=", "+", 16385, "");
    parse_fails(s, -E2BIG);
    free(s);
    form_free(parse_lim("a=abcd", &four));
    parse_fails_n("a=abcde", 7, &four, -E2BIG);
}
END_TEST

START_TEST(limits_zero_means_default)
{
    struct form_limits zero = {0, 0, 0};
    char *s = n_fields(129);

    parse_fails_n(s, strlen(s), &zero, -E2BIG);
    ck_assert_str_eq(err, "too many fields (max 128)");
    free(s);
    s = n_fields(128);
    form_free(parse_lim(s, &zero));
    free(s);
}
END_TEST

START_TEST(large_body)
{
    /* a body just under 64 KiB: four 16000-byte values */
    char *a = repeat("", "x", 16000, "");
    char *body = malloc(4 * (16000 + 3) + 1);
    struct form *f;

    ck_assert_ptr_nonnull(body);
    sprintf(body, "a=%s&b=%s&c=%s&d=%s", a, a, a, a);
    ck_assert_uint_gt(strlen(body), 64000);
    ck_assert_uint_le(strlen(body), 65536);
    f = parse(body);
    ck_assert_uint_eq(form_count(f), 4);
    ck_assert_uint_eq(form_at(f, 3)->value_len, 16000);
    form_free(f);
    free(body);
    free(a);
}
END_TEST

START_TEST(error_reporting)
{
    struct form *f = UNTOUCHED;
    char small[12];

    /* no error buffer at all */
    ck_assert_int_eq(form_parse("a", 1, NULL, &f, NULL, 0), -EINVAL);
    ck_assert_int_eq(form_parse("a=1&a=2", 7, NULL, &f, NULL, 99), -EEXIST);
    ck_assert_ptr_eq(f, UNTOUCHED);
    /* a short buffer gets a truncated, terminated reason */
    ck_assert_int_eq(form_parse("sign=1&sign=2", 13, NULL, &f, small, sizeof(small)),
                     -EEXIST);
    ck_assert_uint_eq(strlen(small), sizeof(small) - 1);
    /* hostile keys cannot put control bytes into the reason */
    parse_fails("a%0Ab=1&a%0Ab=2", -EEXIST);
    ck_assert_str_eq(err, "field 'a\\x0ab' occurs twice");
    ck_assert_ptr_null(strchr(err, '\n'));
    ck_assert_int_eq(form_parse("a=1", 3, NULL, NULL, err, sizeof(err)), -EINVAL);
    ck_assert_int_eq(form_parse(NULL, 3, NULL, &f, err, sizeof(err)), -EINVAL);
}
END_TEST

START_TEST(add_fields)
{
    struct form *f = form_new();
    const struct form_field *fd;

    ck_assert_ptr_nonnull(f);
    ck_assert_uint_eq(form_count(f), 0);
    ck_assert_int_eq(form_add(f, "b", 1, "2", 1), 0);
    ck_assert_int_eq(form_add(f, "a", 1, "x\0y", 3), 0);
    ck_assert_int_eq(form_add(f, "c", 1, NULL, 0), 0);
    ck_assert_int_eq(form_add(f, "b", 1, "3", 1), -EEXIST);
    ck_assert_int_eq(form_add(f, "bc", 1, "3", 1), -EEXIST);
    ck_assert_int_eq(form_add(f, "", 0, "3", 1), -EINVAL);
    ck_assert_int_eq(form_add(f, "d\0e", 3, "3", 1), -EINVAL);
    ck_assert_int_eq(form_add(f, "d", 1, NULL, 1), -EINVAL);
    ck_assert_uint_eq(form_count(f), 3);
    fd = form_at(f, 0);
    ck_assert_str_eq(fd->key, "b");
    ck_assert_uint_eq(fd->key_len, 1);
    ck_assert_str_eq(form_at(f, 1)->key, "a");
    ck_assert_ptr_null(form_at(f, 3));
    value_eq(f, "b", "2");
    value_is(f, "a", "x\0y", 3);
    value_eq(f, "c", "");
    f = form_free(f);
    ck_assert_ptr_null(f);
}
END_TEST

START_TEST(add_to_parsed)
{
    struct form *f = parse("sign=1&a=2");
    size_t i;

    ck_assert_int_eq(form_add(f, "sign", 4, "x", 1), -EEXIST);
    /* enough fields to force the arrays to grow */
    for (i = 0; i < 100; i++) {
        char k[16];
        int n = sprintf(k, "k%zu", i);
        ck_assert_int_eq(form_add(f, k, (size_t)n, k, (size_t)n), 0);
    }
    ck_assert_uint_eq(form_count(f), 102);
    value_eq(f, "sign", "1");
    value_eq(f, "k99", "k99");
    ck_assert_str_eq(form_at(f, 101)->key, "k99");
    form_free(f);
}
END_TEST

START_TEST(null_safety)
{
    ck_assert_ptr_null(form_free(NULL));
    ck_assert_uint_eq(form_count(NULL), 0);
    ck_assert_ptr_null(form_at(NULL, 0));
    ck_assert_ptr_null(form_get(NULL, "a", NULL));
    ck_assert_int_eq(form_add(NULL, "a", 1, "b", 1), -EINVAL);
}
END_TEST

START_TEST(canonical_baidu)
{
    const struct form_canon_rule rule = {baidu_exclude, 0, NULL, 0};

    canon_is("totalMoney=100&rsaSign=QUJD%2B%3D&promoDetail=&dealId=470193086"
             "&sign=x&sign_type=RSA&tpOrderId=T1&returnData=&status=2",
             &rule,
             "dealId=470193086&promoDetail=&returnData=&status=2&totalMoney=100"
             "&tpOrderId=T1");
}
END_TEST

START_TEST(canonical_alipay_v1)
{
    const struct form_canon_rule rule = {v1_exclude, 1, NULL, 0};

    canon_is("trade_status=TRADE_SUCCESS&sign=abc%3D%3D&sign_type=RSA2&passback_params="
             "&subject=a%2Bb+c&app_id=2021&body=",
             &rule, "app_id=2021&subject=a+b c&trade_status=TRADE_SUCCESS");
}
END_TEST

START_TEST(canonical_alipay_keep_sign_type)
{
    const struct form_canon_rule rule = {sign_only, 1, NULL, 0};

    canon_is("notify_type=servicemarket_order_notify&sign=abc%3D%3D&sign_type=RSA2"
             "&merchant_pid=&app_id=2021",
             &rule, "app_id=2021&notify_type=servicemarket_order_notify&sign_type=RSA2");
}
END_TEST

START_TEST(canonical_gateway_md5)
{
    const struct form_canon_rule key = {v1_exclude, 1, "&key=SECRET", 11};
    const struct form_canon_rule plain = {v1_exclude, 1, "SECRET", 6};
    const char *body = "total_amount=0.01&sign=ABC&sign_type=MD5&out_trade_no=T1"
                       "&pay_time=2024-01-02+03%3A04%3A05&attach=";

    canon_is(body, &key,
             "out_trade_no=T1&pay_time=2024-01-02 03:04:05&total_amount=0.01"
             "&key=SECRET");
    canon_is(body, &plain,
             "out_trade_no=T1&pay_time=2024-01-02 03:04:05&total_amount=0.01SECRET");
}
END_TEST

START_TEST(canonical_sort_order)
{
    static const char *const keys[] = {"ab", "a_b", "\xc3\xa9", "a", "b", "B", "A", "aa"};
    const char *want = "A=A&B=B&a=a&a_b=a_b&aa=aa&ab=ab&b=b&\xc3\xa9=\xc3\xa9";
    struct form *fwd = form_new(), *rev = form_new();
    size_t n = sizeof(keys) / sizeof(keys[0]), i;
    char *s;

    for (i = 0; i < n; i++) {
        ck_assert_int_eq(
            form_add(fwd, keys[i], strlen(keys[i]), keys[i], strlen(keys[i])), 0);
        ck_assert_int_eq(form_add(rev, keys[n - 1 - i], strlen(keys[n - 1 - i]),
                                  keys[n - 1 - i], strlen(keys[n - 1 - i])),
                         0);
    }
    s = canon(fwd, NULL, NULL);
    ck_assert_str_eq(s, want);
    free(s);
    s = canon(rev, NULL, NULL);
    ck_assert_str_eq(s, want);
    free(s);
    form_free(fwd);
    form_free(rev);
    canon_is("a_b=2&ab=3&a=1&B=0", NULL, "B=0&a=1&a_b=2&ab=3");
}
END_TEST

START_TEST(canonical_not_reencoded)
{
    const struct form_canon_rule keep = {NULL, 0, NULL, 0};
    struct form *f = parse("a=%26%3D%25&b=x%00y&c=");
    size_t n;
    char *s = NULL;

    ck_assert_int_eq(form_canonical(f, &keep, &s, &n), 0);
    ck_assert_uint_eq(n, 14);
    ck_assert_int_eq(memcmp(s, "a=&=%&b=x\0y&c=", 14), 0);
    ck_assert_int_eq(s[n], '\0');
    free(s);
    form_free(f);
}
END_TEST

START_TEST(canonical_empty)
{
    const struct form_canon_rule plain = {NULL, 0, "SECRET", 6};
    const struct form_canon_rule v1 = {v1_exclude, 1, NULL, 0};
    struct form *f = form_new();
    size_t n = 99;
    char *s = canon(f, &v1, &n);

    ck_assert_uint_eq(n, 0);
    ck_assert_str_eq(s, "");
    free(s);
    s = canon(f, &plain, &n);
    ck_assert_str_eq(s, "SECRET");
    free(s);
    form_free(f);
    canon_is("sign=1&sign_type=RSA2&x=", &v1, "");
}
END_TEST

START_TEST(encode_exact)
{
    struct form *f = form_new();
    char *s = NULL;
    size_t n = 0;

    ck_assert_int_eq(form_add(f, "a b", 3, "x-._*~+&=/\xe6\x0a", 12), 0);
    ck_assert_int_eq(form_add(f, "biz_content", 11, "{\"k\":\"v 1\"}", 11), 0);
    ck_assert_int_eq(form_add(f, "e", 1, "", 0), 0);
    ck_assert_int_eq(form_add(f, "z", 1, "\0", 1), 0);
    ck_assert_int_eq(form_encode(f, &s, &n), 0);
    ck_assert_str_eq(s, "a+b=x-._*%7E%2B%26%3D%2F%E6%0A"
                        "&biz_content=%7B%22k%22%3A%22v+1%22%7D&e=&z=%00");
    ck_assert_uint_eq(n, strlen(s));
    free(s);
    form_free(f);
    f = form_new();
    ck_assert_int_eq(form_encode(f, &s, &n), 0);
    ck_assert_str_eq(s, "");
    ck_assert_uint_eq(n, 0);
    free(s);
    form_free(f);
}
END_TEST

/* Assert that a and b hold the same fields in the same order. */
static void same_fields(const struct form *a, const struct form *b)
{
    size_t i;

    ck_assert_uint_eq(form_count(a), form_count(b));
    for (i = 0; i < form_count(a); i++) {
        const struct form_field *x = form_at(a, i), *y = form_at(b, i);
        ck_assert_uint_eq(x->key_len, y->key_len);
        ck_assert_int_eq(memcmp(x->key, y->key, x->key_len), 0);
        ck_assert_uint_eq(x->value_len, y->value_len);
        ck_assert_int_eq(memcmp(x->value, y->value, x->value_len), 0);
    }
}

/* Encode f, parse the result back and compare. */
static void round_trip(const struct form *f)
{
    struct form *back = NULL;
    char *s = NULL;
    size_t n;

    ck_assert_int_eq(form_encode(f, &s, &n), 0);
    ck_assert_int_eq(form_parse(s, n, NULL, &back, err, sizeof(err)), 0);
    same_fields(f, back);
    form_free(back);
    free(s);
}

START_TEST(encode_round_trip)
{
    struct form *f = form_new();
    char all[256], keys[255];
    int i;

    for (i = 0; i < 256; i++)
        all[i] = (char)i;
    for (i = 0; i < 255; i++)
        keys[i] = (char)(i + 1);
    ck_assert_int_eq(form_add(f, "all", 3, all, sizeof(all)), 0);
    ck_assert_int_eq(form_add(f, keys, 63, "k1", 2), 0);
    ck_assert_int_eq(form_add(f, keys + 63, 64, "k2", 2), 0);
    ck_assert_int_eq(form_add(f, keys + 127, 64, "k3", 2), 0);
    ck_assert_int_eq(form_add(f, keys + 191, 64, "", 0), 0);
    ck_assert_int_eq(form_add(f, "sign", 4, "abc+/==", 7), 0);
    round_trip(f);
    form_free(f);
    f = parse("subject=yansongda%2B%E6%B5%8B%E8%AF%95+-+1&sign=a%2Bb%3D%3D&e=");
    round_trip(f);
    form_free(f);
}
END_TEST

/* Where the vectors live: $VECTORS_DIR, else the build-time default. */
static const char *vectors_dir(void)
{
    const char *d = getenv("VECTORS_DIR");

    return d && *d ? d : VECTORS_DIR;
}

/* The whole of a file, NUL-terminated, or NULL. */
static char *slurp(const char *path)
{
    FILE *fp = fopen(path, "rb");
    char *buf = NULL, *nb;
    size_t len = 0, cap = 0, got;

    if (!fp)
        return NULL;
    do {
        if (cap - len < 4096) {
            cap = cap ? cap * 2 : 65536;
            nb = realloc(buf, cap + 1);
            ck_assert_ptr_nonnull(nb);
            buf = nb;
        }
        got = fread(buf + len, 1, cap - len, fp);
        len += got;
    } while (got > 0);
    fclose(fp);
    buf[len] = '\0';
    return buf;
}

/* Whether a vector of this kind carries a signed form. */
static int form_kind(const char *kind)
{
    static const char *const kinds[] = {"alipay_async_notify", "alipay_sync_return",
                                        "alipay_sdk_sign_fixture",
                                        "baidu_cashier_notify"};
    size_t i;

    for (i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++)
        if (strcmp(kind, kinds[i]) == 0)
            return 1;
    return 0;
}

/* A string member of a JSON object; fails the test when absent. */
static const char *json_str(const cJSON *o, const char *name, const char *file)
{
    const cJSON *m = cJSON_GetObjectItemCaseSensitive(o, name);

    ck_assert_msg(cJSON_IsString(m), "%s: no string '%s'", file, name);
    return m->valuestring;
}

/* Assert that the parsed form equals inputs.fields, in order. */
static void vector_fields(const struct form *f, const cJSON *fields, const char *file)
{
    const cJSON *pair;
    size_t i = 0;

    ck_assert_msg(cJSON_IsArray(fields), "%s: no inputs.fields", file);
    ck_assert_msg(form_count(f) == (size_t)cJSON_GetArraySize(fields),
                  "%s: %zu fields parsed, %d expected", file, form_count(f),
                  cJSON_GetArraySize(fields));
    cJSON_ArrayForEach(pair, fields)
    {
        const struct form_field *fd = form_at(f, i++);
        const cJSON *jk = cJSON_GetArrayItem(pair, 0), *jv = cJSON_GetArrayItem(pair, 1);
        const char *k, *v;
        ck_assert_msg(cJSON_IsString(jk) && cJSON_IsString(jv), "%s: malformed field %zu",
                      file, i);
        k = jk->valuestring;
        v = jv->valuestring;
        ck_assert_msg(strcmp(fd->key, k) == 0, "%s: field %zu is '%s', want '%s'", file,
                      i, fd->key, k);
        ck_assert_msg(fd->value_len == strlen(v) &&
                          memcmp(fd->value, v, fd->value_len) == 0,
                      "%s: field '%s' has the wrong value", file, k);
    }
}

/* Canonical string of f under the vector's canonicalization object. */
static char *vector_canon(const struct form *f, const cJSON *c, const char *file,
                          size_t *len)
{
    const cJSON *ex = cJSON_GetObjectItemCaseSensitive(c, "exclude_keys");
    const cJSON *drop = cJSON_GetObjectItemCaseSensitive(c, "drop_empty_values");
    const char *excl[16];
    struct form_canon_rule rule = {excl, 0, NULL, 0};
    const cJSON *k;
    size_t n = 0;
    char *s;

    ck_assert_msg(cJSON_IsArray(ex), "%s: no canonicalization.exclude_keys", file);
    ck_assert_msg(cJSON_IsBool(drop), "%s: no canonicalization.drop_empty_values", file);
    cJSON_ArrayForEach(k, ex)
    {
        ck_assert_msg(cJSON_IsString(k) && n < 15, "%s: bad exclude_keys", file);
        excl[n++] = k->valuestring;
    }
    excl[n] = NULL;
    rule.drop_empty = cJSON_IsTrue(drop);
    s = canon(f, &rule, len);
    return s;
}

/* Check one vector file; returns 1 when it was a form vector. */
static int check_vector(const char *dir, const char *name)
{
    char path[4096];
    char *text, *s;
    cJSON *j, *in, *ess;
    struct form *f = NULL;
    const char *body;
    size_t n;
    int r;

    snprintf(path, sizeof(path), "%s/%s", dir, name);
    text = slurp(path);
    ck_assert_msg(text != NULL, "cannot read %s", path);
    j = cJSON_Parse(text);
    ck_assert_msg(j != NULL, "%s: not JSON", name);
    free(text);
    if (!form_kind(json_str(j, "kind", name))) {
        cJSON_Delete(j);
        return 0;
    }
    in = cJSON_GetObjectItemCaseSensitive(j, "inputs");
    body = json_str(in, "form_body", name);
    r = form_parse(body, strlen(body), NULL, &f, err, sizeof(err));
    ck_assert_msg(r == 0, "%s: form_parse %d (%s)", name, r, err);
    vector_fields(f, cJSON_GetObjectItemCaseSensitive(in, "fields"), name);
    s = vector_canon(f, cJSON_GetObjectItemCaseSensitive(j, "canonicalization"), name,
                     &n);
    ess = cJSON_GetObjectItemCaseSensitive(j, "expected_signed_string");
    if (ess) {
        ck_assert_msg(cJSON_IsString(ess), "%s: bad expected_signed_string", name);
        ck_assert_msg(n == strlen(ess->valuestring) &&
                          memcmp(s, ess->valuestring, n) == 0,
                      "%s: canonical string differs:\n got  %s\n want %s", name, s,
                      ess->valuestring);
    }
    round_trip(f);
    free(s);
    form_free(f);
    cJSON_Delete(j);
    return 1;
}

/* Whether a directory entry names a JSON file. */
static int is_json(const char *name)
{
    size_t n = strlen(name);

    return n > 5 && strcmp(name + n - 5, ".json") == 0;
}

START_TEST(known_answer_vectors)
{
    const char *dir = vectors_dir();
    DIR *d = *dir ? opendir(dir) : NULL;
    struct dirent *de;
    int checked = 0;

    /* The real vectors are part of the suite: without them it fails. */
    ck_assert_msg(d != NULL,
                  "cannot open the vectors directory '%s' (%s): the real platform-signed "
                  "vectors are required (set VECTORS_DIR to ../shared/vectors)",
                  dir, *dir ? strerror(errno) : "not configured");
    while ((de = readdir(d)) != NULL)
        if (is_json(de->d_name))
            checked += check_vector(dir, de->d_name);
    closedir(d);
    ck_assert_msg(checked > 0, "no form vectors in %s", dir);
    printf("note: %d form vectors checked in %s\n", checked, dir);
}
END_TEST

/* All form tests. */
static Suite *form_suite(void)
{
    Suite *s = suite_create("form");
    TCase *parse_tc = tcase_create("parse");
    TCase *build_tc = tcase_create("build");
    TCase *canon_tc = tcase_create("canonical");
    TCase *kat_tc = tcase_create("vectors");

    tcase_add_test(parse_tc, decode_plus_and_escapes);
    tcase_add_test(parse_tc, decode_hex_case);
    tcase_add_test(parse_tc, decode_raw_bytes_kept);
    tcase_add_test(parse_tc, bad_escapes);
    tcase_add_test(parse_tc, split_at_first_equals);
    tcase_add_test(parse_tc, repeated_key);
    tcase_add_test(parse_tc, empty_key);
    tcase_add_test(parse_tc, pair_without_equals);
    tcase_add_test(parse_tc, empty_values_kept);
    tcase_add_test(parse_tc, empty_segments);
    tcase_add_test(parse_tc, nul_in_value);
    tcase_add_test(parse_tc, nul_in_key);
    tcase_add_test(parse_tc, limit_fields);
    tcase_add_test(parse_tc, limit_key);
    tcase_add_test(parse_tc, limit_value);
    tcase_add_test(parse_tc, limits_zero_means_default);
    tcase_add_test(parse_tc, large_body);
    tcase_add_test(parse_tc, error_reporting);
    tcase_add_test(build_tc, add_fields);
    tcase_add_test(build_tc, add_to_parsed);
    tcase_add_test(build_tc, null_safety);
    tcase_add_test(build_tc, encode_exact);
    tcase_add_test(build_tc, encode_round_trip);
    tcase_add_test(canon_tc, canonical_baidu);
    tcase_add_test(canon_tc, canonical_alipay_v1);
    tcase_add_test(canon_tc, canonical_alipay_keep_sign_type);
    tcase_add_test(canon_tc, canonical_gateway_md5);
    tcase_add_test(canon_tc, canonical_sort_order);
    tcase_add_test(canon_tc, canonical_not_reencoded);
    tcase_add_test(canon_tc, canonical_empty);
    tcase_add_test(kat_tc, known_answer_vectors);
    suite_add_tcase(s, parse_tc);
    suite_add_tcase(s, build_tc);
    suite_add_tcase(s, canon_tc);
    suite_add_tcase(s, kat_tc);
    return s;
}

/* Run the suite; the exit status says whether every test passed. */
int main(void)
{
    SRunner *sr = srunner_create(form_suite());
    int failed;

    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
