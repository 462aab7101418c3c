//! The event monitor: the event log newest first, filterable by type and by number, with new events added to the
//! top as they are written. A key for some numbers sees their events only, as `GET /v1/events` gives them.
//!
//! The live stream sends only the events after the newest one the page holds, which htmx puts at the top of the
//! table: re-sending the whole table (as the other pages do) would close a payload the operator has open.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;

use axum::Router;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::Response;
use axum::response::sse::Event;
use axum::routing::get;
use convene_core::events::{EventListQuery, EventRecord, EventType};
use convene_core::{InstanceId, Timestamp};
use maud::{Markup, html};
use serde::Deserialize;

use super::numbers::{LIVE_INTERVAL, sse};
use super::session::Console;
use super::time::relative;
use super::{PageResult, Section, page};
use crate::AppState;
use crate::api::instances::{instance_filter, parse_instance_id};
use crate::api::page::{Cursor, DEFAULT_LIMIT, Page, PageParams};
use crate::error::ApiError;

pub const PATH: &str = "/console/events";
const LIVE_PATH: &str = "/console/events/live";
/// The most events one push carries; more wait for the next.
const LIVE_BATCH: u32 = 200;

pub fn router() -> Router<AppState> {
    Router::new().route(PATH, get(list)).route(LIVE_PATH, get(list_live))
}

/// The monitor's query string: the filter form's two selects, the page, and (for the live stream) where it starts.
#[derive(Deserialize, Default)]
struct MonitorQuery {
    /// An event type; empty: every type.
    #[serde(default, rename = "type")]
    event_type: String,
    /// An instance id; empty: every number the key sees.
    #[serde(default)]
    number: String,
    cursor: Option<String>,
    /// The stream's start: the newest `seq` the page was rendered with.
    after: Option<i64>,
}

/// Which events to show, checked against the key.
struct Filter {
    event_type: Option<EventType>,
    instance_id: Option<InstanceId>,
}

impl Filter {
    /// The filter the query asks for; a number the key does not see is the API's 404, a type that is none a 422.
    fn of(console: &Console, query: &MonitorQuery) -> Result<Self, ApiError> {
        let event_type = match query.event_type.trim() {
            "" => None,
            raw => Some(EventType::parse(raw).ok_or_else(|| ApiError::field("type", "not an event type"))?),
        };
        let number = match query.number.trim() {
            "" => None,
            raw => Some(parse_instance_id(raw)?),
        };
        Ok(Self { event_type, instance_id: instance_filter(&console.key, number)? })
    }

    fn query(&self, limit: u32) -> EventListQuery {
        EventListQuery {
            instance_id: self.instance_id,
            event_type: self.event_type.map(|t| t.as_str().to_owned()),
            limit,
            ..EventListQuery::default()
        }
    }

    /// `type=…&number=…` as the filter form sends it, for links and the live stream.
    fn query_string(&self) -> String {
        let number = self.instance_id.map(|id| id.to_string()).unwrap_or_default();
        let event_type = self.event_type.map_or("", EventType::as_str);
        serde_urlencoded::to_string([("type", event_type), ("number", number.as_str())]).unwrap_or_default()
    }
}

/// The numbers the key sees, by id: the filter's choices and the names the rows show.
async fn number_names(state: &AppState, console: &Console) -> PageResult<HashMap<InstanceId, String>> {
    let all = state.service.instances().list().await?;
    Ok(all
        .into_iter()
        .filter(|(record, _)| console.key.sees(record.id))
        .map(|(record, _)| {
            let name = match &record.phone {
                Some(phone) => format!("{} ({})", record.name, phone.e164()),
                None => record.name,
            };
            (record.id, name)
        })
        .collect())
}

/// A page of events newest first from `cursor`, what the key may see of it, and the newest `seq` read (before
/// leaving out what the key may not see), where the live stream picks up.
async fn events_page(
    state: &AppState,
    console: &Console,
    filter: &Filter,
    cursor: Option<String>,
) -> PageResult<(Page<EventRecord>, i64)> {
    let params = PageParams { limit: None, cursor };
    let query = EventListQuery {
        before_seq: params.cursor()?.map(|c| c.key),
        newest_first: true,
        ..filter.query(DEFAULT_LIMIT + 1)
    };
    let events = state.service.outbox().events(&query).await?;
    let newest = events.first().map_or(0, |e| e.seq);
    let page = Page::from_lookahead(events, DEFAULT_LIMIT, |e| Cursor::new(e.seq, None).render());
    Ok((page.retain(|e| console.key.sees_event(e.instance_id)), newest))
}

async fn list(
    State(state): State<AppState>,
    console: Console,
    query: Result<Query<MonitorQuery>, QueryRejection>,
) -> PageResult {
    let Query(query) = query.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    let filter = Filter::of(&console, &query)?;
    let names = number_names(&state, &console).await?;
    let (events, newest) = events_page(&state, &console, &filter, query.cursor.clone()).await?;
    let now = state.service.now();
    let mut numbers: Vec<(&InstanceId, &String)> = names.iter().collect();
    numbers.sort_by(|a, b| a.1.cmp(b.1));
    let filtered = filter.query_string();
    Ok(page(
        "Events",
        Some(&console),
        Section::Events,
        html! {
            h1 { "Events" }
            p { "The event log, newest first: everything webhook endpoints are sent. New events appear at the top as they happen." }
            form.filters method="get" action=(PATH) {
                div {
                    label for="type" { "Type" }
                    select #type name="type" {
                        option value="" { "Every type" }
                        @for t in EventType::ALL {
                            option value=(t.as_str()) selected[filter.event_type == Some(t)] { (t.as_str()) }
                        }
                    }
                }
                div {
                    label for="number" { "Number" }
                    select #number name="number" {
                        option value="" { "Every number" }
                        @for (id, name) in &numbers {
                            option value=(id) selected[filter.instance_id == Some(**id)] { (name) }
                        }
                    }
                }
                button type="submit" { "Show" }
            }
            div.scroll {
                table.cards {
                    caption { "Events, newest first" }
                    thead { tr {
                        th scope="col" { "#" } th scope="col" { "When" } th scope="col" { "Type" }
                        th scope="col" { "Number" } th scope="col" { "Payload" }
                    } }
                    // Only the newest page follows the log: an older one stays as it was read.
                    @if query.cursor.is_none() {
                        tbody #events hx-ext="sse" sse-connect={ (LIVE_PATH) "?" (filtered) "&after=" (newest) } sse-swap="events" hx-swap="afterbegin" {
                            (rows(&events.items, &names, now))
                            tr.empty { td colspan="5" { "No events yet." } }
                        }
                    } @else {
                        tbody #events {
                            (rows(&events.items, &names, now))
                            tr.empty { td colspan="5" { "No events here." } }
                        }
                    }
                }
            }
            @if let Some(next) = &events.next_cursor {
                p { a href={ (PATH) "?" (filtered) "&cursor=" (next) } rel="next" { "Older events" } }
            }
        },
    ))
}

fn rows(events: &[EventRecord], names: &HashMap<InstanceId, String>, now: Timestamp) -> Markup {
    html! {
        @for e in events {
            tr {
                td data-label="#" { (e.seq) }
                td data-label="When" { (relative(e.created_at, now)) }
                td data-label="Type" { code.event-type { (e.event_type) } }
                td data-label="Number" {
                    @match e.instance_id {
                        Some(id) => a href={ "/console/numbers/" (id) } { (names.get(&id).cloned().unwrap_or_else(|| id.to_string())) },
                        None => "—",
                    }
                }
                td data-label="Payload" {
                    details {
                        summary { "Payload" }
                        pre { (pretty(&e.payload)) }
                    }
                }
            }
        }
    }
}

/// The payload indented for reading; as stored when it is not JSON.
fn pretty(payload: &str) -> String {
    serde_json::from_str::<serde_json::Value>(payload)
        .and_then(|v| serde_json::to_string_pretty(&v))
        .unwrap_or_else(|_| payload.to_owned())
}

/// Events after `after` (or after the browser's `Last-Event-ID` when it reconnects), newest first, as rows for
/// the top of the table, checked every `LIVE_INTERVAL`. Ends with the session, like the other live streams.
async fn list_live(
    State(state): State<AppState>,
    console: Console,
    headers: HeaderMap,
    query: Result<Query<MonitorQuery>, QueryRejection>,
) -> PageResult<Response> {
    let Query(query) = query.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    let filter = Arc::new(Filter::of(&console, &query)?);
    let reconnected = headers.get("last-event-id").and_then(|v| v.to_str().ok()).and_then(|v| v.parse().ok());
    let start = reconnected.or(query.after).unwrap_or(0);
    let console = Arc::new(console);
    let stream = futures_util::stream::unfold(start, move |mut last| {
        let (state, console, filter) = (state.clone(), console.clone(), filter.clone());
        async move {
            loop {
                tokio::time::sleep(LIVE_INTERVAL).await;
                if !console.still_signed_in(&state).await {
                    return None;
                }
                let query = EventListQuery { after_seq: Some(last), ..filter.query(LIVE_BATCH) };
                let events = state.service.outbox().events(&query).await.ok()?;
                let Some(newest) = events.last().map(|e| e.seq) else { continue };
                last = newest;
                let mut seen: Vec<EventRecord> =
                    events.into_iter().filter(|e| console.key.sees_event(e.instance_id)).collect();
                if seen.is_empty() {
                    continue;
                }
                seen.reverse();
                let names = number_names(&state, &console).await.ok()?;
                let html = rows(&seen, &names, state.service.now()).into_string();
                let event = Event::default().event("events").id(newest.to_string()).data(html);
                return Some((Ok::<_, Infallible>(event), last));
            }
        }
    });
    Ok(sse(stream))
}
