//! `/api/tenants/{tenant_id}/phone-numbers`: the DIDs that route calls to a tenant.
//!
//! A number is normalised to E.164 on write with the tenant's default country code, and is
//! unique across all tenants (a duplicate is 409). The admin adds and removes numbers and
//! switches them on and off; a tenant reads its numbers and chooses their AI profile.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;
use utoipa::ToSchema;

use super::extract::{ApiJson, ApiPath, ApiQuery, Principal};
use super::views::PhoneNumber;
use super::{AppState, List, ListQuery, Problem, TenantPath, double_option};
use crate::ids::{AiProfileId, PhoneNumberId, TenantId, TrunkId};
use crate::routing::e164::{CountryCode, Did};
use crate::store::model::ProviderType;
use crate::store::{NewPhoneNumber, PhoneNumberPatch};

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreatePhoneNumber {
    /// Any common form: +919876543210, 09876543210, 9876543210, +91-98765-43210.
    pub did_number: String,
    /// Default "generic".
    pub provider_type: Option<ProviderType>,
    pub trunk_id: Option<TrunkId>,
    pub ai_profile_id: Option<AiProfileId>,
    /// Default true.
    pub is_active: Option<bool>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdatePhoneNumber {
    /// Activate or deactivate the number (admin only).
    pub is_active: Option<bool>,
    /// The AI profile that answers this number; null falls back to the tenant's default.
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<AiProfileId>)]
    pub ai_profile_id: Option<Option<AiProfileId>>,
}

#[derive(Debug, Deserialize)]
pub struct NumberPath {
    pub tenant_id: TenantId,
    pub phone_number_id: PhoneNumberId,
}

#[utoipa::path(post, path = "/api/tenants/{tenant_id}/phone-numbers",
    params(("tenant_id" = TenantId, Path)), request_body = CreatePhoneNumber,
    responses((status = 201, body = PhoneNumber), (status = 400, body = Problem),
              (status = 403, body = Problem), (status = 404, body = Problem), (status = 409, body = Problem)))]
pub async fn create(
    State(state): State<AppState>,
    principal: Principal,
    ApiPath(TenantPath { tenant_id }): ApiPath<TenantPath>,
    ApiJson(body): ApiJson<CreatePhoneNumber>,
) -> Result<(StatusCode, Json<PhoneNumber>), Problem> {
    let tenant_id = principal.scope(tenant_id)?;
    principal.require_admin("add phone numbers")?;
    let tenant = state.store.tenant(tenant_id).await?;
    let country = CountryCode::parse(&tenant.default_country_code).unwrap_or_default();
    let did = Did::normalize(&body.did_number, &country)
        .map_err(|e| Problem::invalid("did_number", e.to_string()))?;
    let new = NewPhoneNumber {
        did,
        provider_type: body.provider_type.unwrap_or(ProviderType::Generic),
        trunk_id: body.trunk_id,
        ai_profile_id: body.ai_profile_id,
        is_active: body.is_active.unwrap_or(true),
    };
    let number = state
        .store
        .create_phone_number(tenant_id, new, state.clock.now())
        .await?;
    state.refresh_number(&number.did_number).await;
    Ok((StatusCode::CREATED, Json(number.into())))
}

#[utoipa::path(get, path = "/api/tenants/{tenant_id}/phone-numbers",
    params(("tenant_id" = TenantId, Path), ("cursor" = Option<String>, Query), ("limit" = Option<u32>, Query)),
    responses((status = 200, body = List<PhoneNumber>), (status = 404, body = Problem)))]
pub async fn list(
    State(state): State<AppState>,
    principal: Principal,
    ApiPath(TenantPath { tenant_id }): ApiPath<TenantPath>,
    ApiQuery(query): ApiQuery<ListQuery<PhoneNumberId>>,
) -> Result<Json<List<PhoneNumber>>, Problem> {
    let tenant_id = principal.scope(tenant_id)?;
    state.store.tenant(tenant_id).await?;
    let page = state
        .store
        .list_phone_numbers(tenant_id, query.cursor, query.limit()?)
        .await?;
    Ok(Json(page.into()))
}

#[utoipa::path(get, path = "/api/tenants/{tenant_id}/phone-numbers/{phone_number_id}",
    params(("tenant_id" = TenantId, Path), ("phone_number_id" = PhoneNumberId, Path)),
    responses((status = 200, body = PhoneNumber), (status = 404, body = Problem)))]
pub async fn get(
    State(state): State<AppState>,
    principal: Principal,
    ApiPath(path): ApiPath<NumberPath>,
) -> Result<Json<PhoneNumber>, Problem> {
    let tenant_id = principal.scope(path.tenant_id)?;
    Ok(Json(
        state
            .store
            .phone_number(tenant_id, path.phone_number_id)
            .await?
            .into(),
    ))
}

#[utoipa::path(patch, path = "/api/tenants/{tenant_id}/phone-numbers/{phone_number_id}",
    params(("tenant_id" = TenantId, Path), ("phone_number_id" = PhoneNumberId, Path)),
    request_body = UpdatePhoneNumber,
    responses((status = 200, body = PhoneNumber), (status = 400, body = Problem),
              (status = 403, body = Problem), (status = 404, body = Problem)))]
pub async fn update(
    State(state): State<AppState>,
    principal: Principal,
    ApiPath(path): ApiPath<NumberPath>,
    ApiJson(body): ApiJson<UpdatePhoneNumber>,
) -> Result<Json<PhoneNumber>, Problem> {
    let tenant_id = principal.scope(path.tenant_id)?;
    if body.is_active.is_some() {
        principal.require_admin("activate or deactivate phone numbers")?;
    }
    if let Some(Some(profile)) = body.ai_profile_id {
        // A profile of another tenant is reported exactly like one that does not exist.
        state
            .store
            .ai_profile(tenant_id, profile)
            .await
            .map_err(|e| match e {
                crate::store::StoreError::NotFound => {
                    Problem::invalid("ai_profile_id", "no such AI profile for this tenant")
                }
                other => other.into(),
            })?;
    }
    let patch = PhoneNumberPatch {
        is_active: body.is_active,
        ai_profile_id: body.ai_profile_id,
    };
    let number = state
        .store
        .update_phone_number(tenant_id, path.phone_number_id, patch)
        .await?;
    state.refresh_number(&number.did_number).await;
    Ok(Json(number.into()))
}

#[utoipa::path(delete, path = "/api/tenants/{tenant_id}/phone-numbers/{phone_number_id}",
    params(("tenant_id" = TenantId, Path), ("phone_number_id" = PhoneNumberId, Path)),
    responses((status = 204), (status = 403, body = Problem), (status = 404, body = Problem)))]
pub async fn delete(
    State(state): State<AppState>,
    principal: Principal,
    ApiPath(path): ApiPath<NumberPath>,
) -> Result<StatusCode, Problem> {
    let tenant_id = principal.scope(path.tenant_id)?;
    principal.require_admin("delete phone numbers")?;
    let number = state
        .store
        .phone_number(tenant_id, path.phone_number_id)
        .await?;
    state
        .store
        .delete_phone_number(tenant_id, path.phone_number_id)
        .await?;
    state.refresh_number(&number.did_number).await;
    Ok(StatusCode::NO_CONTENT)
}
