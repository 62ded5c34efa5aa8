/*
 * provider.c: the registry of providers and the route table built from them.
 */
#include "providers/provider.h"

#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "wire/amount.h"
#include "wire/crypto.h"
#include "wire/form.h"
#include "wire/json.h"
#include "lib/metrics.h"

extern const struct provider provider_baidu_tp;
extern const struct provider provider_baidu_pay;
extern const struct provider provider_gateway;
extern const struct provider provider_alipay;

const struct provider *const providers[] = {
    &provider_baidu_tp, &provider_baidu_pay, &provider_gateway, &provider_alipay, NULL,
};

#define ROUTES_MAX 64

struct routes {
    struct route r[ROUTES_MAX];
    size_t n;
    void *states[ROUTES_MAX]; /* one per provider, index as in providers[] */
};

const char *const route_builtin_paths[ROUTE_BUILTINS] = {NULL, "/healthz", "/readyz",
                                                         "/metrics"};

/* Add a route. */
int routes_add(struct routes *rt, const char *path, const struct route_ops *ops,
               const void *state, char *err, size_t errlen)
{
    const struct route *old = routes_find(rt, path);

    /* The daemon answers these itself before any route: a callback
     * configured there would never reach its provider. */
    for (size_t i = 1; i < ROUTE_BUILTINS; i++)
        if (strcmp(path, route_builtin_paths[i]) == 0) {
            snprintf(err, errlen, "path %s is payhookd's own (/healthz, /readyz, /metrics); "
                     "choose another for %s", path, ops->kind);
            return -EINVAL;
        }
    if (old) {
        snprintf(err, errlen, "path %s is used twice (%s and %s)", path, old->ops->kind,
                 ops->kind);
        return -EEXIST;
    }
    if (rt->n == ROUTES_MAX) {
        snprintf(err, errlen, "too many routes (max %d)", ROUTES_MAX);
        return -E2BIG;
    }
    rt->r[rt->n].path = strdup(path);
    if (!rt->r[rt->n].path)
        return -ENOMEM;
    rt->r[rt->n].ops = ops;
    rt->r[rt->n].state = state;
    rt->r[rt->n].metrics = metrics_route(path);
    rt->n++;
    return 0;
}

/* Find the route of a path (a handful of routes: a scan is fastest). */
const struct route *routes_find(const struct routes *rt, const char *path)
{
    size_t i;

    for (i = 0; i < rt->n; i++)
        if (strcmp(rt->r[i].path, path) == 0)
            return &rt->r[i];
    return NULL;
}

/* Build the table: every provider loads its state and adds its routes. */
int routes_build(const struct config *c, struct routes **out, char *err, size_t errlen)
{
    struct routes *rt = calloc(1, sizeof(*rt));
    char msg[384];
    size_t i;
    int r;

    if (!rt)
        return -ENOMEM;
    for (i = 0; providers[i]; i++) {
        msg[0] = '\0';
        r = providers[i]->load(c, rt, &rt->states[i], msg, sizeof(msg));
        if (r < 0) {
            snprintf(err, errlen, "%s: %s", providers[i]->name, msg);
            routes_free(rt);
            return r;
        }
    }
    *out = rt;
    return 0;
}

/* Free the table and provider states. */
struct routes *routes_free(struct routes *rt)
{
    size_t i;

    if (!rt)
        return NULL;
    for (i = 0; providers[i]; i++)
        if (rt->states[i])
            providers[i]->unload(rt->states[i]);
    for (i = 0; i < rt->n; i++)
        free(rt->r[i].path);
    free(rt);
    return NULL;
}

/* Fill a rejection. */
enum provider_verdict provider_reject(struct provider_reply *out, int status,
                                      const char *reason, const char *body,
                                      const char *fmt, ...)
{
    char detail[sizeof(out->detail)];
    va_list ap;

    out->status = status;
    out->reason = reason;
    out->body = body;
    out->content_type = "text/plain; charset=utf-8";
    /* Through a copy: callers may pass out->detail itself as an argument. */
    va_start(ap, fmt);
    vsnprintf(detail, sizeof(detail), fmt, ap);
    va_end(ap);
    memcpy(out->detail, detail, sizeof(detail));
    return PROVIDER_ANSWER;
}

/* JSON routes refuse bodies that announce themselves as forms or multipart. */
int provider_accepts_json(const char *ct)
{
    return !ct || (strncasecmp(ct, "multipart/", 10) != 0 &&
                   strcasestr(ct, "x-www-form-urlencoded") == NULL);
}

/* Form routes take any type a form can arrive with (the platforms' headers
 * vary and are undocumented) but not multipart or JSON. */
int provider_accepts_form(const char *ct)
{
    return !ct ||
           (strncasecmp(ct, "multipart/", 10) != 0 && strcasestr(ct, "json") == NULL);
}

/* form_free for arena_own. */
static void provider_form_free(void *f)
{
    form_free(f);
}

/* The first field whose value holds a NUL byte, or NULL. */
static const struct form_field *provider_nul_field(const struct form *f)
{
    size_t i;

    for (i = 0; i < form_count(f); i++) {
        const struct form_field *fl = form_at(f, i);
        if (memchr(fl->value, '\0', fl->value_len))
            return fl;
    }
    return NULL;
}

/* Parse the body as a form or reject with 400. */
enum provider_verdict provider_form(const struct provider_request *rq,
                                    struct provider_reply *out, const char *body,
                                    struct form **f)
{
    char why[200], key[FORM_DEFAULT_MAX_KEY + 1]; /* no key is longer */
    const struct form_field *nul;
    int r = form_parse(rq->body, rq->body_len, NULL, f, why, sizeof(why));

    if (r == -EEXIST)
        return provider_reject(out, 400, "repeated_key", body, "%s", why);
    if (r == -E2BIG)
        return provider_reject(out, 400, "form_too_large", body, "%s", why);
    if (r == -ENOMEM)
        return provider_reject(out, 503, "no_memory", body,
                               "out of memory parsing the form");
    if (r < 0)
        return provider_reject(out, 400, "bad_form", body, "%s", why);
    /* On failure arena_own has freed the form already: it must not be used. */
    if (!arena_own(out->arena, *f, provider_form_free))
        return provider_reject(out, 503, "no_memory", body, "out of memory");
    if ((nul = provider_nul_field(*f))) {
        /* A key holds no NUL but may hold any other byte (a newline, an
         * escape), and the detail is logged and stored: print it as text. */
        util_escape(nul->key, nul->key_len, UTIL_ESC_QUOTES, key, sizeof(key));
        return provider_reject(out, 400, "bad_field", body,
                               "field %s contains a NUL byte (%%00)", key);
    }
    return PROVIDER_STORE;
}

/* Whether a byte goes into a JSON string as itself: printable ASCII but
 * '"' and '\\'. A table, because every byte of every callback's fields is
 * looked up in it. */
#define PJ_PLAIN(c) ((c) >= 0x20 && (c) < 0x80 && (c) != '"' && (c) != '\\')
static const uint8_t pj_plain[256] = UTIL_BYTE_TABLE(PJ_PLAIN);

/*
 * Append bytes as a JSON string. The result is always valid JSON, whatever
 * the bytes: a byte that is not part of valid UTF-8 (a GBK body, garbage)
 * becomes U+FFFD, control characters and NUL are escaped. The raw body is
 * kept elsewhere byte for byte; this is the readable copy.
 */
static int provider_json_string(struct buf *o, const char *s, size_t n)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0, run, l;
    int r = buf_append(o, "\"", 1);

    while (r == 0 && i < n) {
        /* Plain printable ASCII is the common case: copy it in one go. */
        for (run = i; run < n && pj_plain[p[run]]; run++)
            ;
        if (run > i) {
            r = buf_append(o, p + i, run - i);
            i = run;
        } else if (p[i] == '"' || p[i] == '\\') {
            r = buf_printf(o, "\\%c", p[i++]);
        } else if (p[i] < 0x20) {
            r = buf_printf(o, "\\u%04x", p[i++]);
        } else if ((l = json_utf8_len(p + i, n - i)) == 0) {
            r = buf_append(o, "\\ufffd", 6);
            i++;
        } else {
            r = buf_append(o, p + i, l);
            i += l;
        }
    }
    return r ? r : buf_append(o, "\"", 1);
}

/* The fields as a JSON object of strings (always valid JSON). */
const char *provider_form_json(const struct form *f, struct provider_reply *out)
{
    struct buf o = {0};
    size_t i, need = 2;
    int r;

    for (i = 0; i < form_count(f); i++)
        need += form_at(f, i)->key_len + form_at(f, i)->value_len + 6;
    r = buf_reserve(&o, need); /* one allocation, grown only for escapes */
    r = r ? r : buf_append(&o, "{", 1);

    for (i = 0; r == 0 && i < form_count(f); i++) {
        const struct form_field *fl = form_at(f, i);
        if (i)
            r = buf_append(&o, ",", 1);
        r = r ? r : provider_json_string(&o, fl->key, fl->key_len);
        r = r ? r : buf_append(&o, ":", 1);
        r = r ? r : provider_json_string(&o, fl->value, fl->value_len);
    }
    r = r ? r : buf_append(&o, "}", 1);
    if (r < 0) {
        buf_free(&o);
        return NULL;
    }
    return arena_adopt(out->arena, buf_steal(&o));
}

enum provider_verdict provider_yuan_field(const struct form *f, const char *key,
                                          int64_t *fen, int *has, const char *body,
                                          struct provider_reply *out)
{
    size_t len = 0;
    const char *v = form_get(f, key, &len);
    char q[UTIL_ESC_SIZE(48)];

    if (!v || !len)
        return PROVIDER_STORE;
    if (amount_yuan_to_fen(v, len, fen) < 0)
        return provider_reject(
            out, 400, "bad_amount", body,
            "field %s '%s' is not a yuan amount with at most two decimals", key,
            util_escape(v, len, UTIL_ESC_QUOTES, q, sizeof(q)));
    *has = 1;
    return PROVIDER_STORE;
}

/* Verify the canonical string, with the '+'-decoded-as-space retry. */
/* The signature with key, then with next (the switch's key) when it does not verify. */
static int provider_verify_keys(const struct crypto_key *key, const struct crypto_key *next,
                                enum crypto_hash hash, const char *canon, size_t canon_len,
                                const char *sig, size_t sig_len)
{
    int r = crypto_rsa_verify_b64(key, hash, canon, canon_len, sig, sig_len);

    if (r == -EBADMSG && next)
        r = crypto_rsa_verify_b64(next, hash, canon, canon_len, sig, sig_len);
    return r;
}

int provider_verify_form(const struct form *f, const struct form_canon_rule *rule,
                         const struct crypto_key *key, const struct crypto_key *next,
                         enum crypto_hash hash, const char *sig, size_t sig_len,
                         struct provider_reply *out)
{
    char *canon = NULL, *fixed;
    size_t canon_len, i;
    int r;

    if (form_canonical(f, rule, &canon, &canon_len) < 0)
        return -ENOMEM;
    if (!arena_adopt(out->arena, canon)) /* freed already on failure */
        return -ENOMEM;
    r = provider_verify_keys(key, next, hash, canon, canon_len, sig, sig_len);
    if (r == 0 || !memchr(sig, ' ', sig_len))
        return r;
    fixed = arena_strndup(out->arena, sig, sig_len);
    if (!fixed)
        return -ENOMEM;
    for (i = 0; i < sig_len; i++)
        if (fixed[i] == ' ')
            fixed[i] = '+';
    return provider_verify_keys(key, next, hash, canon, canon_len, fixed, sig_len);
}

/* One part of a dedupe key, ':', '%' and NUL escaped as %XX. */
char *provider_key_part(struct arena *a, const char *v, size_t len)
{
    static const char hex[] = "0123456789ABCDEF";
    char *s = arena_alloc(a, len * 3 + 1), *o = s;
    size_t i;

    if (!s)
        return NULL;
    for (i = 0; i < len; i++) {
        unsigned char c = (unsigned char)v[i];
        if (c == ':' || c == '%' || c == '\0') {
            *o++ = '%';
            *o++ = hex[c >> 4];
            *o++ = hex[c & 15];
        } else {
            *o++ = (char)c;
        }
    }
    *o = '\0';
    return s;
}

/* One more part of a dedupe key: ':' and the escaped value. */
static int provider_key_append(struct buf *k, struct arena *a, const char *v, size_t len)
{
    char *part = provider_key_part(a, v, len);

    if (!part)
        return -ENOMEM;
    return buf_append(k, ":", 1) == 0 ? buf_puts(k, part) : -ENOMEM;
}

/* A dedupe key over form fields. */
char *provider_dedupe_key(struct arena *a, const char *prefix, const struct form *f,
                          const char *const *fields)
{
    return provider_dedupe_key_by(a, prefix, f, fields, SIZE_MAX, form_get);
}

/* A dedupe key over values looked up by get. */
char *provider_dedupe_key_by(struct arena *a, const char *prefix, const struct form *f,
                             const char *const *fields, size_t keep, provider_get_fn get)
{
    struct buf k = {0};
    size_t i, n = 0, len;
    const char *v;
    int r;

    for (i = 0; fields[i]; i++)
        if (i < keep || ((v = get(f, fields[i], &len)) && len))
            n = i + 1;
    r = buf_puts(&k, prefix);
    for (i = 0; r == 0 && i < n; i++) {
        v = get(f, fields[i], &len);
        r = provider_key_append(&k, a, v ? v : "", v ? len : 0);
    }
    if (r < 0) {
        buf_free(&k);
        return NULL;
    }
    return arena_adopt(a, buf_steal(&k));
}
