//! The group service: every API (native, the provider dialects, the console) calls this, so each rule — validation,
//! participant parsing, outcome reporting — is written once.
//!
//! It is in parts, each owning what it needs: [`Instances`] (records, settings, tokens, connections through each
//! kind's driver), [`Groups`] (groups and their participants), [`ApiKeys`] (keys and console sessions), [`Outbox`]
//! (events, written with the change that caused them), `endpoints::WebhookEndpoints` (held beside the service, with
//! the secret box and target policy). `Service` itself is group creation and its queue (`creation`), what the
//! networks report (`reports`) and the first start; it reaches the parts it needs, and callers reach them through it
//! (`service.groups()`, `service.instances()`).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use convene_core::store::{GroupRecord, InstanceRecord};
use convene_core::{
    AddRequest, Clock, GroupMember, GroupMetadata, GroupSettingsPatch, InstanceId, ParticipantOutcome,
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
mod groups;
mod health;
mod instances;
mod keys;
mod outbox;
mod placement;
pub mod remote;
mod reports;

pub use creation::{CreationConfig, CreationResult, CreationStatus, Enqueued, RetryGuard};
pub use groups::Groups;
pub use health::InstanceHealth;
pub use instances::Instances;
pub use keys::{ApiKeys, CONSOLE_SESSION_LIFETIME};
pub use outbox::{
    EventGroup, GroupCreatedData, GroupCreationFailedData, GroupUpdatedData, InstanceData, JobStateChangedData, Outbox,
    ParticipantsData,
};
pub use placement::{NodeToken, Placement};
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
    /// The groups and their participants.
    groups: Groups,
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
    /// Builds the service and a connector for every stored instance this node runs (`placement`: all of them, or
    /// those it takes leases on now; real numbers start connecting in the background), and starts applying what the
    /// networks report. A leased node keeps its leases while `serve` runs (`Instances::keep_leases`).
    pub async fn start(
        store: Arc<dyn Store>,
        networks: Networks,
        clock: Arc<dyn Clock>,
        creation: CreationConfig,
        placement: Placement,
    ) -> Result<Self> {
        let (service, mut reported) = Self::idle(store, networks, clock, creation, placement);
        service.instances.open_connections().await?;
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
        let (service, _ignored) = Self::idle(store, networks, clock, creation, Placement::Alone);
        Ok(service)
    }

    /// The service with no connector attached, and what the networks report, which nothing applies yet.
    fn idle(
        store: Arc<dyn Store>,
        networks: Networks,
        clock: Arc<dyn Clock>,
        creation: CreationConfig,
        placement: Placement,
    ) -> (Self, tokio::sync::mpsc::UnboundedReceiver<(InstanceId, convene_core::ConnectorReport)>) {
        let (drivers, reported, reports) = networks.into_parts();
        let instances = Instances::new(Arc::clone(&store), Arc::clone(&clock), drivers, reported, placement);
        let outbox = Outbox::new(Arc::clone(&store), Arc::clone(&clock));
        let service = Self {
            keys: keys::ApiKeys::new(Arc::clone(&store), Arc::clone(&clock)),
            outbox: outbox.clone(),
            groups: Groups::new(Arc::clone(&store), Arc::clone(&clock), instances.clone(), outbox),
            instances,
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
        self.instances.drivers.sandbox()
    }

    /// The real numbers' sessions (tests reach `WhatsappAccounts::simulate` through here).
    pub fn whatsapp(&self) -> &Arc<WhatsappAccounts> {
        self.instances.drivers.whatsapp()
    }

    pub fn now(&self) -> Timestamp {
        self.clock.now()
    }

    /// Resolves when a job is queued (the worker's wake-up call).
    pub async fn job_added(&self) {
        self.job_added.notified().await;
    }

    /// The groups and their participants.
    pub fn groups(&self) -> &Groups {
        &self.groups
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
