//! Routes: for each phone number, its tenant and the AI profile that answers it, as the DID
//! directory (`routing::directory`) holds them in memory.
//!
//! Routing is the one reader of every tenant's numbers, not filtered by tenant: it is what
//! finds the tenant.

use sqlx::FromRow;

use super::model::TenantStatus;
use super::{Result, Store, StoreError, on_pool};
use crate::ids::{AiProfileId, PhoneNumberId, TenantId, TrunkId};

/// The query behind every route: a number, its tenant, and the profile that answers it.
macro_rules! route_query {
    () => {
        "SELECT n.id AS phone_number_id, n.tenant_id, n.did_number, n.is_active, n.trunk_id, \
           COALESCE(n.ai_profile_id, d.id) AS ai_profile_id, t.status AS tenant_status, \
           t.max_concurrent_calls \
         FROM phone_numbers n \
         JOIN tenants t ON t.id = n.tenant_id \
         LEFT JOIN ai_profiles d ON d.tenant_id = n.tenant_id AND d.is_default"
    };
}

/// Everything routing needs to know about one DID.
#[derive(Debug, Clone, PartialEq, FromRow)]
pub struct Route {
    pub phone_number_id: PhoneNumberId,
    pub tenant_id: TenantId,
    pub did_number: String,
    pub is_active: bool,
    pub trunk_id: Option<TrunkId>,
    /// The number's profile, or else the tenant's default.
    pub ai_profile_id: Option<AiProfileId>,
    pub tenant_status: TenantStatus,
    pub max_concurrent_calls: i64,
}

impl Store {
    /// The route of every number of every tenant.
    pub async fn routes(&self) -> Result<Vec<Route>> {
        const SQL: &str = concat!(route_query!(), "");
        on_pool!(self, |pool| sqlx::query_as(SQL).fetch_all(pool).await).map_err(StoreError::from)
    }

    /// The route of one number (in canonical E.164 form), if the number exists.
    pub async fn route(&self, did: &str) -> Result<Option<Route>> {
        const SQL: &str = concat!(route_query!(), " WHERE n.did_number = $1");
        on_pool!(self, |pool| sqlx::query_as(SQL)
            .bind(did)
            .fetch_optional(pool)
            .await)
        .map_err(StoreError::from)
    }
}
