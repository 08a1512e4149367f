//! The store: one relational model behind one [`Store`] trait, with two implementations:
//! SQLite (the embedded default, `sqlite.rs`) and PostgreSQL with pgvector (`pg.rs`).
//!
//! Row and write types live here and are converted explicitly from the indexer's domain types;
//! the indexer's types never derive serde or sqlx traits.

mod dump;
pub(crate) mod fuzzy;
mod pg;
mod sqlite;
mod tsvector;

use std::sync::Arc;

use async_trait::async_trait;

pub use self::dump::{
    ColumnKind, ExportSnapshot, RestoreSession, Row, TABLES, TableSpec, canonical_json, decode_vector,
    encode_vector, format_timestamp, parse_timestamp, row_key, table, validate_row,
};
pub use self::pg::PgStore;
pub use self::sqlite::SqliteStore;
pub use self::tsvector::LexicalTsvector;

/// Result alias for store operations.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Typed database errors. Messages never carry SQL or connection details; those are logged.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A unique or exclusion constraint would be violated (`what` names the natural key).
    #[error("conflict: {0}")]
    Conflict(String),
    /// The referenced row does not exist.
    #[error("not found: {0}")]
    NotFound(String),
    /// A check, foreign-key or type constraint rejected the data.
    #[error("invalid: {0}")]
    Invalid(String),
    /// The database is unreachable or failed; details are in the logs.
    #[error("{}", unavailable_message(.0))]
    Unavailable(#[source] sqlx::Error),
    /// Migrations failed or the schema is newer than this binary.
    #[error("migration: {0}")]
    Migration(String),
    /// Anything else from the driver.
    #[error("database error")]
    Other(#[source] sqlx::Error),
}

/// What an unavailable database tells its user: a full disk is named as such, because it is the
/// one cause the user can act on at once.
fn unavailable_message(err: &sqlx::Error) -> &'static str {
    let sqlx::Error::Database(db) = err else { return "database unavailable" };
    let code = db.code().unwrap_or_default();
    if db.try_downcast_ref::<sqlx::sqlite::SqliteError>().is_some() {
        // Extended result codes keep the primary code in their low byte.
        match code.parse::<i32>().map(|c| c & 0xff) {
            Ok(13) => return "database write failed: the disk is full",
            // Reads fail with it too, so it is not called a write.
            Ok(10) => return "database disk I/O error (is the disk full?)",
            _ => {}
        }
    } else if db.try_downcast_ref::<sqlx::postgres::PgDatabaseError>().is_some() && code == "53100" {
        return "database write failed: the database server's disk is full";
    }
    "database unavailable"
}

/// The pools' `before_acquire` check. When a transaction's ROLLBACK fails (a full disk can do
/// that), the driver still counts its connection as inside the transaction, and every later
/// `begin` on it fails: one full disk would stop all writes until a restart. Such a connection is
/// closed instead of handed out, and the pool opens a fresh one.
pub(crate) fn not_left_in_transaction<'c, C: sqlx::Connection>(
    conn: &'c mut C,
    _: sqlx::pool::PoolConnectionMetadata,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<bool, sqlx::Error>> + Send + 'c>> {
    let usable = !conn.is_in_transaction();
    if !usable {
        tracing::warn!("replacing a database connection left inside a transaction that failed to roll back");
    }
    Box::pin(std::future::ready(Ok(usable)))
}

/// Which backend a store is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    pub fn name(self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        }
    }
}

/// A registered repository.
#[derive(Debug, Clone, PartialEq)]
pub struct Project {
    pub id: i64,
    pub name: String,
    pub root_path: Option<String>,
    pub repository_url: Option<String>,
    pub default_branch: Option<String>,
    /// JSON settings: include/exclude globs, languages, limits.
    pub settings: serde_json::Value,
    pub total_files: i64,
    pub total_size_bytes: i64,
    pub total_chunks: i64,
    pub last_indexed_commit: Option<String>,
    pub created_at: chrono::DateTime<chrono::Utc>,
    pub updated_at: chrono::DateTime<chrono::Utc>,
}

/// A project to create.
#[derive(Debug, Clone, Default)]
pub struct NewProject {
    pub name: String,
    pub root_path: Option<String>,
    pub repository_url: Option<String>,
    pub default_branch: Option<String>,
    pub settings: serde_json::Value,
}

/// What the store knows of a file, for the incremental fast path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileState {
    pub path: String,
    pub size: i64,
    pub mtime_ns: i64,
    /// blake3 hex of the content; `None` for files skipped before reading.
    pub content_hash: Option<String>,
    pub chunker_version: i32,
    pub skip_reason: Option<String>,
}

/// A file row to write.
#[derive(Debug, Clone, PartialEq)]
pub struct FileRecord {
    pub path: String,
    pub language: Option<String>,
    pub size: i64,
    pub line_count: i32,
    pub content_hash: Option<String>,
    pub mtime_ns: i64,
    pub is_binary: bool,
    pub is_generated: bool,
    pub skip_reason: Option<String>,
    pub diagnostics_count: i32,
    pub chunker_version: i32,
}

/// A symbol row to write; `parent` indexes into the same file's symbol list.
#[derive(Debug, Clone, PartialEq)]
pub struct SymbolRecord {
    pub name: String,
    pub qualified_name: String,
    pub kind: String,
    pub signature: String,
    pub start_line: i32,
    pub end_line: i32,
    pub start_byte: i64,
    pub end_byte: i64,
    pub exported: bool,
    pub parent: Option<usize>,
}

/// An import edge row to write.
#[derive(Debug, Clone, PartialEq)]
pub struct ImportRecord {
    pub specifier: String,
    /// Path of the resolved file in the same project, when resolved.
    pub resolved_path: Option<String>,
    /// Package name when the specifier is a bare package.
    pub external_package: Option<String>,
    pub kind: String,
    pub names: Vec<String>,
    pub line: i32,
}

/// A chunk row to write.
#[derive(Debug, Clone, PartialEq)]
pub struct ChunkRecord {
    pub ordinal: i32,
    pub content: String,
    pub content_hash: String,
    pub start_line: i32,
    pub end_line: i32,
    pub start_byte: i64,
    pub end_byte: i64,
    pub symbol_path: String,
    pub kind: String,
    pub language: String,
    pub token_count: i32,
    /// The code-aware lexical document (split identifiers, path segments) indexed for full text.
    pub lexical: String,
}

/// Everything to write for one file, in one transaction.
#[derive(Debug, Clone, PartialEq)]
pub struct FileWrite {
    pub file: FileRecord,
    pub symbols: Vec<SymbolRecord>,
    pub imports: Vec<ImportRecord>,
    pub chunks: Vec<ChunkRecord>,
}

/// An embedding model as registered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmbeddingModel {
    pub id: i64,
    pub provider: String,
    pub model: String,
    pub dimensions: i32,
}

/// How a stored embedding's text was sent to the provider (`embeddings.input_mode`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum InputMode {
    /// As is.
    #[default]
    Whole,
    /// Longer than the provider's per-input limit: sent in pieces whose vectors were averaged.
    Split,
    /// Longer than the provider's per-input limit: only its beginning was sent.
    Truncated,
}

impl InputMode {
    /// The column's value.
    pub fn as_str(self) -> &'static str {
        match self {
            InputMode::Whole => "whole",
            InputMode::Split => "split",
            InputMode::Truncated => "truncated",
        }
    }

    /// Reads the column's value.
    pub fn parse(text: &str) -> Result<InputMode> {
        match text {
            "whole" => Ok(InputMode::Whole),
            "split" => Ok(InputMode::Split),
            "truncated" => Ok(InputMode::Truncated),
            other => Err(StoreError::Invalid(format!("unknown embedding input mode {other:?}"))),
        }
    }
}

/// Checks a batch for [`Store::put_embeddings_with_modes`] before anything is written: every
/// vector has the model's dimensions and finite values, and `modes` is empty or one per vector.
pub(crate) fn check_embeddings(
    dimensions: usize,
    vectors: &[(String, Vec<f32>)],
    modes: &[InputMode],
) -> Result<()> {
    if !modes.is_empty() && modes.len() != vectors.len() {
        return Err(StoreError::Invalid(format!(
            "{} input modes for {} vectors",
            modes.len(),
            vectors.len()
        )));
    }
    for (hash, vector) in vectors {
        if vector.len() != dimensions {
            return Err(StoreError::Invalid(format!(
                "vector for {hash} has {} dimensions, the model has {dimensions}",
                vector.len()
            )));
        }
        if vector.iter().any(|x| !x.is_finite()) {
            return Err(StoreError::Invalid(format!("vector for {hash} has a non-finite value")));
        }
    }
    Ok(())
}

/// A chunk as read back for search results and the API.
#[derive(Debug, Clone, PartialEq)]
pub struct ChunkView {
    pub id: i64,
    pub project_id: i64,
    pub project: String,
    pub path: String,
    pub ordinal: i32,
    pub content: String,
    pub content_hash: String,
    pub start_line: i32,
    pub end_line: i32,
    pub symbol_path: String,
    pub kind: String,
    pub language: String,
    pub token_count: i32,
    pub commit_sha: Option<String>,
    pub index_run_id: Option<i64>,
}

/// Which chunks a lexical search ranks: those holding any of its terms, every one, or at least
/// some number of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TermMatch {
    Any,
    All,
    AtLeast(usize),
}

impl TermMatch {
    /// The match as groups of term indexes, each group ANDed and the groups ORed: at least `k`
    /// of `n` terms is every combination of `k` of them. `k` is clamped to `1..=n`.
    pub fn groups(self, n: usize) -> Vec<Vec<usize>> {
        let k = match self {
            TermMatch::Any => 1,
            TermMatch::All => n,
            TermMatch::AtLeast(k) => k.clamp(1, n.max(1)),
        };
        let mut groups = Vec::new();
        let mut pick: Vec<usize> = (0..k).collect();
        if n == 0 {
            return groups;
        }
        loop {
            groups.push(pick.clone());
            // The next combination in lexicographic order, if any.
            let Some(i) = (0..k).rev().find(|&i| pick[i] < n - k + i) else { return groups };
            pick[i] += 1;
            for j in i + 1..k {
                pick[j] = pick[j - 1] + 1;
            }
        }
    }

    /// A full-text query of the match over quoted `parts`, with the backend's `and` and `or`
    /// operators; `None` without parts.
    pub(crate) fn query(self, parts: &[String], and: &str, or: &str) -> Option<String> {
        let groups = self.groups(parts.len());
        let several = groups.len() > 1;
        let joined: Vec<String> = groups
            .iter()
            .map(|group| {
                let all = group.iter().map(|&i| parts[i].as_str()).collect::<Vec<_>>().join(and);
                if several && group.len() > 1 { format!("({all})") } else { all }
            })
            .collect();
        (!joined.is_empty()).then(|| joined.join(or))
    }
}

/// A scored hit from a store-side search signal.
#[derive(Debug, Clone, PartialEq)]
pub struct ScoredChunk {
    pub chunk_id: i64,
    /// Higher is better.
    pub score: f64,
}

/// Every symbol of a store with what the in-memory symbol search needs
/// (`search/symtab.rs`), read in one snapshot, with the symbols' version at that snapshot.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SymbolSnapshot {
    /// [`Store::symbols_version`] when the snapshot was read.
    pub version: i64,
    /// The files holding the symbols.
    pub files: Vec<SymbolFile>,
    pub symbols: Vec<SymbolRow>,
}

/// A file of a [`SymbolSnapshot`].
#[derive(Debug, Clone, PartialEq)]
pub struct SymbolFile {
    pub id: i64,
    pub path: String,
    pub language: String,
}

/// A symbol of a [`SymbolSnapshot`].
#[derive(Debug, Clone, PartialEq)]
pub struct SymbolRow {
    pub id: i64,
    pub file_id: i64,
    pub project_id: i64,
    pub name: String,
    pub qualified_name: String,
    pub kind: String,
    pub exported: bool,
    /// The chunk [`Store::symbol_chunk_ids`] links the symbol to, if any.
    pub chunk_id: Option<i64>,
}

/// A symbol as read back.
#[derive(Debug, Clone, PartialEq)]
pub struct SymbolView {
    pub id: i64,
    pub project_id: i64,
    pub path: String,
    pub name: String,
    pub qualified_name: String,
    pub kind: String,
    pub signature: String,
    pub start_line: i32,
    pub end_line: i32,
    pub exported: bool,
}

/// Restricts a search to some rows.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SearchScope {
    /// Projects the caller may read and asked for. Never empty when searching.
    pub project_ids: Vec<i64>,
    /// Only these languages (all when empty).
    pub languages: Vec<String>,
    /// Only these symbol kinds (all when empty), as the indexer names them (`function`,
    /// `class`, ...). A chunk is in scope when a symbol of one of them starts on one of its lines
    /// (the link [`Store::symbol_chunk_ids`] follows from a symbol to its chunk); a symbol is in
    /// scope when it is of one of them.
    pub kinds: Vec<String>,
}

/// The state of an index run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunStatus {
    Queued,
    Running,
    Succeeded,
    Failed,
    Cancelled,
}

impl RunStatus {
    pub fn name(self) -> &'static str {
        match self {
            RunStatus::Queued => "queued",
            RunStatus::Running => "running",
            RunStatus::Succeeded => "succeeded",
            RunStatus::Failed => "failed",
            RunStatus::Cancelled => "cancelled",
        }
    }

    pub fn from_name(name: &str) -> Option<RunStatus> {
        [RunStatus::Queued, RunStatus::Running, RunStatus::Succeeded, RunStatus::Failed, RunStatus::Cancelled]
            .into_iter()
            .find(|s| s.name() == name)
    }
}

/// A file row as listings show it.
#[derive(Debug, Clone, PartialEq)]
pub struct FileView {
    pub id: i64,
    pub file: FileRecord,
    pub indexed_at: chrono::DateTime<chrono::Utc>,
}

/// One file with what the indexer found in it.
#[derive(Debug, Clone, PartialEq)]
pub struct FileDetail {
    pub file: FileView,
    /// In source order.
    pub symbols: Vec<SymbolView>,
    /// In source order.
    pub imports: Vec<ImportRecord>,
}

/// One indexing job.
#[derive(Debug, Clone, PartialEq)]
pub struct IndexRun {
    pub id: i64,
    pub project_id: i64,
    /// `api`, `cli`, `git_hook`, `watch`, `ci`, `schedule`.
    pub trigger: String,
    pub status: RunStatus,
    /// Changed paths given by a git hook; `None` means a full walk.
    pub paths: Option<Vec<String>>,
    pub commit_sha: Option<String>,
    pub files_indexed: i64,
    pub files_skipped: i64,
    pub files_deleted: i64,
    pub chunks: i64,
    pub chunks_embedded: i64,
    pub embedding_cache_hits: i64,
    pub tokens_embedded: i64,
    pub error: Option<String>,
    pub lease_owner: Option<String>,
    pub lease_expires_at: Option<chrono::DateTime<chrono::Utc>>,
    pub created_at: chrono::DateTime<chrono::Utc>,
    pub started_at: Option<chrono::DateTime<chrono::Utc>>,
    pub finished_at: Option<chrono::DateTime<chrono::Utc>>,
}

/// Counters a run reports as it goes and at the end.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunCounts {
    pub files_indexed: i64,
    pub files_skipped: i64,
    pub files_deleted: i64,
    pub chunks: i64,
    pub chunks_embedded: i64,
    pub embedding_cache_hits: i64,
    pub tokens_embedded: i64,
}

/// A run's timeline entry.
#[derive(Debug, Clone, PartialEq)]
pub struct RunEvent {
    pub id: i64,
    pub run_id: i64,
    pub phase: String,
    /// `start`, `complete`, `error`, `progress`.
    pub event: String,
    pub message: Option<String>,
    pub data: serde_json::Value,
    pub created_at: chrono::DateTime<chrono::Utc>,
}

/// An audit-trail entry (`project.created`, `token.revoked`, `run.succeeded`, ...).
#[derive(Debug, Clone, PartialEq)]
pub struct ActivityEntry {
    pub id: i64,
    /// `None` once the project is deleted (the entry outlives it; `subject_id` keeps the id).
    pub project_id: Option<i64>,
    pub user_id: Option<i64>,
    pub action: String,
    /// `user`, `api`, `git_hook`, `ci`, `system`.
    pub source: String,
    pub subject_type: Option<String>,
    pub subject_id: Option<i64>,
    pub details: serde_json::Value,
    pub created_at: chrono::DateTime<chrono::Utc>,
}

/// A bearer token to store; only its hash is kept.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NewToken {
    /// `None` for a service token.
    pub user_id: Option<i64>,
    pub name: String,
    /// Lowercase hex of the token's 32-byte hash.
    pub token_hash: String,
    /// The first characters of the plain token, to tell tokens apart in listings.
    pub prefix: String,
    pub scopes: Vec<String>,
    pub expires_at: Option<chrono::DateTime<chrono::Utc>>,
}

/// A stored bearer token.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiToken {
    pub id: i64,
    pub user_id: Option<i64>,
    pub name: String,
    pub token_hash: String,
    pub prefix: String,
    pub scopes: Vec<String>,
    pub expires_at: Option<chrono::DateTime<chrono::Utc>>,
    pub last_used_at: Option<chrono::DateTime<chrono::Utc>>,
    pub revoked_at: Option<chrono::DateTime<chrono::Utc>>,
    pub created_at: chrono::DateTime<chrono::Utc>,
}

/// A commit to record, as `git log` describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommitRecord {
    /// Full lowercase hex object name.
    pub sha: String,
    /// Parent shas, first parent first.
    pub parents: Vec<String>,
    pub message: String,
    pub author_name: Option<String>,
    pub author_email: Option<String>,
    /// The branch the commit was seen on, when known.
    pub branch: Option<String>,
    pub committed_at: Option<chrono::DateTime<chrono::Utc>>,
    pub files_changed: i32,
    pub additions: i32,
    pub deletions: i32,
}

/// A recorded commit as read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Commit {
    pub id: i64,
    pub project_id: i64,
    pub sha: String,
    pub parents: Vec<String>,
    pub message: String,
    pub author_name: Option<String>,
    pub author_email: Option<String>,
    pub branch: Option<String>,
    pub committed_at: Option<chrono::DateTime<chrono::Utc>>,
    pub files_changed: i32,
    pub additions: i32,
    pub deletions: i32,
    pub created_at: chrono::DateTime<chrono::Utc>,
}

/// A user account to create, or the full new state of one to update.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NewUser {
    pub email: String,
    pub username: String,
    pub display_name: Option<String>,
    pub github_username: Option<String>,
    pub is_active: bool,
    pub is_admin: bool,
    /// A JSON object.
    pub preferences: serde_json::Value,
}

/// A stored user account.
#[derive(Debug, Clone, PartialEq)]
pub struct User {
    pub id: i64,
    pub email: String,
    pub username: String,
    pub display_name: Option<String>,
    pub github_username: Option<String>,
    pub is_active: bool,
    pub is_admin: bool,
    pub preferences: serde_json::Value,
    pub last_login_at: Option<chrono::DateTime<chrono::Utc>>,
    pub created_at: chrono::DateTime<chrono::Utc>,
    pub updated_at: chrono::DateTime<chrono::Utc>,
}

/// A user's membership of a project.
#[derive(Debug, Clone, PartialEq)]
pub struct Member {
    pub project_id: i64,
    pub user_id: i64,
    /// `read`, `write` or `admin`.
    pub role: String,
    pub created_at: chrono::DateTime<chrono::Utc>,
}

/// A task to create.
#[derive(Debug, Clone, PartialEq)]
pub struct NewTask {
    pub project_id: Option<i64>,
    /// A task of the same project this one is a subtask of.
    pub parent_id: Option<i64>,
    pub title: String,
    pub description: String,
    /// `pending`, `in_progress`, `blocked`, `done`, `cancelled`.
    pub status: String,
    /// 0 (most urgent) to 4.
    pub priority: i32,
    pub assigned_agent_id: Option<i64>,
    pub created_by: Option<i64>,
}

/// The full new state of a task's editable fields.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskUpdate {
    pub title: String,
    pub description: String,
    pub status: String,
    pub priority: i32,
    pub assigned_agent_id: Option<i64>,
}

/// A stored task.
#[derive(Debug, Clone, PartialEq)]
pub struct Task {
    pub id: i64,
    pub project_id: Option<i64>,
    pub parent_id: Option<i64>,
    pub title: String,
    pub description: String,
    pub status: String,
    pub priority: i32,
    pub assigned_agent_id: Option<i64>,
    pub created_by: Option<i64>,
    pub created_at: chrono::DateTime<chrono::Utc>,
    pub updated_at: chrono::DateTime<chrono::Utc>,
    /// Set when the task reaches `done` or `cancelled`, cleared when it leaves them.
    pub completed_at: Option<chrono::DateTime<chrono::Utc>>,
}

/// Which tasks of a project to list.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TaskFilter {
    pub status: Option<String>,
    /// Only the subtasks of this task.
    pub parent_id: Option<i64>,
}

/// An agent to create, or the full new state of one to update.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NewAgent {
    pub name: String,
    pub kind: String,
    pub model: Option<String>,
    /// A JSON object.
    pub config: serde_json::Value,
    pub is_active: bool,
}

/// A stored agent.
#[derive(Debug, Clone, PartialEq)]
pub struct Agent {
    pub id: i64,
    pub name: String,
    pub kind: String,
    pub model: Option<String>,
    pub config: serde_json::Value,
    pub is_active: bool,
    pub created_at: chrono::DateTime<chrono::Utc>,
    pub updated_at: chrono::DateTime<chrono::Utc>,
}

/// An execution to record, or (without `task_id` and `agent_id`) the full new state of one.
#[derive(Debug, Clone, PartialEq)]
pub struct NewExecution {
    pub task_id: i64,
    pub agent_id: Option<i64>,
    /// `running`, `succeeded`, `failed`, `cancelled`.
    pub status: String,
    pub input_tokens: i64,
    pub output_tokens: i64,
    pub cost_usd: f64,
    pub duration_ms: Option<i64>,
    pub error: Option<String>,
}

/// A stored execution, with the project of its task.
#[derive(Debug, Clone, PartialEq)]
pub struct Execution {
    pub id: i64,
    pub task_id: i64,
    /// The task's project (`None` for a task without one).
    pub project_id: Option<i64>,
    pub agent_id: Option<i64>,
    pub status: String,
    pub input_tokens: i64,
    pub output_tokens: i64,
    pub cost_usd: f64,
    pub duration_ms: Option<i64>,
    pub error: Option<String>,
    pub started_at: chrono::DateTime<chrono::Utc>,
    /// Set when the execution leaves `running`.
    pub finished_at: Option<chrono::DateTime<chrono::Utc>>,
}

/// A review to record.
#[derive(Debug, Clone, PartialEq)]
pub struct NewReview {
    pub project_id: i64,
    /// A commit of the same project.
    pub commit_id: i64,
    pub reviewer_agent_id: Option<i64>,
    pub reviewer_user_id: Option<i64>,
    /// 0 to 100.
    pub score: Option<i32>,
    pub summary: String,
    /// JSON arrays.
    pub issues: serde_json::Value,
    pub suggestions: serde_json::Value,
}

/// A stored review of a commit.
#[derive(Debug, Clone, PartialEq)]
pub struct Review {
    pub id: i64,
    pub project_id: i64,
    pub commit_id: i64,
    pub reviewer_agent_id: Option<i64>,
    pub reviewer_user_id: Option<i64>,
    pub score: Option<i32>,
    pub summary: String,
    pub issues: serde_json::Value,
    pub suggestions: serde_json::Value,
    pub created_at: chrono::DateTime<chrono::Utc>,
    pub updated_at: chrono::DateTime<chrono::Utc>,
}

/// Store-wide facts for `semdex status`.
#[derive(Debug, Clone, PartialEq)]
pub struct StoreStatus {
    pub backend: Backend,
    pub schema_version: Option<i64>,
    pub latest_version: i64,
    /// `(table, rows)` for every table.
    pub row_counts: Vec<(String, i64)>,
    pub size_bytes: Option<i64>,
    /// The pgvector extension version when present (PostgreSQL only).
    pub pgvector: Option<String>,
}

/// One migration as `semdex migrate status` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MigrationInfo {
    pub version: i64,
    /// The migration's name; for a version this binary does not know, a note saying so.
    pub description: String,
    pub applied: bool,
    /// Whether this binary carries the migration (`false`: the schema is newer than the binary).
    pub known: bool,
}

/// The relational store. Every method is one transaction unless it says otherwise.
#[async_trait]
pub trait Store: Send + Sync + std::fmt::Debug {
    fn backend(&self) -> Backend;

    /// Applies all pending migrations.
    async fn migrate_up(&self) -> Result<()>;
    /// Reverts migrations down to `to` (exclusive: versions above `to` are reverted); `None`
    /// reverts the latest one. A schema with a migration this binary does not know is refused
    /// with `Migration`.
    async fn migrate_down(&self, to: Option<i64>) -> Result<()>;
    async fn status(&self) -> Result<StoreStatus>;
    /// Every migration this binary knows and every one the database has applied, by version.
    async fn migrations(&self) -> Result<Vec<MigrationInfo>>;
    /// Opens a consistent read-only snapshot of every table, for a backup.
    async fn begin_export(&self) -> Result<Box<dyn ExportSnapshot>>;
    /// Starts a restore in one write transaction. Refuses (`Conflict`) a store holding any row
    /// unless `wipe`, which deletes every row first (in the same transaction). The schema must
    /// be migrated.
    async fn begin_restore(&self, wipe: bool) -> Result<Box<dyn RestoreSession>>;
    /// A canonical, sorted listing of the schema's objects (tables with their columns and
    /// constraints, indexes, triggers, views), without the migrations bookkeeping, so two
    /// schemas can be compared.
    async fn schema_dump(&self) -> Result<Vec<String>>;

    // Projects.
    async fn create_project(&self, project: NewProject) -> Result<Project>;
    async fn project_by_name(&self, name: &str) -> Result<Option<Project>>;
    async fn project(&self, id: i64) -> Result<Option<Project>>;
    async fn list_projects(&self) -> Result<Vec<Project>>;
    async fn set_last_indexed_commit(&self, project_id: i64, sha: Option<&str>) -> Result<()>;
    /// Deletes a project and everything it owns; `false` when there was no such project.
    async fn delete_project(&self, id: i64) -> Result<bool>;
    /// Sets a project's name, repository URL, default branch and settings from `update` (its
    /// root path stays); `NotFound` for an unknown project, `Conflict` for a taken name.
    async fn update_project(&self, id: i64, update: &NewProject) -> Result<Project>;
    /// The projects a user is a member of, with the member's role (`read`, `write`, `admin`).
    async fn member_projects(&self, user_id: i64) -> Result<Vec<(i64, String)>>;
    /// Every token, newest first (hashes only; secrets are never stored).
    async fn list_tokens(&self) -> Result<Vec<ApiToken>>;

    // Tokens and activity.
    async fn create_token(&self, token: NewToken) -> Result<ApiToken>;
    async fn token_by_hash(&self, token_hash: &str) -> Result<Option<ApiToken>>;
    /// Marks a token revoked; `false` when there was no such token or it was already revoked.
    async fn revoke_token(&self, id: i64) -> Result<bool>;
    /// Records that a token was just used (`last_used_at`).
    async fn touch_token(&self, id: i64) -> Result<()>;
    /// Activity entries, newest first, of one project or of all (`None`), with ids below
    /// `before_id` when given (cursor pagination).
    async fn activity(
        &self,
        project_id: Option<i64>,
        before_id: Option<i64>,
        limit: i64,
    ) -> Result<Vec<ActivityEntry>>;

    // Files, symbols, imports and chunks.
    /// Every file of a project with what the incremental fast path compares.
    async fn file_states(&self, project_id: i64) -> Result<Vec<FileState>>;
    /// Replaces a file's rows (file, symbols, imports, chunks) in one transaction, keeping
    /// project stats current. Chunks are recorded against `run_id` and `commit`.
    async fn replace_file(
        &self,
        project_id: i64,
        write: &FileWrite,
        run_id: Option<i64>,
        commit: Option<&str>,
    ) -> Result<()>;
    /// Deletes files and everything hanging off them; unknown paths are ignored.
    async fn delete_files(&self, project_id: i64, paths: &[String]) -> Result<u64>;

    // Embeddings.
    /// Registers (or finds) a model; on PostgreSQL also creates its partial HNSW index.
    async fn register_model(&self, provider: &str, model: &str, dimensions: i32) -> Result<EmbeddingModel>;
    /// Distinct chunk content hashes of a project (all projects when `None`) that have no
    /// embedding for `model_id`, with one content each, up to `limit`, in content-hash order,
    /// starting after the hash `after` (a keyset cursor: pass the last hash of the previous page
    /// to read the next one without reading the first again).
    async fn pending_embeddings(
        &self,
        model_id: i64,
        project_id: Option<i64>,
        after: Option<&str>,
        limit: i64,
    ) -> Result<Vec<(String, String)>>;
    /// Stores vectors for content hashes, all sent whole; see
    /// [`Store::put_embeddings_with_modes`].
    async fn put_embeddings(&self, model_id: i64, vectors: &[(String, Vec<f32>)]) -> Result<u64> {
        self.put_embeddings_with_modes(model_id, vectors, &[]).await
    }
    /// Stores vectors for content hashes, each with how its text was sent (`modes`: one per
    /// vector, or empty for all [`InputMode::Whole`]); existing ones are kept (idempotent).
    /// Returns how many were new. The batch is validated first (the model exists: else
    /// `NotFound`; every vector has the model's dimensions and finite values, and `modes` fits:
    /// else `Invalid`) and stored whole or not at all.
    async fn put_embeddings_with_modes(
        &self,
        model_id: i64,
        vectors: &[(String, Vec<f32>)],
        modes: &[InputMode],
    ) -> Result<u64>;
    /// How the text of each of `hashes` that has an embedding for `model_id` was sent, in
    /// content-hash order (hashes without one are left out).
    async fn embedding_input_modes(
        &self,
        model_id: i64,
        hashes: &[String],
    ) -> Result<Vec<(String, InputMode)>>;
    /// Embeddings of a model in id order after `after_id`, for rebuilding a vector index.
    async fn embeddings_page(
        &self,
        model_id: i64,
        after_id: i64,
        limit: i64,
    ) -> Result<Vec<(i64, String, Vec<f32>)>>;
    /// Number of embeddings of a model and the highest id, to tell whether a vector index is stale.
    async fn embeddings_extent(&self, model_id: i64) -> Result<(i64, i64)>;
    /// How many of a model's embeddings have an id at most `max_id`: whether a saved vector
    /// index that stops there is still a true prefix of the store.
    async fn embeddings_count_upto(&self, model_id: i64, max_id: i64) -> Result<i64>;
    /// Which of `hashes` already have an embedding for `model_id` (a dry run prices the rest).
    async fn existing_embeddings(&self, model_id: i64, hashes: &[String]) -> Result<Vec<String>>;

    /// Records a new size and mtime for a file whose content hash did not change.
    async fn touch_file(&self, project_id: i64, path: &str, size: i64, mtime_ns: i64) -> Result<()>;
    /// Marks a queued run as running for `owner` (the CLI runs its own run in-process).
    /// Returns false when the run is not queued.
    async fn claim_run(&self, run_id: i64, owner: &str, lease_secs: i64) -> Result<bool>;

    // Search signals.
    /// Chunks in scope whose embedding is among `embedding_ids`, as `(embedding_id, chunk)`:
    /// every chunk holding the embedded text, in the order of `embedding_ids`, then by chunk id.
    async fn chunks_for_embeddings(
        &self,
        model_id: i64,
        embedding_ids: &[i64],
        scope: &SearchScope,
    ) -> Result<Vec<(i64, ChunkView)>>;
    /// Whether [`Store::dense_search`] answers itself (pgvector), so the local HNSW need not
    /// be kept.
    async fn serves_dense_search(&self) -> Result<bool> {
        Ok(false)
    }
    /// Server-side nearest-neighbour search (pgvector); `Ok(None)` when this backend has no
    /// vector index of its own and the local HNSW must serve.
    async fn dense_search(
        &self,
        model: &EmbeddingModel,
        query: &[f32],
        scope: &SearchScope,
        k: i64,
    ) -> Result<Option<Vec<(i64, f32)>>> {
        let _ = (model, query, scope, k);
        Ok(None)
    }
    /// Embedding ids of the chunks in scope (the allowed set for filtered vector search).
    async fn embedding_ids_in_scope(&self, model_id: i64, scope: &SearchScope) -> Result<Vec<i64>>;
    /// Full-text search over chunks' lexical documents; `terms` is a list of terms, of which a
    /// chunk must hold any or all as `matching` says, ranked by BM25 or its approximation, best
    /// first. Each term is matched as a whole token (query syntax inside a term is text); a
    /// trailing `*` makes it a prefix. Terms without a word character are dropped. An empty
    /// scope finds nothing.
    async fn lexical_search(
        &self,
        terms: &[String],
        matching: TermMatch,
        scope: &SearchScope,
        limit: i64,
    ) -> Result<Vec<ScoredChunk>>;
    /// Symbols whose name or qualified name matches exactly, by prefix or by substring
    /// (ASCII case-insensitive), in that order; within each, name matches before
    /// qualified-name matches, then exported first, then shorter names, then path. Then, while
    /// `limit` is not reached, fuzzy matches of the name for typos (`store/fuzzy.rs`): by edit
    /// distance, then exported first, then shorter names.
    async fn symbol_search(&self, query: &str, scope: &SearchScope, limit: i64) -> Result<Vec<SymbolView>>;
    /// [`Store::symbol_search`] for several words: one list per word, in the order given.
    async fn symbol_search_words(
        &self,
        words: &[String],
        scope: &SearchScope,
        limit: i64,
    ) -> Result<Vec<Vec<SymbolView>>> {
        futures::future::try_join_all(words.iter().map(|w| self.symbol_search(w, scope, limit))).await
    }
    /// A number that changes whenever a symbol is written or removed (a file replaced or
    /// deleted, a project deleted, a restore), so that a copy of the symbols can tell it is
    /// current with one read. `None` when the backend keeps no such number: symbol search then
    /// stays in the store ([`Store::symbol_search_words`]).
    async fn symbols_version(&self) -> Result<Option<i64>> {
        Ok(None)
    }
    /// Every symbol, with the version it is at; `None` when [`Store::symbols_version`] is.
    async fn symbol_snapshot(&self) -> Result<Option<SymbolSnapshot>> {
        Ok(None)
    }
    /// Chunks by id, in the order given; unknown ids are skipped.
    async fn chunks(&self, ids: &[i64]) -> Result<Vec<ChunkView>>;
    /// The chunk of a file that covers a line.
    async fn chunk_at(&self, project_id: i64, path: &str, line: i32) -> Result<Option<ChunkView>>;
    /// For each symbol id, the id of the first chunk of its file holding its first line: one
    /// query for a whole symbol signal. Symbols without such a chunk are left out.
    async fn symbol_chunk_ids(&self, symbol_ids: &[i64]) -> Result<Vec<(i64, i64)>>;
    /// Files reachable from `path` through imports (`reverse`: through importers) up to
    /// `depth`, each with its shortest distance, ordered by distance then path; `path` itself
    /// is never listed, and cycles terminate.
    async fn import_neighbours(
        &self,
        project_id: i64,
        path: &str,
        reverse: bool,
        depth: u32,
    ) -> Result<Vec<(String, u32)>>;

    // Users, members, tasks, agents, executions, reviews.
    /// `Conflict` for a taken username, email (any case) or GitHub username; `Invalid` for
    /// values the schema's checks refuse.
    async fn create_user(&self, user: NewUser) -> Result<User>;
    async fn user(&self, id: i64) -> Result<Option<User>>;
    /// Users in id order; with `after`, only ids above it (cursor).
    async fn list_users(&self, after: Option<i64>, limit: i64) -> Result<Vec<User>>;
    /// Replaces a user's fields with `update`; `NotFound` for an unknown user.
    async fn update_user(&self, id: i64, update: &NewUser) -> Result<User>;
    /// Deletes a user with their tokens and memberships; `false` when there was no such user.
    async fn delete_user(&self, id: i64) -> Result<bool>;
    /// A token by id.
    async fn token(&self, id: i64) -> Result<Option<ApiToken>>;
    /// Adds a member or changes their role; `Invalid` for an unknown project or user or a role
    /// other than `read`, `write`, `admin`.
    async fn set_member(&self, project_id: i64, user_id: i64, role: &str) -> Result<Member>;
    /// `false` when the user was not a member.
    async fn remove_member(&self, project_id: i64, user_id: i64) -> Result<bool>;
    /// A project's members in user id order.
    async fn list_members(&self, project_id: i64) -> Result<Vec<Member>>;
    /// `Invalid` when the parent is not a task of the same project, or a reference or value is
    /// refused by the schema.
    async fn create_task(&self, task: NewTask) -> Result<Task>;
    async fn task(&self, id: i64) -> Result<Option<Task>>;
    /// A project's tasks in id order; with `after`, only ids above it (cursor).
    async fn list_tasks(
        &self,
        project_id: i64,
        filter: &TaskFilter,
        after: Option<i64>,
        limit: i64,
    ) -> Result<Vec<Task>>;
    /// Sets a task's editable fields, keeping `completed_at` in step with the status;
    /// `NotFound` for an unknown task.
    async fn update_task(&self, id: i64, update: &TaskUpdate) -> Result<Task>;
    /// Deletes a task with its subtasks and executions; `false` when there was no such task.
    async fn delete_task(&self, id: i64) -> Result<bool>;
    /// `Conflict` for a taken name.
    async fn create_agent(&self, agent: NewAgent) -> Result<Agent>;
    async fn agent(&self, id: i64) -> Result<Option<Agent>>;
    /// Agents in id order; with `after`, only ids above it (cursor).
    async fn list_agents(&self, after: Option<i64>, limit: i64) -> Result<Vec<Agent>>;
    async fn update_agent(&self, id: i64, update: &NewAgent) -> Result<Agent>;
    async fn delete_agent(&self, id: i64) -> Result<bool>;
    /// `Invalid` for an unknown task or agent or a refused value. A final status sets
    /// `finished_at`.
    async fn create_execution(&self, execution: NewExecution) -> Result<Execution>;
    async fn execution(&self, id: i64) -> Result<Option<Execution>>;
    /// Executions of a task or of an agent (or both filters), in id order after `after`,
    /// limited to tasks of `projects` when given.
    async fn list_executions(
        &self,
        task_id: Option<i64>,
        agent_id: Option<i64>,
        projects: Option<&[i64]>,
        after: Option<i64>,
        limit: i64,
    ) -> Result<Vec<Execution>>;
    /// Sets status, tokens, cost, duration and error (task and agent stay); `finished_at` is
    /// set when the status leaves `running` and cleared when it returns.
    async fn update_execution(&self, id: i64, update: &NewExecution) -> Result<Execution>;
    /// `Invalid` when the commit is not one of the project's.
    async fn create_review(&self, review: NewReview) -> Result<Review>;
    async fn review(&self, id: i64) -> Result<Option<Review>>;
    /// A project's reviews in id order; with `after`, only ids above it (cursor).
    async fn list_reviews(&self, project_id: i64, after: Option<i64>, limit: i64) -> Result<Vec<Review>>;
    /// Activity entries of any of `projects`, newest first, below `before_id` when given.
    async fn activity_in(
        &self,
        projects: &[i64],
        before_id: Option<i64>,
        limit: i64,
    ) -> Result<Vec<ActivityEntry>>;

    // Index runs.
    async fn create_run(
        &self,
        project_id: i64,
        trigger: &str,
        paths: Option<&[String]>,
        commit: Option<&str>,
    ) -> Result<IndexRun>;
    /// Leases the oldest queued run, or one whose lease expired (`lease_expires_at <= now`),
    /// for `owner` for `lease_secs` (0 to one year, else `Invalid`; 0 expires at once). A
    /// takeover keeps the original `started_at`.
    async fn lease_run(&self, owner: &str, lease_secs: i64) -> Result<Option<IndexRun>>;
    /// Extends a running run's lease; `false` when `owner` no longer holds it.
    async fn heartbeat_run(&self, run_id: i64, owner: &str, lease_secs: i64) -> Result<bool>;
    async fn update_run_counts(&self, run_id: i64, counts: &RunCounts) -> Result<()>;
    /// Ends a queued or running run with a final status, clearing its lease. `Invalid` for a
    /// non-final status, `NotFound` for an unknown run, `Conflict` for a finished one.
    async fn finish_run(&self, run_id: i64, status: RunStatus, error: Option<&str>) -> Result<()>;
    /// Puts a running run that `owner` holds back in the queue, lease cleared and start kept,
    /// for a worker that stops before finishing it; `false` when `owner` no longer holds it.
    async fn release_run(&self, run_id: i64, owner: &str) -> Result<bool>;
    /// A project's runs, newest first; with `before`, only runs with a smaller id (cursor).
    async fn list_runs(&self, project_id: i64, before: Option<i64>, limit: i64) -> Result<Vec<IndexRun>>;
    /// Runs queued or running, over every project: the queue depth.
    async fn active_runs(&self) -> Result<i64>;
    /// A project's files in path order; with `after`, only paths sorting after it (cursor).
    async fn list_files(&self, project_id: i64, after: Option<&str>, limit: i64) -> Result<Vec<FileView>>;
    /// One file with its symbols and imports; `None` when the project holds no such path.
    async fn file_detail(&self, project_id: i64, path: &str) -> Result<Option<FileDetail>>;
    async fn run(&self, run_id: i64) -> Result<Option<IndexRun>>;
    async fn add_run_event(
        &self,
        run_id: i64,
        phase: &str,
        event: &str,
        message: Option<&str>,
        data: serde_json::Value,
    ) -> Result<()>;
    async fn run_events(&self, run_id: i64) -> Result<Vec<RunEvent>>;

    // Commits.
    /// Records commits of a project; a sha already recorded for the project is left as it is
    /// (the first recording wins), so recording the same commits again adds nothing. Returns how
    /// many rows were new. All or nothing.
    async fn record_commits(&self, project_id: i64, commits: &[CommitRecord]) -> Result<u64>;
    /// A project's recorded commits, newest first (by commit time, then by id), up to `limit`.
    async fn commits(&self, project_id: i64, limit: i64) -> Result<Vec<Commit>>;
    /// The project registered for a repository root (the oldest one if several share it).
    async fn project_by_root(&self, root: &str) -> Result<Option<Project>>;
}

/// A shared handle to whichever backend is configured.
pub type SharedStore = Arc<dyn Store>;

/// The migrations a binary carries (`migrator`) merged with the versions a database applied.
pub(crate) fn migration_list(migrator: &sqlx::migrate::Migrator, applied: &[i64]) -> Vec<MigrationInfo> {
    let mut out: Vec<MigrationInfo> = migrator
        .iter()
        .filter(|m| !m.migration_type.is_down_migration())
        .map(|m| MigrationInfo {
            version: m.version,
            description: m.description.to_string(),
            applied: applied.contains(&m.version),
            known: true,
        })
        .collect();
    for version in applied {
        if !out.iter().any(|m| m.version == *version) {
            out.push(MigrationInfo {
                version: *version,
                description: "unknown to this binary (written by a newer semdex)".into(),
                applied: true,
                known: false,
            });
        }
    }
    out.sort_by_key(|m| m.version);
    out.dedup_by_key(|m| m.version);
    out
}

/// Escapes LIKE's wildcards for a pattern with backslash as the escape character (PostgreSQL's
/// default; SQLite needs `ESCAPE '\'`).
fn like_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::TermMatch;

    #[test]
    fn term_groups_are_the_combinations() {
        assert_eq!(TermMatch::Any.groups(3), [[0], [1], [2]]);
        assert_eq!(TermMatch::All.groups(3), [[0, 1, 2]]);
        assert_eq!(TermMatch::AtLeast(2).groups(3), [[0, 1], [0, 2], [1, 2]]);
        assert_eq!(TermMatch::AtLeast(2).groups(4).len(), 6);
        assert_eq!(TermMatch::AtLeast(9).groups(2), [[0, 1]]);
        assert_eq!(TermMatch::AtLeast(0).groups(2), [[0], [1]]);
        assert!(TermMatch::All.groups(0).is_empty());
    }
}
