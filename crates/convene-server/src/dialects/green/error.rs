//! Green API's errors: `{code, description, message}` with Green's status for each failure — 400 for validation
//! and bad data, 401 for credentials, 429 with `Retry-After` when pacing or WhatsApp's rate limit says wait, 500
//! when WhatsApp refuses or times out, 502 when it cannot be reached. Methods that Green answers with a `false`
//! flag use [`refusal`] instead.

use axum::Json;
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use convene_core::ConnectorError;
use serde::Serialize;

use crate::error::ApiError;

/// Field renames from the service's names to Green's, e.g. `("subject", "groupName")`; a rename also applies to
/// indexed names (`participants[2]` → `chatIds[2]`).
pub(super) type Renames = &'static [(&'static str, &'static str)];

/// An error on its way to a Green client.
#[derive(Debug)]
pub(super) struct GreenError {
    error: ApiError,
    renames: Renames,
}

impl From<ApiError> for GreenError {
    fn from(error: ApiError) -> Self {
        Self { error, renames: &[] }
    }
}

impl IntoResponse for GreenError {
    fn into_response(self) -> Response {
        response(&self.error, self.renames)
    }
}

/// Names fields the Green way when the service refuses a request.
pub(super) trait GreenFields<T> {
    fn green_fields(self, renames: Renames) -> Result<T, GreenError>;
}

impl<T> GreenFields<T> for Result<T, ApiError> {
    fn green_fields(self, renames: Renames) -> Result<T, GreenError> {
        self.map_err(|error| GreenError { error, renames })
    }
}

#[derive(Debug, PartialEq, Eq, Serialize)]
pub(super) struct ErrorOut {
    /// The HTTP status again, as Green's bodies carry it.
    code: u16,
    /// Green's error identifier, e.g. `Validation failed`, `instance account not authorized`.
    description: &'static str,
    /// What went wrong, for people.
    message: String,
}

/// How an [`ApiError`] reads in Green: status, body and the seconds for `Retry-After`.
fn mapped(e: &ApiError, renames: Renames) -> (StatusCode, ErrorOut, Option<u64>) {
    use ConnectorError as C;
    let (status, description, message) = match e {
        ApiError::Validation(fields) => {
            let details: Vec<String> =
                fields.iter().map(|f| format!("'{}' {}", rename(&f.field, renames), f.message)).collect();
            (StatusCode::BAD_REQUEST, "Validation failed", details.join("; "))
        }
        ApiError::BadRequest(m)
        | ApiError::NotFound(m)
        | ApiError::Conflict(m)
        | ApiError::NotPairing(m)
        | ApiError::UnsupportedMediaType(m) => (StatusCode::BAD_REQUEST, "bad request data", m.clone()),
        ApiError::Unauthorized(m) => (StatusCode::UNAUTHORIZED, "Unauthorized", (*m).to_owned()),
        ApiError::Forbidden { detail, .. } => (StatusCode::FORBIDDEN, "Forbidden", detail.clone()),
        // Green answers a wrong HTTP method with 404.
        ApiError::MethodNotAllowed(m) => (StatusCode::NOT_FOUND, "Not Found", m.clone()),
        ApiError::PayloadTooLarge(m) => (StatusCode::PAYLOAD_TOO_LARGE, "Payload Too Large", m.clone()),
        ApiError::TooManyRequests { detail, .. } => {
            (StatusCode::TOO_MANY_REQUESTS, "Too Many Requests", detail.clone())
        }
        ApiError::Connector(c) => match c {
            // Not authorized or not connected: a 503, so clients retry later instead of fixing their request.
            C::NotConnected(_) => (StatusCode::SERVICE_UNAVAILABLE, "instance account not authorized", c.to_string()),
            C::RateLimited { .. } => (
                StatusCode::TOO_MANY_REQUESTS,
                "Too Many Requests",
                "WhatsApp is rate-limiting this number (rate-overlimit); try again later".to_owned(),
            ),
            C::TemporarilyBanned { until } => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "Internal Server Error",
                match until {
                    Some(at) => {
                        format!("WhatsApp refuses: this number created too many groups too quickly; paused until {at}")
                    }
                    None => {
                        "WhatsApp refuses: this number created too many groups too quickly; try again later".to_owned()
                    }
                },
            ),
            C::OutcomeUnknown => {
                (StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error", format!("Timed Out: {c}"))
            }
            C::Rejected { .. } => (StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error", c.to_string()),
            C::GroupNotFound | C::NotAdmin | C::Unsupported(_) => {
                (StatusCode::BAD_REQUEST, "bad request data", c.to_string())
            }
            C::Other(_) => (StatusCode::BAD_GATEWAY, "Bad Gateway", c.to_string()),
        },
        ApiError::Internal(_) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            "Internal Server Error",
            "internal error; see the server log".to_owned(),
        ),
    };
    let retry_after = e.retry_after_secs();
    (status, ErrorOut { code: status.as_u16(), description, message }, retry_after)
}

/// The one way an [`ApiError`] becomes a Green response.
pub(super) fn response(e: &ApiError, renames: Renames) -> Response {
    let (status, body, retry_after) = mapped(e, renames);
    let mut response = (status, Json(body)).into_response();
    if let Some(secs) = retry_after {
        response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(secs));
    }
    if status.is_server_error() {
        crate::request_log::FailureCause::attach(&mut response, e);
    }
    response
}

/// A Green error body for what is not an [`ApiError`].
pub(super) fn body(status: StatusCode, description: &'static str, message: String) -> Response {
    (status, Json(ErrorOut { code: status.as_u16(), description, message })).into_response()
}

/// Green answers a method called with the wrong HTTP method with 404.
pub(super) fn wrong_verb(name: &str, expected: &Method, used: &Method) -> Response {
    body(StatusCode::NOT_FOUND, "Not Found", format!("{name} takes {expected}, not {used}"))
}

/// Refusals that Green reports as a 200 with the method's flag `false` (and a reason where the shape has one): the
/// group is unknown to the instance or left, the instance is not an admin, WhatsApp refused the change. Anything
/// else stays an error.
pub(super) fn refusal(error: ApiError) -> Result<String, GreenError> {
    match &error {
        ApiError::NotFound(_)
        | ApiError::Conflict(_)
        | ApiError::Connector(ConnectorError::NotAdmin | ConnectorError::GroupNotFound)
        | ApiError::Connector(ConnectorError::Rejected { .. }) => Ok(error.to_string()),
        _ => Err(error.into()),
    }
}

fn rename(field: &str, renames: Renames) -> String {
    for (from, to) in renames {
        if let Some(rest) = field.strip_prefix(from)
            && (rest.is_empty() || rest.starts_with('['))
        {
            return format!("{to}{rest}");
        }
    }
    field.to_owned()
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::error::FieldError;

    const CREATE: Renames = &[("subject", "groupName"), ("participants", "chatIds")];

    #[test]
    fn a_paced_creation_is_a_429_with_retry_after_rounded_up() {
        let e = ApiError::TooManyRequests {
            detail: "this instance's pacing policy does not allow another group yet".into(),
            retry_after: Some(Duration::from_millis(299_001)),
        };
        let (status, body, retry) = mapped(&e, CREATE);
        assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
        assert_eq!((body.code, body.description), (429, "Too Many Requests"));
        assert!(body.message.contains("pacing"));
        assert_eq!(retry, Some(300));
        let response = response(&e, CREATE);
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(response.headers()[header::RETRY_AFTER], "300");
    }

    #[test]
    fn whatsapps_rate_limit_is_a_429_with_retry_after() {
        let e = ApiError::Connector(ConnectorError::RateLimited { retry_after: Some(Duration::from_secs(60)) });
        let response = response(&e, &[]);
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(response.headers()[header::RETRY_AFTER], "60");
        let (_, body, _) = mapped(&e, &[]);
        assert!(body.message.contains("rate-overlimit"));
    }

    #[test]
    fn a_rate_limit_without_a_known_wait_has_no_retry_after() {
        let e = ApiError::Connector(ConnectorError::RateLimited { retry_after: None });
        let response = response(&e, &[]);
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
        assert!(response.headers().get(header::RETRY_AFTER).is_none());
    }

    #[test]
    fn validation_is_a_400_naming_greens_fields() {
        let e = ApiError::Validation(vec![
            FieldError::new("subject", "must be at most 100 characters (got 101)"),
            FieldError::new(
                "participants[1]",
                "`120363043968066561@g.us` is a group id (…@g.us), not a person's number",
            ),
        ]);
        let (status, body, retry) = mapped(&e, CREATE);
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(body.description, "Validation failed");
        assert_eq!(
            body.message,
            "'groupName' must be at most 100 characters (got 101); 'chatIds[1]' `120363043968066561@g.us` is a group \
             id (…@g.us), not a person's number"
        );
        assert_eq!(retry, None);
    }

    #[test]
    fn renames_match_whole_names_only() {
        assert_eq!(rename("participants", CREATE), "chatIds");
        assert_eq!(rename("participants[3]", CREATE), "chatIds[3]");
        assert_eq!(rename("subjectline", CREATE), "subjectline");
    }

    #[test]
    fn bad_credentials_are_a_401() {
        let (status, body, _) = mapped(&ApiError::Unauthorized("unknown instance or wrong instance token"), &[]);
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert_eq!(body.code, 401);
    }

    #[test]
    fn whatsapp_refusals_and_timeouts_are_500s_and_an_unreachable_network_a_502() {
        let banned = ApiError::Connector(ConnectorError::TemporarilyBanned { until: None });
        assert_eq!(mapped(&banned, &[]).0, StatusCode::INTERNAL_SERVER_ERROR);
        assert!(mapped(&banned, &[]).1.message.contains("too many groups"));
        let lost = ApiError::Connector(ConnectorError::OutcomeUnknown);
        assert!(mapped(&lost, &[]).1.message.starts_with("Timed Out"));
        let down = ApiError::Connector(ConnectorError::Other("connection reset".into()));
        assert_eq!(mapped(&down, &[]).0, StatusCode::BAD_GATEWAY);
    }

    #[test]
    fn a_disconnected_instance_is_a_503_in_greens_words() {
        let e = ApiError::Connector(ConnectorError::NotConnected("pairing".into()));
        let (status, body, _) = mapped(&e, &[]);
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(body.description, "instance account not authorized");
    }

    #[test]
    fn internal_errors_are_opaque() {
        let e = ApiError::internal(anyhow::anyhow!("database password is hunter2"));
        let (status, body, _) = mapped(&e, &[]);
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
        assert!(!body.message.contains("hunter2"));
    }

    #[test]
    fn refusals_become_false_flags_and_the_rest_stays_an_error() {
        assert!(refusal(ApiError::Connector(ConnectorError::NotAdmin)).is_ok());
        assert!(refusal(ApiError::NotFound("instance 1 is not in group 1@g.us".into())).is_ok());
        assert!(refusal(ApiError::Conflict("this instance left group 1@g.us".into())).is_ok());
        assert!(refusal(ApiError::field("participants[0]", "is not a phone number")).is_err());
        assert!(refusal(ApiError::Connector(ConnectorError::RateLimited { retry_after: None })).is_err());
        assert!(refusal(ApiError::Connector(ConnectorError::NotConnected("x".into()))).is_err());
    }
}
