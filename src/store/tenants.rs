//! Tenants: the platform's customers.

use chrono::{DateTime, Utc};

use super::model::{Plan, Tenant, TenantStatus};
use super::{Page, Result, Store, StoreError, on_pool, stamp};
use crate::ids::TenantId;

/// The columns every query returns, in the row type's order.
macro_rules! columns {
    () => {
        "id, name, status, plan, default_country_code, max_concurrent_calls, sip_domain, \
         created_at, updated_at"
    };
}

/// What a new tenant starts with.
#[derive(Debug, Clone)]
pub struct NewTenant {
    pub name: String,
    pub status: TenantStatus,
    pub plan: Plan,
    pub default_country_code: String,
    pub max_concurrent_calls: i64,
    /// `None` gives the tenant `<tenant_id>.agents.invalid`.
    pub sip_domain: Option<String>,
}

/// The SIP domain a tenant has until the admin gives it one: unique, and never resolvable.
pub fn default_sip_domain(id: TenantId) -> String {
    format!("{id}.agents.invalid")
}

/// The fields of a tenant that may change; `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct TenantPatch {
    pub status: Option<TenantStatus>,
    pub plan: Option<Plan>,
    pub default_country_code: Option<String>,
    pub max_concurrent_calls: Option<i64>,
    pub sip_domain: Option<String>,
}

impl Store {
    /// Adds a tenant, created (and last updated) at `now`.
    pub async fn create_tenant(&self, new: NewTenant, now: DateTime<Utc>) -> Result<Tenant> {
        const SQL: &str = concat!(
            "INSERT INTO tenants (",
            columns!(),
            ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8) \
             RETURNING ",
            columns!()
        );
        let at = stamp(now);
        let id = TenantId::new();
        let sip_domain = new.sip_domain.unwrap_or_else(|| default_sip_domain(id));
        on_pool!(self, |pool| sqlx::query_as(SQL)
            .bind(id)
            .bind(&new.name)
            .bind(new.status)
            .bind(new.plan)
            .bind(&new.default_country_code)
            .bind(new.max_concurrent_calls)
            .bind(&sip_domain)
            .bind(at)
            .fetch_one(pool)
            .await)
        .map_err(|e| match StoreError::from_sqlx(e, "tenant") {
            StoreError::Conflict(_) => StoreError::Conflict("sip_domain"),
            other => other,
        })
    }

    pub async fn tenant(&self, id: TenantId) -> Result<Tenant> {
        const SQL: &str = concat!("SELECT ", columns!(), " FROM tenants WHERE id = $1");
        on_pool!(self, |pool| sqlx::query_as(SQL)
            .bind(id)
            .fetch_optional(pool)
            .await)?
        .ok_or(StoreError::NotFound)
    }

    pub async fn list_tenants(
        &self,
        cursor: Option<TenantId>,
        limit: u32,
    ) -> Result<Page<Tenant, TenantId>> {
        const SQL: &str = concat!(
            "SELECT ",
            columns!(),
            " FROM tenants WHERE ($1 IS NULL OR id > $1) ORDER BY id LIMIT $2"
        );
        let rows: Vec<Tenant> = on_pool!(self, |pool| sqlx::query_as(SQL)
            .bind(cursor)
            .bind(i64::from(limit) + 1)
            .fetch_all(pool)
            .await)?;
        Ok(Page::from_rows(rows, limit, |t| t.id))
    }

    /// Changes a tenant, updated at `now`.
    pub async fn update_tenant(
        &self,
        id: TenantId,
        patch: TenantPatch,
        now: DateTime<Utc>,
    ) -> Result<Tenant> {
        const SQL: &str = concat!(
            "UPDATE tenants SET \
               status = COALESCE($2, status), \
               plan = COALESCE($3, plan), \
               default_country_code = COALESCE($4, default_country_code), \
               max_concurrent_calls = COALESCE($5, max_concurrent_calls), \
               sip_domain = COALESCE($7, sip_domain), \
               updated_at = $6 \
             WHERE id = $1 RETURNING ",
            columns!()
        );
        on_pool!(self, |pool| sqlx::query_as(SQL)
            .bind(id)
            .bind(patch.status)
            .bind(patch.plan)
            .bind(patch.default_country_code)
            .bind(patch.max_concurrent_calls)
            .bind(stamp(now))
            .bind(patch.sip_domain)
            .fetch_optional(pool)
            .await)
        .map_err(|e| match StoreError::from_sqlx(e, "tenant") {
            StoreError::Conflict(_) => StoreError::Conflict("sip_domain"),
            other => other,
        })?
        .ok_or(StoreError::NotFound)
    }
}
