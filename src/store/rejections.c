/*
 * rejections.c: requests refused before anything was stored, kept for the
 * operator (capped: the oldest rows are trimmed). Best effort: a rejection
 * is copied into its own small queue and dropped, counted, when that queue
 * is full.
 */
#include "store/store_int.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "lib/metrics.h"
#include "lib/util.h"

enum { RJ_INSERT, RJ_TRIM, RJ__COUNT };

static const char *const rj_sql[RJ__COUNT] = {
    [RJ_INSERT] = "INSERT INTO rejections (received_at, route, remote_addr, status,"
                  " reason, detail, body_prefix) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    [RJ_TRIM] = "DELETE FROM rejections WHERE id <= ?1",
};

const struct store_table store_rejections_table = {"rejections", rj_sql, RJ__COUNT};

#define RJ_ST(s, i) STORE_ST(s, TBL_REJECTIONS, i)

/* Length of a string that may be NULL, plus its NUL. */
static size_t store_slen(const char *p)
{
    return p ? strlen(p) + 1 : 0;
}

/* Copy a string into the allocation at *pos; NULL stays NULL. */
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
    if (store_enqueue_rejection(s, q) < 0) {
        metrics_rejection_unrecorded();
        free(q);
    }
}

/* Write one rejection and trim the table now and then. */
int store_write_rejection(struct store *s, struct store_req *q)
{
    sqlite3_stmt *st = RJ_ST(s, RJ_INSERT);
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
    sqlite3_bind_int64(RJ_ST(s, RJ_TRIM), 1, last - (sqlite3_int64)s->o.rejections_keep);
    rc = store_run(RJ_ST(s, RJ_TRIM));
    return rc == SQLITE_DONE ? 0 : -EIO;
}

static int rj_keep_write(struct store_tx *tx, void *data)
{
    tx->s->o.rejections_keep = *(const unsigned *)data;
    return 0;
}

int store_set_rejections_keep(struct store *s, unsigned keep)
{
    return store_op_wait(s, rj_keep_write, &keep);
}
