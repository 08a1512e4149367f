//! The daemon's integration tests: one binary, one module per component, against real backends
//! (a SQLite file, a PostgreSQL with pgvector provisioned by the test command, HTTP servers on
//! 127.0.0.1).

#[path = "../support/mod.rs"]
mod support;

/// The store backend a test body runs on.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Backend {
    Sqlite,
    Postgres,
}

/// Runs an async test body `fn(Backend)` on SQLite and, when configured, on PostgreSQL (the body
/// returns early when no server is configured; see `support`).
macro_rules! both {
    ($name:ident, $body:ident) => {
        mod $name {
            #[tokio::test]
            async fn sqlite() {
                super::$body(crate::Backend::Sqlite).await;
            }
            #[tokio::test]
            async fn postgres() {
                super::$body(crate::Backend::Postgres).await;
            }
        }
    };
}

/// The HTTP API in-process: routes, the authorization matrix, path traversal, OpenAPI.
mod api;
/// Body size, query and top_k caps, load shedding, timeouts, CORS and request ids.
mod api_limits;
/// Backup and restore across the backends: round trips, damaged files, force.
mod backup;
/// Embedding providers and the cache, against misbehaving local HTTP servers.
mod embed;
/// Git hooks: install and chaining, notifications, delivery and the spool, accept on both backends.
mod hooks;
/// Search on the fixture project through the library: kind filter, fuzzy symbols.
mod search;
/// The store suite, run against SQLite and PostgreSQL.
mod store;
/// PostgreSQL-specific store tests and the suite's PostgreSQL runner.
mod store_pg;
/// Vector indexes: HNSW recall against exact search, persistence.
mod vector;
