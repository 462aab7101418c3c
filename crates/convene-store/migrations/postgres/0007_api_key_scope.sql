-- Keys an operator can scope, make read-only and see in use (issue 11). The same columns as
-- migrations/sqlite/0005_api_key_scope.sql.

-- The instances the key may see, as space-separated instance ids (as jobs.instance_ids); NULL: every instance (an account-wide key).
ALTER TABLE api_keys ADD COLUMN instance_ids TEXT;
-- A read-only key may read but change nothing.
ALTER TABLE api_keys ADD COLUMN read_only BOOLEAN NOT NULL DEFAULT FALSE;
-- When the key last authenticated a request, to the minute (it is written at most once a minute).
ALTER TABLE api_keys ADD COLUMN last_used_at BIGINT;
