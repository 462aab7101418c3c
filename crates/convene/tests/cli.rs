//! The binary as a new user runs it: first start, configuration from file and environment, Ctrl-C.

mod common;

use common::{Server, convene};

#[test]
fn the_first_start_sets_everything_up_and_ctrl_c_stops_cleanly() {
    // Arrange: an empty directory, the port from the environment.
    let dir = tempfile::tempdir().unwrap();

    // Act
    let server = Server::start(convene(dir.path()).env("CONVENE_SOMETHING_ELSE", "not configuration"));

    // Assert: the database exists, a key and an instance were printed once, the API answers.
    assert!(dir.path().join("data/convene.db").exists());
    let text = server.lines.join("\n");
    assert!(server.api_key().starts_with("cvn_"), "{text}");
    assert!(text.contains("id:") && text.contains("token:") && text.contains("+12015550100"), "{text}");
    assert!(server.get_text("/healthz").starts_with("HTTP/1.1 200"));
    let docs = server.get_text("/docs/");
    assert!(docs.starts_with("HTTP/1.1 200"), "{docs}");
    server.stop_with("-INT");

    // A second start reuses everything and prints no new key; SIGTERM (a service manager's stop) is clean too.
    let server = Server::start(&mut convene(dir.path()));
    assert!(!server.lines.join("\n").contains("API key"), "{:?}", server.lines);
    server.stop_with("-TERM");
}

#[test]
fn a_config_file_is_layered_under_the_environment() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("convene.toml"),
        "listen = \"127.0.0.1:1\"\ndata_dir = \"state\"\ndatabase_url = \"sqlite://state/gateway.db\"\n",
    )
    .unwrap();
    let server = Server::start(convene(dir.path()).args(["--config", "convene.toml"]));
    assert!(dir.path().join("state/gateway.db").exists(), "the file chose the database");
    assert!(dir.path().join("state/sandbox.db").exists(), "the file chose the data directory");
    assert_ne!(server.addr, "127.0.0.1:1", "the environment overrides the file");
    server.stop_with("-INT");
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
fn a_second_server_or_a_migration_beside_a_running_one_is_refused_and_a_killed_one_leaves_no_lock() {
    // Arrange: a server running.
    let dir = tempfile::tempdir().unwrap();
    let first = Server::start(&mut convene(dir.path()));
    let second = |command: &str, data_dir: &str, database: &str| {
        let mut child = convene(dir.path())
            .arg(command)
            .env("CONVENE_DATA_DIR", data_dir)
            .env("CONVENE_DATABASE_URL", database)
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        // One that started would run on: it has 20 s to be refused.
        let started = std::time::Instant::now();
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            if started.elapsed() > std::time::Duration::from_secs(20) {
                child.kill().unwrap();
                panic!("`convene {command}` beside a running server was not refused");
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        };
        let mut err = String::new();
        std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
        (status.success(), err)
    };

    // Act: a second one on its data directory; then on its database from another directory; a migration.
    let same_directory = second("serve", "data", "sqlite://elsewhere/convene.db");
    let same_database = second("serve", "elsewhere", "sqlite://./data/convene.db");
    let migration = second("migrate", "data", "sqlite://data/convene.db");

    // Assert: each refused, saying why; the first one still answers.
    for (refused, guarded) in
        [(same_directory, "data directory"), (same_database, "SQLite database"), (migration, "data directory")]
    {
        assert!(!refused.0 && refused.1.contains(&format!("is running on the {guarded}")), "{}", refused.1);
    }
    assert!(first.get_text("/healthz").starts_with("HTTP/1.1 200"));

    // Keys are still made on the host beside it (the database alone), and the running server takes them.
    let output = convene(dir.path()).args(["key", "create", "--name", "beside"]).output().unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let key = String::from_utf8(output.stdout).unwrap().trim().to_owned();
    assert_eq!(first.call(&key, "GET", "/v1/instances", None).0, 200);

    // A server killed with SIGKILL holds nothing: the next one starts.
    first.kill();
    Server::start(&mut convene(dir.path())).stop_with("-INT");
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
    Server::start(&mut convene(dir.path())).stop_with("-INT");

    // Act
    let output = convene(dir.path()).args(["key", "create", "--name", "ops"]).output().unwrap();

    // Assert: one line, a key the API accepts.
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let key = String::from_utf8(output.stdout).unwrap().trim().to_owned();
    assert!(key.starts_with("cvn_") && !key.contains('\n'), "{key}");
    let server = Server::start(&mut convene(dir.path()));
    let (status, body) = server.call(&key, "GET", "/v1/instances", None);
    assert_eq!(status, 200, "{body}");
    server.stop_with("-INT");
}

#[test]
fn key_create_list_and_revoke_manage_scoped_and_read_only_keys_in_the_database() {
    // Arrange: a gateway that has been set up (an admin key and a sandbox instance), then stopped.
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&mut convene(dir.path()));
    let instance = server.sandbox_instance();
    server.stop_with("-INT");
    let run = |args: &[&str]| {
        let output = convene(dir.path()).args(args).output().unwrap();
        let (out, err) = (String::from_utf8(output.stdout).unwrap(), String::from_utf8(output.stderr).unwrap());
        (output.status.success(), out, err)
    };

    // Act: a read-only key limited to the instance, then the list.
    let (ok, key, err) = run(&["key", "create", "--name", "crm", "--instance", &instance.to_string(), "--read-only"]);
    assert!(ok, "{err}");
    let key = key.trim().to_owned();
    let (ok, list, err) = run(&["key", "list"]);

    // Assert: both keys listed with prefix, scope and access, never a secret.
    assert!(ok, "{err}");
    let crm = list.lines().find(|l| l.contains(" crm ")).unwrap_or_else(|| panic!("{list}"));
    assert!(crm.contains(&key[..10]) && crm.contains(&instance.to_string()) && crm.contains("read-only"), "{crm}");
    assert!(list.lines().any(|l| l.contains(" admin ") && l.contains("all instances")), "{list}");
    assert!(!list.contains(&key), "{list}");
    let server = Server::start(&mut convene(dir.path()));
    let (status, body) = server.call(&key, "GET", "/v1/instances", None);
    assert_eq!((status, body["items"].as_array().map(Vec::len)), (200, Some(1)), "{body}");
    let (status, body) = server.call(&key, "POST", "/v1/instances", Some(&serde_json::json!({})));
    assert_eq!((status, &body["code"]), (403, &serde_json::json!("read_only_key")), "{body}");
    server.stop_with("-INT");

    // Revoking it: refused from then on. The only admin key stays.
    let id = crm.split_whitespace().next().unwrap();
    let (ok, _, err) = run(&["key", "revoke", id]);
    assert!(ok, "{err}");
    let admin = list.lines().find(|l| l.contains(" admin ")).unwrap().split_whitespace().next().unwrap().to_owned();
    let (ok, _, err) = run(&["key", "revoke", &admin]);
    assert!(!ok && err.contains("last key"), "{err}");
    let server = Server::start(&mut convene(dir.path()));
    assert_eq!(server.call(&key, "GET", "/v1/instances", None).0, 401);
    server.stop_with("-INT");
}
