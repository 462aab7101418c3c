//! Green's account methods: the instance's state, socket status, settings and WhatsApp account, and pairing a real
//! number — the QR code, a phone code instead (`getAuthorizationCode`), and logging out.

use axum::Json;
use axum::extract::State;
use axum::http::Method;
use axum::routing::{get, post};
use convene_core::{ConnectorError, InstanceState};
use serde::Deserialize;
use serde_json::{Value, json};

use super::error::{GreenError, GreenFields as _};
use super::{GreenInstance, GreenJson, GreenMethod};
use crate::AppState;
use crate::dialects::common;
use crate::error::ApiError;

pub(super) fn methods() -> Vec<GreenMethod> {
    vec![
        GreenMethod { name: "getStateInstance", verb: Method::GET, route: get(get_state_instance) },
        GreenMethod { name: "getStatusInstance", verb: Method::GET, route: get(get_status_instance) },
        GreenMethod { name: "getSettings", verb: Method::GET, route: get(get_settings) },
        GreenMethod { name: "getWaSettings", verb: Method::GET, route: get(get_wa_settings) },
        GreenMethod { name: "qr", verb: Method::GET, route: get(qr) },
        GreenMethod { name: "getAuthorizationCode", verb: Method::POST, route: post(get_authorization_code) },
        GreenMethod { name: "logout", verb: Method::GET, route: get(logout) },
    ]
}

/// Green's `stateInstance`. A connection being made, dropped or failing to reach WhatsApp is `starting` (the
/// session is kept and Convene keeps trying, so a QR scan would be the wrong advice; `qr` says what failed); a
/// temporary ban is `blocked`.
pub(super) fn state_name(state: &InstanceState) -> &'static str {
    match state {
        InstanceState::Connected => "authorized",
        InstanceState::Pairing | InstanceState::LoggedOut => "notAuthorized",
        InstanceState::Starting
        | InstanceState::Connecting
        | InstanceState::Disconnected
        | InstanceState::Unreachable { .. } => "starting",
        InstanceState::TemporarilyBanned { .. } => "blocked",
    }
}

async fn get_state_instance(State(state): State<AppState>, GreenInstance(instance): GreenInstance) -> Json<Value> {
    let current = state.service.instances().state(instance.id).await;
    Json(json!({ "stateInstance": state_name(&current) }))
}

async fn get_status_instance(State(state): State<AppState>, GreenInstance(instance): GreenInstance) -> Json<Value> {
    let online = state.service.instances().state(instance.id).await.is_connected();
    Json(json!({ "statusInstance": if online { "online" } else { "offline" } }))
}

/// The settings Green clients read. Connection changes are queued for `receiveNotification` (`stateWebhook`
/// `yes`); Convene has no messages, calls or devices to notify about, and pushes webhooks through the native API's
/// endpoints, not a Green `webhookUrl`.
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
    settings["stateWebhook"] = json!("yes");
    Json(settings)
}

/// As in Green, the account fields are empty unless the instance is authorized. Convene has no avatar URL or
/// device id to give.
async fn get_wa_settings(State(state): State<AppState>, GreenInstance(instance): GreenInstance) -> Json<Value> {
    let current = state.service.instances().state(instance.id).await;
    let phone = match (&current, &instance.phone) {
        (InstanceState::Connected, Some(phone)) => phone.digits().to_owned(),
        _ => String::new(),
    };
    Json(json!({ "avatar": "", "phone": phone, "stateInstance": state_name(&current), "deviceId": "" }))
}

/// `qrCode` with the QR code as a base64 PNG while the instance waits for a scan (a new code about every 20 s, so
/// clients poll); `alreadyLogged` once connected; otherwise `error`, saying why there is no code and the state.
async fn qr(State(state): State<AppState>, GreenInstance(instance): GreenInstance) -> Result<Json<Value>, GreenError> {
    let current = state.service.instances().state(instance.id).await;
    if current.is_connected() {
        return Ok(Json(json!({ "type": "alreadyLogged", "message": "instance account already authorized" })));
    }
    Ok(Json(match state.service.pairing_qr(instance.id).await {
        Ok(code) => json!({ "type": "qrCode", "message": common::qr_png_base64(&code.code)? }),
        Err(ApiError::NotPairing(why)) => json!({
            "type": "error",
            "message": format!("{why} (stateInstance `{}`)", state_name(&current)),
        }),
        Err(e) => return Err(e.into()),
    }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct AuthorizationCodeIn {
    /// International digits without `+`: a JSON number, as Green documents it, or a string.
    phone_number: Value,
}

/// `getAuthorizationCode` (POST `{phoneNumber}`) → `{status: true, code}`: a code to type on the phone instead of
/// scanning (Linked devices → Link with phone number instead). It needs the connection to WhatsApp and an unpaired
/// instance; when WhatsApp refuses to give a code the answer is `{status: false}`, as in Green.
async fn get_authorization_code(
    State(state): State<AppState>,
    GreenInstance(instance): GreenInstance,
    GreenJson(input): GreenJson<AuthorizationCodeIn>,
) -> Result<Json<Value>, GreenError> {
    let phone = match input.phone_number {
        Value::String(text) => text,
        other => other.to_string(),
    };
    match state.service.request_pairing_code(instance.id, &phone).await {
        Ok(code) => Ok(Json(json!({ "status": true, "code": code.code }))),
        Err(ApiError::Connector(e @ ConnectorError::Rejected { .. })) => {
            tracing::warn!(instance = %instance.id, error = %e, "no pairing code");
            Ok(Json(json!({ "status": false, "code": "" })))
        }
        Err(e) => Err(e).green_fields(&[("phone_number", "phoneNumber")]),
    }
}

/// `logout` → `{isLogout: true}`: unlinks the number and deletes its keys; the instance stays and starts a new
/// pairing. Sandbox instances cannot log out (400).
async fn logout(
    State(state): State<AppState>,
    GreenInstance(instance): GreenInstance,
) -> Result<Json<Value>, GreenError> {
    state.service.logout(instance.id).await?;
    Ok(Json(json!({ "isLogout": true })))
}

#[cfg(test)]
mod tests {
    use super::*;

    const START: convene_core::Timestamp = convene_core::Timestamp::from_millis(1_795_392_000_000);

    #[test]
    fn instance_states_read_as_greens() {
        assert_eq!(state_name(&InstanceState::Connected), "authorized");
        assert_eq!(state_name(&InstanceState::Pairing), "notAuthorized");
        assert_eq!(state_name(&InstanceState::LoggedOut), "notAuthorized");
        assert_eq!(state_name(&InstanceState::Disconnected), "starting");
        assert_eq!(state_name(&InstanceState::Starting), "starting");
        assert_eq!(state_name(&InstanceState::Connecting), "starting");
        let outage = InstanceState::Unreachable { error: "dns error".into(), since: START, next_retry_at: None };
        assert_eq!(state_name(&outage), "starting", "Convene keeps trying: no scan would help");
        assert_eq!(state_name(&InstanceState::TemporarilyBanned { until: None }), "blocked");
    }
}
