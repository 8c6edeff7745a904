//! `/api/tenants/{tenant_id}/ai-profiles`: how a tenant's AI agent behaves on its calls,
//! and how a call reaches it. Setting `is_default` moves the tenant's default to this
//! profile in one transaction.
//!
//! `media_target` says where an answered call's audio goes: `echo` (the default) or
//! `stream`, a WebSocket stream to the agent at `stream_url` (`ws://` or `wss://`, required
//! for a stream) in the `stream_protocol`'s message shapes. `stream_auth_token` is
//! write-only: a profile answers with `stream_auth_token_set` instead. At write time only
//! the URL's scheme and syntax are checked; the addresses its host resolves to are checked
//! when the call connects ([`crate::targets`]).

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, Uri};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::{PemObject, SectionKind};
use serde::Deserialize;
use utoipa::ToSchema;

use super::extract::{ApiJson, ApiPath, ApiQuery, Principal};
use super::views::AiProfile;
use super::{AppState, List, ListQuery, Problem, TenantPath, double_option};
use crate::ids::{AiProfileId, TenantId};
use crate::store::model::{MediaTarget, Role, StreamProtocol};
use crate::store::{AiProfilePatch, NewAiProfile, ProfileStream, StreamToken};

/// The longest system prompt accepted, in bytes.
const MAX_PROMPT: usize = 32 * 1024;
/// The longest stream URL accepted, in bytes.
const MAX_URL: usize = 2048;
/// Stream auth token length bounds, in bytes.
const TOKEN_LEN: std::ops::RangeInclusive<usize> = 1..=4096;
/// The most stream parameters, and the longest name and value of one, in bytes.
const MAX_PARAMETERS: usize = 64;
const MAX_PARAMETER_NAME: usize = 128;
const MAX_PARAMETER_VALUE: usize = 1024;
/// The longest CA bundle accepted, in bytes, and the most certificates in it.
const MAX_CA_PEM: usize = 32 * 1024;
const MAX_CA_CERTS: usize = 16;
/// Bounds of the stream's connect timeout and of the agent audio queued for playout.
const CONNECT_TIMEOUT_MS: std::ops::RangeInclusive<i64> = 100..=30_000;
const MAX_QUEUED_AUDIO_MS: std::ops::RangeInclusive<i64> = 1_000..=600_000;

/// A stream auth token as received: it never appears in a log or a debug print.
#[derive(Deserialize)]
#[serde(transparent)]
pub struct Token(String);

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(..)")
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateAiProfile {
    pub name: String,
    pub role: Role,
    /// Required and non-empty.
    pub system_prompt: String,
    /// Default false.
    pub is_default: Option<bool>,
    /// "echo" or "stream"; default "echo".
    pub media_target: Option<MediaTarget>,
    /// `ws://` or `wss://`, at most 2048 bytes, no user name or password; required when
    /// `media_target` is "stream".
    pub stream_url: Option<String>,
    /// "twilio" or "exotel"; default "twilio".
    pub stream_protocol: Option<StreamProtocol>,
    /// Write-only; 1 to 4096 visible ASCII characters, presented to the agent.
    #[schema(value_type = Option<String>, write_only)]
    pub stream_auth_token: Option<Token>,
    /// Up to 64 string values passed to the agent; default {}.
    #[schema(value_type = Option<BTreeMap<String, String>>)]
    pub stream_parameters: Option<serde_json::Map<String, serde_json::Value>>,
    /// PEM certificates (at most 32 KiB) trusted for a `wss://` stream besides the public
    /// roots.
    pub stream_ca_pem: Option<String>,
    /// 100 to 30000; default 3000.
    pub stream_connect_timeout_ms: Option<i64>,
    /// 1000 to 600000; default 30000.
    pub max_queued_audio_ms: Option<i64>,
    /// Default false.
    pub record: Option<bool>,
}

/// Absent fields stay as they are; `stream_url`, `stream_auth_token` and `stream_ca_pem`
/// are cleared by null.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateAiProfile {
    pub name: Option<String>,
    pub role: Option<Role>,
    pub system_prompt: Option<String>,
    pub is_default: Option<bool>,
    pub media_target: Option<MediaTarget>,
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<String>)]
    pub stream_url: Option<Option<String>>,
    pub stream_protocol: Option<StreamProtocol>,
    /// Write-only.
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<String>, write_only)]
    pub stream_auth_token: Option<Option<Token>>,
    /// Replaces every parameter.
    #[schema(value_type = Option<BTreeMap<String, String>>)]
    pub stream_parameters: Option<serde_json::Map<String, serde_json::Value>>,
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<String>)]
    pub stream_ca_pem: Option<Option<String>>,
    pub stream_connect_timeout_ms: Option<i64>,
    pub max_queued_audio_ms: Option<i64>,
    pub record: Option<bool>,
}

#[derive(Debug, Deserialize)]
pub struct ProfilePath {
    pub tenant_id: TenantId,
    pub ai_profile_id: AiProfileId,
}

fn name(name: String) -> Result<String, Problem> {
    let name = name.trim().to_owned();
    if name.is_empty() || name.len() > 200 {
        return Err(Problem::invalid("name", "name must be 1 to 200 characters"));
    }
    Ok(name)
}

fn system_prompt(prompt: String) -> Result<String, Problem> {
    if prompt.trim().is_empty() {
        return Err(Problem::invalid(
            "system_prompt",
            "system_prompt must not be empty",
        ));
    }
    if prompt.len() > MAX_PROMPT {
        return Err(Problem::invalid(
            "system_prompt",
            format!("system_prompt must be at most {MAX_PROMPT} bytes"),
        ));
    }
    Ok(prompt)
}

/// A `ws://` or `wss://` URL with a host, an optional port and no credentials or fragment;
/// returned with its scheme in lower case.
fn stream_url(url: String) -> Result<String, Problem> {
    let bad = |why: &str| Problem::invalid("stream_url", format!("stream_url {why}"));
    let url = url.trim();
    if url.len() > MAX_URL {
        return Err(bad(&format!("must be at most {MAX_URL} bytes")));
    }
    let (scheme, rest) = url
        .split_once("://")
        .ok_or_else(|| bad("must start with ws:// or wss://"))?;
    let scheme = scheme.to_ascii_lowercase();
    if scheme != "ws" && scheme != "wss" {
        return Err(bad("must start with ws:// or wss://"));
    }
    if rest.contains('#') {
        return Err(bad("must not have a fragment"));
    }
    let url = format!("{scheme}://{rest}");
    let uri: Uri = url.parse().map_err(|_| bad("is not a valid URL"))?;
    let authority = uri.authority().map(|a| a.as_str()).unwrap_or_default();
    if authority.contains('@') {
        return Err(bad(
            "must not carry a user name or password: set stream_auth_token",
        ));
    }
    let (host, port) = split_host_port(authority).ok_or_else(|| bad("needs a valid host"))?;
    let host_ok = match host {
        Host::V6(ip) => ip.parse::<std::net::Ipv6Addr>().is_ok(),
        Host::Other(host) => valid_host(host),
    };
    if !host_ok {
        return Err(bad("needs a host name or an IPv4 or IPv6 address"));
    }
    if let Some(port) = port {
        match port.parse::<u16>() {
            Ok(1..) => {}
            _ => return Err(bad("has a port outside 1 to 65535")),
        }
    }
    Ok(url)
}

/// A URL's host: what was in brackets (an IPv6 address, RFC 3986 §3.2.2), or anything else.
enum Host<'a> {
    V6(&'a str),
    Other(&'a str),
}

/// Splits `host[:port]` or `[v6][:port]`; `None` when the shape is wrong.
fn split_host_port(authority: &str) -> Option<(Host<'_>, Option<&str>)> {
    if let Some(rest) = authority.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        let port = match after {
            "" => None,
            _ => Some(after.strip_prefix(':')?),
        };
        return Some((Host::V6(host), port));
    }
    match authority.split_once(':') {
        Some((host, port)) => Some((Host::Other(host), Some(port))),
        None => Some((Host::Other(authority), None)),
    }
}

/// A host name (letters, digits, hyphens and underscores between dots) or an IPv4
/// address.
fn valid_host(host: &str) -> bool {
    if host.parse::<std::net::Ipv4Addr>().is_ok() {
        return true;
    }
    let label_ok = |l: &str| {
        (1..=63).contains(&l.len())
            && l.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    let name = host.strip_suffix('.').unwrap_or(host);
    !name.is_empty() && name.len() <= 253 && name.split('.').all(label_ok)
}

fn stream_auth_token(Token(token): Token) -> Result<StreamToken, Problem> {
    if !TOKEN_LEN.contains(&token.len()) || !token.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(Problem::invalid(
            "stream_auth_token",
            format!(
                "stream_auth_token must be {} to {} visible ASCII characters",
                TOKEN_LEN.start(),
                TOKEN_LEN.end()
            ),
        ));
    }
    Ok(StreamToken(token))
}

fn stream_parameters(
    parameters: serde_json::Map<String, serde_json::Value>,
) -> Result<BTreeMap<String, String>, Problem> {
    let bad = |detail: String| Problem::invalid("stream_parameters", detail);
    if parameters.len() > MAX_PARAMETERS {
        return Err(bad(format!(
            "stream_parameters may hold at most {MAX_PARAMETERS} values"
        )));
    }
    parameters
        .into_iter()
        .map(|(key, value)| {
            if key.is_empty() || key.len() > MAX_PARAMETER_NAME || key.chars().any(char::is_control)
            {
                return Err(bad(format!(
                    "stream_parameters names must be 1 to {MAX_PARAMETER_NAME} bytes, \
                     without control characters"
                )));
            }
            match value {
                serde_json::Value::String(text) if text.len() <= MAX_PARAMETER_VALUE => {
                    Ok((key, text))
                }
                serde_json::Value::String(_) => Err(bad(format!(
                    "stream_parameters.{key} must be at most {MAX_PARAMETER_VALUE} bytes"
                ))),
                _ => Err(bad(format!("stream_parameters.{key} must be a string"))),
            }
        })
        .collect()
}

/// One or more PEM certificates, each a well-formed X.509 certificate, and nothing else (a
/// private key pasted with them is refused rather than kept).
fn stream_ca_pem(pem: String) -> Result<String, Problem> {
    let bad = |why: &str| Problem::invalid("stream_ca_pem", format!("stream_ca_pem {why}"));
    if pem.len() > MAX_CA_PEM {
        return Err(bad(&format!("must be at most {MAX_CA_PEM} bytes")));
    }
    let mut certs = 0;
    for section in <(SectionKind, Vec<u8>)>::pem_slice_iter(pem.as_bytes()) {
        let (kind, der) = section.map_err(|_| bad("is not valid PEM"))?;
        if kind != SectionKind::Certificate {
            return Err(bad("must hold only CERTIFICATE sections"));
        }
        let der = CertificateDer::from(der);
        webpki::anchor_from_trusted_cert(&der)
            .map_err(|_| bad("holds a section that is not an X.509 certificate"))?;
        certs += 1;
    }
    match certs {
        0 => Err(bad("must hold at least one PEM certificate")),
        n if n > MAX_CA_CERTS => Err(bad(&format!(
            "may hold at most {MAX_CA_CERTS} certificates"
        ))),
        _ => Ok(pem),
    }
}

fn bounded(
    field: &'static str,
    bounds: std::ops::RangeInclusive<i64>,
    value: i64,
) -> Result<i64, Problem> {
    if bounds.contains(&value) {
        Ok(value)
    } else {
        Err(Problem::invalid(
            field,
            format!(
                "{field} must be between {} and {}",
                bounds.start(),
                bounds.end()
            ),
        ))
    }
}

/// A stream needs somewhere to go.
fn stream_has_url(target: MediaTarget, url: Option<&str>) -> Result<(), Problem> {
    if target == MediaTarget::Stream && url.is_none() {
        return Err(Problem::invalid(
            "stream_url",
            "media_target \"stream\" needs a stream_url",
        ));
    }
    Ok(())
}

#[utoipa::path(post, path = "/api/tenants/{tenant_id}/ai-profiles",
    params(("tenant_id" = TenantId, Path)), request_body = CreateAiProfile,
    responses((status = 201, body = AiProfile), (status = 400, body = Problem), (status = 404, body = Problem)))]
pub async fn create(
    State(state): State<AppState>,
    principal: Principal,
    ApiPath(TenantPath { tenant_id }): ApiPath<TenantPath>,
    ApiJson(body): ApiJson<CreateAiProfile>,
) -> Result<(StatusCode, Json<AiProfile>), Problem> {
    let tenant_id = principal.scope(tenant_id)?;
    state.store.tenant(tenant_id).await?;
    let name = name(body.name)?;
    let system_prompt = system_prompt(body.system_prompt)?;
    let defaults = ProfileStream::default();
    let stream = ProfileStream {
        media_target: body.media_target.unwrap_or(defaults.media_target),
        stream_url: body.stream_url.map(stream_url).transpose()?,
        stream_protocol: body.stream_protocol.unwrap_or(defaults.stream_protocol),
        stream_auth_token: body.stream_auth_token.map(stream_auth_token).transpose()?,
        stream_parameters: match body.stream_parameters {
            Some(parameters) => stream_parameters(parameters)?,
            None => defaults.stream_parameters,
        },
        stream_ca_pem: body.stream_ca_pem.map(stream_ca_pem).transpose()?,
        stream_connect_timeout_ms: body
            .stream_connect_timeout_ms
            .map(|ms| bounded("stream_connect_timeout_ms", CONNECT_TIMEOUT_MS, ms))
            .transpose()?
            .unwrap_or(defaults.stream_connect_timeout_ms),
        max_queued_audio_ms: body
            .max_queued_audio_ms
            .map(|ms| bounded("max_queued_audio_ms", MAX_QUEUED_AUDIO_MS, ms))
            .transpose()?
            .unwrap_or(defaults.max_queued_audio_ms),
        record: body.record.unwrap_or(defaults.record),
    };
    stream_has_url(stream.media_target, stream.stream_url.as_deref())?;
    let new = NewAiProfile {
        name,
        role: body.role,
        system_prompt,
        is_default: body.is_default.unwrap_or(false),
        stream,
    };
    let profile = state
        .store
        .create_ai_profile(tenant_id, new, state.clock.now())
        .await?;
    if profile.is_default {
        state.reload_directory().await;
    }
    Ok((StatusCode::CREATED, Json(profile.into())))
}

#[utoipa::path(get, path = "/api/tenants/{tenant_id}/ai-profiles",
    params(("tenant_id" = TenantId, Path), ("cursor" = Option<String>, Query), ("limit" = Option<u32>, Query)),
    responses((status = 200, body = List<AiProfile>), (status = 404, body = Problem)))]
pub async fn list(
    State(state): State<AppState>,
    principal: Principal,
    ApiPath(TenantPath { tenant_id }): ApiPath<TenantPath>,
    ApiQuery(query): ApiQuery<ListQuery<AiProfileId>>,
) -> Result<Json<List<AiProfile>>, Problem> {
    let tenant_id = principal.scope(tenant_id)?;
    state.store.tenant(tenant_id).await?;
    let page = state
        .store
        .list_ai_profiles(tenant_id, query.cursor, query.limit()?)
        .await?;
    Ok(Json(page.into()))
}

#[utoipa::path(get, path = "/api/tenants/{tenant_id}/ai-profiles/{ai_profile_id}",
    params(("tenant_id" = TenantId, Path), ("ai_profile_id" = AiProfileId, Path)),
    responses((status = 200, body = AiProfile), (status = 404, body = Problem)))]
pub async fn get(
    State(state): State<AppState>,
    principal: Principal,
    ApiPath(path): ApiPath<ProfilePath>,
) -> Result<Json<AiProfile>, Problem> {
    let tenant_id = principal.scope(path.tenant_id)?;
    Ok(Json(
        state
            .store
            .ai_profile(tenant_id, path.ai_profile_id)
            .await?
            .into(),
    ))
}

#[utoipa::path(patch, path = "/api/tenants/{tenant_id}/ai-profiles/{ai_profile_id}",
    params(("tenant_id" = TenantId, Path), ("ai_profile_id" = AiProfileId, Path)),
    request_body = UpdateAiProfile,
    responses((status = 200, body = AiProfile), (status = 400, body = Problem), (status = 404, body = Problem)))]
pub async fn update(
    State(state): State<AppState>,
    principal: Principal,
    ApiPath(path): ApiPath<ProfilePath>,
    ApiJson(body): ApiJson<UpdateAiProfile>,
) -> Result<Json<AiProfile>, Problem> {
    let tenant_id = principal.scope(path.tenant_id)?;
    let patch = AiProfilePatch {
        name: body.name.map(name).transpose()?,
        role: body.role,
        system_prompt: body.system_prompt.map(system_prompt).transpose()?,
        is_default: body.is_default,
        media_target: body.media_target,
        stream_url: body
            .stream_url
            .map(|url| url.map(stream_url).transpose())
            .transpose()?,
        stream_protocol: body.stream_protocol,
        stream_auth_token: body
            .stream_auth_token
            .map(|token| token.map(stream_auth_token).transpose())
            .transpose()?,
        stream_parameters: body.stream_parameters.map(stream_parameters).transpose()?,
        stream_ca_pem: body
            .stream_ca_pem
            .map(|pem| pem.map(stream_ca_pem).transpose())
            .transpose()?,
        stream_connect_timeout_ms: body
            .stream_connect_timeout_ms
            .map(|ms| bounded("stream_connect_timeout_ms", CONNECT_TIMEOUT_MS, ms))
            .transpose()?,
        max_queued_audio_ms: body
            .max_queued_audio_ms
            .map(|ms| bounded("max_queued_audio_ms", MAX_QUEUED_AUDIO_MS, ms))
            .transpose()?,
        record: body.record,
    };
    if patch.media_target.is_some() || patch.stream_url.is_some() {
        // The database refuses a stream without a URL too, should another change land
        // between this read and the write.
        let current = state
            .store
            .ai_profile(tenant_id, path.ai_profile_id)
            .await?;
        let target = patch.media_target.unwrap_or(current.media_target);
        let url = match &patch.stream_url {
            Some(url) => url.as_deref(),
            None => current.stream_url.as_deref(),
        };
        stream_has_url(target, url)?;
    }
    let profile = state
        .store
        .update_ai_profile(tenant_id, path.ai_profile_id, patch)
        .await?;
    state.reload_directory().await;
    Ok(Json(profile.into()))
}

#[utoipa::path(delete, path = "/api/tenants/{tenant_id}/ai-profiles/{ai_profile_id}",
    params(("tenant_id" = TenantId, Path), ("ai_profile_id" = AiProfileId, Path)),
    responses((status = 204), (status = 404, body = Problem)))]
pub async fn delete(
    State(state): State<AppState>,
    principal: Principal,
    ApiPath(path): ApiPath<ProfilePath>,
) -> Result<StatusCode, Problem> {
    let tenant_id = principal.scope(path.tenant_id)?;
    state
        .store
        .delete_ai_profile(tenant_id, path.ai_profile_id)
        .await?;
    state.reload_directory().await;
    Ok(StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_urls_are_ws_or_wss_with_a_host_and_no_credentials() {
        for (url, stored) in [
            (
                "wss://agent.example.com/stream",
                "wss://agent.example.com/stream",
            ),
            ("ws://127.0.0.1:8765", "ws://127.0.0.1:8765"),
            (
                "WSS://Agent.Example/x?a=1&b=2",
                "wss://Agent.Example/x?a=1&b=2",
            ),
            ("  wss://agent.example/  ", "wss://agent.example/"),
            ("ws://[::1]:9000/media", "ws://[::1]:9000/media"),
            ("wss://[2001:db8::7]/", "wss://[2001:db8::7]/"),
            (
                "wss://agent_1.internal.example:65535",
                "wss://agent_1.internal.example:65535",
            ),
            ("wss://agent.example./s", "wss://agent.example./s"),
        ] {
            assert_eq!(
                stream_url(url.to_owned()).as_deref().ok(),
                Some(stored),
                "{url}"
            );
        }
        let long = format!("wss://agent.example/{}", "a".repeat(MAX_URL));
        for url in [
            "",
            "agent.example/stream",
            "https://agent.example/stream",
            "http://agent.example",
            "wss:/agent.example",
            "wss://",
            "wss:///path",
            "wss://user:pass@agent.example/",
            "wss://token@agent.example/",
            "wss://agent.example/#frag",
            "wss://agent.example:0/",
            "wss://agent.example:65536/",
            "wss://agent.example:port/",
            "wss://agent.example:/",
            "wss://[::1/",
            "wss://[not-v6]/",
            "wss://[::1]x/",
            "wss://agent example/",
            "wss://agent.exa%6dple/",
            "wss://-agent.example/",
            "wss://agent..example/",
            "wss://agent.example/a b",
            "wss://agent.example/\u{7f}",
            &long,
        ] {
            let problem = stream_url(url.to_owned()).expect_err(url);
            assert_eq!(problem.field.as_deref(), Some("stream_url"), "{url}");
        }
    }

    fn certificate_pem() -> String {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(vec!["agents.internal".to_owned()]).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.self_signed(&key).unwrap().pem()
    }

    #[test]
    fn a_ca_bundle_is_one_or_more_certificates_and_nothing_else() {
        let one = certificate_pem();
        assert_eq!(stream_ca_pem(one.clone()).unwrap(), one);
        let two = format!("{one}\n{}", certificate_pem());
        assert_eq!(stream_ca_pem(two.clone()).unwrap(), two);
        let with_text = format!("# the agents' CA\n{one}");
        assert!(stream_ca_pem(with_text).is_ok());

        let key = rcgen::KeyPair::generate().unwrap().serialize_pem();
        let not_der = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
        let truncated = one.lines().take(3).collect::<Vec<_>>().join("\n");
        let too_many = (0..=MAX_CA_CERTS).map(|_| one.clone()).collect::<String>();
        for (what, pem) in [
            ("empty", String::new()),
            ("text", "not a certificate".to_owned()),
            ("key alone", key.clone()),
            ("key with a certificate", format!("{one}{key}")),
            ("not DER", not_der.to_owned()),
            ("bad base64", one.replace('M', "!")),
            ("truncated", truncated),
            ("too many", too_many),
            ("too large", format!("{one}{}", " ".repeat(MAX_CA_PEM))),
        ] {
            let problem = stream_ca_pem(pem).expect_err(what);
            assert_eq!(problem.field.as_deref(), Some("stream_ca_pem"), "{what}");
        }
    }

    #[test]
    fn parameters_are_strings_within_bounds() {
        let json = |v: serde_json::Value| match v {
            serde_json::Value::Object(map) => map,
            _ => unreachable!(),
        };
        let good = stream_parameters(json(serde_json::json!({"lang": "hi-IN", "empty": ""})));
        assert_eq!(
            good.unwrap(),
            BTreeMap::from([
                ("empty".to_owned(), String::new()),
                ("lang".to_owned(), "hi-IN".to_owned())
            ])
        );
        let many: serde_json::Map<_, _> = (0..=MAX_PARAMETERS)
            .map(|i| (format!("k{i}"), serde_json::Value::from("v")))
            .collect();
        for bad in [
            json(serde_json::json!({"n": 1})),
            json(serde_json::json!({"b": true})),
            json(serde_json::json!({"x": null})),
            json(serde_json::json!({"o": {"a": "b"}})),
            json(serde_json::json!({"a": ["b"]})),
            json(serde_json::json!({"": "v"})),
            json(serde_json::json!({"k\n": "v"})),
            json(serde_json::json!({"k": "v".repeat(MAX_PARAMETER_VALUE + 1)})),
            json(serde_json::json!({ "k".repeat(MAX_PARAMETER_NAME + 1): "v" })),
            many,
        ] {
            let problem = stream_parameters(bad.clone()).expect_err(&format!("{bad:?}"));
            assert_eq!(problem.field.as_deref(), Some("stream_parameters"));
        }
    }

    #[test]
    fn tokens_are_visible_ascii_and_never_printed() {
        assert!(stream_auth_token(Token("eyJhbGciOi.x-y_z~".to_owned())).is_ok());
        for bad in ["", "has space", "tab\t", "é", &"t".repeat(4097)] {
            let problem = stream_auth_token(Token(bad.to_owned())).expect_err(bad);
            assert_eq!(problem.field.as_deref(), Some("stream_auth_token"));
        }
        let token = Token("secret-value".to_owned());
        assert!(!format!("{token:?}").contains("secret"));
        let stored = StreamToken("secret-value".to_owned());
        assert!(!format!("{stored:?}").contains("secret"));
    }
}
