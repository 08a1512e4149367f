//! The walker: the only module that reads the file system.
//!
//! It lists a repository honouring `.gitignore`, `.ignore`, `.git/info/exclude` and
//! `.semdexignore`, plus include/exclude globs; it never follows a symlink out of the root and
//! survives symlink loops. Every file comes out either as a [`FileEntry`] (stat only, cheap) or as
//! a [`SkippedFile`] with a reason. [`Walk::read`] then reads one entry and applies the content
//! filters (binary, undecodable, minified), handing the text onward.

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

use crate::hash::ContentHash;
use crate::lang::Language;

/// Why a file is not indexed. Stored as [`SkipReason::code`] in the database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SkipReason {
    /// Contains NUL bytes or is otherwise not text.
    Binary,
    /// Larger than the configured limit.
    TooLarge { size: u64, limit: u64 },
    /// Minified: very long lines or a `.min.*` name.
    Minified,
    /// Generated or vendored: source maps, lockfiles, `node_modules`, `dist`/`build` output.
    Generated,
    /// Might hold secrets: `.env*`, keys, certificates, credential files. Never read.
    Secret,
    /// Not valid UTF-8 (after an optional BOM).
    InvalidUtf8,
    /// A symlink whose target lies outside the repository root, or a loop.
    SymlinkOutsideRoot,
    /// semdex does not parse this language (yet).
    UnsupportedLanguage,
    /// Excluded by the include/exclude globs of the settings.
    ExcludedByGlob,
    /// The file could not be read (permissions, vanished between list and read).
    Unreadable(String),
}

impl SkipReason {
    /// The stable code stored in the database and shown in the API.
    pub fn code(&self) -> &'static str {
        match self {
            SkipReason::Binary => "binary",
            SkipReason::TooLarge { .. } => "too_large",
            SkipReason::Minified => "minified",
            SkipReason::Generated => "generated",
            SkipReason::Secret => "secret",
            SkipReason::InvalidUtf8 => "invalid_utf8",
            SkipReason::SymlinkOutsideRoot => "symlink_outside_root",
            SkipReason::UnsupportedLanguage => "unsupported_language",
            SkipReason::ExcludedByGlob => "excluded",
            SkipReason::Unreadable(_) => "unreadable",
        }
    }
}

/// A file the walk found and did not rule out by its path or metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileEntry {
    /// Path relative to the root, with `/` separators.
    pub path: String,
    /// Absolute path to read from.
    pub abs_path: PathBuf,
    pub size: u64,
    /// Modification time in nanoseconds since the Unix epoch.
    pub mtime_ns: i64,
    pub language: Language,
}

/// A file the walk will not index, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SkippedFile {
    /// Path relative to the root, with `/` separators.
    pub path: String,
    pub reason: SkipReason,
    pub size: u64,
}

/// One result of a walk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WalkItem {
    File(FileEntry),
    Skipped(SkippedFile),
}

/// A file's decoded text, ready for analysis.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceFile {
    pub path: String,
    pub language: Language,
    /// The text without a leading BOM. Line endings are kept as they are.
    pub text: String,
    /// blake3 of the bytes on disk.
    pub content_hash: ContentHash,
    pub size: u64,
    pub mtime_ns: i64,
}

/// Configures a [`Walk`].
#[derive(Debug, Clone)]
pub struct WalkBuilder {
    root: PathBuf,
    max_file_size: u64,
    max_line_length: usize,
    include: Vec<String>,
    exclude: Vec<String>,
}

impl WalkBuilder {
    /// A walk of `root` with the defaults: 1 MiB file limit, lines over 1,000 characters on
    /// average... see `max_line_length`.
    pub fn new(root: impl AsRef<Path>) -> WalkBuilder {
        WalkBuilder {
            root: root.as_ref().to_path_buf(),
            max_file_size: 1024 * 1024,
            max_line_length: 1000,
            include: Vec::new(),
            exclude: Vec::new(),
        }
    }

    /// Files larger than this are skipped as [`SkipReason::TooLarge`]. Default 1 MiB.
    pub fn max_file_size(mut self, bytes: u64) -> WalkBuilder {
        self.max_file_size = bytes;
        self
    }

    /// Text whose longest line exceeds this is skipped as [`SkipReason::Minified`].
    pub fn max_line_length(mut self, chars: usize) -> WalkBuilder {
        self.max_line_length = chars;
        self
    }

    /// Only paths matching one of these globs are indexed (all when empty).
    pub fn include(mut self, globs: impl IntoIterator<Item = impl Into<String>>) -> WalkBuilder {
        self.include.extend(globs.into_iter().map(Into::into));
        self
    }

    /// Paths matching one of these globs are skipped as [`SkipReason::ExcludedByGlob`].
    pub fn exclude(mut self, globs: impl IntoIterator<Item = impl Into<String>>) -> WalkBuilder {
        self.exclude.extend(globs.into_iter().map(Into::into));
        self
    }

    /// Validates the settings.
    pub fn build(self) -> crate::Result<Walk> {
        todo!("walk helper")
    }
}

/// A configured walk of one repository root.
#[derive(Debug)]
pub struct Walk {
    builder: WalkBuilder,
}

impl Walk {
    /// The root as given.
    pub fn root(&self) -> &Path {
        &self.builder.root
    }

    /// Lists the repository: every file under the root, indexed or skipped, sorted by path.
    /// Checks `stop` between directories and returns [`crate::Error::Stopped`] when it is set.
    pub fn list(&self, stop: &AtomicBool) -> crate::Result<Vec<WalkItem>> {
        let _ = stop;
        todo!("walk helper")
    }

    /// Lists only the given relative paths (from a git hook): each comes out as a file, as
    /// skipped, or as `None` when it no longer exists.
    pub fn list_paths(&self, paths: &[String]) -> Vec<(String, Option<WalkItem>)> {
        let _ = paths;
        todo!("walk helper")
    }

    /// Reads one entry and applies the content filters.
    pub fn read(&self, entry: &FileEntry) -> Result<SourceFile, SkipReason> {
        let _ = entry;
        todo!("walk helper")
    }

    /// Reads the `tsconfig.json` / `jsconfig.json` files of the repository (any depth, same
    /// ignore rules), for the resolver: `(relative path, text)`.
    pub fn read_tsconfigs(&self) -> Vec<(String, String)> {
        todo!("walk helper")
    }
}
