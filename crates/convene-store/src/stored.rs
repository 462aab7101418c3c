//! Column values back into domain types. The database holds plain text and integers; a value that no longer parses
//! (edited by hand, written by a newer version) is reported as `DbError::Other` naming the table and column, never
//! as a panic and never silently replaced.

use convene_core::store::DbResult;
use convene_core::{ConnectorKind, DbError, Disappearing, GroupJid, PhoneNumber};
use uuid::Uuid;

use crate::error::other;

fn corrupt(column: &str, value: impl std::fmt::Display, expected: &str) -> DbError {
    other(format!("stored {column} `{value}` is not {expected}"))
}

pub(crate) fn uuid(column: &str, value: &str) -> DbResult<Uuid> {
    Uuid::try_parse(value).map_err(|_| corrupt(column, value, "a uuid"))
}

pub(crate) fn phone(column: &str, value: &str) -> DbResult<PhoneNumber> {
    PhoneNumber::parse(value).map_err(|_| corrupt(column, value, "a phone number"))
}

pub(crate) fn jid(column: &str, value: &str) -> DbResult<GroupJid> {
    GroupJid::parse(value).ok_or_else(|| corrupt(column, value, "a group jid"))
}

pub(crate) fn kind(column: &str, value: &str) -> DbResult<ConnectorKind> {
    ConnectorKind::parse(value).ok_or_else(|| corrupt(column, value, "a connector kind"))
}

pub(crate) fn boolean(column: &str, value: i64) -> DbResult<bool> {
    match value {
        0 => Ok(false),
        1 => Ok(true),
        _ => Err(corrupt(column, value, "0 or 1")),
    }
}

pub(crate) fn disappearing(column: &str, value: i64) -> DbResult<Disappearing> {
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
        assert!(boolean("groups.locked_info", 2).is_err());
        assert!(disappearing("groups.disappearing_seconds", 3600).is_err());
        assert!(disappearing("groups.disappearing_seconds", -1).is_err());
    }

    #[test]
    fn good_stored_values_parse() {
        assert_eq!(phone("p", "17137157533").unwrap().digits(), "17137157533");
        assert_eq!(disappearing("d", 604_800).unwrap(), Disappearing::Week);
        assert!(boolean("b", 1).unwrap() && !boolean("b", 0).unwrap());
    }
}
