//! The store contract suite: every behaviour the `Store` port promises, written once against `&dyn Store` in
//! `contract.rs` and run on each backend by that backend's module. A PostgreSQL store adds `postgres.rs`, calling the
//! same cases with a fresh database each.

mod contract;
mod sqlite;
