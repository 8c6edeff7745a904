//! The rows the store reads and writes (tenants, phone numbers, AI profiles, API keys, calls
//! and their events, trunks): what the database holds, one struct per table, read with
//! `sqlx::FromRow`. They know nothing of HTTP; the API shows them through its own views
//! (`api::views`). The enums' texts are the same in the database, in JSON and in the
//! OpenAPI document, since they are vocabulary shared by every layer.
//!
//! The vocabularies shared with the SIP side (transports, codecs, digest algorithms) live in
//! [`crate::kinds`] and are re-exported here.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use sqlx::FromRow;

use crate::ids::{
    AgentId, AiProfileId, ApiKeyId, CallEventId, CallId, PhoneNumberId, TenantId, TrunkId,
};
use crate::kinds::text_enum;
pub use crate::kinds::{CallTransport, Codec, DigestAlgorithm, TrunkTransport};

text_enum!(
    /// Whether a tenant's calls are admitted.
    TenantStatus { Active => "active", Suspended => "suspended", Deleted => "deleted" }
);
text_enum!(
    /// The tenant's commercial plan.
    Plan { Starter => "starter", Growth => "growth", Custom => "custom" }
);
text_enum!(
    /// What an AI profile's agent does on a call.
    Role {
        Receptionist => "receptionist",
        Sales => "sales",
        Support => "support",
        Dispatcher => "dispatcher",
        Custom => "custom",
    }
);
text_enum!(
    /// Where an answered call's audio goes: `echo` (back to the caller) or `stream` (a
    /// WebSocket stream to the tenant's agent, at the profile's `stream_url`).
    MediaTarget { Echo => "echo", Stream => "stream" }
);
text_enum!(
    /// The message shapes of an agent stream: Twilio Media Streams (`twilio`: JSON events,
    /// 8 kHz mu-law) or Exotel's (`exotel`: snake_case events, 8 kHz 16-bit PCM).
    StreamProtocol { Twilio => "twilio", Exotel => "exotel" }
);
text_enum!(
    /// Which kind of carrier delivers a number.
    ProviderType { Generic => "generic", Tata => "tata" }
);

/// A customer of the platform.
#[derive(Debug, Clone, PartialEq, FromRow)]
pub struct Tenant {
    pub id: TenantId,
    pub name: String,
    pub status: TenantStatus,
    pub plan: Plan,
    /// Country calling code applied to national number forms: digits, no plus.
    pub default_country_code: String,
    pub max_concurrent_calls: i64,
    /// The host of its agents' SIP addresses and their digest realm; unique across tenants.
    pub sip_domain: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A person who answers a tenant's calls in a browser, registering over SIP WebSocket as
/// `sip:USERNAME@<sip_domain>`. Its password hashes are never part of it.
#[derive(Debug, Clone, PartialEq, FromRow)]
pub struct Agent {
    pub id: AgentId,
    pub tenant_id: TenantId,
    pub username: String,
    pub display_name: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A dialed number (DID) owned by one tenant.
#[derive(Debug, Clone, PartialEq, FromRow)]
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

/// How the AI agent answering a tenant's calls behaves, and how a call reaches it. The
/// stream's auth token is never part of it, only whether one is set; the token is read
/// only with the routes ([`Store::routes`](crate::store::Store::routes)), for the call path.
#[derive(Debug, Clone, PartialEq, FromRow)]
pub struct AiProfile {
    pub id: AiProfileId,
    pub tenant_id: TenantId,
    pub name: String,
    pub role: Role,
    pub system_prompt: String,
    pub is_default: bool,
    pub created_at: DateTime<Utc>,
    pub media_target: MediaTarget,
    /// `ws://` or `wss://`; set whenever `media_target` is `stream`.
    pub stream_url: Option<String>,
    pub stream_protocol: StreamProtocol,
    pub stream_auth_token_set: bool,
    /// Passed to the agent with the stream's start.
    pub stream_parameters: sqlx::types::Json<BTreeMap<String, String>>,
    /// PEM certificates trusted for a `wss://` stream besides the public roots.
    pub stream_ca_pem: Option<String>,
    /// How long connecting to the agent may take, in milliseconds.
    pub stream_connect_timeout_ms: i64,
    /// The most agent audio queued for playout to the caller, in milliseconds.
    pub max_queued_audio_ms: i64,
    /// A streamed call's audio is recorded.
    pub record: bool,
}

/// An API key as stored: only its hash.
#[derive(Debug, Clone, PartialEq, FromRow)]
pub struct ApiKey {
    pub id: ApiKeyId,
    pub tenant_id: TenantId,
    pub created_at: DateTime<Utc>,
    pub revoked_at: Option<DateTime<Utc>>,
}

text_enum!(
    /// Which way a call goes.
    Direction { Inbound => "inbound", Outbound => "outbound" }
);
text_enum!(
    /// Where a call is in its life: `queued` (outbound, not yet sent) -> `initiated` ->
    /// `ringing` -> `answered` -> `ended`, or `failed` when it was never answered.
    CallStatus {
        Queued => "queued",
        Initiated => "initiated",
        Ringing => "ringing",
        Answered => "answered",
        Ended => "ended",
        Failed => "failed",
    }
);
text_enum!(
    /// Why a call ended or failed, whichever its direction and legs. `node_restart`: the
    /// node handling the call stopped without ending it (a crash) and closed it when it
    /// started again.
    HangupCause {
        CallerBye => "caller_bye",
        ServerBye => "server_bye",
        Cancel => "cancel",
        Timeout => "timeout",
        Error => "error",
        Rejected => "rejected",
        Busy => "busy",
        NoAnswer => "no_answer",
        AgentUnreachable => "agent_unreachable",
        AgentHangup => "agent_hangup",
        AgentDisconnected => "agent_disconnected",
        BrowserHangup => "browser_hangup",
        NodeRestart => "node_restart",
    }
);
/// A call record (CDR).
#[derive(Debug, Clone, PartialEq, FromRow)]
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
    /// Null when the call is not recorded.
    pub recording_status: Option<RecordingStatus>,
    /// The recording's length in milliseconds, once it is complete.
    pub recording_duration_ms: Option<i64>,
    /// The WAV file's size, header included, once it is complete.
    pub recording_bytes: Option<i64>,
    /// Why the recording failed.
    pub recording_error: Option<String>,
}

text_enum!(
    /// Where a call's recording stands: `recording` (the call runs), `ready` (the WAV can
    /// be fetched), `failed` (nothing was kept; the record says why) or `deleted`.
    RecordingStatus {
        Recording => "recording",
        Ready => "ready",
        Failed => "failed",
        Deleted => "deleted",
    }
);

/// One step on a call's timeline.
#[derive(Debug, Clone, PartialEq, FromRow)]
pub struct CallEvent {
    pub id: CallEventId,
    pub call_id: CallId,
    pub tenant_id: TenantId,
    pub kind: String,
    pub at: DateTime<Utc>,
    pub detail: sqlx::types::Json<serde_json::Value>,
}

text_enum!(
    /// How a trunk's requests are admitted: by source address, by digest credentials, or
    /// by both at once.
    TrunkAuth { Ip => "ip", Digest => "digest", IpDigest => "ip+digest" }
);
/// A SIP trunk: a carrier connection owned by the platform (`tenant_id` null) or by one
/// tenant. Its password is never part of it; only HA1 hashes are stored, and they are read
/// only through [`Store::all_enabled_trunks`](crate::store::Store::all_enabled_trunks).
#[derive(Debug, Clone, PartialEq, FromRow)]
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
    pub allowed_cidrs: sqlx::types::Json<Vec<String>>,
    pub auth: TrunkAuth,
    pub realm: Option<String>,
    pub username: Option<String>,
    /// Challenge order: one challenge per algorithm, in this order.
    pub digest_algorithms: sqlx::types::Json<Vec<DigestAlgorithm>>,
    /// Null: no limit of the trunk's own.
    pub max_concurrent_calls: Option<i64>,
    pub default_country_code: String,
    pub codecs: sqlx::types::Json<Vec<Codec>>,
    pub enabled: bool,
    pub created_at: DateTime<Utc>,
    /// Over TLS, the carrier must present a verified certificate (valid for `host` when set).
    pub require_client_cert: bool,
}
