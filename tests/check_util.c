/*
 * check_util.c: util_escape, the one sanitiser for received text, the
 * counted allocator that tells "no memory" from "bad input", and the log's
 * flood limit.
 */
#include <check.h>
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "lib/log.h"
#include "lib/util.h"
#include "wire/crypto.h"
#include "wire/json.h"

/* Under ASan an impossible allocation must fail the way libc's does (NULL),
 * not abort the test; the function is unused in other builds. */
const char *__asan_default_options(void);
const char *__asan_default_options(void)
{
    return "allocator_may_return_null=1";
}

static const char *esc(const char *s, size_t n, unsigned flags, size_t outlen)
{
    static char out[256];

    memset(out, 'Z', sizeof(out));
    return util_escape(s, n, flags, out, outlen);
}

START_TEST(printable_ascii_is_kept)
{
    ck_assert_str_eq(esc("trade_no=2017 ok", 16, 0, 64), "trade_no=2017 ok");
    ck_assert_str_eq(esc("", 0, UTIL_ESC_QUOTES, 64), "");
}
END_TEST

START_TEST(control_bytes_are_escaped)
{
    /* a newline could forge a log line, ESC drive a terminal, NUL hide the rest */
    ck_assert_str_eq(esc("a\nb\x1b[2Jc\0d\x7f", 11, 0, 64),
                     "a\\x0ab\\x1b[2Jc\\x00d\\x7f");
}
END_TEST

START_TEST(quotes_only_when_quoting)
{
    ck_assert_str_eq(esc("it's \"x\" \\x0a", 13, UTIL_ESC_QUOTES, 64),
                     "it\\x27s \\x22x\\x22 \\x5cx0a");
    /* a whole line keeps the escapes of the values quoted into it */
    ck_assert_str_eq(esc("value 'a\\x0ab'", 14, 0, 64), "value 'a\\x0ab'");
}
END_TEST

START_TEST(high_bytes_escaped_unless_kept)
{
    const char *s = "\xe5\xbd\x93"; /* 当 */

    ck_assert_str_eq(esc(s, 3, 0, 64), "\\xe5\\xbd\\x93");
    ck_assert_str_eq(esc(s, 3, UTIL_ESC_KEEP_HIGH, 64), s);
}
END_TEST

START_TEST(long_text_is_cut_with_ellipsis)
{
    char a[100];

    memset(a, 'a', sizeof(a));
    ck_assert_str_eq(esc(a, 100, 0, 20), "aaaaaaaaaaaaaaaa...");
    /* exactly what fits is not cut */
    ck_assert_str_eq(esc(a, 19, 0, 20), "aaaaaaaaaaaaaaaaaaa");
    ck_assert_uint_eq(strlen(esc(a, 20, 0, 20)), 19);
}
END_TEST

START_TEST(cut_never_splits_an_escape_or_a_character)
{
    ck_assert_str_eq(esc("\n\n\n\n\n\n", 6, 0, 12), "\\x0a\\x0a...");
    /* "a" then three 2-byte UTF-8 characters: the cut keeps no lone lead byte */
    ck_assert_str_eq(esc("a\xc3\xa9\xc3\xa9\xc3\xa9", 7, UTIL_ESC_KEEP_HIGH, 6), "a...");
}
END_TEST

START_TEST(tiny_buffers_stay_terminated)
{
    char out[4] = "ZZZ";

    util_escape("abcdef", 6, 0, out, 0);
    ck_assert_int_eq(out[0], 'Z'); /* nothing written at all */
    ck_assert_str_eq(util_escape("abcdef", 6, 0, out, 1), "");
    ck_assert_str_eq(util_escape("abcdef", 6, 0, out, 3), "");
    ck_assert_str_eq(util_escape("ab", 2, 0, out, 3), "ab");
    ck_assert_str_eq(util_escape("abcdef", 6, 0, out, 4), "...");
}
END_TEST

START_TEST(counted_malloc_counts_only_failures)
{
    unsigned long before = util_alloc_failures();
    void *p = util_counted_malloc(16);

    ck_assert_ptr_nonnull(p);
    p = util_counted_realloc(p, 32);
    ck_assert_ptr_nonnull(p);
    free(p);
    ck_assert_uint_eq(util_alloc_failures(), before);
    /* an allocation no system can satisfy fails, and is counted */
    ck_assert_ptr_null(util_counted_malloc(SIZE_MAX / 2));
    ck_assert_uint_eq(util_alloc_failures(), before + 1);
    ck_assert_ptr_null(util_counted_realloc(NULL, SIZE_MAX / 2));
    ck_assert_uint_eq(util_alloc_failures(), before + 2);
}
END_TEST

static int init_rc = 1;

START_TEST(crypto_init_succeeds_first_thing)
{
    char hex[65];

    /* before any OpenSSL allocation it takes; OpenSSL works through it */
    ck_assert_int_eq(init_rc, 0);
    ck_assert_int_eq(crypto_sha256_hex("x", 1, hex), 0);
    ck_assert_str_eq(hex, "2d711642b726b04401627ca9fbac32f5c8530fb1903cc4db02258717921a4881");
}
END_TEST

START_TEST(malformed_json_is_not_out_of_memory)
{
    cJSON *root = NULL;
    char err[80];

    json_init();
    ck_assert_int_eq(json_parse("{\"a\":1", 6, 8, &root, err, sizeof(err)), -EINVAL);
    ck_assert_int_eq(json_parse("{\"a\":[1,2]}", 11, 8, &root, err, sizeof(err)), 0);
    cJSON_Delete(root);
}
END_TEST

START_TEST(log_limit_passes_a_burst_then_counts)
{
    struct log_limit l = {0};
    unsigned dropped = 99, i;

    for (i = 0; i < 3; i++) {
        ck_assert_int_eq(log_limit_pass(&l, 3, 3600ull * 1000000000ull, &dropped), 1);
        ck_assert_uint_eq(dropped, 0);
    }
    ck_assert_int_eq(log_limit_pass(&l, 3, 3600ull * 1000000000ull, &dropped), 0);
    ck_assert_int_eq(log_limit_pass(&l, 3, 3600ull * 1000000000ull, &dropped), 0);
    /* a new window (1 ns long here): the next line says two were dropped */
    ck_assert_int_eq(log_limit_pass(&l, 3, 1, &dropped), 1);
    ck_assert_uint_eq(dropped, 2);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("util");
    TCase *tc = tcase_create("escape");
    SRunner *sr;
    int failed;

    /* what payhookd's main does first */
    init_rc = crypto_init();
    tcase_add_test(tc, printable_ascii_is_kept);
    tcase_add_test(tc, control_bytes_are_escaped);
    tcase_add_test(tc, quotes_only_when_quoting);
    tcase_add_test(tc, high_bytes_escaped_unless_kept);
    tcase_add_test(tc, long_text_is_cut_with_ellipsis);
    tcase_add_test(tc, cut_never_splits_an_escape_or_a_character);
    tcase_add_test(tc, tiny_buffers_stay_terminated);
    tcase_add_test(tc, counted_malloc_counts_only_failures);
    tcase_add_test(tc, malformed_json_is_not_out_of_memory);
    tcase_add_test(tc, crypto_init_succeeds_first_thing);
    tcase_add_test(tc, log_limit_passes_a_burst_then_counts);
    suite_add_tcase(s, tc);
    sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
