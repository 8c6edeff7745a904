//! Agents: a tenant's people who answer calls in a browser over SIP WebSocket.
//!
//! An agent's password is never stored. What is kept is HA1 = H(username:realm:password)
//! for MD5 and SHA-256 (RFC 7616 §3.4.2), with the tenant's `sip_domain` as the realm, in a
//! JSON object keyed by the algorithm's token. The hashes leave the store only through
//! [`Store::agent_credentials`], for the registrar.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use sqlx::types::Json;

use super::model::{Agent, DigestAlgorithm};
use super::{Ha1Set, Page, Result, Store, StoreError, on_pool, stamp};
use crate::ids::{AgentId, TenantId};

/// The columns every query returns, in the row type's order (never the hashes).
macro_rules! columns {
    () => {
        "id, tenant_id, username, display_name, created_at, updated_at"
    };
}

/// The algorithms an agent is challenged with, in the order the challenges are offered:
/// MD5 first, since browser clients answer only the first challenge and only MD5.
pub const AGENT_DIGEST_ALGORITHMS: [DigestAlgorithm; 2] =
    [DigestAlgorithm::Md5, DigestAlgorithm::Sha256];

/// A new agent, already validated; `ha1` is computed for the tenant's `sip_domain`.
#[derive(Debug, Clone)]
pub struct NewAgent {
    pub username: String,
    pub display_name: Option<String>,
    pub ha1: Ha1Set,
}

/// The fields of an agent that may change; `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct AgentPatch {
    /// `Some(None)` clears the display name.
    pub display_name: Option<Option<String>>,
    pub ha1: Option<Ha1Set>,
}

/// What the registrar needs to check an agent's digest response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentCredentials {
    pub tenant_id: TenantId,
    pub agent_id: AgentId,
    /// In [`AGENT_DIGEST_ALGORITHMS`] order.
    pub ha1: Ha1Set,
}

/// A row of [`Store::agent_credentials`]: tenant, agent and the stored hashes.
type CredentialsRow = (TenantId, AgentId, Json<HashMap<String, String>>);

/// A write's error, where the one uniqueness rule of agents (another agent of the tenant
/// has this username) names `username`.
fn username_conflict(e: sqlx::Error) -> StoreError {
    match StoreError::from_sqlx(e, "agent") {
        StoreError::Conflict(_) => StoreError::Conflict("username"),
        other => other,
    }
}

impl Store {
    /// Adds an agent to `tenant`, created (and last updated) at `now`.
    pub async fn create_agent(
        &self,
        tenant: TenantId,
        new: NewAgent,
        now: DateTime<Utc>,
    ) -> Result<Agent> {
        const SQL: &str = concat!(
            "INSERT INTO agents (",
            columns!(),
            ", ha1) VALUES ($1, $2, $3, $4, $5, $5, $6) RETURNING ",
            columns!()
        );
        on_pool!(self, |pool| sqlx::query_as(SQL)
            .bind(AgentId::new())
            .bind(tenant)
            .bind(&new.username)
            .bind(&new.display_name)
            .bind(stamp(now))
            .bind(Json(new.ha1.to_json()))
            .fetch_one(pool)
            .await)
        .map_err(username_conflict)
    }

    pub async fn agent(&self, tenant: TenantId, id: AgentId) -> Result<Agent> {
        const SQL: &str = concat!(
            "SELECT ",
            columns!(),
            " FROM agents WHERE tenant_id = $1 AND id = $2"
        );
        on_pool!(self, |pool| sqlx::query_as(SQL)
            .bind(tenant)
            .bind(id)
            .fetch_optional(pool)
            .await)?
        .ok_or(StoreError::NotFound)
    }

    pub async fn list_agents(
        &self,
        tenant: TenantId,
        cursor: Option<AgentId>,
        limit: u32,
    ) -> Result<Page<Agent, AgentId>> {
        const SQL: &str = concat!(
            "SELECT ",
            columns!(),
            " FROM agents WHERE tenant_id = $1 AND ($2 IS NULL OR id > $2) \
             ORDER BY id LIMIT $3"
        );
        let rows: Vec<Agent> = on_pool!(self, |pool| sqlx::query_as(SQL)
            .bind(tenant)
            .bind(cursor)
            .bind(i64::from(limit) + 1)
            .fetch_all(pool)
            .await)?;
        Ok(Page::from_rows(rows, limit, |a| a.id))
    }

    /// Changes an agent, updated at `now`.
    pub async fn update_agent(
        &self,
        tenant: TenantId,
        id: AgentId,
        patch: AgentPatch,
        now: DateTime<Utc>,
    ) -> Result<Agent> {
        const SQL: &str = concat!(
            "UPDATE agents SET \
               display_name = CASE WHEN $3 THEN $4 ELSE display_name END, \
               ha1 = COALESCE($5, ha1), \
               updated_at = $6 \
             WHERE tenant_id = $1 AND id = $2 RETURNING ",
            columns!()
        );
        let (set_name, name) = match patch.display_name {
            Some(name) => (true, name),
            None => (false, None),
        };
        let ha1 = patch.ha1.as_ref().map(|h| Json(h.to_json()));
        on_pool!(self, |pool| sqlx::query_as(SQL)
            .bind(tenant)
            .bind(id)
            .bind(set_name)
            .bind(&name)
            .bind(&ha1)
            .bind(stamp(now))
            .fetch_optional(pool)
            .await)
        .map_err(username_conflict)?
        .ok_or(StoreError::NotFound)
    }

    pub async fn delete_agent(&self, tenant: TenantId, id: AgentId) -> Result<()> {
        let deleted = on_pool!(self, |pool| sqlx::query(
            "DELETE FROM agents WHERE tenant_id = $1 AND id = $2"
        )
        .bind(tenant)
        .bind(id)
        .execute(pool)
        .await
        .map(|done| done.rows_affected()))?;
        if deleted == 1 {
            Ok(())
        } else {
            Err(StoreError::NotFound)
        }
    }

    /// How many agents `tenant` has.
    pub async fn count_agents(&self, tenant: TenantId) -> Result<i64> {
        let (count,): (i64,) = on_pool!(self, |pool| sqlx::query_as(
            "SELECT COUNT(*) FROM agents WHERE tenant_id = $1"
        )
        .bind(tenant)
        .fetch_one(pool)
        .await)?;
        Ok(count)
    }

    /// The hashes of the agent `username` of the tenant whose SIP domain is `sip_domain`
    /// (compared without regard to case), for the registrar; `None` when there is none.
    pub async fn agent_credentials(
        &self,
        sip_domain: &str,
        username: &str,
    ) -> Result<Option<AgentCredentials>> {
        const SQL: &str = "SELECT a.tenant_id, a.id, a.ha1 FROM agents a \
             JOIN tenants t ON t.id = a.tenant_id \
             WHERE t.sip_domain = $1 AND a.username = $2";
        let row: Option<CredentialsRow> = on_pool!(self, |pool| sqlx::query_as(SQL)
            .bind(sip_domain.to_ascii_lowercase())
            .bind(username)
            .fetch_optional(pool)
            .await)?;
        Ok(row.map(|(tenant_id, agent_id, ha1)| AgentCredentials {
            tenant_id,
            agent_id,
            ha1: Ha1Set::from_json(&ha1.0, &AGENT_DIGEST_ALGORITHMS),
        }))
    }
}
