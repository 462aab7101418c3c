//! `/v1/instances`: the numbers Convene runs groups from.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use convene_core::store::InstanceRecord;
use convene_core::{ConnectorKind, InstanceId, InstanceState, PhoneNumber, Timestamp};
use serde::{Deserialize, Serialize};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::AppState;
use crate::auth::AccountKey;
use crate::error::{ApiError, ErrorBody, Result};
use crate::extract::{ApiJson, ApiPath};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(create_instance, list_instances)).routes(routes!(get_instance, delete_instance))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct InstanceIn {
    /// `sandbox` (the built-in simulated network). Real WhatsApp numbers are not supported yet.
    #[serde(default = "sandbox_kind")]
    pub kind: ConnectorKind,
    /// A name for people; defaults to "Sandbox <number>".
    #[schema(example = "Support desk")]
    pub name: Option<String>,
    /// For sandbox instances: the simulated number. Defaults to the next free +1 201-555-01xx number.
    #[schema(example = "+12015550142")]
    pub phone: Option<String>,
}

fn sandbox_kind() -> ConnectorKind {
    ConnectorKind::Sandbox
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct InstanceOut {
    /// Also usable as Green API `idInstance`, Z-API instance id and Wawp `instance_id`.
    pub id: InstanceId,
    pub kind: ConnectorKind,
    #[schema(example = "Support desk")]
    pub name: String,
    /// The instance's own number, once known.
    pub phone: Option<PhoneNumber>,
    pub state: InstanceState,
    pub created_at: Timestamp,
}

impl InstanceOut {
    pub fn new(record: InstanceRecord, state: InstanceState) -> Self {
        Self {
            id: record.id,
            kind: record.kind,
            name: record.name,
            phone: record.phone,
            state,
            created_at: record.created_at,
        }
    }
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct InstanceCreatedOut {
    #[serde(flatten)]
    pub instance: InstanceOut,
    /// The instance token (Green API `apiTokenInstance`, Z-API path token, Wawp `access_token`). Shown only here.
    #[schema(example = "3f1c0e9a7b5d4c2e8f6a1b3c5d7e9f0a2b4c6d8e0f1a3b5c7d")]
    pub token: String,
}

pub(crate) fn parse_instance_id(raw: &str) -> Result<InstanceId> {
    InstanceId::parse(raw)
        .ok_or_else(|| ApiError::NotFound(format!("no instance `{raw}` (instance ids are ten digits)")))
}

/// Create an instance. The response carries the instance token, which is not shown again.
#[utoipa::path(post, path = "/instances", tag = "instances", operation_id = "v1.instance.create",
    request_body(content = InstanceIn, example = json!({"kind": "sandbox", "name": "Support desk"})),
    responses((status = 201, body = InstanceCreatedOut), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)),
    security(("api_key" = [])))]
async fn create_instance(
    State(state): State<AppState>,
    _key: AccountKey,
    ApiJson(input): ApiJson<InstanceIn>,
) -> Result<(StatusCode, Json<InstanceCreatedOut>)> {
    let (record, token) =
        state.service.create_instance(input.kind, input.name.as_deref(), input.phone.as_deref()).await?;
    let live = state.service.instance_state(record.id).await;
    Ok((StatusCode::CREATED, Json(InstanceCreatedOut { instance: InstanceOut::new(record, live), token })))
}

/// List instances with their connection state.
#[utoipa::path(get, path = "/instances", tag = "instances", operation_id = "v1.instance.list",
    responses((status = 200, body = Vec<InstanceOut>)), security(("api_key" = [])))]
async fn list_instances(State(state): State<AppState>, _key: AccountKey) -> Result<Json<Vec<InstanceOut>>> {
    let list = state.service.list_instances().await?;
    Ok(Json(list.into_iter().map(|(r, s)| InstanceOut::new(r, s)).collect()))
}

/// Get an instance and its connection state.
#[utoipa::path(get, path = "/instances/{id}", tag = "instances", operation_id = "v1.instance.get",
    params(("id" = String, Path, description = "Instance id", example = "7103000001")),
    responses((status = 200, body = InstanceOut), (status = 404, body = ErrorBody)), security(("api_key" = [])))]
async fn get_instance(
    State(state): State<AppState>,
    _key: AccountKey,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<InstanceOut>> {
    let (record, live) = state.service.instance(parse_instance_id(&id)?).await?;
    Ok(Json(InstanceOut::new(record, live)))
}

/// Delete an instance and Convene's records of its groups. The groups themselves stay on WhatsApp.
#[utoipa::path(delete, path = "/instances/{id}", tag = "instances", operation_id = "v1.instance.delete",
    params(("id" = String, Path, description = "Instance id", example = "7103000001")),
    responses((status = 204), (status = 404, body = ErrorBody)), security(("api_key" = [])))]
async fn delete_instance(
    State(state): State<AppState>,
    _key: AccountKey,
    ApiPath(id): ApiPath<String>,
) -> Result<StatusCode> {
    state.service.delete_instance(parse_instance_id(&id)?).await?;
    Ok(StatusCode::NO_CONTENT)
}
