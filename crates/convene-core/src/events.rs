//! Events and their webhook deliveries, as the store keeps them.
//!
//! An event is written in the same transaction as the change that caused it (`Store::commit`), and in that
//! transaction it is fanned out: one pending delivery per enabled webhook endpoint whose filter takes its type. A
//! delivery waits behind the earlier pending deliveries of the same endpoint and ordering key (one group, one
//! instance, one job), so a receiver sees each group's events in order.

use uuid::Uuid;

use crate::PhoneNumber;
use crate::clock::Timestamp;
use crate::ids::{GroupId, InstanceId};
use crate::store::{CreationAttempt, GroupRecord, InstancePause, JobRecord, JobState};

/// Every kind of event, by the name receivers see and filter on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EventType {
    GroupCreated,
    GroupCreationFailed,
    GroupUpdated,
    ParticipantsAdded,
    ParticipantsRemoved,
    ParticipantsPromoted,
    ParticipantsDemoted,
    ParticipantsJoined,
    ParticipantsLeft,
    ParticipantsInviteSent,
    InstanceQrReady,
    InstancePaired,
    InstanceConnected,
    InstanceDisconnected,
    InstanceUnreachable,
    InstanceLoggedOut,
    InstanceTemporarilyBanned,
    JobStateChanged,
}

impl EventType {
    pub const ALL: [Self; 18] = [
        Self::GroupCreated,
        Self::GroupCreationFailed,
        Self::GroupUpdated,
        Self::ParticipantsAdded,
        Self::ParticipantsRemoved,
        Self::ParticipantsPromoted,
        Self::ParticipantsDemoted,
        Self::ParticipantsJoined,
        Self::ParticipantsLeft,
        Self::ParticipantsInviteSent,
        Self::InstanceQrReady,
        Self::InstancePaired,
        Self::InstanceConnected,
        Self::InstanceDisconnected,
        Self::InstanceUnreachable,
        Self::InstanceLoggedOut,
        Self::InstanceTemporarilyBanned,
        Self::JobStateChanged,
    ];

    /// Every category a filter may name (`group.*`, `group.participants.*`, `instance.*`, `job.*`), in the order
    /// their first types appear in `ALL`.
    pub fn categories() -> Vec<String> {
        let mut categories: Vec<String> = Vec::new();
        for name in Self::ALL.map(Self::as_str) {
            for (i, _) in name.match_indices('.') {
                let category = format!("{}.*", &name[..i]);
                if !categories.contains(&category) {
                    categories.push(category);
                }
            }
        }
        categories
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::GroupCreated => "group.created",
            Self::GroupCreationFailed => "group.creation_failed",
            Self::GroupUpdated => "group.updated",
            Self::ParticipantsAdded => "group.participants.added",
            Self::ParticipantsRemoved => "group.participants.removed",
            Self::ParticipantsPromoted => "group.participants.promoted",
            Self::ParticipantsDemoted => "group.participants.demoted",
            Self::ParticipantsJoined => "group.participants.joined",
            Self::ParticipantsLeft => "group.participants.left",
            Self::ParticipantsInviteSent => "group.participants.invite_sent",
            Self::InstanceQrReady => "instance.qr_ready",
            Self::InstancePaired => "instance.paired",
            Self::InstanceConnected => "instance.connected",
            Self::InstanceDisconnected => "instance.disconnected",
            Self::InstanceUnreachable => "instance.unreachable",
            Self::InstanceLoggedOut => "instance.logged_out",
            Self::InstanceTemporarilyBanned => "instance.temporarily_banned",
            Self::JobStateChanged => "job.state_changed",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.as_str() == s)
    }

    /// The first part of the name (`group`, `instance`, `job`): a filter entry `group.*` takes every group event.
    pub fn category(self) -> &'static str {
        self.as_str().split('.').next().unwrap_or_default()
    }

    /// The first two parts of a three-part name (`group.participants`), else the category: a filter entry
    /// `group.participants.*` takes every participant event.
    pub fn subcategory(self) -> &'static str {
        let name = self.as_str();
        match name.rsplit_once('.') {
            Some((parent, _)) if parent.contains('.') => parent,
            _ => self.category(),
        }
    }

    /// Whether `prefix.*` takes this type.
    fn under(self, prefix: &str) -> bool {
        prefix == self.category() || prefix == self.subcategory()
    }
}

/// An event filter: no entries takes every event; otherwise an event is taken when an entry names its type, or its
/// category or subcategory with `.*` (`group.*`, `group.participants.*`). Entries are checked when the filter is built, so the store can match them as text.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EventFilter(Vec<String>);

impl EventFilter {
    /// Every event.
    pub fn all() -> Self {
        Self(Vec::new())
    }

    /// `Err` names the first entry that is neither an event type nor `<category>.*`.
    pub fn parse<S: AsRef<str>>(entries: &[S]) -> Result<Self, String> {
        let mut out: Vec<String> = Vec::new();
        for entry in entries {
            let entry = entry.as_ref().trim();
            let known = EventType::parse(entry).is_some()
                || entry.strip_suffix(".*").is_some_and(|prefix| EventType::ALL.iter().any(|t| t.under(prefix)));
            if !known {
                return Err(format!(
                    "`{entry}` is not an event type (e.g. group.created) or a category (group.*, \
                     group.participants.*, instance.*, job.*)"
                ));
            }
            if !out.iter().any(|e| e == entry) {
                out.push(entry.to_owned());
            }
        }
        Ok(Self(out))
    }

    pub fn entries(&self) -> &[String] {
        &self.0
    }

    pub fn takes(&self, event_type: EventType) -> bool {
        self.0.is_empty()
            || self
                .0
                .iter()
                .any(|e| e == event_type.as_str() || e.strip_suffix(".*").is_some_and(|p| event_type.under(p)))
    }
}

/// An event as it is written: its id doubles as the `webhook-id` of every delivery of it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewEvent {
    pub id: Uuid,
    pub event_type: EventType,
    pub instance_id: Option<InstanceId>,
    /// Deliveries with the same key to one endpoint go out in the order their events were written.
    pub ordering_key: String,
    /// The whole JSON body receivers get (and sign), as text.
    pub payload: String,
    pub created_at: Timestamp,
}

/// A stored event. `seq` orders events and is Green API's `receiptId`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EventRecord {
    pub seq: i64,
    pub id: Uuid,
    pub event_type: String,
    pub instance_id: Option<InstanceId>,
    pub ordering_key: String,
    pub payload: String,
    pub created_at: Timestamp,
    /// When a poller (Green API `deleteNotification`) acknowledged it.
    pub acknowledged_at: Option<Timestamp>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EventListQuery {
    pub instance_id: Option<InstanceId>,
    /// Only events of this type (`group.created`).
    pub event_type: Option<String>,
    /// Only events with a greater `seq` (the next page after the last one seen, oldest first).
    pub after_seq: Option<i64>,
    /// Only events with a smaller `seq` (the next page after the last one seen, newest first).
    pub before_seq: Option<i64>,
    /// Newest first (the console's event monitor) rather than in the log's order.
    pub newest_first: bool,
    /// 1 to 500.
    pub limit: u32,
}

/// A change to the gateway's records that events may accompany in one transaction (`Store::commit`).
#[derive(Clone, Debug)]
pub enum Change<'a> {
    InsertGroup(&'a GroupRecord),
    UpdateGroup(&'a GroupRecord),
    /// Names `job_id` as the creator of a group recorded without one (a client imported it by its JID while its
    /// creation was finishing); a group that names a creator already is left as it is.
    AttributeGroupCreation {
        id: GroupId,
        job_id: Uuid,
    },
    InsertJobs(&'a [JobRecord]),
    /// `InsertJobs` of one job carrying a `dedupe_key`, unless a job with that key created since `since` (as
    /// `find_duplicate_job` finds it) is queued,
    /// running or succeeded (and, given `passed_over`, the id and creation time of a duplicate the caller decided to
    /// go past, newer than it in `find_duplicate_job`'s order): then the whole commit is refused with
    /// `DbError::NotFound`.
    /// The check and the insert are one statement in a transaction that, on PostgreSQL, waits for its turn with the
    /// others that check or write events (`Backend::events_in_turn`), events or not: of two nodes recording the same
    /// creation at once, one wins.
    InsertJobUnlessDuplicate {
        job: &'a JobRecord,
        since: Timestamp,
        passed_over: Option<(Uuid, Timestamp)>,
    },
    UpdateJob(&'a JobRecord),
    /// `UpdateJob` of a job still as it was read (in `state`, last changed at `updated_at`): nothing when another
    /// worker, here or on another node, has claimed or changed it since, and the commit fails with `NotFound`.
    UpdateJobAsRead {
        job: &'a JobRecord,
        state: JobState,
        updated_at: Timestamp,
    },
    /// A creation attempt, recorded before the network is asked.
    InsertCreationAttempt(&'a CreationAttempt),
    /// An attempt's end (its `finished_at`, `outcome` and `detail`); the attempt must be recorded.
    FinishCreationAttempt(&'a CreationAttempt),
    /// Queued → running with one more attempt, as `Store::claim_job`. When the job is no longer queued, or (given
    /// `attempts_as_read`) has been claimed since it was read with that many attempts, the whole commit is refused
    /// with `DbError::NotFound` and nothing is written: a pass on another node that read it before cannot claim it
    /// again after its reply was lost and it was queued back to be reconciled.
    ClaimJob {
        id: Uuid,
        instance_id: InstanceId,
        now: Timestamp,
        attempts_as_read: Option<u32>,
    },
    SetInstancePause {
        id: InstanceId,
        pause: Option<&'a InstancePause>,
    },
    SetInstancePhone {
        id: InstanceId,
        phone: &'a PhoneNumber,
    },
}

// ---------- webhook endpoints ----------

/// A secret as stored: sealed with the server's key, never in clear.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SealedSecret(pub String);

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WebhookEndpoint {
    pub id: Uuid,
    pub url: String,
    pub description: String,
    pub filter: EventFilter,
    pub enabled: bool,
    /// Why the endpoint was disabled (by its owner or for failing too long); `None` while enabled.
    pub disabled_reason: Option<String>,
    pub secret: SealedSecret,
    /// After a rotation the previous secret also signs until it expires.
    pub previous_secret: Option<(SealedSecret, Timestamp)>,
    /// Since when every delivery to it has failed; `None` after a success.
    pub failing_since: Option<Timestamp>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DeliveryState {
    /// Waiting for its next attempt (or behind an earlier delivery of the same ordering key).
    Pending,
    Succeeded,
    /// Out of attempts; `Store::replay_delivery` sends it again.
    Failed,
}

impl DeliveryState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [Self::Pending, Self::Succeeded, Self::Failed].into_iter().find(|d| d.as_str() == s)
    }
}

/// One event on its way to one endpoint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeliveryRecord {
    pub id: i64,
    pub endpoint_id: Uuid,
    pub event_id: Uuid,
    pub event_type: String,
    pub ordering_key: String,
    pub state: DeliveryState,
    pub attempts: u32,
    pub next_attempt_at: Timestamp,
    pub last_error: Option<String>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// A delivery due now, with what it takes to send it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DueDelivery {
    pub delivery: DeliveryRecord,
    pub endpoint: WebhookEndpoint,
    pub payload: String,
    pub event_created_at: Timestamp,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DeliveryListQuery {
    pub endpoint_id: Option<Uuid>,
    pub state: Option<DeliveryState>,
    pub event_id: Option<Uuid>,
    /// Only deliveries with a smaller id (the next page, newest first).
    pub before_id: Option<i64>,
    /// 1 to 500.
    pub limit: u32,
}

/// One try to deliver, as the attempt log shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeliveryAttempt {
    pub id: Uuid,
    pub delivery_id: i64,
    pub attempted_at: Timestamp,
    pub duration_ms: u64,
    /// The HTTP status the endpoint answered; `None` when there was no answer (refused, timed out, blocked).
    pub status: Option<u16>,
    pub error: Option<String>,
    /// The start of the answer's body, for the log.
    pub response_body: Option<String>,
}

/// What an attempt did to its delivery and endpoint, written with the attempt in one transaction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AttemptOutcome {
    pub state: DeliveryState,
    pub next_attempt_at: Timestamp,
    pub last_error: Option<String>,
    /// The endpoint's `failing_since` after this attempt.
    pub endpoint_failing_since: Option<Timestamp>,
    /// Disables the endpoint with this reason.
    pub disable_endpoint: Option<String>,
    /// The claim the attempt was made under (`Store::claim_due_deliveries`): the outcome is written only while the
    /// delivery is still under it, so a pass that overran its claim (taken over meanwhile) records nothing. `None`
    /// for a delivery that was not claimed.
    pub claim: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_event_type_reads_back_from_its_name() {
        for t in EventType::ALL {
            assert_eq!(EventType::parse(t.as_str()), Some(t));
        }
        assert_eq!(EventType::parse("group.made"), None);
    }

    #[test]
    fn the_categories_are_every_prefix_of_a_type() {
        assert_eq!(EventType::categories(), ["group.*", "group.participants.*", "instance.*", "job.*"]);
        assert!(EventFilter::parse(&EventType::categories()).is_ok());
    }

    #[test]
    fn a_filter_takes_named_types_and_whole_categories() {
        let filter = EventFilter::parse(&["group.created", "instance.*", "group.participants.*"]).unwrap();
        assert!(filter.takes(EventType::GroupCreated));
        assert!(filter.takes(EventType::InstanceQrReady));
        assert!(filter.takes(EventType::ParticipantsLeft));
        assert!(!filter.takes(EventType::GroupUpdated));
        assert!(!filter.takes(EventType::JobStateChanged));
        assert_eq!(EventType::ParticipantsLeft.subcategory(), "group.participants");
        assert_eq!(EventType::GroupCreated.subcategory(), "group");
        assert!(EventFilter::all().takes(EventType::JobStateChanged));
    }

    #[test]
    fn a_filter_names_the_entry_it_does_not_know() {
        let err = EventFilter::parse(&["group.created", "groups.*"]).unwrap_err();
        assert!(err.contains("`groups.*`"), "{err}");
        assert!(EventFilter::parse(&["group.creatd"]).is_err());
    }
}
