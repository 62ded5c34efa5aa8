/*
 * query.c: an aggregated gateway's trade.query (protocols.md section 6,
 * seed document 003): a form with app_id, method, sign_type, version and
 * content = {"merchant_no","out_trade_no"}, signed by the gateway's own MD5
 * rule (the one its callbacks are checked with), POSTed to query_url. The
 * answer's trade_status and total_amount are compared with the callback's.
 * Gateways differ in where they put the answer's fields: at the top, or in
 * a "data" / "content" object; all three are read.
 */
#include "openapi/query.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "wire/amount.h"
#include "wire/crypto.h"
#include "wire/form.h"

/* The [gateway NAME] of the job's event (its provider is gateway.NAME). */
static const struct config_gateway *gq_gateway(const struct query_env *env,
                                               struct query_answer *a)
{
    const struct config *c = env->cfg;
    const char *p = env->job->provider, *name = p && strncmp(p, "gateway.", 8) == 0 ? p + 8 : NULL;
    size_t i;

    for (i = 0; name && i < c->n_gateways; i++)
        if (strcmp(c->gateways[i]->name, name) == 0) {
            if (c->gateways[i]->query_url && c->gateways[i]->sign != GW_SIGN_RSA)
                return c->gateways[i];
            query_set(a, QUERY_ERROR, "[gateway %s] cannot query (no query_url, or sign = rsa)",
                      c->gateways[i]->name);
            return NULL;
        }
    query_set(a, QUERY_ERROR, "no [gateway %s]", name ? name : "(none)");
    return NULL;
}

/* {"merchant_no":..,"out_trade_no":..}; malloc'd or NULL. */
static char *gq_content(const struct config_gateway *g, const char *out_trade_no)
{
    cJSON *o = cJSON_CreateObject();
    char *s = NULL;

    if (o && (!g->merchant_no || cJSON_AddStringToObject(o, "merchant_no", g->merchant_no)) &&
        cJSON_AddStringToObject(o, "out_trade_no", out_trade_no))
        s = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    return s;
}

/* The gateway's MD5 sign of f, as its callbacks are signed. 0 or -errno. */
static int gq_sign(const struct config_gateway *g, const struct form *f, char hex[33])
{
    const char *excl[64] = {"sign"};
    char *append = NULL, *canon = NULL;
    size_t n = 1, canon_len;
    int r = -ENOMEM;

    while (g->exclude && g->exclude[n - 1] && n < 63) {
        excl[n] = g->exclude[n - 1];
        n++;
    }
    if (asprintf(&append, "%s%s", g->sign == GW_SIGN_MD5_KEY ? "&key=" : "", g->secret) < 0)
        return -ENOMEM;
    {
        struct form_canon_rule rule = {excl, g->drop_empty, append, strlen(append)};
        if (form_canonical(f, &rule, &canon, &canon_len) == 0) {
            r = crypto_md5_hex(canon, canon_len, g->hex_upper, hex);
            explicit_bzero(canon, canon_len); /* it ends with the secret */
            free(canon);
        }
    }
    explicit_bzero(append, strlen(append));
    free(append);
    return r;
}

/* The signed form body; malloc'd or NULL (a set). */
static char *gq_request(const struct config_gateway *g, const char *out_trade_no,
                        size_t *len, struct query_answer *a)
{
    char *content = gq_content(g, out_trade_no), *body = NULL, hex[33];
    const char *kv[] = {"app_id", g->app_id, "method", "trade.query", "sign_type", "MD5",
                        "version", "1.0", "content", content, NULL};
    struct form *f = form_new();
    size_t i;
    int bad = !f || !content;

    for (i = 0; !bad && kv[i]; i += 2)
        if (kv[i + 1])
            bad = form_add(f, kv[i], strlen(kv[i]), kv[i + 1], strlen(kv[i + 1])) < 0;
    if (!bad && gq_sign(g, f, hex) == 0 && form_add(f, "sign", 4, hex, 32) == 0 &&
        form_encode(f, &body, len) < 0)
        body = NULL;
    if (!body)
        query_set(a, QUERY_ERROR, "cannot build the signed request");
    free(content);
    form_free(f);
    return body;
}

/* Where the answer's fields are: the top, "data" or "content". */
static const cJSON *gq_fields(const cJSON *root)
{
    static const char *const inner[] = {"data", "content"};
    size_t i;

    if (cJSON_GetObjectItemCaseSensitive(root, "trade_status"))
        return root;
    for (i = 0; i < 2; i++) {
        const cJSON *o = cJSON_GetObjectItemCaseSensitive(root, inner[i]);
        if (cJSON_IsObject(o) && cJSON_GetObjectItemCaseSensitive(o, "trade_status"))
            return o;
    }
    return NULL;
}

/* Compare the answer with the callback. */
static void gq_judge(const struct store_job *j, const cJSON *o, struct query_answer *a)
{
    char status[48], total[32], ours[32], theirs[32], otn[80];
    int64_t fen;

    if (query_text(o, "trade_status", status, sizeof(status)) < 0)
        return query_set(a, QUERY_ERROR, "answer has no trade_status");
    if (query_text(o, "out_trade_no", otn, sizeof(otn)) == 0 &&
        strcmp(otn, j->merchant_order_id) != 0)
        return query_mismatch(a, "out_trade_no", j->merchant_order_id, otn);
    if (j->has_amount) {
        if (query_text(o, "total_amount", total, sizeof(total)) < 0 ||
            amount_yuan_to_fen(total, strlen(total), &fen) < 0)
            return query_set(a, QUERY_ERROR, "answer has no total_amount in yuan");
        snprintf(ours, sizeof(ours), "%lld", (long long)j->amount_fen);
        snprintf(theirs, sizeof(theirs), "%lld", (long long)fen);
        if (fen != j->amount_fen)
            return query_mismatch(a, "total_amount (fen)", ours, theirs);
    }
    if (j->status && strcmp(j->status, status) != 0)
        return query_mismatch(a, "trade_status", j->status, status);
    query_set(a, QUERY_CONFIRMED, "trade_status %s", status);
}

void gateway_query_trade(const struct query_env *env, struct query_answer *a)
{
    const struct config_gateway *g = gq_gateway(env, a);
    cJSON *root;
    char *body;
    size_t len;

    if (!g)
        return;
    if (!env->job->merchant_order_id)
        return query_set(a, QUERY_ERROR, "the event has no out_trade_no");
    if (!(body = gq_request(g, env->job->merchant_order_id, &len, a)))
        return;
    if (query_call(env, a, g->query_url, body, len) == 0 && (root = query_json(a))) {
        const cJSON *o = gq_fields(root);
        if (o)
            gq_judge(env->job, o, a);
        else
            query_set(a, QUERY_UNKNOWN_ORDER, "answer carries no trade for out_trade_no %.64s",
                      env->job->merchant_order_id);
        cJSON_Delete(root);
    }
    free(body);
}
