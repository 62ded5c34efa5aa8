-- 004_jobs.sql: follow-up jobs (queries to the platforms' OpenAPIs), what
-- each attempt got back, and the views that say whether the platform
-- confirmed an event.

-- One row per job. A job that confirms its event (confirms = 1) is created
-- in the same transaction as the event; a redelivery creates none (one job
-- per event and kind). State changes are written by payhookd's one writer.
CREATE TABLE jobs (
    id              INTEGER PRIMARY KEY,
    event_id        INTEGER REFERENCES events (id),
    kind            TEXT    NOT NULL,  -- baidu.find_order, alipay.trade_query, ...
    lane            TEXT    NOT NULL,  -- the platform whose rate and concurrency caps apply
    app             TEXT,              -- the platform's app id
    confirms        INTEGER NOT NULL DEFAULT 0 CHECK (confirms IN (0, 1)),
    state           TEXT    NOT NULL DEFAULT 'queued'
                    CHECK (state IN ('queued', 'running', 'done', 'failed')),
    attempts        INTEGER NOT NULL DEFAULT 0,  -- started tries (one cut off by a crash counts)
    due_at          TEXT    NOT NULL,  -- ISO-8601 UTC: not run before
    lease_until     TEXT,              -- while running: the claim's end
    last_error      TEXT,              -- why the last attempt did not end the job
    outcome         TEXT,              -- done: confirmed | mismatch (or ok for other jobs)
    created_at      TEXT    NOT NULL,
    last_attempt_at TEXT,
    finished_at     TEXT
);
CREATE UNIQUE INDEX jobs_event_kind ON jobs (event_id, kind);
CREATE INDEX jobs_due ON jobs (lane, due_at) WHERE state = 'queued';
CREATE INDEX jobs_state ON jobs (state);

-- Every attempt's answer. endpoint holds no secret (method and URL without
-- its query); body is bounded.
CREATE TABLE query_results (
    id            INTEGER PRIMARY KEY,
    job_id        INTEGER NOT NULL REFERENCES jobs (id),
    event_id      INTEGER,
    at            TEXT    NOT NULL,
    endpoint      TEXT    NOT NULL,
    http_status   INTEGER,           -- NULL: no HTTP answer (refused, timed out)
    platform_code TEXT,              -- errno / code / sub_code as the platform wrote it
    outcome       TEXT    NOT NULL,  -- confirmed, mismatch, unknown_order, pending, error, ok
    detail        TEXT,
    duration_ms   INTEGER NOT NULL,
    body          BLOB
);
CREATE INDEX query_results_job ON query_results (job_id);

-- Settings the views need (written by payhookd from its configuration).
INSERT INTO meta (key, value) VALUES ('unconfirmed_after', '600')
    ON CONFLICT (key) DO NOTHING;

-- One row per event: what the platform said about it.
--   none        no query for this event (its app lacks the credentials, or query = no)
--   pending     queued or being retried
--   confirmed   the platform agrees: status, amount, order ids
--   mismatch    the platform disagrees, or does not know the order
--   unconfirmed no answer could be had within max_attempts
CREATE VIEW event_status AS
SELECT e.id, e.received_at, e.provider, e.kind, e.app, e.order_id, e.merchant_order_id,
       e.status, e.amount_fen,
       CASE WHEN j.id IS NULL THEN 'none'
            WHEN j.state IN ('queued', 'running') THEN 'pending'
            WHEN j.state = 'done' THEN j.outcome
            ELSE 'unconfirmed' END AS confirmation,
       CASE WHEN j.state = 'done' AND j.outcome = 'confirmed' THEN j.finished_at END
           AS confirmed_at,
       j.last_attempt_at AS last_query_at,
       j.last_error AS last_query_error
FROM events e LEFT JOIN jobs j ON j.event_id = e.id AND j.confirms = 1;

-- Payments (not refunds, not TP pushes) that the platform has not confirmed
-- unconfirmed_after seconds after they arrived: the operator's to-do list.
CREATE VIEW unconfirmed_payments AS
SELECT s.* FROM event_status s
 WHERE s.kind IN ('pay_notify', 'notify')
   AND s.confirmation NOT IN ('confirmed', 'none')
   AND s.received_at <= strftime('%Y-%m-%dT%H:%M:%fZ', 'now',
         '-' || (SELECT value FROM meta WHERE key = 'unconfirmed_after') || ' seconds');
