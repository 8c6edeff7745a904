//! Phone numbers (DIDs): each E.164 number belongs to exactly one tenant.

use chrono::{DateTime, Utc};

use super::model::{PhoneNumber, ProviderType};
use super::{Page, Result, Store, StoreError, on_pool, stamp};
use crate::ids::{AiProfileId, Did, PhoneNumberId, TenantId, TrunkId};

/// The columns every query returns, in the row type's order.
macro_rules! columns {
    () => {
        "id, tenant_id, did_number, provider_type, trunk_id, ai_profile_id, is_active, created_at"
    };
}

/// A number to add to a tenant.
#[derive(Debug, Clone)]
pub struct NewPhoneNumber {
    pub did: Did,
    pub provider_type: ProviderType,
    pub trunk_id: Option<TrunkId>,
    pub ai_profile_id: Option<AiProfileId>,
    pub is_active: bool,
}

/// What may change on a number; `None` leaves a field as it is, and
/// `ai_profile_id: Some(None)` clears the profile.
#[derive(Debug, Clone, Default)]
pub struct PhoneNumberPatch {
    pub is_active: Option<bool>,
    pub ai_profile_id: Option<Option<AiProfileId>>,
}

impl Store {
    /// Adds a number to `tenant`, created at `now`.
    pub async fn create_phone_number(
        &self,
        tenant: TenantId,
        new: NewPhoneNumber,
        now: DateTime<Utc>,
    ) -> Result<PhoneNumber> {
        const SQL: &str = concat!(
            "INSERT INTO phone_numbers (",
            columns!(),
            ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
             RETURNING ",
            columns!()
        );
        on_pool!(self, |pool| {
            let mut tx = pool.begin().await?;
            if let Some(profile) = new.ai_profile_id {
                let (found,): (bool,) = sqlx::query_as(
                    "SELECT EXISTS (SELECT 1 FROM ai_profiles WHERE tenant_id = $1 AND id = $2)",
                )
                .bind(tenant)
                .bind(profile)
                .fetch_one(&mut *tx)
                .await?;
                if !found {
                    return Err(StoreError::Invalid("ai_profile_id"));
                }
            }
            if let Some(trunk) = new.trunk_id {
                let (found,): (bool,) = sqlx::query_as(
                    "SELECT EXISTS (SELECT 1 FROM sip_trunks                      WHERE id = $1 AND (tenant_id IS NULL OR tenant_id = $2))",
                )
                .bind(trunk)
                .bind(tenant)
                .fetch_one(&mut *tx)
                .await?;
                if !found {
                    return Err(StoreError::Invalid("trunk_id"));
                }
            }
            let row = sqlx::query_as(SQL)
                .bind(PhoneNumberId::new())
                .bind(tenant)
                .bind(new.did.as_str())
                .bind(new.provider_type)
                .bind(new.trunk_id)
                .bind(new.ai_profile_id)
                .bind(new.is_active)
                .bind(stamp(now))
                .fetch_one(&mut *tx)
                .await
                .map_err(|e| StoreError::from_sqlx(e, "did_number"))?;
            tx.commit().await?;
            Ok(row)
        })
    }

    pub async fn phone_number(&self, tenant: TenantId, id: PhoneNumberId) -> Result<PhoneNumber> {
        const SQL: &str = concat!(
            "SELECT ",
            columns!(),
            " FROM phone_numbers WHERE tenant_id = $1 AND id = $2"
        );
        on_pool!(self, |pool| sqlx::query_as(SQL)
            .bind(tenant)
            .bind(id)
            .fetch_optional(pool)
            .await)?
        .ok_or(StoreError::NotFound)
    }

    pub async fn list_phone_numbers(
        &self,
        tenant: TenantId,
        cursor: Option<PhoneNumberId>,
        limit: u32,
    ) -> Result<Page<PhoneNumber, PhoneNumberId>> {
        const SQL: &str = concat!(
            "SELECT ",
            columns!(),
            " FROM phone_numbers WHERE tenant_id = $1 AND ($2 IS NULL OR id > $2) \
             ORDER BY id LIMIT $3"
        );
        let rows: Vec<PhoneNumber> = on_pool!(self, |pool| sqlx::query_as(SQL)
            .bind(tenant)
            .bind(cursor)
            .bind(i64::from(limit) + 1)
            .fetch_all(pool)
            .await)?;
        Ok(Page::from_rows(rows, limit, |n| n.id))
    }

    pub async fn update_phone_number(
        &self,
        tenant: TenantId,
        id: PhoneNumberId,
        patch: PhoneNumberPatch,
    ) -> Result<PhoneNumber> {
        const SQL: &str = concat!(
            "UPDATE phone_numbers SET \
               is_active = COALESCE($3, is_active), \
               ai_profile_id = CASE WHEN $4 THEN $5 ELSE ai_profile_id END \
             WHERE tenant_id = $1 AND id = $2 RETURNING ",
            columns!()
        );
        let (set_profile, profile) = match patch.ai_profile_id {
            Some(profile) => (true, profile),
            None => (false, None),
        };
        on_pool!(self, |pool| sqlx::query_as(SQL)
            .bind(tenant)
            .bind(id)
            .bind(patch.is_active)
            .bind(set_profile)
            .bind(profile)
            .fetch_optional(pool)
            .await)
        .map_err(|e| StoreError::from_sqlx(e, "ai_profile_id"))?
        .ok_or(StoreError::NotFound)
    }

    pub async fn delete_phone_number(&self, tenant: TenantId, id: PhoneNumberId) -> Result<()> {
        let deleted = on_pool!(self, |pool| sqlx::query(
            "DELETE FROM phone_numbers WHERE tenant_id = $1 AND id = $2"
        )
        .bind(tenant)
        .bind(id)
        .execute(pool)
        .await
        .map(|r| r.rows_affected()))?;
        if deleted == 1 {
            Ok(())
        } else {
            Err(StoreError::NotFound)
        }
    }
}
