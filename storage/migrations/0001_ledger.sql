-- The days ledger. Instants are INTEGER microseconds since the Unix epoch, UTC.
-- Constraints here back the checks the code makes, so a bug or a hand edit that would
-- break an invariant fails loudly instead of landing.

CREATE TABLE partners (
    id               INTEGER PRIMARY KEY,
    name             TEXT    NOT NULL CHECK (length(name) BETWEEN 1 AND 64),
    name_key         TEXT    NOT NULL UNIQUE,
    currency         TEXT    NOT NULL CHECK (length(currency) = 3 AND currency = lower(currency)),
    monthly_price    INTEGER NOT NULL CHECK (monthly_price > 0),
    low_balance_days INTEGER NOT NULL CHECK (low_balance_days >= 0),
    billing_day      INTEGER NOT NULL CHECK (billing_day BETWEEN 1 AND 31),
    created_at       INTEGER NOT NULL
) STRICT;

CREATE TABLE channels (
    id           INTEGER PRIMARY KEY,
    partner_id   INTEGER NOT NULL REFERENCES partners (id),
    name         TEXT    NOT NULL CHECK (length(name) BETWEEN 1 AND 64),
    name_key     TEXT    NOT NULL,
    created_at   INTEGER NOT NULL,
    active_until INTEGER,
    auto_renew   INTEGER NOT NULL DEFAULT 0 CHECK (auto_renew IN (0, 1)),
    deleted_at   INTEGER,
    billing      TEXT    NOT NULL DEFAULT 'balance' CHECK (billing IN ('balance', 'subscription'))
) STRICT;
-- A name is unique among a partner's live channels; deleted ones keep theirs.
CREATE UNIQUE INDEX channels_live_name ON channels (partner_id, name_key) WHERE deleted_at IS NULL;
CREATE INDEX channels_partner ON channels (partner_id);
CREATE INDEX channels_expiry ON channels (active_until) WHERE deleted_at IS NULL;

-- Accounts hold a cached balance, maintained by the trigger below from the transfers;
-- `ledger verify` recomputes every balance from the transfers and compares.
CREATE TABLE accounts (
    code       TEXT    PRIMARY KEY,
    partner_id INTEGER REFERENCES partners (id),
    channel_id INTEGER REFERENCES channels (id),
    balance    INTEGER NOT NULL DEFAULT 0
) STRICT, WITHOUT ROWID;
INSERT INTO accounts (code) VALUES
    ('ext:purchases'), ('ext:grants'), ('ext:consumed'), ('ext:subscriptions');

CREATE TABLE members (
    user_id     INTEGER PRIMARY KEY,
    partner_id  INTEGER NOT NULL REFERENCES partners (id),
    role        TEXT    NOT NULL CHECK (role IN ('owner', 'member')),
    linked_at   INTEGER NOT NULL,
    unreachable INTEGER NOT NULL DEFAULT 0 CHECK (unreachable IN (0, 1))
) STRICT;
CREATE INDEX members_partner ON members (partner_id);

CREATE TABLE invites (
    id         INTEGER PRIMARY KEY,
    partner_id INTEGER NOT NULL REFERENCES partners (id),
    role       TEXT    NOT NULL CHECK (role IN ('owner', 'member')),
    code_hash  TEXT    NOT NULL UNIQUE CHECK (length(code_hash) = 64),
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL CHECK (expires_at > created_at),
    created_by TEXT    NOT NULL,
    used_at    INTEGER,
    used_by    INTEGER,
    CHECK ((used_at IS NULL) = (used_by IS NULL))
) STRICT;

CREATE TABLE orders (
    id            INTEGER PRIMARY KEY,
    partner_id    INTEGER NOT NULL REFERENCES partners (id),
    kind          TEXT    NOT NULL CHECK (kind IN ('topup', 'invoice', 'subscription')),
    days          INTEGER NOT NULL CHECK (days > 0),
    amount        INTEGER NOT NULL CHECK (amount > 0),
    currency      TEXT    NOT NULL CHECK (length(currency) = 3),
    status        TEXT    NOT NULL CHECK (status IN ('open', 'paid', 'expired', 'failed', 'canceled')),
    created_at    INTEGER NOT NULL,
    created_by    TEXT    NOT NULL,
    period        TEXT    CHECK (period IS NULL OR period GLOB '[0-9][0-9][0-9][0-9]-[0-1][0-9]'),
    channels      INTEGER CHECK (channels IS NULL OR channels > 0),
    channel_id    INTEGER REFERENCES channels (id),
    provider_ref  TEXT    UNIQUE,
    payment_ref   TEXT,
    url           TEXT,
    paid_at       INTEGER,
    closed_at     INTEGER,
    refunded_days INTEGER NOT NULL DEFAULT 0 CHECK (refunded_days BETWEEN 0 AND days),
    CHECK ((status = 'paid') = (paid_at IS NOT NULL)),
    CHECK (period IS NULL OR kind = 'invoice')
) STRICT;
-- At most one monthly invoice per partner and month, whatever re-runs happen.
CREATE UNIQUE INDEX orders_invoice_period ON orders (partner_id, period) WHERE period IS NOT NULL;
CREATE INDEX orders_partner ON orders (partner_id, status);
CREATE INDEX orders_open ON orders (created_at) WHERE status = 'open';

CREATE TABLE transfers (
    id         INTEGER PRIMARY KEY,
    key        TEXT    NOT NULL UNIQUE,
    debit      TEXT    NOT NULL REFERENCES accounts (code),
    credit     TEXT    NOT NULL REFERENCES accounts (code),
    days       INTEGER NOT NULL CHECK (days > 0),
    kind       TEXT    NOT NULL CHECK (kind IN ('purchase', 'refund', 'grant', 'removal',
                   'allocation', 'renewal', 'return', 'consumption', 'subscription')),
    actor      TEXT    NOT NULL CHECK (actor <> ''),
    reason     TEXT    NOT NULL,
    created_at INTEGER NOT NULL,
    order_id   INTEGER REFERENCES orders (id),
    digest     TEXT    NOT NULL CHECK (length(digest) = 64),
    CHECK (debit <> credit)
) STRICT;
CREATE INDEX transfers_debit ON transfers (debit, id);
CREATE INDEX transfers_credit ON transfers (credit, id);
-- A paid order is credited exactly once.
CREATE UNIQUE INDEX transfers_one_purchase ON transfers (order_id) WHERE kind = 'purchase';

-- Only a refund may take a partner below zero (rule 11).
CREATE TRIGGER transfers_no_overdraft BEFORE INSERT ON transfers
WHEN NEW.kind <> 'refund' AND NEW.debit GLOB 'partner:*'
 AND (SELECT balance FROM accounts WHERE code = NEW.debit) < NEW.days
BEGIN
    SELECT RAISE(ABORT, 'overdraft: the partner balance does not cover the transfer');
END;

CREATE TRIGGER transfers_move_days AFTER INSERT ON transfers
BEGIN
    UPDATE accounts SET balance = balance - NEW.days WHERE code = NEW.debit;
    UPDATE accounts SET balance = balance + NEW.days WHERE code = NEW.credit;
END;

-- The ledger is append-only: corrections are new transfers (rule 11).
CREATE TRIGGER transfers_no_update BEFORE UPDATE ON transfers
BEGIN
    SELECT RAISE(ABORT, 'transfers are append-only');
END;
CREATE TRIGGER transfers_no_delete BEFORE DELETE ON transfers
BEGIN
    SELECT RAISE(ABORT, 'transfers are append-only');
END;

-- Outcomes of idempotent operations: repeating a key returns the first outcome.
CREATE TABLE operations (
    key        TEXT    PRIMARY KEY,
    kind       TEXT    NOT NULL,
    outcome    TEXT    NOT NULL,
    created_at INTEGER NOT NULL
) STRICT, WITHOUT ROWID;

-- Who changed what, for changes that move no days.
CREATE TABLE events (
    id         INTEGER PRIMARY KEY,
    at         INTEGER NOT NULL,
    actor      TEXT    NOT NULL CHECK (actor <> ''),
    action     TEXT    NOT NULL,
    partner_id INTEGER REFERENCES partners (id),
    detail     TEXT    NOT NULL
) STRICT;
CREATE INDEX events_partner ON events (partner_id, id);
