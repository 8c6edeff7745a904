-- vca-sip data model (PostgreSQL). Ids are native UUIDs; timestamps are
-- TIMESTAMPTZ. Every tenant-owned row carries tenant_id.

CREATE TABLE tenants (
    id                   UUID PRIMARY KEY,
    name                 TEXT NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    status               TEXT NOT NULL DEFAULT 'active'
                         CHECK (status IN ('active', 'suspended', 'deleted')),
    plan                 TEXT NOT NULL DEFAULT 'starter'
                         CHECK (plan IN ('starter', 'growth', 'custom')),
    default_country_code TEXT NOT NULL DEFAULT '91'
                         CHECK (length(default_country_code) BETWEEN 1 AND 3
                                AND default_country_code ~ '^[0-9]+$'),
    max_concurrent_calls BIGINT NOT NULL DEFAULT 10 CHECK (max_concurrent_calls >= 0),
    created_at           TIMESTAMPTZ NOT NULL,
    updated_at           TIMESTAMPTZ NOT NULL
);

CREATE TABLE sip_trunks (
    id                   UUID PRIMARY KEY,
    tenant_id            UUID REFERENCES tenants (id),
    name                 TEXT NOT NULL,
    provider             TEXT NOT NULL DEFAULT 'generic',
    transport            TEXT NOT NULL DEFAULT 'udp' CHECK (transport IN ('udp', 'tcp', 'tls')),
    host                 TEXT,
    port                 BIGINT CHECK (port BETWEEN 1 AND 65535),
    allowed_cidrs        JSONB NOT NULL DEFAULT '[]',
    auth                 TEXT NOT NULL DEFAULT 'ip' CHECK (auth IN ('ip', 'digest', 'ip+digest')),
    realm                TEXT,
    username             TEXT,
    ha1                  JSONB NOT NULL DEFAULT '{}',
    digest_algorithms    JSONB NOT NULL DEFAULT '["SHA-256","MD5"]',
    max_concurrent_calls BIGINT CHECK (max_concurrent_calls >= 0),
    default_country_code TEXT NOT NULL DEFAULT '91',
    codecs               JSONB NOT NULL DEFAULT '["PCMA","PCMU"]',
    enabled              BOOLEAN NOT NULL DEFAULT TRUE,
    created_at           TIMESTAMPTZ NOT NULL,
    UNIQUE (tenant_id, id)
);

CREATE TABLE ai_profiles (
    id            UUID PRIMARY KEY,
    tenant_id     UUID NOT NULL REFERENCES tenants (id),
    name          TEXT NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    role          TEXT NOT NULL
                  CHECK (role IN ('receptionist', 'sales', 'support', 'dispatcher', 'custom')),
    system_prompt TEXT NOT NULL CHECK (length(trim(system_prompt)) > 0),
    is_default    BOOLEAN NOT NULL DEFAULT FALSE,
    created_at    TIMESTAMPTZ NOT NULL,
    UNIQUE (tenant_id, id)
);
-- At most one default profile per tenant.
CREATE UNIQUE INDEX ai_profiles_one_default ON ai_profiles (tenant_id) WHERE is_default;

CREATE TABLE phone_numbers (
    id            UUID PRIMARY KEY,
    tenant_id     UUID NOT NULL REFERENCES tenants (id),
    did_number    TEXT NOT NULL UNIQUE CHECK (did_number ~ '^\+[1-9][0-9]{7,14}$'),
    provider_type TEXT NOT NULL DEFAULT 'generic' CHECK (provider_type IN ('generic', 'tata')),
    trunk_id      UUID REFERENCES sip_trunks (id),
    ai_profile_id UUID,
    is_active     BOOLEAN NOT NULL DEFAULT TRUE,
    created_at    TIMESTAMPTZ NOT NULL,
    -- A number's AI profile belongs to the number's own tenant.
    FOREIGN KEY (tenant_id, ai_profile_id) REFERENCES ai_profiles (tenant_id, id)
);
CREATE INDEX phone_numbers_tenant ON phone_numbers (tenant_id, id);

CREATE TABLE calls (
    id              UUID PRIMARY KEY,
    tenant_id       UUID NOT NULL REFERENCES tenants (id),
    phone_number_id UUID REFERENCES phone_numbers (id) ON DELETE SET NULL,
    ai_profile_id   UUID,
    trunk_id        UUID,
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
    sip_status      BIGINT,
    hangup_cause    TEXT CHECK (hangup_cause IN
                    ('caller_bye', 'server_bye', 'cancel', 'timeout', 'error', 'rejected')),
    started_at      TIMESTAMPTZ NOT NULL,
    answered_at     TIMESTAMPTZ,
    ended_at        TIMESTAMPTZ,
    duration_s      BIGINT
);
CREATE INDEX calls_tenant ON calls (tenant_id, id);
CREATE INDEX calls_sip_call_id ON calls (sip_call_id);

CREATE TABLE call_events (
    id        UUID PRIMARY KEY,
    call_id   UUID NOT NULL REFERENCES calls (id),
    tenant_id UUID NOT NULL REFERENCES tenants (id),
    kind      TEXT NOT NULL,
    at        TIMESTAMPTZ NOT NULL,
    detail    JSONB NOT NULL DEFAULT '{}'
);
CREATE INDEX call_events_call ON call_events (tenant_id, call_id, id);

CREATE TABLE api_keys (
    id         UUID PRIMARY KEY,
    tenant_id  UUID REFERENCES tenants (id),
    key_hash   TEXT NOT NULL UNIQUE,
    created_at TIMESTAMPTZ NOT NULL,
    revoked_at TIMESTAMPTZ
);

-- Attempts that resolved to no tenant (unknown DID, scanners), counted per source and
-- reason per minute so that a flood is one row per minute, not one write per packet.
CREATE TABLE rejected_attempts (
    minute  TIMESTAMPTZ NOT NULL,
    source  TEXT NOT NULL,
    reason  TEXT NOT NULL,
    count   BIGINT NOT NULL CHECK (count > 0),
    last_called TEXT,
    PRIMARY KEY (minute, source, reason)
);
