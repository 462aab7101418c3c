-- Keys an operator can scope, make read-only and see in use (issue 11). Same portable types as 0001.

-- The instances the key may see, as space-separated instance ids (as jobs.instance_ids); NULL: every instance (an account-wide key).
ALTER TABLE api_keys ADD COLUMN instance_ids TEXT;
-- A read-only key may read but change nothing.
ALTER TABLE api_keys ADD COLUMN read_only INTEGER NOT NULL DEFAULT 0 CHECK (read_only IN (0, 1));
-- When the key last authenticated a request, to the minute (it is written at most once a minute).
ALTER TABLE api_keys ADD COLUMN last_used_at INTEGER;
