//! `Idempotency-Key` on the native API: a repeat is answered from the record, never run twice.

use std::time::Duration;

use reqwest::header::HeaderMap;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{TestApp, spawn_app};

/// What came back: status, headers and the body as sent, so that a replay can be compared byte for byte.
struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    text: String,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or_else(|_| panic!("{}: body is not JSON: {}", self.status, self.text))
    }

    fn replayed(&self) -> bool {
        self.headers.get("idempotent-replayed").is_some_and(|v| v == "true")
    }
}

/// A JSON request with the app's API key and, when given, an `Idempotency-Key`.
async fn send(app: &TestApp, method: Method, path: &str, key: Option<&str>, body: Value) -> Answer {
    send_as(app, &app.api_key, method, path, key, body).await
}

async fn send_as(app: &TestApp, api_key: &str, method: Method, path: &str, key: Option<&str>, body: Value) -> Answer {
    let mut req = app.client.request(method, app.url(path)).bearer_auth(api_key).json(&body);
    if let Some(key) = key {
        req = req.header("Idempotency-Key", key);
    }
    let res = req.send().await.expect("request");
    let (status, headers) = (res.status(), res.headers().clone());
    Answer { status, headers, text: res.text().await.expect("body") }
}

fn new_group(app: &TestApp, subject: &str) -> Value {
    json!({"instance_id": app.instance_id, "subject": subject, "participants": ["+17137157533"]})
}

/// How many groups the simulated network holds.
async fn groups_on_the_network(app: &TestApp) -> usize {
    let (status, groups) = app.get("/v1/sandbox/groups").await;
    assert_eq!(status, StatusCode::OK);
    groups.as_array().expect("a list").len()
}

/// A second account API key in the app's database, as `convene key create` would make one.
async fn second_api_key(app: &TestApp) -> String {
    let url = match &app.database {
        Some(db) => db.url().to_owned(),
        None => format!("sqlite://{}", app.dir.path().join("convene.db").display()),
    };
    let store = convene_store::connect(&url).await.expect("the app's database");
    let (secret, record) = convene_server::auth::new_api_key("second", Default::default(), crate::helpers::START);
    store.insert_api_key(&record).await.expect("insert the key");
    secret
}

#[tokio::test]
async fn the_same_key_and_body_create_one_group_and_get_the_same_answer_twice() {
    // Arrange
    let app = spawn_app().await;
    let body = new_group(&app, "Once only");

    // Act
    let first = send(&app, Method::POST, "/v1/groups", Some("order-1"), body.clone()).await;
    let second = send(&app, Method::POST, "/v1/groups", Some("order-1"), body).await;

    // Assert
    assert_eq!(first.status, StatusCode::CREATED, "{}", first.text);
    assert!(!first.replayed());
    assert_eq!(second.status, StatusCode::CREATED);
    assert_eq!(second.text, first.text, "the same answer, byte for byte");
    assert_eq!(second.headers.get("content-type"), first.headers.get("content-type"));
    assert!(second.replayed(), "{:?}", second.headers);
    assert_eq!(groups_on_the_network(&app).await, 1);
    let (_, listed) = app.get("/v1/groups").await;
    assert_eq!(listed["items"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn a_replay_does_not_run_the_change_again() {
    // Arrange: a rename with a key, then another rename without one.
    let app = spawn_app().await;
    let id = app.create_group("Original", &["+17137157533"]).await["group"]["id"].as_str().unwrap().to_owned();
    let path = format!("/v1/groups/{id}");
    let first = send(&app, Method::PATCH, &path, Some("rename-1"), json!({"subject": "First name"})).await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.text);
    let (status, _) = app.patch(&path, json!({"subject": "Second name"})).await;
    assert_eq!(status, StatusCode::OK);

    // Act
    let replay = send(&app, Method::PATCH, &path, Some("rename-1"), json!({"subject": "First name"})).await;

    // Assert: the first answer again, and the group keeps the later name.
    assert!(replay.replayed());
    assert_eq!((replay.status, &replay.text), (first.status, &first.text));
    let (_, group) = app.get(&path).await;
    assert_eq!(group["subject"], "Second name");
}

#[tokio::test]
async fn the_same_key_on_a_different_request_is_refused_as_reused() {
    // Arrange
    let app = spawn_app().await;
    let first = send(&app, Method::POST, "/v1/groups", Some("k-1"), new_group(&app, "First")).await;
    assert_eq!(first.status, StatusCode::CREATED, "{}", first.text);

    // Act
    let other_body = send(&app, Method::POST, "/v1/groups", Some("k-1"), new_group(&app, "Second")).await;
    let other_path =
        send(&app, Method::PUT, "/v1/sandbox/people/+17137157533", Some("k-1"), json!({"group_add": "contacts"})).await;

    // Assert
    for refused in [&other_body, &other_path] {
        assert_eq!(refused.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", refused.text);
        let body = refused.json();
        assert_eq!(body["code"], "idempotency_key_reused");
        assert!(body["detail"].as_str().unwrap().contains("different request"), "{body}");
        assert!(!refused.replayed());
    }
    assert_eq!(groups_on_the_network(&app).await, 1);
    let (_, person) = app.get("/v1/sandbox/people/+17137157533").await;
    assert_eq!(person["group_add"], "everyone", "the refused request did nothing");
}

#[tokio::test]
async fn the_same_key_under_two_api_keys_is_two_requests() {
    // Arrange
    let app = spawn_app().await;
    let other_key = second_api_key(&app).await;
    let body = new_group(&app, "Per account");

    // Act
    let mine = send(&app, Method::POST, "/v1/groups", Some("shared"), body.clone()).await;
    let theirs = send_as(&app, &other_key, Method::POST, "/v1/groups", Some("shared"), body).await;

    // Assert
    assert_eq!((mine.status, theirs.status), (StatusCode::CREATED, StatusCode::CREATED), "{}", theirs.text);
    assert!(!theirs.replayed());
    assert_ne!(mine.json()["group"]["id"], theirs.json()["group"]["id"]);
    assert_eq!(groups_on_the_network(&app).await, 2);
}

#[tokio::test]
async fn a_failed_attempt_is_not_kept_so_a_retry_with_the_same_key_succeeds() {
    // Arrange: the network refuses every change.
    let app = spawn_app().await;
    let (status, _) = app.put("/v1/sandbox/faults", json!({"error_rate": 1.0})).await;
    assert_eq!(status, StatusCode::OK);
    let body = new_group(&app, "Retried");
    let failed = send(&app, Method::POST, "/v1/groups", Some("retry-me"), body.clone()).await;
    assert_eq!(failed.status, StatusCode::BAD_GATEWAY, "{}", failed.text);
    app.put("/v1/sandbox/faults", json!({"error_rate": 0.0})).await;

    // Act
    let retry = send(&app, Method::POST, "/v1/groups", Some("retry-me"), body.clone()).await;
    let again = send(&app, Method::POST, "/v1/groups", Some("retry-me"), body).await;

    // Assert
    assert_eq!(retry.status, StatusCode::CREATED, "{}", retry.text);
    assert!(!retry.replayed(), "the retry ran");
    assert!(again.replayed());
    assert_eq!(again.text, retry.text);
    assert_eq!(groups_on_the_network(&app).await, 1);
}

#[tokio::test]
async fn a_repeat_while_the_first_is_running_is_told_to_retry_and_then_gets_the_answer() {
    // Arrange: every network call takes 300 ms.
    let app = spawn_app().await;
    app.put("/v1/sandbox/faults", json!({"latency_ms": 300})).await;
    let body = new_group(&app, "Concurrent");

    // Act
    let (a, b) = tokio::join!(
        send(&app, Method::POST, "/v1/groups", Some("twice-at-once"), body.clone()),
        send(&app, Method::POST, "/v1/groups", Some("twice-at-once"), body.clone()),
    );
    let later = send(&app, Method::POST, "/v1/groups", Some("twice-at-once"), body).await;

    // Assert: one ran, the other was told to come back, and coming back gives the first answer.
    let (created, busy) = if a.status == StatusCode::CREATED { (a, b) } else { (b, a) };
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
    assert_eq!(busy.status, StatusCode::CONFLICT, "{}", busy.text);
    assert_eq!(busy.json()["code"], "idempotency_key_in_progress");
    assert_eq!(busy.headers.get("retry-after").map(|v| v.to_str().unwrap()), Some("1"));
    assert!(later.replayed());
    assert_eq!(later.text, created.text);
    assert_eq!(groups_on_the_network(&app).await, 1);
}

#[tokio::test]
async fn a_request_abandoned_in_progress_is_taken_over_after_five_minutes() {
    // Arrange: a record left in progress, as by a process that died mid-request.
    let app = spawn_app().await;
    let url = match &app.database {
        Some(db) => db.url().to_owned(),
        None => format!("sqlite://{}", app.dir.path().join("convene.db").display()),
    };
    let store = convene_store::connect(&url).await.unwrap();
    let key = store.find_api_key(&convene_server::auth::hash_secret(&app.api_key)).await.unwrap().unwrap();
    let stuck = convene_core::store::IdempotencyRecord {
        api_key_id: key.id,
        key: "stuck".into(),
        fingerprint: "POST /v1/groups sha256:unknown".into(),
        created_at: crate::helpers::START,
        response: None,
    };
    let never = convene_core::Timestamp::from_millis(0);
    store.begin_idempotent_request(&stuck, never, never).await.unwrap();
    let body = new_group(&app, "Taken over");
    let early = send(&app, Method::POST, "/v1/groups", Some("stuck"), body.clone()).await;
    assert_eq!(early.status, StatusCode::UNPROCESSABLE_ENTITY, "held by the stuck request: {}", early.text);
    app.clock.advance(Duration::from_secs(5 * 60 + 1));

    // Act
    let late = send(&app, Method::POST, "/v1/groups", Some("stuck"), body).await;

    // Assert
    assert_eq!(late.status, StatusCode::CREATED, "{}", late.text);
    assert_eq!(groups_on_the_network(&app).await, 1);
}

#[tokio::test]
async fn a_key_is_forgotten_after_24_hours() {
    // Arrange
    let app = spawn_app().await;
    let first = send(&app, Method::POST, "/v1/groups", Some("daily"), new_group(&app, "Monday")).await;
    assert_eq!(first.status, StatusCode::CREATED, "{}", first.text);
    app.clock.advance(Duration::from_secs(24 * 60 * 60 + 1));

    // Act
    let next_day = send(&app, Method::POST, "/v1/groups", Some("daily"), new_group(&app, "Tuesday")).await;

    // Assert
    assert_eq!(next_day.status, StatusCode::CREATED, "{}", next_day.text);
    assert!(!next_day.replayed());
    assert_eq!(groups_on_the_network(&app).await, 2);
}

#[tokio::test]
async fn an_invalid_key_is_a_bad_request_and_changes_nothing() {
    // Arrange
    let app = spawn_app().await;
    let too_long = "k".repeat(300);

    for key in ["", too_long.as_str(), "tab\tinside"] {
        // Act
        let answer = send(&app, Method::POST, "/v1/groups", Some(key), new_group(&app, "Never")).await;

        // Assert
        assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{key:?}: {}", answer.text);
        assert_eq!(answer.json()["code"], "invalid_idempotency_key");
        assert!(answer.json()["detail"].as_str().unwrap().contains("255"));
    }
    assert_eq!(groups_on_the_network(&app).await, 0);
}

#[tokio::test]
async fn a_bad_api_key_is_refused_without_using_up_the_idempotency_key() {
    // Arrange
    let app = spawn_app().await;
    let body = new_group(&app, "Authorised");

    // Act
    let refused = send_as(&app, "cvn_wrong", Method::POST, "/v1/groups", Some("auth-1"), body.clone()).await;
    let accepted = send(&app, Method::POST, "/v1/groups", Some("auth-1"), body).await;

    // Assert
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED);
    assert_eq!(refused.json()["code"], "unauthorized");
    assert_eq!(accepted.status, StatusCode::CREATED, "{}", accepted.text);
    assert!(!accepted.replayed());
}

#[tokio::test]
async fn requests_without_the_header_or_that_change_nothing_are_not_recorded() {
    // Arrange
    let app = spawn_app().await;
    let body = new_group(&app, "Twice");

    // Act
    let a = send(&app, Method::POST, "/v1/groups", None, body.clone()).await;
    let b = send(&app, Method::POST, "/v1/groups", None, body).await;
    let mut reads = Vec::new();
    for _ in 0..2 {
        let res =
            app.client.get(app.url("/v1/groups")).bearer_auth(&app.api_key).header("Idempotency-Key", "read").send();
        reads.push(res.await.unwrap());
    }

    // Assert: no record replays the creation; the creation's duplicate window gives the repeat the first group.
    assert_eq!((a.status, b.status), (StatusCode::CREATED, StatusCode::CREATED));
    assert!(!b.replayed(), "{}", b.text);
    assert_eq!(a.json()["group"]["id"], b.json()["group"]["id"]);
    assert_eq!(groups_on_the_network(&app).await, 1);
    for read in reads {
        assert_eq!(read.status(), StatusCode::OK);
        assert!(read.headers().get("idempotent-replayed").is_none(), "a GET is not recorded");
    }
}

#[tokio::test]
async fn a_body_past_the_largest_route_limit_is_too_large() {
    // Arrange: more than a group picture in a form may be.
    let app = spawn_app().await;
    let huge = vec![b'x'; 6 * 1024 * 1024];

    // Act
    let res = app
        .client
        .post(app.url("/v1/groups"))
        .bearer_auth(&app.api_key)
        .header("Idempotency-Key", "huge")
        .header("content-type", "application/json")
        .body(huge)
        .send()
        .await
        .unwrap();

    // Assert
    let (status, body) = crate::helpers::read(res).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{body}");
    assert_eq!(body["code"], "payload_too_large");
}

#[tokio::test]
async fn answers_kept_for_replay_hold_no_token_or_secret_in_clear_and_still_replay_the_same() {
    // Arrange and act: three answers that carry credentials, each sent with a key and then replayed.
    let app = spawn_app().await;
    let hook = json!({"url": "http://127.0.0.1:9/hook"});
    let instance = send(&app, Method::POST, "/v1/instances", Some("new-instance"), json!({})).await;
    let webhook = send(&app, Method::POST, "/v1/webhooks", Some("new-webhook"), hook).await;
    let id = webhook.json()["id"].as_str().unwrap().to_owned();
    let rotate = format!("/v1/webhooks/{id}/secret/rotate");
    let rotated = send(&app, Method::POST, &rotate, Some("rotate"), json!({})).await;
    let replays = [
        (&instance, send(&app, Method::POST, "/v1/instances", Some("new-instance"), json!({})).await),
        (
            &webhook,
            send(&app, Method::POST, "/v1/webhooks", Some("new-webhook"), json!({"url": "http://127.0.0.1:9/hook"}))
                .await,
        ),
        (&rotated, send(&app, Method::POST, &rotate, Some("rotate"), json!({})).await),
    ];

    // Assert: replays give the same answers back.
    for (first, replay) in &replays {
        assert!(first.status.is_success(), "{}: {}", first.status, first.text);
        assert!(replay.replayed(), "{}", replay.text);
        assert_eq!((replay.status, &replay.text), (first.status, &first.text));
    }
    let secrets = [
        instance.json()["token"].as_str().unwrap().to_owned(),
        webhook.json()["secret"].as_str().unwrap().to_owned(),
        rotated.json()["secret"].as_str().unwrap().to_owned(),
    ];
    // …and the database holds none of the credentials they carry.
    let stored = match &app.database {
        // SQLite: every byte of the database file and its write-ahead log.
        None => {
            let mut bytes = Vec::new();
            for name in ["convene.db", "convene.db-wal"] {
                bytes.extend(std::fs::read(app.dir.path().join(name)).unwrap_or_default());
            }
            assert!(!bytes.is_empty(), "no database file under {}", app.dir.path().display());
            String::from_utf8_lossy(&bytes).into_owned()
        }
        // PostgreSQL: every stored answer.
        Some(database) => {
            let pool = sqlx::PgPool::connect(database.url()).await.unwrap();
            let bodies: Vec<String> = sqlx::query_scalar("SELECT body FROM idempotency_keys WHERE body IS NOT NULL")
                .fetch_all(&pool)
                .await
                .unwrap();
            assert_eq!(bodies.len(), 3, "{bodies:?}");
            bodies.join("\n")
        }
    };
    for secret in &secrets {
        assert!(secret.len() >= 32, "{secret}");
        assert!(!stored.contains(secret.as_str()), "{secret} is stored in clear");
    }
}
