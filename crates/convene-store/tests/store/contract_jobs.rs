//! The contract of the pacing and queue methods: instance settings and pauses, creation attempts, jobs. Run on
//! each backend by `sqlite.rs` and `postgres.rs` like `contract.rs`.

use convene_core::events::Change;
use convene_core::store::{
    CreationAttempt, InstancePause, InstanceRecord, InstanceSettings, JobListQuery, JobRecord, JobState,
};
use convene_core::{ConnectorKind, DbError, InstanceId, PacingPolicy, PhoneNumber, Store, Timestamp};
use uuid::Uuid;

/// A fixed moment plus `ms`: the store tests' timeline.
pub(crate) fn at(ms: i64) -> Timestamp {
    Timestamp::from_millis(1_795_000_000_000 + ms)
}

/// Inserts a sandbox instance with this id.
pub(crate) async fn instance(store: &dyn Store, id: i64) -> InstanceId {
    let record = InstanceRecord {
        id: InstanceId(id),
        kind: ConnectorKind::new("sandbox"),
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
        dedupe_key: None,
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

// The cases below pin down each method's edges: every field through a round trip, ties in every ordering, the
// boundaries of `since` and `now`, and what an update or a claim must leave alone.

fn phones(numbers: &[&str]) -> Vec<PhoneNumber> {
    numbers.iter().map(|n| PhoneNumber::parse(n).unwrap()).collect()
}

fn pause_until(ms: i64, reason: &str) -> InstancePause {
    InstancePause { until: at(ms), reason: reason.to_owned() }
}

fn attempt(instance_id: InstanceId, job_id: Option<Uuid>, started_ms: i64) -> CreationAttempt {
    CreationAttempt {
        id: Uuid::new_v4(),
        instance_id,
        job_id,
        started_at: at(started_ms),
        finished_at: None,
        outcome: None,
        detail: None,
    }
}

/// A queued job, due when it was created, with a random id (so ties on time are broken by unordered ids).
fn queued(created_ms: i64) -> JobRecord {
    JobRecord {
        id: Uuid::new_v4(),
        creation_key: format!("ck_{}", Uuid::new_v4().simple()),
        ..job("", &[InstanceId(7_000_000_101)], at(created_ms), None)
    }
}

/// A synchronous creation's job with the duplicate window's key `key`, in `state`.
pub(crate) fn keyed(key: &str, state: JobState, created_ms: i64) -> JobRecord {
    JobRecord { dedupe_key: Some(key.into()), state, ..queued(created_ms) }
}

/// The order `list_jobs` promises: `created_at`, then id, both descending.
fn newest_first(mut jobs: Vec<JobRecord>) -> Vec<JobRecord> {
    jobs.sort_by_key(|j| std::cmp::Reverse((j.created_at, j.id.hyphenated().to_string())));
    jobs
}

fn ids(jobs: &[JobRecord]) -> Vec<Uuid> {
    jobs.iter().map(|j| j.id).collect()
}

pub async fn instance_settings_of_every_shape_round_trip_per_instance(store: &dyn Store) {
    // Arrange: one shape per instance, so that swapped columns or rows cannot pass.
    let shapes = [
        InstanceSettings { pacing: None, auto_invite: true, backup_admins: vec![] },
        InstanceSettings {
            pacing: Some(PacingPolicy { min_interval_secs: 300, burst: 2, daily_cap: None }),
            auto_invite: false,
            backup_admins: phones(&["+1 713 715 7533"]),
        },
        InstanceSettings {
            pacing: Some(PacingPolicy { min_interval_secs: 0, burst: 1, daily_cap: Some(30) }),
            auto_invite: true,
            backup_admins: phones(&["+595981048477", "+447700176576", "+1 713 715 7533"]),
        },
    ];
    let mut ids = Vec::new();
    for n in 0..shapes.len() as i64 {
        ids.push(instance(store, 7_000_000_101 + n).await);
    }

    // Act
    for (id, settings) in ids.iter().zip(&shapes) {
        store.put_instance_settings(*id, settings).await.unwrap();
    }

    // Assert
    for (id, settings) in ids.iter().zip(&shapes) {
        assert_eq!(&store.instance_settings(*id).await.unwrap(), settings);
    }

    // Act: a policy and admins replaced by none, and none by a policy.
    store.put_instance_settings(ids[1], &shapes[0]).await.unwrap();
    store.put_instance_settings(ids[0], &shapes[2]).await.unwrap();

    // Assert
    assert_eq!(store.instance_settings(ids[1]).await.unwrap(), shapes[0]);
    assert_eq!(store.instance_settings(ids[0]).await.unwrap(), shapes[2]);
}

pub async fn a_pause_set_before_any_settings_leaves_the_defaults_and_is_replaced_whole(store: &dyn Store) {
    // Arrange
    let id = instance(store, 7_000_000_101).await;

    // Act: the pause creates the settings row.
    store.set_instance_pause(id, Some(&pause_until(60_000, "rate-overlimit"))).await.unwrap();
    let settings = store.instance_settings(id).await.unwrap();
    store.set_instance_pause(id, Some(&pause_until(3_600_000, "temporary ban"))).await.unwrap();
    let second = store.instance_pause(id).await.unwrap();
    store.set_instance_pause(id, None).await.unwrap();
    store.set_instance_pause(id, None).await.unwrap();

    // Assert
    assert_eq!(settings, InstanceSettings::default());
    assert_eq!(second, Some(pause_until(3_600_000, "temporary ban")));
    assert_eq!(store.instance_pause(id).await.unwrap(), None, "lifted, twice");
    assert_eq!(store.instance_settings(id).await.unwrap(), InstanceSettings::default());
}

pub async fn creation_attempts_come_back_whole_and_oldest_first_from_the_since_boundary_on(store: &dyn Store) {
    // Arrange: two instances; attempts inserted out of order; one job's attempts on both.
    let (one, two) = (instance(store, 7_000_000_101).await, instance(store, 7_000_000_102).await);
    let job_id = Uuid::new_v4();
    let mut first = attempt(one, Some(job_id), 10);
    let mut second = attempt(two, Some(job_id), 20);
    let others = [attempt(one, None, 30), attempt(one, Some(Uuid::new_v4()), 5), attempt(two, None, 15)];
    for a in [&second, &others[0], &first, &others[1], &others[2]] {
        store.insert_creation_attempt(a).await.unwrap();
    }

    // Act
    store.finish_creation_attempt(first.id, at(11), "unknown", Some("no reply")).await.unwrap();
    store.finish_creation_attempt(second.id, at(21), "found", None).await.unwrap();
    let since_ten = store.creation_attempt_times(one, at(10)).await.unwrap();
    let since_eleven = store.creation_attempt_times(one, at(11)).await.unwrap();
    let by_job = store.job_attempts(job_id).await.unwrap();
    let duplicate = store.insert_creation_attempt(&first).await;

    // Assert
    assert_eq!(since_ten, [at(10), at(30)], "`since` itself included, oldest first, this instance only");
    assert_eq!(since_eleven, [at(30)]);
    (first.finished_at, first.outcome, first.detail) = (Some(at(11)), Some("unknown".into()), Some("no reply".into()));
    (second.finished_at, second.outcome) = (Some(at(21)), Some("found".into()));
    assert_eq!(by_job, [first, second], "every field, oldest first, on every instance");
    assert!(store.job_attempts(Uuid::new_v4()).await.unwrap().is_empty());
    assert!(matches!(duplicate, Err(DbError::Conflict)), "{duplicate:?}");
}

pub async fn jobs_round_trip_with_every_field_set_and_unset(store: &dyn Store) {
    // Arrange
    let batch = Uuid::new_v4();
    let bare = queued(0);
    let full = JobRecord {
        batch_id: Some(batch),
        state: JobState::Failed,
        instance_ids: vec![InstanceId(7_000_000_103), InstanceId(7_000_000_101), InstanceId(7_000_000_102)],
        pinned_instance_id: Some(InstanceId(7_000_000_101)),
        attempts: 4,
        next_run_at: at(90_000),
        needs_reconcile: true,
        last_error: Some("rate-overlimit — ünïcode".into()),
        result: Some("{\"group_id\":null}".into()),
        dedupe_key: Some("dk_full".into()),
        updated_at: at(95_000),
        ..queued(1)
    };
    let no_instances = JobRecord { batch_id: Some(batch), instance_ids: vec![], ..queued(1) };

    // Act
    store.insert_jobs(&[bare.clone(), full.clone(), no_instances.clone()]).await.unwrap();
    store.insert_jobs(&[]).await.unwrap();

    // Assert
    for j in [&bare, &full, &no_instances] {
        assert_eq!(&store.get_job(j.id).await.unwrap(), j);
    }
}

pub async fn a_batch_with_a_taken_id_or_creation_key_inserts_nothing(store: &dyn Store) {
    // Arrange
    let existing = queued(0);
    store.insert_jobs(std::slice::from_ref(&existing)).await.unwrap();
    let new = queued(1);
    let reused_key = JobRecord { creation_key: existing.creation_key.clone(), ..queued(2) };
    let reused_id = JobRecord { id: existing.id, ..queued(3) };
    let twin = JobRecord { id: Uuid::new_v4(), ..new.clone() };

    // Act
    let with_reused_key = store.insert_jobs(&[new.clone(), reused_key.clone()]).await;
    let with_reused_id = store.insert_jobs(&[new.clone(), reused_id]).await;
    let with_twins = store.insert_jobs(&[new.clone(), twin.clone()]).await;

    // Assert
    for result in [&with_reused_key, &with_reused_id, &with_twins] {
        assert!(matches!(result, Err(DbError::Conflict)), "{result:?}");
    }
    for j in [&new, &reused_key, &twin] {
        assert!(matches!(store.get_job(j.id).await, Err(DbError::NotFound)), "job {} was inserted", j.id);
    }
    let all = store.list_jobs(&JobListQuery { limit: 500, ..JobListQuery::default() }).await.unwrap();
    assert_eq!(all, [existing], "the first job, untouched, and nothing else");
}

pub async fn jobs_are_listed_newest_first_by_state_and_batch(store: &dyn Store) {
    // Arrange: two batches and a lone job; some share a creation time, so the id must break ties.
    let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
    let jobs = vec![
        JobRecord { batch_id: Some(a), ..queued(0) },
        JobRecord { batch_id: Some(a), state: JobState::Running, ..queued(5) },
        JobRecord { batch_id: Some(a), ..queued(5) },
        JobRecord { batch_id: Some(a), ..queued(5) },
        JobRecord { batch_id: Some(b), state: JobState::Succeeded, ..queued(1) },
        JobRecord { batch_id: Some(b), ..queued(9) },
        queued(7),
    ];
    store.insert_jobs(&jobs).await.unwrap();
    let list = |state, batch_id, limit| async move {
        store.list_jobs(&JobListQuery { state, batch_id, before: None, limit }).await.unwrap()
    };
    let matching = |keep: &dyn Fn(&JobRecord) -> bool| newest_first(jobs.iter().filter(|j| keep(j)).cloned().collect());

    // Act
    let everything = list(None, None, 100).await;
    let queued_only = list(Some(JobState::Queued), None, 100).await;
    let batch_a = list(None, Some(a), 100).await;
    let queued_in_b = list(Some(JobState::Queued), Some(b), 100).await;
    let cancelled = list(Some(JobState::Cancelled), None, 100).await;
    let first_two = list(None, None, 2).await;
    let zero_limit = list(None, None, 0).await;

    // Assert
    assert_eq!(ids(&everything), ids(&newest_first(jobs.clone())));
    assert_eq!(everything, newest_first(jobs.clone()));
    assert_eq!(queued_only, matching(&|j| j.state == JobState::Queued));
    assert_eq!(batch_a, matching(&|j| j.batch_id == Some(a)));
    assert_eq!(queued_in_b, matching(&|j| j.batch_id == Some(b) && j.state == JobState::Queued));
    assert!(cancelled.is_empty());
    assert_eq!(first_two, everything[..2]);
    assert_eq!(zero_limit, everything[..1], "a zero limit is read as one");

    // Paging: each page starts after the last job of the one before, ties on created_at broken by id.
    let mut walked = Vec::new();
    let mut before = None;
    loop {
        let page = store.list_jobs(&JobListQuery { before, limit: 2, ..JobListQuery::default() }).await.unwrap();
        let Some(last) = page.last() else { break };
        before = Some((last.created_at, last.id));
        walked.extend(page);
    }
    assert_eq!(walked, everything, "pages of two, walked by cursor, give the whole list once");
    let after_a = store
        .list_jobs(&JobListQuery {
            batch_id: Some(a),
            before: Some((at(5), Uuid::nil())),
            limit: 100,
            ..JobListQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(after_a, matching(&|j| j.batch_id == Some(a) && j.created_at < at(5)), "filters hold past the cursor");
}

pub async fn due_jobs_are_the_queued_ones_up_to_now_soonest_then_oldest_then_by_id(store: &dyn Store) {
    // Arrange
    let now = 1_000;
    let due_at = |next_ms: i64, created_ms: i64| JobRecord { next_run_at: at(next_ms), ..queued(created_ms) };
    let exactly_now = due_at(now, 3);
    let soonest = due_at(100, 50);
    let mut same_time_older = due_at(500, 1);
    let mut same_time_newer = due_at(500, 2);
    if same_time_older.id.hyphenated().to_string() < same_time_newer.id.hyphenated().to_string() {
        // The id must not decide before created_at does.
        std::mem::swap(&mut same_time_older.id, &mut same_time_newer.id);
    }
    let mut tied = vec![due_at(700, 4), due_at(700, 4)];
    let later = due_at(now + 1, 0);
    let running = JobRecord { state: JobState::Running, ..due_at(0, 0) };
    let cancelled = JobRecord { state: JobState::Cancelled, ..due_at(0, 0) };
    let mut all = vec![exactly_now.clone(), later, running, cancelled, same_time_newer.clone()];
    all.extend([soonest.clone(), same_time_older.clone()]);
    all.extend(tied.iter().cloned());
    store.insert_jobs(&all).await.unwrap();
    tied.sort_by_key(|j| j.id.hyphenated().to_string());

    // Act
    let due = store.due_jobs(at(now), 100).await.unwrap();
    let first_two = store.due_jobs(at(now), 2).await.unwrap();
    let before_any = store.due_jobs(at(99), 100).await.unwrap();

    // Assert
    let expected = [vec![soonest, same_time_older, same_time_newer], tied, vec![exactly_now]].concat();
    assert_eq!(ids(&due), ids(&expected), "next_run_at, then created_at, then id; `now` itself is due");
    assert_eq!(due, expected);
    assert_eq!(first_two, expected[..2]);
    assert!(before_any.is_empty());
}

pub async fn the_next_job_due_counts_queued_jobs_only(store: &dyn Store) {
    // Arrange
    let nothing = store.next_job_due().await.unwrap();
    let with = |state, next_ms| JobRecord { state, next_run_at: at(next_ms), ..queued(0) };
    let jobs = [
        with(JobState::Running, -50),
        with(JobState::Cancelled, -40),
        with(JobState::Succeeded, -30),
        with(JobState::Failed, -20),
        with(JobState::Queued, 20),
        with(JobState::Queued, 10),
    ];
    store.insert_jobs(&jobs).await.unwrap();

    // Act
    let next = store.next_job_due().await.unwrap();

    // Assert
    assert_eq!(nothing, None);
    assert_eq!(next, Some(at(10)));
}

pub async fn jobs_are_counted_by_state(store: &dyn Store) {
    // Arrange
    let nothing = store.count_jobs_by_state().await.unwrap();
    let with = |state| JobRecord { state, ..queued(0) };
    let jobs = [
        with(JobState::Queued),
        with(JobState::Queued),
        with(JobState::Running),
        with(JobState::Failed),
        with(JobState::Queued),
    ];
    store.insert_jobs(&jobs).await.unwrap();

    // Act
    let mut counts = store.count_jobs_by_state().await.unwrap();

    // Assert
    counts.sort_by_key(|(state, _)| state.as_str());
    assert_eq!(nothing, []);
    assert_eq!(counts, [(JobState::Failed, 1), (JobState::Queued, 3), (JobState::Running, 1)]);
}

pub async fn batches_are_listed_newest_first_with_their_jobs_counted_by_state_a_page_at_a_time(store: &dyn Store) {
    // Arrange: three batches on two pools, a job outside any batch, jobs in every state.
    let pool = [InstanceId(7_103_000_001), InstanceId(7_103_000_002)];
    let batches: Vec<Uuid> = (0..3).map(|_| Uuid::now_v7()).collect();
    let in_batch = |n: usize, at: i64, state: JobState, pool: &[InstanceId]| JobRecord {
        state,
        ..job(&format!("b{n}-{}", Uuid::now_v7()), pool, Timestamp::from_millis(at), Some(batches[n]))
    };
    let jobs = [
        in_batch(0, 1_000, JobState::Succeeded, &pool),
        in_batch(0, 1_000, JobState::Failed, &pool),
        in_batch(1, 2_000, JobState::Queued, &pool[..1]),
        in_batch(1, 2_000, JobState::Queued, &pool[..1]),
        in_batch(1, 2_000, JobState::Running, &pool[..1]),
        in_batch(1, 2_000, JobState::Cancelled, &pool[..1]),
        in_batch(2, 3_000, JobState::Succeeded, &pool),
        job("alone", &pool, Timestamp::from_millis(4_000), None),
    ];
    store.insert_jobs(&jobs).await.unwrap();

    // Act
    let first = store.list_batches(None, 2).await.unwrap();
    let after = first.last().map(|b| (b.created_at, b.batch_id));
    let second = store.list_batches(after, 2).await.unwrap();

    // Assert
    assert_eq!(first.iter().map(|b| b.batch_id).collect::<Vec<_>>(), [batches[2], batches[1]]);
    assert_eq!(second.iter().map(|b| b.batch_id).collect::<Vec<_>>(), [batches[0]]);
    let middle = &first[1];
    assert_eq!(middle.created_at, Timestamp::from_millis(2_000));
    assert_eq!(middle.instance_ids, &pool[..1]);
    assert_eq!(
        middle.counts,
        [
            (JobState::Queued, 2),
            (JobState::Running, 1),
            (JobState::Succeeded, 0),
            (JobState::Failed, 0),
            (JobState::Cancelled, 1)
        ]
    );
    assert_eq!((second[0].count(JobState::Succeeded), second[0].count(JobState::Failed), second[0].total()), (1, 1, 2));
    assert_eq!(second[0].instance_ids, pool);
}

pub async fn claiming_a_job_pins_it_counts_an_attempt_and_leaves_the_rest(store: &dyn Store) {
    // Arrange
    let job = JobRecord { attempts: 2, needs_reconcile: true, last_error: Some("lost reply".into()), ..queued(0) };
    store.insert_jobs(std::slice::from_ref(&job)).await.unwrap();
    let pool = InstanceId(7_000_000_102);

    // Act
    let first = store.claim_job(job.id, pool, at(500)).await.unwrap();
    let second = store.claim_job(job.id, InstanceId(7_000_000_101), at(600)).await.unwrap();
    let missing = store.claim_job(Uuid::new_v4(), pool, at(500)).await.unwrap();

    // Assert
    assert_eq!((first, second, missing), (true, false, false));
    let claimed =
        JobRecord { state: JobState::Running, attempts: 3, pinned_instance_id: Some(pool), updated_at: at(500), ..job };
    assert_eq!(store.get_job(claimed.id).await.unwrap(), claimed, "the reconcile flag and error too are left");
}

pub async fn updating_a_job_replaces_only_its_mutable_fields(store: &dyn Store) {
    // Arrange
    let original = JobRecord { batch_id: Some(Uuid::new_v4()), attempts: 1, ..queued(0) };
    let bystander = queued(1);
    store.insert_jobs(&[original.clone(), bystander.clone()]).await.unwrap();
    let changed = JobRecord {
        state: JobState::Succeeded,
        pinned_instance_id: Some(InstanceId(7_000_000_101)),
        next_run_at: at(5_000),
        needs_reconcile: true,
        last_error: Some("lost reply".into()),
        result: Some("{\"group_id\":\"g\"}".into()),
        updated_at: at(6_000),
        ..original.clone()
    };
    // Fields outside the update's reach, changed too: they must be ignored.
    let update = JobRecord {
        batch_id: None,
        instance_ids: vec![InstanceId(7_000_000_109)],
        request: "{}".into(),
        creation_key: "ck_other".into(),
        attempts: 9,
        created_at: at(-1),
        ..changed.clone()
    };

    // Act
    store.update_job(&update).await.unwrap();

    // Assert
    assert_eq!(store.get_job(original.id).await.unwrap(), changed);
    assert_eq!(store.get_job(bystander.id).await.unwrap(), bystander);

    // Act: back to none of the optional fields.
    let cleared = JobRecord { pinned_instance_id: None, last_error: None, result: None, ..changed };
    store.update_job(&cleared).await.unwrap();

    // Assert
    assert_eq!(store.get_job(original.id).await.unwrap(), cleared);
}

pub async fn deleting_an_instance_keeps_its_jobs_and_the_other_instances_records(store: &dyn Store) {
    // Arrange
    let (doomed, kept) = (instance(store, 7_000_000_101).await, instance(store, 7_000_000_102).await);
    let settings = InstanceSettings { auto_invite: true, backup_admins: phones(&["+447700176576"]), pacing: None };
    let job = JobRecord { instance_ids: vec![doomed, kept], ..queued(0) };
    store.insert_jobs(std::slice::from_ref(&job)).await.unwrap();
    for id in [doomed, kept] {
        store.put_instance_settings(id, &settings).await.unwrap();
        store.set_instance_pause(id, Some(&pause_until(60_000, "rate-overlimit"))).await.unwrap();
    }
    let on_kept = attempt(kept, Some(job.id), 2);
    for a in [attempt(doomed, Some(job.id), 1), on_kept.clone(), attempt(doomed, None, 3)] {
        store.insert_creation_attempt(&a).await.unwrap();
    }

    // Act
    store.delete_instance(doomed).await.unwrap();

    // Assert
    assert_eq!(store.instance_pause(doomed).await.unwrap(), None);
    assert!(store.creation_attempt_times(doomed, at(-1)).await.unwrap().is_empty());
    assert_eq!(store.job_attempts(job.id).await.unwrap(), [on_kept], "the other instance's attempt stays");
    assert_eq!(store.get_job(job.id).await.unwrap(), job, "a job stays for history");
    assert_eq!(store.instance_settings(kept).await.unwrap(), settings);
    assert_eq!(store.instance_pause(kept).await.unwrap(), Some(pause_until(60_000, "rate-overlimit")));
}

// ---------- values edited behind the store's back ----------
// Run by `sqlite.rs` and `postgres.rs`, which can reach past the store: `seed_rows_to_corrupt`, then for each of
// `CORRUPTIONS` run its edit, expect `first_read_error` to name its column, run its repair, expect no error.

const CORRUPTED_JOB: Uuid = Uuid::from_u128(0x0195_0000_0000_7000_8000_0000_0000_0001);

/// (edit, the column the read error names, repair)
pub const CORRUPTIONS: &[(&str, &str, &str)] = &[
    ("UPDATE jobs SET state = 'paused'", "jobs.state", "UPDATE jobs SET state = 'queued'"),
    ("UPDATE jobs SET instance_ids = '7000000101 x'", "jobs.instance_ids", "UPDATE jobs SET instance_ids = ''"),
    ("UPDATE jobs SET batch_id = 'batch-1'", "jobs.batch_id", "UPDATE jobs SET batch_id = NULL"),
    ("UPDATE jobs SET attempts = -1", "jobs.attempts", "UPDATE jobs SET attempts = 0"),
    (
        "UPDATE instance_settings SET backup_admins = '447700176576 bob'",
        "instance_settings.backup_admins",
        "UPDATE instance_settings SET backup_admins = ''",
    ),
    (
        "UPDATE instance_settings SET pacing_burst = 1, pacing_min_interval_secs = NULL",
        "instance_settings.pacing_min_interval_secs",
        "UPDATE instance_settings SET pacing_burst = NULL",
    ),
    (
        "UPDATE instance_settings SET pacing_burst = 1, pacing_min_interval_secs = 60, pacing_daily_cap = -3",
        "instance_settings.pacing_daily_cap",
        "UPDATE instance_settings SET pacing_burst = NULL, pacing_min_interval_secs = NULL, pacing_daily_cap = NULL",
    ),
    (
        "UPDATE instance_settings SET pause_reason = NULL",
        "instance_settings.pause_reason",
        "UPDATE instance_settings SET pause_reason = 'rate-overlimit'",
    ),
    (
        "UPDATE creation_attempts SET id = 'attempt-1'",
        "creation_attempts.id",
        "UPDATE creation_attempts SET id = '01950000-0000-7000-8000-000000000002'",
    ),
];

/// An instance with settings and a pause, a job, and an attempt of that job.
pub async fn seed_rows_to_corrupt(store: &dyn Store) {
    let id = instance(store, 7_000_000_101).await;
    store.put_instance_settings(id, &InstanceSettings::default()).await.unwrap();
    store.set_instance_pause(id, Some(&pause_until(60_000, "rate-overlimit"))).await.unwrap();
    let job = JobRecord { id: CORRUPTED_JOB, instance_ids: vec![], ..queued(0) };
    store.insert_jobs(&[job]).await.unwrap();
    store.insert_creation_attempt(&attempt(id, Some(CORRUPTED_JOB), 0)).await.unwrap();
    assert_eq!(first_read_error(store).await, None, "the seeded rows read back");
}

/// The first error reading the seeded rows back, as text; `None` when they all read.
pub async fn an_attempt_that_was_not_sent_uses_no_pacing_budget(store: &dyn Store) {
    // Arrange: three attempts, one refused before the network was asked, one still under way.
    let id = instance(store, 7_000_000_007).await;
    let (sent, not_sent, under_way) = (attempt(id, None, 10), attempt(id, None, 20), attempt(id, None, 30));
    for a in [&sent, &not_sent, &under_way] {
        store.insert_creation_attempt(a).await.unwrap();
    }

    // Act
    store.finish_creation_attempt(sent.id, at(11), "failed", Some("network failure")).await.unwrap();
    store.finish_creation_attempt(not_sent.id, at(21), "not_sent", Some("not connected")).await.unwrap();

    // Assert: the one under way may reach the network, so it counts; the one not sent does not.
    assert_eq!(store.creation_attempt_times(id, at(0)).await.unwrap(), [at(10), at(30)]);
}

pub async fn a_duplicate_is_the_newest_live_or_succeeded_job_with_the_key_inside_the_window(store: &dyn Store) {
    // Arrange
    let old = keyed("dk_a", JobState::Succeeded, 100);
    let newer = keyed("dk_a", JobState::Running, 200);
    let failed = keyed("dk_a", JobState::Failed, 300);
    let cancelled = keyed("dk_a", JobState::Cancelled, 310);
    let other_key = keyed("dk_b", JobState::Succeeded, 400);
    let unkeyed = queued(500);
    store.insert_jobs(&[old, newer.clone(), failed, cancelled, other_key.clone(), unkeyed]).await.unwrap();

    // Act and assert: the newest that made, or may still make, a group.
    assert_eq!(store.find_duplicate_job("dk_a", at(0)).await.unwrap(), Some(newer.clone()));
    assert_eq!(store.find_duplicate_job("dk_a", at(200)).await.unwrap(), Some(newer), "since is inclusive");
    assert_eq!(store.find_duplicate_job("dk_a", at(201)).await.unwrap(), None, "failed and cancelled do not count");
    assert_eq!(store.find_duplicate_job("dk_b", at(0)).await.unwrap(), Some(other_key));
    assert_eq!(store.find_duplicate_job("dk_c", at(0)).await.unwrap(), None);
}

/// The window is searched a minute at a time (`jobs_by_dedupe_window`): a duplicate is found in whichever of them it
/// was made, up to the newest job's, and by the check-and-insert as by the lookup.
pub async fn a_duplicate_is_found_in_any_minute_of_a_long_window(store: &dyn Store) {
    use convene_core::events::Change;
    // Arrange: a window from 5 s, which is 45 s into a minute (`at(20_000)` begins the next), and keyed jobs from
    // before it (in the same minute) to 2 minutes.
    let before = keyed("dk_w", JobState::Succeeded, 4_999);
    let first_seconds = keyed("dk_w", JobState::Succeeded, 9_999);
    let later = keyed("dk_w", JobState::Running, 64_321);
    let newest = keyed("dk_x", JobState::Succeeded, 119_999);
    store.insert_jobs(&[before, first_seconds.clone(), later.clone(), newest.clone()]).await.unwrap();

    // Act and assert: in the newest job's minute, and in the window's first and middle ones.
    assert_eq!(store.find_duplicate_job("dk_x", at(5_000)).await.unwrap(), Some(newest.clone()));
    assert_eq!(store.find_duplicate_job("dk_w", at(5_000)).await.unwrap(), Some(later.clone()));
    store.insert_jobs(&[queued(125_000)]).await.unwrap();
    store.update_job(&JobRecord { state: JobState::Failed, ..later.clone() }).await.unwrap();
    assert_eq!(store.find_duplicate_job("dk_w", at(5_000)).await.unwrap(), Some(first_seconds));
    assert_eq!(store.find_duplicate_job("dk_w", at(10_000)).await.unwrap(), None, "older than the window");
    assert_eq!(store.find_duplicate_job("dk_x", at(119_999)).await.unwrap(), Some(newest));
    let repeat = keyed("dk_x", JobState::Running, 126_000);
    let insert = Change::InsertJobUnlessDuplicate { job: &repeat, since: at(6_000), passed_over: None };
    assert!(matches!(store.commit(&[insert], &[]).await, Err(DbError::NotFound)), "the check finds it too");
    let insert = Change::InsertJobUnlessDuplicate { job: &repeat, since: at(120_000), passed_over: None };
    store.commit(&[insert], &[]).await.unwrap();
    // A job stamped up to `DUPLICATE_SEARCH_SECS` after the window's start (a node's clock ahead) is found too.
    let search_ms = i64::try_from(convene_core::store::DUPLICATE_SEARCH_SECS).unwrap() * 1000;
    let ahead = keyed("dk_y", JobState::Succeeded, search_ms - 1);
    store.insert_jobs(std::slice::from_ref(&ahead)).await.unwrap();
    assert_eq!(store.find_duplicate_job("dk_y", at(0)).await.unwrap(), Some(ahead));
}

/// The duplicate window's check and insert in one statement, for nodes that each hold only their own turn.
pub async fn a_keyed_job_goes_in_only_when_no_duplicate_did_and_nothing_of_the_commit_is_written_otherwise(
    store: &dyn Store,
) {
    use convene_core::events::Change;
    // Arrange: a running job with key dk_a, created at 200.
    let with = |key: &str, created_ms| JobRecord { dedupe_key: Some(key.into()), ..queued(created_ms) };
    let first = JobRecord { state: JobState::Running, ..with("dk_a", 200) };
    store.insert_jobs(std::slice::from_ref(&first)).await.unwrap();
    let insert =
        |job, since_ms, passed_over| Change::InsertJobUnlessDuplicate { job, since: at(since_ms), passed_over };

    // Act and assert: refused inside the window, with the rest of its commit.
    let repeat = with("dk_a", 300);
    let also = with("dk_other", 300);
    let refused =
        store.commit(&[Change::InsertJobs(std::slice::from_ref(&also)), insert(&repeat, 100, None)], &[]).await;
    assert!(matches!(refused, Err(DbError::NotFound)), "{refused:?}");
    assert!(matches!(store.get_job(repeat.id).await, Err(DbError::NotFound)));
    assert!(matches!(store.get_job(also.id).await, Err(DbError::NotFound)), "nothing of the commit");
    // Taken: after the window, past the job passed over, with another key, or once the first failed.
    store.commit(&[insert(&repeat, 201, None)], &[]).await.unwrap();
    assert_eq!(store.get_job(repeat.id).await.unwrap(), repeat);
    let passing = with("dk_b", 300);
    store.insert_jobs(std::slice::from_ref(&passing)).await.unwrap();
    let past = with("dk_b", 310);
    store.commit(&[insert(&past, 0, Some((passing.id, passing.created_at)))], &[]).await.unwrap();
    let third = with("dk_b", 320);
    assert!(
        matches!(
            store.commit(&[insert(&third, 0, Some((passing.id, passing.created_at)))], &[]).await,
            Err(DbError::NotFound)
        ),
        "past one only"
    );
    // Going past the newest duplicate goes past the older ones too, as `find_duplicate_job` would only ever show
    // the newest.
    let (older, newest) = (with("dk_c", 100), with("dk_c", 200));
    store.insert_jobs(&[older, newest.clone()]).await.unwrap();
    let after_both = with("dk_c", 300);
    store.commit(&[insert(&after_both, 0, Some((newest.id, newest.created_at)))], &[]).await.unwrap();
    store.update_job(&JobRecord { state: JobState::Failed, ..first.clone() }).await.unwrap();
    let after_failure = with("dk_a", 400);
    assert!(
        matches!(store.commit(&[insert(&after_failure, 100, None)], &[]).await, Err(DbError::NotFound)),
        "repeat runs"
    );
    store.update_job(&JobRecord { state: JobState::Failed, ..repeat.clone() }).await.unwrap();
    store.commit(&[insert(&after_failure, 100, None)], &[]).await.unwrap();
}

pub async fn first_read_error(store: &dyn Store) -> Option<String> {
    let id = InstanceId(7_000_000_101);
    let errors = [
        store.get_job(CORRUPTED_JOB).await.err(),
        store.list_jobs(&JobListQuery { limit: 10, ..JobListQuery::default() }).await.err(),
        store.due_jobs(at(0), 10).await.err(),
        store.instance_settings(id).await.err(),
        store.instance_pause(id).await.err(),
        store.job_attempts(CORRUPTED_JOB).await.err(),
    ];
    errors.into_iter().flatten().next().map(|e| {
        assert!(matches!(e, DbError::Other(_)), "{e:?}");
        e.to_string()
    })
}

pub async fn a_queued_jobs_update_as_read_is_refused_once_another_worker_claimed_or_changed_it(store: &dyn Store) {
    // Arrange: a queued job as one worker read it.
    let id = instance(store, 7_300_000_777).await;
    let read = job("as-read", &[id], at(1000), None);
    store.insert_jobs(std::slice::from_ref(&read)).await.unwrap();
    let mut deferred = read.clone();
    deferred.next_run_at = at(90_000);
    deferred.updated_at = at(2000);

    // Act and assert: another worker claims it first; the deferral as read is refused and changes nothing.
    assert!(store.claim_job(read.id, id, at(1500)).await.unwrap());
    let refused = store
        .commit(
            &[Change::UpdateJobAsRead { job: &deferred, state: JobState::Queued, updated_at: read.updated_at }],
            &[],
        )
        .await;
    assert!(matches!(refused, Err(DbError::NotFound)), "{refused:?}");
    let stored = store.get_job(read.id).await.unwrap();
    assert_eq!((stored.state, stored.next_run_at), (JobState::Running, at(1000)));

    // A running job is put back only as read too: not by a sweep that read it before it changed.
    let mut swept = stored.clone();
    swept.state = JobState::Queued;
    let stale = Change::UpdateJobAsRead { job: &swept, state: JobState::Running, updated_at: at(1) };
    assert!(matches!(store.commit(&[stale], &[]).await, Err(DbError::NotFound)));
    assert_eq!(store.get_job(read.id).await.unwrap().state, JobState::Running);

    // Queued back (its reply was lost), it is not claimed again by a pass that read it before the first claim.
    let mut requeued = store.get_job(read.id).await.unwrap();
    requeued.state = JobState::Queued;
    requeued.needs_reconcile = true;
    store.update_job(&requeued).await.unwrap();
    let stale = Change::ClaimJob { id: read.id, instance_id: id, now: at(3000), attempts_as_read: Some(read.attempts) };
    assert!(matches!(store.commit(&[stale], &[]).await, Err(DbError::NotFound)));
    let fresh = Change::ClaimJob { id: read.id, instance_id: id, now: at(3000), attempts_as_read: Some(1) };
    store.commit(&[fresh], &[]).await.unwrap();
    assert_eq!(store.get_job(read.id).await.unwrap().attempts, 2);

    // A job still as read is updated.
    let other = job("as-read-2", &[id], at(1000), None);
    store.insert_jobs(std::slice::from_ref(&other)).await.unwrap();
    let mut later = other.clone();
    later.next_run_at = at(90_000);
    store
        .commit(&[Change::UpdateJobAsRead { job: &later, state: JobState::Queued, updated_at: other.updated_at }], &[])
        .await
        .unwrap();
    assert_eq!(store.get_job(other.id).await.unwrap().next_run_at, at(90_000));
}
