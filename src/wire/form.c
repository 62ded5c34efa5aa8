/*
 * form.c: parse application/x-www-form-urlencoded bodies into raw decoded
 * bytes, build forms field by field, and produce the canonical strings and
 * encodings the payment platforms sign and expect.
 *
 * A form keeps its fields twice over: in arrival order (form_at) and as an
 * index sorted by key (memcmp order, shorter key first on a common prefix).
 * The sorted index makes form_get a binary search, catches a repeated key
 * the moment it arrives, and gives form_canonical its order for free.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "wire/form.h"
#include "lib/util.h"

/* Longest part of a key quoted in an error message. */
#define FORM_ERR_KEY_MAX 64
/* Room for a quoted key: every byte may become \xNN, plus "..." and NUL. */
#define FORM_QUOTE_SIZE UTIL_ESC_SIZE(FORM_ERR_KEY_MAX)
/* First allocation of the field arrays; they double from there. */
#define FORM_INITIAL_CAP 16

struct form_entry {
    struct form_field field;
    char *own; /* key and value storage of a form_add field, else NULL */
};

struct form {
    struct form_entry *entries; /* arrival order */
    size_t *by_key;             /* indices into entries, sorted by key */
    size_t n;
    size_t cap;
    char *buf; /* decoded bytes of a parsed body, shared by its fields */
};

/* State of one form_parse call. */
struct form_parser {
    const char *body;
    size_t len;
    size_t pos;      /* next raw byte to read */
    char *out;       /* next decoded byte to write */
    size_t field_no; /* 1-based number of the pair being parsed */
    struct form_limits lim;
    char *err;
    size_t errlen;
};

static void form_err(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Write a formatted reason into err, if the caller gave a buffer. */
static void form_err(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;

    if (!err || errlen == 0)
        return;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

/* Byte order of two keys: memcmp, then the shorter one first. */
static int form_keycmp(const char *a, size_t alen, const char *b, size_t blen)
{
    int c = memcmp(a, b, alen < blen ? alen : blen);

    if (c != 0)
        return c;
    return (alen > blen) - (alen < blen);
}

/* Binary search of the sorted index: 1 and *pos = its slot when key is
 * present, else 0 and *pos = where it would be inserted. */
static int form_find(const struct form *f, const char *key, size_t klen, size_t *pos)
{
    size_t lo = 0, hi = f->n;

    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        const struct form_field *m = &f->entries[f->by_key[mid]].field;
        int c = form_keycmp(key, klen, m->key, m->key_len);
        if (c == 0) {
            *pos = mid;
            return 1;
        }
        if (c < 0)
            hi = mid;
        else
            lo = mid + 1;
    }
    *pos = lo;
    return 0;
}

/* Make room for one more field; the form is unchanged on failure. */
static int form_reserve(struct form *f)
{
    struct form_entry *e;
    size_t *k, cap;

    if (f->n < f->cap)
        return 0;
    cap = f->cap ? f->cap * 2 : FORM_INITIAL_CAP;
    if (cap > SIZE_MAX / sizeof(*e))
        return -ENOMEM;
    e = realloc(f->entries, cap * sizeof(*e));
    if (!e)
        return -ENOMEM;
    f->entries = e;
    k = realloc(f->by_key, cap * sizeof(*k));
    if (!k)
        return -ENOMEM;
    f->by_key = k;
    f->cap = cap;
    return 0;
}

/* Append a field whose bytes already live in the form (buf or own). */
static int form_put(struct form *f, const char *key, size_t klen, const char *val,
                    size_t vlen, char *own)
{
    struct form_entry *e;
    size_t pos;
    int r;

    if (form_find(f, key, klen, &pos))
        return -EEXIST;
    r = form_reserve(f);
    if (r < 0)
        return r;
    e = &f->entries[f->n];
    e->field = (struct form_field){key, klen, val, vlen};
    e->own = own;
    memmove(f->by_key + pos + 1, f->by_key + pos, (f->n - pos) * sizeof(*f->by_key));
    f->by_key[pos] = f->n++;
    return 0;
}

/* An empty form to fill with form_add. */
struct form *form_new(void)
{
    return calloc(1, sizeof(struct form));
}

/* Free a form and everything its fields own; NULL-safe. */
struct form *form_free(struct form *f)
{
    size_t i;

    if (!f)
        return NULL;
    for (i = 0; i < f->n; i++)
        free(f->entries[i].own);
    free(f->entries);
    free(f->by_key);
    free(f->buf);
    free(f);
    return NULL;
}

/* Append a copy of (key, value); keys are unique, non-empty and NUL-free. */
int form_add(struct form *f, const char *key, size_t key_len, const char *value,
             size_t value_len)
{
    char *own;
    int r;

    if (!f || !key || key_len == 0 || memchr(key, '\0', key_len))
        return -EINVAL;
    if (!value && value_len > 0)
        return -EINVAL;
    if (key_len > SIZE_MAX - 2 || value_len > SIZE_MAX - 2 - key_len)
        return -ENOMEM;
    own = malloc(key_len + value_len + 2);
    if (!own)
        return -ENOMEM;
    memcpy(own, key, key_len);
    own[key_len] = '\0';
    if (value_len > 0)
        memcpy(own + key_len + 1, value, value_len);
    own[key_len + 1 + value_len] = '\0';
    r = form_put(f, own, key_len, own + key_len + 1, value_len, own);
    if (r < 0)
        free(own);
    return r;
}

/* Value of key, or NULL when absent. */
const char *form_get(const struct form *f, const char *key, size_t *len)
{
    const struct form_field *fd;
    size_t pos;

    if (!f || !key || !form_find(f, key, strlen(key), &pos))
        return NULL;
    fd = &f->entries[f->by_key[pos]].field;
    if (len)
        *len = fd->value_len;
    return fd->value;
}

/* Number of fields. */
size_t form_count(const struct form *f)
{
    return f ? f->n : 0;
}

/* Field i in arrival order, or NULL when out of range. */
const struct form_field *form_at(const struct form *f, size_t i)
{
    if (!f || i >= f->n)
        return NULL;
    return &f->entries[i].field;
}

/* Value of one hex digit, or -1. */
static int form_hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

/* Decode the byte at p->pos ('+' is a space, %XX one byte) into *c.
 * Returns 0, or -EINVAL (with p->pos at the bad '%') for a bad escape. */
static int form_decode_byte(struct form_parser *p, char *c)
{
    const char *s = p->body + p->pos;
    int hi, lo;

    if (*s == '+') {
        *c = ' ';
        p->pos++;
        return 0;
    }
    if (*s != '%') {
        *c = *s;
        p->pos++;
        return 0;
    }
    if (p->len - p->pos < 3)
        return -EINVAL;
    hi = form_hexval(s[1]);
    lo = form_hexval(s[2]);
    if (hi < 0 || lo < 0)
        return -EINVAL;
    *c = (char)(hi << 4 | lo);
    p->pos += 3;
    return 0;
}

/*
 * Bytes that decode to themselves and need no check: everything but '%',
 * '+', the pair separator '&', NUL (refused in keys), and for keys also '='.
 * The parser copies runs of them at once and takes the rest byte by byte.
 */
enum { FORM_PLAIN_VALUE = 1, FORM_PLAIN_KEY = 2 };
#define FORM_PLAIN(c)                                                                    \
    ((c) == 0 || (c) == '%' || (c) == '&' || (c) == '+' ? 0                              \
     : (c) == '='                                       ? FORM_PLAIN_VALUE               \
                  : FORM_PLAIN_VALUE | FORM_PLAIN_KEY)
static const uint8_t form_plain[256] = UTIL_BYTE_TABLE(FORM_PLAIN);

/* Copy the run of plain bytes at p->pos to dst + *n, at most max - *n of
 * them; 1 when the run went past max (the caller reports it), else 0. */
static int form_copy_plain(struct form_parser *p, uint8_t kind, char *dst, size_t *n,
                           size_t max)
{
    size_t end = p->pos, k;

    while (end < p->len && (form_plain[(unsigned char)p->body[end]] & kind))
        end++;
    k = end - p->pos;
    if (k > max - *n) {
        memcpy(dst + *n, p->body + p->pos, max - *n); /* what the error quotes */
        *n = max;
        return 1;
    }
    memcpy(dst + *n, p->body + p->pos, k);
    *n += k;
    p->pos = end;
    return 0;
}

/* Decode a key up to its '=' (consumed) into p->out, NUL-terminated. */
static int form_parse_key(struct form_parser *p, const char **key, size_t *klen)
{
    char q[FORM_QUOTE_SIZE];
    char *k = p->out;
    size_t n = 0;
    char c;

    while (p->pos < p->len && p->body[p->pos] != '=' && p->body[p->pos] != '&') {
        size_t at = p->pos;
        if (form_plain[(unsigned char)p->body[at]] & FORM_PLAIN_KEY) {
            if (form_copy_plain(p, FORM_PLAIN_KEY, k, &n, p->lim.max_key))
                goto too_long;
            continue;
        }
        if (form_decode_byte(p, &c) < 0) {
            form_err(p->err, p->errlen,
                     "key of field %zu: bad percent-encoding at byte %zu", p->field_no,
                     at);
            return -EINVAL;
        }
        if (c == '\0') {
            form_err(p->err, p->errlen, "key of field %zu: NUL byte at byte %zu",
                     p->field_no, at);
            return -EINVAL;
        }
        if (n == p->lim.max_key)
            goto too_long;
        k[n++] = c;
    }
    if (p->pos == p->len || p->body[p->pos] != '=') {
        util_escape(k, n, UTIL_ESC_QUOTES, q, sizeof(q));
        form_err(p->err, p->errlen, "field '%s' (field %zu): pair without '='", q,
                 p->field_no);
        return -EINVAL;
    }
    if (n == 0) {
        form_err(p->err, p->errlen, "field %zu: empty key at byte %zu", p->field_no,
                 p->pos);
        return -EINVAL;
    }
    p->pos++;
    k[n] = '\0';
    p->out = k + n + 1;
    *key = k;
    *klen = n;
    return 0;
too_long:
    util_escape(k, n, UTIL_ESC_QUOTES, q, sizeof(q));
    form_err(p->err, p->errlen, "field '%s': key longer than %zu bytes", q,
             p->lim.max_key);
    return -E2BIG;
}

/* Decode a value up to the next '&' or the end into p->out, NUL-terminated;
 * a '=' inside the value is data (base64 padding). */
static int form_parse_value(struct form_parser *p, const char *key, size_t klen,
                            const char **val, size_t *vlen)
{
    char q[FORM_QUOTE_SIZE];
    char *v = p->out;
    size_t n = 0;
    char c;

    while (p->pos < p->len && p->body[p->pos] != '&') {
        size_t at = p->pos;
        if (form_plain[(unsigned char)p->body[at]] & FORM_PLAIN_VALUE) {
            if (form_copy_plain(p, FORM_PLAIN_VALUE, v, &n, p->lim.max_value))
                goto too_long;
            continue;
        }
        if (form_decode_byte(p, &c) < 0) {
            util_escape(key, klen, UTIL_ESC_QUOTES, q, sizeof(q));
            form_err(p->err, p->errlen, "field '%s': bad percent-encoding at byte %zu", q,
                     at);
            return -EINVAL;
        }
        if (n == p->lim.max_value)
            goto too_long;
        v[n++] = c;
    }
    v[n] = '\0';
    p->out = v + n + 1;
    *val = v;
    *vlen = n;
    return 0;
too_long:
    util_escape(key, klen, UTIL_ESC_QUOTES, q, sizeof(q));
    form_err(p->err, p->errlen, "field '%s': value longer than %zu bytes", q,
             p->lim.max_value);
    return -E2BIG;
}

/* Parse the pair at p->pos and append it to f. */
static int form_parse_pair(struct form_parser *p, struct form *f)
{
    char q[FORM_QUOTE_SIZE];
    const char *key, *val;
    size_t klen, vlen;
    int r;

    if (f->n == p->lim.max_fields) {
        form_err(p->err, p->errlen, "too many fields (max %zu)", p->lim.max_fields);
        return -E2BIG;
    }
    r = form_parse_key(p, &key, &klen);
    if (r < 0)
        return r;
    r = form_parse_value(p, key, klen, &val, &vlen);
    if (r < 0)
        return r;
    r = form_put(f, key, klen, val, vlen, NULL);
    if (r == -EEXIST) {
        util_escape(key, klen, UTIL_ESC_QUOTES, q, sizeof(q));
        form_err(p->err, p->errlen, "field '%s' occurs twice", q);
    } else if (r < 0) {
        form_err(p->err, p->errlen, "out of memory");
    }
    return r;
}

/* The caller's limits with zero members replaced by the defaults. */
static struct form_limits form_limits_or_default(const struct form_limits *lim)
{
    struct form_limits l = {FORM_DEFAULT_MAX_FIELDS, FORM_DEFAULT_MAX_KEY,
                            FORM_DEFAULT_MAX_VALUE};

    if (lim && lim->max_fields)
        l.max_fields = lim->max_fields;
    if (lim && lim->max_key)
        l.max_key = lim->max_key;
    if (lim && lim->max_value)
        l.max_value = lim->max_value;
    return l;
}

/* Parse a urlencoded body in one pass into a single decoded buffer. */
int form_parse(const char *body, size_t len, const struct form_limits *lim,
               struct form **out, char *err, size_t errlen)
{
    struct form_parser p = {.body = body, .len = len, .err = err, .errlen = errlen};
    struct form *f = NULL;
    int r = -EINVAL;

    if (!out || (!body && len > 0) || len == SIZE_MAX) {
        form_err(err, errlen, "invalid arguments");
        goto out;
    }
    p.lim = form_limits_or_default(lim);
    r = -ENOMEM;
    f = form_new();
    /* Each pair of p raw bytes decodes to at most p - 1 bytes plus two NULs,
     * and pairs are separated by '&', so len + 1 bytes always suffice. */
    if (!f || !(f->buf = malloc(len + 1))) {
        form_err(err, errlen, "out of memory");
        goto out;
    }
    p.out = f->buf;
    for (;;) {
        while (p.pos < len && body[p.pos] == '&')
            p.pos++;
        if (p.pos == len)
            break;
        p.field_no++;
        r = form_parse_pair(&p, f);
        if (r < 0)
            goto out;
    }
    *out = f;
    f = NULL;
    r = 0;
out:
    form_free(f);
    return r;
}

/* Whether the rule leaves this field out of the canonical string. */
static int form_canon_skip(const struct form_field *fd,
                           const struct form_canon_rule *rule)
{
    const char *const *x;

    if (!rule)
        return 0;
    if (rule->drop_empty && fd->value_len == 0)
        return 1;
    for (x = rule->exclude; x && *x; x++)
        if (strlen(*x) == fd->key_len && memcmp(*x, fd->key, fd->key_len) == 0)
            return 1;
    return 0;
}

/* Build the sorted k=v&k=v string (values as decoded) plus rule->append. */
int form_canonical(const struct form *f, const struct form_canon_rule *rule, char **out,
                   size_t *out_len)
{
    const char *app = rule ? rule->append : NULL;
    size_t app_len = app ? rule->append_len : 0;
    size_t i, total = 0, o = 0;
    char *s;

    if (!f || !out)
        return -EINVAL;
    /* Field bytes already live in memory, so this sum cannot overflow. */
    for (i = 0; i < f->n; i++) {
        const struct form_field *fd = &f->entries[f->by_key[i]].field;
        if (!form_canon_skip(fd, rule))
            total += fd->key_len + fd->value_len + 2;
    }
    if (app_len >= SIZE_MAX - total)
        return -ENOMEM;
    s = malloc(total + app_len + 1);
    if (!s)
        return -ENOMEM;
    for (i = 0; i < f->n; i++) {
        const struct form_field *fd = &f->entries[f->by_key[i]].field;
        if (form_canon_skip(fd, rule))
            continue;
        if (o > 0)
            s[o++] = '&';
        memcpy(s + o, fd->key, fd->key_len);
        o += fd->key_len;
        s[o++] = '=';
        memcpy(s + o, fd->value, fd->value_len);
        o += fd->value_len;
    }
    if (app_len > 0)
        memcpy(s + o, app, app_len);
    o += app_len;
    s[o] = '\0';
    *out = s;
    if (out_len)
        *out_len = o;
    return 0;
}

/* Whether a byte is sent as itself by form_encode. */
static int form_unreserved(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
           c == '-' || c == '.' || c == '_' || c == '*';
}

/* Encoded size of n bytes. */
static size_t form_encoded_len(const char *s, size_t n)
{
    size_t i, total = 0;

    for (i = 0; i < n; i++)
        total += (form_unreserved((unsigned char)s[i]) || s[i] == ' ') ? 1 : 3;
    return total;
}

/* Encode n bytes at dst; returns the number of bytes written. */
static size_t form_encode_bytes(char *dst, const char *s, size_t n)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t i, o = 0;

    for (i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (form_unreserved(c)) {
            dst[o++] = (char)c;
        } else if (c == ' ') {
            dst[o++] = '+';
        } else {
            dst[o++] = '%';
            dst[o++] = hex[c >> 4];
            dst[o++] = hex[c & 0x0f];
        }
    }
    return o;
}

/* Encode the form as k=v&k=v in arrival order. */
int form_encode(const struct form *f, char **out, size_t *out_len)
{
    size_t i, total = 0, o = 0;
    char *s;

    if (!f || !out)
        return -EINVAL;
    /* At most three output bytes per stored byte: refuse a form so large
     * that the encoding could not be addressed. */
    for (i = 0; i < f->n; i++) {
        const struct form_field *fd = &f->entries[i].field;
        if (fd->key_len + fd->value_len + 2 > (SIZE_MAX - 1 - total) / 3)
            return -ENOMEM;
        total += form_encoded_len(fd->key, fd->key_len) +
                 form_encoded_len(fd->value, fd->value_len) + 2;
    }
    s = malloc(total + 1);
    if (!s)
        return -ENOMEM;
    for (i = 0; i < f->n; i++) {
        const struct form_field *fd = &f->entries[i].field;
        if (i > 0)
            s[o++] = '&';
        o += form_encode_bytes(s + o, fd->key, fd->key_len);
        s[o++] = '=';
        o += form_encode_bytes(s + o, fd->value, fd->value_len);
    }
    s[o] = '\0';
    *out = s;
    if (out_len)
        *out_len = o;
    return 0;
}
