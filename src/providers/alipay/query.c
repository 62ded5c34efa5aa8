/*
 * query.c: the Alipay follow-ups (protocols.md section 5): a payment's
 * alipay.trade.query, a refund's alipay.trade.fastpay.refund.query. The
 * request is signed RSA2 with the app's private key; the answer counts only
 * when its signature verifies over the exact raw text of
 * <method>_response with alipay_public_key (or the next key during a
 * switch). An unsigned or forged answer is never a confirmation.
 */
#include "openapi/query.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "providers/alipay/response.h"
#include "wire/amount.h"
#include "wire/form.h"
#include "wire/json.h"

/* One Alipay method: its name, the key of its answer, and how a verified
 * successful (code 10000) answer is judged against the event. */
struct aq_method {
    const char *name, *response;
    void (*judge)(const struct query_env *env, const cJSON *resp, struct query_answer *a);
};

static const char *const aq_excluded[] = {"sign", NULL};
static const struct form_canon_rule aq_rule = {aq_excluded, 1, NULL, 0};

/* The [alipay.app] of the job's event, with its private key. */
static const struct config_alipay_app *aq_app(const struct query_env *env,
                                              struct query_answer *a)
{
    const struct config *c = env->cfg;
    size_t i;

    for (i = 0; env->job->app && i < c->n_alipay_apps; i++)
        if (strcmp(c->alipay_apps[i]->app_id, env->job->app) == 0) {
            if (c->alipay_apps[i]->private_key)
                return c->alipay_apps[i];
            query_set(a, QUERY_ERROR, "[alipay.app %s] has no app_private_key",
                      c->alipay_apps[i]->name);
            return NULL;
        }
    query_set(a, QUERY_ERROR, "no [alipay.app] with app_id %s",
              env->job->app ? env->job->app : "(none)");
    return NULL;
}

/* Alipay's timestamp: "yyyy-MM-dd HH:mm:ss" in UTC+8. */
static void aq_timestamp(char out[24])
{
    time_t t = time(NULL) + 8 * 3600;
    struct tm tm;

    gmtime_r(&t, &tm);
    strftime(out, 24, "%Y-%m-%d %H:%M:%S", &tm);
}

/* {"out_trade_no":"..."[,"out_request_no":"..."]} with JSON escaping;
 * malloc'd or NULL. */
static char *aq_biz(const char *out_trade_no, const char *out_request_no)
{
    cJSON *o = cJSON_CreateObject();
    char *s = NULL;

    if (o && cJSON_AddStringToObject(o, "out_trade_no", out_trade_no) &&
        (!out_request_no || cJSON_AddStringToObject(o, "out_request_no", out_request_no)))
        s = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    return s;
}

/* The signed, form-encoded request body; malloc'd or NULL (a set). */
static char *aq_request(const struct config_alipay_app *app, const char *method, char *biz,
                        size_t *len, struct query_answer *a)
{
    char ts[24], *canon = NULL, *sig = NULL, *body = NULL;
    const char *kv[] = {"app_id", app->app_id, "method", method, "format", "JSON",
                        "charset", "utf-8", "sign_type", "RSA2", "timestamp", ts,
                        "version", "1.0", "biz_content", biz, NULL};
    struct form *f = form_new();
    size_t i, canon_len;
    int bad = !f || !biz;

    aq_timestamp(ts);
    for (i = 0; !bad && kv[i]; i += 2)
        bad = form_add(f, kv[i], strlen(kv[i]), kv[i + 1], strlen(kv[i + 1])) < 0;
    if (!bad && form_canonical(f, &aq_rule, &canon, &canon_len) == 0 &&
        crypto_rsa_sign_b64(app->private_key, CRYPTO_SHA256, canon, canon_len, &sig) == 0 &&
        form_add(f, "sign", 4, sig, strlen(sig)) == 0 && form_encode(f, &body, len) < 0)
        body = NULL;
    if (!body)
        query_set(a, QUERY_ERROR, "cannot build the signed request (out of memory?)");
    free(canon);
    free(sig);
    form_free(f);
    return body;
}

/* 0 when the answer is signed by alipay_public_key or the next key. */
static int aq_verify(const struct config_alipay_app *app, const char *method,
                     struct query_answer *a)
{
    const struct buf *b = &a->call.body;
    char err[160];
    int r = alipay_response_verify(b->data, b->len, method, app->alipay_key,
                                   CRYPTO_SHA256, err, sizeof(err));

    if (r == -EBADMSG && app->alipay_key_next)
        r = alipay_response_verify(b->data, b->len, method, app->alipay_key_next,
                                   CRYPTO_SHA256, err, sizeof(err));
    if (r < 0)
        query_set(a, QUERY_ERROR, "%s answer not trusted: %s",
                  r == -ENOKEY ? "unsigned" : "signature check failed:", err);
    return r;
}

/* Is their trade_status the notified one or a later state of it? */
static int aq_status_ok(const char *ours, const char *theirs)
{
    static const char *const later[][4] = {
        {"WAIT_BUYER_PAY", "TRADE_SUCCESS", "TRADE_FINISHED", "TRADE_CLOSED"},
        {"TRADE_SUCCESS", "TRADE_FINISHED", NULL, NULL},
    };
    size_t i, k;

    if (strcmp(ours, theirs) == 0)
        return 1;
    for (i = 0; i < sizeof(later) / sizeof(later[0]); i++)
        if (strcmp(later[i][0], ours) == 0)
            for (k = 1; k < 4 && later[i][k]; k++)
                if (strcmp(later[i][k], theirs) == 0)
                    return 1;
    return 0;
}

/* Compare a verified successful trade.query answer with the notification. */
static void aq_judge_trade(const struct query_env *env, const cJSON *resp,
                           struct query_answer *a)
{
    const struct store_job *j = env->job;
    char status[32], total[32], trade_no[80], ours[32], theirs[32];
    int64_t fen;

    if (query_text(resp, "trade_status", status, sizeof(status)) < 0 ||
        query_text(resp, "total_amount", total, sizeof(total)) < 0)
        return query_set(a, QUERY_ERROR, "answer lacks trade_status or total_amount");
    if (amount_yuan_to_fen(total, strlen(total), &fen) < 0)
        return query_set(a, QUERY_ERROR, "total_amount '%.32s' is not an amount", total);
    snprintf(ours, sizeof(ours), "%lld", (long long)j->amount_fen);
    snprintf(theirs, sizeof(theirs), "%lld", (long long)fen);
    if (j->has_amount && fen != j->amount_fen)
        return query_mismatch(a, "total_amount (fen)", ours, theirs);
    if (j->order_id && query_text(resp, "trade_no", trade_no, sizeof(trade_no)) == 0 &&
        strcmp(trade_no, j->order_id) != 0)
        return query_mismatch(a, "trade_no", j->order_id, trade_no);
    if (j->status && !aq_status_ok(j->status, status))
        return query_mismatch(a, "trade_status", j->status, status);
    query_set(a, QUERY_CONFIRMED, "trade_status %s, total_amount %s", status, total);
}

/*
 * Compare a verified successful refund query answer with the refund
 * notification. Alipay gives refund_status REFUND_SUCCESS once the refund
 * is done and leaves it out while it has not received or not finished the
 * refund (it may lag a notification by seconds): that is retried.
 * refund_amount is that one refund's amount, so it is compared with our
 * refund_fen (0 when this notification repeated a total told before).
 */
static void aq_judge_refund(const struct query_env *env, const cJSON *resp,
                            struct query_answer *a)
{
    const struct store_job *j = env->job;
    char status[32] = "", amount[32], ours[32], theirs[32];
    int64_t fen;

    if (query_text(resp, "refund_status", status, sizeof(status)) < 0 ||
        strcmp(status, "REFUND_SUCCESS") != 0)
        return query_set(a, QUERY_UNKNOWN_ORDER, "refund_status %s",
                         status[0] ? status : "absent: the refund is not done (yet)");
    if (query_text(resp, "refund_amount", amount, sizeof(amount)) < 0)
        return query_set(a, QUERY_ERROR, "answer lacks refund_amount");
    if (amount_yuan_to_fen(amount, strlen(amount), &fen) < 0)
        return query_set(a, QUERY_ERROR, "refund_amount '%.32s' is not an amount", amount);
    snprintf(ours, sizeof(ours), "%lld", (long long)j->refund_fen);
    snprintf(theirs, sizeof(theirs), "%lld", (long long)fen);
    if (j->has_refund && j->refund_fen != 0 && fen != j->refund_fen)
        return query_mismatch(a, "refund_amount (fen)", ours, theirs);
    query_set(a, QUERY_CONFIRMED, "refund_status REFUND_SUCCESS, refund_amount %s", amount);
}

/* Judge a verified answer: success, unknown trade, or a business error. */
static void aq_answer(const struct query_env *env, const struct aq_method *m,
                      struct query_answer *a)
{
    cJSON *root = query_json(a);
    const cJSON *resp = root ? cJSON_GetObjectItemCaseSensitive(root, m->response) : NULL;
    char sub[64] = "";

    if (root && !cJSON_IsObject(resp))
        query_set(a, QUERY_ERROR, "answer has no %s", m->response);
    else if (resp && query_text(resp, "code", a->code, sizeof(a->code)) < 0)
        query_set(a, QUERY_ERROR, "answer has no code");
    else if (resp && strcmp(a->code, "10000") == 0)
        m->judge(env, resp, a);
    else if (resp) {
        query_text(resp, "sub_code", sub, sizeof(sub));
        if (sub[0])
            snprintf(a->code, sizeof(a->code), "%s", sub);
        if (strcmp(sub, "ACQ.TRADE_NOT_EXIST") == 0)
            query_set(a, QUERY_UNKNOWN_ORDER, "the platform does not know out_trade_no %.64s",
                      env->job->merchant_order_id);
        else
            query_set(a, QUERY_ERROR, "code %.64s", a->code);
    }
    cJSON_Delete(root);
}

/* Sign biz (taken), call the gateway, verify and judge the answer. */
static void aq_run(const struct query_env *env, const struct aq_method *m, char *biz,
                   struct query_answer *a)
{
    const struct config_alipay_app *app = aq_app(env, a);
    char *body = NULL;
    size_t len;

    if (!biz)
        query_set(a, QUERY_ERROR, "cannot build the request (out of memory?)");
    else if (app && (body = aq_request(app, m->name, biz, &len, a)) != NULL &&
             query_call(env, a, env->cfg->openapi.alipay_gateway, body, len) == 0 &&
             aq_verify(app, m->name, a) == 0)
        aq_answer(env, m, a);
    free(body);
    free(biz);
}

void alipay_query_trade(const struct query_env *env, struct query_answer *a)
{
    static const struct aq_method m = {"alipay.trade.query", "alipay_trade_query_response",
                                       aq_judge_trade};

    if (!env->job->merchant_order_id)
        return query_set(a, QUERY_ERROR, "the event has no out_trade_no");
    aq_run(env, &m, aq_biz(env->job->merchant_order_id, NULL), a);
}

void alipay_query_refund(const struct query_env *env, struct query_answer *a)
{
    static const struct aq_method m = {"alipay.trade.fastpay.refund.query",
                                       "alipay_trade_fastpay_refund_query_response",
                                       aq_judge_refund};
    char request_no[80];

    if (!env->job->merchant_order_id)
        return query_set(a, QUERY_ERROR, "the event has no out_trade_no");
    if (!env->fields ||
        query_text(env->fields, "out_biz_no", request_no, sizeof(request_no)) < 0)
        return query_set(a, QUERY_ERROR, "the refund notification has no out_biz_no");
    aq_run(env, &m, aq_biz(env->job->merchant_order_id, request_no), a);
}
