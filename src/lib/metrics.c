/*
 * metrics.c: counters and histograms in atomics, Prometheus text output.
 */
#include "lib/metrics.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The HTTP statuses payhookd answers; anything else is counted as "other". */
static const int metrics_statuses[] = {200, 400, 401, 403, 404, 405,
                                       413, 415, 429, 500, 503, 0};
#define N_STATUS ARRAY_SIZE(metrics_statuses)

/* A set of labels registered at run time, never removed. */
struct label_set {
    pthread_mutex_t lock;
    atomic_int n;
    char *names[METRICS_MAX_LABELS];
};

/* A histogram with fixed upper bounds (the last bucket is +Inf). */
struct histogram {
    const double *bounds; /* n_bounds finite bounds */
    unsigned n_bounds;
    atomic_ullong buckets[16];
    atomic_ullong count;
    atomic_ullong sum_micro; /* sum in millionths of the unit */
};

static struct label_set routes = {PTHREAD_MUTEX_INITIALIZER, 0, {0}};
static struct label_set reasons = {PTHREAD_MUTEX_INITIALIZER, 0, {0}};
static atomic_ullong requests[METRICS_MAX_LABELS][N_STATUS];
static atomic_ullong duplicates[METRICS_MAX_LABELS];
static atomic_ullong rejections[METRICS_MAX_LABELS];
static atomic_ullong commits_failed, rejections_unrecorded;
static atomic_long queue_depth, in_flight, connections, wal_frames;
static atomic_ullong ckpt_frames[2], ckpt_failures[2]; /* [0] checkpointer, [1] writer */

static const double latency_bounds[] = {0.0005, 0.001, 0.002, 0.005, 0.01, 0.02,
                                        0.05,   0.1,   0.25,  0.5,   1.0,  2.5};
static const double batch_bounds[] = {1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096};
static struct histogram commit_latency = {.bounds = latency_bounds,
                                          .n_bounds = ARRAY_SIZE(latency_bounds)};
static struct histogram commit_rows = {.bounds = batch_bounds,
                                       .n_bounds = ARRAY_SIZE(batch_bounds)};
static struct histogram request_latency = {.bounds = latency_bounds,
                                           .n_bounds = ARRAY_SIZE(latency_bounds)};

/* Follow-up jobs: kinds registered at run time, outcomes fixed. */
/* "done": a job that confirms nothing (a token fetched, keys learned) */
static const char *const job_outcomes[] = {"confirmed", "mismatch", "unknown_order", "pending",
                                           "error",     "delivered", "gone", "done"};
#define N_OUTCOME ARRAY_SIZE(job_outcomes)
static const char *const confirmations[] = {"confirmed", "mismatch", "unconfirmed"};
static const char *const platforms[] = {"baidu", "alipay", "gateway", "other"};
#define N_PLATFORM ARRAY_SIZE(platforms)
static struct label_set job_kinds = {PTHREAD_MUTEX_INITIALIZER, 0, {0}};
static atomic_ullong job_runs[METRICS_MAX_LABELS][N_OUTCOME];
static atomic_ullong job_retries[METRICS_MAX_LABELS];
static atomic_ullong confirmation_counts[ARRAY_SIZE(confirmations)];
static atomic_long jobs_by_state[4];
static _Atomic double jobs_oldest_due;
#define LATENCY_H {.bounds = latency_bounds, .n_bounds = ARRAY_SIZE(latency_bounds)}
static struct histogram query_latency[N_PLATFORM] = {LATENCY_H, LATENCY_H, LATENCY_H,
                                                     LATENCY_H};

/* Reconciliation sweeps, by app id. */
static struct label_set recon_apps = {PTHREAD_MUTEX_INITIALIZER, 0, {0}};
static atomic_llong recon_missing[METRICS_MAX_LABELS], recon_mismatch[METRICS_MAX_LABELS],
    recon_last_ok[METRICS_MAX_LABELS];

/* Find or add a label; -1 when the set is full or out of memory. */
static int label_index(struct label_set *s, const char *name)
{
    int i, n = atomic_load(&s->n);

    for (i = 0; i < n; i++)
        if (strcmp(s->names[i], name) == 0)
            return i;
    pthread_mutex_lock(&s->lock);
    n = atomic_load(&s->n);
    for (i = 0; i < n; i++)
        if (strcmp(s->names[i], name) == 0)
            goto out;
    i = -1;
    if (n < METRICS_MAX_LABELS && (s->names[n] = strdup(name)) != NULL) {
        i = n;
        atomic_store(&s->n, n + 1);
    }
out:
    pthread_mutex_unlock(&s->lock);
    return i;
}

/* Register or find a route label. */
int metrics_route(const char *route)
{
    return label_index(&routes, route);
}

/* Register or find a rejection reason label. */
int metrics_reason(const char *reason)
{
    return label_index(&reasons, reason);
}

/* Record one observation. */
static void histogram_observe(struct histogram *h, double v)
{
    unsigned i;

    for (i = 0; i < h->n_bounds && v > h->bounds[i]; i++)
        ;
    atomic_fetch_add(&h->buckets[i], 1);
    atomic_fetch_add(&h->count, 1);
    atomic_fetch_add(&h->sum_micro, (unsigned long long)(v * 1e6));
}

/* Count one answered request. */
void metrics_request(int route, int status, uint64_t duration_ns)
{
    size_t i;

    histogram_observe(&request_latency, (double)duration_ns / 1e9);
    if (route < 0 || route >= METRICS_MAX_LABELS)
        return;
    for (i = 0; i + 1 < N_STATUS && metrics_statuses[i] != status; i++)
        ;
    atomic_fetch_add(&requests[route][i], 1);
}

/* Count one rejection. */
void metrics_rejection(int reason)
{
    if (reason >= 0 && reason < METRICS_MAX_LABELS)
        atomic_fetch_add(&rejections[reason], 1);
}

/* Count one duplicate delivery. */
void metrics_duplicate(int route)
{
    if (route >= 0 && route < METRICS_MAX_LABELS)
        atomic_fetch_add(&duplicates[route], 1);
}

/* Record one transaction. */
void metrics_commit(unsigned rows, uint64_t ns, int ok)
{
    if (!ok) {
        atomic_fetch_add(&commits_failed, 1);
        return;
    }
    histogram_observe(&commit_rows, rows);
    histogram_observe(&commit_latency, (double)ns / 1e9);
}

/* Count a rejection row lost to a full queue. */
void metrics_rejection_unrecorded(void)
{
    atomic_fetch_add(&rejections_unrecorded, 1);
}

void metrics_set_queue_depth(long n)
{
    atomic_store(&queue_depth, n);
}

void metrics_set_wal_frames(long n)
{
    atomic_store(&wal_frames, n);
}

void metrics_checkpoint(int by_writer, long frames, int failed)
{
    by_writer = by_writer ? 1 : 0;
    if (frames > 0)
        atomic_fetch_add(&ckpt_frames[by_writer], (unsigned long long)frames);
    if (failed)
        atomic_fetch_add(&ckpt_failures[by_writer], 1);
}

void metrics_add_in_flight(int delta)
{
    atomic_fetch_add(&in_flight, delta);
}

void metrics_add_connections(int delta)
{
    atomic_fetch_add(&connections, delta);
}

/* Index of name in a fixed list of n, or n when absent. */
static size_t fixed_index(const char *const *list, size_t n, const char *name)
{
    size_t i;

    for (i = 0; i < n && strcmp(list[i], name) != 0; i++)
        ;
    return i;
}

void metrics_job_run(const char *kind, const char *outcome, int retry)
{
    int k = label_index(&job_kinds, kind);
    size_t o = fixed_index(job_outcomes, N_OUTCOME, outcome);

    if (k < 0 || o == N_OUTCOME)
        return;
    atomic_fetch_add(&job_runs[k][o], 1);
    if (retry)
        atomic_fetch_add(&job_retries[k], 1);
}

void metrics_confirmation(const char *result)
{
    size_t i = fixed_index(confirmations, ARRAY_SIZE(confirmations), result);

    if (i < ARRAY_SIZE(confirmations))
        atomic_fetch_add(&confirmation_counts[i], 1);
}

void metrics_query_latency(const char *platform, uint64_t ns)
{
    size_t n = strcspn(platform, "."), i;

    for (i = 0; i + 1 < N_PLATFORM; i++)
        if (strlen(platforms[i]) == n && strncmp(platforms[i], platform, n) == 0)
            break;
    histogram_observe(&query_latency[i], (double)ns / 1e9);
}

void metrics_set_jobs(const long counts[4], double oldest_due_s)
{
    int i;

    for (i = 0; i < 4; i++)
        atomic_store(&jobs_by_state[i], counts[i]);
    atomic_store(&jobs_oldest_due, oldest_due_s);
}

void metrics_reconcile(const char *app, long missing, long mismatched, int64_t finished_s)
{
    int i = label_index(&recon_apps, app);

    if (i < 0)
        return;
    atomic_fetch_add(&recon_missing[i], missing > 0 ? missing : 0);
    atomic_fetch_add(&recon_mismatch[i], mismatched > 0 ? mismatched : 0);
    if (finished_s > 0)
        atomic_store(&recon_last_ok[i], finished_s);
}

/* Append one reconciliation family: a value per app. */
static int render_by_app(struct buf *o, const char *name, const char *type, const char *help,
                         atomic_llong *values)
{
    int n = atomic_load(&recon_apps.n), r, i;

    r = buf_printf(o, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
    for (i = 0; r == 0 && i < n; i++)
        r = buf_printf(o, "%s{app=\"%s\"} %lld\n", name, recon_apps.names[i],
                       (long long)atomic_load(&values[i]));
    return r;
}

/* Append the reconciliation series (one per app that has swept or will). */
static int render_reconcile(struct buf *o)
{
    int r = render_by_app(o, "payhookd_reconcile_missing_total", "counter",
                          "Paid orders a sweep found with no callback stored (an event was "
                          "synthesised).", recon_missing);

    r = r ? r
          : render_by_app(o, "payhookd_reconcile_mismatch_total", "counter",
                          "Stored events a sweep found the platform disagreeing with (amount "
                          "or status).", recon_mismatch);
    return r ? r
             : render_by_app(o, "payhookd_reconcile_last_success_timestamp_seconds", "gauge",
                             "When the last sweep of an app finished (0: none since start).",
                             recon_last_ok);
}

/* Append one histogram in Prometheus form; labels ("platform=\"x\"") or NULL,
 * help NULL for a further series of the same family. */
static int render_histogram_l(struct buf *o, const char *name, const char *help,
                              const char *labels, struct histogram *h)
{
    unsigned long long cum = 0;
    unsigned i;
    const char *sep = labels ? "," : "";
    int r = help ? buf_printf(o, "# HELP %s %s\n# TYPE %s histogram\n", name, help, name)
                 : 0;

    labels = labels ? labels : "";
    for (i = 0; r == 0 && i <= h->n_bounds; i++) {
        cum += atomic_load(&h->buckets[i]);
        if (i < h->n_bounds)
            r = buf_printf(o, "%s_bucket{%s%sle=\"%g\"} %llu\n", name, labels, sep,
                           h->bounds[i], cum);
        else
            r = buf_printf(o, "%s_bucket{%s%sle=\"+Inf\"} %llu\n", name, labels, sep, cum);
    }
    if (r == 0 && labels[0])
        r = buf_printf(o, "%s_sum{%s} %.6f\n%s_count{%s} %llu\n", name, labels,
                       (double)atomic_load(&h->sum_micro) / 1e6, name, labels,
                       (unsigned long long)atomic_load(&h->count));
    else if (r == 0)
        r = buf_printf(o, "%s_sum %.6f\n%s_count %llu\n", name,
                       (double)atomic_load(&h->sum_micro) / 1e6, name,
                       (unsigned long long)atomic_load(&h->count));
    return r;
}

/* Append the follow-up job series. */
static int render_jobs(struct buf *o)
{
    static const char *const states[4] = {"queued", "running", "done", "failed"};
    int n = atomic_load(&job_kinds.n), r, k;
    size_t i;
    char labels[48];

    r = buf_puts(o, "# HELP payhookd_jobs Follow-up jobs by state.\n"
                    "# TYPE payhookd_jobs gauge\n");
    for (i = 0; r == 0 && i < 4; i++)
        r = buf_printf(o, "payhookd_jobs{state=\"%s\"} %ld\n", states[i],
                       atomic_load(&jobs_by_state[i]));
    r = r ? r
          : buf_printf(o,
                       "# HELP payhookd_jobs_oldest_due_seconds How long the oldest due "
                       "job has waited past its due time.\n"
                       "# TYPE payhookd_jobs_oldest_due_seconds gauge\n"
                       "payhookd_jobs_oldest_due_seconds %.3f\n"
                       "# HELP payhookd_job_runs_total Job attempts, by kind and outcome.\n"
                       "# TYPE payhookd_job_runs_total counter\n",
                       atomic_load(&jobs_oldest_due));
    for (k = 0; r == 0 && k < n; k++)
        for (i = 0; r == 0 && i < N_OUTCOME; i++)
            r = buf_printf(o, "payhookd_job_runs_total{kind=\"%s\",outcome=\"%s\"} %llu\n",
                           job_kinds.names[k], job_outcomes[i],
                           (unsigned long long)atomic_load(&job_runs[k][i]));
    r = r ? r
          : buf_puts(o, "# HELP payhookd_job_retries_total Attempts that will be retried.\n"
                        "# TYPE payhookd_job_retries_total counter\n");
    for (k = 0; r == 0 && k < n; k++)
        r = buf_printf(o, "payhookd_job_retries_total{kind=\"%s\"} %llu\n",
                       job_kinds.names[k], (unsigned long long)atomic_load(&job_retries[k]));
    r = r ? r
          : buf_puts(o, "# HELP payhookd_confirmations_total Ended follow-ups, by what "
                        "the platform said.\n"
                        "# TYPE payhookd_confirmations_total counter\n");
    for (i = 0; r == 0 && i < ARRAY_SIZE(confirmations); i++)
        r = buf_printf(o, "payhookd_confirmations_total{result=\"%s\"} %llu\n",
                       confirmations[i], (unsigned long long)atomic_load(&confirmation_counts[i]));
    for (i = 0; r == 0 && i < N_PLATFORM; i++) {
        snprintf(labels, sizeof(labels), "platform=\"%s\"", platforms[i]);
        r = render_histogram_l(o, "payhookd_query_duration_seconds",
                               i ? NULL : "Time one OpenAPI query took, by platform.",
                               labels, &query_latency[i]);
    }
    return r;
}

/* Append one histogram in Prometheus form. */
static int render_histogram(struct buf *o, const char *name, const char *help,
                            struct histogram *h)
{
    return render_histogram_l(o, name, help, NULL, h);
}

/* Append the per-route request counters. */
static int render_requests(struct buf *o)
{
    int i, n = atomic_load(&routes.n), r;
    size_t s;

    r = buf_puts(
        o, "# HELP payhookd_requests_total Requests answered, by route and status.\n"
           "# TYPE payhookd_requests_total counter\n");
    for (i = 0; r == 0 && i < n; i++) {
        for (s = 0; r == 0 && s < N_STATUS; s++) {
            unsigned long long v = atomic_load(&requests[i][s]);
            if (!v)
                continue;
            if (metrics_statuses[s])
                r = buf_printf(
                    o, "payhookd_requests_total{route=\"%s\",status=\"%d\"} %llu\n",
                    routes.names[i], metrics_statuses[s], v);
            else
                r = buf_printf(
                    o, "payhookd_requests_total{route=\"%s\",status=\"other\"} %llu\n",
                    routes.names[i], v);
        }
    }
    r = r ? r
          : buf_puts(o,
                     "# HELP payhookd_duplicates_total Redeliveries of stored events.\n"
                     "# TYPE payhookd_duplicates_total counter\n");
    for (i = 0; r == 0 && i < n; i++)
        r = buf_printf(o, "payhookd_duplicates_total{route=\"%s\"} %llu\n",
                       routes.names[i], (unsigned long long)atomic_load(&duplicates[i]));
    return r;
}

/* Append the rejection counters by reason. */
static int render_rejections(struct buf *o)
{
    int i, n = atomic_load(&reasons.n), r;

    r = buf_puts(o, "# HELP payhookd_rejections_total Requests refused, by reason.\n"
                    "# TYPE payhookd_rejections_total counter\n");
    for (i = 0; r == 0 && i < n; i++)
        r = buf_printf(o, "payhookd_rejections_total{reason=\"%s\"} %llu\n",
                       reasons.names[i], (unsigned long long)atomic_load(&rejections[i]));
    return r;
}

/* Append the WAL and checkpoint series. */
static int render_wal(struct buf *o)
{
    return buf_printf(
        o,
        "# HELP payhookd_wal_frames Frames (pages) in the WAL after the last commit.\n"
        "# TYPE payhookd_wal_frames gauge\n"
        "payhookd_wal_frames %ld\n"
        "# HELP payhookd_checkpoint_frames_total Frames copied from the WAL into the "
        "database, by who copied them.\n"
        "# TYPE payhookd_checkpoint_frames_total counter\n"
        "payhookd_checkpoint_frames_total{by=\"checkpointer\"} %llu\n"
        "payhookd_checkpoint_frames_total{by=\"writer\"} %llu\n"
        "# HELP payhookd_checkpoint_failures_total Checkpoints that failed (disk full, "
        "I/O error, a reader in the way); the WAL then grows until one succeeds.\n"
        "# TYPE payhookd_checkpoint_failures_total counter\n"
        "payhookd_checkpoint_failures_total{by=\"checkpointer\"} %llu\n"
        "payhookd_checkpoint_failures_total{by=\"writer\"} %llu\n",
        atomic_load(&wal_frames), (unsigned long long)atomic_load(&ckpt_frames[0]),
        (unsigned long long)atomic_load(&ckpt_frames[1]),
        (unsigned long long)atomic_load(&ckpt_failures[0]),
        (unsigned long long)atomic_load(&ckpt_failures[1]));
}

/* Append the gauges and plain counters. */
static int render_scalars(struct buf *o)
{
    return render_wal(o) < 0 ? -ENOMEM : buf_printf(
        o,
        "# HELP payhookd_commit_failures_total Transactions that failed to commit.\n"
        "# TYPE payhookd_commit_failures_total counter\n"
        "payhookd_commit_failures_total %llu\n"
        "# HELP payhookd_rejections_unrecorded_total Rejections not stored (queue "
        "full).\n"
        "# TYPE payhookd_rejections_unrecorded_total counter\n"
        "payhookd_rejections_unrecorded_total %llu\n"
        "# HELP payhookd_write_queue_depth Writes waiting for the store.\n"
        "# TYPE payhookd_write_queue_depth gauge\n"
        "payhookd_write_queue_depth %ld\n"
        "# HELP payhookd_requests_in_flight Requests being processed.\n"
        "# TYPE payhookd_requests_in_flight gauge\n"
        "payhookd_requests_in_flight %ld\n"
        "# HELP payhookd_connections Open client connections.\n"
        "# TYPE payhookd_connections gauge\n"
        "payhookd_connections %ld\n",
        (unsigned long long)atomic_load(&commits_failed),
        (unsigned long long)atomic_load(&rejections_unrecorded),
        atomic_load(&queue_depth), atomic_load(&in_flight), atomic_load(&connections));
}

/* Append the whole exposition. */
int metrics_render(struct buf *o)
{
    int r = render_requests(o);

    r = r ? r : render_rejections(o);
    r = r ? r : render_scalars(o);
    r = r ? r : render_jobs(o);
    r = r ? r : render_reconcile(o);
    r = r ? r
          : render_histogram(o, "payhookd_commit_batch_rows",
                             "Rows committed per transaction.", &commit_rows);
    r = r ? r
          : render_histogram(o, "payhookd_commit_duration_seconds",
                             "Time to write and commit one transaction.",
                             &commit_latency);
    r = r ? r
          : render_histogram(o, "payhookd_request_duration_seconds",
                             "Time from the request's arrival to its answer.",
                             &request_latency);
    return r;
}
