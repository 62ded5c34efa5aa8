-- 003_refund_fen_and_app_ids.sql: refunds get their own amount column, so a
-- sum of amount_fen by status never counts a refund as a payment again, and
-- events.app is the platform's app id for every provider.

-- The refund's amount where there is one (Alipay and gateway refund_fee, a
-- Baidu audit's decided refundPayMoney), NULL otherwise. amount_fen stays the
-- order amount, NULL for refund callbacks that do not carry it.
ALTER TABLE events ADD COLUMN refund_fen INTEGER;

-- Baidu refund audits stored their decided amount in amount_fen: move it.
UPDATE events SET refund_fen = amount_fen, amount_fen = NULL
 WHERE provider = 'baidu' AND kind = 'refund_audit';

-- Alipay refund notifications were stored as kind 'notify' with the order's
-- total_amount: they are refunds (refund_fee or out_biz_no present). The
-- yuan text is converted to fen exactly, digit by digit, never as a float.
UPDATE events SET kind = 'refund_notify',
    refund_fen = CASE
        WHEN json_extract(fields, '$.refund_fee') IS NULL
          OR json_extract(fields, '$.refund_fee') = '' THEN NULL
        WHEN instr(json_extract(fields, '$.refund_fee'), '.') = 0
            THEN CAST(json_extract(fields, '$.refund_fee') AS INTEGER) * 100
        ELSE CAST(substr(json_extract(fields, '$.refund_fee'), 1,
                         instr(json_extract(fields, '$.refund_fee'), '.') - 1) AS INTEGER) * 100
             + CAST(substr(substr(json_extract(fields, '$.refund_fee'),
                                  instr(json_extract(fields, '$.refund_fee'), '.') + 1) || '00',
                           1, 2) AS INTEGER)
        END
 WHERE provider = 'alipay' AND kind = 'notify'
   AND (coalesce(json_extract(fields, '$.refund_fee'), '') <> ''
        OR coalesce(json_extract(fields, '$.out_biz_no'), '') <> '');

-- Baidu cashier events stored the dealId in app; payhookd relabels them with
-- the configured app's app_id once it has read its configuration (the SQL
-- cannot know the mapping). This row says that is still to do.
INSERT INTO meta (key, value)
SELECT 'baidu_app_relabel', 'pending'
 WHERE EXISTS (SELECT 1 FROM events WHERE provider = 'baidu');

DROP VIEW events_readable;
CREATE VIEW events_readable AS
SELECT id, received_at, provider, kind, app, status, verified, deliveries,
       order_id, merchant_order_id,
       CASE WHEN amount_fen IS NULL THEN NULL
            ELSE (CASE WHEN amount_fen < 0 THEN '-' ELSE '' END) ||
                 (abs(amount_fen) / 100) || '.' || printf('%02d', abs(amount_fen) % 100)
       END AS amount_yuan,
       CASE WHEN refund_fen IS NULL THEN NULL
            ELSE (CASE WHEN refund_fen < 0 THEN '-' ELSE '' END) ||
                 (abs(refund_fen) / 100) || '.' || printf('%02d', abs(refund_fen) % 100)
       END AS refund_yuan,
       answer, CAST(body AS TEXT) AS body_text
FROM events;
