//! Browsers' calls in: `POST /api/tenants/{tenant_id}/webrtc/offer` with a JSON SDP offer
//! and a number of the tenant answers with the SDP of a WebRTC leg (ICE-lite, DTLS-SRTP,
//! G.711), and `DELETE /api/tenants/{tenant_id}/webrtc/sessions/{session_id}` hangs up.
//!
//! Each call goes through the decisions a carrier's INVITE does (see `call::webrtc`) and
//! answers what fails with a problem: a number that is not the tenant's `404`, a tenant or
//! number not in service `403`, the tenant at its limit `429`, no media ports `503` with
//! `Retry-After`, a number whose agent cannot be reached `502`; an offer without audio, without a DTLS fingerprint, or that does not
//! parse `400` naming `sdp`, and one without G.711 `400` `/problems/no-common-codec`.

use std::net::SocketAddr;

use axum::Json;
use axum::extract::State;
use axum::extract::connect_info::ConnectInfo;
use axum::http::{Extensions, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::extract::{ApiJson, ApiPath, Principal};
use super::{AppState, Problem, TenantPath};
use crate::call::webrtc::{self as browser, Caller, Refusal};
use crate::ids::{CallId, TenantId};
use crate::media::webrtc::OfferError;

/// The largest SDP offer taken, in bytes (a browser's is 4-6 kB).
const MAX_SDP: usize = 32 * 1024;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Offer {
    /// The browser's SDP offer (non-trickle: its candidates included).
    pub sdp: String,
    /// The tenant's number to call, in any form the number routing accepts.
    pub to: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct OfferAnswer {
    pub session_id: uuid::Uuid,
    pub call_id: CallId,
    /// The SDP answer.
    pub sdp: String,
}

#[derive(Debug, Deserialize)]
pub struct SessionPath {
    pub tenant_id: TenantId,
    pub session_id: uuid::Uuid,
}

/// Answers a browser's offer and starts its call.
#[utoipa::path(post, path = "/api/tenants/{tenant_id}/webrtc/offer",
    params(("tenant_id" = TenantId, Path)),
    request_body = Offer,
    responses((status = 201, body = OfferAnswer, headers(("Location" = String))),
               (status = 400, body = Problem), (status = 401, body = Problem),
               (status = 403, body = Problem), (status = 404, body = Problem),
               (status = 429, body = Problem), (status = 502, body = Problem),
               (status = 503, body = Problem)))]
pub async fn offer(
    State(state): State<AppState>,
    principal: Principal,
    ApiPath(TenantPath { tenant_id }): ApiPath<TenantPath>,
    extensions: Extensions,
    ApiJson(offer): ApiJson<Offer>,
) -> Result<Response, Problem> {
    let tenant_id = principal.scope(tenant_id)?;
    if offer.sdp.len() > MAX_SDP {
        return Err(Problem::invalid("sdp", "the offer is larger than 32 kB"));
    }
    if offer.to.trim().is_empty() {
        return Err(Problem::invalid("to", "the number to call is required"));
    }
    let remote = extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map_or(SocketAddr::from(([0, 0, 0, 0], 0)), |c| c.0);
    let caller = Caller {
        remote,
        name: "anonymous".to_owned(),
    };
    let answered = browser::offer(&state.calls, tenant_id, &offer.to, &offer.sdp, caller)
        .await
        .map_err(refusal)?;
    let location = format!(
        "/api/tenants/{tenant_id}/webrtc/sessions/{}",
        answered.session_id
    );
    let mut response = (
        StatusCode::CREATED,
        Json(OfferAnswer {
            session_id: answered.session_id,
            call_id: answered.call_id,
            sdp: answered.sdp,
        }),
    )
        .into_response();
    if let Ok(value) = HeaderValue::from_str(&location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    Ok(response)
}

/// Hangs up a browser's call by its session.
#[utoipa::path(delete, path = "/api/tenants/{tenant_id}/webrtc/sessions/{session_id}",
    params(("tenant_id" = TenantId, Path), ("session_id" = uuid::Uuid, Path)),
    responses((status = 204), (status = 404, body = Problem)))]
pub async fn hang_up(
    State(state): State<AppState>,
    principal: Principal,
    ApiPath(SessionPath {
        tenant_id,
        session_id,
    }): ApiPath<SessionPath>,
) -> Result<StatusCode, Problem> {
    let tenant_id = principal.scope(tenant_id)?;
    state
        .live
        .hang_up_session(
            &tenant_id.to_string(),
            session_id,
            "hung up through the API",
        )
        .map_err(|_| Problem::not_found())?;
    Ok(StatusCode::NO_CONTENT)
}

fn refusal(refusal: Refusal) -> Problem {
    match refusal {
        Refusal::UnknownNumber(_) => Problem::not_found(),
        Refusal::NotInService(why) => Problem::forbidden(why),
        Refusal::AgentUnreachable(_) => Problem::agent_unreachable(refusal.to_string()),
        Refusal::TenantBusy => Problem::too_many(refusal.to_string()),
        Refusal::Overloaded(why) => Problem::overloaded(why),
        Refusal::Offer(OfferError::NoCommonCodec) => Problem::no_common_codec(),
        Refusal::Offer(e) => Problem::invalid("sdp", e.to_string()),
    }
}
