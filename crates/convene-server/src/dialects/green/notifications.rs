//! Green API's notification queue, served from Convene's events: `receiveNotification` (GET; waits up to
//! `receiveTimeout` seconds, 5 to 60, default 5, for one; an empty queue is JSON `null`) and
//! `deleteNotification/{token}/{receiptId}` (DELETE). The queue is the instance's events of the last 24 hours that no
//! poller deleted, oldest first; `receiptId` is the event's sequence number.
//!
//! Connection changes arrive as Green's own `stateInstanceChanged`; group and job events, which Green has no type
//! for, keep Convene's event type as `typeWebhook` (`group.created`, …) with Convene's `data` beside Green's
//! `instanceData` and `timestamp`.

use std::time::Duration;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::Method;
use axum::routing::{delete, get};
use convene_core::InstanceState;
use convene_core::events::EventRecord;
use convene_core::store::InstanceRecord;
use serde::Deserialize;
use serde_json::{Value, json};

use super::account::state_name;
use super::error::GreenError;
use super::{GreenInstance, GreenMethod};
use crate::AppState;
use crate::error::ApiError;

/// How long Green keeps a notification in its queue.
const RETENTION: Duration = Duration::from_secs(24 * 3600);

pub(super) fn methods() -> Vec<GreenMethod> {
    vec![GreenMethod { name: "receiveNotification", verb: Method::GET, route: get(receive_notification) }]
}

/// `deleteNotification` carries the receipt after the token, so it has routes of its own.
pub(super) fn routes() -> axum::Router<AppState> {
    let route = delete(delete_notification);
    axum::Router::new()
        .route("/waInstance{id}/deleteNotification/{token}/{receipt}", route.clone())
        .route("/waInstance{id}/DeleteNotification/{token}/{receipt}", route)
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ReceiveQuery {
    receive_timeout: Option<String>,
}

async fn receive_notification(
    State(state): State<AppState>,
    GreenInstance(instance): GreenInstance,
    Query(query): Query<ReceiveQuery>,
) -> Result<Json<Value>, GreenError> {
    let wait = match query.receive_timeout.as_deref().map(str::parse::<u64>) {
        None => 5,
        Some(Ok(secs @ 5..=60)) => secs,
        Some(_) => {
            return Err(ApiError::field("receiveTimeout", "must be a whole number of seconds from 5 to 60").into());
        }
    };
    let next = state.service.outbox().next_notification(instance.id, RETENTION, Duration::from_secs(wait)).await?;
    Ok(Json(match next {
        Some(event) => json!({ "receiptId": event.seq, "body": green_body(&event, &instance) }),
        None => Value::Null,
    }))
}

/// `{result: true}` when the notification was in the queue and is now gone, `{result: false}` when it was not there.
async fn delete_notification(
    State(state): State<AppState>,
    GreenInstance(instance): GreenInstance,
    Path((_, _, receipt)): Path<(String, String, String)>,
) -> Result<Json<Value>, GreenError> {
    let seq = receipt
        .parse::<i64>()
        .map_err(|_| ApiError::field("receiptId", format!("`{receipt}` is not a receipt id (a whole number)")))?;
    Ok(Json(json!({ "result": state.service.outbox().acknowledge_notification(instance.id, seq).await? })))
}

/// One event in Green's notification shape.
fn green_body(event: &EventRecord, instance: &InstanceRecord) -> Value {
    let ours: Value = serde_json::from_str(&event.payload).unwrap_or(Value::Null);
    let instance_data = json!({
        "idInstance": instance.id.0,
        "wid": instance.phone.as_ref().map(|p| p.c_us()).unwrap_or_default(),
        "typeInstance": "whatsapp",
    });
    let timestamp = event.created_at.as_millis().div_euclid(1000);
    let state = serde_json::from_value::<InstanceState>(ours["data"]["state"].clone());
    match state {
        Ok(state) if event.event_type.starts_with("instance.") && event.event_type != "instance.qr_ready" => json!({
            "typeWebhook": "stateInstanceChanged",
            "instanceData": instance_data,
            "timestamp": timestamp,
            "stateInstance": state_name(&state),
        }),
        _ => json!({
            "typeWebhook": event.event_type,
            "instanceData": instance_data,
            "timestamp": timestamp,
            "idEvent": event.id,
            "data": ours["data"],
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use convene_core::{InstanceId, PhoneNumber, Timestamp};

    fn instance() -> InstanceRecord {
        InstanceRecord {
            id: InstanceId(7103000001),
            kind: convene_whatsapp::KIND,
            name: "n".into(),
            phone: Some(PhoneNumber::parse("+12015550188").unwrap()),
            token_hash: String::new(),
            created_at: Timestamp::from_millis(0),
        }
    }

    fn event(event_type: &str, data: Value) -> EventRecord {
        EventRecord {
            seq: 3,
            id: uuid::Uuid::nil(),
            event_type: event_type.into(),
            instance_id: Some(InstanceId(7103000001)),
            ordering_key: String::new(),
            payload: json!({ "type": event_type, "data": data }).to_string(),
            created_at: Timestamp::from_millis(1_764_000_000_500),
            acknowledged_at: None,
        }
    }

    #[test]
    fn a_connection_change_is_greens_own_state_notification() {
        let body = green_body(&event("instance.connected", json!({ "state": { "status": "connected" } })), &instance());
        assert_eq!(
            body,
            json!({
                "typeWebhook": "stateInstanceChanged",
                "instanceData": { "idInstance": 7103000001_i64, "wid": "12015550188@c.us", "typeInstance": "whatsapp" },
                "timestamp": 1_764_000_000,
                "stateInstance": "authorized",
            })
        );
    }

    #[test]
    fn a_group_event_keeps_its_type_and_data() {
        let data = json!({ "group": { "jid": "1@g.us" }, "participants": ["+12015550101"] });
        let body = green_body(&event("group.participants.joined", data.clone()), &instance());
        assert_eq!(body["typeWebhook"], "group.participants.joined");
        assert_eq!(body["data"], data);
        assert_eq!(body["instanceData"]["wid"], "12015550188@c.us");
    }
}
