-- One row the storage health probe rewrites every few seconds (as ../0008_heartbeat.sql).
CREATE TABLE heartbeat (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    at BIGINT  NOT NULL
);
