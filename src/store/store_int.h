/*
 * store_int.h: what the files of the store share and nobody else sees.
 *
 * The store is one writer thread (writer.c) that commits queued writes in
 * batches, a syncer thread (sync.c) that makes each commit durable before
 * anyone is answered, a checkpointer thread (checkpoint.c), and a pool of
 * read-only connections (read.c). The SQL is split by what it is about:
 * each file that writes has ONE statement table (a `struct store_table`),
 * prepared once on the writer's connection and indexed by that file's enum.
 */
#ifndef PAYHOOKD_STORE_INT_H
#define PAYHOOKD_STORE_INT_H

#include <pthread.h>
#include <sqlite3.h>
#include <stdatomic.h>
#include <stdint.h>

#include "store/store.h"

/* A file's statements: SQL text indexed by the file's own enum. */
struct store_table {
    const char *name;
    const char *const *sql;
    size_t n;
};

/* The tables, one per file; store.c prepares them all at open. */
enum store_table_id {
    TBL_TX,         /* writer.c: transaction control */
    TBL_EVENTS,     /* events.c */
    TBL_REJECTIONS, /* rejections.c */
    TBL_BAIDU,      /* baidu.c: refund audit decisions, Baidu lookups */
    TBL_TOKENS,     /* tokens.c: the TP ticket */
    TBL_JOBS,       /* jobs.c: follow-up jobs and their results */
    TBL_DELIVERIES, /* deliveries.c: operators' replays and retries, hook state */
    TBL_ALIPAY,     /* alipay.c: refund amounts from Alipay's refunded totals */
    TBL_PRUNE,      /* prune.c: compacting old events */
    TBL_RECONCILE,  /* reconcile.c: sweeps of the platforms' order lists */
    TBL__COUNT
};
extern const struct store_table store_tx_table, store_events_table,
    store_rejections_table, store_baidu_table, store_tokens_table, store_jobs_table,
    store_deliveries_table, store_alipay_table, store_prune_table, store_reconcile_table;

/* Statement i of table t on the writer's connection. */
#define STORE_ST(s, t, i) ((s)->st[t][i])

#define STORE_READERS 8

/* WAL frames (pages) that make the writer ask for a checkpoint: SQLite's
 * own automatic checkpoint threshold. */
#define STORE_CKPT_FRAMES 1000

/* Rejections written in one transaction at most: they fill the room events
 * leave, never more. */
#define STORE_REJECTIONS_PER_BATCH 64

enum { CKPT_IDLE, CKPT_RUNNING, CKPT_DONE };

enum store_req_kind { REQ_EVENT, REQ_OP, REQ_REJECTION };

/* One queued write: an event waiting for its commit, an operation (the
 * daemon's own writes: job state, deliveries, tokens), or a rejection. */
struct store_req {
    struct store_req *next;
    enum store_req_kind kind;
    char received_at[32];
    store_done_fn done;
    void *data;
    struct store_result res;
    char error[256]; /* why this item failed (each item keeps its own) */
    /* REQ_EVENT */
    struct store_event *ev;
    char *answer_copy; /* a duplicate's stored answer */
    /* REQ_OP */
    store_write_fn write;
    /* REQ_REJECTION, copied into this allocation */
    int status;
    char *route, *remote_addr, *reason, *detail;
    void *body_prefix;
    size_t body_prefix_len;
};

struct store_tx {
    struct store *s;
    const char *received_at;
};

/* A committed batch on its way to the syncer. */
struct store_batch {
    struct store_batch *next;
    struct store_req *items;
    unsigned n;
    uint64_t t0;
};

struct store_reader;

struct store {
    sqlite3 *db;
    int lock_fd; /* the store's lock file: one payhookd per store */
    sqlite3_stmt **st[TBL__COUNT];
    struct store_options o;
    /* the writer and its queues (writer.c) */
    pthread_t thread;
    int thread_started;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    struct store_req *head, *tail;   /* events and operations */
    long depth;                      /* events queued (operations are not counted) */
    struct store_req *rhead, *rtail; /* rejections: their own small queue */
    long rdepth;
    int stopping;
    atomic_int ready;
    /* A WAL fdatasync failed: see store_broken. Set once, never cleared. */
    atomic_int broken;
    char broken_why[256];
    atomic_ullong heartbeat;
    /* the job scheduler, told when a commit made follow-up jobs (jobs.h) */
    void (*on_jobs)(void *);
    void *on_jobs_data;
    char last_error[256];
    /* The syncer (sync.c, synchronous = full): answers wait for an
     * fdatasync of the WAL, done there while the writer already writes the
     * next batch. */
    char *wal_path;
    int wal_fd;
    pthread_t syncer;
    int syncer_started, sync_stop;
    pthread_mutex_t sync_lock;
    pthread_cond_t sync_cond;
    pthread_cond_t sync_idle; /* the syncer has answered all it took */
    int syncing;              /* the syncer holds batches it has not answered */
    struct store_batch *sync_head, *sync_tail;
    /* The checkpointer (checkpoint.c): copies the WAL into the database on
     * its own connection while the writer goes on. */
    sqlite3 *ckpt_db;
    pthread_t ckpt_thread;
    int ckpt_started, ckpt_stop;
    int ckpt_phase;  /* CKPT_IDLE, CKPT_RUNNING, CKPT_DONE */
    int ckpt_copied; /* frames phase 1 left in the database */
    pthread_mutex_t ckpt_lock;
    pthread_cond_t ckpt_cond;
    atomic_int wal_frames; /* frames in the WAL after the last commit */
    /* read-only connections (read.c) */
    pthread_mutex_t read_lock;
    pthread_cond_t read_cond;
    struct store_reader *idle[STORE_READERS];
    int n_idle, n_readers;
};

/* ---- statement helpers (store.c) ---------------------------------------- */

/* Run a statement that returns no rows or one ignored row, then reset it:
 * SQLITE_DONE or the error code. */
int store_run(sqlite3_stmt *st);
/* Bind a possibly NULL text (not copied: it must outlive the step). */
void store_bind_text(sqlite3_stmt *st, int i, const char *v);
/* Step a bound write statement once, then reset it: 0, or -EIO. */
int store_step_done(sqlite3_stmt *st);
/* Run a one-row SELECT with one text parameter; copy column 0 as text:
 * 1 found, 0 no row (or NULL), -ENOSPC when it does not fit in buf (never
 * a cut value), -EIO. */
int store_first_text(sqlite3_stmt *st, const char *arg, char *buf, size_t len);

/* ---- the writer (writer.c) ---------------------------------------------- */

void *store_writer(void *arg);
/* Mark an item failed with a reason (copied: each item keeps its own). */
void store_fail_item(struct store_req *q, const char *why);
/* Run an operation through the writer and wait for its commit: 0 or -errno
 * (not for completions or the writer itself: it would wait on itself). */
int store_op_wait(struct store *s, store_write_fn write, void *data);
/* Queue a rejection built by rejections.c: 0, or -EAGAIN (the caller frees it). */
int store_enqueue_rejection(struct store *s, struct store_req *q);
/* A batch is over (durable, or failed): count it, answer its items, free them. */
void store_batch_done(struct store *s, struct store_req *items, unsigned n, uint64_t t0,
                      int ok);

/* ---- the rows ------------------------------------------------------------ */

/* events.c: a redelivery bumps the count, a new event runs in_tx and is
 * inserted. 0 or -errno (-EIO: SQLite's message is the reason). */
int store_write_event(struct store *s, struct store_req *q);
/* rejections.c: one rejection row, and the table trimmed to its cap. */
int store_write_rejection(struct store *s, struct store_req *q);

/* ---- durability (sync.c) ------------------------------------------------- */

int store_syncer_start(struct store *s);
void store_syncer_stop(struct store *s);
/* Hand a committed batch to the syncer; 0, or -ENOMEM (then sync here). */
int store_sync_push(struct store *s, struct store_req *items, unsigned n, uint64_t t0);
/* fdatasync of the WAL through a descriptor of its own (probe, fallback). */
int store_sync_wal_once(const char *wal_path);
/* A WAL fdatasync failed: nothing is acknowledged from now on. */
void store_break(struct store *s, int err);
/* Wait until the syncer has answered every batch handed to it. */
void store_wait_syncer(struct store *s);

/* ---- checkpoints (checkpoint.c) ------------------------------------------ */

int store_ckpt_start(struct store *s);
void store_ckpt_stop(struct store *s);
/* Writer, between batches: start or finish a checkpoint when one is due. */
void store_checkpoint_due(struct store *s);

/* Tell a helper thread to stop (its flag, under its lock) and wait for it. */
void store_thread_stop(pthread_t t, int *started, int *stop, pthread_mutex_t *lock,
                       pthread_cond_t *cond);

/* ---- read-only connections (read.c) --------------------------------------- */

/* Take an idle reader (opening one while under the limit, else waiting), or
 * NULL when none can be opened. */
struct store_reader *store_reader_get(struct store *s);
void store_reader_put(struct store *s, struct store_reader *r);
/* The reader's statement for `sql` (prepared on first use, kept): NULL on
 * failure. `sql` must be a string constant: it is the cache key. */
sqlite3_stmt *store_reader_stmt(struct store_reader *r, const char *sql);
/* Run sql (a string constant) on a reader with text parameters a1 and a2
 * (each bound when not NULL), calling row for each row until it returns
 * non-zero. 0 done, row's non-zero return, or -EIO. */
int store_read_rows(struct store *s, const char *sql, const char *a1, const char *a2,
                    int (*row)(sqlite3_stmt *st, void *data), void *data);
/* Close every idle reader (store_close). */
void store_readers_close(struct store *s);

#endif
