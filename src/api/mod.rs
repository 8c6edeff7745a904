//! The HTTP API (axum, JSON): tenants, phone numbers, AI profiles, API keys, health,
//! Prometheus metrics and the generated OpenAPI document.
//!
//! Every `/api` route needs `Authorization: Bearer <token>`. The platform admin's token
//! reaches everything; a tenant's API key reaches only that tenant's paths, and another
//! tenant's resources answer 404 exactly as if they did not exist.
//!
//! Handlers answer with the views of `views`, built from the store's rows; the rows
//! themselves carry no JSON or OpenAPI shape.

mod agents;
mod calls;
mod extract;
mod health;
mod keys;
mod numbers;
mod openapi;
mod problem;
mod profiles;
mod tenants;
mod trunks;
mod twilio;
mod views;
mod webrtc;

use std::sync::Arc;

use axum::Router;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{delete, get, patch};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

pub use problem::Problem;

use crate::store::{Page, Store};

/// The largest request body accepted, in bytes.
pub const BODY_LIMIT: usize = 64 * 1024;

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub store: Store,
    pub admin_token: Arc<str>,
    /// The in-memory DID table that routes calls; kept right as numbers change here.
    pub directory: crate::routing::directory::Directory,
    /// The in-memory trunk set that admits requests; reloaded as trunks change here.
    pub trunks: crate::routing::trunks::TrunkBook,
    pub metrics: metrics_exporter_prometheus::PrometheusHandle,
    /// Stamps what the handlers create and change.
    pub clock: Arc<dyn crate::clock::WallClock>,
    /// The calls an agent may end through the Twilio-shaped hang-up.
    pub live: crate::call::LiveCalls,
    /// What browsers' calls share with carriers' (routing, limits, media, the record writer).
    pub calls: Arc<crate::call::CallContext>,
    /// Where this node's call recordings are (`--recordings-dir`).
    pub recordings: std::path::PathBuf,
}

/// The OpenAPI document that `/api/openapi.json` serves: the API's JSON names are a
/// contract, and tests compare this document with a committed snapshot.
pub fn openapi_document() -> utoipa::openapi::OpenApi {
    <openapi::ApiDoc as utoipa::OpenApi>::openapi()
}

/// The whole HTTP surface.
pub fn router(state: AppState) -> Router {
    let api = Router::new()
        .route("/tenants", get(tenants::list).post(tenants::create))
        .route(
            "/tenants/{tenant_id}",
            get(tenants::get).patch(tenants::update),
        )
        .route(
            "/tenants/{tenant_id}/phone-numbers",
            get(numbers::list).post(numbers::create),
        )
        .route(
            "/tenants/{tenant_id}/phone-numbers/{phone_number_id}",
            patch(numbers::update)
                .delete(numbers::delete)
                .get(numbers::get),
        )
        .route(
            "/tenants/{tenant_id}/ai-profiles",
            get(profiles::list).post(profiles::create),
        )
        .route(
            "/tenants/{tenant_id}/ai-profiles/{ai_profile_id}",
            patch(profiles::update)
                .delete(profiles::delete)
                .get(profiles::get),
        )
        .route(
            "/tenants/{tenant_id}/agents",
            get(agents::list).post(agents::create),
        )
        .route(
            "/tenants/{tenant_id}/agents/{agent_id}",
            patch(agents::update)
                .delete(agents::delete)
                .get(agents::get),
        )
        .route(
            "/tenants/{tenant_id}/api-keys",
            axum::routing::post(keys::create),
        )
        .route(
            "/tenants/{tenant_id}/api-keys/{api_key_id}",
            delete(keys::revoke),
        )
        .route("/tenants/{tenant_id}/calls", get(calls::list))
        .route("/tenants/{tenant_id}/calls/{call_id}", get(calls::get))
        .route(
            "/tenants/{tenant_id}/webrtc/offer",
            axum::routing::post(webrtc::offer),
        )
        .route(
            "/tenants/{tenant_id}/webrtc/sessions/{session_id}",
            delete(webrtc::hang_up).patch(webrtc::trickle),
        )
        .route(
            "/tenants/{tenant_id}/webrtc/ice-candidate",
            axum::routing::post(webrtc::ice_candidate),
        )
        .route(
            "/tenants/{tenant_id}/webrtc/tokens",
            axum::routing::post(webrtc::create_token),
        )
        .route(
            "/tenants/{tenant_id}/calls/{call_id}/recording",
            get(calls::recording).delete(calls::delete_recording),
        )
        .route(
            "/trunks",
            get(trunks::platform_list).post(trunks::platform_create),
        )
        .route(
            "/trunks/{trunk_id}",
            get(trunks::platform_get)
                .patch(trunks::platform_update)
                .delete(trunks::platform_delete),
        )
        .route(
            "/tenants/{tenant_id}/trunks",
            get(trunks::tenant_list).post(trunks::tenant_create),
        )
        .route(
            "/tenants/{tenant_id}/trunks/{trunk_id}",
            get(trunks::tenant_get)
                .patch(trunks::tenant_update)
                .delete(trunks::tenant_delete),
        )
        .route("/openapi.json", get(openapi::document))
        .fallback(|| async { Problem::not_found() });
    let twilio = Router::new()
        .route(
            "/Accounts/{account_sid}/Calls/{call_file}",
            axum::routing::post(twilio::update_call),
        )
        .fallback(twilio::not_found);
    Router::new()
        .nest("/api", api)
        .nest("/2010-04-01", twilio)
        .route("/healthz", get(health::healthz))
        .route("/metrics", get(health::metrics))
        .fallback(|| async { Problem::not_found() })
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .layer(middleware::from_fn(count_requests))
        .with_state(state)
}

/// Counts requests by route and status for `/metrics`.
async fn count_requests(request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".to_owned());
    let method = request.method().to_string();
    let response = next.run(request).await;
    metrics::counter!(
        "vca_http_requests_total",
        "method" => method,
        "route" => route,
        "status" => response.status().as_u16().to_string()
    )
    .increment(1);
    response
}

impl AppState {
    /// Brings the routing table up to date after a change to one number.
    async fn refresh_number(&self, did: &str) {
        if let Err(e) = self.directory.refresh(&self.store, did).await {
            tracing::warn!(error = %e, "DID directory not refreshed; the periodic reload will");
        }
    }

    /// Reloads the trunk set after a change to a trunk.
    async fn reload_trunks(&self) {
        if let Err(e) = self.trunks.reload(&self.store).await {
            tracing::warn!(error = %e, "trunks not reloaded; the periodic reload will");
        }
    }

    /// Reloads the routing table after a change to a tenant or its default profile.
    async fn reload_directory(&self) {
        if let Err(e) = self.directory.reload(&self.store).await {
            tracing::warn!(error = %e, "DID directory not reloaded; the periodic reload will");
        }
    }
}

/// A page of a list: `{"items": [...], "next_cursor": ...}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct List<T> {
    pub items: Vec<T>,
    /// Pass as `?cursor=` for the next page; null on the last page.
    pub next_cursor: Option<String>,
}

/// A page of store rows becomes a page of their views.
impl<R, T: From<R>, C: std::fmt::Display> From<Page<R, C>> for List<T> {
    fn from(page: Page<R, C>) -> Self {
        List {
            items: page.items.into_iter().map(T::from).collect(),
            next_cursor: page.next_cursor.map(|c| c.to_string()),
        }
    }
}

/// `?cursor=&limit=` on every list.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery<C> {
    pub cursor: Option<C>,
    pub limit: Option<u32>,
}

impl<C> ListQuery<C> {
    const DEFAULT_LIMIT: u32 = 50;
    const MAX_LIMIT: u32 = 500;

    /// The page size asked for, between 1 and 500 (default 50).
    pub fn limit(&self) -> Result<u32, Problem> {
        match self.limit {
            None => Ok(Self::DEFAULT_LIMIT),
            Some(n) if (1..=Self::MAX_LIMIT).contains(&n) => Ok(n),
            Some(_) => Err(Problem::invalid("limit", "limit must be between 1 and 500")),
        }
    }
}

/// Reads a JSON `null` as `Some(None)` and an absent field as `None`, so that a PATCH can
/// clear a value.
fn double_option<'de, T, D>(de: D) -> Result<Option<Option<T>>, D::Error>
where
    T: Deserialize<'de>,
    D: serde::Deserializer<'de>,
{
    Option::<T>::deserialize(de).map(Some)
}

/// `/api/tenants/{tenant_id}/...`
#[derive(Debug, Deserialize)]
pub struct TenantPath {
    pub tenant_id: crate::ids::TenantId,
}
