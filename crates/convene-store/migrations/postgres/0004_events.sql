-- Events and their webhook deliveries: the outbox. An event is written with the change that caused it; its
-- deliveries (one per endpoint whose filter takes it) are written in the same transaction. The same tables as migrations/sqlite/0004_events.sql.

CREATE TABLE events (
    seq             BIGINT  GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id              TEXT    NOT NULL UNIQUE,
    event_type      TEXT    NOT NULL,
    -- No foreign key: events outlive a deleted instance.
    instance_id     BIGINT,
    ordering_key    TEXT    NOT NULL,
    -- The whole JSON body receivers get.
    payload         TEXT    NOT NULL,
    created_at      BIGINT  NOT NULL,
    -- When a poller (Green API deleteNotification) took it off the instance's queue.
    acknowledged_at BIGINT
);

CREATE INDEX events_queue ON events (instance_id, acknowledged_at, seq);

CREATE TABLE webhook_endpoints (
    id                         TEXT    NOT NULL PRIMARY KEY,
    url                        TEXT    NOT NULL,
    description                TEXT    NOT NULL,
    -- '' for every event, else ',type,category.*,' (see events::filter_text).
    event_filter               TEXT    NOT NULL,
    enabled                    BOOLEAN NOT NULL,
    disabled_reason            TEXT,
    -- Sealed by the server's key, never in clear.
    secret                     TEXT    NOT NULL,
    previous_secret            TEXT,
    previous_secret_expires_at BIGINT,
    failing_since              BIGINT,
    created_at                 BIGINT  NOT NULL,
    updated_at                 BIGINT  NOT NULL
);

CREATE TABLE webhook_deliveries (
    id              BIGINT  GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    endpoint_id     TEXT    NOT NULL REFERENCES webhook_endpoints (id) ON DELETE CASCADE,
    event_id        TEXT    NOT NULL REFERENCES events (id),
    ordering_key    TEXT    NOT NULL,
    -- DeliveryState::as_str.
    state           TEXT    NOT NULL,
    attempts        BIGINT  NOT NULL,
    next_attempt_at BIGINT  NOT NULL,
    last_error      TEXT,
    created_at      BIGINT  NOT NULL,
    updated_at      BIGINT  NOT NULL
);

CREATE INDEX webhook_deliveries_due ON webhook_deliveries (state, next_attempt_at);
CREATE INDEX webhook_deliveries_order ON webhook_deliveries (endpoint_id, ordering_key, state, id);
CREATE INDEX webhook_deliveries_by_event ON webhook_deliveries (event_id);

CREATE TABLE webhook_attempts (
    id            TEXT    NOT NULL PRIMARY KEY,
    delivery_id   BIGINT  NOT NULL REFERENCES webhook_deliveries (id) ON DELETE CASCADE,
    attempted_at  BIGINT  NOT NULL,
    duration_ms   BIGINT  NOT NULL,
    status        BIGINT,
    error         TEXT,
    response_body TEXT
);

CREATE INDEX webhook_attempts_by_delivery ON webhook_attempts (delivery_id, attempted_at);
