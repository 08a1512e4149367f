//! Store ingest benchmark (issue 3): the real `PgStore` paths (`replace_file` for chunks,
//! `put_embeddings` for vectors) against parameterised `INSERT` (one row per statement, one
//! multi-row statement) and binary `COPY` written here, all sending the same client-computed
//! tsvector; GIN index settings for the chunks' `lexical_tsv`; the SQLite batched rate for the
//! same data, and the cost of SQLite's incremental project-stats triggers (with against without).
//!
//! Not a criterion bench: a 100k-row load is one measurement, so each variant runs once, in a
//! fresh database, and the figures are printed as markdown tables (copied into
//! `benches/results/store.md`). Run with `cargo bench -p semdex-benches --bench store`.
//!
//! PostgreSQL: `SEMDEX_TEST_DATABASE_URL` when set, else a server started with
//! `scripts/test-postgres.sh start` and stopped at the end. Shape and scale from the environment:
//! `SEMDEX_BENCH_CHUNKS` (100000; the vector count is the same), `SEMDEX_BENCH_CHUNKS_PER_FILE` (20),
//! `SEMDEX_BENCH_DIMS` (3072), `SEMDEX_BENCH_VECTOR_BATCH` (256 vectors per `put_embeddings` call),
//! `SEMDEX_BENCH_HNSW_VECTORS` (1000: the small load with the model's HNSW index kept),
//! `SEMDEX_BENCH_ONLY` (`pg` or `sqlite` for one backend; `pg-chunks` or `pg-vectors` for one
//! PostgreSQL section).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use semdex::store::{ChunkRecord, FileRecord, FileWrite, LexicalTsvector, PgStore, SqliteStore, Store};
use sqlx::postgres::PgConnection;
use sqlx::{Connection, Executor, Postgres, QueryBuilder};

const COMMIT: &str = "0123456789abcdef0123456789abcdef01234567";

/// The stats triggers of the SQLite schema.
const STATS_TRIGGERS: &[(&str, &str)] = &[
    ("files_stats_insert", "files"),
    ("files_stats_delete", "files"),
    ("files_stats_update", "files"),
    ("chunks_stats_insert", "chunks"),
    ("chunks_stats_delete", "chunks"),
    ("chunks_stats_update", "chunks"),
];

/// The chunk columns the store writes, in `copy_chunks` order: the row, then its tsvector.
const CHUNK_COLUMNS: &str = "file_id, project_id, ordinal, content, content_hash, start_line, end_line, \
     start_byte, end_byte, symbol_path, kind, language, token_count, commit_sha, index_run_id, lexical, lexical_tsv";

type BoxError = Box<dyn std::error::Error + Send + Sync>;
type Res<T> = std::result::Result<T, BoxError>;

struct Config {
    chunks: usize,
    chunks_per_file: usize,
    dims: usize,
    vector_batch: usize,
    hnsw_vectors: usize,
    run_pg_chunks: bool,
    run_pg_vectors: bool,
    run_sqlite: bool,
}

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).filter(|n| *n > 0).unwrap_or(default)
}

impl Config {
    fn from_env() -> Config {
        let only = std::env::var("SEMDEX_BENCH_ONLY").unwrap_or_default();
        Config {
            chunks: env_usize("SEMDEX_BENCH_CHUNKS", 100_000),
            chunks_per_file: env_usize("SEMDEX_BENCH_CHUNKS_PER_FILE", 20),
            dims: env_usize("SEMDEX_BENCH_DIMS", 3072),
            vector_batch: env_usize("SEMDEX_BENCH_VECTOR_BATCH", 256),
            hnsw_vectors: env_usize("SEMDEX_BENCH_HNSW_VECTORS", 1000),
            run_pg_chunks: only.is_empty() || only == "pg" || only == "pg-chunks",
            run_pg_vectors: only.is_empty() || only == "pg" || only == "pg-vectors",
            run_sqlite: only.is_empty() || only == "sqlite",
        }
    }
}

/// One timed load.
struct Measurement {
    section: &'static str,
    label: String,
    rows: usize,
    bytes: u64,
    elapsed: Duration,
}

impl Measurement {
    fn secs(&self) -> f64 {
        self.elapsed.as_secs_f64()
    }
    fn rows_per_sec(&self) -> f64 {
        self.rows as f64 / self.secs()
    }
    fn mb_per_sec(&self) -> f64 {
        self.bytes as f64 / 1e6 / self.secs()
    }
}

#[derive(Default)]
struct Report {
    rows: Vec<Measurement>,
}

impl Report {
    fn add(
        &mut self,
        section: &'static str,
        label: impl Into<String>,
        rows: usize,
        bytes: u64,
        elapsed: Duration,
    ) {
        let m = Measurement { section, label: label.into(), rows, bytes, elapsed };
        eprintln!(
            "store bench: [{}] {}: {} rows in {:.2} s = {:.0} rows/s, {:.1} MB/s",
            m.section,
            m.label,
            m.rows,
            m.secs(),
            m.rows_per_sec(),
            m.mb_per_sec()
        );
        self.rows.push(m);
    }

    fn find(&self, section: &str, label: &str) -> Option<&Measurement> {
        self.rows.iter().find(|m| m.section == section && m.label == label)
    }

    /// Markdown tables: each section with its rows, and in each section the speed-up of the
    /// first row (the store's path) over every other row.
    fn print(&self) {
        let mut sections: Vec<&str> = Vec::new();
        for m in &self.rows {
            if !sections.contains(&m.section) {
                sections.push(m.section);
            }
        }
        for section in sections {
            println!("\n### {section}\n");
            println!("| variant | rows | seconds | rows/s | MB/s | first row's speed-up over this |");
            println!("|---|---:|---:|---:|---:|---:|");
            let rows: Vec<&Measurement> = self.rows.iter().filter(|m| m.section == section).collect();
            let first = rows[0];
            for m in rows {
                println!(
                    "| {} | {} | {:.2} | {:.0} | {:.1} | {:.2}x |",
                    m.label,
                    m.rows,
                    m.secs(),
                    m.rows_per_sec(),
                    m.mb_per_sec(),
                    m.secs() / first.secs()
                );
            }
        }
    }
}

// Data ----------------------------------------------------------------------------------------

/// The files to load: `chunks` chunks of TypeScript-like code, `chunks_per_file` per file.
struct Dataset {
    files: Vec<FileWrite>,
    chunks: usize,
    /// Bytes of the chunks' variable-width text (content, lexical document, hash, symbol path).
    chunk_bytes: u64,
}

const WORDS: &[&str] = &[
    "user", "account", "token", "request", "response", "handler", "cache", "index", "query", "result",
    "config", "session", "parse", "build", "render", "store", "vector", "chunk", "file", "path", "event",
    "project", "search", "import", "symbol", "embed", "client", "server", "retry", "limit",
];

fn ident(rng: &mut fastrand::Rng) -> String {
    let a = WORDS[rng.usize(..WORDS.len())];
    let b = WORDS[rng.usize(..WORDS.len())];
    let mut b = b.to_string();
    b[..1].make_ascii_uppercase();
    format!("{a}{b}{}", rng.u32(..100))
}

/// A function of about 700 to 1,300 bytes, and its line count.
fn chunk_text(rng: &mut fastrand::Rng) -> (String, i32) {
    let target = rng.usize(700..1300);
    let mut s = format!(
        "export async function {}(input: {}Options, limit = {}): Promise<{}Result> {{\n",
        ident(rng),
        ident(rng),
        rng.u32(..1000),
        ident(rng)
    );
    while s.len() < target {
        let line = match rng.u8(..3) {
            0 => format!(
                "  const {} = await {}.{}({}, \"{}\");\n",
                ident(rng),
                ident(rng),
                ident(rng),
                ident(rng),
                ident(rng)
            ),
            1 => format!(
                "  if ({}.{} > {}) {{ throw new Error(\"{} failed\"); }}\n",
                ident(rng),
                ident(rng),
                rng.u32(..500),
                ident(rng)
            ),
            _ => format!("  // {} the {} before {}\n", ident(rng), ident(rng), ident(rng)),
        };
        s.push_str(&line);
    }
    s.push_str("  return { ok: true, limit };\n}\n");
    let lines = s.lines().count() as i32;
    (s, lines)
}

fn hex64(n: u128) -> String {
    format!("{n:064x}")
}

fn dataset(cfg: &Config) -> Dataset {
    let mut rng = fastrand::Rng::with_seed(42);
    let mut files = Vec::new();
    let mut chunk_bytes = 0u64;
    let mut id = 0usize;
    let mut f = 0usize;
    while id < cfg.chunks {
        let path = format!("src/module{:03}/file{f:05}.ts", f % 100);
        let count = cfg.chunks_per_file.min(cfg.chunks - id);
        let mut chunks = Vec::with_capacity(count);
        let (mut line, mut byte) = (1i32, 0i64);
        for ordinal in 0..count {
            let (content, lines) = chunk_text(&mut rng);
            let symbol_path = format!("Service{f}.method{ordinal}");
            let lexical = semdex::lexical::document(&path, &symbol_path, &content);
            let len = content.len() as i64;
            let chunk = ChunkRecord {
                ordinal: ordinal as i32,
                content_hash: hex64(id as u128 + 1),
                start_line: line,
                end_line: line + lines - 1,
                start_byte: byte,
                end_byte: byte + len,
                symbol_path,
                kind: "symbol".into(),
                language: "typescript".into(),
                token_count: (len / 4) as i32,
                lexical,
                content,
            };
            chunk_bytes += (chunk.content.len()
                + chunk.lexical.len()
                + chunk.content_hash.len()
                + chunk.symbol_path.len()) as u64;
            chunks.push(chunk);
            line += lines;
            byte += len + 1;
            id += 1;
        }
        files.push(FileWrite {
            file: FileRecord {
                path,
                language: Some("typescript".into()),
                size: byte,
                line_count: line - 1,
                content_hash: Some(hex64((1u128 << 64) + f as u128)),
                mtime_ns: 1_700_000_000_000_000_000 + f as i64,
                is_binary: false,
                is_generated: false,
                skip_reason: None,
                diagnostics_count: 0,
                chunker_version: 1,
            },
            symbols: Vec::new(),
            imports: Vec::new(),
            chunks,
        });
        f += 1;
    }
    Dataset { files, chunks: id, chunk_bytes }
}

/// Vectors `start..end`: unit-length, deterministic per index, keyed by distinct content hashes.
fn vectors(start: usize, end: usize, dims: usize) -> Vec<(String, Vec<f32>)> {
    (start..end)
        .map(|i| {
            let mut rng = fastrand::Rng::with_seed(i as u64);
            let mut v: Vec<f32> = (0..dims).map(|_| rng.f32() * 2.0 - 1.0).collect();
            let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt().max(f32::MIN_POSITIVE);
            v.iter_mut().for_each(|x| *x /= norm);
            (hex64((1u128 << 100) + i as u128), v)
        })
        .collect()
}

/// Bytes of one vector row: the floats and the content hash.
fn vector_row_bytes(dims: usize) -> u64 {
    (dims * 4 + 64) as u64
}

// PostgreSQL ------------------------------------------------------------------------------------

/// The server used: given, or started here and stopped on drop.
struct PgServer {
    url: String,
    started: Option<(PathBuf, String)>,
}

impl PgServer {
    fn get(root: &Path) -> Res<PgServer> {
        if let Ok(url) = std::env::var("SEMDEX_TEST_DATABASE_URL")
            && !url.is_empty()
        {
            return Ok(PgServer { url, started: None });
        }
        let script = root.join("scripts/test-postgres.sh");
        let out = Command::new(&script).arg("start").current_dir(root).output()?;
        if !out.status.success() {
            return Err(format!(
                "{} start failed: {}",
                script.display(),
                String::from_utf8_lossy(&out.stderr)
            )
            .into());
        }
        let stdout = String::from_utf8(out.stdout)?;
        let value = |key: &str| {
            stdout.lines().find_map(|l| l.strip_prefix(&format!("export {key}=")).map(str::to_string))
        };
        let url = value("SEMDEX_TEST_DATABASE_URL").ok_or("no URL from test-postgres.sh")?;
        let state = value("SEMDEX_TEST_PG_STATE").ok_or("no state dir from test-postgres.sh")?;
        Ok(PgServer { url, started: Some((script, state)) })
    }

    /// The URL of database `name` on this server.
    fn database_url(&self, name: &str) -> String {
        let (base, query) = match self.url.split_once('?') {
            Some((b, q)) => (b, format!("?{q}")),
            None => (self.url.as_str(), String::new()),
        };
        let host_end = base.find("://").map_or(0, |i| i + 3);
        let cut = base[host_end..].rfind('/').map_or(base.len(), |i| host_end + i);
        format!("{}/{name}{query}", &base[..cut])
    }

    /// A fresh, empty database.
    async fn scratch(&self, name: &str) -> Res<String> {
        let mut admin = PgConnection::connect(&self.url).await?;
        (&mut admin).execute(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)").as_str()).await?;
        (&mut admin).execute(format!("CREATE DATABASE {name}").as_str()).await?;
        admin.close().await?;
        Ok(self.database_url(name))
    }

    async fn drop_db(&self, name: &str) -> Res<()> {
        let mut admin = PgConnection::connect(&self.url).await?;
        (&mut admin).execute(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)").as_str()).await?;
        admin.close().await?;
        Ok(())
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        if let Some((script, state)) = self.started.take() {
            match Command::new(&script)
                .arg("stop")
                .arg(&state)
                .env_remove("SEMDEX_TEST_DATABASE_URL")
                .status()
            {
                Ok(s) if s.success() => {}
                other => eprintln!("store bench: stopping the test PostgreSQL in {state} failed: {other:?}"),
            }
        }
    }
}

/// A migrated scratch database with one project: the store, a raw connection and the project id.
async fn pg_setup(server: &PgServer, name: &str) -> Res<(PgStore, PgConnection, i64)> {
    let url = server.scratch(name).await?;
    let store = PgStore::connect(&url).await?;
    store.migrate_up().await?;
    let project = store
        .create_project(semdex::store::NewProject { name: "bench".into(), ..Default::default() })
        .await?;
    let conn = PgConnection::connect(&url).await?;
    Ok((store, conn, project.id))
}

/// Merges the GIN index's pending list into the index, so that no load leaves index work behind
/// (with `fastupdate` on, up to `gin_pending_list_limit` of it). Nothing to do without the index.
async fn pg_flush_gin(conn: &mut PgConnection) -> Res<Duration> {
    let start = Instant::now();
    sqlx::query("SELECT gin_clean_pending_list(oid) FROM pg_class WHERE relname = 'chunks_lexical_idx'")
        .fetch_all(&mut *conn)
        .await?;
    Ok(start.elapsed())
}

/// Checks a chunk load: every chunk stored, and the project's stats agree.
async fn pg_check_chunks(conn: &mut PgConnection, project_id: i64, data: &Dataset) -> Res<()> {
    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM chunks").fetch_one(&mut *conn).await?;
    let (files, chunks): (i64, i64) =
        sqlx::query_as("SELECT total_files, total_chunks FROM projects WHERE id = $1")
            .bind(project_id)
            .fetch_one(&mut *conn)
            .await?;
    let want = (data.files.len() as i64, data.chunks as i64);
    if stored != data.chunks as i64 || (files, chunks) != want {
        return Err(format!(
            "chunk load incomplete: {stored} chunks stored, stats ({files}, {chunks}), expected {} and {want:?}",
            data.chunks
        )
        .into());
    }
    Ok(())
}

/// The real path: `PgStore::replace_file` per file (file upsert, deletes, the chunks' write).
async fn pg_load_replace_file(store: &PgStore, project_id: i64, data: &Dataset) -> Res<Duration> {
    let start = Instant::now();
    for write in &data.files {
        store.replace_file(project_id, write, None, Some(COMMIT)).await?;
    }
    Ok(start.elapsed())
}

/// How [`pg_load_replicated`] writes a file's chunks.
#[derive(Clone, Copy, PartialEq)]
enum ChunkWrite {
    /// One parameterised INSERT per chunk, the tsvector computed here and bound in binary.
    InsertOneRow,
    /// One multi-row parameterised INSERT per file, likewise.
    InsertMultiRow,
    /// One binary COPY per file, likewise: what `replace_file` did for every file before it
    /// wrote small ones with `unnest`.
    Copy,
    /// One `INSERT ... SELECT FROM unnest(...)` of arrays per file, the tsvectors bound as a
    /// `tsvector[]` (null for a document left to the server).
    Unnest,
}

/// The tsvectors of a file's chunks, as the store computes them (the bench's documents are all
/// ones it computes itself).
fn tsvectors(write: &FileWrite) -> Res<Vec<LexicalTsvector<'_>>> {
    write
        .chunks
        .iter()
        .map(|c| {
            LexicalTsvector::new(&c.lexical)
                .ok_or_else(|| "a document the client leaves to the server".into())
        })
        .collect()
}

/// The baselines: the same per-file transaction as `replace_file` (same file upsert, deletes and
/// import fix-up), with the chunks written by parameterised INSERT (one statement per row, or one
/// multi-row statement per file) or by one binary COPY per file.
async fn pg_load_replicated(
    conn: &mut PgConnection,
    project_id: i64,
    data: &Dataset,
    how: ChunkWrite,
) -> Res<Duration> {
    let one_row = format!(
        "INSERT INTO chunks ({CHUNK_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)"
    );
    let start = Instant::now();
    for write in &data.files {
        let f = &write.file;
        let mut tx = conn.begin().await?;
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
        .await?;
        for table in ["chunks", "imports", "symbols"] {
            sqlx::query(&format!("DELETE FROM {table} WHERE file_id = $1"))
                .bind(file_id)
                .execute(&mut *tx)
                .await?;
        }
        sqlx::query(
            "UPDATE imports SET resolved_file_id = $1 \
             WHERE project_id = $2 AND resolved_path = $3 AND resolved_file_id IS DISTINCT FROM $1",
        )
        .bind(file_id)
        .bind(project_id)
        .bind(&f.path)
        .execute(&mut *tx)
        .await?;
        match how {
            ChunkWrite::InsertMultiRow => {
                let tsvs = tsvectors(write)?;
                let mut qb = QueryBuilder::<Postgres>::new(format!("INSERT INTO chunks ({CHUNK_COLUMNS}) "));
                qb.push_values(write.chunks.iter().zip(tsvs), |mut b, (c, tsv)| {
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
                        .push_bind(COMMIT)
                        .push_bind(None::<i64>)
                        .push_bind(&c.lexical)
                        .push_bind(tsv);
                });
                qb.build().execute(&mut *tx).await?;
            }
            ChunkWrite::InsertOneRow => {
                let tsvs = tsvectors(write)?;
                for (c, tsv) in write.chunks.iter().zip(&tsvs) {
                    sqlx::query(&one_row)
                        .bind(file_id)
                        .bind(project_id)
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
                        .bind(COMMIT)
                        .bind(None::<i64>)
                        .bind(&c.lexical)
                        .bind(tsv)
                        .execute(&mut *tx)
                        .await?;
                }
            }
            ChunkWrite::Unnest => {
                let c = &write.chunks;
                sqlx::query(
                    "INSERT INTO chunks (file_id, project_id, commit_sha, index_run_id, ordinal, content, content_hash, \
                     start_line, end_line, start_byte, end_byte, symbol_path, kind, language, token_count, lexical, \
                     lexical_tsv) \
                     SELECT $1, $2, $3, $4, u.ordinal, u.content, u.content_hash, u.start_line, u.end_line, u.start_byte, \
                            u.end_byte, u.symbol_path, u.kind, u.language, u.token_count, u.lexical, \
                            coalesce(u.tsv, semdex_lexical_tsvector(u.lexical)) \
                     FROM unnest($5::int4[], $6::text[], $7::text[], $8::int4[], $9::int4[], $10::int8[], $11::int8[], \
                                 $12::text[], $13::text[], $14::text[], $15::int4[], $16::text[], $17::tsvector[]) \
                          AS u(ordinal, content, content_hash, start_line, end_line, start_byte, end_byte, symbol_path, \
                               kind, language, token_count, lexical, tsv)",
                )
                .bind(file_id)
                .bind(project_id)
                .bind(COMMIT)
                .bind(None::<i64>)
                .bind(c.iter().map(|c| c.ordinal).collect::<Vec<_>>())
                .bind(c.iter().map(|c| c.content.as_str()).collect::<Vec<_>>())
                .bind(c.iter().map(|c| c.content_hash.as_str()).collect::<Vec<_>>())
                .bind(c.iter().map(|c| c.start_line).collect::<Vec<_>>())
                .bind(c.iter().map(|c| c.end_line).collect::<Vec<_>>())
                .bind(c.iter().map(|c| c.start_byte).collect::<Vec<_>>())
                .bind(c.iter().map(|c| c.end_byte).collect::<Vec<_>>())
                .bind(c.iter().map(|c| c.symbol_path.as_str()).collect::<Vec<_>>())
                .bind(c.iter().map(|c| c.kind.as_str()).collect::<Vec<_>>())
                .bind(c.iter().map(|c| c.language.as_str()).collect::<Vec<_>>())
                .bind(c.iter().map(|c| c.token_count).collect::<Vec<_>>())
                .bind(c.iter().map(|c| c.lexical.as_str()).collect::<Vec<_>>())
                .bind(c.iter().map(|c| LexicalTsvector::new(&c.lexical)).collect::<Vec<_>>())
                .execute(&mut *tx)
                .await?;
            }
            ChunkWrite::Copy => {
                let tsvs = tsvectors(write)?;
                let mut copy = tx
                    .copy_in_raw(&format!("COPY chunks ({CHUNK_COLUMNS}) FROM STDIN (FORMAT binary)"))
                    .await?;
                let mut buf = copy_header();
                for (c, tsv) in write.chunks.iter().zip(&tsvs) {
                    copy_chunk_row(&mut buf, file_id, project_id, c, tsv);
                }
                buf.extend_from_slice(&(-1i16).to_be_bytes());
                copy.send(buf).await?;
                copy.finish().await?;
            }
        }
        tx.commit().await?;
    }
    Ok(start.elapsed())
}

/// The header of binary COPY data.
fn copy_header() -> Vec<u8> {
    let mut buf = Vec::with_capacity(64 * 1024);
    buf.extend_from_slice(b"PGCOPY\n\xff\r\n\0");
    buf.extend_from_slice(&0i32.to_be_bytes());
    buf.extend_from_slice(&0i32.to_be_bytes());
    buf
}

/// One chunk row of binary COPY data, in [`CHUNK_COLUMNS`] order.
fn copy_chunk_row(buf: &mut Vec<u8>, file_id: i64, project_id: i64, c: &ChunkRecord, tsv: &LexicalTsvector) {
    let field = |buf: &mut Vec<u8>, bytes: &[u8]| {
        buf.extend_from_slice(&(bytes.len() as i32).to_be_bytes());
        buf.extend_from_slice(bytes);
    };
    buf.extend_from_slice(&17i16.to_be_bytes());
    field(buf, &file_id.to_be_bytes());
    field(buf, &project_id.to_be_bytes());
    field(buf, &c.ordinal.to_be_bytes());
    field(buf, c.content.as_bytes());
    field(buf, c.content_hash.as_bytes());
    field(buf, &c.start_line.to_be_bytes());
    field(buf, &c.end_line.to_be_bytes());
    field(buf, &c.start_byte.to_be_bytes());
    field(buf, &c.end_byte.to_be_bytes());
    field(buf, c.symbol_path.as_bytes());
    field(buf, c.kind.as_bytes());
    field(buf, c.language.as_bytes());
    field(buf, &c.token_count.to_be_bytes());
    field(buf, COMMIT.as_bytes());
    buf.extend_from_slice(&(-1i32).to_be_bytes());
    field(buf, c.lexical.as_bytes());
    buf.extend_from_slice(&(tsv.binary_len() as i32).to_be_bytes());
    tsv.write_binary(buf);
}

/// How chunks are written in one PostgreSQL chunk load.
#[derive(Clone, Copy)]
enum ChunkPath {
    /// `PgStore::replace_file` per file.
    Store,
    /// `Store` after a statement on the schema (the GIN index dropped, or its settings changed).
    StoreAfter(&'static str),
    /// Baseline: `replace_file`'s statements with one INSERT per chunk.
    InsertOneRow,
    /// Baseline: `replace_file`'s statements with one multi-row INSERT per file.
    InsertMultiRow,
    /// Baseline: `replace_file`'s statements with one binary COPY per file.
    Copy,
    /// Diagnosis: `replace_file`'s statements with one unnest INSERT of arrays per file.
    Unnest,
    /// Diagnosis: the server's floor for the chunk rows: every file written first (untimed), then
    /// every chunk in one binary COPY, one transaction.
    OneCopy,
}

/// Writes every file with multi-row INSERTs (untimed), then times one binary COPY of every chunk.
async fn pg_load_one_copy(conn: &mut PgConnection, project_id: i64, data: &Dataset) -> Res<Duration> {
    let mut ids = std::collections::HashMap::new();
    for batch in data.files.chunks(1000) {
        let mut qb = QueryBuilder::<Postgres>::new(
            "INSERT INTO files (project_id, path, language, size, line_count, content_hash, mtime_ns, chunker_version) ",
        );
        qb.push_values(batch, |mut b, w| {
            let f = &w.file;
            b.push_bind(project_id)
                .push_bind(&f.path)
                .push_bind(&f.language)
                .push_bind(f.size)
                .push_bind(f.line_count)
                .push_bind(&f.content_hash)
                .push_bind(f.mtime_ns)
                .push_bind(f.chunker_version);
        });
        qb.push(" RETURNING path, id");
        let rows: Vec<(String, i64)> = qb.build_query_as().fetch_all(&mut *conn).await?;
        ids.extend(rows);
    }
    let start = Instant::now();
    let mut tx = conn.begin().await?;
    let mut copy =
        tx.copy_in_raw(&format!("COPY chunks ({CHUNK_COLUMNS}) FROM STDIN (FORMAT binary)")).await?;
    let mut buf = copy_header();
    for w in &data.files {
        let file_id: i64 = *ids.get(&w.file.path).ok_or("file id missing")?;
        for (c, tsv) in w.chunks.iter().zip(tsvectors(w)?) {
            copy_chunk_row(&mut buf, file_id, project_id, c, &tsv);
            if buf.len() >= 4 << 20 {
                copy.send(std::mem::take(&mut buf)).await?;
            }
        }
    }
    buf.extend_from_slice(&(-1i16).to_be_bytes());
    copy.send(buf).await?;
    copy.finish().await?;
    tx.commit().await?;
    Ok(start.elapsed())
}

/// How vectors are written in one PostgreSQL vector load.
#[derive(Clone, Copy, PartialEq)]
enum VectorPath {
    /// `PgStore::put_embeddings`: the model's dimensions from its cache, then one
    /// `INSERT ... SELECT FROM unnest(...) ON CONFLICT DO NOTHING`.
    Store,
    /// Diagnosis: `put_embeddings` before this change replicated: in one transaction, the
    /// model's dimensions read, a lookup of the batch's hashes, then (none stored) one binary COPY
    /// straight into `embeddings`.
    StoreBefore,
    /// Baseline: binary COPY straight into `embeddings` (no lookup, no conflict handling).
    DirectCopy,
    /// Baseline: one parameterised `INSERT ... ON CONFLICT DO NOTHING` per vector.
    InsertOneRow,
    /// Baseline: one multi-row parameterised INSERT per batch.
    InsertMultiRow,
    /// Diagnosis: `put_embeddings`' own unnest INSERT on one connection (no pool, no cache).
    Unnest,
}

/// Registers the model (which creates its partial HNSW index) and, unless `keep_hnsw`, drops
/// that index again, as a bulk load that builds the index afterwards would.
async fn pg_model(store: &PgStore, conn: &mut PgConnection, dims: usize, keep_hnsw: bool) -> Res<i64> {
    let model = store.register_model("bench", "bench-model", dims as i32).await?;
    if !keep_hnsw {
        (&mut *conn).execute(format!("DROP INDEX IF EXISTS embeddings_hnsw_m{}", model.id).as_str()).await?;
    }
    Ok(model.id)
}

/// Loads `count` vectors in batches; the time excludes generating them.
async fn pg_load_vectors(
    store: &PgStore,
    conn: &mut PgConnection,
    model_id: i64,
    cfg: &Config,
    count: usize,
    path: VectorPath,
) -> Res<Duration> {
    let mut total = Duration::ZERO;
    let mut start_row = 0;
    while start_row < count {
        let end = (start_row + cfg.vector_batch).min(count);
        let rows = vectors(start_row, end, cfg.dims);
        let start = Instant::now();
        match path {
            VectorPath::Store => {
                store.put_embeddings(model_id, &rows).await?;
            }
            VectorPath::StoreBefore => {
                let mut tx = conn.begin().await?;
                let _dims: i32 = sqlx::query_scalar("SELECT dimensions FROM embedding_models WHERE id = $1")
                    .bind(model_id)
                    .fetch_one(&mut *tx)
                    .await?;
                let hashes: Vec<&str> = rows.iter().map(|(h, _)| h.as_str()).collect();
                let stored: bool = sqlx::query_scalar(
                    "SELECT EXISTS (SELECT 1 FROM embeddings WHERE model_id = $1 AND content_hash = ANY($2::text[]))",
                )
                .bind(model_id)
                .bind(&hashes)
                .fetch_one(&mut *tx)
                .await?;
                if stored {
                    return Err("a new batch found stored".into());
                }
                let mut copy = tx
                    .copy_in_raw(
                        "COPY embeddings (model_id, content_hash, embedding) FROM STDIN (FORMAT binary)",
                    )
                    .await?;
                copy.send(copy_vectors(model_id, &rows)).await?;
                copy.finish().await?;
                tx.commit().await?;
            }
            VectorPath::Unnest => {
                sqlx::query(
                    "INSERT INTO embeddings (model_id, content_hash, embedding, input_mode) \
                     SELECT $1, u.content_hash, u.embedding, u.input_mode \
                     FROM unnest($2::text[], $3::vector[], $4::text[]) AS u(content_hash, embedding, input_mode) \
                     ON CONFLICT (model_id, content_hash) DO NOTHING",
                )
                .bind(model_id)
                .bind(rows.iter().map(|(h, _)| h.as_str()).collect::<Vec<_>>())
                .bind(rows.iter().map(|(_, v)| pgvector::Vector::from(v.clone())).collect::<Vec<_>>())
                .bind(vec!["whole"; rows.len()])
                .execute(&mut *conn)
                .await?;
            }
            VectorPath::DirectCopy => {
                let mut tx = conn.begin().await?;
                let mut copy = tx
                    .copy_in_raw(
                        "COPY embeddings (model_id, content_hash, embedding) FROM STDIN (FORMAT binary)",
                    )
                    .await?;
                copy.send(copy_vectors(model_id, &rows)).await?;
                copy.finish().await?;
                tx.commit().await?;
            }
            VectorPath::InsertOneRow => {
                let mut tx = conn.begin().await?;
                for (hash, v) in &rows {
                    sqlx::query(
                        "INSERT INTO embeddings (model_id, content_hash, embedding) VALUES ($1, $2, $3) \
                         ON CONFLICT (model_id, content_hash) DO NOTHING",
                    )
                    .bind(model_id)
                    .bind(hash)
                    .bind(pgvector::Vector::from(v.clone()))
                    .execute(&mut *tx)
                    .await?;
                }
                tx.commit().await?;
            }
            VectorPath::InsertMultiRow => {
                let mut tx = conn.begin().await?;
                let mut qb = QueryBuilder::<Postgres>::new(
                    "INSERT INTO embeddings (model_id, content_hash, embedding) ",
                );
                qb.push_values(&rows, |mut b, (hash, v)| {
                    b.push_bind(model_id).push_bind(hash).push_bind(pgvector::Vector::from(v.clone()));
                });
                qb.push(" ON CONFLICT (model_id, content_hash) DO NOTHING");
                qb.build().execute(&mut *tx).await?;
                tx.commit().await?;
            }
        }
        total += start.elapsed();
        start_row = end;
    }
    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM embeddings WHERE model_id = $1")
        .bind(model_id)
        .fetch_one(&mut *conn)
        .await?;
    if stored != count as i64 {
        return Err(format!("vector load incomplete: {stored} of {count} stored").into());
    }
    Ok(total)
}

/// Binary COPY data for vectors: `(model_id, hash, vector)` rows for `embeddings`.
fn copy_vectors(model_id: i64, rows: &[(String, Vec<f32>)]) -> Vec<u8> {
    let dims = rows.first().map_or(0, |(_, v)| v.len());
    let mut buf = Vec::with_capacity(19 + rows.len() * (dims * 4 + 100));
    buf.extend_from_slice(b"PGCOPY\n\xff\r\n\0");
    buf.extend_from_slice(&0i32.to_be_bytes());
    buf.extend_from_slice(&0i32.to_be_bytes());
    for (hash, v) in rows {
        buf.extend_from_slice(&3i16.to_be_bytes());
        buf.extend_from_slice(&8i32.to_be_bytes());
        buf.extend_from_slice(&model_id.to_be_bytes());
        buf.extend_from_slice(&(hash.len() as i32).to_be_bytes());
        buf.extend_from_slice(hash.as_bytes());
        buf.extend_from_slice(&(4 + 4 * v.len() as i32).to_be_bytes());
        buf.extend_from_slice(&(v.len() as i16).to_be_bytes());
        buf.extend_from_slice(&0i16.to_be_bytes());
        for x in v {
            buf.extend_from_slice(&x.to_be_bytes());
        }
    }
    buf.extend_from_slice(&(-1i16).to_be_bytes());
    buf
}

async fn run_pg(cfg: &Config, data: &Dataset, report: &mut Report, root: &Path) -> Res<()> {
    let server = PgServer::get(root)?;
    eprintln!("store bench: PostgreSQL at {}", server.url);
    let db = format!("semdex_bench_{}", std::process::id());

    // Chunks: the store's path against one-row INSERT, multi-row INSERT and binary COPY per file,
    // then diagnoses. (`fastupdate = off` and a 32 MB `gin_pending_list_limit` on the GIN index
    // were measured with `ChunkPath::StoreAfter` too and did not help: see store.md.)
    let chunk_runs: [(&str, ChunkPath); 8] = [
        ("replace_file (the store's path)", ChunkPath::Store),
        ("INSERT, one row per statement", ChunkPath::InsertOneRow),
        ("INSERT, one multi-row statement per file", ChunkPath::InsertMultiRow),
        ("binary COPY, one per file (replace_file before this change)", ChunkPath::Copy),
        ("diagnosis: INSERT ... SELECT FROM unnest(arrays), one per file", ChunkPath::Unnest),
        ("replace_file again, last of the section", ChunkPath::Store),
        (
            "diagnosis: replace_file, lexical_tsv's GIN index dropped",
            ChunkPath::StoreAfter("DROP INDEX chunks_lexical_idx"),
        ),
        (
            "diagnosis: one binary COPY of every chunk in one transaction (files written first)",
            ChunkPath::OneCopy,
        ),
    ];
    for (label, path) in chunk_runs.into_iter().filter(|_| cfg.run_pg_chunks) {
        let (store, mut conn, project_id) = pg_setup(&server, &db).await?;
        let loaded = match path {
            ChunkPath::Store => pg_load_replace_file(&store, project_id, data).await?,
            ChunkPath::StoreAfter(sql) => {
                (&mut conn).execute(sql).await?;
                pg_load_replace_file(&store, project_id, data).await?
            }
            ChunkPath::InsertOneRow => {
                pg_load_replicated(&mut conn, project_id, data, ChunkWrite::InsertOneRow).await?
            }
            ChunkPath::InsertMultiRow => {
                pg_load_replicated(&mut conn, project_id, data, ChunkWrite::InsertMultiRow).await?
            }
            ChunkPath::Copy => pg_load_replicated(&mut conn, project_id, data, ChunkWrite::Copy).await?,
            ChunkPath::Unnest => pg_load_replicated(&mut conn, project_id, data, ChunkWrite::Unnest).await?,
            ChunkPath::OneCopy => pg_load_one_copy(&mut conn, project_id, data).await?,
        };
        let elapsed = loaded + pg_flush_gin(&mut conn).await?;
        pg_check_chunks(&mut conn, project_id, data).await?;
        report.add("PostgreSQL chunks", label, data.chunks, data.chunk_bytes, elapsed);
        store.close().await;
        conn.close().await?;
        server.drop_db(&db).await?;
    }

    if cfg.run_pg_chunks {
        // What the store now does in the client instead of the server, alone.
        let start = Instant::now();
        let mut bytes = 0usize;
        for write in &data.files {
            bytes += tsvectors(write)?.iter().map(LexicalTsvector::binary_len).sum::<usize>();
        }
        let elapsed = start.elapsed();
        std::hint::black_box(bytes);
        report.add(
            "PostgreSQL chunks",
            "diagnosis: computing every tsvector in semdex alone (client CPU, no database)",
            data.chunks,
            data.chunk_bytes,
            elapsed,
        );
    }

    // Vectors without the model's HNSW index, then a small load with it.
    let n = data.chunks;
    let vector_runs: [(&str, VectorPath, usize, bool); 9] = [
        ("put_embeddings (the store's path)", VectorPath::Store, n, false),
        ("INSERT, one row per statement", VectorPath::InsertOneRow, n, false),
        ("INSERT, one multi-row statement per batch", VectorPath::InsertMultiRow, n, false),
        ("binary COPY straight into embeddings, one per batch", VectorPath::DirectCopy, n, false),
        (
            "diagnosis: put_embeddings before this change (dimensions, hash lookup, COPY) replicated",
            VectorPath::StoreBefore,
            n,
            false,
        ),
        // The first load of a run also pays for the server's first WAL segments and checkpoints:
        // the store's path again, last, shows how much of its time is its position.
        ("diagnosis: put_embeddings' INSERT on one connection (no pool)", VectorPath::Unnest, n, false),
        ("put_embeddings again, last of the section", VectorPath::Store, n, false),
        ("put_embeddings, model's HNSW index kept", VectorPath::Store, cfg.hnsw_vectors, true),
        (
            "INSERT, one row per statement, model's HNSW index kept",
            VectorPath::InsertOneRow,
            cfg.hnsw_vectors,
            true,
        ),
    ];
    for (label, path, count, keep_hnsw) in vector_runs.into_iter().filter(|_| cfg.run_pg_vectors) {
        let (store, mut conn, _) = pg_setup(&server, &db).await?;
        let model_id = pg_model(&store, &mut conn, cfg.dims, keep_hnsw).await?;
        let elapsed = pg_load_vectors(&store, &mut conn, model_id, cfg, count, path).await?;
        let section = if keep_hnsw { "PostgreSQL vectors, HNSW index kept" } else { "PostgreSQL vectors" };
        report.add(section, label, count, count as u64 * vector_row_bytes(cfg.dims), elapsed);
        store.close().await;
        conn.close().await?;
        server.drop_db(&db).await?;
    }
    Ok(())
}

// SQLite ----------------------------------------------------------------------------------------

async fn sqlite_store(path: &Path, stats: bool) -> Res<(SqliteStore, i64)> {
    let store = SqliteStore::open(path).await?;
    store.migrate_up().await?;
    if !stats {
        store.close().await;
        let mut conn =
            sqlx::sqlite::SqliteConnection::connect(&format!("sqlite://{}", path.display())).await?;
        for (trigger, _) in STATS_TRIGGERS {
            (&mut conn).execute(format!("DROP TRIGGER {trigger}").as_str()).await?;
        }
        conn.close().await?;
        return sqlite_store_reopen(path).await;
    }
    let project = store
        .create_project(semdex::store::NewProject { name: "bench".into(), ..Default::default() })
        .await?;
    Ok((store, project.id))
}

async fn sqlite_store_reopen(path: &Path) -> Res<(SqliteStore, i64)> {
    let store = SqliteStore::open(path).await?;
    let project = store
        .create_project(semdex::store::NewProject { name: "bench".into(), ..Default::default() })
        .await?;
    Ok((store, project.id))
}

async fn run_sqlite(cfg: &Config, data: &Dataset, report: &mut Report) -> Res<()> {
    for stats in [true, false] {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("semdex.db");
        let (store, project_id) = sqlite_store(&path, stats).await?;
        let start = Instant::now();
        for write in &data.files {
            store.replace_file(project_id, write, None, Some(COMMIT)).await?;
        }
        let elapsed = start.elapsed();
        let project = store.project(project_id).await?.ok_or("project vanished")?;
        let want = if stats { data.chunks as i64 } else { 0 };
        if project.total_chunks != want {
            return Err(
                format!("SQLite stats: {} chunks counted, expected {want}", project.total_chunks).into()
            );
        }
        let label = if stats {
            "replace_file (batched multi-row INSERT), stats triggers on"
        } else {
            "replace_file (batched multi-row INSERT), stats triggers dropped"
        };
        report.add("SQLite chunks", label, data.chunks, data.chunk_bytes, elapsed);

        if stats {
            let model = store.register_model("bench", "bench-model", cfg.dims as i32).await?;
            let mut total = Duration::ZERO;
            let mut start_row = 0;
            while start_row < data.chunks {
                let end = (start_row + cfg.vector_batch).min(data.chunks);
                let rows = vectors(start_row, end, cfg.dims);
                let start = Instant::now();
                store.put_embeddings(model.id, &rows).await?;
                total += start.elapsed();
                start_row = end;
            }
            let (count, _) = store.embeddings_extent(model.id).await?;
            if count != data.chunks as i64 {
                return Err(format!("SQLite vectors: {count} of {} stored", data.chunks).into());
            }
            report.add(
                "SQLite vectors",
                "put_embeddings (batched multi-row INSERT)",
                data.chunks,
                data.chunks as u64 * vector_row_bytes(cfg.dims),
                total,
            );
        }
        store.close().await;
    }
    Ok(())
}

// Main ------------------------------------------------------------------------------------------

fn main() -> Res<()> {
    let cfg = Config::from_env();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().ok_or("no workspace root")?.to_path_buf();
    let made = Instant::now();
    let data = dataset(&cfg);
    eprintln!(
        "store bench: {} chunks in {} files ({:.1} MB of chunk text), {}-dim vectors, made in {:.1} s",
        data.chunks,
        data.files.len(),
        data.chunk_bytes as f64 / 1e6,
        cfg.dims,
        made.elapsed().as_secs_f64()
    );
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    let mut report = Report::default();
    let result = runtime.block_on(async {
        if cfg.run_pg_chunks || cfg.run_pg_vectors {
            run_pg(&cfg, &data, &mut report, &root).await?;
        }
        if cfg.run_sqlite {
            run_sqlite(&cfg, &data, &mut report).await?;
        }
        Res::Ok(())
    });
    println!(
        "\n## store ingest: {} chunks ({} per file), {} vectors of {} dims, {} vectors per put_embeddings call",
        data.chunks, cfg.chunks_per_file, data.chunks, cfg.dims, cfg.vector_batch
    );
    report.print();
    if let (Some(with), Some(without)) = (
        report.find("SQLite chunks", "replace_file (batched multi-row INSERT), stats triggers on"),
        report.find("SQLite chunks", "replace_file (batched multi-row INSERT), stats triggers dropped"),
    ) {
        println!(
            "\nSQLite stats-trigger overhead on the chunk load: {:+.1}%",
            (with.secs() / without.secs() - 1.0) * 100.0
        );
    }
    result
}
