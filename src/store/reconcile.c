/*
 * reconcile.c: the sweeps of the platforms' order lists in the store. A
 * sweep of (app, day) is a row of reconciliations and a job; each page of
 * the platform's list is one operation on the writer that records the
 * page's findings, the events it synthesises and the next page together,
 * so a restart resumes at the page it was on and a page is never counted
 * twice. The comparison itself is the platform's judge (jobs/reconcile.c).
 */
#include "store/store_int.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/util.h"

enum { RC_RESET, RC_DROP_ITEMS, RC_JOB_FIND, RC_JOB_NEW, RC_PAGE_GUARD, RC_FIND, RC_FIND_MERCHANT,
       RC_FIND_KEY, RC_ITEM,
       RC_SOURCE, RC_CONFIRMED, RC_MARK, RC_COUNT, RC_UNKNOWN, RC_FINISH, RC_GIVE_UP,
       RC__COUNT };

/* A day the sweep did not finish: its row 'open', or 'running' with no
 * sweep job queued or running any more (it failed for good, or its run
 * was lost): both are swept again, or given up. A sweep's job is the one
 * with no event whose context is the day. */
#define RC_UNFINISHED                                                                    \
    "(r.state = 'open' OR (r.state = 'running' AND NOT EXISTS (SELECT 1 FROM jobs j"  \
    " WHERE j.app = r.app AND j.context = r.day AND j.event_id IS NULL"                 \
    " AND j.state IN ('queued', 'running'))))"

static const char *const rc_sql[RC__COUNT] = {
    [RC_RESET] = "INSERT INTO reconciliations (app, day, provider, state, next_page, started_at)"
                 " VALUES (?1, ?2, ?3, 'running', 1, ?4) ON CONFLICT (app, day) DO UPDATE SET"
                 " provider = ?3, platform_count = 0, stored_count = 0, missing = 0,"
                 " mismatched = 0, unknown = 0, state = 'running', next_page = 1,"
                 " started_at = ?4, finished_at = NULL",
    [RC_DROP_ITEMS] = "DELETE FROM reconciliation_items WHERE app = ?1 AND day = ?2",
    [RC_JOB_FIND] = "SELECT id FROM jobs WHERE kind = ?1 AND app = ?2 AND context = ?3"
                    " AND state IN ('queued', 'running')",
    [RC_JOB_NEW] = "INSERT INTO jobs (event_id, kind, lane, app, confirms, due_at, created_at,"
                   " context) VALUES (NULL, ?1, ?2, ?3, 0, ?4, ?4, ?5)",
    [RC_PAGE_GUARD] = "SELECT 1 FROM reconciliations WHERE app = ?1 AND day = ?2"
                      " AND state = 'running' AND next_page = ?3",
    /* by the platform's order id, else by the merchant's: two statements,
     * each a seek of its index (one with OR scanned the provider's events:
     * a sweep of 100,000 orders went quadratic); a paid one first */
    [RC_FIND] = "SELECT id, amount_fen, status, source FROM events"
                " WHERE provider = ?1 AND order_id = ?2 AND kind = ?3 AND app = ?4"
                " ORDER BY (status = ?5) DESC, id LIMIT 1",
    [RC_FIND_MERCHANT] = "SELECT id, amount_fen, status, source FROM events"
                         " WHERE provider = ?1 AND merchant_order_id = ?2 AND kind = ?3"
                         " AND app = ?4 AND (order_id IS NULL OR order_id = '')"
                         " ORDER BY (status = ?5) DESC, id LIMIT 1",
    /* the event stored under the dedupe key a synthesised one would take
     * (its callback labelled with another app, say): that is the order's */
    [RC_FIND_KEY] = "SELECT id, amount_fen, status, source FROM events WHERE dedupe_key = ?1",
    [RC_ITEM] = "INSERT INTO reconciliation_items (app, day, order_id, merchant_order_id,"
                " finding, detail, event_id, amount_fen) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    [RC_SOURCE] = "UPDATE events SET source = 'sweep' WHERE id = ?1",
    /* a sweep's event is confirmed by the sweep itself (event_status) */
    [RC_CONFIRMED] = "INSERT INTO jobs (event_id, kind, lane, app, confirms, state, outcome,"
                     " due_at, created_at, finished_at) VALUES (?1, 'reconcile.sweep', ?2, ?3,"
                     " 1, 'done', 'confirmed', ?4, ?4, ?4) ON CONFLICT (event_id, kind) DO NOTHING",
    [RC_MARK] = "UPDATE events SET reconcile = 'mismatch' WHERE id = ?1",
    [RC_COUNT] = "UPDATE reconciliations SET platform_count = platform_count + ?3,"
                 " stored_count = stored_count + ?4, missing = missing + ?5,"
                 " mismatched = mismatched + ?6, next_page = ?7 WHERE app = ?1 AND day = ?2",
    /* stored verified paid callbacks of the day that the platform did not list */
    [RC_UNKNOWN] = "INSERT INTO reconciliation_items (app, day, order_id, merchant_order_id,"
                   " finding, detail, event_id, amount_fen)"
                   " SELECT ?1, ?2, e.order_id, e.merchant_order_id, 'unknown',"
                   " 'stored paid, not in the platform''s list', e.id, e.amount_fen"
                   " FROM events e WHERE +e.provider = ?3 AND e.kind = ?4 AND e.app = ?1"
                   " AND e.verified = 1 AND e.status = ?5 AND e.source = 'callback'"
                   " AND e.received_at >= ?6 AND e.received_at < ?7"
                   " AND NOT EXISTS (SELECT 1 FROM reconciliation_items i"
                   " WHERE i.app = ?1 AND i.day = ?2 AND i.event_id = e.id)",
    [RC_FINISH] = "UPDATE reconciliations SET unknown = unknown + ?3, finished_at = ?4,"
                  " state = CASE WHEN missing + mismatched + unknown + ?3 = 0 THEN 'reconciled'"
                  " WHEN ?5 THEN 'given_up' ELSE 'open' END"
                  " WHERE app = ?1 AND day = ?2 RETURNING state",
    [RC_GIVE_UP] = "UPDATE reconciliations AS r SET state = 'given_up'"
                   " WHERE app = ?1 AND day < ?2 AND " RC_UNFINISHED,
};

const struct store_table store_reconcile_table = {"reconcile", rc_sql, RC__COUNT};

#define RC_ST(s, i) STORE_ST(s, TBL_RECONCILE, i)

/* ?1 app and ?2 day: every statement of a sweep's day takes them first. */
static void rc_bind_day(sqlite3_stmt *st, const char *app, const char *day)
{
    sqlite3_bind_text(st, 1, app, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, day, -1, SQLITE_STATIC);
}

/* ---- beginning a sweep ---------------------------------------------------- */

struct rc_begin {
    const char *app, *day, *provider, *kind, *lane;
    int64_t job_id;
};

/* The queued or running sweep of (app, day): its id, or 0. */
static int64_t rc_job_find(struct store *s, const struct rc_begin *b)
{
    sqlite3_stmt *st = RC_ST(s, RC_JOB_FIND);
    int64_t id = 0;

    sqlite3_bind_text(st, 1, b->kind, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, b->app, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, b->day, -1, SQLITE_STATIC);
    if (sqlite3_step(st) == SQLITE_ROW)
        id = sqlite3_column_int64(st, 0);
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    return id;
}

static int rc_begin_write(struct store_tx *tx, void *data)
{
    struct rc_begin *b = data;
    struct store *s = tx->s;
    sqlite3_stmt *st;

    if ((b->job_id = rc_job_find(s, b)) != 0)
        return 0; /* one sweep of a day at a time: that one answers */
    st = RC_ST(s, RC_RESET);
    rc_bind_day(st, b->app, b->day);
    sqlite3_bind_text(st, 3, b->provider, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 4, tx->received_at, -1, SQLITE_STATIC);
    if (store_step_done(st) < 0)
        return -EIO;
    st = RC_ST(s, RC_DROP_ITEMS);
    rc_bind_day(st, b->app, b->day);
    if (store_step_done(st) < 0)
        return -EIO;
    st = RC_ST(s, RC_JOB_NEW);
    sqlite3_bind_text(st, 1, b->kind, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, b->lane, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, b->app, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 4, tx->received_at, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 5, b->day, -1, SQLITE_STATIC);
    if (store_step_done(st) < 0)
        return -EIO;
    b->job_id = sqlite3_last_insert_rowid(s->db);
    return 0;
}

int store_reconcile_begin(struct store *s, const char *app, const char *day,
                          const char *provider, const char *kind, const char *lane,
                          int64_t *job_id)
{
    struct rc_begin b = {app, day, provider, kind, lane, 0};
    int r = store_op_wait(s, rc_begin_write, &b);

    if (r == 0)
        *job_id = b.job_id;
    return r;
}

/* ---- one page --------------------------------------------------------------- */

/* Whether the page is the one the sweep is on (a retried page that was
 * recorded already is not recorded twice). 1, 0, -EIO. */
static int rc_page_due(struct store *s, const struct store_sweep_page *p)
{
    sqlite3_stmt *st = RC_ST(s, RC_PAGE_GUARD);
    int rc;

    rc_bind_day(st, p->app, p->day);
    sqlite3_bind_int(st, 3, p->page);
    rc = sqlite3_step(st);
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    return rc == SQLITE_ROW ? 1 : rc == SQLITE_DONE ? 0 : -EIO;
}

/* Step a bound lookup (id, amount_fen, status, source): 1 found (e filled;
 * its strings copied into buf), 0 none, -EIO. */
static int rc_stored(sqlite3_stmt *st, struct store_sweep_stored *e, char *buf, size_t len)
{
    const unsigned char *v;
    int rc;

    if ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        e->id = sqlite3_column_int64(st, 0);
        e->has_amount = sqlite3_column_type(st, 1) != SQLITE_NULL;
        e->amount_fen = sqlite3_column_int64(st, 1);
        v = sqlite3_column_text(st, 2);
        snprintf(buf, len / 2, "%s", v ? (const char *)v : "");
        v = sqlite3_column_text(st, 3);
        snprintf(buf + len / 2, len / 2, "%s", v ? (const char *)v : "callback");
        e->status = buf;
        e->source = buf + len / 2;
    }
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    return rc == SQLITE_ROW ? 1 : rc == SQLITE_DONE ? 0 : -EIO;
}

/* One lookup (which: RC_FIND or RC_FIND_MERCHANT) of an order id; as
 * rc_stored. */
static int rc_find_by(struct store *s, int which, const struct store_sweep_page *p,
                      const char *id, struct store_sweep_stored *e, char *buf, size_t len)
{
    sqlite3_stmt *st = RC_ST(s, which);

    sqlite3_bind_text(st, 1, p->provider, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, id, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, p->kind, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 4, p->app, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 5, p->paid_status, -1, SQLITE_STATIC);
    return rc_stored(st, e, buf, len);
}

/* The event stored under the dedupe key the record's synthesised event
 * would take (so a sweep never writes over, or counts again, a stored
 * callback); as rc_stored, 0 when the record would synthesise none. */
static int rc_find_key(struct store *s, const struct store_sweep_record *r,
                       struct store_sweep_stored *e, char *buf, size_t len)
{
    sqlite3_stmt *st = RC_ST(s, RC_FIND_KEY);

    if (!r->ev || !r->ev->dedupe_key)
        return 0;
    sqlite3_bind_text(st, 1, r->ev->dedupe_key, -1, SQLITE_STATIC);
    return rc_stored(st, e, buf, len);
}

/* The stored event of a record: by the platform's order id, else by the
 * merchant's, else by its dedupe key. 1 found, 0 none, -EIO. */
static int rc_find(struct store *s, const struct store_sweep_page *p,
                   const struct store_sweep_record *r, struct store_sweep_stored *e,
                   char *buf, size_t len)
{
    int found = 0;

    if (r->order_id && r->order_id[0])
        found = rc_find_by(s, RC_FIND, p, r->order_id, e, buf, len);
    if (found == 0 && r->merchant_order_id && r->merchant_order_id[0])
        found = rc_find_by(s, RC_FIND_MERCHANT, p, r->merchant_order_id, e, buf, len);
    return found == 0 ? rc_find_key(s, r, e, buf, len) : found;
}

static const char *const rc_finding_names[] = {
    [FINDING_MATCHED] = "matched", [FINDING_MISSING] = "missing",
    [FINDING_MISMATCH] = "mismatch", [FINDING_UNKNOWN] = "unknown"};

/* One finding row. */
static int rc_item(struct store *s, const struct store_sweep_page *p,
                   const struct store_sweep_record *r, enum store_finding f,
                   const char *detail, int64_t event_id)
{
    sqlite3_stmt *st = RC_ST(s, RC_ITEM);

    rc_bind_day(st, p->app, p->day);
    store_bind_text(st, 3, r->order_id);
    store_bind_text(st, 4, r->merchant_order_id);
    sqlite3_bind_text(st, 5, rc_finding_names[f], -1, SQLITE_STATIC);
    store_bind_text(st, 6, detail && detail[0] ? detail : NULL);
    if (event_id)
        sqlite3_bind_int64(st, 7, event_id);
    if (r->has_amount)
        sqlite3_bind_int64(st, 8, r->amount_fen);
    return store_step_done(st);
}

/* Run a statement that takes one id. */
static int rc_by_id(struct store *s, int which, int64_t id)
{
    sqlite3_stmt *st = RC_ST(s, which);

    sqlite3_bind_int64(st, 1, id);
    return store_step_done(st);
}

/* A paid order with no stored callback: the event its callback would have
 * been (the same dedupe key, so a late callback is its redelivery), from
 * source sweep, confirmed, with its hook deliveries. Its id, or -errno. */
static int64_t rc_synthesise(struct store_tx *tx, const struct store_sweep_page *p,
                             struct store_sweep_record *r)
{
    struct store_req q = {.kind = REQ_EVENT, .ev = r->ev};
    sqlite3_stmt *st;
    int rc;

    snprintf(q.received_at, sizeof(q.received_at), "%s", tx->received_at);
    rc = store_write_event(tx->s, &q);
    free(q.answer_copy);
    if (rc < 0)
        return rc;
    if (q.res.outcome != STORE_NEW) /* rc_find looked its key up first */
        return -EEXIST;
    if (rc_by_id(tx->s, RC_SOURCE, q.res.id) < 0)
        return -EIO;
    st = RC_ST(tx->s, RC_CONFIRMED);
    sqlite3_bind_int64(st, 1, q.res.id);
    sqlite3_bind_text(st, 2, p->provider, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, p->app, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 4, tx->received_at, -1, SQLITE_STATIC);
    return store_step_done(st) < 0 ? -EIO : q.res.id;
}

/* Compare one record with the store and record the finding; *stored set
 * when its order was stored before this sweep. 0 or -errno. */
static int rc_record(struct store_tx *tx, struct store_sweep_page *p,
                     struct store_sweep_record *r, int *stored)
{
    struct store_sweep_stored e = {0};
    char buf[128], detail[192] = "";
    enum store_finding f;
    int64_t id = 0;
    int found = rc_find(tx->s, p, r, &e, buf, sizeof(buf));

    /* only an unpaid notification stored, and the platform says paid: the
     * paid one (its own dedupe key) is what is missing, unless it is
     * stored by that key */
    if (found > 0 && r->paid && strcmp(e.status, p->paid_status) != 0)
        found = rc_find_key(tx->s, r, &e, buf, sizeof(buf));
    if (found < 0)
        return -EIO;
    *stored = found && strcmp(e.source, "sweep") != 0;
    if (!found && !r->paid)
        return 0; /* never paid, never told: nothing to reconcile */
    if (!found && !r->ev) { /* paid, then refunded or refunding: no money to report */
        p->missing++;
        return rc_item(tx->s, p, r, FINDING_MISSING,
                       "paid, then refunded or refunding, no callback: nothing synthesised", 0);
    }
    if (!found) {
        if ((id = rc_synthesise(tx, p, r)) < 0)
            return (int)id;
        p->missing++;
        return rc_item(tx->s, p, r, FINDING_MISSING, "paid, no callback: event synthesised", id);
    }
    f = p->judge(r, &e, detail, sizeof(detail));
    if (f == FINDING_MISMATCH) {
        p->mismatched++;
        if (rc_by_id(tx->s, RC_MARK, e.id) < 0)
            return -EIO;
    }
    return rc_item(tx->s, p, r, f, detail, e.id);
}

/* The day's end: the unknown findings, and its state. */
static int rc_finish(struct store_tx *tx, struct store_sweep_page *p)
{
    struct store *s = tx->s;
    sqlite3_stmt *st = RC_ST(s, RC_UNKNOWN);
    int rc;

    rc_bind_day(st, p->app, p->day);
    sqlite3_bind_text(st, 3, p->provider, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 4, p->kind, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 5, p->paid_status, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 6, p->day_from, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 7, p->day_to, -1, SQLITE_STATIC);
    if (store_step_done(st) < 0)
        return -EIO;
    p->unknown = sqlite3_changes(s->db);
    st = RC_ST(s, RC_FINISH);
    rc_bind_day(st, p->app, p->day);
    sqlite3_bind_int64(st, 3, p->unknown);
    sqlite3_bind_text(st, 4, tx->received_at, -1, SQLITE_STATIC);
    sqlite3_bind_int(st, 5, p->give_up);
    if ((rc = sqlite3_step(st)) == SQLITE_ROW)
        snprintf(p->state, sizeof(p->state), "%s", (const char *)sqlite3_column_text(st, 0));
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    return rc == SQLITE_ROW ? 0 : -EIO;
}

static int rc_page_write(struct store_tx *tx, void *data)
{
    struct store_sweep_page *p = data;
    sqlite3_stmt *st;
    long stored = 0;
    size_t i;
    int r, one;

    p->missing = p->mismatched = p->unknown = 0;
    if ((r = rc_page_due(tx->s, p)) <= 0) {
        p->stale = r == 0;
        return r;
    }
    for (i = 0; i < p->n; i++) {
        if ((r = rc_record(tx, p, &p->recs[i], &one)) < 0)
            return r;
        stored += one;
    }
    st = RC_ST(tx->s, RC_COUNT);
    rc_bind_day(st, p->app, p->day);
    sqlite3_bind_int64(st, 3, (int64_t)p->n);
    sqlite3_bind_int64(st, 4, stored);
    sqlite3_bind_int64(st, 5, p->missing);
    sqlite3_bind_int64(st, 6, p->mismatched);
    sqlite3_bind_int(st, 7, p->page + 1);
    if (store_step_done(st) < 0)
        return -EIO;
    snprintf(p->state, sizeof(p->state), "running");
    return p->last ? rc_finish(tx, p) : 0;
}

int store_reconcile_page(struct store *s, struct store_sweep_page *p)
{
    p->stale = 0;
    return store_op_wait(s, rc_page_write, p);
}

struct rc_give_up {
    const char *app, *before;
};

static int rc_give_up_write(struct store_tx *tx, void *data)
{
    const struct rc_give_up *g = data;
    sqlite3_stmt *st = RC_ST(tx->s, RC_GIVE_UP);

    sqlite3_bind_text(st, 1, g->app, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, g->before, -1, SQLITE_STATIC);
    return store_step_done(st);
}

int store_reconcile_give_up(struct store *s, const char *app, const char *before)
{
    struct rc_give_up g = {app, before};

    return store_op_wait(s, rc_give_up_write, &g);
}

/* ---- reads ------------------------------------------------------------------ */

static const char rc_next_sql[] =
    "SELECT next_page, state FROM reconciliations WHERE app = ?1 AND day = ?2";
static const char rc_open_sql[] =
    "SELECT day FROM reconciliations r WHERE app = ?1 AND day >= ?2 AND " RC_UNFINISHED
    " ORDER BY day";
static const char rc_meta_sql[] = "SELECT value FROM meta WHERE key = ?1";
static const char rc_job_state_sql[] = "SELECT state, last_error FROM jobs WHERE id = ?1";
struct rc_next {
    int *page;
    char *state;
    size_t len;
    int found;
};

static int rc_next_row(sqlite3_stmt *st, void *data)
{
    struct rc_next *n = data;

    *n->page = sqlite3_column_int(st, 0);
    snprintf(n->state, n->len, "%s", (const char *)sqlite3_column_text(st, 1));
    n->found = 1;
    return 0;
}

int store_reconcile_next(struct store *s, const char *app, const char *day, int *page,
                         char *state, size_t len)
{
    struct rc_next n = {page, state, len, 0};
    int r = store_read_rows(s, rc_next_sql, app, day, rc_next_row, &n);

    return r < 0 ? r : n.found;
}

struct rc_meta {
    char *buf;
    size_t len;
};

static int rc_meta_row(sqlite3_stmt *st, void *data)
{
    struct rc_meta *m = data;
    const unsigned char *v = sqlite3_column_text(st, 0);

    snprintf(m->buf, m->len, "%s", v ? (const char *)v : "");
    return 0;
}

int store_get_meta(struct store *s, const char *key, char *buf, size_t len)
{
    struct rc_meta m = {buf, len};

    buf[0] = '\0';
    return store_read_rows(s, rc_meta_sql, key, NULL, rc_meta_row, &m);
}

struct rc_open {
    void (*fn)(void *data, const char *day);
    void *data;
};

static int rc_open_row(sqlite3_stmt *st, void *data)
{
    struct rc_open *o = data;

    o->fn(o->data, (const char *)sqlite3_column_text(st, 0));
    return 0;
}

int store_reconcile_open_days(struct store *s, const char *app, const char *since,
                              void (*fn)(void *data, const char *day), void *data)
{
    struct rc_open o = {fn, data};

    return store_read_rows(s, rc_open_sql, app, since, rc_open_row, &o);
}

int store_job_state(struct store *s, int64_t job_id, char *state, size_t len, char *error,
                    size_t elen)
{
    struct store_reader *r = store_reader_get(s);
    sqlite3_stmt *st;
    int rc = SQLITE_ERROR;

    if (!r)
        return -EIO;
    if ((st = store_reader_stmt(r, rc_job_state_sql)) != NULL) {
        sqlite3_bind_int64(st, 1, job_id);
        if ((rc = sqlite3_step(st)) == SQLITE_ROW) {
            const unsigned char *e = sqlite3_column_text(st, 1);
            snprintf(state, len, "%s", (const char *)sqlite3_column_text(st, 0));
            snprintf(error, elen, "%s", e ? (const char *)e : "");
        }
        sqlite3_reset(st);
    }
    store_reader_put(s, r);
    return rc == SQLITE_ROW ? 1 : rc == SQLITE_DONE ? 0 : -EIO;
}
