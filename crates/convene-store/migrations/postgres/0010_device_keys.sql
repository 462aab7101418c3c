-- What a connector keeps for each of its instances (issue 14): a WhatsApp Web device's identity, Signal sessions,
-- pre-keys and app-state keys, which lived in a SQLite file per number (data/whatsapp/<id>.db). One row per
-- (instance, space, scope, key); the value is sealed with the server's key (never in clear); number is what the
-- connector orders or expires rows by (0 when it has none). No foreign key: the connector forgets an instance's rows
-- when it forgets the instance.
CREATE TABLE device_keys (
    instance_id BIGINT  NOT NULL,
    space       TEXT    NOT NULL,
    scope       TEXT    NOT NULL,
    key         TEXT    NOT NULL,
    value       TEXT    NOT NULL,
    number      BIGINT  NOT NULL DEFAULT 0,
    PRIMARY KEY (instance_id, space, scope, key)
);
