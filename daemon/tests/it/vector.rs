//! Vector indexes: the local HNSW against exact search (recall, tombstones, filters), its
//! persistence (round trip, and `None` rather than a panic for anything corrupt or stale), and
//! bad vectors as errors.
//!
//! Vectors come from a seeded generator of clustered unit vectors (uniformly random vectors are
//! unrealistically hard for any ANN index). The large recall case uses 256 dimensions to keep the
//! debug-build test time small; a smaller case covers the 3072 dimensions of real models.

use std::collections::HashSet;
use std::path::Path;
use std::sync::OnceLock;

use semdex::vector::{ExactIndex, Extent, HnswIndex, HnswParams, SearchPath, VectorError, VectorHit};

/// Seeded generator of vectors scattered around random cluster centres.
struct Clustered {
    rng: fastrand::Rng,
    centres: Vec<Vec<f32>>,
    /// Standard deviation of each coordinate's noise.
    sigma: f32,
}

impl Clustered {
    /// `noise` is the expected length of the noise added to a unit centre.
    fn new(seed: u64, dims: usize, clusters: usize, noise: f32) -> Self {
        let mut rng = fastrand::Rng::with_seed(seed);
        let centres = (0..clusters)
            .map(|_| {
                let v: Vec<f32> = (0..dims).map(|_| gaussian(&mut rng)).collect();
                let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
                v.into_iter().map(|x| x / norm).collect()
            })
            .collect();
        Clustered { rng, centres, sigma: noise / (dims as f32).sqrt() }
    }

    /// A vector near a random centre, deliberately not unit length: the indexes normalise.
    fn next(&mut self) -> Vec<f32> {
        let c = self.rng.usize(..self.centres.len());
        let scale = 0.5 + self.rng.f32() * 2.0;
        let sigma = self.sigma;
        let centre = &self.centres[c];
        let mut v = Vec::with_capacity(centre.len());
        for &x in centre {
            v.push((x + sigma * gaussian(&mut self.rng)) * scale);
        }
        v
    }

    fn take(&mut self, n: usize) -> Vec<Vec<f32>> {
        (0..n).map(|_| self.next()).collect()
    }
}

/// Standard normal sample (Box-Muller).
fn gaussian(rng: &mut fastrand::Rng) -> f32 {
    let u1 = 1.0 - rng.f64(); // in (0, 1], so the logarithm is finite
    let u2 = rng.f64();
    ((-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()) as f32
}

fn ids(hits: &[VectorHit]) -> Vec<i64> {
    hits.iter().map(|h| h.id).collect()
}

/// Mean fraction of the exact top-k found by the HNSW.
fn recall(
    hnsw: &HnswIndex,
    exact: &ExactIndex,
    queries: &[Vec<f32>],
    k: usize,
    allowed: Option<&HashSet<i64>>,
) -> f64 {
    let mut found = 0usize;
    let mut wanted = 0usize;
    for q in queries {
        let truth: HashSet<i64> =
            ids(&exact.search(q, k, allowed).expect("exact search")).into_iter().collect();
        let got = hnsw.search(q, k, None, allowed).expect("hnsw search");
        found += got.iter().filter(|h| truth.contains(&h.id)).count();
        wanted += truth.len();
    }
    found as f64 / wanted as f64
}

/// Ids start at 1000 and step by 3 so slots (0, 1, 2, ...) and embedding ids never coincide.
fn id_of(i: usize) -> i64 {
    1000 + 3 * i as i64
}

/// Build parameters for the tests: `ef_construction` 100 instead of the default 200 halves the
/// build time of these debug-build tests (hnsw_rs's generic code is compiled in this crate, at
/// its opt-level) and still gives recall@10 near 0.99 on this data.
fn test_params(max_elements: usize) -> HnswParams {
    HnswParams { ef_construction: 100, max_elements, ..HnswParams::default() }
}

fn build_both(vectors: &[Vec<f32>], dims: usize, params: HnswParams) -> (HnswIndex, ExactIndex) {
    let hnsw =
        HnswIndex::build("test-model", dims, params, vectors.iter().enumerate().map(|(i, v)| (id_of(i), v)))
            .expect("build");
    let mut exact = ExactIndex::new(dims);
    for (i, v) in vectors.iter().enumerate() {
        exact.insert(id_of(i), v).expect("exact insert");
    }
    (hnsw, exact)
}

/// The 20k x 256 index shared by the read-only tests, built once.
struct Large {
    hnsw: HnswIndex,
    exact: ExactIndex,
    queries: Vec<Vec<f32>>,
}

fn large() -> &'static Large {
    static LARGE: OnceLock<Large> = OnceLock::new();
    LARGE.get_or_init(|| {
        const DIMS: usize = 256;
        let mut generator = Clustered::new(20_240_501, DIMS, 100, 0.9);
        let vectors = generator.take(20_000);
        let queries = generator.take(100);
        let (hnsw, exact) = build_both(&vectors, DIMS, test_params(20_000));
        Large { hnsw, exact, queries }
    })
}

/// A 2k x 64 index for tests that mutate.
fn small(seed: u64) -> (HnswIndex, ExactIndex, Vec<Vec<f32>>) {
    let mut generator = Clustered::new(seed, 64, 20, 0.9);
    let vectors = generator.take(2_000);
    let queries = generator.take(50);
    let (hnsw, exact) = build_both(&vectors, 64, test_params(2_000));
    (hnsw, exact, queries)
}

#[test]
fn exact_search_matches_a_naive_sort_and_breaks_ties_by_id() {
    let mut generator = Clustered::new(7, 32, 5, 0.8);
    let mut index = ExactIndex::new(32);
    let mut stored = Vec::new();
    for i in 0..300i64 {
        let v = generator.next();
        index.insert(i, &v).expect("insert");
        stored.push((i, v));
    }
    // Duplicates of an existing vector under higher and lower ids tie exactly on score.
    let (dup_of, dup) = stored[10].clone();
    for id in [500i64, -5] {
        index.insert(id, &dup).expect("insert duplicate");
        stored.push((id, dup.clone()));
    }
    let unit = |v: &[f32]| {
        let n = v.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
        v.iter().map(|x| (f64::from(*x) / n) as f32).collect::<Vec<_>>()
    };
    let naive = |q: &[f32], k: usize, allowed: Option<&HashSet<i64>>| {
        let q = unit(q);
        let mut all: Vec<(i64, f32)> = stored
            .iter()
            .filter(|(id, _)| allowed.is_none_or(|a| a.contains(id)))
            .map(|(id, v)| (*id, unit(v).iter().zip(&q).map(|(a, b)| f64::from(a * b)).sum::<f64>() as f32))
            .collect();
        all.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        all.truncate(k);
        all.into_iter().map(|(id, _)| id).collect::<Vec<_>>()
    };
    let small_allowed: HashSet<i64> = (0..300).step_by(7).collect();
    let large_allowed: HashSet<i64> = (-10..1000).filter(|i| i % 5 != 0).collect();
    for q in generator.take(20) {
        for allowed in [None, Some(&small_allowed), Some(&large_allowed)] {
            let got = index.search(&q, 10, allowed).expect("search");
            assert_eq!(got.len(), 10);
            assert!(got.windows(2).all(|w| w[0].score >= w[1].score), "best first");
            let want = naive(&q, 10, allowed);
            // Float summation order differs, so compare sets of the top 10 minus borderline ties.
            let overlap = ids(&got).iter().filter(|id| want.contains(id)).count();
            assert!(overlap >= 9, "exact search disagrees with a naive sort: {got:?} vs {want:?}");
        }
    }
    let hits = index.search(&dup, 3, None).expect("search duplicate");
    assert_eq!(ids(&hits), {
        let mut tied = vec![-5, dup_of, 500];
        tied.sort();
        tied
    });
    assert_eq!(hits[0].score, hits[2].score, "duplicates tie exactly");
}

#[test]
fn exact_remove_and_reinsert_keep_storage_consistent() {
    let mut index = ExactIndex::new(4);
    index.insert(1, &[1.0, 0.0, 0.0, 0.0]).expect("insert");
    index.insert(2, &[0.0, 1.0, 0.0, 0.0]).expect("insert");
    index.insert(3, &[0.0, 0.0, 1.0, 0.0]).expect("insert");
    assert!(index.remove(1));
    assert!(!index.remove(1));
    assert_eq!(index.len(), 2);
    // Row 3 moved into row 1's place; it must still be found under its own id.
    assert_eq!(ids(&index.search(&[0.0, 0.0, 1.0, 0.0], 1, None).expect("search")), vec![3]);
    index.insert(2, &[0.0, 0.0, 0.0, 2.0]).expect("replace");
    assert_eq!(index.len(), 2);
    assert_eq!(index.get(2), Some([0.0, 0.0, 0.0, 1.0].as_slice()));
    assert_eq!(ids(&index.search(&[0.0, 0.0, 0.0, 1.0], 2, None).expect("search")), vec![2, 3]);
}

#[test]
fn hnsw_recall_at_10_is_at_least_0_95_on_20k_clustered_256_dim_vectors() {
    let large = large();
    assert_eq!(large.hnsw.len(), 20_000);
    let r = recall(&large.hnsw, &large.exact, &large.queries, 10, None);
    assert!(r >= 0.95, "recall@10 = {r:.3}");
}

#[test]
fn hnsw_recall_at_10_is_at_least_0_95_on_2k_clustered_3072_dim_vectors() {
    const DIMS: usize = 3072;
    let mut generator = Clustered::new(3072, DIMS, 30, 0.9);
    let vectors = generator.take(2_000);
    let queries = generator.take(50);
    let (hnsw, exact) = build_both(&vectors, DIMS, test_params(2_000));
    let r = recall(&hnsw, &exact, &queries, 10, None);
    assert!(r >= 0.95, "recall@10 = {r:.3}");
}

#[test]
fn tombstoned_ids_are_never_returned_and_k_hits_still_come_back() {
    let (hnsw, mut exact, queries) = small(11);
    let mut removed = HashSet::new();
    // Remove every query's current top 5, so the graph must route around them...
    for q in &queries {
        for hit in hnsw.search(q, 5, None, None).expect("search") {
            removed.insert(hit.id);
        }
    }
    // ...and a quarter of everything else, enough to pass the rebuild threshold.
    for i in (0..2_000).filter(|i| i % 4 == 1) {
        removed.insert(id_of(i));
    }
    assert!(!hnsw.needs_rebuild());
    for &id in &removed {
        assert!(hnsw.remove(id));
        assert!(exact.remove(id));
    }
    assert!(!hnsw.remove(*removed.iter().next().expect("removed some")), "a second remove is a no-op");
    assert_eq!(hnsw.tombstones(), removed.len());
    assert_eq!(hnsw.len(), 2_000 - removed.len());
    assert!(hnsw.needs_rebuild(), "{} tombstones of 2000 points", removed.len());
    for q in &queries {
        let hits = hnsw.search(q, 10, None, None).expect("search");
        assert_eq!(hits.len(), 10);
        for h in &hits {
            assert!(!removed.contains(&h.id), "tombstoned id {} returned", h.id);
        }
    }
    assert!(recall(&hnsw, &exact, &queries, 10, None) >= 0.95);

    let compacted = hnsw.compacted().expect("compact");
    assert_eq!(compacted.tombstones(), 0);
    assert!(!compacted.needs_rebuild());
    assert_eq!(compacted.extent(), hnsw.extent());
    assert!(recall(&compacted, &exact, &queries, 10, None) >= 0.95);
}

#[test]
fn reinserting_an_id_replaces_its_vector() {
    let (hnsw, _, _) = small(12);
    let mut generator = Clustered::new(99, 64, 3, 0.5);
    let (a, b) = (generator.next(), generator.next());
    hnsw.insert(42, &a).expect("insert");
    assert_eq!(hnsw.search(&a, 1, None, None).expect("search")[0].id, 42);
    let before = hnsw.len();
    hnsw.insert(42, &b).expect("reinsert");
    assert_eq!(hnsw.len(), before, "a replacement is not a new point");
    assert_eq!(hnsw.tombstones(), 1);
    let top = hnsw.search(&b, 1, None, None).expect("search")[0];
    assert_eq!(top.id, 42);
    // Scores are computed from the f16 copy of each vector.
    assert!((top.score - 1.0).abs() < 1e-3, "score {}", top.score);
    // The old vector is gone: 42 now scores dot(a, b) against `a`, never 1.
    for hit in hnsw.search(&a, 50, None, None).expect("search") {
        assert!(hit.id != 42 || hit.score < 0.999, "old vector of 42 still indexed");
    }
    // Within one batch the last vector of an id wins.
    hnsw.insert_batch([(43, a.as_slice()), (43, b.as_slice())]).expect("batch");
    let hits = hnsw.search(&b, 2, None, None).expect("search");
    assert_eq!(ids(&hits), vec![42, 43]);
}

#[test]
fn small_allowed_sets_are_scanned_exactly() {
    let large = large();
    let mut rng = fastrand::Rng::with_seed(5);
    let allowed: HashSet<i64> = (0..500).map(|_| id_of(rng.usize(..20_000))).collect();
    assert_eq!(large.hnsw.plan(Some(&allowed)), SearchPath::Exact);
    for q in &large.queries[..50] {
        let got = large.hnsw.search(q, 10, None, Some(&allowed)).expect("search");
        let want = large.exact.search(q, 10, Some(&allowed)).expect("exact");
        // The same vectors (the local index scores its f16 copy): identical ids, scores equal
        // to f16 precision.
        assert_eq!(ids(&got), ids(&want));
        for (g, w) in got.iter().zip(&want) {
            assert!((g.score - w.score).abs() < 1e-3, "{g:?} vs {w:?}");
        }
        assert!(got.iter().all(|h| allowed.contains(&h.id)));
    }
    // Fewer allowed ids than k: all of them, and nothing else.
    let tiny: HashSet<i64> = [id_of(3), id_of(4), 77].into_iter().collect();
    let got = large.hnsw.search(&large.queries[0], 10, None, Some(&tiny)).expect("search");
    let mut got_ids = ids(&got);
    got_ids.sort();
    assert_eq!(got_ids, vec![id_of(3), id_of(4)]);
}

#[test]
fn large_allowed_sets_walk_the_graph_and_return_only_allowed_ids() {
    let large = large();
    // Two thirds of the points are filtered after the walk; 15% go inside hnsw_rs's filtered
    // walk. Both are above the exact-scan thresholds (2,000 ids and 5%).
    let broad: HashSet<i64> = (0..20_000).filter(|i| i % 3 != 0).map(id_of).collect();
    let narrow: HashSet<i64> = (0..20_000).filter(|i| i % 20 < 3).map(id_of).collect();
    for allowed in [&broad, &narrow] {
        assert_eq!(large.hnsw.plan(Some(allowed)), SearchPath::Graph);
        for q in &large.queries {
            let got = large.hnsw.search(q, 10, None, Some(allowed)).expect("search");
            assert_eq!(got.len(), 10);
            assert!(got.iter().all(|h| allowed.contains(&h.id)), "a filtered-out id came back");
        }
        let r = recall(&large.hnsw, &large.exact, &large.queries, 10, Some(allowed));
        assert!(r >= 0.95, "filtered recall@10 = {r:.3} with {} allowed ids", allowed.len());
    }
    // Allowed ids that are not in the index make the broad set look broader than it is: the
    // search must still find k allowed hits.
    let mut padded = narrow.clone();
    padded.extend(-30_000..0);
    for q in &large.queries[..20] {
        let got = large.hnsw.search(q, 10, None, Some(&padded)).expect("search");
        let want = large.exact.search(q, 10, Some(&narrow)).expect("exact");
        assert_eq!(got.len(), 10);
        assert!(got.iter().all(|h| narrow.contains(&h.id)));
        assert!(ids(&got).iter().filter(|id| ids(&want).contains(id)).count() >= 8);
    }
}

#[test]
fn save_then_load_gives_identical_results() {
    let (hnsw, _, queries) = small(13);
    // Tombstones and a replacement must survive the round trip too.
    for i in (0..2_000).step_by(9) {
        hnsw.remove(id_of(i));
    }
    hnsw.insert(id_of(1), &queries[0]).expect("replace");
    let dir = tempfile::tempdir().expect("tempdir");
    let generation = hnsw.save(dir.path()).expect("save");
    assert_eq!(generation, 1);
    let params = hnsw.params().clone();
    let loaded = HnswIndex::load(dir.path(), "test-model", 64, params.clone(), hnsw.extent())
        .expect("load")
        .expect("a fresh save loads");
    assert_eq!(loaded.len(), hnsw.len());
    assert_eq!(loaded.tombstones(), hnsw.tombstones());
    assert_eq!(loaded.extent(), hnsw.extent());
    assert_eq!(loaded.generation(), 1);
    let allowed: HashSet<i64> = (0..2_000).filter(|i| i % 2 == 0).map(id_of).collect();
    for q in &queries {
        assert_eq!(
            loaded.search(q, 10, None, None).expect("search"),
            hnsw.search(q, 10, None, None).expect("search")
        );
        assert_eq!(
            loaded.search(q, 10, Some(64), Some(&allowed)).expect("search"),
            hnsw.search(q, 10, Some(64), Some(&allowed)).expect("search")
        );
    }
    // A loaded index keeps working incrementally and saves a newer generation, replacing the
    // older files.
    loaded.insert(7, &queries[1]).expect("insert after load");
    assert_eq!(loaded.search(&queries[1], 1, None, None).expect("search")[0].id, 7);
    assert_eq!(loaded.save(dir.path()).expect("save again"), 2);
    let names: Vec<String> = std::fs::read_dir(dir.path())
        .expect("read dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .filter(|n| n != ".lock")
        .collect();
    assert_eq!(names.len(), 5, "manifest plus one generation's four files (and the lock): {names:?}");
    assert!(names.iter().all(|n| n == "manifest.json" || n.starts_with("g2-")), "{names:?}");
    let reloaded = HnswIndex::load(dir.path(), "test-model", 64, params, loaded.extent())
        .expect("load")
        .expect("second generation loads");
    assert_eq!(reloaded.search(&queries[1], 1, None, None).expect("search")[0].id, 7);
}

#[test]
fn an_empty_index_saves_and_loads() {
    let index = HnswIndex::new("empty", 8, HnswParams::default()).expect("index");
    let dir = tempfile::tempdir().expect("tempdir");
    index.save(dir.path()).expect("save");
    let extent = Extent { count: 0, max_id: 0 };
    assert_eq!(index.extent(), extent);
    let loaded =
        HnswIndex::load(dir.path(), "empty", 8, HnswParams::default(), extent).expect("load").expect("loads");
    assert!(loaded.is_empty());
    assert!(loaded.search(&[1.0; 8], 5, None, None).expect("search").is_empty());
    loaded.insert(1, &[1.0; 8]).expect("insert into a loaded empty index");
    assert_eq!(ids(&loaded.search(&[1.0; 8], 5, None, None).expect("search")), vec![1]);
}

/// Copies the files of `from` into a fresh directory for one corruption case.
fn copy_dir(from: &Path) -> tempfile::TempDir {
    let to = tempfile::tempdir().expect("tempdir");
    for entry in std::fs::read_dir(from).expect("read dir") {
        let entry = entry.expect("entry");
        std::fs::copy(entry.path(), to.path().join(entry.file_name())).expect("copy");
    }
    to
}

fn file_ending(dir: &Path, suffix: &str) -> std::path::PathBuf {
    std::fs::read_dir(dir)
        .expect("read dir")
        .map(|e| e.expect("entry").path())
        .find(|p| p.to_string_lossy().ends_with(suffix))
        .unwrap_or_else(|| panic!("no *{suffix} in {}", dir.display()))
}

#[test]
fn load_returns_none_for_missing_corrupt_truncated_or_stale_files() {
    let (hnsw, _, _) = small(14);
    let saved = tempfile::tempdir().expect("tempdir");
    hnsw.save(saved.path()).expect("save");
    let params = hnsw.params().clone();
    let extent = hnsw.extent();
    let load = |dir: &Path, model: &str, dims: usize, params: HnswParams, extent: Extent| {
        HnswIndex::load(dir, model, dims, params, extent).expect("load never errors on bad content")
    };
    assert!(
        load(saved.path(), "test-model", 64, params.clone(), extent).is_some(),
        "the pristine copy loads"
    );

    let empty = tempfile::tempdir().expect("tempdir");
    assert!(load(empty.path(), "test-model", 64, params.clone(), extent).is_none(), "no manifest");
    assert!(
        load(&empty.path().join("absent"), "test-model", 64, params.clone(), extent).is_none(),
        "no directory"
    );

    let stale = Extent { count: extent.count + 1, max_id: extent.max_id + 3 };
    assert!(load(saved.path(), "test-model", 64, params.clone(), stale).is_none(), "stale extent");
    assert!(load(saved.path(), "other-model", 64, params.clone(), extent).is_none(), "another model");
    assert!(load(saved.path(), "test-model", 32, params.clone(), extent).is_none(), "other dims");
    let other_m = HnswParams { m: 24, ..params.clone() };
    assert!(load(saved.path(), "test-model", 64, other_m, extent).is_none(), "other build parameters");

    let cases: [Corruption; 6] = [
        ("flipped byte in the vector data", |dir| flip_byte(&file_ending(dir, ".hnsw.data"), 5_000)),
        ("flipped byte in the graph", |dir| flip_byte(&file_ending(dir, ".hnsw.graph"), 100)),
        ("truncated graph", |dir| truncate(&file_ending(dir, ".hnsw.graph"), 1_000)),
        ("truncated manifest", |dir| truncate(&dir.join("manifest.json"), 40)),
        ("missing id table", |dir| std::fs::remove_file(file_ending(dir, ".ids")).expect("remove")),
        ("manifest of another generation", |dir| {
            let manifest = std::fs::read_to_string(dir.join("manifest.json")).expect("read manifest");
            let rewritten = manifest.replace("\"g1-", "\"g2-");
            assert_ne!(manifest, rewritten);
            std::fs::write(dir.join("manifest.json"), rewritten).expect("write manifest");
        }),
    ];
    for (what, corrupt) in cases {
        let dir = copy_dir(saved.path());
        corrupt(dir.path());
        assert!(
            load(dir.path(), "test-model", 64, params.clone(), extent).is_none(),
            "{what}: loaded anyway"
        );
    }
}

/// A named way to damage a saved index directory.
type Corruption = (&'static str, fn(&Path));

fn flip_byte(path: &Path, at: usize) {
    let mut bytes = std::fs::read(path).expect("read");
    assert!(bytes.len() > at, "{} too short", path.display());
    bytes[at] ^= 0x40;
    std::fs::write(path, bytes).expect("write");
}

fn truncate(path: &Path, len: usize) {
    let bytes = std::fs::read(path).expect("read");
    assert!(bytes.len() > len, "{} too short", path.display());
    std::fs::write(path, &bytes[..len]).expect("write");
}

#[test]
fn bad_vectors_are_errors_not_panics() {
    let (hnsw, mut exact, queries) = small(15);
    let mut nan = queries[0].clone();
    nan[3] = f32::NAN;
    let mut inf = queries[0].clone();
    inf[0] = f32::INFINITY;
    let zero = vec![0.0f32; 64];
    let short = vec![1.0f32; 63];
    for (what, q) in [("nan", &nan), ("inf", &inf)] {
        assert!(matches!(hnsw.search(q, 10, None, None), Err(VectorError::NotFinite)), "{what}");
        assert!(matches!(exact.search(q, 10, None), Err(VectorError::NotFinite)), "{what}");
    }
    assert!(matches!(hnsw.search(&zero, 10, None, None), Err(VectorError::Zero)));
    assert!(matches!(exact.search(&zero, 10, None), Err(VectorError::Zero)));
    assert!(matches!(
        hnsw.search(&short, 10, None, None),
        Err(VectorError::Dimensions { expected: 64, got: 63 })
    ));
    assert!(matches!(exact.search(&short, 10, None), Err(VectorError::Dimensions { .. })));
    // Huge but finite components must not overflow the norm into "zero" or NaN.
    let huge = vec![f32::MAX; 64];
    assert_eq!(hnsw.search(&huge, 3, None, None).expect("huge query").len(), 3);

    // A batch with one bad vector inserts nothing.
    let before = (hnsw.len(), hnsw.extent());
    let err = hnsw.insert_batch([(1, queries[1].as_slice()), (2, nan.as_slice())]);
    assert!(matches!(err, Err(VectorError::NotFinite)));
    assert!(!hnsw.contains(1));
    assert_eq!((hnsw.len(), hnsw.extent()), before);
    assert!(matches!(hnsw.insert(3, &zero), Err(VectorError::Zero)));
    assert!(matches!(exact.insert(3, &zero), Err(VectorError::Zero)));
    assert!(matches!(exact.insert(3, &short), Err(VectorError::Dimensions { .. })));

    assert!(matches!(
        HnswIndex::new("m", 8, HnswParams { m: 300, ..HnswParams::default() }),
        Err(VectorError::Params(_))
    ));
    assert!(matches!(HnswIndex::new("m", 0, HnswParams::default()), Err(VectorError::Params(_))));
}

#[test]
fn searches_run_while_another_thread_inserts() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<HnswIndex>();

    let (hnsw, _, queries) = small(16);
    let mut generator = Clustered::new(17, 64, 20, 0.9);
    let extra = generator.take(400);
    std::thread::scope(|s| {
        s.spawn(|| {
            for (i, v) in extra.iter().enumerate() {
                hnsw.insert(1_000_000 + i as i64, v).expect("insert");
            }
        });
        for _ in 0..2 {
            s.spawn(|| {
                for q in queries.iter().cycle().take(200) {
                    assert_eq!(hnsw.search(q, 10, None, None).expect("search").len(), 10);
                }
            });
        }
    });
    assert_eq!(hnsw.len(), 2_400);
}

/// The local index of the embedded store, as the daemon keeps it: a saved index that is a true
/// prefix of the store is loaded and caught up rather than rebuilt, and deferred saves reach the
/// disk when flushed.
#[tokio::test]
async fn a_saved_prefix_is_caught_up_and_deferred_saves_are_flushed() {
    use semdex::store::{SqliteStore, Store};
    use semdex::vector::{LocalVectors, SyncOutcome};

    let (_db_dir, db_path) = crate::support::temp_sqlite();
    let store = SqliteStore::open(&db_path).await.unwrap();
    store.migrate_up().await.unwrap();
    let model = store.register_model("builtin", "test", 16).await.unwrap();
    let mut rng = fastrand::Rng::with_seed(7);
    let mut put = async |from: usize, to: usize| {
        let rows: Vec<(String, Vec<f32>)> = (from..to)
            .map(|i| (format!("{i:064x}"), (0..16).map(|_| gaussian(&mut rng)).collect()))
            .collect();
        store.put_embeddings(model.id, &rows).await.unwrap();
    };
    let vectors_dir = tempfile::tempdir().unwrap();

    put(0, 100).await;
    let first = LocalVectors::new(vectors_dir.path().to_path_buf(), model.clone());
    assert_eq!(first.sync(&store).await.unwrap(), SyncOutcome::Rebuilt { added: 100 });
    let dir = vectors_dir.path().join(format!("model-{}", model.id));
    assert_eq!(HnswIndex::published_extent(&dir).map(|e| e.count), Some(100));

    // A new process finds the saved 100 and the store's 150: it loads and adds 50.
    put(100, 150).await;
    let second = LocalVectors::new(vectors_dir.path().to_path_buf(), model.clone());
    assert_eq!(second.sync(&store).await.unwrap(), SyncOutcome::CaughtUp { from_disk: true, added: 50 });
    assert_eq!(second.len(), 150);
    assert_eq!(HnswIndex::published_extent(&dir).map(|e| e.count), Some(150));

    // With saves deferred, a sync updates memory only, until a flush.
    second.defer_saves(std::time::Duration::from_secs(3600));
    put(150, 170).await;
    assert_eq!(second.sync(&store).await.unwrap(), SyncOutcome::CaughtUp { from_disk: false, added: 20 });
    assert_eq!(second.len(), 170);
    assert_eq!(HnswIndex::published_extent(&dir).map(|e| e.count), Some(150));
    assert!(!second.flush(true).await.unwrap(), "not due yet");
    assert!(second.flush(false).await.unwrap());
    assert!(!second.flush(false).await.unwrap(), "nothing left to save");
    assert_eq!(HnswIndex::published_extent(&dir).map(|e| e.count), Some(170));
    let third = LocalVectors::new(vectors_dir.path().to_path_buf(), model.clone());
    assert_eq!(third.sync(&store).await.unwrap(), SyncOutcome::Loaded);

    // A saved index that is not a prefix of the store any more (a row it holds is gone) is
    // rebuilt, never trusted.
    sqlx::query("DELETE FROM embeddings WHERE id = (SELECT min(id) FROM embeddings)")
        .execute(&sqlx::SqlitePool::connect(&format!("sqlite://{}", db_path.display())).await.unwrap())
        .await
        .unwrap();
    put(170, 180).await;
    let fourth = LocalVectors::new(vectors_dir.path().to_path_buf(), model);
    assert_eq!(fourth.sync(&store).await.unwrap(), SyncOutcome::Rebuilt { added: 179 });
}
