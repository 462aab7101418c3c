//! The store port (`convene_core::Store`) on SQL databases. SQLite today; a PostgreSQL store is meant to follow
//! with the same tables (see `migrations/sqlite/0001_init.sql`) and the same query text: every query uses `$N`
//! placeholders, which both SQLite and PostgreSQL accept.
//!
//! The database is reached only through this crate, so `convene-core` stays free of sqlx.
#![forbid(unsafe_code)]

mod cursor;
mod error;
mod sqlite;
mod stored;

pub use cursor::parse_group_cursor;
pub use sqlite::SqliteStore;
