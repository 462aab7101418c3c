//! Against real WhatsApp, with a number you paired yourself. Skipped unless `CONVENE_LIVE_WHATSAPP_INSTANCE` names a
//! `whatsapp` instance paired with `convene serve` on its default SQLite database (`data/convene.db`, its key in
//! `data/webhook-secrets.key`; `CONVENE_LIVE_DATA_DIR` names another data directory; stop that server first, one
//! session per device) and `CONVENE_LIVE_WHATSAPP_PARTICIPANT` a number to put in a test group (it is added, then the
//! group is left). Run with:
//!
//! ```text
//! CONVENE_LIVE_WHATSAPP_INSTANCE=7103000001 CONVENE_LIVE_WHATSAPP_PARTICIPANT=+15551234567 \
//!     cargo test -p convene-whatsapp --test live -- --ignored --nocapture
//! ```

use std::path::PathBuf;
use std::sync::Arc;

use base64::Engine as _;
use std::time::Duration;

use convene_core::connector::CreateGroupRequest;
use convene_core::{
    Connector, ConnectorReport, ConnectorReports, CreationKey, GroupSettings, GroupSubject, InstanceId, InstanceState,
    ParticipantOutcome, PhoneNumber, SystemClock,
};
use convene_whatsapp::{KeyStorage, WhatsappAccounts, WhatsappConfig};

struct Log;

impl ConnectorReports for Log {
    fn report(&self, instance: InstanceId, event: ConnectorReport) {
        eprintln!("instance {instance}: {event:?}");
    }
}

// Ignored, so a run without a WhatsApp account reports it as skipped rather than passed. Run it with
// `cargo nextest run -p convene-whatsapp --test live --run-ignored only` (or `cargo test … -- --ignored`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a paired WhatsApp account: set CONVENE_LIVE_WHATSAPP_INSTANCE and CONVENE_LIVE_WHATSAPP_PARTICIPANT"]
async fn a_paired_number_creates_reads_renames_and_leaves_a_group() {
    let (Ok(id), Ok(participant)) =
        (std::env::var("CONVENE_LIVE_WHATSAPP_INSTANCE"), std::env::var("CONVENE_LIVE_WHATSAPP_PARTICIPANT"))
    else {
        panic!("set CONVENE_LIVE_WHATSAPP_INSTANCE and CONVENE_LIVE_WHATSAPP_PARTICIPANT to run against WhatsApp");
    };
    let id = InstanceId::parse(&id).expect("CONVENE_LIVE_WHATSAPP_INSTANCE is an instance id");
    let participant = PhoneNumber::parse(&participant).expect("CONVENE_LIVE_WHATSAPP_PARTICIPANT is a phone number");
    let dir = PathBuf::from(std::env::var("CONVENE_LIVE_DATA_DIR").unwrap_or_else(|_| "data".into()));
    let store = convene_store::connect(&format!("sqlite://{}", dir.join("convene.db").display()))
        .await
        .expect("the data directory holds convene.db");
    let key = std::fs::read_to_string(dir.join("webhook-secrets.key")).expect("the data directory holds its key");
    let key: [u8; 32] = base64::engine::general_purpose::STANDARD
        .decode(key.trim())
        .ok()
        .and_then(|k| k.try_into().ok())
        .expect("webhook-secrets.key holds 32 bytes in base64");
    let storage = KeyStorage { store, sealer: Arc::new(convene_core::SecretBox::new(key)) };
    let config = WhatsappConfig { data_dir: dir.join("whatsapp"), connect: true };
    let accounts = WhatsappAccounts::new(config, Some(storage), Arc::new(SystemClock), Arc::new(Log));
    let wa = accounts.open_and_wait(id).await.expect("the device keys open");
    assert!(wa.own_number().await.is_some(), "instance {id} is not a paired device");

    for _ in 0..120 {
        if wa.state().await == InstanceState::Connected {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert_eq!(wa.state().await, InstanceState::Connected, "not connected within a minute");

    let request = CreateGroupRequest {
        subject: GroupSubject::parse("Convene live test").unwrap(),
        description: None,
        participants: vec![participant.clone()],
        settings: GroupSettings::default(),
        key: CreationKey::new(),
    };
    let created = wa.create_group(&request).await.expect("created");
    eprintln!("created {} with {:?}", created.metadata.jid, created.participants);
    assert_eq!(created.participants.len(), 1);
    assert_ne!(created.participants[0].outcome, ParticipantOutcome::Failed, "{:?}", created.participants);

    let metadata = wa.group_metadata(&created.metadata.jid).await.expect("metadata");
    assert_eq!(metadata.subject, "Convene live test");
    assert_eq!(metadata.creator, wa.own_number().await);
    let found = wa.find_created_group(&request, convene_core::Timestamp::from_millis(0)).await.expect("listed");
    assert_eq!(found.map(|g| g.jid), Some(created.metadata.jid.clone()), "reconciliation finds it");

    let link = wa.invite_link(&created.metadata.jid, false).await.expect("invite link");
    assert!(link.starts_with("https://chat.whatsapp.com/"), "{link}");
    wa.set_subject(&created.metadata.jid, &GroupSubject::parse("Convene live test (renamed)").unwrap())
        .await
        .expect("renamed");
    wa.leave(&created.metadata.jid).await.expect("left");
    accounts.shutdown().await;
}
