/*
 * onboard.c: where a TP-managed app stands in opening its payment service
 * (protocols.md section 3, seed document 000): getbindservice, which gives
 * the app's deal id, pmAppKey and platform public key once the service
 * opened (APP_PAYMENT_CREATE_PAYMENT_PASS), and the audit states of the
 * app's payment account and payment service (what the tp_apps view shows;
 * their answers are kept in query_results as the platform wrote them,
 * they hold no secret). The keys are checked before
 * they are stored -- a key that does not parse is a failed job, never a
 * half-usable app -- and written with the job's result; intake uses them
 * from that commit on (learned.c).
 */
#include "openapi/query.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "providers/baidu/learned.h"
#include "providers/baidu/openapi.h"
#include "wire/json.h"

#define BO_PAY_PATH     "/rest/2.0/smartapp/pay/paymentservice/"
#define BO_ACCOUNT_PATH "/rest/2.0/smartapp/pay/account/auditstatus"

/* The job's app and its token are there, or a set. */
static int bo_ready(const struct query_env *env, struct query_answer *a)
{
    if (!env->job->app || !env->job->app[0])
        query_set(a, QUERY_ERROR, "the job has no app id");
    else if (!env->job->token)
        query_set(a, QUERY_ERROR, "app %.40s has no token in tokens yet", env->job->app);
    else
        return 1;
    return 0;
}

/* One block holding the keys and their strings (free() frees it all). */
static struct store_app_keys *bo_keys_new(const char *app, const char *deal, const char *pm,
                                          const char *pub)
{
    size_t la = strlen(app) + 1, ld = strlen(deal) + 1, lp = strlen(pm) + 1,
           lk = strlen(pub) + 1;
    struct store_app_keys *k = malloc(sizeof(*k) + la + ld + lp + lk);
    char *p;

    if (!k)
        return NULL;
    p = (char *)(k + 1);
    k->app_id = memcpy(p, app, la);
    k->deal_id = memcpy(p += la, deal, ld);
    k->pm_app_key = memcpy(p += ld, pm, lp);
    k->platform_public_key = memcpy(p + lp, pub, lk);
    return k;
}

/* Judge getbindservice's data: the keys into a, or a set. */
static void bo_judge(const struct query_env *env, const cJSON *data, struct query_answer *a)
{
    char deal[32], why[200];
    const char *pm = json_string(data, "pm_app_key"),
               *pub = json_string(data, "platform_public_key");
    const struct config_baidu_app *c;
    struct store_app_keys k = {env->job->app, deal, pm, pub};
    int r = query_text(data, "deal_id", deal, sizeof(deal));

    if (r == -ENOSPC)
        return query_set(a, QUERY_ERROR, "getbindservice: deal_id is longer than %zu bytes",
                         sizeof(deal) - 1);
    if (r < 0)
        deal[0] = '\0'; /* named below: missing */
    if (!(a->keys_ready = baidu_learned_prepare(&k, why, sizeof(why))))
        return query_set(a, QUERY_ERROR, "getbindservice: %s", why);
    a->keys_done = baidu_learned_done;
    if (!(a->keys = bo_keys_new(k.app_id, deal, pm, pub)))
        return query_set(a, QUERY_ERROR, "out of memory");
    if ((c = config_baidu_app_by_deal(env->cfg, deal)) != NULL)
        query_set(a, QUERY_CONFIRMED,
                  "keys learned for deal %s; [baidu.app %s] in the config has the same deal "
                  "id and wins",
                  deal, c->name);
    else
        query_set(a, QUERY_CONFIRMED, "keys learned for deal %s", deal);
}

const struct store_followup baidu_keys_job = {
    .kind = "baidu.getbindservice", .lane = "baidu.tokens", .once_per_app = 1};

void baidu_query_bindservice(const struct query_env *env, struct query_answer *a)
{
    const char *params[] = {"access_token", env->job->token, NULL};
    cJSON *root = NULL;
    const cJSON *data;

    if (!bo_ready(env, a))
        return;
    data = baidu_openapi_call(env, a, BO_PAY_PATH "getbindservice", params, NULL, &root);
    if (data && cJSON_IsObject(data))
        bo_judge(env, data, a);
    else if (data)
        query_set(a, QUERY_ERROR, "getbindservice: data is not an object");
    cJSON_Delete(root);
}

/* An audit state: data.status in words (seed document 000), with the
 * platform's message. */
static void bo_audit(const struct query_env *env, struct query_answer *a, const char *path,
                     const char *what, const char *const *words, size_t n_words,
                     const char *message_key)
{
    const char *params[] = {"access_token", env->job->token, NULL};
    cJSON *root = NULL;
    const cJSON *data;
    char st[16];
    const char *msg;
    long v;

    if (!bo_ready(env, a))
        return;
    data = baidu_openapi_call(env, a, path, params, NULL, &root);
    if (data && query_text(data, "status", st, sizeof(st)) < 0)
        query_set(a, QUERY_ERROR, "%s: the answer has no data.status", what);
    else if (data) {
        v = strtol(st, NULL, 10);
        msg = json_string(data, message_key);
        query_set(a, QUERY_CONFIRMED, "%s: status %s (%s)%s%.120s", what, st,
                  v >= 0 && (size_t)v < n_words ? words[v] : "unknown", msg && msg[0] ? ": " : "",
                  msg ? msg : "");
    }
    cJSON_Delete(root);
}

void baidu_query_account_audit(const struct query_env *env, struct query_answer *a)
{
    static const char *const words[] = {"initial", "editing", "submitted", "rejected",
                                        "approved", "agreement id filled"};

    bo_audit(env, a, BO_ACCOUNT_PATH, "payment account audit", words, 6, "verify_message");
}

void baidu_query_pay_service_audit(const struct query_env *env, struct query_answer *a)
{
    static const char *const words[] = {"new", "in review", "approved", "rejected"};

    bo_audit(env, a, BO_PAY_PATH "auditstatus", "payment service audit", words, 4,
             "fail_reason");
}
