//! The group service: every API (native, the provider dialects, the console) calls this, so each rule — validation,
//! participant parsing, outcome reporting — is written once.
//!
//! It is in parts, each owning what it needs: [`Instances`] (records, settings, tokens, connections through each
//! kind's driver), [`ApiKeys`] (keys and console sessions), [`Outbox`] (events, written with the change that caused
//! them), `endpoints::WebhookEndpoints` (held beside the service, with the secret box and target policy). `Service`
//! itself is groups and participants (here) and creation with its queue (`creation`); it reaches the parts it needs.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use convene_core::events::{Change, EventType};
use convene_core::store::{GroupListQuery, GroupPage, GroupRecord, InstanceRecord};
use convene_core::{
    AddRequest, Clock, Connector, ConnectorError, GroupDescription, GroupId, GroupJid, GroupMember, GroupMetadata,
    GroupPicture, GroupSettingsPatch, GroupSubject, InstanceId, ParticipantChange, ParticipantOutcome,
    ParticipantResult, PhoneNumber, PhoneParseError, Store, Timestamp,
};
use convene_sandbox::SandboxNetwork;
use convene_whatsapp::WhatsappAccounts;
use serde::{Deserialize, Serialize};

use crate::auth;
use crate::connectors::Networks;
use crate::error::{ApiError, FieldError, Result};

/// Most participants one request may name: a group holds 1024 members, the creator included.
pub const MAX_PARTICIPANTS_PER_REQUEST: usize = 1023;
/// The longest instance or key name.
const MAX_NAME_CHARS: usize = 100;

mod creation;
pub mod endpoints;
mod health;
mod instances;
mod keys;
mod outbox;
mod reports;

pub use creation::{CreationConfig, CreationResult, CreationStatus, Enqueued, RetryGuard};
pub use health::InstanceHealth;
pub use instances::Instances;
pub use keys::{ApiKeys, CONSOLE_SESSION_LIFETIME};
pub use outbox::{
    EventGroup, GroupCreatedData, GroupCreationFailedData, GroupUpdatedData, InstanceData, JobStateChangedData, Outbox,
    ParticipantsData,
};
pub(crate) use reports::channel as report_channel;

#[derive(Clone)]
pub struct Service {
    store: Arc<dyn Store>,
    /// The instances and their connections.
    instances: Instances,
    clock: Arc<dyn Clock>,
    creation: Arc<CreationConfig>,
    /// Wakes the worker when jobs are queued.
    job_added: Arc<tokio::sync::Notify>,
    /// Where events are written.
    outbox: Outbox,
    /// One creation at a time per instance, so two requests cannot both pass the pacing check.
    creation_turns: Arc<std::sync::Mutex<HashMap<InstanceId, Arc<tokio::sync::Mutex<()>>>>>,
    /// The jobs this process is running: any other job left `running` belongs to a process that is gone.
    running_here: creation::JobsRunningHere,
    /// The account's API keys and console sessions.
    keys: keys::ApiKeys,
}

/// What happened to one requested participant, keyed by what the caller sent.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ParticipantReport {
    /// The participant as the request named it.
    #[schema(example = "+1 713-715-7533")]
    pub input: String,
    /// The normalised number; absent when the input is not a valid number.
    pub phone: Option<PhoneNumber>,
    pub outcome: ParticipantOutcome,
    /// The raw WhatsApp status code, where the network gave one (e.g. 403, 408, 409).
    #[schema(example = 200)]
    pub code: Option<u16>,
    /// On a privacy refusal: the network's private-invite code and its expiry.
    pub add_request: Option<AddRequest>,
    /// The outcome in words.
    pub message: String,
}

impl ParticipantReport {
    fn new(input: &str, phone: Option<PhoneNumber>, outcome: ParticipantOutcome, code: Option<u16>) -> Self {
        Self { input: input.to_owned(), phone, outcome, code, add_request: None, message: outcome.message().into() }
    }

    fn from_result(input: &str, r: ParticipantResult) -> Self {
        Self { add_request: r.add_request, ..Self::new(input, Some(r.phone), r.outcome, r.code) }
    }
}

/// Participant inputs after parsing: the numbers to send to the network, and the inputs that are not valid numbers.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct ParsedParticipants {
    pub numbers: Vec<(String, PhoneNumber)>,
    pub invalid: Vec<String>,
}

impl ParsedParticipants {
    pub fn phones(&self) -> Vec<PhoneNumber> {
        self.numbers.iter().map(|(_, p)| p.clone()).collect()
    }

    /// Reports in request order: the network's results for the numbers, `invalid_number` for the rest. A number the
    /// network left out of its answer is reported as `failed` rather than dropped.
    fn reports(&self, results: Vec<ParticipantResult>) -> Vec<ParticipantReport> {
        let mut by_phone: HashMap<PhoneNumber, ParticipantResult> =
            results.into_iter().map(|r| (r.phone.clone(), r)).collect();
        let mut reports: Vec<ParticipantReport> = self
            .numbers
            .iter()
            .map(|(input, phone)| match by_phone.remove(phone) {
                Some(r) => ParticipantReport::from_result(input, r),
                None => ParticipantReport::new(input, Some(phone.clone()), ParticipantOutcome::Failed, None),
            })
            .collect();
        reports.extend(
            self.invalid
                .iter()
                .map(|input| ParticipantReport::new(input, None, ParticipantOutcome::InvalidNumber, None)),
        );
        reports
    }
}

/// Parses participant inputs. Duplicates (after normalising) collapse into the first; numbers that are not valid
/// become `invalid_number` outcomes; things that are not people at all (group ids, the instance's own number,
/// words) are field errors naming `{field}[i]`.
pub fn parse_participants(
    field: &str,
    inputs: &[String],
    own_number: Option<&PhoneNumber>,
) -> std::result::Result<ParsedParticipants, Vec<FieldError>> {
    let mut errors = Vec::new();
    if inputs.len() > MAX_PARTICIPANTS_PER_REQUEST {
        errors.push(FieldError::new(
            field,
            format!("at most {MAX_PARTICIPANTS_PER_REQUEST} participants per request (got {})", inputs.len()),
        ));
        return Err(errors);
    }
    let mut parsed = ParsedParticipants::default();
    let mut seen_numbers = HashSet::new();
    let mut seen_invalid = HashSet::new();
    for (i, input) in inputs.iter().enumerate() {
        let at = format!("{field}[{i}]");
        match PhoneNumber::parse(input) {
            Ok(phone) if Some(&phone) == own_number => errors.push(FieldError::new(
                at,
                format!("{} is this instance's own number; the creator is always in the group", phone.e164()),
            )),
            Ok(phone) => {
                if seen_numbers.insert(phone.clone()) {
                    parsed.numbers.push((input.clone(), phone));
                }
            }
            Err(PhoneParseError::Invalid) => {
                if seen_invalid.insert(input.trim().to_owned()) {
                    parsed.invalid.push(input.clone());
                }
            }
            Err(e) => errors.push(FieldError::new(at, format!("`{input}` {e}"))),
        }
    }
    if errors.is_empty() { Ok(parsed) } else { Err(errors) }
}

/// A request to create a group, as the caller sent it.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct NewGroup {
    pub subject: String,
    pub description: Option<String>,
    pub participants: Vec<String>,
    pub settings: GroupSettingsPatch,
    /// Send a private invite to whoever privacy settings keep out; `None` takes the instance's default (off).
    pub auto_invite: Option<bool>,
}

/// A change to a group's subject, description and settings.
#[derive(Clone, Debug, Default)]
pub struct GroupChange {
    pub subject: Option<String>,
    pub description: Option<String>,
    pub settings: GroupSettingsPatch,
}

/// A group record, with the live member list when the network could be asked.
#[derive(Clone, Debug)]
pub struct GroupView {
    pub record: GroupRecord,
    pub members: Option<Vec<GroupMember>>,
}

#[derive(Clone, Debug)]
pub struct CreatedGroupView {
    pub group: GroupView,
    pub participants: Vec<ParticipantReport>,
}

impl Service {
    /// Builds the service and a connector for every stored instance (real numbers start connecting in the
    /// background), and starts applying what the networks report.
    pub async fn start(
        store: Arc<dyn Store>,
        networks: Networks,
        clock: Arc<dyn Clock>,
        creation: CreationConfig,
    ) -> Result<Self> {
        let (service, mut reported) = Self::idle(store, networks, clock, creation);
        let instances = service.store.list_instances().await?;
        service.instances.prepare_networks(&instances).await;
        for instance in &instances {
            service.instances.attach(instance);
        }
        let applying = service.clone();
        tokio::spawn(async move {
            while let Some((instance, event)) = reported.recv().await {
                applying.apply_connector_report(instance, event).await;
            }
        });
        Ok(service)
    }

    /// The service over the database alone, for commands that work on it beside a running server (`convene key`):
    /// no network is opened and no connector attached, so nothing is written but what the command asks.
    pub async fn offline(store: Arc<dyn Store>, clock: Arc<dyn Clock>, creation: CreationConfig) -> Result<Self> {
        let networks = Networks::offline(Arc::clone(&clock)).await.map_err(ApiError::internal)?;
        let (service, _ignored) = Self::idle(store, networks, clock, creation);
        Ok(service)
    }

    /// The service with no connector attached, and what the networks report, which nothing applies yet.
    fn idle(
        store: Arc<dyn Store>,
        networks: Networks,
        clock: Arc<dyn Clock>,
        creation: CreationConfig,
    ) -> (Self, tokio::sync::mpsc::UnboundedReceiver<(InstanceId, convene_core::ConnectorReport)>) {
        let (drivers, reported, reports) = networks.into_parts();
        let service = Self {
            keys: keys::ApiKeys::new(Arc::clone(&store), Arc::clone(&clock)),
            instances: Instances::new(Arc::clone(&store), Arc::clone(&clock), drivers, reported),
            outbox: Outbox::new(Arc::clone(&store), Arc::clone(&clock)),
            store,
            clock,
            creation: Arc::new(creation),
            job_added: Arc::default(),
            creation_turns: Arc::default(),
            running_here: Arc::default(),
        };
        (service, reports)
    }

    /// Ends every connection, flushing what the networks' libraries buffer (their stored state stays).
    pub async fn shutdown(&self) {
        self.instances.shutdown().await;
    }

    /// The instances and their connections.
    pub fn instances(&self) -> &Instances {
        &self.instances
    }

    /// The account's API keys and console sessions.
    pub fn keys(&self) -> &keys::ApiKeys {
        &self.keys
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    pub fn sandbox(&self) -> &Arc<SandboxNetwork> {
        self.instances.sandbox()
    }

    /// The real numbers' sessions (tests reach `WhatsappAccounts::simulate` through here).
    pub fn whatsapp(&self) -> &Arc<WhatsappAccounts> {
        self.instances.whatsapp()
    }

    pub fn now(&self) -> Timestamp {
        self.clock.now()
    }

    /// Resolves when a job is queued (the worker's wake-up call).
    pub async fn job_added(&self) {
        self.job_added.notified().await;
    }

    /// The outbox: the event log, Green API's notification queue, the dispatcher's wake-up.
    pub fn outbox(&self) -> &Outbox {
        &self.outbox
    }

    /// Waits for this instance's turn to create a group.
    async fn creation_turn(&self, id: InstanceId) -> tokio::sync::OwnedMutexGuard<()> {
        let turn = {
            let mut turns = self.creation_turns.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            Arc::clone(turns.entry(id).or_default())
        };
        turn.lock_owned().await
    }

    // ---------- groups ----------

    /// The invite fallback: each participant refused for privacy gets a private invite — a group-invite message
    /// carrying the network's add-request code, or, when the network gave none, the invite link by text — and is
    /// then reported as `invite_sent`. A failed send leaves `privacy_blocked`.
    async fn invite_refused(&self, connector: &dyn Connector, record: &GroupRecord, reports: &mut [ParticipantReport]) {
        let mut link: Option<String> = None;
        for report in reports.iter_mut().filter(|r| r.outcome == ParticipantOutcome::PrivacyBlocked) {
            let Some(phone) = &report.phone else { continue };
            let sent = match &report.add_request {
                Some(request) => {
                    connector
                        .send_group_invite(phone, &record.jid, &record.subject, &request.code, request.expires_at)
                        .await
                }
                None => {
                    if link.is_none() {
                        link = connector.invite_link(&record.jid, false).await.ok();
                    }
                    match &link {
                        Some(link) => {
                            let text =
                                format!("You are invited to join the WhatsApp group \"{}\": {link}", record.subject);
                            connector.send_text(phone, &text).await
                        }
                        None => Err(ConnectorError::NotAdmin),
                    }
                }
            };
            match sent {
                Ok(()) => {
                    report.outcome = ParticipantOutcome::InviteSent;
                    report.message = ParticipantOutcome::InviteSent.message().to_owned();
                }
                Err(e) => tracing::warn!(group = %record.jid, phone = %phone, error = %e, "private invite not sent"),
            }
        }
    }

    /// Finds a group by our uuid or by its JID (`…@g.us` or Z-API's `…-group`). A JID that several of our
    /// instances are in needs `instance_id` to say which.
    pub async fn resolve_group(&self, reference: &str, instance_id: Option<InstanceId>) -> Result<GroupRecord> {
        let reference = reference.trim();
        if let Ok(id) = uuid::Uuid::parse_str(reference) {
            let record = self
                .store
                .get_group(GroupId(id))
                .await
                .map_err(|e| not_found(e, || format!("no group {reference}")))?;
            return match instance_id {
                Some(i) if i != record.instance_id => {
                    Err(ApiError::NotFound(format!("no group {reference} on instance {i}")))
                }
                _ => Ok(record),
            };
        }
        let Some(jid) = GroupJid::parse(reference) else {
            return Err(ApiError::NotFound(format!("`{reference}` is neither a group uuid nor a group id (…@g.us)")));
        };
        let mut found = self.store.find_groups_by_jid(&jid, instance_id).await?;
        match found.len() {
            0 => match instance_id {
                Some(instance_id) => self.import_group(instance_id, jid).await,
                None => Err(ApiError::NotFound(format!(
                    "no group {jid} among the groups Convene knows; for a group the instance joined elsewhere, \
                     add `instance_id`"
                ))),
            },
            1 => Ok(found.remove(0)),
            n => Err(ApiError::Conflict(format!(
                "{n} instances are in group {jid}; add `instance_id` to say which one acts"
            ))),
        }
    }

    /// Records a group the instance is in but Convene did not create (added by someone else, joined by link), so
    /// it can be managed like any other.
    async fn import_group(&self, instance_id: InstanceId, jid: GroupJid) -> Result<GroupRecord> {
        self.instances.record(instance_id).await?;
        let metadata = match self.instances.connector(instance_id)?.group_metadata(&jid).await {
            Ok(m) => m,
            Err(ConnectorError::GroupNotFound) => {
                return Err(ApiError::NotFound(format!("instance {instance_id} is not in group {jid}")));
            }
            Err(e) => return Err(e.into()),
        };
        self.record_group(instance_id, &metadata).await
    }

    /// Stores a group this instance is in that Convene did not create; when a record for it is already there
    /// (written by a concurrent request), that one is returned instead of a second.
    async fn record_group(&self, instance_id: InstanceId, metadata: &GroupMetadata) -> Result<GroupRecord> {
        let record = self.new_group_record(instance_id, metadata, None);
        match self.store.commit(&[Change::InsertGroup(&record)], &[]).await {
            Ok(()) => Ok(record),
            Err(convene_core::DbError::Conflict) => self.recorded_group(instance_id, &record.jid).await,
            Err(e) => Err(e.into()),
        }
    }

    /// The record of a group this instance is in, as the network describes it now, created by `creation_job_id`.
    fn new_group_record(
        &self,
        instance_id: InstanceId,
        metadata: &GroupMetadata,
        creation_job_id: Option<uuid::Uuid>,
    ) -> GroupRecord {
        let now = self.clock.now();
        GroupRecord {
            id: GroupId::new(),
            instance_id,
            jid: metadata.jid.clone(),
            subject: metadata.subject.clone(),
            description: metadata.description.clone(),
            settings: metadata.settings,
            created_at: now,
            updated_at: now,
            left_at: None,
            creation_job_id,
        }
    }

    /// The stored record of a group of this instance that an insert found already there.
    async fn recorded_group(&self, instance_id: InstanceId, jid: &GroupJid) -> Result<GroupRecord> {
        let mut found = self.store.find_groups_by_jid(jid, Some(instance_id)).await?;
        found.pop().ok_or_else(|| ApiError::internal(anyhow::anyhow!("group record vanished")))
    }

    /// A group with its live members; the stored copy is refreshed from the network.
    pub async fn group(&self, mut record: GroupRecord) -> Result<GroupView> {
        if record.left_at.is_some() {
            return Ok(GroupView { record, members: None });
        }
        let connector = self.instances.connector(record.instance_id)?;
        match connector.group_metadata(&record.jid).await {
            Ok(metadata) => {
                if refresh_record(&mut record, &metadata) {
                    record.updated_at = self.clock.now();
                    self.store.update_group(&record).await?;
                }
                Ok(GroupView { record, members: Some(metadata.members) })
            }
            // Removed by someone else: we still know the group, but not its members.
            Err(ConnectorError::GroupNotFound) => Ok(GroupView { record, members: None }),
            Err(e) => Err(e.into()),
        }
    }

    pub async fn list_groups(&self, query: &GroupListQuery) -> Result<GroupPage> {
        if let Some(cursor) = &query.cursor
            && !convene_store::parse_group_cursor(cursor)
        {
            return Err(ApiError::field("cursor", "is not a cursor this server gave out"));
        }
        Ok(self.store.list_groups(query).await?)
    }

    pub async fn update_group(&self, mut record: GroupRecord, change: GroupChange) -> Result<GroupView> {
        let mut errors = Vec::new();
        let subject = change
            .subject
            .as_deref()
            .map(GroupSubject::parse)
            .transpose()
            .map_err(|m| errors.push(FieldError::new("subject", m)))
            .ok()
            .flatten();
        let description = change
            .description
            .as_deref()
            .map(GroupDescription::parse)
            .transpose()
            .map_err(|m| errors.push(FieldError::new("description", m)))
            .ok()
            .flatten();
        if !errors.is_empty() {
            return Err(ApiError::Validation(errors));
        }
        self.ensure_member(&record)?;
        if subject.is_none() && description.is_none() && change.settings.is_empty() {
            // Nothing to change (as a JSON merge patch `{}`): the group as it is.
            return self.group(record).await;
        }
        let connector = self.instances.connector(record.instance_id)?;
        // Each part that the network accepted is recorded and published, even when a later part fails.
        let mut changed = Vec::new();
        let mut applied = async || -> Result<()> {
            if let Some(subject) = &subject {
                connector.set_subject(&record.jid, subject).await?;
                record.subject = subject.as_str().to_owned();
                changed.push("subject");
            }
            if let Some(description) = &description {
                connector.set_description(&record.jid, description).await?;
                record.description = Some(description.as_str().to_owned()).filter(|d| !d.is_empty());
                changed.push("description");
            }
            if !change.settings.is_empty() {
                connector.set_settings(&record.jid, &change.settings).await?;
                change.settings.apply(&mut record.settings);
                changed.push("settings");
            }
            Ok(())
        };
        let outcome = applied().await;
        if !changed.is_empty() {
            record.updated_at = self.clock.now();
            let event = self.outbox.group_updated_event(EventGroup::of(&record), Some(&record), &changed, None)?;
            self.outbox.commit(&[Change::UpdateGroup(&record)], &[event]).await?;
        }
        outcome?;
        self.group(record).await
    }

    pub async fn set_picture(&self, record: &GroupRecord, picture: &GroupPicture) -> Result<()> {
        self.ensure_member(record)?;
        self.instances.connector(record.instance_id)?.set_picture(&record.jid, picture).await?;
        self.outbox
            .publish(&[self.outbox.group_updated_event(EventGroup::of(record), Some(record), &["picture"], None)?])
            .await
    }

    pub async fn leave_group(&self, mut record: GroupRecord) -> Result<GroupRecord> {
        self.ensure_member(&record)?;
        match self.instances.connector(record.instance_id)?.leave(&record.jid).await {
            // Already gone on the network: record it.
            Ok(()) | Err(ConnectorError::GroupNotFound) => {}
            Err(e) => return Err(e.into()),
        }
        let now = self.clock.now();
        record.left_at = Some(now);
        record.updated_at = now;
        let own = self.store.get_instance(record.instance_id).await?.phone;
        let left = self.outbox.participants_event(
            EventType::ParticipantsLeft,
            EventGroup::of(&record),
            own.clone().into_iter().collect(),
            own,
        )?;
        self.outbox.commit(&[Change::UpdateGroup(&record)], &left.into_iter().collect::<Vec<_>>()).await?;
        Ok(record)
    }

    /// Adds, removes, promotes or demotes people. `auto_invite` (adds only) sends private invites to those privacy
    /// settings keep out; `None` takes the instance's default (off).
    pub async fn change_participants(
        &self,
        record: &GroupRecord,
        change: ParticipantChange,
        inputs: &[String],
        auto_invite: Option<bool>,
    ) -> Result<Vec<ParticipantReport>> {
        self.ensure_member(record)?;
        let instance = self.store.get_instance(record.instance_id).await?;
        if inputs.is_empty() {
            return Err(ApiError::field("participants", "name at least one participant"));
        }
        let parsed =
            parse_participants("participants", inputs, instance.phone.as_ref()).map_err(ApiError::Validation)?;
        let phones = parsed.phones();
        if phones.is_empty() {
            return Ok(parsed.reports(Vec::new()));
        }
        let connector = self.instances.connector(record.instance_id)?;
        let results = connector.change_participants(&record.jid, change, &phones).await?;
        let mut reports = parsed.reports(results);
        if change == ParticipantChange::Add && auto_invite.unwrap_or(false) {
            self.invite_refused(connector.as_ref(), record, &mut reports).await;
        }
        crate::telemetry::count_outcomes(change.as_str(), &reports);
        let done = match change {
            ParticipantChange::Add => EventType::ParticipantsAdded,
            ParticipantChange::Remove => EventType::ParticipantsRemoved,
            ParticipantChange::Promote => EventType::ParticipantsPromoted,
            ParticipantChange::Demote => EventType::ParticipantsDemoted,
            // They asked to join; the approval lets them in.
            ParticipantChange::Approve => EventType::ParticipantsJoined,
        };
        let with = |outcome: fn(ParticipantOutcome) -> bool| -> Vec<PhoneNumber> {
            reports.iter().filter(|r| outcome(r.outcome)).filter_map(|r| r.phone.clone()).collect()
        };
        let group = EventGroup::of(record);
        let events: Vec<_> = [
            self.outbox.participants_event(done, group.clone(), with(ParticipantOutcome::is_success), None)?,
            self.outbox.participants_event(
                EventType::ParticipantsInviteSent,
                group,
                with(|o| o == ParticipantOutcome::InviteSent),
                None,
            )?,
        ]
        .into_iter()
        .flatten()
        .collect();
        self.outbox.publish(&events).await?;
        Ok(reports)
    }

    pub async fn invite_link(&self, record: &GroupRecord, reset: bool) -> Result<String> {
        self.ensure_member(record)?;
        Ok(self.instances.connector(record.instance_id)?.invite_link(&record.jid, reset).await?)
    }

    fn ensure_member(&self, record: &GroupRecord) -> Result<()> {
        match record.left_at {
            Some(at) => Err(ApiError::Conflict(format!("this instance left group {} at {at}", record.jid))),
            None => Ok(()),
        }
    }

    /// First start: an admin API key, and a ready sandbox instance when `with_instance`. Returns what to print, or
    /// `None` when the gateway was set up before.
    pub async fn bootstrap(&self, with_instance: bool) -> Result<Option<Bootstrap>> {
        if self.store.count_api_keys().await? > 0 {
            return Ok(None);
        }
        let (api_key, record) = auth::new_api_key("admin", auth::KeyGrant::admin(), self.clock.now());
        let instance = if with_instance && self.store.list_instances().await?.is_empty() {
            Some(self.instances.create(convene_sandbox::KIND, None, None).await?)
        } else {
            None
        };
        // The key goes in last: if anything above failed, the next start tries the whole bootstrap again.
        self.store.insert_api_key(&record).await?;
        Ok(Some(Bootstrap { api_key, instance }))
    }
}

pub struct Bootstrap {
    pub api_key: String,
    pub instance: Option<(InstanceRecord, String)>,
}

/// After a lost reply the network's answer per participant is gone; membership says who got in.
fn results_from_membership(metadata: &GroupMetadata, requested: &[PhoneNumber]) -> Vec<ParticipantResult> {
    let members: HashSet<&PhoneNumber> = metadata.members.iter().map(|m| &m.phone).collect();
    requested
        .iter()
        .map(|p| ParticipantResult {
            phone: p.clone(),
            outcome: if members.contains(p) { ParticipantOutcome::Added } else { ParticipantOutcome::Failed },
            code: None,
            add_request: None,
        })
        .collect()
}

/// Copies what the network says into the record; true when anything changed.
fn refresh_record(record: &mut GroupRecord, metadata: &GroupMetadata) -> bool {
    let before = (record.subject.clone(), record.description.clone(), record.settings);
    record.subject.clone_from(&metadata.subject);
    record.description.clone_from(&metadata.description);
    record.settings = metadata.settings;
    before != (record.subject.clone(), record.description.clone(), record.settings)
}

/// The instances named in a request's `instance_ids`, in order. One that does not exist is a 404 naming it, as
/// for a single creation: the request was well formed, the instance is not there.
pub(crate) async fn existing_instances(store: &dyn Store, ids: &[InstanceId]) -> Result<Vec<InstanceRecord>> {
    let mut instances = Vec::new();
    let mut unknown = Vec::new();
    for (i, id) in ids.iter().enumerate() {
        match store.get_instance(*id).await {
            Ok(instance) => instances.push(instance),
            Err(convene_core::DbError::NotFound) => unknown.push(format!("instance_ids[{i}] {id}")),
            Err(e) => return Err(e.into()),
        }
    }
    if unknown.is_empty() {
        Ok(instances)
    } else {
        Err(ApiError::NotFound(format!("no such instance: {}", unknown.join(", "))))
    }
}

fn not_found(e: convene_core::DbError, what: impl FnOnce() -> String) -> ApiError {
    match e {
        convene_core::DbError::NotFound => ApiError::NotFound(what()),
        other => other.into(),
    }
}

fn random_instance_id() -> InstanceId {
    let mut buf = [0u8; 8];
    getrandom::fill(&mut buf).expect("the operating system's random source is available");
    let span = u64::try_from(InstanceId::MAX - InstanceId::MIN + 1).expect("positive span");
    InstanceId(InstanceId::MIN + i64::try_from(u64::from_le_bytes(buf) % span).expect("fits"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inputs(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn participants_collapse_duplicates_and_keep_the_first_spelling() {
        let parsed =
            parse_participants("p", &inputs(&["+1 713-715-7533", "17137157533@c.us", "+18647351567"]), None).unwrap();
        assert_eq!(parsed.numbers.len(), 2);
        assert_eq!(parsed.numbers[0].0, "+1 713-715-7533");
        assert!(parsed.invalid.is_empty());
    }

    #[test]
    fn invalid_numbers_become_outcomes_not_errors() {
        let parsed = parse_participants("p", &inputs(&["+1 000", "+17137157533", "+1 000"]), None).unwrap();
        assert_eq!(parsed.invalid, vec!["+1 000".to_owned()]);
        let reports = parsed.reports(vec![]);
        assert_eq!(reports[0].outcome, ParticipantOutcome::Failed, "left out by the network");
        assert_eq!(reports[1].outcome, ParticipantOutcome::InvalidNumber);
    }

    #[test]
    fn group_ids_own_number_and_words_are_field_errors_naming_each_entry() {
        let own = PhoneNumber::parse("+17137157533").unwrap();
        let errors = parse_participants(
            "participants",
            &inputs(&["120363043968066561@g.us", "+1 713 715 7533", "bob"]),
            Some(&own),
        )
        .unwrap_err();
        let fields: Vec<_> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["participants[0]", "participants[1]", "participants[2]"]);
        assert!(errors[0].message.contains("group"));
        assert!(errors[1].message.contains("own number"));
    }

    #[test]
    fn too_many_participants_is_one_error() {
        let many: Vec<String> =
            (0..=MAX_PARTICIPANTS_PER_REQUEST).map(|i| format!("+1201555{:04}", i % 10_000)).collect();
        let errors = parse_participants("participants", &many, None).unwrap_err();
        assert_eq!(errors.len(), 1);
    }

    #[test]
    fn random_instance_ids_are_ten_digits() {
        for _ in 0..100 {
            let id = random_instance_id();
            assert!((InstanceId::MIN..=InstanceId::MAX).contains(&id.0));
        }
    }
}
