//! Instance health that tells the truth: a network that cannot be reached shows in the instance's state (native and
//! every dialect), in one event per outage, in the QR endpoint, in failing calls and in `GET /v1/health`; and its end
//! shows as `instance.connected`. The sandbox's `unreachable` fault plays the outage; `e2e_whatsapp` has the real
//! library failing on this offline machine.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{Credentials, START, TestApp, spawn_app};

/// Polls `GET /v1/instances/{id}` until `check` holds (connector reports are applied by a background task).
async fn instance_until(app: &TestApp, id: &str, check: impl Fn(&Value) -> bool) -> Value {
    for _ in 0..500 {
        let (status, body) = app.get(&format!("/v1/instances/{id}")).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        if check(&body) {
            return body;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("instance {id} never reached the expected state");
}

/// The event log's instance events of `event_type`, once there are `count` of them.
async fn instance_events(app: &TestApp, event_type: &str, count: usize) -> Vec<Value> {
    for _ in 0..500 {
        let events: Vec<Value> =
            app.all_pages("/v1/events?limit=200").await.into_iter().filter(|e| e["type"] == event_type).collect();
        if events.len() >= count {
            return events;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("fewer than {count} {event_type} events were written");
}

async fn set_unreachable(app: &TestApp, unreachable: bool) {
    let (status, body) = app.put("/v1/sandbox/faults", json!({"unreachable": unreachable})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["unreachable"], unreachable, "{body}");
}

/// A dialect's answer as JSON, with the headers `headers` adds.
async fn dialect_get(app: &TestApp, path: &str, headers: &[(&str, &str)]) -> Value {
    let mut request = app.client.get(app.url(path));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = request.send().await.expect("request");
    assert_eq!(response.status(), StatusCode::OK, "{path}");
    response.json().await.expect("JSON")
}

#[tokio::test]
async fn an_unreachable_network_is_told_everywhere_once_per_outage_until_it_comes_back() {
    // Arrange: the bootstrap instance and one more, both connected.
    let app = spawn_app().await;
    let Credentials { id, token, phone } = app.new_instance(json!({"name": "Front desk"})).await;
    let why = "the sandbox network cannot be reached (the `unreachable` fault is on)";

    // Act: the network goes away; saying so again changes nothing.
    set_unreachable(&app, true).await;
    set_unreachable(&app, true).await;

    // Assert: the native state, with the error in words and when the outage began.
    let down = instance_until(&app, &id, |b| b["state"]["status"] == "unreachable").await;
    assert_eq!(
        down["state"],
        json!({"status": "unreachable", "error": why, "since": START.to_rfc3339(), "next_retry_at": null})
    );
    let reason = format!("WhatsApp cannot be reached (since {}): {why}; retrying", START.to_rfc3339());

    // Each dialect's state call, in its own words.
    let green = dialect_get(&app, &format!("/waInstance{id}/getStateInstance/{token}"), &[]).await;
    assert_eq!(green, json!({"stateInstance": "starting"}));
    let green_qr = dialect_get(&app, &format!("/waInstance{id}/qr/{token}"), &[]).await;
    assert_eq!(green_qr["type"], "error", "{green_qr}");
    assert!(green_qr["message"].as_str().unwrap().contains(&reason), "{green_qr}");
    let key = app.api_key.as_str();
    let zapi = dialect_get(&app, &format!("/instances/{id}/token/{token}/status"), &[("Client-Token", key)]).await;
    assert_eq!(zapi["connected"], false, "{zapi}");
    assert_eq!(zapi["error"], format!("You are not connected: {reason}"));
    let twochat =
        dialect_get(&app, &format!("/open/whatsapp/channel/WPN{id}/status"), &[("X-User-API-Key", key)]).await;
    assert_eq!(twochat["connection_status"], "D", "{twochat}");
    let wawp = dialect_get(&app, &format!("/v2/session/info?instance_id={id}&access_token={token}"), &[]).await;
    assert_eq!(wawp["status"], "STARTING", "{wawp}");

    // No QR code, and why; a call that needs the network fails at once, saying why.
    let (status, qr) = app.get(&format!("/v1/instances/{id}/qr")).await;
    assert_eq!((status, &qr["code"]), (StatusCode::CONFLICT, &json!("not_pairing")), "{qr}");
    assert_eq!(qr["detail"], format!("no QR code: {reason}"));
    let (status, refused) = app
        .post(
            "/v1/groups",
            json!({"instance_id": id.parse::<i64>().unwrap(), "subject": "Standup", "participants": ["+12015550199"]}),
        )
        .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{refused}");
    assert!(refused["detail"].as_str().unwrap().contains(&reason), "{refused}");

    // The health summary counts both, and lists each with its error.
    let (status, health) = app.get("/v1/health").await;
    assert_eq!(status, StatusCode::OK, "{health}");
    assert_eq!((&health["instances"], &health["by_state"]["unreachable"]), (&json!(2), &json!(2)), "{health}");
    assert_eq!(health["by_state"]["connected"], 0);
    assert_eq!(health["by_kind"]["sandbox"]["unreachable"], 2);
    assert_eq!(health["by_kind"]["whatsapp"]["unreachable"], 0, "every kind and state is listed: {health}");
    let listed: Vec<&Value> = health["not_connected"].as_array().unwrap().iter().collect();
    assert_eq!(listed.len(), 2, "{health}");
    let front_desk = listed.iter().find(|i| i["name"] == "Front desk").expect("listed");
    assert_eq!(front_desk["phone"], format!("+{phone}"));
    assert_eq!(front_desk["state"]["error"], why);

    // Act: the network comes back.
    set_unreachable(&app, false).await;

    // Assert: connected again, and one `instance.unreachable` per instance for the whole outage, before its end.
    instance_until(&app, &id, |b| b["state"]["status"] == "connected").await;
    let connected = instance_events(&app, "instance.connected", 2).await;
    let unreachable = instance_events(&app, "instance.unreachable", 2).await;
    assert_eq!(unreachable.len(), 2, "one per instance: {unreachable:?}");
    assert_eq!(connected.len(), 2, "{connected:?}");
    for event in &unreachable {
        assert_eq!(event["body"]["data"]["state"]["error"], why, "{event}");
        let back = connected.iter().find(|c| c["instance_id"] == event["instance_id"]).expect("each comes back");
        assert!(event["seq"].as_i64() < back["seq"].as_i64(), "{event} before {back}");
    }
    let (_, health) = app.get("/v1/health").await;
    assert_eq!((&health["by_state"]["connected"], &health["not_connected"]), (&json!(2), &json!([])), "{health}");
}

#[tokio::test]
async fn the_instance_gauge_counts_unreachable_numbers() {
    // Arrange
    let app = spawn_app().await;
    let id = app.instance_id.to_string();

    // Act
    set_unreachable(&app, true).await;
    instance_until(&app, &id, |b| b["state"]["status"] == "unreachable").await;
    let response = app.client.get(app.url("/metrics")).bearer_auth(&app.api_key).send().await.unwrap();
    let text = response.text().await.unwrap();

    // Assert
    let line = |state: &str| {
        text.lines()
            .find(|l| l.starts_with("convene_instances{") && l.contains(r#"kind="sandbox""#) && l.contains(state))
            .unwrap_or_else(|| panic!("no {state} line:\n{text}"))
            .to_owned()
    };
    assert!(line(r#"state="unreachable""#).ends_with(" 1"), "{text}");
    assert!(line(r#"state="connected""#).ends_with(" 0"), "{text}");
}
