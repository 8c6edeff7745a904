//! What the HTTP API returns for tenants, phone numbers, AI profiles, calls and their
//! events, and trunks: the JSON shapes and their OpenAPI schemas, built from the store's rows.
//!
//! Each view's field names, field order, doc comments (the schema descriptions) and schema
//! name are a contract with API clients; tests/fixtures/openapi.json pins them, and the
//! `openapi` tests fail on any change. A column the store adds reaches the API only when its
//! view adds it.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::Serialize;
use utoipa::ToSchema;

use crate::ids::{AgentId, AiProfileId, CallEventId, CallId, PhoneNumberId, TenantId, TrunkId};
use crate::store::model::{
    self, CallStatus, CallTransport, Codec, DigestAlgorithm, Direction, HangupCause, MediaTarget,
    Plan, ProviderType, RecordingStatus, Role, StreamProtocol, TenantStatus, TrunkAuth,
    TrunkTransport,
};

/// A customer of the platform.
#[derive(Debug, Serialize, ToSchema)]
pub struct Tenant {
    pub id: TenantId,
    pub name: String,
    pub status: TenantStatus,
    pub plan: Plan,
    /// Country calling code applied to national number forms: digits, no plus.
    pub default_country_code: String,
    pub max_concurrent_calls: i64,
    /// The host of its agents' SIP addresses (`sip:USERNAME@<sip_domain>`) and their digest
    /// realm; unique across tenants, set by the admin only.
    pub sip_domain: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<model::Tenant> for Tenant {
    fn from(row: model::Tenant) -> Self {
        Tenant {
            id: row.id,
            name: row.name,
            status: row.status,
            plan: row.plan,
            default_country_code: row.default_country_code,
            max_concurrent_calls: row.max_concurrent_calls,
            sip_domain: row.sip_domain,
            created_at: row.created_at,
            updated_at: row.updated_at,
        }
    }
}

/// A person who answers the tenant's calls in a browser, registering over SIP WebSocket
/// as `sip:USERNAME@<sip_domain>`. The password is never shown.
#[derive(Debug, Serialize, ToSchema)]
pub struct Agent {
    pub id: AgentId,
    pub tenant_id: TenantId,
    pub username: String,
    pub display_name: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<model::Agent> for Agent {
    fn from(row: model::Agent) -> Self {
        Agent {
            id: row.id,
            tenant_id: row.tenant_id,
            username: row.username,
            display_name: row.display_name,
            created_at: row.created_at,
            updated_at: row.updated_at,
        }
    }
}

/// A dialed number (DID) owned by one tenant.
#[derive(Debug, Serialize, ToSchema)]
pub struct PhoneNumber {
    pub id: PhoneNumberId,
    pub tenant_id: TenantId,
    /// E.164 with a leading "+".
    pub did_number: String,
    pub provider_type: ProviderType,
    pub trunk_id: Option<TrunkId>,
    pub ai_profile_id: Option<AiProfileId>,
    pub is_active: bool,
    pub created_at: DateTime<Utc>,
}

impl From<model::PhoneNumber> for PhoneNumber {
    fn from(row: model::PhoneNumber) -> Self {
        PhoneNumber {
            id: row.id,
            tenant_id: row.tenant_id,
            did_number: row.did_number,
            provider_type: row.provider_type,
            trunk_id: row.trunk_id,
            ai_profile_id: row.ai_profile_id,
            is_active: row.is_active,
            created_at: row.created_at,
        }
    }
}

/// How the AI agent answering a tenant's calls behaves, and how a call reaches it. The
/// stream's auth token is never part of it: `stream_auth_token_set` says whether one is.
#[derive(Debug, Serialize, ToSchema)]
pub struct AiProfile {
    pub id: AiProfileId,
    pub tenant_id: TenantId,
    pub name: String,
    pub role: Role,
    pub system_prompt: String,
    pub is_default: bool,
    pub created_at: DateTime<Utc>,
    pub media_target: MediaTarget,
    /// `ws://` or `wss://`; set whenever `media_target` is "stream".
    pub stream_url: Option<String>,
    pub stream_protocol: StreamProtocol,
    /// Whether a stream auth token is set; the token itself is write-only.
    pub stream_auth_token_set: bool,
    /// Passed to the agent with the stream's start.
    pub stream_parameters: BTreeMap<String, String>,
    /// PEM certificates trusted for a `wss://` stream besides the public roots.
    pub stream_ca_pem: Option<String>,
    /// How long connecting to the agent may take, in milliseconds.
    pub stream_connect_timeout_ms: i64,
    /// The most agent audio queued for playout to the caller, in milliseconds.
    pub max_queued_audio_ms: i64,
    /// A streamed call's audio is recorded.
    pub record: bool,
}

impl From<model::AiProfile> for AiProfile {
    fn from(row: model::AiProfile) -> Self {
        AiProfile {
            id: row.id,
            tenant_id: row.tenant_id,
            name: row.name,
            role: row.role,
            system_prompt: row.system_prompt,
            is_default: row.is_default,
            created_at: row.created_at,
            media_target: row.media_target,
            stream_url: row.stream_url,
            stream_protocol: row.stream_protocol,
            stream_auth_token_set: row.stream_auth_token_set,
            stream_parameters: row.stream_parameters.0,
            stream_ca_pem: row.stream_ca_pem,
            stream_connect_timeout_ms: row.stream_connect_timeout_ms,
            max_queued_audio_ms: row.max_queued_audio_ms,
            record: row.record,
        }
    }
}

/// A call record (CDR).
#[derive(Debug, Serialize, ToSchema)]
pub struct Call {
    pub id: CallId,
    pub tenant_id: TenantId,
    pub phone_number_id: Option<PhoneNumberId>,
    pub ai_profile_id: Option<AiProfileId>,
    pub trunk_id: Option<TrunkId>,
    pub direction: Direction,
    /// The caller as the From header gave it.
    pub caller: String,
    /// The dialed number in E.164.
    pub called: String,
    /// The dialed number as it arrived.
    pub called_raw: String,
    pub sip_call_id: String,
    pub transport: CallTransport,
    pub remote_addr: String,
    pub codec: Option<String>,
    pub status: CallStatus,
    /// The final SIP status vca-sip sent.
    pub sip_status: Option<i64>,
    /// The Q.850 cause of the Reason header vca-sip sent with its final response, or
    /// received with the far end's (RFC 6432): a carrier's 480 for channel capacity (cause
    /// 34) is told apart from one for no answer (19).
    pub q850_cause: Option<i64>,
    pub hangup_cause: Option<HangupCause>,
    pub started_at: DateTime<Utc>,
    pub answered_at: Option<DateTime<Utc>>,
    pub ended_at: Option<DateTime<Utc>>,
    /// Whole seconds from answer to end; null when never answered.
    pub duration_s: Option<i64>,
    /// The call's recording; null when the call is not recorded (its AI profile does not
    /// have `record`).
    pub recording: Option<Recording>,
}

/// A call's recording: a stereo WAV (PCM 16-bit, 8 kHz), caller left, agent right, at
/// `GET .../calls/{call_id}/recording` once `ready`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Recording {
    pub status: RecordingStatus,
    /// Its length; null until it is complete.
    pub duration_ms: Option<i64>,
    /// The file's size, header included; null until it is complete, and once deleted.
    pub bytes: Option<i64>,
    /// Why it failed: `reason: detail`, the reason one of `unwritable`, `disk_full`,
    /// `write_failed`, `queue_full`, `writer_stopped`, `no_media`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl From<model::Call> for Call {
    fn from(row: model::Call) -> Self {
        Call {
            id: row.id,
            tenant_id: row.tenant_id,
            phone_number_id: row.phone_number_id,
            ai_profile_id: row.ai_profile_id,
            trunk_id: row.trunk_id,
            direction: row.direction,
            caller: row.caller,
            called: row.called,
            called_raw: row.called_raw,
            sip_call_id: row.sip_call_id,
            transport: row.transport,
            remote_addr: row.remote_addr,
            codec: row.codec,
            status: row.status,
            sip_status: row.sip_status,
            q850_cause: row.q850_cause,
            hangup_cause: row.hangup_cause,
            started_at: row.started_at,
            answered_at: row.answered_at,
            ended_at: row.ended_at,
            duration_s: row.duration_s,
            recording: row.recording_status.map(|status| Recording {
                status,
                duration_ms: row.recording_duration_ms,
                bytes: row.recording_bytes,
                error: row.recording_error,
            }),
        }
    }
}

/// One step on a call's timeline.
#[derive(Debug, Serialize, ToSchema)]
pub struct CallEvent {
    pub id: CallEventId,
    pub call_id: CallId,
    pub tenant_id: TenantId,
    pub kind: String,
    pub at: DateTime<Utc>,
    #[schema(value_type = Object)]
    pub detail: serde_json::Value,
}

impl From<model::CallEvent> for CallEvent {
    fn from(row: model::CallEvent) -> Self {
        CallEvent {
            id: row.id,
            call_id: row.call_id,
            tenant_id: row.tenant_id,
            kind: row.kind,
            at: row.at,
            detail: row.detail.0,
        }
    }
}

/// A SIP trunk: a carrier connection owned by the platform (`tenant_id` null) or by one
/// tenant. Its password is never part of it; only HA1 hashes are stored, and they are read
/// only through [`Store::all_enabled_trunks`](crate::store::Store::all_enabled_trunks).
#[derive(Debug, Serialize, ToSchema)]
pub struct Trunk {
    pub id: TrunkId,
    /// Null for a platform trunk.
    pub tenant_id: Option<TenantId>,
    pub name: String,
    pub provider: String,
    pub transport: TrunkTransport,
    pub host: Option<String>,
    pub port: Option<i64>,
    /// Source networks admitted, normalised (`203.0.113.0/24`, `2001:db8::/32`).
    pub allowed_cidrs: Vec<String>,
    pub auth: TrunkAuth,
    pub realm: Option<String>,
    pub username: Option<String>,
    /// Challenge order: one challenge per algorithm, in this order.
    pub digest_algorithms: Vec<DigestAlgorithm>,
    /// Null: no limit of the trunk's own.
    pub max_concurrent_calls: Option<i64>,
    pub default_country_code: String,
    pub codecs: Vec<Codec>,
    pub enabled: bool,
    pub created_at: DateTime<Utc>,
    /// Over TLS, the carrier must present a verified certificate (valid for `host` when set).
    pub require_client_cert: bool,
}

impl From<model::Trunk> for Trunk {
    fn from(row: model::Trunk) -> Self {
        Trunk {
            id: row.id,
            tenant_id: row.tenant_id,
            name: row.name,
            provider: row.provider,
            transport: row.transport,
            host: row.host,
            port: row.port,
            allowed_cidrs: row.allowed_cidrs.0,
            auth: row.auth,
            realm: row.realm,
            username: row.username,
            digest_algorithms: row.digest_algorithms.0,
            max_concurrent_calls: row.max_concurrent_calls,
            default_country_code: row.default_country_code,
            codecs: row.codecs.0,
            enabled: row.enabled,
            created_at: row.created_at,
            require_client_cert: row.require_client_cert,
        }
    }
}
