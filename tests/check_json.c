/*
 * check_json.c: the bounded, strict JSON parser and exact field extraction:
 * what cJSON alone would let through (and SQLite's JSON functions refuse)
 * is refused here, and integers come back exactly.
 */
#include <check.h>
#include <errno.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "wire/json.h"

/* Parse text (its strlen) with depth 8; the return code. */
static int parse(const char *text)
{
    char err[128];
    cJSON *root = NULL;
    int r = json_parse(text, strlen(text), 8, &root, err, sizeof(err));

    cJSON_Delete(root);
    return r;
}

/* SQLite's own verdict on a JSON text. */
static int sqlite_valid(const char *text)
{
    sqlite3 *db;
    sqlite3_stmt *st;
    int v = -1;

    ck_assert_int_eq(sqlite3_open(":memory:", &db), SQLITE_OK);
    ck_assert_int_eq(sqlite3_prepare_v2(db, "SELECT json_valid(?1)", -1, &st, NULL),
                     SQLITE_OK);
    sqlite3_bind_text(st, 1, text, -1, SQLITE_STATIC);
    if (sqlite3_step(st) == SQLITE_ROW)
        v = sqlite3_column_int(st, 0);
    sqlite3_finalize(st);
    sqlite3_close(db);
    return v;
}

/* Strict JSON is accepted, and SQLite agrees. */
START_TEST(accepts_strict_json)
{
    static const char *const good[] = {
        "{}",
        "[]",
        "0",
        "-0.5e+10",
        "\"\\u4e2d\\n\\/\"",
        " {\"a\" : [1, 2.5, true, null]} ",
        "{\"中\":\"文\"}",
        "{\"emoji\":\"\xf0\x9f\x98\x80\"}",
        "[[[[[[[[]]]]]]]]",
    };
    size_t i;

    for (i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        ck_assert_msg(parse(good[i]) == 0, "refused: %s", good[i]);
        ck_assert_int_eq(sqlite_valid(good[i]), 1);
    }
}
END_TEST

/* What cJSON is lenient about is refused. */
START_TEST(refuses_lenient_json)
{
    static const char *const bad[] = {
        "{\"a\":00}",               /* leading zero */
        "{\"a\":01}",               /* leading zero */
        "{\"\x80\":1}",             /* invalid UTF-8 */
        "{\"a\":\"\xc0\xaf\"}",     /* overlong UTF-8 */
        "{\"a\":\"\xed\xa0\x80\"}", /* a surrogate in UTF-8 */
        "{\"a\":\"x\ty\"}",         /* a raw control character */
        "{\"a\":\"\\x41\"}",        /* not a JSON escape */
        "{\"a\":\"\\u12\"}",        /* a short \\u */
        "{\"a\":1,}",               /* trailing comma */
        "{\"a\":.5}",
        "{\"a\":1.}",
        "{\"a\":+1}",
        "{\"a\":1e}",
        "{a:1}",
        "{\"a\":tru}",
        "{\"a\":1} x",
        "",
        "   ",
    };
    size_t i;

    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        ck_assert_msg(parse(bad[i]) == -EINVAL, "accepted: %s", bad[i]);
}
END_TEST

/* Nesting, duplicate keys and member counts are bounded. */
START_TEST(bounds)
{
    char big[16 * 1100];
    size_t off = 0;
    int i;

    ck_assert_int_eq(parse("[[[[[[[[[]]]]]]]]]"), -E2BIG);
    ck_assert_int_eq(parse("{\"a\":1,\"a\":2}"), -EEXIST);
    ck_assert_int_eq(parse("{\"o\":{\"k\":1,\"k\":1}}"), -EEXIST);
    off += (size_t)sprintf(big + off, "[");
    for (i = 0; i < 1025; i++)
        off += (size_t)sprintf(big + off, "%s1", i ? "," : "");
    sprintf(big + off, "]");
    ck_assert_int_eq(parse(big), -E2BIG);
}
END_TEST

/* An object of n members "k0000".."k(n-1)", the key of member `twin` repeated
 * as the last one when twin >= 0. */
static char *wide_object(int n, int twin)
{
    char *s = malloc((size_t)n * 12 + 32);
    size_t off = 0;
    int i;

    ck_assert_ptr_nonnull(s);
    off += (size_t)sprintf(s + off, "{");
    for (i = 0; i < n; i++)
        off += (size_t)sprintf(s + off, "%s\"k%04d\":0", i ? "," : "", i);
    if (twin >= 0)
        off += (size_t)sprintf(s + off, ",\"k%04d\":1", twin);
    sprintf(s + off, "}");
    return s;
}

/* The duplicate check sorts the keys: a twin is found wherever it is, in
 * objects small (keys on the stack) and wide (keys in a heap array), and
 * the key is named. */
START_TEST(duplicates_in_wide_objects)
{
    int twins[] = {0, 1, 63, 64, 500, 998};
    char err[128];
    cJSON *root = NULL;
    char *s;
    size_t i;

    for (i = 0; i < sizeof(twins) / sizeof(twins[0]); i++) {
        s = wide_object(999, twins[i]);
        ck_assert_int_eq(json_parse(s, strlen(s), 8, &root, err, sizeof(err)), -EEXIST);
        ck_assert_ptr_nonnull(strstr(err, "occurs twice"));
        free(s);
    }
    s = wide_object(1000, -1);
    ck_assert_int_eq(parse(s), 0);
    free(s);
    s = wide_object(3, 2);
    ck_assert_int_eq(json_parse(s, strlen(s), 8, &root, err, sizeof(err)), -EEXIST);
    ck_assert_str_eq(err, "JSON key \"k0002\" occurs twice");
    free(s);
    /* keys that share a prefix, or differ only in length, are not twins */
    ck_assert_int_eq(parse("{\"a\":1,\"ab\":2,\"abc\":3,\"b\":4,\"\":5}"), 0);
    ck_assert_int_eq(parse("{\"\":1,\"\":2}"), -EEXIST);
}
END_TEST

/* json_text: strings as they are, integers exactly, the rest refused. */
START_TEST(text_extraction)
{
    const char *text =
        "{\"s\":\"x\",\"i\":9007199254740992,\"f\":1.5,\"big\":9007199254740993000,"
        "\"n\":null,\"b\":true}";
    char err[128], buf[32];
    cJSON *root = NULL;

    ck_assert_int_eq(json_parse(text, strlen(text), 4, &root, err, sizeof(err)), 0);
    ck_assert_int_eq(json_text(root, "s", buf, sizeof(buf)), 1);
    ck_assert_str_eq(buf, "x");
    ck_assert_int_eq(json_text(root, "i", buf, sizeof(buf)), 16);
    ck_assert_str_eq(buf, "9007199254740992");
    ck_assert_int_eq(json_text(root, "f", buf, sizeof(buf)), -ERANGE);
    ck_assert_int_eq(json_text(root, "big", buf, sizeof(buf)), -ERANGE);
    ck_assert_int_eq(json_text(root, "n", buf, sizeof(buf)), -ENOENT);
    ck_assert_int_eq(json_text(root, "absent", buf, sizeof(buf)), -ENOENT);
    ck_assert_int_eq(json_text(root, "b", buf, sizeof(buf)), -EINVAL);
    ck_assert_int_eq(json_text(root, "i", buf, 4), -ENOSPC);
    ck_assert_ptr_null(json_string(root, "i"));
    ck_assert_str_eq(json_string(root, "s"), "x");
    cJSON_Delete(root);
}
END_TEST

/* The suite. */
static Suite *json_suite(void)
{
    Suite *s = suite_create("json");
    TCase *t = tcase_create("all");

    tcase_add_test(t, accepts_strict_json);
    tcase_add_test(t, refuses_lenient_json);
    tcase_add_test(t, bounds);
    tcase_add_test(t, duplicates_in_wide_objects);
    tcase_add_test(t, text_extraction);
    suite_add_tcase(s, t);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(json_suite());
    int failed;

    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
