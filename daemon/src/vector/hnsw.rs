//! The local HNSW index on hnsw_rs.

/// HNSW build and search parameters.
#[derive(Debug, Clone)]
pub struct HnswParams {}

/// Local HNSW index.
#[derive(Debug)]
pub struct HnswIndex {}
