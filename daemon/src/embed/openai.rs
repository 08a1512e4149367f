//! The OpenAI-compatible HTTP embedder.

/// Settings for an OpenAI-compatible endpoint.
#[derive(Debug, Clone)]
pub struct OpenAiConfig {}

/// HTTP embedder.
#[derive(Debug)]
pub struct OpenAiEmbedder {}
