/*
 * scheduler.c: the dispatcher and the worker pool (see jobs.h).
 *
 * The dispatcher is the only thread that claims, so no job is handed out
 * twice; a claim is durable before the job reaches a worker, so a crash
 * mid-call counts the attempt and the job runs again after the restart.
 * Workers hold no store connection while they wait on the network: they
 * read nothing, and submit their result to the writer without waiting for
 * it (the completion frees the attempt).
 */
#include "jobs/jobs.h"

#include <errno.h>
#include <stddef.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "forward/hooks.h"
#include "jobs/reconcile.h"
#include "lib/log.h"
#include "lib/metrics.h"
#include "lib/util.h"
#include "wire/crypto.h"
#include "wire/json.h"

#define JOBS_MAX_WORKERS 256
#define JOBS_MAX_LANES   64
#define JOBS_CLAIM_MAX   256   /* jobs claimed in one transaction */
#define JOBS_BODY_KEEP   16384 /* bytes of an answer kept in query_results */
#define JOBS_IDLE_MS     1000  /* longest sleep: new due times, gauges */
#define JOBS_REQUEUE_DELAY_MS 2000 /* an unrecorded result's job runs again after */
#define JOBS_RECONCILE_MS 30000 /* how often the sweeps' schedule is looked at */
#define JOBS_HOOKS_MAX   16    /* when = confirmed hooks one confirmation feeds */

/* A platform's caps: calls in flight, and a token bucket for the rate. */
struct lane {
    char name[64];
    int disabled; /* a hook that answered 410 Gone: nothing is sent until a reload */
    int query;    /* a query lane (not a hook): within the queries' share of the pool */
    unsigned inflight; /* claimed: waiting for a worker or in a call */
    unsigned running;  /* in a call: at most cap (checked when a worker takes one) */
    unsigned cap;      /* calls at a time, as of the last dispatch */
    double tokens;
    uint64_t refill_ns;
};

/* The settings in force (from [openapi] and the hooks, replaced on reload).
 * The pool is `queries` threads for the follow-up queries plus each hook's
 * concurrency, so a hung hook never holds a worker a query needs. */
struct jobs_set {
    unsigned workers, queries, timeout, connect_timeout, max_attempts, retry_base, retry_max, rate,
        concurrency;
};

/* One claimed attempt, from hand-over to its committed result. */
struct job_item {
    struct job_item *next;
    struct jobs *j;
    struct store_job job;
    struct lane *lane;
    struct jobs_set set;
    struct query_answer ans;
    struct store_job_result res;
    char at[32], due[32];
    /* a confirmation's deliveries to when = confirmed hooks (kinds strdup'd) */
    char *also_kinds[JOBS_HOOKS_MAX];
    size_t n_also;
};

struct jobs {
    struct store *s;
    struct runtime_cell *rt;
    pthread_mutex_t lock;
    /* work_cond: workers within the configured count wait for a job (one
     * signal per job: no herd); spare_cond: those above it (after a reload
     * lowered it) wait for a reload, so a job's signal never lands on them */
    pthread_cond_t work_cond, spare_cond, disp_cond, idle_cond;
    struct job_item *head, *tail; /* claimed, waiting for a worker */
    struct job_item *unrecorded;  /* ran, but the store could not record the result */
    unsigned queued, busy, pending;
    unsigned q_running; /* calls of the query lanes, at most set.queries */
    unsigned started; /* worker threads created */
    pthread_t workers[JOBS_MAX_WORKERS];
    pthread_t dispatcher;
    int dispatcher_started, stopping, woken;
    struct jobs_set set;
    struct lane lanes[JOBS_MAX_LANES];
    size_t n_lanes;
    uint64_t gauges_ns;
    uint64_t reconcile_ns; /* the last look at the sweeps' schedule */
};

/* A worker thread's argument. */
struct worker_arg {
    struct jobs *j;
    unsigned idx;
};

static const char *const result_names[] = {
    [QUERY_ERROR] = "error",           [QUERY_CONFIRMED] = "confirmed",
    [QUERY_MISMATCH] = "mismatch",     [QUERY_UNKNOWN_ORDER] = "unknown_order",
    [QUERY_PENDING] = "pending",       [QUERY_GONE] = "gone",
};

/* A delivery to a hook, not a query? */
static int job_is_hook(const struct store_job *jb)
{
    return strncmp(jb->kind, "hook.", 5) == 0;
}

/* The attempt's outcome as recorded: a hook's 2xx is "delivered". */
static const char *job_outcome_name(const struct job_item *it)
{
    if (job_is_hook(&it->job) && it->ans.result == QUERY_CONFIRMED)
        return "delivered";
    if (it->ans.result == QUERY_CONFIRMED && !jobs_kind_confirms(it->job.kind))
        return "done"; /* a token fetched: nothing was confirmed */
    return result_names[it->ans.result];
}

/* ---- time ----------------------------------------------------------------- */

/* "YYYY-MM-DDTHH:MM:SS.mmmZ" as unix milliseconds (0 if unreadable: due). */
static int64_t iso_ms(const char *s)
{
    struct tm tm = {0};
    int ms = 0;

    if (sscanf(s, "%d-%d-%dT%d:%d:%d.%dZ", &tm.tm_year, &tm.tm_mon, &tm.tm_mday,
               &tm.tm_hour, &tm.tm_min, &tm.tm_sec, &ms) < 6)
        return 0;
    tm.tm_year -= 1900;
    tm.tm_mon -= 1;
    return (int64_t)timegm(&tm) * 1000 + ms;
}

/* Exponential back-off with full jitter: uniform in [0, min(retry_max,
 * retry_base * 2^(attempts-1))] seconds, in milliseconds. */
static int64_t backoff_ms(const struct jobs_set *set, unsigned attempts)
{
    double cap = set->retry_base;
    uint64_t rnd = 0;
    unsigned i;

    for (i = 1; i < attempts && cap < set->retry_max; i++)
        cap *= 2;
    if (cap > set->retry_max)
        cap = set->retry_max;
    crypto_random(&rnd, sizeof(rnd));
    return (int64_t)((double)(rnd % 1000001u) / 1e6 * cap * 1000.0);
}

/* ---- settings --------------------------------------------------------------- */

static void jobs_read_set(struct jobs_set *set, const struct config *c)
{
    const struct config_openapi *o = &c->openapi;
    unsigned total = o->workers;
    size_t i;

    for (i = 0; i < c->n_hooks; i++)
        total += c->hooks[i]->concurrency;
    set->queries = o->workers < JOBS_MAX_WORKERS ? o->workers : JOBS_MAX_WORKERS;
    set->workers = total < JOBS_MAX_WORKERS ? total : JOBS_MAX_WORKERS;
    set->timeout = o->timeout;
    set->connect_timeout = o->connect_timeout;
    set->max_attempts = o->max_attempts;
    set->retry_base = o->retry_base;
    set->retry_max = o->retry_max;
    set->rate = o->rate;
    set->concurrency = o->concurrency;
}

/* ---- results ---------------------------------------------------------------- */

/* Keys a job's answer taught: in use from their commit on (a pointer put
 * in place: this runs on the commit's completion), dropped when it failed. */
static void job_keys_done(struct job_item *it, int committed)
{
    if (it->ans.keys_ready)
        it->ans.keys_done(it->ans.keys_ready, committed);
    if (committed)
        log_notice("app %s: %s", it->ans.keys->app_id, it->ans.detail);
    it->ans.keys_ready = NULL;
    free(it->ans.keys);
    it->ans.keys = NULL;
}

/* Completion of a result's commit (syncer or writer thread: never waits). */
static void job_recorded(void *data, const struct store_result *res)
{
    struct job_item *it =
        (struct job_item *)((char *)data - offsetof(struct job_item, res));
    struct jobs *j = it->j;
    int64_t id = it->job.id;

    if (res->outcome == STORE_FAILED)
        log_err("job %lld (%s): its result was not recorded (%s); it goes back to the "
                "queue and runs again",
                (long long)it->job.id, it->job.kind, res->error ? res->error : "?");
    openapi_call_free(&it->ans.call);
    util_free_secret(&it->ans.token);
    util_free_secret(&it->ans.refresh_token);
    if (it->ans.keys || it->ans.keys_ready)
        job_keys_done(it, it->ans.keys && it->res.also && !it->res.cancelled &&
                              res->outcome != STORE_FAILED);
    store_job_clear(&it->job);
    it->job.id = id; /* what a requeue needs */
    while (it->n_also)
        free(it->also_kinds[--it->n_also]);
    pthread_mutex_lock(&j->lock);
    if (res->outcome == STORE_FAILED) {
        /* still running in the store: the dispatcher queues it again */
        it->next = j->unrecorded;
        j->unrecorded = it;
        it = NULL;
        j->woken = 1;
        pthread_cond_signal(&j->disp_cond);
    }
    j->pending--;
    pthread_cond_broadcast(&j->idle_cond);
    pthread_mutex_unlock(&j->lock);
    free(it);
}

/* Log what an ended job means for its event. */
static void job_log_end(const struct job_item *it, const char *confirmation)
{
    const struct store_job *jb = &it->job;
    const struct query_answer *a = &it->ans;

    if (strcmp(confirmation, "mismatch") == 0)
        log_warning("event %lld (%s %s, order %s): the platform disagrees: %s%s%s",
                    (long long)jb->event_id, jb->provider ? jb->provider : "?",
                    jb->ev_kind ? jb->ev_kind : "?",
                    jb->merchant_order_id ? jb->merchant_order_id : "?", a->detail,
                    a->field[0] ? "" : " (after the last attempt)", "");
    else if (strcmp(confirmation, "unconfirmed") == 0)
        log_warning("event %lld (%s %s): unconfirmed: job %lld failed after %u attempts: %s",
                    (long long)jb->event_id, jb->provider ? jb->provider : "?",
                    jb->ev_kind ? jb->ev_kind : "?", (long long)jb->id, jb->attempts,
                    a->detail);
}

static int job_also_hooks(struct store_tx *tx, void *data);

/* In the transaction that records the answer: the token it issued (with
 * the job that comes next), the keys it taught. */
static int job_also_credentials(struct store_tx *tx, void *data)
{
    const struct job_item *it = data;
    const struct query_answer *a = &it->ans;
    struct store_followup then = {
        .kind = a->then_kind, .lane = a->then_lane, .delay_s = a->then_delay_s};

    if (a->token && store_tx_set_token(tx, a->token_app, a->token, a->token_expires_in,
                                       a->refresh_token) < 0)
        return -EIO;
    if (a->token && a->then_kind && store_tx_job_schedule(tx, a->token_app, &then) < 0)
        return -EIO;
    return a->keys ? store_tx_app_keys_set(tx, a->keys) : 0;
}

/* In the transaction that records a refused token's answer: the token is
 * marked expired (unless a newer one replaced it), and its fetch queued
 * now: the TP's from the latest ticket, an app's with its refresh token. */
static int job_also_refused_token(struct store_tx *tx, void *data)
{
    const struct query_answer *a = &((const struct job_item *)data)->ans;
    int tp = strcmp(a->refused_app, "tp") == 0, r;
    struct store_followup fetch = {.kind = tp ? "baidu.tp_token" : "baidu.app_refresh",
                                   .lane = tp ? "baidu" : "baidu.tokens"};

    if ((r = store_tx_token_expire(tx, a->refused_app, a->refused_token)) <= 0)
        return r;
    /* one fetch at a time: a running one stores a new token anyway */
    if ((r = store_tx_job_running(tx, a->refused_app, fetch.kind)) != 0)
        return r < 0 ? r : 0;
    return store_tx_job_schedule(tx, a->refused_app, &fetch) < 0 ? -EIO : 0;
}

/* A job that confirms nothing (a token fetch) ended: no confirmation, and
 * the last failure logged once. */
static void job_decide_plain(struct job_item *it)
{
    struct store_job_result *r = &it->res;

    if (r->outcome)
        r->outcome = it->ans.result == QUERY_CONFIRMED ? "done" : r->outcome;
    if ((it->ans.token || it->ans.keys) && it->ans.result == QUERY_CONFIRMED) {
        r->also = job_also_credentials;
        r->also_data = it;
    }
    if (strcmp(r->state, "failed") == 0 || (r->outcome && strcmp(r->outcome, "mismatch") == 0))
        log_warning("job %lld (%s) failed after %u attempts: %s", (long long)it->job.id,
                    it->job.kind, it->job.attempts, it->ans.detail);
}

/* A hook delivery's next state: delivered, retried (Retry-After honoured
 * up to retry_max), held while the hook is gone, or dead. */
static void job_decide_hook(struct job_item *it)
{
    const struct query_answer *a = &it->ans;
    struct store_job_result *r = &it->res;
    int last = it->job.attempts >= it->set.max_attempts;
    int64_t delay = backoff_ms(&it->set, it->job.attempts);
    long after = a->call.retry_after_s;

    if (a->result == QUERY_CONFIRMED) {
        r->state = "done";
        r->outcome = "delivered";
        return;
    }
    r->error = a->detail;
    if (a->result == QUERY_GONE) {
        /* not the delivery's fault: it stays due, held by the disabled
         * lane, and goes out as soon as a reload re-enables the hook */
        r->state = "queued";
        delay = 0;
    } else if (last) {
        r->state = "failed";
        log_warning("delivery %lld of event %lld to hook %s is dead after %u attempts: %s",
                    (long long)it->job.id, (long long)it->job.event_id, it->job.kind + 5,
                    it->job.attempts, a->detail);
        return;
    } else {
        r->state = "queued";
        if (after >= 0 && (a->call.http_status == 429 || a->call.http_status == 503))
            delay = (after < (long)it->set.retry_max ? after : (long)it->set.retry_max) * 1000;
    }
    util_iso8601_in(delay, it->due);
    r->due_at = it->due;
}

/* Turn the answer into the job's next state. */
static void job_decide(struct job_item *it)
{
    const struct query_answer *a = &it->ans;
    struct store_job_result *r = &it->res;
    int last = it->job.attempts >= it->set.max_attempts;
    const char *confirmation = NULL;

    if (job_is_hook(&it->job)) {
        job_decide_hook(it);
        metrics_job_run(it->job.kind, job_outcome_name(it), strcmp(r->state, "queued") == 0);
        return;
    }
    switch (a->result) {
    case QUERY_CONFIRMED:
    case QUERY_MISMATCH:
        r->state = "done";
        r->outcome = confirmation = a->result == QUERY_CONFIRMED ? "confirmed" : "mismatch";
        break;
    case QUERY_UNKNOWN_ORDER:
        if (last) {
            r->state = "done";
            r->outcome = confirmation = "mismatch";
            break;
        }
        /* the platform may lag behind its own callback: retried */
        __attribute__((fallthrough));
    default:
        r->state = last ? "failed" : "queued";
        if (last)
            confirmation = "unconfirmed";
    }
    if (strcmp(r->state, "queued") == 0) {
        int64_t delay = backoff_ms(&it->set, it->job.attempts);
        long after = a->call.retry_after_s;
        if (after >= 0 && (a->call.http_status == 429 || a->call.http_status == 503))
            delay = (after < (long)it->set.retry_max ? after : (long)it->set.retry_max) * 1000;
        util_iso8601_in(delay, it->due);
        r->due_at = it->due;
    }
    if (r->outcome && strcmp(r->outcome, "confirmed") == 0 && it->n_also) {
        r->also = job_also_hooks;
        r->also_data = it;
    }
    if (a->result != QUERY_CONFIRMED)
        r->error = a->detail;
    if (!jobs_kind_confirms(it->job.kind)) {
        job_decide_plain(it);
        confirmation = NULL;
    }
    if (a->refused_app && !r->also) {
        r->also = job_also_refused_token;
        r->also_data = it;
        log_warning("job %lld (%s): the platform refused the stored access token of %s (%s): "
                    "with this answer it is marked expired and a new one fetched (once)",
                    (long long)it->job.id, it->job.kind, a->refused_app, a->detail);
    }
    metrics_job_run(it->job.kind, job_outcome_name(it), strcmp(r->state, "queued") == 0);
    if (confirmation) {
        metrics_confirmation(confirmation);
        job_log_end(it, confirmation);
    }
}

/* In the transaction that records a confirmation: the event's deliveries to
 * when = confirmed hooks (design.md: created with the confirmation). */
static int job_also_hooks(struct store_tx *tx, void *data)
{
    const struct job_item *it = data;
    size_t i;
    int r;

    for (i = 0; i < it->n_also; i++) {
        struct store_followup f = {.kind = it->also_kinds[i],
                                   .lane = it->also_kinds[i],
                                   .confirmation = "confirmed"};
        if ((r = store_tx_job_create(tx, it->job.event_id, it->job.app, &f)) < 0)
            return r;
    }
    return 0;
}

/* Fill the query_results row and submit the result to the writer. */
static void job_record(struct jobs *j, struct job_item *it)
{
    struct store_job_result *r = &it->res;
    const struct query_answer *a = &it->ans;

    r->job_id = it->job.id;
    r->event_id = it->job.event_id;
    r->at = it->at;
    r->endpoint = a->endpoint[0] ? a->endpoint : "(no call)";
    r->http_status = a->call.http_status;
    r->exit_status = a->exit_status;
    r->platform_code = a->code[0] ? a->code : NULL;
    r->result = job_outcome_name(it);
    r->detail = a->detail;
    r->duration_ms = a->call.duration_ms;
    r->body = a->call.body.data;
    r->body_len = a->call.body.len < JOBS_BODY_KEEP ? a->call.body.len : JOBS_BODY_KEEP;
    pthread_mutex_lock(&j->lock);
    j->pending++;
    pthread_mutex_unlock(&j->lock);
    if (store_job_finish(j->s, r, job_recorded) < 0) {
        struct store_result no = {.outcome = STORE_FAILED, .error = "the store is stopping"};
        job_recorded(r, &no);
    }
}

/* Which when = confirmed hooks the confirmation feeds (kinds copied: the
 * runtime may be gone by the time the writer runs). */
static void job_confirmed_hooks(const struct config *c, struct job_item *it)
{
    const struct config_hook *h[JOBS_HOOKS_MAX];
    size_t n = forward_confirmed(c, it->job.provider, it->job.ev_kind, h, JOBS_HOOKS_MAX), i;

    for (i = 0; i < n; i++)
        if ((it->also_kinds[it->n_also] = strdup(h[i]->kind)) != NULL)
            it->n_also++;
    if (it->n_also < n) {
        /* without the deliveries the confirmation is not recorded either:
         * the job is retried, and the query asked again */
        it->ans.result = QUERY_ERROR;
        snprintf(it->ans.detail, sizeof(it->ans.detail), "out of memory");
    }
}

/* Run one attempt: ask the platform, judge, record (no client: there was
 * no memory for one, and the attempt fails with the job's own policy).
 * Returns 1 when a hook answered 410 Gone. `it` belongs to the writer once
 * its result is submitted: nothing of it is read after. */
static int job_run(struct jobs *j, struct openapi_client *client, struct job_item *it)
{
    int gone;
    struct runtime *rt = runtime_acquire(j->rt);
    query_fn fn = jobs_query_for(it->job.kind);
    cJSON *fields = NULL;
    char err[64];
    struct query_env env = {
        .cfg = rt->cfg,
        .job = &it->job,
        .client = client,
        .timeout_ms = it->set.timeout * 1000,
        .connect_ms = it->set.connect_timeout * 1000,
        .store = j->s,
        .stopping = &j->stopping,
    };

    if (job_is_hook(&it->job) && (env.hook = config_hook_by_kind(rt->cfg, it->job.kind))) {
        /* a hook's own timeout and retry policy */
        it->set.timeout = env.hook->timeout;
        env.timeout_ms = env.connect_ms = env.hook->timeout * 1000;
        it->set.max_attempts = env.hook->max_attempts;
        it->set.retry_base = env.hook->retry_base;
        it->set.retry_max = env.hook->retry_max;
    }
    util_iso8601_now(it->at);
    if (it->job.fields &&
        json_parse(it->job.fields, strlen(it->job.fields), 32, &fields, err, sizeof(err)) < 0)
        fields = NULL;
    env.fields = fields;
    it->ans.result = QUERY_ERROR;
    if (!fn)
        query_set(&it->ans, QUERY_ERROR, "unknown job kind %s", it->job.kind);
    else if (!client)
        query_set(&it->ans, QUERY_ERROR, "out of memory (no HTTP client)");
    else
        fn(&env, &it->ans);
    if (it->ans.endpoint[0] && !job_is_hook(&it->job))
        metrics_query_latency(it->job.lane, (uint64_t)it->ans.call.duration_ms * 1000000u);
    if (it->ans.result == QUERY_CONFIRMED && !job_is_hook(&it->job))
        job_confirmed_hooks(rt->cfg, it);
    cJSON_Delete(fields);
    runtime_release(rt);
    job_decide(it);
    gone = it->ans.result == QUERY_GONE;
    job_record(j, it);
    return gone;
}

/* ---- workers ---------------------------------------------------------------- */

/* A hook answered 410 Gone: recorded in the store, so it stays disabled
 * across restarts until an operator enables it (payhookctl hooks enable). */
static void jobs_note_disabled(struct jobs *j, const char *hook)
{
    int r = store_hook_set_disabled(j->s, hook, "HTTP 410 Gone");

    log_warning("hook %s answered 410 Gone: disabled; its deliveries wait until "
                "payhookctl hooks enable %s%s",
                hook, hook, r < 0 ? " (not recorded in the store: a restart enables it)" : "");
}

/* Whether a claimed job may start its call now (under j->lock): its lane's
 * cap and the queries' share of the pool hold at the call itself, since
 * jobs are claimed ahead of the workers (lane_allowance). */
static int job_may_start(const struct jobs *j, const struct lane *l)
{
    if (l->disabled || l->running >= l->cap)
        return 0;
    return !l->query || j->q_running < j->set.queries;
}

/* Take the first claimed job that may start (under j->lock): NULL if none.
 * Claims are in due order per lane, and one order's deliveries are never
 * claimed together, so skipping a capped lane reorders nothing that counts. */
static struct job_item *job_take(struct jobs *j)
{
    struct job_item *it, *prev = NULL;

    for (it = j->head; it && !job_may_start(j, it->lane); it = it->next)
        prev = it;
    if (!it)
        return NULL;
    if (prev)
        prev->next = it->next;
    else
        j->head = it->next;
    if (j->tail == it)
        j->tail = prev;
    j->queued--;
    j->busy++;
    it->lane->running++;
    j->q_running += it->lane->query ? 1 : 0;
    return it;
}

/* A call ended (under j->lock). The dispatcher is woken once the lane's
 * claimed jobs run low, not after every call: a pass reads and claims in
 * one batch what the lane may take (its claim waits for a commit). */
static void job_ended(struct jobs *j, struct lane *l)
{
    j->busy--;
    l->running--;
    l->inflight--;
    j->q_running -= l->query ? 1 : 0;
    if (l->inflight - l->running <= l->cap / 2) {
        j->woken = 1;
        pthread_cond_signal(&j->disp_cond);
    }
}

static void *worker_main(void *p)
{
    struct worker_arg *w = p;
    struct jobs *j = w->j;
    unsigned idx = w->idx;
    struct openapi_client *client = NULL;
    struct job_item *it;
    struct lane *lane;
    int gone;

    free(w);
    for (;;) {
        pthread_mutex_lock(&j->lock);
        /* a worker above the configured count idles (a reload may lower it) */
        it = NULL;
        while (!j->stopping && (idx >= j->set.workers || !(it = job_take(j))))
            pthread_cond_wait(idx >= j->set.workers ? &j->spare_cond : &j->work_cond, &j->lock);
        if (j->stopping) { /* what is claimed and not taken goes back (jobs_stop) */
            pthread_mutex_unlock(&j->lock);
            break;
        }
        pthread_mutex_unlock(&j->lock);

        lane = it->lane; /* it may be freed once its result is submitted */
        if (!client) /* made when memory allows: a failed try is that job's failure */
            client = openapi_client_new();
        gone = job_run(j, client, it);

        pthread_mutex_lock(&j->lock);
        gone = gone && !lane->disabled;
        if (gone)
            lane->disabled = 1;
        job_ended(j, lane);
        pthread_mutex_unlock(&j->lock);
        if (gone)
            jobs_note_disabled(j, lane->name + 5);
    }
    openapi_client_free(client);
    return NULL;
}

/* Start workers up to the configured count (under j->lock). */
static int jobs_spawn(struct jobs *j)
{
    while (j->started < j->set.workers) {
        struct worker_arg *w = malloc(sizeof(*w));
        if (!w)
            return -ENOMEM;
        w->j = j;
        w->idx = j->started;
        if (pthread_create(&j->workers[j->started], NULL, worker_main, w) != 0) {
            free(w);
            return -EAGAIN;
        }
        j->started++;
    }
    return 0;
}

/* ---- dispatcher ------------------------------------------------------------- */

/* The lane's state, created on first sight (under j->lock); NULL when full. */
static struct lane *lane_get(struct jobs *j, const char *name)
{
    size_t i;

    for (i = 0; i < j->n_lanes; i++)
        if (strcmp(j->lanes[i].name, name) == 0)
            return &j->lanes[i];
    if (j->n_lanes == JOBS_MAX_LANES)
        return NULL;
    snprintf(j->lanes[j->n_lanes].name, sizeof(j->lanes[0].name), "%s", name);
    j->lanes[j->n_lanes].query = strncmp(name, "hook.", 5) != 0;
    j->lanes[j->n_lanes].refill_ns = util_now_ns();
    return &j->lanes[j->n_lanes++];
}

/* How many jobs of the lane may start now (under j->lock); *wait_ms lowered
 * to when the rate allows the next one. */
/* How many claims a lane may hold per call it may run: without a rate cap,
 * twice as many, so the next jobs' claims commit while these calls run and
 * a worker that ends a call starts the next at once instead of waiting for
 * a claim's commit (which bounded a lane to cap calls per commit). With a
 * rate cap, claims stay as many as the calls, so calls keep the claims'
 * pace. The caps themselves hold when a call starts (job_may_start). */
static unsigned lane_ahead(const struct jobs *j, unsigned hook_cap)
{
    return j->set.rate && !hook_cap ? 1 : 2;
}

static unsigned lane_allowance(struct jobs *j, struct lane *l, unsigned hook_cap,
                               long *wait_ms)
{
    unsigned ahead = lane_ahead(j, hook_cap);
    unsigned active = (j->started < j->set.workers ? j->started : j->set.workers) * ahead;
    unsigned used = j->busy + j->queued, idle = active > used ? active - used : 0;
    unsigned cap = hook_cap ? hook_cap : j->set.concurrency ? j->set.concurrency : j->set.queries;
    unsigned allow = cap * ahead > l->inflight ? cap * ahead - l->inflight : 0;
    uint64_t now = util_now_ns();

    l->cap = cap;
    if (l->disabled)
        return 0;
    if (!hook_cap) {
        /* the queries together stay within their share of the pool */
        unsigned q = 0;
        for (size_t i = 0; i < j->n_lanes; i++)
            q += j->lanes[i].query ? j->lanes[i].inflight : 0;
        q = j->set.queries * ahead > q ? j->set.queries * ahead - q : 0;
        allow = allow < q ? allow : q;
    }
    allow = allow < idle ? allow : idle;
    if (j->set.rate && !hook_cap) {
        /* a small burst (1/20 s of the rate) keeps any one-second window
         * close to the rate */
        double burst = j->set.rate / 20.0 < 1 ? 1 : j->set.rate / 20.0;
        l->tokens += (double)(now - l->refill_ns) / 1e9 * j->set.rate;
        l->tokens = l->tokens > burst ? burst : l->tokens;
        l->refill_ns = now;
        if ((double)allow > l->tokens)
            allow = (unsigned)l->tokens;
        if (allow == 0) {
            long ms = (long)((1.0 - l->tokens) / j->set.rate * 1000.0) + 1;
            *wait_ms = ms < *wait_ms ? ms : *wait_ms;
        }
    }
    return allow < JOBS_CLAIM_MAX ? allow : JOBS_CLAIM_MAX;
}

/* Hand claimed jobs to the workers (under j->lock), each in its item
 * (allocated before the claim: a claimed job must never lack one). */
static void jobs_hand_over(struct jobs *j, struct lane *l, struct store_job *jobs,
                           struct job_item **items, size_t n)
{
    size_t i;

    for (i = 0; i < n; i++) {
        struct job_item *it = items[i];
        if (!jobs[i].claimed)
            continue;
        items[i] = NULL;
        it->j = j;
        it->job = jobs[i];
        memset(&jobs[i], 0, sizeof(jobs[i])); /* its strings now belong to it */
        it->lane = l;
        it->set = j->set;
        l->inflight++;
        l->tokens -= j->set.rate ? 1 : 0;
        if (j->tail)
            j->tail->next = it;
        else
            j->head = it;
        j->tail = it;
        j->queued++;
        pthread_cond_signal(&j->work_cond);
    }
}

/* Claim and hand over what one lane may start now. 1 when it may have more. */
static int jobs_dispatch_lane(struct jobs *j, const struct config *c, const char *name,
                              const char *now, long *wait_ms)
{
    const struct config_hook *h = strncmp(name, "hook.", 5) == 0 ? config_hook_by_kind(c, name)
                                                                 : NULL;
    struct store_job *jobs = NULL;
    struct job_item *items[JOBS_CLAIM_MAX];
    struct lane *l;
    unsigned allow;
    size_t n = 0, k;
    char lease[32];
    int r;

    pthread_mutex_lock(&j->lock);
    l = lane_get(j, name);
    allow = l ? lane_allowance(j, l, h ? h->concurrency : 0, wait_ms) : 0;
    pthread_mutex_unlock(&j->lock);
    if (!allow)
        return 0;
    if ((r = store_jobs_due(j->s, name, now, allow, &jobs, &n)) < 0 || n == 0) {
        if (r == 0)
            store_jobs_free(jobs, n);
        return 0;
    }
    /* no memory for an item: that job and those after it stay queued */
    for (k = 0; k < n && (items[k] = calloc(1, sizeof(*items[k]))) != NULL; k++)
        ;
    /* a job claimed ahead waits at most one call of its lane before its own */
    util_iso8601_in(((int64_t)(h ? h->timeout : j->set.timeout) * lane_ahead(j, h ? 1 : 0) + 30) *
                        1000,
                    lease);
    if (k && store_jobs_claim(j->s, jobs, k, lease) == 0) {
        pthread_mutex_lock(&j->lock);
        jobs_hand_over(j, l, jobs, items, k);
        pthread_mutex_unlock(&j->lock);
    }
    while (k)
        free(items[--k]); /* those not handed over are NULL */
    store_jobs_free(jobs, n);
    return n == allow;
}

/* The job gauges, at most once a second. */
static void jobs_gauges(struct jobs *j, int64_t oldest_due_ms)
{
    long counts[4];
    uint64_t now = util_now_ns();

    if (now - j->gauges_ns < 1000000000ull)
        return;
    j->gauges_ns = now;
    if (store_jobs_counts(j->s, counts) == 0)
        metrics_set_jobs(counts, oldest_due_ms > 0 ? (double)oldest_due_ms / 1000.0 : 0);
}

/* Put a list of items back on the unrecorded ones, for the next pass. */
static void jobs_keep_unrecorded(struct jobs *j, struct job_item *take)
{
    struct job_item *it;

    for (it = take; it->next; it = it->next)
        ;
    pthread_mutex_lock(&j->lock);
    it->next = j->unrecorded;
    j->unrecorded = take;
    pthread_mutex_unlock(&j->lock);
}

/* Jobs whose result the store could not record are still running there:
 * back to the queue, so they run again now rather than after a restart.
 * What cannot be released stays on the list for the next pass. */
static void jobs_requeue_unrecorded(struct jobs *j)
{
    int64_t ids[64];
    struct job_item *take, *it, *rest;
    char due[32];
    size_t n = 0;

    pthread_mutex_lock(&j->lock);
    take = j->unrecorded;
    j->unrecorded = NULL;
    pthread_mutex_unlock(&j->lock);
    for (it = take; it && n < ARRAY_SIZE(ids); it = it->next)
        ids[n++] = it->job.id;
    rest = it;
    /* not at once: a result that cannot be written must not become a loop of calls */
    util_iso8601_in(JOBS_REQUEUE_DELAY_MS, due);
    if (n && store_jobs_release(j->s, ids, n, due) == 0) {
        while (take != rest) {
            it = take;
            take = take->next;
            free(it);
        }
    }
    if (take)
        jobs_keep_unrecorded(j, take);
}

/* Take out (under j->lock) up to max claimed jobs of hooks that answered
 * 410 Gone since their claim; their ids in ids. */
static struct job_item *jobs_take_disabled(struct jobs *j, int64_t *ids, size_t max,
                                           size_t *n)
{
    struct job_item *it, *prev = NULL, *next, *take = NULL;

    for (it = j->head; it && *n < max; it = next) {
        next = it->next;
        if (!it->lane->disabled) {
            prev = it;
            continue;
        }
        if (prev)
            prev->next = next;
        else
            j->head = next;
        if (j->tail == it)
            j->tail = prev;
        j->queued--;
        it->lane->inflight--;
        ids[(*n)++] = it->job.id;
        store_job_clear(&it->job);
        it->job.id = ids[*n - 1];
        it->next = take;
        take = it;
    }
    return take;
}

/* Claimed jobs of a hook gone since are not sent: back to the queue, their
 * attempt unspent, where the disabled lane holds them until the hook is
 * enabled. Not returned now (the store refused): with the unrecorded ones. */
static void jobs_drop_disabled(struct jobs *j)
{
    int64_t ids[64];
    size_t n = 0;
    struct job_item *take, *it;

    pthread_mutex_lock(&j->lock);
    take = jobs_take_disabled(j, ids, ARRAY_SIZE(ids), &n);
    pthread_mutex_unlock(&j->lock);
    if (!n)
        return;
    if (store_jobs_unclaim(j->s, ids, n) < 0) {
        jobs_keep_unrecorded(j, take);
        return;
    }
    while ((it = take)) {
        take = it->next;
        free(it);
    }
}

/* The sweeps' daily schedule, looked at every JOBS_RECONCILE_MS (the first
 * pass after a start catches up a schedule missed while down). */
static void jobs_reconcile_tick(struct jobs *j, const struct config *c)
{
    uint64_t now = util_now_ns();

    if (j->reconcile_ns && now - j->reconcile_ns < JOBS_RECONCILE_MS * 1000000ull)
        return;
    j->reconcile_ns = now;
    reconcile_tick(j->s, c);
}

/* One pass over the lanes with queued jobs; returns how long to sleep. */
static long jobs_dispatch(struct jobs *j)
{
    struct store_lane lanes[JOBS_MAX_LANES];
    size_t n = 0, i;
    long wait = JOBS_IDLE_MS;
    int64_t now_ms = util_unix_ms(), oldest = 0;
    char now[32];

    struct runtime *rt;

    jobs_drop_disabled(j);
    jobs_requeue_unrecorded(j);
    if (store_jobs_lanes(j->s, lanes, JOBS_MAX_LANES, &n) < 0)
        return JOBS_IDLE_MS;
    rt = runtime_acquire(j->rt);
    jobs_reconcile_tick(j, rt->cfg);
    util_iso8601_now(now);
    for (i = 0; i < n; i++) {
        int64_t due = iso_ms(lanes[i].next_due);
        if (due > now_ms) {
            wait = due - now_ms < wait ? (long)(due - now_ms) : wait;
            continue;
        }
        oldest = now_ms - due > oldest ? now_ms - due : oldest;
        if (jobs_dispatch_lane(j, rt->cfg, lanes[i].lane, now, &wait))
            wait = 0;
    }
    runtime_release(rt);
    jobs_gauges(j, oldest);
    return wait;
}

static void *dispatcher_main(void *p)
{
    struct jobs *j = p;
    struct timespec ts;
    long wait;

    pthread_mutex_lock(&j->lock);
    while (!j->stopping) {
        j->woken = 0;
        pthread_mutex_unlock(&j->lock);
        wait = jobs_dispatch(j);
        pthread_mutex_lock(&j->lock);
        if (j->woken || j->stopping || wait <= 0)
            continue;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_sec += wait / 1000;
        ts.tv_nsec += (wait % 1000) * 1000000L;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        while (!j->woken && !j->stopping &&
               pthread_cond_timedwait(&j->disp_cond, &j->lock, &ts) == 0)
            ;
    }
    pthread_mutex_unlock(&j->lock);
    return NULL;
}

/* The store made new jobs: look now (called after their commit). */
static void jobs_wake(void *data)
{
    struct jobs *j = data;

    pthread_mutex_lock(&j->lock);
    j->woken = 1;
    pthread_cond_signal(&j->disp_cond);
    pthread_mutex_unlock(&j->lock);
}

void jobs_poke(struct jobs *j)
{
    if (j)
        jobs_wake(j);
}

int jobs_hook_enable(struct jobs *j, const char *hook)
{
    char lane[80];
    int was = 0, r = store_hook_set_disabled(j->s, hook, NULL);

    if (r < 0)
        return r;
    snprintf(lane, sizeof(lane), "hook.%s", hook);
    pthread_mutex_lock(&j->lock);
    for (size_t i = 0; i < j->n_lanes; i++)
        if (strcmp(j->lanes[i].name, lane) == 0 && j->lanes[i].disabled) {
            j->lanes[i].disabled = 0;
            was = 1;
        }
    j->woken = 1;
    pthread_cond_signal(&j->disp_cond);
    pthread_mutex_unlock(&j->lock);
    if (was)
        log_notice("hook %s enabled by an operator: its deliveries go out", hook);
    return was;
}

/* At start: a hook disabled before stays disabled. */
static void jobs_mark_disabled(void *data, const char *hook)
{
    struct jobs *j = data;
    char name[80];
    struct lane *l;

    snprintf(name, sizeof(name), "hook.%s", hook);
    if ((l = lane_get(j, name)) != NULL) {
        l->disabled = 1;
        log_warning("hook %s is disabled (it answered 410 Gone): payhookctl hooks enable %s "
                    "sends its deliveries",
                    hook, hook);
    }
}

/* ---- life cycle -------------------------------------------------------------- */

static struct jobs *jobs_new(struct store *s, struct runtime_cell *rt)
{
    struct jobs *j = calloc(1, sizeof(*j));

    if (!j)
        return NULL;
    j->s = s;
    j->rt = rt;
    pthread_mutex_init(&j->lock, NULL);
    pthread_cond_init(&j->work_cond, NULL);
    pthread_cond_init(&j->spare_cond, NULL);
    pthread_cond_init(&j->disp_cond, NULL);
    pthread_cond_init(&j->idle_cond, NULL);
    return j;
}

int jobs_start(struct store *s, struct runtime_cell *rtc, struct jobs **out, char *err,
               size_t errlen)
{
    struct jobs *j = jobs_new(s, rtc);
    struct runtime *rt;
    char after[24];
    int r;

    if (!j)
        return -ENOMEM;
    rt = runtime_acquire(rtc);
    jobs_read_set(&j->set, rt->cfg);
    snprintf(after, sizeof(after), "%u", rt->cfg->openapi.unconfirmed_after);
    runtime_release(rt);
    if ((r = store_jobs_recover(s)) < 0 || (r = store_set_meta(s, "unconfirmed_after", after)) < 0 ||
        (r = store_hooks_disabled(s, jobs_mark_disabled, j)) < 0) {
        snprintf(err, errlen, "cannot prepare the follow-up jobs in the store: %s",
                 strerror(-r));
        jobs_free(j);
        return r;
    }
    *out = j;
    store_on_jobs(s, jobs_wake, j);
    pthread_mutex_lock(&j->lock);
    r = jobs_spawn(j);
    if (r == 0 && pthread_create(&j->dispatcher, NULL, dispatcher_main, j) == 0)
        j->dispatcher_started = 1;
    else if (r == 0)
        r = -EAGAIN;
    pthread_mutex_unlock(&j->lock);
    if (r < 0) {
        snprintf(err, errlen, "cannot start the follow-up workers: %s", strerror(-r));
        *out = NULL;
        jobs_stop(j);
        store_on_jobs(s, NULL, NULL); /* nothing was stored yet: no wake-up is on its way */
        jobs_free(j);
    }
    return r;
}

void jobs_reconfigure(struct jobs *j)
{
    struct runtime *rt;
    struct jobs_set set;

    if (!j)
        return;
    rt = runtime_acquire(j->rt);
    jobs_read_set(&set, rt->cfg);
    runtime_release(rt);
    pthread_mutex_lock(&j->lock);
    j->set = set;
    if (jobs_spawn(j) < 0)
        log_err("cannot start more follow-up workers: %u run", j->started);
    j->woken = 1;
    /* every worker looks again at which cond it belongs to */
    pthread_cond_broadcast(&j->work_cond);
    pthread_cond_broadcast(&j->spare_cond);
    pthread_cond_signal(&j->disp_cond);
    pthread_mutex_unlock(&j->lock);
}

/* Give claimed jobs that no worker started back to the queue (claimed
 * ahead of the workers, there may be as many as the calls running). */
static void jobs_release_waiting(struct jobs *j)
{
    struct job_item *it, *next;
    int64_t *ids = calloc(j->queued + 1, sizeof(*ids));
    size_t n = 0;

    for (it = j->head; it; it = next) {
        next = it->next;
        if (ids)
            ids[n++] = it->job.id;
        store_job_clear(&it->job);
        free(it);
    }
    j->head = j->tail = NULL;
    j->queued = 0;
    /* without memory for the list they stay running: recovered at the next
     * start; with it, as they were before the claim (no call was made) */
    if (n && store_jobs_unclaim(j->s, ids, n) < 0)
        log_err("cannot return %zu claimed jobs to the queue; the next start does", n);
    free(ids);
}

void jobs_stop(struct jobs *j)
{
    unsigned i;

    if (!j)
        return;
    /* the store's wake-up stays registered: j lives until jobs_free */
    pthread_mutex_lock(&j->lock);
    j->stopping = 1;
    pthread_cond_broadcast(&j->work_cond);
    pthread_cond_broadcast(&j->spare_cond);
    pthread_cond_broadcast(&j->disp_cond);
    pthread_mutex_unlock(&j->lock);
    if (j->dispatcher_started)
        pthread_join(j->dispatcher, NULL);
    /* running calls end within their timeout (curl enforces it) */
    for (i = 0; i < j->started; i++)
        pthread_join(j->workers[i], NULL);
    jobs_release_waiting(j);
    pthread_mutex_lock(&j->lock);
    while (j->pending)
        pthread_cond_wait(&j->idle_cond, &j->lock);
    pthread_mutex_unlock(&j->lock);
    jobs_requeue_unrecorded(j);
    /* what is left stays running in the store: recovered at the next start */
    while (j->unrecorded) {
        struct job_item *it = j->unrecorded;
        j->unrecorded = it->next;
        free(it);
    }
}

void jobs_free(struct jobs *j)
{
    if (!j)
        return;
    pthread_mutex_destroy(&j->lock);
    pthread_cond_destroy(&j->work_cond);
    pthread_cond_destroy(&j->spare_cond);
    pthread_cond_destroy(&j->disp_cond);
    pthread_cond_destroy(&j->idle_cond);
    free(j);
}
