//! Routes: for each phone number, its tenant, the AI profile that answers it, and where
//! that profile sends the call's audio, as the DID directory (`routing::directory`) holds
//! them in memory.
//!
//! The profile that answers a number is the number's own `ai_profile_id`, else the
//! tenant's default profile; with neither, the call is echoed. Its media settings come
//! with the route, read in the same query, so that a call knows where its audio goes
//! without a database round trip of its own.
//!
//! Routing is the one reader of every tenant's numbers, not filtered by tenant: it is what
//! finds the tenant. It is also the one reader of the profiles' stream auth tokens, which
//! the call path presents to the agent.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use sqlx::FromRow;
use sqlx::types::Json;

use super::model::{MediaTarget, StreamProtocol, TenantStatus};
use super::profiles::{ProfileStream, StreamToken};
use super::{Result, Store, StoreError, on_pool};
use crate::ids::{AiProfileId, PhoneNumberId, TenantId, TrunkId};

/// The query behind every route: a number, its tenant, the profile that answers it (the
/// number's, or else the tenant's default), and that profile's media settings.
macro_rules! route_query {
    () => {
        "SELECT n.id AS phone_number_id, n.tenant_id, n.did_number, n.is_active, n.trunk_id, \
           COALESCE(n.ai_profile_id, d.id) AS ai_profile_id, t.status AS tenant_status, \
           t.max_concurrent_calls, \
           p.media_target, p.stream_url, p.stream_protocol, p.stream_auth_token, \
           p.stream_parameters, p.stream_ca_pem, p.stream_connect_timeout_ms, \
           p.max_queued_audio_ms, p.record \
         FROM phone_numbers n \
         JOIN tenants t ON t.id = n.tenant_id \
         LEFT JOIN ai_profiles d ON d.tenant_id = n.tenant_id AND d.is_default \
         LEFT JOIN ai_profiles p ON p.tenant_id = n.tenant_id \
           AND p.id = COALESCE(n.ai_profile_id, d.id)"
    };
}

/// Everything routing needs to know about one DID.
#[derive(Debug, Clone, PartialEq, FromRow)]
pub struct Route {
    pub phone_number_id: PhoneNumberId,
    pub tenant_id: TenantId,
    pub did_number: String,
    pub is_active: bool,
    pub trunk_id: Option<TrunkId>,
    /// The number's profile, or else the tenant's default.
    pub ai_profile_id: Option<AiProfileId>,
    pub tenant_status: TenantStatus,
    pub max_concurrent_calls: i64,
}

/// Where an answered call's audio goes.
#[derive(Debug, Clone, PartialEq)]
pub enum CallMedia {
    /// Back to the caller: the number has no profile, or its profile's target is `echo`.
    Echo,
    /// To the tenant's agent over a WebSocket stream. Shared by every route of the profile.
    Stream(Arc<StreamTarget>),
}

/// A profile's agent stream, as the call path uses it.
#[derive(Debug, Clone, PartialEq)]
pub struct StreamTarget {
    /// The profile the settings are from.
    pub ai_profile_id: AiProfileId,
    /// `ws://` or `wss://`; a tenant-configured target, checked when it is connected to
    /// ([`crate::targets`]).
    pub url: String,
    pub protocol: StreamProtocol,
    pub auth_token: Option<StreamToken>,
    /// Passed to the agent with the stream's start.
    pub parameters: BTreeMap<String, String>,
    /// PEM certificates trusted for `wss://` besides the public roots.
    pub ca_pem: Option<String>,
    pub connect_timeout: Duration,
    /// The most agent audio queued for playout to the caller.
    pub max_queued_audio: Duration,
    /// The call's audio is recorded.
    pub record: bool,
}

/// A route and where its calls' audio goes.
#[derive(Debug, Clone, PartialEq)]
pub struct ResolvedRoute {
    pub route: Route,
    pub media: CallMedia,
}

/// One row of [`route_query!`]: the route, and the answering profile's media columns (all
/// null when no profile answers the number).
#[derive(FromRow)]
struct RouteRow {
    #[sqlx(flatten)]
    route: Route,
    media_target: Option<MediaTarget>,
    stream_url: Option<String>,
    stream_protocol: Option<StreamProtocol>,
    stream_auth_token: Option<String>,
    stream_parameters: Option<Json<BTreeMap<String, String>>>,
    stream_ca_pem: Option<String>,
    stream_connect_timeout_ms: Option<i64>,
    max_queued_audio_ms: Option<i64>,
    record: Option<bool>,
}

/// Milliseconds as stored (the database keeps them within their bounds), or `default`.
fn millis(ms: Option<i64>, default: i64) -> Duration {
    let ms = ms.filter(|ms| *ms > 0).unwrap_or(default);
    Duration::from_millis(ms.unsigned_abs())
}

impl RouteRow {
    /// The route with its media. Rows of one profile share one [`StreamTarget`] through
    /// `seen`, so that a tenant's thousand numbers hold its settings once.
    fn resolve(self, seen: &mut HashMap<AiProfileId, Arc<StreamTarget>>) -> ResolvedRoute {
        let media = match (self.route.ai_profile_id, self.media_target, self.stream_url) {
            // The database keeps a URL on every stream profile (`stream_url`'s CHECK).
            (Some(profile), Some(MediaTarget::Stream), Some(url)) => {
                let target = seen.entry(profile).or_insert_with(|| {
                    Arc::new(StreamTarget {
                        ai_profile_id: profile,
                        url,
                        protocol: self.stream_protocol.unwrap_or(StreamProtocol::Twilio),
                        auth_token: self.stream_auth_token.map(StreamToken),
                        parameters: self.stream_parameters.map(|p| p.0).unwrap_or_default(),
                        ca_pem: self.stream_ca_pem,
                        connect_timeout: millis(
                            self.stream_connect_timeout_ms,
                            ProfileStream::DEFAULT_CONNECT_TIMEOUT_MS,
                        ),
                        max_queued_audio: millis(
                            self.max_queued_audio_ms,
                            ProfileStream::DEFAULT_MAX_QUEUED_AUDIO_MS,
                        ),
                        record: self.record.unwrap_or(false),
                    })
                });
                CallMedia::Stream(Arc::clone(target))
            }
            _ => CallMedia::Echo,
        };
        ResolvedRoute {
            route: self.route,
            media,
        }
    }
}

impl Store {
    /// The route of every number of every tenant, with its media.
    pub async fn routes(&self) -> Result<Vec<ResolvedRoute>> {
        const SQL: &str = concat!(route_query!(), "");
        let rows: Vec<RouteRow> = on_pool!(self, |pool| sqlx::query_as(SQL).fetch_all(pool).await)?;
        let mut seen = HashMap::new();
        Ok(rows.into_iter().map(|r| r.resolve(&mut seen)).collect())
    }

    /// The route of one number (in canonical E.164 form) with its media, if the number
    /// exists.
    pub async fn route(&self, did: &str) -> Result<Option<ResolvedRoute>> {
        const SQL: &str = concat!(route_query!(), " WHERE n.did_number = $1");
        let row: Option<RouteRow> = on_pool!(self, |pool| sqlx::query_as(SQL)
            .bind(did)
            .fetch_optional(pool)
            .await)
        .map_err(StoreError::from)?;
        Ok(row.map(|r| r.resolve(&mut HashMap::new())))
    }
}
