-- Payments: per-channel subscriptions, Stripe events seen, and the notice outbox.

ALTER TABLE channels ADD COLUMN subscription_ref TEXT;
CREATE UNIQUE INDEX channels_subscription ON channels (subscription_ref)
    WHERE subscription_ref IS NOT NULL;
CREATE INDEX orders_payment ON orders (payment_ref) WHERE payment_ref IS NOT NULL;

-- Each Stripe event id is handled once; a redelivery is answered from here.
CREATE TABLE stripe_events (
    id          TEXT    PRIMARY KEY,
    type        TEXT    NOT NULL,
    received_at INTEGER NOT NULL,
    result      TEXT    NOT NULL
) STRICT, WITHOUT ROWID;

-- Notices are written in the same transaction as the change that causes them, so none
-- is lost by a crash; `key` makes the same notice impossible to queue twice.
CREATE TABLE notices (
    id         INTEGER PRIMARY KEY,
    key        TEXT    NOT NULL UNIQUE,
    partner_id INTEGER REFERENCES partners (id),  -- NULL: for support staff
    kind       TEXT    NOT NULL,
    payload    TEXT    NOT NULL,
    created_at INTEGER NOT NULL,
    expanded   INTEGER NOT NULL DEFAULT 0 CHECK (expanded IN (0, 1))
) STRICT;
CREATE INDEX notices_unexpanded ON notices (id) WHERE expanded = 0;

-- One row per notice and recipient; the dispatcher works through the due ones.
CREATE TABLE deliveries (
    id         INTEGER PRIMARY KEY,
    notice_id  INTEGER NOT NULL REFERENCES notices (id),
    user_id    INTEGER NOT NULL,
    status     TEXT    NOT NULL DEFAULT 'pending'
                   CHECK (status IN ('pending', 'sent', 'failed')),
    attempts   INTEGER NOT NULL DEFAULT 0,
    due_at     INTEGER NOT NULL,
    sent_at    INTEGER,
    last_error TEXT,
    UNIQUE (notice_id, user_id)
) STRICT;
CREATE INDEX deliveries_due ON deliveries (due_at) WHERE status = 'pending';
