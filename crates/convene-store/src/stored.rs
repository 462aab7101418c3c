//! Rows back into records, on either backend. The database holds plain text, integers and flags; a value that no
//! longer parses (edited by hand, written by a newer version) is reported as `DbError::Other` naming the table and
//! column, never as a panic and never silently replaced.

use convene_core::store::{
    ApiKeyRecord, BatchSummary, CreationAttempt, DbResult, GroupRecord, InstancePause, InstanceRecord,
    InstanceSettings, JobRecord, JobState,
};
use convene_core::{
    ConnectorKind, DbError, Disappearing, GroupId, GroupJid, GroupSettings, InstanceId, PacingPolicy, PhoneNumber,
    Timestamp,
};
use sqlx::{ColumnIndex, Decode, Row, Type};
use uuid::Uuid;

use crate::error::{db_err, other};

/// A result row of either backend, read by column name: text as `&str`, integers as `i64` (SQLite `INTEGER`,
/// PostgreSQL `BIGINT`) and flags as `bool` (PostgreSQL `BOOLEAN`; SQLite `INTEGER`, which sqlx reads as "not 0" and
/// the table's `CHECK (… IN (0, 1))` keeps at 0 or 1).
pub(crate) trait Columns {
    fn text(&self, column: &str) -> DbResult<&str>;
    fn text_or_null(&self, column: &str) -> DbResult<Option<&str>>;
    fn int(&self, column: &str) -> DbResult<i64>;
    fn int_or_null(&self, column: &str) -> DbResult<Option<i64>>;
    fn flag(&self, column: &str) -> DbResult<bool>;
}

impl<R> Columns for R
where
    R: Row,
    for<'c> &'c str: ColumnIndex<R>,
    for<'r> &'r str: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> i64: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> bool: Decode<'r, R::Database> + Type<R::Database>,
{
    fn text(&self, column: &str) -> DbResult<&str> {
        self.try_get(column).map_err(db_err)
    }

    fn text_or_null(&self, column: &str) -> DbResult<Option<&str>> {
        self.try_get(column).map_err(db_err)
    }

    fn int(&self, column: &str) -> DbResult<i64> {
        self.try_get(column).map_err(db_err)
    }

    fn int_or_null(&self, column: &str) -> DbResult<Option<i64>> {
        self.try_get(column).map_err(db_err)
    }

    fn flag(&self, column: &str) -> DbResult<bool> {
        self.try_get(column).map_err(db_err)
    }
}

/// A row of SQLite read through rusqlite (the SQLite store's readers), by column name like sqlx's rows; `names`
/// are the statement's columns, in order, each named once (a name selected twice would be found at either place).
pub(crate) struct SqliteRow<'a> {
    row: &'a rusqlite::Row<'a>,
    names: &'a [String],
    /// Where the next column is looked for first: the readers in `stored` mostly read the columns in the order the
    /// statements select them, so each name is found at the first comparison rather than by a search of the row
    /// (the accessors, searching each time, were a tenth of the list phase's samples).
    next: std::cell::Cell<usize>,
}

impl<'a> SqliteRow<'a> {
    pub(crate) fn new(row: &'a rusqlite::Row<'a>, names: &'a [String]) -> Self {
        Self { row, names, next: std::cell::Cell::new(0) }
    }

    fn value(&self, column: &str) -> DbResult<rusqlite::types::ValueRef<'_>> {
        let guess = self.next.get();
        let index = match self.names.get(guess) {
            Some(name) if name == column => guess,
            _ => self
                .names
                .iter()
                .position(|name| name == column)
                .ok_or_else(|| other(format!("the query returns no column {column}")))?,
        };
        self.next.set(index + 1);
        self.row.get_ref(index).map_err(crate::error::sqlite_err)
    }

    fn mismatch(column: &str, wanted: &str, found: rusqlite::types::ValueRef<'_>) -> DbError {
        other(format!("column {column}: expected {wanted}, found {}", found.data_type()))
    }
}

impl Columns for SqliteRow<'_> {
    fn text(&self, column: &str) -> DbResult<&str> {
        self.text_or_null(column)?.ok_or_else(|| Self::mismatch(column, "text", rusqlite::types::ValueRef::Null))
    }

    fn text_or_null(&self, column: &str) -> DbResult<Option<&str>> {
        use rusqlite::types::ValueRef;
        match self.value(column)? {
            ValueRef::Null => Ok(None),
            ValueRef::Text(bytes) => {
                std::str::from_utf8(bytes).map(Some).map_err(|_| other(format!("column {column}: not UTF-8")))
            }
            found => Err(Self::mismatch(column, "text", found)),
        }
    }

    fn int(&self, column: &str) -> DbResult<i64> {
        self.int_or_null(column)?.ok_or_else(|| Self::mismatch(column, "an integer", rusqlite::types::ValueRef::Null))
    }

    fn int_or_null(&self, column: &str) -> DbResult<Option<i64>> {
        use rusqlite::types::ValueRef;
        match self.value(column)? {
            ValueRef::Null => Ok(None),
            ValueRef::Integer(n) => Ok(Some(n)),
            found => Err(Self::mismatch(column, "an integer", found)),
        }
    }

    fn flag(&self, column: &str) -> DbResult<bool> {
        self.int(column).map(|n| n != 0)
    }
}

pub(crate) fn api_key(row: &dyn Columns) -> DbResult<ApiKeyRecord> {
    Ok(ApiKeyRecord {
        id: uuid("api_keys.id", row.text("id")?)?,
        name: row.text("name")?.to_owned(),
        prefix: row.text("prefix")?.to_owned(),
        secret_hash: row.text("secret_hash")?.to_owned(),
        created_at: Timestamp::from_millis(row.int("created_at")?),
        instance_ids: row
            .text_or_null("instance_ids")?
            .map(|ids| instance_ids("api_keys.instance_ids", ids))
            .transpose()?,
        read_only: row.flag("read_only")?,
        last_used_at: row.int_or_null("last_used_at")?.map(Timestamp::from_millis),
    })
}

pub(crate) fn instance(row: &dyn Columns) -> DbResult<InstanceRecord> {
    Ok(InstanceRecord {
        id: InstanceId(row.int("id")?),
        kind: kind("instances.kind", row.text("kind")?)?,
        name: row.text("name")?.to_owned(),
        phone: row.text_or_null("phone")?.map(|p| phone("instances.phone", p)).transpose()?,
        token_hash: row.text("token_hash")?.to_owned(),
        created_at: Timestamp::from_millis(row.int("created_at")?),
    })
}

pub(crate) fn group(row: &dyn Columns) -> DbResult<GroupRecord> {
    Ok(GroupRecord {
        id: GroupId(uuid("groups.id", row.text("id")?)?),
        instance_id: InstanceId(row.int("instance_id")?),
        jid: jid("groups.jid", row.text("jid")?)?,
        subject: row.text("subject")?.to_owned(),
        description: row.text_or_null("description")?.map(str::to_owned),
        settings: GroupSettings {
            announce_only: row.flag("announce_only")?,
            locked_info: row.flag("locked_info")?,
            join_approval: row.flag("join_approval")?,
            disappearing_messages: disappearing("groups.disappearing_seconds", row.int("disappearing_seconds")?)?,
        },
        created_at: Timestamp::from_millis(row.int("created_at")?),
        updated_at: Timestamp::from_millis(row.int("updated_at")?),
        left_at: row.int_or_null("left_at")?.map(Timestamp::from_millis),
        creation_job_id: row
            .text_or_null("creation_job_id")?
            .map(|id| uuid("groups.creation_job_id", id))
            .transpose()?,
    })
}

/// `pacing_*`, `auto_invite` and `backup_admins` of `instance_settings`. The row has a pacing policy of its own
/// when `pacing_burst` is set.
pub(crate) fn instance_settings(row: &dyn Columns) -> DbResult<InstanceSettings> {
    let pacing = match row.int_or_null("pacing_burst")? {
        None => None,
        Some(burst) => Some(PacingPolicy {
            min_interval_secs: match row.int_or_null("pacing_min_interval_secs")? {
                Some(secs) => u64::try_from(secs)
                    .map_err(|_| corrupt("instance_settings.pacing_min_interval_secs", secs, "seconds"))?,
                None => return Err(corrupt("instance_settings.pacing_min_interval_secs", "NULL", "seconds")),
            },
            burst: small_count("instance_settings.pacing_burst", burst)?,
            daily_cap: row
                .int_or_null("pacing_daily_cap")?
                .map(|cap| small_count("instance_settings.pacing_daily_cap", cap))
                .transpose()?,
        }),
    };
    let backup_admins = row
        .text("backup_admins")?
        .split_whitespace()
        .map(|p| phone("instance_settings.backup_admins", p))
        .collect::<DbResult<_>>()?;
    Ok(InstanceSettings { pacing, auto_invite: row.flag("auto_invite")?, backup_admins })
}

/// `paused_until` and `pause_reason` of `instance_settings`: a pause when `paused_until` is set.
pub(crate) fn instance_pause(row: &dyn Columns) -> DbResult<Option<InstancePause>> {
    let Some(until) = row.int_or_null("paused_until")? else {
        return Ok(None);
    };
    let reason = row
        .text_or_null("pause_reason")?
        .ok_or_else(|| corrupt("instance_settings.pause_reason", "NULL", "a reason"))?;
    Ok(Some(InstancePause { until: Timestamp::from_millis(until), reason: reason.to_owned() }))
}

pub(crate) fn creation_attempt(row: &dyn Columns) -> DbResult<CreationAttempt> {
    Ok(CreationAttempt {
        id: uuid("creation_attempts.id", row.text("id")?)?,
        instance_id: InstanceId(row.int("instance_id")?),
        job_id: row.text_or_null("job_id")?.map(|j| uuid("creation_attempts.job_id", j)).transpose()?,
        started_at: Timestamp::from_millis(row.int("started_at")?),
        finished_at: row.int_or_null("finished_at")?.map(Timestamp::from_millis),
        outcome: row.text_or_null("outcome")?.map(str::to_owned),
        detail: row.text_or_null("detail")?.map(str::to_owned),
    })
}

pub(crate) fn job(row: &dyn Columns) -> DbResult<JobRecord> {
    Ok(JobRecord {
        id: uuid("jobs.id", row.text("id")?)?,
        batch_id: row.text_or_null("batch_id")?.map(|b| uuid("jobs.batch_id", b)).transpose()?,
        state: job_state("jobs.state", row.text("state")?)?,
        instance_ids: instance_ids("jobs.instance_ids", row.text("instance_ids")?)?,
        pinned_instance_id: row.int_or_null("pinned_instance_id")?.map(InstanceId),
        request: row.text("request")?.to_owned(),
        creation_key: row.text("creation_key")?.to_owned(),
        attempts: small_count("jobs.attempts", row.int("attempts")?)?,
        next_run_at: Timestamp::from_millis(row.int("next_run_at")?),
        needs_reconcile: row.flag("needs_reconcile")?,
        last_error: row.text_or_null("last_error")?.map(str::to_owned),
        result: row.text_or_null("result")?.map(str::to_owned),
        dedupe_key: row.text_or_null("dedupe_key")?.map(str::to_owned),
        created_at: Timestamp::from_millis(row.int("created_at")?),
        updated_at: Timestamp::from_millis(row.int("updated_at")?),
    })
}

pub(crate) fn corrupt(column: &str, value: impl std::fmt::Display, expected: &str) -> DbError {
    other(format!("stored {column} `{value}` is not {expected}"))
}

fn uuid(column: &str, value: &str) -> DbResult<Uuid> {
    Uuid::try_parse(value).map_err(|_| corrupt(column, value, "a uuid"))
}

pub(crate) fn phone(column: &str, value: &str) -> DbResult<PhoneNumber> {
    PhoneNumber::from_stored(value).ok_or_else(|| corrupt(column, value, "a phone number"))
}

fn jid(column: &str, value: &str) -> DbResult<GroupJid> {
    GroupJid::parse(value).ok_or_else(|| corrupt(column, value, "a group jid"))
}

fn kind(column: &str, value: &str) -> DbResult<ConnectorKind> {
    ConnectorKind::named(value).ok_or_else(|| corrupt(column, value, "a connector kind"))
}

fn disappearing(column: &str, value: i64) -> DbResult<Disappearing> {
    u32::try_from(value)
        .ok()
        .and_then(Disappearing::from_seconds)
        .ok_or_else(|| corrupt(column, value, "a disappearing-messages timer in seconds"))
}

pub(crate) fn job_state(column: &str, value: &str) -> DbResult<JobState> {
    JobState::parse(value).ok_or_else(|| corrupt(column, value, "a job state"))
}

pub(crate) fn batch_summary(row: &dyn Columns) -> DbResult<BatchSummary> {
    let count = |column: &str| row.int(column).map(i64::unsigned_abs);
    Ok(BatchSummary {
        batch_id: uuid("jobs.batch_id", row.text("batch_id")?)?,
        created_at: Timestamp::from_millis(row.int("created_at")?),
        instance_ids: instance_ids("jobs.instance_ids", row.text("instance_ids")?)?,
        counts: [
            (JobState::Queued, count("queued")?),
            (JobState::Running, count("running")?),
            (JobState::Succeeded, count("succeeded")?),
            (JobState::Failed, count("failed")?),
            (JobState::Cancelled, count("cancelled")?),
        ],
    })
}

/// Space-separated instance ids, as `jobs::instance_id_list` writes them (jobs' pools, API keys' scopes).
fn instance_ids(column: &str, value: &str) -> DbResult<Vec<InstanceId>> {
    value
        .split_whitespace()
        .map(|id| id.parse().map(InstanceId).map_err(|_| corrupt(column, value, "a list of instance ids")))
        .collect()
}

/// A count or limit kept as `u32` in the record.
fn small_count(column: &str, value: i64) -> DbResult<u32> {
    u32::try_from(value).map_err(|_| corrupt(column, value, "a count"))
}

/// `count` as a `u64`; counts are never negative, but the column type does not say so.
pub(crate) fn count(column: &str, value: i64) -> DbResult<u64> {
    u64::try_from(value).map_err(|_| corrupt(column, value, "a count"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bad_stored_value_is_an_error_naming_its_column() {
        let err = phone("instances.phone", "bob").unwrap_err();
        assert!(matches!(err, DbError::Other(_)));
        assert_eq!(err.to_string(), "database error: stored instances.phone `bob` is not a phone number");
        assert!(jid("groups.jid", "x").unwrap_err().to_string().contains("groups.jid"));
        assert!(kind("instances.kind", "Tele gram").unwrap_err().to_string().contains("instances.kind"));
        // A kind this build does not have reads back by its name: the server decides what to do with it.
        assert_eq!(kind("instances.kind", "telegram").unwrap().as_str(), "telegram");
        assert!(disappearing("groups.disappearing_seconds", 3600).is_err());
        assert!(disappearing("groups.disappearing_seconds", -1).is_err());
        assert!(job_state("jobs.state", "paused").unwrap_err().to_string().contains("jobs.state"));
        assert!(instance_ids("jobs.instance_ids", "1 two 3").unwrap_err().to_string().contains("jobs.instance_ids"));
        assert!(small_count("jobs.attempts", -1).is_err());
        assert!(small_count("jobs.attempts", i64::from(u32::MAX) + 1).is_err());
    }

    #[test]
    fn good_stored_values_parse() {
        assert_eq!(phone("p", "17137157533").unwrap().digits(), "17137157533");
        assert_eq!(disappearing("d", 604_800).unwrap(), Disappearing::Week);
        assert_eq!(job_state("s", "cancelled").unwrap(), JobState::Cancelled);
        assert_eq!(
            instance_ids("i", "7103000001 7103000002").unwrap(),
            [InstanceId(7_103_000_001), InstanceId(7_103_000_002)]
        );
        assert_eq!(instance_ids("i", "").unwrap(), []);
    }

    #[test]
    fn a_rusqlite_row_finds_its_columns_by_name_in_any_order() {
        let connection = rusqlite::Connection::open_in_memory().unwrap();
        let mut statement = connection.prepare("SELECT 1 AS a, 'two' AS b, NULL AS c, 4 AS d").unwrap();
        let names: Vec<String> = statement.column_names().into_iter().map(str::to_owned).collect();
        let mut rows = statement.raw_query();
        let row = SqliteRow::new(rows.next().unwrap().unwrap(), &names);
        // In order, then out of it: each name is found wherever the last one was.
        assert_eq!(row.int("a").unwrap(), 1);
        assert_eq!(row.text("b").unwrap(), "two");
        assert_eq!(row.int("d").unwrap(), 4);
        assert_eq!(row.int("a").unwrap(), 1);
        assert_eq!(row.text_or_null("c").unwrap(), None);
        assert_eq!(row.text("b").unwrap(), "two");
        assert!(row.int("b").unwrap_err().to_string().contains("column b: expected an integer"));
        assert!(row.int("e").unwrap_err().to_string().contains("no column e"));
        assert_eq!(row.int("d").unwrap(), 4);
    }
}
