//! Real-number instances through the native API, offline: WhatsApp is never dialled (`whatsapp.connect = false`), and
//! what WhatsApp would report (a QR code, a pairing, a ban) is delivered through the connector's own event handling.

use std::sync::Arc;
use std::time::{Duration, Instant};

use convene_core::{Connector as _, InstanceId, PhoneNumber, Timestamp};
use convene_server::AppState;
use convene_whatsapp::SimulatedEvent;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{START, TestApp, spawn_app, spawn_app_with};

const QR: &str = "2@Xb9Q0xk2bVg7cC7nA1,bFzJ4Vm2x3lq+9qxwAbC=,Q2h5cWq0q1cZ=,7yX9c5X2c0MQ=";

/// A new `whatsapp` instance, once its session has loaded (offline it then sits `disconnected`).
async fn new_whatsapp_instance(app: &TestApp) -> (InstanceId, Value) {
    let (status, body) = app.post("/v1/instances", json!({"kind": "whatsapp", "name": "Front desk"})).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let id = InstanceId(body["id"].as_i64().expect("id"));
    instance_until(app, id, |b| b["state"]["status"] == "disconnected").await;
    (id, body)
}

fn simulate(app: &TestApp, id: InstanceId, event: SimulatedEvent) {
    app.service.whatsapp().simulate(id, event).expect("a whatsapp instance");
}

/// Polls the instance until `check` holds (events from the connector are applied by a background task).
async fn instance_until(app: &TestApp, id: InstanceId, check: impl Fn(&Value) -> bool) -> Value {
    for _ in 0..200 {
        let (status, body) = app.get(&format!("/v1/instances/{}", id.0)).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        if check(&body) {
            return body;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("the instance never reached the expected state");
}

#[tokio::test]
async fn a_whatsapp_instance_is_created_unpaired_and_takes_no_phone() {
    let app = spawn_app().await;
    let (id, body) = new_whatsapp_instance(&app).await;
    assert_eq!(body["kind"], "whatsapp");
    assert_eq!(body["phone"], Value::Null, "known once paired");
    assert!(body["token"].as_str().is_some_and(|t| !t.is_empty()));
    let (_, body) = app.get(&format!("/v1/instances/{}", id.0)).await;
    assert_eq!(body["creation"]["pacing"]["min_interval_secs"], 300, "real numbers get the real-number pacing");

    let (status, refused) = app.post("/v1/instances", json!({"kind": "whatsapp", "phone": "+12015550177"})).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{refused}");
    assert_eq!(refused["fields"][0]["field"], "phone");
}

#[tokio::test]
async fn the_qr_code_is_served_raw_as_png_and_as_svg_while_it_is_valid() {
    let app = spawn_app().await;
    let (id, _) = new_whatsapp_instance(&app).await;
    let qr_path = format!("/v1/instances/{}/qr", id.0);

    let (status, body) = app.get(&qr_path).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["code"], "not_pairing");

    simulate(&app, id, SimulatedEvent::Qr { code: QR.into(), valid_for: Duration::from_secs(20) });
    let (status, body) = app.get(&qr_path).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["code"], QR);
    assert_eq!(body["expires_at"], "2026-11-23T00:00:20Z");
    let shown = instance_until(&app, id, |b| b["state"]["status"] == "pairing").await;
    assert_eq!(shown["phone"], Value::Null);

    let png = raw(&app, &format!("{qr_path}?format=png"), "image/png").await;
    assert_eq!(scan_png(&png), QR, "the PNG scans back to the payload");
    let svg = String::from_utf8(raw(&app, &format!("{qr_path}?format=svg"), "image/svg+xml").await).unwrap();
    assert!(svg.contains("<svg") && svg.contains("viewBox"), "{svg}");

    let (status, body) = app.get(&format!("{qr_path}?format=gif")).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(body["fields"][0]["message"].as_str().unwrap().contains("gif"), "{body}");

    app.clock.advance(Duration::from_secs(21));
    let (status, body) = app.get(&qr_path).await;
    assert_eq!(status, StatusCode::CONFLICT, "an expired code is not offered: {body}");
}

async fn raw(app: &TestApp, path: &str, content_type: &str) -> Vec<u8> {
    let res = app.client.get(app.url(path)).bearer_auth(&app.api_key).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()["content-type"], content_type);
    res.bytes().await.unwrap().to_vec()
}

fn scan_png(bytes: &[u8]) -> String {
    let decoder = png::Decoder::new(std::io::Cursor::new(bytes));
    let mut reader = decoder.read_info().unwrap();
    let mut pixels = vec![0; reader.output_buffer_size().unwrap()];
    let frame = reader.next_frame(&mut pixels).unwrap();
    let (width, height) = (frame.width as usize, frame.height as usize);
    let row_bytes = frame.line_size;
    let bit_depth = frame.bit_depth as usize;
    let luma = |x: usize, y: usize| -> u8 {
        let byte = pixels[y * row_bytes + x * bit_depth / 8];
        if bit_depth == 8 {
            byte
        } else if byte >> (7 - x % 8) & 1 == 1 {
            255
        } else {
            0
        }
    };
    let mut image = rqrr::PreparedImage::prepare_from_greyscale(width, height, luma);
    let grids = image.detect_grids();
    assert_eq!(grids.len(), 1, "one QR code in the PNG");
    grids[0].decode().unwrap().1
}

#[tokio::test]
async fn pairing_records_the_number_and_connected_is_the_state() {
    let app = spawn_app().await;
    let (id, _) = new_whatsapp_instance(&app).await;
    simulate(&app, id, SimulatedEvent::Qr { code: QR.into(), valid_for: Duration::from_secs(20) });
    simulate(&app, id, SimulatedEvent::Paired { phone: PhoneNumber::parse("+12015550188").unwrap() });
    simulate(&app, id, SimulatedEvent::Connected);

    let body = instance_until(&app, id, |b| b["phone"] == "+12015550188").await;
    assert_eq!(body["state"]["status"], "connected");
    let (status, body) = app.get(&format!("/v1/instances/{}/qr", id.0)).await;
    assert_eq!(status, StatusCode::CONFLICT, "no QR once paired: {body}");
    assert!(body["detail"].as_str().unwrap().contains("connected"), "{body}");

    simulate(&app, id, SimulatedEvent::Disconnected);
    instance_until(&app, id, |b| b["state"]["status"] == "disconnected").await;
}

#[tokio::test]
async fn a_temporary_ban_shows_its_end_and_pauses_creation_until_then() {
    let app = spawn_app().await;
    let (id, _) = new_whatsapp_instance(&app).await;
    simulate(&app, id, SimulatedEvent::Connected);
    simulate(&app, id, SimulatedEvent::TemporaryBan { lasting: Duration::from_secs(3600) });

    let body = instance_until(&app, id, |b| !b["creation"]["paused_until"].is_null()).await;
    assert_eq!(body["state"], json!({"status": "temporarily_banned", "until": "2026-11-23T01:00:00Z"}));
    assert_eq!(body["creation"]["paused_until"], "2026-11-23T01:00:00Z");
    assert_eq!(body["creation"]["pause_reason"], "temporarily banned by WhatsApp (code 103)");

    let res = app
        .client
        .post(app.url("/v1/groups"))
        .bearer_auth(&app.api_key)
        .json(&json!({"instance_id": id.0, "subject": "Too soon", "participants": ["+12015550102"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS, "nothing is tried while banned");
    assert_eq!(res.headers()["retry-after"], "3600");
}

#[tokio::test]
async fn a_not_connected_instance_answers_503_at_once() {
    let app = spawn_app().await;
    let (id, _) = new_whatsapp_instance(&app).await;

    let started = Instant::now();
    let (status, body) = app
        .post("/v1/groups", json!({"instance_id": id.0, "subject": "Incident 4711", "participants": ["+12015550102"]}))
        .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["code"], "instance_not_connected");
    assert!(body["detail"].as_str().unwrap().contains("not connected"), "{body}");
    let (status, body) =
        app.post(&format!("/v1/instances/{}/pairing-code", id.0), json!({"phone_number": "+12015550188"})).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "a phone code needs the connection: {body}");
    // A generous bound that only waiting for a connection would break.
    assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());

    let (status, body) =
        app.post(&format!("/v1/instances/{}/pairing-code", id.0), json!({"phone_number": "call me"})).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["fields"][0]["field"], "phone_number");
}

#[tokio::test]
async fn logout_forgets_the_keys_and_starts_over_and_sandbox_instances_cannot() {
    let app = spawn_app().await;
    let (id, _) = new_whatsapp_instance(&app).await;
    // The device is kept in Convene's database, sealed; nothing is written beside it.
    let device = || async { app.state.store.device_keys(id, "device", None).await.unwrap() };
    let first = device().await;
    assert_eq!(first.len(), 1, "one device per instance");
    assert!(first[0].value.starts_with("v1."), "sealed: {}", first[0].value);
    assert!(!app.dir.path().join("whatsapp").exists(), "no file per number");

    let (status, body) = app.post(&format!("/v1/instances/{}/logout", id.0), json!({})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["phone"], Value::Null);
    // A new device (its identity is checked in convene-whatsapp's tests, which can open it).
    instance_until(&app, id, |b| b["state"]["status"] == "disconnected").await;
    assert_eq!(device().await.len(), 1);

    let (status, body) = app.post(&format!("/v1/instances/{}/logout", app.instance_id), json!({})).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["code"], "not_supported_for_instance");

    let res =
        app.client.delete(app.url(&format!("/v1/instances/{}", id.0))).bearer_auth(&app.api_key).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    assert!(device().await.is_empty(), "deleting the instance deletes its keys");
}

/// The real library on this machine, which cannot reach WhatsApp (no internet but package registries): its first
/// attempt fails at once and it keeps retrying on its backoff. Where WhatsApp does answer, a QR code comes instead and
/// the outage cannot be shown; the test says so and stops.
#[tokio::test]
async fn a_real_number_that_cannot_reach_whatsapp_says_so_within_ten_seconds_and_once_per_outage() {
    // Arrange: a server that dials WhatsApp.
    let app = spawn_app_with(|config| config.set("whatsapp.connect", true).unwrap()).await;
    let started = Instant::now();

    // Act
    let (status, created) = app.post("/v1/instances", json!({"kind": "whatsapp"})).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let id = InstanceId(created["id"].as_i64().expect("id"));
    let first = loop {
        let (_, body) = app.get(&format!("/v1/instances/{}", id.0)).await;
        if ["unreachable", "pairing"].contains(&body["state"]["status"].as_str().unwrap()) {
            break body;
        }
        assert!(started.elapsed() < Duration::from_secs(10), "still {} after 10 s", body["state"]);
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    if first["state"]["status"] == "pairing" {
        eprintln!("WhatsApp answered from this machine: there is no outage to observe here");
        return;
    }

    // Assert: the error in words, naming what could not be reached.
    let error = first["state"]["error"].as_str().unwrap();
    assert!(error.contains("web.whatsapp.com"), "{error}");
    let since = Timestamp::parse_rfc3339(first["state"]["since"].as_str().unwrap()).unwrap();
    assert!(since <= START && START.minus(Duration::from_secs(10)) < since, "{since}");
    // The library keeps trying on its backoff (1, 1, 2 … s): after the third failure the next attempt is 2 s away
    // (the test's clock stands still, so the times are exact).
    let third_failure_waits = START.plus(Duration::from_secs(2)).to_rfc3339();
    let later = loop {
        let (_, body) = app.get(&format!("/v1/instances/{}", id.0)).await;
        if body["state"]["next_retry_at"] == third_failure_waits.as_str() {
            break body;
        }
        assert!(started.elapsed() < Duration::from_secs(30), "no third failure in 30 s: {}", body["state"]);
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(later["state"]["status"], "unreachable");
    assert_eq!(later["state"]["since"], first["state"]["since"], "one outage");
    let (status, qr) = app.get(&format!("/v1/instances/{}/qr", id.0)).await;
    assert_eq!(status, StatusCode::CONFLICT, "{qr}");
    let detail = qr["detail"].as_str().unwrap();
    let latest = later["state"]["error"].as_str().unwrap();
    assert!(detail.starts_with("no QR code: WhatsApp cannot be reached") && detail.contains(latest), "{qr}");
    let outages: Vec<Value> = app
        .all_pages(&format!("/v1/events?instance_id={}", id.0))
        .await
        .into_iter()
        .filter(|e| e["type"] == "instance.unreachable")
        .collect();
    assert_eq!(outages.len(), 1, "three failed attempts, one event: {outages:?}");
    let (_, health) = app.get("/v1/health").await;
    assert_eq!(health["by_kind"]["whatsapp"]["unreachable"], 1, "{health}");

    // It stops by itself: deleting the instance ends its session, and the server shuts down promptly.
    let (status, _) = app.call(reqwest::Method::DELETE, &format!("/v1/instances/{}", id.0), None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    tokio::time::timeout(Duration::from_secs(10), app.stop()).await.expect("the server stops");
}

/// Issue 14: a number paired on one node is loaded by another from the shared database, without pairing. Node A
/// pairs it (the simulated pairing writes the linked device as the library's does) and stops; node B opens the same database, with its own data directory and the same sealing key.
#[tokio::test]
async fn a_number_paired_on_one_node_is_loaded_by_another_from_the_database_without_pairing() {
    let key = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
    let node_a = spawn_app_with(|config| config.webhooks.secret_key = key.to_owned()).await;
    let (id, _) = new_whatsapp_instance(&node_a).await;
    let phone = PhoneNumber::parse("+12015550177").unwrap();
    node_a.service.whatsapp().simulate_pairing(id, &phone).await.unwrap();
    instance_until(&node_a, id, |b| b["phone"] == "+12015550177").await;

    // Node A stops (on PostgreSQL it gives its numbers up to the other nodes).
    let other_dir = tempfile::tempdir().unwrap();
    let mut config = node_a.config.clone();
    config.data_dir = other_dir.path().to_owned();
    let clock = node_a.clock.clone();
    let (_dir_a, _database) = node_a.stop().await;
    let node_b = AppState::open(&config, Arc::new(clock)).await.unwrap();
    let number = node_b.service.whatsapp().open_and_wait(id).await.unwrap();
    assert_eq!(number.own_number().await, Some(phone), "node B loaded the linked device: no pairing");
    assert!(!other_dir.path().join("whatsapp").exists(), "from the database, not from a file");
    node_b.service.shutdown().await;
}
