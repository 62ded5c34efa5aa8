/*
 * store.h: the durable event store. One writer thread owns the SQLite
 * connection and commits queued writes in batches (group commit); a caller
 * learns the outcome through its completion callback, which runs on the
 * writer thread only after the transaction holding its row has committed
 * (or failed). All SQL lives here and in sql/.
 */
#ifndef PAYHOOKD_STORE_H
#define PAYHOOKD_STORE_H

#include <stddef.h>
#include <stdint.h>

struct store;
struct store_tx; /* the open transaction, handed to in_tx callbacks */

/* One embedded migration (generated from sql/ by src/embed-sql.sh). */
struct store_migration {
    int version;
    const char *name;
    const char *sql;
};
extern const struct store_migration store_migrations[];

struct store_options {
    const char *path;
    int synchronous_full;
    unsigned batch_max;
    unsigned queue_max;
    unsigned rejections_keep;
    unsigned rejection_queue_max; /* rejections waiting to be written; 0: 256 */
};

/* A follow-up job created with an event, in its transaction (kind NULL: none). */
struct store_followup {
    const char *kind;  /* what to ask the platform, e.g. "baidu.find_order" */
    const char *lane;  /* whose caps apply: "baidu", "alipay", "gateway.NAME" */
    int confirms;      /* its answer is the event's confirmation */
    unsigned delay_s;  /* seconds before the first attempt */
    /* a hook delivery: the confirmation its envelope states ("pending",
     * "none", "confirmed"), fixed with the event's deliveries at creation */
    const char *confirmation;
    /* when set: created only when `tokens` holds a row for this app (the
     * query's token comes from the store, not the config) */
    const char *token_app;
    /* at most one queued per (app, kind): one already queued is brought
     * forward to this one's due time instead (pushes that ask again) */
    int once_per_app;
};

/* What a provider asks to store. Strings may be NULL where a column is
 * nullable. The store copies nothing: the memory must stay valid until the
 * completion callback has run. */
struct store_event {
    const char *provider;
    const char *kind;
    const char *app;
    const char *dedupe_key;
    int verified;
    const char *order_id;
    const char *merchant_order_id;
    int has_amount;
    int64_t amount_fen; /* the order amount */
    int has_refund;
    int64_t refund_fen; /* a refund's amount */
    int has_refund_total;
    int64_t refund_total_fen; /* the trade's total refunded after it (Alipay) */
    const char *status;
    const char *remote_addr;
    const char *fields; /* JSON text */
    const void *body;
    size_t body_len;
    struct store_followup followup;
    /* the deliveries to when = received hooks, created with the event */
    const struct store_followup *hooks;
    size_t n_hooks;
    /* further jobs the event causes (beside followup), created with it */
    const struct store_followup *more;
    size_t n_more;
    const char *answer; /* the answer to send and store (in_tx may replace it) */
    const char *note;   /* set by in_tx: a decision's reason, logged with the event */
    /*
     * Called inside the transaction when the event is new (not for a
     * redelivery), before the row is inserted: decides the answer from the
     * store's state, writes companion rows. Returns 0, 1 to answer
     * ev->answer WITHOUT storing the event (an undecided question the
     * platform asks again: the next ask must decide afresh, not replay),
     * or -errno (the event then fails alone, its savepoint rolled back).
     * May be NULL.
     */
    int (*in_tx)(struct store_tx *tx, struct store_event *ev, void *data);
    void *in_tx_data;
};

enum store_outcome {
    STORE_NEW,       /* committed as a new row */
    STORE_DUPLICATE, /* a redelivery: deliveries incremented, first answer returned */
    STORE_FAILED,    /* not committed: nothing may be acknowledged */
    STORE_UNSTORED,  /* in_tx answered without storing (see in_tx) */
};

struct store_result {
    enum store_outcome outcome;
    int64_t id;
    int64_t deliveries;
    const char *answer; /* valid only during the callback */
    const char *error;  /* for STORE_FAILED: why */
};

typedef void (*store_done_fn)(void *data, const struct store_result *res);

/* An operation's writes, run on the writer thread inside the transaction:
 * 0, or -errno (the operation then fails alone, its writes rolled back). */
typedef int (*store_write_fn)(struct store_tx *tx, void *data);

/* A rejected request, recorded best-effort (copied; never waits). */
struct store_rejection {
    const char *route;
    const char *remote_addr;
    int status;
    const char *reason;
    const char *detail;
    const void *body_prefix;
    size_t body_prefix_len;
};

/*
 * Open (creating if needed) and migrate the store, then start the writer.
 * Returns 0, or -errno with the reason in err (e.g. a schema newer than this
 * binary, an unwritable directory).
 */
int store_open(const struct store_options *o, struct store **out, char *err,
               size_t errlen);

/*
 * Queue an event. done(data, result) is called exactly once, on the writer
 * thread, after the commit (or its failure). Returns 0, or -EAGAIN when the
 * queue is full or the store is stopping, -ENOMEM when there is no memory
 * for the request (done is then NOT called).
 */
int store_submit(struct store *s, struct store_event *ev, store_done_fn done, void *data);

/*
 * Queue an operation: the daemon's own durable writes (job state, hook
 * deliveries, tokens) go through the same writer and group commit as the
 * events, so there is one writing connection. write(tx, data) runs in the
 * transaction; done(data, result) is called exactly once after the commit
 * (outcome STORE_NEW) or its failure (STORE_FAILED). Operations are not
 * counted against queue_max: their number is bounded by their producers.
 * Returns 0, or -EAGAIN when the store is stopping (done is then NOT called).
 */
int store_submit_op(struct store *s, store_write_fn write, store_done_fn done,
                    void *data);

/* Record a rejection in its own small queue, never ahead of an event:
 * dropped (and counted) when that queue is full. */
void store_reject(struct store *s, const struct store_rejection *r);

/* What store_prune did. */
struct store_pruned {
    long events;  /* events compacted: body dropped, pruned_at set */
    long results; /* answer bodies of query and delivery attempts dropped (the rows stay) */
};

/* Compact the events received before `before` (ISO-8601 UTC) that have
 * nothing left to happen (no job or delivery queued or running, no dead
 * delivery), in batches on the writer. 0, or -errno (batches done stay). */
int store_prune(struct store *s, const char *before, struct store_pruned *out);

/* A new rejections_keep (a reload), set on the writer, which alone trims:
 * the next rejection trims to it. 0, or -errno. */
int store_set_rejections_keep(struct store *s, unsigned keep);

/* 1 when the writer is alive and the last transaction (or probe) committed. */
int store_ready(struct store *s);

/* Why the store can no longer acknowledge anything, or NULL: a fdatasync
 * of the WAL failed, so rows it committed may not be on disk however they
 * read now. Every write fails from then on; only a restart, which rereads
 * the store from disk, recovers. */
const char *store_broken(struct store *s);

/* Writes waiting in the queue. */
long store_queue_depth(struct store *s);

/* Nanosecond monotonic time of the writer's last loop (for the watchdog). */
uint64_t store_heartbeat(struct store *s);

/* Commit everything queued and stop the writer: afterwards store_submit
 * returns -EAGAIN and store_ready 0. NULL-safe; idempotent. */
void store_stop(struct store *s);

/* Stop (if not yet), close; NULL-safe; returns NULL. */
struct store *store_close(struct store *s);

/* ---- for in_tx callbacks (writer thread, inside the transaction) ------ */

/* Keep ticket as the latest TP ticket unless a newer one is stored: 1 it is
 * the latest now, 0 a newer one is kept, -EIO. */
int store_tx_set_ticket(struct store_tx *tx, const char *ticket, int64_t create_time);
/* 1 when `app` has a token valid for at least margin_s more seconds (or with
 * no known expiry), 0 when not, -EIO. */
int store_tx_token_fresh(struct store_tx *tx, const char *app, int64_t margin_s);
/* Store app's token (expires_in seconds from now; <= 0: unknown); a NULL
 * refresh_token keeps the stored one. 0 or -EIO. */
int store_tx_set_token(struct store_tx *tx, const char *app, const char *access_token,
                       int64_t expires_in, const char *refresh_token);

/* A job for app caused by no event (a result's next step), at most one
 * queued per (app, kind): an existing one is brought forward to f's due
 * time if that is earlier. */
int store_tx_job_schedule(struct store_tx *tx, const char *app, const struct store_followup *f);
/* The same as one operation on the writer, due now (an operator's ask);
 * -ENOKEY when app has no row in tokens (the job would have nothing to ask
 * with). 0 or -errno. */
int store_job_schedule_now(struct store *s, const char *app, const struct store_followup *f);
/* 1 when a job of app and kind is running, 0 not, -EIO. */
int store_tx_job_running(struct store_tx *tx, const char *app, const char *kind);
/* Fail app's queued jobs of lane (its queries, its token jobs; in a token
 * lane, '*.tokens', also the running ones: their answers then write
 * nothing) with `why` (an app that withdrew its authorisation). 0 or -EIO. */
int store_tx_jobs_cancel(struct store_tx *tx, const char *app, const char *lane,
                         const char *why);
/* 1 when app has a token row (whatever its expiry), 0 not, -EIO. */
int store_tx_token_exists(struct store_tx *tx, const char *app);
/* The platform refused app's access_token (invalid or expired): it is
 * marked expired now, unless a newer one replaced it. 1 marked, 0 not, -EIO. */
int store_tx_token_expire(struct store_tx *tx, const char *app, const char *access_token);
/* Delete app's tokens. 0 or -EIO. */
int store_tx_token_delete(struct store_tx *tx, const char *app);

/* A TP app's keys from getbindservice (app_keys). */
struct store_app_keys {
    const char *app_id, *deal_id, *pm_app_key, *platform_public_key;
};
/* Store (or replace, whole) an app's learned keys. 0 or -EIO. */
int store_tx_app_keys_set(struct store_tx *tx, const struct store_app_keys *k);
/* Every learned app's keys, oldest first, to fn (a negative return stops
 * and is returned). 0, or -EIO. Reader connection: not in a transaction. */
int store_app_keys_each(struct store *s, int (*fn)(void *ctx, const struct store_app_keys *k),
                        void *ctx);

/* payMoney (text) of the verified paid (status 2) notification of a Baidu
 * order: 1 found, 0 none, -ENOSPC (longer than len: never cut), -EIO. */
int store_tx_baidu_paid(struct store_tx *tx, const char *order_id, char *pay_money,
                        size_t len);

/* Sum of the refunds approved for an order and not reported failed. */
int store_tx_baidu_approved(struct store_tx *tx, const char *order_id, int64_t *sum);

/* Record a refund audit decision (audit_status 1 approve, 2 reject). */
int store_tx_baidu_decide(struct store_tx *tx, const char *batch, const char *order_id,
                          int audit_status, int64_t refund_fen, const char *reason);

/* The refundPayMoney approved for a refund batch: 1 found, 0 none, -EIO. */
int store_tx_baidu_decided(struct store_tx *tx, const char *batch, int64_t *refund_fen);

/* An Alipay refund of trade order_id that brings the refunded total to
 * total: its own amount into *fen (total minus the highest total stored
 * below it; 0 when this total was told already). When it was told late,
 * the next refund above it is corrected and note says so: 1. 0, or -EIO. */
int store_tx_alipay_refund(struct store_tx *tx, const char *app, const char *order_id,
                           int64_t total, int64_t *fen, char *note, size_t len);

/* Record the outcome (1 success, 2 failure) a refund notification reports. */
int store_tx_baidu_refund_outcome(struct store_tx *tx, const char *batch,
                                  int refund_status);

/* ---- read-only lookups (any thread; a small pool of read connections) -- */

/* The dealId of the verified pay notification of a Baidu order:
 * 1 found (copied into buf), 0 none, -ENOSPC (never cut), -EIO. */
int store_baidu_order_deal(struct store *s, const char *order_id, char *buf, size_t len);

/* Baidu events stored before events.app became the app id carry the dealId
 * there: relabel them from the configuration, once (the store remembers it
 * was done). deal[i] maps to app[i]. Runs through the writer and waits.
 * 0 when done or nothing to do, -errno. */
int store_relabel_baidu_apps(struct store *s, const char *const *deal,
                             const char *const *app, size_t n);

/* ---- follow-up jobs (jobs.c) -------------------------------------------- */

/* A lane with queued jobs and the earliest due time among them. */
struct store_lane {
    char lane[64];
    char next_due[32];
};

/* A job taken from the queue, with what its run needs of its event. */
struct store_job {
    int64_t id, event_id;
    char kind[48], lane[64];
    unsigned attempts; /* tries started, this one included once claimed */
    int claimed;       /* set by store_jobs_claim */
    /* the event (strings malloc'd; NULL when the column is NULL) */
    char *app, *provider, *ev_kind, *order_id, *merchant_order_id, *status, *fields,
        *received_at;
    int has_amount, has_refund, has_refund_total;
    int64_t amount_fen, refund_fen, refund_total_fen;
    int verified;
    char *context; /* a hook delivery's "<confirmation> <deliveries>" */
    void *body;    /* hook deliveries only: the raw callback */
    size_t body_len;
    /* queries only, from `tokens` (wiped when freed): the app's access and
     * refresh tokens, and the TP's own token */
    char *token, *refresh_token, *tp_token;
    char *ticket; /* baidu.tp_token jobs only: the latest TP ticket */
    char *source; /* the event's source: callback or sweep */
};

/* Up to max lanes that have queued jobs: 0 and *n, or -EIO. */
int store_jobs_lanes(struct store *s, struct store_lane *out, size_t max, size_t *n);

/* Up to limit queued jobs of a lane due at `now` (ISO text), earliest first:
 * 0 with *out (free with store_jobs_free) and *n, or -errno. */
int store_jobs_due(struct store *s, const char *lane, const char *now, unsigned limit,
                   struct store_job **out, size_t *n);
void store_jobs_free(struct store_job *jobs, size_t n);
/* Free one job's strings (a job copied out of the array). */
void store_job_clear(struct store_job *j);

/* Claim jobs (queued -> running, one more attempt, leased until
 * lease_until), committed and durable before it returns, so an attempt
 * cut off by a crash is counted. Sets each job's claimed (0 when it was no
 * longer queued). 0 or -errno. */
int store_jobs_claim(struct store *s, struct store_job *jobs, size_t n,
                     const char *lease_until);

/* What one attempt ended with. */
struct store_job_result {
    int64_t job_id, event_id;
    const char *state;   /* queued (retry), done or failed */
    const char *outcome; /* done: confirmed | mismatch | ok */
    const char *due_at;  /* queued: the next attempt */
    const char *error;   /* the last error, or NULL */
    /* the query_results row */
    const char *at, *endpoint, *platform_code, *result, *detail;
    int http_status; /* 0: none, unless exit_status */
    int exit_status; /* http_status is a command hook's exit code, or -1: none */
    int64_t duration_ms;
    const void *body;
    size_t body_len;
    /* more writes of the same transaction (tokens, keys, deliveries), or NULL */
    store_write_fn also;
    void *also_data;
    /* set by the write: the job was no longer running (cancelled while its
     * call was out), so `also` did not run */
    int cancelled;
};

/* Inside a transaction (an `also` write): one more job for the event, e.g.
 * the deliveries to when = confirmed hooks. 0 or -EIO. */
int store_tx_job_create(struct store_tx *tx, int64_t event_id, const char *app,
                        const struct store_followup *f);

/* Record an attempt and the job's new state (only while it is still
 * running: a released job is not overwritten). done(r, res) after the
 * commit; r must stay valid until then. 0 or -EAGAIN (stopping). */
int store_job_finish(struct store *s, struct store_job_result *r, store_done_fn done);

/* At start: jobs left running by a process that died go back to the queue
 * (their attempt stays counted). Waits for the commit. 0 or -errno. */
int store_jobs_recover(struct store *s);

/* Put claimed jobs back in the queue, due at due_at (NULL: when they were
 * due), e.g. at shutdown those no worker started. Waits. */
int store_jobs_release(struct store *s, const int64_t *ids, size_t n, const char *due_at);

/* Put claimed jobs that no worker started back in the queue as they were
 * before the claim (the attempt it counted taken back). Waits. */
int store_jobs_unclaim(struct store *s, const int64_t *ids, size_t n);

/* Jobs by state: queued, running, done, failed. 0 or -EIO. */
int store_jobs_counts(struct store *s, long counts[4]);

/* Call fn(data) after each commit that created follow-up jobs (on the
 * syncer or writer thread: fn must not wait on the store). Set before
 * callbacks arrive. */
void store_on_jobs(struct store *s, void (*fn)(void *), void *data);

/* ---- operators' actions on deliveries (deliveries.c); each waits for its commit ---- */

/* What a replay did. */
struct store_replay {
    int64_t delivery_id;
    const char *what; /* "queued again", "already pending" or "created" */
};

/* Queue event_id's delivery to the hook of job kind "hook.NAME" again (the
 * same delivery, so the same webhook-id and body), or create it when the
 * hook never had one. 0, -ENOENT (no such event), -ESTALE (it was pruned:
 * no body to send), -EIO. */
int store_delivery_replay(struct store *s, int64_t event_id, const char *kind,
                          struct store_replay *out);

/* Queue the dead deliveries (of one hook kind, or all when kind is NULL)
 * again, their attempts from zero; *changed says how many. */
int store_deliveries_retry_dead(struct store *s, const char *kind, long *changed);

/* Record a hook as disabled (reason) or, with reason NULL, enabled. */
int store_hook_set_disabled(struct store *s, const char *hook, const char *reason);

/* Call each(data, NAME) for every disabled hook (a reader connection). */
int store_hooks_disabled(struct store *s, void (*each)(void *data, const char *hook),
                         void *data);

/* A meta value into buf ("" when absent). 0 or -EIO. Reader connection. */
int store_get_meta(struct store *s, const char *key, char *buf, size_t len);

/* Set a meta value the views read (e.g. unconfirmed_after). Waits. */
int store_set_meta(struct store *s, const char *key, const char *value);

/* ---- reconciliation sweeps (reconcile.c) -------------------------------- */

enum store_finding { FINDING_MATCHED, FINDING_MISSING, FINDING_MISMATCH, FINDING_UNKNOWN };

/* One order of a platform's order list, normalised by its page client. */
struct store_sweep_record {
    const char *order_id, *merchant_order_id;
    int has_amount;
    int64_t amount_fen;
    const char *status; /* the platform's status as it wrote it */
    int paid;           /* it was paid (whatever happened after) */
    /* the event its callback would have stored (dedupe key, answer, hooks),
     * synthesised when no stored event has its ids; NULL when not paid */
    struct store_event *ev;
};

/* What a stored event says of an order (for the judge). */
struct store_sweep_stored {
    int64_t id;
    int has_amount;
    int64_t amount_fen;
    const char *status, *source;
};

/* A platform's rule: does a stored event agree with the platform's record?
 * FINDING_MATCHED or FINDING_MISMATCH, with the reason in detail. */
typedef enum store_finding (*store_sweep_judge)(const struct store_sweep_record *r,
                                                const struct store_sweep_stored *e,
                                                char *detail, size_t len);

/* One page of a sweep of (app, day), committed with its findings. */
struct store_sweep_page {
    const char *app, *day;
    const char *provider, *kind; /* of the events it compares: "baidu", "pay_notify" */
    const char *paid_status;     /* a stored paid event's status ("2"), for unknown */
    const char *day_from, *day_to; /* the day in UTC ISO text, [from, to) */
    int page;                    /* recorded only while next_page is this page */
    int last;                    /* no page after it: the day's findings end */
    int give_up;                 /* the day is past give_up_days: open becomes given_up */
    struct store_sweep_record *recs;
    size_t n;
    store_sweep_judge judge;
    /* out, after the commit */
    long missing, mismatched, unknown; /* what this page found */
    int stale;                          /* the page was recorded already: nothing done */
    char state[16];                     /* the day's state after it */
};

/* Start a sweep of (app, day): its row reset to running at page 1, the old
 * findings dropped, a job of kind on lane queued now with the day as its
 * context -- unless one is queued or running already (then *job_id is
 * that one's). Waits for the commit. 0 or -errno. */
int store_reconcile_begin(struct store *s, const char *app, const char *day,
                          const char *provider, const char *kind, const char *lane,
                          int64_t *job_id);

/* The page a sweep fetches next and the day's state: 1 found, 0 no row,
 * -EIO. Reader connection. */
int store_reconcile_next(struct store *s, const char *app, const char *day, int *page,
                         char *state, size_t len);

/* Record one page through the writer and wait. 0 or -errno. */
int store_reconcile_page(struct store *s, struct store_sweep_page *p);

/* The state of the job job_id: 1 (state copied), 0 none, -EIO. */
int store_job_state(struct store *s, int64_t job_id, char *state, size_t len, char *error,
                    size_t elen);

/* Days of app that are open (swept, not reconciled) and on or after
 * since, to fn; 0 or -EIO. Reader connection. */
int store_reconcile_open_days(struct store *s, const char *app, const char *since,
                              void (*fn)(void *data, const char *day), void *data);

/* Mark app's open days before `before` given_up. Waits. 0 or -errno. */
int store_reconcile_give_up(struct store *s, const char *app, const char *before);

#endif
