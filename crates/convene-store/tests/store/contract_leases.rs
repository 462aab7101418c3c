//! The contract of the leases on numbers (issue 14): one holder at a time, taken over only once expired, a fence that
//! grows with each change of hands, and a history of every lease taken. Run on each backend by `sqlite.rs` and
//! `postgres.rs` like `contract.rs`.

use convene_core::store::{JobRecord, JobState};
use convene_core::{ClusterNode, InstanceId, Lease, Store, Timestamp};
use uuid::Uuid;

use crate::contract_jobs::at;

const NUMBER: InstanceId = InstanceId(7_103_000_001);

/// Until `at(ms)`.
fn until(ms: i64) -> Timestamp {
    at(ms)
}

pub async fn a_free_number_is_taken_and_held_against_other_nodes_until_it_expires(store: &dyn Store) {
    // Arrange: node a takes the number until 15 s.
    let a = store.take_lease(NUMBER, "node-a", at(0), until(15_000)).await.unwrap().expect("a free number");
    assert_eq!((a.node.as_str(), a.fence, a.acquired_at, a.expires_at), ("node-a", 1, at(0), until(15_000)));

    // Act and assert: b cannot take it before it expires, itself included (a renews instead).
    assert_eq!(store.take_lease(NUMBER, "node-b", at(14_999), until(30_000)).await.unwrap(), None);
    assert_eq!(store.take_lease(NUMBER, "node-a", at(1_000), until(30_000)).await.unwrap(), None);
    assert_eq!(store.leases().await.unwrap(), vec![a.clone()], "unchanged by the refusals");

    // Once expired, b takes it with the next fence; a's renewal finds it lost.
    let b = store.take_lease(NUMBER, "node-b", at(15_000), until(30_000)).await.unwrap().expect("expired");
    assert_eq!((b.node.as_str(), b.fence), ("node-b", 2));
    assert!(!store.renew_lease(&a, at(15_001), until(40_000)).await.unwrap(), "a lost it");
    assert_eq!(store.leases().await.unwrap(), vec![b]);
}

pub async fn a_held_lease_is_renewed_until_it_expires_and_not_after(store: &dyn Store) {
    let a = store.take_lease(NUMBER, "node-a", at(0), until(15_000)).await.unwrap().unwrap();
    assert!(store.renew_lease(&a, at(5_000), until(20_000)).await.unwrap());
    assert_eq!(store.take_lease(NUMBER, "node-b", at(16_000), until(30_000)).await.unwrap(), None, "renewed");
    // A renewal that comes too late (the holder was paused past its expiry) fails even when nobody took it.
    assert!(!store.renew_lease(&a, at(20_000), until(35_000)).await.unwrap());
    assert_eq!(store.leases().await.unwrap()[0].expires_at, until(20_000));
}

pub async fn a_released_lease_is_taken_at_once_and_a_stale_release_changes_nothing(store: &dyn Store) {
    let a = store.take_lease(NUMBER, "node-a", at(0), until(15_000)).await.unwrap().unwrap();
    store.release_lease(&a, at(1_000)).await.unwrap();
    let b = store.take_lease(NUMBER, "node-b", at(1_000), until(16_000)).await.unwrap().expect("released");
    // a's second release of its old lease leaves b's alone.
    store.release_lease(&a, at(2_000)).await.unwrap();
    assert_eq!(store.leases().await.unwrap(), vec![b.clone()]);
    assert!(store.renew_lease(&b, at(2_000), until(17_000)).await.unwrap());
}

pub async fn every_lease_taken_is_in_the_numbers_history_in_order(store: &dyn Store) {
    let other = InstanceId(7_103_000_002);
    store.take_lease(NUMBER, "node-a", at(0), until(10_000)).await.unwrap().unwrap();
    store.take_lease(other, "node-a", at(0), until(10_000)).await.unwrap().unwrap();
    store.take_lease(NUMBER, "node-b", at(10_000), until(20_000)).await.unwrap().unwrap();
    assert_eq!(store.take_lease(NUMBER, "node-c", at(15_000), until(25_000)).await.unwrap(), None);
    store.take_lease(NUMBER, "node-a", at(20_000), until(30_000)).await.unwrap().unwrap();

    let history = store.lease_history(NUMBER).await.unwrap();
    let held: Vec<(&str, i64, Timestamp)> =
        history.iter().map(|lease| (lease.node.as_str(), lease.fence, lease.acquired_at)).collect();
    assert_eq!(held, vec![("node-a", 1, at(0)), ("node-b", 2, at(10_000)), ("node-a", 3, at(20_000))]);
    assert_eq!(store.lease_history(other).await.unwrap().len(), 1, "each number its own");
}

pub async fn of_nodes_racing_for_one_free_number_exactly_one_wins(store: &dyn Store) {
    let (a, b, c, d) = tokio::join!(
        store.take_lease(NUMBER, "node-a", at(0), until(15_000)),
        store.take_lease(NUMBER, "node-b", at(0), until(15_000)),
        store.take_lease(NUMBER, "node-c", at(0), until(15_000)),
        store.take_lease(NUMBER, "node-d", at(0), until(15_000)),
    );
    let winners: Vec<_> = [a, b, c, d].into_iter().filter_map(|taken| taken.unwrap()).collect();
    assert_eq!(winners.len(), 1, "{winners:?}");
    assert_eq!(store.lease_history(NUMBER).await.unwrap(), winners);
}

/// Instances 7_103_100_000 + 0..n, stored.
async fn numbers(store: &dyn Store, n: i64) -> Vec<InstanceId> {
    let mut ids = Vec::new();
    for i in 0..n {
        let record = crate::contract::instance(7_103_100_000 + i, None);
        store.insert_instance(&record).await.unwrap();
        ids.push(record.id);
    }
    ids
}

fn instances_of(leases: &[Lease]) -> Vec<InstanceId> {
    leases.iter().map(|lease| lease.instance).collect()
}

pub async fn free_numbers_are_taken_in_a_batch_up_to_a_limit_and_racing_nodes_each_get_their_own(store: &dyn Store) {
    // Arrange: six numbers; one is held by c, one was released by c, one expired under c.
    let ids = numbers(store, 6).await;
    store.take_lease(ids[0], "node-c", at(0), until(60_000)).await.unwrap().unwrap();
    let released = store.take_lease(ids[1], "node-c", at(0), until(60_000)).await.unwrap().unwrap();
    store.release_lease(&released, at(500)).await.unwrap();
    store.take_lease(ids[2], "node-c", at(0), until(1_000)).await.unwrap().unwrap();

    // Act: a asks for two, lowest first.
    let a = store.take_free_leases("node-a", at(1_000), until(16_000), 2).await.unwrap();

    // Assert: the released and the expired one, each with its next fence, in the history.
    assert_eq!(instances_of(&a), vec![ids[1], ids[2]]);
    assert!(a.iter().all(|l| l.node == "node-a" && l.fence == 2 && l.expires_at == until(16_000)), "{a:?}");
    assert_eq!(store.lease_history(ids[2]).await.unwrap().last(), a.last());

    // Act: b and d race for the rest, asking for more than there is.
    let (b, d) = tokio::join!(
        store.take_free_leases("node-b", at(1_001), until(16_000), 10),
        store.take_free_leases("node-d", at(1_001), until(16_000), 10),
    );
    let (b, d) = (b.unwrap(), d.unwrap());

    // Assert: each free number once, to one of them; the held ones not at all.
    let mut raced = [instances_of(&b), instances_of(&d)].concat();
    raced.sort();
    assert_eq!(raced, ids[3..].to_vec(), "b {b:?} d {d:?}");
    assert_eq!(store.take_free_leases("node-e", at(1_002), until(16_000), 10).await.unwrap(), vec![]);
    let holders: Vec<(InstanceId, String)> =
        store.leases().await.unwrap().into_iter().map(|l| (l.instance, l.node)).collect();
    assert_eq!(holders[0], (ids[0], "node-c".to_owned()));
}

pub async fn a_node_renews_what_it_holds_in_one_go_and_finds_what_it_lost(store: &dyn Store) {
    // Arrange: a holds three numbers until 10 s; b takes the third once it has expired.
    let ids = numbers(store, 3).await;
    let held = store.take_free_leases("node-a", at(0), until(10_000), 3).await.unwrap();
    assert_eq!(held.len(), 3);
    assert!(store.renew_lease(&held[0], at(5_000), until(20_000)).await.unwrap());
    assert!(store.renew_lease(&held[1], at(5_000), until(20_000)).await.unwrap());
    store.take_lease(ids[2], "node-b", at(10_000), until(25_000)).await.unwrap().unwrap();

    // Act
    let renewed = store.renew_leases("node-a", at(12_000), until(27_000)).await.unwrap();

    // Assert: the two it still held, to the new end, fences unchanged; b's untouched.
    assert_eq!(instances_of(&renewed), ids[..2].to_vec());
    assert!(renewed.iter().all(|l| l.expires_at == until(27_000) && l.fence == 1), "{renewed:?}");
    assert_eq!(store.leases().await.unwrap()[2].expires_at, until(25_000));
    // Once past its leases' end, a renews nothing.
    assert_eq!(store.renew_leases("node-a", at(27_000), until(40_000)).await.unwrap(), vec![]);
}

pub async fn nodes_alive_are_those_seen_lately_and_a_node_that_leaves_frees_its_numbers_at_once(store: &dyn Store) {
    // Arrange: a and b alive until 15 s; c was last seen a day and a bit before.
    let names = |nodes: Vec<ClusterNode>| nodes.into_iter().map(|n| n.node).collect::<Vec<_>>();
    let node = |name: &str, address: &str| ClusterNode {
        node: name.into(),
        address: address.into(),
        key_tag: format!("tag of {name}"),
        home: format!("host:/srv/{name}"),
    };
    assert!(store.node_alive(&node("node-c", "http://c"), at(0), until(1_000)).await.unwrap());
    assert!(store.node_alive(&node("node-a", "http://a"), at(86_402_000), until(86_415_000)).await.unwrap());
    assert!(store.node_alive(&node("node-b", "http://b"), at(86_402_000), until(86_415_000)).await.unwrap());
    // A second process under a's id, elsewhere, is refused while a is alive.
    let twin = ClusterNode { home: "other-host:/srv/node-a".into(), ..node("node-a", "http://twin") };
    assert!(!store.node_alive(&twin, at(86_403_000), until(86_418_000)).await.unwrap());
    assert_eq!(names(store.live_nodes(at(86_402_000)).await.unwrap()), vec!["node-a", "node-b"]);
    assert!(store.node_alive(&node("node-a", "http://a2"), at(86_410_000), until(86_425_000)).await.unwrap());
    let live = store.live_nodes(at(86_415_000)).await.unwrap();
    assert_eq!(live, vec![node("node-a", "http://a2")], "b was not seen again");
    let ids = numbers(store, 2).await;
    let held = store.take_free_leases("node-a", at(86_410_000), until(86_425_000), 2).await.unwrap();
    assert_eq!(held.len(), 2);
    assert_eq!(store.lease_holder(ids[0], at(86_411_000)).await.unwrap(), Some(live[0].clone()));

    // Act
    store.leave_cluster("node-a", at(86_411_000)).await.unwrap();

    // Assert: b alone is alive, and takes both numbers at once.
    assert_eq!(names(store.live_nodes(at(86_411_000)).await.unwrap()), vec!["node-b"]);
    assert_eq!(store.lease_holder(ids[0], at(86_411_000)).await.unwrap(), None, "nobody holds it");
    let taken = store.take_free_leases("node-b", at(86_411_000), until(86_426_000), 5).await.unwrap();
    assert_eq!(instances_of(&taken), ids);
    assert_eq!(store.lease_holder(ids[1], at(86_412_000)).await.unwrap(), Some(node("node-b", "http://b")));
    assert_eq!(store.lease_holder(ids[1], at(86_415_000)).await.unwrap(), None, "b was not seen again");
    // a gone, its id may run elsewhere.
    assert!(store.node_alive(&twin, at(86_416_000), until(86_431_000)).await.unwrap());
}

pub async fn a_deleted_numbers_lease_goes_with_it_and_its_history_stays(store: &dyn Store) {
    let ids = numbers(store, 2).await;
    store.take_free_leases("node-a", at(0), until(15_000), 2).await.unwrap();
    store.delete_instance(ids[0]).await.unwrap();
    assert_eq!(instances_of(&store.leases().await.unwrap()), vec![ids[1]]);
    assert_eq!(store.lease_history(ids[0]).await.unwrap().len(), 1);
    assert_eq!(instances_of(&store.renew_leases("node-a", at(1_000), until(16_000)).await.unwrap()), vec![ids[1]]);
}

pub async fn a_node_finds_the_jobs_of_its_numbers_behind_any_number_of_other_nodes_jobs(store: &dyn Store) {
    // Arrange: a holds numbers 0 and 1 (1's lease has ended), b holds 2. 150 jobs of b's number are due first, then
    // one of each kind a runs: naming its number among others, to reconcile on its number (naming b's too), and one
    // to reconcile on b's number that names a's.
    let ids = numbers(store, 3).await;
    store.take_lease(ids[0], "node-a", at(0), until(60_000)).await.unwrap().unwrap();
    store.take_lease(ids[1], "node-a", at(0), until(1_000)).await.unwrap().unwrap();
    store.take_lease(ids[2], "node-b", at(0), until(60_000)).await.unwrap().unwrap();
    // And a number of b's whose id begins with a's first number's: its jobs are not a's.
    let longer = crate::contract::instance(ids[0].0 * 10 + 1, None);
    store.insert_instance(&longer).await.unwrap();
    store.take_lease(longer.id, "node-b", at(0), until(60_000)).await.unwrap().unwrap();
    let job = |instances: Vec<InstanceId>, pinned: Option<InstanceId>, due_ms: i64| JobRecord {
        id: Uuid::now_v7(),
        batch_id: None,
        state: JobState::Queued,
        instance_ids: instances,
        pinned_instance_id: pinned,
        request: "{}".into(),
        creation_key: format!("ck_{}", Uuid::now_v7().simple()),
        attempts: 0,
        next_run_at: at(due_ms),
        needs_reconcile: pinned.is_some(),
        last_error: None,
        result: None,
        dedupe_key: None,
        created_at: at(due_ms),
        updated_at: at(due_ms),
    };
    let mut jobs: Vec<JobRecord> = (0..150).map(|i| job(vec![ids[2]], None, i)).collect();
    let among_others = job(vec![ids[2], ids[0]], None, 200);
    let reconcile_here = job(vec![ids[0], ids[2]], Some(ids[0]), 201);
    let reconcile_elsewhere = job(vec![ids[0], ids[2]], Some(ids[2]), 202);
    let lease_ended = job(vec![ids[1]], None, 203);
    let not_due = job(vec![ids[0]], None, 5_000);
    let on_longer = job(vec![longer.id], None, 204);
    jobs.extend([among_others.clone(), reconcile_here.clone(), reconcile_elsewhere, lease_ended, not_due, on_longer]);
    store.insert_jobs(&jobs).await.unwrap();

    // Act
    let a = store.due_jobs_leased_by("node-a", at(2_000), at(1_000), 100).await.unwrap();
    let b = store.due_jobs_leased_by("node-b", at(2_000), at(1_000), 200).await.unwrap();
    let nobody = store.due_jobs_leased_by("node-c", at(2_000), at(1_000), 100).await.unwrap();

    // Assert: a gets its two, soonest first, though the first 100 due are all b's.
    let ids_of = |jobs: &[JobRecord]| jobs.iter().map(|j| j.id).collect::<Vec<_>>();
    assert_eq!(ids_of(&a), vec![among_others.id, reconcile_here.id]);
    assert_eq!(a[1], reconcile_here, "whole records");
    assert_eq!(
        b.len(),
        153,
        "b's 150, the one naming its number among others, the one to reconcile on it, the one on its longer-id number"
    );
    assert!(nobody.is_empty());
    assert_eq!(store.due_jobs_leased_by("node-a", at(2_000), at(1_000), 1).await.unwrap().len(), 1, "limit");
}
