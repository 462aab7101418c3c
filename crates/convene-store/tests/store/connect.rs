//! `convene_store::connect`: the URL's scheme picks the backend.

use convene_core::{DbError, InstanceId};
use sqlx::postgres::PgPool;

use crate::postgres::on_fresh_database;

fn expect_other(result: Result<std::sync::Arc<dyn convene_core::Store>, DbError>) -> String {
    match result {
        Err(DbError::Other(e)) => e.to_string(),
        other => panic!("expected DbError::Other, got {:?}", other.map(|_| ())),
    }
}

#[tokio::test]
async fn a_sqlite_url_opens_a_sqlite_file() {
    // Arrange
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("convene.db");

    // Act
    let store = convene_store::connect(&format!("sqlite://{}", path.display())).await.unwrap();

    // Assert
    assert!(path.is_file());
    assert!(matches!(store.get_instance(InstanceId(7_103_000_001)).await, Err(DbError::NotFound)));
}

#[tokio::test]
async fn both_postgres_schemes_open_the_postgres_database() {
    on_fresh_database("both_postgres_schemes_open_the_postgres_database", |url| async move {
        let postgresql = url.replacen("postgres://", "postgresql://", 1);
        for url in [url.clone(), postgresql] {
            // Act
            let store = convene_store::connect(&url).await.unwrap();

            // Assert: the store works, and its tables are in that PostgreSQL database.
            assert_eq!(store.count_api_keys().await.unwrap(), 0);
            let tables: i64 = sqlx::query_scalar(
                "SELECT COUNT(*) FROM information_schema.tables \
                 WHERE table_name IN ('api_keys', 'instances', 'groups', 'schema_migrations')",
            )
            .fetch_one(&PgPool::connect(&url).await.unwrap())
            .await
            .unwrap();
            assert_eq!(tables, 4);
        }
    })
    .await;
}

#[tokio::test]
async fn a_postgres_url_reaches_the_postgres_driver_even_without_a_server() {
    // Arrange: a port that hangs up on every connection, so the driver fails at once (a refused connection would be
    // retried for the pool's 30 s acquire timeout).
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((conn, _)) = listener.accept().await {
            drop(conn);
        }
    });

    for scheme in ["postgres", "postgresql"] {
        // Act
        let message = expect_other(convene_store::connect(&format!("{scheme}://convene@127.0.0.1:{port}/x")).await);

        // Assert
        assert!(message.contains("error communicating with database"), "{scheme}: {message}");
    }
}

#[tokio::test]
async fn any_other_scheme_is_refused_naming_the_supported_ones() {
    for url in ["mysql://root:secret@localhost/convene", "convene.db", ""] {
        // Act
        let message = expect_other(convene_store::connect(url).await);

        // Assert
        for scheme in ["sqlite:", "postgres:", "postgresql:"] {
            assert!(message.contains(scheme), "{url}: {message}");
        }
        assert!(!message.contains("secret"), "the password is not repeated: {message}");
    }
}
