//! Z-API (z-api.io), at its own paths: `/instances/{instanceId}/token/{instanceToken}/{method}`, with the account's
//! API key in the `Client-Token` header. The instance id and token are Convene's instance id and token. Group ids
//! are shown as Z-API shows them (`120363019502650977-group`) and accepted that way, as `…@g.us` or as Convene's
//! uuid. Errors are `{error, message}`: 405 for the wrong HTTP method, 415 when a body is not sent as JSON, 401 for
//! bad credentials, 429 with `Retry-After` when pacing or WhatsApp says wait, 503 when the number is not connected.
//! Besides the group methods it serves the instance's `status` and pairing: `qr-code`, `qr-code/image`,
//! `phone-code/{phone}` and `disconnect`.

use axum::Json;
use axum::Router;
use axum::extract::{FromRequest, FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{Method, StatusCode, Uri};
use axum::response::Response;
use axum::routing::{MethodRouter, any, get, post};
use convene_core::store::{GroupRecord, InstanceRecord};
use convene_core::{GroupJid, InstanceState, MemberRole, ParticipantChange, ParticipantOutcome};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::common::{self, DialectError, DialectFields as _, Failure, Renames, Shape};
use crate::AppState;
use crate::auth::AccountKey;
use crate::error::ApiError;
use crate::request_log::RequestNotes;
use crate::service::{GroupChange, NewGroup, ParticipantReport, RetryGuard};

/// Z-API's error body.
pub(super) struct Zapi;

impl Shape for Zapi {
    const NAME: &'static str = "z-api";

    /// `{"error": "NOT_FOUND", "message": "…"}`: the status in Z-API's upper-case words, and what went wrong.
    fn body(f: &Failure) -> Value {
        let error = f.status.canonical_reason().unwrap_or("Error").to_ascii_uppercase().replace(' ', "_");
        json!({"error": error, "message": f.message})
    }
}

type ZapiError = DialectError<Zapi>;
type Result<T> = std::result::Result<T, ZapiError>;

const CREATE_FIELDS: Renames = &[("subject", "groupName"), ("participants", "phones")];
const PHONE_FIELDS: Renames = &[("participants", "phones")];
const NAME_FIELDS: Renames = &[("subject", "groupName")];
const DESCRIPTION_FIELDS: Renames = &[("description", "groupDescription")];
const PHONE_CODE_FIELDS: Renames = &[("phone_number", "phone")];

const BASE: &str = "/instances/{instance}/token/{token}";

/// The methods that change nothing, the only ones a read-only account key may call. Z-API's verbs do not tell:
/// `group-invitation-link` (POST) reads the current link, `disconnect` and `phone-code` (GET) change the instance.
const READS: &[&str] = &["group-metadata", "light-group-metadata", "group-invitation-link", "status", "qr-code"];

pub fn router() -> Router<AppState> {
    let methods: [(&str, Method, MethodRouter<AppState>); 17] = [
        ("create-group", Method::POST, post(create_group)),
        ("add-participant", Method::POST, post(add_participant)),
        ("remove-participant", Method::POST, post(remove_participant)),
        ("add-admin", Method::POST, post(add_admin)),
        ("remove-admin", Method::POST, post(remove_admin)),
        ("approve-participant", Method::POST, post(approve_participant)),
        ("update-group-name", Method::POST, post(update_group_name)),
        ("update-group-description", Method::POST, post(update_group_description)),
        ("group-metadata/{group}", Method::GET, get(group_metadata)),
        ("light-group-metadata/{group}", Method::GET, get(light_group_metadata)),
        ("group-invitation-link/{group}", Method::POST, post(group_invitation_link)),
        ("redefine-invitation-link/{group}", Method::POST, post(redefine_invitation_link)),
        ("status", Method::GET, get(status)),
        ("qr-code", Method::GET, get(qr_code)),
        ("qr-code/image", Method::GET, get(qr_code_image)),
        ("phone-code/{phone}", Method::GET, get(phone_code)),
        ("disconnect", Method::GET, get(disconnect)),
    ];
    let mut router = Router::new();
    for (path, verb, route) in methods {
        let name = path.split('/').next().unwrap_or(path);
        let route = route.fallback(move |used: Method| async move { wrong_verb(name, &verb, &used) });
        router = router.route(&format!("{BASE}/{path}"), route);
    }
    router
        .route(&format!("{BASE}/{{method}}"), any(unknown_method))
        .route(&format!("{BASE}/{{method}}/{{*rest}}"), any(unknown_method))
        .route("/instances/{instance}", any(malformed))
        .route("/instances/{instance}/{*rest}", any(malformed))
}

async fn malformed(uri: Uri) -> Response {
    let message =
        format!("{} is not a Z-API path: use /instances/{{instanceId}}/token/{{instanceToken}}/{{method}}", uri.path());
    common::routing::<Zapi>(StatusCode::NOT_FOUND, "not_found", message)
}

/// Z-API documents 405 for a method called with the wrong HTTP verb.
fn wrong_verb(name: &str, expected: &Method, used: &Method) -> Response {
    let message = format!("{name} takes {expected}, not {used}");
    common::routing::<Zapi>(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", message)
}

async fn unknown_method(uri: Uri) -> Response {
    // `/instances/{instanceId}/token/{instanceToken}/{method}/…`
    let name = uri.path().split('/').nth(5).unwrap_or("");
    let message = match name {
        "group-metadata" | "light-group-metadata" | "group-invitation-link" | "redefine-invitation-link" => {
            format!("{name} takes the group id in the path: {name}/{{groupId}}")
        }
        "phone-code" => "phone-code takes the phone number in the path: phone-code/{phone}".to_owned(),
        _ => format!(
            "Convene does not serve the Z-API method `{name}`; it serves the group methods, `status` and pairing (see \
             docs/dialects/z-api.md)"
        ),
    };
    common::routing::<Zapi>(StatusCode::NOT_FOUND, "not_found", message)
}

/// The instance named in the path, its token checked, called with a valid account key in `Client-Token` whose scope
/// has the instance and that is allowed this method (`crate::auth`).
struct ZapiInstance(InstanceRecord);

impl FromRequestParts<AppState> for ZapiInstance {
    type Rejection = ZapiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self> {
        let params = common::path_params(parts, state).await?;
        let (Some(id), Some(token)) = (params.get("instance"), params.get("token")) else {
            return Err(
                ApiError::Unauthorized("the path must be /instances/{instanceId}/token/{instanceToken}/…").into()
            );
        };
        let instance = state.service.instances().by_token(id, token).await?;
        RequestNotes::instance(&parts.extensions, instance.id);
        let key = common::header_text(&parts.headers, "client-token")
            .ok_or(ApiError::Unauthorized("missing `Client-Token` header (the account's API key)"))?;
        // `/instances/{id}/token/{token}/{method}/…`: whether the call changes something is in its name, not its verb.
        let method = parts.uri.path().trim_start_matches('/').split('/').nth(4).unwrap_or_default();
        let changes = !READS.contains(&method);
        let key =
            AccountKey::permit_call(state.service.keys().account_key(key).await?, changes, &format!("call {method}"))?;
        key.instance(instance.id)?;
        Ok(Self(instance))
    }
}

/// A JSON body, sent as JSON: Z-API answers 415 when `Content-Type` is missing or not JSON.
struct ZapiJson<T>(T);

impl<T: DeserializeOwned> FromRequest<AppState> for ZapiJson<T> {
    type Rejection = ZapiError;

    async fn from_request(request: Request, state: &AppState) -> Result<Self> {
        if !common::is_json(request.headers()) {
            return Err(ApiError::UnsupportedMediaType(
                "send the body as JSON, with `Content-Type: application/json`".into(),
            )
            .into());
        }
        let bytes = common::body_bytes(request, state).await?;
        Ok(Self(common::parse_json(&bytes)?))
    }
}

/// The group id path segment of `group-metadata/{groupId}` and its siblings.
struct GroupPath(String);

impl FromRequestParts<AppState> for GroupPath {
    type Rejection = ZapiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self> {
        let mut params = common::path_params(parts, state).await?;
        Ok(Self(params.remove("group").unwrap_or_default()))
    }
}

/// The phone number path segment of `phone-code/{phone}`.
struct PhonePath(String);

impl FromRequestParts<AppState> for PhonePath {
    type Rejection = ZapiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self> {
        let mut params = common::path_params(parts, state).await?;
        Ok(Self(params.remove("phone").unwrap_or_default()))
    }
}

/// `120363019502650977@g.us` → `120363019502650977-group`, the way Z-API shows group ids.
fn zapi_group_id(jid: &GroupJid) -> String {
    format!("{}-group", jid.user())
}

async fn resolve(state: &AppState, instance: &InstanceRecord, group: &str) -> Result<GroupRecord> {
    Ok(state.service.groups().resolve_group(group, Some(instance.id)).await?)
}

// ---------- creation ----------

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CreateGroupIn {
    group_name: String,
    phones: Vec<String>,
    /// Send a private invite to whoever privacy settings keep out.
    auto_invite: Option<bool>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct CreateGroupOut {
    /// The group id, `…-group`.
    phone: String,
    /// `null` only when the network would not give the link just after creating the group.
    invitation_link: Option<String>,
    /// Everyone not in the group now — invited privately or not — as the caller wrote the digits (invalid
    /// entries as sent).
    phones_not_added: Vec<String>,
}

/// `create-group`: `{groupName, phones, autoInvite}` → `{phone, invitationLink, phonesNotAdded}`.
async fn create_group(
    State(state): State<AppState>,
    ZapiInstance(instance): ZapiInstance,
    ZapiJson(input): ZapiJson<CreateGroupIn>,
) -> Result<Json<CreateGroupOut>> {
    let new = NewGroup {
        subject: input.group_name,
        description: None,
        participants: input.phones,
        settings: Default::default(),
        auto_invite: input.auto_invite,
    };
    let created =
        state.service.create_group(instance.id, new, RetryGuard::DuplicateWindow).await.fields(CREATE_FIELDS)?;
    let record = created.group.record;
    // The group exists now: a failure to read its link must not turn the answer into an error (and a retry into a
    // second group).
    let invitation_link = state.service.groups().invite_link(&record, false).await.ok();
    Ok(Json(CreateGroupOut {
        phone: zapi_group_id(&record.jid),
        invitation_link,
        phones_not_added: not_added(&created.participants),
    }))
}

/// Who did not get in: digits for numbers, the entry as sent for what is not a number.
fn not_added(reports: &[ParticipantReport]) -> Vec<String> {
    reports
        .iter()
        .filter(|r| !r.outcome.is_success())
        .map(|r| r.phone.as_ref().map_or_else(|| r.input.clone(), |p| p.digits().to_owned()))
        .collect()
}

// ---------- participants ----------

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ParticipantsIn {
    group_id: String,
    phones: Vec<String>,
    /// `add-participant` only.
    auto_invite: Option<bool>,
}

/// Z-API's answer to a change: `{value: bool}`.
#[derive(Serialize)]
struct ValueOut {
    value: bool,
}

async fn add_participant(
    State(state): State<AppState>,
    ZapiInstance(instance): ZapiInstance,
    ZapiJson(input): ZapiJson<ParticipantsIn>,
) -> Result<Json<ValueOut>> {
    change(&state, &instance, ParticipantChange::Add, input).await
}

async fn remove_participant(
    State(state): State<AppState>,
    ZapiInstance(instance): ZapiInstance,
    ZapiJson(input): ZapiJson<ParticipantsIn>,
) -> Result<Json<ValueOut>> {
    change(&state, &instance, ParticipantChange::Remove, input).await
}

async fn add_admin(
    State(state): State<AppState>,
    ZapiInstance(instance): ZapiInstance,
    ZapiJson(input): ZapiJson<ParticipantsIn>,
) -> Result<Json<ValueOut>> {
    change(&state, &instance, ParticipantChange::Promote, input).await
}

async fn remove_admin(
    State(state): State<AppState>,
    ZapiInstance(instance): ZapiInstance,
    ZapiJson(input): ZapiJson<ParticipantsIn>,
) -> Result<Json<ValueOut>> {
    change(&state, &instance, ParticipantChange::Demote, input).await
}

async fn approve_participant(
    State(state): State<AppState>,
    ZapiInstance(instance): ZapiInstance,
    ZapiJson(input): ZapiJson<ParticipantsIn>,
) -> Result<Json<ValueOut>> {
    change(&state, &instance, ParticipantChange::Approve, input).await
}

/// `value` is true when the change holds for every phone: done, already so (adding a member), or — with
/// `autoInvite` — a private invite sent instead.
async fn change(
    state: &AppState,
    instance: &InstanceRecord,
    change: ParticipantChange,
    input: ParticipantsIn,
) -> Result<Json<ValueOut>> {
    let record = resolve(state, instance, &input.group_id).await?;
    let auto_invite = if change == ParticipantChange::Add { input.auto_invite } else { None };
    let reports = state
        .service
        .groups()
        .change_participants(&record, change, &input.phones, auto_invite)
        .await
        .fields(PHONE_FIELDS)?;
    Ok(Json(ValueOut { value: reports.iter().all(|r| holds(change, r.outcome)) }))
}

fn holds(change: ParticipantChange, outcome: ParticipantOutcome) -> bool {
    outcome.is_success()
        || outcome == ParticipantOutcome::InviteSent
        || (matches!(change, ParticipantChange::Add | ParticipantChange::Approve)
            && outcome == ParticipantOutcome::AlreadyMember)
}

// ---------- name and description ----------

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct GroupNameIn {
    group_id: String,
    group_name: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct GroupDescriptionIn {
    group_id: String,
    group_description: String,
}

async fn update_group_name(
    State(state): State<AppState>,
    ZapiInstance(instance): ZapiInstance,
    ZapiJson(input): ZapiJson<GroupNameIn>,
) -> Result<Json<ValueOut>> {
    let record = resolve(&state, &instance, &input.group_id).await?;
    let change = GroupChange { subject: Some(input.group_name), ..GroupChange::default() };
    state.service.groups().update_group(record, change).await.fields(NAME_FIELDS)?;
    Ok(Json(ValueOut { value: true }))
}

async fn update_group_description(
    State(state): State<AppState>,
    ZapiInstance(instance): ZapiInstance,
    ZapiJson(input): ZapiJson<GroupDescriptionIn>,
) -> Result<Json<ValueOut>> {
    let record = resolve(&state, &instance, &input.group_id).await?;
    let change = GroupChange { description: Some(input.group_description), ..GroupChange::default() };
    state.service.groups().update_group(record, change).await.fields(DESCRIPTION_FIELDS)?;
    Ok(Json(ValueOut { value: true }))
}

// ---------- metadata and invitation links ----------

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct MetadataOut {
    phone: String,
    description: Option<String>,
    /// The creator's digits; `null` when the creator is no longer in the group.
    owner: Option<String>,
    subject: String,
    /// Milliseconds since the epoch, as Z-API gives it.
    creation: i64,
    /// Absent from `light-group-metadata`; `null` when the instance is not an admin.
    #[serde(skip_serializing_if = "Option::is_none")]
    invitation_link: Option<Option<String>>,
    community_id: Option<String>,
    admin_only_message: bool,
    admin_only_settings: bool,
    require_admin_approval: bool,
    is_group_announcement: bool,
    participants: Vec<MemberOut>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct MemberOut {
    phone: String,
    is_admin: bool,
    is_super_admin: bool,
}

/// `group-metadata/{groupId}` (GET): the group, its settings, its members and its invitation link.
async fn group_metadata(
    State(state): State<AppState>,
    ZapiInstance(instance): ZapiInstance,
    GroupPath(group): GroupPath,
) -> Result<Json<MetadataOut>> {
    metadata(&state, &instance, &group, true).await
}

/// `light-group-metadata/{groupId}` (GET): the same without the invitation link.
async fn light_group_metadata(
    State(state): State<AppState>,
    ZapiInstance(instance): ZapiInstance,
    GroupPath(group): GroupPath,
) -> Result<Json<MetadataOut>> {
    metadata(&state, &instance, &group, false).await
}

async fn metadata(state: &AppState, instance: &InstanceRecord, group: &str, link: bool) -> Result<Json<MetadataOut>> {
    let record = resolve(state, instance, group).await?;
    let view = state.service.groups().group(record).await?;
    let invitation_link =
        if link { Some(state.service.groups().invite_link(&view.record, false).await.ok()) } else { None };
    let members = view.members.unwrap_or_default();
    let record = view.record;
    Ok(Json(MetadataOut {
        phone: zapi_group_id(&record.jid),
        description: record.description,
        owner: common::creator(&members).map(|p| p.digits().to_owned()),
        subject: record.subject,
        creation: record.created_at.as_millis(),
        invitation_link,
        community_id: None,
        admin_only_message: record.settings.announce_only,
        admin_only_settings: record.settings.locked_info,
        require_admin_approval: record.settings.join_approval,
        is_group_announcement: false,
        participants: members
            .iter()
            .map(|m| MemberOut {
                phone: m.phone.digits().to_owned(),
                is_admin: m.role.is_admin(),
                is_super_admin: m.role == MemberRole::Creator,
            })
            .collect(),
    }))
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct InvitationLinkOut {
    phone: String,
    invitation_link: String,
}

/// `group-invitation-link/{groupId}` (POST) → `{phone, invitationLink}`.
async fn group_invitation_link(
    State(state): State<AppState>,
    ZapiInstance(instance): ZapiInstance,
    GroupPath(group): GroupPath,
) -> Result<Json<InvitationLinkOut>> {
    let record = resolve(&state, &instance, &group).await?;
    let invitation_link = state.service.groups().invite_link(&record, false).await?;
    Ok(Json(InvitationLinkOut { phone: zapi_group_id(&record.jid), invitation_link }))
}

/// `redefine-invitation-link/{groupId}` (POST) → `{invitationLink}`: the old link stops working.
async fn redefine_invitation_link(
    State(state): State<AppState>,
    ZapiInstance(instance): ZapiInstance,
    GroupPath(group): GroupPath,
) -> Result<Json<Value>> {
    let record = resolve(&state, &instance, &group).await?;
    let invitation_link = state.service.groups().invite_link(&record, true).await?;
    Ok(Json(json!({ "invitationLink": invitation_link })))
}

// ---------- status and pairing ----------

/// Z-API's `status`. `error` is always there, as in Z-API: `You are already connected`, or `You are not connected:`
/// and why (a ban says until when).
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct StatusOut {
    connected: bool,
    error: String,
    /// Convene links as a companion device, so the phone need not be online; this repeats `connected`.
    smartphone_connected: bool,
}

fn status_of(state: &InstanceState) -> StatusOut {
    let error = match state.not_connected_reason() {
        None => "You are already connected".to_owned(),
        Some(why) => format!("You are not connected: {why}"),
    };
    let connected = state.is_connected();
    StatusOut { connected, error, smartphone_connected: connected }
}

/// `status` (GET) → `{connected, error, smartphoneConnected}`.
async fn status(State(state): State<AppState>, ZapiInstance(instance): ZapiInstance) -> Json<StatusOut> {
    Json(status_of(&state.service.instances().state(instance.id).await))
}

/// The QR code to scan now; 409 when the instance is not waiting for a scan (connected, starting, banned…).
async fn pairing_qr(state: &AppState, instance: &InstanceRecord) -> Result<String> {
    Ok(state.service.pairing_qr(instance.id).await?.code)
}

/// `qr-code` (GET) → `{value}`: the QR payload itself, to draw with a QR component. It changes about every 20 s.
async fn qr_code(State(state): State<AppState>, ZapiInstance(instance): ZapiInstance) -> Result<Json<Value>> {
    Ok(Json(json!({ "value": pairing_qr(&state, &instance).await? })))
}

/// `qr-code/image` (GET) → `{value: "data:image/png;base64,…"}`.
async fn qr_code_image(State(state): State<AppState>, ZapiInstance(instance): ZapiInstance) -> Result<Json<Value>> {
    let payload = pairing_qr(&state, &instance).await?;
    Ok(Json(json!({ "value": common::qr_png_data_uri(&payload)? })))
}

/// `phone-code/{phone}` (GET) → the code to type on the phone (Connect with phone number), as `value` (Z-API's
/// documented key) and as `code` (what many Z-API clients read). Needs the connection to WhatsApp.
async fn phone_code(
    State(state): State<AppState>,
    ZapiInstance(instance): ZapiInstance,
    PhonePath(phone): PhonePath,
) -> Result<Json<Value>> {
    let code = state.service.request_pairing_code(instance.id, &phone).await.fields(PHONE_CODE_FIELDS)?.code;
    Ok(Json(json!({ "value": code, "code": code })))
}

/// `disconnect` (GET) → `{value: true}`: unlinks the number and deletes its keys; connecting again takes a new QR
/// code. Sandbox instances cannot disconnect (409).
async fn disconnect(State(state): State<AppState>, ZapiInstance(instance): ZapiInstance) -> Result<Json<ValueOut>> {
    state.service.logout(instance.id).await?;
    Ok(Json(ValueOut { value: true }))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use axum::http::header;
    use convene_core::ConnectorError;

    use super::*;
    use crate::dialects::common::body_of;
    use crate::error::FieldError;

    #[tokio::test]
    async fn a_paced_creation_is_a_429_with_retry_after_in_z_apis_shape() {
        let e = ApiError::TooManyRequests {
            detail: "this instance's pacing policy does not allow another group yet".into(),
            retry_after: Some(Duration::from_millis(299_500)),
        };
        let response = common::response::<Zapi>(&e, CREATE_FIELDS);
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(response.headers()[header::RETRY_AFTER], "300");
        let body = body_of(response).await;
        assert_eq!(body["error"], "TOO_MANY_REQUESTS");
        assert!(body["message"].as_str().unwrap().contains("pacing"), "{body}");
    }

    #[tokio::test]
    async fn whatsapps_rate_limit_is_a_429_with_retry_after_in_z_apis_shape() {
        let e = ApiError::Connector(ConnectorError::RateLimited { retry_after: Some(Duration::from_secs(120)) });
        let response = common::response::<Zapi>(&e, &[]);
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(response.headers()[header::RETRY_AFTER], "120");
        assert!(body_of(response).await["message"].as_str().unwrap().contains("rate-overlimit"));
    }

    #[tokio::test]
    async fn field_errors_are_400s_naming_z_apis_fields() {
        let e = ApiError::Validation(vec![FieldError::new("participants[0]", "is this instance's own number")]);
        let response = common::response::<Zapi>(&e, CREATE_FIELDS);
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
        let body = body_of(response).await;
        assert_eq!(body["error"], "BAD_REQUEST");
        assert_eq!(body["message"], "phones[0]: is this instance's own number");
    }

    #[test]
    fn group_ids_render_the_z_api_way() {
        let jid = GroupJid::parse("120363019502650977@g.us").unwrap();
        assert_eq!(zapi_group_id(&jid), "120363019502650977-group");
    }

    #[test]
    fn a_change_holds_when_done_already_so_or_invited() {
        use ParticipantChange::{Add, Remove};
        use ParticipantOutcome as O;
        assert!(holds(Add, O::Added) && holds(Add, O::AlreadyMember) && holds(Add, O::InviteSent));
        assert!(!holds(Add, O::PrivacyBlocked) && !holds(Add, O::InvalidNumber));
        assert!(holds(Remove, O::Removed) && !holds(Remove, O::NotMember) && !holds(Remove, O::AlreadyMember));
    }

    #[test]
    fn status_says_connected_or_why_not() {
        let connected = status_of(&InstanceState::Connected);
        assert!(connected.connected && connected.smartphone_connected);
        assert_eq!(connected.error, "You are already connected");
        for state in
            [InstanceState::Starting, InstanceState::Pairing, InstanceState::Disconnected, InstanceState::LoggedOut]
        {
            let out = status_of(&state);
            assert!(!out.connected && !out.smartphone_connected, "{state:?}");
            assert!(out.error.starts_with("You are not connected: "), "{}", out.error);
        }
        let until = convene_core::Timestamp::from_millis(1_795_395_600_000);
        let banned = status_of(&InstanceState::TemporarilyBanned { until: Some(until) });
        assert!(banned.error.contains("banned") && banned.error.contains("2026-11-23T01:00:00Z"), "{}", banned.error);
        let since = until.minus(std::time::Duration::from_secs(60));
        let outage =
            status_of(&InstanceState::Unreachable { error: "dns error".into(), since, next_retry_at: Some(until) });
        assert!(!outage.connected);
        assert_eq!(
            outage.error,
            "You are not connected: WhatsApp cannot be reached (since 2026-11-23T00:59:00Z): dns error; next attempt \
             at 2026-11-23T01:00:00Z"
        );
    }

    #[tokio::test]
    async fn a_number_that_is_not_connected_is_a_503_in_z_apis_shape() {
        let e = ApiError::Connector(ConnectorError::NotConnected("the session is starting".into()));
        let response = common::response::<Zapi>(&e, CREATE_FIELDS);
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        let body = body_of(response).await;
        assert_eq!(body["error"], "SERVICE_UNAVAILABLE");
        assert!(body["message"].as_str().unwrap().contains("not connected"), "{body}");
    }
}
