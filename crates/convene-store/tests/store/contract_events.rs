//! The contract of events and webhook deliveries: changes and their events in one transaction, the fan-out to
//! endpoints by filter, the per-key delivery queue, the attempt log, replays, Green API's notification queue. Run on
//! each backend by `sqlite.rs` and `postgres.rs` like `contract.rs`.

use convene_core::events::{
    AttemptOutcome, Change, DeliveryAttempt, DeliveryListQuery, DeliveryState, EventFilter, EventListQuery, EventType,
    NewEvent, SealedSecret, WebhookEndpoint,
};
use convene_core::store::{GroupRecord, JobRecord, JobState};
use convene_core::{DbError, GroupId, GroupJid, GroupSettings, InstanceId, Store};
use uuid::Uuid;

use crate::contract_jobs::{at, instance};

pub(crate) fn event(event_type: EventType, key: &str, ms: i64) -> NewEvent {
    let id = Uuid::now_v7();
    NewEvent {
        id,
        event_type,
        instance_id: Some(InstanceId(7_200_000_001)),
        ordering_key: key.into(),
        payload: format!("{{\"id\":\"{id}\",\"type\":\"{}\"}}", event_type.as_str()),
        created_at: at(ms),
    }
}

pub(crate) async fn endpoint(store: &dyn Store, filter: &[&str], enabled: bool) -> WebhookEndpoint {
    let e = WebhookEndpoint {
        id: Uuid::now_v7(),
        url: "https://example.com/hook".into(),
        description: "d".into(),
        filter: EventFilter::parse(filter).unwrap(),
        enabled,
        disabled_reason: (!enabled).then(|| "off".into()),
        secret: SealedSecret("v1.sealed".into()),
        previous_secret: None,
        failing_since: None,
        created_at: at(0),
        updated_at: at(0),
    };
    store.insert_webhook_endpoint(&e).await.unwrap();
    e
}

async fn types_for(store: &dyn Store, endpoint: Uuid) -> Vec<String> {
    let query = DeliveryListQuery { endpoint_id: Some(endpoint), limit: 500, ..DeliveryListQuery::default() };
    let mut types: Vec<String> =
        store.list_deliveries(&query).await.unwrap().into_iter().map(|d| d.event_type).collect();
    types.sort();
    types
}

fn failed_attempt(delivery_id: i64, ms: i64, state: DeliveryState, next: i64) -> (DeliveryAttempt, AttemptOutcome) {
    (
        DeliveryAttempt {
            id: Uuid::now_v7(),
            delivery_id,
            attempted_at: at(ms),
            duration_ms: 12,
            status: Some(503),
            error: None,
            response_body: Some("busy".into()),
        },
        AttemptOutcome {
            state,
            next_attempt_at: at(next),
            last_error: Some("HTTP 503".into()),
            endpoint_failing_since: Some(at(0)),
            disable_endpoint: None,
            claim: None,
        },
    )
}

fn queued_job(key: &str, instance: InstanceId) -> JobRecord {
    JobRecord {
        id: Uuid::now_v7(),
        batch_id: None,
        state: JobState::Queued,
        instance_ids: vec![instance],
        pinned_instance_id: None,
        request: "{}".into(),
        creation_key: key.into(),
        attempts: 0,
        next_run_at: at(0),
        needs_reconcile: false,
        last_error: None,
        result: None,
        dedupe_key: None,
        created_at: at(0),
        updated_at: at(0),
    }
}

pub async fn a_commit_writes_the_change_and_its_events_or_neither(store: &dyn Store) {
    // Arrange: a job someone else already claimed.
    let id = instance(store, 7_200_000_010).await;
    let job = queued_job("commit-1", id);
    store.insert_jobs(std::slice::from_ref(&job)).await.unwrap();
    let hook = endpoint(store, &[], true).await;
    store
        .commit(&[Change::ClaimJob { id: job.id, instance_id: id, now: at(1), attempts_as_read: None }], &[])
        .await
        .unwrap();

    // Act: a second claim, and an update of a group that does not exist, each with an event.
    let claim_again = Change::ClaimJob { id: job.id, instance_id: id, now: at(2), attempts_as_read: None };
    let second = store.commit(&[claim_again], &[event(EventType::JobStateChanged, "job:1", 2)]).await;
    let ghost = GroupRecord {
        id: GroupId(Uuid::now_v7()),
        instance_id: id,
        jid: GroupJid::parse("120363000000000001@g.us").unwrap(),
        subject: "ghost".into(),
        description: None,
        settings: GroupSettings::default(),
        created_at: at(0),
        updated_at: at(0),
        left_at: None,
        creation_job_id: None,
    };
    let update = store.commit(&[Change::UpdateGroup(&ghost)], &[event(EventType::GroupUpdated, "g", 3)]).await;
    let written = event(EventType::JobStateChanged, "job:1", 4);
    let mut done = job.clone();
    done.state = JobState::Succeeded;
    store.commit(&[Change::UpdateJob(&done)], std::slice::from_ref(&written)).await.unwrap();

    // Assert
    assert!(matches!(second, Err(DbError::NotFound)), "{second:?}");
    assert!(matches!(update, Err(DbError::NotFound)), "{update:?}");
    let events = store.list_events(&EventListQuery { limit: 500, ..EventListQuery::default() }).await.unwrap();
    assert_eq!(events.iter().map(|e| e.id).collect::<Vec<_>>(), [written.id], "refused commits wrote no event");
    assert_eq!(store.get_job(job.id).await.unwrap().state, JobState::Succeeded);
    assert_eq!(store.get_job(job.id).await.unwrap().attempts, 1, "the refused claim counted no attempt");
    assert_eq!(types_for(store, hook.id).await, ["job.state_changed"]);
}

pub async fn events_fan_out_to_enabled_endpoints_whose_filter_takes_them(store: &dyn Store) {
    // Arrange
    let all = endpoint(store, &[], true).await;
    let created = endpoint(store, &["group.created"], true).await;
    let instances = endpoint(store, &["instance.*"], true).await;
    let participants = endpoint(store, &["group.participants.*", "job.state_changed"], true).await;
    let disabled = endpoint(store, &[], false).await;

    // Act
    let events = [
        event(EventType::GroupCreated, "g1", 1),
        event(EventType::ParticipantsJoined, "g1", 2),
        event(EventType::InstanceQrReady, "i1", 3),
        event(EventType::JobStateChanged, "j1", 4),
        event(EventType::GroupUpdated, "g1", 5),
    ];
    store.commit(&[], &events).await.unwrap();

    // Assert
    assert_eq!(types_for(store, all.id).await.len(), 5);
    assert_eq!(types_for(store, created.id).await, ["group.created"]);
    assert_eq!(types_for(store, instances.id).await, ["instance.qr_ready"]);
    assert_eq!(types_for(store, participants.id).await, ["group.participants.joined", "job.state_changed"]);
    assert_eq!(types_for(store, disabled.id).await, Vec::<String>::new());
    let read = store.get_webhook_endpoint(participants.id).await.unwrap();
    assert_eq!(read, participants, "the filter reads back as written");
}

pub async fn only_the_oldest_pending_delivery_of_each_key_is_due(store: &dyn Store) {
    // Arrange: two events of group A, one of group B.
    let hook = endpoint(store, &[], true).await;
    store
        .commit(
            &[],
            &[
                event(EventType::GroupCreated, "A", 0),
                event(EventType::GroupUpdated, "A", 1),
                event(EventType::GroupCreated, "B", 2),
            ],
        )
        .await
        .unwrap();

    // Act 1
    let due = store.due_deliveries(at(10), 100).await.unwrap();

    // Assert 1: A's first and B's; A's second waits.
    let keys: Vec<&str> = due.iter().map(|d| d.delivery.ordering_key.as_str()).collect();
    assert_eq!(keys, ["A", "B"]);
    assert_eq!(due[0].endpoint, hook);
    assert!(due[0].payload.contains("group.created"));
    assert_eq!(due[0].event_created_at, at(0));

    // Act 2: A's first fails and is retried later; B's succeeds; both recorded together, in that order.
    let (attempt, outcome) = failed_attempt(due[0].delivery.id, 10, DeliveryState::Pending, 5000);
    let mut ok = failed_attempt(due[1].delivery.id, 10, DeliveryState::Succeeded, 10);
    ok.1.endpoint_failing_since = None;
    store.record_delivery_attempts(&[(&attempt, &outcome), (&ok.0, &ok.1)]).await.unwrap();

    // Assert 2: nothing due until A's retry; A's second still waits behind it.
    assert!(store.due_deliveries(at(20), 100).await.unwrap().is_empty());
    assert_eq!(store.next_delivery_due().await.unwrap(), Some(at(5000)));
    let later = store.due_deliveries(at(5000), 100).await.unwrap();
    assert_eq!(later.len(), 1);
    assert_eq!(later[0].delivery.id, due[0].delivery.id);
    assert_eq!(later[0].delivery.attempts, 1);
    assert_eq!(store.get_webhook_endpoint(hook.id).await.unwrap().failing_since, None, "B's success came last");
}

pub async fn claimed_deliveries_go_to_one_pass_and_are_due_again_only_when_the_claim_ends(store: &dyn Store) {
    // Arrange: three keys, two events of A.
    endpoint(store, &[], true).await;
    let events = [
        event(EventType::GroupCreated, "A", 0),
        event(EventType::GroupUpdated, "A", 1),
        event(EventType::GroupCreated, "B", 2),
        event(EventType::GroupCreated, "C", 3),
    ];
    store.commit(&[], &events).await.unwrap();

    // Act: two passes claim at once, each up to two.
    let (first, second) = tokio::join!(
        store.claim_due_deliveries(at(10), 2, "pass-1", at(40_000)),
        store.claim_due_deliveries(at(10), 2, "pass-2", at(40_000)),
    );

    // Assert: A's first, B's and C's, each to one pass; A's second still waits behind A's first. (On PostgreSQL
    // both passes may pick the same two: the second then skips them, claimed, and a later pass takes the third.)
    let mut keys: Vec<String> =
        first.unwrap().into_iter().chain(second.unwrap()).map(|d| d.delivery.ordering_key).collect();
    let later = store.claim_due_deliveries(at(10), 10, "pass-later", at(40_000)).await.unwrap();
    keys.extend(later.into_iter().map(|d| d.delivery.ordering_key));
    keys.sort();
    assert_eq!(keys, ["A", "B", "C"], "each head once, to one pass");
    assert!(store.claim_due_deliveries(at(20), 10, "pass-3", at(40_020)).await.unwrap().is_empty(), "all claimed");
    assert!(store.due_deliveries(at(39_999), 10).await.unwrap().is_empty());
    // A pass that died with its claim: the deliveries are due again when the claim ends.
    let again = store.claim_due_deliveries(at(40_000), 10, "pass-4", at(80_000)).await.unwrap();
    assert_eq!(again.len(), 3);
    assert!(again.iter().all(|d| d.delivery.attempts == 0));
    // One that gives its claim back: due again at once; giving back another's claim changes nothing.
    assert_eq!(store.release_delivery_claim("pass-1", at(40_000), at(40_001)).await.unwrap(), 0);
    assert_eq!(store.release_delivery_claim("pass-4", at(80_000), at(40_001)).await.unwrap(), 3);
    assert_eq!(store.due_deliveries(at(40_001), 10).await.unwrap().len(), 3);
}

/// Passes claiming at once, as the dispatchers of several nodes do, all succeed and share the deliveries, each
/// delivery claimed once. (On PostgreSQL, two passes locking overlapping rows each in its own order deadlocked: one
/// of them failed after a second.)
pub async fn many_passes_claiming_at_once_all_succeed_and_claim_each_delivery_once(store: &dyn Store) {
    // Arrange: 240 deliveries, each of a key of its own.
    endpoint(store, &[], true).await;
    let events: Vec<NewEvent> = (0..240).map(|i| event(EventType::GroupCreated, &format!("K{i}"), i)).collect();
    store.commit(&[], &events).await.unwrap();

    // Act: first, forty rounds of six passes at once whose claims end as they are made (the deliveries stay due,
    // their rows rewritten each time, as under passes whose claims run out); then rounds of six passes holding their
    // claims, each taking up to 16, until a round takes nothing.
    for round in 0..40 {
        let churn = |pass: u32| {
            let name = format!("short-{round}-{pass}");
            async move { store.claim_due_deliveries(at(1_000), 60, &name, at(1_000)).await }
        };
        let passes = tokio::join!(churn(0), churn(1), churn(2), churn(3), churn(4), churn(5));
        for pass in [passes.0, passes.1, passes.2, passes.3, passes.4, passes.5] {
            pass.expect("no pass fails");
        }
    }
    let mut claimed = Vec::new();
    for round in 0..100 {
        let claim = |pass: u32| {
            let name = format!("pass-{round}-{pass}");
            async move { store.claim_due_deliveries(at(1_000), 16, &name, at(40_000)).await }
        };
        let passes = tokio::join!(claim(0), claim(1), claim(2), claim(3), claim(4), claim(5));
        let mut taken = 0;
        for pass in [passes.0, passes.1, passes.2, passes.3, passes.4, passes.5] {
            let pass = pass.expect("no pass fails");
            taken += pass.len();
            claimed.extend(pass.into_iter().map(|d| d.delivery.id));
        }
        if taken == 0 {
            break;
        }
    }

    // Assert
    let unique: std::collections::HashSet<i64> = claimed.iter().copied().collect();
    assert_eq!((claimed.len(), unique.len()), (240, 240), "every delivery claimed, once");
}

pub async fn a_pass_that_overran_its_claim_records_nothing_over_the_pass_that_took_it_over(store: &dyn Store) {
    // Arrange: pass 1's claim runs out; pass 2 takes the delivery over and delivers it.
    endpoint(store, &[], true).await;
    store.commit(&[], &[event(EventType::GroupCreated, "A", 0)]).await.unwrap();
    let id = store.claim_due_deliveries(at(10), 10, "pass-1", at(100)).await.unwrap()[0].delivery.id;
    assert_eq!(store.claim_due_deliveries(at(100), 10, "pass-2", at(200)).await.unwrap()[0].delivery.id, id);
    let (delivered, mut succeeded) = failed_attempt(id, 110, DeliveryState::Succeeded, 110);
    succeeded.claim = Some("pass-2".into());
    store.record_delivery_attempts(&[(&delivered, &succeeded)]).await.unwrap();

    // Act: pass 1 comes back with its failure.
    let (late, mut failed) = failed_attempt(id, 120, DeliveryState::Pending, 5000);
    failed.claim = Some("pass-1".into());
    let recorded = store.record_delivery_attempts(&[(&late, &failed)]).await;

    // Assert: refused, and the delivery stays delivered, with one attempt logged.
    assert!(matches!(recorded, Err(DbError::NotFound)), "{recorded:?}");
    let delivery = store.get_delivery(id).await.unwrap();
    assert_eq!((delivery.state, delivery.attempts), (DeliveryState::Succeeded, 1));
    assert_eq!(store.delivery_attempts(id).await.unwrap().len(), 1);
}

pub async fn an_attempt_is_logged_and_can_disable_its_endpoint(store: &dyn Store) {
    // Arrange
    let hook = endpoint(store, &[], true).await;
    store.commit(&[], &[event(EventType::GroupCreated, "A", 0)]).await.unwrap();
    let id = store.due_deliveries(at(0), 1).await.unwrap()[0].delivery.id;

    // Act
    let (attempt, mut outcome) = failed_attempt(id, 100, DeliveryState::Failed, 100);
    outcome.disable_endpoint = Some("every delivery has failed since …; last: HTTP 503".into());
    store.record_delivery_attempts(&[(&attempt, &outcome)]).await.unwrap();

    // Assert
    let delivery = store.get_delivery(id).await.unwrap();
    assert_eq!((delivery.state, delivery.attempts), (DeliveryState::Failed, 1));
    assert_eq!(delivery.last_error.as_deref(), Some("HTTP 503"));
    assert_eq!(store.delivery_attempts(id).await.unwrap(), [attempt]);
    let endpoint = store.get_webhook_endpoint(hook.id).await.unwrap();
    assert!(!endpoint.enabled);
    assert_eq!(endpoint.disabled_reason, outcome.disable_endpoint);
    assert_eq!(endpoint.failing_since, Some(at(0)));
    assert_eq!(store.next_delivery_due().await.unwrap(), None, "nothing is due for a disabled endpoint");

    // A batch naming a delivery that is gone writes nothing, not even its other attempts.
    let (later, later_outcome) = failed_attempt(id, 200, DeliveryState::Failed, 200);
    let (gone, _) = failed_attempt(id + 1000, 1, DeliveryState::Failed, 1);
    let missing = store.record_delivery_attempts(&[(&later, &later_outcome), (&gone, &outcome)]).await;
    assert!(matches!(missing, Err(DbError::NotFound)), "{missing:?}");
    assert_eq!(store.delivery_attempts(id).await.unwrap().len(), 1);
    assert_eq!(store.get_delivery(id).await.unwrap().attempts, 1);
}

pub async fn failed_deliveries_replay_one_or_all_since_a_time(store: &dyn Store) {
    // Arrange: three failed deliveries, one succeeded.
    let hook = endpoint(store, &[], true).await;
    store
        .commit(
            &[],
            &[
                event(EventType::GroupCreated, "A", 0),
                event(EventType::GroupCreated, "B", 100),
                event(EventType::GroupCreated, "C", 200),
                event(EventType::GroupCreated, "D", 300),
            ],
        )
        .await
        .unwrap();
    let due = store.due_deliveries(at(300), 10).await.unwrap();
    for (i, d) in due.iter().enumerate() {
        let state = if i == 3 { DeliveryState::Succeeded } else { DeliveryState::Failed };
        let (a, o) = failed_attempt(d.delivery.id, 400, state, 400);
        store.record_delivery_attempts(&[(&a, &o)]).await.unwrap();
    }

    // Act and assert
    assert_eq!(store.replay_deliveries(Some(due[3].delivery.id), None, None, at(500)).await.unwrap(), 0, "not failed");
    assert_eq!(store.replay_deliveries(Some(due[0].delivery.id), None, None, at(500)).await.unwrap(), 1);
    let replayed = store.get_delivery(due[0].delivery.id).await.unwrap();
    assert_eq!((replayed.state, replayed.next_attempt_at, replayed.attempts), (DeliveryState::Pending, at(500), 1));
    assert_eq!(store.replay_deliveries(None, Some(hook.id), Some(at(150)), at(600)).await.unwrap(), 1, "C only");
    assert_eq!(store.replay_deliveries(None, Some(hook.id), None, at(700)).await.unwrap(), 1, "B is left");
    assert!(matches!(store.replay_deliveries(Some(999_999), None, None, at(1)).await, Err(DbError::NotFound)));
    let pending = DeliveryListQuery {
        endpoint_id: Some(hook.id),
        state: Some(DeliveryState::Pending),
        limit: 10,
        ..Default::default()
    };
    assert_eq!(store.list_deliveries(&pending).await.unwrap().len(), 3);
}

pub async fn the_notification_queue_gives_the_oldest_unacknowledged_event_of_an_instance(store: &dyn Store) {
    // Arrange: events of two instances, one too old.
    let mine = InstanceId(7_200_000_001);
    let mut other = event(EventType::GroupCreated, "x", 50);
    other.instance_id = Some(InstanceId(7_200_000_002));
    let (old, first, second) = (
        event(EventType::GroupCreated, "a", 0),
        event(EventType::GroupUpdated, "a", 100),
        event(EventType::GroupUpdated, "a", 200),
    );
    store.commit(&[], &[old, other, first.clone(), second.clone()]).await.unwrap();

    // Act and assert
    let next = store.next_unacknowledged_event(mine, at(50)).await.unwrap().unwrap();
    assert_eq!(next.id, first.id, "the one before the cut-off is out of the queue");
    assert!(store.acknowledge_event(mine, next.seq, at(300)).await.unwrap());
    assert!(!store.acknowledge_event(mine, next.seq, at(301)).await.unwrap(), "only once");
    let other_seq = store
        .list_events(&EventListQuery { instance_id: Some(InstanceId(7_200_000_002)), limit: 5, ..Default::default() })
        .await
        .unwrap()[0]
        .seq;
    assert!(!store.acknowledge_event(mine, other_seq, at(302)).await.unwrap(), "not another instance's");
    let after = store.next_unacknowledged_event(mine, at(50)).await.unwrap().unwrap();
    assert_eq!(after.id, second.id);
    let all =
        store.list_events(&EventListQuery { instance_id: Some(mine), limit: 500, ..Default::default() }).await.unwrap();
    assert_eq!(all.len(), 3);
    assert_eq!(all[1].acknowledged_at, Some(at(300)));
    let page = store
        .list_events(&EventListQuery {
            instance_id: Some(mine),
            after_seq: Some(all[1].seq),
            limit: 500,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(page.iter().map(|e| e.id).collect::<Vec<_>>(), [second.id]);
}

pub async fn events_list_newest_first_by_type_and_instance_a_page_before_a_seq(store: &dyn Store) {
    // Arrange: three of one instance, two of them `group.created`, and one of another instance.
    let mine = InstanceId(7_200_000_001);
    let mut elsewhere = event(EventType::GroupCreated, "x", 40);
    elsewhere.instance_id = Some(InstanceId(7_200_000_002));
    let (first, updated, last) = (
        event(EventType::GroupCreated, "a", 10),
        event(EventType::GroupUpdated, "a", 20),
        event(EventType::GroupCreated, "b", 30),
    );
    store.commit(&[], &[first.clone(), updated, elsewhere.clone(), last.clone()]).await.unwrap();
    let list = |query: EventListQuery| async move {
        store.list_events(&query).await.unwrap().into_iter().map(|e| e.id).collect::<Vec<_>>()
    };
    let created = || EventListQuery {
        event_type: Some("group.created".into()),
        newest_first: true,
        limit: 500,
        ..Default::default()
    };

    // Act
    let every_created = list(created()).await;
    let mine_created = list(EventListQuery { instance_id: Some(mine), ..created() }).await;
    let newest = store.list_events(&EventListQuery { instance_id: Some(mine), ..created() }).await.unwrap();
    let before_newest =
        list(EventListQuery { instance_id: Some(mine), before_seq: Some(newest[0].seq), ..created() }).await;

    // Assert
    assert_eq!(every_created, [last.id, elsewhere.id, first.id]);
    assert_eq!(mine_created, [last.id, first.id]);
    assert_eq!(before_newest, [first.id]);
}

pub async fn endpoints_update_and_delete_with_their_deliveries_but_not_the_events(store: &dyn Store) {
    // Arrange
    let mut hook = endpoint(store, &["group.*"], true).await;
    let keep = endpoint(store, &[], true).await;
    store.commit(&[], &[event(EventType::GroupCreated, "A", 0)]).await.unwrap();
    let id = store
        .due_deliveries(at(0), 10)
        .await
        .unwrap()
        .into_iter()
        .find(|d| d.endpoint.id == hook.id)
        .unwrap()
        .delivery
        .id;
    let (a, o) = failed_attempt(id, 1, DeliveryState::Pending, 100);
    store.record_delivery_attempts(&[(&a, &o)]).await.unwrap();

    // Act
    hook.url = "https://example.org/new".into();
    hook.previous_secret = Some((SealedSecret("v1.old".into()), at(9000)));
    hook.enabled = false;
    hook.disabled_reason = Some("by hand".into());
    hook.updated_at = at(5);
    store.update_webhook_endpoint(&hook).await.unwrap();
    let updated = store.get_webhook_endpoint(hook.id).await.unwrap();
    store.delete_webhook_endpoint(hook.id).await.unwrap();

    // Assert
    assert_eq!(updated, hook, "an update replaces every field, failing_since included");
    assert!(matches!(store.get_webhook_endpoint(hook.id).await, Err(DbError::NotFound)));
    assert!(matches!(store.get_delivery(id).await, Err(DbError::NotFound)));
    assert!(store.delivery_attempts(id).await.unwrap().is_empty());
    assert_eq!(store.list_events(&EventListQuery { limit: 10, ..Default::default() }).await.unwrap().len(), 1);
    assert_eq!(store.list_webhook_endpoints().await.unwrap(), [keep]);
    assert!(matches!(store.delete_webhook_endpoint(hook.id).await, Err(DbError::NotFound)));
    assert!(matches!(store.update_webhook_endpoint(&hook).await, Err(DbError::NotFound)));
}

pub async fn old_events_go_with_their_deliveries_and_attempts_unless_still_owed(store: &dyn Store) {
    // Arrange: an old event no endpoint took; then old events delivered (A), failed for good (B) and still being
    // retried (C), and a recent one (D).
    let unrouted = event(EventType::InstanceConnected, "instance", 0);
    store.commit(&[], std::slice::from_ref(&unrouted)).await.unwrap();
    let hook = endpoint(store, &[], true).await;
    let events: Vec<NewEvent> = [("A", 1), ("B", 2), ("C", 3), ("D", 1000)]
        .into_iter()
        .map(|(key, ms)| event(EventType::GroupCreated, key, ms))
        .collect();
    store.commit(&[], &events).await.unwrap();
    let due = store.due_deliveries(at(1000), 10).await.unwrap();
    let delivery = |key: &str| due.iter().find(|d| d.delivery.ordering_key == key).unwrap().delivery.id;
    let mut delivered = failed_attempt(delivery("A"), 10, DeliveryState::Succeeded, 10);
    delivered.1.endpoint_failing_since = None;
    store.record_delivery_attempts(&[(&delivered.0, &delivered.1)]).await.unwrap();
    let given_up = failed_attempt(delivery("B"), 10, DeliveryState::Failed, 10);
    store.record_delivery_attempts(&[(&given_up.0, &given_up.1)]).await.unwrap();
    let retrying = failed_attempt(delivery("C"), 10, DeliveryState::Pending, 5000);
    store.record_delivery_attempts(&[(&retrying.0, &retrying.1)]).await.unwrap();

    // Act: everything before 500 ms may go, one event at a time and then the rest.
    let first = store.prune_events(at(500), 1).await.unwrap();
    let rest = store.prune_events(at(500), 10).await.unwrap();
    let again = store.prune_events(at(500), 10).await.unwrap();

    // Assert: the oldest went first; C (still owed) and D (recent) stay with their deliveries and attempt logs.
    assert_eq!((first, rest, again), (1, 2, 0));
    let left = store.list_events(&EventListQuery { limit: 10, ..Default::default() }).await.unwrap();
    let left: Vec<Uuid> = left.into_iter().map(|e| e.id).collect();
    assert_eq!(left, [events[2].id, events[3].id]);
    for gone in [delivery("A"), delivery("B")] {
        assert!(matches!(store.get_delivery(gone).await, Err(DbError::NotFound)));
        assert!(store.delivery_attempts(gone).await.unwrap().is_empty());
    }
    assert_eq!(store.delivery_attempts(delivery("C")).await.unwrap(), [retrying.0]);
    assert_eq!(store.get_delivery(delivery("D")).await.unwrap().state, DeliveryState::Pending);
    assert_eq!(store.get_webhook_endpoint(hook.id).await.unwrap().id, hook.id);
}

/// Readers follow the log by `seq` (`after_seq`, Green API's receipt ids): an event must never appear below a cursor
/// already passed. On PostgreSQL `seq` is taken at insert and transactions commit in any order, so concurrent commits
/// are put in turn; this reader follows four writers and must see every event.
pub async fn a_reader_following_the_log_misses_no_event_written_by_concurrent_commits(store: &dyn Store) {
    const WRITERS: usize = 4;
    const EACH: usize = 60;
    let done = std::sync::atomic::AtomicUsize::new(0);
    let write = |writer: usize| {
        let done = &done;
        async move {
            for i in 0..EACH {
                let e = event(EventType::GroupCreated, &format!("w{writer}-{i}"), 1_000 + i as i64);
                store.commit(&[], std::slice::from_ref(&e)).await.unwrap();
            }
            done.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
    };
    let read = async {
        let (mut cursor, mut seen) = (None, std::collections::HashSet::new());
        loop {
            let finished = done.load(std::sync::atomic::Ordering::SeqCst) == WRITERS;
            let query = EventListQuery {
                instance_id: None,
                event_type: None,
                after_seq: cursor,
                before_seq: None,
                newest_first: false,
                limit: 500,
            };
            let page = store.list_events(&query).await.unwrap();
            if let Some(last) = page.last() {
                cursor = Some(last.seq);
            }
            seen.extend(page.into_iter().map(|e| e.id));
            if finished {
                return seen;
            }
            tokio::task::yield_now().await;
        }
    };
    let (_, _, _, _, seen) = tokio::join!(write(0), write(1), write(2), write(3), read);
    let all = store.list_events(&EventListQuery { after_seq: None, limit: 500, ..events_query() }).await.unwrap();
    assert_eq!(all.len(), WRITERS * EACH);
    let missed = all.iter().filter(|e| !seen.contains(&e.id)).count();
    assert_eq!(missed, 0, "the reader passed {missed} events before they were committed");
}

fn events_query() -> EventListQuery {
    EventListQuery {
        instance_id: None,
        event_type: None,
        after_seq: None,
        before_seq: None,
        newest_first: false,
        limit: 500,
    }
}
