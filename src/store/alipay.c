/*
 * alipay.c: what Alipay refund notifications need from the store. Alipay's
 * refund_fee is the trade's total refunded so far, so a refund's own amount
 * is its total minus the highest total of the same trade's refunds stored
 * below it. A refund told late (after a later one) also changes the amount
 * of the next one above it, which was computed without it: that row is
 * corrected in the same transaction, so refund_fen always adds up to what
 * Alipay says was refunded, whatever order the notifications came in.
 */
#include "store/store_int.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>

enum { AR_BELOW, AR_SAME, AR_ABOVE, AR_FIX, AR__COUNT };

#define AR_TRADE                                                                         \
    " FROM events WHERE provider = 'alipay' AND kind = 'refund_notify' AND app = ?1"     \
    " AND order_id = ?2"

static const char *const ar_sql[AR__COUNT] = {
    [AR_BELOW] = "SELECT max(refund_total_fen)" AR_TRADE " AND refund_total_fen < ?3",
    [AR_SAME] = "SELECT 1" AR_TRADE " AND refund_total_fen = ?3 LIMIT 1",
    [AR_ABOVE] = "SELECT id, refund_total_fen, refund_fen" AR_TRADE
                 " AND refund_total_fen > ?3 ORDER BY refund_total_fen, id LIMIT 1",
    [AR_FIX] = "UPDATE events SET refund_fen = ?2 WHERE id = ?1",
};

const struct store_table store_alipay_table = {"alipay", ar_sql, AR__COUNT};

#define AR_ST(tx, i) STORE_ST((tx)->s, TBL_ALIPAY, i)

/* Bind the trade and the total to st; step it once: SQLITE_ROW, _DONE or an error. */
static int ar_step(sqlite3_stmt *st, const char *app, const char *order_id, int64_t total)
{
    store_bind_text(st, 1, app);
    store_bind_text(st, 2, order_id);
    sqlite3_bind_int64(st, 3, total);
    return sqlite3_step(st);
}

static void ar_reset(sqlite3_stmt *st)
{
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
}

/* This refund's own amount into *fen. 0 or -EIO. */
static int ar_own(struct store_tx *tx, const char *app, const char *order_id, int64_t total,
                  int64_t *fen)
{
    sqlite3_stmt *st = AR_ST(tx, AR_SAME);
    int rc = ar_step(st, app, order_id, total);

    ar_reset(st);
    if (rc == SQLITE_ROW) { /* this total was told already: nothing more refunded */
        *fen = 0;
        return 0;
    }
    if (rc != SQLITE_DONE)
        return -EIO;
    st = AR_ST(tx, AR_BELOW);
    rc = ar_step(st, app, order_id, total);
    *fen = total - (rc == SQLITE_ROW ? sqlite3_column_int64(st, 0) : 0);
    ar_reset(st);
    return rc == SQLITE_ROW ? 0 : -EIO;
}

/* The next refund above total, computed without this one: correct it. */
static int ar_fix_above(struct store_tx *tx, const char *app, const char *order_id,
                        int64_t total, char *note, size_t len)
{
    sqlite3_stmt *st = AR_ST(tx, AR_ABOVE);
    int64_t id, above, had, want;
    int rc = ar_step(st, app, order_id, total), had_null;

    if (rc != SQLITE_ROW) {
        ar_reset(st);
        return rc == SQLITE_DONE ? 0 : -EIO;
    }
    id = sqlite3_column_int64(st, 0);
    above = sqlite3_column_int64(st, 1);
    had_null = sqlite3_column_type(st, 2) == SQLITE_NULL;
    had = sqlite3_column_int64(st, 2);
    ar_reset(st);
    want = above - total;
    if (!had_null && had == want)
        return 0;
    st = AR_ST(tx, AR_FIX);
    sqlite3_bind_int64(st, 1, id);
    sqlite3_bind_int64(st, 2, want);
    if (store_step_done(st) < 0)
        return -EIO;
    snprintf(note, len,
             "an earlier refund told late: event %" PRId64 " refund_fen corrected from %" PRId64
             " to %" PRId64,
             id, had, want);
    return 1;
}

int store_tx_alipay_refund(struct store_tx *tx, const char *app, const char *order_id,
                           int64_t total, int64_t *fen, char *note, size_t len)
{
    int r = ar_own(tx, app, order_id, total, fen);

    note[0] = '\0';
    if (r < 0 || *fen == 0)
        return r;
    return ar_fix_above(tx, app, order_id, total, note, len);
}
