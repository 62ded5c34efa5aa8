/*
 * check_reconcile.c: the pure parts of the reconciliation sweeps: which
 * day an instant belongs to in the platforms' zone, a day's bounds, and
 * Baidu's rule for whether a stored pay notification agrees with the
 * order list.
 */
#include <check.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "jobs/reconcile.h"

#define UTC8 (8 * 3600L)

START_TEST(day_bounds_are_midnight_in_the_zone)
{
    struct sweep_day d;

    ck_assert_int_eq(reconcile_day_bounds("2026-12-06", UTC8, &d), 0);
    /* 2026-12-06 00:00 +08:00 = 2026-12-05 16:00 UTC */
    ck_assert_int_eq(d.from_s, 1796515200 - 8 * 3600);
    ck_assert_int_eq(d.to_s - d.from_s, 86400);
    ck_assert_int_eq(reconcile_day_bounds("2026-12-06", 0, &d), 0);
    ck_assert_int_eq(d.from_s, 1796515200);
}
END_TEST

START_TEST(bad_days_are_refused)
{
    static const char *const bad[] = {"2026-02-30", "2026-13-01", "2026-1-01", "20261201",
                                      "2026-12-01x", "", "1999-12-31", "2026-12-00"};
    struct sweep_day d;

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        ck_assert_msg(reconcile_day_bounds(bad[i], UTC8, &d) == -EINVAL, "%s", bad[i]);
    ck_assert_int_eq(reconcile_day_bounds(NULL, UTC8, &d), -EINVAL);
    ck_assert_int_eq(reconcile_day_bounds("2028-02-29", UTC8, &d), 0);
}
END_TEST

START_TEST(day_before_follows_the_zone)
{
    char day[11];

    /* 2026-12-06 01:00 UTC is 09:00 in UTC+8; 23:00 UTC the day before is already the 6th there */
    reconcile_day_before(1796515200 - 3600, UTC8, 0, day);
    ck_assert_str_eq(day, "2026-12-06");
    reconcile_day_before(1796515200 - 3600, 0, 0, day);
    ck_assert_str_eq(day, "2026-12-05");
    reconcile_day_before(1796515200 - 3600, UTC8, 1, day);
    ck_assert_str_eq(day, "2026-12-05");
}
END_TEST

static enum store_finding judge(const char *stored_status, int64_t stored, const char *sub,
                                int paid, int64_t listed, char *detail)
{
    struct store_sweep_record r = {.has_amount = 1, .amount_fen = listed, .status = sub,
                                   .paid = paid};
    struct store_sweep_stored e = {.has_amount = 1, .amount_fen = stored,
                                   .status = stored_status, .source = "callback"};

    return baidu_orderlist_judge(&r, &e, detail, 128);
}

START_TEST(baidu_rule)
{
    char detail[128] = "";

    ck_assert_int_eq(judge("2", 1000, "2", 1, 1000, detail), FINDING_MATCHED);
    ck_assert_int_eq(judge("2", 1000, "5", 1, 1000, detail), FINDING_MATCHED); /* refunded since */
    ck_assert_int_eq(judge("2", 1000, "2", 1, 999, detail), FINDING_MISMATCH);
    ck_assert_str_eq(detail, "totalMoney: stored 1000, the platform 999");
    ck_assert_int_eq(judge("2", 1000, "7", 0, 1000, detail), FINDING_MISMATCH);
    ck_assert_ptr_nonnull(strstr(detail, "sub_status 7"));
    ck_assert_int_eq(judge("1", 1000, "7", 0, 1000, detail), FINDING_MATCHED); /* unpaid, then cancelled */
}
END_TEST

/* The last page: a short one; a full one only when it reaches a total that
 * is a positive number; never past SWEEP_PAGES_MAX full pages. */
START_TEST(last_page_rule)
{
    ck_assert_int_eq(reconcile_last_page(1, 5, 100, NULL), 1);
    ck_assert_int_eq(reconcile_last_page(3, 0, 100, "250"), 1);
    ck_assert_int_eq(reconcile_last_page(2, 100, 100, "200"), 1);
    ck_assert_int_eq(reconcile_last_page(2, 100, 100, "201"), 0);
    ck_assert_int_eq(reconcile_last_page(1, 100, 100, NULL), 0);
    /* what a total_count that says nothing must not do: end the sweep */
    ck_assert_int_eq(reconcile_last_page(1, 100, 100, "0"), 0);
    ck_assert_int_eq(reconcile_last_page(1, 100, 100, "-"), 0);
    ck_assert_int_eq(reconcile_last_page(1, 100, 100, "12abc"), 0);
    ck_assert_int_eq(reconcile_last_page(1, 100, 100, "99999999999999999999"), 0);
    ck_assert_int_eq(reconcile_last_page(SWEEP_PAGES_MAX - 1, 100, 100, NULL), 0);
    ck_assert_int_eq(reconcile_last_page(SWEEP_PAGES_MAX, 100, 100, NULL), -1);
    ck_assert_int_eq(reconcile_last_page(SWEEP_PAGES_MAX, 7, 100, NULL), 1);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("reconcile");
    TCase *tc = tcase_create("rules");
    SRunner *sr;
    int failed;

    tcase_add_test(tc, day_bounds_are_midnight_in_the_zone);
    tcase_add_test(tc, bad_days_are_refused);
    tcase_add_test(tc, day_before_follows_the_zone);
    tcase_add_test(tc, baidu_rule);
    tcase_add_test(tc, last_page_rule);
    suite_add_tcase(s, tc);
    sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
