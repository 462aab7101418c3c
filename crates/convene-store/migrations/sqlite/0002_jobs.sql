-- Group creation: instance settings (pacing, invites, backup admins, a pause the network imposed), every creation
-- attempt (what pacing counts), and the job queue. Same portable types as 0001.

CREATE TABLE instance_settings (
    instance_id              INTEGER NOT NULL PRIMARY KEY REFERENCES instances (id) ON DELETE CASCADE,
    -- A policy of the instance's own when pacing_burst is set; the kind's default otherwise.
    pacing_min_interval_secs INTEGER,
    pacing_burst             INTEGER,
    pacing_daily_cap         INTEGER,
    auto_invite              INTEGER NOT NULL DEFAULT 0 CHECK (auto_invite IN (0, 1)),
    -- Space-separated E.164 digits; '' for none.
    backup_admins            TEXT    NOT NULL DEFAULT '',
    paused_until             INTEGER,
    pause_reason             TEXT
) STRICT;

CREATE TABLE creation_attempts (
    id          TEXT    NOT NULL PRIMARY KEY,
    instance_id INTEGER NOT NULL REFERENCES instances (id) ON DELETE CASCADE,
    job_id      TEXT,
    started_at  INTEGER NOT NULL,
    finished_at INTEGER,
    outcome     TEXT,
    detail      TEXT
) STRICT;

CREATE INDEX creation_attempts_by_instance ON creation_attempts (instance_id, started_at);
CREATE INDEX creation_attempts_by_job ON creation_attempts (job_id, started_at);

CREATE TABLE jobs (
    id                 TEXT    NOT NULL PRIMARY KEY,
    batch_id           TEXT,
    -- JobState::as_str.
    state              TEXT    NOT NULL,
    -- Space-separated instance ids: the pool the job may run on.
    instance_ids       TEXT    NOT NULL,
    pinned_instance_id INTEGER,
    request            TEXT    NOT NULL,
    creation_key       TEXT    NOT NULL UNIQUE,
    attempts           INTEGER NOT NULL,
    next_run_at        INTEGER NOT NULL,
    needs_reconcile    INTEGER NOT NULL CHECK (needs_reconcile IN (0, 1)),
    last_error         TEXT,
    result             TEXT,
    created_at         INTEGER NOT NULL,
    updated_at         INTEGER NOT NULL
) STRICT;

CREATE INDEX jobs_due ON jobs (state, next_run_at, created_at);
CREATE INDEX jobs_by_batch ON jobs (batch_id);
