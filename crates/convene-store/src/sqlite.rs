//! `SqliteStore`: the store on one SQLite file, in WAL mode with `synchronous = FULL` so that a write that returned
//! success survives a crash or a power cut, not only a process exit. Writes are committed together when several
//! wait at once (`group_commit`).
//!
//! Migrations are the files in `migrations/sqlite/`, compiled in. Each is applied in its own `BEGIN IMMEDIATE`
//! transaction together with its row in `schema_migrations`, so two processes starting on one file apply it once, and
//! a migration that fails leaves nothing behind.

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use convene_core::Timestamp;
use convene_core::store::{ApiKeyRecord, DbResult, GroupListQuery, GroupPage, GroupRecord, InstanceRecord};
use convene_core::store::{CreationAttempt, InstancePause, InstanceSettings, JobListQuery, JobRecord, JobState};
use convene_core::store::{IdempotencyClaim, IdempotencyRecord, IdempotentResponse};
use convene_core::{GroupId, GroupJid, InstanceId};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous};

use tokio::sync::Semaphore;
use uuid::Uuid;

use crate::error::{db_err, other, sqlite_err};
use crate::events;
use crate::group_commit::Committer;
use crate::idempotency;
use crate::jobs;
use crate::migrate::{Migration, refuse_newer};
use crate::row_cache::RowCaches;
use crate::sql::{self, Backend, ReadRow, Statement};
use crate::stored::SqliteRow;

const MIGRATIONS: &[Migration] = &[
    (1, include_str!("../migrations/sqlite/0001_init.sql")),
    (2, include_str!("../migrations/sqlite/0002_jobs.sql")),
    (3, include_str!("../migrations/sqlite/0003_idempotency.sql")),
    (4, include_str!("../migrations/sqlite/0004_events.sql")),
    (5, include_str!("../migrations/sqlite/0005_creation_duplicate_window.sql")),
    (6, include_str!("../migrations/sqlite/0006_sealed_idempotent_answers.sql")),
    (7, include_str!("../migrations/sqlite/0007_api_key_scope.sql")),
    (8, include_str!("../migrations/sqlite/0008_console_sessions.sql")),
    (9, include_str!("../migrations/sqlite/0009_group_creation_job.sql")),
    (10, include_str!("../migrations/sqlite/0010_device_keys.sql")),
    (11, include_str!("../migrations/sqlite/0011_number_leases.sql")),
    (12, include_str!("../migrations/sqlite/0012_delivery_claims.sql")),
    (13, include_str!("../migrations/sqlite/0013_cluster_nodes.sql")),
    (14, include_str!("../migrations/sqlite/0014_job_lists.sql")),
    (15, include_str!("../migrations/sqlite/0015_duplicate_window_by_time.sql")),
    (16, include_str!("../migrations/sqlite/0016_jobs_partial_indexes.sql")),
    (17, include_str!("../migrations/sqlite/0017_duplicate_window_by_minute.sql")),
];

/// The committer's page cache: 8 MiB (negative: KiB), filled only as pages are read. 32 MiB kept creation no faster
/// on the synchronous committer and let the server's memory grow under load (convene-bench, 100,000 groups).
const WRITER_CACHE: &str = "-8192";

/// Reads under way at once, each on a connection of its own (kept when idle) and a blocking thread.
const READERS: usize = 8;

/// Prepared statements each read connection keeps: more than the store has kinds of read.
const READER_STATEMENTS_KEPT: usize = 128;

/// Each read connection's page cache: 1 MiB (negative: KiB).
const READER_CACHE: &str = "-1024";

/// How long a connection waits for another one's write lock before failing with "database is locked".
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// The store on SQLite. Cloning shares the connection pool and the committer.
#[derive(Clone, Debug)]
pub struct SqliteStore {
    /// sqlx's connections: the migrations run on them. Writes go to the committer, reads to the readers.
    pool: SqlitePool,
    committer: Committer,
    readers: Arc<Readers>,
    caches: Arc<RowCaches>,
    /// Where an in-memory database is kept, removed when the last clone of the store is dropped.
    _temporary: Option<Arc<tempfile::TempDir>>,
}

impl SqliteStore {
    /// Opens (creating it and its parent directories if missing) and migrates the database at `url`:
    /// `sqlite://data/convene.db` or `sqlite:data/convene.db` (relative to the working directory),
    /// `sqlite:///var/lib/convene.db` (absolute), or `sqlite::memory:` (gone when the store is dropped).
    pub async fn connect(url: &str) -> DbResult<Self> {
        if !url.starts_with("sqlite:") {
            return Err(other(format!(
                "`{url}` is not a SQLite URL (expected sqlite://path/to/file.db or sqlite::memory:)"
            )));
        }
        let options = SqliteConnectOptions::from_str(url).map_err(db_err)?;
        // An in-memory database is a file in a temporary directory, removed with the store: the committer's
        // connection and the pool's must see one database, and SQLite shares an in-memory one between connections
        // only in shared-cache mode, whose table locks fail readers instead of waiting. Nothing in it need survive a
        // crash, so it is not synced.
        let (options, temporary) = if is_memory(url) {
            let dir = tempfile::Builder::new()
                .prefix("convene-memory-")
                .tempdir()
                .map_err(|e| other(format!("cannot make a temporary directory for `{url}`: {e}")))?;
            (SqliteConnectOptions::new().filename(dir.path().join("convene.db")), Some(Arc::new(dir)))
        } else {
            if let Some(dir) = options.get_filename().parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir)
                    .map_err(|e| other(format!("cannot create the database directory {}: {e}", dir.display())))?;
            }
            (options, None)
        };
        let (synchronous, pragma) = match temporary {
            Some(_) => (SqliteSynchronous::Off, "OFF"),
            None => (SqliteSynchronous::Full, "FULL"),
        };
        let options = options
            .synchronous(synchronous)
            .foreign_keys(true)
            .busy_timeout(BUSY_TIMEOUT)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal);
        let pool = SqlitePoolOptions::new().connect_with(options.clone()).await.map_err(db_err)?;
        migrate(&pool).await?;
        let caches = Arc::new(RowCaches::default());
        let committer = Committer::start(
            committer_connection(&options, pragma)?,
            convene_sqlite::checkpointer_connection(options.get_filename(), pragma).map_err(sqlite_err)?,
            Arc::clone(&caches),
        )?;
        let readers = Arc::new(Readers {
            path: options.get_filename().to_path_buf(),
            turns: Arc::new(Semaphore::new(READERS)),
            idle: Mutex::default(),
        });
        Ok(Self { pool, committer, readers, caches, _temporary: temporary })
    }

    /// Transactions the committer has committed so far: fewer than the writes when writes share commits.
    pub fn transactions_committed(&self) -> u64 {
        self.committer.transactions_committed()
    }

    /// Waits for queries in flight, then closes every connection. Later calls on this store fail.
    pub async fn close(&self) {
        self.committer.close().await;
        self.readers.close().await;
        self.pool.close().await;
    }
}

/// The committer's own connection to the file `options` name, synced as the pool's connections are (`synchronous`),
/// with a page cache that holds the indexes writes land in: with the default 2 MiB, creation slowed by a third once
/// 20,000 groups existed (convene-bench), as each commit read index pages back from the file. Its temporary files
/// are kept in memory: a statement that may have to be undone alone within a batch keeps the pages it changes in a
/// statement journal, which past 64 KiB SQLite spills to a new temporary file on disk.
fn committer_connection(options: &SqliteConnectOptions, synchronous: &str) -> DbResult<rusqlite::Connection> {
    let connection = rusqlite::Connection::open(options.get_filename()).map_err(sqlite_err)?;
    connection.busy_timeout(BUSY_TIMEOUT).map_err(sqlite_err)?;
    let pragmas =
        [("foreign_keys", "ON"), ("synchronous", synchronous), ("cache_size", WRITER_CACHE), ("temp_store", "MEMORY")];
    for (pragma, value) in pragmas {
        connection.pragma_update(None, pragma, value).map_err(sqlite_err)?;
    }
    convene_sqlite::leave_checkpoints_to_checkpointer(&connection).map_err(sqlite_err)?;
    plan_without_bound_values(&connection)?;
    Ok(connection)
}

/// Read connections, opened as needed and kept when idle. Reads run on them through rusqlite on a blocking thread,
/// each query and the decoding of its rows in one hop: sqlx sends every row of a result from its connection's thread
/// to the caller's one at a time, which made listing 50 groups cost 0.06 of the trivial endpoint (convene-bench).
#[derive(Debug)]
struct Readers {
    path: PathBuf,
    /// One per read under way, so that a burst of reads neither opens connection after connection nor fills the
    /// blocking thread pool; closed with the store.
    turns: Arc<Semaphore>,
    idle: Mutex<Vec<rusqlite::Connection>>,
}

impl Readers {
    /// Runs a query on an idle connection (or a new one) and reads each of its rows with `read`.
    fn fetch<T>(&self, statement: &Statement, read: ReadRow<T>) -> DbResult<Vec<T>> {
        let connection = match self.idle.lock().unwrap_or_else(PoisonError::into_inner).pop() {
            Some(connection) => connection,
            None => open_reader(&self.path)?,
        };
        let rows = Self::query(&connection, statement, read);
        self.idle.lock().unwrap_or_else(PoisonError::into_inner).push(connection);
        rows
    }

    fn query<T>(connection: &rusqlite::Connection, statement: &Statement, read: ReadRow<T>) -> DbResult<Vec<T>> {
        let mut prepared = connection.prepare_cached(statement.sql()).map_err(sqlite_err)?;
        statement.bind_to(&mut prepared).map_err(sqlite_err)?;
        // Columns are named by the readers in `stored`; looking each name up in SQLite for every value of every row
        // was a sixth of listing groups' time.
        let names: Vec<String> = prepared.column_names().into_iter().map(str::to_owned).collect();
        debug_assert!(
            names.iter().enumerate().all(|(i, name)| !names[..i].contains(name)),
            "a query names a column twice, which `SqliteRow` cannot tell apart: {names:?}"
        );
        let mut rows = prepared.raw_query();
        let mut records = Vec::new();
        while let Some(row) = rows.next().map_err(sqlite_err)? {
            records.push(read(&SqliteRow::new(row, &names))?);
        }
        Ok(records)
    }

    /// Waits for the reads under way, then closes the idle connections; later reads fail.
    async fn close(&self) {
        if let Ok(all) = self.turns.acquire_many(READERS as u32).await {
            self.turns.close();
            drop(all);
        }
        let idle = std::mem::take(&mut *self.idle.lock().unwrap_or_else(PoisonError::into_inner));
        drop(idle);
    }
}

/// A read connection to the file at `path`.
fn open_reader(path: &Path) -> DbResult<rusqlite::Connection> {
    let connection = rusqlite::Connection::open(path).map_err(sqlite_err)?;
    connection.busy_timeout(BUSY_TIMEOUT).map_err(sqlite_err)?;
    // A reader writes nothing; this makes sure of it.
    connection.pragma_update(None, "query_only", "ON").map_err(sqlite_err)?;
    connection.pragma_update(None, "cache_size", READER_CACHE).map_err(sqlite_err)?;
    plan_without_bound_values(&connection)?;
    connection.set_prepared_statement_cache_capacity(READER_STATEMENTS_KEPT);
    Ok(connection)
}

/// Makes SQLite plan a statement once, whatever values are bound to it. Otherwise a statement with a parameter on
/// the right of `LIKE` (the search in a list of groups) is planned again each time it is bound: a fifth of listing
/// groups' time, with sqlx as with rusqlite.
fn plan_without_bound_values(connection: &rusqlite::Connection) -> DbResult<()> {
    connection.set_db_config(rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG, true).map_err(sqlite_err)?;
    Ok(())
}

/// The file a `sqlite:` URL names, read the way `connect` reads it; `None` for an in-memory database.
pub(crate) fn file_of(url: &str) -> Option<std::path::PathBuf> {
    if !url.starts_with("sqlite:") || is_memory(url) {
        return None;
    }
    SqliteConnectOptions::from_str(url).ok().map(|options| options.get_filename().to_path_buf())
}

/// Whether a `sqlite:` URL names an in-memory database, read the way `SqliteConnectOptions::from_str` reads it.
fn is_memory(url: &str) -> bool {
    let rest = url.trim_start_matches("sqlite://").trim_start_matches("sqlite:");
    let (database, params) = rest.split_once('?').unwrap_or((rest, ""));
    database == ":memory:" || params.split('&').any(|p| p == "mode=memory")
}

async fn migrate(pool: &SqlitePool) -> DbResult<()> {
    sqlx::raw_sql("CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER NOT NULL PRIMARY KEY) STRICT")
        .execute(pool)
        .await
        .map_err(db_err)?;
    let current: Option<i64> =
        sqlx::query_scalar("SELECT MAX(version) FROM schema_migrations").fetch_one(pool).await.map_err(db_err)?;
    refuse_newer(current, MIGRATIONS)?;
    for &(version, sql) in MIGRATIONS {
        let mut tx = pool.begin_with("BEGIN IMMEDIATE").await.map_err(db_err)?;
        let applied = sqlx::query("SELECT 1 FROM schema_migrations WHERE version = $1")
            .bind(version)
            .fetch_optional(&mut *tx)
            .await
            .map_err(db_err)?
            .is_some();
        if applied {
            continue; // dropping `tx` rolls it back
        }
        sqlx::raw_sql(sql).execute(&mut *tx).await.map_err(db_err)?;
        sqlx::query("INSERT INTO schema_migrations (version) VALUES ($1)")
            .bind(version)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        tx.commit().await.map_err(db_err)?;
        tracing::info!(version, "applied SQLite migration");
    }
    Ok(())
}

#[async_trait]
impl Backend for SqliteStore {
    async fn execute(&self, mut statement: Statement) -> DbResult<u64> {
        // Here the caller reads the count itself: changing no row is an answer, not a failure.
        statement.must_change = false;
        Ok(self.committer.write(vec![statement]).await?.iter().sum())
    }

    async fn fetch<T: Send + 'static>(&self, statement: Statement, read: ReadRow<T>) -> DbResult<Vec<T>> {
        let turn = Arc::clone(&self.readers.turns).acquire_owned().await.map_err(|_| other("the store is closed"))?;
        let readers = Arc::clone(&self.readers);
        tokio::task::spawn_blocking(move || {
            let rows = readers.fetch(&statement, read);
            drop(turn);
            rows
        })
        .await
        .map_err(|e| other(format!("a database read stopped: {e}")))?
    }

    async fn execute_all(&self, statements: Vec<Statement>) -> DbResult<()> {
        self.committer.write(statements).await.map(drop)
    }

    fn row_caches(&self) -> Option<&RowCaches> {
        Some(&self.caches)
    }
}

crate::delegate::impl_store!(SqliteStore);

#[cfg(test)]
mod tests {
    use convene_sqlite::testing::rows_in_database_file_within;

    use super::*;

    #[test]
    fn sqlite_is_built_with_a_page_cache_of_its_own_for_each_connection() {
        // Why SQLite is built without SQLITE_ENABLE_MEMORY_MANAGEMENT (a page cache pooled across connections):
        // `.cargo/config.toml`.
        let connection = rusqlite::Connection::open_in_memory().unwrap();

        let options: Vec<String> = connection
            .prepare("PRAGMA compile_options")
            .unwrap()
            .query_map([], |row| row.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();

        // The bundled library (built with API_ARMOR), which sqlx links for this crate, not the system's.
        assert!(options.iter().any(|o| o == "ENABLE_API_ARMOR"), "{options:?}");
        // A LIBSQLITE3_FLAGS set in the environment replaces `.cargo/config.toml`'s: it must keep the `-U`.
        assert!(!options.iter().any(|o| o == "ENABLE_MEMORY_MANAGEMENT"), "{options:?}");
    }

    #[test]
    fn memory_urls_are_told_from_file_urls() {
        assert!(is_memory("sqlite::memory:"));
        assert!(is_memory("sqlite://:memory:"));
        assert!(is_memory("sqlite://?mode=memory&cache=private"));
        assert!(!is_memory("sqlite://data/convene.db"));
        assert!(!is_memory("sqlite:data/memory.db"));
        assert_eq!(file_of("sqlite://data/convene.db"), Some("data/convene.db".into()));
        assert_eq!(file_of("sqlite:///var/lib/c.db?mode=rwc"), Some("/var/lib/c.db".into()));
        assert_eq!(file_of("sqlite::memory:"), None);
        assert_eq!(file_of("postgres://u@h/d"), None);
    }

    #[tokio::test]
    async fn every_connection_syncs_fully_enforces_foreign_keys_and_waits_five_seconds_for_locks() {
        // Arrange
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::connect(&format!("sqlite://{}", dir.path().join("x.db").display())).await.unwrap();

        // Act: hold two connections so that both are checked, not one twice.
        let mut a = store.pool.acquire().await.unwrap();
        let mut b = store.pool.acquire().await.unwrap();

        // Assert
        for conn in [&mut a, &mut b] {
            let sync: i64 = sqlx::query_scalar("PRAGMA synchronous").fetch_one(&mut **conn).await.unwrap();
            let fk: i64 = sqlx::query_scalar("PRAGMA foreign_keys").fetch_one(&mut **conn).await.unwrap();
            let busy: i64 = sqlx::query_scalar("PRAGMA busy_timeout").fetch_one(&mut **conn).await.unwrap();
            let journal: String = sqlx::query_scalar("PRAGMA journal_mode").fetch_one(&mut **conn).await.unwrap();
            assert_eq!((sync, fk, busy, journal.as_str()), (2, 1, 5000, "wal"), "2 is FULL");
        }
    }

    #[test]
    fn the_committers_connection_syncs_as_asked_enforces_foreign_keys_waits_for_locks_and_journals_in_memory() {
        // Arrange
        let dir = tempfile::tempdir().unwrap();
        let options = SqliteConnectOptions::new().filename(dir.path().join("x.db"));

        for (asked, expected) in [("FULL", 2), ("OFF", 0)] {
            // Act
            let connection = committer_connection(&options, asked).unwrap();

            // Assert
            let pragma = |name: &str| -> i64 { connection.pragma_query_value(None, name, |row| row.get(0)).unwrap() };
            let settings = (
                pragma("synchronous"),
                pragma("foreign_keys"),
                pragma("busy_timeout"),
                pragma("temp_store"),
                pragma("wal_autocheckpoint"),
                pragma("journal_size_limit"),
            );
            assert_eq!(
                settings,
                (expected, 1, 5000, 2, convene_sqlite::WRITER_CHECKPOINTS_PAST, convene_sqlite::WAL_KEPT_BYTES),
                "temp_store 2 is MEMORY"
            );
            let checkpoints = convene_sqlite::checkpointer_connection(options.get_filename(), asked).unwrap();
            let synchronous: i64 = checkpoints.pragma_query_value(None, "synchronous", |row| row.get(0)).unwrap();
            assert_eq!(synchronous, expected, "a checkpoint syncs as the commits do");
        }
    }

    /// A new database file with every migration run, and a connection to it that plans as the store's do (once,
    /// whatever values are bound); the directory goes with the first.
    async fn migrated_database() -> (tempfile::TempDir, rusqlite::Connection) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("convene.db");
        let store = SqliteStore::connect(&format!("sqlite:{}", path.display())).await.unwrap();
        store.close().await;
        let connection = rusqlite::Connection::open(&path).unwrap();
        plan_without_bound_values(&connection).unwrap();
        (dir, connection)
    }

    /// SQLite's plan for `statement` with its values bound: each step's detail, in order.
    fn query_plan(connection: &rusqlite::Connection, statement: &Statement) -> Vec<String> {
        let mut explain = connection.prepare(&format!("EXPLAIN QUERY PLAN {}", statement.sql())).unwrap();
        statement.bind_to(&mut explain).unwrap();
        let mut rows = explain.raw_query();
        let mut plan = Vec::new();
        while let Some(row) = rows.next().unwrap() {
            plan.push(row.get::<_, String>(3).unwrap());
        }
        plan
    }

    /// A list of jobs seeks its filter through an index that holds the jobs in the order it returns them, or, without
    /// a filter, walks that order from its end: a walk through every job (or a sort of them all) grows with every job
    /// ever made, and the worker lists the running ones every second. A batch's jobs are few: they may be sorted.
    #[tokio::test]
    async fn every_list_of_jobs_reads_its_page_through_an_index() {
        // Arrange: a migrated database
        let (_dir, connection) = migrated_database().await;
        let running = Some(convene_core::store::JobState::Running);
        let batch = Some(uuid::Uuid::nil());
        let expected = [
            (running, None, "SEARCH jobs USING INDEX jobs_by_state (state=? AND "),
            (running, batch, "SEARCH jobs USING INDEX jobs_by_batch (batch_id=?)"),
            (None, batch, "SEARCH jobs USING INDEX jobs_by_batch (batch_id=?)"),
            (None, None, "SEARCH jobs USING INDEX jobs_newest_first ("),
        ];

        for (state, batch_id, start) in expected {
            // Act
            let before = Some((convene_core::Timestamp::from_millis(1_795_000_000_000), uuid::Uuid::nil()));
            let query = convene_core::store::JobListQuery { state, batch_id, before, limit: 500 };
            let statement = crate::jobs::list_jobs_statement(&query);
            let plan = query_plan(&connection, &statement);

            // Assert
            assert!(plan[0].starts_with(start), "{query:?}: {plan:?}");
            if batch_id.is_none() {
                assert_eq!(plan.len(), 1, "{query:?} sorts: {plan:?}");
            }
        }
    }

    /// The queue is read through `jobs_due`, which holds queued jobs only (migration 0016): a synchronous creation,
    /// never queued, writes nothing there.
    #[tokio::test]
    async fn the_queue_is_read_through_its_index_of_queued_jobs() {
        // Arrange: a migrated database
        let (_dir, connection) = migrated_database().await;
        let now = convene_core::Timestamp::from_millis(1_795_000_000_000);
        let statements = [
            crate::jobs::due_jobs_statement(now, 10),
            crate::jobs::due_jobs_leased_by_statement("node", now, now, 10),
            crate::jobs::next_job_due_statement(),
        ];

        for statement in statements {
            // Act
            let plan = query_plan(&connection, &statement);

            // Assert
            let searched = plan[0].starts_with("SEARCH jobs USING ") && plan[0].contains("INDEX jobs_due (state=?");
            assert!(searched, "{}: {plan:?}", statement.sql());
        }
        let partial: String = connection
            .query_row("SELECT sql FROM sqlite_schema WHERE name = 'jobs_due'", [], |row| row.get(0))
            .unwrap();
        assert!(partial.ends_with("WHERE state = 'queued'"), "{partial}");
    }

    /// The duplicate window's lookup searches its key in each minute of the window: by the key first, each new
    /// key (a hash) went to a page anywhere in an index of every key ever made, and the checkpoints copied a page
    /// for nearly every creation once 100,000 groups existed (convene-bench).
    #[tokio::test]
    async fn the_duplicate_window_is_searched_by_time_then_key() {
        // Arrange: a migrated database
        let (_dir, connection) = migrated_database().await;
        let since = convene_core::Timestamp::from_millis(1_795_000_000_000);
        let job = crate::jobs::running_job_keyed("dk", since);
        let statements = [
            crate::jobs::find_duplicate_job_statement("dk", since),
            crate::jobs::insert_job_unless_duplicate_statement(&job, since, None),
        ];

        for statement in statements {
            // Act
            let plan = query_plan(&connection, &statement);

            // Assert: jobs are searched by both columns of the index, and only the newest job is read besides (for
            // where the buckets end).
            let mut jobs: Vec<_> = plan.iter().filter(|step| step.contains(" jobs ")).collect();
            jobs.sort();
            assert_eq!(
                jobs,
                [
                    "SEARCH jobs USING COVERING INDEX jobs_newest_first",
                    "SEARCH jobs USING INDEX jobs_by_dedupe_window (<expr>=? AND dedupe_key=?)",
                ],
                "{plan:?}"
            );
        }
    }

    #[tokio::test]
    async fn what_was_committed_reaches_the_database_file_without_waiting_for_the_wal_to_fill() {
        // Arrange: a store on a file, and a write far smaller than the 1,000 pages after which SQLite would copy the
        // WAL into the database file by itself.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("convene.db");
        let store = SqliteStore::connect(&format!("sqlite:{}", path.display())).await.unwrap();
        store
            .committer
            .write(vec![
                Statement::new("CREATE TABLE checkpoint_probe (name TEXT)"),
                Statement::new("INSERT INTO checkpoint_probe (name) VALUES ('committed')"),
            ])
            .await
            .unwrap();

        // Act: read the database file alone until the row is there.
        let copied = rows_in_database_file_within(&path, "checkpoint_probe", 1, std::time::Duration::from_secs(10));

        // Assert
        assert_eq!(copied, 1, "the committed row was copied into the database file by the checkpointer");
        store.close().await;
    }

    #[tokio::test]
    async fn what_a_reader_kept_from_the_database_file_is_copied_once_it_is_done_with_no_commit_after() {
        // Arrange: a reader that holds an older state of the database, so that no checkpoint may copy past it.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("convene.db");
        let store = SqliteStore::connect(&format!("sqlite:{}", path.display())).await.unwrap();
        let create = Statement::new("CREATE TABLE checkpoint_probe (name TEXT)");
        store.committer.write(vec![create]).await.unwrap();
        let reader = rusqlite::Connection::open(&path).unwrap();
        reader.execute_batch("BEGIN").unwrap();
        reader.query_row("SELECT count(*) FROM checkpoint_probe", [], |row| row.get::<_, i64>(0)).unwrap();
        let insert = Statement::new("INSERT INTO checkpoint_probe (name) VALUES ('kept')");
        store.committer.write(vec![insert]).await.unwrap();
        let held_back =
            rows_in_database_file_within(&path, "checkpoint_probe", 1, std::time::Duration::from_millis(800));
        assert_eq!(held_back, 0, "the reader's older state keeps the row in the WAL");

        // Act: the reader is done; nothing is committed after.
        reader.execute_batch("COMMIT").unwrap();
        let copied = rows_in_database_file_within(&path, "checkpoint_probe", 1, std::time::Duration::from_secs(10));

        // Assert
        assert_eq!(copied, 1, "a checkpoint that copied only part of the WAL is tried again");
        store.close().await;
    }

    #[tokio::test]
    async fn pages_of_groups_and_events_seek_to_their_cursor_instead_of_reading_from_the_start() {
        // Arrange
        let store = SqliteStore::connect("sqlite::memory:").await.unwrap();
        let cursor = crate::cursor::GroupCursor {
            created_at: convene_core::Timestamp::from_millis(1_000),
            id: convene_core::GroupId(uuid::Uuid::nil()),
        };
        let groups = |instance_id, subject_contains: Option<&str>| convene_core::store::GroupListQuery {
            instance_id,
            subject_contains: subject_contains.map(str::to_owned),
            ..Default::default()
        };
        let events = |after_seq, before_seq, newest_first| convene_core::events::EventListQuery {
            after_seq,
            before_seq,
            newest_first,
            limit: 50,
            ..Default::default()
        };
        let statements = [
            crate::sql::list_groups_statement(&groups(None, None), None, 50),
            crate::sql::list_groups_statement(&groups(None, None), Some(cursor), 50),
            crate::sql::list_groups_statement(&groups(None, Some("war room")), Some(cursor), 50),
            crate::sql::list_groups_statement(&groups(Some(convene_core::InstanceId(7)), None), Some(cursor), 50),
            crate::events::list_events_statement(&events(None, None, false)),
            crate::events::list_events_statement(&events(Some(150_000), None, false)),
            crate::events::list_events_statement(&events(None, Some(150_000), true)),
            crate::events::list_deliveries_statement(&convene_core::events::DeliveryListQuery {
                limit: 50,
                ..Default::default()
            }),
            crate::events::list_deliveries_statement(&convene_core::events::DeliveryListQuery {
                before_id: Some(150_000),
                limit: 50,
                ..Default::default()
            }),
        ];

        for statement in statements {
            // Act
            let plan: Vec<String> = sqlx::query(sqlx::AssertSqlSafe(format!("EXPLAIN QUERY PLAN {}", statement.sql())))
                .fetch_all(&store.pool)
                .await
                .unwrap()
                .iter()
                .map(|step| sqlx::Row::get(step, "detail"))
                .collect();

            // Assert: searches by an index (or the rowid) from the position on, no scan of a table, no sort.
            assert!(
                !plan.is_empty() && plan.iter().all(|p| p.starts_with("SEARCH ") && !p.contains("TEMP B-TREE")),
                "{}\n{plan:?}",
                statement.sql()
            );
        }
    }
}
