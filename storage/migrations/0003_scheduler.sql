-- Scheduler state: low-balance crossings, expiry warnings sent, invoice reminders, runs.

-- One row per partner once it has been looked at: `below` while the balance is under
-- the threshold and the members were told; `crossings` numbers the downward crossings.
CREATE TABLE alert_state (
    partner_id INTEGER PRIMARY KEY REFERENCES partners (id),
    below      INTEGER NOT NULL CHECK (below IN (0, 1)),
    crossings  INTEGER NOT NULL DEFAULT 0 CHECK (crossings >= 0),
    changed_at INTEGER NOT NULL
) STRICT;

-- Each expiry warning once per channel, expiry instant and stage (3 days, 1 day, 0).
CREATE TABLE expiry_warnings (
    channel_id   INTEGER NOT NULL REFERENCES channels (id),
    active_until INTEGER NOT NULL,
    stage        INTEGER NOT NULL CHECK (stage >= 0),
    sent_at      INTEGER NOT NULL,
    PRIMARY KEY (channel_id, active_until, stage)
) STRICT, WITHOUT ROWID;

ALTER TABLE orders ADD COLUMN reminded_at INTEGER;
ALTER TABLE orders ADD COLUMN overdue_at INTEGER;

CREATE INDEX channels_renew ON channels (active_until)
    WHERE deleted_at IS NULL AND auto_renew = 1;

CREATE TABLE job_runs (
    id          INTEGER PRIMARY KEY,
    job         TEXT    NOT NULL,
    started_at  INTEGER NOT NULL,
    finished_at INTEGER,
    ok          INTEGER CHECK (ok IN (0, 1)),
    summary     TEXT
) STRICT;
CREATE INDEX job_runs_job ON job_runs (job, id);
