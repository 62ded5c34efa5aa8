-- 005_deliveries.sql: forwarding hooks. A delivery is a job of kind
-- "hook.NAME" (same queue, claims, back-off and writer as the follow-up
-- queries); these views give it the names operators and design.md use.

-- What a hook delivery's envelope says of the event, fixed when the
-- delivery is created so every attempt and replay sends the same body:
-- "<confirmation> <deliveries>", e.g. "pending 1" or "confirmed 2".
ALTER TABLE jobs ADD COLUMN context TEXT;

-- One row per delivery of an event to a hook.
--   queued     waiting (first try or a retry at due_at)
--   running    being sent
--   delivered  the hook answered 2xx
--   dead       max_attempts used up (or the hook is gone): an operator acts
CREATE VIEW deliveries AS
SELECT j.id, j.event_id, substr(j.kind, 6) AS hook,
       CASE j.state WHEN 'done' THEN 'delivered' WHEN 'failed' THEN 'dead' ELSE j.state END
           AS state,
       j.attempts, j.due_at, j.lease_until,
       (SELECT r.http_status FROM query_results r WHERE r.job_id = j.id
         ORDER BY r.id DESC LIMIT 1) AS last_status,
       j.last_error, j.created_at,
       CASE WHEN j.state = 'done' THEN j.finished_at END AS delivered_at
FROM jobs j WHERE j.kind LIKE 'hook.%';

-- One row per attempt (id in the order they were made): the HTTP status (NULL: no answer), why it failed,
-- how long it took, the start of the answer.
CREATE VIEW delivery_attempts AS
SELECT r.id, r.job_id AS delivery_id, r.event_id, substr(j.kind, 6) AS hook, r.at,
       r.http_status AS status, CASE WHEN r.outcome = 'delivered' THEN NULL ELSE r.detail END
           AS error,
       r.duration_ms, r.body AS response
FROM query_results r JOIN jobs j ON j.id = r.job_id WHERE j.kind LIKE 'hook.%';

-- Dead deliveries, and those whose last attempt failed and that wait for a retry.
CREATE VIEW failed_deliveries AS
SELECT * FROM deliveries WHERE state = 'dead' OR (state = 'queued' AND attempts > 0);

-- Deliveries not delivered yet.
CREATE VIEW pending_deliveries AS
SELECT * FROM deliveries WHERE state IN ('queued', 'running');

-- Hooks that answered 410 Gone: nothing is sent to them (their deliveries
-- wait, queued) until an operator runs payhookctl hooks enable NAME. Kept
-- here so the state survives restarts and payhookctl can show it.
CREATE TABLE hook_state (
    hook TEXT PRIMARY KEY,      -- the NAME of [hook NAME]
    disabled_at TEXT NOT NULL,  -- ISO-8601 UTC
    reason TEXT NOT NULL        -- e.g. "HTTP 410 Gone"
);
