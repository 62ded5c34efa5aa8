/*
 * check_table.c: payhookctl's result sets (src/ctl/table.c). A stored
 * callback is attacker-controlled text, so the table must not pass control
 * bytes to the operator's terminal, and the JSON must carry the values
 * exactly: integers beyond 2^53, NULL, bytes that are not UTF-8.
 */
#include <check.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ctl/table.h"

static sqlite3 *db;

static void setup(void)
{
    ck_assert_int_eq(sqlite3_open(":memory:", &db), SQLITE_OK);
}

static void teardown(void)
{
    sqlite3_close(db);
}

/* The rows of sql (one text parameter bound when p is not NULL). */
static struct ctl_rows *rows_of(const char *sql, const char *p, int plen)
{
    sqlite3_stmt *st;
    struct ctl_rows *r;
    char err[128];

    ck_assert_int_eq(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
    if (p)
        sqlite3_bind_blob(st, 1, p, plen, SQLITE_TRANSIENT);
    r = ctl_rows_read(st, err, sizeof(err));
    sqlite3_finalize(st);
    ck_assert_msg(r != NULL, "%s", err);
    return r;
}

/* What ctl_rows_print writes for sql; the caller frees it. */
static char *table_of(const char *sql, const char *p, int plen)
{
    struct ctl_rows *r = rows_of(sql, p, plen);
    char *out = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&out, &len);

    ck_assert_ptr_nonnull(f);
    ck_assert_int_eq(ctl_rows_print(r, f, "nothing"), 0);
    fclose(f);
    ctl_rows_free(r);
    return out;
}

/* ctl_rows_json(sql) printed unformatted; the caller frees it. */
static char *json_of(const char *sql, const char *p, int plen, const char *json_col)
{
    struct ctl_rows *r = rows_of(sql, p, plen);
    cJSON *a;
    char *out;

    if (json_col)
        ctl_rows_json_column(r, json_col);
    a = ctl_rows_json(r);
    ck_assert_ptr_nonnull(a);
    out = cJSON_PrintUnformatted(a);
    cJSON_Delete(a);
    ctl_rows_free(r);
    return out;
}

START_TEST(control_bytes_are_escaped)
{
    static const char cell[] = "a\x1b[31m\n\t\r\x07\x7f" "\xc2\x9b" "z";
    char *t = table_of("SELECT ?1 AS v", cell, (int)sizeof(cell) - 1);

    ck_assert_str_eq(t, "v\na\\x1b[31m\\n\\t\\r\\x07\\x7f\\xc2\\x9bz\n");
    free(t);
}
END_TEST

START_TEST(invalid_utf8_is_escaped_and_valid_kept)
{
    static const char cell[] = "\xff\xfe" "ok" "\xe6\x94\xaf" "\xe6\x94";
    char *t = table_of("SELECT ?1 AS v", cell, (int)sizeof(cell) - 1);

    ck_assert_str_eq(t, "v\n\\xff\\xfeok\xe6\x94\xaf\\xe6\\x94\n");
    free(t);
}
END_TEST

/* Wide characters count two columns: the next column stays aligned. */
START_TEST(wide_characters_align)
{
    char *t = table_of("SELECT '\xe6\x94\xaf\xe4\xbb\x98' AS k, 'x' AS n UNION ALL "
                       "SELECT 'abcde', 'y'",
                       NULL, 0);

    ck_assert_str_eq(t, "k      n\n"
                        "\xe6\x94\xaf\xe4\xbb\x98   x\n"
                        "abcde  y\n");
    free(t);
}
END_TEST

START_TEST(numbers_right_aligned_null_as_dash)
{
    char *t = table_of("SELECT 5 AS amount, 'a' AS s UNION ALL SELECT 12345, NULL "
                       "UNION ALL SELECT NULL, 'b'",
                       NULL, 0);

    ck_assert_str_eq(t, "amount  s\n"
                        "     5  a\n"
                        " 12345  -\n"
                        "     -  b\n");
    free(t);
}
END_TEST

START_TEST(long_cells_shortened_to_40_columns)
{
    char *t = table_of("SELECT printf('%.60c', 'x') || 'TAIL' AS v", NULL, 0);
    char want[64];

    memset(want, 'x', 37);
    strcpy(want + 37, "...");
    ck_assert_ptr_nonnull(strstr(t, want));
    ck_assert_ptr_null(strstr(t, "TAIL"));
    free(t);
}
END_TEST

START_TEST(no_rows_prints_the_empty_line)
{
    char *t = table_of("SELECT 1 AS v WHERE 0", NULL, 0);

    ck_assert_str_eq(t, "nothing\n");
    free(t);
}
END_TEST

START_TEST(record_is_not_shortened_and_is_escaped)
{
    struct ctl_rows *r = rows_of("SELECT 7 AS id, printf('%.60c', 'y') || '\x1b' AS body", NULL, 0);
    char *out = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&out, &len);

    ctl_rows_print_record(r, 0, f);
    fclose(f);
    ck_assert_ptr_nonnull(strstr(out, "id     7\n"));
    ck_assert_ptr_nonnull(strstr(out, "yyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyy\\x1b\n"));
    free(out);
    ctl_rows_free(r);
}
END_TEST

START_TEST(json_values_are_exact)
{
    char *j = json_of("SELECT 9007199254740993 AS big, -1 AS neg, NULL AS n, 'x\"\n' AS s, "
                      "'\xe6\x94\xaf' AS cjk",
                      NULL, 0, NULL);

    ck_assert_str_eq(j, "[{\"big\":9007199254740993,\"neg\":-1,\"n\":null,\"s\":\"x\\\"\\n\","
                        "\"cjk\":\"\xe6\x94\xaf\"}]");
    free(j);
}
END_TEST

START_TEST(json_bytes_not_utf8_go_as_base64)
{
    static const char body[] = "\xd5\xc5\xc8\xfd";
    char *j = json_of("SELECT ?1 AS body", body, 4, NULL);

    ck_assert_str_eq(j, "[{\"body_base64\":\"1cXI/Q==\"}]");
    free(j);
}
END_TEST

START_TEST(json_column_is_embedded_parsed)
{
    char *j = json_of("SELECT '{\"a\":\"1\"}' AS fields, '{\"a\":1}' AS other UNION ALL "
                      "SELECT 'not json', NULL",
                      NULL, 0, "fields");

    ck_assert_str_eq(j, "[{\"fields\":{\"a\":\"1\"},\"other\":\"{\\\"a\\\":1}\"},"
                        "{\"fields\":\"not json\",\"other\":null}]");
    free(j);
}
END_TEST

static Suite *table_suite(void)
{
    Suite *s = suite_create("table");
    TCase *tc = tcase_create("core");

    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, control_bytes_are_escaped);
    tcase_add_test(tc, invalid_utf8_is_escaped_and_valid_kept);
    tcase_add_test(tc, wide_characters_align);
    tcase_add_test(tc, numbers_right_aligned_null_as_dash);
    tcase_add_test(tc, long_cells_shortened_to_40_columns);
    tcase_add_test(tc, no_rows_prints_the_empty_line);
    tcase_add_test(tc, record_is_not_shortened_and_is_escaped);
    tcase_add_test(tc, json_values_are_exact);
    tcase_add_test(tc, json_bytes_not_utf8_go_as_base64);
    tcase_add_test(tc, json_column_is_embedded_parsed);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(table_suite());
    int failed;

    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
