//! The embedded default store: SQLite (bundled, WAL) in the data directory.
//!
//! **Durability.** The database runs in WAL mode with `synchronous = NORMAL`: a commit is
//! appended to the write-ahead log without an fsync, and the log is synced at checkpoints. A
//! process crash loses nothing; a power loss or OS crash can lose the last transactions committed
//! before it, but never corrupts the database. The index is derived data that the next run
//! rebuilds, so that trade for several times faster commits is the right one here.
//!
//! **Concurrency.** SQLite has one writer at a time. Writes go through a pool of exactly one
//! connection, so they queue in-process instead of failing with `SQLITE_BUSY`; multi-statement
//! writes start with `BEGIN IMMEDIATE` so another process holding the lock is waited for
//! (`busy_timeout`) rather than discovered mid-transaction. Reads use a separate pool of
//! `query_only` connections that WAL lets run beside the writer.
//!
//! **Timestamps** are written by SQL in one sortable UTC text form (see the migration), so lease
//! expiry and ordering are string comparisons; Rust never formats a timestamp the database
//! compares, except token expiry, which uses the same form.

use std::path::{Path, PathBuf};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::error::ErrorKind;
use sqlx::migrate::{MigrateError, Migrator};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow, SqliteSynchronous,
};
use sqlx::{QueryBuilder, Row, Sqlite, Transaction};

use super::dump::{self, ColumnKind, ExportSnapshot, RestoreSession, Row as CanonicalRow, TableSpec};
use super::fuzzy::{self, Fuzzy};
use super::like_escape;
use super::{
    ActivityEntry, Agent, ApiToken, Backend, ChunkView, Commit, CommitRecord, EmbeddingModel, Execution,
    FileState, FileWrite, IndexRun, InputMode, Member, MigrationInfo, NewAgent, NewExecution, NewProject,
    NewReview, NewTask, NewToken, NewUser, Project, Result, Review, RunCounts, RunEvent, RunStatus,
    ScoredChunk, SearchScope, Store, StoreError, StoreStatus, SymbolView, Task, TaskFilter, TaskUpdate, User,
};
use super::{
    FileDetail, FileRecord, FileView, ImportRecord, SymbolFile, SymbolRow, SymbolSnapshot, TermMatch,
};

/// The SQLite migrations, embedded at build time.
static MIGRATOR: Migrator = sqlx::migrate!("../migrations/sqlite");

/// Every table of the schema, for `status` row counts.
const TABLES: &[&str] = &[
    "users",
    "api_tokens",
    "projects",
    "project_members",
    "files",
    "symbols",
    "imports",
    "chunks",
    "embedding_models",
    "embeddings",
    "commits",
    "index_runs",
    "index_run_events",
    "tasks",
    "agents",
    "executions",
    "reviews",
    "activity_log",
];

/// Rows per multi-row INSERT. Large enough to amortise statement overhead, small enough to stay
/// far below SQLite's bound-parameter limit (16 columns x 256 rows = 4,096) and to keep a few
/// statement shapes in the cache.
const BATCH_ROWS: usize = 256;

/// How long a connection waits for another process's write lock before giving up.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// The current time in the schema's timestamp form, as an SQL expression.
macro_rules! now {
    () => {
        "strftime('%Y-%m-%dT%H:%M:%fZ', 'now')"
    };
}

macro_rules! project_cols {
    () => {
        "id, name, root_path, repository_url, default_branch, settings, total_files, total_size_bytes, \
         total_chunks, last_indexed_commit, created_at, updated_at"
    };
}

macro_rules! run_cols {
    () => {
        "id, project_id, \"trigger\", status, paths, commit_sha, files_indexed, files_skipped, files_deleted, \
         chunks, chunks_embedded, embedding_cache_hits, tokens_embedded, error, lease_owner, lease_expires_at, \
         created_at, started_at, finished_at"
    };
}

macro_rules! file_cols {
    () => {
        "id, path, language, size, line_count, content_hash, mtime_ns, is_binary, is_generated, skip_reason, \
         diagnostics_count, chunker_version, indexed_at"
    };
}

macro_rules! token_cols {
    () => {
        "id, user_id, name, token_hash, prefix, scopes, expires_at, last_used_at, revoked_at, created_at"
    };
}

macro_rules! chunk_view_select {
    () => {
        "SELECT c.id, c.project_id, p.name AS project, f.path, c.ordinal, c.content, c.content_hash, \
         c.start_line, c.end_line, c.symbol_path, c.kind, c.language, c.token_count, c.commit_sha, \
         c.index_run_id \
         FROM chunks c JOIN files f ON f.id = c.file_id JOIN projects p ON p.id = c.project_id"
    };
}

macro_rules! symbol_view_select {
    () => {
        "SELECT s.id, s.project_id, f.path, s.name, s.qualified_name, s.kind, s.signature, s.start_line, \
         s.end_line, s.exported \
         FROM symbols s JOIN files f ON f.id = s.file_id"
    };
}

/// The kind filter on a chunks alias: with a JSON list of kinds as the parameter (NULL for
/// all), a chunk passes when a symbol of one of them starts on one of its lines.
macro_rules! chunk_kinds {
    ($alias:literal, $kinds:literal) => {
        concat!(
            "(",
            $kinds,
            " IS NULL OR EXISTS (SELECT 1 FROM chunks kc JOIN symbols ks ON ks.file_id = kc.file_id ",
            "AND ks.start_line BETWEEN kc.start_line AND kc.end_line WHERE kc.id = ",
            $alias,
            ".id AND ks.kind IN (SELECT value FROM json_each(",
            $kinds,
            "))))"
        )
    };
}

/// The scope predicate on a symbols alias `s` joined to its file `f`: projects, languages and
/// kinds as JSON-list parameters (languages and kinds NULL for all).
macro_rules! symbol_scope {
    ($projects:literal, $languages:literal, $kinds:literal) => {
        concat!(
            "s.project_id IN (SELECT value FROM json_each(",
            $projects,
            ")) AND (",
            $languages,
            " IS NULL OR f.language IN (SELECT value FROM json_each(",
            $languages,
            "))) AND (",
            $kinds,
            " IS NULL OR s.kind IN (SELECT value FROM json_each(",
            $kinds,
            ")))"
        )
    };
}

macro_rules! user_cols {
    () => {
        "id, email, username, display_name, github_username, is_active, is_admin, preferences, last_login_at, \
         created_at, updated_at"
    };
}

macro_rules! task_cols {
    () => {
        "id, project_id, parent_id, title, description, status, priority, assigned_agent_id, created_by, \
         created_at, updated_at, completed_at"
    };
}

macro_rules! agent_cols {
    () => {
        "id, name, kind, model, config, is_active, created_at, updated_at"
    };
}

macro_rules! review_cols {
    () => {
        "id, project_id, commit_id, reviewer_agent_id, reviewer_user_id, score, summary, issues, suggestions, \
         created_at, updated_at"
    };
}

macro_rules! execution_select {
    () => {
        "SELECT e.id, e.task_id, t.project_id, e.agent_id, e.status, e.input_tokens, e.output_tokens, e.cost_usd, \
         e.duration_ms, e.error, e.started_at, e.finished_at \
         FROM executions e JOIN tasks t ON t.id = e.task_id"
    };
}

/// How much of the database file each reader maps into memory (SQLite's `mmap_size`): address
/// space, not memory; the kernel's page cache backs it.
const READER_MMAP_BYTES: i64 = 1 << 30;

/// Rows a reader's worker thread may step ahead of the task reading them (sqlx's default is 50):
/// with room for a whole answer, the worker finishes its query without waiting for the task to
/// be polled, and the task wakes once rather than for every few rows.
const READER_ROW_BUFFER: usize = 4096;

/// Each reader's page cache (SQLite's `cache_size`; negative means KiB): 16 MiB.
const READER_CACHE_KIB: i64 = -16 * 1024;

/// SQLite-backed [`super::Store`].
#[derive(Debug)]
pub struct SqliteStore {
    /// Exactly one connection: SQLite's single writer, queued in-process.
    writer: SqlitePool,
    /// `query_only` connections for reads.
    reader: SqlitePool,
    path: PathBuf,
}

impl SqliteStore {
    /// Opens (creating it and its parent directories if needed) the database at `path`. Does not
    /// migrate: call [`Store::migrate_up`].
    pub async fn open(path: &Path) -> Result<SqliteStore> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|e| StoreError::Unavailable(sqlx::Error::Io(e)))?;
        }
        let base = SqliteConnectOptions::new()
            .filename(path)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .foreign_keys(true)
            .busy_timeout(BUSY_TIMEOUT)
            .pragma("temp_store", "memory");

        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            .idle_timeout(None)
            .max_lifetime(None)
            // An in-process connection to a local file cannot drop: no ping before each use.
            .test_before_acquire(false)
            .before_acquire(super::not_left_in_transaction)
            // A long replace_file holds the writer; queued writes wait for it.
            .acquire_timeout(Duration::from_secs(120))
            .connect_with(base.clone().create_if_missing(true))
            .await
            .map_err(db_err)?;

        // Twice the cores, at least four: a hybrid search runs its signals at once, and a long
        // full-text ranking should not hold up the index lookups of the others.
        let readers = std::thread::available_parallelism().map_or(4, |n| n.get() * 2).clamp(4, 16);
        let reader = SqlitePoolOptions::new()
            .max_connections(readers as u32)
            .min_connections(0)
            .idle_timeout(Some(Duration::from_secs(600)))
            .acquire_timeout(Duration::from_secs(30))
            .test_before_acquire(false)
            .before_acquire(super::not_left_in_transaction)
            // Opened after the writer set WAL (a persistent property of the file), so readers
            // never need to write; query_only makes a stray write an error. Searches touch the
            // full-text index and the symbols all over: pages come from a memory map of the file
            // (no read call per page) and a larger page cache than the default 2 MB.
            .connect_with(
                base.pragma("query_only", "ON")
                    .pragma("mmap_size", READER_MMAP_BYTES.to_string())
                    .pragma("cache_size", READER_CACHE_KIB.to_string())
                    .row_buffer_size(READER_ROW_BUFFER),
            )
            .await
            .map_err(db_err)?;

        Ok(SqliteStore { writer, reader, path: path.to_path_buf() })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Closes both pools, checkpointing the WAL.
    pub async fn close(&self) {
        self.reader.close().await;
        self.writer.close().await;
    }

    /// Starts a write transaction that holds the write lock from its first statement.
    async fn begin_write(&self) -> Result<Transaction<'static, Sqlite>> {
        self.writer.begin_with("BEGIN IMMEDIATE").await.map_err(db_err)
    }

    /// Applied migration versions, ascending; empty when the bookkeeping table does not exist.
    async fn applied_versions(&self) -> Result<Vec<i64>> {
        let exists: Option<i64> = sqlx::query_scalar(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = '_sqlx_migrations'",
        )
        .fetch_optional(&self.writer)
        .await
        .map_err(db_err)?;
        if exists.is_none() {
            return Ok(Vec::new());
        }
        sqlx::query_scalar("SELECT version FROM _sqlx_migrations WHERE success ORDER BY version")
            .fetch_all(&self.writer)
            .await
            .map_err(db_err)
    }

    async fn table_exists(&self, name: &str) -> Result<bool> {
        let found: Option<i64> =
            sqlx::query_scalar("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?")
                .bind(name)
                .fetch_optional(&self.reader)
                .await
                .map_err(db_err)?;
        Ok(found.is_some())
    }
}

/// The id of the chunk holding a symbol `s`'s first line: the first such chunk of its file.
macro_rules! symbol_chunk {
    () => {
        "(SELECT c.id FROM chunks c WHERE c.file_id = s.file_id AND c.start_line <= s.start_line \
         AND c.end_line >= s.start_line ORDER BY c.ordinal LIMIT 1)"
    };
}

/// The symbols' version ([`Store::symbols_version`]), moved by triggers (migration 0006).
const SYMBOLS_VERSION: &str = "SELECT version FROM symbols_version WHERE id = 1";

/// A leading symbol phase's rank of a match of `?1` (ASCII-lowercased): 0 for the exact name, 1
/// for the exact qualified name, 2 for a prefix.
macro_rules! leading_rank {
    () => {
        "(CASE WHEN lower(s.name) = ?1 THEN 0 WHEN lower(s.qualified_name) = ?1 THEN 1 ELSE 2 END)"
    };
}

/// The order of both leading symbol phases (see [`SqliteStore::symbol_phase`]).
const LEADING_ORDER: &str = concat!(
    leading_rank!(),
    ", s.exported DESC, (CASE WHEN ",
    leading_rank!(),
    " < 2 THEN length(s.qualified_name) ELSE length(s.name) END), (CASE WHEN ",
    leading_rank!(),
    " < 2 THEN s.qualified_name ELSE s.name END)"
);

/// A symbol phase's substring test: contains `?8` (LIKE-escaped). The pattern is built in SQL:
/// a bound LIKE pattern is an input to the plan, and SQLite prepares the statement again each
/// time its value changes.
macro_rules! contains_q {
    () => {
        "LIKE ('%' || ?8 || '%') ESCAPE '\\'"
    };
}

/// The SQL phases of a symbol search, each filling what the previous left.
#[derive(Clone, Copy)]
enum SymbolPhase {
    /// Exact matches of the name or qualified name first, then prefixes of the name.
    Leading,
    /// Prefixes of the qualified name only (`Query.fetch` for `query`). They sort after every
    /// row of [`SymbolPhase::Leading`] in one order, so they are read only when that phase
    /// leaves room: a class's members all share its prefix and there can be hundreds.
    QualifiedPrefix,
    Substring,
}

impl SqliteStore {
    /// Appends one phase's matches of `q` (ASCII-lowercased) to `out`, up to `limit` in all;
    /// within a phase, name matches before qualified-name matches, exported first, shorter
    /// first, then name, path and id.
    async fn symbol_phase(
        &self,
        q: &str,
        phase: SymbolPhase,
        scope: &SearchScope,
        limit: i64,
        out: &mut Vec<SymbolView>,
    ) -> Result<()> {
        let remaining = limit - out.len() as i64;
        if remaining <= 0 {
            return Ok(());
        }
        // Words of three characters or more find their substring candidates in the trigram
        // index (its Unicode case folding is a superset of LIKE's ASCII one, which decides).
        let trigrams = q.chars().count() >= 3;
        let (condition, order) = match phase {
            // Every string with the prefix `q` sorts in [q, q + U+10FFFF), so prefix matching is
            // an index range on lower(name) or lower(qualified_name). One order for both phases:
            // exact names, then exact qualified names (both exported first, then shorter
            // qualified names), then prefixes (exported first, then shorter names). Within
            // `Leading` every inexact row is a name prefix, and `QualifiedPrefix` runs only once
            // `Leading` is exhausted, so name prefixes come before qualified-name prefixes.
            SymbolPhase::Leading => (
                "((lower(s.name) >= ?1 AND lower(s.name) < ?2) OR lower(s.qualified_name) = ?1)",
                LEADING_ORDER,
            ),
            SymbolPhase::QualifiedPrefix => {
                ("(lower(s.qualified_name) >= ?1 AND lower(s.qualified_name) < ?2)", LEADING_ORDER)
            }
            // LIKE folds ASCII case as lower() does, at a third of the cost of instr(lower()).
            SymbolPhase::Substring if trigrams => (
                concat!(
                    "s.id IN (SELECT rowid FROM symbols_trigram WHERE symbols_trigram MATCH ?9) AND (s.name ",
                    contains_q!(),
                    " OR s.qualified_name ",
                    contains_q!(),
                    ")"
                ),
                concat!("(s.name ", contains_q!(), ") DESC, s.exported DESC, length(s.name), s.name"),
            ),
            SymbolPhase::Substring => (
                concat!("(s.name ", contains_q!(), " OR s.qualified_name ", contains_q!(), ")"),
                concat!("(s.name ", contains_q!(), ") DESC, s.exported DESC, length(s.name), s.name"),
            ),
        };
        let seen: Vec<i64> = out.iter().map(|s| s.id).collect();
        let sql = format!(
            "{} WHERE {condition} AND {} \
             AND s.id NOT IN (SELECT value FROM json_each(?5)) \
             ORDER BY {order}, f.path, s.id LIMIT ?6",
            symbol_view_select!(),
            symbol_scope!("?3", "?4", "?7"),
        );
        let mut query = sqlx::query(&sql)
            .bind(q)
            .bind(format!("{q}\u{10FFFF}"))
            .bind(json_list(&scope.project_ids))
            .bind(languages(scope))
            .bind(json_list(&seen))
            .bind(remaining)
            .bind(kinds(scope))
            .bind(like_escape(q));
        if matches!(phase, SymbolPhase::Substring) && trigrams {
            query = query.bind(format!("\"{}\"", q.replace('"', "\"\"")));
        }
        let rows = query.fetch_all(&self.reader).await.map_err(db_err)?;
        for row in &rows {
            out.push(symbol_view_from_row(row)?);
        }
        Ok(())
    }

    /// Symbols by id (any order; unknown ids are skipped).
    async fn symbol_views(&self, ids: &[i64]) -> Result<Vec<SymbolView>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let rows =
            sqlx::query(concat!(symbol_view_select!(), " WHERE s.id IN (SELECT value FROM json_each(?1))"))
                .bind(json_list(ids))
                .fetch_all(&self.reader)
                .await
                .map_err(db_err)?;
        rows.iter().map(symbol_view_from_row).collect()
    }

    /// Appends fuzzy matches of `q` (typos) while `out` is short of `limit`.
    async fn fuzzy_phase(
        &self,
        q: &str,
        scope: &SearchScope,
        limit: i64,
        out: &mut Vec<SymbolView>,
    ) -> Result<()> {
        let remaining = limit - out.len() as i64;
        let Some(fuzzy) = Fuzzy::new(q).filter(|_| remaining > 0) else { return Ok(()) };
        // Candidates for typos: the index range of names starting with the query's first
        // character, of a length the allowed distance can reach, ranked in Rust.
        let first = fuzzy.first();
        let (shortest, longest) = fuzzy.lengths();
        // Names and ids only: the distance test needs nothing else, and most candidates fail it.
        let sql = format!(
            "SELECT s.id, s.name FROM symbols s JOIN files f ON f.id = s.file_id \
             WHERE lower(s.name) >= ?1 AND lower(s.name) < ?2 AND length(s.name) BETWEEN ?3 AND ?4 \
             AND {} AND s.id NOT IN (SELECT value FROM json_each(?8)) \
             ORDER BY lower(s.name), s.name, f.path, s.id LIMIT ?9",
            symbol_scope!("?5", "?6", "?7"),
        );
        let seen: Vec<i64> = out.iter().map(|s| s.id).collect();
        let names: Vec<(i64, String)> = sqlx::query_as(&sql)
            .bind(&first)
            .bind(format!("{first}\u{10FFFF}"))
            .bind(shortest)
            .bind(longest)
            .bind(json_list(&scope.project_ids))
            .bind(languages(scope))
            .bind(kinds(scope))
            .bind(json_list(&seen))
            .bind(fuzzy::MAX_CANDIDATES)
            .fetch_all(&self.reader)
            .await
            .map_err(db_err)?;
        let close = fuzzy.within(names.iter().map(|(id, n)| (*id, n.as_str())));
        if close.is_empty() {
            return Ok(());
        }
        let candidates = self.symbol_views(&close).await?;
        out.extend(fuzzy.rank(candidates, remaining as usize));
        Ok(())
    }
}

#[async_trait]
impl Store for SqliteStore {
    fn backend(&self) -> Backend {
        Backend::Sqlite
    }

    async fn migrate_up(&self) -> Result<()> {
        MIGRATOR.run(&self.writer).await.map_err(migrate_err)
    }

    async fn migrate_down(&self, to: Option<i64>) -> Result<()> {
        let target = match to {
            Some(to) => to,
            None => {
                let applied = self.applied_versions().await?;
                match applied.as_slice() {
                    [] => return Ok(()),
                    [.., previous, _] => *previous,
                    [_] => 0,
                }
            }
        };
        MIGRATOR.undo(&self.writer, target).await.map_err(migrate_err)
    }

    async fn status(&self) -> Result<StoreStatus> {
        let schema_version = self.applied_versions().await?.last().copied();
        let latest_version = MIGRATOR.iter().map(|m| m.version).max().unwrap_or(0);
        let mut row_counts = Vec::with_capacity(TABLES.len());
        for table in TABLES {
            if !self.table_exists(table).await? {
                continue;
            }
            // Table names come from the constant list above, never from input.
            let count: i64 = sqlx::query_scalar(&format!("SELECT count(*) FROM \"{table}\""))
                .fetch_one(&self.reader)
                .await
                .map_err(db_err)?;
            row_counts.push(((*table).to_string(), count));
        }
        // Size on disk: the database file plus its write-ahead log and shared-memory index.
        let mut size = 0i64;
        for suffix in ["", "-wal", "-shm"] {
            let mut file = self.path.clone().into_os_string();
            file.push(suffix);
            if let Ok(meta) = std::fs::metadata(&file) {
                size += i64::try_from(meta.len()).unwrap_or(i64::MAX);
            }
        }
        Ok(StoreStatus {
            backend: Backend::Sqlite,
            schema_version,
            latest_version,
            row_counts,
            size_bytes: Some(size),
            pgvector: None,
        })
    }

    async fn schema_dump(&self) -> Result<Vec<String>> {
        let rows = sqlx::query(
            "SELECT type, name, tbl_name, coalesce(sql, '') AS sql FROM sqlite_master \
             WHERE name NOT LIKE 'sqlite_%' AND name NOT LIKE '_sqlx_migrations%' ORDER BY type, name",
        )
        .fetch_all(&self.reader)
        .await
        .map_err(db_err)?;
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            let kind: String = col(&row, "type")?;
            let name: String = col(&row, "name")?;
            let table: String = col(&row, "tbl_name")?;
            let sql: String = col(&row, "sql")?;
            let sql = sql.split_whitespace().collect::<Vec<_>>().join(" ");
            out.push(format!("{kind} {name} on {table}: {sql}"));
        }
        Ok(out)
    }

    async fn migrations(&self) -> Result<Vec<MigrationInfo>> {
        let applied = self.applied_versions().await?;
        Ok(super::migration_list(&MIGRATOR, &applied))
    }

    async fn begin_export(&self) -> Result<Box<dyn ExportSnapshot>> {
        // A read transaction on a reader connection: WAL keeps its snapshot for its whole life.
        let mut tx = self.reader.begin().await.map_err(db_err)?;
        sqlx::query("SELECT count(*) FROM sqlite_master").execute(&mut *tx).await.map_err(db_err)?;
        Ok(Box::new(SqliteExport { tx }))
    }

    async fn begin_restore(&self, wipe: bool) -> Result<Box<dyn RestoreSession>> {
        let mut tx = self.begin_write().await?;
        // Foreign keys are checked at commit, so rows referring to later rows of their own
        // table (a task's parent) can come in id order.
        sqlx::query("PRAGMA defer_foreign_keys = ON").execute(&mut *tx).await.map_err(db_err)?;
        for spec in dump::TABLES {
            let exists: Option<i64> =
                sqlx::query_scalar("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?")
                    .bind(spec.name)
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(db_err)?;
            if exists.is_none() {
                return Err(StoreError::Migration(format!(
                    "the schema is not migrated (no {} table)",
                    spec.name
                )));
            }
        }
        if !wipe {
            for spec in dump::TABLES {
                // Table names come from the catalog, never from input.
                let any: Option<i64> =
                    sqlx::query_scalar(&format!("SELECT 1 FROM \"{}\" LIMIT 1", spec.name))
                        .fetch_optional(&mut *tx)
                        .await
                        .map_err(db_err)?;
                if any.is_some() {
                    return Err(StoreError::Conflict(format!(
                        "the database is not empty (table {} has rows)",
                        spec.name
                    )));
                }
            }
        }
        // Triggers that derive stored values (stats, updated_at, activity entries, the full-text
        // index) are dropped for the restore and recreated, from their own SQL, before the commit:
        // DDL is transactional in SQLite, so a failed restore leaves them as they were. The
        // dimension checks on embeddings stay.
        let triggers: Vec<(String, String)> = sqlx::query_as(
            "SELECT name, sql FROM sqlite_master WHERE type = 'trigger' \
             AND name NOT GLOB 'embeddings_dimensions_*' ORDER BY rowid",
        )
        .fetch_all(&mut *tx)
        .await
        .map_err(db_err)?;
        for (name, _) in &triggers {
            sqlx::query(&format!("DROP TRIGGER \"{}\"", name.replace('"', "\"\"")))
                .execute(&mut *tx)
                .await
                .map_err(db_err)?;
        }
        if wipe {
            for spec in dump::TABLES.iter().rev() {
                sqlx::query(&format!("DELETE FROM \"{}\"", spec.name))
                    .execute(&mut *tx)
                    .await
                    .map_err(db_err)?;
            }
        }
        Ok(Box::new(SqliteRestore { tx, triggers }))
    }

    // Projects.

    async fn create_project(&self, project: NewProject) -> Result<Project> {
        let settings = if project.settings.is_null() { serde_json::json!({}) } else { project.settings };
        let row = sqlx::query(concat!(
            "INSERT INTO projects (name, root_path, repository_url, default_branch, settings) ",
            "VALUES (?, ?, ?, ?, ?) RETURNING ",
            project_cols!()
        ))
        .bind(&project.name)
        .bind(&project.root_path)
        .bind(&project.repository_url)
        .bind(&project.default_branch)
        .bind(settings.to_string())
        .fetch_one(&self.writer)
        .await
        .map_err(|e| match db_err(e) {
            StoreError::Conflict(_) => {
                StoreError::Conflict(format!("a project named {:?} already exists", project.name))
            }
            other => other,
        })?;
        project_from_row(&row)
    }

    async fn project_by_name(&self, name: &str) -> Result<Option<Project>> {
        let row = sqlx::query(concat!("SELECT ", project_cols!(), " FROM projects WHERE name = ?"))
            .bind(name)
            .fetch_optional(&self.reader)
            .await
            .map_err(db_err)?;
        row.as_ref().map(project_from_row).transpose()
    }

    async fn project(&self, id: i64) -> Result<Option<Project>> {
        let row = sqlx::query(concat!("SELECT ", project_cols!(), " FROM projects WHERE id = ?"))
            .bind(id)
            .fetch_optional(&self.reader)
            .await
            .map_err(db_err)?;
        row.as_ref().map(project_from_row).transpose()
    }

    async fn list_projects(&self) -> Result<Vec<Project>> {
        let rows = sqlx::query(concat!("SELECT ", project_cols!(), " FROM projects ORDER BY name"))
            .fetch_all(&self.reader)
            .await
            .map_err(db_err)?;
        rows.iter().map(project_from_row).collect()
    }

    async fn set_last_indexed_commit(&self, project_id: i64, sha: Option<&str>) -> Result<()> {
        let done = sqlx::query(concat!(
            "UPDATE projects SET last_indexed_commit = ?, last_indexed_at = ",
            now!(),
            " WHERE id = ?"
        ))
        .bind(sha)
        .bind(project_id)
        .execute(&self.writer)
        .await
        .map_err(db_err)?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!("project {project_id}")));
        }
        Ok(())
    }

    async fn update_project(&self, id: i64, update: &NewProject) -> Result<Project> {
        let settings =
            if update.settings.is_null() { serde_json::json!({}) } else { update.settings.clone() };
        let row = sqlx::query(concat!(
            "UPDATE projects SET name = ?2, repository_url = ?3, default_branch = ?4, settings = ?5 WHERE id = ?1 ",
            "RETURNING ",
            project_cols!()
        ))
        .bind(id)
        .bind(&update.name)
        .bind(&update.repository_url)
        .bind(&update.default_branch)
        .bind(settings.to_string())
        .fetch_optional(&self.writer)
        .await
        .map_err(|e| match db_err(e) {
            StoreError::Conflict(_) => StoreError::Conflict(format!("a project named {:?} already exists", update.name)),
            other => other,
        })?;
        let row = row.ok_or_else(|| StoreError::NotFound(format!("project {id}")))?;
        project_from_row(&row)
    }

    async fn member_projects(&self, user_id: i64) -> Result<Vec<(i64, String)>> {
        let rows = sqlx::query(
            "SELECT project_id, role FROM project_members WHERE user_id = ?1 ORDER BY project_id",
        )
        .bind(user_id)
        .fetch_all(&self.reader)
        .await
        .map_err(db_err)?;
        rows.iter().map(|r| Ok((col(r, "project_id")?, col(r, "role")?))).collect()
    }

    async fn list_tokens(&self) -> Result<Vec<ApiToken>> {
        let rows = sqlx::query(concat!("SELECT ", token_cols!(), " FROM api_tokens ORDER BY id DESC"))
            .fetch_all(&self.reader)
            .await
            .map_err(db_err)?;
        rows.iter().map(token_from_row).collect()
    }

    async fn delete_project(&self, id: i64) -> Result<bool> {
        let done = sqlx::query("DELETE FROM projects WHERE id = ?")
            .bind(id)
            .execute(&self.writer)
            .await
            .map_err(db_err)?;
        Ok(done.rows_affected() > 0)
    }

    // Tokens and activity.

    async fn create_token(&self, token: NewToken) -> Result<ApiToken> {
        let scopes = serde_json::to_string(&token.scopes).map_err(|e| StoreError::Invalid(e.to_string()))?;
        let row = sqlx::query(concat!(
            "INSERT INTO api_tokens (user_id, name, token_hash, prefix, scopes, expires_at) ",
            "VALUES (?, ?, ?, ?, ?, ?) RETURNING ",
            token_cols!()
        ))
        .bind(token.user_id)
        .bind(&token.name)
        .bind(&token.token_hash)
        .bind(&token.prefix)
        .bind(scopes)
        .bind(token.expires_at.map(timestamp))
        .fetch_one(&self.writer)
        .await
        .map_err(|e| match db_err(e) {
            StoreError::Conflict(_) => StoreError::Conflict("a token with this hash already exists".into()),
            other => other,
        })?;
        token_from_row(&row)
    }

    async fn token_by_hash(&self, token_hash: &str) -> Result<Option<ApiToken>> {
        let row = sqlx::query(concat!("SELECT ", token_cols!(), " FROM api_tokens WHERE token_hash = ?"))
            .bind(token_hash)
            .fetch_optional(&self.reader)
            .await
            .map_err(db_err)?;
        row.as_ref().map(token_from_row).transpose()
    }

    async fn revoke_token(&self, id: i64) -> Result<bool> {
        let done = sqlx::query(concat!(
            "UPDATE api_tokens SET revoked_at = ",
            now!(),
            " WHERE id = ? AND revoked_at IS NULL"
        ))
        .bind(id)
        .execute(&self.writer)
        .await
        .map_err(db_err)?;
        Ok(done.rows_affected() > 0)
    }

    async fn touch_token(&self, id: i64) -> Result<()> {
        sqlx::query(concat!("UPDATE api_tokens SET last_used_at = ", now!(), " WHERE id = ?"))
            .bind(id)
            .execute(&self.writer)
            .await
            .map_err(db_err)?;
        Ok(())
    }

    async fn activity(
        &self,
        project_id: Option<i64>,
        before_id: Option<i64>,
        limit: i64,
    ) -> Result<Vec<ActivityEntry>> {
        if limit <= 0 {
            return Ok(Vec::new());
        }
        let rows = sqlx::query(
            "SELECT id, project_id, user_id, action, source, subject_type, subject_id, details, created_at \
             FROM activity_log WHERE (?1 IS NULL OR project_id = ?1) AND (?2 IS NULL OR id < ?2) \
             ORDER BY id DESC LIMIT ?3",
        )
        .bind(project_id)
        .bind(before_id)
        .bind(limit)
        .fetch_all(&self.reader)
        .await
        .map_err(db_err)?;
        rows.iter().map(activity_from_row).collect()
    }

    // Files, symbols, imports and chunks.

    async fn file_states(&self, project_id: i64) -> Result<Vec<FileState>> {
        let rows = sqlx::query(
            "SELECT path, size, mtime_ns, content_hash, chunker_version, skip_reason FROM files \
             WHERE project_id = ? ORDER BY path",
        )
        .bind(project_id)
        .fetch_all(&self.reader)
        .await
        .map_err(db_err)?;
        rows.iter()
            .map(|row| {
                Ok(FileState {
                    path: col(row, "path")?,
                    size: col(row, "size")?,
                    mtime_ns: col(row, "mtime_ns")?,
                    content_hash: col(row, "content_hash")?,
                    chunker_version: col(row, "chunker_version")?,
                    skip_reason: col(row, "skip_reason")?,
                })
            })
            .collect()
    }

    async fn replace_file(
        &self,
        project_id: i64,
        write: &FileWrite,
        run_id: Option<i64>,
        commit: Option<&str>,
    ) -> Result<()> {
        validate_write(write)?;
        let f = &write.file;
        let mut tx = self.begin_write().await?;

        // Upsert keeps the file's id, so import edges that point at it stay valid.
        let file_id: i64 = sqlx::query_scalar(concat!(
            "INSERT INTO files (project_id, path, language, size, line_count, content_hash, mtime_ns, ",
            "is_binary, is_generated, skip_reason, diagnostics_count, chunker_version) ",
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ",
            "ON CONFLICT (project_id, path) DO UPDATE SET language = excluded.language, size = excluded.size, ",
            "line_count = excluded.line_count, content_hash = excluded.content_hash, ",
            "mtime_ns = excluded.mtime_ns, is_binary = excluded.is_binary, is_generated = excluded.is_generated, ",
            "skip_reason = excluded.skip_reason, diagnostics_count = excluded.diagnostics_count, ",
            "chunker_version = excluded.chunker_version, indexed_at = ",
            now!(),
            ", updated_at = ",
            now!(),
            " RETURNING id"
        ))
        .bind(project_id)
        .bind(&f.path)
        .bind(&f.language)
        .bind(f.size)
        .bind(f.line_count)
        .bind(&f.content_hash)
        .bind(f.mtime_ns)
        .bind(f.is_binary)
        .bind(f.is_generated)
        .bind(&f.skip_reason)
        .bind(f.diagnostics_count)
        .bind(f.chunker_version)
        .fetch_one(&mut *tx)
        .await
        .map_err(db_err)?;

        for table in ["chunks", "imports", "symbols"] {
            sqlx::query(&format!("DELETE FROM {table} WHERE file_id = ?"))
                .bind(file_id)
                .execute(&mut *tx)
                .await
                .map_err(db_err)?;
        }

        // Symbols get their ids here so `parent` (an index into the same list) can become
        // `parent_id` within the same multi-row INSERT; the write lock makes max(id) stable.
        if !write.symbols.is_empty() {
            let base: i64 = sqlx::query_scalar("SELECT coalesce(max(id), 0) FROM symbols")
                .fetch_one(&mut *tx)
                .await
                .map_err(db_err)?;
            for (batch_no, batch) in write.symbols.chunks(BATCH_ROWS).enumerate() {
                let first = batch_no * BATCH_ROWS;
                let mut qb = QueryBuilder::<Sqlite>::new(
                    "INSERT INTO symbols (id, file_id, project_id, parent_id, name, qualified_name, kind, \
                     signature, start_line, end_line, start_byte, end_byte, exported) ",
                );
                qb.push_values(batch.iter().enumerate(), |mut b, (i, s)| {
                    b.push_bind(base + 1 + (first + i) as i64)
                        .push_bind(file_id)
                        .push_bind(project_id)
                        .push_bind(s.parent.map(|p| base + 1 + p as i64))
                        .push_bind(&s.name)
                        .push_bind(&s.qualified_name)
                        .push_bind(&s.kind)
                        .push_bind(&s.signature)
                        .push_bind(s.start_line)
                        .push_bind(s.end_line)
                        .push_bind(s.start_byte)
                        .push_bind(s.end_byte)
                        .push_bind(s.exported);
                });
                qb.build().execute(&mut *tx).await.map_err(db_err)?;
            }
        }

        if !write.imports.is_empty() {
            let names: Vec<String> = write
                .imports
                .iter()
                .map(|i| serde_json::to_string(&i.names))
                .collect::<Result<_, _>>()
                .map_err(|e| StoreError::Invalid(e.to_string()))?;
            for (batch_no, batch) in write.imports.chunks(BATCH_ROWS).enumerate() {
                let first = batch_no * BATCH_ROWS;
                let mut qb = QueryBuilder::<Sqlite>::new(
                    "INSERT INTO imports (file_id, project_id, specifier, resolved_path, external_package, kind, \
                     names, line) ",
                );
                qb.push_values(batch.iter().enumerate(), |mut b, (i, imp)| {
                    b.push_bind(file_id)
                        .push_bind(project_id)
                        .push_bind(&imp.specifier)
                        .push_bind(&imp.resolved_path)
                        .push_bind(&imp.external_package)
                        .push_bind(&imp.kind)
                        .push_bind(&names[first + i])
                        .push_bind(imp.line);
                });
                qb.build().execute(&mut *tx).await.map_err(db_err)?;
            }
            // This file's edges to files already stored.
            sqlx::query(
                "UPDATE imports SET resolved_file_id = \
                 (SELECT f.id FROM files f WHERE f.project_id = imports.project_id AND f.path = imports.resolved_path) \
                 WHERE file_id = ? AND resolved_path IS NOT NULL",
            )
            .bind(file_id)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        }
        // Other files' edges to this one, written before it existed (or while it was deleted).
        sqlx::query(
            "UPDATE imports SET resolved_file_id = ?1 \
             WHERE project_id = ?2 AND resolved_path = ?3 AND resolved_file_id IS NOT ?1",
        )
        .bind(file_id)
        .bind(project_id)
        .bind(&f.path)
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;

        for batch in write.chunks.chunks(BATCH_ROWS) {
            let mut qb = QueryBuilder::<Sqlite>::new(
                "INSERT INTO chunks (file_id, project_id, ordinal, content, content_hash, start_line, end_line, \
                 start_byte, end_byte, symbol_path, kind, language, token_count, commit_sha, index_run_id, lexical) ",
            );
            qb.push_values(batch, |mut b, c| {
                b.push_bind(file_id)
                    .push_bind(project_id)
                    .push_bind(c.ordinal)
                    .push_bind(&c.content)
                    .push_bind(&c.content_hash)
                    .push_bind(c.start_line)
                    .push_bind(c.end_line)
                    .push_bind(c.start_byte)
                    .push_bind(c.end_byte)
                    .push_bind(&c.symbol_path)
                    .push_bind(&c.kind)
                    .push_bind(&c.language)
                    .push_bind(c.token_count)
                    .push_bind(commit)
                    .push_bind(run_id)
                    .push_bind(&c.lexical);
            });
            qb.build().execute(&mut *tx).await.map_err(|e| match db_err(e) {
                StoreError::Conflict(_) => {
                    StoreError::Conflict(format!("{}: two chunks with the same ordinal", f.path))
                }
                other => other,
            })?;
        }

        tx.commit().await.map_err(db_err)
    }

    async fn delete_files(&self, project_id: i64, paths: &[String]) -> Result<u64> {
        if paths.is_empty() {
            return Ok(0);
        }
        let done = sqlx::query(
            "DELETE FROM files WHERE project_id = ? AND path IN (SELECT value FROM json_each(?))",
        )
        .bind(project_id)
        .bind(json_list(paths))
        .execute(&self.writer)
        .await
        .map_err(db_err)?;
        Ok(done.rows_affected())
    }

    async fn touch_file(&self, project_id: i64, path: &str, size: i64, mtime_ns: i64) -> Result<()> {
        let done = sqlx::query("UPDATE files SET size = ?, mtime_ns = ? WHERE project_id = ? AND path = ?")
            .bind(size)
            .bind(mtime_ns)
            .bind(project_id)
            .bind(path)
            .execute(&self.writer)
            .await
            .map_err(db_err)?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!("file {path:?}")));
        }
        Ok(())
    }

    // Embeddings.

    async fn register_model(&self, provider: &str, model: &str, dimensions: i32) -> Result<EmbeddingModel> {
        // The no-op update makes RETURNING yield the row whether or not it already existed.
        let row = sqlx::query(
            "INSERT INTO embedding_models (provider, model, dimensions) VALUES (?, ?, ?) \
             ON CONFLICT (provider, model, dimensions) DO UPDATE SET provider = excluded.provider \
             RETURNING id, provider, model, dimensions",
        )
        .bind(provider)
        .bind(model)
        .bind(dimensions)
        .fetch_one(&self.writer)
        .await
        .map_err(db_err)?;
        Ok(EmbeddingModel {
            id: col(&row, "id")?,
            provider: col(&row, "provider")?,
            model: col(&row, "model")?,
            dimensions: col(&row, "dimensions")?,
        })
    }

    async fn pending_embeddings(
        &self,
        model_id: i64,
        project_id: Option<i64>,
        after: Option<&str>,
        limit: i64,
    ) -> Result<Vec<(String, String)>> {
        if limit <= 0 {
            return Ok(Vec::new());
        }
        // One representative chunk per missing hash (equal hashes mean equal text), in hash
        // order: the scan walks the (project_id, content_hash) or (content_hash) index from the
        // cursor and stops at `limit`, with no sort, so paging through a large backlog stays
        // cheap. Every hash sorts after '' (hashes are 64 hex digits).
        let after = after.unwrap_or("");
        let query = match project_id {
            Some(project_id) => sqlx::query(
                "SELECT c.content_hash, c.content FROM chunks c JOIN ( \
                     SELECT min(c2.id) AS id FROM chunks c2 WHERE c2.project_id = ?2 AND c2.content_hash > ?4 \
                     AND NOT EXISTS (SELECT 1 FROM embeddings e WHERE e.model_id = ?1 AND e.content_hash = c2.content_hash) \
                     GROUP BY c2.content_hash ORDER BY c2.content_hash LIMIT ?3) r ON r.id = c.id \
                 ORDER BY c.content_hash",
            )
            .bind(model_id)
            .bind(project_id)
            .bind(limit)
            .bind(after),
            None => sqlx::query(
                "SELECT c.content_hash, c.content FROM chunks c JOIN ( \
                     SELECT min(c2.id) AS id FROM chunks c2 WHERE c2.content_hash > ?3 \
                     AND NOT EXISTS (SELECT 1 FROM embeddings e WHERE e.model_id = ?1 AND e.content_hash = c2.content_hash) \
                     GROUP BY c2.content_hash ORDER BY c2.content_hash LIMIT ?2) r ON r.id = c.id \
                 ORDER BY c.content_hash",
            )
            .bind(model_id)
            .bind(limit)
            .bind(after),
        };
        let rows = query.fetch_all(&self.reader).await.map_err(db_err)?;
        rows.iter().map(|row| Ok((col(row, "content_hash")?, col(row, "content")?))).collect()
    }

    async fn put_embeddings_with_modes(
        &self,
        model_id: i64,
        vectors: &[(String, Vec<f32>)],
        modes: &[InputMode],
    ) -> Result<u64> {
        if vectors.is_empty() {
            return Ok(0);
        }
        let dimensions: Option<i64> =
            sqlx::query_scalar("SELECT dimensions FROM embedding_models WHERE id = ?")
                .bind(model_id)
                .fetch_optional(&self.reader)
                .await
                .map_err(db_err)?;
        let dimensions =
            dimensions.ok_or_else(|| StoreError::NotFound(format!("embedding model {model_id}")))?;
        // Validate everything first: a batch is stored whole or not at all.
        super::check_embeddings(usize::try_from(dimensions).unwrap_or(0), vectors, modes)?;
        let blobs: Vec<Vec<u8>> = vectors.iter().map(|(_, v)| encode_vector(v)).collect();
        let mode = |i: usize| modes.get(i).copied().unwrap_or_default().as_str();
        let mut tx = self.begin_write().await?;
        let mut inserted = 0;
        let rows: Vec<(&String, &Vec<u8>, &str)> =
            vectors.iter().zip(blobs.iter()).enumerate().map(|(i, ((h, _), b))| (h, b, mode(i))).collect();
        for batch in rows.chunks(BATCH_ROWS) {
            let mut qb = QueryBuilder::<Sqlite>::new(
                "INSERT INTO embeddings (model_id, content_hash, vector, input_mode) ",
            );
            qb.push_values(batch, |mut b, (hash, blob, mode)| {
                b.push_bind(model_id).push_bind(*hash).push_bind(*blob).push_bind(*mode);
            });
            // Only the cache key may collide; any other constraint still fails the batch.
            qb.push(" ON CONFLICT (model_id, content_hash) DO NOTHING");
            inserted += qb.build().execute(&mut *tx).await.map_err(db_err)?.rows_affected();
        }
        tx.commit().await.map_err(db_err)?;
        Ok(inserted)
    }

    async fn embedding_input_modes(
        &self,
        model_id: i64,
        hashes: &[String],
    ) -> Result<Vec<(String, InputMode)>> {
        if hashes.is_empty() {
            return Ok(Vec::new());
        }
        let rows = sqlx::query(
            "SELECT content_hash, input_mode FROM embeddings WHERE model_id = ? \
             AND content_hash IN (SELECT value FROM json_each(?)) ORDER BY content_hash",
        )
        .bind(model_id)
        .bind(json_list(hashes))
        .fetch_all(&self.reader)
        .await
        .map_err(db_err)?;
        rows.iter()
            .map(|row| {
                let mode: String = col(row, "input_mode")?;
                Ok((col(row, "content_hash")?, InputMode::parse(&mode)?))
            })
            .collect()
    }

    async fn embeddings_page(
        &self,
        model_id: i64,
        after_id: i64,
        limit: i64,
    ) -> Result<Vec<(i64, String, Vec<f32>)>> {
        if limit <= 0 {
            return Ok(Vec::new());
        }
        let rows = sqlx::query(
            "SELECT id, content_hash, vector FROM embeddings WHERE model_id = ? AND id > ? ORDER BY id LIMIT ?",
        )
        .bind(model_id)
        .bind(after_id)
        .bind(limit)
        .fetch_all(&self.reader)
        .await
        .map_err(db_err)?;
        rows.iter()
            .map(|row| {
                let blob: Vec<u8> = col(row, "vector")?;
                Ok((col(row, "id")?, col(row, "content_hash")?, decode_vector(&blob)?))
            })
            .collect()
    }

    async fn embeddings_count_upto(&self, model_id: i64, max_id: i64) -> Result<i64> {
        sqlx::query_scalar("SELECT count(*) FROM embeddings WHERE model_id = ?1 AND id <= ?2")
            .bind(model_id)
            .bind(max_id)
            .fetch_one(&self.reader)
            .await
            .map_err(db_err)
    }

    async fn embeddings_extent(&self, model_id: i64) -> Result<(i64, i64)> {
        let row = sqlx::query(
            "SELECT count(*) AS n, coalesce(max(id), 0) AS max_id FROM embeddings WHERE model_id = ?",
        )
        .bind(model_id)
        .fetch_one(&self.reader)
        .await
        .map_err(db_err)?;
        Ok((col(&row, "n")?, col(&row, "max_id")?))
    }

    async fn existing_embeddings(&self, model_id: i64, hashes: &[String]) -> Result<Vec<String>> {
        if hashes.is_empty() {
            return Ok(Vec::new());
        }
        sqlx::query_scalar(
            "SELECT content_hash FROM embeddings WHERE model_id = ? \
             AND content_hash IN (SELECT value FROM json_each(?)) ORDER BY content_hash",
        )
        .bind(model_id)
        .bind(json_list(hashes))
        .fetch_all(&self.reader)
        .await
        .map_err(db_err)
    }

    // Search signals.

    async fn chunks_for_embeddings(
        &self,
        model_id: i64,
        embedding_ids: &[i64],
        scope: &SearchScope,
    ) -> Result<Vec<(i64, ChunkView)>> {
        if embedding_ids.is_empty() || scope.project_ids.is_empty() {
            return Ok(Vec::new());
        }
        // In the order the ids were given (the vector ranking), then by chunk.
        let rows = sqlx::query(concat!(
            "SELECT e.id AS embedding_id, v.* FROM json_each(?2) j ",
            "JOIN embeddings e ON e.id = j.value AND e.model_id = ?1 ",
            "JOIN (",
            chunk_view_select!(),
            ") v ON v.content_hash = e.content_hash ",
            "WHERE v.project_id IN (SELECT value FROM json_each(?3)) ",
            "AND (?4 IS NULL OR v.language IN (SELECT value FROM json_each(?4))) AND ",
            chunk_kinds!("v", "?5"),
            " ORDER BY j.key, v.id"
        ))
        .bind(model_id)
        .bind(json_list(embedding_ids))
        .bind(json_list(&scope.project_ids))
        .bind(languages(scope))
        .bind(kinds(scope))
        .fetch_all(&self.reader)
        .await
        .map_err(db_err)?;
        rows.iter().map(|row| Ok((col(row, "embedding_id")?, chunk_from_row(row)?))).collect()
    }

    async fn embedding_ids_in_scope(&self, model_id: i64, scope: &SearchScope) -> Result<Vec<i64>> {
        if scope.project_ids.is_empty() {
            return Ok(Vec::new());
        }
        sqlx::query_scalar(concat!(
            "SELECT DISTINCT e.id FROM chunks c ",
            "JOIN embeddings e ON e.model_id = ?1 AND e.content_hash = c.content_hash ",
            "WHERE c.project_id IN (SELECT value FROM json_each(?2)) ",
            "AND (?3 IS NULL OR c.language IN (SELECT value FROM json_each(?3))) AND ",
            chunk_kinds!("c", "?4"),
            " ORDER BY e.id"
        ))
        .bind(model_id)
        .bind(json_list(&scope.project_ids))
        .bind(languages(scope))
        .bind(kinds(scope))
        .fetch_all(&self.reader)
        .await
        .map_err(db_err)
    }

    async fn lexical_search(
        &self,
        terms: &[String],
        matching: TermMatch,
        scope: &SearchScope,
        limit: i64,
    ) -> Result<Vec<ScoredChunk>> {
        let Some(query) = fts_query(terms, matching) else { return Ok(Vec::new()) };
        if scope.project_ids.is_empty() || limit <= 0 {
            return Ok(Vec::new());
        }
        // bm25() is computed for every row the query matches, and common words match a large
        // part of the corpus: take FTS5's own best rows first (a top-N sort, no join), then the
        // scope. The inner order (rank, rowid) is the outer one, so the filtered prefix is the
        // answer whenever it holds `limit` rows or the prefix is all there is; otherwise the
        // scope filtered most of it away and the whole match set is ranked. The prefix is read
        // one row longer than `prefix` and counted (`n`), so a short answer tells by itself
        // whether the prefix held every match; only an empty one needs a count of its own.
        // (SQLite reads LIMIT -1 as no limit.)
        let mut prefix = limit.saturating_mul(4).max(200);
        let rows = loop {
            let rows = sqlx::query(concat!(
                "SELECT c.id, m.rank, m.n FROM (SELECT id, rank, count(*) OVER () AS n FROM ",
                "(SELECT rowid AS id, bm25(chunks_fts) AS rank FROM chunks_fts ",
                "WHERE chunks_fts MATCH ?1 ORDER BY rank, rowid LIMIT ?6)) m JOIN chunks c ON c.id = m.id ",
                "WHERE c.project_id IN (SELECT value FROM json_each(?2)) ",
                "AND (?3 IS NULL OR c.language IN (SELECT value FROM json_each(?3))) AND ",
                chunk_kinds!("c", "?5"),
                " ORDER BY m.rank, c.id LIMIT ?4"
            ))
            .bind(&query)
            .bind(json_list(&scope.project_ids))
            .bind(languages(scope))
            .bind(limit)
            .bind(kinds(scope))
            .bind(if prefix < 0 { -1 } else { prefix + 1 })
            .fetch_all(&self.reader)
            .await
            .map_err(db_err)?;
            if rows.len() as i64 >= limit || prefix < 0 {
                break rows;
            }
            let matched: i64 = match rows.first() {
                Some(row) => col(row, "n")?,
                None => sqlx::query_scalar(
                    "SELECT count(*) FROM (SELECT 1 FROM chunks_fts WHERE chunks_fts MATCH ?1 LIMIT ?2)",
                )
                .bind(&query)
                .bind(prefix + 1)
                .fetch_one(&self.reader)
                .await
                .map_err(db_err)?,
            };
            if matched <= prefix {
                break rows;
            }
            prefix = -1;
        };
        rows.iter()
            .map(|row| {
                // bm25() is lower-is-better; scores here are higher-is-better.
                let rank: f64 = col(row, "rank")?;
                Ok(ScoredChunk { chunk_id: col(row, "id")?, score: -rank })
            })
            .collect()
    }

    async fn symbol_search(&self, query: &str, scope: &SearchScope, limit: i64) -> Result<Vec<SymbolView>> {
        let mut found = self.symbol_search_words(&[query.to_string()], scope, limit).await?;
        Ok(found.pop().unwrap_or_default())
    }

    async fn symbol_search_words(
        &self,
        words: &[String],
        scope: &SearchScope,
        limit: i64,
    ) -> Result<Vec<Vec<SymbolView>>> {
        // ASCII case folding, as SQLite's lower() and LIKE do without ICU.
        let qs: Vec<String> = words.iter().map(|w| w.trim().to_ascii_lowercase()).collect();
        if scope.project_ids.is_empty() || limit <= 0 {
            return Ok(vec![Vec::new(); qs.len()]);
        }
        // The words at once on separate readers; each word's phases in turn, each only while
        // the word is short of `limit`: exact and prefix matches (index ranges), substrings
        // (the trigram index), then typos.
        futures::future::try_join_all(qs.iter().map(|q| async move {
            let mut out = Vec::new();
            if !q.is_empty() {
                for phase in [SymbolPhase::Leading, SymbolPhase::QualifiedPrefix, SymbolPhase::Substring] {
                    self.symbol_phase(q, phase, scope, limit, &mut out).await?;
                }
            }
            self.fuzzy_phase(q, scope, limit, &mut out).await?;
            Ok::<_, StoreError>(out)
        }))
        .await
    }

    async fn symbols_version(&self) -> Result<Option<i64>> {
        let version: i64 =
            sqlx::query_scalar(SYMBOLS_VERSION).fetch_one(&self.reader).await.map_err(db_err)?;
        Ok(Some(version))
    }

    async fn symbol_snapshot(&self) -> Result<Option<SymbolSnapshot>> {
        // One read transaction: the version and the rows come from the same snapshot.
        let mut tx = self.reader.begin().await.map_err(db_err)?;
        let version: i64 = sqlx::query_scalar(SYMBOLS_VERSION).fetch_one(&mut *tx).await.map_err(db_err)?;
        let files: Vec<(i64, String, String)> = sqlx::query_as(
            "SELECT f.id, f.path, f.language FROM files f \
             WHERE EXISTS (SELECT 1 FROM symbols s WHERE s.file_id = f.id)",
        )
        .fetch_all(&mut *tx)
        .await
        .map_err(db_err)?;
        type Row = (i64, i64, i64, String, String, String, bool, Option<i64>);
        let rows: Vec<Row> = sqlx::query_as(concat!(
            "SELECT s.id, s.file_id, s.project_id, s.name, s.qualified_name, s.kind, s.exported, ",
            symbol_chunk!(),
            " FROM symbols s"
        ))
        .fetch_all(&mut *tx)
        .await
        .map_err(db_err)?;
        tx.commit().await.map_err(db_err)?;
        Ok(Some(SymbolSnapshot {
            version,
            files: files.into_iter().map(|(id, path, language)| SymbolFile { id, path, language }).collect(),
            symbols: rows
                .into_iter()
                .map(|(id, file_id, project_id, name, qualified_name, kind, exported, chunk_id)| SymbolRow {
                    id,
                    file_id,
                    project_id,
                    name,
                    qualified_name,
                    kind,
                    exported,
                    chunk_id,
                })
                .collect(),
        }))
    }

    async fn chunks(&self, ids: &[i64]) -> Result<Vec<ChunkView>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        // In the order given.
        let rows = sqlx::query(concat!(
            "SELECT v.* FROM json_each(?1) j JOIN (",
            chunk_view_select!(),
            ") v ON v.id = j.value ORDER BY j.key"
        ))
        .bind(json_list(ids))
        .fetch_all(&self.reader)
        .await
        .map_err(db_err)?;
        rows.iter().map(chunk_from_row).collect()
    }

    async fn symbol_chunk_ids(&self, symbol_ids: &[i64]) -> Result<Vec<(i64, i64)>> {
        if symbol_ids.is_empty() {
            return Ok(Vec::new());
        }
        let rows = sqlx::query(concat!(
            "SELECT s.id AS symbol_id, ",
            symbol_chunk!(),
            " AS chunk_id FROM symbols s WHERE s.id IN (SELECT value FROM json_each(?1))"
        ))
        .bind(json_list(symbol_ids))
        .fetch_all(&self.reader)
        .await
        .map_err(db_err)?;
        let mut out = Vec::new();
        for row in &rows {
            let chunk: Option<i64> = col(row, "chunk_id")?;
            if let Some(chunk) = chunk {
                out.push((col(row, "symbol_id")?, chunk));
            }
        }
        Ok(out)
    }

    async fn chunk_at(&self, project_id: i64, path: &str, line: i32) -> Result<Option<ChunkView>> {
        let row = sqlx::query(concat!(
            chunk_view_select!(),
            " WHERE f.project_id = ?1 AND f.path = ?2 AND c.start_line <= ?3 AND c.end_line >= ?3 ",
            "ORDER BY c.ordinal LIMIT 1"
        ))
        .bind(project_id)
        .bind(path)
        .bind(line)
        .fetch_optional(&self.reader)
        .await
        .map_err(db_err)?;
        row.as_ref().map(chunk_from_row).transpose()
    }

    async fn import_neighbours(
        &self,
        project_id: i64,
        path: &str,
        reverse: bool,
        depth: u32,
    ) -> Result<Vec<(String, u32)>> {
        if depth == 0 {
            return Ok(Vec::new());
        }
        // UNION drops repeated (file, distance) pairs and the walk stops at `depth`, so cycles
        // terminate; the minimum distance per file is taken at the end. No shortest path is
        // longer than the project has files, so the depth is capped there, which bounds the walk
        // by edges x files however large a depth is asked for.
        let step = if reverse {
            "SELECT i.file_id, w.distance + 1 FROM walk w JOIN imports i ON i.resolved_file_id = w.file_id \
             WHERE w.distance < (SELECT depth FROM bound)"
        } else {
            "SELECT i.resolved_file_id, w.distance + 1 FROM walk w JOIN imports i ON i.file_id = w.file_id \
             WHERE w.distance < (SELECT depth FROM bound) AND i.resolved_file_id IS NOT NULL"
        };
        let sql = format!(
            "WITH RECURSIVE \
               start(id) AS (SELECT id FROM files WHERE project_id = ?1 AND path = ?2), \
               bound(depth) AS (SELECT min(?3, total_files) FROM projects WHERE id = ?1), \
               walk(file_id, distance) AS (SELECT id, 0 FROM start UNION {step}) \
             SELECT f.path, min(w.distance) AS distance FROM walk w JOIN files f ON f.id = w.file_id \
             WHERE w.file_id NOT IN (SELECT id FROM start) \
             GROUP BY f.path ORDER BY distance, f.path"
        );
        let rows = sqlx::query(&sql)
            .bind(project_id)
            .bind(path)
            .bind(i64::from(depth))
            .fetch_all(&self.reader)
            .await
            .map_err(db_err)?;
        rows.iter()
            .map(|row| {
                let distance: i64 = col(row, "distance")?;
                Ok((col(row, "path")?, u32::try_from(distance).unwrap_or(u32::MAX)))
            })
            .collect()
    }

    // Users, members, tasks, agents, executions, reviews.

    async fn create_user(&self, user: NewUser) -> Result<User> {
        let row = sqlx::query(concat!(
            "INSERT INTO users (email, username, display_name, github_username, is_active, is_admin, preferences) ",
            "VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING ",
            user_cols!()
        ))
        .bind(&user.email)
        .bind(&user.username)
        .bind(&user.display_name)
        .bind(&user.github_username)
        .bind(user.is_active)
        .bind(user.is_admin)
        .bind(object_or_empty(&user.preferences).to_string())
        .fetch_one(&self.writer)
        .await
        .map_err(user_err)?;
        user_from_row(&row)
    }

    async fn user(&self, id: i64) -> Result<Option<User>> {
        let row = sqlx::query(concat!("SELECT ", user_cols!(), " FROM users WHERE id = ?"))
            .bind(id)
            .fetch_optional(&self.reader)
            .await
            .map_err(db_err)?;
        row.as_ref().map(user_from_row).transpose()
    }

    async fn list_users(&self, after: Option<i64>, limit: i64) -> Result<Vec<User>> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            user_cols!(),
            " FROM users WHERE (?1 IS NULL OR id > ?1) ORDER BY id LIMIT ?2"
        ))
        .bind(after)
        .bind(limit.max(0))
        .fetch_all(&self.reader)
        .await
        .map_err(db_err)?;
        rows.iter().map(user_from_row).collect()
    }

    async fn update_user(&self, id: i64, update: &NewUser) -> Result<User> {
        let row = sqlx::query(concat!(
            "UPDATE users SET email = ?2, username = ?3, display_name = ?4, github_username = ?5, ",
            "is_active = ?6, is_admin = ?7, preferences = ?8 WHERE id = ?1 RETURNING ",
            user_cols!()
        ))
        .bind(id)
        .bind(&update.email)
        .bind(&update.username)
        .bind(&update.display_name)
        .bind(&update.github_username)
        .bind(update.is_active)
        .bind(update.is_admin)
        .bind(object_or_empty(&update.preferences).to_string())
        .fetch_optional(&self.writer)
        .await
        .map_err(user_err)?;
        let row = row.ok_or_else(|| StoreError::NotFound(format!("user {id}")))?;
        user_from_row(&row)
    }

    async fn delete_user(&self, id: i64) -> Result<bool> {
        let done = sqlx::query("DELETE FROM users WHERE id = ?")
            .bind(id)
            .execute(&self.writer)
            .await
            .map_err(db_err)?;
        Ok(done.rows_affected() > 0)
    }

    async fn token(&self, id: i64) -> Result<Option<ApiToken>> {
        let row = sqlx::query(concat!("SELECT ", token_cols!(), " FROM api_tokens WHERE id = ?"))
            .bind(id)
            .fetch_optional(&self.reader)
            .await
            .map_err(db_err)?;
        row.as_ref().map(token_from_row).transpose()
    }

    async fn set_member(&self, project_id: i64, user_id: i64, role: &str) -> Result<Member> {
        let row = sqlx::query(
            "INSERT INTO project_members (project_id, user_id, role) VALUES (?1, ?2, ?3) \
             ON CONFLICT (project_id, user_id) DO UPDATE SET role = excluded.role \
             RETURNING project_id, user_id, role, created_at",
        )
        .bind(project_id)
        .bind(user_id)
        .bind(role)
        .fetch_one(&self.writer)
        .await
        .map_err(db_err)?;
        member_from_row(&row)
    }

    async fn remove_member(&self, project_id: i64, user_id: i64) -> Result<bool> {
        let done = sqlx::query("DELETE FROM project_members WHERE project_id = ? AND user_id = ?")
            .bind(project_id)
            .bind(user_id)
            .execute(&self.writer)
            .await
            .map_err(db_err)?;
        Ok(done.rows_affected() > 0)
    }

    async fn list_members(&self, project_id: i64) -> Result<Vec<Member>> {
        let rows = sqlx::query(
            "SELECT project_id, user_id, role, created_at FROM project_members WHERE project_id = ? \
             ORDER BY user_id",
        )
        .bind(project_id)
        .fetch_all(&self.reader)
        .await
        .map_err(db_err)?;
        rows.iter().map(member_from_row).collect()
    }

    async fn create_task(&self, task: NewTask) -> Result<Task> {
        // The parent must be a task of the same project: checked in the same statement.
        let row = sqlx::query(concat!(
            "INSERT INTO tasks (project_id, parent_id, title, description, status, priority, assigned_agent_id, ",
            "created_by, completed_at) ",
            "SELECT ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, CASE WHEN ?5 IN ('done', 'cancelled') THEN ",
            now!(),
            " END WHERE ?2 IS NULL OR EXISTS (SELECT 1 FROM tasks WHERE id = ?2 AND project_id IS ?1) ",
            "RETURNING ",
            task_cols!()
        ))
        .bind(task.project_id)
        .bind(task.parent_id)
        .bind(&task.title)
        .bind(&task.description)
        .bind(&task.status)
        .bind(task.priority)
        .bind(task.assigned_agent_id)
        .bind(task.created_by)
        .fetch_optional(&self.writer)
        .await
        .map_err(db_err)?;
        let row =
            row.ok_or_else(|| StoreError::Invalid("the parent is not a task of the same project".into()))?;
        task_from_row(&row)
    }

    async fn task(&self, id: i64) -> Result<Option<Task>> {
        let row = sqlx::query(concat!("SELECT ", task_cols!(), " FROM tasks WHERE id = ?"))
            .bind(id)
            .fetch_optional(&self.reader)
            .await
            .map_err(db_err)?;
        row.as_ref().map(task_from_row).transpose()
    }

    async fn list_tasks(
        &self,
        project_id: i64,
        filter: &TaskFilter,
        after: Option<i64>,
        limit: i64,
    ) -> Result<Vec<Task>> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            task_cols!(),
            " FROM tasks WHERE project_id = ?1 AND (?2 IS NULL OR status = ?2) AND (?3 IS NULL OR parent_id = ?3) ",
            "AND (?4 IS NULL OR id > ?4) ORDER BY id LIMIT ?5"
        ))
        .bind(project_id)
        .bind(&filter.status)
        .bind(filter.parent_id)
        .bind(after)
        .bind(limit.max(0))
        .fetch_all(&self.reader)
        .await
        .map_err(db_err)?;
        rows.iter().map(task_from_row).collect()
    }

    async fn update_task(&self, id: i64, update: &TaskUpdate) -> Result<Task> {
        let row = sqlx::query(concat!(
            "UPDATE tasks SET title = ?2, description = ?3, status = ?4, priority = ?5, assigned_agent_id = ?6, ",
            "completed_at = CASE WHEN ?4 IN ('done', 'cancelled') THEN coalesce(completed_at, ",
            now!(),
            ") END WHERE id = ?1 RETURNING ",
            task_cols!()
        ))
        .bind(id)
        .bind(&update.title)
        .bind(&update.description)
        .bind(&update.status)
        .bind(update.priority)
        .bind(update.assigned_agent_id)
        .fetch_optional(&self.writer)
        .await
        .map_err(db_err)?;
        let row = row.ok_or_else(|| StoreError::NotFound(format!("task {id}")))?;
        task_from_row(&row)
    }

    async fn delete_task(&self, id: i64) -> Result<bool> {
        let done = sqlx::query("DELETE FROM tasks WHERE id = ?")
            .bind(id)
            .execute(&self.writer)
            .await
            .map_err(db_err)?;
        Ok(done.rows_affected() > 0)
    }

    async fn create_agent(&self, agent: NewAgent) -> Result<Agent> {
        let row = sqlx::query(concat!(
            "INSERT INTO agents (name, kind, model, config, is_active) VALUES (?, ?, ?, ?, ?) RETURNING ",
            agent_cols!()
        ))
        .bind(&agent.name)
        .bind(&agent.kind)
        .bind(&agent.model)
        .bind(object_or_empty(&agent.config).to_string())
        .bind(agent.is_active)
        .fetch_one(&self.writer)
        .await
        .map_err(|e| agent_err(e, &agent.name))?;
        agent_from_row(&row)
    }

    async fn agent(&self, id: i64) -> Result<Option<Agent>> {
        let row = sqlx::query(concat!("SELECT ", agent_cols!(), " FROM agents WHERE id = ?"))
            .bind(id)
            .fetch_optional(&self.reader)
            .await
            .map_err(db_err)?;
        row.as_ref().map(agent_from_row).transpose()
    }

    async fn list_agents(&self, after: Option<i64>, limit: i64) -> Result<Vec<Agent>> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            agent_cols!(),
            " FROM agents WHERE (?1 IS NULL OR id > ?1) ORDER BY id LIMIT ?2"
        ))
        .bind(after)
        .bind(limit.max(0))
        .fetch_all(&self.reader)
        .await
        .map_err(db_err)?;
        rows.iter().map(agent_from_row).collect()
    }

    async fn update_agent(&self, id: i64, update: &NewAgent) -> Result<Agent> {
        let row = sqlx::query(concat!(
            "UPDATE agents SET name = ?2, kind = ?3, model = ?4, config = ?5, is_active = ?6 WHERE id = ?1 ",
            "RETURNING ",
            agent_cols!()
        ))
        .bind(id)
        .bind(&update.name)
        .bind(&update.kind)
        .bind(&update.model)
        .bind(object_or_empty(&update.config).to_string())
        .bind(update.is_active)
        .fetch_optional(&self.writer)
        .await
        .map_err(|e| agent_err(e, &update.name))?;
        let row = row.ok_or_else(|| StoreError::NotFound(format!("agent {id}")))?;
        agent_from_row(&row)
    }

    async fn delete_agent(&self, id: i64) -> Result<bool> {
        let done = sqlx::query("DELETE FROM agents WHERE id = ?")
            .bind(id)
            .execute(&self.writer)
            .await
            .map_err(db_err)?;
        Ok(done.rows_affected() > 0)
    }

    async fn create_execution(&self, execution: NewExecution) -> Result<Execution> {
        let id: i64 = sqlx::query_scalar(concat!(
            "INSERT INTO executions (task_id, agent_id, status, input_tokens, output_tokens, cost_usd, ",
            "duration_ms, error, finished_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ",
            "CASE WHEN ?3 <> 'running' THEN ",
            now!(),
            " END) RETURNING id"
        ))
        .bind(execution.task_id)
        .bind(execution.agent_id)
        .bind(&execution.status)
        .bind(execution.input_tokens)
        .bind(execution.output_tokens)
        .bind(execution.cost_usd)
        .bind(execution.duration_ms)
        .bind(&execution.error)
        .fetch_one(&self.writer)
        .await
        .map_err(db_err)?;
        self.execution(id).await?.ok_or_else(|| StoreError::NotFound(format!("execution {id}")))
    }

    async fn execution(&self, id: i64) -> Result<Option<Execution>> {
        let row = sqlx::query(concat!(execution_select!(), " WHERE e.id = ?"))
            .bind(id)
            .fetch_optional(&self.reader)
            .await
            .map_err(db_err)?;
        row.as_ref().map(execution_from_row).transpose()
    }

    async fn list_executions(
        &self,
        task_id: Option<i64>,
        agent_id: Option<i64>,
        projects: Option<&[i64]>,
        after: Option<i64>,
        limit: i64,
    ) -> Result<Vec<Execution>> {
        let rows = sqlx::query(concat!(
            execution_select!(),
            " WHERE (?1 IS NULL OR e.task_id = ?1) AND (?2 IS NULL OR e.agent_id = ?2) ",
            "AND (?3 IS NULL OR t.project_id IN (SELECT value FROM json_each(?3))) ",
            "AND (?4 IS NULL OR e.id > ?4) ORDER BY e.id LIMIT ?5"
        ))
        .bind(task_id)
        .bind(agent_id)
        .bind(projects.map(json_list))
        .bind(after)
        .bind(limit.max(0))
        .fetch_all(&self.reader)
        .await
        .map_err(db_err)?;
        rows.iter().map(execution_from_row).collect()
    }

    async fn update_execution(&self, id: i64, update: &NewExecution) -> Result<Execution> {
        let done = sqlx::query(concat!(
            "UPDATE executions SET status = ?2, input_tokens = ?3, output_tokens = ?4, cost_usd = ?5, ",
            "duration_ms = ?6, error = ?7, finished_at = CASE WHEN ?2 <> 'running' THEN coalesce(finished_at, ",
            now!(),
            ") END WHERE id = ?1"
        ))
        .bind(id)
        .bind(&update.status)
        .bind(update.input_tokens)
        .bind(update.output_tokens)
        .bind(update.cost_usd)
        .bind(update.duration_ms)
        .bind(&update.error)
        .execute(&self.writer)
        .await
        .map_err(db_err)?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!("execution {id}")));
        }
        self.execution(id).await?.ok_or_else(|| StoreError::NotFound(format!("execution {id}")))
    }

    async fn create_review(&self, review: NewReview) -> Result<Review> {
        let row = sqlx::query(concat!(
            "INSERT INTO reviews (project_id, commit_id, reviewer_agent_id, reviewer_user_id, score, summary, ",
            "issues, suggestions) SELECT ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8 ",
            "WHERE EXISTS (SELECT 1 FROM commits WHERE id = ?2 AND project_id = ?1) RETURNING ",
            review_cols!()
        ))
        .bind(review.project_id)
        .bind(review.commit_id)
        .bind(review.reviewer_agent_id)
        .bind(review.reviewer_user_id)
        .bind(review.score)
        .bind(&review.summary)
        .bind(review.issues.to_string())
        .bind(review.suggestions.to_string())
        .fetch_optional(&self.writer)
        .await
        .map_err(db_err)?;
        let row = row.ok_or_else(|| StoreError::Invalid("the commit is not one of the project's".into()))?;
        review_from_row(&row)
    }

    async fn review(&self, id: i64) -> Result<Option<Review>> {
        let row = sqlx::query(concat!("SELECT ", review_cols!(), " FROM reviews WHERE id = ?"))
            .bind(id)
            .fetch_optional(&self.reader)
            .await
            .map_err(db_err)?;
        row.as_ref().map(review_from_row).transpose()
    }

    async fn list_reviews(&self, project_id: i64, after: Option<i64>, limit: i64) -> Result<Vec<Review>> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            review_cols!(),
            " FROM reviews WHERE project_id = ?1 AND (?2 IS NULL OR id > ?2) ORDER BY id LIMIT ?3"
        ))
        .bind(project_id)
        .bind(after)
        .bind(limit.max(0))
        .fetch_all(&self.reader)
        .await
        .map_err(db_err)?;
        rows.iter().map(review_from_row).collect()
    }

    async fn activity_in(
        &self,
        projects: &[i64],
        before_id: Option<i64>,
        limit: i64,
    ) -> Result<Vec<ActivityEntry>> {
        if limit <= 0 || projects.is_empty() {
            return Ok(Vec::new());
        }
        let rows = sqlx::query(
            "SELECT id, project_id, user_id, action, source, subject_type, subject_id, details, created_at \
             FROM activity_log WHERE project_id IN (SELECT value FROM json_each(?1)) AND (?2 IS NULL OR id < ?2) \
             ORDER BY id DESC LIMIT ?3",
        )
        .bind(json_list(projects))
        .bind(before_id)
        .bind(limit)
        .fetch_all(&self.reader)
        .await
        .map_err(db_err)?;
        rows.iter().map(activity_from_row).collect()
    }

    // Index runs.

    async fn create_run(
        &self,
        project_id: i64,
        trigger: &str,
        paths: Option<&[String]>,
        commit: Option<&str>,
    ) -> Result<IndexRun> {
        let row = sqlx::query(concat!(
            "INSERT INTO index_runs (project_id, \"trigger\", paths, commit_sha) VALUES (?, ?, ?, ?) RETURNING ",
            run_cols!()
        ))
        .bind(project_id)
        .bind(trigger)
        .bind(paths.map(json_list))
        .bind(commit)
        .fetch_one(&self.writer)
        .await
        .map_err(db_err)?;
        run_from_row(&row)
    }

    async fn lease_run(&self, owner: &str, lease_secs: i64) -> Result<Option<IndexRun>> {
        let lease = lease_modifier(lease_secs)?;
        // One statement, so choosing and taking the run cannot interleave with another writer.
        let row = sqlx::query(concat!(
            "UPDATE index_runs SET status = 'running', lease_owner = ?1, ",
            "lease_expires_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now', ?2), started_at = coalesce(started_at, ",
            now!(),
            // The IN term matches the partial index's predicate, so the choice reads only
            // unfinished runs however long the history.
            ") WHERE id = (SELECT id FROM index_runs WHERE status IN ('queued', 'running') ",
            "AND (status = 'queued' OR lease_expires_at <= ",
            now!(),
            ") ORDER BY id LIMIT 1) RETURNING ",
            run_cols!()
        ))
        .bind(owner)
        .bind(lease)
        .fetch_optional(&self.writer)
        .await
        .map_err(db_err)?;
        row.as_ref().map(run_from_row).transpose()
    }

    async fn claim_run(&self, run_id: i64, owner: &str, lease_secs: i64) -> Result<bool> {
        let lease = lease_modifier(lease_secs)?;
        let done = sqlx::query(concat!(
            "UPDATE index_runs SET status = 'running', lease_owner = ?2, ",
            "lease_expires_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now', ?3), started_at = coalesce(started_at, ",
            now!(),
            ") WHERE id = ?1 AND status = 'queued'"
        ))
        .bind(run_id)
        .bind(owner)
        .bind(lease)
        .execute(&self.writer)
        .await
        .map_err(db_err)?;
        Ok(done.rows_affected() > 0)
    }

    async fn heartbeat_run(&self, run_id: i64, owner: &str, lease_secs: i64) -> Result<bool> {
        let lease = lease_modifier(lease_secs)?;
        let done = sqlx::query(
            "UPDATE index_runs SET lease_expires_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now', ?3) \
             WHERE id = ?1 AND lease_owner = ?2 AND status = 'running'",
        )
        .bind(run_id)
        .bind(owner)
        .bind(lease)
        .execute(&self.writer)
        .await
        .map_err(db_err)?;
        Ok(done.rows_affected() > 0)
    }

    async fn update_run_counts(&self, run_id: i64, counts: &RunCounts) -> Result<()> {
        let done = sqlx::query(
            "UPDATE index_runs SET files_indexed = ?, files_skipped = ?, files_deleted = ?, chunks = ?, \
             chunks_embedded = ?, embedding_cache_hits = ?, tokens_embedded = ? WHERE id = ?",
        )
        .bind(counts.files_indexed)
        .bind(counts.files_skipped)
        .bind(counts.files_deleted)
        .bind(counts.chunks)
        .bind(counts.chunks_embedded)
        .bind(counts.embedding_cache_hits)
        .bind(counts.tokens_embedded)
        .bind(run_id)
        .execute(&self.writer)
        .await
        .map_err(db_err)?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!("index run {run_id}")));
        }
        Ok(())
    }

    async fn finish_run(&self, run_id: i64, status: RunStatus, error: Option<&str>) -> Result<()> {
        if matches!(status, RunStatus::Queued | RunStatus::Running) {
            return Err(StoreError::Invalid(format!("a run cannot finish as {}", status.name())));
        }
        let mut tx = self.begin_write().await?;
        let done = sqlx::query(concat!(
            "UPDATE index_runs SET status = ?, error = ?, finished_at = ",
            now!(),
            ", lease_owner = NULL, lease_expires_at = NULL WHERE id = ? AND status IN ('queued', 'running')"
        ))
        .bind(status.name())
        .bind(error)
        .bind(run_id)
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
        if done.rows_affected() == 0 {
            let current: Option<String> = sqlx::query_scalar("SELECT status FROM index_runs WHERE id = ?")
                .bind(run_id)
                .fetch_optional(&mut *tx)
                .await
                .map_err(db_err)?;
            return Err(match current {
                None => StoreError::NotFound(format!("index run {run_id}")),
                Some(current) => StoreError::Conflict(format!("index run {run_id} already {current}")),
            });
        }
        tx.commit().await.map_err(db_err)
    }

    async fn release_run(&self, run_id: i64, owner: &str) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE index_runs SET status = 'queued', lease_owner = NULL, lease_expires_at = NULL \
             WHERE id = ?1 AND lease_owner = ?2 AND status = 'running'",
        )
        .bind(run_id)
        .bind(owner)
        .execute(&self.writer)
        .await
        .map_err(db_err)?;
        Ok(done.rows_affected() > 0)
    }

    async fn list_runs(&self, project_id: i64, before: Option<i64>, limit: i64) -> Result<Vec<IndexRun>> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            run_cols!(),
            " FROM index_runs WHERE project_id = ?1 AND (?2 IS NULL OR id < ?2) ORDER BY id DESC LIMIT ?3"
        ))
        .bind(project_id)
        .bind(before)
        .bind(limit.max(0))
        .fetch_all(&self.reader)
        .await
        .map_err(db_err)?;
        rows.iter().map(run_from_row).collect()
    }

    async fn active_runs(&self) -> Result<i64> {
        sqlx::query_scalar("SELECT count(*) FROM index_runs WHERE status IN ('queued', 'running')")
            .fetch_one(&self.reader)
            .await
            .map_err(db_err)
    }

    async fn list_files(&self, project_id: i64, after: Option<&str>, limit: i64) -> Result<Vec<FileView>> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            file_cols!(),
            " FROM files WHERE project_id = ?1 AND (?2 IS NULL OR path > ?2) ORDER BY path LIMIT ?3"
        ))
        .bind(project_id)
        .bind(after)
        .bind(limit.max(0))
        .fetch_all(&self.reader)
        .await
        .map_err(db_err)?;
        rows.iter().map(file_view_from_row).collect()
    }

    async fn file_detail(&self, project_id: i64, path: &str) -> Result<Option<FileDetail>> {
        let mut conn = self.reader.acquire().await.map_err(db_err)?;
        let row =
            sqlx::query(concat!("SELECT ", file_cols!(), " FROM files WHERE project_id = ?1 AND path = ?2"))
                .bind(project_id)
                .bind(path)
                .fetch_optional(&mut *conn)
                .await
                .map_err(db_err)?;
        let Some(row) = row else { return Ok(None) };
        let file = file_view_from_row(&row)?;
        let symbols =
            sqlx::query(concat!(symbol_view_select!(), " WHERE s.file_id = ?1 ORDER BY s.start_byte, s.id"))
                .bind(file.id)
                .fetch_all(&mut *conn)
                .await
                .map_err(db_err)?
                .iter()
                .map(symbol_view_from_row)
                .collect::<Result<Vec<_>>>()?;
        let imports = sqlx::query(
            "SELECT specifier, resolved_path, external_package, kind, names, line FROM imports \
             WHERE file_id = ?1 ORDER BY line, id",
        )
        .bind(file.id)
        .fetch_all(&mut *conn)
        .await
        .map_err(db_err)?
        .iter()
        .map(|row| {
            Ok(ImportRecord {
                specifier: col(row, "specifier")?,
                resolved_path: col(row, "resolved_path")?,
                external_package: col(row, "external_package")?,
                kind: col(row, "kind")?,
                names: string_list_col(row, "names")?.unwrap_or_default(),
                line: col(row, "line")?,
            })
        })
        .collect::<Result<Vec<_>>>()?;
        Ok(Some(FileDetail { file, symbols, imports }))
    }

    async fn run(&self, run_id: i64) -> Result<Option<IndexRun>> {
        let row = sqlx::query(concat!("SELECT ", run_cols!(), " FROM index_runs WHERE id = ?"))
            .bind(run_id)
            .fetch_optional(&self.reader)
            .await
            .map_err(db_err)?;
        row.as_ref().map(run_from_row).transpose()
    }

    async fn add_run_event(
        &self,
        run_id: i64,
        phase: &str,
        event: &str,
        message: Option<&str>,
        data: serde_json::Value,
    ) -> Result<()> {
        sqlx::query(
            "INSERT INTO index_run_events (run_id, phase, event, message, data) VALUES (?, ?, ?, ?, ?)",
        )
        .bind(run_id)
        .bind(phase)
        .bind(event)
        .bind(message)
        .bind(data.to_string())
        .execute(&self.writer)
        .await
        .map_err(db_err)?;
        Ok(())
    }

    async fn run_events(&self, run_id: i64) -> Result<Vec<RunEvent>> {
        let rows = sqlx::query(
            "SELECT id, run_id, phase, event, message, data, created_at FROM index_run_events \
             WHERE run_id = ? ORDER BY id",
        )
        .bind(run_id)
        .fetch_all(&self.reader)
        .await
        .map_err(db_err)?;
        rows.iter()
            .map(|row| {
                Ok(RunEvent {
                    id: col(row, "id")?,
                    run_id: col(row, "run_id")?,
                    phase: col(row, "phase")?,
                    event: col(row, "event")?,
                    message: col(row, "message")?,
                    data: json_col(row, "data")?,
                    created_at: col(row, "created_at")?,
                })
            })
            .collect()
    }

    // Commits.

    async fn record_commits(&self, project_id: i64, commits: &[CommitRecord]) -> Result<u64> {
        if commits.is_empty() {
            return Ok(0);
        }
        let mut tx = self.begin_write().await?;
        let mut inserted = 0;
        for c in commits {
            let done = sqlx::query(concat!(
                "INSERT INTO commits (project_id, sha, parents, message, author_name, author_email, branch, ",
                "committed_at, files_changed, additions, deletions) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ",
                "ON CONFLICT (project_id, sha) DO NOTHING"
            ))
            .bind(project_id)
            .bind(&c.sha)
            .bind(json_list(&c.parents))
            .bind(&c.message)
            .bind(&c.author_name)
            .bind(&c.author_email)
            .bind(&c.branch)
            .bind(c.committed_at.map(timestamp))
            .bind(c.files_changed)
            .bind(c.additions)
            .bind(c.deletions)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
            inserted += done.rows_affected();
        }
        tx.commit().await.map_err(db_err)?;
        Ok(inserted)
    }

    async fn commits(&self, project_id: i64, limit: i64) -> Result<Vec<Commit>> {
        // Timestamps share one fixed UTC text form, so the text order is the time order.
        let rows = sqlx::query(concat!(
            "SELECT id, project_id, sha, parents, message, author_name, author_email, branch, committed_at, ",
            "files_changed, additions, deletions, created_at FROM commits WHERE project_id = ? ",
            "ORDER BY committed_at IS NULL, committed_at DESC, id DESC LIMIT ?"
        ))
        .bind(project_id)
        .bind(limit.max(0))
        .fetch_all(&self.reader)
        .await
        .map_err(db_err)?;
        rows.iter().map(commit_from_row).collect()
    }

    async fn project_by_root(&self, root: &str) -> Result<Option<Project>> {
        let row = sqlx::query(concat!(
            "SELECT ",
            project_cols!(),
            " FROM projects WHERE root_path = ? ORDER BY id LIMIT 1"
        ))
        .bind(root)
        .fetch_optional(&self.reader)
        .await
        .map_err(db_err)?;
        row.as_ref().map(project_from_row).transpose()
    }
}

/// Checks what the schema cannot: symbol parents point inside the same file's list.
fn validate_write(write: &FileWrite) -> Result<()> {
    for (i, symbol) in write.symbols.iter().enumerate() {
        if let Some(parent) = symbol.parent
            && (parent >= write.symbols.len() || parent == i)
        {
            return Err(StoreError::Invalid(format!(
                "{}: symbol {} has parent {parent}, outside its file's {} symbols or itself",
                write.file.path,
                symbol.name,
                write.symbols.len()
            )));
        }
    }
    Ok(())
}

/// Maps a driver error to a typed store error. Messages name constraints and columns, never
/// SQL or values.
fn db_err(err: sqlx::Error) -> StoreError {
    match err {
        sqlx::Error::Database(ref db) => {
            let message = db.message().to_string();
            match db.kind() {
                ErrorKind::UniqueViolation => {
                    let key = message.strip_prefix("UNIQUE constraint failed: ").unwrap_or(&message);
                    StoreError::Conflict(format!("duplicate {key}"))
                }
                ErrorKind::ForeignKeyViolation => {
                    StoreError::Invalid("a referenced row does not exist (foreign key constraint)".into())
                }
                ErrorKind::CheckViolation | ErrorKind::NotNullViolation => {
                    StoreError::Invalid(message.to_lowercase())
                }
                _ => {
                    let code = db.code().and_then(|c| c.parse::<i32>().ok()).unwrap_or(0);
                    match code & 0xff {
                        // SQLITE_CONSTRAINT with a RAISE() from a validation trigger, or another
                        // constraint flavour.
                        19 => StoreError::Invalid(message),
                        // SQLITE_TOOBIG, SQLITE_MISMATCH, SQLITE_RANGE: bad data.
                        18 | 20 | 25 => StoreError::Invalid(message),
                        // BUSY, LOCKED, READONLY, IOERR, CORRUPT, FULL, CANTOPEN, PROTOCOL, NOTADB.
                        5 | 6 | 8 | 10 | 11 | 13 | 14 | 15 | 26 => StoreError::Unavailable(err),
                        _ => StoreError::Other(err),
                    }
                }
            }
        }
        sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Io(_)
        | sqlx::Error::WorkerCrashed
        | sqlx::Error::Configuration(_) => StoreError::Unavailable(err),
        sqlx::Error::RowNotFound => StoreError::NotFound("row".into()),
        sqlx::Error::Migrate(m) => migrate_err(*m),
        other => StoreError::Other(other),
    }
}

fn migrate_err(err: MigrateError) -> StoreError {
    match err {
        MigrateError::VersionMissing(v) => StoreError::Migration(format!(
            "the database has migration {v}, which this binary does not know: it was written by a newer semdex"
        )),
        MigrateError::Execute(e) => match db_err(e) {
            StoreError::Unavailable(e) => StoreError::Unavailable(e),
            other => StoreError::Migration(other.to_string()),
        },
        other => StoreError::Migration(other.to_string()),
    }
}

/// Reads a column, as a typed error rather than a panic.
fn col<'r, T>(row: &'r SqliteRow, name: &str) -> Result<T>
where
    T: sqlx::Decode<'r, Sqlite> + sqlx::Type<Sqlite>,
{
    row.try_get(name).map_err(StoreError::Other)
}

fn json_col(row: &SqliteRow, name: &str) -> Result<serde_json::Value> {
    let text: String = col(row, name)?;
    serde_json::from_str(&text).map_err(|e| StoreError::Other(sqlx::Error::Decode(Box::new(e))))
}

fn string_list_col(row: &SqliteRow, name: &str) -> Result<Option<Vec<String>>> {
    let text: Option<String> = col(row, name)?;
    text.map(|t| serde_json::from_str(&t).map_err(|e| StoreError::Other(sqlx::Error::Decode(Box::new(e)))))
        .transpose()
}

/// A list as one JSON parameter, expanded in SQL with `json_each`: one statement shape for any
/// length, and no bound-parameter limit.
fn json_list<T: serde::Serialize>(items: &[T]) -> String {
    serde_json::to_string(items).unwrap_or_else(|_| "[]".into())
}

/// The scope's languages as a JSON list, or NULL for "all".
fn languages(scope: &SearchScope) -> Option<String> {
    (!scope.languages.is_empty()).then(|| json_list(&scope.languages))
}

/// The scope's symbol kinds as a JSON list, or NULL for "all".
fn kinds(scope: &SearchScope) -> Option<String> {
    (!scope.kinds.is_empty()).then(|| json_list(&scope.kinds))
}

/// A timestamp in the schema's text form.
fn timestamp(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
}

/// The `strftime` modifier for a lease of `secs` seconds from now.
fn lease_modifier(secs: i64) -> Result<String> {
    if !(0..=366 * 24 * 3600).contains(&secs) {
        return Err(StoreError::Invalid(format!("lease of {secs} seconds")));
    }
    Ok(format!("+{secs} seconds"))
}

/// The FTS5 query for a list of terms: each quoted (so no term is read as query syntax), a
/// trailing `*` kept as a prefix search, combined as `matching` says. `None` when no term has a
/// word character.
fn fts_query(terms: &[String], matching: TermMatch) -> Option<String> {
    let parts: Vec<String> = terms
        .iter()
        .filter_map(|term| {
            let term = term.trim();
            let (body, prefix) = match term.strip_suffix('*') {
                Some(body) => (body.trim_end_matches('*'), true),
                None => (term, false),
            };
            if !body.chars().any(|c| c.is_alphanumeric() || c == '_' || c == '$') {
                return None;
            }
            let quoted = format!("\"{}\"", body.replace('"', "\"\""));
            Some(if prefix { quoted + "*" } else { quoted })
        })
        .collect();
    matching.query(&parts, " AND ", " OR ")
}

fn encode_vector(vector: &[f32]) -> Vec<u8> {
    vector.iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn decode_vector(blob: &[u8]) -> Result<Vec<f32>> {
    if !blob.len().is_multiple_of(4) {
        return Err(StoreError::Invalid(format!("stored vector of {} bytes", blob.len())));
    }
    Ok(blob.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect())
}

fn project_from_row(row: &SqliteRow) -> Result<Project> {
    Ok(Project {
        id: col(row, "id")?,
        name: col(row, "name")?,
        root_path: col(row, "root_path")?,
        repository_url: col(row, "repository_url")?,
        default_branch: col(row, "default_branch")?,
        settings: json_col(row, "settings")?,
        total_files: col(row, "total_files")?,
        total_size_bytes: col(row, "total_size_bytes")?,
        total_chunks: col(row, "total_chunks")?,
        last_indexed_commit: col(row, "last_indexed_commit")?,
        created_at: col(row, "created_at")?,
        updated_at: col(row, "updated_at")?,
    })
}

fn token_from_row(row: &SqliteRow) -> Result<ApiToken> {
    Ok(ApiToken {
        id: col(row, "id")?,
        user_id: col(row, "user_id")?,
        name: col(row, "name")?,
        token_hash: col(row, "token_hash")?,
        prefix: col(row, "prefix")?,
        scopes: string_list_col(row, "scopes")?.unwrap_or_default(),
        expires_at: col(row, "expires_at")?,
        last_used_at: col(row, "last_used_at")?,
        revoked_at: col(row, "revoked_at")?,
        created_at: col(row, "created_at")?,
    })
}

/// A JSON object column's value: `null` stands for the empty object.
fn object_or_empty(value: &serde_json::Value) -> serde_json::Value {
    if value.is_null() { serde_json::json!({}) } else { value.clone() }
}

fn user_err(e: sqlx::Error) -> StoreError {
    match db_err(e) {
        StoreError::Conflict(_) => {
            StoreError::Conflict("a user with this username, email or GitHub username already exists".into())
        }
        other => other,
    }
}

fn agent_err(e: sqlx::Error, name: &str) -> StoreError {
    match db_err(e) {
        StoreError::Conflict(_) => StoreError::Conflict(format!("an agent named {name:?} already exists")),
        other => other,
    }
}

fn user_from_row(row: &SqliteRow) -> Result<User> {
    Ok(User {
        id: col(row, "id")?,
        email: col(row, "email")?,
        username: col(row, "username")?,
        display_name: col(row, "display_name")?,
        github_username: col(row, "github_username")?,
        is_active: col(row, "is_active")?,
        is_admin: col(row, "is_admin")?,
        preferences: json_col(row, "preferences")?,
        last_login_at: col(row, "last_login_at")?,
        created_at: col(row, "created_at")?,
        updated_at: col(row, "updated_at")?,
    })
}

fn member_from_row(row: &SqliteRow) -> Result<Member> {
    Ok(Member {
        project_id: col(row, "project_id")?,
        user_id: col(row, "user_id")?,
        role: col(row, "role")?,
        created_at: col(row, "created_at")?,
    })
}

fn task_from_row(row: &SqliteRow) -> Result<Task> {
    Ok(Task {
        id: col(row, "id")?,
        project_id: col(row, "project_id")?,
        parent_id: col(row, "parent_id")?,
        title: col(row, "title")?,
        description: col(row, "description")?,
        status: col(row, "status")?,
        priority: col(row, "priority")?,
        assigned_agent_id: col(row, "assigned_agent_id")?,
        created_by: col(row, "created_by")?,
        created_at: col(row, "created_at")?,
        updated_at: col(row, "updated_at")?,
        completed_at: col(row, "completed_at")?,
    })
}

fn agent_from_row(row: &SqliteRow) -> Result<Agent> {
    Ok(Agent {
        id: col(row, "id")?,
        name: col(row, "name")?,
        kind: col(row, "kind")?,
        model: col(row, "model")?,
        config: json_col(row, "config")?,
        is_active: col(row, "is_active")?,
        created_at: col(row, "created_at")?,
        updated_at: col(row, "updated_at")?,
    })
}

fn execution_from_row(row: &SqliteRow) -> Result<Execution> {
    Ok(Execution {
        id: col(row, "id")?,
        task_id: col(row, "task_id")?,
        project_id: col(row, "project_id")?,
        agent_id: col(row, "agent_id")?,
        status: col(row, "status")?,
        input_tokens: col(row, "input_tokens")?,
        output_tokens: col(row, "output_tokens")?,
        cost_usd: col(row, "cost_usd")?,
        duration_ms: col(row, "duration_ms")?,
        error: col(row, "error")?,
        started_at: col(row, "started_at")?,
        finished_at: col(row, "finished_at")?,
    })
}

fn review_from_row(row: &SqliteRow) -> Result<Review> {
    Ok(Review {
        id: col(row, "id")?,
        project_id: col(row, "project_id")?,
        commit_id: col(row, "commit_id")?,
        reviewer_agent_id: col(row, "reviewer_agent_id")?,
        reviewer_user_id: col(row, "reviewer_user_id")?,
        score: col(row, "score")?,
        summary: col(row, "summary")?,
        issues: json_col(row, "issues")?,
        suggestions: json_col(row, "suggestions")?,
        created_at: col(row, "created_at")?,
        updated_at: col(row, "updated_at")?,
    })
}

fn activity_from_row(row: &SqliteRow) -> Result<ActivityEntry> {
    Ok(ActivityEntry {
        id: col(row, "id")?,
        project_id: col(row, "project_id")?,
        user_id: col(row, "user_id")?,
        action: col(row, "action")?,
        source: col(row, "source")?,
        subject_type: col(row, "subject_type")?,
        subject_id: col(row, "subject_id")?,
        details: json_col(row, "details")?,
        created_at: col(row, "created_at")?,
    })
}

fn file_view_from_row(row: &SqliteRow) -> Result<FileView> {
    Ok(FileView {
        id: col(row, "id")?,
        file: FileRecord {
            path: col(row, "path")?,
            language: col(row, "language")?,
            size: col(row, "size")?,
            line_count: col(row, "line_count")?,
            content_hash: col(row, "content_hash")?,
            mtime_ns: col(row, "mtime_ns")?,
            is_binary: col(row, "is_binary")?,
            is_generated: col(row, "is_generated")?,
            skip_reason: col(row, "skip_reason")?,
            diagnostics_count: col(row, "diagnostics_count")?,
            chunker_version: col(row, "chunker_version")?,
        },
        indexed_at: col(row, "indexed_at")?,
    })
}

fn symbol_view_from_row(row: &SqliteRow) -> Result<SymbolView> {
    Ok(SymbolView {
        id: col(row, "id")?,
        project_id: col(row, "project_id")?,
        path: col(row, "path")?,
        name: col(row, "name")?,
        qualified_name: col(row, "qualified_name")?,
        kind: col(row, "kind")?,
        signature: col(row, "signature")?,
        start_line: col(row, "start_line")?,
        end_line: col(row, "end_line")?,
        exported: col(row, "exported")?,
    })
}

fn run_from_row(row: &SqliteRow) -> Result<IndexRun> {
    let status: String = col(row, "status")?;
    let status = RunStatus::from_name(&status)
        .ok_or_else(|| StoreError::Invalid(format!("stored run status {status:?}")))?;
    Ok(IndexRun {
        id: col(row, "id")?,
        project_id: col(row, "project_id")?,
        trigger: col(row, "trigger")?,
        status,
        paths: string_list_col(row, "paths")?,
        commit_sha: col(row, "commit_sha")?,
        files_indexed: col(row, "files_indexed")?,
        files_skipped: col(row, "files_skipped")?,
        files_deleted: col(row, "files_deleted")?,
        chunks: col(row, "chunks")?,
        chunks_embedded: col(row, "chunks_embedded")?,
        embedding_cache_hits: col(row, "embedding_cache_hits")?,
        tokens_embedded: col(row, "tokens_embedded")?,
        error: col(row, "error")?,
        lease_owner: col(row, "lease_owner")?,
        lease_expires_at: col(row, "lease_expires_at")?,
        created_at: col(row, "created_at")?,
        started_at: col(row, "started_at")?,
        finished_at: col(row, "finished_at")?,
    })
}

fn commit_from_row(row: &SqliteRow) -> Result<Commit> {
    Ok(Commit {
        id: col(row, "id")?,
        project_id: col(row, "project_id")?,
        sha: col(row, "sha")?,
        parents: string_list_col(row, "parents")?.unwrap_or_default(),
        message: col(row, "message")?,
        author_name: col(row, "author_name")?,
        author_email: col(row, "author_email")?,
        branch: col(row, "branch")?,
        committed_at: col(row, "committed_at")?,
        files_changed: col(row, "files_changed")?,
        additions: col(row, "additions")?,
        deletions: col(row, "deletions")?,
        created_at: col(row, "created_at")?,
    })
}

fn chunk_from_row(row: &SqliteRow) -> Result<ChunkView> {
    Ok(ChunkView {
        id: col(row, "id")?,
        project_id: col(row, "project_id")?,
        project: col(row, "project")?,
        path: col(row, "path")?,
        ordinal: col(row, "ordinal")?,
        content: col(row, "content")?,
        content_hash: col(row, "content_hash")?,
        start_line: col(row, "start_line")?,
        end_line: col(row, "end_line")?,
        symbol_path: col(row, "symbol_path")?,
        kind: col(row, "kind")?,
        language: col(row, "language")?,
        token_count: col(row, "token_count")?,
        commit_sha: col(row, "commit_sha")?,
        index_run_id: col(row, "index_run_id")?,
    })
}

/// A backup's read snapshot.
struct SqliteExport {
    tx: Transaction<'static, Sqlite>,
}

#[async_trait]
impl ExportSnapshot for SqliteExport {
    async fn export_rows(
        &mut self,
        table: &str,
        after: Option<&[i64]>,
        limit: i64,
    ) -> Result<Vec<CanonicalRow>> {
        let spec = dump::table_or_invalid(table)?;
        let columns: Vec<String> = spec.columns.iter().map(|(c, _)| format!("\"{c}\"")).collect();
        let key: Vec<String> = spec.key.iter().map(|k| format!("\"{k}\"")).collect();
        let filter = match after {
            Some(after) if after.len() == spec.key.len() => {
                format!(" WHERE ({}) > ({})", key.join(", "), vec!["?"; spec.key.len()].join(", "))
            }
            Some(_) => return Err(StoreError::Invalid(format!("{table}: a cursor must give the whole key"))),
            None => String::new(),
        };
        let sql = format!(
            "SELECT {} FROM \"{}\"{filter} ORDER BY {} LIMIT ?",
            columns.join(", "),
            spec.name,
            key.join(", ")
        );
        let mut query = sqlx::query(&sql);
        for value in after.unwrap_or_default() {
            query = query.bind(*value);
        }
        let rows = query.bind(limit).fetch_all(&mut *self.tx).await.map_err(db_err)?;
        rows.iter().map(|row| sqlite_row_to_canonical(spec, row)).collect()
    }
}

/// Reads a row into canonical form (see `store/dump.rs`).
fn sqlite_row_to_canonical(spec: &TableSpec, row: &SqliteRow) -> Result<CanonicalRow> {
    use serde_json::Value;
    let bad = |col: &str, what: String| StoreError::Invalid(format!("stored {}.{col}: {what}", spec.name));
    let mut out = CanonicalRow::new();
    for (i, (name, kind)) in spec.columns.iter().enumerate() {
        let get_err = StoreError::Other;
        let value = match kind {
            ColumnKind::Int => row.try_get::<Option<i64>, _>(i).map_err(get_err)?.map(Value::from),
            ColumnKind::Float => row.try_get::<Option<f64>, _>(i).map_err(get_err)?.map(Value::from),
            ColumnKind::Text => row.try_get::<Option<String>, _>(i).map_err(get_err)?.map(Value::from),
            ColumnKind::Bool => {
                row.try_get::<Option<i64>, _>(i).map_err(get_err)?.map(|b| Value::from(b != 0))
            }
            ColumnKind::Timestamp => match row.try_get::<Option<String>, _>(i).map_err(get_err)? {
                Some(text) => {
                    let t = dump::parse_timestamp(&text)
                        .ok_or_else(|| bad(name, format!("{text:?} is not a timestamp")))?;
                    Some(Value::from(dump::format_timestamp(t)))
                }
                None => None,
            },
            ColumnKind::Json | ColumnKind::TextList => {
                match row.try_get::<Option<String>, _>(i).map_err(get_err)? {
                    Some(text) => {
                        let v: Value =
                            serde_json::from_str(&text).map_err(|e| bad(name, format!("not JSON: {e}")))?;
                        if *kind == ColumnKind::TextList
                            && !v.as_array().is_some_and(|a| a.iter().all(Value::is_string))
                        {
                            return Err(bad(name, "not a list of strings".into()));
                        }
                        Some(dump::canonical_json(v))
                    }
                    None => None,
                }
            }
            ColumnKind::Vector => row
                .try_get::<Option<Vec<u8>>, _>(i)
                .map_err(get_err)?
                .map(|b| Value::from(dump::encode_vector_bytes(&b))),
        };
        out.insert((*name).to_string(), value.unwrap_or(Value::Null));
    }
    Ok(out)
}

/// A value to bind, converted from canonical form to the SQLite column's storage.
enum SqliteValue {
    Null,
    Int(i64),
    Float(f64),
    Text(String),
    Blob(Vec<u8>),
}

fn canonical_to_sqlite(
    spec: &TableSpec,
    name: &str,
    kind: ColumnKind,
    value: &serde_json::Value,
) -> Result<SqliteValue> {
    use serde_json::Value;
    let bad = || StoreError::Invalid(format!("{}.{name}: not a valid {kind:?} value", spec.name));
    Ok(match (kind, value) {
        (_, Value::Null) => SqliteValue::Null,
        (ColumnKind::Int, v) => SqliteValue::Int(v.as_i64().ok_or_else(bad)?),
        (ColumnKind::Float, v) => SqliteValue::Float(v.as_f64().ok_or_else(bad)?),
        (ColumnKind::Text, Value::String(s)) => SqliteValue::Text(s.clone()),
        (ColumnKind::Bool, Value::Bool(b)) => SqliteValue::Int(i64::from(*b)),
        // The schema's own form, so string comparisons keep working (sub-millisecond digits from
        // PostgreSQL are dropped).
        (ColumnKind::Timestamp, Value::String(s)) => {
            SqliteValue::Text(timestamp(dump::parse_timestamp(s).ok_or_else(bad)?))
        }
        (ColumnKind::Json, v) => SqliteValue::Text(v.to_string()),
        (ColumnKind::TextList, v @ Value::Array(_)) => SqliteValue::Text(v.to_string()),
        (ColumnKind::Vector, Value::String(s)) => SqliteValue::Blob(dump::decode_vector_bytes(s)?),
        _ => return Err(bad()),
    })
}

/// A restore in progress: the write transaction and the triggers to recreate before it commits.
struct SqliteRestore {
    tx: Transaction<'static, Sqlite>,
    triggers: Vec<(String, String)>,
}

#[async_trait]
impl RestoreSession for SqliteRestore {
    async fn import_rows(&mut self, table: &str, rows: &[CanonicalRow]) -> Result<u64> {
        let spec = dump::table_or_invalid(table)?;
        let width = spec.columns.len();
        // Well under SQLite's bound-parameter limit (32,766).
        let per_statement = (30_000 / width).clamp(1, BATCH_ROWS);
        let columns: Vec<String> = spec.columns.iter().map(|(c, _)| format!("\"{c}\"")).collect();
        let placeholders = format!("({})", vec!["?"; width].join(", "));
        let mut inserted = 0;
        for batch in rows.chunks(per_statement) {
            let mut values = Vec::with_capacity(batch.len() * width);
            for row in batch {
                dump::validate_row(spec, row)?;
                for (name, kind) in spec.columns {
                    let value = row.get(*name).unwrap_or(&serde_json::Value::Null);
                    values.push(canonical_to_sqlite(spec, name, *kind, value)?);
                }
            }
            let sql = format!(
                "INSERT INTO \"{}\" ({}) VALUES {}",
                spec.name,
                columns.join(", "),
                vec![placeholders.as_str(); batch.len()].join(", ")
            );
            let mut query = sqlx::query(&sql);
            for value in values {
                query = match value {
                    SqliteValue::Null => query.bind(None::<i64>),
                    SqliteValue::Int(v) => query.bind(v),
                    SqliteValue::Float(v) => query.bind(v),
                    SqliteValue::Text(v) => query.bind(v),
                    SqliteValue::Blob(v) => query.bind(v),
                };
            }
            inserted += query.execute(&mut *self.tx).await.map_err(db_err)?.rows_affected();
        }
        Ok(inserted)
    }

    async fn finish(mut self: Box<Self>) -> Result<()> {
        // Stats from the restored rows, once, rather than trusting or re-deriving them per row.
        sqlx::query(
            "UPDATE projects SET \
             total_files = (SELECT count(*) FROM files f WHERE f.project_id = projects.id), \
             total_size_bytes = (SELECT coalesce(sum(size), 0) FROM files f WHERE f.project_id = projects.id), \
             total_chunks = (SELECT count(*) FROM chunks c WHERE c.project_id = projects.id)",
        )
        .execute(&mut *self.tx)
        .await
        .map_err(db_err)?;
        // The full-text and trigram indexes are rebuilt from chunks and symbols in one pass each.
        for rebuild in [
            "INSERT INTO chunks_fts (chunks_fts) VALUES ('rebuild')",
            "INSERT INTO symbols_trigram (symbols_trigram) VALUES ('rebuild')",
        ] {
            sqlx::query(rebuild).execute(&mut *self.tx).await.map_err(db_err)?;
        }
        for (_, sql) in &self.triggers {
            sqlx::query(sql).execute(&mut *self.tx).await.map_err(db_err)?;
        }
        // The symbols changed while the triggers that count their writes were dropped.
        sqlx::query("UPDATE symbols_version SET version = version + 1 WHERE id = 1")
            .execute(&mut *self.tx)
            .await
            .map_err(db_err)?;
        // Deferred foreign keys would fail the COMMIT with no detail; name the first violation.
        let violation: Option<(String, Option<i64>, String)> =
            sqlx::query_as("SELECT \"table\", rowid, parent FROM pragma_foreign_key_check LIMIT 1")
                .fetch_optional(&mut *self.tx)
                .await
                .map_err(db_err)?;
        if let Some((table, rowid, parent)) = violation {
            return Err(StoreError::Invalid(format!(
                "{table} row {} refers to a missing {parent} row (foreign key constraint)",
                rowid.map_or_else(|| "?".to_string(), |r| r.to_string())
            )));
        }
        self.tx.commit().await.map_err(db_err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fts_query_quotes_terms_and_keeps_prefixes() {
        let terms: Vec<String> = ["user_id", "creat*", "say \"hi\"", "!!!", "**"].map(String::from).to_vec();
        assert_eq!(
            fts_query(&terms, TermMatch::Any).as_deref(),
            Some("\"user_id\" OR \"creat\"* OR \"say \"\"hi\"\"\"")
        );
        assert_eq!(
            fts_query(&terms, TermMatch::All).as_deref(),
            Some("\"user_id\" AND \"creat\"* AND \"say \"\"hi\"\"\"")
        );
        assert_eq!(
            fts_query(&terms, TermMatch::AtLeast(2)).as_deref(),
            Some(
                "(\"user_id\" AND \"creat\"*) OR (\"user_id\" AND \"say \"\"hi\"\"\") OR (\"creat\"* AND \"say \"\"hi\"\"\")"
            )
        );
        assert_eq!(fts_query(&["-".to_string()], TermMatch::Any), None);
        assert_eq!(fts_query(&[], TermMatch::All), None);
    }

    #[test]
    fn vectors_round_trip_little_endian() {
        let v = [1.0f32, -0.5, 3.25];
        let blob = encode_vector(&v);
        assert_eq!(&blob[..4], &1.0f32.to_le_bytes());
        assert_eq!(decode_vector(&blob).unwrap(), v);
        assert!(decode_vector(&[0, 1, 2]).is_err());
    }

    #[test]
    fn timestamps_use_the_schema_form() {
        let t = DateTime::parse_from_rfc3339("2024-05-06T07:08:09.123456+00:00").unwrap().with_timezone(&Utc);
        assert_eq!(timestamp(t), "2024-05-06T07:08:09.123Z");
    }

    #[test]
    fn symbol_parent_out_of_range_is_invalid() {
        let write = FileWrite {
            file: super::super::FileRecord {
                path: "a.ts".into(),
                language: None,
                size: 0,
                line_count: 0,
                content_hash: None,
                mtime_ns: 0,
                is_binary: false,
                is_generated: false,
                skip_reason: None,
                diagnostics_count: 0,
                chunker_version: 0,
            },
            symbols: vec![super::super::SymbolRecord {
                name: "f".into(),
                qualified_name: "f".into(),
                kind: "function".into(),
                signature: String::new(),
                start_line: 1,
                end_line: 1,
                start_byte: 0,
                end_byte: 1,
                exported: false,
                parent: Some(0),
            }],
            imports: vec![],
            chunks: vec![],
        };
        assert!(matches!(validate_write(&write), Err(StoreError::Invalid(_))));
    }
}
