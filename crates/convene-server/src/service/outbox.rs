//! The events the service publishes, and how they are written: in the same store transaction as the change that
//! caused them (`Outbox::commit`), from where the webhook dispatcher and Green API's notification queue take them.
//!
//! Every event has the same envelope — `{id, type, timestamp, instance_id, data}` — and one `data` shape per type,
//! defined here and published in the OpenAPI document's `webhooks`.

use std::sync::Arc;

use convene_core::events::{Change, EventListQuery, EventRecord, EventType, NewEvent};
use convene_core::store::{GroupRecord, JobRecord, JobState};
use convene_core::{
    Clock, GroupId, GroupJid, GroupSettings, InstanceId, InstanceState, PairingCode, PhoneNumber, Store, Timestamp,
};
use serde::Serialize;
use tokio::sync::{Notify, watch};
use uuid::Uuid;

use super::ParticipantReport;
use crate::error::{ApiError, Result};

/// Every event's body: what receivers get and what the signature covers.
#[derive(Serialize)]
struct Envelope<'a, T: Serialize> {
    id: Uuid,
    #[serde(rename = "type")]
    event_type: &'static str,
    timestamp: String,
    instance_id: Option<InstanceId>,
    data: &'a T,
}

/// The group an event is about. `id` is absent for a group Convene has no record of (one the number joined
/// elsewhere and nobody asked about yet).
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct EventGroup {
    pub id: Option<GroupId>,
    #[schema(value_type = String, example = "120363043968066561@g.us")]
    pub jid: GroupJid,
    pub instance_id: InstanceId,
    pub subject: Option<String>,
}

impl EventGroup {
    pub fn of(record: &GroupRecord) -> Self {
        Self {
            id: Some(record.id),
            jid: record.jid.clone(),
            instance_id: record.instance_id,
            subject: Some(record.subject.clone()),
        }
    }
}

/// `group.created`: a creation (synchronous or queued) finished with a group.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct GroupCreatedData {
    pub group: EventGroup,
    pub job_id: Uuid,
    /// What happened to every requested participant.
    pub participants: Vec<ParticipantReport>,
    pub backup_admins: Vec<ParticipantReport>,
}

/// `group.creation_failed`: a creation gave up.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct GroupCreationFailedData {
    pub job_id: Uuid,
    /// The instance of the last attempt, if there was one.
    pub instance_id: Option<InstanceId>,
    pub subject: String,
    pub error: String,
}

/// `group.updated`: subject, description, settings or picture changed, through Convene or on the network.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct GroupUpdatedData {
    pub group: EventGroup,
    /// Which of `subject`, `description`, `settings`, `picture` changed.
    pub changed: Vec<String>,
    pub description: Option<String>,
    /// The settings as now known (absent when Convene has no record of the group).
    pub settings: Option<GroupSettings>,
    /// Who changed it, when the network said (absent for changes made through Convene).
    pub by: Option<PhoneNumber>,
}

/// `group.participants.*`: people added, removed, promoted, demoted, joined on their own (invite link, private
/// invite, approved join request), left, or sent a private invite.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct ParticipantsData {
    pub group: EventGroup,
    pub participants: Vec<PhoneNumber>,
    /// Who did it, when the network said (absent for changes made through Convene).
    pub by: Option<PhoneNumber>,
}

/// `instance.*`: the number's connection changed, a QR code is ready to scan, or pairing finished.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct InstanceData {
    pub instance_id: InstanceId,
    pub state: InstanceState,
    /// The number, once known (`instance.paired` carries the new one).
    pub phone: Option<PhoneNumber>,
    /// `instance.qr_ready`: the QR payload to render and when it expires.
    pub qr: Option<PairingCode>,
}

/// `job.state_changed`: a creation job moved between queued, running, succeeded, failed and cancelled.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct JobStateChangedData {
    pub job_id: Uuid,
    pub batch_id: Option<Uuid>,
    #[schema(example = "running")]
    pub state: String,
    /// Absent for a job that was just queued.
    pub previous_state: Option<String>,
    pub attempts: u32,
    /// The instance of the current or last attempt.
    pub instance_id: Option<InstanceId>,
    pub next_run_at: convene_core::Timestamp,
    pub last_error: Option<String>,
    /// Set once the job succeeded.
    pub group_id: Option<GroupId>,
}

/// The ordering key of a group's events: one receiver sees one group's events in order.
pub(super) fn group_key(jid: &GroupJid) -> String {
    format!("group:{jid}")
}

fn instance_key(id: InstanceId) -> String {
    format!("instance:{id}")
}

fn job_key(id: Uuid) -> String {
    format!("job:{id}")
}

/// The group a finished job created, read from its result without the rest of it.
fn job_group_id(job: &JobRecord) -> Option<GroupId> {
    #[derive(serde::Deserialize)]
    struct Named {
        group_id: GroupId,
    }
    serde_json::from_str::<Named>(job.result.as_deref()?).ok().map(|named| named.group_id)
}

/// The outbox: events written in the same transaction as the change that caused them, and the wake-ups of those
/// waiting for them (the webhook dispatcher, pollers of Green API's notification queue, a repeated creation).
#[derive(Clone)]
pub struct Outbox {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    /// Wakes the webhook dispatcher when events are written (`notify_one`, so a wake-up is never lost).
    dispatcher: Arc<Notify>,
    /// Counts event writes, for those waiting for the next one.
    writes: Arc<watch::Sender<u64>>,
}

impl Outbox {
    pub(super) fn new(store: Arc<dyn Store>, clock: Arc<dyn Clock>) -> Self {
        Self { store, clock, dispatcher: Arc::default(), writes: Arc::new(watch::Sender::new(0)) }
    }

    /// Notified after events are written: the webhook dispatcher waits on it.
    pub fn dispatcher_wake(&self) -> Arc<Notify> {
        Arc::clone(&self.dispatcher)
    }

    /// Changes each time events are written.
    pub(super) fn subscribe(&self) -> watch::Receiver<u64> {
        self.writes.subscribe()
    }

    /// An event stamped now.
    pub(super) fn event<T: Serialize>(
        &self,
        event_type: EventType,
        instance_id: Option<InstanceId>,
        ordering_key: String,
        data: &T,
    ) -> Result<NewEvent> {
        let id = Uuid::now_v7();
        let created_at = self.clock.now();
        let envelope =
            Envelope { id, event_type: event_type.as_str(), timestamp: created_at.to_rfc3339(), instance_id, data };
        let payload = serde_json::to_string(&envelope).map_err(ApiError::internal)?;
        Ok(NewEvent { id, event_type, instance_id, ordering_key, payload, created_at })
    }

    /// Applies `changes` and writes `events` in one transaction, then wakes the webhook dispatcher.
    pub(super) async fn commit(&self, changes: &[Change<'_>], events: &[NewEvent]) -> Result<()> {
        Ok(self.try_commit(changes, events).await?)
    }

    /// `commit`, keeping the store's error for a caller that acts on it (a conflict).
    pub(super) async fn try_commit(
        &self,
        changes: &[Change<'_>],
        events: &[NewEvent],
    ) -> std::result::Result<(), convene_core::DbError> {
        self.store.commit(changes, events).await?;
        for event in events {
            metrics::counter!(crate::telemetry::EVENTS_WRITTEN, "type" => event.event_type.as_str()).increment(1);
        }
        if !events.is_empty() {
            self.written();
        }
        Ok(())
    }

    /// The event log, as `query` narrows it.
    pub async fn events(&self, query: &EventListQuery) -> Result<Vec<EventRecord>> {
        Ok(self.store.list_events(query).await?)
    }

    /// Wakes those waiting for events: some were written.
    pub(super) fn written(&self) {
        self.dispatcher.notify_one();
        self.writes.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// The instance's oldest event of the last `retention` that no poller acknowledged, waiting up to `wait` for one
    /// to be written.
    pub async fn next_notification(
        &self,
        instance: InstanceId,
        retention: std::time::Duration,
        wait: std::time::Duration,
    ) -> Result<Option<EventRecord>> {
        let deadline = tokio::time::Instant::now() + wait;
        let mut writes = self.subscribe();
        loop {
            writes.mark_unchanged();
            let since = Timestamp::from_millis(self.clock.now().as_millis() - retention.as_millis() as i64);
            if let Some(event) = self.store.next_unacknowledged_event(instance, since).await? {
                return Ok(Some(event));
            }
            match tokio::time::timeout_at(deadline, writes.changed()).await {
                Ok(Ok(())) => continue,
                Ok(Err(_)) | Err(_) => return Ok(None),
            }
        }
    }

    /// Takes the instance's event `seq` off its notification queue; false when it is not there.
    pub async fn acknowledge_notification(&self, instance: InstanceId, seq: i64) -> Result<bool> {
        Ok(self.store.acknowledge_event(instance, seq, self.clock.now()).await?)
    }

    /// Writes events that accompany no change of Convene's records (the change was on the network).
    pub(super) async fn publish(&self, events: &[NewEvent]) -> Result<()> {
        self.commit(&[], events).await
    }

    pub(super) fn job_event(&self, job: &JobRecord, previous: Option<JobState>) -> Result<NewEvent> {
        let group_id = job_group_id(job);
        let data = JobStateChangedData {
            job_id: job.id,
            batch_id: job.batch_id,
            state: job.state.as_str().to_owned(),
            previous_state: previous.map(|s| s.as_str().to_owned()),
            attempts: job.attempts,
            instance_id: job.pinned_instance_id,
            next_run_at: job.next_run_at,
            last_error: job.last_error.clone(),
            group_id,
        };
        self.event(EventType::JobStateChanged, job.pinned_instance_id, job_key(job.id), &data)
    }

    pub(super) fn instance_event(
        &self,
        event_type: EventType,
        instance_id: InstanceId,
        state: InstanceState,
        phone: Option<PhoneNumber>,
        qr: Option<PairingCode>,
    ) -> Result<NewEvent> {
        let data = InstanceData { instance_id, state, phone, qr };
        self.event(event_type, Some(instance_id), instance_key(instance_id), &data)
    }

    /// `group.participants.*` about `group`; `None` when nobody is concerned.
    pub(super) fn participants_event(
        &self,
        event_type: EventType,
        group: EventGroup,
        participants: Vec<PhoneNumber>,
        by: Option<PhoneNumber>,
    ) -> Result<Option<NewEvent>> {
        if participants.is_empty() {
            return Ok(None);
        }
        let key = group_key(&group.jid);
        let instance_id = group.instance_id;
        let data = ParticipantsData { group, participants, by };
        self.event(event_type, Some(instance_id), key, &data).map(Some)
    }

    pub(super) fn group_updated_event(
        &self,
        group: EventGroup,
        record: Option<&GroupRecord>,
        changed: &[&str],
        by: Option<PhoneNumber>,
    ) -> Result<NewEvent> {
        let key = group_key(&group.jid);
        let instance_id = group.instance_id;
        let data = GroupUpdatedData {
            group,
            changed: changed.iter().map(|c| (*c).to_owned()).collect(),
            description: record.and_then(|r| r.description.clone()),
            settings: record.map(|r| r.settings),
            by,
        };
        self.event(EventType::GroupUpdated, Some(instance_id), key, &data)
    }
}
