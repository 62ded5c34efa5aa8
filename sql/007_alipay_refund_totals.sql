-- 007_alipay_refund_totals.sql: Alipay's refund_fee is the trade's TOTAL
-- refunded so far (its notification reference: "退款通知中，返回总退款金额"),
-- not the amount of the refund being notified. Two partial refunds of 10.00
-- and 20.00 notify refund_fee 10.00 then 30.00; summing them said 40.00.
--
-- refund_total_fen keeps what the platform sent (the total after this
-- refund); refund_fen becomes this refund's own amount: its total minus
-- the highest total of the same trade's refunds below it. Computed over
-- everything stored, so the order the notifications arrived in does not
-- matter (the writer keeps it so for new ones: src/store/alipay.c).
ALTER TABLE events ADD COLUMN refund_total_fen INTEGER;

UPDATE events SET refund_total_fen = refund_fen
 WHERE provider = 'alipay' AND kind = 'refund_notify';

UPDATE events SET refund_fen = refund_total_fen - coalesce((
        SELECT max(p.refund_total_fen) FROM events p
         WHERE p.provider = 'alipay' AND p.kind = 'refund_notify' AND p.app = events.app
           AND p.order_id = events.order_id AND p.refund_total_fen < events.refund_total_fen), 0)
 WHERE provider = 'alipay' AND kind = 'refund_notify' AND refund_total_fen IS NOT NULL
   AND order_id IS NOT NULL;

-- Of two notifications stating the same total (one refund told twice under
-- different notify_ids), the later one adds nothing.
UPDATE events SET refund_fen = 0
 WHERE provider = 'alipay' AND kind = 'refund_notify' AND refund_total_fen IS NOT NULL
   AND EXISTS (SELECT 1 FROM events p WHERE p.provider = 'alipay' AND p.kind = 'refund_notify'
                AND p.app = events.app AND p.order_id = events.order_id
                AND p.refund_total_fen = events.refund_total_fen AND p.id < events.id);
