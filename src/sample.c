/*
 * sample.c: builds correctly signed sample callbacks from a table of
 * (provider, kind) builders, and sends them (to stdout or by HTTP POST).
 * Adding a platform's callback is one builder and one entry in
 * sample_kinds[], plus its options in sample_optdefs[].
 */
#include <cjson/cJSON.h>
#include <curl/curl.h>
#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "config.h"
#include "crypto.h"
#include "sample.h"

#define SAMPLE_NONCE_MAX    64
#define SAMPLE_TS_MAX       253402300799ULL     /* 9999-12-31T23:59:59Z */
#define SAMPLE_JSON_INT_MAX 9007199254740992ULL /* 2^53: exact in a JSON number */
#define SAMPLE_ANSWER_MAX   (64 * 1024)         /* bytes of an HTTP answer kept */
#define SAMPLE_ANSWER_SHOWN 1024                /* bytes of it printed */

#define TP_DEFAULT_EVENT     "APP_PAYMENT_CREATE_ACCOUNT_PASS"
#define TP_DEFAULT_APP_ID    "14508451"
#define TP_DEFAULT_TP_APP_ID "10086"
#define TP_FROM_USER         "SmartApp" /* what the platform sends in a ticket push */
#define TP_CST_OFFSET        (8 * 3600) /* eventTime is China Standard Time */

struct sample;

/* One (provider, kind) builder. */
struct sample_kind {
    struct sample_kind_info info;
    const char *content_type;
    int signs; /* 1: signed with the merchant's key, so takes --private-key */
    /* Check the options, take defaults from cfg, set s->state. */
    int (*prepare)(struct sample *s, const struct sample_opts *o,
                   const struct config *cfg, char *err, size_t errlen);
    /* Append request `index` to out. */
    int (*build)(struct sample *s, unsigned index, struct buf *out, char *err,
                 size_t errlen);
    /* Free s->state (NULL-safe, also when prepare failed half-way). */
    void (*release)(void *state);
};

struct sample {
    const struct sample_kind *k;
    unsigned count;
    long long now;          /* --timestamp, or the time sample_new ran */
    char timestamp[24];     /* the same as text */
    char *nonce;            /* --nonce, or NULL: random per request */
    struct crypto_key *key; /* --private-key, for kinds that sign with it */
    void *state;            /* the builder's own: secrets, prepared message */
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

/* ---- the option table ------------------------------------------------- */

enum sample_opt_type { OPT_STRING, OPT_COUNT, OPT_FIELD };

/* An option with where its value goes in struct sample_opts. */
struct sample_optdef {
    struct sample_option pub;
    enum sample_opt_type type;
    size_t off;
};

#define OFF(m) offsetof(struct sample_opts, m)
static const struct sample_optdef sample_optdefs[] = {
    {{"count", "N", "build N distinct requests (default 1), one per line", NULL},
     OPT_COUNT,
     OFF(count)},
    {{"field", "KEY=VALUE", "set or add a field of the message (repeatable)", NULL},
     OPT_FIELD,
     0},
    {{"timestamp", "SECONDS", "the request time, unix seconds (default now)", NULL},
     OPT_STRING,
     OFF(timestamp)},
    {{"nonce", "TEXT", "the nonce, 1-64 letters or digits (default random)", NULL},
     OPT_STRING,
     OFF(nonce)},
    {{"private-key", "PATH", "PEM private key, for kinds signed with the merchant's key",
      NULL},
     OPT_STRING,
     OFF(private_key)},
    {{"token", "T", "the Token ([baidu.tp] token)", "baidu.tp"},
     OPT_STRING,
     OFF(tp.token)},
    {{"aes-key", "K", "the EncodingAESKey ([baidu.tp] encoding_aes_key)", "baidu.tp"},
     OPT_STRING,
     OFF(tp.aes_key)},
    {{"client-id", "C", "the client id ([baidu.tp] client_id)", "baidu.tp"},
     OPT_STRING,
     OFF(tp.client_id)},
    {{"event", "NAME", "send this audit event (default " TP_DEFAULT_EVENT ")",
      "baidu.tp"},
     OPT_STRING,
     OFF(tp.event)},
    {{"app-id", "N", "appId of the event (default " TP_DEFAULT_APP_ID ")", "baidu.tp"},
     OPT_STRING,
     OFF(tp.app_id)},
    {{"tp-app-id", "N", "tpAppId of the event (default " TP_DEFAULT_TP_APP_ID ")",
      "baidu.tp"},
     OPT_STRING,
     OFF(tp.tp_app_id)},
    {{"ticket", "TICKET", "send a ticket push with this Ticket instead", "baidu.tp"},
     OPT_STRING,
     OFF(tp.ticket)},
    {{"message", "JSON", "send this message verbatim instead", "baidu.tp"},
     OPT_STRING,
     OFF(tp.message)},
};
#undef OFF

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

/* Set or add one "KEY=VALUE" field: VALUE as JSON when it parses, else text. */
static int sample_json_field(cJSON *obj, const char *kv)
{
    const char *eq = strchr(kv, '=');
    char *key = util_strndup(kv, (size_t)(eq - kv));
    cJSON *item = cJSON_ParseWithOpts(eq + 1, NULL, 1);
    int r = -ENOMEM;

    if (!item)
        item = cJSON_CreateString(eq + 1);
    if (!key || !item)
        goto out;
    if (cJSON_GetObjectItemCaseSensitive(obj, key)) {
        if (!cJSON_ReplaceItemInObjectCaseSensitive(obj, key, item))
            goto out;
    } else if (!cJSON_AddItemToObject(obj, key, item)) {
        goto out;
    }
    item = NULL;
    r = 0;
out:
    cJSON_Delete(item);
    free(key);
    return r;
}

/* Apply every --field to a message object. */
static int sample_json_fields(cJSON *obj, const struct sample_opts *o, char *err,
                              size_t errlen)
{
    size_t i;

    for (i = 0; i < o->n_fields; i++)
        if (sample_json_field(obj, o->fields[i]) < 0)
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

/* eventTime as the platform writes it: "YYYY-MM-DD HH:MM:SS", UTC+8. */
static void tp_event_time(long long now, char out[24])
{
    time_t t = (time_t)(now + TP_CST_OFFSET);
    struct tm tm;

    gmtime_r(&t, &tm);
    strftime(out, 24, "%Y-%m-%d %H:%M:%S", &tm);
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
    r = tp_id(s, "app-id", o->tp.app_id, TP_DEFAULT_APP_ID, &app_id, err, errlen);
    if (r == 0)
        r = tp_id(s, "tp-app-id", o->tp.tp_app_id, TP_DEFAULT_TP_APP_ID, &tp_app_id, err,
                  errlen);
    if (r < 0)
        return r;
    tp_event_time(s->now, when);
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
    if ((o->tp.message || o->tp.ticket) && (o->tp.app_id || o->tp.tp_app_id))
        return sample_fail(err, errlen, -EINVAL, "--%s applies to --event messages only",
                           o->tp.app_id ? "app-id" : "tp-app-id");
    if (o->tp.message)
        return tp_verbatim_message(s, t, o, err, errlen);
    r = o->tp.ticket ? tp_ticket_message(s, t, o, err, errlen)
                     : tp_event_message(s, t, o, err, errlen);
    if (r == 0)
        r = sample_json_fields(t->msg, o, err, errlen);
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
    crypto_tp_signature(t->token, s->timestamp, nonce, enc, sig);
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

/* ---- the table of builders ------------------------------------------- */

static const struct sample_kind sample_kinds[] = {
    {{"baidu.tp", "push", 1, "/baidu/tp/events",
      "TP message push: an encrypted, signed event or ticket envelope"},
     "application/json",
     0,
     tp_prepare,
     tp_build,
     tp_release},
};

/* Buildable pair i. */
const struct sample_kind_info *sample_kind_at(size_t i)
{
    return i < ARRAY_SIZE(sample_kinds) ? &sample_kinds[i].info : NULL;
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
        if (strcmp(k->provider, provider) != 0)
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

/* Every option given belongs to the chosen provider. */
static int sample_check_scope(const struct sample_opts *o, const struct sample_kind *k,
                              char *err, size_t errlen)
{
    const struct sample_option *p;
    size_t i;

    for (i = 0; i < ARRAY_SIZE(sample_optdefs); i++) {
        p = &sample_optdefs[i].pub;
        if (((o->given >> i) & 1) && p->provider && strcmp(p->provider, k->info.provider))
            return sample_fail(err, errlen, -EINVAL, "--%s applies to %s only", p->name,
                               p->provider);
    }
    if (o->private_key && !k->signs)
        return sample_fail(err, errlen, -EINVAL,
                           "--private-key: %s %s is not signed with a private key",
                           k->info.provider, k->info.kind);
    return 0;
}

/* Options every builder shares: count, time, nonce, fields, private key. */
static int sample_common(struct sample *s, const struct sample_opts *o, char *err,
                         size_t errlen)
{
    unsigned long long ts = (unsigned long long)time(NULL);
    size_t i;

    s->count = o->count ? o->count : 1;
    if (s->count > SAMPLE_COUNT_MAX)
        return sample_fail(err, errlen, -EINVAL, "--count: at most %u", SAMPLE_COUNT_MAX);
    if (o->timestamp && sample_uint(o->timestamp, SAMPLE_TS_MAX, &ts) < 0)
        return sample_fail(err, errlen, -EINVAL, "--timestamp: '%s' is not unix seconds",
                           o->timestamp);
    s->now = (long long)ts;
    snprintf(s->timestamp, sizeof(s->timestamp), "%llu", ts);
    if (o->nonce && !sample_nonce_ok(o->nonce))
        return sample_fail(err, errlen, -EINVAL,
                           "--nonce: must be 1 to %d ASCII letters or digits",
                           SAMPLE_NONCE_MAX);
    if (o->nonce && !(s->nonce = strdup(o->nonce)))
        return sample_fail(err, errlen, -ENOMEM, "out of memory");
    if (o->n_fields > SAMPLE_FIELDS_MAX)
        return sample_fail(err, errlen, -E2BIG, "--field: at most %d are accepted",
                           SAMPLE_FIELDS_MAX);
    for (i = 0; i < o->n_fields; i++)
        if (!o->fields[i] || o->fields[i][0] == '=' || !strchr(o->fields[i], '='))
            return sample_fail(err, errlen, -EINVAL,
                               "--field '%s': expected KEY=VALUE with a non-empty KEY",
                               o->fields[i] ? o->fields[i] : "");
    if (o->private_key)
        return crypto_privkey_load(o->private_key, &s->key, err, errlen);
    return 0;
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
    if (!s)
        return NULL;
    s->k->release(s->state);
    crypto_key_free(s->key);
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
    char shown[SAMPLE_ANSWER_SHOWN + 1];

    util_printable(answer->data ? answer->data : "", answer->len, shown, sizeof(shown));
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
