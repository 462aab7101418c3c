//! sqlx errors as the store port's `DbError`.

use convene_core::DbError;

/// RowNotFound becomes `NotFound`, a unique or primary-key violation becomes `Conflict`, anything else `Other`.
pub(crate) fn db_err(e: sqlx::Error) -> DbError {
    match e {
        sqlx::Error::RowNotFound => DbError::NotFound,
        e if e.as_database_error().is_some_and(|d| d.is_unique_violation()) => DbError::Conflict,
        e => DbError::Other(Box::new(e)),
    }
}

/// An error that is not sqlx's: a bad URL, a stored value that no longer parses, a malformed cursor.
pub(crate) fn other(message: impl Into<String>) -> DbError {
    DbError::Other(message.into().into())
}
