//! The queries behind `Idempotency-Key` (table `idempotency_keys`, migration 0003), shared by both backends like
//! those in `sql`. Claiming a key is one `INSERT … ON CONFLICT DO UPDATE … WHERE` statement, so that of two requests
//! racing for a key (or for a dead record of it) exactly one wins, on SQLite and on PostgreSQL alike.

use convene_core::store::{DbResult, IdempotencyClaim, IdempotencyRecord, IdempotentResponse};
use convene_core::{DbError, Timestamp};
use uuid::Uuid;

use crate::error::other;
use crate::sql::{Backend, Statement};
use crate::stored::Columns;

/// A record deleted between a failed claim and the look-up that follows it is claimed again; this many times at most.
const CLAIM_ATTEMPTS: usize = 3;

fn api_key_id(record: &IdempotencyRecord) -> String {
    record.api_key_id.hyphenated().to_string()
}

pub(crate) async fn begin(
    db: &impl Backend,
    record: &IdempotencyRecord,
    abandoned_before: Timestamp,
    expired_before: Timestamp,
) -> DbResult<IdempotencyClaim> {
    for _ in 0..CLAIM_ATTEMPTS {
        // Inserts, or replaces a dead row in place; changes nothing when a live row holds the key.
        let claim = Statement::new(
            "INSERT INTO idempotency_keys (api_key_id, idempotency_key, fingerprint, created_at) \
             VALUES ($1, $2, $3, $4) \
             ON CONFLICT (api_key_id, idempotency_key) DO UPDATE SET \
             fingerprint = excluded.fingerprint, created_at = excluded.created_at, \
             status = NULL, content_type = NULL, body = NULL \
             WHERE idempotency_keys.created_at < $5 \
             OR (idempotency_keys.status IS NULL AND idempotency_keys.created_at < $6)",
        )
        .bind(api_key_id(record))
        .bind(record.key.as_str())
        .bind(record.fingerprint.as_str())
        .bind(record.created_at.as_millis())
        .bind(expired_before.as_millis())
        .bind(abandoned_before.as_millis());
        if db.execute(claim).await? > 0 {
            return Ok(IdempotencyClaim::Claimed);
        }
        let look = Statement::new(
            "SELECT api_key_id, idempotency_key, fingerprint, created_at, status, content_type, body \
             FROM idempotency_keys WHERE api_key_id = $1 AND idempotency_key = $2",
        )
        .bind(api_key_id(record))
        .bind(record.key.as_str());
        if let Some(existing) = db.fetch(look, read).await?.into_iter().next() {
            return Ok(IdempotencyClaim::Existing(existing));
        }
    }
    Err(other("an idempotency key kept disappearing while it was being claimed"))
}

pub(crate) async fn complete(
    db: &impl Backend,
    record: &IdempotencyRecord,
    response: &IdempotentResponse,
) -> DbResult<()> {
    let statement = Statement::new(
        "UPDATE idempotency_keys SET status = $5, content_type = $6, body = $7 \
         WHERE api_key_id = $1 AND idempotency_key = $2 AND fingerprint = $3 AND created_at = $4 \
         AND status IS NULL",
    )
    .bind(api_key_id(record))
    .bind(record.key.as_str())
    .bind(record.fingerprint.as_str())
    .bind(record.created_at.as_millis())
    .bind(i64::from(response.status))
    .bind(response.content_type.as_deref())
    .bind(response.body.as_str());
    changed_one(db.execute(statement).await?)
}

pub(crate) async fn release(db: &impl Backend, record: &IdempotencyRecord) -> DbResult<()> {
    let statement = Statement::new(
        "DELETE FROM idempotency_keys \
         WHERE api_key_id = $1 AND idempotency_key = $2 AND fingerprint = $3 AND created_at = $4 \
         AND status IS NULL",
    )
    .bind(api_key_id(record))
    .bind(record.key.as_str())
    .bind(record.fingerprint.as_str())
    .bind(record.created_at.as_millis());
    changed_one(db.execute(statement).await?)
}

pub(crate) async fn delete_expired(db: &impl Backend, before: Timestamp, limit: u32) -> DbResult<u64> {
    // Neither database has a portable `DELETE … LIMIT`: pick the rows in a subquery.
    let statement = Statement::new(
        "DELETE FROM idempotency_keys WHERE (api_key_id, idempotency_key) IN \
         (SELECT api_key_id, idempotency_key FROM idempotency_keys WHERE created_at < $1 \
          ORDER BY created_at LIMIT $2)",
    )
    .bind(before.as_millis())
    .bind(i64::from(limit));
    db.execute(statement).await
}

fn changed_one(rows_affected: u64) -> DbResult<()> {
    if rows_affected == 0 { Err(DbError::NotFound) } else { Ok(()) }
}

fn read(row: &dyn Columns) -> DbResult<IdempotencyRecord> {
    let id = row.text("api_key_id")?;
    let api_key_id =
        Uuid::try_parse(id).map_err(|_| other(format!("stored idempotency_keys.api_key_id `{id}` is not a uuid")))?;
    let response = match row.int_or_null("status")? {
        None => None,
        Some(status) => Some(IdempotentResponse {
            status: u16::try_from(status)
                .map_err(|_| other(format!("stored idempotency_keys.status `{status}` is not an HTTP status")))?,
            content_type: row.text_or_null("content_type")?.map(str::to_owned),
            body: row.text_or_null("body")?.unwrap_or_default().to_owned(),
        }),
    };
    Ok(IdempotencyRecord {
        api_key_id,
        key: row.text("idempotency_key")?.to_owned(),
        fingerprint: row.text("fingerprint")?.to_owned(),
        created_at: Timestamp::from_millis(row.int("created_at")?),
        response,
    })
}
