//! `/v1/groups`: create, read, change and leave groups; participants; invite links; pictures.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, FromRequest, Multipart, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use convene_core::store::{GroupListQuery, GroupRecord};
use convene_core::{
    GroupId, GroupJid, GroupMember, GroupPicture, GroupSettings, GroupSettingsPatch, InstanceId, ParticipantChange,
    PhoneNumber, Timestamp,
};
use serde::{Deserialize, Serialize};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::instances::instance_filter;
use super::listed_groups::PageKey;
use super::page::{Cursor, Page, PageParams};
use crate::AppState;
use crate::auth::AccountKey;
use crate::error::{ApiError, ErrorBody, Result};
use crate::extract::{ApiJson, ApiPath, ApiQuery};
use crate::idempotency::IDEMPOTENCY_KEY;
use crate::service::{GroupChange, GroupView, NewGroup, ParticipantReport, RetryGuard};

/// Form overhead allowed on top of the largest picture.
const PICTURE_FORM_OVERHEAD: usize = 64 * 1024;

pub fn router() -> OpenApiRouter<AppState> {
    let picture = OpenApiRouter::new()
        .routes(routes!(set_picture))
        .layer(DefaultBodyLimit::max(GroupPicture::MAX_BYTES + PICTURE_FORM_OVERHEAD));
    OpenApiRouter::new()
        .routes(routes!(create_group, list_groups))
        .routes(routes!(get_group, update_group))
        .routes(routes!(leave_group))
        .routes(routes!(change_participants))
        .routes(routes!(get_invite_link))
        .routes(routes!(reset_invite_link))
        .merge(picture)
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GroupIn {
    /// The instance that creates the group and becomes its creator.
    pub instance_id: InstanceId,
    /// 1 to 100 characters, not all spaces, without control characters.
    #[schema(
        example = "INCIDENT-999 | War room",
        min_length = 1,
        max_length = 100,
        pattern = r"^[^\x00-\x1f\x7f-\x9f]*[^\s\x00-\x1f\x7f-\x9f][^\x00-\x1f\x7f-\x9f]*$"
    )]
    pub subject: String,
    /// At most 2048 characters; line breaks and tabs are the only control characters allowed.
    #[schema(
        example = "Checkout failures in EU. Runbook: https://example.com/rb/42",
        max_length = 2048,
        pattern = r"^[^\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]*$"
    )]
    pub description: Option<String>,
    /// 1 to 1023 phone numbers with country code: `+1 713-715-7533`, `17137157533`, `17137157533@c.us` and
    /// `17137157533@s.whatsapp.net` are all accepted. Duplicates are collapsed; a number that is not valid for its
    /// country gets the outcome `invalid_number`. The instance's own number is refused (422).
    #[schema(value_type = Vec<PhoneNumber>, min_items = 1, max_items = 1023, example = json!(["+17137157533", "+18647351567"]))]
    pub participants: Vec<String>,
    /// Settings to apply at creation; absent ones take WhatsApp's defaults (all off).
    #[serde(default)]
    pub settings: GroupSettingsPatch,
    /// Send a private invite to each participant whose privacy settings refuse the add (outcome `invite_sent`).
    /// Off unless set.
    pub auto_invite: Option<bool>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct GroupOut {
    pub id: GroupId,
    pub instance_id: InstanceId,
    /// The WhatsApp group id.
    pub jid: GroupJid,
    #[schema(example = "INCIDENT-999 | War room")]
    pub subject: String,
    pub description: Option<String>,
    pub settings: GroupSettings,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    /// When this instance left the group.
    pub left_at: Option<Timestamp>,
    /// The creation job that made the group: `GET /v1/jobs/{id}` has what happened to every participant. Null for a
    /// group Convene found rather than created (the number was added to it elsewhere).
    pub creation_job_id: Option<Uuid>,
    /// Members as the network reports them now; absent in listings and when the instance is no longer in the group.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub members: Option<Vec<GroupMember>>,
}

impl GroupOut {
    fn from_record(r: GroupRecord, members: Option<Vec<GroupMember>>) -> Self {
        Self {
            id: r.id,
            instance_id: r.instance_id,
            jid: r.jid,
            subject: r.subject,
            description: r.description,
            settings: r.settings,
            created_at: r.created_at,
            updated_at: r.updated_at,
            left_at: r.left_at,
            creation_job_id: r.creation_job_id,
            members,
        }
    }
}

impl From<GroupView> for GroupOut {
    fn from(v: GroupView) -> Self {
        Self::from_record(v.record, v.members)
    }
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct GroupCreatedOut {
    pub group: GroupOut,
    /// One entry per requested participant, in request order (duplicates collapsed).
    pub participants: Vec<ParticipantReport>,
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    /// Only this instance's groups.
    pub instance_id: Option<InstanceId>,
    /// Only groups whose subject contains this text, ignoring the case of the letters A to Z.
    #[param(example = "war room")]
    pub subject_contains: Option<String>,
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct GroupParams {
    /// Which instance acts, when the group is named by WhatsApp id and several instances are in it.
    pub instance_id: Option<InstanceId>,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GroupPatch {
    /// 1 to 100 characters, not all spaces, without control characters.
    #[schema(
        example = "INCIDENT-999 | Resolved",
        min_length = 1,
        max_length = 100,
        pattern = r"^[^\x00-\x1f\x7f-\x9f]*[^\s\x00-\x1f\x7f-\x9f][^\x00-\x1f\x7f-\x9f]*$"
    )]
    pub subject: Option<String>,
    /// At most 2048 characters; an empty string clears the description.
    #[schema(max_length = 2048, pattern = r"^[^\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]*$")]
    pub description: Option<String>,
    pub settings: Option<GroupSettingsPatch>,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ParticipantsIn {
    /// 1 to 1023 phone numbers, read as for group creation.
    #[schema(value_type = Vec<PhoneNumber>, min_items = 1, max_items = 1023, example = json!(["+447700176576", "+17137157533"]))]
    pub participants: Vec<String>,
    /// For `add`: send a private invite to each participant whose privacy settings refuse the add.
    pub auto_invite: Option<bool>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct ParticipantsOut {
    pub participants: Vec<ParticipantReport>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct InviteLinkOut {
    #[schema(example = "https://chat.whatsapp.com/Fq3jXh2Lk9PqRs7TuVwXyZ")]
    pub invite_link: String,
}

/// The participant change named in the path.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ParticipantAction {
    Add,
    Remove,
    Promote,
    Demote,
    Approve,
}

impl From<ParticipantAction> for ParticipantChange {
    fn from(a: ParticipantAction) -> Self {
        match a {
            ParticipantAction::Add => Self::Add,
            ParticipantAction::Remove => Self::Remove,
            ParticipantAction::Promote => Self::Promote,
            ParticipantAction::Demote => Self::Demote,
            ParticipantAction::Approve => Self::Approve,
        }
    }
}

/// The group named in the path, as `key` may see it: an instance outside its scope is never asked (a JID is not
/// looked up or imported through it), and a key scoped to one instance acts with that one.
async fn resolve(state: &AppState, key: &AccountKey, group: &str, params: &GroupParams) -> Result<GroupRecord> {
    let instance = instance_filter(key, params.instance_id)?;
    key.group(state.service.groups().resolve_group(group, instance).await, group)
}

/// Create a group. It is created even when some participants cannot be added; `participants` says who and why.
///
/// Without an `Idempotency-Key`, a repeat of a creation on the same instance with the same subject and participants
/// within `creation.duplicate_window_secs` (120 s) gets the first creation's answer instead of a second group (409 if
/// the first is still running after a minute).
#[utoipa::path(post, path = "/groups", tag = "groups", operation_id = "v1.group.create",
    request_body(content = GroupIn, example = json!({
        "instance_id": 7103000001_i64,
        "subject": "INCIDENT-999 | War room",
        "description": "Checkout failures in EU",
        "participants": ["+17137157533", "+18647351567"],
        "settings": {"announce_only": false, "join_approval": true}
    })),
    responses((status = 201, body = GroupCreatedOut), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody), (status = 422, body = ErrorBody), (status = 503, body = ErrorBody)),
    security(("api_key" = [])))]
async fn create_group(
    State(state): State<AppState>,
    key: AccountKey,
    headers: HeaderMap,
    ApiJson(input): ApiJson<GroupIn>,
) -> Result<(StatusCode, Json<GroupCreatedOut>)> {
    // A caller's Idempotency-Key decides alone what its repeats get; without one, the duplicate window guards.
    let guard =
        if headers.contains_key(IDEMPOTENCY_KEY) { RetryGuard::IdempotencyKey } else { RetryGuard::DuplicateWindow };
    let new = NewGroup {
        subject: input.subject,
        description: input.description,
        participants: input.participants,
        settings: input.settings,
        auto_invite: input.auto_invite,
    };
    let created = state.service.create_group(key.instance(input.instance_id)?, new, guard).await?;
    Ok((StatusCode::CREATED, Json(GroupCreatedOut { group: created.group.into(), participants: created.participants })))
}

/// List groups in creation order, a page at a time.
#[utoipa::path(get, path = "/groups", tag = "groups", operation_id = "v1.group.list", params(ListParams, PageParams),
    responses((status = 200, body = Page<GroupOut>)), security(("api_key" = [])))]
async fn list_groups(
    State(state): State<AppState>,
    key: AccountKey,
    ApiQuery(params): ApiQuery<ListParams>,
    ApiQuery(page): ApiQuery<PageParams>,
) -> Result<Response> {
    let instance_id = instance_filter(&key, params.instance_id)?;
    let query = GroupListQuery {
        instance_id,
        subject_contains: params.subject_contains.filter(|text| !text.is_empty()),
        // The store's group cursor is the same `ms.uuid` position; a bare time starts before every id.
        cursor: page.cursor()?.map(|c| Cursor::new(c.key, Some(c.id_or_nil())).render()),
        limit: page.limit()?,
    };
    let listing_count = state.store.group_listing_count();
    let page_key = PageKey { query, scope: key.0.instance_ids.clone() };
    if let Some(count) = listing_count
        && let Some(sent) = state.listed_groups.get(count, &page_key)
    {
        return Ok(json_response(sent));
    }
    let groups = state.service.groups().list_groups(&page_key.query).await?;
    // A scoped key lists its instances' groups: a page may then hold fewer than `limit`.
    let page = Page { items: groups.groups, next_cursor: groups.next_cursor }.retain(|g| key.sees(g.instance_id));
    let body = serde_json::to_vec(&page.map(|g| GroupOut::from_record(g, None)))
        .map_err(|e| ApiError::Internal(anyhow::anyhow!("a page of groups could not be written as JSON: {e}")))?;
    let body = Bytes::from(body);
    if let Some(count) = listing_count {
        state.listed_groups.put(count, page_key, body.clone());
    }
    Ok(json_response(body))
}

/// JSON already written, sent as `Json` would send it.
fn json_response(body: Bytes) -> Response {
    ([(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))], body).into_response()
}

/// Get a group with its current members, by our uuid or its WhatsApp id.
#[utoipa::path(get, path = "/groups/{group}", tag = "groups", operation_id = "v1.group.get",
    params(("group" = String, Path, description = "Group uuid or WhatsApp id (…@g.us)"), GroupParams),
    responses((status = 200, body = GroupOut), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)),
    security(("api_key" = [])))]
async fn get_group(
    State(state): State<AppState>,
    key: AccountKey,
    ApiPath(group): ApiPath<String>,
    ApiQuery(params): ApiQuery<GroupParams>,
) -> Result<Json<GroupOut>> {
    let record = resolve(&state, &key, &group, &params).await?;
    Ok(Json(state.service.groups().group(record).await?.into()))
}

/// Change a group's subject, description or settings.
#[utoipa::path(patch, path = "/groups/{group}", tag = "groups", operation_id = "v1.group.update",
    params(("group" = String, Path, description = "Group uuid or WhatsApp id (…@g.us)"), GroupParams),
    request_body(content = GroupPatch, example = json!({"subject": "INCIDENT-999 | Resolved", "settings": {"announce_only": true}})),
    responses((status = 200, body = GroupOut), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 422, body = ErrorBody)),
    security(("api_key" = [])))]
async fn update_group(
    State(state): State<AppState>,
    key: AccountKey,
    ApiPath(group): ApiPath<String>,
    ApiQuery(params): ApiQuery<GroupParams>,
    ApiJson(patch): ApiJson<GroupPatch>,
) -> Result<Json<GroupOut>> {
    let record = resolve(&state, &key, &group, &params).await?;
    let change = GroupChange {
        subject: patch.subject,
        description: patch.description,
        settings: patch.settings.unwrap_or_default(),
    };
    Ok(Json(state.service.groups().update_group(record, change).await?.into()))
}

/// Leave a group. Convene keeps its record, marked with `left_at`.
#[utoipa::path(post, path = "/groups/{group}/leave", tag = "groups", operation_id = "v1.group.leave",
    params(("group" = String, Path, description = "Group uuid or WhatsApp id (…@g.us)"), GroupParams),
    responses((status = 200, body = GroupOut), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)),
    security(("api_key" = [])))]
async fn leave_group(
    State(state): State<AppState>,
    key: AccountKey,
    ApiPath(group): ApiPath<String>,
    ApiQuery(params): ApiQuery<GroupParams>,
) -> Result<Json<GroupOut>> {
    let record = resolve(&state, &key, &group, &params).await?;
    let record = state.service.groups().leave_group(record).await?;
    Ok(Json(GroupOut::from_record(record, None)))
}

/// Add, remove, promote or demote participants, or approve requests to join, with an outcome for each.
#[utoipa::path(post, path = "/groups/{group}/participants/{action}", tag = "participants",
    operation_id = "v1.group.participants",
    params(("group" = String, Path, description = "Group uuid or WhatsApp id (…@g.us)"),
        ("action" = inline(ParticipantAction), Path, description = "add, remove, promote, demote or approve"), GroupParams),
    request_body = ParticipantsIn,
    responses((status = 200, body = ParticipantsOut), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 422, body = ErrorBody)),
    security(("api_key" = [])))]
async fn change_participants(
    State(state): State<AppState>,
    key: AccountKey,
    ApiPath((group, action)): ApiPath<(String, String)>,
    ApiQuery(params): ApiQuery<GroupParams>,
    ApiJson(input): ApiJson<ParticipantsIn>,
) -> Result<Json<ParticipantsOut>> {
    let change: ParticipantAction =
        serde_json::from_value(serde_json::Value::String(action.clone())).map_err(|_| {
            ApiError::NotFound(format!("no participant action `{action}`: use add, remove, promote, demote or approve"))
        })?;
    let record = resolve(&state, &key, &group, &params).await?;
    let participants = state
        .service
        .groups()
        .change_participants(&record, change.into(), &input.participants, input.auto_invite)
        .await?;
    Ok(Json(ParticipantsOut { participants }))
}

/// The group's invite link (the instance must be an admin).
#[utoipa::path(get, path = "/groups/{group}/invite-link", tag = "groups", operation_id = "v1.group.invite_link.get",
    params(("group" = String, Path, description = "Group uuid or WhatsApp id (…@g.us)"), GroupParams),
    responses((status = 200, body = InviteLinkOut), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("api_key" = [])))]
async fn get_invite_link(
    State(state): State<AppState>,
    key: AccountKey,
    ApiPath(group): ApiPath<String>,
    ApiQuery(params): ApiQuery<GroupParams>,
) -> Result<Json<InviteLinkOut>> {
    let record = resolve(&state, &key, &group, &params).await?;
    Ok(Json(InviteLinkOut { invite_link: state.service.groups().invite_link(&record, false).await? }))
}

/// Revoke the invite link and get a new one.
#[utoipa::path(post, path = "/groups/{group}/invite-link/reset", tag = "groups",
    operation_id = "v1.group.invite_link.reset",
    params(("group" = String, Path, description = "Group uuid or WhatsApp id (…@g.us)"), GroupParams),
    responses((status = 200, body = InviteLinkOut), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("api_key" = [])))]
async fn reset_invite_link(
    State(state): State<AppState>,
    key: AccountKey,
    ApiPath(group): ApiPath<String>,
    ApiQuery(params): ApiQuery<GroupParams>,
) -> Result<Json<InviteLinkOut>> {
    let record = resolve(&state, &key, &group, &params).await?;
    Ok(Json(InviteLinkOut { invite_link: state.service.groups().invite_link(&record, true).await? }))
}

/// Set the group picture: a JPEG or PNG of at most 5 MiB, sent as the raw body (`Content-Type: image/jpeg` or
/// `image/png`) or as `multipart/form-data` with the image in a part named `file`.
#[utoipa::path(put, path = "/groups/{group}/picture", tag = "groups", operation_id = "v1.group.picture.set",
    params(("group" = String, Path, description = "Group uuid or WhatsApp id (…@g.us)"), GroupParams),
    request_body(description = "The image", content(
        (PictureFile = "image/jpeg"), (PictureFile = "image/png"), (PictureForm = "multipart/form-data"))),
    responses((status = 204), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 413, body = ErrorBody), (status = 415, body = ErrorBody), (status = 422, body = ErrorBody)),
    security(("api_key" = [])))]
async fn set_picture(
    State(state): State<AppState>,
    key: AccountKey,
    ApiPath(group): ApiPath<String>,
    ApiQuery(params): ApiQuery<GroupParams>,
    request: Request,
) -> Result<StatusCode> {
    // The group first: a key that cannot see it learns nothing from how its picture would be judged.
    let record = resolve(&state, &key, &group, &params).await?;
    let bytes = picture_bytes(request).await?;
    let picture = GroupPicture::parse(bytes).map_err(|m| ApiError::field("file", format!("the picture {m}")))?;
    state.service.groups().set_picture(&record, &picture).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A picture sent as the raw body: the image file's bytes (documentation only, as is `PictureForm`).
#[derive(utoipa::ToSchema)]
#[schema(value_type = String, format = Binary)]
#[allow(dead_code)]
pub struct PictureFile(Vec<u8>);

/// A multipart form carrying a picture (documentation only: the handler reads the form itself).
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
pub struct PictureForm {
    /// The JPEG or PNG image.
    #[schema(value_type = String, format = Binary)]
    file: Vec<u8>,
}

async fn picture_bytes(request: Request) -> Result<Vec<u8>> {
    let content_type = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.split(';').next().unwrap_or("").trim().to_ascii_lowercase())
        .unwrap_or_default();
    let too_large = |status: StatusCode, text: String| {
        if status == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::PayloadTooLarge(format!("the picture may be at most {} bytes", GroupPicture::MAX_BYTES))
        } else {
            ApiError::BadRequest(text)
        }
    };
    match content_type.as_str() {
        "image/jpeg" | "image/png" => Bytes::from_request(request, &())
            .await
            .map(|b| b.to_vec())
            .map_err(|r| too_large(r.status(), r.body_text())),
        "multipart/form-data" => {
            let mut form =
                Multipart::from_request(request, &()).await.map_err(|r| ApiError::BadRequest(r.body_text()))?;
            while let Some(field) = form.next_field().await.map_err(|e| too_large(e.status(), e.body_text()))? {
                if field.name() == Some("file") {
                    let bytes = field.bytes().await.map_err(|e| too_large(e.status(), e.body_text()))?;
                    return Ok(bytes.to_vec());
                }
            }
            Err(ApiError::field("file", "the form has no part named `file`"))
        }
        _ => Err(ApiError::UnsupportedMediaType(
            "send the picture as image/jpeg, image/png or multipart/form-data with a `file` part".into(),
        )),
    }
}

/// The picture form's `file` part says which images it takes (`encoding`, which the route's attribute cannot state).
pub fn document(openapi: &mut utoipa::openapi::OpenApi) {
    use utoipa::openapi::encoding::EncodingBuilder;

    let form =
        openapi.paths.paths.get_mut("/v1/groups/{group}/picture").and_then(|item| item.put.as_mut()).and_then(|put| {
            match put.request_body.as_mut() {
                Some(utoipa::openapi::RefOr::T(body)) => body.content.get_mut("multipart/form-data"),
                _ => None,
            }
        });
    if let Some(utoipa::openapi::RefOr::T(form)) = form {
        form.encoding.insert("file".into(), EncodingBuilder::new().content_type(Some("image/jpeg, image/png")).build());
    }
}
