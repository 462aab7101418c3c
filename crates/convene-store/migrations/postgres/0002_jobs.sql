-- Group creation: instance settings (pacing, invites, backup admins, a pause the network imposed), every creation
-- attempt (what pacing counts), and the job queue. The same tables as migrations/sqlite/0002_jobs.sql.

CREATE TABLE instance_settings (
    instance_id              BIGINT  NOT NULL PRIMARY KEY REFERENCES instances (id) ON DELETE CASCADE,
    pacing_min_interval_secs BIGINT,
    pacing_burst             BIGINT,
    pacing_daily_cap         BIGINT,
    auto_invite              BOOLEAN NOT NULL DEFAULT FALSE,
    backup_admins            TEXT    NOT NULL DEFAULT '',
    paused_until             BIGINT,
    pause_reason             TEXT
);

CREATE TABLE creation_attempts (
    id          TEXT   NOT NULL PRIMARY KEY,
    instance_id BIGINT NOT NULL REFERENCES instances (id) ON DELETE CASCADE,
    job_id      TEXT,
    started_at  BIGINT NOT NULL,
    finished_at BIGINT,
    outcome     TEXT,
    detail      TEXT
);

CREATE INDEX creation_attempts_by_instance ON creation_attempts (instance_id, started_at);
CREATE INDEX creation_attempts_by_job ON creation_attempts (job_id, started_at);

CREATE TABLE jobs (
    id                 TEXT COLLATE "C" NOT NULL PRIMARY KEY,
    batch_id           TEXT,
    state              TEXT    NOT NULL,
    instance_ids       TEXT    NOT NULL,
    pinned_instance_id BIGINT,
    request            TEXT    NOT NULL,
    creation_key       TEXT    NOT NULL UNIQUE,
    attempts           BIGINT  NOT NULL,
    next_run_at        BIGINT  NOT NULL,
    needs_reconcile    BOOLEAN NOT NULL,
    last_error         TEXT,
    result             TEXT,
    created_at         BIGINT  NOT NULL,
    updated_at         BIGINT  NOT NULL
);

CREATE INDEX jobs_due ON jobs (state, next_run_at, created_at);
CREATE INDEX jobs_by_batch ON jobs (batch_id);
