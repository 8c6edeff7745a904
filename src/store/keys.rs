//! API keys: tenant-scoped credentials, stored only as a SHA-256 hash.
//!
//! A key is 32 random bytes, so a plain hash is enough to make a stolen table useless
//! (there is no dictionary to run); the lookup stays one indexed query.

use chrono::{DateTime, Utc};
use rand::RngCore;
use sha2::{Digest, Sha256};

use super::model::ApiKey;
use super::{Result, Store, StoreError, on_pool, stamp};
use crate::ids::{ApiKeyId, TenantId};

/// The prefix that makes a vca-sip key recognisable in a leaked-secret scan.
const KEY_PREFIX: &str = "vca_";

/// The stored form of a key.
pub fn hash_api_key(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

fn generate_key() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    format!("{KEY_PREFIX}{}", hex::encode(bytes))
}

impl Store {
    /// Creates a key for `tenant` at `now` and returns it in clear, the only time it is seen.
    pub async fn create_api_key(
        &self,
        tenant: TenantId,
        now: DateTime<Utc>,
    ) -> Result<(ApiKeyId, String)> {
        let id = ApiKeyId::new();
        let key = generate_key();
        on_pool!(self, |pool| sqlx::query(
            "INSERT INTO api_keys (id, tenant_id, key_hash, created_at) VALUES ($1, $2, $3, $4)"
        )
        .bind(id)
        .bind(tenant)
        .bind(hash_api_key(&key))
        .bind(stamp(now))
        .execute(pool)
        .await
        .map(|_| ()))
        .map_err(|e| StoreError::from_sqlx(e, "tenant_id"))?;
        Ok((id, key))
    }

    /// Revokes one of `tenant`'s keys at `now`; its next use fails.
    pub async fn revoke_api_key(
        &self,
        tenant: TenantId,
        id: ApiKeyId,
        now: DateTime<Utc>,
    ) -> Result<()> {
        let done = on_pool!(self, |pool| sqlx::query(
            "UPDATE api_keys SET revoked_at = $3 \
             WHERE tenant_id = $1 AND id = $2 AND revoked_at IS NULL"
        )
        .bind(tenant)
        .bind(id)
        .bind(stamp(now))
        .execute(pool)
        .await
        .map(|r| r.rows_affected()))?;
        if done == 1 {
            Ok(())
        } else {
            Err(StoreError::NotFound)
        }
    }

    /// The live key with this hash, if any; keys of deleted tenants are dead.
    pub async fn api_key_by_hash(&self, key_hash: &str) -> Result<Option<ApiKey>> {
        on_pool!(self, |pool| sqlx::query_as(
            "SELECT k.id, k.tenant_id, k.created_at, k.revoked_at FROM api_keys k \
             JOIN tenants t ON t.id = k.tenant_id \
             WHERE k.key_hash = $1 AND k.revoked_at IS NULL AND t.status <> 'deleted'"
        )
        .bind(key_hash)
        .fetch_optional(pool)
        .await)
        .map_err(StoreError::from)
    }
}
