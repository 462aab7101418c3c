//! The native API's errors: one enum, one JSON shape `{code, detail, fields?}`, the right status for each.

use std::time::Duration;

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use convene_core::{ConnectorError, DbError, InstanceId};
use serde::Serialize;

pub type Result<T, E = ApiError> = std::result::Result<T, E>;

/// One bad field of a request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct FieldError {
    /// Where the field is, e.g. `participants[2]`.
    pub field: String,
    pub message: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self { field: field.into(), message: message.into() }
    }
}

/// The body of every error response.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// A stable machine-readable name, e.g. `not_found`, `validation`.
    #[schema(example = "validation")]
    pub code: &'static str,
    /// What went wrong, for people.
    #[schema(example = "1 field is invalid")]
    pub detail: String,
    /// Every bad field, for validation errors.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub fields: Vec<FieldError>,
}

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    #[error("{} field{} invalid", .0.len(), if .0.len() == 1 { " is" } else { "s are" })]
    Validation(Vec<FieldError>),
    #[error("{0}")]
    Unauthorized(&'static str),
    /// The API key is valid but may not do this: a read-only key asked for a change, a key scoped to some
    /// instances asked for something account-wide. `code` says which (`read_only_key`, `account_wide_key_required`).
    #[error("{detail}")]
    Forbidden { code: &'static str, detail: String },
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    MethodNotAllowed(String),
    #[error("{0}")]
    Conflict(String),
    /// A pairing call for an instance that is not waiting to be paired.
    #[error("{0}")]
    NotPairing(String),
    #[error("{0}")]
    PayloadTooLarge(String),
    #[error("{0}")]
    UnsupportedMediaType(String),
    #[error("{detail}")]
    TooManyRequests { detail: String, retry_after: Option<Duration> },
    #[error("{0}")]
    Connector(#[from] ConnectorError),
    /// Anything unexpected: logged in full, answered with an opaque 500.
    #[error("internal error")]
    Internal(#[source] anyhow::Error),
}

impl ApiError {
    pub fn field(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Validation(vec![FieldError::new(field, message)])
    }

    pub fn internal(e: impl Into<anyhow::Error>) -> Self {
        Self::Internal(e.into())
    }

    /// The 404 of an instance that is not there, or that the caller's key does not see (the same answer, so a key
    /// learns nothing of instances outside its scope).
    pub fn no_instance(id: InstanceId) -> Self {
        Self::NotFound(format!("no instance {id}"))
    }

    /// What a store error means for instance `id`: not found is [`ApiError::no_instance`].
    pub fn for_instance(e: DbError, id: InstanceId) -> Self {
        match e {
            DbError::NotFound => Self::no_instance(id),
            other => other.into(),
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::Validation(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Self::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            Self::Forbidden { .. } => StatusCode::FORBIDDEN,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            Self::Conflict(_) | Self::NotPairing(_) => StatusCode::CONFLICT,
            Self::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::Connector(e) => connector_status(e),
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            Self::BadRequest(_) => "bad_request",
            Self::Validation(_) => "validation",
            Self::Unauthorized(_) => "unauthorized",
            Self::Forbidden { code, .. } => code,
            Self::NotFound(_) => "not_found",
            Self::MethodNotAllowed(_) => "method_not_allowed",
            Self::Conflict(_) => "conflict",
            Self::NotPairing(_) => "not_pairing",
            Self::PayloadTooLarge(_) => "payload_too_large",
            Self::UnsupportedMediaType(_) => "unsupported_media_type",
            Self::TooManyRequests { .. } => "rate_limited",
            Self::Connector(e) => match e {
                ConnectorError::NotConnected(_) => "instance_not_connected",
                ConnectorError::OutcomeUnknown => "outcome_unknown",
                ConnectorError::RateLimited { .. } => "network_rate_limited",
                ConnectorError::TemporarilyBanned { .. } => "temporarily_banned",
                ConnectorError::GroupNotFound => "group_not_found_on_network",
                ConnectorError::NotAdmin => "not_group_admin",
                ConnectorError::Rejected { .. } => "network_rejected",
                ConnectorError::Unsupported(_) => "not_supported_for_instance",
                ConnectorError::Other(_) => "network_error",
            },
            Self::Internal(_) => "internal",
        }
    }

    /// The wait for `Retry-After` in whole seconds, rounded up (a client that waits must not come back too early):
    /// pacing and WhatsApp's rate limit say how long. One rule for the native API and every dialect.
    pub fn retry_after_secs(&self) -> Option<u64> {
        let wait = match self {
            Self::TooManyRequests { retry_after, .. } => *retry_after,
            Self::Connector(ConnectorError::RateLimited { retry_after }) => *retry_after,
            _ => None,
        }?;
        Some(wait.as_secs() + u64::from(wait.subsec_nanos() > 0))
    }
}

fn connector_status(e: &ConnectorError) -> StatusCode {
    match e {
        ConnectorError::NotConnected(_) | ConnectorError::TemporarilyBanned { .. } => StatusCode::SERVICE_UNAVAILABLE,
        ConnectorError::OutcomeUnknown => StatusCode::GATEWAY_TIMEOUT,
        ConnectorError::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
        ConnectorError::GroupNotFound => StatusCode::NOT_FOUND,
        ConnectorError::NotAdmin => StatusCode::FORBIDDEN,
        ConnectorError::Rejected { .. } => StatusCode::UNPROCESSABLE_ENTITY,
        ConnectorError::Unsupported(_) => StatusCode::CONFLICT,
        ConnectorError::Other(_) => StatusCode::BAD_GATEWAY,
    }
}

impl From<DbError> for ApiError {
    fn from(e: DbError) -> Self {
        match e {
            DbError::NotFound => Self::NotFound("not found".into()),
            DbError::Conflict => Self::Conflict("conflicts with an existing record".into()),
            DbError::Other(e) => Self::Internal(anyhow::anyhow!(e)),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let detail = match &self {
            Self::Internal(_) => "internal error; see the server log".to_owned(),
            other => other.to_string(),
        };
        let fields = match &self {
            Self::Validation(fields) => fields.clone(),
            _ => Vec::new(),
        };
        let retry_after = self.retry_after_secs();
        let mut response = (status, Json(ErrorBody { code: self.code(), detail, fields })).into_response();
        if let Some(secs) = retry_after {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        if status.is_server_error() {
            // Only the chain in the log (the request's line); the body stays opaque for 500s.
            crate::request_log::FailureCause::attach(&mut response, &self);
        }
        response
    }
}
