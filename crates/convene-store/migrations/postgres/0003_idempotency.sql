-- Requests sent to the native API with an `Idempotency-Key`: one row per (API key, idempotency key), written before
-- the request runs and completed with its answer, so that a repeat is answered from here instead of run again.
-- The same table as migrations/sqlite/0003_idempotency.sql: timestamps BIGINT unix milliseconds, uuids TEXT.

CREATE TABLE idempotency_keys (
    api_key_id      TEXT   NOT NULL REFERENCES api_keys (id) ON DELETE CASCADE,
    idempotency_key TEXT   NOT NULL,
    -- Method, path, query and body hash of the request that first used the key.
    fingerprint     TEXT   NOT NULL,
    created_at      BIGINT NOT NULL,
    -- The answer: all NULL while the request is in progress.
    status          BIGINT,
    content_type    TEXT,
    body            TEXT,
    PRIMARY KEY (api_key_id, idempotency_key),
    CHECK ((status IS NULL) = (body IS NULL))
);

-- Expired rows, oldest first.
CREATE INDEX idempotency_keys_created_at ON idempotency_keys (created_at);
