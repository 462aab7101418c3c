//! The dispatcher: sends due deliveries, records every attempt and what it means for the delivery (done, retried
//! when, failed) and for its endpoint (healthy, failing since, disabled), and sleeps until the next one is due.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use convene_core::events::{AttemptOutcome, DeliveryAttempt, DeliveryState, DueDelivery};
use convene_core::{Clock, DbError, Store, SystemClock, Timestamp};
use futures_util::StreamExt as _;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::{SealsSecrets as _, Secret, SecretBox, TargetPolicy, WebhookConfig, signature_header};

/// The longest a `Retry-After` may hold a delivery back.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(24 * 3600);
/// How much of an answer the attempt log keeps.
const LOGGED_BODY_BYTES: usize = 1024;
/// How often the dispatcher deletes events past their retention, and how many it deletes per transaction.
const PRUNE_EVERY: Duration = Duration::from_secs(3600);
const PRUNE_BATCH: u32 = 500;
/// How long past its attempts' timeouts a pass keeps its deliveries claimed, for recording the answers under load.
const CLAIM_MARGIN: Duration = Duration::from_secs(10);

/// The certificate authorities in the PEM file `path` (`webhooks.ca_certificates`).
pub(super) fn extra_roots(path: &str) -> anyhow::Result<Vec<reqwest::Certificate>> {
    let pem = std::fs::read(path).with_context(|| format!("webhooks.ca_certificates: cannot read {path}"))?;
    let roots = reqwest::Certificate::from_pem_bundle(&pem)
        .with_context(|| format!("webhooks.ca_certificates: {path} is not a PEM certificate bundle"))?;
    anyhow::ensure!(!roots.is_empty(), "webhooks.ca_certificates: {path} holds no certificate");
    Ok(roots)
}

/// What one attempt got back.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct Answer {
    pub status: Option<u16>,
    pub error: Option<String>,
    pub body_start: Option<String>,
    pub retry_after: Option<Duration>,
}

impl Answer {
    fn succeeded(&self) -> bool {
        self.status.is_some_and(|s| (200..300).contains(&s)) && self.error.is_none()
    }

    fn failure(&self) -> String {
        match (&self.error, self.status) {
            (Some(e), _) => e.clone(),
            (None, Some(status)) => format!("HTTP {status}"),
            (None, None) => "no answer".into(),
        }
    }
}

pub struct Dispatcher {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    config: WebhookConfig,
    secrets: Arc<SecretBox>,
    client: reqwest::Client,
}

impl Dispatcher {
    pub fn new(
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        config: WebhookConfig,
        secrets: Arc<SecretBox>,
    ) -> anyhow::Result<Self> {
        let targets = Arc::new(TargetPolicy::new(&config.allow_private_targets).map_err(anyhow::Error::msg)?);
        super::install_tls_provider();
        let mut client = reqwest::Client::builder()
            .user_agent(concat!("Convene-Webhooks/", env!("CARGO_PKG_VERSION")))
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(Duration::from_millis(config.connect_timeout_ms))
            .timeout(Duration::from_millis(config.timeout_ms))
            .dns_resolver(targets.resolver())
            .no_proxy();
        if !config.ca_certificates.is_empty() {
            client = client.tls_certs_merge(extra_roots(&config.ca_certificates)?);
        }
        let client = client.build()?;
        Ok(Self { store, clock, config, secrets, client })
    }

    /// One pass: attempts every delivery due now (up to `concurrency` at a time) and records each; how many.
    pub async fn deliver_due(&self) -> Result<usize, DbError> {
        // Claimed for as long as the pass's attempts may take (`concurrency` at a time, each up to `timeout_ms`) and
        // then some: another pass, here or on another node, takes a delivery over only if this one died with it.
        let now = self.clock.now();
        let waves = 4;
        let limit = (self.config.concurrency * waves) as u32;
        let claimed_until = now.plus(Duration::from_millis(self.config.timeout_ms) * waves as u32 + CLAIM_MARGIN);
        let claim = Uuid::new_v4().to_string();
        let due = self.store.claim_due_deliveries(now, limit, &claim, claimed_until).await?;
        let n = due.len();
        let timeout = Duration::from_millis(self.config.timeout_ms);
        let attempt = |due: DueDelivery| {
            let claim = claim.clone();
            async move {
                // An attempt that could end after the claim (a slow pass) is left for the pass that takes it over.
                if self.clock.now().plus(timeout) > claimed_until {
                    return None;
                }
                let (attempt, mut outcome) = self.attempt(due).await;
                outcome.claim = Some(claim);
                Some((attempt, outcome))
            }
        };
        // The attempts that have finished whenever the last recording ends are recorded together: one durable
        // transaction for many answers, which is what bounds throughput.
        let mut finished = futures_util::stream::iter(due.into_iter().map(attempt))
            .buffer_unordered(self.config.concurrency)
            .filter_map(std::future::ready)
            .ready_chunks(self.config.concurrency);
        while let Some(attempts) = finished.next().await {
            if let Err(e) = self.record(&attempts).await {
                // What this pass still holds (attempted or not) is due again now rather than when the claim ends.
                let released = self.store.release_delivery_claim(&claim, claimed_until, self.clock.now()).await;
                if let Err(release) = released {
                    tracing::warn!(error = %release, "webhook dispatcher: giving back a claim failed: it ends by itself");
                }
                return Err(e);
            }
        }
        Ok(n)
    }

    async fn record(&self, attempts: &[(DeliveryAttempt, AttemptOutcome)]) -> Result<(), DbError> {
        let all: Vec<_> = attempts.iter().map(|(attempt, outcome)| (attempt, outcome)).collect();
        match self.store.record_delivery_attempts(&all).await {
            // A delivery was deleted with its endpoint meanwhile, or taken over by another pass after this one's claim
            // ran out: record the others one by one.
            Err(DbError::NotFound) => {
                for one in all {
                    match self.store.record_delivery_attempts(&[one]).await {
                        Err(DbError::NotFound) => {}
                        other => other?,
                    }
                }
                Ok(())
            }
            other => other,
        }
    }

    /// Deletes the events older than `retention_days`, with their deliveries and attempt logs, except those still
    /// owed to an endpoint; how many. Nothing with a retention of 0.
    pub async fn prune(&self) -> Result<u64, DbError> {
        if self.config.retention_days == 0 {
            return Ok(0);
        }
        let retention_ms = i64::from(self.config.retention_days) * 24 * 3600 * 1000;
        let before = Timestamp::from_millis(self.clock.now().as_millis() - retention_ms);
        let mut pruned = 0;
        loop {
            let n = self.store.prune_events(before, PRUNE_BATCH).await?;
            pruned += n;
            if n < u64::from(PRUNE_BATCH) {
                return Ok(pruned);
            }
        }
    }

    /// Delivers until `shutdown`: a pass, then a sleep until the next delivery is due, a wake-up, or `poll_ms`;
    /// prunes old events at start and every hour.
    pub async fn run(self, wake: Arc<Notify>, shutdown: CancellationToken) {
        let poll = Duration::from_millis(self.config.poll_ms);
        let mut next_prune = Instant::now();
        loop {
            if Instant::now() >= next_prune {
                match self.prune().await {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(events = n, "deleted events past their retention"),
                    Err(e) => tracing::error!(error = %e, "webhook dispatcher: deleting old events failed"),
                }
                next_prune = Instant::now() + PRUNE_EVERY;
            }
            let wait = match self.deliver_due().await {
                Ok(n) if n > 0 => Duration::ZERO,
                Ok(_) => match self.store.next_delivery_due().await {
                    Ok(Some(at)) => self.clock.now().until(at).min(poll),
                    Ok(None) => poll,
                    Err(e) => {
                        tracing::error!(error = %e, "webhook dispatcher: reading the queue failed");
                        poll
                    }
                },
                Err(e) => {
                    tracing::error!(error = %e, "webhook dispatcher pass failed");
                    poll
                }
            };
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = wake.notified() => {}
                () = tokio::time::sleep(wait) => {}
            }
        }
    }

    /// Sends the delivery once; what to record of it.
    async fn attempt(&self, due: DueDelivery) -> (DeliveryAttempt, AttemptOutcome) {
        let attempted_at = self.clock.now();
        let started = Instant::now();
        let answer = match self.signing_secrets(&due, attempted_at) {
            Ok(secrets) => self.send(&due, &secrets).await,
            Err(e) => Answer { error: Some(e), ..Answer::default() },
        };
        let attempt = DeliveryAttempt {
            id: Uuid::now_v7(),
            delivery_id: due.delivery.id,
            attempted_at,
            duration_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
            status: answer.status,
            error: answer.error.clone(),
            response_body: answer.body_start.clone(),
        };
        let outcome = self.outcome(&due, &answer, attempted_at);
        let result = match outcome.state {
            DeliveryState::Succeeded => "succeeded",
            DeliveryState::Pending => "retrying",
            _ => "failed",
        };
        metrics::counter!(crate::telemetry::WEBHOOK_ATTEMPTS, "result" => result).increment(1);
        if outcome.state == DeliveryState::Succeeded {
            let lag_ms = (self.clock.now().as_millis() - due.event_created_at.as_millis()).max(0);
            #[expect(clippy::cast_precision_loss, reason = "milliseconds well within an f64's exact range")]
            metrics::histogram!(crate::telemetry::WEBHOOK_LAG).record(lag_ms as f64 / 1000.0);
        }
        if let Some(reason) = &outcome.disable_endpoint {
            tracing::warn!(endpoint = %due.endpoint.id, reason, "webhook endpoint disabled");
        }
        (attempt, outcome)
    }

    /// The current secret and, until it expires, the previous one.
    fn signing_secrets(&self, due: &DueDelivery, now: Timestamp) -> Result<Vec<Secret>, String> {
        let mut secrets = vec![self.secrets.unseal(&due.endpoint.secret)?];
        if let Some((previous, until)) = &due.endpoint.previous_secret
            && *until > now
        {
            secrets.push(self.secrets.unseal(previous)?);
        }
        Ok(secrets)
    }

    async fn send(&self, due: &DueDelivery, secrets: &[Secret]) -> Answer {
        let id = due.delivery.event_id.to_string();
        // The receiver checks this against its own clock: always the wall clock, whatever schedules the retries.
        let timestamp = SystemClock.now().as_millis().div_euclid(1000);
        let body = due.payload.as_bytes();
        let request = self
            .client
            .post(&due.endpoint.url)
            .header("content-type", "application/json")
            .header("webhook-id", &id)
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", signature_header(secrets, &id, timestamp, body))
            .body(due.payload.clone());
        let mut response = match request.send().await {
            Ok(response) => response,
            Err(e) => return Answer { error: Some(describe(&e)), ..Answer::default() },
        };
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| parse_retry_after(v, SystemClock.now()));
        let mut body = Vec::new();
        let mut error = None;
        loop {
            match response.chunk().await {
                Ok(Some(chunk)) => {
                    body.extend_from_slice(&chunk);
                    if body.len() > self.config.max_response_bytes {
                        // Enough: the status is what counts; stop reading an answer that does not end.
                        body.truncate(self.config.max_response_bytes);
                        break;
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    error = Some(describe(&e));
                    break;
                }
            }
        }
        body.truncate(LOGGED_BODY_BYTES);
        let body_start = (!body.is_empty()).then(|| String::from_utf8_lossy(&body).into_owned());
        Answer { status: Some(status), error, body_start, retry_after }
    }

    /// What the attempt means for the delivery and its endpoint.
    fn outcome(&self, due: &DueDelivery, answer: &Answer, now: Timestamp) -> AttemptOutcome {
        if answer.succeeded() {
            return AttemptOutcome {
                state: DeliveryState::Succeeded,
                next_attempt_at: now,
                last_error: None,
                endpoint_failing_since: None,
                disable_endpoint: None,
                claim: None,
            };
        }
        let error = answer.failure();
        let failing_since = due.endpoint.failing_since.unwrap_or(now);
        let disable = (now.as_millis() - failing_since.as_millis()
            >= i64::try_from(self.config.disable_after_secs.saturating_mul(1000)).unwrap_or(i64::MAX))
        .then(|| format!("every delivery has failed since {failing_since}; last: {error}"));
        let (state, next_attempt_at) = match self.retry_wait(due.delivery.attempts, due.delivery.id, answer.retry_after)
        {
            Some(wait) => (DeliveryState::Pending, now.plus(wait)),
            None => (DeliveryState::Failed, now),
        };
        AttemptOutcome {
            state,
            next_attempt_at,
            last_error: Some(error),
            endpoint_failing_since: Some(failing_since),
            disable_endpoint: disable,
            claim: None,
        }
    }

    /// The wait before the next attempt after `attempts_before` earlier ones and this failed one; `None` when the
    /// schedule has run out. Jitter is drawn from the delivery id and attempt (repeatable); a `Retry-After` is a
    /// floor.
    fn retry_wait(&self, attempts_before: u32, delivery_id: i64, retry_after: Option<Duration>) -> Option<Duration> {
        let base = Duration::from_secs(*self.config.retry_schedule_secs.get(attempts_before as usize)?);
        let spread = f64::from(self.config.jitter_percent) / 100.0;
        let draw = (delivery_id.unsigned_abs().wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ u64::from(attempts_before)) % 1001;
        let factor = 1.0 + spread * (draw as f64 / 500.0 - 1.0);
        let jittered = base.mul_f64(factor.max(0.0));
        Some(retry_after.map_or(jittered, |floor| jittered.max(floor.min(MAX_RETRY_AFTER))))
    }
}

/// A reqwest error in words, naming timeouts and refused targets plainly.
fn describe(e: &reqwest::Error) -> String {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text = format!("{text}: {s}");
        source = s.source();
    }
    if e.is_timeout() { format!("timed out ({text})") } else { text }
}

/// `Retry-After` as seconds or an HTTP date.
fn parse_retry_after(value: &str, now: Timestamp) -> Option<Duration> {
    if let Ok(secs) = value.trim().parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = time::OffsetDateTime::parse(value.trim(), &time::format_description::well_known::Rfc2822).ok()?;
    let at = Timestamp::from_millis(i64::try_from(at.unix_timestamp_nanos() / 1_000_000).ok()?);
    Some(now.until(at))
}
