//! The one call of Twilio's REST API that agents written for Twilio Media Streams make:
//! ending their call (`POST /2010-04-01/Accounts/{accountSid}/Calls/{callSid}.json` with
//! `Status=completed`), served so that such agents hang up through vca-sip unchanged.
//!
//! `accountSid` is the tenant id and `callSid` the call id, as the stream's `start` said.
//! HTTP Basic authentication: the user is the tenant id, the password the call's profile
//! `stream_auth_token` or one of the tenant's API keys. A call that is not live, or not
//! the tenant's, and any other path under the prefix answer `404`.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use serde_json::json;

use super::AppState;
use crate::ids::CallId;
use crate::store::hash_api_key;

/// Ends the call `call_sid` of tenant `account_sid`.
pub async fn update_call(
    State(state): State<AppState>,
    Path((account_sid, call_file)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some(call) = call_file
        .strip_suffix(".json")
        .and_then(|sid| sid.parse::<uuid::Uuid>().ok())
        .map(CallId)
    else {
        return twilio_error(
            StatusCode::NOT_FOUND,
            20404,
            "The requested resource was not found",
        );
    };
    let Some((user, password)) = basic_credentials(&headers) else {
        return unauthorized();
    };
    if user != account_sid {
        return unauthorized();
    }
    let by_token = state.live.token_matches(&account_sid, call, &password);
    let by_key = !by_token
        && match state.store.api_key_by_hash(&hash_api_key(&password)).await {
            Ok(Some(key)) => key.tenant_id.to_string() == account_sid,
            Ok(None) => false,
            Err(e) => {
                tracing::warn!(error = %e, "API key lookup failed");
                return twilio_error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    20503,
                    "Service unavailable",
                );
            }
        };
    if !by_token && !by_key {
        return unauthorized();
    }
    let status = form_value(&body, "Status");
    match status.as_deref() {
        Some("completed" | "canceled") => {}
        _ => {
            return twilio_error(
                StatusCode::BAD_REQUEST,
                21218,
                "Status must be completed or canceled",
            );
        }
    }
    match state.live.hang_up(
        &account_sid,
        call,
        "the agent ended the call through the REST API",
    ) {
        Ok(()) => (
            StatusCode::OK,
            axum::Json(json!({
                "sid": call_file.trim_end_matches(".json"),
                "account_sid": account_sid,
                "status": "completed",
            })),
        )
            .into_response(),
        Err(_) => twilio_error(
            StatusCode::NOT_FOUND,
            20404,
            "The requested resource was not found",
        ),
    }
}

/// Anything else under the prefix.
pub async fn not_found() -> Response {
    twilio_error(
        StatusCode::NOT_FOUND,
        20404,
        "The requested resource was not found",
    )
}

fn unauthorized() -> Response {
    let mut response = twilio_error(StatusCode::UNAUTHORIZED, 20003, "Authenticate");
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        header::HeaderValue::from_static("Basic realm=\"vca-sip\""),
    );
    response
}

/// An error in the shape Twilio's REST API answers with.
fn twilio_error(status: StatusCode, code: u32, message: &str) -> Response {
    let body = json!({"code": code, "message": message, "status": status.as_u16()});
    (status, axum::Json(body)).into_response()
}

/// The user and password of an `Authorization: Basic` header (RFC 7617).
fn basic_credentials(headers: &HeaderMap) -> Option<(String, String)> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, encoded) = value.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (user, password) = text.split_once(':')?;
    Some((user.to_owned(), password.to_owned()))
}

/// The first value of `name` in an `application/x-www-form-urlencoded` body.
fn form_value(body: &[u8], name: &str) -> Option<String> {
    let text = std::str::from_utf8(body).ok()?;
    text.split('&').find_map(|pair| {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        (percent_decode(key)? == name)
            .then(|| percent_decode(value))
            .flatten()
    })
}

/// Decodes `+` and `%XX` escapes; `None` for a broken escape or text that is not UTF-8.
fn percent_decode(text: &str) -> Option<String> {
    let mut bytes = Vec::with_capacity(text.len());
    let mut input = text.bytes();
    while let Some(b) = input.next() {
        match b {
            b'+' => bytes.push(b' '),
            b'%' => {
                let hi = char::from(input.next()?).to_digit(16)?;
                let lo = char::from(input.next()?).to_digit(16)?;
                bytes.push(u8::try_from(hi * 16 + lo).ok()?);
            }
            _ => bytes.push(b),
        }
    }
    String::from_utf8(bytes).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_values_are_decoded_and_broken_escapes_refused() {
        assert_eq!(
            form_value(b"Status=completed", "Status").as_deref(),
            Some("completed")
        );
        assert_eq!(
            form_value(b"A=1&Status=in%2Dprogress&Status=x", "Status").as_deref(),
            Some("in-progress")
        );
        assert_eq!(
            form_value(b"Twiml=%3CResponse%3E+x", "Twiml").as_deref(),
            Some("<Response> x")
        );
        assert_eq!(form_value(b"Status=%G0", "Status"), None);
        assert_eq!(form_value(b"Status=%4", "Status"), None);
        assert_eq!(form_value(b"Other=1", "Status"), None);
        assert_eq!(form_value(&[0xff, b'='], "Status"), None);
    }

    #[test]
    fn basic_credentials_need_the_basic_scheme_and_a_colon() {
        let mut headers = HeaderMap::new();
        let encoded = base64::engine::general_purpose::STANDARD.encode("tenant:se:cret");
        headers.insert(
            header::AUTHORIZATION,
            format!("Basic {encoded}").parse().unwrap(),
        );
        assert_eq!(
            basic_credentials(&headers),
            Some(("tenant".to_owned(), "se:cret".to_owned()))
        );
        headers.insert(
            header::AUTHORIZATION,
            format!("Bearer {encoded}").parse().unwrap(),
        );
        assert_eq!(basic_credentials(&headers), None);
        let no_colon = base64::engine::general_purpose::STANDARD.encode("tenant");
        headers.insert(
            header::AUTHORIZATION,
            format!("Basic {no_colon}").parse().unwrap(),
        );
        assert_eq!(basic_credentials(&headers), None);
        headers.insert(header::AUTHORIZATION, "Basic !!!".parse().unwrap());
        assert_eq!(basic_credentials(&headers), None);
    }
}
