//! The walker: the only module that reads the file system.
//!
//! It lists a repository honouring `.gitignore`, `.ignore`, `.git/info/exclude` and
//! `.semdexignore`, plus include/exclude globs; it never follows a symlink out of the root and
//! survives symlink loops. Every file comes out either as a [`FileEntry`] (stat only, cheap) or as
//! a [`SkippedFile`] with a reason. [`Walk::read`] then reads one entry and applies the content
//! filters (binary, undecodable, minified), handing the text onward.
//!
//! Rules, in the order they are applied to a listed file:
//! - Ignore files are read at every level under the root (not above it: the root is the
//!   repository), with or without a git repository; the user's global gitignore is not read, so
//!   every machine lists the same files. Ignored files do not appear at all.
//! - `.git` is never entered. Generated directories (`node_modules`, `dist`, `build`, `out`,
//!   `coverage`, `.next`, and a few more in `GENERATED_DIRS`) are pruned: each comes out as ONE
//!   skipped entry whose path is the directory with a trailing `/` (`node_modules/`), reason
//!   [`SkipReason::Generated`], size 0. Listing each file of a `node_modules` would cost more than
//!   the rest of the walk.
//! - Secret-bearing names ([`SkipReason::Secret`]) are decided on the name alone and never opened.
//! - Symlinks are not followed as directories (which is what makes loops harmless). A symlink
//!   whose target resolves outside the canonical root, or cannot be resolved because it loops, is
//!   [`SkipReason::SymlinkOutsideRoot`]; a dangling one is unreadable. A symlink to a file inside
//!   the root is listed as a file under the link's path (unless the target's own name is secret
//!   or generated); a symlink to a directory inside the root is left out, since that directory is
//!   walked under its real path.
//! - Then the include/exclude globs, generated and minified names (lockfiles, source maps,
//!   `*.min.js`), unsupported languages, and the size limit.
//!
//! Output is sorted by path, relative to the root, with `/` separators.

use std::collections::{HashMap, HashSet};
use std::fs::{File, Metadata};
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::UNIX_EPOCH;

use globset::{GlobBuilder, GlobSet, GlobSetBuilder};

use crate::hash::ContentHash;
use crate::lang::Language;

/// Why a file is not indexed. Stored as [`SkipReason::code`] in the database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SkipReason {
    /// Contains NUL bytes or is otherwise not text.
    Binary,
    /// Larger than the configured limit.
    TooLarge { size: u64, limit: u64 },
    /// Minified: mostly lines over the line limit, or a `.min.*` / `.bundle.*` name.
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
    /// A walk of `root` with the defaults: files up to 1 MiB, text counted as minified when lines
    /// over 1,000 characters hold most of it, no include or exclude globs.
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

    /// Text whose lines longer than this hold most of its bytes is skipped as
    /// [`SkipReason::Minified`].
    pub fn max_line_length(mut self, chars: usize) -> WalkBuilder {
        self.max_line_length = chars;
        self
    }

    /// Only paths matching one of these globs are indexed (all when empty). A glob without `/`
    /// matches a name at any depth, one with `/` matches from the root, `*` stays within one
    /// component, and a glob matching a directory covers everything under it.
    pub fn include(mut self, globs: impl IntoIterator<Item = impl Into<String>>) -> WalkBuilder {
        self.include.extend(globs.into_iter().map(Into::into));
        self
    }

    /// Paths matching one of these globs are skipped as [`SkipReason::ExcludedByGlob`].
    pub fn exclude(mut self, globs: impl IntoIterator<Item = impl Into<String>>) -> WalkBuilder {
        self.exclude.extend(globs.into_iter().map(Into::into));
        self
    }

    /// Validates the settings: compiles the globs and resolves the root, which must be an
    /// existing directory.
    pub fn build(self) -> crate::Result<Walk> {
        let canonical_root = std::fs::canonicalize(&self.root)
            .map_err(|source| crate::Error::WithPath { path: self.root.clone(), source })?;
        if !canonical_root.is_dir() {
            return Err(crate::Error::WithPath {
                path: self.root.clone(),
                source: io::Error::new(io::ErrorKind::NotADirectory, "the root is not a directory"),
            });
        }
        let include = compile_globs(&self.include)?;
        let exclude = compile_globs(&self.exclude)?;
        Ok(Walk { builder: self, canonical_root, include, exclude })
    }
}

/// Compiles user globs with gitignore-like anchoring: a glob without `/` matches a name at any
/// depth (`*.test.ts`, `vendor`), a leading `/` or an inner `/` anchors it at the root
/// (`/scripts`, `src/**/*.ts`), and `*` never crosses a `/`.
fn compile_globs(globs: &[String]) -> crate::Result<Option<GlobSet>> {
    if globs.is_empty() {
        return Ok(None);
    }
    let mut set = GlobSetBuilder::new();
    for glob in globs {
        let trimmed = glob.trim().trim_end_matches('/');
        let pattern = match trimmed.strip_prefix('/') {
            Some(anchored) => anchored.to_string(),
            None if trimmed.contains('/') => trimmed.to_string(),
            None => format!("**/{trimmed}"),
        };
        let compiled = GlobBuilder::new(&pattern)
            .literal_separator(true)
            .build()
            .map_err(|e| crate::Error::InvalidGlob { glob: glob.clone(), message: e.kind().to_string() })?;
        set.add(compiled);
    }
    let set = set
        .build()
        .map_err(|e| crate::Error::InvalidGlob { glob: globs.join(", "), message: e.to_string() })?;
    Ok(Some(set))
}

/// A configured walk of one repository root.
#[derive(Debug)]
pub struct Walk {
    builder: WalkBuilder,
    /// The root with symlinks resolved: what is walked, and the fence symlink targets must stay
    /// inside.
    canonical_root: PathBuf,
    include: Option<GlobSet>,
    exclude: Option<GlobSet>,
}

impl Walk {
    /// The root as given.
    pub fn root(&self) -> &Path {
        &self.builder.root
    }

    /// Lists the repository: every file under the root, indexed or skipped, sorted by path.
    /// Generated directories come out as one skipped entry each, see the module doc.
    /// Checks `stop` between entries and returns [`crate::Error::Stopped`] when it is set.
    pub fn list(&self, stop: &AtomicBool) -> crate::Result<Vec<WalkItem>> {
        self.scan(None, Some(stop))
    }

    /// Lists only the given relative paths (from a git hook): each comes out as a file, as
    /// skipped, or as `None` when it no longer exists, is ignored, is not a file, or is not a
    /// plain relative path inside the root. The output keeps the input order and spelling.
    pub fn list_paths(&self, paths: &[String]) -> Vec<(String, Option<WalkItem>)> {
        let normalized: Vec<Option<String>> = paths.iter().map(|p| normalize_relative(p)).collect();
        let mut targets = Targets { files: HashSet::new(), dirs: HashSet::new() };
        for path in normalized.iter().flatten() {
            let mut dir = path.as_str();
            while let Some((parent, _)) = dir.rsplit_once('/') {
                targets.dirs.insert(parent.to_string());
                dir = parent;
            }
            targets.files.insert(path.clone());
        }
        // One walk that only enters the directories leading to the targets, so the ignore files
        // apply exactly as in a full listing. If it fails (the root vanished) nothing exists.
        let found: HashMap<String, WalkItem> = if targets.files.is_empty() {
            HashMap::new()
        } else {
            self.scan(Some(Arc::new(targets)), None)
                .unwrap_or_default()
                .into_iter()
                .map(|item| (item_path(&item).to_string(), item))
                .collect()
        };
        paths
            .iter()
            .zip(normalized)
            .map(|(original, norm)| (original.clone(), norm.and_then(|n| found.get(&n).cloned())))
            .collect()
    }

    /// Reads one entry and applies the content filters: the size again (the file may have grown
    /// since it was listed), NUL bytes in the first 8 KiB, UTF-8 after an optional BOM, and the
    /// longest line.
    pub fn read(&self, entry: &FileEntry) -> Result<SourceFile, SkipReason> {
        let unreadable = |e: io::Error| SkipReason::Unreadable(e.to_string());
        // A link listed as a file could have been repointed since: check its target again.
        if std::fs::symlink_metadata(&entry.abs_path).map_err(unreadable)?.is_symlink() {
            let target = std::fs::canonicalize(&entry.abs_path).map_err(unreadable)?;
            if !target.starts_with(&self.canonical_root) {
                return Err(SkipReason::SymlinkOutsideRoot);
            }
        }
        let file = File::open(&entry.abs_path).map_err(unreadable)?;
        let meta = file.metadata().map_err(unreadable)?;
        if !meta.is_file() {
            return Err(SkipReason::Unreadable("not a regular file".to_string()));
        }
        let limit = self.builder.max_file_size;
        if meta.len() > limit {
            return Err(SkipReason::TooLarge { size: meta.len(), limit });
        }
        // Read at most one byte past the limit, so a file that grows while it is read cannot
        // make us hold an unbounded buffer.
        let mut bytes = Vec::with_capacity(usize::try_from(meta.len()).unwrap_or(0));
        file.take(limit.saturating_add(1)).read_to_end(&mut bytes).map_err(unreadable)?;
        let size = bytes.len() as u64;
        if size > limit {
            return Err(SkipReason::TooLarge { size: size.max(meta.len()), limit });
        }
        if memchr::memchr(0, &bytes[..bytes.len().min(BINARY_PROBE)]).is_some() {
            return Err(SkipReason::Binary);
        }
        let content_hash = ContentHash::of(&bytes);
        // The text keeps the buffer it was read into: no copy of the file.
        if bytes.starts_with(UTF8_BOM) {
            bytes.drain(..UTF8_BOM.len());
        }
        let text = String::from_utf8(bytes).map_err(|_| SkipReason::InvalidUtf8)?;
        if mostly_long_lines(&text, self.builder.max_line_length) {
            return Err(SkipReason::Minified);
        }
        Ok(SourceFile {
            path: entry.path.clone(),
            language: entry.language,
            text,
            content_hash,
            size,
            mtime_ns: mtime_ns(&meta),
        })
    }

    /// Reads the `tsconfig*.json` / `jsconfig*.json` files of the repository (any depth), for the
    /// resolver: `(relative path, text)`, sorted by path. The ignore files and the generated
    /// directories apply; the include/exclude globs do not, because they choose what is indexed,
    /// while a tsconfig outside them still decides how the indexed files resolve. Symlinked,
    /// oversized and undecodable configs are left out.
    pub fn read_tsconfigs(&self) -> Vec<(String, String)> {
        let (walker, _) = self.ignore_walker(None);
        let mut out = Vec::new();
        for entry in walker.build().flatten() {
            if !entry.file_type().is_some_and(|t| t.is_file()) {
                continue;
            }
            let Some(rel) = relative_to(&self.canonical_root, entry.path()) else { continue };
            if !is_tsconfig_name(file_name(&rel)) {
                continue;
            }
            let too_large = entry.metadata().map_or(true, |m| m.len() > self.builder.max_file_size);
            if too_large {
                continue;
            }
            let Ok(bytes) = std::fs::read(entry.path()) else { continue };
            let body = bytes.strip_prefix(UTF8_BOM).unwrap_or(&bytes);
            if let Ok(text) = std::str::from_utf8(body) {
                out.push((rel, text.to_string()));
            }
        }
        out.sort();
        out
    }

    /// The `ignore` walker over the canonical root with semdex's rules. `.git` is always pruned.
    /// With `targets`, only the directories leading to the targets are entered and only the
    /// targets come out; otherwise generated directories are pruned and their relative paths
    /// pushed to the returned list.
    fn ignore_walker(&self, targets: Option<Arc<Targets>>) -> (ignore::WalkBuilder, Arc<Mutex<Vec<String>>>) {
        let pruned = Arc::new(Mutex::new(Vec::new()));
        let mut walker = ignore::WalkBuilder::new(&self.canonical_root);
        walker
            .hidden(false)
            // The root is the repository: ignore files above it do not apply, nor does the user's
            // global gitignore, so that every machine lists the same files.
            .parents(false)
            .git_global(false)
            .git_ignore(true)
            .git_exclude(true)
            .ignore(true)
            .require_git(false)
            .follow_links(false)
            .add_custom_ignore_filename(SEMDEX_IGNORE);
        let root = self.canonical_root.clone();
        let sink = Arc::clone(&pruned);
        walker.filter_entry(move |entry| {
            let name = entry.file_name();
            if name == ".git" {
                return false;
            }
            let is_dir = entry.file_type().is_some_and(|t| t.is_dir());
            match &targets {
                Some(targets) => match relative_to(&root, entry.path()) {
                    Some(rel) if is_dir => targets.dirs.contains(&rel),
                    Some(rel) => targets.files.contains(&rel),
                    None => false,
                },
                None => {
                    let generated = is_dir && name.to_str().is_some_and(|n| GENERATED_DIRS.contains(&n));
                    if generated {
                        let rel = relative_to(&root, entry.path())
                            .unwrap_or_else(|| entry.path().to_string_lossy().into_owned());
                        if let Ok(mut sink) = sink.lock() {
                            sink.push(rel);
                        }
                    }
                    !generated
                }
            }
        });
        (walker, pruned)
    }

    /// Walks the root (or only `targets`) and classifies every file.
    fn scan(&self, targets: Option<Arc<Targets>>, stop: Option<&AtomicBool>) -> crate::Result<Vec<WalkItem>> {
        let (walker, pruned) = self.ignore_walker(targets);
        let mut items = Vec::new();
        for result in walker.build() {
            if stop.is_some_and(|s| s.load(Ordering::Relaxed)) {
                return Err(crate::Error::Stopped);
            }
            match result {
                Ok(entry) if entry.depth() == 0 => {}
                Ok(entry) => items.extend(self.classify(&entry)),
                Err(err) => items.extend(self.walk_error(err)?),
            }
        }
        let pruned = pruned.lock().map(|mut p| std::mem::take(&mut *p)).unwrap_or_default();
        items.extend(pruned.into_iter().map(|dir| {
            WalkItem::Skipped(SkippedFile { path: format!("{dir}/"), reason: SkipReason::Generated, size: 0 })
        }));
        items.sort_by(|a, b| item_path(a).cmp(item_path(b)));
        Ok(items)
    }

    /// Turns an error of the walker into a skipped entry (an unreadable directory or file), or
    /// into a fatal error when the root itself cannot be read. Problems inside ignore files
    /// (a bad glob on one line) are dropped: the rest of the file still applies.
    fn walk_error(&self, err: ignore::Error) -> crate::Result<Option<WalkItem>> {
        if err.is_partial() {
            return Ok(None);
        }
        let Some(path) = error_path(&err).map(Path::to_path_buf) else { return Ok(None) };
        let message = err.io_error().map_or_else(|| err.to_string(), ToString::to_string);
        if path == self.canonical_root {
            let source = err.into_io_error().unwrap_or_else(|| io::Error::other(message));
            return Err(crate::Error::WithPath { path: self.builder.root.clone(), source });
        }
        let rel =
            relative_to(&self.canonical_root, &path).unwrap_or_else(|| path.to_string_lossy().into_owned());
        Ok(Some(skipped(rel, SkipReason::Unreadable(message), 0)))
    }

    /// Classifies one walked entry. Directories give nothing; everything else gives a file or a
    /// skip.
    fn classify(&self, entry: &ignore::DirEntry) -> Option<WalkItem> {
        let file_type = entry.file_type()?;
        if file_type.is_dir() {
            return None;
        }
        let lstat_size = || entry.metadata().map_or(0, |m| m.len());
        let Some(rel) = relative_to(&self.canonical_root, entry.path()) else {
            let lossy = entry.path().to_string_lossy().into_owned();
            let reason = SkipReason::Unreadable("path is not valid UTF-8".to_string());
            return Some(skipped(lossy, reason, lstat_size()));
        };
        // Secrets first: a name is enough, and such a file is never opened, not even stat'ed
        // through a link.
        if is_secret_name(file_name(&rel)) {
            return Some(skipped(rel, SkipReason::Secret, lstat_size()));
        }
        let meta = if file_type.is_symlink() {
            match self.resolve_link(entry.path()) {
                Ok(Some(meta)) => meta,
                // A link to a directory inside the root: its files are walked under their own path.
                Ok(None) => return None,
                Err(reason) => return Some(skipped(rel, reason, lstat_size())),
            }
        } else {
            match entry.metadata() {
                Ok(meta) => meta,
                Err(err) => return Some(skipped(rel, SkipReason::Unreadable(err.to_string()), 0)),
            }
        };
        let size = meta.len();
        if self.excluded_by_globs(&rel) {
            return Some(skipped(rel, SkipReason::ExcludedByGlob, size));
        }
        if let Some(reason) = generated_reason(&rel) {
            return Some(skipped(rel, reason, size));
        }
        if !meta.is_file() {
            return Some(skipped(rel, SkipReason::Unreadable("not a regular file".to_string()), size));
        }
        let Some(language) = Language::from_path(&rel) else {
            return Some(skipped(rel, SkipReason::UnsupportedLanguage, size));
        };
        if size > self.builder.max_file_size {
            return Some(skipped(
                rel,
                SkipReason::TooLarge { size, limit: self.builder.max_file_size },
                size,
            ));
        }
        Some(WalkItem::File(FileEntry {
            path: rel,
            abs_path: entry.path().to_path_buf(),
            size,
            mtime_ns: mtime_ns(&meta),
            language,
        }))
    }

    /// Decides on a symlink: the metadata of its target when that is a file inside the root,
    /// `None` for a directory inside the root (not followed, so loops cannot happen), or a skip
    /// reason. A target that is itself secret or generated by name is refused too, so a link
    /// cannot launder a file the walk would never read under its own name.
    fn resolve_link(&self, link: &Path) -> Result<Option<Metadata>, SkipReason> {
        let target = match std::fs::canonicalize(link) {
            Ok(target) => target,
            Err(err) if err.kind() == io::ErrorKind::NotFound => {
                return Err(SkipReason::Unreadable("broken symlink".to_string()));
            }
            // Anything else is, in practice, a loop (ELOOP): treated like an escape.
            Err(_) => return Err(SkipReason::SymlinkOutsideRoot),
        };
        if !target.starts_with(&self.canonical_root) {
            return Err(SkipReason::SymlinkOutsideRoot);
        }
        let meta = std::fs::metadata(&target).map_err(|e| SkipReason::Unreadable(e.to_string()))?;
        if meta.is_dir() {
            return Ok(None);
        }
        // A file strictly inside the root, so it has a relative path (unless it is not UTF-8).
        let Some(target_rel) = relative_to(&self.canonical_root, &target) else {
            return Err(SkipReason::Unreadable("symlink target path is not valid UTF-8".to_string()));
        };
        if is_secret_name(file_name(&target_rel)) {
            return Err(SkipReason::Secret);
        }
        if let Some(reason) = generated_reason(&target_rel) {
            return Err(reason);
        }
        Ok(Some(meta))
    }

    /// Whether the include/exclude globs rule `rel` out. A glob matching a directory covers
    /// everything below it.
    fn excluded_by_globs(&self, rel: &str) -> bool {
        let matches = |set: &GlobSet| {
            let mut path = rel;
            loop {
                if set.is_match(path) {
                    return true;
                }
                match path.rsplit_once('/') {
                    Some((parent, _)) => path = parent,
                    None => return false,
                }
            }
        };
        if self.include.as_ref().is_some_and(|set| !matches(set)) {
            return true;
        }
        self.exclude.as_ref().is_some_and(matches)
    }
}

/// The relative paths a targeted walk ([`Walk::list_paths`]) looks for, and the directories it
/// must enter to find them.
struct Targets {
    files: HashSet<String>,
    dirs: HashSet<String>,
}

/// The custom ignore file, read like `.gitignore` at every level and taking precedence over it.
const SEMDEX_IGNORE: &str = ".semdexignore";

/// How much of a file is searched for NUL bytes, as git and ripgrep do.
const BINARY_PROBE: usize = 8 * 1024;

const UTF8_BOM: &[u8] = b"\xEF\xBB\xBF";

/// Directories of build output, dependencies and caches. They are pruned, not walked.
const GENERATED_DIRS: &[&str] = &[
    "node_modules",
    "bower_components",
    "jspm_packages",
    "dist",
    "build",
    "out",
    "coverage",
    ".next",
    ".nuxt",
    ".svelte-kit",
    ".turbo",
    ".parcel-cache",
    ".yarn",
];

/// Lockfiles: generated, huge, and useless to search.
const LOCKFILES: &[&str] = &[
    "package-lock.json",
    "npm-shrinkwrap.json",
    "yarn.lock",
    "pnpm-lock.yaml",
    "bun.lock",
    "bun.lockb",
    "deno.lock",
    "cargo.lock",
    "composer.lock",
    "gemfile.lock",
    "poetry.lock",
];

/// Exact (lowercased) names of files that commonly hold credentials.
const SECRET_NAMES: &[&str] = &[
    ".env",
    ".envrc",
    ".npmrc",
    ".yarnrc",
    ".yarnrc.yml",
    ".pypirc",
    ".netrc",
    "_netrc",
    ".git-credentials",
    ".htpasswd",
    ".pgpass",
    "secrets.json",
    "service-account.json",
];

/// Extensions (lowercased, with the dot) of keys, certificates and key stores.
const SECRET_EXTENSIONS: &[&str] =
    &[".pem", ".key", ".p12", ".pfx", ".keystore", ".jks", ".ppk", ".crt", ".cer", ".der", ".asc", ".gpg"];

/// Prefixes (lowercased) of SSH private and public key names.
const SECRET_PREFIXES: &[&str] = &["id_rsa", "id_dsa", "id_ecdsa", "id_ed25519", ".env."];

fn is_secret_name(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    SECRET_NAMES.contains(&name.as_str())
        || SECRET_EXTENSIONS.iter().any(|ext| name.ends_with(ext))
        || SECRET_PREFIXES.iter().any(|prefix| name.starts_with(prefix))
        || (name.starts_with("credentials") && name.ends_with(".json"))
}

/// Generated or minified by its path: under a generated directory (only seen in targeted walks,
/// full walks prune those), a lockfile, a source map, or a `.min.*` / `.bundle.*` name.
fn generated_reason(rel: &str) -> Option<SkipReason> {
    let mut components = rel.split('/');
    let name = components.next_back().unwrap_or(rel).to_ascii_lowercase();
    if components.any(|dir| GENERATED_DIRS.contains(&dir)) {
        return Some(SkipReason::Generated);
    }
    if LOCKFILES.contains(&name.as_str()) || name.ends_with(".map") || name.ends_with(".tsbuildinfo") {
        return Some(SkipReason::Generated);
    }
    let stem_markers = [".min.", ".bundle.", "-min."];
    let script = [".js", ".mjs", ".cjs", ".css"].iter().any(|ext| name.ends_with(ext));
    if script && stem_markers.iter().any(|m| name.contains(m)) {
        return Some(SkipReason::Minified);
    }
    None
}

fn is_tsconfig_name(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    (name.starts_with("tsconfig") || name.starts_with("jsconfig")) && name.ends_with(".json")
}

/// The last component of a `/`-separated path.
fn file_name(rel: &str) -> &str {
    rel.rsplit('/').next().unwrap_or(rel)
}

fn skipped(path: String, reason: SkipReason, size: u64) -> WalkItem {
    WalkItem::Skipped(SkippedFile { path, reason, size })
}

fn item_path(item: &WalkItem) -> &str {
    match item {
        WalkItem::File(f) => &f.path,
        WalkItem::Skipped(s) => &s.path,
    }
}

/// `path` relative to `root` with `/` separators; `None` outside the root or when a component
/// is not valid UTF-8.
fn relative_to(root: &Path, path: &Path) -> Option<String> {
    let rel = path.strip_prefix(root).ok()?;
    let mut out = String::new();
    for component in rel.components() {
        let std::path::Component::Normal(part) = component else { return None };
        if !out.is_empty() {
            out.push('/');
        }
        out.push_str(part.to_str()?);
    }
    (!out.is_empty()).then_some(out)
}

/// Normalizes a relative path given by a caller: `./` and empty components dropped; absolute
/// paths and `..` refused, so a caller cannot point the walk outside the root.
fn normalize_relative(path: &str) -> Option<String> {
    let mut parts = Vec::new();
    if path.starts_with('/') {
        return None;
    }
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => return None,
            part => parts.push(part),
        }
    }
    (!parts.is_empty()).then(|| parts.join("/"))
}

/// The path an error of the walker is about, if any.
fn error_path(err: &ignore::Error) -> Option<&Path> {
    match err {
        ignore::Error::WithPath { path, .. } => Some(path),
        ignore::Error::WithDepth { err, .. } | ignore::Error::WithLineNumber { err, .. } => error_path(err),
        ignore::Error::Loop { child, .. } => Some(child),
        _ => None,
    }
}

/// Whether some line of `text` has more than `max` characters. Bytes bound characters from
/// above, so only long-in-bytes lines are counted.
/// Whether lines longer than `max` characters hold most of the text: minified or bundled code.
/// A hand-written file with one long line (a data table, a test fixture string) is not minified.
fn mostly_long_lines(text: &str, max: usize) -> bool {
    // The lines of `text.split('\n')`, found with memchr.
    let mut long = 0;
    let mut start = 0;
    let ends = memchr::memchr_iter(b'\n', text.as_bytes()).chain(std::iter::once(text.len()));
    for end in ends {
        let line = &text[start..end];
        if line.len() > max && line.chars().count() > max {
            long += line.len();
        }
        start = end + 1;
    }
    long > 0 && long * 2 > text.len()
}

/// Modification time in nanoseconds since the Unix epoch (negative before it, 0 if unknown).
fn mtime_ns(meta: &Metadata) -> i64 {
    let Ok(modified) = meta.modified() else { return 0 };
    match modified.duration_since(UNIX_EPOCH) {
        Ok(after) => i64::try_from(after.as_nanos()).unwrap_or(i64::MAX),
        Err(before) => -i64::try_from(before.duration().as_nanos()).unwrap_or(i64::MAX),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_names() {
        for name in [
            ".env",
            ".env.local",
            "server.pem",
            "tls.KEY",
            "id_rsa",
            "id_rsa.pub",
            "id_ed25519",
            ".npmrc",
            "credentials.json",
            "credentials-prod.json",
            "cert.p12",
            "release.keystore",
        ] {
            assert!(is_secret_name(name), "{name} is secret");
        }
        for name in ["env.ts", "environment.ts", "keys.ts", "credentials.ts", "pemParser.ts", "index.ts"] {
            assert!(!is_secret_name(name), "{name} is not secret");
        }
    }

    #[test]
    fn generated_names() {
        assert_eq!(generated_reason("a/package-lock.json"), Some(SkipReason::Generated));
        assert_eq!(generated_reason("yarn.lock"), Some(SkipReason::Generated));
        assert_eq!(generated_reason("src/app.js.map"), Some(SkipReason::Generated));
        assert_eq!(generated_reason("node_modules/x/index.js"), Some(SkipReason::Generated));
        assert_eq!(generated_reason("packages/a/dist/index.js"), Some(SkipReason::Generated));
        assert_eq!(generated_reason("vendor/jquery.min.js"), Some(SkipReason::Minified));
        assert_eq!(generated_reason("app.bundle.js"), Some(SkipReason::Minified));
        assert_eq!(generated_reason("src/admin.ts"), None);
        assert_eq!(generated_reason("src/distance.ts"), None);
        assert_eq!(generated_reason("src/build.ts"), None);
    }

    #[test]
    fn relative_paths_are_normalized_and_fenced() {
        assert_eq!(normalize_relative("./src//a.ts").as_deref(), Some("src/a.ts"));
        assert_eq!(normalize_relative("src/../../etc/passwd"), None);
        assert_eq!(normalize_relative("/etc/passwd"), None);
        assert_eq!(normalize_relative("."), None);
    }

    #[test]
    fn long_lines_count_characters_not_bytes() {
        let wide = "é".repeat(10);
        assert!(!mostly_long_lines(&wide, 10), "20 bytes but 10 characters");
        assert!(mostly_long_lines(&format!("a\n{wide}x\n"), 10));
        assert!(!mostly_long_lines("", 0));
        // One long line in a long hand-written file is not minification.
        let normal = "const x = 1;\n".repeat(200);
        assert!(!mostly_long_lines(&format!("{normal}{}\n{normal}", "y".repeat(1200)), 1000));
        assert!(mostly_long_lines(&format!("{}\n{normal}", "y".repeat(5000)), 1000));
    }

    #[test]
    fn globs_anchor_like_gitignore() {
        let set = compile_globs(&["*.test.ts".into(), "/scripts".into(), "src/**/gen/*.ts".into()])
            .expect("valid globs")
            .expect("non-empty");
        assert!(set.is_match("src/a/b.test.ts"));
        assert!(set.is_match("scripts"));
        assert!(!set.is_match("src/scripts"));
        assert!(set.is_match("src/x/gen/a.ts"));
        assert!(!set.is_match("src/x/gen/deep/a.ts"), "* does not cross /");
        assert!(compile_globs(&["a[".into()]).is_err());
    }
}
