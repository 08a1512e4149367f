//! The symbol signal's copy of the store's symbols, held in memory by a long-running process.
//!
//! In the store, a word of a symbol search is up to four statements (exact and prefix matches,
//! qualified-name prefixes, substrings, typos) and one more maps the matches to chunks. Each
//! statement's fixed cost and row copies dominate on all but the largest repositories. Here the
//! same search is a binary search over names sorted once, a scan for substrings, and the chunk
//! each symbol belongs to, read with the table.
//!
//! The table answers exactly what [`Store::symbol_search_words`] answers, in the same order
//! (the store's phases and orders are followed step by step below; the test
//! `symbol_table_answers_as_the_store_does` compares the two on every word of a corpus).
//!
//! A process holds the table once it has asked for it ([`SymbolIndex::hold`], which `semdex
//! serve` calls at start and which loads in the background, or [`SymbolIndex::load`]); until
//! then every search goes to the store and nothing is read for the table. Once held, it is kept
//! current by the store's symbols version ([`Store::symbols_version`]): every search reads the
//! version (one small statement) and uses the table only when it is at that version. Otherwise
//! the search goes to the store, and a new table is read in the background, one at a time and
//! spaced out ([`Loading::may_start`]): while files are being indexed the version moves
//! constantly and the store answers. Backends without a version (PostgreSQL) always answer in
//! the store.
//!
//! Memory: [`SymbolTable::heap_bytes`]; 136 bytes per symbol on the search bench's corpus
//! (12,219 symbols, 1.7 MB; `benches/results/search_modes.md`): an 80-byte entry, the name and
//! qualified name once each, and the distinct qualified names once more, lowercased.

use std::cmp::Ordering;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering as AtomicOrdering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use memchr::memmem::Finder;

use super::SearchError;
use crate::store::fuzzy::{self, Fuzzy};
use crate::store::{SearchScope, SharedStore, Store, SymbolSnapshot, SymbolView};

/// The least time from the end of one background load to the start of the next.
pub const RELOAD_GAP: Duration = Duration::from_secs(1);

/// And the least time as a multiple of the last load's duration, so that reloading while files
/// are being indexed takes at most a fifth of the time (a large table takes seconds to read).
const LOAD_SPACING: u32 = 4;

/// One symbol a word matched, with the chunk holding it.
#[derive(Debug, Clone, PartialEq)]
pub struct SymbolHit {
    pub id: i64,
    pub name: String,
    pub qualified_name: String,
    pub chunk_id: Option<i64>,
}

/// The symbols of one store at one version, indexed for [`SymbolTable::search_words`].
///
/// Names are held once, as written: the store's case folding (`lower()`, ASCII only) is applied
/// while comparing ([`lower_cmp`]), and only the distinct qualified names are also held
/// lowercased, for the substring scan.
pub struct SymbolTable {
    version: i64,
    /// Path and language per file slot ([`Entry::file`]).
    files: Vec<(Box<str>, Box<str>)>,
    /// The kind names, by [`Entry::kind`].
    kinds: Vec<Box<str>>,
    /// Sorted by lowercased name, name, path, id: the store's order for name prefixes and typo
    /// candidates.
    entries: Vec<Entry>,
    /// Entry indexes sorted by lowercased qualified name.
    by_qualified: Vec<u32>,
    /// The runs of `by_qualified` sharing one lowercased qualified name, in its order.
    qualified_runs: Vec<QualifiedRun>,
    /// Entries whose lowercased qualified name does not end with their lowercased name.
    name_not_in_qualified: Vec<u32>,
}

struct Entry {
    id: i64,
    project_id: i64,
    chunk_id: Option<i64>,
    name: Box<str>,
    qualified: Box<str>,
    file: u32,
    /// Characters, as the store's `length()` counts.
    name_chars: u32,
    qualified_chars: u32,
    kind: u16,
    exported: bool,
}

struct QualifiedRun {
    /// The run's qualified name, ASCII-lowercased.
    lowered: Box<str>,
    /// Its positions in `by_qualified`.
    members: std::ops::Range<u32>,
}

/// Orders two strings as the store orders `lower(a)` and `lower(b)`: byte order after ASCII
/// lowercasing.
fn lower_cmp(a: &str, b: &str) -> Ordering {
    a.bytes().map(|c| c.to_ascii_lowercase()).cmp(b.bytes().map(|c| c.to_ascii_lowercase()))
}

/// Whether `lower(s)` starts with `prefix`, itself lowercased.
fn lower_starts_with(s: &str, prefix: &str) -> bool {
    s.len() >= prefix.len() && s.as_bytes()[..prefix.len()].eq_ignore_ascii_case(prefix.as_bytes())
}

/// Whether `lower(s)` ends with `lower(suffix)`.
fn lower_ends_with(s: &str, suffix: &str) -> bool {
    s.len() >= suffix.len() && s.as_bytes()[s.len() - suffix.len()..].eq_ignore_ascii_case(suffix.as_bytes())
}

/// Whether `lower(s)` holds `word`, itself lowercased and not empty.
fn lower_contains(s: &str, word: &str) -> bool {
    s.as_bytes().windows(word.len()).any(|w| w.eq_ignore_ascii_case(word.as_bytes()))
}

impl std::fmt::Debug for SymbolTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SymbolTable")
            .field("version", &self.version)
            .field("symbols", &self.entries.len())
            .finish()
    }
}

/// A scope prepared for testing entries.
struct Scope<'a> {
    projects: &'a [i64],
    languages: &'a [String],
    kinds: &'a [String],
}

impl SymbolTable {
    /// Indexes a snapshot of the store's symbols.
    pub fn build(snapshot: SymbolSnapshot) -> SymbolTable {
        let slot: HashMap<i64, u32> =
            snapshot.files.iter().enumerate().map(|(i, f)| (f.id, i as u32)).collect();
        let files: Vec<(Box<str>, Box<str>)> = snapshot
            .files
            .into_iter()
            .map(|f| (f.path.into_boxed_str(), f.language.into_boxed_str()))
            .collect();
        let mut kinds: Vec<Box<str>> = Vec::new();
        let mut kind_slot: HashMap<String, u16> = HashMap::new();
        let mut entries: Vec<Entry> = snapshot
            .symbols
            .into_iter()
            // A symbol's file is in the same snapshot; one that is not cannot be scoped or
            // ordered, and the store would not return it either (its queries join the file).
            .filter_map(|s| {
                let file = *slot.get(&s.file_id)?;
                let kind = *kind_slot.entry(s.kind).or_insert_with_key(|k| {
                    kinds.push(k.clone().into_boxed_str());
                    (kinds.len() - 1) as u16
                });
                Some(Entry {
                    id: s.id,
                    project_id: s.project_id,
                    chunk_id: s.chunk_id,
                    name_chars: s.name.chars().count() as u32,
                    qualified_chars: s.qualified_name.chars().count() as u32,
                    name: s.name.into_boxed_str(),
                    qualified: s.qualified_name.into_boxed_str(),
                    kind,
                    file,
                    exported: s.exported,
                })
            })
            .collect();
        // Collected through a filter, the vector may have grown to twice its length.
        entries.shrink_to_fit();
        entries.sort_by(|a, b| {
            lower_cmp(&a.name, &b.name)
                .then_with(|| a.name.cmp(&b.name))
                .then_with(|| files[a.file as usize].0.cmp(&files[b.file as usize].0))
                .then(a.id.cmp(&b.id))
        });
        let mut by_qualified: Vec<u32> = (0..entries.len() as u32).collect();
        by_qualified
            .sort_by(|&a, &b| lower_cmp(&entries[a as usize].qualified, &entries[b as usize].qualified));
        let mut qualified_runs: Vec<QualifiedRun> = Vec::new();
        let mut start = 0;
        for end in 1..=by_qualified.len() {
            let first = &entries[by_qualified[start] as usize].qualified;
            if end == by_qualified.len()
                || lower_cmp(first, &entries[by_qualified[end] as usize].qualified).is_ne()
            {
                qualified_runs.push(QualifiedRun {
                    lowered: first.to_ascii_lowercase().into_boxed_str(),
                    members: start as u32..end as u32,
                });
                start = end;
            }
        }
        qualified_runs.shrink_to_fit();
        // A qualified name ends with the name, as the indexer writes them: then a substring of
        // the name is one of the qualified name, and one test answers both.
        let name_not_in_qualified: Vec<u32> = (0..entries.len() as u32)
            .filter(|&i| !lower_ends_with(&entries[i as usize].qualified, &entries[i as usize].name))
            .collect();
        SymbolTable {
            version: snapshot.version,
            files,
            kinds,
            entries,
            by_qualified,
            qualified_runs,
            name_not_in_qualified,
        }
    }

    /// The store's symbols version this table holds.
    pub fn version(&self) -> i64 {
        self.version
    }

    /// Number of symbols.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Bytes the table allocated: its vectors and every string's bytes (the allocator's own
    /// overhead per allocation not counted).
    pub fn heap_bytes(&self) -> usize {
        use std::mem::size_of;
        let names: usize = self.entries.iter().map(|e| e.name.len() + e.qualified.len()).sum();
        let files: usize = self.files.iter().map(|(p, l)| p.len() + l.len()).sum();
        let kinds: usize = self.kinds.iter().map(|k| k.len()).sum();
        let lowered: usize = self.qualified_runs.iter().map(|r| r.lowered.len()).sum();
        self.entries.capacity() * size_of::<Entry>()
            + names
            + self.files.capacity() * size_of::<(Box<str>, Box<str>)>()
            + files
            + self.kinds.capacity() * size_of::<Box<str>>()
            + kinds
            + self.by_qualified.capacity() * size_of::<u32>()
            + self.qualified_runs.capacity() * size_of::<QualifiedRun>()
            + lowered
            + self.name_not_in_qualified.capacity() * size_of::<u32>()
    }

    /// [`Store::symbol_search_words`], with each match's chunk: one list per word, in the order
    /// given, at most `limit` each.
    pub fn search_words(&self, words: &[String], scope: &SearchScope, limit: i64) -> Vec<Vec<SymbolHit>> {
        let scope = Scope { projects: &scope.project_ids, languages: &scope.languages, kinds: &scope.kinds };
        let limit = usize::try_from(limit).unwrap_or(0);
        if scope.projects.is_empty() || limit == 0 {
            return vec![Vec::new(); words.len()];
        }
        words
            .iter()
            .map(|w| {
                self.search_word(&w.trim().to_ascii_lowercase(), &scope, limit)
                    .into_iter()
                    .map(|i| {
                        let e = &self.entries[i as usize];
                        SymbolHit {
                            id: e.id,
                            name: e.name.to_string(),
                            qualified_name: e.qualified.to_string(),
                            chunk_id: e.chunk_id,
                        }
                    })
                    .collect()
            })
            .collect()
    }

    fn path(&self, e: &Entry) -> &str {
        &self.files[e.file as usize].0
    }

    fn in_scope(&self, e: &Entry, scope: &Scope<'_>) -> bool {
        scope.projects.contains(&e.project_id)
            && (scope.languages.is_empty()
                || scope.languages.iter().any(|l| **l == *self.files[e.file as usize].1))
            && (scope.kinds.is_empty() || scope.kinds.iter().any(|k| **k == *self.kinds[usize::from(e.kind)]))
    }

    /// Indexes into `entries` whose lowercased name starts with `prefix` (lowercased).
    fn name_range(&self, prefix: &str) -> std::ops::Range<usize> {
        let start = self.entries.partition_point(|e| lower_cmp(&e.name, prefix).is_lt());
        let len = self.entries[start..].partition_point(|e| lower_starts_with(&e.name, prefix));
        start..start + len
    }

    /// The runs of qualified names whose lowercased text starts with `prefix` (lowercased).
    fn qualified_runs_from(&self, prefix: &str) -> &[QualifiedRun] {
        let start = self.qualified_runs.partition_point(|r| *r.lowered < *prefix);
        let len = self.qualified_runs[start..].partition_point(|r| r.lowered.starts_with(prefix));
        &self.qualified_runs[start..start + len]
    }

    /// The entry indexes of some runs of `by_qualified`.
    fn members<'a>(&'a self, runs: &'a [QualifiedRun]) -> impl Iterator<Item = u32> + 'a {
        runs.iter()
            .flat_map(|r| self.by_qualified[r.members.start as usize..r.members.end as usize].iter().copied())
    }

    /// One word's matches (entry indexes), in the store's phases and orders.
    fn search_word(&self, q: &str, scope: &Scope<'_>, limit: usize) -> Vec<u32> {
        let mut out: Vec<u32> = Vec::new();
        let mut seen: HashSet<u32> = HashSet::new();
        if !q.is_empty() {
            // Exact names, exact qualified names, then name prefixes.
            let prefixed = self.qualified_runs_from(q);
            let exact = &prefixed[..prefixed.iter().take_while(|r| *r.lowered == *q).count()];
            let mut found: Vec<u32> = self
                .name_range(q)
                .map(|i| i as u32)
                .chain(self.members(exact))
                .filter(|&i| self.in_scope(&self.entries[i as usize], scope))
                .collect();
            found.sort_unstable();
            found.dedup();
            self.take(found, limit, &mut out, &mut seen, |a, b| self.leading_order(q, a, b));
            // Qualified-name prefixes, only while there is room.
            if out.len() < limit {
                let found: Vec<u32> = self
                    .members(prefixed)
                    .filter(|i| !seen.contains(i) && self.in_scope(&self.entries[*i as usize], scope))
                    .collect();
                self.take(found, limit, &mut out, &mut seen, |a, b| self.leading_order(q, a, b));
            }
            // Substrings of the name or the qualified name (ASCII case-insensitive): each
            // distinct qualified name is tested once, then the names that are not its suffix.
            if out.len() < limit {
                let finder = Finder::new(q.as_bytes());
                let mut found: Vec<u32> = Vec::new();
                for run in &self.qualified_runs {
                    if finder.find(run.lowered.as_bytes()).is_some() {
                        found
                            .extend(&self.by_qualified[run.members.start as usize..run.members.end as usize]);
                    }
                }
                for &i in &self.name_not_in_qualified {
                    let e = &self.entries[i as usize];
                    if lower_contains(&e.name, q) && !lower_contains(&e.qualified, q) {
                        found.push(i);
                    }
                }
                found.retain(|i| !seen.contains(i) && self.in_scope(&self.entries[*i as usize], scope));
                // Names holding the word first.
                let in_name: HashSet<u32> = found
                    .iter()
                    .copied()
                    .filter(|&i| lower_contains(&self.entries[i as usize].name, q))
                    .collect();
                self.take(found, limit, &mut out, &mut seen, |a, b| {
                    in_name
                        .contains(&b)
                        .cmp(&in_name.contains(&a))
                        .then_with(|| self.tail_order(&self.entries[a as usize], &self.entries[b as usize]))
                });
            }
        }
        if out.len() < limit {
            self.fuzzy(q, scope, limit, &mut out, &seen);
        }
        out
    }

    /// Sorts `found` by `order` and appends the first ones, up to `limit` in all.
    fn take(
        &self,
        mut found: Vec<u32>,
        limit: usize,
        out: &mut Vec<u32>,
        seen: &mut HashSet<u32>,
        order: impl Fn(u32, u32) -> Ordering,
    ) {
        let room = limit.saturating_sub(out.len());
        if found.len() > room && room > 0 {
            found.select_nth_unstable_by(room - 1, |a, b| order(*a, *b));
            found.truncate(room);
        }
        found.sort_by(|a, b| order(*a, *b));
        found.truncate(room);
        seen.extend(found.iter().copied());
        out.extend(found);
    }

    /// The leading phases' order: exact name (0), exact qualified name (1), prefix (2); then
    /// exported first; then the shorter of the matched text (the qualified name for exact
    /// qualified matches, else the name); then that text, path and id.
    fn leading_order(&self, q: &str, a: u32, b: u32) -> Ordering {
        let (ea, eb) = (&self.entries[a as usize], &self.entries[b as usize]);
        let rank = |e: &Entry| -> u8 {
            if e.name.eq_ignore_ascii_case(q) {
                0
            } else if e.qualified.eq_ignore_ascii_case(q) {
                1
            } else {
                2
            }
        };
        let (ra, rb) = (rank(ea), rank(eb));
        fn text(e: &Entry, rank: u8) -> (u32, &str) {
            if rank < 2 { (e.qualified_chars, &e.qualified) } else { (e.name_chars, &e.name) }
        }
        let ((la, ta), (lb, tb)) = (text(ea, ra), text(eb, rb));
        ra.cmp(&rb)
            .then(eb.exported.cmp(&ea.exported))
            .then(la.cmp(&lb))
            .then_with(|| ta.cmp(tb))
            .then_with(|| self.path(ea).cmp(self.path(eb)))
            .then(ea.id.cmp(&eb.id))
    }

    /// Exported first, shorter names, name, path, id.
    fn tail_order(&self, a: &Entry, b: &Entry) -> Ordering {
        b.exported
            .cmp(&a.exported)
            .then(a.name_chars.cmp(&b.name_chars))
            .then_with(|| a.name.cmp(&b.name))
            .then_with(|| self.path(a).cmp(self.path(b)))
            .then(a.id.cmp(&b.id))
    }

    /// Typos: the candidates the store reads (names starting with the query's first character,
    /// of a length the distance can reach, in name order, at most [`fuzzy::MAX_CANDIDATES`]),
    /// ranked by the same [`Fuzzy`].
    fn fuzzy(&self, q: &str, scope: &Scope<'_>, limit: usize, out: &mut Vec<u32>, seen: &HashSet<u32>) {
        let Some(fuzzy) = Fuzzy::new(q) else { return };
        let (shortest, longest) = fuzzy.lengths();
        let cap = usize::try_from(fuzzy::MAX_CANDIDATES).unwrap_or(usize::MAX);
        let candidates: Vec<u32> = self
            .name_range(&fuzzy.first())
            .map(|i| i as u32)
            .filter(|i| {
                let e = &self.entries[*i as usize];
                (shortest..=longest).contains(&i64::from(e.name_chars))
                    && !seen.contains(i)
                    && self.in_scope(e, scope)
            })
            .take(cap)
            .collect();
        let close = fuzzy.within(candidates.iter().map(|&i| (i64::from(i), &*self.entries[i as usize].name)));
        let views: Vec<SymbolView> = close
            .into_iter()
            .map(|i| {
                let e = &self.entries[i as usize];
                SymbolView {
                    // The entry's index stands in for the id while ranking; ties on everything
                    // else are broken by id, and entries sort by id within equal name and path.
                    id: i,
                    project_id: e.project_id,
                    path: self.path(e).to_string(),
                    name: e.name.to_string(),
                    qualified_name: e.qualified.to_string(),
                    kind: self.kinds[usize::from(e.kind)].to_string(),
                    signature: String::new(),
                    start_line: 0,
                    end_line: 0,
                    exported: e.exported,
                }
            })
            .collect();
        out.extend(fuzzy.rank(views, limit - out.len()).into_iter().map(|v| v.id as u32));
    }
}

/// The current [`SymbolTable`] of a store, if one has been loaded.
#[derive(Debug, Default)]
pub struct SymbolIndex {
    table: Mutex<Option<Arc<SymbolTable>>>,
    loading: Mutex<Loading>,
    /// Whether this process asked for the table (it called [`SymbolIndex::load`]): only then
    /// do searches read the version, and a stale table start a background load.
    held: AtomicBool,
}

#[derive(Debug, Default)]
struct Loading {
    running: bool,
    /// When the last background load ended, and how long it took.
    last: Option<(Instant, Duration)>,
}

impl Loading {
    /// Whether a background load may start at `now`: none is running, and the last one ended at
    /// least [`RELOAD_GAP`] ago, and at least [`LOAD_SPACING`] times its own duration.
    fn may_start(&self, now: Instant) -> bool {
        !self.running
            && self.last.is_none_or(|(ended, took)| {
                now.saturating_duration_since(ended) >= RELOAD_GAP.max(took * LOAD_SPACING)
            })
    }
}

impl SymbolIndex {
    /// The table at the store's current symbols version, or `None` (the search then asks the
    /// store) while there is none; a stale or missing table starts a background load.
    pub async fn current(
        self: &Arc<Self>,
        store: &SharedStore,
    ) -> Result<Option<Arc<SymbolTable>>, SearchError> {
        if !self.held.load(AtomicOrdering::Relaxed) {
            return Ok(None);
        }
        let Some(version) = store.symbols_version().await? else { return Ok(None) };
        let table = self.table.lock().unwrap_or_else(|e| e.into_inner()).clone();
        if let Some(table) = table.filter(|t| t.version == version) {
            return Ok(Some(table));
        }
        self.start_load(store);
        Ok(None)
    }

    /// The last table loaded, current or not.
    pub fn loaded(&self) -> Option<Arc<SymbolTable>> {
        self.table.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Reads and indexes the store's symbols now, and from then on keeps them current; `false`
    /// when the backend keeps no version.
    pub async fn load(&self, store: &dyn Store) -> Result<bool, SearchError> {
        self.held.store(true, AtomicOrdering::Relaxed);
        let Some(snapshot) = store.symbol_snapshot().await? else { return Ok(false) };
        let table = tokio::task::spawn_blocking(move || SymbolTable::build(snapshot))
            .await
            .map_err(|e| SearchError::Internal(format!("building the symbol table: {e}")))?;
        let mut slot = self.table.lock().unwrap_or_else(|e| e.into_inner());
        // Two loads may race; the newer snapshot stays.
        if slot.as_ref().is_none_or(|t| t.version <= table.version) {
            *slot = Some(Arc::new(table));
        }
        Ok(true)
    }

    /// Keeps the table current from now on, the first load starting in the background (the
    /// store answers until it is in): what `semdex serve` calls at start.
    pub fn hold(self: &Arc<Self>, store: &SharedStore) {
        self.held.store(true, AtomicOrdering::Relaxed);
        self.start_load(store);
    }

    fn start_load(self: &Arc<Self>, store: &SharedStore) {
        {
            let mut loading = self.loading.lock().unwrap_or_else(|e| e.into_inner());
            if !loading.may_start(Instant::now()) {
                return;
            }
            loading.running = true;
        }
        let (index, store) = (Arc::clone(self), SharedStore::clone(store));
        tokio::spawn(async move {
            let started = Instant::now();
            match index.load(store.as_ref()).await {
                Ok(_) => {
                    tracing::debug!(elapsed_ms = started.elapsed().as_millis() as u64, "symbol table loaded")
                }
                Err(e) => {
                    tracing::warn!(error = %e, "loading the symbol table failed; symbol search stays in the store")
                }
            }
            let mut loading = index.loading.lock().unwrap_or_else(|e| e.into_inner());
            loading.running = false;
            loading.last = Some((Instant::now(), started.elapsed()));
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{SymbolFile, SymbolRow};

    fn row(id: i64, name: &str, qualified_name: &str, exported: bool) -> SymbolRow {
        SymbolRow {
            id,
            file_id: 1,
            project_id: 7,
            name: name.into(),
            qualified_name: qualified_name.into(),
            kind: "function".into(),
            exported,
            chunk_id: Some(100 + id),
        }
    }

    fn table(rows: Vec<SymbolRow>) -> SymbolTable {
        SymbolTable::build(SymbolSnapshot {
            version: 3,
            files: vec![SymbolFile { id: 1, path: "a.ts".into(), language: "typescript".into() }],
            symbols: rows,
        })
    }

    fn ids(t: &SymbolTable, word: &str, limit: i64) -> Vec<i64> {
        let scope = SearchScope { project_ids: vec![7], languages: Vec::new(), kinds: Vec::new() };
        t.search_words(&[word.to_string()], &scope, limit).remove(0).into_iter().map(|h| h.id).collect()
    }

    #[test]
    fn phases_come_in_the_store_order() {
        let t = table(vec![
            row(1, "parseBody", "Parser.parseBody", false),
            row(2, "parse", "parse", false),
            row(3, "reparse", "reparse", true),
            row(4, "parse", "parse", true),
            row(5, "Parser", "Parser", true),
            row(6, "prase", "prase", true),
        ]);
        // Exact (exported first), prefixes (shorter first), substrings, then the typo.
        assert_eq!(ids(&t, "PARSE", 10), [4, 2, 5, 1, 3, 6]);
        assert_eq!(ids(&t, "parse", 3), [4, 2, 5]);
        // The qualified name's prefix after the name's; then `parse`, one edit away.
        assert_eq!(ids(&t, "parser", 10), [5, 1, 4, 2]);
        assert_eq!(t.version(), 3);
        assert_eq!(t.len(), 6);
        // Six entries, each name and qualified name once, the five distinct qualified names
        // lowercased, the file and the kind.
        let names: usize = [9 + 16, 5 + 5, 7 + 7, 5 + 5, 6 + 6, 5 + 5].iter().sum();
        let lowered =
            "parser.parsebody".len() + "parse".len() + "reparse".len() + "parser".len() + "prase".len();
        let least =
            6 * std::mem::size_of::<Entry>() + names + lowered + "a.tstypescript".len() + "function".len();
        assert!(t.heap_bytes() >= least, "{} < {least}", t.heap_bytes());
    }

    #[test]
    fn background_loads_are_spaced_by_their_own_duration() {
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        assert!(Loading::default().may_start(t0));
        assert!(!Loading { running: true, last: None }.may_start(t0));
        // A quick load: the next one a second after it ended.
        let quick = Loading { running: false, last: Some((t0, Duration::from_millis(10))) };
        assert!(!quick.may_start(at(999)));
        assert!(quick.may_start(at(1_000)));
        // A two-second load: the next one eight seconds after it ended.
        let slow = Loading { running: false, last: Some((t0, Duration::from_secs(2))) };
        assert!(!slow.may_start(at(7_999)));
        assert!(slow.may_start(at(8_000)));
    }

    #[test]
    fn a_name_outside_its_qualified_name_is_still_found_by_substring() {
        // A default export the indexer qualified under another name.
        let t = table(vec![row(1, "requestHandler", "default", true), row(2, "other", "x.other", true)]);
        assert_eq!(ids(&t, "handler", 10), [1]);
        assert_eq!(ids(&t, "defaul", 10), [1]);
        assert_eq!(ids(&t, "othe", 10), [2]);
        assert!(ids(&t, "zzz", 10).is_empty());
    }

    #[test]
    fn scope_and_missing_files_keep_symbols_out() {
        let mut outside = row(2, "parse", "parse", true);
        outside.project_id = 8;
        let mut orphan = row(3, "parse", "parse", true);
        orphan.file_id = 99;
        let t = table(vec![row(1, "parse", "parse", false), outside, orphan]);
        assert_eq!(ids(&t, "parse", 10), [1]);
        let scope =
            SearchScope { project_ids: vec![7], languages: vec!["javascript".into()], kinds: Vec::new() };
        assert!(t.search_words(&["parse".into()], &scope, 10)[0].is_empty());
        let scope = SearchScope { project_ids: vec![7], languages: Vec::new(), kinds: vec!["class".into()] };
        assert!(t.search_words(&["parse".into()], &scope, 10)[0].is_empty());
    }
}
