//! The contract of the leases on numbers (issue 14): one holder at a time, taken over only once expired, a fence that
//! grows with each change of hands, and a history of every lease taken. Run on each backend by `sqlite.rs` and
//! `postgres.rs` like `contract.rs`.

use convene_core::{InstanceId, Store, Timestamp};

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
