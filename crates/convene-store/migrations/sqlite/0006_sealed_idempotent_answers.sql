-- Answers kept for Idempotency-Key replays are sealed from this version on (they can carry an instance's token or a
-- webhook secret); those kept in clear before go.
DELETE FROM idempotency_keys WHERE status IS NOT NULL;
