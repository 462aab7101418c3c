use std::collections::HashMap;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{TestApp, outcome_of, spawn_app};

async fn pace(app: &TestApp, instance: i64, pacing: Value) {
    let (status, body) = app.put(&format!("/v1/instances/{instance}/settings"), json!({"pacing": pacing})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

async fn second_instance(app: &TestApp) -> i64 {
    let (status, body) = app.post("/v1/instances", json!({})).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    body["id"].as_i64().unwrap()
}

async fn jobs_of(app: &TestApp, batch: &str) -> Vec<Value> {
    let (status, body) = app.get(&format!("/v1/jobs?batch_id={batch}&limit=200")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["items"].as_array().unwrap().clone()
}

fn batch(instances: &[i64], subjects: &[String]) -> Value {
    let groups: Vec<Value> = subjects.iter().map(|s| json!({"subject": s, "participants": ["+17137157533"]})).collect();
    json!({"instance_ids": instances, "groups": groups})
}

/// Subject → how many groups with it the network holds.
async fn network_subjects(app: &TestApp) -> HashMap<String, usize> {
    let (_, groups) = app.get("/v1/sandbox/groups").await;
    let mut count = HashMap::new();
    for g in groups.as_array().unwrap() {
        *count.entry(g["subject"].as_str().unwrap().to_owned()).or_default() += 1;
    }
    count
}

#[tokio::test]
async fn a_paced_instance_refuses_a_synchronous_creation_too_soon_with_retry_after() {
    let app = spawn_app().await;
    pace(&app, app.instance_id, json!({"min_interval_secs": 300, "burst": 1, "daily_cap": 30})).await;
    app.create_group("First", &["+17137157533"]).await;

    let res = app
        .client
        .post(app.url("/v1/groups"))
        .bearer_auth(&app.api_key)
        .json(&json!({"instance_id": app.instance_id, "subject": "Second", "participants": ["+17137157533"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(res.headers()["retry-after"], "300");
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["code"], "rate_limited");
    assert_eq!(network_subjects(&app).await.get("Second"), None, "nothing reached the network");

    let (_, instance) = app.get(&format!("/v1/instances/{}", app.instance_id)).await;
    assert_eq!(instance["creation"]["next_creation_at"], "2026-11-23T00:05:00Z");
    app.clock.advance(Duration::from_secs(300));
    app.create_group("Second", &["+17137157533"]).await;
}

#[tokio::test]
async fn a_queued_batch_is_spread_over_the_pool_as_pacing_allows() {
    // Arrange: two numbers, each allowed one group every 5 minutes.
    let app = spawn_app().await;
    let other = second_instance(&app).await;
    for id in [app.instance_id, other] {
        pace(&app, id, json!({"min_interval_secs": 300, "burst": 1})).await;
    }
    let subjects: Vec<String> = (0..4).map(|i| format!("Onboarding {i}")).collect();

    // Act
    let (status, queued) = app.post("/v1/jobs/groups", batch(&[app.instance_id, other], &subjects)).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{queued}");
    let batch_id = queued["batch_id"].as_str().unwrap();
    assert_eq!(queued["jobs"].as_array().unwrap().len(), 4);
    app.service.run_due_jobs().await.unwrap();

    // Assert: one per number at once, the rest scheduled five minutes on.
    let jobs = jobs_of(&app, batch_id).await;
    let done: Vec<_> = jobs.iter().filter(|j| j["state"] == "succeeded").collect();
    assert_eq!(done.len(), 2, "{jobs:?}");
    assert_ne!(done[0]["instance_id"], done[1]["instance_id"]);
    for waiting in jobs.iter().filter(|j| j["state"] == "queued") {
        assert_eq!(waiting["next_run_at"], "2026-11-23T00:05:00Z");
    }
    app.clock.advance(Duration::from_secs(300));
    app.service.run_due_jobs().await.unwrap();
    let jobs = jobs_of(&app, batch_id).await;
    assert!(jobs.iter().all(|j| j["state"] == "succeeded"), "{jobs:?}");
    let result = &jobs[0]["result"];
    assert!(result["jid"].as_str().unwrap().ends_with("@g.us"));
    assert_eq!(outcome_of(&result["participants"], "+17137157533")["outcome"], "added");
    assert!(network_subjects(&app).await.values().all(|n| *n == 1));
}

#[tokio::test]
async fn lost_replies_during_a_batch_create_every_group_exactly_once() {
    // Arrange: half of all creation replies are lost.
    let app = spawn_app().await;
    let other = second_instance(&app).await;
    app.put("/v1/sandbox/faults", json!({"reply_lost_rate": 0.5})).await;
    let subjects: Vec<String> = (0..30).map(|i| format!("Campaign {i:02}")).collect();

    // Act
    let (status, queued) = app.post("/v1/jobs/groups", batch(&[app.instance_id, other], &subjects)).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    app.run_jobs_to_completion().await;

    // Assert: every job succeeded, every group exists once on the network and once in Convene.
    let jobs = jobs_of(&app, queued["batch_id"].as_str().unwrap()).await;
    assert!(jobs.iter().all(|j| j["state"] == "succeeded"), "{jobs:?}");
    let on_network = network_subjects(&app).await;
    for s in &subjects {
        assert_eq!(on_network.get(s), Some(&1), "{s}");
    }
    let (_, listed) = app.get("/v1/groups?limit=200").await;
    let mut ours: Vec<_> = listed["items"].as_array().unwrap().iter().map(|g| g["subject"].clone()).collect();
    ours.sort_by_key(|v| v.as_str().unwrap().to_owned());
    assert_eq!(ours, subjects.iter().map(|s| json!(s)).collect::<Vec<_>>());
    let lost: usize = {
        let mut n = 0;
        for j in &jobs {
            let (_, full) = app.get(&format!("/v1/jobs/{}", j["id"].as_str().unwrap())).await;
            n += full["attempt_log"].as_array().unwrap().iter().filter(|a| a["outcome"] == "found").count();
        }
        n
    };
    assert!(lost > 5, "the fault really hit: {lost} replies lost and found");
}

#[tokio::test]
async fn a_temporary_ban_pauses_the_instance_until_it_ends() {
    // Arrange: the network bans at the first too-fast creation; the instance is not paced by Convene.
    let app = spawn_app().await;
    let limits =
        json!({"enabled": true, "min_interval_secs": 600, "max_per_day": 50, "ban_after_hits": 1, "ban_secs": 3600});
    app.put("/v1/sandbox/network-limits", limits).await;
    let subjects = vec!["Before the ban".to_owned(), "After the ban".to_owned()];
    let (_, queued) = app.post("/v1/jobs/groups", batch(&[app.instance_id], &subjects)).await;
    let batch_id = queued["batch_id"].as_str().unwrap().to_owned();

    // Act: the second creation trips the network's limit.
    app.service.run_due_jobs().await.unwrap();
    app.service.run_due_jobs().await.unwrap();

    // Assert: banned, visible on the instance, nothing retried meanwhile, and a synchronous request refused.
    let (_, instance) = app.get(&format!("/v1/instances/{}", app.instance_id)).await;
    assert_eq!(instance["state"]["status"], "temporarily_banned", "{instance}");
    assert_eq!(instance["creation"]["paused_until"], "2026-11-23T01:00:00Z");
    let (_, stats) = app.get("/v1/sandbox/stats").await;
    assert_eq!((stats["rate_limit_hits"].as_u64(), stats["bans"].as_u64()), (Some(1), Some(1)));
    for _ in 0..3 {
        app.service.run_due_jobs().await.unwrap();
    }
    let (_, stats) = app.get("/v1/sandbox/stats").await;
    assert_eq!(stats["rate_limit_hits"], 1, "no attempt while banned");
    let (status, _) = app
        .post("/v1/groups", json!({"instance_id": app.instance_id, "subject": "Now", "participants": ["+17137157533"]}))
        .await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    let jobs = jobs_of(&app, &batch_id).await;
    let waiting = jobs.iter().find(|j| j["state"] == "queued").expect("one job waits");
    assert_eq!(waiting["next_run_at"], "2026-11-23T01:00:00Z");

    app.clock.advance(Duration::from_secs(3600));
    app.service.run_due_jobs().await.unwrap();
    let jobs = jobs_of(&app, &batch_id).await;
    assert!(jobs.iter().all(|j| j["state"] == "succeeded"), "{jobs:?}");
    assert_eq!(network_subjects(&app).await.len(), 2);
}

#[tokio::test]
async fn a_queued_job_can_be_cancelled_and_then_never_runs() {
    let app = spawn_app().await;
    let (_, queued) = app.post("/v1/jobs/groups", batch(&[app.instance_id], &["Never".to_owned()])).await;
    let id = queued["jobs"][0]["id"].as_str().unwrap();
    let (status, job) = app.post(&format!("/v1/jobs/{id}/cancel"), json!({})).await;
    assert_eq!(status, StatusCode::OK, "{job}");
    assert_eq!(job["state"], "cancelled");
    let (status, _) = app.post(&format!("/v1/jobs/{id}/cancel"), json!({})).await;
    assert_eq!(status, StatusCode::CONFLICT);
    app.service.run_due_jobs().await.unwrap();
    assert!(network_subjects(&app).await.is_empty());
    let (status, _) = app.get("/v1/jobs/not-a-job").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_bad_batch_names_each_bad_group_and_queues_nothing() {
    let app = spawn_app().await;
    let body = json!({"instance_ids": [app.instance_id, 1234567890], "groups": [
        {"subject": "", "participants": ["+17137157533"]},
        {"subject": "ok", "participants": []}
    ]});
    let (status, errors) = app.post("/v1/jobs/groups", body).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "an unknown instance is not found, as for one creation: {errors}");
    assert_eq!(errors["detail"], "no such instance: instance_ids[1] 1234567890");
    let body = json!({"instance_ids": [app.instance_id], "groups": [
        {"subject": "", "participants": ["+17137157533"]},
        {"subject": "ok", "participants": []}
    ]});
    let (_, errors) = app.post("/v1/jobs/groups", body).await;
    let fields: Vec<_> = errors["fields"].as_array().unwrap().iter().map(|f| f["field"].as_str().unwrap()).collect();
    assert_eq!(fields, ["groups[0].subject", "groups[1].participants"]);
    let (_, jobs) = app.get("/v1/jobs").await;
    assert_eq!(jobs, json!({"items": [], "next_cursor": null}));
}

#[tokio::test]
async fn backup_admins_are_added_and_promoted_in_every_group() {
    let app = spawn_app().await;
    let (status, settings) = app
        .put(&format!("/v1/instances/{}/settings", app.instance_id), json!({"backup_admins": ["+1 201 555 0199"]}))
        .await;
    assert_eq!(status, StatusCode::OK, "{settings}");
    assert_eq!(settings["backup_admins"], json!(["+12015550199"]));

    let created = app.create_group("With a backup", &["+17137157533"]).await;
    let (_, network) = app.get(&format!("/v1/sandbox/groups/{}", created["group"]["jid"].as_str().unwrap())).await;
    let backup = network["members"].as_array().unwrap().iter().find(|m| m["phone"] == "+12015550199").cloned();
    assert_eq!(backup.map(|m| m["role"].clone()), Some(json!("admin")));
    assert_eq!(created["participants"].as_array().unwrap().len(), 1, "reported apart from the participants");

    let (_, queued) =
        app.post("/v1/jobs/groups", batch(&[app.instance_id], &["Queued with a backup".to_owned()])).await;
    app.service.run_due_jobs().await.unwrap();
    let (_, job) = app.get(&format!("/v1/jobs/{}", queued["jobs"][0]["id"].as_str().unwrap())).await;
    assert_eq!(job["result"]["backup_admins"][0]["outcome"], "promoted", "{job}");

    let (status, body) = app
        .put(
            &format!("/v1/instances/{}/settings", app.instance_id),
            json!({"backup_admins": ["bob"], "pacing": {"min_interval_secs": 1, "burst": 0}}),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["fields"].as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn an_instance_default_sends_private_invites_without_asking_each_time() {
    let app = spawn_app().await;
    app.person("+17137157533", json!({"group_add": "nobody"})).await;
    app.put(&format!("/v1/instances/{}/settings", app.instance_id), json!({"auto_invite": true})).await;
    let created = app.create_group("Default invites", &["+17137157533"]).await;
    assert_eq!(outcome_of(&created["participants"], "+17137157533")["outcome"], "invite_sent");
    let (_, created) = app
        .post(
            "/v1/groups",
            json!({"instance_id": app.instance_id, "subject": "Asked not to", "participants": ["+17137157533"], "auto_invite": false}),
        )
        .await;
    assert_eq!(outcome_of(&created["participants"], "+17137157533")["outcome"], "privacy_blocked");
}

/// Queues a creation of `subject`, claims it and has the network create its group, as a process does before it
/// dies without recording the group. Returns the job's id and the group's JID.
async fn interrupt_after_the_network_created(app: &TestApp, subject: &str) -> (uuid::Uuid, String) {
    let (_, queued) = app.post("/v1/jobs/groups", batch(&[app.instance_id], &[subject.to_owned()])).await;
    let job_id = queued["jobs"][0]["id"].as_str().unwrap().parse().unwrap();
    let store = app.service.store().clone();
    let job = store.get_job(job_id).await.unwrap();
    let now = convene_core::Clock::now(&app.clock);
    assert!(store.claim_job(job_id, convene_core::InstanceId(app.instance_id), now).await.unwrap());
    let phone = convene_core::PhoneNumber::parse(&app.instance_phone).unwrap();
    let connector = app.service.sandbox().connector(phone);
    let request = convene_core::connector::CreateGroupRequest {
        subject: convene_core::GroupSubject::parse(subject).unwrap(),
        description: None,
        participants: vec![convene_core::PhoneNumber::parse("+17137157533").unwrap()],
        settings: Default::default(),
        key: convene_core::CreationKey(job.creation_key.clone()),
    };
    let created = convene_core::Connector::create_group(&connector, &request).await.unwrap();
    (job_id, created.metadata.jid.to_string())
}

#[tokio::test]
async fn a_job_interrupted_after_the_network_created_its_group_is_found_not_repeated() {
    // Arrange: a queued job whose attempt reached the network, then the process "died" before recording it.
    let app = spawn_app().await;
    let (job_id, _) = interrupt_after_the_network_created(&app, "Interrupted").await;

    // Act: the restart puts the running job back and the worker runs it.
    assert_eq!(app.service.requeue_orphaned_jobs(app.service.now()).await.unwrap(), 1);
    app.run_jobs_to_completion().await;

    // Assert
    let (_, job) = app.get(&format!("/v1/jobs/{job_id}")).await;
    assert_eq!(job["state"], "succeeded", "{job}");
    assert_eq!(network_subjects(&app).await.get("Interrupted"), Some(&1));
    let (_, listed) = app.get("/v1/groups").await;
    assert_eq!(listed["items"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn a_group_imported_while_its_creation_was_interrupted_is_the_jobs_result_not_a_second_record() {
    // Arrange: a queued job whose attempt reached the network before the process "died"; meanwhile a client read
    // the new group by its WhatsApp id, which records it as a group Convene did not create.
    let app = spawn_app().await;
    let (job_id, jid) = interrupt_after_the_network_created(&app, "Imported meanwhile").await;
    let (status, imported) = app.get(&format!("/v1/groups/{jid}?instance_id={}", app.instance_id)).await;
    assert_eq!(status, StatusCode::OK, "{imported}");

    // Act
    assert_eq!(app.service.requeue_orphaned_jobs(app.service.now()).await.unwrap(), 1);
    app.run_jobs_to_completion().await;

    // Assert: one record, the imported one, named by the job's result.
    let (_, job) = app.get(&format!("/v1/jobs/{job_id}")).await;
    assert_eq!(job["state"], "succeeded", "{job}");
    assert_eq!(job["result"]["group_id"], imported["id"], "{job}");
    let (_, group) = app.get(&format!("/v1/groups/{}", imported["id"].as_str().unwrap())).await;
    assert_eq!(group["creation_job_id"], job["id"], "the imported record now names its creation: {group}");
    let (_, listed) = app.get("/v1/groups").await;
    let items = listed["items"].as_array().unwrap();
    assert_eq!((items.len(), &items[0]["id"]), (1, &imported["id"]), "{listed}");
    assert_eq!(network_subjects(&app).await.get("Imported meanwhile"), Some(&1));
}

#[tokio::test]
async fn a_created_groups_record_appears_only_together_with_its_jobs_success() {
    // Arrange: a backup admin and every network call taking 200 ms, so a creation spends 400 ms after the network
    // made the group promoting the backup admin and reading the members back before it ends.
    let app = spawn_app().await;
    let settings = json!({"backup_admins": ["+18647351567"]});
    let (status, body) = app.put(&format!("/v1/instances/{}/settings", app.instance_id), settings).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = app.put("/v1/sandbox/faults", json!({"latency_ms": 200})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let creating = app
        .client
        .post(app.url("/v1/groups"))
        .bearer_auth(&app.api_key)
        .json(&json!({"instance_id": app.instance_id, "subject": "Atomic", "participants": ["+17137157533"]}))
        .send();
    let creating = tokio::spawn(creating);

    // Act: watch the group list until the group is there.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (_, listed) = app.get("/v1/groups").await;
        if !listed["items"].as_array().unwrap().is_empty() {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "the group never appeared");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }

    // Assert: its job had already ended when the group could first be seen.
    let (_, jobs) = app.get("/v1/jobs").await;
    let states: Vec<&Value> = jobs["items"].as_array().unwrap().iter().map(|j| &j["state"]).collect();
    assert_eq!(states, [&json!("succeeded")], "{jobs}");
    assert_eq!(creating.await.unwrap().unwrap().status(), StatusCode::CREATED);
}

#[tokio::test]
async fn a_synchronous_creation_that_trips_a_ban_is_told_when_to_come_back() {
    let app = spawn_app().await;
    let limits =
        json!({"enabled": true, "min_interval_secs": 600, "max_per_day": 50, "ban_after_hits": 1, "ban_secs": 3600});
    app.put("/v1/sandbox/network-limits", limits).await;
    app.create_group("First", &["+17137157533"]).await;

    let res = app
        .client
        .post(app.url("/v1/groups"))
        .bearer_auth(&app.api_key)
        .json(&json!({"instance_id": app.instance_id, "subject": "Too soon", "participants": ["+17137157533"]}))
        .send()
        .await
        .unwrap();

    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(res.headers()["retry-after"], "3600");
    let body: Value = res.json().await.unwrap();
    assert!(body["detail"].as_str().unwrap().contains("code 103"), "{body}");
    assert_eq!(network_subjects(&app).await.get("Too soon"), None);
}

/// A clock that moves on by a millisecond every time it is read, as a busy machine's wall clock does between two
/// readings.
#[derive(Debug)]
struct TickingClock(std::sync::atomic::AtomicI64);

impl convene_core::Clock for TickingClock {
    fn now(&self) -> convene_core::Timestamp {
        convene_core::Timestamp::from_millis(self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst))
    }
}

#[tokio::test]
async fn an_unpaced_instance_is_never_refused_however_the_clock_moves_during_the_decision() {
    // Arrange: the service on a clock that moves between any two readings.
    let dir = tempfile::tempdir().unwrap();
    let (config, _database) = crate::helpers::test_config(dir.path()).await;
    let clock = TickingClock(std::sync::atomic::AtomicI64::new(crate::helpers::START.as_millis()));
    let state = convene_server::AppState::open(&config, std::sync::Arc::new(clock)).await.unwrap();
    let first = state.service.bootstrap(true).await.unwrap().unwrap();
    let (instance, _) = first.instance.unwrap();

    // Act and assert: sandbox numbers are unpaced by default, so no creation may be refused for pacing.
    for i in 0..5 {
        let new = convene_server::service::NewGroup {
            subject: format!("Tick {i}"),
            participants: vec!["+17137157533".into()],
            ..Default::default()
        };
        let created =
            state.service.create_group(instance.id, new, convene_server::service::RetryGuard::DuplicateWindow);
        if let Err(e) = created.await {
            panic!("creation {i} was refused: {e:?}");
        }
    }
}

#[tokio::test]
async fn a_job_left_running_is_put_back_behind_more_running_jobs_than_a_page_holds() {
    // Arrange: 500 jobs running and busy (changed just now), and an older one left running an hour ago
    let app = spawn_app().await;
    let (_, queued) = app.post("/v1/jobs/groups", batch(&[app.instance_id], &["Template".to_owned()])).await;
    let store = app.service.store().clone();
    let template = store.get_job(queued["jobs"][0]["id"].as_str().unwrap().parse().unwrap()).await.unwrap();
    let now = convene_core::Clock::now(&app.clock);
    let an_hour_ago = now.minus(Duration::from_secs(3600));
    let running = |at: convene_core::Timestamp| convene_core::store::JobRecord {
        id: uuid::Uuid::now_v7(),
        batch_id: None,
        state: convene_core::store::JobState::Running,
        creation_key: uuid::Uuid::now_v7().simple().to_string(),
        created_at: at,
        updated_at: at,
        ..template.clone()
    };
    let left = running(an_hour_ago);
    let busy: Vec<_> = (0..500).map(|_| running(now)).collect();
    store.insert_jobs(std::slice::from_ref(&left)).await.unwrap();
    store.insert_jobs(&busy).await.unwrap();

    // Act
    let requeued = app.service.requeue_orphaned_jobs(now.minus(Duration::from_secs(60))).await.unwrap();

    // Assert
    assert_eq!(requeued, 1);
    let job = store.get_job(left.id).await.unwrap();
    assert_eq!((job.state, job.needs_reconcile), (convene_core::store::JobState::Queued, true));
}
