-- 008_prune.sql: payhookctl prune compacts old events instead of deleting
-- them. A pruned event keeps its row -- its dedupe key, amounts, status,
-- fields, answer, jobs and deliveries -- so a redelivery, or a replay of an
-- old signed callback by anyone who captured it, is still recognised as a
-- duplicate and never stored or forwarded as a new payment. What goes is
-- the bulk: the raw body and the answers of every query and delivery
-- attempt (query_results). pruned_at says when.
ALTER TABLE events ADD COLUMN pruned_at TEXT;
