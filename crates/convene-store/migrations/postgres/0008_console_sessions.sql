-- Console sign-ins (issue 12). The same columns as migrations/sqlite/0008_console_sessions.sql.
CREATE TABLE console_sessions (
    -- SHA-256 of the cookie's secret; the secret itself is never stored.
    secret_hash TEXT   NOT NULL PRIMARY KEY,
    api_key_id  TEXT   NOT NULL,
    created_at  BIGINT NOT NULL,
    expires_at  BIGINT NOT NULL
);
