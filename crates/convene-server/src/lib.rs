//! Convene's server: configuration, the group service, the native HTTP API and its OpenAPI document, and the
//! wiring that starts them. The binary (`convene`) only parses the command line and calls in here.
#![forbid(unsafe_code)]

use std::sync::Arc;

use anyhow::Context as _;
use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::extract::Request;
use axum::http::Uri;
use convene_core::{Clock, Store, SystemClock};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use utoipa_swagger_ui::SwaggerUi;

pub mod api;
pub mod auth;
pub mod cluster;
pub mod config;
mod connectors;
pub mod console;
pub mod delivery;
pub mod dialects;
pub mod error;
pub mod extract;
pub mod idempotency;
mod internal;
pub mod qr;
pub mod request_log;
pub mod service;
pub mod telemetry;
pub mod worker;

pub use config::Config;
pub use connectors::Networks;
use error::ApiError;
pub use service::{Bootstrap, Service};

/// What every handler can reach, behind one `Arc`: axum clones the state for every extractor of every request, and
/// cloning the parts one by one showed in the bench's profile.
#[derive(Clone)]
pub struct AppState(Arc<AppParts>);

impl std::ops::Deref for AppState {
    type Target = AppParts;

    fn deref(&self) -> &AppParts {
        &self.0
    }
}

pub struct AppParts {
    pub store: Arc<dyn Store>,
    pub service: Service,
    /// Seals what is kept secret at rest: webhook endpoints' secrets, the answers kept for Idempotency-Key replays.
    pub secrets: Arc<delivery::SecretBox>,
    /// The webhook endpoints, their deliveries and replays.
    pub endpoints: service::endpoints::WebhookEndpoints,
    /// What the webhook dispatcher needs besides the store.
    clock: Arc<dyn Clock>,
    /// Pages of `GET /v1/groups` as they were sent, while still current.
    pub listed_groups: api::listed_groups::ListedGroups,
}

impl AppState {
    /// Opens the store (creating and migrating it) and each kind's network, and starts the service.
    pub async fn open(config: &Config, clock: Arc<dyn Clock>) -> anyhow::Result<Self> {
        delivery::install_tls_provider();
        std::fs::create_dir_all(&config.data_dir)
            .with_context(|| format!("creating the data directory {}", config.data_dir.display()))?;
        // The data directory holds the database, device keys and the secrets key: its owner's only, also when an
        // older version made it readable by others.
        #[cfg(unix)]
        if let Err(e) = std::fs::set_permissions(&config.data_dir, std::os::unix::fs::PermissionsExt::from_mode(0o700))
        {
            tracing::warn!(dir = %config.data_dir.display(), error = %e, "could not make the data directory private");
        }
        telemetry::handle();
        let store = convene_store::connect(&config.database_url).await.context("opening the database")?;
        let secrets = Arc::new(delivery::open_secret_box(&config.webhooks, &config.data_dir)?);
        let placement = cluster::placement(config, &secrets)?;
        // After the database: real numbers keep their device keys there, sealed with the same key.
        let networks = Networks::open(config, store.clone(), secrets.clone(), clock.clone()).await?;
        let targets =
            Arc::new(delivery::TargetPolicy::new(&config.webhooks.allow_private_targets).map_err(anyhow::Error::msg)?);
        let service = Service::start(store.clone(), networks, clock.clone(), config.creation.clone(), placement)
            .await
            .map_err(|e| anyhow::anyhow!("{e:?}"))?;
        let endpoints = service::endpoints::WebhookEndpoints::new(
            store.clone(),
            clock.clone(),
            secrets.clone(),
            targets,
            service.outbox().dispatcher_wake(),
        );
        Ok(Self(Arc::new(AppParts { store, service, secrets, endpoints, clock, listed_groups: Default::default() })))
    }

    /// `open` with the wall clock.
    pub async fn open_with_system_clock(config: &Config) -> anyhow::Result<Self> {
        Self::open(config, Arc::new(SystemClock)).await
    }
}

/// The OpenAPI document, as `/openapi.json` serves it and `convene openapi` writes it.
pub fn openapi() -> utoipa::openapi::OpenApi {
    api::router().split_for_parts().1
}

/// The whole HTTP application: the API, the provider dialects, `/openapi.json`, the docs page at `/docs`, JSON 404
/// and 405 answers.
pub fn router(state: AppState, max_body_bytes: usize) -> Router {
    let (api, spec) = api::router().split_for_parts();
    // Idempotency-Key is the native API's; the dialects answer as their providers do.
    let api = api
        .route_layer(axum::middleware::from_fn_with_state(state.clone(), idempotency::layer))
        .merge(dialects::router())
        .merge(console::router())
        .merge(internal::router(state.clone()));
    // The validator badge would call swagger.io from the reader's browser: off, so the page stays local.
    let docs = SwaggerUi::new("/docs")
        .url("/openapi.json", spec)
        .config(utoipa_swagger_ui::Config::new(["/openapi.json"]).validator_url("none"));
    api.merge(docs)
        .fallback(|uri: Uri| async move { ApiError::NotFound(format!("no route {}", uri.path())) })
        .method_not_allowed_fallback(|uri: Uri| async move {
            ApiError::MethodNotAllowed(format!("{} does not take this method; see /docs", uri.path()))
        })
        .route_layer(axum::middleware::from_fn(request_log::note_route))
        .layer(DefaultBodyLimit::max(max_body_bytes))
        // Inside `run_to_completion`: a change whose client hung up still gets its log line and its metrics.
        .layer(axum::middleware::from_fn(request_log::layer))
        .layer(axum::middleware::from_fn(run_to_completion))
        .with_state(state)
}

/// Runs every request that changes something (POST, PUT, PATCH, DELETE; native and every dialect) in a task of its
/// own, so that a client that hangs up or times out does not cut the change off halfway: a creation runs to its end
/// and is recorded, and the client's retry finds it (by its Idempotency-Key, or the creation's duplicate window).
async fn run_to_completion(request: Request, next: axum::middleware::Next) -> axum::response::Response {
    use axum::response::IntoResponse as _;
    use tracing::Instrument as _;
    if request.method().is_safe() {
        return next.run(request).await;
    }
    match tokio::spawn(next.run(request).in_current_span()).await {
        Ok(response) => response,
        Err(e) => ApiError::internal(anyhow::anyhow!("the request handler failed: {e}")).into_response(),
    }
}

/// Serves until `shutdown` is cancelled, then finishes the requests in flight. Runs the job worker beside the
/// API when the configuration enables it.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    config: &Config,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let worker = config.worker.enabled.then(|| {
        let (service, shutdown) = (state.service.clone(), shutdown.clone());
        let poll = std::time::Duration::from_millis(config.worker.poll_ms);
        tokio::spawn(async move { worker::run(service, poll, shutdown).await })
    });
    let dispatcher = if config.webhooks.enabled {
        let dispatcher = delivery::Dispatcher::new(
            state.store.clone(),
            state.clock.clone(),
            config.webhooks.clone(),
            state.secrets.clone(),
        )
        .map_err(|e| std::io::Error::other(format!("{e:#}")))?;
        let (wake, shutdown) = (state.service.outbox().dispatcher_wake(), shutdown.clone());
        Some(tokio::spawn(async move { dispatcher.run(wake, shutdown).await }))
    } else {
        None
    };
    let leases = {
        let (instances, shutdown) = (state.service.instances().clone(), shutdown.clone());
        if instances.node().is_some() {
            instances.advertise(config.cluster.advertised(listener.local_addr()?));
        }
        tokio::spawn(async move { instances.keep_leases(shutdown).await })
    };
    let service = state.service.clone();
    let served = serve_api(listener, state, config, shutdown.clone()).await;
    shutdown.cancel();
    for task in [worker, dispatcher, Some(leases)].into_iter().flatten() {
        let _ = task.await;
    }
    service.shutdown().await;
    served
}

async fn serve_api(
    listener: TcpListener,
    state: AppState,
    config: &Config,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let app = tower::ServiceExt::<Request>::map_request(router(state, config.max_body_bytes), collapse_leading_slashes);
    axum::serve(listener, axum::ServiceExt::<Request>::into_make_service(app))
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await
}

/// Green API's clients build `host + "/waInstance…"`, so a host configured with a trailing slash sends
/// `//waInstance…`. Routing happens after this, so one rule serves every route.
fn collapse_leading_slashes(mut request: Request) -> Request {
    let path = request.uri().path();
    if path.starts_with("//") {
        let collapsed = format!("/{}", path.trim_start_matches('/'));
        let path_and_query = match request.uri().query() {
            Some(q) => format!("{collapsed}?{q}"),
            None => collapsed,
        };
        let mut parts = request.uri().clone().into_parts();
        if let Ok(pq) = path_and_query.parse() {
            parts.path_and_query = Some(pq);
            if let Ok(uri) = Uri::from_parts(parts) {
                *request.uri_mut() = uri;
            }
        }
    }
    request
}

/// The OpenAPI document as committed in `openapi.json`: pretty JSON with a final newline.
pub fn openapi_json() -> String {
    let mut json = openapi().to_pretty_json().expect("the OpenAPI document serialises");
    json.push('\n');
    json
}
