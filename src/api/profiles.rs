//! `/api/tenants/{tenant_id}/ai-profiles`: how a tenant's AI agent behaves on its calls.
//! Setting `is_default` moves the tenant's default to this profile in one transaction.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;
use utoipa::ToSchema;

use super::extract::{ApiJson, ApiPath, ApiQuery, Principal};
use super::views::AiProfile;
use super::{AppState, List, ListQuery, Problem, TenantPath};
use crate::ids::{AiProfileId, TenantId};
use crate::store::model::Role;
use crate::store::{AiProfilePatch, NewAiProfile};

/// The longest system prompt accepted, in bytes.
const MAX_PROMPT: usize = 32 * 1024;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateAiProfile {
    pub name: String,
    pub role: Role,
    /// Required and non-empty.
    pub system_prompt: String,
    /// Default false.
    pub is_default: Option<bool>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateAiProfile {
    pub name: Option<String>,
    pub role: Option<Role>,
    pub system_prompt: Option<String>,
    pub is_default: Option<bool>,
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
    let new = NewAiProfile {
        name: name(body.name)?,
        role: body.role,
        system_prompt: system_prompt(body.system_prompt)?,
        is_default: body.is_default.unwrap_or(false),
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
    };
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
