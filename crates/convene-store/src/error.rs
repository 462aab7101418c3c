//! sqlx's and rusqlite's errors as the store port's `DbError`.

use convene_core::DbError;

/// RowNotFound becomes `NotFound`, a unique or primary-key violation becomes `Conflict`, anything else `Other`.
pub(crate) fn db_err(e: sqlx::Error) -> DbError {
    match e {
        sqlx::Error::RowNotFound => DbError::NotFound,
        e if e.as_database_error().is_some_and(|d| d.is_unique_violation()) => DbError::Conflict,
        e => DbError::Other(Box::new(e)),
    }
}

/// The same for the SQLite store's rusqlite connections (its committer and readers): unique and primary-key
/// violations become `Conflict`, as sqlx reads them.
pub(crate) fn sqlite_err(e: rusqlite::Error) -> DbError {
    use rusqlite::ffi;
    match e {
        rusqlite::Error::QueryReturnedNoRows => DbError::NotFound,
        rusqlite::Error::SqliteFailure(ffi::Error { extended_code, .. }, _)
            if extended_code == ffi::SQLITE_CONSTRAINT_UNIQUE || extended_code == ffi::SQLITE_CONSTRAINT_PRIMARYKEY =>
        {
            DbError::Conflict
        }
        e => DbError::Other(Box::new(e)),
    }
}

/// An error that is not sqlx's: a bad URL, a stored value that no longer parses, a malformed cursor.
pub(crate) fn other(message: impl Into<String>) -> DbError {
    DbError::Other(message.into().into())
}
