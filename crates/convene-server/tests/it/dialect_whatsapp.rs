//! A real number (`kind: whatsapp`) through each provider dialect, offline: its state in every dialect's status call,
//! its pairing QR code where the provider serves one, and group creation refused at once with a 503 in the dialect's
//! error shape while it is not connected. WhatsApp is never dialled; what it would report (a QR code, a pairing, a
//! ban, a logout) goes through the connector's own event handling.

use std::time::{Duration, Instant};

use base64::Engine as _;
use convene_core::{InstanceId, PhoneNumber};
use convene_whatsapp::SimulatedEvent;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{TestApp, read, spawn_app};

/// Shaped like a WhatsApp pairing payload: ref, noise key, identity key, advertising secret.
const QR: &str = "2@Xb9Q0xk2bVg7cC7nA1,bFzJ4Vm2x3lq+9qxwAbC=,Q2h5cWq0q1cZ=,7yX9c5X2c0MQ=";
/// The number the phone pairs as.
const PAIRED: &str = "+12015550188";
/// A one-hour ban from the test clock's start.
const BAN_END: &str = "2026-11-23T01:00:00Z";

fn simulate(app: &TestApp, id: InstanceId, event: SimulatedEvent) {
    app.service.whatsapp().simulate(id, event).expect("a whatsapp instance");
}

fn qr_code() -> SimulatedEvent {
    SimulatedEvent::Qr { code: QR.into(), valid_for: Duration::from_secs(20) }
}

fn ban() -> SimulatedEvent {
    SimulatedEvent::TemporaryBan { lasting: Duration::from_secs(3600) }
}

/// Polls the native API until the instance satisfies `check` (pairings and restarts are applied in the background).
async fn native_until(app: &TestApp, id: InstanceId, check: impl Fn(&Value) -> bool) -> Value {
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

/// Pairs the instance as `PAIRED` without connecting it, and waits until the number is recorded.
async fn pair(app: &TestApp, id: InstanceId) {
    simulate(app, id, SimulatedEvent::Paired { phone: PhoneNumber::parse(PAIRED).unwrap() });
    native_until(app, id, |b| b["phone"] == PAIRED).await;
}

/// After the phone unlinks the device the instance is `logged_out` until its fresh session has loaded (offline it
/// then sits `disconnected`); `read` must show one of the two, then the second.
async fn logged_out_then_restarted<F, Fut>(app: &TestApp, id: InstanceId, read: F, logged_out: Value, restarted: Value)
where
    F: Fn() -> Fut,
    Fut: Future<Output = Value>,
{
    simulate(app, id, SimulatedEvent::LoggedOut);
    let first = read().await;
    assert!(first == logged_out || first == restarted, "{first}");
    native_until(app, id, |b| b["state"]["status"] == "disconnected").await;
    assert_eq!(read().await, restarted);
}

fn base64_decode(text: &str) -> Vec<u8> {
    base64::engine::general_purpose::STANDARD.decode(text).expect("base64")
}

/// Reads a PNG with the `png` crate and the QR code in it with rqrr: independent of our encoder.
fn scan_png(bytes: &[u8]) -> String {
    let mut decoder = png::Decoder::new(std::io::Cursor::new(bytes));
    decoder.set_transformations(png::Transformations::EXPAND);
    let mut reader = decoder.read_info().expect("a PNG");
    let mut pixels = vec![0; reader.output_buffer_size().expect("buffer size")];
    let frame = reader.next_frame(&mut pixels).expect("a frame");
    assert_eq!((frame.color_type, frame.bit_depth), (png::ColorType::Grayscale, png::BitDepth::Eight));
    let (width, height, line) = (frame.width as usize, frame.height as usize, frame.line_size);
    let mut image = rqrr::PreparedImage::prepare_from_greyscale(width, height, |x, y| pixels[y * line + x]);
    let grids = image.detect_grids();
    assert_eq!(grids.len(), 1, "one QR code in the PNG");
    grids[0].decode().expect("the QR code decodes").1
}

/// A `data:image/png;base64,…` URI scanned back to its payload.
fn scan_data_uri(uri: &Value) -> String {
    let uri = uri.as_str().expect("a string");
    let data = uri.strip_prefix("data:image/png;base64,").unwrap_or_else(|| panic!("not a PNG data URI: {uri}"));
    scan_png(&base64_decode(data))
}

/// A generous bound that only waiting for a connection would break.
fn assert_at_once(started: Instant) {
    assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());
}

// ---------- Green API ----------

struct Green<'a> {
    app: &'a TestApp,
    id: InstanceId,
    token: String,
}

impl Green<'_> {
    async fn call(&self, verb: Method, method: &str, body: Option<Value>) -> (StatusCode, Value) {
        let url = self.app.url(&format!("/waInstance{}/{method}/{}", self.id, self.token));
        let mut request = self.app.client.request(verb, url);
        if let Some(body) = body {
            request = request.json(&body);
        }
        read(request.send().await.expect("request")).await
    }

    async fn get(&self, method: &str) -> (StatusCode, Value) {
        self.call(Method::GET, method, None).await
    }

    async fn state(&self) -> Value {
        let (status, body) = self.get("getStateInstance").await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body
    }

    async fn qr(&self) -> Value {
        let (status, body) = self.get("qr").await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body
    }
}

#[tokio::test]
async fn green_shows_a_real_numbers_state_and_its_qr_code_as_a_png() {
    // Arrange
    let app = spawn_app().await;
    let (id, token) = app.new_whatsapp_instance().await;
    let green = Green { app: &app, id, token };

    // Act / Assert: a fresh instance has no QR code and says why.
    assert_eq!(green.state().await, json!({"stateInstance": "starting"}));
    let qr = green.qr().await;
    assert_eq!(qr["type"], "error", "{qr}");
    let message = qr["message"].as_str().unwrap();
    assert!(message.contains("disconnected") && message.contains("starting"), "{qr}");

    // WhatsApp hands out a QR code: a base64 PNG that scans back to the payload.
    simulate(&app, id, qr_code());
    assert_eq!(green.state().await, json!({"stateInstance": "notAuthorized"}));
    let qr = green.qr().await;
    assert_eq!(qr["type"], "qrCode", "{qr}");
    assert_eq!(scan_png(&base64_decode(qr["message"].as_str().unwrap())), QR);

    // Paired and connected.
    pair(&app, id).await;
    simulate(&app, id, SimulatedEvent::Connected);
    assert_eq!(green.state().await, json!({"stateInstance": "authorized"}));
    assert_eq!(green.get("getStatusInstance").await, (StatusCode::OK, json!({"statusInstance": "online"})));
    assert_eq!(green.qr().await["type"], "alreadyLogged");
    let (_, wa) = green.get("getWaSettings").await;
    assert_eq!(wa["phone"], PAIRED.trim_start_matches('+'));

    // Banned: `blocked`; Green's state has no room for the end, the qr error says it.
    simulate(&app, id, ban());
    assert_eq!(green.state().await, json!({"stateInstance": "blocked"}));
    let qr = green.qr().await;
    assert_eq!(qr["type"], "error");
    assert!(qr["message"].as_str().unwrap().contains(BAN_END), "{qr}");

    // Logged out from the phone: not authorized, then starting again with a fresh session.
    let read = || async { green.state().await };
    let (logged_out, restarted) = (json!({"stateInstance": "notAuthorized"}), json!({"stateInstance": "starting"}));
    logged_out_then_restarted(&app, id, read, logged_out, restarted).await;
}

#[tokio::test]
async fn green_gives_a_phone_code_only_over_a_connection_and_logs_a_real_number_out() {
    // Arrange
    let app = spawn_app().await;
    let (id, token) = app.new_whatsapp_instance().await;
    let green = Green { app: &app, id, token };

    // Act / Assert: a phone code needs the connection to WhatsApp.
    let started = Instant::now();
    let (status, body) =
        green.call(Method::POST, "getAuthorizationCode", Some(json!({"phoneNumber": 12015550188_u64}))).await;
    assert_at_once(started);
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!((&body["code"], &body["description"]), (&json!(503), &json!("instance account not authorized")));
    let (status, body) =
        green.call(Method::POST, "getAuthorizationCode", Some(json!({"phoneNumber": "call me"}))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(body["message"].as_str().unwrap().contains("'phoneNumber'"), "{body}");

    // Logging out unlinks the number; the instance starts a new pairing.
    simulate(&app, id, SimulatedEvent::Connected);
    assert_eq!(green.get("logout").await, (StatusCode::OK, json!({"isLogout": true})));
    assert_eq!(green.state().await, json!({"stateInstance": "starting"}));

    // A sandbox instance cannot log out.
    let sandbox = app.new_instance(json!({})).await;
    let sandbox = Green { app: &app, id: InstanceId(sandbox.id.parse().unwrap()), token: sandbox.token };
    let (status, body) = sandbox.get("logout").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
}

#[tokio::test]
async fn green_create_group_on_a_number_that_is_not_connected_is_a_503_at_once() {
    // Arrange
    let app = spawn_app().await;
    let (id, token) = app.new_whatsapp_instance().await;
    let green = Green { app: &app, id, token };

    // Act
    let started = Instant::now();
    let body = json!({"groupName": "Incident 4711", "chatIds": ["12015550102@c.us"]});
    let (status, answer) = green.call(Method::POST, "createGroup", Some(body)).await;

    // Assert
    assert_at_once(started);
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{answer}");
    assert_eq!((&answer["code"], &answer["description"]), (&json!(503), &json!("instance account not authorized")));
    assert!(answer["message"].as_str().unwrap().contains("not connected"), "{answer}");
}

// ---------- Z-API ----------

struct Zapi<'a> {
    app: &'a TestApp,
    id: InstanceId,
    token: String,
}

impl Zapi<'_> {
    async fn call(&self, verb: Method, method: &str, body: Option<Value>) -> (StatusCode, Value) {
        let url = self.app.url(&format!("/instances/{}/token/{}/{method}", self.id, self.token));
        let mut request = self.app.client.request(verb, url).header("Client-Token", &self.app.api_key);
        if let Some(body) = body {
            request = request.json(&body);
        }
        read(request.send().await.expect("request")).await
    }

    async fn get(&self, method: &str) -> (StatusCode, Value) {
        self.call(Method::GET, method, None).await
    }

    async fn status(&self) -> Value {
        let (status, body) = self.get("status").await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body
    }
}

/// Z-API's status when not connected: the documented `You are not connected` and why.
fn zapi_not_connected(status: &Value, why: &str) {
    assert_eq!((&status["connected"], &status["smartphoneConnected"]), (&json!(false), &json!(false)), "{status}");
    let error = status["error"].as_str().unwrap();
    assert!(error.starts_with("You are not connected: ") && error.contains(why), "{status}");
}

#[tokio::test]
async fn z_api_status_and_qr_code_follow_a_real_numbers_pairing_connection_and_ban() {
    // Arrange
    let app = spawn_app().await;
    let (id, token) = app.new_whatsapp_instance().await;
    let zapi = Zapi { app: &app, id, token };

    // Act / Assert: fresh, not connected, no QR code yet.
    zapi_not_connected(&zapi.status().await, "down");
    let (status, body) = zapi.get("qr-code").await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["error"], "CONFLICT");

    // A QR code: the payload itself, and as a PNG data URI.
    simulate(&app, id, qr_code());
    zapi_not_connected(&zapi.status().await, "not paired");
    assert_eq!(zapi.get("qr-code").await, (StatusCode::OK, json!({"value": QR})));
    let (status, image) = zapi.get("qr-code/image").await;
    assert_eq!(status, StatusCode::OK, "{image}");
    assert_eq!(scan_data_uri(&image["value"]), QR);
    // A phone code needs the connection to WhatsApp.
    let started = Instant::now();
    let (status, body) = zapi.get("phone-code/12015550188").await;
    assert_at_once(started);
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["error"], "SERVICE_UNAVAILABLE");

    // Connected.
    pair(&app, id).await;
    simulate(&app, id, SimulatedEvent::Connected);
    assert_eq!(
        zapi.status().await,
        json!({"connected": true, "error": "You are already connected", "smartphoneConnected": true})
    );
    assert_eq!(zapi.get("qr-code/image").await.0, StatusCode::CONFLICT, "no QR code once connected");

    // Banned: the error says until when.
    simulate(&app, id, ban());
    zapi_not_connected(&zapi.status().await, BAN_END);

    // Logged out from the phone, then a fresh session.
    simulate(&app, id, SimulatedEvent::LoggedOut);
    zapi_not_connected(&zapi.status().await, "");
    native_until(&app, id, |b| b["state"]["status"] == "disconnected").await;
    zapi_not_connected(&zapi.status().await, "down");

    // `disconnect` logs the number out.
    assert_eq!(zapi.get("disconnect").await, (StatusCode::OK, json!({"value": true})));
}

#[tokio::test]
async fn z_api_create_group_on_a_number_that_is_not_connected_is_a_503_at_once() {
    // Arrange
    let app = spawn_app().await;
    let (id, token) = app.new_whatsapp_instance().await;
    let zapi = Zapi { app: &app, id, token };

    // Act
    let started = Instant::now();
    let body = json!({"autoInvite": true, "groupName": "Incident 4711", "phones": ["12015550102"]});
    let (status, answer) = zapi.call(Method::POST, "create-group", Some(body)).await;

    // Assert
    assert_at_once(started);
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{answer}");
    assert_eq!(answer["error"], "SERVICE_UNAVAILABLE");
    assert!(answer["message"].as_str().unwrap().contains("not connected"), "{answer}");
}

// ---------- 2Chat ----------

async fn twochat(app: &TestApp, verb: Method, path: &str, body: Option<Value>) -> (StatusCode, Value) {
    let mut request = app.client.request(verb, app.url(path)).header("X-User-API-Key", &app.api_key);
    if let Some(body) = body {
        request = request.json(&body);
    }
    read(request.send().await.expect("request")).await
}

/// The instance's entry in `get-numbers`.
async fn listed_number(app: &TestApp, id: InstanceId) -> Value {
    let (status, body) = twochat(app, Method::GET, "/open/whatsapp/get-numbers", None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["success"], true);
    let numbers = body["numbers"].as_array().expect("numbers");
    numbers.iter().find(|n| n["uuid"] == format!("WPN{id}")).cloned().unwrap_or_else(|| panic!("WPN{id} in {body}"))
}

async fn channel_status(app: &TestApp, number: &str) -> Value {
    let (status, body) = twochat(app, Method::GET, &format!("/open/whatsapp/channel/{number}/status"), None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["success"], true);
    body
}

#[tokio::test]
async fn two_chat_lists_a_real_number_with_its_connection_status_and_qr_code() {
    // Arrange
    let app = spawn_app().await;
    let (id, _) = app.new_whatsapp_instance().await;
    let uuid = format!("WPN{id}");

    // Act / Assert: listed before it has a number, reachable by its uuid only.
    let listed = listed_number(&app, id).await;
    assert_eq!((&listed["phone_number"], &listed["connection_status"]), (&Value::Null, &json!("D")), "{listed}");
    assert_eq!(listed["channel_type"], "WW");
    assert_eq!(channel_status(&app, &uuid).await, json!({"success": true, "connection_status": "D", "events": []}));

    // A QR code: the raw payload, as 2Chat gives it.
    simulate(&app, id, qr_code());
    let status = channel_status(&app, &uuid).await;
    assert_eq!((&status["connection_status"], &status["qr_code"]), (&json!("D"), &json!(QR)), "{status}");

    // Paired: the number is listed and names the channel too; connected is `C`.
    pair(&app, id).await;
    assert_eq!(listed_number(&app, id).await["phone_number"], PAIRED);
    simulate(&app, id, SimulatedEvent::Connected);
    assert_eq!(channel_status(&app, PAIRED).await["connection_status"], "C");
    assert_eq!(listed_number(&app, id).await["connection_status"], "C");
    let status = channel_status(&app, &uuid).await;
    assert!(status.get("qr_code").is_none(), "{status}");

    // Banned: `F` (2Chat's shape has no room for the end).
    simulate(&app, id, ban());
    assert_eq!(channel_status(&app, &uuid).await["connection_status"], "F");

    // Logged out, then a fresh session: disconnected either way.
    simulate(&app, id, SimulatedEvent::LoggedOut);
    assert_eq!(channel_status(&app, &uuid).await["connection_status"], "D");
    native_until(&app, id, |b| b["state"]["status"] == "disconnected").await;
    assert_eq!(channel_status(&app, &uuid).await["connection_status"], "D");

    // The sandbox instance is connected; an unknown number is a 404.
    let sandbox = channel_status(&app, &app.instance_phone).await;
    assert_eq!(sandbox["connection_status"], "C");
    let (status, body) = twochat(&app, Method::GET, "/open/whatsapp/channel/WPN1000000001/status", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert_eq!(body["success"], false);
}

#[tokio::test]
async fn two_chat_create_group_on_a_number_that_is_not_connected_is_a_503_at_once() {
    // Arrange: paired (so `from_number` names it) but not connected.
    let app = spawn_app().await;
    let (id, _) = app.new_whatsapp_instance().await;
    pair(&app, id).await;

    // Act
    let started = Instant::now();
    let body = json!({"from_number": PAIRED, "group": {"name": "Incident 4711", "participants": ["+12015550102"]}});
    let (status, answer) = twochat(&app, Method::POST, "/open/whatsapp/group/create", Some(body)).await;

    // Assert
    assert_at_once(started);
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{answer}");
    assert_eq!((&answer["success"], &answer["error"]), (&json!(false), &json!("instance_not_connected")));
    assert!(answer["message"].as_str().unwrap().contains("not connected"), "{answer}");
}

// ---------- Wawp ----------

struct Wawp<'a> {
    app: &'a TestApp,
    id: InstanceId,
    token: String,
}

impl Wawp<'_> {
    async fn call(&self, verb: Method, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        let url = self.app.url(&format!("{path}?instance_id={}&access_token={}", self.id, self.token));
        let mut request = self.app.client.request(verb, url);
        if let Some(body) = body {
            request = request.json(&body);
        }
        read(request.send().await.expect("request")).await
    }

    async fn session(&self) -> Value {
        let (status, body) = self.call(Method::GET, "/v2/session/info", None).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body
    }

    async fn status(&self) -> Value {
        self.session().await["status"].clone()
    }
}

#[tokio::test]
async fn wawp_session_status_and_qr_code_follow_a_real_numbers_pairing_connection_and_ban() {
    // Arrange
    let app = spawn_app().await;
    let (id, token) = app.new_whatsapp_instance().await;
    let wawp = Wawp { app: &app, id, token };

    // Act / Assert: fresh, no QR code yet.
    let session = wawp.session().await;
    assert_eq!((&session["status"], &session["me"]), (&json!("STARTING"), &Value::Null), "{session}");
    assert!(session.get("qr").is_none(), "{session}");
    let (status, body) = wawp.call(Method::GET, "/v2/auth/qr-image", None).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["statusCode"], 409);

    // A QR code: in the session, as an image, and raw.
    simulate(&app, id, qr_code());
    let session = wawp.session().await;
    assert_eq!(session["status"], "SCAN_QR_CODE");
    assert_eq!(scan_data_uri(&session["qr"]), QR);
    let (status, image) = wawp.call(Method::POST, "/v2/auth/qr-image", None).await;
    assert_eq!(status, StatusCode::OK, "{image}");
    assert_eq!(scan_data_uri(&image["qr"]), QR);
    let (status, raw) = wawp.call(Method::GET, "/v2/auth/qr", None).await;
    assert_eq!((status, &raw["mimetype"]), (StatusCode::OK, &json!("application/json")), "{raw}");
    let decoded: Value = serde_json::from_slice(&base64_decode(raw["data"].as_str().unwrap())).unwrap();
    assert_eq!(decoded, json!({"value": QR, "expiry": 1_795_392_020_000_u64}));
    let (status, png) = wawp.call(Method::GET, "/v2/auth/qr", Some(json!({"format": "image"}))).await;
    assert_eq!((status, &png["mimetype"]), (StatusCode::OK, &json!("image/png")), "{png}");
    assert_eq!(scan_png(&base64_decode(png["data"].as_str().unwrap())), QR);
    // A phone code needs the connection to WhatsApp.
    let started = Instant::now();
    let (status, body) =
        wawp.call(Method::POST, "/v2/auth/request-code", Some(json!({"phone_number": "12015550188"}))).await;
    assert_at_once(started);
    assert_eq!((status, &body["statusCode"]), (StatusCode::SERVICE_UNAVAILABLE, &json!(503)), "{body}");

    // Connected: WORKING, as the paired number.
    pair(&app, id).await;
    simulate(&app, id, SimulatedEvent::Connected);
    let session = wawp.session().await;
    assert_eq!(session["status"], "WORKING");
    assert_eq!(session["me"]["id"], "12015550188@c.us");
    assert!(session.get("qr").is_none(), "{session}");

    // Banned: FAILED (WAHA's status has no room for the end).
    simulate(&app, id, ban());
    assert_eq!(wawp.status().await, "FAILED");

    // Logged out from the phone: FAILED, then STARTING with a fresh session.
    let read = || async { wawp.status().await };
    logged_out_then_restarted(&app, id, read, json!("FAILED"), json!("STARTING")).await;

    // Logging out through Wawp answers the session after it.
    let (status, session) = wawp.call(Method::POST, "/v2/session/logout", None).await;
    assert_eq!((status, &session["status"]), (StatusCode::OK, &json!("STARTING")), "{session}");
}

#[tokio::test]
async fn wawp_create_group_on_a_number_that_is_not_connected_is_a_503_at_once() {
    // Arrange
    let app = spawn_app().await;
    let (id, token) = app.new_whatsapp_instance().await;
    let wawp = Wawp { app: &app, id, token };

    // Act
    let started = Instant::now();
    let body = json!({"name": "Incident 4711", "participants": [{"id": "12015550102@c.us"}]});
    let (status, answer) = wawp.call(Method::POST, "/v2/groups", Some(body)).await;

    // Assert
    assert_at_once(started);
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{answer}");
    assert_eq!((&answer["statusCode"], &answer["error"]), (&json!(503), &json!("Service Unavailable")));
    assert!(answer["message"].as_str().unwrap().contains("not connected"), "{answer}");
}

#[tokio::test]
async fn creations_refused_because_the_number_is_not_connected_use_no_pacing_budget_in_any_dialect() {
    // Arrange: a real number, paced as real numbers are (one group per 5 minutes), that is not connected.
    let app = spawn_app().await;
    let (id, token) = app.new_whatsapp_instance().await;
    let green = Green { app: &app, id, token: token.clone() };
    let zapi = Zapi { app: &app, id, token: token.clone() };
    let wawp = Wawp { app: &app, id, token };

    // Act: four creations in a row, through four APIs.
    let native = app
        .post("/v1/groups", json!({"instance_id": id.0, "subject": "Row 1", "participants": ["+12015550102"]}))
        .await;
    let green = green
        .call(Method::POST, "createGroup", Some(json!({"groupName": "Row 2", "chatIds": ["12015550102@c.us"]})))
        .await;
    let zapi =
        zapi.call(Method::POST, "create-group", Some(json!({"groupName": "Row 3", "phones": ["12015550102"]}))).await;
    let wawp = wawp
        .call(Method::POST, "/v2/groups", Some(json!({"name": "Row 4", "participants": [{"id": "12015550102@c.us"}]})))
        .await;

    // Assert: each is the 503 of its API, none a 429; the instance may still create at once.
    for (api, (status, body)) in [("native", &native), ("Green", &green), ("Z-API", &zapi), ("Wawp", &wawp)] {
        assert_eq!(*status, StatusCode::SERVICE_UNAVAILABLE, "{api}: {body}");
    }
    let (_, instance) = app.get(&format!("/v1/instances/{id}")).await;
    assert_eq!(instance["creation"]["next_creation_at"], "2026-11-23T00:00:00Z", "{instance}");
}
