//! The docs page in a real headless browser, with every host but loopback unresolvable: it must render from what
//! we serve alone. Needs Chromium; `scripts/test.sh` installs it and sets `CONVENE_REQUIRE_BROWSER=1`, so in CI a
//! missing browser is a failure, not a skip.

use std::process::Command;

use crate::helpers::spawn_app;

fn find_chromium() -> Option<String> {
    ["chromium", "chromium-browser", "google-chrome"].into_iter().find_map(|name| {
        let out = Command::new("sh").args(["-c", &format!("command -v {name}")]).output().ok()?;
        out.status.success().then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
    })
}

#[tokio::test]
async fn the_docs_page_renders_every_operation_in_a_headless_browser_offline() {
    let Some(chromium) = find_chromium() else {
        assert!(
            std::env::var_os("CONVENE_REQUIRE_BROWSER").is_none(),
            "CONVENE_REQUIRE_BROWSER is set but no Chromium"
        );
        eprintln!("skipped: no Chromium on this machine (scripts/test.sh installs it)");
        return;
    };
    let app = spawn_app().await;
    let url = app.url("/docs/");
    let profile = tempfile::tempdir().unwrap();
    let profile_arg = format!("--user-data-dir={}", profile.path().display());
    let dom = tokio::task::spawn_blocking(move || {
        Command::new("timeout")
            .arg("120")
            .arg(chromium)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
                "--virtual-time-budget=20000",
                "--dump-dom",
                &profile_arg,
                &url,
            ])
            .output()
            .expect("run chromium")
    })
    .await
    .unwrap();
    let html = String::from_utf8_lossy(&dom.stdout);
    assert!(dom.status.success(), "chromium failed: {}", String::from_utf8_lossy(&dom.stderr));
    // Swagger UI fetched /openapi.json and rendered an operation block per route.
    assert!(html.contains("opblock-summary-path"), "operations not rendered: {html}");
    for path in ["/v1/groups", "/v1/instances", "/v1/sandbox/faults"] {
        assert!(html.contains(&format!("data-path=\"{path}\"")), "{path} not rendered");
    }
    assert!(html.contains("Convene"));
}
