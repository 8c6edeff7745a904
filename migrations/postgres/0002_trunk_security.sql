-- Secrets every node of a deployment shares, created once: the key that signs digest
-- nonces, so that a nonce issued by one node (or before a restart) verifies on another.
CREATE TABLE node_secrets (
    name TEXT PRIMARY KEY,
    value TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL
);

-- A digest identity names one trunk: two trunks with the same realm and username could not
-- be told apart when a request answers a challenge. (NULLs, for trunks without
-- credentials, never collide.)
CREATE UNIQUE INDEX sip_trunks_digest_identity ON sip_trunks (realm, username);

-- A TLS trunk may require its carrier to present a certificate, verified against the
-- configured client CA and, when the trunk names a host, valid for that host.
ALTER TABLE sip_trunks ADD COLUMN require_client_cert BOOLEAN NOT NULL DEFAULT FALSE;
