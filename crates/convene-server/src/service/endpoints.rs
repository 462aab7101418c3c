//! Webhook endpoints as the API and the console manage them: where events go, which ones, signed with which secret;
//! their deliveries, attempt logs and replays. Sending is the dispatcher's (`crate::delivery`).

use std::sync::Arc;
use std::time::Duration;

use convene_core::events::{
    DeliveryAttempt, DeliveryListQuery, DeliveryRecord, DeliveryState, EventFilter, WebhookEndpoint,
};
use convene_core::{Clock, DbError, Store, Timestamp};
use tokio::sync::Notify;
use uuid::Uuid;

use super::not_found;
use crate::delivery::{SealsSecrets as _, Secret, SecretBox, TargetPolicy};
use crate::error::{ApiError, FieldError, Result};

const MAX_DESCRIPTION_CHARS: usize = 500;
/// The longest a previous secret may keep signing after a rotation.
pub const MAX_ROTATION_OVERLAP: Duration = Duration::from_secs(7 * 86_400);

/// A new endpoint as the caller sent it.
#[derive(Clone, Debug, Default)]
pub struct NewEndpoint {
    pub url: String,
    pub description: Option<String>,
    pub event_types: Option<Vec<String>>,
    pub enabled: Option<bool>,
    /// `whsec_…`; one is generated when absent.
    pub secret: Option<String>,
}

/// The parts of an endpoint a PATCH changes.
#[derive(Clone, Debug, Default)]
pub struct EndpointPatch {
    pub url: Option<String>,
    pub description: Option<String>,
    pub event_types: Option<Vec<String>>,
    pub enabled: Option<bool>,
}

/// Checks a URL, description and filter, collecting every bad field.
fn checked(
    targets: &TargetPolicy,
    url: Option<&str>,
    description: Option<&str>,
    event_types: Option<&[String]>,
) -> Result<(Option<String>, Option<EventFilter>)> {
    let mut errors = Vec::new();
    let url = url.and_then(|u| match targets.check_url(u) {
        Ok(parsed) => Some(parsed.to_string()),
        Err(e) => {
            errors.push(FieldError::new("url", e));
            None
        }
    });
    if description.is_some_and(|d| d.chars().count() > MAX_DESCRIPTION_CHARS) {
        errors.push(FieldError::new("description", format!("at most {MAX_DESCRIPTION_CHARS} characters")));
    }
    let filter = event_types.and_then(|types| match EventFilter::parse(types) {
        Ok(filter) => Some(filter),
        Err(e) => {
            errors.push(FieldError::new("event_types", e));
            None
        }
    });
    if errors.is_empty() { Ok((url, filter)) } else { Err(ApiError::Validation(errors)) }
}

fn parse_secret(raw: &str) -> Result<Secret> {
    Secret::parse(raw.trim()).map_err(|e| ApiError::field("secret", e))
}

/// The webhook endpoints, with what managing them takes: the box that seals their secrets, the rules a target must
/// meet, and the dispatcher's wake-up for replays.
#[derive(Clone)]
pub struct WebhookEndpoints {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    secrets: Arc<SecretBox>,
    targets: Arc<TargetPolicy>,
    dispatcher: Arc<Notify>,
}

impl WebhookEndpoints {
    /// `dispatcher` is notified when a replay makes deliveries due again.
    pub fn new(
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        secrets: Arc<SecretBox>,
        targets: Arc<TargetPolicy>,
        dispatcher: Arc<Notify>,
    ) -> Self {
        Self { store, clock, secrets, targets, dispatcher }
    }

    /// A new endpoint and its secret in clear (the only time it is shown without asking for it).
    pub async fn create(&self, new: NewEndpoint) -> Result<(WebhookEndpoint, Secret)> {
        let (url, filter) =
            checked(&self.targets, Some(&new.url), new.description.as_deref(), new.event_types.as_deref())?;
        let secret = match &new.secret {
            Some(raw) => parse_secret(raw)?,
            None => Secret::generate(),
        };
        let enabled = new.enabled.unwrap_or(true);
        let now = self.clock.now();
        let endpoint = WebhookEndpoint {
            id: Uuid::now_v7(),
            url: url.unwrap_or_default(),
            description: new.description.unwrap_or_default(),
            filter: filter.unwrap_or_default(),
            enabled,
            disabled_reason: (!enabled).then(|| "disabled when it was created".to_owned()),
            secret: self.secrets.seal(&secret),
            previous_secret: None,
            failing_since: None,
            created_at: now,
            updated_at: now,
        };
        self.store.insert_webhook_endpoint(&endpoint).await?;
        Ok((endpoint, secret))
    }

    pub async fn get(&self, id: Uuid) -> Result<WebhookEndpoint> {
        self.store.get_webhook_endpoint(id).await.map_err(|e| not_found(e, || format!("no webhook endpoint {id}")))
    }

    pub async fn list(&self) -> Result<Vec<WebhookEndpoint>> {
        Ok(self.store.list_webhook_endpoints().await?)
    }

    /// Enabling an endpoint clears why it was disabled and its failure streak; its pending deliveries resume.
    pub async fn update(&self, id: Uuid, patch: EndpointPatch) -> Result<WebhookEndpoint> {
        let (url, filter) =
            checked(&self.targets, patch.url.as_deref(), patch.description.as_deref(), patch.event_types.as_deref())?;
        let mut endpoint = self.get(id).await?;
        if let Some(url) = url {
            endpoint.url = url;
        }
        if let Some(description) = patch.description {
            endpoint.description = description;
        }
        if let Some(filter) = filter {
            endpoint.filter = filter;
        }
        match patch.enabled {
            Some(true) if !endpoint.enabled => {
                endpoint.enabled = true;
                endpoint.disabled_reason = None;
                endpoint.failing_since = None;
            }
            Some(false) if endpoint.enabled => {
                endpoint.enabled = false;
                endpoint.disabled_reason = Some("disabled by its owner".to_owned());
            }
            _ => {}
        }
        endpoint.updated_at = self.clock.now();
        self.store.update_webhook_endpoint(&endpoint).await?;
        if endpoint.enabled {
            self.dispatcher.notify_one();
        }
        Ok(endpoint)
    }

    pub async fn delete(&self, id: Uuid) -> Result<()> {
        self.store.delete_webhook_endpoint(id).await.map_err(|e| not_found(e, || format!("no webhook endpoint {id}")))
    }

    /// A new secret (the caller's or a generated one); the current one keeps signing beside it for `overlap`.
    pub async fn rotate_secret(
        &self,
        id: Uuid,
        new: Option<&str>,
        overlap: Duration,
    ) -> Result<(WebhookEndpoint, Secret)> {
        if overlap > MAX_ROTATION_OVERLAP {
            return Err(ApiError::field("previous_valid_for_secs", "at most 604800 (7 days)"));
        }
        let secret = match new {
            Some(raw) => parse_secret(raw)?,
            None => Secret::generate(),
        };
        let mut endpoint = self.get(id).await?;
        let now = self.clock.now();
        let previous = std::mem::replace(&mut endpoint.secret, self.secrets.seal(&secret));
        endpoint.previous_secret = (!overlap.is_zero()).then(|| (previous, now.plus(overlap)));
        endpoint.updated_at = now;
        self.store.update_webhook_endpoint(&endpoint).await?;
        Ok((endpoint, secret))
    }

    /// The endpoint's current secret in clear.
    pub async fn secret(&self, id: Uuid) -> Result<Secret> {
        let endpoint = self.get(id).await?;
        self.secrets
            .unseal(&endpoint.secret)
            .map_err(|e| ApiError::internal(anyhow::anyhow!("unsealing a secret: {e}")))
    }

    pub async fn deliveries(&self, query: &DeliveryListQuery) -> Result<Vec<DeliveryRecord>> {
        Ok(self.store.list_deliveries(query).await?)
    }

    /// A delivery of `endpoint` with every attempt.
    pub async fn delivery(&self, endpoint: Uuid, id: i64) -> Result<(DeliveryRecord, Vec<DeliveryAttempt>)> {
        let missing = || format!("no delivery {id} of webhook endpoint {endpoint}");
        let delivery = self.store.get_delivery(id).await.map_err(|e| not_found(e, missing))?;
        if delivery.endpoint_id != endpoint {
            return Err(ApiError::NotFound(missing()));
        }
        let attempts = self.store.delivery_attempts(id).await?;
        Ok((delivery, attempts))
    }

    /// Sends failed deliveries again: one (`delivery`), or every failed one of the endpoint since `since`.
    pub async fn replay(&self, endpoint: Uuid, delivery: Option<i64>, since: Option<Timestamp>) -> Result<u64> {
        self.get(endpoint).await?;
        if let Some(id) = delivery {
            let (found, _) = self.delivery(endpoint, id).await?;
            if found.state != DeliveryState::Failed {
                return Err(ApiError::Conflict(format!(
                    "delivery {id} is {}: only failed deliveries are replayed",
                    found.state.as_str()
                )));
            }
        }
        let now = self.clock.now();
        let replayed = match delivery {
            Some(id) => self.store.replay_deliveries(Some(id), None, None, now).await,
            None => self.store.replay_deliveries(None, Some(endpoint), since, now).await,
        };
        let replayed = match replayed {
            Err(DbError::NotFound) => return Err(ApiError::NotFound(format!("no delivery of endpoint {endpoint}"))),
            other => other?,
        };
        if replayed > 0 {
            self.dispatcher.notify_one();
        }
        Ok(replayed)
    }
}
