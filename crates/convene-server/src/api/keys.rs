//! `/v1/keys`: the account's API keys, which an operator can scope to some instances, make read-only and revoke;
//! and `/v1/instances/{id}/token/rotate`, a new instance token. Who may call what is `crate::auth`'s.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use convene_core::store::ApiKeyRecord;
use convene_core::{InstanceId, Timestamp};
use serde::{Deserialize, Serialize};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::instances::parse_instance_id;
use super::page::{Cursor, Page, PageParams};
use crate::AppState;
use crate::auth::{AccountKey, AccountWideKey, KeyGrant};
use crate::error::{ApiError, ErrorBody, Result};
use crate::extract::{ApiJson, ApiPath, ApiQuery};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_key, list_keys))
        .routes(routes!(revoke_key))
        .routes(routes!(rotate_instance_token))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct KeyIn {
    /// A name to tell keys apart, 1 to 100 characters without control characters, not all spaces.
    #[schema(
        example = "CRM integration",
        min_length = 1,
        max_length = 100,
        pattern = r"^[^\x00-\x1f\x7f-\x9f]*[^\s\x00-\x1f\x7f-\x9f][^\x00-\x1f\x7f-\x9f]*$"
    )]
    pub name: String,
    /// Limit the key to these instances: it sees and acts on them alone, and nothing account-wide. Leave it out
    /// for a key to the whole account.
    #[schema(example = json!([7103000001_i64]), min_items = 1)]
    pub instance_ids: Option<Vec<InstanceId>>,
    /// A read-only key can read but change nothing. Default false.
    #[serde(default)]
    pub read_only: bool,
}

/// An API key as listings show it: never the secret.
#[derive(Serialize, utoipa::ToSchema)]
pub struct KeyOut {
    pub id: Uuid,
    #[schema(example = "CRM integration")]
    pub name: String,
    /// The key's first characters, to recognise it.
    #[schema(example = "cvn_3f1c0e")]
    pub prefix: String,
    /// The instances the key is limited to; `null`: the whole account.
    pub instance_ids: Option<Vec<InstanceId>>,
    pub read_only: bool,
    pub created_at: Timestamp,
    /// When the key last authenticated a request, to the minute; `null` if never.
    pub last_used_at: Option<Timestamp>,
}

impl From<ApiKeyRecord> for KeyOut {
    fn from(k: ApiKeyRecord) -> Self {
        Self {
            id: k.id,
            name: k.name,
            prefix: k.prefix,
            instance_ids: k.instance_ids,
            read_only: k.read_only,
            created_at: k.created_at,
            last_used_at: k.last_used_at,
        }
    }
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct KeyCreatedOut {
    #[serde(flatten)]
    pub key: KeyOut,
    /// The API key. Shown only here: Convene keeps only its SHA-256.
    #[schema(example = "cvn_3f1c0e9a7b5d4c2e8f6a1b3c5d7e9f0a2b4c6d8e")]
    pub secret: String,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct InstanceTokenOut {
    pub instance_id: InstanceId,
    /// The new instance token (Green API `apiTokenInstance`, Z-API path token, Wawp `access_token`). Shown only
    /// here; the old token is refused from now on.
    #[schema(example = "3f1c0e9a7b5d4c2e8f6a1b3c5d7e9f0a2b4c6d8e0f1a3b5c7d")]
    pub token: String,
}

/// Create an API key, optionally limited to some instances or read-only. The secret is in this answer only.
/// Needs a key for the whole account that is not read-only.
#[utoipa::path(post, path = "/keys", tag = "keys", operation_id = "v1.key.create",
    request_body(content = KeyIn, example = json!({"name": "CRM integration", "instance_ids": [7103000001_i64], "read_only": false})),
    responses((status = 201, body = KeyCreatedOut), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody, description = "An instance named in `instance_ids` does not exist."),
        (status = 422, body = ErrorBody)),
    security(("api_key" = [])))]
async fn create_key(
    State(state): State<AppState>,
    _key: AccountWideKey,
    ApiJson(input): ApiJson<KeyIn>,
) -> Result<(StatusCode, Json<KeyCreatedOut>)> {
    let grant = KeyGrant { instance_ids: input.instance_ids, read_only: input.read_only };
    let (secret, record) = state.service.keys().create(&input.name, grant).await?;
    Ok((StatusCode::CREATED, Json(KeyCreatedOut { key: record.into(), secret })))
}

/// List the account's API keys, oldest first, without their secrets. Needs a key for the whole account.
#[utoipa::path(get, path = "/keys", tag = "keys", operation_id = "v1.key.list", params(PageParams),
    responses((status = 200, body = Page<KeyOut>), (status = 403, body = ErrorBody)), security(("api_key" = [])))]
async fn list_keys(
    State(state): State<AppState>,
    _key: AccountWideKey,
    ApiQuery(page): ApiQuery<PageParams>,
) -> Result<Json<Page<KeyOut>>> {
    let all = state.service.keys().list().await?;
    let page = Page::from_all(all, &page, |k| Cursor::new(k.created_at.as_millis(), Some(k.id)))?;
    Ok(Json(page.map(KeyOut::from)))
}

/// Revoke an API key: it is refused from the next request on. The last key for the whole account that is not
/// read-only cannot be revoked (409), so the account always keeps a key that can issue keys. Needs a key for the
/// whole account that is not read-only.
#[utoipa::path(delete, path = "/keys/{id}", tag = "keys", operation_id = "v1.key.revoke",
    params(("id" = Uuid, Path, description = "Key id")),
    responses((status = 204), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody)),
    security(("api_key" = [])))]
async fn revoke_key(
    State(state): State<AppState>,
    _key: AccountWideKey,
    ApiPath(id): ApiPath<String>,
) -> Result<StatusCode> {
    let id = Uuid::parse_str(&id).map_err(|_| ApiError::NotFound(format!("no API key `{id}`")))?;
    state.service.keys().revoke(id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Give the instance a new token (Green API `apiTokenInstance`, Z-API path token, Wawp `access_token`); the old one
/// is refused from now on. The new token is in this answer only.
#[utoipa::path(post, path = "/instances/{id}/token/rotate", tag = "instances", operation_id = "v1.instance.token.rotate",
    params(("id" = String, Path, description = "Instance id", example = "7103000001")),
    responses((status = 200, body = InstanceTokenOut), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("api_key" = [])))]
async fn rotate_instance_token(
    State(state): State<AppState>,
    key: AccountKey,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<InstanceTokenOut>> {
    let id = key.instance(parse_instance_id(&id)?)?;
    let token = state.service.instances().rotate_token(id).await?;
    Ok(Json(InstanceTokenOut { instance_id: id, token }))
}

/// Adds the 403 a key's limits give to every `/v1` operation that does not document one already: a read-only key's
/// change, a scoped key's account-wide call.
pub fn document(openapi: &mut utoipa::openapi::OpenApi) {
    use utoipa::openapi::{ContentBuilder, Ref, RefOr, ResponseBuilder};

    const NAME: &str = "KeyNotAllowed";
    let response = ResponseBuilder::new()
        .description(
            "The API key may not do this: `read_only_key` (a read-only key asked for a change) or \
             `account_wide_key_required` (a key limited to some instances asked for something of the whole account)",
        )
        .content("application/json", ContentBuilder::new().schema(Some(Ref::from_schema_name("ErrorBody"))).build())
        .build();
    openapi.components.get_or_insert_with(Default::default).responses.insert(NAME.into(), RefOr::T(response));
    for item in openapi.paths.paths.iter_mut().filter(|(path, _)| path.starts_with("/v1/")).map(|(_, item)| item) {
        let operations = [&mut item.get, &mut item.post, &mut item.put, &mut item.patch, &mut item.delete];
        for operation in operations.into_iter().flatten() {
            operation
                .responses
                .responses
                .entry("403".into())
                .or_insert_with(|| RefOr::Ref(Ref::new(format!("#/components/responses/{NAME}"))));
        }
    }
}
