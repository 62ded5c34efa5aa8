/*
 * alipay_response.c: cut the signed member out of an Alipay OpenAPI
 * response with a small string-aware scanner of the top-level object, and
 * verify it. No JSON library is used for the signed text: re-serialising
 * would change the bytes Alipay signed.
 */
#include "providers/alipay/response.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define AR_KEY_MAX 128

/* A cursor over the raw text. */
struct ar_scan {
    const char *s;
    size_t n, i;
};

/* Skip JSON whitespace. */
static void ar_ws(struct ar_scan *c)
{
    while (c->i < c->n && strchr(" \t\r\n", c->s[c->i]) && c->s[c->i])
        c->i++;
}

/* Skip a string starting at its opening quote; 0 or -EINVAL. */
static int ar_string(struct ar_scan *c)
{
    if (c->i >= c->n || c->s[c->i] != '"')
        return -EINVAL;
    for (c->i++; c->i < c->n; c->i++) {
        if (c->s[c->i] == '\\') {
            c->i++;
        } else if (c->s[c->i] == '"') {
            c->i++;
            return 0;
        }
    }
    return -EINVAL;
}

#define AR_DEPTH_MAX 128 /* nesting accepted inside a response */

/* Skip an object or array: brackets outside strings must pair by kind
 * ('{' with '}', '[' with ']'), tracked on a bounded stack (no recursion). */
static int ar_nested(struct ar_scan *c)
{
    char open[AR_DEPTH_MAX];
    size_t depth = 0;

    while (c->i < c->n) {
        char ch = c->s[c->i];
        if (ch == '"') {
            if (ar_string(c) < 0)
                return -EINVAL;
            continue;
        }
        c->i++;
        if (ch == '{' || ch == '[') {
            if (depth == AR_DEPTH_MAX)
                return -EINVAL;
            open[depth++] = ch;
        } else if (ch == '}' || ch == ']') {
            if (depth == 0 || open[depth - 1] != (ch == '}' ? '{' : '['))
                return -EINVAL;
            if (--depth == 0)
                return 0;
        }
    }
    return -EINVAL;
}

/* Skip any value: string, object, array, or a scalar up to , } or blank. */
static int ar_value(struct ar_scan *c)
{
    size_t v0 = c->i;

    if (c->i >= c->n)
        return -EINVAL;
    if (c->s[c->i] == '"')
        return ar_string(c);
    if (c->s[c->i] == '{' || c->s[c->i] == '[')
        return ar_nested(c);
    while (c->i < c->n && !strchr(",} \t\r\n", c->s[c->i]))
        c->i++;
    return c->i > v0 ? 0 : -EINVAL;
}

/*
 * Walk the members of the top-level object; the first member named `key`
 * gives [*vstart, *vend). Returns how many members have that name, or
 * -EINVAL when the text is not a well-formed object at this level.
 */
static int ar_find(const char *raw, size_t raw_len, const char *key, size_t *vstart,
                   size_t *vend)
{
    struct ar_scan c = {raw, raw_len, 0};
    size_t klen = strlen(key), k0, v0;
    int found = 0, match;

    ar_ws(&c);
    if (c.i >= c.n || raw[c.i++] != '{')
        return -EINVAL;
    ar_ws(&c);
    if (c.i < c.n && raw[c.i] == '}')
        return 0;
    for (;;) {
        ar_ws(&c);
        k0 = c.i + 1;
        if (ar_string(&c) < 0)
            return -EINVAL;
        match = c.i - 1 - k0 == klen && memcmp(raw + k0, key, klen) == 0;
        ar_ws(&c);
        if (c.i >= c.n || raw[c.i++] != ':')
            return -EINVAL;
        ar_ws(&c);
        v0 = c.i;
        if (ar_value(&c) < 0)
            return -EINVAL;
        if (match && found++ == 0) {
            *vstart = v0;
            *vend = c.i;
        }
        ar_ws(&c);
        if (c.i < c.n && raw[c.i] == ',') {
            c.i++;
            continue;
        }
        return c.i < c.n && raw[c.i] == '}' ? found : -EINVAL;
    }
}

/* The exact extent of the object value of a top-level member. */
int alipay_response_content(const char *raw, size_t raw_len, const char *key,
                            size_t *start, size_t *len)
{
    size_t v0 = 0, v1 = 0;
    int n = ar_find(raw, raw_len, key, &v0, &v1);

    if (n < 0)
        return n;
    if (n == 0)
        return -ENOENT;
    if (n > 1)
        return -EEXIST;
    if (raw[v0] != '{')
        return -EINVAL;
    *start = v0;
    *len = v1 - v0;
    return 0;
}

/* Resolve the escapes of a JSON string body (ASCII only: base64 needs no more). */
static int ar_unescape(const char *s, size_t n, char **out)
{
    char *o = malloc(n + 1), *p = o;
    size_t i, k;
    unsigned v;

    if (!o)
        return -ENOMEM;
    for (i = 0; i < n; i++) {
        if (s[i] != '\\') {
            *p++ = s[i];
            continue;
        }
        if (++i >= n)
            goto bad;
        switch (s[i]) {
        case '"':
        case '\\':
        case '/':
            *p++ = s[i];
            break;
        case 'u':
            /* Exactly four hex digits, read within n (no sscanf: it would
             * scan past an unterminated buffer and accept "\u 41"). */
            if (i + 4 >= n)
                goto bad;
            for (v = 0, k = 1; k <= 4; k++) {
                if (!isxdigit((unsigned char)s[i + k]))
                    goto bad;
                v = v * 16 +
                    (unsigned)(isdigit((unsigned char)s[i + k])
                                   ? s[i + k] - '0'
                                   : (tolower((unsigned char)s[i + k]) - 'a' + 10));
            }
            if (v == 0 || v > 0x7f)
                goto bad;
            *p++ = (char)v;
            i += 4;
            break;
        default:
            goto bad;
        }
    }
    *p = '\0';
    *out = o;
    return 0;
bad:
    free(o);
    return -EINVAL;
}

/* The top-level "sign" string, unescaped. */
int alipay_response_sign(const char *raw, size_t raw_len, char **sign)
{
    size_t v0 = 0, v1 = 0;
    int n = ar_find(raw, raw_len, "sign", &v0, &v1);

    if (n < 0)
        return n;
    if (n == 0)
        return -ENOKEY;
    if (n > 1)
        return -EEXIST;
    if (raw[v0] != '"' || v1 - v0 < 2)
        return -EINVAL;
    return ar_unescape(raw + v0 + 1, v1 - v0 - 2, sign);
}

/* The response member of a method: dots become underscores, "_response" appended. */
static int ar_member(const char *method, char *out, size_t outlen)
{
    size_t i, n = strlen(method);

    if (n == 0 || n + sizeof("_response") > outlen)
        return -EINVAL;
    for (i = 0; i < n; i++)
        out[i] = method[i] == '.' ? '_' : method[i];
    memcpy(out + n, "_response", sizeof("_response"));
    return 0;
}

/* Verify content (then with "\/" unescaped, if it has any) against sign. */
static int ar_check(const char *content, size_t len, const char *sign,
                    const struct crypto_key *key, enum crypto_hash hash)
{
    char *fixed;
    size_t i, j;
    int r = crypto_rsa_verify_b64(key, hash, content, len, sign, strlen(sign));

    if (r != -EBADMSG || !memmem(content, len, "\\/", 2))
        return r;
    fixed = malloc(len);
    if (!fixed)
        return -ENOMEM;
    for (i = j = 0; i < len; i++) {
        if (content[i] == '\\' && i + 1 < len && content[i + 1] == '/')
            continue;
        fixed[j++] = content[i];
    }
    r = crypto_rsa_verify_b64(key, hash, fixed, j, sign, strlen(sign));
    free(fixed);
    return r;
}

/* Verify a response to method. */
int alipay_response_verify(const char *raw, size_t raw_len, const char *method,
                           const struct crypto_key *key, enum crypto_hash hash, char *err,
                           size_t errlen)
{
    char member[AR_KEY_MAX], *sign = NULL;
    size_t start = 0, len = 0;
    int r;

    if (ar_member(method, member, sizeof(member)) < 0) {
        snprintf(err, errlen, "bad method name");
        return -EINVAL;
    }
    r = alipay_response_content(raw, raw_len, member, &start, &len);
    if (r == -ENOENT)
        r = alipay_response_content(raw, raw_len, "error_response", &start, &len);
    if (r < 0) {
        snprintf(err, errlen, "%s: %s", member,
                 r == -ENOENT   ? "absent"
                 : r == -EEXIST ? "occurs twice"
                                : "malformed response");
        return r;
    }
    r = alipay_response_sign(raw, raw_len, &sign);
    if (r < 0) {
        snprintf(err, errlen, "sign: %s",
                 r == -ENOKEY   ? "absent (unsigned response)"
                 : r == -EEXIST ? "occurs twice"
                                : "not a valid string");
        return r;
    }
    r = ar_check(raw + start, len, sign, key, hash);
    free(sign);
    if (r < 0)
        snprintf(err, errlen, "%s",
                 r == -EBADMSG || r == -EINVAL ? "signature does not verify"
                                               : "cannot verify");
    return r == -EINVAL ? -EBADMSG : r;
}
