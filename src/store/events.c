/*
 * events.c: the event log's rows. A new callback is one row, found again
 * by its dedupe key; a redelivery counts one more delivery and gets the
 * answer stored with the first one.
 */
#include "store/store_int.h"

#include <errno.h>

#include "lib/util.h"

enum { EV_FIND, EV_BUMP, EV_INSERT, EV__COUNT };

static const char *const ev_sql[EV__COUNT] = {
    [EV_FIND] = "SELECT id, deliveries, answer FROM events WHERE dedupe_key = ?1",
    [EV_BUMP] = "UPDATE events SET deliveries = deliveries + 1, last_received_at = ?2 "
                "WHERE id = ?1 RETURNING deliveries",
    [EV_INSERT] =
        "INSERT INTO events (received_at, last_received_at, provider, kind, app, "
        "dedupe_key,"
        " verified, order_id, merchant_order_id, amount_fen, status, remote_addr, answer,"
        " fields, body, refund_fen, refund_total_fen) VALUES (?1, ?1, ?2, ?3, ?4, ?5, ?6,"
        " ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16) ON CONFLICT (dedupe_key) DO NOTHING",
};

const struct store_table store_events_table = {"events", ev_sql, EV__COUNT};

#define EV_ST(s, i) STORE_ST(s, TBL_EVENTS, i)

/* Look the event up by dedupe key; 1 found (res filled), 0 not, <0 error. */
static int store_find(struct store *s, struct store_req *q)
{
    sqlite3_stmt *st = EV_ST(s, EV_FIND);
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
    sqlite3_stmt *st = EV_ST(s, EV_BUMP);
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

/* What a new event brings along in its transaction: its follow-up job and
 * its hook deliveries. 1, or -EIO (the event then fails with them: all
 * exist or none). */
static int store_insert_followups(struct store *s, struct store_req *q)
{
    struct store_tx tx = {s, q->received_at};
    const struct store_event *e = q->ev;
    size_t i;

    if (e->followup.kind && store_tx_job_create(&tx, q->res.id, e->app, &e->followup) < 0)
        return -EIO;
    for (i = 0; i < e->n_more; i++)
        if (store_tx_job_create(&tx, q->res.id, e->app, &e->more[i]) < 0)
            return -EIO;
    for (i = 0; i < e->n_hooks; i++)
        if (store_tx_job_create(&tx, q->res.id, e->app, &e->hooks[i]) < 0)
            return -EIO;
    return 1;
}

/* Insert a new event row: 1 inserted, 0 its dedupe key is already stored, -EIO. */
static int store_insert(struct store *s, struct store_req *q)
{
    sqlite3_stmt *st = EV_ST(s, EV_INSERT);
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
    store_bind_text(st, 12, e->answer);
    store_bind_text(st, 13, e->fields);
    sqlite3_bind_blob(st, 14, e->body ? e->body : "", (int)e->body_len, SQLITE_STATIC);
    if (e->has_refund)
        sqlite3_bind_int64(st, 15, e->refund_fen);
    else
        sqlite3_bind_null(st, 15);
    if (e->has_refund_total)
        sqlite3_bind_int64(st, 16, e->refund_total_fen);
    else
        sqlite3_bind_null(st, 16);
    rc = sqlite3_step(st);
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    if (rc != SQLITE_DONE)
        return -EIO;
    if (sqlite3_changes(s->db) == 0)
        return 0;
    q->res.outcome = STORE_NEW;
    q->res.answer = e->answer;
    q->res.id = sqlite3_last_insert_rowid(s->db);
    q->res.deliveries = 1;
    return store_insert_followups(s, q);
}

/*
 * Write one event: a redelivery bumps the count, a new one runs in_tx and
 * inserts. Without in_tx the insert comes first, so a new event -- the
 * common case -- costs one probe of the dedupe index, and a redelivery is
 * recognized by its conflict there.
 */
int store_write_event(struct store *s, struct store_req *q)
{
    struct store_tx tx = {s, q->received_at};
    int r;

    /* A provider that ran out of memory building the key or the answer
     * must not get an event stored that answers "" to every redelivery. */
    if (!q->ev->dedupe_key || (!q->ev->in_tx && !q->ev->answer))
        return -ENOMEM;
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
    if (!q->ev->answer)
        return -ENOMEM;
    if (r == 1) {
        /* Undecided: answered, nothing stored, so the next ask decides again. */
        q->res.outcome = STORE_UNSTORED;
        q->res.answer = q->ev->answer;
        return 0;
    }
    r = store_insert(s, q);
    return r == 1 ? 0 : -EIO;
}
