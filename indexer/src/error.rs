//! The indexer's error type. Per-file problems are not errors: they become skip reasons or
//! diagnostics. Errors are for things that stop a whole walk (an unreadable root, a bad glob).

use std::path::PathBuf;

/// Result alias for the indexer.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Errors that stop an operation as a whole.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An I/O error with the path it happened on.
    #[error("{path}: {source}")]
    WithPath { path: PathBuf, source: std::io::Error },
    /// A glob in the include/exclude settings does not parse.
    #[error("invalid glob {glob:?}: {message}")]
    InvalidGlob { glob: String, message: String },
    /// The walk was asked to stop through its stop flag.
    #[error("stopped")]
    Stopped,
}
