/*
 * sample.h: correctly signed sample callbacks, built exactly the way each
 * platform builds them, for payhookctl, the tests and the benchmarks.
 *
 * A sample is one (provider, kind) pair from a table (`payhookctl sample
 * --list`): baidu.tp push, baidu pay_notify / refund_audit / refund_notify,
 * alipay notify and gateway.NAME notify. Options are named once, in a table
 * shared by every builder, so that the command line, the help text and C
 * callers agree; one option may serve several providers, with a meaning
 * stated per provider, and is refused where it does not apply:
 *
 *     struct sample_opts o = {.provider = "baidu.tp", .count = 100};
 *     o.tp.event = "APP_PAYMENT_CREATE_ACCOUNT_PASS";
 *     r = sample_new(&o, cfg, &s, err, sizeof(err));   (cfg supplies defaults)
 *     for (i = 0; i < sample_count(s); i++)
 *         r = sample_build(s, i, &body, err, sizeof(err));
 *     s = sample_free(s);
 *
 * Requests 0 .. count-1 of one sample are pairwise distinct messages (not
 * only distinct envelopes), so a store that deduplicates keeps all of them.
 * Money options are integer fen, whatever the platform writes.
 * Lower layer: never logs; returns 0 or -errno with a reason in err.
 */
#ifndef PAYHOOKD_SAMPLE_H
#define PAYHOOKD_SAMPLE_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "lib/util.h"

struct config;
struct sample; /* opaque: a validated sample with its keys loaded */

#define SAMPLE_FIELDS_MAX 64       /* --field options in one sample */
#define SAMPLE_COUNT_MAX  10000000 /* --count upper bound */

/*
 * What to build. Every string is borrowed (typically from argv) and only
 * read by sample_new. A NULL member means "not given": the provider's
 * config section (when a config is passed to sample_new) or the documented
 * default applies.
 */
struct sample_opts {
    const char *provider;    /* "baidu", "baidu.tp", "alipay", "gateway.NAME" */
    const char *kind;        /* NULL: the provider's default kind */
    unsigned count;          /* distinct requests to build; 0 means 1 */
    const char *timestamp;   /* unix seconds; NULL: now */
    const char *private_key; /* PEM path: the platform's key, for RSA-signed forms */
    const char *app_id;      /* baidu.tp appId; alipay and gateway app_id */
    const char *amount;      /* integer fen */
    const char *status;      /* the platform's status field */
    const char *fields[SAMPLE_FIELDS_MAX]; /* "KEY=VALUE": set a message field */
    size_t n_fields;
    struct {
        const char *token;
        const char *aes_key; /* the 43-character EncodingAESKey */
        const char *client_id;
        const char *nonce;   /* NULL: random per request */
        const char *message; /* a message sent verbatim */
        const char *event;   /* build a payment-service audit event */
        const char *ticket;  /* build a ticket push */
        const char *tp_app_id;
    } tp;
    struct {
        const char *deal_id;
        const char *order_id;
        const char *refund_batch_id;
    } baidu;
    struct {
        const char *secret; /* the MD5 secret, instead of the config's */
    } gateway;
    uint64_t given; /* bit i: option i was set through sample_set */
};

#define SAMPLE_USES_MAX 4

/* Where an option applies and what it means there. */
struct sample_use {
    const char *providers; /* space-separated, as in sample_kind_info; NULL: all */
    const char *kinds;     /* space-separated kinds of them; NULL: all */
    const char *help;      /* one line */
};

/* One option of the table: `--name METAVAR`, with its uses. */
struct sample_option {
    const char *name;                        /* without the leading "--" */
    const char *metavar;                     /* what the value is, for the help text */
    struct sample_use uses[SAMPLE_USES_MAX]; /* unused ones: NULL help */
};

/* One (provider, kind) pair that can be built. */
struct sample_kind_info {
    const char *provider; /* "gateway.NAME" stands for every [gateway NAME] */
    const char *kind;
    int is_default;   /* used when KIND is omitted */
    const char *path; /* the daemon's default route for it */
    const char *summary;
};

/* Option i of the table, or NULL past its end (there are at most 64). */
const struct sample_option *sample_option_at(size_t i);

/*
 * Set option i from its command-line text (count parsed, fields collected,
 * strings borrowed). Returns 0, or -EINVAL / -E2BIG with a reason naming the
 * option in err.
 */
int sample_set(struct sample_opts *o, size_t i, const char *value, char *err,
               size_t errlen);

/* 1 when use u applies to provider (a name of sample_kind_info, "gateway.NAME"). */
int sample_use_for(const struct sample_use *u, const char *provider);

/* Buildable pair i, or NULL past the end of the table. */
const struct sample_kind_info *sample_kind_at(size_t i);

/*
 * Validate o, take defaults from cfg (may be NULL) and load what the kind
 * needs. Returns 0 and sets *out, or -EINVAL when the options are wrong,
 * incomplete, do not apply to the kind or would make requests repeat (err
 * names the option), -ENOENT/-EACCES (a key file), -ENOMEM, -EIO (no
 * randomness for the default ids).
 * o and cfg may be freed afterwards: the sample keeps copies.
 */
int sample_new(const struct sample_opts *o, const struct config *cfg, struct sample **out,
               char *err, size_t errlen);

/* Number of distinct requests the sample builds (its count, at least 1). */
unsigned sample_count(const struct sample *s);

/* Content-Type to send the bodies with. */
const char *sample_content_type(const struct sample *s);

/*
 * Append request `index` (0 <= index < sample_count) to out: a body that
 * contains no newline. Returns 0, -EINVAL (index out of range), -ENOMEM,
 * -EIO (no randomness, or the private key cannot sign).
 */
int sample_build(struct sample *s, unsigned index, struct buf *out, char *err,
                 size_t errlen);

/*
 * Build every request and either print each body and a newline to `out`
 * (url NULL) or POST each to url and print "STATUS BODY" per answer.
 * Returns 0 when everything was printed and every answer was 2xx, the number
 * of non-2xx answers (> 0), or -errno (a build, transport or write failure;
 * err says which request and why).
 */
int sample_send(struct sample *s, const char *url, FILE *out, char *err, size_t errlen);

/* Free a sample (secrets are wiped); NULL-safe; returns NULL. */
struct sample *sample_free(struct sample *s);

#endif
