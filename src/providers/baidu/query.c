/*
 * query.c: Baidu cashier follow-ups (protocols.md section 3). A pay
 * notification is checked with findByTpOrderId (status, totalMoney,
 * orderId), a refund notification with findOrderRefund (the batch's
 * refundStatus). Answers are {"errno":0,"data":...}; gateway errors
 * {"error_code":..}; field types vary by version, so members are read
 * leniently (string or number).
 */
#include "openapi/query.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "providers/baidu/learned.h"
#include "providers/baidu/openapi.h"
#include "wire/json.h"

#define BQ_PATH "/rest/2.0/smartapp/pay/paymentservice/"

/* The [baidu.app] of the job's event (events.app is its app id, or NAME). */
const struct config_baidu_app *baidu_query_app(const struct query_env *env,
                                               struct query_answer *a)
{
    const char *id = env->job->app;
    const struct config_baidu_app *b = config_baidu_app_by_id(env->cfg, id);

    if (b) {
        if ((b->access_token && b->access_token[0]) || env->job->token)
            return b;
        query_set(a, QUERY_ERROR, "[baidu.app %s] has no access_token, and tokens none",
                  b->name);
        return NULL;
    }
    if ((b = baidu_learned_by_app(id)) != NULL) {
        if (env->job->token)
            return b;
        query_set(a, QUERY_ERROR, "learned app %s has no token in tokens", id);
        return NULL;
    }
    query_set(a, QUERY_ERROR, "no [baidu.app] or learned app with app id %s",
              id ? id : "(none)");
    return NULL;
}

/* A cashier method's path: a TP-managed (learned) app's calls go through
 * the TP paths (".../paymentservice/tp/<method>"). */
static const char *bq_path(const struct config_baidu_app *app, const char *method, char *buf,
                           size_t len)
{
    snprintf(buf, len, BQ_PATH "%s%s", app->learned ? "tp/" : "", method);
    return buf;
}

/* Baidu's gateway says an access token is invalid (110) or expired (111):
 * when it was one from the store (the TP's or the job's app's), note it, so
 * the result marks it expired and a new one is fetched. */
static void bq_note_refused(const struct query_env *env, struct query_answer *a,
                            const char *const *params, const cJSON *root)
{
    const struct store_job *j = env->job;
    const char *used = NULL;
    char code[16];
    size_t i;

    if (query_text(root, "error_code", code, sizeof(code)) < 0 ||
        (strcmp(code, "110") != 0 && strcmp(code, "111") != 0))
        return;
    for (i = 0; params[i]; i += 2)
        if (strcmp(params[i], "access_token") == 0)
            used = params[i + 1];
    if (!used)
        return;
    /* the job's own copies: `used` may be the config's text, which a
     * reload frees before the writer records the answer */
    if (j->tp_token && strcmp(used, j->tp_token) == 0) {
        a->refused_app = "tp";
        a->refused_token = j->tp_token;
    } else if (j->token && j->app && strcmp(used, j->token) == 0) {
        a->refused_app = j->app;
        a->refused_token = j->token;
    }
}

cJSON *baidu_openapi_request(const struct query_env *env, struct query_answer *a,
                             const char *path, const char *const *params, const char *post)
{
    char *q = query_encode(params), *url = NULL;
    cJSON *root = NULL;

    if (!q || asprintf(&url, "%s%s?%s", env->cfg->openapi.baidu_base, path, q) < 0)
        url = NULL;
    if (q)
        explicit_bzero(q, strlen(q)); /* it holds the access token */
    free(q);
    if (!url) {
        query_set(a, QUERY_ERROR, "out of memory");
        return NULL;
    }
    if (query_call(env, a, url, post, post ? strlen(post) : 0) == 0)
        root = query_json(a);
    if (root)
        bq_note_refused(env, a, params, root);
    explicit_bzero(url, strlen(url));
    free(url);
    return root;
}

const cJSON *baidu_openapi_call(const struct query_env *env, struct query_answer *a,
                                const char *path, const char *const *params, const char *post,
                                cJSON **root)
{
    char errno_text[24];
    const cJSON *data = NULL;

    if ((*root = baidu_openapi_request(env, a, path, params, post)) != NULL) {
        if (query_text(*root, "error_code", a->code, sizeof(a->code)) == 0) {
            const char *m = json_string(*root, "error_msg");
            query_set(a, QUERY_ERROR, "error_code %s: %.120s", a->code, m ? m : "");
        } else if (query_text(*root, "errno", errno_text, sizeof(errno_text)) < 0) {
            query_set(a, QUERY_ERROR, "answer has no errno");
        } else if (strcmp(errno_text, "0") != 0) {
            const char *m = json_string(*root, "msg");
            snprintf(a->code, sizeof(a->code), "%s", errno_text);
            query_set(a, QUERY_ERROR, "errno %s: %.120s", errno_text, m ? m : "");
        } else {
            snprintf(a->code, sizeof(a->code), "0");
            data = cJSON_GetObjectItemCaseSensitive(*root, "data");
        }
    }
    return data;
}

/* The app's token: the config's, else the one in `tokens`. */
const char *baidu_query_token(const struct query_env *env, const struct config_baidu_app *app)
{
    return app->access_token && app->access_token[0] ? app->access_token : env->job->token;
}

/* A field of the stored event ($.name in its fields JSON), or NULL. */
static const char *bq_field(const struct query_env *env, const char *name)
{
    return env->fields ? json_string(env->fields, name) : NULL;
}

/* Whether the order has a refund the platform reports successful (what
 * makes status -1 a later state of a paid order): 1, 0, -1 (a set). */
static int bq_refunded(const struct query_env *env, const struct config_baidu_app *app,
                       struct query_answer *a)
{
    const char *params[] = {"access_token", baidu_query_token(env, app), "tpOrderId",
                            env->job->merchant_order_id, "userId", bq_field(env, "userId"),
                            "pmAppKey", app->app_key, NULL};
    cJSON *root;
    char path[96], st[16];
    const cJSON *data = baidu_openapi_call(
                    env, a, bq_path(app, "findOrderRefund", path, sizeof(path)), params, NULL, &root),
                *it;
    int found = data ? 0 : -1;

    cJSON_ArrayForEach(it, (cJSON_IsArray(data) ? data : NULL))
        if (query_text(it, "refundStatus", st, sizeof(st)) == 0 && strcmp(st, "2") == 0)
            found = 1;
    cJSON_Delete(root);
    return found;
}

/* Is the platform's status the notified one or a later state of it? */
static int bq_status_ok(const char *ours, const char *theirs)
{
    if (strcmp(ours, theirs) == 0)
        return 1;
    /* 1 unpaid may have been paid, or cancelled since */
    return strcmp(ours, "1") == 0 && (strcmp(theirs, "2") == 0 || strcmp(theirs, "-1") == 0);
}

/* Compare an order's data with the pay notification. */
static void bq_judge_order(const struct query_env *env, const struct config_baidu_app *app,
                           const cJSON *data, struct query_answer *a)
{
    const struct store_job *j = env->job;
    char status[16], money[32], order[80], ours[32];

    if (query_text(data, "status", status, sizeof(status)) < 0) {
        query_set(a, QUERY_ERROR, "answer has no data.status");
        return;
    }
    if (query_text(data, "totalMoney", money, sizeof(money)) < 0) {
        query_set(a, QUERY_ERROR, "answer has no data.totalMoney");
        return;
    }
    snprintf(ours, sizeof(ours), "%lld", (long long)j->amount_fen);
    if (j->has_amount && strcmp(money, ours) != 0)
        return query_mismatch(a, "totalMoney", ours, money);
    if (j->order_id && query_text(data, "orderId", order, sizeof(order)) == 0 &&
        strcmp(order, j->order_id) != 0)
        return query_mismatch(a, "orderId", j->order_id, order);
    if (j->status && !bq_status_ok(j->status, status)) {
        /* 2 paid, then -1: refunded (a later state) or cancelled (not) */
        if (strcmp(j->status, "2") == 0 && strcmp(status, "-1") == 0) {
            int r = bq_refunded(env, app, a);
            if (r < 0)
                return;
            if (r == 1)
                return query_set(a, QUERY_CONFIRMED, "status -1 after a successful refund");
        }
        return query_mismatch(a, "status", j->status, status);
    }
    query_set(a, QUERY_CONFIRMED, "status %s, totalMoney %s", status, money);
}

void baidu_query_find_order(const struct query_env *env, struct query_answer *a)
{
    const struct config_baidu_app *app = baidu_query_app(env, a);
    const char *tp_order = env->job->merchant_order_id;
    cJSON *root = NULL;
    const cJSON *data;

    if (!app)
        return;
    if (!tp_order)
        return query_set(a, QUERY_ERROR, "the event has no tpOrderId");
    {
        const char *params[] = {"access_token", baidu_query_token(env, app), "tpOrderId", tp_order,
                                "pmAppKey", app->app_key, NULL};
        char path[96];
        data = baidu_openapi_call(env, a, bq_path(app, "findByTpOrderId", path, sizeof(path)),
                                  params, NULL, &root);
    }
    if (!data && strcmp(a->code, "0") == 0)
        query_set(a, QUERY_UNKNOWN_ORDER, "the platform answered no data for tpOrderId %.64s",
                  tp_order);
    else if (data && (!cJSON_IsObject(data) || !cJSON_GetObjectItemCaseSensitive(data, "status")))
        query_set(a, QUERY_UNKNOWN_ORDER, "the platform does not know tpOrderId %.64s",
                  tp_order);
    else if (data)
        bq_judge_order(env, app, data, a);
    cJSON_Delete(root);
}

/* The refund batch's status against the notification's (1 success, 2 failure). */
static void bq_judge_refund(const struct query_env *env, const cJSON *data,
                            struct query_answer *a)
{
    const char *batch = bq_field(env, "refundBatchId"), *ours = env->job->status;
    const cJSON *it;
    char id[80], st[16];

    cJSON_ArrayForEach(it, (cJSON_IsArray(data) ? data : NULL)) {
        if (query_text(it, "refundBatchId", id, sizeof(id)) < 0 || !batch ||
            strcmp(id, batch) != 0 || query_text(it, "refundStatus", st, sizeof(st)) < 0)
            continue;
        if (strcmp(st, "1") == 0)
            return query_set(a, QUERY_PENDING, "refund %.64s still in progress", batch);
        if (ours && ((strcmp(ours, "1") == 0 && strcmp(st, "2") == 0) ||
                     (strcmp(ours, "2") == 0 && strcmp(st, "3") == 0)))
            return query_set(a, QUERY_CONFIRMED, "refundStatus %s", st);
        return query_mismatch(a, "refundStatus", ours, st);
    }
    query_set(a, QUERY_UNKNOWN_ORDER, "the platform lists no refund batch %.64s",
              batch ? batch : "(none)");
}

void baidu_query_find_refund(const struct query_env *env, struct query_answer *a)
{
    const struct config_baidu_app *app = baidu_query_app(env, a);
    const char *params[] = {"access_token", app ? baidu_query_token(env, app) : NULL, "tpOrderId",
                            env->job->merchant_order_id, "userId", bq_field(env, "userId"),
                            "pmAppKey", app ? app->app_key : NULL, NULL};
    cJSON *root = NULL;
    const cJSON *data;
    char path[96];

    if (!app)
        return;
    if (!env->job->merchant_order_id)
        return query_set(a, QUERY_ERROR, "the event has no tpOrderId");
    if ((data = baidu_openapi_call(env, a, bq_path(app, "findOrderRefund", path, sizeof(path)),
                                   params, NULL, &root)) != NULL)
        bq_judge_refund(env, data, a);
    cJSON_Delete(root);
}
