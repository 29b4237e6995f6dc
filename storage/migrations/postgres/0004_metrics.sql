-- Keeps the metrics' sums over paid orders cheap (as ../0004_metrics.sql).
CREATE INDEX transfers_kind ON transfers (kind, days);
CREATE INDEX deliveries_pending ON deliveries (notice_id) WHERE status = 'pending';
