/*
 * sample.c: Baidu's sample callbacks for payhookctl sample (ctl/sample.h):
 * the TP message push (an encrypted, signed JSON envelope, the one tp.c
 * opens) and the cashier's pay, refund-audit and refund notifications
 * (forms signed SHA1withRSA, the ones pay.c verifies). Built beside those
 * handlers so that a change to what the platform sends is made in one place.
 */
#include <cjson/cJSON.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "wire/crypto.h"
#include "ctl/sample_int.h"

#define SAMPLE_JSON_INT_MAX 9007199254740992ULL /* 2^53: exact in a JSON number */

#define TP_FROM_USER "SmartApp" /* what the platform sends in a ticket push */

/* Constant fields of the samples, as the platform's documents show them. */
#define BAIDU_USER_ID    "2389718"
#define BAIDU_PAY_TYPE   "1087"
#define BAIDU_PARTNER_ID "6000001"

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
        memcpy(t->key, c->aes_key.key, sizeof(t->key));
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
    int r = sample_form_prepare(s, o, "--order-id", o->baidu.order_id, &fs, err, errlen);

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
    int r = sample_form_prepare(s, o, "--refund-batch-id", o->baidu.refund_batch_id, &fs,
                                err, errlen);

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
    return sample_form_build(s, kv, ARRAY_SIZE(kv), out, err, errlen);
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
    return sample_form_build(s, kv, ARRAY_SIZE(kv), out, err, errlen);
}

/* ---- the kinds, entries of sample_kinds[] (ctl/sample.c) ------------ */

const struct sample_kind sample_baidu_tp_push = {
    {"baidu.tp", "push", 1, "/baidu/tp/events",
     "TP message push: an encrypted, signed event or ticket envelope"},
    "application/json",
    NULL,
    tp_prepare,
    tp_build,
    tp_release,
};

const struct sample_kind sample_baidu_pay_notify = {
    {"baidu", "pay_notify", 1, "/baidu/pay/notify",
     "cashier pay notification: a form signed SHA1withRSA (rsaSign)"},
    FORM_TYPE,
    &baidu_pay_spec,
    baidu_pay_prepare,
    baidu_pay_build,
    sample_form_release,
};

const struct sample_kind sample_baidu_refund_audit = {
    {"baidu", "refund_audit", 0, "/baidu/pay/refund-audit",
     "cashier refund audit request: a form signed SHA1withRSA (rsaSign)"},
    FORM_TYPE,
    &baidu_audit_spec,
    baidu_refund_prepare,
    baidu_refund_build,
    sample_form_release,
};

const struct sample_kind sample_baidu_refund_notify = {
    {"baidu", "refund_notify", 0, "/baidu/pay/refund-notify",
     "cashier refund result notification: a form signed SHA1withRSA (rsaSign)"},
    FORM_TYPE,
    &baidu_refund_spec,
    baidu_refund_prepare,
    baidu_refund_build,
    sample_form_release,
};
