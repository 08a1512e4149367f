//! `semdex backup` and `semdex restore`: the whole store as one versioned JSON Lines file that
//! moves between the backends (a laptop's embedded index can go to a team's PostgreSQL).
//!
//! # Format, version 1
//!
//! UTF-8 JSON Lines, one JSON object per line, each line ending in `\n`:
//!
//! 1. A header:
//!    `{"format":"semdex-backup","version":1,"backend":"sqlite","schema_version":1,"created_at":"2024-05-06T07:08:09.123456Z","tables":["users",...]}`.
//!    `version` is this file format's version; `schema_version` the migration the rows were read
//!    at; `backend` is informational. A restore takes its own schema version or an older one:
//!    rows from an older schema get the columns later migrations added, with the value those
//!    migrations gave existing rows (see [`upgrade_row`]). A newer one is refused.
//! 2. One line per row, `{"table":"files","row":{...}}`, tables in foreign-key order (parents
//!    first, [`store::TABLES`] order), each table's rows in key order. A row holds every column
//!    in the canonical form `store/dump.rs` documents: integers, floats, booleans, RFC 3339 UTC
//!    timestamps with six fractional digits, JSON values with sorted keys, string lists as
//!    arrays, and embedding vectors as the standard base64 (padded) of their little-endian `f32`s
//!    under the column name `vector`. Derived data is not stored: the full-text indexes and
//!    the per-model vector indexes are rebuilt on restore, and project stats are recomputed from
//!    the restored rows.
//! 3. A trailer, the last line: `{"trailer":{"rows":{"users":0,...},"blake3":"<hex>"}}` with the
//!    row count of every table and the blake3 hash of every byte before the trailer line.
//!
//! # Guarantees
//!
//! **Backup** reads one consistent snapshot (a single read transaction), page by page with
//! keyset pagination, so memory stays bounded whatever the size of the store, and writes to a
//! temporary file beside the output that is renamed into place only once complete and synced.
//!
//! **Restore** reads the file twice. The first pass validates all of it before the database is
//! touched: the header, the format version, that every line parses and names a known table in
//! order with a well-formed row, and that the trailer's counts and checksum match. The second
//! pass inserts the rows in one transaction, checking the checksum again before committing (the
//! file could change between passes), so a restore is all or nothing. A store holding any row is
//! refused unless `force`, which deletes every row first, in the same transaction.

use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::store::{self, Store, StoreError, TableSpec};

/// The `format` value of a backup's header.
pub const FORMAT: &str = "semdex-backup";
/// The version of the file format this binary writes and reads.
pub const VERSION: u64 = 1;
/// The oldest schema version whose backups this binary restores.
const OLDEST_SCHEMA: i64 = 1;

/// Rows read from the store per page when backing up.
const PAGE_ROWS: i64 = 1000;
/// Rows per page for embeddings, whose rows are large (a 3072-dimension vector is 16 KiB).
const PAGE_ROWS_VECTORS: i64 = 128;
/// A restore hands rows to the store in batches of at most this many rows ...
const BATCH_ROWS: usize = 1000;
/// ... or this many bytes of backup text.
const BATCH_BYTES: usize = 8 << 20;

/// Result alias for backup and restore.
pub type Result<T, E = BackupError> = std::result::Result<T, E>;

/// Why a backup or restore failed.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: std::io::Error },
    #[error("not a semdex backup: {0}")]
    NotABackup(String),
    #[error("unsupported backup format version {found} (this semdex reads version {VERSION})")]
    UnsupportedVersion { found: String },
    #[error(
        "the backup was written at schema version {found}, this semdex's schema is at version {expected}"
    )]
    SchemaMismatch { found: i64, expected: i64 },
    #[error("corrupt backup at line {line}: {message}")]
    Corrupt { line: u64, message: String },
    #[error("truncated backup: {0}")]
    Truncated(String),
    #[error("corrupt backup: {0}")]
    Mismatch(String),
    #[error(
        "the store is not migrated to the latest schema (version {found:?}, latest {latest}): run `semdex migrate up`"
    )]
    NotMigrated { found: Option<i64>, latest: i64 },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A backup's header.
#[derive(Debug, Clone, PartialEq)]
pub struct Header {
    pub backend: String,
    pub schema_version: i64,
    pub created_at: String,
}

/// What a backup wrote or a restore read: rows per table, in catalog order.
#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    pub header: Header,
    pub rows: Vec<(String, u64)>,
    /// The file's size.
    pub bytes: u64,
}

impl Summary {
    pub fn total_rows(&self) -> u64 {
        self.rows.iter().map(|(_, n)| n).sum()
    }
}

/// Writes a backup of `store` to `output` (replacing it only once complete).
pub async fn backup(store: &dyn Store, output: &Path) -> Result<Summary> {
    let status = store.status().await?;
    if status.schema_version != Some(status.latest_version) {
        return Err(BackupError::NotMigrated { found: status.schema_version, latest: status.latest_version });
    }
    let name = output.file_name().and_then(|n| n.to_str()).unwrap_or("backup");
    let temp = output.with_file_name(format!(".{name}.partial-{}", std::process::id()));
    let result = write_to(store, &temp, status.backend.name(), status.latest_version).await;
    let finished = match result {
        Ok(summary) => std::fs::rename(&temp, output)
            .map(|()| summary)
            .map_err(|source| BackupError::Io { path: output.to_path_buf(), source }),
        Err(e) => Err(e),
    };
    if finished.is_err() {
        let _ = std::fs::remove_file(&temp);
    }
    finished
}

async fn write_to(store: &dyn Store, path: &Path, backend: &str, schema_version: i64) -> Result<Summary> {
    let io = |source| BackupError::Io { path: path.to_path_buf(), source };
    let file = File::create(path).map_err(io)?;
    let mut out = HashingWriter { inner: BufWriter::new(file), hasher: blake3::Hasher::new(), bytes: 0 };
    let header = Header {
        backend: backend.to_string(),
        schema_version,
        created_at: store::format_timestamp(chrono::Utc::now()),
    };
    let tables: Vec<&str> = store::TABLES.iter().map(|t| t.name).collect();
    out.line(&serde_json::json!({
        "format": FORMAT,
        "version": VERSION,
        "backend": header.backend,
        "schema_version": header.schema_version,
        "created_at": header.created_at,
        "tables": tables,
    }))
    .map_err(io)?;

    let mut snapshot = store.begin_export().await?;
    let mut counts = Vec::with_capacity(store::TABLES.len());
    for spec in store::TABLES {
        let limit = if spec.name == "embeddings" { PAGE_ROWS_VECTORS } else { PAGE_ROWS };
        let mut after: Option<Vec<i64>> = None;
        let mut count = 0u64;
        loop {
            let rows = snapshot.export_rows(spec.name, after.as_deref(), limit).await?;
            for row in &rows {
                out.line(&serde_json::json!({ "table": spec.name, "row": row })).map_err(io)?;
            }
            count += rows.len() as u64;
            match rows.last() {
                Some(last) if rows.len() as i64 == limit => after = Some(store::row_key(spec, last)?),
                _ => break,
            }
        }
        counts.push((spec.name.to_string(), count));
    }
    drop(snapshot);

    let checksum = out.hasher.finalize().to_hex().to_string();
    let rows: serde_json::Map<String, Value> =
        counts.iter().map(|(t, n)| (t.clone(), Value::from(*n))).collect();
    out.line(&serde_json::json!({ "trailer": { "rows": rows, "blake3": checksum } })).map_err(io)?;
    let bytes = out.bytes;
    let file = out.inner.into_inner().map_err(|e| io(e.into_error()))?;
    file.sync_all().map_err(io)?;
    Ok(Summary { header, rows: counts, bytes })
}

/// A writer that hashes and counts what passes through it.
struct HashingWriter<W: Write> {
    inner: W,
    hasher: blake3::Hasher,
    bytes: u64,
}

impl<W: Write> HashingWriter<W> {
    fn line(&mut self, value: &Value) -> std::io::Result<()> {
        let mut text = serde_json::to_vec(value).map_err(std::io::Error::other)?;
        text.push(b'\n');
        self.hasher.update(&text);
        self.bytes += text.len() as u64;
        self.inner.write_all(&text)
    }
}

/// Validates a whole backup file without touching any database: header, version, every line,
/// table order, and the trailer's counts and checksum.
pub fn validate(path: &Path) -> Result<Summary> {
    let mut reader = Reader::open(path)?;
    while reader.next_row()?.is_some() {}
    Ok(reader.summary())
}

/// Restores a backup into `store`: validates the whole file first, migrates the store to the
/// latest schema, then inserts every row in one transaction. Refuses a store holding any row
/// unless `force` (which replaces its contents).
pub async fn restore(store: &dyn Store, path: &Path, force: bool) -> Result<Summary> {
    let summary = validate(path)?;
    restore_validated(store, path, force, &summary).await
}

/// [`restore`] for a file [`validate`] already accepted (giving `summary`), so a caller that
/// validates before opening the store does not read the file a third time. The load still
/// re-checks the trailer before committing.
pub async fn restore_validated(
    store: &dyn Store,
    path: &Path,
    force: bool,
    summary: &Summary,
) -> Result<Summary> {
    let latest = store.status().await?.latest_version;
    if !(OLDEST_SCHEMA..=latest).contains(&summary.header.schema_version) {
        return Err(BackupError::SchemaMismatch { found: summary.header.schema_version, expected: latest });
    }
    store.migrate_up().await?;
    let mut session = store.begin_restore(force).await.map_err(|e| match e {
        StoreError::Conflict(what) => StoreError::Conflict(format!(
            "{what}; restoring would replace its contents: pass --force to do so"
        )),
        other => other,
    })?;

    let mut reader = Reader::open(path)?;
    let mut batch: Vec<store::Row> = Vec::new();
    let mut batch_table: Option<&'static TableSpec> = None;
    let mut batch_bytes = 0usize;
    while let Some((spec, row, bytes)) = reader.next_row()? {
        if let Some(current) = batch_table
            && (current.name != spec.name || batch.len() >= BATCH_ROWS || batch_bytes >= BATCH_BYTES)
        {
            session.import_rows(current.name, &batch).await?;
            batch.clear();
            batch_bytes = 0;
        }
        batch_table = Some(spec);
        batch.push(row);
        batch_bytes += bytes;
    }
    if let Some(current) = batch_table
        && !batch.is_empty()
    {
        session.import_rows(current.name, &batch).await?;
    }
    // The second pass re-checked the trailer, so the file did not change since validation.
    session.finish().await?;
    Ok(reader.summary())
}

/// Reads a backup line by line, checking as it goes; [`Reader::next_row`] returns `None` only
/// after the trailer matched and the file ended there.
struct Reader {
    path: PathBuf,
    input: BufReader<File>,
    hasher: blake3::Hasher,
    line: u64,
    bytes: u64,
    header: Header,
    counts: Vec<u64>,
    /// Index in the catalog of the last row's table: tables must not go backwards.
    table_index: usize,
    done: bool,
    buf: Vec<u8>,
}

impl Reader {
    fn open(path: &Path) -> Result<Reader> {
        let file = File::open(path).map_err(|source| BackupError::Io { path: path.to_path_buf(), source })?;
        let mut reader = Reader {
            path: path.to_path_buf(),
            input: BufReader::with_capacity(1 << 20, file),
            hasher: blake3::Hasher::new(),
            line: 0,
            bytes: 0,
            header: Header { backend: String::new(), schema_version: 0, created_at: String::new() },
            counts: vec![0; store::TABLES.len()],
            table_index: 0,
            done: false,
            buf: Vec::new(),
        };
        if !reader.read_line()? {
            return Err(BackupError::NotABackup("the file is empty".into()));
        }
        let value: Value = serde_json::from_slice(&reader.buf)
            .map_err(|e| BackupError::NotABackup(format!("the first line is not a JSON header ({e})")))?;
        if value.get("format").and_then(Value::as_str) != Some(FORMAT) {
            return Err(BackupError::NotABackup(format!("the header does not say \"format\":\"{FORMAT}\"")));
        }
        match value.get("version") {
            Some(v) if v.as_u64() == Some(VERSION) => {}
            Some(v) => return Err(BackupError::UnsupportedVersion { found: v.to_string() }),
            None => return Err(BackupError::UnsupportedVersion { found: "missing".into() }),
        }
        let corrupt = |message: &str| BackupError::Corrupt { line: 1, message: message.to_string() };
        reader.header = Header {
            backend: value
                .get("backend")
                .and_then(Value::as_str)
                .ok_or_else(|| corrupt("no backend"))?
                .into(),
            schema_version: value
                .get("schema_version")
                .and_then(Value::as_i64)
                .ok_or_else(|| corrupt("no schema_version"))?,
            created_at: value.get("created_at").and_then(Value::as_str).unwrap_or_default().into(),
        };
        reader.hasher.update(&reader.buf);
        Ok(reader)
    }

    /// Reads the next line (with its `\n`) into `buf`; `false` at the end of the file.
    fn read_line(&mut self) -> Result<bool> {
        self.buf.clear();
        let n = self
            .input
            .read_until(b'\n', &mut self.buf)
            .map_err(|source| BackupError::Io { path: self.path.clone(), source })?;
        if n == 0 {
            return Ok(false);
        }
        self.line += 1;
        self.bytes += n as u64;
        if self.buf.last() != Some(&b'\n') {
            return Err(BackupError::Truncated(format!("line {} is incomplete", self.line)));
        }
        Ok(true)
    }

    /// The next row with its table and the size of its line, or `None` after a matching trailer.
    fn next_row(&mut self) -> Result<Option<(&'static TableSpec, store::Row, usize)>> {
        if self.done {
            return Ok(None);
        }
        if !self.read_line()? {
            return Err(BackupError::Truncated(format!(
                "no trailer: the file ends after line {}",
                self.line
            )));
        }
        let line = self.line;
        let corrupt = |message: String| BackupError::Corrupt { line, message };
        let value: Value =
            serde_json::from_slice(&self.buf).map_err(|e| corrupt(format!("not JSON ({e})")))?;
        let Value::Object(mut object) = value else {
            return Err(corrupt("not a JSON object".into()));
        };
        if let Some(trailer) = object.remove("trailer") {
            self.check_trailer(&trailer)?;
            self.done = true;
            let mut rest = [0u8; 1];
            let extra = self
                .input
                .read(&mut rest)
                .map_err(|source| BackupError::Io { path: self.path.clone(), source })?;
            if extra > 0 {
                return Err(BackupError::Mismatch(format!("data after the trailer on line {line}")));
            }
            return Ok(None);
        }
        let table = object.get("table").and_then(Value::as_str).ok_or_else(|| corrupt("no table".into()))?;
        let index = store::TABLES
            .iter()
            .position(|t| t.name == table)
            .ok_or_else(|| corrupt(format!("unknown table {table:?}")))?;
        if index < self.table_index {
            return Err(corrupt(format!("table {table:?} out of order")));
        }
        let spec = &store::TABLES[index];
        let Some(Value::Object(mut row)) = object.remove("row") else {
            return Err(corrupt("no row object".into()));
        };
        upgrade_row(self.header.schema_version, spec.name, &mut row);
        store::validate_row(spec, &row).map_err(|e| corrupt(e.to_string()))?;
        self.table_index = index;
        self.counts[index] += 1;
        self.hasher.update(&self.buf);
        Ok(Some((spec, row, self.buf.len())))
    }

    fn check_trailer(&self, trailer: &Value) -> Result<()> {
        let line = self.line;
        let corrupt = |message: &str| BackupError::Corrupt { line, message: message.to_string() };
        let rows =
            trailer.get("rows").and_then(Value::as_object).ok_or_else(|| corrupt("trailer without rows"))?;
        for (i, spec) in store::TABLES.iter().enumerate() {
            let expected = rows.get(spec.name).and_then(Value::as_u64);
            if expected != Some(self.counts[i]) {
                return Err(BackupError::Mismatch(format!(
                    "the trailer counts {} rows of {}, the file holds {}",
                    expected.map_or_else(|| "no".to_string(), |n| n.to_string()),
                    spec.name,
                    self.counts[i]
                )));
            }
        }
        if let Some(unknown) = rows.keys().find(|k| store::table(k).is_none()) {
            return Err(corrupt(&format!("trailer counts unknown table {unknown:?}")));
        }
        let expected =
            trailer.get("blake3").and_then(Value::as_str).ok_or_else(|| corrupt("trailer without blake3"))?;
        let actual = self.hasher.finalize().to_hex();
        if expected != actual.as_str() {
            return Err(BackupError::Mismatch("the checksum does not match the contents".into()));
        }
        Ok(())
    }

    fn summary(&self) -> Summary {
        Summary {
            header: self.header.clone(),
            rows: store::TABLES.iter().zip(&self.counts).map(|(t, n)| (t.name.to_string(), *n)).collect(),
            bytes: self.bytes,
        }
    }
}

/// Brings a row read at an older schema version to the current schema: each column a later
/// migration added gets the value that migration gave the rows already there.
fn upgrade_row(schema_version: i64, table: &str, row: &mut store::Row) {
    // 0002_embedding_input_mode: embeddings stored before it read 'whole'.
    if schema_version < 2 && table == "embeddings" {
        row.entry("input_mode").or_insert_with(|| Value::from(store::InputMode::Whole.as_str()));
    }
}
