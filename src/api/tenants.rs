//! `/api/tenants`: the platform's customers (creating, listing and changing them is the
//! admin's; a tenant may read itself).

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;
use utoipa::ToSchema;

use super::extract::{ApiJson, ApiPath, ApiQuery, Principal};
use super::views::Tenant;
use super::{AppState, List, ListQuery, Problem, TenantPath};
use crate::ids::TenantId;
use crate::routing::e164::CountryCode;
use crate::store::model::{Plan, TenantStatus};
use crate::store::{NewTenant, TenantPatch};

/// The most concurrent calls one tenant may be given.
const MAX_CALL_LIMIT: i64 = 100_000;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateTenant {
    pub name: String,
    /// Default "active".
    pub status: Option<TenantStatus>,
    /// Default "starter".
    pub plan: Option<Plan>,
    /// Digits, no plus; default "91".
    pub default_country_code: Option<String>,
    /// Default 10.
    pub max_concurrent_calls: Option<i64>,
    /// A host name, unique across tenants; default `<tenant_id>.agents.invalid`.
    pub sip_domain: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateTenant {
    pub status: Option<TenantStatus>,
    pub plan: Option<Plan>,
    pub default_country_code: Option<String>,
    pub max_concurrent_calls: Option<i64>,
    /// A host name, unique across tenants; not while the tenant has agents (their
    /// password hashes are bound to it).
    pub sip_domain: Option<String>,
}

fn country_code(code: String) -> Result<String, Problem> {
    CountryCode::parse(&code)
        .map(|c| c.as_str().to_owned())
        .map_err(|e| Problem::invalid("default_country_code", e.to_string()))
}

/// A host name (letters, digits, hyphens, dots; not an IP address), in lower case.
fn sip_domain(domain: String) -> Result<String, Problem> {
    let label_ok = |l: &str| {
        (1..=63).contains(&l.len())
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    let name = domain.strip_suffix('.').unwrap_or(&domain);
    let last_is_numeric = name
        .rsplit('.')
        .next()
        .is_some_and(|l| l.bytes().all(|b| b.is_ascii_digit()));
    if name.len() > 253 || !name.split('.').all(label_ok) || last_is_numeric {
        return Err(Problem::invalid(
            "sip_domain",
            "sip_domain must be a host name (letters, digits, hyphens and dots)",
        ));
    }
    Ok(name.to_ascii_lowercase())
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

#[utoipa::path(post, path = "/api/tenants", request_body = CreateTenant,
    responses((status = 201, body = Tenant), (status = 400, body = Problem), (status = 403, body = Problem), (status = 409, body = Problem)))]
pub async fn create(
    State(state): State<AppState>,
    principal: Principal,
    ApiJson(body): ApiJson<CreateTenant>,
) -> Result<(StatusCode, Json<Tenant>), Problem> {
    principal.require_admin("create tenants")?;
    let name = body.name.trim().to_owned();
    if name.is_empty() || name.len() > 200 {
        return Err(Problem::invalid("name", "name must be 1 to 200 characters"));
    }
    let new = NewTenant {
        name,
        status: body.status.unwrap_or(TenantStatus::Active),
        plan: body.plan.unwrap_or(Plan::Starter),
        default_country_code: country_code(
            body.default_country_code
                .unwrap_or_else(|| CountryCode::default().as_str().to_owned()),
        )?,
        max_concurrent_calls: call_limit(body.max_concurrent_calls.unwrap_or(10))?,
        sip_domain: body.sip_domain.map(sip_domain).transpose()?,
    };
    let tenant = state.store.create_tenant(new, state.clock.now()).await?;
    Ok((StatusCode::CREATED, Json(tenant.into())))
}

#[utoipa::path(get, path = "/api/tenants",
    params(("cursor" = Option<String>, Query), ("limit" = Option<u32>, Query)),
    responses((status = 200, body = List<Tenant>), (status = 403, body = Problem)))]
pub async fn list(
    State(state): State<AppState>,
    principal: Principal,
    ApiQuery(query): ApiQuery<ListQuery<TenantId>>,
) -> Result<Json<List<Tenant>>, Problem> {
    principal.require_admin("list tenants")?;
    let page = state
        .store
        .list_tenants(query.cursor, query.limit()?)
        .await?;
    Ok(Json(page.into()))
}

#[utoipa::path(get, path = "/api/tenants/{tenant_id}", params(("tenant_id" = TenantId, Path)),
    responses((status = 200, body = Tenant), (status = 404, body = Problem)))]
pub async fn get(
    State(state): State<AppState>,
    principal: Principal,
    ApiPath(TenantPath { tenant_id }): ApiPath<TenantPath>,
) -> Result<Json<Tenant>, Problem> {
    let tenant_id = principal.scope(tenant_id)?;
    Ok(Json(state.store.tenant(tenant_id).await?.into()))
}

#[utoipa::path(patch, path = "/api/tenants/{tenant_id}", params(("tenant_id" = TenantId, Path)),
    request_body = UpdateTenant,
    responses((status = 200, body = Tenant), (status = 400, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem), (status = 409, body = Problem)))]
pub async fn update(
    State(state): State<AppState>,
    principal: Principal,
    ApiPath(TenantPath { tenant_id }): ApiPath<TenantPath>,
    ApiJson(body): ApiJson<UpdateTenant>,
) -> Result<Json<Tenant>, Problem> {
    let tenant_id = principal.scope(tenant_id)?;
    principal.require_admin("change a tenant's status, plan, limits or SIP domain")?;
    let sip_domain = body.sip_domain.map(sip_domain).transpose()?;
    if let Some(domain) = &sip_domain {
        let current = state.store.tenant(tenant_id).await?;
        if *domain != current.sip_domain && state.store.count_agents(tenant_id).await? > 0 {
            return Err(Problem::invalid(
                "sip_domain",
                "sip_domain cannot change while the tenant has agents: their password hashes \
                 are bound to it",
            ));
        }
    }
    let patch = TenantPatch {
        status: body.status,
        plan: body.plan,
        default_country_code: body.default_country_code.map(country_code).transpose()?,
        max_concurrent_calls: body.max_concurrent_calls.map(call_limit).transpose()?,
        sip_domain,
    };
    let tenant = state
        .store
        .update_tenant(tenant_id, patch, state.clock.now())
        .await?;
    state.reload_directory().await;
    Ok(Json(tenant.into()))
}
