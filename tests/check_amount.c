/*
 * check_amount.c: the specification of amount.c, exact yuan/fen conversion
 * at the edges of the grammar and of int64_t.
 */
#include <check.h>
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "wire/amount.h"

/* Sentinel left in an output that must not be written. */
#define UNTOUCHED ((int64_t)0x5a5a5a5a5a5a5a5a)

/* amount_yuan_to_fen over a C string, leaving *fen alone on failure. */
static int yuan(const char *s, int64_t *fen)
{
    *fen = UNTOUCHED;
    return amount_yuan_to_fen(s, strlen(s), fen);
}

/* amount_fen_parse over a C string, leaving *fen alone on failure. */
static int fenp(const char *s, int neg, int64_t *fen)
{
    *fen = UNTOUCHED;
    return amount_fen_parse(s, strlen(s), neg, fen);
}

/* Assert that s converts to want fen. */
static void yuan_ok(const char *s, int64_t want)
{
    int64_t fen;
    int r = yuan(s, &fen);

    ck_assert_msg(r == 0, "\"%s\": returned %d, want 0", s, r);
    ck_assert_msg(fen == want, "\"%s\": %lld fen, want %lld", s, (long long)fen,
                  (long long)want);
}

/* Assert that s is refused with want and *fen is not written. */
static void yuan_err(const char *s, int want)
{
    int64_t fen;
    int r = yuan(s, &fen);

    ck_assert_msg(r == want, "\"%s\": returned %d, want %d", s, r, want);
    ck_assert_msg(fen == UNTOUCHED, "\"%s\": output written on failure", s);
}

START_TEST(yuan_valid)
{
    yuan_ok("0.01", 1);
    yuan_ok("99999999.99", 9999999999LL);
    yuan_ok("1", 100);
    yuan_ok("1.5", 150);
    yuan_ok("1.50", 150);
    yuan_ok("0", 0);
    yuan_ok("0.00", 0);
    yuan_ok("0.0", 0);
    yuan_ok("0.5", 50);
    yuan_ok("10", 1000);
    yuan_ok("12.30", 1230);
    yuan_ok("100.09", 10009);
    /* zeros past the fen keep the value exact (a gateway typing floats) */
    yuan_ok("13.880", 1388);
    yuan_ok("1.2300", 123);
    yuan_ok("1.000000", 100);
}
END_TEST

START_TEST(yuan_invalid)
{
    static const char *const bad[] = {
        "-0.01", "",     "abc",  "1.",   ".5",    "1.234", "01.00", " 1",   "1 ",
        "+1",    "1e2",  "0x10", "1,00", ".",     "00",    "-1",    "1..0", "1.2.3",
        "1.-1",  "1.+1", "0.0a", "１",   "1.5\n", "-0",    "00.5",  "0x",   "1.00 ",
        "1.001", "1.0000001", "1.0000000", "0.0050",
    };
    size_t i;

    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        yuan_err(bad[i], -EINVAL);
}
END_TEST

START_TEST(yuan_embedded_nul)
{
    int64_t fen = UNTOUCHED;

    ck_assert_int_eq(amount_yuan_to_fen("1\0", 2, &fen), -EINVAL);
    ck_assert_int_eq(amount_yuan_to_fen("1.0\0", 4, &fen), -EINVAL);
    ck_assert(fen == UNTOUCHED);
    /* len, not the NUL, ends the string */
    ck_assert_int_eq(amount_yuan_to_fen("12.345", 4, &fen), 0);
    ck_assert(fen == 1230);
    ck_assert_int_eq(amount_yuan_to_fen(NULL, 0, &fen), -EINVAL);
}
END_TEST

START_TEST(yuan_int64_edges)
{
    yuan_ok("92233720368547758.07", INT64_MAX);
    yuan_ok("92233720368547758", 9223372036854775800LL);
    yuan_ok("92233720368547758.0", 9223372036854775800LL);
    yuan_err("92233720368547758.08", -ERANGE);
    yuan_err("92233720368547758.1", -ERANGE);
    yuan_err("92233720368547759", -ERANGE);
    yuan_err("92233720368547760.00", -ERANGE);
    yuan_err("922337203685477580", -ERANGE);
    yuan_err("9223372036854775807", -ERANGE);
    yuan_err("18446744073709551616", -ERANGE);
    yuan_err("184467440737095516.16", -ERANGE);
    yuan_err("99999999999999999999999999999999999999.99", -ERANGE);
    /* grammar errors win over range errors */
    yuan_err("99999999999999999999999999999999999999.999", -EINVAL);
    yuan_err("099999999999999999999999999999999999999", -EINVAL);
}
END_TEST

START_TEST(yuan_very_long)
{
    char s[4097];

    memset(s, '9', sizeof(s) - 1);
    s[sizeof(s) - 1] = '\0';
    yuan_err(s, -ERANGE);
    s[0] = '1';
    memset(s + 1, '0', sizeof(s) - 2);
    yuan_err(s, -ERANGE);
}
END_TEST

START_TEST(fen_parse_positive)
{
    int64_t fen;

    ck_assert_int_eq(fenp("0", 0, &fen), 0);
    ck_assert(fen == 0);
    ck_assert_int_eq(fenp("100", 0, &fen), 0);
    ck_assert(fen == 100);
    ck_assert_int_eq(fenp("9223372036854775807", 0, &fen), 0);
    ck_assert(fen == INT64_MAX);
    ck_assert_int_eq(fenp("9223372036854775808", 0, &fen), -ERANGE);
    ck_assert(fen == UNTOUCHED);
    ck_assert_int_eq(fenp("18446744073709551616", 0, &fen), -ERANGE);
    ck_assert_int_eq(fenp("99999999999999999999999999", 1, &fen), -ERANGE);
    ck_assert(fen == UNTOUCHED);
}
END_TEST

START_TEST(fen_parse_negative)
{
    int64_t fen;

    ck_assert_int_eq(fenp("-1", 0, &fen), -EINVAL);
    ck_assert(fen == UNTOUCHED);
    ck_assert_int_eq(fenp("-1", 1, &fen), 0);
    ck_assert(fen == -1);
    ck_assert_int_eq(fenp("-9223372036854775807", 1, &fen), 0);
    ck_assert(fen == -INT64_MAX);
    ck_assert_int_eq(fenp("-9223372036854775808", 1, &fen), 0);
    ck_assert(fen == INT64_MIN);
    ck_assert_int_eq(fenp("-9223372036854775809", 1, &fen), -ERANGE);
    ck_assert(fen == UNTOUCHED);
    ck_assert_int_eq(fenp("-9223372036854775808", 0, &fen), -EINVAL);
    ck_assert_int_eq(fenp("-0", 1, &fen), 0);
    ck_assert(fen == 0);
}
END_TEST

START_TEST(fen_parse_invalid)
{
    static const char *const bad[] = {
        "", "-", "--1", "+1", " 1", "1 ", "1.0", "1e2", "0x10", "1,00", "abc", "1-",
    };
    int64_t fen;
    size_t i;

    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        ck_assert_msg(fenp(bad[i], 1, &fen) == -EINVAL, "\"%s\" accepted", bad[i]);
        ck_assert_msg(fenp(bad[i], 0, &fen) == -EINVAL, "\"%s\" accepted", bad[i]);
        ck_assert(fen == UNTOUCHED);
    }
    ck_assert_int_eq(amount_fen_parse("1\0", 2, 0, &fen), -EINVAL);
}
END_TEST

/* Assert that fen formats as want. */
static void fmt_ok(int64_t fen, const char *want)
{
    char buf[32];
    int n = amount_fen_to_yuan(fen, buf, sizeof(buf));

    ck_assert_int_eq(n, (int)strlen(want));
    ck_assert_str_eq(buf, want);
}

START_TEST(fen_to_yuan)
{
    fmt_ok(0, "0.00");
    fmt_ok(1, "0.01");
    fmt_ok(10, "0.10");
    fmt_ok(100, "1.00");
    fmt_ok(1230, "12.30");
    fmt_ok(123456, "1234.56");
    fmt_ok(-1, "-0.01");
    fmt_ok(-150, "-1.50");
    fmt_ok(INT64_MAX, "92233720368547758.07");
    fmt_ok(INT64_MIN, "-92233720368547758.08");
}
END_TEST

START_TEST(fen_to_yuan_buffer)
{
    char buf[8];

    memset(buf, 'x', sizeof(buf));
    /* "1234.56" needs 7 bytes plus the NUL */
    ck_assert_int_eq(amount_fen_to_yuan(123456, buf, 7), -ENOSPC);
    ck_assert_int_eq(buf[0], 'x');
    ck_assert_int_eq(amount_fen_to_yuan(123456, buf, 8), 7);
    ck_assert_str_eq(buf, "1234.56");
    ck_assert_int_eq(amount_fen_to_yuan(0, buf, 0), -ENOSPC);
    ck_assert_int_eq(amount_fen_to_yuan(0, NULL, 0), -ENOSPC);
    ck_assert_int_eq(amount_fen_to_yuan(-1, buf, 5), -ENOSPC);
    ck_assert_int_eq(amount_fen_to_yuan(-1, buf, 6), 5);
    ck_assert_str_eq(buf, "-0.01");
}
END_TEST

START_TEST(round_trip)
{
    static const int64_t v[] = {0, 1, 9, 10, 99, 100, 101, 123456789, INT64_MAX};
    char buf[32];
    int64_t back;
    size_t i;

    for (i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
        int n = amount_fen_to_yuan(v[i], buf, sizeof(buf));
        ck_assert_int_gt(n, 0);
        ck_assert_int_eq(amount_yuan_to_fen(buf, (size_t)n, &back), 0);
        ck_assert(back == v[i]);
    }
}
END_TEST

/* All amount tests. */
static Suite *amount_suite(void)
{
    Suite *s = suite_create("amount");
    TCase *tc = tcase_create("core");

    tcase_add_test(tc, yuan_valid);
    tcase_add_test(tc, yuan_invalid);
    tcase_add_test(tc, yuan_embedded_nul);
    tcase_add_test(tc, yuan_int64_edges);
    tcase_add_test(tc, yuan_very_long);
    tcase_add_test(tc, fen_parse_positive);
    tcase_add_test(tc, fen_parse_negative);
    tcase_add_test(tc, fen_parse_invalid);
    tcase_add_test(tc, fen_to_yuan);
    tcase_add_test(tc, fen_to_yuan_buffer);
    tcase_add_test(tc, round_trip);
    suite_add_tcase(s, tc);
    return s;
}

/* Run the suite; the exit status says whether every test passed. */
int main(void)
{
    SRunner *sr = srunner_create(amount_suite());
    int failed;

    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
