//! The builtin embedder: offline, deterministic, lexical (hashed code-aware token features).

/// Offline embedder.
#[derive(Debug)]
pub struct BuiltinEmbedder {}
