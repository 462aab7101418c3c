//! The binary as an operator meets it: files only its owner can read, output that ends quietly in a pipe, and
//! `instance pair` finding the server from the configuration.

mod common;

use std::io::Read as _;
use std::os::unix::fs::PermissionsExt as _;
use std::process::Stdio;
use std::time::Duration;

use common::{Server, convene, wait_until};
use serde_json::json;

fn mode(path: &std::path::Path) -> u32 {
    std::fs::metadata(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())).permissions().mode() & 0o777
}

#[test]
fn the_data_directory_and_every_file_in_it_are_for_the_owner_only() {
    // Arrange: a data directory an older version left readable by everyone.
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o755)).unwrap();

    // Act: a first start, with a real number's device keys written (it is never dialled here).
    let server = Server::start(convene(dir.path()).env("CONVENE_WHATSAPP__CONNECT", "false"));
    let key = server.api_key();
    let (status, created) = server.call(&key, "POST", "/v1/instances", Some(&json!({"kind": "whatsapp"})));
    assert_eq!(status, 201, "{created}");
    let path = format!("/v1/instances/{}", created["id"]);
    wait_until("the device keys", Duration::from_secs(30), || {
        server.call(&key, "GET", &path, None).1["state"]["status"] == "disconnected"
    });

    // Assert
    assert_eq!(mode(&data), 0o700, "the data directory");
    let files: Vec<_> = walk(&data);
    for name in
        ["convene.db", "convene.db-wal", "convene.db-shm", "sandbox.db", "sandbox.db-wal", "webhook-secrets.key"]
    {
        assert!(files.iter().any(|f| f.ends_with(name)), "{name} is among {files:?}");
    }
    for file in &files {
        assert_eq!(mode(file), 0o600, "{}", file.display());
    }
}

/// Every file below `dir`.
fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() { files.extend(walk(&path)) } else { files.push(path) }
    }
    files
}

#[test]
fn the_openapi_command_ends_quietly_when_its_reader_stops_early() {
    // Arrange: `convene openapi | head -c 100`.
    let dir = tempfile::tempdir().unwrap();
    let mut child = convene(dir.path()).arg("openapi").stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();

    // Act: read the first bytes and hang up.
    let mut first = [0u8; 100];
    child.stdout.take().unwrap().read_exact(&mut first).unwrap();
    let output = child.wait_with_output().unwrap();

    // Assert
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{}: {stderr}", output.status);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(first.starts_with(b"{"));
}

#[test]
fn instance_pair_reaches_the_server_at_the_configured_listen_address_without_a_url() {
    // Arrange: a server on a port the configuration names (not the default 8080).
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let listen = format!("127.0.0.1:{port}");
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(convene(dir.path()).env("CONVENE_LISTEN", &listen));
    let sandbox = server.sandbox_instance().to_string();

    // Act: the same configuration, no --url.
    let output = convene(dir.path())
        .env("CONVENE_LISTEN", &listen)
        .env("CONVENE_API_KEY", server.api_key())
        .args(["instance", "pair", &sandbox, "--timeout", "10"])
        .output()
        .unwrap();

    // Assert: a sandbox number is connected from the start, so pairing ends at once.
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}{}", String::from_utf8_lossy(&output.stderr));
    assert!(stdout.contains("Paired: +"), "{stdout}");
}
