//! Webhook delivery: the dispatcher that sends pending deliveries (`Dispatcher`), Standard Webhooks signing and the
//! sealing of secrets at rest (`secrets`), and the outbound safety rules (`target`). What is delivered — events,
//! written with the changes that caused them — is the service's (`service::outbox`).

mod dispatcher;
mod secrets;
mod target;

use serde::Deserialize;

pub use convene_core::SecretBox;
pub use dispatcher::Dispatcher;
pub use secrets::{SealsSecrets, Secret, open_secret_box, sign, signature_header};
pub use target::TargetPolicy;

/// Makes HTTPS work for every HTTP client in the process: reqwest's rustls needs a process-wide crypto provider, and
/// ring is the one already built. Call before building a client; calling again changes nothing.
pub fn install_tls_provider() {
    // `Err` means a provider is installed already, which is all that is needed.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// The `[webhooks]` section of the configuration.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    /// Deliver webhooks in this process.
    pub enabled: bool,
    /// After a failed attempt, the waits before each retry, in seconds; when they run out the delivery fails.
    pub retry_schedule_secs: Vec<u64>,
    /// Each wait is drawn within ± this percentage.
    pub jitter_percent: u8,
    pub connect_timeout_ms: u64,
    /// The whole attempt: connecting, sending, and reading the answer.
    pub timeout_ms: u64,
    /// Read at most this much of an answer.
    pub max_response_bytes: usize,
    /// An endpoint whose every delivery has failed for this long is disabled.
    pub disable_after_secs: u64,
    /// Addresses or CIDRs that targets may use although they are private, loopback or link-local.
    pub allow_private_targets: Vec<String>,
    /// A PEM file of certificate authorities trusted for `https://` targets besides the system's; empty: none.
    pub ca_certificates: String,
    /// Deliveries in flight at once.
    pub concurrency: usize,
    /// How often to look for due deliveries when nothing wakes the dispatcher, in milliseconds.
    pub poll_ms: u64,
    /// Events older than this many days go, with their deliveries and attempt logs, unless still owed to an
    /// endpoint; 0 keeps them forever.
    pub retention_days: u32,
    /// Base64 of 32 bytes that seal the endpoints' secrets and the answers kept for idempotent replays; empty: the key
    /// file in the data directory.
    pub secret_key: String,
}

impl WebhookConfig {
    pub fn validate(&self) -> Result<(), String> {
        if self.retry_schedule_secs.is_empty() {
            return Err("webhooks.retry_schedule_secs must name at least one wait".into());
        }
        if self.jitter_percent > 100 {
            return Err("webhooks.jitter_percent must be 0 to 100".into());
        }
        if self.connect_timeout_ms == 0 || self.timeout_ms == 0 || self.poll_ms == 0 || self.concurrency == 0 {
            return Err("webhooks.connect_timeout_ms, timeout_ms, poll_ms and concurrency must be at least 1".into());
        }
        TargetPolicy::new(&self.allow_private_targets).map_err(|e| format!("webhooks.allow_private_targets: {e}"))?;
        if !self.ca_certificates.is_empty() {
            dispatcher::extra_roots(&self.ca_certificates).map_err(|e| format!("{e:#}"))?;
        }
        if !self.secret_key.is_empty() {
            secrets::key_from_base64(&self.secret_key).map_err(|e| format!("webhooks.secret_key: {e}"))?;
        }
        Ok(())
    }
}
