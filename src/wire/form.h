/*
 * form.h: application/x-www-form-urlencoded bodies, decoded exactly once into
 * raw bytes, and the canonical strings the platforms sign over.
 *
 * A parsed form keeps every value byte for byte as decoded ('+' is a space,
 * %XX is one byte, nothing is transcoded), so a signature can be checked over
 * exactly what the platform signed. Lower layer: never logs; errors come back
 * as -errno with a reason written into the caller's buffer.
 */
#ifndef PAYHOOKD_FORM_H
#define PAYHOOKD_FORM_H

#include <stddef.h>

struct form; /* opaque: an ordered list of (key, value) byte strings */

struct form_field {
    const char *key; /* NUL-terminated; keys never contain NUL */
    size_t key_len;
    const char *value; /* NUL-terminated, but may contain NUL bytes (%00) */
    size_t value_len;
};

/* Bounds applied while parsing; a zero member means the default below. */
struct form_limits {
    size_t max_fields; /* default FORM_DEFAULT_MAX_FIELDS */
    size_t max_key;    /* decoded key bytes, default FORM_DEFAULT_MAX_KEY */
    size_t max_value;  /* decoded value bytes, default FORM_DEFAULT_MAX_VALUE */
};
#define FORM_DEFAULT_MAX_FIELDS 128
#define FORM_DEFAULT_MAX_KEY    64
#define FORM_DEFAULT_MAX_VALUE  16384

/*
 * Parse a urlencoded body. Pairs are split at '&', each pair at its FIRST '='.
 * Empty segments ("a=1&&b=2", a trailing '&') are skipped. Returns 0 and sets
 * *out, or:
 *   -EINVAL  bad percent-encoding, a pair without '=', an empty key, a NUL in a key
 *   -EEXIST  a key that occurs twice (ambiguous: never guess)
 *   -E2BIG   more fields than max_fields, or a key/value over its bound
 *   -ENOMEM  out of memory
 * err (may be NULL) receives a reason naming the offending field.
 */
int form_parse(const char *body, size_t len, const struct form_limits *lim,
               struct form **out, char *err, size_t errlen);

/* An empty form to fill with form_add (for building requests to sign). */
struct form *form_new(void);

/* Append a field (copied). -EEXIST if the key is already present, -EINVAL for
 * an empty key or a key containing NUL, -ENOMEM. */
int form_add(struct form *f, const char *key, size_t key_len, const char *value,
             size_t value_len);

/* Value of key, or NULL when absent; *len (may be NULL) gets its length. */
const char *form_get(const struct form *f, const char *key, size_t *len);

size_t form_count(const struct form *f);

/* Field i (0 <= i < form_count) in arrival order. */
const struct form_field *form_at(const struct form *f, size_t i);

/* Free a form; NULL-safe; returns NULL. */
struct form *form_free(struct form *f);

/* How a platform builds the string it signs from a form. */
struct form_canon_rule {
    const char *const *exclude; /* NULL-terminated keys left out, or NULL */
    int drop_empty;             /* 1: fields with an empty value are left out */
    const char *append;         /* bytes appended after the joined pairs, or NULL */
    size_t append_len;
};

/*
 * Build the canonical string: the fields not excluded (and, with drop_empty,
 * not empty), sorted by key in byte order, joined as k=v with '&', values
 * NOT re-encoded, then `append`. *out is malloc'd and NUL-terminated; *out_len
 * excludes the NUL. Returns 0, -ENOMEM.
 */
int form_canonical(const struct form *f, const struct form_canon_rule *rule, char **out,
                   size_t *out_len);

/*
 * Encode a form as application/x-www-form-urlencoded in field order: ALPHA,
 * DIGIT and "-._*" kept, space as '+', every other byte as %XX (upper hex).
 * *out is malloc'd and NUL-terminated. Returns 0, -ENOMEM.
 */
int form_encode(const struct form *f, char **out, size_t *out_len);

#endif
