/*
 * json.c: bounded JSON parsing and exact field extraction.
 */
#include "json.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

/* Deepest nesting of [ and { outside strings; stops counting past limit. */
static unsigned json_depth(const char *s, size_t len, unsigned limit)
{
    unsigned depth = 0, max = 0;
    int in_str = 0, esc = 0;
    size_t i;

    for (i = 0; i < len && max <= limit; i++) {
        char c = s[i];
        if (in_str) {
            if (esc)
                esc = 0;
            else if (c == '\\')
                esc = 1;
            else if (c == '"')
                in_str = 0;
        } else if (c == '"') {
            in_str = 1;
        } else if (c == '{' || c == '[') {
            if (++depth > max)
                max = depth;
        } else if ((c == '}' || c == ']') && depth > 0) {
            depth--;
        }
    }
    return max;
}

#define JSON_MAX_MEMBERS 1024 /* keeps the duplicate check cheap */

/*
 * Check every object in the tree: -EEXIST when a key occurs twice (*what =
 * the key), -E2BIG when an object or array has more than JSON_MAX_MEMBERS.
 */
static int json_check(const cJSON *node, const char **what)
{
    const cJSON *a, *b;
    unsigned n = 0;
    int r;

    for (a = node ? node->child : NULL; a; a = a->next) {
        if (++n > JSON_MAX_MEMBERS)
            return -E2BIG;
        if (cJSON_IsObject(node) && a->string) {
            for (b = a->next; b; b = b->next) {
                if (b->string && strcmp(a->string, b->string) == 0) {
                    *what = a->string;
                    return -EEXIST;
                }
            }
        }
        if ((cJSON_IsObject(a) || cJSON_IsArray(a)) && (r = json_check(a, what)) < 0)
            return r;
    }
    return 0;
}

/* Parse one bounded JSON value. */
int json_parse(const char *s, size_t len, unsigned max_depth, cJSON **out, char *err,
               size_t errlen)
{
    const char *end = NULL, *dup = NULL;
    cJSON *root;
    int r;

    if (json_depth(s, len, max_depth) > max_depth) {
        snprintf(err, errlen, "JSON nested deeper than %u levels", max_depth);
        return -E2BIG;
    }
    root = cJSON_ParseWithLengthOpts(s, len, &end, 0);
    if (!root) {
        end = cJSON_GetErrorPtr();
        snprintf(err, errlen, "malformed JSON near byte %ld",
                 end && end >= s && end <= s + len ? (long)(end - s) : 0L);
        return -EINVAL;
    }
    while (end && end < s + len && strchr(" \t\r\n", *end) && *end)
        end++;
    if (end && end < s + len) {
        snprintf(err, errlen, "unexpected bytes after the JSON value at byte %ld",
                 (long)(end - s));
        cJSON_Delete(root);
        return -EINVAL;
    }
    r = json_check(root, &dup);
    if (r < 0) {
        if (r == -EEXIST)
            snprintf(err, errlen, "JSON key \"%.64s\" occurs twice", dup);
        else
            snprintf(err, errlen, "JSON object or array with more than %d members",
                     JSON_MAX_MEMBERS);
        cJSON_Delete(root);
        return r;
    }
    *out = root;
    return 0;
}

/* A member as exact text. */
int json_text(const cJSON *obj, const char *key, char *buf, size_t buflen)
{
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(obj, key);
    double v;
    int n;

    if (!it || cJSON_IsNull(it))
        return -ENOENT;
    if (cJSON_IsString(it)) {
        n = snprintf(buf, buflen, "%s", it->valuestring);
    } else if (cJSON_IsNumber(it)) {
        v = it->valuedouble;
        if (v != floor(v) || fabs(v) > 9007199254740992.0)
            return -ERANGE;
        n = snprintf(buf, buflen, "%lld", (long long)v);
    } else {
        return -EINVAL;
    }
    return n < 0 || (size_t)n >= buflen ? -ENOSPC : n;
}

/* A string member or NULL. */
const char *json_string(const cJSON *obj, const char *key)
{
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(obj, key);

    return cJSON_IsString(it) ? it->valuestring : NULL;
}

/* cJSON_Delete for arena_own. */
void json_free(void *tree)
{
    cJSON_Delete(tree);
}
