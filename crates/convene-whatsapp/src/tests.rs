//! Offline tests: golden stanzas (answers shaped as WhatsApp sends them) through the library's public parsers and ours,
//! constructed server errors, library events, and the stored device state.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use convene_core::connector::CreateGroupRequest;
use convene_core::{
    Connector, ConnectorError, ConnectorReport, ConnectorReports, CreationKey, GroupDescription, GroupSettings,
    GroupSubject, InstanceId, InstanceState, ManualClock, MemberRole, ParticipantChange, ParticipantOutcome,
    PhoneNumber, ReportedGroupChange, Timestamp,
};
use whatsapp_rust::NodeBuilder;
use whatsapp_rust::request::IqError;
use whatsapp_rust::types::events::{Event, PairingQrCode, TemporaryBan};
use whatsapp_rust::wacore::iq::groups::{AddParticipantsIq, GroupCreateIq};
use whatsapp_rust::wacore::iq::spec::IqSpec;
use whatsapp_rust::wacore::stanza::groups::GroupNotification;
use whatsapp_rust::wacore_binary::Node;
use whatsapp_rust::wacore_binary::node::NodeContent;
use whatsapp_rust::{Jid, Server};

use super::*;
use crate::create::{CreateGroupWithOutcomes, created_group};
use crate::mapping::{group_change, iq_error, server_error};

fn phone(n: u32) -> PhoneNumber {
    PhoneNumber::parse(&format!("+1201555{n:04}")).unwrap()
}

fn pn(n: u32) -> String {
    format!("1201555{n:04}@s.whatsapp.net")
}

const NOW: Timestamp = Timestamp::from_millis(1_764_000_000_000);

fn request(people: &[u32]) -> CreateGroupRequest {
    CreateGroupRequest {
        subject: GroupSubject::parse("Incident 4711").unwrap(),
        description: Some(GroupDescription::parse("War room").unwrap()),
        participants: people.iter().map(|&n| phone(n)).collect(),
        settings: GroupSettings::default(),
        key: CreationKey("3EB0C431C26A1916E07E".into()),
    }
}

fn participant(n: u32) -> NodeBuilder {
    NodeBuilder::new("participant").attr("jid", pn(n))
}

fn result_iq(children: Vec<Node>) -> Node {
    NodeBuilder::new("iq").attr("from", "g.us").attr("type", "result").attr("id", "1").children(children).build()
}

/// WhatsApp's answer to a `<create>` where three people could not be added: 403 with an add request (privacy),
/// 408 (recently left) and 404 (not on WhatsApp). Shaped as WhatsApp Web receives it.
fn golden_create_answer() -> Node {
    result_iq(vec![
        NodeBuilder::new("group")
            .attr("id", "120363041234567890")
            .attr("creator", pn(101))
            .attr("creation", "1764000000")
            .attr("subject", "Incident 4711")
            .attr("s_t", "1764000000")
            .attr("s_o", pn(101))
            .children([
                participant(101).attr("type", "superadmin").build(),
                participant(102).build(),
                participant(103)
                    .attr("error", "403")
                    .children([NodeBuilder::new("add_request")
                        .attr("code", "AbCd1234EfGh")
                        .attr("expiration", "1764604800")
                        .build()])
                    .build(),
                participant(104).attr("error", "408").build(),
                participant(105).attr("error", "404").build(),
                NodeBuilder::new("description")
                    .attr("id", "ABCDEF")
                    .children([NodeBuilder::new("body").string_content("War room").build()])
                    .build(),
            ])
            .build(),
    ])
}

#[test]
fn the_librarys_own_create_parser_counts_refused_people_as_members() {
    // Why `create.rs` exists: parsed the library's way, the five participants all look like members.
    let spec = GroupCreateIq::new(whatsapp_rust::features::GroupCreateOptions::new("Incident 4711"));
    let parsed = spec.parse_response(&golden_create_answer().as_node_ref()).unwrap();
    assert_eq!(parsed.participants.len(), 5);
}

#[test]
fn a_create_answer_gives_every_requested_person_an_outcome() {
    let req = request(&[102, 103, 104, 105, 106]);
    let spec = CreateGroupWithOutcomes::new(&req).unwrap();
    let answer = spec.parse_response(&golden_create_answer().as_node_ref()).unwrap();
    let created = created_group(&answer, &req.participants).unwrap();

    assert_eq!(created.metadata.jid.as_str(), "120363041234567890@g.us");
    assert_eq!(created.metadata.subject, "Incident 4711");
    assert_eq!(created.metadata.description.as_deref(), Some("War room"));
    assert_eq!(created.metadata.creator, Some(phone(101)));
    assert_eq!(created.metadata.created_at, Timestamp::from_millis(1_764_000_000_000));
    let members: Vec<_> = created.metadata.members.iter().map(|m| (m.phone.clone(), m.role)).collect();
    assert_eq!(members, vec![(phone(101), MemberRole::Creator), (phone(102), MemberRole::Member)]);

    let outcomes: Vec<_> = created.participants.iter().map(|r| (r.phone.clone(), r.outcome, r.code)).collect();
    assert_eq!(
        outcomes,
        vec![
            (phone(102), ParticipantOutcome::Added, Some(200)),
            (phone(103), ParticipantOutcome::PrivacyBlocked, Some(403)),
            (phone(104), ParticipantOutcome::RecentlyLeft, Some(408)),
            (phone(105), ParticipantOutcome::NotOnWhatsapp, Some(404)),
            // Asked for, but the answer does not mention them: reported, not dropped.
            (phone(106), ParticipantOutcome::Failed, None),
        ]
    );
    let add_request = created.participants[1].add_request.clone().expect("the 403 carries an add request");
    assert_eq!(add_request.code, "AbCd1234EfGh");
    assert_eq!(add_request.expires_at, Timestamp::from_millis(1_764_604_800_000));
}

#[test]
fn a_lid_addressed_create_answer_reads_numbers_from_phone_number() {
    let answer = result_iq(vec![
        NodeBuilder::new("group")
            .attr("id", "120363041234567891")
            .attr("addressing_mode", "lid")
            .attr("creator", "88001@lid")
            .attr("creator_pn", pn(101))
            .attr("creation", "1764000000")
            .attr("subject", "Incident 4711")
            .children([
                NodeBuilder::new("participant")
                    .attr("jid", "88001@lid")
                    .attr("phone_number", pn(101))
                    .attr("type", "superadmin")
                    .build(),
                NodeBuilder::new("participant").attr("jid", "88002@lid").attr("phone_number", pn(102)).build(),
                NodeBuilder::new("participant")
                    .attr("jid", "88003@lid")
                    .attr("phone_number", pn(103))
                    .attr("error", "403")
                    .children([NodeBuilder::new("add_request")
                        .attr("code", "Zz99")
                        .attr("expiration", "1764604800")
                        .build()])
                    .build(),
            ])
            .build(),
    ]);
    let req = request(&[102, 103]);
    let parsed = CreateGroupWithOutcomes::new(&req).unwrap().parse_response(&answer.as_node_ref()).unwrap();
    let created = created_group(&parsed, &req.participants).unwrap();
    assert_eq!(created.metadata.creator, Some(phone(101)));
    assert_eq!(created.participants[0].outcome, ParticipantOutcome::Added);
    assert_eq!(created.participants[1].outcome, ParticipantOutcome::PrivacyBlocked);
    assert_eq!(created.participants[1].add_request.as_ref().map(|a| a.code.as_str()), Some("Zz99"));
}

#[test]
fn the_create_stanza_carries_subject_participants_description_and_the_creation_key() {
    let iq = CreateGroupWithOutcomes::new(&request(&[102, 103])).unwrap().build_iq();
    assert_eq!(iq.namespace, "w:g2");
    assert_eq!(iq.to, Jid::new("", Server::Group));
    let Some(NodeContent::Nodes(nodes)) = &iq.content else { panic!("no content: {iq:?}") };
    let create = nodes.iter().find(|n| n.tag == "create").expect("a <create> node");
    let mut attrs = create.attrs();
    assert_eq!(attrs.optional_string("subject").as_deref(), Some("Incident 4711"));
    assert_eq!(attrs.optional_string("key").as_deref(), Some("3EB0C431C26A1916E07E"));
    let jids: Vec<String> = create
        .get_children_by_tag("participant")
        .map(|p| p.attrs().optional_string("jid").unwrap().into_owned())
        .collect();
    assert_eq!(jids, vec![pn(102), pn(103)]);
    assert!(create.get_optional_child("description").is_some());
}

#[test]
fn an_add_answer_maps_each_code_and_keeps_the_add_request() {
    let answer = result_iq(vec![
        NodeBuilder::new("add")
            .children([
                participant(102).build(),
                participant(103)
                    .attr("error", "403")
                    .children([NodeBuilder::new("add_request")
                        .attr("code", "Qq77")
                        .attr("expiration", "1764604800")
                        .build()])
                    .build(),
                participant(104).attr("error", "409").build(),
                participant(105).attr("error", "408").build(),
            ])
            .build(),
    ]);
    let group: Jid = "120363041234567890@g.us".parse().unwrap();
    let users: Vec<Jid> = [102, 103, 104, 105].iter().map(|&n| Jid::pn(format!("1201555{n:04}"))).collect();
    let parsed = AddParticipantsIq::new(&group, &users).parse_response(&answer.as_node_ref()).unwrap();
    let people: Vec<PhoneNumber> = [102, 103, 104, 105, 106].iter().map(|&n| phone(n)).collect();
    let results = crate::connector::results_for(ParticipantChange::Add, &people, &parsed);
    let outcomes: Vec<_> = results.iter().map(|r| r.outcome).collect();
    assert_eq!(
        outcomes,
        vec![
            ParticipantOutcome::Added,
            ParticipantOutcome::PrivacyBlocked,
            ParticipantOutcome::AlreadyMember,
            ParticipantOutcome::RecentlyLeft,
            ParticipantOutcome::Failed,
        ]
    );
    assert_eq!(results[1].add_request.as_ref().map(|a| a.code.as_str()), Some("Qq77"));
}

#[test]
fn server_errors_map_to_what_a_caller_can_act_on() {
    let server = |code: u16, backoff: Option<u32>| {
        iq_error(IqError::ServerError { code, text: "x".into(), error_type: None, backoff })
    };
    assert_eq!(server(429, Some(60)), ConnectorError::RateLimited { retry_after: Some(Duration::from_secs(60)) });
    assert_eq!(server(429, None), ConnectorError::RateLimited { retry_after: None });
    assert_eq!(server(401, None), ConnectorError::NotAdmin);
    assert_eq!(server(403, None), ConnectorError::GroupNotFound);
    assert_eq!(server(404, None), ConnectorError::GroupNotFound);
    assert_eq!(server(406, None), ConnectorError::Rejected { code: 406, text: "x".into() });
    assert_eq!(
        server_error(500, "internal-server-error".into(), None).to_string(),
        "the network refused the request: internal-server-error (code 500)"
    );
    // Sent with no answer: maybe done. Never sent: certainly not.
    assert_eq!(iq_error(IqError::Timeout), ConnectorError::OutcomeUnknown);
    assert!(matches!(iq_error(IqError::NotConnected), ConnectorError::NotConnected(_)));
    assert!(matches!(iq_error(IqError::InternalChannelClosed), ConnectorError::NotConnected(_)));
}

fn notification(action: Node) -> GroupNotification {
    let node = NodeBuilder::new("notification")
        .attr("from", "120363041234567890@g.us")
        .attr("type", "w:gp2")
        .attr("id", "2")
        .attr("participant", pn(109))
        .attr("t", "1764000100")
        .children([action])
        .build();
    GroupNotification::try_from_node_ref(&node.as_node_ref()).expect("a group notification")
}

#[test]
fn group_notifications_become_group_events() {
    let cases = [
        (
            NodeBuilder::new("add").children([participant(102).build(), participant(103).build()]).build(),
            ReportedGroupChange::ParticipantsAdded(vec![phone(102), phone(103)]),
        ),
        (
            NodeBuilder::new("remove").children([participant(104).build()]).build(),
            ReportedGroupChange::ParticipantsRemoved(vec![phone(104)]),
        ),
        (
            NodeBuilder::new("promote").children([participant(105).build()]).build(),
            ReportedGroupChange::ParticipantsPromoted(vec![phone(105)]),
        ),
        (
            NodeBuilder::new("demote").children([participant(105).build()]).build(),
            ReportedGroupChange::ParticipantsDemoted(vec![phone(105)]),
        ),
        (
            NodeBuilder::new("subject").attr("subject", "Renamed").attr("s_t", "1764000100").build(),
            ReportedGroupChange::Subject("Renamed".into()),
        ),
        (NodeBuilder::new("announcement").build(), ReportedGroupChange::Settings),
        // Through the invite link: WhatsApp says why they were added.
        (
            NodeBuilder::new("add").attr("reason", "invite").children([participant(106).build()]).build(),
            ReportedGroupChange::ParticipantsJoined(vec![phone(106)]),
        ),
        // The author (109, see `notification`) removing themselves is leaving.
        (
            NodeBuilder::new("remove").children([participant(109).build()]).build(),
            ReportedGroupChange::ParticipantsLeft(vec![phone(109)]),
        ),
    ];
    for (action, expected) in cases {
        let parsed = notification(action);
        let by = parsed.participant.as_ref().and_then(crate::mapping::phone_of);
        let changes: Vec<_> = parsed.actions.iter().filter_map(|a| group_change(a, by.as_ref())).collect();
        assert_eq!(changes, vec![expected]);
    }
}

/// Collects what an account reports.
#[derive(Default)]
struct Recorder(Mutex<Vec<(InstanceId, ConnectorReport)>>);

impl ConnectorReports for Recorder {
    fn report(&self, instance: InstanceId, event: ConnectorReport) {
        self.0.lock().unwrap().push((instance, event));
    }
}

impl Recorder {
    fn events(&self) -> Vec<ConnectorReport> {
        self.0.lock().unwrap().iter().map(|(_, e)| e.clone()).collect()
    }
}

struct Offline {
    dir: tempfile::TempDir,
    store: Arc<convene_store::SqliteStore>,
    accounts: Arc<WhatsappAccounts>,
    clock: ManualClock,
    events: Arc<Recorder>,
}

async fn offline() -> Offline {
    accounts(false).await
}

/// The storage `convene serve` gives the accounts: Convene's database (a SQLite file here), sealed.
fn storage(store: &Arc<convene_store::SqliteStore>) -> KeyStorage {
    KeyStorage {
        store: Arc::clone(store) as Arc<dyn convene_core::DeviceKeyStore>,
        sealer: Arc::new(convene_core::SecretBox::new([3; 32])),
    }
}

/// Accounts that dial WhatsApp (`connect`) or only load their stored state.
async fn accounts(connect: bool) -> Offline {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(
        convene_store::SqliteStore::connect(&format!("sqlite://{}", dir.path().join("convene.db").display()))
            .await
            .unwrap(),
    );
    let clock = ManualClock::new(NOW);
    let events = Arc::new(Recorder::default());
    let accounts = WhatsappAccounts::new(
        WhatsappConfig { data_dir: dir.path().join("whatsapp"), connect },
        Some(storage(&store)),
        Arc::new(clock.clone()),
        Arc::clone(&events) as Arc<dyn ConnectorReports>,
    );
    Offline { dir, store, accounts, clock, events }
}

#[tokio::test]
async fn library_events_become_instance_state() {
    let o = offline().await;
    let c = o.accounts.open_and_wait(InstanceId(1)).await.unwrap();
    assert_eq!(c.state().await, InstanceState::Disconnected);

    let qr = PairingQrCode::builder().code("2@abc,def,ghi,jkl".into()).timeout(Duration::from_secs(20)).build();
    c.account.handle_event(&Event::PairingQrCode(qr));
    assert_eq!(c.state().await, InstanceState::Pairing);
    let shown = c.pairing_qr().await.expect("a QR code while pairing");
    assert_eq!(shown.code, "2@abc,def,ghi,jkl");
    assert_eq!(shown.expires_at, NOW.plus(Duration::from_secs(20)));
    assert!(o.events.events().contains(&ConnectorReport::QrReady(shown.clone())), "each QR code is reported");
    o.clock.advance(Duration::from_secs(21));
    assert_eq!(c.pairing_qr().await, None, "an expired QR code is not offered");

    c.account.handle_event(&Event::Connected(whatsapp_rust::types::events::Connected::builder().build()));
    assert_eq!(c.state().await, InstanceState::Connected);

    let ban = TemporaryBan::builder()
        .code(whatsapp_rust::types::events::TempBanReason::from(103))
        .expire(whatsapp_rust::wacore::chrono::TimeDelta::seconds(3600))
        .build();
    c.account.handle_event(&Event::TemporaryBan(ban));
    let until = o.clock.now().plus(Duration::from_secs(3600));
    assert_eq!(c.state().await, InstanceState::TemporarilyBanned { until: Some(until) });
    assert_eq!(
        c.create_group(&request(&[102])).await,
        Err(ConnectorError::TemporarilyBanned { until: Some(until) }),
        "nothing is sent while banned"
    );
    assert!(
        o.events
            .events()
            .contains(&ConnectorReport::StateChanged(InstanceState::TemporarilyBanned { until: Some(until) }))
    );
}

#[tokio::test]
async fn a_not_connected_instance_refuses_every_operation_at_once() {
    let o = offline().await;
    let c = o.accounts.open_and_wait(InstanceId(2)).await.unwrap();
    let group = convene_core::GroupJid::parse("120363041234567890@g.us").unwrap();
    let started = std::time::Instant::now();
    let results = [
        c.create_group(&request(&[102])).await.err(),
        c.group_metadata(&group).await.err(),
        c.joined_groups().await.err(),
        c.change_participants(&group, ParticipantChange::Add, &[phone(102)]).await.err(),
        c.invite_link(&group, false).await.err(),
        c.leave(&group).await.err(),
        c.send_text(&phone(102), "hi").await.err(),
    ];
    for r in results {
        assert!(matches!(r, Some(ConnectorError::NotConnected(_))), "{r:?}");
    }
    // Seven refusals without a network round trip; a generous bound that only a wait for a connection would break.
    assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());
}

/// Writes a linked device's identity into a file as an earlier version kept it (whatsapp-rust's `SqliteStore`), as
/// pairing would, with a Signal session and a LID mapping beside it.
async fn link_device_in_a_file(path: &std::path::Path, number: &str) -> whatsapp_rust::store::SqliteStore {
    use whatsapp_rust::wacore::store::traits::{ProtocolStore as _, SignalStore as _};
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let store = whatsapp_rust::store::SqliteStore::new(&path.to_string_lossy()).await.unwrap();
    store.create_new_device().await.unwrap();
    let mut device = store.load_device_data_for_device(store.device_id()).await.unwrap().unwrap();
    device.pn = Some(Jid::pn(number));
    store.save_device_data_for_device(store.device_id(), &device).await.unwrap();
    store.put_session("15550001111.0:0@s.whatsapp.net", b"a session").await.unwrap();
    store.put_identity("15550001111.0:0@s.whatsapp.net", [5; 32]).await.unwrap();
    let mapping = whatsapp_rust::wacore::store::traits::LidPnMappingEntry {
        lid: "100000012345678".into(),
        phone_number: "15550001111".into(),
        created_at: 1,
        updated_at: 1,
        learning_source: "usync".into(),
    };
    store.put_lid_mapping(&mapping).await.unwrap();
    store
}

/// Writes a linked device into Convene's database for `id`, as pairing through the library would.
async fn link_device(o: &Offline, id: InstanceId, number: &str) {
    use whatsapp_rust::wacore::store::traits::DeviceStore as _;
    let keys =
        DeviceKeys::new(Arc::clone(&o.store) as Arc<dyn convene_core::DeviceKeyStore>, storage(&o.store).sealer, id);
    keys.create().await.unwrap();
    let mut device = keys.load().await.unwrap().unwrap();
    device.pn = Some(Jid::pn(number));
    keys.save(&device).await.unwrap();
}

#[tokio::test]
async fn device_state_survives_a_restart_and_logout_deletes_it() {
    let o = offline().await;
    link_device(&o, InstanceId(3), "12015550101").await;

    let c = o.accounts.open_and_wait(InstanceId(3)).await.unwrap();
    assert_eq!(c.own_number().await, Some(phone(101)), "the stored identity is loaded");
    o.accounts.shutdown().await;

    // A new process: the same database, no pairing.
    let again = reopened(&o);
    let c = again.open_and_wait(InstanceId(3)).await.unwrap();
    assert_eq!(c.own_number().await, Some(phone(101)));

    c.logout().await.unwrap();
    assert_logged_out_as_a_new_device(&o, &c).await;
}

/// After a logout: a new, unpaired device runs, and the linked identity's keys are gone from the database.
async fn assert_logged_out_as_a_new_device(o: &Offline, c: &WhatsappConnector) {
    assert_eq!(c.own_number().await, None, "a new, unpaired device after logout");
    assert_eq!(c.state().await, InstanceState::Disconnected, "the new session's state, not the logout's");
    let keys = DeviceKeys::new(
        Arc::clone(&o.store) as Arc<dyn convene_core::DeviceKeyStore>,
        storage(&o.store).sealer,
        c.account.id,
    );
    let device = whatsapp_rust::wacore::store::traits::DeviceStore::load(&keys).await.unwrap();
    assert!(device.is_none_or(|d| d.pn.is_none()), "the linked identity's keys are gone");
}

/// A start asked for while a logout deletes the keys (`open`'s, which runs in the background) waits for the
/// deletion: it used to load the keys about to be deleted, so that the number came back up as the old identity.
#[tokio::test]
async fn a_start_asked_for_during_a_logout_comes_up_as_a_new_device() {
    let o = offline().await;
    link_device(&o, InstanceId(3), "12015550101").await;
    let c = o.accounts.open_and_wait(InstanceId(3)).await.unwrap();
    assert_eq!(c.own_number().await, Some(phone(101)));

    // Another connection holds the database's write lock, so the logout's deletion of the keys waits for it.
    let holder = rusqlite::Connection::open(o.dir.path().join("convene.db")).unwrap();
    holder.execute_batch("BEGIN IMMEDIATE").unwrap();
    let logout = tokio::spawn({
        let c = c.clone();
        async move { c.logout().await }
    });
    // The session is stopping (its client is gone) and the keys are not deleted yet: ask for a start then.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while c.own_number().await.is_some() {
        assert!(std::time::Instant::now() < deadline, "the logout did not stop the session");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    drop(o.accounts.open(InstanceId(3)));
    tokio::time::sleep(Duration::from_millis(300)).await;
    holder.execute_batch("COMMIT").unwrap();
    logout.await.unwrap().unwrap();
    assert_logged_out_as_a_new_device(&o, &c).await;
}

/// A closed account starts no session again, even when asked through a connector still held: another node runs
/// the number from the same keys by then.
#[tokio::test]
async fn a_closed_account_starts_no_session_again() {
    let o = offline().await;
    link_device(&o, InstanceId(5), "12015550105").await;
    let c = o.accounts.open_and_wait(InstanceId(5)).await.unwrap();
    assert_eq!(c.own_number().await, Some(phone(105)));

    o.accounts.close(InstanceId(5)).await;
    c.account.start().await.unwrap();
    assert_eq!(c.own_number().await, None, "no session runs on the closed account");
}

#[tokio::test]
async fn an_earlier_versions_device_file_is_imported_once_kept_as_a_backup_and_deleted_with_the_keys() {
    use whatsapp_rust::wacore::store::traits::{ProtocolStore as _, SignalStore as _};
    let o = offline().await;
    let file = o.accounts.config().data_dir.join("4.db");
    let old = link_device_in_a_file(&file, "12015550104").await;
    let identity = whatsapp_rust::wacore::store::traits::DeviceStore::load(&old).await.unwrap().unwrap().identity_key;
    drop(old);

    let c = o.accounts.open_and_wait(InstanceId(4)).await.unwrap();
    assert_eq!(c.own_number().await, Some(phone(104)), "paired as before the upgrade");
    let backup = crate::import::imported_name(&file);
    assert!(!file.exists() && backup.exists(), "the file is kept as {}", backup.display());
    o.accounts.shutdown().await;

    // What the database now holds, read as the library reads it: the same device, its session and mapping.
    let keys = DeviceKeys::new(
        Arc::clone(&o.store) as Arc<dyn convene_core::DeviceKeyStore>,
        storage(&o.store).sealer,
        InstanceId(4),
    );
    let device = whatsapp_rust::wacore::store::traits::DeviceStore::load(&keys).await.unwrap().unwrap();
    assert_eq!(device.identity_key.public_key, identity.public_key, "the same identity, not a new device");
    assert_eq!(keys.get_session("15550001111.0:0@s.whatsapp.net").await.unwrap().as_deref(), Some(&b"a session"[..]));
    assert_eq!(keys.load_identity("15550001111.0:0@s.whatsapp.net").await.unwrap(), Some([5; 32]));
    assert_eq!(keys.get_pn_mapping("15550001111").await.unwrap().map(|m| m.lid), Some("100000012345678".into()));

    // A file found again beside the imported keys (a restored backup of the data directory) is not imported over
    // them, and is left where it is.
    drop(link_device_in_a_file(&file, "12015550199").await);
    let again = reopened(&o);
    let c = again.open_and_wait(InstanceId(4)).await.unwrap();
    assert_eq!(c.own_number().await, Some(phone(104)), "the database's device, not the file's");
    assert!(file.exists() && backup.exists());
    again.remove(InstanceId(4)).await.unwrap();
    assert!(!backup.exists() && !file.exists(), "deleting the instance deletes the files of its keys");
    assert!(whatsapp_rust::wacore::store::traits::DeviceStore::load(&keys).await.unwrap().is_none());
}

fn reopened(o: &Offline) -> Arc<WhatsappAccounts> {
    WhatsappAccounts::new(
        o.accounts.config().clone(),
        Some(storage(&o.store)),
        Arc::new(o.clock.clone()),
        Arc::clone(&o.events) as Arc<dyn ConnectorReports>,
    )
}

#[test]
fn the_invite_message_carries_the_code_group_and_expiry() {
    let group = convene_core::GroupJid::parse("120363041234567890@g.us").unwrap();
    let m = crate::connector::group_invite_message(&group, "Incident 4711", "AbCd1234EfGh", NOW);
    let invite = m.group_invite_message.as_option().expect("a group invite");
    assert_eq!(invite.group_jid.as_deref(), Some("120363041234567890@g.us"));
    assert_eq!(invite.invite_code.as_deref(), Some("AbCd1234EfGh"));
    assert_eq!(invite.invite_expiration, Some(NOW.as_secs()));
    assert_eq!(invite.group_name.as_deref(), Some("Incident 4711"));
}

/// The real library on this machine, which cannot reach WhatsApp: the first attempt fails at once, the library
/// retries on its backoff, and the account reports one outage with the error in words. Where WhatsApp answers (a QR
/// code comes), there is no outage to observe and the test stops there.
#[tokio::test]
async fn a_session_that_cannot_reach_whatsapp_reports_one_outage_with_the_error_and_stops_when_told() {
    let o = accounts(true).await;
    let started = std::time::Instant::now();
    let c = o.accounts.open_and_wait(InstanceId(5)).await.unwrap();
    let deadline = Duration::from_secs(30);

    // Three failed attempts: the third waits 2 s (the clock stands still, so the estimate is exact).
    let third_failure_waits = Some(NOW.plus(Duration::from_secs(2)));
    let mut first_unreachable = None;
    loop {
        match c.state().await {
            InstanceState::Pairing => {
                eprintln!("WhatsApp answered from this machine: there is no outage to observe here");
                return;
            }
            InstanceState::Unreachable { next_retry_at, error, .. } => {
                first_unreachable.get_or_insert(started.elapsed());
                assert!(error.contains("web.whatsapp.com"), "{error}");
                if next_retry_at == third_failure_waits {
                    break;
                }
            }
            _ => {}
        }
        assert!(started.elapsed() < deadline, "no third failed attempt within {deadline:?}: {:?}", c.state().await);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let first_unreachable = first_unreachable.unwrap();
    assert!(first_unreachable < Duration::from_secs(10), "unreachable only after {first_unreachable:?}");
    let reported: Vec<InstanceState> = o
        .events
        .events()
        .into_iter()
        .filter_map(|e| match e {
            ConnectorReport::StateChanged(state) => Some(state),
            _ => None,
        })
        .collect();
    assert_eq!(reported.len(), 2, "connecting, then one outage: {reported:?}");
    assert_eq!(reported[0], InstanceState::Connecting);
    assert!(matches!(reported[1], InstanceState::Unreachable { .. }), "{reported:?}");

    // Shutting down waits for the library's run loop to end, backoff sleep included.
    tokio::time::timeout(Duration::from_secs(10), o.accounts.shutdown()).await.expect("the session stops");
}
