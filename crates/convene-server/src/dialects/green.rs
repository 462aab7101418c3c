//! Green API (green-api.com), at its own paths: `{host}/waInstance{idInstance}/{method}/{apiTokenInstance}`. The
//! instance token in the path is the credential. Group methods take a JSON body by POST (`setGroupPicture` a
//! multipart form); account methods are GETs. Method names are accepted as the official clients write them
//! (`createGroup`) and as Green's own docs capitalise them (`CreateGroup`). Everything answers JSON: errors as
//! `{code, description, message}`, methods Convene does not implement as 501. Notifications are polled
//! (`receiveNotification`, `deleteNotification`) from Convene's events.

mod account;
mod error;
mod groups;
mod notifications;

use std::collections::HashMap;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Path, Request};
use axum::http::request::Parts;
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse as _, Response};
use axum::routing::{MethodRouter, any};
use convene_core::store::InstanceRecord;
use serde::de::DeserializeOwned;

use crate::AppState;
use crate::error::{ApiError, FieldError};
use crate::request_log::RequestNotes;
use error::GreenError;

/// A Green method: its name as the clients spell it, the HTTP method it takes, and its handler.
struct GreenMethod {
    name: &'static str,
    verb: Method,
    route: MethodRouter<AppState>,
}

pub fn router() -> Router<AppState> {
    let mut router = Router::new();
    let mut served = Vec::new();
    for method in groups::methods().into_iter().chain(account::methods()).chain(notifications::methods()) {
        let (name, verb) = (method.name, method.verb.clone());
        let route = method.route.fallback(move |used: Method| async move { error::wrong_verb(name, &verb, &used) });
        router = router
            .route(&format!("/waInstance{{id}}/{name}/{{token}}"), route.clone())
            .route(&format!("/waInstance{{id}}/{}/{{token}}", capitalised(name)), route);
        served.push(name);
    }
    router = router.merge(notifications::routes());
    served.push("deleteNotification");
    let served: Arc<[&'static str]> = served.into();
    let other = any(move |instance: GreenInstance, path: Path<HashMap<String, String>>| {
        not_implemented(served.clone(), instance, path)
    });
    router
        .route("/waInstance{id}/{method}/{token}", other.clone())
        .route("/waInstance{id}/{method}/{token}/{*rest}", other)
        .route("/waInstance{id}/{method}", any(missing_token))
        .route("/waInstance{id}/{method}/", any(missing_token))
}

/// `createGroup` → `CreateGroup`.
fn capitalised(name: &str) -> String {
    let mut chars = name.chars();
    chars.next().map(|first| first.to_ascii_uppercase().to_string() + chars.as_str()).unwrap_or_default()
}

/// The instance named by `waInstance{id}` whose token is the path's last segment.
struct GreenInstance(InstanceRecord);

impl FromRequestParts<AppState> for GreenInstance {
    type Rejection = GreenError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, GreenError> {
        const MISSING: ApiError = ApiError::Unauthorized("the path must be /waInstance{idInstance}/{method}/{token}");
        let Path(params) =
            Path::<HashMap<String, String>>::from_request_parts(parts, state).await.map_err(|_| MISSING)?;
        let (Some(id), Some(token)) = (params.get("id"), params.get("token")) else {
            return Err(MISSING.into());
        };
        let instance = state.service.instances().by_token(id, token).await?;
        RequestNotes::instance(&parts.extensions, instance.id);
        Ok(Self(instance))
    }
}

/// A JSON body, whatever `Content-Type` says (Green's examples send it with and without). An empty body reads as
/// `{}`, so a missing field is reported by name.
struct GreenJson<T>(T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for GreenJson<T> {
    type Rejection = GreenError;

    async fn from_request(req: Request, state: &S) -> Result<Self, GreenError> {
        let bytes = Bytes::from_request(req, state).await.map_err(|r| {
            if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::PayloadTooLarge("the request body is larger than this method accepts".into())
            } else {
                ApiError::BadRequest(r.body_text())
            }
        })?;
        let body: &[u8] = if bytes.iter().all(u8::is_ascii_whitespace) { b"{}" } else { &bytes };
        match axum::Json::<T>::from_bytes(body) {
            Ok(axum::Json(value)) => Ok(Self(value)),
            Err(rejection) => Err(body_error(&rejection.body_text()).into()),
        }
    }
}

/// axum's deserialisation message, in Green's words: `'groupId' is required`, `'foo' is not allowed`,
/// `'chatIds[0]' invalid type: …`.
fn body_error(text: &str) -> ApiError {
    const DATA: &str = "Failed to deserialize the JSON body into the target type: ";
    let Some(detail) = text.strip_prefix(DATA) else {
        return ApiError::BadRequest(format!("the body is not valid JSON: {text}"));
    };
    let detail = detail.split(" at line ").next().unwrap_or(detail);
    let quoted = |marker: &str| detail.split_once(marker).and_then(|(_, rest)| rest.split_once('`')).map(|(n, _)| n);
    let field = if let Some(name) = quoted("missing field `") {
        FieldError::new(name, "is required")
    } else if let Some(name) = quoted("unknown field `") {
        FieldError::new(name, "is not allowed")
    } else {
        match detail.split_once(": ") {
            Some((path, message)) if !path.contains(' ') => FieldError::new(path, message),
            _ => FieldError::new("body", detail),
        }
    };
    ApiError::Validation(vec![field])
}

/// Any other method name (after the credentials are checked): Convene serves Green's group and account methods
/// only.
async fn not_implemented(
    served: Arc<[&'static str]>,
    _instance: GreenInstance,
    Path(params): Path<HashMap<String, String>>,
) -> Response {
    let asked = params.get("method").map_or("", String::as_str);
    let message = match served.iter().find(|m| m.eq_ignore_ascii_case(asked)) {
        Some(served) => format!("method names are case-sensitive: `{asked}` is served as `{served}`"),
        None => format!(
            "Convene does not implement the Green API method `{asked}`; it serves the group and account methods \
             (see docs/dialects/green-api.md)"
        ),
    };
    error::body(StatusCode::NOT_IMPLEMENTED, "Not Implemented", message)
}

async fn missing_token() -> Response {
    GreenError::from(ApiError::Unauthorized("the path must end with /{apiTokenInstance}")).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn only_field(e: ApiError) -> FieldError {
        match e {
            ApiError::Validation(mut fields) if fields.len() == 1 => fields.remove(0),
            other => panic!("not one field error: {other:?}"),
        }
    }

    #[test]
    fn method_names_capitalise_as_in_greens_docs() {
        assert_eq!(capitalised("createGroup"), "CreateGroup");
        assert_eq!(capitalised("qr"), "Qr");
    }

    #[test]
    fn body_errors_name_the_field_the_green_way() {
        let missing = only_field(body_error(
            "Failed to deserialize the JSON body into the target type: missing field `groupId` at line 1 column 2",
        ));
        assert_eq!((missing.field.as_str(), missing.message.as_str()), ("groupId", "is required"));
        let unknown = only_field(body_error(
            "Failed to deserialize the JSON body into the target type: unknown field `phones`, expected `groupName` \
             or `chatIds` at line 1 column 9",
        ));
        assert_eq!((unknown.field.as_str(), unknown.message.as_str()), ("phones", "is not allowed"));
        let typed = only_field(body_error(
            "Failed to deserialize the JSON body into the target type: chatIds[0]: invalid type: integer `5`, \
             expected a string at line 1 column 40",
        ));
        assert_eq!(typed.field, "chatIds[0]");
        assert_eq!(typed.message, "invalid type: integer `5`, expected a string");
        assert!(matches!(body_error("Failed to parse the request body as JSON: EOF"), ApiError::BadRequest(_)));
    }
}
