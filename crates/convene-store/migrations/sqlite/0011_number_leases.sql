-- Which node runs each number (issue 14): one node at a time, until expires_at (unix ms). fence grows by one each
-- time the lease changes hands, so that a node paused past its lease finds it stale and stops.
CREATE TABLE number_leases (
    instance_id INTEGER NOT NULL PRIMARY KEY,
    node        TEXT    NOT NULL,
    fence       INTEGER NOT NULL,
    acquired_at INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL
) STRICT;

-- Every lease taken, in the transaction that takes it: who ran each number from when.
CREATE TABLE lease_history (
    instance_id INTEGER NOT NULL,
    fence       INTEGER NOT NULL,
    node        TEXT    NOT NULL,
    acquired_at INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL,
    PRIMARY KEY (instance_id, fence)
) STRICT;
