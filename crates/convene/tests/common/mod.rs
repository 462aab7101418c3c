//! What the tests of the real binary share: starting `convene serve` in a directory, talking to it over a plain
//! socket, and waiting for a condition with a bound.

// Each test file compiles this module on its own and uses only part of it.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

/// `convene` run in `dir`, listening on a free loopback port, with no configuration file from the environment.
pub fn convene(dir: &std::path::Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_convene"));
    cmd.current_dir(dir).env_remove("CONVENE_CONFIG").env("CONVENE_LOG", "warn").env("CONVENE_LISTEN", "127.0.0.1:0");
    cmd
}

/// A running `convene serve`; killed when dropped, so a failing test leaves no process behind.
pub struct Server {
    child: Option<Child>,
    pub addr: String,
    /// What it printed before it said where it listens (the first start's API key and sandbox instance among them).
    pub lines: Vec<String>,
}

impl Server {
    /// Starts `serve` and collects its stdout lines until it says where it listens.
    pub fn start(cmd: &mut Command) -> Server {
        Self::start_logging_to(cmd, Stdio::inherit())
    }

    /// `start`, with the server's log (standard error) going to `log`.
    pub fn start_logging_to(cmd: &mut Command, log: impl Into<Stdio>) -> Server {
        let mut child = cmd.arg("serve").stdout(Stdio::piped()).stderr(log).spawn().expect("spawn convene");
        let rx = stdout_lines(&mut child);
        let mut lines = Vec::new();
        loop {
            let Ok(line) = rx.recv_timeout(Duration::from_secs(60)) else {
                let _ = child.kill();
                let _ = child.wait();
                panic!("convene did not start (its log is above): {lines:?}");
            };
            if let Some(rest) = line.strip_prefix("Listening on http://") {
                let addr = rest.split_whitespace().next().unwrap().to_owned();
                return Server { child: Some(child), addr, lines };
            }
            lines.push(line);
        }
    }

    /// The admin API key a first start prints.
    pub fn api_key(&self) -> String {
        self.printed("API key:").unwrap_or_else(|| panic!("no API key printed: {:?}", self.lines))
    }

    /// The id of the sandbox instance a first start creates.
    pub fn sandbox_instance(&self) -> i64 {
        let id = self.printed("id:").unwrap_or_else(|| panic!("no instance printed: {:?}", self.lines));
        id.parse().expect("a numeric instance id")
    }

    fn printed(&self, label: &str) -> Option<String> {
        self.lines.iter().find_map(|l| l.trim().strip_prefix(label)).map(|v| v.trim().to_owned())
    }

    /// A JSON request with a bearer key; returns the status and the body (`null` when empty).
    pub fn call(&self, key: &str, method: &str, path: &str, body: Option<&Value>) -> (u16, Value) {
        let body = body.map(Value::to_string).unwrap_or_default();
        let response = self.exchange(&format!(
            "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {key}\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len(),
            addr = self.addr,
        ));
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

    /// An unauthenticated GET; returns the whole response as text.
    pub fn get_text(&self, path: &str) -> String {
        self.exchange(&format!("GET {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n", self.addr))
    }

    /// Sends `request` as written (an HTTP/1.1 request that closes the connection); returns the whole response.
    pub fn exchange(&self, request: &str) -> String {
        let mut stream = TcpStream::connect(&self.addr).expect("connect");
        stream.write_all(request.as_bytes()).unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).unwrap();
        response
    }

    /// `kill -9`: no chance to flush or shut down.
    pub fn kill(mut self) {
        self.kill_now();
    }

    /// Sends `signal` (`-INT` for Ctrl-C, `-TERM` for a service manager's stop) and waits up to 10 s for a clean exit.
    pub fn stop_with(mut self, signal: &str) {
        let mut child = self.child.take().unwrap();
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

    fn kill_now(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill_now();
    }
}

/// The lines a child started with a piped stdout prints, as they come (read on a thread of their own).
pub fn stdout_lines(child: &mut Child) -> mpsc::Receiver<String> {
    let stdout = child.stdout.take().expect("a piped stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// Polls `done` every 100 ms until it holds; fails the test after `limit`.
pub fn wait_until(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < limit, "gave up waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A server in the test's own process, on 127.0.0.1, for tests that act as WhatsApp through the connector's
/// simulated events while a client (the CLI, a browser) talks to it. Stops when `stop` is called.
pub struct InProcess {
    pub addr: std::net::SocketAddr,
    pub service: convene_server::Service,
    shutdown: tokio_util::sync::CancellationToken,
    server: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl InProcess {
    /// Serves `state` with `config` on a free loopback port.
    pub async fn serve(state: convene_server::AppState, config: convene_server::Config) -> Self {
        let service = state.service.clone();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("a free loopback port");
        let addr = listener.local_addr().expect("the listener's address");
        let shutdown = tokio_util::sync::CancellationToken::new();
        let server = tokio::spawn({
            let shutdown = shutdown.clone();
            async move { convene_server::serve(listener, state, &config, shutdown).await }
        });
        Self { addr, service, shutdown, server }
    }

    /// Shuts down and waits for the server to finish; panics if it failed.
    pub async fn stop(self) {
        self.shutdown.cancel();
        self.server.await.expect("the server task").expect("the server ran");
    }
}

/// A webhook receiver on a blocking socket: records each request's `webhook-id` and answers 204.
pub fn receive(listener: TcpListener, seen: Arc<Mutex<Vec<String>>>) {
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
