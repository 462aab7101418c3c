//! The sandbox: the built-in simulated network as it stands (its groups, with members and join requests), its people
//! (scripted: WhatsApp or not, privacy, contacts, blocks; their inbox, accepting an invite, opening a link, leaving a
//! group), and the faults and network limits it plays. Like `/v1/sandbox`, for account-wide keys only.

use axum::Router;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use convene_core::{GroupJid, PhoneNumber};
use convene_sandbox::{Faults, GroupAddPrivacy, InboxKind, JoinResult, NetworkLimits, PersonPatch, SandboxGroup};
use maud::html;
use serde::Deserialize;

use super::groups::role_words;
use super::numbers::{blank_to_none, unprocessable};
use super::session::{Console, Submitted};
use super::time::relative;
use super::{PageResult, Section, page, see_other};
use crate::AppState;
use crate::error::ApiError;

pub const PATH: &str = "/console/sandbox";
/// Groups on one page of the network's list.
const GROUPS_PER_PAGE: usize = 50;

pub fn router() -> Router<AppState> {
    Router::new()
        .route(PATH, get(overview))
        .route("/console/sandbox/faults", post(set_faults))
        .route("/console/sandbox/network-limits", post(set_limits))
        .route("/console/sandbox/people", get(find_person))
        .route("/console/sandbox/people/{phone}", get(person).post(update_person))
        .route("/console/sandbox/people/{phone}/accept-invite", post(accept_invite))
        .route("/console/sandbox/people/{phone}/join", post(join_by_link))
        .route("/console/sandbox/groups/{jid}", get(group))
        .route("/console/sandbox/groups/{jid}/leave", post(person_leaves))
}

fn person_path(phone: &PhoneNumber) -> String {
    format!("{PATH}/people/{}", phone.e164())
}

fn group_path(jid: &GroupJid) -> String {
    format!("{PATH}/groups/{}", jid.as_str())
}

fn phone(raw: &str, field: &str) -> Result<PhoneNumber, ApiError> {
    PhoneNumber::parse(raw.trim()).map_err(|e| ApiError::field(field, format!("`{}` {e}", raw.trim())))
}

fn jid(raw: &str) -> Result<GroupJid, ApiError> {
    GroupJid::parse(raw).ok_or_else(|| ApiError::NotFound(format!("`{raw}` is not a group id (…@g.us)")))
}

/// The sandbox belongs to the whole account, as `/v1/sandbox` does.
fn account_wide(console: &Console) -> Result<(), ApiError> {
    console.key.account_wide("the sandbox")
}

#[derive(Deserialize, Default)]
struct OverviewQuery {
    page: Option<usize>,
}

async fn overview(
    State(state): State<AppState>,
    console: Console,
    query: Result<Query<OverviewQuery>, QueryRejection>,
) -> PageResult {
    account_wide(&console)?;
    let page_number = query.ok().and_then(|Query(q)| q.page).unwrap_or(1).max(1);
    overview_page(&state, &console, page_number, None).await
}

async fn overview_page(state: &AppState, console: &Console, page_number: usize, error: Option<String>) -> PageResult {
    let network = state.service.sandbox();
    let faults = network.faults();
    let limits = network.network_limits();
    let stats = network.stats();
    // Newest first: what an operator just made is what they look for.
    let skip = ((page_number - 1) * GROUPS_PER_PAGE) as u64;
    let (groups, total) = network.groups_latest_first(skip, GROUPS_PER_PAGE as u64).await.map_err(ApiError::from)?;
    let shown: Vec<&SandboxGroup> = groups.iter().collect();
    let more = total > (page_number * GROUPS_PER_PAGE) as u64;
    let now = state.service.now();
    let writes = console.writes();
    Ok(page(
        "Sandbox",
        Some(console),
        Section::Sandbox,
        html! {
            h1 { "Sandbox" }
            p { "The built-in simulated network that sandbox numbers use: script its people, see its groups as it holds them, and make it misbehave." }
            @if let Some(error) = &error { p.error role="alert" { (error) } }
            section aria-labelledby="people" {
                h2 #people { "People" }
                form.filters method="get" action="/console/sandbox/people" {
                    div {
                        label for="person-phone" { "A person's number" }
                        input #person-phone type="tel" name="phone" required placeholder="+17137157533";
                    }
                    button type="submit" { "Open" }
                }
            }
            section aria-labelledby="network-groups" {
                h2 #network-groups { "Groups on the network" }
                div.scroll {
                    table.cards {
                        caption { (total) (if total == 1 { " group" } else { " groups" }) " on the network, newest first" }
                        thead { tr {
                            th scope="col" { "Subject" } th scope="col" { "Creator" } th scope="col" { "Members" }
                            th scope="col" { "Join requests" } th scope="col" { "Created" }
                        } }
                        tbody {
                            @for g in &shown {
                                tr {
                                    td data-label="Subject" { a href=(group_path(&g.jid)) { (g.subject) } }
                                    td data-label="Creator" { (g.creator.e164()) }
                                    td data-label="Members" { (g.members.len()) }
                                    td data-label="Join requests" { (g.pending_join_requests.len()) }
                                    td data-label="Created" { (relative(g.created_at, now)) }
                                }
                            }
                            @if shown.is_empty() { tr { td colspan="5" { "No groups on the network." } } }
                        }
                    }
                }
                p.actions {
                    @if page_number > 1 { a href={ (PATH) "?page=" (page_number - 1) } rel="prev" { "Newer groups" } }
                    @if more { a href={ (PATH) "?page=" (page_number + 1) } rel="next" { "Older groups" } }
                }
            }
            section aria-labelledby="faults" {
                h2 #faults { "Faults" }
                form.stack method="post" action="/console/sandbox/faults" {
                    (console.csrf_field())
                    label for="latency" { "Latency of every call, in milliseconds" }
                    input #latency type="number" name="latency_ms" min="0" max="60000" value=(faults.latency_ms) disabled[!writes];
                    label for="reply-lost" { "Share of creations whose reply is lost (0 to 1; the group exists)" }
                    input #reply-lost type="number" name="reply_lost_rate" min="0" max="1" step="any" value=(faults.reply_lost_rate) disabled[!writes];
                    label for="error-rate" { "Share of changing calls that fail (0 to 1)" }
                    input #error-rate type="number" name="error_rate" min="0" max="1" step="any" value=(faults.error_rate) disabled[!writes];
                    label.check {
                        input type="checkbox" name="unreachable" value="on" checked[faults.unreachable] disabled[!writes];
                        " The network cannot be reached (every sandbox number turns unreachable)"
                    }
                    @if writes { button type="submit" { "Save faults" } }
                }
            }
            section aria-labelledby="limits" {
                h2 #limits { "WhatsApp's creation limits" }
                p {
                    "So far: " strong { (stats.groups_created) } " groups created, " strong { (stats.rate_limit_hits) }
                    " creations refused as too fast, " strong { (stats.bans) } " temporary bans."
                }
                form.stack method="post" action="/console/sandbox/network-limits" {
                    (console.csrf_field())
                    label.check {
                        input type="checkbox" name="enabled" value="on" checked[limits.enabled] disabled[!writes];
                        " Enforce limits (too-fast creations are refused with rate-overlimit; repeated refusals ban the number)"
                    }
                    label for="limit-interval" { "Least seconds between two creations by one number" }
                    input #limit-interval type="number" name="min_interval_secs" min="0" value=(limits.min_interval_secs) disabled[!writes];
                    label for="limit-day" { "Most creations by one number in 24 hours" }
                    input #limit-day type="number" name="max_per_day" min="1" value=(limits.max_per_day) disabled[!writes];
                    label for="limit-hits" { "Refusals within 24 hours that get a number banned" }
                    input #limit-hits type="number" name="ban_after_hits" min="1" value=(limits.ban_after_hits) disabled[!writes];
                    label for="limit-ban" { "How long a ban lasts, in seconds" }
                    input #limit-ban type="number" name="ban_secs" min="1" value=(limits.ban_secs) disabled[!writes];
                    @if writes { button type="submit" { "Save limits" } }
                }
            }
        },
    ))
}

fn whole<T: std::str::FromStr>(field: &str, raw: &str) -> Result<T, ApiError> {
    raw.trim().parse().map_err(|_| ApiError::field(field, "a whole number"))
}

fn share(field: &str, raw: &str) -> Result<f64, ApiError> {
    raw.trim().parse().map_err(|_| ApiError::field(field, "a number from 0 to 1"))
}

#[derive(Deserialize)]
struct FaultsForm {
    #[serde(default)]
    latency_ms: String,
    #[serde(default)]
    reply_lost_rate: String,
    #[serde(default)]
    error_rate: String,
    unreachable: Option<String>,
}

/// A form's problem shown on the overview, with the status the API would answer.
async fn overview_error(state: &AppState, console: &Console, e: ApiError) -> PageResult<Response> {
    match e {
        ApiError::Validation(fields) => {
            unprocessable(overview_page(state, console, 1, Some(super::field_words(&fields))).await?)
        }
        e => Err(e.into()),
    }
}

async fn set_faults(
    State(state): State<AppState>,
    Submitted { console, form }: Submitted<FaultsForm>,
) -> PageResult<Response> {
    account_wide(&console)?;
    let faults = || -> Result<Faults, ApiError> {
        Ok(Faults {
            latency_ms: whole("latency_ms", &form.latency_ms)?,
            reply_lost_rate: share("reply_lost_rate", &form.reply_lost_rate)?,
            error_rate: share("error_rate", &form.error_rate)?,
            unreachable: form.unreachable.is_some(),
        })
    };
    let saved = match faults() {
        Ok(f) => state.service.sandbox().set_faults(f).await.map_err(ApiError::from),
        Err(e) => Err(e),
    };
    match saved {
        Ok(()) => Ok(see_other(PATH)),
        Err(e) => overview_error(&state, &console, e).await,
    }
}

#[derive(Deserialize)]
struct LimitsForm {
    enabled: Option<String>,
    #[serde(default)]
    min_interval_secs: String,
    #[serde(default)]
    max_per_day: String,
    #[serde(default)]
    ban_after_hits: String,
    #[serde(default)]
    ban_secs: String,
}

async fn set_limits(
    State(state): State<AppState>,
    Submitted { console, form }: Submitted<LimitsForm>,
) -> PageResult<Response> {
    account_wide(&console)?;
    let limits = || -> Result<NetworkLimits, ApiError> {
        Ok(NetworkLimits {
            enabled: form.enabled.is_some(),
            min_interval_secs: whole("min_interval_secs", &form.min_interval_secs)?,
            max_per_day: whole("max_per_day", &form.max_per_day)?,
            ban_after_hits: whole("ban_after_hits", &form.ban_after_hits)?,
            ban_secs: whole("ban_secs", &form.ban_secs)?,
        })
    };
    let saved = match limits() {
        Ok(l) => state.service.sandbox().set_network_limits(l).await.map_err(ApiError::from),
        Err(e) => Err(e),
    };
    match saved {
        Ok(()) => Ok(see_other(PATH)),
        Err(e) => overview_error(&state, &console, e).await,
    }
}

#[derive(Deserialize, Default)]
struct PhoneQuery {
    #[serde(default)]
    phone: String,
}

async fn find_person(
    State(state): State<AppState>,
    console: Console,
    query: Result<Query<PhoneQuery>, QueryRejection>,
) -> PageResult<Response> {
    account_wide(&console)?;
    let raw = query.map(|Query(q)| q.phone).unwrap_or_default();
    match phone(&raw, "phone") {
        Ok(phone) => Ok(see_other(&person_path(&phone))),
        Err(e) => overview_error(&state, &console, e).await,
    }
}

/// What a person's page says first, after a form.
enum Notice {
    None,
    Saved,
    Joined(JoinResult),
    Error(String),
}

async fn person(State(state): State<AppState>, console: Console, Path(raw): Path<String>) -> PageResult {
    account_wide(&console)?;
    person_page(&state, &console, &phone(&raw, "phone")?, Notice::None).await
}

fn privacy_words(p: GroupAddPrivacy) -> &'static str {
    match p {
        GroupAddPrivacy::Everyone => "Everyone may add them to groups",
        GroupAddPrivacy::Contacts => "Only their contacts may add them",
        GroupAddPrivacy::Nobody => "Nobody may add them",
    }
}

fn numbers_text(numbers: &[PhoneNumber]) -> String {
    numbers.iter().map(PhoneNumber::e164).collect::<Vec<_>>().join("\n")
}

async fn person_page(state: &AppState, console: &Console, who: &PhoneNumber, notice: Notice) -> PageResult {
    let network = state.service.sandbox();
    let person = network.person(who).await.map_err(ApiError::from)?;
    let inbox = network.inbox(who).await.map_err(ApiError::from)?;
    let now = state.service.now();
    let path = person_path(who);
    let writes = console.writes();
    let privacy = [GroupAddPrivacy::Everyone, GroupAddPrivacy::Contacts, GroupAddPrivacy::Nobody];
    Ok(page(
        &who.e164(),
        Some(console),
        Section::Sandbox,
        html! {
            nav.crumbs aria-label="Breadcrumb" { a href=(PATH) { "Sandbox" } " › " (who.e164()) }
            h1 { (who.e164()) @if let Some(name) = &person.name { " · " (name) } }
            @match &notice {
                Notice::None => {}
                Notice::Saved => p.notice role="status" { "Saved." },
                Notice::Joined(JoinResult::Joined) => p.notice role="status" { "Joined the group." },
                Notice::Joined(JoinResult::Pending) => p.notice role="status" { "Asked to join: an admin has to approve." },
                Notice::Error(error) => p.error role="alert" { (error) },
            }
            dl.facts {
                dt { "WhatsApp" } dd { @if person.registered { "has an account" } @else { "no account" } }
                dt { "Group adds" } dd { (privacy_words(person.group_add)) }
                dt { "Contacts" } dd { (person.contacts.len()) }
                dt { "Blocks" } dd { (person.blocked.len()) }
            }
            section aria-labelledby="inbox" {
                h2 #inbox { "Inbox" }
                div.scroll {
                    table.cards {
                        caption { "What the numbers sent this person, oldest first" }
                        thead { tr { th scope="col" { "From" } th scope="col" { "When" } th scope="col" { "Message" } } }
                        tbody {
                            @for message in &inbox {
                                tr {
                                    td data-label="From" { (message.from.e164()) }
                                    td data-label="When" { (relative(message.at, now)) }
                                    td data-label="Message" {
                                        @match &message.kind {
                                            InboxKind::Text { text } => (text),
                                            InboxKind::GroupInvite { group, subject, expires_at, .. } => {
                                                "Invite to " a href=(group_path(group)) { (subject) } ", valid until " (relative(*expires_at, now))
                                                @if writes {
                                                    form.inline method="post" action={ (path) "/accept-invite" } {
                                                        (console.csrf_field())
                                                        input type="hidden" name="group" value=(group.as_str());
                                                        " " button.small type="submit" aria-label={ "Accept the invite to " (subject) } { "Accept" }
                                                    }
                                                }
                                            }
                                        }
                                    }
                                }
                            }
                            @if inbox.is_empty() { tr { td colspan="3" { "Nothing yet." } } }
                        }
                    }
                }
            }
            @if writes {
                section aria-labelledby="join" {
                    h2 #join { "Open an invite link" }
                    form.stack method="post" action={ (path) "/join" } {
                        (console.csrf_field())
                        label for="invite" { "The link, or its code" }
                        input #invite type="text" name="invite" required placeholder="https://chat.whatsapp.com/…";
                        button type="submit" { "Open the link as this person" }
                    }
                }
                section aria-labelledby="script" {
                    h2 #script { "Script this person" }
                    form.stack method="post" action=(path) {
                        (console.csrf_field())
                        label.check {
                            input type="checkbox" name="registered" value="on" checked[person.registered];
                            " Has a WhatsApp account"
                        }
                        label for="group-add" { "Who may add them to groups" }
                        select #group-add name="group_add" {
                            @for p in privacy {
                                option value=(privacy_value(p)) selected[p == person.group_add] { (privacy_words(p)) }
                            }
                        }
                        label for="person-name" { "Name (optional)" }
                        input #person-name type="text" name="name" maxlength="100" value=[person.name.as_deref()];
                        label for="contacts" { "Their contacts, one number per line" }
                        textarea #contacts name="contacts" rows="3" { (numbers_text(&person.contacts)) }
                        label for="blocked" { "Numbers they block, one per line" }
                        textarea #blocked name="blocked" rows="3" { (numbers_text(&person.blocked)) }
                        button type="submit" { "Save" }
                    }
                }
            }
        },
    ))
}

fn privacy_value(p: GroupAddPrivacy) -> &'static str {
    match p {
        GroupAddPrivacy::Everyone => "everyone",
        GroupAddPrivacy::Contacts => "contacts",
        GroupAddPrivacy::Nobody => "nobody",
    }
}

#[derive(Deserialize)]
struct PersonForm {
    registered: Option<String>,
    #[serde(default)]
    group_add: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    contacts: String,
    #[serde(default)]
    blocked: String,
}

/// Numbers one per line (or comma-separated), each named by its field when it does not read.
fn numbers(field: &str, text: &str) -> Result<Vec<PhoneNumber>, ApiError> {
    text.split(['\n', ',']).map(str::trim).filter(|line| !line.is_empty()).map(|line| phone(line, field)).collect()
}

impl PersonForm {
    /// The change from `before` to what the form says: lists become the additions and removals.
    fn patch(&self, before: &convene_sandbox::Person) -> Result<PersonPatch, ApiError> {
        let group_add = [GroupAddPrivacy::Everyone, GroupAddPrivacy::Contacts, GroupAddPrivacy::Nobody]
            .into_iter()
            .find(|p| privacy_value(*p) == self.group_add)
            .ok_or_else(|| ApiError::field("group_add", "choose everyone, contacts or nobody"))?;
        let contacts = numbers("contacts", &self.contacts)?;
        let blocked = numbers("blocked", &self.blocked)?;
        let added =
            |now: &[PhoneNumber], was: &[PhoneNumber]| now.iter().filter(|p| !was.contains(p)).cloned().collect();
        Ok(PersonPatch {
            registered: Some(self.registered.is_some()),
            group_add: Some(group_add),
            add_contacts: added(&contacts, &before.contacts),
            remove_contacts: added(&before.contacts, &contacts),
            block: added(&blocked, &before.blocked),
            unblock: added(&before.blocked, &blocked),
            name: blank_to_none(&self.name).map(str::to_owned),
        })
    }
}

async fn update_person(
    State(state): State<AppState>,
    Path(raw): Path<String>,
    Submitted { console, form }: Submitted<PersonForm>,
) -> PageResult<Response> {
    account_wide(&console)?;
    let who = phone(&raw, "phone")?;
    let before = state.service.sandbox().person(&who).await.map_err(ApiError::from)?;
    let saved = match form.patch(&before) {
        Ok(patch) => state.service.sandbox().upsert_person(&who, &patch).await.map_err(ApiError::from),
        Err(e) => Err(e),
    };
    match saved {
        Ok(_) => Ok(person_page(&state, &console, &who, Notice::Saved).await?.into_response()),
        Err(ApiError::Validation(fields)) => {
            unprocessable(person_page(&state, &console, &who, Notice::Error(super::field_words(&fields))).await?)
        }
        Err(e) => Err(e.into()),
    }
}

/// A person's action on the network: its result, or why the network refused it, on their page.
async fn acted(
    state: &AppState,
    console: &Console,
    who: &PhoneNumber,
    result: Result<JoinResult, convene_sandbox::SandboxError>,
) -> PageResult<Response> {
    match result.map_err(ApiError::from) {
        Ok(joined) => Ok(person_page(state, console, who, Notice::Joined(joined)).await?.into_response()),
        Err(e @ (ApiError::Conflict(_) | ApiError::NotFound(_))) => {
            let mut response = person_page(state, console, who, Notice::Error(e.to_string())).await?.into_response();
            *response.status_mut() = axum::http::StatusCode::CONFLICT;
            Ok(response)
        }
        Err(e) => Err(e.into()),
    }
}

#[derive(Deserialize)]
struct GroupForm {
    #[serde(default)]
    group: String,
}

async fn accept_invite(
    State(state): State<AppState>,
    Path(raw): Path<String>,
    Submitted { console, form }: Submitted<GroupForm>,
) -> PageResult<Response> {
    account_wide(&console)?;
    let who = phone(&raw, "phone")?;
    let result = state.service.sandbox().accept_invite(&who, &jid(&form.group)?).await;
    acted(&state, &console, &who, result).await
}

#[derive(Deserialize)]
struct JoinForm {
    #[serde(default)]
    invite: String,
}

async fn join_by_link(
    State(state): State<AppState>,
    Path(raw): Path<String>,
    Submitted { console, form }: Submitted<JoinForm>,
) -> PageResult<Response> {
    account_wide(&console)?;
    let who = phone(&raw, "phone")?;
    let code = form.invite.trim().trim_start_matches("https://chat.whatsapp.com/");
    let result = state.service.sandbox().join_by_link(&who, code).await;
    acted(&state, &console, &who, result).await
}

async fn group(State(state): State<AppState>, console: Console, Path(raw): Path<String>) -> PageResult {
    account_wide(&console)?;
    let group = state.service.sandbox().group(&jid(&raw)?).await.map_err(ApiError::from)?;
    let now = state.service.now();
    let path = group_path(&group.jid);
    Ok(page(
        &group.subject,
        Some(&console),
        Section::Sandbox,
        html! {
            nav.crumbs aria-label="Breadcrumb" { a href=(PATH) { "Sandbox" } " › " (group.subject) }
            h1 { (group.subject) }
            dl.facts {
                dt { "WhatsApp id" } dd { code { (group.jid.as_str()) } }
                dt { "Creator" } dd { a href=(person_path(&group.creator)) { (group.creator.e164()) } }
                dt { "Created" } dd { (relative(group.created_at, now)) }
                dt { "Invite link" } dd { code { "https://chat.whatsapp.com/" (group.invite_code) } }
                dt { "Description" } dd.text { @if let Some(d) = &group.description { (d) } @else { "—" } }
            }
            div.scroll {
                table.cards {
                    caption { (group.members.len()) " members on the network, in joining order" }
                    thead { tr {
                        th scope="col" { "Number" } th scope="col" { "Role" }
                        @if console.writes() { th scope="col" { "As this person" } }
                    } }
                    tbody {
                        @for m in &group.members {
                            tr {
                                td data-label="Number" { a href=(person_path(&m.phone)) { (m.phone.e164()) } }
                                td data-label="Role" { (role_words(m.role)) }
                                @if console.writes() {
                                    td data-label="As this person" {
                                        form.inline method="post" action={ (path) "/leave" } {
                                            (console.csrf_field())
                                            input type="hidden" name="phone" value=(m.phone.e164());
                                            button.small type="submit" aria-label={ (m.phone.e164()) " leaves" } { "Leave" }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
            @if !group.pending_join_requests.is_empty() {
                h2 { "Asking to join" }
                ul { @for p in &group.pending_join_requests { li { a href=(person_path(p)) { (p.e164()) } } } }
            }
        },
    ))
}

#[derive(Deserialize)]
struct LeaveForm {
    #[serde(default)]
    phone: String,
}

async fn person_leaves(
    State(state): State<AppState>,
    Path(raw): Path<String>,
    Submitted { console, form }: Submitted<LeaveForm>,
) -> PageResult<Response> {
    account_wide(&console)?;
    let jid = jid(&raw)?;
    state.service.sandbox().person_leaves(&jid, &phone(&form.phone, "phone")?).await.map_err(ApiError::from)?;
    Ok(see_other(&group_path(&jid)))
}
