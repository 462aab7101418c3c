//! One `convene serve` at a time on a data directory and on a SQLite database. A second one would write behind the
//! first one's back: the sandbox world's journal, device keys, and (SQLite) the groups the first one keeps in memory
//! because it writes them all. `convene migrate` takes the same locks, so a schema is not changed under a running
//! server. The data directory's lock also keeps its node id (`cluster`) this process's own. The locks are the operating
//! system's (`flock`): the kernel lets them go when the process ends, even by
//! `kill -9`, so a crash never leaves the gateway locked out.

use std::fs::File;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use convene_server::Config;

/// Takes the data directory (`<data_dir>/serve.lock`) and, on SQLite, the database (`<file>.lock` beside it) for
/// the rest of this process's life (its background tasks may still write after the server stops), or says what
/// holds them.
pub fn hold_until_exit(config: &Config) -> anyhow::Result<()> {
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("creating the data directory {}", config.data_dir.display()))?;
    let mut files =
        vec![lock(&config.data_dir.join("serve.lock"), &format!("data directory {}", config.data_dir.display()))?];
    if let Some(database) = convene_store::sqlite_file(&config.database_url) {
        files.push(lock(&lock_beside(&database)?, &format!("SQLite database {}", database.display()))?);
    }
    // Never closed: closing a file lets its lock go.
    std::mem::forget(files);
    Ok(())
}

/// `<file>.lock` in the file's directory, named by its real path so that two spellings of one database (a symlinked
/// directory, `./`) take one lock.
fn lock_beside(file: &Path) -> anyhow::Result<PathBuf> {
    let dir = file.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let dir = std::fs::canonicalize(dir).with_context(|| format!("resolving {}", dir.display()))?;
    let mut name = file.file_name().unwrap_or_default().to_os_string();
    name.push(".lock");
    Ok(dir.join(name))
}

/// Locks `path` (created if missing) for this process; `what` is what it guards, for the error.
fn lock(path: &Path, what: &str) -> anyhow::Result<File> {
    let file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .with_context(|| format!("opening the lock file {}", path.display()))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => anyhow::bail!(
            "another convene process (`serve` or `migrate`) is running on the {what} (it holds {}): one server per \
             data directory and per SQLite database; stop it first, or give this one its own data_dir and \
             database_url (several servers share one PostgreSQL database, not a SQLite file: docs/deployment.md)",
            path.display()
        ),
        Err(std::fs::TryLockError::Error(e)) => Err(e).with_context(|| format!("locking {}", path.display())),
    }
}
