//! Webhooks: the endpoints events go to; adding, editing, enabling and disabling them; their signing secret, shown
//! once when it is made and when it is rotated; each endpoint's deliveries (live) with every attempt, and replays of
//! failed ones. The same service calls as `/v1/webhooks`, under the same rule: endpoints belong to the whole
//! account, so a key for some numbers gets the API's 403.

use std::time::Duration;

use axum::Router;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use convene_core::Timestamp;
use convene_core::events::{
    DeliveryAttempt, DeliveryListQuery, DeliveryRecord, DeliveryState, EventType, WebhookEndpoint,
};
use maud::{Markup, html};
use serde::Deserialize;
use uuid::Uuid;

use super::numbers::{live, unprocessable, urlencode};
use super::session::{Console, Submitted};
use super::time::relative;
use super::{PageResult, Section, field_words, page, see_other};
use crate::AppState;
use crate::api::page::{Cursor, DEFAULT_LIMIT, Page, PageParams};
use crate::api::webhooks::{delivery_id, endpoint_id};
use crate::error::ApiError;
use crate::service::endpoints::{EndpointPatch, NewEndpoint};

pub const PATH: &str = "/console/webhooks";
/// What the 403 for a key of some numbers names.
const ACCOUNT_WIDE: &str = "webhook endpoints";
/// How long the current secret keeps signing after a rotation unless the operator picks otherwise (the API's too).
const DEFAULT_OVERLAP_SECS: u64 = 86_400;

pub fn router() -> Router<AppState> {
    Router::new()
        .route(PATH, get(list).post(create))
        .route("/console/webhooks/{id}", get(show))
        .route("/console/webhooks/{id}/live", get(deliveries_live))
        .route("/console/webhooks/{id}/edit", post(edit))
        .route("/console/webhooks/{id}/rotate", get(confirm_rotate).post(rotate))
        .route("/console/webhooks/{id}/delete", get(confirm_delete).post(delete))
        .route("/console/webhooks/{id}/replay", post(replay_failed))
        .route("/console/webhooks/{id}/deliveries/{delivery}", get(show_delivery))
        .route("/console/webhooks/{id}/deliveries/{delivery}/live", get(delivery_live))
        .route("/console/webhooks/{id}/deliveries/{delivery}/replay", post(replay_one))
}

fn endpoint_path(id: Uuid) -> String {
    format!("{PATH}/{id}")
}

fn delivery_path(endpoint: Uuid, delivery: i64) -> String {
    format!("{PATH}/{endpoint}/deliveries/{delivery}")
}

/// The endpoint a path names, for a key that may see endpoints.
fn endpoint_of(console: &Console, raw: &str) -> Result<Uuid, ApiError> {
    console.key.account_wide(ACCOUNT_WIDE)?;
    endpoint_id(raw)
}

// ---------- the list ----------

#[derive(Deserialize, Default)]
struct ListQuery {
    cursor: Option<String>,
}

/// An endpoint as its row shows it, with its newest delivery (one indexed lookup per row: endpoints are few).
struct Row {
    endpoint: WebhookEndpoint,
    last: Option<DeliveryRecord>,
}

async fn endpoints_page(state: &AppState, params: &PageParams) -> PageResult<Page<Row>> {
    let all = state.endpoints.list().await?;
    let page = Page::from_all(all, params, |e| Cursor::new(e.created_at.as_millis(), Some(e.id)))?;
    let mut rows = Vec::with_capacity(page.items.len());
    for endpoint in page.items {
        let newest = DeliveryListQuery { endpoint_id: Some(endpoint.id), limit: 1, ..DeliveryListQuery::default() };
        let last = state.endpoints.deliveries(&newest).await?.into_iter().next();
        rows.push(Row { endpoint, last });
    }
    Ok(Page { items: rows, next_cursor: page.next_cursor })
}

async fn list(
    State(state): State<AppState>,
    console: Console,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> PageResult {
    console.key.account_wide(ACCOUNT_WIDE)?;
    let params = PageParams { limit: None, cursor: query.ok().and_then(|Query(q)| q.cursor) };
    list_page(&state, &console, &params, None, &EndpointForm::new()).await
}

/// The list, then the form to add one (holding what was sent, after a refusal, with `error` above it).
async fn list_page(
    state: &AppState,
    console: &Console,
    params: &PageParams,
    error: Option<String>,
    form: &EndpointForm,
) -> PageResult {
    let endpoints = endpoints_page(state, params).await?;
    let now = state.service.now();
    Ok(page(
        "Webhooks",
        Some(console),
        Section::Webhooks,
        html! {
            h1 { "Webhooks" }
            p { "Every event (see " a href="/console/events" { "Events" } ") is sent to each enabled endpoint whose filter takes it, signed the Standard Webhooks way, and retried until it is answered 2xx or the retry schedule runs out." }
            div.scroll {
                table.cards {
                    caption { "Endpoints, oldest first" }
                    thead { tr {
                        th scope="col" { "URL" } th scope="col" { "Events" } th scope="col" { "State" }
                        th scope="col" { "Last delivery" } th scope="col" { "Added" }
                    } }
                    tbody {
                        @for row in &endpoints.items {
                            @let e = &row.endpoint;
                            tr {
                                td data-label="URL" {
                                    a.url href=(endpoint_path(e.id)) { (e.url) }
                                    @if !e.description.is_empty() { small.muted { (e.description) } }
                                }
                                td data-label="Events" { (filter_words(e)) }
                                td data-label="State" { (endpoint_state(e, now)) }
                                td data-label="Last delivery" {
                                    @if let Some(last) = &row.last {
                                        (delivery_badge(last.state)) " " (relative(last.updated_at, now))
                                    } @else { "none yet" }
                                }
                                td data-label="Added" { (relative(e.created_at, now)) }
                            }
                        }
                        @if endpoints.items.is_empty() {
                            tr { td colspan="5" { "No endpoints yet." } }
                        }
                    }
                }
            }
            @if let Some(next) = &endpoints.next_cursor {
                p { a href={ (PATH) "?cursor=" (urlencode(next)) } rel="next" { "Next page" } }
            }
            @if console.writes() {
                section aria-labelledby="add-endpoint" {
                    h2 #add-endpoint { "Add an endpoint" }
                    @if let Some(error) = &error { p.error #endpoint-error role="alert" { (error) } }
                    form.stack method="post" action=(PATH) {
                        (console.csrf_field())
                        (endpoint_fields(form, error.is_some()))
                        button type="submit" { "Add endpoint" }
                    }
                }
            }
        },
    ))
}

fn filter_words(endpoint: &WebhookEndpoint) -> Markup {
    let entries = endpoint.filter.entries();
    html! {
        @if entries.is_empty() { "every event" }
        @for (i, entry) in entries.iter().enumerate() {
            @if i > 0 { ", " }
            code { (entry) }
        }
    }
}

fn endpoint_state(endpoint: &WebhookEndpoint, now: Timestamp) -> Markup {
    html! {
        @if endpoint.enabled {
            span.state.state-connected { "enabled" }
        } @else {
            span.state.state-logged_out { "disabled" }
        }
        @if let Some(reason) = &endpoint.disabled_reason { small.why { (reason) } }
        @if let Some(since) = endpoint.failing_since { small.why { "every delivery failing since " (relative(since, now)) } }
    }
}

fn delivery_badge(state: DeliveryState) -> Markup {
    let class = match state {
        DeliveryState::Pending => "state state-pairing",
        DeliveryState::Succeeded => "state state-connected",
        DeliveryState::Failed => "state state-unreachable",
    };
    html! { span class=(class) { (state.as_str()) } }
}

// ---------- the endpoint form (add and edit) ----------

/// The endpoint form as a browser sends it. The event checkboxes share one name, which a struct cannot read from a
/// form, so the fields are picked out by hand.
struct EndpointForm {
    url: String,
    description: String,
    event_types: Vec<String>,
    enabled: bool,
}

impl EndpointForm {
    /// The add form's starting point: enabled, every event.
    fn new() -> Self {
        Self { url: String::new(), description: String::new(), event_types: Vec::new(), enabled: true }
    }

    fn of(endpoint: &WebhookEndpoint) -> Self {
        Self {
            url: endpoint.url.clone(),
            description: endpoint.description.clone(),
            event_types: endpoint.filter.entries().to_vec(),
            enabled: endpoint.enabled,
        }
    }

    /// An unchecked box is not sent, so `enabled` is false unless it is there.
    fn read(fields: &[(String, String)]) -> Self {
        let value = |name: &str| fields.iter().find(|(n, _)| n == name).map(|(_, v)| v.trim().to_owned());
        Self {
            url: value("url").unwrap_or_default(),
            description: value("description").unwrap_or_default(),
            event_types: fields.iter().filter(|(n, _)| n == "event_types").map(|(_, v)| v.clone()).collect(),
            enabled: value("enabled").is_some(),
        }
    }
}

/// The fields of the add and edit forms: URL, description, the events it takes (none checked: every event),
/// enabled.
fn endpoint_fields(form: &EndpointForm, has_error: bool) -> Markup {
    let described = has_error.then_some("endpoint-error");
    let choice = |entry: &str| {
        html! {
            label.check {
                input type="checkbox" name="event_types" value=(entry) checked[form.event_types.iter().any(|e| e == entry)];
                " " code { (entry) }
            }
        }
    };
    html! {
        label for="url" { "URL" }
        input #url type="url" name="url" required maxlength="2048" value=(form.url)
            placeholder="https://example.com/hooks/convene" aria-describedby=[described];
        label for="description" { "Description (optional)" }
        input #description type="text" name="description" maxlength="500" value=(form.description);
        fieldset.choices {
            legend { "Events to send (none checked: every event)" }
            p.muted { "Whole categories" }
            @for category in EventType::categories() { (choice(category.as_str())) }
            p.muted { "Single types" }
            @for t in EventType::ALL { (choice(t.as_str())) }
        }
        label.check {
            input type="checkbox" name="enabled" value="on" checked[form.enabled];
            " Enabled (a disabled endpoint is sent nothing; its pending deliveries wait)"
        }
    }
}

async fn create(
    State(state): State<AppState>,
    Submitted { console, form }: Submitted<Vec<(String, String)>>,
) -> PageResult<Response> {
    console.key.account_wide(ACCOUNT_WIDE)?;
    let form = EndpointForm::read(&form);
    let new = NewEndpoint {
        url: form.url.clone(),
        description: Some(form.description.clone()),
        event_types: Some(form.event_types.clone()),
        enabled: Some(form.enabled),
        secret: None,
    };
    match state.endpoints.create(new).await {
        Ok((endpoint, secret)) => {
            let notice = Notice::Secret { what: "Endpoint added.", secret: secret.to_whsec() };
            Ok(endpoint_page(&state, &console, endpoint.id, &DeliveriesQuery::default(), notice).await?.into_response())
        }
        Err(ApiError::Validation(fields)) => {
            let words = field_words(&fields);
            unprocessable(list_page(&state, &console, &PageParams::default(), Some(words), &form).await?)
        }
        Err(e) => Err(e.into()),
    }
}

// ---------- an endpoint's page ----------

/// What an endpoint's page says above everything else, after a form.
enum Notice {
    None,
    Secret { what: &'static str, secret: String },
    Replayed(u64),
    Error(String),
}

/// An endpoint page's query: which deliveries (by state, from where), and how many a replay queued again.
#[derive(Deserialize, Default)]
struct DeliveriesQuery {
    state: Option<String>,
    cursor: Option<String>,
    replayed: Option<u64>,
}

impl DeliveriesQuery {
    fn state(&self) -> Result<Option<DeliveryState>, ApiError> {
        match self.state.as_deref().unwrap_or_default() {
            "" => Ok(None),
            raw => DeliveryState::parse(raw)
                .map(Some)
                .ok_or_else(|| ApiError::field("state", "pending, succeeded or failed")),
        }
    }

    /// `?state=…&cursor=…` for a link or the live stream.
    fn query_string(&self, cursor: Option<&str>) -> String {
        let pairs: Vec<(&str, &str)> = [("state", self.state.as_deref()), ("cursor", cursor)]
            .into_iter()
            .filter_map(|(k, v)| Some((k, v?)))
            .collect();
        if pairs.is_empty() {
            String::new()
        } else {
            format!("?{}", serde_urlencoded::to_string(pairs).unwrap_or_default())
        }
    }
}

/// A page of the endpoint's deliveries, newest first, as `GET /v1/webhooks/{id}/deliveries` pages them.
async fn deliveries_page(
    state: &AppState,
    endpoint: Uuid,
    query: &DeliveriesQuery,
) -> PageResult<Page<DeliveryRecord>> {
    let params = PageParams { limit: None, cursor: query.cursor.clone() };
    let list = DeliveryListQuery {
        endpoint_id: Some(endpoint),
        state: query.state()?,
        event_id: None,
        before_id: params.cursor()?.map(|c| c.key),
        limit: DEFAULT_LIMIT + 1,
    };
    let deliveries = state.endpoints.deliveries(&list).await?;
    Ok(Page::from_lookahead(deliveries, DEFAULT_LIMIT, |d| Cursor::new(d.id, None).render()))
}

async fn show(
    State(state): State<AppState>,
    console: Console,
    Path(id): Path<String>,
    query: Result<Query<DeliveriesQuery>, QueryRejection>,
) -> PageResult {
    let id = endpoint_of(&console, &id)?;
    let Query(query) = query.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    let notice = query.replayed.map_or(Notice::None, Notice::Replayed);
    endpoint_page(&state, &console, id, &query, notice).await
}

async fn endpoint_page(
    state: &AppState,
    console: &Console,
    id: Uuid,
    query: &DeliveriesQuery,
    notice: Notice,
) -> PageResult {
    let endpoint = state.endpoints.get(id).await?;
    let form = EndpointForm::of(&endpoint);
    endpoint_page_with(state, console, &endpoint, query, notice, &form).await
}

/// The endpoint's page; its edit form holds `form` (what was sent, after a refusal).
async fn endpoint_page_with(
    state: &AppState,
    console: &Console,
    endpoint: &WebhookEndpoint,
    query: &DeliveriesQuery,
    notice: Notice,
    form: &EndpointForm,
) -> PageResult {
    let deliveries = deliveries_page(state, endpoint.id, query).await?;
    let now = state.service.now();
    let path = endpoint_path(endpoint.id);
    let has_error = matches!(notice, Notice::Error(_));
    Ok(page(
        &endpoint.url,
        Some(console),
        Section::Webhooks,
        html! {
            nav.crumbs aria-label="Breadcrumb" { a href=(PATH) { "Webhooks" } " › Endpoint" }
            h1.url { (endpoint.url) }
            @match &notice {
                Notice::None => {}
                Notice::Secret { what, secret } => div.notice role="status" {
                    p { (what) " Its signing secret (for checking the " code { "webhook-signature" } " header) is shown this once:" }
                    p { code.secret #webhook-secret { (secret) } }
                }
                Notice::Replayed(0) => p.notice role="status" { "No failed deliveries to replay." }
                Notice::Replayed(n) => p.notice role="status" {
                    (n) (if *n == 1 { " failed delivery is" } else { " failed deliveries are" }) " queued again."
                }
                Notice::Error(error) => p.error #endpoint-error role="alert" { (error) }
            }
            dl.facts {
                dt { "Endpoint id" } dd { code { (endpoint.id) } }
                @if !endpoint.description.is_empty() { dt { "Description" } dd { (endpoint.description) } }
                dt { "Events" } dd { (filter_words(endpoint)) }
                dt { "State" } dd { (endpoint_state(endpoint, now)) }
                @if let Some((_, until)) = &endpoint.previous_secret {
                    dt { "Previous secret" } dd { "also signs until " (relative(*until, now)) }
                }
                dt { "Added" } dd { (relative(endpoint.created_at, now)) }
            }
            section aria-labelledby="deliveries" {
                h2 #deliveries { "Deliveries" }
                nav.filters aria-label="Deliveries by state" {
                    @for (label, value) in [("All", None), ("Pending", Some("pending")), ("Succeeded", Some("succeeded")), ("Failed", Some("failed"))] {
                        @let current = query.state.as_deref().filter(|s| !s.is_empty()) == value;
                        @let href = DeliveriesQuery { state: value.map(str::to_owned), ..DeliveriesQuery::default() }.query_string(None);
                        a href={ (path) (href) } aria-current=[current.then_some("page")] { (label) }
                    }
                }
                @if console.writes() {
                    form method="post" action={ (path) "/replay" } {
                        (console.csrf_field())
                        button type="submit" { "Replay all failed deliveries" }
                    }
                }
                div #deliveries-live hx-ext="sse" sse-connect={ (path) "/live" (query.query_string(query.cursor.as_deref())) } sse-swap="deliveries" {
                    (deliveries_block(endpoint.id, query, &deliveries, now))
                }
            }
            @if console.writes() {
                section aria-labelledby="edit" {
                    h2 #edit { "Edit" }
                    form.stack method="post" action={ (path) "/edit" } {
                        (console.csrf_field())
                        (endpoint_fields(form, has_error))
                        button type="submit" { "Save" }
                    }
                }
                section aria-labelledby="secret-and-delete" {
                    h2 #secret-and-delete { "Secret and deleting" }
                    div.actions {
                        a.button href={ (path) "/rotate" } { "Rotate the secret…" }
                        a.button.danger href={ (path) "/delete" } { "Delete…" }
                    }
                }
            }
        },
    ))
}

/// The deliveries table and its next-page link: what the live stream pushes.
fn deliveries_block(
    endpoint: Uuid,
    query: &DeliveriesQuery,
    deliveries: &Page<DeliveryRecord>,
    now: Timestamp,
) -> Markup {
    html! {
        div.scroll {
            table.cards {
                caption { "Deliveries to this endpoint, newest first" }
                thead { tr {
                    th scope="col" { "Delivery" } th scope="col" { "Event" } th scope="col" { "State" }
                    th scope="col" { "Attempts" } th scope="col" { "Next attempt" } th scope="col" { "Last error" }
                    th scope="col" { "Created" }
                } }
                tbody {
                    @for d in &deliveries.items {
                        tr {
                            td data-label="Delivery" { a href=(delivery_path(endpoint, d.id)) { "#" (d.id) } }
                            td data-label="Event" { code { (d.event_type) } }
                            td data-label="State" { (delivery_badge(d.state)) }
                            td data-label="Attempts" { (d.attempts) }
                            td data-label="Next attempt" {
                                @if d.state == DeliveryState::Pending { (relative(d.next_attempt_at, now)) } @else { "—" }
                            }
                            td data-label="Last error" { @if let Some(error) = &d.last_error { (error) } @else { "—" } }
                            td data-label="Created" { (relative(d.created_at, now)) }
                        }
                    }
                    @if deliveries.items.is_empty() {
                        tr { td colspan="7" { "No deliveries here." } }
                    }
                }
            }
        }
        @if let Some(next) = &deliveries.next_cursor {
            p { a href={ (endpoint_path(endpoint)) (query.query_string(Some(next))) } rel="next" { "Older deliveries" } }
        }
    }
}

/// The deliveries table, pushed whenever a delivery's state, attempts or error change.
async fn deliveries_live(
    State(state): State<AppState>,
    console: Console,
    Path(id): Path<String>,
    query: Result<Query<DeliveriesQuery>, QueryRejection>,
) -> PageResult<Response> {
    let id = endpoint_of(&console, &id)?;
    let Query(query) = query.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    query.state()?;
    let query = std::sync::Arc::new(query);
    Ok(live("deliveries", state, console, move |state, _console| {
        let query = query.clone();
        async move {
            let deliveries = deliveries_page(&state, id, &query).await.ok()?;
            Some(deliveries_block(id, &query, &deliveries, state.service.now()).into_string())
        }
    }))
}

async fn edit(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Submitted { console, form }: Submitted<Vec<(String, String)>>,
) -> PageResult<Response> {
    let id = endpoint_of(&console, &id)?;
    let form = EndpointForm::read(&form);
    let patch = EndpointPatch {
        url: Some(form.url.clone()),
        description: Some(form.description.clone()),
        event_types: Some(form.event_types.clone()),
        enabled: Some(form.enabled),
    };
    match state.endpoints.update(id, patch).await {
        Ok(_) => Ok(see_other(&endpoint_path(id))),
        Err(ApiError::Validation(fields)) => {
            let endpoint = state.endpoints.get(id).await?;
            let notice = Notice::Error(field_words(&fields));
            unprocessable(
                endpoint_page_with(&state, &console, &endpoint, &DeliveriesQuery::default(), notice, &form).await?,
            )
        }
        Err(e) => Err(e.into()),
    }
}

async fn replay_failed(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Submitted { console, .. }: Submitted<Vec<(String, String)>>,
) -> PageResult<Response> {
    let id = endpoint_of(&console, &id)?;
    // Every failed delivery, however old: the console has no "since" (the API's `since` narrows it).
    let replayed = state.endpoints.replay(id, None, None).await?;
    Ok(see_other(&format!("{}?replayed={replayed}", endpoint_path(id))))
}

// ---------- rotating and deleting ----------

async fn confirm_rotate(State(state): State<AppState>, console: Console, Path(id): Path<String>) -> PageResult {
    let id = endpoint_of(&console, &id)?;
    let endpoint = state.endpoints.get(id).await?;
    let path = endpoint_path(id);
    let overlaps = [
        (0, "No: only the new one signs from now on"),
        (3_600, "1 hour"),
        (DEFAULT_OVERLAP_SECS, "1 day"),
        (604_800, "7 days"),
    ];
    Ok(page(
        "Rotate the secret",
        Some(&console),
        Section::Webhooks,
        html! {
            nav.crumbs aria-label="Breadcrumb" { a href=(PATH) { "Webhooks" } " › " a.url href=(path) { (endpoint.url) } }
            h1 { "Rotate the signing secret?" }
            p { "A new secret is made and shown once. So that the receiver can switch without missing a delivery, the current secret can keep signing beside the new one for a while (each delivery then carries both signatures)." }
            form.stack method="post" action={ (path) "/rotate" } {
                (console.csrf_field())
                label for="overlap" { "Keep the current secret signing for" }
                select #overlap name="previous_valid_for_secs" {
                    @for (secs, words) in overlaps {
                        option value=(secs) selected[secs == DEFAULT_OVERLAP_SECS] { (words) }
                    }
                }
                div.actions {
                    button type="submit" { "Rotate the secret" }
                    a.button href=(path) { "Cancel" }
                }
            }
        },
    ))
}

#[derive(Deserialize)]
struct RotateForm {
    #[serde(default)]
    previous_valid_for_secs: String,
}

async fn rotate(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Submitted { console, form }: Submitted<RotateForm>,
) -> PageResult<Response> {
    let id = endpoint_of(&console, &id)?;
    let secs = match form.previous_valid_for_secs.trim() {
        "" => DEFAULT_OVERLAP_SECS,
        raw => raw.parse().map_err(|_| ApiError::field("previous_valid_for_secs", "a whole number of seconds"))?,
    };
    let (_, secret) = state.endpoints.rotate_secret(id, None, Duration::from_secs(secs)).await?;
    let notice = Notice::Secret { what: "Secret rotated.", secret: secret.to_whsec() };
    Ok(endpoint_page(&state, &console, id, &DeliveriesQuery::default(), notice).await?.into_response())
}

async fn confirm_delete(State(state): State<AppState>, console: Console, Path(id): Path<String>) -> PageResult {
    let id = endpoint_of(&console, &id)?;
    let endpoint = state.endpoints.get(id).await?;
    let path = endpoint_path(id);
    Ok(page(
        "Delete the endpoint",
        Some(&console),
        Section::Webhooks,
        html! {
            nav.crumbs aria-label="Breadcrumb" { a href=(PATH) { "Webhooks" } " › " a.url href=(path) { (endpoint.url) } }
            h1 { "Delete this endpoint?" }
            p { "Convene stops sending to " strong.url { (endpoint.url) } " and forgets its deliveries and their attempts. The events stay in the log." }
            div.actions {
                form method="post" action={ (path) "/delete" } {
                    (console.csrf_field())
                    button.danger type="submit" { "Delete the endpoint" }
                }
                a.button href=(path) { "Cancel" }
            }
        },
    ))
}

async fn delete(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Submitted { console, .. }: Submitted<Vec<(String, String)>>,
) -> PageResult<Response> {
    let id = endpoint_of(&console, &id)?;
    state.endpoints.delete(id).await?;
    Ok(see_other(PATH))
}

// ---------- a delivery ----------

async fn show_delivery(
    State(state): State<AppState>,
    console: Console,
    Path((id, delivery)): Path<(String, String)>,
) -> PageResult {
    let id = endpoint_of(&console, &id)?;
    let delivery = delivery_id(&delivery)?;
    let endpoint = state.endpoints.get(id).await?;
    let (record, attempts) = state.endpoints.delivery(id, delivery).await?;
    let path = delivery_path(id, delivery);
    Ok(page(
        &format!("Delivery #{delivery}"),
        Some(&console),
        Section::Webhooks,
        html! {
            nav.crumbs aria-label="Breadcrumb" {
                a href=(PATH) { "Webhooks" } " › " a.url href=(endpoint_path(id)) { (endpoint.url) } " › Delivery #" (delivery)
            }
            h1 { "Delivery #" (delivery) " of " code { (record.event_type) } }
            section #delivery-live aria-live="polite" hx-ext="sse" sse-connect={ (path) "/live" } sse-swap="delivery" {
                (delivery_part(&console, &path, &record, &attempts, state.service.now()))
            }
        },
    ))
}

/// A delivery's state and every attempt, with the replay button while it is failed: what its live stream pushes.
fn delivery_part(
    console: &Console,
    path: &str,
    delivery: &DeliveryRecord,
    attempts: &[DeliveryAttempt],
    now: Timestamp,
) -> Markup {
    html! {
        dl.facts {
            dt { "Event id" } dd { code { (delivery.event_id) } " (the " code { "webhook-id" } " header)" }
            dt { "State" } dd { (delivery_badge(delivery.state)) }
            @if delivery.state == DeliveryState::Pending {
                dt { "Next attempt" } dd { (relative(delivery.next_attempt_at, now)) }
            }
            dt { "Last error" } dd { @if let Some(error) = &delivery.last_error { (error) } @else { "—" } }
            dt { "Created" } dd { (relative(delivery.created_at, now)) }
        }
        @if delivery.state == DeliveryState::Failed && console.writes() {
            form method="post" action={ (path) "/replay" } {
                (console.csrf_field())
                button type="submit" { "Replay this delivery" }
            }
        }
        h2 { "Attempts (" (attempts.len()) ")" }
        div.scroll {
            table.cards {
                caption { "Every attempt, oldest first" }
                thead { tr {
                    th scope="col" { "#" } th scope="col" { "When" } th scope="col" { "Answer" }
                    th scope="col" { "Took" } th scope="col" { "Start of the answer's body" }
                } }
                tbody {
                    @for (i, a) in attempts.iter().enumerate() {
                        tr {
                            td data-label="#" { (i + 1) }
                            td data-label="When" { (relative(a.attempted_at, now)) }
                            td data-label="Answer" {
                                @match (a.status, &a.error) {
                                    (Some(status), None) => span class={ "state " (if (200..300).contains(&status) { "state-connected" } else { "state-unreachable" }) } { "HTTP " (status) },
                                    (Some(status), Some(error)) => { "HTTP " (status) ", then " (error) },
                                    (None, Some(error)) => { span.state.state-unreachable { "no answer" } small.why { (error) } },
                                    (None, None) => "no answer",
                                }
                            }
                            td data-label="Took" { (a.duration_ms) " ms" }
                            td data-label="Body" { @if let Some(body) = &a.response_body { code.body { (body) } } @else { "—" } }
                        }
                    }
                    @if attempts.is_empty() {
                        tr { td colspan="5" { "Not attempted yet." } }
                    }
                }
            }
        }
    }
}

async fn delivery_live(
    State(state): State<AppState>,
    console: Console,
    Path((id, delivery)): Path<(String, String)>,
) -> PageResult<Response> {
    let id = endpoint_of(&console, &id)?;
    let delivery = delivery_id(&delivery)?;
    let path = delivery_path(id, delivery);
    Ok(live("delivery", state, console, move |state, console| {
        let path = path.clone();
        async move {
            let (record, attempts) = state.endpoints.delivery(id, delivery).await.ok()?;
            Some(delivery_part(&console, &path, &record, &attempts, state.service.now()).into_string())
        }
    }))
}

async fn replay_one(
    State(state): State<AppState>,
    Path((id, delivery)): Path<(String, String)>,
    Submitted { console, .. }: Submitted<Vec<(String, String)>>,
) -> PageResult<Response> {
    let id = endpoint_of(&console, &id)?;
    let delivery = delivery_id(&delivery)?;
    state.endpoints.replay(id, Some(delivery), None).await?;
    Ok(see_other(&delivery_path(id, delivery)))
}
