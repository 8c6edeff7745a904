-- vca-sip data model (SQLite). Ids are UUIDs as hyphenated text; timestamps are UTC
-- RFC 3339 text. Every tenant-owned row carries tenant_id.

CREATE TABLE tenants (
    id                   TEXT PRIMARY KEY NOT NULL,
    name                 TEXT NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    status               TEXT NOT NULL DEFAULT 'active'
                         CHECK (status IN ('active', 'suspended', 'deleted')),
    plan                 TEXT NOT NULL DEFAULT 'starter'
                         CHECK (plan IN ('starter', 'growth', 'custom')),
    default_country_code TEXT NOT NULL DEFAULT '91'
                         CHECK (length(default_country_code) BETWEEN 1 AND 3
                                AND default_country_code NOT GLOB '*[^0-9]*'),
    max_concurrent_calls INTEGER NOT NULL DEFAULT 10 CHECK (max_concurrent_calls >= 0),
    created_at           TEXT NOT NULL,
    updated_at           TEXT NOT NULL
);

CREATE TABLE sip_trunks (
    id                   TEXT PRIMARY KEY NOT NULL,
    tenant_id            TEXT REFERENCES tenants (id),
    name                 TEXT NOT NULL,
    provider             TEXT NOT NULL DEFAULT 'generic',
    transport            TEXT NOT NULL DEFAULT 'udp' CHECK (transport IN ('udp', 'tcp', 'tls')),
    host                 TEXT,
    port                 INTEGER CHECK (port BETWEEN 1 AND 65535),
    allowed_cidrs        TEXT NOT NULL DEFAULT '[]',
    auth                 TEXT NOT NULL DEFAULT 'ip' CHECK (auth IN ('ip', 'digest', 'ip+digest')),
    realm                TEXT,
    username             TEXT,
    ha1                  TEXT NOT NULL DEFAULT '{}',
    digest_algorithms    TEXT NOT NULL DEFAULT '["SHA-256","MD5"]',
    max_concurrent_calls INTEGER CHECK (max_concurrent_calls >= 0),
    default_country_code TEXT NOT NULL DEFAULT '91',
    codecs               TEXT NOT NULL DEFAULT '["PCMA","PCMU"]',
    enabled              BOOLEAN NOT NULL DEFAULT 1,
    created_at           TEXT NOT NULL,
    UNIQUE (tenant_id, id)
);

CREATE TABLE ai_profiles (
    id            TEXT PRIMARY KEY NOT NULL,
    tenant_id     TEXT NOT NULL REFERENCES tenants (id),
    name          TEXT NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    role          TEXT NOT NULL
                  CHECK (role IN ('receptionist', 'sales', 'support', 'dispatcher', 'custom')),
    system_prompt TEXT NOT NULL CHECK (length(trim(system_prompt)) > 0),
    is_default    BOOLEAN NOT NULL DEFAULT 0,
    created_at    TEXT NOT NULL,
    UNIQUE (tenant_id, id)
);
-- At most one default profile per tenant.
CREATE UNIQUE INDEX ai_profiles_one_default ON ai_profiles (tenant_id) WHERE is_default = 1;

CREATE TABLE phone_numbers (
    id            TEXT PRIMARY KEY NOT NULL,
    tenant_id     TEXT NOT NULL REFERENCES tenants (id),
    did_number    TEXT NOT NULL UNIQUE CHECK (did_number GLOB '+[1-9]*'
                                              AND did_number NOT GLOB '+*[^0-9]*'
                                              AND length(did_number) BETWEEN 9 AND 16),
    provider_type TEXT NOT NULL DEFAULT 'generic' CHECK (provider_type IN ('generic', 'tata')),
    trunk_id      TEXT REFERENCES sip_trunks (id),
    ai_profile_id TEXT,
    is_active     BOOLEAN NOT NULL DEFAULT 1,
    created_at    TEXT NOT NULL,
    -- A number's AI profile belongs to the number's own tenant.
    FOREIGN KEY (tenant_id, ai_profile_id) REFERENCES ai_profiles (tenant_id, id)
);
CREATE INDEX phone_numbers_tenant ON phone_numbers (tenant_id, id);

CREATE TABLE calls (
    id              TEXT PRIMARY KEY NOT NULL,
    tenant_id       TEXT NOT NULL REFERENCES tenants (id),
    phone_number_id TEXT REFERENCES phone_numbers (id) ON DELETE SET NULL,
    ai_profile_id   TEXT,
    trunk_id        TEXT,
    direction       TEXT NOT NULL CHECK (direction IN ('inbound', 'outbound')),
    caller          TEXT NOT NULL,
    called          TEXT NOT NULL,
    called_raw      TEXT NOT NULL,
    sip_call_id     TEXT NOT NULL,
    transport       TEXT NOT NULL CHECK (transport IN ('udp', 'tcp', 'tls', 'ws', 'wss')),
    remote_addr     TEXT NOT NULL,
    codec           TEXT,
    status          TEXT NOT NULL
                    CHECK (status IN ('initiated', 'ringing', 'answered', 'ended', 'failed')),
    sip_status      INTEGER,
    hangup_cause    TEXT CHECK (hangup_cause IN
                    ('caller_bye', 'server_bye', 'cancel', 'timeout', 'error', 'rejected')),
    started_at      TEXT NOT NULL,
    answered_at     TEXT,
    ended_at        TEXT,
    duration_s      INTEGER
);
CREATE INDEX calls_tenant ON calls (tenant_id, id);
CREATE INDEX calls_sip_call_id ON calls (sip_call_id);

CREATE TABLE call_events (
    id        TEXT PRIMARY KEY NOT NULL,
    call_id   TEXT NOT NULL REFERENCES calls (id),
    tenant_id TEXT NOT NULL REFERENCES tenants (id),
    kind      TEXT NOT NULL,
    at        TEXT NOT NULL,
    detail    TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX call_events_call ON call_events (tenant_id, call_id, id);

CREATE TABLE api_keys (
    id         TEXT PRIMARY KEY NOT NULL,
    tenant_id  TEXT REFERENCES tenants (id),
    key_hash   TEXT NOT NULL UNIQUE,
    created_at TEXT NOT NULL,
    revoked_at TEXT
);

-- Attempts that resolved to no tenant (unknown DID, scanners), counted per source and
-- reason per minute so that a flood is one row per minute, not one write per packet.
CREATE TABLE rejected_attempts (
    minute  TEXT NOT NULL,
    source  TEXT NOT NULL,
    reason  TEXT NOT NULL,
    count   INTEGER NOT NULL CHECK (count > 0),
    last_called TEXT,
    PRIMARY KEY (minute, source, reason)
);
