//! `/v1/instances`: the numbers Convene runs groups from.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use convene_core::store::InstanceRecord;
use convene_core::{ConnectorKind, InstanceId, InstanceState, PacingPolicy, PhoneNumber, Timestamp};
use serde::{Deserialize, Serialize};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::page::{Cursor, Page, PageParams};
use crate::AppState;
use crate::auth::{AccountKey, AccountWideKey};
use crate::connectors;
use crate::error::{ApiError, ErrorBody, Result};
use crate::extract::{ApiJson, ApiPath, ApiQuery};
use crate::service::Service;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_instance, list_instances))
        .routes(routes!(get_instance, delete_instance))
        .routes(routes!(get_settings, put_settings))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct InstanceIn {
    /// `sandbox` (the built-in simulated network, the default) or `whatsapp` (a real number: pair it through
    /// `GET /v1/instances/{id}/qr` or `POST /v1/instances/{id}/pairing-code`).
    #[serde(default = "sandbox_kind", deserialize_with = "registered_kind")]
    pub kind: ConnectorKind,
    /// A name for people, 1 to 100 characters without control characters; defaults to "Sandbox <number>" or
    /// "WhatsApp number".
    #[schema(
        example = "Support desk",
        min_length = 1,
        max_length = 100,
        pattern = r"^[^\x00-\x1f\x7f-\x9f]*[^\s\x00-\x1f\x7f-\x9f][^\x00-\x1f\x7f-\x9f]*$"
    )]
    pub name: Option<String>,
    /// For sandbox instances: the simulated number. Defaults to the next free +1 201-555-01xx number. A `whatsapp`
    /// instance is whichever number pairs with it, so it takes no `phone` (422).
    #[schema(value_type = Option<PhoneNumber>, example = "+12015550142")]
    pub phone: Option<String>,
}

fn sandbox_kind() -> ConnectorKind {
    convene_sandbox::KIND
}

/// A kind this build has; another name is refused with the names it has, as serde words an unknown variant.
fn registered_kind<'de, D: serde::Deserializer<'de>>(deserializer: D) -> std::result::Result<ConnectorKind, D::Error> {
    let name = std::borrow::Cow::<str>::deserialize(deserializer)?;
    connectors::kind_named(&name).ok_or_else(|| serde::de::Error::unknown_variant(&name, connectors::kind_names()))
}

/// Lists the kinds this build has as the values a new instance's `kind` takes. Answers keep `ConnectorKind` a plain
/// name: an instance a newer build made may be of a kind this build does not have, and a client reading it should not
/// fail.
pub fn document(openapi: &mut utoipa::openapi::OpenApi) {
    use utoipa::openapi::RefOr;
    use utoipa::openapi::schema::{ObjectBuilder, Schema, Type};

    let names = || connectors::kind_names().iter().map(|name| serde_json::Value::from(*name));
    let schemas = &mut openapi.components.get_or_insert_with(Default::default).schemas;
    if let Some(RefOr::T(Schema::Object(kind))) = schemas.get_mut("ConnectorKind") {
        kind.description = Some(format!(
            "The kind of network an instance is on, by name: {} in this build.",
            connectors::kind_names_in_words()
        ));
    }
    if let Some(RefOr::T(Schema::Object(instance_in))) = schemas.get_mut("InstanceIn")
        && let Some(kind) = instance_in.properties.get_mut("kind")
    {
        let description = match kind {
            RefOr::Ref(r) => Some(r.description.clone()),
            RefOr::T(Schema::Object(o)) => o.description.clone(),
            RefOr::T(_) => None,
        };
        *kind = RefOr::T(Schema::Object(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .enum_values(Some(names()))
                .default(Some(serde_json::Value::from(convene_sandbox::KIND.as_str())))
                .description(description)
                .build(),
        ));
    }
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
    /// Group creation on this instance: its pacing, when it may next create, and a pause WhatsApp imposed.
    pub creation: CreationStatusOut,
    pub created_at: Timestamp,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct CreationStatusOut {
    /// The pacing in force: the instance's own, or its kind's default.
    pub pacing: PacingPolicy,
    /// The earliest time the next group can be created.
    pub next_creation_at: Timestamp,
    /// Creation attempts in the last 24 hours, which `pacing.daily_cap` counts.
    #[schema(example = 4)]
    pub created_last_day: u32,
    /// Set while WhatsApp's `rate-overlimit` or a temporary ban pauses creation.
    pub paused_until: Option<Timestamp>,
    pub pause_reason: Option<String>,
}

impl InstanceOut {
    pub async fn load(service: &Service, record: InstanceRecord, state: InstanceState) -> Result<Self> {
        let status = service.creation_status(&record, service.now()).await?;
        let creation = CreationStatusOut {
            pacing: status.pacing,
            next_creation_at: status.next_creation_at,
            created_last_day: u32::try_from(status.created_last_day).unwrap_or(u32::MAX),
            paused_until: status.pause.as_ref().map(|p| p.until),
            pause_reason: status.pause.map(|p| p.reason),
        };
        Ok(Self {
            id: record.id,
            kind: record.kind,
            name: record.name,
            phone: record.phone,
            state,
            creation,
            created_at: record.created_at,
        })
    }
}

/// What an instance does by default.
#[derive(Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct InstanceSettingsIO {
    /// This instance's own pacing; `null` takes its kind's default.
    pub pacing: Option<PacingPolicy>,
    /// Send private invites to those privacy settings keep out, unless a request says otherwise.
    #[serde(default)]
    pub auto_invite: bool,
    /// Numbers added to every group this instance creates and made admins, so a group outlives this number.
    #[serde(default)]
    #[schema(value_type = Vec<PhoneNumber>, max_items = 1023, example = json!(["+12015550199"]))]
    pub backup_admins: Vec<String>,
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

/// An `instance_id` query parameter as `key` may use it: a value that cannot be an instance id is refused, naming
/// the parameter; an instance outside the key's scope is not found; and a key scoped to one instance means that one
/// when the parameter is absent.
pub(crate) fn instance_filter(key: &AccountKey, id: Option<InstanceId>) -> Result<Option<InstanceId>> {
    match id {
        Some(id) if !(InstanceId::MIN..=InstanceId::MAX).contains(&id.0) => {
            Err(ApiError::field("instance_id", "instance ids are ten digits"))
        }
        Some(id) => key.instance(id).map(Some),
        None => Ok(key.sole_instance()),
    }
}

/// Create an instance. The response carries the instance token, which is not shown again.
#[utoipa::path(post, path = "/instances", tag = "instances", operation_id = "v1.instance.create",
    request_body(content = InstanceIn, example = json!({"kind": "sandbox", "name": "Support desk"})),
    responses((status = 201, body = InstanceCreatedOut), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)),
    security(("api_key" = [])))]
async fn create_instance(
    State(state): State<AppState>,
    _key: AccountWideKey,
    ApiJson(input): ApiJson<InstanceIn>,
) -> Result<(StatusCode, Json<InstanceCreatedOut>)> {
    let (record, token) =
        state.service.instances().create(input.kind, input.name.as_deref(), input.phone.as_deref()).await?;
    let live = state.service.instances().state(record.id).await;
    let instance = InstanceOut::load(&state.service, record, live).await?;
    Ok((StatusCode::CREATED, Json(InstanceCreatedOut { instance, token })))
}

/// List instances with their connection state, oldest first.
#[utoipa::path(get, path = "/instances", tag = "instances", operation_id = "v1.instance.list", params(PageParams),
    responses((status = 200, body = Page<InstanceOut>)), security(("api_key" = [])))]
async fn list_instances(
    State(state): State<AppState>,
    key: AccountKey,
    ApiQuery(page): ApiQuery<PageParams>,
) -> Result<Json<Page<InstanceOut>>> {
    let all: Vec<_> = state.service.instances().list().await?.into_iter().filter(|(r, _)| key.sees(r.id)).collect();
    let page = Page::from_all(all, &page, |(record, _)| Cursor::new(record.id.0, None))?;
    let mut items = Vec::with_capacity(page.items.len());
    for (record, live) in page.items {
        items.push(InstanceOut::load(&state.service, record, live).await?);
    }
    Ok(Json(Page { items, next_cursor: page.next_cursor }))
}

/// Get an instance and its connection state.
#[utoipa::path(get, path = "/instances/{id}", tag = "instances", operation_id = "v1.instance.get",
    params(("id" = String, Path, description = "Instance id", example = "7103000001")),
    responses((status = 200, body = InstanceOut), (status = 404, body = ErrorBody)), security(("api_key" = [])))]
async fn get_instance(
    State(state): State<AppState>,
    key: AccountKey,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<InstanceOut>> {
    let (record, live) = state.service.instances().get(key.instance(parse_instance_id(&id)?)?).await?;
    Ok(Json(InstanceOut::load(&state.service, record, live).await?))
}

/// Delete an instance and Convene's records of its groups. The groups themselves stay on WhatsApp.
#[utoipa::path(delete, path = "/instances/{id}", tag = "instances", operation_id = "v1.instance.delete",
    params(("id" = String, Path, description = "Instance id", example = "7103000001")),
    responses((status = 204), (status = 404, body = ErrorBody)), security(("api_key" = [])))]
async fn delete_instance(
    State(state): State<AppState>,
    key: AccountKey,
    ApiPath(id): ApiPath<String>,
) -> Result<StatusCode> {
    state.service.instances().delete(key.instance(parse_instance_id(&id)?)?).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The instance's defaults: pacing, private invites, backup admins.
#[utoipa::path(get, path = "/instances/{id}/settings", tag = "instances", operation_id = "v1.instance.settings.get",
    params(("id" = String, Path, description = "Instance id", example = "7103000001")),
    responses((status = 200, body = InstanceSettingsIO), (status = 404, body = ErrorBody)), security(("api_key" = [])))]
async fn get_settings(
    State(state): State<AppState>,
    key: AccountKey,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<InstanceSettingsIO>> {
    let settings = state.service.instances().settings(key.instance(parse_instance_id(&id)?)?).await?;
    Ok(Json(InstanceSettingsIO {
        pacing: settings.pacing,
        auto_invite: settings.auto_invite,
        backup_admins: settings.backup_admins.iter().map(PhoneNumber::e164).collect(),
    }))
}

/// Replace the instance's defaults.
#[utoipa::path(put, path = "/instances/{id}/settings", tag = "instances", operation_id = "v1.instance.settings.set",
    params(("id" = String, Path, description = "Instance id", example = "7103000001")),
    request_body(content = InstanceSettingsIO, example = json!({
        "pacing": {"min_interval_secs": 600, "burst": 1, "daily_cap": 20},
        "auto_invite": true,
        "backup_admins": ["+12015550199"]
    })),
    responses((status = 200, body = InstanceSettingsIO), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)),
    security(("api_key" = [])))]
async fn put_settings(
    State(state): State<AppState>,
    key: AccountKey,
    ApiPath(id): ApiPath<String>,
    ApiJson(input): ApiJson<InstanceSettingsIO>,
) -> Result<Json<InstanceSettingsIO>> {
    let id = key.instance(parse_instance_id(&id)?)?;
    let settings =
        state.service.instances().set_settings(id, input.pacing, input.auto_invite, &input.backup_admins).await?;
    Ok(Json(InstanceSettingsIO {
        pacing: settings.pacing,
        auto_invite: settings.auto_invite,
        backup_admins: settings.backup_admins.iter().map(PhoneNumber::e164).collect(),
    }))
}
