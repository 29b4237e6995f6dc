-- The update inbox (core/inbox.py), as ../0005_inbox.sql.
CREATE TABLE inbox (
    update_id   BIGINT  PRIMARY KEY,
    payload     TEXT    NOT NULL,
    received_at BIGINT  NOT NULL,
    handled_at  BIGINT
);
CREATE INDEX inbox_pending ON inbox (update_id) WHERE handled_at IS NULL;
CREATE INDEX inbox_handled ON inbox (handled_at) WHERE handled_at IS NOT NULL;
