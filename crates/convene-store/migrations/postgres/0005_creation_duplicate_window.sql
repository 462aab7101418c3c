-- A synchronous creation's duplicate-window key: a hash of its instance, subject and participant set. A retry
-- without an Idempotency-Key that carries the same key within `creation.duplicate_window_secs` is answered with the
-- first creation's group instead of making a second one. NULL for queued creations and keyed native requests.

ALTER TABLE jobs ADD COLUMN dedupe_key TEXT;

CREATE INDEX jobs_by_dedupe_key ON jobs (dedupe_key, created_at);

