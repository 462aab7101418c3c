//! The server's log as an operator's collector reads it: one JSON line per request with its route template, status,
//! latency, dialect, instance and request id; failures that answer 4xx logged too; no colour codes off a terminal.

mod common;

use std::fs::File;

use common::{Server, convene};
use serde_json::Value;

fn request(server: &Server, head: &str, body: &str) -> String {
    server.exchange(&format!(
        "{head}\r\nHost: {}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        server.addr,
        body.len()
    ))
}

#[test]
fn every_request_has_one_json_line_with_its_route_status_dialect_instance_and_id() {
    // Arrange
    let dir = tempfile::tempdir().unwrap();
    let log_path = dir.path().join("convene.log");
    let server = Server::start_logging_to(
        convene(dir.path()).env("CONVENE_LOGGING__FORMAT", "json").env("CONVENE_LOG", "info"),
        File::create(&log_path).unwrap(),
    );
    let key = server.api_key();
    let instance = server.sandbox_instance();
    let token = server.lines.iter().find_map(|l| l.trim().strip_prefix("token:")).unwrap().trim().to_owned();

    // Act: a success with the client's request id, then 401, 404, 415 and a Green call with the instance's token.
    let ok = request(
        &server,
        &format!("GET /v1/instances/{instance} HTTP/1.1\r\nAuthorization: Bearer {key}\r\nX-Request-Id: trace-42"),
        "",
    );
    request(&server, "GET /v1/groups HTTP/1.1", "");
    let missing = request(&server, &format!("GET /v1/nowhere/7 HTTP/1.1\r\nAuthorization: Bearer {key}"), "");
    request(
        &server,
        &format!("POST /v1/groups HTTP/1.1\r\nAuthorization: Bearer {key}\r\nContent-Type: text/plain"),
        "{}",
    );
    request(&server, &format!("GET /waInstance{instance}/getStateInstance/{token} HTTP/1.1"), "");
    // A creation whose client hangs up at once, on a network slowed to 300 ms: it runs to its end, and so does its line.
    let slow = serde_json::json!({"latency_ms": 300});
    assert_eq!(server.call(&key, "PUT", "/v1/sandbox/faults", Some(&slow)).0, 200);
    let body =
        serde_json::json!({"instance_id": instance, "subject": "Gone", "participants": ["+17137157533"]}).to_string();
    let mut hung_up = std::net::TcpStream::connect(&server.addr).unwrap();
    let post = format!(
        "POST /v1/groups HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {key}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n{body}",
        server.addr,
        body.len()
    );
    std::io::Write::write_all(&mut hung_up, post.as_bytes()).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(50));
    drop(hung_up);
    let started = std::time::Instant::now();
    while !std::fs::read_to_string(&log_path).unwrap().contains(r#""route":"/v1/groups","status":201"#) {
        let log = std::fs::read_to_string(&log_path).unwrap();
        assert!(started.elapsed().as_secs() < 10, "no line for the hung-up creation:\n{log}");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    // And a 502: the sandbox network fails every call.
    let (status, _) = server.call(&key, "PUT", "/v1/sandbox/faults", Some(&serde_json::json!({"error_rate": 1.0})));
    assert_eq!(status, 200);
    let create = serde_json::json!({"instance_id": instance, "subject": "Fails", "participants": ["+17137157533"]});
    assert_eq!(server.call(&key, "POST", "/v1/groups", Some(&create)).0, 502);
    server.stop_with("-INT");

    // Assert: the id is echoed or made up; every line parses; each request has its own line.
    assert!(ok.to_ascii_lowercase().contains("\r\nx-request-id: trace-42\r\n"), "{ok}");
    let made_up =
        missing.lines().find_map(|l| l.to_ascii_lowercase().strip_prefix("x-request-id: ").map(str::to_owned));
    assert!(made_up.is_some_and(|id| uuid::Uuid::parse_str(id.trim()).is_ok()), "{missing}");
    let text = std::fs::read_to_string(&log_path).unwrap();
    assert!(!text.contains('\u{1b}'), "no colour codes in a log file");
    let lines: Vec<Value> =
        text.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"))).collect();
    let requests: Vec<&Value> =
        lines.iter().filter(|l| l["message"] == "request" || l["message"] == "request failed").collect();
    let line = |route: &str, status: u16| {
        requests
            .iter()
            .find(|l| l["route"] == route && l["status"] == status)
            .unwrap_or_else(|| panic!("no line for {route} {status} in {requests:#?}"))
    };
    let first = line("/v1/instances/{id}", 200);
    assert_eq!((&first["method"], &first["dialect"]), (&"GET".into(), &"native".into()), "{first}");
    assert_eq!(first["span"]["request_id"], "trace-42", "{first}");
    assert!(first["latency_ms"].is_u64(), "{first}");
    assert_eq!(line("/v1/groups", 401)["level"], "INFO");
    assert_eq!(line("unmatched", 404)["method"], "GET");
    assert_eq!(line("/v1/groups", 415)["method"], "POST");
    let green = line("/waInstance{id}/getStateInstance/{token}", 200);
    assert_eq!((&green["dialect"], &green["instance"]), (&"green".into(), &instance.into()), "{green}");
    let failed = line("/v1/groups", 502);
    assert_eq!((&failed["level"], &failed["message"]), (&"ERROR".into(), &"request failed".into()), "{failed}");
    assert!(failed["cause"].as_str().is_some_and(|c| c.contains("Connector(Other(")), "the cause chain: {failed}");
    let failures = lines.iter().filter(|l| l["level"] == "ERROR").count();
    assert_eq!(failures, 1, "the failure is logged once, on its request's line: {lines:#?}");
    assert_eq!(line("/v1/groups", 201)["method"], "POST", "the hung-up creation");
    assert_eq!(requests.len(), 9, "one line per request: {requests:#?}");
}
