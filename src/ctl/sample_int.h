/*
 * sample_int.h: what the sample builders share and nobody else sees.
 *
 * ctl/sample.c holds what every builder uses: the option table, --field,
 * the signed-form path, the table of (provider, kind) builders, dispatch and
 * sending. Each platform's builders sit beside its callback handler and its
 * query, in providers/NAME/sample.c, and each fills one struct sample_kind
 * per kind (declared at the end). The public API is ctl/sample.h.
 */
#ifndef PAYHOOKD_SAMPLE_INT_H
#define PAYHOOKD_SAMPLE_INT_H

#include <stddef.h>

#include "ctl/sample.h"
#include "wire/crypto.h"
#include "wire/form.h"

struct cJSON;
struct form_spec; /* below, with the other form kinds' types */

#define SAMPLE_NONCE_MAX 64
#define SAMPLE_ID_MAX    64 /* bytes of an id or text option */

#define FORM_TYPE   "application/x-www-form-urlencoded"
#define GATEWAY_ANY "gateway.NAME"

/* The TP builder's defaults, which the option table's help text names. */
#define TP_DEFAULT_EVENT     "APP_PAYMENT_CREATE_ACCOUNT_PASS"
#define TP_DEFAULT_APP_ID    "14508451"
#define TP_DEFAULT_TP_APP_ID "10086"

/* One (provider, kind) builder. */
struct sample_kind {
    struct sample_kind_info info;
    const char *content_type;
    const struct form_spec *form; /* the form kinds' common part, else NULL */
    /* Check the options, take defaults from cfg, set s->state. */
    int (*prepare)(struct sample *s, const struct sample_opts *o,
                   const struct config *cfg, char *err, size_t errlen);
    /* Append request `index` to out. */
    int (*build)(struct sample *s, unsigned index, struct buf *out, char *err,
                 size_t errlen);
    /* Free s->state (NULL-safe, also when prepare failed half-way). */
    void (*release)(void *state);
};

/* One --field, split at its first '=' (value points into key's block). */
struct sample_field {
    char *key;
    const char *value;
};

struct sample {
    const struct sample_kind *k;
    unsigned count;
    long long now;               /* --timestamp, or the time sample_new ran */
    char timestamp[24];          /* the same as text */
    char *nonce;                 /* --nonce, or NULL: random per request */
    struct crypto_key *key;      /* --private-key, for kinds that sign with it */
    struct sample_field *fields; /* --field, a later one replacing an earlier */
    size_t n_fields;
    void *state; /* the builder's own: secrets, prepared message */
};

/* An id that request i makes distinct: a number plus i, or text sent as given. */
struct sample_id {
    char text[SAMPLE_ID_MAX + 1];
    unsigned long long base;
    int numeric;
};

/* ---- signed forms (Baidu cashier, Alipay, gateways) -------------------- */

/* One field of a form kind's message; a NULL value leaves the field out. */
struct sample_kv {
    const char *key;
    const char *value;
};

/* How a form kind signs: the canonical string, then RSA or MD5 over it. */
struct form_signer {
    struct form_canon_rule rule;
    const char *field;     /* where the signature goes: "rsaSign" or "sign" */
    enum crypto_hash hash; /* RSA: the digest */
    int md5;               /* 1: hex MD5 of the string with rule.append (a secret) */
    int md5_upper;
};

enum form_money { FORM_NO_MONEY, FORM_FEN, FORM_YUAN };

/* What differs between the form kinds besides their fields. */
struct form_spec {
    const struct form_signer *sign; /* NULL: from the config (gateways) */
    const char *status;             /* --status default; NULL: the kind has none */
    enum form_money money;          /* how --amount is written */
    const char *const *unique;      /* fields of which one must differ per request */
};

/* What a form kind keeps between requests. */
struct form_sample {
    struct form_signer sign;
    char *owned; /* a gateway's exclude list and secret (rule points here), wiped */
    size_t owned_len;
    struct sample_id id;            /* made distinct per request */
    char order[SAMPLE_ID_MAX + 1];  /* Baidu refunds: the paid orderId */
    char app[SAMPLE_ID_MAX + 1];    /* dealId or app_id; empty: none */
    char seller[SAMPLE_ID_MAX + 1]; /* Alipay seller_id; empty: none */
    char status[SAMPLE_ID_MAX + 1];
    char money[32];        /* --amount as the platform writes it */
    const char *sign_type; /* gateways: "MD5" or "RSA" */
};

/* ---- what every builder may call (ctl/sample.c) ---------------------- */

/* Write a reason into err and return rc. */
int __attribute__((format(printf, 4, 5)))
sample_fail(char *err, size_t errlen, int rc, const char *fmt, ...);

/* A decimal whole number of 1..20 digits, at most max. 0 or -EINVAL. */
int sample_uint(const char *s, unsigned long long max, unsigned long long *v);

/* Wipe and free a string. */
void sample_free_secret(char *s);

/* The nonce of one request: --nonce, or a random 9-digit number. */
int sample_nonce(const struct sample *s, char out[SAMPLE_NONCE_MAX + 1], char *err,
                 size_t errlen);

/* "YYYY-MM-DD HH:MM:SS" in UTC+8, the way the platforms write times. */
void sample_cst(long long unix_seconds, char out[24]);

/* A text value (what, or its default) copied into out: 1..SAMPLE_ID_MAX bytes. */
int sample_text(const char *what, const char *v, const char *def,
                char out[SAMPLE_ID_MAX + 1], char *err, size_t errlen);

/* Request index's value of an id. */
void sample_id_at(const struct sample_id *id, unsigned index,
                  char out[SAMPLE_ID_MAX + 1]);

/* Apply every --field to a JSON message object. */
int sample_json_fields(struct cJSON *obj, const struct sample *s, char *err,
                       size_t errlen);

/* Allocate a form kind's state (s->state, *out) and read what every form kind
 * shares: the signer, --status, --amount and the id that varies (given by
 * option `what`, or random). */
int sample_form_prepare(struct sample *s, const struct sample_opts *o, const char *what,
                        const char *id, struct form_sample **out, char *err,
                        size_t errlen);

/* Fill, sign and append the urlencoded body: the one path of every form kind. */
int sample_form_build(struct sample *s, const struct sample_kv *kv, size_t n,
                      struct buf *out, char *err, size_t errlen);

/* Free a form kind's state (the gateway secret wiped); the form kinds' release. */
void sample_form_release(void *state);

/* ---- the builders, in the order of `payhookctl sample --list` ---------- */

/* providers/baidu/sample.c */
extern const struct sample_kind sample_baidu_tp_push;
extern const struct sample_kind sample_baidu_pay_notify;
extern const struct sample_kind sample_baidu_refund_audit;
extern const struct sample_kind sample_baidu_refund_notify;
/* providers/alipay/sample.c */
extern const struct sample_kind sample_alipay_notify;
/* providers/gateway/sample.c */
extern const struct sample_kind sample_gateway_notify;

#endif
