//! The store contract suite: every behaviour the `Store` port promises, written once against `&dyn Store` in
//! `contract.rs` and run on each backend by that backend's module, each case with a fresh database: `sqlite.rs` on a
//! temporary file, `postgres.rs` on the server at `TEST_DATABASE_URL` (skipped when it is unset). `connect.rs` checks
//! that a URL's scheme picks the backend.

mod connect;
mod contract;
mod contract_events;
mod contract_jobs;
mod contract_leases;
mod postgres;
mod sqlite;
