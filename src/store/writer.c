/*
 * writer.c: the one thread that writes to the store, with group commit.
 *
 * Every write goes through one queue to this thread, which takes everything
 * waiting (up to batch_max) and writes it in one transaction (a savepoint
 * per item only when one fails). With synchronous = full the syncer thread
 * then fdatasyncs the WAL, and only then is each item's completion callback
 * called (on the syncer thread: a completion must never wait on the store).
 * So an answer can never go out before its row is durable, and under load
 * many requests share one fsync. The writer commits once the syncer is idle:
 * one transaction per fdatasync.
 *
 * Rejected requests have a queue of their own, small and dropping when full:
 * they are written only in the room a batch of events leaves, so a flood of
 * junk never delays, nor takes the queue room of, a genuine callback.
 */
#include "store/store_int.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "lib/metrics.h"
#include "lib/util.h"

enum {
    TX_BEGIN,
    TX_COMMIT,
    TX_ROLLBACK,
    TX_SAVEPOINT,
    TX_RELEASE,
    TX_ROLLBACK_TO,
    TX_PROBE,
    TX__COUNT
};

static const char *const tx_sql[TX__COUNT] = {
    [TX_BEGIN] = "BEGIN IMMEDIATE",
    [TX_COMMIT] = "COMMIT",
    [TX_ROLLBACK] = "ROLLBACK",
    [TX_SAVEPOINT] = "SAVEPOINT item",
    [TX_RELEASE] = "RELEASE item",
    [TX_ROLLBACK_TO] = "ROLLBACK TO item",
    [TX_PROBE] = ("INSERT INTO meta (key, value) VALUES ('last_probe', ?1)"
                  " ON CONFLICT (key) DO UPDATE SET value = excluded.value"),
};

const struct store_table store_tx_table = {"transactions", tx_sql, TX__COUNT};

/* Run transaction-control statement i. */
static int store_tx_run(struct store *s, int i)
{
    return store_run(STORE_ST(s, TBL_TX, i));
}

/* ---- the queues ---------------------------------------------------------- */

/* Append a request to its queue and wake the writer; -EAGAIN when that
 * queue is full (events: queue_max; rejections: rejection_queue_max;
 * operations are never refused for room) or the store is stopping. */
static int store_enqueue(struct store *s, struct store_req *q)
{
    struct store_req **head = q->kind == REQ_REJECTION ? &s->rhead : &s->head,
                     **tail = q->kind == REQ_REJECTION ? &s->rtail : &s->tail;
    int r = 0;

    pthread_mutex_lock(&s->lock);
    if (s->stopping || (q->kind == REQ_EVENT && s->depth >= (long)s->o.queue_max) ||
        (q->kind == REQ_REJECTION && s->rdepth >= (long)s->o.rejection_queue_max)) {
        r = -EAGAIN;
    } else {
        if (*tail)
            (*tail)->next = q;
        else
            *head = q;
        *tail = q;
        if (q->kind == REQ_EVENT) {
            s->depth++;
            metrics_set_queue_depth(s->depth);
        } else if (q->kind == REQ_REJECTION) {
            s->rdepth++;
        }
        pthread_cond_signal(&s->cond);
    }
    pthread_mutex_unlock(&s->lock);
    return r;
}

/* Queue an event for the next transaction. */
int store_submit(struct store *s, struct store_event *ev, store_done_fn done, void *data)
{
    struct store_req *q = calloc(1, sizeof(*q));
    int r;

    if (!q)
        return -ENOMEM;
    q->kind = REQ_EVENT;
    util_iso8601_now(q->received_at);
    q->ev = ev;
    q->done = done;
    q->data = data;
    r = store_enqueue(s, q);
    if (r < 0)
        free(q);
    return r;
}

/* Queue an operation. */
int store_submit_op(struct store *s, store_write_fn write, store_done_fn done, void *data)
{
    struct store_req *q = calloc(1, sizeof(*q));
    int r;

    if (!q)
        return -ENOMEM;
    q->kind = REQ_OP;
    util_iso8601_now(q->received_at);
    q->write = write;
    q->done = done;
    q->data = data;
    r = store_enqueue(s, q);
    if (r < 0)
        free(q);
    return r;
}

/* A caller waiting for its operation's commit. */
struct store_waiter {
    store_write_fn write;
    void *data;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    int done;
    int r;
    int wrote; /* what write() said last (a batch may be replayed) */
};

/* The waiting caller's writes. */
static int store_waiter_write(struct store_tx *tx, void *data)
{
    struct store_waiter *w = data;

    return w->wrote = w->write(tx, w->data);
}

/* Completion of store_op_wait: wake the caller. */
static void store_waiter_done(void *data, const struct store_result *res)
{
    struct store_waiter *w = data;

    pthread_mutex_lock(&w->lock);
    /* the operation's own reason (e.g. -ENOENT) when it refused itself */
    w->r = res->outcome != STORE_FAILED ? 0 : w->wrote < 0 ? w->wrote : -EIO;
    w->done = 1;
    pthread_cond_signal(&w->cond);
    pthread_mutex_unlock(&w->lock);
}

int store_op_wait(struct store *s, store_write_fn write, void *data)
{
    struct store_waiter w = {
        write, data, PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, 0, 0};
    int r = store_submit_op(s, store_waiter_write, store_waiter_done, &w);

    if (r < 0)
        return r;
    pthread_mutex_lock(&w.lock);
    while (!w.done)
        pthread_cond_wait(&w.cond, &w.lock);
    pthread_mutex_unlock(&w.lock);
    pthread_mutex_destroy(&w.lock);
    pthread_cond_destroy(&w.cond);
    return w.r;
}

int store_enqueue_rejection(struct store *s, struct store_req *q)
{
    q->kind = REQ_REJECTION;
    return store_enqueue(s, q);
}

/* Detach up to max items of one queue (lock held); the count in *n. */
static struct store_req *store_take_from(struct store_req **head, struct store_req **tail,
                                         unsigned max, unsigned *n)
{
    struct store_req *batch = *head, *q = batch;
    unsigned i = 1;

    if (!batch || !max) {
        *n = 0;
        return NULL;
    }
    while (q->next && i < max) {
        q = q->next;
        i++;
    }
    *head = q->next;
    if (!*head)
        *tail = NULL;
    q->next = NULL;
    *n = i;
    return batch;
}

/* Detach a batch (lock held): events and operations first, then rejections
 * in the room left (at most STORE_REJECTIONS_PER_BATCH). */
static struct store_req *store_take(struct store *s, unsigned *n)
{
    unsigned ne, nr, room, events = 0;
    struct store_req *batch = store_take_from(&s->head, &s->tail, s->o.batch_max, &ne),
                     *rej, *q;

    for (q = batch; q; q = q->next)
        events += q->kind == REQ_EVENT;
    s->depth -= events;
    metrics_set_queue_depth(s->depth);
    room = ne < s->o.batch_max ? s->o.batch_max - ne : 0;
    if (room > STORE_REJECTIONS_PER_BATCH)
        room = STORE_REJECTIONS_PER_BATCH;
    rej = store_take_from(&s->rhead, &s->rtail, room, &nr);
    s->rdepth -= nr;
    *n = ne + nr;
    if (!batch)
        return rej;
    for (q = batch; q->next; q = q->next)
        ;
    q->next = rej;
    return batch;
}

/* ---- writing one batch --------------------------------------------------- */

void store_fail_item(struct store_req *q, const char *why)
{
    q->res.outcome = STORE_FAILED;
    snprintf(q->error, sizeof(q->error), "%s", why);
    q->res.error = q->error;
}

/* Write one item of any kind: 0 or -errno. */
static int store_write_one(struct store *s, struct store_req *q)
{
    struct store_tx tx = {s, q->received_at};
    int r;

    switch (q->kind) {
    case REQ_EVENT:
        return store_write_event(s, q);
    case REQ_REJECTION:
        return store_write_rejection(s, q);
    case REQ_OP:
        r = q->write(&tx, q->data);
        if (r == 0)
            q->res.outcome = STORE_NEW;
        return r;
    }
    return -EINVAL;
}

/* The reason of a failed write: SQLite's message for -EIO, else errno's. */
static void store_item_error(struct store *s, struct store_req *q, int r)
{
    snprintf(q->error, sizeof(q->error), "%s",
             r == -EIO ? sqlite3_errmsg(s->db) : strerror(-r));
}

/* Write one item inside its own savepoint, so a failure stays its own.
 * -EIO when the failure took the whole transaction with it: SQLite rolls
 * back the transaction by itself after some errors (SQLITE_NOMEM, _FULL,
 * _IOERR in a statement without a statement journal), and the next
 * SAVEPOINT would then open a transaction of its own, committed by its
 * RELEASE: written, yet reported failed with the batch. */
static int store_write_item(struct store *s, struct store_req *q)
{
    int r = 0;

    if (store_tx_run(s, TX_SAVEPOINT) != SQLITE_DONE) {
        snprintf(q->error, sizeof(q->error), "%s", sqlite3_errmsg(s->db));
        goto out;
    }
    r = store_write_one(s, q);
    if (r == 0) {
        if (store_tx_run(s, TX_RELEASE) == SQLITE_DONE)
            return 0;
        r = -EIO;
    }
    /* The reason first: rolling back resets SQLite's error message. */
    store_item_error(s, q, r);
    r = store_tx_run(s, TX_ROLLBACK_TO) == SQLITE_DONE ? 0 : -EIO; /* else its writes stay */
    store_tx_run(s, TX_RELEASE);
out:
    q->res.outcome = STORE_FAILED;
    q->res.error = q->error;
    return r < 0 || sqlite3_get_autocommit(s->db) ? -EIO : 0;
}

/* Forget what a write attempt left in an item (before it is written again). */
static void store_reset_item(struct store_req *q)
{
    free(q->answer_copy);
    q->answer_copy = NULL;
    memset(&q->res, 0, sizeof(q->res));
    q->error[0] = '\0';
}

/*
 * Write every item of the batch in the open transaction. The common case
 * has no failure, so items are first written without savepoints; if one
 * fails, the transaction is rolled back and written again with a savepoint
 * per item, the failed item left out with its reason: each failure stays
 * its own, and the others commit. Their in-transaction callbacks run again
 * on the state without the failed item, so every decision replayed is made
 * on what is committed with it. Returns 0, or -EIO (begin failed, or SQLite
 * rolled the transaction back by itself: then nothing more is written and
 * the whole batch fails, so no item is reported failed yet committed).
 */
static int store_write_all(struct store *s, struct store_req *batch)
{
    struct store_req *q, *bad = NULL;
    int r;

    for (q = batch; q && !bad; q = q->next) {
        if ((r = store_write_one(s, q)) < 0) {
            store_item_error(s, q, r);
            bad = q;
        }
    }
    if (!bad)
        return 0;
    store_tx_run(s, TX_ROLLBACK);
    if (store_tx_run(s, TX_BEGIN) != SQLITE_DONE)
        return -EIO;
    for (q = batch; q; q = q->next) {
        if (q == bad) {
            q->res.outcome = STORE_FAILED;
            q->res.error = q->error;
            continue;
        }
        store_reset_item(q);
        if (store_write_item(s, q) < 0) {
            snprintf(s->last_error, sizeof(s->last_error),
                     "the transaction was rolled back by SQLite: %.200s", q->error);
            return -EIO;
        }
    }
    return 0;
}

/* Write and commit a batch; on failure every item fails. Returns 1 if committed. */
static int store_write_batch(struct store *s, struct store_req *batch)
{
    struct store_req *q;
    int ok;

    s->last_error[0] = '\0';
    ok = store_tx_run(s, TX_BEGIN) == SQLITE_DONE && store_write_all(s, batch) == 0;
    if (ok) {
        ok = store_tx_run(s, TX_COMMIT) == SQLITE_DONE;
        if (!ok) {
            snprintf(s->last_error, sizeof(s->last_error), "commit failed: %s",
                     sqlite3_errmsg(s->db));
            store_tx_run(s, TX_ROLLBACK);
        }
    } else {
        if (!s->last_error[0])
            snprintf(s->last_error, sizeof(s->last_error), "cannot begin a transaction: %s",
                     sqlite3_errmsg(s->db));
        /* nothing of a failed batch stays open for the next BEGIN */
        if (!sqlite3_get_autocommit(s->db))
            store_tx_run(s, TX_ROLLBACK);
    }
    for (q = batch; !ok && q; q = q->next)
        store_fail_item(q, s->last_error);
    return ok;
}

/* Tell each item's owner how it went, then free the items; then tell the
 * job scheduler when the batch made follow-up jobs (they are durable now). */
static void store_finish_batch(struct store *s, struct store_req *batch)
{
    struct store_req *q, *next;
    int jobs = 0;

    for (q = batch; q; q = next) {
        next = q->next;
        /* before done: the event's memory is its owner's after that */
        if (q->kind == REQ_EVENT && q->res.outcome == STORE_NEW &&
            (q->ev->followup.kind || q->ev->n_hooks))
            jobs = 1;
        if (q->kind != REQ_REJECTION && q->done)
            q->done(q->data, &q->res);
        free(q->answer_copy);
        free(q);
    }
    if (jobs && s->on_jobs)
        s->on_jobs(s->on_jobs_data);
}

void store_batch_done(struct store *s, struct store_req *items, unsigned n, uint64_t t0,
                      int ok)
{
    metrics_commit(n, util_now_ns() - t0, ok);
    store_finish_batch(s, items);
}

void store_on_jobs(struct store *s, void (*fn)(void *), void *data)
{
    s->on_jobs_data = data;
    s->on_jobs = fn;
}

/* Write, commit and (through the syncer, when full) answer one batch. */
static void store_commit_batch(struct store *s, struct store_req *batch, unsigned n)
{
    uint64_t t0 = util_now_ns();
    int ok;

    if (store_broken(s)) {
        for (struct store_req *q = batch; q; q = q->next)
            store_fail_item(q, s->broken_why);
        store_batch_done(s, batch, n, t0, 0);
        return;
    }
    ok = store_write_batch(s, batch);

    atomic_store(&s->ready, ok);
    if (ok && s->syncer_started && store_sync_push(s, batch, n, t0) == 0)
        return;
    if (ok && s->syncer_started) {
        /* No memory for the hand-over: make it durable on this thread. */
        char why[160];
        int r = store_sync_wal_once(s->wal_path);
        snprintf(why, sizeof(why), "committed but not made durable (fdatasync: %s)",
                 strerror(-r));
        if (r < 0)
            store_break(s, -r);
        for (struct store_req *q = batch; r < 0 && q; q = q->next)
            store_fail_item(q, why);
        ok = r == 0;
    }
    store_batch_done(s, batch, n, t0, ok);
}

/* While the store is failing and idle, try a tiny write to notice recovery. */
static void store_probe(struct store *s)
{
    sqlite3_stmt *st = STORE_ST(s, TBL_TX, TX_PROBE);
    char now[32];
    int ok;

    if (atomic_load(&s->broken))
        return; /* nothing written from now on can be trusted */
    util_iso8601_now(now);
    ok = store_tx_run(s, TX_BEGIN) == SQLITE_DONE;
    if (ok) {
        sqlite3_bind_text(st, 1, now, -1, SQLITE_TRANSIENT);
        ok = store_run(st) == SQLITE_DONE && store_tx_run(s, TX_COMMIT) == SQLITE_DONE;
        if (!ok)
            store_tx_run(s, TX_ROLLBACK);
    }
    if (ok && s->syncer_started)
        ok = store_sync_wal_once(s->wal_path) == 0;
    atomic_store(&s->ready, ok);
}

/* The writer thread: wait, take a batch, commit, answer; until stopped and drained. */
void *store_writer(void *arg)
{
    struct store *s = arg;
    struct store_req *batch;
    struct timespec until;
    unsigned n;

    pthread_mutex_lock(&s->lock);
    for (;;) {
        atomic_store(&s->heartbeat, util_now_ns());
        if (!s->head && !s->rhead) {
            if (s->stopping)
                break;
            clock_gettime(CLOCK_REALTIME, &until);
            until.tv_sec += 1;
            if (pthread_cond_timedwait(&s->cond, &s->lock, &until) == ETIMEDOUT &&
                !atomic_load(&s->ready)) {
                pthread_mutex_unlock(&s->lock);
                store_probe(s);
                pthread_mutex_lock(&s->lock);
            }
            continue;
        }
        /* Submitters must not wait for the disk: the queue is free meanwhile. */
        pthread_mutex_unlock(&s->lock);
        store_wait_syncer(s);
        pthread_mutex_lock(&s->lock);
        batch = store_take(s, &n);
        pthread_mutex_unlock(&s->lock);
        store_commit_batch(s, batch, n);
        store_checkpoint_due(s);
        pthread_mutex_lock(&s->lock);
    }
    pthread_mutex_unlock(&s->lock);
    return NULL;
}
