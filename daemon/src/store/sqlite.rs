//! The embedded default store: SQLite (bundled, WAL) in the data directory.

/// SQLite-backed [`super::Store`].
#[derive(Debug)]
pub struct SqliteStore {}
