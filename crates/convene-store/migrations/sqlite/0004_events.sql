-- Events and their webhook deliveries: the outbox. An event is written with the change that caused it; its
-- deliveries (one per endpoint whose filter takes it) are written in the same transaction. Same portable types as 0001.

CREATE TABLE events (
    seq             INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,
    id              TEXT    NOT NULL UNIQUE,
    event_type      TEXT    NOT NULL,
    -- No foreign key: events outlive a deleted instance.
    instance_id     INTEGER,
    ordering_key    TEXT    NOT NULL,
    -- The whole JSON body receivers get.
    payload         TEXT    NOT NULL,
    created_at      INTEGER NOT NULL,
    -- When a poller (Green API deleteNotification) took it off the instance's queue.
    acknowledged_at INTEGER
) STRICT;

CREATE INDEX events_queue ON events (instance_id, acknowledged_at, seq);

CREATE TABLE webhook_endpoints (
    id                         TEXT    NOT NULL PRIMARY KEY,
    url                        TEXT    NOT NULL,
    description                TEXT    NOT NULL,
    -- '' for every event, else ',type,category.*,' (see events::filter_text).
    event_filter               TEXT    NOT NULL,
    enabled                    INTEGER NOT NULL CHECK (enabled IN (0, 1)),
    disabled_reason            TEXT,
    -- Sealed by the server's key, never in clear.
    secret                     TEXT    NOT NULL,
    previous_secret            TEXT,
    previous_secret_expires_at INTEGER,
    failing_since              INTEGER,
    created_at                 INTEGER NOT NULL,
    updated_at                 INTEGER NOT NULL
) STRICT;

CREATE TABLE webhook_deliveries (
    id              INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,
    endpoint_id     TEXT    NOT NULL REFERENCES webhook_endpoints (id) ON DELETE CASCADE,
    event_id        TEXT    NOT NULL REFERENCES events (id),
    ordering_key    TEXT    NOT NULL,
    -- DeliveryState::as_str.
    state           TEXT    NOT NULL,
    attempts        INTEGER NOT NULL,
    next_attempt_at INTEGER NOT NULL,
    last_error      TEXT,
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL
) STRICT;

CREATE INDEX webhook_deliveries_due ON webhook_deliveries (state, next_attempt_at);
CREATE INDEX webhook_deliveries_order ON webhook_deliveries (endpoint_id, ordering_key, state, id);
CREATE INDEX webhook_deliveries_by_event ON webhook_deliveries (event_id);

CREATE TABLE webhook_attempts (
    id            TEXT    NOT NULL PRIMARY KEY,
    delivery_id   INTEGER NOT NULL REFERENCES webhook_deliveries (id) ON DELETE CASCADE,
    attempted_at  INTEGER NOT NULL,
    duration_ms   INTEGER NOT NULL,
    status        INTEGER,
    error         TEXT,
    response_body TEXT
) STRICT;

CREATE INDEX webhook_attempts_by_delivery ON webhook_attempts (delivery_id, attempted_at);
