-- At most one pending subscription order per channel (as ../0006_one_subscription.sql).
UPDATE orders SET status = 'canceled',
    closed_at = (extract(epoch FROM clock_timestamp()) * 1000000)::BIGINT
WHERE kind = 'subscription' AND status = 'open' AND id NOT IN (
    SELECT max(id) FROM orders WHERE kind = 'subscription' AND status = 'open'
    GROUP BY channel_id
);
CREATE UNIQUE INDEX orders_one_pending_subscription ON orders (channel_id)
    WHERE kind = 'subscription' AND status = 'open';
