//! The console in a real headless Chromium, driven by Playwright (`tests/console/console.mjs`, with Debian's
//! Chromium; playwright-core downloads no browser). The server runs in this process so the test can make WhatsApp
//! "send" a QR code and pair through the connector's simulated events when the script asks (`NEED …` lines).
//! Screenshots of every page, at 1280 px and at a phone's 390 px, land in `$CARGO_TARGET_TMPDIR/console-screenshots`.
//!
//! `scripts/test.sh` installs the npm package (`npm ci` in tests/console) and Chromium and runs this test with
//! `CONVENE_REQUIRE_BROWSER=1`, so there a missing piece fails it. Elsewhere it is ignored (listed as skipped):
//! `cargo nextest run --workspace --test console --run-ignored only`.

mod common;

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use convene_core::{PhoneNumber, SystemClock};
use convene_server::auth::KeyGrant;
use convene_server::{AppState, Config};
use convene_whatsapp::SimulatedEvent;

const SCRIPT_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/console");
const PAIRED_PHONE: &str = "+12015550188";

fn find_program(names: &[&str]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    names.iter().flat_map(|name| std::env::split_paths(&path).map(move |dir| dir.join(name))).find(|p| p.is_file())
}

/// Node, Chromium and the installed npm package, or `None` when the test should be skipped.
fn tools() -> Option<(PathBuf, PathBuf)> {
    let node = find_program(&["node"]);
    let chromium = find_program(&["chromium", "chromium-browser", "google-chrome"]);
    let package = Path::new(SCRIPT_DIR).join("node_modules/playwright-core/package.json").is_file();
    match (node, chromium, package) {
        (Some(node), Some(chromium), true) => Some((node, chromium)),
        found => {
            assert!(
                std::env::var_os("CONVENE_REQUIRE_BROWSER").is_none(),
                "CONVENE_REQUIRE_BROWSER is set but node, Chromium or playwright-core is missing: {found:?}"
            );
            eprintln!("skipped: needs node, Chromium and `npm ci` in {SCRIPT_DIR} (scripts/test.sh does both)");
            None
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Chromium and playwright-core: scripts/test.sh runs it"]
async fn an_operator_signs_in_adds_a_number_pairs_one_by_qr_and_a_read_only_key_changes_nothing() {
    let Some((node, chromium)) = tools() else { return };
    // Arrange: a server with its bootstrap sandbox number, a read-only key, and a WhatsApp number not yet paired.
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::for_directory(dir.path());
    config.set("whatsapp.connect", false).unwrap();
    // The script's webhook receiver is on 127.0.0.1, and a failing delivery should give up within seconds.
    config.webhooks.allow_private_targets = vec!["127.0.0.1".to_owned()];
    config.webhooks.retry_schedule_secs = vec![1];
    let state = AppState::open(&config, Arc::new(SystemClock)).await.unwrap();
    let admin_key = state.service.bootstrap(true).await.unwrap().expect("first run").api_key;
    let grant = KeyGrant { instance_ids: None, read_only: true };
    let (reader_key, _) = state.service.keys().create("wallboard", grant).await.unwrap();
    let (whatsapp_number, _) =
        state.service.instances().create(convene_whatsapp::KIND, Some("Front desk phone"), None).await.unwrap();
    state.service.whatsapp().open_and_wait(whatsapp_number.id).await.unwrap();
    let server = common::InProcess::serve(state, config).await;
    let (service, addr) = (server.service.clone(), server.addr);
    let screenshots = Path::new(env!("CARGO_TARGET_TMPDIR")).join("console-screenshots");

    // Act: the script, answering what it needs.
    let mut child = Command::new(node)
        .arg("console.mjs")
        .current_dir(SCRIPT_DIR)
        .env("CONVENE_URL", format!("http://{addr}"))
        .env("CONVENE_ADMIN_KEY", &admin_key)
        .env("CONVENE_READER_KEY", &reader_key)
        .env("CONVENE_WHATSAPP_ID", whatsapp_number.id.to_string())
        .env("CONVENE_PAIRED_PHONE", PAIRED_PHONE)
        .env("CHROMIUM", chromium)
        .env("SCREENSHOTS", &screenshots)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("run node");
    let lines = common::stdout_lines(&mut child);
    let mut stdin = child.stdin.take().unwrap();
    let whatsapp = service.whatsapp();
    let mut seen = Vec::new();
    loop {
        let line = tokio::task::block_in_place(|| lines.recv_timeout(Duration::from_secs(120)));
        let Ok(line) = line else { break };
        eprintln!("console.mjs: {line}");
        match line.as_str() {
            "NEED qr" => {
                let code = "2@console7Xb9Q0xk2bVg7cC7nA1,bFzJ4Vm2x3lq+9qxwAbC=,Q2h5cWq0q1cZ=,7yX9c5X2c0MQ=".to_owned();
                whatsapp
                    .simulate(whatsapp_number.id, SimulatedEvent::Qr { code, valid_for: Duration::from_secs(60) })
                    .unwrap();
            }
            "NEED paired" => {
                let phone = PhoneNumber::parse(PAIRED_PHONE).unwrap();
                whatsapp.simulate(whatsapp_number.id, SimulatedEvent::Paired { phone }).unwrap();
                // WhatsApp connects the new device after the pairing is recorded.
                while service.instances().get(whatsapp_number.id).await.unwrap().0.phone.is_none() {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                whatsapp.simulate(whatsapp_number.id, SimulatedEvent::Connected).unwrap();
            }
            _ => {}
        }
        if line.starts_with("NEED ") {
            writeln!(stdin, "done").unwrap();
        }
        seen.push(line);
    }
    let status = tokio::task::spawn_blocking(move || child.wait()).await.unwrap().unwrap();

    // Assert
    assert!(status.success() && seen.last().map(String::as_str) == Some("PASS"), "{status}:\n{}", seen.join("\n"));
    for name in ["desktop-sign-in", "desktop-numbers", "desktop-number-qr", "phone-number-read-only"] {
        let shot = screenshots.join(format!("{name}.png"));
        assert!(std::fs::metadata(&shot).is_ok_and(|m| m.len() > 1000), "no screenshot {}", shot.display());
    }
    // Webhooks and the event monitor (`webhooksAndEvents` in the script).
    for name in [
        "desktop-webhook",
        "desktop-delivery-failed",
        "desktop-delivery-replayed",
        "desktop-events",
        "phone-webhooks",
        "phone-endpoint",
        "phone-delivery",
        "phone-events",
    ] {
        let shot = screenshots.join(format!("{name}.png"));
        assert!(std::fs::metadata(&shot).is_ok_and(|m| m.len() > 1000), "no screenshot {}", shot.display());
    }
    server.stop().await;
}
