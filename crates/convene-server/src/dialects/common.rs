//! What the Z-API, 2Chat and Wawp dialects share. Errors: one reading of an [`ApiError`] as a status, a message
//! and a `Retry-After`, so that each dialect only shapes the body ([`Shape`]). Bodies: JSON read into the dialect's
//! own field names, with errors naming those fields. Outcomes: the WhatsApp-style code a participant report shows.
//! Pairing: why an instance is not connected, and its QR code as the providers hand it out (Green uses these too).

use std::collections::HashMap;
use std::marker::PhantomData;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Path, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use convene_core::store::{GroupListQuery, GroupRecord};
use convene_core::{ConnectorError, GroupMember, InstanceId, MemberRole, PairingCode, PhoneNumber};
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::AppState;
use crate::error::{ApiError, FieldError};
use crate::service::ParticipantReport;

/// Field renames from the service's names to a dialect's, e.g. `("subject", "groupName")`. A rename also applies to
/// indexed names: `participants[2]` → `phones[2]`.
pub(super) type Renames = &'static [(&'static str, &'static str)];

/// An error as any of these dialects reads it, before its body is shaped.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Failure {
    pub status: StatusCode,
    /// The native API's stable name for the error (`validation`, `rate_limited`, …).
    pub code: &'static str,
    /// What went wrong, for people, in the dialect's field names.
    pub message: String,
    /// Seconds to wait, rounded up, when the error says how long.
    pub retry_after: Option<u64>,
}

/// A dialect's error body.
pub(super) trait Shape {
    /// The dialect's name, for the log.
    const NAME: &'static str;
    fn body(failure: &Failure) -> Value;
}

/// How an [`ApiError`] reads in these dialects. Their providers answer bad parameters with 400, so field errors
/// (422 in the native API) are 400 here; everything else keeps the native status.
pub(super) fn failure(e: &ApiError, renames: Renames) -> Failure {
    let status = match e {
        ApiError::Validation(_) => StatusCode::BAD_REQUEST,
        other => other.status(),
    };
    let message = match e {
        ApiError::Validation(fields) => fields
            .iter()
            .map(|f| format!("{}: {}", rename(&f.field, renames), f.message))
            .collect::<Vec<_>>()
            .join("; "),
        ApiError::Connector(ConnectorError::RateLimited { .. }) => {
            "WhatsApp is rate-limiting this number (rate-overlimit); try again later".to_owned()
        }
        ApiError::Internal(_) => "internal error; see the server log".to_owned(),
        other => other.to_string(),
    };
    Failure { status, code: e.code(), message, retry_after: e.retry_after_secs() }
}

/// The one way an [`ApiError`] becomes a response in dialect `S`: status, `S`'s body, `Retry-After`.
pub(super) fn response<S: Shape>(e: &ApiError, renames: Renames) -> Response {
    let failure = failure(e, renames);
    let mut response = shaped::<S>(&failure);
    if failure.status.is_server_error() {
        crate::request_log::FailureCause::attach(&mut response, e);
    }
    response
}

/// A response in dialect `S` for a failure that is not an [`ApiError`] (routing: 404, 405).
pub(super) fn shaped<S: Shape>(failure: &Failure) -> Response {
    let mut response = (failure.status, Json(S::body(failure))).into_response();
    if let Some(secs) = failure.retry_after {
        response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(secs));
    }
    response
}

/// A failure of routing (no such method, wrong HTTP verb), with no native error behind it.
pub(super) fn routing<S: Shape>(status: StatusCode, code: &'static str, message: String) -> Response {
    shaped::<S>(&Failure { status, code, message, retry_after: None })
}

/// An error on its way to a client of dialect `S`, with the dialect's field names.
pub(super) struct DialectError<S> {
    error: ApiError,
    renames: Renames,
    shape: PhantomData<fn() -> S>,
}

impl<S> std::fmt::Debug for DialectError<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.error.fmt(f)
    }
}

impl<S> From<ApiError> for DialectError<S> {
    fn from(error: ApiError) -> Self {
        Self { error, renames: &[], shape: PhantomData }
    }
}

impl<S: Shape> IntoResponse for DialectError<S> {
    fn into_response(self) -> Response {
        response::<S>(&self.error, self.renames)
    }
}

/// Names the service's field errors the dialect's way.
pub(super) trait DialectFields<T> {
    fn fields<S>(self, renames: Renames) -> Result<T, DialectError<S>>;
}

impl<T> DialectFields<T> for Result<T, ApiError> {
    fn fields<S>(self, renames: Renames) -> Result<T, DialectError<S>> {
        self.map_err(|error| DialectError { error, renames, shape: PhantomData })
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

// ---------- requests ----------

/// The path's parameters by name.
pub(super) async fn path_params(parts: &mut Parts, state: &AppState) -> Result<HashMap<String, String>, ApiError> {
    Path::<HashMap<String, String>>::from_request_parts(parts, state)
        .await
        .map(|Path(params)| params)
        .map_err(|r| ApiError::BadRequest(r.body_text()))
}

/// A header's value as text, trimmed; `None` when absent, empty or not text.
pub(super) fn header_text<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok()).map(str::trim).filter(|v| !v.is_empty())
}

/// Does `Content-Type` say JSON (`application/json`, or `application/…+json`, any parameters)?
pub(super) fn is_json(headers: &HeaderMap) -> bool {
    let Some(value) = header_text(headers, header::CONTENT_TYPE.as_str()) else { return false };
    let mime = value.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    mime == "application/json" || (mime.starts_with("application/") && mime.ends_with("+json"))
}

/// The raw body, within the server's size limit.
pub(super) async fn body_bytes(request: Request, state: &AppState) -> Result<Bytes, ApiError> {
    Bytes::from_request(request, state).await.map_err(|r| {
        if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::PayloadTooLarge("the request body is larger than this server accepts".into())
        } else {
            ApiError::BadRequest(r.body_text())
        }
    })
}

/// A JSON body read into `T`. An empty body reads as `{}`, so a missing field is reported by name; a value of the
/// wrong type names its path (`group.participants[1]`).
pub(super) fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let body: &[u8] = if bytes.iter().all(u8::is_ascii_whitespace) { b"{}" } else { bytes };
    axum::Json::<T>::from_bytes(body).map(|Json(v)| v).map_err(|r| body_error(&r.body_text()))
}

/// axum's deserialisation message as a field error: `groupName: is required`, `phones[0]: invalid type: …`.
fn body_error(text: &str) -> ApiError {
    const DATA: &str = "Failed to deserialize the JSON body into the target type: ";
    let Some(detail) = text.strip_prefix(DATA) else {
        return ApiError::BadRequest(format!("the body is not valid JSON: {text}"));
    };
    let detail = detail.split(" at line ").next().unwrap_or(detail);
    // `a.b: missing field `c`` names the object; the field is its member.
    let (path, message) = match detail.split_once(": ") {
        Some((path, message)) if !path.contains(' ') => (Some(path), message),
        _ => (None, detail),
    };
    let within = |name: &str| path.map_or_else(|| name.to_owned(), |p| format!("{p}.{name}"));
    let missing = message.strip_prefix("missing field `").and_then(|rest| rest.split_once('`')).map(|(n, _)| n);
    let field = match (missing, path) {
        (Some(name), _) => FieldError::new(within(name), "is required"),
        (None, Some(path)) => FieldError::new(path, message),
        (None, None) => FieldError::new("body", message),
    };
    ApiError::Validation(vec![field])
}

// ---------- groups and outcomes ----------

/// Every group Convene knows for an instance that the instance has not left, oldest first.
pub(super) async fn current_groups(state: &AppState, instance_id: InstanceId) -> Result<Vec<GroupRecord>, ApiError> {
    let mut groups = Vec::new();
    let mut cursor = None;
    loop {
        let page = state
            .service
            .groups()
            .list_groups(&GroupListQuery { instance_id: Some(instance_id), cursor, limit: 500, ..Default::default() })
            .await?;
        groups.extend(page.groups.into_iter().filter(|g| g.left_at.is_none()));
        match page.next_cursor {
            Some(next) => cursor = Some(next),
            None => return Ok(groups),
        }
    }
}

/// The group's creator among its members, when still there.
pub(super) fn creator(members: &[GroupMember]) -> Option<&PhoneNumber> {
    members.iter().find(|m| m.role == MemberRole::Creator).map(|m| &m.phone)
}

/// The WhatsApp status code a report shows: the network's own code when it gave one, else the code WhatsApp uses
/// for that outcome.
pub(super) fn status_code(report: &ParticipantReport) -> u16 {
    report.code.unwrap_or_else(|| report.outcome.wa_status())
}

// ---------- state and pairing ----------

/// The QR code to scan now; `None` when the instance is not waiting for a scan (or is not a real number).
pub(super) async fn current_qr(state: &AppState, id: InstanceId) -> Result<Option<PairingCode>, ApiError> {
    match state.service.pairing_qr(id).await {
        Ok(code) => Ok(Some(code)),
        Err(ApiError::NotPairing(_)) => Ok(None),
        Err(e) => Err(e),
    }
}

/// A pairing payload drawn as a PNG, base64 (standard alphabet, padded): Green's `qr` message.
pub(super) fn qr_png_base64(payload: &str) -> Result<String, ApiError> {
    let png = crate::qr::png(payload).map_err(ApiError::internal)?;
    Ok(base64::engine::general_purpose::STANDARD.encode(png))
}

/// The same PNG as a `data:` URI, ready for an `<img src>`: Z-API's `qr-code/image`, Wawp's `qr-image`.
pub(super) fn qr_png_data_uri(payload: &str) -> Result<String, ApiError> {
    Ok(format!("data:image/png;base64,{}", qr_png_base64(payload)?))
}

/// A dialect answer's JSON body, for the dialects' unit tests.
#[cfg(test)]
pub(super) async fn body_of(response: Response) -> serde_json::Value {
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 20).await.unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use convene_core::InstanceState;

    struct Plain;
    impl Shape for Plain {
        const NAME: &'static str = "plain";
        fn body(f: &Failure) -> Value {
            serde_json::json!({"message": f.message})
        }
    }

    #[test]
    fn pacing_and_network_limits_are_429s_with_retry_after_rounded_up() {
        let paced =
            ApiError::TooManyRequests { detail: "pacing".into(), retry_after: Some(Duration::from_millis(299_001)) };
        let f = failure(&paced, &[]);
        assert_eq!((f.status, f.retry_after, f.code), (StatusCode::TOO_MANY_REQUESTS, Some(300), "rate_limited"));
        let network = ApiError::Connector(ConnectorError::RateLimited { retry_after: Some(Duration::from_secs(60)) });
        let answer = response::<Plain>(&network, &[]);
        assert_eq!(answer.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(answer.headers()[header::RETRY_AFTER], "60");
        let unknown = ApiError::Connector(ConnectorError::RateLimited { retry_after: None });
        assert!(response::<Plain>(&unknown, &[]).headers().get(header::RETRY_AFTER).is_none());
    }

    #[test]
    fn field_errors_are_400s_in_the_dialects_names() {
        let e = ApiError::Validation(vec![
            FieldError::new("subject", "must be at most 100 characters"),
            FieldError::new("participants[1]", "is a group id"),
            FieldError::new("subjectline", "x"),
        ]);
        let f = failure(&e, &[("subject", "groupName"), ("participants", "phones")]);
        assert_eq!(f.status, StatusCode::BAD_REQUEST);
        assert_eq!(f.message, "groupName: must be at most 100 characters; phones[1]: is a group id; subjectline: x");
    }

    #[test]
    fn internal_errors_stay_opaque() {
        let f = failure(&ApiError::internal(anyhow::anyhow!("password hunter2")), &[]);
        assert_eq!(f.status, StatusCode::INTERNAL_SERVER_ERROR);
        assert!(!f.message.contains("hunter2"));
    }

    #[test]
    fn body_errors_name_the_field_with_its_path() {
        #[derive(serde::Deserialize, Debug)]
        #[allow(dead_code)]
        struct Group {
            name: String,
            participants: Vec<String>,
        }
        #[derive(serde::Deserialize, Debug)]
        #[allow(dead_code)]
        struct Create {
            from_number: String,
            group: Group,
        }
        let only = |e: ApiError| match e {
            ApiError::Validation(mut f) if f.len() == 1 => f.remove(0),
            other => panic!("{other:?}"),
        };
        let missing = only(parse_json::<Create>(br#"{"group": {"name": "x", "participants": []}}"#).unwrap_err());
        assert_eq!((missing.field.as_str(), missing.message.as_str()), ("from_number", "is required"));
        let nested =
            only(parse_json::<Create>(br#"{"from_number": "+1", "group": {"participants": []}}"#).unwrap_err());
        assert_eq!(nested.field, "group.name");
        let typed = only(
            parse_json::<Create>(br#"{"from_number": "+1", "group": {"name": "x", "participants": [5]}}"#).unwrap_err(),
        );
        assert_eq!(typed.field, "group.participants[0]");
        assert!(matches!(parse_json::<Create>(b"{not json").unwrap_err(), ApiError::BadRequest(_)));
        assert_eq!(only(parse_json::<Create>(b"  ").unwrap_err()).field, "from_number");
    }

    #[test]
    fn json_content_types_are_recognised() {
        let with = |v: &str| {
            let mut h = HeaderMap::new();
            h.insert(header::CONTENT_TYPE, HeaderValue::from_str(v).unwrap());
            is_json(&h)
        };
        assert!(with("application/json") && with("Application/JSON; charset=utf-8") && with("application/vnd.x+json"));
        assert!(!with("text/plain") && !with("application/x-www-form-urlencoded"));
        assert!(!is_json(&HeaderMap::new()));
    }

    #[test]
    fn only_a_connected_instance_has_no_reason_and_a_ban_says_until_when() {
        assert_eq!(InstanceState::Connected.not_connected_reason(), None);
        for state in [
            InstanceState::Starting,
            InstanceState::Connecting,
            InstanceState::Pairing,
            InstanceState::Disconnected,
            InstanceState::LoggedOut,
        ] {
            assert!(state.not_connected_reason().is_some_and(|why| !why.is_empty()), "{state:?}");
        }
        let until = convene_core::Timestamp::from_millis(1_795_395_600_000);
        let why = InstanceState::TemporarilyBanned { until: Some(until) }.not_connected_reason().unwrap();
        assert!(why.ends_with("until 2026-11-23T01:00:00Z"), "{why}");
    }

    #[test]
    fn a_qr_data_uri_is_a_base64_png() {
        let uri = qr_png_data_uri("2@abc,def,ghi,jkl").unwrap();
        let data = uri.strip_prefix("data:image/png;base64,").unwrap();
        let png = base64::engine::general_purpose::STANDARD.decode(data).unwrap();
        assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"));
    }

    #[test]
    fn reports_show_the_networks_code_or_the_one_whatsapp_uses_for_the_outcome() {
        let report = |outcome, code| ParticipantReport {
            input: "+17137157533".into(),
            phone: None,
            outcome,
            code,
            add_request: None,
            message: String::new(),
        };
        assert_eq!(status_code(&report(convene_core::ParticipantOutcome::InviteSent, Some(403))), 403);
        assert_eq!(status_code(&report(convene_core::ParticipantOutcome::Added, None)), 200);
        assert_eq!(status_code(&report(convene_core::ParticipantOutcome::InvalidNumber, None)), 400);
        assert_eq!(status_code(&report(convene_core::ParticipantOutcome::Failed, None)), 500);
    }
}
