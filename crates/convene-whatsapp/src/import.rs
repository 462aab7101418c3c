//! Device keys that earlier versions kept in a SQLite file per number (`<data_dir>/<id>.db`, whatsapp-rust's
//! `SqliteStore`), copied into Convene's database on the number's first start, so that a paired number stays paired
//! across the upgrade. The file is then renamed `<id>.db.imported` (with its `-wal` and `-shm`) and kept as a backup
//! until the instance is deleted. The device is written last, so an import cut short (a crash) has written no device
//! and runs again from the start at the next one; a file found beside a device in the database (a backup restored
//! into the data directory, say) is never imported over it: it is left where it is, with a warning.
//!
//! A row of the old file that the library cannot read is left behind with a warning rather than holding the number
//! back: the library renegotiates what is missing.
//!
//! The library's storage has no way to list most of what it keeps, so the old file's keys are listed with rusqlite
//! (read only); every value is read through the library's own `SqliteStore`, so its encoding stays the library's.
//!
//! Copied: the device, identities, sessions, pre-keys, signed pre-keys, sender keys, app-state keys, versions and
//! MACs, LID mappings, device lists and trusted-contact tokens. Left behind, as caches the library rebuilds: which
//! devices hold our sender keys (they get fresh ones), group metadata, base keys, sent messages kept for retries,
//! buffered inbound messages and message secrets (Convene sends no messages whose replies they decrypt).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use whatsapp_rust::store::SqliteStore;
use whatsapp_rust::wacore::appstate::processor::AppStateMutationMAC;
use whatsapp_rust::wacore::store::traits::{AppSyncStore, DeviceStore, ProtocolStore, SignalStore};

use crate::keys::DeviceKeys;

/// What an imported file is renamed to.
pub(crate) fn imported_name(file: &Path) -> PathBuf {
    let mut name = file.as_os_str().to_owned();
    name.push(".imported");
    PathBuf::from(name)
}

/// SQLite's files beside a database: the database itself, then its side files.
pub(crate) fn with_side_files(file: &Path) -> [PathBuf; 4] {
    ["", "-wal", "-shm", "-journal"].map(|suffix| {
        let mut path = file.as_os_str().to_owned();
        path.push(suffix);
        PathBuf::from(path)
    })
}

/// The old file's keys, listed.
#[derive(Default)]
struct Listing {
    identities: Vec<String>,
    sessions: Vec<String>,
    prekeys: Vec<(u32, bool)>,
    sender_keys: Vec<String>,
    sync_keys: Vec<Vec<u8>>,
    versions: Vec<String>,
    macs: Vec<(String, Vec<u8>)>,
    device_lists: Vec<String>,
}

fn list(file: &Path) -> rusqlite::Result<Listing> {
    let db = rusqlite::Connection::open_with_flags(file, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    let texts =
        |sql: &str| -> rusqlite::Result<Vec<String>> { db.prepare(sql)?.query_map([], |row| row.get(0))?.collect() };
    Ok(Listing {
        identities: texts("SELECT DISTINCT address FROM identities")?,
        sessions: texts("SELECT DISTINCT address FROM sessions")?,
        prekeys: db
            .prepare("SELECT id, uploaded FROM prekeys")?
            .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))?
            .collect::<rusqlite::Result<_>>()?,
        sender_keys: texts("SELECT DISTINCT address FROM sender_keys")?,
        sync_keys: db
            .prepare("SELECT DISTINCT key_id FROM app_state_keys")?
            .query_map([], |row| row.get(0))?
            .collect::<rusqlite::Result<_>>()?,
        versions: texts("SELECT DISTINCT name FROM app_state_versions")?,
        macs: db
            .prepare("SELECT DISTINCT name, index_mac FROM app_state_mutation_macs")?
            .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))?
            .collect::<rusqlite::Result<_>>()?,
        device_lists: texts("SELECT DISTINCT user_id FROM device_registry")?,
    })
}

/// Copies `file`'s device into `keys` and renames the file; `Ok(false)` when there is no file.
pub(crate) async fn import(file: &Path, keys: &DeviceKeys) -> Result<bool, String> {
    if !file.exists() {
        return Ok(false);
    }
    let failed = |what: &str, e: &dyn std::fmt::Display| format!("importing {} ({what}): {e}", file.display());
    if keys.exists().await.map_err(|e| failed("looking for keys already imported", &e))? {
        tracing::warn!(
            file = %file.display(),
            "the database already holds this number's device keys: the file is left as it is, not imported over them"
        );
        return Ok(false);
    }
    let old = SqliteStore::new(&file.to_string_lossy()).await.map_err(|e| failed("opening it", &e))?;
    if let Some(device) = old.load().await.map_err(|e| failed("the device", &e))? {
        copy(&old, file, keys).await?;
        // The device last: a device in the database is what says the number is linked.
        keys.save(&device).await.map_err(|e| failed("writing the device", &e))?;
    }
    drop(old);
    for (from, to) in with_side_files(file).iter().zip(with_side_files(&imported_name(file))) {
        match std::fs::rename(from, &to) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(failed("renaming it", &e)),
        }
    }
    // The renames survive a power cut, so that the file is not found again beside its imported keys.
    if let Some(dir) = file.parent() {
        std::fs::File::open(dir).and_then(|dir| dir.sync_all()).map_err(|e| failed("syncing its directory", &e))?;
    }
    tracing::info!(file = %file.display(), "imported a number's device keys into the database");
    Ok(true)
}

/// A value read from the old file, or `None` with a warning when the library cannot read it.
fn readable<T, E: std::fmt::Display, K: std::fmt::Debug + ?Sized>(
    file: &Path,
    what: &str,
    key: &K,
    read: Result<Option<T>, E>,
) -> Option<T> {
    read.unwrap_or_else(|e| {
        tracing::warn!(file = %file.display(), "left behind {what} {key:?} that cannot be read: {e}");
        None
    })
}

async fn copy(old: &SqliteStore, file: &Path, keys: &DeviceKeys) -> Result<(), String> {
    let failed = |what: &str, e: &dyn std::fmt::Display| format!("importing {} ({what}): {e}", file.display());
    let listing = {
        let file = file.to_owned();
        tokio::task::spawn_blocking(move || list(&file)).await.map_err(|e| failed("listing it", &e))?
    }
    .map_err(|e| failed("listing it", &e))?;

    let mut identities = Vec::new();
    for address in &listing.identities {
        if let Some(key) = readable(file, "an identity", address, old.load_identity(address).await) {
            identities.push((Arc::<str>::from(address.as_str()), key));
        }
    }
    keys.put_identities_batch(&identities).await.map_err(|e| failed("writing identities", &e))?;

    let mut sessions = Vec::new();
    for address in &listing.sessions {
        if let Some(session) = readable(file, "a session", address, old.get_session(address).await) {
            sessions.push((Arc::<str>::from(address.as_str()), session));
        }
    }
    keys.put_sessions_batch(&sessions).await.map_err(|e| failed("writing sessions", &e))?;

    for uploaded in [false, true] {
        let ids: Vec<u32> = listing.prekeys.iter().filter(|(_, u)| *u == uploaded).map(|(id, _)| *id).collect();
        let records = old.load_prekeys_batch(&ids).await.map_err(|e| failed("pre-keys", &e))?;
        keys.store_prekeys_batch(&records, uploaded).await.map_err(|e| failed("writing pre-keys", &e))?;
    }
    for (id, record) in old.load_all_signed_prekeys().await.map_err(|e| failed("signed pre-keys", &e))? {
        keys.store_signed_prekey(id, &record).await.map_err(|e| failed("writing a signed pre-key", &e))?;
    }

    let mut sender_keys = Vec::new();
    for address in &listing.sender_keys {
        if let Some(record) = readable(file, "a sender key", address, old.get_sender_key(address).await) {
            sender_keys.push((Arc::<str>::from(address.as_str()), record.into()));
        }
    }
    keys.put_sender_keys_batch(&sender_keys).await.map_err(|e| failed("writing sender keys", &e))?;

    // The latest app-state key last, so that it is the latest here too.
    let latest = old.get_latest_sync_key_id().await.map_err(|e| failed("the latest app-state key", &e))?;
    let mut sync_keys = listing.sync_keys.clone();
    sync_keys.sort_by_key(|id| Some(id) == latest.as_ref());
    for id in &sync_keys {
        if let Some(key) = readable(file, "an app-state key", id, old.get_sync_key(id).await) {
            keys.set_sync_key(id, key).await.map_err(|e| failed("writing an app-state key", &e))?;
        }
    }
    for name in &listing.versions {
        if let Some(version) = readable(file, "an app-state version", name, old.get_version(name).await.map(Some)) {
            keys.set_version(name, version).await.map_err(|e| failed("writing an app-state version", &e))?;
        }
    }
    // One write per collection.
    let mut macs: std::collections::BTreeMap<&str, Vec<AppStateMutationMAC>> = Default::default();
    for (name, index_mac) in &listing.macs {
        if let Some(value_mac) = readable(file, "a MAC", index_mac, old.get_mutation_mac(name, index_mac).await) {
            macs.entry(name).or_default().push(AppStateMutationMAC { index_mac: index_mac.clone(), value_mac });
        }
    }
    for (name, macs) in macs {
        keys.put_mutation_macs(name, 0, &macs).await.map_err(|e| failed("writing MACs", &e))?;
    }

    // Oldest first: where two LIDs claim one number, the newest is the one it keeps, as the old file answered.
    let mut mappings = old.get_all_lid_mappings().await.map_err(|e| failed("LID mappings", &e))?;
    mappings.sort_by_key(|mapping| mapping.updated_at);
    keys.put_lid_mappings(&mappings).await.map_err(|e| failed("writing LID mappings", &e))?;
    let mut device_lists = Vec::new();
    for user in &listing.device_lists {
        if let Some(record) = readable(file, "a device list", user, old.get_devices(user).await) {
            device_lists.push(record);
        }
    }
    keys.update_device_lists(device_lists).await.map_err(|e| failed("writing device lists", &e))?;
    for jid in old.get_all_tc_token_jids().await.map_err(|e| failed("contact tokens", &e))? {
        if let Some(token) = readable(file, "a contact token", &jid, old.get_tc_token(&jid).await) {
            keys.put_tc_token(&jid, &token).await.map_err(|e| failed("writing a contact token", &e))?;
        }
    }
    Ok(())
}
