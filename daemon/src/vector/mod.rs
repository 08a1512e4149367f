//! Vector indexes: the local HNSW on hnsw_rs (`hnsw.rs`), exact search (`exact.rs`), and
//! pgvector queries (`pgvector.rs`). Ids are the store's embedding row ids; vectors are unit
//! length so inner product is cosine similarity.

mod exact;
mod hnsw;

pub use self::exact::ExactIndex;
pub use self::hnsw::{HnswIndex, HnswParams};

/// A nearest-neighbour hit: embedding id and cosine similarity (higher is better).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct VectorHit {
    pub id: i64,
    pub score: f32,
}
