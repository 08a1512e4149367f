//! Vector indexes: the local HNSW on hnsw_rs (`hnsw.rs`), exact search (`exact.rs`), and
//! pgvector queries (`pgvector.rs`). Ids are the store's embedding row ids; vectors are unit
//! length so inner product is cosine similarity.

mod exact;
mod hnsw;
mod local;

use std::path::PathBuf;

pub use self::exact::ExactIndex;
pub use self::hnsw::{Extent, HnswIndex, HnswParams, SearchPath};
pub use self::local::{LocalVectorError, LocalVectors, SyncOutcome};

/// A nearest-neighbour hit: embedding id and cosine similarity (higher is better).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct VectorHit {
    pub id: i64,
    pub score: f32,
}

/// Result alias for vector index operations.
pub type Result<T, E = VectorError> = std::result::Result<T, E>;

/// Why a vector index operation failed. Bad vectors are errors, never panics: hnsw_rs asserts on
/// them, so they are rejected before they reach it.
#[derive(Debug, thiserror::Error)]
pub enum VectorError {
    /// The vector's length is not the index's dimension count.
    #[error("vector has {got} dimensions, the index has {expected}")]
    Dimensions { expected: usize, got: usize },
    /// The vector holds a NaN or an infinity.
    #[error("vector holds a non-finite value")]
    NotFinite,
    /// The vector is all zeros, so it has no direction to compare.
    #[error("vector is all zeros")]
    Zero,
    /// Index parameters out of range.
    #[error("invalid index parameters: {0}")]
    Params(String),
    /// Reading or writing index files failed.
    #[error("index file i/o on {path}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// hnsw_rs failed to write its dump.
    #[error("hnsw dump failed: {0}")]
    Dump(String),
}

/// Returns `v` scaled to unit length, computed in f32 as the indexes store it.
///
/// Rejects wrong lengths, NaN, infinities and all-zero vectors: hnsw_rs panics on them and they
/// have no meaningful nearest neighbours.
pub(crate) fn unit(v: &[f32], dims: usize) -> Result<Vec<f32>> {
    if v.len() != dims {
        return Err(VectorError::Dimensions { expected: dims, got: v.len() });
    }
    if v.iter().any(|x| !x.is_finite()) {
        return Err(VectorError::NotFinite);
    }
    // The sum of squares is accumulated in f64 so huge or tiny components neither overflow nor
    // underflow to zero before the square root.
    let norm = v.iter().map(|x| f64::from(*x) * f64::from(*x)).sum::<f64>().sqrt();
    if norm == 0.0 || !norm.is_finite() {
        return Err(VectorError::Zero);
    }
    let scaled: Vec<f32> = v.iter().map(|x| (f64::from(*x) / norm) as f32).collect();
    // Denormal inputs can still scale to all zeros in f32.
    if scaled.iter().all(|x| *x == 0.0) {
        return Err(VectorError::Zero);
    }
    Ok(scaled)
}

/// Inner product of two equally long slices.
///
/// Sixteen independent accumulators let the compiler keep several SIMD registers busy: a plain
/// `fold` is a serial chain of dependent float additions, which it may not reorder or vectorise.
#[inline]
pub(crate) fn dot(a: &[f32], b: &[f32]) -> f32 {
    const LANES: usize = 16;
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let mut acc = [0.0f32; LANES];
    let (a_chunks, b_chunks) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    let (a_tail, b_tail) = (a_chunks.remainder(), b_chunks.remainder());
    for (x, y) in a_chunks.zip(b_chunks) {
        for i in 0..LANES {
            acc[i] += x[i] * y[i];
        }
    }
    let mut tail = 0.0f32;
    for (x, y) in a_tail.iter().zip(b_tail) {
        tail += x * y;
    }
    // Pairwise reduction keeps the rounding error small and independent of the lane order.
    let mut width = LANES / 2;
    while width > 0 {
        for i in 0..width {
            acc[i] += acc[i + width];
        }
        width /= 2;
    }
    acc[0] + tail
}
