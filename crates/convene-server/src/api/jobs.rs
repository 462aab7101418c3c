//! `/v1/jobs`: queued group creation. A batch is spread over a pool of instances and runs as their pacing allows;
//! each job's state, attempts, next run and result can be read, and queued jobs cancelled.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use convene_core::store::{CreationAttempt, JobListQuery, JobRecord, JobState};
use convene_core::{GroupSettingsPatch, InstanceId, PhoneNumber, Timestamp};
use serde::{Deserialize, Serialize};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::page::{Cursor, Page, PageParams};
use crate::AppState;
use crate::auth::AccountKey;
use crate::error::{ApiError, ErrorBody, Result};
use crate::extract::{ApiJson, ApiPath, ApiQuery};
use crate::service::{CreationResult, NewGroup, Service};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(enqueue_groups))
        .routes(routes!(list_jobs))
        .routes(routes!(get_job))
        .routes(routes!(cancel_job))
}

/// One group of a batch.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct QueuedGroupIn {
    /// 1 to 100 characters, not all spaces, without control characters.
    #[schema(
        example = "Onboarding ACME",
        min_length = 1,
        max_length = 100,
        pattern = r"^[^\x00-\x1f\x7f-\x9f]*[^\s\x00-\x1f\x7f-\x9f][^\x00-\x1f\x7f-\x9f]*$"
    )]
    pub subject: String,
    /// At most 2048 characters; line breaks and tabs are the only control characters allowed.
    #[schema(max_length = 2048, pattern = r"^[^\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]*$")]
    pub description: Option<String>,
    /// 1 to 1023 phone numbers, read as for `POST /v1/groups`.
    #[schema(value_type = Vec<PhoneNumber>, min_items = 1, max_items = 1023, example = json!(["+17137157533"]))]
    pub participants: Vec<String>,
    #[serde(default)]
    pub settings: GroupSettingsPatch,
    pub auto_invite: Option<bool>,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GroupBatchIn {
    /// The pool of instances the groups may be created from; each job goes to whichever may create soonest.
    #[schema(min_items = 1)]
    pub instance_ids: Vec<InstanceId>,
    /// 1 to 1000 groups.
    #[schema(min_items = 1, max_items = 1000)]
    pub groups: Vec<QueuedGroupIn>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct AttemptOut {
    pub instance_id: InstanceId,
    pub started_at: Timestamp,
    pub finished_at: Option<Timestamp>,
    /// `created`, `found` (the reply was lost but the group was found), `unknown`, `rate_limited`, `banned`, `failed`.
    pub outcome: Option<String>,
    pub detail: Option<String>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct JobOut {
    pub id: Uuid,
    pub batch_id: Option<Uuid>,
    /// `queued`, `running`, `succeeded`, `failed` or `cancelled`.
    #[schema(example = "queued")]
    pub state: String,
    pub instance_ids: Vec<InstanceId>,
    /// The instance the job ran (or runs) on.
    pub instance_id: Option<InstanceId>,
    pub attempts: u32,
    /// When the job runs next, while queued.
    pub next_run_at: Option<Timestamp>,
    pub last_error: Option<String>,
    /// The created group and every participant's outcome, once succeeded.
    pub result: Option<CreationResult>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    /// Every attempt, on `GET /v1/jobs/{id}`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attempt_log: Option<Vec<AttemptOut>>,
}

impl JobOut {
    fn new(job: JobRecord, attempts: Option<Vec<CreationAttempt>>) -> Self {
        Self {
            result: Service::job_result(&job),
            id: job.id,
            batch_id: job.batch_id,
            state: job.state.as_str().to_owned(),
            instance_ids: job.instance_ids,
            instance_id: job.pinned_instance_id,
            attempts: job.attempts,
            next_run_at: (job.state == JobState::Queued).then_some(job.next_run_at),
            last_error: job.last_error,
            created_at: job.created_at,
            updated_at: job.updated_at,
            attempt_log: attempts.map(|list| {
                list.into_iter()
                    .map(|a| AttemptOut {
                        instance_id: a.instance_id,
                        started_at: a.started_at,
                        finished_at: a.finished_at,
                        outcome: a.outcome,
                        detail: a.detail,
                    })
                    .collect()
            }),
        }
    }
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct BatchOut {
    pub batch_id: Uuid,
    pub jobs: Vec<JobOut>,
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct JobListParams {
    /// Only jobs in this state.
    #[param(inline)]
    pub state: Option<JobStateIn>,
    /// Only this batch's jobs.
    pub batch_id: Option<Uuid>,
}

/// A job's state, as a list filter.
#[derive(Clone, Copy, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum JobStateIn {
    Queued,
    Running,
    Succeeded,
    Failed,
    Cancelled,
}

impl From<JobStateIn> for JobState {
    fn from(s: JobStateIn) -> Self {
        match s {
            JobStateIn::Queued => Self::Queued,
            JobStateIn::Running => Self::Running,
            JobStateIn::Succeeded => Self::Succeeded,
            JobStateIn::Failed => Self::Failed,
            JobStateIn::Cancelled => Self::Cancelled,
        }
    }
}

/// A job's place in the list, newest first: its creation time and id.
fn job_cursor(job: &JobRecord) -> String {
    Cursor::new(job.created_at.as_millis(), Some(job.id)).render()
}

fn job_id(raw: &str) -> Result<Uuid> {
    Uuid::parse_str(raw).map_err(|_| ApiError::NotFound(format!("no job `{raw}`")))
}

/// Queue group creations. They run as soon as pacing allows, spread over the instances named; the answer comes at
/// once with a job per group.
#[utoipa::path(post, path = "/jobs/groups", tag = "jobs", operation_id = "v1.job.create_groups",
    request_body(content = GroupBatchIn, example = json!({
        "instance_ids": [7103000001_i64, 7103000002_i64],
        "groups": [{"subject": "Onboarding ACME", "participants": ["+17137157533"]},
                   {"subject": "Onboarding Globex", "participants": ["+18647351567"], "auto_invite": true}]
    })),
    responses((status = 202, body = BatchOut), (status = 404, body = ErrorBody, description = "An instance named in `instance_ids` does not exist."),
        (status = 422, body = ErrorBody)), security(("api_key" = [])))]
async fn enqueue_groups(
    State(state): State<AppState>,
    key: AccountKey,
    ApiJson(input): ApiJson<GroupBatchIn>,
) -> Result<(StatusCode, Json<BatchOut>)> {
    let groups = input
        .groups
        .into_iter()
        .map(|g| NewGroup {
            subject: g.subject,
            description: g.description,
            participants: g.participants,
            settings: g.settings,
            auto_invite: g.auto_invite,
        })
        .collect();
    for &id in &input.instance_ids {
        key.instance(id)?;
    }
    let queued = state.service.enqueue_groups(&input.instance_ids, groups).await?;
    let jobs = queued.jobs.into_iter().map(|j| JobOut::new(j, None)).collect();
    Ok((StatusCode::ACCEPTED, Json(BatchOut { batch_id: queued.batch_id, jobs })))
}

/// List jobs, newest first.
#[utoipa::path(get, path = "/jobs", tag = "jobs", operation_id = "v1.job.list", params(JobListParams, PageParams),
    responses((status = 200, body = Page<JobOut>)), security(("api_key" = [])))]
async fn list_jobs(
    State(state): State<AppState>,
    key: AccountKey,
    ApiQuery(params): ApiQuery<JobListParams>,
    ApiQuery(page): ApiQuery<PageParams>,
) -> Result<Json<Page<JobOut>>> {
    let limit = page.limit()?;
    let query = JobListQuery {
        state: params.state.map(JobState::from),
        batch_id: params.batch_id,
        // Newest first: a bare time starts after every job of that millisecond.
        before: page.cursor()?.map(|c| (Timestamp::from_millis(c.key), c.id.unwrap_or(Uuid::max()))),
        limit: limit + 1,
    };
    let jobs = state.store.list_jobs(&query).await?;
    // A scoped key lists the jobs of its instances: a page may then hold fewer than `limit`.
    let page = Page::from_lookahead(jobs, limit, job_cursor).retain(|j| key.sees_job(j));
    Ok(Json(page.map(|j| JobOut::new(j, None))))
}

/// A job with its attempts and result.
#[utoipa::path(get, path = "/jobs/{id}", tag = "jobs", operation_id = "v1.job.get",
    params(("id" = String, Path, description = "Job id")),
    responses((status = 200, body = JobOut), (status = 404, body = ErrorBody)), security(("api_key" = [])))]
async fn get_job(State(state): State<AppState>, key: AccountKey, ApiPath(id): ApiPath<String>) -> Result<Json<JobOut>> {
    let (job, attempts) = state.service.job(job_id(&id)?).await?;
    if !key.sees_job(&job) {
        return Err(ApiError::NotFound(format!("no job {}", job.id)));
    }
    Ok(Json(JobOut::new(job, Some(attempts))))
}

/// Cancel a queued job. A job already running or finished cannot be cancelled (409).
#[utoipa::path(post, path = "/jobs/{id}/cancel", tag = "jobs", operation_id = "v1.job.cancel",
    params(("id" = String, Path, description = "Job id")),
    responses((status = 200, body = JobOut), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)),
    security(("api_key" = [])))]
async fn cancel_job(
    State(state): State<AppState>,
    key: AccountKey,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<JobOut>> {
    let (job, _) = state.service.job(job_id(&id)?).await?;
    if !key.sees_job(&job) {
        return Err(ApiError::NotFound(format!("no job {}", job.id)));
    }
    let job = state.service.cancel_job(job.id).await?;
    Ok(Json(JobOut::new(job, None)))
}
