//! Numbers: every instance with its live state and pacing; adding one; a number's page with QR or phone-code
//! pairing as it happens, its settings, logging out and deleting.

use std::convert::Infallible;
use std::future::Future;
use std::time::Duration;

use axum::Router;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use convene_core::store::InstanceRecord;
use convene_core::{ConnectorKind, InstanceId, InstanceState, PacingPolicy, Timestamp};
use futures_util::Stream;
use maud::{Markup, html};
use serde::Deserialize;

use super::session::{Console, Submitted};
use super::time::relative;
use super::{Confirm, PageResult, Section, field_words, inline_svg, page, see_other};
use crate::AppState;
use crate::api::instances::parse_instance_id;
use crate::api::page::{Cursor, Page, PageParams};
use crate::connectors;
use crate::error::ApiError;
use crate::service::{CreationStatus, InstanceHealth, Service};

pub const PATH: &str = "/console/numbers";
/// How often a live region checks for a change to push.
pub(super) const LIVE_INTERVAL: Duration = Duration::from_secs(1);

pub fn router() -> Router<AppState> {
    Router::new()
        .route(PATH, get(list).post(create))
        .route("/console/numbers/live", get(list_live))
        .route("/console/numbers/{id}", get(show))
        .route("/console/numbers/{id}/live", get(show_live))
        .route("/console/numbers/{id}/settings", post(save_settings))
        .route("/console/numbers/{id}/pairing-code", post(pairing_code))
        .route("/console/numbers/{id}/logout", post(logout))
        .route("/console/numbers/{id}/delete", get(confirm_delete).post(delete))
}

pub(super) fn number_path(id: InstanceId) -> String {
    format!("{PATH}/{id}")
}

/// One instance as its row and its page show it.
struct Number {
    record: InstanceRecord,
    state: InstanceState,
    creation: CreationStatus,
    /// The QR code to scan now, drawn, while a WhatsApp number waits for one to be scanned.
    qr: Option<Markup>,
}

impl Number {
    async fn load(service: &Service, record: InstanceRecord, state: InstanceState, now: Timestamp) -> PageResult<Self> {
        let creation = service.creation_status(&record, now).await?;
        Ok(Self { record, state, creation, qr: None })
    }

    /// `load`, with the QR code drawn when there is one to scan.
    async fn load_with_qr(service: &Service, id: InstanceId, now: Timestamp) -> PageResult<Self> {
        let (record, state) = service.instances().get(id).await?;
        let mut number = Self::load(service, record, state, now).await?;
        if pairs(number.record.kind) && matches!(number.state, InstanceState::Pairing) {
            // No QR right now is an answer the page shows ("waiting"), not an error.
            if let Ok(code) = service.pairing_qr(id).await {
                let svg = crate::qr::svg(&code.code).map_err(|e| ApiError::internal(anyhow::anyhow!(e)))?;
                number.qr = Some(inline_svg(&svg, "QR code to link this number"));
            }
        }
        Ok(number)
    }
}

/// The numbers the key sees, without their states: for choices and names on other pages.
pub(super) async fn visible_numbers(state: &AppState, console: &Console) -> PageResult<Vec<InstanceRecord>> {
    let instances = state.service.instances().list().await?;
    Ok(instances.into_iter().map(|(record, _)| record).filter(|record| console.key.sees(record.id)).collect())
}

/// The instances the key sees: their count by state, and a page of them from `cursor`.
async fn numbers_page(
    state: &AppState,
    console: &Console,
    params: &PageParams,
) -> PageResult<(Vec<(&'static str, u64)>, Page<Number>)> {
    let all: Vec<_> =
        state.service.instances().list().await?.into_iter().filter(|(record, _)| console.key.sees(record.id)).collect();
    let summary = state_counts(&InstanceHealth::of(&all));
    let page = Page::from_all(all, params, |(record, _)| Cursor::new(record.id.0, None))?;
    let now = state.service.now();
    let mut items = Vec::with_capacity(page.items.len());
    for (record, live) in page.items {
        items.push(Number::load(&state.service, record, live, now).await?);
    }
    Ok((summary, Page { items, next_cursor: page.next_cursor }))
}

fn state_badge(state: &InstanceState) -> Markup {
    html! {
        span class={ "state state-" (state.name()) } title=[state.not_connected_reason()] { (state.name().replace('_', " ")) }
    }
}

/// Why a number cannot reach its network, and when it tries again, under its state in the list.
fn connection_error(state: &InstanceState, now: Timestamp) -> Markup {
    html! {
        @if let InstanceState::Unreachable { error, next_retry_at, .. } = state {
            small.why {
                (error)
                @if let Some(at) = next_retry_at { " · next attempt " (relative(*at, now)) }
            }
        }
    }
}

/// The kind in people's words; a kind this build does not have, by its name.
pub(super) fn kind_words(kind: ConnectorKind) -> &'static str {
    connectors::registration(kind).map_or(kind.as_str(), |r| r.label())
}

/// `words` with a capital first letter, to open a line.
fn capitalised(words: &str) -> String {
    let mut chars = words.chars();
    chars.next().map_or_else(String::new, |first| first.to_uppercase().chain(chars).collect())
}

/// Whether numbers of `kind` are linked by pairing a phone.
fn pairs(kind: ConnectorKind) -> bool {
    connectors::registration(kind).is_some_and(|r| r.pairs())
}

/// "12 / 30" against the daily cap, or "12 (no cap)".
fn daily_use(creation: &CreationStatus) -> String {
    match creation.pacing.daily_cap {
        Some(cap) => format!("{} / {cap}", creation.created_last_day),
        None => format!("{} (no cap)", creation.created_last_day),
    }
}

fn pause_words(creation: &CreationStatus, now: Timestamp) -> Markup {
    html! {
        @if let Some(pause) = &creation.pause {
            "paused until " (relative(pause.until, now)) ": " (pause.reason)
        } @else {
            "—"
        }
    }
}

/// How many numbers the key sees in each state, those in none left out: what an operator reads first.
fn state_counts(health: &InstanceHealth) -> Vec<(&'static str, u64)> {
    let mut counts: Vec<(&'static str, u64)> = Vec::new();
    for name in InstanceState::NAMES {
        let n: u64 = health.counts.iter().filter(|((_, state), _)| *state == name).map(|(_, n)| n).sum();
        if n > 0 {
            counts.push((name, n));
        }
    }
    counts
}

/// The live part of the numbers page: the count by state, then this page's table.
fn numbers_block(summary: &[(&'static str, u64)], numbers: &[Number], now: Timestamp) -> Markup {
    let total: u64 = summary.iter().map(|(_, n)| n).sum();
    html! {
        p.summary #state-summary {
            strong { (total) (if total == 1 { " number" } else { " numbers" }) }
            @for (name, n) in summary {
                " · " span class={ "state state-" (name) } { (n) " " (name.replace('_', " ")) }
            }
        }
        div.scroll {
            table.cards {
                caption { "Every number this key sees, with its live state and pacing" }
                thead { tr {
                    th scope="col" { "Name" } th scope="col" { "Number" } th scope="col" { "Kind" }
                    th scope="col" { "State" } th scope="col" { "Next creation" } th scope="col" { "Last 24 h" }
                    th scope="col" { "Pause" }
                } }
                tbody { (rows(numbers, now)) }
            }
        }
    }
}

fn rows(numbers: &[Number], now: Timestamp) -> Markup {
    html! {
        @for n in numbers {
            tr {
                td data-label="Name" { a href=(number_path(n.record.id)) { (n.record.name) } }
                td data-label="Number" { @if let Some(phone) = &n.record.phone { (phone.e164()) } @else { "—" } }
                td data-label="Kind" { (kind_words(n.record.kind)) }
                td data-label="State" { (state_badge(&n.state)) (connection_error(&n.state, now)) }
                td data-label="Next creation" { (relative(n.creation.next_creation_at.max(now), now)) }
                td data-label="Last 24 h" { (daily_use(&n.creation)) }
                td data-label="Pause" { (pause_words(&n.creation, now)) }
            }
        }
        @if numbers.is_empty() {
            tr { td colspan="7" { "No numbers yet." } }
        }
    }
}

#[derive(Deserialize, Default)]
struct ListQuery {
    cursor: Option<String>,
}

/// The page asked for; a query that does not parse is the first page.
fn page_params(query: Result<Query<ListQuery>, QueryRejection>) -> PageParams {
    PageParams { limit: None, cursor: query.ok().and_then(|Query(q)| q.cursor) }
}

async fn list(
    State(state): State<AppState>,
    console: Console,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> PageResult {
    let params = page_params(query);
    list_page(&state, &console, &params, None).await
}

async fn list_page(state: &AppState, console: &Console, params: &PageParams, error: Option<String>) -> PageResult {
    let (summary, numbers) = numbers_page(state, console, params).await?;
    let now = state.service.now();
    let live = match &params.cursor {
        Some(cursor) => format!("/console/numbers/live?cursor={}", urlencode(cursor)),
        None => "/console/numbers/live".to_owned(),
    };
    Ok(page(
        "Numbers",
        Some(console),
        Section::Numbers,
        html! {
            h1 { "Numbers" }
            @if let Some(error) = &error { p.error role="alert" { (error) } }
            div #numbers-live hx-ext="sse" sse-connect=(live) sse-swap="numbers" { (numbers_block(&summary, &numbers.items, now)) }
            @if let Some(next) = &numbers.next_cursor {
                p { a href={ (PATH) "?cursor=" (urlencode(next)) } rel="next" { "Next page" } }
            }
            @if console.writes() && console.account_wide() {
                (add_form(console))
            }
        },
    ))
}

pub(super) fn urlencode(value: &str) -> String {
    serde_urlencoded::to_string([("", value)]).map(|s| s[1..].to_owned()).unwrap_or_default()
}

fn add_form(console: &Console) -> Markup {
    html! {
        section aria-labelledby="add-number" {
            h2 #add-number { "Add a number" }
            form.stack method="post" action=(PATH) {
                (console.csrf_field())
                label for="kind" { "Kind" }
                select #kind name="kind" {
                    @for (i, kind) in connectors::registrations().enumerate() {
                        option value=(kind.kind()) selected[i == 0] { (capitalised(kind.label())) " (" (kind.summary()) ")" }
                    }
                }
                label for="name" { "Name (optional)" }
                input #name type="text" name="name" maxlength="100";
                label for="phone" { "Sandbox number (optional; a WhatsApp number is whichever phone pairs)" }
                input #phone type="tel" name="phone" placeholder="+12015550142";
                button type="submit" { "Add number" }
            }
        }
    }
}

/// The summary and the table, pushed whenever they change.
async fn list_live(
    State(state): State<AppState>,
    console: Console,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> Response {
    let params = page_params(query);
    live("numbers", state.clone(), console, move |state, console| {
        let params = PageParams { limit: params.limit, cursor: params.cursor.clone() };
        async move {
            let (summary, numbers) = numbers_page(&state, &console, &params).await.ok()?;
            Some(numbers_block(&summary, &numbers.items, state.service.now()).into_string())
        }
    })
}

/// A stream of `event` events carrying what `render` gives whenever it changes, checked every `LIVE_INTERVAL`;
/// it ends when `render` gives nothing or the session ends (the browser's next reconnect is then refused).
pub(super) fn live<F, Fut>(event: &'static str, state: AppState, console: Console, render: F) -> Response
where
    F: Fn(AppState, std::sync::Arc<Console>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Option<String>> + Send + 'static,
{
    let console = std::sync::Arc::new(console);
    let stream = futures_util::stream::unfold((None::<String>, render), move |(last, render)| {
        let (state, console) = (state.clone(), console.clone());
        async move {
            loop {
                tokio::time::sleep(LIVE_INTERVAL).await;
                if !console.still_signed_in(&state).await {
                    return None;
                }
                let html = render(state.clone(), console.clone()).await?;
                if last.as_deref() != Some(html.as_str()) {
                    let event = Event::default().event(event).data(&html);
                    return Some((Ok::<_, Infallible>(event), (Some(html), render)));
                }
            }
        }
    });
    sse(stream)
}

pub(super) fn sse(stream: impl Stream<Item = Result<Event, Infallible>> + Send + 'static) -> Response {
    Sse::new(stream).keep_alive(KeepAlive::default()).into_response()
}

#[derive(Deserialize)]
struct NewNumber {
    #[serde(default)]
    kind: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    phone: String,
}

pub(super) fn blank_to_none(value: &str) -> Option<&str> {
    Some(value.trim()).filter(|v| !v.is_empty())
}

async fn create(
    State(state): State<AppState>,
    Submitted { console, form }: Submitted<NewNumber>,
) -> PageResult<Response> {
    console.key.account_wide("adding a number")?;
    let kind =
        connectors::kind_named(&form.kind).ok_or_else(|| ApiError::field("kind", connectors::choose_a_kind()))?;
    let created = state.service.instances().create(kind, blank_to_none(&form.name), blank_to_none(&form.phone)).await;
    match created {
        Ok((record, token)) => {
            let notice = Notice::Created { token };
            Ok(number_page(&state, &console, record.id, notice).await?.into_response())
        }
        Err(ApiError::Validation(fields)) => {
            unprocessable(list_page(&state, &console, &PageParams::default(), Some(field_words(&fields))).await?)
        }
        Err(e) => Err(e.into()),
    }
}

/// What a number's page says above everything else, after a form.
enum Notice {
    None,
    Created { token: String },
    PairingCode(String),
    Error(String),
}

async fn show(State(state): State<AppState>, console: Console, Path(id): Path<String>) -> PageResult {
    let id = console.key.instance(parse_instance_id(&id)?)?;
    number_page(&state, &console, id, Notice::None).await
}

async fn number_page(state: &AppState, console: &Console, id: InstanceId, notice: Notice) -> PageResult {
    let now = state.service.now();
    let number = Number::load_with_qr(&state.service, id, now).await?;
    let settings = state.service.instances().settings(id).await?;
    let record = &number.record;
    let path = number_path(id);
    Ok(page(
        &record.name,
        Some(console),
        Section::Numbers,
        html! {
            nav.crumbs aria-label="Breadcrumb" { a href=(PATH) { "Numbers" } " › " (record.name) }
            h1 { (record.name) }
            @match &notice {
                Notice::None => {}
                Notice::Created { token } => div.notice role="status" {
                    p { "Number added. Its instance token (Green API " code { "apiTokenInstance" } ", Z-API path token, Wawp "
                        code { "access_token" } ") is shown this once:" }
                    p { code.secret #instance-token { (token) } }
                }
                Notice::PairingCode(code) => div.notice role="status" {
                    p { "On the phone: WhatsApp › Linked devices › Link a device › Link with phone number instead, then type:" }
                    p.code #pairing-code { (code) }
                }
                Notice::Error(error) => p.error role="alert" { (error) }
            }
            dl.facts {
                dt { "Instance id" } dd { code { (record.id) } }
                dt { "Kind" } dd { (kind_words(record.kind)) }
                dt { "Added" } dd { (relative(record.created_at, now)) }
            }
            section #live aria-live="polite" hx-ext="sse" sse-connect={ (path) "/live" } sse-swap="live" {
                (live_part(&number, now))
            }
            @if console.writes() {
                (settings_form(console, &number, &settings))
                @if pairs(record.kind) {
                    section aria-labelledby="phone-code" {
                        h2 #phone-code { "Pair with a phone code instead" }
                        form.stack method="post" action={ (path) "/pairing-code" } {
                            (console.csrf_field())
                            label for="pair-phone" { "The phone's number" }
                            input #pair-phone type="tel" name="phone" required placeholder="+12015550142";
                            button type="submit" { "Get a code" }
                        }
                    }
                }
                section aria-labelledby="danger" {
                    h2 #danger { "Log out or delete" }
                    div.actions {
                        @if pairs(record.kind) {
                            form method="post" action={ (path) "/logout" } {
                                (console.csrf_field())
                                button type="submit" { "Log out (unlink the phone)" }
                            }
                        }
                        a.button.danger href={ (path) "/delete" } { "Delete…" }
                    }
                }
            }
        },
    ))
}

/// The part of a number's page that follows it live: state, pairing, pacing.
fn live_part(number: &Number, now: Timestamp) -> Markup {
    let record = &number.record;
    html! {
        h2 { "State" }
        p { (state_badge(&number.state)) " " @if let Some(reason) = number.state.not_connected_reason() { (reason) } }
        @if pairs(record.kind) {
            (pairing_part(number))
        } @else if let Some(phone) = &record.phone {
            p { "Sandbox number " strong { (phone.e164()) } "." }
        }
        h2 { "Group creation" }
        dl.facts {
            dt { "Next creation" } dd { (relative(number.creation.next_creation_at.max(now), now)) }
            dt { "Created in the last 24 h" } dd { (daily_use(&number.creation)) }
            dt { "Pacing" } dd { (pacing_words(&number.creation.pacing)) }
            dt { "Pause" } dd { (pause_words(&number.creation, now)) }
        }
    }
}

fn pacing_words(pacing: &PacingPolicy) -> String {
    if pacing.min_interval_secs == 0 && pacing.daily_cap.is_none() {
        return "none".to_owned();
    }
    let cap = pacing.daily_cap.map_or_else(|| "no daily cap".to_owned(), |cap| format!("at most {cap} a day"));
    format!("one every {} s after a burst of {}, {cap}", pacing.min_interval_secs, pacing.burst)
}

fn pairing_part(number: &Number) -> Markup {
    let record = &number.record;
    html! {
        div #pairing {
            @match (&number.state, &record.phone) {
                (InstanceState::Connected, Some(phone)) => p.paired { "Paired: " strong { (phone.e164()) } },
                (InstanceState::Pairing, _) => {
                    // The QR the session shows now; the page's live region brings the next as it rotates.
                    @if let Some(qr) = &number.qr {
                        p { "Scan with WhatsApp on the phone: Settings › Linked devices › Link a device." }
                        figure.qr { (qr) }
                    } @else {
                        p { "Waiting for WhatsApp to send a QR code…" }
                    }
                }
                (_, Some(phone)) => p { "Linked to " strong { (phone.e164()) } "." },
                _ => p { "Not paired." },
            }
        }
    }
}

async fn show_live(State(state): State<AppState>, console: Console, Path(id): Path<String>) -> PageResult<Response> {
    let id = console.key.instance(parse_instance_id(&id)?)?;
    Ok(live("live", state, console, move |state, _console| async move {
        let now = state.service.now();
        let number = Number::load_with_qr(&state.service, id, now).await.ok()?;
        Some(live_part(&number, now).into_string())
    }))
}

fn settings_form(console: &Console, number: &Number, settings: &convene_core::store::InstanceSettings) -> Markup {
    let path = number_path(number.record.id);
    let pacing = number.creation.pacing;
    html! {
        section aria-labelledby="settings" {
            h2 #settings { "Settings" }
            form.stack method="post" action={ (path) "/settings" } {
                (console.csrf_field())
                fieldset {
                    legend { "Pacing of group creation" }
                    label.check {
                        input type="checkbox" name="kind_default" value="on" checked[settings.pacing.is_none()];
                        " Use the " (kind_words(number.record.kind)) " default (the fields below are then ignored)"
                    }
                    label for="min-interval" { "Least seconds between creations" }
                    input #min-interval type="number" name="min_interval_secs" min="0" max="86400" value=(pacing.min_interval_secs);
                    label for="burst" { "Creations back to back before the interval applies" }
                    input #burst type="number" name="burst" min="1" value=(pacing.burst);
                    label for="daily-cap" { "Most creations in 24 hours (empty: no cap)" }
                    input #daily-cap type="number" name="daily_cap" min="1" value=[pacing.daily_cap];
                }
                label.check {
                    input type="checkbox" name="auto_invite" value="on" checked[settings.auto_invite];
                    " Send a private invite to whoever privacy settings keep out"
                }
                label for="backup-admins" { "Backup admins, one number per line (added to every group and made admins)" }
                textarea #backup-admins name="backup_admins" rows="3" {
                    @for phone in &settings.backup_admins { (phone.e164()) "\n" }
                }
                button type="submit" { "Save settings" }
            }
        }
    }
}

#[derive(Deserialize)]
struct SettingsForm {
    kind_default: Option<String>,
    #[serde(default)]
    min_interval_secs: String,
    #[serde(default)]
    burst: String,
    #[serde(default)]
    daily_cap: String,
    auto_invite: Option<String>,
    #[serde(default)]
    backup_admins: String,
}

fn number_field<T: std::str::FromStr>(field: &str, raw: &str) -> Result<T, ApiError> {
    raw.trim().parse().map_err(|_| ApiError::field(field, "a whole number"))
}

impl SettingsForm {
    fn pacing(&self) -> Result<Option<PacingPolicy>, ApiError> {
        if self.kind_default.is_some() {
            return Ok(None);
        }
        Ok(Some(PacingPolicy {
            min_interval_secs: number_field("min_interval_secs", &self.min_interval_secs)?,
            burst: number_field("burst", &self.burst)?,
            daily_cap: blank_to_none(&self.daily_cap).map(|cap| number_field("daily_cap", cap)).transpose()?,
        }))
    }
}

async fn save_settings(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Submitted { console, form }: Submitted<SettingsForm>,
) -> PageResult<Response> {
    let id = console.key.instance(parse_instance_id(&id)?)?;
    let backup_admins: Vec<String> = form
        .backup_admins
        .split(['\n', ','])
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .map(str::to_owned)
        .collect();
    let saved = match form.pacing() {
        Ok(pacing) => {
            state.service.instances().set_settings(id, pacing, form.auto_invite.is_some(), &backup_admins).await
        }
        Err(e) => Err(e),
    };
    match saved {
        Ok(_) => Ok(see_other(&number_path(id))),
        Err(ApiError::Validation(fields)) => {
            let words = field_words(&fields);
            unprocessable(number_page(&state, &console, id, Notice::Error(words)).await?)
        }
        Err(e) => Err(e.into()),
    }
}

pub(super) fn unprocessable(page: Markup) -> PageResult<Response> {
    let mut response = page.into_response();
    *response.status_mut() = axum::http::StatusCode::UNPROCESSABLE_ENTITY;
    Ok(response)
}

#[derive(Deserialize)]
struct PhoneForm {
    #[serde(default)]
    phone: String,
}

async fn pairing_code(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Submitted { console, form }: Submitted<PhoneForm>,
) -> PageResult<Response> {
    let id = console.key.instance(parse_instance_id(&id)?)?;
    match state.service.request_pairing_code(id, &form.phone).await {
        Ok(code) => Ok(number_page(&state, &console, id, Notice::PairingCode(code.code)).await?.into_response()),
        Err(ApiError::Validation(fields)) => {
            let words = field_words(&fields);
            unprocessable(number_page(&state, &console, id, Notice::Error(words)).await?)
        }
        Err(e) => Err(e.into()),
    }
}

async fn logout(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Submitted { console, .. }: Submitted<Vec<(String, String)>>,
) -> PageResult<Response> {
    let id = console.key.instance(parse_instance_id(&id)?)?;
    state.service.logout(id).await?;
    Ok(see_other(&number_path(id)))
}

async fn confirm_delete(State(state): State<AppState>, console: Console, Path(id): Path<String>) -> PageResult {
    let id = console.key.instance(parse_instance_id(&id)?)?;
    let (record, _) = state.service.instances().get(id).await?;
    let path = number_path(id);
    let confirm = Confirm {
        question: format!("Delete {}?", record.name),
        what_happens: "Convene forgets this number, its groups and its jobs. The groups themselves stay on WhatsApp.",
        action: format!("{path}/delete"),
        button: format!("Delete {}", record.name),
        back: &path,
    };
    Ok(confirm.page(
        &console,
        Section::Numbers,
        html! { a href=(PATH) { "Numbers" } " › " a href=(path) { (record.name) } },
    ))
}

async fn delete(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Submitted { console, .. }: Submitted<Vec<(String, String)>>,
) -> PageResult<Response> {
    let id = console.key.instance(parse_instance_id(&id)?)?;
    state.service.instances().delete(id).await?;
    Ok(see_other(PATH))
}
