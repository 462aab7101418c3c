//! The contract on SQLite, each case on a fresh temporary file, and what only SQLite has: files, directories,
//! reconnecting, and rows edited behind the store's back.

use std::path::{Path, PathBuf};

use convene_core::events::EventType;
use convene_core::store::{GroupListQuery, InstanceRecord};
use convene_core::{ConnectorKind, DbError, InstanceId, Store, Timestamp};
use convene_store::SqliteStore;
use sqlx::sqlite::SqlitePool;
use tempfile::TempDir;

use crate::contract_events::{endpoint, event};
use crate::contract_jobs::at;

/// A store on its own temporary file, removed when this is dropped.
struct TestDb {
    store: SqliteStore,
    path: PathBuf,
    _dir: TempDir,
}

impl TestDb {
    async fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("convene.db");
        let store = SqliteStore::connect(&url(&path)).await.unwrap();
        Self { store, path, _dir: dir }
    }

    /// A second, raw connection to the same file, for reaching past the store.
    async fn raw(&self) -> SqlitePool {
        SqlitePool::connect(&url(&self.path)).await.unwrap()
    }
}

fn url(path: &Path) -> String {
    format!("sqlite://{}", path.display())
}

fn instance(id: i64) -> InstanceRecord {
    InstanceRecord {
        id: InstanceId(id),
        kind: ConnectorKind::new("whatsapp"),
        name: "main".into(),
        phone: Some(convene_core::PhoneNumber::parse("+595981048477").unwrap()),
        token_hash: "hash".into(),
        created_at: Timestamp::from_millis(1_795_000_000_000),
    }
}

macro_rules! contract_on_sqlite {
    ($($case:ident),* $(,)?) => {
        $(
            #[tokio::test]
            async fn $case() {
                let db = TestDb::new().await;
                crate::contract::$case(&db.store).await;
            }
        )*
    };
}

crate::contract::every_case!(contract_on_sqlite);

#[tokio::test]
async fn data_survives_closing_the_pool_and_reconnecting() {
    // Arrange
    let db = TestDb::new().await;
    db.store.insert_instance(&instance(7_103_000_001)).await.unwrap();
    db.store.close().await;

    // Act
    let reopened = SqliteStore::connect(&url(&db.path)).await.unwrap();

    // Assert
    assert_eq!(reopened.get_instance(InstanceId(7_103_000_001)).await.unwrap(), instance(7_103_000_001));
}

#[tokio::test]
async fn connect_creates_missing_parent_directories() {
    // Arrange
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a/b/c/convene.db");

    // Act
    let store = SqliteStore::connect(&url(&path)).await.unwrap();

    // Assert
    store.insert_instance(&instance(7_103_000_001)).await.unwrap();
    assert!(path.is_file());
}

#[tokio::test]
async fn both_url_spellings_open_the_same_file() {
    // Arrange
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("convene.db");
    let slashes = SqliteStore::connect(&format!("sqlite://{}", path.display())).await.unwrap();
    slashes.insert_instance(&instance(7_103_000_001)).await.unwrap();
    slashes.close().await;

    // Act
    let colon = SqliteStore::connect(&format!("sqlite:{}", path.display())).await.unwrap();

    // Assert
    assert!(colon.get_instance(InstanceId(7_103_000_001)).await.is_ok());
}

#[tokio::test]
async fn an_in_memory_store_keeps_its_data_while_open() {
    // Arrange
    let store = SqliteStore::connect("sqlite::memory:").await.unwrap();

    // Act
    store.insert_instance(&instance(7_103_000_001)).await.unwrap();

    // Assert
    assert!(store.get_instance(InstanceId(7_103_000_001)).await.is_ok());
    assert!(store.list_groups(&GroupListQuery { limit: 10, ..Default::default() }).await.unwrap().groups.is_empty());
}

#[tokio::test]
async fn a_url_for_another_database_is_refused() {
    // Act
    let result = SqliteStore::connect("postgres://localhost/convene").await;

    // Assert
    match result {
        Err(DbError::Other(e)) => assert!(e.to_string().contains("not a SQLite URL"), "{e}"),
        other => panic!("expected an error, got {:?}", other.map(|_| ())),
    }
}

#[tokio::test]
async fn the_file_is_in_wal_mode() {
    // Arrange
    let db = TestDb::new().await;

    // Act
    let mode: String = sqlx::query_scalar("PRAGMA journal_mode").fetch_one(&db.raw().await).await.unwrap();

    // Assert
    assert_eq!(mode, "wal");
}

#[tokio::test]
async fn a_stored_value_that_no_longer_parses_is_an_error_naming_its_column() {
    // Arrange
    let db = TestDb::new().await;
    db.store.insert_instance(&instance(7_103_000_001)).await.unwrap();
    let raw = db.raw().await;

    for (edit, column) in [
        ("UPDATE instances SET phone = 'bob'", "instances.phone"),
        ("UPDATE instances SET phone = NULL, kind = 'Not a kind!'", "instances.kind"),
    ] {
        sqlx::raw_sql(edit).execute(&raw).await.unwrap();

        // Act
        let result = db.store.get_instance(InstanceId(7_103_000_001)).await;

        // Assert
        match result {
            Err(DbError::Other(e)) => assert!(e.to_string().contains(column), "{e}"),
            other => panic!("expected an error naming {column}, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn a_job_settings_or_attempt_value_that_no_longer_parses_is_an_error_naming_its_column() {
    use crate::contract_jobs::{CORRUPTIONS, first_read_error, seed_rows_to_corrupt};

    // Arrange
    let db = TestDb::new().await;
    seed_rows_to_corrupt(&db.store).await;
    let raw = db.raw().await;

    // A row changed behind the store's back is read from memory by a store that read it before (a number's
    // settings and pause are kept: src/row_cache.rs), so each edit is read by a store opened after it.
    let opened = async || SqliteStore::connect(&url(&db.path)).await.unwrap();
    for (edit, column, repair) in CORRUPTIONS {
        sqlx::raw_sql(*edit).execute(&raw).await.unwrap();

        // Act
        let error = first_read_error(&opened().await).await;

        // Assert
        assert!(error.as_deref().is_some_and(|e| e.contains(column)), "expected an error naming {column}: {error:?}");
        sqlx::raw_sql(*repair).execute(&raw).await.unwrap();
        assert_eq!(first_read_error(&opened().await).await, None, "repaired after {column}");
    }
}

#[tokio::test]
async fn a_group_with_a_corrupt_jid_fails_the_listing_that_reaches_it() {
    // Arrange
    let db = TestDb::new().await;
    db.store.insert_instance(&instance(7_103_000_001)).await.unwrap();
    let group = crate::contract::group(7_103_000_001, 1, 1);
    db.store.insert_group(&group).await.unwrap();
    sqlx::raw_sql("UPDATE groups SET jid = 'not-a-jid'").execute(&db.raw().await).await.unwrap();

    // Act
    let result = db.store.list_groups(&GroupListQuery { limit: 10, ..Default::default() }).await;

    // Assert
    match result {
        Err(DbError::Other(e)) => assert!(e.to_string().contains("groups.jid"), "{e}"),
        other => panic!("expected an error naming groups.jid, got {other:?}"),
    }
}

#[tokio::test]
async fn a_database_migrated_by_a_newer_build_is_refused() {
    // Arrange
    let db = TestDb::new().await;
    sqlx::raw_sql("INSERT INTO schema_migrations (version) VALUES (9999)").execute(&db.raw().await).await.unwrap();
    db.store.close().await;

    // Act
    let result = SqliteStore::connect(&url(&db.path)).await;

    // Assert
    match result {
        Err(DbError::Other(e)) => assert!(e.to_string().contains("9999"), "{e}"),
        other => panic!("expected a refusal, got {:?}", other.map(|_| ())),
    }
}

#[tokio::test]
async fn an_upgrade_links_each_group_made_before_to_the_job_that_made_it() {
    // Arrange: a database as the build before migration 9 left it.
    let db = TestDb::new().await;
    db.store.insert_instance(&instance(7_103_000_001)).await.unwrap();
    let (groups, jobs, seed) = crate::contract::groups_from_before_the_job_link(7_103_000_001);
    for g in &groups {
        db.store.insert_group(g).await.unwrap();
    }
    let raw = db.raw().await;
    // The seed is this test's own text: uuids and digits.
    sqlx::raw_sql(sqlx::AssertSqlSafe(seed)).execute(&raw).await.unwrap();
    sqlx::raw_sql("ALTER TABLE groups DROP COLUMN creation_job_id; DELETE FROM schema_migrations WHERE version = 9")
        .execute(&raw)
        .await
        .unwrap();
    raw.close().await;
    db.store.close().await;

    // Act
    let store = SqliteStore::connect(&url(&db.path)).await.unwrap();

    // Assert
    let mut found = Vec::new();
    for g in &groups {
        found.push(store.get_group(g.id).await.unwrap().creation_job_id);
    }
    assert_eq!(found, [Some(jobs[0]), Some(jobs[1]), None]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writes_share_commits_and_each_keeps_its_own_outcome() {
    // Arrange
    let db = TestDb::new().await;
    db.store.insert_instance(&instance(1)).await.unwrap();
    let before = db.store.transactions_committed();

    // Act: 100 new instances, and 100 that repeat instance 1's id, all at once
    let mut tasks = tokio::task::JoinSet::new();
    for n in 0..200 {
        let store = db.store.clone();
        tasks.spawn(async move {
            let id = if n % 2 == 0 { 1 } else { 1000 + n };
            (id, store.insert_instance(&instance(id)).await)
        });
    }
    let mut outcomes = Vec::new();
    while let Some(done) = tasks.join_next().await {
        outcomes.push(done.unwrap());
    }

    // Assert: each write got its own answer, a refused one undid none of the others, and they shared commits
    for (id, outcome) in &outcomes {
        match id {
            1 => assert!(matches!(outcome, Err(DbError::Conflict)), "{outcome:?}"),
            _ => assert!(outcome.is_ok(), "{id}: {outcome:?}"),
        }
    }
    let raw = db.raw().await;
    let stored: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM instances").fetch_one(&raw).await.unwrap();
    assert_eq!(stored, 101);
    let commits = db.store.transactions_committed() - before;
    assert!(commits < 100, "{commits} commits for 200 writes");
}

#[tokio::test]
async fn a_closed_store_commits_what_was_sent_before_and_refuses_later_writes() {
    // Arrange
    let db = TestDb::new().await;
    let store = db.store.clone();
    let before_close = tokio::spawn(async move { store.insert_instance(&instance(1)).await });
    tokio::task::yield_now().await;

    // Act
    db.store.close().await;
    let after_close = db.store.insert_instance(&instance(2)).await;

    // Assert
    assert!(before_close.await.unwrap().is_ok());
    assert!(after_close.is_err());
    let raw = db.raw().await;
    let ids: Vec<i64> = sqlx::query_scalar("SELECT id FROM instances").fetch_all(&raw).await.unwrap();
    assert_eq!(ids, [1]);
}

#[tokio::test]
async fn a_group_is_read_from_memory_until_a_commit_may_have_changed_it() {
    // Arrange: two groups, one read once; then its row changed behind the store's back (only `convene serve` writes
    // groups on SQLite, so this is how the test tells a read from memory from a read of the file).
    let db = TestDb::new().await;
    db.store.insert_instance(&instance(7_103_000_001)).await.unwrap();
    let mut group = crate::contract::group(7_103_000_001, 1, 1);
    group.subject = "first".into();
    db.store.insert_group(&group).await.unwrap();
    assert_eq!(db.store.get_group(group.id).await.unwrap().subject, "first");
    let raw = db.raw().await;
    let behind = |subject: &'static str| {
        let raw = raw.clone();
        async move {
            sqlx::query("UPDATE groups SET subject = $1").bind(subject).execute(&raw).await.unwrap();
        }
    };
    behind("behind").await;

    // Act + Assert: read from memory while nothing that may change a group was committed through the store; adding
    // a group or another instance, or a key, changes none that was read.
    assert_eq!(db.store.get_group(group.id).await.unwrap().subject, "first", "a second read is from memory");
    let other = crate::contract::group(7_103_000_001, 2, 1);
    db.store.insert_group(&other).await.unwrap();
    db.store.insert_instance(&instance(7_103_000_002)).await.unwrap();
    db.store
        .insert_api_key(&convene_core::store::ApiKeyRecord {
            id: uuid::Uuid::new_v4(),
            name: "k".into(),
            prefix: "cvn_000000".into(),
            secret_hash: "h".into(),
            created_at: Timestamp::from_millis(1),
            instance_ids: None,
            read_only: false,
            last_used_at: None,
        })
        .await
        .unwrap();
    assert_eq!(db.store.get_group(group.id).await.unwrap().subject, "first");

    // An update of any group, even another one, and the next read is from the file.
    db.store.update_group(&other).await.unwrap();
    assert_eq!(db.store.get_group(group.id).await.unwrap().subject, "behind");

    // The store's own update is read back at once.
    group.subject = "updated".into();
    db.store.update_group(&group).await.unwrap();
    assert_eq!(db.store.get_group(group.id).await.unwrap().subject, "updated");

    // Deleting the instance takes its groups along: the group read from memory is gone too.
    db.store.delete_instance(InstanceId(7_103_000_001)).await.unwrap();
    assert!(matches!(db.store.get_group(group.id).await, Err(DbError::NotFound)));
}

#[tokio::test]
async fn a_numbers_record_settings_and_pause_are_read_from_memory_until_a_commit_may_have_changed_them() {
    // Arrange: a number with settings and a pause, each read once; then the rows changed behind the store's back
    // (only `convene serve` writes them on SQLite, so this is how the test tells a read from memory from a read of
    // the file).
    use convene_core::store::{InstancePause, InstanceSettings};
    let db = TestDb::new().await;
    let (id, other) = (InstanceId(7_103_000_001), InstanceId(7_103_000_002));
    db.store.insert_instance(&instance(id.0)).await.unwrap();
    db.store.insert_instance(&instance(other.0)).await.unwrap();
    let settings = InstanceSettings { auto_invite: true, ..Default::default() };
    db.store.put_instance_settings(id, &settings).await.unwrap();
    let pause = InstancePause { until: Timestamp::from_millis(1_795_000_060_000), reason: "rate-overlimit".into() };
    db.store.set_instance_pause(id, Some(&pause)).await.unwrap();
    let read = async || {
        let record = db.store.get_instance(id).await.unwrap();
        let settings = db.store.instance_settings(id).await.unwrap();
        let pause = db.store.instance_pause(id).await.unwrap();
        (record.name, settings.auto_invite, pause.map(|p| p.reason))
    };
    assert_eq!(read().await, ("main".into(), true, Some("rate-overlimit".into())));
    let raw = db.raw().await;
    sqlx::query("UPDATE instances SET name = 'behind' WHERE id = $1").bind(id.0).execute(&raw).await.unwrap();
    sqlx::query("UPDATE instance_settings SET auto_invite = 0, pause_reason = 'behind'").execute(&raw).await.unwrap();

    // Act + Assert: from memory while nothing that may change them was committed through the store; writes of
    // groups change none of them.
    let group = crate::contract::group(id.0, 1, 1);
    db.store.insert_group(&group).await.unwrap();
    db.store.update_group(&group).await.unwrap();
    assert_eq!(read().await, ("main".into(), true, Some("rate-overlimit".into())), "read from memory");

    // Another number's pause, and the next reads of settings and pauses are from the file; records stay in memory.
    db.store.set_instance_pause(other, None).await.unwrap();
    assert_eq!(read().await, ("main".into(), false, Some("behind".into())));

    // Another number's record, and the next reads of records are from the file too.
    db.store.set_instance_token_hash(other, "rotated").await.unwrap();
    assert_eq!(read().await, ("behind".into(), false, Some("behind".into())));

    // The store's own writes are read back at once.
    let resumed = InstancePause { until: Timestamp::from_millis(1), reason: "over".into() };
    db.store.set_instance_pause(id, Some(&resumed)).await.unwrap();
    assert_eq!(db.store.instance_pause(id).await.unwrap(), Some(resumed));
    db.store.put_instance_settings(id, &settings).await.unwrap();
    assert!(db.store.instance_settings(id).await.unwrap().auto_invite);

    // Deleting the number takes its settings along: what was read from memory is gone too.
    db.store.delete_instance(id).await.unwrap();
    assert!(matches!(db.store.get_instance(id).await, Err(DbError::NotFound)));
    assert_eq!(db.store.instance_settings(id).await.unwrap(), InstanceSettings::default());
    assert_eq!(db.store.instance_pause(id).await.unwrap(), None);
}

#[tokio::test]
async fn nothing_but_a_statement_naming_a_kept_rows_table_or_instances_changes_the_row() {
    // The row caches count the statements that name `groups`, `instances` or `instance_settings` (src/row_cache.rs):
    // no trigger may change a row behind them, no foreign key but the instance's may reach into `groups` or
    // `instance_settings`, and none into `instances`.
    let db = TestDb::new().await;
    let raw = db.raw().await;
    let triggers: Vec<String> =
        sqlx::query_scalar("SELECT name FROM sqlite_master WHERE type = 'trigger'").fetch_all(&raw).await.unwrap();
    let parents = async |table: &str| -> Vec<String> {
        sqlx::query_scalar("SELECT \"table\" FROM pragma_foreign_key_list($1)")
            .bind(table)
            .fetch_all(&raw)
            .await
            .unwrap()
    };
    assert_eq!(triggers, Vec::<String>::new());
    assert_eq!(parents("groups").await, ["instances"]);
    assert_eq!(parents("instance_settings").await, ["instances"]);
    assert_eq!(parents("instances").await, Vec::<String>::new());
}

#[tokio::test]
async fn a_delivery_pass_takes_a_turn_of_the_committer_only_when_it_has_something_to_claim() {
    // Arrange: the webhook dispatcher passes after every commit with events, endpoints or not
    let db = TestDb::new().await;
    let store: &dyn Store = &db.store;
    let none_yet = db.store.transactions_committed();
    let empty = store.claim_due_deliveries(at(1_000), 64, "a pass", at(90_000)).await.unwrap();
    assert!(empty.is_empty(), "{empty:?}");
    assert_eq!(db.store.transactions_committed(), none_yet, "a pass with no delivery at all commits nothing");
    endpoint(store, &[], true).await;
    store.commit(&[], &[event(EventType::GroupCreated, "A", 5_000)]).await.unwrap();
    let before = db.store.transactions_committed();

    // Act: a pass just before the delivery is due, then one when it is
    let early = store.claim_due_deliveries(at(4_999), 64, "early", at(90_000)).await.unwrap();
    let after_early = db.store.transactions_committed();
    let due = store.claim_due_deliveries(at(5_000), 64, "due", at(90_000)).await.unwrap();

    // Assert: no transaction on the committer that every creation waits for until there is something to claim
    assert!(early.is_empty(), "{early:?}");
    assert_eq!(after_early, before, "a pass with nothing due commits nothing");
    assert_eq!(due.len(), 1);
    assert!(db.store.transactions_committed() > after_early, "the claim itself is a write");
}

/// Nor does what the claim would pass over: a backlog left to an endpoint since disabled, and a delivery waiting
/// behind its key's head while a pass holds the head. Read on the due deliveries alone, either would bring the write
/// back after every commit for as long as it lasted.
#[tokio::test]
async fn a_delivery_pass_commits_nothing_for_a_disabled_endpoints_backlog_or_a_delivery_behind_its_keys_head() {
    // Arrange: two events of one key for two endpoints, one of them since disabled; the head of the key claimed
    let db = TestDb::new().await;
    let store: &dyn Store = &db.store;
    let kept = endpoint(store, &[], true).await;
    let disabled = endpoint(store, &[], true).await;
    let events = [event(EventType::GroupCreated, "A", 1_000), event(EventType::GroupCreated, "A", 2_000)];
    store.commit(&[], &events).await.unwrap();
    let off = convene_core::events::WebhookEndpoint { enabled: false, disabled_reason: Some("off".into()), ..disabled };
    store.update_webhook_endpoint(&off).await.unwrap();
    let backlog = convene_core::events::DeliveryListQuery {
        endpoint_id: Some(off.id),
        limit: 500,
        ..convene_core::events::DeliveryListQuery::default()
    };
    assert_eq!(store.list_deliveries(&backlog).await.unwrap().len(), 2, "the disabled endpoint keeps its backlog");
    let head = store.claim_due_deliveries(at(3_000), 64, "first", at(90_000)).await.unwrap();
    let claimed: Vec<_> = head.iter().map(|d| (d.delivery.endpoint_id, d.delivery.event_id)).collect();
    assert_eq!(claimed, [(kept.id, events[0].id)]);
    let before = db.store.transactions_committed();

    // Act
    let next = store.claim_due_deliveries(at(3_000), 64, "second", at(90_000)).await.unwrap();

    // Assert
    assert!(next.is_empty(), "{next:?}");
    assert_eq!(db.store.transactions_committed(), before, "the pass committed nothing");
}
