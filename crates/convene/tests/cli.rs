//! The binary as a new user runs it: first start, configuration from file and environment, Ctrl-C.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

fn convene(dir: &std::path::Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_convene"));
    cmd.current_dir(dir).env_remove("CONVENE_CONFIG").env("CONVENE_LOG", "warn");
    cmd
}

/// Starts `serve` and collects its stdout lines until it says where it listens.
fn start(mut cmd: Command) -> (Child, Vec<String>, String) {
    let mut child = cmd.arg("serve").stdout(Stdio::piped()).stderr(Stdio::inherit()).spawn().expect("spawn convene");
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
        match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(line) => {
                if let Some(rest) = line.strip_prefix("Listening on http://") {
                    let addr = rest.split_whitespace().next().unwrap().to_owned();
                    lines.push(line);
                    return (child, lines, addr);
                }
                lines.push(line);
            }
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("convene did not start (its log is above): {lines:?}");
            }
        }
    }
}

fn http_get(addr: &str, path: &str) -> String {
    let mut stream = TcpStream::connect(addr).expect("connect");
    write!(stream, "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    response
}

/// Sends Ctrl-C (SIGINT) and waits for a clean exit.
fn interrupt(child: Child) {
    stop_with(child, "-INT");
}

/// Sends `signal` (`-INT`, `-TERM`) and waits for a clean exit.
fn stop_with(mut child: Child, signal: &str) {
    let status = Command::new("kill").args([signal, &child.id().to_string()]).status().expect("kill");
    assert!(status.success());
    for _ in 0..200 {
        if let Some(exit) = child.try_wait().unwrap() {
            assert!(exit.success(), "exit status {exit}");
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("convene did not stop within 10 s of {signal}");
}

#[test]
fn the_first_start_sets_everything_up_and_ctrl_c_stops_cleanly() {
    // Arrange: an empty directory, the port from the environment.
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = convene(dir.path());
    cmd.env("CONVENE_LISTEN", "127.0.0.1:0").env("CONVENE_SOMETHING_ELSE", "not configuration");

    // Act
    let (child, lines, addr) = start(cmd);

    // Assert: the database exists, a key and an instance were printed once, the API answers.
    assert!(dir.path().join("data/convene.db").exists());
    let text = lines.join("\n");
    let key = text.lines().find_map(|l| l.trim().strip_prefix("API key:")).map(str::trim).expect(&text).to_owned();
    assert!(key.starts_with("cvn_"), "{text}");
    assert!(text.contains("id:") && text.contains("token:") && text.contains("+12015550100"), "{text}");
    assert!(http_get(&addr, "/healthz").starts_with("HTTP/1.1 200"));
    let docs = http_get(&addr, "/docs/");
    assert!(docs.starts_with("HTTP/1.1 200"), "{docs}");
    interrupt(child);

    // A second start reuses everything and prints no new key; SIGTERM (a service manager's stop) is clean too.
    let mut cmd = convene(dir.path());
    cmd.env("CONVENE_LISTEN", "127.0.0.1:0");
    let (child, lines, _) = start(cmd);
    assert!(!lines.join("\n").contains("API key"), "{lines:?}");
    stop_with(child, "-TERM");
}

#[test]
fn a_config_file_is_layered_under_the_environment() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("convene.toml"),
        "listen = \"127.0.0.1:1\"\ndata_dir = \"state\"\ndatabase_url = \"sqlite://state/gateway.db\"\n",
    )
    .unwrap();
    let mut cmd = convene(dir.path());
    cmd.args(["--config", "convene.toml"]).env("CONVENE_LISTEN", "127.0.0.1:0");
    let (child, _, addr) = start(cmd);
    assert!(dir.path().join("state/gateway.db").exists(), "the file chose the database");
    assert!(dir.path().join("state/sandbox.json").exists(), "the file chose the data directory");
    assert_ne!(addr, "127.0.0.1:1", "the environment overrides the file");
    interrupt(child);
}

#[test]
fn a_bad_config_is_refused_with_a_message() {
    let dir = tempfile::tempdir().unwrap();
    let output = convene(dir.path()).arg("serve").env("CONVENE_DATABASE_URL", "mysql://x").output().unwrap();
    assert!(!output.status.success());
    let err = String::from_utf8_lossy(&output.stderr);
    assert!(err.contains("not supported"), "{err}");
}

#[test]
fn the_openapi_command_prints_the_committed_document() {
    let dir = tempfile::tempdir().unwrap();
    let output = convene(dir.path()).arg("openapi").output().unwrap();
    assert!(output.status.success());
    let committed = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/../../openapi.json")).unwrap();
    assert!(output.stdout == committed, "run `cargo run -- openapi --out openapi.json`");
}

#[test]
fn config_default_prints_the_commented_defaults() {
    let dir = tempfile::tempdir().unwrap();
    let output = convene(dir.path()).args(["config", "default"]).output().unwrap();
    let text = String::from_utf8(output.stdout).unwrap();
    assert!(text.contains("listen = \"127.0.0.1:8080\"") && text.contains("# "), "{text}");
}

#[test]
fn key_create_adds_a_working_key_to_an_existing_gateway() {
    // Arrange: a gateway that has been set up, then stopped.
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = convene(dir.path());
    cmd.env("CONVENE_LISTEN", "127.0.0.1:0");
    let (child, _, _) = start(cmd);
    interrupt(child);

    // Act
    let output = convene(dir.path()).args(["key", "create", "--name", "ops"]).output().unwrap();

    // Assert: one line, a key the API accepts.
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let key = String::from_utf8(output.stdout).unwrap().trim().to_owned();
    assert!(key.starts_with("cvn_") && !key.contains('\n'), "{key}");
    let mut cmd = convene(dir.path());
    cmd.env("CONVENE_LISTEN", "127.0.0.1:0");
    let (child, _, addr) = start(cmd);
    let mut stream = TcpStream::connect(&addr).unwrap();
    write!(
        stream,
        "GET /v1/instances HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {key}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    interrupt(child);
}
