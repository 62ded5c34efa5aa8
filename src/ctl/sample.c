/*
 * sample.c: builds correctly signed sample callbacks from a table of
 * (provider, kind) builders, and sends them (to stdout or by HTTP POST).
 * Adding a platform's callback is one builder and one entry in
 * sample_kinds[], plus its options in sample_optdefs[]. The form kinds
 * (Baidu cashier, Alipay, gateways) only list their fields: one shared path
 * applies --field, signs, and encodes.
 */
#include <cjson/cJSON.h>
#include <curl/curl.h>
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "wire/amount.h"
#include "config.h"
#include "wire/crypto.h"
#include "wire/form.h"
#include "ctl/sample.h"

#define SAMPLE_NONCE_MAX    64
#define SAMPLE_ID_MAX       64                    /* bytes of an id or text option */
#define SAMPLE_ID_LOW       100000000000000000ULL /* random ids: 18 digits */
#define SAMPLE_ID_SPAN      800000000000000000ULL /* ... with room for + count */
#define SAMPLE_DEFAULT_FEN  1000                  /* --amount default: 10.00 yuan */
#define SAMPLE_TS_MAX       253402300799ULL       /* 9999-12-31T23:59:59Z */
#define SAMPLE_JSON_INT_MAX 9007199254740992ULL   /* 2^53: exact in a JSON number */
#define SAMPLE_ANSWER_MAX   (64 * 1024)           /* bytes of an HTTP answer kept */
#define SAMPLE_ANSWER_SHOWN 1024                  /* bytes of it printed */
#define SAMPLE_CST_OFFSET   (8 * 3600) /* the platforms write China Standard Time */
#define SAMPLE_ANY_NAME     ".NAME"    /* "gateway.NAME": any [gateway NAME] */

#define FORM_TYPE "application/x-www-form-urlencoded"
/* What Alipay sends (protocols.md section 4): non-standard, on purpose. */
#define ALIPAY_TYPE "application/x-www-form-urlencoded; text/html; charset=utf-8"

#define TP_DEFAULT_EVENT     "APP_PAYMENT_CREATE_ACCOUNT_PASS"
#define TP_DEFAULT_APP_ID    "14508451"
#define TP_DEFAULT_TP_APP_ID "10086"
#define TP_FROM_USER         "SmartApp" /* what the platform sends in a ticket push */

/* Constant fields of the samples, as the platforms' documents show them. */
#define BAIDU_USER_ID      "2389718"
#define BAIDU_PAY_TYPE     "1087"
#define BAIDU_PARTNER_ID   "6000001"
#define ALIPAY_BUYER_ID    "2088102122524333"
#define ALIPAY_BUYER_LOGON "158****1562"
#define ALIPAY_SUBJECT     "payhookd sample order"

struct sample;
struct form_spec;

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

/* ---- errors and small parsers ------------------------------------------ */

/* Write a reason into err and return rc. */
static int __attribute__((format(printf, 4, 5)))
sample_fail(char *err, size_t errlen, int rc, const char *fmt, ...)
{
    va_list ap;

    if (err && errlen) {
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    return rc;
}

/* A decimal whole number of 1..20 digits, at most max. 0 or -EINVAL. */
static int sample_uint(const char *s, unsigned long long max, unsigned long long *v)
{
    unsigned long long n = 0;
    size_t i;

    if (!s || !*s || strlen(s) > 20)
        return -EINVAL;
    for (i = 0; s[i]; i++) {
        unsigned d = (unsigned)(s[i] - '0');
        if (s[i] < '0' || s[i] > '9' || d > max || n > (max - d) / 10)
            return -EINVAL;
        n = n * 10 + d;
    }
    *v = n;
    return 0;
}

/* 1 when s is 1..SAMPLE_NONCE_MAX ASCII letters or digits. */
static int sample_nonce_ok(const char *s)
{
    size_t n = strlen(s), i;

    if (n == 0 || n > SAMPLE_NONCE_MAX)
        return 0;
    for (i = 0; i < n; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'z') ||
              (s[i] >= 'A' && s[i] <= 'Z')))
            return 0;
    return 1;
}

/* Empty a buffer, keeping its memory for the next request. */
static void sample_buf_reset(struct buf *b)
{
    b->len = 0;
    if (b->data)
        b->data[0] = '\0';
}

/* Wipe and free a string. */
static void sample_free_secret(char *s)
{
    if (!s)
        return;
    explicit_bzero(s, strlen(s));
    free(s);
}

/* The nonce of one request: --nonce, or a random 9-digit number. */
static int sample_nonce(const struct sample *s, char out[SAMPLE_NONCE_MAX + 1], char *err,
                        size_t errlen)
{
    uint32_t v;

    if (s->nonce) {
        memcpy(out, s->nonce, strlen(s->nonce) + 1);
        return 0;
    }
    if (crypto_random(&v, sizeof(v)) < 0)
        return sample_fail(err, errlen, -EIO, "no random bytes for the nonce");
    snprintf(out, SAMPLE_NONCE_MAX + 1, "%u", 100000000u + v % 900000000u);
    return 0;
}

/* "YYYY-MM-DD HH:MM:SS" in UTC+8, the way the platforms write times. */
static void sample_cst(long long unix_seconds, char out[24])
{
    time_t t = (time_t)(unix_seconds + SAMPLE_CST_OFFSET);
    struct tm tm;

    gmtime_r(&t, &tm);
    strftime(out, 24, "%Y-%m-%d %H:%M:%S", &tm);
}

/* A text value (what, or its default) copied into out: 1..SAMPLE_ID_MAX bytes. */
static int sample_text(const char *what, const char *v, const char *def,
                       char out[SAMPLE_ID_MAX + 1], char *err, size_t errlen)
{
    v = v ? v : def;
    if (!v || !*v || strlen(v) > SAMPLE_ID_MAX)
        return sample_fail(err, errlen, -EINVAL, "%s: must be 1 to %d bytes", what,
                           SAMPLE_ID_MAX);
    memcpy(out, v, strlen(v) + 1);
    return 0;
}

/* An id that request i makes distinct: a number plus i, or text sent as given. */
struct sample_id {
    char text[SAMPLE_ID_MAX + 1];
    unsigned long long base;
    int numeric;
};

/* The id given by option `what`, or (given NULL) a random 18-digit number. */
static int sample_id_init(const struct sample *s, const char *what, const char *given,
                          struct sample_id *id, char *err, size_t errlen)
{
    unsigned long long r;

    if (!given) {
        if (crypto_random(&r, sizeof(r)) < 0)
            return sample_fail(err, errlen, -EIO, "no random bytes for the ids");
        id->base = SAMPLE_ID_LOW + r % SAMPLE_ID_SPAN;
        id->numeric = 1;
        return 0;
    }
    if (sample_text(what, given, NULL, id->text, err, errlen) < 0)
        return -EINVAL;
    id->numeric = (given[0] != '0' || !given[1]) &&
                  sample_uint(given, ULLONG_MAX - s->count, &id->base) == 0;
    if (!id->numeric && s->count > 1)
        return sample_fail(err, errlen, -EINVAL,
                           "%s: with --count, must be a whole number without leading "
                           "zeros (request i sends it plus i)",
                           what);
    return 0;
}

/* Request index's value of an id. */
static void sample_id_at(const struct sample_id *id, unsigned index,
                         char out[SAMPLE_ID_MAX + 1])
{
    if (id->numeric)
        snprintf(out, SAMPLE_ID_MAX + 1, "%llu", id->base + index);
    else
        memcpy(out, id->text, sizeof(id->text));
}

/* The value of the --field named key, or NULL. */
static const char *sample_field(const struct sample *s, const char *key)
{
    size_t i;

    for (i = 0; i < s->n_fields; i++)
        if (strcmp(s->fields[i].key, key) == 0)
            return s->fields[i].value;
    return NULL;
}

/* ---- the option table ------------------------------------------------- */

enum sample_opt_type { OPT_STRING, OPT_COUNT, OPT_FIELD };

/* An option with where its value goes in struct sample_opts. */
struct sample_optdef {
    struct sample_option pub;
    enum sample_opt_type type;
    size_t off;
};

#define GATEWAY_ANY   "gateway.NAME"
#define BAIDU_REFUNDS "refund_audit refund_notify"
#define OFF(m)        offsetof(struct sample_opts, m)
#define EVERY(help)                                                                      \
    {                                                                                    \
        {                                                                                \
            NULL, NULL, help                                                             \
        }                                                                                \
    }
#define TP_ONLY(help)                                                                    \
    {                                                                                    \
        {                                                                                \
            "baidu.tp", NULL, help                                                       \
        }                                                                                \
    }
static const struct sample_optdef sample_optdefs[] = {
    {{"count", "N", EVERY("build N distinct requests (default 1), one per line")},
     OPT_COUNT,
     OFF(count)},
    {{"field", "KEY=VALUE",
      EVERY("set or add a field of the message before signing (repeatable)")},
     OPT_FIELD,
     0},
    {{"timestamp", "SECONDS", EVERY("the request time, unix seconds (default now)")},
     OPT_STRING,
     OFF(timestamp)},
    {{"private-key",
      "PATH",
      {{"baidu", NULL, "the platform key (PEM) whose public half is platform_public_key"},
       {"alipay", NULL, "Alipay's key (PEM) whose public half is alipay_public_key"},
       {GATEWAY_ANY, NULL,
        "sign = rsa: the gateway's key (PEM) whose public half is public_key"}}},
     OPT_STRING,
     OFF(private_key)},
    {{"app-id",
      "ID",
      {{"baidu.tp", NULL, "appId of the event (default " TP_DEFAULT_APP_ID ")"},
       {"alipay", NULL, "app_id (default: the first [alipay.app] of -c)"},
       {GATEWAY_ANY, NULL, "app_id (default: the section's app_id; none without one)"}}},
     OPT_STRING,
     OFF(app_id)},
    {{"amount",
      "FEN",
      {{"baidu", "pay_notify", "totalMoney, payMoney and unitPrice (default 1000)"},
       {"baidu", "refund_audit", "applyRefundMoney (default 1000)"},
       {"alipay " GATEWAY_ANY, NULL,
        "total_amount, sent as yuan (default 1000 = 10.00)"}}},
     OPT_STRING,
     OFF(amount)},
    {{"status",
      "S",
      {{"baidu", "pay_notify", "status (default 2: paid)"},
       {"baidu", "refund_notify", "refundStatus (default 1: refunded)"},
       {"alipay " GATEWAY_ANY, NULL, "trade_status (default TRADE_SUCCESS)"}}},
     OPT_STRING,
     OFF(status)},
    {{"order-id",
      "ID",
      {{"baidu", "pay_notify", "orderId (default random, 18 digits; request i adds i)"},
       {"baidu", BAIDU_REFUNDS, "orderId of the paid order (required)"}}},
     OPT_STRING,
     OFF(baidu.order_id)},
    {{"deal-id",
      "ID",
      {{"baidu", "pay_notify",
        "dealId (default: deal_id of the first [baidu.app] of -c)"}}},
     OPT_STRING,
     OFF(baidu.deal_id)},
    {{"refund-batch-id",
      "ID",
      {{"baidu", BAIDU_REFUNDS, "refundBatchId (default random; request i adds i)"}}},
     OPT_STRING,
     OFF(baidu.refund_batch_id)},
    {{"secret",
      "S",
      {{GATEWAY_ANY, NULL, "the MD5 secret (default: the section's secret)"}}},
     OPT_STRING,
     OFF(gateway.secret)},
    {{"nonce", "TEXT", TP_ONLY("the Nonce, 1-64 letters or digits (default random)")},
     OPT_STRING,
     OFF(tp.nonce)},
    {{"token", "T", TP_ONLY("the Token ([baidu.tp] token)")}, OPT_STRING, OFF(tp.token)},
    {{"aes-key", "K", TP_ONLY("the EncodingAESKey ([baidu.tp] encoding_aes_key)")},
     OPT_STRING,
     OFF(tp.aes_key)},
    {{"client-id", "C", TP_ONLY("the client id ([baidu.tp] client_id)")},
     OPT_STRING,
     OFF(tp.client_id)},
    {{"event", "NAME", TP_ONLY("send this audit event (default " TP_DEFAULT_EVENT ")")},
     OPT_STRING,
     OFF(tp.event)},
    {{"tp-app-id", "N",
      TP_ONLY("tpAppId of the event (default " TP_DEFAULT_TP_APP_ID ")")},
     OPT_STRING,
     OFF(tp.tp_app_id)},
    {{"ticket", "TICKET", TP_ONLY("send a ticket push with this Ticket instead")},
     OPT_STRING,
     OFF(tp.ticket)},
    {{"message", "JSON", TP_ONLY("send this message verbatim instead")},
     OPT_STRING,
     OFF(tp.message)},
};
#undef TP_ONLY
#undef EVERY
#undef OFF
#undef BAIDU_REFUNDS

_Static_assert(ARRAY_SIZE(sample_optdefs) <= 64, "sample_opts.given has 64 bits");

/* Option i of the table. */
const struct sample_option *sample_option_at(size_t i)
{
    return i < ARRAY_SIZE(sample_optdefs) ? &sample_optdefs[i].pub : NULL;
}

/* Set option i from its text. */
int sample_set(struct sample_opts *o, size_t i, const char *value, char *err,
               size_t errlen)
{
    const struct sample_optdef *d;
    unsigned long long n;

    if (i >= ARRAY_SIZE(sample_optdefs) || !value)
        return sample_fail(err, errlen, -EINVAL, "no such option");
    d = &sample_optdefs[i];
    switch (d->type) {
    case OPT_COUNT:
        if (sample_uint(value, SAMPLE_COUNT_MAX, &n) < 0 || n == 0)
            return sample_fail(err, errlen, -EINVAL,
                               "--%s: '%s' is not a whole number between 1 and %u",
                               d->pub.name, value, SAMPLE_COUNT_MAX);
        *(unsigned *)(void *)((char *)o + d->off) = (unsigned)n;
        break;
    case OPT_FIELD:
        if (o->n_fields == SAMPLE_FIELDS_MAX)
            return sample_fail(err, errlen, -E2BIG, "--%s: at most %d are accepted",
                               d->pub.name, SAMPLE_FIELDS_MAX);
        o->fields[o->n_fields++] = value;
        break;
    case OPT_STRING:
        *(const char **)(void *)((char *)o + d->off) = value;
        break;
    }
    o->given |= 1ULL << i;
    return 0;
}

/* ---- the message as JSON (shared by JSON-message builders) ----------- */

/* Set or add one field: its value as JSON when it parses, else as text. */
static int sample_json_field(cJSON *obj, const struct sample_field *fl)
{
    cJSON *item = cJSON_ParseWithOpts(fl->value, NULL, 1);

    if (!item)
        item = cJSON_CreateString(fl->value);
    if (!item)
        return -ENOMEM;
    if (cJSON_GetObjectItemCaseSensitive(obj, fl->key)) {
        if (cJSON_ReplaceItemInObjectCaseSensitive(obj, fl->key, item))
            return 0;
    } else if (cJSON_AddItemToObject(obj, fl->key, item)) {
        return 0;
    }
    cJSON_Delete(item);
    return -ENOMEM;
}

/* Apply every --field to a message object. */
static int sample_json_fields(cJSON *obj, const struct sample *s, char *err,
                              size_t errlen)
{
    size_t i;

    for (i = 0; i < s->n_fields; i++)
        if (sample_json_field(obj, &s->fields[i]) < 0)
            return sample_fail(err, errlen, -ENOMEM, "out of memory");
    return 0;
}

/* ---- baidu.tp push (protocols.md section 2) -------------------------- */

/* What the TP builder keeps between requests. */
struct tp_sample {
    char *token;
    char *client_id;
    uint8_t key[32];
    char *verbatim;   /* --message, or NULL */
    cJSON *msg;       /* the built message, or NULL */
    cJSON *vary;      /* its number member made distinct per request */
    double vary_base; /* that member's value in request 0 */
};

/* Free the TP state (secrets wiped). */
static void tp_release(void *state)
{
    struct tp_sample *t = state;

    if (!t)
        return;
    sample_free_secret(t->token);
    free(t->client_id);
    free(t->verbatim);
    cJSON_Delete(t->msg);
    explicit_bzero(t->key, sizeof(t->key));
    free(t);
}

/* The reason for a missing credential. */
static int tp_missing(char *err, size_t errlen, const char *option)
{
    return sample_fail(err, errlen, -EINVAL,
                       "--%s is required (or -c CONFIG with a [baidu.tp] section)",
                       option);
}

/* Token, EncodingAESKey and client id: options first, then [baidu.tp]. */
static int tp_secrets(struct tp_sample *t, const struct sample_opts *o,
                      const struct config *cfg, char *err, size_t errlen)
{
    const struct config_baidu_tp *c = cfg && cfg->tp.enabled ? &cfg->tp : NULL;
    const char *token = o->tp.token ? o->tp.token : c ? c->token : NULL;
    const char *client_id = o->tp.client_id ? o->tp.client_id : c ? c->client_id : NULL;

    if (!token || !*token)
        return tp_missing(err, errlen, "token");
    if (!client_id || !*client_id)
        return tp_missing(err, errlen, "client-id");
    if (o->tp.aes_key) {
        if (strlen(o->tp.aes_key) != 43 || crypto_tp_key(o->tp.aes_key, t->key) < 0)
            return sample_fail(err, errlen, -EINVAL,
                               "--aes-key: must be the 43-character EncodingAESKey");
    } else if (c) {
        memcpy(t->key, c->aes_key, sizeof(t->key));
    } else {
        return tp_missing(err, errlen, "aes-key");
    }
    t->token = strdup(token);
    t->client_id = strdup(client_id);
    if (!t->token || !t->client_id)
        return sample_fail(err, errlen, -ENOMEM, "out of memory");
    return 0;
}

/* A JSON integer option (an id) with its default; room is left for count. */
static int tp_id(const struct sample *s, const char *name, const char *v, const char *def,
                 double *out, char *err, size_t errlen)
{
    unsigned long long n;

    v = v ? v : def;
    if (sample_uint(v, SAMPLE_JSON_INT_MAX - s->count, &n) < 0)
        return sample_fail(err, errlen, -EINVAL,
                           "--%s: '%s' is not a whole number up to 2^53 - count", name,
                           v);
    *out = (double)n;
    return 0;
}

/* {"appId","tpAppId","eventTime","event","reason"}: a payment audit event. */
static int tp_event_message(struct sample *s, struct tp_sample *t,
                            const struct sample_opts *o, char *err, size_t errlen)
{
    const char *event = o->tp.event ? o->tp.event : TP_DEFAULT_EVENT;
    double app_id = 0, tp_app_id = 0;
    char when[24];
    int r;

    if (!*event)
        return sample_fail(err, errlen, -EINVAL, "--event: must not be empty");
    r = tp_id(s, "app-id", o->app_id, TP_DEFAULT_APP_ID, &app_id, err, errlen);
    if (r == 0)
        r = tp_id(s, "tp-app-id", o->tp.tp_app_id, TP_DEFAULT_TP_APP_ID, &tp_app_id, err,
                  errlen);
    if (r < 0)
        return r;
    sample_cst(s->now, when);
    t->msg = cJSON_CreateObject();
    if (!t->msg || !cJSON_AddNumberToObject(t->msg, "appId", app_id) ||
        !cJSON_AddNumberToObject(t->msg, "tpAppId", tp_app_id) ||
        !cJSON_AddStringToObject(t->msg, "eventTime", when) ||
        !cJSON_AddStringToObject(t->msg, "event", event) ||
        !cJSON_AddStringToObject(t->msg, "reason", ""))
        return sample_fail(err, errlen, -ENOMEM, "out of memory");
    return 0;
}

/* {"Ticket","MsgType":"ticket","Event":"push","CreateTime","FromUserName"}. */
static int tp_ticket_message(struct sample *s, struct tp_sample *t,
                             const struct sample_opts *o, char *err, size_t errlen)
{
    if (!*o->tp.ticket)
        return sample_fail(err, errlen, -EINVAL, "--ticket: must not be empty");
    t->msg = cJSON_CreateObject();
    if (!t->msg || !cJSON_AddStringToObject(t->msg, "Ticket", o->tp.ticket) ||
        !cJSON_AddStringToObject(t->msg, "MsgType", "ticket") ||
        !cJSON_AddStringToObject(t->msg, "Event", "push") ||
        !cJSON_AddNumberToObject(t->msg, "CreateTime", (double)s->now) ||
        !cJSON_AddStringToObject(t->msg, "FromUserName", TP_FROM_USER))
        return sample_fail(err, errlen, -ENOMEM, "out of memory");
    return 0;
}

/* --message: sent as given, so it can neither take fields nor vary. */
static int tp_verbatim_message(struct sample *s, struct tp_sample *t,
                               const struct sample_opts *o, char *err, size_t errlen)
{
    if (o->n_fields)
        return sample_fail(err, errlen, -EINVAL,
                           "--field cannot change a --message (it is sent verbatim)");
    if (s->count > 1)
        return sample_fail(err, errlen, -EINVAL,
                           "--count: a --message is sent verbatim and cannot vary; use "
                           "--event or --ticket for distinct messages");
    t->verbatim = strdup(o->tp.message);
    return t->verbatim ? 0 : sample_fail(err, errlen, -ENOMEM, "out of memory");
}

/* Pick the member that request i adds i to, so that messages differ. */
static int tp_vary(struct sample *s, struct tp_sample *t, const char *key, char *err,
                   size_t errlen)
{
    cJSON *item = cJSON_GetObjectItemCaseSensitive(t->msg, key);
    double v;

    if (s->count == 1)
        return 0;
    v = cJSON_IsNumber(item) ? item->valuedouble : -1;
    if (!(v >= 0 && v <= (double)(SAMPLE_JSON_INT_MAX - s->count)) ||
        v != (double)(unsigned long long)v)
        return sample_fail(err, errlen, -EINVAL,
                           "--count: %s must stay a whole number below 2^53 - count so "
                           "that the %u messages differ",
                           key, s->count);
    t->vary = item;
    t->vary_base = v;
    return 0;
}

/* Which message: exactly one of --message, --ticket, --event (the default). */
static int tp_message(struct sample *s, struct tp_sample *t, const struct sample_opts *o,
                      char *err, size_t errlen)
{
    int r;

    if (!!o->tp.message + !!o->tp.ticket + !!o->tp.event > 1)
        return sample_fail(
            err, errlen, -EINVAL,
            "--message, --event and --ticket exclude each other: give one");
    if ((o->tp.message || o->tp.ticket) && (o->app_id || o->tp.tp_app_id))
        return sample_fail(err, errlen, -EINVAL, "--%s applies to --event messages only",
                           o->app_id ? "app-id" : "tp-app-id");
    if (o->tp.message)
        return tp_verbatim_message(s, t, o, err, errlen);
    r = o->tp.ticket ? tp_ticket_message(s, t, o, err, errlen)
                     : tp_event_message(s, t, o, err, errlen);
    if (r == 0)
        r = sample_json_fields(t->msg, s, err, errlen);
    if (r == 0)
        r = tp_vary(s, t, o->tp.ticket ? "CreateTime" : "appId", err, errlen);
    return r;
}

/* Prepare a TP push sample. */
static int tp_prepare(struct sample *s, const struct sample_opts *o,
                      const struct config *cfg, char *err, size_t errlen)
{
    struct tp_sample *t = calloc(1, sizeof(*t));
    int r;

    if (!t)
        return sample_fail(err, errlen, -ENOMEM, "out of memory");
    s->state = t;
    r = tp_secrets(t, o, cfg, err, errlen);
    if (r == 0)
        r = tp_message(s, t, o, err, errlen);
    return r;
}

/* One envelope: {"Nonce","TimeStamp","Encrypt","MsgSignature"}, as the platform sends. */
static int tp_build(struct sample *s, unsigned index, struct buf *out, char *err,
                    size_t errlen)
{
    struct tp_sample *t = s->state;
    char nonce[SAMPLE_NONCE_MAX + 1], sig[41];
    char *printed = NULL, *enc = NULL;
    const char *msg;
    int r;

    if (t->vary)
        cJSON_SetNumberValue(t->vary, t->vary_base + index);
    msg = t->verbatim ? t->verbatim : (printed = cJSON_PrintUnformatted(t->msg));
    if (!msg) {
        r = sample_fail(err, errlen, -ENOMEM, "out of memory");
        goto out;
    }
    r = sample_nonce(s, nonce, err, errlen);
    if (r < 0)
        goto out;
    r = crypto_tp_encrypt(t->key, msg, strlen(msg), t->client_id, &enc);
    if (r < 0) {
        r = sample_fail(err, errlen, r, "encrypting the message: %s", strerror(-r));
        goto out;
    }
    if (crypto_tp_signature(t->token, s->timestamp, nonce, enc, sig) < 0) {
        r = sample_fail(err, errlen, -EIO, "SHA-1 is unavailable for MsgSignature");
        goto out;
    }
    r = buf_printf(out,
                   "{\"Nonce\": \"%s\", \"TimeStamp\": \"%s\", \"Encrypt\": \"%s\", "
                   "\"MsgSignature\": \"%s\"}",
                   nonce, s->timestamp, enc, sig);
    if (r < 0)
        r = sample_fail(err, errlen, r, "out of memory");
out:
    cJSON_free(printed);
    free(enc);
    return r;
}

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

/* Free a form kind's state (the gateway secret wiped). */
static void form_release(void *state)
{
    struct form_sample *fs = state;

    if (!fs)
        return;
    if (fs->owned)
        explicit_bzero(fs->owned, fs->owned_len);
    free(fs->owned);
    free(fs);
}

/* --amount (integer fen; default SAMPLE_DEFAULT_FEN) as the platform writes it. */
static int form_money(const char *amount, enum form_money how, char out[32], char *err,
                      size_t errlen)
{
    int64_t fen = SAMPLE_DEFAULT_FEN;

    if (amount && amount_fen_parse(amount, strlen(amount), 0, &fen) < 0)
        return sample_fail(err, errlen, -EINVAL,
                           "--amount: '%.32s' is not a whole number of fen (1999 is "
                           "19.99 yuan)",
                           amount);
    if (how == FORM_YUAN)
        return amount_fen_to_yuan(fen, out, 32) < 0 ? -EINVAL : 0;
    snprintf(out, 32, "%lld", (long long)fen);
    return 0;
}

/* Allocate the state and read what every form kind shares: the signer, --status,
 * --amount and the id that varies (given by option `what`, or random). */
static int form_prepare(struct sample *s, const struct sample_opts *o, const char *what,
                        const char *id, struct form_sample **out, char *err,
                        size_t errlen)
{
    const struct form_spec *spec = s->k->form;
    struct form_sample *fs = calloc(1, sizeof(*fs));
    int r = 0;

    if (!fs)
        return sample_fail(err, errlen, -ENOMEM, "out of memory");
    s->state = fs;
    *out = fs;
    if (spec->sign)
        fs->sign = *spec->sign;
    if (spec->status)
        r = sample_text("--status", o->status, spec->status, fs->status, err, errlen);
    if (r == 0 && spec->money != FORM_NO_MONEY)
        r = form_money(o->amount, spec->money, fs->money, err, errlen);
    if (r == 0)
        r = sample_id_init(s, what, id, &fs->id, err, errlen);
    return r;
}

/* Once the signer is known: the key it needs, and no --field that would replace
 * the signature or make every request the same message. */
static int form_ready(const struct sample *s, char *err, size_t errlen)
{
    const struct form_sample *fs = s->state;
    const char *const *u = s->k->form->unique;
    size_t fixed = 0, n;

    if (!fs->sign.md5 && !s->key)
        return sample_fail(err, errlen, -EINVAL,
                           "--private-key is required: %s %s is signed with the "
                           "platform's RSA private key (PEM)",
                           s->k->info.provider, s->k->info.kind);
    if (sample_field(s, fs->sign.field))
        return sample_fail(err, errlen, -EINVAL,
                           "--field %s: the signature is computed, it cannot be set",
                           fs->sign.field);
    for (n = 0; u[n]; n++)
        fixed += sample_field(s, u[n]) != NULL;
    if (s->count > 1 && fixed == n)
        return sample_fail(err, errlen, -EINVAL,
                           "--field %s: with --count every request would be the same "
                           "message",
                           u[0]);
    return 0;
}

/* The form of one request: the kind's fields, each replaced by a --field of the
 * same key, then the other --field options in order. 0, -ENOMEM. */
static int form_fill(const struct sample *s, const struct sample_kv *kv, size_t n,
                     struct form *f)
{
    const char *v;
    size_t i, j;
    int r = 0;

    for (i = 0; i < n && r == 0; i++) {
        v = sample_field(s, kv[i].key);
        v = v ? v : kv[i].value;
        if (v)
            r = form_add(f, kv[i].key, strlen(kv[i].key), v, strlen(v));
    }
    for (i = 0; i < s->n_fields && r == 0; i++) {
        for (j = 0; j < n && strcmp(kv[j].key, s->fields[i].key) != 0; j++)
            ;
        if (j == n)
            r = form_add(f, s->fields[i].key, strlen(s->fields[i].key),
                         s->fields[i].value, strlen(s->fields[i].value));
    }
    return r;
}

/* The signature of a canonical string: base64 RSA or hex MD5, malloc'd. */
static int form_sign(const struct sample *s, const struct form_signer *g,
                     const char *canon, size_t len, char **sig)
{
    char hex[33];

    if (!g->md5)
        return crypto_rsa_sign_b64(s->key, g->hash, canon, len, sig);
    if (crypto_md5_hex(canon, len, g->md5_upper, hex) < 0)
        return -EIO; /* no MD5 in this OpenSSL (FIPS) */
    *sig = strdup(hex);
    return *sig ? 0 : -ENOMEM;
}

/* Fill, sign and append the urlencoded body: the one path of every form kind. */
static int form_build(struct sample *s, const struct sample_kv *kv, size_t n,
                      struct buf *out, char *err, size_t errlen)
{
    const struct form_sample *fs = s->state;
    struct form *f = form_new();
    char *canon = NULL, *sig = NULL, *body = NULL;
    size_t canon_len = 0, body_len = 0;
    int r = f ? form_fill(s, kv, n, f) : -ENOMEM;

    if (r == 0)
        r = form_canonical(f, &fs->sign.rule, &canon, &canon_len);
    if (r == 0)
        r = form_sign(s, &fs->sign, canon, canon_len, &sig);
    if (r == 0)
        r = form_add(f, fs->sign.field, strlen(fs->sign.field), sig, strlen(sig));
    if (r == 0)
        r = form_encode(f, &body, &body_len);
    if (r == 0)
        r = buf_append(out, body, body_len);
    if (r < 0)
        sample_fail(err, errlen, r, "building the signed form: %s",
                    r == -EIO ? "the digest or signature failed" : strerror(-r));
    if (canon)
        explicit_bzero(canon, canon_len); /* it may end with a secret */
    free(canon);
    free(sig);
    free(body);
    form_free(f);
    return r;
}

/* ---- Baidu cashier callbacks (protocols.md section 1) ---------------- */

static const char *const baidu_excluded[] = {"rsaSign", "sign", "sign_type", NULL};
static const struct form_signer baidu_signer = {
    {baidu_excluded, 0, NULL, 0}, "rsaSign", CRYPTO_SHA1, 0, 0};
static const char *const baidu_pay_unique[] = {"orderId", NULL};
static const char *const baidu_refund_unique[] = {"refundBatchId", NULL};
static const struct form_spec baidu_pay_spec = {&baidu_signer, "2", FORM_FEN,
                                                baidu_pay_unique};
static const struct form_spec baidu_audit_spec = {&baidu_signer, NULL, FORM_FEN,
                                                  baidu_refund_unique};
static const struct form_spec baidu_refund_spec = {&baidu_signer, "1", FORM_NO_MONEY,
                                                   baidu_refund_unique};

/* Pay notifications: orderId varies; dealId from --deal-id or the first [baidu.app]. */
static int baidu_pay_prepare(struct sample *s, const struct sample_opts *o,
                             const struct config *cfg, char *err, size_t errlen)
{
    const char *deal = o->baidu.deal_id;
    struct form_sample *fs;
    int r = form_prepare(s, o, "--order-id", o->baidu.order_id, &fs, err, errlen);

    if (!deal && cfg && cfg->n_baidu_apps)
        deal = cfg->baidu_apps[0]->deal_id;
    if (r == 0 && !deal)
        r = sample_fail(
            err, errlen, -EINVAL,
            "--deal-id is required (or -c CONFIG with a [baidu.app] section)");
    if (r == 0)
        r = sample_text("--deal-id", deal, NULL, fs->app, err, errlen);
    return r;
}

/* Refund audits and notifications: one paid order, refundBatchId varies. */
static int baidu_refund_prepare(struct sample *s, const struct sample_opts *o,
                                const struct config *cfg, char *err, size_t errlen)
{
    struct form_sample *fs;
    int r = form_prepare(s, o, "--refund-batch-id", o->baidu.refund_batch_id, &fs, err,
                         errlen);

    if (r == 0 && !o->baidu.order_id)
        r = sample_fail(err, errlen, -EINVAL,
                        "--order-id is required: the orderId of the paid order that %s "
                        "%s is about",
                        s->k->info.provider, s->k->info.kind);
    if (r == 0)
        r = sample_text("--order-id", o->baidu.order_id, NULL, fs->order, err, errlen);
    return r;
}

/* orderId and tpOrderId of request index. tpOrderId (the merchant's order id)
 * derives from orderId, so a refund sample matches its payment's. */
static void baidu_order(const struct form_sample *fs, unsigned index,
                        char order[SAMPLE_ID_MAX + 1], char tp[SAMPLE_ID_MAX + 3])
{
    if (fs->order[0])
        memcpy(order, fs->order, sizeof(fs->order));
    else
        sample_id_at(&fs->id, index, order);
    snprintf(tp, SAMPLE_ID_MAX + 3, "TP%s", order);
}

/* A pay notification, with the fields the platform sends (empty ones included). */
static int baidu_pay_build(struct sample *s, unsigned index, struct buf *out, char *err,
                           size_t errlen)
{
    const struct form_sample *fs = s->state;
    char order[SAMPLE_ID_MAX + 1], tp[SAMPLE_ID_MAX + 3];
    const struct sample_kv kv[] = {
        {"userId", BAIDU_USER_ID},
        {"orderId", order},
        {"unitPrice", fs->money},
        {"count", "1"},
        {"totalMoney", fs->money},
        {"payMoney", fs->money},
        {"promoMoney", "0"},
        {"hbMoney", "0"},
        {"hbBalanceMoney", "0"},
        {"giftCardMoney", "0"},
        {"dealId", fs->app},
        {"payTime", s->timestamp},
        {"promoDetail", ""},
        {"payType", BAIDU_PAY_TYPE},
        {"partnerId", BAIDU_PARTNER_ID},
        {"status", fs->status},
        {"tpOrderId", tp},
        {"returnData", ""},
    };

    baidu_order(fs, index, order, tp);
    return form_build(s, kv, ARRAY_SIZE(kv), out, err, errlen);
}

/* A refund audit (applyRefundMoney) or refund notification (refundStatus). */
static int baidu_refund_build(struct sample *s, unsigned index, struct buf *out,
                              char *err, size_t errlen)
{
    const struct form_sample *fs = s->state;
    int notify = s->k->form->status != NULL;
    char order[SAMPLE_ID_MAX + 1], tp[SAMPLE_ID_MAX + 3], batch[SAMPLE_ID_MAX + 1];
    const struct sample_kv kv[] = {
        {"orderId", order},
        {"userId", BAIDU_USER_ID},
        {"tpOrderId", tp},
        {"refundBatchId", batch},
        {notify ? "refundStatus" : "applyRefundMoney", notify ? fs->status : fs->money},
    };

    baidu_order(fs, index, order, tp);
    sample_id_at(&fs->id, index, batch);
    return form_build(s, kv, ARRAY_SIZE(kv), out, err, errlen);
}

/* ---- Alipay asynchronous notification (protocols.md section 4) ------- */

static const char *const alipay_excluded[] = {"sign", "sign_type", NULL};
static const struct form_signer alipay_signer = {
    {alipay_excluded, 1, NULL, 0}, "sign", CRYPTO_SHA256, 0, 0};
static const char *const alipay_unique[] = {"notify_id", NULL};
static const struct form_spec alipay_spec = {&alipay_signer, "TRADE_SUCCESS", FORM_YUAN,
                                             alipay_unique};

/* The [alipay.app] with this app_id, or the first one (app_id NULL), or NULL. */
static const struct config_alipay_app *alipay_app(const struct config *cfg,
                                                  const char *app_id)
{
    size_t i;

    for (i = 0; cfg && i < cfg->n_alipay_apps; i++)
        if (!app_id || strcmp(cfg->alipay_apps[i]->app_id, app_id) == 0)
            return cfg->alipay_apps[i];
    return NULL;
}

/* Notifications of one app: app_id from --app-id or the first [alipay.app],
 * seller_id from that app's section when it sets one. */
static int alipay_prepare(struct sample *s, const struct sample_opts *o,
                          const struct config *cfg, char *err, size_t errlen)
{
    const struct config_alipay_app *app = alipay_app(cfg, o->app_id);
    const char *app_id = o->app_id ? o->app_id : app ? app->app_id : NULL;
    struct form_sample *fs;
    int r = form_prepare(s, o, NULL, NULL, &fs, err, errlen);

    if (r == 0 && !app_id)
        r = sample_fail(
            err, errlen, -EINVAL,
            "--app-id is required (or -c CONFIG with an [alipay.app] section)");
    if (r == 0)
        r = sample_text("--app-id", app_id, NULL, fs->app, err, errlen);
    if (r == 0 && app && app->seller_id && app->seller_id[0])
        r = sample_text("[alipay.app] seller_id", app->seller_id, NULL, fs->seller, err,
                        errlen);
    return r;
}

/* A trade_status_sync notification; notify_id, trade_no and out_trade_no vary. */
static int alipay_build(struct sample *s, unsigned index, struct buf *out, char *err,
                        size_t errlen)
{
    const struct form_sample *fs = s->state;
    char id[SAMPLE_ID_MAX + 1], notify_id[96], trade_no[96], out_no[96];
    char now[24], created[24], paid[24], bills[96];
    const struct sample_kv kv[] = {
        {"notify_time", now},
        {"notify_type", "trade_status_sync"},
        {"notify_id", notify_id},
        {"app_id", fs->app},
        {"auth_app_id", fs->app},
        {"charset", "utf-8"},
        {"version", "1.0"},
        {"sign_type", "RSA2"},
        {"trade_no", trade_no},
        {"out_trade_no", out_no},
        {"buyer_id", ALIPAY_BUYER_ID},
        {"buyer_logon_id", ALIPAY_BUYER_LOGON},
        {"seller_id", fs->seller[0] ? fs->seller : NULL},
        {"trade_status", fs->status},
        {"total_amount", fs->money},
        {"receipt_amount", fs->money},
        {"invoice_amount", fs->money},
        {"buyer_pay_amount", fs->money},
        {"point_amount", "0.00"},
        {"subject", ALIPAY_SUBJECT},
        {"gmt_create", created},
        {"gmt_payment", paid},
        {"fund_bill_list", bills},
    };

    sample_id_at(&fs->id, index, id);
    sample_cst(s->now, now);
    sample_cst(s->now - 9, created);
    sample_cst(s->now - 1, paid);
    /* Shaped like Alipay's: the day (YYYYMMDD) first, then a unique tail. */
    snprintf(notify_id, sizeof(notify_id), "%.4s%.2s%.2s00222%s", now, now + 5, now + 8,
             id);
    snprintf(trade_no, sizeof(trade_no), "%.4s%.2s%.2s22001%s", now, now + 5, now + 8,
             id);
    snprintf(out_no, sizeof(out_no), "M%s", id);
    snprintf(bills, sizeof(bills),
             "[{\"amount\":\"%s\",\"fundChannel\":\"ALIPAYACCOUNT\"}]", fs->money);
    return form_build(s, kv, ARRAY_SIZE(kv), out, err, errlen);
}

/* ---- aggregated gateways, [gateway NAME] (protocols.md section 6) ---- */

static const char *const gateway_unique[] = {"out_trade_no", "trade_no", NULL};
static const struct form_spec gateway_spec = {NULL, "TRADE_SUCCESS", FORM_YUAN,
                                              gateway_unique};

/* The [gateway NAME] section of "gateway.NAME", or NULL after a reason. */
static const struct config_gateway *
gateway_find(const char *provider, const struct config *cfg, char *err, size_t errlen)
{
    const char *name = strchr(provider, '.') + 1;
    size_t i;

    if (!cfg) {
        sample_fail(err, errlen, -EINVAL,
                    "%s needs -c CONFIG: its [gateway %s] section says how it signs",
                    provider, name);
        return NULL;
    }
    for (i = 0; i < cfg->n_gateways; i++)
        if (strcmp(cfg->gateways[i]->name, name) == 0)
            return cfg->gateways[i];
    sample_fail(err, errlen, -EINVAL, "%s has no [gateway %s] section", cfg->file, name);
    return NULL;
}

/* The gateway's exclude list ("sign" first, as gateway.c does) and MD5 suffix
 * ("&key=SECRET" or "SECRET"), copied into one block the rule points into. */
static int gateway_rule(struct form_sample *fs, const struct config_gateway *g,
                        const char *secret)
{
    const char *sep = g->sign == GW_SIGN_MD5_KEY ? "&key=" : "";
    size_t n = 0, len = 0, i;
    const char **x;
    char *p;

    while (g->exclude && g->exclude[n])
        len += strlen(g->exclude[n++]) + 1;
    if (secret)
        len += strlen(sep) + strlen(secret) + 1;
    fs->owned_len = (n + 2) * sizeof(*x) + len;
    fs->owned = malloc(fs->owned_len);
    if (!fs->owned)
        return -ENOMEM;
    x = (const char **)(void *)fs->owned;
    p = fs->owned + (n + 2) * sizeof(*x);
    x[0] = "sign";
    for (i = 0; i < n; i++) {
        x[i + 1] = p;
        p = stpcpy(p, g->exclude[i]) + 1;
    }
    x[n + 1] = NULL;
    fs->sign.rule = (struct form_canon_rule){x, g->drop_empty, NULL, 0};
    if (secret) {
        fs->sign.rule.append = p;
        fs->sign.rule.append_len = (size_t)(stpcpy(stpcpy(p, sep), secret) - p);
    }
    return 0;
}

/* Sign the way [gateway NAME] verifies: MD5 with its secret (or --secret) in its
 * hex case, or RSA with --private-key and its rsa_hash. */
static int gateway_signer(struct sample *s, struct form_sample *fs,
                          const struct config_gateway *g, const char *secret, char *err,
                          size_t errlen)
{
    int md5 = g->sign != GW_SIGN_RSA;

    if (md5 && s->key)
        return sample_fail(err, errlen, -EINVAL,
                           "--private-key: [gateway %s] signs with an MD5 secret "
                           "(--secret), not a private key",
                           g->name);
    if (!md5 && secret)
        return sample_fail(err, errlen, -EINVAL,
                           "--secret: [gateway %s] signs with RSA (sign = rsa): give "
                           "--private-key",
                           g->name);
    if (md5 && secret && !*secret)
        return sample_fail(err, errlen, -EINVAL, "--secret: must not be empty");
    if (gateway_rule(fs, g, md5 ? (secret ? secret : g->secret) : NULL) < 0)
        return sample_fail(err, errlen, -ENOMEM, "out of memory");
    fs->sign.field = "sign";
    fs->sign.hash = g->rsa_sha256 ? CRYPTO_SHA256 : CRYPTO_SHA1;
    fs->sign.md5 = md5;
    fs->sign.md5_upper = g->hex_upper;
    fs->sign_type = md5 ? "MD5" : "RSA";
    return 0;
}

/* Notifications of [gateway NAME]: app_id from --app-id or the section. */
static int gateway_prepare(struct sample *s, const struct sample_opts *o,
                           const struct config *cfg, char *err, size_t errlen)
{
    const struct config_gateway *g = gateway_find(o->provider, cfg, err, errlen);
    const char *app_id = o->app_id ? o->app_id : g ? g->app_id : NULL;
    struct form_sample *fs;
    int r;

    if (!g)
        return -EINVAL;
    r = form_prepare(s, o, NULL, NULL, &fs, err, errlen);
    if (r == 0 && app_id)
        r = sample_text("--app-id", app_id, NULL, fs->app, err, errlen);
    if (r == 0)
        r = gateway_signer(s, fs, g, o->gateway.secret, err, errlen);
    return r;
}

/* A channel payment notification; out_trade_no and trade_no vary. */
static int gateway_build(struct sample *s, unsigned index, struct buf *out, char *err,
                         size_t errlen)
{
    const struct form_sample *fs = s->state;
    char id[SAMPLE_ID_MAX + 1], out_no[SAMPLE_ID_MAX + 2], when[24];
    const struct sample_kv kv[] = {
        {"out_trade_no", out_no},
        {"trade_no", id},
        {"pay_time", when},
        {"sign_type", fs->sign_type},
        {"total_amount", fs->money},
        {"trade_status", fs->status},
        {"app_id", fs->app[0] ? fs->app : NULL},
    };

    sample_id_at(&fs->id, index, id);
    snprintf(out_no, sizeof(out_no), "T%s", id);
    sample_cst(s->now, when);
    return form_build(s, kv, ARRAY_SIZE(kv), out, err, errlen);
}

/* ---- the table of builders ------------------------------------------- */

static const struct sample_kind sample_kinds[] = {
    {{"baidu.tp", "push", 1, "/baidu/tp/events",
      "TP message push: an encrypted, signed event or ticket envelope"},
     "application/json",
     NULL,
     tp_prepare,
     tp_build,
     tp_release},
    {{"baidu", "pay_notify", 1, "/baidu/pay/notify",
      "cashier pay notification: a form signed SHA1withRSA (rsaSign)"},
     FORM_TYPE,
     &baidu_pay_spec,
     baidu_pay_prepare,
     baidu_pay_build,
     form_release},
    {{"baidu", "refund_audit", 0, "/baidu/pay/refund-audit",
      "cashier refund audit request: a form signed SHA1withRSA (rsaSign)"},
     FORM_TYPE,
     &baidu_audit_spec,
     baidu_refund_prepare,
     baidu_refund_build,
     form_release},
    {{"baidu", "refund_notify", 0, "/baidu/pay/refund-notify",
      "cashier refund result notification: a form signed SHA1withRSA (rsaSign)"},
     FORM_TYPE,
     &baidu_refund_spec,
     baidu_refund_prepare,
     baidu_refund_build,
     form_release},
    {{"alipay", "notify", 1, "/alipay/notify",
      "asynchronous trade notification: a form signed RSA2 (SHA256withRSA)"},
     ALIPAY_TYPE,
     &alipay_spec,
     alipay_prepare,
     alipay_build,
     form_release},
    {{GATEWAY_ANY, "notify", 1, "/gateway/NAME/notify",
      "payment notification of [gateway NAME], signed as its section says"},
     FORM_TYPE,
     &gateway_spec,
     gateway_prepare,
     gateway_build,
     form_release},
};

/* Buildable pair i. */
const struct sample_kind_info *sample_kind_at(size_t i)
{
    return i < ARRAY_SIZE(sample_kinds) ? &sample_kinds[i].info : NULL;
}

/* 1 when `given` names the table's provider ("gateway.NAME" takes any NAME). */
static int sample_provider_is(const char *table, const char *given)
{
    size_t n = strlen(table), w = strlen(SAMPLE_ANY_NAME);

    if (n > w && strcmp(table + n - w, SAMPLE_ANY_NAME) == 0)
        return strncmp(table, given, n - w + 1) == 0 && given[n - w + 1] != '\0';
    return strcmp(table, given) == 0;
}

/* The builder for (provider, kind); kind NULL selects the default. */
static int sample_find(const char *provider, const char *kind,
                       const struct sample_kind **out, char *err, size_t errlen)
{
    int known = 0;
    size_t i;

    if (!provider)
        return sample_fail(err, errlen, -EINVAL, "PROVIDER is required (see --list)");
    for (i = 0; i < ARRAY_SIZE(sample_kinds); i++) {
        const struct sample_kind_info *k = &sample_kinds[i].info;
        if (!sample_provider_is(k->provider, provider))
            continue;
        known = 1;
        if (kind ? strcmp(k->kind, kind) == 0 : k->is_default) {
            *out = &sample_kinds[i];
            return 0;
        }
    }
    if (!known)
        return sample_fail(err, errlen, -EINVAL, "unknown provider '%s' (see --list)",
                           provider);
    return sample_fail(err, errlen, -EINVAL, "%s has no kind '%s' (see --list)", provider,
                       kind ? kind : "(default)");
}

/* 1 when word is one of the space-separated words of list. */
static int sample_word_in(const char *list, const char *word)
{
    size_t n = strlen(word);
    const char *p;

    for (p = list; (p = strstr(p, word)) != NULL; p += n)
        if ((p == list || p[-1] == ' ') && (p[n] == ' ' || p[n] == '\0'))
            return 1;
    return 0;
}

/* 1 when use u applies to provider (a table name such as "gateway.NAME"). */
int sample_use_for(const struct sample_use *u, const char *provider)
{
    return !u->providers || sample_word_in(u->providers, provider);
}

/* 1 when option p has a use for kind k. */
static int sample_applies(const struct sample_option *p, const struct sample_kind_info *k)
{
    const struct sample_use *u;
    size_t i;

    for (i = 0; i < SAMPLE_USES_MAX && p->uses[i].help; i++) {
        u = &p->uses[i];
        if (sample_use_for(u, k->provider) &&
            (!u->kinds || sample_word_in(u->kinds, k->kind)))
            return 1;
    }
    return 0;
}

/* Every option given applies to the chosen provider and kind. */
static int sample_check_scope(const struct sample_opts *o, const struct sample_kind *k,
                              char *err, size_t errlen)
{
    size_t i;

    for (i = 0; i < ARRAY_SIZE(sample_optdefs); i++)
        if (((o->given >> i) & 1) && !sample_applies(&sample_optdefs[i].pub, &k->info))
            return sample_fail(err, errlen, -EINVAL,
                               "--%s does not apply to %s %s (see --help)",
                               sample_optdefs[i].pub.name, o->provider, k->info.kind);
    return 0;
}

/* Copy the --field options as (key, value), a later one replacing an earlier. */
static int sample_fields(struct sample *s, const struct sample_opts *o, char *err,
                         size_t errlen)
{
    const char *kv, *eq;
    size_t i, j;
    char *key;

    if (o->n_fields > SAMPLE_FIELDS_MAX)
        return sample_fail(err, errlen, -E2BIG, "--field: at most %d are accepted",
                           SAMPLE_FIELDS_MAX);
    s->fields = calloc(o->n_fields + 1, sizeof(*s->fields));
    if (!s->fields)
        return sample_fail(err, errlen, -ENOMEM, "out of memory");
    for (i = 0; i < o->n_fields; i++) {
        kv = o->fields[i] ? o->fields[i] : "";
        eq = strchr(kv, '=');
        if (!eq || eq == kv)
            return sample_fail(err, errlen, -EINVAL,
                               "--field '%s': expected KEY=VALUE with a non-empty KEY",
                               kv);
        if (!(key = strdup(kv)))
            return sample_fail(err, errlen, -ENOMEM, "out of memory");
        key[eq - kv] = '\0';
        for (j = 0; j < s->n_fields && strcmp(s->fields[j].key, key) != 0; j++)
            ;
        if (j == s->n_fields)
            s->n_fields++;
        free(s->fields[j].key);
        s->fields[j] = (struct sample_field){key, key + (eq - kv) + 1};
    }
    return 0;
}

/* --private-key PATH: always a file (crypto.c reads "/..." and "./..." as one). */
static int sample_key(struct sample *s, const char *path, char *err, size_t errlen)
{
    char spec[PATH_MAX + 2], why[256];
    int r;

    if (!*path)
        return sample_fail(err, errlen, -EINVAL, "--private-key: the PATH is empty");
    if ((size_t)snprintf(spec, sizeof(spec), "%s%s",
                         path[0] == '/' || path[0] == '.' ? "" : "./",
                         path) >= sizeof(spec))
        return sample_fail(err, errlen, -ENAMETOOLONG, "--private-key: PATH too long");
    r = crypto_privkey_load(spec, &s->key, why, sizeof(why));
    if (r < 0)
        return sample_fail(err, errlen, r, "--private-key %s: %s", path, why);
    return 0;
}

/* Options every builder shares: count, time, nonce, fields, private key. */
static int sample_common(struct sample *s, const struct sample_opts *o, char *err,
                         size_t errlen)
{
    unsigned long long ts = (unsigned long long)time(NULL);
    int r;

    s->count = o->count ? o->count : 1;
    if (s->count > SAMPLE_COUNT_MAX)
        return sample_fail(err, errlen, -EINVAL, "--count: at most %u", SAMPLE_COUNT_MAX);
    if (o->timestamp && sample_uint(o->timestamp, SAMPLE_TS_MAX, &ts) < 0)
        return sample_fail(err, errlen, -EINVAL, "--timestamp: '%s' is not unix seconds",
                           o->timestamp);
    s->now = (long long)ts;
    snprintf(s->timestamp, sizeof(s->timestamp), "%llu", ts);
    if (o->tp.nonce && !sample_nonce_ok(o->tp.nonce))
        return sample_fail(err, errlen, -EINVAL,
                           "--nonce: must be 1 to %d ASCII letters or digits",
                           SAMPLE_NONCE_MAX);
    if (o->tp.nonce && !(s->nonce = strdup(o->tp.nonce)))
        return sample_fail(err, errlen, -ENOMEM, "out of memory");
    r = sample_fields(s, o, err, errlen);
    if (r < 0)
        return r;
    return o->private_key ? sample_key(s, o->private_key, err, errlen) : 0;
}

/* Validate, take defaults and prepare a sample. */
int sample_new(const struct sample_opts *o, const struct config *cfg, struct sample **out,
               char *err, size_t errlen)
{
    const struct sample_kind *k = NULL;
    struct sample *s = NULL;
    int r;

    r = sample_find(o->provider, o->kind, &k, err, errlen);
    if (r == 0)
        r = sample_check_scope(o, k, err, errlen);
    if (r < 0)
        return r;
    s = calloc(1, sizeof(*s));
    if (!s)
        return sample_fail(err, errlen, -ENOMEM, "out of memory");
    s->k = k;
    r = sample_common(s, o, err, errlen);
    if (r == 0)
        r = k->prepare(s, o, cfg, err, errlen);
    if (r == 0 && k->form)
        r = form_ready(s, err, errlen);
    if (r == 0) {
        *out = s;
        s = NULL;
    }
    sample_free(s);
    return r;
}

/* Number of distinct requests. */
unsigned sample_count(const struct sample *s)
{
    return s->count;
}

/* Content-Type of the bodies. */
const char *sample_content_type(const struct sample *s)
{
    return s->k->content_type;
}

/* Append request index. */
int sample_build(struct sample *s, unsigned index, struct buf *out, char *err,
                 size_t errlen)
{
    if (index >= s->count)
        return sample_fail(err, errlen, -EINVAL, "request %u of a sample of %u", index,
                           s->count);
    return s->k->build(s, index, out, err, errlen);
}

/* Free a sample. */
struct sample *sample_free(struct sample *s)
{
    size_t i;

    if (!s)
        return NULL;
    s->k->release(s->state);
    crypto_key_free(s->key);
    for (i = 0; s->fields && i < s->n_fields; i++)
        free(s->fields[i].key);
    free(s->fields);
    free(s->nonce);
    free(s);
    return NULL;
}

/* ---- sending ---------------------------------------------------------- */

/* Print every body and a newline. */
static int sample_print(struct sample *s, FILE *out, char *err, size_t errlen)
{
    struct buf b = {0};
    unsigned i;
    int r = 0;

    for (i = 0; i < s->count && r == 0; i++) {
        sample_buf_reset(&b);
        r = sample_build(s, i, &b, err, errlen);
        if (r == 0 && (fwrite(b.data, 1, b.len, out) != b.len || putc('\n', out) == EOF))
            r = sample_fail(err, errlen, -EIO, "cannot write the output: %s",
                            strerror(errno));
    }
    if (r == 0 && fflush(out) == EOF)
        r = sample_fail(err, errlen, -EIO, "cannot write the output: %s",
                        strerror(errno));
    buf_free(&b);
    return r;
}

/* One reusable HTTP client (keep-alive across requests). */
struct sample_http {
    CURL *h;
    struct curl_slist *headers;
    struct buf answer;
    char curl_err[CURL_ERROR_SIZE];
    int global;
};

/* libcurl write callback: keep the first SAMPLE_ANSWER_MAX bytes. */
static size_t sample_http_write(char *p, size_t size, size_t nmemb, void *data)
{
    struct buf *b = data;
    size_t len = size * nmemb;
    size_t room = b->len < SAMPLE_ANSWER_MAX ? SAMPLE_ANSWER_MAX - b->len : 0;

    if (buf_append(b, p, len < room ? len : room) < 0)
        return 0;
    return len;
}

/* Add one request header. */
static int sample_http_header(struct sample_http *c, const char *line)
{
    struct curl_slist *l = curl_slist_append(c->headers, line);

    if (!l)
        return -ENOMEM;
    c->headers = l;
    return 0;
}

/* Set up the client for POSTs of s's bodies to url. */
static int sample_http_open(struct sample_http *c, const struct sample *s,
                            const char *url, char *err, size_t errlen)
{
    char ct[128];

    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
        return sample_fail(err, errlen, -EIO, "cannot initialise libcurl");
    c->global = 1;
    c->h = curl_easy_init();
    snprintf(ct, sizeof(ct), "Content-Type: %s", sample_content_type(s));
    /* "Expect:" off: a 100-continue round trip per body only slows a load test. */
    if (!c->h || sample_http_header(c, ct) < 0 || sample_http_header(c, "Expect:") < 0)
        return sample_fail(err, errlen, -ENOMEM, "out of memory");
    if (curl_easy_setopt(c->h, CURLOPT_URL, url) != CURLE_OK ||
        curl_easy_setopt(c->h, CURLOPT_PROTOCOLS_STR, "http,https") != CURLE_OK ||
        curl_easy_setopt(c->h, CURLOPT_HTTPHEADER, c->headers) != CURLE_OK ||
        curl_easy_setopt(c->h, CURLOPT_WRITEFUNCTION, sample_http_write) != CURLE_OK ||
        curl_easy_setopt(c->h, CURLOPT_WRITEDATA, &c->answer) != CURLE_OK ||
        curl_easy_setopt(c->h, CURLOPT_ERRORBUFFER, c->curl_err) != CURLE_OK ||
        curl_easy_setopt(c->h, CURLOPT_NOSIGNAL, 1L) != CURLE_OK ||
        curl_easy_setopt(c->h, CURLOPT_CONNECTTIMEOUT, 10L) != CURLE_OK ||
        curl_easy_setopt(c->h, CURLOPT_TIMEOUT, 60L) != CURLE_OK)
        return sample_fail(err, errlen, -EINVAL, "--post: libcurl refused '%s'", url);
    return 0;
}

/* Release the client. */
static void sample_http_close(struct sample_http *c)
{
    curl_easy_cleanup(c->h);
    curl_slist_free_all(c->headers);
    buf_free(&c->answer);
    if (c->global)
        curl_global_cleanup();
}

/* POST one body; *status gets the HTTP status, c->answer the answer. */
static int sample_http_post(struct sample_http *c, const struct buf *body, long *status,
                            char *err, size_t errlen)
{
    CURLcode rc;

    sample_buf_reset(&c->answer);
    c->curl_err[0] = '\0';
    curl_easy_setopt(c->h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)body->len);
    curl_easy_setopt(c->h, CURLOPT_POSTFIELDS, body->data);
    rc = curl_easy_perform(c->h);
    if (rc != CURLE_OK)
        return sample_fail(err, errlen, -EIO, "%s",
                           c->curl_err[0] ? c->curl_err : curl_easy_strerror(rc));
    curl_easy_getinfo(c->h, CURLINFO_RESPONSE_CODE, status);
    return 0;
}

/* Print "STATUS BODY" for one answer, the body made printable and bounded. */
static int sample_print_answer(FILE *out, long status, const struct buf *answer)
{
    char shown[UTIL_ESC_SIZE(SAMPLE_ANSWER_SHOWN)];

    util_escape(answer->data ? answer->data : "", answer->len, UTIL_ESC_KEEP_HIGH, shown,
                sizeof(shown));
    return fprintf(out, "%ld %s\n", status, shown) < 0 ? -EIO : 0;
}

/* POST every request; returns the number of non-2xx answers or -errno. */
static int sample_post(struct sample *s, const char *url, FILE *out, char *err,
                       size_t errlen)
{
    struct sample_http c = {0};
    struct buf body = {0};
    char why[CURL_ERROR_SIZE + 64];
    unsigned i, bad = 0;
    long status = 0;
    int r;

    r = sample_http_open(&c, s, url, err, errlen);
    for (i = 0; i < s->count && r == 0; i++) {
        sample_buf_reset(&body);
        r = sample_build(s, i, &body, err, errlen);
        if (r == 0 && (r = sample_http_post(&c, &body, &status, why, sizeof(why))) < 0)
            sample_fail(err, errlen, r, "request %u of %u: POST %s: %s", i + 1, s->count,
                        url, why);
        if (r == 0 && (r = sample_print_answer(out, status, &c.answer)) < 0)
            sample_fail(err, errlen, r, "cannot write the output: %s", strerror(errno));
        bad += r == 0 && (status < 200 || status > 299);
    }
    if (r == 0 && fflush(out) == EOF)
        r = sample_fail(err, errlen, -EIO, "cannot write the output: %s",
                        strerror(errno));
    sample_http_close(&c);
    buf_free(&body);
    return r < 0 ? r : (int)bad;
}

/* Print or POST every request. */
int sample_send(struct sample *s, const char *url, FILE *out, char *err, size_t errlen)
{
    return url ? sample_post(s, url, out, err, errlen)
               : sample_print(s, out, err, errlen);
}
