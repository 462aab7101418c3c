//! The store port (`convene_core::Store`) on SQL databases: SQLite (`SqliteStore`) and PostgreSQL (`PostgresStore`).
//! Both have the same tables (`migrations/{sqlite,postgres}/`) and run the same queries (`sql`): every query uses `$N`
//! placeholders and column types that read and write as the same Rust types on both.
//!
//! The database is reached only through this crate, so `convene-core` stays free of sqlx.
#![forbid(unsafe_code)]

use std::sync::Arc;

use convene_core::{DbError, Store};

mod cursor;
mod delegate;
mod device_keys;
mod error;
mod events;
mod group_commit;
mod idempotency;
mod jobs;
mod leases;
mod migrate;
mod postgres;
mod row_cache;
mod scratch;
mod sql;
mod sqlite;
mod stored;

pub use cursor::parse_group_cursor;
pub use postgres::PostgresStore;
pub use scratch::{ScratchDatabase, on_scratch_database};
pub use sqlite::SqliteStore;

/// Opens the store that `url`'s scheme names: `sqlite:` (`sqlite://path/to/file.db`, `sqlite::memory:`) or
/// `postgres:`/`postgresql:` (`postgres://user@host/database`). Any other scheme is `DbError::Other`.
pub async fn connect(url: &str) -> Result<Arc<dyn Store>, DbError> {
    match scheme(url) {
        "sqlite" => Ok(Arc::new(SqliteStore::connect(url).await?)),
        "postgres" | "postgresql" => Ok(Arc::new(PostgresStore::connect(url).await?)),
        // Name the scheme only: the URL may hold a password.
        scheme => Err(error::other(format!(
            "unsupported database URL scheme `{scheme}`: use sqlite:, postgres: or postgresql: \
             (e.g. sqlite://data/convene.db or postgres://user@host/convene)"
        ))),
    }
}

/// The file a `sqlite:` URL names; `None` for an in-memory database or another engine.
pub fn sqlite_file(url: &str) -> Option<std::path::PathBuf> {
    sqlite::file_of(url)
}

/// What comes before the URL's first `:`, or the whole string when it has none.
fn scheme(url: &str) -> &str {
    url.split_once(':').map_or(url, |(scheme, _)| scheme)
}
