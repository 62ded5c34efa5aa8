/*
 * json.c: bounded JSON parsing and exact field extraction.
 */
#include "wire/json.h"
#include "lib/util.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/*
 * A strict RFC 8259 checker, run before cJSON: cJSON is lenient (leading
 * zeros, raw control characters, invalid UTF-8 in strings), and what it lets
 * through would be stored in the fields column where SQLite's JSON functions
 * (and the views built on them) refuse it. Nesting is bounded by max_depth.
 */
struct json_chk {
    const unsigned char *s;
    size_t n, i;
    unsigned depth, max_depth;
    int too_deep;
};

static int json_chk_value(struct json_chk *c);

/* Skip blanks. */
static void json_chk_ws(struct json_chk *c)
{
    while (c->i < c->n && (c->s[c->i] == ' ' || c->s[c->i] == '\t' ||
                           c->s[c->i] == '\n' || c->s[c->i] == '\r'))
        c->i++;
}

/* Length of the valid UTF-8 sequence at p (at most n bytes, n > 0): 1 for
 * ASCII, 0 when invalid (overlong, surrogate, beyond U+10FFFF, truncated). */
size_t json_utf8_len(const unsigned char *p, size_t n)
{
    size_t len, k;
    unsigned cp;

    if (p[0] < 0x80)
        return 1;
    if (p[0] >= 0xc2 && p[0] <= 0xdf)
        len = 2, cp = p[0] & 0x1f;
    else if (p[0] >= 0xe0 && p[0] <= 0xef)
        len = 3, cp = p[0] & 0x0f;
    else if (p[0] >= 0xf0 && p[0] <= 0xf4)
        len = 4, cp = p[0] & 0x07;
    else
        return 0;
    if (len > n)
        return 0;
    for (k = 1; k < len; k++) {
        if ((p[k] & 0xc0) != 0x80)
            return 0;
        cp = (cp << 6) | (p[k] & 0x3f);
    }
    if ((len == 3 && (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff))) ||
        (len == 4 && (cp < 0x10000 || cp > 0x10ffff)))
        return 0;
    return len;
}

int json_utf8_text(const void *p, size_t n)
{
    const unsigned char *u = p;
    size_t k;

    for (; n; u += k, n -= k)
        if (*u == 0 || !(k = json_utf8_len(u, n)))
            return 0;
    return 1;
}

/* A string: escapes as the RFC lists them, no raw control bytes, valid UTF-8. */
static int json_chk_string(struct json_chk *c)
{
    size_t k;

    c->i++; /* the opening quote */
    while (c->i < c->n) {
        unsigned char ch = c->s[c->i];
        if (ch == '"') {
            c->i++;
            return 0;
        }
        if (ch < 0x20)
            return -1;
        if (ch == '\\') {
            if (++c->i >= c->n)
                return -1;
            if (c->s[c->i] == 'u') {
                for (k = 1; k <= 4; k++)
                    if (c->i + k >= c->n || !isxdigit(c->s[c->i + k]))
                        return -1;
                c->i += 5;
            } else if (strchr("\"\\/bfnrt", c->s[c->i]) && c->s[c->i]) {
                c->i++;
            } else {
                return -1;
            }
        } else if (ch < 0x80) {
            c->i++;
        } else if ((k = json_utf8_len(c->s + c->i, c->n - c->i)) > 0) {
            c->i += k;
        } else {
            return -1;
        }
    }
    return -1;
}

/* Digits: at least one. */
static int json_chk_digits(struct json_chk *c)
{
    size_t i0 = c->i;

    while (c->i < c->n && isdigit(c->s[c->i]))
        c->i++;
    return c->i > i0 ? 0 : -1;
}

/* -? (0 | [1-9][0-9]*) (. digits)? ([eE] [+-]? digits)? */
static int json_chk_number(struct json_chk *c)
{
    if (c->s[c->i] == '-')
        c->i++;
    if (c->i < c->n && c->s[c->i] == '0')
        c->i++;
    else if (json_chk_digits(c) < 0)
        return -1;
    if (c->i < c->n && c->s[c->i] == '.') {
        c->i++;
        if (json_chk_digits(c) < 0)
            return -1;
    }
    if (c->i < c->n && (c->s[c->i] == 'e' || c->s[c->i] == 'E')) {
        c->i++;
        if (c->i < c->n && (c->s[c->i] == '+' || c->s[c->i] == '-'))
            c->i++;
        if (json_chk_digits(c) < 0)
            return -1;
    }
    return 0;
}

/* A literal word. */
static int json_chk_word(struct json_chk *c, const char *w)
{
    size_t n = strlen(w);

    if (c->n - c->i < n || memcmp(c->s + c->i, w, n) != 0)
        return -1;
    c->i += n;
    return 0;
}

/* An object or an array (close is '}' or ']'). */
static int json_chk_container(struct json_chk *c, char close)
{
    if (++c->depth > c->max_depth) {
        c->too_deep = 1;
        return -1;
    }
    c->i++;
    json_chk_ws(c);
    if (c->i < c->n && c->s[c->i] == close) {
        c->i++;
        c->depth--;
        return 0;
    }
    for (;;) {
        json_chk_ws(c);
        if (close == '}') {
            if (c->i >= c->n || c->s[c->i] != '"' || json_chk_string(c) < 0)
                return -1;
            json_chk_ws(c);
            if (c->i >= c->n || c->s[c->i++] != ':')
                return -1;
        }
        if (json_chk_value(c) < 0)
            return -1;
        json_chk_ws(c);
        if (c->i < c->n && c->s[c->i] == ',') {
            c->i++;
            continue;
        }
        if (c->i < c->n && c->s[c->i] == close) {
            c->i++;
            c->depth--;
            return 0;
        }
        return -1;
    }
}

/* Any value. */
static int json_chk_value(struct json_chk *c)
{
    json_chk_ws(c);
    if (c->i >= c->n)
        return -1;
    switch (c->s[c->i]) {
    case '{':
        return json_chk_container(c, '}');
    case '[':
        return json_chk_container(c, ']');
    case '"':
        return json_chk_string(c);
    case 't':
        return json_chk_word(c, "true");
    case 'f':
        return json_chk_word(c, "false");
    case 'n':
        return json_chk_word(c, "null");
    default:
        return json_chk_number(c);
    }
}

/* Check s[0..len) is exactly one strict JSON value (blanks around it allowed). */
static int json_strict(const char *s, size_t len, unsigned max_depth, char *err,
                       size_t errlen)
{
    struct json_chk c = {(const unsigned char *)s, len, 0, 0, max_depth, 0};
    int r = json_chk_value(&c);

    if (r == 0) {
        json_chk_ws(&c);
        if (c.i == c.n)
            return 0;
    }
    if (c.too_deep) {
        snprintf(err, errlen, "JSON nested deeper than %u levels", max_depth);
        return -E2BIG;
    }
    snprintf(err, errlen, "malformed JSON near byte %zu", c.i);
    return -EINVAL;
}

#define JSON_MAX_MEMBERS 1024 /* per object or array */
#define JSON_KEYS_STACK  64

static int json_keycmp(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* A key that occurs twice among the n members of an object: its keys
 * sorted, then neighbours compared (O(n log n): a 64 KiB body of junk
 * members was millions of comparisons pairwise). 0, -EEXIST, -ENOMEM. */
static int json_dup_keys(const cJSON *obj, unsigned n, const char **what)
{
    const char *stack[JSON_KEYS_STACK], **keys = stack;
    const cJSON *a;
    unsigned k = 0, i;
    int r = 0;

    if (n > JSON_KEYS_STACK && !(keys = util_counted_malloc(n * sizeof(*keys))))
        return -ENOMEM;
    for (a = obj->child; a && k < n; a = a->next)
        if (a->string)
            keys[k++] = a->string;
    qsort(keys, k, sizeof(*keys), json_keycmp);
    for (i = 1; i < k && !r; i++)
        if (strcmp(keys[i - 1], keys[i]) == 0) {
            *what = keys[i];
            r = -EEXIST;
        }
    if (keys != stack)
        free(keys);
    return r;
}

/*
 * Check every object in the tree: -EEXIST when a key occurs twice (*what =
 * the key), -E2BIG when an object or array has more than JSON_MAX_MEMBERS,
 * -ENOMEM.
 */
static int json_check(const cJSON *node, const char **what)
{
    const cJSON *a;
    unsigned n = 0;
    int r;

    for (a = node ? node->child : NULL; a; a = a->next) {
        if (++n > JSON_MAX_MEMBERS)
            return -E2BIG;
        if ((cJSON_IsObject(a) || cJSON_IsArray(a)) && (r = json_check(a, what)) < 0)
            return r;
    }
    return cJSON_IsObject(node) && n > 1 ? json_dup_keys(node, n, what) : 0;
}

void json_init(void)
{
    cJSON_Hooks hooks = {.malloc_fn = util_counted_malloc, .free_fn = free};

    cJSON_InitHooks(&hooks);
}

/* Parse one bounded JSON value. */
int json_parse(const char *s, size_t len, unsigned max_depth, cJSON **out, char *err,
               size_t errlen)
{
    const char *end = NULL, *dup = NULL;
    unsigned long before;
    cJSON *root;
    int r;

    r = json_strict(s, len, max_depth, err, errlen);
    if (r < 0)
        return r;
    before = util_alloc_failures();
    root = cJSON_ParseWithLengthOpts(s, len, &end, 0);
    if (!root && util_alloc_failures() != before) {
        snprintf(err, errlen, "out of memory parsing JSON");
        return -ENOMEM;
    }
    if (!root) {
        snprintf(err, errlen, "malformed JSON");
        return -EINVAL;
    }
    r = json_check(root, &dup);
    if (r < 0) {
        if (r == -ENOMEM)
            snprintf(err, errlen, "out of memory checking JSON keys");
        else if (r == -EEXIST)
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
