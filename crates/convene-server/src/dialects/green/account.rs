//! Green's account methods that describe the instance: state, socket status, settings, WhatsApp account, QR.

use axum::Json;
use axum::extract::State;
use axum::http::Method;
use axum::routing::get;
use convene_core::InstanceState;
use serde_json::{Value, json};

use super::{GreenInstance, GreenMethod};
use crate::AppState;

pub(super) fn methods() -> Vec<GreenMethod> {
    [
        ("getStateInstance", get(get_state_instance)),
        ("getStatusInstance", get(get_status_instance)),
        ("getSettings", get(get_settings)),
        ("getWaSettings", get(get_wa_settings)),
        ("qr", get(qr)),
    ]
    .into_iter()
    .map(|(name, route)| GreenMethod { name, verb: Method::GET, route })
    .collect()
}

/// Green's `stateInstance`. A dropped connection is `starting` (the session is kept and Convene reconnects, so a
/// QR scan would be the wrong advice); a temporary ban is `blocked`.
fn state_name(state: &InstanceState) -> &'static str {
    match state {
        InstanceState::Connected => "authorized",
        InstanceState::Pairing | InstanceState::LoggedOut => "notAuthorized",
        InstanceState::Starting | InstanceState::Disconnected => "starting",
        InstanceState::TemporarilyBanned { .. } => "blocked",
    }
}

async fn get_state_instance(State(state): State<AppState>, GreenInstance(instance): GreenInstance) -> Json<Value> {
    let current = state.service.instance_state(instance.id).await;
    Json(json!({ "stateInstance": state_name(&current) }))
}

async fn get_status_instance(State(state): State<AppState>, GreenInstance(instance): GreenInstance) -> Json<Value> {
    let online = state.service.instance_state(instance.id).await.is_connected();
    Json(json!({ "statusInstance": if online { "online" } else { "offline" } }))
}

/// The settings Green clients read. Convene delivers no notifications through this dialect, so every webhook
/// flag is `no` and the URL empty.
async fn get_settings(GreenInstance(instance): GreenInstance) -> Json<Value> {
    let wid = instance.phone.as_ref().map(|p| p.c_us()).unwrap_or_default();
    let mut settings = json!({
        "wid": wid,
        "countryInstance": "",
        "typeAccount": "",
        "webhookUrl": "",
        "webhookUrlToken": "",
        "delaySendMessagesMilliseconds": 0,
    });
    for flag in [
        "markIncomingMessagesReaded",
        "markIncomingMessagesReadedOnReply",
        "sharedSession",
        "outgoingWebhook",
        "outgoingMessageWebhook",
        "outgoingAPIMessageWebhook",
        "incomingWebhook",
        "deviceWebhook",
        "statusInstanceWebhook",
        "stateWebhook",
        "enableMessagesHistory",
        "keepOnlineStatus",
        "pollMessageWebhook",
        "incomingBlockWebhook",
        "incomingCallWebhook",
        "editedMessageWebhook",
        "deletedMessageWebhook",
    ] {
        settings[flag] = json!("no");
    }
    Json(settings)
}

/// As in Green, the account fields are empty unless the instance is authorized. Convene has no avatar URL or
/// device id to give.
async fn get_wa_settings(State(state): State<AppState>, GreenInstance(instance): GreenInstance) -> Json<Value> {
    let current = state.service.instance_state(instance.id).await;
    let phone = match (&current, &instance.phone) {
        (InstanceState::Connected, Some(phone)) => phone.digits().to_owned(),
        _ => String::new(),
    };
    Json(json!({ "avatar": "", "phone": phone, "stateInstance": state_name(&current), "deviceId": "" }))
}

/// A connected instance is `alreadyLogged`. Pairing by QR code through this dialect is not available yet: until
/// then an instance that is not connected answers `error` with its state.
async fn qr(State(state): State<AppState>, GreenInstance(instance): GreenInstance) -> Json<Value> {
    let current = state.service.instance_state(instance.id).await;
    Json(match current {
        InstanceState::Connected => {
            json!({ "type": "alreadyLogged", "message": "instance account already authorized" })
        }
        other => json!({
            "type": "error",
            "message": format!(
                "no QR code: the instance is {} and QR pairing is not available through this API yet",
                state_name(&other)
            ),
        }),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instance_states_read_as_greens() {
        assert_eq!(state_name(&InstanceState::Connected), "authorized");
        assert_eq!(state_name(&InstanceState::Pairing), "notAuthorized");
        assert_eq!(state_name(&InstanceState::LoggedOut), "notAuthorized");
        assert_eq!(state_name(&InstanceState::Disconnected), "starting");
        assert_eq!(state_name(&InstanceState::Starting), "starting");
        assert_eq!(state_name(&InstanceState::TemporarilyBanned { until: None }), "blocked");
    }
}
