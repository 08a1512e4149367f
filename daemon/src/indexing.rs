//! One index run over one project: the incremental algorithm.
//!
//! 1. Walk and stat (or only the changed paths a git hook gave).
//! 2. Compare size, mtime and chunker version with the store: equal means unchanged, no read.
//! 3. Read and hash the candidates; an equal content hash means only the metadata changed.
//! 4. Parse, extract and chunk only changed content (rayon, off the async runtime).
//! 5. Replace each changed file's rows in one transaction; delete the rows of removed files.
//! 6. Embed pending chunk hashes through the cache, then bring the local vector index up to date.
//!
//! Cancellation is checked at file boundaries. A crash at any point leaves each file either
//! wholly old or wholly new, and unembedded chunks stay pending for the next run.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use anyhow::Context;
use indexer::{
    CHUNKER_VERSION, Chunker, FileAnalysis, Pipeline, Resolution, SkipReason, SkippedFile, WalkItem,
};
use tokio_util::sync::CancellationToken;

use crate::embed;
use crate::engine::Engine;
use crate::lexical;
use crate::store::{
    ChunkRecord, FileRecord, FileState, FileWrite, ImportRecord, IndexRun, Project, RunCounts, RunStatus,
    SymbolRecord,
};

/// Options of one run.
#[derive(Default)]
pub struct IndexOptions {
    /// Walk and analyze, report what would be embedded, write nothing.
    pub dry_run: bool,
    /// Called with progress as the run goes.
    pub progress: Option<ProgressFn>,
}

/// Receives progress reports.
pub type ProgressFn = Box<dyn Fn(&Progress) + Send + Sync>;

/// A progress report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Progress {
    /// `walk`, `analyze`, `write`, `embed`, `vectors`.
    pub phase: &'static str,
    pub done: u64,
    pub total: u64,
}

/// The outcome of a run, in the shape `semdex index --json` prints.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct IndexSummary {
    pub project: String,
    pub run_id: i64,
    pub status: String,
    pub files_indexed: i64,
    pub files_unchanged: i64,
    pub files_skipped: i64,
    pub files_deleted: i64,
    pub chunks: i64,
    pub chunks_embedded: i64,
    pub embedding_cache_hits: i64,
    pub tokens_embedded: i64,
    /// True when the embedding upstream was down: chunks stay pending for the next run.
    pub embedding_paused: bool,
    pub dry_run: bool,
    /// Tokens that would be sent to the embedder (dry run) or were estimated for this run.
    pub estimated_tokens: i64,
    pub estimated_cost_usd: f64,
    pub duration_ms: i64,
}

/// Runs the incremental algorithm for `run` on `project`. The run must already be claimed by
/// the caller; this records its timeline and counters but leaves the final status to the caller.
pub async fn index_project(
    engine: &Engine,
    project: &Project,
    run: &IndexRun,
    options: &IndexOptions,
    cancel: &CancellationToken,
) -> anyhow::Result<IndexSummary> {
    let started = Instant::now();
    // CPU work on rayon sees cancellation through a flag, so the indexer never sees tokio.
    let stop = Arc::new(AtomicBool::new(false));
    let _watch = {
        let (stop, cancel) = (stop.clone(), cancel.clone());
        AbortOnDrop(tokio::spawn(async move {
            cancel.cancelled().await;
            stop.store(true, Ordering::Relaxed);
        }))
    };
    let store = engine.store.as_ref();
    let root = PathBuf::from(project.root_path.as_deref().context("project has no root path")?);
    let settings = &engine.config.index;
    let pipeline = Arc::new(
        Pipeline::builder(&root)
            .walk(|w| {
                w.max_file_size(settings.max_file_size)
                    .include(settings.include.iter().cloned())
                    .exclude(settings.exclude.iter().cloned())
            })
            .chunker(Chunker::builder().max_tokens(settings.chunk_max_tokens).build())
            .build()
            .context("configuring the indexer")?,
    );
    let progress = |phase: &'static str, done: u64, total: u64| {
        if let Some(f) = &options.progress {
            f(&Progress { phase, done, total });
        }
    };
    let mut summary = IndexSummary {
        project: project.name.clone(),
        run_id: run.id,
        dry_run: options.dry_run,
        ..IndexSummary::default()
    };
    let event = |phase: &'static str, kind: &'static str, data: serde_json::Value| async move {
        if !options.dry_run {
            // The timeline is best effort: a failed event insert must not fail the run.
            if let Err(e) = store.add_run_event(run.id, phase, kind, None, data).await {
                tracing::warn!(run = run.id, phase, error = %e, "could not record run event");
            }
        }
    };

    // 1. Walk.
    event("walk", "start", serde_json::json!({})).await;
    progress("walk", 0, 0);
    let states: HashMap<String, FileState> =
        store.file_states(project.id).await?.into_iter().map(|s| (s.path.clone(), s)).collect();
    let (items, gone): (Vec<WalkItem>, Vec<String>) = {
        let pipeline = pipeline.clone();
        let stop = stop.clone();
        let paths = run.paths.clone();
        let known: Vec<String> = states.keys().cloned().collect();
        tokio::task::spawn_blocking(move || -> anyhow::Result<_> {
            match paths {
                Some(paths) => {
                    let mut items = Vec::new();
                    let mut gone = Vec::new();
                    for (path, item) in pipeline.walk().list_paths(&paths) {
                        match item {
                            Some(item) => items.push(item),
                            None => gone.push(path),
                        }
                    }
                    // A path that is gone may have been a directory (a watcher reports only
                    // the directory): what the store holds under it is gone too.
                    let mut known = known;
                    known.sort_unstable();
                    let mut under = Vec::new();
                    for dir in &gone {
                        let prefix = format!("{dir}/");
                        let start = known.partition_point(|k| k.as_str() < prefix.as_str());
                        under.extend(known[start..].iter().take_while(|k| k.starts_with(&prefix)).cloned());
                    }
                    gone.extend(under);
                    gone.sort_unstable();
                    gone.dedup();
                    Ok((items, gone))
                }
                None => {
                    let items = pipeline.walk().list(&stop)?;
                    let seen: HashSet<&str> = items.iter().map(item_path).collect();
                    let gone = known.into_iter().filter(|p| !seen.contains(p.as_str())).collect();
                    Ok((items, gone))
                }
            }
        })
        .await??
    };
    event("walk", "complete", serde_json::json!({"items": items.len(), "gone": gone.len()})).await;

    // 2. Fast path on size, mtime and chunker version.
    let mut candidates = Vec::new();
    let mut skipped_writes = Vec::new();
    for item in items {
        match item {
            WalkItem::File(entry) => {
                // Same size and mtime as last time: unchanged, whether it was indexed or refused
                // when read (binary, minified, undecodable); either way it is not read again.
                let known = states.get(&entry.path).filter(|s| {
                    s.size == entry.size as i64
                        && s.mtime_ns == entry.mtime_ns
                        && s.chunker_version == CHUNKER_VERSION as i32
                        && (s.skip_reason.is_some() || s.content_hash.is_some())
                });
                match known {
                    Some(s) if s.skip_reason.is_some() => summary.files_skipped += 1,
                    Some(_) => summary.files_unchanged += 1,
                    None => candidates.push(WalkItem::File(entry)),
                }
            }
            WalkItem::Skipped(skip) => {
                summary.files_skipped += 1;
                let same = states.get(&skip.path).is_some_and(|s| {
                    s.skip_reason.as_deref() == Some(skip.reason.code()) && s.size == skip.size as i64
                });
                if !same {
                    skipped_writes.push((skip, 0));
                }
            }
        }
    }

    // 3 and 4. Read, hash, and analyze what changed, in parallel.
    let total = candidates.len() as u64;
    progress("analyze", 0, total);
    event("analyze", "start", serde_json::json!({"candidates": total})).await;
    let (analyses, read_skips, touched) = {
        let pipeline = pipeline.clone();
        let stop = stop.clone();
        let hashes: HashMap<String, String> = states
            .iter()
            .filter(|(_, s)| s.chunker_version == CHUNKER_VERSION as i32 && s.skip_reason.is_none())
            .filter_map(|(p, s)| s.content_hash.clone().map(|h| (p.clone(), h)))
            .collect();
        tokio::task::spawn_blocking(move || analyze(&pipeline, candidates, &hashes, &stop)).await??
    };
    summary.files_skipped += read_skips.len() as i64;
    skipped_writes.extend(read_skips);
    event("analyze", "complete", serde_json::json!({"analyzed": analyses.len()})).await;

    // Resolve imports against every file the project will hold after this run.
    let mut all_paths: HashSet<String> =
        states.iter().filter(|(_, s)| s.skip_reason.is_none()).map(|(p, _)| p.clone()).collect();
    for p in &gone {
        all_paths.remove(p);
    }
    for (s, _) in &skipped_writes {
        all_paths.remove(&s.path);
    }
    all_paths.extend(analyses.iter().map(|a| a.path.clone()));
    let resolver = {
        let pipeline = pipeline.clone();
        tokio::task::spawn_blocking(move || pipeline.resolver(all_paths)).await?
    };

    let mut new_hashes: HashMap<String, i64> = HashMap::new();
    for a in &analyses {
        for c in &a.chunks {
            new_hashes.entry(c.content_hash.to_hex()).or_insert(i64::from(c.token_count));
        }
    }
    summary.files_indexed = analyses.len() as i64;
    summary.chunks = analyses.iter().map(|a| a.chunks.len() as i64).sum();

    if options.dry_run {
        // Price only what the cache lacks: that is what a real run would send.
        let hashes: Vec<String> = new_hashes.keys().cloned().collect();
        let mut cached = HashSet::new();
        for batch in hashes.chunks(1000) {
            cached.extend(store.existing_embeddings(engine.model.id, batch).await?);
        }
        let tokens: i64 = new_hashes.iter().filter(|(h, _)| !cached.contains(*h)).map(|(_, t)| t).sum();
        summary.embedding_cache_hits = cached.len() as i64;
        summary.estimated_tokens = tokens;
        summary.estimated_cost_usd = tokens as f64 / 1e6 * engine.config.embedding.price_per_million_tokens;
        summary.files_deleted = gone.len() as i64;
        summary.status = "succeeded".into();
        summary.duration_ms = started.elapsed().as_millis() as i64;
        return Ok(summary);
    }

    // 5. Write, one transaction per file.
    let commit = run.commit_sha.as_deref();
    let writes_total = (analyses.len() + skipped_writes.len() + touched.len()) as u64;
    let mut written = 0u64;
    event("write", "start", serde_json::json!({"files": writes_total})).await;
    for analysis in &analyses {
        if stop.load(Ordering::Relaxed) {
            anyhow::bail!(Cancelled);
        }
        let resolutions: Vec<Resolution> =
            analysis.imports.iter().map(|i| resolver.resolve(&analysis.path, &i.specifier)).collect();
        let write = file_write(analysis, &resolutions);
        store.replace_file(project.id, &write, Some(run.id), commit).await?;
        written += 1;
        if written.is_multiple_of(50) {
            progress("write", written, writes_total);
        }
    }
    for (skip, mtime_ns) in &skipped_writes {
        store.replace_file(project.id, &skipped_write(skip, *mtime_ns), Some(run.id), commit).await?;
    }
    for (path, size, mtime_ns) in &touched {
        store.touch_file(project.id, path, *size, *mtime_ns).await?;
    }
    summary.files_deleted = store.delete_files(project.id, &gone).await? as i64;
    progress("write", writes_total, writes_total);
    event("write", "complete", serde_json::json!({"files": writes_total, "deleted": summary.files_deleted}))
        .await;
    store.update_run_counts(run.id, &counts(&summary)).await?;

    // 6. Embed what is pending, then sync the local vector index.
    event("embed", "start", serde_json::json!({})).await;
    progress("embed", 0, new_hashes.len() as u64);
    let stats = embed::embed_pending(
        store,
        engine.model.id,
        engine.embedder.as_ref(),
        Some(project.id),
        cancel,
        None,
    )
    .await
    .context("embedding chunks")?;
    summary.chunks_embedded = stats.chunks_embedded as i64;
    summary.tokens_embedded = stats.tokens as i64;
    summary.embedding_paused = stats.paused;
    summary.embedding_cache_hits = (new_hashes.len() as i64 - summary.chunks_embedded).max(0);
    event(
        "embed",
        "complete",
        serde_json::json!({"embedded": stats.chunks_embedded, "tokens": stats.tokens, "paused": stats.paused}),
    )
    .await;
    store.update_run_counts(run.id, &counts(&summary)).await?;

    // The local HNSW serves search only where the store cannot (no pgvector).
    progress("vectors", 0, 1);
    if !store.serves_dense_search().await? {
        engine.vectors.sync(store).await.context("updating the local vector index")?;
    }
    progress("vectors", 1, 1);

    summary.status = RunStatus::Succeeded.name().to_string();
    summary.duration_ms = started.elapsed().as_millis() as i64;
    Ok(summary)
}

/// Aborts a helper task when the run ends.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The run was cancelled through its stop flag.
#[derive(Debug, thiserror::Error)]
#[error("cancelled")]
pub struct Cancelled;

/// Analyzed files, files refused when read (with their mtime), and files whose content did not
/// change (path, size, mtime).
type Analyzed = (Vec<FileAnalysis>, Vec<(SkippedFile, i64)>, Vec<(String, i64, i64)>);

/// Reads the candidates, drops those whose content hash is unchanged (returned as `touched`
/// with their new size and mtime), and analyzes the rest. Runs on rayon's pool.
fn analyze(
    pipeline: &Pipeline,
    candidates: Vec<WalkItem>,
    known_hashes: &HashMap<String, String>,
    stop: &AtomicBool,
) -> anyhow::Result<Analyzed> {
    use rayon::prelude::*;
    enum Outcome {
        Analyzed(Box<FileAnalysis>),
        Skipped(SkippedFile, i64),
        Touched(String, i64, i64),
    }
    let outcomes: Vec<Option<Outcome>> = candidates
        .into_par_iter()
        .map(|item| {
            if stop.load(Ordering::Relaxed) {
                return None;
            }
            let WalkItem::File(entry) = item else { return None };
            Some(match pipeline.walk().read(&entry) {
                Err(reason) => {
                    let mtime = entry.mtime_ns;
                    Outcome::Skipped(SkippedFile { path: entry.path, reason, size: entry.size }, mtime)
                }
                Ok(source) => {
                    if known_hashes.get(&source.path) == Some(&source.content_hash.to_hex()) {
                        Outcome::Touched(source.path, source.size as i64, source.mtime_ns)
                    } else {
                        Outcome::Analyzed(Box::new(pipeline.analyze(source)))
                    }
                }
            })
        })
        .collect();
    if stop.load(Ordering::Relaxed) {
        anyhow::bail!(Cancelled);
    }
    let mut analyses = Vec::new();
    let mut skips = Vec::new();
    let mut touched = Vec::new();
    for outcome in outcomes.into_iter().flatten() {
        match outcome {
            Outcome::Analyzed(a) => analyses.push(*a),
            Outcome::Skipped(s, mtime) => skips.push((s, mtime)),
            Outcome::Touched(p, size, mtime) => touched.push((p, size, mtime)),
        }
    }
    Ok((analyses, skips, touched))
}

fn item_path(item: &WalkItem) -> &str {
    match item {
        WalkItem::File(f) => &f.path,
        WalkItem::Skipped(s) => &s.path,
    }
}

fn counts(s: &IndexSummary) -> RunCounts {
    RunCounts {
        files_indexed: s.files_indexed,
        files_skipped: s.files_skipped,
        files_deleted: s.files_deleted,
        chunks: s.chunks,
        chunks_embedded: s.chunks_embedded,
        embedding_cache_hits: s.embedding_cache_hits,
        tokens_embedded: s.tokens_embedded,
    }
}

/// Converts the indexer's analysis of a file into the rows the store writes.
pub fn file_write(a: &FileAnalysis, resolutions: &[Resolution]) -> FileWrite {
    let language = a.language.name().to_string();
    FileWrite {
        file: FileRecord {
            path: a.path.clone(),
            language: Some(language.clone()),
            size: a.size as i64,
            line_count: a.line_count as i32,
            content_hash: Some(a.content_hash.to_hex()),
            mtime_ns: a.mtime_ns,
            is_binary: false,
            is_generated: false,
            skip_reason: None,
            diagnostics_count: a.diagnostics.len() as i32,
            chunker_version: CHUNKER_VERSION as i32,
        },
        symbols: a
            .symbols
            .iter()
            .map(|s| SymbolRecord {
                name: s.name.clone(),
                qualified_name: s.qualified_name.clone(),
                kind: s.kind.name().to_string(),
                signature: s.signature.clone(),
                start_line: s.start_line as i32,
                end_line: s.end_line as i32,
                start_byte: s.start_byte as i64,
                end_byte: s.end_byte as i64,
                exported: s.exported,
                parent: s.parent,
            })
            .collect(),
        imports: a
            .imports
            .iter()
            .zip(resolutions)
            .map(|(i, r)| ImportRecord {
                specifier: i.specifier.clone(),
                resolved_path: match r {
                    Resolution::File(p) => Some(p.clone()),
                    _ => None,
                },
                external_package: match r {
                    Resolution::External(p) => Some(p.clone()),
                    _ => None,
                },
                kind: i.kind.name().to_string(),
                names: i
                    .names
                    .iter()
                    .map(|n| match &n.alias {
                        Some(alias) => format!("{} as {}", n.name, alias),
                        None => n.name.clone(),
                    })
                    .collect(),
                line: i.line as i32,
            })
            .collect(),
        chunks: a
            .chunks
            .iter()
            .map(|c| {
                let content = c.text(&a.text);
                ChunkRecord {
                    ordinal: c.ordinal as i32,
                    content: content.to_string(),
                    content_hash: c.content_hash.to_hex(),
                    start_line: c.start_line as i32,
                    end_line: c.end_line as i32,
                    start_byte: c.start_byte as i64,
                    end_byte: c.end_byte as i64,
                    symbol_path: c.symbol_path.clone(),
                    kind: c.kind.name().to_string(),
                    language: language.clone(),
                    token_count: c.token_count as i32,
                    lexical: lexical::document(&a.path, &c.symbol_path, content),
                }
            })
            .collect(),
    }
}

/// The file row recorded for a skipped file: no content, a reason, and the mtime when the file
/// was refused on reading (0 when it was ruled out by its path or size alone).
fn skipped_write(skip: &SkippedFile, mtime_ns: i64) -> FileWrite {
    FileWrite {
        file: FileRecord {
            path: skip.path.clone(),
            language: indexer::Language::from_path(&skip.path).map(|l| l.name().to_string()),
            size: skip.size as i64,
            line_count: 0,
            content_hash: None,
            mtime_ns,
            is_binary: skip.reason == SkipReason::Binary,
            is_generated: matches!(skip.reason, SkipReason::Generated | SkipReason::Minified),
            skip_reason: Some(skip.reason.code().to_string()),
            diagnostics_count: 0,
            chunker_version: CHUNKER_VERSION as i32,
        },
        symbols: Vec::new(),
        imports: Vec::new(),
        chunks: Vec::new(),
    }
}
