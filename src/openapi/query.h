/*
 * query.h: what a follow-up query is given and what it answers. The job
 * workers (jobs/) call one query function per job kind; each platform's
 * function lives beside its callback code (providers/<platform>/query.c),
 * builds its request, makes it through the worker's client and judges the
 * answer against the stored event. Lower layer: never logs, never touches
 * the store (the worker records the answer through the writer).
 */
#ifndef PAYHOOKD_OPENAPI_QUERY_H
#define PAYHOOKD_OPENAPI_QUERY_H

#include <cjson/cJSON.h>

#include "config.h"
#include "openapi/client.h"
#include "store/store.h"

/* What an answer means for the event. */
enum query_result {
    QUERY_ERROR,         /* no usable answer (network, HTTP, signature, format): retried;
                          * first, so an answer nobody judged is never a confirmation */
    QUERY_CONFIRMED,     /* the platform agrees: done */
    QUERY_MISMATCH,      /* it disagrees: done */
    QUERY_UNKNOWN_ORDER, /* it does not know the order (yet): retried, then mismatch */
    QUERY_PENDING,       /* not final yet (a refund in progress): retried */
    QUERY_GONE,          /* a hook answered 410 Gone: the hook is disabled */
};

/* A query's inputs. */
struct query_env {
    const struct config *cfg;
    const struct store_job *job;
    const cJSON *fields; /* the event's fields (parsed once), or NULL */
    struct openapi_client *client;
    unsigned timeout_ms, connect_ms;
    const struct config_hook *hook; /* a delivery's hook */
    /* for sweeps (jobs/reconcile.c), which record each page as they go:
     * the store, and the scheduler's stop flag (a sweep between pages
     * stops at once and resumes at its page after the restart) */
    struct store *store;
    const int *stopping;
};

/* A query's answer; call holds the last HTTP exchange (for query_results). */
struct query_answer {
    enum query_result result;
    struct openapi_call call;
    char endpoint[192];
    char code[64];    /* the platform's errno / code / sub_code */
    char detail[256]; /* why, in words */
    int exit_status;  /* call.http_status is a command's exit code (0 is one, not "none") */
    /* a mismatch: which field, ours, theirs */
    char field[32], ours[64], theirs[64];
    /* a token the answer issued (malloc'd), written with the result into
     * tokens for token_app; never into query_results, never logged */
    char *token, *refresh_token;
    const char *token_app;
    long long token_expires_in;
    /* a job to schedule for token_app in the same transaction (one queued
     * per app and kind), e.g. the token's next refresh */
    const char *then_kind, *then_lane;
    unsigned then_delay_s;
    /* keys the answer taught (one malloc'd block), written with the result,
     * and what they make, prepared by the query: keys_done(keys_ready, 1)
     * once that commit is durable (0 when it failed or never ran) */
    struct store_app_keys *keys;
    void *keys_ready;
    void (*keys_done)(void *ready, int committed);
    /* the platform refused the stored token of refused_app (invalid or
     * expired): marked expired with the result, and a new one fetched;
     * refused_token points into the job (the text that was sent) */
    const char *refused_app, *refused_token;
};

typedef void (*query_fn)(const struct query_env *env, struct query_answer *a);

/* The platform queries (providers/<platform>/query.c). */
void baidu_query_find_order(const struct query_env *env, struct query_answer *a);
void baidu_query_find_refund(const struct query_env *env, struct query_answer *a);
void alipay_query_trade(const struct query_env *env, struct query_answer *a);
void alipay_query_refund(const struct query_env *env, struct query_answer *a);
void gateway_query_trade(const struct query_env *env, struct query_answer *a);
void baidu_query_tp_token(const struct query_env *env, struct query_answer *a);
void baidu_query_app_token(const struct query_env *env, struct query_answer *a);
void baidu_query_app_refresh(const struct query_env *env, struct query_answer *a);
void baidu_query_bindservice(const struct query_env *env, struct query_answer *a);
void baidu_query_account_audit(const struct query_env *env, struct query_answer *a);
void baidu_query_pay_service_audit(const struct query_env *env, struct query_answer *a);

/* ---- shared by the platform queries (openapi/query.c) ---- */

/* Make the call and note its endpoint; on failure a is QUERY_ERROR with the
 * reason. 0 when an HTTP 2xx answer came. */
int query_call(const struct query_env *env, struct query_answer *a, const char *url,
               const char *post, size_t post_len);

/* Parse the answer as JSON; on failure a is QUERY_ERROR. NULL then. */
cJSON *query_json(struct query_answer *a);

/* Set the answer's result with a detail (printf). */
void query_set(struct query_answer *a, enum query_result r, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* A mismatch on one field. */
void query_mismatch(struct query_answer *a, const char *field, const char *ours,
                    const char *theirs);

/* A member as text, leniently: a string, an integer, or a number with at
 * most two decimals written "%.2f" (amounts). 0 or -ENOENT/-EINVAL/-ENOSPC. */
int query_text(const cJSON *obj, const char *key, char *buf, size_t len);

/* "k1=v1&k2=v2" from NULL-terminated key/value pairs, values percent-encoded;
 * pairs with a NULL value are skipped. malloc'd, NULL on ENOMEM. */
char *query_encode(const char *const *kv);

#endif
