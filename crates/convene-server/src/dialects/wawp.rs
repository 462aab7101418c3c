//! Wawp (wawp.net) v2, shaped like WAHA, at its own paths under `/v2/groups`, with the session's status and pairing
//! under `/v2/session` and `/v2/auth`. The instance is named by
//! `instance_id` and its token by `access_token`, as query parameters (Wawp's samples), in the `access-token` header,
//! or in the JSON body. Every other parameter may likewise come as a query parameter or in the body (the body wins);
//! `participants` in a query is JSON text, as Wawp's own sample URL sends it. Groups are shown WAHA's way
//! (`id: …@g.us`, `subject`, `participants: [{id: …@c.us, isAdmin, isSuperAdmin}]`); creation and participant
//! changes add each participant's outcome. Errors are `{statusCode, error, message}`; a number that is not connected
//! is a 503.

use std::collections::HashMap;

use axum::Json;
use axum::Router;
use axum::extract::{FromRequest, Query, Request, State};
use axum::http::{Method, StatusCode};
use axum::response::Response;
use axum::routing::{MethodRouter, any, get, post};
use base64::Engine as _;
use convene_core::store::{GroupRecord, InstanceRecord};
use convene_core::{GroupMember, InstanceState, MemberRole, ParticipantChange, PhoneNumber};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use super::common::{self, DialectError, DialectFields as _, Failure, Renames, Shape};
use crate::AppState;
use crate::error::ApiError;
use crate::request_log::RequestNotes;
use crate::service::{NewGroup, ParticipantReport, RetryGuard};

/// Wawp's error body.
pub(super) struct Wawp;

impl Shape for Wawp {
    const NAME: &'static str = "wawp";

    /// `{"statusCode": 401, "error": "Unauthorized", "message": "…"}`.
    fn body(f: &Failure) -> Value {
        json!({
            "statusCode": f.status.as_u16(),
            "error": f.status.canonical_reason().unwrap_or("Error"),
            "message": f.message,
        })
    }
}

type WawpError = DialectError<Wawp>;
type Result<T> = std::result::Result<T, WawpError>;

const CREATE_FIELDS: Renames = &[("subject", "name")];

pub fn router() -> Router<AppState> {
    let routes: [(&str, &str, MethodRouter<AppState>); 12] = [
        ("/v2/groups", "GET or POST", post(create_group).get(list_groups)),
        // Wawp's docs also name creation `/v2/groups/create`.
        ("/v2/groups/create", "POST", post(create_group)),
        ("/v2/groups/{id}", "GET", get(get_group)),
        ("/v2/groups/{id}/participants/{action}", "POST", post(participants)),
        ("/v2/groups/{id}/admin/{action}", "POST", post(admins)),
        ("/v2/groups/{id}/invite-code", "GET", get(invite_code)),
        ("/v2/groups/{id}/invite-code/revoke", "POST", post(revoke_invite_code)),
        // Wawp documents these as POST and also answers GET.
        ("/v2/session/info", "GET or POST", get(session_info).post(session_info)),
        ("/v2/session/logout", "GET or POST", get(logout).post(logout)),
        ("/v2/auth/qr", "GET or POST", get(qr_raw).post(qr_raw)),
        ("/v2/auth/qr-image", "GET or POST", get(qr_image).post(qr_image)),
        ("/v2/auth/request-code", "POST", post(request_code)),
    ];
    let mut router = Router::new();
    for (path, takes, route) in routes {
        let route = route.fallback(move |used: Method| async move {
            common::routing::<Wawp>(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                format!("{path} takes {takes}, not {used}"),
            )
        });
        router = router.route(path, route);
    }
    router.route("/v2/{*rest}", any(not_served))
}

async fn not_served(uri: axum::http::Uri) -> Response {
    let message = format!(
        "Convene does not serve the Wawp endpoint {}; it serves the group, session status and QR endpoints (see \
         docs/dialects/wawp.md)",
        uri.path()
    );
    common::routing::<Wawp>(StatusCode::NOT_FOUND, "not_found", message)
}

/// An authenticated Wawp call: the instance, the path's parameters, and every other parameter from the query and
/// the body, merged (the body wins).
struct WawpCall {
    instance: InstanceRecord,
    path: HashMap<String, String>,
    params: Map<String, Value>,
}

impl FromRequest<AppState> for WawpCall {
    type Rejection = WawpError;

    async fn from_request(request: Request, state: &AppState) -> Result<Self> {
        let (mut parts, body) = request.into_parts();
        let path = common::path_params(&mut parts, state).await?;
        let Query(query) = Query::<Vec<(String, String)>>::try_from_uri(&parts.uri)
            .map_err(|r| ApiError::field("query", r.body_text()))?;
        let header_token = common::header_text(&parts.headers, "access-token").map(str::to_owned);
        let notes = parts.extensions.get::<RequestNotes>().cloned();
        let bytes = common::body_bytes(Request::from_parts(parts, body), state).await?;
        // A body that is not a JSON object is reported after the credentials are checked.
        let body = body_object(&bytes);
        let query: Map<String, Value> = query.into_iter().map(|(k, v)| (k, query_value(v))).collect();
        let empty = Map::new();
        let fields = body.as_ref().unwrap_or(&empty);
        let text = |value: Option<&Value>| match value {
            Some(Value::String(s)) if !s.trim().is_empty() => Some(s.trim().to_owned()),
            Some(Value::Number(n)) => Some(n.to_string()),
            _ => None,
        };
        let id = text(query.get("instance_id"))
            .or_else(|| text(fields.get("instance_id")))
            .ok_or(ApiError::Unauthorized("missing `instance_id` (a query parameter or a body field)"))?;
        let token = text(query.get("access_token"))
            .or(header_token)
            .or_else(|| text(fields.get("access_token")))
            .ok_or(ApiError::Unauthorized("missing `access_token` (a query parameter or the `access-token` header)"))?;
        let instance = state.service.instances().by_token(&id, &token).await?;
        if let Some(notes) = notes {
            notes.note_instance(instance.id);
        }
        let mut params = query;
        params.extend(body?);
        params.remove("instance_id");
        params.remove("access_token");
        Ok(Self { instance, path, params })
    }
}

/// A query value: JSON text for arrays and objects (`participants=[{"id":"…@c.us"}]`), otherwise the string.
fn query_value(raw: String) -> Value {
    let trimmed = raw.trim_start();
    if (trimmed.starts_with('[') || trimmed.starts_with('{'))
        && let Ok(value) = serde_json::from_str(&raw)
    {
        return value;
    }
    Value::String(raw)
}

/// The body as a JSON object; nothing at all reads as an empty one.
fn body_object(bytes: &[u8]) -> std::result::Result<Map<String, Value>, ApiError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(Map::new());
    }
    match serde_json::from_slice::<Value>(bytes) {
        Ok(Value::Object(fields)) => Ok(fields),
        Ok(_) => Err(ApiError::BadRequest("the body must be a JSON object".into())),
        Err(e) => Err(ApiError::BadRequest(format!("the body is not valid JSON: {e}"))),
    }
}

impl WawpCall {
    /// The merged parameters read into `T`, errors naming Wawp's fields.
    fn input<T: DeserializeOwned>(&self) -> std::result::Result<T, ApiError> {
        let bytes = serde_json::to_vec(&self.params).map_err(ApiError::internal)?;
        common::parse_json(&bytes)
    }

    /// The group in the path. Wawp's own samples put a literal `{id}` in the path and the id in the query: that
    /// works too.
    async fn group(&self, state: &AppState) -> Result<GroupRecord> {
        let mut id = self.path.get("id").cloned().unwrap_or_default();
        if id == "{id}"
            && let Some(Value::String(from_query)) = self.params.get("id")
        {
            id.clone_from(from_query);
        }
        Ok(state.service.groups().resolve_group(&id, Some(self.instance.id)).await?)
    }

    fn action(&self) -> &str {
        self.path.get("action").map_or("", String::as_str)
    }
}

/// A participant as Wawp names one: `{"id": "1234567890@c.us"}`; a bare string is accepted too.
#[derive(Deserialize)]
#[serde(untagged)]
enum ParticipantRef {
    Object { id: String },
    Text(String),
}

impl ParticipantRef {
    fn into_id(self) -> String {
        match self {
            Self::Object { id } | Self::Text(id) => id,
        }
    }
}

#[derive(Deserialize)]
struct CreateIn {
    name: String,
    #[serde(default)]
    participants: Vec<ParticipantRef>,
}

#[derive(Deserialize)]
struct ParticipantsIn {
    #[serde(default)]
    participants: Vec<ParticipantRef>,
}

/// A group, WAHA's way.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct GroupOut {
    /// `…@g.us`.
    id: String,
    subject: String,
    description: Option<String>,
    /// The creator, `…@c.us`; `null` when the creator is no longer in the group (or not known, in listings).
    owner: Option<String>,
    /// Seconds since the epoch.
    creation: i64,
    /// Only admins may send messages.
    announce: bool,
    /// Only admins may edit the group's info.
    restrict: bool,
    /// New members joining by link need an admin's approval.
    join_approval_mode: bool,
    /// Members now; at creation, the creator and then each requested participant with its outcome. Absent in
    /// listings.
    #[serde(skip_serializing_if = "Option::is_none")]
    participants: Option<Vec<ParticipantOut>>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ParticipantOut {
    id: String,
    is_admin: bool,
    is_super_admin: bool,
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    result: Option<ResultOut>,
}

/// What happened to one participant: WhatsApp's status code, Convene's outcome and a sentence.
#[derive(Serialize)]
struct ResultOut {
    status: u16,
    outcome: convene_core::ParticipantOutcome,
    message: String,
}

impl ResultOut {
    fn of(report: &ParticipantReport) -> Self {
        Self { status: common::status_code(report), outcome: report.outcome, message: report.message.clone() }
    }
}

/// `…@c.us` for a number; the entry as sent for what is not one.
fn participant_id(report: &ParticipantReport) -> String {
    report.phone.as_ref().map_or_else(|| report.input.clone(), PhoneNumber::c_us)
}

impl GroupOut {
    fn of(record: GroupRecord, owner: Option<&PhoneNumber>, participants: Option<Vec<ParticipantOut>>) -> Self {
        Self {
            id: record.jid.to_string(),
            subject: record.subject,
            description: record.description,
            owner: owner.map(PhoneNumber::c_us),
            creation: record.created_at.as_secs(),
            announce: record.settings.announce_only,
            restrict: record.settings.locked_info,
            join_approval_mode: record.settings.join_approval,
            participants,
        }
    }
}

fn member_out(m: &GroupMember) -> ParticipantOut {
    ParticipantOut {
        id: m.phone.c_us(),
        is_admin: m.role.is_admin(),
        is_super_admin: m.role == MemberRole::Creator,
        result: None,
    }
}

// ---------- create, get, list ----------

/// `POST /v2/groups` (`name`, `participants: [{id}]`, in the body or the query) → the created group.
async fn create_group(State(state): State<AppState>, call: WawpCall) -> Result<Json<GroupOut>> {
    let input: CreateIn = call.input()?;
    let new = NewGroup {
        subject: input.name,
        description: None,
        participants: input.participants.into_iter().map(ParticipantRef::into_id).collect(),
        settings: Default::default(),
        auto_invite: None,
    };
    let created =
        state.service.create_group(call.instance.id, new, RetryGuard::DuplicateWindow).await.fields(CREATE_FIELDS)?;
    let members = created.group.members.unwrap_or_default();
    let role = |phone: &PhoneNumber| members.iter().find(|m| &m.phone == phone).map(|m| m.role);
    let creator = call.instance.phone.as_ref().map(|phone| ParticipantOut {
        id: phone.c_us(),
        is_admin: true,
        is_super_admin: true,
        result: Some(ResultOut {
            status: 200,
            outcome: convene_core::ParticipantOutcome::Added,
            message: "The group's creator".to_owned(),
        }),
    });
    let requested = created.participants.iter().map(|r| {
        let role = r.phone.as_ref().and_then(role);
        ParticipantOut {
            id: participant_id(r),
            is_admin: role.is_some_and(MemberRole::is_admin),
            is_super_admin: role == Some(MemberRole::Creator),
            result: Some(ResultOut::of(r)),
        }
    });
    let participants = creator.into_iter().chain(requested).collect();
    Ok(Json(GroupOut::of(created.group.record, call.instance.phone.as_ref(), Some(participants))))
}

/// `GET /v2/groups/{id}`: the group with its members now.
async fn get_group(State(state): State<AppState>, call: WawpCall) -> Result<Json<GroupOut>> {
    let record = call.group(&state).await?;
    let view = state.service.groups().group(record).await?;
    let members = view.members.unwrap_or_default();
    let owner = common::creator(&members).cloned();
    let participants = members.iter().map(member_out).collect();
    Ok(Json(GroupOut::of(view.record, owner.as_ref(), Some(participants))))
}

#[derive(Deserialize)]
struct ListIn {
    limit: Option<ListNumber>,
    offset: Option<ListNumber>,
}

/// `limit` and `offset` arrive as text from a query and as numbers from a body.
#[derive(Deserialize)]
#[serde(untagged)]
enum ListNumber {
    Number(usize),
    Text(String),
}

impl ListNumber {
    fn value(&self, field: &str) -> std::result::Result<usize, ApiError> {
        match self {
            Self::Number(n) => Ok(*n),
            Self::Text(t) => t.trim().parse().map_err(|_| ApiError::field(field, "must be a whole number")),
        }
    }
}

/// `GET /v2/groups` (`limit`, `offset`): the instance's groups, oldest first, without members.
async fn list_groups(State(state): State<AppState>, call: WawpCall) -> Result<Json<Vec<GroupOut>>> {
    let input: ListIn = call.input()?;
    let offset = input.offset.map(|o| o.value("offset")).transpose()?.unwrap_or(0);
    let limit = input.limit.map(|l| l.value("limit")).transpose()?.unwrap_or(usize::MAX);
    let groups = common::current_groups(&state, call.instance.id).await?;
    Ok(Json(groups.into_iter().skip(offset).take(limit).map(|g| GroupOut::of(g, None, None)).collect()))
}

// ---------- participants and admins ----------

/// `POST /v2/groups/{id}/participants/add|remove` → one result per participant.
async fn participants(State(state): State<AppState>, call: WawpCall) -> Result<Json<Vec<ParticipantOut>>> {
    let change = match call.action() {
        "add" => ParticipantChange::Add,
        "remove" => ParticipantChange::Remove,
        other => return Err(ApiError::NotFound(format!("no participants action `{other}`: use add or remove")).into()),
    };
    change_participants(&state, &call, change).await
}

/// `POST /v2/groups/{id}/admin/promote|demote` → one result per participant.
async fn admins(State(state): State<AppState>, call: WawpCall) -> Result<Json<Vec<ParticipantOut>>> {
    let change = match call.action() {
        "promote" => ParticipantChange::Promote,
        "demote" => ParticipantChange::Demote,
        other => return Err(ApiError::NotFound(format!("no admin action `{other}`: use promote or demote")).into()),
    };
    change_participants(&state, &call, change).await
}

async fn change_participants(
    state: &AppState,
    call: &WawpCall,
    change: ParticipantChange,
) -> Result<Json<Vec<ParticipantOut>>> {
    let input: ParticipantsIn = call.input()?;
    let record = call.group(state).await?;
    let inputs: Vec<String> = input.participants.into_iter().map(ParticipantRef::into_id).collect();
    let reports = state.service.groups().change_participants(&record, change, &inputs, None).await?;
    // Roles after the change, for `isAdmin`; a failure to read them only leaves the flags false.
    let members = state.service.groups().group(record).await.ok().and_then(|v| v.members).unwrap_or_default();
    Ok(Json(
        reports
            .iter()
            .map(|r| {
                let member = r.phone.as_ref().and_then(|p| members.iter().find(|m| &m.phone == p));
                ParticipantOut {
                    id: participant_id(r),
                    is_admin: member.is_some_and(|m| m.role.is_admin()),
                    is_super_admin: member.is_some_and(|m| m.role == MemberRole::Creator),
                    result: Some(ResultOut::of(r)),
                }
            })
            .collect(),
    ))
}

// ---------- invite code ----------

/// `GET /v2/groups/{id}/invite-code` → the invite link, a JSON string (`"https://chat.whatsapp.com/…"`).
async fn invite_code(State(state): State<AppState>, call: WawpCall) -> Result<Json<String>> {
    let record = call.group(&state).await?;
    Ok(Json(state.service.groups().invite_link(&record, false).await?))
}

/// `POST /v2/groups/{id}/invite-code/revoke` → the new invite link; the old one stops working.
async fn revoke_invite_code(State(state): State<AppState>, call: WawpCall) -> Result<Json<String>> {
    let record = call.group(&state).await?;
    Ok(Json(state.service.groups().invite_link(&record, true).await?))
}

// ---------- session and pairing ----------

/// WAHA's session status. Convene keeps every session running and reconnects it by itself, so a connection being
/// made, dropped or failing to reach WhatsApp is `STARTING` (WAHA's `FAILED` asks for a restart, which would not
/// help) and nothing is ever `STOPPED`; a logged-out number and a ban are `FAILED`.
fn session_status(state: &InstanceState) -> &'static str {
    match state {
        InstanceState::Connected => "WORKING",
        InstanceState::Pairing => "SCAN_QR_CODE",
        InstanceState::Starting
        | InstanceState::Connecting
        | InstanceState::Disconnected
        | InstanceState::Unreachable { .. } => "STARTING",
        InstanceState::LoggedOut | InstanceState::TemporarilyBanned { .. } => "FAILED",
    }
}

/// The session, WAHA's way.
#[derive(Serialize)]
struct SessionOut {
    /// The instance's name.
    name: String,
    status: &'static str,
    config: Value,
    /// The connected account; `null` unless `WORKING`.
    me: Option<MeOut>,
    /// While `SCAN_QR_CODE`: the QR code to scan, `data:image/png;base64,…`.
    #[serde(skip_serializing_if = "Option::is_none")]
    qr: Option<String>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct MeOut {
    /// `…@c.us`.
    id: String,
    /// Convene does not read the account's WhatsApp name: empty.
    push_name: String,
}

async fn session_of(state: &AppState, instance: &InstanceRecord) -> Result<SessionOut> {
    let live = state.service.instances().state(instance.id).await;
    let me = match (&live, &instance.phone) {
        (InstanceState::Connected, Some(phone)) => Some(MeOut { id: phone.c_us(), push_name: String::new() }),
        _ => None,
    };
    let qr = match common::current_qr(state, instance.id).await? {
        Some(qr) => Some(common::qr_png_data_uri(&qr.code)?),
        None => None,
    };
    Ok(SessionOut {
        name: instance.name.clone(),
        status: session_status(&live),
        config: json!({ "proxy": null, "webhooks": [] }),
        me,
        qr,
    })
}

/// `/v2/session/info` → `{name, status, config, me, qr?}`. Poll it while pairing: the QR code changes about every
/// 20 s.
async fn session_info(State(state): State<AppState>, call: WawpCall) -> Result<Json<SessionOut>> {
    // The number may have been paired since the credentials were read: read the record again.
    let (instance, _) = state.service.instances().get(call.instance.id).await?;
    Ok(Json(session_of(&state, &instance).await?))
}

/// `/v2/session/logout` → the session after logging out: the number is unlinked, its keys deleted, and a new
/// pairing starts. Sandbox instances cannot log out (409).
async fn logout(State(state): State<AppState>, call: WawpCall) -> Result<Json<SessionOut>> {
    state.service.logout(call.instance.id).await?;
    let (instance, _) = state.service.instances().get(call.instance.id).await?;
    Ok(Json(session_of(&state, &instance).await?))
}

/// The QR code to scan now; 409 when the session is not waiting for a scan.
async fn pairing_qr(state: &AppState, call: &WawpCall) -> Result<convene_core::PairingCode> {
    Ok(state.service.pairing_qr(call.instance.id).await?)
}

#[derive(Deserialize)]
struct QrIn {
    format: Option<String>,
}

/// `/v2/auth/qr` (`format=raw`, the default) → `{mimetype: "application/json", data}`, `data` being base64 of
/// `{"value": <the QR payload>, "expiry": <unix ms>}`, as Wawp documents it; `format=image` → `{mimetype:
/// "image/png", data: <base64 PNG>}`.
async fn qr_raw(State(state): State<AppState>, call: WawpCall) -> Result<Json<Value>> {
    let input: QrIn = call.input()?;
    let format = input.format.as_deref().map(str::trim).unwrap_or("raw");
    if !matches!(format, "raw" | "image") {
        return Err(ApiError::field("format", format!("must be `raw` or `image` (got `{format}`)")).into());
    }
    let qr = pairing_qr(&state, &call).await?;
    let base64 = base64::engine::general_purpose::STANDARD;
    Ok(Json(if format == "image" {
        json!({ "mimetype": "image/png", "data": common::qr_png_base64(&qr.code)? })
    } else {
        let payload = json!({ "value": qr.code, "expiry": qr.expires_at.as_millis() });
        json!({ "mimetype": "application/json", "data": base64.encode(payload.to_string()) })
    }))
}

/// `/v2/auth/qr-image` → `{qr: "data:image/png;base64,…"}`.
async fn qr_image(State(state): State<AppState>, call: WawpCall) -> Result<Json<Value>> {
    let qr = pairing_qr(&state, &call).await?;
    Ok(Json(json!({ "qr": common::qr_png_data_uri(&qr.code)? })))
}

#[derive(Deserialize)]
struct RequestCodeIn {
    /// Digits with the country code: text from a query, a string or a number from a body.
    phone_number: Value,
}

/// `/v2/auth/request-code` (`phone_number`) → `{code}`: the code to type on the phone instead of scanning. Needs
/// the connection to WhatsApp.
async fn request_code(State(state): State<AppState>, call: WawpCall) -> Result<Json<Value>> {
    let input: RequestCodeIn = call.input()?;
    let phone = match input.phone_number {
        Value::String(text) => text,
        other => other.to_string(),
    };
    let code = state.service.request_pairing_code(call.instance.id, &phone).await?;
    Ok(Json(json!({ "code": code.code })))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use axum::http::header;
    use convene_core::ConnectorError;

    use super::*;
    use crate::dialects::common::body_of;

    #[tokio::test]
    async fn a_paced_creation_is_a_429_with_retry_after_in_wawps_shape() {
        let e =
            ApiError::TooManyRequests { detail: "pacing says wait".into(), retry_after: Some(Duration::from_secs(42)) };
        let response = common::response::<Wawp>(&e, CREATE_FIELDS);
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(response.headers()[header::RETRY_AFTER], "42");
        assert_eq!(
            body_of(response).await,
            json!({"statusCode": 429, "error": "Too Many Requests", "message": "pacing says wait"})
        );
    }

    #[tokio::test]
    async fn whatsapps_rate_limit_is_a_429_with_retry_after_in_wawps_shape() {
        let e = ApiError::Connector(ConnectorError::RateLimited { retry_after: Some(Duration::from_secs(90)) });
        let response = common::response::<Wawp>(&e, &[]);
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(response.headers()[header::RETRY_AFTER], "90");
        assert_eq!(body_of(response).await["statusCode"], 429);
    }

    #[tokio::test]
    async fn bad_credentials_are_a_401_in_wawps_shape() {
        let response =
            common::response::<Wawp>(&ApiError::Unauthorized("unknown instance or wrong instance token"), &[]);
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(body_of(response).await["error"], "Unauthorized");
    }

    #[test]
    fn query_values_holding_json_are_read_as_json() {
        assert_eq!(query_value(r#"[{"id":"1234567890@c.us"}]"#.into()), json!([{"id": "1234567890@c.us"}]));
        assert_eq!(query_value("New Project".into()), json!("New Project"));
        assert_eq!(query_value("[not json".into()), json!("[not json"));
    }

    #[test]
    fn bodies_must_be_json_objects() {
        assert_eq!(body_object(b"").unwrap(), Map::new());
        assert!(body_object(b"[1]").is_err());
        assert!(body_object(b"{oops").is_err());
    }

    #[test]
    fn states_read_as_wahas_session_status() {
        assert_eq!(session_status(&InstanceState::Connected), "WORKING");
        assert_eq!(session_status(&InstanceState::Pairing), "SCAN_QR_CODE");
        assert_eq!(session_status(&InstanceState::Starting), "STARTING");
        assert_eq!(session_status(&InstanceState::Disconnected), "STARTING");
        assert_eq!(session_status(&InstanceState::Connecting), "STARTING");
        let since = convene_core::Timestamp::from_millis(0);
        let outage = InstanceState::Unreachable { error: "dns error".into(), since, next_retry_at: None };
        assert_eq!(session_status(&outage), "STARTING", "Convene keeps trying: a restart would not help");
        assert_eq!(session_status(&InstanceState::LoggedOut), "FAILED");
        assert_eq!(session_status(&InstanceState::TemporarilyBanned { until: None }), "FAILED");
    }

    #[tokio::test]
    async fn a_number_that_is_not_connected_is_a_503_in_wawps_shape() {
        let e = ApiError::Connector(ConnectorError::NotConnected("the session is starting".into()));
        let response = common::response::<Wawp>(&e, CREATE_FIELDS);
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        let body = body_of(response).await;
        assert_eq!((&body["statusCode"], &body["error"]), (&json!(503), &json!("Service Unavailable")));
        assert!(body["message"].as_str().unwrap().contains("not connected"), "{body}");
    }
}
