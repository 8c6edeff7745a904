//! `/api/tenants/{tenant_id}/calls`: call records (CDRs) and their timelines.

use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::extract::{ApiPath, ApiQuery, Principal};
use super::views::{Call, CallEvent};
use super::{AppState, List, Problem, TenantPath};
use crate::ids::{CallId, TenantId};
use crate::media::recorder::recording_path;
use crate::store::CallFilter;
use crate::store::model::{self, CallStatus, Direction, RecordingStatus};

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

/// A WAV file's bytes, as the OpenAPI document names them (the handler streams the file).
#[derive(ToSchema)]
#[schema(value_type = String, format = Binary)]
#[allow(dead_code)] // read only by the OpenAPI document
pub struct WavFile(Vec<u8>);

/// The call's recording if it can be served, or the 404 that says why not.
async fn ready_recording(
    state: &AppState,
    tenant_id: TenantId,
    call_id: CallId,
) -> Result<model::Call, Problem> {
    let call = state.store.call(tenant_id, call_id).await?;
    match call.recording_status {
        Some(RecordingStatus::Ready) => Ok(call),
        None => Err(Problem::not_found_because("the call is not recorded")),
        Some(RecordingStatus::Recording) => Err(Problem::not_found_because(
            "the recording is not ready yet: the call is still going on",
        )),
        Some(RecordingStatus::Failed) => Err(Problem::not_found_because(
            "the recording failed; the call record says why",
        )),
        Some(RecordingStatus::Deleted) => {
            Err(Problem::not_found_because("the recording was deleted"))
        }
    }
}

/// The file went missing under a record that says it is there (another node recorded the
/// call, or it was removed by hand).
fn missing_file(e: &std::io::Error) -> Problem {
    tracing::warn!(error = %e, "a ready recording's file cannot be read");
    Problem::not_found_because("the recording's file is not on this node")
}

#[utoipa::path(get, path = "/api/tenants/{tenant_id}/calls/{call_id}/recording",
    params(("tenant_id" = TenantId, Path), ("call_id" = CallId, Path)),
    responses((status = 200, description = "The call's recording: a stereo WAV (PCM 16-bit, \
               8 kHz), the caller on the left channel and the agent on the right.",
               content_type = "audio/wav", body = WavFile),
              (status = 404, body = Problem)))]
pub async fn recording(
    State(state): State<AppState>,
    principal: Principal,
    ApiPath(path): ApiPath<CallPath>,
) -> Result<Response, Problem> {
    let tenant_id = principal.scope(path.tenant_id)?;
    let call = ready_recording(&state, tenant_id, path.call_id).await?;
    let file = recording_path(&state.recordings, call.tenant_id, call.id);
    let file = tokio::fs::File::open(&file)
        .await
        .map_err(|e| missing_file(&e))?;
    let len = file.metadata().await.map_err(|e| missing_file(&e))?.len();
    let body = Body::from_stream(tokio_util::io::ReaderStream::new(file));
    Ok((
        [
            (header::CONTENT_TYPE, "audio/wav".to_owned()),
            (header::CONTENT_LENGTH, len.to_string()),
        ],
        body,
    )
        .into_response())
}

#[utoipa::path(delete, path = "/api/tenants/{tenant_id}/calls/{call_id}/recording",
    params(("tenant_id" = TenantId, Path), ("call_id" = CallId, Path)),
    responses((status = 204, description = "The file is removed and the recording marked deleted."),
              (status = 404, body = Problem)))]
pub async fn delete_recording(
    State(state): State<AppState>,
    principal: Principal,
    ApiPath(path): ApiPath<CallPath>,
) -> Result<StatusCode, Problem> {
    let tenant_id = principal.scope(path.tenant_id)?;
    let call = ready_recording(&state, tenant_id, path.call_id).await?;
    if !state.store.delete_recording(tenant_id, call.id).await? {
        // Deleted by another request in between.
        return Err(Problem::not_found_because("the recording was deleted"));
    }
    let file = recording_path(&state.recordings, call.tenant_id, call.id);
    match tokio::fs::remove_file(&file).await {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            tracing::warn!(file = %file.display(), "a deleted recording's file was already gone");
        }
        Err(e) => {
            tracing::error!(error = %e, file = %file.display(), "a deleted recording's file cannot be removed");
            return Err(Problem::internal());
        }
    }
    Ok(StatusCode::NO_CONTENT)
}
