//! Against real WhatsApp, with a number you paired yourself. Skipped unless `CONVENE_LIVE_WHATSAPP_DB` names a paired
//! instance's device file (`data/whatsapp/<instance id>.db` after pairing with `convene serve`; stop that server first,
//! one session per device) and `CONVENE_LIVE_WHATSAPP_PARTICIPANT` a number to put in a test group (it is added, then
//! the group is left). Run with:
//!
//! ```text
//! CONVENE_LIVE_WHATSAPP_DB=data/whatsapp/7103000001.db CONVENE_LIVE_WHATSAPP_PARTICIPANT=+15551234567 \
//!     cargo test -p convene-whatsapp --test live -- --nocapture
//! ```

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use convene_core::connector::CreateGroupRequest;
use convene_core::{
    Connector, ConnectorReport, ConnectorReports, CreationKey, GroupSettings, GroupSubject, InstanceId, InstanceState,
    ParticipantOutcome, PhoneNumber, SystemClock,
};
use convene_whatsapp::{WhatsappAccounts, WhatsappConfig};

struct Log;

impl ConnectorReports for Log {
    fn report(&self, instance: InstanceId, event: ConnectorReport) {
        eprintln!("instance {instance}: {event:?}");
    }
}

// Ignored, so a run without a WhatsApp account reports it as skipped rather than passed. Run it with
// `cargo nextest run -p convene-whatsapp --test live --run-ignored only` (or `cargo test … -- --ignored`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a paired WhatsApp account: set CONVENE_LIVE_WHATSAPP_DB and CONVENE_LIVE_WHATSAPP_PARTICIPANT"]
async fn a_paired_number_creates_reads_renames_and_leaves_a_group() {
    let (Ok(db), Ok(participant)) =
        (std::env::var("CONVENE_LIVE_WHATSAPP_DB"), std::env::var("CONVENE_LIVE_WHATSAPP_PARTICIPANT"))
    else {
        panic!("set CONVENE_LIVE_WHATSAPP_DB and CONVENE_LIVE_WHATSAPP_PARTICIPANT to run against WhatsApp");
    };
    let db = PathBuf::from(db);
    let id = db.file_stem().and_then(|s| s.to_str()).and_then(InstanceId::parse).expect("the file is <instance id>.db");
    let participant = PhoneNumber::parse(&participant).expect("CONVENE_LIVE_WHATSAPP_PARTICIPANT is a phone number");
    let config = WhatsappConfig { data_dir: db.parent().expect("a directory").to_path_buf(), connect: true };
    let accounts = WhatsappAccounts::new(config, Arc::new(SystemClock), Arc::new(Log));
    let wa = accounts.open_and_wait(id).await.expect("the device store opens");
    assert!(wa.own_number().await.is_some(), "{} is not a paired device", db.display());

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
