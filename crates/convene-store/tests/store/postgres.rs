//! The contract on PostgreSQL, each case in a database of its own, and what only PostgreSQL has: a server that
//! several replicas migrate at once, and rows edited behind the store's back.
//!
//! The server is `TEST_DATABASE_URL` (`.ci/postgres.sh` starts one and prints it); its user must be allowed to
//! `CREATE DATABASE`. When the variable is unset, every test here says it was skipped and passes.

use std::future::Future;

use convene_core::store::{GroupListQuery, InstanceRecord};
use convene_core::{ConnectorKind, DbError, InstanceId, PhoneNumber, Store, Timestamp};
use convene_store::PostgresStore;
use sqlx::postgres::PgPool;

/// Runs `test` on a fresh database (`convene_store::on_scratch_database`); skipped without `TEST_DATABASE_URL`.
pub async fn on_fresh_database<F, Fut>(name: &str, test: F)
where
    F: FnOnce(String) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    convene_store::on_scratch_database(name, test).await;
}

fn instance(id: i64) -> InstanceRecord {
    InstanceRecord {
        id: InstanceId(id),
        kind: ConnectorKind::new("whatsapp"),
        name: "main".into(),
        phone: Some(PhoneNumber::parse("+595981048477").unwrap()),
        token_hash: "hash".into(),
        created_at: Timestamp::from_millis(1_795_000_000_000),
    }
}

macro_rules! contract_on_postgres {
    ($($case:ident),* $(,)?) => {
        $(
            #[tokio::test]
            async fn $case() {
                on_fresh_database(stringify!($case), |url| async move {
                    let store = PostgresStore::connect(&url).await.unwrap();
                    crate::contract::$case(&store).await;
                    store.close().await;
                })
                .await;
            }
        )*
    };
}

crate::contract::every_case!(contract_on_postgres);

#[tokio::test]
async fn data_survives_closing_the_pool_and_reconnecting() {
    on_fresh_database("data_survives_closing_the_pool_and_reconnecting", |url| async move {
        // Arrange
        let store = PostgresStore::connect(&url).await.unwrap();
        store.insert_instance(&instance(7_103_000_001)).await.unwrap();
        store.close().await;

        // Act
        let reopened = PostgresStore::connect(&url).await.unwrap();

        // Assert
        assert_eq!(reopened.get_instance(InstanceId(7_103_000_001)).await.unwrap(), instance(7_103_000_001));
        reopened.close().await;
    })
    .await;
}

#[tokio::test]
async fn replicas_starting_at_once_migrate_the_database_once() {
    on_fresh_database("replicas_starting_at_once_migrate_the_database_once", |url| async move {
        // Act
        let starts: Vec<_> = (0..6)
            .map(|_| {
                let url = url.clone();
                tokio::spawn(async move { PostgresStore::connect(&url).await })
            })
            .collect();
        let mut stores = Vec::new();
        for start in starts {
            stores.push(start.await.unwrap().expect("every replica starts"));
        }

        // Assert
        let versions: Vec<i64> = sqlx::query_scalar("SELECT version FROM schema_migrations ORDER BY version")
            .fetch_all(&PgPool::connect(&url).await.unwrap())
            .await
            .unwrap();
        // Each migration file once, in order.
        let files = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/migrations/postgres")).unwrap().count();
        assert_eq!(versions, (1..=files as i64).collect::<Vec<_>>());
        for store in &stores {
            assert_eq!(store.count_api_keys().await.unwrap(), 0);
            store.close().await;
        }
    })
    .await;
}

/// Two nodes recording the same creation at once must not both find no duplicate: the check-and-insert waits for the
/// turn the event log's writers take, also in a commit that writes no event of its own.
#[tokio::test]
async fn a_duplicate_check_that_writes_no_event_still_waits_for_its_turn() {
    use convene_core::events::Change;
    use convene_core::store::JobState;

    on_fresh_database("a_duplicate_check_that_writes_no_event_still_waits_for_its_turn", |url| async move {
        // Arrange: another transaction holds the turn.
        let store = PostgresStore::connect(&url).await.unwrap();
        let raw = PgPool::connect(&url).await.unwrap();
        let mut holder = raw.begin().await.unwrap();
        sqlx::query("SELECT pg_advisory_xact_lock(7103014)").execute(&mut *holder).await.unwrap();
        let job = crate::contract_jobs::keyed("dk_turn", JobState::Running, 1_000);

        // Act
        let since = Timestamp::from_millis(0);
        let insert = [Change::InsertJobUnlessDuplicate { job: &job, since, passed_over: None }];
        let commit = store.commit(&insert, &[]);
        tokio::pin!(commit);
        // Until the server shows the commit waiting for the lock, or the commit ends without having waited.
        let waiting = async {
            let waiters = "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted";
            while sqlx::query_scalar::<_, i64>(waiters).fetch_one(&raw).await.unwrap() == 0 {
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            }
        };
        let while_held = tokio::select! {
            done = &mut commit => Err(format!("the check went ahead while another transaction held the turn: {done:?}")),
            waited = tokio::time::timeout(std::time::Duration::from_secs(10), waiting) => {
                waited.map_err(|_| "the check neither waited nor went ahead within 10 s".to_owned())
            }
        };
        holder.commit().await.unwrap();
        let after = tokio::time::timeout(std::time::Duration::from_secs(10), &mut commit).await;

        // Assert
        while_held.unwrap();
        after.expect("the check goes ahead once the turn is free").unwrap();
        assert_eq!(store.get_job(job.id).await.unwrap(), job);
        raw.close().await;
        store.close().await;
    })
    .await;
}

#[tokio::test]
async fn a_url_for_another_database_is_refused() {
    // Act
    let result = PostgresStore::connect("sqlite://data/convene.db").await;

    // Assert
    match result {
        Err(DbError::Other(e)) => assert!(e.to_string().contains("not a PostgreSQL URL"), "{e}"),
        other => panic!("expected an error, got {:?}", other.map(|_| ())),
    }
}

#[tokio::test]
async fn a_stored_value_that_no_longer_parses_is_an_error_naming_its_column() {
    on_fresh_database("a_stored_value_that_no_longer_parses_is_an_error_naming_its_column", |url| async move {
        // Arrange
        let store = PostgresStore::connect(&url).await.unwrap();
        store.insert_instance(&instance(7_103_000_001)).await.unwrap();
        let raw = PgPool::connect(&url).await.unwrap();

        for (edit, column) in [
            ("UPDATE instances SET phone = 'bob'", "instances.phone"),
            ("UPDATE instances SET phone = NULL, kind = 'Not a kind!'", "instances.kind"),
        ] {
            sqlx::raw_sql(edit).execute(&raw).await.unwrap();

            // Act
            let result = store.get_instance(InstanceId(7_103_000_001)).await;

            // Assert
            match result {
                Err(DbError::Other(e)) => assert!(e.to_string().contains(column), "{e}"),
                other => panic!("expected an error naming {column}, got {other:?}"),
            }
        }
        store.close().await;
    })
    .await;
}

#[tokio::test]
async fn a_job_settings_or_attempt_value_that_no_longer_parses_is_an_error_naming_its_column() {
    use crate::contract_jobs::{CORRUPTIONS, first_read_error, seed_rows_to_corrupt};

    let name = "a_job_settings_or_attempt_value_that_no_longer_parses_is_an_error_naming_its_column";
    on_fresh_database(name, |url| async move {
        // Arrange
        let store = PostgresStore::connect(&url).await.unwrap();
        seed_rows_to_corrupt(&store).await;
        let raw = PgPool::connect(&url).await.unwrap();

        for (edit, column, repair) in CORRUPTIONS {
            sqlx::raw_sql(*edit).execute(&raw).await.unwrap();

            // Act
            let error = first_read_error(&store).await;

            // Assert
            assert!(
                error.as_deref().is_some_and(|e| e.contains(column)),
                "expected an error naming {column}: {error:?}"
            );
            sqlx::raw_sql(*repair).execute(&raw).await.unwrap();
            assert_eq!(first_read_error(&store).await, None, "repaired after {column}");
        }
        raw.close().await;
        store.close().await;
    })
    .await;
}

#[tokio::test]
async fn a_group_with_a_corrupt_jid_fails_the_listing_that_reaches_it() {
    on_fresh_database("a_group_with_a_corrupt_jid_fails_the_listing_that_reaches_it", |url| async move {
        // Arrange
        let store = PostgresStore::connect(&url).await.unwrap();
        store.insert_instance(&instance(7_103_000_001)).await.unwrap();
        let group = crate::contract::group(7_103_000_001, 1, 1);
        store.insert_group(&group).await.unwrap();
        sqlx::raw_sql("UPDATE groups SET jid = 'not-a-jid'")
            .execute(&PgPool::connect(&url).await.unwrap())
            .await
            .unwrap();

        // Act
        let result = store.list_groups(&GroupListQuery { limit: 10, ..Default::default() }).await;

        // Assert
        match result {
            Err(DbError::Other(e)) => assert!(e.to_string().contains("groups.jid"), "{e}"),
            other => panic!("expected an error naming groups.jid, got {other:?}"),
        }
        store.close().await;
    })
    .await;
}

#[tokio::test]
async fn a_database_migrated_by_a_newer_build_is_refused() {
    on_fresh_database("a_database_migrated_by_a_newer_build_is_refused", |url| async move {
        // Arrange
        let store = PostgresStore::connect(&url).await.unwrap();
        store.close().await;
        sqlx::raw_sql("INSERT INTO schema_migrations (version) VALUES (9999)")
            .execute(&PgPool::connect(&url).await.unwrap())
            .await
            .unwrap();

        // Act
        let result = PostgresStore::connect(&url).await;

        // Assert
        match result {
            Err(DbError::Other(e)) => assert!(e.to_string().contains("9999"), "{e}"),
            other => panic!("expected a refusal, got {:?}", other.map(|_| ())),
        }
    })
    .await;
}

#[tokio::test]
async fn an_upgrade_links_each_group_made_before_to_the_job_that_made_it() {
    on_fresh_database("an_upgrade_links_each_group_made_before_to_the_job_that_made_it", |url| async move {
        // Arrange: a database as the build before migration 9 left it.
        let store = PostgresStore::connect(&url).await.unwrap();
        store.insert_instance(&instance(7_103_000_001)).await.unwrap();
        let (groups, jobs, seed) = crate::contract::groups_from_before_the_job_link(7_103_000_001);
        for g in &groups {
            store.insert_group(g).await.unwrap();
        }
        let raw = PgPool::connect(&url).await.unwrap();
        // The seed is this test's own text: uuids and digits.
        sqlx::raw_sql(sqlx::AssertSqlSafe(seed)).execute(&raw).await.unwrap();
        sqlx::raw_sql(
            "ALTER TABLE groups DROP COLUMN creation_job_id; DELETE FROM schema_migrations WHERE version = 9",
        )
        .execute(&raw)
        .await
        .unwrap();
        raw.close().await;
        store.close().await;

        // Act
        let store = PostgresStore::connect(&url).await.unwrap();

        // Assert
        let mut found = Vec::new();
        for g in &groups {
            found.push(store.get_group(g.id).await.unwrap().creation_job_id);
        }
        assert_eq!(found, [Some(jobs[0]), Some(jobs[1]), None]);
        store.close().await;
    })
    .await;
}
