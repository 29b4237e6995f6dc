-- One row the storage health probe (storage/probe.py) rewrites every few seconds: a
-- real committed write, so a read-only, locked or failing database is found even when
-- nobody else writes.
CREATE TABLE heartbeat (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    at INTEGER NOT NULL
) STRICT;
