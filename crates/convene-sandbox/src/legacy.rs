//! World files of an older Convene, read once to be imported into the sandbox's database.
//!
//! Before the database, the world was a snapshot (`sandbox.json`, the whole world as JSON; before that, the only
//! file) and a journal beside it (`sandbox.json.journal`), one JSON line per change holding the new state of what it
//! touched, with increasing sequence numbers; the snapshot names the last one it includes. A crash in the middle
//! of an append left at most a torn last line, which was never acknowledged and is skipped.

use std::fs;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::SandboxError;
use crate::world::{Change, World};

#[derive(Deserialize)]
struct Entry {
    seq: u64,
    change: Change,
}

pub(crate) fn journal_path(snapshot: &Path) -> PathBuf {
    let mut name = snapshot.file_name().unwrap_or_default().to_os_string();
    name.push(".journal");
    snapshot.with_file_name(name)
}

fn io_error(path: &Path, e: &dyn std::fmt::Display) -> SandboxError {
    SandboxError::Io(format!("{}: {e}", path.display()))
}

/// The world in the snapshot at `path` and the journal beside it, or `None` when there is no snapshot (a journal
/// without its snapshot belongs to no world).
pub(crate) fn read(path: &Path, inbox_limit: usize) -> Result<Option<World>, SandboxError> {
    if !path.exists() {
        return Ok(None);
    }
    let bytes = fs::read(path).map_err(|e| io_error(path, &e))?;
    let mut world = World::from_json(&bytes).map_err(|e| io_error(path, &e))?;
    let journal = journal_path(path);
    if journal.exists() {
        replay(&journal, &mut world, inbox_limit)?;
    }
    Ok(Some(world))
}

/// Replays the journal's entries that follow the snapshot onto `world`, skipping a torn last line.
fn replay(path: &Path, world: &mut World, inbox_limit: usize) -> Result<(), SandboxError> {
    let bytes = fs::read(path).map_err(|e| io_error(path, &e))?;
    let mut at = 0;
    let mut lines = bytes.split_inclusive(|b| *b == b'\n').peekable();
    while let Some(line) = lines.next() {
        // Only the last line can be torn by a crash (split_inclusive leaves only it without a newline).
        let last = lines.peek().is_none();
        if !line.ends_with(b"\n") {
            break;
        }
        let entry = match convene_core::phone::reading_stored(|| serde_json::from_slice::<Entry>(line)) {
            Ok(entry) => entry,
            Err(_) if last => break,
            Err(e) => return Err(io_error(path, &format!("entry at byte {at} is damaged: {e}"))),
        };
        at += line.len();
        if entry.seq > world.seq {
            world.apply(entry.change, inbox_limit);
            world.seq = entry.seq;
        }
    }
    Ok(())
}

/// Keeps an imported world's files as a backup, under names no later start reads.
pub(crate) fn set_aside(path: &Path) -> Result<(), SandboxError> {
    for file in [path.to_owned(), journal_path(path)] {
        if file.exists() {
            let mut name = file.file_name().unwrap_or_default().to_os_string();
            name.push(".imported");
            fs::rename(&file, file.with_file_name(name)).map_err(|e| io_error(&file, &e))?;
        }
    }
    Ok(())
}
