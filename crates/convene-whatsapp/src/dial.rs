//! Telling the truth about connection attempts. whatsapp-rust retries a failed connection by itself (Fibonacci
//! backoff from 1 s to 15 minutes) and only logs the failure: no event says that WhatsApp cannot be reached. So each
//! session's WebSocket transport and HTTP client are wrapped to record what the current attempt asked for and what
//! failed, and a watchdog ([`judge`]) turns a failed or unanswered attempt into the `unreachable` state, with the
//! error in words and the library's next retry time.

use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError, Weak};
use std::time::Duration;

use convene_core::{InstanceState, Timestamp};
use tokio::sync::Notify;
use tokio::time::Instant;
use whatsapp_rust::Client;
use whatsapp_rust::anyhow;
use whatsapp_rust::async_channel::Receiver;
use whatsapp_rust::async_trait;
use whatsapp_rust::http::{HttpClient, HttpRequest, HttpResponse, UreqHttpClient};
use whatsapp_rust::transport::{TokioWebSocketTransportFactory, Transport, TransportEvent, TransportFactory};
use whatsapp_rust::wacore::net::{StreamingHttpResponse, UploadBody, WHATSAPP_WEB_WS_URL};

/// How long an attempt may go unanswered before the number is called unreachable. The library gives each part of an
/// attempt 20 s; waiting that long would leave the state saying `connecting` well past the first failure.
pub(crate) const NO_ANSWER_AFTER: Duration = Duration::from_secs(8);

/// How often the watchdog looks while an attempt is unresolved: the library's failure count rises without a word.
pub(crate) const LOOK_EVERY: Duration = Duration::from_millis(250);

/// The wait whatsapp-rust puts between a failed attempt and the next, before its ±10% jitter: Fibonacci from 1 s
/// (1, 1, 2, 3, 5, 8 … s), capped at 15 minutes. `failures_before` is its count of failures in a row before this
/// one. Mirrors the library's `fibonacci_backoff` (client.rs, 0.7.0): re-check on upgrade.
pub(crate) fn retry_delay(failures_before: u32) -> Duration {
    const CAP_MS: u64 = 900_000;
    let (mut a, mut b) = (1000_u64, 1000_u64);
    // The cap is reached within 20 steps; a long outage need not walk the rest.
    for _ in 0..failures_before.min(64) {
        (a, b) = (b, a.saturating_add(b).min(CAP_MS));
    }
    Duration::from_millis(a.min(CAP_MS))
}

/// One connection attempt as the wrapped transport and HTTP client saw it.
#[derive(Clone, Debug, Default)]
pub(crate) struct Attempt {
    /// The library's count of reconnects when the attempt made its first call: every call of one attempt has the
    /// same. `None` before the first attempt.
    pub id: Option<u64>,
    /// When its first call went out.
    pub started: Option<Instant>,
    /// The library's count of failures in a row when it started; it rises when the attempt has failed.
    pub failures_before: u32,
    /// It reached WhatsApp (a QR code came, or the number logged in): later errors are not a failed connection.
    pub reached: bool,
    /// What failed first, in words.
    pub error: Option<String>,
}

/// The current attempt of one session, written by the wrappers and read by the watchdog.
#[derive(Default)]
pub(crate) struct Dial {
    attempt: Mutex<Attempt>,
    /// Wakes the watchdog: an attempt started, failed or reached WhatsApp.
    changed: Notify,
    /// The session's client, whose counters tell one attempt from the next and a failure from a success.
    client: OnceLock<Weak<Client>>,
}

impl Dial {
    /// The session's client, once built (before it first connects).
    pub(crate) fn attach(&self, client: &Arc<Client>) {
        let _ = self.client.set(Arc::downgrade(client));
    }

    fn lock(&self) -> MutexGuard<'_, Attempt> {
        self.attempt.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn attempt(&self) -> Attempt {
        self.lock().clone()
    }

    /// The library's count of consecutive failures now (0 once its client is gone).
    pub(crate) fn failures(&self) -> u32 {
        self.client.get().and_then(Weak::upgrade).map_or(0, |c| c.stats().reconnect_errors)
    }

    pub(crate) async fn changed(&self) {
        self.changed.notified().await;
    }

    /// A call of a connection attempt goes out: a call from a new attempt starts a new record.
    fn call(self: &Arc<Self>, what: String) -> Call {
        let stats = self.client.get().and_then(Weak::upgrade).map(|c| c.stats());
        let id = stats.as_ref().map_or(0, |s| s.reconnects);
        let mut attempt = self.lock();
        if attempt.id != Some(id) {
            *attempt = Attempt {
                id: Some(id),
                started: Some(Instant::now()),
                failures_before: stats.map_or(0, |s| s.reconnect_errors),
                reached: false,
                error: None,
            };
            self.changed.notify_one();
        }
        Call { dial: Arc::clone(self), what, finished: false }
    }

    /// The attempt reached WhatsApp.
    pub(crate) fn reached(&self) {
        self.lock().reached = true;
        self.changed.notify_one();
    }

    fn failed(&self, error: String) {
        let mut attempt = self.lock();
        if attempt.reached || attempt.error.is_some() {
            return;
        }
        attempt.error = Some(error);
        self.changed.notify_one();
    }
}

/// One call of an attempt. Dropped unfinished, it went unanswered: the library gave up waiting for it.
struct Call {
    dial: Arc<Dial>,
    /// The call in words (`connecting to wss://…`, `GET https://…`).
    what: String,
    finished: bool,
}

impl Call {
    fn finish(mut self, error: Option<&anyhow::Error>) {
        self.finished = true;
        if let Some(e) = error {
            self.dial.failed(format!("{}: {e:#}", self.what));
        }
    }
}

impl Drop for Call {
    fn drop(&mut self) {
        if !self.finished {
            self.dial.failed(format!("{}: no answer in time", self.what));
        }
    }
}

/// The library's WebSocket transport, telling `dial` about each connection it opens.
pub(crate) struct WatchedTransport {
    pub(crate) inner: TokioWebSocketTransportFactory,
    pub(crate) dial: Arc<Dial>,
}

#[async_trait]
impl TransportFactory for WatchedTransport {
    async fn create_transport(&self) -> Result<(Arc<dyn Transport>, Receiver<TransportEvent>), anyhow::Error> {
        let call = self.dial.call(format!("connecting to {WHATSAPP_WEB_WS_URL}"));
        let result = self.inner.create_transport().await;
        call.finish(result.as_ref().err());
        result
    }
}

/// The library's HTTP client (it fetches WhatsApp Web's current version before connecting), telling `dial` what
/// failed. Streaming calls are media, made once connected: they pass straight through.
pub(crate) struct WatchedHttp {
    pub(crate) inner: UreqHttpClient,
    pub(crate) dial: Arc<Dial>,
}

#[async_trait]
impl HttpClient for WatchedHttp {
    async fn execute(&self, request: HttpRequest) -> anyhow::Result<HttpResponse> {
        let call = self.dial.call(format!("{} {}", request.method, request.url));
        let result = self.inner.execute(request).await;
        call.finish(result.as_ref().err());
        result
    }

    fn supports_streaming(&self) -> bool {
        self.inner.supports_streaming()
    }

    fn execute_streaming(&self, request: HttpRequest) -> anyhow::Result<StreamingHttpResponse> {
        self.inner.execute_streaming(request)
    }

    fn supports_upload_streaming(&self) -> bool {
        self.inner.supports_upload_streaming()
    }

    fn execute_upload(
        &self,
        request: HttpRequest,
        body: UploadBody,
        content_length: u64,
    ) -> anyhow::Result<HttpResponse> {
        self.inner.execute_upload(request, body, content_length)
    }

    fn resource_report(&self) -> Option<whatsapp_rust::wacore::stats::HttpResourceReport> {
        self.inner.resource_report()
    }
}

/// What the watchdog sees at one look.
pub(crate) struct Look<'a> {
    pub state: &'a InstanceState,
    pub attempt: &'a Attempt,
    /// The library's count of consecutive failures now.
    pub failures: u32,
    pub now: Timestamp,
    /// How long ago the attempt made its first call.
    pub waited: Duration,
    /// When the watchdog first saw this attempt over (the library waiting to retry), if it has.
    pub ended_at: Option<Timestamp>,
}

impl Look<'_> {
    /// The library has given up on the attempt and waits to retry: its failure count rose.
    pub(crate) fn ended(&self) -> bool {
        self.failures > self.attempt.failures_before
    }

    /// Nothing can change until the wrappers or the library's events say something: no need to look again.
    pub(crate) fn settled(&self) -> bool {
        self.attempt.id.is_none() || self.attempt.reached || self.ended_at.is_some() || !watched(self.state)
    }
}

/// The states the attempts decide: everything else comes from the library's events (a QR code, a login, a ban).
fn watched(state: &InstanceState) -> bool {
    matches!(state, InstanceState::Connecting | InstanceState::Disconnected | InstanceState::Unreachable { .. })
}

/// The state the current attempt calls for, or `None` to leave the state as it is. An attempt that failed, or went
/// unanswered for [`NO_ANSWER_AFTER`], makes the number unreachable; the outage keeps the `since` of its first
/// failure, and once the library is waiting it names the time of the next attempt.
pub(crate) fn judge(look: &Look) -> Option<InstanceState> {
    let attempt = look.attempt;
    if attempt.id.is_none() || attempt.reached || !watched(look.state) {
        return None;
    }
    let waited = look.waited;
    let error = match &attempt.error {
        Some(e) => e.clone(),
        None if look.ended() => "the connection to WhatsApp opened but failed before logging in".to_owned(),
        None if waited >= NO_ANSWER_AFTER => format!("no answer from WhatsApp within {} s", NO_ANSWER_AFTER.as_secs()),
        None => return None,
    };
    let since = match look.state {
        InstanceState::Unreachable { since, .. } => *since,
        _ => look.now.minus(waited),
    };
    let next_retry_at = look.ended_at.map(|ended| ended.plus(retry_delay(attempt.failures_before)));
    Some(InstanceState::Unreachable { error, since, next_retry_at })
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: Timestamp = Timestamp::from_millis(1_764_000_000_000);

    fn attempt(failures_before: u32, error: Option<&str>) -> Attempt {
        Attempt {
            id: Some(3),
            started: Some(Instant::now()),
            failures_before,
            reached: false,
            error: error.map(str::to_owned),
        }
    }

    fn look<'a>(state: &'a InstanceState, attempt: &'a Attempt, failures: u32, waited: u64) -> Look<'a> {
        Look { state, attempt, failures, now: NOW, waited: Duration::from_secs(waited), ended_at: None }
    }

    #[test]
    fn retries_follow_the_librarys_fibonacci_backoff_up_to_fifteen_minutes() {
        let secs: Vec<u64> = (0..10).map(|n| retry_delay(n).as_secs()).collect();
        assert_eq!(secs, [1, 1, 2, 3, 5, 8, 13, 21, 34, 55]);
        assert_eq!(retry_delay(40), Duration::from_secs(900));
        assert_eq!(retry_delay(u32::MAX), Duration::from_secs(900), "no overflow on a very long outage");
    }

    #[test]
    fn a_failed_attempt_makes_a_connecting_number_unreachable_with_the_error() {
        let failed = attempt(0, Some("connecting to wss://web.whatsapp.com/ws/chat: dns error"));

        let state = judge(&look(&InstanceState::Connecting, &failed, 0, 0)).expect("unreachable");

        assert_eq!(
            state,
            InstanceState::Unreachable {
                error: "connecting to wss://web.whatsapp.com/ws/chat: dns error".into(),
                since: NOW,
                next_retry_at: None,
            },
            "the retry time is known once the library has given up on the attempt"
        );
    }

    #[test]
    fn once_the_library_waits_the_next_attempt_is_its_backoff_after_the_failure() {
        let failed = attempt(4, Some("GET https://web.whatsapp.com/sw.js: timed out"));
        let ended_at = NOW.plus(Duration::from_secs(2));
        let mut seen = look(&InstanceState::Connecting, &failed, 5, 2);
        seen.ended_at = Some(ended_at);

        let state = judge(&seen).expect("unreachable");

        let InstanceState::Unreachable { next_retry_at, since, .. } = state else { panic!("{state:?}") };
        assert_eq!(next_retry_at, Some(ended_at.plus(Duration::from_secs(5))), "the fifth failure waits 5 s");
        assert_eq!(since, NOW.minus(Duration::from_secs(2)), "the outage began with the attempt");
        assert!(seen.settled(), "nothing to look at until the next attempt");
    }

    #[test]
    fn an_outage_keeps_the_time_it_began_across_attempts() {
        let began = NOW.minus(Duration::from_secs(600));
        let outage = InstanceState::Unreachable { error: "old".into(), since: began, next_retry_at: None };
        let failed = attempt(7, Some("new"));

        let state = judge(&look(&outage, &failed, 8, 0)).expect("still unreachable");

        assert_eq!(state, InstanceState::Unreachable { error: "new".into(), since: began, next_retry_at: None });
    }

    #[test]
    fn an_unanswered_attempt_is_unreachable_after_the_limit_and_not_before() {
        let pending = attempt(0, None);
        let secs = NO_ANSWER_AFTER.as_secs();

        assert_eq!(judge(&look(&InstanceState::Connecting, &pending, 0, secs - 1)), None);
        assert!(!look(&InstanceState::Connecting, &pending, 0, secs - 1).settled(), "keep looking");
        let state = judge(&look(&InstanceState::Connecting, &pending, 0, secs)).expect("unreachable");

        let InstanceState::Unreachable { error, .. } = state else { panic!("{state:?}") };
        assert_eq!(error, format!("no answer from WhatsApp within {secs} s"));
    }

    #[test]
    fn an_attempt_that_ends_without_an_error_still_fails_in_words() {
        let state = judge(&look(&InstanceState::Disconnected, &attempt(1, None), 2, 1)).expect("unreachable");

        let InstanceState::Unreachable { error, .. } = state else { panic!("{state:?}") };
        assert_eq!(error, "the connection to WhatsApp opened but failed before logging in");
    }

    #[test]
    fn what_whatsapp_said_is_left_alone() {
        let failed = attempt(0, Some("dns error"));
        let reached = Attempt { reached: true, ..failed.clone() };
        let ban = InstanceState::TemporarilyBanned { until: None };

        for state in [InstanceState::Connected, InstanceState::Pairing, InstanceState::LoggedOut, ban] {
            assert_eq!(judge(&look(&state, &failed, 1, 30)), None, "{state:?}");
        }
        assert_eq!(judge(&look(&InstanceState::Connecting, &reached, 1, 30)), None, "it reached WhatsApp");
        assert_eq!(judge(&look(&InstanceState::Connecting, &Attempt::default(), 0, 30)), None, "no attempt yet");
    }
}
