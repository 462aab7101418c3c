//! `kill -9` of the real server in the middle of a queued batch, then a restart: every requested group exists
//! exactly once on the network and in Convene, and nothing requested is lost.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

struct Server {
    child: Child,
    addr: String,
    lines: Vec<String>,
}

fn start(dir: &std::path::Path) -> Server {
    let mut child = Command::new(env!("CARGO_BIN_EXE_convene"))
        .arg("serve")
        .current_dir(dir)
        .env("CONVENE_LISTEN", "127.0.0.1:0")
        .env("CONVENE_WORKER__POLL_MS", "50")
        .env("CONVENE_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn convene");
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut lines = Vec::new();
    loop {
        let Ok(line) = rx.recv_timeout(Duration::from_secs(60)) else {
            let _ = child.kill();
            let _ = child.wait();
            panic!("convene did not start: {lines:?}");
        };
        if let Some(rest) = line.strip_prefix("Listening on http://") {
            let addr = rest.split_whitespace().next().unwrap().to_owned();
            return Server { child, addr, lines };
        }
        lines.push(line);
    }
}

/// A JSON request over a plain socket; returns the status and the body.
fn call(addr: &str, key: &str, method: &str, path: &str, body: Option<&Value>) -> (u16, Value) {
    let mut stream = TcpStream::connect(addr).expect("connect");
    let body = body.map(Value::to_string).unwrap_or_default();
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {key}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let status = response[9..12].parse().unwrap();
    let (head, rest) = response.split_once("\r\n\r\n").unwrap();
    // Small bodies may still be chunked: take the JSON between the first `{`/`[` and the last `}`/`]`.
    let json = if head.to_ascii_lowercase().contains("transfer-encoding: chunked") {
        let start = rest.find(['{', '[']).unwrap_or(0);
        let end = rest.rfind(['}', ']']).map_or(rest.len(), |e| e + 1);
        &rest[start..end]
    } else {
        rest
    };
    (status, if json.is_empty() { Value::Null } else { serde_json::from_str(json).expect("JSON body") })
}

fn wait_until(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < limit, "gave up waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn kill_9_during_a_queued_batch_loses_nothing_and_duplicates_nothing() {
    // Arrange: a fresh gateway whose network answers slowly, and a batch of 20 groups.
    let dir = tempfile::tempdir().unwrap();
    let mut server = start(dir.path());
    let text = server.lines.join("\n");
    let key = text.lines().find_map(|l| l.trim().strip_prefix("API key:")).unwrap().trim().to_owned();
    let instance: i64 = text.lines().find_map(|l| l.trim().strip_prefix("id:")).unwrap().trim().parse().unwrap();
    let (status, _) = call(&server.addr, &key, "PUT", "/v1/sandbox/faults", Some(&json!({"latency_ms": 40})));
    assert_eq!(status, 200);
    let subjects: Vec<String> = (0..20).map(|i| format!("Crash batch {i:02}")).collect();
    let groups: Vec<Value> = subjects.iter().map(|s| json!({"subject": s, "participants": ["+17137157533"]})).collect();
    let (status, queued) = call(
        &server.addr,
        &key,
        "POST",
        "/v1/jobs/groups",
        Some(&json!({"instance_ids": [instance], "groups": groups})),
    );
    assert_eq!(status, 202, "{queued}");
    let batch = queued["batch_id"].as_str().unwrap().to_owned();

    // Act: kill -9 once some groups exist, then start again on the same data.
    wait_until("the first groups", Duration::from_secs(60), || {
        let (_, stats) = call(&server.addr, &key, "GET", "/v1/sandbox/stats", None);
        stats["groups_created"].as_u64().unwrap_or(0) >= 4
    });
    server.child.kill().unwrap();
    server.child.wait().unwrap();
    let mut server = start(dir.path());
    let jobs_path = format!("/v1/jobs?batch_id={batch}&limit=500");
    wait_until("every job to finish", Duration::from_secs(120), || {
        let (_, jobs) = call(&server.addr, &key, "GET", &jobs_path, None);
        jobs.as_array().is_some_and(|j| j.len() == 20 && j.iter().all(|j| j["state"] == "succeeded"))
    });

    // Assert: each requested group once on the network and once in Convene.
    let (_, network) = call(&server.addr, &key, "GET", "/v1/sandbox/groups", None);
    let mut on_network: HashMap<String, usize> = HashMap::new();
    for g in network.as_array().unwrap() {
        *on_network.entry(g["subject"].as_str().unwrap().to_owned()).or_default() += 1;
    }
    let (_, ours) = call(&server.addr, &key, "GET", "/v1/groups?limit=500", None);
    let mut recorded: HashMap<String, usize> = HashMap::new();
    for g in ours["groups"].as_array().unwrap() {
        *recorded.entry(g["subject"].as_str().unwrap().to_owned()).or_default() += 1;
    }
    for s in &subjects {
        assert_eq!(on_network.get(s), Some(&1), "{s} on the network: {on_network:?}");
        assert_eq!(recorded.get(s), Some(&1), "{s} in Convene: {recorded:?}");
    }
    assert_eq!(on_network.len(), 20);
    server.child.kill().unwrap();
    server.child.wait().unwrap();
}
