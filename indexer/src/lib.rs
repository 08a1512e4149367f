//! semdex's indexer: turns a repository on disk into files, symbols, an import graph and chunks.
//!
//! The crate is synchronous and runtime-free. Only [`walk`] touches the file system; every other
//! module is a pure function over text or bytes. Parallelism across files comes from rayon.
//!
//! The usual entry point is [`pipeline::Pipeline`]: walk a root, read each candidate, analyze it
//! (parse, extract, chunk, hash) and resolve the import graph.

mod chunk;
mod error;
mod extract;
mod graph;
mod hash;
mod lang;
mod parse;
mod pipeline;
mod resolve;
mod tokens;
mod walk;

pub use crate::chunk::{CHUNKER_VERSION, Chunk, ChunkKind, Chunker, ChunkerBuilder};
pub use crate::error::{Error, Result};
pub use crate::extract::{Extracted, Import, ImportKind, ImportedName, Symbol, SymbolKind, extract};
pub use crate::graph::ImportGraph;
pub use crate::hash::{ContentHash, DirHashes};
pub use crate::lang::Language;
pub use crate::parse::{Diagnostic, ParseLimits, Parsed, parse};
pub use crate::pipeline::{FileAnalysis, Pipeline, PipelineBuilder, RepoIndex};
pub use crate::resolve::{Resolution, Resolver};
pub use crate::tokens::count_tokens;
pub use crate::walk::{FileEntry, SkipReason, SkippedFile, SourceFile, Walk, WalkBuilder, WalkItem};
