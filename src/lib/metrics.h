/*
 * metrics.h: process-wide counters and histograms, rendered as Prometheus
 * text for GET /metrics. Every function is thread-safe and lock-free on the
 * hot path (labels are registered once and then indexed).
 */
#ifndef PAYHOOKD_METRICS_H
#define PAYHOOKD_METRICS_H

#include <stdint.h>

#include "lib/util.h"

#define METRICS_MAX_LABELS 128

/* Index of a route label ("/baidu/tp/events", "unmatched"), registered on
 * first use; -1 when the table is full (the request is then not counted). */
int metrics_route(const char *route);

/* Index of a rejection reason label ("bad_signature", ...); -1 when full. */
int metrics_reason(const char *reason);

/* One answered request on a route with its HTTP status. */
void metrics_request(int route, int status, uint64_t duration_ns);

/* One rejected request (any status >= 400 decided by payhookd). */
void metrics_rejection(int reason);

/* One redelivery of an event already stored. */
void metrics_duplicate(int route);

/* One committed (or failed) transaction of `rows` rows taking ns. */
void metrics_commit(unsigned rows, uint64_t ns, int ok);

/* Rejection rows dropped because the write queue was full. */
void metrics_rejection_unrecorded(void);

/* Gauges. */
void metrics_set_queue_depth(long n);
/* The WAL's length in frames after the last commit. */
void metrics_set_wal_frames(long n);
/* A checkpoint by the checkpointer thread (by_writer 0) or the writer (1):
 * frames copied into the database, and whether it failed. */
void metrics_checkpoint(int by_writer, long frames, int failed);
void metrics_add_in_flight(int delta);
void metrics_add_connections(int delta);

/* Follow-up jobs and hook deliveries: one attempt of a job kind ended with
 * outcome (confirmed, mismatch, unknown_order, pending, error, delivered,
 * gone); retry when it will run again. */
void metrics_job_run(const char *kind, const char *outcome, int retry);
/* A job ended: its event's confirmation (confirmed, mismatch, unconfirmed). */
void metrics_confirmation(const char *result);
/* One query's duration, by platform (the job's lane up to its first dot). */
void metrics_query_latency(const char *platform, uint64_t ns);
/* Jobs by state (queued, running, done, failed) and the oldest due job's age. */
/* A sweep page's findings for app; finished_s > 0: its sweep ended then. */
void metrics_reconcile(const char *app, long missing, long mismatched, int64_t finished_s);

void metrics_set_jobs(const long counts[4], double oldest_due_s);

/* Append the Prometheus text exposition. 0 or -ENOMEM. */
int metrics_render(struct buf *out);

#endif
