//! Group commit for SQLite: every write the store makes goes to one committer thread, which runs all the writes
//! waiting at that moment in one transaction and commits them with one sync.
//!
//! SQLite has one writer at a time and, with `synchronous = FULL`, each commit waits for the disk. Committed one by
//! one, concurrent creations queue for the write lock and pay a sync each; committed together, they share it, as the
//! webhook dispatcher already does with its attempts. A caller's statements still take effect all together or not at
//! all, a failed one does not undo another caller's, and no caller hears success before the commit that holds its
//! writes has returned.
//!
//! Writes seldom fail (a row taken meanwhile, a duplicate key, a repeat caught in the duplicate window), so a batch
//! runs without a savepoint per write: a savepoint keeps the original of every page its write changes, which cost 8%
//! of a creation's samples. When one does fail, the transaction is undone and the batch written again, each write in
//! a savepoint of its own this time, so that a failed one is undone alone and the rest still commit together, with
//! one sync. (Written in parts around each failure instead, a batch with many refused writes took a commit for nearly
//! each of its writes.)
//!
//! The committer works on its connection synchronously through rusqlite, on a thread of its own, rather than through
//! sqlx: sqlx runs each statement as a round trip to its connection's worker thread, and a batch was a dozen
//! statements per caller (a savepoint, the statements, a release). Those round trips, one after another, bounded
//! creation (convene-bench: 16 ms a commit under 16 concurrent creations, at 54% of the two cores).
//!
//! Checkpoints (copying the WAL's pages into the database file, with two syncs of their own) run beside the
//! committer, on a thread and connection of their own (`convene_sqlite::Checkpointer`).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use convene_core::DbError;
use convene_core::store::DbResult;
use convene_sqlite::Checkpointer;
use rusqlite::Connection;
use tokio::sync::{mpsc, oneshot};

use crate::error::{other, sqlite_err};
use crate::row_cache::RowCaches;
use crate::sql::Statement;

/// Most callers' writes in one transaction, so that a long queue does not hold the write lock for long.
const MOST_PER_COMMIT: usize = 256;

/// Prepared statements the committer keeps: more than the store has kinds of write.
const STATEMENTS_KEPT: usize = 128;

/// One caller's writes and where to send how they went: the rows each statement changed.
struct Write {
    statements: Vec<Statement>,
    done: oneshot::Sender<DbResult<Vec<u64>>>,
}

enum Message {
    Write(Write),
    /// Commits what came before, closes the connection, answers, and stops.
    Close(oneshot::Sender<()>),
}

/// The way to the committer. Cloning shares it; the committer stops when told to close or when the last clone is
/// dropped.
#[derive(Clone, Debug)]
pub(crate) struct Committer {
    messages: mpsc::UnboundedSender<Message>,
    committed: Arc<AtomicU64>,
}

impl Committer {
    /// A committer on `connection`, which is its own, with its checkpoints on `checkpoints`, another connection to
    /// the same file; it tells `caches` what it committed.
    pub(crate) fn start(connection: Connection, checkpoints: Connection, caches: Arc<RowCaches>) -> DbResult<Self> {
        connection.set_prepared_statement_cache_capacity(STATEMENTS_KEPT);
        let (messages, queue) = mpsc::unbounded_channel();
        let committed = Arc::new(AtomicU64::new(0));
        let checkpointer = Checkpointer::start("convene-checkpointer", checkpoints, Arc::clone(&committed))
            .map_err(|e| other(format!("cannot start the database's checkpointer: {e}")))?;
        let counter = Arc::clone(&committed);
        std::thread::Builder::new()
            .name("convene-committer".into())
            .spawn(move || serve(connection, queue, &counter, &caches, checkpointer))
            .map_err(|e| other(format!("cannot start the database's committer: {e}")))?;
        Ok(Self { messages, committed })
    }

    /// Commits the writes sent before, then closes the committer's connection; later writes fail.
    pub(crate) async fn close(&self) {
        let (done, closed) = oneshot::channel();
        if self.messages.send(Message::Close(done)).is_ok() {
            let _ = closed.await;
        }
    }

    pub(crate) fn transactions_committed(&self) -> u64 {
        self.committed.load(Ordering::Relaxed)
    }

    /// Runs `statements` in one transaction with whatever other writes are waiting; the rows each changed. A
    /// `must_change` statement that changes no row undoes this caller's statements and fails with `NotFound`.
    pub(crate) async fn write(&self, statements: Vec<Statement>) -> DbResult<Vec<u64>> {
        let (done, answer) = oneshot::channel();
        let stopped = || DbError::Other("the database's committer has stopped".into());
        self.messages.send(Message::Write(Write { statements, done })).map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }
}

/// The committer thread: waits for writes, then commits every write waiting (up to `MOST_PER_COMMIT`) together.
fn serve(
    connection: Connection,
    mut queue: mpsc::UnboundedReceiver<Message>,
    committed: &AtomicU64,
    caches: &RowCaches,
    checkpointer: Checkpointer,
) {
    let mut batch = Vec::new();
    while let Some(first) = queue.blocking_recv() {
        let waiting = std::iter::from_fn(|| queue.try_recv().ok());
        for message in std::iter::once(first).chain(waiting).take(MOST_PER_COMMIT) {
            match message {
                Message::Write(write) => batch.push(write),
                Message::Close(done) => {
                    commit_batch(&connection, &mut batch, committed, caches);
                    checkpointer.stop();
                    drop(connection);
                    let _ = done.send(());
                    return;
                }
            }
        }
        commit_batch(&connection, &mut batch, committed, caches);
    }
    checkpointer.stop();
}

/// Commits the writes in `batch` together and answers each; leaves `batch` empty.
fn commit_batch(connection: &Connection, batch: &mut Vec<Write>, committed: &AtomicU64, caches: &RowCaches) {
    if batch.is_empty() {
        return;
    }
    let changing = caches.writing(batch.iter().flat_map(|write| &write.statements));
    let mut commits = 0;
    let outcomes = commit(connection, batch, &mut commits);
    committed.fetch_add(commits, Ordering::Relaxed);
    caches.written(changing);
    for (write, outcome) in batch.drain(..).zip(outcomes) {
        let _ = write.done.send(outcome);
    }
}

/// Runs the batch in one transaction; each write's outcome, in order. When a write fails, the transaction is undone
/// (the failed write may have done part of its statements) and the batch written again with a savepoint per write.
/// When that cannot go on (SQLite undid the whole transaction by itself, as it may on a full disk, or a savepoint
/// could not be taken or undone) or the commit fails, each write is tried again in a transaction of its own, so that
/// only the one that cannot be written fails.
fn commit(connection: &Connection, batch: &[Write], commits: &mut u64) -> Vec<DbResult<Vec<u64>>> {
    match batch {
        [] => return Vec::new(),
        [write] => return vec![commit_alone(connection, write, commits)],
        _ => {}
    }
    if let Err(failed) = begin(connection, batch) {
        return failed;
    }
    let mut outcomes = Vec::with_capacity(batch.len());
    for write in batch {
        match run(connection, &write.statements) {
            Ok(changed) => outcomes.push(Ok(changed)),
            Err(_) => {
                rollback(connection);
                return commit_with_savepoints(connection, batch, commits);
            }
        }
    }
    finish(connection, batch, outcomes, commits)
}

/// Runs the batch again in one transaction, each write in a savepoint that a failure rolls back alone.
fn commit_with_savepoints(connection: &Connection, batch: &[Write], commits: &mut u64) -> Vec<DbResult<Vec<u64>>> {
    if let Err(failed) = begin(connection, batch) {
        return failed;
    }
    let mut outcomes = Vec::with_capacity(batch.len());
    for write in batch {
        if control(connection, "SAVEPOINT write").is_err() {
            return one_by_one(connection, batch, commits);
        }
        let outcome = run(connection, &write.statements);
        // SQLite may have ended the whole transaction itself (as on a full disk): then each write goes alone.
        if connection.is_autocommit() {
            return one_by_one(connection, batch, commits);
        }
        let undone = outcome.is_err() && control(connection, "ROLLBACK TO write").is_err();
        if undone || control(connection, "RELEASE write").is_err() {
            return one_by_one(connection, batch, commits);
        }
        outcomes.push(outcome);
    }
    finish(connection, batch, outcomes, commits)
}

/// Begins the batch's transaction; when that fails, the same error for each of its writes.
fn begin(connection: &Connection, batch: &[Write]) -> Result<(), Vec<DbResult<Vec<u64>>>> {
    control(connection, "BEGIN IMMEDIATE").map_err(|e| {
        let e = sqlite_err(e);
        batch.iter().map(|_| Err(copy(&e))).collect()
    })
}

/// Commits the batch's transaction: `outcomes` if that worked, else each write's own outcome alone.
fn finish(
    connection: &Connection,
    batch: &[Write],
    outcomes: Vec<DbResult<Vec<u64>>>,
    commits: &mut u64,
) -> Vec<DbResult<Vec<u64>>> {
    match control(connection, "COMMIT") {
        Ok(()) => {
            *commits += 1;
            outcomes
        }
        Err(_) => one_by_one(connection, batch, commits),
    }
}

/// Ends the transaction, if one is left, and writes each of the batch alone.
fn one_by_one(connection: &Connection, batch: &[Write], commits: &mut u64) -> Vec<DbResult<Vec<u64>>> {
    rollback(connection);
    batch.iter().map(|write| commit_alone(connection, write, commits)).collect()
}

/// One write in a transaction of its own: no savepoint is needed, the transaction is undone if it fails.
fn commit_alone(connection: &Connection, write: &Write, commits: &mut u64) -> DbResult<Vec<u64>> {
    control(connection, "BEGIN IMMEDIATE").map_err(sqlite_err)?;
    let committed = run(connection, &write.statements)
        .and_then(|changed| control(connection, "COMMIT").map(|()| changed).map_err(sqlite_err));
    match committed {
        Ok(_) => *commits += 1,
        Err(_) => rollback(connection),
    }
    committed
}

/// Ends whatever is left of the transaction; SQLite may have ended it already.
fn rollback(connection: &Connection) {
    if !connection.is_autocommit() {
        let _ = control(connection, "ROLLBACK");
    }
}

/// Runs a transaction's or a savepoint's control statement (`BEGIN`, `COMMIT`, `SAVEPOINT`, `RELEASE`, …), prepared
/// once.
fn control(connection: &Connection, sql: &str) -> rusqlite::Result<()> {
    connection.prepare_cached(sql)?.raw_execute().map(drop)
}

/// Runs the statements in order, stopping at the first that fails (or, marked `must_change`, changes no row).
fn run(connection: &Connection, statements: &[Statement]) -> DbResult<Vec<u64>> {
    let mut changed = Vec::with_capacity(statements.len());
    for statement in statements {
        let mut prepared = connection.prepare_cached(statement.sql()).map_err(sqlite_err)?;
        statement.bind_to(&mut prepared).map_err(sqlite_err)?;
        let rows = prepared.raw_execute().map_err(sqlite_err)? as u64;
        if statement.must_change && rows == 0 {
            return Err(DbError::NotFound);
        }
        changed.push(rows);
    }
    Ok(changed)
}

/// The same error for each caller of a failed batch (`DbError` holds a boxed source, so it is not `Clone`).
fn copy(e: &DbError) -> DbError {
    match e {
        DbError::NotFound => DbError::NotFound,
        DbError::Conflict => DbError::Conflict,
        DbError::Other(source) => DbError::Other(source.to_string().into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_full_database_fails_the_writes_that_do_not_fit_and_later_ones_still_commit() {
        // Arrange: a database that may not grow past 16 pages
        let dir = tempfile::tempdir().unwrap();
        let connection = Connection::open(dir.path().join("t.db")).unwrap();
        connection.pragma_update(None, "max_page_count", 16).unwrap();
        connection.execute_batch("CREATE TABLE t (x BLOB)").unwrap();
        let committer =
            Committer::start(connection, Connection::open(dir.path().join("t.db")).unwrap(), Arc::default()).unwrap();
        let insert = |bytes: usize| vec![Statement::new("INSERT INTO t VALUES (zeroblob($1))").bind(bytes as i64)];

        // Act
        let too_big = committer.write(insert(1 << 20)).await;
        let small = committer.write(insert(100)).await;
        let both = tokio::join!(committer.write(insert(1 << 20)), committer.write(insert(100)));

        // Assert
        assert!(too_big.is_err());
        assert_eq!(small.unwrap(), [1]);
        assert!(both.0.is_err());
        assert_eq!(both.1.unwrap(), [1]);
    }

    /// A table `t` of integer keys in a new database file, kept while the directory is.
    fn keyed_table() -> (tempfile::TempDir, Connection) {
        let dir = tempfile::tempdir().unwrap();
        let connection = Connection::open(dir.path().join("t.db")).unwrap();
        connection.execute_batch("CREATE TABLE t (k INTEGER PRIMARY KEY)").unwrap();
        (dir, connection)
    }

    fn keys_in(connection: &Connection) -> Vec<i64> {
        let mut keys = connection.prepare("SELECT k FROM t ORDER BY k").unwrap();
        keys.query_map([], |r| r.get(0)).unwrap().map(Result::unwrap).collect()
    }

    #[test]
    fn a_write_that_ends_the_whole_transaction_in_the_savepoint_pass_leaves_each_write_to_go_alone() {
        // Arrange: the second write fails and, by its conflict clause, makes SQLite undo the whole transaction.
        let (_dir, connection) = keyed_table();
        let insert = |k: i64| Statement::new("INSERT INTO t (k) VALUES ($1)").bind(k);
        let ends_all = Statement::new("INSERT OR ROLLBACK INTO t (k) VALUES (1)");
        let write = |statements: Vec<Statement>| Write { statements, done: oneshot::channel().0 };
        let batch = [write(vec![insert(1)]), write(vec![ends_all]), write(vec![insert(2)])];

        // Act
        let mut commits = 0;
        let outcomes = commit(&connection, &batch, &mut commits);

        // Assert: one answer per write, in order, and each write that could be written is, once.
        let ok: Vec<bool> = outcomes.iter().map(Result::is_ok).collect();
        assert_eq!(ok, [true, false, true]);
        assert_eq!(commits, 2, "the two that could be written, each alone");
        let keys = keys_in(&connection);
        assert_eq!(keys, [1, 2]);
        assert!(connection.is_autocommit(), "no transaction is left open");
    }

    #[test]
    fn a_failed_write_in_a_batch_is_undone_whole_and_the_others_commit_in_the_order_they_came() {
        // Arrange: a batch whose second write inserts, then fails; the third conflicts with the first.
        let (_dir, connection) = keyed_table();
        let insert = |k: i64| Statement::new("INSERT INTO t (k) VALUES ($1)").bind(k);
        let missing = Statement::new("UPDATE t SET k = k WHERE k = 99").must_change();
        let write = |statements: Vec<Statement>| Write { statements, done: oneshot::channel().0 };
        let batch =
            [write(vec![insert(1)]), write(vec![insert(2), missing]), write(vec![insert(1)]), write(vec![insert(3)])];

        // Act
        let mut commits = 0;
        let outcomes = commit(&connection, &batch, &mut commits);

        // Assert
        let kinds: Vec<&str> = outcomes
            .iter()
            .map(|o| match o {
                Ok(_) => "ok",
                Err(DbError::NotFound) => "not found",
                Err(DbError::Conflict) => "conflict",
                Err(DbError::Other(_)) => "other",
            })
            .collect();
        assert_eq!(kinds, ["ok", "not found", "conflict", "ok"]);
        assert_eq!(commits, 1, "the writes that did not fail commit together");
        let keys = keys_in(&connection);
        assert_eq!(keys, [1, 3], "the failed write's first insert is undone");
        assert!(connection.is_autocommit(), "no transaction is left open");
    }

    #[tokio::test]
    async fn parameters_are_bound_by_their_number_wherever_they_appear() {
        // Arrange
        let dir = tempfile::tempdir().unwrap();
        let connection = Connection::open(dir.path().join("t.db")).unwrap();
        connection.execute_batch("CREATE TABLE t (a TEXT, b INTEGER, c INTEGER, d TEXT)").unwrap();
        let reader = Connection::open(dir.path().join("t.db")).unwrap();
        let committer =
            Committer::start(connection, Connection::open(dir.path().join("t.db")).unwrap(), Arc::default()).unwrap();
        let insert = Statement::new("INSERT INTO t (c, a, b, d) VALUES ($3, $1, $2 + $2, $4)")
            .bind("text")
            .bind(21i64)
            .bind(true)
            .bind(None::<String>);

        // Act
        let changed = committer.write(vec![insert]).await.unwrap();
        let missing =
            committer.write(vec![Statement::new("UPDATE t SET b = 0 WHERE a = $1").bind("nope").must_change()]).await;

        // Assert
        assert_eq!(changed, [1]);
        assert!(matches!(missing, Err(DbError::NotFound)));
        let row: (String, i64, i64, Option<String>) = reader
            .query_row("SELECT a, b, c, d FROM t", [], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
            .unwrap();
        assert_eq!(row, ("text".to_owned(), 42, 1, None));
    }
}
