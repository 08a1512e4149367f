//! Exact (brute-force) nearest-neighbour search: the ground truth for the HNSW in tests and
//! benchmarks, and the fast path when a filter leaves only a few candidates.
//!
//! Vectors live in one contiguous `Vec<f32>` (row `slot` at `slot * dims`), so a scan streams
//! through memory and the dot product vectorises. Removal moves the last row into the hole, so
//! there are no tombstones and no gaps to skip.

use std::cmp::Ordering;
use std::collections::{BinaryHeap, HashMap, HashSet};

use crate::vector::{self, VectorHit};

/// Brute-force index of unit vectors keyed by embedding id.
#[derive(Debug, Default)]
pub struct ExactIndex {
    dims: usize,
    /// Row-major unit vectors, `ids.len() * dims` floats.
    data: Vec<f32>,
    /// Embedding id of each row.
    ids: Vec<i64>,
    /// Row of each embedding id.
    slot_of: HashMap<i64, usize>,
}

impl ExactIndex {
    /// An empty index of `dims`-dimensional vectors.
    pub fn new(dims: usize) -> Self {
        ExactIndex { dims, ..Default::default() }
    }

    pub fn dims(&self) -> usize {
        self.dims
    }

    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    pub fn contains(&self, id: i64) -> bool {
        self.slot_of.contains_key(&id)
    }

    /// Stores `v` normalised to unit length under `id`, replacing any vector the id had.
    pub fn insert(&mut self, id: i64, v: &[f32]) -> vector::Result<()> {
        let v = vector::unit(v, self.dims)?;
        match self.slot_of.get(&id) {
            Some(&slot) => self.row_mut(slot).copy_from_slice(&v),
            None => {
                self.slot_of.insert(id, self.ids.len());
                self.ids.push(id);
                self.data.extend_from_slice(&v);
            }
        }
        Ok(())
    }

    /// Removes `id`; returns whether it was present.
    pub fn remove(&mut self, id: i64) -> bool {
        let Some(slot) = self.slot_of.remove(&id) else {
            return false;
        };
        let last = self.ids.len() - 1;
        if slot != last {
            // Move the last row into the hole so storage stays dense.
            self.data.copy_within(last * self.dims..(last + 1) * self.dims, slot * self.dims);
            let moved = self.ids[last];
            self.ids[slot] = moved;
            self.slot_of.insert(moved, slot);
        }
        self.ids.truncate(last);
        self.data.truncate(last * self.dims);
        true
    }

    /// The stored (unit) vector of `id`.
    pub fn get(&self, id: i64) -> Option<&[f32]> {
        self.slot_of.get(&id).map(|&slot| self.row(slot))
    }

    /// The `k` stored vectors with the highest inner product with `query` (normalised first),
    /// best first, ties broken by the lower id. With `allowed`, only those ids are candidates.
    pub fn search(
        &self,
        query: &[f32],
        k: usize,
        allowed: Option<&HashSet<i64>>,
    ) -> vector::Result<Vec<VectorHit>> {
        let query = vector::unit(query, self.dims)?;
        let mut top = TopK::new(k);
        if k == 0 {
            return Ok(Vec::new());
        }
        match allowed {
            // A small allowed set is cheaper to look up than to test every row against.
            Some(allowed) if allowed.len() < self.ids.len() => {
                for &id in allowed {
                    if let Some(&slot) = self.slot_of.get(&id) {
                        top.push(id, vector::dot(&query, self.row(slot)));
                    }
                }
            }
            Some(allowed) => {
                for (slot, &id) in self.ids.iter().enumerate() {
                    if allowed.contains(&id) {
                        top.push(id, vector::dot(&query, self.row(slot)));
                    }
                }
            }
            None => {
                for (row, &id) in self.data.chunks_exact(self.dims.max(1)).zip(&self.ids) {
                    top.push(id, vector::dot(&query, row));
                }
            }
        }
        Ok(top.into_hits())
    }

    fn row(&self, slot: usize) -> &[f32] {
        &self.data[slot * self.dims..(slot + 1) * self.dims]
    }

    fn row_mut(&mut self, slot: usize) -> &mut [f32] {
        &mut self.data[slot * self.dims..(slot + 1) * self.dims]
    }
}

/// A hit ordered so that the *worse* hit is greater: lower score, then higher id. A max-heap of
/// these keeps the worst kept hit on top, ready to be evicted.
#[derive(Debug, Clone, Copy)]
struct Ranked {
    score: f32,
    id: i64,
}

impl Ord for Ranked {
    fn cmp(&self, other: &Self) -> Ordering {
        other.score.total_cmp(&self.score).then(self.id.cmp(&other.id))
    }
}

impl PartialOrd for Ranked {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for Ranked {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Ranked {}

/// Bounded top-k selection: O(n log k), deterministic for equal scores (lower id wins).
#[derive(Debug)]
pub(crate) struct TopK {
    k: usize,
    heap: BinaryHeap<Ranked>,
}

impl TopK {
    pub(crate) fn new(k: usize) -> Self {
        TopK { k, heap: BinaryHeap::with_capacity(k.saturating_add(1).min(4096)) }
    }

    pub(crate) fn push(&mut self, id: i64, score: f32) {
        if self.k == 0 {
            return;
        }
        let hit = Ranked { score, id };
        if self.heap.len() < self.k {
            self.heap.push(hit);
        } else if let Some(mut worst) = self.heap.peek_mut()
            && hit < *worst
        {
            *worst = hit;
        }
    }

    /// The kept hits, best first.
    pub(crate) fn into_hits(self) -> Vec<VectorHit> {
        self.heap.into_sorted_vec().into_iter().map(|r| VectorHit { id: r.id, score: r.score }).collect()
    }
}
