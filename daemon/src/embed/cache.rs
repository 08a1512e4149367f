//! The embedding cache: only content hashes without a vector are sent.

/// What one pass of [`embed_pending`] did.
#[derive(Debug, Clone, Default)]
pub struct EmbedStats {}

/// Embeds pending chunks.
pub fn embed_pending() {}
