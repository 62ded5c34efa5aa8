/*
 * refunds.c: what the Baidu refund audits need from the store: the paid
 * notification of an order, the refunds approved for it, the decisions and
 * the outcomes the refund notifications report; and, for a refund callback
 * (it carries no dealId), the app of the order it refunds.
 */
#include "store/store_int.h"

#include <errno.h>

enum { RF_PAID, RF_APPROVED, RF_DECIDE, RF_OUTCOME, RF__COUNT };

static const char *const rf_sql[RF__COUNT] = {
    [RF_PAID] = "SELECT json_extract(fields, '$.payMoney') FROM events"
                " WHERE provider = 'baidu' AND order_id = ?1 AND kind = 'pay_notify'"
                " AND verified = 1 AND status = '2' ORDER BY id LIMIT 1",
    [RF_APPROVED] = "SELECT coalesce(sum(refund_fen), 0) FROM baidu_refunds"
                    " WHERE order_id = ?1 AND audit_status = 1"
                    " AND coalesce(refund_status, 0) <> 2",
    [RF_DECIDE] =
        "INSERT INTO baidu_refunds (refund_batch_id, order_id, audit_status,"
        " refund_fen, reason, decided_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    [RF_OUTCOME] = "UPDATE baidu_refunds SET refund_status = ?2, refund_status_at = ?3"
                   " WHERE refund_batch_id = ?1",
};

const struct store_table store_refunds_table = {"refunds", rf_sql, RF__COUNT};

#define RF_ST(tx, i) STORE_ST((tx)->s, TBL_REFUNDS, i)

/* Read-only: on the HTTP threads' reader connections. */
static const char rf_order_app_sql[] =
    "SELECT app FROM events WHERE provider = 'baidu' AND order_id = ?1"
    " AND kind = 'pay_notify' AND verified = 1 ORDER BY id LIMIT 1";

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

/* The app (dealId) of the verified pay notification of a Baidu order. */
int store_baidu_order_app(struct store *s, const char *order_id, char *buf, size_t len)
{
    struct store_reader *r = store_reader_get(s);
    sqlite3_stmt *st;
    int ret = -EIO;

    if (!r)
        return -EIO;
    if ((st = store_reader_stmt(r, rf_order_app_sql)) != NULL)
        ret = store_first_text(st, order_id, buf, len);
    store_reader_put(s, r);
    return ret;
}
