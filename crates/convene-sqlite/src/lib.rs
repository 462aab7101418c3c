//! What Convene's database and the sandbox's share about their SQLite files: both are in WAL mode with one writer,
//! and both copy the WAL into the database file (checkpoint) on a thread and connection of their own rather than in
//! the writer's commits.
//!
//! SQLite by itself runs a checkpoint in whichever commit fills the WAL past 1,000 pages. That checkpoint copies
//! pages into the database file and syncs twice, and every change waiting on that commit waits for it too: it was
//! 13% of Convene's committer thread's samples (perf, convene-bench's creation over 16 numbers) and 15% of the
//! sandbox's commits.
#![forbid(unsafe_code)]

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::Duration;

use rusqlite::Connection;

/// How often the checkpointer copies what was committed meanwhile into the database file: often enough that the WAL
/// stays small (readers look pages up in it, and it stays within `WAL_KEPT_BYTES` under load) without a checkpoint's
/// two syncs for every few commits.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(100);

/// The WAL's size in pages past which the writer checkpoints by itself, should the checkpointer fall behind: about
/// 40 MiB.
pub const WRITER_CHECKPOINTS_PAST: i64 = 10_000;

/// The size in bytes the WAL file is cut back to when SQLite starts it over, should it have grown past it (64 MiB,
/// past the backstop's 40): a WAL that once grew further does not keep it. Below it the file is reused as it is:
/// commits then overwrite blocks the file already has, and their syncs write no new length or block map. Cut back
/// at 16 MiB, the WAL of creation under load (about 150 MiB/s with checkpoints every 250 ms) was truncated at nearly
/// every restart, 4 ms each on the committer's thread, and grown again block by block.
pub const WAL_KEPT_BYTES: i64 = 64 << 20;

/// Sets the writer's connection to leave checkpoints to a [`Checkpointer`], keeping its own as a backstop.
pub fn leave_checkpoints_to_checkpointer(writer: &Connection) -> rusqlite::Result<()> {
    writer.pragma_update(None, "wal_autocheckpoint", WRITER_CHECKPOINTS_PAST)?;
    writer.pragma_update(None, "journal_size_limit", WAL_KEPT_BYTES)
}

/// A connection for a [`Checkpointer`] to the database at `path`. A checkpoint syncs the WAL and then the database
/// file when its connection's `synchronous` says so: give the writer's.
pub fn checkpointer_connection(path: &Path, synchronous: &str) -> rusqlite::Result<Connection> {
    let connection = Connection::open(path)?;
    connection.pragma_update(None, "synchronous", synchronous)?;
    Ok(connection)
}

/// The thread that checkpoints a WAL while its writer commits. Stopped when dropped: it waits for the checkpoint
/// under way, if any, so that the thread's connection is closed before its owner lets the files go (a connection
/// closed later, as the last on the file, would checkpoint and delete the WAL by its name, which a new database at
/// that path may use by then).
#[derive(Debug)]
pub struct Checkpointer {
    /// Dropped to stop the thread.
    stop: Option<mpsc::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Checkpointer {
    /// Starts a thread named `name` that checkpoints on `connection` while `commits` (the writer's count of its
    /// commits) grows.
    pub fn start(name: &str, connection: Connection, commits: Arc<AtomicU64>) -> std::io::Result<Self> {
        let (stop, stopped) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name(name.to_owned())
            .spawn(move || checkpoint_while_committing(&connection, &stopped, &commits))?;
        Ok(Self { stop: Some(stop), thread: Some(thread) })
    }

    /// Stops the thread and closes its connection, waiting for a checkpoint under way.
    pub fn stop(self) {
        drop(self);
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Every `CHECKPOINT_EVERY` in which something was committed, or after a checkpoint that could not copy everything,
/// copies into the database file what readers no longer need in the WAL. A passive checkpoint waits for no one: the
/// writer goes on writing at the WAL's end meanwhile, and SQLite starts the WAL over at the next commit once all of it
/// is copied and unread.
fn checkpoint_while_committing(connection: &Connection, stopped: &mpsc::Receiver<()>, commits: &AtomicU64) {
    let mut copied_up_to = 0;
    while let Err(RecvTimeoutError::Timeout) = stopped.recv_timeout(CHECKPOINT_EVERY) {
        let committed = commits.load(Ordering::Relaxed);
        if committed == copied_up_to {
            continue;
        }
        // The row says whether another checkpoint held the WAL (the writer's own, past `WRITER_CHECKPOINTS_PAST`),
        // the WAL's frames, and how many are copied: fewer while a reader still reads an older state. Until all are
        // copied, the next turn tries again, commits or not.
        let checkpoint = connection.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |row| {
            Ok((row.get::<_, i64>(0)?, row.get::<_, i64>(1)?, row.get::<_, i64>(2)?))
        });
        match checkpoint {
            Ok((0, frames, copied)) if frames == copied => copied_up_to = committed,
            Ok(_) => {}
            Err(e) => tracing::debug!(error = %e, "checkpoint not made"),
        }
    }
}

/// For tests of the files these settings are for.
pub mod testing {
    use std::path::Path;
    use std::time::Duration;

    use rusqlite::Connection;

    /// The number of rows of `table` in the database file at `path` alone (`immutable` ignores the WAL), read until
    /// there are at least `rows` or `wait` has passed: whether commits reached the file. No table yet in the file is
    /// no row.
    pub fn rows_in_database_file_within(path: &Path, table: &str, rows: i64, wait: Duration) -> i64 {
        let in_file = || {
            let uri = format!("file:{}?immutable=1", path.display());
            let flags = rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_URI;
            Connection::open_with_flags(uri, flags)
                .and_then(|file| file.query_row(&format!("SELECT count(*) FROM {table}"), [], |row| row.get(0)))
                .unwrap_or(0)
        };
        let deadline = std::time::Instant::now() + wait;
        let mut found = in_file();
        while found < rows && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
            found = in_file();
        }
        found
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dropped_checkpointer_has_ended_its_thread_and_closed_its_connection_when_the_drop_returns() {
        // Arrange: a checkpointer in the middle of its work (commits it has not copied yet).
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.db");
        let writer = Connection::open(&path).unwrap();
        writer.pragma_update(None, "journal_mode", "WAL").unwrap();
        writer.execute_batch("CREATE TABLE t (x INTEGER); INSERT INTO t VALUES (1);").unwrap();
        let commits = Arc::new(AtomicU64::new(1));
        let checkpointer = Checkpointer::start(
            "test-checkpointer",
            checkpointer_connection(&path, "FULL").unwrap(),
            Arc::clone(&commits),
        )
        .unwrap();
        std::thread::sleep(CHECKPOINT_EVERY * 2);

        // Act
        drop(checkpointer);

        // Assert: the thread held the count, and its connection, until it ended.
        assert_eq!(Arc::strong_count(&commits), 1, "the thread is gone");
    }
}
