/*
 * checkpoint.c: copying the WAL into the database file without stalling
 * the writer (see the comment below).
 */
#include "store/store_int.h"

#include <errno.h>

#include "lib/metrics.h"

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
int store_ckpt_start(struct store *s)
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
void store_thread_stop(pthread_t t, int *started, int *stop, pthread_mutex_t *lock,
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
void store_ckpt_stop(struct store *s)
{
    store_thread_stop(s->ckpt_thread, &s->ckpt_started, &s->ckpt_stop, &s->ckpt_lock,
                      &s->ckpt_cond);
    sqlite3_close(s->ckpt_db);
    s->ckpt_db = NULL;
}

/* Writer, between batches: start phase 1 when the WAL is long, finish with
 * phase 2 when phase 1 is over. */
void store_checkpoint_due(struct store *s)
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
