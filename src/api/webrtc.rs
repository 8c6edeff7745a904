//! Browsers' calls in, and how a public page may place them.
//!
//! - `POST /api/tenants/{tenant_id}/webrtc/offer`: a JSON `{"sdp","to"}` offer answers `201`
//!   `{"session_id","call_id","sdp"}`; the same path with an `application/sdp` body and the
//!   number in `?to=` is WHIP (RFC 9725) and answers `201` with the `application/sdp` answer.
//!   Both set `Location: /api/tenants/{tenant_id}/webrtc/sessions/{session_id}`.
//! - That location takes `PATCH` with `application/trickle-ice-sdpfrag` (the browser's
//!   later candidates, RFC 8840) and `DELETE` (hang up, `204`).
//! - `POST /api/tenants/{tenant_id}/webrtc/ice-candidate` `{"session_id","candidate",
//!   "sdp_mid","sdp_mline_index"}`: one trickled candidate; an empty one ends them (`204`).
//! - `POST /api/tenants/{tenant_id}/webrtc/tokens` `{"to","ttl_s"}`: a click-to-call token,
//!   good only for offers to that number of that tenant until it expires, so that a public
//!   page carries no API key.
//!
//! Each call goes through the decisions a carrier's INVITE does (see `call::webrtc`) and
//! answers what fails with a problem: a number that is not the tenant's `404`, a tenant or
//! number not in service `403`, the tenant at its limit `429`, no media ports `503` with
//! `Retry-After`, a number whose agent cannot be reached `502`; an offer without audio,
//! without a DTLS fingerprint, or that does not parse `400` naming `sdp`, and one without
//! G.711 `400` `/problems/no-common-codec`.

use std::net::SocketAddr;

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::connect_info::ConnectInfo;
use axum::http::{Extensions, HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use utoipa::ToSchema;

use super::extract::{ApiJson, ApiPath, ApiQuery, Principal, decode_json};
use super::{AppState, Problem, TenantPath};
use crate::call::webrtc::{self as browser, Caller, Refusal};
use crate::ids::{CallId, TenantId};
use crate::media::webrtc::OfferError;
use crate::routing::e164::Did;

/// The largest SDP offer taken, in bytes (a browser's is 4-6 kB).
const MAX_SDP: usize = 32 * 1024;

/// The longest a click-to-call token may live, in seconds.
const MAX_TOKEN_TTL_S: u32 = 3600;

/// How a click-to-call token starts.
const TOKEN_PREFIX: &str = "ctc_";

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Offer {
    /// The browser's SDP offer: with its candidates, or without them and trickled after.
    pub sdp: String,
    /// The tenant's number to call, in any form the number routing accepts.
    pub to: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OfferQuery {
    /// The number to call, for a WHIP (`application/sdp`) offer.
    pub to: Option<String>,
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

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct IceCandidate {
    pub session_id: uuid::Uuid,
    /// The candidate as the browser's `RTCIceCandidate.candidate` gives it; empty when the
    /// browser has no more.
    pub candidate: String,
    /// The section's mid (at most 32 characters); the session bundles its one audio
    /// section, so any mid of it is taken.
    pub sdp_mid: Option<String>,
    /// 0 (or left out): the session has one media section.
    pub sdp_mline_index: Option<u32>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewToken {
    /// The number the token may call.
    pub to: String,
    /// Seconds the token lives: 1 to 3600, 600 when left out.
    pub ttl_s: Option<u32>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Token {
    pub token: String,
    pub expires_at: DateTime<Utc>,
}

/// Answers a browser's offer and starts its call.
#[utoipa::path(post, path = "/api/tenants/{tenant_id}/webrtc/offer",
    params(("tenant_id" = TenantId, Path), ("to" = Option<String>, Query)),
    request_body(content = Offer, description = "JSON, or the SDP itself (`application/sdp`, WHIP) with the number in `?to=`"),
    responses((status = 201, body = OfferAnswer, headers(("Location" = String))),
               (status = 400, body = Problem), (status = 401, body = Problem),
               (status = 403, body = Problem), (status = 404, body = Problem),
               (status = 415, body = Problem), (status = 429, body = Problem),
               (status = 502, body = Problem), (status = 503, body = Problem)))]
pub async fn offer(
    State(state): State<AppState>,
    principal: Result<Principal, Problem>,
    ApiPath(TenantPath { tenant_id }): ApiPath<TenantPath>,
    ApiQuery(query): ApiQuery<OfferQuery>,
    extensions: Extensions,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, Problem> {
    // A click-to-call token, when the caller has no key: checked against the number below.
    let token = match principal {
        Ok(principal) => {
            principal.scope(tenant_id)?;
            None
        }
        Err(unauthorized) => Some(click_token(&state, &headers).ok_or(unauthorized)?),
    };
    let whip = content_type(&headers).is_some_and(|t| t == "application/sdp");
    let Offer { sdp, to } = if whip {
        let sdp = String::from_utf8(body.to_vec())
            .map_err(|_| Problem::invalid("sdp", "the offer is not UTF-8"))?;
        let to = query
            .to
            .ok_or_else(|| Problem::invalid("to", "a WHIP offer names its number in ?to="))?;
        Offer { sdp, to }
    } else if content_type(&headers).is_some_and(|t| t == "application/json") {
        decode_json(&body)?
    } else {
        return Err(Problem::unsupported_media_type());
    };
    if sdp.len() > MAX_SDP {
        return Err(Problem::invalid("sdp", "the offer is larger than 32 kB"));
    }
    if to.trim().is_empty() {
        return Err(Problem::invalid("to", "the number to call is required"));
    }
    if let Some((token_tenant, token_did)) = token {
        let did = Did::normalize(&to, &state.calls.settings.country).ok();
        if token_tenant != tenant_id {
            return Err(Problem::unauthorized());
        }
        if did.as_ref().map(Did::as_str) != Some(token_did.as_str()) {
            return Err(Problem::forbidden("the token is for another number"));
        }
    }
    let remote = extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map_or(SocketAddr::from(([0, 0, 0, 0], 0)), |c| c.0);
    let caller = Caller {
        remote,
        name: "anonymous".to_owned(),
    };
    let answered = browser::offer(&state.calls, tenant_id, &to, &sdp, caller)
        .await
        .map_err(refusal)?;
    let location = format!(
        "/api/tenants/{tenant_id}/webrtc/sessions/{}",
        answered.session_id
    );
    let mut response = if whip {
        (
            StatusCode::CREATED,
            [(header::CONTENT_TYPE, "application/sdp")],
            answered.sdp,
        )
            .into_response()
    } else {
        (
            StatusCode::CREATED,
            Json(OfferAnswer {
                session_id: answered.session_id,
                call_id: answered.call_id,
                sdp: answered.sdp,
            }),
        )
            .into_response()
    };
    if let Ok(value) = HeaderValue::from_str(&location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    Ok(response)
}

/// The browser's later candidates for a session, as an RFC 8840 SDP fragment (WHIP).
#[utoipa::path(patch, path = "/api/tenants/{tenant_id}/webrtc/sessions/{session_id}",
    params(("tenant_id" = TenantId, Path), ("session_id" = uuid::Uuid, Path)),
    request_body(content = String, content_type = "application/trickle-ice-sdpfrag"),
    responses((status = 204), (status = 400, body = Problem), (status = 404, body = Problem),
               (status = 415, body = Problem)))]
pub async fn trickle(
    State(state): State<AppState>,
    principal: Principal,
    ApiPath(SessionPath {
        tenant_id,
        session_id,
    }): ApiPath<SessionPath>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<StatusCode, Problem> {
    let tenant_id = principal.scope(tenant_id)?;
    if content_type(&headers) != Some("application/trickle-ice-sdpfrag") {
        return Err(Problem::unsupported_media_type());
    }
    let fragment =
        std::str::from_utf8(&body).map_err(|_| Problem::malformed("the fragment is not UTF-8"))?;
    let mut candidates = Vec::new();
    for line in fragment.lines().map(str::trim) {
        if let Some(value) = line.strip_prefix("a=")
            && value.starts_with("candidate:")
        {
            candidates.push(parse_candidate(value)?);
        }
    }
    add_candidates(&state, tenant_id, session_id, candidates)
}

/// One candidate the browser trickled.
#[utoipa::path(post, path = "/api/tenants/{tenant_id}/webrtc/ice-candidate",
    params(("tenant_id" = TenantId, Path)),
    request_body = IceCandidate,
    responses((status = 204), (status = 400, body = Problem), (status = 404, body = Problem)))]
pub async fn ice_candidate(
    State(state): State<AppState>,
    principal: Principal,
    ApiPath(TenantPath { tenant_id }): ApiPath<TenantPath>,
    ApiJson(candidate): ApiJson<IceCandidate>,
) -> Result<StatusCode, Problem> {
    let tenant_id = principal.scope(tenant_id)?;
    if candidate.sdp_mid.as_ref().is_some_and(|m| m.len() > 32) {
        return Err(Problem::invalid("sdp_mid", "at most 32 characters"));
    }
    if candidate.sdp_mline_index.is_some_and(|i| i != 0) {
        return Err(Problem::invalid(
            "sdp_mline_index",
            "the session has one media section, 0",
        ));
    }
    let text = candidate.candidate.trim();
    let candidates = if text.is_empty() {
        Vec::new()
    } else {
        vec![parse_candidate(text.strip_prefix("a=").unwrap_or(text))?]
    };
    add_candidates(&state, tenant_id, candidate.session_id, candidates)
}

/// A click-to-call token for one of the tenant's numbers.
#[utoipa::path(post, path = "/api/tenants/{tenant_id}/webrtc/tokens",
    params(("tenant_id" = TenantId, Path)),
    request_body = NewToken,
    responses((status = 201, body = Token), (status = 400, body = Problem),
               (status = 404, body = Problem)))]
pub async fn create_token(
    State(state): State<AppState>,
    principal: Principal,
    ApiPath(TenantPath { tenant_id }): ApiPath<TenantPath>,
    ApiJson(new): ApiJson<NewToken>,
) -> Result<(StatusCode, Json<Token>), Problem> {
    let tenant_id = principal.scope(tenant_id)?;
    let ttl = new.ttl_s.unwrap_or(600);
    if !(1..=MAX_TOKEN_TTL_S).contains(&ttl) {
        return Err(Problem::invalid("ttl_s", "between 1 and 3600 seconds"));
    }
    let did = Did::normalize(&new.to, &state.calls.settings.country)
        .map_err(|e| Problem::invalid("to", e.to_string()))?;
    let owned = state
        .directory
        .lookup(&did)
        .is_some_and(|route| route.tenant_id == tenant_id);
    if !owned {
        return Err(Problem::invalid("to", "not a number of this tenant"));
    }
    let expires_at = state.clock.now() + chrono::Duration::seconds(i64::from(ttl));
    let token = sign_token(
        &state.admin_token,
        tenant_id,
        did.as_str(),
        expires_at.timestamp(),
    );
    Ok((StatusCode::CREATED, Json(Token { token, expires_at })))
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

fn content_type(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::CONTENT_TYPE)?.to_str().ok()?;
    Some(value.split(';').next().unwrap_or("").trim())
}

fn parse_candidate(text: &str) -> Result<str0m::Candidate, Problem> {
    str0m::Candidate::from_sdp_string(text)
        .map_err(|e| Problem::invalid("candidate", format!("not an ICE candidate: {e}")))
}

fn add_candidates(
    state: &AppState,
    tenant_id: TenantId,
    session_id: uuid::Uuid,
    candidates: Vec<str0m::Candidate>,
) -> Result<StatusCode, Problem> {
    let tenant = tenant_id.to_string();
    // The session must exist even when nothing is added (an end of candidates).
    if candidates.is_empty() {
        state
            .live
            .has_session(&tenant, session_id)
            .then_some(())
            .ok_or_else(Problem::not_found)?;
    }
    for candidate in candidates {
        state
            .live
            .add_candidate(&tenant, session_id, candidate)
            .map_err(|_| Problem::not_found())?;
    }
    Ok(StatusCode::NO_CONTENT)
}

/// The key click-to-call tokens are signed with: derived from the admin token, so that every
/// node sharing it checks the others' tokens, and rotating it voids them all.
fn token_key(admin_token: &str) -> [u8; 32] {
    let mut hash = Sha256::new();
    hash.update(b"vca-sip click-to-call\0");
    hash.update(admin_token.as_bytes());
    hash.finalize().into()
}

fn token_mac(admin_token: &str, claims: &str) -> Hmac<Sha256> {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&token_key(admin_token))
        .unwrap_or_else(|_| unreachable!("HMAC takes a key of any length"));
    mac.update(claims.as_bytes());
    mac
}

/// `ctc_` + base64url(`tenant.did.expiry`) + `.` + base64url(HMAC-SHA256 of it).
fn sign_token(admin_token: &str, tenant: TenantId, did: &str, expires: i64) -> String {
    let claims = format!("{tenant}.{did}.{expires}");
    let tag = token_mac(admin_token, &claims).finalize().into_bytes();
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    format!("{TOKEN_PREFIX}{}.{}", b64.encode(&claims), b64.encode(tag))
}

/// The tenant and number of a valid, unexpired click-to-call token in the request's bearer.
fn click_token(state: &AppState, headers: &HeaderMap) -> Option<(TenantId, String)> {
    let bearer = headers
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")?
        .trim();
    let (claims, tag) = bearer.strip_prefix(TOKEN_PREFIX)?.split_once('.')?;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let claims = String::from_utf8(b64.decode(claims).ok()?).ok()?;
    let tag = b64.decode(tag).ok()?;
    token_mac(&state.admin_token, &claims)
        .verify_slice(&tag)
        .ok()?;
    let mut parts = claims.splitn(3, '.');
    let tenant: TenantId = parts.next()?.parse().ok()?;
    let did = parts.next()?.to_owned();
    let expires: i64 = parts.next()?.parse().ok()?;
    (state.clock.now().timestamp() < expires).then_some((tenant, did))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn click_to_call_tokens_sign_their_claims() {
        let tenant: TenantId = "01a23c80-a567-740c-86b6-a833c9e6ec36"
            .parse()
            .expect("an id");
        let token = sign_token("admin", tenant, "+919876543210", 2_000_000_000);
        let claims = token
            .strip_prefix(TOKEN_PREFIX)
            .and_then(|t| t.split_once('.'))
            .map(|(c, _)| c)
            .expect("claims");
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let decoded = String::from_utf8(b64.decode(claims).expect("base64")).expect("utf-8");
        assert_eq!(decoded, format!("{tenant}.+919876543210.2000000000"));
        // Another admin token, or changed claims, do not verify.
        let tag = b64
            .decode(token.rsplit('.').next().expect("tag"))
            .expect("base64");
        assert!(token_mac("admin", &decoded).verify_slice(&tag).is_ok());
        assert!(token_mac("other", &decoded).verify_slice(&tag).is_err());
        let forged = format!("{tenant}.+919800000000.2000000000");
        assert!(token_mac("admin", &forged).verify_slice(&tag).is_err());
    }
}
