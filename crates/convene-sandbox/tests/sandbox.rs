//! The sandbox's WhatsApp rules, as a connector sees them.

use std::sync::Arc;
use std::time::Duration;

use sqlx::Connection as _;

use convene_core::connector::{CreateGroupRequest, CreatedGroup};
use convene_core::{
    Clock, Connector, ConnectorError, ConnectorReport, ConnectorReports, CreationKey, GroupDescription, GroupJid,
    GroupSettings, GroupSettingsPatch, GroupSubject, InstanceId, InstanceState, ManualClock, MemberRole,
    ParticipantChange, ParticipantOutcome, PhoneNumber, Timestamp,
};
use convene_sandbox::{
    Faults, GroupAddPrivacy, InboxKind, JoinResult, NetworkLimits, PersonPatch, SandboxConfig, SandboxConnector,
    SandboxError, SandboxNetwork,
};

const DAY: Duration = Duration::from_secs(86_400);

fn phone(n: u16) -> PhoneNumber {
    PhoneNumber::parse(&format!("+1713715{n:04}")).unwrap()
}

struct TestWorld {
    net: Arc<SandboxNetwork>,
    clock: ManualClock,
    /// Account 1000, the creator of the groups in these tests.
    owner: SandboxConnector,
}

async fn world_with(config: SandboxConfig) -> TestWorld {
    let clock = ManualClock::new(Timestamp::from_millis(1_795_000_000_000));
    let net = SandboxNetwork::open(None, config, Arc::new(clock.clone())).await.unwrap();
    net.register(&[phone(1000)]).await.unwrap();
    let owner = net.connector(phone(1000));
    TestWorld { net, clock, owner }
}

async fn world() -> TestWorld {
    world_with(SandboxConfig::default()).await
}

fn request(participants: &[PhoneNumber]) -> CreateGroupRequest {
    CreateGroupRequest {
        subject: GroupSubject::parse("War room").unwrap(),
        description: None,
        participants: participants.to_vec(),
        settings: GroupSettings::default(),
        key: CreationKey::new(),
    }
}

async fn set_privacy(net: &SandboxNetwork, who: &PhoneNumber, group_add: GroupAddPrivacy) {
    net.upsert_person(who, &PersonPatch { group_add: Some(group_add), ..Default::default() }).await.unwrap();
}

async fn create(c: &SandboxConnector, participants: &[PhoneNumber]) -> CreatedGroup {
    c.create_group(&request(participants)).await.unwrap()
}

fn outcomes(created: &CreatedGroup) -> Vec<ParticipantOutcome> {
    created.participants.iter().map(|p| p.outcome).collect()
}

#[tokio::test]
async fn the_creator_and_people_with_privacy_everyone_become_members() {
    // Arrange
    let w = world().await;
    // Act
    let created = create(&w.owner, &[phone(1), phone(1000), phone(2)]).await;
    // Assert: the creator in the participant list is ignored
    assert_eq!(outcomes(&created), [ParticipantOutcome::Added, ParticipantOutcome::Added]);
    let members = &created.metadata.members;
    assert_eq!((&members[0].phone, members[0].role), (&phone(1000), MemberRole::Creator));
    assert_eq!(members.len(), 3);
    assert_eq!(w.net.group(&created.metadata.jid).await.unwrap().members, *members);
}

#[tokio::test]
async fn contacts_privacy_admits_only_adders_in_the_persons_contacts() {
    // Arrange: 1 has 1000 in their contacts, 2 does not
    let w = world().await;
    let patch = PersonPatch {
        group_add: Some(GroupAddPrivacy::Contacts),
        add_contacts: vec![phone(1000)],
        ..Default::default()
    };
    w.net.upsert_person(&phone(1), &patch).await.unwrap();
    set_privacy(&w.net, &phone(2), GroupAddPrivacy::Contacts).await;
    // Act
    let created = create(&w.owner, &[phone(1), phone(2)]).await;
    // Assert
    assert_eq!(outcomes(&created), [ParticipantOutcome::Added, ParticipantOutcome::PrivacyBlocked]);
    assert_eq!(created.participants[1].code, Some(403));
    assert!(created.participants[1].add_request.is_some());
}

#[tokio::test]
async fn nobody_privacy_refuses_with_an_add_request_valid_for_three_days() {
    let w = world().await;
    set_privacy(&w.net, &phone(1), GroupAddPrivacy::Nobody).await;
    let created = create(&w.owner, &[phone(1)]).await;
    let result = &created.participants[0];
    assert_eq!(result.outcome, ParticipantOutcome::PrivacyBlocked);
    let add_request = result.add_request.as_ref().expect("a 403 privacy refusal carries an add request");
    assert_eq!(add_request.expires_at, w.clock.now().plus(3 * DAY));
    assert_eq!(created.metadata.members.len(), 1, "the group exists with only its creator");
}

#[tokio::test]
async fn someone_who_blocked_the_adder_is_refused_without_an_add_request() {
    let w = world().await;
    w.net.upsert_person(&phone(1), &PersonPatch { block: vec![phone(1000)], ..Default::default() }).await.unwrap();
    let created = create(&w.owner, &[phone(1)]).await;
    assert_eq!(created.participants[0].outcome, ParticipantOutcome::PrivacyBlocked);
    assert_eq!(created.participants[0].add_request, None);
}

#[tokio::test]
async fn unregistered_numbers_are_not_on_whatsapp() {
    // Arrange: 1 is explicitly unregistered; in the second world unknown numbers are unregistered too
    let w = world().await;
    w.net.upsert_person(&phone(1), &PersonPatch { registered: Some(false), ..Default::default() }).await.unwrap();
    let strict = world_with(SandboxConfig { unknown_numbers_registered: false, ..Default::default() }).await;
    // Act
    let created = create(&w.owner, &[phone(1), phone(2)]).await;
    let strict_created = create(&strict.owner, &[phone(2)]).await;
    // Assert
    assert_eq!(outcomes(&created), [ParticipantOutcome::NotOnWhatsapp, ParticipantOutcome::Added]);
    assert_eq!(outcomes(&strict_created), [ParticipantOutcome::NotOnWhatsapp]);
    assert!(!strict.net.person(&phone(2)).await.unwrap().registered);
    assert!(strict.net.person(&phone(1000)).await.unwrap().registered, "a registered account is");
}

#[tokio::test]
async fn someone_who_left_cannot_be_added_back_until_recently_left_secs_pass() {
    // Arrange
    let w = world().await;
    let jid = create(&w.owner, &[phone(1)]).await.metadata.jid;
    w.net.person_leaves(&jid, &phone(1)).await.unwrap();
    let one = [phone(1)];
    let add = || w.owner.change_participants(&jid, ParticipantChange::Add, &one);
    // Act / Assert
    w.clock.advance(DAY - Duration::from_secs(1));
    assert_eq!(add().await.unwrap()[0].outcome, ParticipantOutcome::RecentlyLeft);
    w.clock.advance(Duration::from_secs(1));
    assert_eq!(add().await.unwrap()[0].outcome, ParticipantOutcome::Added);
}

#[tokio::test]
async fn a_removed_member_can_be_added_back_at_once() {
    let w = world().await;
    let jid = create(&w.owner, &[phone(1)]).await.metadata.jid;
    let removed = w.owner.change_participants(&jid, ParticipantChange::Remove, &[phone(1), phone(2)]).await.unwrap();
    assert_eq!(
        removed.iter().map(|r| r.outcome).collect::<Vec<_>>(),
        [ParticipantOutcome::Removed, ParticipantOutcome::NotMember]
    );
    let added = w.owner.change_participants(&jid, ParticipantChange::Add, &[phone(1), phone(1)]).await.unwrap();
    assert_eq!(
        added.iter().map(|r| r.outcome).collect::<Vec<_>>(),
        [ParticipantOutcome::Added, ParticipantOutcome::AlreadyMember]
    );
}

#[tokio::test]
async fn an_accepted_invite_makes_a_member_and_an_expired_one_is_refused() {
    // Arrange: 1 and 2 refuse adds, so each gets an add request
    let w = world().await;
    set_privacy(&w.net, &phone(1), GroupAddPrivacy::Nobody).await;
    set_privacy(&w.net, &phone(2), GroupAddPrivacy::Nobody).await;
    let jid = create(&w.owner, &[phone(1), phone(2)]).await.metadata.jid;
    // Act / Assert
    assert_eq!(w.net.accept_invite(&phone(1), &jid).await, Ok(JoinResult::Joined));
    assert_eq!(w.net.accept_invite(&phone(3), &jid).await, Err(SandboxError::NotInvited));
    w.clock.advance(3 * DAY);
    assert_eq!(w.net.accept_invite(&phone(2), &jid).await, Err(SandboxError::InviteExpired));
    let members: Vec<_> = w.net.group(&jid).await.unwrap().members.into_iter().map(|m| m.phone).collect();
    assert_eq!(members, [phone(1000), phone(1)]);
}

#[tokio::test]
async fn anyone_can_join_by_link_until_the_link_is_reset() {
    // Arrange
    let w = world().await;
    let jid = create(&w.owner, &[]).await.metadata.jid;
    let link = w.owner.invite_link(&jid, false).await.unwrap();
    // Act
    let joined = w.net.join_by_link(&phone(1), &link).await;
    let new_link = w.owner.invite_link(&jid, true).await.unwrap();
    // Assert
    assert_eq!(joined, Ok(JoinResult::Joined));
    assert_ne!(new_link, link);
    assert_eq!(w.net.join_by_link(&phone(2), &link).await, Err(SandboxError::InvalidInviteCode));
    let code = new_link.trim_start_matches("https://chat.whatsapp.com/");
    assert_eq!(code, w.net.group(&jid).await.unwrap().invite_code);
    assert_eq!(w.net.join_by_link(&phone(2), code).await, Ok(JoinResult::Joined));
    assert_eq!(w.net.join_by_link(&phone(2), code).await, Err(SandboxError::AlreadyMember));
}

#[tokio::test]
async fn with_join_approval_a_link_join_becomes_a_pending_request() {
    let w = world().await;
    let mut req = request(&[]);
    req.settings.join_approval = true;
    let jid = w.owner.create_group(&req).await.unwrap().metadata.jid;
    let code = w.net.group(&jid).await.unwrap().invite_code;
    assert_eq!(w.net.join_by_link(&phone(1), &code).await, Ok(JoinResult::Pending));
    let group = w.net.group(&jid).await.unwrap();
    assert_eq!(group.pending_join_requests, [phone(1)]);
    assert_eq!(group.members.len(), 1);
}

#[tokio::test]
async fn the_creator_cannot_be_removed_or_demoted() {
    // Arrange: 1 is promoted to admin and tries to get rid of the creator
    let w = world().await;
    let jid = create(&w.owner, &[phone(1)]).await.metadata.jid;
    let admin = w.net.connector(phone(1));
    let promoted = w.owner.change_participants(&jid, ParticipantChange::Promote, &[phone(1)]).await.unwrap();
    assert_eq!(promoted[0].outcome, ParticipantOutcome::Promoted);
    // Act
    let removed = admin.change_participants(&jid, ParticipantChange::Remove, &[phone(1000)]).await.unwrap();
    let demoted = admin.change_participants(&jid, ParticipantChange::Demote, &[phone(1000)]).await.unwrap();
    // Assert
    assert_eq!((removed[0].outcome, removed[0].code), (ParticipantOutcome::NotAllowed, Some(406)));
    assert_eq!(demoted[0].outcome, ParticipantOutcome::NotAllowed);
    assert_eq!(w.net.group(&jid).await.unwrap().members[0].role, MemberRole::Creator);
}

#[tokio::test]
async fn a_member_who_is_not_an_admin_cannot_change_participants_or_settings() {
    let w = world().await;
    let jid = create(&w.owner, &[phone(1)]).await.metadata.jid;
    let member = w.net.connector(phone(1));
    let added = member.change_participants(&jid, ParticipantChange::Add, &[phone(2)]).await;
    assert_eq!(added, Err(ConnectorError::NotAdmin));
    assert_eq!(member.set_settings(&jid, &GroupSettingsPatch::default()).await, Err(ConnectorError::NotAdmin));
    assert_eq!(member.invite_link(&jid, false).await, Err(ConnectorError::NotAdmin));
    let outsider = w.net.connector(phone(2));
    assert_eq!(outsider.group_metadata(&jid).await, Err(ConnectorError::GroupNotFound));
}

#[tokio::test]
async fn locked_info_limits_subject_changes_to_admins() {
    let w = world().await;
    let jid = create(&w.owner, &[phone(1)]).await.metadata.jid;
    let member = w.net.connector(phone(1));
    let subject = GroupSubject::parse("Renamed").unwrap();
    assert_eq!(member.set_subject(&jid, &subject).await, Ok(()));
    let lock = GroupSettingsPatch { locked_info: Some(true), ..Default::default() };
    w.owner.set_settings(&jid, &lock).await.unwrap();
    assert_eq!(member.set_subject(&jid, &subject).await, Err(ConnectorError::NotAdmin));
    let description = GroupDescription::parse("Plans").unwrap();
    w.owner.set_description(&jid, &description).await.unwrap();
    let group = w.net.group(&jid).await.unwrap();
    assert_eq!((group.subject.as_str(), group.description.as_deref()), ("Renamed", Some("Plans")));
}

#[tokio::test]
async fn participants_beyond_the_group_size_limit_get_500() {
    let w = world_with(SandboxConfig { max_group_size: 3, ..Default::default() }).await;
    let created = create(&w.owner, &[phone(1), phone(2), phone(3)]).await;
    assert_eq!(outcomes(&created), [ParticipantOutcome::Added, ParticipantOutcome::Added, ParticipantOutcome::Failed]);
    assert_eq!(created.participants[2].code, Some(500));
    assert_eq!(
        w.net.join_by_link(&phone(4), &w.net.group(&created.metadata.jid).await.unwrap().invite_code).await,
        Err(SandboxError::GroupFull)
    );
}

#[tokio::test]
async fn when_the_last_admin_leaves_the_oldest_member_becomes_admin() {
    let w = world().await;
    let created = create(&w.owner, &[phone(1), phone(2)]).await;
    let jid = created.metadata.jid;
    w.owner.leave(&jid).await.unwrap();
    let group = w.net.group(&jid).await.unwrap();
    assert_eq!((&group.members[0].phone, group.members[0].role), (&phone(1), MemberRole::Admin));
    assert_eq!(group.members[1].role, MemberRole::Member);
    assert!(w.owner.joined_groups().await.unwrap().is_empty());
    let again = w.net.connector(phone(1)).change_participants(&jid, ParticipantChange::Add, &[phone(1000)]).await;
    assert_eq!(again.unwrap()[0].outcome, ParticipantOutcome::RecentlyLeft, "leaving counts as leaving");
}

#[tokio::test]
async fn messages_reach_registered_inboxes_unless_the_recipient_blocked_the_sender() {
    let w = world().await;
    w.net.upsert_person(&phone(9), &PersonPatch { registered: Some(false), ..Default::default() }).await.unwrap();
    w.net.upsert_person(&phone(2), &PersonPatch { block: vec![phone(1000)], ..Default::default() }).await.unwrap();
    let jid = create(&w.owner, &[]).await.metadata.jid;
    let expires_at = w.clock.now().plus(3 * DAY);
    w.owner.send_text(&phone(1), "hello").await.unwrap();
    w.owner.send_group_invite(&phone(1), &jid, "War room", "abc", expires_at).await.unwrap();
    let inbox = w.net.inbox(&phone(1)).await.unwrap();
    assert_eq!(inbox[0].kind, InboxKind::Text { text: "hello".into() });
    assert!(matches!(&inbox[1].kind, InboxKind::GroupInvite { code, .. } if code == "abc"));
    let refused = w.owner.send_text(&phone(9), "hello").await;
    assert!(matches!(refused, Err(ConnectorError::Rejected { code: 404, .. })), "{refused:?}");
    assert_eq!(w.owner.send_text(&phone(2), "hello").await, Ok(()), "WhatsApp accepts it...");
    assert!(w.net.inbox(&phone(2)).await.unwrap().is_empty(), "...but never delivers it");
}

#[tokio::test]
async fn a_created_group_survives_reopening_the_world_file_and_the_generator_continues() {
    // Arrange
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("world").join("sandbox.db");
    let clock = Arc::new(ManualClock::new(Timestamp::from_millis(1_795_000_000_000)));
    let net = SandboxNetwork::open(Some(path.clone()), SandboxConfig::default(), clock.clone()).await.unwrap();
    let first = create(&net.connector(phone(1000)), &[phone(1)]).await.metadata;
    drop(net);
    // Act
    let net = SandboxNetwork::open(Some(path), SandboxConfig::default(), clock).await.unwrap();
    let second = create(&net.connector(phone(1000)), &[]).await.metadata;
    // Assert
    let reloaded = net.group(&first.jid).await.unwrap();
    assert_eq!(reloaded.members, first.members);
    assert_ne!(second.jid, first.jid);
    assert_eq!(net.groups().await.unwrap().len(), 2);
}

#[tokio::test]
async fn group_ids_increase_with_each_creation_so_that_they_append_to_the_indexes_holding_them() {
    // Arrange
    let w = world().await;
    let mut jids = Vec::new();

    // Act
    for _ in 0..20 {
        jids.push(create(&w.owner, &[phone(1)]).await.metadata.jid.to_string());
    }

    // Assert: the same length, so text order is numeric order.
    let mut sorted = jids.clone();
    sorted.sort();
    assert_eq!(jids, sorted, "each id is past the last one's");
}

#[tokio::test]
async fn the_same_seed_and_calls_give_the_same_ids_and_other_seeds_do_not() {
    async fn run(seed: u64) -> Vec<String> {
        let w = world_with(SandboxConfig { seed, ..Default::default() }).await;
        set_privacy(&w.net, &phone(1), GroupAddPrivacy::Nobody).await;
        let mut ids = Vec::new();
        for _ in 0..3 {
            let created = create(&w.owner, &[phone(1)]).await;
            ids.push(created.metadata.jid.to_string());
            ids.push(created.participants[0].add_request.clone().unwrap().code);
            ids.push(w.owner.invite_link(&created.metadata.jid, true).await.unwrap());
        }
        ids
    }
    let a = run(7).await;
    assert!(GroupJid::parse(&a[0]).is_some_and(|j| j.user().len() == 18 && j.user().starts_with("120363")));
    assert_eq!(a, run(7).await);
    assert_ne!(a, run(8).await);
}

#[tokio::test]
async fn a_lost_reply_still_creates_a_group_that_find_created_group_finds() {
    // Arrange
    let w = world().await;
    w.net.set_faults(Faults { reply_lost_rate: 1.0, ..Default::default() }).await.unwrap();
    let req = request(&[phone(1)]);
    // Act
    let result = w.owner.create_group(&req).await;
    // Assert
    assert_eq!(result, Err(ConnectorError::OutcomeUnknown));
    let found =
        w.owner.find_created_group(&req, Timestamp::from_millis(0)).await.unwrap().expect("the group was created");
    assert_eq!(found.members.len(), 2);
    assert_eq!(w.net.groups().await.unwrap().len(), 1);
    assert_eq!(
        w.owner
            .find_created_group(
                &CreateGroupRequest { key: CreationKey::new(), ..req.clone() },
                Timestamp::from_millis(0)
            )
            .await,
        Ok(None)
    );
}

#[tokio::test]
async fn an_injected_error_creates_nothing() {
    let w = world().await;
    w.net.set_faults(Faults { error_rate: 1.0, ..Default::default() }).await.unwrap();
    let req = request(&[phone(1)]);
    let result = w.owner.create_group(&req).await;
    assert_eq!(result, Err(ConnectorError::Other("injected fault".into())));
    assert!(w.net.groups().await.unwrap().is_empty());
    assert_eq!(w.owner.find_created_group(&req, Timestamp::from_millis(0)).await, Ok(None));
}

#[tokio::test]
async fn fault_rates_outside_zero_to_one_are_refused() {
    let w = world().await;
    let refused = w.net.set_faults(Faults { error_rate: 1.5, ..Default::default() }).await;
    assert!(matches!(refused, Err(SandboxError::InvalidFaults(_))));
    assert_eq!(w.net.faults(), Faults::default());
}

/// Records what the network reports to the instances listening.
#[derive(Default)]
struct Reports(std::sync::Mutex<Vec<ConnectorReport>>);

impl ConnectorReports for Reports {
    fn report(&self, _instance: InstanceId, event: ConnectorReport) {
        self.0.lock().unwrap().push(event);
    }
}

#[tokio::test]
async fn an_unreachable_network_refuses_every_call_and_reports_its_start_and_end_once() {
    // Arrange
    let w = world().await;
    let reports = Arc::new(Reports::default());
    w.net.listen(phone(1000), InstanceId(7103000001), reports.clone());
    let began = w.clock.now();
    let unreachable = Faults { unreachable: true, ..Default::default() };

    // Act: cut off, cut off again later (the same outage), then back.
    w.net.set_faults(unreachable.clone()).await.unwrap();
    w.clock.advance(Duration::from_secs(60));
    w.net.set_faults(Faults { latency_ms: 1, ..unreachable }).await.unwrap();
    let state = w.owner.state().await;
    let refused = w.owner.create_group(&request(&[phone(1)])).await;
    w.net.set_faults(Faults::default()).await.unwrap();

    // Assert
    let InstanceState::Unreachable { since, next_retry_at, ref error } = state else { panic!("{state:?}") };
    assert_eq!((since, next_retry_at), (began, None), "the outage began when the fault went on");
    assert!(error.contains("cannot be reached"), "{error}");
    let Err(ConnectorError::NotConnected(why)) = refused else { panic!("{refused:?}") };
    assert!(why.starts_with("WhatsApp cannot be reached") && why.contains(error.as_str()), "{why}");
    assert!(w.net.groups().await.unwrap().is_empty(), "nothing was created");
    assert_eq!(
        *reports.0.lock().unwrap(),
        [ConnectorReport::StateChanged(state.clone()), ConnectorReport::StateChanged(InstanceState::Connected)]
    );
    assert_eq!(w.owner.state().await, InstanceState::Connected);
}

#[tokio::test]
async fn injected_latency_delays_every_call() {
    let w = world().await;
    w.net.set_faults(Faults { latency_ms: 30, ..Default::default() }).await.unwrap();
    let started = std::time::Instant::now();
    w.owner.joined_groups().await.unwrap();
    assert!(started.elapsed() >= Duration::from_millis(30));
}

#[tokio::test]
async fn a_group_whose_reply_was_lost_is_on_disk_before_the_call_returns() {
    // Arrange
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sandbox.db");
    let clock = Arc::new(ManualClock::new(Timestamp::from_millis(1_795_000_000_000)));
    let lossy = SandboxConfig { faults: Faults { reply_lost_rate: 1.0, ..Default::default() }, ..Default::default() };
    let net = SandboxNetwork::open(Some(path.clone()), lossy, clock.clone()).await.unwrap();
    let req = request(&[]);
    assert_eq!(net.connector(phone(1000)).create_group(&req).await, Err(ConnectorError::OutcomeUnknown));
    drop(net);
    // Act: the gateway "crashed"; a new process opens the same world
    let net = SandboxNetwork::open(Some(path), SandboxConfig::default(), clock).await.unwrap();
    // Assert: the world file kept its faults and the group
    assert_eq!(net.faults().reply_lost_rate, 1.0);
    let found = net.connector(phone(1000)).find_created_group(&req, Timestamp::from_millis(0)).await.unwrap();
    assert!(found.is_some());
}

#[tokio::test]
async fn network_limits_are_off_by_default() {
    let w = world().await;
    for _ in 0..5 {
        create(&w.owner, &[phone(1)]).await;
    }
    assert_eq!(w.net.stats().rate_limit_hits, 0);
    assert_eq!(w.net.stats().groups_created, 5);
}

#[tokio::test]
async fn creating_too_fast_is_rate_limited_then_banned_and_the_ban_ends() {
    // Arrange: at most one creation a minute, a ban of an hour after two refusals.
    let limits =
        NetworkLimits { enabled: true, min_interval_secs: 60, max_per_day: 100, ban_after_hits: 2, ban_secs: 3600 };
    let w = world_with(SandboxConfig { network_limits: limits, ..SandboxConfig::default() }).await;
    create(&w.owner, &[phone(1)]).await;

    // Act + Assert: too soon is refused with the wait, a second refusal bans the number.
    w.clock.advance(Duration::from_secs(20));
    let refused = w.owner.create_group(&request(&[phone(1)])).await.unwrap_err();
    assert_eq!(refused, ConnectorError::RateLimited { retry_after: Some(Duration::from_secs(40)) });
    let banned = w.owner.create_group(&request(&[phone(1)])).await.unwrap_err();
    let until = w.clock.now().plus(Duration::from_secs(3600));
    assert_eq!(banned, ConnectorError::TemporarilyBanned { until: Some(until) });
    assert_eq!(w.owner.state().await, convene_core::InstanceState::TemporarilyBanned { until: Some(until) });
    w.clock.advance(Duration::from_secs(600));
    assert!(matches!(w.owner.create_group(&request(&[])).await, Err(ConnectorError::TemporarilyBanned { .. })));
    assert_eq!(w.net.stats().bans, 1);
    assert_eq!(w.net.stats().rate_limit_hits, 2);
    assert_eq!(w.net.groups().await.unwrap().len(), 1, "nothing refused was created");

    w.clock.advance(Duration::from_secs(3600));
    assert_eq!(w.owner.state().await, convene_core::InstanceState::Connected);
    create(&w.owner, &[phone(1)]).await;
}

#[tokio::test]
async fn the_daily_allowance_counts_the_last_24_hours() {
    let limits =
        NetworkLimits { enabled: true, min_interval_secs: 0, max_per_day: 3, ban_after_hits: 10, ban_secs: 60 };
    let w = world_with(SandboxConfig { network_limits: limits, ..SandboxConfig::default() }).await;
    for _ in 0..3 {
        create(&w.owner, &[]).await;
        w.clock.advance(Duration::from_secs(3600));
    }
    let refused = w.owner.create_group(&request(&[])).await.unwrap_err();
    // The first creation was 3 h ago: it leaves the window in 21 h.
    assert_eq!(refused, ConnectorError::RateLimited { retry_after: Some(Duration::from_secs(21 * 3600)) });
    w.clock.advance(Duration::from_secs(21 * 3600));
    create(&w.owner, &[]).await;
}

/// Collects what listening instances are told.
#[derive(Default)]
struct Heard(std::sync::Mutex<Vec<(convene_core::InstanceId, convene_core::ConnectorReport)>>);

impl convene_core::ConnectorReports for Heard {
    fn report(&self, instance: convene_core::InstanceId, event: convene_core::ConnectorReport) {
        self.0.lock().unwrap().push((instance, event));
    }
}

#[tokio::test]
async fn members_instances_hear_people_join_by_link_and_leave() {
    // Arrange: the owner's instance (7) and an outsider's instance (8) listen.
    use convene_core::{ConnectorReport, InstanceId, ReportedGroupChange};
    let w = world().await;
    let heard = Arc::new(Heard::default());
    w.net.listen(phone(1000), InstanceId(7), heard.clone());
    w.net.listen(phone(3000), InstanceId(8), heard.clone());
    let jid = create(&w.owner, &[]).await.metadata.jid;
    let link = w.owner.invite_link(&jid, false).await.unwrap();

    // Act
    w.net.join_by_link(&phone(1), &link).await.unwrap();
    w.net.person_leaves(&jid, &phone(1)).await.unwrap();

    // Assert: only the member's instance hears, in order, with who did it.
    let group = |change| ConnectorReport::Group { group: jid.clone(), change, by: Some(phone(1)) };
    assert_eq!(
        *heard.0.lock().unwrap(),
        vec![
            (InstanceId(7), group(ReportedGroupChange::ParticipantsJoined(vec![phone(1)]))),
            (InstanceId(7), group(ReportedGroupChange::ParticipantsLeft(vec![phone(1)]))),
        ]
    );
}

// ---- on disk: the sandbox's database ----

/// What a crash leaves: the database's files as they are on disk right now, copied while the network still runs
/// (the WAL's index is rebuilt from the WAL on open).
fn files_after_a_crash(from: &std::path::Path) -> tempfile::TempDir {
    let copy = tempfile::tempdir().unwrap();
    for name in ["sandbox.db", "sandbox.db-wal"] {
        if from.join(name).exists() {
            std::fs::copy(from.join(name), copy.path().join(name)).unwrap();
        }
    }
    copy
}

async fn open_at(dir: &std::path::Path, config: SandboxConfig) -> Arc<SandboxNetwork> {
    let clock = Arc::new(ManualClock::new(Timestamp::from_millis(1_795_000_000_000)));
    SandboxNetwork::open(Some(dir.join("sandbox.db")), config, clock).await.unwrap()
}

/// Everything a caller can see of the world, to compare a reopened world with the one that wrote it.
async fn everything(net: &SandboxNetwork, people: &[PhoneNumber]) -> String {
    let mut seen = Vec::new();
    for p in people {
        seen.push((net.person(p).await.unwrap(), net.inbox(p).await.unwrap(), net.ban(p).await.unwrap()));
    }
    format!(
        "{:?}\n{:?}\n{:?}\n{:?}\n{:?}",
        net.groups().await.unwrap(),
        seen,
        net.faults(),
        net.network_limits(),
        net.stats(),
    )
}

/// Opens what a crash would leave of the world in `dir` and checks it is the world `net` shows.
async fn assert_on_disk(net: &SandboxNetwork, dir: &std::path::Path, people: &[PhoneNumber], after: &str) {
    let crashed = files_after_a_crash(dir);
    let reopened = open_at(crashed.path(), SandboxConfig::default()).await;
    assert_eq!(everything(&reopened, people).await, everything(net, people).await, "after {after}");
}

#[tokio::test]
async fn a_created_group_reaches_the_database_file_without_waiting_for_the_wal_to_fill() {
    // Arrange: a world on file, and a change far smaller than the 1,000 pages after which SQLite would copy the WAL
    // into the database file by itself.
    let dir = tempfile::tempdir().unwrap();
    let net = open_at(dir.path(), SandboxConfig::default()).await;
    create(&net.connector(phone(1000)), &[phone(1)]).await;

    // Act: read the database file alone until the group is there.
    let path = dir.path().join("sandbox.db");
    let copied = convene_sqlite::testing::rows_in_database_file_within(&path, "groups", 1, Duration::from_secs(10));

    // Assert
    assert_eq!(copied, 1, "the sandbox's checkpointer copied the group into the database file");
}

#[tokio::test]
async fn every_kind_of_change_is_on_disk_when_its_call_returns() {
    // Arrange
    let dir = tempfile::tempdir().unwrap();
    let net = open_at(dir.path(), SandboxConfig::default()).await;
    let owner = net.connector(phone(1000));
    let people: Vec<PhoneNumber> = (1..=6).map(phone).chain([phone(1000)]).collect();

    // Act and assert: each kind of call that changes the world, each checked on its own
    set_privacy(&net, &phone(1), GroupAddPrivacy::Nobody).await;
    assert_on_disk(&net, dir.path(), &people, "a privacy setting").await;
    let patch = PersonPatch { add_contacts: vec![phone(3)], name: Some("Ann".into()), ..Default::default() };
    net.upsert_person(&phone(2), &patch).await.unwrap();
    assert_on_disk(&net, dir.path(), &people, "a person's contacts and name").await;
    net.set_network_limits(NetworkLimits { enabled: true, min_interval_secs: 0, ..Default::default() }).await.unwrap();
    assert_on_disk(&net, dir.path(), &people, "the network limits").await;
    let jid = create(&owner, &[phone(1), phone(2), phone(3)]).await.metadata.jid;
    assert_on_disk(&net, dir.path(), &people, "a creation with a privacy refusal").await;
    let other = create(&owner, &[phone(4)]).await.metadata.jid;
    assert_on_disk(&net, dir.path(), &people, "a second creation").await;
    owner.change_participants(&jid, ParticipantChange::Promote, &[phone(2)]).await.unwrap();
    assert_on_disk(&net, dir.path(), &people, "a promotion").await;
    owner.change_participants(&jid, ParticipantChange::Remove, &[phone(3)]).await.unwrap();
    assert_on_disk(&net, dir.path(), &people, "a removal").await;
    owner.set_subject(&jid, &GroupSubject::parse("Renamed").unwrap()).await.unwrap();
    assert_on_disk(&net, dir.path(), &people, "a new subject").await;
    owner.set_description(&jid, &GroupDescription::parse("About").unwrap()).await.unwrap();
    assert_on_disk(&net, dir.path(), &people, "a new description").await;
    owner.set_settings(&jid, &GroupSettingsPatch { join_approval: Some(true), ..Default::default() }).await.unwrap();
    assert_on_disk(&net, dir.path(), &people, "new settings").await;
    owner.set_picture(&jid, &convene_core::GroupPicture::parse(vec![0xff, 0xd8, 0xff]).unwrap()).await.unwrap();
    assert_on_disk(&net, dir.path(), &people, "a picture").await;
    let link = owner.invite_link(&other, true).await.unwrap();
    assert_on_disk(&net, dir.path(), &people, "an invite link reset").await;
    net.join_by_link(&phone(5), &link).await.unwrap();
    assert_on_disk(&net, dir.path(), &people, "a join by link").await;
    net.join_by_link(&phone(6), &net.group(&jid).await.unwrap().invite_code).await.unwrap();
    assert_on_disk(&net, dir.path(), &people, "a join request").await;
    net.person_leaves(&other, &phone(4)).await.unwrap();
    assert_on_disk(&net, dir.path(), &people, "a person leaving").await;
    owner.leave(&other).await.unwrap();
    assert_on_disk(&net, dir.path(), &people, "the owner leaving").await;
    net.accept_invite(&phone(1), &jid).await.unwrap();
    assert_on_disk(&net, dir.path(), &people, "an accepted invite").await;
    owner.send_text(&phone(6), "hello").await.unwrap();
    assert_on_disk(&net, dir.path(), &people, "a message").await;
    net.set_faults(Faults { latency_ms: 1, ..Default::default() }).await.unwrap();
    assert_on_disk(&net, dir.path(), &people, "new faults").await;

    // Assert: the generator carries on where it was
    let crashed = files_after_a_crash(dir.path());
    let reopened = open_at(crashed.path(), SandboxConfig::default()).await;
    let next = create(&owner, &[]).await.metadata.jid;
    assert_eq!(create(&reopened.connector(phone(1000)), &[]).await.metadata.jid, next);
}

#[tokio::test]
async fn concurrent_changes_all_reach_the_disk() {
    // Arrange
    let dir = tempfile::tempdir().unwrap();
    let net = open_at(dir.path(), SandboxConfig::default()).await;
    let mut owners = Vec::new();
    for n in 0..16 {
        owners.push(net.connector(phone(2000 + n)));
    }

    // Act: 16 numbers create 25 groups each, all at once
    let mut tasks = tokio::task::JoinSet::new();
    for owner in owners {
        tasks.spawn(async move {
            for _ in 0..25 {
                create(&owner, &[phone(1)]).await;
            }
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.unwrap();
    }
    let crashed = files_after_a_crash(dir.path());

    // Assert
    let reopened = open_at(crashed.path(), SandboxConfig::default()).await;
    assert_eq!(reopened.groups().await.unwrap().len(), 400);
    assert_eq!(reopened.groups().await.unwrap(), net.groups().await.unwrap());
    assert_eq!(reopened.stats().groups_created, 400);
    // Changes that queued while one was written committed with it: fewer syncs than changes.
    let commits = net.transactions_committed();
    assert!(commits < 400, "{commits} commits for 400 creations");
}

#[tokio::test]
async fn a_member_finds_their_groups_and_a_creator_a_group_by_its_key_among_many() {
    // Arrange: 300 groups by two numbers, person 7 in every third
    let w = world().await;
    let other = w.net.connector(phone(2000));
    let mut with_seven = Vec::new();
    let mut keys = Vec::new();
    for n in 0..300 {
        let creator = if n % 2 == 0 { &w.owner } else { &other };
        let participants = if n % 3 == 0 { vec![phone(7)] } else { vec![phone(8)] };
        let req = request(&participants);
        let created = creator.create_group(&req).await.unwrap().metadata;
        if n % 3 == 0 {
            with_seven.push(created.jid.clone());
        }
        keys.push((n % 2 == 0, req, created.jid));
    }

    // Act
    let seven = w.net.connector(phone(7));
    let joined: Vec<GroupJid> = seven.joined_groups().await.unwrap().into_iter().map(|g| g.jid).collect();

    // Assert: in creation order; and each key finds its own group, only for its creator
    assert_eq!(joined, with_seven);
    for (by_owner, req, jid) in keys.iter().step_by(37) {
        let (creator, stranger) = if *by_owner { (&w.owner, &other) } else { (&other, &w.owner) };
        let found = creator.find_created_group(req, Timestamp::from_millis(0)).await.unwrap();
        assert_eq!(found.map(|g| g.jid).as_ref(), Some(jid));
        assert!(stranger.find_created_group(req, Timestamp::from_millis(0)).await.unwrap().is_none());
    }
}

#[tokio::test]
async fn an_inbox_keeps_its_latest_messages_up_to_the_limit() {
    let dir = tempfile::tempdir().unwrap();
    let config = SandboxConfig { inbox_limit: 3, ..Default::default() };
    let net = open_at(dir.path(), config.clone()).await;
    let owner = net.connector(phone(1000));
    for n in 0..5 {
        owner.send_text(&phone(1), &format!("message {n}")).await.unwrap();
        owner.send_text(&phone(2), &format!("message {n}")).await.unwrap();
    }
    let latest: Vec<InboxKind> = (2..5).map(|n| InboxKind::Text { text: format!("message {n}") }).collect();
    let texts = async |net: &SandboxNetwork, who: u16| -> Vec<InboxKind> {
        net.inbox(&phone(who)).await.unwrap().into_iter().map(|m| m.kind).collect()
    };
    assert_eq!(texts(&net, 1).await, latest);
    assert_eq!(texts(&net, 2).await, latest, "each person's inbox keeps its own");
    let crashed = files_after_a_crash(dir.path());
    let reopened = open_at(crashed.path(), config).await;
    assert_eq!(texts(&reopened, 1).await, latest);
}

// ---- world files of an older Convene ----

#[tokio::test]
async fn a_world_file_written_before_the_journal_is_imported_and_set_aside() {
    // Arrange: sandbox.json as Convene wrote it before the journal (pretty-printed, no sequence number)
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("sandbox.json"), include_str!("world-before-journal.json")).unwrap();

    // Act
    let net = open_at(dir.path(), SandboxConfig::default()).await;
    let group = net.group(&GroupJid::parse("120363000000000042@g.us").unwrap()).await.unwrap();
    let created = create(&net.connector(phone(1000)), &[]).await.metadata;
    drop(net);
    let net = open_at(dir.path(), SandboxConfig::default()).await;

    // Assert
    assert_eq!(group.subject, "War room");
    assert_eq!(group.members.len(), 2);
    assert_eq!(net.inbox(&phone(1)).await.unwrap().len(), 1);
    assert_eq!(net.stats().groups_created, 2);
    assert_eq!(net.groups().await.unwrap().len(), 2);
    assert_eq!(net.group(&created.jid).await.unwrap().members.len(), 1);
    assert!(!dir.path().join("sandbox.json").exists());
    assert!(dir.path().join("sandbox.json.imported").exists(), "kept as a backup");
}

/// A world file with a journal, as the last Convene before the database left it after a crash: one entry making
/// person 1 refuse group adds, and half an entry that was never acknowledged.
fn world_with_journal(dir: &std::path::Path, second_entry: &str) {
    std::fs::write(dir.join("sandbox.json"), include_str!("world-before-journal.json")).unwrap();
    let person = r#"{"seq":1,"change":{"person":{"phone":"+17137150001","state":{"registered":true,"group_add":"nobody","contacts":[],"blocked":[],"name":"Ann"}}}}"#;
    std::fs::write(dir.join("sandbox.json.journal"), format!("{person}\n{second_entry}")).unwrap();
}

#[tokio::test]
async fn a_journal_is_imported_with_its_world_file_and_a_torn_last_entry_is_left_out() {
    let dir = tempfile::tempdir().unwrap();
    world_with_journal(dir.path(), r#"{"seq":2,"change":{"gro"#);

    let net = open_at(dir.path(), SandboxConfig::default()).await;

    let person = net.person(&phone(1)).await.unwrap();
    assert_eq!((person.group_add, person.name.as_deref()), (GroupAddPrivacy::Nobody, Some("Ann")));
    assert_eq!(net.groups().await.unwrap().len(), 1);
    assert!(dir.path().join("sandbox.json.journal.imported").exists());
}

#[tokio::test]
async fn a_damaged_journal_entry_before_the_last_is_an_error_not_a_silent_loss() {
    let dir = tempfile::tempdir().unwrap();
    world_with_journal(dir.path(), "{\"sxq\":2}\n{\"seq\":3,\"change\":{}}\n");
    let clock = Arc::new(ManualClock::new(Timestamp::from_millis(1_795_000_000_000)));

    let opened = SandboxNetwork::open(Some(dir.path().join("sandbox.db")), SandboxConfig::default(), clock).await;

    let Err(SandboxError::Io(why)) = opened else { panic!("{opened:?}") };
    assert!(why.contains("sandbox.json.journal") && why.contains("damaged"), "{why}");
    assert!(dir.path().join("sandbox.json").exists(), "nothing is set aside");
}

#[tokio::test]
async fn deleting_the_database_starts_a_new_world() {
    let dir = tempfile::tempdir().unwrap();
    let net = open_at(dir.path(), SandboxConfig::default()).await;
    create(&net.connector(phone(1000)), &[]).await;
    drop(net);
    for name in ["sandbox.db", "sandbox.db-wal", "sandbox.db-shm"] {
        let _ = std::fs::remove_file(dir.path().join(name));
    }
    let net = open_at(dir.path(), SandboxConfig::default()).await;
    assert!(net.groups().await.unwrap().is_empty());
    drop(net);
    assert!(open_at(dir.path(), SandboxConfig::default()).await.groups().await.unwrap().is_empty(), "and it stays new");
}

/// The database, not the process, knows which group ids are taken: a group written into the file after this
/// process started, behind its back (here: copied in with SQL), is never given the same id again.
#[tokio::test]
async fn a_new_group_draws_past_an_id_another_process_took_after_the_start() {
    let (elsewhere, shared, control) =
        (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let first = |net: Arc<SandboxNetwork>| async move { create(&net.connector(phone(1000)), &[]).await.metadata.jid };
    // The same seed draws the same ids: a world's first group gets the same id in every new world.
    let taken = first(open_at(elsewhere.path(), SandboxConfig::default()).await).await;
    assert_eq!(first(open_at(control.path(), SandboxConfig::default()).await).await, taken);
    let net = open_at(shared.path(), SandboxConfig::default()).await;
    let mut other =
        sqlx::SqliteConnection::connect(&format!("sqlite://{}", shared.path().join("sandbox.db").display()))
            .await
            .unwrap();
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "ATTACH DATABASE '{}' AS elsewhere",
        elsewhere.path().join("sandbox.db").display()
    )))
    .execute(&mut other)
    .await
    .unwrap();
    sqlx::query("INSERT INTO groups SELECT * FROM elsewhere.groups").execute(&mut other).await.unwrap();

    let created = first(Arc::clone(&net)).await;

    assert_ne!(created, taken);
    let jids: Vec<GroupJid> = net.groups().await.unwrap().into_iter().map(|g| g.jid).collect();
    assert_eq!(jids, [taken, created]);
}

/// A group read from the network is its last committed state, whatever reads ran beside the change: reads of one
/// group are answered from memory (see `group_cache.rs`), and a row a read took from the database just before a
/// commit must not stand for the group after it.
#[tokio::test]
async fn a_group_read_after_a_change_returned_shows_the_change_while_other_reads_race_it() {
    // Arrange: a world on file, 4 groups, and readers reading them without pause
    let dir = tempfile::tempdir().unwrap();
    let net = open_at(dir.path(), SandboxConfig::default()).await;
    let owner = net.connector(phone(1000));
    let mut jids = Vec::new();
    for _ in 0..4 {
        jids.push(create(&owner, &[]).await.metadata.jid);
    }
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut readers = tokio::task::JoinSet::new();
    for r in 0..4 {
        let (owner, jids, stop) = (owner.clone(), jids.clone(), Arc::clone(&stop));
        readers.spawn(async move {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                for jid in &jids[r % 2..] {
                    owner.group_metadata(jid).await.unwrap();
                }
                tokio::task::yield_now().await;
            }
        });
    }

    // Act: on each group, add people one at a time, reading the group after each addition
    let mut writers = tokio::task::JoinSet::new();
    for (g, jid) in jids.iter().enumerate() {
        let (owner, net, jid) = (owner.clone(), Arc::clone(&net), jid.clone());
        writers.spawn(async move {
            for n in 0..40 {
                let person = phone(u16::try_from(g * 100 + n).unwrap());
                owner.change_participants(&jid, ParticipantChange::Add, std::slice::from_ref(&person)).await.unwrap();

                // Assert: the addition is seen by the connector's read and the sandbox's, at once
                let members = owner.group_metadata(&jid).await.unwrap().members;
                assert!(members.iter().any(|m| m.phone == person), "{person} missing from {jid} after its addition");
                assert_eq!(members.len(), n + 2, "{jid} after adding {person}");
                assert_eq!(net.group(&jid).await.unwrap().members, members);
            }
        });
    }
    while let Some(done) = writers.join_next().await {
        done.unwrap();
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    while let Some(done) = readers.join_next().await {
        done.unwrap();
    }

    // Assert: what is on disk is what was read
    let crashed = files_after_a_crash(dir.path());
    let reopened = open_at(crashed.path(), SandboxConfig::default()).await;
    for jid in &jids {
        assert_eq!(reopened.group(jid).await.unwrap(), net.group(jid).await.unwrap());
    }
}

/// A change whose caller goes away while its transaction is being begun (a request cut off, a timeout) leaves the
/// writer usable: the transaction it opened is taken up by the next change rather than refusing every change after.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_dropped_while_their_transaction_begins_leave_the_world_writable() {
    // Arrange
    let dir = tempfile::tempdir().unwrap();
    let net = open_at(dir.path(), SandboxConfig::default()).await;
    let owner = net.connector(phone(1000));

    // Act: start changes and drop them at every point of their first steps
    for spin in 0..400_u64 {
        let owner = owner.clone();
        let change = tokio::spawn(async move { owner.create_group(&request(&[])).await });
        let until = std::time::Instant::now() + Duration::from_micros(spin % 200);
        while std::time::Instant::now() < until {
            std::hint::spin_loop();
        }
        change.abort();
        let _ = change.await;
    }

    // Assert
    let created = tokio::time::timeout(Duration::from_secs(10), owner.create_group(&request(&[phone(1)]))).await;
    let created = created.expect("a change after the dropped ones returns").expect("and succeeds");
    assert_eq!(net.group(&created.metadata.jid).await.unwrap().members.len(), 2);
}
