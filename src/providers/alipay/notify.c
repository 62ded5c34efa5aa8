/*
 * alipay.c: the Alipay asynchronous notification (protocols.md section 4).
 * A form signed by Alipay (RSA2 = SHA256withRSA, RSA = SHA1withRSA) with the
 * Alipay public key of the app named by its app_id, verified over the raw
 * decoded bytes (the "V1" string, then once with sign_type kept, as the
 * official SDKs do), checked for the merchant's seller_id, stored, and only
 * then answered with the exact body "success". Every other answer is "fail",
 * which makes Alipay deliver again.
 */
#include <errno.h>
#include <iconv.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "wire/amount.h"
#include "wire/crypto.h"
#include "wire/form.h"
#include "providers/provider.h"

#define AP_TYPE      "text/plain; charset=utf-8"
#define AP_OK        "success"
#define AP_FAIL      "fail"
#define AP_QUOTE_MAX 64 /* bytes of a received value quoted in a rejection detail */

struct ap_state {
    const struct config *c;
};

/* V1: what trade notifications sign. V2: sign_type kept (service market, SDKs). */
static const char *const ap_v1_excluded[] = {"sign", "sign_type", NULL};
static const char *const ap_v2_excluded[] = {"sign", NULL};
static const struct form_canon_rule ap_v1 = {ap_v1_excluded, 1, NULL, 0};
static const struct form_canon_rule ap_v2 = {ap_v2_excluded, 1, NULL, 0};

/* A field's value, or NULL when it is absent or empty. */
static const char *ap_opt(const struct form *f, const char *key)
{
    size_t len;
    const char *v = form_get(f, key, &len);

    return v && len ? v : NULL;
}

/* A required field, or NULL after filling a 400 rejection. */
static const char *ap_need(const struct form *f, const char *key,
                           struct provider_reply *out)
{
    const char *v = ap_opt(f, key);

    if (!v)
        provider_reject(out, 400, "missing_field", AP_FAIL,
                        "field %s is missing or empty", key);
    return v;
}

/* The configured app named by app_id, or NULL after a 400/401 rejection. */
static const struct config_alipay_app *
ap_app(const struct ap_state *st, const struct form *f, struct provider_reply *out)
{
    const char *app_id = ap_need(f, "app_id", out);
    char q[UTIL_ESC_SIZE(AP_QUOTE_MAX)];
    size_t i, len;

    if (!app_id)
        return NULL;
    form_get(f, "app_id", &len); /* compared by length too: a %00 must not cut it short */
    for (i = 0; i < st->c->n_alipay_apps; i++)
        if (strlen(st->c->alipay_apps[i]->app_id) == len &&
            memcmp(st->c->alipay_apps[i]->app_id, app_id, len) == 0)
            return st->c->alipay_apps[i];
    provider_reject(out, 401, "unknown_app", AP_FAIL,
                    "app_id %s is not configured ([alipay.app])",
                    util_escape(app_id, len, UTIL_ESC_QUOTES, q, sizeof(q)));
    return NULL;
}

/* The form carries a non-empty sign, or a 401. */
static enum provider_verdict ap_has_sign(const struct form *f, struct provider_reply *out)
{
    if (ap_opt(f, "sign"))
        return PROVIDER_STORE;
    return provider_reject(out, 401, "missing_signature", AP_FAIL,
                           "field sign is missing or empty");
}

/* The digest sign_type names (absent/empty: RSA2), or a 401. */
static enum provider_verdict ap_hash(const struct form *f, enum crypto_hash *h,
                                     struct provider_reply *out)
{
    size_t len;
    const char *t = form_get(f, "sign_type", &len);
    char q[UTIL_ESC_SIZE(AP_QUOTE_MAX)];

    if (!t || !len || strcmp(t, "RSA2") == 0) {
        *h = CRYPTO_SHA256;
        return PROVIDER_STORE;
    }
    if (strcmp(t, "RSA") == 0) {
        *h = CRYPTO_SHA1;
        return PROVIDER_STORE;
    }
    return provider_reject(out, 401, "bad_sign_type", AP_FAIL,
                           "field sign_type '%s' is neither RSA2 nor RSA",
                           util_escape(t, len, UTIL_ESC_QUOTES, q, sizeof(q)));
}

/* Check sign (present: see ap_has_sign) by V1, then with sign_type kept;
 * with the app's key, and during a key switch its next one: 0 or -errno. */
static int ap_check(const struct config_alipay_app *app, const struct form *f,
                    enum crypto_hash h, struct provider_reply *out)
{
    size_t len;
    const char *sig = form_get(f, "sign", &len);
    int r = provider_verify_form(f, &ap_v1, app->alipay_key, app->alipay_key_next, h, sig,
                                 len, out);

    if (r == -EBADMSG && ap_opt(f, "sign_type"))
        r = provider_verify_form(f, &ap_v2, app->alipay_key, app->alipay_key_next, h, sig,
                                 len, out);
    return r;
}

/* Verify sign, or a 401 (503 when it could not be checked: the platform retries). */
static enum provider_verdict ap_verify(const struct config_alipay_app *app,
                                       const struct form *f, enum crypto_hash h,
                                       struct provider_reply *out)
{
    const char *alg = h == CRYPTO_SHA256 ? "RSA2" : "RSA";
    int r = ap_check(app, f, h, out);

    if (r == 0)
        return PROVIDER_STORE;
    if (r == -ENOMEM || r == -EIO)
        return provider_reject(out, 503, r == -ENOMEM ? "no_memory" : "crypto_failure",
                               AP_FAIL, "cannot verify sign for [alipay.app %s]: %s",
                               app->name,
                               r == -ENOMEM ? "out of memory" : "crypto failure");
    if (r == -EINVAL)
        return provider_reject(out, 401, "bad_signature", AP_FAIL,
                               "field sign is not base64 ([alipay.app %s])", app->name);
    return provider_reject(
        out, 401, "bad_signature", AP_FAIL,
        "field sign does not verify (%s, with and without sign_type) with "
        "the alipay_public_key of [alipay.app %s]",
        alg, app->name);
}

/* seller_id is the configured one (or none is configured), or a 401. */
static enum provider_verdict ap_seller_ok(const struct config_alipay_app *app,
                                          const struct form *f,
                                          struct provider_reply *out)
{
    size_t len;
    const char *v = form_get(f, "seller_id", &len);
    char q[UTIL_ESC_SIZE(AP_QUOTE_MAX)];

    if (!app->seller_id || !app->seller_id[0] ||
        (v && len == strlen(app->seller_id) && memcmp(v, app->seller_id, len) == 0))
        return PROVIDER_STORE;
    return provider_reject(
        out, 401, "wrong_seller", AP_FAIL,
        "field seller_id '%s' is not the seller_id of [alipay.app %s]",
        v ? util_escape(v, len, UTIL_ESC_QUOTES, q, sizeof(q)) : "(absent)", app->name);
}

/* Whether the form declares GBK values (GB2312 is a subset of GBK). */
static int ap_is_gbk(const struct form *f)
{
    const char *cs = form_get(f, "charset", NULL);

    return cs && (strcasecmp(cs, "gbk") == 0 || strcasecmp(cs, "gb2312") == 0);
}

/* Convert n bytes of GBK into dst (room for 4 bytes per input byte): 0 or -1. */
static int ap_iconv(iconv_t cd, const char *src, size_t n, char *dst, size_t *dst_len)
{
    char *in = (char *)src, *o = dst;
    size_t left = n * 4;

    iconv(cd, NULL, NULL, NULL, NULL);
    if (iconv(cd, &in, &n, &o, &left) == (size_t)-1 ||
        iconv(cd, NULL, NULL, &o, &left) == (size_t)-1)
        return -1;
    *dst_len = (size_t)(o - dst);
    return 0;
}

/* Largest value length of a form. */
static size_t ap_max_value(const struct form *f)
{
    size_t i, max = 0;

    for (i = 0; i < form_count(f); i++)
        if (form_at(f, i)->value_len > max)
            max = form_at(f, i)->value_len;
    return max;
}

/* A copy of the form with every value converted from GBK to UTF-8, or NULL
 * when one is not valid GBK (or on ENOMEM). No UTF-8 character is longer
 * than 4 bytes and no GBK one shorter than 1, so 4n bytes always suffice. */
static struct form *ap_form_utf8(const struct form *f)
{
    iconv_t cd = iconv_open("UTF-8", "GBK");
    struct form *u = NULL;
    char *scratch = NULL;
    size_t i, n;

    if (cd == (iconv_t)-1)
        return NULL;
    scratch = malloc(ap_max_value(f) * 4 + 1);
    u = scratch ? form_new() : NULL;
    for (i = 0; u && i < form_count(f); i++) {
        const struct form_field *fl = form_at(f, i);
        if (ap_iconv(cd, fl->value, fl->value_len, scratch, &n) < 0 ||
            form_add(u, fl->key, fl->key_len, scratch, n) < 0)
            u = form_free(u);
    }
    free(scratch);
    iconv_close(cd);
    return u;
}

/* The fields as JSON. GBK values are transcoded here, after verification and
 * for this column only; the raw body keeps the bytes as signed. */
static const char *ap_fields(const struct form *f, struct provider_reply *out)
{
    struct form *u;
    const char *json;

    if (!ap_is_gbk(f) || !(u = ap_form_utf8(f)))
        return provider_form_json(f, out);
    json = provider_form_json(u, out);
    form_free(u);
    return json;
}

/* A resend keeps notify_id; a later trade_status is a new event. */
static const char *const ap_key[] = {"app_id", "notify_id", "trade_status", NULL};

/*
 * A refund notification carries refund_fee (or out_biz_no, the refund's
 * request id): it has the original total_amount and often the same
 * trade_status as the payment (TRADE_SUCCESS after a partial refund,
 * TRADE_CLOSED after a full one), so it must never be stored as one.
 * refund_fee is the trade's TOTAL refunded so far (Alipay: "退款通知中，返回
 * 总退款金额"), so it becomes refund_total_fen; this refund's own amount,
 * refund_fen, is worked out in the transaction (ap_refund_in_tx).
 */
static int ap_is_refund(const struct form *f)
{
    return ap_opt(f, "refund_fee") || ap_opt(f, "out_biz_no");
}

/* The follow-up that confirms the event, when the app can sign queries. */
static void ap_followup(const void *state, const struct config_alipay_app *app,
                        const char *kind, struct store_event *ev)
{
    if (app->query && app->private_key)
        ev->followup = (struct store_followup){
            .kind = kind,
            .lane = "alipay",
            .confirms = 1,
            .delay_s = ((const struct ap_state *)state)->c->openapi.first_delay};
}

#define AP_NOTE_MAX 192

/* In the transaction: the refund's own amount from the stored totals. */
static int ap_refund_in_tx(struct store_tx *tx, struct store_event *ev, void *data)
{
    char *note = data;
    int r = store_tx_alipay_refund(tx, ev->app, ev->order_id, ev->refund_total_fen,
                                   &ev->refund_fen, note, AP_NOTE_MAX);

    if (r < 0)
        return r;
    ev->has_refund = 1;
    if (r == 1)
        ev->note = note;
    return 0;
}

/* Fill the event of a verified notification. */
static enum provider_verdict ap_event(const struct provider_request *rq,
                                      const struct form *f,
                                      const struct config_alipay_app *app,
                                      const char *notify_id, struct provider_reply *out)
{
    struct store_event *ev = &out->ev;

    ev->provider = "alipay";
    ev->app = app->app_id;
    ev->verified = 1;
    ev->order_id = ap_opt(f, "trade_no");
    ev->merchant_order_id = ap_opt(f, "out_trade_no");
    ev->status = ap_opt(f, "trade_status");
    ev->dedupe_key = provider_dedupe_key(out->arena, "alipay", f, ap_key);
    ev->remote_addr = rq->remote_addr;
    ev->fields = ap_fields(f, out);
    ev->body = rq->body;
    ev->body_len = rq->body_len;
    ev->answer = AP_OK;
    out->answer_type = AP_TYPE;
    out->fail_status = 503;
    out->fail_body = AP_FAIL;
    if (!ev->fields || !ev->dedupe_key)
        return provider_reject(out, 503, "no_memory", AP_FAIL, "out of memory");
    return PROVIDER_STORE;
}

/* The notification: parse, find the app, verify, check, store. */
static enum provider_verdict ap_notify(const void *state,
                                       const struct provider_request *rq,
                                       struct provider_reply *out)
{
    const struct config_alipay_app *app;
    const char *notify_id;
    enum crypto_hash hash;
    struct form *f;

    if (provider_form(rq, out, AP_FAIL, &f) != PROVIDER_STORE)
        return PROVIDER_ANSWER;
    if (!(app = ap_app(state, f, out)) || ap_has_sign(f, out) != PROVIDER_STORE ||
        ap_hash(f, &hash, out) != PROVIDER_STORE ||
        ap_verify(app, f, hash, out) != PROVIDER_STORE ||
        ap_seller_ok(app, f, out) != PROVIDER_STORE)
        return PROVIDER_ANSWER;
    if (!(notify_id = ap_need(f, "notify_id", out)) ||
        provider_yuan_field(f, "total_amount", &out->ev.amount_fen, &out->ev.has_amount,
                            AP_FAIL, out) != PROVIDER_STORE ||
        provider_yuan_field(f, "refund_fee", &out->ev.refund_total_fen,
                            &out->ev.has_refund_total, AP_FAIL, out) != PROVIDER_STORE)
        return PROVIDER_ANSWER;
    if (ap_is_refund(f)) {
        out->ev.kind = "refund_notify";
        if (out->ev.has_refund_total && ap_opt(f, "trade_no")) {
            out->ev.in_tx = ap_refund_in_tx;
            if (!(out->ev.in_tx_data = arena_alloc(out->arena, AP_NOTE_MAX)))
                return provider_reject(out, 503, "no_memory", AP_FAIL, "out of memory");
        }
        /* a refund is confirmed by its refund query, which names it by out_biz_no */
        if (ap_opt(f, "out_biz_no"))
            ap_followup(state, app, "alipay.refund_query", &out->ev);
    } else {
        out->ev.kind = "notify";
        ap_followup(state, app, "alipay.trade_query", &out->ev);
    }
    return ap_event(rq, f, app, notify_id, out);
}

static const struct route_ops ap_ops = {
    .kind = "notify", .accepts = provider_accepts_form, .handle = ap_notify};

/* Register the notify route when at least one [alipay.app] is configured. */
static int ap_load(const struct config *c, struct routes *rt, void **state, char *err,
                   size_t errlen)
{
    struct ap_state *st;
    int r;

    if (c->n_alipay_apps == 0)
        return 0;
    st = calloc(1, sizeof(*st));
    if (!st)
        return -ENOMEM;
    st->c = c;
    r = routes_add(rt, c->alipay.notify_path, &ap_ops, st, err, errlen);
    if (r < 0) {
        free(st);
        return r;
    }
    *state = st;
    return 0;
}

/* Free the state. */
static void ap_unload(void *state)
{
    free(state);
}

const struct provider provider_alipay = {
    "alipay",
    ap_load,
    ap_unload,
};
