//! The queries behind events and webhook deliveries (migration 0004): the outbox written with each change
//! (`commit`), the dispatcher's queue, the attempt log, Green API's notification queue, and the endpoints. Shared by
//! both backends like those in `sql`.

use convene_core::events::{
    AttemptOutcome, Change, DeliveryAttempt, DeliveryListQuery, DeliveryRecord, DeliveryState, DueDelivery,
    EventFilter, EventListQuery, EventRecord, NewEvent, SealedSecret, WebhookEndpoint,
};
use convene_core::store::DbResult;
use convene_core::{DbError, InstanceId, Timestamp};
use uuid::Uuid;

use crate::error::other;
use crate::jobs;
use crate::sql::{self, Backend, Statement, changed_some, one};
use crate::stored::Columns;

fn id(u: Uuid) -> String {
    u.hyphenated().to_string()
}

fn uuid(column: &str, text: &str) -> DbResult<Uuid> {
    Uuid::parse_str(text).map_err(|_| other(format!("{column} holds `{text}`, not a uuid")))
}

fn count(column: &str, n: i64) -> DbResult<u32> {
    u32::try_from(n).map_err(|_| other(format!("{column} holds {n}, not a count")))
}

fn limit(limit: u32) -> i64 {
    i64::from(limit.clamp(1, 500))
}

/// The filter as the table holds it: '' for every event, else `,entry,entry,` so that SQL can look for `,type,` and
/// `,category.*,` in it.
fn filter_text(filter: &EventFilter) -> String {
    match filter.entries() {
        [] => String::new(),
        entries => format!(",{},", entries.join(",")),
    }
}

fn filter_from_text(text: &str) -> DbResult<EventFilter> {
    let entries: Vec<&str> = text.split(',').filter(|e| !e.is_empty()).collect();
    EventFilter::parse(&entries).map_err(|e| other(format!("webhook_endpoints.event_filter: {e}")))
}

// ---------- commit: changes and their events in one transaction ----------

fn change_statements(change: &Change<'_>) -> Vec<Statement> {
    match change {
        Change::InsertGroup(group) => vec![sql::insert_group_statement(group)],
        Change::UpdateGroup(group) => vec![sql::update_group_statement(group)],
        Change::AttributeGroupCreation { id, job_id } => vec![sql::attribute_group_creation_statement(*id, *job_id)],
        Change::InsertJobs(list) => list.iter().map(jobs::insert_job_statement).collect(),
        Change::InsertJobUnlessDuplicate { job, since, passed_over } => {
            vec![jobs::insert_job_unless_duplicate_statement(job, *since, *passed_over)]
        }
        Change::UpdateJob(job) => vec![jobs::update_job_statement(job)],
        Change::UpdateJobAsRead { job, state, updated_at } => {
            vec![jobs::update_job_as_read_statement(job, *state, *updated_at)]
        }
        Change::InsertCreationAttempt(attempt) => vec![jobs::insert_creation_attempt_statement(attempt)],
        Change::FinishCreationAttempt(attempt) => vec![jobs::finish_creation_attempt_statement(attempt)],
        Change::ClaimJob { id, instance_id, now, attempts_as_read } => {
            vec![jobs::claim_job_statement(*id, *instance_id, *now, *attempts_as_read)]
        }
        Change::SetInstancePause { id, pause } => vec![jobs::set_instance_pause_statement(*id, *pause)],
        Change::SetInstancePhone { id, phone } => vec![sql::set_instance_phone_statement(*id, phone)],
    }
}

/// The event's row, then one pending delivery for each enabled endpoint whose filter takes it.
fn event_statements(event: &NewEvent) -> [Statement; 2] {
    let insert = Statement::new(
        "INSERT INTO events (id, event_type, instance_id, ordering_key, payload, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(id(event.id))
    .bind(event.event_type.as_str())
    .bind(event.instance_id.map(|i| i.0))
    .bind(event.ordering_key.as_str())
    .bind(event.payload.as_str())
    .bind(event.created_at.as_millis());
    let fan_out = Statement::new(
        "INSERT INTO webhook_deliveries \
         (endpoint_id, event_id, ordering_key, state, attempts, next_attempt_at, created_at, updated_at) \
         SELECT id, $1, $2, 'pending', 0, $3, $3, $3 FROM webhook_endpoints \
         WHERE enabled AND (event_filter = '' OR event_filter LIKE '%,' || $4 || ',%' \
         OR event_filter LIKE '%,' || $5 || '.*,%' OR event_filter LIKE '%,' || $6 || '.*,%') \
         ORDER BY created_at, id",
    )
    .bind(id(event.id))
    .bind(event.ordering_key.as_str())
    .bind(event.created_at.as_millis())
    .bind(event.event_type.as_str())
    .bind(event.event_type.category())
    .bind(event.event_type.subcategory());
    [insert, fan_out]
}

/// Whether a commit waits for its turn with the others that do (`Backend::events_in_turn`): one that writes events,
/// which are read in `seq` order by readers that remember where they stopped, so they must commit in the order they
/// took their `seq`; and one that checks for a duplicate creation and inserts it, which two nodes must not do at once
/// (each would find none). The check does not rely on its callers also writing an event.
fn takes_turn(changes: &[Change<'_>], events: &[NewEvent]) -> bool {
    !events.is_empty() || changes.iter().any(|change| matches!(change, Change::InsertJobUnlessDuplicate { .. }))
}

pub(crate) async fn commit(db: &impl Backend, changes: &[Change<'_>], events: &[NewEvent]) -> DbResult<()> {
    let mut statements: Vec<Statement> =
        db.events_in_turn().filter(|_| takes_turn(changes, events)).into_iter().collect();
    statements.extend(changes.iter().flat_map(change_statements));
    statements.extend(events.iter().flat_map(event_statements));
    if statements.is_empty() {
        return Ok(());
    }
    db.execute_all(statements).await
}

// ---------- the event log and Green API's queue ----------

fn event(row: &dyn Columns) -> DbResult<EventRecord> {
    Ok(EventRecord {
        seq: row.int("seq")?,
        id: uuid("events.id", row.text("id")?)?,
        event_type: row.text("event_type")?.to_owned(),
        instance_id: row.int_or_null("instance_id")?.map(InstanceId),
        ordering_key: row.text("ordering_key")?.to_owned(),
        payload: row.text("payload")?.to_owned(),
        created_at: Timestamp::from_millis(row.int("created_at")?),
        acknowledged_at: row.int_or_null("acknowledged_at")?.map(Timestamp::from_millis),
    })
}

pub(crate) async fn list_events(db: &impl Backend, query: &EventListQuery) -> DbResult<Vec<EventRecord>> {
    db.fetch(list_events_statement(query), event).await
}

/// Both ends of the range are always bound (the ends of `seq`'s type when the query leaves them open): SQLite cannot
/// seek through `$n IS NULL OR seq > $n`, and read the log from its first event to the cursor on every page (28 ms
/// of CPU a page 150,000 events in, against 0.05 ms seeking).
pub(crate) fn list_events_statement(query: &EventListQuery) -> Statement {
    macro_rules! select_events {
        ($order:literal) => {
            concat!(
                "SELECT seq, id, event_type, instance_id, ordering_key, payload, created_at, acknowledged_at FROM events ",
                "WHERE ($1 IS NULL OR instance_id = $1) AND seq > $2 AND seq < $3 ",
                "AND ($4 IS NULL OR event_type = $4) ORDER BY seq ",
                $order,
                " LIMIT $5"
            )
        };
    }
    let sql = if query.newest_first { select_events!("DESC") } else { select_events!("ASC") };
    Statement::new(sql)
        .bind(query.instance_id.map(|i| i.0))
        .bind(query.after_seq.unwrap_or(i64::MIN))
        .bind(query.before_seq.unwrap_or(i64::MAX))
        .bind(query.event_type.as_deref())
        .bind(limit(query.limit))
}

pub(crate) async fn next_unacknowledged_event(
    db: &impl Backend,
    instance: InstanceId,
    since: Timestamp,
) -> DbResult<Option<EventRecord>> {
    let statement = Statement::new(concat!(
        "SELECT seq, id, event_type, instance_id, ordering_key, payload, created_at, acknowledged_at FROM events ",
        "WHERE instance_id = $1 AND acknowledged_at IS NULL AND created_at >= $2 ORDER BY seq LIMIT 1"
    ))
    .bind(instance.0)
    .bind(since.as_millis());
    Ok(db.fetch(statement, event).await?.into_iter().next())
}

pub(crate) async fn acknowledge_event(
    db: &impl Backend,
    instance: InstanceId,
    seq: i64,
    at: Timestamp,
) -> DbResult<bool> {
    let statement = Statement::new(
        "UPDATE events SET acknowledged_at = $3 WHERE instance_id = $1 AND seq = $2 AND acknowledged_at IS NULL",
    )
    .bind(instance.0)
    .bind(seq)
    .bind(at.as_millis());
    Ok(db.execute(statement).await? == 1)
}

// ---------- endpoints ----------

/// The endpoint columns, named `ep_*` so that they can be joined with deliveries.
macro_rules! endpoint_columns {
    () => {
        "ep.id AS ep_id, ep.url AS ep_url, ep.description AS ep_description, ep.event_filter AS ep_event_filter, \
         ep.enabled AS ep_enabled, ep.disabled_reason AS ep_disabled_reason, ep.secret AS ep_secret, \
         ep.previous_secret AS ep_previous_secret, ep.previous_secret_expires_at AS ep_previous_secret_expires_at, \
         ep.failing_since AS ep_failing_since, ep.created_at AS ep_created_at, ep.updated_at AS ep_updated_at"
    };
}

fn endpoint(row: &dyn Columns) -> DbResult<WebhookEndpoint> {
    let previous = match (row.text_or_null("ep_previous_secret")?, row.int_or_null("ep_previous_secret_expires_at")?) {
        (Some(secret), Some(until)) => Some((SealedSecret(secret.to_owned()), Timestamp::from_millis(until))),
        _ => None,
    };
    Ok(WebhookEndpoint {
        id: uuid("webhook_endpoints.id", row.text("ep_id")?)?,
        url: row.text("ep_url")?.to_owned(),
        description: row.text("ep_description")?.to_owned(),
        filter: filter_from_text(row.text("ep_event_filter")?)?,
        enabled: row.flag("ep_enabled")?,
        disabled_reason: row.text_or_null("ep_disabled_reason")?.map(str::to_owned),
        secret: SealedSecret(row.text("ep_secret")?.to_owned()),
        previous_secret: previous,
        failing_since: row.int_or_null("ep_failing_since")?.map(Timestamp::from_millis),
        created_at: Timestamp::from_millis(row.int("ep_created_at")?),
        updated_at: Timestamp::from_millis(row.int("ep_updated_at")?),
    })
}

/// `$1` to `$10`: the id and every field an update replaces, but `updated_at` — one order for insert and update.
fn bind_endpoint(statement: Statement, e: &WebhookEndpoint) -> Statement {
    statement
        .bind(id(e.id))
        .bind(e.url.as_str())
        .bind(e.description.as_str())
        .bind(filter_text(&e.filter))
        .bind(e.enabled)
        .bind(e.disabled_reason.as_deref())
        .bind(e.secret.0.as_str())
        .bind(e.previous_secret.as_ref().map(|(s, _)| s.0.as_str()))
        .bind(e.previous_secret.as_ref().map(|(_, until)| until.as_millis()))
        .bind(e.failing_since.map(Timestamp::as_millis))
}

pub(crate) async fn insert_webhook_endpoint(db: &impl Backend, e: &WebhookEndpoint) -> DbResult<()> {
    let statement = Statement::new(
        "INSERT INTO webhook_endpoints (id, url, description, event_filter, enabled, disabled_reason, secret, \
         previous_secret, previous_secret_expires_at, failing_since, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
    );
    let statement = bind_endpoint(statement, e).bind(e.created_at.as_millis()).bind(e.updated_at.as_millis());
    db.execute(statement).await.map(drop)
}

pub(crate) async fn get_webhook_endpoint(db: &impl Backend, endpoint_id: Uuid) -> DbResult<WebhookEndpoint> {
    let statement =
        Statement::new(concat!("SELECT ", endpoint_columns!(), " FROM webhook_endpoints ep WHERE ep.id = $1"))
            .bind(id(endpoint_id));
    one(db.fetch(statement, endpoint).await?)
}

pub(crate) async fn list_webhook_endpoints(db: &impl Backend) -> DbResult<Vec<WebhookEndpoint>> {
    let statement = Statement::new(concat!(
        "SELECT ",
        endpoint_columns!(),
        " FROM webhook_endpoints ep ORDER BY ep.created_at, ep.id"
    ));
    db.fetch(statement, endpoint).await
}

pub(crate) async fn update_webhook_endpoint(db: &impl Backend, e: &WebhookEndpoint) -> DbResult<()> {
    let statement = Statement::new(
        "UPDATE webhook_endpoints SET url = $2, description = $3, event_filter = $4, enabled = $5, \
         disabled_reason = $6, secret = $7, previous_secret = $8, previous_secret_expires_at = $9, \
         failing_since = $10, updated_at = $11 WHERE id = $1",
    );
    let statement = bind_endpoint(statement, e).bind(e.updated_at.as_millis());
    changed_some(db.execute(statement).await?)
}

pub(crate) async fn delete_webhook_endpoint(db: &impl Backend, endpoint_id: Uuid) -> DbResult<()> {
    // Deliveries and their attempts go with it (ON DELETE CASCADE); the events stay.
    changed_some(db.execute(Statement::new("DELETE FROM webhook_endpoints WHERE id = $1").bind(id(endpoint_id))).await?)
}

// ---------- deliveries ----------

/// The delivery columns, with the event's type.
macro_rules! delivery_columns {
    () => {
        "d.id, d.endpoint_id, d.event_id, ev.event_type, d.ordering_key, d.state, d.attempts, d.next_attempt_at, \
         d.last_error, d.created_at, d.updated_at"
    };
}

fn delivery(row: &dyn Columns) -> DbResult<DeliveryRecord> {
    let state = row.text("state")?;
    Ok(DeliveryRecord {
        id: row.int("id")?,
        endpoint_id: uuid("webhook_deliveries.endpoint_id", row.text("endpoint_id")?)?,
        event_id: uuid("webhook_deliveries.event_id", row.text("event_id")?)?,
        event_type: row.text("event_type")?.to_owned(),
        ordering_key: row.text("ordering_key")?.to_owned(),
        state: DeliveryState::parse(state).ok_or_else(|| other(format!("webhook_deliveries.state holds `{state}`")))?,
        attempts: count("webhook_deliveries.attempts", row.int("attempts")?)?,
        next_attempt_at: Timestamp::from_millis(row.int("next_attempt_at")?),
        last_error: row.text_or_null("last_error")?.map(str::to_owned),
        created_at: Timestamp::from_millis(row.int("created_at")?),
        updated_at: Timestamp::from_millis(row.int("updated_at")?),
    })
}

fn due_delivery(row: &dyn Columns) -> DbResult<DueDelivery> {
    Ok(DueDelivery {
        delivery: delivery(row)?,
        endpoint: endpoint(row)?,
        payload: row.text("payload")?.to_owned(),
        event_created_at: Timestamp::from_millis(row.int("event_created_at")?),
    })
}

/// The deliveries that are due: only the oldest pending delivery of each (endpoint, ordering key), as a later one
/// waits for it, due or not. `$1` is now.
macro_rules! due_delivery_ids {
    () => {
        "SELECT d.id FROM webhook_deliveries d JOIN webhook_endpoints ep ON ep.id = d.endpoint_id \
         WHERE d.state = 'pending' AND ep.enabled AND d.next_attempt_at <= $1 \
         AND NOT EXISTS (SELECT 1 FROM webhook_deliveries e WHERE e.endpoint_id = d.endpoint_id \
         AND e.ordering_key = d.ordering_key AND e.state = 'pending' AND e.id < d.id) \
         ORDER BY d.next_attempt_at, d.id LIMIT $2"
    };
}

/// The `SELECT` of due deliveries with their events and endpoints, followed by the rest of the query.
macro_rules! select_due_deliveries {
    ($($rest:expr),+) => {
        concat!(
            "SELECT ",
            delivery_columns!(),
            ", ev.payload, ev.created_at AS event_created_at, ",
            endpoint_columns!(),
            " FROM webhook_deliveries d JOIN webhook_endpoints ep ON ep.id = d.endpoint_id \
             JOIN events ev ON ev.id = d.event_id ",
            $($rest),+
        )
    };
}

pub(crate) async fn due_deliveries(db: &impl Backend, now: Timestamp, max: u32) -> DbResult<Vec<DueDelivery>> {
    let statement = Statement::new(select_due_deliveries!(
        "WHERE d.id IN (SELECT id FROM (",
        due_delivery_ids!(),
        ") AS due) ORDER BY d.next_attempt_at, d.id"
    ))
    .bind(now.as_millis())
    .bind(i64::from(max.max(1)));
    db.fetch(statement, due_delivery).await
}

pub(crate) async fn claim_due_deliveries(
    db: &impl Backend,
    now: Timestamp,
    max: u32,
    claim: &str,
    until: Timestamp,
) -> DbResult<Vec<DueDelivery>> {
    // One statement: of two passes claiming at once, each delivery goes to one. The outer conditions are checked
    // again on a row another pass has just claimed (PostgreSQL re-reads it before updating), so it is skipped. On
    // PostgreSQL the deliveries picked are locked as they are picked, passing over those another pass holds: two
    // passes (on two nodes) locking overlapping rows in their own orders deadlocked, failing a pass a second later.
    let sql = if db.skips_locked_rows() {
        concat!(
            "UPDATE webhook_deliveries SET claimed_by = $3, next_attempt_at = $4 \
             WHERE state = 'pending' AND next_attempt_at <= $1 AND id IN (SELECT id FROM (",
            due_delivery_ids!(),
            " FOR UPDATE OF d SKIP LOCKED) AS due)"
        )
    } else {
        concat!(
            "UPDATE webhook_deliveries SET claimed_by = $3, next_attempt_at = $4 \
             WHERE state = 'pending' AND next_attempt_at <= $1 AND id IN (SELECT id FROM (",
            due_delivery_ids!(),
            ") AS due)"
        )
    };
    // Whether the claim would take anything, read first: the claim is a write, which on SQLite takes a turn of the
    // one committer that every creation waits for, and a pass runs after every commit with events, endpoints or not
    // (convene-bench: the claim's temporary table for `IN` was a tenth of the committer's samples). Read and claim
    // compare with the same `now` and choose the same rows, so the claim could take nothing the read missed but what
    // was committed in between: a new event's delivery, a replay or a re-enabled endpoint (each wakes this node's
    // dispatcher), a claim given back, or a write on another node. None is lost: after a pass that claims nothing,
    // the dispatcher reads `next_delivery_due`, which finds such a delivery due and starts the next pass at once.
    let would_claim = Statement::new(due_delivery_ids!()).bind(now.as_millis()).bind(1_i64);
    if db.fetch(would_claim, |row| row.int("id")).await?.is_empty() {
        return Ok(Vec::new());
    }
    let take =
        Statement::new(sql).bind(now.as_millis()).bind(i64::from(max.max(1))).bind(claim).bind(until.as_millis());
    if db.execute(take).await? == 0 {
        return Ok(Vec::new());
    }
    // Every delivery of this claim is due at `until`: found through the (state, next_attempt_at) index.
    let claimed = Statement::new(select_due_deliveries!(
        "WHERE d.state = 'pending' AND d.next_attempt_at = $1 AND d.claimed_by = $2 ORDER BY d.id"
    ))
    .bind(until.as_millis())
    .bind(claim);
    db.fetch(claimed, due_delivery).await
}

pub(crate) async fn release_delivery_claim(
    db: &impl Backend,
    claim: &str,
    until: Timestamp,
    now: Timestamp,
) -> DbResult<u64> {
    let release = Statement::new(
        "UPDATE webhook_deliveries SET next_attempt_at = $3 \
         WHERE state = 'pending' AND next_attempt_at = $2 AND claimed_by = $1",
    )
    .bind(claim)
    .bind(until.as_millis())
    .bind(now.as_millis());
    db.execute(release).await
}

pub(crate) async fn next_delivery_due(db: &impl Backend) -> DbResult<Option<Timestamp>> {
    // A delivery waiting behind an earlier one of its key is due when that one is done, not at its own time.
    let statement = Statement::new(
        "SELECT MIN(d.next_attempt_at) AS next FROM webhook_deliveries d \
         JOIN webhook_endpoints ep ON ep.id = d.endpoint_id WHERE d.state = 'pending' AND ep.enabled \
         AND NOT EXISTS (SELECT 1 FROM webhook_deliveries e WHERE e.endpoint_id = d.endpoint_id \
         AND e.ordering_key = d.ordering_key AND e.state = 'pending' AND e.id < d.id)",
    );
    let next = one(db.fetch(statement, |row| row.int_or_null("next")).await?)?;
    Ok(next.map(Timestamp::from_millis))
}

pub(crate) async fn record_delivery_attempts(
    db: &impl Backend,
    attempts: &[(&DeliveryAttempt, &AttemptOutcome)],
) -> DbResult<()> {
    let statements = attempts.iter().flat_map(|(attempt, outcome)| attempt_statements(attempt, outcome)).collect();
    db.execute_all(statements).await
}

/// Logging one attempt and applying its outcome to the delivery and its endpoint.
fn attempt_statements(a: &DeliveryAttempt, outcome: &AttemptOutcome) -> Vec<Statement> {
    let insert = Statement::new(
        "INSERT INTO webhook_attempts (id, delivery_id, attempted_at, duration_ms, status, error, response_body) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(id(a.id))
    .bind(a.delivery_id)
    .bind(a.attempted_at.as_millis())
    .bind(i64::try_from(a.duration_ms).unwrap_or(i64::MAX))
    .bind(a.status.map(i64::from))
    .bind(a.error.as_deref())
    .bind(a.response_body.as_deref());
    let delivery = Statement::new(
        "UPDATE webhook_deliveries SET state = $2, attempts = attempts + 1, next_attempt_at = $3, last_error = $4, \
         updated_at = $5 WHERE id = $1 AND COALESCE(claimed_by, '') = COALESCE($6, '')",
    )
    .bind(a.delivery_id)
    .bind(outcome.state.as_str())
    .bind(outcome.next_attempt_at.as_millis())
    .bind(outcome.last_error.as_deref())
    .bind(a.attempted_at.as_millis())
    .bind(outcome.claim.as_deref())
    .must_change();
    let health = Statement::new(
        "UPDATE webhook_endpoints SET failing_since = $2 \
         WHERE id = (SELECT endpoint_id FROM webhook_deliveries WHERE id = $1)",
    )
    .bind(a.delivery_id)
    .bind(outcome.endpoint_failing_since.map(Timestamp::as_millis));
    let mut statements = vec![delivery, insert, health];
    if let Some(reason) = &outcome.disable_endpoint {
        statements.push(
            Statement::new(
                "UPDATE webhook_endpoints SET enabled = $2, disabled_reason = $3, updated_at = $4 \
                 WHERE id = (SELECT endpoint_id FROM webhook_deliveries WHERE id = $1)",
            )
            .bind(a.delivery_id)
            .bind(false)
            .bind(reason.as_str())
            .bind(a.attempted_at.as_millis()),
        );
    }
    statements
}

pub(crate) async fn get_delivery(db: &impl Backend, delivery_id: i64) -> DbResult<DeliveryRecord> {
    let statement = Statement::new(concat!(
        "SELECT ",
        delivery_columns!(),
        " FROM webhook_deliveries d JOIN events ev ON ev.id = d.event_id WHERE d.id = $1"
    ))
    .bind(delivery_id);
    one(db.fetch(statement, delivery).await?)
}

pub(crate) async fn list_deliveries(db: &impl Backend, query: &DeliveryListQuery) -> DbResult<Vec<DeliveryRecord>> {
    db.fetch(list_deliveries_statement(query), delivery).await
}

/// The cursor is always bound (past the last id when the query has none), as in `list_events_statement`.
pub(crate) fn list_deliveries_statement(query: &DeliveryListQuery) -> Statement {
    Statement::new(concat!(
        "SELECT ",
        delivery_columns!(),
        " FROM webhook_deliveries d JOIN events ev ON ev.id = d.event_id \
         WHERE ($1 IS NULL OR d.endpoint_id = $1) AND ($2 IS NULL OR d.state = $2) AND ($3 IS NULL OR d.event_id = $3) \
         AND d.id < $4 ORDER BY d.id DESC LIMIT $5"
    ))
    .bind(query.endpoint_id.map(id))
    .bind(query.state.map(DeliveryState::as_str))
    .bind(query.event_id.map(id))
    .bind(query.before_id.unwrap_or(i64::MAX))
    .bind(limit(query.limit))
}

pub(crate) async fn delivery_attempts(db: &impl Backend, delivery_id: i64) -> DbResult<Vec<DeliveryAttempt>> {
    let statement = Statement::new(
        "SELECT id, delivery_id, attempted_at, duration_ms, status, error, response_body FROM webhook_attempts \
         WHERE delivery_id = $1 ORDER BY attempted_at, id",
    )
    .bind(delivery_id);
    db.fetch(statement, |row| {
        let status = row.int_or_null("status")?;
        Ok(DeliveryAttempt {
            id: uuid("webhook_attempts.id", row.text("id")?)?,
            delivery_id: row.int("delivery_id")?,
            attempted_at: Timestamp::from_millis(row.int("attempted_at")?),
            duration_ms: u64::try_from(row.int("duration_ms")?).unwrap_or_default(),
            status: status
                .map(|s| u16::try_from(s).map_err(|_| other(format!("webhook_attempts.status holds {s}"))))
                .transpose()?,
            error: row.text_or_null("error")?.map(str::to_owned),
            response_body: row.text_or_null("response_body")?.map(str::to_owned),
        })
    })
    .await
}

pub(crate) async fn replay_deliveries(
    db: &impl Backend,
    delivery_id: Option<i64>,
    endpoint_id: Option<Uuid>,
    since: Option<Timestamp>,
    now: Timestamp,
) -> DbResult<u64> {
    if let Some(delivery_id) = delivery_id {
        get_delivery(db, delivery_id).await?;
    }
    if delivery_id.is_none() && endpoint_id.is_none() {
        return Err(DbError::Other("replay needs a delivery or an endpoint".into()));
    }
    let statement = Statement::new(
        "UPDATE webhook_deliveries SET state = 'pending', next_attempt_at = $4, updated_at = $4 \
         WHERE state = 'failed' AND ($1 IS NULL OR id = $1) AND ($2 IS NULL OR endpoint_id = $2) \
         AND ($3 IS NULL OR created_at >= $3)",
    )
    .bind(delivery_id)
    .bind(endpoint_id.map(id))
    .bind(since.map(Timestamp::as_millis))
    .bind(now.as_millis());
    db.execute(statement).await
}

// ---------- retention ----------

/// The events `prune_events` may delete (`$1` the time bound): old, and owed to no endpoint.
macro_rules! prunable {
    () => {
        "created_at < $1 AND NOT EXISTS \
         (SELECT 1 FROM webhook_deliveries owed WHERE owed.event_id = events.id AND owed.state = 'pending')"
    };
}

pub(crate) async fn prune_events(db: &impl Backend, before: Timestamp, max: u32) -> DbResult<u64> {
    let oldest = Statement::new(concat!("SELECT seq FROM events WHERE ", prunable!(), " ORDER BY seq LIMIT $2"))
        .bind(before.as_millis())
        .bind(limit(max));
    let seqs = db.fetch(oldest, |row| row.int("seq")).await?;
    let Some(&last) = seqs.last() else { return Ok(0) };
    // Bounded by the last seq read, the three deletes remove the same events (and what hangs off them), in one go.
    macro_rules! these_events {
        () => {
            concat!("(SELECT id FROM events WHERE ", prunable!(), " AND seq <= $2)")
        };
    }
    let delete = |sql: &'static str| Statement::new(sql).bind(before.as_millis()).bind(last);
    db.execute_all(vec![
        delete(concat!(
            "DELETE FROM webhook_attempts WHERE delivery_id IN (SELECT id FROM webhook_deliveries WHERE event_id IN ",
            these_events!(),
            ")"
        )),
        delete(concat!("DELETE FROM webhook_deliveries WHERE event_id IN ", these_events!())),
        delete(concat!("DELETE FROM events WHERE id IN ", these_events!())),
    ])
    .await?;
    Ok(seqs.len() as u64)
}
