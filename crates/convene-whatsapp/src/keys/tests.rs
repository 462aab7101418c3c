//! The storage contract: each case runs on the library's own in-memory backend (so the expectations are the
//! library's), on `DeviceKeys` over a SQLite file and on `DeviceKeys` over PostgreSQL (`TEST_DATABASE_URL`; said
//! skipped and passing when it is unset). Then what only `DeviceKeys` promises: sealed rows, bound to their place,
//! one instance's apart from another's, still there after a reopen.

use std::future::Future;
use std::sync::Arc;

use bytes::Bytes;
use convene_core::{DeviceKeyStore, DeviceKeyWrite, InstanceId, SecretBox};
use convene_store::{PostgresStore, SqliteStore};
use whatsapp_rust::wacore::appstate::processor::AppStateMutationMAC;
use whatsapp_rust::wacore::store::traits::{
    AppStateSyncKey, Backend, DeviceInfo, DeviceListRecord, LidPnMappingEntry, MsgSecretEntry, PendingInboundKey,
    PendingInboundRow,
};

use super::DeviceKeys;
use whatsapp_rust::wacore::store::traits::{DeviceStore as _, SignalStore as _};

const INSTANCE: InstanceId = InstanceId(7_103_000_001);

fn sealer() -> Arc<SecretBox> {
    Arc::new(SecretBox::new([9; 32]))
}

async fn sqlite(dir: &std::path::Path) -> Arc<SqliteStore> {
    Arc::new(SqliteStore::connect(&format!("sqlite://{}", dir.join("convene.db").display())).await.unwrap())
}

/// Runs `case` on `DeviceKeys` over a fresh PostgreSQL database; without `TEST_DATABASE_URL`, says it was skipped.
async fn on_postgres<F, Fut>(name: &str, case: F)
where
    F: FnOnce(DeviceKeys) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    convene_store::on_scratch_database(name, |url| async move {
        let store = Arc::new(PostgresStore::connect(&url).await.unwrap());
        case(DeviceKeys::new(store.clone(), sealer(), INSTANCE)).await;
        store.close().await;
    })
    .await;
}

macro_rules! contract {
    ($($case:ident),* $(,)?) => {
        mod in_memory {
            $(
                #[tokio::test]
                async fn $case() {
                    super::$case(&whatsapp_rust::wacore::store::InMemoryBackend::new()).await;
                }
            )*
        }

        mod on_sqlite {
            $(
                #[tokio::test]
                async fn $case() {
                    let dir = tempfile::tempdir().unwrap();
                    let store = super::sqlite(dir.path()).await;
                    super::$case(&super::DeviceKeys::new(store.clone(), super::sealer(), super::INSTANCE)).await;
                    store.close().await;
                }
            )*
        }

        mod on_postgres {
            $(
                #[tokio::test]
                async fn $case() {
                    super::on_postgres(stringify!($case), |keys| async move { super::$case(&keys).await }).await;
                }
            )*
        }
    };
}

contract!(
    identities_and_sessions,
    prekeys_and_signed_prekeys,
    sender_keys,
    app_state_sync_keys_and_versions,
    mutation_macs_by_collection,
    sender_key_devices_by_group,
    lid_mappings_both_ways,
    base_keys,
    device_lists_and_group_metadata,
    trusted_contact_tokens,
    sent_messages_are_taken_once,
    message_secrets_merge,
    pending_inbound_messages,
    the_device,
);

async fn identities_and_sessions(b: &dyn Backend) {
    assert_eq!(b.load_identity("1@s.whatsapp.net").await.unwrap(), None);
    b.put_identity("1@s.whatsapp.net", [1; 32]).await.unwrap();
    b.put_identities_batch(&[("2@s.whatsapp.net".into(), [2; 32]), ("1@s.whatsapp.net".into(), [3; 32])])
        .await
        .unwrap();
    assert_eq!(b.load_identity("1@s.whatsapp.net").await.unwrap(), Some([3; 32]));
    assert_eq!(b.load_identity("2@s.whatsapp.net").await.unwrap(), Some([2; 32]));
    b.delete_identity("2@s.whatsapp.net").await.unwrap();
    assert_eq!(b.load_identity("2@s.whatsapp.net").await.unwrap(), None);

    assert!(!b.has_session("1:2@s.whatsapp.net").await.unwrap());
    b.put_session("1:2@s.whatsapp.net", b"session one").await.unwrap();
    b.put_sessions_batch(&[("3@lid".into(), Bytes::from_static(b"session three"))]).await.unwrap();
    assert_eq!(b.get_session("1:2@s.whatsapp.net").await.unwrap().as_deref(), Some(&b"session one"[..]));
    assert!(b.has_session("3@lid").await.unwrap());
    b.put_session("3@lid", b"replaced").await.unwrap();
    assert_eq!(b.get_session("3@lid").await.unwrap().as_deref(), Some(&b"replaced"[..]));
    b.delete_session("3@lid").await.unwrap();
    assert!(!b.has_session("3@lid").await.unwrap());
    assert!(b.has_session("1:2@s.whatsapp.net").await.unwrap(), "only the one deleted");
}

async fn prekeys_and_signed_prekeys(b: &dyn Backend) {
    assert_eq!(b.get_max_prekey_id().await.unwrap(), 0);
    b.store_prekey(1, b"one", false).await.unwrap();
    b.store_prekeys_batch(&[(2, Bytes::from_static(b"two")), (30, Bytes::from_static(b"thirty"))], false)
        .await
        .unwrap();
    assert_eq!(b.load_prekey(2).await.unwrap().as_deref(), Some(&b"two"[..]));
    let mut loaded = b.load_prekeys_batch(&[1, 5, 30]).await.unwrap();
    loaded.sort();
    assert_eq!(loaded, vec![(1, Bytes::from_static(b"one")), (30, Bytes::from_static(b"thirty"))]);
    assert_eq!(b.get_max_prekey_id().await.unwrap(), 30, "by number, not as text");
    b.remove_prekey(2).await.unwrap();
    // Marking a key used up meanwhile does not bring it back.
    b.mark_prekeys_uploaded(&[1, 2]).await.unwrap();
    assert_eq!(b.load_prekey(2).await.unwrap(), None);
    assert_eq!(b.load_prekey(1).await.unwrap().as_deref(), Some(&b"one"[..]));

    b.store_signed_prekey(5, b"five").await.unwrap();
    b.store_signed_prekey(7, b"seven").await.unwrap();
    assert_eq!(b.load_signed_prekey(7).await.unwrap(), Some(b"seven".to_vec()));
    let mut all = b.load_all_signed_prekeys().await.unwrap();
    all.sort();
    assert_eq!(all, vec![(5, b"five".to_vec()), (7, b"seven".to_vec())]);
    b.remove_signed_prekey(5).await.unwrap();
    assert_eq!(b.load_signed_prekey(5).await.unwrap(), None);
    assert_eq!(b.load_all_signed_prekeys().await.unwrap().len(), 1);
}

async fn sender_keys(b: &dyn Backend) {
    b.put_sender_key("120363@g.us::1::0", b"key").await.unwrap();
    b.put_sender_keys_batch(&[("120363@g.us::2::0".into(), Bytes::from_static(b"other"))]).await.unwrap();
    assert_eq!(b.get_sender_key("120363@g.us::1::0").await.unwrap(), Some(b"key".to_vec()));
    b.delete_sender_key("120363@g.us::1::0").await.unwrap();
    assert_eq!(b.get_sender_key("120363@g.us::1::0").await.unwrap(), None);
    assert_eq!(b.get_sender_key("120363@g.us::2::0").await.unwrap(), Some(b"other".to_vec()));
}

async fn app_state_sync_keys_and_versions(b: &dyn Backend) {
    assert_eq!(b.get_latest_sync_key_id().await.unwrap(), None);
    let key = |n: u8| AppStateSyncKey { key_data: vec![n; 32], fingerprint: vec![n, 1], timestamp: i64::from(n) };
    b.set_sync_key(&[0, 1], key(1)).await.unwrap();
    b.set_sync_key(&[0, 2], key(2)).await.unwrap();
    assert_eq!(b.get_latest_sync_key_id().await.unwrap(), Some(vec![0, 2]));
    b.set_sync_key(&[0, 1], key(3)).await.unwrap();
    assert_eq!(b.get_latest_sync_key_id().await.unwrap(), Some(vec![0, 1]), "the one stored last");
    let stored = b.get_sync_key(&[0, 1]).await.unwrap().unwrap();
    assert_eq!((stored.key_data, stored.fingerprint, stored.timestamp), (vec![3; 32], vec![3, 1], 3));
    assert!(b.get_sync_key(&[9]).await.unwrap().is_none());

    assert_eq!(b.get_version("regular").await.unwrap().version, 0, "a collection never synced starts at 0");
    let mut state = b.get_version("regular").await.unwrap();
    state.version = 42;
    state.hash = [7; 128];
    state.index_value_map.insert("index".into(), vec![1, 2, 3]);
    b.set_version("regular", state).await.unwrap();
    let read = b.get_version("regular").await.unwrap();
    assert_eq!(
        (read.version, read.hash, read.index_value_map.get("index").cloned()),
        (42, [7; 128], Some(vec![1, 2, 3]))
    );
    assert_eq!(b.get_version("critical_block").await.unwrap().version, 0);
}

async fn mutation_macs_by_collection(b: &dyn Backend) {
    let mac = |i: u8, v: u8| AppStateMutationMAC { index_mac: vec![i; 32], value_mac: vec![v; 32] };
    b.put_mutation_macs("regular", 1, &[mac(1, 10), mac(2, 20)]).await.unwrap();
    b.put_mutation_macs("critical", 1, &[mac(1, 11)]).await.unwrap();
    assert_eq!(b.get_mutation_mac("regular", &[1; 32]).await.unwrap(), Some(vec![10; 32]));
    assert_eq!(b.get_mutation_mac("critical", &[1; 32]).await.unwrap(), Some(vec![11; 32]));
    let found = b.get_mutation_macs("regular", &[[1; 32], [2; 32], [3; 32]]).await.unwrap();
    assert_eq!((found.len(), found.get(&[2; 32]).cloned()), (2, Some(vec![20; 32])));
    b.delete_mutation_macs("regular", &[vec![1; 32]]).await.unwrap();
    assert_eq!(b.get_mutation_mac("regular", &[1; 32]).await.unwrap(), None);
    assert_eq!(b.get_mutation_mac("critical", &[1; 32]).await.unwrap(), Some(vec![11; 32]), "another collection's");
    b.clear_mutation_macs("regular").await.unwrap();
    assert_eq!(b.get_mutation_mac("regular", &[2; 32]).await.unwrap(), None);
    assert_eq!(b.get_mutation_mac("critical", &[1; 32]).await.unwrap(), Some(vec![11; 32]));
}

async fn sender_key_devices_by_group(b: &dyn Backend) {
    let sorted = |mut devices: Vec<(String, bool)>| {
        devices.sort();
        devices
    };
    b.set_sender_key_status("g1@g.us", &[("1:1@lid", true), ("2:0@lid", false)]).await.unwrap();
    b.set_sender_key_status("g2@g.us", &[("1:1@lid", true)]).await.unwrap();
    b.set_sender_key_status("g1@g.us", &[("2:0@lid", true)]).await.unwrap();
    assert_eq!(
        sorted(b.get_sender_key_devices("g1@g.us").await.unwrap()),
        vec![("1:1@lid".to_owned(), true), ("2:0@lid".to_owned(), true)]
    );
    b.delete_sender_key_device_rows(&["1:1@lid"]).await.unwrap();
    assert_eq!(b.get_sender_key_devices("g1@g.us").await.unwrap(), vec![("2:0@lid".to_owned(), true)]);
    assert!(b.get_sender_key_devices("g2@g.us").await.unwrap().is_empty(), "in every group");
    b.set_sender_key_status("g2@g.us", &[("3:0@lid", false)]).await.unwrap();
    b.clear_sender_key_devices("g1@g.us").await.unwrap();
    assert!(b.get_sender_key_devices("g1@g.us").await.unwrap().is_empty());
    assert_eq!(b.get_sender_key_devices("g2@g.us").await.unwrap(), vec![("3:0@lid".to_owned(), false)]);
    b.clear_all_sender_key_devices().await.unwrap();
    assert!(b.get_sender_key_devices("g2@g.us").await.unwrap().is_empty());
}

fn mapping(lid: &str, phone: &str, at: i64) -> LidPnMappingEntry {
    LidPnMappingEntry {
        lid: lid.into(),
        phone_number: phone.into(),
        created_at: at,
        updated_at: at,
        learning_source: "usync".into(),
    }
}

async fn lid_mappings_both_ways(b: &dyn Backend) {
    b.put_lid_mapping(&mapping("100000012345678", "559980000001", 10)).await.unwrap();
    b.put_lid_mappings(&[mapping("100000099999999", "559980000002", 11)]).await.unwrap();
    let by_lid = b.get_lid_mapping("100000012345678").await.unwrap().unwrap();
    assert_eq!((by_lid.phone_number.as_str(), by_lid.learning_source.as_str()), ("559980000001", "usync"));
    assert_eq!(b.get_pn_mapping("559980000002").await.unwrap().unwrap().lid, "100000099999999");
    // The LID moves to another number: the old number no longer finds it.
    b.put_lid_mapping(&mapping("100000012345678", "559980000003", 12)).await.unwrap();
    assert!(b.get_pn_mapping("559980000001").await.unwrap().is_none());
    assert_eq!(b.get_pn_mapping("559980000003").await.unwrap().unwrap().lid, "100000012345678");
    let mut all: Vec<String> = b.get_all_lid_mappings().await.unwrap().into_iter().map(|m| m.lid).collect();
    all.sort();
    assert_eq!(all, vec!["100000012345678", "100000099999999"]);
}

async fn base_keys(b: &dyn Backend) {
    b.save_base_key("1:2@s.whatsapp.net", "MSG1", b"base").await.unwrap();
    assert!(b.has_same_base_key("1:2@s.whatsapp.net", "MSG1", b"base").await.unwrap());
    assert!(!b.has_same_base_key("1:2@s.whatsapp.net", "MSG1", b"other").await.unwrap());
    assert!(!b.has_same_base_key("1:2@s.whatsapp.net", "MSG2", b"base").await.unwrap());
    b.delete_base_key("1:2@s.whatsapp.net", "MSG1").await.unwrap();
    assert!(!b.has_same_base_key("1:2@s.whatsapp.net", "MSG1", b"base").await.unwrap());
}

async fn device_lists_and_group_metadata(b: &dyn Backend) {
    let record = |user: &str, devices: &[u32]| DeviceListRecord {
        user: user.into(),
        devices: devices.iter().map(|&d| DeviceInfo::new(d, Some(d + 1))).collect(),
        timestamp: 5,
        phash: Some("2:abc".into()),
        raw_id: Some(9),
    };
    b.update_device_list(record("559980000001", &[0, 3])).await.unwrap();
    b.update_device_lists(vec![record("559980000002", &[0]), record("559980000001", &[0])]).await.unwrap();
    let read = b.get_devices("559980000001").await.unwrap().unwrap();
    assert_eq!((read.devices.len(), read.phash.as_deref(), read.raw_id), (1, Some("2:abc"), Some(9)));
    b.delete_devices("559980000001").await.unwrap();
    assert!(b.get_devices("559980000001").await.unwrap().is_none());
    assert!(b.get_devices("559980000002").await.unwrap().is_some());

    assert_eq!(b.get_group_metadata("g1@g.us").await.unwrap(), None);
    b.put_group_metadata("g1@g.us", b"metadata").await.unwrap();
    assert_eq!(b.get_group_metadata("g1@g.us").await.unwrap(), Some(b"metadata".to_vec()));
    b.delete_group_metadata("g1@g.us").await.unwrap();
    assert_eq!(b.get_group_metadata("g1@g.us").await.unwrap(), None);
}

async fn trusted_contact_tokens(b: &dyn Backend) {
    b.store_received_tc_token("a@lid", b"first", 100).await.unwrap();
    b.store_received_tc_token("a@lid", b"stale", 50).await.unwrap();
    let a = b.get_tc_token("a@lid").await.unwrap().unwrap();
    assert_eq!((a.token, a.token_timestamp, a.sender_timestamp), (b"first".to_vec(), 100, None), "newer wins");
    b.touch_tc_token_sender_timestamp("a@lid", 200).await.unwrap();
    b.touch_tc_token_sender_timestamp("a@lid", 150).await.unwrap();
    let a = b.get_tc_token("a@lid").await.unwrap().unwrap();
    assert_eq!((a.token, a.sender_timestamp), (b"first".to_vec(), Some(200)), "the sender bucket only moves forward");
    // A placeholder made by the sender side never blocks the first real token, whatever its time.
    b.touch_tc_token_sender_timestamp("b@lid", 300).await.unwrap();
    b.store_received_tc_token("b@lid", b"real", 10).await.unwrap();
    let placeholder_replaced = b.get_tc_token("b@lid").await.unwrap().unwrap();
    assert_eq!(
        (placeholder_replaced.token, placeholder_replaced.token_timestamp, placeholder_replaced.sender_timestamp),
        (b"real".to_vec(), 10, Some(300))
    );
    b.store_received_tc_token("c@lid", b"old", 20).await.unwrap();
    let mut jids = b.get_all_tc_token_jids().await.unwrap();
    jids.sort();
    assert_eq!(jids, vec!["a@lid", "b@lid", "c@lid"]);
    // a: token live; b: sender bucket live; c: both stale.
    assert_eq!(b.delete_expired_tc_tokens(90, 250).await.unwrap(), 1);
    assert!(b.get_tc_token("c@lid").await.unwrap().is_none());
    b.delete_tc_token("a@lid").await.unwrap();
    assert_eq!(b.get_all_tc_token_jids().await.unwrap(), vec!["b@lid"]);
}

async fn sent_messages_are_taken_once(b: &dyn Backend) {
    b.store_sent_message("g1@g.us", "M1", b"payload").await.unwrap();
    b.store_sent_message("g1@g.us", "M2", b"second").await.unwrap();
    assert_eq!(b.take_sent_message("g1@g.us", "M1").await.unwrap(), Some(b"payload".to_vec()));
    assert_eq!(b.take_sent_message("g1@g.us", "M1").await.unwrap(), None, "taken once");
    assert_eq!(b.take_sent_message("g2@g.us", "M2").await.unwrap(), None, "another chat's");
    assert_eq!(b.delete_expired_sent_messages(0).await.unwrap(), 0);
    let now = whatsapp_rust::wacore::time::now_secs();
    assert_eq!(b.delete_expired_sent_messages(now + 60).await.unwrap(), 1);
    assert_eq!(b.take_sent_message("g1@g.us", "M2").await.unwrap(), None);
}

async fn message_secrets_merge(b: &dyn Backend) {
    let entry = |id: &str, secret: u8, expires_at: i64, message_ts: i64| MsgSecretEntry {
        chat: "g1@g.us".into(),
        sender: "1@s.whatsapp.net".into(),
        msg_id: id.into(),
        secret: [secret; 32],
        expires_at,
        message_ts,
    };
    assert_eq!(b.put_msg_secrets(vec![entry("M1", 1, 100, 5), entry("M2", 2, 100, 0)]).await.unwrap(), 2);
    // A later write never shortens a window nor forgets a known parent time; the secret is the new one.
    b.put_msg_secrets(vec![entry("M1", 3, 50, 0)]).await.unwrap();
    assert_eq!(b.get_msg_secret_with_ts("g1@g.us", "1@s.whatsapp.net", "M1").await.unwrap(), Some((vec![3; 32], 5)));
    // Merged within one batch too; 0 is "never".
    b.put_msg_secrets(vec![entry("M2", 4, 0, 7), entry("M2", 5, 200, 6)]).await.unwrap();
    assert_eq!(b.get_msg_secret_with_ts("g1@g.us", "1@s.whatsapp.net", "M2").await.unwrap(), Some((vec![5; 32], 7)));
    b.put_msg_secret("g1@g.us", "2@s.whatsapp.net", "M1", &[6; 32]).await.unwrap();
    assert_eq!(b.get_msg_secret("g1@g.us", "2@s.whatsapp.net", "M1").await.unwrap(), Some(vec![6; 32]));
    assert_eq!(b.get_msg_secret("g1@g.us", "1@s.whatsapp.net", "M9").await.unwrap(), None);
    // M1 expires at 100; M2 and the other sender's never.
    assert_eq!(b.delete_expired_msg_secrets(99).await.unwrap(), 0);
    assert_eq!(b.delete_expired_msg_secrets(100).await.unwrap(), 1);
    assert_eq!(b.get_msg_secret("g1@g.us", "1@s.whatsapp.net", "M1").await.unwrap(), None);
    assert_eq!(b.delete_expired_msg_secrets(i64::MAX).await.unwrap(), 0);
}

async fn pending_inbound_messages(b: &dyn Backend) {
    b.store_pending_inbound("g1@g.us", "1@lid", "M1", b"one").await.unwrap();
    b.store_pending_inbound_batch(&[
        PendingInboundRow { chat: "g1@g.us", sender: "2@lid", id: "M1", message: b"two" },
        PendingInboundRow { chat: "g1@g.us", sender: "1@lid", id: "M2", message: b"three" },
    ])
    .await
    .unwrap();
    assert_eq!(b.get_pending_inbound("g1@g.us", "2@lid", "M1").await.unwrap(), Some(b"two".to_vec()));
    b.delete_pending_inbound("g1@g.us", "1@lid", "M1").await.unwrap();
    assert_eq!(b.get_pending_inbound("g1@g.us", "1@lid", "M1").await.unwrap(), None);
    b.delete_pending_inbound_batch(&[PendingInboundKey { chat: "g1@g.us", sender: "2@lid", id: "M1" }]).await.unwrap();
    assert_eq!(b.get_pending_inbound("g1@g.us", "2@lid", "M1").await.unwrap(), None);
    let now = whatsapp_rust::wacore::time::now_secs();
    assert_eq!(b.delete_expired_pending_inbound(now - 3600).await.unwrap(), 0);
    assert_eq!(b.delete_expired_pending_inbound(now + 60).await.unwrap(), 1);
}

async fn the_device(b: &dyn Backend) {
    assert!(!b.exists().await.unwrap());
    assert!(b.load().await.unwrap().is_none());
    b.create().await.unwrap();
    assert!(b.exists().await.unwrap());
    let mut device = b.load().await.unwrap().expect("create makes a device");
    device.push_name = "Support desk".into();
    device.registration_id = 4242;
    b.save(&device).await.unwrap();
    let read = b.load().await.unwrap().unwrap();
    assert_eq!((read.push_name.as_str(), read.registration_id), ("Support desk", 4242));
    assert_eq!(read.identity_key.public_key, device.identity_key.public_key, "the same identity");
    // What is not stored comes back as the library's defaults: the props a pairing announces.
    assert_eq!(read.device_props.os.as_deref(), Some("rust"));
    assert!(read.device_props.history_sync_config.is_set());
}

#[tokio::test]
async fn values_are_sealed_and_open_only_in_their_own_row() {
    let dir = tempfile::tempdir().unwrap();
    let store = sqlite(dir.path()).await;
    let keys = DeviceKeys::new(store.clone(), sealer(), INSTANCE);
    keys.put_session("1:2@s.whatsapp.net", b"plain session bytes").await.unwrap();
    keys.put_identity("1@s.whatsapp.net", [0x41; 32]).await.unwrap();

    let rows = store.device_keys(INSTANCE, "session", None).await.unwrap();
    assert_eq!(rows.len(), 1);
    assert!(rows[0].value.starts_with("v1."), "sealed: {}", rows[0].value);
    let raw = std::fs::read(dir.path().join("convene.db")).unwrap();
    let wal = std::fs::read(dir.path().join("convene.db-wal")).unwrap_or_default();
    for bytes in [&raw, &wal] {
        assert!(!bytes.windows(19).any(|w| w == b"plain session bytes"), "the session is in the file in clear");
        assert!(!bytes.windows(32).any(|w| w == [0x41; 32]), "the identity key is in the file in clear");
    }

    // The same sealed value under another address, or another instance, does not open.
    let copied = DeviceKeyWrite::Put {
        space: "session",
        scope: String::new(),
        key: "9@s.whatsapp.net".into(),
        value: rows[0].value.clone(),
        number: 0,
    };
    store.write_device_keys(INSTANCE, vec![copied.clone()]).await.unwrap();
    assert!(keys.get_session("9@s.whatsapp.net").await.is_err());
    let other = InstanceId(7_103_000_002);
    store.write_device_keys(other, vec![copied]).await.unwrap();
    assert!(DeviceKeys::new(store.clone(), sealer(), other).get_session("9@s.whatsapp.net").await.is_err());
    // Nor with another server's key.
    let other_key = DeviceKeys::new(store.clone(), Arc::new(SecretBox::new([8; 32])), INSTANCE);
    assert!(other_key.get_session("1:2@s.whatsapp.net").await.is_err());
    store.close().await;
}

#[tokio::test]
async fn deleted_keys_stay_deleted_whatever_the_stopped_session_still_writes() {
    let dir = tempfile::tempdir().unwrap();
    let store = sqlite(dir.path()).await;
    let old_session = DeviceKeys::new(store.clone(), sealer(), INSTANCE);
    old_session.create().await.unwrap();
    old_session.put_session("1@s.whatsapp.net", b"old").await.unwrap();
    let old_identity = old_session.load().await.unwrap().unwrap().identity_key.public_key;

    // Logging out: the session's keys are closed, then deleted.
    old_session.close().await;
    store.forget_device_keys(INSTANCE).await.unwrap();
    assert!(old_session.put_session("2@s.whatsapp.net", b"late").await.is_err(), "a late write is refused");
    assert!(old_session.save(&old_session.load().await.unwrap().unwrap_or_default()).await.is_err());

    // The next session's new device starts with nothing of the old one's, even rows written behind its back.
    store
        .write_device_keys(
            INSTANCE,
            vec![DeviceKeyWrite::Put {
                space: "session",
                scope: String::new(),
                key: "3@s.whatsapp.net".into(),
                value: "v1.stale".into(),
                number: 0,
            }],
        )
        .await
        .unwrap();
    let new_session = DeviceKeys::new(store.clone(), sealer(), INSTANCE);
    new_session.create().await.unwrap();
    assert_ne!(new_session.load().await.unwrap().unwrap().identity_key.public_key, old_identity);
    assert_eq!(new_session.get_session("1@s.whatsapp.net").await.unwrap(), None);
    assert!(store.device_keys(INSTANCE, "session", None).await.unwrap().is_empty(), "the stale row went with it");
    store.close().await;
}

#[tokio::test]
async fn instances_keep_their_own_rows_and_forgetting_one_leaves_the_other() {
    let dir = tempfile::tempdir().unwrap();
    let store = sqlite(dir.path()).await;
    let (first, second) = (InstanceId(7_103_000_001), InstanceId(7_103_000_002));
    let one = DeviceKeys::new(store.clone(), sealer(), first);
    let two = DeviceKeys::new(store.clone(), sealer(), second);
    one.create().await.unwrap();
    one.put_session("1@s.whatsapp.net", b"one's").await.unwrap();
    assert!(!two.exists().await.unwrap());
    assert_eq!(two.get_session("1@s.whatsapp.net").await.unwrap(), None);
    two.create().await.unwrap();
    two.put_session("1@s.whatsapp.net", b"two's").await.unwrap();
    assert_ne!(
        one.load().await.unwrap().unwrap().identity_key.public_key,
        two.load().await.unwrap().unwrap().identity_key.public_key,
        "two devices"
    );

    store.forget_device_keys(first).await.unwrap();
    assert!(!one.exists().await.unwrap());
    assert_eq!(one.get_session("1@s.whatsapp.net").await.unwrap(), None);
    assert_eq!(two.get_session("1@s.whatsapp.net").await.unwrap().as_deref(), Some(&b"two's"[..]));
    store.close().await;
}

#[tokio::test]
async fn the_device_is_the_same_after_the_database_is_opened_again() {
    let dir = tempfile::tempdir().unwrap();
    let store = sqlite(dir.path()).await;
    let keys = DeviceKeys::new(store.clone(), sealer(), INSTANCE);
    keys.create().await.unwrap();
    let identity = keys.load().await.unwrap().unwrap().identity_key.public_key;
    keys.put_session("1@s.whatsapp.net", b"session").await.unwrap();
    store.close().await;
    drop(keys);

    let reopened = sqlite(dir.path()).await;
    let keys = DeviceKeys::new(reopened.clone(), sealer(), INSTANCE);
    assert_eq!(keys.load().await.unwrap().unwrap().identity_key.public_key, identity);
    assert_eq!(keys.get_session("1@s.whatsapp.net").await.unwrap().as_deref(), Some(&b"session"[..]));
    reopened.close().await;
}
