/*
 * metrics.c: counters and histograms in atomics, Prometheus text output.
 */
#include "lib/metrics.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
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

/* Append one histogram in Prometheus form. */
static int render_histogram(struct buf *o, const char *name, const char *help,
                            struct histogram *h)
{
    unsigned long long cum = 0;
    unsigned i;
    int r = buf_printf(o, "# HELP %s %s\n# TYPE %s histogram\n", name, help, name);

    for (i = 0; r == 0 && i <= h->n_bounds; i++) {
        cum += atomic_load(&h->buckets[i]);
        if (i < h->n_bounds)
            r = buf_printf(o, "%s_bucket{le=\"%g\"} %llu\n", name, h->bounds[i], cum);
        else
            r = buf_printf(o, "%s_bucket{le=\"+Inf\"} %llu\n", name, cum);
    }
    if (r == 0)
        r = buf_printf(o, "%s_sum %.6f\n%s_count %llu\n", name,
                       (double)atomic_load(&h->sum_micro) / 1e6, name,
                       (unsigned long long)atomic_load(&h->count));
    return r;
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
