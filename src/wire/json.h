/*
 * json.h: bounded JSON parsing and exact field extraction over cJSON.
 * Lower layer: returns -errno with a reason, never logs.
 */
#ifndef PAYHOOKD_JSON_H
#define PAYHOOKD_JSON_H

#include <cjson/cJSON.h>
#include <stddef.h>

#define JSON_DEFAULT_MAX_DEPTH 16

/*
 * Parse exactly `len` bytes as one JSON value (only whitespace may follow
 * it), refusing nesting deeper than max_depth and, in every object, a key
 * that occurs twice (ambiguous: never guess which one counts). Returns 0 and
 * *out, or -EINVAL (syntax, with the byte offset), -E2BIG (too deep),
 * -EEXIST (duplicate key), -ENOMEM.
 */
int json_parse(const char *s, size_t len, unsigned max_depth, cJSON **out, char *err,
               size_t errlen);

/* Route cJSON's allocations through util_counted_malloc, so that json_parse
 * tells -ENOMEM from malformed input. Call once, before any thread starts. */
void json_init(void);

/*
 * The member `key` of object obj as text: a string's value, or an integer
 * number written in decimal (exact up to 2^53; larger or fractional numbers
 * give -ERANGE). Returns the length written, -ENOENT when absent or null,
 * -EINVAL for another type, -ENOSPC when buf is too small.
 */
int json_text(const cJSON *obj, const char *key, char *buf, size_t buflen);

/* The string member `key`, or NULL when absent or not a string. */
const char *json_string(const cJSON *obj, const char *key);

/* Length of the valid UTF-8 sequence at p (at most n bytes, n > 0): 1 for
 * ASCII, 0 when invalid (overlong, surrogate, beyond U+10FFFF, truncated). */
size_t json_utf8_len(const unsigned char *p, size_t n);

/* 1 when p[0..n) is valid UTF-8 without a NUL byte (so it can be a JSON
 * string and a C string), else 0. */
int json_utf8_text(const void *p, size_t n);

/* cJSON_Delete with a void * argument, for arena_own. */
void json_free(void *tree);

#endif
