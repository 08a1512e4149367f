//! Exact (brute-force) nearest-neighbour search.

/// Brute-force index.
#[derive(Debug, Default)]
pub struct ExactIndex {}
