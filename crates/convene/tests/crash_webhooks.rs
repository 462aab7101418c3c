//! `kill -9` of the real server while webhook deliveries are pending (the receiver is down), then a restart with the
//! receiver up: every event reaches the receiver, exactly once.

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, mpsc};
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
        .env("CONVENE_WEBHOOKS__POLL_MS", "100")
        .env("CONVENE_WEBHOOKS__ALLOW_PRIVATE_TARGETS", "[\"127.0.0.1\"]")
        // One-second retries, so the test does not wait out the production schedule.
        .env("CONVENE_WEBHOOKS__RETRY_SCHEDULE_SECS", format!("[{}]", ["1"; 60].join(",")))
        .env("CONVENE_WEBHOOKS__JITTER_PERCENT", "0")
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

/// A webhook receiver on a blocking socket: records each request's `webhook-id` and answers 204.
fn receive(listener: TcpListener, seen: Arc<Mutex<Vec<String>>>) {
    for stream in listener.incoming() {
        let Ok(mut stream) = stream else { continue };
        let seen = Arc::clone(&seen);
        std::thread::spawn(move || {
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            loop {
                let mut id = None;
                let mut length = 0;
                let mut line = String::new();
                loop {
                    line.clear();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 {
                        return;
                    }
                    let lower = line.to_ascii_lowercase();
                    if let Some(v) = lower.strip_prefix("webhook-id:") {
                        id = Some(v.trim().to_owned());
                    } else if let Some(v) = lower.strip_prefix("content-length:") {
                        length = v.trim().parse().unwrap_or(0);
                    } else if line == "\r\n" {
                        break;
                    }
                }
                let mut body = vec![0; length];
                if reader.read_exact(&mut body).is_err() {
                    return;
                }
                seen.lock().unwrap().extend(id);
                if stream.write_all(b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n").is_err() {
                    return;
                }
            }
        });
    }
}

#[test]
fn kill_9_with_webhook_deliveries_pending_loses_none() {
    // Arrange: a receiver port with nobody listening yet, an endpoint for it, and a batch whose events pile up.
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let dir = tempfile::tempdir().unwrap();
    let mut server = start(dir.path());
    let text = server.lines.join("\n");
    let key = text.lines().find_map(|l| l.trim().strip_prefix("API key:")).unwrap().trim().to_owned();
    let instance: i64 = text.lines().find_map(|l| l.trim().strip_prefix("id:")).unwrap().trim().parse().unwrap();
    let (status, endpoint) = call(
        &server.addr,
        &key,
        "POST",
        "/v1/webhooks",
        Some(&json!({"url": format!("http://127.0.0.1:{port}/hook")})),
    );
    assert_eq!(status, 201, "{endpoint}");
    let endpoint = endpoint["id"].as_str().unwrap().to_owned();
    let groups: Vec<Value> =
        (0..10).map(|i| json!({"subject": format!("Hooked {i}"), "participants": ["+17137157533"]})).collect();
    let (status, queued) = call(
        &server.addr,
        &key,
        "POST",
        "/v1/jobs/groups",
        Some(&json!({"instance_ids": [instance], "groups": groups})),
    );
    assert_eq!(status, 202, "{queued}");
    let deliveries = format!("/v1/webhooks/{endpoint}/deliveries?state=pending&limit=500");
    wait_until("deliveries to pile up with failed attempts", Duration::from_secs(60), || {
        let (_, pending) = call(&server.addr, &key, "GET", &deliveries, None);
        let pending = pending.as_array().cloned().unwrap_or_default();
        pending.len() >= 20 && pending.iter().any(|d| d["attempts"].as_u64() > Some(0))
    });

    // Act: kill -9 with deliveries pending; the receiver comes up; the server starts again on the same data.
    server.child.kill().unwrap();
    server.child.wait().unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let listener = TcpListener::bind(("127.0.0.1", port)).expect("the receiver's port is free again");
    std::thread::spawn({
        let seen = Arc::clone(&seen);
        move || receive(listener, seen)
    });
    let mut server = start(dir.path());
    let jobs = format!("/v1/jobs?batch_id={}&limit=500", queued["batch_id"].as_str().unwrap());
    wait_until("every job to finish", Duration::from_secs(120), || {
        let (_, jobs) = call(&server.addr, &key, "GET", &jobs, None);
        jobs.as_array().is_some_and(|j| j.len() == 10 && j.iter().all(|j| j["state"] == "succeeded"))
    });
    let logged = || -> Vec<String> {
        let (_, events) = call(&server.addr, &key, "GET", "/v1/events?limit=500", None);
        events.as_array().unwrap().iter().map(|e| e["id"].as_str().unwrap().to_owned()).collect()
    };
    wait_until("the receiver to have every event", Duration::from_secs(120), || {
        let got: HashSet<String> = seen.lock().unwrap().iter().cloned().collect();
        logged().iter().all(|id| got.contains(id))
    });

    // Assert: every event once; the log and the deliveries agree.
    let events = logged();
    let mut counts: HashMap<String, usize> = HashMap::new();
    for id in seen.lock().unwrap().iter() {
        *counts.entry(id.clone()).or_default() += 1;
    }
    assert!(events.len() >= 40, "10 jobs make at least 4 events each: {}", events.len());
    for id in &events {
        assert_eq!(counts.get(id), Some(&1), "event {id} delivered once");
    }
    let (_, pending) = call(&server.addr, &key, "GET", &deliveries, None);
    assert_eq!(pending, json!([]));
    server.child.kill().unwrap();
    server.child.wait().unwrap();
}
