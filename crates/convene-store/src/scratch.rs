//! Throwaway PostgreSQL databases for tests: each test gets an empty database of its own on a shared server, dropped
//! afterwards. Used by this crate's contract tests and by the server's end-to-end tests.

use sqlx::AssertSqlSafe;
use sqlx::postgres::{PgPool, PgPoolOptions};

use crate::error::db_err;
use convene_core::DbError;

/// Runs `test` with the URL of a fresh database on the server `TEST_DATABASE_URL` names, then drops the database, also
/// when `test` panics (the panic then goes on). Without `TEST_DATABASE_URL`, prints that `name` was skipped on
/// PostgreSQL and returns: the PostgreSQL leg of the suite sets it.
pub async fn on_scratch_database<F, Fut>(name: &str, test: F)
where
    F: FnOnce(String) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let Some(server) = std::env::var("TEST_DATABASE_URL").ok().filter(|u| !u.is_empty()) else {
        println!("skipped {name} on PostgreSQL: TEST_DATABASE_URL is not set");
        return;
    };
    let db = ScratchDatabase::create(&server).await.expect("TEST_DATABASE_URL answers and may create databases");
    // A task of its own, so that a panic comes back here as an error instead of skipping the drop.
    let outcome = tokio::spawn(test(db.url().to_owned())).await;
    db.drop_now().await.expect("the scratch database drops");
    if let Err(e) = outcome {
        std::panic::resume_unwind(e.into_panic());
    }
}

/// A database created on the server at some admin URL; dropped (with its open connections) by `drop_now` or, failing
/// that, when it goes out of scope.
pub struct ScratchDatabase {
    server: String,
    name: String,
    url: String,
    dropped: bool,
}

impl ScratchDatabase {
    /// Creates `convene_test_<random>` on the server `server_url` names (its user may `CREATE DATABASE`).
    pub async fn create(server_url: &str) -> Result<Self, DbError> {
        let name = format!("convene_test_{}", uuid::Uuid::new_v4().simple());
        let admin = admin_pool(server_url).await?;
        sqlx::raw_sql(AssertSqlSafe(format!("CREATE DATABASE {name}"))).execute(&admin).await.map_err(db_err)?;
        admin.close().await;
        Ok(Self { server: server_url.to_owned(), url: with_database(server_url, &name), name, dropped: false })
    }

    /// The URL of the new database.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Drops the database, closing whatever connections to it are still open.
    pub async fn drop_now(mut self) -> Result<(), DbError> {
        self.dropped = true;
        drop_database(&self.server, &self.name).await
    }
}

impl Drop for ScratchDatabase {
    fn drop(&mut self) {
        if self.dropped {
            return;
        }
        // Drop cannot await, and may run inside a runtime: do it on a thread with a runtime of its own.
        let (server, name) = (self.server.clone(), self.name.clone());
        let done = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build();
            if let Ok(runtime) = runtime {
                let _ = runtime.block_on(drop_database(&server, &name));
            }
        });
        let _ = done.join();
    }
}

async fn admin_pool(server_url: &str) -> Result<PgPool, DbError> {
    PgPoolOptions::new().max_connections(1).connect(server_url).await.map_err(db_err)
}

async fn drop_database(server_url: &str, name: &str) -> Result<(), DbError> {
    let admin = admin_pool(server_url).await?;
    let sql = format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)");
    let result = sqlx::raw_sql(AssertSqlSafe(sql)).execute(&admin).await.map_err(db_err);
    admin.close().await;
    result.map(|_| ())
}

/// `url` with its database name replaced by `database`; user, host, port and parameters are kept.
fn with_database(url: &str, database: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("postgres", url));
    let (rest, params) = rest.split_once('?').map_or((rest, None), |(r, p)| (r, Some(p)));
    let authority = rest.split_once('/').map_or(rest, |(a, _)| a);
    match params {
        Some(params) => format!("{scheme}://{authority}/{database}?{params}"),
        None => format!("{scheme}://{authority}/{database}"),
    }
}

#[cfg(test)]
mod tests {
    use super::with_database;

    #[test]
    fn the_database_name_is_replaced_and_the_rest_kept() {
        assert_eq!(with_database("postgres://u:p@h:5/postgres", "x"), "postgres://u:p@h:5/x");
        assert_eq!(with_database("postgres://h/db?sslmode=disable", "x"), "postgres://h/x?sslmode=disable");
        assert_eq!(with_database("postgresql://h", "x"), "postgresql://h/x");
    }
}
