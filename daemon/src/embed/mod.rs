//! Embedding providers behind one [`Embedder`] trait: `openai` (any OpenAI-compatible
//! `/v1/embeddings`, in `openai.rs`) and `builtin` (offline, deterministic, lexical, in
//! `builtin.rs`). The cache that keeps semdex from paying twice lives in `cache.rs`.

mod builtin;
mod cache;
mod openai;

use async_trait::async_trait;

pub use self::builtin::BuiltinEmbedder;
pub use self::cache::{EmbedStats, embed_pending};
pub use self::openai::{OpenAiConfig, OpenAiEmbedder};

/// Result alias for embedding calls.
pub type Result<T, E = EmbedError> = std::result::Result<T, E>;

/// Why an embedding call failed. Messages never contain the API key.
#[derive(Debug, thiserror::Error)]
pub enum EmbedError {
    /// The upstream rejected the request for good (400, 401, 403, 404, 422).
    #[error("embedding request rejected ({status}): {message}")]
    Rejected { status: u16, message: String },
    /// Retries were exhausted on retryable failures.
    #[error("embedding upstream failed after {attempts} attempts: {last}")]
    Exhausted { attempts: u32, last: String },
    /// The upstream answered with something that is not a valid batch.
    #[error("invalid embedding response: {0}")]
    InvalidResponse(String),
    /// The circuit breaker is open: the upstream is considered down until the cool-down ends.
    #[error("embedding upstream unavailable (circuit open)")]
    CircuitOpen,
    /// Configuration is unusable (no key for a provider that needs one, bad URL).
    #[error("embedding configuration: {0}")]
    Config(String),
}

/// Identity of an embedding space: the cache key's first three parts.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ModelSpec {
    pub provider: String,
    pub model: String,
    pub dimensions: usize,
}

/// Vectors for a batch of inputs, in input order, with the tokens the provider charged.
#[derive(Debug, Clone, PartialEq)]
pub struct Embedded {
    pub vectors: Vec<Vec<f32>>,
    /// From the API's `usage` when present, else estimated.
    pub tokens: u64,
}

/// Turns texts into vectors of [`ModelSpec::dimensions`] floats, unit length.
#[async_trait]
pub trait Embedder: Send + Sync + std::fmt::Debug {
    fn spec(&self) -> &ModelSpec;
    /// Largest number of inputs sent in one call by [`embed_pending`].
    fn max_batch_inputs(&self) -> usize;
    /// Largest number of tokens sent in one call.
    fn max_batch_tokens(&self) -> usize;
    /// Embeds a batch. Either every vector is returned and valid, or an error: never part.
    async fn embed(&self, inputs: &[String]) -> Result<Embedded>;
}

/// Scales a vector to unit length in place; returns false (and leaves it) when it is all zeros
/// or holds a non-finite value.
pub fn normalize(v: &mut [f32]) -> bool {
    let mut norm = 0.0f64;
    for x in v.iter() {
        if !x.is_finite() {
            return false;
        }
        norm += f64::from(*x) * f64::from(*x);
    }
    if norm == 0.0 {
        return false;
    }
    let inv = (1.0 / norm.sqrt()) as f32;
    v.iter_mut().for_each(|x| *x *= inv);
    true
}
