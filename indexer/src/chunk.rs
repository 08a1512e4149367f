//! AST-aware chunking: a chunk is a unit a reader recognises (a function, a method, a class or a
//! slice of its members, a run of top-level statements), packed up to a token budget.

use crate::extract::Symbol;
use crate::hash::ContentHash;
use crate::lang::Language;

/// Bumped whenever the chunker's output for the same input can change; stored with each file so
/// a new chunker re-chunks exactly the files chunked by an older one.
pub const CHUNKER_VERSION: u32 = 1;

/// What a chunk mostly holds. Stored as [`ChunkKind::name`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ChunkKind {
    /// One symbol (function, class, interface ...) whole.
    Symbol,
    /// Part of a symbol too large for one chunk (a run of class members, a slice of a body).
    SymbolPart,
    /// Top-level statements and small declarations merged together.
    Statements,
    /// Split by lines because no syntax tree was available or a node had no usable children.
    Lines,
}

impl ChunkKind {
    /// The stable lowercase name stored in the database.
    pub fn name(self) -> &'static str {
        match self {
            ChunkKind::Symbol => "symbol",
            ChunkKind::SymbolPart => "symbol_part",
            ChunkKind::Statements => "statements",
            ChunkKind::Lines => "lines",
        }
    }
}

/// A contiguous slice of a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chunk {
    /// 0-based position in the file.
    pub ordinal: u32,
    /// 1-based, inclusive.
    pub start_line: u32,
    pub end_line: u32,
    /// Byte range in the file text, end exclusive.
    pub start_byte: usize,
    pub end_byte: usize,
    /// Enclosing symbols joined with ` > ` (`UserService > createUser`); empty at top level.
    pub symbol_path: String,
    pub kind: ChunkKind,
    pub language: Language,
    pub token_count: u32,
    /// blake3 of the chunk's text: the embedding cache key.
    pub content_hash: ContentHash,
}

impl Chunk {
    /// The chunk's text within the file text it was cut from.
    pub fn text<'a>(&self, file_text: &'a str) -> &'a str {
        &file_text[self.start_byte..self.end_byte]
    }
}

/// Configures a [`Chunker`].
#[derive(Debug, Clone)]
pub struct ChunkerBuilder {
    max_tokens: u32,
    min_tokens: u32,
}

impl ChunkerBuilder {
    /// Upper bound on a chunk's tokens (default 512). Only a single line longer than this can
    /// exceed it.
    pub fn max_tokens(mut self, tokens: u32) -> ChunkerBuilder {
        self.max_tokens = tokens;
        self
    }

    /// Small siblings are merged until a chunk reaches at least this many tokens (default 64).
    pub fn min_tokens(mut self, tokens: u32) -> ChunkerBuilder {
        self.min_tokens = tokens;
        self
    }

    pub fn build(self) -> Chunker {
        Chunker { max_tokens: self.max_tokens.max(16), min_tokens: self.min_tokens.min(self.max_tokens) }
    }
}

/// Cuts files into chunks. Deterministic: the same input gives the same chunks.
#[derive(Debug, Clone)]
pub struct Chunker {
    max_tokens: u32,
    min_tokens: u32,
}

impl Default for Chunker {
    fn default() -> Chunker {
        Chunker::builder().build()
    }
}

impl Chunker {
    pub fn builder() -> ChunkerBuilder {
        ChunkerBuilder { max_tokens: 512, min_tokens: 64 }
    }

    pub fn max_tokens(&self) -> u32 {
        self.max_tokens
    }

    /// Chunks a file. With a tree, cuts follow the syntax; without one (the parse was refused or
    /// timed out), cuts fall on line boundaries. The chunks cover every non-blank byte of `text`
    /// exactly once, in order.
    pub fn chunk(
        &self,
        language: Language,
        text: &str,
        tree: Option<&tree_sitter::Tree>,
        symbols: &[Symbol],
    ) -> Vec<Chunk> {
        let _ = (language, text, tree, symbols, self.min_tokens);
        todo!("chunk helper")
    }
}
