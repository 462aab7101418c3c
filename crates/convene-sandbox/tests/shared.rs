//! The sandbox as one network for the nodes on one PostgreSQL database: each test opens the world twice on a fresh
//! database, as two nodes would, and acts through both.
//!
//! PostgreSQL only (`TEST_DATABASE_URL`, which scripts/test.sh sets on its PostgreSQL leg); each test says it was
//! skipped otherwise.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use convene_core::connector::CreateGroupRequest;
use convene_core::{
    Connector, ConnectorError, ConnectorReport, ConnectorReports, CreationKey, GroupJid, GroupSettings, GroupSubject,
    InstanceId, InstanceState, ManualClock, PhoneNumber, ReportedGroupChange, Timestamp,
};
use convene_sandbox::{Faults, InboxKind, SandboxConfig, SandboxNetwork};
use convene_store::on_scratch_database;
use sqlx::Connection as _;

fn phone(n: u16) -> PhoneNumber {
    PhoneNumber::parse(&format!("+1713715{n:04}")).unwrap()
}

fn clock() -> Arc<ManualClock> {
    Arc::new(ManualClock::new(Timestamp::from_millis(1_795_000_000_000)))
}

async fn node(url: &str, config: SandboxConfig, clock: &Arc<ManualClock>) -> Arc<SandboxNetwork> {
    SandboxNetwork::open_shared(url, config, Arc::clone(clock) as _).await.unwrap()
}

/// Two nodes on the world at `url`, the second started once the first has.
async fn two_nodes(
    url: &str,
    config: SandboxConfig,
    clock: &Arc<ManualClock>,
) -> (Arc<SandboxNetwork>, Arc<SandboxNetwork>) {
    (node(url, config.clone(), clock).await, node(url, config, clock).await)
}

fn request(subject: &str) -> CreateGroupRequest {
    CreateGroupRequest {
        subject: GroupSubject::parse(subject).unwrap(),
        description: None,
        participants: vec![phone(1)],
        settings: GroupSettings::default(),
        key: CreationKey::new(),
    }
}

#[derive(Default)]
struct Heard(Mutex<Vec<(InstanceId, ConnectorReport)>>);

impl ConnectorReports for Heard {
    fn report(&self, instance: InstanceId, event: ConnectorReport) {
        self.0.lock().unwrap().push((instance, event));
    }
}

impl Heard {
    fn all(&self) -> Vec<(InstanceId, ConnectorReport)> {
        self.0.lock().unwrap().clone()
    }
}

/// Waits up to five seconds for `done` (an expression, awaited anew each time).
macro_rules! within_seconds {
    ($what:expr, $done:expr) => {{
        let start = Instant::now();
        while !$done {
            assert!(start.elapsed() < Duration::from_secs(5), "waited five seconds for {}", $what);
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }};
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_creating_at_once_share_one_world_and_never_draw_one_group_id_twice() {
    on_scratch_database("two_nodes_creating_at_once", |url| async move {
        // Arrange: two nodes on one database, each with a number, started together.
        let clock = clock();
        let (a, b) =
            tokio::join!(node(&url, SandboxConfig::default(), &clock), node(&url, SandboxConfig::default(), &clock));
        a.register(&[phone(1000)]).await.unwrap();
        b.register(&[phone(2000)]).await.unwrap();

        // Act: 40 creations at once, half through each node (from one seed, each node alone would draw the same
        // ids).
        let mut creations = tokio::task::JoinSet::new();
        for i in 0..40 {
            let connector = if i % 2 == 0 { a.connector(phone(1000)) } else { b.connector(phone(2000)) };
            creations.spawn(async move { connector.create_group(&request(&format!("Group {i}"))).await.unwrap() });
        }
        let mut made = HashSet::new();
        while let Some(created) = creations.join_next().await {
            made.insert(created.unwrap().metadata.jid);
        }

        // Assert: 40 ids, and both nodes see the 40 groups, each with its members.
        assert_eq!(made.len(), 40, "no id drawn twice");
        for net in [&a, &b] {
            let listed: HashSet<GroupJid> = net.groups().await.unwrap().into_iter().map(|g| g.jid).collect();
            assert_eq!(listed, made);
        }
        let one = made.iter().next().unwrap();
        assert_eq!(a.group(one).await.unwrap(), b.group(one).await.unwrap());
        // The counts are the world's, read on each node.
        within_seconds!("both nodes to count 40 creations", {
            a.stats().groups_created == 40 && b.stats().groups_created == 40
        });
        // A node started later continues the one generator: its next id is new too.
        drop(a);
        let c = node(&url, SandboxConfig::default(), &clock).await;
        let next = c.connector(phone(2000)).create_group(&request("Later")).await.unwrap().metadata.jid;
        assert!(!made.contains(&next), "{next} was drawn before");
        assert_eq!(c.stats().groups_created, 41, "the world's count, not a new one");
        let (page, total) = b.groups_latest_first(0, 1).await.unwrap();
        assert_eq!((page[0].jid.clone(), total), (next, 41), "the latest first, on the other node too");
    })
    .await;
}

/// A node starting while another is in the middle of a change: the change has written the world's small state and
/// then writes the groups' table. The starting node used to make the tables and then wait for that row in one
/// transaction, holding the lock `CREATE INDEX IF NOT EXISTS` takes on the groups' table: the change then waited
/// for it, and PostgreSQL ended one of the two as a deadlock (seen once in the three-node failover test).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_starts_while_another_is_in_the_middle_of_a_change() {
    on_scratch_database("a_node_starts_mid_change", |url| async move {
        // Arrange: a world, and a change under way on it that holds the small state's row
        let clock = clock();
        let _first = node(&url, SandboxConfig::default(), &clock).await;
        let mut change = sqlx::PgConnection::connect(&url).await.unwrap();
        sqlx::query("BEGIN").execute(&mut change).await.unwrap();
        sqlx::query("SELECT state FROM sandbox.meta WHERE id = 1 FOR UPDATE").execute(&mut change).await.unwrap();
        sqlx::query("UPDATE sandbox.meta SET version = version + 1 WHERE id = 1").execute(&mut change).await.unwrap();

        // Act: a node starts; meanwhile the change writes a group and ends
        let starting = tokio::spawn({
            let url = url.clone();
            async move { SandboxNetwork::open_shared(&url, SandboxConfig::default(), clock as _).await.map(|_| ()) }
        });
        tokio::time::sleep(Duration::from_millis(300)).await;
        let written = sqlx::query(
            "INSERT INTO sandbox.groups (jid, invite_code, creator, creation_key, state) \
             VALUES ('120363000000000001@g.us', 'code', '+17137150001', 'key', '{}')",
        )
        .execute(&mut change)
        .await;
        let ended = sqlx::query("ROLLBACK").execute(&mut change).await;

        // Assert: neither was ended as a deadlock
        assert!(written.is_ok(), "the change's write: {written:?}");
        ended.unwrap();
        let started = tokio::time::timeout(Duration::from_secs(10), starting).await.unwrap().unwrap();
        assert!(started.is_ok(), "the node's start: {started:?}");
    })
    .await;
}

#[tokio::test]
async fn a_shared_world_draws_the_ids_one_node_would_from_the_same_seed() {
    on_scratch_database("a_shared_world_draws_the_ids", |url| async move {
        let clock = clock();
        let config = SandboxConfig { seed: 42, ..SandboxConfig::default() };
        let alone = SandboxNetwork::open(None, config.clone(), Arc::clone(&clock) as _).await.unwrap();
        let shared = node(&url, config, &clock).await;
        let mut ids = Vec::new();
        for net in [&alone, &shared] {
            let owner = net.connector(phone(1000));
            let mut drawn = Vec::new();
            for i in 0..3 {
                drawn.push(owner.create_group(&request(&format!("Group {i}"))).await.unwrap().metadata.jid);
            }
            ids.push(drawn);
        }
        assert_eq!(ids[0], ids[1]);
    })
    .await;
}

#[tokio::test]
async fn what_a_person_does_through_one_node_reaches_members_instances_on_the_other_once() {
    on_scratch_database("what_a_person_does", |url| async move {
        // Arrange: the owner's instance listens on node A; an outsider's instance on node B.
        let clock = clock();
        let (a, b) = two_nodes(&url, SandboxConfig::default(), &clock).await;
        let (heard_a, heard_b) = (Arc::new(Heard::default()), Arc::new(Heard::default()));
        a.listen(phone(1000), InstanceId(7), heard_a.clone());
        b.listen(phone(3000), InstanceId(8), heard_b.clone());
        let owner = a.connector(phone(1000));
        let jid = owner.create_group(&request("War room")).await.unwrap().metadata.jid;
        let link = owner.invite_link(&jid, false).await.unwrap();

        // Act: through node B, someone joins by the link, and someone leaves.
        b.join_by_link(&phone(5), &link).await.unwrap();
        b.person_leaves(&jid, &phone(1)).await.unwrap();

        // Assert: node A's member instance hears both, in order; node B's outsider nothing.
        let group = |change, by: u16| ConnectorReport::Group { group: jid.clone(), change, by: Some(phone(by)) };
        let expected = vec![
            (InstanceId(7), group(ReportedGroupChange::ParticipantsJoined(vec![phone(5)]), 5)),
            (InstanceId(7), group(ReportedGroupChange::ParticipantsLeft(vec![phone(1)]), 1)),
        ];
        within_seconds!("node A to hear", heard_a.all().len() >= 2);
        // Two more rounds of following: nothing is heard twice.
        tokio::time::sleep(Duration::from_millis(600)).await;
        assert_eq!(heard_a.all(), expected);
        assert!(heard_b.all().is_empty(), "{:?}", heard_b.all());

        // And a person acting through node A is heard there at once, not again when node A follows the others.
        a.join_by_link(&phone(6), &link).await.unwrap();
        assert_eq!(heard_a.all().len(), 3, "heard at once");
        tokio::time::sleep(Duration::from_millis(600)).await;
        assert_eq!(heard_a.all().len(), 3, "and once");
    })
    .await;
}

#[tokio::test]
async fn faults_set_through_one_node_apply_on_the_other_and_its_instances_hear_the_outage() {
    on_scratch_database("faults_set_through_one_node", |url| async move {
        let clock = clock();
        let (a, b) = two_nodes(&url, SandboxConfig::default(), &clock).await;
        let heard = Arc::new(Heard::default());
        b.listen(phone(2000), InstanceId(8), heard.clone());
        let on_b = b.connector(phone(2000));

        a.set_faults(Faults { unreachable: true, ..Faults::default() }).await.unwrap();

        within_seconds!("node B to refuse", {
            matches!(on_b.create_group(&request("Cut off")).await, Err(ConnectorError::NotConnected(_)))
        });
        within_seconds!("node B's instance to hear the outage", !heard.all().is_empty());
        assert!(
            matches!(
                &heard.all()[0],
                (InstanceId(8), ConnectorReport::StateChanged(InstanceState::Unreachable { .. }))
            ),
            "{:?}",
            heard.all()
        );
        assert!(b.faults().unreachable);

        a.set_faults(Faults::default()).await.unwrap();
        within_seconds!("node B's instance to hear the end", heard.all().len() >= 2);
        assert_eq!(heard.all()[1], (InstanceId(8), ConnectorReport::StateChanged(InstanceState::Connected)));
        on_b.create_group(&request("Back")).await.unwrap();
        tokio::time::sleep(Duration::from_millis(600)).await;
        assert_eq!(heard.all().len(), 2, "the start and the end, once each");
    })
    .await;
}

#[tokio::test]
async fn an_inbox_on_a_shared_world_keeps_its_latest_messages_up_to_the_limit() {
    on_scratch_database("an_inbox_on_a_shared_world", |url| async move {
        let clock = clock();
        let config = SandboxConfig { inbox_limit: 3, ..SandboxConfig::default() };
        let (a, b) = two_nodes(&url, config, &clock).await;
        for n in 0..5 {
            let through = if n % 2 == 0 { &a } else { &b };
            through.connector(phone(1000)).send_text(&phone(1), &format!("message {n}")).await.unwrap();
        }
        let latest: Vec<InboxKind> = (2..5).map(|n| InboxKind::Text { text: format!("message {n}") }).collect();
        for net in [&a, &b] {
            let kinds: Vec<InboxKind> = net.inbox(&phone(1)).await.unwrap().into_iter().map(|m| m.kind).collect();
            assert_eq!(kinds, latest);
        }
    })
    .await;
}
