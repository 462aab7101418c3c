//! Rows back into records, on either backend. The database holds plain text, integers and flags; a value that no
//! longer parses (edited by hand, written by a newer version) is reported as `DbError::Other` naming the table and
//! column, never as a panic and never silently replaced.

use convene_core::store::{ApiKeyRecord, DbResult, GroupRecord, InstanceRecord};
use convene_core::{
    ConnectorKind, DbError, Disappearing, GroupId, GroupJid, GroupSettings, InstanceId, PhoneNumber, Timestamp,
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

pub(crate) fn api_key(row: &dyn Columns) -> DbResult<ApiKeyRecord> {
    Ok(ApiKeyRecord {
        id: uuid("api_keys.id", row.text("id")?)?,
        name: row.text("name")?.to_owned(),
        prefix: row.text("prefix")?.to_owned(),
        secret_hash: row.text("secret_hash")?.to_owned(),
        created_at: Timestamp::from_millis(row.int("created_at")?),
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
    })
}

pub(crate) fn corrupt(column: &str, value: impl std::fmt::Display, expected: &str) -> DbError {
    other(format!("stored {column} `{value}` is not {expected}"))
}

fn uuid(column: &str, value: &str) -> DbResult<Uuid> {
    Uuid::try_parse(value).map_err(|_| corrupt(column, value, "a uuid"))
}

fn phone(column: &str, value: &str) -> DbResult<PhoneNumber> {
    PhoneNumber::parse(value).map_err(|_| corrupt(column, value, "a phone number"))
}

fn jid(column: &str, value: &str) -> DbResult<GroupJid> {
    GroupJid::parse(value).ok_or_else(|| corrupt(column, value, "a group jid"))
}

fn kind(column: &str, value: &str) -> DbResult<ConnectorKind> {
    ConnectorKind::parse(value).ok_or_else(|| corrupt(column, value, "a connector kind"))
}

fn disappearing(column: &str, value: i64) -> DbResult<Disappearing> {
    u32::try_from(value)
        .ok()
        .and_then(Disappearing::from_seconds)
        .ok_or_else(|| corrupt(column, value, "a disappearing-messages timer in seconds"))
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
        assert!(kind("instances.kind", "telegram").unwrap_err().to_string().contains("instances.kind"));
        assert!(disappearing("groups.disappearing_seconds", 3600).is_err());
        assert!(disappearing("groups.disappearing_seconds", -1).is_err());
    }

    #[test]
    fn good_stored_values_parse() {
        assert_eq!(phone("p", "17137157533").unwrap().digits(), "17137157533");
        assert_eq!(disappearing("d", 604_800).unwrap(), Disappearing::Week);
    }
}
