-- 011_reconcile.sql: reconciliation sweeps (design.md "Reconciliation").
-- A sweep reads a platform's own order list for one (app, day), compares
-- it with the stored events, and closes the gap: a paid order with no
-- callback becomes an event with source = 'sweep'.

-- Where an event came from: the platform's callback, or a sweep of its
-- order list (then verified = 1: the platform's own OpenAPI said so).
ALTER TABLE events ADD COLUMN source TEXT NOT NULL DEFAULT 'callback'
    CHECK (source IN ('callback', 'sweep'));
-- A sweep that found the platform disagreeing with a stored event
-- (amount or status) marks it here; NULL: no sweep disagreed.
ALTER TABLE events ADD COLUMN reconcile TEXT CHECK (reconcile IN ('mismatch'));

-- One row per (app, day): the latest sweep of that day. next_page is the
-- page the running sweep fetches next, committed with each page's findings,
-- so a restart resumes there.
CREATE TABLE reconciliations (
    app            TEXT    NOT NULL,  -- the platform's app id (events.app)
    day            TEXT    NOT NULL,  -- YYYY-MM-DD in [reconcile] zone
    provider       TEXT    NOT NULL,  -- baidu, alipay, gateway.NAME
    platform_count INTEGER NOT NULL DEFAULT 0,  -- orders the platform listed
    stored_count   INTEGER NOT NULL DEFAULT 0,  -- of them, found in the store
    missing        INTEGER NOT NULL DEFAULT 0,  -- paid, no callback: synthesised
    mismatched     INTEGER NOT NULL DEFAULT 0,  -- amount or status disagree
    unknown        INTEGER NOT NULL DEFAULT 0,  -- stored paid, not listed
    state          TEXT    NOT NULL DEFAULT 'running'
                   CHECK (state IN ('running', 'reconciled', 'open', 'given_up')),
    next_page      INTEGER NOT NULL DEFAULT 1,
    started_at     TEXT    NOT NULL,
    finished_at    TEXT,
    PRIMARY KEY (app, day)
);

-- The per-order findings of the latest sweep of each (app, day).
CREATE TABLE reconciliation_items (
    id                INTEGER PRIMARY KEY,
    app               TEXT NOT NULL,
    day               TEXT NOT NULL,
    order_id          TEXT,
    merchant_order_id TEXT,
    finding           TEXT NOT NULL
                      CHECK (finding IN ('matched', 'missing', 'mismatch', 'unknown')),
    detail            TEXT,
    event_id          INTEGER REFERENCES events (id),
    amount_fen        INTEGER            -- the platform's amount (ours for unknown)
);
CREATE INDEX reconciliation_items_day ON reconciliation_items (app, day, finding);
CREATE INDEX reconciliation_items_event ON reconciliation_items (event_id);

-- Per app and day, for people: counts and the amounts in yuan as text
-- (integer fen printed exactly, never through a float).
CREATE VIEW reconciliation AS
SELECT r.app, r.day, r.provider, r.state, r.platform_count, r.stored_count,
       r.missing, r.mismatched, r.unknown,
       (SELECT CASE WHEN t.fen IS NULL THEN NULL
                    ELSE (CASE WHEN t.fen < 0 THEN '-' ELSE '' END) || (abs(t.fen) / 100) || '.'
                         || substr('0' || (abs(t.fen) % 100), -2) END
        FROM (SELECT sum(i.amount_fen) AS fen FROM reconciliation_items i
              WHERE i.app = r.app AND i.day = r.day AND i.finding = 'missing') t)
           AS missing_yuan,
       (SELECT CASE WHEN t.fen IS NULL THEN NULL
                    ELSE (CASE WHEN t.fen < 0 THEN '-' ELSE '' END) || (abs(t.fen) / 100) || '.'
                         || substr('0' || (abs(t.fen) % 100), -2) END
        FROM (SELECT sum(i.amount_fen) AS fen FROM reconciliation_items i
              WHERE i.app = r.app AND i.day = r.day AND i.finding IN ('matched', 'missing',
                                                                     'mismatch')) t)
           AS platform_yuan,
       r.started_at, r.finished_at
FROM reconciliations r;
