//! `kill -9` of the real server in the middle of a queued batch, then a restart: every requested group exists
//! exactly once on the network and in Convene, and nothing requested is lost.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::{Server, convene, wait_until};
use serde_json::{Value, json};

#[test]
fn kill_9_during_a_queued_batch_loses_nothing_and_duplicates_nothing() {
    // Arrange: a fresh gateway whose network answers slowly, and a batch of 20 groups.
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(convene(dir.path()).env("CONVENE_WORKER__POLL_MS", "50"));
    let key = server.api_key();
    let instance = server.sandbox_instance();
    let (status, _) = server.call(&key, "PUT", "/v1/sandbox/faults", Some(&json!({"latency_ms": 40})));
    assert_eq!(status, 200);
    let subjects: Vec<String> = (0..20).map(|i| format!("Crash batch {i:02}")).collect();
    let groups: Vec<Value> = subjects.iter().map(|s| json!({"subject": s, "participants": ["+17137157533"]})).collect();
    let (status, queued) =
        server.call(&key, "POST", "/v1/jobs/groups", Some(&json!({"instance_ids": [instance], "groups": groups})));
    assert_eq!(status, 202, "{queued}");
    let batch = queued["batch_id"].as_str().unwrap().to_owned();

    // Act: kill -9 once some groups exist, then start again on the same data.
    wait_until("the first groups", Duration::from_secs(60), || {
        let (_, stats) = server.call(&key, "GET", "/v1/sandbox/stats", None);
        stats["groups_created"].as_u64().unwrap_or(0) >= 4
    });
    server.kill();
    let server = Server::start(convene(dir.path()).env("CONVENE_WORKER__POLL_MS", "50"));
    let jobs_path = format!("/v1/jobs?batch_id={batch}&limit=200");
    wait_until("every job to finish", Duration::from_secs(120), || {
        let (_, jobs) = server.call(&key, "GET", &jobs_path, None);
        jobs["items"].as_array().is_some_and(|j| j.len() == 20 && j.iter().all(|j| j["state"] == "succeeded"))
    });

    // Assert: each requested group once on the network and once in Convene.
    let (_, network) = server.call(&key, "GET", "/v1/sandbox/groups", None);
    let mut on_network: HashMap<String, usize> = HashMap::new();
    for g in network.as_array().unwrap() {
        *on_network.entry(g["subject"].as_str().unwrap().to_owned()).or_default() += 1;
    }
    let (_, ours) = server.call(&key, "GET", "/v1/groups?limit=200", None);
    let mut recorded: HashMap<String, usize> = HashMap::new();
    for g in ours["items"].as_array().unwrap() {
        *recorded.entry(g["subject"].as_str().unwrap().to_owned()).or_default() += 1;
    }
    for s in &subjects {
        assert_eq!(on_network.get(s), Some(&1), "{s} on the network: {on_network:?}");
        assert_eq!(recorded.get(s), Some(&1), "{s} in Convene: {recorded:?}");
    }
    assert_eq!(on_network.len(), 20);
}
