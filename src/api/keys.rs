//! `/api/tenants/{tenant_id}/api-keys`: tenant-scoped keys, shown once, stored as a hash.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::extract::{ApiPath, Principal};
use super::{AppState, Problem, TenantPath};
use crate::ids::{ApiKeyId, TenantId};

/// A new key. `key` is never shown again.
#[derive(Debug, Serialize, ToSchema)]
pub struct CreatedApiKey {
    pub id: ApiKeyId,
    pub key: String,
}

#[derive(Debug, Deserialize)]
pub struct KeyPath {
    pub tenant_id: TenantId,
    pub api_key_id: ApiKeyId,
}

#[utoipa::path(post, path = "/api/tenants/{tenant_id}/api-keys",
    params(("tenant_id" = TenantId, Path)),
    responses((status = 201, body = CreatedApiKey), (status = 404, body = Problem)))]
pub async fn create(
    State(state): State<AppState>,
    principal: Principal,
    ApiPath(TenantPath { tenant_id }): ApiPath<TenantPath>,
) -> Result<(StatusCode, Json<CreatedApiKey>), Problem> {
    let tenant_id = principal.scope(tenant_id)?;
    state.store.tenant(tenant_id).await?;
    let (id, key) = state
        .store
        .create_api_key(tenant_id, state.clock.now())
        .await?;
    Ok((StatusCode::CREATED, Json(CreatedApiKey { id, key })))
}

#[utoipa::path(delete, path = "/api/tenants/{tenant_id}/api-keys/{api_key_id}",
    params(("tenant_id" = TenantId, Path), ("api_key_id" = ApiKeyId, Path)),
    responses((status = 204), (status = 404, body = Problem)))]
pub async fn revoke(
    State(state): State<AppState>,
    principal: Principal,
    ApiPath(path): ApiPath<KeyPath>,
) -> Result<StatusCode, Problem> {
    let tenant_id = principal.scope(path.tenant_id)?;
    state
        .store
        .revoke_api_key(tenant_id, path.api_key_id, state.clock.now())
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
