-- 002_baidu_refunds.sql: payhookd's decisions on Baidu refund audits, so that
-- a refund batch asked again gets the same decision and the refunds approved
-- for an order never exceed what was paid for it.

CREATE TABLE baidu_refunds (
    refund_batch_id TEXT    PRIMARY KEY,
    order_id        TEXT    NOT NULL,
    audit_status    INTEGER NOT NULL CHECK (audit_status IN (1, 2)), -- 1 approved, 2 rejected
    refund_fen      INTEGER NOT NULL,  -- refundPayMoney answered
    reason          TEXT    NOT NULL,  -- why payhookd decided so
    decided_at      TEXT    NOT NULL,
    refund_status   INTEGER,           -- from the refund notification: 1 success, 2 failure
    refund_status_at TEXT
);
CREATE INDEX baidu_refunds_order ON baidu_refunds (order_id);

CREATE VIEW baidu_refunds_readable AS
SELECT r.refund_batch_id, r.order_id,
       CASE r.audit_status WHEN 1 THEN 'approved' ELSE 'rejected' END AS decision,
       r.refund_fen, r.reason, r.decided_at,
       CASE r.refund_status WHEN 1 THEN 'refunded' WHEN 2 THEN 'failed' ELSE 'pending' END
           AS outcome
FROM baidu_refunds r;
