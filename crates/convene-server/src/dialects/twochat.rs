//! 2Chat (2chat.io), at its own paths under `/open/whatsapp/`. The account's API key goes in `X-User-API-Key`; the
//! instance is the one whose own number is the body's `from_number` (or the path's number when listing). Groups
//! are named by 2Chat's `WAG<uuid>`, which is Convene's group uuid behind the `WAG` prefix (a `…@g.us` id is
//! accepted too). Per-participant results keep 2Chat's shape: a map keyed by the number as the caller wrote it,
//! with WhatsApp's status code. Errors are `{success: false, error, message}`; a number that is not connected is a
//! 503. The account's numbers and each one's connection status (with the QR code while it pairs) are 2Chat's
//! `get-numbers` and `channel/{uuid}/status`, the uuid being `WPN` and the instance id.

use axum::Json;
use axum::Router;
use axum::extract::{FromRequest, FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{Method, StatusCode};
use axum::response::Response;
use axum::routing::{MethodRouter, any, get, post};
use convene_core::store::{GroupRecord, InstanceRecord};
use convene_core::{GroupId, InstanceId, InstanceState, MemberRole, ParticipantChange, ParticipantOutcome, Timestamp};
use serde::de::DeserializeOwned;
use serde::ser::SerializeMap;
use serde::{Deserialize, Serialize, Serializer};
use serde_json::{Value, json};

use super::common::{self, DialectError, DialectFields as _, Failure, Renames, Shape};
use crate::AppState;
use crate::auth::AccountKey;
use crate::error::ApiError;
use crate::service::{NewGroup, ParticipantReport, RetryGuard};

/// 2Chat's error body.
pub(super) struct TwoChat;

impl Shape for TwoChat {
    const NAME: &'static str = "2chat";

    /// `{"success": false, "error": "rate_limited", "message": "…"}`.
    fn body(f: &Failure) -> Value {
        json!({"success": false, "error": f.code, "message": f.message})
    }
}

type TwoChatError = DialectError<TwoChat>;
type Result<T> = std::result::Result<T, TwoChatError>;

/// 2Chat takes at most this many numbers per create, add or remove call (its documented contract; more are added
/// with further add-participant calls).
const MAX_NUMBERS_PER_CALL: usize = 10;

const CREATE_FIELDS: Renames =
    &[("subject", "group.name"), ("description", "group.description"), ("participants", "group.participants")];

pub fn router() -> Router<AppState> {
    let routes: [(&str, Method, MethodRouter<AppState>); 7] = [
        ("/open/whatsapp/group/create", Method::POST, post(create_group)),
        ("/open/whatsapp/group/{group}/add-participant", Method::POST, post(add_participant)),
        ("/open/whatsapp/group/{group}/remove-participant", Method::POST, post(remove_participant)),
        ("/open/whatsapp/group/{group}", Method::GET, get(get_group)),
        ("/open/whatsapp/groups/{phone}", Method::GET, get(list_groups)),
        ("/open/whatsapp/get-numbers", Method::GET, get(get_numbers)),
        ("/open/whatsapp/channel/{number}/status", Method::GET, get(channel_status)),
    ];
    let mut router = Router::new();
    for (path, verb, route) in routes {
        let route = route.fallback(move |used: Method| async move {
            common::routing::<TwoChat>(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                format!("{path} takes {verb}, not {used}"),
            )
        });
        router = router.route(path, route);
    }
    router.route("/open/{*rest}", any(not_served))
}

async fn not_served(uri: axum::http::Uri) -> Response {
    let message = format!(
        "Convene does not serve the 2Chat endpoint {}; it serves the group endpoints and the numbers' status (see \
         docs/dialects/2chat.md)",
        uri.path()
    );
    common::routing::<TwoChat>(StatusCode::NOT_FOUND, "not_found", message)
}

/// A valid account API key in `X-User-API-Key`, allowed this method (`crate::auth`).
struct ApiKey(AccountKey);

impl FromRequestParts<AppState> for ApiKey {
    type Rejection = TwoChatError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self> {
        let key = common::header_text(&parts.headers, "x-user-api-key")
            .ok_or(ApiError::Unauthorized("missing `X-User-API-Key` header (the account's API key)"))?;
        let key = state.service.keys().account_key(key).await?;
        Ok(Self(AccountKey::permit(key, &parts.method)?))
    }
}

impl ApiKey {
    /// The instance whose number is `phone`, when the key's scope has it; otherwise the 404 an unknown number gets.
    async fn instance_by_phone(&self, state: &AppState, phone: &str) -> std::result::Result<InstanceRecord, ApiError> {
        let instance = state.service.instances().by_phone(phone).await?;
        if self.0.sees(instance.id) {
            return Ok(instance);
        }
        let number = instance.phone.as_ref().map_or_else(|| phone.to_owned(), convene_core::PhoneNumber::e164);
        Err(ApiError::NotFound(format!("no instance is connected with number {number}")))
    }
}

/// A JSON body, whatever `Content-Type` says.
struct TwoChatJson<T>(T);

impl<T: DeserializeOwned> FromRequest<AppState> for TwoChatJson<T> {
    type Rejection = TwoChatError;

    async fn from_request(request: Request, state: &AppState) -> Result<Self> {
        let bytes = common::body_bytes(request, state).await?;
        Ok(Self(common::parse_json(&bytes)?))
    }
}

/// The `{group}` path parameter.
struct GroupParam(String);

/// The `{phone}` path parameter.
struct PhoneParam(String);

/// The `{number}` path parameter: a number's `WPN…` uuid or its phone number.
struct NumberParam(String);

impl FromRequestParts<AppState> for NumberParam {
    type Rejection = TwoChatError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self> {
        Ok(Self(common::path_params(parts, state).await?.remove("number").unwrap_or_default()))
    }
}

impl FromRequestParts<AppState> for GroupParam {
    type Rejection = TwoChatError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self> {
        Ok(Self(common::path_params(parts, state).await?.remove("group").unwrap_or_default()))
    }
}

impl FromRequestParts<AppState> for PhoneParam {
    type Rejection = TwoChatError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self> {
        Ok(Self(common::path_params(parts, state).await?.remove("phone").unwrap_or_default()))
    }
}

/// `WAG62598186-d2bd-…` → the group; `…@g.us` is accepted as well.
async fn resolve(
    state: &AppState,
    group: &str,
    instance: Option<convene_core::InstanceId>,
) -> std::result::Result<GroupRecord, ApiError> {
    let reference = group.trim();
    let reference = reference.strip_prefix("WAG").unwrap_or(reference);
    state.service.groups().resolve_group(reference, instance).await
}

fn wag(id: GroupId) -> String {
    format!("WAG{id}")
}

/// 2Chat's limit on numbers per call.
fn at_most_ten(field: &str, numbers: &[String]) -> std::result::Result<(), ApiError> {
    if numbers.len() > MAX_NUMBERS_PER_CALL {
        return Err(ApiError::field(
            field,
            format!(
                "2Chat takes at most {MAX_NUMBERS_PER_CALL} numbers per call (got {}); add the rest with \
                 add-participant",
                numbers.len()
            ),
        ));
    }
    Ok(())
}

/// Entries serialised as a JSON object in this order (the creator first, then as requested).
struct Ordered<T>(Vec<(String, T)>);

impl<T: Serialize> Serialize for Ordered<T> {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(self.0.len()))?;
        for (key, value) in &self.0 {
            map.serialize_entry(key, value)?;
        }
        map.end()
    }
}

/// One number's result, as 2Chat reports it. `isGroupCreator` is part of creation results only.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct NumberResult {
    status_code: u16,
    message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    is_group_creator: Option<bool>,
    is_invite_v4_sent: bool,
}

impl NumberResult {
    fn of(report: &ParticipantReport, creation: bool) -> Self {
        Self {
            status_code: common::status_code(report),
            message: report.message.clone(),
            is_group_creator: creation.then_some(false),
            is_invite_v4_sent: report.outcome == ParticipantOutcome::InviteSent,
        }
    }
}

/// 2Chat's `unaccepted_numbers`: numbers that are not valid or have no WhatsApp account.
fn unaccepted(outcome: ParticipantOutcome) -> bool {
    matches!(outcome, ParticipantOutcome::InvalidNumber | ParticipantOutcome::NotOnWhatsapp)
}

// ---------- create ----------

#[derive(Deserialize)]
struct CreateIn {
    from_number: String,
    group: GroupIn,
}

#[derive(Deserialize)]
struct GroupIn {
    name: String,
    description: Option<String>,
    participants: Vec<String>,
}

#[derive(Serialize)]
struct CreatedOut {
    success: bool,
    group: CreatedGroupOut,
}

#[derive(Serialize)]
struct CreatedGroupOut {
    name: String,
    wa_group_id: String,
    participants: Ordered<NumberResult>,
    accepted_numbers: Vec<String>,
    unaccepted_numbers: Vec<String>,
    uuid: String,
}

/// `POST /open/whatsapp/group/create`. Privacy refusals get a private invite (2Chat's invite V4), as 2Chat sends
/// one; such a number is in neither list and its entry says `statusCode: 403, isInviteV4Sent: true`.
async fn create_group(
    State(state): State<AppState>,
    key: ApiKey,
    TwoChatJson(input): TwoChatJson<CreateIn>,
) -> Result<Json<CreatedOut>> {
    at_most_ten("group.participants", &input.group.participants)?;
    let instance = key.instance_by_phone(&state, &input.from_number).await?;
    let new = NewGroup {
        subject: input.group.name,
        description: input.group.description,
        participants: input.group.participants,
        settings: Default::default(),
        auto_invite: Some(true),
    };
    let created =
        state.service.create_group(instance.id, new, RetryGuard::DuplicateWindow).await.fields(CREATE_FIELDS)?;
    let record = created.group.record;
    let creator = instance.phone.as_ref().map(|p| {
        let entry = NumberResult {
            status_code: 200,
            message: ParticipantOutcome::Added.message().to_owned(),
            is_group_creator: Some(true),
            is_invite_v4_sent: false,
        };
        (p.e164(), entry)
    });
    let reports = &created.participants;
    Ok(Json(CreatedOut {
        success: true,
        group: CreatedGroupOut {
            name: record.subject,
            wa_group_id: record.jid.to_string(),
            participants: Ordered(
                creator
                    .into_iter()
                    .chain(reports.iter().map(|r| (r.input.clone(), NumberResult::of(r, true))))
                    .collect(),
            ),
            accepted_numbers: reports.iter().filter(|r| r.outcome.is_success()).map(|r| r.input.clone()).collect(),
            unaccepted_numbers: reports.iter().filter(|r| unaccepted(r.outcome)).map(|r| r.input.clone()).collect(),
            uuid: wag(record.id),
        },
    }))
}

// ---------- participants ----------

#[derive(Deserialize)]
struct ParticipantsIn {
    from_number: String,
    participants: Vec<String>,
}

#[derive(Serialize)]
struct AddedOut {
    success: bool,
    participants: Ordered<NumberResult>,
}

/// `POST /open/whatsapp/group/{uuid}/add-participant` → `{success, participants: {number: {statusCode, message,
/// isInviteV4Sent}}}`. Privacy refusals get a private invite, as at creation.
async fn add_participant(
    State(state): State<AppState>,
    key: ApiKey,
    GroupParam(group): GroupParam,
    TwoChatJson(input): TwoChatJson<ParticipantsIn>,
) -> Result<Json<AddedOut>> {
    let reports = change(&state, &key, &group, ParticipantChange::Add, input).await?;
    let participants = Ordered(reports.iter().map(|r| (r.input.clone(), NumberResult::of(r, false))).collect());
    Ok(Json(AddedOut { success: true, participants }))
}

#[derive(Serialize)]
struct RemovedOut {
    success: bool,
    participants: RemovedNumbers,
}

#[derive(Serialize)]
struct RemovedNumbers {
    /// When the removal was made, in seconds since the epoch.
    timestamp: i64,
    accepted_numbers: Vec<String>,
    unaccepted_numbers: Vec<String>,
}

/// `POST /open/whatsapp/group/{uuid}/remove-participant` → `{success, participants: {timestamp, accepted_numbers,
/// unaccepted_numbers}}`: accepted are the numbers removed, unaccepted every other.
async fn remove_participant(
    State(state): State<AppState>,
    key: ApiKey,
    GroupParam(group): GroupParam,
    TwoChatJson(input): TwoChatJson<ParticipantsIn>,
) -> Result<Json<RemovedOut>> {
    let reports = change(&state, &key, &group, ParticipantChange::Remove, input).await?;
    let (removed, kept): (Vec<_>, Vec<_>) = reports.into_iter().partition(|r| r.outcome.is_success());
    Ok(Json(RemovedOut {
        success: true,
        participants: RemovedNumbers {
            timestamp: state.service.now().as_secs(),
            accepted_numbers: removed.into_iter().map(|r| r.input).collect(),
            unaccepted_numbers: kept.into_iter().map(|r| r.input).collect(),
        },
    }))
}

async fn change(
    state: &AppState,
    key: &ApiKey,
    group: &str,
    change: ParticipantChange,
    input: ParticipantsIn,
) -> Result<Vec<ParticipantReport>> {
    at_most_ten("participants", &input.participants)?;
    let instance = key.instance_by_phone(state, &input.from_number).await?;
    let record = resolve(state, group, Some(instance.id)).await?;
    let auto_invite = (change == ParticipantChange::Add).then_some(true);
    Ok(state.service.groups().change_participants(&record, change, &input.participants, auto_invite).await?)
}

// ---------- reading ----------

#[derive(Serialize)]
struct ListOut {
    success: bool,
    data: Vec<GroupOut>,
}

#[derive(Serialize)]
struct GetOut {
    success: bool,
    data: GroupOut,
}

#[derive(Serialize)]
struct GroupOut {
    uuid: String,
    wa_group_id: String,
    wa_group_name: String,
    description: Option<String>,
    profile_pic_url: Option<String>,
    /// `YYYY-MM-DD HH:MM:SS`, UTC, as 2Chat writes times.
    created_at: String,
    /// Members now (only when getting one group).
    #[serde(skip_serializing_if = "Option::is_none")]
    participants: Option<Vec<MemberOut>>,
}

#[derive(Serialize)]
struct MemberOut {
    wa_participant_id: String,
    wa_pushname: Option<String>,
    profile_pic_url: Option<String>,
    wa_is_admin: bool,
    wa_is_super_admin: bool,
}

impl GroupOut {
    fn of(record: GroupRecord, members: Option<Vec<convene_core::GroupMember>>) -> Self {
        Self {
            uuid: wag(record.id),
            wa_group_id: record.jid.to_string(),
            wa_group_name: record.subject,
            description: record.description,
            profile_pic_url: None,
            created_at: twochat_time(record.created_at),
            participants: members.map(|members| {
                members
                    .into_iter()
                    .map(|m| MemberOut {
                        wa_participant_id: m.phone.c_us(),
                        wa_pushname: None,
                        profile_pic_url: None,
                        wa_is_admin: m.role.is_admin(),
                        wa_is_super_admin: m.role == MemberRole::Creator,
                    })
                    .collect()
            }),
        }
    }
}

/// `2026-11-23T00:00:00.123Z` → `2026-11-23 00:00:00`.
fn twochat_time(t: Timestamp) -> String {
    t.to_rfc3339().chars().take(19).map(|c| if c == 'T' { ' ' } else { c }).collect()
}

/// `GET /open/whatsapp/groups/{phone_number}`: the groups of the instance with that number, oldest first.
async fn list_groups(
    State(state): State<AppState>,
    key: ApiKey,
    PhoneParam(phone): PhoneParam,
) -> Result<Json<ListOut>> {
    let instance = key.instance_by_phone(&state, &phone).await?;
    let groups = common::current_groups(&state, instance.id).await?;
    Ok(Json(ListOut { success: true, data: groups.into_iter().map(|g| GroupOut::of(g, None)).collect() }))
}

/// `GET /open/whatsapp/group/{uuid}`: one group with its members.
async fn get_group(State(state): State<AppState>, key: ApiKey, GroupParam(group): GroupParam) -> Result<Json<GetOut>> {
    let record = key.0.group(resolve(&state, &group, key.0.sole_instance()).await, &group)?;
    let view = state.service.groups().group(record).await?;
    let members = Some(view.members.unwrap_or_default());
    Ok(Json(GetOut { success: true, data: GroupOut::of(view.record, members) }))
}

// ---------- numbers ----------

/// 2Chat's uuid for a number: `WPN` and the instance id.
fn wpn(id: InstanceId) -> String {
    format!("WPN{id}")
}

/// 2Chat's `connection_status`: `C` connected, `D` disconnected (starting, connecting, pairing, reconnecting,
/// WhatsApp unreachable while Convene keeps trying, logged out), `F` failure (temporarily banned by WhatsApp).
fn connection_status(state: &InstanceState) -> &'static str {
    match state {
        InstanceState::Connected => "C",
        InstanceState::TemporarilyBanned { .. } => "F",
        InstanceState::Starting
        | InstanceState::Connecting
        | InstanceState::Pairing
        | InstanceState::Disconnected
        | InstanceState::Unreachable { .. }
        | InstanceState::LoggedOut => "D",
    }
}

#[derive(Serialize)]
struct NumbersOut {
    success: bool,
    numbers: Vec<NumberOut>,
}

/// One number as 2Chat lists it. What Convene does not know (country, WhatsApp name, device) is `null`.
#[derive(Serialize)]
struct NumberOut {
    uuid: String,
    friendly_name: String,
    /// `+…`; `null` for a real number not paired yet, which `from_number` cannot name.
    phone_number: Option<String>,
    iso_country_code: Option<String>,
    pushname: Option<String>,
    server: Option<String>,
    platform: Option<String>,
    connection_status: &'static str,
    enabled: bool,
    is_business_profile: bool,
    channel_type: &'static str,
    sync_contacts: bool,
    created_at: String,
    updated_at: String,
}

impl NumberOut {
    fn of(record: &InstanceRecord, state: &InstanceState) -> Self {
        let created_at = twochat_time(record.created_at);
        Self {
            uuid: wpn(record.id),
            friendly_name: record.name.clone(),
            phone_number: record.phone.as_ref().map(convene_core::PhoneNumber::e164),
            iso_country_code: None,
            pushname: None,
            server: record.phone.as_ref().map(convene_core::PhoneNumber::c_us),
            platform: None,
            connection_status: connection_status(state),
            enabled: true,
            is_business_profile: false,
            channel_type: "WW",
            sync_contacts: false,
            updated_at: created_at.clone(),
            created_at,
        }
    }
}

/// `GET /open/whatsapp/get-numbers`: every instance, as the account's WhatsApp numbers, with its connection status.
async fn get_numbers(State(state): State<AppState>, key: ApiKey) -> Result<Json<NumbersOut>> {
    let instances = state.service.instances().list().await?;
    let numbers = instances
        .iter()
        .filter(|(record, _)| key.0.sees(record.id))
        .map(|(record, live)| NumberOut::of(record, live))
        .collect();
    Ok(Json(NumbersOut { success: true, numbers }))
}

#[derive(Serialize)]
struct ChannelStatusOut {
    success: bool,
    connection_status: &'static str,
    /// The QR payload to scan, while the number waits for one.
    #[serde(skip_serializing_if = "Option::is_none")]
    qr_code: Option<String>,
    /// 2Chat's recent events; Convene keeps none, so this is empty.
    events: Vec<Value>,
}

/// `GET /open/whatsapp/channel/{uuid}/status` → `{success, connection_status, qr_code?, events}`. The number is its
/// `WPN…` uuid from `get-numbers` (the only way to reach a real number that is not paired yet) or its phone number.
async fn channel_status(
    State(state): State<AppState>,
    key: ApiKey,
    NumberParam(number): NumberParam,
) -> Result<Json<ChannelStatusOut>> {
    let id = match number.trim().strip_prefix("WPN") {
        Some(id) => {
            let id = InstanceId::parse(id).ok_or_else(|| ApiError::NotFound(format!("no number {number}")))?;
            key.0.instance(id)?
        }
        None => key.instance_by_phone(&state, &number).await.fields(&[("from_number", "number")])?.id,
    };
    let (_, live) = state.service.instances().get(id).await?;
    let qr_code = common::current_qr(&state, id).await?.map(|qr| qr.code);
    Ok(Json(ChannelStatusOut {
        success: true,
        connection_status: connection_status(&live),
        qr_code,
        events: Vec::new(),
    }))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use axum::http::header;
    use convene_core::ConnectorError;

    use super::*;
    use crate::dialects::common::body_of;

    #[tokio::test]
    async fn a_paced_creation_is_a_429_with_retry_after_in_2chats_shape() {
        let e = ApiError::TooManyRequests {
            detail: "pacing says wait".into(),
            retry_after: Some(Duration::from_secs(300)),
        };
        let response = common::response::<TwoChat>(&e, CREATE_FIELDS);
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(response.headers()[header::RETRY_AFTER], "300");
        assert_eq!(
            body_of(response).await,
            json!({"success": false, "error": "rate_limited", "message": "pacing says wait"})
        );
    }

    #[tokio::test]
    async fn whatsapps_rate_limit_is_a_429_with_retry_after_in_2chats_shape() {
        let e = ApiError::Connector(ConnectorError::RateLimited { retry_after: Some(Duration::from_millis(1500)) });
        let response = common::response::<TwoChat>(&e, &[]);
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(response.headers()[header::RETRY_AFTER], "2");
        let body = body_of(response).await;
        assert_eq!((&body["success"], &body["error"]), (&json!(false), &json!("network_rate_limited")));
    }

    #[tokio::test]
    async fn field_errors_name_2chats_nested_fields() {
        let e = ApiError::field("subject", "must be 1 to 100 characters");
        let body = body_of(common::response::<TwoChat>(&e, CREATE_FIELDS)).await;
        assert_eq!(body["message"], "group.name: must be 1 to 100 characters");
    }

    #[test]
    fn more_than_ten_numbers_is_2chats_limit() {
        let ten: Vec<String> = (0..10).map(|i| format!("+1201555{i:04}")).collect();
        assert!(at_most_ten("participants", &ten).is_ok());
        let eleven: Vec<String> = (0..11).map(|i| format!("+1201555{i:04}")).collect();
        assert!(
            matches!(at_most_ten("participants", &eleven), Err(ApiError::Validation(f)) if f[0].field == "participants")
        );
    }

    #[test]
    fn times_are_written_the_2chat_way() {
        assert_eq!(twochat_time(Timestamp::from_millis(1_795_392_000_123)), "2026-11-23 00:00:00");
    }

    #[test]
    fn results_serialise_in_order() {
        let ordered = Ordered(vec![("+595981048477".to_owned(), 1), ("+17137157533".to_owned(), 2)]);
        assert_eq!(serde_json::to_string(&ordered).unwrap(), r#"{"+595981048477":1,"+17137157533":2}"#);
    }

    #[test]
    fn states_read_as_2chats_connection_status() {
        assert_eq!(connection_status(&InstanceState::Connected), "C");
        let outage = InstanceState::Unreachable {
            error: "dns error".into(),
            since: convene_core::Timestamp::from_millis(0),
            next_retry_at: None,
        };
        for state in [
            InstanceState::Starting,
            InstanceState::Connecting,
            InstanceState::Pairing,
            InstanceState::Disconnected,
            outage,
            InstanceState::LoggedOut,
        ] {
            assert_eq!(connection_status(&state), "D", "{state:?}");
        }
        assert_eq!(connection_status(&InstanceState::TemporarilyBanned { until: None }), "F");
    }

    #[tokio::test]
    async fn a_number_that_is_not_connected_is_a_503_in_2chats_shape() {
        let e = ApiError::Connector(ConnectorError::NotConnected("the session is starting".into()));
        let response = common::response::<TwoChat>(&e, CREATE_FIELDS);
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        let body = body_of(response).await;
        assert_eq!((&body["success"], &body["error"]), (&json!(false), &json!("instance_not_connected")));
        assert!(body["message"].as_str().unwrap().contains("not connected"), "{body}");
    }
}
