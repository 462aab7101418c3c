//! The contract of the pacing and queue methods: instance settings and pauses, creation attempts, jobs. Run on
//! each backend by `sqlite.rs` and `postgres.rs` like `contract.rs`.

use convene_core::store::{
    CreationAttempt, InstancePause, InstanceRecord, InstanceSettings, JobListQuery, JobRecord, JobState,
};
use convene_core::{ConnectorKind, DbError, InstanceId, PacingPolicy, PhoneNumber, Store, Timestamp};
use uuid::Uuid;

fn at(ms: i64) -> Timestamp {
    Timestamp::from_millis(1_795_000_000_000 + ms)
}

async fn instance(store: &dyn Store, id: i64) -> InstanceId {
    let record = InstanceRecord {
        id: InstanceId(id),
        kind: ConnectorKind::Sandbox,
        name: "pool".into(),
        phone: None,
        token_hash: format!("hash{id}"),
        created_at: at(0),
    };
    store.insert_instance(&record).await.unwrap();
    record.id
}

fn job(key: &str, instances: &[InstanceId], next_run_at: Timestamp, batch: Option<Uuid>) -> JobRecord {
    JobRecord {
        id: Uuid::now_v7(),
        batch_id: batch,
        state: JobState::Queued,
        instance_ids: instances.to_vec(),
        pinned_instance_id: None,
        request: format!("{{\"key\":\"{key}\"}}"),
        creation_key: key.into(),
        attempts: 0,
        next_run_at,
        needs_reconcile: false,
        last_error: None,
        result: None,
        created_at: next_run_at,
        updated_at: next_run_at,
    }
}

pub async fn instance_settings_and_pauses_round_trip_without_clobbering_each_other(store: &dyn Store) {
    let id = instance(store, 7_000_000_001).await;
    assert_eq!(store.instance_settings(id).await.unwrap(), InstanceSettings::default());
    assert_eq!(store.instance_pause(id).await.unwrap(), None);

    let settings = InstanceSettings {
        pacing: Some(PacingPolicy { min_interval_secs: 300, burst: 2, daily_cap: None }),
        auto_invite: true,
        backup_admins: vec![PhoneNumber::parse("+17137157533").unwrap(), PhoneNumber::parse("+18647351567").unwrap()],
    };
    store.put_instance_settings(id, &settings).await.unwrap();
    let pause = InstancePause { until: at(60_000), reason: "rate-overlimit".into() };
    store.set_instance_pause(id, Some(&pause)).await.unwrap();
    assert_eq!(store.instance_settings(id).await.unwrap(), settings, "a pause leaves the settings alone");

    let capped = InstanceSettings { pacing: Some(PacingPolicy::REAL_NUMBER), ..InstanceSettings::default() };
    store.put_instance_settings(id, &capped).await.unwrap();
    assert_eq!(store.instance_pause(id).await.unwrap(), Some(pause), "settings leave the pause alone");
    assert_eq!(store.instance_settings(id).await.unwrap(), capped);
    store.set_instance_pause(id, None).await.unwrap();
    assert_eq!(store.instance_pause(id).await.unwrap(), None);
}

pub async fn creation_attempts_are_recorded_finished_and_counted_since_a_time(store: &dyn Store) {
    let id = instance(store, 7_000_000_002).await;
    let other = instance(store, 7_000_000_003).await;
    let job_id = Uuid::now_v7();
    for (n, (who, ms)) in [(id, 0), (id, 1000), (other, 1500), (id, 2000)].into_iter().enumerate() {
        let attempt = CreationAttempt {
            id: Uuid::now_v7(),
            instance_id: who,
            job_id: (n < 2).then_some(job_id),
            started_at: at(ms),
            finished_at: None,
            outcome: None,
            detail: None,
        };
        store.insert_creation_attempt(&attempt).await.unwrap();
    }
    assert_eq!(store.creation_attempt_times(id, at(1000)).await.unwrap(), [at(1000), at(2000)]);
    let attempts = store.job_attempts(job_id).await.unwrap();
    assert_eq!(attempts.len(), 2);
    store.finish_creation_attempt(attempts[0].id, at(500), "created", Some("120363000000000001@g.us")).await.unwrap();
    let first = &store.job_attempts(job_id).await.unwrap()[0];
    assert_eq!((first.finished_at, first.outcome.as_deref()), (Some(at(500)), Some("created")));
    assert!(matches!(store.finish_creation_attempt(Uuid::now_v7(), at(1), "x", None).await, Err(DbError::NotFound)));
}

pub async fn a_batch_of_jobs_is_inserted_whole_or_not_at_all(store: &dyn Store) {
    let id = instance(store, 7_000_000_004).await;
    let batch = Uuid::now_v7();
    let jobs = [job("k1", &[id], at(0), Some(batch)), job("k2", &[id], at(0), Some(batch))];
    store.insert_jobs(&jobs).await.unwrap();
    let clash = [job("k3", &[id], at(0), None), job("k1", &[id], at(0), None)];
    assert!(matches!(store.insert_jobs(&clash).await, Err(DbError::Conflict)));
    let all = store.list_jobs(&JobListQuery { limit: 100, ..JobListQuery::default() }).await.unwrap();
    assert_eq!(all.len(), 2, "nothing of the clashing batch stayed");
    assert_eq!(store.get_job(jobs[0].id).await.unwrap(), jobs[0]);
    let listed =
        store.list_jobs(&JobListQuery { batch_id: Some(batch), limit: 100, ..JobListQuery::default() }).await.unwrap();
    assert_eq!(listed.iter().map(|j| j.id).collect::<Vec<_>>(), [jobs[1].id, jobs[0].id], "newest first");
    assert!(matches!(store.get_job(Uuid::now_v7()).await, Err(DbError::NotFound)));
}

pub async fn due_jobs_come_soonest_first_and_are_claimed_once(store: &dyn Store) {
    let id = instance(store, 7_000_000_005).await;
    let later = job("later", &[id], at(5000), None);
    let sooner = job("sooner", &[id], at(1000), None);
    let future = job("future", &[id], at(9000), None);
    store.insert_jobs(&[later.clone(), sooner.clone(), future.clone()]).await.unwrap();
    let due: Vec<_> = store.due_jobs(at(5000), 10).await.unwrap().into_iter().map(|j| j.creation_key).collect();
    assert_eq!(due, ["sooner", "later"], "next_run_at <= now, soonest first");
    assert_eq!(store.next_job_due().await.unwrap(), Some(at(1000)));

    assert!(store.claim_job(sooner.id, id, at(5000)).await.unwrap());
    assert!(!store.claim_job(sooner.id, id, at(5000)).await.unwrap(), "a second claim loses");
    let claimed = store.get_job(sooner.id).await.unwrap();
    assert_eq!((claimed.state, claimed.attempts, claimed.pinned_instance_id), (JobState::Running, 1, Some(id)));

    let mut cancelled = later.clone();
    cancelled.state = JobState::Cancelled;
    store.update_job(&cancelled).await.unwrap();
    assert!(!store.claim_job(later.id, id, at(5000)).await.unwrap(), "a cancelled job is not claimed");
    assert_eq!(store.next_job_due().await.unwrap(), Some(at(9000)));

    assert_eq!(store.requeue_interrupted_jobs(at(6000)).await.unwrap(), 1);
    let back = store.get_job(sooner.id).await.unwrap();
    assert_eq!((back.state, back.needs_reconcile, back.next_run_at), (JobState::Queued, true, at(6000)));
    let mut gone = future.clone();
    gone.id = Uuid::now_v7();
    assert!(matches!(store.update_job(&gone).await, Err(DbError::NotFound)));
}

pub async fn deleting_an_instance_deletes_its_settings_and_attempts(store: &dyn Store) {
    let id = instance(store, 7_000_000_006).await;
    store
        .put_instance_settings(id, &InstanceSettings { auto_invite: true, ..InstanceSettings::default() })
        .await
        .unwrap();
    let attempt = CreationAttempt {
        id: Uuid::now_v7(),
        instance_id: id,
        job_id: None,
        started_at: at(0),
        finished_at: None,
        outcome: None,
        detail: None,
    };
    store.insert_creation_attempt(&attempt).await.unwrap();
    store.delete_instance(id).await.unwrap();
    let again = instance(store, 7_000_000_006).await;
    assert_eq!(store.instance_settings(again).await.unwrap(), InstanceSettings::default());
    assert!(store.creation_attempt_times(again, at(-1)).await.unwrap().is_empty());
}
