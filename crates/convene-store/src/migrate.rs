//! What both backends' migration runners share. Each backend keeps its schema in `migrations/<backend>/NNNN_*.sql`,
//! compiled in, and records every applied version in `schema_migrations`; how it keeps two starting processes from
//! applying one file twice is its own (SQLite: `BEGIN IMMEDIATE`, PostgreSQL: an advisory lock).

use convene_core::store::DbResult;

use crate::error::other;

/// One schema version and the SQL that brings the previous one to it. Never edit an applied file: add the next one.
pub(crate) type Migration = (i64, &'static str);

/// Refuses a database that a newer build has migrated past what `migrations` know: this build would misread it.
pub(crate) fn refuse_newer(current: Option<i64>, migrations: &[Migration]) -> DbResult<()> {
    let latest = migrations.last().map_or(0, |&(version, _)| version);
    match current {
        Some(current) if current > latest => Err(other(format!(
            "the database schema is at version {current}, newer than this build knows ({latest}): refusing to use it"
        ))),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_version_past_the_last_known_one_is_refused() {
        let known = [(1, ""), (2, "")];
        assert!(refuse_newer(None, &known).is_ok());
        assert!(refuse_newer(Some(2), &known).is_ok());
        let err = refuse_newer(Some(3), &known).unwrap_err().to_string();
        assert!(err.contains("version 3") && err.contains("(2)"), "{err}");
    }
}
