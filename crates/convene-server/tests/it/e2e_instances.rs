use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::spawn_app;

#[tokio::test]
async fn instances_are_created_listed_read_and_deleted() {
    let app = spawn_app().await;
    let (status, created) = app.post("/v1/instances", json!({"name": "Support", "phone": "+1 201-555-0142"})).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(created["phone"], "+12015550142");
    assert_eq!(created["state"]["status"], "connected");
    assert_eq!(created["token"].as_str().unwrap().len(), 50);
    let id = created["id"].as_i64().unwrap();
    assert!((1_000_000_000..=9_999_999_999).contains(&id));

    let (_, list) = app.get("/v1/instances").await;
    assert_eq!(list["items"].as_array().unwrap().len(), 2);
    assert!(list["items"].as_array().unwrap().iter().all(|i| i.get("token").is_none()), "tokens are shown only once");
    let (status, one) = app.get(&format!("/v1/instances/{id}")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(one["name"], "Support");

    let res =
        app.client.delete(app.url(&format!("/v1/instances/{id}"))).bearer_auth(&app.api_key).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    let (status, _) = app.get(&format!("/v1/instances/{id}")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = app.get("/v1/instances/abc").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn bad_instance_requests_name_every_bad_field() {
    let app = spawn_app().await;
    let (status, body) = app.post("/v1/instances", json!({"kind": "sandbox", "name": "", "phone": "bob"})).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    let fields: Vec<_> = body["fields"].as_array().unwrap().iter().map(|f| f["field"].as_str().unwrap()).collect();
    assert_eq!(fields, ["name", "phone"]);
    let (status, body) = app.post("/v1/instances", json!({"kind": "whatsapp", "name": "", "phone": "bob"})).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    let fields: Vec<_> = body["fields"].as_array().unwrap().iter().map(|f| f["field"].as_str().unwrap()).collect();
    assert_eq!(fields, ["name", "phone"], "a whatsapp instance takes no phone");
    let (status, body) = app.post("/v1/instances", json!({"kind": "telegram"})).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let refusal = body.to_string();
    assert!(
        refusal.contains("`telegram`") && refusal.contains("`sandbox`") && refusal.contains("`whatsapp`"),
        "{body}"
    );
    let (status, body) = app.post("/v1/instances", json!({"phone": app.instance_phone})).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
}

#[tokio::test]
async fn groups_of_a_deleted_instance_are_gone_from_convene_but_not_from_the_network() {
    let app = spawn_app().await;
    let created = app.create_group("Orphan", &["+17137157533"]).await;
    let res = app
        .client
        .delete(app.url(&format!("/v1/instances/{}", app.instance_id)))
        .bearer_auth(&app.api_key)
        .send()
        .await;
    assert_eq!(res.unwrap().status(), StatusCode::NO_CONTENT);
    let (status, _) = app.get(&format!("/v1/groups/{}", created["group"]["id"].as_str().unwrap())).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = app.get(&format!("/v1/sandbox/groups/{}", created["group"]["jid"].as_str().unwrap())).await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn everything_written_survives_a_restart_and_no_second_key_is_made() {
    // Arrange: a group created, then the server stopped.
    let app = spawn_app().await;
    let created = app.create_group("Durable", &["+17137157533"]).await;
    let (api_key, instance_id) = (app.api_key.clone(), app.instance_id);
    let (dir, database) = app.stop().await;
    // The sandbox's world is a file of its own beside a SQLite database; on PostgreSQL it is in the database.
    assert_eq!(dir.path().join("sandbox.db").exists(), database.is_none());

    // Act: open the same directory (and database) again.
    let mut config = convene_server::Config::for_directory(dir.path());
    if let Some(db) = &database {
        config.database_url = db.url().to_owned();
    } else {
        assert!(dir.path().join("convene.db").exists());
    }
    let state = convene_server::AppState::open_with_system_clock(&config).await.unwrap();

    // Assert: no new bootstrap, the key still works, the group is known here and on the network.
    assert!(state.service.bootstrap(true).await.unwrap().is_none());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let shutdown = tokio_util::sync::CancellationToken::new();
    let server = tokio::spawn({
        let shutdown = shutdown.clone();
        async move { convene_server::serve(listener, state, &config, shutdown).await }
    });
    let client = reqwest::Client::new();
    let id = created["group"]["id"].as_str().unwrap();
    let res = client.get(format!("http://{addr}/v1/groups/{id}")).bearer_auth(&api_key).send().await.unwrap();
    let (status, body) = crate::helpers::read(res).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["members"].as_array().unwrap().len(), 2);
    assert_eq!(body["instance_id"], instance_id);
    shutdown.cancel();
    server.await.unwrap().unwrap();
}

#[tokio::test]
async fn instances_created_at_once_each_get_a_number_of_their_own_and_numbers_run_on_after_the_highest() {
    // Arrange: a number given out far along the range (as an explicit phone), beside the bootstrap one.
    let app = spawn_app().await;
    let (status, body) = app.post("/v1/instances", json!({"phone": "+12015559999"})).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");

    // Act: twenty sandbox instances asked for at the same moment.
    let made = futures_util::future::join_all((0..20).map(|_| app.post("/v1/instances", json!({})))).await;

    // Assert: twenty different numbers, after the highest one given out (555-9999 runs on into 556-…).
    let mut phones: Vec<String> = made
        .iter()
        .map(|(status, body)| {
            assert_eq!(*status, StatusCode::CREATED, "{body}");
            body["phone"].as_str().unwrap().to_owned()
        })
        .collect();
    phones.sort();
    phones.dedup();
    assert_eq!(phones.len(), 20, "{phones:?}");
    assert_eq!((phones[0].as_str(), phones[19].as_str()), ("+12015560000", "+12015560019"));
}

/// A newer build may have stored an instance of a kind this build does not have (a downgrade): it is listed and read
/// like any other, with no connection; creating a group on it says why instead of failing the whole list, and it is
/// not deleted, since what its kind keeps of it would be left behind.
#[tokio::test]
async fn an_instance_of_a_kind_this_build_does_not_have_is_listed_disconnected_and_kept() {
    // Arrange: a `cloud` instance written as a newer build would have.
    let app = spawn_app().await;
    let record = convene_core::store::InstanceRecord {
        id: convene_core::InstanceId(7_100_000_001),
        kind: convene_core::ConnectorKind::new("cloud"),
        name: "From a newer build".into(),
        phone: Some(convene_core::PhoneNumber::parse("+12015550177").unwrap()),
        token_hash: String::new(),
        created_at: convene_core::Timestamp::from_millis(0),
    };
    app.state.store.insert_instance(&record).await.unwrap();

    // Act and assert: listed and read with its kind, disconnected.
    let (status, list) = app.get("/v1/instances").await;
    assert_eq!(status, StatusCode::OK, "{list}");
    let listed = list["items"].as_array().unwrap().iter().find(|i| i["id"] == 7_100_000_001_i64).cloned();
    let listed = listed.expect("the instance is listed");
    assert_eq!(listed["kind"], "cloud");
    assert_eq!(listed["state"]["status"], "disconnected");
    let (status, health) = app.get("/v1/health").await;
    assert_eq!(status, StatusCode::OK, "{health}");

    // A creation on it is refused with a reason, not a server error.
    let (status, body) = app
        .post(
            "/v1/groups",
            json!({"instance_id": 7_100_000_001_i64, "subject": "Nowhere", "participants": ["+17137157533"]}),
        )
        .await;
    assert!(status.is_client_error() || status == StatusCode::SERVICE_UNAVAILABLE, "{status} {body}");
    assert!(body.to_string().contains("no connection"), "{body}");

    // Deleting it is refused with the reason, and it stays.
    let res = app.client.delete(app.url("/v1/instances/7100000001")).bearer_auth(&app.api_key).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::CONFLICT);
    assert!(res.text().await.unwrap().contains("a kind this build of Convene does not have"));
    let (status, _) = app.get("/v1/instances/7100000001").await;
    assert_eq!(status, StatusCode::OK);
}
