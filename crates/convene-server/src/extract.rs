//! Wrappers around axum's extractors so that a bad body, path or query gets the same JSON error shape as
//! everything else, with the status that says what is wrong (400 syntax, 413 size, 415 type, 422 fields).

use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::StatusCode;
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use crate::error::ApiError;

/// A JSON body: an object (what every native request body is), read into `T`.
///
/// A number with a zero fraction (`86400.0`) is read as the integer it equals, since JSON Schema counts it as one
/// and generated clients send it; a struct is never read from an array (serde would take `[null, null]` for one).
pub struct ApiJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        // axum checks the content type, the size and the syntax; the shape is checked here.
        let axum::Json(mut body) =
            axum::Json::<serde_json::Value>::from_request(req, state).await.map_err(|r| json_rejection(&r))?;
        if !body.is_object() {
            return Err(ApiError::field("body", "must be a JSON object"));
        }
        whole_numbers_as_integers(&mut body);
        serde_path_to_error::deserialize(body).map(Self).map_err(|e| {
            let field = e.path().to_string();
            let message = e.into_inner().to_string();
            if field == "." { ApiError::field("body", message) } else { ApiError::field(field, message) }
        })
    }
}

/// Rewrites every number with a zero fraction that fits an `i64` as that integer.
fn whole_numbers_as_integers(value: &mut serde_json::Value) {
    use serde_json::Value;
    match value {
        Value::Number(n) => {
            if let Some(f) = n.as_f64().filter(|_| n.is_f64())
                && f.fract() == 0.0
                && (-9.0e18..=9.0e18).contains(&f)
            {
                #[expect(clippy::cast_possible_truncation, reason = "a whole number checked to be within i64")]
                let whole = f as i64;
                *n = whole.into();
            }
        }
        Value::Array(items) => items.iter_mut().for_each(whole_numbers_as_integers),
        Value::Object(fields) => fields.values_mut().for_each(whole_numbers_as_integers),
        Value::Null | Value::Bool(_) | Value::String(_) => {}
    }
}

/// Why axum could not read a body as JSON at all: its type, size or syntax. (Read into a `Value`, a body has no
/// shape to be wrong about; `ApiJson` names a bad field itself.)
fn json_rejection(rejection: &JsonRejection) -> ApiError {
    let text = rejection.body_text();
    match rejection {
        JsonRejection::MissingJsonContentType(_) => {
            ApiError::UnsupportedMediaType("the body must be JSON, sent with `Content-Type: application/json`".into())
        }
        _ if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            ApiError::PayloadTooLarge("the request body is larger than this endpoint accepts".into())
        }
        _ => ApiError::BadRequest(format!("the body is not valid JSON: {text}")),
    }
}

/// Path parameters.
pub struct ApiPath<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for ApiPath<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|p| Self(p.0))
            .map_err(|r: PathRejection| ApiError::BadRequest(r.body_text()))
    }
}

/// Query parameters.
pub struct ApiQuery<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        axum::extract::Query::<T>::from_request_parts(parts, state).await.map(|q| Self(q.0)).map_err(
            |r: QueryRejection| {
                // axum names the bad parameter: "…: limit: invalid digit found in string".
                let text = r.body_text();
                let detail = text.trim_start_matches("Failed to deserialize query string: ");
                match detail.split_once(": ") {
                    Some((field, message)) if !field.contains(' ') => ApiError::field(field, message),
                    _ => ApiError::field("query", detail),
                }
            },
        )
    }
}
