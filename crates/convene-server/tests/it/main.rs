//! End-to-end tests: a real server on 127.0.0.1, a fresh SQLite file and sandbox world per test.

mod browser;
mod console;
mod console_webhooks;
mod dialect_green;
mod dialect_twochat;
mod dialect_wawp;
mod dialect_whatsapp;
mod dialect_zapi;
mod e2e_cluster;
mod e2e_errors;
mod e2e_groups;
mod e2e_hangups;
mod e2e_health;
mod e2e_idempotency;
mod e2e_instances;
mod e2e_jobs;
mod e2e_keys;
mod e2e_paging;
mod e2e_participants;
mod e2e_sandbox;
mod e2e_webhooks;
mod e2e_whatsapp;
mod helpers;
mod openapi;
mod receiver;
mod router;
