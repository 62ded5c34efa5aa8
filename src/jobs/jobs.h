/*
 * jobs.h: the follow-up job scheduler. A dispatcher thread reads due jobs
 * per lane (platform) from the store, claims as many as the lane's rate
 * (token bucket) and concurrency caps and the idle workers allow -- the
 * claim is committed and durable before any call -- and hands them to a
 * pool of worker threads. Without a rate cap a lane holds twice the claims
 * of the calls it may run, so the next claims commit while calls run; the
 * concurrency caps are then checked as each call starts. Each worker makes its query with its own libcurl
 * handle, holding no store connection, and records the answer through the
 * store's one writer: confirmed / mismatch (done), or a retry after an
 * exponential back-off with full jitter, or failed after max_attempts.
 *
 * Claims live in this process: the store's lock file guarantees one
 * payhookd per store, so a job left `running` can only be one whose
 * process died, and startup returns them all to the queue (their attempt
 * stays counted). lease_until records the claim's deadline for operators.
 */
#ifndef PAYHOOKD_JOBS_H
#define PAYHOOKD_JOBS_H

#include <stddef.h>

#include "openapi/query.h"
#include "runtime.h"
#include "store/store.h"

struct jobs;

/* Recover jobs left running, then start the dispatcher and the workers with
 * the current runtime's [openapi] settings. 0 or -errno with err. */
int jobs_start(struct store *s, struct runtime_cell *rt, struct jobs **out, char *err,
               size_t errlen);

/* Apply the current runtime's [openapi] settings (after a reload): worker
 * count, caps, back-off; no job is lost or run twice. */
void jobs_reconfigure(struct jobs *j);

/* Stop: no new claims; running calls get until their timeout to finish and
 * record; claimed jobs not yet started go back to the queue; returns once
 * every result is committed (or refused by a stopping store). NULL-safe.
 * The store may still run; jobs_free after it is closed (a commit's wake-up
 * may be on its way). */
void jobs_stop(struct jobs *j);
void jobs_free(struct jobs *j);

/* Look for due jobs now (an operator queued some). NULL-safe. */
void jobs_poke(struct jobs *j);

/* Enable hook NAME again after a 410 Gone (recorded in the store, waits for
 * the commit): 1 when it was disabled, 0 when it was not, -errno. */
int jobs_hook_enable(struct jobs *j, const char *hook);

/* The query for a job kind, and the lane it runs in; NULL when unknown. */
query_fn jobs_query_for(const char *kind);
/* Whether a job kind's answer confirms its event (a token fetch does not). */
int jobs_kind_confirms(const char *kind);

#endif
