//! `/v1/sandbox`: scripting the simulated network — who is on WhatsApp, their privacy, people leaving, accepting
//! invites and joining by link, and injected faults.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use convene_core::{GroupJid, PhoneNumber};
use convene_sandbox::{
    Faults, InboxMessage, JoinResult, NetworkLimits, NetworkStats, Person, PersonPatch, SandboxError, SandboxGroup,
};
use serde::{Deserialize, Serialize};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::AppState;
use crate::auth::AccountWideKey;
use crate::error::{ApiError, ErrorBody, Result};
use crate::extract::{ApiJson, ApiPath};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(get_person, update_person))
        .routes(routes!(person_inbox))
        .routes(routes!(list_groups))
        .routes(routes!(get_group))
        .routes(routes!(person_leaves))
        .routes(routes!(accept_invite))
        .routes(routes!(join_by_link))
        .routes(routes!(get_faults, set_faults))
        .routes(routes!(get_network_limits, set_network_limits))
        .routes(routes!(network_stats))
}

impl From<SandboxError> for ApiError {
    fn from(e: SandboxError) -> Self {
        match e {
            SandboxError::UnknownGroup | SandboxError::InvalidInviteCode => Self::NotFound(e.to_string()),
            SandboxError::NotInvited
            | SandboxError::InviteExpired
            | SandboxError::GroupFull
            | SandboxError::NotRegistered
            | SandboxError::AlreadyMember
            | SandboxError::NotMember => Self::Conflict(e.to_string()),
            SandboxError::InvalidFaults(m) => Self::field("faults", m),
            SandboxError::Io(_) => Self::internal(anyhow::anyhow!(e)),
        }
    }
}

fn phone(raw: &str, field: &str) -> Result<PhoneNumber> {
    PhoneNumber::parse(raw).map_err(|e| ApiError::field(field, format!("`{raw}` {e}")))
}

fn jid(raw: &str) -> Result<GroupJid> {
    GroupJid::parse(raw).ok_or_else(|| ApiError::NotFound(format!("`{raw}` is not a group id (…@g.us)")))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PersonIn {
    /// The person acting.
    #[schema(value_type = PhoneNumber, example = "+17137157533")]
    pub phone: String,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct JoinIn {
    /// The person joining.
    #[schema(value_type = PhoneNumber, example = "+17137157533")]
    pub phone: String,
    /// The invite link or just its code.
    #[schema(example = "https://chat.whatsapp.com/Fq3jXh2Lk9PqRs7TuVwXyZ")]
    pub invite: String,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct JoinOut {
    pub result: JoinResult,
}

/// What the sandbox believes about a number.
#[utoipa::path(get, path = "/sandbox/people/{phone}", tag = "sandbox", operation_id = "v1.sandbox.person.get",
    params(("phone" = PhoneNumber, Path, description = "The person's number", example = "+17137157533")),
    responses((status = 200, body = Person), (status = 422, body = ErrorBody)), security(("api_key" = [])))]
async fn get_person(
    State(state): State<AppState>,
    _key: AccountWideKey,
    ApiPath(raw): ApiPath<String>,
) -> Result<Json<Person>> {
    Ok(Json(state.service.sandbox().person(&phone(&raw, "phone")?).await?))
}

/// Script a person: WhatsApp account or not, group-add privacy, contacts, blocks.
#[utoipa::path(put, path = "/sandbox/people/{phone}", tag = "sandbox", operation_id = "v1.sandbox.person.update",
    params(("phone" = PhoneNumber, Path, description = "The person's number", example = "+17137157533")),
    request_body(content = PersonPatch, example = json!({"group_add": "contacts", "add_contacts": ["+12015550100"]})),
    responses((status = 200, body = Person), (status = 422, body = ErrorBody)), security(("api_key" = [])))]
async fn update_person(
    State(state): State<AppState>,
    _key: AccountWideKey,
    ApiPath(raw): ApiPath<String>,
    ApiJson(patch): ApiJson<PersonPatch>,
) -> Result<Json<Person>> {
    Ok(Json(state.service.sandbox().upsert_person(&phone(&raw, "phone")?, &patch).await?))
}

/// Messages the instances sent to this person (texts and private group invites), oldest first.
#[utoipa::path(get, path = "/sandbox/people/{phone}/inbox", tag = "sandbox", operation_id = "v1.sandbox.person.inbox",
    params(("phone" = PhoneNumber, Path, description = "The person's number", example = "+17137157533")),
    responses((status = 200, body = Vec<InboxMessage>), (status = 422, body = ErrorBody)), security(("api_key" = [])))]
async fn person_inbox(
    State(state): State<AppState>,
    _key: AccountWideKey,
    ApiPath(raw): ApiPath<String>,
) -> Result<Json<Vec<InboxMessage>>> {
    Ok(Json(state.service.sandbox().inbox(&phone(&raw, "phone")?).await?))
}

/// Every group on the simulated network.
#[utoipa::path(get, path = "/sandbox/groups", tag = "sandbox", operation_id = "v1.sandbox.group.list",
    responses((status = 200, body = Vec<SandboxGroup>)), security(("api_key" = [])))]
async fn list_groups(State(state): State<AppState>, _key: AccountWideKey) -> Result<Json<Vec<SandboxGroup>>> {
    Ok(Json(state.service.sandbox().groups().await?))
}

/// A group as the network holds it, members and pending join requests included.
#[utoipa::path(get, path = "/sandbox/groups/{jid}", tag = "sandbox", operation_id = "v1.sandbox.group.get",
    params(("jid" = String, Path, example = "120363043968066561@g.us")),
    responses((status = 200, body = SandboxGroup), (status = 404, body = ErrorBody)), security(("api_key" = [])))]
async fn get_group(
    State(state): State<AppState>,
    _key: AccountWideKey,
    ApiPath(raw): ApiPath<String>,
) -> Result<Json<SandboxGroup>> {
    Ok(Json(state.service.sandbox().group(&jid(&raw)?).await?))
}

/// A member leaves the group by themselves (re-adding them soon after answers `recently_left`).
#[utoipa::path(post, path = "/sandbox/groups/{jid}/leave", tag = "sandbox", operation_id = "v1.sandbox.group.leave",
    params(("jid" = String, Path, example = "120363043968066561@g.us")), request_body = PersonIn,
    responses((status = 204), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)),
    security(("api_key" = [])))]
async fn person_leaves(
    State(state): State<AppState>,
    _key: AccountWideKey,
    ApiPath(raw): ApiPath<String>,
    ApiJson(input): ApiJson<PersonIn>,
) -> Result<StatusCode> {
    state.service.sandbox().person_leaves(&jid(&raw)?, &phone(&input.phone, "phone")?).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The person accepts the private invite they got after a privacy refusal (before it expires).
#[utoipa::path(post, path = "/sandbox/groups/{jid}/accept-invite", tag = "sandbox",
    operation_id = "v1.sandbox.group.accept_invite",
    params(("jid" = String, Path, example = "120363043968066561@g.us")), request_body = PersonIn,
    responses((status = 200, body = JoinOut), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)),
    security(("api_key" = [])))]
async fn accept_invite(
    State(state): State<AppState>,
    _key: AccountWideKey,
    ApiPath(raw): ApiPath<String>,
    ApiJson(input): ApiJson<PersonIn>,
) -> Result<Json<JoinOut>> {
    let result = state.service.sandbox().accept_invite(&phone(&input.phone, "phone")?, &jid(&raw)?).await?;
    Ok(Json(JoinOut { result }))
}

/// The person opens an invite link. With join approval on, this makes a pending request.
#[utoipa::path(post, path = "/sandbox/join", tag = "sandbox", operation_id = "v1.sandbox.join",
    request_body = JoinIn,
    responses((status = 200, body = JoinOut), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)),
    security(("api_key" = [])))]
async fn join_by_link(
    State(state): State<AppState>,
    _key: AccountWideKey,
    ApiJson(input): ApiJson<JoinIn>,
) -> Result<Json<JoinOut>> {
    let who = phone(&input.phone, "phone")?;
    let code = input.invite.trim().trim_start_matches("https://chat.whatsapp.com/");
    Ok(Json(JoinOut { result: state.service.sandbox().join_by_link(&who, code).await? }))
}

/// The faults being injected.
#[utoipa::path(get, path = "/sandbox/faults", tag = "sandbox", operation_id = "v1.sandbox.faults.get",
    responses((status = 200, body = Faults)), security(("api_key" = [])))]
async fn get_faults(State(state): State<AppState>, _key: AccountWideKey) -> Json<Faults> {
    Json(state.service.sandbox().faults())
}

/// Inject latency and failures: lost replies to creations, failing changes, a network that cannot be reached (every
/// instance `unreachable`, one `instance.unreachable` each, `instance.connected` when switched off).
#[utoipa::path(put, path = "/sandbox/faults", tag = "sandbox", operation_id = "v1.sandbox.faults.set",
    request_body(content = Faults, example = json!({"latency_ms": 200, "reply_lost_rate": 0.1, "error_rate": 0.0})),
    responses((status = 200, body = Faults), (status = 422, body = ErrorBody)), security(("api_key" = [])))]
async fn set_faults(
    State(state): State<AppState>,
    _key: AccountWideKey,
    ApiJson(faults): ApiJson<Faults>,
) -> Result<Json<Faults>> {
    state.service.sandbox().set_faults(faults).await?;
    Ok(Json(state.service.sandbox().faults()))
}

/// WhatsApp's creation limits as the sandbox enforces them.
#[utoipa::path(get, path = "/sandbox/network-limits", tag = "sandbox", operation_id = "v1.sandbox.network_limits.get",
    responses((status = 200, body = NetworkLimits)), security(("api_key" = [])))]
async fn get_network_limits(State(state): State<AppState>, _key: AccountWideKey) -> Json<NetworkLimits> {
    Json(state.service.sandbox().network_limits())
}

/// Switch the network's creation limits on or off, or change them: too-fast creations are refused with
/// `rate-overlimit` and repeated refusals get the number temporarily banned.
#[utoipa::path(put, path = "/sandbox/network-limits", tag = "sandbox", operation_id = "v1.sandbox.network_limits.set",
    request_body(content = NetworkLimits, example = json!({"enabled": true, "min_interval_secs": 120, "max_per_day": 50,
        "ban_after_hits": 3, "ban_secs": 86400})),
    responses((status = 200, body = NetworkLimits), (status = 422, body = ErrorBody)), security(("api_key" = [])))]
async fn set_network_limits(
    State(state): State<AppState>,
    _key: AccountWideKey,
    ApiJson(limits): ApiJson<NetworkLimits>,
) -> Result<Json<NetworkLimits>> {
    state.service.sandbox().set_network_limits(limits).await?;
    Ok(Json(state.service.sandbox().network_limits()))
}

/// What the network's limits did so far: refusals, bans, groups created.
#[utoipa::path(get, path = "/sandbox/stats", tag = "sandbox", operation_id = "v1.sandbox.stats",
    responses((status = 200, body = NetworkStats)), security(("api_key" = [])))]
async fn network_stats(State(state): State<AppState>, _key: AccountWideKey) -> Json<NetworkStats> {
    Json(state.service.sandbox().stats())
}
