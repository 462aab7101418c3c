//! Green's group methods. Each one parses Green's body, calls the group service and shapes Green's answer; flag
//! methods (`{addParticipant: bool}` and the like) answer WhatsApp's refusals with `false`.

use axum::Json;
use axum::extract::{DefaultBodyLimit, FromRequest, Multipart, Request, State};
use axum::http::{Method, StatusCode};
use axum::routing::post;
use convene_core::store::GroupRecord;
use convene_core::{ConnectorError, GroupJid, GroupPicture, GroupSettingsPatch, MemberRole, ParticipantChange};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::error::{GreenError, GreenFields as _, Renames, refusal};
use super::{GreenInstance, GreenJson, GreenMethod};
use crate::AppState;
use crate::error::{ApiError, FieldError};
use crate::service::{GroupChange, NewGroup, RetryGuard};

/// Form overhead allowed on top of the largest picture.
const PICTURE_FORM_OVERHEAD: usize = 64 * 1024;

const CREATE_FIELDS: Renames = &[("subject", "groupName"), ("participants", "chatIds")];
const NAME_FIELDS: Renames = &[("subject", "groupName")];
const PARTICIPANT_FIELDS: Renames = &[("participants[0]", "participantChatId"), ("participants", "participantChatId")];

pub(super) fn methods() -> Vec<GreenMethod> {
    let picture = post(set_group_picture).layer(DefaultBodyLimit::max(GroupPicture::MAX_BYTES + PICTURE_FORM_OVERHEAD));
    [
        ("createGroup", post(create_group)),
        ("updateGroupName", post(update_group_name)),
        ("getGroupData", post(get_group_data)),
        ("addGroupParticipant", post(add_group_participant)),
        ("removeGroupParticipant", post(remove_group_participant)),
        ("setGroupAdmin", post(set_group_admin)),
        ("removeAdmin", post(remove_admin)),
        ("updateGroupSettings", post(update_group_settings)),
        ("setGroupPicture", picture),
        ("leaveGroup", post(leave_group)),
    ]
    .into_iter()
    .map(|(name, route)| GreenMethod { name, verb: Method::POST, route })
    .collect()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct CreateGroupIn {
    group_name: String,
    chat_ids: Vec<String>,
}

/// Exactly Green's keys: Green reports no per-participant outcome here (`getGroupData` shows who got in).
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct CreateGroupOut {
    created: bool,
    chat_id: String,
    group_invite_link: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct GroupIn {
    group_id: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct GroupNameIn {
    group_id: String,
    group_name: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct ParticipantIn {
    group_id: String,
    participant_chat_id: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct GroupSettingsIn {
    group_id: String,
    allow_participants_edit_group_settings: Option<bool>,
    allow_participants_send_messages: Option<bool>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct GroupDataOut {
    group_id: String,
    /// The creator (`…@c.us`); empty when the creator is no longer in the group.
    owner: String,
    subject: String,
    description: String,
    /// Unix seconds.
    creation: i64,
    participants: Vec<ParticipantOut>,
    subject_time: i64,
    subject_owner: String,
    /// Empty unless the instance is an admin, as in Green.
    group_invite_link: String,
    allow_participants_edit_group_settings: bool,
    allow_participants_send_messages: bool,
    size: usize,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ParticipantOut {
    id: String,
    is_admin: bool,
    is_super_admin: bool,
}

type Answer = Result<Json<Value>, GreenError>;

/// The group named by Green's `groupId` (`…@g.us`), among those the instance is in (imported when it joined
/// elsewhere).
async fn resolve(state: &AppState, instance: &GreenInstance, group_id: &str) -> Result<GroupRecord, ApiError> {
    if GroupJid::parse(group_id).is_none() {
        return Err(ApiError::field("groupId", "must be a group chat id such as 120363043968066561@g.us"));
    }
    state.service.groups().resolve_group(group_id, Some(instance.0.id)).await
}

/// `Ok(())` → `true`; a refusal → `false`; anything else (validation, credentials, pacing, outages) → an error.
fn flag(outcome: Result<(), ApiError>, renames: Renames) -> Result<bool, GreenError> {
    match outcome {
        Ok(()) => Ok(true),
        Err(e @ ApiError::Validation(_)) => Err(e).green_fields(renames),
        Err(e) => refusal(e).map(|_| false),
    }
}

async fn create_group(
    State(state): State<AppState>,
    instance: GreenInstance,
    GreenJson(input): GreenJson<CreateGroupIn>,
) -> Result<Json<CreateGroupOut>, GreenError> {
    let new = NewGroup { subject: input.group_name, participants: input.chat_ids, ..NewGroup::default() };
    let created = state
        .service
        .create_group(instance.0.id, new, RetryGuard::DuplicateWindow)
        .await
        .green_fields(CREATE_FIELDS)?;
    let record = created.group.record;
    // The group exists now: failing the request over its link would only make the client create it again.
    let group_invite_link = state.service.groups().invite_link(&record, false).await.unwrap_or_else(|e| {
        tracing::warn!(group = %record.jid, error = %e, "created a group but could not read its invite link");
        String::new()
    });
    Ok(Json(CreateGroupOut { created: true, chat_id: record.jid.to_string(), group_invite_link }))
}

async fn update_group_name(
    State(state): State<AppState>,
    instance: GreenInstance,
    GreenJson(input): GreenJson<GroupNameIn>,
) -> Answer {
    let outcome = async {
        let record = resolve(&state, &instance, &input.group_id).await?;
        let change = GroupChange { subject: Some(input.group_name), ..GroupChange::default() };
        state.service.groups().update_group(record, change).await.map(|_| ())
    };
    Ok(Json(json!({ "updateGroupName": flag(outcome.await, NAME_FIELDS)? })))
}

async fn get_group_data(
    State(state): State<AppState>,
    instance: GreenInstance,
    GreenJson(input): GreenJson<GroupIn>,
) -> Result<Json<GroupDataOut>, GreenError> {
    let record = resolve(&state, &instance, &input.group_id).await?;
    let view = state.service.groups().group(record).await?;
    let members = view.members.unwrap_or_default();
    let record = view.record;
    let own = instance.0.phone.as_ref();
    let is_admin = members.iter().any(|m| Some(&m.phone) == own && m.role.is_admin());
    let group_invite_link = if is_admin {
        match state.service.groups().invite_link(&record, false).await {
            Ok(link) => link,
            Err(ApiError::Connector(ConnectorError::NotAdmin | ConnectorError::GroupNotFound)) => String::new(),
            Err(e) => return Err(e.into()),
        }
    } else {
        String::new()
    };
    let owner = members.iter().find(|m| m.role == MemberRole::Creator).map(|m| m.phone.c_us()).unwrap_or_default();
    let creation = record.created_at.as_secs();
    Ok(Json(GroupDataOut {
        group_id: record.jid.to_string(),
        subject_owner: owner.clone(),
        owner,
        subject: record.subject,
        description: record.description.unwrap_or_default(),
        creation,
        // Convene does not track when the subject last changed.
        subject_time: creation,
        size: members.len(),
        participants: members
            .iter()
            .map(|m| ParticipantOut {
                id: m.phone.c_us(),
                is_admin: m.role.is_admin(),
                is_super_admin: m.role == MemberRole::Creator,
            })
            .collect(),
        group_invite_link,
        allow_participants_edit_group_settings: !record.settings.locked_info,
        allow_participants_send_messages: !record.settings.announce_only,
    }))
}

/// One participant change; `true` when it took effect for that participant.
async fn change_one(
    state: &AppState,
    instance: &GreenInstance,
    input: ParticipantIn,
    change: ParticipantChange,
) -> Result<bool, GreenError> {
    let outcome = async {
        let record = resolve(state, instance, &input.group_id).await?;
        let reports =
            state.service.groups().change_participants(&record, change, &[input.participant_chat_id], None).await?;
        Ok(reports.first().is_some_and(|r| r.outcome.is_success()))
    };
    match outcome.await {
        Ok(done) => Ok(done),
        Err(e @ ApiError::Validation(_)) => Err(e).green_fields(PARTICIPANT_FIELDS),
        Err(e) => refusal(e).map(|_| false),
    }
}

async fn add_group_participant(
    State(state): State<AppState>,
    instance: GreenInstance,
    GreenJson(input): GreenJson<ParticipantIn>,
) -> Answer {
    let done = change_one(&state, &instance, input, ParticipantChange::Add).await?;
    Ok(Json(json!({ "addParticipant": done })))
}

async fn remove_group_participant(
    State(state): State<AppState>,
    instance: GreenInstance,
    GreenJson(input): GreenJson<ParticipantIn>,
) -> Answer {
    let done = change_one(&state, &instance, input, ParticipantChange::Remove).await?;
    Ok(Json(json!({ "removeParticipant": done })))
}

async fn set_group_admin(
    State(state): State<AppState>,
    instance: GreenInstance,
    GreenJson(input): GreenJson<ParticipantIn>,
) -> Answer {
    let done = change_one(&state, &instance, input, ParticipantChange::Promote).await?;
    Ok(Json(json!({ "setGroupAdmin": done })))
}

async fn remove_admin(
    State(state): State<AppState>,
    instance: GreenInstance,
    GreenJson(input): GreenJson<ParticipantIn>,
) -> Answer {
    let done = change_one(&state, &instance, input, ParticipantChange::Demote).await?;
    Ok(Json(json!({ "removeAdmin": done })))
}

async fn update_group_settings(
    State(state): State<AppState>,
    instance: GreenInstance,
    GreenJson(input): GreenJson<GroupSettingsIn>,
) -> Answer {
    let settings = GroupSettingsPatch {
        locked_info: input.allow_participants_edit_group_settings.map(|allow| !allow),
        announce_only: input.allow_participants_send_messages.map(|allow| !allow),
        ..GroupSettingsPatch::default()
    };
    let outcome = async {
        let record = resolve(&state, &instance, &input.group_id).await?;
        state
            .service
            .groups()
            .update_group(record, GroupChange { settings, ..GroupChange::default() })
            .await
            .map(|_| ())
    };
    match outcome.await {
        Ok(()) => Ok(Json(json!({ "updateGroupSettings": true }))),
        // The service asks for "subject, description or settings"; in Green only the two flags can be named.
        Err(ApiError::Validation(fields)) if fields.iter().any(|f| f.field == "body") => {
            Err(ApiError::field("body", "name allowParticipantsEditGroupSettings or allowParticipantsSendMessages")
                .into())
        }
        Err(e @ ApiError::Validation(_)) => Err(e.into()),
        Err(ApiError::Connector(ConnectorError::NotAdmin)) => {
            Ok(Json(json!({ "updateGroupSettings": false, "reason": "NOT_ENOUGH_RIGHTS" })))
        }
        Err(e) => {
            let reason = refusal(e)?;
            Ok(Json(json!({ "updateGroupSettings": false, "reason": reason })))
        }
    }
}

async fn leave_group(
    State(state): State<AppState>,
    instance: GreenInstance,
    GreenJson(input): GreenJson<GroupIn>,
) -> Answer {
    let outcome = async {
        let record = resolve(&state, &instance, &input.group_id).await?;
        state.service.groups().leave_group(record).await.map(|_| ())
    };
    Ok(Json(json!({ "leaveGroup": flag(outcome.await, &[])? })))
}

/// Multipart: a text part `groupId` and a file part `file` (JPEG; PNG is accepted too).
async fn set_group_picture(State(state): State<AppState>, instance: GreenInstance, request: Request) -> Answer {
    let (group_id, bytes) = picture_form(request).await?;
    let picture = GroupPicture::parse(bytes).map_err(|m| ApiError::field("file", format!("the picture {m}")))?;
    let outcome = async {
        let record = resolve(&state, &instance, &group_id).await?;
        state.service.groups().set_picture(&record, &picture).await
    };
    let (done, reason) = match outcome.await {
        Ok(()) => (true, String::new()),
        Err(e @ ApiError::Validation(_)) => return Err(e.into()),
        Err(e) => (false, refusal(e)?),
    };
    // Convene does not host avatars, so there is no URL to give.
    Ok(Json(json!({ "setGroupPicture": done, "urlAvatar": "", "reason": reason })))
}

async fn picture_form(request: Request) -> Result<(String, Vec<u8>), ApiError> {
    let too_large = |status: StatusCode, text: String| {
        if status == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::PayloadTooLarge(format!("the picture may be at most {} bytes", GroupPicture::MAX_BYTES))
        } else {
            ApiError::BadRequest(text)
        }
    };
    let mut form = Multipart::from_request(request, &())
        .await
        .map_err(|_| ApiError::BadRequest("send multipart/form-data with a `groupId` part and a `file` part".into()))?;
    let (mut group_id, mut file) = (None, None);
    while let Some(field) = form.next_field().await.map_err(|e| too_large(e.status(), e.body_text()))? {
        match field.name() {
            Some("groupId") => group_id = Some(field.text().await.map_err(|e| too_large(e.status(), e.body_text()))?),
            Some("file") => {
                file = Some(field.bytes().await.map_err(|e| too_large(e.status(), e.body_text()))?.to_vec())
            }
            _ => {}
        }
    }
    let mut missing = Vec::new();
    if group_id.is_none() {
        missing.push(FieldError::new("groupId", "is required"));
    }
    if file.is_none() {
        missing.push(FieldError::new("file", "is required"));
    }
    match (group_id, file) {
        (Some(group_id), Some(file)) => Ok((group_id.trim().to_owned(), file)),
        _ => Err(ApiError::Validation(missing)),
    }
}
