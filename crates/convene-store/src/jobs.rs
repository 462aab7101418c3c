//! The queries behind pacing and the creation queue (migration 0002): instance settings and pauses, creation
//! attempts, and jobs. Shared by both backends like those in `sql`.

use convene_core::store::{
    BatchSummary, CreationAttempt, DbResult, InstancePause, InstanceSettings, JobListQuery, JobRecord, JobState,
};
use convene_core::{InstanceId, PhoneNumber, Timestamp};
use uuid::Uuid;

use crate::row_cache;
use crate::sql::{Backend, Statement, changed_some, one};
use crate::stored;

fn id(u: Uuid) -> String {
    u.hyphenated().to_string()
}

/// Space-separated instance ids (jobs' pools, API keys' scopes); `stored` reads them back.
pub(crate) fn instance_id_list(ids: &[InstanceId]) -> String {
    ids.iter().map(|i| i.0.to_string()).collect::<Vec<_>>().join(" ")
}

/// Space-separated E.164 digits, '' for none; `stored::instance_settings` reads them back.
fn phone_list(phones: &[PhoneNumber]) -> String {
    phones.iter().map(PhoneNumber::digits).collect::<Vec<_>>().join(" ")
}

/// The columns `stored::job` reads.
macro_rules! job_columns {
    () => {
        "id, batch_id, state, instance_ids, pinned_instance_id, request, creation_key, attempts, next_run_at, \
         needs_reconcile, last_error, result, dedupe_key, created_at, updated_at"
    };
}

/// The `SELECT` list that `stored::job` reads, followed by the rest of the query.
macro_rules! select_jobs {
    ($rest:literal) => {
        concat!("SELECT ", job_columns!(), " FROM jobs ", $rest)
    };
}

/// `SELECT $columns` of the jobs with the duplicate window's key `$key` created at or after `$since` (placeholders)
/// that are queued, running or succeeded, searched through `jobs_by_dedupe_window` (migration 0017) in each minute of
/// the window, from `since`'s to the newest job's.
/// - `created_at / 60000` is that index's expression word for word, or neither engine would use it.
/// - The buckets are joined to the jobs `CROSS JOIN`, which SQLite takes as the order of the loops: as `IN (…)`,
///   without statistics, it preferred `jobs_by_state`, a walk through every job of the window.
/// - The buckets end 120 past `since`'s: `DUPLICATE_SEARCH_SECS` (checked below).
macro_rules! duplicates_in_window {
    ($columns:expr, $key:literal, $since:literal) => {
        concat!(
            "WITH RECURSIVE window_buckets(bucket) AS (SELECT ",
            $since,
            " / 60000 UNION ALL SELECT bucket + 1 FROM window_buckets \
             WHERE bucket < (SELECT MAX(created_at) FROM jobs) / 60000 AND bucket < ",
            $since,
            " / 60000 + 120) SELECT ",
            $columns,
            " FROM window_buckets CROSS JOIN jobs WHERE created_at / 60000 = bucket AND dedupe_key = ",
            $key,
            " AND created_at >= ",
            $since,
            " AND state IN ('queued', 'running', 'succeeded')"
        )
    };
}

const _: () = assert!(120 * 60 == convene_core::store::DUPLICATE_SEARCH_SECS, "the buckets of `duplicates_in_window!`");

pub(crate) async fn instance_settings(db: &impl Backend, instance: InstanceId) -> DbResult<InstanceSettings> {
    row_cache::read_through(db.row_caches().map(|c| &c.instances.settings), instance, || async {
        let statement = Statement::new(
            "SELECT pacing_min_interval_secs, pacing_burst, pacing_daily_cap, auto_invite, backup_admins \
             FROM instance_settings WHERE instance_id = $1",
        )
        .bind(instance.0);
        Ok(db.fetch(statement, stored::instance_settings).await?.into_iter().next().unwrap_or_default())
    })
    .await
}

pub(crate) async fn put_instance_settings(
    db: &impl Backend,
    instance: InstanceId,
    s: &InstanceSettings,
) -> DbResult<()> {
    let statement = Statement::new(
        "INSERT INTO instance_settings (instance_id, pacing_min_interval_secs, pacing_burst, pacing_daily_cap, \
         auto_invite, backup_admins) VALUES ($1, $2, $3, $4, $5, $6) \
         ON CONFLICT (instance_id) DO UPDATE SET pacing_min_interval_secs = excluded.pacing_min_interval_secs, \
         pacing_burst = excluded.pacing_burst, pacing_daily_cap = excluded.pacing_daily_cap, \
         auto_invite = excluded.auto_invite, backup_admins = excluded.backup_admins",
    )
    .bind(instance.0)
    .bind(s.pacing.map(|p| i64::try_from(p.min_interval_secs).unwrap_or(i64::MAX)))
    .bind(s.pacing.map(|p| i64::from(p.burst)))
    .bind(s.pacing.and_then(|p| p.daily_cap).map(i64::from))
    .bind(s.auto_invite)
    .bind(phone_list(&s.backup_admins));
    db.execute(statement).await.map(drop)
}

pub(crate) async fn set_instance_pause(
    db: &impl Backend,
    instance: InstanceId,
    p: Option<&InstancePause>,
) -> DbResult<()> {
    db.execute(set_instance_pause_statement(instance, p)).await.map(drop)
}

pub(crate) fn set_instance_pause_statement(instance: InstanceId, p: Option<&InstancePause>) -> Statement {
    Statement::new(
        "INSERT INTO instance_settings (instance_id, paused_until, pause_reason) VALUES ($1, $2, $3) \
         ON CONFLICT (instance_id) DO UPDATE SET paused_until = excluded.paused_until, \
         pause_reason = excluded.pause_reason",
    )
    .bind(instance.0)
    .bind(p.map(|p| p.until.as_millis()))
    .bind(p.map(|p| p.reason.as_str()))
}

pub(crate) async fn instance_pause(db: &impl Backend, instance: InstanceId) -> DbResult<Option<InstancePause>> {
    row_cache::read_through(db.row_caches().map(|c| &c.instances.pauses), instance, || async {
        let statement =
            Statement::new("SELECT paused_until, pause_reason FROM instance_settings WHERE instance_id = $1")
                .bind(instance.0);
        Ok(db.fetch(statement, stored::instance_pause).await?.into_iter().next().flatten())
    })
    .await
}

pub(crate) async fn insert_creation_attempt(db: &impl Backend, a: &CreationAttempt) -> DbResult<()> {
    db.execute(insert_creation_attempt_statement(a)).await.map(drop)
}

pub(crate) fn insert_creation_attempt_statement(a: &CreationAttempt) -> Statement {
    Statement::new(
        "INSERT INTO creation_attempts (id, instance_id, job_id, started_at, finished_at, outcome, detail) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(id(a.id))
    .bind(a.instance_id.0)
    .bind(a.job_id.map(id))
    .bind(a.started_at.as_millis())
    .bind(a.finished_at.map(Timestamp::as_millis))
    .bind(a.outcome.as_deref())
    .bind(a.detail.as_deref())
}

pub(crate) fn finish_creation_attempt_statement(a: &CreationAttempt) -> Statement {
    Statement::new("UPDATE creation_attempts SET finished_at = $2, outcome = $3, detail = $4 WHERE id = $1")
        .bind(id(a.id))
        .bind(a.finished_at.map(Timestamp::as_millis))
        .bind(a.outcome.as_deref())
        .bind(a.detail.as_deref())
        .must_change()
}

pub(crate) async fn finish_creation_attempt(
    db: &impl Backend,
    attempt: Uuid,
    finished_at: Timestamp,
    outcome: &str,
    detail: Option<&str>,
) -> DbResult<()> {
    let statement =
        Statement::new("UPDATE creation_attempts SET finished_at = $2, outcome = $3, detail = $4 WHERE id = $1")
            .bind(id(attempt))
            .bind(finished_at.as_millis())
            .bind(outcome)
            .bind(detail);
    changed_some(db.execute(statement).await?)
}

pub(crate) async fn creation_attempt_times(
    db: &impl Backend,
    instance: InstanceId,
    since: Timestamp,
) -> DbResult<Vec<Timestamp>> {
    let statement = Statement::new(
        "SELECT started_at FROM creation_attempts WHERE instance_id = $1 AND started_at >= $2 \
         AND (outcome IS NULL OR outcome <> 'not_sent') ORDER BY started_at",
    )
    .bind(instance.0)
    .bind(since.as_millis());
    db.fetch(statement, |row| Ok(Timestamp::from_millis(row.int("started_at")?))).await
}

pub(crate) async fn job_attempts(db: &impl Backend, job_id: Uuid) -> DbResult<Vec<CreationAttempt>> {
    let statement = Statement::new(
        "SELECT id, instance_id, job_id, started_at, finished_at, outcome, detail FROM creation_attempts \
         WHERE job_id = $1 ORDER BY started_at, id",
    )
    .bind(id(job_id));
    db.fetch(statement, stored::creation_attempt).await
}

pub(crate) async fn insert_jobs(db: &impl Backend, jobs: &[JobRecord]) -> DbResult<()> {
    db.execute_all(jobs.iter().map(insert_job_statement).collect()).await
}

/// The columns a new job's row is written with, and their values as `$1` to `$15` ...
macro_rules! insert_job {
    ($($values:expr),+) => {
        concat!(
            "INSERT INTO jobs (id, batch_id, state, instance_ids, pinned_instance_id, request, creation_key, \
             attempts, next_run_at, needs_reconcile, last_error, result, dedupe_key, created_at, updated_at) ",
            $($values),+
        )
    };
}

/// ... bound in that order.
fn with_job_values(statement: Statement, j: &JobRecord) -> Statement {
    statement
        .bind(id(j.id))
        .bind(j.batch_id.map(id))
        .bind(j.state.as_str())
        .bind(instance_id_list(&j.instance_ids))
        .bind(j.pinned_instance_id.map(|i| i.0))
        .bind(j.request.as_str())
        .bind(j.creation_key.as_str())
        .bind(i64::from(j.attempts))
        .bind(j.next_run_at.as_millis())
        .bind(j.needs_reconcile)
        .bind(j.last_error.as_deref())
        .bind(j.result.as_deref())
        .bind(j.dedupe_key.as_deref())
        .bind(j.created_at.as_millis())
        .bind(j.updated_at.as_millis())
}

pub(crate) fn insert_job_statement(j: &JobRecord) -> Statement {
    let statement =
        Statement::new(insert_job!("VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)"));
    with_job_values(statement, j)
}

/// See `Change::InsertJobUnlessDuplicate`; the conditions and the order are `find_duplicate_job`'s, so that a job
/// passed over there is passed over here, with every older one.
pub(crate) fn insert_job_unless_duplicate_statement(
    j: &JobRecord,
    since: Timestamp,
    passed_over: Option<(Uuid, Timestamp)>,
) -> Statement {
    let statement = Statement::new(insert_job!(
        "SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15 WHERE NOT EXISTS (",
        duplicates_in_window!("1", "$13", "$16"),
        " AND (created_at > $17 OR (created_at = $17 AND id > $18)))"
    ));
    with_job_values(statement, j)
        .bind(since.as_millis())
        // With nothing passed over, every duplicate counts: any is newer than the start of time.
        .bind(passed_over.map_or(i64::MIN, |(_, created_at)| created_at.as_millis()))
        .bind(passed_over.map_or_else(String::new, |(passed, _)| id(passed)))
        .must_change()
}

/// A running job made at `since` with the duplicate window's key `key`: the statements' plans are tested with it.
#[cfg(test)]
pub(crate) fn running_job_keyed(key: &str, since: Timestamp) -> JobRecord {
    JobRecord {
        id: Uuid::nil(),
        batch_id: None,
        state: JobState::Running,
        instance_ids: vec![InstanceId(7_000_000_001)],
        pinned_instance_id: None,
        request: "{}".into(),
        creation_key: "ck".into(),
        attempts: 1,
        next_run_at: since,
        needs_reconcile: false,
        last_error: None,
        result: None,
        dedupe_key: Some(key.into()),
        created_at: since,
        updated_at: since,
    }
}

pub(crate) async fn find_duplicate_job(
    db: &impl Backend,
    dedupe_key: &str,
    since: Timestamp,
) -> DbResult<Option<JobRecord>> {
    Ok(db.fetch(find_duplicate_job_statement(dedupe_key, since), stored::job).await?.into_iter().next())
}

pub(crate) fn find_duplicate_job_statement(dedupe_key: &str, since: Timestamp) -> Statement {
    Statement::new(concat!(
        duplicates_in_window!(job_columns!(), "$1", "$2"),
        " ORDER BY created_at DESC, id DESC LIMIT 1"
    ))
    .bind(dedupe_key)
    .bind(since.as_millis())
}

pub(crate) async fn get_job(db: &impl Backend, job_id: Uuid) -> DbResult<JobRecord> {
    let statement = Statement::new(select_jobs!("WHERE id = $1")).bind(id(job_id));
    one(db.fetch(statement, stored::job).await?)
}

/// Newest first. One statement for each filter given, so that each reads through its index: a single statement
/// with `$1 IS NULL OR state = $1` is planned for every value at once, as a walk through every job ever made (the
/// worker's sweep for jobs left running took 130 ms at 100,000 jobs). Without a cursor, the page starts after a
/// job no job comes after.
pub(crate) async fn list_jobs(db: &impl Backend, q: &JobListQuery) -> DbResult<Vec<JobRecord>> {
    db.fetch(list_jobs_statement(q), stored::job).await
}

pub(crate) fn list_jobs_statement(q: &JobListQuery) -> Statement {
    let (before_at, before_id) = q.before.map_or((i64::MAX, String::new()), |(at, job)| (at.as_millis(), id(job)));
    let statement = match (q.state, q.batch_id) {
        // `state || ''` keeps the state's index out of it: a batch's jobs are few, a state's may be every job.
        (Some(state), Some(batch)) => Statement::new(select_jobs!(
            "WHERE state || '' = $1 AND batch_id = $2 AND (created_at, id) < ($3, $4) \
             ORDER BY created_at DESC, id DESC LIMIT $5"
        ))
        .bind(state.as_str())
        .bind(id(batch)),
        (Some(state), None) => Statement::new(select_jobs!(
            "WHERE state = $1 AND (created_at, id) < ($2, $3) ORDER BY created_at DESC, id DESC LIMIT $4"
        ))
        .bind(state.as_str()),
        (None, Some(batch)) => Statement::new(select_jobs!(
            "WHERE batch_id = $1 AND (created_at, id) < ($2, $3) ORDER BY created_at DESC, id DESC LIMIT $4"
        ))
        .bind(id(batch)),
        (None, None) => {
            Statement::new(select_jobs!("WHERE (created_at, id) < ($1, $2) ORDER BY created_at DESC, id DESC LIMIT $3"))
        }
    };
    statement.bind(before_at).bind(before_id).bind(i64::from(q.limit.clamp(1, 500)))
}

pub(crate) async fn due_jobs(db: &impl Backend, now: Timestamp, limit: u32) -> DbResult<Vec<JobRecord>> {
    db.fetch(due_jobs_statement(now, limit), stored::job).await
}

/// `state = 'queued'` as a constant, as in every query of the queue: `jobs_due` holds queued jobs only (migration
/// 0016), and the store's SQLite connections (which plan a statement once, whatever is bound) and PostgreSQL's generic
/// plans use such an index only for a query that names its condition.
pub(crate) fn due_jobs_statement(now: Timestamp, limit: u32) -> Statement {
    Statement::new(select_jobs!(
        "WHERE state = 'queued' AND next_run_at <= $1 ORDER BY next_run_at, created_at, id LIMIT $2"
    ))
    .bind(now.as_millis())
    .bind(i64::from(limit.max(1)))
}

pub(crate) async fn due_jobs_leased_by(
    db: &impl Backend,
    node: &str,
    leases_at: Timestamp,
    now: Timestamp,
    limit: u32,
) -> DbResult<Vec<JobRecord>> {
    db.fetch(due_jobs_leased_by_statement(node, leases_at, now, limit), stored::job).await
}

pub(crate) fn due_jobs_leased_by_statement(node: &str, leases_at: Timestamp, now: Timestamp, limit: u32) -> Statement {
    // A job's numbers are a space-separated list: a number is among them when ' <id> ' is in ' <list> '. The node's
    // leases are found through their (node, expires_at) index.
    Statement::new(select_jobs!(
        "WHERE state = 'queued' AND next_run_at <= $1 AND EXISTS (SELECT 1 FROM number_leases l \
         WHERE l.node = $3 AND l.expires_at > $4 \
         AND CASE WHEN jobs.needs_reconcile AND jobs.pinned_instance_id IS NOT NULL \
         THEN jobs.pinned_instance_id = l.instance_id \
         ELSE (' ' || jobs.instance_ids || ' ') LIKE ('% ' || CAST(l.instance_id AS TEXT) || ' %') END) \
         ORDER BY next_run_at, created_at, id LIMIT $2"
    ))
    .bind(now.as_millis())
    .bind(i64::from(limit.max(1)))
    .bind(node)
    .bind(leases_at.as_millis())
}

pub(crate) async fn next_job_due(db: &impl Backend) -> DbResult<Option<Timestamp>> {
    let rows = db.fetch(next_job_due_statement(), |row| Ok(row.int_or_null("at")?.map(Timestamp::from_millis))).await?;
    Ok(rows.into_iter().next().flatten())
}

pub(crate) fn next_job_due_statement() -> Statement {
    Statement::new("SELECT MIN(next_run_at) AS at FROM jobs WHERE state = 'queued'")
}

pub(crate) async fn count_jobs_by_state(db: &impl Backend) -> DbResult<Vec<(JobState, u64)>> {
    let statement = Statement::new("SELECT state, COUNT(*) AS n FROM jobs GROUP BY state ORDER BY state");
    db.fetch(statement, |row| Ok((stored::job_state("jobs.state", row.text("state")?)?, row.int("n")?.unsigned_abs())))
        .await
}

pub(crate) async fn list_batches(
    db: &impl Backend,
    before: Option<(Timestamp, Uuid)>,
    limit: u32,
) -> DbResult<Vec<BatchSummary>> {
    // Every job of a batch is written in one transaction with the same time and pool.
    let statement = Statement::new(
        "SELECT batch_id, MIN(created_at) AS created_at, MIN(instance_ids) AS instance_ids, \
         SUM(CASE WHEN state = 'queued' THEN 1 ELSE 0 END) AS queued, \
         SUM(CASE WHEN state = 'running' THEN 1 ELSE 0 END) AS running, \
         SUM(CASE WHEN state = 'succeeded' THEN 1 ELSE 0 END) AS succeeded, \
         SUM(CASE WHEN state = 'failed' THEN 1 ELSE 0 END) AS failed, \
         SUM(CASE WHEN state = 'cancelled' THEN 1 ELSE 0 END) AS cancelled \
         FROM jobs WHERE batch_id IS NOT NULL GROUP BY batch_id \
         HAVING ($1 IS NULL OR MIN(created_at) < $1 OR (MIN(created_at) = $1 AND batch_id < $2)) \
         ORDER BY MIN(created_at) DESC, batch_id DESC LIMIT $3",
    )
    .bind(before.map(|(at, _)| at.as_millis()))
    .bind(before.map(|(_, batch)| id(batch)))
    .bind(i64::from(limit.clamp(1, 500)));
    db.fetch(statement, stored::batch_summary).await
}

pub(crate) async fn claim_job(db: &impl Backend, job_id: Uuid, instance: InstanceId, now: Timestamp) -> DbResult<bool> {
    Ok(db.execute(claim_job_statement(job_id, instance, now, None)).await? == 1)
}

/// Changes no row when the job is not queued (taken or cancelled meanwhile).
pub(crate) fn claim_job_statement(
    job_id: Uuid,
    instance: InstanceId,
    now: Timestamp,
    attempts_as_read: Option<u32>,
) -> Statement {
    Statement::new(
        "UPDATE jobs SET state = 'running', attempts = attempts + 1, pinned_instance_id = $2, updated_at = $3 \
         WHERE id = $1 AND state = 'queued' AND ($4 IS NULL OR attempts = $4)",
    )
    .bind(id(job_id))
    .bind(instance.0)
    .bind(now.as_millis())
    .bind(attempts_as_read.map(i64::from))
    .must_change()
}

pub(crate) async fn update_job(db: &impl Backend, j: &JobRecord) -> DbResult<()> {
    changed_some(db.execute(update_job_statement(j)).await?)
}

/// `UPDATE jobs SET` every field a worker changes, for `$1`'s job, then `$rest`.
macro_rules! update_job {
    ($rest:literal) => {
        concat!(
            "UPDATE jobs SET state = $2, pinned_instance_id = $3, next_run_at = $4, needs_reconcile = $5, \
             last_error = $6, result = $7, updated_at = $8 WHERE id = $1",
            $rest
        )
    };
}

/// `sql` (an `update_job!`) with the job's fields bound to `$1`…`$8`.
fn bind_job_update(sql: &'static str, j: &JobRecord) -> Statement {
    Statement::new(sql)
        .bind(id(j.id))
        .bind(j.state.as_str())
        .bind(j.pinned_instance_id.map(|i| i.0))
        .bind(j.next_run_at.as_millis())
        .bind(j.needs_reconcile)
        .bind(j.last_error.as_deref())
        .bind(j.result.as_deref())
        .bind(j.updated_at.as_millis())
}

pub(crate) fn update_job_as_read_statement(j: &JobRecord, state: JobState, updated_at: Timestamp) -> Statement {
    bind_job_update(update_job!(" AND state = $9 AND updated_at = $10"), j)
        .bind(state.as_str())
        .bind(updated_at.as_millis())
        .must_change()
}

pub(crate) fn update_job_statement(j: &JobRecord) -> Statement {
    bind_job_update(update_job!(""), j).must_change()
}
