//! Vector indexes: the local HNSW on hnsw_rs (`hnsw.rs`, searched through `flat.rs`), exact
//! search (`exact.rs`), and pgvector queries (`pgvector.rs`). Ids are the store's embedding row
//! ids; vectors are unit length so inner product is cosine similarity.

mod exact;
mod flat;
mod hnsw;
mod local;

use std::path::PathBuf;

pub use self::exact::ExactIndex;
pub use self::hnsw::{Extent, HnswIndex, HnswParams, SearchPath, Walk};
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

/// Inner product of two equally long slices, with 256-bit vector instructions where the CPU has
/// them (see [`simd`]).
#[inline]
pub(crate) fn dot(a: &[f32], b: &[f32]) -> f32 {
    #[cfg(target_arch = "x86_64")]
    if simd::avx2() {
        return simd::dot_avx2(a, b);
    }
    dot_portable(a, b)
}

/// Inner product of two equally long `i8` slices, exact in `i32` (up to 133,000 dimensions:
/// each product is at most 127²); dispatched like [`dot`].
#[inline]
pub(crate) fn dot_i8(a: &[i8], b: &[i8]) -> i32 {
    #[cfg(target_arch = "x86_64")]
    if simd::avx2() {
        return simd::dot_i8_avx2(a, b);
    }
    dot_i8_portable(a, b)
}

/// Asks the CPU to start loading `bytes` into its caches (all levels), so a read that follows
/// soon finds them there. A hint only: it changes no value, and does nothing off x86-64.
#[inline(always)]
pub(crate) fn prefetch(bytes: &[i8]) {
    #[cfg(target_arch = "x86_64")]
    simd::prefetch(bytes);
    #[cfg(not(target_arch = "x86_64"))]
    let _ = bytes;
}

/// Run-time selection of the vector kernels' instruction set.
///
/// The workspace builds for baseline x86-64, whose vectors are 128 bits wide (SSE2). The same
/// portable kernels compiled with AVX2 work on 256 bits at a time and, for `i8`, sign-extend and
/// multiply-add in two instructions instead of about seven: the distance computations of an HNSW
/// walk run about 3x faster. The CPU is asked once (the standard library caches the answer) and
/// the AVX2 copies are called only when it has AVX2. The module also holds the prefetch hint of
/// the HNSW walk ([`prefetch`]), the other intrinsic that needs `unsafe`.
#[cfg(target_arch = "x86_64")]
#[allow(unsafe_code)]
mod simd {
    #[inline]
    pub(super) fn avx2() -> bool {
        std::arch::is_x86_feature_detected!("avx2")
    }

    /// [`super::dot_portable`] compiled for AVX2; only call after [`avx2`] returned true.
    pub(super) fn dot_avx2(a: &[f32], b: &[f32]) -> f32 {
        #[target_feature(enable = "avx2")]
        fn kernel(a: &[f32], b: &[f32]) -> f32 {
            super::dot_portable(a, b)
        }
        // SAFETY: `kernel` is safe code compiled with AVX2 enabled; it is only reached when the
        // CPU reported AVX2 support (every caller checks `avx2()` first).
        unsafe { kernel(a, b) }
    }

    /// [`super::dot_i8_portable`] compiled for AVX2; only call after [`avx2`] returned true.
    pub(super) fn dot_i8_avx2(a: &[i8], b: &[i8]) -> i32 {
        #[target_feature(enable = "avx2")]
        fn kernel(a: &[i8], b: &[i8]) -> i32 {
            super::dot_i8_portable(a, b)
        }
        // SAFETY: as in `dot_avx2`.
        unsafe { kernel(a, b) }
    }

    /// One prefetch instruction per 64-byte cache line of `bytes` (SSE, part of every x86-64).
    #[inline(always)]
    pub(super) fn prefetch(bytes: &[i8]) {
        use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
        for line in bytes.chunks(64) {
            // SAFETY: a prefetch reads nothing the program can observe and cannot fault, whatever
            // the address; here it is the start of a line inside a live slice anyway.
            unsafe { _mm_prefetch::<_MM_HINT_T0>(line.as_ptr()) }
        }
    }
}

/// The f32 kernel. Sixteen independent accumulators let the compiler keep several SIMD registers
/// busy: a plain `fold` is a serial chain of dependent float additions, which it may not reorder
/// or vectorise. `inline(always)` so each instruction-set copy gets its own compilation.
#[inline(always)]
fn dot_portable(a: &[f32], b: &[f32]) -> f32 {
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

/// The `i8` kernel, written like [`dot_portable`] with independent accumulators, so the
/// compiler turns it into widening multiply-adds (`pmaddwd` on x86-64) over whole registers.
#[inline(always)]
fn dot_i8_portable(a: &[i8], b: &[i8]) -> i32 {
    const LANES: usize = 32;
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let mut acc = [0i32; LANES];
    let (a_chunks, b_chunks) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    let (a_tail, b_tail) = (a_chunks.remainder(), b_chunks.remainder());
    for (x, y) in a_chunks.zip(b_chunks) {
        for i in 0..LANES {
            acc[i] += i32::from(x[i]) * i32::from(y[i]);
        }
    }
    let tail: i32 = a_tail.iter().zip(b_tail).map(|(x, y)| i32::from(*x) * i32::from(*y)).sum();
    acc.iter().sum::<i32>() + tail
}

/// Inner product of an f32 query with a vector stored as f16, converted a block at a time (with
/// F16C where the CPU has it, detected at run time).
#[inline]
pub(crate) fn dot_f16(query: &[f32], row: &[half::f16]) -> f32 {
    use half::slice::HalfFloatSliceExt;
    const BLOCK: usize = 256;
    let mut buf = [0.0f32; BLOCK];
    let mut total = 0.0f32;
    for (q, r) in query.chunks(BLOCK).zip(row.chunks(BLOCK)) {
        let b = &mut buf[..r.len()];
        r.convert_to_f32_slice(b);
        total += dot(q, b);
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integer_dot_matches_the_float_one() {
        let a: Vec<i8> = (0..3075).map(|i| ((i * 37) % 255 - 127) as i8).collect();
        let b: Vec<i8> = (0..3075).map(|i| ((i * 91 + 5) % 255 - 127) as i8).collect();
        let expected: i64 = a.iter().zip(&b).map(|(x, y)| i64::from(*x) * i64::from(*y)).sum();
        assert_eq!(i64::from(dot_i8(&a, &b)), expected);
        assert_eq!(dot_i8(&[127; 64], &[-127; 64]), -127 * 127 * 64);
        assert_eq!(dot_i8_portable(&a, &b), dot_i8(&a, &b), "every kernel agrees");
    }

    #[test]
    fn half_dot_is_close_to_the_f32_one() {
        let q: Vec<f32> = (0..1000).map(|i| ((i as f32) * 0.37).sin()).collect();
        let r: Vec<f32> = (0..1000).map(|i| ((i as f32) * 0.11).cos()).collect();
        let r16: Vec<half::f16> = r.iter().map(|x| half::f16::from_f32(*x)).collect();
        let exact = dot(&q, &r);
        assert!((dot_f16(&q, &r16) - exact).abs() < 1e-2 * exact.abs().max(1.0), "{exact}");
        assert!((dot_portable(&q, &r) - exact).abs() < 1e-4 * exact.abs().max(1.0), "{exact}");
    }
}
