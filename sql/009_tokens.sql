-- 009_tokens.sql: the access tokens the platforms issue (design.md). app is
-- the platform's app id, or 'tp' for the TP's own token (fetched from the
-- latest ticket). A token is never logged and never kept in query_results;
-- an operator may put a row in with sqlite3. expires_at NULL: no known expiry.
CREATE TABLE tokens (
    app           TEXT PRIMARY KEY,
    access_token  TEXT NOT NULL,
    expires_at    TEXT,
    refresh_token TEXT,
    updated_at    TEXT NOT NULL
);
