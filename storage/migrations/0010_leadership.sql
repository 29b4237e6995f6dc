-- Leader fencing (partnerbot/cluster.py): each new leader takes the next epoch before it
-- runs the jobs and the outbox, and the outbox claims deliveries only under the current
-- epoch, so a deposed leader's late round writes nothing and sends nothing.
CREATE TABLE leadership (
    id    INTEGER PRIMARY KEY CHECK (id = 1),
    epoch INTEGER NOT NULL,
    since INTEGER NOT NULL
) STRICT;
INSERT INTO leadership (id, epoch, since) VALUES (1, 0, 0);
