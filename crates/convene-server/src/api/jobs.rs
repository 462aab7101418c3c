//! `/v1/jobs`: queued group creation. A batch is spread over a pool of instances and runs as their pacing allows;
//! each job's state, attempts, next run and result can be read, and queued jobs cancelled.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use convene_core::store::{CreationAttempt, JobListQuery, JobRecord, JobState};
use convene_core::{GroupSettingsPatch, InstanceId, Timestamp};
use serde::{Deserialize, Serialize};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

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
    #[schema(example = "Onboarding ACME")]
    pub subject: String,
    pub description: Option<String>,
    #[schema(example = json!(["+17137157533"]))]
    pub participants: Vec<String>,
    #[serde(default)]
    pub settings: GroupSettingsPatch,
    pub auto_invite: Option<bool>,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GroupBatchIn {
    /// The pool of instances the groups may be created from; each job goes to whichever may create soonest.
    pub instance_ids: Vec<InstanceId>,
    /// 1 to 1000 groups.
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
#[serde(deny_unknown_fields)]
pub struct JobListParams {
    /// `queued`, `running`, `succeeded`, `failed` or `cancelled`.
    pub state: Option<String>,
    pub batch_id: Option<Uuid>,
    /// 1 to 500 (default 100).
    pub limit: Option<u32>,
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
    responses((status = 202, body = BatchOut), (status = 422, body = ErrorBody)), security(("api_key" = [])))]
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
#[utoipa::path(get, path = "/jobs", tag = "jobs", operation_id = "v1.job.list", params(JobListParams),
    responses((status = 200, body = Vec<JobOut>), (status = 422, body = ErrorBody)), security(("api_key" = [])))]
async fn list_jobs(
    State(state): State<AppState>,
    key: AccountKey,
    ApiQuery(params): ApiQuery<JobListParams>,
) -> Result<Json<Vec<JobOut>>> {
    let job_state = match params.state.as_deref() {
        None => None,
        Some(s) => Some(
            JobState::parse(s)
                .ok_or_else(|| ApiError::field("state", "must be queued, running, succeeded, failed or cancelled"))?,
        ),
    };
    let limit = params.limit.unwrap_or(100);
    if !(1..=500).contains(&limit) {
        return Err(ApiError::field("limit", "must be between 1 and 500"));
    }
    let jobs = state.store.list_jobs(&JobListQuery { state: job_state, batch_id: params.batch_id, limit }).await?;
    // A scoped key lists the jobs of its instances: fewer than `limit` when others' are newer.
    Ok(Json(jobs.into_iter().filter(|j| key.sees_job(j)).map(|j| JobOut::new(j, None)).collect()))
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
