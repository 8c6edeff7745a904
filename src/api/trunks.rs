//! `/api/trunks` and `/api/tenants/{tenant_id}/trunks`: the SIP trunks calls may arrive on,
//! and how each proves who it is.
//!
//! Platform trunks (`tenant_id` null, such as a carrier trunk carrying many tenants' DIDs)
//! are the platform admin's alone; a tenant key gets 403. A tenant's own trunks (bring your
//! own carrier) are managed by the admin and by that tenant's keys; another tenant's trunks
//! answer 404 exactly like missing ones. A tenant key may allow-list networks no wider than
//! /16 (IPv4) or /48 (IPv6): sources inside trunk networks are spared the flood defences,
//! so wider ones are the admin's to grant.
//!
//! A trunk admits requests by source address (`auth: "ip"`, needs `allowed_cidrs`), by
//! digest credentials (`"digest"`, needs `realm`, `username` and `password`), or by both
//! (`"ip+digest"`). The password is write-only: only HA1 = H(username:realm:password) is
//! stored, once per algorithm of `digest_algorithms`, and no response carries it or a hash.
//! Since only hashes are kept, a change of `username` or `realm`, or an algorithm added to
//! `digest_algorithms`, needs the `password` again (400 naming `password` otherwise);
//! clearing `username` or `realm` drops the hashes.
//!
//! A trunk that phone numbers still name cannot be deleted: 409 naming `trunk_id`, until
//! the numbers are deleted.

use std::net::IpAddr;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;
use utoipa::ToSchema;

use super::extract::{ApiJson, ApiPath, ApiQuery, Principal};
use super::views::Trunk;
use super::{AppState, List, ListQuery, Problem, TenantPath, double_option};
use crate::ids::{TenantId, TrunkId};
use crate::routing::e164::CountryCode;
use crate::routing::trunks::Cidr;
use crate::store::model::{Codec, DigestAlgorithm, TrunkAuth, TrunkTransport};
use crate::store::{Ha1Set, StoreError, TrunkOwner, TrunkSettings};

/// The most concurrent calls one trunk may be given.
const MAX_CALL_LIMIT: i64 = 100_000;
/// The most networks one trunk may list.
const MAX_CIDRS: usize = 64;
/// The widest networks a tenant key may allow-list.
const TENANT_MIN_PREFIX_V4: u8 = 16;
const TENANT_MIN_PREFIX_V6: u8 = 48;
/// Longest name, provider, realm or username.
const MAX_TEXT: usize = 200;
/// Password length bounds, in characters.
pub(super) const PASSWORD_LEN: std::ops::RangeInclusive<usize> = 8..=128;

/// A password as received: it never appears in a log or a debug print.
#[derive(Deserialize)]
#[serde(transparent)]
pub struct Password(pub(super) String);

impl std::fmt::Debug for Password {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Password(..)")
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateTrunk {
    pub name: String,
    /// Free text naming the carrier; default "generic".
    pub provider: Option<String>,
    /// "udp", "tcp" or "tls"; default "udp".
    pub transport: Option<TrunkTransport>,
    /// The carrier's host name or IP address.
    pub host: Option<String>,
    /// 1 to 65535.
    pub port: Option<i64>,
    /// IPv4 and IPv6 addresses or networks (`203.0.113.0/24`, `2001:db8::/32`); stored
    /// normalised. Required for auth "ip" and "ip+digest".
    pub allowed_cidrs: Option<Vec<String>>,
    /// "ip", "digest" or "ip+digest"; default "ip".
    pub auth: Option<TrunkAuth>,
    pub realm: Option<String>,
    pub username: Option<String>,
    /// Write-only; 8 to 128 characters. Stored only as HA1 hashes.
    #[schema(value_type = Option<String>, write_only)]
    pub password: Option<Password>,
    /// "SHA-256" and/or "MD5", challenge order; default ["SHA-256", "MD5"].
    #[schema(value_type = Option<Vec<DigestAlgorithm>>)]
    pub digest_algorithms: Option<Vec<String>>,
    /// 0 or more; absent or null: no limit of the trunk's own.
    pub max_concurrent_calls: Option<i64>,
    /// Digits, no plus; default "91".
    pub default_country_code: Option<String>,
    /// "PCMA" and/or "PCMU"; default ["PCMA", "PCMU"].
    #[schema(value_type = Option<Vec<Codec>>)]
    pub codecs: Option<Vec<String>>,
    /// Default true.
    pub enabled: Option<bool>,
    /// Default false. Needs transport "tls": the carrier must present a certificate that
    /// the client CA verifies and, when `host` is set, that is valid for `host`.
    pub require_client_cert: Option<bool>,
}

/// Absent fields stay as they are; `host`, `port`, `realm`, `username` and
/// `max_concurrent_calls` are cleared by null.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateTrunk {
    pub name: Option<String>,
    pub provider: Option<String>,
    pub transport: Option<TrunkTransport>,
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<String>)]
    pub host: Option<Option<String>>,
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<i64>)]
    pub port: Option<Option<i64>>,
    pub allowed_cidrs: Option<Vec<String>>,
    pub auth: Option<TrunkAuth>,
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<String>)]
    pub realm: Option<Option<String>>,
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<String>)]
    pub username: Option<Option<String>>,
    /// Write-only. Required when `username` or `realm` changes or an algorithm is added.
    #[schema(value_type = Option<String>, write_only)]
    pub password: Option<Password>,
    #[schema(value_type = Option<Vec<DigestAlgorithm>>)]
    pub digest_algorithms: Option<Vec<String>>,
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<i64>)]
    pub max_concurrent_calls: Option<Option<i64>>,
    pub default_country_code: Option<String>,
    #[schema(value_type = Option<Vec<Codec>>)]
    pub codecs: Option<Vec<String>>,
    pub enabled: Option<bool>,
    pub require_client_cert: Option<bool>,
}

#[derive(Debug, Deserialize)]
pub struct TrunkPath {
    pub trunk_id: TrunkId,
}

#[derive(Debug, Deserialize)]
pub struct TenantTrunkPath {
    pub tenant_id: TenantId,
    pub trunk_id: TrunkId,
}

// ---- platform trunks ----

#[utoipa::path(post, path = "/api/trunks", request_body = CreateTrunk,
    responses((status = 201, body = Trunk), (status = 400, body = Problem), (status = 403, body = Problem)))]
pub async fn platform_create(
    State(state): State<AppState>,
    principal: Principal,
    ApiJson(body): ApiJson<CreateTrunk>,
) -> Result<(StatusCode, Json<Trunk>), Problem> {
    principal.require_admin("manage platform trunks")?;
    create(&state, principal, TrunkOwner::Platform, body).await
}

#[utoipa::path(get, path = "/api/trunks",
    params(("cursor" = Option<String>, Query), ("limit" = Option<u32>, Query)),
    responses((status = 200, body = List<Trunk>), (status = 403, body = Problem)))]
pub async fn platform_list(
    State(state): State<AppState>,
    principal: Principal,
    ApiQuery(query): ApiQuery<ListQuery<TrunkId>>,
) -> Result<Json<List<Trunk>>, Problem> {
    principal.require_admin("manage platform trunks")?;
    list(&state, TrunkOwner::Platform, query).await
}

#[utoipa::path(get, path = "/api/trunks/{trunk_id}", params(("trunk_id" = TrunkId, Path)),
    responses((status = 200, body = Trunk), (status = 403, body = Problem), (status = 404, body = Problem)))]
pub async fn platform_get(
    State(state): State<AppState>,
    principal: Principal,
    ApiPath(path): ApiPath<TrunkPath>,
) -> Result<Json<Trunk>, Problem> {
    principal.require_admin("manage platform trunks")?;
    Ok(Json(
        state
            .store
            .trunk(TrunkOwner::Platform, path.trunk_id)
            .await?
            .into(),
    ))
}

#[utoipa::path(patch, path = "/api/trunks/{trunk_id}", params(("trunk_id" = TrunkId, Path)),
    request_body = UpdateTrunk,
    responses((status = 200, body = Trunk), (status = 400, body = Problem),
              (status = 403, body = Problem), (status = 404, body = Problem)))]
pub async fn platform_update(
    State(state): State<AppState>,
    principal: Principal,
    ApiPath(path): ApiPath<TrunkPath>,
    ApiJson(body): ApiJson<UpdateTrunk>,
) -> Result<Json<Trunk>, Problem> {
    principal.require_admin("manage platform trunks")?;
    update(&state, principal, TrunkOwner::Platform, path.trunk_id, body).await
}

#[utoipa::path(delete, path = "/api/trunks/{trunk_id}", params(("trunk_id" = TrunkId, Path)),
    responses((status = 204), (status = 403, body = Problem), (status = 404, body = Problem),
              (status = 409, body = Problem)))]
pub async fn platform_delete(
    State(state): State<AppState>,
    principal: Principal,
    ApiPath(path): ApiPath<TrunkPath>,
) -> Result<StatusCode, Problem> {
    principal.require_admin("manage platform trunks")?;
    delete(&state, TrunkOwner::Platform, path.trunk_id).await
}

// ---- a tenant's own trunks ----

#[utoipa::path(post, path = "/api/tenants/{tenant_id}/trunks",
    params(("tenant_id" = TenantId, Path)), request_body = CreateTrunk,
    responses((status = 201, body = Trunk), (status = 400, body = Problem), (status = 404, body = Problem)))]
pub async fn tenant_create(
    State(state): State<AppState>,
    principal: Principal,
    ApiPath(TenantPath { tenant_id }): ApiPath<TenantPath>,
    ApiJson(body): ApiJson<CreateTrunk>,
) -> Result<(StatusCode, Json<Trunk>), Problem> {
    let tenant_id = principal.scope(tenant_id)?;
    state.store.tenant(tenant_id).await?;
    create(&state, principal, TrunkOwner::Tenant(tenant_id), body).await
}

#[utoipa::path(get, path = "/api/tenants/{tenant_id}/trunks",
    params(("tenant_id" = TenantId, Path), ("cursor" = Option<String>, Query), ("limit" = Option<u32>, Query)),
    responses((status = 200, body = List<Trunk>), (status = 404, body = Problem)))]
pub async fn tenant_list(
    State(state): State<AppState>,
    principal: Principal,
    ApiPath(TenantPath { tenant_id }): ApiPath<TenantPath>,
    ApiQuery(query): ApiQuery<ListQuery<TrunkId>>,
) -> Result<Json<List<Trunk>>, Problem> {
    let tenant_id = principal.scope(tenant_id)?;
    state.store.tenant(tenant_id).await?;
    list(&state, TrunkOwner::Tenant(tenant_id), query).await
}

#[utoipa::path(get, path = "/api/tenants/{tenant_id}/trunks/{trunk_id}",
    params(("tenant_id" = TenantId, Path), ("trunk_id" = TrunkId, Path)),
    responses((status = 200, body = Trunk), (status = 404, body = Problem)))]
pub async fn tenant_get(
    State(state): State<AppState>,
    principal: Principal,
    ApiPath(path): ApiPath<TenantTrunkPath>,
) -> Result<Json<Trunk>, Problem> {
    let tenant_id = principal.scope(path.tenant_id)?;
    Ok(Json(
        state
            .store
            .trunk(TrunkOwner::Tenant(tenant_id), path.trunk_id)
            .await?
            .into(),
    ))
}

#[utoipa::path(patch, path = "/api/tenants/{tenant_id}/trunks/{trunk_id}",
    params(("tenant_id" = TenantId, Path), ("trunk_id" = TrunkId, Path)), request_body = UpdateTrunk,
    responses((status = 200, body = Trunk), (status = 400, body = Problem), (status = 404, body = Problem)))]
pub async fn tenant_update(
    State(state): State<AppState>,
    principal: Principal,
    ApiPath(path): ApiPath<TenantTrunkPath>,
    ApiJson(body): ApiJson<UpdateTrunk>,
) -> Result<Json<Trunk>, Problem> {
    let tenant_id = principal.scope(path.tenant_id)?;
    let owner = TrunkOwner::Tenant(tenant_id);
    update(&state, principal, owner, path.trunk_id, body).await
}

#[utoipa::path(delete, path = "/api/tenants/{tenant_id}/trunks/{trunk_id}",
    params(("tenant_id" = TenantId, Path), ("trunk_id" = TrunkId, Path)),
    responses((status = 204), (status = 404, body = Problem), (status = 409, body = Problem)))]
pub async fn tenant_delete(
    State(state): State<AppState>,
    principal: Principal,
    ApiPath(path): ApiPath<TenantTrunkPath>,
) -> Result<StatusCode, Problem> {
    let tenant_id = principal.scope(path.tenant_id)?;
    delete(&state, TrunkOwner::Tenant(tenant_id), path.trunk_id).await
}

// ---- shared by both kinds ----

async fn create(
    state: &AppState,
    principal: Principal,
    owner: TrunkOwner,
    body: CreateTrunk,
) -> Result<(StatusCode, Json<Trunk>), Problem> {
    let settings = TrunkSettings {
        name: name(body.name)?,
        provider: provider(body.provider.unwrap_or_else(|| "generic".to_owned()))?,
        transport: body.transport.unwrap_or(TrunkTransport::UDP),
        host: body.host.map(host).transpose()?,
        port: body.port.map(port).transpose()?,
        allowed_cidrs: cidrs(body.allowed_cidrs.unwrap_or_default(), principal)?,
        auth: body.auth.unwrap_or(TrunkAuth::Ip),
        realm: body.realm.map(|r| credential("realm", r)).transpose()?,
        username: body
            .username
            .map(|u| credential("username", u))
            .transpose()?,
        ha1: Ha1Set::default(),
        digest_algorithms: match body.digest_algorithms {
            Some(list) => digest_algorithms(list)?,
            None => vec![DigestAlgorithm::Sha256, DigestAlgorithm::Md5],
        },
        max_concurrent_calls: body.max_concurrent_calls.map(call_limit).transpose()?,
        default_country_code: country_code(
            body.default_country_code
                .unwrap_or_else(|| CountryCode::default().as_str().to_owned()),
        )?,
        codecs: match body.codecs {
            Some(list) => codecs(list)?,
            None => vec![Codec::Pcma, Codec::Pcmu],
        },
        enabled: body.enabled.unwrap_or(true),
        require_client_cert: body.require_client_cert.unwrap_or(false),
    };
    let settings = finish(settings, body.password, false)?;
    let trunk = state
        .store
        .create_trunk(owner, settings, state.clock.now())
        .await?;
    state.reload_trunks().await;
    Ok((StatusCode::CREATED, Json(trunk.into())))
}

async fn list(
    state: &AppState,
    owner: TrunkOwner,
    query: ListQuery<TrunkId>,
) -> Result<Json<List<Trunk>>, Problem> {
    let page = state
        .store
        .list_trunks(owner, query.cursor, query.limit()?)
        .await?;
    Ok(Json(page.into()))
}

async fn update(
    state: &AppState,
    principal: Principal,
    owner: TrunkOwner,
    id: TrunkId,
    body: UpdateTrunk,
) -> Result<Json<Trunk>, Problem> {
    let mut s = state.store.trunk_credentials(owner, id).await?.settings();
    if let Some(v) = body.name {
        s.name = name(v)?;
    }
    if let Some(v) = body.provider {
        s.provider = provider(v)?;
    }
    if let Some(v) = body.transport {
        s.transport = v;
    }
    if let Some(v) = body.host {
        s.host = v.map(host).transpose()?;
    }
    if let Some(v) = body.port {
        s.port = v.map(port).transpose()?;
    }
    if let Some(v) = body.allowed_cidrs {
        s.allowed_cidrs = cidrs(v, principal)?;
    }
    if let Some(v) = body.auth {
        s.auth = v;
    }
    let mut identity_changed = false;
    if let Some(v) = body.realm {
        let realm = v.map(|r| credential("realm", r)).transpose()?;
        identity_changed |= realm != s.realm;
        s.realm = realm;
    }
    if let Some(v) = body.username {
        let username = v.map(|u| credential("username", u)).transpose()?;
        identity_changed |= username != s.username;
        s.username = username;
    }
    if let Some(v) = body.digest_algorithms {
        s.digest_algorithms = digest_algorithms(v)?;
    }
    if let Some(v) = body.max_concurrent_calls {
        s.max_concurrent_calls = v.map(call_limit).transpose()?;
    }
    if let Some(v) = body.default_country_code {
        s.default_country_code = country_code(v)?;
    }
    if let Some(v) = body.codecs {
        s.codecs = codecs(v)?;
    }
    if let Some(v) = body.enabled {
        s.enabled = v;
    }
    if let Some(v) = body.require_client_cert {
        s.require_client_cert = v;
    }
    let settings = finish(s, body.password, identity_changed)?;
    let trunk = state.store.update_trunk(owner, id, settings).await?;
    state.reload_trunks().await;
    Ok(Json(trunk.into()))
}

async fn delete(state: &AppState, owner: TrunkOwner, id: TrunkId) -> Result<StatusCode, Problem> {
    match state.store.delete_trunk(owner, id).await {
        Ok(()) => {
            state.reload_trunks().await;
            Ok(StatusCode::NO_CONTENT)
        }
        Err(StoreError::Conflict(field)) => Err(Problem {
            detail: "phone numbers still use this trunk; delete those numbers first".to_owned(),
            ..Problem::conflict(field)
        }),
        Err(other) => Err(other.into()),
    }
}

/// Brings the hashes in line with the credentials and checks what the auth mode needs.
///
/// `identity_changed`: the username or realm differs from the stored one, so the stored
/// hashes no longer match it.
fn finish(
    mut s: TrunkSettings,
    password: Option<Password>,
    identity_changed: bool,
) -> Result<TrunkSettings, Problem> {
    if s.require_client_cert && s.transport != TrunkTransport::TLS {
        return Err(Problem::invalid(
            "require_client_cert",
            "require_client_cert needs transport \"tls\"",
        ));
    }
    let needs_ip = matches!(s.auth, TrunkAuth::Ip | TrunkAuth::IpDigest);
    let needs_digest = matches!(s.auth, TrunkAuth::Digest | TrunkAuth::IpDigest);
    if needs_ip && s.allowed_cidrs.is_empty() {
        return Err(Problem::invalid(
            "allowed_cidrs",
            format!(
                "auth \"{}\" needs at least one network in allowed_cidrs",
                s.auth
            ),
        ));
    }
    match password {
        Some(Password(password)) => {
            let chars = password.chars().count();
            if !PASSWORD_LEN.contains(&chars) || password.chars().any(char::is_control) {
                return Err(Problem::invalid(
                    "password",
                    format!(
                        "password must be {} to {} characters, none of them control characters",
                        PASSWORD_LEN.start(),
                        PASSWORD_LEN.end()
                    ),
                ));
            }
            let username = s.username.as_deref().ok_or_else(|| {
                Problem::invalid("username", "a password needs a username and a realm")
            })?;
            let realm = s.realm.as_deref().ok_or_else(|| {
                Problem::invalid("realm", "a password needs a username and a realm")
            })?;
            s.ha1 = Ha1Set::compute(&s.digest_algorithms, username, realm, &password);
        }
        None if identity_changed => {
            if s.username.is_some() && s.realm.is_some() && !s.ha1.is_empty() {
                return Err(Problem::invalid(
                    "password",
                    "a new username or realm needs the password again (only hashes are kept)",
                ));
            }
            s.ha1 = Ha1Set::default();
        }
        None if !s.ha1.is_empty() && !s.ha1.covers(&s.digest_algorithms) => {
            return Err(Problem::invalid(
                "password",
                "an algorithm added to digest_algorithms needs the password again \
                 (only hashes are kept)",
            ));
        }
        None => s.ha1 = s.ha1.restricted_to(&s.digest_algorithms),
    }
    if needs_digest {
        let missing =
            |field: &str| Problem::invalid(field, format!("auth \"{}\" needs a {field}", s.auth));
        if s.username.is_none() {
            return Err(missing("username"));
        }
        if s.realm.is_none() {
            return Err(missing("realm"));
        }
        if !s.ha1.covers(&s.digest_algorithms) {
            return Err(missing("password"));
        }
    }
    Ok(s)
}

fn name(name: String) -> Result<String, Problem> {
    bounded_text("name", name.trim())
}

fn provider(provider: String) -> Result<String, Problem> {
    bounded_text("provider", provider.trim())
}

fn bounded_text(field: &str, text: &str) -> Result<String, Problem> {
    let chars = text.chars().count();
    if chars == 0 || chars > MAX_TEXT || text.chars().any(char::is_control) {
        return Err(Problem::invalid(
            field,
            format!("{field} must be 1 to {MAX_TEXT} characters, none of them control characters"),
        ));
    }
    Ok(text.to_owned())
}

/// A username or realm: taken exactly as given (it is hashed), and quotable in a SIP
/// header (no `"` or `\`).
fn credential(field: &str, value: String) -> Result<String, Problem> {
    let text = bounded_text(field, &value)?;
    if text.trim() != text || text.contains(['"', '\\']) {
        return Err(Problem::invalid(
            field,
            format!("{field} must not contain quotes or backslashes or start or end with spaces"),
        ));
    }
    Ok(text)
}

/// A host name (letters, digits, hyphens, dots) or an IP address, in lower case.
fn host(host: String) -> Result<String, Problem> {
    let bad = || {
        Problem::invalid(
            "host",
            "host must be a host name or an IPv4 or IPv6 address",
        )
    };
    let text = host.trim();
    let bare = text
        .strip_prefix('[')
        .and_then(|t| t.strip_suffix(']'))
        .unwrap_or(text);
    if let Ok(ip) = bare.parse::<IpAddr>() {
        return Ok(ip.to_string());
    }
    let label_ok = |l: &str| {
        (1..=63).contains(&l.len())
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    let name = text.strip_suffix('.').unwrap_or(text);
    if name.len() > 253 || !name.split('.').all(label_ok) {
        return Err(bad());
    }
    Ok(name.to_ascii_lowercase())
}

fn port(port: i64) -> Result<i64, Problem> {
    if (1..=65535).contains(&port) {
        Ok(port)
    } else {
        Err(Problem::invalid("port", "port must be between 1 and 65535"))
    }
}

fn call_limit(limit: i64) -> Result<i64, Problem> {
    if (0..=MAX_CALL_LIMIT).contains(&limit) {
        Ok(limit)
    } else {
        Err(Problem::invalid(
            "max_concurrent_calls",
            format!("max_concurrent_calls must be between 0 and {MAX_CALL_LIMIT}"),
        ))
    }
}

fn country_code(code: String) -> Result<String, Problem> {
    CountryCode::parse(&code)
        .map(|c| c.as_str().to_owned())
        .map_err(|e| Problem::invalid("default_country_code", e.to_string()))
}

/// A non-empty list of distinct values of a text enum, in the order given.
fn distinct<T: Copy + PartialEq>(
    field: &str,
    list: Vec<String>,
    parse: impl Fn(&str) -> Option<T>,
    allowed: &str,
) -> Result<Vec<T>, Problem> {
    let bad = || {
        Problem::invalid(
            field,
            format!("{field} must list one or more distinct values of {allowed}"),
        )
    };
    if list.is_empty() {
        return Err(bad());
    }
    let mut out = Vec::with_capacity(list.len());
    for text in &list {
        let value = parse(text).ok_or_else(bad)?;
        if out.contains(&value) {
            return Err(bad());
        }
        out.push(value);
    }
    Ok(out)
}

fn digest_algorithms(list: Vec<String>) -> Result<Vec<DigestAlgorithm>, Problem> {
    distinct(
        "digest_algorithms",
        list,
        DigestAlgorithm::parse,
        "\"SHA-256\", \"MD5\"",
    )
}

fn codecs(list: Vec<String>) -> Result<Vec<Codec>, Problem> {
    distinct("codecs", list, Codec::parse, "\"PCMA\", \"PCMU\"")
}

/// Validates and normalises a list of networks: each to its network address and prefix
/// length (`10.1.2.3/8` is `10.0.0.0/8`, a bare address is a /32 or /128, an IPv4-mapped
/// IPv6 network is its IPv4 network), duplicates dropped.
fn cidrs(list: Vec<String>, principal: Principal) -> Result<Vec<String>, Problem> {
    if list.len() > MAX_CIDRS {
        return Err(Problem::invalid(
            "allowed_cidrs",
            format!("allowed_cidrs may list at most {MAX_CIDRS} networks"),
        ));
    }
    let mut out: Vec<String> = Vec::with_capacity(list.len());
    for text in &list {
        let cidr = Cidr::parse(text).ok_or_else(|| {
            Problem::invalid(
                "allowed_cidrs",
                format!("{text:?} is not an IPv4 or IPv6 address or network"),
            )
        })?;
        let (net, prefix) = (cidr.network(), cidr.prefix());
        if let Principal::Tenant(_) = principal {
            let min = match net {
                IpAddr::V4(_) => TENANT_MIN_PREFIX_V4,
                IpAddr::V6(_) => TENANT_MIN_PREFIX_V6,
            };
            if prefix < min {
                return Err(Problem::invalid(
                    "allowed_cidrs",
                    format!(
                        "{text:?} is wider than a tenant may allow (at most /{TENANT_MIN_PREFIX_V4} \
                         for IPv4, /{TENANT_MIN_PREFIX_V6} for IPv6); ask the platform admin"
                    ),
                ));
            }
        }
        let normal = cidr.to_string();
        if !out.contains(&normal) {
            out.push(normal);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn networks_are_normalised() {
        let cases = [
            ("10.1.2.3/8", "10.0.0.0/8"),
            ("203.0.113.7", "203.0.113.7/32"),
            (" 0.0.0.0/0 ", "0.0.0.0/0"),
            ("2001:DB8::1/32", "2001:db8::/32"),
            ("::1", "::1/128"),
            ("::/0", "::/0"),
            ("::ffff:192.0.2.9/120", "192.0.2.0/24"),
        ];
        for (input, expected) in cases {
            let cidr = Cidr::parse(input).unwrap();
            assert_eq!(cidr.to_string(), expected, "{input}");
        }
        for bad in [
            "",
            "10.0.0.0/33",
            "10.0.0.0/",
            "10.0.0.0/-1",
            "10.0.0/8",
            "::/129",
            "host/24",
            "10.0.0.0/08x",
            "1.2.3.4/+8",
        ] {
            assert!(Cidr::parse(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn tenant_keys_may_not_allow_wide_networks() {
        let tenant = Principal::Tenant(TenantId::new());
        let wide = vec!["10.0.0.0/8".to_owned()];
        assert!(cidrs(wide.clone(), tenant).is_err());
        assert_eq!(cidrs(wide, Principal::Admin).unwrap(), ["10.0.0.0/8"]);
        let ok = vec!["10.1.0.0/16".to_owned(), "10.1.0.0/16".to_owned()];
        assert_eq!(cidrs(ok, tenant).unwrap(), ["10.1.0.0/16"]);
    }

    #[test]
    fn hosts_are_names_or_addresses() {
        assert_eq!(
            host("SIP.Example.com".to_owned()).unwrap(),
            "sip.example.com"
        );
        assert_eq!(host("[2001:db8::1]".to_owned()).unwrap(), "2001:db8::1");
        for bad in ["", "a b", "-x.com", "x..com", "x_y.com"] {
            assert!(host(bad.to_owned()).is_err(), "{bad}");
        }
    }
}
