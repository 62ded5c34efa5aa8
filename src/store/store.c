/*
 * store.c: SQLite event store with a single writer thread and group commit.
 *
 * Every write goes through one queue to one thread, which takes everything
 * waiting (up to batch_max) and writes it in one transaction (a savepoint
 * per item only when one fails). With synchronous = full the syncer thread
 * then fdatasyncs the WAL, and only then is each item's completion callback
 * called. So an answer can never go out before its row is durable, and
 * under load many requests share one fsync. Three threads, each with one
 * job: the writer commits (once the syncer is idle: one transaction per
 * fdatasync), the syncer makes commits durable and answers, the
 * checkpointer copies the WAL into the database file (see "checkpoints").
 */
#include "store/store.h"

#include <errno.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "lib/metrics.h"
#include "lib/util.h"

/* Statements prepared once, indexed by this enum (OpenSMTPD style). */
enum {
    ST_BEGIN,
    ST_COMMIT,
    ST_ROLLBACK,
    ST_SAVEPOINT,
    ST_RELEASE,
    ST_ROLLBACK_TO,
    ST_FIND_EVENT,
    ST_BUMP_EVENT,
    ST_INSERT_EVENT,
    ST_INSERT_REJECTION,
    ST_TRIM_REJECTIONS,
    ST_SET_TICKET,
    ST_PROBE,
    ST_BAIDU_PAID,
    ST_BAIDU_APPROVED,
    ST_BAIDU_DECIDE,
    ST_BAIDU_OUTCOME,
    ST__COUNT
};

static const char *const store_sql[ST__COUNT] = {
    [ST_BEGIN] = "BEGIN IMMEDIATE",
    [ST_COMMIT] = "COMMIT",
    [ST_ROLLBACK] = "ROLLBACK",
    [ST_SAVEPOINT] = "SAVEPOINT item",
    [ST_RELEASE] = "RELEASE item",
    [ST_ROLLBACK_TO] = "ROLLBACK TO item",
    [ST_FIND_EVENT] = "SELECT id, deliveries, answer FROM events WHERE dedupe_key = ?1",
    [ST_BUMP_EVENT] =
        "UPDATE events SET deliveries = deliveries + 1, last_received_at = ?2 "
        "WHERE id = ?1 RETURNING deliveries",
    [ST_INSERT_EVENT] =
        "INSERT INTO events (received_at, last_received_at, provider, kind, app, "
        "dedupe_key,"
        " verified, order_id, merchant_order_id, amount_fen, status, remote_addr, answer,"
        " fields, body) VALUES (?1, ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, "
        "?13, ?14) ON CONFLICT (dedupe_key) DO NOTHING",
    [ST_INSERT_REJECTION] =
        "INSERT INTO rejections (received_at, route, remote_addr, status,"
        " reason, detail, body_prefix) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    [ST_TRIM_REJECTIONS] = "DELETE FROM rejections WHERE id <= ?1",
    [ST_SET_TICKET] = "INSERT INTO tp_ticket (id, ticket, create_time, received_at)"
                      " VALUES (1, ?1, ?2, ?3) ON CONFLICT (id) DO UPDATE SET"
                      " ticket = excluded.ticket, create_time = excluded.create_time,"
                      " received_at = excluded.received_at"
                      " WHERE excluded.create_time >= tp_ticket.create_time",
    [ST_PROBE] = "INSERT INTO meta (key, value) VALUES ('last_probe', ?1)"
                 " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
    [ST_BAIDU_PAID] =
        "SELECT json_extract(fields, '$.payMoney') FROM events"
        " WHERE provider = 'baidu' AND order_id = ?1 AND kind = 'pay_notify'"
        " AND verified = 1 AND status = '2' ORDER BY id LIMIT 1",
    [ST_BAIDU_APPROVED] = "SELECT coalesce(sum(refund_fen), 0) FROM baidu_refunds"
                          " WHERE order_id = ?1 AND audit_status = 1"
                          " AND coalesce(refund_status, 0) <> 2",
    [ST_BAIDU_DECIDE] =
        "INSERT INTO baidu_refunds (refund_batch_id, order_id, audit_status,"
        " refund_fen, reason, decided_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    [ST_BAIDU_OUTCOME] =
        "UPDATE baidu_refunds SET refund_status = ?2, refund_status_at = ?3"
        " WHERE refund_batch_id = ?1",
};

/* Read-only lookups run on the HTTP threads, on their own connections. */
static const char *const store_read_sql =
    "SELECT app FROM events WHERE provider = 'baidu' AND order_id = ?1"
    " AND kind = 'pay_notify' AND verified = 1 ORDER BY id LIMIT 1";

#define STORE_READERS 8

/* WAL frames (pages) that make the writer ask for a checkpoint: SQLite's
 * own automatic checkpoint threshold. */
#define STORE_CKPT_FRAMES 1000

enum { CKPT_IDLE, CKPT_RUNNING, CKPT_DONE };

/* A read-only connection with its prepared lookup. */
struct store_reader {
    sqlite3 *db;
    sqlite3_stmt *st;
};

/* One queued write: an event waiting for its commit, or a rejection. */
struct store_req {
    struct store_req *next;
    char received_at[32];
    struct store_event *ev; /* NULL for a rejection */
    store_done_fn done;
    void *data;
    struct store_result res;
    char *answer_copy; /* a duplicate's stored answer */
    char error[256];   /* why this item failed (each item keeps its own) */
    /* rejection, copied into this allocation */
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

struct store {
    sqlite3 *db;
    sqlite3_stmt *st[ST__COUNT];
    struct store_options o;
    pthread_t thread;
    int thread_started;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    struct store_req *head, *tail;
    long depth;
    int stopping;
    atomic_int ready;
    /* A WAL fdatasync failed: see store_broken. Set once, never cleared. */
    atomic_int broken;
    char broken_why[256];
    atomic_ullong heartbeat;
    char last_error[256];
    /* The syncer (synchronous = full): answers wait for an fdatasync of the
     * WAL, done on this thread while the writer already writes the next batch. */
    char *wal_path;
    int wal_fd;
    pthread_t syncer;
    int syncer_started, sync_stop;
    pthread_mutex_t sync_lock;
    pthread_cond_t sync_cond;
    pthread_cond_t sync_idle; /* the syncer has answered all it took */
    int syncing;              /* the syncer holds batches it has not answered */
    struct store_batch *sync_head, *sync_tail;
    /* The checkpointer: copies the WAL into the database on its own
     * connection while the writer goes on (see store_checkpoint_due). */
    sqlite3 *ckpt_db;
    pthread_t ckpt_thread;
    int ckpt_started, ckpt_stop;
    int ckpt_phase;  /* CKPT_IDLE, CKPT_RUNNING, CKPT_DONE */
    int ckpt_copied; /* frames phase 1 left in the database */
    pthread_mutex_t ckpt_lock;
    pthread_cond_t ckpt_cond;
    atomic_int wal_frames; /* frames in the WAL after the last commit */
    pthread_mutex_t read_lock;
    pthread_cond_t read_cond;
    struct store_reader *idle[STORE_READERS];
    int n_idle, n_readers;
};

/* ---- opening and migrations ------------------------------------------ */

/* The store's schema version; refuse one newer than this binary knows. */
static int store_version(sqlite3 *db, int *version, char *err, size_t errlen)
{
    const struct store_migration *m;
    sqlite3_stmt *st;
    int latest = 0;

    *version = 0;
    if (sqlite3_prepare_v2(db, "PRAGMA user_version", -1, &st, NULL) != SQLITE_OK) {
        snprintf(err, errlen, "cannot read the schema version: %s", sqlite3_errmsg(db));
        return -EIO;
    }
    if (sqlite3_step(st) == SQLITE_ROW)
        *version = sqlite3_column_int(st, 0);
    sqlite3_finalize(st);
    for (m = store_migrations; m->sql; m++)
        latest = m->version;
    if (*version > latest) {
        snprintf(err, errlen,
                 "store schema version %d is newer than this payhookd knows (%d): "
                 "refusing to touch it",
                 *version, latest);
        return -EPROTO;
    }
    return 0;
}

/* Apply every embedded migration newer than `version`, each in its own transaction. */
static int store_migrate(sqlite3 *db, int version, char *err, size_t errlen)
{
    const struct store_migration *m;
    char *msg = NULL, pragma[64];

    for (m = store_migrations; m->sql; m++) {
        if (m->version <= version)
            continue;
        snprintf(pragma, sizeof(pragma), "PRAGMA user_version = %d", m->version);
        if (sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, &msg) != SQLITE_OK ||
            sqlite3_exec(db, m->sql, NULL, NULL, &msg) != SQLITE_OK ||
            sqlite3_exec(db, pragma, NULL, NULL, &msg) != SQLITE_OK ||
            sqlite3_exec(db, "COMMIT", NULL, NULL, &msg) != SQLITE_OK) {
            snprintf(err, errlen, "migration %s failed: %s", m->name, msg ? msg : "?");
            sqlite3_free(msg);
            sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
            return -EIO;
        }
    }
    return 0;
}

/*
 * Connection settings: WAL, waits on locks. SQLite itself runs with
 * synchronous = NORMAL (no fsync at COMMIT; the WAL is synced before each
 * checkpoint). With [store] synchronous = full, payhookd makes every commit
 * durable before anyone is answered by an fdatasync of the WAL on the syncer
 * thread -- the guarantee of SQLite's FULL, but the writer does not wait for
 * the disk and writes the next batch meanwhile.
 */
static int store_pragmas(struct store *s, char *err, size_t errlen)
{
    char *msg = NULL;
    const char *sql = "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL;"
                      " PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 5000;";

    if (sqlite3_exec(s->db, sql, NULL, NULL, &msg) != SQLITE_OK) {
        snprintf(err, errlen, "cannot configure the store: %s", msg ? msg : "?");
        sqlite3_free(msg);
        return -EIO;
    }
    return 0;
}

/* Prepare every statement once. */
static int store_prepare(struct store *s, char *err, size_t errlen)
{
    int i;

    for (i = 0; i < ST__COUNT; i++) {
        if (sqlite3_prepare_v3(s->db, store_sql[i], -1, SQLITE_PREPARE_PERSISTENT,
                               &s->st[i], NULL) != SQLITE_OK) {
            snprintf(err, errlen, "cannot prepare statement %d: %s", i,
                     sqlite3_errmsg(s->db));
            return -EIO;
        }
    }
    return 0;
}

static void *store_writer(void *arg);
static void *store_syncer(void *arg);
static int store_ckpt_start(struct store *s);

/* Open, migrate, prepare, start the writer. */
int store_open(const struct store_options *o, struct store **out, char *err,
               size_t errlen)
{
    struct store *s = calloc(1, sizeof(*s));
    int r = -ENOMEM, version;

    if (!s)
        goto fail;
    s->o = *o;
    pthread_mutex_init(&s->lock, NULL);
    pthread_cond_init(&s->cond, NULL);
    pthread_mutex_init(&s->read_lock, NULL);
    pthread_cond_init(&s->read_cond, NULL);
    pthread_mutex_init(&s->sync_lock, NULL);
    pthread_cond_init(&s->sync_cond, NULL);
    pthread_cond_init(&s->sync_idle, NULL);
    pthread_mutex_init(&s->ckpt_lock, NULL);
    pthread_cond_init(&s->ckpt_cond, NULL);
    s->wal_fd = -1;
    if (asprintf(&s->wal_path, "%s-wal", o->path) < 0) {
        s->wal_path = NULL;
        goto fail;
    }
    if (sqlite3_open_v2(o->path, &s->db,
                        SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
                        NULL) != SQLITE_OK) {
        snprintf(err, errlen, "cannot open store %s: %s", o->path,
                 s->db ? sqlite3_errmsg(s->db) : "out of memory");
        r = -EIO;
        goto fail;
    }
    sqlite3_extended_result_codes(s->db, 1);
    /* The version first: a newer store is left exactly as it is (not even WAL). */
    if ((r = store_version(s->db, &version, err, errlen)) < 0 ||
        (r = store_pragmas(s, err, errlen)) < 0 ||
        (r = store_migrate(s->db, version, err, errlen)) < 0 ||
        (r = store_prepare(s, err, errlen)) < 0)
        goto fail;
    atomic_store(&s->ready, 1);
    atomic_store(&s->heartbeat, util_now_ns());
    if (o->synchronous_full) {
        if (pthread_create(&s->syncer, NULL, store_syncer, s) != 0) {
            snprintf(err, errlen, "cannot start the syncer thread");
            r = -EAGAIN;
            goto fail;
        }
        s->syncer_started = 1;
    }
    store_ckpt_start(s); /* without it the writer checkpoints by itself */
    if (pthread_create(&s->thread, NULL, store_writer, s) != 0) {
        snprintf(err, errlen, "cannot start the writer thread");
        r = -EAGAIN;
        goto fail;
    }
    s->thread_started = 1;
    *out = s;
    return 0;
fail:
    if (r == -ENOMEM && !s)
        snprintf(err, errlen, "out of memory");
    store_close(s);
    return r;
}

/* ---- the queue -------------------------------------------------------- */

/* Append a request and wake the writer; -EAGAIN when full or stopping. */
static int store_enqueue(struct store *s, struct store_req *q, int force)
{
    int r = 0;

    pthread_mutex_lock(&s->lock);
    if (s->stopping || (!force && s->depth >= (long)s->o.queue_max)) {
        r = -EAGAIN;
    } else {
        if (s->tail)
            s->tail->next = q;
        else
            s->head = q;
        s->tail = q;
        s->depth++;
        metrics_set_queue_depth(s->depth);
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
        return -EAGAIN;
    util_iso8601_now(q->received_at);
    q->ev = ev;
    q->done = done;
    q->data = data;
    r = store_enqueue(s, q, 0);
    if (r < 0)
        free(q);
    return r;
}

/* Length of a string that may be NULL, plus its NUL. */
static size_t store_slen(const char *p)
{
    return p ? strlen(p) + 1 : 0;
}

/* Copy a string into the arena at *pos; NULL stays NULL. */
static char *store_scopy(char **pos, const char *p)
{
    char *d = *pos;
    size_t n = store_slen(p);

    if (!p)
        return NULL;
    memcpy(d, p, n);
    *pos += n;
    return d;
}

/* Record a rejection (copied, best effort). */
void store_reject(struct store *s, const struct store_rejection *r)
{
    const char *route = r->route ? r->route : "",
               *reason = r->reason ? r->reason : "unknown";
    size_t n = sizeof(struct store_req) + store_slen(route) + store_slen(r->remote_addr) +
               store_slen(reason) + store_slen(r->detail) + r->body_prefix_len;
    struct store_req *q = calloc(1, n);
    char *pos;

    if (!q) {
        metrics_rejection_unrecorded();
        return;
    }
    util_iso8601_now(q->received_at);
    pos = (char *)(q + 1);
    q->status = r->status;
    q->route = store_scopy(&pos, route);
    q->remote_addr = store_scopy(&pos, r->remote_addr);
    q->reason = store_scopy(&pos, reason);
    q->detail = store_scopy(&pos, r->detail);
    q->body_prefix = pos;
    q->body_prefix_len = r->body_prefix_len;
    if (r->body_prefix_len)
        memcpy(pos, r->body_prefix, r->body_prefix_len);
    if (store_enqueue(s, q, 0) < 0) {
        metrics_rejection_unrecorded();
        free(q);
    }
}

/* ---- statements ------------------------------------------------------- */

/* Run a statement that returns no rows; SQLITE_DONE or the error code. */
static int store_run(struct store *s, int id)
{
    sqlite3_stmt *st = s->st[id];
    int rc = sqlite3_step(st);

    sqlite3_reset(st);
    return rc == SQLITE_DONE || rc == SQLITE_ROW ? SQLITE_DONE : rc;
}

/* Bind a possibly NULL text. */
static void store_bind_text(sqlite3_stmt *st, int i, const char *v)
{
    if (v)
        sqlite3_bind_text(st, i, v, -1, SQLITE_STATIC);
    else
        sqlite3_bind_null(st, i);
}

/* Step a bound write statement once, then reset it: 0, or -EIO. */
static int store_step_done(sqlite3_stmt *st)
{
    int rc = sqlite3_step(st);

    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    return rc == SQLITE_DONE ? 0 : -EIO;
}

/* Run a one-row SELECT with one text parameter; copy column 0 as text:
 * 1 found, 0 no row (or NULL), -EIO. */
static int store_first_text(sqlite3_stmt *st, const char *arg, char *buf, size_t len)
{
    const unsigned char *v;
    int rc, r = 0;

    sqlite3_bind_text(st, 1, arg, -1, SQLITE_STATIC);
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW && (v = sqlite3_column_text(st, 0)) != NULL) {
        snprintf(buf, len, "%s", (const char *)v);
        r = 1;
    } else if (rc != SQLITE_ROW && rc != SQLITE_DONE) {
        r = -EIO;
    }
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    return r;
}

/* Look the event up by dedupe key; 1 found (res filled), 0 not, <0 error. */
static int store_find(struct store *s, struct store_req *q)
{
    sqlite3_stmt *st = s->st[ST_FIND_EVENT];
    const unsigned char *a;
    int rc;

    sqlite3_bind_text(st, 1, q->ev->dedupe_key, -1, SQLITE_STATIC);
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        q->res.id = sqlite3_column_int64(st, 0);
        a = sqlite3_column_text(st, 2);
        q->answer_copy = util_strdup(a ? (const char *)a : "");
        rc = q->answer_copy ? 1 : -ENOMEM;
    } else {
        rc = rc == SQLITE_DONE ? 0 : -EIO;
    }
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    return rc;
}

/* Count one more delivery of a stored event. */
static int store_bump(struct store *s, struct store_req *q)
{
    sqlite3_stmt *st = s->st[ST_BUMP_EVENT];
    int rc;

    sqlite3_bind_int64(st, 1, q->res.id);
    sqlite3_bind_text(st, 2, q->received_at, -1, SQLITE_STATIC);
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW)
        q->res.deliveries = sqlite3_column_int64(st, 0);
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    return rc == SQLITE_ROW ? 0 : -EIO;
}

/* Insert a new event row: 1 inserted, 0 its dedupe key is already stored, -EIO. */
static int store_insert(struct store *s, struct store_req *q)
{
    sqlite3_stmt *st = s->st[ST_INSERT_EVENT];
    const struct store_event *e = q->ev;
    int rc;

    sqlite3_bind_text(st, 1, q->received_at, -1, SQLITE_STATIC);
    store_bind_text(st, 2, e->provider);
    store_bind_text(st, 3, e->kind);
    store_bind_text(st, 4, e->app);
    store_bind_text(st, 5, e->dedupe_key);
    sqlite3_bind_int(st, 6, e->verified ? 1 : 0);
    store_bind_text(st, 7, e->order_id);
    store_bind_text(st, 8, e->merchant_order_id);
    if (e->has_amount)
        sqlite3_bind_int64(st, 9, e->amount_fen);
    else
        sqlite3_bind_null(st, 9);
    store_bind_text(st, 10, e->status);
    store_bind_text(st, 11, e->remote_addr);
    store_bind_text(st, 12, e->answer ? e->answer : "");
    store_bind_text(st, 13, e->fields);
    sqlite3_bind_blob(st, 14, e->body ? e->body : "", (int)e->body_len, SQLITE_STATIC);
    rc = sqlite3_step(st);
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    if (rc != SQLITE_DONE)
        return -EIO;
    if (sqlite3_changes(s->db) == 0)
        return 0;
    q->res.outcome = STORE_NEW;
    q->res.answer = e->answer ? e->answer : "";
    q->res.id = sqlite3_last_insert_rowid(s->db);
    q->res.deliveries = 1;
    return 1;
}

/*
 * Write one event: a redelivery bumps the count, a new one runs in_tx and
 * inserts. Without in_tx the insert comes first, so a new event -- the
 * common case -- costs one probe of the dedupe index, and a redelivery is
 * recognized by its conflict there.
 */
static int store_write_event(struct store *s, struct store_req *q)
{
    struct store_tx tx = {s, q->received_at};
    int r;

    if (!q->ev->in_tx && (r = store_insert(s, q)) != 0)
        return r < 0 ? r : 0;
    if ((r = store_find(s, q)) < 0)
        return r;
    if (r == 1) {
        q->res.outcome = STORE_DUPLICATE;
        q->res.answer = q->answer_copy;
        return store_bump(s, q);
    }
    if (!q->ev->in_tx)
        return -EPROTO; /* a conflict, yet no such key: cannot happen */
    if ((r = q->ev->in_tx(&tx, q->ev, q->ev->in_tx_data)) < 0)
        return r;
    r = store_insert(s, q);
    return r == 1 ? 0 : -EIO;
}

/* Write one rejection and trim the table now and then. */
static int store_write_rejection(struct store *s, struct store_req *q)
{
    sqlite3_stmt *st = s->st[ST_INSERT_REJECTION];
    sqlite3_int64 last;
    int rc;

    sqlite3_bind_text(st, 1, q->received_at, -1, SQLITE_STATIC);
    store_bind_text(st, 2, q->route);
    store_bind_text(st, 3, q->remote_addr);
    sqlite3_bind_int(st, 4, q->status);
    store_bind_text(st, 5, q->reason);
    store_bind_text(st, 6, q->detail);
    sqlite3_bind_blob(st, 7, q->body_prefix, (int)q->body_prefix_len, SQLITE_STATIC);
    rc = sqlite3_step(st);
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    if (rc != SQLITE_DONE)
        return -EIO;
    /* A range delete on the primary key: nearly free when nothing is due. */
    last = sqlite3_last_insert_rowid(s->db);
    sqlite3_bind_int64(s->st[ST_TRIM_REJECTIONS], 1,
                       last - (sqlite3_int64)s->o.rejections_keep);
    rc = store_run(s, ST_TRIM_REJECTIONS);
    return rc == SQLITE_DONE ? 0 : -EIO;
}

/* Keep the latest TP ticket (called from an in_tx callback). */
int store_tx_set_ticket(struct store_tx *tx, const char *ticket, int64_t create_time)
{
    sqlite3_stmt *st = tx->s->st[ST_SET_TICKET];

    sqlite3_bind_text(st, 1, ticket, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, create_time);
    sqlite3_bind_text(st, 3, tx->received_at, -1, SQLITE_STATIC);
    return store_step_done(st);
}

/* payMoney of the verified paid notification of a Baidu order. */
int store_tx_baidu_paid(struct store_tx *tx, const char *order_id, char *pay_money,
                        size_t len)
{
    return store_first_text(tx->s->st[ST_BAIDU_PAID], order_id, pay_money, len);
}

/* Refunds approved for an order and not reported failed. */
int store_tx_baidu_approved(struct store_tx *tx, const char *order_id, int64_t *sum)
{
    sqlite3_stmt *st = tx->s->st[ST_BAIDU_APPROVED];
    int rc;

    sqlite3_bind_text(st, 1, order_id, -1, SQLITE_STATIC);
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW)
        *sum = sqlite3_column_int64(st, 0);
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    return rc == SQLITE_ROW ? 0 : -EIO;
}

/* Record a refund audit decision. */
int store_tx_baidu_decide(struct store_tx *tx, const char *batch, const char *order_id,
                          int audit_status, int64_t refund_fen, const char *reason)
{
    sqlite3_stmt *st = tx->s->st[ST_BAIDU_DECIDE];

    sqlite3_bind_text(st, 1, batch, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, order_id, -1, SQLITE_STATIC);
    sqlite3_bind_int(st, 3, audit_status);
    sqlite3_bind_int64(st, 4, refund_fen);
    sqlite3_bind_text(st, 5, reason, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 6, tx->received_at, -1, SQLITE_STATIC);
    return store_step_done(st);
}

/* Record the outcome a refund notification reports for a batch. */
int store_tx_baidu_refund_outcome(struct store_tx *tx, const char *batch,
                                  int refund_status)
{
    sqlite3_stmt *st = tx->s->st[ST_BAIDU_OUTCOME];

    sqlite3_bind_text(st, 1, batch, -1, SQLITE_STATIC);
    sqlite3_bind_int(st, 2, refund_status);
    sqlite3_bind_text(st, 3, tx->received_at, -1, SQLITE_STATIC);
    return store_step_done(st);
}

/* ---- read-only lookups (any thread) ------------------------------------ */

/* Take an idle reader, opening one while under the limit, else wait. */
static struct store_reader *store_reader_get(struct store *s)
{
    struct store_reader *r = NULL;

    pthread_mutex_lock(&s->read_lock);
    while (!s->n_idle && s->n_readers >= STORE_READERS)
        pthread_cond_wait(&s->read_cond, &s->read_lock);
    if (s->n_idle) {
        r = s->idle[--s->n_idle];
        pthread_mutex_unlock(&s->read_lock);
        return r;
    }
    s->n_readers++;
    pthread_mutex_unlock(&s->read_lock);
    r = calloc(1, sizeof(*r));
    if (r &&
        sqlite3_open_v2(s->o.path, &r->db, SQLITE_OPEN_READONLY | SQLITE_OPEN_NOMUTEX,
                        NULL) == SQLITE_OK &&
        sqlite3_busy_timeout(r->db, 5000) == SQLITE_OK &&
        sqlite3_prepare_v3(r->db, store_read_sql, -1, SQLITE_PREPARE_PERSISTENT, &r->st,
                           NULL) == SQLITE_OK)
        return r;
    if (r) {
        sqlite3_finalize(r->st);
        sqlite3_close(r->db);
        free(r);
    }
    pthread_mutex_lock(&s->read_lock);
    s->n_readers--;
    pthread_cond_signal(&s->read_cond);
    pthread_mutex_unlock(&s->read_lock);
    return NULL;
}

/* Give a reader back. */
static void store_reader_put(struct store *s, struct store_reader *r)
{
    pthread_mutex_lock(&s->read_lock);
    s->idle[s->n_idle++] = r;
    pthread_cond_signal(&s->read_cond);
    pthread_mutex_unlock(&s->read_lock);
}

/* The app (dealId) of the verified pay notification of a Baidu order. */
int store_baidu_order_app(struct store *s, const char *order_id, char *buf, size_t len)
{
    struct store_reader *r = store_reader_get(s);
    int ret;

    if (!r)
        return -EIO;
    ret = store_first_text(r->st, order_id, buf, len);
    store_reader_put(s, r);
    return ret;
}

/* ---- the writer ------------------------------------------------------- */

/* Mark an item failed with a reason (copied: each item keeps its own). */
static void store_fail_item(struct store_req *q, const char *why)
{
    q->res.outcome = STORE_FAILED;
    snprintf(q->error, sizeof(q->error), "%s", why);
    q->res.error = q->error;
}

/* Write one item inside its own savepoint, so a failure stays its own. */
static void store_write_item(struct store *s, struct store_req *q)
{
    int r;

    if (store_run(s, ST_SAVEPOINT) != SQLITE_DONE) {
        r = -EIO;
        goto failed;
    }
    r = q->ev ? store_write_event(s, q) : store_write_rejection(s, q);
    if (r == 0) {
        if (store_run(s, ST_RELEASE) == SQLITE_DONE)
            return;
        r = -EIO;
    }
    /* The reason first: rolling back resets SQLite's error message. */
    snprintf(q->error, sizeof(q->error), "%s",
             r == -EIO ? sqlite3_errmsg(s->db) : strerror(-r));
    store_run(s, ST_ROLLBACK_TO);
    store_run(s, ST_RELEASE);
    goto out;
failed:
    snprintf(q->error, sizeof(q->error), "%s", sqlite3_errmsg(s->db));
out:
    q->res.outcome = STORE_FAILED;
    q->res.error = q->error;
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
 * its own, and the others commit. Returns 0, or -EIO (begin failed).
 */
static int store_write_all(struct store *s, struct store_req *batch)
{
    struct store_req *q, *bad = NULL;
    int r;

    for (q = batch; q && !bad; q = q->next) {
        r = q->ev ? store_write_event(s, q) : store_write_rejection(s, q);
        if (r < 0) {
            snprintf(q->error, sizeof(q->error), "%s",
                     r == -EIO ? sqlite3_errmsg(s->db) : strerror(-r));
            bad = q;
        }
    }
    if (!bad)
        return 0;
    store_run(s, ST_ROLLBACK);
    if (store_run(s, ST_BEGIN) != SQLITE_DONE)
        return -EIO;
    for (q = batch; q; q = q->next) {
        if (q == bad) {
            q->res.outcome = STORE_FAILED;
            q->res.error = q->error;
            continue;
        }
        store_reset_item(q);
        store_write_item(s, q);
    }
    return 0;
}

/* Write and commit a batch; on failure every item fails. Returns 1 if committed. */
static int store_write_batch(struct store *s, struct store_req *batch)
{
    struct store_req *q;
    int ok;

    ok = store_run(s, ST_BEGIN) == SQLITE_DONE && store_write_all(s, batch) == 0;
    if (ok) {
        ok = store_run(s, ST_COMMIT) == SQLITE_DONE;
        if (!ok) {
            snprintf(s->last_error, sizeof(s->last_error), "commit failed: %s",
                     sqlite3_errmsg(s->db));
            store_run(s, ST_ROLLBACK);
        }
    } else {
        snprintf(s->last_error, sizeof(s->last_error), "cannot begin a transaction: %s",
                 sqlite3_errmsg(s->db));
    }
    for (q = batch; !ok && q; q = q->next)
        store_fail_item(q, s->last_error);
    return ok;
}

/* Tell each item's owner how it went, then free the items. */
static void store_finish_batch(struct store_req *batch)
{
    struct store_req *q, *next;

    for (q = batch; q; q = next) {
        next = q->next;
        if (q->ev && q->done)
            q->done(q->data, &q->res);
        free(q->answer_copy);
        free(q);
    }
}

/* fdatasync of the WAL through a descriptor of its own (probe, fallback). */
static int store_sync_wal_once(const char *wal_path)
{
    int fd = open(wal_path, O_RDONLY | O_CLOEXEC), r;

    if (fd < 0)
        return -errno;
    r = fdatasync(fd) == 0 ? 0 : -errno;
    close(fd);
    return r;
}

/* fdatasync of the WAL file, reopened if SQLite replaced it. 0 or -errno. */
static int store_sync_wal(struct store *s)
{
    struct stat a, b;

    if (s->wal_fd >= 0 && (fstat(s->wal_fd, &a) < 0 || stat(s->wal_path, &b) < 0 ||
                           a.st_ino != b.st_ino || a.st_dev != b.st_dev)) {
        close(s->wal_fd);
        s->wal_fd = -1;
    }
    if (s->wal_fd < 0 && (s->wal_fd = open(s->wal_path, O_RDONLY | O_CLOEXEC)) < 0)
        return -errno;
    return fdatasync(s->wal_fd) == 0 ? 0 : -errno;
}

/*
 * A WAL fdatasync failed. The rows it should have made durable are
 * committed in SQLite and still readable from the page cache, but may never
 * reach the disk -- and Linux reports a writeback error once, so a later
 * fdatasync that succeeds proves nothing about them. Were the store to go
 * on, a redelivery of such a callback would be answered as a duplicate and
 * the platform would stop retrying a callback that a crash then loses. So
 * from the first failure nothing is acknowledged any more (every item
 * fails, /readyz answers 503) and the daemon restarts, rereading the store
 * from what is really on disk (see main.c).
 */
static void store_break(struct store *s, int err)
{
    int expected = 0;

    atomic_store(&s->ready, 0);
    if (atomic_compare_exchange_strong(&s->broken, &expected, 2)) {
        snprintf(s->broken_why, sizeof(s->broken_why),
                 "not written: a fdatasync of the WAL failed earlier (%s), nothing is "
                 "acknowledged until payhookd restarts and rereads the store",
                 strerror(err));
        atomic_store(&s->broken, 1); /* the reason is complete */
    }
}

/* A batch is over (durable, or failed): count it, then answer its items. */
static void store_batch_done(struct store_req *items, unsigned n, uint64_t t0, int ok)
{
    metrics_commit(n, util_now_ns() - t0, ok);
    store_finish_batch(items);
}

/* The syncer thread: one fdatasync for every batch committed since the last. */
static void *store_syncer(void *arg)
{
    struct store *s = arg;
    struct store_batch *list, *b;
    char why[160];
    int r;

    pthread_mutex_lock(&s->sync_lock);
    for (;;) {
        while (!s->sync_head && !s->sync_stop)
            pthread_cond_wait(&s->sync_cond, &s->sync_lock);
        if (!s->sync_head)
            break;
        list = s->sync_head;
        s->sync_head = s->sync_tail = NULL;
        s->syncing = 1;
        pthread_mutex_unlock(&s->sync_lock);
        r = store_sync_wal(s);
        if (r < 0) {
            snprintf(why, sizeof(why), "committed but not made durable (fdatasync: %s)",
                     strerror(-r));
            store_break(s, -r);
        }
        while ((b = list) != NULL) {
            list = b->next;
            for (struct store_req *q = b->items; r < 0 && q; q = q->next)
                store_fail_item(q, why);
            store_batch_done(b->items, b->n, b->t0, r == 0);
            free(b);
        }
        pthread_mutex_lock(&s->sync_lock);
        s->syncing = 0;
        pthread_cond_signal(&s->sync_idle);
    }
    pthread_mutex_unlock(&s->sync_lock);
    return NULL;
}

/* Hand a committed batch to the syncer; 0, or -ENOMEM (then sync here). */
static int store_sync_push(struct store *s, struct store_req *items, unsigned n,
                           uint64_t t0)
{
    struct store_batch *b = malloc(sizeof(*b));

    if (!b)
        return -ENOMEM;
    b->next = NULL;
    b->items = items;
    b->n = n;
    b->t0 = t0;
    pthread_mutex_lock(&s->sync_lock);
    if (s->sync_tail)
        s->sync_tail->next = b;
    else
        s->sync_head = b;
    s->sync_tail = b;
    pthread_cond_signal(&s->sync_cond);
    pthread_mutex_unlock(&s->sync_lock);
    return 0;
}

/* Write, commit and (through the syncer, when full) answer one batch. */
static void store_commit_batch(struct store *s, struct store_req *batch, unsigned n)
{
    uint64_t t0 = util_now_ns();
    int ok;

    if (store_broken(s)) {
        for (struct store_req *q = batch; q; q = q->next)
            store_fail_item(q, s->broken_why);
        store_batch_done(batch, n, t0, 0);
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
    store_batch_done(batch, n, t0, ok);
}

/* While the store is failing and idle, try a tiny write to notice recovery. */
static void store_probe(struct store *s)
{
    char now[32];
    int ok;

    if (atomic_load(&s->broken))
        return; /* nothing written from now on can be trusted */
    util_iso8601_now(now);
    ok = store_run(s, ST_BEGIN) == SQLITE_DONE;
    if (ok) {
        sqlite3_bind_text(s->st[ST_PROBE], 1, now, -1, SQLITE_TRANSIENT);
        ok = store_run(s, ST_PROBE) == SQLITE_DONE &&
             store_run(s, ST_COMMIT) == SQLITE_DONE;
        if (!ok)
            store_run(s, ST_ROLLBACK);
    }
    if (ok && s->syncer_started)
        ok = store_sync_wal_once(s->wal_path) == 0;
    atomic_store(&s->ready, ok);
}

/* ---- checkpoints ------------------------------------------------------ */

/*
 * A checkpoint copies the WAL into the database file and fsyncs both: with
 * SQLite's automatic checkpoint that happens inside a COMMIT on the writer,
 * and every request waits for it (stalls of 20-100 ms every few seconds
 * under load). Here it is done in two phases:
 *  1. the checkpointer thread, on its own connection, copies every frame
 *     present when it starts and fsyncs the database, while the writer goes
 *     on committing (a PASSIVE checkpoint takes no lock the writer needs);
 *  2. the writer, between two batches, copies the frames committed meanwhile
 *     (few, so its fsyncs are short). Nothing is appended during that, so
 *     the WAL is then wholly in the database and the next transaction starts
 *     it over from the beginning: the WAL stays about STORE_CKPT_FRAMES long.
 * Neither changes what the answers rely on: a checkpoint copies committed
 * frames only, and SQLite syncs the WAL before it copies.
 */

/* SQLite's WAL hook on the writer's connection: note the WAL's length. It
 * must return SQLITE_OK, or SQLite reports the committed COMMIT as failed. */
static int store_wal_hook(void *arg, sqlite3 *db, const char *name, int frames)
{
    struct store *s = arg;

    (void)db;
    (void)name;
    atomic_store(&s->wal_frames, frames);
    metrics_set_wal_frames(frames);
    return SQLITE_OK;
}

/*
 * One PASSIVE checkpoint on db, counted in the metrics. SQLite reports the
 * frames of the WAL checkpointed so far, not by this call: `before` is what
 * an earlier phase of the same round copied. Returns the frames now in the
 * database, or -EIO when it failed (disk full, an I/O error, an operator's
 * checkpoint in the way).
 */
static int store_checkpoint(sqlite3 *db, int by_writer, int before)
{
    int done = 0, rc;

    rc = sqlite3_wal_checkpoint_v2(db, NULL, SQLITE_CHECKPOINT_PASSIVE, NULL, &done);
    metrics_checkpoint(by_writer, done > before ? done - before : 0, rc != SQLITE_OK);
    return rc == SQLITE_OK ? done : -EIO;
}

/* The checkpointer thread: phase 1 each time the writer asks. */
static void *store_ckpt_thread(void *arg)
{
    struct store *s = arg;
    int r;

    pthread_mutex_lock(&s->ckpt_lock);
    for (;;) {
        while (s->ckpt_phase != CKPT_RUNNING && !s->ckpt_stop)
            pthread_cond_wait(&s->ckpt_cond, &s->ckpt_lock);
        if (s->ckpt_stop)
            break;
        pthread_mutex_unlock(&s->ckpt_lock);
        r = store_checkpoint(s->ckpt_db, 0, 0);
        pthread_mutex_lock(&s->ckpt_lock);
        /* After a failure the writer copies everything itself: a stall,
         * but a checkpointer that keeps failing must not let the WAL grow
         * without end (the failures are counted in the metrics). */
        s->ckpt_copied = r > 0 ? r : 0;
        s->ckpt_phase = CKPT_DONE;
    }
    pthread_mutex_unlock(&s->ckpt_lock);
    return NULL;
}

/* Watch the WAL's length; open the checkpointer's connection and start it.
 * Without it the writer checkpoints by itself, between batches, as SQLite's
 * automatic checkpoint would have inside a COMMIT. */
static int store_ckpt_start(struct store *s)
{
    sqlite3_wal_hook(s->db, store_wal_hook, s);
    /* synchronous = NORMAL: a checkpoint syncs the WAL before it copies and
     * the database after. The read makes the connection find the WAL: a
     * checkpoint on a connection that has not read the schema copies
     * nothing (check_store's wal_bounded_under_continuous_writes). */
    if (sqlite3_open_v2(s->o.path, &s->ckpt_db,
                        SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, NULL) != SQLITE_OK ||
        sqlite3_exec(s->ckpt_db,
                     "PRAGMA synchronous = NORMAL; SELECT count(*) FROM sqlite_schema;",
                     NULL, NULL, NULL) != SQLITE_OK ||
        pthread_create(&s->ckpt_thread, NULL, store_ckpt_thread, s) != 0) {
        sqlite3_close(s->ckpt_db);
        s->ckpt_db = NULL;
        return -EAGAIN;
    }
    s->ckpt_started = 1;
    return 0;
}

/* Tell a helper thread to stop (its flag, under its lock) and wait for it. */
static void store_thread_stop(pthread_t t, int *started, int *stop, pthread_mutex_t *lock,
                              pthread_cond_t *cond)
{
    if (!*started)
        return;
    pthread_mutex_lock(lock);
    *stop = 1;
    pthread_cond_signal(cond);
    pthread_mutex_unlock(lock);
    pthread_join(t, NULL);
    *started = 0;
}

/* Stop the checkpointer (after the writer) and close its connection. */
static void store_ckpt_stop(struct store *s)
{
    store_thread_stop(s->ckpt_thread, &s->ckpt_started, &s->ckpt_stop, &s->ckpt_lock,
                      &s->ckpt_cond);
    sqlite3_close(s->ckpt_db);
    s->ckpt_db = NULL;
}

/* Writer, between batches: start phase 1 when the WAL is long, finish with
 * phase 2 when phase 1 is over. */
static void store_checkpoint_due(struct store *s)
{
    int phase, copied, long_wal = atomic_load(&s->wal_frames) >= STORE_CKPT_FRAMES;

    if (!s->ckpt_started) {
        if (long_wal)
            store_checkpoint(s->db, 1, 0);
        return;
    }
    pthread_mutex_lock(&s->ckpt_lock);
    phase = s->ckpt_phase;
    copied = s->ckpt_copied;
    if (phase == CKPT_IDLE && long_wal) {
        s->ckpt_phase = CKPT_RUNNING;
        pthread_cond_signal(&s->ckpt_cond);
    }
    if (phase == CKPT_DONE)
        s->ckpt_phase = CKPT_IDLE;
    pthread_mutex_unlock(&s->ckpt_lock);
    if (phase == CKPT_DONE)
        store_checkpoint(s->db, 1, copied);
}

/* Detach up to batch_max queued items (lock held). */
static struct store_req *store_take(struct store *s, unsigned *n)
{
    struct store_req *batch = s->head, *q = batch;
    unsigned i = 1;

    while (q->next && i < s->o.batch_max) {
        q = q->next;
        i++;
    }
    s->head = q->next;
    if (!s->head)
        s->tail = NULL;
    q->next = NULL;
    s->depth -= i;
    metrics_set_queue_depth(s->depth);
    *n = i;
    return batch;
}

/*
 * Wait until the syncer is idle: every committed batch made durable and
 * answered. So each fdatasync covers one transaction, holding everything
 * that arrived during the previous one, instead of many small commits that
 * each write the same index pages to the WAL again (21 transactions became
 * 2 in test_durability). A callback arriving during a sync waits for it,
 * then for its own commit and sync: at most two syncs and one commit, as
 * when every arrival was committed at once but queued for the next sync.
 */
static void store_wait_syncer(struct store *s)
{
    if (!s->syncer_started)
        return;
    pthread_mutex_lock(&s->sync_lock);
    while (s->sync_head || s->syncing)
        pthread_cond_wait(&s->sync_idle, &s->sync_lock);
    pthread_mutex_unlock(&s->sync_lock);
}

/* The writer thread: wait, take a batch, commit, answer; until stopped and drained. */
static void *store_writer(void *arg)
{
    struct store *s = arg;
    struct store_req *batch;
    struct timespec until;
    unsigned n;

    pthread_mutex_lock(&s->lock);
    for (;;) {
        atomic_store(&s->heartbeat, util_now_ns());
        if (!s->head) {
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

/* ---- state ------------------------------------------------------------ */

int store_ready(struct store *s)
{
    uint64_t age = util_now_ns() - atomic_load(&s->heartbeat);

    return atomic_load(&s->ready) && !atomic_load(&s->broken) &&
           age < 10ull * 1000000000ull;
}

const char *store_broken(struct store *s)
{
    return s && atomic_load(&s->broken) == 1 ? s->broken_why : NULL;
}

long store_queue_depth(struct store *s)
{
    long n;

    pthread_mutex_lock(&s->lock);
    n = s->depth;
    pthread_mutex_unlock(&s->lock);
    return n;
}

uint64_t store_heartbeat(struct store *s)
{
    return atomic_load(&s->heartbeat);
}

/* Let the syncer make durable (and answer) what it holds, then stop it. */
static void store_stop_syncer(struct store *s)
{
    store_thread_stop(s->syncer, &s->syncer_started, &s->sync_stop, &s->sync_lock,
                      &s->sync_cond);
}

/* Commit what is queued and stop the writer; later submits get -EAGAIN. */
void store_stop(struct store *s)
{
    if (!s)
        return;
    if (!s->thread_started) {
        store_stop_syncer(s); /* started, but the writer failed to start */
        store_ckpt_stop(s);
        return;
    }
    pthread_mutex_lock(&s->lock);
    s->stopping = 1;
    pthread_cond_signal(&s->cond);
    pthread_mutex_unlock(&s->lock);
    pthread_join(s->thread, NULL);
    s->thread_started = 0;
    store_stop_syncer(s);
    store_ckpt_stop(s);
    atomic_store(&s->ready, 0);
}

/* Stop if still running, then close the database. */
struct store *store_close(struct store *s)
{
    int i;

    if (!s)
        return NULL;
    store_stop(s);
    while (s->n_idle > 0) {
        struct store_reader *r = s->idle[--s->n_idle];
        sqlite3_finalize(r->st);
        sqlite3_close(r->db);
        free(r);
    }
    pthread_mutex_destroy(&s->read_lock);
    pthread_cond_destroy(&s->read_cond);
    pthread_mutex_destroy(&s->sync_lock);
    pthread_cond_destroy(&s->sync_cond);
    pthread_cond_destroy(&s->sync_idle);
    pthread_mutex_destroy(&s->ckpt_lock);
    pthread_cond_destroy(&s->ckpt_cond);
    if (s->wal_fd >= 0)
        close(s->wal_fd);
    free(s->wal_path);
    for (i = 0; i < ST__COUNT; i++)
        sqlite3_finalize(s->st[i]);
    if (s->db)
        sqlite3_close(s->db);
    pthread_mutex_destroy(&s->lock);
    pthread_cond_destroy(&s->cond);
    free(s);
    return NULL;
}
