//! Liveness and readiness, for load balancers and orchestrators. No credentials.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Serialize;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::AppState;

#[derive(Serialize, utoipa::ToSchema)]
pub struct HealthOut {
    #[schema(example = "ok")]
    pub status: &'static str,
}

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(healthz))
        .routes(routes!(readyz))
        .routes(routes!(crate::telemetry::serve_metrics))
}

/// The process is up.
#[utoipa::path(get, path = "/healthz", tag = "system", operation_id = "system.health",
    responses((status = 200, body = HealthOut)))]
async fn healthz() -> Json<HealthOut> {
    Json(HealthOut { status: "ok" })
}

/// The process can serve requests: its database answers.
#[utoipa::path(get, path = "/readyz", tag = "system", operation_id = "system.ready",
    responses((status = 200, body = HealthOut), (status = 503, body = HealthOut)))]
async fn readyz(State(state): State<AppState>) -> (StatusCode, Json<HealthOut>) {
    match state.store.count_api_keys().await {
        Ok(_) => (StatusCode::OK, Json(HealthOut { status: "ready" })),
        Err(e) => {
            tracing::warn!(error = %e, "readiness check failed");
            (StatusCode::SERVICE_UNAVAILABLE, Json(HealthOut { status: "database unavailable" }))
        }
    }
}
