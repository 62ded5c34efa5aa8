/*
 * jobs.c: the follow-up job queue in the store. A job is created in its
 * event's transaction; it is claimed (one more attempt, a lease), run by a
 * worker off the store, and finished with a query_results row -- every
 * change through the one writer. The scheduler reads due jobs on a reader
 * connection and never holds one while a call waits on the network.
 */
#include "store/store_int.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/util.h"

enum { JB_CREATE, JB_CLAIM, JB_FINISH, JB_RESULT, JB_RECOVER, JB_RELEASE, JB_META,
       JB_SCHEDULE_SOONER, JB_SCHEDULE_NEW, JB_CANCEL, JB_RUNNING, JB_ATTEMPTS, JB_UNCLAIM,
       JB__COUNT };

/* When a job created at ?1 with a delay of ?2 seconds is due. */
#define JB_DUE_AT(now, delay) "strftime('%Y-%m-%dT%H:%M:%fZ', " now ", '+' || " delay " || ' seconds')"

static const char *const jb_sql[JB__COUNT] = {
    [JB_CREATE] = "INSERT INTO jobs (event_id, kind, lane, app, confirms, due_at, created_at,"
                  " context)"
                  " VALUES (?1, ?2, ?3, ?4, ?5,"
                  " strftime('%Y-%m-%dT%H:%M:%fZ', ?6, '+' || ?7 || ' seconds'), ?6,"
                  " CASE WHEN ?8 IS NOT NULL THEN ?8 || ' ' ||"
                  " (SELECT deliveries FROM events WHERE id = ?1) END)"
                  " ON CONFLICT (event_id, kind) DO NOTHING",
    /* no RETURNING: SQLite keeps its rows in an ephemeral table, a b-tree
     * built and freed per statement, which cost half the writer's time per
     * claimed job (and a heap trim each); JB_ATTEMPTS reads the count back */
    [JB_CLAIM] = "UPDATE jobs SET state = 'running', attempts = attempts + 1,"
                 " lease_until = ?2, last_attempt_at = ?3"
                 " WHERE id = ?1 AND state = 'queued'",
    [JB_FINISH] = "UPDATE jobs SET state = ?2, outcome = ?3, due_at = coalesce(?4, due_at),"
                  " last_error = ?5, lease_until = NULL,"
                  " finished_at = CASE WHEN ?2 IN ('done', 'failed') THEN ?6 END"
                  " WHERE id = ?1 AND state = 'running'",
    [JB_RESULT] = "INSERT INTO query_results (job_id, event_id, at, endpoint, http_status,"
                  " platform_code, outcome, detail, duration_ms, body)"
                  " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
    [JB_RECOVER] = "UPDATE jobs SET state = 'queued', lease_until = NULL"
                   " WHERE state = 'running'",
    [JB_RELEASE] = "UPDATE jobs SET state = 'queued', lease_until = NULL,"
                   " due_at = coalesce(?2, due_at) WHERE id = ?1 AND state = 'running'",
    [JB_META] = "INSERT INTO meta (key, value) VALUES (?1, ?2)"
                " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
    [JB_SCHEDULE_SOONER] = "UPDATE jobs SET due_at = min(due_at, " JB_DUE_AT("?3", "?4") ")"
                           " WHERE app = ?1 AND kind = ?2 AND state = 'queued'",
    [JB_SCHEDULE_NEW] = "INSERT INTO jobs (event_id, kind, lane, app, confirms, due_at, created_at)"
                        " VALUES (?6, ?2, ?5, ?1, 0, " JB_DUE_AT("?3", "?4") ", ?3)",
    [JB_CANCEL] = "UPDATE jobs SET state = 'failed', outcome = 'cancelled', last_error = ?3,"
                  " finished_at = ?4 WHERE app = ?1 AND lane = ?2 AND (state = 'queued'"
                  /* a running token job's answer would write credentials back;
                   * a running query's answer (a confirmation) is still the
                   * platform's word on a payment, and is recorded */
                  " OR (state = 'running' AND lane GLOB '*.tokens'))",
    [JB_RUNNING] = "SELECT 1 FROM jobs WHERE app = ?1 AND kind = ?2 AND state = 'running'",
    [JB_ATTEMPTS] = "SELECT attempts FROM jobs WHERE id = ?1",
    /* claimed, never started: as if never claimed, its attempt not spent */
    [JB_UNCLAIM] = "UPDATE jobs SET state = 'queued', lease_until = NULL,"
                   " attempts = max(attempts - 1, 0) WHERE id = ?1 AND state = 'running'",
};

const struct store_table store_jobs_table = {"jobs", jb_sql, JB__COUNT};

#define JB_ST(s, i) STORE_ST(s, TBL_JOBS, i)

/* Read-only, on reader connections. */
/* A skip-scan of the partial index jobs_due: a seek per lane, not a pass
 * over the backlog (the plain GROUP BY read every queued job, each time the
 * dispatcher looked: with a 70k-delivery backlog, deliveries/s fell 3x). */
static const char jb_lanes_sql[] =
    "WITH RECURSIVE l(lane) AS ("
    " SELECT min(lane) FROM jobs INDEXED BY jobs_due WHERE state = 'queued'"
    " UNION ALL SELECT (SELECT min(lane) FROM jobs INDEXED BY jobs_due"
    " WHERE state = 'queued' AND lane > l.lane) FROM l WHERE l.lane IS NOT NULL)"
    " SELECT lane, (SELECT min(due_at) FROM jobs INDEXED BY jobs_due"
    " WHERE state = 'queued' AND lane = l.lane) FROM l WHERE lane IS NOT NULL LIMIT ?1";
#define JB_DUE_COLUMNS                                                                   \
    "SELECT j.id, j.event_id, j.kind, j.lane, j.app, j.attempts, e.provider, e.kind,"      \
    " e.order_id, e.merchant_order_id, e.status, e.fields, e.amount_fen, e.refund_fen,"  \
    " e.received_at, e.verified, j.context, CASE WHEN j.context IS NOT NULL THEN e.body END," \
    " e.refund_total_fen,"                                                                 \
    /* the tokens a Baidu query uses (only Baidu's come from the store);      \
     * never read for a hook's delivery or another platform's job */                    \
    " CASE WHEN j.lane GLOB 'baidu*' THEN (SELECT access_token FROM tokens WHERE app = j.app) END," \
    " CASE WHEN j.lane GLOB 'baidu*' THEN (SELECT refresh_token FROM tokens WHERE app = j.app) END," \
    " CASE WHEN j.lane GLOB 'baidu*' THEN (SELECT access_token FROM tokens WHERE app = 'tp') END," \
    " CASE WHEN j.kind = 'baidu.tp_token' THEN (SELECT ticket FROM tp_ticket) END,"    \
    " e.source"                                                                            \
    " FROM jobs j LEFT JOIN events e ON e.id = j.event_id"                                 \
    " WHERE j.state = 'queued' AND j.lane = ?1 AND j.due_at <= ?2"
static const char jb_due_sql[] = JB_DUE_COLUMNS " ORDER BY j.due_at LIMIT ?3";
/* Hook lanes keep each order's deliveries in the order its events were
 * stored: a delivery waits while an earlier event of the same order has
 * one queued or running to the same hook (a dead one does not hold it). */
static const char jb_due_hook_sql[] =
    JB_DUE_COLUMNS " AND NOT EXISTS (SELECT 1 FROM events pe JOIN jobs p ON p.event_id = pe.id"
                   " AND p.kind = j.kind WHERE pe.provider = e.provider"
                   " AND pe.order_id = e.order_id AND pe.id < e.id"
                   " AND p.state IN ('queued', 'running'))"
                   " ORDER BY j.due_at LIMIT ?3";
/* Lanes named "*.tokens" run one job per app at a time: an app's next token
 * job is handed out only once no other of its token jobs is running, so
 * two workers never spend one single-use refresh token. The claim is
 * durable before the hand-over, so the next read sees it running. */
static const char jb_due_per_app_sql[] =
    JB_DUE_COLUMNS " AND NOT EXISTS (SELECT 1 FROM jobs r WHERE r.lane = j.lane"
                   " AND r.app IS j.app AND r.state = 'running')"
                   " AND j.id = (SELECT min(q.id) FROM jobs q WHERE q.lane = j.lane"
                   " AND q.app IS j.app AND q.state = 'queued' AND q.due_at <= ?2)"
                   " ORDER BY j.due_at LIMIT ?3";
static const char jb_counts_sql[] = "SELECT state, count(*) FROM jobs GROUP BY state";

/* ---- in the event's transaction ---------------------------------------- */

static int jb_schedule(struct store_tx *tx, int64_t event_id, const char *app,
                       const struct store_followup *f);

int store_tx_job_create(struct store_tx *tx, int64_t event_id, const char *app,
                        const struct store_followup *f)
{
    sqlite3_stmt *st = JB_ST(tx->s, JB_CREATE);
    int r;

    if (f->token_app && (r = store_tx_token_exists(tx, f->token_app)) <= 0)
        return r; /* no token to ask with: no query (confirmation none) */
    if (f->once_per_app)
        return app ? jb_schedule(tx, event_id, app, f) : 0;
    sqlite3_bind_int64(st, 1, event_id);
    sqlite3_bind_text(st, 2, f->kind, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, f->lane, -1, SQLITE_STATIC);
    store_bind_text(st, 4, app);
    sqlite3_bind_int(st, 5, f->confirms ? 1 : 0);
    sqlite3_bind_text(st, 6, tx->received_at, -1, SQLITE_STATIC);
    sqlite3_bind_int(st, 7, (int)f->delay_s);
    store_bind_text(st, 8, f->confirmation);
    return store_step_done(st);
}

/* Bind what both schedule statements take: ?1 app, ?2 kind, ?3 now, ?4 delay. */
static sqlite3_stmt *jb_schedule_stmt(struct store_tx *tx, int which, const char *app,
                                      const struct store_followup *f)
{
    sqlite3_stmt *st = JB_ST(tx->s, which);

    sqlite3_bind_text(st, 1, app, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, f->kind, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, tx->received_at, -1, SQLITE_STATIC);
    sqlite3_bind_int(st, 4, (int)f->delay_s);
    return st;
}

/* One queued job per (app, kind), caused by event_id (0: none). */
static int jb_schedule(struct store_tx *tx, int64_t event_id, const char *app,
                       const struct store_followup *f)
{
    sqlite3_stmt *st;

    if (store_step_done(jb_schedule_stmt(tx, JB_SCHEDULE_SOONER, app, f)) < 0)
        return -EIO;
    if (sqlite3_changes(tx->s->db) > 0)
        return 0; /* one was queued: brought forward if need be */
    st = jb_schedule_stmt(tx, JB_SCHEDULE_NEW, app, f);
    sqlite3_bind_text(st, 5, f->lane, -1, SQLITE_STATIC);
    if (event_id)
        sqlite3_bind_int64(st, 6, event_id);
    return store_step_done(st);
}

int store_tx_job_schedule(struct store_tx *tx, const char *app, const struct store_followup *f)
{
    return jb_schedule(tx, 0, app, f);
}

struct jb_now {
    const char *app;
    const struct store_followup *f;
};

static int jb_now_write(struct store_tx *tx, void *data)
{
    const struct jb_now *n = data;
    struct store_followup f = *n->f;
    int r = store_tx_token_exists(tx, n->app);

    if (r <= 0)
        return r < 0 ? r : -ENOKEY;
    f.delay_s = 0;
    return store_tx_job_schedule(tx, n->app, &f);
}

int store_job_schedule_now(struct store *s, const char *app, const struct store_followup *f)
{
    struct jb_now n = {app, f};

    return store_op_wait(s, jb_now_write, &n);
}

int store_tx_job_running(struct store_tx *tx, const char *app, const char *kind)
{
    sqlite3_stmt *st = JB_ST(tx->s, JB_RUNNING);
    int rc;

    sqlite3_bind_text(st, 1, app, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, kind, -1, SQLITE_STATIC);
    rc = sqlite3_step(st);
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    return rc == SQLITE_ROW ? 1 : rc == SQLITE_DONE ? 0 : -EIO;
}

int store_tx_jobs_cancel(struct store_tx *tx, const char *app, const char *lane,
                         const char *why)
{
    sqlite3_stmt *st = JB_ST(tx->s, JB_CANCEL);

    sqlite3_bind_text(st, 1, app, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, lane, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, why, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 4, tx->received_at, -1, SQLITE_STATIC);
    return store_step_done(st);
}

/* ---- reads ------------------------------------------------------------- */

int store_jobs_lanes(struct store *s, struct store_lane *out, size_t max, size_t *n)
{
    struct store_reader *r = store_reader_get(s);
    sqlite3_stmt *st;
    int rc = SQLITE_ERROR;

    *n = 0;
    if (!r)
        return -EIO;
    if ((st = store_reader_stmt(r, jb_lanes_sql)) != NULL) {
        sqlite3_bind_int64(st, 1, (sqlite3_int64)max);
        while ((rc = sqlite3_step(st)) == SQLITE_ROW && *n < max) {
            snprintf(out[*n].lane, sizeof(out[*n].lane), "%s",
                     (const char *)sqlite3_column_text(st, 0));
            snprintf(out[*n].next_due, sizeof(out[*n].next_due), "%s",
                     (const char *)sqlite3_column_text(st, 1));
            (*n)++;
        }
        sqlite3_reset(st);
    }
    store_reader_put(s, r);
    return rc == SQLITE_DONE || rc == SQLITE_ROW ? 0 : -EIO;
}

/* Column i as a malloc'd string, NULL for NULL; -ENOMEM through *bad. */
static char *jb_text(sqlite3_stmt *st, int i, int *bad)
{
    const unsigned char *v = sqlite3_column_text(st, i);
    char *c;

    if (!v)
        return NULL;
    if (!(c = strdup((const char *)v)))
        *bad = 1;
    return c;
}

/* One due row into a job. 0 or -ENOMEM. */
static int jb_row(sqlite3_stmt *st, struct store_job *j)
{
    int bad = 0;

    j->id = sqlite3_column_int64(st, 0);
    j->event_id = sqlite3_column_int64(st, 1);
    snprintf(j->kind, sizeof(j->kind), "%s", (const char *)sqlite3_column_text(st, 2));
    snprintf(j->lane, sizeof(j->lane), "%s", (const char *)sqlite3_column_text(st, 3));
    j->app = jb_text(st, 4, &bad);
    j->attempts = (unsigned)sqlite3_column_int(st, 5);
    j->provider = jb_text(st, 6, &bad);
    j->ev_kind = jb_text(st, 7, &bad);
    j->order_id = jb_text(st, 8, &bad);
    j->merchant_order_id = jb_text(st, 9, &bad);
    j->status = jb_text(st, 10, &bad);
    j->fields = jb_text(st, 11, &bad);
    j->has_amount = sqlite3_column_type(st, 12) != SQLITE_NULL;
    j->amount_fen = sqlite3_column_int64(st, 12);
    j->has_refund = sqlite3_column_type(st, 13) != SQLITE_NULL;
    j->refund_fen = sqlite3_column_int64(st, 13);
    j->received_at = jb_text(st, 14, &bad);
    j->verified = sqlite3_column_int(st, 15);
    j->context = jb_text(st, 16, &bad);
    if (sqlite3_column_type(st, 17) != SQLITE_NULL) {
        const void *b = sqlite3_column_blob(st, 17);
        j->body_len = (size_t)sqlite3_column_bytes(st, 17);
        if (!(j->body = malloc(j->body_len + 1)))
            bad = 1;
        else if (j->body_len)
            memcpy(j->body, b, j->body_len);
    }
    j->has_refund_total = sqlite3_column_type(st, 18) != SQLITE_NULL;
    j->refund_total_fen = sqlite3_column_int64(st, 18);
    j->token = jb_text(st, 19, &bad);
    j->refresh_token = jb_text(st, 20, &bad);
    j->tp_token = jb_text(st, 21, &bad);
    j->ticket = jb_text(st, 22, &bad);
    j->source = jb_text(st, 23, &bad);
    return bad ? -ENOMEM : 0;
}

/* The due read for a lane: hooks keep each order's order, token lanes run
 * one job per app. */
static const char *jb_due_sql_for(const char *lane)
{
    size_t n = strlen(lane);

    if (strncmp(lane, "hook.", 5) == 0)
        return jb_due_hook_sql;
    if (n > 7 && strcmp(lane + n - 7, ".tokens") == 0)
        return jb_due_per_app_sql;
    return jb_due_sql;
}

int store_jobs_due(struct store *s, const char *lane, const char *now, unsigned limit,
                   struct store_job **out, size_t *n)
{
    struct store_reader *r;
    struct store_job *jobs = calloc(limit ? limit : 1, sizeof(*jobs));
    sqlite3_stmt *st;
    int rc = SQLITE_ERROR, ret = -EIO;

    *n = 0;
    if (!jobs)
        return -ENOMEM;
    if (!(r = store_reader_get(s))) {
        free(jobs);
        return -EIO;
    }
    if ((st = store_reader_stmt(r, jb_due_sql_for(lane))) != NULL) {
        sqlite3_bind_text(st, 1, lane, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 2, now, -1, SQLITE_STATIC);
        sqlite3_bind_int(st, 3, (int)limit);
        ret = 0;
        while (ret == 0 && *n < limit && (rc = sqlite3_step(st)) == SQLITE_ROW)
            ret = jb_row(st, &jobs[(*n)++]);
        if (ret == 0 && rc != SQLITE_ROW && rc != SQLITE_DONE)
            ret = -EIO;
        sqlite3_reset(st);
        sqlite3_clear_bindings(st);
    }
    store_reader_put(s, r);
    if (ret < 0) {
        store_jobs_free(jobs, *n);
        *n = 0;
        return ret;
    }
    *out = jobs;
    return 0;
}

void store_job_clear(struct store_job *j)
{
    util_free_secret(&j->token);
    util_free_secret(&j->refresh_token);
    util_free_secret(&j->tp_token);
    util_free_secret(&j->ticket);
    free(j->app);
    free(j->provider);
    free(j->ev_kind);
    free(j->order_id);
    free(j->merchant_order_id);
    free(j->status);
    free(j->fields);
    free(j->received_at);
    free(j->context);
    free(j->source);
    free(j->body);
    memset(j, 0, sizeof(*j));
}

void store_jobs_free(struct store_job *jobs, size_t n)
{
    size_t i;

    for (i = 0; jobs && i < n; i++)
        store_job_clear(&jobs[i]);
    free(jobs);
}

int store_jobs_counts(struct store *s, long counts[4])
{
    static const char *const names[4] = {"queued", "running", "done", "failed"};
    struct store_reader *r = store_reader_get(s);
    sqlite3_stmt *st;
    int rc = SQLITE_ERROR, i;

    memset(counts, 0, 4 * sizeof(long));
    if (!r)
        return -EIO;
    if ((st = store_reader_stmt(r, jb_counts_sql)) != NULL) {
        while ((rc = sqlite3_step(st)) == SQLITE_ROW)
            for (i = 0; i < 4; i++)
                if (strcmp((const char *)sqlite3_column_text(st, 0), names[i]) == 0)
                    counts[i] = (long)sqlite3_column_int64(st, 1);
        sqlite3_reset(st);
    }
    store_reader_put(s, r);
    return rc == SQLITE_DONE ? 0 : -EIO;
}

/* ---- writes (through the writer) ---------------------------------------- */

/* What a claim op is given. */
struct jb_claim {
    struct store_job *jobs;
    size_t n;
    const char *lease_until;
};

/* In the transaction: the attempts of a job just claimed (its new count). */
static int jb_attempts(struct store_tx *tx, struct store_job *j)
{
    sqlite3_stmt *st = JB_ST(tx->s, JB_ATTEMPTS);
    int rc;

    sqlite3_bind_int64(st, 1, j->id);
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW)
        j->attempts = (unsigned)sqlite3_column_int(st, 0);
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    return rc == SQLITE_ROW ? 0 : -EIO;
}

/* In the transaction: claim each job still queued. */
static int jb_claim_write(struct store_tx *tx, void *data)
{
    struct jb_claim *c = data;
    sqlite3_stmt *st = JB_ST(tx->s, JB_CLAIM);
    size_t i;
    int r;

    for (i = 0; i < c->n; i++) {
        sqlite3_bind_int64(st, 1, c->jobs[i].id);
        sqlite3_bind_text(st, 2, c->lease_until, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 3, tx->received_at, -1, SQLITE_STATIC);
        if ((r = store_step_done(st)) < 0)
            return r;
        c->jobs[i].claimed = sqlite3_changes(tx->s->db) == 1;
        if (c->jobs[i].claimed && (r = jb_attempts(tx, &c->jobs[i])) < 0)
            return r;
    }
    return 0;
}

int store_jobs_claim(struct store *s, struct store_job *jobs, size_t n,
                     const char *lease_until)
{
    struct jb_claim c = {jobs, n, lease_until};

    return store_op_wait(s, jb_claim_write, &c);
}

/* Bind a possibly empty int as NULL when 0. */
static void jb_bind_status(sqlite3_stmt *st, int i, int v, int exit_status)
{
    if (exit_status ? v >= 0 : v != 0)
        sqlite3_bind_int(st, i, v);
    else
        sqlite3_bind_null(st, i);
}

/* In the transaction: the attempt's row, the job's state, then `also`. */
static int jb_finish_write(struct store_tx *tx, void *data)
{
    struct store_job_result *r = data;
    sqlite3_stmt *st = JB_ST(tx->s, JB_RESULT);
    int ret;

    sqlite3_bind_int64(st, 1, r->job_id);
    sqlite3_bind_int64(st, 2, r->event_id);
    sqlite3_bind_text(st, 3, r->at ? r->at : tx->received_at, -1, SQLITE_STATIC);
    store_bind_text(st, 4, r->endpoint ? r->endpoint : "");
    jb_bind_status(st, 5, r->http_status, r->exit_status);
    store_bind_text(st, 6, r->platform_code);
    store_bind_text(st, 7, r->result ? r->result : "error");
    store_bind_text(st, 8, r->detail);
    sqlite3_bind_int64(st, 9, r->duration_ms);
    if (r->body)
        sqlite3_bind_blob(st, 10, r->body, (int)r->body_len, SQLITE_STATIC);
    else
        sqlite3_bind_null(st, 10);
    if ((ret = store_step_done(st)) < 0)
        return ret;
    st = JB_ST(tx->s, JB_FINISH);
    sqlite3_bind_int64(st, 1, r->job_id);
    sqlite3_bind_text(st, 2, r->state, -1, SQLITE_STATIC);
    store_bind_text(st, 3, r->outcome);
    store_bind_text(st, 4, r->due_at);
    store_bind_text(st, 5, r->error);
    sqlite3_bind_text(st, 6, tx->received_at, -1, SQLITE_STATIC);
    if ((ret = store_step_done(st)) < 0)
        return ret;
    /* No longer running: cancelled while its call was out (UNAUTHORIZED).
     * The attempt is kept; what the answer would write (the tokens it
     * issued, keys, deliveries) is not. */
    if ((r->cancelled = sqlite3_changes(tx->s->db) == 0))
        return 0;
    return r->also ? r->also(tx, r->also_data) : 0;
}

int store_job_finish(struct store *s, struct store_job_result *r, store_done_fn done)
{
    return store_submit_op(s, jb_finish_write, done, r);
}

/* In the transaction: every running job back to the queue. */
static int jb_recover_write(struct store_tx *tx, void *data)
{
    return store_step_done(JB_ST(tx->s, JB_RECOVER));
}

int store_jobs_recover(struct store *s)
{
    return store_op_wait(s, jb_recover_write, NULL);
}

/* What a release op is given. */
struct jb_ids {
    const int64_t *ids;
    size_t n;
    const char *due_at; /* NULL: keep */
    int unclaim;        /* never started: the claim's attempt taken back */
};

/* In the transaction: the given running jobs back to the queue (unclaimed:
 * their attempt taken back too). */
static int jb_release_write(struct store_tx *tx, void *data)
{
    const struct jb_ids *l = data;
    sqlite3_stmt *st = JB_ST(tx->s, l->unclaim ? JB_UNCLAIM : JB_RELEASE);
    size_t i;
    int r;

    for (i = 0; i < l->n; i++) {
        sqlite3_bind_int64(st, 1, l->ids[i]);
        if (!l->unclaim)
            store_bind_text(st, 2, l->due_at);
        if ((r = store_step_done(st)) < 0)
            return r;
    }
    return 0;
}

int store_jobs_unclaim(struct store *s, const int64_t *ids, size_t n)
{
    struct jb_ids l = {ids, n, NULL, 1};

    return n ? store_op_wait(s, jb_release_write, &l) : 0;
}

int store_jobs_release(struct store *s, const int64_t *ids, size_t n, const char *due_at)
{
    struct jb_ids l = {ids, n, due_at, 0};

    return n ? store_op_wait(s, jb_release_write, &l) : 0;
}

/* What a meta op is given. */
struct jb_meta {
    const char *key, *value;
};

/* In the transaction: set one meta value. */
static int jb_meta_write(struct store_tx *tx, void *data)
{
    const struct jb_meta *m = data;
    sqlite3_stmt *st = JB_ST(tx->s, JB_META);

    sqlite3_bind_text(st, 1, m->key, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, m->value, -1, SQLITE_STATIC);
    return store_step_done(st);
}

int store_set_meta(struct store *s, const char *key, const char *value)
{
    struct jb_meta m = {key, value};

    return store_op_wait(s, jb_meta_write, &m);
}
