/*
 * openapi.h: what the Baidu OpenAPI calls of providers/baidu/ share
 * (query.c: the cashier follow-ups; token.c: the TP's and apps' tokens;
 * onboard.c: getbindservice and the audit states).
 */
#ifndef PAYHOOKD_PROVIDERS_BAIDU_OPENAPI_H
#define PAYHOOKD_PROVIDERS_BAIDU_OPENAPI_H

#include "openapi/query.h"

/* GET (or POST the form `post`) <baidu_base><path>?<params>: the answer
 * parsed as a JSON object (free it with cJSON_Delete), or NULL with a set.
 * The URL, which carries the token, is wiped. */
cJSON *baidu_openapi_request(const struct query_env *env, struct query_answer *a,
                             const char *path, const char *const *params, const char *post);

/* The same for the calls answered {"errno":..,"data":..}: the `data`
 * member, the whole answer through *root (free it with cJSON_Delete), or NULL with a
 * set: a gateway error_code, a non-zero errno (a->code holds it), or no
 * answer. The URL, which carries the token, is wiped. */
const cJSON *baidu_openapi_call(const struct query_env *env, struct query_answer *a,
                                const char *path, const char *const *params, const char *post,
                                cJSON **root);

/* The dedupe key of a pay notification (pay.c): the sweeps synthesise
 * their events under it. NULL on ENOMEM. */
char *baidu_pay_dedupe_key(struct arena *a, const char *order_id, const char *status);

/* The [baidu.app] (or learned app) of the job's app, with a token to ask
 * with; NULL with a set. */
const struct config_baidu_app *baidu_query_app(const struct query_env *env,
                                               struct query_answer *a);
/* The app's token: the config's, else the one in `tokens`. */
const char *baidu_query_token(const struct query_env *env, const struct config_baidu_app *app);

#endif
