-- The nodes serving this database (issue 14): each running `convene serve` says it is alive until seen_until (unix
-- ms) and says so again well before then; the nodes alive share the numbers between them, and reach each other at
-- their address (the base URL of their API) for what a number's connection must do on the node that runs it.
CREATE TABLE cluster_nodes (
    node       TEXT    NOT NULL PRIMARY KEY,
    address    TEXT    NOT NULL,
    -- A tag of the node's sealing key (an HMAC of a fixed label), so that a node started with another key than the
    -- others' is refused: it could open none of their sealed values.
    key_tag    TEXT    NOT NULL,
    -- Where the process under this id runs (an id kept in its data directory): a second process under the same id
    -- elsewhere, while this one is alive, is refused. A restart on the same directory takes the id back at once.
    home       TEXT    NOT NULL,
    started_at BIGINT  NOT NULL,
    seen_until BIGINT  NOT NULL
);

-- A node renews and reads its own leases.
CREATE INDEX number_leases_by_node ON number_leases (node, expires_at);
