//! `/metrics` read as Prometheus reads it: known operations on a live server, then a scrape parsed by the official
//! Python client's parser (installed pinned by `scripts/test.sh`, which runs this test with
//! `CONVENE_REQUIRE_OPENAPI_TOOLS=1`; ignored elsewhere: `cargo nextest run -p convene --test metrics
//! --run-ignored only`).

mod common;

use std::io::Write as _;
use std::process::{Command, Stdio};

use common::{Server, convene};
use serde_json::{Value, json};

/// Every sample of a scrape, as the independent parser read it.
fn parse(python: &str, text: &str) -> Vec<Value> {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/prometheus/parse.py");
    let mut child = Command::new(python)
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run the parser");
    child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success(), "the parser refused the scrape: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

fn value(samples: &[Value], name: &str, labels: &Value) -> f64 {
    let found: Vec<f64> = samples
        .iter()
        .filter(|s| s["name"] == name)
        .filter(|s| labels.as_object().unwrap().iter().all(|(k, v)| &s["labels"][k] == v))
        .map(|s| s["value"].as_f64().unwrap())
        .collect();
    found.iter().sum()
}

#[test]
#[ignore = "needs the prometheus-client parser: scripts/test.sh runs it"]
fn a_scrape_counts_what_the_server_did() {
    let python = std::env::var("CONVENE_PYTHON").unwrap_or_default();
    let has_parser = !python.is_empty()
        && Command::new(&python).args(["-c", "import prometheus_client.parser"]).status().is_ok_and(|s| s.success());
    if !has_parser {
        assert!(std::env::var_os("CONVENE_REQUIRE_OPENAPI_TOOLS").is_none(), "no prometheus_client in CONVENE_PYTHON");
        eprintln!("skipped: no prometheus_client next to CONVENE_PYTHON (scripts/test.sh installs it)");
        return;
    }
    // Arrange
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(convene(dir.path()).env("CONVENE_WEBHOOKS__ENABLED", "false"));
    let key = server.api_key();
    let instance = server.sandbox_instance();

    // Act: two groups (one participant refuses by privacy), one add, a 404 and a refused scrape.
    let (status, _) =
        server.call(&key, "PUT", "/v1/sandbox/people/+18647351567", Some(&json!({"group_add": "nobody"})));
    assert_eq!(status, 200);
    for subject in ["One", "Two"] {
        let body =
            json!({"instance_id": instance, "subject": subject, "participants": ["+17137157533", "+18647351567"]});
        assert_eq!(server.call(&key, "POST", "/v1/groups", Some(&body)).0, 201);
    }
    let (_, groups) = server.call(&key, "GET", "/v1/groups", None);
    let group = groups["items"][0]["id"].as_str().unwrap().to_owned();
    let add = json!({"participants": ["+447700176576"]});
    assert_eq!(server.call(&key, "POST", &format!("/v1/groups/{group}/participants/add"), Some(&add)).0, 200);
    assert_eq!(server.call(&key, "GET", "/v1/groups/no-such-group", None).0, 404);
    assert_eq!(server.call("not-a-key", "GET", "/metrics", None).0, 401);
    // Then pacing: one creation an hour, and a batch of two queued. The two synchronous creations above were just
    // made, so the worker puts both queued ones about an hour off.
    let settings =
        json!({"pacing": {"min_interval_secs": 3600, "burst": 1}, "auto_invite": false, "backup_admins": []});
    assert_eq!(server.call(&key, "PUT", &format!("/v1/instances/{instance}/settings"), Some(&settings)).0, 200);
    let batch = json!({"instance_ids": [instance], "groups": [
        {"subject": "Queued 1", "participants": ["+17137157533"]},
        {"subject": "Queued 2", "participants": ["+17137157533"]}]});
    assert_eq!(server.call(&key, "POST", "/v1/jobs/groups", Some(&batch)).0, 202);
    let scrape = || {
        server.exchange(&format!(
            "GET /metrics HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {key}\r\nConnection: close\r\n\r\n",
            server.addr
        ))
    };
    common::wait_until("the worker defers both queued jobs", std::time::Duration::from_secs(20), || {
        scrape().lines().any(|l| l == "convene_pacing_wait_seconds_count 2")
    });
    let scrape = scrape();

    // Assert
    let (head, body) = scrape.split_once("\r\n\r\n").unwrap();
    assert!(
        head.starts_with("HTTP/1.1 200") && head.to_ascii_lowercase().contains("content-type: text/plain"),
        "{head}"
    );
    let samples = parse(&python, body);
    let requests = |route: &str, status: &str| {
        value(&samples, "convene_http_requests_total", &json!({"route": route, "status": status}))
    };
    assert_eq!(requests("/v1/groups", "201"), 2.0);
    assert_eq!(requests("/v1/groups/{group}", "404"), 1.0);
    assert_eq!(requests("/metrics", "401"), 1.0);
    let posts = json!({"route": "/v1/groups", "method": "POST", "dialect": "native"});
    assert_eq!(value(&samples, "convene_http_request_duration_seconds_count", &posts), 2.0);
    let attempts = json!({"kind": "sandbox", "outcome": "created"});
    assert_eq!(value(&samples, "convene_group_creation_attempts_total", &attempts), 2.0);
    assert_eq!(value(&samples, "convene_group_creations_total", &json!({"result": "succeeded"})), 2.0);
    let jobs = |state: &str| value(&samples, "convene_jobs", &json!({"state": state}));
    assert_eq!((jobs("succeeded"), jobs("queued"), jobs("running"), jobs("failed")), (2.0, 2.0, 0.0, 0.0));
    assert_eq!(value(&samples, "convene_job_queue_oldest_due_seconds", &json!({})), 0.0, "the queued are not due");
    // Each waits its turn after two creations in the same second: one or two intervals (pacing's arithmetic is
    // convene-core's to test); what counts here is that the waits were measured.
    assert_eq!(value(&samples, "convene_pacing_wait_seconds_count", &json!({})), 2.0);
    let waited = value(&samples, "convene_pacing_wait_seconds_sum", &json!({}));
    assert!((2.0 * 3500.0..=2.0 * 7200.0).contains(&waited), "each queued job waits an hour or two: {waited}");
    let outcomes = |action: &str, outcome: &str| {
        value(&samples, "convene_participant_outcomes_total", &json!({"action": action, "outcome": outcome}))
    };
    assert_eq!((outcomes("create", "added"), outcomes("create", "privacy_blocked")), (2.0, 2.0));
    assert_eq!(outcomes("add", "added"), 1.0);
    assert_eq!(value(&samples, "convene_events_written_total", &json!({"type": "group.created"})), 2.0);
    let connected = json!({"kind": "sandbox", "state": "connected"});
    assert_eq!(value(&samples, "convene_instances", &connected), 1.0);
    assert_eq!(value(&samples, "convene_instances", &json!({"kind": "sandbox", "state": "pairing"})), 0.0);
}
