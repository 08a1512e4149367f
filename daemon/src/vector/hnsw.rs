//! The local HNSW index on hnsw_rs: one per embedding model, rebuilt from the store whenever its
//! files are missing, stale or corrupt (the database is the source of truth).
//!
//! # Ids
//!
//! hnsw_rs identifies points by a `usize` "data id". Ours are *slots*, assigned sequentially
//! (0, 1, 2, ...) on insert and never reused; `ids[slot]` is the store's embedding id and
//! `slot_of` maps a live embedding id back to its slot. hnsw_rs cannot delete, so a removed or
//! replaced id leaves its slot behind as a *tombstone*: still a routing node in the graph,
//! filtered out of every result. [`HnswIndex::needs_rebuild`] says when tombstones pass
//! [`HnswParams::rebuild_tombstone_ratio`]; the caller then swaps in [`HnswIndex::compacted`] or a
//! fresh [`HnswIndex::build`] from the store.
//!
//! # Distance: walk on 8-bit codes, rescore on f16
//!
//! Vectors are normalised in f32 on insert and on query, NaN, infinite and zero vectors are
//! rejected with an error. Each vector is then kept twice, in two compact forms:
//!
//! - **In the graph, as 8-bit codes** ([`quantize`]): each component divided by the vector's
//!   largest magnitude and rounded to -127..=127, after that scale in four bytes. The
//!   walk compares codes with `QuantDot` (`1 - scale_a * scale_b * integer dot`, clamped at 0):
//!   a search is bound by reading vectors from memory at random, and a code is a quarter of the
//!   f32 vector (3,076 bytes instead of 12,288 at 3072 dimensions), with an integer dot product
//!   the compiler turns into widening multiply-adds. The walk's error is small (the rounding
//!   step is 1/254 of the largest component) and only decides which `ef` candidates are found.
//! - **Beside the graph, as f16** (`Inner::rows`): every candidate the walk returns, and every
//!   vector an exact scan reads, is scored against the f32 query from this copy, so the order
//!   and the scores of the results are those of the vectors to f16 precision (relative error
//!   about 5e-4 per component), the precision pgvector's `halfvec` index works at.
//!
//! # The walk: hnsw_rs builds, semdex searches
//!
//! hnsw_rs builds the graph (construction quality is its own), but a search walks a copy:
//! after a build, a load or an insert batch the links are copied into slot-numbered arrays
//! ([`FlatGraph`](crate::vector::flat::FlatGraph), about 130 bytes per point at `m = 16`), and
//! the codes live in one contiguous array in slot order (`Inner::codes`) beside hnsw_rs's own
//! copy inside its points. The walk is memory-bound, and hnsw_rs's costs a cache miss per
//! candidate in its own bookkeeping; ours marks visits in a per-thread array and prefetches
//! the next candidate's code while scoring the current one, which about doubles the searches per
//! second at equal recall (`benches/results/vector.md`). Copying the links chases a pointer per
//! link, too much for every small insert: up to [`FLAT_DELTA_MAX`] slots inserted since
//! the last copy are scored one by one on every search, and a batch that takes the count past it
//! copies the graph again. [`Walk::HnswRs`] keeps hnsw_rs's walk available to compare.
//!
//! hnsw_rs's own `DistDot` is not used: without the `simdeez_f` feature it is a scalar fold, and
//! it asserts `1 - dot >= 0`, which rounding breaks for two identical unit vectors (duplicate
//! chunks are common in code), panicking inside an insert.
//!
//! # Filtered search
//!
//! When the allowed set is small (below [`HnswParams::exact_below`] ids or below
//! [`HnswParams::exact_fraction`] of the live points) the index scans exactly those vectors
//! instead of walking the graph: a selective filter makes hnsw_rs traverse most of the graph
//! anyway, and an exact scan of a few thousand vectors is both faster and perfect. Otherwise the
//! graph is walked for `ef` candidates. hnsw_rs's filtered walk does not stop early (about 4x
//! the cost of an unfiltered one at 50% selectivity on 20k points), so tombstones, and an
//! allowed set covering at least half the points, are filtered after an unfiltered walk (with
//! `ef` scaled up by the allowed share); only a narrower allowed set goes inside the walk. If
//! that leaves fewer than `k` hits while more exist, a 4x wider filtered walk follows, and
//! finally an exact scan, so `k` hits come back whenever `k` candidates exist.
//!
//! # Memory per vector
//!
//! The 8-bit code twice (`D + 4` bytes inside hnsw_rs's point, which its inserts read, and the
//! same again in `Inner::codes` for the flat walk) and the f16 row (`2 * D` bytes). On top of
//! them: the point itself (about 450 bytes: 16 per-layer neighbour lists and their lock), the
//! links (each a separate `Arc` allocation of about 48 bytes with the allocator's header, plus an
//! 8-byte pointer in a list whose capacity can reach twice its length; up to `2 * m` links on
//! layer 0), their flat copy (4 bytes a link and 4 a point), and our slot tables (about 40
//! bytes). Roughly `4 * D + 3 KiB` at `m = 16`: about 15 KB per 3072-dimension vector (see `benches/results/vector.md` for the measured figure).
//! Building or compacting also holds a transient copy of one batch ([`BUILD_BATCH`]).
//!
//! # Persistence
//!
//! [`HnswIndex::save`] writes hnsw_rs's own dump (`*.hnsw.graph`, `*.hnsw.data`) plus our slot
//! table (`*.ids`) and the f16 rows (`*.rows`) under a fresh generation-numbered name, fsyncs them, then publishes by
//! atomically renaming `manifest.json` into place (format version, generation, model, dims,
//! extent, blake3 and length of each file). Reloading the dump is a file read; rebuilding the
//! graph from raw vectors instead costs a full HNSW construction (minutes at 100k x 3072 on two
//! cores), which is why the dump is the format. [`HnswIndex::load`] checks the manifest against
//! what the caller expects and every checksum *before* handing the files to hnsw_rs, whose
//! loader asserts (or exits the process) on malformed input; anything off yields `None`.
//!
//! # Concurrency
//!
//! `HnswIndex` is `Send + Sync`. An internal `RwLock` lets searches run in parallel while
//! inserts, removals and loads of new points take it exclusively (hnsw_rs forbids searching
//! during a parallel insert). `save` holds the read lock, so searches continue during a save.

use std::collections::{HashMap, HashSet};
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, RwLock, RwLockReadGuard, RwLockWriteGuard};

use half::f16;
use half::slice::HalfFloatSliceExt;
use hnsw_rs::prelude::{AnnT, Distance, FilterT, Hnsw, HnswIo};
use serde::{Deserialize, Serialize};

use crate::vector::exact::TopK;
use crate::vector::flat::{FlatGraph, Scored};
use crate::vector::{self, VectorError, VectorHit};

/// hnsw_rs's fixed number of layers. Its dump writes this many neighbour lists per point but
/// reads back `max_layer` of them, so any other `max_layer` corrupts every dump.
const LAYERS: usize = 16;

/// Batches smaller than this are inserted on the calling thread: rayon's fan-out costs more
/// than it saves for a handful of points.
const PARALLEL_MIN: usize = 64;

/// An allowed set covering at least this share of the live points is applied after an
/// unfiltered walk rather than inside hnsw_rs's (about 4x slower) filtered one.
const POST_FILTER_SHARE: f64 = 0.5;

/// Points copied per batch when building or compacting, to bound the transient copy (25 MB at
/// 3072 dimensions) while keeping batches large enough for rayon to spread.
const BUILD_BATCH: usize = 2048;

const MANIFEST: &str = "manifest.json";
/// Version of our file set (manifest fields, id table layout, row file, the graph's code format).
const FORMAT_VERSION: u32 = 2;
/// The dump's writer. hnsw_rs's format is native-endian and not versioned beyond what its
/// loader asserts on, so a dump from another hnsw_rs release is rejected by name: change this
/// string whenever the hnsw_rs dependency changes.
const ENGINE: &str = "hnsw_rs 0.3.5";
const IDS_MAGIC: &[u8; 8] = b"SDXIDS01";
const ROWS_MAGIC: &[u8; 8] = b"SDXF1601";
/// Bytes appended to each 8-bit code: the f32 scale, little-endian.
const SCALE_BYTES: usize = 4;

/// Slots inserted since the graph was last copied into [`FlatGraph`] are scored one by one on
/// every search until there are more than this many; then the copy is redone (see
/// `benches/results/vector.md` for its cost). Scoring 256 codes costs a search about as much as
/// a few dozen graph hops.
const FLAT_DELTA_MAX: usize = 256;

/// HNSW build and search parameters.
#[derive(Debug, Clone, PartialEq)]
pub struct HnswParams {
    /// Links per point per layer (hnsw_rs's `max_nb_connection`; layer 0 keeps twice as many).
    pub m: usize,
    /// Candidate list size while building; higher builds slower and recalls better.
    pub ef_construction: usize,
    /// Candidate list size while searching when the caller does not pass one.
    pub ef_search: usize,
    /// Expected number of points: a capacity hint, not a limit.
    pub max_elements: usize,
    /// An allowed set with fewer ids than this is scanned exactly.
    pub exact_below: usize,
    /// An allowed set smaller than this fraction of the live points is scanned exactly.
    pub exact_fraction: f64,
    /// [`HnswIndex::needs_rebuild`] once tombstones exceed this fraction of all points.
    pub rebuild_tombstone_ratio: f64,
}

impl Default for HnswParams {
    fn default() -> Self {
        HnswParams {
            m: 16,
            ef_construction: 200,
            ef_search: 100,
            max_elements: 100_000,
            exact_below: 2_000,
            exact_fraction: 0.05,
            rebuild_tombstone_ratio: 0.2,
        }
    }
}

impl HnswParams {
    fn validate(&self) -> vector::Result<()> {
        // hnsw_rs exits the process above 256 and stores the value in a u8.
        if !(2..=255).contains(&self.m) {
            return Err(VectorError::Params(format!("m must be in 2..=255, got {}", self.m)));
        }
        if self.ef_construction == 0 {
            return Err(VectorError::Params("ef_construction must be positive".into()));
        }
        Ok(())
    }
}

/// How a search will run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SearchPath {
    /// An exact scan of the allowed ids.
    Exact,
    /// A walk of the HNSW graph.
    Graph,
}

/// What an index holds, comparable with the store's `embeddings_extent`: the number of live
/// embeddings and the highest live id (0 when empty).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Extent {
    pub count: i64,
    pub max_id: i64,
}

/// The 8-bit code of a unit vector: the scale (`max |x| / 127`, f32 little-endian) in
/// [`SCALE_BYTES`] bytes, then each component scaled by `127 / max |x|` and rounded. The scale
/// comes first so a distance reads the code front to back: the first touch of a vector is a
/// cache miss, and the hardware prefetcher follows a forward stream.
fn quantize(unit: &[f32]) -> Vec<i8> {
    let max = unit.iter().fold(0.0f32, |m, x| m.max(x.abs()));
    // Unit vectors have a non-zero component; the guard keeps a zero vector finite anyway.
    let (scale, inverse) = if max > 0.0 { (max / 127.0, 127.0 / max) } else { (0.0, 0.0) };
    let mut code = Vec::with_capacity(SCALE_BYTES + unit.len());
    code.extend(scale.to_le_bytes().map(|b| b as i8));
    code.extend(unit.iter().map(|x| (x * inverse).round().clamp(-127.0, 127.0) as i8));
    code
}

/// Splits a code into its scale and its components.
fn split_code(code: &[i8]) -> (&[i8], f32) {
    match code.split_first_chunk::<SCALE_BYTES>() {
        Some((scale, components)) => (components, f32::from_le_bytes(scale.map(|b| b as u8))),
        None => (&[], 0.0),
    }
}

/// `1 - dot` between two [`quantize`]d unit vectors, clamped at 0 so rounding never yields a
/// negative distance (hnsw_rs asserts distances are non-negative). Its type name is recorded in
/// dumps, so renaming or moving it makes old dumps fail to load, which then triggers a rebuild.
#[derive(Debug, Default, Clone, Copy)]
struct QuantDot;

impl Distance<i8> for QuantDot {
    fn eval(&self, va: &[i8], vb: &[i8]) -> f32 {
        let ((a, scale_a), (b, scale_b)) = (split_code(va), split_code(vb));
        let dot = vector::dot_i8(a, b) as f32 * scale_a * scale_b;
        // `max` also maps a NaN to 0, though NaN vectors never get in.
        (1.0 - dot).max(0.0)
    }
}

type Graph = Hnsw<'static, i8, QuantDot>;

/// Which graph walk a search uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Walk {
    /// semdex's own walk over [`FlatGraph`] and the contiguous codes: the default.
    Flat,
    /// hnsw_rs's `search_filter`, kept to compare against (`benches/benches/vector.rs`).
    HnswRs,
}

/// Everything behind the lock.
struct Inner {
    graph: Graph,
    dims: usize,
    /// The f16 unit vector of each slot, `dims` values per slot, in slot order.
    rows: Vec<f16>,
    /// The 8-bit code of each slot ([`quantize`]), `dims + SCALE_BYTES` values per slot, in
    /// slot order: the flat walk's copy (hnsw_rs keeps its own inside its points for
    /// construction, each in a separate allocation).
    codes: Vec<i8>,
    /// The graph's links as of its last copy; slots from `flat.len()` on are not in it yet.
    flat: FlatGraph,
    /// Embedding id of each slot.
    ids: Vec<i64>,
    /// Whether each slot is live (not a tombstone).
    live: Vec<bool>,
    /// Slot of each live embedding id.
    slot_of: HashMap<i64, usize>,
    tombstones: usize,
}

impl Inner {
    fn new(params: &HnswParams, dims: usize) -> Self {
        Inner {
            graph: Hnsw::new(params.m, params.max_elements.max(1), LAYERS, params.ef_construction, QuantDot),
            dims,
            rows: Vec::new(),
            codes: Vec::new(),
            flat: FlatGraph::default(),
            ids: Vec::new(),
            live: Vec::new(),
            slot_of: HashMap::new(),
            tombstones: 0,
        }
    }

    fn is_live(&self, slot: usize) -> bool {
        self.live.get(slot).copied().unwrap_or(false)
    }

    /// Number of slots, live and tombstoned.
    fn slots(&self) -> usize {
        self.ids.len()
    }

    /// The f16 row of `slot`.
    fn row(&self, slot: usize) -> Option<&[f16]> {
        self.rows.get(slot * self.dims..(slot + 1) * self.dims)
    }

    /// The 8-bit code of `slot`.
    fn code(&self, slot: usize) -> &[i8] {
        let len = self.dims + SCALE_BYTES;
        self.codes.get(slot * len..(slot + 1) * len).unwrap_or_default()
    }

    /// Copies hnsw_rs's graph into [`FlatGraph`] again when more than [`FLAT_DELTA_MAX`] slots
    /// are missing from the copy, or always with `force`.
    fn refresh_flat(&mut self, force: bool) {
        let behind = self.slots() - self.flat.len().min(self.slots());
        if behind > 0 && (force || behind > FLAT_DELTA_MAX) {
            let started = std::time::Instant::now();
            self.flat = FlatGraph::from_hnsw(&self.graph);
            tracing::debug!(slots = self.slots(), elapsed = ?started.elapsed(), "hnsw graph flattened");
        }
    }

    /// The score of `slot` against a unit query: the inner product with its f16 row, clamped to
    /// the cosine's range (the f16 rounding can take a vector's product with itself just past 1).
    fn score(&self, query: &[f32], slot: usize) -> Option<f32> {
        self.row(slot).map(|row| vector::dot_f16(query, row).clamp(-1.0, 1.0))
    }

    /// Inserts already normalised vectors with distinct ids; a live id is tombstoned first.
    fn insert_unit(&mut self, batch: Vec<(i64, Vec<f32>)>) {
        if batch.is_empty() {
            return;
        }
        for (id, _) in &batch {
            if let Some(slot) = self.slot_of.remove(id) {
                self.live[slot] = false;
                self.tombstones += 1;
            }
        }
        let base = self.slots();
        let codes: Vec<Vec<i8>> = batch.iter().map(|(_, v)| quantize(v)).collect();
        self.codes.reserve(codes.len() * (self.dims + SCALE_BYTES));
        for code in &codes {
            self.codes.extend_from_slice(code);
        }
        let data: Vec<(&[i8], usize)> =
            codes.iter().enumerate().map(|(i, c)| (c.as_slice(), base + i)).collect();
        if data.len() >= PARALLEL_MIN {
            self.graph.parallel_insert_slice(&data);
        } else {
            for item in &data {
                self.graph.insert_slice(*item);
            }
        }
        drop(data);
        self.rows.reserve(batch.len() * self.dims);
        for (i, (id, v)) in batch.iter().enumerate() {
            let start = self.rows.len();
            self.rows.resize(start + self.dims, f16::ZERO);
            self.rows[start..].convert_from_f32_slice(v);
            self.ids.push(*id);
            self.live.push(true);
            self.slot_of.insert(*id, base + i);
        }
    }

    fn extent(&self) -> Extent {
        Extent { count: self.slot_of.len() as i64, max_id: self.slot_of.keys().copied().max().unwrap_or(0) }
    }

    /// Exact top-k over `allowed` (or every live point).
    fn exact(&self, query: &[f32], k: usize, allowed: Option<&HashSet<i64>>) -> Vec<VectorHit> {
        let mut top = TopK::new(k);
        match allowed {
            Some(allowed) => {
                for &id in allowed {
                    if let Some(&slot) = self.slot_of.get(&id)
                        && let Some(score) = self.score(query, slot)
                    {
                        top.push(id, score);
                    }
                }
            }
            None => {
                for &slot in self.slot_of.values() {
                    if let Some(score) = self.score(query, slot) {
                        top.push(self.ids[slot], score);
                    }
                }
            }
        }
        top.into_hits()
    }

    /// One graph walk returning at most `k` live, allowed hits, rescored from the f16 rows so
    /// order and scores match the exact path bit for bit. With `filter_inside`, the allowed set
    /// filters the walk itself (rejected points are walked through, not returned); otherwise
    /// everything is filtered afterwards.
    #[allow(clippy::too_many_arguments)]
    fn walk(
        &self,
        query: &[f32],
        code: &[i8],
        k: usize,
        ef: usize,
        allowed: Option<&HashSet<i64>>,
        filter_inside: bool,
        how: Walk,
    ) -> Vec<VectorHit> {
        let keep = |slot: &usize| {
            self.is_live(*slot)
                && allowed.is_none_or(|a| self.ids.get(*slot).is_some_and(|id| a.contains(id)))
        };
        // Asking for `ef` results costs nothing extra: the walk fills an `ef`-wide list anyway,
        // and the surplus makes up for tombstones and filtered-out ids among the nearest.
        let slots: Vec<usize> = match how {
            Walk::Flat => self.flat_walk(code, ef, filter_inside.then_some(&keep)),
            Walk::HnswRs => {
                let filter: Option<&dyn FilterT> = if filter_inside { Some(&keep) } else { None };
                self.graph.search_filter(code, ef, ef, filter).into_iter().map(|n| n.d_id).collect()
            }
        };
        let mut top = TopK::new(k);
        for slot in slots {
            if keep(&slot)
                && let Some(score) = self.score(query, slot)
            {
                top.push(self.ids[slot], score);
            }
        }
        top.into_hits()
    }

    /// The `ef` slots nearest to `code` by [`QuantDot`] that the walk of [`FlatGraph`] finds,
    /// with the slots inserted since its last copy scored one by one, nearest first.
    fn flat_walk(&self, code: &[i8], ef: usize, keep: Option<&dyn Fn(&usize) -> bool>) -> Vec<usize> {
        let distance = |slot: u32| QuantDot.eval(code, self.code(slot as usize));
        let prefetch = |slot: u32| vector::prefetch(self.code(slot as usize));
        let keep_slot = keep.map(|k| move |slot: u32| k(&(slot as usize)));
        let keep_dyn: Option<&dyn Fn(u32) -> bool> = keep_slot.as_ref().map(|k| k as &dyn Fn(u32) -> bool);
        let mut found = self.flat.search(ef, distance, prefetch, keep_dyn);
        let covered = self.flat.len().min(self.slots());
        if covered < self.slots() {
            for slot in covered..self.slots() {
                if keep.is_none_or(|k| k(&slot)) {
                    found.push(Scored { distance: QuantDot.eval(code, self.code(slot)), slot: slot as u32 });
                }
            }
            found.sort_unstable();
            found.truncate(ef);
        }
        found.into_iter().map(|s| s.slot as usize).collect()
    }
}

/// Local HNSW index of one embedding model's vectors.
pub struct HnswIndex {
    model: String,
    dims: usize,
    params: HnswParams,
    inner: RwLock<Inner>,
    /// Generation of the last save or load; the next save uses a higher one.
    generation: Mutex<u64>,
}

impl std::fmt::Debug for HnswIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let inner = self.read();
        f.debug_struct("HnswIndex")
            .field("model", &self.model)
            .field("dims", &self.dims)
            .field("params", &self.params)
            .field("live", &inner.slot_of.len())
            .field("tombstones", &inner.tombstones)
            .finish()
    }
}

impl HnswIndex {
    /// An empty index for `model` (any stable key naming the embedding space) of `dims` floats.
    pub fn new(model: impl Into<String>, dims: usize, params: HnswParams) -> vector::Result<Self> {
        params.validate()?;
        if dims == 0 {
            return Err(VectorError::Params("dims must be positive".into()));
        }
        let inner = Inner::new(&params, dims);
        Ok(HnswIndex {
            model: model.into(),
            dims,
            params,
            inner: RwLock::new(inner),
            generation: Mutex::new(0),
        })
    }

    /// A new index of `items` (the rebuild path: feed it the store's embeddings). Inserted in
    /// parallel batches; a bad vector fails the build.
    pub fn build<I, V>(
        model: impl Into<String>,
        dims: usize,
        params: HnswParams,
        items: I,
    ) -> vector::Result<Self>
    where
        I: IntoIterator<Item = (i64, V)>,
        V: AsRef<[f32]>,
    {
        let index = HnswIndex::new(model, dims, params)?;
        let mut batch = Vec::with_capacity(BUILD_BATCH);
        for item in items {
            batch.push(item);
            if batch.len() == BUILD_BATCH {
                index.insert_units(batch.drain(..), false)?;
            }
        }
        index.insert_units(batch, false)?;
        index.write().refresh_flat(true);
        Ok(index)
    }

    pub fn model(&self) -> &str {
        &self.model
    }

    pub fn dims(&self) -> usize {
        self.dims
    }

    pub fn params(&self) -> &HnswParams {
        &self.params
    }

    /// Number of live vectors.
    pub fn len(&self) -> usize {
        self.read().slot_of.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn contains(&self, id: i64) -> bool {
        self.read().slot_of.contains_key(&id)
    }

    /// Number of tombstoned slots still in the graph.
    pub fn tombstones(&self) -> usize {
        self.read().tombstones
    }

    /// Live count and highest live id, to compare with the store's extent.
    pub fn extent(&self) -> Extent {
        self.read().extent()
    }

    /// Generation of the last save or load (0 for an index never saved).
    pub fn generation(&self) -> u64 {
        *self.generation.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether tombstones have passed the rebuild threshold.
    pub fn needs_rebuild(&self) -> bool {
        let inner = self.read();
        inner.tombstones > 0
            && inner.tombstones as f64 > self.params.rebuild_tombstone_ratio * inner.slots() as f64
    }

    /// Inserts `v` (normalised) under `id`, replacing the id's previous vector if any.
    pub fn insert(&self, id: i64, v: &[f32]) -> vector::Result<()> {
        self.insert_batch([(id, v)])
    }

    /// Inserts many vectors at once (in parallel past a few dozen). Either every vector is valid
    /// and all are inserted, or nothing changes. Within the batch the last vector of an id wins.
    pub fn insert_batch<I, V>(&self, items: I) -> vector::Result<()>
    where
        I: IntoIterator<Item = (i64, V)>,
        V: AsRef<[f32]>,
    {
        self.insert_units(items, true)
    }

    /// [`HnswIndex::insert_batch`]; `refresh` brings the flat copy of the graph up to date when
    /// it has fallen too far behind (a build does it once at the end instead).
    fn insert_units<I, V>(&self, items: I, refresh: bool) -> vector::Result<()>
    where
        I: IntoIterator<Item = (i64, V)>,
        V: AsRef<[f32]>,
    {
        let mut batch = items
            .into_iter()
            .map(|(id, v)| Ok((id, vector::unit(v.as_ref(), self.dims)?)))
            .collect::<vector::Result<Vec<_>>>()?;
        dedup_last_wins(&mut batch);
        let mut inner = self.write();
        inner.insert_unit(batch);
        if refresh {
            inner.refresh_flat(false);
        }
        Ok(())
    }

    /// Tombstones `id`; returns whether it was live.
    pub fn remove(&self, id: i64) -> bool {
        let mut inner = self.write();
        match inner.slot_of.remove(&id) {
            Some(slot) => {
                inner.live[slot] = false;
                inner.tombstones += 1;
                true
            }
            None => false,
        }
    }

    /// Which path [`HnswIndex::search`] takes for this allowed set.
    pub fn plan(&self, allowed: Option<&HashSet<i64>>) -> SearchPath {
        self.plan_for(allowed, self.read().slot_of.len())
    }

    fn plan_for(&self, allowed: Option<&HashSet<i64>>, live: usize) -> SearchPath {
        match allowed {
            Some(a) if a.len() < self.params.exact_below => SearchPath::Exact,
            Some(a) if (a.len() as f64) < self.params.exact_fraction * live as f64 => SearchPath::Exact,
            _ => SearchPath::Graph,
        }
    }

    /// The `k` nearest live vectors to `query` (normalised first) by cosine similarity, best
    /// first, ties broken by the lower id. `ef` defaults to [`HnswParams::ef_search`] and is
    /// raised to `k`; `allowed` restricts the candidates to those embedding ids.
    pub fn search(
        &self,
        query: &[f32],
        k: usize,
        ef: Option<usize>,
        allowed: Option<&HashSet<i64>>,
    ) -> vector::Result<Vec<VectorHit>> {
        self.search_with(query, k, ef, allowed, Walk::Flat)
    }

    /// [`HnswIndex::search`] with a choice of graph walk, to compare semdex's own walk with
    /// hnsw_rs's on the same graph.
    pub fn search_with(
        &self,
        query: &[f32],
        k: usize,
        ef: Option<usize>,
        allowed: Option<&HashSet<i64>>,
        how: Walk,
    ) -> vector::Result<Vec<VectorHit>> {
        let query = vector::unit(query, self.dims)?;
        let inner = self.read();
        if k == 0 || inner.slot_of.is_empty() {
            return Ok(Vec::new());
        }
        if self.plan_for(allowed, inner.slot_of.len()) == SearchPath::Exact {
            return Ok(inner.exact(&query, k, allowed));
        }
        let live = inner.slot_of.len();
        let available = || match allowed {
            Some(a) => a.iter().filter(|id| inner.slot_of.contains_key(id)).count(),
            None => live,
        };
        // ef below 2 lets hnsw_rs's filtered walk empty its result list and then panic on it.
        let ef = ef.unwrap_or(self.params.ef_search).max(k).max(2);
        // Tombstones are always dropped after the walk: hnsw_rs's filtered walk does not stop
        // early, so filtering them inside doubled query time for even one tombstone. A broad
        // allowed set is handled the same way with `ef` scaled by its share of the points; a
        // narrower one must filter inside the walk or the nearest would all be filtered out.
        let share = allowed.map_or(1.0, |a| (a.len() as f64 / live as f64).min(1.0));
        let post_filter = share >= POST_FILTER_SHARE;
        let first_ef = if post_filter { (ef as f64 / share).ceil() as usize } else { ef };
        let code = quantize(&query);
        let hits = inner.walk(&query, &code, k, first_ef, allowed, !post_filter, how);
        if hits.len() >= k || hits.len() >= available() {
            return Ok(hits);
        }
        // Tombstones, or allowed ids missing from the index, cut the candidates short: walk
        // wider, filtering inside when there is an allowed set, then be exact.
        let wider = ef.saturating_mul(4).min(inner.slots().max(ef));
        let hits = inner.walk(&query, &code, k, wider, allowed, allowed.is_some(), how);
        if hits.len() >= k || hits.len() >= available() {
            return Ok(hits);
        }
        Ok(inner.exact(&query, k, allowed))
    }

    /// A new index of this one's live vectors, without tombstones. Searches may continue on
    /// this index meanwhile; inserts wait. The caller swaps the result in.
    pub fn compacted(&self) -> vector::Result<HnswIndex> {
        let fresh = HnswIndex::new(self.model.clone(), self.dims, self.params.clone())?;
        let inner = self.read();
        let mut slots: Vec<usize> = inner.slot_of.values().copied().collect();
        // Slot order is insertion order, so the rebuilt graph sees the points in the same order.
        slots.sort_unstable();
        for chunk in slots.chunks(BUILD_BATCH) {
            // The f16 rows convert back to f32 and again to the same f16, so scores stay
            // bit-identical.
            let batch: Vec<(i64, Vec<f32>)> = chunk
                .iter()
                .filter_map(|&slot| inner.row(slot).map(|r| (inner.ids[slot], r.to_f32_vec())))
                .collect();
            fresh.write().insert_unit(batch);
        }
        fresh.write().refresh_flat(true);
        *fresh.generation.lock().unwrap_or_else(|e| e.into_inner()) = self.generation();
        Ok(fresh)
    }

    /// Writes the index to `dir` (created if needed) and publishes it atomically; returns the new
    /// generation. Files of older generations are removed afterwards. One writer per directory:
    /// saves of this index are serialised, other processes must not save into the same `dir`.
    pub fn save(&self, dir: &Path) -> vector::Result<u64> {
        let mut generation = self.generation.lock().unwrap_or_else(|e| e.into_inner());
        fs::create_dir_all(dir).map_err(io_err(dir))?;
        // Another process (a CLI run beside the daemon) may publish into the same folder: one
        // writer at a time, or one's clean-up deletes the other's files mid-write.
        let _lock = dir_lock(dir, true)?;
        let on_disk = read_manifest(dir).ok().flatten().map_or(0, |m| m.generation);
        let next = on_disk.max(*generation) + 1;
        let base = format!("g{next}-{:08x}", fastrand::u32(..));

        let inner = self.read();
        let mut names = Vec::new();
        if inner.slots() > 0 {
            let graph = format!("{base}.hnsw.graph");
            let data = format!("{base}.hnsw.data");
            // hnsw_rs panics when it cannot create its files; creating them first turns the
            // common causes (permissions, a full disk) into errors.
            for name in [&graph, &data] {
                let path = dir.join(name);
                File::create(&path).map_err(io_err(&path))?;
            }
            let dumped = catch_unwind(AssertUnwindSafe(|| inner.graph.file_dump(dir, &base)));
            match dumped {
                Ok(Ok(name)) if name == base => {}
                Ok(Ok(name)) => return Err(VectorError::Dump(format!("dumped to {name}, not {base}"))),
                Ok(Err(e)) => return Err(VectorError::Dump(format!("{e:#}"))),
                Err(_) => return Err(VectorError::Dump("hnsw_rs panicked while dumping".into())),
            }
            names.push(graph);
            names.push(data);
        }
        let ids_name = format!("{base}.ids");
        write_ids(&dir.join(&ids_name), &inner.ids, &inner.live)?;
        names.push(ids_name);
        let rows_name = format!("{base}.rows");
        write_rows(&dir.join(&rows_name), self.dims, &inner.rows)?;
        names.push(rows_name);

        let mut files = Vec::new();
        for name in names {
            let path = dir.join(&name);
            let (len, blake3) = sync_and_hash(&path)?;
            files.push(FileEntry { name, len, blake3 });
        }
        let extent = inner.extent();
        let manifest = Manifest {
            format: FORMAT_VERSION,
            engine: ENGINE.to_string(),
            generation: next,
            model: self.model.clone(),
            dims: self.dims,
            count: extent.count,
            max_id: extent.max_id,
            points: inner.slots(),
            m: self.params.m,
            ef_construction: self.params.ef_construction,
            files,
        };
        drop(inner);
        publish_manifest(dir, &manifest)?;
        *generation = next;
        remove_stale_files(dir, &manifest);
        Ok(next)
    }

    /// The extent of the index published in `dir`, if any, read from its manifest alone (the
    /// files are checked when it is loaded).
    pub fn published_extent(dir: &Path) -> Option<Extent> {
        if !dir.exists() {
            return None;
        }
        let _lock = dir_lock(dir, false).ok()?;
        read_manifest(dir).ok().flatten().map(|m| m.extent())
    }

    /// Loads the index published in `dir`, or `None` when there is nothing usable: no manifest,
    /// a corrupt or truncated file, a checksum mismatch, another model, dims or build parameters
    /// (`m`, `ef_construction`), or an extent other than `expected` (stale). `None` means
    /// "rebuild from the store"; `Err` is reserved for I/O failures such as permissions.
    pub fn load(
        dir: &Path,
        model: &str,
        dims: usize,
        params: HnswParams,
        expected: Extent,
    ) -> vector::Result<Option<HnswIndex>> {
        params.validate()?;
        let _lock = if dir.exists() { Some(dir_lock(dir, false)?) } else { None };
        let manifest = match read_manifest(dir)? {
            Some(m) => m,
            None => return Ok(None),
        };
        let reject = |why: &str| {
            tracing::info!(dir = %dir.display(), generation = manifest.generation, why, "hnsw index not loaded");
            Ok(None)
        };
        if manifest.format != FORMAT_VERSION || manifest.engine != ENGINE {
            return reject("format version");
        }
        if manifest.model != model || manifest.dims != dims {
            return reject("model or dims differ");
        }
        if manifest.m != params.m || manifest.ef_construction != params.ef_construction {
            return reject("build parameters differ");
        }
        if manifest.extent() != expected {
            return reject("stale extent");
        }
        for file in &manifest.files {
            if !is_our_file(&file.name) {
                return reject("bad file name");
            }
            let path = dir.join(&file.name);
            match hash_file(&path) {
                Ok((len, blake3)) if len == file.len && blake3 == file.blake3 => {}
                Ok(_) => return reject("checksum mismatch"),
                Err(e) if e.kind() == io::ErrorKind::NotFound => return reject("file missing"),
                Err(e) => return Err(VectorError::Io { path, source: e }),
            }
        }
        let names: Vec<&str> = manifest.files.iter().map(|f| f.name.as_str()).collect();
        let Some(ids_name) = names.iter().find(|n| n.ends_with(".ids")) else {
            return reject("no id table");
        };
        let ids_path = dir.join(ids_name);
        let Some((ids, live)) = read_ids(&ids_path)? else {
            return reject("malformed id table");
        };
        if ids.len() != manifest.points {
            return reject("id table size");
        }
        let Some(rows_name) = names.iter().find(|n| n.ends_with(".rows")) else {
            return reject("no row file");
        };
        let rows_path = dir.join(rows_name);
        let Some(rows) = read_rows(&rows_path, dims)? else {
            return reject("malformed row file");
        };
        if rows.len() != ids.len() * dims {
            return reject("row file size");
        }

        let index = HnswIndex::new(model, dims, params)?;
        {
            let mut inner = index.write();
            if !ids.is_empty() {
                let Some(base) = names.iter().find_map(|n| n.strip_suffix(".hnsw.graph")) else {
                    return reject("no graph file");
                };
                if !names.contains(&format!("{base}.hnsw.data").as_str()) {
                    return reject("no data file");
                }
                let Some(mut graph) = load_graph(dir, base) else {
                    return reject("hnsw_rs could not load the dump");
                };
                if graph.get_nb_point() != ids.len()
                    || graph.get_point_indexation().get_data_dimension() != dims + SCALE_BYTES
                {
                    return reject("graph does not match the id table");
                }
                // hnsw_rs's loader turns candidate extension on, unlike `Hnsw::new`; later
                // inserts should build the graph the same way as before the save.
                graph.set_extend_candidates(false);
                let Some(codes) = codes_of(&graph, dims + SCALE_BYTES) else {
                    return reject("graph points are not the slots");
                };
                inner.graph = graph;
                inner.codes = codes;
                inner.refresh_flat(true);
            }
            inner.rows = rows;
            for (slot, (&id, &is_live)) in ids.iter().zip(&live).enumerate() {
                if is_live {
                    if inner.slot_of.insert(id, slot).is_some() {
                        return reject("duplicate live id");
                    }
                } else {
                    inner.tombstones += 1;
                }
            }
            inner.ids = ids;
            inner.live = live;
            if inner.extent() != manifest.extent() {
                return reject("extent does not match the id table");
            }
        }
        *index.generation.lock().unwrap_or_else(|e| e.into_inner()) = manifest.generation;
        Ok(Some(index))
    }

    fn read(&self) -> RwLockReadGuard<'_, Inner> {
        // A panic while holding the lock cannot leave `Inner` half-updated in a way searches
        // would trip on (slots are pushed before they are referenced), so poisoning is ignored.
        self.inner.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, Inner> {
        self.inner.write().unwrap_or_else(|e| e.into_inner())
    }
}

/// Keeps only the last occurrence of each id, in the original order otherwise.
fn dedup_last_wins(batch: &mut Vec<(i64, Vec<f32>)>) {
    let mut seen = HashSet::with_capacity(batch.len());
    let mut keep: Vec<bool> = batch.iter().rev().map(|(id, _)| seen.insert(*id)).collect();
    keep.reverse();
    let mut flags = keep.into_iter();
    batch.retain(|_| flags.next().unwrap_or(true));
}

/// The codes of `graph`'s points in slot order, `len` values each; `None` unless the points'
/// data ids are exactly the slots `0..n` and every code has `len` values.
fn codes_of(graph: &Graph, len: usize) -> Option<Vec<i8>> {
    let points = graph.get_point_indexation().get_nb_point();
    let mut codes = vec![0i8; points * len];
    let mut seen = vec![false; points];
    for point in graph.get_point_indexation() {
        let slot = point.get_origin_id();
        let (Some(target), Some(seen)) = (codes.get_mut(slot * len..(slot + 1) * len), seen.get_mut(slot))
        else {
            return None;
        };
        if point.get_v().len() != len || *seen {
            return None;
        }
        target.copy_from_slice(point.get_v());
        *seen = true;
    }
    seen.iter().all(|s| *s).then_some(codes)
}

/// Loads hnsw_rs's dump `dir/base.hnsw.{graph,data}`; `None` if hnsw_rs fails or panics.
///
/// `HnswIo::load_hnsw_with_dist` ties the graph's lifetime to the loader (for its mmap mode,
/// unused here: every vector is copied into the graph), so the loader is leaked, a few hundred
/// bytes per load, to get a `'static` graph.
fn load_graph(dir: &Path, base: &str) -> Option<Graph> {
    let io: &'static HnswIo = Box::leak(Box::new(HnswIo::new(dir, base)));
    match catch_unwind(AssertUnwindSafe(|| io.load_hnsw_with_dist::<i8, QuantDot>(QuantDot))) {
        Ok(Ok(graph)) => Some(graph),
        Ok(Err(e)) => {
            tracing::warn!(dir = %dir.display(), error = %format!("{e:#}"), "hnsw_rs failed to load its dump");
            None
        }
        Err(_) => {
            tracing::warn!(dir = %dir.display(), "hnsw_rs panicked loading its dump");
            None
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Manifest {
    format: u32,
    engine: String,
    generation: u64,
    model: String,
    dims: usize,
    /// The extent: live embeddings and the highest live id.
    count: i64,
    max_id: i64,
    /// Slots, live and tombstoned.
    points: usize,
    m: usize,
    ef_construction: usize,
    files: Vec<FileEntry>,
}

impl Manifest {
    fn extent(&self) -> Extent {
        Extent { count: self.count, max_id: self.max_id }
    }
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileEntry {
    name: String,
    len: u64,
    /// Hex blake3 of the whole file.
    blake3: String,
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> VectorError + '_ {
    move |source| VectorError::Io { path: path.to_path_buf(), source }
}

/// The manifest in `dir`: `None` when absent or unreadable as a manifest (a truncated write).
fn read_manifest(dir: &Path) -> vector::Result<Option<Manifest>> {
    let path = dir.join(MANIFEST);
    let bytes = match fs::read(&path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(VectorError::Io { path, source: e }),
    };
    match serde_json::from_slice(&bytes) {
        Ok(m) => Ok(Some(m)),
        Err(e) => {
            tracing::info!(path = %path.display(), error = %e, "unreadable hnsw manifest");
            Ok(None)
        }
    }
}

/// Writes the manifest to a temporary file, fsyncs it, renames it over `manifest.json` and
/// fsyncs the directory so the rename itself is durable.
/// An advisory lock on the index folder (`.lock`), exclusive for publishing and shared for
/// loading; released when the returned file is dropped.
fn dir_lock(dir: &Path, exclusive: bool) -> vector::Result<File> {
    let path = dir.join(".lock");
    let file =
        fs::OpenOptions::new().create(true).truncate(false).write(true).open(&path).map_err(io_err(&path))?;
    if exclusive { file.lock() } else { file.lock_shared() }.map_err(io_err(&path))?;
    Ok(file)
}

fn publish_manifest(dir: &Path, manifest: &Manifest) -> vector::Result<()> {
    let tmp = dir.join(format!("{MANIFEST}.tmp-{:08x}", fastrand::u32(..)));
    let bytes = serde_json::to_vec_pretty(manifest)
        .map_err(|e| VectorError::Io { path: tmp.clone(), source: io::Error::other(e) })?;
    let mut file = File::create(&tmp).map_err(io_err(&tmp))?;
    file.write_all(&bytes).and_then(|()| file.sync_all()).map_err(io_err(&tmp))?;
    drop(file);
    let path = dir.join(MANIFEST);
    if let Err(source) = fs::rename(&tmp, &path) {
        let _ = fs::remove_file(&tmp);
        return Err(VectorError::Io { path, source });
    }
    sync_dir(dir)
}

fn sync_dir(dir: &Path) -> vector::Result<()> {
    // Directories can be opened and fsynced on Unix; elsewhere there is nothing to sync.
    #[cfg(unix)]
    File::open(dir).and_then(|d| d.sync_all()).map_err(io_err(dir))?;
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

/// fsyncs a freshly written file and returns its length and blake3.
fn sync_and_hash(path: &Path) -> vector::Result<(u64, String)> {
    File::options().write(true).open(path).and_then(|f| f.sync_all()).map_err(io_err(path))?;
    hash_file(path).map_err(io_err(path))
}

fn hash_file(path: &Path) -> io::Result<(u64, String)> {
    let mut file = File::open(path)?;
    let mut hasher = blake3::Hasher::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut len = 0u64;
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        len += n as u64;
    }
    Ok((len, hasher.finalize().to_hex().to_string()))
}

/// The slot table: magic, slot count (u64 LE), then per slot the embedding id (i64 LE) and a
/// live flag (u8).
fn write_ids(path: &Path, ids: &[i64], live: &[bool]) -> vector::Result<()> {
    let mut bytes = Vec::with_capacity(16 + ids.len() * 9);
    bytes.extend_from_slice(IDS_MAGIC);
    bytes.extend_from_slice(&(ids.len() as u64).to_le_bytes());
    for (id, is_live) in ids.iter().zip(live) {
        bytes.extend_from_slice(&id.to_le_bytes());
        bytes.push(u8::from(*is_live));
    }
    fs::write(path, bytes).map_err(io_err(path))
}

/// Reads a slot table; `None` when it is malformed.
#[allow(clippy::type_complexity)]
fn read_ids(path: &Path) -> vector::Result<Option<(Vec<i64>, Vec<bool>)>> {
    let bytes = fs::read(path).map_err(io_err(path))?;
    let Some(rest) = bytes.strip_prefix(IDS_MAGIC.as_slice()) else {
        return Ok(None);
    };
    let Some((count, rest)) = rest.split_first_chunk::<8>() else {
        return Ok(None);
    };
    let count = u64::from_le_bytes(*count);
    if rest.len() as u64 != count.saturating_mul(9) {
        return Ok(None);
    }
    let mut ids = Vec::with_capacity(rest.len() / 9);
    let mut live = Vec::with_capacity(rest.len() / 9);
    for record in rest.chunks_exact(9) {
        let Some((id, flag)) = record.split_first_chunk::<8>() else {
            return Ok(None);
        };
        ids.push(i64::from_le_bytes(*id));
        match flag {
            [0] => live.push(false),
            [1] => live.push(true),
            _ => return Ok(None),
        }
    }
    Ok(Some((ids, live)))
}

/// The f16 rows: magic, dimensions and row count (u64 LE each), then the rows' f16 values LE.
fn write_rows(path: &Path, dims: usize, rows: &[f16]) -> vector::Result<()> {
    let mut bytes = Vec::with_capacity(24 + rows.len() * 2);
    bytes.extend_from_slice(ROWS_MAGIC);
    bytes.extend_from_slice(&(dims as u64).to_le_bytes());
    bytes.extend_from_slice(&((rows.len() / dims.max(1)) as u64).to_le_bytes());
    for value in rows {
        bytes.extend_from_slice(&value.to_le_bytes());
    }
    fs::write(path, bytes).map_err(io_err(path))
}

/// Reads a row file of `dims`-dimensional rows; `None` when it is malformed.
fn read_rows(path: &Path, dims: usize) -> vector::Result<Option<Vec<f16>>> {
    let bytes = fs::read(path).map_err(io_err(path))?;
    let Some(rest) = bytes.strip_prefix(ROWS_MAGIC.as_slice()) else {
        return Ok(None);
    };
    let Some((header, values)) = rest.split_first_chunk::<16>() else {
        return Ok(None);
    };
    let (file_dims, count) = header.split_at(8);
    let file_dims = u64::from_le_bytes(file_dims.try_into().unwrap_or_default());
    let count = u64::from_le_bytes(count.try_into().unwrap_or_default());
    if file_dims != dims as u64 || values.len() as u64 != count.saturating_mul(file_dims).saturating_mul(2) {
        return Ok(None);
    }
    Ok(Some(values.chunks_exact(2).map(|b| f16::from_le_bytes([b[0], b[1]])).collect()))
}

/// Whether `name` is a file this module writes: `g<generation>-<hex>.<kind>`, a plain name.
fn is_our_file(name: &str) -> bool {
    let Some(rest) = name.strip_prefix('g') else {
        return false;
    };
    let Some((stem, kind)) = rest.split_once('.') else {
        return false;
    };
    let Some((generation, salt)) = stem.split_once('-') else {
        return false;
    };
    !generation.is_empty()
        && generation.bytes().all(|b| b.is_ascii_digit())
        && salt.len() == 8
        && salt.bytes().all(|b| b.is_ascii_hexdigit())
        && matches!(kind, "hnsw.graph" | "hnsw.data" | "ids" | "rows")
}

/// Removes our files that the just-published manifest does not name, and stray temporary
/// manifests. Best effort: a file that cannot be removed now is removed by a later save.
fn remove_stale_files(dir: &Path, manifest: &Manifest) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    let current: HashSet<&str> = manifest.files.iter().map(|f| f.name.as_str()).collect();
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(name) = name.to_str() else {
            continue;
        };
        let stale_tmp = name.starts_with(&format!("{MANIFEST}.tmp-"));
        if (is_our_file(name) && !current.contains(name)) || stale_tmp {
            let path: PathBuf = dir.join(name);
            if let Err(e) = fs::remove_file(&path) {
                tracing::debug!(path = %path.display(), error = %e, "could not remove an old hnsw file");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_are_recognised_strictly() {
        assert!(is_our_file("g12-0a1b2c3d.hnsw.graph"));
        assert!(is_our_file("g1-deadbeef.ids"));
        assert!(is_our_file("g1-deadbeef.rows"));
        assert!(!is_our_file("g1-deadbeef.txt"));
        assert!(!is_our_file("../g1-deadbeef.ids"));
        assert!(!is_our_file("g-deadbeef.ids"));
        assert!(!is_our_file("manifest.json"));
    }

    #[test]
    fn dedup_keeps_the_last_vector_of_an_id() {
        let mut batch = vec![(1, vec![1.0]), (2, vec![2.0]), (1, vec![3.0])];
        dedup_last_wins(&mut batch);
        assert_eq!(batch, vec![(2, vec![2.0]), (1, vec![3.0])]);
    }

    #[test]
    fn identical_vectors_do_not_trip_hnsw_rs_assertions() {
        // hnsw_rs's DistDot asserts `1 - dot >= 0`, which two copies of a unit vector can break
        // by rounding; QuantDot clamps instead.
        let index = HnswIndex::new("m", 3, HnswParams::default()).expect("index");
        let v = [0.1f32, 0.7, 0.3];
        for id in 0..50 {
            index.insert(id, &v).expect("insert");
        }
        let hits = index.search(&v, 5, None, None).expect("search");
        assert_eq!(hits.iter().map(|h| h.id).collect::<Vec<_>>(), vec![0, 1, 2, 3, 4]);
    }

    /// Unit vectors around `clusters` random centres, seeded.
    fn clustered(seed: u64, n: usize, dims: usize, clusters: usize) -> Vec<Vec<f32>> {
        let mut rng = fastrand::Rng::with_seed(seed);
        let mut normal = move || {
            let (u1, u2) = (1.0 - rng.f64(), rng.f64());
            ((-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()) as f32
        };
        let centres: Vec<Vec<f32>> = (0..clusters).map(|_| (0..dims).map(|_| normal()).collect()).collect();
        let sigma = 0.8 / (dims as f32).sqrt() * centres[0].iter().map(|x| x * x).sum::<f32>().sqrt();
        (0..n)
            .map(|i| {
                let v: Vec<f32> = centres[i % clusters].iter().map(|x| x + sigma * normal()).collect();
                vector::unit(&v, dims).expect("unit")
            })
            .collect()
    }

    /// A test index of `vectors` under ids `10 * slot`, and its exact top-k per query.
    fn index_of(vectors: &[Vec<f32>], params: HnswParams) -> HnswIndex {
        let dims = vectors[0].len();
        HnswIndex::build("m", dims, params, vectors.iter().enumerate().map(|(i, v)| (10 * i as i64, v)))
            .expect("build")
    }

    fn test_params() -> HnswParams {
        HnswParams { ef_construction: 64, ..HnswParams::default() }
    }

    fn recall_of(index: &HnswIndex, queries: &[Vec<f32>], k: usize, ef: usize, how: Walk) -> f64 {
        let mut found = 0;
        for q in queries {
            let truth: HashSet<i64> = index.read().exact(q, k, None).iter().map(|h| h.id).collect();
            let got = index.search_with(q, k, Some(ef), None, how).expect("search");
            found += got.iter().filter(|h| truth.contains(&h.id)).count();
        }
        found as f64 / (k * queries.len()) as f64
    }

    #[test]
    fn flat_walk_recalls_like_the_hnsw_rs_walk() {
        // The last 100 vectors, from the same clusters, are the queries.
        let vectors = clustered(7, 3100, 48, 30);
        let (vectors, queries) = vectors.split_at(3000);
        let index = index_of(vectors, test_params());
        {
            let inner = index.read();
            assert_eq!(inner.flat.len(), 3000, "the build ends with a flat copy of the whole graph");
            assert!(inner.flat.link_count() >= 3000 * 8, "{}", inner.flat.link_count());
        }
        let flat = recall_of(&index, queries, 10, 40, Walk::Flat);
        let theirs = recall_of(&index, queries, 10, 40, Walk::HnswRs);
        assert!(flat >= 0.95, "flat walk recall@10 {flat:.3} (hnsw_rs walk {theirs:.3})");
        assert!(flat >= theirs - 0.02, "flat walk recall@10 {flat:.3} against hnsw_rs walk {theirs:.3}");
        // Both rescore from the same rows: a hit found by both walks has the same score.
        for q in queries {
            let a = index.search_with(q, 10, Some(100), None, Walk::Flat).expect("flat");
            let b = index.search_with(q, 10, Some(100), None, Walk::HnswRs).expect("hnsw_rs");
            for hit in &a {
                if let Some(other) = b.iter().find(|h| h.id == hit.id) {
                    assert_eq!(hit.score.to_bits(), other.score.to_bits());
                }
            }
        }
    }

    #[test]
    fn inserts_after_the_flat_copy_are_found() {
        let vectors = clustered(9, 2000, 32, 20);
        let index = index_of(&vectors[..1000], test_params());
        let find_self = |i: usize| {
            let hits = index.search(&vectors[i], 1, Some(40), None).expect("search");
            hits.first().map(|h| h.id) == Some(10 * i as i64)
        };
        // A few at a time stay outside the flat copy, scored one by one.
        for (i, v) in vectors.iter().enumerate().take(1010).skip(1000) {
            index.insert(10 * i as i64, v).expect("insert");
        }
        assert_eq!(index.read().flat.len(), 1000);
        assert!((1000..1010).all(find_self));
        // Past FLAT_DELTA_MAX the graph is copied again.
        index.insert_batch((1010..2000).map(|i| (10 * i as i64, &vectors[i]))).expect("insert batch");
        assert_eq!(index.read().flat.len(), 2000);
        let found = (0..2000).filter(|&i| find_self(i)).count();
        assert!(found >= 1990, "{found} of 2000 points found themselves");
    }

    #[test]
    fn tombstones_never_come_back_from_the_flat_walk() {
        let vectors = clustered(11, 2000, 32, 20);
        let index = index_of(&vectors, test_params());
        let removed: HashSet<i64> = (0..2000).filter(|i| i % 3 == 0).map(|i| 10 * i as i64).collect();
        for id in &removed {
            assert!(index.remove(*id));
        }
        // A replaced vector leaves a tombstone too; its new slot is outside the flat copy.
        index.insert(10, &vectors[3]).expect("replace");
        for q in vectors.iter().step_by(7) {
            let hits = index.search(q, 10, Some(40), None).expect("search");
            assert_eq!(hits.len(), 10);
            assert!(hits.iter().all(|h| !removed.contains(&h.id)), "{hits:?}");
        }
        let hits = index.search(&vectors[3], 10, Some(40), None).expect("search");
        assert_eq!(hits.iter().filter(|h| h.id == 10).count(), 1, "{hits:?}");
    }

    #[test]
    fn narrow_filters_apply_inside_the_flat_walk() {
        let vectors = clustered(13, 3000, 32, 30);
        // No exact scans, so a fifth of the points goes through the graph, filtered inside.
        let params = HnswParams { exact_below: 0, exact_fraction: 0.0, ..test_params() };
        let index = index_of(&vectors, params);
        let allowed: HashSet<i64> = (0..3000).filter(|i| i % 5 == 1).map(|i| 10 * i as i64).collect();
        let inner = index.read();
        let mut found = 0;
        for q in vectors.iter().step_by(30) {
            let code = quantize(q);
            let inside = inner.walk(q, &code, 10, 40, Some(&allowed), true, Walk::Flat);
            assert_eq!(inside.len(), 10);
            assert!(inside.iter().all(|h| allowed.contains(&h.id)), "{inside:?}");
            let truth: HashSet<i64> = inner.exact(q, 10, Some(&allowed)).iter().map(|h| h.id).collect();
            found += inside.iter().filter(|h| truth.contains(&h.id)).count();
        }
        let recall = found as f64 / 1000.0;
        assert!(recall >= 0.9, "filtered recall@10 {recall:.3}");
        drop(inner);
        let hits = index.search(&vectors[6], 10, None, Some(&allowed)).expect("search");
        assert_eq!(hits.first().map(|h| h.id), Some(60), "an allowed point finds itself");
    }

    #[test]
    fn codes_keep_direction_and_scale() {
        let v = vector::unit(&[0.5, -2.0, 0.25, 1.0], 4).expect("unit");
        let code = quantize(&v);
        assert_eq!(code.len(), 4 + SCALE_BYTES);
        let (components, scale) = split_code(&code);
        assert_eq!(components[1], -127, "the largest magnitude maps to the end of the range");
        for (c, x) in components.iter().zip(&v) {
            assert!((f32::from(*c) * scale - x).abs() <= scale / 2.0 + 1e-6);
        }
        let self_distance = QuantDot.eval(&code, &code);
        assert!(self_distance < 1e-2, "{self_distance}");
        let opposite: Vec<f32> = v.iter().map(|x| -x).collect();
        assert!((QuantDot.eval(&code, &quantize(&opposite)) - 2.0).abs() < 1e-2);
    }
}
