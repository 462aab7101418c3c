//! `/v1/webhooks`: endpoints that receive events, signed the Standard Webhooks way; their deliveries with every
//! attempt, and replays. `/v1/events`: the event log itself.

use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use convene_core::events::{
    DeliveryAttempt, DeliveryListQuery, DeliveryRecord, DeliveryState, EventListQuery, EventRecord, WebhookEndpoint,
};
use convene_core::{InstanceId, Timestamp};
use serde::{Deserialize, Serialize};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::page::{Cursor, Page, PageParams};
use crate::AppState;
use crate::auth::{AccountKey, AccountWideKey};
use crate::error::{ApiError, ErrorBody, Result};
use crate::extract::{ApiJson, ApiPath, ApiQuery};
use crate::service::endpoints::{EndpointPatch, NewEndpoint};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_webhook, list_webhooks))
        .routes(routes!(get_webhook, update_webhook, delete_webhook))
        .routes(routes!(get_secret))
        .routes(routes!(rotate_secret))
        .routes(routes!(list_deliveries))
        .routes(routes!(get_delivery))
        .routes(routes!(replay_delivery))
        .routes(routes!(replay_failed))
        .routes(routes!(list_events))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WebhookIn {
    /// `http://` or `https://`, a host name, an IPv4 address or a bracketed IPv6 address, an optional port, path and
    /// query; no fragment. Private, loopback and link-local addresses are refused (422) unless the server's
    /// `webhooks.allow_private_targets` lists them.
    #[schema(
        example = "https://example.com/hooks/convene",
        pattern = r#"^[Hh][Tt][Tt][Pp][Ss]?://(?:(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)*[A-Za-z](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?|(?:(?:25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])\.){3}(?:25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])|\[(?:(?:[0-9A-Fa-f]{1,4}:){7}[0-9A-Fa-f]{1,4}|(?:[0-9A-Fa-f]{1,4}:){1,7}:|(?:[0-9A-Fa-f]{1,4}:){1,6}:[0-9A-Fa-f]{1,4}|(?:[0-9A-Fa-f]{1,4}:){1,5}(?::[0-9A-Fa-f]{1,4}){1,2}|(?:[0-9A-Fa-f]{1,4}:){1,4}(?::[0-9A-Fa-f]{1,4}){1,3}|(?:[0-9A-Fa-f]{1,4}:){1,3}(?::[0-9A-Fa-f]{1,4}){1,4}|(?:[0-9A-Fa-f]{1,4}:){1,2}(?::[0-9A-Fa-f]{1,4}){1,5}|[0-9A-Fa-f]{1,4}:(?::[0-9A-Fa-f]{1,4}){1,6}|:(?:(?::[0-9A-Fa-f]{1,4}){1,7}|:))\])(?::(?:[1-9][0-9]{0,3}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5]))?(?:/[A-Za-z0-9._~!$&'()*+,;=:@%/-]*)?(?:\?[A-Za-z0-9._~!$&'()*+,;=:@%/?-]*)?$"#,
        max_length = 2048
    )]
    pub url: String,
    /// At most 500 characters.
    #[schema(max_length = 500)]
    pub description: Option<String>,
    /// Event types (`group.created`) or categories (`group.*`, `instance.*`, `job.*`); absent or empty: every event.
    #[schema(schema_with = event_filter, example = json!(["group.*", "instance.temporarily_banned"]))]
    pub event_types: Option<Vec<String>>,
    /// Default true.
    pub enabled: Option<bool>,
    /// A Standard Webhooks secret (`whsec_` + standard base64, padded, of 24 to 64 bytes); generated when absent.
    #[schema(
        pattern = r"^whsec_(?:(?:[A-Za-z0-9+/]{4}){8,21}(?:[A-Za-z0-9+/][AQgw]==)?|(?:[A-Za-z0-9+/]{4}){8,20}[A-Za-z0-9+/]{2}[AEIMQUYcgkosw048]=)$"
    )]
    pub secret: Option<String>,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WebhookPatchIn {
    /// As for a new endpoint.
    #[schema(
        pattern = r#"^[Hh][Tt][Tt][Pp][Ss]?://(?:(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)*[A-Za-z](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?|(?:(?:25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])\.){3}(?:25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])|\[(?:(?:[0-9A-Fa-f]{1,4}:){7}[0-9A-Fa-f]{1,4}|(?:[0-9A-Fa-f]{1,4}:){1,7}:|(?:[0-9A-Fa-f]{1,4}:){1,6}:[0-9A-Fa-f]{1,4}|(?:[0-9A-Fa-f]{1,4}:){1,5}(?::[0-9A-Fa-f]{1,4}){1,2}|(?:[0-9A-Fa-f]{1,4}:){1,4}(?::[0-9A-Fa-f]{1,4}){1,3}|(?:[0-9A-Fa-f]{1,4}:){1,3}(?::[0-9A-Fa-f]{1,4}){1,4}|(?:[0-9A-Fa-f]{1,4}:){1,2}(?::[0-9A-Fa-f]{1,4}){1,5}|[0-9A-Fa-f]{1,4}:(?::[0-9A-Fa-f]{1,4}){1,6}|:(?:(?::[0-9A-Fa-f]{1,4}){1,7}|:))\])(?::(?:[1-9][0-9]{0,3}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5]))?(?:/[A-Za-z0-9._~!$&'()*+,;=:@%/-]*)?(?:\?[A-Za-z0-9._~!$&'()*+,;=:@%/?-]*)?$"#,
        max_length = 2048
    )]
    pub url: Option<String>,
    /// At most 500 characters.
    #[schema(max_length = 500)]
    pub description: Option<String>,
    /// As for a new endpoint.
    #[schema(schema_with = event_filter)]
    pub event_types: Option<Vec<String>>,
    /// Enabling clears the reason it was disabled; pending deliveries resume in order.
    pub enabled: Option<bool>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct WebhookOut {
    pub id: Uuid,
    pub url: String,
    pub description: String,
    /// Empty: every event.
    pub event_types: Vec<String>,
    pub enabled: bool,
    /// Why it is disabled: by the API, or for failing too long (with the last error).
    pub disabled_reason: Option<String>,
    /// Since when every delivery has failed.
    pub failing_since: Option<Timestamp>,
    /// After a rotation: until when the previous secret also signs.
    pub previous_secret_expires_at: Option<Timestamp>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

impl From<WebhookEndpoint> for WebhookOut {
    fn from(e: WebhookEndpoint) -> Self {
        Self {
            id: e.id,
            url: e.url,
            description: e.description,
            event_types: e.filter.entries().to_vec(),
            enabled: e.enabled,
            disabled_reason: e.disabled_reason,
            failing_since: e.failing_since,
            previous_secret_expires_at: e.previous_secret.map(|(_, until)| until),
            created_at: e.created_at,
            updated_at: e.updated_at,
        }
    }
}

/// An endpoint with its signing secret.
#[derive(Serialize, utoipa::ToSchema)]
pub struct WebhookWithSecretOut {
    #[serde(flatten)]
    pub endpoint: WebhookOut,
    #[schema(example = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")]
    pub secret: String,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RotateIn {
    /// The new secret (`whsec_` + standard base64, padded, of 24 to 64 bytes); generated when absent.
    #[schema(
        pattern = r"^whsec_(?:(?:[A-Za-z0-9+/]{4}){8,21}(?:[A-Za-z0-9+/][AQgw]==)?|(?:[A-Za-z0-9+/]{4}){8,20}[A-Za-z0-9+/]{2}[AEIMQUYcgkosw048]=)$"
    )]
    pub secret: Option<String>,
    /// How long the current secret keeps signing beside the new one, so receivers can switch: 0 to 604800 seconds,
    /// default 86400.
    #[schema(minimum = 0, maximum = 604800)]
    pub previous_valid_for_secs: Option<u64>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct SecretOut {
    pub secret: String,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct AttemptLogOut {
    pub attempted_at: Timestamp,
    pub duration_ms: u64,
    /// The HTTP status the endpoint answered; absent when it did not answer.
    pub status: Option<u16>,
    /// Why the attempt failed without an answer (refused, timed out, blocked target, answer too large).
    pub error: Option<String>,
    /// The start of the answer's body.
    pub response_body: Option<String>,
}

impl From<DeliveryAttempt> for AttemptLogOut {
    fn from(a: DeliveryAttempt) -> Self {
        Self {
            attempted_at: a.attempted_at,
            duration_ms: a.duration_ms,
            status: a.status,
            error: a.error,
            response_body: a.response_body,
        }
    }
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct DeliveryOut {
    pub id: i64,
    pub endpoint_id: Uuid,
    /// Also the `webhook-id` header of every attempt.
    pub event_id: Uuid,
    #[schema(example = "group.created")]
    pub event_type: String,
    /// `pending`, `succeeded` or `failed` (out of attempts; can be replayed).
    #[schema(example = "pending")]
    pub state: String,
    pub attempts: u32,
    /// When the next attempt is due, while pending.
    pub next_attempt_at: Option<Timestamp>,
    pub last_error: Option<String>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    /// Every attempt, on `GET …/deliveries/{id}`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attempt_log: Option<Vec<AttemptLogOut>>,
}

impl DeliveryOut {
    fn new(d: DeliveryRecord, attempts: Option<Vec<DeliveryAttempt>>) -> Self {
        Self {
            id: d.id,
            endpoint_id: d.endpoint_id,
            event_id: d.event_id,
            event_type: d.event_type,
            state: d.state.as_str().to_owned(),
            attempts: d.attempts,
            next_attempt_at: (d.state == DeliveryState::Pending).then_some(d.next_attempt_at),
            last_error: d.last_error,
            created_at: d.created_at,
            updated_at: d.updated_at,
            attempt_log: attempts.map(|list| list.into_iter().map(AttemptLogOut::from).collect()),
        }
    }
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DeliveryListParams {
    /// Only deliveries in this state.
    #[param(inline)]
    pub state: Option<DeliveryStateIn>,
    /// Only the deliveries of this event.
    pub event_id: Option<Uuid>,
}

/// A delivery's state, as a list filter.
#[derive(Clone, Copy, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryStateIn {
    Pending,
    Succeeded,
    /// Out of attempts; can be replayed.
    Failed,
}

impl From<DeliveryStateIn> for DeliveryState {
    fn from(s: DeliveryStateIn) -> Self {
        match s {
            DeliveryStateIn::Pending => Self::Pending,
            DeliveryStateIn::Succeeded => Self::Succeeded,
            DeliveryStateIn::Failed => Self::Failed,
        }
    }
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReplayIn {
    /// Replay the failed deliveries created at or after this time; all failed ones when absent.
    pub since: Option<Timestamp>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct ReplayOut {
    /// How many deliveries are pending again.
    pub replayed: u64,
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct EventListParams {
    /// Only this instance's events.
    pub instance_id: Option<InstanceId>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct EventOut {
    /// The event's place in the log (Green API's `receiptId`).
    pub seq: i64,
    pub id: Uuid,
    #[serde(rename = "type")]
    #[schema(example = "group.created")]
    pub event_type: String,
    pub instance_id: Option<InstanceId>,
    pub created_at: Timestamp,
    /// The body every endpoint receives (see the `webhooks` section of this document).
    #[schema(value_type = Object)]
    pub body: serde_json::Value,
}

impl From<EventRecord> for EventOut {
    fn from(e: EventRecord) -> Self {
        Self {
            seq: e.seq,
            id: e.id,
            body: serde_json::from_str(&e.payload).unwrap_or(serde_json::Value::Null),
            event_type: e.event_type,
            instance_id: e.instance_id,
            created_at: e.created_at,
        }
    }
}

pub(crate) fn endpoint_id(raw: &str) -> Result<Uuid> {
    Uuid::parse_str(raw).map_err(|_| ApiError::NotFound(format!("no webhook endpoint `{raw}`")))
}

/// An event filter: a list of event types and categories (`group.*`, `group.participants.*`), every one named.
fn event_filter() -> utoipa::openapi::schema::Schema {
    use convene_core::events::EventType;
    use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, SchemaType, Type};
    let mut entries: Vec<String> = EventType::ALL.iter().map(|t| t.as_str().to_owned()).collect();
    entries.extend(EventType::categories());
    let entry = ObjectBuilder::new().schema_type(Type::String).enum_values(Some(entries));
    ArrayBuilder::new().schema_type(SchemaType::Array(vec![Type::Array, Type::Null])).items(entry).into()
}

/// Add an endpoint. The answer carries its secret.
#[utoipa::path(post, path = "/webhooks", tag = "webhooks", operation_id = "v1.webhook.create",
    request_body(content = WebhookIn, example = json!({
        "url": "https://example.com/hooks/convene", "event_types": ["group.*", "instance.*"]
    })),
    responses((status = 201, body = WebhookWithSecretOut), (status = 422, body = ErrorBody)),
    security(("api_key" = [])))]
async fn create_webhook(
    State(state): State<AppState>,
    _key: AccountWideKey,
    ApiJson(input): ApiJson<WebhookIn>,
) -> Result<(StatusCode, Json<WebhookWithSecretOut>)> {
    let new = NewEndpoint {
        url: input.url,
        description: input.description,
        event_types: input.event_types,
        enabled: input.enabled,
        secret: input.secret,
    };
    let (endpoint, secret) = state.endpoints.create(new).await?;
    Ok((StatusCode::CREATED, Json(WebhookWithSecretOut { endpoint: endpoint.into(), secret: secret.to_whsec() })))
}

/// Every endpoint, oldest first.
#[utoipa::path(get, path = "/webhooks", tag = "webhooks", operation_id = "v1.webhook.list", params(PageParams),
    responses((status = 200, body = Page<WebhookOut>)), security(("api_key" = [])))]
async fn list_webhooks(
    State(state): State<AppState>,
    _key: AccountWideKey,
    ApiQuery(page): ApiQuery<PageParams>,
) -> Result<Json<Page<WebhookOut>>> {
    let all = state.endpoints.list().await?;
    let page = Page::from_all(all, &page, |e| Cursor::new(e.created_at.as_millis(), Some(e.id)))?;
    Ok(Json(page.map(WebhookOut::from)))
}

/// An endpoint: where it points, what it takes, whether it is enabled and why not.
#[utoipa::path(get, path = "/webhooks/{id}", tag = "webhooks", operation_id = "v1.webhook.get",
    params(("id" = String, Path, description = "Endpoint id")),
    responses((status = 200, body = WebhookOut), (status = 404, body = ErrorBody)), security(("api_key" = [])))]
async fn get_webhook(
    State(state): State<AppState>,
    _key: AccountWideKey,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<WebhookOut>> {
    Ok(Json(state.endpoints.get(endpoint_id(&id)?).await?.into()))
}

/// Change the URL, description, event filter, or enable/disable.
#[utoipa::path(patch, path = "/webhooks/{id}", tag = "webhooks", operation_id = "v1.webhook.update",
    params(("id" = String, Path, description = "Endpoint id")),
    request_body(content = WebhookPatchIn, example = json!({"enabled": true})),
    responses((status = 200, body = WebhookOut), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)),
    security(("api_key" = [])))]
async fn update_webhook(
    State(state): State<AppState>,
    _key: AccountWideKey,
    ApiPath(id): ApiPath<String>,
    ApiJson(input): ApiJson<WebhookPatchIn>,
) -> Result<Json<WebhookOut>> {
    let patch = EndpointPatch {
        url: input.url,
        description: input.description,
        event_types: input.event_types,
        enabled: input.enabled,
    };
    Ok(Json(state.endpoints.update(endpoint_id(&id)?, patch).await?.into()))
}

/// Delete an endpoint with its deliveries (the events stay in the log).
#[utoipa::path(delete, path = "/webhooks/{id}", tag = "webhooks", operation_id = "v1.webhook.delete",
    params(("id" = String, Path, description = "Endpoint id")),
    responses((status = 204), (status = 404, body = ErrorBody)), security(("api_key" = [])))]
async fn delete_webhook(
    State(state): State<AppState>,
    _key: AccountWideKey,
    ApiPath(id): ApiPath<String>,
) -> Result<StatusCode> {
    state.endpoints.delete(endpoint_id(&id)?).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The endpoint's current signing secret.
#[utoipa::path(get, path = "/webhooks/{id}/secret", tag = "webhooks", operation_id = "v1.webhook.secret",
    params(("id" = String, Path, description = "Endpoint id")),
    responses((status = 200, body = SecretOut), (status = 404, body = ErrorBody)), security(("api_key" = [])))]
async fn get_secret(
    State(state): State<AppState>,
    _key: AccountWideKey,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<SecretOut>> {
    let secret = state.endpoints.secret(endpoint_id(&id)?).await?;
    Ok(Json(SecretOut { secret: secret.to_whsec() }))
}

/// Rotate the secret. Until `previous_secret_expires_at` every delivery is signed with both, so a receiver can
/// switch without missing one.
#[utoipa::path(post, path = "/webhooks/{id}/secret/rotate", tag = "webhooks", operation_id = "v1.webhook.rotate_secret",
    params(("id" = String, Path, description = "Endpoint id")),
    request_body(content = RotateIn, example = json!({"previous_valid_for_secs": 86400})),
    responses((status = 200, body = WebhookWithSecretOut), (status = 404, body = ErrorBody),
        (status = 422, body = ErrorBody)), security(("api_key" = [])))]
async fn rotate_secret(
    State(state): State<AppState>,
    _key: AccountWideKey,
    ApiPath(id): ApiPath<String>,
    ApiJson(input): ApiJson<RotateIn>,
) -> Result<Json<WebhookWithSecretOut>> {
    let overlap = Duration::from_secs(input.previous_valid_for_secs.unwrap_or(86_400));
    let (endpoint, secret) = state.endpoints.rotate_secret(endpoint_id(&id)?, input.secret.as_deref(), overlap).await?;
    Ok(Json(WebhookWithSecretOut { endpoint: endpoint.into(), secret: secret.to_whsec() }))
}

/// The endpoint's deliveries, newest first.
#[utoipa::path(get, path = "/webhooks/{id}/deliveries", tag = "webhooks", operation_id = "v1.webhook.deliveries",
    params(("id" = String, Path, description = "Endpoint id"), DeliveryListParams, PageParams),
    responses((status = 200, body = Page<DeliveryOut>), (status = 404, body = ErrorBody)), security(("api_key" = [])))]
async fn list_deliveries(
    State(state): State<AppState>,
    _key: AccountWideKey,
    ApiPath(id): ApiPath<String>,
    ApiQuery(params): ApiQuery<DeliveryListParams>,
    ApiQuery(page): ApiQuery<PageParams>,
) -> Result<Json<Page<DeliveryOut>>> {
    let endpoint = state.endpoints.get(endpoint_id(&id)?).await?;
    let limit = page.limit()?;
    let query = DeliveryListQuery {
        endpoint_id: Some(endpoint.id),
        state: params.state.map(DeliveryState::from),
        event_id: params.event_id,
        before_id: page.cursor()?.map(|c| c.key),
        limit: limit + 1,
    };
    let deliveries = state.endpoints.deliveries(&query).await?;
    let page = Page::from_lookahead(deliveries, limit, |d| Cursor::new(d.id, None).render());
    Ok(Json(page.map(|d| DeliveryOut::new(d, None))))
}

/// A delivery with every attempt: when, how long, the status or error, the start of the answer.
#[utoipa::path(get, path = "/webhooks/{id}/deliveries/{delivery_id}", tag = "webhooks",
    operation_id = "v1.webhook.delivery",
    params(("id" = String, Path, description = "Endpoint id"), ("delivery_id" = i64, Path, description = "Delivery id")),
    responses((status = 200, body = DeliveryOut), (status = 404, body = ErrorBody)), security(("api_key" = [])))]
async fn get_delivery(
    State(state): State<AppState>,
    _key: AccountWideKey,
    ApiPath((id, delivery)): ApiPath<(String, String)>,
) -> Result<Json<DeliveryOut>> {
    let (delivery, attempts) = state.endpoints.delivery(endpoint_id(&id)?, delivery_id(&delivery)?).await?;
    Ok(Json(DeliveryOut::new(delivery, Some(attempts))))
}

pub(crate) fn delivery_id(raw: &str) -> Result<i64> {
    raw.parse().map_err(|_| ApiError::NotFound(format!("no delivery `{raw}`")))
}

/// Send a failed delivery again (409 when it is not failed).
#[utoipa::path(post, path = "/webhooks/{id}/deliveries/{delivery_id}/replay", tag = "webhooks",
    operation_id = "v1.webhook.replay_delivery",
    params(("id" = String, Path, description = "Endpoint id"), ("delivery_id" = i64, Path, description = "Delivery id")),
    responses((status = 200, body = ReplayOut), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)),
    security(("api_key" = [])))]
async fn replay_delivery(
    State(state): State<AppState>,
    _key: AccountWideKey,
    ApiPath((id, delivery)): ApiPath<(String, String)>,
) -> Result<Json<ReplayOut>> {
    let replayed = state.endpoints.replay(endpoint_id(&id)?, Some(delivery_id(&delivery)?), None).await?;
    Ok(Json(ReplayOut { replayed }))
}

/// Send every failed delivery of the endpoint again (since a time, if given), in their original order.
#[utoipa::path(post, path = "/webhooks/{id}/replay", tag = "webhooks", operation_id = "v1.webhook.replay_failed",
    params(("id" = String, Path, description = "Endpoint id")),
    request_body(content = ReplayIn, example = json!({"since": "2026-11-24T00:00:00Z"})),
    responses((status = 200, body = ReplayOut), (status = 404, body = ErrorBody)), security(("api_key" = [])))]
async fn replay_failed(
    State(state): State<AppState>,
    _key: AccountWideKey,
    ApiPath(id): ApiPath<String>,
    ApiJson(input): ApiJson<ReplayIn>,
) -> Result<Json<ReplayOut>> {
    let replayed = state.endpoints.replay(endpoint_id(&id)?, None, input.since).await?;
    Ok(Json(ReplayOut { replayed }))
}

/// The event log, oldest first: everything endpoints were (or will be) sent, kept `webhooks.retention_days` (30).
#[utoipa::path(get, path = "/events", tag = "webhooks", operation_id = "v1.event.list",
    params(EventListParams, PageParams), responses((status = 200, body = Page<EventOut>)), security(("api_key" = [])))]
async fn list_events(
    State(state): State<AppState>,
    key: AccountKey,
    ApiQuery(params): ApiQuery<EventListParams>,
    ApiQuery(page): ApiQuery<PageParams>,
) -> Result<Json<Page<EventOut>>> {
    let limit = page.limit()?;
    let instance_id = super::instances::instance_filter(&key, params.instance_id)?;
    let query = EventListQuery {
        instance_id,
        after_seq: page.cursor()?.map(|c| c.key),
        limit: limit + 1,
        ..Default::default()
    };
    let events = state.service.outbox().events(&query).await?;
    // A scoped key reads its instances' events only: a page may then hold fewer than `limit`.
    let page = Page::from_lookahead(events, limit, |e| Cursor::new(e.seq, None).render());
    Ok(Json(page.retain(|e| key.sees_event(e.instance_id)).map(EventOut::from)))
}

/// The OpenAPI document's `webhooks`: one entry per event type, the body it is delivered with (the envelope and
/// that type's `data`), and the headers that sign it.
pub fn document(openapi: &mut utoipa::openapi::OpenApi) {
    use convene_core::events::EventType;
    use utoipa::openapi::path::{HttpMethod, OperationBuilder, PathItem};
    use utoipa::openapi::request_body::RequestBodyBuilder;
    use utoipa::openapi::schema::{ObjectBuilder, SchemaFormat, Type};
    use utoipa::openapi::{ContentBuilder, KnownFormat, Ref, ResponseBuilder};
    use utoipa::{PartialSchema, ToSchema};

    use crate::service::{
        GroupCreatedData, GroupCreationFailedData, GroupUpdatedData, InstanceData, JobStateChangedData,
        ParticipantsData,
    };

    fn add<T: ToSchema>(openapi: &mut utoipa::openapi::OpenApi) -> String {
        let components = openapi.components.get_or_insert_with(Default::default);
        let mut nested = Vec::new();
        T::schemas(&mut nested);
        components.schemas.extend(nested);
        components.schemas.insert(T::name().into_owned(), T::schema());
        T::name().into_owned()
    }
    let data_schemas = [
        add::<GroupCreatedData>(openapi),
        add::<GroupCreationFailedData>(openapi),
        add::<GroupUpdatedData>(openapi),
        add::<ParticipantsData>(openapi),
        add::<InstanceData>(openapi),
        add::<JobStateChangedData>(openapi),
    ];
    let [created, failed, updated, participants, instance, job] = data_schemas;
    let mut webhooks = openapi.webhooks.take().unwrap_or_default();
    for event_type in EventType::ALL {
        let (data, what) = match event_type {
            EventType::GroupCreated => (&created, "A group was created, with every participant's outcome."),
            EventType::GroupCreationFailed => (&failed, "A group creation gave up."),
            EventType::GroupUpdated => (&updated, "A group's subject, description, settings or picture changed."),
            EventType::ParticipantsAdded => (&participants, "People were added to a group."),
            EventType::ParticipantsRemoved => (&participants, "People were removed from a group."),
            EventType::ParticipantsPromoted => (&participants, "People were made admins."),
            EventType::ParticipantsDemoted => (&participants, "Admins were made members."),
            EventType::ParticipantsJoined => {
                (&participants, "People joined on their own: invite link, private invite, approved join request.")
            }
            EventType::ParticipantsLeft => (&participants, "People left a group of their own accord."),
            EventType::ParticipantsInviteSent => {
                (&participants, "Privacy settings kept people out; a private invite was sent to each.")
            }
            EventType::InstanceQrReady => (&instance, "A QR code is ready to scan (they rotate while pairing)."),
            EventType::InstancePaired => (&instance, "Pairing finished: the instance is now this number."),
            EventType::InstanceConnected => (&instance, "The instance connected to WhatsApp."),
            EventType::InstanceDisconnected => (&instance, "The connection dropped; Convene reconnects."),
            EventType::InstanceUnreachable => (
                &instance,
                "WhatsApp cannot be reached: once per outage, at its first failed attempt, with the error and the next \
                 attempt in `state`. `instance.connected` says it is over.",
            ),
            EventType::InstanceLoggedOut => (&instance, "The number was unlinked; it needs pairing again."),
            EventType::InstanceTemporarilyBanned => {
                (&instance, "WhatsApp paused the number (code 103); creation is paused until the end.")
            }
            EventType::JobStateChanged => (&job, "A creation job changed state."),
        };
        let body = ObjectBuilder::new()
            .property(
                "id",
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .format(Some(SchemaFormat::KnownFormat(KnownFormat::Uuid))),
            )
            .required("id")
            .property("type", ObjectBuilder::new().schema_type(Type::String).enum_values(Some([event_type.as_str()])))
            .required("type")
            .property(
                "timestamp",
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .format(Some(SchemaFormat::KnownFormat(KnownFormat::DateTime))),
            )
            .required("timestamp")
            .property("instance_id", <Option<i64> as PartialSchema>::schema())
            .required("instance_id")
            .property("data", Ref::from_schema_name(data.as_str()))
            .required("data")
            .build();
        let operation = OperationBuilder::new()
            .tag("webhooks")
            .operation_id(Some(format!("webhook.{}", event_type.as_str())))
            .summary(Some(what))
            .description(Some(
                "POSTed to every enabled endpoint whose filter takes it, with `webhook-id` (the event id, the same on \
                 every retry), `webhook-timestamp` (Unix seconds) and `webhook-signature` (`v1,<base64 \
                 HMAC-SHA256 of id.timestamp.body>`, one per valid secret, space-separated). Any 2xx answer is \
                 success; anything else is retried on the configured schedule, honouring `Retry-After`.",
            ))
            .request_body(Some(
                RequestBodyBuilder::new()
                    .content("application/json", ContentBuilder::new().schema(Some(body)).build())
                    .build(),
            ))
            .response("2XX", ResponseBuilder::new().description("Received; any 2xx status will do.").build())
            .build();
        webhooks.paths.insert(event_type.as_str().to_owned(), PathItem::new(HttpMethod::Post, operation));
    }
    openapi.webhooks = Some(webhooks);
}
