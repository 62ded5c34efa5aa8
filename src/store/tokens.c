/*
 * tokens.c: the TP's credentials as the platform pushes them: the latest
 * verification ticket.
 */
#include "store/store_int.h"

enum { TK_SET_TICKET, TK__COUNT };

static const char *const tk_sql[TK__COUNT] = {
    [TK_SET_TICKET] = "INSERT INTO tp_ticket (id, ticket, create_time, received_at)"
                      " VALUES (1, ?1, ?2, ?3) ON CONFLICT (id) DO UPDATE SET"
                      " ticket = excluded.ticket, create_time = excluded.create_time,"
                      " received_at = excluded.received_at"
                      " WHERE excluded.create_time >= tp_ticket.create_time",
};

const struct store_table store_tokens_table = {"tokens", tk_sql, TK__COUNT};

/* Keep the latest TP ticket (called from an in_tx callback). */
int store_tx_set_ticket(struct store_tx *tx, const char *ticket, int64_t create_time)
{
    sqlite3_stmt *st = STORE_ST(tx->s, TBL_TOKENS, TK_SET_TICKET);

    sqlite3_bind_text(st, 1, ticket, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, create_time);
    sqlite3_bind_text(st, 3, tx->received_at, -1, SQLITE_STATIC);
    return store_step_done(st);
}
