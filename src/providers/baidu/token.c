/*
 * token.c: the tokens a Baidu TP works with (protocols.md section 3):
 * the TP's own, from the latest ticket; each authorised app's, from the
 * code of its AUTHORIZED push, refreshed before it expires, and recovered
 * through retrieve/authorizationcode when a refresh is refused.
 *
 * A token job's answer carries the tokens it was issued (a->token,
 * a->refresh_token); the worker writes them to `tokens` in the transaction
 * that records the result, with the app's next refresh. Nothing here keeps
 * a token or a code in the answer's body (wiped), its detail or the log.
 * The app token jobs run in lane "baidu.tokens", one job per app at a time
 * (store/jobs.c): a single-use refresh token is never spent twice at once.
 */
#include "openapi/query.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "providers/baidu/openapi.h"
#include "wire/json.h"

#define BT_TP_TOKEN_PATH "/public/2.0/smartapp/auth/tp/token"
#define BT_OAUTH_PATH    "/rest/2.0/oauth/token"
#define BT_RETRIEVE_PATH "/rest/2.0/smartapp/auth/retrieve/authorizationcode"
/* An app token is refreshed this long before it expires (at most half its
 * life): a refresh that fails still has time for its retries. */
#define BT_REFRESH_MARGIN_S 600

/* Wipe and drop the last answer's body (it may hold a token or a code):
 * before the next call of one attempt, and at its end. */
static void bt_wipe(struct query_answer *a)
{
    if (a->call.body.data)
        explicit_bzero(a->call.body.data, a->call.body.len);
    openapi_call_free(&a->call);
    a->call.body.len = 0;
}

/* data.<name> of a parsed answer as a malloc'd copy, or NULL with a set. */
static char *bt_take(const cJSON *obj, const char *name, struct query_answer *a)
{
    const char *v = obj ? json_string(obj, name) : NULL;
    char *c;

    if (!v || !v[0]) {
        query_set(a, QUERY_ERROR, "the answer has no %s", name);
        return NULL;
    }
    if (!(c = strdup(v)))
        query_set(a, QUERY_ERROR, "out of memory");
    return c;
}

/* Longest lifetime believed: a token said to live longer is refreshed (or
 * fetched again) by then anyway; it also keeps due times in range. */
#define BT_LIFE_MAX_S (90LL * 24 * 3600)

/* The issued token's lifetime in seconds, 0 when the answer gives none (or
 * not a positive number), at most BT_LIFE_MAX_S. */
static long long bt_expires_in(const cJSON *obj)
{
    char exp[24];
    long long v = query_text(obj, "expires_in", exp, sizeof(exp)) == 0 ? strtoll(exp, NULL, 10) : 0;

    return v < 0 ? 0 : v > BT_LIFE_MAX_S ? BT_LIFE_MAX_S : v;
}

void baidu_query_tp_token(const struct query_env *env, struct query_answer *a)
{
    /* the latest ticket stored: a ticket push made this job when its ticket
     * became the latest and the token was near its end; a refused token
     * made one with no push (then the push's own ticket is not there) */
    const char *ticket = env->job->ticket ? env->job->ticket
                         : env->fields    ? json_string(env->fields, "Ticket")
                                          : NULL;
    const char *params[] = {"client_id", env->cfg->tp.client_id, "ticket", ticket, NULL};
    cJSON *root = NULL;
    const cJSON *data;

    if (!ticket || !env->cfg->tp.enabled)
        return query_set(a, QUERY_ERROR, "%s", !ticket ? "no TP ticket stored yet"
                                                      : "[baidu.tp] is not configured");
    data = baidu_openapi_call(env, a, BT_TP_TOKEN_PATH, params, NULL, &root);
    if (data && (a->token = bt_take(data, "access_token", a)) != NULL) {
        a->token_app = "tp";
        a->token_expires_in = bt_expires_in(data);
        query_set(a, QUERY_CONFIRMED, "TP token fetched, expires in %lld s",
                  a->token_expires_in);
    }
    cJSON_Delete(root);
    bt_wipe(a);
}

/* GET /rest/2.0/oauth/token with grant and its secret (code or refresh
 * token). 1 issued (a->token, a->refresh_token set), 0 the platform refused
 * the grant (used, expired, revoked: a->code holds its error), -1 no usable
 * answer. The oauth answers are {"access_token",...} or {"error",...}, not
 * the errno envelope of the other calls. */
static int bt_oauth(const struct query_env *env, struct query_answer *a, const char *grant,
                    const char *secret_name, const char *secret)
{
    const char *params[] = {"access_token", env->job->tp_token, secret_name, secret,
                            "grant_type", grant, NULL};
    cJSON *root;
    const char *err;
    int r = -1;

    bt_wipe(a);
    if (!(root = baidu_openapi_request(env, a, BT_OAUTH_PATH, params, NULL)))
        return -1;
    if (query_text(root, "error_code", a->code, sizeof(a->code)) == 0) {
        /* the gateway refused the call itself (e.g. the TP token): not the
         * grant, so no recovery through a new code; retried later */
        const char *m = json_string(root, "error_msg");
        query_set(a, QUERY_ERROR, "error_code %s: %.120s", a->code, m ? m : "");
    } else if ((err = json_string(root, "error")) != NULL) {
        const char *why = json_string(root, "error_description");
        snprintf(a->code, sizeof(a->code), "%.60s", err);
        query_set(a, QUERY_ERROR, "%s refused: %.60s: %.120s", grant, err, why ? why : "");
        r = 0;
    } else if ((a->token = bt_take(root, "access_token", a)) != NULL &&
               (a->refresh_token = bt_take(root, "refresh_token", a)) != NULL) {
        a->token_expires_in = bt_expires_in(root);
        r = 1;
    }
    cJSON_Delete(root);
    return r;
}

/* A fresh authorisation code for the job's app (POST
 * retrieve/authorizationcode, form app_id): malloc'd, or NULL with a set
 * (errno 50032: the app has not authorised the TP). */
static char *bt_retrieve_code(const struct query_env *env, struct query_answer *a)
{
    const char *params[] = {"access_token", env->job->tp_token, NULL};
    const char *form_kv[] = {"app_id", env->job->app, NULL};
    char *form = query_encode(form_kv), *code = NULL;
    cJSON *root = NULL;
    const cJSON *data;

    if (!form) {
        query_set(a, QUERY_ERROR, "out of memory");
        return NULL;
    }
    bt_wipe(a);
    if ((data = baidu_openapi_call(env, a, BT_RETRIEVE_PATH, params, form, &root)) != NULL)
        code = bt_take(data, "authorization_code", a);
    cJSON_Delete(root);
    free(form);
    return code;
}

/* Exchange a code (none: go straight to the recovery); when it is refused,
 * one recovery through a retrieved code. 1 issued from code, 2 from a
 * retrieved one, 0 or -1 as bt_oauth. */
static int bt_exchange(const struct query_env *env, struct query_answer *a, const char *code)
{
    int r = code ? bt_oauth(env, a, "app_to_tp_authorization_code", "code", code) : 0;
    char *fresh;

    if (r != 0)
        return r;
    if (!(fresh = bt_retrieve_code(env, a)))
        return -1;
    r = bt_oauth(env, a, "app_to_tp_authorization_code", "code", fresh);
    explicit_bzero(fresh, strlen(fresh));
    free(fresh);
    return r > 0 ? 2 : r;
}

/* The answer of a token job that got a pair: stored for the job's app,
 * with its next refresh. */
static void bt_issued(const struct query_env *env, struct query_answer *a, const char *how)
{
    long long life = a->token_expires_in, margin = life / 2;

    margin = margin < BT_REFRESH_MARGIN_S ? margin : BT_REFRESH_MARGIN_S;
    a->token_app = env->job->app;
    if (life > 0) {
        a->then_kind = "baidu.app_refresh";
        a->then_lane = "baidu.tokens";
        a->then_delay_s = (unsigned)(life - margin);
    }
    query_set(a, QUERY_CONFIRMED, "app token %s, expires in %lld s", how, life);
}

/* Start of an app token job: its app and the TP token it needs. */
static int bt_ready(const struct query_env *env, struct query_answer *a)
{
    if (!env->cfg->tp.enabled) {
        query_set(a, QUERY_ERROR, "[baidu.tp] is not configured");
        return 0;
    }
    if (!env->job->app || !env->job->app[0]) {
        query_set(a, QUERY_ERROR, "the job has no app id");
        return 0;
    }
    if (!env->job->tp_token) {
        query_set(a, QUERY_ERROR, "no TP token yet (it is fetched with the next ticket)");
        return 0;
    }
    return 1;
}

/* An AUTHORIZED push: its authorizationCode (valid about 60 s) becomes the
 * app's tokens; a code that is refused by then is replaced by a retrieved
 * one. */
void baidu_query_app_token(const struct query_env *env, struct query_answer *a)
{
    const char *code = env->fields ? json_string(env->fields, "authorizationCode") : NULL;
    int r;

    if (bt_ready(env, a) && (r = bt_exchange(env, a, code)) > 0)
        bt_issued(env, a, r == 2 ? "from a retrieved code (the pushed one was refused)"
                                 : "from the pushed code");
    bt_wipe(a);
}

/* A refresh with the stored single-use refresh token; when it is refused
 * (used: a crash between the platform's answer and our commit; revoked),
 * or there is none, the app's tokens are recovered from a retrieved code. */
void baidu_query_app_refresh(const struct query_env *env, struct query_answer *a)
{
    int r = 0;

    if (!bt_ready(env, a)) {
        bt_wipe(a);
        return;
    }
    if (env->job->refresh_token)
        r = bt_oauth(env, a, "app_to_tp_refresh_token", "refresh_token",
                     env->job->refresh_token);
    if (r == 0 && bt_exchange(env, a, NULL) > 0)
        r = 2;
    if (r > 0)
        bt_issued(env, a, r == 2 ? "recovered from a retrieved code" : "refreshed");
    bt_wipe(a);
}
