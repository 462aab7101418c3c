//! `Idempotency-Key` on the native API's mutating requests (POST, PUT, PATCH, DELETE), as middleware around every
//! native route: a client that did not hear the answer (timeout, dropped connection) sends the request again with
//! the same key and gets the first answer back instead of a second group.
//!
//! Keys belong to the account API key that sent them. The first request with a key writes a record "in progress"
//! (method, path, query and the SHA-256 of the body: the fingerprint) before its handler runs, then stores the
//! answer. A repeat with the same fingerprint gets that answer again, marked `Idempotent-Replayed: true`, and the
//! handler does not run; a repeat while the first is still running gets 409 `idempotency_key_in_progress`; the same
//! key on a different request gets 422 `idempotency_key_reused`. Answers that say "nothing happened, try again"
//! (5xx, 429) are not kept, so a retry with the same key runs. Like every changing request, the handler runs to its end
//! even when the client hangs up (see `run_to_completion` in lib.rs), so the retry finds the answer; it runs in a
//! task of its own here as well, so that a handler that panics releases its key. Records last 24 hours; one left in
//! progress for 5 minutes (the process died) is taken over by the next request with its key.

use std::pin::Pin;
use std::time::Duration;

use axum::Json;
use axum::body::{Body, Bytes, HttpBody};
use axum::extract::{FromRequestParts, OriginalUri, Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use convene_core::store::{IdempotencyClaim, IdempotencyRecord, IdempotentResponse};
use convene_core::{GroupPicture, Store};
use tracing::Instrument as _;
use utoipa::openapi::path::{Parameter, ParameterBuilder, ParameterIn};
use utoipa::openapi::{ObjectBuilder, OpenApi, Ref, RefOr, Required, Type};

use crate::AppState;
use crate::auth::{AccountKey, sha256_hex};
use crate::delivery::SecretBox;
use crate::error::{ApiError, ErrorBody};

/// The request header.
pub const IDEMPOTENCY_KEY: HeaderName = HeaderName::from_static("idempotency-key");
/// Set to `true` on an answer replayed from the record.
pub const IDEMPOTENT_REPLAYED: HeaderName = HeaderName::from_static("idempotent-replayed");

const MAX_KEY_CHARS: usize = 255;
/// The largest body buffered to fingerprint it: the largest route's (a group picture in a multipart form). Each
/// route's own, usually smaller, limit still applies when its handler reads the buffered body.
const MAX_REQUEST_BYTES: usize = GroupPicture::MAX_BYTES + 64 * 1024;
/// The largest answer kept for replay; our answers are small JSON.
const MAX_STORED_BYTES: usize = 1024 * 1024;
/// A record still in progress after this long belongs to a request that will never finish (the process died).
const ABANDONED_AFTER: Duration = Duration::from_secs(5 * 60);
/// How long a key is remembered.
const KEPT_FOR: Duration = Duration::from_secs(24 * 60 * 60);
/// Expired records deleted per new record, so that the table stays small without a sweeper.
const PURGE_BATCH: u32 = 100;

/// The middleware: `axum::middleware::from_fn_with_state(state, idempotency::layer)` around the native routes.
pub async fn layer(State(state): State<AppState>, request: Request, next: Next) -> Response {
    if !matches!(*request.method(), Method::POST | Method::PUT | Method::PATCH | Method::DELETE)
        || !request.headers().contains_key(IDEMPOTENCY_KEY)
    {
        return next.run(request).await;
    }
    handle(&state, request, next).await.unwrap_or_else(IntoResponse::into_response)
}

/// Checks the key and the caller, buffers the body, claims the key, and then runs the request or answers for it.
async fn handle(state: &AppState, request: Request, next: Next) -> Result<Response, ApiError> {
    let (mut parts, body) = request.into_parts();
    // Keys are per API key, so the caller is known first; a bad API key is a 401 as without the header.
    let AccountKey(api_key) = AccountKey::from_request_parts(&mut parts, state).await?;
    let key = match parse_key(&parts.headers) {
        Ok(key) => key,
        Err(detail) => return Ok(refusal(StatusCode::BAD_REQUEST, "invalid_idempotency_key", detail)),
    };
    let body = read_body(body).await?;
    let uri = parts.extensions.get::<OriginalUri>().map_or(&parts.uri, |o| &o.0);
    let path = uri.path_and_query().map_or(uri.path(), |pq| pq.as_str());
    let now = state.service.now();
    let record = IdempotencyRecord {
        api_key_id: api_key.id,
        key,
        fingerprint: format!("{} {path} sha256:{}", parts.method, sha256_hex(&body)),
        created_at: now,
        response: None,
    };
    let expired_before = now.minus(KEPT_FOR);
    let claim = state.store.begin_idempotent_request(&record, now.minus(ABANDONED_AFTER), expired_before).await?;
    if let IdempotencyClaim::Existing(existing) = claim {
        return Ok(answer_existing(&state.secrets, existing, &record));
    }
    let store = state.store.clone();
    tokio::spawn(async move {
        if let Err(e) = store.delete_expired_idempotency_keys(expired_before, PURGE_BATCH).await {
            tracing::warn!(error = %e, "could not delete expired idempotency keys");
        }
    });
    Ok(run(state, record, Request::from_parts(parts, Body::from(body)), next).await)
}

/// Runs the handler to the end, then keeps or releases the record.
async fn run(state: &AppState, record: IdempotencyRecord, request: Request, next: Next) -> Response {
    let store = state.store.clone();
    let task = {
        let (store, secrets, record) = (store.clone(), state.secrets.clone(), record.clone());
        async move {
            let response = next.run(request).await;
            finish(store.as_ref(), &secrets, &record, response).await
        }
    };
    match tokio::spawn(task.in_current_span()).await {
        Ok(response) => response,
        Err(e) => {
            release(store.as_ref(), &record).await;
            ApiError::internal(anyhow::anyhow!("the request handler failed: {e}")).into_response()
        }
    }
}

async fn finish(store: &dyn Store, secrets: &SecretBox, record: &IdempotencyRecord, response: Response) -> Response {
    let status = response.status();
    if status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS {
        release(store, record).await;
        return response;
    }
    let (parts, body) = response.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, usize::MAX).await else {
        release(store, record).await;
        return ApiError::internal(anyhow::anyhow!("could not read the handler's answer")).into_response();
    };
    match std::str::from_utf8(&bytes) {
        Ok(text) if bytes.len() <= MAX_STORED_BYTES => {
            let content_type = parts.headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).map(str::to_owned);
            // Sealed: answers carry credentials (a new instance's token, a webhook secret), and a copy of the
            // database must not be a copy of them.
            let body = secrets.seal_text(text, &sealing_context(record));
            let kept = IdempotentResponse { status: status.as_u16(), content_type, body };
            if let Err(e) = store.complete_idempotent_request(record, &kept).await {
                // Taken over after ABANDONED_AFTER, or the database failed: the caller still gets its answer.
                tracing::error!(error = %e, key = %record.key, "could not store the answer to an idempotent request");
            }
        }
        _ => {
            tracing::warn!(key = %record.key, bytes = bytes.len(), "an answer too large or not text is not kept");
            release(store, record).await;
        }
    }
    Response::from_parts(parts, Body::from(bytes))
}

async fn release(store: &dyn Store, record: &IdempotencyRecord) {
    if let Err(e) = store.release_idempotent_request(record).await {
        tracing::error!(error = %e, key = %record.key, "could not release an idempotency key");
    }
}

/// What a stored answer is sealed to: its record's API key and key, so that it opens in its own row only.
fn sealing_context(record: &IdempotencyRecord) -> String {
    format!("idempotency {} {}", record.api_key_id, record.key)
}

/// The stored answer, or why there is none to give.
fn answer_existing(secrets: &SecretBox, existing: IdempotencyRecord, request: &IdempotencyRecord) -> Response {
    if existing.fingerprint != request.fingerprint {
        return refusal(
            StatusCode::UNPROCESSABLE_ENTITY,
            "idempotency_key_reused",
            format!(
                "Idempotency-Key `{}` was used for a different request (another method, path, query or body); \
                 use a new key for a new request",
                request.key
            ),
        );
    }
    let context = sealing_context(&existing);
    let Some(stored) = existing.response else {
        let mut response = refusal(
            StatusCode::CONFLICT,
            "idempotency_key_in_progress",
            format!("a request with Idempotency-Key `{}` is still in progress; retry shortly", request.key),
        );
        response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        return response;
    };
    let Ok(status) = StatusCode::from_u16(stored.status) else {
        return ApiError::internal(anyhow::anyhow!("stored idempotent status {} is not a status", stored.status))
            .into_response();
    };
    let body = match secrets.open_text(&stored.body, &context) {
        Ok(body) => body,
        Err(e) => return ApiError::internal(anyhow::anyhow!("the stored answer to replay: {e}")).into_response(),
    };
    let mut response = (status, body).into_response();
    let headers = response.headers_mut();
    headers.remove(header::CONTENT_TYPE);
    if let Some(ct) = stored.content_type.and_then(|ct| HeaderValue::from_str(&ct).ok()) {
        headers.insert(header::CONTENT_TYPE, ct);
    }
    headers.insert(IDEMPOTENT_REPLAYED, HeaderValue::from_static("true"));
    response
}

/// An error in the native shape with a code `ApiError` does not have.
fn refusal(status: StatusCode, code: &'static str, detail: impl Into<String>) -> Response {
    (status, Json(ErrorBody { code, detail: detail.into(), fields: Vec::new() })).into_response()
}

/// The one `Idempotency-Key` value: 1 to 255 printable ASCII characters.
fn parse_key(headers: &HeaderMap) -> Result<String, String> {
    let mut values = headers.get_all(IDEMPOTENCY_KEY).iter();
    let (Some(value), None) = (values.next(), values.next()) else {
        return Err("send one Idempotency-Key header, not several".into());
    };
    let bytes = value.as_bytes();
    if bytes.is_empty() || bytes.len() > MAX_KEY_CHARS || !bytes.iter().all(|b| (b' '..=b'~').contains(b)) {
        return Err(format!(
            "the Idempotency-Key must be 1 to {MAX_KEY_CHARS} printable ASCII characters (a UUID is a good choice)"
        ));
    }
    Ok(String::from_utf8_lossy(bytes).into_owned())
}

/// The whole request body, refused past `MAX_REQUEST_BYTES`.
async fn read_body(mut body: Body) -> Result<Bytes, ApiError> {
    let mut buf = Vec::new();
    while let Some(frame) = std::future::poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await {
        let frame = frame.map_err(|e| ApiError::BadRequest(format!("could not read the request body: {e}")))?;
        if let Ok(data) = frame.into_data() {
            if buf.len() + data.len() > MAX_REQUEST_BYTES {
                return Err(ApiError::PayloadTooLarge(format!(
                    "the request body is larger than {MAX_REQUEST_BYTES} bytes"
                )));
            }
            buf.extend_from_slice(&data);
        }
    }
    Ok(Bytes::from(buf))
}

/// Documents the header on every POST, PUT, PATCH and DELETE operation under `/v1`, as one shared parameter
/// (`#/components/parameters/IdempotencyKey`).
pub fn document(openapi: &mut OpenApi) {
    const NAME: &str = "IdempotencyKey";
    let parameter: Parameter = ParameterBuilder::new()
        .name("Idempotency-Key")
        .parameter_in(ParameterIn::Header)
        .required(Required::False)
        .description(Some(
            "Makes the request safe to retry: a repeat with the same key and the same method, path, query and body \
             within 24 hours gets the first answer again (header `Idempotent-Replayed: true`) and changes nothing. \
             The same key on a different request is refused with 422 `idempotency_key_reused`; a repeat while the \
             first is still running gets 409 `idempotency_key_in_progress` with `Retry-After`. Answers 5xx and 429 \
             are not kept, so a retry runs again. Keys are per API key; 1 to 255 printable ASCII characters.",
        ))
        .schema(Some(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .min_length(Some(1))
                .max_length(Some(MAX_KEY_CHARS))
                // Printable ASCII; HTTP drops spaces at either end of a header value, so none there.
                .pattern(Some("^[!-~](?:[ -~]*[!-~])?$")),
        ))
        .build();
    openapi.components.get_or_insert_with(Default::default).parameters.insert(NAME.into(), RefOr::T(parameter));
    for item in openapi.paths.paths.iter_mut().filter(|(path, _)| path.starts_with("/v1/")).map(|(_, item)| item) {
        for operation in [&mut item.post, &mut item.put, &mut item.patch, &mut item.delete].into_iter().flatten() {
            operation
                .parameters
                .get_or_insert_with(Vec::new)
                .push(RefOr::Ref(Ref::new(format!("#/components/parameters/{NAME}"))));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(values: &[&[u8]]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for v in values {
            map.append(IDEMPOTENCY_KEY, HeaderValue::from_bytes(v).unwrap());
        }
        map
    }

    #[test]
    fn keys_are_one_to_255_printable_ascii_characters() {
        assert_eq!(parse_key(&headers(&[b"0b5b6f6e-1c1e-4d4e-9a0e-2f0e0c6b7a11"])).unwrap().len(), 36);
        assert!(parse_key(&headers(&[b"order 42 / retry"])).is_ok());
        assert!(parse_key(&headers(&["k".repeat(255).as_bytes()])).is_ok());
        assert!(parse_key(&headers(&["k".repeat(256).as_bytes()])).is_err());
        assert!(parse_key(&headers(&[b""])).is_err());
        assert!(parse_key(&headers(&[b"tab\there"])).is_err());
        assert!(parse_key(&headers(&["caf\u{e9}".as_bytes()])).is_err());
        assert!(parse_key(&headers(&[b"a", b"b"])).is_err(), "two headers");
    }
}
