//! PostgreSQL-specific store tests, against the server `scripts/test.sh` provisions: pgvector,
//! migrations and the catalog, typed constraint errors. The backend-agnostic suite lives in
//! `store.rs`; this module also runs it against PostgreSQL.

use sqlx::Connection;

use crate::support;

#[tokio::test]
async fn test_server_has_pgvector() {
    let Some(url) = support::pg_database().await else { return };
    let mut conn = sqlx::PgConnection::connect(&url).await.expect("connect to the test database");
    let version: Option<String> =
        sqlx::query_scalar("SELECT default_version FROM pg_available_extensions WHERE name = 'vector'")
            .fetch_optional(&mut conn)
            .await
            .expect("query pg_available_extensions");
    assert!(version.is_some(), "the test server must offer pgvector");
}
