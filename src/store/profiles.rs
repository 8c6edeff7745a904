//! AI profiles: how a tenant's agent behaves. At most one per tenant is the default, a
//! rule the database enforces with a partial unique index.

use chrono::{DateTime, Utc};

use super::model::{AiProfile, Role};
use super::{Page, Result, Store, StoreError, on_pool, stamp};
use crate::ids::{AiProfileId, TenantId};

/// The columns every query returns, in the row type's order.
macro_rules! columns {
    () => {
        "id, tenant_id, name, role, system_prompt, is_default, created_at"
    };
}

/// A profile to add to a tenant.
#[derive(Debug, Clone)]
pub struct NewAiProfile {
    pub name: String,
    pub role: Role,
    pub system_prompt: String,
    pub is_default: bool,
}

/// What may change on a profile; `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct AiProfilePatch {
    pub name: Option<String>,
    pub role: Option<Role>,
    pub system_prompt: Option<String>,
    pub is_default: Option<bool>,
}

/// Clears the tenant's current default, so that a new one can be set in the same
/// transaction.
const UNSET_DEFAULT: &str =
    "UPDATE ai_profiles SET is_default = FALSE WHERE tenant_id = $1 AND is_default AND id <> $2";

impl Store {
    /// Adds a profile to `tenant`, created at `now`.
    pub async fn create_ai_profile(
        &self,
        tenant: TenantId,
        new: NewAiProfile,
        now: DateTime<Utc>,
    ) -> Result<AiProfile> {
        let id = AiProfileId::new();
        const SQL: &str = concat!(
            "INSERT INTO ai_profiles (",
            columns!(),
            ") VALUES ($1, $2, $3, $4, $5, $6, $7) \
             RETURNING ",
            columns!()
        );
        on_pool!(self, |pool| {
            let mut tx = pool.begin().await?;
            if new.is_default {
                sqlx::query(UNSET_DEFAULT)
                    .bind(tenant)
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
            }
            let row = sqlx::query_as(SQL)
                .bind(id)
                .bind(tenant)
                .bind(&new.name)
                .bind(new.role)
                .bind(&new.system_prompt)
                .bind(new.is_default)
                .bind(stamp(now))
                .fetch_one(&mut *tx)
                .await
                .map_err(|e| StoreError::from_sqlx(e, "is_default"))?;
            tx.commit().await?;
            Ok(row)
        })
    }

    pub async fn ai_profile(&self, tenant: TenantId, id: AiProfileId) -> Result<AiProfile> {
        const SQL: &str = concat!(
            "SELECT ",
            columns!(),
            " FROM ai_profiles WHERE tenant_id = $1 AND id = $2"
        );
        on_pool!(self, |pool| sqlx::query_as(SQL)
            .bind(tenant)
            .bind(id)
            .fetch_optional(pool)
            .await)?
        .ok_or(StoreError::NotFound)
    }

    pub async fn list_ai_profiles(
        &self,
        tenant: TenantId,
        cursor: Option<AiProfileId>,
        limit: u32,
    ) -> Result<Page<AiProfile, AiProfileId>> {
        const SQL: &str = concat!(
            "SELECT ",
            columns!(),
            " FROM ai_profiles WHERE tenant_id = $1 AND ($2 IS NULL OR id > $2) \
             ORDER BY id LIMIT $3"
        );
        let rows: Vec<AiProfile> = on_pool!(self, |pool| sqlx::query_as(SQL)
            .bind(tenant)
            .bind(cursor)
            .bind(i64::from(limit) + 1)
            .fetch_all(pool)
            .await)?;
        Ok(Page::from_rows(rows, limit, |p| p.id))
    }

    pub async fn update_ai_profile(
        &self,
        tenant: TenantId,
        id: AiProfileId,
        patch: AiProfilePatch,
    ) -> Result<AiProfile> {
        const SQL: &str = concat!(
            "UPDATE ai_profiles SET \
               name = COALESCE($3, name), \
               role = COALESCE($4, role), \
               system_prompt = COALESCE($5, system_prompt), \
               is_default = COALESCE($6, is_default) \
             WHERE tenant_id = $1 AND id = $2 RETURNING ",
            columns!()
        );
        on_pool!(self, |pool| {
            let mut tx = pool.begin().await?;
            if patch.is_default == Some(true) {
                sqlx::query(UNSET_DEFAULT)
                    .bind(tenant)
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
            }
            let row = sqlx::query_as(SQL)
                .bind(tenant)
                .bind(id)
                .bind(patch.name)
                .bind(patch.role)
                .bind(patch.system_prompt)
                .bind(patch.is_default)
                .fetch_optional(&mut *tx)
                .await
                .map_err(|e| StoreError::from_sqlx(e, "is_default"))?
                .ok_or(StoreError::NotFound)?;
            tx.commit().await?;
            Ok(row)
        })
    }

    /// Deletes a profile; numbers that used it fall back to the tenant's default.
    pub async fn delete_ai_profile(&self, tenant: TenantId, id: AiProfileId) -> Result<()> {
        on_pool!(self, |pool| {
            let mut tx = pool.begin().await?;
            sqlx::query(
                "UPDATE phone_numbers SET ai_profile_id = NULL \
                 WHERE tenant_id = $1 AND ai_profile_id = $2",
            )
            .bind(tenant)
            .bind(id)
            .execute(&mut *tx)
            .await?;
            let deleted = sqlx::query("DELETE FROM ai_profiles WHERE tenant_id = $1 AND id = $2")
                .bind(tenant)
                .bind(id)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            if deleted != 1 {
                return Err(StoreError::NotFound);
            }
            tx.commit().await?;
            Ok(())
        })
    }
}
