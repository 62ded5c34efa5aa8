/*
 * tokens.c: the TP's credentials: the latest verification ticket the
 * platform pushes, the access tokens it issues (the TP's own, app 'tp'),
 * and the keys of its apps learned from getbindservice. Written only
 * inside the writer's transactions.
 */
#include "store/store_int.h"

#include <errno.h>

enum {
    TK_SET_TICKET,
    TK_FRESH,
    TK_SET_TOKEN,
    TK_EXISTS,
    TK_DELETE,
    TK_EXPIRE,
    TK_SET_KEYS,
    TK__COUNT
};

static const char *const tk_sql[TK__COUNT] = {
    [TK_SET_TICKET] = "INSERT INTO tp_ticket (id, ticket, create_time, received_at)"
                      " VALUES (1, ?1, ?2, ?3) ON CONFLICT (id) DO UPDATE SET"
                      " ticket = excluded.ticket, create_time = excluded.create_time,"
                      " received_at = excluded.received_at"
                      " WHERE excluded.create_time >= tp_ticket.create_time",
    [TK_FRESH] = "SELECT 1 FROM tokens WHERE app = ?1 AND (expires_at IS NULL OR"
                 " expires_at > strftime('%Y-%m-%dT%H:%M:%fZ', ?2, '+' || ?3 || ' seconds'))",
    [TK_SET_TOKEN] = "INSERT INTO tokens (app, access_token, expires_at, refresh_token, updated_at)"
                     " VALUES (?1, ?2, CASE WHEN ?3 > 0 THEN"
                     " strftime('%Y-%m-%dT%H:%M:%fZ', ?5, '+' || ?3 || ' seconds') END, ?4, ?5)"
                     " ON CONFLICT (app) DO UPDATE SET access_token = excluded.access_token,"
                     " expires_at = excluded.expires_at,"
                     " refresh_token = coalesce(excluded.refresh_token, tokens.refresh_token),"
                     " updated_at = excluded.updated_at",
    [TK_EXISTS] = "SELECT 1 FROM tokens WHERE app = ?1",
    [TK_DELETE] = "DELETE FROM tokens WHERE app = ?1",
    /* only the token that was refused (a newer one written since stays),
     * and once: its other refusals change nothing and fetch nothing more */
    [TK_EXPIRE] = "UPDATE tokens SET expires_at = ?3, updated_at = ?3"
                  " WHERE app = ?1 AND access_token = ?2"
                  " AND (expires_at IS NULL OR expires_at > ?3)",
    [TK_SET_KEYS] = "INSERT INTO app_keys (app_id, deal_id, pm_app_key, platform_public_key,"
                    " learned_at) VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (app_id) DO UPDATE SET"
                    " deal_id = excluded.deal_id, pm_app_key = excluded.pm_app_key,"
                    " platform_public_key = excluded.platform_public_key,"
                    " learned_at = excluded.learned_at",
};

/* Read-only, on a reader connection. */
static const char tk_keys_sql[] =
    "SELECT app_id, deal_id, pm_app_key, platform_public_key FROM app_keys ORDER BY learned_at";

const struct store_table store_tokens_table = {"tokens", tk_sql, TK__COUNT};

/* Keep the latest TP ticket (called from an in_tx callback): 1 when it is
 * the latest now, 0 when a newer one was kept, -EIO. */
int store_tx_set_ticket(struct store_tx *tx, const char *ticket, int64_t create_time)
{
    sqlite3_stmt *st = STORE_ST(tx->s, TBL_TOKENS, TK_SET_TICKET);
    int r;

    sqlite3_bind_text(st, 1, ticket, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, create_time);
    sqlite3_bind_text(st, 3, tx->received_at, -1, SQLITE_STATIC);
    r = store_step_done(st);
    return r < 0 ? r : sqlite3_changes(tx->s->db) > 0;
}

/* Whether a bound one-row SELECT found its row: 1, 0, -EIO. */
static int tk_found(sqlite3_stmt *st)
{
    int rc = sqlite3_step(st);

    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    return rc == SQLITE_ROW ? 1 : rc == SQLITE_DONE ? 0 : -EIO;
}

int store_tx_token_fresh(struct store_tx *tx, const char *app, int64_t margin_s)
{
    sqlite3_stmt *st = STORE_ST(tx->s, TBL_TOKENS, TK_FRESH);

    sqlite3_bind_text(st, 1, app, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, tx->received_at, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 3, margin_s);
    return tk_found(st);
}

int store_tx_token_expire(struct store_tx *tx, const char *app, const char *access_token)
{
    sqlite3_stmt *st = STORE_ST(tx->s, TBL_TOKENS, TK_EXPIRE);
    int r;

    sqlite3_bind_text(st, 1, app, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, access_token, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, tx->received_at, -1, SQLITE_STATIC);
    r = store_step_done(st);
    return r < 0 ? r : sqlite3_changes(tx->s->db) > 0;
}

int store_tx_token_exists(struct store_tx *tx, const char *app)
{
    sqlite3_stmt *st = STORE_ST(tx->s, TBL_TOKENS, TK_EXISTS);

    sqlite3_bind_text(st, 1, app, -1, SQLITE_STATIC);
    return tk_found(st);
}

int store_tx_token_delete(struct store_tx *tx, const char *app)
{
    sqlite3_stmt *st = STORE_ST(tx->s, TBL_TOKENS, TK_DELETE);

    sqlite3_bind_text(st, 1, app, -1, SQLITE_STATIC);
    return store_step_done(st);
}

int store_tx_set_token(struct store_tx *tx, const char *app, const char *access_token,
                       int64_t expires_in, const char *refresh_token)
{
    sqlite3_stmt *st = STORE_ST(tx->s, TBL_TOKENS, TK_SET_TOKEN);

    sqlite3_bind_text(st, 1, app, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, access_token, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 3, expires_in);
    store_bind_text(st, 4, refresh_token);
    sqlite3_bind_text(st, 5, tx->received_at, -1, SQLITE_STATIC);
    return store_step_done(st);
}

int store_tx_app_keys_set(struct store_tx *tx, const struct store_app_keys *k)
{
    sqlite3_stmt *st = STORE_ST(tx->s, TBL_TOKENS, TK_SET_KEYS);

    sqlite3_bind_text(st, 1, k->app_id, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, k->deal_id, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, k->pm_app_key, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 4, k->platform_public_key, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 5, tx->received_at, -1, SQLITE_STATIC);
    return store_step_done(st);
}

struct tk_each {
    int (*fn)(void *ctx, const struct store_app_keys *k);
    void *ctx;
};

static int tk_keys_row(sqlite3_stmt *st, void *data)
{
    const struct tk_each *e = data;
    struct store_app_keys k = {
        .app_id = (const char *)sqlite3_column_text(st, 0),
        .deal_id = (const char *)sqlite3_column_text(st, 1),
        .pm_app_key = (const char *)sqlite3_column_text(st, 2),
        .platform_public_key = (const char *)sqlite3_column_text(st, 3),
    };

    return e->fn(e->ctx, &k);
}

int store_app_keys_each(struct store *s, int (*fn)(void *ctx, const struct store_app_keys *k),
                        void *ctx)
{
    struct tk_each e = {fn, ctx};

    return store_read_rows(s, tk_keys_sql, NULL, NULL, tk_keys_row, &e);
}
