/*
 * baidu.c: what the Baidu cashier callbacks need from the store: the paid
 * notification of an order, the refunds approved for it, the audit
 * decisions and the outcomes the refund notifications report; for a refund
 * callback (it carries no dealId), the deal of the order it refunds; and
 * the one-time relabelling of old rows whose app column held the dealId.
 */
#include "store/store_int.h"

#include <errno.h>
#include <string.h>

enum {
    RF_PAID,
    RF_APPROVED,
    RF_DECIDE,
    RF_OUTCOME,
    RF_RELABEL_PENDING,
    RF_RELABEL,
    RF_RELABEL_DONE,
    RF_DECIDED,
    RF__COUNT
};

static const char *const rf_sql[RF__COUNT] = {
    [RF_PAID] = "SELECT json_extract(fields, '$.payMoney') FROM events"
                " WHERE provider = 'baidu' AND order_id = ?1 AND kind = 'pay_notify'"
                " AND verified = 1 AND status = '2' ORDER BY id LIMIT 1",
    [RF_APPROVED] = "SELECT coalesce(sum(refund_fen), 0) FROM baidu_refunds"
                    " WHERE order_id = ?1 AND audit_status = 1"
                    " AND coalesce(refund_status, 0) <> 2",
    [RF_DECIDE] = "INSERT INTO baidu_refunds (refund_batch_id, order_id, audit_status,"
                  " refund_fen, reason, decided_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    [RF_OUTCOME] = "UPDATE baidu_refunds SET refund_status = ?2, refund_status_at = ?3"
                   " WHERE refund_batch_id = ?1",
    [RF_RELABEL_PENDING] = "SELECT 1 FROM meta WHERE key = 'baidu_app_relabel'"
                           " AND value = 'pending'",
    [RF_RELABEL] = "UPDATE events SET app = ?2 WHERE provider = 'baidu' AND app = ?1",
    [RF_DECIDED] = "SELECT refund_fen FROM baidu_refunds WHERE refund_batch_id = ?1"
                   " AND audit_status = 1",
    [RF_RELABEL_DONE] = "UPDATE meta SET value = 'done' WHERE key = 'baidu_app_relabel'",
};

const struct store_table store_baidu_table = {"baidu", rf_sql, RF__COUNT};

#define RF_ST(tx, i) STORE_ST((tx)->s, TBL_BAIDU, i)

/* Read-only: on the HTTP threads' reader connections. */
static const char rf_order_deal_sql[] =
    "SELECT json_extract(fields, '$.dealId') FROM events WHERE provider = 'baidu'"
    " AND order_id = ?1 AND kind = 'pay_notify' AND verified = 1 ORDER BY id LIMIT 1";

/* payMoney of the verified paid notification of a Baidu order. */
int store_tx_baidu_paid(struct store_tx *tx, const char *order_id, char *pay_money,
                        size_t len)
{
    return store_first_text(RF_ST(tx, RF_PAID), order_id, pay_money, len);
}

/* Refunds approved for an order and not reported failed. */
int store_tx_baidu_approved(struct store_tx *tx, const char *order_id, int64_t *sum)
{
    sqlite3_stmt *st = RF_ST(tx, RF_APPROVED);
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
    sqlite3_stmt *st = RF_ST(tx, RF_DECIDE);

    sqlite3_bind_text(st, 1, batch, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, order_id, -1, SQLITE_STATIC);
    sqlite3_bind_int(st, 3, audit_status);
    sqlite3_bind_int64(st, 4, refund_fen);
    sqlite3_bind_text(st, 5, reason, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 6, tx->received_at, -1, SQLITE_STATIC);
    return store_step_done(st);
}

/* The amount approved for a refund batch: 1 found, 0 not approved here, -EIO. */
int store_tx_baidu_decided(struct store_tx *tx, const char *batch, int64_t *refund_fen)
{
    sqlite3_stmt *st = RF_ST(tx, RF_DECIDED);
    int rc;

    sqlite3_bind_text(st, 1, batch, -1, SQLITE_STATIC);
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW)
        *refund_fen = sqlite3_column_int64(st, 0);
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    return rc == SQLITE_ROW ? 1 : rc == SQLITE_DONE ? 0 : -EIO;
}

/* Record the outcome a refund notification reports for a batch. */
int store_tx_baidu_refund_outcome(struct store_tx *tx, const char *batch,
                                  int refund_status)
{
    sqlite3_stmt *st = RF_ST(tx, RF_OUTCOME);

    sqlite3_bind_text(st, 1, batch, -1, SQLITE_STATIC);
    sqlite3_bind_int(st, 2, refund_status);
    sqlite3_bind_text(st, 3, tx->received_at, -1, SQLITE_STATIC);
    return store_step_done(st);
}

/* The dealId of the verified pay notification of a Baidu order. */
int store_baidu_order_deal(struct store *s, const char *order_id, char *buf, size_t len)
{
    struct store_reader *r = store_reader_get(s);
    sqlite3_stmt *st;
    int ret = -EIO;

    if (!r)
        return -EIO;
    if ((st = store_reader_stmt(r, rf_order_deal_sql)) != NULL)
        ret = store_first_text(st, order_id, buf, len);
    store_reader_put(s, r);
    return ret;
}

/* What the relabelling op is given. */
struct rf_relabel {
    const char *const *deal, *const *app;
    size_t n;
};

/* In the transaction: relabel each configured deal's rows, then note it done. */
static int rf_relabel_write(struct store_tx *tx, void *data)
{
    const struct rf_relabel *rl = data;
    sqlite3_stmt *st;
    size_t i;
    int rc, r;

    st = RF_ST(tx, RF_RELABEL_PENDING);
    rc = sqlite3_step(st);
    sqlite3_reset(st);
    if (rc == SQLITE_DONE)
        return 0; /* done before, or nothing was ever stored */
    if (rc != SQLITE_ROW)
        return -EIO;
    for (i = 0; i < rl->n; i++) {
        if (strcmp(rl->deal[i], rl->app[i]) == 0)
            continue;
        st = RF_ST(tx, RF_RELABEL);
        sqlite3_bind_text(st, 1, rl->deal[i], -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 2, rl->app[i], -1, SQLITE_STATIC);
        if ((r = store_step_done(st)) < 0)
            return r;
    }
    return store_step_done(RF_ST(tx, RF_RELABEL_DONE));
}

int store_relabel_baidu_apps(struct store *s, const char *const *deal,
                             const char *const *app, size_t n)
{
    struct rf_relabel rl = {deal, app, n};

    return store_op_wait(s, rf_relabel_write, &rl);
}
