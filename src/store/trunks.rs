//! SIP trunks: carrier connections owned by the platform or by one tenant, with their
//! source allowlists and digest credentials.
//!
//! A trunk's password is never stored. What is kept is HA1 = H(username:realm:password)
//! for each algorithm the trunk is challenged with (RFC 7616 §3.4.2), in a JSON object
//! keyed by the algorithm's token (`{"SHA-256": "...", "MD5": "..."}`); the realm is the
//! trunk's own. The hashes leave the store only through [`Store::all_enabled_trunks`],
//! for the SIP layer.

use std::collections::HashMap;
use std::fmt;

use chrono::{DateTime, Utc};
use sqlx::types::Json;

use super::model::{Codec, DigestAlgorithm, Trunk, TrunkAuth, TrunkTransport};
use super::{Page, Result, Store, StoreError, on_pool, stamp};
use crate::ids::{TenantId, TrunkId};

/// The columns every query returns, in the row type's order (never the hashes).
macro_rules! columns {
    () => {
        "id, tenant_id, name, provider, transport, host, port, allowed_cidrs, auth, realm, \
         username, digest_algorithms, max_concurrent_calls, default_country_code, codecs, \
         enabled, created_at, require_client_cert"
    };
}

/// Restricts a query to one owner's trunks: `$2` is the tenant, or null for the platform.
macro_rules! owned_by {
    () => {
        "(tenant_id = $2 OR ($2 IS NULL AND tenant_id IS NULL))"
    };
}

/// The columns a trunk's settings are written to, in [`bind_settings!`]'s order.
macro_rules! settings_columns {
    () => {
        "name, provider, transport, host, port, allowed_cidrs, auth, realm, username, \
         digest_algorithms, max_concurrent_calls, default_country_code, codecs, enabled, \
         require_client_cert, ha1"
    };
}

/// Binds a [`TrunkSettings`] to the next 16 parameters, in [`settings_columns!`]'s order.
macro_rules! bind_settings {
    ($query:expr, $s:expr) => {
        $query
            .bind(&$s.name)
            .bind(&$s.provider)
            .bind($s.transport)
            .bind(&$s.host)
            .bind($s.port)
            .bind(Json(&$s.allowed_cidrs))
            .bind($s.auth)
            .bind(&$s.realm)
            .bind(&$s.username)
            .bind(Json(&$s.digest_algorithms))
            .bind($s.max_concurrent_calls)
            .bind(&$s.default_country_code)
            .bind(Json(&$s.codecs))
            .bind($s.enabled)
            .bind($s.require_client_cert)
            .bind(Json($s.ha1.to_json()))
    };
}

/// A write's error, where the one uniqueness rule of trunks (another trunk has this realm
/// and username) names `username`; other constraint errors name `field`.
fn identity_conflict(e: sqlx::Error, field: &'static str) -> StoreError {
    match StoreError::from_sqlx(e, field) {
        StoreError::Conflict(_) => StoreError::Conflict("username"),
        other => other,
    }
}

/// Who owns a trunk; every query on trunks is filtered by it, so that one owner cannot
/// reach another's trunks by id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrunkOwner {
    /// The platform: a carrier trunk that may carry many tenants' numbers.
    Platform,
    /// One tenant's own carrier (bring your own carrier).
    Tenant(TenantId),
}

impl TrunkOwner {
    fn tenant(self) -> Option<TenantId> {
        match self {
            TrunkOwner::Platform => None,
            TrunkOwner::Tenant(tenant) => Some(tenant),
        }
    }
}

/// A trunk's HA1 hashes, in the trunk's challenge order. Its `Debug` shows only which
/// algorithms are present: a hash is as good as the password to a digest client.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Ha1Set(Vec<(DigestAlgorithm, String)>);

impl Ha1Set {
    /// HA1 = H(username:realm:password) for each of `algorithms`, as lower-case hex.
    pub fn compute(
        algorithms: &[DigestAlgorithm],
        username: &str,
        realm: &str,
        password: &str,
    ) -> Self {
        Ha1Set(
            algorithms
                .iter()
                .map(|&a| (a, a.ha1(username, realm, password)))
                .collect(),
        )
    }

    /// The hash for `algorithm`, when one is stored.
    pub fn get(&self, algorithm: DigestAlgorithm) -> Option<&str> {
        self.0
            .iter()
            .find(|(a, _)| *a == algorithm)
            .map(|(_, h)| h.as_str())
    }

    /// Whether a hash is stored for every one of `algorithms`.
    pub fn covers(&self, algorithms: &[DigestAlgorithm]) -> bool {
        algorithms.iter().all(|&a| self.get(a).is_some())
    }

    /// The hashes of `algorithms` only, in that order.
    pub fn restricted_to(&self, algorithms: &[DigestAlgorithm]) -> Self {
        Ha1Set(
            algorithms
                .iter()
                .filter_map(|&a| self.get(a).map(|h| (a, h.to_owned())))
                .collect(),
        )
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub(super) fn to_json(&self) -> HashMap<&'static str, &str> {
        self.0
            .iter()
            .map(|(a, h)| (a.as_str(), h.as_str()))
            .collect()
    }

    /// Reads the stored object back in `order`; keys of no known algorithm are ignored.
    pub(super) fn from_json(map: &HashMap<String, String>, order: &[DigestAlgorithm]) -> Self {
        Ha1Set(
            order
                .iter()
                .filter_map(|&a| map.get(a.as_str()).map(|h| (a, h.clone())))
                .collect(),
        )
    }
}

impl fmt::Debug for Ha1Set {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.0.iter().map(|(a, _)| a.as_str()))
            .finish()
    }
}

/// Every setting of a trunk, already validated: what a create writes and an update
/// replaces whole.
#[derive(Debug, Clone)]
pub struct TrunkSettings {
    pub name: String,
    pub provider: String,
    pub transport: TrunkTransport,
    pub host: Option<String>,
    pub port: Option<i64>,
    pub allowed_cidrs: Vec<String>,
    pub auth: TrunkAuth,
    pub realm: Option<String>,
    pub username: Option<String>,
    pub ha1: Ha1Set,
    pub digest_algorithms: Vec<DigestAlgorithm>,
    pub max_concurrent_calls: Option<i64>,
    pub default_country_code: String,
    pub codecs: Vec<Codec>,
    pub enabled: bool,
    pub require_client_cert: bool,
}

/// A trunk with its HA1 hashes: what the SIP layer needs to admit the trunk's requests.
#[derive(Debug, Clone)]
pub struct TrunkCredentials {
    pub trunk: Trunk,
    pub ha1: Ha1Set,
}

impl TrunkCredentials {
    /// The trunk's settings as they stand, as the start of a change.
    pub fn settings(&self) -> TrunkSettings {
        let t = &self.trunk;
        TrunkSettings {
            name: t.name.clone(),
            provider: t.provider.clone(),
            transport: t.transport,
            host: t.host.clone(),
            port: t.port,
            allowed_cidrs: t.allowed_cidrs.0.clone(),
            auth: t.auth,
            realm: t.realm.clone(),
            username: t.username.clone(),
            ha1: self.ha1.clone(),
            digest_algorithms: t.digest_algorithms.0.clone(),
            max_concurrent_calls: t.max_concurrent_calls,
            default_country_code: t.default_country_code.clone(),
            codecs: t.codecs.0.clone(),
            enabled: t.enabled,
            require_client_cert: t.require_client_cert,
        }
    }
}

#[derive(sqlx::FromRow)]
struct CredentialsRow {
    #[sqlx(flatten)]
    trunk: Trunk,
    ha1: Json<HashMap<String, String>>,
}

impl From<CredentialsRow> for TrunkCredentials {
    fn from(row: CredentialsRow) -> Self {
        let ha1 = Ha1Set::from_json(&row.ha1.0, &row.trunk.digest_algorithms.0);
        TrunkCredentials {
            trunk: row.trunk,
            ha1,
        }
    }
}

impl Store {
    /// Adds a trunk for `owner`, created at `now`.
    pub async fn create_trunk(
        &self,
        owner: TrunkOwner,
        new: TrunkSettings,
        now: DateTime<Utc>,
    ) -> Result<Trunk> {
        const SQL: &str = concat!(
            "INSERT INTO sip_trunks (id, tenant_id, ",
            settings_columns!(),
            ", created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, \
             $15, $16, $17, $18, $19) RETURNING ",
            columns!()
        );
        on_pool!(self, |pool| bind_settings!(
            sqlx::query_as(SQL)
                .bind(TrunkId::new())
                .bind(owner.tenant()),
            new
        )
        .bind(stamp(now))
        .fetch_one(pool)
        .await)
        .map_err(|e| identity_conflict(e, "tenant_id"))
    }

    pub async fn trunk(&self, owner: TrunkOwner, id: TrunkId) -> Result<Trunk> {
        const SQL: &str = concat!(
            "SELECT ",
            columns!(),
            " FROM sip_trunks WHERE id = $1 AND ",
            owned_by!()
        );
        on_pool!(self, |pool| sqlx::query_as(SQL)
            .bind(id)
            .bind(owner.tenant())
            .fetch_optional(pool)
            .await)?
        .ok_or(StoreError::NotFound)
    }

    /// One trunk with its hashes, as the start of a change to it.
    pub async fn trunk_credentials(
        &self,
        owner: TrunkOwner,
        id: TrunkId,
    ) -> Result<TrunkCredentials> {
        const SQL: &str = concat!(
            "SELECT ",
            columns!(),
            ", ha1 FROM sip_trunks WHERE id = $1 AND ",
            owned_by!()
        );
        let row: Option<CredentialsRow> = on_pool!(self, |pool| sqlx::query_as(SQL)
            .bind(id)
            .bind(owner.tenant())
            .fetch_optional(pool)
            .await)?;
        row.map(TrunkCredentials::from).ok_or(StoreError::NotFound)
    }

    pub async fn list_trunks(
        &self,
        owner: TrunkOwner,
        cursor: Option<TrunkId>,
        limit: u32,
    ) -> Result<Page<Trunk, TrunkId>> {
        const SQL: &str = concat!(
            "SELECT ",
            columns!(),
            " FROM sip_trunks WHERE ($1 IS NULL OR id > $1) AND ",
            owned_by!(),
            " ORDER BY id LIMIT $3"
        );
        let rows: Vec<Trunk> = on_pool!(self, |pool| sqlx::query_as(SQL)
            .bind(cursor)
            .bind(owner.tenant())
            .bind(i64::from(limit) + 1)
            .fetch_all(pool)
            .await)?;
        Ok(Page::from_rows(rows, limit, |t| t.id))
    }

    /// Replaces every setting of a trunk. Two concurrent changes to one trunk: the last
    /// one written wins whole, so its hashes always match its username and realm.
    pub async fn update_trunk(
        &self,
        owner: TrunkOwner,
        id: TrunkId,
        new: TrunkSettings,
    ) -> Result<Trunk> {
        const SQL: &str = concat!(
            "UPDATE sip_trunks SET (",
            settings_columns!(),
            ") = ($3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18) \
             WHERE id = $1 AND ",
            owned_by!(),
            " RETURNING ",
            columns!()
        );
        on_pool!(self, |pool| bind_settings!(
            sqlx::query_as(SQL).bind(id).bind(owner.tenant()),
            new
        )
        .fetch_optional(pool)
        .await)
        .map_err(|e| identity_conflict(e, "value"))?
        .ok_or(StoreError::NotFound)
    }

    /// Deletes a trunk. One that phone numbers still name is kept: `Conflict("trunk_id")`.
    pub async fn delete_trunk(&self, owner: TrunkOwner, id: TrunkId) -> Result<()> {
        const OWNED: &str = concat!(
            "SELECT EXISTS (SELECT 1 FROM sip_trunks WHERE id = $1 AND ",
            owned_by!(),
            ")"
        );
        const DELETE: &str = concat!("DELETE FROM sip_trunks WHERE id = $1 AND ", owned_by!());
        on_pool!(self, |pool| {
            let mut tx = pool.begin().await?;
            let (owned,): (bool,) = sqlx::query_as(OWNED)
                .bind(id)
                .bind(owner.tenant())
                .fetch_one(&mut *tx)
                .await?;
            if !owned {
                return Err(StoreError::NotFound);
            }
            let (in_use,): (bool,) =
                sqlx::query_as("SELECT EXISTS (SELECT 1 FROM phone_numbers WHERE trunk_id = $1)")
                    .bind(id)
                    .fetch_one(&mut *tx)
                    .await?;
            if in_use {
                return Err(StoreError::Conflict("trunk_id"));
            }
            sqlx::query(DELETE)
                .bind(id)
                .bind(owner.tenant())
                .execute(&mut *tx)
                .await
                .map_err(|e| match StoreError::from_sqlx(e, "trunk_id") {
                    // A number added meanwhile names the trunk.
                    StoreError::Invalid(field) => StoreError::Conflict(field),
                    other => other,
                })?;
            tx.commit().await?;
            Ok(())
        })
    }

    /// Every enabled trunk, platform and tenant-owned, with its hashes: what the SIP layer
    /// loads to match requests to trunks.
    pub async fn all_enabled_trunks(&self) -> Result<Vec<TrunkCredentials>> {
        const SQL: &str = concat!(
            "SELECT ",
            columns!(),
            ", ha1 FROM sip_trunks WHERE enabled ORDER BY id"
        );
        let rows: Vec<CredentialsRow> =
            on_pool!(self, |pool| sqlx::query_as(SQL).fetch_all(pool).await)?;
        Ok(rows.into_iter().map(TrunkCredentials::from).collect())
    }
}
