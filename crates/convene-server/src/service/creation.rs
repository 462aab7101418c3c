//! Group creation that is paced and happens exactly once.
//!
//! Every creation — synchronous (`POST /v1/groups`, the dialects) or queued (`POST /v1/jobs/groups`) — is a job row
//! carrying a creation key, written before the network is asked, and every attempt is a row that pacing counts.
//! When an attempt's outcome is unknown (a lost reply, a timeout, a crash), the network is searched for the key
//! before anything is tried again. A `rate-overlimit` or a temporary ban pauses the instance until it ends.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use convene_core::Clock as _;
use convene_core::connector::CreateGroupRequest;
use convene_core::events::{Change, EventType, NewEvent};
use convene_core::store::{
    CreationAttempt, GroupRecord, InstancePause, InstanceRecord, JobListQuery, JobRecord, JobState,
};
use convene_core::{
    ConnectorError, CreationKey, DbError, GroupDescription, GroupId, GroupMetadata, GroupSettings, GroupSubject,
    InstanceId, InstanceState, PacingPolicy, ParticipantChange, ParticipantOutcome, ParticipantResult, PhoneNumber,
    SystemClock, Timestamp,
};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::existing_instances;
use super::outbox::{EventGroup, GroupCreatedData, GroupCreationFailedData, group_key};
use super::{
    CreatedGroupView, GroupView, NewGroup, ParsedParticipants, ParticipantReport, Service, not_found,
    parse_participants, results_from_membership,
};
use crate::error::{ApiError, FieldError, Result};

/// How long an instance waits after a `rate-overlimit` that named no time, and after a ban that named no end.
const DEFAULT_RATE_LIMIT_PAUSE: Duration = Duration::from_secs(60);
pub(super) const DEFAULT_BAN_PAUSE: Duration = Duration::from_secs(86_400);
const DAY: Duration = Duration::from_secs(86_400);
pub(super) const BAN_REASON: &str = "temporarily banned by WhatsApp (code 103)";
/// How long a repeated creation waits for the first one's answer before saying it is still under way.
const DUPLICATE_WAIT: Duration = Duration::from_secs(60);
/// A job left `running` by no process of ours for this long (its process died) is reconciled by the worker.
const ORPHANED_AFTER: Duration = Duration::from_secs(60);

/// The most due jobs a worker's pass reads at once (of all numbers, and of those its node holds).
const DUE_JOBS_PER_PASS: u32 = 100;

/// What guards a synchronous creation against a client's retry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RetryGuard {
    /// No Idempotency-Key: a creation like one made within `creation.duplicate_window_secs` gets that one's answer.
    DuplicateWindow,
    /// The caller sent an Idempotency-Key, which alone decides what a repeat gets.
    IdempotencyKey,
}

/// What a job row stores as its request.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct StoredRequest {
    group: NewGroup,
    /// A synchronous creation whose caller is gone is not retried: after a crash it is only reconciled.
    synchronous: bool,
}

/// What a finished job row stores as its result.
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CreationResult {
    pub group_id: GroupId,
    pub instance_id: InstanceId,
    #[schema(value_type = String, example = "120363043968066561@g.us")]
    pub jid: convene_core::GroupJid,
    pub participants: Vec<ParticipantReport>,
    /// The instance's backup admins: added and made admin in every group it creates.
    pub backup_admins: Vec<ParticipantReport>,
}

/// A creation checked and ready for the network.
struct Prepared {
    request: CreateGroupRequest,
    /// The instance's pacing policy, read with its other settings.
    pacing: PacingPolicy,
    participants: ParsedParticipants,
    backup_admins: Vec<PhoneNumber>,
    auto_invite: bool,
}

/// A group the network created, with its record and its report, to be committed with its job's end (see
/// `Service::finish_created`).
struct Created {
    view: CreatedGroupView,
    result: CreationResult,
}

/// What one pass of the worker knows of each instance's pacing: read once, and again after the pass creates on it.
/// Without it every due job read every instance of its pool (four queries each), so a campaign over 40 numbers made
/// 160 reads a job.
#[derive(Default)]
struct PassPacing {
    known: std::collections::HashMap<InstanceId, Option<InstancePacing>>,
    /// Jobs the pass left due without running or putting them off: to another node whose number may run them
    /// sooner, or to this node's next pass once its number's connection is open.
    left_due: usize,
}

struct InstancePacing {
    instance: InstanceRecord,
    policy: PacingPolicy,
    /// The last day's attempts, when the policy reads them.
    recent: Vec<Timestamp>,
    pause: Option<InstancePause>,
}

/// How one attempt ended.
enum Attempted {
    Created(GroupMetadata, Vec<ParticipantResult>),
    Failed(ConnectorError),
}

/// Retries of the creation queue and the duplicate window (each kind's pacing default is in its own section).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreationConfig {
    /// Attempts before a queued creation fails for good (network refusals from limits do not count against it).
    pub max_attempts: u32,
    /// Waits between attempts after failures, in seconds; the last repeats. Each gets ±20% jitter.
    pub retry_schedule_secs: Vec<u64>,
    /// For this many seconds, a synchronous creation sent without an Idempotency-Key on the same instance with the
    /// same subject and participant set as an earlier one that succeeded or is still running gets that creation's
    /// answer instead of a second group (a client retrying after a timeout). 0 turns it off.
    pub duplicate_window_secs: u64,
}

impl CreationConfig {
    pub fn validate(&self) -> std::result::Result<(), String> {
        if self.max_attempts == 0 {
            return Err("creation.max_attempts must be at least 1".into());
        }
        if self.retry_schedule_secs.is_empty() {
            return Err("creation.retry_schedule_secs must name at least one wait".into());
        }
        let longest = convene_core::store::DUPLICATE_WINDOW_MAX_SECS;
        if self.duplicate_window_secs > longest {
            return Err(format!(
                "creation.duplicate_window_secs is at most {longest} (an hour): it covers a client retrying after a \
                 timeout"
            ));
        }
        Ok(())
    }

    /// The wait before attempt `attempts + 1`, with a jitter of ±20% drawn from the job id (repeatable).
    fn retry_delay(&self, attempts: u32, job: Uuid) -> Duration {
        let i = (attempts.max(1) as usize - 1).min(self.retry_schedule_secs.len() - 1);
        let base = Duration::from_secs(self.retry_schedule_secs[i]);
        let spread = (job.as_u128() % 41) as f64 / 100.0 - 0.2;
        base.mul_f64(1.0 + spread)
    }
}

/// Jobs this process is running (see `Service::requeue_orphaned_jobs`); a job leaves the set when the guard drops.
pub(super) type JobsRunningHere = Arc<std::sync::Mutex<HashSet<Uuid>>>;

pub(super) struct RunningHere {
    jobs: JobsRunningHere,
    job: Uuid,
}

impl Drop for RunningHere {
    fn drop(&mut self) {
        self.jobs.lock().unwrap_or_else(std::sync::PoisonError::into_inner).remove(&self.job);
    }
}

/// A synchronous creation's duplicate-window key: its instance, subject and participant set (normalised numbers and
/// the inputs that are not numbers, in any order), hashed.
fn dedupe_key(instance_id: InstanceId, prepared: &Prepared) -> String {
    let numbers = prepared.participants.numbers.iter().map(|(_, p)| p.e164());
    let mut people: Vec<String> =
        numbers.chain(prepared.participants.invalid.iter().map(|i| i.trim().to_owned())).collect();
    people.sort();
    people.dedup();
    let identity = serde_json::json!([instance_id.0, prepared.request.subject.as_str(), people]);
    crate::auth::sha256_hex(identity.to_string().as_bytes())
}

/// What `POST /v1/jobs/groups` accepted.
pub struct Enqueued {
    pub batch_id: Uuid,
    pub jobs: Vec<JobRecord>,
}

/// An instance's creation pacing at one moment.
#[derive(Clone, Debug)]
pub struct CreationStatus {
    /// The policy in force: the instance's own, or its kind's default.
    pub pacing: PacingPolicy,
    /// The earliest time the next creation may go (the moment asked about, or earlier: at once).
    pub next_creation_at: Timestamp,
    /// Creation attempts in the 24 hours before the moment asked about, which the daily cap counts.
    pub created_last_day: usize,
    /// The network's pause, while it runs.
    pub pause: Option<InstancePause>,
}

impl Service {
    /// The policy that paces `instance`: its own, or its kind's default.
    pub async fn pacing_policy(&self, instance: &InstanceRecord) -> Result<PacingPolicy> {
        let own = self.store.instance_settings(instance.id).await?.pacing;
        Ok(self.policy_of(instance, own))
    }

    /// The instance's own policy when it has one, else its kind's default.
    fn policy_of(&self, instance: &InstanceRecord, own: Option<PacingPolicy>) -> PacingPolicy {
        own.unwrap_or_else(|| self.instances.drivers.default_pacing(instance.kind))
    }

    /// When `instance` may next create a group under `pacing` (`now` or earlier: at once), and the network's pause
    /// if one runs. The caller reads the clock once and decides with that reading: a second reading a moment later
    /// would make an instance that may create at once look paced. A day of attempts is read only when the policy
    /// looks at them.
    async fn next_creation_under(
        &self,
        instance: &InstanceRecord,
        pacing: PacingPolicy,
        now: Timestamp,
    ) -> Result<(Timestamp, Option<InstancePause>)> {
        let (recent, pause) = self.pacing_history(instance.id, pacing, now).await?;
        let pause = pause.filter(|p| p.until > now);
        Ok((pacing.next_allowed(&recent, pause.as_ref().map(|p| p.until), now), pause))
    }

    /// What pacing decides by for instance `id`: its last day's attempts (read only when `pacing` looks at them) and
    /// the network's pause, if one was recorded (ended or not).
    async fn pacing_history(
        &self,
        id: InstanceId,
        pacing: PacingPolicy,
        now: Timestamp,
    ) -> Result<(Vec<Timestamp>, Option<InstancePause>)> {
        let recent = match pacing.needs_history() {
            true => self.store.creation_attempt_times(id, now.minus(DAY)).await?,
            false => Vec::new(),
        };
        Ok((recent, self.store.instance_pause(id).await?))
    }

    /// Where `instance` stands with its pacing at `now`, as an operator reads it.
    pub async fn creation_status(&self, instance: &InstanceRecord, now: Timestamp) -> Result<CreationStatus> {
        let pacing = self.pacing_policy(instance).await?;
        let recent = self.store.creation_attempt_times(instance.id, now.minus(DAY)).await?;
        let pause = self.store.instance_pause(instance.id).await?.filter(|p| p.until > now);
        Ok(CreationStatus {
            pacing,
            next_creation_at: pacing.next_allowed(&recent, pause.as_ref().map(|p| p.until), now),
            created_last_day: recent.len(),
            pause,
        })
    }

    /// The earliest pacing lets the last of `count` creations over `instance_ids` start (see
    /// `convene_core::forecast_last`).
    pub async fn forecast_last_creation(
        &self,
        instance_ids: &[InstanceId],
        count: usize,
        now: Timestamp,
    ) -> Result<Option<Timestamp>> {
        let mut pool = Vec::with_capacity(instance_ids.len());
        for &id in instance_ids {
            let instance = self.instances.record(id).await?;
            pool.push(convene_core::PoolNumber {
                policy: self.pacing_policy(&instance).await?,
                recent: self.store.creation_attempt_times(id, now.minus(DAY)).await?,
                paused_until: self.store.instance_pause(id).await?.map(|p| p.until).filter(|until| *until > now),
            });
        }
        Ok(convene_core::forecast_last(&pool, count, now))
    }

    /// Checks a creation and adds the instance's backup admins. Every bad field is named, under `prefix`.
    async fn prepare(
        &self,
        instance: &InstanceRecord,
        new: &NewGroup,
        prefix: &str,
    ) -> std::result::Result<Prepared, Vec<FieldError>> {
        let at = |field: &str| format!("{prefix}{field}");
        let mut errors = Vec::new();
        let subject =
            GroupSubject::parse(&new.subject).map_err(|m| errors.push(FieldError::new(at("subject"), m))).ok();
        let description = match new.description.as_deref() {
            None | Some("") => None,
            Some(d) => GroupDescription::parse(d).map_err(|m| errors.push(FieldError::new(at("description"), m))).ok(),
        };
        if new.participants.is_empty() {
            errors.push(FieldError::new(at("participants"), "name at least one participant, as WhatsApp requires"));
        }
        let participants = parse_participants(&at("participants"), &new.participants, instance.phone.as_ref())
            .map_err(|mut e| errors.append(&mut e))
            .ok();
        let settings_row = match self.store.instance_settings(instance.id).await {
            Ok(s) => s,
            Err(e) => {
                errors.push(FieldError::new(at("instance_id"), format!("settings unreadable: {e}")));
                return Err(errors);
            }
        };
        let (Some(subject), Some(participants), true) = (subject, participants, errors.is_empty()) else {
            return Err(errors);
        };
        let mut phones = participants.phones();
        let requested: HashSet<PhoneNumber> = phones.iter().cloned().collect();
        let backup_admins: Vec<PhoneNumber> =
            settings_row.backup_admins.into_iter().filter(|p| Some(p) != instance.phone.as_ref()).collect();
        phones.extend(backup_admins.iter().filter(|p| !requested.contains(*p)).cloned());
        let mut settings = GroupSettings::default();
        new.settings.apply(&mut settings);
        Ok(Prepared {
            pacing: self.policy_of(instance, settings_row.pacing),
            request: CreateGroupRequest {
                subject,
                description,
                participants: phones,
                settings,
                key: CreationKey::new(),
            },
            participants,
            backup_admins,
            auto_invite: new.auto_invite.unwrap_or(settings_row.auto_invite),
        })
    }

    /// Creates a group now, or refuses with 429 and the wait when the instance's pacing does not allow it yet
    /// (nothing is sent to the network then). With `RetryGuard::DuplicateWindow`, a repeat of a creation made
    /// moments ago gets that creation's answer (see `CreationConfig::duplicate_window_secs`).
    pub async fn create_group(
        &self,
        instance_id: InstanceId,
        new: NewGroup,
        guard: RetryGuard,
    ) -> Result<CreatedGroupView> {
        let instance = self.instances.record(instance_id).await?;
        let prepared = self.prepare(&instance, &new, "").await.map_err(ApiError::Validation)?;
        // This node's connection, or the node's that runs the number (refused here when no node runs it).
        let connector = self.instances.connector(instance_id).await?;
        let window = Duration::from_secs(self.creation.duplicate_window_secs);
        let dedupe_key =
            (guard == RetryGuard::DuplicateWindow && !window.is_zero()).then(|| dedupe_key(instance_id, &prepared));
        // The newest duplicate gone past (it ended without a group): it and every older one no longer count.
        let mut passed_over: Option<(Uuid, Timestamp)> = None;
        // A creation goes ahead without looking for a duplicate first: its job goes in only if none is in the window
        // (`Change::InsertJobUnlessDuplicate`, checked by the commit that records the job, with the pages it reads
        // already in the writer's cache). The duplicate is looked up, on a read connection, once that commit has
        // found one, and before pacing refuses, so that a repeat gets the first one's answer even while the number
        // may not create. (Looked up first, every creation paid a read whose page cache every commit empties: 65-90 us
        // in an empty world, 130-170 us at 100,000 groups; convene-bench.)
        let mut look_first = false;
        let mut found_on_commit = 0;
        let stored = StoredRequest { group: new, synchronous: true };
        let (turn, job, running, attempt) = loop {
            let turn = self.creation_turn(instance_id).await;
            let now = self.clock.now();
            let first = match (&dedupe_key, look_first) {
                (Some(key), true) => self.store.find_duplicate_job(key, now.minus(window)).await?,
                _ => None,
            };
            if let Some(first) = first.filter(|f| passed_over.is_none_or(|p| (f.created_at, f.id) > (p.1, p.0))) {
                drop(turn);
                passed_over = Some((first.id, first.created_at));
                if let Some(answer) = self.answer_of(first).await? {
                    tracing::info!(instance = %instance_id, group = %answer.group.record.id, "a repeated creation gets the first one's group");
                    return Ok(answer);
                }
                // The first ended without a group, or this number has left it since: this one goes ahead.
                continue;
            }
            let (next, pause) = self.next_creation_under(&instance, prepared.pacing, now).await?;
            if next > now {
                if dedupe_key.is_some() && !look_first {
                    look_first = true;
                    continue;
                }
                let why = match pause {
                    Some(p) => format!("the network paused this number's group creation ({})", p.reason),
                    None => "this instance's pacing policy does not allow another group yet".to_owned(),
                };
                return Err(ApiError::TooManyRequests {
                    detail: format!("{why}; try again at {next}"),
                    retry_after: Some(now.until(next)),
                });
            }
            let mut job = self.new_job(&stored, &prepared, vec![instance_id], None, now)?;
            job.dedupe_key.clone_from(&dedupe_key);
            let on_its_node = self.instances.runs_here(instance_id);
            if on_its_node {
                job.state = JobState::Running;
                job.pinned_instance_id = Some(instance_id);
                job.attempts = 1;
            }
            // Under this number's turn on this node. Among several nodes the turn does not keep out the same creation
            // sent to another node: there the check and the insert, one statement, take turns with the other nodes'
            // in the event log's turn, which the store takes for them (see `Change::InsertJobUnlessDuplicate`).
            let insert = match &dedupe_key {
                Some(_) => Change::InsertJobUnlessDuplicate { job: &job, since: now.minus(window), passed_over },
                None => Change::InsertJobs(std::slice::from_ref(&job)),
            };
            let inserted = self.outbox.job_event(&job, None)?;
            let running = on_its_node.then(|| self.running_here(job.id));
            // On this node, the job's row goes in with its attempt's, in one commit; a job for another node's number
            // is queued for that node, under this node's turn, so that a repeat sent here meanwhile finds it.
            let recorded = match on_its_node {
                true => self.record_attempt(&job, instance_id, &[insert], &[inserted]).await.map(Some),
                false => self.outbox.try_commit(&[insert], &[inserted]).await.map(|()| None),
            };
            match recorded {
                Ok(attempt) => break (turn, job, running, attempt),
                // A duplicate is in the window: the lookup finds it next. Bounded, should the two ever disagree.
                Err(DbError::NotFound) if found_on_commit < 5 => {
                    found_on_commit += 1;
                    look_first = true;
                }
                Err(DbError::NotFound) => {
                    return Err(ApiError::Conflict(
                        "the same group is being created by another request; try again in a moment".into(),
                    ));
                }
                Err(e) => return Err(e.into()),
            }
        };
        let Some(attempt) = attempt else {
            // The creation is the other node's to run; the turn is not held while it does.
            drop(turn);
            return self.create_on_its_node(job).await;
        };
        let (_turn, _running) = (turn, running);
        let (attempted, ended) = self.attempt(&job, attempt, connector.as_ref(), &prepared.request).await?;
        match attempted {
            Attempted::Created(metadata, results) => {
                let created =
                    self.complete_created(job.id, &instance, metadata, results, &prepared, connector.as_ref()).await;
                self.finish_created(job, created, Some(ended)).await
            }
            Attempted::Failed(e) => {
                self.finish_job(job, JobState::Failed, Some(e.to_string())).await?;
                Err(match e {
                    // The instance is now paused until the ban ends: say when to come back, like pacing does.
                    ConnectorError::TemporarilyBanned { until: Some(until) } => ApiError::TooManyRequests {
                        detail: format!(
                            "WhatsApp temporarily banned this number for creating groups (code 103); group creation \
                             is paused until {until}"
                        ),
                        retry_after: Some(self.clock.now().until(until)),
                    },
                    e => e.into(),
                })
            }
        }
    }

    /// A synchronous creation on a number another node runs, queued (`job`) for that node's worker, which paces it
    /// with every other creation on the number: waited for here (each second, bounded like a repeat's wait).
    async fn create_on_its_node(&self, job: JobRecord) -> Result<CreatedGroupView> {
        tracing::info!(job = %job.id, instance = ?job.instance_ids, "a creation handed to the node that runs its number");
        let id = job.id;
        match self.answer_of(job).await? {
            Some(answer) => Ok(answer),
            None => {
                let ended = self.store.get_job(id).await?;
                let why = ended.last_error.unwrap_or_else(|| "the creation ended without a group".to_owned());
                Err(ConnectorError::Other(format!("on the node that runs the number: {why}")).into())
            }
        }
    }

    /// The answer a creation gave, for a repeat of it, waiting (bounded) while it is still under way; `None` when it
    /// ended without a group, or the number has left that group since (a repeat then means a new one).
    async fn answer_of(&self, mut first: JobRecord) -> Result<Option<CreatedGroupView>> {
        let mut writes = self.outbox.subscribe();
        let deadline = tokio::time::Instant::now() + DUPLICATE_WAIT;
        while !first.state.is_final() {
            if tokio::time::Instant::now() >= deadline {
                return Err(ApiError::Conflict(format!(
                    "the same group is still being created (job {0}); its answer will be at GET /v1/jobs/{0}",
                    first.id
                )));
            }
            // A job's every state change is written with its event, so an event write here may be its end; a job
            // another process runs is read again each second.
            let _ = tokio::time::timeout(Duration::from_secs(1), writes.changed()).await;
            first = self.store.get_job(first.id).await?;
        }
        let Some(result) = Self::job_result(&first).filter(|_| first.state == JobState::Succeeded) else {
            return Ok(None);
        };
        let record = self.store.get_group(result.group_id).await?;
        if record.left_at.is_some() {
            return Ok(None);
        }
        let members = match self.instances.connector(result.instance_id).await {
            Ok(connector) => connector.group_metadata(&record.jid).await.ok().map(|m| m.members),
            Err(_) => None,
        };
        Ok(Some(CreatedGroupView { group: GroupView { record, members }, participants: result.participants }))
    }

    /// Queues creations to run as soon as pacing allows, each on whichever of `instance_ids` may create soonest.
    /// All are checked first: one bad entry refuses the batch, naming `groups[i].field`.
    pub async fn enqueue_groups(&self, instance_ids: &[InstanceId], groups: Vec<NewGroup>) -> Result<Enqueued> {
        let mut errors = Vec::new();
        if instance_ids.is_empty() {
            errors.push(FieldError::new("instance_ids", "name at least one instance"));
        }
        if groups.is_empty() || groups.len() > 1000 {
            errors.push(FieldError::new("groups", "send 1 to 1000 groups"));
        }
        if !errors.is_empty() {
            return Err(ApiError::Validation(errors));
        }
        let instances = existing_instances(self.store.as_ref(), instance_ids).await?;
        let now = self.clock.now();
        let batch_id = Uuid::now_v7();
        let mut jobs = Vec::new();
        for (i, group) in groups.into_iter().enumerate() {
            // Checked against the first instance; participants that are another instance's own number are caught
            // when the job runs.
            match self.prepare(&instances[0], &group, &format!("groups[{i}].")).await {
                Ok(prepared) => {
                    let stored = StoredRequest { group, synchronous: false };
                    jobs.push(self.new_job(&stored, &prepared, instance_ids.to_vec(), Some(batch_id), now)?);
                }
                Err(mut e) => errors.append(&mut e),
            }
        }
        if !errors.is_empty() {
            return Err(ApiError::Validation(errors));
        }
        let events = jobs.iter().map(|job| self.outbox.job_event(job, None)).collect::<Result<Vec<_>>>()?;
        self.outbox.commit(&[Change::InsertJobs(&jobs)], &events).await?;
        self.job_added.notify_one();
        Ok(Enqueued { batch_id, jobs })
    }

    pub async fn job(&self, id: Uuid) -> Result<(JobRecord, Vec<CreationAttempt>)> {
        let job = self.store.get_job(id).await.map_err(|e| not_found(e, || format!("no job {id}")))?;
        let attempts = self.store.job_attempts(id).await?;
        Ok((job, attempts))
    }

    /// Cancels a queued job; one that is running or finished is a conflict.
    pub async fn cancel_job(&self, id: Uuid) -> Result<JobRecord> {
        let mut job = self.store.get_job(id).await.map_err(|e| not_found(e, || format!("no job {id}")))?;
        if job.state != JobState::Queued {
            return Err(ApiError::Conflict(format!("job {id} is {} and cannot be cancelled", job.state.as_str())));
        }
        job.state = JobState::Cancelled;
        job.updated_at = self.clock.now();
        self.outbox.commit(&[Change::UpdateJob(&job)], &[self.outbox.job_event(&job, Some(JobState::Queued))?]).await?;
        metrics::counter!(crate::telemetry::CREATIONS, "result" => job.state.as_str()).increment(1);
        Ok(job)
    }

    /// The group a job was asked to create.
    pub fn job_request(job: &JobRecord) -> Option<NewGroup> {
        serde_json::from_str::<StoredRequest>(&job.request).ok().map(|stored| stored.group)
    }

    /// The result stored in a finished job. Its numbers were checked before Convene stored them: they are read back
    /// as stored, not parsed again with libphonenumber (6% of a creation's samples went to that).
    pub fn job_result(job: &JobRecord) -> Option<CreationResult> {
        let result = job.result.as_deref()?;
        convene_core::phone::reading_stored(|| serde_json::from_str(result)).ok()
    }

    /// Runs every job due now, one at a time; returns how many it touched (not those it left due, for another node
    /// or its next pass). The worker calls this in a loop, tests call it directly after moving the clock.
    pub async fn run_due_jobs(&self) -> Result<usize> {
        let orphans = self.requeue_orphaned_jobs(self.clock.now().minus(ORPHANED_AFTER)).await?;
        if orphans > 0 {
            tracing::warn!(
                jobs = orphans,
                "running jobs whose process is gone go back to the queue for reconciliation"
            );
        }
        let mut due = Vec::new();
        for job in self.due_jobs().await? {
            if self.runs_here(&job).await? {
                due.push(job);
            }
        }
        let n = due.len();
        let mut pass = PassPacing::default();
        for job in due {
            let id = job.id;
            if let Err(e) = self.run_job(job, &mut pass).await {
                tracing::error!(job = %id, error = ?e, "job step failed");
            }
        }
        Ok(n - pass.left_due)
    }

    /// The jobs due now that this node may run, soonest first: the first 100 due, and, on a node among several, the
    /// first 100 of the numbers it holds, which the others' jobs may have pushed out of the former. (The first are
    /// still read: a job whose numbers were all deleted is failed by whichever node finds it.)
    async fn due_jobs(&self) -> Result<Vec<JobRecord>> {
        let now = self.clock.now();
        let mut due = self.store.due_jobs(now, DUE_JOBS_PER_PASS).await?;
        if let Some(node) = self.instances.node() {
            let mine = self.store.due_jobs_leased_by(node, SystemClock.now(), now, DUE_JOBS_PER_PASS).await?;
            let seen: HashSet<Uuid> = due.iter().map(|job| job.id).collect();
            due.extend(mine.into_iter().filter(|job| !seen.contains(&job.id)));
            due.sort_by_key(|job| (job.next_run_at, job.created_at, job.id));
        }
        Ok(due)
    }

    /// Whether this node runs `job`: one of its instances runs here (for a creation to reconcile, the one it was
    /// made on), or none of them exists any more (and the job fails here). The others are left to their nodes.
    async fn runs_here(&self, job: &JobRecord) -> Result<bool> {
        let ids = match (job.needs_reconcile, &job.pinned_instance_id) {
            (true, Some(pinned)) => std::slice::from_ref(pinned),
            _ => &job.instance_ids[..],
        };
        if ids.iter().any(|id| self.instances.runs_here(*id)) {
            return Ok(true);
        }
        for id in ids {
            match self.store.get_instance(*id).await {
                Ok(_) => return Ok(false),
                Err(DbError::NotFound) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(true)
    }

    /// Jobs left `running` by no task of this process and unchanged since `idle_since` (a crash stopped this process
    /// or another one that ran them) go back to the queue, to be reconciled before anything is tried again. The
    /// worker calls this on start for every running job, and then on each pass for those idle past `ORPHANED_AFTER`.
    pub async fn requeue_orphaned_jobs(&self, idle_since: Timestamp) -> Result<u64> {
        const PAGE: u32 = 500;
        let mut query = JobListQuery { state: Some(JobState::Running), batch_id: None, before: None, limit: PAGE };
        let mut requeued = 0;
        loop {
            let (orphans, last_page): (Vec<JobRecord>, bool) = {
                let running = self.store.list_jobs(&query).await?;
                // Page by page, newest first: jobs running here or busy may fill a page, and an orphan may be older.
                query.before = running.last().map(|job| (job.created_at, job.id));
                let last_page = running.len() < PAGE as usize;
                let here = self.running_here.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                // A running job belongs to the node that runs its instance: another node's is not this one's to
                // take back.
                let orphans = running
                    .into_iter()
                    .filter(|j| j.updated_at <= idle_since && !here.contains(&j.id))
                    .filter(|j| j.pinned_instance_id.is_none_or(|id| self.instances.runs_here(id)))
                    .collect();
                (orphans, last_page)
            };
            for mut job in orphans {
                let now = self.clock.now();
                let as_read = job.updated_at;
                job.state = JobState::Queued;
                job.needs_reconcile = true;
                job.next_run_at = now;
                job.updated_at = now;
                // As read only: the node that ran it may have finished it since (its number moved mid-creation).
                let requeue = Change::UpdateJobAsRead { job: &job, state: JobState::Running, updated_at: as_read };
                match self.outbox.try_commit(&[requeue], &[self.outbox.job_event(&job, Some(JobState::Running))?]).await
                {
                    Ok(()) => requeued += 1,
                    Err(DbError::NotFound) => {}
                    Err(e) => return Err(e.into()),
                }
            }
            if last_page {
                return Ok(requeued);
            }
        }
    }

    /// Marks a job as run by this process until the guard drops, so that the orphan sweep leaves it alone.
    fn running_here(&self, job: Uuid) -> RunningHere {
        self.running_here.lock().unwrap_or_else(std::sync::PoisonError::into_inner).insert(job);
        RunningHere { jobs: Arc::clone(&self.running_here), job }
    }

    /// When the next queued job is due.
    pub async fn next_job_due(&self) -> Result<Option<Timestamp>> {
        Ok(self.store.next_job_due().await?)
    }

    /// An instance's pacing as this pass of the worker knows it (see `PassPacing`); `None` when it does not exist.
    async fn pacing_in_pass<'a>(
        &self,
        pass: &'a mut PassPacing,
        id: InstanceId,
        now: Timestamp,
    ) -> Result<Option<&'a InstancePacing>> {
        if let std::collections::hash_map::Entry::Vacant(slot) = pass.known.entry(id) {
            let known = match self.store.get_instance(id).await {
                Ok(instance) => {
                    let policy = self.pacing_policy(&instance).await?;
                    let (recent, pause) = self.pacing_history(id, policy, now).await?;
                    Some(InstancePacing { instance, policy, recent, pause })
                }
                Err(_) => None,
            };
            slot.insert(known);
        }
        Ok(pass.known.get(&id).and_then(Option::as_ref))
    }

    async fn run_job(&self, mut job: JobRecord, pass: &mut PassPacing) -> Result<()> {
        let now = self.clock.now();
        // What this pass writes before it claims the job is written only if the job is still as read: on several
        // nodes, another node's pass may have claimed it (or run it to its end) meanwhile.
        let as_read = job.updated_at;
        let stored: StoredRequest = serde_json::from_str(&job.request).map_err(ApiError::internal)?;
        if job.needs_reconcile {
            let Some(pinned) = job.pinned_instance_id else {
                return self.finish_job(job, JobState::Failed, Some("reconcile without an instance".into())).await;
            };
            match self.reconcile(&job, pinned, &stored).await {
                Ok(true) => return Ok(()),
                Ok(false) if stored.synchronous => {
                    let why = "the creation's outcome was unknown and the group is not on the network".to_owned();
                    return self.finish_job(job, JobState::Failed, Some(why)).await;
                }
                Ok(false) => job.needs_reconcile = false,
                Err(e) => {
                    job.next_run_at = now.plus(self.creation.retry_delay(job.attempts, job.id));
                    job.last_error = Some(format!("reconciliation: {e}"));
                    job.updated_at = now;
                    // As read only: the number may have moved to a node that has reconciled it since.
                    return match self
                        .store
                        .commit(
                            &[Change::UpdateJobAsRead { job: &job, state: JobState::Queued, updated_at: as_read }],
                            &[],
                        )
                        .await
                    {
                        Ok(()) | Err(DbError::NotFound) => Ok(()),
                        Err(e) => Err(e.into()),
                    };
                }
            }
        }
        // The instance here that may create soonest, and when the soonest of another node's may (its pacing is in
        // the database too).
        let mut best: Option<(Timestamp, InstanceRecord)> = None;
        let mut soonest_elsewhere: Option<Timestamp> = None;
        let mut elsewhere = false;
        for id in &job.instance_ids {
            let Some(known) = self.pacing_in_pass(pass, *id, now).await? else { continue };
            let paused_until = known.pause.as_ref().map(|p| p.until).filter(|until| *until > now);
            let next = known.policy.next_allowed(&known.recent, paused_until, now);
            // Run here or not at all: another node's instance is paced and used by that node (and this one may
            // have been handed to another node since the pass began).
            if !self.instances.runs_here(*id) {
                elsewhere = true;
                soonest_elsewhere = Some(soonest_elsewhere.map_or(next, |soonest| soonest.min(next)));
                continue;
            }
            if self.instances.local_connector(*id).is_err() {
                // Held and not open yet (a round is opening it): try again next pass. A kind this build does not
                // have never opens.
                elsewhere |= self.instances.drivers.of(known.instance.kind).is_some();
                continue;
            }
            if best.as_ref().is_none_or(|(b, _)| next < *b) {
                best = Some((next, known.instance.clone()));
            }
        }
        let Some((next, instance)) = best else {
            if elsewhere {
                pass.left_due += 1;
                return Ok(());
            }
            let why = "none of the job's instances exists".to_owned();
            return self.finish_queued_job(job, as_read, JobState::Failed, why).await;
        };
        if next > now {
            // Not before another node's number may create: the job stays due for that node, or waits only until
            // the soonest of all its numbers may.
            let next = soonest_elsewhere.map_or(next, |soonest| soonest.min(next));
            if next <= now {
                pass.left_due += 1;
                return Ok(());
            }
            metrics::histogram!(crate::telemetry::PACING_WAIT).record(now.until(next).as_secs_f64());
            job.next_run_at = next;
            job.updated_at = now;
            return match self
                .store
                .commit(&[Change::UpdateJobAsRead { job: &job, state: JobState::Queued, updated_at: as_read }], &[])
                .await
            {
                Ok(()) | Err(DbError::NotFound) => Ok(()),
                Err(e) => Err(e.into()),
            };
        }
        // What follows may add an attempt or a pause: the next job of this pass reads this instance again.
        pass.known.remove(&instance.id);
        let prepared = match self.prepare(&instance, &stored.group, "").await {
            Ok(mut p) => {
                p.request.key = CreationKey(job.creation_key.clone());
                p
            }
            Err(errors) => {
                let why = errors.iter().map(|e| format!("{}: {}", e.field, e.message)).collect::<Vec<_>>().join("; ");
                return self.finish_queued_job(job, as_read, JobState::Failed, why).await;
            }
        };
        let connector = self.instances.local_connector(instance.id)?;
        let _turn = self.creation_turn(instance.id).await;
        let _running = self.running_here(job.id);
        job.state = JobState::Running;
        job.pinned_instance_id = Some(instance.id);
        job.attempts += 1;
        job.updated_at = now;
        let claim =
            Change::ClaimJob { id: job.id, instance_id: instance.id, now, attempts_as_read: Some(job.attempts - 1) };
        match self.store.commit(&[claim], &[self.outbox.job_event(&job, Some(JobState::Queued))?]).await {
            Ok(()) => self.outbox.written(),
            // Taken or cancelled meanwhile: nothing was written.
            Err(DbError::NotFound) => return Ok(()),
            Err(e) => return Err(e.into()),
        }
        let attempt = self.record_attempt(&job, instance.id, &[], &[]).await?;
        let (attempted, ended) = self.attempt(&job, attempt, connector.as_ref(), &prepared.request).await?;
        match attempted {
            Attempted::Created(metadata, results) => {
                let created =
                    self.complete_created(job.id, &instance, metadata, results, &prepared, connector.as_ref()).await;
                self.finish_created(job, created, Some(ended)).await.map(drop)
            }
            Attempted::Failed(e) => {
                let now = self.clock.now();
                job.state = JobState::Queued;
                job.last_error = Some(e.to_string());
                job.updated_at = now;
                match e {
                    ConnectorError::OutcomeUnknown => {
                        job.needs_reconcile = true;
                        job.next_run_at = now.plus(self.creation.retry_delay(job.attempts, job.id));
                    }
                    // Refused by the network's limits: nothing was created; the instance is paused (see `attempt`)
                    // and the job goes to whichever instance is free first.
                    ConnectorError::RateLimited { .. } | ConnectorError::TemporarilyBanned { .. } => {
                        job.next_run_at = now;
                    }
                    _ if job.attempts >= self.creation.max_attempts => {
                        return self.finish_job(job, JobState::Failed, Some(e.to_string())).await;
                    }
                    _ => job.next_run_at = now.plus(self.creation.retry_delay(job.attempts, job.id)),
                }
                self.outbox
                    .commit(&[Change::UpdateJob(&job)], &[self.outbox.job_event(&job, Some(JobState::Running))?])
                    .await
            }
        }
    }

    /// Looks for the job's group on the network; records it and finishes the job when found.
    async fn reconcile(&self, job: &JobRecord, instance_id: InstanceId, stored: &StoredRequest) -> Result<bool> {
        let instance = self.store.get_instance(instance_id).await?;
        let connector = self.instances.local_connector(instance_id)?;
        let mut prepared = self.prepare(&instance, &stored.group, "").await.map_err(ApiError::Validation)?;
        prepared.request.key = CreationKey(job.creation_key.clone());
        let Some(metadata) = connector.find_created_group(&prepared.request, job.created_at).await? else {
            return Ok(false);
        };
        let results = results_from_membership(&metadata, &prepared.request.participants);
        let created = self.complete_created(job.id, &instance, metadata, results, &prepared, connector.as_ref()).await;
        self.finish_created(job.clone(), created, None).await?;
        Ok(true)
    }

    /// Records a network attempt on `instance_id` before it is made, in one commit with `with` and `with_events` (a
    /// synchronous creation's job row). The store's error is kept for the caller: a duplicate found by that commit
    /// (`NotFound`) is an answer to it.
    async fn record_attempt(
        &self,
        job: &JobRecord,
        instance_id: InstanceId,
        with: &[Change<'_>],
        with_events: &[NewEvent],
    ) -> std::result::Result<CreationAttempt, DbError> {
        let attempt = CreationAttempt {
            id: Uuid::now_v7(),
            instance_id,
            job_id: Some(job.id),
            started_at: self.clock.now(),
            finished_at: None,
            outcome: None,
            detail: None,
        };
        let mut changes = with.to_vec();
        changes.push(Change::InsertCreationAttempt(&attempt));
        self.outbox.try_commit(&changes, with_events).await?;
        Ok(attempt)
    }

    /// The network attempt `record_attempt` recorded. A lost reply is looked for at once; limits pause the instance.
    /// Returns how it went and the attempt's end: recorded here when it failed, and left to the caller to commit with
    /// the group's record and the job's end when it created one (a crash before that leaves the job to be
    /// reconciled).
    async fn attempt(
        &self,
        job: &JobRecord,
        attempt: CreationAttempt,
        connector: &dyn convene_core::Connector,
        request: &CreateGroupRequest,
    ) -> Result<(Attempted, CreationAttempt)> {
        let instance_id = attempt.instance_id;
        let (outcome, result) = match connector.create_group(request).await {
            Ok(created) => ("created", Attempted::Created(created.metadata, created.participants)),
            // The reply was lost: the group may exist. Look for it before anything else.
            Err(ConnectorError::OutcomeUnknown) => match connector.find_created_group(request, job.created_at).await {
                Ok(Some(metadata)) => {
                    let results = results_from_membership(&metadata, &request.participants);
                    ("found", Attempted::Created(metadata, results))
                }
                Ok(None) | Err(_) => ("unknown", Attempted::Failed(ConnectorError::OutcomeUnknown)),
            },
            Err(e @ ConnectorError::RateLimited { retry_after }) => {
                let until = self.clock.now().plus(retry_after.unwrap_or(DEFAULT_RATE_LIMIT_PAUSE));
                self.pause(instance_id, until, "rate-overlimit from WhatsApp", false).await?;
                ("rate_limited", Attempted::Failed(e))
            }
            Err(e @ ConnectorError::TemporarilyBanned { until }) => {
                let until = until.unwrap_or_else(|| self.clock.now().plus(DEFAULT_BAN_PAUSE));
                self.pause(instance_id, until, BAN_REASON, true).await?;
                ("banned", Attempted::Failed(e))
            }
            // Refused before anything was sent: the creation uses none of the instance's pacing budget.
            Err(e @ ConnectorError::NotConnected(_)) => ("not_sent", Attempted::Failed(e)),
            Err(e) => ("failed", Attempted::Failed(e)),
        };
        metrics::counter!(crate::telemetry::CREATION_ATTEMPTS, "kind" => connector.kind().as_str(), "outcome" => outcome)
            .increment(1);
        let detail = match &result {
            Attempted::Failed(e) => Some(e.to_string()),
            Attempted::Created(m, _) => Some(m.jid.to_string()),
        };
        let ended = CreationAttempt {
            finished_at: Some(self.clock.now()),
            outcome: Some(outcome.to_owned()),
            detail,
            ..attempt
        };
        if matches!(result, Attempted::Failed(_)) {
            self.outbox.commit(&[Change::FinishCreationAttempt(&ended)], &[]).await?;
        }
        Ok((result, ended))
    }

    /// Pauses the instance's creations until `until`. A ban is also an `instance.temporarily_banned` event — once,
    /// though both the failed creation and the connection may report it.
    pub(super) async fn pause(&self, instance_id: InstanceId, until: Timestamp, reason: &str, ban: bool) -> Result<()> {
        tracing::warn!(instance = %instance_id, %until, reason, "group creation paused");
        let pause = InstancePause { until, reason: reason.to_owned() };
        let known = self.store.instance_pause(instance_id).await?.is_some_and(|p| p == pause);
        let mut events = Vec::new();
        if ban && !known {
            let phone = self.store.get_instance(instance_id).await.ok().and_then(|i| i.phone);
            let state = InstanceState::TemporarilyBanned { until: Some(until) };
            events.push(self.outbox.instance_event(
                EventType::InstanceTemporarilyBanned,
                instance_id,
                state,
                phone,
                None,
            )?);
        }
        self.outbox.commit(&[Change::SetInstancePause { id: instance_id, pause: Some(&pause) }], &events).await
    }

    /// Completes a group job `job_id` created: sends private invites, makes the backup admins admins, and reports
    /// on everyone. Nothing is stored here: `finish_created` commits the group's record, the attempt's end and the
    /// job's end together, so a crash before then leaves the job to be reconciled, with no record to reconcile it
    /// against.
    async fn complete_created(
        &self,
        job_id: Uuid,
        instance: &InstanceRecord,
        metadata: GroupMetadata,
        results: Vec<ParticipantResult>,
        prepared: &Prepared,
        connector: &dyn convene_core::Connector,
    ) -> Created {
        let record = self.groups.new_group_record(instance.id, &metadata, Some(job_id));
        let backup: HashSet<&PhoneNumber> = prepared.backup_admins.iter().collect();
        let requested: HashSet<&PhoneNumber> = prepared.participants.numbers.iter().map(|(_, p)| p).collect();
        let (for_backups, for_participants): (Vec<ParticipantResult>, Vec<ParticipantResult>) =
            results.into_iter().partition(|r| backup.contains(&r.phone) && !requested.contains(&r.phone));
        let mut reports = prepared.participants.reports(for_participants.clone());
        // A backup admin who was also requested is reported in both lists.
        let mut backup_reports: Vec<ParticipantReport> = prepared
            .backup_admins
            .iter()
            .map(|p| {
                let r = for_backups.iter().chain(&for_participants).find(|r| &r.phone == p);
                match r {
                    Some(r) => ParticipantReport::from_result(&p.e164(), r.clone()),
                    None => ParticipantReport::new(
                        &p.e164(),
                        Some(p.clone()),
                        convene_core::ParticipantOutcome::Failed,
                        None,
                    ),
                }
            })
            .collect();
        if prepared.auto_invite {
            self.groups.invite_refused(connector, &record, &mut reports).await;
        }
        let to_promote: Vec<PhoneNumber> = backup_reports
            .iter()
            .filter(|r| r.outcome.is_success() || r.outcome == convene_core::ParticipantOutcome::AlreadyMember)
            .filter_map(|r| r.phone.clone())
            .collect();
        if !to_promote.is_empty() {
            match connector.change_participants(&record.jid, ParticipantChange::Promote, &to_promote).await {
                Ok(promoted) => {
                    for p in promoted {
                        if let Some(r) = backup_reports.iter_mut().find(|r| r.phone.as_ref() == Some(&p.phone)) {
                            *r = ParticipantReport::from_result(&r.input.clone(), p);
                        }
                    }
                }
                Err(e) => tracing::warn!(group = %record.jid, error = %e, "backup admins not promoted"),
            }
        }
        crate::telemetry::count_outcomes("create", &reports);
        // The members as the network reported them at creation, unless backup admins were promoted since: then read
        // back (a call to the network, which most creations do without). Invites change no one's membership.
        let members = match to_promote.is_empty() {
            true => metadata.members,
            false => connector.group_metadata(&record.jid).await.map(|m| m.members).unwrap_or(metadata.members),
        };
        let result = CreationResult {
            group_id: record.id,
            instance_id: instance.id,
            jid: record.jid.clone(),
            participants: reports.clone(),
            backup_admins: backup_reports,
        };
        let view = CreatedGroupView { group: GroupView { record, members: Some(members) }, participants: reports };
        Created { view, result }
    }

    fn new_job(
        &self,
        stored: &StoredRequest,
        prepared: &Prepared,
        instance_ids: Vec<InstanceId>,
        batch_id: Option<Uuid>,
        now: Timestamp,
    ) -> Result<JobRecord> {
        Ok(JobRecord {
            id: Uuid::now_v7(),
            batch_id,
            state: JobState::Queued,
            instance_ids,
            pinned_instance_id: None,
            request: serde_json::to_string(stored).map_err(ApiError::internal)?,
            creation_key: prepared.request.key.0.clone(),
            attempts: 0,
            next_run_at: now,
            needs_reconcile: false,
            last_error: None,
            result: None,
            dedupe_key: None,
            created_at: now,
            updated_at: now,
        })
    }

    /// Records the end of a job that created no group, with its events: the job's state, and the creation failed
    /// when it did.
    /// `finish_job` for a job this pass has not claimed: nothing when it is no longer queued as read (`as_read`).
    async fn finish_queued_job(
        &self,
        job: JobRecord,
        as_read: Timestamp,
        state: JobState,
        error: String,
    ) -> Result<()> {
        let (job, events) = self.job_end(job, state, None, Some(error))?;
        match self
            .outbox
            .try_commit(&[Change::UpdateJobAsRead { job: &job, state: JobState::Queued, updated_at: as_read }], &events)
            .await
        {
            Ok(()) => {}
            Err(DbError::NotFound) => return Ok(()),
            Err(e) => return Err(e.into()),
        }
        metrics::counter!(crate::telemetry::CREATIONS, "result" => state.as_str()).increment(1);
        Ok(())
    }

    async fn finish_job(&self, job: JobRecord, state: JobState, error: Option<String>) -> Result<()> {
        let (job, events) = self.job_end(job, state, None, error)?;
        self.outbox.commit(&[Change::UpdateJob(&job)], &events).await?;
        metrics::counter!(crate::telemetry::CREATIONS, "result" => state.as_str()).increment(1);
        Ok(())
    }

    /// Records a created group, the end of the attempt that created it (none when a reconciliation found the group)
    /// and its job's success in one commit. A record of the group already there (a client imported the group by its
    /// JID meanwhile, or a version before this one recorded it and then crashed) is kept, named as this job's group
    /// when it names no creator, and the job's result names it.
    async fn finish_created(
        &self,
        job: JobRecord,
        mut created: Created,
        attempt: Option<CreationAttempt>,
    ) -> Result<CreatedGroupView> {
        let attempt_end: Vec<Change<'_>> = attempt.iter().map(Change::FinishCreationAttempt).collect();
        let inserted = {
            let record = &created.view.group.record;
            let (ended, events) =
                self.job_end(job.clone(), JobState::Succeeded, Some((&created.result, record)), None)?;
            let mut changes = vec![Change::InsertGroup(record)];
            changes.extend_from_slice(&attempt_end);
            changes.push(Change::UpdateJob(&ended));
            self.outbox.try_commit(&changes, &events).await
        };
        match inserted {
            Ok(()) => {}
            Err(DbError::Conflict) => {
                let mut record = self.groups.recorded_group(created.result.instance_id, &created.result.jid).await?;
                let job_id = job.id;
                record.creation_job_id.get_or_insert(job_id);
                created.result.group_id = record.id;
                let (ended, events) = self.job_end(job, JobState::Succeeded, Some((&created.result, &record)), None)?;
                let mut changes = attempt_end.clone();
                changes.push(Change::AttributeGroupCreation { id: record.id, job_id });
                changes.push(Change::UpdateJob(&ended));
                self.outbox.commit(&changes, &events).await?;
                created.view.group.record = record;
            }
            Err(e) => return Err(e.into()),
        }
        metrics::counter!(crate::telemetry::CREATIONS, "result" => JobState::Succeeded.as_str()).increment(1);
        Ok(created.view)
    }

    /// A job ended in `state`, and the events that say so: the job's state, and the group created (with the private
    /// invites sent) or the creation failed.
    fn job_end(
        &self,
        mut job: JobRecord,
        state: JobState,
        created: Option<(&CreationResult, &GroupRecord)>,
        error: Option<String>,
    ) -> Result<(JobRecord, Vec<NewEvent>)> {
        let previous = job.state;
        job.state = state;
        job.needs_reconcile = false;
        job.result =
            created.map(|(result, _)| serde_json::to_string(result)).transpose().map_err(ApiError::internal)?;
        if error.is_some() {
            job.last_error = error;
        }
        job.updated_at = self.clock.now();
        let mut events = vec![self.outbox.job_event(&job, Some(previous))?];
        match created {
            Some((result, record)) => {
                let group = EventGroup::of(record);
                let invited: Vec<PhoneNumber> = result
                    .participants
                    .iter()
                    .filter(|r| r.outcome == ParticipantOutcome::InviteSent)
                    .filter_map(|r| r.phone.clone())
                    .collect();
                let data = GroupCreatedData {
                    group: group.clone(),
                    job_id: job.id,
                    participants: result.participants.clone(),
                    backup_admins: result.backup_admins.clone(),
                };
                let key = group_key(&group.jid);
                events.push(self.outbox.event(EventType::GroupCreated, Some(result.instance_id), key, &data)?);
                events.extend(self.outbox.participants_event(
                    EventType::ParticipantsInviteSent,
                    group,
                    invited,
                    None,
                )?);
            }
            None if state == JobState::Failed => {
                let subject = serde_json::from_str::<StoredRequest>(&job.request).map(|r| r.group.subject);
                let data = GroupCreationFailedData {
                    job_id: job.id,
                    instance_id: job.pinned_instance_id,
                    subject: subject.unwrap_or_default(),
                    error: job.last_error.clone().unwrap_or_default(),
                };
                let key = format!("job:{}", job.id);
                events.push(self.outbox.event(EventType::GroupCreationFailed, job.pinned_instance_id, key, &data)?);
            }
            None => {}
        }
        Ok((job, events))
    }
}
