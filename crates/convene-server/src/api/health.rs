//! `GET /v1/health`: the numbers counted by state, and the ones that need a look. `/readyz` stays about Convene
//! itself (its database); this is about the numbers behind it.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::State;
use convene_core::{ConnectorKind, InstanceId, InstanceState, PhoneNumber};
use serde::Serialize;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::AppState;
use crate::auth::AccountKey;
use crate::error::Result;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(health))
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct HealthSummaryOut {
    /// Instances the key can see.
    #[schema(example = 3)]
    pub instances: u64,
    /// Instances per state; every state is listed, zero or not.
    #[schema(example = json!({"starting": 0, "connecting": 0, "pairing": 0, "connected": 2, "disconnected": 0,
        "unreachable": 1, "logged_out": 0, "temporarily_banned": 0}))]
    pub by_state: BTreeMap<String, u64>,
    /// The same, per kind of instance (`sandbox`, `whatsapp`).
    pub by_kind: BTreeMap<String, BTreeMap<String, u64>>,
    /// Every instance that is not connected, oldest first, with its state: an unreachable one says what failed,
    /// since when, and when it is tried again.
    pub not_connected: Vec<InstanceHealthOut>,
}

/// An instance that is not connected.
#[derive(Serialize, utoipa::ToSchema)]
pub struct InstanceHealthOut {
    pub id: InstanceId,
    pub kind: ConnectorKind,
    #[schema(example = "Support desk")]
    pub name: String,
    pub phone: Option<PhoneNumber>,
    pub state: InstanceState,
}

/// How the numbers are doing: instances counted by state (overall and per kind), and every one that is not
/// connected with its state — for an unreachable number, the error in words, when the outage began and the next
/// attempt. A key scoped to some instances counts only those. `GET /readyz` is about Convene itself, not the numbers.
#[utoipa::path(get, path = "/health", tag = "instances", operation_id = "v1.health",
    responses((status = 200, body = HealthSummaryOut)), security(("api_key" = [])))]
async fn health(State(state): State<AppState>, key: AccountKey) -> Result<Json<HealthSummaryOut>> {
    let health = state.service.instance_health(|id| key.sees(id)).await?;
    let mut out = HealthSummaryOut {
        instances: 0,
        by_state: BTreeMap::new(),
        by_kind: BTreeMap::new(),
        not_connected: Vec::with_capacity(health.not_connected.len()),
    };
    for ((kind, name), count) in health.counts {
        out.instances += count;
        *out.by_state.entry(name.to_owned()).or_default() += count;
        out.by_kind.entry(kind.to_owned()).or_default().insert(name.to_owned(), count);
    }
    out.not_connected.extend(health.not_connected.into_iter().map(|(record, state)| InstanceHealthOut {
        id: record.id,
        kind: record.kind,
        name: record.name,
        phone: record.phone,
        state,
    }));
    Ok(Json(out))
}
