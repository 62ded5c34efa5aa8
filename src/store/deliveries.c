/*
 * deliveries.c: what an operator does to hook deliveries (payhookctl, via
 * the daemon's control socket, or directly when no daemon holds the store):
 * replay one event to one hook, queue dead deliveries again, and a hook's
 * disabled state (a 410 Gone). Every change goes through the one writer.
 *
 * A replay or retry re-queues the SAME jobs row, so the delivery keeps its
 * id (its webhook-id) and its fixed context (the same body); its attempts
 * start again from zero, the earlier ones stay in query_results.
 */
#include "store/store_int.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

enum { DL_EVENT, DL_REQUEUE, DL_FIND, DL_CREATE, DL_RETRY, DL_DISABLE, DL_ENABLE, DL__COUNT };

#define DL_NOW "strftime('%Y-%m-%dT%H:%M:%fZ', 'now')"

static const char *const dl_sql[DL__COUNT] = {
    [DL_EVENT] = "SELECT pruned_at IS NOT NULL FROM events WHERE id = ?1",
    /* a delivered or dead delivery goes out again; a pending one is left */
    [DL_REQUEUE] = "UPDATE jobs SET state = 'queued', attempts = 0, due_at = " DL_NOW ","
                   " last_error = NULL, finished_at = NULL, outcome = NULL"
                   " WHERE event_id = ?1 AND kind = ?2 AND state IN ('done', 'failed')"
                   " RETURNING id",
    [DL_FIND] = "SELECT id FROM jobs WHERE event_id = ?1 AND kind = ?2",
    /* never had one (its globs did not match, or it came later): the
     * envelope says the confirmation the event has now */
    [DL_CREATE] = "INSERT INTO jobs (event_id, kind, lane, app, due_at, created_at, context)"
                  " SELECT e.id, ?2, ?2, e.app, " DL_NOW ", " DL_NOW ","
                  " coalesce(s.confirmation, 'none') || ' ' || e.deliveries"
                  " FROM events e LEFT JOIN event_status s ON s.id = e.id WHERE e.id = ?1"
                  " RETURNING id",
    [DL_RETRY] = "UPDATE jobs SET state = 'queued', attempts = 0, due_at = " DL_NOW ","
                 " finished_at = NULL WHERE state = 'failed' AND kind LIKE 'hook.%'"
                 " AND (?1 IS NULL OR kind = ?1)",
    [DL_DISABLE] = "INSERT INTO hook_state (hook, disabled_at, reason) VALUES (?1, " DL_NOW
                   ", ?2) ON CONFLICT (hook) DO UPDATE SET disabled_at = excluded.disabled_at,"
                   " reason = excluded.reason",
    [DL_ENABLE] = "DELETE FROM hook_state WHERE hook = ?1",
};

const struct store_table store_deliveries_table = {"deliveries", dl_sql, DL__COUNT};

#define DL_ST(s, i) STORE_ST(s, TBL_DELIVERIES, i)

/* One row's integer column 0 of a bound statement, then reset: 1 found,
 * 0 no row, -EIO. */
static int dl_one_id(sqlite3_stmt *st, int64_t *id)
{
    int rc = sqlite3_step(st);

    if (rc == SQLITE_ROW)
        *id = sqlite3_column_int64(st, 0);
    sqlite3_reset(st);
    return rc == SQLITE_ROW ? 1 : rc == SQLITE_DONE ? 0 : -EIO;
}

struct dl_replay {
    int64_t event_id;
    const char *kind;
    struct store_replay *out;
};

static int dl_replay_write(struct store_tx *tx, void *data)
{
    struct dl_replay *r = data;
    sqlite3_stmt *st = DL_ST(tx->s, DL_EVENT);
    int64_t id = 0;
    int found;

    sqlite3_bind_int64(st, 1, r->event_id);
    if ((found = sqlite3_step(st)) != SQLITE_ROW) {
        sqlite3_reset(st);
        return found == SQLITE_DONE ? -ENOENT : -EIO;
    }
    found = sqlite3_column_int(st, 0);
    sqlite3_reset(st);
    if (found)
        return -ESTALE; /* pruned: its body is gone, no envelope can be built */
    for (int i = DL_REQUEUE; i <= DL_CREATE; i++) {
        st = DL_ST(tx->s, i);
        sqlite3_bind_int64(st, 1, r->event_id);
        sqlite3_bind_text(st, 2, r->kind, -1, SQLITE_STATIC);
        if ((found = dl_one_id(st, &id)) < 0)
            return found;
        if (found) {
            r->out->delivery_id = id;
            r->out->what = i == DL_REQUEUE ? "queued again"
                           : i == DL_FIND  ? "already pending"
                                           : "created";
            return 0;
        }
    }
    return -EIO; /* the insert returned no row: cannot happen */
}

int store_delivery_replay(struct store *s, int64_t event_id, const char *kind,
                          struct store_replay *out)
{
    struct dl_replay r = {event_id, kind, out};

    return store_op_wait(s, dl_replay_write, &r);
}

struct dl_retry {
    const char *kind;
    long changed;
};

static int dl_retry_write(struct store_tx *tx, void *data)
{
    struct dl_retry *r = data;
    sqlite3_stmt *st = DL_ST(tx->s, DL_RETRY);
    int rc;

    store_bind_text(st, 1, r->kind);
    rc = store_step_done(st);
    r->changed = rc == 0 ? sqlite3_changes(sqlite3_db_handle(st)) : 0;
    return rc;
}

int store_deliveries_retry_dead(struct store *s, const char *kind, long *changed)
{
    struct dl_retry r = {kind, 0};
    int rc = store_op_wait(s, dl_retry_write, &r);

    *changed = r.changed;
    return rc;
}

struct dl_state {
    const char *hook, *reason;
};

static int dl_state_write(struct store_tx *tx, void *data)
{
    const struct dl_state *h = data;
    sqlite3_stmt *st = DL_ST(tx->s, h->reason ? DL_DISABLE : DL_ENABLE);

    sqlite3_bind_text(st, 1, h->hook, -1, SQLITE_STATIC);
    if (h->reason)
        sqlite3_bind_text(st, 2, h->reason, -1, SQLITE_STATIC);
    return store_step_done(st);
}

int store_hook_set_disabled(struct store *s, const char *hook, const char *reason)
{
    struct dl_state h = {hook, reason};

    return store_op_wait(s, dl_state_write, &h);
}

int store_hooks_disabled(struct store *s, void (*each)(void *data, const char *hook),
                         void *data)
{
    struct store_reader *r = store_reader_get(s);
    sqlite3_stmt *st;
    int rc = SQLITE_ERROR;

    if (!r)
        return -EIO;
    if ((st = store_reader_stmt(r, "SELECT hook FROM hook_state")) != NULL) {
        while ((rc = sqlite3_step(st)) == SQLITE_ROW)
            each(data, (const char *)sqlite3_column_text(st, 0));
        sqlite3_reset(st);
    }
    store_reader_put(s, r);
    return rc == SQLITE_DONE ? 0 : -EIO;
}
