-- 001_init.sql: the event log, rejected requests, the latest TP ticket.
-- Applied once, in a transaction, by payhookd's migration step; the file's
-- number becomes PRAGMA user_version. Never edit an applied migration: add
-- the next numbered file.

-- One row per distinct callback (dedupe_key), however often it was delivered.
CREATE TABLE events (
    id               INTEGER PRIMARY KEY,
    received_at      TEXT    NOT NULL,  -- first delivery, ISO-8601 UTC
    last_received_at TEXT    NOT NULL,  -- latest delivery
    provider         TEXT    NOT NULL,  -- baidu, baidu.tp, alipay, gateway.NAME
    kind             TEXT    NOT NULL,  -- pay_notify, refund_audit, tp_push, ...
    app              TEXT,              -- the platform app the callback belongs to
    dedupe_key       TEXT    NOT NULL UNIQUE,
    verified         INTEGER NOT NULL CHECK (verified IN (0, 1)),
    order_id         TEXT,              -- the platform's order id (text: > 2^53)
    merchant_order_id TEXT,             -- tpOrderId / out_trade_no
    amount_fen       INTEGER,           -- integer fen, never a float
    status           TEXT,              -- the platform's status or event name
    deliveries       INTEGER NOT NULL DEFAULT 1,
    remote_addr      TEXT,
    answer           TEXT    NOT NULL,  -- the body answered, the same for every delivery
    fields           TEXT,              -- parsed or decrypted fields as JSON
    body             BLOB    NOT NULL   -- the request body, byte for byte
);
CREATE INDEX events_order ON events (provider, order_id);
CREATE INDEX events_merchant_order ON events (provider, merchant_order_id);
CREATE INDEX events_received ON events (received_at);

-- Requests refused before anything was stored (capped: oldest rows trimmed).
CREATE TABLE rejections (
    id          INTEGER PRIMARY KEY,
    received_at TEXT    NOT NULL,
    route       TEXT    NOT NULL,
    remote_addr TEXT,
    status      INTEGER NOT NULL,  -- the HTTP status answered
    reason      TEXT    NOT NULL,  -- machine-readable reason (also a metrics label)
    detail      TEXT,              -- human-readable detail
    body_prefix BLOB               -- the first bytes of the body
);

-- The latest verification ticket pushed to the third-party platform.
CREATE TABLE tp_ticket (
    id          INTEGER PRIMARY KEY CHECK (id = 1),
    ticket      TEXT    NOT NULL,
    create_time INTEGER NOT NULL,  -- the push's CreateTime (unix seconds), 0 if absent
    received_at TEXT    NOT NULL
);

-- Small facts about the store itself.
CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

-- Readable views for people at the sqlite3 prompt.
CREATE VIEW events_readable AS
SELECT id, received_at, provider, kind, app, status, verified, deliveries,
       order_id, merchant_order_id,
       CASE WHEN amount_fen IS NULL THEN NULL
            ELSE (CASE WHEN amount_fen < 0 THEN '-' ELSE '' END) ||
                 (abs(amount_fen) / 100) || '.' || printf('%02d', abs(amount_fen) % 100)
       END AS amount_yuan,
       answer, CAST(body AS TEXT) AS body_text
FROM events;

CREATE VIEW tp_events AS
SELECT id, received_at, deliveries, verified,
       json_extract(fields, '$.appId')     AS app_id,
       json_extract(fields, '$.tpAppId')   AS tp_app_id,
       coalesce(json_extract(fields, '$.event'), json_extract(fields, '$.Event')) AS event,
       json_extract(fields, '$.eventTime') AS event_time,
       json_extract(fields, '$.reason')    AS reason,
       json_extract(fields, '$.MsgType')   AS msg_type,
       fields
FROM events WHERE provider = 'baidu.tp';

CREATE VIEW rejections_readable AS
SELECT id, received_at, route, remote_addr, status, reason, detail,
       CAST(body_prefix AS TEXT) AS body_prefix_text
FROM rejections;
