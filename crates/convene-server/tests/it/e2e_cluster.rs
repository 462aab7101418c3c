//! Several nodes on one PostgreSQL database (issue 14) share the numbers through leases, balance them as nodes join,
//! and take a dead node's numbers once its leases end. (A second node on one SQLite file is refused by the binary:
//! `convene`'s cli tests.)

use std::sync::Arc;
use std::time::{Duration, Instant};

use convene_core::{InstanceId, SystemClock};
use convene_server::AppState;
use convene_server::service::NewGroup;
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
        let config = node_config(dir.path(), database, lease_ttl_secs).await;
        let state = AppState::open(&config, Arc::new(SystemClock)).await.unwrap();
        let keeping = CancellationToken::new();
        let (instances, stop) = (state.service.instances().clone(), keeping.clone());
        tokio::spawn(async move { instances.keep_leases(stop).await });
        Self { state, keeping, _dir: dir }
    }

    /// Which of `ids` this node runs: holds, and has the connection of.
    fn running(&self, ids: &[InstanceId]) -> Vec<InstanceId> {
        let instances = self.state.service.instances();
        ids.iter().copied().filter(|id| instances.runs_here(*id) && instances.has_connection(*id)).collect()
    }

    /// Which of `ids` this node has a connection open to.
    fn connected(&self, ids: &[InstanceId]) -> Vec<InstanceId> {
        ids.iter().copied().filter(|id| self.state.service.instances().has_connection(*id)).collect()
    }
}

/// The nodes' sealing key.
const SHARED_KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

async fn node_config(dir: &std::path::Path, database: &ScratchDatabase, lease_ttl_secs: u64) -> convene_server::Config {
    let (mut config, _) = crate::helpers::test_config(dir).await;
    config.database_url = database.url().to_owned();
    config.cluster.lease_ttl_secs = lease_ttl_secs;
    // The nodes on one database share the sealing key (device keys, and the secret they call each other with).
    config.webhooks.secret_key = SHARED_KEY.into();
    config
}

/// Polls `nodes` until `done` holds of how many of `ids` each runs, checking at every look that no number runs on
/// two nodes; panics after `within`.
async fn until_shared(nodes: &[&Node], ids: &[InstanceId], within: Duration, done: impl Fn(&[usize]) -> bool) {
    let started = Instant::now();
    loop {
        let running: Vec<Vec<InstanceId>> = nodes.iter().map(|node| node.running(ids)).collect();
        let connected: Vec<Vec<InstanceId>> = nodes.iter().map(|node| node.connected(ids)).collect();
        for id in ids {
            let open = connected.iter().filter(|c| c.contains(id)).count();
            if open > 1 {
                let history = nodes[0].state.store.lease_history(*id).await.unwrap();
                let names: Vec<_> =
                    nodes.iter().map(|n| n.state.service.instances().node().map(str::to_owned)).collect();
                panic!("instance {id} is open on {open} nodes at once: {connected:?} on {names:?}; leases {history:?}");
            }
        }
        let counts: Vec<usize> = running.iter().map(Vec::len).collect();
        if done(&counts) {
            return;
        }
        assert!(started.elapsed() < within, "not shared as expected within {within:?}: {counts:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A fresh database on the PostgreSQL server `TEST_DATABASE_URL` names; `None`, saying the test was skipped, without
/// one.
async fn scratch_database() -> Option<ScratchDatabase> {
    let Some(server) = std::env::var("TEST_DATABASE_URL").ok().filter(|u| !u.is_empty()) else {
        eprintln!("skipped: needs PostgreSQL (TEST_DATABASE_URL; scripts/test.sh starts one)");
        return None;
    };
    Some(ScratchDatabase::create(&server).await.unwrap())
}

/// Node a bootstraps (an API key, a sandbox number it runs), then node b joins, running none: the nodes, the key
/// and the number.
async fn a_runs_b_answers(
    database: &ScratchDatabase,
) -> (ServingNode, ServingNode, String, convene_core::store::InstanceRecord) {
    let a = ServingNode::start(database).await;
    let first = a.node.state.service.bootstrap(true).await.unwrap().unwrap();
    let (instance, _) = first.instance.unwrap();
    let b = ServingNode::start(database).await;
    until_shared(&[&a.node, &b.node], &[instance.id], Duration::from_secs(10), |n| n == [1, 0]).await;
    (a, b, first.api_key, instance)
}

/// Nodes a and b (long leases, no workers), each running a sandbox number it made: the nodes and their numbers.
async fn a_number_each(database: &ScratchDatabase) -> (Node, Node, InstanceId, InstanceId) {
    let a = Node::start(database, 60).await;
    let (on_a, _) = a.state.service.instances().create(convene_sandbox::KIND, None, None).await.unwrap();
    let b = Node::start(database, 60).await;
    let (on_b, _) = b.state.service.instances().create(convene_sandbox::KIND, None, None).await.unwrap();
    until_shared(&[&a, &b], &[on_a.id, on_b.id], Duration::from_secs(10), |n| n == [1, 1]).await;
    assert_eq!((a.running(&[on_a.id]), b.running(&[on_b.id])), (vec![on_a.id], vec![on_b.id]));
    (a, b, on_a.id, on_b.id)
}

#[tokio::test]
async fn nodes_on_one_postgresql_share_the_numbers_balance_as_they_join_and_take_a_dead_nodes_after_its_lease() {
    let Some(database) = scratch_database().await else { return };
    const TTL: u64 = 3;

    // Arrange: node a alone, with six numbers; each runs on a from its creation.
    let a = Node::start(&database, TTL).await;
    let mut ids = Vec::new();
    for _ in 0..6 {
        let (record, _) = a.state.service.instances().create(convene_sandbox::KIND, None, None).await.unwrap();
        ids.push(record.id);
    }
    assert_eq!(a.running(&ids), ids, "a runs every number it made");

    // A node with another sealing key is refused: it could open none of the others' sealed values.
    let other_dir = tempfile::tempdir().unwrap();
    let mut other = node_config(other_dir.path(), &database, TTL).await;
    other.webhooks.secret_key = "BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=".into();
    let refused = AppState::open(&other, Arc::new(SystemClock)).await.err().expect("another key");
    assert!(format!("{refused:#}").contains("every node must have the same webhooks.secret_key"), "{refused:#}");

    // A second process under a's id elsewhere (a node_id set alike, a copied data directory) is refused too.
    let twin_dir = tempfile::tempdir().unwrap();
    let mut twin = node_config(twin_dir.path(), &database, TTL).await;
    twin.cluster.node_id = a.state.service.instances().node().unwrap().to_owned();
    let refused = AppState::open(&twin, Arc::new(SystemClock)).await.err().expect("a's id is taken");
    assert!(format!("{refused:#}").contains("another process runs as node"), "{refused:#}");

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

    // Assert: a and c run every number within the lease and five seconds, three each, never one on two of them
    // (b, dead, keeps its connections: a dead process's are gone).
    until_shared(&[&a, &c], &ids, Duration::from_secs(TTL + 5), |n| n == [3, 3]).await;
    let taken_after = died.elapsed();
    assert!(taken_after <= Duration::from_secs(TTL + 5), "{taken_after:?}");
    assert_eq!(b.running(&ids), vec![], "b's holds ended by its own clock");
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

/// A node serving HTTP on loopback, its worker on.
struct ServingNode {
    node: Node,
    addr: std::net::SocketAddr,
    stop: CancellationToken,
    server: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl ServingNode {
    async fn start(database: &ScratchDatabase) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut config = node_config(dir.path(), database, 3).await;
        config.worker.enabled = true;
        config.worker.poll_ms = 100;
        let state = AppState::open(&config, Arc::new(SystemClock)).await.unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = CancellationToken::new();
        let server = tokio::spawn({
            let (state, stop) = (state.clone(), stop.clone());
            async move { convene_server::serve(listener, state, &config, stop).await }
        });
        // `serve` keeps the leases; the token here is never cancelled.
        let node = Node { state, keeping: CancellationToken::new(), _dir: dir };
        Self { node, addr, stop, server }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    async fn stop(self) {
        self.stop.cancel();
        self.server.await.unwrap().unwrap();
    }
}

#[tokio::test]
async fn a_node_runs_its_own_job_behind_a_hundred_and_fifty_due_jobs_of_a_number_another_node_holds() {
    let Some(database) = scratch_database().await else { return };

    // Arrange: a and b run a number each (long leases). a's worker is not running: 150 jobs of a's number are due,
    // queued before one of b's.
    let (_a, b, on_a, on_b) = a_number_each(&database).await;
    let group = |subject: String| NewGroup { subject, participants: vec!["+17137157533".into()], ..Default::default() };
    let theirs: Vec<NewGroup> = (0..150).map(|i| group(format!("On a {i}"))).collect();
    b.state.service.enqueue_groups(&[on_a], theirs).await.unwrap();
    let mine = b.state.service.enqueue_groups(&[on_b], vec![group("On b".into())]).await.unwrap().jobs[0].id;

    // Act: one pass of b's worker.
    let ran = b.state.service.run_due_jobs().await.unwrap();

    // Assert: b ran its own job, and left a's.
    assert_eq!(ran, 1, "b finds its job behind the 150 of a's number");
    let (job, _) = b.state.service.job(mine).await.unwrap();
    assert_eq!(job.state, convene_core::store::JobState::Succeeded, "{job:?}");
}

#[tokio::test]
async fn a_job_on_numbers_of_two_nodes_waits_for_neither_nodes_pacing_when_the_other_may_create_now() {
    let Some(database) = scratch_database().await else { return };

    // Arrange: a and b run a number each; a's is paced to one creation in five minutes and has just made one.
    let (a, b, on_a, on_b) = a_number_each(&database).await;
    let paced = convene_core::PacingPolicy { min_interval_secs: 300, burst: 1, daily_cap: None };
    a.state.service.instances().set_settings(on_a, Some(paced), false, &[]).await.unwrap();
    let group = |subject: &str| NewGroup {
        subject: subject.into(),
        participants: vec!["+17137157533".into()],
        ..Default::default()
    };
    let guard = convene_server::service::RetryGuard::DuplicateWindow;
    a.state.service.create_group(on_a, group("First on a"), guard).await.unwrap();

    // Act: a job that may run on either number; a's worker passes first, then b's.
    let queued = a.state.service.enqueue_groups(&[on_a, on_b], vec![group("Either")]).await.unwrap().jobs[0].id;
    let ran_on_a = a.state.service.run_due_jobs().await.unwrap();
    let ran_on_b = b.state.service.run_due_jobs().await.unwrap();

    // Assert: a left it due (its number must wait five minutes; b's need not), and b ran it at once.
    assert_eq!((ran_on_a, ran_on_b), (0, 1), "a left the job to b, due");
    let (job, _) = b.state.service.job(queued).await.unwrap();
    assert_eq!(job.state, convene_core::store::JobState::Succeeded, "{job:?}");
    assert_eq!(job.pinned_instance_id, Some(on_b));
}

#[tokio::test]
async fn the_same_creation_sent_to_two_nodes_at_once_makes_one_group_in_the_duplicate_window() {
    let Some(database) = scratch_database().await else { return };

    // Arrange: a runs the number; b answers for it.
    let (a, b, api_key, instance) = a_runs_b_answers(&database).await;
    let client = reqwest::Client::new();

    // Act: six creations, each sent to both nodes at once without an Idempotency-Key (a client retrying through a
    // load balancer).
    for i in 0..6 {
        let body = serde_json::json!({
            "instance_id": instance.id.0, "subject": format!("Sent twice {i}"), "participants": ["+17137157533"]
        });
        let send = |node: &ServingNode| client.post(node.url("/v1/groups")).bearer_auth(&api_key).json(&body).send();
        let (through_a, through_b) = tokio::join!(send(&a), send(&b));
        let (through_a, through_b) = (through_a.unwrap(), through_b.unwrap());
        let (status_a, status_b) = (through_a.status(), through_b.status());
        let through_a: serde_json::Value = through_a.json().await.unwrap();
        let through_b: serde_json::Value = through_b.json().await.unwrap();

        // Assert: both answered with the one group.
        assert!(status_a.is_success() && status_b.is_success(), "{status_a} {through_a} / {status_b} {through_b}");
        assert_eq!(through_a["group"]["id"], through_b["group"]["id"], "{through_a} / {through_b}");
    }
    let on_network = a.node.state.service.sandbox().groups().await.unwrap();
    assert_eq!(on_network.len(), 6, "one group each: {:?}", on_network.iter().map(|g| &g.subject).collect::<Vec<_>>());

    b.stop().await;
    a.stop().await;
}

#[tokio::test]
async fn any_node_answers_for_a_number_another_node_runs_handing_it_what_the_number_must_do() {
    let Some(database) = scratch_database().await else { return };

    // Arrange: node a bootstraps (a key, a sandbox number it runs); node b joins. b does not run the number.
    let (a, b, api_key, instance) = a_runs_b_answers(&database).await;
    let client = reqwest::Client::new();
    let call = |method: reqwest::Method, path: &str| client.request(method, b.url(path)).bearer_auth(&api_key);

    // Act: through b, create a group on a's number, read it, add someone, read the number.
    let created = call(reqwest::Method::POST, "/v1/groups")
        .json(&serde_json::json!({"instance_id": instance.id.0, "subject": "Across nodes", "participants": ["+17137157533"]}))
        .send()
        .await
        .unwrap();
    let status = created.status();
    let created: serde_json::Value = created.json().await.unwrap();

    // Assert: created once, on the network the nodes share, by a's number (the job that ran it is pinned to it).
    assert_eq!(status, reqwest::StatusCode::CREATED, "{created}");
    let id = created["group"]["id"].as_str().unwrap().to_owned();
    let members: Vec<&str> = created["group"]["members"]
        .as_array()
        .unwrap_or_else(|| panic!("{created}"))
        .iter()
        .filter_map(|m| m["phone"].as_str())
        .collect();
    assert!(members.contains(&"+17137157533"), "the members came from a's connection: {created}");
    let jid = created["group"]["jid"].as_str().unwrap();
    let jid = convene_core::GroupJid::parse(jid).unwrap();
    let on_network = b.node.state.service.sandbox().groups().await.unwrap();
    assert_eq!(on_network.len(), 1, "created once: {on_network:?}");
    assert_eq!(on_network[0].jid, jid);
    assert_eq!(Some(&on_network[0].creator), instance.phone.as_ref(), "by a's number");

    let added = call(reqwest::Method::POST, &format!("/v1/groups/{id}/participants/add"))
        .json(&serde_json::json!({"participants": ["+18647351567"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(added.status(), reqwest::StatusCode::OK);
    let added: serde_json::Value = added.json().await.unwrap();
    assert_eq!(added["participants"][0]["outcome"], "added", "{added}");
    let read: serde_json::Value =
        call(reqwest::Method::GET, &format!("/v1/groups/{id}")).send().await.unwrap().json().await.unwrap();
    assert_eq!(read["members"].as_array().map(Vec::len), Some(3), "{read}");
    let number: serde_json::Value = call(reqwest::Method::GET, &format!("/v1/instances/{}", instance.id.0))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(number["state"]["status"], "connected", "{number}");
    let listed: serde_json::Value =
        call(reqwest::Method::GET, "/v1/instances").send().await.unwrap().json().await.unwrap();
    let listed = listed["items"].as_array().unwrap().iter().find(|i| i["id"] == instance.id.0).cloned().unwrap();
    assert_eq!(listed["state"]["status"], "connected", "listed through b, asked of a: {listed}");

    // A caller without the nodes' secret is refused at a's node-to-node route.
    let path = format!("/internal/v1/instances/{}/connector", instance.id.0);
    let forged =
        client.post(a.url(&path)).header("authorization", "Node guess").json(&serde_json::json!({"call": "logout"}));
    assert_eq!(forged.send().await.unwrap().status(), reqwest::StatusCode::UNAUTHORIZED);
    let unread = client.post(a.url(&path)).header("content-type", "application/json").body("{not json");
    assert_eq!(unread.send().await.unwrap().status(), reqwest::StatusCode::UNAUTHORIZED, "refused before reading");
    let with_key = client.post(a.url(&path)).bearer_auth(&api_key).json(&serde_json::json!({"call": "logout"}));
    assert_eq!(with_key.send().await.unwrap().status(), reqwest::StatusCode::UNAUTHORIZED, "an API key is not a node");

    // A real number deleted through the node that does not run it: the node that runs it unlinks it and its keys
    // are deleted.
    let made = client
        .post(a.url("/v1/instances"))
        .bearer_auth(&api_key)
        .json(&serde_json::json!({"kind": "whatsapp"}))
        .send()
        .await
        .unwrap();
    assert_eq!(made.status(), reqwest::StatusCode::CREATED);
    let made: serde_json::Value = made.json().await.unwrap();
    let number = InstanceId(made["id"].as_i64().unwrap());
    let both = [instance.id, number];
    until_shared(&[&a.node, &b.node], &both, Duration::from_secs(10), |n| n == [1, 1]).await;
    let (runner, other) = if a.node.running(&[number]).is_empty() { (&b, &a) } else { (&a, &b) };
    let phone = convene_core::PhoneNumber::parse("+12015550177").unwrap();
    runner.node.state.service.whatsapp().simulate_pairing(number, &phone).await.unwrap();
    let store = &a.node.state.store;
    assert!(!store.device_keys(number, "device", None).await.unwrap().is_empty(), "paired: a device is stored");
    let deleted =
        client.delete(other.url(&format!("/v1/instances/{}", number.0))).bearer_auth(&api_key).send().await.unwrap();
    assert_eq!(deleted.status(), reqwest::StatusCode::NO_CONTENT);
    assert!(store.device_keys(number, "device", None).await.unwrap().is_empty(), "its keys are deleted");
    assert!(!runner.node.state.service.instances().has_connection(number), "its session is stopped");

    b.stop().await;
    a.stop().await;
}
