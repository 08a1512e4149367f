//! The local HNSW's search structure: hnsw_rs's graph copied into flat arrays of slot numbers,
//! and the beam search over it.
//!
//! hnsw_rs builds the graph; searching it through hnsw_rs costs a cache miss per candidate in
//! its own bookkeeping (each point is a separate `Arc`, read to test whether it was visited)
//! before the miss of reading the candidate's vector. Here the links of layer 0 are one array
//! in CSR form (`offsets`, `links`), visits are marked in a per-thread array of generation
//! stamps (2 bytes per slot, reused across searches), and the next candidates' vectors are
//! prefetched while the current one is scored, so a search waits on memory far less.
//!
//! The structure knows nothing of vectors: the caller passes the distance and the prefetch as
//! closures over slots. It covers the slots `0..len()` of the graph it was copied from; newer
//! slots are the caller's to search (see `hnsw.rs`).

use std::cell::RefCell;
use std::cmp::{Ordering, Reverse};
use std::collections::{BinaryHeap, HashMap};

use hnsw_rs::prelude::Hnsw;
use rayon::prelude::*;

/// A slot with its distance to the query, ordered by distance then slot.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Scored {
    pub(crate) distance: f32,
    pub(crate) slot: u32,
}

impl PartialEq for Scored {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Scored {}

impl PartialOrd for Scored {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Scored {
    fn cmp(&self, other: &Self) -> Ordering {
        self.distance.total_cmp(&other.distance).then(self.slot.cmp(&other.slot))
    }
}

/// The graph's links by slot.
#[derive(Debug, Default)]
pub(crate) struct FlatGraph {
    /// Layer 0: the neighbours of slot `s` are `links[offsets[s]..offsets[s + 1]]`.
    offsets: Vec<u32>,
    links: Vec<u32>,
    /// Layers 1 and up (`upper[l - 1]`), which hold few points (a sixteenth of them at layer 1
    /// with `m = 16`), so a map per layer is enough.
    upper: Vec<HashMap<u32, Box<[u32]>>>,
    /// Where every search starts: a point of the top layer.
    entry: Option<u32>,
}

impl FlatGraph {
    /// Copies the links of `graph`, whose data ids must be the slots `0..get_nb_point()`.
    pub(crate) fn from_hnsw<T, D>(graph: &Hnsw<'_, T, D>) -> FlatGraph
    where
        T: Clone + Send + Sync,
        D: hnsw_rs::prelude::Distance<T> + Send + Sync,
    {
        let indexation = graph.get_point_indexation();
        // hnsw_rs's point iterator panics on an empty graph.
        if indexation.get_nb_point() == 0 {
            return FlatGraph::default();
        }
        let points: Vec<_> = indexation.into_iter().collect();
        let len = points.len();
        let top = usize::from(indexation.get_max_level_observed());
        // Reading a point's neighbours chases one pointer per link, so the copy runs in
        // parallel; each point yields (slot, level, its neighbours' slots per layer).
        let mut lists: Vec<(usize, usize, Vec<Vec<u32>>)> = points
            .par_iter()
            .map(|p| {
                let level = usize::from(p.get_point_id().0);
                let layers = p
                    .get_neighborhood_id()
                    .into_iter()
                    .take(level + 1)
                    .map(|layer| layer.iter().map(|n| slot_u32(n.d_id)).collect())
                    .collect();
                (p.get_origin_id(), level, layers)
            })
            .collect();
        drop(points);
        lists.sort_unstable_by_key(|(slot, _, _)| *slot);

        let mut flat = FlatGraph {
            offsets: Vec::with_capacity(len + 1),
            links: Vec::with_capacity(lists.iter().map(|l| l.2.first().map_or(0, Vec::len)).sum()),
            upper: (0..top).map(|_| HashMap::new()).collect(),
            entry: None,
        };
        flat.offsets.push(0);
        for (expected, (slot, level, layers)) in lists.into_iter().enumerate() {
            // Slots are dense by construction; a gap would mean the graph is not ours.
            debug_assert_eq!(slot, expected, "hnsw_rs data ids are the slots 0..n");
            let mut layers = layers.into_iter();
            flat.links.extend(layers.next().unwrap_or_default());
            flat.offsets.push(u32::try_from(flat.links.len()).unwrap_or(u32::MAX));
            for (layer, links) in layers.enumerate() {
                if let Some(map) = flat.upper.get_mut(layer) {
                    map.insert(slot_u32(slot), links.into_boxed_slice());
                }
            }
            if level == top && flat.entry.is_none() {
                flat.entry = Some(slot_u32(slot));
            }
        }
        flat
    }

    /// Number of slots covered: `0..len()`.
    pub(crate) fn len(&self) -> usize {
        self.offsets.len().saturating_sub(1)
    }

    /// Number of links on all layers.
    #[cfg(test)]
    pub(crate) fn link_count(&self) -> usize {
        self.links.len() + self.upper.iter().flat_map(|m| m.values()).map(|l| l.len()).sum::<usize>()
    }

    fn neighbours(&self, slot: u32) -> &[u32] {
        let s = slot as usize;
        match (self.offsets.get(s), self.offsets.get(s + 1)) {
            (Some(&a), Some(&b)) => self.links.get(a as usize..b as usize).unwrap_or_default(),
            _ => &[],
        }
    }

    /// The `ef` nearest slots found by a standard HNSW search: a greedy descent through the
    /// upper layers, then a best-first search of layer 0 keeping `ef` results. With `keep`,
    /// slots it rejects are walked through but never returned, and the search goes on until it
    /// has `ef` kept slots or runs out of graph. Unordered.
    ///
    /// `prefetch(slot)` is called on a neighbour before `distance` is asked for it, so the
    /// caller can start loading its vector.
    pub(crate) fn search(
        &self,
        ef: usize,
        distance: impl Fn(u32) -> f32,
        prefetch: impl Fn(u32),
        keep: Option<&dyn Fn(u32) -> bool>,
    ) -> Vec<Scored> {
        let Some(entry) = self.entry else {
            return Vec::new();
        };
        let ef = ef.max(1);
        let mut best = Scored { distance: distance(entry), slot: entry };
        for layer in self.upper.iter().rev() {
            loop {
                let from = best.slot;
                for &n in layer.get(&from).map(|l| &l[..]).unwrap_or_default() {
                    let d = distance(n);
                    if d < best.distance {
                        best = Scored { distance: d, slot: n };
                    }
                }
                if best.slot == from {
                    break;
                }
            }
        }

        VISITED.with_borrow_mut(|visited| {
            visited.begin(self.len());
            visited.insert(best.slot);
            let kept = |slot: u32| keep.is_none_or(|k| k(slot));
            let mut candidates = BinaryHeap::with_capacity(ef * 2);
            let mut results: BinaryHeap<Scored> = BinaryHeap::with_capacity(ef + 1);
            candidates.push(Reverse(best));
            if kept(best.slot) {
                results.push(best);
            }
            let mut fresh: Vec<u32> = Vec::with_capacity(64);
            while let Some(Reverse(c)) = candidates.pop() {
                let worst = results.peek().map_or(f32::INFINITY, |w| w.distance);
                if results.len() >= ef && c.distance > worst {
                    break;
                }
                fresh.clear();
                fresh.extend(self.neighbours(c.slot).iter().copied().filter(|&n| visited.insert(n)));
                // The first vector is loaded before any is scored; each later one while its
                // predecessor is scored.
                if let Some(&first) = fresh.first() {
                    prefetch(first);
                }
                for (i, &n) in fresh.iter().enumerate() {
                    if let Some(&next) = fresh.get(i + 1) {
                        prefetch(next);
                    }
                    let d = distance(n);
                    let worst = results.peek().map_or(f32::INFINITY, |w| w.distance);
                    if results.len() < ef || d < worst {
                        let s = Scored { distance: d, slot: n };
                        candidates.push(Reverse(s));
                        if kept(n) {
                            results.push(s);
                            if results.len() > ef {
                                results.pop();
                            }
                        }
                    }
                }
            }
            results.into_vec()
        })
    }
}

fn slot_u32(slot: usize) -> u32 {
    // The index never holds 4 billion vectors (12 TB of codes at 3072 dimensions).
    u32::try_from(slot).unwrap_or(u32::MAX)
}

thread_local! {
    /// The visited marks of this thread's searches, kept between them.
    static VISITED: RefCell<Visited> = RefCell::new(Visited::default());
}

/// Visited marks as generation stamps: a slot is visited in the current search when its stamp
/// equals `generation`, so starting a search is one increment, not a clear, and a mark is one
/// 2-byte load from an array that stays in cache (200 KB at 100k slots).
#[derive(Debug, Default)]
struct Visited {
    stamps: Vec<u16>,
    generation: u16,
}

impl Visited {
    fn begin(&mut self, slots: usize) {
        if self.stamps.len() < slots {
            self.stamps.resize(slots, 0);
        }
        self.generation = self.generation.wrapping_add(1);
        if self.generation == 0 {
            // Every 65,535 searches the stamps wrap around and are cleared once.
            self.stamps.fill(0);
            self.generation = 1;
        }
    }

    /// Marks `slot` visited; true when it was not yet. Slots beyond the array count as visited.
    fn insert(&mut self, slot: u32) -> bool {
        match self.stamps.get_mut(slot as usize) {
            Some(stamp) if *stamp != self.generation => {
                *stamp = self.generation;
                true
            }
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn visited_marks_reset_per_search_and_survive_wrapping() {
        let mut visited = Visited::default();
        for _ in 0..70_000 {
            visited.begin(10);
            assert!(visited.insert(3));
            assert!(!visited.insert(3));
            assert!(!visited.insert(10), "out of range counts as visited");
        }
    }
}
