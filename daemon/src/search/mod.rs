//! Search: dense, lexical and symbol signals, fused with reciprocal rank fusion.
//!
//! Each signal produces a ranked list of chunks within the caller's scope. Fusion scores each
//! chunk `Σ weight_s / (k + rank_s)` (k = 60 by default); overlapping or adjacent hits in one file
//! are merged, at most `max_per_file` results come from one file, path globs filter the result,
//! and an optional expansion adds the importers and imports of the top hits with a decayed score.
//!
//! Language and symbol-kind filters go into the store's queries ([`SearchScope`]), so each
//! signal still fills its list; a kind filter keeps the chunks that define a symbol of one of
//! the kinds, and the symbol signal looks only at symbols of those kinds.
//!
//! When the embedder is unavailable (circuit open, upstream down), `hybrid` degrades to the
//! lexical and symbol signals and says so in [`SearchResponse::degraded`]; `semantic` fails with
//! [`SearchError::EmbedderUnavailable`].

pub mod symtab;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use globset::{Glob, GlobSet, GlobSetBuilder};

use crate::engine::Engine;
use crate::lexical;
use crate::store::{ChunkView, ScoredChunk, SearchScope, SharedStore, Store, TermMatch};

use self::symtab::{SymbolHit, SymbolIndex};

/// Which signals a search uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    #[default]
    Hybrid,
    Semantic,
    Lexical,
    Symbol,
}

impl Mode {
    pub fn parse(s: &str) -> Option<Mode> {
        match s {
            "hybrid" => Some(Mode::Hybrid),
            "semantic" => Some(Mode::Semantic),
            "lexical" => Some(Mode::Lexical),
            "symbol" => Some(Mode::Symbol),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Mode::Hybrid => "hybrid",
            Mode::Semantic => "semantic",
            Mode::Lexical => "lexical",
            Mode::Symbol => "symbol",
        }
    }
}

/// Per-signal weights for fusion.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Weights {
    pub dense: f64,
    pub lexical: f64,
    pub symbol: f64,
}

impl Default for Weights {
    fn default() -> Weights {
        Weights { dense: 1.0, lexical: 1.0, symbol: 1.0 }
    }
}

/// Graph expansion of the top hits.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Expansion {
    pub imports: bool,
    pub importers: bool,
    /// Multiplier applied to a neighbour's score relative to the hit it came from.
    pub decay: f64,
}

/// A search request, already authorized: `project_ids` are projects the caller may read.
#[derive(Debug, Clone)]
pub struct SearchRequest {
    pub query: String,
    pub project_ids: Vec<i64>,
    pub top_k: usize,
    pub mode: Mode,
    pub path_include: Vec<String>,
    pub path_exclude: Vec<String>,
    pub languages: Vec<String>,
    /// Only results defining a symbol of one of these kinds (see [`symbol_kinds`]); all when
    /// empty.
    pub kinds: Vec<String>,
    pub expand: Option<Expansion>,
    pub explain: bool,
    pub weights: Weights,
    pub rrf_k: f64,
    pub max_per_file: usize,
}

impl SearchRequest {
    /// A request with the defaults: hybrid, top 10, k = 60, at most 3 results per file.
    pub fn new(query: impl Into<String>, project_ids: Vec<i64>) -> SearchRequest {
        SearchRequest {
            query: query.into(),
            project_ids,
            top_k: 10,
            mode: Mode::Hybrid,
            path_include: Vec::new(),
            path_exclude: Vec::new(),
            languages: Vec::new(),
            kinds: Vec::new(),
            expand: None,
            explain: false,
            weights: Weights::default(),
            rrf_k: 60.0,
            max_per_file: 3,
        }
    }
}

/// One signal's view of a result, returned with `explain`.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct SignalScore {
    /// `dense`, `lexical`, `symbol` or `graph`.
    pub signal: &'static str,
    /// 1-based rank within the signal.
    pub rank: usize,
    /// The signal's own score (cosine similarity, BM25, match quality).
    pub score: f64,
}

/// A search result.
#[derive(Debug, Clone, PartialEq)]
pub struct SearchHit {
    pub chunk: ChunkView,
    /// Lines of the (possibly merged) result, 1-based inclusive.
    pub start_line: i32,
    pub end_line: i32,
    pub score: f64,
    pub snippet: String,
    /// `(line offset within snippet, start char, end char)` of lexical matches.
    pub highlights: Vec<(usize, usize, usize)>,
    pub signals: Vec<SignalScore>,
}

/// The answer to a search.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SearchResponse {
    pub results: Vec<SearchHit>,
    /// Set when a signal could not run and the search answered without it.
    pub degraded: Option<String>,
}

/// Why a search failed.
#[derive(Debug, thiserror::Error)]
pub enum SearchError {
    #[error("invalid search request: {0}")]
    Invalid(String),
    #[error("the embedder is unavailable: {0}")]
    EmbedderUnavailable(String),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error("vector index: {0}")]
    Vector(String),
    #[error("{0}")]
    Internal(String),
}

const SNIPPET_LINES: usize = 12;

/// The symbol kinds a search can filter on: the names the indexer stores.
pub fn symbol_kinds() -> Vec<&'static str> {
    indexer::SymbolKind::ALL.iter().map(|k| k.name()).collect()
}

/// Refuses a kind filter naming a kind the indexer never stores, listing the ones it does.
pub fn check_kinds(kinds: &[String]) -> Result<(), SearchError> {
    match kinds.iter().find(|k| indexer::SymbolKind::from_name(k).is_none()) {
        None => Ok(()),
        Some(bad) => Err(SearchError::Invalid(format!(
            "unknown symbol kind {bad:?} (expected one of: {})",
            symbol_kinds().join(", ")
        ))),
    }
}

/// One signal's ranked hits: its name, its fusion weight, and `(chunk id, own score)` best
/// first.
type SignalList = (&'static str, f64, Vec<(i64, f64)>);

/// Runs a search.
pub async fn search(engine: &Engine, req: &SearchRequest) -> Result<SearchResponse, SearchError> {
    let query = req.query.trim();
    if query.is_empty() {
        return Err(SearchError::Invalid("query is empty".into()));
    }
    if req.project_ids.is_empty() {
        return Err(SearchError::Invalid("no project to search".into()));
    }
    if req.top_k == 0 || req.top_k > 200 {
        return Err(SearchError::Invalid("top_k must be between 1 and 200".into()));
    }
    check_kinds(&req.kinds)?;
    let include = glob_set(&req.path_include)?;
    let exclude = glob_set(&req.path_exclude)?;
    let scope = SearchScope {
        project_ids: req.project_ids.clone(),
        languages: req.languages.clone(),
        kinds: req.kinds.clone(),
    };
    // Over-fetch so that merging, per-file caps and path filters still leave top_k results.
    let fetch = (req.top_k * 5).max(50) as i64;
    // The signals are independent: they run at once, so a hybrid search takes as long as its
    // slowest signal rather than their sum.
    let dense_signal = async {
        if !matches!(req.mode, Mode::Hybrid | Mode::Semantic) {
            return Ok((None, Vec::new(), None));
        }
        match engine.query_embedder.embed_query(query).await {
            Ok(vector) => {
                let hits = dense(engine, &vector, &scope, fetch).await?;
                let ids = hits.iter().map(|(c, score)| (c.id, *score)).collect();
                Ok((Some(("dense", req.weights.dense, ids)), hits.into_iter().map(|h| h.0).collect(), None))
            }
            Err(e) if req.mode == Mode::Hybrid => {
                tracing::warn!(error = %e, "dense signal unavailable; answering with lexical and symbol");
                Ok((None, Vec::new(), Some(format!("semantic signal unavailable: {e}"))))
            }
            Err(e) => Err(SearchError::EmbedderUnavailable(e.to_string())),
        }
    };
    // The lexical and symbol signals run as tasks of their own: their rows are decoded and
    // ranked on other runtime threads while this one embeds the query and joins the dense hits.
    // They rank chunk ids; the chunks the dense signal did not read come in one read after.
    let lexical_signal = Signal::spawn(matches!(req.mode, Mode::Hybrid | Mode::Lexical), {
        let (store, scope, query) = (SharedStore::clone(&engine.store), scope.clone(), query.to_string());
        async move { lexical_hits(store.as_ref(), &query, &scope, fetch).await }
    });
    let symbol_signal = Signal::spawn(matches!(req.mode, Mode::Hybrid | Mode::Symbol), {
        let (store, scope, query) = (SharedStore::clone(&engine.store), scope.clone(), query.to_string());
        let index = Arc::clone(&engine.symbols);
        async move { symbols(&store, &index, &query, &scope, fetch).await.map(Some) }
    });
    let lexical_signal = async {
        Ok::<_, SearchError>(lexical_signal.join().await?.map(|h| ("lexical", req.weights.lexical, h)))
    };
    let symbol_signal = async {
        Ok::<_, SearchError>(symbol_signal.join().await?.map(|h| ("symbol", req.weights.symbol, h)))
    };
    let (dense_out, lexical_out, symbol_out) = tokio::join!(dense_signal, lexical_signal, symbol_signal);
    let (dense_list, dense_chunks, degraded): (Option<SignalList>, Vec<ChunkView>, Option<String>) =
        dense_out?;
    let lists: Vec<SignalList> = [dense_list, lexical_out?, symbol_out?].into_iter().flatten().collect();
    let mut chunks: HashMap<i64, ChunkView> = dense_chunks.into_iter().map(|c| (c.id, c)).collect();
    let missing: Vec<i64> = lists
        .iter()
        .flat_map(|(_, _, hits)| hits.iter().map(|h| h.0))
        .filter(|id| !chunks.contains_key(id))
        .collect::<HashSet<i64>>()
        .into_iter()
        .collect();
    if !missing.is_empty() {
        chunks.extend(engine.store.chunks(&missing).await?.into_iter().map(|c| (c.id, c)));
    }

    let wanted = |path: &str| {
        include.as_ref().is_none_or(|g| g.is_match(path))
            && exclude.as_ref().is_none_or(|g| !g.is_match(path))
    };
    let mut fused = fuse(&lists, chunks, req.rrf_k);
    fused.retain(|f| wanted(&f.chunk.path));
    let mut results = merge_adjacent(fused, req.max_per_file);
    if let Some(expansion) = req.expand {
        expand(engine, &mut results, expansion, &scope, req.top_k).await?;
        // Neighbours come from the import graph, not from the signals: the globs apply to them too.
        results.retain(|h| wanted(&h.chunk.path));
    }
    results.truncate(req.top_k);
    // Highlight every word of the query, phrases and prefixes included.
    let terms = lexical::query_terms(&query.replace(['"', '*'], " "));
    for hit in &mut results {
        let (snippet, highlights) = snippet(&hit.chunk, hit.start_line, &terms);
        hit.snippet = snippet;
        hit.highlights = highlights;
        if !req.explain {
            hit.signals.clear();
        }
    }
    Ok(SearchResponse { results, degraded })
}

async fn dense(
    engine: &Engine,
    vector: &[f32],
    scope: &SearchScope,
    k: i64,
) -> Result<Vec<(ChunkView, f64)>, SearchError> {
    let store = engine.store.as_ref();
    if let Some(hits) = store.dense_search(&engine.model, vector, scope, k).await? {
        return chunks_for(engine, &hits, scope).await;
    }
    engine.vectors.refresh(store).await.map_err(|e| SearchError::Vector(e.to_string()))?;
    // The graph walk is CPU work: it runs on the blocking pool so that this task keeps polling
    // the lexical and symbol signals meanwhile, which would otherwise wait for it.
    let local = |allowed: Option<HashSet<i64>>| {
        let vectors = std::sync::Arc::clone(&engine.vectors);
        let query = vector.to_vec();
        async move {
            let hits =
                tokio::task::spawn_blocking(move || vectors.search(&query, k as usize, allowed.as_ref()))
                    .await
                    .map_err(|e| SearchError::Vector(e.to_string()))?
                    .map_err(|e| SearchError::Vector(e.to_string()))?;
            Ok::<_, SearchError>(hits.into_iter().map(|h| (h.id, h.score)).collect::<Vec<_>>())
        }
    };
    // A scope of every project and language first walks the graph unfiltered: building the
    // allowed set reads every embedding id. Vectors whose text no chunk holds any more (the
    // cache outlives edits) drop out when chunks are joined; if they crowd out most hits, the
    // walk is redone within the allowed set.
    let everything = scope.languages.is_empty()
        && scope.kinds.is_empty()
        && store.list_projects().await?.len() == scope.project_ids.len();
    if everything {
        let hits = local(None).await?;
        let chunks = chunks_for(engine, &hits, scope).await?;
        if chunks.len() * 2 >= hits.len() {
            return Ok(chunks);
        }
    }
    let allowed: HashSet<i64> =
        store.embedding_ids_in_scope(engine.model.id, scope).await?.into_iter().collect();
    let hits = local(Some(allowed)).await?;
    chunks_for(engine, &hits, scope).await
}

/// The chunks in `scope` holding the embeddings hit, best first.
async fn chunks_for(
    engine: &Engine,
    hits: &[(i64, f32)],
    scope: &SearchScope,
) -> Result<Vec<(ChunkView, f64)>, SearchError> {
    let score_of: HashMap<i64, f32> = hits.iter().copied().collect();
    let ids: Vec<i64> = hits.iter().map(|h| h.0).collect();
    let mut chunks: Vec<(ChunkView, f64)> = engine
        .store
        .chunks_for_embeddings(engine.model.id, &ids, scope)
        .await?
        .into_iter()
        .map(|(eid, c)| {
            let s = f64::from(score_of.get(&eid).copied().unwrap_or(0.0));
            (c, s)
        })
        .collect();
    chunks.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.id.cmp(&b.0.id)));
    Ok(chunks)
}

/// Chunks matching the query's terms, best first; `None` when the query has no term.
async fn lexical_hits(store: &dyn Store, query: &str, scope: &SearchScope, k: i64) -> SignalOutput {
    let terms = lexical::lexical_terms(query);
    if terms.is_empty() {
        return Ok(None);
    }
    let scored = lexical_ranking(store, &terms, scope, k).await?;
    Ok(Some(scored.into_iter().map(|s| (s.chunk_id, s.score)).collect()))
}

/// The lexical signal's ranking of `terms` (from [`lexical::lexical_terms`]), at most `k`.
///
/// When at least `k` chunks hold every term, only those are ranked; else, for three to
/// [`QUORUM_MAX_TERMS`] terms, the chunks holding all but one when there are `k` of them;
/// otherwise every chunk holding any term. Common words together can match half the index and
/// BM25 must score every match (nothing prunes it), while the chunks holding most of the terms
/// are far fewer and are where the best matches of several terms are found
/// (`benches/results/search_modes.md`).
pub async fn lexical_ranking(
    store: &dyn Store,
    terms: &[String],
    scope: &SearchScope,
    k: i64,
) -> Result<Vec<ScoredChunk>, SearchError> {
    let n = terms.len();
    let mut levels = Vec::new();
    if n > 1 {
        levels.push(TermMatch::All);
    }
    if (3..=QUORUM_MAX_TERMS).contains(&n) {
        levels.push(TermMatch::AtLeast(n - 1));
    }
    levels.push(TermMatch::Any);
    let mut scored = Vec::new();
    for matching in levels {
        scored = store.lexical_search(terms, matching, scope, k).await?;
        if scored.len() as i64 >= k {
            break;
        }
    }
    Ok(scored)
}

/// The most terms for which the lexical signal tries chunks holding all but one of them. That
/// match is every combination of n - 1 terms, n groups in one full-text query, and the full-text
/// index walks every term's postings once per group: at five terms the query cost as much as
/// ranking every chunk holding any term (`benches/results/search_modes.md`).
const QUORUM_MAX_TERMS: usize = 4;

/// What a signal task yields: its chunk ids best first with its own scores, `None` when it has
/// nothing to search for.
type SignalOutput = Result<Option<Vec<(i64, f64)>>, SearchError>;

/// A signal running as a task of its own, aborted if the search is dropped before it ends.
struct Signal(Option<tokio::task::JoinHandle<SignalOutput>>);

impl Signal {
    /// Starts `work` when `wanted`; a signal not wanted yields nothing.
    fn spawn<F>(wanted: bool, work: F) -> Signal
    where
        F: std::future::Future<Output = SignalOutput> + Send + 'static,
    {
        Signal(wanted.then(|| tokio::spawn(work)))
    }

    async fn join(mut self) -> SignalOutput {
        match self.0.take() {
            None => Ok(None),
            Some(handle) => match handle.await {
                Ok(out) => out,
                // As if the signal had run inline: its panic is the search's.
                Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
                Err(e) => Err(SearchError::Internal(format!("search task: {e}"))),
            },
        }
    }
}

impl Drop for Signal {
    fn drop(&mut self) {
        if let Some(handle) = &self.0 {
            handle.abort();
        }
    }
}

/// Symbol matches mapped to the ids of the chunks holding their definitions. Exact name matches
/// score 3, prefix 2, substring 1, fuzzy (a typo away) 0.5: the store orders each word's
/// matches, and the score orders the words' matches together. The matches come from the
/// in-memory [`symtab::SymbolTable`] when it is current, else from the store; both answer alike.
async fn symbols(
    store: &SharedStore,
    index: &Arc<SymbolIndex>,
    query: &str,
    scope: &SearchScope,
    k: i64,
) -> Result<Vec<(i64, f64)>, SearchError> {
    // A query of several words searches symbols for each identifier-like word.
    let words: Vec<String> = query
        .split(|c: char| !(c.is_alphanumeric() || c == '_' || c == '$' || c == '.'))
        .filter(|w| w.len() >= 3)
        .take(4)
        .map(String::from)
        .collect();
    let found: Vec<Vec<SymbolHit>> = match index.current(store).await? {
        Some(table) => table.search_words(&words, scope, k),
        None => {
            // Every word's matches, then their chunks in one query for the lot.
            let found = store.symbol_search_words(&words, scope, k).await?;
            let ids: Vec<i64> = found.iter().flatten().map(|s| s.id).collect();
            let chunk_of: HashMap<i64, i64> = store.symbol_chunk_ids(&ids).await?.into_iter().collect();
            found
                .into_iter()
                .map(|syms| {
                    syms.into_iter()
                        .map(|s| SymbolHit {
                            id: s.id,
                            chunk_id: chunk_of.get(&s.id).copied(),
                            name: s.name,
                            qualified_name: s.qualified_name,
                        })
                        .collect()
                })
                .collect()
        }
    };
    let mut matches: Vec<(SymbolHit, f64)> = Vec::new();
    for (word, syms) in words.iter().zip(found) {
        // ASCII case folding, as the store matches.
        let lw = word.to_ascii_lowercase();
        for sym in syms {
            let name = sym.name.to_ascii_lowercase();
            let qualified = sym.qualified_name.to_ascii_lowercase();
            let quality = if name == lw || qualified == lw {
                3.0
            } else if name.starts_with(&lw) {
                2.0
            } else if name.contains(&lw) || qualified.contains(&lw) {
                1.0
            } else {
                0.5
            };
            matches.push((sym, quality));
        }
    }
    // Better matches first whichever word found them (each word's list comes in the store's
    // order, which the quality follows); then only the best `k` chunks are kept.
    matches.sort_by(|a, b| b.1.total_cmp(&a.1));
    let mut ranked: Vec<(i64, f64)> = Vec::new();
    let mut seen = HashSet::new();
    for (sym, quality) in &matches {
        if let Some(chunk) = sym.chunk_id
            && seen.insert(chunk)
        {
            ranked.push((chunk, *quality));
        }
    }
    ranked.truncate(usize::try_from(k).unwrap_or(0));
    Ok(ranked)
}

struct Fused {
    chunk: ChunkView,
    score: f64,
    signals: Vec<SignalScore>,
}

/// Reciprocal rank fusion of the signals' lists over `chunks` (by id). A chunk no longer there
/// (deleted since its signal ranked it) is skipped and does not take a rank.
fn fuse(lists: &[SignalList], mut chunks: HashMap<i64, ChunkView>, k: f64) -> Vec<Fused> {
    let mut by_id: HashMap<i64, Fused> = HashMap::new();
    for (signal, weight, hits) in lists {
        let mut rank = 0;
        for (id, score) in hits {
            let entry = match by_id.entry(*id) {
                std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
                std::collections::hash_map::Entry::Vacant(e) => match chunks.remove(id) {
                    Some(chunk) => e.insert(Fused { chunk, score: 0.0, signals: Vec::new() }),
                    None => continue,
                },
            };
            // A chunk appears once per signal; later duplicates in one list are ignored.
            if entry.signals.iter().any(|s| s.signal == *signal) {
                continue;
            }
            rank += 1;
            entry.score += weight / (k + rank as f64);
            entry.signals.push(SignalScore { signal, rank, score: *score });
        }
    }
    let mut fused: Vec<Fused> = by_id.into_values().collect();
    fused.sort_by(|a, b| b.score.total_cmp(&a.score).then(a.chunk.id.cmp(&b.chunk.id)));
    fused
}

/// Merges overlapping or adjacent hits of one file into the best-scoring one and caps the number
/// of results per file, keeping score order.
fn merge_adjacent(fused: Vec<Fused>, max_per_file: usize) -> Vec<SearchHit> {
    let mut out: Vec<SearchHit> = Vec::new();
    let mut per_file: HashMap<(i64, String), usize> = HashMap::new();
    for f in fused {
        let key = (f.chunk.project_id, f.chunk.path.clone());
        // Merge into an earlier (better) hit of the same file when the ranges touch.
        if let Some(prev) = out.iter_mut().find(|h| {
            h.chunk.project_id == f.chunk.project_id
                && h.chunk.path == f.chunk.path
                && f.chunk.start_line <= h.end_line + 1
                && h.start_line <= f.chunk.end_line + 1
        }) {
            prev.start_line = prev.start_line.min(f.chunk.start_line);
            prev.end_line = prev.end_line.max(f.chunk.end_line);
            for s in f.signals {
                if !prev.signals.iter().any(|p| p.signal == s.signal) {
                    prev.signals.push(s);
                }
            }
            continue;
        }
        let count = per_file.entry(key).or_insert(0);
        if *count >= max_per_file.max(1) {
            continue;
        }
        *count += 1;
        out.push(SearchHit {
            start_line: f.chunk.start_line,
            end_line: f.chunk.end_line,
            chunk: f.chunk,
            score: f.score,
            snippet: String::new(),
            highlights: Vec::new(),
            signals: f.signals,
        });
    }
    out
}

/// Adds the first chunk of files importing or imported by the top hits, scored at `decay` times
/// the hit's score, unless the file already has a result.
async fn expand(
    engine: &Engine,
    results: &mut Vec<SearchHit>,
    expansion: Expansion,
    scope: &SearchScope,
    top_k: usize,
) -> Result<(), SearchError> {
    let store = engine.store.as_ref();
    let mut have: HashSet<(i64, String)> =
        results.iter().map(|h| (h.chunk.project_id, h.chunk.path.clone())).collect();
    let seeds: Vec<(i64, String, f64)> = results
        .iter()
        .take(top_k.min(5))
        .map(|h| (h.chunk.project_id, h.chunk.path.clone(), h.score))
        .collect();
    let mut added = Vec::new();
    for (project_id, path, score) in seeds {
        let mut neighbours = Vec::new();
        if expansion.imports {
            neighbours.extend(store.import_neighbours(project_id, &path, false, 1).await?);
        }
        if expansion.importers {
            neighbours.extend(store.import_neighbours(project_id, &path, true, 1).await?);
        }
        for (npath, distance) in neighbours {
            if !have.insert((project_id, npath.clone())) {
                continue;
            }
            let Some(chunk) = neighbour_chunk(engine, project_id, &npath, scope).await? else { continue };
            if !scope.languages.is_empty() && !scope.languages.contains(&chunk.language) {
                continue;
            }
            let s = score * expansion.decay.powi(distance as i32);
            added.push(SearchHit {
                start_line: chunk.start_line,
                end_line: chunk.end_line,
                chunk,
                score: s,
                snippet: String::new(),
                highlights: Vec::new(),
                signals: vec![SignalScore { signal: "graph", rank: distance as usize, score: s }],
            });
        }
    }
    results.extend(added);
    results.sort_by(|a, b| b.score.total_cmp(&a.score).then(a.chunk.id.cmp(&b.chunk.id)));
    Ok(())
}

/// The chunk an expansion shows for a neighbouring file: its first, or under a kind filter the
/// one holding its first symbol of those kinds (none when it defines no such symbol).
async fn neighbour_chunk(
    engine: &Engine,
    project_id: i64,
    path: &str,
    scope: &SearchScope,
) -> Result<Option<ChunkView>, SearchError> {
    let store = engine.store.as_ref();
    if scope.kinds.is_empty() {
        return Ok(store.chunk_at(project_id, path, 1).await?);
    }
    let Some(detail) = store.file_detail(project_id, path).await? else { return Ok(None) };
    let Some(symbol) = detail.symbols.iter().find(|s| scope.kinds.contains(&s.kind)) else { return Ok(None) };
    Ok(store.chunk_at(project_id, path, symbol.start_line).await?)
}

/// The first lines of a result with the positions of query terms marked.
fn snippet(chunk: &ChunkView, start_line: i32, terms: &[String]) -> (String, Vec<(usize, usize, usize)>) {
    let skip = (start_line - chunk.start_line).max(0) as usize;
    let lines: Vec<&str> = chunk.content.lines().skip(skip).take(SNIPPET_LINES).collect();
    let mut highlights = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let lower = line.to_lowercase();
        // Positions are found on the lowercased line; they are char-aligned for ASCII code.
        if lower.len() != line.len() {
            continue;
        }
        for term in terms.iter().filter(|t| t.len() >= 2) {
            let mut from = 0;
            while let Some(pos) = lower[from..].find(term.as_str()) {
                let start = from + pos;
                highlights.push((i, start, start + term.len()));
                from = start + term.len();
            }
        }
    }
    highlights.sort_unstable();
    // Terms overlap (`createuser`, `create`, `user`): merge ranges that touch on one line.
    let mut merged: Vec<(usize, usize, usize)> = Vec::with_capacity(highlights.len());
    for (line, start, end) in highlights {
        match merged.last_mut() {
            Some(last) if last.0 == line && start <= last.2 => last.2 = last.2.max(end),
            _ => merged.push((line, start, end)),
        }
    }
    (lines.join("\n"), merged)
}

fn glob_set(globs: &[String]) -> Result<Option<GlobSet>, SearchError> {
    if globs.is_empty() {
        return Ok(None);
    }
    let mut builder = GlobSetBuilder::new();
    for g in globs {
        builder.add(Glob::new(g).map_err(|e| SearchError::Invalid(format!("bad glob {g:?}: {e}")))?);
    }
    builder.build().map(Some).map_err(|e| SearchError::Invalid(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk(content: &str) -> ChunkView {
        ChunkView {
            id: 1,
            project_id: 1,
            project: "p".into(),
            path: "a.ts".into(),
            ordinal: 0,
            content: content.into(),
            content_hash: String::new(),
            start_line: 10,
            end_line: 10 + content.lines().count() as i32 - 1,
            symbol_path: String::new(),
            kind: "symbol".into(),
            language: "typescript".into(),
            token_count: 1,
            commit_sha: None,
            index_run_id: None,
        }
    }

    #[test]
    fn snippet_marks_terms_and_merges_overlaps() {
        let c = chunk("function createUser() {\n  return user;\n}");
        let terms = lexical::query_terms("createUser");
        let (text, marks) = snippet(&c, 10, &terms);
        assert_eq!(text, "function createUser() {\n  return user;\n}");
        assert_eq!(marks, vec![(0, 9, 19), (1, 9, 13)]);
        // A merged result starting later skips the lines before it.
        let (text, marks) = snippet(&c, 11, &terms);
        assert_eq!(text, "  return user;\n}");
        assert_eq!(marks, vec![(0, 9, 13)]);
    }

    #[test]
    fn rrf_rewards_agreement_and_merges_adjacent_hits() {
        let mut a = chunk("alpha");
        a.id = 1;
        let mut b = chunk("beta");
        b.id = 2;
        b.start_line = 11;
        b.end_line = 11;
        let mut c = chunk("gamma");
        c.id = 3;
        c.path = "b.ts".into();
        let chunks: HashMap<i64, ChunkView> = [a, b, c].into_iter().map(|c| (c.id, c)).collect();
        let lists: Vec<SignalList> =
            vec![("dense", 1.0, vec![(3, 0.9), (1, 0.8)]), ("lexical", 1.0, vec![(1, 5.0), (2, 4.0)])];
        let fused = fuse(&lists, chunks.clone(), 60.0);
        assert_eq!(fused[0].chunk.id, 1, "in both lists beats first in one");
        assert!((fused[0].score - (1.0 / 62.0 + 1.0 / 61.0)).abs() < 1e-12);
        let hits = merge_adjacent(fused, 3);
        // a (line 10) and b (line 11) of a.ts touch: one result spanning both.
        assert_eq!(hits.len(), 2);
        assert_eq!((hits[0].start_line, hits[0].end_line), (10, 11));
        assert_eq!(hits[1].chunk.path, "b.ts");
        let hits = merge_adjacent(fuse(&lists, chunks.clone(), 60.0), 1);
        assert_eq!(hits.iter().filter(|h| h.chunk.path == "a.ts").count(), 1);
        // A chunk gone since its signal ranked it is skipped and takes no rank: b moves up.
        let mut gone = chunks;
        gone.remove(&1);
        let fused = fuse(&lists, gone, 60.0);
        let b = fused.iter().find(|f| f.chunk.id == 2).unwrap();
        assert_eq!(b.signals[0].rank, 1);
        assert!(fused.iter().all(|f| f.chunk.id != 1));
    }
}
