-- The update inbox (core/inbox.py): every Telegram update is recorded here before its
-- offset is confirmed, and marked handled once answered. Handled rows are pruned after a
-- day; until then they also tell a redelivered update from a new one.
CREATE TABLE inbox (
    update_id   INTEGER PRIMARY KEY,
    payload     TEXT    NOT NULL,
    received_at INTEGER NOT NULL,
    handled_at  INTEGER
) STRICT;
CREATE INDEX inbox_pending ON inbox (update_id) WHERE handled_at IS NULL;
CREATE INDEX inbox_handled ON inbox (handled_at) WHERE handled_at IS NOT NULL;
