-- Keeps the metrics' sums over paid orders cheap however long the ledger grows.
CREATE INDEX transfers_kind ON transfers (kind, days);
CREATE INDEX deliveries_pending ON deliveries (notice_id) WHERE status = 'pending';
