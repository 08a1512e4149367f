//! The server-mode store: PostgreSQL (>= 15) with pgvector when the server offers it.
//!
//! **Many processes, one database.** Daemons and CI runners share the database through a
//! connection pool each; index runs are leased with `FOR UPDATE SKIP LOCKED`, so two workers
//! never take the same run and neither waits for the other.
//!
//! **Bulk paths.** Each write is one prepared statement and one round trip. A file's chunks go in
//! with one multi-row `INSERT` inside the file's transaction (a file of hundreds of chunks by
//! binary `COPY` instead), each with its `tsvector` computed here (`tsvector.rs`), not by the
//! server. A batch of vectors goes in with one `INSERT ... SELECT FROM unnest(...)` of arrays (one
//! shape whatever the batch size) and `ON CONFLICT DO NOTHING`, which keeps stored hashes and
//! waits out a concurrent writer of the same one; the model's dimensions, which the batch is
//! checked against first, are cached. Without pgvector, vectors are staged with binary `COPY` into
//! a temporary table and moved into `embeddings` the same way. On this schema a parameterised
//! statement per file or batch measured as fast as COPY (benches/results/store.md): the server's
//! work per row (the GIN index, TOAST) outweighs the protocol. Symbols and imports, fewer and
//! narrower, go in as one `INSERT ... SELECT FROM UNNEST(...)` each. Project stats are kept by
//! statement-level triggers (see the migration), so a bulk write costs one stats update per
//! statement. The price: a file's transaction holds its project's row lock from its first write
//! to its commit, so concurrent writers to one project take turns (writers to different projects
//! do not).
//!
//! **pgvector is optional.** With it, `embeddings.embedding` is an untyped `vector` and each
//! registered model gets a partial HNSW index on `(embedding::halfvec(D))` (D <= 4,000; above that
//! there is no index and dense search is exact or local). Without it the column is `real[]`, the
//! local HNSW index serves dense search, and `status` and start-up say so. Vectors are read as
//! `embedding::real[]`, which works for both.
//!
//! **Lexical search** ranks with `ts_rank_cd` (cover density, normalised by document length) over
//! the chunks' `tsvector`: an approximation of BM25, which PostgreSQL does not have. Scores are
//! therefore comparable within one backend only; fusion uses ranks, not scores.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use sqlx::error::ErrorKind;
use sqlx::migrate::{MigrateError, Migrator};
use sqlx::postgres::{PgConnection, PgPool, PgPoolOptions, PgRow};
use sqlx::{Connection, Postgres, Row};

use super::dump::{self, ColumnKind, ExportSnapshot, RestoreSession, Row as CanonicalRow, TableSpec};
use super::fuzzy::{self, Fuzzy};
use super::like_escape;
use super::{
    ActivityEntry, Agent, ApiToken, Backend, ChunkView, Commit, CommitRecord, EmbeddingModel, Execution,
    FileState, FileWrite, IndexRun, InputMode, Member, MigrationInfo, NewAgent, NewExecution, NewProject,
    NewReview, NewTask, NewToken, NewUser, Project, Result, Review, RunCounts, RunEvent, RunStatus,
    ScoredChunk, SearchScope, Store, StoreError, StoreStatus, SymbolView, Task, TaskFilter, TaskUpdate, User,
};
use super::{FileDetail, FileRecord, FileView, ImportRecord, LexicalTsvector, TermMatch};

/// The PostgreSQL migrations, embedded at build time.
static MIGRATOR: Migrator = sqlx::migrate!("../migrations/postgres");

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

/// pgvector's `halfvec` HNSW index takes at most this many dimensions.
pub const MAX_INDEXED_DIMENSIONS: i32 = 4000;

/// Bytes of COPY data buffered before they are sent.
const COPY_CHUNK_BYTES: usize = 4 << 20;

/// Floats bound in one `INSERT` of vectors (32 MB): far below PostgreSQL's 1 GB per value, for a
/// call larger than the embedder's usual batch.
const INSERT_VECTOR_FLOATS: usize = 8 << 20;

/// Files with at least this many chunks write them with binary COPY, which streams them in
/// [`COPY_CHUNK_BYTES`] pieces and needs no statement per row count; smaller ones (nearly all)
/// with one prepared multi-row `INSERT`, which saves COPY's second round trip and its parse. At
/// 500 chunks per file the two measured alike (benches/results/store.md, 2026-11-27). Below this,
/// at most 4 + 13 * 255 parameters, far from the protocol's 65,535.
const COPY_CHUNKS_FROM: usize = 256;

/// What `embeddings.embedding` is, cached after the first look (migrations reset it).
const COLUMN_UNKNOWN: u8 = 0;
const COLUMN_VECTOR: u8 = 1;
const COLUMN_REAL_ARRAY: u8 = 2;

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

macro_rules! symbol_view_select {
    () => {
        "SELECT s.id, s.project_id, f.path, s.name, s.qualified_name, s.kind, s.signature, s.start_line, \
         s.end_line, s.exported \
         FROM symbols s JOIN files f ON f.id = s.file_id"
    };
}

macro_rules! token_cols {
    () => {
        "id, user_id, name, token_hash, prefix, scopes, expires_at, last_used_at, revoked_at, created_at"
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

macro_rules! chunk_view_select {
    () => {
        "SELECT c.id, c.project_id, p.name AS project, f.path, c.ordinal, c.content, c.content_hash, \
         c.start_line, c.end_line, c.symbol_path, c.kind, c.language, c.token_count, c.commit_sha, \
         c.index_run_id \
         FROM chunks c JOIN files f ON f.id = c.file_id JOIN projects p ON p.id = c.project_id"
    };
}

/// The scope predicate on a chunks alias `c`, with the project ids, languages and symbol kinds
/// as parameters `$a` (int8[]), `$b` and `$k` (text[], empty for all). A chunk passes the kind
/// filter when a symbol of one of the kinds starts on one of its lines.
macro_rules! chunk_scope {
    ($projects:literal, $languages:literal, $kinds:literal) => {
        concat!(
            "c.project_id = ANY($",
            $projects,
            "::int8[]) AND (cardinality($",
            $languages,
            "::text[]) = 0 OR c.language = ANY($",
            $languages,
            "::text[])) AND (cardinality($",
            $kinds,
            "::text[]) = 0 OR EXISTS (SELECT 1 FROM symbols ks WHERE ks.file_id = c.file_id ",
            "AND ks.start_line BETWEEN c.start_line AND c.end_line AND ks.kind = ANY($",
            $kinds,
            "::text[])))"
        )
    };
}

/// The scope predicate on a symbols alias `s` joined to its file `f`: project ids (int8[]),
/// languages and kinds (text[], empty for all).
macro_rules! symbol_scope {
    ($projects:literal, $languages:literal, $kinds:literal) => {
        concat!(
            "s.project_id = ANY($",
            $projects,
            "::int8[]) AND (cardinality($",
            $languages,
            "::text[]) = 0 OR f.language = ANY($",
            $languages,
            "::text[])) AND (cardinality($",
            $kinds,
            "::text[]) = 0 OR s.kind = ANY($",
            $kinds,
            "::text[]))"
        )
    };
}

/// PostgreSQL-backed [`super::Store`].
#[derive(Debug)]
pub struct PgStore {
    pool: PgPool,
    /// One of the `COLUMN_*` values.
    vector_column: AtomicU8,
    /// Each embedding model's dimensions, by id, as last read or registered: a hint that saves
    /// `put_embeddings` a round trip. Cleared by migrations and restores; a model another process
    /// deleted or restored differently makes the write fail, and `put_embeddings` then reads the
    /// model again (see there).
    model_dimensions: Mutex<HashMap<i64, i32>>,
}

impl PgStore {
    /// Scopes holding at most this many distinct vectors are searched exactly, not through HNSW.
    pub const EXACT_SCAN_BELOW: i64 = 2_000;

    /// Connects to `url`. Does not migrate: call [`Store::migrate_up`]. Logs a warning when the
    /// server has no pgvector (vectors are then kept as `real[]` and searched locally).
    pub async fn connect(url: &str) -> Result<PgStore> {
        let pool = PgPoolOptions::new()
            .max_connections(16)
            .min_connections(0)
            .acquire_timeout(Duration::from_secs(30))
            .idle_timeout(Some(Duration::from_secs(600)))
            .before_acquire(super::not_left_in_transaction)
            .connect(url)
            .await
            .map_err(db_err)?;
        let available: Option<String> =
            sqlx::query_scalar("SELECT default_version FROM pg_available_extensions WHERE name = 'vector'")
                .fetch_optional(&pool)
                .await
                .map_err(db_err)?;
        match available {
            Some(version) => tracing::debug!(pgvector = %version, "pgvector is available"),
            None => tracing::warn!(
                "the PostgreSQL server has no pgvector: vectors are stored as real[] and searched with the local HNSW index"
            ),
        }
        Ok(PgStore {
            pool,
            vector_column: AtomicU8::new(COLUMN_UNKNOWN),
            model_dimensions: Mutex::new(HashMap::new()),
        })
    }

    /// The connection pool, for tools that need raw access (backup, restore, catalog checks).
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Closes the pool.
    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// Whether `embeddings.embedding` is a pgvector `vector` (so dense search can run in the
    /// database); `false` when vectors are kept as `real[]`. Errors before migrations ran.
    pub async fn has_pgvector_column(&self) -> Result<bool> {
        match self.vector_column.load(Ordering::Relaxed) {
            COLUMN_VECTOR => return Ok(true),
            COLUMN_REAL_ARRAY => return Ok(false),
            _ => {}
        }
        let type_name: Option<String> = sqlx::query_scalar(
            "SELECT t.typname::text FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid \
             WHERE a.attrelid = to_regclass('embeddings') AND a.attname = 'embedding' AND NOT a.attisdropped",
        )
        .fetch_optional(&self.pool)
        .await
        .map_err(db_err)?;
        let is_vector = match type_name.as_deref() {
            Some("vector") => true,
            Some(_) => false,
            None => {
                return Err(StoreError::Migration("the schema is not migrated (no embeddings table)".into()));
            }
        };
        self.vector_column
            .store(if is_vector { COLUMN_VECTOR } else { COLUMN_REAL_ARRAY }, Ordering::Relaxed);
        Ok(is_vector)
    }

    /// Nearest embeddings of `model_id` to `query` by inner product (cosine similarity, the
    /// vectors being unit length), best first: `(embedding id, similarity)`.
    ///
    /// Uses the model's partial HNSW index: the query repeats the index's expression
    /// `(embedding::halfvec(D))` and predicate `model_id = N`, both as literals so the planner can
    /// match them. With a scope, only embeddings of chunks in scope count; the filter runs after the
    /// index scan, so the scan is iterative (`hnsw.iterative_scan = relaxed_order`) and the results
    /// are re-sorted. Above [`MAX_INDEXED_DIMENSIONS`] there is no index and this is an exact scan.
    /// Fails with [`StoreError::Invalid`] when the server has no pgvector.
    pub async fn dense_search(
        &self,
        model_id: i64,
        dims: i32,
        query: &[f32],
        scope: Option<&SearchScope>,
        k: i64,
        ef_search: u32,
    ) -> Result<Vec<(i64, f32)>> {
        if k <= 0 || scope.is_some_and(|s| s.project_ids.is_empty()) {
            return Ok(Vec::new());
        }
        if !(1..=16000).contains(&dims) || query.len() != dims as usize {
            return Err(StoreError::Invalid(format!(
                "query vector has {} dimensions, the model has {dims}",
                query.len()
            )));
        }
        if query.iter().any(|x| !x.is_finite()) {
            return Err(StoreError::Invalid("query vector has a non-finite value".into()));
        }
        if !self.has_pgvector_column().await? {
            return Err(StoreError::Invalid("the PostgreSQL server has no pgvector".into()));
        }
        // Literals, not parameters: a generic plan could not prove the partial index's predicate.
        let distance = if dims <= MAX_INDEXED_DIMENSIONS {
            format!("(e.embedding::halfvec({dims})) <#> $1::halfvec({dims})")
        } else {
            format!("e.embedding <#> $1::vector({dims})")
        };
        let filter = if scope.is_some() {
            concat!(
                " AND EXISTS (SELECT 1 FROM chunks c WHERE c.content_hash = e.content_hash AND ",
                chunk_scope!("3", "4", "5"),
                ")"
            )
        } else {
            ""
        };
        let sql = format!(
            "SELECT e.id, ({distance})::float8 AS distance FROM embeddings e \
             WHERE e.model_id = {model_id}{filter} ORDER BY {distance} LIMIT $2"
        );
        let ef_search = ef_search.clamp(1, 1000);
        let mut tx = self.pool.begin().await.map_err(db_err)?;
        // Both settings in one round trip (`set_config(..., true)` is `SET LOCAL`). Sequential
        // scans are off because the caller chose the index (an exact scan has its own query):
        // PostgreSQL's planner prices a sequential scan without the cost of reading every
        // TOASTed vector, and from about 100k vectors at ef_search 100 it picks a parallel
        // sequential scan and sort, about 1 s per search instead of a few ms (pgvector 0.8.5 on
        // PostgreSQL 18, `benches/results/vector.md`).
        sqlx::query(
            "SELECT set_config('hnsw.ef_search', $1, true), set_config('enable_seqscan', 'off', true)",
        )
        .bind(ef_search.to_string())
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
        if scope.is_some() {
            // pgvector 0.8+; before that the setting does not exist and a filtered search may
            // return fewer than k hits. A savepoint keeps the failure from aborting the search.
            let mut savepoint = tx.begin().await.map_err(db_err)?;
            match sqlx::query("SET LOCAL hnsw.iterative_scan = relaxed_order").execute(&mut *savepoint).await
            {
                Ok(_) => savepoint.commit().await.map_err(db_err)?,
                Err(e) => {
                    tracing::debug!(error = %e, "hnsw.iterative_scan is not available");
                    savepoint.rollback().await.map_err(db_err)?;
                }
            }
        }
        let vector = pgvector::Vector::from(query.to_vec());
        let mut q = sqlx::query(&sql).bind(vector).bind(k);
        if let Some(scope) = scope {
            q = q.bind(&scope.project_ids).bind(&scope.languages).bind(&scope.kinds);
        }
        let rows = q.fetch_all(&mut *tx).await.map_err(db_err)?;
        tx.commit().await.map_err(db_err)?;
        let mut hits = rows
            .iter()
            .map(|row| {
                let distance: f64 = col(row, "distance")?;
                // `<#>` is the negative inner product.
                Ok((col::<i64>(row, "id")?, (-distance) as f32))
            })
            .collect::<Result<Vec<_>>>()?;
        // relaxed_order may return neighbours slightly out of order.
        hits.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        Ok(hits)
    }

    /// Nearest neighbours by an exact scan of the scope's vectors in full precision: the path for
    /// scopes too small for the HNSW index to serve well (see [`PgStore::EXACT_SCAN_BELOW`]).
    pub async fn exact_dense_search(
        &self,
        model: &EmbeddingModel,
        query: &[f32],
        scope: &SearchScope,
        k: i64,
    ) -> Result<Vec<(i64, f32)>> {
        if k <= 0 || scope.project_ids.is_empty() {
            return Ok(Vec::new());
        }
        if query.len() != model.dimensions as usize || query.iter().any(|x| !x.is_finite()) {
            return Err(StoreError::Invalid("query vector does not fit the model".into()));
        }
        // The ORDER BY is not the index expression, so the planner cannot use the HNSW index.
        let rows = sqlx::query(concat!(
            "SELECT e.id, (e.embedding::vector <#> $1::vector)::float8 AS distance FROM embeddings e ",
            "WHERE e.model_id = $2 AND e.content_hash IN (SELECT c.content_hash FROM chunks c WHERE ",
            chunk_scope!("3", "4", "6"),
            ") ORDER BY distance, e.id LIMIT $5"
        ))
        .bind(pgvector::Vector::from(query.to_vec()))
        .bind(model.id)
        .bind(&scope.project_ids)
        .bind(&scope.languages)
        .bind(k)
        .bind(&scope.kinds)
        .fetch_all(&self.pool)
        .await
        .map_err(db_err)?;
        rows.iter()
            .map(|row| {
                let distance: f64 = col(row, "distance")?;
                Ok((col::<i64>(row, "id")?, (-distance) as f32))
            })
            .collect()
    }

    /// Applied migration versions, ascending; empty when the bookkeeping table does not exist.
    async fn applied_versions(&self) -> Result<Vec<i64>> {
        let exists: Option<String> = sqlx::query_scalar("SELECT to_regclass('_sqlx_migrations')::text")
            .fetch_one(&self.pool)
            .await
            .map_err(db_err)?;
        if exists.is_none() {
            return Ok(Vec::new());
        }
        sqlx::query_scalar("SELECT version FROM _sqlx_migrations WHERE success ORDER BY version")
            .fetch_all(&self.pool)
            .await
            .map_err(db_err)
    }

    /// A model's dimensions: cached, or read (and cached). `NotFound` for an unknown model.
    async fn dimensions(&self, model_id: i64) -> Result<i32> {
        if let Some(dimensions) = self.cached_dimensions(model_id) {
            return Ok(dimensions);
        }
        let dimensions: Option<i32> =
            sqlx::query_scalar("SELECT dimensions FROM embedding_models WHERE id = $1")
                .bind(model_id)
                .fetch_optional(&self.pool)
                .await
                .map_err(db_err)?;
        let dimensions =
            dimensions.ok_or_else(|| StoreError::NotFound(format!("embedding model {model_id}")))?;
        self.remember_model(model_id, dimensions);
        Ok(dimensions)
    }

    fn cached_dimensions(&self, model_id: i64) -> Option<i32> {
        self.model_dimensions.lock().unwrap_or_else(|e| e.into_inner()).get(&model_id).copied()
    }

    fn remember_model(&self, model_id: i64, dimensions: i32) {
        self.model_dimensions.lock().unwrap_or_else(|e| e.into_inner()).insert(model_id, dimensions);
    }

    fn forget_model(&self, model_id: i64) {
        self.model_dimensions.lock().unwrap_or_else(|e| e.into_inner()).remove(&model_id);
    }

    fn forget_models(&self) {
        self.model_dimensions.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }

    /// Writes a batch with `INSERT ... SELECT FROM unnest(...) ON CONFLICT DO NOTHING`, which
    /// keeps what is already stored (or repeated in the batch): one prepared statement, in its own
    /// transaction, for a batch of up to [`INSERT_VECTOR_FLOATS`] floats, else one per slice of
    /// that size inside one transaction. Ids follow the order given. Returns how many were new.
    async fn insert_embeddings(
        &self,
        model_id: i64,
        vectors: &[(String, Vec<f32>)],
        modes: &[InputMode],
    ) -> Result<u64> {
        let per_statement = (INSERT_VECTOR_FLOATS / vectors[0].1.len().max(1)).max(1);
        if vectors.len() <= per_statement {
            return insert_embedding_rows(&self.pool, model_id, vectors, modes).await;
        }
        let mut tx = self.pool.begin().await.map_err(db_err)?;
        let mut inserted = 0;
        for (i, slice) in vectors.chunks(per_statement).enumerate() {
            let from = i * per_statement;
            let modes = modes.get(from..(from + slice.len()).min(modes.len())).unwrap_or_default();
            inserted += insert_embedding_rows(&mut *tx, model_id, slice, modes).await?;
        }
        tx.commit().await.map_err(db_err)?;
        Ok(inserted)
    }

    /// Writes a batch into a `real[]` column (a server without pgvector) through a temporary
    /// table: binary COPY into it, then `INSERT ... SELECT ... ON CONFLICT DO NOTHING` into
    /// `embeddings`, which keeps what is already stored. Returns how many were new.
    async fn stage_embeddings(
        &self,
        model_id: i64,
        vectors: &[(String, Vec<f32>)],
        modes: &[InputMode],
    ) -> Result<u64> {
        let mut tx = self.pool.begin().await.map_err(db_err)?;
        sqlx::query(
            "CREATE TEMP TABLE semdex_embeddings_stage (ord int8 NOT NULL, content_hash text NOT NULL, \
             embedding real[] NOT NULL, input_mode text NOT NULL) ON COMMIT DROP",
        )
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
        copy_embedding_rows(
            &mut tx,
            "COPY semdex_embeddings_stage (ord, content_hash, embedding, input_mode) FROM STDIN (FORMAT binary)",
            vectors,
            modes,
            false,
            |ord| ord as i64,
        )
        .await?;
        // Only the cache key may collide; any other constraint still fails the batch. Ids follow
        // the order given.
        let inserted = sqlx::query(
            "INSERT INTO embeddings (model_id, content_hash, embedding, input_mode) \
             SELECT $1, content_hash, embedding, input_mode FROM semdex_embeddings_stage ORDER BY ord \
             ON CONFLICT (model_id, content_hash) DO NOTHING",
        )
        .bind(model_id)
        .execute(&mut *tx)
        .await
        .map_err(db_err)?
        .rows_affected();
        tx.commit().await.map_err(db_err)?;
        Ok(inserted)
    }

    /// Creates the partial HNSW index of a model, if pgvector is there and can index it.
    async fn ensure_model_index(&self, model: &EmbeddingModel) -> Result<()> {
        if model.dimensions > MAX_INDEXED_DIMENSIONS || !self.has_pgvector_column().await? {
            return Ok(());
        }
        let sql = model_index_sql(model.id, model.dimensions);
        match sqlx::query(&sql).execute(&self.pool).await {
            Ok(_) => Ok(()),
            // Two processes registering the same model at once: the other one built it.
            Err(sqlx::Error::Database(e))
                if matches!(e.code().as_deref(), Some("42P07") | Some("23505") | Some("40P01")) =>
            {
                Ok(())
            }
            Err(e) => Err(db_err(e)),
        }
    }
}

#[async_trait]
impl Store for PgStore {
    fn backend(&self) -> Backend {
        Backend::Postgres
    }

    async fn migrate_up(&self) -> Result<()> {
        self.vector_column.store(COLUMN_UNKNOWN, Ordering::Relaxed);
        self.forget_models();
        MIGRATOR.run(&self.pool).await.map_err(migrate_err)?;
        if !self.has_pgvector_column().await? {
            tracing::warn!(
                "embeddings are stored as real[] (pgvector was missing or could not be created when the schema \
                 was made): dense search uses the local HNSW index"
            );
        }
        Ok(())
    }

    async fn migrate_down(&self, to: Option<i64>) -> Result<()> {
        self.vector_column.store(COLUMN_UNKNOWN, Ordering::Relaxed);
        self.forget_models();
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
        MIGRATOR.undo(&self.pool, target).await.map_err(migrate_err)
    }

    async fn status(&self) -> Result<StoreStatus> {
        let schema_version = self.applied_versions().await?.last().copied();
        let latest_version = MIGRATOR.iter().map(|m| m.version).max().unwrap_or(0);
        let mut row_counts = Vec::with_capacity(TABLES.len());
        for table in TABLES {
            let exists: Option<String> = sqlx::query_scalar("SELECT to_regclass($1)::text")
                .bind(*table)
                .fetch_one(&self.pool)
                .await
                .map_err(db_err)?;
            if exists.is_none() {
                continue;
            }
            // Table names come from the constant list above, never from input.
            let count: i64 = sqlx::query_scalar(&format!("SELECT count(*) FROM \"{table}\""))
                .fetch_one(&self.pool)
                .await
                .map_err(db_err)?;
            row_counts.push(((*table).to_string(), count));
        }
        let size_bytes: i64 = sqlx::query_scalar("SELECT pg_database_size(current_database())")
            .fetch_one(&self.pool)
            .await
            .map_err(db_err)?;
        let pgvector: Option<String> =
            sqlx::query_scalar("SELECT extversion::text FROM pg_extension WHERE extname = 'vector'")
                .fetch_optional(&self.pool)
                .await
                .map_err(db_err)?;
        Ok(StoreStatus {
            backend: Backend::Postgres,
            schema_version,
            latest_version,
            row_counts,
            size_bytes: Some(size_bytes),
            pgvector,
        })
    }

    async fn schema_dump(&self) -> Result<Vec<String>> {
        // Everything in the current schema that the migrations own: columns, constraints,
        // indexes, triggers, views and functions, without the migrations bookkeeping and without
        // what belongs to an extension (pgvector's types and functions).
        let rows: Vec<String> = sqlx::query_scalar(
            r#"
            WITH rels AS (
                SELECT c.oid, c.relname, c.relkind FROM pg_class c
                WHERE c.relnamespace = current_schema()::regnamespace
                  AND c.relkind IN ('r', 'v', 'p')
                  AND c.relname <> '_sqlx_migrations'
                  AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.objid = c.oid AND d.deptype = 'e')
            )
            SELECT format('column %s.%s #%s %s%s%s%s%s', r.relname, a.attname,
                          -- The position among live columns, not attnum: a column dropped by a
                          -- down migration and added again by its up leaves a hole in attnum.
                          (SELECT count(*) FROM pg_attribute a2 WHERE a2.attrelid = r.oid
                             AND a2.attnum > 0 AND NOT a2.attisdropped AND a2.attnum <= a.attnum),
                          format_type(a.atttypid, a.atttypmod),
                          CASE WHEN a.attnotnull THEN ' not null' ELSE '' END,
                          CASE WHEN a.attidentity <> '' THEN ' identity ' || a.attidentity::text ELSE '' END,
                          CASE WHEN a.attgenerated <> '' THEN ' generated' ELSE '' END,
                          coalesce(' default ' || pg_get_expr(d.adbin, d.adrelid), ''))
            FROM rels r
            JOIN pg_attribute a ON a.attrelid = r.oid AND a.attnum > 0 AND NOT a.attisdropped
            LEFT JOIN pg_attrdef d ON d.adrelid = r.oid AND d.adnum = a.attnum
            UNION ALL
            SELECT format('constraint %s on %s: %s', con.conname, r.relname, pg_get_constraintdef(con.oid))
            FROM rels r JOIN pg_constraint con ON con.conrelid = r.oid
            UNION ALL
            SELECT format('index %s on %s: %s', i.relname, r.relname, pg_get_indexdef(i.oid))
            FROM rels r JOIN pg_index x ON x.indrelid = r.oid JOIN pg_class i ON i.oid = x.indexrelid
            UNION ALL
            SELECT format('trigger %s on %s: %s', t.tgname, r.relname, pg_get_triggerdef(t.oid))
            FROM rels r JOIN pg_trigger t ON t.tgrelid = r.oid AND NOT t.tgisinternal
            UNION ALL
            SELECT format('view %s: %s', r.relname, pg_get_viewdef(r.oid))
            FROM rels r WHERE r.relkind = 'v'
            UNION ALL
            SELECT format('function %s: %s', p.oid::regprocedure, pg_get_functiondef(p.oid))
            FROM pg_proc p
            WHERE p.pronamespace = current_schema()::regnamespace
              AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.objid = p.oid AND d.deptype = 'e')
            "#,
        )
        .fetch_all(&self.pool)
        .await
        .map_err(db_err)?;
        let mut out: Vec<String> =
            rows.into_iter().map(|line| line.split_whitespace().collect::<Vec<_>>().join(" ")).collect();
        out.sort();
        Ok(out)
    }

    async fn migrations(&self) -> Result<Vec<MigrationInfo>> {
        let applied = self.applied_versions().await?;
        Ok(super::migration_list(&MIGRATOR, &applied))
    }

    async fn begin_export(&self) -> Result<Box<dyn ExportSnapshot>> {
        // One snapshot for the whole backup, however long it takes.
        let mut tx = self.pool.begin().await.map_err(db_err)?;
        sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        Ok(Box::new(PgExport { tx }))
    }

    async fn begin_restore(&self, wipe: bool) -> Result<Box<dyn RestoreSession>> {
        // A restore may give a model id other dimensions.
        self.forget_models();
        let as_vector = self.has_pgvector_column().await?;
        let mut tx = self.pool.begin().await.map_err(db_err)?;
        for spec in dump::TABLES {
            let exists: Option<String> = sqlx::query_scalar("SELECT to_regclass($1)::text")
                .bind(spec.name)
                .fetch_one(&mut *tx)
                .await
                .map_err(db_err)?;
            if exists.is_none() {
                return Err(StoreError::Migration(format!(
                    "the schema is not migrated (no {} table)",
                    spec.name
                )));
            }
        }
        // Nobody else reads or writes while the contents are replaced. Table names come from the
        // catalog, never from input.
        let all: Vec<String> = dump::TABLES.iter().map(|t| format!("\"{}\"", t.name)).collect();
        sqlx::query(&format!("LOCK TABLE {} IN ACCESS EXCLUSIVE MODE", all.join(", ")))
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        if wipe {
            sqlx::query(&format!("TRUNCATE {} RESTART IDENTITY", all.join(", ")))
                .execute(&mut *tx)
                .await
                .map_err(db_err)?;
        } else {
            for spec in dump::TABLES {
                let any: Option<i32> =
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
        // Per-model vector indexes are rebuilt for the restored models at the end (building once
        // is faster than maintaining them row by row, and a wiped model id may come back with
        // other dimensions).
        let indexes: Vec<String> = sqlx::query_scalar(
            "SELECT indexname::text FROM pg_indexes WHERE schemaname = current_schema() \
             AND tablename = 'embeddings' AND indexname LIKE 'embeddings\\_hnsw\\_m%'",
        )
        .fetch_all(&mut *tx)
        .await
        .map_err(db_err)?;
        for index in indexes {
            sqlx::query(&format!("DROP INDEX \"{}\"", index.replace('"', "\"\"")))
                .execute(&mut *tx)
                .await
                .map_err(db_err)?;
        }
        // Triggers that derive stored values (stats, updated_at, activity entries) are held off
        // so rows land as they were backed up; foreign keys (internal triggers) stay on, and so
        // does the dimension check on embeddings. Transactional: a failed restore leaves them on.
        for spec in dump::TABLES.iter().filter(|t| t.name != "embeddings") {
            sqlx::query(&format!("ALTER TABLE \"{}\" DISABLE TRIGGER USER", spec.name))
                .execute(&mut *tx)
                .await
                .map_err(db_err)?;
        }
        Ok(Box::new(PgRestore { tx, as_vector, task_parents: Vec::new() }))
    }

    // Projects.

    async fn create_project(&self, project: NewProject) -> Result<Project> {
        let settings = if project.settings.is_null() { serde_json::json!({}) } else { project.settings };
        let row = sqlx::query(concat!(
            "INSERT INTO projects (name, root_path, repository_url, default_branch, settings) ",
            "VALUES ($1, $2, $3, $4, $5) RETURNING ",
            project_cols!()
        ))
        .bind(&project.name)
        .bind(&project.root_path)
        .bind(&project.repository_url)
        .bind(&project.default_branch)
        .bind(&settings)
        .fetch_one(&self.pool)
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
        let row = sqlx::query(concat!("SELECT ", project_cols!(), " FROM projects WHERE name = $1"))
            .bind(name)
            .fetch_optional(&self.pool)
            .await
            .map_err(db_err)?;
        row.as_ref().map(project_from_row).transpose()
    }

    async fn project(&self, id: i64) -> Result<Option<Project>> {
        let row = sqlx::query(concat!("SELECT ", project_cols!(), " FROM projects WHERE id = $1"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(db_err)?;
        row.as_ref().map(project_from_row).transpose()
    }

    async fn list_projects(&self) -> Result<Vec<Project>> {
        // Byte order, as SQLite sorts, whatever the database's collation.
        let rows =
            sqlx::query(concat!("SELECT ", project_cols!(), " FROM projects ORDER BY name COLLATE \"C\""))
                .fetch_all(&self.pool)
                .await
                .map_err(db_err)?;
        rows.iter().map(project_from_row).collect()
    }

    async fn set_last_indexed_commit(&self, project_id: i64, sha: Option<&str>) -> Result<()> {
        let done = sqlx::query(
            "UPDATE projects SET last_indexed_commit = $1, last_indexed_at = clock_timestamp() WHERE id = $2",
        )
        .bind(sha)
        .bind(project_id)
        .execute(&self.pool)
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
            "UPDATE projects SET name = $2, repository_url = $3, default_branch = $4, settings = $5 WHERE id = $1 ",
            "RETURNING ",
            project_cols!()
        ))
        .bind(id)
        .bind(&update.name)
        .bind(&update.repository_url)
        .bind(&update.default_branch)
        .bind(&settings)
        .fetch_optional(&self.pool)
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
            "SELECT project_id, role FROM project_members WHERE user_id = $1 ORDER BY project_id",
        )
        .bind(user_id)
        .fetch_all(&self.pool)
        .await
        .map_err(db_err)?;
        rows.iter().map(|r| Ok((col(r, "project_id")?, col(r, "role")?))).collect()
    }

    async fn list_tokens(&self) -> Result<Vec<ApiToken>> {
        let rows = sqlx::query(concat!("SELECT ", token_cols!(), " FROM api_tokens ORDER BY id DESC"))
            .fetch_all(&self.pool)
            .await
            .map_err(db_err)?;
        rows.iter().map(token_from_row).collect()
    }

    async fn delete_project(&self, id: i64) -> Result<bool> {
        let done = sqlx::query("DELETE FROM projects WHERE id = $1")
            .bind(id)
            .execute(&self.pool)
            .await
            .map_err(db_err)?;
        Ok(done.rows_affected() > 0)
    }

    // Tokens and activity.

    async fn create_token(&self, token: NewToken) -> Result<ApiToken> {
        let row = sqlx::query(concat!(
            "INSERT INTO api_tokens (user_id, name, token_hash, prefix, scopes, expires_at) ",
            "VALUES ($1, $2, $3, $4, $5, $6) RETURNING ",
            token_cols!()
        ))
        .bind(token.user_id)
        .bind(&token.name)
        .bind(&token.token_hash)
        .bind(&token.prefix)
        .bind(&token.scopes)
        .bind(token.expires_at)
        .fetch_one(&self.pool)
        .await
        .map_err(|e| match db_err(e) {
            StoreError::Conflict(_) => StoreError::Conflict("a token with this hash already exists".into()),
            other => other,
        })?;
        token_from_row(&row)
    }

    async fn token_by_hash(&self, token_hash: &str) -> Result<Option<ApiToken>> {
        let row = sqlx::query(concat!("SELECT ", token_cols!(), " FROM api_tokens WHERE token_hash = $1"))
            .bind(token_hash)
            .fetch_optional(&self.pool)
            .await
            .map_err(db_err)?;
        row.as_ref().map(token_from_row).transpose()
    }

    async fn revoke_token(&self, id: i64) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE api_tokens SET revoked_at = clock_timestamp() WHERE id = $1 AND revoked_at IS NULL",
        )
        .bind(id)
        .execute(&self.pool)
        .await
        .map_err(db_err)?;
        Ok(done.rows_affected() > 0)
    }

    async fn touch_token(&self, id: i64) -> Result<()> {
        sqlx::query("UPDATE api_tokens SET last_used_at = clock_timestamp() WHERE id = $1")
            .bind(id)
            .execute(&self.pool)
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
             FROM activity_log WHERE ($1::int8 IS NULL OR project_id = $1) AND ($2::int8 IS NULL OR id < $2) \
             ORDER BY id DESC LIMIT $3",
        )
        .bind(project_id)
        .bind(before_id)
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .map_err(db_err)?;
        rows.iter().map(activity_from_row).collect()
    }

    // Files, symbols, imports and chunks.

    async fn file_states(&self, project_id: i64) -> Result<Vec<FileState>> {
        let rows = sqlx::query(
            "SELECT path, size, mtime_ns, content_hash, chunker_version, skip_reason FROM files \
             WHERE project_id = $1 ORDER BY path COLLATE \"C\"",
        )
        .bind(project_id)
        .fetch_all(&self.pool)
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
        let mut tx = self.pool.begin().await.map_err(db_err)?;

        // Upsert keeps the file's id, so import edges that point at it stay valid.
        let file_id: i64 = sqlx::query_scalar(
            "INSERT INTO files (project_id, path, language, size, line_count, content_hash, mtime_ns, \
             is_binary, is_generated, skip_reason, diagnostics_count, chunker_version) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) \
             ON CONFLICT (project_id, path) DO UPDATE SET language = excluded.language, size = excluded.size, \
             line_count = excluded.line_count, content_hash = excluded.content_hash, \
             mtime_ns = excluded.mtime_ns, is_binary = excluded.is_binary, is_generated = excluded.is_generated, \
             skip_reason = excluded.skip_reason, diagnostics_count = excluded.diagnostics_count, \
             chunker_version = excluded.chunker_version, indexed_at = clock_timestamp(), \
             updated_at = clock_timestamp() \
             RETURNING id",
        )
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
            sqlx::query(&format!("DELETE FROM {table} WHERE file_id = $1"))
                .bind(file_id)
                .execute(&mut *tx)
                .await
                .map_err(db_err)?;
        }

        if !write.symbols.is_empty() {
            insert_symbols(&mut tx, project_id, file_id, write).await?;
        }

        if !write.imports.is_empty() {
            insert_imports(&mut tx, project_id, file_id, write).await?;
            // This file's edges to files already stored.
            sqlx::query(
                "UPDATE imports i SET resolved_file_id = f.id FROM files f \
                 WHERE i.file_id = $1 AND f.project_id = i.project_id AND f.path = i.resolved_path",
            )
            .bind(file_id)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        }
        // Other files' edges to this one, written before it existed (or while it was deleted).
        sqlx::query(
            "UPDATE imports SET resolved_file_id = $1 \
             WHERE project_id = $2 AND resolved_path = $3 AND resolved_file_id IS DISTINCT FROM $1",
        )
        .bind(file_id)
        .bind(project_id)
        .bind(&f.path)
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;

        if !write.chunks.is_empty() {
            let written = if write.chunks.len() >= COPY_CHUNKS_FROM {
                copy_chunks(&mut tx, project_id, file_id, write, run_id, commit).await
            } else {
                insert_chunks(&mut tx, project_id, file_id, write, run_id, commit).await
            };
            written.map_err(|e| match e {
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
        let done = sqlx::query("DELETE FROM files WHERE project_id = $1 AND path = ANY($2::text[])")
            .bind(project_id)
            .bind(paths)
            .execute(&self.pool)
            .await
            .map_err(db_err)?;
        Ok(done.rows_affected())
    }

    async fn touch_file(&self, project_id: i64, path: &str, size: i64, mtime_ns: i64) -> Result<()> {
        let done =
            sqlx::query("UPDATE files SET size = $1, mtime_ns = $2 WHERE project_id = $3 AND path = $4")
                .bind(size)
                .bind(mtime_ns)
                .bind(project_id)
                .bind(path)
                .execute(&self.pool)
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
            "INSERT INTO embedding_models (provider, model, dimensions) VALUES ($1, $2, $3) \
             ON CONFLICT (provider, model, dimensions) DO UPDATE SET provider = excluded.provider \
             RETURNING id, provider, model, dimensions",
        )
        .bind(provider)
        .bind(model)
        .bind(dimensions)
        .fetch_one(&self.pool)
        .await
        .map_err(db_err)?;
        let model = EmbeddingModel {
            id: col(&row, "id")?,
            provider: col(&row, "provider")?,
            model: col(&row, "model")?,
            dimensions: col(&row, "dimensions")?,
        };
        self.remember_model(model.id, model.dimensions);
        self.ensure_model_index(&model).await?;
        Ok(model)
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
        // One representative chunk (the oldest) per missing hash, in content-hash order as the
        // trait promises; equal hashes mean equal text. DISTINCT ON walks the content_hash index
        // from the cursor; every hash sorts after '' (hashes are 64 hex digits).
        let rows = sqlx::query(
            "SELECT DISTINCT ON (c.content_hash) c.content_hash, c.content FROM chunks c \
             WHERE ($2::int8 IS NULL OR c.project_id = $2) AND c.content_hash > $4 \
               AND NOT EXISTS (SELECT 1 FROM embeddings e WHERE e.model_id = $1 AND e.content_hash = c.content_hash) \
             ORDER BY c.content_hash, c.id LIMIT $3",
        )
        .bind(model_id)
        .bind(project_id)
        .bind(limit)
        .bind(after.unwrap_or(""))
        .fetch_all(&self.pool)
        .await
        .map_err(db_err)?;
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
        let mut cached = self.cached_dimensions(model_id).is_some();
        loop {
            let dimensions = self.dimensions(model_id).await?;
            // Validate everything first: a batch is stored whole or not at all.
            super::check_embeddings(usize::try_from(dimensions).unwrap_or(0), vectors, modes)?;
            let as_vector = self.has_pgvector_column().await?;
            // pgvector's `vector[]` binds the batch as arrays; a `real[]` column (no pgvector)
            // takes it through a staging table instead. Both keep what is stored.
            let written = if as_vector {
                self.insert_embeddings(model_id, vectors, modes).await
            } else {
                self.stage_embeddings(model_id, vectors, modes).await
            };
            match written {
                // The cached dimensions may be stale: the model was deleted (foreign key) or
                // restored with others (the dimension check) by another process. Read the model
                // again, so the error is the one an uncached call gives, or the write succeeds.
                Err(StoreError::Invalid(_)) if cached => {
                    self.forget_model(model_id);
                    cached = false;
                }
                other => return other,
            }
        }
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
            "SELECT id, content_hash, embedding::real[] AS embedding FROM embeddings \
             WHERE model_id = $1 AND id > $2 ORDER BY id LIMIT $3",
        )
        .bind(model_id)
        .bind(after_id)
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .map_err(db_err)?;
        rows.iter()
            .map(|row| Ok((col(row, "id")?, col(row, "content_hash")?, col(row, "embedding")?)))
            .collect()
    }

    async fn embeddings_count_upto(&self, model_id: i64, max_id: i64) -> Result<i64> {
        sqlx::query_scalar("SELECT count(*) FROM embeddings WHERE model_id = $1 AND id <= $2")
            .bind(model_id)
            .bind(max_id)
            .fetch_one(&self.pool)
            .await
            .map_err(db_err)
    }

    async fn embeddings_extent(&self, model_id: i64) -> Result<(i64, i64)> {
        let row = sqlx::query(
            "SELECT count(*) AS n, coalesce(max(id), 0)::int8 AS max_id FROM embeddings WHERE model_id = $1",
        )
        .bind(model_id)
        .fetch_one(&self.pool)
        .await
        .map_err(db_err)?;
        Ok((col(&row, "n")?, col(&row, "max_id")?))
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
            "SELECT content_hash, input_mode FROM embeddings WHERE model_id = $1 \
             AND content_hash = ANY($2::text[]) ORDER BY content_hash",
        )
        .bind(model_id)
        .bind(hashes)
        .fetch_all(&self.pool)
        .await
        .map_err(db_err)?;
        rows.iter()
            .map(|row| {
                let mode: String = col(row, "input_mode")?;
                Ok((col(row, "content_hash")?, InputMode::parse(&mode)?))
            })
            .collect()
    }

    async fn existing_embeddings(&self, model_id: i64, hashes: &[String]) -> Result<Vec<String>> {
        if hashes.is_empty() {
            return Ok(Vec::new());
        }
        sqlx::query_scalar(
            "SELECT content_hash FROM embeddings WHERE model_id = $1 AND content_hash = ANY($2::text[]) \
             ORDER BY content_hash",
        )
        .bind(model_id)
        .bind(hashes)
        .fetch_all(&self.pool)
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
            "SELECT e.id AS embedding_id, v.* FROM unnest($2::int8[]) WITH ORDINALITY AS j(id, ord) ",
            "JOIN embeddings e ON e.id = j.id AND e.model_id = $1 ",
            "JOIN (",
            chunk_view_select!(),
            " WHERE ",
            chunk_scope!("3", "4", "5"),
            ") v ON v.content_hash = e.content_hash ",
            "ORDER BY j.ord, v.id"
        ))
        .bind(model_id)
        .bind(embedding_ids)
        .bind(&scope.project_ids)
        .bind(&scope.languages)
        .bind(&scope.kinds)
        .fetch_all(&self.pool)
        .await
        .map_err(db_err)?;
        rows.iter().map(|row| Ok((col(row, "embedding_id")?, chunk_from_row(row)?))).collect()
    }

    async fn serves_dense_search(&self) -> Result<bool> {
        self.has_pgvector_column().await
    }

    async fn dense_search(
        &self,
        model: &EmbeddingModel,
        query: &[f32],
        scope: &SearchScope,
        k: i64,
    ) -> Result<Option<Vec<(i64, f32)>>> {
        if !self.has_pgvector_column().await? {
            return Ok(None);
        }
        // pgvector filters after the index scan: when the scope holds few of the model's vectors,
        // an exact scan over just those is both faster and complete.
        let row = sqlx::query(concat!(
            "SELECT (SELECT count(*) FROM embeddings WHERE model_id = $1) AS total, ",
            "(SELECT count(DISTINCT c.content_hash) FROM chunks c WHERE ",
            chunk_scope!("2", "3", "4"),
            ") AS scoped"
        ))
        .bind(model.id)
        .bind(&scope.project_ids)
        .bind(&scope.languages)
        .bind(&scope.kinds)
        .fetch_one(&self.pool)
        .await
        .map_err(db_err)?;
        let (total, scoped): (i64, i64) = (col(&row, "total")?, col(&row, "scoped")?);
        if scoped <= Self::EXACT_SCAN_BELOW || scoped.saturating_mul(20) < total {
            return self.exact_dense_search(model, query, scope, k).await.map(Some);
        }
        // ef_search grows with k so the candidate list always holds k hits with room to spare.
        let ef = (k.max(1) as u32).saturating_mul(2).max(40);
        PgStore::dense_search(self, model.id, model.dimensions, query, Some(scope), k, ef).await.map(Some)
    }

    async fn embedding_ids_in_scope(&self, model_id: i64, scope: &SearchScope) -> Result<Vec<i64>> {
        if scope.project_ids.is_empty() {
            return Ok(Vec::new());
        }
        sqlx::query_scalar(concat!(
            "SELECT DISTINCT e.id FROM chunks c ",
            "JOIN embeddings e ON e.model_id = $1 AND e.content_hash = c.content_hash ",
            "WHERE ",
            chunk_scope!("2", "3", "4"),
            " ORDER BY e.id"
        ))
        .bind(model_id)
        .bind(&scope.project_ids)
        .bind(&scope.languages)
        .bind(&scope.kinds)
        .fetch_all(&self.pool)
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
        let Some(query) = ts_query(terms, matching) else { return Ok(Vec::new()) };
        if scope.project_ids.is_empty() || limit <= 0 {
            return Ok(Vec::new());
        }
        // Rank option 1 divides by 1 + log(document length), BM25's length normalisation in spirit.
        let rows = sqlx::query(concat!(
            "SELECT c.id, ts_rank_cd(c.lexical_tsv, $1::tsquery, 1)::float8 AS score FROM chunks c ",
            "WHERE c.lexical_tsv @@ $1::tsquery AND ",
            chunk_scope!("2", "3", "5"),
            " ORDER BY score DESC, c.id LIMIT $4"
        ))
        .bind(query)
        .bind(&scope.project_ids)
        .bind(&scope.languages)
        .bind(limit)
        .bind(&scope.kinds)
        .fetch_all(&self.pool)
        .await
        .map_err(db_err)?;
        rows.iter()
            .map(|row| Ok(ScoredChunk { chunk_id: col(row, "id")?, score: col(row, "score")? }))
            .collect()
    }

    async fn symbol_search(&self, query: &str, scope: &SearchScope, limit: i64) -> Result<Vec<SymbolView>> {
        // ASCII case folding, as the SQLite backend does.
        let q = query.trim().to_ascii_lowercase();
        if q.is_empty() || scope.project_ids.is_empty() || limit <= 0 {
            return Ok(Vec::new());
        }
        let prefix = format!("{}%", like_escape(&q));
        // Three passes, each filling what the previous left: exact, prefix, substring; within a
        // pass, name matches before qualified-name matches, exported first, shorter first. Ties
        // sort in byte order (COLLATE "C"), as SQLite does.
        let phases = [
            (
                "(lower(s.name) = $1 OR lower(s.qualified_name) = $1)",
                "(lower(s.name) = $1) DESC, s.exported DESC, length(s.qualified_name), s.qualified_name COLLATE \"C\"",
            ),
            (
                "(lower(s.name) LIKE $2 OR lower(s.qualified_name) LIKE $2)",
                "(lower(s.name) LIKE $2) DESC, s.exported DESC, length(s.name), s.name COLLATE \"C\"",
            ),
            (
                "(strpos(lower(s.name), $1) > 0 OR strpos(lower(s.qualified_name), $1) > 0)",
                "(strpos(lower(s.name), $1) > 0) DESC, s.exported DESC, length(s.name), s.name COLLATE \"C\"",
            ),
        ];
        let mut out: Vec<SymbolView> = Vec::new();
        for (condition, order) in phases {
            let remaining = limit - out.len() as i64;
            if remaining <= 0 {
                break;
            }
            let seen: Vec<i64> = out.iter().map(|s| s.id).collect();
            let sql = format!(
                "{} WHERE {condition} AND {} \
                 AND NOT (s.id = ANY($5::int8[])) \
                 ORDER BY {order}, f.path COLLATE \"C\", s.id LIMIT $6",
                symbol_view_select!(),
                symbol_scope!("3", "4", "7"),
            );
            let rows = sqlx::query(&sql)
                .bind(&q)
                .bind(&prefix)
                .bind(&scope.project_ids)
                .bind(&scope.languages)
                .bind(&seen)
                .bind(remaining)
                .bind(&scope.kinds)
                .fetch_all(&self.pool)
                .await
                .map_err(db_err)?;
            for row in &rows {
                out.push(symbol_view_from_row(row)?);
            }
        }
        let remaining = limit - out.len() as i64;
        let Some(fuzzy) = Fuzzy::new(&q).filter(|_| remaining > 0) else { return Ok(out) };
        // Candidates for typos, the same list as SQLite reads: names starting with the query's
        // first character (an index range through text_pattern_ops), of a length the allowed
        // distance can reach, in byte order; ranked in Rust.
        let (shortest, longest) = fuzzy.lengths();
        // Names and ids only: the distance test needs nothing else, and most candidates fail it.
        let sql = format!(
            "SELECT s.id, s.name FROM symbols s JOIN files f ON f.id = s.file_id \
             WHERE lower(s.name) LIKE $1 AND length(s.name) BETWEEN $2 AND $3 \
             AND {} AND NOT (s.id = ANY($7::int8[])) \
             ORDER BY lower(s.name) COLLATE \"C\", s.name COLLATE \"C\", f.path COLLATE \"C\", s.id LIMIT $8",
            symbol_scope!("4", "5", "6"),
        );
        let seen: Vec<i64> = out.iter().map(|s| s.id).collect();
        let names: Vec<(i64, String)> = sqlx::query_as(&sql)
            .bind(format!("{}%", like_escape(&fuzzy.first())))
            .bind(shortest as i32)
            .bind(longest as i32)
            .bind(&scope.project_ids)
            .bind(&scope.languages)
            .bind(&scope.kinds)
            .bind(&seen)
            .bind(fuzzy::MAX_CANDIDATES)
            .fetch_all(&self.pool)
            .await
            .map_err(db_err)?;
        let close = fuzzy.within(names.iter().map(|(id, n)| (*id, n.as_str())));
        if close.is_empty() {
            return Ok(out);
        }
        let rows = sqlx::query(concat!(symbol_view_select!(), " WHERE s.id = ANY($1::int8[])"))
            .bind(&close)
            .fetch_all(&self.pool)
            .await
            .map_err(db_err)?;
        let candidates = rows.iter().map(symbol_view_from_row).collect::<Result<Vec<_>>>()?;
        out.extend(fuzzy.rank(candidates, remaining as usize));
        Ok(out)
    }

    async fn chunks(&self, ids: &[i64]) -> Result<Vec<ChunkView>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        // In the order given.
        let rows = sqlx::query(concat!(
            "SELECT v.* FROM unnest($1::int8[]) WITH ORDINALITY AS j(id, ord) JOIN (",
            chunk_view_select!(),
            ") v ON v.id = j.id ORDER BY j.ord"
        ))
        .bind(ids)
        .fetch_all(&self.pool)
        .await
        .map_err(db_err)?;
        rows.iter().map(chunk_from_row).collect()
    }

    async fn symbol_chunk_ids(&self, symbol_ids: &[i64]) -> Result<Vec<(i64, i64)>> {
        if symbol_ids.is_empty() {
            return Ok(Vec::new());
        }
        let rows = sqlx::query(
            "SELECT s.id AS symbol_id, (SELECT c.id FROM chunks c WHERE c.file_id = s.file_id \
             AND c.start_line <= s.start_line AND c.end_line >= s.start_line ORDER BY c.ordinal LIMIT 1) AS chunk_id \
             FROM symbols s WHERE s.id = ANY($1)",
        )
        .bind(symbol_ids)
        .fetch_all(&self.pool)
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
            " WHERE f.project_id = $1 AND f.path = $2 AND c.start_line <= $3 AND c.end_line >= $3 ",
            "ORDER BY c.ordinal LIMIT 1"
        ))
        .bind(project_id)
        .bind(path)
        .bind(line)
        .fetch_optional(&self.pool)
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
        // UNION drops repeated (file, distance) pairs and the walk stops at the depth, so cycles
        // terminate; the minimum distance per file is taken at the end. No shortest path is longer
        // than the project has files, so the depth is capped there (the maintained counter, not a
        // count), which bounds the walk by edges x files however large a depth is asked for.
        let step = if reverse {
            "SELECT i.file_id, w.distance + 1 FROM walk w JOIN imports i ON i.resolved_file_id = w.file_id \
             WHERE w.distance < (SELECT d FROM cap)"
        } else {
            "SELECT i.resolved_file_id, w.distance + 1 FROM walk w JOIN imports i ON i.file_id = w.file_id \
             WHERE w.distance < (SELECT d FROM cap) AND i.resolved_file_id IS NOT NULL"
        };
        let sql = format!(
            "WITH RECURSIVE \
               cap(d) AS (SELECT least($3::int8, total_files) FROM projects WHERE id = $1), \
               start(id) AS (SELECT id FROM files WHERE project_id = $1 AND path = $2), \
               walk(file_id, distance) AS (SELECT id, 0::int8 FROM start UNION {step}) \
             SELECT f.path, min(w.distance)::int8 AS distance FROM walk w JOIN files f ON f.id = w.file_id \
             WHERE w.file_id NOT IN (SELECT id FROM start) \
             GROUP BY f.path ORDER BY distance, f.path COLLATE \"C\""
        );
        let rows = sqlx::query(&sql)
            .bind(project_id)
            .bind(path)
            .bind(i64::from(depth))
            .fetch_all(&self.pool)
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
            "VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING ",
            user_cols!()
        ))
        .bind(&user.email)
        .bind(&user.username)
        .bind(&user.display_name)
        .bind(&user.github_username)
        .bind(user.is_active)
        .bind(user.is_admin)
        .bind(object_or_empty(&user.preferences))
        .fetch_one(&self.pool)
        .await
        .map_err(user_err)?;
        user_from_row(&row)
    }

    async fn user(&self, id: i64) -> Result<Option<User>> {
        let row = sqlx::query(concat!("SELECT ", user_cols!(), " FROM users WHERE id = $1"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(db_err)?;
        row.as_ref().map(user_from_row).transpose()
    }

    async fn list_users(&self, after: Option<i64>, limit: i64) -> Result<Vec<User>> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            user_cols!(),
            " FROM users WHERE ($1::int8 IS NULL OR id > $1) ORDER BY id LIMIT $2"
        ))
        .bind(after)
        .bind(limit.max(0))
        .fetch_all(&self.pool)
        .await
        .map_err(db_err)?;
        rows.iter().map(user_from_row).collect()
    }

    async fn update_user(&self, id: i64, update: &NewUser) -> Result<User> {
        let row = sqlx::query(concat!(
            "UPDATE users SET email = $2, username = $3, display_name = $4, github_username = $5, ",
            "is_active = $6, is_admin = $7, preferences = $8 WHERE id = $1 RETURNING ",
            user_cols!()
        ))
        .bind(id)
        .bind(&update.email)
        .bind(&update.username)
        .bind(&update.display_name)
        .bind(&update.github_username)
        .bind(update.is_active)
        .bind(update.is_admin)
        .bind(object_or_empty(&update.preferences))
        .fetch_optional(&self.pool)
        .await
        .map_err(user_err)?;
        let row = row.ok_or_else(|| StoreError::NotFound(format!("user {id}")))?;
        user_from_row(&row)
    }

    async fn delete_user(&self, id: i64) -> Result<bool> {
        let done = sqlx::query("DELETE FROM users WHERE id = $1")
            .bind(id)
            .execute(&self.pool)
            .await
            .map_err(db_err)?;
        Ok(done.rows_affected() > 0)
    }

    async fn token(&self, id: i64) -> Result<Option<ApiToken>> {
        let row = sqlx::query(concat!("SELECT ", token_cols!(), " FROM api_tokens WHERE id = $1"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(db_err)?;
        row.as_ref().map(token_from_row).transpose()
    }

    async fn set_member(&self, project_id: i64, user_id: i64, role: &str) -> Result<Member> {
        let row = sqlx::query(
            "INSERT INTO project_members (project_id, user_id, role) VALUES ($1, $2, $3) \
             ON CONFLICT (project_id, user_id) DO UPDATE SET role = excluded.role \
             RETURNING project_id, user_id, role, created_at",
        )
        .bind(project_id)
        .bind(user_id)
        .bind(role)
        .fetch_one(&self.pool)
        .await
        .map_err(db_err)?;
        member_from_row(&row)
    }

    async fn remove_member(&self, project_id: i64, user_id: i64) -> Result<bool> {
        let done = sqlx::query("DELETE FROM project_members WHERE project_id = $1 AND user_id = $2")
            .bind(project_id)
            .bind(user_id)
            .execute(&self.pool)
            .await
            .map_err(db_err)?;
        Ok(done.rows_affected() > 0)
    }

    async fn list_members(&self, project_id: i64) -> Result<Vec<Member>> {
        let rows = sqlx::query(
            "SELECT project_id, user_id, role, created_at FROM project_members WHERE project_id = $1 \
             ORDER BY user_id",
        )
        .bind(project_id)
        .fetch_all(&self.pool)
        .await
        .map_err(db_err)?;
        rows.iter().map(member_from_row).collect()
    }

    async fn create_task(&self, task: NewTask) -> Result<Task> {
        // The parent must be a task of the same project: checked in the same statement.
        let row = sqlx::query(concat!(
            "INSERT INTO tasks (project_id, parent_id, title, description, status, priority, assigned_agent_id, ",
            "created_by, completed_at) ",
            "SELECT $1, $2, $3, $4, $5, $6, $7, $8, CASE WHEN $5 IN ('done', 'cancelled') THEN ",
            "clock_timestamp()",
            " END WHERE $2::int8 IS NULL OR EXISTS (SELECT 1 FROM tasks WHERE id = $2 AND project_id IS NOT DISTINCT FROM $1) ",
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
        .fetch_optional(&self.pool)
        .await
        .map_err(db_err)?;
        let row =
            row.ok_or_else(|| StoreError::Invalid("the parent is not a task of the same project".into()))?;
        task_from_row(&row)
    }

    async fn task(&self, id: i64) -> Result<Option<Task>> {
        let row = sqlx::query(concat!("SELECT ", task_cols!(), " FROM tasks WHERE id = $1"))
            .bind(id)
            .fetch_optional(&self.pool)
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
            " FROM tasks WHERE project_id = $1 AND ($2::text IS NULL OR status = $2) AND ($3::int8 IS NULL OR parent_id = $3) ",
            "AND ($4::int8 IS NULL OR id > $4) ORDER BY id LIMIT $5"
        ))
        .bind(project_id)
        .bind(&filter.status)
        .bind(filter.parent_id)
        .bind(after)
        .bind(limit.max(0))
        .fetch_all(&self.pool)
        .await
        .map_err(db_err)?;
        rows.iter().map(task_from_row).collect()
    }

    async fn update_task(&self, id: i64, update: &TaskUpdate) -> Result<Task> {
        let row = sqlx::query(concat!(
            "UPDATE tasks SET title = $2, description = $3, status = $4, priority = $5, assigned_agent_id = $6, ",
            "completed_at = CASE WHEN $4 IN ('done', 'cancelled') THEN coalesce(completed_at, ",
            "clock_timestamp()",
            ") END WHERE id = $1 RETURNING ",
            task_cols!()
        ))
        .bind(id)
        .bind(&update.title)
        .bind(&update.description)
        .bind(&update.status)
        .bind(update.priority)
        .bind(update.assigned_agent_id)
        .fetch_optional(&self.pool)
        .await
        .map_err(db_err)?;
        let row = row.ok_or_else(|| StoreError::NotFound(format!("task {id}")))?;
        task_from_row(&row)
    }

    async fn delete_task(&self, id: i64) -> Result<bool> {
        let done = sqlx::query("DELETE FROM tasks WHERE id = $1")
            .bind(id)
            .execute(&self.pool)
            .await
            .map_err(db_err)?;
        Ok(done.rows_affected() > 0)
    }

    async fn create_agent(&self, agent: NewAgent) -> Result<Agent> {
        let row = sqlx::query(concat!(
            "INSERT INTO agents (name, kind, model, config, is_active) VALUES ($1, $2, $3, $4, $5) RETURNING ",
            agent_cols!()
        ))
        .bind(&agent.name)
        .bind(&agent.kind)
        .bind(&agent.model)
        .bind(object_or_empty(&agent.config))
        .bind(agent.is_active)
        .fetch_one(&self.pool)
        .await
        .map_err(|e| agent_err(e, &agent.name))?;
        agent_from_row(&row)
    }

    async fn agent(&self, id: i64) -> Result<Option<Agent>> {
        let row = sqlx::query(concat!("SELECT ", agent_cols!(), " FROM agents WHERE id = $1"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(db_err)?;
        row.as_ref().map(agent_from_row).transpose()
    }

    async fn list_agents(&self, after: Option<i64>, limit: i64) -> Result<Vec<Agent>> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            agent_cols!(),
            " FROM agents WHERE ($1::int8 IS NULL OR id > $1) ORDER BY id LIMIT $2"
        ))
        .bind(after)
        .bind(limit.max(0))
        .fetch_all(&self.pool)
        .await
        .map_err(db_err)?;
        rows.iter().map(agent_from_row).collect()
    }

    async fn update_agent(&self, id: i64, update: &NewAgent) -> Result<Agent> {
        let row = sqlx::query(concat!(
            "UPDATE agents SET name = $2, kind = $3, model = $4, config = $5, is_active = $6 WHERE id = $1 ",
            "RETURNING ",
            agent_cols!()
        ))
        .bind(id)
        .bind(&update.name)
        .bind(&update.kind)
        .bind(&update.model)
        .bind(object_or_empty(&update.config))
        .bind(update.is_active)
        .fetch_optional(&self.pool)
        .await
        .map_err(|e| agent_err(e, &update.name))?;
        let row = row.ok_or_else(|| StoreError::NotFound(format!("agent {id}")))?;
        agent_from_row(&row)
    }

    async fn delete_agent(&self, id: i64) -> Result<bool> {
        let done = sqlx::query("DELETE FROM agents WHERE id = $1")
            .bind(id)
            .execute(&self.pool)
            .await
            .map_err(db_err)?;
        Ok(done.rows_affected() > 0)
    }

    async fn create_execution(&self, execution: NewExecution) -> Result<Execution> {
        let id: i64 = sqlx::query_scalar(concat!(
            "INSERT INTO executions (task_id, agent_id, status, input_tokens, output_tokens, cost_usd, ",
            "duration_ms, error, finished_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, ",
            "CASE WHEN $3 <> 'running' THEN ",
            "clock_timestamp()",
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
        .fetch_one(&self.pool)
        .await
        .map_err(db_err)?;
        self.execution(id).await?.ok_or_else(|| StoreError::NotFound(format!("execution {id}")))
    }

    async fn execution(&self, id: i64) -> Result<Option<Execution>> {
        let row = sqlx::query(concat!(execution_select!(), " WHERE e.id = $1"))
            .bind(id)
            .fetch_optional(&self.pool)
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
            " WHERE ($1::int8 IS NULL OR e.task_id = $1) AND ($2::int8 IS NULL OR e.agent_id = $2) ",
            "AND ($3::int8[] IS NULL OR t.project_id = ANY($3)) ",
            "AND ($4::int8 IS NULL OR e.id > $4) ORDER BY e.id LIMIT $5"
        ))
        .bind(task_id)
        .bind(agent_id)
        .bind(projects)
        .bind(after)
        .bind(limit.max(0))
        .fetch_all(&self.pool)
        .await
        .map_err(db_err)?;
        rows.iter().map(execution_from_row).collect()
    }

    async fn update_execution(&self, id: i64, update: &NewExecution) -> Result<Execution> {
        let done = sqlx::query(concat!(
            "UPDATE executions SET status = $2, input_tokens = $3, output_tokens = $4, cost_usd = $5, ",
            "duration_ms = $6, error = $7, finished_at = CASE WHEN $2 <> 'running' THEN coalesce(finished_at, ",
            "clock_timestamp()",
            ") END WHERE id = $1"
        ))
        .bind(id)
        .bind(&update.status)
        .bind(update.input_tokens)
        .bind(update.output_tokens)
        .bind(update.cost_usd)
        .bind(update.duration_ms)
        .bind(&update.error)
        .execute(&self.pool)
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
            "issues, suggestions) SELECT $1, $2, $3, $4, $5, $6, $7, $8 ",
            "WHERE EXISTS (SELECT 1 FROM commits WHERE id = $2 AND project_id = $1) RETURNING ",
            review_cols!()
        ))
        .bind(review.project_id)
        .bind(review.commit_id)
        .bind(review.reviewer_agent_id)
        .bind(review.reviewer_user_id)
        .bind(review.score)
        .bind(&review.summary)
        .bind(&review.issues)
        .bind(&review.suggestions)
        .fetch_optional(&self.pool)
        .await
        .map_err(db_err)?;
        let row = row.ok_or_else(|| StoreError::Invalid("the commit is not one of the project's".into()))?;
        review_from_row(&row)
    }

    async fn review(&self, id: i64) -> Result<Option<Review>> {
        let row = sqlx::query(concat!("SELECT ", review_cols!(), " FROM reviews WHERE id = $1"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(db_err)?;
        row.as_ref().map(review_from_row).transpose()
    }

    async fn list_reviews(&self, project_id: i64, after: Option<i64>, limit: i64) -> Result<Vec<Review>> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            review_cols!(),
            " FROM reviews WHERE project_id = $1 AND ($2::int8 IS NULL OR id > $2) ORDER BY id LIMIT $3"
        ))
        .bind(project_id)
        .bind(after)
        .bind(limit.max(0))
        .fetch_all(&self.pool)
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
             FROM activity_log WHERE project_id = ANY($1) AND ($2::int8 IS NULL OR id < $2) \
             ORDER BY id DESC LIMIT $3",
        )
        .bind(projects)
        .bind(before_id)
        .bind(limit)
        .fetch_all(&self.pool)
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
            "INSERT INTO index_runs (project_id, \"trigger\", paths, commit_sha) VALUES ($1, $2, $3, $4) RETURNING ",
            run_cols!()
        ))
        .bind(project_id)
        .bind(trigger)
        .bind(paths)
        .bind(commit)
        .fetch_one(&self.pool)
        .await
        .map_err(db_err)?;
        run_from_row(&row)
    }

    async fn lease_run(&self, owner: &str, lease_secs: i64) -> Result<Option<IndexRun>> {
        check_lease(lease_secs)?;
        // SKIP LOCKED: a run another worker is taking right now is passed over, not waited for.
        let row = sqlx::query(concat!(
            "UPDATE index_runs SET status = 'running', lease_owner = $1, ",
            "lease_expires_at = clock_timestamp() + make_interval(secs => $2), ",
            "started_at = coalesce(started_at, clock_timestamp()) ",
            "WHERE id = (SELECT id FROM index_runs WHERE status = 'queued' ",
            "OR (status = 'running' AND lease_expires_at <= clock_timestamp()) ",
            "ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED) RETURNING ",
            run_cols!()
        ))
        .bind(owner)
        .bind(lease_secs as f64)
        .fetch_optional(&self.pool)
        .await
        .map_err(db_err)?;
        row.as_ref().map(run_from_row).transpose()
    }

    async fn claim_run(&self, run_id: i64, owner: &str, lease_secs: i64) -> Result<bool> {
        check_lease(lease_secs)?;
        let done = sqlx::query(
            "UPDATE index_runs SET status = 'running', lease_owner = $2, \
             lease_expires_at = clock_timestamp() + make_interval(secs => $3), \
             started_at = coalesce(started_at, clock_timestamp()) WHERE id = $1 AND status = 'queued'",
        )
        .bind(run_id)
        .bind(owner)
        .bind(lease_secs as f64)
        .execute(&self.pool)
        .await
        .map_err(db_err)?;
        Ok(done.rows_affected() > 0)
    }

    async fn heartbeat_run(&self, run_id: i64, owner: &str, lease_secs: i64) -> Result<bool> {
        check_lease(lease_secs)?;
        let done = sqlx::query(
            "UPDATE index_runs SET lease_expires_at = clock_timestamp() + make_interval(secs => $3) \
             WHERE id = $1 AND lease_owner = $2 AND status = 'running'",
        )
        .bind(run_id)
        .bind(owner)
        .bind(lease_secs as f64)
        .execute(&self.pool)
        .await
        .map_err(db_err)?;
        Ok(done.rows_affected() > 0)
    }

    async fn update_run_counts(&self, run_id: i64, counts: &RunCounts) -> Result<()> {
        let done = sqlx::query(
            "UPDATE index_runs SET files_indexed = $1, files_skipped = $2, files_deleted = $3, chunks = $4, \
             chunks_embedded = $5, embedding_cache_hits = $6, tokens_embedded = $7 WHERE id = $8",
        )
        .bind(counts.files_indexed)
        .bind(counts.files_skipped)
        .bind(counts.files_deleted)
        .bind(counts.chunks)
        .bind(counts.chunks_embedded)
        .bind(counts.embedding_cache_hits)
        .bind(counts.tokens_embedded)
        .bind(run_id)
        .execute(&self.pool)
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
        let mut tx = self.pool.begin().await.map_err(db_err)?;
        let done = sqlx::query(
            "UPDATE index_runs SET status = $1, error = $2, finished_at = clock_timestamp(), \
             lease_owner = NULL, lease_expires_at = NULL WHERE id = $3 AND status IN ('queued', 'running')",
        )
        .bind(status.name())
        .bind(error)
        .bind(run_id)
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
        if done.rows_affected() == 0 {
            let current: Option<String> = sqlx::query_scalar("SELECT status FROM index_runs WHERE id = $1")
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
             WHERE id = $1 AND lease_owner = $2 AND status = 'running'",
        )
        .bind(run_id)
        .bind(owner)
        .execute(&self.pool)
        .await
        .map_err(db_err)?;
        Ok(done.rows_affected() > 0)
    }

    async fn list_runs(&self, project_id: i64, before: Option<i64>, limit: i64) -> Result<Vec<IndexRun>> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            run_cols!(),
            " FROM index_runs WHERE project_id = $1 AND ($2::bigint IS NULL OR id < $2) ORDER BY id DESC LIMIT $3"
        ))
        .bind(project_id)
        .bind(before)
        .bind(limit.max(0))
        .fetch_all(&self.pool)
        .await
        .map_err(db_err)?;
        rows.iter().map(run_from_row).collect()
    }

    async fn active_runs(&self) -> Result<i64> {
        sqlx::query_scalar("SELECT count(*) FROM index_runs WHERE status IN ('queued', 'running')")
            .fetch_one(&self.pool)
            .await
            .map_err(db_err)
    }

    async fn list_files(&self, project_id: i64, after: Option<&str>, limit: i64) -> Result<Vec<FileView>> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            file_cols!(),
            " FROM files WHERE project_id = $1 AND ($2::text IS NULL OR path COLLATE \"C\" > $2) ORDER BY path COLLATE \"C\" LIMIT $3"
        ))
        .bind(project_id)
        .bind(after)
        .bind(limit.max(0))
        .fetch_all(&self.pool)
        .await
        .map_err(db_err)?;
        rows.iter().map(file_view_from_row).collect()
    }

    async fn file_detail(&self, project_id: i64, path: &str) -> Result<Option<FileDetail>> {
        let mut conn = self.pool.acquire().await.map_err(db_err)?;
        let row =
            sqlx::query(concat!("SELECT ", file_cols!(), " FROM files WHERE project_id = $1 AND path = $2"))
                .bind(project_id)
                .bind(path)
                .fetch_optional(&mut *conn)
                .await
                .map_err(db_err)?;
        let Some(row) = row else { return Ok(None) };
        let file = file_view_from_row(&row)?;
        let symbols =
            sqlx::query(concat!(symbol_view_select!(), " WHERE s.file_id = $1 ORDER BY s.start_byte, s.id"))
                .bind(file.id)
                .fetch_all(&mut *conn)
                .await
                .map_err(db_err)?
                .iter()
                .map(symbol_view_from_row)
                .collect::<Result<Vec<_>>>()?;
        let imports = sqlx::query(
            "SELECT specifier, resolved_path, external_package, kind, names, line FROM imports \
             WHERE file_id = $1 ORDER BY line, id",
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
                names: col(row, "names")?,
                line: col(row, "line")?,
            })
        })
        .collect::<Result<Vec<_>>>()?;
        Ok(Some(FileDetail { file, symbols, imports }))
    }

    async fn run(&self, run_id: i64) -> Result<Option<IndexRun>> {
        let row = sqlx::query(concat!("SELECT ", run_cols!(), " FROM index_runs WHERE id = $1"))
            .bind(run_id)
            .fetch_optional(&self.pool)
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
            "INSERT INTO index_run_events (run_id, phase, event, message, data) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(run_id)
        .bind(phase)
        .bind(event)
        .bind(message)
        .bind(&data)
        .execute(&self.pool)
        .await
        .map_err(db_err)?;
        Ok(())
    }

    async fn run_events(&self, run_id: i64) -> Result<Vec<RunEvent>> {
        let rows = sqlx::query(
            "SELECT id, run_id, phase, event, message, data, created_at FROM index_run_events \
             WHERE run_id = $1 ORDER BY id",
        )
        .bind(run_id)
        .fetch_all(&self.pool)
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
                    data: col(row, "data")?,
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
        let mut tx = self.pool.begin().await.map_err(db_err)?;
        let mut inserted = 0;
        for c in commits {
            let done = sqlx::query(concat!(
                "INSERT INTO commits (project_id, sha, parents, message, author_name, author_email, branch, ",
                "committed_at, files_changed, additions, deletions) ",
                "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) ",
                "ON CONFLICT (project_id, sha) DO NOTHING"
            ))
            .bind(project_id)
            .bind(&c.sha)
            .bind(&c.parents)
            .bind(&c.message)
            .bind(&c.author_name)
            .bind(&c.author_email)
            .bind(&c.branch)
            .bind(c.committed_at)
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
        let rows = sqlx::query(concat!(
            "SELECT id, project_id, sha, parents, message, author_name, author_email, branch, committed_at, ",
            "files_changed, additions, deletions, created_at FROM commits WHERE project_id = $1 ",
            "ORDER BY committed_at DESC NULLS LAST, id DESC LIMIT $2"
        ))
        .bind(project_id)
        .bind(limit.max(0))
        .fetch_all(&self.pool)
        .await
        .map_err(db_err)?;
        rows.iter().map(commit_from_row).collect()
    }

    async fn project_by_root(&self, root: &str) -> Result<Option<Project>> {
        let row = sqlx::query(concat!(
            "SELECT ",
            project_cols!(),
            " FROM projects WHERE root_path = $1 ORDER BY id LIMIT 1"
        ))
        .bind(root)
        .fetch_optional(&self.pool)
        .await
        .map_err(db_err)?;
        row.as_ref().map(project_from_row).transpose()
    }
}

fn commit_from_row(row: &PgRow) -> Result<Commit> {
    Ok(Commit {
        id: col(row, "id")?,
        project_id: col(row, "project_id")?,
        sha: col(row, "sha")?,
        parents: col(row, "parents")?,
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

/// Inserts a file's symbols with one statement. Their ids are drawn from the sequence first, so
/// `parent` (an index into the same list) becomes `parent_id` in the same INSERT.
async fn insert_symbols(
    conn: &mut PgConnection,
    project_id: i64,
    file_id: i64,
    write: &FileWrite,
) -> Result<()> {
    let n = write.symbols.len() as i64;
    let ids: Vec<i64> = sqlx::query_scalar(
        "SELECT nextval(pg_get_serial_sequence('symbols', 'id')) FROM generate_series(1, $1::int8)",
    )
    .bind(n)
    .fetch_all(&mut *conn)
    .await
    .map_err(db_err)?;
    let s = &write.symbols;
    let parents: Vec<Option<i64>> = s.iter().map(|s| s.parent.and_then(|p| ids.get(p).copied())).collect();
    sqlx::query(
        "INSERT INTO symbols (id, file_id, project_id, parent_id, name, qualified_name, kind, signature, \
         start_line, end_line, start_byte, end_byte, exported) \
         SELECT u.id, $1, $2, u.parent_id, u.name, u.qualified_name, u.kind, u.signature, u.start_line, \
                u.end_line, u.start_byte, u.end_byte, u.exported \
         FROM unnest($3::int8[], $4::int8[], $5::text[], $6::text[], $7::text[], $8::text[], $9::int4[], \
                     $10::int4[], $11::int8[], $12::int8[], $13::bool[]) \
              AS u(id, parent_id, name, qualified_name, kind, signature, start_line, end_line, start_byte, \
                   end_byte, exported)",
    )
    .bind(file_id)
    .bind(project_id)
    .bind(&ids)
    .bind(&parents)
    .bind(s.iter().map(|s| s.name.as_str()).collect::<Vec<_>>())
    .bind(s.iter().map(|s| s.qualified_name.as_str()).collect::<Vec<_>>())
    .bind(s.iter().map(|s| s.kind.as_str()).collect::<Vec<_>>())
    .bind(s.iter().map(|s| s.signature.as_str()).collect::<Vec<_>>())
    .bind(s.iter().map(|s| s.start_line).collect::<Vec<_>>())
    .bind(s.iter().map(|s| s.end_line).collect::<Vec<_>>())
    .bind(s.iter().map(|s| s.start_byte).collect::<Vec<_>>())
    .bind(s.iter().map(|s| s.end_byte).collect::<Vec<_>>())
    .bind(s.iter().map(|s| s.exported).collect::<Vec<_>>())
    .execute(&mut *conn)
    .await
    .map_err(db_err)?;
    Ok(())
}

/// Inserts a file's import edges with one statement. The per-edge name lists travel as JSON,
/// since PostgreSQL arrays cannot be ragged.
async fn insert_imports(
    conn: &mut PgConnection,
    project_id: i64,
    file_id: i64,
    write: &FileWrite,
) -> Result<()> {
    let i = &write.imports;
    let names: Vec<serde_json::Value> = i.iter().map(|imp| serde_json::json!(imp.names)).collect();
    sqlx::query(
        "INSERT INTO imports (file_id, project_id, specifier, resolved_path, external_package, kind, names, line) \
         SELECT $1, $2, u.specifier, u.resolved_path, u.external_package, u.kind, \
                ARRAY(SELECT jsonb_array_elements_text(u.names)), u.line \
         FROM unnest($3::text[], $4::text[], $5::text[], $6::text[], $7::jsonb[], $8::int4[]) WITH ORDINALITY \
              AS u(specifier, resolved_path, external_package, kind, names, line, ord) \
         ORDER BY u.ord",
    )
    .bind(file_id)
    .bind(project_id)
    .bind(i.iter().map(|imp| imp.specifier.as_str()).collect::<Vec<_>>())
    .bind(i.iter().map(|imp| imp.resolved_path.as_deref()).collect::<Vec<_>>())
    .bind(i.iter().map(|imp| imp.external_package.as_deref()).collect::<Vec<_>>())
    .bind(i.iter().map(|imp| imp.kind.as_str()).collect::<Vec<_>>())
    .bind(&names)
    .bind(i.iter().map(|imp| imp.line).collect::<Vec<_>>())
    .execute(&mut *conn)
    .await
    .map_err(db_err)?;
    Ok(())
}

/// The tsvector of each lexical document, in the binary form COPY sends: computed here, or by
/// the server (`semdex_lexical_tsvector`, one statement for them all) for the documents
/// [`LexicalTsvector::new`] leaves to it.
async fn lexical_tsvectors<'d>(
    conn: &mut PgConnection,
    docs: impl Iterator<Item = &'d str>,
) -> Result<Vec<Vec<u8>>> {
    let mut out = Vec::new();
    let mut by_server: Vec<(usize, &str)> = Vec::new();
    for (i, doc) in docs.enumerate() {
        match LexicalTsvector::new(doc) {
            Some(tsv) => {
                let mut bytes = Vec::with_capacity(tsv.binary_len());
                tsv.write_binary(&mut bytes);
                out.push(bytes);
            }
            None => {
                by_server.push((i, doc));
                out.push(Vec::new());
            }
        }
    }
    if !by_server.is_empty() {
        let docs: Vec<&str> = by_server.iter().map(|(_, doc)| *doc).collect();
        let computed: Vec<Vec<u8>> = sqlx::query_scalar(
            "SELECT tsvectorsend(semdex_lexical_tsvector(d)) FROM unnest($1::text[]) WITH ORDINALITY AS u(d, n) \
             ORDER BY n",
        )
        .bind(&docs)
        .fetch_all(&mut *conn)
        .await
        .map_err(db_err)?;
        for ((i, _), bytes) in by_server.into_iter().zip(computed) {
            out[i] = bytes;
        }
    }
    Ok(out)
}

/// The chunk columns a file's write fills, in the order both [`insert_chunks`] and
/// [`copy_chunks`] give them.
const CHUNK_COLUMNS: &str = "file_id, project_id, ordinal, content, content_hash, start_line, end_line, \
     start_byte, end_byte, symbol_path, kind, language, token_count, commit_sha, index_run_id, lexical, lexical_tsv";

/// Writes a file's chunks with one multi-row `INSERT ... VALUES`, prepared once per connection
/// for each row count (sqlx caches it by its text), the file's columns bound once. Each tsvector
/// is bound in binary, or null for a document [`LexicalTsvector::new`] leaves to the server, which
/// computes it in the same statement. Measured faster here than one `INSERT ... SELECT FROM
/// unnest(...)` of arrays and than COPY (benches/results/store.md, 2026-11-27).
async fn insert_chunks(
    conn: &mut PgConnection,
    project_id: i64,
    file_id: i64,
    write: &FileWrite,
    run_id: Option<i64>,
    commit: Option<&str>,
) -> Result<()> {
    use std::fmt::Write as _;

    // $1 to $4 are the file's (file_id, project_id, commit_sha, index_run_id); then 13 per row:
    // ordinal to token_count (11), lexical, and its tsvector or null.
    const SHARED: usize = 4;
    const PER_ROW: usize = 13;
    let mut sql = String::with_capacity(200 + write.chunks.len() * 120);
    let _ = write!(sql, "INSERT INTO chunks ({CHUNK_COLUMNS}) VALUES ");
    for row in 0..write.chunks.len() {
        let p = SHARED + row * PER_ROW;
        sql.push_str(if row == 0 { "($1, $2" } else { ", ($1, $2" });
        for i in 1..=11 {
            let _ = write!(sql, ", ${}", p + i);
        }
        let (lexical, tsv) = (p + 12, p + 13);
        let _ = write!(sql, ", $3, $4, ${lexical}, coalesce(${tsv}, semdex_lexical_tsvector(${lexical})))");
    }
    let mut query = sqlx::query(&sql).bind(file_id).bind(project_id).bind(commit).bind(run_id);
    for c in &write.chunks {
        query = query
            .bind(c.ordinal)
            .bind(&c.content)
            .bind(&c.content_hash)
            .bind(c.start_line)
            .bind(c.end_line)
            .bind(c.start_byte)
            .bind(c.end_byte)
            .bind(&c.symbol_path)
            .bind(&c.kind)
            .bind(&c.language)
            .bind(c.token_count)
            .bind(&c.lexical)
            .bind(LexicalTsvector::new(&c.lexical));
    }
    query.execute(&mut *conn).await.map_err(db_err)?;
    Ok(())
}

/// Writes a file's chunks with one binary COPY, their tsvectors included.
async fn copy_chunks(
    conn: &mut PgConnection,
    project_id: i64,
    file_id: i64,
    write: &FileWrite,
    run_id: Option<i64>,
    commit: Option<&str>,
) -> Result<()> {
    let tsvectors = lexical_tsvectors(&mut *conn, write.chunks.iter().map(|c| c.lexical.as_str())).await?;
    let mut copy = conn
        .copy_in_raw(&format!("COPY chunks ({CHUNK_COLUMNS}) FROM STDIN (FORMAT binary)"))
        .await
        .map_err(db_err)?;
    let mut buf = CopyBuf::new();
    for (c, tsv) in write.chunks.iter().zip(&tsvectors) {
        buf.row(17);
        buf.i64(file_id);
        buf.i64(project_id);
        buf.i32(c.ordinal);
        buf.text(&c.content);
        buf.text(&c.content_hash);
        buf.i32(c.start_line);
        buf.i32(c.end_line);
        buf.i64(c.start_byte);
        buf.i64(c.end_byte);
        buf.text(&c.symbol_path);
        buf.text(&c.kind);
        buf.text(&c.language);
        buf.i32(c.token_count);
        buf.opt_text(commit);
        buf.opt_i64(run_id);
        buf.text(&c.lexical);
        buf.field(tsv);
        if buf.len() >= COPY_CHUNK_BYTES {
            copy.send(buf.take()).await.map_err(db_err)?;
        }
    }
    copy.send(buf.finish()).await.map_err(db_err)?;
    copy.finish().await.map_err(db_err)?;
    Ok(())
}

/// Inserts vectors with one `INSERT ... SELECT FROM unnest(...) ON CONFLICT DO NOTHING`, in the
/// order given. Returns how many were new.
async fn insert_embedding_rows<'e>(
    conn: impl sqlx::PgExecutor<'e>,
    model_id: i64,
    vectors: &[(String, Vec<f32>)],
    modes: &[InputMode],
) -> Result<u64> {
    let inserted = sqlx::query(
        "INSERT INTO embeddings (model_id, content_hash, embedding, input_mode) \
         SELECT $1, u.content_hash, u.embedding, u.input_mode \
         FROM unnest($2::text[], $3::vector[], $4::text[]) AS u(content_hash, embedding, input_mode) \
         ON CONFLICT (model_id, content_hash) DO NOTHING",
    )
    .bind(model_id)
    .bind(vectors.iter().map(|(hash, _)| hash.as_str()).collect::<Vec<_>>())
    .bind(vectors.iter().map(|(_, v)| pgvector::Vector::from(v.clone())).collect::<Vec<_>>())
    .bind((0..vectors.len()).map(|i| modes.get(i).copied().unwrap_or_default().as_str()).collect::<Vec<_>>())
    .execute(conn)
    .await
    .map_err(db_err)?
    .rows_affected();
    Ok(inserted)
}

/// Sends vectors with one binary COPY (`sql`), in the order given: per row `lead(i)` (an
/// `int8`: the model id, or the position in the batch), the content hash, the vector (pgvector's
/// `vector` or `real[]`) and its input mode.
async fn copy_embedding_rows(
    conn: &mut PgConnection,
    sql: &str,
    vectors: &[(String, Vec<f32>)],
    modes: &[InputMode],
    as_vector: bool,
    lead: impl Fn(usize) -> i64,
) -> Result<()> {
    let mut copy = conn.copy_in_raw(sql).await.map_err(db_err)?;
    let mut buf = CopyBuf::new();
    for (i, (hash, vector)) in vectors.iter().enumerate() {
        buf.row(4);
        buf.i64(lead(i));
        buf.text(hash);
        if as_vector {
            buf.vector(vector)?;
        } else {
            buf.real_array(vector)?;
        }
        buf.text(modes.get(i).copied().unwrap_or_default().as_str());
        if buf.len() >= COPY_CHUNK_BYTES {
            copy.send(buf.take()).await.map_err(db_err)?;
        }
    }
    copy.send(buf.finish()).await.map_err(db_err)?;
    copy.finish().await.map_err(db_err)?;
    Ok(())
}

/// A buffer in PostgreSQL's binary COPY format: a header, then tuples of length-prefixed fields
/// in each type's binary send format, then a trailer.
struct CopyBuf {
    buf: Vec<u8>,
}

impl CopyBuf {
    const SIGNATURE: &'static [u8] = b"PGCOPY\n\xff\r\n\0";
    /// `real`'s type oid, written into binary arrays.
    const FLOAT4_OID: i32 = 700;

    fn new() -> CopyBuf {
        let mut buf = Vec::with_capacity(64 * 1024);
        buf.extend_from_slice(Self::SIGNATURE);
        buf.extend_from_slice(&0i32.to_be_bytes()); // flags
        buf.extend_from_slice(&0i32.to_be_bytes()); // header extension length
        CopyBuf { buf }
    }

    fn len(&self) -> usize {
        self.buf.len()
    }

    /// The bytes so far, leaving the buffer empty for more tuples.
    fn take(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.buf)
    }

    /// The remaining bytes with the trailer.
    fn finish(mut self) -> Vec<u8> {
        self.buf.extend_from_slice(&(-1i16).to_be_bytes());
        self.buf
    }

    fn row(&mut self, fields: i16) {
        self.buf.extend_from_slice(&fields.to_be_bytes());
    }

    fn field(&mut self, bytes: &[u8]) {
        // Field lengths are i32; a chunk's text is far below 2 GiB.
        self.buf.extend_from_slice(&(bytes.len() as i32).to_be_bytes());
        self.buf.extend_from_slice(bytes);
    }

    fn null(&mut self) {
        self.buf.extend_from_slice(&(-1i32).to_be_bytes());
    }

    fn text(&mut self, s: &str) {
        self.field(s.as_bytes());
    }

    fn opt_text(&mut self, s: Option<&str>) {
        match s {
            Some(s) => self.text(s),
            None => self.null(),
        }
    }

    fn i32(&mut self, v: i32) {
        self.field(&v.to_be_bytes());
    }

    fn i64(&mut self, v: i64) {
        self.field(&v.to_be_bytes());
    }

    fn opt_i64(&mut self, v: Option<i64>) {
        match v {
            Some(v) => self.i64(v),
            None => self.null(),
        }
    }

    /// pgvector's `vector` binary format: dimensions (i16), an unused i16, then the floats.
    fn vector(&mut self, v: &[f32]) -> Result<()> {
        let dims = i16::try_from(v.len())
            .map_err(|_| StoreError::Invalid(format!("a vector of {} dimensions is too long", v.len())))?;
        self.buf.extend_from_slice(&(4 + 4 * v.len() as i32).to_be_bytes());
        self.buf.extend_from_slice(&dims.to_be_bytes());
        self.buf.extend_from_slice(&0i16.to_be_bytes());
        for x in v {
            self.buf.extend_from_slice(&x.to_be_bytes());
        }
        Ok(())
    }

    /// A one-dimensional `real[]` without nulls: header (dimensions, has-nulls flag, element
    /// type, length, lower bound), then each element length-prefixed.
    fn real_array(&mut self, v: &[f32]) -> Result<()> {
        let len = i32::try_from(v.len())
            .ok()
            .filter(|n| *n <= (i32::MAX - 20) / 8)
            .ok_or_else(|| StoreError::Invalid(format!("a vector of {} dimensions is too long", v.len())))?;
        self.buf.extend_from_slice(&(20 + 8 * len).to_be_bytes());
        for word in [1i32, 0, Self::FLOAT4_OID, len, 1] {
            self.buf.extend_from_slice(&word.to_be_bytes());
        }
        for x in v {
            self.buf.extend_from_slice(&4i32.to_be_bytes());
            self.buf.extend_from_slice(&x.to_be_bytes());
        }
        Ok(())
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

fn check_lease(secs: i64) -> Result<()> {
    if !(0..=366 * 24 * 3600).contains(&secs) {
        return Err(StoreError::Invalid(format!("lease of {secs} seconds")));
    }
    Ok(())
}

/// The tsquery for a list of terms, in tsquery's input syntax so nothing is re-parsed: each
/// term lowercased and quoted as a lexeme (a term with spaces becomes a phrase of its words), a
/// trailing `*` kept as a prefix search, combined as `matching` says. Terms without a word
/// character are dropped, as the SQLite backend drops them. `None` when no term is left.
fn ts_query(terms: &[String], matching: TermMatch) -> Option<String> {
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
            let body = body.to_lowercase();
            // Longer than a lexeme may be: no document holds it.
            if body.split_whitespace().any(|word| word.len() >= 2048) {
                return None;
            }
            let mut phrase: Vec<String> = body
                .split_whitespace()
                .map(|word| format!("'{}'", word.replace('\\', "\\\\").replace('\'', "''")))
                .collect();
            if prefix && let Some(last) = phrase.last_mut() {
                last.push_str(":*");
            }
            Some(format!("({})", phrase.join(" <-> ")))
        })
        .collect();
    matching.query(&parts, " & ", " | ")
}

/// Maps a driver error to a typed store error. Messages name constraints and relations, never
/// SQL or values (PostgreSQL puts values in the error's detail, which is not used here).
fn db_err(err: sqlx::Error) -> StoreError {
    match err {
        sqlx::Error::Database(ref db) => {
            let message = db.message().to_string();
            match db.kind() {
                ErrorKind::UniqueViolation => {
                    let key = db.constraint().unwrap_or("unique key");
                    StoreError::Conflict(format!("duplicate {key}"))
                }
                ErrorKind::ForeignKeyViolation => {
                    StoreError::Invalid("a referenced row does not exist (foreign key constraint)".into())
                }
                ErrorKind::CheckViolation | ErrorKind::NotNullViolation => StoreError::Invalid(message),
                _ => {
                    let code = db.code().map(|c| c.into_owned()).unwrap_or_default();
                    match code.get(..2) {
                        // Data exceptions (bad encoding, out of range, malformed values) and other
                        // integrity violations.
                        Some("22") | Some("23") => StoreError::Invalid(message),
                        // Connection trouble, resources, shutdown, serialization failures and
                        // deadlocks: worth retrying later.
                        Some("08") | Some("53") | Some("57") | Some("40") => StoreError::Unavailable(err),
                        _ => StoreError::Other(err),
                    }
                }
            }
        }
        sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
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
fn col<'r, T>(row: &'r PgRow, name: &str) -> Result<T>
where
    T: sqlx::Decode<'r, Postgres> + sqlx::Type<Postgres>,
{
    row.try_get(name).map_err(StoreError::Other)
}

fn project_from_row(row: &PgRow) -> Result<Project> {
    Ok(Project {
        id: col(row, "id")?,
        name: col(row, "name")?,
        root_path: col(row, "root_path")?,
        repository_url: col(row, "repository_url")?,
        default_branch: col(row, "default_branch")?,
        settings: col(row, "settings")?,
        total_files: col(row, "total_files")?,
        total_size_bytes: col(row, "total_size_bytes")?,
        total_chunks: col(row, "total_chunks")?,
        last_indexed_commit: col(row, "last_indexed_commit")?,
        created_at: col(row, "created_at")?,
        updated_at: col(row, "updated_at")?,
    })
}

fn token_from_row(row: &PgRow) -> Result<ApiToken> {
    Ok(ApiToken {
        id: col(row, "id")?,
        user_id: col(row, "user_id")?,
        name: col(row, "name")?,
        token_hash: col(row, "token_hash")?,
        prefix: col(row, "prefix")?,
        scopes: col(row, "scopes")?,
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

fn user_from_row(row: &PgRow) -> Result<User> {
    Ok(User {
        id: col(row, "id")?,
        email: col(row, "email")?,
        username: col(row, "username")?,
        display_name: col(row, "display_name")?,
        github_username: col(row, "github_username")?,
        is_active: col(row, "is_active")?,
        is_admin: col(row, "is_admin")?,
        preferences: col(row, "preferences")?,
        last_login_at: col(row, "last_login_at")?,
        created_at: col(row, "created_at")?,
        updated_at: col(row, "updated_at")?,
    })
}

fn member_from_row(row: &PgRow) -> Result<Member> {
    Ok(Member {
        project_id: col(row, "project_id")?,
        user_id: col(row, "user_id")?,
        role: col(row, "role")?,
        created_at: col(row, "created_at")?,
    })
}

fn task_from_row(row: &PgRow) -> Result<Task> {
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

fn agent_from_row(row: &PgRow) -> Result<Agent> {
    Ok(Agent {
        id: col(row, "id")?,
        name: col(row, "name")?,
        kind: col(row, "kind")?,
        model: col(row, "model")?,
        config: col(row, "config")?,
        is_active: col(row, "is_active")?,
        created_at: col(row, "created_at")?,
        updated_at: col(row, "updated_at")?,
    })
}

fn execution_from_row(row: &PgRow) -> Result<Execution> {
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

fn review_from_row(row: &PgRow) -> Result<Review> {
    Ok(Review {
        id: col(row, "id")?,
        project_id: col(row, "project_id")?,
        commit_id: col(row, "commit_id")?,
        reviewer_agent_id: col(row, "reviewer_agent_id")?,
        reviewer_user_id: col(row, "reviewer_user_id")?,
        score: col(row, "score")?,
        summary: col(row, "summary")?,
        issues: col(row, "issues")?,
        suggestions: col(row, "suggestions")?,
        created_at: col(row, "created_at")?,
        updated_at: col(row, "updated_at")?,
    })
}

fn activity_from_row(row: &PgRow) -> Result<ActivityEntry> {
    Ok(ActivityEntry {
        id: col(row, "id")?,
        project_id: col(row, "project_id")?,
        user_id: col(row, "user_id")?,
        action: col(row, "action")?,
        source: col(row, "source")?,
        subject_type: col(row, "subject_type")?,
        subject_id: col(row, "subject_id")?,
        details: col(row, "details")?,
        created_at: col(row, "created_at")?,
    })
}

fn file_view_from_row(row: &PgRow) -> Result<FileView> {
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

fn symbol_view_from_row(row: &PgRow) -> Result<SymbolView> {
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

fn run_from_row(row: &PgRow) -> Result<IndexRun> {
    let status: String = col(row, "status")?;
    let status = RunStatus::from_name(&status)
        .ok_or_else(|| StoreError::Invalid(format!("stored run status {status:?}")))?;
    Ok(IndexRun {
        id: col(row, "id")?,
        project_id: col(row, "project_id")?,
        trigger: col(row, "trigger")?,
        status,
        paths: col(row, "paths")?,
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

fn chunk_from_row(row: &PgRow) -> Result<ChunkView> {
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

/// The partial HNSW index of one model. Both values are integers from the database, never text
/// from a caller.
fn model_index_sql(id: i64, dims: i32) -> String {
    format!(
        "CREATE INDEX IF NOT EXISTS embeddings_hnsw_m{id} ON embeddings \
         USING hnsw ((embedding::halfvec({dims})) halfvec_ip_ops) WHERE model_id = {id}"
    )
}

/// The PostgreSQL name of a catalog column: only the vector column differs.
fn pg_column(spec: &TableSpec, name: &'static str) -> &'static str {
    if spec.name == "embeddings" && name == "vector" { "embedding" } else { name }
}

/// A backup's read snapshot.
struct PgExport {
    tx: sqlx::Transaction<'static, Postgres>,
}

#[async_trait]
impl ExportSnapshot for PgExport {
    async fn export_rows(
        &mut self,
        table: &str,
        after: Option<&[i64]>,
        limit: i64,
    ) -> Result<Vec<CanonicalRow>> {
        let spec = dump::table_or_invalid(table)?;
        // Integers and floats are widened so one Rust type reads each kind; vectors are read as
        // real[], which works for pgvector's `vector` and the fallback alike.
        let columns: Vec<String> = spec
            .columns
            .iter()
            .map(|(c, kind)| {
                let pg = pg_column(spec, c);
                match kind {
                    ColumnKind::Int => format!("\"{pg}\"::int8"),
                    ColumnKind::Float => format!("\"{pg}\"::float8"),
                    ColumnKind::Vector => format!("\"{pg}\"::real[]"),
                    _ => format!("\"{pg}\""),
                }
            })
            .collect();
        let key: Vec<String> = spec.key.iter().map(|k| format!("\"{k}\"")).collect();
        let filter = match after {
            Some(after) if after.len() == spec.key.len() => {
                let params: Vec<String> = (1..=after.len()).map(|i| format!("${i}")).collect();
                format!(" WHERE ({}) > ({})", key.join(", "), params.join(", "))
            }
            Some(_) => return Err(StoreError::Invalid(format!("{table}: a cursor must give the whole key"))),
            None => String::new(),
        };
        let limit_param = after.map_or(1, |a| a.len() + 1);
        let sql = format!(
            "SELECT {} FROM \"{}\"{filter} ORDER BY {} LIMIT ${limit_param}",
            columns.join(", "),
            spec.name,
            key.join(", ")
        );
        let mut query = sqlx::query(&sql);
        for value in after.unwrap_or_default() {
            query = query.bind(*value);
        }
        let rows = query.bind(limit).fetch_all(&mut *self.tx).await.map_err(db_err)?;
        rows.iter().map(|row| pg_row_to_canonical(spec, row)).collect()
    }
}

/// Reads a row into canonical form (see `store/dump.rs`).
fn pg_row_to_canonical(spec: &TableSpec, row: &PgRow) -> Result<CanonicalRow> {
    use serde_json::Value;
    let mut out = CanonicalRow::new();
    for (i, (name, kind)) in spec.columns.iter().enumerate() {
        let get_err = StoreError::Other;
        let value = match kind {
            ColumnKind::Int => row.try_get::<Option<i64>, _>(i).map_err(get_err)?.map(Value::from),
            ColumnKind::Float => row.try_get::<Option<f64>, _>(i).map_err(get_err)?.map(Value::from),
            ColumnKind::Text => row.try_get::<Option<String>, _>(i).map_err(get_err)?.map(Value::from),
            ColumnKind::Bool => row.try_get::<Option<bool>, _>(i).map_err(get_err)?.map(Value::from),
            ColumnKind::Timestamp => row
                .try_get::<Option<chrono::DateTime<chrono::Utc>>, _>(i)
                .map_err(get_err)?
                .map(|t| Value::from(dump::format_timestamp(t))),
            ColumnKind::Json => {
                row.try_get::<Option<Value>, _>(i).map_err(get_err)?.map(dump::canonical_json)
            }
            ColumnKind::TextList => {
                row.try_get::<Option<Vec<String>>, _>(i).map_err(get_err)?.map(Value::from)
            }
            ColumnKind::Vector => row
                .try_get::<Option<Vec<f32>>, _>(i)
                .map_err(get_err)?
                .map(|v| Value::from(dump::encode_vector(&v))),
        };
        out.insert((*name).to_string(), value.unwrap_or(Value::Null));
    }
    Ok(out)
}

/// A restore in progress: the write transaction, with user triggers disabled.
struct PgRestore {
    tx: sqlx::Transaction<'static, Postgres>,
    as_vector: bool,
    /// `(task, parent)`: task parents are set at the end, because the foreign key is checked at
    /// once and a parent may come after its child.
    task_parents: Vec<(i64, i64)>,
}

#[async_trait]
impl RestoreSession for PgRestore {
    async fn import_rows(&mut self, table: &str, rows: &[CanonicalRow]) -> Result<u64> {
        use serde_json::Value;
        let spec = dump::table_or_invalid(table)?;
        if rows.is_empty() {
            return Ok(0);
        }
        // The rows go in as one jsonb array per statement, unpacked by jsonb_to_recordset: one
        // statement shape per table whatever the batch size, and no parameter limit.
        let mut payload = Vec::with_capacity(rows.len());
        for row in rows {
            dump::validate_row(spec, row)?;
            let mut row = row.clone();
            if let Some(Value::String(text)) = row.get("vector") {
                let vector = dump::decode_vector(text)?;
                row.insert(
                    "vector".into(),
                    Value::from(vector.into_iter().map(f64::from).collect::<Vec<_>>()),
                );
            }
            if spec.name == "tasks"
                && let Some(parent) = row.get("parent_id").and_then(Value::as_i64)
            {
                let id = dump::row_key(spec, &row)?[0];
                self.task_parents.push((id, parent));
            }
            if spec.name == "chunks" {
                // The backup does not carry the tsvector: computed here in text form, or (null)
                // by the server below for a document left to it.
                let tsv = row
                    .get("lexical")
                    .and_then(Value::as_str)
                    .and_then(LexicalTsvector::new)
                    .map(|t| Value::from(t.to_text()));
                row.insert("lexical_tsv".into(), tsv.unwrap_or(Value::Null));
            }
            payload.push(Value::Object(row));
        }
        let mut targets = Vec::new();
        let mut exprs = Vec::new();
        let mut defs = Vec::new();
        for (name, kind) in spec.columns {
            let ty = match kind {
                ColumnKind::Int => "int8",
                ColumnKind::Float => "float8",
                ColumnKind::Text => "text",
                ColumnKind::Bool => "boolean",
                ColumnKind::Timestamp => "timestamptz",
                ColumnKind::Json => "jsonb",
                ColumnKind::TextList => "text[]",
                ColumnKind::Vector => "real[]",
            };
            defs.push(format!("\"{name}\" {ty}"));
            targets.push(format!("\"{}\"", pg_column(spec, name)));
            exprs.push(match kind {
                ColumnKind::Vector if self.as_vector => format!("x.\"{name}\"::vector"),
                _ if spec.name == "tasks" && *name == "parent_id" => "NULL::int8".to_string(),
                _ => format!("x.\"{name}\""),
            });
        }
        if spec.name == "chunks" {
            defs.push("lexical_tsv tsvector".into());
            targets.push("lexical_tsv".into());
            exprs.push("coalesce(x.lexical_tsv, semdex_lexical_tsvector(x.lexical))".into());
        }
        let sql = format!(
            "INSERT INTO \"{}\" ({}) SELECT {} FROM jsonb_to_recordset($1) AS x({})",
            spec.name,
            targets.join(", "),
            exprs.join(", "),
            defs.join(", ")
        );
        let done = sqlx::query(&sql)
            .bind(sqlx::types::Json(Value::Array(payload)))
            .execute(&mut *self.tx)
            .await
            .map_err(db_err)?;
        Ok(done.rows_affected())
    }

    async fn finish(mut self: Box<Self>) -> Result<()> {
        if !self.task_parents.is_empty() {
            let (ids, parents): (Vec<i64>, Vec<i64>) = self.task_parents.iter().copied().unzip();
            sqlx::query(
                "UPDATE tasks t SET parent_id = u.parent FROM unnest($1::int8[], $2::int8[]) AS u(id, parent) \
                 WHERE t.id = u.id",
            )
            .bind(ids)
            .bind(parents)
            .execute(&mut *self.tx)
            .await
            .map_err(db_err)?;
        }
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
        // New rows must not collide with restored ids.
        for spec in dump::TABLES.iter().filter(|t| t.has_id()) {
            sqlx::query(&format!(
                "SELECT setval(pg_get_serial_sequence('{0}', 'id'), coalesce((SELECT max(id) FROM \"{0}\"), 0) + 1, false)",
                spec.name
            ))
            .execute(&mut *self.tx)
            .await
            .map_err(db_err)?;
        }
        if self.as_vector {
            let models: Vec<(i64, i32)> =
                sqlx::query_as("SELECT id, dimensions FROM embedding_models ORDER BY id")
                    .fetch_all(&mut *self.tx)
                    .await
                    .map_err(db_err)?;
            for (id, dims) in models.into_iter().filter(|(_, d)| *d <= MAX_INDEXED_DIMENSIONS) {
                sqlx::query(&model_index_sql(id, dims)).execute(&mut *self.tx).await.map_err(db_err)?;
            }
        }
        // Deferred foreign keys (symbol parents) are checked now: a table with pending trigger
        // events cannot be altered, and a violation is better reported before the DDL.
        sqlx::query("SET CONSTRAINTS ALL IMMEDIATE").execute(&mut *self.tx).await.map_err(db_err)?;
        for spec in dump::TABLES.iter().filter(|t| t.name != "embeddings") {
            sqlx::query(&format!("ALTER TABLE \"{}\" ENABLE TRIGGER USER", spec.name))
                .execute(&mut *self.tx)
                .await
                .map_err(db_err)?;
        }
        self.tx.commit().await.map_err(db_err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copy_buffer_has_header_fields_and_trailer() {
        let mut buf = CopyBuf::new();
        buf.row(2);
        buf.i32(7);
        buf.opt_text(None);
        let bytes = buf.finish();
        assert_eq!(&bytes[..11], CopyBuf::SIGNATURE);
        assert_eq!(&bytes[19..21], &2i16.to_be_bytes());
        assert_eq!(&bytes[21..25], &4i32.to_be_bytes());
        assert_eq!(&bytes[25..29], &7i32.to_be_bytes());
        assert_eq!(&bytes[29..33], &(-1i32).to_be_bytes());
        assert_eq!(&bytes[33..], &(-1i16).to_be_bytes());
    }

    #[test]
    fn vectors_encode_with_their_length() {
        let mut buf = CopyBuf { buf: Vec::new() };
        buf.vector(&[1.0, -2.0]).unwrap();
        assert_eq!(&buf.buf[..4], &12i32.to_be_bytes());
        assert_eq!(&buf.buf[4..6], &2i16.to_be_bytes());
        assert_eq!(&buf.buf[8..12], &1.0f32.to_be_bytes());
        let mut buf = CopyBuf { buf: Vec::new() };
        buf.real_array(&[1.0, -2.0]).unwrap();
        assert_eq!(buf.buf.len(), 4 + 20 + 16);
        assert_eq!(&buf.buf[..4], &36i32.to_be_bytes());
        assert!(CopyBuf { buf: Vec::new() }.vector(&vec![0.0; 40_000]).is_err());
    }

    #[test]
    fn tsquery_quotes_terms_and_keeps_prefixes() {
        let terms: Vec<String> = ["User_Id", "creat*", "it's a\\b", "!!!", "**"].map(String::from).to_vec();
        assert_eq!(
            ts_query(&terms, TermMatch::Any).as_deref(),
            Some("('user_id') | ('creat':*) | ('it''s' <-> 'a\\\\b')")
        );
        assert_eq!(
            ts_query(&terms, TermMatch::All).as_deref(),
            Some("('user_id') & ('creat':*) & ('it''s' <-> 'a\\\\b')")
        );
        assert_eq!(
            ts_query(&terms[..2], TermMatch::AtLeast(2)).as_deref(),
            Some("('user_id') & ('creat':*)")
        );
        let three: Vec<String> = ["a", "b", "c"].map(String::from).to_vec();
        assert_eq!(
            ts_query(&three, TermMatch::AtLeast(2)).as_deref(),
            Some("(('a') & ('b')) | (('a') & ('c')) | (('b') & ('c'))")
        );
        assert_eq!(ts_query(&["-".to_string()], TermMatch::Any), None);
        assert_eq!(ts_query(&[], TermMatch::All), None);
    }

    #[test]
    fn like_wildcards_are_escaped() {
        assert_eq!(like_escape("a_b%c\\d"), "a\\_b\\%c\\\\d");
    }
}
