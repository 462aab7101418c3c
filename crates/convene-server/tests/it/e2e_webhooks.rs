//! Webhooks end to end: events from the API and the network reach a real receiver on 127.0.0.1, signed (checked by
//! the `standardwebhooks` package from PyPI), in order per group, none lost while the receiver is down; retries,
//! `Retry-After`, disabling, replays, rotation, filters, outbound safety.

use std::collections::{HashMap, HashSet};
use std::process::Command;
use std::time::Duration;

use convene_core::Clock;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{TestApp, spawn_app};
use crate::receiver::{Answer, Received, Receiver};

/// Adds an endpoint; returns its id and secret.
async fn add_endpoint(app: &TestApp, body: Value) -> (String, String) {
    let (status, created) = app.post("/v1/webhooks", body).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    (created["id"].as_str().unwrap().to_owned(), created["secret"].as_str().unwrap().to_owned())
}

/// Every event in the log, oldest first.
async fn events(app: &TestApp) -> Vec<Value> {
    app.all_pages("/v1/events?limit=200").await
}

async fn deliveries(app: &TestApp, endpoint: &str, query: &str) -> Vec<Value> {
    app.all_pages(&format!("/v1/webhooks/{endpoint}/deliveries?limit=200{query}")).await
}

/// Runs the dispatcher, moving the clock to each next due attempt, until nothing is due (bounded).
pub(crate) async fn deliver_everything(app: &TestApp, dispatcher: &convene_server::delivery::Dispatcher) {
    for _ in 0..200 {
        dispatcher.deliver_due().await.expect("a dispatcher pass");
        match app.state.store.next_delivery_due().await.expect("next due") {
            Some(at) if at > app.clock.now() => app.clock.set(at),
            Some(_) => {}
            None => return,
        }
    }
    panic!("deliveries did not settle within 200 passes");
}

/// Checks the deliveries' signatures with the `standardwebhooks` package; `Err` says why it could not run.
fn verify_with_standardwebhooks(secret: &str, received: &[Received]) -> Result<Value, String> {
    let python = std::env::var("CONVENE_PYTHON")
        .ok()
        .filter(|p| !p.is_empty())
        .ok_or("CONVENE_PYTHON is not set (scripts/test.sh sets it up)")?;
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/webhooks/verify.py");
    let input =
        json!({ "secret": secret, "deliveries": received.iter().map(Received::for_verifier).collect::<Vec<_>>() });
    let mut child = Command::new(python)
        .arg(script)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run the verifier: {e}"))?;
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), input.to_string().as_bytes()).unwrap();
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    if stderr.contains("No module named 'standardwebhooks'") {
        return Err(format!("the verifier's Python has no standardwebhooks: {stderr}"));
    }
    serde_json::from_slice(&output.stdout).map_err(|_| format!("verifier output: {stderr}"))
}

/// The signatures of `received` under `secret`, by the independent implementation: how many verified. Without the
/// Python package the check is skipped, unless the suite requires it (scripts/test.sh does).
fn independently_verified(secret: &str, received: &[Received]) -> Option<u64> {
    match verify_with_standardwebhooks(secret, received) {
        Ok(report) => {
            assert_eq!(report["failures"], json!([]), "{report}");
            Some(report["verified"].as_u64().unwrap())
        }
        Err(why) => {
            assert!(
                std::env::var_os("CONVENE_REQUIRE_WEBHOOK_VERIFIER").is_none(),
                "CONVENE_REQUIRE_WEBHOOK_VERIFIER is set but {why}"
            );
            eprintln!("signature check by standardwebhooks skipped: {why}");
            None
        }
    }
}

#[tokio::test]
async fn a_receiver_down_for_hours_then_up_gets_every_event_once_in_order_and_signed() {
    // Arrange: the receiver is down when the events happen.
    let app = spawn_app().await;
    let mut receiver = Receiver::start().await;
    receiver.down().await;
    let (endpoint, secret) = add_endpoint(&app, json!({"url": receiver.url()})).await;
    let a = app.create_group("War room A", &["+17137157533"]).await;
    let b = app.create_group("War room B", &["+18647351567"]).await;
    let a_id = a["group"]["id"].as_str().unwrap();
    let b_id = b["group"]["id"].as_str().unwrap();
    assert_eq!(app.patch(&format!("/v1/groups/{a_id}"), json!({"subject": "Renamed A"})).await.0, StatusCode::OK);
    let (status, body) =
        app.post(&format!("/v1/groups/{b_id}/participants/add"), json!({"participants": ["+17137157533"]})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(app.patch(&format!("/v1/groups/{b_id}"), json!({"description": "Incident 42"})).await.0, StatusCode::OK);
    let dispatcher = app.dispatcher(|_| {});

    // Act: three hours of retries against a dead port, then the receiver comes back.
    for _ in 0..6 {
        dispatcher.deliver_due().await.unwrap();
        app.clock.advance(Duration::from_secs(30 * 60));
    }
    let while_down = deliveries(&app, &endpoint, "").await;
    receiver.up().await;
    deliver_everything(&app, &dispatcher).await;

    // Assert: while down, every delivery was pending with failed attempts logged.
    assert!(while_down.iter().all(|d| d["state"] == "pending"), "{while_down:?}");
    let first = &while_down.last().unwrap()["id"];
    let (_, logged) = app.get(&format!("/v1/webhooks/{endpoint}/deliveries/{first}")).await;
    let (failed, last) =
        logged["attempt_log"].as_array().unwrap().split_at(logged["attempts"].as_u64().unwrap() as usize - 1);
    assert!(failed.len() >= 3, "{logged}");
    assert!(
        failed.iter().all(|a| a["status"].is_null() && a["error"].as_str().unwrap().contains("refused")),
        "{logged}"
    );
    assert_eq!(last[0]["status"], 204, "{logged}");

    // Every event arrived exactly once.
    let log = events(&app).await;
    let received = receiver.received();
    let got: Vec<&str> = received.iter().map(Received::id).collect();
    let unique: HashSet<&str> = got.iter().copied().collect();
    assert_eq!(unique.len(), got.len(), "no event twice: {got:?}");
    let expected: HashSet<String> = log.iter().map(|e| e["id"].as_str().unwrap().to_owned()).collect();
    assert_eq!(unique, expected.iter().map(String::as_str).collect::<HashSet<_>>());
    assert!(deliveries(&app, &endpoint, "").await.iter().all(|d| d["state"] == "succeeded"));
    for wanted in ["group.created", "group.updated", "group.participants.added", "job.state_changed"] {
        assert!(received.iter().any(|r| r.json()["type"] == wanted), "no {wanted}");
    }

    // Each group's events in the order they happened.
    let order_of = |events: Vec<Value>| -> HashMap<String, Vec<String>> {
        let mut by_group: HashMap<String, Vec<String>> = HashMap::new();
        for e in events {
            if let Some(jid) = e["data"]["group"]["jid"].as_str() {
                by_group.entry(jid.to_owned()).or_default().push(e["id"].as_str().unwrap().to_owned());
            }
        }
        by_group
    };
    let logged_order = order_of(log.iter().map(|e| e["body"].clone()).collect());
    assert_eq!(order_of(received.iter().map(Received::json).collect()), logged_order);
    assert!(logged_order.values().all(|ids| ids.len() >= 2), "{logged_order:?}");

    // The bodies are the logged events, signed Standard Webhooks style (checked by an implementation not ours).
    for r in &received {
        let body = r.json();
        assert_eq!(r.headers["content-type"], "application/json");
        assert_eq!(body["id"].as_str(), Some(r.id()));
        assert!(r.headers["webhook-signature"].starts_with("v1,"), "{:?}", r.headers);
    }
    if let Some(verified) = independently_verified(&secret, &received) {
        assert_eq!(verified as usize, received.len());
    }
}

#[tokio::test]
async fn a_failing_endpoint_retries_on_schedule_honours_retry_after_is_disabled_and_replays() {
    // Arrange
    let app = spawn_app().await;
    let receiver = Receiver::start().await;
    receiver.answer(Answer::Status { status: 503, retry_after: Some("3600".into()) });
    let (endpoint, _) = add_endpoint(&app, json!({"url": receiver.url(), "event_types": ["group.created"]})).await;
    app.create_group("Retried", &["+17137157533"]).await;
    // Disabled after a day of failures (the default is five).
    let dispatcher = app.dispatcher(|c| c.disable_after_secs = 86_400);

    // Act 1: the first attempt is answered 503 with Retry-After: 3600.
    let t0 = app.clock.now();
    dispatcher.deliver_due().await.unwrap();

    // Assert 1: the next attempt waits the hour, not the schedule's 5 s.
    let pending = deliveries(&app, &endpoint, "").await;
    assert_eq!(pending.len(), 1, "only group.created passes the filter: {pending:?}");
    let next: convene_core::Timestamp = serde_json::from_value(pending[0]["next_attempt_at"].clone()).unwrap();
    assert!(next >= t0.plus(Duration::from_secs(3600)), "next attempt at {next}, first at {t0}");
    assert!(next <= t0.plus(Duration::from_secs(3600 + 60)), "next attempt at {next}, first at {t0}");

    // Act 2: it keeps failing (500) through the whole schedule.
    receiver.answer(Answer::Status { status: 500, retry_after: None });
    deliver_everything(&app, &dispatcher).await;

    // Assert 2: out of attempts, logged, the endpoint disabled with the reason.
    let failed = deliveries(&app, &endpoint, "&state=failed").await;
    assert_eq!(failed.len(), 1);
    let id = failed[0]["id"].as_i64().unwrap();
    let (_, delivery) = app.get(&format!("/v1/webhooks/{endpoint}/deliveries/{id}")).await;
    let attempts = delivery["attempt_log"].as_array().unwrap();
    assert_eq!(attempts.len(), 1 + app.config.webhooks.retry_schedule_secs.len(), "{delivery}");
    assert_eq!(attempts[0]["status"], 503);
    assert!(attempts[1..].iter().all(|a| a["status"] == 500), "{delivery}");
    let (_, shown) = app.get(&format!("/v1/webhooks/{endpoint}")).await;
    assert_eq!(shown["enabled"], false, "{shown}");
    assert!(shown["disabled_reason"].as_str().unwrap().contains("500"), "{shown}");

    // Act 3: while disabled, new events are not queued for it; enabled again, the failed one is replayed.
    app.create_group("While disabled", &["+17137157533"]).await;
    let (status, _) = app.post(&format!("/v1/webhooks/{endpoint}/deliveries/{id}/replay"), json!({})).await;
    assert_eq!(status, StatusCode::OK);
    receiver.answer(Answer::Ok);
    dispatcher.deliver_due().await.unwrap();
    assert_eq!(deliveries(&app, &endpoint, "&state=pending").await.len(), 1, "waits while the endpoint is disabled");
    let (status, enabled) = app.patch(&format!("/v1/webhooks/{endpoint}"), json!({"enabled": true})).await;
    assert_eq!((status, &enabled["disabled_reason"]), (StatusCode::OK, &Value::Null), "{enabled}");
    deliver_everything(&app, &dispatcher).await;

    // Assert 3
    let all = deliveries(&app, &endpoint, "").await;
    assert_eq!(all.len(), 1, "nothing was queued while disabled: {all:?}");
    assert_eq!(all[0]["state"], "succeeded");
    let (status, again) = app.post(&format!("/v1/webhooks/{endpoint}/deliveries/{id}/replay"), json!({})).await;
    assert_eq!(status, StatusCode::CONFLICT, "only failed deliveries replay: {again}");
}

#[tokio::test]
async fn filters_pick_event_types_and_categories() {
    // Arrange
    let app = spawn_app().await;
    let receiver = Receiver::start().await;
    let (created_only, _) = add_endpoint(&app, json!({"url": receiver.url(), "event_types": ["group.created"]})).await;
    let (instances, _) = add_endpoint(&app, json!({"url": receiver.url(), "event_types": ["instance.*"]})).await;
    let (groups, _) = add_endpoint(&app, json!({"url": receiver.url(), "event_types": ["group.*"]})).await;

    // Act
    let group = app.create_group("Filtered", &["+17137157533"]).await;
    let id = group["group"]["id"].as_str().unwrap();
    app.patch(&format!("/v1/groups/{id}"), json!({"subject": "Filtered again"})).await;

    // Assert
    let types =
        |list: Vec<Value>| list.iter().map(|d| d["event_type"].as_str().unwrap().to_owned()).collect::<Vec<_>>();
    assert_eq!(types(deliveries(&app, &created_only, "").await), ["group.created"]);
    assert_eq!(types(deliveries(&app, &instances, "").await), Vec::<String>::new());
    assert_eq!(types(deliveries(&app, &groups, "").await), ["group.updated", "group.created"], "newest first");
    let (status, refused) = app.post("/v1/webhooks", json!({"url": receiver.url(), "event_types": ["groups.*"]})).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(refused["fields"][0]["field"], "event_types", "{refused}");
}

#[tokio::test]
async fn private_loopback_and_link_local_targets_are_refused_unless_allowed() {
    let app = spawn_app().await;
    for url in [
        "http://10.1.2.3/hook",
        "http://192.168.0.10/hook",
        "http://169.254.169.254/latest/meta-data",
        "http://[::1]:8080/hook",
        "http://127.0.0.2/hook",
        "ftp://example.com/hook",
        "http://user:password@example.com/hook",
        "not a url",
    ] {
        let (status, body) = app.post("/v1/webhooks", json!({"url": url})).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{url}: {body}");
        assert_eq!(body["fields"][0]["field"], "url", "{url}: {body}");
    }
    // The test configuration allows 127.0.0.1 explicitly.
    let (status, body) = app.post("/v1/webhooks", json!({"url": "http://127.0.0.1:9/hook"})).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
}

#[tokio::test]
async fn after_a_rotation_both_secrets_sign_until_the_old_one_expires() {
    // Arrange
    let app = spawn_app().await;
    let receiver = Receiver::start().await;
    let (endpoint, old) = add_endpoint(&app, json!({"url": receiver.url()})).await;
    let (status, rotated) =
        app.post(&format!("/v1/webhooks/{endpoint}/secret/rotate"), json!({"previous_valid_for_secs": 3600})).await;
    assert_eq!(status, StatusCode::OK, "{rotated}");
    let new = rotated["secret"].as_str().unwrap().to_owned();
    assert_ne!(new, old);
    let dispatcher = app.dispatcher(|_| {});

    // Act: one event during the overlap, one after it.
    app.create_group("During", &["+17137157533"]).await;
    deliver_everything(&app, &dispatcher).await;
    let during = receiver.received();
    app.clock.advance(Duration::from_secs(3601));
    app.create_group("After", &["+17137157533"]).await;
    deliver_everything(&app, &dispatcher).await;
    let after: Vec<Received> = receiver.received()[during.len()..].to_vec();

    // Assert
    assert!(during.iter().all(|r| r.headers["webhook-signature"].split(' ').count() == 2), "{during:?}");
    assert!(after.iter().all(|r| r.headers["webhook-signature"].split(' ').count() == 1), "{after:?}");
    let (_, shown) = app.get(&format!("/v1/webhooks/{endpoint}/secret")).await;
    assert_eq!(shown["secret"], new.as_str());
    if independently_verified(&old, &during).is_some() {
        assert_eq!(independently_verified(&new, &during), Some(during.len() as u64));
        assert_eq!(independently_verified(&new, &after), Some(after.len() as u64));
        let report = verify_with_standardwebhooks(&old, &after).unwrap();
        assert_eq!(report["verified"], 0, "the expired secret no longer signs: {report}");
    }
}

#[tokio::test]
async fn slow_and_oversized_answers_are_cut_off_and_logged() {
    // Arrange
    let app = spawn_app().await;
    let receiver = Receiver::start().await;
    let (endpoint, _) = add_endpoint(&app, json!({"url": receiver.url(), "event_types": ["group.created"]})).await;
    let dispatcher = app.dispatcher(|c| {
        c.timeout_ms = 300;
        c.max_response_bytes = 1024;
    });

    // Act: one answer too slow, then one far too large.
    receiver.answer(Answer::Slow(Duration::from_secs(3)));
    app.create_group("Slow", &["+17137157533"]).await;
    dispatcher.deliver_due().await.unwrap();
    receiver.answer(Answer::Large(4 * 1024 * 1024));
    app.clock.advance(Duration::from_secs(60));
    dispatcher.deliver_due().await.unwrap();

    // Assert
    let list = deliveries(&app, &endpoint, "").await;
    let (_, delivery) = app.get(&format!("/v1/webhooks/{endpoint}/deliveries/{}", list[0]["id"])).await;
    let attempts = delivery["attempt_log"].as_array().unwrap();
    assert_eq!(attempts.len(), 2, "{delivery}");
    assert!(attempts[0]["status"].is_null(), "{delivery}");
    assert!(attempts[0]["error"].as_str().unwrap().contains("timed out"), "{delivery}");
    let kept = attempts[1]["response_body"].as_str().unwrap_or_default().len();
    assert!(kept <= 1024, "the log keeps the start of the answer only: {kept} bytes");
}

#[tokio::test]
async fn people_joining_by_link_and_leaving_reach_the_webhooks() {
    // Arrange
    let app = spawn_app().await;
    let receiver = Receiver::start().await;
    let (endpoint, _) =
        add_endpoint(&app, json!({"url": receiver.url(), "event_types": ["group.participants.*"]})).await;
    let group = app.create_group("Open door", &["+18647351567"]).await;
    let id = group["group"]["id"].as_str().unwrap();
    let jid = group["group"]["jid"].as_str().unwrap().to_owned();
    let (_, link) = app.get(&format!("/v1/groups/{id}/invite-link")).await;
    let person = "+17137157533";

    // Act: on the network, a person joins through the link and later leaves.
    let (status, body) = app.post("/v1/sandbox/join", json!({"phone": person, "invite": link["invite_link"]})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = app.post(&format!("/v1/sandbox/groups/{jid}/leave"), json!({"phone": person})).await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    // The network's reports are applied in the background.
    let mut types = Vec::new();
    for _ in 0..100 {
        types = deliveries(&app, &endpoint, "")
            .await
            .iter()
            .map(|d| d["event_type"].as_str().unwrap().to_owned())
            .collect();
        if types.len() >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    deliver_everything(&app, &app.dispatcher(|_| {})).await;

    // Assert
    assert_eq!(types, ["group.participants.left", "group.participants.joined"], "newest first");
    let bodies: Vec<Value> = receiver.received().iter().map(Received::json).collect();
    assert_eq!(bodies[0]["type"], "group.participants.joined");
    assert_eq!(bodies[0]["data"]["participants"], json!([person]));
    assert_eq!(bodies[0]["data"]["by"], person);
    assert_eq!(bodies[0]["data"]["group"]["id"], id);
    assert_eq!(bodies[1]["type"], "group.participants.left");
}

#[tokio::test]
async fn a_queued_job_reports_each_state_and_the_group_it_created() {
    // Arrange
    let app = spawn_app().await;
    let receiver = Receiver::start().await;
    add_endpoint(&app, json!({"url": receiver.url(), "event_types": ["job.*", "group.created"]})).await;
    let (status, batch) = app
        .post("/v1/jobs/groups", json!({"instance_ids": [app.instance_id], "groups": [{"subject": "Queued", "participants": ["+17137157533"]}]}))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{batch}");

    // Act
    app.run_jobs_to_completion().await;
    deliver_everything(&app, &app.dispatcher(|_| {})).await;

    // Assert
    let bodies: Vec<Value> = receiver.received().iter().map(Received::json).collect();
    let states: Vec<(&str, Option<&str>)> = bodies
        .iter()
        .filter(|b| b["type"] == "job.state_changed")
        .map(|b| (b["data"]["state"].as_str().unwrap(), b["data"]["previous_state"].as_str()))
        .collect();
    assert_eq!(states, [("queued", None), ("running", Some("queued")), ("succeeded", Some("running"))]);
    let created = bodies.iter().find(|b| b["type"] == "group.created").expect("group.created");
    assert_eq!(created["data"]["job_id"], batch["jobs"][0]["id"]);
    assert_eq!(created["data"]["group"]["subject"], "Queued");
    assert_eq!(created["instance_id"], app.instance_id);
}

#[tokio::test]
async fn secrets_are_not_stored_in_clear() {
    // Arrange
    let app = spawn_app().await;
    let (endpoint, secret) = add_endpoint(&app, json!({"url": "http://127.0.0.1:9/hook"})).await;
    let raw = secret.trim_start_matches("whsec_").to_owned();

    // Act
    let (_, shown) = app.get(&format!("/v1/webhooks/{endpoint}/secret")).await;
    let endpoint = app.state.store.get_webhook_endpoint(endpoint.parse().unwrap()).await.unwrap();

    // Assert: the API gives it back; the store holds it sealed.
    assert_eq!(shown["secret"], secret.as_str());
    assert!(!endpoint.secret.0.contains(&raw), "sealed: {:?}", endpoint.secret);
    if app.database.is_none() {
        for file in ["convene.db", "convene.db-wal"] {
            let bytes = std::fs::read(app.dir.path().join(file)).unwrap_or_default();
            assert!(!String::from_utf8_lossy(&bytes).contains(&raw), "{file} does not hold the secret");
        }
    }
}

#[tokio::test]
async fn a_real_numbers_pairing_connection_and_ban_are_instance_events() {
    use convene_core::PhoneNumber;
    use convene_whatsapp::SimulatedEvent;
    // Arrange
    let app = spawn_app().await;
    let receiver = Receiver::start().await;
    add_endpoint(&app, json!({"url": receiver.url(), "event_types": ["instance.*"]})).await;
    let (id, _) = app.new_whatsapp_instance().await;

    // Act: what WhatsApp reports, through the library's own events.
    let simulate = |event| app.service.whatsapp().simulate(id, event).expect("a whatsapp instance");
    simulate(SimulatedEvent::Qr { code: "2@qr,one".into(), valid_for: Duration::from_secs(20) });
    simulate(SimulatedEvent::Paired { phone: PhoneNumber::parse("+12015550188").unwrap() });
    simulate(SimulatedEvent::Connected);
    simulate(SimulatedEvent::Disconnected);
    simulate(SimulatedEvent::TemporaryBan { lasting: Duration::from_secs(3600) });
    let mut types = Vec::new();
    for _ in 0..200 {
        let (_, log) = app.get(&format!("/v1/events?instance_id={id}")).await;
        types = log["items"].as_array().unwrap().iter().map(|e| e["type"].as_str().unwrap().to_owned()).collect();
        if types.last().map(String::as_str) == Some("instance.temporarily_banned") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    deliver_everything(&app, &app.dispatcher(|_| {})).await;

    // Assert
    // The session starts disconnected (tests never dial WhatsApp), then what was reported, in order.
    assert_eq!(
        types,
        [
            "instance.disconnected",
            "instance.qr_ready",
            "instance.paired",
            "instance.connected",
            "instance.disconnected",
            "instance.temporarily_banned"
        ]
    );
    let bodies: Vec<Value> = receiver.received().iter().map(Received::json).collect();
    assert_eq!(bodies.len(), 6);
    assert_eq!(bodies[1]["data"]["qr"]["code"], "2@qr,one");
    assert_eq!(bodies[2]["data"]["phone"], "+12015550188");
    assert_eq!(bodies[5]["data"]["state"]["status"], "temporarily_banned");
    assert!(bodies[5]["data"]["state"]["until"].is_string(), "{}", bodies[5]);
    assert!(bodies.iter().all(|b| b["instance_id"] == id.0));
}

#[tokio::test]
async fn https_targets_are_delivered_only_when_their_certificate_is_trusted() {
    // Arrange: a receiver serving HTTPS with a certificate from the test CA, which the system does not trust.
    let app = spawn_app().await;
    let receiver = Receiver::start_tls().await;
    let (endpoint, secret) = add_endpoint(&app, json!({"url": receiver.url(), "event_types": ["group.created"]})).await;
    app.create_group("Over TLS", &["+17137157533"]).await;

    // Act 1: the system's roots only.
    app.dispatcher(|_| {}).deliver_due().await.unwrap();

    // Assert 1: refused at the handshake, logged as a certificate problem; nothing reached the receiver.
    let list = deliveries(&app, &endpoint, "").await;
    let (_, delivery) = app.get(&format!("/v1/webhooks/{endpoint}/deliveries/{}", list[0]["id"])).await;
    let error = delivery["attempt_log"][0]["error"].as_str().unwrap().to_ascii_lowercase();
    // "invalid peer certificate: UnknownIssuer"; on a machine with no CA bundle, "No CA certificates were loaded".
    assert!(error.contains("certificate"), "{error}");
    assert!(receiver.received().is_empty());

    // Act 2: the test CA configured as an extra root; the retry is due.
    app.clock.advance(Duration::from_secs(3600));
    let trusting = app.dispatcher(|c| c.ca_certificates = crate::receiver::TEST_CA.to_owned());
    trusting.deliver_due().await.unwrap();

    // Assert 2: delivered over TLS, signed as over HTTP.
    let (_, delivery) = app.get(&format!("/v1/webhooks/{endpoint}/deliveries/{}", list[0]["id"])).await;
    assert_eq!(delivery["state"], "succeeded", "{delivery}");
    let received = receiver.received();
    assert_eq!(received.len(), 1);
    assert_eq!(received[0].id(), list[0]["event_id"].as_str().unwrap());
    if let Some(verified) = independently_verified(&secret, &received) {
        assert_eq!(verified, 1);
    }
}

#[tokio::test]
async fn a_ca_file_that_holds_no_certificate_stops_the_dispatcher_with_the_reason() {
    let app = spawn_app().await;
    let not_pem = concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml");
    let missing = "/nonexistent/ca.pem";
    for (path, says) in [(not_pem, "holds no certificate"), (missing, "cannot read /nonexistent/ca.pem")] {
        let refused = app.try_dispatcher(|c| c.ca_certificates = path.to_owned());
        let error = format!("{:#}", refused.err().expect("refused"));
        assert!(error.contains(says), "{error}");
    }
}

#[tokio::test]
async fn events_past_their_retention_go_with_their_deliveries_unless_still_owed() {
    // Arrange: every event delivered to one endpoint; a second endpoint, down, still owes the group.created event.
    let app = spawn_app().await;
    let receiver = Receiver::start().await;
    let mut dead = Receiver::start().await;
    dead.down().await;
    let (delivered_to, _) = add_endpoint(&app, json!({"url": receiver.url()})).await;
    let (owed_to, _) = add_endpoint(&app, json!({"url": dead.url(), "event_types": ["group.created"]})).await;
    app.create_group("Kept a month", &["+17137157533"]).await;
    let dispatcher = app.dispatcher(|c| c.retention_days = 30);
    // Passes until nothing is due (the down endpoint's retry waits for a clock that does not move here).
    for _ in 0..10 {
        if dispatcher.deliver_due().await.unwrap() == 0 {
            break;
        }
    }
    let before = events(&app).await;
    let delivered = deliveries(&app, &delivered_to, "").await;
    assert!(before.len() >= 2 && delivered.iter().all(|d| d["state"] == "succeeded"), "{delivered:?}");

    // Act: a day short of the retention, then past it.
    app.clock.advance(Duration::from_secs(29 * 24 * 3600));
    let too_soon = dispatcher.prune().await.unwrap();
    app.clock.advance(Duration::from_secs(2 * 24 * 3600));
    let pruned = dispatcher.prune().await.unwrap();

    // Assert: only the event still owed to the down endpoint is left, with its deliveries to both endpoints.
    assert_eq!(too_soon, 0);
    assert_eq!(pruned as usize, before.len() - 1);
    let left = events(&app).await;
    assert_eq!(left.len(), 1, "{left:?}");
    assert_eq!(left[0]["type"], "group.created");
    assert_eq!(deliveries(&app, &delivered_to, "").await.len(), 1);
    assert_eq!(deliveries(&app, &owed_to, "&state=pending").await.len(), 1);
    let gone = delivered.iter().find(|d| d["event_type"] != "group.created").unwrap();
    let (status, _) = app.get(&format!("/v1/webhooks/{delivered_to}/deliveries/{}", gone["id"])).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // A retention of 0 keeps everything.
    app.clock.advance(Duration::from_secs(365 * 24 * 3600));
    assert_eq!(app.dispatcher(|c| c.retention_days = 0).prune().await.unwrap(), 0);
}

/// Issue 14: two dispatchers on one database, as two nodes have, deliver at the same time, and each delivery reaches
/// the receiver once: a pass claims the deliveries it attempts.
#[tokio::test]
async fn two_dispatchers_on_one_database_send_each_delivery_once() {
    // Arrange
    let app = spawn_app().await;
    let receiver = Receiver::start().await;
    let (endpoint, _) = add_endpoint(&app, json!({"url": receiver.url()})).await;
    for i in 0..12 {
        app.create_group(&format!("Room {i}"), &["+17137157533"]).await;
    }
    let (one, two) = (app.dispatcher(|c| c.concurrency = 4), app.dispatcher(|c| c.concurrency = 4));

    // Act: both pass at once until nothing is left.
    for _ in 0..200 {
        let (a, b) = tokio::join!(one.deliver_due(), two.deliver_due());
        if a.unwrap() + b.unwrap() == 0 && app.state.store.next_delivery_due().await.unwrap().is_none() {
            break;
        }
    }

    // Assert
    let owed = deliveries(&app, &endpoint, "").await;
    assert!(owed.len() >= 24 && owed.iter().all(|d| d["state"] == "succeeded"), "{owed:?}");
    let mut sent: Vec<String> = receiver.received().iter().map(|r| r.id().to_owned()).collect();
    let times = sent.len();
    sent.sort();
    sent.dedup();
    assert_eq!(times, sent.len(), "a delivery was sent twice");
    assert_eq!(sent.len(), owed.len(), "every delivery once");
}
