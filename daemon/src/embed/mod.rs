//! Embedding providers behind one [`Embedder`] trait: `openai` (any OpenAI-compatible
//! `/v1/embeddings`, in `openai.rs`) and `builtin` (offline, deterministic, lexical, in
//! `builtin.rs`). The cache that keeps semdex from paying twice lives in `cache.rs`.

mod builtin;
mod cache;
mod openai;

use async_trait::async_trait;

pub use self::builtin::BuiltinEmbedder;
pub use self::cache::{EmbedStats, QueryEmbedder, embed_pending};
pub use self::openai::{EncodingFormat, OpenAiConfig, OpenAiEmbedder, OpenAiMetrics, OverLongPolicy};

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
    /// Every vector came back with another number of dimensions than configured: the model and
    /// the configured dimensions disagree (or the server ignores `dimensions`).
    #[error("the model returned {got} dimensions, {expected} are configured")]
    DimensionMismatch { expected: usize, got: usize },
    /// A query's vector did not arrive within its deadline.
    #[error("embedding took longer than {0:?}")]
    DeadlineExceeded(std::time::Duration),
    /// The circuit breaker is open: the upstream is considered down until the cool-down ends.
    #[error("embedding upstream unavailable (circuit open)")]
    CircuitOpen,
    /// Configuration is unusable (no key for a provider that needs one, bad URL).
    #[error("embedding configuration: {0}")]
    Config(String),
    /// The embedding cache could not read pending chunks or store vectors.
    #[error("embedding cache: {0}")]
    Store(#[from] crate::store::StoreError),
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
    /// One per input: whether it was sent as is, split, or truncated for being over-long.
    pub adjustments: Vec<InputAdjustment>,
}

/// What happened to an input longer than the provider's per-input token limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputAdjustment {
    /// Sent as is.
    None,
    /// Sent in `parts` pieces whose vectors were averaged (weighted by tokens) and re-normalised.
    Split { parts: usize },
    /// Only its first `max_input_tokens` tokens were sent.
    Truncated,
}

/// The circuit breaker in front of an upstream, as search and `/readyz` report it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CircuitState {
    /// Calls go through.
    Closed,
    /// The upstream is considered down: calls fail fast with [`EmbedError::CircuitOpen`]
    /// until the cool-down ends.
    Open,
    /// The cool-down is over: the next call is a single probe that closes or re-opens it.
    HalfOpen,
}

impl CircuitState {
    pub fn name(self) -> &'static str {
        match self {
            CircuitState::Closed => "closed",
            CircuitState::Open => "open",
            CircuitState::HalfOpen => "half_open",
        }
    }
}

/// Turns texts into vectors of [`ModelSpec::dimensions`] floats, unit length.
#[async_trait]
pub trait Embedder: Send + Sync + std::fmt::Debug {
    fn spec(&self) -> &ModelSpec;
    /// Largest number of inputs sent in one call by [`embed_pending`].
    fn max_batch_inputs(&self) -> usize;
    /// Largest number of tokens sent in one call.
    fn max_batch_tokens(&self) -> usize;
    /// How many batches [`embed_pending`] keeps in flight.
    fn concurrency(&self) -> usize {
        1
    }
    /// The state of the circuit breaker in front of the upstream (always closed when there is
    /// no upstream).
    fn circuit_state(&self) -> CircuitState {
        CircuitState::Closed
    }
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

/// Packs items of the given token sizes into consecutive ranges of at most `max_inputs` items and
/// `max_tokens` tokens; an item larger than `max_tokens` goes alone.
pub(crate) fn pack(
    sizes: impl IntoIterator<Item = usize>,
    max_inputs: usize,
    max_tokens: usize,
) -> Vec<std::ops::Range<usize>> {
    let mut ranges = Vec::new();
    let (mut start, mut count, mut tokens) = (0usize, 0usize, 0usize);
    let mut end = 0usize;
    for (i, size) in sizes.into_iter().enumerate() {
        if count > 0 && (count >= max_inputs.max(1) || tokens.saturating_add(size) > max_tokens) {
            ranges.push(start..i);
            (start, count, tokens) = (i, 0, 0);
        }
        count += 1;
        tokens = tokens.saturating_add(size);
        end = i + 1;
    }
    if count > 0 {
        ranges.push(start..end);
    }
    ranges
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packs_by_count_and_tokens() {
        assert_eq!(pack([1, 1, 1, 1, 1], 2, 100), [0..2, 2..4, 4..5]);
        assert_eq!(pack([60, 60, 30, 200, 1], 10, 100), [0..1, 1..3, 3..4, 4..5]);
        assert!(pack(Vec::<usize>::new(), 2, 100).is_empty());
    }

    #[test]
    fn normalizes_or_refuses() {
        let mut v = [3.0, 4.0];
        assert!(normalize(&mut v));
        assert_eq!(v, [0.6, 0.8]);
        assert!(!normalize(&mut [0.0, 0.0]));
        assert!(!normalize(&mut [f32::NAN, 1.0]));
    }
}
