-- Secrets every node of a deployment shares, created once: the key that signs digest
-- nonces, so that a nonce issued by one node (or before a restart) verifies on another.
CREATE TABLE node_secrets (
    name TEXT PRIMARY KEY,
    value TEXT NOT NULL,
    created_at TEXT NOT NULL
);
