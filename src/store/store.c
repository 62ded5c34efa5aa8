/*
 * store.c: opening the SQLite store (version check, migrations, connection
 * settings, every file's statement table), its state for health checks,
 * and closing it. The writer, the syncer, the checkpointer and the readers
 * live in files of their own (see store_int.h).
 */
#include "store/store_int.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include "lib/util.h"

/* Every file's statement table, prepared on the writer's connection. */
static const struct store_table *const store_tables[TBL__COUNT] = {
    [TBL_TX] = &store_tx_table,
    [TBL_EVENTS] = &store_events_table,
    [TBL_REJECTIONS] = &store_rejections_table,
    [TBL_BAIDU] = &store_baidu_table,
    [TBL_TOKENS] = &store_tokens_table,
    [TBL_JOBS] = &store_jobs_table,
    [TBL_DELIVERIES] = &store_deliveries_table,
    [TBL_ALIPAY] = &store_alipay_table,
    [TBL_PRUNE] = &store_prune_table,
    [TBL_RECONCILE] = &store_reconcile_table,
};

/* ---- statement helpers --------------------------------------------------- */

int store_run(sqlite3_stmt *st)
{
    int rc = sqlite3_step(st);

    sqlite3_reset(st);
    return rc == SQLITE_DONE || rc == SQLITE_ROW ? SQLITE_DONE : rc;
}

void store_bind_text(sqlite3_stmt *st, int i, const char *v)
{
    if (v)
        sqlite3_bind_text(st, i, v, -1, SQLITE_STATIC);
    else
        sqlite3_bind_null(st, i);
}

int store_step_done(sqlite3_stmt *st)
{
    int rc = sqlite3_step(st);

    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    return rc == SQLITE_DONE ? 0 : -EIO;
}

int store_first_text(sqlite3_stmt *st, const char *arg, char *buf, size_t len)
{
    const unsigned char *v;
    int rc, r = 0;

    sqlite3_bind_text(st, 1, arg, -1, SQLITE_STATIC);
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW && (v = sqlite3_column_text(st, 0)) != NULL) {
        /* A cut number or id would be a wrong one: refuse instead. */
        if ((size_t)sqlite3_column_bytes(st, 0) >= len) {
            r = -ENOSPC;
        } else {
            memcpy(buf, v, (size_t)sqlite3_column_bytes(st, 0) + 1);
            r = 1;
        }
    } else if (rc != SQLITE_ROW && rc != SQLITE_DONE) {
        r = -EIO;
    }
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    return r;
}

/* ---- opening and migrations ---------------------------------------------- */

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

/* Prepare every statement of every table once. */
static int store_prepare(struct store *s, char *err, size_t errlen)
{
    const struct store_table *t;
    size_t i, j;

    for (i = 0; i < TBL__COUNT; i++) {
        t = store_tables[i];
        s->st[i] = calloc(t->n, sizeof(sqlite3_stmt *));
        if (!s->st[i]) {
            snprintf(err, errlen, "out of memory");
            return -ENOMEM;
        }
        for (j = 0; j < t->n; j++) {
            if (sqlite3_prepare_v3(s->db, t->sql[j], -1, SQLITE_PREPARE_PERSISTENT,
                                   &s->st[i][j], NULL) != SQLITE_OK) {
                snprintf(err, errlen, "cannot prepare statement %zu of %s: %s", j,
                         t->name, sqlite3_errmsg(s->db));
                return -EIO;
            }
        }
    }
    return 0;
}

/* Finalize every prepared statement. */
static void store_unprepare(struct store *s)
{
    size_t i, j;

    for (i = 0; i < TBL__COUNT; i++) {
        for (j = 0; s->st[i] && j < store_tables[i]->n; j++)
            sqlite3_finalize(s->st[i][j]);
        free(s->st[i]);
        s->st[i] = NULL;
    }
}

/*
 * One payhookd per store: an exclusive flock on "<path>.lock", which holds
 * the owner's pid, host and start time so a second daemon can say who has
 * it. A second writer would contend with intake for the WAL lock, and two
 * schedulers would run every job twice. The kernel drops the lock when the
 * process dies, however it dies.
 */
static int store_lock(struct store *s, char *err, size_t errlen)
{
    char path[4096], who[256], host[128] = "?", now[32];
    ssize_t n;

    snprintf(path, sizeof(path), "%s.lock", s->o.path);
    s->lock_fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0640);
    if (s->lock_fd < 0) {
        snprintf(err, errlen, "cannot open store %s: its lock file %s: %s", s->o.path,
                 path, strerror(errno));
        return -errno;
    }
    if (flock(s->lock_fd, LOCK_EX | LOCK_NB) < 0) {
        int e = errno;
        n = pread(s->lock_fd, who, sizeof(who) - 1, 0);
        who[n > 0 ? n : 0] = '\0';
        who[strcspn(who, "\n")] = '\0';
        snprintf(err, errlen,
                 e == EWOULDBLOCK ? "store %s is in use by another payhookd (%s): one "
                                    "payhookd per store"
                                  : "cannot lock the store %s (%s)",
                 s->o.path, e == EWOULDBLOCK ? (who[0] ? who : "unknown") : strerror(e));
        return e == EWOULDBLOCK ? -EBUSY : -e;
    }
    gethostname(host, sizeof(host) - 1);
    util_iso8601_now(now);
    n = snprintf(who, sizeof(who), "pid %ld on %s since %s\n", (long)getpid(), host, now);
    if (ftruncate(s->lock_fd, 0) < 0 || pwrite(s->lock_fd, who, (size_t)n, 0) != n) {
        snprintf(err, errlen, "cannot write the store's lock file %s: %s", path,
                 strerror(errno));
        return -EIO;
    }
    return 0;
}

/* A zeroed store with its locks and defaults. */
static struct store *store_new(const struct store_options *o)
{
    struct store *s = calloc(1, sizeof(*s));

    if (!s)
        return NULL;
    s->o = *o;
    if (!s->o.rejection_queue_max)
        s->o.rejection_queue_max = 256;
    /* 0 would make the writer take empty batches forever: the config's defaults */
    if (!s->o.batch_max)
        s->o.batch_max = 512;
    if (!s->o.queue_max)
        s->o.queue_max = 16384;
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
    s->lock_fd = -1;
    if (asprintf(&s->wal_path, "%s-wal", o->path) < 0) {
        s->wal_path = NULL;
        store_close(s);
        return NULL;
    }
    return s;
}

/* Open, migrate, prepare, start the writer. */
int store_open(const struct store_options *o, struct store **out, char *err,
               size_t errlen)
{
    struct store *s = store_new(o);
    int r = -ENOMEM, version;

    if (!s) {
        snprintf(err, errlen, "out of memory");
        return r;
    }
    if ((r = store_lock(s, err, errlen)) < 0)
        goto fail;
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
    if (o->synchronous_full && (r = store_syncer_start(s)) < 0) {
        snprintf(err, errlen, "cannot start the syncer thread");
        goto fail;
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
    store_close(s);
    return r;
}

/* ---- state --------------------------------------------------------------- */

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

/* ---- stopping and closing ------------------------------------------------ */

/* Commit what is queued and stop the writer; later submits get -EAGAIN. */
void store_stop(struct store *s)
{
    if (!s)
        return;
    if (!s->thread_started) {
        store_syncer_stop(s); /* started, but the writer failed to start */
        store_ckpt_stop(s);
        return;
    }
    pthread_mutex_lock(&s->lock);
    s->stopping = 1;
    pthread_cond_signal(&s->cond);
    pthread_mutex_unlock(&s->lock);
    pthread_join(s->thread, NULL);
    s->thread_started = 0;
    store_syncer_stop(s);
    store_ckpt_stop(s);
    atomic_store(&s->ready, 0);
}

/* Stop if still running, then close the database. */
struct store *store_close(struct store *s)
{
    if (!s)
        return NULL;
    store_stop(s);
    store_readers_close(s);
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
    store_unprepare(s);
    if (s->db)
        sqlite3_close(s->db);
    if (s->lock_fd >= 0)
        close(s->lock_fd); /* releases the lock, once the database is closed */
    pthread_mutex_destroy(&s->lock);
    pthread_cond_destroy(&s->cond);
    free(s);
    return NULL;
}
