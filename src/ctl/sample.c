/*
 * sample.c: builds correctly signed sample callbacks from a table of
 * (provider, kind) builders, and sends them (to stdout or by HTTP POST).
 * The builders sit beside each platform's callback handler, in
 * providers/NAME/sample.c; this file holds what they share (sample_int.h).
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
#include "wire/crypto.h"
#include "wire/form.h"
#include "ctl/sample_int.h"

#define SAMPLE_ID_LOW       100000000000000000ULL /* random ids: 18 digits */
#define SAMPLE_ID_SPAN      800000000000000000ULL /* ... with room for + count */
#define SAMPLE_DEFAULT_FEN  1000                  /* --amount default: 10.00 yuan */
#define SAMPLE_TS_MAX       253402300799ULL       /* 9999-12-31T23:59:59Z */
#define SAMPLE_ANSWER_MAX   (64 * 1024)           /* bytes of an HTTP answer kept */
#define SAMPLE_ANSWER_SHOWN 1024                  /* bytes of it printed */
#define SAMPLE_CST_OFFSET   (8 * 3600) /* the platforms write China Standard Time */
#define SAMPLE_ANY_NAME     ".NAME"    /* "gateway.NAME": any [gateway NAME] */

/* ---- errors and small parsers ------------------------------------------ */

/* Write a reason into err and return rc. */
int __attribute__((format(printf, 4, 5)))
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
int sample_uint(const char *s, unsigned long long max, unsigned long long *v)
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
void sample_free_secret(char *s)
{
    if (!s)
        return;
    explicit_bzero(s, strlen(s));
    free(s);
}

/* The nonce of one request: --nonce, or a random 9-digit number. */
int sample_nonce(const struct sample *s, char out[SAMPLE_NONCE_MAX + 1], char *err,
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
void sample_cst(long long unix_seconds, char out[24])
{
    time_t t = (time_t)(unix_seconds + SAMPLE_CST_OFFSET);
    struct tm tm;

    gmtime_r(&t, &tm);
    strftime(out, 24, "%Y-%m-%d %H:%M:%S", &tm);
}

/* A text value (what, or its default) copied into out: 1..SAMPLE_ID_MAX bytes. */
int sample_text(const char *what, const char *v, const char *def,
                char out[SAMPLE_ID_MAX + 1], char *err, size_t errlen)
{
    v = v ? v : def;
    if (!v || !*v || strlen(v) > SAMPLE_ID_MAX)
        return sample_fail(err, errlen, -EINVAL, "%s: must be 1 to %d bytes", what,
                           SAMPLE_ID_MAX);
    memcpy(out, v, strlen(v) + 1);
    return 0;
}

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
void sample_id_at(const struct sample_id *id, unsigned index, char out[SAMPLE_ID_MAX + 1])
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
int sample_json_fields(cJSON *obj, const struct sample *s, char *err, size_t errlen)
{
    size_t i;

    for (i = 0; i < s->n_fields; i++)
        if (sample_json_field(obj, &s->fields[i]) < 0)
            return sample_fail(err, errlen, -ENOMEM, "out of memory");
    return 0;
}

/* ---- signed forms (Baidu cashier, Alipay, gateways) -------------------- */

/* Free a form kind's state (the gateway secret wiped). */
void sample_form_release(void *state)
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
int sample_form_prepare(struct sample *s, const struct sample_opts *o, const char *what,
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
int sample_form_build(struct sample *s, const struct sample_kv *kv, size_t n,
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

/* ---- the table of builders ------------------------------------------- */

/* In the order of --list; each kind is filled beside its platform's callback. */
static const struct sample_kind *const sample_kinds[] = {
    &sample_baidu_tp_push,       &sample_baidu_pay_notify, &sample_baidu_refund_audit,
    &sample_baidu_refund_notify, &sample_alipay_notify,    &sample_gateway_notify,
};

/* Buildable pair i. */
const struct sample_kind_info *sample_kind_at(size_t i)
{
    return i < ARRAY_SIZE(sample_kinds) ? &sample_kinds[i]->info : NULL;
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
        const struct sample_kind_info *k = &sample_kinds[i]->info;
        if (!sample_provider_is(k->provider, provider))
            continue;
        known = 1;
        if (kind ? strcmp(k->kind, kind) == 0 : k->is_default) {
            *out = sample_kinds[i];
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
