//! Request extractors whose every rejection is a [`Problem`]: JSON bodies, path and query
//! parameters, and the caller's identity.

use axum::extract::rejection::BytesRejection;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::header;
use axum::http::request::Parts;
use bytes::Bytes;
use serde::de::DeserializeOwned;
use subtle::ConstantTimeEq;

use super::AppState;
use super::problem::Problem;
use crate::ids::TenantId;
use crate::store::hash_api_key;

/// A JSON body: must be `application/json`, within the body limit, and match the target
/// type exactly (unknown fields are refused, and a bad field is named).
pub struct ApiJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = Problem;

    async fn from_request(req: Request, state: &S) -> Result<Self, Problem> {
        let is_json = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/json"));
        if !is_json {
            return Err(Problem::unsupported_media_type());
        }
        let body = Bytes::from_request(req, state).await.map_err(|e| match e {
            BytesRejection::FailedToBufferBody(_) => {
                Problem::too_large(format!("the body exceeds {} bytes", super::BODY_LIMIT))
            }
            other => Problem::malformed(other.body_text()),
        })?;
        decode_json(&body).map(ApiJson)
    }
}

/// Deserialises `body`, naming the field at fault on failure.
pub(super) fn decode_json<T: DeserializeOwned>(body: &[u8]) -> Result<T, Problem> {
    if body.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(Problem::malformed("the body must be a JSON object"));
    }
    let de = &mut serde_json::Deserializer::from_slice(body);
    serde_path_to_error::deserialize(de).map_err(|err| {
        let path = err.path().to_string();
        let inner = err.into_inner();
        match inner.classify() {
            serde_json::error::Category::Data => {
                let message = inner.to_string();
                // A missing field's path is its parent; any other error's path ends with
                // the field at fault.
                let field = match quoted_field(&message, "missing field `") {
                    Some(name) if path == "." => name,
                    Some(name) => format!("{path}.{name}"),
                    None => path,
                };
                Problem::invalid(field, strip_position(&message))
            }
            // serde_json reports some wrong types as syntax (an enum given a number is
            // "expected value"): when the body itself is well-formed JSON, the value at
            // `path` is what is wrong.
            _ if path != "." && serde_json::from_slice::<serde::de::IgnoredAny>(body).is_ok() => {
                Problem::invalid(
                    path.clone(),
                    format!("{path} has a value of the wrong type"),
                )
            }
            _ => Problem::malformed(format!(
                "malformed JSON: {}",
                strip_position(&inner.to_string())
            )),
        }
    })
}

fn quoted_field(message: &str, prefix: &str) -> Option<String> {
    let rest = message.split_once(prefix)?.1;
    Some(rest.split('`').next()?.to_owned())
}

/// serde_json appends " at line L column C", which means nothing to an API client.
fn strip_position(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(i) => message[..i].to_owned(),
        None => message.to_owned(),
    }
}

/// Path parameters; a malformed id is a 400 naming the parameter.
pub struct ApiPath<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for ApiPath<T> {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Problem> {
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(value)) => Ok(ApiPath(value)),
            Err(rejection) => {
                // Every path parameter of the API is an id: name the first that is not one.
                let raw = axum::extract::RawPathParams::from_request_parts(parts, state).await;
                let bad = raw.ok().and_then(|params| {
                    params
                        .iter()
                        .find(|(_, value)| uuid::Uuid::parse_str(value).is_err())
                        .map(|(key, _)| key.to_owned())
                });
                Err(match bad {
                    Some(key) => Problem::invalid(key.clone(), format!("{key} is not a valid id")),
                    None => Problem::malformed(rejection.body_text()),
                })
            }
        }
    }
}

/// Query parameters; a bad one is a 400.
pub struct ApiQuery<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Problem> {
        let query = parts.uri.query().unwrap_or_default();
        let de = serde_urlencoded::Deserializer::new(form_urlencoded::parse(query.as_bytes()));
        serde_path_to_error::deserialize(de)
            .map(ApiQuery)
            .map_err(|err| {
                let path = err.path().to_string();
                let message = err.into_inner().to_string();
                let field = match quoted_field(&message, "unknown field `") {
                    Some(name) => name,
                    None => path,
                };
                Problem::invalid(field, message)
            })
    }
}

/// Who is calling: the platform admin, or one tenant through its API key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Principal {
    Admin,
    Tenant(TenantId),
}

impl Principal {
    /// Admits a caller to `tenant`'s paths. Another tenant's paths answer 404, exactly as
    /// if they did not exist.
    pub fn scope(self, tenant: TenantId) -> Result<TenantId, Problem> {
        match self {
            Principal::Admin => Ok(tenant),
            Principal::Tenant(own) if own == tenant => Ok(tenant),
            Principal::Tenant(_) => Err(Problem::not_found()),
        }
    }

    /// Only the platform admin may go on.
    pub fn require_admin(self, what: &str) -> Result<(), Problem> {
        match self {
            Principal::Admin => Ok(()),
            Principal::Tenant(_) => Err(Problem::forbidden(format!(
                "only the platform admin may {what}"
            ))),
        }
    }
}

impl FromRequestParts<AppState> for Principal {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Problem> {
        let token = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or_else(Problem::unauthorized)?;
        if bool::from(token.as_bytes().ct_eq(state.admin_token.as_bytes())) {
            return Ok(Principal::Admin);
        }
        match state.store.api_key_by_hash(&hash_api_key(token)).await? {
            Some(key) => Ok(Principal::Tenant(key.tenant_id)),
            None => Err(Problem::unauthorized()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Sample {
        name: String,
        limit: u32,
        kind: Option<Kind>,
    }

    #[derive(Debug, PartialEq, serde::Deserialize)]
    enum Kind {
        A,
    }

    #[test]
    fn json_errors_name_the_field() {
        let p = decode_json::<Sample>(br#"{"name":"a","limit":"x"}"#).unwrap_err();
        assert_eq!(p.field.as_deref(), Some("limit"));
        let p = decode_json::<Sample>(br#"{"name":"a","limit":1,"extra":2}"#).unwrap_err();
        assert_eq!(p.field.as_deref(), Some("extra"));
        let p = decode_json::<Sample>(br#"{"limit":1}"#).unwrap_err();
        assert_eq!(p.field.as_deref(), Some("name"));
        let p = decode_json::<Sample>(br#"{"name":"#).unwrap_err();
        assert_eq!((p.status, p.field), (400, None));
        // An enum given a number is a syntax error to serde_json, yet names its field.
        let p = decode_json::<Sample>(br#"{"name":"a","limit":1,"kind":7}"#).unwrap_err();
        assert_eq!(p.field.as_deref(), Some("kind"));
        let p = decode_json::<Sample>(br#"{"name":"a","limit":1,"kind":[}"#).unwrap_err();
        assert_eq!((p.status, p.field), (400, None));
        let ok = decode_json::<Sample>(br#" {"name":"a","limit":3}"#).unwrap();
        assert_eq!(
            ok,
            Sample {
                name: "a".to_owned(),
                limit: 3,
                kind: None
            }
        );
    }
}
