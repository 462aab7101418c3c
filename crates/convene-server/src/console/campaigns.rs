//! Campaigns: batches of queued group creations with their progress as it happens, each job with its attempts and
//! every participant's outcome, cancelling what has not started, and a form that queues a batch from CSV (pasted,
//! or read from a file by the page's script) over a chosen pool of numbers, saying when pacing lets the last go.

use std::collections::HashMap;

use axum::Router;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use convene_core::store::{BatchSummary, InstanceRecord, JobListQuery, JobRecord, JobState};
use convene_core::{InstanceId, Timestamp};
use maud::{Markup, html};
use serde::Deserialize;
use uuid::Uuid;

use super::groups::outcomes_table;
use super::numbers::{live, number_path, unprocessable, urlencode, visible_numbers};
use super::session::{Console, Submitted};
use super::time::relative;
use super::{PageResult, Section, field_words, page, see_other};
use crate::AppState;
use crate::error::{ApiError, FieldError};
use crate::service::{NewGroup, Service};

pub const PATH: &str = "/console/campaigns";
/// Batches on one page of the list.
const BATCHES_PER_PAGE: u32 = 20;
/// The most jobs a batch holds (`Service::enqueue_groups`), all shown on its page.
const MOST_JOBS: u32 = 1000;

pub fn router() -> Router<AppState> {
    Router::new()
        .route(PATH, get(list).post(queue))
        .route("/console/campaigns/live", get(list_live))
        .route("/console/campaigns/{id}", get(show))
        .route("/console/campaigns/{id}/live", get(show_live))
        .route("/console/campaigns/{id}/cancel", post(cancel_batch))
        .route("/console/jobs/{id}", get(show_job))
        .route("/console/jobs/{id}/cancel", post(cancel_job))
}

fn batch_path(id: Uuid) -> String {
    format!("{PATH}/{id}")
}

fn job_path(id: Uuid) -> String {
    format!("/console/jobs/{id}")
}

fn state_words(state: JobState) -> &'static str {
    state.as_str()
}

fn pool_words(pool: &[InstanceId], names: &HashMap<InstanceId, String>) -> Markup {
    html! {
        @for (i, id) in pool.iter().enumerate() {
            @if i > 0 { ", " }
            a href=(number_path(*id)) { (names.get(id).map_or("(deleted)", String::as_str)) }
        }
    }
}

/// Queued · running · succeeded · failed · cancelled, as counts and a bar of the finished share.
fn progress(batch: &BatchSummary) -> Markup {
    let finished: u64 = JobState::ALL.iter().filter(|s| s.is_final()).map(|s| batch.count(*s)).sum();
    html! {
        span.progress {
            progress max=(batch.total()) value=(finished) aria-label="Finished" { (finished) " of " (batch.total()) }
            @for state in JobState::ALL {
                @let n = batch.count(state);
                @if n > 0 { " " span class={ "job job-" (state.as_str()) } { (n) " " (state_words(state)) } }
            }
        }
    }
}

#[derive(Deserialize, Default)]
struct ListQuery {
    before: Option<String>,
}

/// A page of batches the key sees (every number of the pool), newest first, and the link to older ones.
async fn batches_page(
    state: &AppState,
    console: &Console,
    before: Option<&str>,
) -> PageResult<(Vec<BatchSummary>, Option<String>)> {
    let before = before.and_then(|b| {
        let (at, id) = b.split_once('.')?;
        Some((Timestamp::from_millis(at.parse().ok()?), Uuid::parse_str(id).ok()?))
    });
    let batches = state.store.list_batches(before, BATCHES_PER_PAGE + 1).await?;
    let older = (batches.len() > BATCHES_PER_PAGE as usize)
        .then(|| {
            batches.get(BATCHES_PER_PAGE as usize - 1).map(|b| format!("{}.{}", b.created_at.as_millis(), b.batch_id))
        })
        .flatten();
    let visible = batches
        .into_iter()
        .take(BATCHES_PER_PAGE as usize)
        .filter(|b| b.instance_ids.iter().all(|id| console.key.sees(*id)))
        .collect();
    Ok((visible, older))
}

fn batches_table(batches: &[BatchSummary], names: &HashMap<InstanceId, String>, now: Timestamp) -> Markup {
    html! {
        div.scroll {
            table.cards {
                caption { "Batches of queued groups, newest first" }
                thead { tr {
                    th scope="col" { "Queued" } th scope="col" { "Groups" } th scope="col" { "Progress" }
                    th scope="col" { "Numbers" }
                } }
                tbody {
                    @for b in batches {
                        tr {
                            td data-label="Queued" { a href=(batch_path(b.batch_id)) { (relative(b.created_at, now)) } }
                            td data-label="Groups" { (b.total()) }
                            td data-label="Progress" { (progress(b)) }
                            td data-label="Numbers" { (pool_words(&b.instance_ids, names)) }
                        }
                    }
                    @if batches.is_empty() { tr { td colspan="4" { "No batches yet." } } }
                }
            }
        }
    }
}

async fn list(
    State(state): State<AppState>,
    console: Console,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> PageResult {
    let before = query.ok().and_then(|Query(q)| q.before);
    list_page(&state, &console, before.as_deref(), &QueueForm::default(), Outcome::None).await
}

/// What the queue form gave, shown above it.
enum Outcome {
    None,
    Preview { groups: Vec<(usize, NewGroup)>, last: Option<Timestamp> },
    Error(String),
}

async fn list_page(
    state: &AppState,
    console: &Console,
    before: Option<&str>,
    form: &QueueForm,
    outcome: Outcome,
) -> PageResult {
    let numbers = visible_numbers(state, console).await?;
    let names: HashMap<InstanceId, String> = numbers.iter().map(|n| (n.id, n.name.clone())).collect();
    let (batches, older) = batches_page(state, console, before).await?;
    let now = state.service.now();
    let live_url = match before {
        Some(b) => format!("/console/campaigns/live?before={}", urlencode(b)),
        None => "/console/campaigns/live".to_owned(),
    };
    Ok(page(
        "Campaigns",
        Some(console),
        Section::Campaigns,
        html! {
            h1 { "Campaigns" }
            div #batches-live hx-ext="sse" sse-connect=(live_url) sse-swap="batches" { (batches_table(&batches, &names, now)) }
            @if let Some(older) = &older {
                p { a href={ (PATH) "?before=" (urlencode(older)) } rel="next" { "Older batches" } }
            }
            @if console.writes() {
                (queue_form(console, &numbers, form, &outcome, now))
            }
        },
    ))
}

fn queue_form(
    console: &Console,
    numbers: &[InstanceRecord],
    form: &QueueForm,
    outcome: &Outcome,
    now: Timestamp,
) -> Markup {
    html! {
        section aria-labelledby="queue" {
            h2 #queue { "Queue a batch of groups" }
            @match outcome {
                Outcome::None => {}
                Outcome::Error(error) => p.error role="alert" { (error) },
                Outcome::Preview { groups, last } => div.notice role="status" {
                    p {
                        (groups.len()) (if groups.len() == 1 { " group" } else { " groups" }) " read. "
                        @match last {
                            Some(last) => { "Pacing lets the last one start " (relative(*last, now)) "." }
                            None => "Choose at least one number to see when the last one can start.",
                        }
                    }
                    div.scroll {
                        table.cards {
                            caption { "The groups as read from the CSV" }
                            thead { tr { th scope="col" { "Line" } th scope="col" { "Subject" } th scope="col" { "Participants" } th scope="col" { "Description" } } }
                            tbody {
                                @for (line, g) in groups {
                                    tr {
                                        td data-label="Line" { (line) }
                                        td data-label="Subject" { (g.subject) }
                                        td data-label="Participants" { (g.participants.join(", ")) }
                                        td data-label="Description" { @if let Some(d) = &g.description { (d) } }
                                    }
                                }
                            }
                        }
                    }
                }
            }
            form.stack method="post" action=(PATH) {
                (console.csrf_field())
                fieldset {
                    legend { "Numbers to create from (each group goes to whichever may create soonest)" }
                    @for n in numbers {
                        label.check {
                            input type="checkbox" name="number" value=(n.id) checked[form.pool.contains(&n.id)];
                            " " (n.name)
                            @if let Some(phone) = &n.phone { " (" (phone.e164()) ")" }
                        }
                    }
                    @if numbers.is_empty() { p { "No numbers yet: add one first." } }
                }
                label for="csv" { "Groups as CSV, one per line: subject, participants (separated by ;), description (optional). A first line starting with \"subject\" is a header." }
                textarea #csv name="csv" rows="8" required placeholder="subject,participants,description\nOnboarding ACME,+17137157533;+18647351567,Welcome!" { (form.csv) }
                div.file hidden {
                    label for="csv-file" { "Or read a CSV file into the box above" }
                    input #csv-file type="file" accept=".csv,text/csv,text/plain" data-fills="csv";
                }
                label.check {
                    input type="checkbox" name="auto_invite" value="on" checked[form.auto_invite];
                    " Send a private invite to whoever privacy settings keep out"
                }
                div.actions {
                    button type="submit" name="intent" value="preview" { "Preview" }
                    button type="submit" name="intent" value="queue" { "Queue groups" }
                }
            }
        }
    }
}

async fn list_live(
    State(state): State<AppState>,
    console: Console,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> Response {
    let before = query.ok().and_then(|Query(q)| q.before);
    live("batches", state, console, move |state, console| {
        let before = before.clone();
        async move {
            let numbers = visible_numbers(&state, &console).await.ok()?;
            let names = numbers.into_iter().map(|n| (n.id, n.name)).collect();
            let (batches, _) = batches_page(&state, &console, before.as_deref()).await.ok()?;
            Some(batches_table(&batches, &names, state.service.now()).into_string())
        }
    })
}

/// The queue form as sent: the pool (repeated `number` fields), the CSV, and what to do.
#[derive(Default)]
struct QueueForm {
    pool: Vec<InstanceId>,
    csv: String,
    auto_invite: bool,
    preview: bool,
}

impl QueueForm {
    fn read(fields: Vec<(String, String)>) -> Result<Self, ApiError> {
        let mut form = Self::default();
        for (name, value) in fields {
            match name.as_str() {
                "number" => form.pool.push(crate::api::instances::parse_instance_id(&value)?),
                "csv" => form.csv = value,
                "auto_invite" => form.auto_invite = true,
                "intent" => form.preview = value == "preview",
                _ => {}
            }
        }
        Ok(form)
    }
}

/// Groups from CSV text: subject, participants separated by `;` (or `,` inside a quoted cell), and an optional
/// description; blank lines skipped, a first line whose first cell is "subject" taken as a header. Each group comes
/// with its line number, for messages.
fn parse_csv(text: &str, auto_invite: bool) -> Result<Vec<(usize, NewGroup)>, Vec<FieldError>> {
    let mut reader =
        csv::ReaderBuilder::new().has_headers(false).flexible(true).trim(csv::Trim::All).from_reader(text.as_bytes());
    let mut groups = Vec::new();
    let mut errors = Vec::new();
    for (i, record) in reader.records().enumerate() {
        // The reader's line count passes over blank lines, and a record's position is where the blank lines before
        // it begin: its own line is after them.
        let line = record
            .as_ref()
            .ok()
            .and_then(|r| r.position())
            .and_then(|p| text.get(usize::try_from(p.byte()).ok()?..))
            .map_or(i + 1, |rest| {
                let start = text.len() - rest.trim_start_matches(['\r', '\n']).len();
                text[..start].matches('\n').count() + 1
            });
        let record = match record {
            Ok(record) => record,
            Err(e) => {
                errors.push(FieldError::new(format!("line {line}"), format!("is not CSV: {e}")));
                continue;
            }
        };
        if record.iter().all(str::is_empty) {
            continue;
        }
        if groups.is_empty() && errors.is_empty() && record.get(0).is_some_and(|c| c.eq_ignore_ascii_case("subject")) {
            continue;
        }
        if record.len() > 3 {
            errors.push(FieldError::new(
                format!("line {line}"),
                "has more than three cells: put participants in one cell, separated by ;",
            ));
            continue;
        }
        let participants = record
            .get(1)
            .unwrap_or("")
            .split([';', ','])
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .map(str::to_owned)
            .collect();
        groups.push((
            line,
            NewGroup {
                subject: record.get(0).unwrap_or("").to_owned(),
                description: record.get(2).filter(|d| !d.is_empty()).map(str::to_owned),
                participants,
                settings: Default::default(),
                auto_invite: Some(auto_invite),
            },
        ));
    }
    if groups.is_empty() && errors.is_empty() {
        errors.push(FieldError::new("csv", "holds no groups"));
    }
    if errors.is_empty() { Ok(groups) } else { Err(errors) }
}

/// The service names a batch's bad fields `groups[i].field`; the form's author reads lines.
fn by_line(fields: Vec<FieldError>, lines: &[usize]) -> Vec<FieldError> {
    fields
        .into_iter()
        .map(|mut f| {
            if let Some(rest) = f.field.strip_prefix("groups[")
                && let Some((index, field)) = rest.split_once("].")
                && let Some(line) = index.parse::<usize>().ok().and_then(|i| lines.get(i))
            {
                f.field = format!("line {line} {field}");
            }
            f
        })
        .collect()
}

async fn queue(
    State(state): State<AppState>,
    Submitted { console, form }: Submitted<Vec<(String, String)>>,
) -> PageResult<Response> {
    let form = QueueForm::read(form)?;
    for &id in &form.pool {
        console.key.instance(id)?;
    }
    let groups = match parse_csv(&form.csv, form.auto_invite) {
        Ok(groups) => groups,
        Err(fields) => {
            let outcome = Outcome::Error(field_words(&fields));
            return unprocessable(list_page(&state, &console, None, &form, outcome).await?);
        }
    };
    if form.preview {
        let last = state.service.forecast_last_creation(&form.pool, groups.len(), state.service.now()).await?;
        return Ok(list_page(&state, &console, None, &form, Outcome::Preview { groups, last }).await?.into_response());
    }
    let lines: Vec<usize> = groups.iter().map(|(line, _)| *line).collect();
    match state.service.enqueue_groups(&form.pool, groups.into_iter().map(|(_, g)| g).collect()).await {
        Ok(queued) => Ok(see_other(&batch_path(queued.batch_id))),
        Err(ApiError::Validation(fields)) => {
            let outcome = Outcome::Error(field_words(&by_line(fields, &lines)));
            unprocessable(list_page(&state, &console, None, &form, outcome).await?)
        }
        Err(e) => Err(e.into()),
    }
}

/// A batch's jobs in the order they were queued (the store lists newest first).
async fn batch_jobs(state: &AppState, console: &Console, id: Uuid) -> PageResult<Vec<JobRecord>> {
    // The store gives at most 500 jobs at a time.
    const STORE_PAGE: u32 = 500;
    let mut jobs: Vec<JobRecord> = Vec::new();
    loop {
        let before = jobs.last().map(|j| (j.created_at, j.id));
        let query = JobListQuery { batch_id: Some(id), before, limit: STORE_PAGE, ..Default::default() };
        let page = state.store.list_jobs(&query).await?;
        let full = page.len() == STORE_PAGE as usize;
        jobs.extend(page);
        if !full || jobs.len() >= MOST_JOBS as usize {
            break;
        }
    }
    if jobs.is_empty() || !jobs.iter().all(|j| console.key.sees_job(j)) {
        return Err(ApiError::NotFound(format!("no batch {id}")).into());
    }
    jobs.reverse();
    Ok(jobs)
}

fn summary_of(id: Uuid, jobs: &[JobRecord]) -> BatchSummary {
    let count = |state: JobState| jobs.iter().filter(|j| j.state == state).count() as u64;
    BatchSummary {
        batch_id: id,
        created_at: jobs.first().map_or(Timestamp::from_millis(0), |j| j.created_at),
        instance_ids: jobs.first().map(|j| j.instance_ids.clone()).unwrap_or_default(),
        counts: JobState::ALL.map(|state| (state, count(state))),
    }
}

fn parse_uuid(raw: &str, what: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(raw).map_err(|_| ApiError::NotFound(format!("no {what} `{raw}`")))
}

async fn show(State(state): State<AppState>, console: Console, Path(id): Path<String>) -> PageResult {
    let id = parse_uuid(&id, "batch")?;
    let jobs = batch_jobs(&state, &console, id).await?;
    let numbers = visible_numbers(&state, &console).await?;
    let names: HashMap<InstanceId, String> = numbers.into_iter().map(|n| (n.id, n.name)).collect();
    let summary = summary_of(id, &jobs);
    let now = state.service.now();
    let forecast = forecast(&state, &summary, now).await?;
    let path = batch_path(id);
    Ok(page(
        "Batch",
        Some(&console),
        Section::Campaigns,
        html! {
            nav.crumbs aria-label="Breadcrumb" { a href=(PATH) { "Campaigns" } " › batch" }
            h1 { "Batch of " (summary.total()) (if summary.total() == 1 { " group" } else { " groups" }) }
            dl.facts {
                dt { "Queued" } dd { (relative(summary.created_at, now)) }
                dt { "Numbers" } dd { (pool_words(&summary.instance_ids, &names)) }
                dt { "Batch id" } dd { code { (id) } }
            }
            section #batch-live aria-live="polite" hx-ext="sse" sse-connect={ (path) "/live" } sse-swap="batch" {
                (batch_block(&console, &summary, forecast, &jobs, &names, now))
            }
        },
    ))
}

/// When pacing lets the batch's last queued job start, if any is still queued.
async fn forecast(state: &AppState, summary: &BatchSummary, now: Timestamp) -> PageResult<Option<Timestamp>> {
    let queued = summary.count(JobState::Queued) as usize;
    Ok(state.service.forecast_last_creation(&summary.instance_ids, queued, now).await?)
}

/// The live part of a batch's page: progress, the forecast, each job, and cancelling what has not started.
fn batch_block(
    console: &Console,
    summary: &BatchSummary,
    forecast: Option<Timestamp>,
    jobs: &[JobRecord],
    names: &HashMap<InstanceId, String>,
    now: Timestamp,
) -> Markup {
    html! {
        p.summary { (progress(summary)) }
        @if let Some(last) = forecast {
            p { "Pacing lets the last queued group start " (relative(last, now)) "." }
        } @else if summary.count(JobState::Running) == 0 {
            p { "Finished." }
        }
        div.scroll {
            table.cards {
                caption { "Each group of the batch, in the order queued" }
                thead { tr {
                    th scope="col" { "Subject" } th scope="col" { "State" } th scope="col" { "Number" }
                    th scope="col" { "Attempts" } th scope="col" { "Result" }
                } }
                tbody {
                    @for job in jobs {
                        @let request = Service::job_request(job);
                        @let result = Service::job_result(job);
                        tr {
                            td data-label="Subject" {
                                a href=(job_path(job.id)) { (request.as_ref().map_or("(unreadable)", |r| r.subject.as_str())) }
                            }
                            td data-label="State" { span class={ "job job-" (job.state.as_str()) } { (state_words(job.state)) } }
                            td data-label="Number" {
                                @if let Some(id) = job.pinned_instance_id { (names.get(&id).map_or("(deleted)", String::as_str)) } @else { "—" }
                            }
                            td data-label="Attempts" { (job.attempts) }
                            td data-label="Result" {
                                @if let Some(result) = &result {
                                    a href={ "/console/groups/" (result.group_id.0) } { "Group" }
                                    " · " (result.participants.iter().filter(|p| p.outcome.is_success()).count())
                                    " of " (result.participants.len()) " added"
                                } @else if let Some(error) = &job.last_error {
                                    small.why { (error) }
                                } @else if job.state == JobState::Queued {
                                    "next try " (relative(job.next_run_at.max(now), now))
                                }
                            }
                        }
                    }
                }
            }
        }
        @if console.writes() && summary.count(JobState::Queued) > 0 {
            form method="post" action={ (batch_path(summary.batch_id)) "/cancel" } {
                (console.csrf_field())
                button.danger type="submit" { "Cancel the groups not started yet" }
            }
        }
    }
}

async fn show_live(State(state): State<AppState>, console: Console, Path(id): Path<String>) -> PageResult<Response> {
    let id = parse_uuid(&id, "batch")?;
    Ok(live("batch", state, console, move |state, console| async move {
        let jobs = batch_jobs(&state, &console, id).await.ok()?;
        let numbers = visible_numbers(&state, &console).await.ok()?;
        let names = numbers.into_iter().map(|n| (n.id, n.name)).collect();
        let summary = summary_of(id, &jobs);
        let now = state.service.now();
        let forecast = forecast(&state, &summary, now).await.ok()?;
        Some(batch_block(&console, &summary, forecast, &jobs, &names, now).into_string())
    }))
}

async fn cancel_batch(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Submitted { console, .. }: Submitted<Vec<(String, String)>>,
) -> PageResult<Response> {
    let id = parse_uuid(&id, "batch")?;
    for job in batch_jobs(&state, &console, id).await? {
        match state.service.cancel_job(job.id).await {
            // Started meanwhile: it runs to its end.
            Ok(_) | Err(ApiError::Conflict(_)) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(see_other(&batch_path(id)))
}

/// A job the key may see.
async fn visible_job(
    state: &AppState,
    console: &Console,
    raw: &str,
) -> PageResult<(JobRecord, Vec<convene_core::store::CreationAttempt>)> {
    let (job, attempts) = state.service.job(parse_uuid(raw, "job")?).await?;
    if !console.key.sees_job(&job) {
        return Err(ApiError::NotFound(format!("no job {}", job.id)).into());
    }
    Ok((job, attempts))
}

async fn show_job(State(state): State<AppState>, console: Console, Path(id): Path<String>) -> PageResult {
    let (job, attempts) = visible_job(&state, &console, &id).await?;
    let numbers = visible_numbers(&state, &console).await?;
    let names: HashMap<InstanceId, String> = numbers.into_iter().map(|n| (n.id, n.name)).collect();
    let request = Service::job_request(&job);
    let result = Service::job_result(&job);
    let now = state.service.now();
    let subject = request.as_ref().map_or("(unreadable request)", |r| r.subject.as_str());
    Ok(page(
        subject,
        Some(&console),
        Section::Campaigns,
        html! {
            nav.crumbs aria-label="Breadcrumb" {
                a href=(PATH) { "Campaigns" } " › "
                @if let Some(batch) = job.batch_id { a href=(batch_path(batch)) { "batch" } " › " }
                (subject)
            }
            h1 { (subject) }
            dl.facts {
                dt { "State" } dd { span class={ "job job-" (job.state.as_str()) } { (state_words(job.state)) } }
                @if job.state == JobState::Queued { dt { "Next try" } dd { (relative(job.next_run_at.max(now), now)) } }
                dt { "Numbers it may use" } dd { (pool_words(&job.instance_ids, &names)) }
                @if let Some(id) = job.pinned_instance_id { dt { "Number" } dd { (pool_words(&[id], &names)) } }
                dt { "Participants asked for" } dd { @if let Some(r) = &request { (r.participants.join(", ")) } }
                @if let Some(error) = &job.last_error { dt { "Last error" } dd { (error) } }
                @if let Some(result) = &result {
                    dt { "Group" } dd { a href={ "/console/groups/" (result.group_id.0) } { (result.jid.as_str()) } }
                }
            }
            @if console.writes() && job.state == JobState::Queued {
                form method="post" action={ (job_path(job.id)) "/cancel" } {
                    (console.csrf_field())
                    button.danger type="submit" { "Cancel this group" }
                }
            }
            section aria-labelledby="attempts" {
                h2 #attempts { "Attempts" }
                div.scroll {
                    table.cards {
                        caption { "Every attempt on the network" }
                        thead { tr {
                            th scope="col" { "Started" } th scope="col" { "Number" } th scope="col" { "Outcome" }
                            th scope="col" { "Detail" }
                        } }
                        tbody {
                            @for a in &attempts {
                                tr {
                                    td data-label="Started" { (relative(a.started_at, now)) }
                                    td data-label="Number" { (pool_words(&[a.instance_id], &names)) }
                                    td data-label="Outcome" { (a.outcome.as_deref().unwrap_or("running")) }
                                    td data-label="Detail" { (a.detail.as_deref().unwrap_or("")) }
                                }
                            }
                            @if attempts.is_empty() { tr { td colspan="4" { "None yet." } } }
                        }
                    }
                }
            }
            @if let Some(result) = &result {
                section aria-labelledby="outcomes" {
                    h2 #outcomes { "Participants" }
                    (outcomes_table("What happened to each participant", &result.participants))
                }
            }
        },
    ))
}

async fn cancel_job(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Submitted { console, .. }: Submitted<Vec<(String, String)>>,
) -> PageResult<Response> {
    let (job, _) = visible_job(&state, &console, &id).await?;
    state.service.cancel_job(job.id).await?;
    Ok(see_other(&job_path(job.id)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_rows_become_groups_with_their_line_numbers_a_header_skipped() {
        let text = "subject,participants,description\n\n\"Onboarding, ACME\",+17137157533; +1 864-735-1567,Welcome!\nWar room,\"+17137157533,+447700176576\"\n";
        let groups = parse_csv(text, true).unwrap();
        let read: Vec<_> = groups
            .iter()
            .map(|(line, g)| (*line, g.subject.as_str(), g.participants.clone(), g.description.clone()))
            .collect();
        assert_eq!(
            read,
            [
                (
                    3,
                    "Onboarding, ACME",
                    vec!["+17137157533".to_owned(), "+1 864-735-1567".to_owned()],
                    Some("Welcome!".to_owned())
                ),
                (4, "War room", vec!["+17137157533".to_owned(), "+447700176576".to_owned()], None),
            ]
        );
        assert!(groups.iter().all(|(_, g)| g.auto_invite == Some(true)));
    }

    #[test]
    fn csv_that_is_empty_or_too_wide_is_refused_by_line() {
        let empty = parse_csv("\n  \n", false).unwrap_err();
        assert_eq!(empty[0].field, "csv");
        let wide = parse_csv("A,+17137157533,desc\nB,+17137157533,+18647351567,desc\n", false).unwrap_err();
        assert_eq!(wide[0].field, "line 2");
    }

    #[test]
    fn the_services_field_names_become_lines() {
        let fields = vec![FieldError::new("groups[1].subject", "is empty"), FieldError::new("instance_ids", "none")];
        let named: Vec<_> = by_line(fields, &[2, 5]).into_iter().map(|f| f.field).collect();
        assert_eq!(named, ["line 5 subject", "instance_ids"]);
    }
}
