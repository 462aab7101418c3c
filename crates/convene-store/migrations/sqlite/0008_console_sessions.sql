-- Console sign-ins (issue 12). A session acts with the API key it signed in with; a session whose key is revoked
-- finds no key and is signed out. Expired rows are deleted at the next sign-in.
CREATE TABLE console_sessions (
    -- SHA-256 of the cookie's secret; the secret itself is never stored.
    secret_hash TEXT    NOT NULL PRIMARY KEY,
    api_key_id  TEXT    NOT NULL,
    created_at  INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL
) STRICT;
