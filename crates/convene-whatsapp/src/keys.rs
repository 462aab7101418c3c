//! whatsapp-rust's storage (`Backend`: device, Signal, app-state sync, protocol and message-secret stores) over
//! Convene's own database (`DeviceKeyStore`), one instance's rows at a time. Every value is sealed with the server's
//! key before it reaches the database and bound to its row, so a value copied to another row does not open there.
//!
//! Where the library asks for a read-modify-write to be atomic (taking a sent message, merging message secrets, the
//! trusted-contact tokens' newer-wins rules), `changing` makes them one at a time: an instance's keys are used by one
//! process at a time (its owner), so a lock in that process is enough.
//!
//! The behaviour each method must have is the library's in-memory backend's; `tests::contract` holds both to it.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use convene_core::{DbError, DeviceKeyRow, DeviceKeyStore, DeviceKeyWrite, InstanceId, SecretBox};
use serde::Serialize;
use serde::de::DeserializeOwned;
use whatsapp_rust::wacore::appstate::hash::HashState;
use whatsapp_rust::wacore::appstate::processor::AppStateMutationMAC;
use whatsapp_rust::wacore::store::Device;
use whatsapp_rust::wacore::store::error::{Result, StoreError};
use whatsapp_rust::wacore::store::traits::{
    AppStateSyncKey, AppSyncStore, DeviceListRecord, DeviceStore, LidPnMappingEntry, MsgSecretEntry, MsgSecretStore,
    PendingInboundKey, PendingInboundRow, ProtocolStore, SignalStore, TcTokenEntry, merge_msg_secret_expiry,
    merge_msg_secret_message_ts,
};

/// The spaces this backend keeps rows in. Renaming one loses what is stored under it.
mod space {
    pub const DEVICE: &str = "device";
    pub const IDENTITY: &str = "identity";
    pub const SESSION: &str = "session";
    /// Number: 1 once uploaded to WhatsApp.
    pub const PREKEY: &str = "prekey";
    pub const SIGNED_PREKEY: &str = "signed_prekey";
    pub const SENDER_KEY: &str = "sender_key";
    /// Number: the order keys were stored in (the latest is asked for).
    pub const SYNC_KEY: &str = "sync_key";
    pub const SYNC_VERSION: &str = "sync_version";
    /// Scope: the collection.
    pub const MUTATION_MAC: &str = "mutation_mac";
    /// Scope: the group; number: 1 when the device has our sender key.
    pub const SENDER_KEY_DEVICE: &str = "sender_key_device";
    pub const LID: &str = "lid";
    /// A phone number's LID.
    pub const PN: &str = "pn";
    /// Scope: the address.
    pub const BASE_KEY: &str = "base_key";
    pub const DEVICE_LIST: &str = "device_list";
    pub const GROUP_METADATA: &str = "group_metadata";
    pub const TC_TOKEN: &str = "tc_token";
    /// Scope: the chat; number: when it was stored (unix seconds).
    pub const SENT_MESSAGE: &str = "sent_message";
    /// Scope: the chat; number: when it was stored (unix seconds).
    pub const PENDING_INBOUND: &str = "pending_inbound";
    /// Scope: the chat; number: when it expires (unix seconds, 0 never).
    pub const MSG_SECRET: &str = "msg_secret";
}

/// Joins the parts of a key that the library gives separately; no JID or message id holds it.
const JOIN: char = '\u{1f}';

/// The one device row's key.
const THE_DEVICE: &str = "";

/// One instance's device keys in Convene's database.
pub struct DeviceKeys {
    store: Arc<dyn DeviceKeyStore>,
    sealer: Arc<SecretBox>,
    instance: InstanceId,
    changing: tokio::sync::Mutex<()>,
    /// Set when the keys are deleted: a write that a stopping session still makes must not bring them back. Writes
    /// hold it for reading while they run, so closing waits for one under way instead of letting it land after the
    /// deletion.
    closed: tokio::sync::RwLock<bool>,
}

impl DeviceKeys {
    pub fn new(store: Arc<dyn DeviceKeyStore>, sealer: Arc<SecretBox>, instance: InstanceId) -> Self {
        Self {
            store,
            sealer,
            instance,
            changing: tokio::sync::Mutex::default(),
            closed: tokio::sync::RwLock::default(),
        }
    }

    /// Waits for the writes under way, then refuses every write from now on; reads still answer.
    pub async fn close(&self) {
        *self.closed.write().await = true;
    }

    /// Leave to write, held for as long as the write runs; refused once closed.
    async fn open_for_writing(&self) -> Result<tokio::sync::RwLockReadGuard<'_, bool>> {
        let closed = self.closed.read().await;
        if *closed {
            return Err(StoreError::Validation(format!("instance {}'s device keys were deleted", self.instance)));
        }
        Ok(closed)
    }

    /// What a row's value is sealed to: its instance, space, scope and key.
    fn context(&self, space: &str, scope: &str, key: &str) -> String {
        format!("device-keys{JOIN}{}{JOIN}{space}{JOIN}{scope}{JOIN}{key}", self.instance)
    }

    fn put(&self, space: &'static str, scope: &str, key: &str, plain: &[u8], number: i64) -> DeviceKeyWrite {
        let value = self.sealer.seal_bytes(plain, self.context(space, scope, key).as_bytes());
        DeviceKeyWrite::Put { space, scope: scope.to_owned(), key: key.to_owned(), value, number }
    }

    fn open(&self, space: &str, row: &DeviceKeyRow) -> Result<Vec<u8>> {
        self.sealer.open_bytes(&row.value, self.context(space, &row.scope, &row.key).as_bytes()).map_err(|e| {
            StoreError::Validation(format!("the stored {space} {:?} of instance {} {e}", row.key, self.instance))
        })
    }

    async fn row(&self, space: &str, scope: &str, key: &str) -> Result<Option<DeviceKeyRow>> {
        self.store.device_key(self.instance, space, scope, key).await.map_err(database)
    }

    async fn get(&self, space: &str, scope: &str, key: &str) -> Result<Option<Vec<u8>>> {
        match self.row(space, scope, key).await? {
            Some(row) => self.open(space, &row).map(Some),
            None => Ok(None),
        }
    }

    async fn get_json<T: DeserializeOwned>(&self, space: &str, scope: &str, key: &str) -> Result<Option<T>> {
        self.get(space, scope, key).await?.map(|bytes| from_json(&bytes)).transpose()
    }

    async fn rows(&self, space: &str, scope: Option<&str>) -> Result<Vec<DeviceKeyRow>> {
        self.store.device_keys(self.instance, space, scope).await.map_err(database)
    }

    async fn write(&self, writes: Vec<DeviceKeyWrite>) -> Result<()> {
        let _open = self.open_for_writing().await?;
        self.store.write_device_keys(self.instance, writes).await.map_err(database)
    }

    async fn put_one(&self, space: &'static str, scope: &str, key: &str, plain: &[u8], number: i64) -> Result<()> {
        self.write(vec![self.put(space, scope, key, plain, number)]).await
    }

    async fn delete(&self, space: &'static str, scope: Option<&str>, key: Option<&str>) -> Result<()> {
        self.write(vec![delete(space, scope, key)]).await
    }

    async fn delete_numbered_up_to(&self, space: &str, last: i64) -> Result<u32> {
        let _open = self.open_for_writing().await?;
        let deleted =
            self.store.delete_device_keys_numbered_up_to(self.instance, space, last).await.map_err(database)?;
        Ok(u32::try_from(deleted).unwrap_or(u32::MAX))
    }
}

fn delete(space: &'static str, scope: Option<&str>, key: Option<&str>) -> DeviceKeyWrite {
    DeviceKeyWrite::Delete { space, scope: scope.map(str::to_owned), key: key.map(str::to_owned) }
}

fn database(e: DbError) -> StoreError {
    StoreError::Database(Box::new(e))
}

fn to_json(value: &impl Serialize) -> Result<Vec<u8>> {
    serde_json::to_vec(value).map_err(|e| StoreError::Serialization(Box::new(e)))
}

fn from_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T> {
    serde_json::from_slice(bytes).map_err(|e| StoreError::Serialization(Box::new(e)))
}

fn unhex(text: &str) -> Result<Vec<u8>> {
    hex::decode(text).map_err(|_| StoreError::Validation(format!("a stored key is not hexadecimal: {text:?}")))
}

fn id_of(row: &DeviceKeyRow) -> Result<u32> {
    row.key.parse().map_err(|_| StoreError::Validation(format!("a stored key id is not a number: {:?}", row.key)))
}

fn joined(a: &str, b: &str) -> String {
    format!("{a}{JOIN}{b}")
}

fn now_secs() -> i64 {
    whatsapp_rust::wacore::time::now_secs()
}

#[async_trait]
impl SignalStore for DeviceKeys {
    async fn put_identity(&self, address: &str, key: [u8; 32]) -> Result<()> {
        self.put_one(space::IDENTITY, "", address, &key, 0).await
    }

    async fn put_identities_batch(&self, identities: &[(Arc<str>, [u8; 32])]) -> Result<()> {
        let writes = identities.iter().map(|(address, key)| self.put(space::IDENTITY, "", address, key, 0)).collect();
        self.write(writes).await
    }

    async fn load_identity(&self, address: &str) -> Result<Option<[u8; 32]>> {
        let Some(key) = self.get(space::IDENTITY, "", address).await? else { return Ok(None) };
        let length = key.len();
        key.try_into()
            .map(Some)
            .map_err(|_| StoreError::Validation(format!("a stored identity key is {length} bytes, not 32")))
    }

    async fn delete_identity(&self, address: &str) -> Result<()> {
        self.delete(space::IDENTITY, Some(""), Some(address)).await
    }

    async fn get_session(&self, address: &str) -> Result<Option<Bytes>> {
        Ok(self.get(space::SESSION, "", address).await?.map(Bytes::from))
    }

    async fn put_session(&self, address: &str, session: &[u8]) -> Result<()> {
        self.put_one(space::SESSION, "", address, session, 0).await
    }

    async fn put_sessions_batch(&self, sessions: &[(Arc<str>, Bytes)]) -> Result<()> {
        let writes =
            sessions.iter().map(|(address, record)| self.put(space::SESSION, "", address, record, 0)).collect();
        self.write(writes).await
    }

    async fn delete_session(&self, address: &str) -> Result<()> {
        self.delete(space::SESSION, Some(""), Some(address)).await
    }

    async fn has_session(&self, address: &str) -> Result<bool> {
        Ok(self.row(space::SESSION, "", address).await?.is_some())
    }

    async fn store_prekey(&self, id: u32, record: &[u8], uploaded: bool) -> Result<()> {
        self.put_one(space::PREKEY, "", &id.to_string(), record, i64::from(uploaded)).await
    }

    async fn store_prekeys_batch(&self, keys: &[(u32, Bytes)], uploaded: bool) -> Result<()> {
        let writes =
            keys.iter().map(|(id, record)| self.put(space::PREKEY, "", &id.to_string(), record, i64::from(uploaded)));
        self.write(writes.collect()).await
    }

    async fn load_prekey(&self, id: u32) -> Result<Option<Bytes>> {
        Ok(self.get(space::PREKEY, "", &id.to_string()).await?.map(Bytes::from))
    }

    async fn mark_prekeys_uploaded(&self, ids: &[u32]) -> Result<()> {
        // A renumbering inserts nothing: a key used up meanwhile stays deleted.
        let writes = ids
            .iter()
            .map(|id| DeviceKeyWrite::Renumber {
                space: space::PREKEY,
                scope: String::new(),
                key: id.to_string(),
                number: 1,
            })
            .collect();
        self.write(writes).await
    }

    async fn remove_prekey(&self, id: u32) -> Result<()> {
        self.delete(space::PREKEY, Some(""), Some(&id.to_string())).await
    }

    async fn get_max_prekey_id(&self) -> Result<u32> {
        let rows = self.rows(space::PREKEY, None).await?;
        rows.iter().map(id_of).try_fold(0, |most, id| id.map(|id| most.max(id)))
    }

    async fn store_signed_prekey(&self, id: u32, record: &[u8]) -> Result<()> {
        self.put_one(space::SIGNED_PREKEY, "", &id.to_string(), record, 0).await
    }

    async fn load_signed_prekey(&self, id: u32) -> Result<Option<Vec<u8>>> {
        self.get(space::SIGNED_PREKEY, "", &id.to_string()).await
    }

    async fn load_all_signed_prekeys(&self) -> Result<Vec<(u32, Vec<u8>)>> {
        let rows = self.rows(space::SIGNED_PREKEY, None).await?;
        rows.iter().map(|row| Ok((id_of(row)?, self.open(space::SIGNED_PREKEY, row)?))).collect()
    }

    async fn remove_signed_prekey(&self, id: u32) -> Result<()> {
        self.delete(space::SIGNED_PREKEY, Some(""), Some(&id.to_string())).await
    }

    async fn put_sender_key(&self, address: &str, record: &[u8]) -> Result<()> {
        self.put_one(space::SENDER_KEY, "", address, record, 0).await
    }

    async fn put_sender_keys_batch(&self, sender_keys: &[(Arc<str>, Bytes)]) -> Result<()> {
        let writes =
            sender_keys.iter().map(|(address, record)| self.put(space::SENDER_KEY, "", address, record, 0)).collect();
        self.write(writes).await
    }

    async fn get_sender_key(&self, address: &str) -> Result<Option<Vec<u8>>> {
        self.get(space::SENDER_KEY, "", address).await
    }

    async fn delete_sender_key(&self, address: &str) -> Result<()> {
        self.delete(space::SENDER_KEY, Some(""), Some(address)).await
    }
}

#[async_trait]
impl AppSyncStore for DeviceKeys {
    async fn get_sync_key(&self, key_id: &[u8]) -> Result<Option<AppStateSyncKey>> {
        self.get_json(space::SYNC_KEY, "", &hex::encode(key_id)).await
    }

    async fn set_sync_key(&self, key_id: &[u8], key: AppStateSyncKey) -> Result<()> {
        let _one_at_a_time = self.changing.lock().await;
        let latest = self.rows(space::SYNC_KEY, None).await?.iter().map(|row| row.number).max().unwrap_or(0);
        self.put_one(space::SYNC_KEY, "", &hex::encode(key_id), &to_json(&key)?, latest + 1).await
    }

    async fn get_version(&self, name: &str) -> Result<HashState> {
        Ok(self.get_json(space::SYNC_VERSION, "", name).await?.unwrap_or_default())
    }

    async fn set_version(&self, name: &str, state: HashState) -> Result<()> {
        self.put_one(space::SYNC_VERSION, "", name, &to_json(&state)?, 0).await
    }

    async fn put_mutation_macs(&self, name: &str, _version: u64, mutations: &[AppStateMutationMAC]) -> Result<()> {
        let writes = mutations
            .iter()
            .map(|m| self.put(space::MUTATION_MAC, name, &hex::encode(&m.index_mac), &m.value_mac, 0))
            .collect();
        self.write(writes).await
    }

    async fn get_mutation_mac(&self, name: &str, index_mac: &[u8]) -> Result<Option<Vec<u8>>> {
        self.get(space::MUTATION_MAC, name, &hex::encode(index_mac)).await
    }

    async fn delete_mutation_macs(&self, name: &str, index_macs: &[Vec<u8>]) -> Result<()> {
        let writes =
            index_macs.iter().map(|m| delete(space::MUTATION_MAC, Some(name), Some(&hex::encode(m)))).collect();
        self.write(writes).await
    }

    async fn clear_mutation_macs(&self, name: &str) -> Result<()> {
        self.delete(space::MUTATION_MAC, Some(name), None).await
    }

    async fn get_latest_sync_key_id(&self) -> Result<Option<Vec<u8>>> {
        let rows = self.rows(space::SYNC_KEY, None).await?;
        rows.iter().max_by_key(|row| row.number).map(|row| unhex(&row.key)).transpose()
    }
}

#[async_trait]
impl ProtocolStore for DeviceKeys {
    async fn get_sender_key_devices(&self, group_jid: &str) -> Result<Vec<(String, bool)>> {
        let rows = self.rows(space::SENDER_KEY_DEVICE, Some(group_jid)).await?;
        Ok(rows.into_iter().map(|row| (row.key, row.number == 1)).collect())
    }

    async fn set_sender_key_status(&self, group_jid: &str, entries: &[(&str, bool)]) -> Result<()> {
        let writes = entries
            .iter()
            .map(|(device, has_key)| self.put(space::SENDER_KEY_DEVICE, group_jid, device, b"", i64::from(*has_key)))
            .collect();
        self.write(writes).await
    }

    async fn clear_sender_key_devices(&self, group_jid: &str) -> Result<()> {
        self.delete(space::SENDER_KEY_DEVICE, Some(group_jid), None).await
    }

    async fn delete_sender_key_device_rows(&self, device_jids: &[&str]) -> Result<()> {
        let writes = device_jids.iter().map(|device| delete(space::SENDER_KEY_DEVICE, None, Some(device))).collect();
        self.write(writes).await
    }

    async fn clear_all_sender_key_devices(&self) -> Result<()> {
        self.delete(space::SENDER_KEY_DEVICE, None, None).await
    }

    async fn get_lid_mapping(&self, lid: &str) -> Result<Option<LidPnMappingEntry>> {
        self.get_json(space::LID, "", lid).await
    }

    async fn get_pn_mapping(&self, phone: &str) -> Result<Option<LidPnMappingEntry>> {
        let Some(lid) = self.get(space::PN, "", phone).await? else { return Ok(None) };
        let lid = String::from_utf8(lid).map_err(|e| StoreError::Serialization(Box::new(e)))?;
        self.get_lid_mapping(&lid).await
    }

    async fn put_lid_mapping(&self, entry: &LidPnMappingEntry) -> Result<()> {
        let _one_at_a_time = self.changing.lock().await;
        let mut writes = Vec::with_capacity(3);
        // A LID that moved to another number no longer answers for the old one.
        if let Some(old) = self.get_lid_mapping(&entry.lid).await?
            && old.phone_number != entry.phone_number
        {
            writes.push(delete(space::PN, Some(""), Some(&old.phone_number)));
        }
        writes.push(self.put(space::PN, "", &entry.phone_number, entry.lid.as_bytes(), 0));
        writes.push(self.put(space::LID, "", &entry.lid, &to_json(entry)?, 0));
        self.write(writes).await
    }

    async fn get_all_lid_mappings(&self) -> Result<Vec<LidPnMappingEntry>> {
        let rows = self.rows(space::LID, None).await?;
        rows.iter().map(|row| from_json(&self.open(space::LID, row)?)).collect()
    }

    async fn save_base_key(&self, address: &str, message_id: &str, base_key: &[u8]) -> Result<()> {
        self.put_one(space::BASE_KEY, address, message_id, base_key, 0).await
    }

    async fn has_same_base_key(&self, address: &str, message_id: &str, current_base_key: &[u8]) -> Result<bool> {
        Ok(self.get(space::BASE_KEY, address, message_id).await?.is_some_and(|stored| stored == current_base_key))
    }

    async fn delete_base_key(&self, address: &str, message_id: &str) -> Result<()> {
        self.delete(space::BASE_KEY, Some(address), Some(message_id)).await
    }

    async fn update_device_list(&self, record: DeviceListRecord) -> Result<()> {
        self.put_one(space::DEVICE_LIST, "", &record.user, &to_json(&record)?, 0).await
    }

    async fn update_device_lists(&self, records: Vec<DeviceListRecord>) -> Result<()> {
        let writes = records
            .iter()
            .map(|record| Ok(self.put(space::DEVICE_LIST, "", &record.user, &to_json(record)?, 0)))
            .collect::<Result<_>>()?;
        self.write(writes).await
    }

    async fn get_devices(&self, user: &str) -> Result<Option<DeviceListRecord>> {
        self.get_json(space::DEVICE_LIST, "", user).await
    }

    async fn delete_devices(&self, user: &str) -> Result<()> {
        self.delete(space::DEVICE_LIST, Some(""), Some(user)).await
    }

    async fn get_group_metadata(&self, group_jid: &str) -> Result<Option<Vec<u8>>> {
        self.get(space::GROUP_METADATA, "", group_jid).await
    }

    async fn put_group_metadata(&self, group_jid: &str, blob: &[u8]) -> Result<()> {
        self.put_one(space::GROUP_METADATA, "", group_jid, blob, 0).await
    }

    async fn delete_group_metadata(&self, group_jid: &str) -> Result<()> {
        self.delete(space::GROUP_METADATA, Some(""), Some(group_jid)).await
    }

    async fn get_tc_token(&self, jid: &str) -> Result<Option<TcTokenEntry>> {
        self.get_json(space::TC_TOKEN, "", jid).await
    }

    async fn put_tc_token(&self, jid: &str, entry: &TcTokenEntry) -> Result<()> {
        let _one_at_a_time = self.changing.lock().await;
        self.put_one(space::TC_TOKEN, "", jid, &to_json(entry)?, 0).await
    }

    async fn delete_tc_token(&self, jid: &str) -> Result<()> {
        self.delete(space::TC_TOKEN, Some(""), Some(jid)).await
    }

    async fn get_all_tc_token_jids(&self) -> Result<Vec<String>> {
        Ok(self.rows(space::TC_TOKEN, None).await?.into_iter().map(|row| row.key).collect())
    }

    async fn delete_expired_tc_tokens(&self, token_cutoff: i64, sender_cutoff: i64) -> Result<u32> {
        let _one_at_a_time = self.changing.lock().await;
        let mut expired = Vec::new();
        for row in self.rows(space::TC_TOKEN, None).await? {
            let entry: TcTokenEntry = from_json(&self.open(space::TC_TOKEN, &row)?)?;
            // A row goes only when both its received token and its sender bucket are stale.
            let token_live = !entry.token.is_empty() && entry.token_timestamp >= token_cutoff;
            let sender_live = entry.sender_timestamp.is_some_and(|at| at >= sender_cutoff);
            if !token_live && !sender_live {
                expired.push(delete(space::TC_TOKEN, Some(""), Some(&row.key)));
            }
        }
        let count = u32::try_from(expired.len()).unwrap_or(u32::MAX);
        self.write(expired).await?;
        Ok(count)
    }

    async fn touch_tc_token_sender_timestamp(&self, jid: &str, sender_timestamp: i64) -> Result<()> {
        let _one_at_a_time = self.changing.lock().await;
        let entry = match self.get_tc_token(jid).await? {
            Some(existing) => TcTokenEntry {
                sender_timestamp: Some(existing.sender_timestamp.map_or(sender_timestamp, |e| e.max(sender_timestamp))),
                ..existing
            },
            None => TcTokenEntry {
                token: Vec::new(),
                token_timestamp: sender_timestamp,
                sender_timestamp: Some(sender_timestamp),
            },
        };
        self.put_one(space::TC_TOKEN, "", jid, &to_json(&entry)?, 0).await
    }

    async fn store_received_tc_token(&self, jid: &str, token: &[u8], token_timestamp: i64) -> Result<()> {
        let _one_at_a_time = self.changing.lock().await;
        let existing = self.get_tc_token(jid).await?;
        // Newer wins; a placeholder never blocks the first real token.
        if let Some(existing) = &existing
            && !existing.token.is_empty()
            && token_timestamp < existing.token_timestamp
        {
            return Ok(());
        }
        let sender_timestamp = existing.and_then(|existing| existing.sender_timestamp);
        let entry = TcTokenEntry { token: token.to_vec(), token_timestamp, sender_timestamp };
        self.put_one(space::TC_TOKEN, "", jid, &to_json(&entry)?, 0).await
    }

    async fn store_sent_message(&self, chat_jid: &str, message_id: &str, payload: &[u8]) -> Result<()> {
        self.put_one(space::SENT_MESSAGE, chat_jid, message_id, payload, now_secs().max(1)).await
    }

    async fn take_sent_message(&self, chat_jid: &str, message_id: &str) -> Result<Option<Vec<u8>>> {
        let _one_at_a_time = self.changing.lock().await;
        let payload = self.get(space::SENT_MESSAGE, chat_jid, message_id).await?;
        if payload.is_some() {
            self.delete(space::SENT_MESSAGE, Some(chat_jid), Some(message_id)).await?;
        }
        Ok(payload)
    }

    async fn delete_expired_sent_messages(&self, cutoff_timestamp: i64) -> Result<u32> {
        // Kept: stored at or after the cutoff.
        self.delete_numbered_up_to(space::SENT_MESSAGE, cutoff_timestamp - 1).await
    }

    async fn store_pending_inbound(&self, chat: &str, sender: &str, id: &str, message: &[u8]) -> Result<()> {
        self.put_one(space::PENDING_INBOUND, chat, &joined(sender, id), message, now_secs().max(1)).await
    }

    async fn get_pending_inbound(&self, chat: &str, sender: &str, id: &str) -> Result<Option<Vec<u8>>> {
        self.get(space::PENDING_INBOUND, chat, &joined(sender, id)).await
    }

    async fn delete_pending_inbound(&self, chat: &str, sender: &str, id: &str) -> Result<()> {
        self.delete(space::PENDING_INBOUND, Some(chat), Some(&joined(sender, id))).await
    }

    async fn delete_expired_pending_inbound(&self, cutoff_timestamp: i64) -> Result<u32> {
        self.delete_numbered_up_to(space::PENDING_INBOUND, cutoff_timestamp - 1).await
    }

    async fn store_pending_inbound_batch(&self, rows: &[PendingInboundRow<'_>]) -> Result<()> {
        let now = now_secs().max(1);
        let writes = rows
            .iter()
            .map(|row| self.put(space::PENDING_INBOUND, row.chat, &joined(row.sender, row.id), row.message, now))
            .collect();
        self.write(writes).await
    }

    async fn delete_pending_inbound_batch(&self, keys: &[PendingInboundKey<'_>]) -> Result<()> {
        let writes = keys
            .iter()
            .map(|key| delete(space::PENDING_INBOUND, Some(key.chat), Some(&joined(key.sender, key.id))))
            .collect();
        self.write(writes).await
    }
}

/// A message secret's value: the secret, then the parent message's time (8 bytes, little-endian).
fn msg_secret_value(secret: &[u8], message_ts: i64) -> Vec<u8> {
    let mut value = secret.to_vec();
    value.extend_from_slice(&message_ts.to_le_bytes());
    value
}

fn msg_secret_parts(value: &[u8]) -> Result<(Vec<u8>, i64)> {
    let split = value.len().checked_sub(8).ok_or_else(|| StoreError::Validation("a short message secret".into()))?;
    let (secret, ts) = value.split_at(split);
    let ts: [u8; 8] = ts.try_into().map_err(|_| StoreError::Validation("a short message secret".into()))?;
    Ok((secret.to_vec(), i64::from_le_bytes(ts)))
}

#[async_trait]
impl MsgSecretStore for DeviceKeys {
    async fn put_msg_secrets(&self, entries: Vec<MsgSecretEntry>) -> Result<usize> {
        let _one_at_a_time = self.changing.lock().await;
        let count = entries.len();
        // (chat, sender+id) → (expires_at, message_ts), as stored or as merged earlier in this batch.
        let mut merged: HashMap<(String, String), (i64, i64)> = HashMap::new();
        let mut writes = Vec::with_capacity(count);
        for entry in &entries {
            let key = (entry.chat.to_string(), joined(&entry.sender, &entry.msg_id));
            let before = match merged.get(&key) {
                Some(&known) => Some(known),
                None => match self.row(space::MSG_SECRET, &key.0, &key.1).await? {
                    Some(row) => Some((row.number, msg_secret_parts(&self.open(space::MSG_SECRET, &row)?)?.1)),
                    None => None,
                },
            };
            let (expires_at, message_ts) = match before {
                Some((expires_at, message_ts)) => (
                    merge_msg_secret_expiry(expires_at, entry.expires_at),
                    merge_msg_secret_message_ts(message_ts, entry.message_ts),
                ),
                None => (entry.expires_at, entry.message_ts),
            };
            let value = msg_secret_value(&entry.secret, message_ts);
            writes.push(self.put(space::MSG_SECRET, &key.0, &key.1, &value, expires_at));
            merged.insert(key, (expires_at, message_ts));
        }
        self.write(writes).await?;
        Ok(count)
    }

    async fn get_msg_secret(&self, chat: &str, sender: &str, msg_id: &str) -> Result<Option<Vec<u8>>> {
        Ok(self.get_msg_secret_with_ts(chat, sender, msg_id).await?.map(|(secret, _)| secret))
    }

    async fn get_msg_secret_with_ts(&self, chat: &str, sender: &str, msg_id: &str) -> Result<Option<(Vec<u8>, i64)>> {
        let value = self.get(space::MSG_SECRET, chat, &joined(sender, msg_id)).await?;
        value.map(|value| msg_secret_parts(&value)).transpose()
    }

    async fn delete_expired_msg_secrets(&self, cutoff_timestamp: i64) -> Result<u32> {
        // Kept: no deadline (0), or one after the cutoff.
        self.delete_numbered_up_to(space::MSG_SECRET, cutoff_timestamp).await
    }
}

#[async_trait]
impl DeviceStore for DeviceKeys {
    async fn save(&self, device: &Device) -> Result<()> {
        self.put_one(space::DEVICE, "", THE_DEVICE, &to_json(device)?, 0).await
    }

    async fn load(&self) -> Result<Option<Device>> {
        let device: Option<Device> = self.get_json(space::DEVICE, "", THE_DEVICE).await?;
        // Not serialized: the library's defaults, as its own stores give them back.
        Ok(device.map(|device| Device {
            device_props: Arc::new(whatsapp_rust::wacore::store::device::DEVICE_PROPS.clone()),
            client_profile: whatsapp_rust::wacore::client_profile::ClientProfile::web(),
            ..device
        }))
    }

    async fn exists(&self) -> Result<bool> {
        Ok(self.row(space::DEVICE, "", THE_DEVICE).await?.is_some())
    }

    /// An instance has one device: this makes it when there is none, and its id is always 1. A new device starts
    /// with nothing of an earlier one's (sessions, identities, pre-keys), which would not match its keys.
    async fn create(&self) -> Result<i32> {
        let _one_at_a_time = self.changing.lock().await;
        if !self.exists().await? {
            // Both under one leave: a closed session's late `create` must not delete the next session's rows.
            let _open = self.open_for_writing().await?;
            self.store.forget_device_keys(self.instance).await.map_err(database)?;
            let device = self.put(space::DEVICE, "", THE_DEVICE, &to_json(&Device::new())?, 0);
            self.store.write_device_keys(self.instance, vec![device]).await.map_err(database)?;
        }
        Ok(1)
    }
}

#[cfg(test)]
mod tests;
