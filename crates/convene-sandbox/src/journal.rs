//! The world on disk: a snapshot, and a journal of the changes since.
//!
//! The snapshot is the whole world as JSON, in the file the world has always had (`sandbox.json`), so a world an
//! older Convene wrote is simply the first snapshot. Each change appends one line to the journal beside it
//! (`sandbox.json.journal`) holding the new state of what the change touched (a group, a person, a number's limits,
//! a message, the generator), so a change costs what it touched, not what the world holds.
//!
//! A writer thread appends the lines of every change waiting and syncs them with one `fdatasync` (group commit);
//! a change's caller awaits its line being on disk, so the async runtime never waits on the disk. When the journal
//! has grown past the snapshot, the writer replaces the snapshot (temporary file, sync, rename) and starts the journal
//! afresh: each line is rewritten about once, so the work per change stays constant on average.
//!
//! Entries carry increasing sequence numbers and the snapshot the last one it includes, so a crash between
//! replacing the snapshot and emptying the journal replays nothing twice. A crash in the middle of an append leaves
//! at most a torn last line, which was never acknowledged and is cut off on the next start.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;

use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::SandboxError;
use crate::world::{Change, World};

/// The journal never triggers a new snapshot below this size, so that a small world is not rewritten every few
/// changes.
const MIN_JOURNAL_BYTES: u64 = 4 << 20;

#[derive(Serialize, Deserialize)]
struct Entry {
    seq: u64,
    change: Change,
}

pub(crate) struct Journal {
    shared: Arc<Shared>,
    durable: watch::Receiver<Durable>,
    writer: Option<JoinHandle<()>>,
    /// The last sequence number handed out.
    seq: u64,
    /// Bytes queued since the last snapshot was asked for.
    since_snapshot: u64,
}

struct Shared {
    queue: Mutex<Queue>,
    wake: Condvar,
    /// Size of the snapshot on disk, which the journal may grow to before the next one.
    snapshot_bytes: AtomicU64,
}

#[derive(Default)]
struct Queue {
    /// Lines not written yet, in order.
    lines: Vec<u8>,
    /// The sequence number of the last of them.
    last_seq: u64,
    snapshot: Option<PendingSnapshot>,
    closed: bool,
}

/// A copy of the world to write as the new snapshot, once the first `at` bytes of the queued lines are in the old
/// journal; the rest go to the new one.
struct PendingSnapshot {
    world: Box<World>,
    at: usize,
    /// The sequence number of the last line before `at`.
    seq: u64,
}

/// How far the journal is on disk, or why it stopped.
#[derive(Clone, Debug, Default)]
struct Durable {
    seq: u64,
    failed: Option<String>,
}

/// What to await for a change to be on disk.
pub(crate) struct Durability {
    durable: watch::Receiver<Durable>,
    seq: u64,
}

impl Durability {
    pub async fn wait(mut self) -> Result<(), SandboxError> {
        let seq = self.seq;
        let durable = self
            .durable
            .wait_for(|d| d.seq >= seq || d.failed.is_some())
            .await
            .map_err(|_| SandboxError::Io("the journal writer stopped".into()))?;
        if durable.seq >= seq {
            return Ok(());
        }
        Err(SandboxError::Io(durable.failed.clone().unwrap_or_default()))
    }
}

fn journal_path(snapshot: &Path) -> PathBuf {
    let mut name = snapshot.file_name().unwrap_or_default().to_os_string();
    name.push(".journal");
    snapshot.with_file_name(name)
}

fn io_error(path: &Path, e: &dyn std::fmt::Display) -> SandboxError {
    SandboxError::Io(format!("{}: {e}", path.display()))
}

fn lock(queue: &Mutex<Queue>) -> MutexGuard<'_, Queue> {
    queue.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Journal {
    /// Loads the world from the snapshot at `path` and the journal beside it (or starts `fresh` when there is no
    /// snapshot, writing it at once so that a bad path fails now), and starts the writer.
    pub fn open(
        path: &Path,
        inbox_limit: usize,
        fresh: impl FnOnce() -> World,
    ) -> Result<(World, Journal), SandboxError> {
        let journal = journal_path(path);
        let (mut world, snapshot_bytes) = if path.exists() {
            let bytes = fs::read(path).map_err(|e| io_error(path, &e))?;
            (World::from_json(&bytes).map_err(|e| io_error(path, &e))?, bytes.len() as u64)
        } else {
            // A journal without its snapshot (someone deleted the world to start afresh) belongs to no world.
            if journal.exists() {
                fs::remove_file(&journal).map_err(|e| io_error(&journal, &e))?;
            }
            let world = fresh();
            let written = write_snapshot(path, &world).map_err(|e| io_error(path, &e))?;
            (world, written)
        };
        let mut file =
            OpenOptions::new().create(true).append(true).open(&journal).map_err(|e| io_error(&journal, &e))?;
        let replayed = replay(&journal, &mut file, &mut world, inbox_limit)?;
        let (snapshot_bytes, since_snapshot) = if replayed > snapshot_bytes.max(MIN_JOURNAL_BYTES) {
            // A long journal is folded into a new snapshot now rather than replayed again on every start.
            let written = write_snapshot(path, &world).map_err(|e| io_error(path, &e))?;
            file.set_len(0).and_then(|()| file.sync_data()).map_err(|e| io_error(&journal, &e))?;
            (written, 0)
        } else {
            (snapshot_bytes, replayed)
        };

        let shared = Arc::new(Shared {
            queue: Mutex::new(Queue { last_seq: world.seq, ..Queue::default() }),
            wake: Condvar::new(),
            snapshot_bytes: AtomicU64::new(snapshot_bytes),
        });
        let (tx, durable) = watch::channel(Durable { seq: world.seq, failed: None });
        let writer = {
            let shared = Arc::clone(&shared);
            let (snapshot_path, journal_path) = (path.to_owned(), journal.clone());
            std::thread::Builder::new()
                .name("sandbox-journal".into())
                .spawn(move || write_loop(&shared, file, &snapshot_path, &journal_path, &tx))
                .map_err(|e| io_error(&journal, &e))?
        };
        let seq = world.seq;
        Ok((world, Journal { shared, durable, writer: Some(writer), seq, since_snapshot }))
    }

    /// Refuses every change once a write has failed: the world in memory is then ahead of the disk.
    pub fn check(&self) -> Result<(), SandboxError> {
        match &self.durable.borrow().failed {
            Some(e) => Err(SandboxError::Io(format!("the sandbox stopped taking changes: {e}"))),
            None => Ok(()),
        }
    }

    /// Queues `changes` for the writer, and asks for a new snapshot when the journal has outgrown the last. The
    /// returned [`Durability`] resolves once everything queued so far, these changes included, is on disk.
    pub fn append(&mut self, world: &mut World, changes: Vec<Change>) -> Result<Durability, SandboxError> {
        let mut queue = lock(&self.shared.queue);
        let before = queue.lines.len();
        for change in changes {
            self.seq += 1;
            let entry = Entry { seq: self.seq, change };
            serde_json::to_writer(&mut queue.lines, &entry).map_err(|e| SandboxError::Io(e.to_string()))?;
            queue.lines.push(b'\n');
        }
        world.seq = self.seq;
        queue.last_seq = self.seq;
        self.since_snapshot += (queue.lines.len() - before) as u64;
        let limit = self.shared.snapshot_bytes.load(Ordering::Relaxed).max(MIN_JOURNAL_BYTES);
        if self.since_snapshot > limit && queue.snapshot.is_none() {
            // Copying the world here is cheaper than encoding it, which the writer does off the lock.
            let (at, seq) = (queue.lines.len(), self.seq);
            queue.snapshot = Some(PendingSnapshot { world: Box::new(world.clone()), at, seq });
            self.since_snapshot = 0;
        }
        if queue.lines.len() > before || queue.snapshot.is_some() {
            self.shared.wake.notify_one();
        }
        Ok(Durability { durable: self.durable.clone(), seq: self.seq })
    }
}

impl Drop for Journal {
    /// Writes what is queued, then stops the writer.
    fn drop(&mut self) {
        lock(&self.shared.queue).closed = true;
        self.shared.wake.notify_one();
        if let Some(writer) = self.writer.take() {
            let _ = writer.join();
        }
    }
}

/// Replays the journal's entries that follow the snapshot onto `world`, cutting off a torn last line. Returns the
/// journal's size.
fn replay(path: &Path, file: &mut File, world: &mut World, inbox_limit: usize) -> Result<u64, SandboxError> {
    let bytes = fs::read(path).map_err(|e| io_error(path, &e))?;
    let mut good = 0;
    let mut lines = bytes.split_inclusive(|b| *b == b'\n').peekable();
    while let Some(line) = lines.next() {
        // Only the last line can be torn by a crash (split_inclusive leaves only it without a newline), and it was
        // never acknowledged.
        let last = lines.peek().is_none();
        if !line.ends_with(b"\n") {
            break;
        }
        let entry = match convene_core::phone::reading_stored(|| serde_json::from_slice::<Entry>(line)) {
            Ok(entry) => entry,
            Err(_) if last => break,
            Err(e) => return Err(io_error(path, &format!("entry at byte {good} is damaged: {e}"))),
        };
        good += line.len();
        if entry.seq > world.seq {
            world.apply(entry.change, inbox_limit);
            world.seq = entry.seq;
        }
    }
    if good < bytes.len() {
        tracing::warn!(path = %path.display(), bytes = bytes.len() - good, "cutting off a torn last journal entry");
        file.set_len(good as u64).and_then(|()| file.sync_data()).map_err(|e| io_error(path, &e))?;
    }
    Ok(good as u64)
}

fn write_loop(shared: &Shared, mut file: File, snapshot: &Path, journal: &Path, tx: &watch::Sender<Durable>) {
    loop {
        let (lines, last_seq, pending) = {
            let mut queue = lock(&shared.queue);
            while queue.lines.is_empty() && queue.snapshot.is_none() && !queue.closed {
                queue = shared.wake.wait(queue).unwrap_or_else(PoisonError::into_inner);
            }
            if queue.lines.is_empty() && queue.snapshot.is_none() {
                return;
            }
            (std::mem::take(&mut queue.lines), queue.last_seq, queue.snapshot.take())
        };
        let written = match pending {
            None => file.write_all(&lines).and_then(|()| file.sync_data()).map_err(|e| io_error(journal, &e)),
            Some(pending) => {
                let (old, new) = lines.split_at(pending.at);
                file.write_all(old).and_then(|()| file.sync_data()).map_err(|e| io_error(journal, &e)).and_then(|()| {
                    // The lines before the snapshot are on disk whatever becomes of the snapshot.
                    tx.send_modify(|d| d.seq = pending.seq);
                    let bytes = write_snapshot(snapshot, &pending.world).map_err(|e| io_error(snapshot, &e))?;
                    shared.snapshot_bytes.store(bytes, Ordering::Relaxed);
                    file.set_len(0)
                        .and_then(|()| file.write_all(new))
                        .and_then(|()| file.sync_data())
                        .map_err(|e| io_error(journal, &e))
                })
            }
        };
        match written {
            Ok(()) => tx.send_modify(|d| d.seq = last_seq),
            Err(e) => {
                tracing::error!(error = %e, "the sandbox could not write its journal and stops taking changes");
                tx.send_modify(|d| d.failed = Some(e.to_string()));
                return;
            }
        }
    }
}

/// Temp file in the same directory, fsync, rename over the old file, fsync the directory: after a crash the file
/// holds either the old world or the new one, never a torn mix. Returns the size written.
fn write_snapshot(path: &Path, world: &World) -> std::io::Result<u64> {
    let bytes = serde_json::to_vec(world).map_err(std::io::Error::other)?;
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    fs::create_dir_all(dir)?;
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp"));
    let mut file = File::create(&tmp)?;
    file.write_all(&bytes)?;
    file.sync_all()?;
    drop(file);
    fs::rename(&tmp, path)?;
    #[cfg(unix)]
    File::open(dir)?.sync_all()?;
    Ok(bytes.len() as u64)
}
