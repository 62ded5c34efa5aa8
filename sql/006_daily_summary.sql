-- 006_daily_summary.sql: one row per UTC day, app, provider, kind and
-- status of the verified events: how many, and their amounts summed, in
-- integer fen and as yuan text ("1234.56"). Redeliveries are one event.
-- Unverified events (plaintext TP pushes) are left out: they carry no money.
CREATE VIEW daily_summary AS
SELECT substr(received_at, 1, 10) AS day, app, provider, kind, status,
       count(*) AS events,
       sum(amount_fen) AS amount_fen,
       CASE WHEN sum(amount_fen) IS NULL THEN NULL
            ELSE (CASE WHEN sum(amount_fen) < 0 THEN '-' ELSE '' END) ||
                 (abs(sum(amount_fen)) / 100) || '.' || printf('%02d', abs(sum(amount_fen)) % 100)
       END AS amount_yuan,
       sum(refund_fen) AS refund_fen,
       CASE WHEN sum(refund_fen) IS NULL THEN NULL
            ELSE (CASE WHEN sum(refund_fen) < 0 THEN '-' ELSE '' END) ||
                 (abs(sum(refund_fen)) / 100) || '.' || printf('%02d', abs(sum(refund_fen)) % 100)
       END AS refund_yuan
FROM events WHERE verified = 1
GROUP BY day, app, provider, kind, status;
