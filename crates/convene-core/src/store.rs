//! The store port: the gateway's own durable records. Implemented for SQLite (and later PostgreSQL) in
//! `convene-store`; the network's own state is not here.

use async_trait::async_trait;
use uuid::Uuid;

use crate::clock::Timestamp;
use crate::connector::ConnectorKind;
use crate::events::{
    AttemptOutcome, Change, DeliveryAttempt, DeliveryListQuery, DeliveryRecord, DueDelivery, EventListQuery,
    EventRecord, NewEvent, WebhookEndpoint,
};
use crate::group::GroupSettings;
use crate::ids::{GroupId, GroupJid, InstanceId};
use crate::pacing::PacingPolicy;
use crate::phone::PhoneNumber;

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("not found")]
    NotFound,
    #[error("conflicts with an existing record")]
    Conflict,
    #[error("database error: {0}")]
    Other(#[source] Box<dyn std::error::Error + Send + Sync>),
}

pub type DbResult<T> = Result<T, DbError>;

/// An account API key. Only the SHA-256 of the secret is kept.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiKeyRecord {
    pub id: Uuid,
    pub name: String,
    /// The first characters of the key, to tell keys apart in listings.
    pub prefix: String,
    pub secret_hash: String,
    pub created_at: Timestamp,
    /// The instances the key may see and act on; `None`: every instance (an account-wide key).
    pub instance_ids: Option<Vec<InstanceId>>,
    /// A read-only key may read but change nothing.
    pub read_only: bool,
    /// When the key last authenticated a request (written at most once a minute).
    pub last_used_at: Option<Timestamp>,
}

impl ApiKeyRecord {
    /// An account-wide, writable key: the kind that may manage keys and everything that is not one instance's.
    pub fn is_admin(&self) -> bool {
        self.instance_ids.is_none() && !self.read_only
    }
}

/// A console sign-in: the browser holds the session's secret in a cookie, the store its SHA-256 and the key it
/// signed in with. The session acts with that key's rights and ends with it (a revoked key's sessions find no key).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConsoleSessionRecord {
    pub secret_hash: String,
    pub api_key_id: Uuid,
    pub created_at: Timestamp,
    pub expires_at: Timestamp,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InstanceRecord {
    pub id: InstanceId,
    pub kind: ConnectorKind,
    pub name: String,
    pub phone: Option<PhoneNumber>,
    /// SHA-256 of the instance token (Green API `apiTokenInstance`, Z-API token, Wawp `access_token`).
    pub token_hash: String,
    pub created_at: Timestamp,
}

/// A group as one instance knows it: our id, the network's JID and the last metadata we saw.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupRecord {
    pub id: GroupId,
    pub instance_id: InstanceId,
    pub jid: GroupJid,
    pub subject: String,
    pub description: Option<String>,
    pub settings: GroupSettings,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    /// Set when the instance left the group; the record stays for history.
    pub left_at: Option<Timestamp>,
    /// The creation job that made the group (its result says what happened to every participant); `None` for a
    /// group Convene found rather than created.
    pub creation_job_id: Option<Uuid>,
}

/// A page of groups in creation order, and where the next page starts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupPage {
    pub groups: Vec<GroupRecord>,
    pub next_cursor: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct GroupListQuery {
    pub instance_id: Option<InstanceId>,
    /// Only groups whose subject contains this text, ignoring the case of ASCII letters (see the store for others).
    pub subject_contains: Option<String>,
    /// Opaque cursor from a previous page's `next_cursor`.
    pub cursor: Option<String>,
    pub limit: u32,
}

// ---------- instance settings, pacing and creation jobs ----------

/// What an instance does by default; changed through the API.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct InstanceSettings {
    /// Overrides the pacing default of the instance's kind.
    pub pacing: Option<PacingPolicy>,
    /// Send private invites to people privacy settings keep out, unless a request says otherwise.
    pub auto_invite: bool,
    /// Numbers added to every group the instance creates and made admins.
    pub backup_admins: Vec<PhoneNumber>,
}

/// A pause the network imposed on an instance's creations (a `rate-overlimit` or a temporary ban).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InstancePause {
    pub until: Timestamp,
    pub reason: String,
}

/// One attempt to create a group on the network, written before the network is asked. Pacing counts these.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CreationAttempt {
    pub id: Uuid,
    pub instance_id: InstanceId,
    pub job_id: Option<Uuid>,
    pub started_at: Timestamp,
    pub finished_at: Option<Timestamp>,
    /// `created`, `found` (reconciled), `unknown`, `rate_limited`, `banned`, `failed`; `None` while under way.
    pub outcome: Option<String>,
    pub detail: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum JobState {
    Queued,
    Running,
    Succeeded,
    Failed,
    Cancelled,
}

impl JobState {
    pub const ALL: [Self; 5] = [Self::Queued, Self::Running, Self::Succeeded, Self::Failed, Self::Cancelled];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Running => "running",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|j| j.as_str() == s)
    }

    pub fn is_final(self) -> bool {
        matches!(self, Self::Succeeded | Self::Failed | Self::Cancelled)
    }
}

/// A queued group creation. The request and the result are JSON the service owns; the store keeps them as text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JobRecord {
    pub id: Uuid,
    pub batch_id: Option<Uuid>,
    pub state: JobState,
    /// The instances the job may run on (a pool of numbers).
    pub instance_ids: Vec<InstanceId>,
    /// Set by the first attempt: after an attempt with an unknown outcome the job must be reconciled on that
    /// instance before anything else.
    pub pinned_instance_id: Option<InstanceId>,
    pub request: String,
    /// Travels with every attempt, so the network can be searched for a group an attempt may have created.
    pub creation_key: String,
    pub attempts: u32,
    pub next_run_at: Timestamp,
    pub needs_reconcile: bool,
    pub last_error: Option<String>,
    pub result: Option<String>,
    /// A synchronous creation's duplicate-window key (instance, subject and participant set hashed): a retry
    /// without an Idempotency-Key that carries the same key gets this job's answer. `None` for queued creations.
    pub dedupe_key: Option<String>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// A batch of queued creations (`POST /v1/jobs/groups`): its jobs counted by state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BatchSummary {
    pub batch_id: Uuid,
    pub created_at: Timestamp,
    /// The pool of instances its jobs may run on (one pool for the whole batch).
    pub instance_ids: Vec<InstanceId>,
    /// Jobs per state, every state present.
    pub counts: [(JobState, u64); 5],
}

impl BatchSummary {
    pub fn count(&self, state: JobState) -> u64 {
        self.counts.iter().find(|(s, _)| *s == state).map_or(0, |(_, n)| *n)
    }

    pub fn total(&self) -> u64 {
        self.counts.iter().map(|(_, n)| n).sum()
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct JobListQuery {
    pub state: Option<JobState>,
    pub batch_id: Option<Uuid>,
    /// Only jobs listed after this one, newest first: older, or as old with a smaller id (the next page).
    pub before: Option<(Timestamp, Uuid)>,
    /// 1 to 500.
    pub limit: u32,
}

// ---------- idempotency keys ----------

/// A native API request sent with an `Idempotency-Key`, kept so that sending it again answers the same without
/// doing it twice. One per (API key, idempotency key).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdempotencyRecord {
    /// The account API key the request came with: the same idempotency key under two API keys is two records.
    pub api_key_id: Uuid,
    /// The `Idempotency-Key` header: 1 to 255 printable ASCII characters.
    pub key: String,
    /// What the request was (method, path, query, body hash); opaque to the store.
    pub fingerprint: String,
    /// When the request started. It also tells this use of the key from a later one that took over the record.
    pub created_at: Timestamp,
    /// The answer; `None` while the request is in progress.
    pub response: Option<IdempotentResponse>,
}

/// The answer to replay.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdempotentResponse {
    pub status: u16,
    pub content_type: Option<String>,
    pub body: String,
}

/// What `Store::begin_idempotent_request` found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum IdempotencyClaim {
    /// The record is new (or replaced one that had expired or was abandoned): run the request.
    Claimed,
    /// A live record holds the key: replay it, or refuse.
    Existing(IdempotencyRecord),
}

/// The longest duplicate window (`creation.duplicate_window_secs`): a creation repeated by a client retrying after a
/// timeout comes within minutes.
pub const DUPLICATE_WINDOW_MAX_SECS: u64 = 3600;

/// How far past the start of a duplicate window a store looks for a duplicate: the longest window, and as long again
/// for a job stamped by a node whose clock runs ahead. A bound, so that a job stamped years ahead by a wrong clock
/// does not make each lookup search the years between (see `convene-store`'s `duplicates_in_window!`).
pub const DUPLICATE_SEARCH_SECS: u64 = 2 * DUPLICATE_WINDOW_MAX_SECS;

/// Convene's records; and, as every store is one, the connectors' device keys (`DeviceKeyStore`) and the nodes'
/// leases on numbers (`LeaseStore`), so that one database holds all.
#[async_trait]
pub trait Store: crate::DeviceKeyStore + crate::LeaseStore + Send + Sync {
    async fn insert_api_key(&self, key: &ApiKeyRecord) -> DbResult<()>;
    async fn find_api_key(&self, secret_hash: &str) -> DbResult<Option<ApiKeyRecord>>;
    async fn count_api_keys(&self) -> DbResult<u64>;
    /// Oldest first.
    async fn list_api_keys(&self) -> DbResult<Vec<ApiKeyRecord>>;
    /// Deletes the key, so that it is refused from the next request on. `NotFound` when there is no such key;
    /// `Conflict`, and nothing deleted, when it is the last admin key (`ApiKeyRecord::is_admin`): the check and the
    /// delete are one statement, so two concurrent revocations cannot both pass it.
    async fn delete_api_key(&self, id: Uuid) -> DbResult<()>;
    /// Records a use of the key; `NotFound` when it is gone.
    async fn touch_api_key(&self, id: Uuid, at: Timestamp) -> DbResult<()>;

    /// Records a console session, and forgets sessions that expired before it began.
    async fn insert_console_session(&self, session: &ConsoleSessionRecord) -> DbResult<()>;
    /// The key of the session whose secret hashes to `secret_hash`, while the session lasts (`expires_at` after
    /// `now`) and the key exists.
    async fn find_console_session(&self, secret_hash: &str, now: Timestamp) -> DbResult<Option<ApiKeyRecord>>;
    /// Ends a session (signing out); ending one that is gone is not an error.
    async fn delete_console_session(&self, secret_hash: &str) -> DbResult<()>;

    /// Fails with `Conflict` when the id is taken.
    async fn insert_instance(&self, instance: &InstanceRecord) -> DbResult<()>;
    async fn get_instance(&self, id: InstanceId) -> DbResult<InstanceRecord>;
    async fn list_instances(&self) -> DbResult<Vec<InstanceRecord>>;
    /// Whether an instance is the number `phone`.
    async fn instance_phone_taken(&self, phone: &PhoneNumber) -> DbResult<bool>;
    /// The greatest number of an instance from `low` to `high` (E.164 of one length, so that text order is number
    /// order), without reading every instance.
    async fn highest_instance_phone(&self, low: &PhoneNumber, high: &PhoneNumber) -> DbResult<Option<PhoneNumber>>;
    /// Deletes the instance and its group records.
    async fn delete_instance(&self, id: InstanceId) -> DbResult<()>;
    /// The number an instance turned out to be (a real number is known once paired). `NotFound` for no instance.
    async fn set_instance_phone(&self, id: InstanceId, phone: &PhoneNumber) -> DbResult<()>;
    /// Replaces the hash of the instance's token, so the old token is refused. `NotFound` for no instance.
    async fn set_instance_token_hash(&self, id: InstanceId, token_hash: &str) -> DbResult<()>;

    /// Fails with `Conflict` when the instance already has a record for this JID.
    async fn insert_group(&self, group: &GroupRecord) -> DbResult<()>;
    async fn get_group(&self, id: GroupId) -> DbResult<GroupRecord>;
    /// The records for `jid`, one per instance that knows it, optionally for one instance only.
    async fn find_groups_by_jid(&self, jid: &GroupJid, instance_id: Option<InstanceId>) -> DbResult<Vec<GroupRecord>>;
    async fn list_groups(&self, query: &GroupListQuery) -> DbResult<GroupPage>;
    /// A count that moves with every commit that may change what `list_groups` returns, on a backend where this
    /// process is the only writer; `None` where it cannot say (another process may write, or such a commit is under
    /// way). A list read after this said `Some(n)` stays current for as long as it still says `Some(n)`.
    fn group_listing_count(&self) -> Option<u64> {
        None
    }
    /// Replaces subject, description, settings, updated_at and left_at.
    async fn update_group(&self, group: &GroupRecord) -> DbResult<()>;

    // ---------- instance settings, pacing and creation jobs ----------
    /// The instance's settings; the defaults when none were stored.
    async fn instance_settings(&self, id: InstanceId) -> DbResult<InstanceSettings>;
    async fn put_instance_settings(&self, id: InstanceId, settings: &InstanceSettings) -> DbResult<()>;
    /// `None` lifts the pause.
    async fn set_instance_pause(&self, id: InstanceId, pause: Option<&InstancePause>) -> DbResult<()>;
    async fn instance_pause(&self, id: InstanceId) -> DbResult<Option<InstancePause>>;
    async fn insert_creation_attempt(&self, attempt: &CreationAttempt) -> DbResult<()>;
    async fn finish_creation_attempt(
        &self,
        id: Uuid,
        finished_at: Timestamp,
        outcome: &str,
        detail: Option<&str>,
    ) -> DbResult<()>;
    /// When the instance's attempts since `since` started, oldest first: every attempt that reached, or may have
    /// reached, the network (one finished with the outcome `not_sent` did not, and uses no pacing budget).
    async fn creation_attempt_times(&self, id: InstanceId, since: Timestamp) -> DbResult<Vec<Timestamp>>;
    async fn job_attempts(&self, job_id: Uuid) -> DbResult<Vec<CreationAttempt>>;
    /// All or none.
    async fn insert_jobs(&self, jobs: &[JobRecord]) -> DbResult<()>;
    async fn get_job(&self, id: Uuid) -> DbResult<JobRecord>;
    /// Newest first.
    async fn list_jobs(&self, query: &JobListQuery) -> DbResult<Vec<JobRecord>>;
    /// The newest job (by `created_at`, then id) with `dedupe_key` created at or after `since` that is queued,
    /// running or succeeded (a failed creation made no group, so a retry may try again). A job stamped
    /// [`DUPLICATE_SEARCH_SECS`] or more after `since` may be missed.
    async fn find_duplicate_job(&self, dedupe_key: &str, since: Timestamp) -> DbResult<Option<JobRecord>>;
    /// Queued jobs with `next_run_at <= now`, soonest first, then oldest.
    async fn due_jobs(&self, now: Timestamp, limit: u32) -> DbResult<Vec<JobRecord>>;
    /// `due_jobs` of the numbers `node` holds a lease on that is good at `leases_at`: the queued jobs due by `now`
    /// naming one of them (for a creation to reconcile, the number it was made on), in the same order. So that a node
    /// finds its own jobs behind any number of other nodes' (`leases_at` is wall-clock time, as leases are; `now` is
    /// the service's clock).
    async fn due_jobs_leased_by(
        &self,
        node: &str,
        leases_at: Timestamp,
        now: Timestamp,
        limit: u32,
    ) -> DbResult<Vec<JobRecord>>;
    /// The earliest `next_run_at` of the queued jobs.
    async fn next_job_due(&self) -> DbResult<Option<Timestamp>>;
    /// How many jobs are in each state; a state without jobs is left out.
    async fn count_jobs_by_state(&self) -> DbResult<Vec<(JobState, u64)>>;
    /// Batches newest first, after `before` (a batch's creation time and id: the next page), at most `limit`.
    async fn list_batches(&self, before: Option<(Timestamp, Uuid)>, limit: u32) -> DbResult<Vec<BatchSummary>>;
    /// Queued → running, one more attempt, pinned to `instance_id`; false when the job was not queued (taken or
    /// cancelled meanwhile).
    async fn claim_job(&self, id: Uuid, instance_id: InstanceId, now: Timestamp) -> DbResult<bool>;
    /// Replaces the job's state, pin, next run, reconcile flag, error, result and updated_at.
    async fn update_job(&self, job: &JobRecord) -> DbResult<()>;

    // ---------- idempotency keys ----------
    /// Stores `record` (in progress: its `response` is ignored) unless a live record holds its (API key, key).
    /// A record is dead, and replaced, when it was created before `expired_before`, or is still in progress and was
    /// created before `abandoned_before`. Of concurrent callers, one claims the key and the others see its record.
    async fn begin_idempotent_request(
        &self,
        record: &IdempotencyRecord,
        abandoned_before: Timestamp,
        expired_before: Timestamp,
    ) -> DbResult<IdempotencyClaim>;
    /// Stores the answer of the request that `begin_idempotent_request` claimed for `record`; `NotFound` when that
    /// claim is gone (released, or taken over after it was abandoned).
    async fn complete_idempotent_request(
        &self,
        record: &IdempotencyRecord,
        response: &IdempotentResponse,
    ) -> DbResult<()>;
    /// Deletes the claim for `record` while it is in progress, so the key can be used again; `NotFound` when it is
    /// gone or complete.
    async fn release_idempotent_request(&self, record: &IdempotencyRecord) -> DbResult<()>;
    /// Deletes up to `limit` records created before `before`, oldest first; how many.
    async fn delete_expired_idempotency_keys(&self, before: Timestamp, limit: u32) -> DbResult<u64>;
    // ---------- events and webhook deliveries ----------
    /// Applies `changes` and writes `events` (each fanned out to the enabled endpoints whose filter takes it) in one
    /// transaction: all or nothing.
    async fn commit(&self, changes: &[Change<'_>], events: &[NewEvent]) -> DbResult<()>;
    /// Oldest first.
    async fn list_events(&self, query: &EventListQuery) -> DbResult<Vec<EventRecord>>;
    /// The instance's oldest event created at or after `since` that no poller acknowledged (Green API's queue).
    async fn next_unacknowledged_event(
        &self,
        instance_id: InstanceId,
        since: Timestamp,
    ) -> DbResult<Option<EventRecord>>;
    /// Marks the instance's event `seq` acknowledged; false when there is none or it was acknowledged before.
    async fn acknowledge_event(&self, instance_id: InstanceId, seq: i64, at: Timestamp) -> DbResult<bool>;

    async fn insert_webhook_endpoint(&self, endpoint: &WebhookEndpoint) -> DbResult<()>;
    async fn get_webhook_endpoint(&self, id: Uuid) -> DbResult<WebhookEndpoint>;
    /// Oldest first.
    async fn list_webhook_endpoints(&self) -> DbResult<Vec<WebhookEndpoint>>;
    /// Replaces everything but the id and created_at.
    async fn update_webhook_endpoint(&self, endpoint: &WebhookEndpoint) -> DbResult<()>;
    /// Deletes the endpoint with its deliveries and their attempts.
    async fn delete_webhook_endpoint(&self, id: Uuid) -> DbResult<()>;

    /// Pending deliveries to enabled endpoints with `next_attempt_at <= now`, each the oldest pending one of its
    /// (endpoint, ordering key); soonest first.
    async fn due_deliveries(&self, now: Timestamp, limit: u32) -> DbResult<Vec<DueDelivery>>;
    /// Claims up to `limit` of the deliveries `due_deliveries` would return, for the dispatcher pass named `claim`
    /// (unique per pass): they are not due again until `until` (when another pass may take one over, should this one
    /// die mid-attempt), so that two passes, on one node or two, never send one delivery at once. The claimed
    /// deliveries, oldest first.
    async fn claim_due_deliveries(
        &self,
        now: Timestamp,
        limit: u32,
        claim: &str,
        until: Timestamp,
    ) -> DbResult<Vec<DueDelivery>>;
    /// Makes the deliveries still under `claim` (claimed until `until`) due again at `now`: a pass that cannot record
    /// gives back what it holds instead of leaving it until its claim ends.
    async fn release_delivery_claim(&self, claim: &str, until: Timestamp, now: Timestamp) -> DbResult<u64>;
    /// The earliest `next_attempt_at` of the deliveries `due_deliveries` would return (heads of their key).
    async fn next_delivery_due(&self) -> DbResult<Option<Timestamp>>;
    /// Logs each attempt and applies its outcome to the delivery (one more attempt) and its endpoint, in order and
    /// in one transaction; `NotFound`, and nothing written, when one of the deliveries is gone.
    async fn record_delivery_attempts(&self, attempts: &[(&DeliveryAttempt, &AttemptOutcome)]) -> DbResult<()>;
    async fn get_delivery(&self, id: i64) -> DbResult<DeliveryRecord>;
    /// Newest first.
    async fn list_deliveries(&self, query: &DeliveryListQuery) -> DbResult<Vec<DeliveryRecord>>;
    /// Oldest first.
    async fn delivery_attempts(&self, delivery_id: i64) -> DbResult<Vec<DeliveryAttempt>>;
    /// A failed delivery (or, with `endpoint_id`, every failed delivery of that endpoint created at or after
    /// `since`) goes back to pending, due at `now`; how many did.
    async fn replay_deliveries(
        &self,
        delivery_id: Option<i64>,
        endpoint_id: Option<Uuid>,
        since: Option<Timestamp>,
        now: Timestamp,
    ) -> DbResult<u64>;
    /// Deletes up to `limit` of the oldest events created before `before`, with their deliveries and attempt logs,
    /// leaving every event that is still owed to an endpoint (a pending delivery); how many events went.
    async fn prune_events(&self, before: Timestamp, limit: u32) -> DbResult<u64>;
}
