//! Errors as `application/problem+json` (RFC 9457): every failure of the API answers with
//! `{"type","title","status","detail","field"}`, and nothing internal leaks into it.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use crate::store::StoreError;

/// A problem report.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Problem {
    /// A URI naming the kind of problem.
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub title: &'static str,
    pub status: u16,
    pub detail: String,
    /// The request field at fault, when one is.
    pub field: Option<String>,
}

impl Problem {
    fn new(status: StatusCode, kind: &'static str, title: &'static str, detail: String) -> Self {
        Problem {
            kind,
            title,
            status: status.as_u16(),
            detail,
            field: None,
        }
    }

    /// A request value is wrong; `field` names it.
    pub fn invalid(field: impl Into<String>, detail: impl Into<String>) -> Self {
        Problem {
            field: Some(field.into()),
            ..Problem::new(
                StatusCode::BAD_REQUEST,
                "/problems/invalid-request",
                "Invalid request",
                detail.into(),
            )
        }
    }

    /// The request body or query cannot be read at all (no single field at fault).
    pub fn malformed(detail: impl Into<String>) -> Self {
        Problem::new(
            StatusCode::BAD_REQUEST,
            "/problems/invalid-request",
            "Invalid request",
            detail.into(),
        )
    }

    pub fn unauthorized() -> Self {
        Problem::new(
            StatusCode::UNAUTHORIZED,
            "/problems/unauthorized",
            "Unauthorized",
            "a valid `Authorization: Bearer <token>` header is required".to_owned(),
        )
    }

    pub fn forbidden(detail: impl Into<String>) -> Self {
        Problem::new(
            StatusCode::FORBIDDEN,
            "/problems/forbidden",
            "Forbidden",
            detail.into(),
        )
    }

    pub fn not_found() -> Self {
        Problem::new(
            StatusCode::NOT_FOUND,
            "/problems/not-found",
            "Not found",
            "no such resource".to_owned(),
        )
    }

    /// Not found, saying why (the resource exists in some form, but not as asked).
    pub fn not_found_because(detail: impl Into<String>) -> Self {
        Problem::new(
            StatusCode::NOT_FOUND,
            "/problems/not-found",
            "Not found",
            detail.into(),
        )
    }

    pub fn conflict(field: &str) -> Self {
        Problem {
            field: Some(field.to_owned()),
            ..Problem::new(
                StatusCode::CONFLICT,
                "/problems/conflict",
                "Conflict",
                format!("a resource with this {field} already exists"),
            )
        }
    }

    pub fn too_large(detail: impl Into<String>) -> Self {
        Problem::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "/problems/too-large",
            "Request body too large",
            detail.into(),
        )
    }

    pub fn unsupported_media_type() -> Self {
        Problem::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "/problems/unsupported-media-type",
            "Unsupported media type",
            "send the body as application/json".to_owned(),
        )
    }

    pub fn unavailable() -> Self {
        Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "/problems/unavailable",
            "Service unavailable",
            "the database is unreachable; retry later".to_owned(),
        )
    }

    /// The SDP offer's audio has no codec vca-sip answers with (PCMU, PCMA).
    pub fn no_common_codec() -> Self {
        Problem {
            field: Some("sdp".to_owned()),
            ..Problem::new(
                StatusCode::BAD_REQUEST,
                "/problems/no-common-codec",
                "No common codec",
                "the offer's audio has neither PCMU nor PCMA".to_owned(),
            )
        }
    }

    /// A limit of the caller's (a tenant's concurrent calls) is reached.
    pub fn too_many(detail: impl Into<String>) -> Self {
        Problem::new(
            StatusCode::TOO_MANY_REQUESTS,
            "/problems/limit-reached",
            "Limit reached",
            detail.into(),
        )
    }

    /// The node cannot take more now (media ports, its store); `Retry-After` says when.
    pub fn overloaded(detail: impl Into<String>) -> Self {
        Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "/problems/overloaded",
            "Overloaded",
            detail.into(),
        )
    }

    /// What the request needs beyond vca-sip (a tenant's agent) did not answer.
    pub fn agent_unreachable(detail: impl Into<String>) -> Self {
        Problem::new(
            StatusCode::BAD_GATEWAY,
            "/problems/agent-unreachable",
            "Agent unreachable",
            detail.into(),
        )
    }

    pub fn internal() -> Self {
        Problem::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "/problems/internal",
            "Internal error",
            "the request could not be completed".to_owned(),
        )
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut response = (status, axum::Json(&self)).into_response();
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        if status == StatusCode::SERVICE_UNAVAILABLE {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
        }
        response
    }
}

impl From<StoreError> for Problem {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::NotFound => Problem::not_found(),
            StoreError::Conflict(field) => Problem::conflict(field),
            StoreError::Invalid(field) => {
                Problem::invalid(field, format!("{field} is not acceptable here"))
            }
            StoreError::Unavailable(e) => {
                tracing::warn!(error = %e, "database unavailable");
                Problem::unavailable()
            }
            other => {
                tracing::error!(error = %other, "database error");
                Problem::internal()
            }
        }
    }
}
