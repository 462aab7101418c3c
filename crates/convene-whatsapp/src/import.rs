//! Device keys that earlier versions kept in a SQLite file per number (`<data_dir>/<id>.db`, whatsapp-rust's
//! `SqliteStore`), copied into Convene's database on the number's first start, so that a paired number stays paired
//! across the upgrade. The file is then renamed `<id>.db.imported` (with its `-wal` and `-shm`) and kept as a backup
//! until the instance is deleted. An import cut short (a crash) runs again from the start at the next one: every
//! write replaces what an earlier attempt wrote.
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
    tracing::info!(file = %file.display(), "imported a number's device keys into the database");
    Ok(true)
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
        if let Some(key) = old.load_identity(address).await.map_err(|e| failed("an identity", &e))? {
            identities.push((Arc::<str>::from(address.as_str()), key));
        }
    }
    keys.put_identities_batch(&identities).await.map_err(|e| failed("writing identities", &e))?;

    let mut sessions = Vec::new();
    for address in &listing.sessions {
        if let Some(session) = old.get_session(address).await.map_err(|e| failed("a session", &e))? {
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
        if let Some(record) = old.get_sender_key(address).await.map_err(|e| failed("a sender key", &e))? {
            sender_keys.push((Arc::<str>::from(address.as_str()), record.into()));
        }
    }
    keys.put_sender_keys_batch(&sender_keys).await.map_err(|e| failed("writing sender keys", &e))?;

    // The latest app-state key last, so that it is the latest here too.
    let latest = old.get_latest_sync_key_id().await.map_err(|e| failed("the latest app-state key", &e))?;
    let mut sync_keys = listing.sync_keys.clone();
    sync_keys.sort_by_key(|id| Some(id) == latest.as_ref());
    for id in &sync_keys {
        if let Some(key) = old.get_sync_key(id).await.map_err(|e| failed("an app-state key", &e))? {
            keys.set_sync_key(id, key).await.map_err(|e| failed("writing an app-state key", &e))?;
        }
    }
    for name in &listing.versions {
        let version = old.get_version(name).await.map_err(|e| failed("an app-state version", &e))?;
        keys.set_version(name, version).await.map_err(|e| failed("writing an app-state version", &e))?;
    }
    for (name, index_mac) in &listing.macs {
        if let Some(value_mac) = old.get_mutation_mac(name, index_mac).await.map_err(|e| failed("a MAC", &e))? {
            let mac = AppStateMutationMAC { index_mac: index_mac.to_vec(), value_mac };
            keys.put_mutation_macs(name, 0, &[mac]).await.map_err(|e| failed("writing a MAC", &e))?;
        }
    }

    let mappings = old.get_all_lid_mappings().await.map_err(|e| failed("LID mappings", &e))?;
    keys.put_lid_mappings(&mappings).await.map_err(|e| failed("writing LID mappings", &e))?;
    let mut device_lists = Vec::new();
    for user in &listing.device_lists {
        if let Some(record) = old.get_devices(user).await.map_err(|e| failed("a device list", &e))? {
            device_lists.push(record);
        }
    }
    keys.update_device_lists(device_lists).await.map_err(|e| failed("writing device lists", &e))?;
    for jid in old.get_all_tc_token_jids().await.map_err(|e| failed("contact tokens", &e))? {
        if let Some(token) = old.get_tc_token(&jid).await.map_err(|e| failed("a contact token", &e))? {
            keys.put_tc_token(&jid, &token).await.map_err(|e| failed("writing a contact token", &e))?;
        }
    }
    Ok(())
}
