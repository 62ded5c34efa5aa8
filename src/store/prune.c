/*
 * prune.c: payhookctl prune (sql/008_prune.sql says why events are
 * compacted, not deleted). Work is done in batches, each one transaction
 * on the writer, so intake waits for one batch at most. An event is pruned
 * only when nothing about it is still to happen: no job or delivery
 * queued or running, and no dead delivery (kept until an operator acts).
 */
#include "store/store_int.h"

#include <errno.h>
#include <string.h>

#include "lib/util.h"

#define PR_BATCH     500 /* events per transaction */
#define PR_STR(x)    #x
#define PR_XSTR(x)   PR_STR(x)

enum { PR_EVENTS, PR_RESULTS, PR__COUNT };

static const char *const pr_sql[PR__COUNT] = {
    /* the next batch, oldest first, marked pruned and its body dropped:
     * which events may go is decided once, here */
    [PR_EVENTS] = "UPDATE events SET body = X'', pruned_at = ?2 WHERE id IN ("
                  "SELECT e.id FROM events e WHERE e.received_at < ?1 AND e.pruned_at IS NULL"
                  " AND NOT EXISTS (SELECT 1 FROM jobs j WHERE j.event_id = e.id"
                  " AND (j.state IN ('queued', 'running')"
                  " OR (j.state = 'failed' AND j.kind LIKE 'hook.%')))"
                  " ORDER BY e.id LIMIT " PR_XSTR(PR_BATCH) ") RETURNING id",
    /* the answers' bodies only: each attempt's status, outcome and time
     * stay, so deliveries.last_status and the attempt history still say
     * how the event's jobs ended. A TP app's audit answers are kept whole:
     * they are its onboarding state (the tp_apps view reads them), not
     * history. */
    [PR_RESULTS] = "UPDATE query_results SET body = NULL WHERE body IS NOT NULL AND job_id IN"
                   " (SELECT id FROM jobs WHERE event_id = ?1 AND kind NOT IN"
                   " ('baidu.account_audit', 'baidu.develop_config_audit',"
                   " 'baidu.pay_service_audit'))",
};

const struct store_table store_prune_table = {"prune", pr_sql, PR__COUNT};

#define PR_ST(s, i) STORE_ST(s, TBL_PRUNE, i)

struct pr_batch {
    const char *before, *now;
    long events, results;
};

static int pr_write(struct store_tx *tx, void *data)
{
    struct pr_batch *b = data;
    sqlite3_stmt *st = PR_ST(tx->s, PR_EVENTS);
    int64_t ids[PR_BATCH];
    long i;
    int rc;

    b->events = b->results = 0;
    sqlite3_bind_text(st, 1, b->before, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, b->now, -1, SQLITE_STATIC);
    while ((rc = sqlite3_step(st)) == SQLITE_ROW && b->events < PR_BATCH)
        ids[b->events++] = sqlite3_column_int64(st, 0);
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    if (rc != SQLITE_DONE)
        return -EIO;
    st = PR_ST(tx->s, PR_RESULTS);
    for (i = 0; i < b->events; i++) {
        sqlite3_bind_int64(st, 1, ids[i]);
        if (store_step_done(st) < 0)
            return -EIO;
        b->results += sqlite3_changes(sqlite3_db_handle(st));
    }
    return 0;
}

int store_prune(struct store *s, const char *before, struct store_pruned *out)
{
    char now[32];
    struct pr_batch b = {before, now, 0, 0};
    int r;

    memset(out, 0, sizeof(*out));
    util_iso8601_now(now);
    do {
        if ((r = store_op_wait(s, pr_write, &b)) < 0)
            return r;
        out->events += b.events;
        out->results += b.results;
    } while (b.events == PR_BATCH);
    return 0;
}
