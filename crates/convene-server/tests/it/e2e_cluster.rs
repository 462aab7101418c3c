//! Several nodes on one PostgreSQL database (issue 14) share the numbers through leases, balance them as nodes join,
//! and take a dead node's numbers once its leases end. (A second node on one SQLite file is refused by the binary:
//! `convene`'s cli tests.)

use std::sync::Arc;
use std::time::{Duration, Instant};

use convene_core::{InstanceId, SystemClock};
use convene_server::AppState;
use convene_server::service::{NewGroup, RetryGuard};
use convene_store::ScratchDatabase;
use tokio_util::sync::CancellationToken;

/// A node of the cluster under test: its state, and the task keeping its leases.
struct Node {
    state: AppState,
    keeping: CancellationToken,
    _dir: tempfile::TempDir,
}

impl Node {
    async fn start(database: &ScratchDatabase, lease_ttl_secs: u64) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let (mut config, _) = crate::helpers::test_config(dir.path()).await;
        config.database_url = database.url().to_owned();
        config.cluster.lease_ttl_secs = lease_ttl_secs;
        let state = AppState::open(&config, Arc::new(SystemClock)).await.unwrap();
        let keeping = CancellationToken::new();
        let (instances, stop) = (state.service.instances().clone(), keeping.clone());
        tokio::spawn(async move { instances.keep_leases(stop).await });
        Self { state, keeping, _dir: dir }
    }

    fn running(&self, ids: &[InstanceId]) -> Vec<InstanceId> {
        ids.iter().copied().filter(|id| self.state.service.instances().runs_here(*id)).collect()
    }
}

/// Polls `nodes` until `done` holds of how many of `ids` each runs, checking at every look that no number runs on
/// two nodes; panics after `within`.
async fn until_shared(nodes: &[&Node], ids: &[InstanceId], within: Duration, done: impl Fn(&[usize]) -> bool) {
    let started = Instant::now();
    loop {
        let running: Vec<Vec<InstanceId>> = nodes.iter().map(|node| node.running(ids)).collect();
        for id in ids {
            let runners = running.iter().filter(|r| r.contains(id)).count();
            assert!(runners <= 1, "instance {id} runs on {runners} nodes at once: {running:?}");
        }
        let counts: Vec<usize> = running.iter().map(Vec::len).collect();
        if done(&counts) {
            return;
        }
        assert!(started.elapsed() < within, "not shared as expected within {within:?}: {counts:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn nodes_on_one_postgresql_share_the_numbers_balance_as_they_join_and_take_a_dead_nodes_after_its_lease() {
    let Some(server) = std::env::var("TEST_DATABASE_URL").ok().filter(|u| !u.is_empty()) else {
        eprintln!("skipped: needs PostgreSQL (TEST_DATABASE_URL; scripts/test.sh starts one)");
        return;
    };
    let database = ScratchDatabase::create(&server).await.unwrap();
    const TTL: u64 = 3;

    // Arrange: node a alone, with six numbers; each runs on a from its creation.
    let a = Node::start(&database, TTL).await;
    let mut ids = Vec::new();
    for _ in 0..6 {
        let (record, _) = a.state.service.instances().create(convene_sandbox::KIND, None, None).await.unwrap();
        ids.push(record.id);
    }
    assert_eq!(a.running(&ids), ids, "a runs every number it made");

    // Act: b joins, then c.
    let b = Node::start(&database, TTL).await;
    until_shared(&[&a, &b], &ids, Duration::from_secs(10), |n| n == [3, 3]).await;
    let c = Node::start(&database, TTL).await;
    until_shared(&[&a, &b, &c], &ids, Duration::from_secs(10), |n| n == [2, 2, 2]).await;

    // A job for a number b runs is left to b by the others.
    let on_b = b.running(&ids)[0];
    let new =
        NewGroup { subject: "Queued on b".into(), participants: vec!["+17137157533".into()], ..Default::default() };
    let queued = a.state.service.enqueue_groups(&[on_b], vec![new]).await.unwrap().jobs[0].id;
    assert_eq!(a.state.service.run_due_jobs().await.unwrap(), 0, "a leaves b's job");
    assert_eq!(c.state.service.run_due_jobs().await.unwrap(), 0, "c leaves b's job");
    assert_eq!(b.state.service.run_due_jobs().await.unwrap(), 1, "b runs it");
    let (job, _) = b.state.service.job(queued).await.unwrap();
    assert_eq!(job.state, convene_core::store::JobState::Succeeded, "{job:?}");

    // Act: b dies (its leases are no longer renewed; nothing is given back).
    let b_had = b.running(&ids);
    b.keeping.cancel();
    let died = Instant::now();

    // Assert: a and c run every number within the lease and five seconds, three each, never one on two nodes.
    until_shared(&[&a, &b, &c], &ids, Duration::from_secs(TTL + 5), |n| n == [3, 0, 3]).await;
    let taken_after = died.elapsed();
    assert!(taken_after <= Duration::from_secs(TTL + 5), "{taken_after:?}");
    // b, paused rather than dead, would not act for a number it lost: its hold ended with its lease.
    let late = NewGroup { subject: "Late".into(), participants: vec!["+17137157533".into()], ..Default::default() };
    let refused = b
        .state
        .service
        .create_group(b_had[0], late, RetryGuard::DuplicateWindow)
        .await
        .expect_err("b no longer runs the number");
    assert!(format!("{refused:?}").contains("another node runs it"), "{refused:?}");
    // Every lease of b's numbers went to one node at a time, each with a fence one past the last.
    for id in &b_had {
        let history = a.state.store.lease_history(*id).await.unwrap();
        let fences: Vec<i64> = history.iter().map(|lease| lease.fence).collect();
        assert_eq!(fences, (1..=history.len() as i64).collect::<Vec<_>>(), "{history:?}");
        assert_ne!(history.last().unwrap().node, history[history.len() - 2].node, "{history:?}");
    }

    // Act: a stops cleanly: c takes its numbers at once, not after their leases end.
    let stopping = Instant::now();
    a.keeping.cancel();
    a.state.service.shutdown().await;
    until_shared(&[&a, &c], &ids, Duration::from_secs(TTL), |n| n == [0, 6]).await;
    assert!(stopping.elapsed() < Duration::from_secs(TTL), "taken before the leases would have ended");
    c.keeping.cancel();
    c.state.service.shutdown().await;
}
