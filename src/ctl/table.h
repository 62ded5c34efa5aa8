/*
 * table.h: payhookctl's output of query results. A result set is read from
 * a prepared statement into memory, then printed either as an aligned text
 * table for people or as JSON for programs:
 *
 *     struct ctl_rows *r = ctl_rows_read(stmt, err, sizeof(err));
 *     ctl_rows_print(r, stdout, "no deliveries");      (people)
 *     cJSON_AddItemToObject(doc, "deliveries", ctl_rows_json(r));  (programs)
 *     ctl_rows_free(r);
 *
 * JSON keys are the statement's column names, so they are as stable as the
 * SQL: integers are written exactly (as SQLite's decimal text), NULL is
 * null, text is a string, and a BLOB is a string when it is UTF-8 text and
 * otherwise goes under "<name>_base64". The text table escapes control
 * bytes (a forged callback cannot drive the operator's terminal) and
 * shortens long cells; JSON is always complete.
 */
#ifndef PAYHOOKD_CTL_TABLE_H
#define PAYHOOKD_CTL_TABLE_H

#include <cjson/cJSON.h>
#include <sqlite3.h>
#include <stdio.h>

struct ctl_rows;

/* Step st to its end, keeping every row. NULL with a message on failure. */
struct ctl_rows *ctl_rows_read(sqlite3_stmt *st, char *err, size_t errlen);

/* The text of `column` is JSON (e.g. events.fields): embed it parsed, as an
 * object, not as a string (a cell that does not parse stays a string). */
void ctl_rows_json_column(struct ctl_rows *r, const char *column);

/* Number of rows read. */
size_t ctl_rows_count(const struct ctl_rows *r);

/* An aligned table with a header line; `empty` is printed for no rows.
 * 0, or -1 when out of memory (nothing printed). */
int ctl_rows_print(const struct ctl_rows *r, FILE *f, const char *empty);

/* One row as "column: value" lines (cells not shortened). */
void ctl_rows_print_record(const struct ctl_rows *r, size_t row, FILE *f);

/* A JSON array of objects, one per row (NULL when out of memory). */
cJSON *ctl_rows_json(const struct ctl_rows *r);

/* Row `row` as one JSON object (NULL when out of memory or no such row). */
cJSON *ctl_rows_json_row(const struct ctl_rows *r, size_t row);

/* Print a JSON document, formatted, and a newline. 0, or -1 (out of memory). */
int ctl_json_print(const cJSON *doc, FILE *f);

/* NULL-safe; returns NULL. */
struct ctl_rows *ctl_rows_free(struct ctl_rows *r);

#endif
