//! `/api/tenants/{tenant_id}/calls`: call records (CDRs) and their timelines.

use axum::Json;
use axum::extract::State;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::extract::{ApiPath, ApiQuery, Principal};
use super::views::{Call, CallEvent};
use super::{AppState, List, Problem, TenantPath};
use crate::ids::{CallId, TenantId};
use crate::store::CallFilter;
use crate::store::model::{CallStatus, Direction};

/// `?status=&direction=&from=&to=&cursor=&limit=`; newest first.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CallQuery {
    pub status: Option<CallStatus>,
    pub direction: Option<Direction>,
    /// Calls started at or after this instant (RFC 3339).
    pub from: Option<DateTime<Utc>>,
    /// Calls started before this instant (RFC 3339).
    pub to: Option<DateTime<Utc>>,
    pub cursor: Option<CallId>,
    pub limit: Option<u32>,
}

/// A call with its timeline.
#[derive(Debug, Serialize, ToSchema)]
pub struct CallWithEvents {
    #[serde(flatten)]
    pub call: Call,
    pub events: Vec<CallEvent>,
}

#[derive(Debug, Deserialize)]
pub struct CallPath {
    pub tenant_id: TenantId,
    pub call_id: CallId,
}

#[utoipa::path(get, path = "/api/tenants/{tenant_id}/calls",
    params(("tenant_id" = TenantId, Path), ("status" = Option<CallStatus>, Query),
           ("direction" = Option<Direction>, Query), ("from" = Option<String>, Query),
           ("to" = Option<String>, Query), ("cursor" = Option<String>, Query),
           ("limit" = Option<u32>, Query)),
    responses((status = 200, body = List<Call>), (status = 400, body = Problem), (status = 404, body = Problem)))]
pub async fn list(
    State(state): State<AppState>,
    principal: Principal,
    ApiPath(TenantPath { tenant_id }): ApiPath<TenantPath>,
    ApiQuery(query): ApiQuery<CallQuery>,
) -> Result<Json<List<Call>>, Problem> {
    let tenant_id = principal.scope(tenant_id)?;
    state.store.tenant(tenant_id).await?;
    let limit = super::ListQuery::<CallId> {
        cursor: None,
        limit: query.limit,
    }
    .limit()?;
    let filter = CallFilter {
        status: query.status,
        direction: query.direction,
        since: query.from,
        until: query.to,
    };
    let page = state
        .store
        .list_calls(tenant_id, &filter, query.cursor, limit)
        .await?;
    Ok(Json(page.into()))
}

#[utoipa::path(get, path = "/api/tenants/{tenant_id}/calls/{call_id}",
    params(("tenant_id" = TenantId, Path), ("call_id" = CallId, Path)),
    responses((status = 200, body = CallWithEvents), (status = 404, body = Problem)))]
pub async fn get(
    State(state): State<AppState>,
    principal: Principal,
    ApiPath(path): ApiPath<CallPath>,
) -> Result<Json<CallWithEvents>, Problem> {
    let tenant_id = principal.scope(path.tenant_id)?;
    let call = state.store.call(tenant_id, path.call_id).await?;
    let events = state.store.call_events(tenant_id, path.call_id).await?;
    Ok(Json(CallWithEvents {
        call: call.into(),
        events: events.into_iter().map(CallEvent::from).collect(),
    }))
}
