-- At most one subscription per channel (issue 11, point 6): one pending checkout at a
-- time. An active one is the channel's subscription_ref (one column, so one). Core checks
-- both before opening an order; this index is the database's own refusal of a second.

-- Databases from before may hold several open subscription orders of one channel (the
-- bug this fixes): the newest stays, the older ones are cancelled (a payment still
-- arriving for one is credited: the webhook fulfils paid orders whatever their status).
UPDATE orders SET status = 'canceled',
    closed_at = CAST((julianday('now') - 2440587.5) * 86400000000 AS INTEGER)
WHERE kind = 'subscription' AND status = 'open' AND id NOT IN (
    SELECT max(id) FROM orders WHERE kind = 'subscription' AND status = 'open'
    GROUP BY channel_id
);
CREATE UNIQUE INDEX orders_one_pending_subscription ON orders (channel_id)
    WHERE kind = 'subscription' AND status = 'open';
