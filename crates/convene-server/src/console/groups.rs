//! Groups: every group the key sees, searched by subject and filtered by number, a page at a time; a group's page
//! with its members as the network has them, its invite link, what happened to every participant at its creation,
//! and forms to change its members, subject, description and settings, or leave it.

use std::collections::HashMap;

use axum::Router;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use convene_core::store::{GroupListQuery, GroupRecord};
use convene_core::{
    Disappearing, GroupMember, GroupSettings, GroupSettingsPatch, InstanceId, MemberRole, ParticipantChange,
};
use maud::{Markup, html};
use serde::Deserialize;

use super::numbers::{blank_to_none, number_path, unprocessable, visible_numbers};
use super::session::{Console, Submitted};
use super::time::relative;
use super::{Confirm, PageResult, Section, field_words, page, see_other};
use crate::AppState;
use crate::api::instances::instance_filter;
use crate::api::page::{Cursor, PageParams};
use crate::error::ApiError;
use crate::service::{GroupChange, GroupView, ParticipantReport};

pub const PATH: &str = "/console/groups";
/// Groups on one page of the list.
const PAGE_SIZE: u32 = 50;

pub fn router() -> Router<AppState> {
    Router::new()
        .route(PATH, get(list))
        .route("/console/groups/{id}", get(show))
        .route("/console/groups/{id}/edit", post(edit))
        .route("/console/groups/{id}/participants", post(change_participants))
        .route("/console/groups/{id}/invite-link/reset", post(reset_invite_link))
        .route("/console/groups/{id}/leave", get(confirm_leave).post(leave))
}

fn group_path(record: &GroupRecord) -> String {
    format!("{PATH}/{}", record.id.0)
}

#[derive(Deserialize, Default)]
struct ListQuery {
    /// Text the subject contains.
    #[serde(default)]
    q: String,
    /// One number's groups; empty for all.
    #[serde(default)]
    number: String,
    cursor: Option<String>,
}

async fn list(
    State(state): State<AppState>,
    console: Console,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> PageResult {
    let filter = query.map(|Query(q)| q).unwrap_or_default();
    let numbers = visible_numbers(&state, &console).await?;
    let chosen = match blank_to_none(&filter.number) {
        Some(raw) => Some(crate::api::instances::parse_instance_id(raw)?),
        None => None,
    };
    // A scoped key lists only its numbers' groups: one number, or all of them filtered below.
    let instance_id = instance_filter(&console.key, chosen)?;
    let params = PageParams { limit: Some(PAGE_SIZE), cursor: filter.cursor.clone() };
    let query = GroupListQuery {
        instance_id,
        subject_contains: blank_to_none(&filter.q).map(str::to_owned),
        cursor: params.cursor()?.map(|c| Cursor::new(c.key, Some(c.id_or_nil())).render()),
        limit: params.limit()?,
    };
    let found = state.service.groups().list_groups(&query).await?;
    let groups: Vec<GroupRecord> = found.groups.into_iter().filter(|g| console.key.sees(g.instance_id)).collect();
    let names: HashMap<InstanceId, &str> = numbers.iter().map(|n| (n.id, n.name.as_str())).collect();
    let now = state.service.now();
    let next = found.next_cursor.map(|cursor| {
        let query = [("q", filter.q.as_str()), ("number", filter.number.as_str()), ("cursor", cursor.as_str())];
        format!("{PATH}?{}", serde_urlencoded::to_string(query).unwrap_or_default())
    });
    let searching = blank_to_none(&filter.q).is_some() || chosen.is_some();
    Ok(page(
        "Groups",
        Some(&console),
        Section::Groups,
        html! {
            h1 { "Groups" }
            form.filters method="get" action=(PATH) role="search" {
                div {
                    label for="q" { "Subject contains" }
                    input #q type="search" name="q" value=(filter.q);
                }
                div {
                    label for="number" { "Number" }
                    select #number name="number" {
                        option value="" { "All numbers" }
                        @for n in &numbers {
                            option value=(n.id) selected[chosen == Some(n.id)] { (n.name) }
                        }
                    }
                }
                button type="submit" { "Search" }
            }
            div.scroll {
                table.cards {
                    caption { @if searching { "Groups that match" } @else { "Every group, oldest first" } }
                    thead { tr {
                        th scope="col" { "Subject" } th scope="col" { "Number" } th scope="col" { "Created" }
                        th scope="col" { "Settings" }
                    } }
                    tbody {
                        @for g in &groups {
                            tr {
                                td data-label="Subject" {
                                    a href=(group_path(g)) { (g.subject) }
                                    @if g.left_at.is_some() { " " span.badge { "left" } }
                                }
                                td data-label="Number" {
                                    a href=(number_path(g.instance_id)) { (names.get(&g.instance_id).copied().unwrap_or("—")) }
                                }
                                td data-label="Created" { (relative(g.created_at, now)) }
                                td data-label="Settings" { (settings_words(&g.settings)) }
                            }
                        }
                        @if groups.is_empty() {
                            tr { td colspan="4" { @if searching { "No group matches." } @else { "No groups yet." } } }
                        }
                    }
                }
            }
            @if let Some(next) = &next {
                p { a href=(next) rel="next" { "Next page" } }
            }
        },
    ))
}

/// The settings that are on, in words, or "defaults".
fn settings_words(s: &GroupSettings) -> String {
    let mut on = Vec::new();
    if s.announce_only {
        on.push("admins only send");
    }
    if s.locked_info {
        on.push("admins only edit info");
    }
    if s.join_approval {
        on.push("joining needs approval");
    }
    let timer = disappearing_words(s.disappearing_messages);
    if s.disappearing_messages != Disappearing::Off {
        on.push(timer);
    }
    if on.is_empty() { "defaults".to_owned() } else { on.join(", ") }
}

fn disappearing_words(d: Disappearing) -> &'static str {
    match d {
        Disappearing::Off => "messages kept",
        Disappearing::Day => "messages disappear after 24 h",
        Disappearing::Week => "messages disappear after 7 days",
        Disappearing::NinetyDays => "messages disappear after 90 days",
    }
}

/// The group named in the path, as the key may see it (a uuid or a WhatsApp id).
async fn resolve(state: &AppState, console: &Console, reference: &str) -> PageResult<GroupRecord> {
    let instance = console.key.sole_instance();
    Ok(console.key.group(state.service.groups().resolve_group(reference, instance).await, reference)?)
}

/// What a group's page says first, after a form.
enum Notice {
    None,
    /// Each participant's outcome of an add, remove, promote or demote.
    Changed {
        change: ParticipantChange,
        reports: Vec<ParticipantReport>,
    },
    LinkReset,
    Error(String),
}

async fn show(State(state): State<AppState>, console: Console, Path(id): Path<String>) -> PageResult {
    let record = resolve(&state, &console, &id).await?;
    group_page(&state, &console, record, Notice::None).await
}

async fn group_page(state: &AppState, console: &Console, record: GroupRecord, notice: Notice) -> PageResult {
    let now = state.service.now();
    let (number, _) = state.service.instances().get(record.instance_id).await?;
    // The network may not answer (a number offline): the page still shows what Convene knows, and why not more.
    let (view, members_error) = match state.service.groups().group(record.clone()).await {
        Ok(view) => (view, None),
        Err(e) => (GroupView { record, members: None }, Some(e.to_string())),
    };
    let record = &view.record;
    let member = record.left_at.is_none();
    let invite = match (member, &members_error) {
        (true, None) => Some(state.service.groups().invite_link(record, false).await.map_err(|e| e.to_string())),
        _ => None,
    };
    let creation = match record.creation_job_id {
        Some(job_id) => {
            state.service.job(job_id).await.ok().and_then(|(job, _)| crate::service::Service::job_result(&job))
        }
        None => None,
    };
    let path = group_path(record);
    let writes = console.writes() && member;
    Ok(page(
        &record.subject,
        Some(console),
        Section::Groups,
        html! {
            nav.crumbs aria-label="Breadcrumb" { a href=(PATH) { "Groups" } " › " (record.subject) }
            h1 { (record.subject) }
            @match &notice {
                Notice::None => {}
                Notice::Changed { change, reports } => div.notice role="status" {
                    p { (change_words(*change)) ": what happened to each" }
                    (outcomes_table("Outcome of the change", reports))
                }
                Notice::LinkReset => p.notice role="status" { "Invite link reset: the old link no longer works." }
                Notice::Error(error) => p.error role="alert" { (error) }
            }
            dl.facts {
                dt { "WhatsApp id" } dd { code { (record.jid.as_str()) } }
                dt { "Number" } dd { a href=(number_path(number.id)) { (number.name) } }
                dt { "Created" } dd { (relative(record.created_at, now)) }
                dt { "Changed" } dd { (relative(record.updated_at, now)) }
                @if let Some(left) = record.left_at { dt { "Left" } dd { (relative(left, now)) } }
                dt { "Description" } dd.text { @if let Some(d) = &record.description { (d) } @else { "—" } }
                dt { "Settings" } dd { (settings_words(&record.settings)) }
            }
            section aria-labelledby="members" {
                h2 #members { "Members" }
                @match (&view.members, &members_error) {
                    (Some(members), _) => (members_table(console, &path, members, number.phone.as_ref(), writes)),
                    (None, Some(error)) => p.error role="alert" { "The network did not answer: " (error) },
                    (None, None) => p { "Not known: this number is no longer in the group." },
                }
            }
            @if let Some(invite) = &invite {
                section aria-labelledby="invite" {
                    h2 #invite { "Invite link" }
                    @match invite {
                        Ok(link) => {
                            div.copy {
                                label for="invite-link" { "Anyone with this link can ask to join" }
                                input #invite-link type="text" readonly value=(link);
                                button type="button" data-copy="invite-link" { "Copy" }
                                span.copied role="status" {}
                            }
                            @if writes {
                                form method="post" action={ (path) "/invite-link/reset" } {
                                    (console.csrf_field())
                                    button.danger type="submit" { "Reset link (the old one stops working)" }
                                }
                            }
                        }
                        Err(error) => p { "No link: " (error) },
                    }
                }
            }
            section aria-labelledby="at-creation" {
                h2 #at-creation { "At creation" }
                @match (&creation, record.creation_job_id) {
                    (Some(result), _) => {
                        (outcomes_table("What happened to each participant when the group was created", &result.participants))
                        @if !result.backup_admins.is_empty() {
                            (outcomes_table("The number's backup admins", &result.backup_admins))
                        }
                    }
                    (None, Some(job)) => p { "Creation job " code { (job) } " has no result on record." },
                    (None, None) => p { "Convene did not create this group: the number was added to it elsewhere." },
                }
            }
            @if writes {
                (participants_form(console, &path))
                (edit_form(console, &path, record))
                section aria-labelledby="leave" {
                    h2 #leave { "Leave" }
                    a.button.danger href={ (path) "/leave" } { "Leave the group…" }
                }
            }
        },
    ))
}

fn change_words(change: ParticipantChange) -> &'static str {
    match change {
        ParticipantChange::Add => "Added",
        ParticipantChange::Remove => "Removed",
        ParticipantChange::Promote => "Made admins",
        ParticipantChange::Demote => "Dismissed as admins",
        ParticipantChange::Approve => "Approved",
    }
}

pub(super) fn role_words(role: MemberRole) -> &'static str {
    match role {
        MemberRole::Creator => "creator",
        MemberRole::Admin => "admin",
        MemberRole::Member => "member",
    }
}

/// Members with their roles; with `writes`, a button per change that applies to each (none for the number itself,
/// which leaves instead, nor for the creator, whom no admin can remove or demote).
fn members_table(
    console: &Console,
    path: &str,
    members: &[GroupMember],
    own: Option<&convene_core::PhoneNumber>,
    writes: bool,
) -> Markup {
    let action = |change: ParticipantChange, phone: &str, words: &str| {
        html! {
            form.inline method="post" action={ (path) "/participants" } {
                (console.csrf_field())
                input type="hidden" name="action" value=(change.as_str());
                input type="hidden" name="participants" value=(phone);
                button.small type="submit" aria-label={ (words) " " (phone) } { (words) }
            }
        }
    };
    html! {
        div.scroll {
            table.cards {
                caption { (members.len()) " members, as the network has them now" }
                thead { tr {
                    th scope="col" { "Number" } th scope="col" { "Role" }
                    @if writes { th scope="col" { "Change" } }
                } }
                tbody {
                    @for m in members {
                        @let phone = m.phone.e164();
                        tr {
                            td data-label="Number" { (phone) @if Some(&m.phone) == own { " (this number)" } }
                            td data-label="Role" { (role_words(m.role)) }
                            @if writes {
                                td data-label="Change" {
                                    @if Some(&m.phone) != own && m.role != MemberRole::Creator {
                                        div.actions {
                                            @if m.role == MemberRole::Admin {
                                                (action(ParticipantChange::Demote, &phone, "Dismiss as admin"))
                                            } @else {
                                                (action(ParticipantChange::Promote, &phone, "Make admin"))
                                            }
                                            (action(ParticipantChange::Remove, &phone, "Remove"))
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// Each participant's outcome: the number as given, as read, the outcome, and what it means.
pub(super) fn outcomes_table(caption: &str, reports: &[ParticipantReport]) -> Markup {
    html! {
        div.scroll {
            table.cards.outcomes {
                caption { (caption) }
                thead { tr {
                    th scope="col" { "Participant" } th scope="col" { "Outcome" } th scope="col" { "Details" }
                } }
                tbody {
                    @for r in reports {
                        tr {
                            td data-label="Participant" {
                                @match &r.phone { Some(phone) => (phone.e164()), None => (r.input) }
                            }
                            td data-label="Outcome" {
                                span class={ "outcome outcome-" (r.outcome.as_str()) } { (r.outcome.as_str().replace('_', " ")) }
                            }
                            td data-label="Details" {
                                (r.message)
                                @if let Some(code) = r.code { " (WhatsApp " (code) ")" }
                                @if let Some(request) = &r.add_request {
                                    br; small { "Private invite code " code { (request.code) } ", valid until " (request.expires_at) }
                                }
                            }
                        }
                    }
                    @if reports.is_empty() { tr { td colspan="3" { "Nobody." } } }
                }
            }
        }
    }
}

fn participants_form(console: &Console, path: &str) -> Markup {
    html! {
        section aria-labelledby="change-participants" {
            h2 #change-participants { "Add or change participants" }
            form.stack method="post" action={ (path) "/participants" } {
                (console.csrf_field())
                label for="participant-action" { "Change" }
                select #participant-action name="action" {
                    option value="add" selected { "Add" }
                    option value="remove" { "Remove" }
                    option value="promote" { "Make admins" }
                    option value="demote" { "Dismiss as admins" }
                }
                label for="participants" { "Phone numbers with country code, one per line" }
                textarea #participants name="participants" rows="4" required placeholder="+17137157533" {}
                label.check {
                    input type="checkbox" name="auto_invite" value="on";
                    " When adding: send a private invite to whoever privacy settings keep out"
                }
                button type="submit" { "Apply" }
            }
        }
    }
}

fn edit_form(console: &Console, path: &str, record: &GroupRecord) -> Markup {
    let s = &record.settings;
    let timers = [Disappearing::Off, Disappearing::Day, Disappearing::Week, Disappearing::NinetyDays];
    html! {
        section aria-labelledby="edit" {
            h2 #edit { "Subject, description and settings" }
            form.stack method="post" action={ (path) "/edit" } {
                (console.csrf_field())
                label for="subject" { "Subject" }
                input #subject type="text" name="subject" required maxlength="100" value=(record.subject);
                label for="description" { "Description" }
                textarea #description name="description" rows="3" maxlength="2048" {
                    @if let Some(d) = &record.description { (d) }
                }
                fieldset {
                    legend { "Settings" }
                    label.check { input type="checkbox" name="announce_only" value="on" checked[s.announce_only]; " Only admins send messages" }
                    label.check { input type="checkbox" name="locked_info" value="on" checked[s.locked_info]; " Only admins edit the subject, description and picture" }
                    label.check { input type="checkbox" name="join_approval" value="on" checked[s.join_approval]; " Joining by link needs an admin's approval" }
                    label for="disappearing" { "Disappearing messages" }
                    select #disappearing name="disappearing" {
                        @for d in timers {
                            option value=(d.seconds()) selected[d == s.disappearing_messages] { (disappearing_words(d)) }
                        }
                    }
                }
                button type="submit" { "Save" }
            }
        }
    }
}

#[derive(Deserialize)]
struct EditForm {
    #[serde(default)]
    subject: String,
    #[serde(default)]
    description: String,
    announce_only: Option<String>,
    locked_info: Option<String>,
    join_approval: Option<String>,
    #[serde(default)]
    disappearing: String,
}

impl EditForm {
    /// Only what differs from the group as it is: each change is a call to the network.
    fn change_from(&self, record: &GroupRecord) -> Result<GroupChange, ApiError> {
        let disappearing = self
            .disappearing
            .trim()
            .parse()
            .ok()
            .and_then(Disappearing::from_seconds)
            .ok_or_else(|| ApiError::field("disappearing", "choose one of the timers offered"))?;
        let current = &record.settings;
        let differs = |new: bool, old: bool| (new != old).then_some(new);
        // Browsers send textarea line breaks as CRLF; WhatsApp keeps LF.
        let description = self.description.replace("\r\n", "\n");
        Ok(GroupChange {
            subject: Some(self.subject.clone()).filter(|s| *s != record.subject),
            description: Some(description).filter(|d| Some(d.as_str()) != record.description.as_deref().or(Some(""))),
            settings: GroupSettingsPatch {
                announce_only: differs(self.announce_only.is_some(), current.announce_only),
                locked_info: differs(self.locked_info.is_some(), current.locked_info),
                join_approval: differs(self.join_approval.is_some(), current.join_approval),
                disappearing_messages: (disappearing != current.disappearing_messages).then_some(disappearing),
            },
        })
    }
}

async fn edit(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Submitted { console, form }: Submitted<EditForm>,
) -> PageResult<Response> {
    let record = resolve(&state, &console, &id).await?;
    let path = group_path(&record);
    let updated = match form.change_from(&record) {
        Ok(change) => state.service.groups().update_group(record.clone(), change).await.map(drop),
        Err(e) => Err(e),
    };
    match updated {
        Ok(()) => Ok(see_other(&path)),
        Err(ApiError::Validation(fields)) => {
            unprocessable(group_page(&state, &console, record, Notice::Error(field_words(&fields))).await?)
        }
        Err(e) => Err(e.into()),
    }
}

#[derive(Deserialize)]
struct ParticipantsForm {
    #[serde(default)]
    action: String,
    #[serde(default)]
    participants: String,
    auto_invite: Option<String>,
}

async fn change_participants(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Submitted { console, form }: Submitted<ParticipantsForm>,
) -> PageResult<Response> {
    let record = resolve(&state, &console, &id).await?;
    let change = match form.action.as_str() {
        "add" => ParticipantChange::Add,
        "remove" => ParticipantChange::Remove,
        "promote" => ParticipantChange::Promote,
        "demote" => ParticipantChange::Demote,
        _ => return Err(ApiError::field("action", "choose add, remove, promote or demote").into()),
    };
    let participants: Vec<String> =
        form.participants.split(['\n', ',']).map(str::trim).filter(|p| !p.is_empty()).map(str::to_owned).collect();
    let auto_invite = form.auto_invite.is_some().then_some(true);
    match state.service.groups().change_participants(&record, change, &participants, auto_invite).await {
        Ok(reports) => {
            Ok(group_page(&state, &console, record, Notice::Changed { change, reports }).await?.into_response())
        }
        Err(ApiError::Validation(fields)) => {
            unprocessable(group_page(&state, &console, record, Notice::Error(field_words(&fields))).await?)
        }
        Err(e) => Err(e.into()),
    }
}

async fn reset_invite_link(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Submitted { console, .. }: Submitted<Vec<(String, String)>>,
) -> PageResult<Response> {
    let record = resolve(&state, &console, &id).await?;
    state.service.groups().invite_link(&record, true).await?;
    Ok(group_page(&state, &console, record, Notice::LinkReset).await?.into_response())
}

async fn confirm_leave(State(state): State<AppState>, console: Console, Path(id): Path<String>) -> PageResult {
    let record = resolve(&state, &console, &id).await?;
    let path = group_path(&record);
    let confirm = Confirm {
        question: format!("Leave {}?", record.subject),
        what_happens: "The number leaves the group on WhatsApp and can no longer change it. Convene keeps the record.",
        action: format!("{path}/leave"),
        button: format!("Leave {}", record.subject),
        back: &path,
    };
    Ok(confirm.page(
        &console,
        Section::Groups,
        html! { a href=(PATH) { "Groups" } " › " a href=(path) { (record.subject) } },
    ))
}

async fn leave(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Submitted { console, .. }: Submitted<Vec<(String, String)>>,
) -> PageResult<Response> {
    let record = resolve(&state, &console, &id).await?;
    let record = state.service.groups().leave_group(record).await?;
    Ok(see_other(&group_path(&record)))
}

#[cfg(test)]
mod tests {
    use convene_core::{GroupId, GroupJid, Timestamp};

    use super::*;

    fn record() -> GroupRecord {
        GroupRecord {
            id: GroupId::new(),
            instance_id: InstanceId(7_103_000_001),
            jid: GroupJid::parse("120363043968066561@g.us").unwrap(),
            subject: "War room".into(),
            description: None,
            settings: GroupSettings { join_approval: true, ..GroupSettings::default() },
            created_at: Timestamp::from_millis(0),
            updated_at: Timestamp::from_millis(0),
            left_at: None,
            creation_job_id: None,
        }
    }

    fn form(subject: &str, description: &str, join_approval: bool, disappearing: &str) -> EditForm {
        EditForm {
            subject: subject.into(),
            description: description.into(),
            announce_only: None,
            locked_info: None,
            join_approval: join_approval.then(|| "on".into()),
            disappearing: disappearing.into(),
        }
    }

    #[test]
    fn the_form_as_sent_back_unchanged_changes_nothing() {
        let change = form("War room", "", true, "0").change_from(&record()).unwrap();
        assert_eq!((change.subject, change.description), (None, None));
        assert!(change.settings.is_empty());
    }

    #[test]
    fn only_what_the_operator_changed_goes_to_the_network() {
        let change = form("War room", "Line one\r\nLine two", false, "604800").change_from(&record()).unwrap();
        assert_eq!(change.subject, None);
        assert_eq!(change.description.as_deref(), Some("Line one\nLine two"));
        assert_eq!(
            change.settings,
            GroupSettingsPatch {
                join_approval: Some(false),
                disappearing_messages: Some(Disappearing::Week),
                ..GroupSettingsPatch::default()
            }
        );
    }

    #[test]
    fn a_timer_that_is_not_offered_is_a_field_error() {
        let result = form("War room", "", true, "3600").change_from(&record());
        assert!(matches!(result, Err(ApiError::Validation(fields)) if fields[0].field == "disappearing"));
    }
}
