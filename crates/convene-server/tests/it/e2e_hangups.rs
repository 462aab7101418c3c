//! Clients that hang up and retry without a key: a creation runs to its end whatever the caller does, and the
//! retry gets the first creation's group instead of a second one — natively and in every dialect.

use std::time::Duration;

use convene_core::store::{GroupListQuery, JobListQuery, JobRecord, JobState};
use convene_core::{Clock as _, InstanceId};
use reqwest::{Client, RequestBuilder, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{Credentials, TestApp, read, spawn_app};

/// Long enough that a client giving up after 10 ms leaves while the network is still creating the group.
const NETWORK_LATENCY_MS: u64 = 300;

async fn slow_network(app: &TestApp) {
    let (status, body) = app.put("/v1/sandbox/faults", json!({"latency_ms": NETWORK_LATENCY_MS})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

async fn jobs_in(app: &TestApp, state: JobState) -> Vec<JobRecord> {
    let query = JobListQuery { state: Some(state), limit: 500, ..JobListQuery::default() };
    app.state.store.list_jobs(&query).await.unwrap()
}

/// Sends `request` from a client that gives up after 10 ms, then sends it again at once from a patient one, and
/// waits (bounded) until no creation is running. Returns the retry's answer.
async fn hang_up_then_retry(app: &TestApp, request: impl Fn(&Client) -> RequestBuilder) -> (StatusCode, Value) {
    let impatient = Client::builder().timeout(Duration::from_millis(10)).build().unwrap();
    let gave_up = request(&impatient).send().await.expect_err("the client gives up after 10 ms");
    assert!(gave_up.is_timeout(), "{gave_up}");
    let answer = read(request(&app.client).send().await.unwrap()).await;
    for _ in 0..200 {
        if jobs_in(app, JobState::Running).await.is_empty() {
            return answer;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("a creation was still running 5 s after the network answered: {:?}", jobs_in(app, JobState::Running).await);
}

/// Exactly one group called `subject` on the network and in Convene, made by exactly one job that succeeded; its
/// WhatsApp id.
async fn the_one_group(app: &TestApp, instance: InstanceId, subject: &str) -> String {
    let on_network: Vec<_> =
        app.service.sandbox().groups().await.unwrap().into_iter().filter(|g| g.subject == subject).collect();
    assert_eq!(on_network.len(), 1, "groups called {subject:?} on the network: {on_network:?}");
    let query = GroupListQuery { instance_id: Some(instance), limit: 500, ..GroupListQuery::default() };
    let recorded: Vec<_> = app
        .state
        .store
        .list_groups(&query)
        .await
        .unwrap()
        .groups
        .into_iter()
        .filter(|g| g.subject == subject)
        .collect();
    assert_eq!(recorded.len(), 1, "groups called {subject:?} in Convene: {recorded:?}");
    assert_eq!(recorded[0].jid, on_network[0].jid);
    let succeeded: Vec<_> = jobs_in(app, JobState::Succeeded)
        .await
        .into_iter()
        .filter(|j| j.pinned_instance_id == Some(instance) && j.request.contains(subject))
        .collect();
    assert_eq!(succeeded.len(), 1, "one creation job, run to its end: {succeeded:?}");
    on_network[0].jid.to_string()
}

fn instance_id(credentials: &Credentials) -> InstanceId {
    InstanceId(credentials.id.parse().unwrap())
}

#[tokio::test]
async fn a_native_creation_whose_client_hangs_up_is_recorded_and_its_retry_gets_the_same_group() {
    // Arrange
    let app = spawn_app().await;
    slow_network(&app).await;
    let body = json!({"instance_id": app.instance_id, "subject": "Hung up natively",
                      "participants": ["+17137157533", "+18647351567"]});

    // Act
    let (status, answer) =
        hang_up_then_retry(&app, |client| client.post(app.url("/v1/groups")).bearer_auth(&app.api_key).json(&body))
            .await;

    // Assert
    assert_eq!(status, StatusCode::CREATED, "{answer}");
    let jid = the_one_group(&app, InstanceId(app.instance_id), "Hung up natively").await;
    assert_eq!(answer["group"]["jid"], jid.as_str());
    assert_eq!(answer["participants"][0]["outcome"], "added", "the first creation's outcomes: {answer}");
    assert!(jobs_in(&app, JobState::Running).await.is_empty());
}

#[tokio::test]
async fn a_green_creation_whose_client_hangs_up_is_recorded_and_its_retry_gets_the_same_group() {
    let app = spawn_app().await;
    slow_network(&app).await;
    let green = app.new_instance(json!({})).await;
    let url = app.url(&format!("/waInstance{}/createGroup/{}", green.id, green.token));
    let body = json!({"groupName": "Hung up on Green", "chatIds": ["17137157533@c.us"]});

    let (status, answer) = hang_up_then_retry(&app, |client| client.post(&url).json(&body)).await;

    assert_eq!(status, StatusCode::OK, "{answer}");
    let jid = the_one_group(&app, instance_id(&green), "Hung up on Green").await;
    assert_eq!(answer["chatId"], jid.as_str(), "{answer}");
}

#[tokio::test]
async fn a_zapi_creation_whose_client_hangs_up_is_recorded_and_its_retry_gets_the_same_group() {
    let app = spawn_app().await;
    slow_network(&app).await;
    let zapi = app.new_instance(json!({})).await;
    let url = app.url(&format!("/instances/{}/token/{}/create-group", zapi.id, zapi.token));
    let body = json!({"groupName": "Hung up on Z-API", "phones": ["17137157533"]});

    let (status, answer) =
        hang_up_then_retry(&app, |client| client.post(&url).header("Client-Token", &app.api_key).json(&body)).await;

    assert_eq!(status, StatusCode::OK, "{answer}");
    let jid = the_one_group(&app, instance_id(&zapi), "Hung up on Z-API").await;
    assert_eq!(answer["phone"], jid.replace("@g.us", "-group"), "{answer}");
}

#[tokio::test]
async fn a_2chat_creation_whose_client_hangs_up_is_recorded_and_its_retry_gets_the_same_group() {
    let app = spawn_app().await;
    slow_network(&app).await;
    let twochat = app.new_instance(json!({})).await;
    let body = json!({"from_number": format!("+{}", twochat.phone),
                      "group": {"name": "Hung up on 2Chat", "participants": ["+17137157533"]}});

    let (status, answer) = hang_up_then_retry(&app, |client| {
        client.post(app.url("/open/whatsapp/group/create")).header("X-User-API-Key", &app.api_key).json(&body)
    })
    .await;

    assert_eq!(status, StatusCode::OK, "{answer}");
    let jid = the_one_group(&app, instance_id(&twochat), "Hung up on 2Chat").await;
    assert_eq!(answer["group"]["wa_group_id"], jid.as_str(), "{answer}");
}

#[tokio::test]
async fn a_wawp_creation_whose_client_hangs_up_is_recorded_and_its_retry_gets_the_same_group() {
    let app = spawn_app().await;
    slow_network(&app).await;
    let wawp = app.new_instance(json!({})).await;
    let url = app.url(&format!("/v2/groups?instance_id={}&access_token={}", wawp.id, wawp.token));
    let body = json!({"name": "Hung up on Wawp", "participants": [{"id": "17137157533@c.us"}]});

    let (status, answer) = hang_up_then_retry(&app, |client| client.post(&url).json(&body)).await;

    assert_eq!(status, StatusCode::OK, "{answer}");
    let jid = the_one_group(&app, instance_id(&wawp), "Hung up on Wawp").await;
    assert_eq!(answer["id"], jid.as_str(), "{answer}");
}

#[tokio::test]
async fn a_repeat_with_the_same_people_in_another_order_and_spelling_is_the_same_creation() {
    // Arrange
    let app = spawn_app().await;
    let first = app.create_group("Same people", &["+17137157533", "+18647351567"]).await;

    // Act
    let repeat = app.create_group("Same people", &["18647351567@c.us", "+1 713-715-7533"]).await;

    // Assert
    assert_eq!(repeat["group"]["id"], first["group"]["id"]);
    the_one_group(&app, InstanceId(app.instance_id), "Same people").await;
}

#[tokio::test]
async fn another_subject_other_people_a_key_or_the_end_of_the_window_make_a_new_group() {
    // Arrange
    let app = spawn_app().await;
    let first = app.create_group("Window", &["+17137157533"]).await;
    let id = |v: &Value| v["group"]["id"].as_str().unwrap().to_owned();

    // Act
    let other_subject = app.create_group("Window 2", &["+17137157533"]).await;
    let other_people = app.create_group("Window", &["+17137157533", "+18647351567"]).await;
    let keyed = {
        let body = json!({"instance_id": app.instance_id, "subject": "Window", "participants": ["+17137157533"]});
        let request = app.client.post(app.url("/v1/groups")).bearer_auth(&app.api_key);
        let (status, body) =
            read(request.header("Idempotency-Key", "a-new-key").json(&body).send().await.unwrap()).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        body
    };
    app.clock.advance(Duration::from_secs(121));
    let after_the_window = app.create_group("Window", &["+17137157533"]).await;

    // Assert: five distinct groups; inside the window without a key, the first one's answer.
    let ids = [&first, &other_subject, &other_people, &keyed, &after_the_window].map(id);
    assert_eq!(ids.iter().collect::<std::collections::HashSet<_>>().len(), 5, "{ids:?}");
    app.clock.advance(Duration::from_secs(1));
    let within_the_new_window = app.create_group("Window", &["+17137157533"]).await;
    assert_eq!(id(&within_the_new_window), id(&after_the_window));
}

#[tokio::test]
async fn a_repeat_while_pacing_holds_the_number_back_gets_the_first_group_not_a_429() {
    // Arrange: one group every five minutes, and one made just now.
    let app = spawn_app().await;
    let settings = json!({"pacing": {"min_interval_secs": 300, "burst": 1}});
    let (status, body) = app.put(&format!("/v1/instances/{}/settings", app.instance_id), settings).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let first = app.create_group("Paced", &["+17137157533"]).await;

    // Act
    let body = json!({"instance_id": app.instance_id, "subject": "Paced", "participants": ["+17137157533"]});
    let (repeat_status, repeat) = app.post("/v1/groups", body).await;
    let other = json!({"instance_id": app.instance_id, "subject": "Not a repeat", "participants": ["+17137157533"]});
    let (other_status, _) = app.post("/v1/groups", other).await;

    // Assert: the repeat is answered from the first creation; a new one waits for pacing.
    assert_eq!(repeat_status, StatusCode::CREATED, "{repeat}");
    assert_eq!(repeat["group"]["id"], first["group"]["id"]);
    assert_eq!(other_status, StatusCode::TOO_MANY_REQUESTS);
    the_one_group(&app, InstanceId(app.instance_id), "Paced").await;
}

#[tokio::test]
async fn a_repeat_after_the_number_left_the_first_group_makes_a_new_one() {
    // Arrange
    let app = spawn_app().await;
    let first = app.create_group("Left", &["+17137157533"]).await;
    let (status, body) =
        app.post(&format!("/v1/groups/{}/leave", first["group"]["id"].as_str().unwrap()), json!({})).await;
    assert!(status.is_success(), "{status} {body}");

    // Act
    let again = app.create_group("Left", &["+17137157533"]).await;

    // Assert
    assert_ne!(again["group"]["id"], first["group"]["id"]);
    assert_eq!(app.service.sandbox().groups().await.unwrap().into_iter().filter(|g| g.subject == "Left").count(), 2);
}

#[tokio::test]
async fn a_failed_creation_is_not_a_duplicate_so_the_retry_tries_again() {
    // Arrange: every change fails on the network.
    let app = spawn_app().await;
    let (status, body) = app.put("/v1/sandbox/faults", json!({"error_rate": 1.0})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let body = json!({"instance_id": app.instance_id, "subject": "Fails first", "participants": ["+17137157533"]});
    let (status, answer) = app.post("/v1/groups", body.clone()).await;
    assert!(status.is_server_error(), "{status} {answer}");

    // Act
    let (status, _) = app.put("/v1/sandbox/faults", json!({"error_rate": 0.0})).await;
    assert_eq!(status, StatusCode::OK);
    let (status, answer) = app.post("/v1/groups", body).await;

    // Assert
    assert_eq!(status, StatusCode::CREATED, "{answer}");
    the_one_group(&app, InstanceId(app.instance_id), "Fails first").await;
}

#[tokio::test]
async fn a_job_left_running_by_a_process_that_died_is_reconciled_by_the_worker_without_a_restart() {
    // Arrange: a creation that reached the network, then its process died (the job row says running, nobody runs
    // it): made here by inserting the job as that process would have, and creating the group on the network.
    let app = spawn_app().await;
    app.create_group("Before", &["+17137157533"]).await;
    let mut orphan = jobs_in(&app, JobState::Succeeded).await.remove(0);
    let network = app.service.sandbox().connector(convene_core::PhoneNumber::parse(&app.instance_phone).unwrap());
    let request: Value = serde_json::from_str(&orphan.request).unwrap();
    let creation = convene_core::connector::CreateGroupRequest {
        subject: convene_core::GroupSubject::parse("Orphaned").unwrap(),
        description: None,
        participants: vec![convene_core::PhoneNumber::parse("+18647351567").unwrap()],
        settings: Default::default(),
        key: convene_core::CreationKey::new(),
    };
    convene_core::Connector::create_group(&network, &creation).await.unwrap();
    let mut stored = request.clone();
    stored["group"]["subject"] = json!("Orphaned");
    stored["group"]["participants"] = json!(["+18647351567"]);
    let now = app.clock.now();
    orphan = JobRecord {
        id: uuid::Uuid::now_v7(),
        state: JobState::Running,
        request: stored.to_string(),
        creation_key: creation.key.0.clone(),
        result: None,
        dedupe_key: None,
        created_at: now,
        updated_at: now,
        ..orphan
    };
    app.state.store.insert_jobs(std::slice::from_ref(&orphan)).await.unwrap();

    // Act: a worker pass soon after leaves it to its (possibly slow) owner; one a minute later takes it over.
    app.service.run_due_jobs().await.unwrap();
    let soon = app.state.store.get_job(orphan.id).await.unwrap();
    app.clock.advance(Duration::from_secs(61));
    app.service.run_due_jobs().await.unwrap();
    app.service.run_due_jobs().await.unwrap();

    // Assert
    assert_eq!(soon.state, JobState::Running);
    let job = app.state.store.get_job(orphan.id).await.unwrap();
    assert_eq!(job.state, JobState::Succeeded, "{job:?}");
    the_one_group(&app, InstanceId(app.instance_id), "Orphaned").await;
}
