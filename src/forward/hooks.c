/*
 * hooks.c: selecting hooks and sending one delivery (see hooks.h).
 *
 * The body of a delivery is built from the stored event and the context
 * fixed when the delivery was created, so every attempt and replay of it
 * sends the same bytes under the same webhook-id; only webhook-timestamp
 * and the signatures over it change (Standard Webhooks).
 */
#include "forward/hooks.h"

#include <errno.h>
#include <fnmatch.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "forward/command.h"
#include "wire/crypto.h"
#include "wire/json.h"

/* Does one of the hook's globs match "provider.kind"? ('*' crosses dots.) */
static int hk_matches(const struct config_hook *h, const char *provider, const char *kind)
{
    char type[160];
    size_t i;

    snprintf(type, sizeof(type), "%s.%s", provider, kind);
    for (i = 0; h->events && h->events[i]; i++)
        if (fnmatch(h->events[i], type, 0) == 0)
            return 1;
    return 0;
}

/* The deliveries of ev to the hooks that take it, each stating
 * confirmation: those with when = received, and with confirmed_too also
 * when = confirmed ones (an event born confirmed: a sweep's). */
static int hk_select(const struct config *c, struct store_event *ev, struct arena *a,
                     const char *confirmation, int confirmed_too)
{
    struct store_followup *f;
    size_t i, n = 0;

    ev->hooks = NULL;
    ev->n_hooks = 0;
    if (!c->n_hooks)
        return 0;
    if (!(f = arena_alloc(a, c->n_hooks * sizeof(*f))))
        return -ENOMEM;
    for (i = 0; i < c->n_hooks; i++) {
        const struct config_hook *h = c->hooks[i];
        if ((h->when != HOOK_RECEIVED && !confirmed_too) || (!ev->verified && !h->unverified) ||
            !hk_matches(h, ev->provider, ev->kind))
            continue;
        f[n++] = (struct store_followup){
            .kind = h->kind, .lane = h->kind, .confirmation = confirmation};
    }
    ev->hooks = f;
    ev->n_hooks = n;
    return 0;
}

int forward_select(const struct config *c, struct store_event *ev, struct arena *a)
{
    return hk_select(c, ev, a, ev->followup.kind ? "pending" : "none", 0);
}

int forward_select_confirmed(const struct config *c, struct store_event *ev, struct arena *a)
{
    return hk_select(c, ev, a, "confirmed", 1);
}

size_t forward_confirmed(const struct config *c, const char *provider, const char *kind,
                         const struct config_hook **out, size_t max)
{
    size_t i, n = 0;

    for (i = 0; provider && kind && i < c->n_hooks && n < max; i++)
        if (c->hooks[i]->when == HOOK_CONFIRMED && hk_matches(c->hooks[i], provider, kind))
            out[n++] = c->hooks[i];
    return n;
}

/* A string member, or null. */
static cJSON *hk_str(cJSON *o, const char *k, const char *v)
{
    return v ? cJSON_AddStringToObject(o, k, v) : cJSON_AddNullToObject(o, k);
}

/* The event's data object. NULL on ENOMEM. */
static cJSON *hk_data(const struct query_env *env, const char *confirmation, long deliveries)
{
    const struct store_job *j = env->job;
    cJSON *d = cJSON_CreateObject(), *fields;
    int ok = d != NULL;

    ok = ok && cJSON_AddNumberToObject(d, "event_id", (double)j->event_id);
    ok = ok && hk_str(d, "provider", j->provider) && hk_str(d, "kind", j->ev_kind) &&
         hk_str(d, "app", j->app) && hk_str(d, "order_id", j->order_id) &&
         hk_str(d, "merchant_order_id", j->merchant_order_id);
    ok = ok && (j->has_amount ? cJSON_AddNumberToObject(d, "amount_fen", (double)j->amount_fen)
                              : cJSON_AddNullToObject(d, "amount_fen"));
    ok = ok && (j->has_refund ? cJSON_AddNumberToObject(d, "refund_fen", (double)j->refund_fen)
                              : cJSON_AddNullToObject(d, "refund_fen"));
    ok = ok && (j->has_refund_total
                    ? cJSON_AddNumberToObject(d, "refund_total_fen", (double)j->refund_total_fen)
                    : cJSON_AddNullToObject(d, "refund_total_fen"));
    ok = ok && hk_str(d, "status", j->status) &&
         cJSON_AddBoolToObject(d, "verified", j->verified != 0) &&
         cJSON_AddStringToObject(d, "source", j->source ? j->source : "callback") &&
         cJSON_AddStringToObject(d, "confirmation", confirmation) &&
         hk_str(d, "received_at", j->received_at) &&
         cJSON_AddNumberToObject(d, "deliveries", (double)deliveries);
    fields = env->fields ? cJSON_Duplicate(env->fields, 1) : cJSON_CreateObject();
    ok = ok && fields && cJSON_AddItemToObject(d, "fields", fields);
    if (ok && !cJSON_GetObjectItemCaseSensitive(d, "fields"))
        cJSON_Delete(fields);
    if (ok && j->body && json_utf8_text(j->body, j->body_len)) {
        char *t = util_strndup(j->body, j->body_len);
        ok = t && cJSON_AddStringToObject(d, "body", t);
        free(t);
    } else if (ok && j->body) {
        char *b = crypto_b64_encode(j->body, j->body_len);
        ok = b && cJSON_AddStringToObject(d, "body_base64", b);
        free(b);
    }
    if (!ok) {
        cJSON_Delete(d);
        return NULL;
    }
    return d;
}

/* The envelope text: {"type","timestamp","data"}; malloc'd or NULL. */
static char *hk_envelope(const struct query_env *env)
{
    const struct store_job *j = env->job;
    char confirmation[32] = "none", type[160];
    long deliveries = 1;
    cJSON *e = cJSON_CreateObject(), *d;
    char *text = NULL;

    if (j->context)
        sscanf(j->context, "%31s %ld", confirmation, &deliveries);
    snprintf(type, sizeof(type), "%s.%s", j->provider ? j->provider : "?",
             j->ev_kind ? j->ev_kind : "?");
    d = e ? hk_data(env, confirmation, deliveries) : NULL;
    if (d && cJSON_AddStringToObject(e, "type", type) &&
        hk_str(e, "timestamp", j->received_at) && cJSON_AddItemToObject(e, "data", d))
        text = cJSON_PrintUnformatted(e);
    else
        cJSON_Delete(d);
    cJSON_Delete(e);
    return text;
}

/* "webhook-signature: v1,<b64> v1,<b64>..." over "id.timestamp.body". */
static char *hk_signature(const struct config_hook *h, const char *id, long ts,
                          const char *body)
{
    struct buf msg = {0}, out = {0};
    uint8_t mac[32];
    size_t i;
    int bad = buf_printf(&msg, "%s.%ld.%s", id, ts, body) < 0 ||
              buf_puts(&out, "webhook-signature:") < 0;

    for (i = 0; !bad && i < h->n_keys; i++) {
        char *b64;
        if (crypto_hmac_sha256(h->keys[i], h->key_lens[i], msg.data, msg.len, mac) < 0 ||
            !(b64 = crypto_b64_encode(mac, sizeof(mac)))) {
            bad = 1;
            break;
        }
        bad = buf_printf(&out, " v1,%s", b64) < 0;
        free(b64);
    }
    explicit_bzero(mac, sizeof(mac));
    buf_free(&msg);
    if (bad) {
        buf_free(&out);
        return NULL;
    }
    return buf_steal(&out);
}

/* A command hook: the envelope on stdin, exit 0 = delivered. The exit code
 * is the attempt's status; the output its response. */
static void hk_command(const struct query_env *env, const char *id, const char *body,
                       struct query_answer *a)
{
    const struct config_hook *h = env->hook;
    const struct store_job *j = env->job;
    const char *creds = getenv("CREDENTIALS_DIRECTORY");
    char eid[48], hook[160], type[192], wid[64], cred[4200];
    char *envp[] = {"PATH=/usr/sbin:/usr/bin:/sbin:/bin", eid, hook, type, wid,
                    creds ? cred : NULL, NULL};
    struct command_run run = {.argv = h->command, .envp = envp, .input = body,
                              .input_len = strlen(body), .timeout_ms = h->timeout * 1000};

    snprintf(eid, sizeof(eid), "PAYHOOKD_EVENT_ID=%lld", (long long)j->event_id);
    snprintf(hook, sizeof(hook), "PAYHOOKD_HOOK=%s", h->name);
    snprintf(type, sizeof(type), "PAYHOOKD_TYPE=%s.%s", j->provider ? j->provider : "?",
             j->ev_kind ? j->ev_kind : "?");
    snprintf(wid, sizeof(wid), "PAYHOOKD_WEBHOOK_ID=%s", id);
    if (creds)
        snprintf(cred, sizeof(cred), "CREDENTIALS_DIRECTORY=%s", creds);
    snprintf(a->endpoint, sizeof(a->endpoint), "command %s", h->command[0]);
    a->exit_status = 1;
    if (command_run(&run) < 0) {
        buf_free(&run.output);
        return query_set(a, QUERY_ERROR, "%s", run.error);
    }
    a->call.body = run.output;
    a->call.duration_ms = run.duration_ms;
    a->call.http_status = run.exit_code;
    if (run.timed_out)
        query_set(a, QUERY_ERROR, "timed out after %u s: its process group was killed",
                  h->timeout);
    else if (run.signal)
        query_set(a, QUERY_ERROR, "killed by signal %d (%s)", run.signal, strsignal(run.signal));
    else if (run.exit_code != 0)
        query_set(a, QUERY_ERROR, "exit status %d", run.exit_code);
    else
        query_set(a, QUERY_CONFIRMED, "exit 0");
}

void forward_deliver(const struct query_env *env, struct query_answer *a)
{
    const struct config_hook *h = env->hook;
    char id[40], idh[64], tsh[48], *body, *sig = NULL;
    long ts = (long)time(NULL);

    if (!h)
        return query_set(a, QUERY_ERROR, "the hook is no longer configured");
    if (!(body = hk_envelope(env)))
        return query_set(a, QUERY_ERROR, "out of memory building the envelope");
    snprintf(id, sizeof(id), "msg_%lld", (long long)env->job->id);
    if (h->command) {
        hk_command(env, id, body, a);
        free(body);
        return;
    }
    snprintf(idh, sizeof(idh), "webhook-id: %s", id);
    snprintf(tsh, sizeof(tsh), "webhook-timestamp: %ld", ts);
    if (!(sig = hk_signature(h, id, ts, body))) {
        free(body);
        return query_set(a, QUERY_ERROR, "out of memory signing the delivery");
    }
    {
        const char *headers[] = {idh, tsh, sig, "Content-Type: application/json", NULL};
        a->call.headers = headers;
        if (query_call(env, a, h->url, body, strlen(body)) == 0)
            query_set(a, QUERY_CONFIRMED, "HTTP %d", a->call.http_status);
        else if (a->call.http_status == 410)
            query_set(a, QUERY_GONE, "HTTP 410 Gone: the hook is disabled");
        a->call.headers = NULL;
    }
    free(sig);
    free(body);
}
