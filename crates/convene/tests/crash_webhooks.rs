//! `kill -9` of the real server while webhook deliveries are pending (the receiver is down), then a restart with the
//! receiver up: every event reaches the receiver, exactly once.

mod common;

use std::collections::{HashMap, HashSet};
use std::net::TcpListener;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{Server, convene, receive, wait_until};
use serde_json::{Value, json};

/// The gateway with fast polling and one-second retries, so the test does not wait out the production schedule.
fn gateway(dir: &std::path::Path) -> Command {
    let mut cmd = convene(dir);
    cmd.env("CONVENE_WORKER__POLL_MS", "50")
        .env("CONVENE_WEBHOOKS__POLL_MS", "100")
        .env("CONVENE_WEBHOOKS__ALLOW_PRIVATE_TARGETS", "[\"127.0.0.1\"]")
        .env("CONVENE_WEBHOOKS__RETRY_SCHEDULE_SECS", format!("[{}]", ["1"; 60].join(",")))
        .env("CONVENE_WEBHOOKS__JITTER_PERCENT", "0");
    cmd
}

#[test]
fn kill_9_with_webhook_deliveries_pending_loses_none() {
    // Arrange: a receiver port with nobody listening yet, an endpoint for it, and a batch whose events pile up.
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&mut gateway(dir.path()));
    let key = server.api_key();
    let instance = server.sandbox_instance();
    let (status, endpoint) =
        server.call(&key, "POST", "/v1/webhooks", Some(&json!({"url": format!("http://127.0.0.1:{port}/hook")})));
    assert_eq!(status, 201, "{endpoint}");
    let endpoint = endpoint["id"].as_str().unwrap().to_owned();
    let groups: Vec<Value> =
        (0..10).map(|i| json!({"subject": format!("Hooked {i}"), "participants": ["+17137157533"]})).collect();
    let (status, queued) =
        server.call(&key, "POST", "/v1/jobs/groups", Some(&json!({"instance_ids": [instance], "groups": groups})));
    assert_eq!(status, 202, "{queued}");
    let deliveries = format!("/v1/webhooks/{endpoint}/deliveries?state=pending&limit=200");
    wait_until("deliveries to pile up with failed attempts", Duration::from_secs(60), || {
        let (_, pending) = server.call(&key, "GET", &deliveries, None);
        let pending = pending["items"].as_array().cloned().unwrap_or_default();
        pending.len() >= 20 && pending.iter().any(|d| d["attempts"].as_u64() > Some(0))
    });

    // Act: kill -9 with deliveries pending; the receiver comes up; the server starts again on the same data.
    server.kill();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let listener = TcpListener::bind(("127.0.0.1", port)).expect("the receiver's port is free again");
    std::thread::spawn({
        let seen = Arc::clone(&seen);
        move || receive(listener, seen)
    });
    let server = Server::start(&mut gateway(dir.path()));
    let jobs = format!("/v1/jobs?batch_id={}&limit=200", queued["batch_id"].as_str().unwrap());
    wait_until("every job to finish", Duration::from_secs(120), || {
        let (_, jobs) = server.call(&key, "GET", &jobs, None);
        jobs["items"].as_array().is_some_and(|j| j.len() == 10 && j.iter().all(|j| j["state"] == "succeeded"))
    });
    let logged = || -> Vec<String> {
        let (_, events) = server.call(&key, "GET", "/v1/events?limit=200", None);
        events["items"].as_array().unwrap().iter().map(|e| e["id"].as_str().unwrap().to_owned()).collect()
    };
    // The receiver counts a delivery when it reads it, a moment before the gateway records the answer: wait for both.
    let pending = || server.call(&key, "GET", &deliveries, None).1;
    wait_until("the receiver to have every event and the queue to drain", Duration::from_secs(120), || {
        let got: HashSet<String> = seen.lock().unwrap().iter().cloned().collect();
        logged().iter().all(|id| got.contains(id)) && pending()["items"] == json!([])
    });

    // Assert: every event once.
    let events = logged();
    let mut counts: HashMap<String, usize> = HashMap::new();
    for id in seen.lock().unwrap().iter() {
        *counts.entry(id.clone()).or_default() += 1;
    }
    assert!(events.len() >= 40, "10 jobs make at least 4 events each: {}", events.len());
    for id in &events {
        assert_eq!(counts.get(id), Some(&1), "event {id} delivered once");
    }
}
