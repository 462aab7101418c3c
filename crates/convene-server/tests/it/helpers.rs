use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use convene_core::{ManualClock, Timestamp};
use convene_server::{AppState, Config};
use convene_store::ScratchDatabase;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tempfile::TempDir;
use tokio_util::sync::CancellationToken;

/// 2026-11-23T00:00:00Z: tests run on a clock they drive.
pub const START: Timestamp = Timestamp::from_millis(1_795_392_000_000);

pub struct TestApp {
    pub addr: SocketAddr,
    pub client: reqwest::Client,
    pub api_key: String,
    /// The bootstrap sandbox instance.
    pub instance_id: i64,
    pub instance_phone: String,
    pub clock: ManualClock,
    /// The service behind the server: tests run queued jobs with `service.run_due_jobs()` after moving the clock
    /// (the background worker is off in tests).
    pub service: convene_server::Service,
    /// What the server was started with, for tests that build their own dispatcher.
    pub state: AppState,
    pub config: Config,
    pub dir: TempDir,
    /// The PostgreSQL database of this test, when the suite runs on PostgreSQL (`TEST_DATABASE_URL`).
    pub database: Option<ScratchDatabase>,
    shutdown: CancellationToken,
    server: tokio::task::JoinHandle<std::io::Result<()>>,
}

/// Starts a server on a random loopback port with its own data directory, bootstrapped as on a first run.
pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

/// `spawn_app` with the test configuration changed by `tweak`.
pub async fn spawn_app_with(tweak: impl FnOnce(&mut Config)) -> TestApp {
    let dir = tempfile::tempdir().expect("temp dir");
    let clock = ManualClock::new(START);
    let (mut config, database) = test_config(dir.path()).await;
    tweak(&mut config);
    let state = AppState::open(&config, Arc::new(clock.clone())).await.expect("app state");
    let first = state.service.bootstrap(true).await.expect("bootstrap").expect("first run");
    let service = state.service.clone();
    let (state_copy, config_copy) = (state.clone(), config.clone());
    let (instance, _token) = first.instance.expect("bootstrap instance");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let shutdown = CancellationToken::new();
    let server = tokio::spawn({
        let shutdown = shutdown.clone();
        async move { convene_server::serve(listener, state, &config, shutdown).await }
    });
    TestApp {
        addr,
        client: reqwest::Client::builder().timeout(Duration::from_secs(30)).build().expect("client"),
        api_key: first.api_key,
        instance_id: instance.id.0,
        instance_phone: instance.phone.expect("sandbox number").e164(),
        clock,
        service,
        state: state_copy,
        config: config_copy,
        dir,
        database,
        shutdown,
        server,
    }
}

/// The defaults for a data directory, on SQLite, or on a fresh PostgreSQL database when `TEST_DATABASE_URL` names a
/// server: the PostgreSQL leg of the suite runs every end-to-end test there.
pub async fn test_config(dir: &std::path::Path) -> (Config, Option<ScratchDatabase>) {
    let mut config = Config::for_directory(dir);
    config.worker.enabled = false;
    // Tests never dial WhatsApp: `whatsapp` instances load their stored state and stay disconnected.
    config.set("whatsapp.connect", false).unwrap();
    // Webhooks go to receivers on 127.0.0.1, which the dispatcher refuses unless allowed; tests run the dispatcher
    // themselves (`TestApp::dispatcher`) on the test's clock.
    config.webhooks.enabled = false;
    config.webhooks.allow_private_targets = vec!["127.0.0.1".to_owned()];
    let database = match std::env::var("TEST_DATABASE_URL").ok().filter(|u| !u.is_empty()) {
        Some(server) => {
            let db = ScratchDatabase::create(&server).await.expect("TEST_DATABASE_URL answers");
            config.database_url = db.url().to_owned();
            Some(db)
        }
        None => None,
    };
    (config, database)
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// An authenticated JSON request; returns the status and the parsed body (`Value::Null` when empty).
    pub async fn call(&self, method: Method, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        let mut req = self.client.request(method, self.url(path)).bearer_auth(&self.api_key);
        if let Some(body) = body {
            req = req.json(&body);
        }
        let res = req.send().await.expect("request");
        read(res).await
    }

    pub async fn get(&self, path: &str) -> (StatusCode, Value) {
        self.call(Method::GET, path, None).await
    }

    /// Every item of a paged list, following `next_cursor` from `path` (which may carry a query) to the last page.
    pub async fn all_pages(&self, path: &str) -> Vec<Value> {
        let separator = if path.contains('?') { '&' } else { '?' };
        let mut items = Vec::new();
        let mut next = path.to_owned();
        loop {
            let (status, page) = self.get(&next).await;
            assert_eq!(status, StatusCode::OK, "{next}: {page}");
            items.extend(page["items"].as_array().expect("a page has items").iter().cloned());
            match page["next_cursor"].as_str() {
                Some(cursor) => next = format!("{path}{separator}cursor={cursor}"),
                None => return items,
            }
        }
    }

    pub async fn post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.call(Method::POST, path, Some(body)).await
    }

    pub async fn patch(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.call(Method::PATCH, path, Some(body)).await
    }

    pub async fn put(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.call(Method::PUT, path, Some(body)).await
    }

    /// Creates a group on the bootstrap instance and returns the whole 201 body.
    pub async fn create_group(&self, subject: &str, participants: &[&str]) -> Value {
        let (status, body) = self
            .post(
                "/v1/groups",
                json!({"instance_id": self.instance_id, "subject": subject, "participants": participants}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        body
    }

    /// Scripts a sandbox person.
    pub async fn person(&self, phone: &str, patch: Value) {
        let (status, body) = self.put(&format!("/v1/sandbox/people/{phone}"), patch).await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }

    /// A webhook dispatcher on this server's store and clock, with the test configuration changed by `tweak`.
    pub fn dispatcher(
        &self,
        tweak: impl FnOnce(&mut convene_server::delivery::WebhookConfig),
    ) -> convene_server::delivery::Dispatcher {
        self.try_dispatcher(tweak).expect("dispatcher")
    }

    /// `dispatcher`, or why the configuration is refused.
    pub fn try_dispatcher(
        &self,
        tweak: impl FnOnce(&mut convene_server::delivery::WebhookConfig),
    ) -> anyhow::Result<convene_server::delivery::Dispatcher> {
        let mut config = self.config.webhooks.clone();
        tweak(&mut config);
        convene_server::delivery::Dispatcher::new(
            self.state.store.clone(),
            Arc::new(self.clock.clone()),
            config,
            self.state.secrets.clone(),
        )
    }

    /// Stops the server and waits for it to finish; the data stays for a restart.
    pub async fn stop(self) -> (TempDir, Option<ScratchDatabase>) {
        self.shutdown.cancel();
        self.server.await.expect("server task").expect("server io");
        (self.dir, self.database)
    }
}

pub async fn read(res: reqwest::Response) -> (StatusCode, Value) {
    let status = res.status();
    let text = res.text().await.expect("body");
    let value = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or_else(|_| panic!("{status}: body is not JSON: {text}"))
    };
    (status, value)
}

/// The outcome reported for `input` in a participants list.
pub fn outcome_of<'a>(participants: &'a Value, input: &str) -> &'a Value {
    participants
        .as_array()
        .expect("participants array")
        .iter()
        .find(|p| p["input"] == input)
        .unwrap_or_else(|| panic!("no report for {input} in {participants}"))
}

impl TestApp {
    /// Runs due jobs and moves the clock to the next due time until every job is finished (bounded).
    pub async fn run_jobs_to_completion(&self) {
        for _ in 0..10_000 {
            self.service.run_due_jobs().await.expect("worker pass");
            match self.service.next_job_due().await.expect("next due") {
                Some(at) => {
                    let now = convene_core::Clock::now(&self.clock);
                    if at > now {
                        self.clock.set(at);
                    }
                }
                None => return,
            }
        }
        panic!("jobs did not finish within 10000 passes");
    }
}

/// A sandbox instance made through the native API, with the credentials the provider dialects take.
pub struct Credentials {
    /// The instance id as text (Green `idInstance`, Z-API instance, Wawp `instance_id`).
    pub id: String,
    /// The instance token (Green `apiTokenInstance`, Z-API path token, Wawp `access_token`).
    pub token: String,
    /// The instance's own number, digits only.
    pub phone: String,
}

impl TestApp {
    /// Creates a sandbox instance (`body` as for `POST /v1/instances`) and returns its credentials.
    pub async fn new_instance(&self, body: Value) -> Credentials {
        let (status, created) = self.post("/v1/instances", body).await;
        assert_eq!(status, StatusCode::CREATED, "{created}");
        Credentials {
            id: created["id"].to_string(),
            token: created["token"].as_str().expect("token").to_owned(),
            phone: created["phone"].as_str().expect("phone").trim_start_matches('+').to_owned(),
        }
    }
}

impl TestApp {
    /// Creates a `whatsapp` instance (a real number; tests never dial WhatsApp) and waits until its session has
    /// loaded and it sits `disconnected`, unpaired. Returns its id and instance token.
    pub async fn new_whatsapp_instance(&self) -> (convene_core::InstanceId, String) {
        let (status, created) = self.post("/v1/instances", json!({"kind": "whatsapp"})).await;
        assert_eq!(status, StatusCode::CREATED, "{created}");
        let id = convene_core::InstanceId(created["id"].as_i64().expect("id"));
        let token = created["token"].as_str().expect("token").to_owned();
        for _ in 0..500 {
            let (status, body) = self.get(&format!("/v1/instances/{id}")).await;
            assert_eq!(status, StatusCode::OK, "{body}");
            if body["state"]["status"] == "disconnected" {
                return (id, token);
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("the whatsapp instance's session never loaded");
    }
}
