/*
 * baidu_pay.c: the three Baidu cashier 2.0 callbacks (protocols.md section
 * 1): pay notification, refund audit and refund notification. Each is a form
 * signed SHA1withRSA by the platform key of the app that owns the order;
 * each answer is JSON, errno 0 only once the callback is durably stored.
 *
 * Refund audits are decided here (refund_audit = auto | approve | reject),
 * inside the transaction that stores them, so two audits of one order can
 * never both spend the same paid amount.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "wire/amount.h"
#include "wire/crypto.h"
#include "wire/form.h"
#include "providers/baidu/openapi.h"
#include "providers/provider.h"
#include "providers/baidu/learned.h"

#define BP_JSON_TYPE "application/json"
#define BP_FAIL_BODY                                                                     \
    "{\"errno\":503,\"msg\":\"store unavailable, retry later\",\"data\":{}}"
#define BP_BAD_FORM "{\"errno\":400,\"msg\":\"malformed form body\",\"data\":{}}"

struct bp_state {
    const struct config *c;
};

/* What a refund audit's in-transaction decision needs. */
struct bp_audit {
    const struct config_baidu_app *app;
    const char *order_id;
    const char *batch;
    int has_apply;
    int64_t apply; /* applyRefundMoney, fen */
    struct provider_reply *out;
};

static const char *const bp_excluded[] = {"rsaSign", "sign", "sign_type", NULL};
static const struct form_canon_rule bp_rule = {bp_excluded, 0, NULL, 0};

/* The fields each callback's dedupe key is made of (protocols.md). */
static const char *const bp_pay_key[] = {"orderId", "status", NULL};
static const char *const bp_audit_key[] = {"refundBatchId", NULL};
static const char *const bp_refund_key[] = {"refundBatchId", "refundStatus", NULL};

/* The dedupe key of a pay notification of order_id with status: the key a
 * sweep gives the event it synthesises, so the late callback is its
 * redelivery (the same fields, the same rule). NULL on ENOMEM. */
char *baidu_pay_dedupe_key(struct arena *a, const char *order_id, const char *status)
{
    struct form *f = form_new();
    char *key = NULL;

    if (f && form_add(f, "orderId", 7, order_id, strlen(order_id)) == 0 &&
        form_add(f, "status", 6, status, strlen(status)) == 0)
        key = provider_dedupe_key(a, "baidu:pay", f, bp_pay_key);
    form_free(f);
    return key;
}

/* Reject with Baidu's JSON error shape (errno != 0 makes Baidu retry). */
static enum provider_verdict bp_reject(struct provider_reply *out, int status,
                                       const char *reason, const char *detail)
{
    const char *body = arena_printf(
        out->arena, "{\"errno\":%d,\"msg\":\"%s\",\"data\":{}}", status, reason);

    provider_reject(out, status, reason, body ? body : BP_FAIL_BODY, "%s", detail);
    out->content_type = BP_JSON_TYPE;
    return PROVIDER_ANSWER;
}

/* A required field, or NULL after filling a 400 rejection. */
static const char *bp_need(const struct form *f, const char *key,
                           struct provider_reply *out)
{
    const char *v = form_get(f, key, NULL);
    char detail[96];

    if (v && v[0])
        return v;
    snprintf(detail, sizeof(detail), "field %s is missing or empty", key);
    bp_reject(out, 400, "missing_field", detail);
    return NULL;
}

/* How messages name an app: "[baidu.app NAME]" or "learned app ID". */
#define BP_APP_LABEL(app)                                                                  \
    (app)->learned ? "learned app " : "[baidu.app ", (app)->name, (app)->learned ? "" : "]"

/* The app that owns a dealId: a configured one, else a learned one (a
 * config app with the same deal id wins), or NULL. */
static const struct config_baidu_app *bp_app_by_deal(const struct config *c,
                                                     const char *deal)
{
    const struct config_baidu_app *app = config_baidu_app_by_deal(c, deal);

    return app ? app : baidu_learned_by_deal(deal);
}

/* Check rsaSign (present: see bp_has_sign) with one app's platform key, and
 * during a key switch its next one: 0, -EBADMSG, -EINVAL. */
static int bp_check(const struct config_baidu_app *app, const struct form *f,
                    struct provider_reply *out)
{
    size_t len;
    const char *sig = form_get(f, "rsaSign", &len);

    return provider_verify_form(f, &bp_rule, app->platform_key, app->platform_key_next,
                                CRYPTO_SHA1, sig, len, out);
}

/* A check that could not be made (no memory, OpenSSL failed): the platform must retry. */
static int bp_check_undecided(int r)
{
    return r == -ENOMEM || r == -EIO;
}

/* Reject after a failed check: 503 when undecided, else 401 with detail. */
static void bp_reject_check(struct provider_reply *out, int r, const char *detail)
{
    if (bp_check_undecided(r))
        bp_reject(out, 503, r == -ENOMEM ? "no_memory" : "crypto_failure",
                  "cannot verify rsaSign now: retry later");
    else
        bp_reject(out, 401, "bad_signature", detail);
}

/* The form carries a non-empty rsaSign, or a 401. */
static enum provider_verdict bp_has_sign(const struct form *f, struct provider_reply *out)
{
    size_t len;

    if (form_get(f, "rsaSign", &len) && len)
        return PROVIDER_STORE;
    return bp_reject(out, 401, "missing_signature", "field rsaSign is missing or empty");
}

/* Verify a pay notification: its dealId names the app. */
static const struct config_baidu_app *
bp_verify_pay(const struct bp_state *st, const struct form *f, struct provider_reply *out)
{
    const struct config_baidu_app *app;
    const char *deal;
    char detail[224], q[UTIL_ESC_SIZE(32)];
    int r;

    if (bp_has_sign(f, out) != PROVIDER_STORE || !(deal = bp_need(f, "dealId", out)))
        return NULL;
    app = bp_app_by_deal(st->c, deal);
    if (!app) {
        snprintf(detail, sizeof(detail),
                 "dealId '%s' is neither configured ([baidu.app]) nor learned (app_keys)",
                 util_escape(deal, strlen(deal), UTIL_ESC_QUOTES, q, sizeof(q)));
        bp_reject(out, 401, "unknown_app", detail);
        return NULL;
    }
    r = bp_check(app, f, out);
    if (r < 0) {
        snprintf(detail, sizeof(detail),
                 "rsaSign does not verify with the key of %s%s%s", BP_APP_LABEL(app));
        bp_reject_check(out, r, detail);
        return NULL;
    }
    return app;
}

/* The learned app whose key verifies the form, or NULL with *r the last
 * check's result. At most BP_LEARNED_TRY of them: an order never seen is
 * rare, and each try is an RSA verification. */
#define BP_LEARNED_TRY 512
static const struct config_baidu_app *bp_learned_verifying(const struct form *f,
                                                           struct provider_reply *out, int *r)
{
    const struct config_baidu_app *apps[BP_LEARNED_TRY];
    size_t n = baidu_learned_list(apps, BP_LEARNED_TRY), i;

    n = n < BP_LEARNED_TRY ? n : BP_LEARNED_TRY;
    for (i = 0; i < n && !bp_check_undecided(*r); i++)
        if ((*r = bp_check(apps[i], f, out)) == 0)
            return apps[i];
    return NULL;
}

/*
 * Verify a refund callback (no dealId): the app is the one of the stored
 * pay notification of the same orderId; for an order never seen, the
 * configured app whose key verifies it.
 */
static const struct config_baidu_app *bp_verify_refund(const struct bp_state *st,
                                                       const struct provider_request *rq,
                                                       const struct form *f,
                                                       struct provider_reply *out)
{
    const struct config_baidu_app *app = NULL;
    const char *order;
    char deal[64], detail[320], q[UTIL_ESC_SIZE(40)];
    size_t i;
    int found, r;

    if (bp_has_sign(f, out) != PROVIDER_STORE || !(order = bp_need(f, "orderId", out)))
        return NULL;
    util_escape(order, strlen(order), UTIL_ESC_QUOTES, q, sizeof(q)); /* not verified yet */
    found = store_baidu_order_deal(rq->store, order, deal, sizeof(deal));
    if (found < 0) {
        bp_reject(out, 503, "store_unavailable",
                  "cannot look up the order's app in the store: retry later");
        return NULL;
    }
    if (found == 1 && (app = bp_app_by_deal(st->c, deal)) != NULL) {
        if ((r = bp_check(app, f, out)) == 0)
            return app;
        snprintf(detail, sizeof(detail),
                 "rsaSign does not verify with the key of %s%s%s, which owns order %s",
                 BP_APP_LABEL(app), q);
        bp_reject_check(out, r, detail);
        return NULL;
    }
    for (i = 0, r = -EBADMSG; i < st->c->n_baidu_apps && !bp_check_undecided(r); i++)
        if ((r = bp_check(st->c->baidu_apps[i], f, out)) == 0)
            return st->c->baidu_apps[i];
    if (!bp_check_undecided(r) && (app = bp_learned_verifying(f, out, &r)) != NULL)
        return app;
    snprintf(detail, sizeof(detail),
             "rsaSign verifies with no configured or learned app's key (order %s)", q);
    bp_reject_check(out, r, detail);
    return NULL;
}

/* An integer fen field (absent or empty: *has stays 0), or a 400 quoting it. */
static enum provider_verdict bp_fen(const struct form *f, const char *key, int64_t *fen,
                                    int *has, struct provider_reply *out)
{
    size_t len;
    const char *v = form_get(f, key, &len);
    char detail[224], q[UTIL_ESC_SIZE(32)];

    if (!v || !len)
        return PROVIDER_STORE;
    if (amount_fen_parse(v, len, 0, fen) < 0) {
        snprintf(detail, sizeof(detail), "%s '%s' is not a whole number of fen", key,
                 util_escape(v, len, UTIL_ESC_QUOTES, q, sizeof(q)));
        return bp_reject(out, 400, "bad_amount", detail);
    }
    *has = 1;
    return PROVIDER_STORE;
}

/* The common part of every stored Baidu event. */
static enum provider_verdict bp_event(const struct provider_request *rq,
                                      const struct form *f,
                                      const struct config_baidu_app *app,
                                      const char *kind, struct provider_reply *out)
{
    struct store_event *ev = &out->ev;

    ev->provider = "baidu";
    ev->kind = kind;
    /* The platform's app id, whatever the callback names (design.md): the
     * dealId stays in the fields. */
    ev->app = config_baidu_app_id(app);
    ev->verified = 1;
    ev->order_id = form_get(f, "orderId", NULL);
    ev->merchant_order_id = form_get(f, "tpOrderId", NULL);
    ev->remote_addr = rq->remote_addr;
    ev->fields = provider_form_json(f, out);
    ev->body = rq->body;
    ev->body_len = rq->body_len;
    out->answer_type = BP_JSON_TYPE;
    out->fail_status = 503;
    out->fail_body = BP_FAIL_BODY;
    if (!ev->fields || !ev->dedupe_key || (!ev->answer && !ev->in_tx))
        return bp_reject(out, 503, "no_memory", "out of memory");
    return PROVIDER_STORE;
}

/* A follow-up query for the event, when the app has a token and query = yes
 * (design.md: otherwise its confirmation is none). A token not in the
 * config may be in `tokens` (issued to the TP, or put there by an
 * operator): the store then creates the job only when that row exists. */
static void bp_followup(const struct bp_state *st, const struct config_baidu_app *app,
                        const char *kind, struct provider_reply *out)
{
    int configured = app->access_token && app->access_token[0];

    if (!app->query || !app->app_key)
        return;
    out->ev.followup = (struct store_followup){
        .kind = kind, .lane = "baidu", .confirms = 1, .delay_s = st->c->openapi.first_delay,
        .token_app = configured ? NULL : config_baidu_app_id(app)};
}

/* Pay status notification. */
static enum provider_verdict bp_pay(const void *state, const struct provider_request *rq,
                                    struct provider_reply *out)
{
    const struct config_baidu_app *app;
    struct form *f;
    const char *order, *status;

    if (provider_form(rq, out, BP_BAD_FORM, &f) != PROVIDER_STORE)
        return bp_reject(out, out->status, out->reason, out->detail);
    if (!(app = bp_verify_pay(state, f, out)))
        return PROVIDER_ANSWER;
    if (!(order = bp_need(f, "orderId", out)) || !(status = bp_need(f, "status", out)))
        return PROVIDER_ANSWER;
    if (bp_fen(f, "totalMoney", &out->ev.amount_fen, &out->ev.has_amount, out) !=
        PROVIDER_STORE)
        return PROVIDER_ANSWER;
    if (!out->ev.has_amount)
        return bp_reject(out, 400, "missing_field",
                         "field totalMoney is missing or empty");
    out->ev.status = status;
    out->ev.dedupe_key = provider_dedupe_key(out->arena, "baidu:pay", f, bp_pay_key);
    out->ev.answer = arena_printf(
        out->arena, "{\"errno\":0,\"msg\":\"success\",\"data\":{\"isConsumed\":%u}}",
        app->is_consumed);
    bp_followup(state, app, "baidu.find_order", out);
    return bp_event(rq, f, app, "pay_notify", out);
}

/*
 * The decision, on what the store holds inside this transaction. Every
 * policy answers 3 (undecided: Baidu asks again) while no verified paid
 * notification of the order is stored -- it may only be late -- and never
 * approves more than was paid minus what is already approved (over it: 2).
 * Returns 1 approve, 2 reject, 3 undecided, or -errno (a store error: the
 * item fails and Baidu retries; it never becomes a decision).
 */
static int bp_decide(struct store_tx *tx, struct bp_audit *a, int64_t *refund,
                     const char **why)
{
    char paid_text[32];
    int64_t paid, approved, left;
    int found = store_tx_baidu_paid(tx, a->order_id, paid_text, sizeof(paid_text)), r;

    *refund = a->has_apply ? a->apply : 0;
    if (found < 0)
        return found;
    if (!found) {
        *why = "no verified paid notification of this order is stored yet: undecided";
        return 3;
    }
    if ((r = store_tx_baidu_approved(tx, a->order_id, &approved)) < 0)
        return r;
    if (amount_fen_parse(paid_text, strlen(paid_text), 0, &paid) < 0) {
        *why = "the stored payMoney of this order is not a whole number of fen";
        return 2;
    }
    left = paid - approved > 0 ? paid - approved : 0;
    if (!a->has_apply)
        *refund = left;
    if (a->app->refund_audit == AUDIT_REJECT) {
        *why = "refund_audit = reject";
        return 2;
    }
    if (*refund <= 0) {
        *why = a->has_apply ? "applyRefundMoney is zero" : "nothing left to refund";
        return 2;
    }
    if (*refund > left) {
        *why =
            arena_printf(a->out->arena,
                         "over-refund: %lld applied + %lld already approved > %lld paid",
                         (long long)*refund, (long long)approved, (long long)paid);
        return 2;
    }
    *why = arena_printf(
        a->out->arena, "covered: %lld + %lld approved <= %lld paid%s", (long long)*refund,
        (long long)approved, (long long)paid,
        a->app->refund_audit == AUDIT_APPROVE ? " (refund_audit = approve)" : "");
    return 1;
}

/* In the transaction: decide, record the decision, write the answer. */
static int bp_audit_in_tx(struct store_tx *tx, struct store_event *ev, void *data)
{
    struct bp_audit *a = data;
    const char *why = NULL;
    int64_t refund = 0;
    int status, r;

    status = bp_decide(tx, a, &refund, &why);
    if (status < 0)
        return status;
    if (!why)
        return -ENOMEM;
    ev->answer =
        arena_printf(a->out->arena,
                     "{\"errno\":0,\"msg\":\"success\",\"data\":{\"auditStatus\":%d,"
                     "\"calculateRes\":{\"refundPayMoney\":%lld}}}",
                     status, (long long)refund);
    ev->note = why;
    if (!ev->answer)
        return -ENOMEM;
    if (status == 3) {
        ev->status = "undecided";
        return 1; /* nothing recorded: the next ask decides on what is stored then */
    }
    if ((r = store_tx_baidu_decide(tx, a->batch, a->order_id, status, refund, why)) < 0)
        return r;
    ev->status = status == 1 ? "approve" : "reject";
    ev->has_refund = 1;
    ev->refund_fen = refund;
    return 0;
}

/* Refund audit request: verified here, decided in the store's transaction. */
static enum provider_verdict
bp_audit(const void *state, const struct provider_request *rq, struct provider_reply *out)
{
    const struct config_baidu_app *app;
    struct bp_audit *a;
    struct form *f;
    const char *batch;

    if (provider_form(rq, out, BP_BAD_FORM, &f) != PROVIDER_STORE)
        return bp_reject(out, out->status, out->reason, out->detail);
    if (!(app = bp_verify_refund(state, rq, f, out)))
        return PROVIDER_ANSWER;
    if (!(batch = bp_need(f, "refundBatchId", out)))
        return PROVIDER_ANSWER;
    a = arena_alloc(out->arena, sizeof(*a));
    if (!a)
        return bp_reject(out, 503, "no_memory", "out of memory");
    memset(a, 0, sizeof(*a));
    a->app = app;
    a->order_id = form_get(f, "orderId", NULL);
    a->batch = batch;
    a->out = out;
    if (bp_fen(f, "applyRefundMoney", &a->apply, &a->has_apply, out) != PROVIDER_STORE)
        return PROVIDER_ANSWER;
    out->ev.dedupe_key =
        provider_dedupe_key(out->arena, "baidu:refund_audit", f, bp_audit_key);
    out->ev.in_tx = bp_audit_in_tx;
    out->ev.in_tx_data = a;
    return bp_event(rq, f, app, "refund_audit", out);
}

/* Record the refund's outcome against its audit decision. */
static int bp_refund_in_tx(struct store_tx *tx, struct store_event *ev, void *data)
{
    const char *batch = data;
    int status = strcmp(ev->status, "1") == 0 ? 1 : strcmp(ev->status, "2") == 0 ? 2 : 0;
    int r = store_tx_baidu_decided(tx, batch, &ev->refund_fen);

    if (r < 0)
        return r;
    ev->has_refund = r == 1; /* the audited amount, when payhookd decided it */
    return status ? store_tx_baidu_refund_outcome(tx, batch, status) : 0;
}

/* Refund status notification. */
static enum provider_verdict bp_refund(const void *state,
                                       const struct provider_request *rq,
                                       struct provider_reply *out)
{
    const struct config_baidu_app *app;
    const char *batch, *status;
    struct form *f;

    if (provider_form(rq, out, BP_BAD_FORM, &f) != PROVIDER_STORE)
        return bp_reject(out, out->status, out->reason, out->detail);
    if (!(app = bp_verify_refund(state, rq, f, out)))
        return PROVIDER_ANSWER;
    if (!(batch = bp_need(f, "refundBatchId", out)) ||
        !(status = bp_need(f, "refundStatus", out)))
        return PROVIDER_ANSWER;
    out->ev.status = status;
    out->ev.dedupe_key =
        provider_dedupe_key(out->arena, "baidu:refund_notify", f, bp_refund_key);
    out->ev.answer = "{\"errno\":0,\"msg\":\"success\",\"data\":{}}";
    out->ev.in_tx = bp_refund_in_tx;
    out->ev.in_tx_data = (void *)batch;
    bp_followup(state, app, "baidu.find_refund", out);
    return bp_event(rq, f, app, "refund_notify", out);
}

static const struct route_ops bp_pay_ops = {
    .kind = "pay_notify", .accepts = provider_accepts_form, .handle = bp_pay};
static const struct route_ops bp_audit_ops = {
    .kind = "refund_audit", .accepts = provider_accepts_form, .handle = bp_audit};
static const struct route_ops bp_refund_ops = {
    .kind = "refund_notify", .accepts = provider_accepts_form, .handle = bp_refund};

/* Register the three routes when at least one [baidu.app] is configured. */
static int bp_load(const struct config *c, struct routes *rt, void **state, char *err,
                   size_t errlen)
{
    struct bp_state *st;
    int r;

    if (c->n_baidu_apps == 0 && !c->tp.enabled)
        return 0; /* a TP's apps may be learned: their callbacks come here too */
    st = calloc(1, sizeof(*st));
    if (!st)
        return -ENOMEM;
    st->c = c;
    if ((r = routes_add(rt, c->baidu.pay_notify_path, &bp_pay_ops, st, err, errlen)) <
            0 ||
        (r = routes_add(rt, c->baidu.refund_audit_path, &bp_audit_ops, st, err, errlen)) <
            0 ||
        (r = routes_add(rt, c->baidu.refund_notify_path, &bp_refund_ops, st, err,
                        errlen)) < 0) {
        free(st);
        return r;
    }
    *state = st;
    return 0;
}

/* Free the state. */
static void bp_unload(void *state)
{
    free(state);
}

const struct provider provider_baidu_pay = {
    "baidu",
    bp_load,
    bp_unload,
};
