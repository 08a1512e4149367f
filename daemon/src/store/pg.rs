//! The server-mode store: PostgreSQL with pgvector.

/// PostgreSQL-backed [`super::Store`].
#[derive(Debug)]
pub struct PgStore {}
