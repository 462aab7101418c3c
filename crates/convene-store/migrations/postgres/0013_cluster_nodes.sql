-- The nodes serving this database (issue 14): each running `convene serve` says it is alive until seen_until (unix
-- ms) and says so again well before then; the nodes alive share the numbers between them.
CREATE TABLE cluster_nodes (
    node       TEXT    NOT NULL PRIMARY KEY,
    started_at BIGINT  NOT NULL,
    seen_until BIGINT  NOT NULL
);

-- A node renews and reads its own leases.
CREATE INDEX number_leases_by_node ON number_leases (node, expires_at);
