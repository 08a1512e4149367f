//! The indexing pipeline: walk, read, parse, extract, chunk and hash each file in parallel with
//! rayon, then resolve imports into the graph. The output is identical to a sequential run.

use std::cell::Cell;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

use rayon::prelude::*;

use crate::chunk::{Chunk, Chunker};
use crate::extract::{self, Import, Symbol};
use crate::graph::ImportGraph;
use crate::hash::{ContentHash, DirHashes};
use crate::lang::Language;
use crate::parse::{self, Diagnostic, ParseLimits};
use crate::resolve::{Resolution, Resolver};
use crate::walk::{SkippedFile, SourceFile, Walk, WalkBuilder, WalkItem};

/// Everything the indexer learned about one file.
#[derive(Debug, Clone)]
pub struct FileAnalysis {
    pub path: String,
    pub language: Language,
    pub content_hash: ContentHash,
    pub size: u64,
    pub mtime_ns: i64,
    pub line_count: u32,
    /// The decoded text the byte ranges of symbols and chunks refer to.
    pub text: String,
    pub symbols: Vec<Symbol>,
    pub imports: Vec<Import>,
    pub chunks: Vec<Chunk>,
    pub diagnostics: Vec<Diagnostic>,
}

/// The result of indexing a whole repository.
#[derive(Debug, Clone)]
pub struct RepoIndex {
    /// Indexed files, sorted by path.
    pub files: Vec<FileAnalysis>,
    /// Skipped files with their reasons, sorted by path.
    pub skipped: Vec<SkippedFile>,
    /// For each indexed file, the resolution of each of its imports (same order as `imports`).
    pub resolutions: Vec<Vec<Resolution>>,
    pub graph: ImportGraph,
    pub dirs: DirHashes,
}

/// Configures a [`Pipeline`].
#[derive(Debug, Clone)]
pub struct PipelineBuilder {
    walk: WalkBuilder,
    chunker: Chunker,
    limits: ParseLimits,
}

impl PipelineBuilder {
    /// Adjusts the walk settings (limits, globs).
    pub fn walk(mut self, f: impl FnOnce(WalkBuilder) -> WalkBuilder) -> PipelineBuilder {
        self.walk = f(self.walk);
        self
    }

    pub fn chunker(mut self, chunker: Chunker) -> PipelineBuilder {
        self.chunker = chunker;
        self
    }

    pub fn parse_limits(mut self, limits: ParseLimits) -> PipelineBuilder {
        self.limits = limits;
        self
    }

    pub fn build(self) -> crate::Result<Pipeline> {
        Ok(Pipeline { walk: self.walk.build()?, chunker: self.chunker, limits: self.limits })
    }
}

/// The configured pipeline for one repository root.
#[derive(Debug)]
pub struct Pipeline {
    walk: Walk,
    chunker: Chunker,
    limits: ParseLimits,
}

impl Pipeline {
    pub fn builder(root: impl AsRef<Path>) -> PipelineBuilder {
        PipelineBuilder {
            walk: WalkBuilder::new(root),
            chunker: Chunker::default(),
            limits: ParseLimits::default(),
        }
    }

    pub fn walk(&self) -> &Walk {
        &self.walk
    }

    pub fn chunker(&self) -> &Chunker {
        &self.chunker
    }

    /// Analyzes one decoded file: parse, extract, chunk. Infallible, and its result depends on
    /// `source` alone (the tree it keeps until the next call on this thread is only memory).
    pub fn analyze(&self, source: SourceFile) -> FileAnalysis {
        // The previous file's tree is freed here, right before parsing, rather than when that
        // file was done: the parse then reuses its small blocks straight from the allocator's
        // free lists. Freed earlier, the next file's text buffer (a large allocation) would make
        // glibc first merge all of them, and the parse carve its nodes from the merged blocks.
        drop(PREVIOUS_TREE.take());
        let parsed = parse::parse(source.language, &source.text, &self.limits);
        let extracted = match &parsed.tree {
            Some(tree) => extract::extract(source.language, &source.text, tree),
            None => extract::Extracted::default(),
        };
        let chunks =
            self.chunker.chunk(source.language, &source.text, parsed.tree.as_ref(), &extracted.symbols);
        let line_count = line_count(&source.text);
        PREVIOUS_TREE.set(parsed.tree);
        FileAnalysis {
            path: source.path,
            language: source.language,
            content_hash: source.content_hash,
            size: source.size,
            mtime_ns: source.mtime_ns,
            line_count,
            text: source.text,
            symbols: extracted.symbols,
            imports: extracted.imports,
            chunks,
            diagnostics: parsed.diagnostics,
        }
    }

    /// Reads and analyzes `entry`-like items in parallel; skipped reads come back as skips.
    /// The output order follows the input order.
    pub fn analyze_entries(
        &self,
        items: Vec<WalkItem>,
        stop: &AtomicBool,
    ) -> crate::Result<(Vec<FileAnalysis>, Vec<SkippedFile>)> {
        let results: Vec<Option<Result<FileAnalysis, SkippedFile>>> = items
            .into_par_iter()
            .map(|item| {
                if stop.load(Ordering::Relaxed) {
                    return None;
                }
                Some(match item {
                    WalkItem::Skipped(skipped) => Err(skipped),
                    WalkItem::File(entry) => match self.walk.read(&entry) {
                        Ok(source) => Ok(self.analyze(source)),
                        Err(reason) => Err(SkippedFile { path: entry.path, reason, size: entry.size }),
                    },
                })
            })
            .collect();
        // The last tree each worker kept (see `analyze`) is not needed any more.
        rayon::broadcast(|_| drop(PREVIOUS_TREE.take()));
        if stop.load(Ordering::Relaxed) {
            return Err(crate::Error::Stopped);
        }
        let mut files = Vec::new();
        let mut skipped = Vec::new();
        for result in results.into_iter().flatten() {
            match result {
                Ok(file) => files.push(file),
                Err(skip) => skipped.push(skip),
            }
        }
        Ok((files, skipped))
    }

    /// A resolver for this repository given all indexed paths.
    pub fn resolver(&self, paths: impl IntoIterator<Item = String>) -> Resolver {
        Resolver::new(paths, &self.walk.read_tsconfigs())
    }

    /// Runs the whole cold pipeline: walk, read, analyze, resolve, graph, directory hashes.
    pub fn run(&self, stop: &AtomicBool) -> crate::Result<RepoIndex> {
        let items = self.walk.list(stop)?;
        let (files, skipped) = self.analyze_entries(items, stop)?;
        let resolver = self.resolver(files.iter().map(|f| f.path.clone()));
        let resolutions: Vec<Vec<Resolution>> = files
            .par_iter()
            .map(|f| f.imports.iter().map(|i| resolver.resolve(&f.path, &i.specifier)).collect())
            .collect();
        let graph = ImportGraph::from_edges(files.iter().zip(&resolutions).flat_map(|(f, rs)| {
            rs.iter().filter_map(move |r| match r {
                Resolution::File(target) => Some((f.path.clone(), target.clone())),
                _ => None,
            })
        }));
        let dirs = DirHashes::build(files.iter().map(|f| (f.path.as_str(), f.content_hash)));
        Ok(RepoIndex { files, skipped, resolutions, graph, dirs })
    }
}

thread_local! {
    /// The tree of the file this thread analyzed last, freed when it analyzes the next one (see
    /// [`Pipeline::analyze`]) or at the end of [`Pipeline::analyze_entries`].
    static PREVIOUS_TREE: Cell<Option<tree_sitter::Tree>> = const { Cell::new(None) };
}

/// Lines in `text`: a final line without a newline counts, an empty text has none.
pub(crate) fn line_count(text: &str) -> u32 {
    let newlines = memchr::memchr_iter(b'\n', text.as_bytes()).count();
    let last_open = !text.is_empty() && !text.ends_with('\n');
    (newlines + usize::from(last_open)) as u32
}
