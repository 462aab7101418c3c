//! Prometheus metrics, served at `GET /metrics` (text exposition format) to a key for the whole account.
//!
//! Counters and histograms are recorded where things happen, through the `metrics` facade, each in one place: HTTP
//! requests in the request log, creation attempts where one is made, finished creations where a job ends, events
//! where they are committed, webhook attempts where the dispatcher judges one. Gauges that describe the records
//! (instances by state) are read when scraped, so they cannot drift from the database. Every metric is listed, with
//! its labels, in docs/operations.md.

use std::sync::OnceLock;

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use convene_core::store::JobState;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use crate::AppState;
use crate::auth::AccountWideKey;
use crate::error::Result;

pub const HTTP_REQUESTS: &str = "convene_http_requests_total";
pub const HTTP_REQUEST_DURATION: &str = "convene_http_request_duration_seconds";
pub const CREATION_ATTEMPTS: &str = "convene_group_creation_attempts_total";
pub const CREATIONS: &str = "convene_group_creations_total";
pub const PARTICIPANT_OUTCOMES: &str = "convene_participant_outcomes_total";
pub const EVENTS_WRITTEN: &str = "convene_events_written_total";
pub const WEBHOOK_ATTEMPTS: &str = "convene_webhook_delivery_attempts_total";
pub const WEBHOOK_LAG: &str = "convene_webhook_delivery_lag_seconds";
pub const INSTANCES: &str = "convene_instances";
pub const JOBS: &str = "convene_jobs";
pub const QUEUE_OLDEST_DUE: &str = "convene_job_queue_oldest_due_seconds";
pub const PACING_WAIT: &str = "convene_pacing_wait_seconds";

/// Latency buckets in seconds: 1 ms to a minute.
const SECONDS_BUCKETS: [f64; 14] =
    [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0, 30.0, 60.0];

/// The process's recorder, installed on first use. The `metrics` facade has one recorder per process, so servers
/// sharing a process (tests) share the counts. `AppState::open` calls this before anything is recorded.
pub fn handle() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let recorder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &SECONDS_BUCKETS)
            .expect("the buckets are not empty")
            .build_recorder();
        let handle = recorder.handle();
        if metrics::set_global_recorder(recorder).is_err() {
            tracing::warn!("another metrics recorder was installed first: /metrics will stay empty");
        }
        describe();
        spawn_upkeep(handle.clone());
        handle
    })
}

/// How often the recorder's histograms are drained: the exporter's own default.
const UPKEEP_EVERY: std::time::Duration = std::time::Duration::from_secs(5);

/// The upkeep thread's name, as Linux shows it (at most 15 bytes).
const UPKEEP_THREAD: &str = "metrics-upkeep";

/// Starts the thread that drains the recorder: until drained, every histogram sample (one per HTTP request) is kept
/// in memory, so a server that is never scraped grows without bound (with `build_recorder`, the caller must run
/// upkeep). A thread rather than a task because the recorder outlives any one runtime (tests start many).
fn spawn_upkeep(handle: PrometheusHandle) {
    let upkeep = move || {
        loop {
            std::thread::sleep(UPKEEP_EVERY);
            handle.run_upkeep();
        }
    };
    if let Err(error) = std::thread::Builder::new().name(UPKEEP_THREAD.into()).spawn(upkeep) {
        tracing::warn!(%error, "no thread for the metrics' upkeep: histograms will grow until /metrics is scraped");
    }
}

fn describe() {
    use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    describe_counter!(HTTP_REQUESTS, "HTTP requests answered, by method, route template, status and dialect.");
    describe_histogram!(HTTP_REQUEST_DURATION, Unit::Seconds, "Time to answer an HTTP request, by route and dialect.");
    describe_counter!(CREATION_ATTEMPTS, "Group creations sent to the network, by instance kind and outcome.");
    describe_counter!(CREATIONS, "Group creations finished, by result (succeeded, failed, cancelled).");
    describe_counter!(PARTICIPANT_OUTCOMES, "Participants' outcomes when a group is created or changed, by action.");
    describe_counter!(EVENTS_WRITTEN, "Events written to the event log, by type.");
    describe_counter!(WEBHOOK_ATTEMPTS, "Webhook delivery attempts, by result (succeeded, retrying, failed).");
    describe_histogram!(WEBHOOK_LAG, Unit::Seconds, "From an event's writing to its successful delivery.");
    describe_gauge!(INSTANCES, "Instances, by kind and connection state.");
    describe_gauge!(JOBS, "Queued group creations (jobs), by state.");
    describe_gauge!(QUEUE_OLDEST_DUE, Unit::Seconds, "How long the queue's most overdue job has been due (0: none).");
    describe_histogram!(
        PACING_WAIT,
        Unit::Seconds,
        "Each wait pacing put a queued creation to; the sum is time waited."
    );
}

/// Counts each report's outcome under `action` (`create`, `add`, `remove`, `promote`, `demote`, `approve`).
pub fn count_outcomes(action: &'static str, reports: &[crate::service::ParticipantReport]) {
    for report in reports {
        metrics::counter!(PARTICIPANT_OUTCOMES, "action" => action, "outcome" => report.outcome.as_str()).increment(1);
    }
}

/// Prometheus metrics in the text exposition format (docs/operations.md lists them). Needs a key for the whole account;
/// a read-only one is enough: make one for the scraper with `convene key create --name prometheus --read-only`.
#[utoipa::path(get, path = "/metrics", tag = "system", operation_id = "system.metrics",
    responses((status = 200, content_type = "text/plain", body = String, description = "Prometheus text format")),
    security(("api_key" = [])))]
pub async fn serve_metrics(State(state): State<AppState>, _key: AccountWideKey) -> Result<impl IntoResponse> {
    // Every kind and state, so that a state nobody is in any more reads 0 rather than its last count.
    for ((kind, live), count) in state.service.instance_health(|_| true).await?.counts {
        #[expect(clippy::cast_precision_loss, reason = "a count of instances is exact in an f64")]
        metrics::gauge!(INSTANCES, "kind" => kind, "state" => live).set(count as f64);
    }
    let mut jobs: std::collections::BTreeMap<&'static str, u64> =
        JobState::ALL.into_iter().map(|s| (s.as_str(), 0)).collect();
    for (job_state, count) in state.store.count_jobs_by_state().await? {
        jobs.insert(job_state.as_str(), count);
    }
    for (job_state, count) in jobs {
        #[expect(clippy::cast_precision_loss, reason = "a count of jobs is exact in an f64")]
        metrics::gauge!(JOBS, "state" => job_state).set(count as f64);
    }
    let now = state.clock.now();
    let overdue =
        state.store.next_job_due().await?.filter(|due| *due < now).map_or(0.0, |due| due.until(now).as_secs_f64());
    metrics::gauge!(QUEUE_OLDEST_DUE).set(overdue);
    Ok(([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], handle().render()))
}

#[cfg(test)]
mod tests {
    use convene_core::{InstanceState, Timestamp};

    #[test]
    fn the_recorder_is_drained_by_a_thread_of_its_own_so_that_an_unscraped_server_does_not_grow() {
        super::handle();
        // A thread names itself once it runs, which on a busy machine may be a moment after it is spawned.
        let names = || -> Vec<String> {
            let threads = std::fs::read_dir("/proc/self/task").unwrap();
            // A thread may end between the listing and the read: it is then not the one looked for.
            threads.filter_map(|t| std::fs::read_to_string(t.unwrap().path().join("comm")).ok()).collect()
        };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while !names().iter().any(|name| name.trim() == super::UPKEEP_THREAD) {
            assert!(std::time::Instant::now() < deadline, "threads: {:?}", names());
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    }

    #[test]
    fn instance_state_names_are_the_apis_status_values() {
        let states = [
            InstanceState::Starting,
            InstanceState::Connecting,
            InstanceState::Pairing,
            InstanceState::Connected,
            InstanceState::Disconnected,
            InstanceState::Unreachable { error: String::new(), since: Timestamp::from_millis(0), next_retry_at: None },
            InstanceState::LoggedOut,
            InstanceState::TemporarilyBanned { until: None },
        ];
        let names: Vec<&str> = states.iter().map(InstanceState::name).collect();
        assert_eq!(names, InstanceState::NAMES);
        for state in states {
            assert_eq!(serde_json::to_value(&state).unwrap()["status"], state.name());
        }
    }
}
