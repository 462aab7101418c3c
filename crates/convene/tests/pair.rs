//! `convene instance pair` as a user runs it, against a real server on loopback. The server runs in this process so
//! the test can deliver what WhatsApp would (a QR code, its rotation, the pairing) through the connector's own event
//! handling; WhatsApp itself is never dialled.

mod common;

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::mpsc;
use std::time::Duration;

use convene_core::{PhoneNumber, SystemClock};
use convene_server::{AppState, Config};
use convene_whatsapp::SimulatedEvent;

const FIRST_QR: &str = "2@first7Xb9Q0xk2bVg7cC7nA1,bFzJ4Vm2x3lq+9qxwAbC=,Q2h5cWq0q1cZ=,7yX9c5X2c0MQ=";
const SECOND_QR: &str = "2@second0xk2bVg7cC7nA1aa,bFzJ4Vm2x3lq+9qxwAbC=,Q2h5cWq0q1cZ=,7yX9c5X2c0MQ=";

/// Waits for a line of the child's output that satisfies `matches`, collecting everything read. Blocks in place,
/// so the server's tasks move to the other worker meanwhile.
fn wait_for(lines: &mpsc::Receiver<String>, seen: &mut Vec<String>, matches: impl Fn(&str) -> bool) {
    tokio::task::block_in_place(|| wait_for_line(lines, seen, matches));
}

fn wait_for_line(lines: &mpsc::Receiver<String>, seen: &mut Vec<String>, matches: impl Fn(&str) -> bool) {
    loop {
        match lines.recv_timeout(Duration::from_secs(30)) {
            Ok(line) => {
                let done = matches(&line);
                seen.push(line);
                if done {
                    return;
                }
            }
            Err(_) => panic!("the expected output never came; got:\n{}", seen.join("\n")),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pair_draws_each_qr_code_once_and_ends_when_paired() {
    // Arrange: a server with a whatsapp instance waiting for its first QR code.
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::for_directory(dir.path());
    config.set("whatsapp.connect", false).unwrap();
    config.worker.enabled = false;
    let state = AppState::open(&config, Arc::new(SystemClock)).await.unwrap();
    let api_key = state.service.bootstrap(false).await.unwrap().expect("first run").api_key;
    let (instance, _token) = state.service.instances().create(convene_whatsapp::KIND, None, None).await.unwrap();
    state.service.whatsapp().open_and_wait(instance.id).await.unwrap();
    let server = common::InProcess::serve(state, config).await;
    let (service, addr) = (server.service.clone(), server.addr);
    let whatsapp = service.whatsapp();
    whatsapp
        .simulate(instance.id, SimulatedEvent::Qr { code: FIRST_QR.into(), valid_for: Duration::from_secs(60) })
        .unwrap();

    // Act: the command as a user types it.
    let mut child = Command::new(env!("CARGO_BIN_EXE_convene"))
        .args(["instance", "pair", &instance.id.to_string(), "--url", &format!("http://{addr}"), "--timeout", "60"])
        .env("CONVENE_API_KEY", &api_key)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let lines = common::stdout_lines(&mut child);
    let mut seen = Vec::new();
    // Each drawing ends with the scanning instructions.
    wait_for(&lines, &mut seen, |l| l.contains("Linked devices"));
    let first_drawing = seen.clone();
    whatsapp
        .simulate(instance.id, SimulatedEvent::Qr { code: SECOND_QR.into(), valid_for: Duration::from_secs(60) })
        .unwrap();
    wait_for(&lines, &mut seen, |l| l.contains("Linked devices"));
    whatsapp
        .simulate(instance.id, SimulatedEvent::Paired { phone: PhoneNumber::parse("+12015550188").unwrap() })
        .unwrap();
    // WhatsApp connects the new device after the pairing is recorded; keep that order here too.
    while service.instances().get(instance.id).await.unwrap().0.phone.is_none() {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    whatsapp.simulate(instance.id, SimulatedEvent::Connected).unwrap();
    wait_for(&lines, &mut seen, |l| l.starts_with("Paired"));
    let status = tokio::task::spawn_blocking(move || child.wait()).await.unwrap().unwrap();

    // Assert
    assert!(status.success(), "{status}");
    let drawing = |payload: &str| convene_server::qr::terminal(payload).unwrap();
    let output = seen.join("\n");
    assert!(first_drawing.join("\n").contains(drawing(FIRST_QR).trim_end()), "the first code is drawn:\n{output}");
    assert!(output.contains(drawing(SECOND_QR).trim_end()), "the rotated code is drawn:\n{output}");
    assert_eq!(seen.iter().filter(|l| l.contains("Linked devices")).count(), 2, "each code once:\n{output}");
    assert_eq!(seen.last().unwrap(), "Paired: +12015550188");

    server.stop().await;
}

/// This machine cannot reach WhatsApp (no internet but package registries): `pair` must say so instead of waiting
/// silently. Where WhatsApp answers, a QR code is drawn instead and there is no outage to show.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pair_says_why_there_is_no_qr_code_when_whatsapp_cannot_be_reached() {
    // Arrange: a server that dials WhatsApp, with a new whatsapp instance.
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::for_directory(dir.path());
    config.set("whatsapp.connect", true).unwrap();
    config.worker.enabled = false;
    let state = AppState::open(&config, Arc::new(SystemClock)).await.unwrap();
    let api_key = state.service.bootstrap(false).await.unwrap().expect("first run").api_key;
    let (instance, _token) = state.service.instances().create(convene_whatsapp::KIND, None, None).await.unwrap();
    let server = common::InProcess::serve(state, config).await;
    let addr = server.addr;

    // Act
    let mut child = Command::new(env!("CARGO_BIN_EXE_convene"))
        .args(["instance", "pair", &instance.id.to_string(), "--url", &format!("http://{addr}"), "--timeout", "20"])
        .env("CONVENE_API_KEY", &api_key)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let lines = common::stdout_lines(&mut child);
    let mut seen = Vec::new();
    wait_for(&lines, &mut seen, |l| l.starts_with("No QR code: ") || l.contains("Linked devices"));
    child.kill().unwrap();
    child.wait().unwrap();

    // Assert
    let last = seen.last().unwrap();
    if last.contains("Linked devices") {
        eprintln!("WhatsApp answered from this machine: there is no outage to show here");
    } else {
        assert!(last.starts_with("No QR code: WhatsApp cannot be reached (since "), "{}", seen.join("\n"));
        assert!(last.contains("web.whatsapp.com"), "the error in words: {last}");
    }
    server.stop().await;
}
