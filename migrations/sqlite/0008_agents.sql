-- Agents: people who answer calls in a browser, registering over SIP WebSocket as
-- sip:USERNAME@<the tenant's sip_domain>. A tenant's sip_domain is the digest realm of its
-- agents and is unique across tenants; existing tenants get `<tenant_id>.agents.invalid`.
-- An agent's password is never stored: only HA1 = H(username:sip_domain:password) for MD5
-- and SHA-256, in a JSON object keyed by the algorithm's token.
ALTER TABLE tenants ADD COLUMN sip_domain TEXT NOT NULL DEFAULT '';
UPDATE tenants SET sip_domain = id || '.agents.invalid';
CREATE UNIQUE INDEX tenants_sip_domain ON tenants (sip_domain);

CREATE TABLE agents (
    id           TEXT PRIMARY KEY NOT NULL,
    tenant_id    TEXT NOT NULL REFERENCES tenants (id),
    username     TEXT NOT NULL CHECK (length(username) BETWEEN 1 AND 64),
    display_name TEXT CHECK (display_name IS NULL OR length(display_name) BETWEEN 1 AND 200),
    ha1          TEXT NOT NULL DEFAULT '{}',
    created_at   TEXT NOT NULL,
    updated_at   TEXT NOT NULL,
    UNIQUE (tenant_id, username)
);
