//! The contract on SQLite, each case on a fresh temporary file, and what only SQLite has: files, directories,
//! reconnecting, and rows edited behind the store's back.

use std::path::{Path, PathBuf};

use convene_core::store::{GroupListQuery, InstanceRecord};
use convene_core::{ConnectorKind, DbError, InstanceId, Store, Timestamp};
use convene_store::SqliteStore;
use sqlx::sqlite::SqlitePool;
use tempfile::TempDir;

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
        kind: ConnectorKind::Whatsapp,
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

contract_on_sqlite!(
    api_keys_round_trip_and_are_counted,
    instances_round_trip_with_and_without_a_phone,
    groups_round_trip_with_every_field_set_and_unset,
    a_duplicate_instance_id_is_a_conflict,
    a_duplicate_api_key_hash_is_a_conflict,
    a_second_record_for_one_instance_and_jid_is_a_conflict,
    a_duplicate_group_id_is_a_conflict,
    missing_records_are_not_found,
    deleting_an_instance_deletes_its_groups_and_nothing_else,
    updating_a_group_replaces_only_its_mutable_fields,
    groups_are_found_by_jid_on_every_instance_or_on_one,
    seven_groups_in_pages_of_three_come_as_three_three_and_one,
    a_last_page_that_is_exactly_full_has_no_next_cursor,
    listing_by_instance_pages_through_that_instances_groups_only,
    listing_with_no_groups_gives_one_empty_page,
    a_zero_limit_is_read_as_one,
    a_malformed_cursor_is_refused,
    // idempotency keys
    an_idempotency_key_is_claimed_once_and_then_answers_with_its_record,
    an_idempotent_answer_without_a_content_type_or_body_round_trips,
    idempotency_keys_are_scoped_to_their_api_key,
    an_abandoned_idempotency_claim_is_taken_over_and_the_old_claim_can_no_longer_finish,
    a_complete_idempotency_record_is_replaced_only_once_expired,
    a_released_idempotency_key_can_be_claimed_again,
    concurrent_claims_of_one_idempotency_key_have_exactly_one_winner,
    expired_idempotency_records_are_deleted_oldest_first_a_batch_at_a_time,
    // pacing and the creation queue
    instance_settings_and_pauses_round_trip_without_clobbering_each_other,
    creation_attempts_are_recorded_finished_and_counted_since_a_time,
    a_batch_of_jobs_is_inserted_whole_or_not_at_all,
    due_jobs_come_soonest_first_and_are_claimed_once,
    deleting_an_instance_deletes_its_settings_and_attempts,
    instance_settings_of_every_shape_round_trip_per_instance,
    a_pause_set_before_any_settings_leaves_the_defaults_and_is_replaced_whole,
    creation_attempts_come_back_whole_and_oldest_first_from_the_since_boundary_on,
    jobs_round_trip_with_every_field_set_and_unset,
    a_batch_with_a_taken_id_or_creation_key_inserts_nothing,
    jobs_are_listed_newest_first_by_state_and_batch,
    due_jobs_are_the_queued_ones_up_to_now_soonest_then_oldest_then_by_id,
    the_next_job_due_counts_queued_jobs_only,
    claiming_a_job_pins_it_counts_an_attempt_and_leaves_the_rest,
    updating_a_job_replaces_only_its_mutable_fields,
    only_running_jobs_are_requeued_after_a_crash_and_keep_their_pin,
    deleting_an_instance_keeps_its_jobs_and_the_other_instances_records,
);

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
        ("UPDATE instances SET phone = NULL, kind = 'telegram'", "instances.kind"),
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

    for (edit, column, repair) in CORRUPTIONS {
        sqlx::raw_sql(*edit).execute(&raw).await.unwrap();

        // Act
        let error = first_read_error(&db.store).await;

        // Assert
        assert!(error.as_deref().is_some_and(|e| e.contains(column)), "expected an error naming {column}: {error:?}");
        sqlx::raw_sql(*repair).execute(&raw).await.unwrap();
        assert_eq!(first_read_error(&db.store).await, None, "repaired after {column}");
    }
}

#[tokio::test]
async fn a_group_with_a_corrupt_jid_fails_the_listing_that_reaches_it() {
    // Arrange
    let db = TestDb::new().await;
    db.store.insert_instance(&instance(7_103_000_001)).await.unwrap();
    let group = convene_core::store::GroupRecord {
        id: convene_core::GroupId::new(),
        instance_id: InstanceId(7_103_000_001),
        jid: convene_core::GroupJid::parse("120363043968066561@g.us").unwrap(),
        subject: "s".into(),
        description: None,
        settings: Default::default(),
        created_at: Timestamp::from_millis(1),
        updated_at: Timestamp::from_millis(1),
        left_at: None,
    };
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
