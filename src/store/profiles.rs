//! AI profiles: how a tenant's agent behaves, and how a call reaches it. At most one per
//! tenant is the default, a rule the database enforces with a partial unique index.
//!
//! A profile's stream auth token is written here and never read back with the profile:
//! the rows say only whether one is set. It leaves the store with the routes
//! ([`Store::routes`]), for the call path that presents it to the agent.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use sqlx::types::Json;

use super::model::{AiProfile, MediaTarget, Role, StreamProtocol};
use super::{Page, Result, Store, StoreError, on_pool, stamp};
use crate::ids::{AiProfileId, TenantId};

/// The columns every query returns, in the row type's order (never the token itself).
macro_rules! columns {
    () => {
        "id, tenant_id, name, role, system_prompt, is_default, created_at, media_target, \
         stream_url, stream_protocol, (stream_auth_token IS NOT NULL) AS stream_auth_token_set, \
         stream_parameters, stream_ca_pem, stream_connect_timeout_ms, max_queued_audio_ms, \
         record"
    };
}

/// A stream auth token as given: it never appears in a log or a debug print.
#[derive(Clone, PartialEq, Eq)]
pub struct StreamToken(pub String);

impl std::fmt::Debug for StreamToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StreamToken(..)")
    }
}

/// How a profile's calls reach the agent, as written. Bounds and shapes are the API's to
/// check; the database refuses what breaks its own rules (an unknown target or protocol, a
/// stream without a URL, a URL that is not `ws://` or `wss://`, a parameter that is not a
/// string, a timeout or queue outside its bounds).
#[derive(Debug, Clone, PartialEq)]
pub struct ProfileStream {
    pub media_target: MediaTarget,
    pub stream_url: Option<String>,
    pub stream_protocol: StreamProtocol,
    pub stream_auth_token: Option<StreamToken>,
    pub stream_parameters: BTreeMap<String, String>,
    pub stream_ca_pem: Option<String>,
    pub stream_connect_timeout_ms: i64,
    pub max_queued_audio_ms: i64,
    pub record: bool,
}

impl ProfileStream {
    pub const DEFAULT_CONNECT_TIMEOUT_MS: i64 = 3000;
    pub const DEFAULT_MAX_QUEUED_AUDIO_MS: i64 = 30_000;
}

/// Echo, today's behaviour, with every stream setting at its default.
impl Default for ProfileStream {
    fn default() -> Self {
        ProfileStream {
            media_target: MediaTarget::Echo,
            stream_url: None,
            stream_protocol: StreamProtocol::Twilio,
            stream_auth_token: None,
            stream_parameters: BTreeMap::new(),
            stream_ca_pem: None,
            stream_connect_timeout_ms: Self::DEFAULT_CONNECT_TIMEOUT_MS,
            max_queued_audio_ms: Self::DEFAULT_MAX_QUEUED_AUDIO_MS,
            record: false,
        }
    }
}

/// A profile to add to a tenant.
#[derive(Debug, Clone)]
pub struct NewAiProfile {
    pub name: String,
    pub role: Role,
    pub system_prompt: String,
    pub is_default: bool,
    pub stream: ProfileStream,
}

/// What may change on a profile; `None` leaves a field as it is, and `Some(None)` clears
/// one that may be empty.
#[derive(Debug, Clone, Default)]
pub struct AiProfilePatch {
    pub name: Option<String>,
    pub role: Option<Role>,
    pub system_prompt: Option<String>,
    pub is_default: Option<bool>,
    pub media_target: Option<MediaTarget>,
    pub stream_url: Option<Option<String>>,
    pub stream_protocol: Option<StreamProtocol>,
    pub stream_auth_token: Option<Option<StreamToken>>,
    pub stream_parameters: Option<BTreeMap<String, String>>,
    pub stream_ca_pem: Option<Option<String>>,
    pub stream_connect_timeout_ms: Option<i64>,
    pub max_queued_audio_ms: Option<i64>,
    pub record: Option<bool>,
}

/// A nullable column's patch as two parameters: whether to write it, and the value.
fn set_or_keep<T>(patch: Option<Option<T>>) -> (bool, Option<T>) {
    match patch {
        Some(value) => (true, value),
        None => (false, None),
    }
}

/// Clears the tenant's current default, so that a new one can be set in the same
/// transaction.
const UNSET_DEFAULT: &str =
    "UPDATE ai_profiles SET is_default = FALSE WHERE tenant_id = $1 AND is_default AND id <> $2";

/// The columns a profile's CHECK constraints are about, most specific first (the one
/// check that spans columns, a stream's URL, names `stream_url` first).
const CHECKED: &[&str] = &[
    "stream_url",
    "media_target",
    "stream_protocol",
    "stream_auth_token",
    "stream_parameters",
    "stream_ca_pem",
    "stream_connect_timeout_ms",
    "max_queued_audio_ms",
    "system_prompt",
    "name",
    "role",
];

/// A profile write's error: a CHECK violation names its column (PostgreSQL names the
/// constraint after it, SQLite quotes the constraint's expression), the one unique index
/// is about the default.
fn write_error(err: sqlx::Error) -> StoreError {
    if let sqlx::Error::Database(db) = &err
        && db.kind() == sqlx::error::ErrorKind::CheckViolation
    {
        let text = format!("{} {}", db.constraint().unwrap_or_default(), db.message());
        if let Some(field) = CHECKED.iter().find(|field| text.contains(*field)) {
            return StoreError::Invalid(field);
        }
    }
    StoreError::from_sqlx(err, "is_default")
}

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
            "INSERT INTO ai_profiles (id, tenant_id, name, role, system_prompt, is_default, \
             created_at, media_target, stream_url, stream_protocol, stream_auth_token, \
             stream_parameters, stream_ca_pem, stream_connect_timeout_ms, max_queued_audio_ms, \
             record) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, \
             $16) RETURNING ",
            columns!()
        );
        let stream = &new.stream;
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
                .bind(stream.media_target)
                .bind(&stream.stream_url)
                .bind(stream.stream_protocol)
                .bind(stream.stream_auth_token.as_ref().map(|t| t.0.as_str()))
                .bind(Json(&stream.stream_parameters))
                .bind(&stream.stream_ca_pem)
                .bind(stream.stream_connect_timeout_ms)
                .bind(stream.max_queued_audio_ms)
                .bind(stream.record)
                .fetch_one(&mut *tx)
                .await
                .map_err(write_error)?;
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
               is_default = COALESCE($6, is_default), \
               media_target = COALESCE($7, media_target), \
               stream_url = CASE WHEN $8 THEN $9 ELSE stream_url END, \
               stream_protocol = COALESCE($10, stream_protocol), \
               stream_auth_token = CASE WHEN $11 THEN $12 ELSE stream_auth_token END, \
               stream_parameters = COALESCE($13, stream_parameters), \
               stream_ca_pem = CASE WHEN $14 THEN $15 ELSE stream_ca_pem END, \
               stream_connect_timeout_ms = COALESCE($16, stream_connect_timeout_ms), \
               max_queued_audio_ms = COALESCE($17, max_queued_audio_ms), \
               record = COALESCE($18, record) \
             WHERE tenant_id = $1 AND id = $2 RETURNING ",
            columns!()
        );
        let (set_url, url) = set_or_keep(patch.stream_url);
        let (set_token, token) = set_or_keep(patch.stream_auth_token);
        let token = token.map(|t| t.0);
        let (set_ca, ca) = set_or_keep(patch.stream_ca_pem);
        let parameters = patch.stream_parameters.map(Json);
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
                .bind(&patch.name)
                .bind(patch.role)
                .bind(&patch.system_prompt)
                .bind(patch.is_default)
                .bind(patch.media_target)
                .bind(set_url)
                .bind(&url)
                .bind(patch.stream_protocol)
                .bind(set_token)
                .bind(&token)
                .bind(&parameters)
                .bind(set_ca)
                .bind(&ca)
                .bind(patch.stream_connect_timeout_ms)
                .bind(patch.max_queued_audio_ms)
                .bind(patch.record)
                .fetch_optional(&mut *tx)
                .await
                .map_err(write_error)?
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
