//! Group commit for SQLite: every write the store makes goes to one committer task, which runs all the writes
//! waiting at that moment in one transaction, each inside its own savepoint, and commits them with one sync.
//!
//! SQLite has one writer at a time and, with `synchronous = FULL`, each commit waits for the disk. Committed one by
//! one, concurrent creations queue for the write lock and pay a sync each; committed together, they share it, as the
//! webhook dispatcher already does with its attempts. A caller's statements still take effect all together or not at
//! all (its savepoint), a failed one does not undo another caller's, and no caller hears success before the commit
//! that holds its writes has returned.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use convene_core::DbError;
use convene_core::store::DbResult;
use sqlx::sqlite::SqlitePool;
use sqlx::{Connection as _, Sqlite, SqliteConnection};
use tokio::sync::{mpsc, oneshot};

use crate::error::db_err;
use crate::group_cache::GroupCache;
use crate::sql::Statement;

/// Most callers' writes in one transaction, so that a long queue does not hold the write lock for long.
const MOST_PER_COMMIT: usize = 256;

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

/// Where the committer writes: a connection of its own, or one from the pool (an in-memory database, which a
/// connection of its own would not see).
enum Writer {
    Own(SqliteConnection),
    Pool(SqlitePool),
}

impl Committer {
    /// A committer on a connection of the pool, for each batch; it tells `groups` what it committed.
    pub(crate) fn start(pool: SqlitePool, groups: Arc<GroupCache>) -> Self {
        Self::spawn(Writer::Pool(pool), groups)
    }

    /// A committer on a connection of its own; it tells `groups` what it committed.
    pub(crate) fn start_on(connection: SqliteConnection, groups: Arc<GroupCache>) -> Self {
        Self::spawn(Writer::Own(connection), groups)
    }

    fn spawn(writer: Writer, groups: Arc<GroupCache>) -> Self {
        let (messages, queue) = mpsc::unbounded_channel();
        let committed = Arc::new(AtomicU64::new(0));
        tokio::spawn(serve(writer, queue, Arc::clone(&committed), groups));
        Self { messages, committed }
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

async fn serve(
    mut writer: Writer,
    mut queue: mpsc::UnboundedReceiver<Message>,
    committed: Arc<AtomicU64>,
    groups: Arc<GroupCache>,
) {
    let mut messages = Vec::new();
    let mut batch = Vec::new();
    while queue.recv_many(&mut messages, MOST_PER_COMMIT).await > 0 {
        for message in messages.drain(..) {
            match message {
                Message::Write(write) => batch.push(write),
                Message::Close(done) => {
                    commit_batch(&mut writer, &mut batch, &committed, &groups).await;
                    if let Writer::Own(connection) = writer {
                        let _ = connection.close().await;
                    }
                    let _ = done.send(());
                    return;
                }
            }
        }
        commit_batch(&mut writer, &mut batch, &committed, &groups).await;
    }
}

/// Commits the writes in `batch` together and answers each; leaves `batch` empty.
async fn commit_batch(writer: &mut Writer, batch: &mut Vec<Write>, committed: &AtomicU64, groups: &GroupCache) {
    if batch.is_empty() {
        return;
    }
    let changing_groups = groups.writing(batch.iter().flat_map(|write| &write.statements));
    let outcomes = match writer {
        Writer::Own(connection) => commit(connection, batch).await,
        Writer::Pool(pool) => match pool.acquire().await {
            Ok(mut connection) => commit(&mut connection, batch).await,
            Err(e) => {
                let e = db_err(e);
                batch.iter().map(|_| Err(copy(&e))).collect()
            }
        },
    };
    committed.fetch_add(1, Ordering::Relaxed);
    groups.written(changing_groups);
    for (write, outcome) in batch.drain(..).zip(outcomes) {
        let _ = write.done.send(outcome);
    }
}

/// Runs the batch in one transaction; each write's outcome, in order. When the transaction is lost (SQLite undoes a
/// whole transaction by itself after some errors, such as a full disk) or its commit fails, each write is tried
/// again in a transaction of its own, so that only the one that cannot be written fails.
///
/// Transactions are driven with plain `BEGIN`/`COMMIT`/`ROLLBACK` rather than sqlx's `Transaction`: after SQLite
/// has undone a transaction by itself, sqlx's own `ROLLBACK` fails and sqlx keeps counting the transaction as open,
/// refusing every later `BEGIN` on the connection. Here a failed `ROLLBACK` ("no transaction is active") is harmless.
async fn commit(connection: &mut SqliteConnection, batch: &[Write]) -> Vec<DbResult<Vec<u64>>> {
    if let [write] = batch {
        return vec![commit_alone(connection, write).await];
    }
    if let Err(e) = sqlx::raw_sql("BEGIN IMMEDIATE").execute(&mut *connection).await {
        let e = db_err(e);
        return batch.iter().map(|_| Err(copy(&e))).collect();
    }
    let mut outcomes = Vec::with_capacity(batch.len());
    for write in batch {
        match in_savepoint(connection, &write.statements).await {
            Ok(outcome) => outcomes.push(outcome),
            Err(_) => return one_by_one(connection, batch).await,
        }
    }
    match sqlx::raw_sql("COMMIT").execute(&mut *connection).await {
        Ok(_) => outcomes,
        Err(_) => one_by_one(connection, batch).await,
    }
}

/// Ends the lost transaction and writes each of the batch alone.
async fn one_by_one(connection: &mut SqliteConnection, batch: &[Write]) -> Vec<DbResult<Vec<u64>>> {
    rollback(connection).await;
    let mut outcomes = Vec::with_capacity(batch.len());
    for write in batch {
        outcomes.push(commit_alone(connection, write).await);
    }
    outcomes
}

/// One write in a transaction of its own: no savepoint is needed, the transaction is undone if it fails.
async fn commit_alone(connection: &mut SqliteConnection, write: &Write) -> DbResult<Vec<u64>> {
    sqlx::raw_sql("BEGIN IMMEDIATE").execute(&mut *connection).await.map_err(db_err)?;
    let committed = match run(connection, &write.statements).await {
        Ok(changed) => sqlx::raw_sql("COMMIT").execute(&mut *connection).await.map(|_| changed).map_err(db_err),
        Err(e) => Err(e),
    };
    if committed.is_err() {
        rollback(connection).await;
    }
    committed
}

/// Ends whatever is left of the transaction; SQLite may have ended it already.
async fn rollback(connection: &mut SqliteConnection) {
    let _ = sqlx::raw_sql("ROLLBACK").execute(&mut *connection).await;
}

/// One caller's statements inside a savepoint, rolled back to it if one fails. The outer error means the
/// transaction itself could not go on.
async fn in_savepoint(conn: &mut SqliteConnection, statements: &[Statement]) -> DbResult<DbResult<Vec<u64>>> {
    sqlx::raw_sql("SAVEPOINT caller").execute(&mut *conn).await.map_err(db_err)?;
    let outcome = run(conn, statements).await;
    if outcome.is_err() {
        sqlx::raw_sql("ROLLBACK TO caller").execute(&mut *conn).await.map_err(db_err)?;
    }
    sqlx::raw_sql("RELEASE caller").execute(&mut *conn).await.map_err(db_err)?;
    Ok(outcome)
}

/// Runs the statements in order, stopping at the first that fails (or, marked `must_change`, changes no row).
async fn run(conn: &mut SqliteConnection, statements: &[Statement]) -> DbResult<Vec<u64>> {
    let mut changed = Vec::with_capacity(statements.len());
    for statement in statements {
        let done = statement.query::<Sqlite>().execute(&mut *conn).await.map_err(db_err)?;
        if statement.must_change && done.rows_affected() == 0 {
            return Err(DbError::NotFound);
        }
        changed.push(done.rows_affected());
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
    use std::str::FromStr as _;

    use sqlx::ConnectOptions as _;
    use sqlx::sqlite::SqliteConnectOptions;

    use super::*;

    #[tokio::test]
    async fn a_full_database_fails_the_writes_that_do_not_fit_and_later_ones_still_commit() {
        // Arrange: a database that may not grow past 16 pages
        let dir = tempfile::tempdir().unwrap();
        let options = SqliteConnectOptions::from_str(&format!("sqlite://{}", dir.path().join("t.db").display()))
            .unwrap()
            .create_if_missing(true)
            .pragma("max_page_count", "16");
        let mut setup = options.clone().connect().await.unwrap();
        sqlx::raw_sql("CREATE TABLE t (x BLOB)").execute(&mut setup).await.unwrap();
        drop(setup);
        let committer = Committer::start_on(options.connect().await.unwrap(), Arc::default());
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
}
