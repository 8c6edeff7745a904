//! Secrets shared by every node of a deployment, created by whichever node needs one first.

use chrono::{DateTime, Utc};
use rand::RngCore;

use super::{Result, Store, StoreError, on_pool, stamp};

impl Store {
    /// The secret called `name`: 32 random bytes, created on first use and the same for
    /// every node and restart afterwards (a concurrent first use keeps one of them); `now`
    /// stamps a created one.
    pub async fn node_secret(&self, name: &str, now: DateTime<Utc>) -> Result<Vec<u8>> {
        let mut fresh = [0u8; 32];
        rand::rng().fill_bytes(&mut fresh);
        let fresh = hex::encode(fresh);
        let created = stamp(now);
        let value: String = on_pool!(self, |pool| {
            sqlx::query(
                "INSERT INTO node_secrets (name, value, created_at) VALUES ($1, $2, $3) \
                 ON CONFLICT (name) DO NOTHING",
            )
            .bind(name)
            .bind(&fresh)
            .bind(created)
            .execute(pool)
            .await?;
            sqlx::query_scalar("SELECT value FROM node_secrets WHERE name = $1")
                .bind(name)
                .fetch_one(pool)
                .await
        })?;
        hex::decode(&value).map_err(|_| StoreError::Invalid("node_secrets.value"))
    }

    /// How many trunks exist, enabled or not.
    pub async fn trunk_count(&self) -> Result<i64> {
        let count: i64 = on_pool!(self, |pool| {
            sqlx::query_scalar("SELECT COUNT(*) FROM sip_trunks")
                .fetch_one(pool)
                .await
        })?;
        Ok(count)
    }
}
