//! `/api/tenants/{tenant_id}/agents`: the people who answer a tenant's calls in a browser,
//! registering over SIP WebSocket as `sip:USERNAME@<sip_domain>`.
//!
//! The password is write-only: only HA1 = H(username:sip_domain:password) for MD5 and
//! SHA-256 is stored, so the username never changes (a new one would need a new password
//! anyway) and a tenant's `sip_domain` cannot change while it has agents.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;
use utoipa::ToSchema;

use super::extract::{ApiJson, ApiPath, ApiQuery, Principal};
use super::trunks::{PASSWORD_LEN, Password};
use super::views::Agent;
use super::{AppState, List, ListQuery, Problem, TenantPath, double_option};
use crate::ids::{AgentId, TenantId};
use crate::store::{AGENT_DIGEST_ALGORITHMS, AgentPatch, Ha1Set, NewAgent};

/// Longest username, in bytes.
const MAX_USERNAME: usize = 64;
/// Longest display name, in characters.
const MAX_DISPLAY_NAME: usize = 200;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateAgent {
    /// The user part of the agent's SIP address: 1 to 64 letters, digits, `.`, `_`, `-`
    /// or `~`; unique within the tenant; never changes.
    pub username: String,
    /// Write-only; 8 to 128 characters. Stored only as HA1 hashes.
    #[schema(value_type = String)]
    pub password: Password,
    /// Shown to callers and in lists; optional.
    pub display_name: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateAgent {
    /// A new password (write-only).
    #[schema(value_type = Option<String>)]
    pub password: Option<Password>,
    /// Null clears it.
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<String>)]
    pub display_name: Option<Option<String>>,
}

#[derive(Debug, Deserialize)]
pub struct AgentPath {
    pub tenant_id: TenantId,
    pub agent_id: AgentId,
}

fn username(name: String) -> Result<String, Problem> {
    let ok = (1..=MAX_USERNAME).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'~'));
    if ok {
        Ok(name)
    } else {
        Err(Problem::invalid(
            "username",
            format!("username must be 1 to {MAX_USERNAME} letters, digits, '.', '_', '-' or '~'"),
        ))
    }
}

fn display_name(name: String) -> Result<String, Problem> {
    let name = name.trim().to_owned();
    let chars = name.chars().count();
    if (1..=MAX_DISPLAY_NAME).contains(&chars) && !name.chars().any(|c| c.is_control() || c == '"')
    {
        Ok(name)
    } else {
        Err(Problem::invalid(
            "display_name",
            format!(
                "display_name must be 1 to {MAX_DISPLAY_NAME} characters, without quotes or \
                 control characters"
            ),
        ))
    }
}

/// The HA1 hashes of `password` for `username` in `realm`, after checking its length.
fn hashes(username: &str, realm: &str, Password(password): Password) -> Result<Ha1Set, Problem> {
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
    Ok(Ha1Set::compute(
        &AGENT_DIGEST_ALGORITHMS,
        username,
        realm,
        &password,
    ))
}

#[utoipa::path(post, path = "/api/tenants/{tenant_id}/agents",
    params(("tenant_id" = TenantId, Path)), request_body = CreateAgent,
    responses((status = 201, body = Agent), (status = 400, body = Problem), (status = 404, body = Problem), (status = 409, body = Problem)))]
pub async fn create(
    State(state): State<AppState>,
    principal: Principal,
    ApiPath(TenantPath { tenant_id }): ApiPath<TenantPath>,
    ApiJson(body): ApiJson<CreateAgent>,
) -> Result<(StatusCode, Json<Agent>), Problem> {
    let tenant_id = principal.scope(tenant_id)?;
    let tenant = state.store.tenant(tenant_id).await?;
    let username = username(body.username)?;
    let new = NewAgent {
        ha1: hashes(&username, &tenant.sip_domain, body.password)?,
        display_name: body.display_name.map(display_name).transpose()?,
        username,
    };
    let agent = state
        .store
        .create_agent(tenant_id, new, state.clock.now())
        .await?;
    Ok((StatusCode::CREATED, Json(agent.into())))
}

#[utoipa::path(get, path = "/api/tenants/{tenant_id}/agents",
    params(("tenant_id" = TenantId, Path), ("cursor" = Option<String>, Query), ("limit" = Option<u32>, Query)),
    responses((status = 200, body = List<Agent>), (status = 404, body = Problem)))]
pub async fn list(
    State(state): State<AppState>,
    principal: Principal,
    ApiPath(TenantPath { tenant_id }): ApiPath<TenantPath>,
    ApiQuery(query): ApiQuery<ListQuery<AgentId>>,
) -> Result<Json<List<Agent>>, Problem> {
    let tenant_id = principal.scope(tenant_id)?;
    state.store.tenant(tenant_id).await?;
    let page = state
        .store
        .list_agents(tenant_id, query.cursor, query.limit()?)
        .await?;
    Ok(Json(page.into()))
}

#[utoipa::path(get, path = "/api/tenants/{tenant_id}/agents/{agent_id}",
    params(("tenant_id" = TenantId, Path), ("agent_id" = AgentId, Path)),
    responses((status = 200, body = Agent), (status = 404, body = Problem)))]
pub async fn get(
    State(state): State<AppState>,
    principal: Principal,
    ApiPath(path): ApiPath<AgentPath>,
) -> Result<Json<Agent>, Problem> {
    let tenant_id = principal.scope(path.tenant_id)?;
    Ok(Json(
        state.store.agent(tenant_id, path.agent_id).await?.into(),
    ))
}

#[utoipa::path(patch, path = "/api/tenants/{tenant_id}/agents/{agent_id}",
    params(("tenant_id" = TenantId, Path), ("agent_id" = AgentId, Path)), request_body = UpdateAgent,
    responses((status = 200, body = Agent), (status = 400, body = Problem), (status = 404, body = Problem)))]
pub async fn update(
    State(state): State<AppState>,
    principal: Principal,
    ApiPath(path): ApiPath<AgentPath>,
    ApiJson(body): ApiJson<UpdateAgent>,
) -> Result<Json<Agent>, Problem> {
    let tenant_id = principal.scope(path.tenant_id)?;
    let ha1 = match body.password {
        Some(password) => {
            let tenant = state.store.tenant(tenant_id).await?;
            let agent = state.store.agent(tenant_id, path.agent_id).await?;
            Some(hashes(&agent.username, &tenant.sip_domain, password)?)
        }
        None => None,
    };
    let patch = AgentPatch {
        display_name: body
            .display_name
            .map(|name| name.map(display_name).transpose())
            .transpose()?,
        ha1,
    };
    let agent = state
        .store
        .update_agent(tenant_id, path.agent_id, patch, state.clock.now())
        .await?;
    Ok(Json(agent.into()))
}

#[utoipa::path(delete, path = "/api/tenants/{tenant_id}/agents/{agent_id}",
    params(("tenant_id" = TenantId, Path), ("agent_id" = AgentId, Path)),
    responses((status = 204), (status = 404, body = Problem)))]
pub async fn delete(
    State(state): State<AppState>,
    principal: Principal,
    ApiPath(path): ApiPath<AgentPath>,
) -> Result<StatusCode, Problem> {
    let tenant_id = principal.scope(path.tenant_id)?;
    state.store.delete_agent(tenant_id, path.agent_id).await?;
    Ok(StatusCode::NO_CONTENT)
}
