//! `PostgresStore`: the store on a PostgreSQL database, with the same tables and the same queries (`sql`) as
//! `SqliteStore`.
//!
//! Migrations are the files in `migrations/postgres/`, compiled in. Each is applied in its own transaction together
//! with its row in `schema_migrations`, and every migration transaction first takes one advisory lock
//! (`pg_advisory_xact_lock`, released at commit or rollback): replicas starting at once on one database wait for each
//! other instead of racing to create the same tables, and a migration that fails leaves nothing behind.

use std::str::FromStr as _;

use async_trait::async_trait;
use convene_core::Timestamp;
use convene_core::store::{ApiKeyRecord, DbResult, GroupListQuery, GroupPage, GroupRecord, InstanceRecord};
use convene_core::store::{CreationAttempt, InstancePause, InstanceSettings, JobListQuery, JobRecord, JobState};
use convene_core::store::{IdempotencyClaim, IdempotencyRecord, IdempotentResponse};
use convene_core::{GroupId, GroupJid, InstanceId};
use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::{Postgres, Transaction};

use uuid::Uuid;

use crate::error::{db_err, other};
use crate::events;
use crate::idempotency;
use crate::jobs;
use crate::migrate::{Migration, refuse_newer};
use crate::sql::{self, Backend, ReadRow, Statement};

const MIGRATIONS: &[Migration] = &[
    (1, include_str!("../migrations/postgres/0001_init.sql")),
    (2, include_str!("../migrations/postgres/0002_jobs.sql")),
    (3, include_str!("../migrations/postgres/0003_idempotency.sql")),
    (4, include_str!("../migrations/postgres/0004_events.sql")),
    (5, include_str!("../migrations/postgres/0005_creation_duplicate_window.sql")),
    (6, include_str!("../migrations/postgres/0006_sealed_idempotent_answers.sql")),
    (7, include_str!("../migrations/postgres/0007_api_key_scope.sql")),
    (8, include_str!("../migrations/postgres/0008_console_sessions.sql")),
    (9, include_str!("../migrations/postgres/0009_group_creation_job.sql")),
    (10, include_str!("../migrations/postgres/0010_device_keys.sql")),
    (11, include_str!("../migrations/postgres/0011_number_leases.sql")),
    (12, include_str!("../migrations/postgres/0012_delivery_claims.sql")),
    (13, include_str!("../migrations/postgres/0013_cluster_nodes.sql")),
    (14, include_str!("../migrations/postgres/0014_job_lists.sql")),
    (15, include_str!("../migrations/postgres/0015_duplicate_window_by_time.sql")),
    (16, include_str!("../migrations/postgres/0016_jobs_partial_indexes.sql")),
    (17, include_str!("../migrations/postgres/0017_duplicate_window_by_minute.sql")),
];

/// The advisory lock key that migration transactions hold: "convene" in ASCII. Any process migrating a Convene
/// schema in this database takes the same one.
const MIGRATION_LOCK: i64 = 0x0063_6f6e_7665_6e65;

/// The store on PostgreSQL. Cloning shares the connection pool.
#[derive(Clone, Debug)]
pub struct PostgresStore {
    pool: PgPool,
}

impl PostgresStore {
    /// Connects to and migrates the database at `url`, `postgres://user:password@host:port/database`
    /// (`postgresql://` works too). The database must exist. The connection is not encrypted: sqlx is built without
    /// TLS, so keep the server on a trusted network.
    pub async fn connect(url: &str) -> DbResult<Self> {
        let scheme = crate::scheme(url);
        if !matches!(scheme, "postgres" | "postgresql") {
            // Name the scheme only: the URL may hold a password.
            return Err(other(format!(
                "a `{scheme}:` URL is not a PostgreSQL URL (expected postgres://user@host/database or postgresql://…)"
            )));
        }
        // A transaction left open by a node that froze (a paused VM) or lost its network would hold its locks until
        // TCP gave up, hours later, and with them the event log's turn (`events_in_turn`) for every node: the server
        // ends it after 10 s idle. (No lock timeout: a node waits for another's migration however long it takes.)
        let options = sqlx::postgres::PgConnectOptions::from_str(url)
            .map_err(db_err)?
            .options([("idle_in_transaction_session_timeout", "10s")]);
        let pool = PgPoolOptions::new().connect_with(options).await.map_err(db_err)?;
        migrate(&pool).await?;
        Ok(Self { pool })
    }

    /// Waits for queries in flight, then closes every connection. Later calls on this store fail.
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// A transaction holding the migration lock.
async fn begin_locked(pool: &PgPool) -> DbResult<Transaction<'static, Postgres>> {
    let mut tx = pool.begin().await.map_err(db_err)?;
    sqlx::query("SELECT pg_advisory_xact_lock($1)").bind(MIGRATION_LOCK).execute(&mut *tx).await.map_err(db_err)?;
    Ok(tx)
}

async fn migrate(pool: &PgPool) -> DbResult<()> {
    // Under the lock too: two concurrent `CREATE TABLE IF NOT EXISTS` of one table can both try to create it.
    let mut tx = begin_locked(pool).await?;
    sqlx::raw_sql("CREATE TABLE IF NOT EXISTS schema_migrations (version BIGINT NOT NULL PRIMARY KEY)")
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
    let current: Option<i64> =
        sqlx::query_scalar("SELECT MAX(version) FROM schema_migrations").fetch_one(&mut *tx).await.map_err(db_err)?;
    tx.commit().await.map_err(db_err)?;
    refuse_newer(current, MIGRATIONS)?;
    for &(version, sql) in MIGRATIONS {
        let mut tx = begin_locked(pool).await?;
        let applied = sqlx::query("SELECT 1 FROM schema_migrations WHERE version = $1")
            .bind(version)
            .fetch_optional(&mut *tx)
            .await
            .map_err(db_err)?
            .is_some();
        if applied {
            continue; // dropping `tx` rolls it back and releases the lock
        }
        sqlx::raw_sql(sql).execute(&mut *tx).await.map_err(db_err)?;
        sqlx::query("INSERT INTO schema_migrations (version) VALUES ($1)")
            .bind(version)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        tx.commit().await.map_err(db_err)?;
        tracing::info!(version, "applied PostgreSQL migration");
    }
    Ok(())
}

#[async_trait]
impl Backend for PostgresStore {
    /// One event-writing transaction at a time, by a transaction-scoped advisory lock (any number, Convene's own):
    /// `seq` is taken at insert, so two transactions writing events at once could commit in the other order, and a
    /// reader following the log by `seq` would pass the later one's event before the earlier one committed. The
    /// duplicate window's check-and-insert takes it too, so that two nodes cannot both find no duplicate. Taken
    /// first in the transaction, before any row lock, so that it cannot deadlock with them.
    fn events_in_turn(&self) -> Option<Statement> {
        Some(Statement::new("SELECT pg_advisory_xact_lock(7103014)"))
    }

    fn skips_locked_rows(&self) -> bool {
        true
    }

    async fn execute(&self, statement: Statement) -> DbResult<u64> {
        let done = statement.query::<Postgres>().execute(&self.pool).await.map_err(db_err)?;
        Ok(done.rows_affected())
    }

    async fn fetch<T: Send + 'static>(&self, statement: Statement, read: ReadRow<T>) -> DbResult<Vec<T>> {
        let rows = statement.query::<Postgres>().fetch_all(&self.pool).await.map_err(db_err)?;
        rows.iter().map(|row| read(row)).collect()
    }

    async fn execute_all(&self, statements: Vec<Statement>) -> DbResult<()> {
        let mut tx = self.pool.begin().await.map_err(db_err)?;
        for statement in &statements {
            let done = statement.query::<Postgres>().execute(&mut *tx).await.map_err(db_err)?;
            if statement.must_change && done.rows_affected() == 0 {
                // Dropping `tx` rolls it back.
                return Err(convene_core::DbError::NotFound);
            }
        }
        tx.commit().await.map_err(db_err)
    }
}

crate::delegate::impl_store!(PostgresStore);

#[cfg(test)]
mod tests {
    use super::*;

    /// The duplicate window's lookup and check search `jobs_by_dedupe_window` by both its columns on PostgreSQL too:
    /// the statements' bucket expression must be the index's word for word, or the planner walks every keyed job by
    /// the index's second column alone (as it does on an empty table: the test fills one and gathers statistics).
    #[tokio::test]
    async fn the_duplicate_window_is_searched_through_its_index() {
        crate::on_scratch_database("the_duplicate_window_is_searched_through_its_index", |url| async move {
            // Arrange: a migrated database
            let store = PostgresStore::connect(&url).await.unwrap();
            let mut connection = store.pool.acquire().await.unwrap();
            let since = convene_core::Timestamp::from_millis(1_795_000_000_000);
            let job = crate::jobs::running_job_keyed("dk", since);
            // Five minutes of keyed jobs, 20 a second, each key its own, with statistics.
            let keyed: Vec<_> = (0..6000_i64)
                .map(|n| convene_core::store::JobRecord {
                    id: uuid::Uuid::now_v7(),
                    creation_key: format!("ck{n}"),
                    dedupe_key: Some(format!("{n:064x}")),
                    created_at: convene_core::Timestamp::from_millis(since.as_millis() - 300_000 + n * 50),
                    ..job.clone()
                })
                .collect();
            for chunk in keyed.chunks(500) {
                crate::jobs::insert_jobs(&store, chunk).await.unwrap();
            }
            sqlx::query("ANALYZE jobs").execute(&mut *connection).await.unwrap();
            let window_start = convene_core::Timestamp::from_millis(since.as_millis() - 120_000);
            let statements = [
                crate::jobs::find_duplicate_job_statement("dk", window_start),
                crate::jobs::insert_job_unless_duplicate_statement(&job, window_start, None),
            ];

            for statement in statements {
                // Act
                let explain = statement.prefixed("EXPLAIN");
                let plan: Vec<String> = explain
                    .query::<Postgres>()
                    .fetch_all(&mut *connection)
                    .await
                    .unwrap()
                    .iter()
                    .map(|row| sqlx::Row::get(row, 0))
                    .collect();

                // Assert
                let searched = plan.iter().any(|step| {
                    step.contains("Index Cond: (((created_at / 60000) = ") && step.contains("(dedupe_key = ")
                });
                assert!(searched, "{}: {plan:#?}", explain.sql());
            }
            drop(connection);
            store.close().await;
        })
        .await;
    }
}
