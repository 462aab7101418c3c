//! One log line per request, written in one place: method, route template, status, latency, dialect, instance where
//! known, and the request id (`x-request-id`, taken from the client when it sends a sensible one, made up otherwise,
//! and echoed on the answer). A 4xx is logged at info, a 5xx at error with the whole cause chain. The code that turns
//! an error into an answer (native or a dialect's) attaches the cause to the response (`FailureCause`) instead of
//! logging it, so that each failure is logged once, on its request's line.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::http::{HeaderName, HeaderValue, Response};
use axum::middleware::Next;
use convene_core::InstanceId;
use tracing::Instrument as _;

/// The header that carries a request's id, both ways.
pub static REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The longest request id taken from a client; a longer one, or one with other than visible ASCII, is replaced.
const MAX_REQUEST_ID_CHARS: usize = 128;

/// What the layers and extractors inside learn about a request, for its log line. The request log puts one in the
/// request's extensions; a clone reaches wherever the request goes (also into the task that runs a change).
#[derive(Clone, Default)]
pub struct RequestNotes(Arc<Mutex<Notes>>);

#[derive(Default)]
struct Notes {
    route: Option<String>,
    dialect: Option<&'static str>,
    instance: Option<InstanceId>,
}

impl RequestNotes {
    fn with<T>(&self, f: impl FnOnce(&mut Notes) -> T) -> T {
        f(&mut self.0.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// Notes the instance a request acts for (a dialect's credentials name one).
    pub fn instance(extensions: &axum::http::Extensions, id: InstanceId) {
        if let Some(notes) = extensions.get::<Self>() {
            notes.note_instance(id);
        }
    }

    /// `instance`, for code that holds the notes rather than the request.
    pub fn note_instance(&self, id: InstanceId) {
        self.with(|n| n.instance = Some(id));
    }

    fn dialect(extensions: &axum::http::Extensions, name: &'static str) {
        if let Some(notes) = extensions.get::<Self>() {
            notes.with(|n| n.dialect = Some(name));
        }
    }
}

/// Why a request failed, as the error's full chain, carried on the response from where the error became an answer
/// to the request log. Never sent to the client.
#[derive(Clone)]
pub struct FailureCause(pub Arc<str>);

impl FailureCause {
    /// Attaches `cause` to `response` for its log line.
    pub fn attach<B>(response: &mut Response<B>, cause: &impl std::fmt::Debug) {
        response.extensions_mut().insert(Self(format!("{cause:?}").into()));
    }
}

/// The request's id, a span with it for everything logged on its behalf, its line and its metrics. It runs inside
/// `run_to_completion`, so a change whose client hung up is still logged and counted.
pub async fn layer(mut request: Request, next: Next) -> axum::response::Response {
    let started = Instant::now();
    let id = request
        .headers()
        .get(&REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= MAX_REQUEST_ID_CHARS && v.bytes().all(|b| b.is_ascii_graphic()))
        .map_or_else(|| uuid::Uuid::now_v7().to_string(), str::to_owned);
    let notes = RequestNotes::default();
    request.extensions_mut().insert(notes.clone());
    let method = request.method().clone();
    let span = tracing::info_span!("request", request_id = %id);
    let mut response = next.run(request).instrument(span.clone()).await;
    if let Ok(value) = HeaderValue::from_str(&id) {
        response.headers_mut().insert(REQUEST_ID.clone(), value);
    }
    let cause = response.extensions_mut().remove::<FailureCause>();
    let elapsed = started.elapsed();
    let latency_ms = u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX);
    let status = response.status().as_u16();
    let _entered = span.enter();
    notes.with(|n| {
        let route = n.route.as_deref().unwrap_or("unmatched");
        let dialect = n.dialect.unwrap_or("native");
        let instance = n.instance.map(|i| i.0);
        let mut labels =
            vec![("method", method.to_string()), ("route", route.to_owned()), ("dialect", dialect.to_owned())];
        metrics::histogram!(crate::telemetry::HTTP_REQUEST_DURATION, &labels).record(elapsed.as_secs_f64());
        labels.push(("status", status.to_string()));
        metrics::counter!(crate::telemetry::HTTP_REQUESTS, &labels).increment(1);
        if response.status().is_server_error() {
            let cause = cause.as_ref().map_or("", |c| &c.0);
            tracing::error!(%method, route, status, latency_ms, dialect, instance, cause, "request failed");
        } else {
            tracing::info!(%method, route, status, latency_ms, dialect, instance, "request");
        }
    });
    response
}

/// Notes the route template a request matched (`/v1/groups/{group}`, never the path with its ids). A route layer:
/// axum knows the template only once it has routed.
pub async fn note_route(request: Request, next: Next) -> axum::response::Response {
    if let (Some(notes), Some(path)) =
        (request.extensions().get::<RequestNotes>(), request.extensions().get::<MatchedPath>())
    {
        notes.with(|n| n.route = Some(path.as_str().to_owned()));
    }
    next.run(request).await
}

/// A route layer naming the dialect of the routes it wraps.
pub fn note_dialect(
    name: &'static str,
) -> impl Fn(Request) -> std::future::Ready<Request> + Clone + Send + Sync + 'static {
    move |request: Request| {
        RequestNotes::dialect(request.extensions(), name);
        std::future::ready(request)
    }
}

#[cfg(test)]
mod tests {
    use axum::Router;
    use axum::body::Body;
    use axum::routing::get;
    use tower::ServiceExt as _;

    use super::*;

    async fn answer(request: axum::http::Request<Body>) -> axum::response::Response {
        let app = Router::new()
            .route("/things/{id}", get(|| async { "ok" }))
            .route_layer(axum::middleware::from_fn(note_route))
            .layer(axum::middleware::from_fn(layer));
        app.oneshot(request).await.unwrap()
    }

    #[tokio::test]
    async fn a_sensible_request_id_is_echoed_and_a_missing_or_odd_one_replaced() {
        let with = |id: &str| axum::http::Request::get("/things/1").header("x-request-id", id).body(Body::empty());
        let echoed = answer(with("abc-123").unwrap()).await;
        assert_eq!(echoed.headers()["x-request-id"], "abc-123");
        for odd in ["has space", &"x".repeat(MAX_REQUEST_ID_CHARS + 1), ""] {
            let replaced = answer(with(odd).unwrap()).await;
            let id = replaced.headers()["x-request-id"].to_str().unwrap();
            assert!(uuid::Uuid::parse_str(id).is_ok(), "{odd:?} → {id}");
        }
        let made_up = answer(axum::http::Request::get("/nowhere").body(Body::empty()).unwrap()).await;
        assert!(uuid::Uuid::parse_str(made_up.headers()["x-request-id"].to_str().unwrap()).is_ok());
    }
}
