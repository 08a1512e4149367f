//! Whole-table export and import for backup and restore: the catalog of every table and column
//! in one backend-neutral form, the canonical JSON value of each column kind, and the session
//! traits each backend implements ([`ExportSnapshot`], [`RestoreSession`]).
//!
//! **Canonical values.** A row is a JSON object with one key per column, so the
//! same data reads the same from either backend and a backup moves between them:
//! integers are JSON integers, floats JSON numbers, booleans `true`/`false` (SQLite's 0/1
//! included), timestamps RFC 3339 UTC strings with six fractional digits
//! (`2024-05-06T07:08:09.123000Z`), JSON columns JSON values with object keys sorted (PostgreSQL's
//! `jsonb` reorders keys, SQLite keeps the text as written), string lists JSON arrays of strings,
//! and vectors the standard base64 (padded) of their little-endian `f32`s, which is exactly
//! SQLite's BLOB and a third of the size of a float array. The vector column is `vector` here;
//! PostgreSQL calls it `embedding`.

use async_trait::async_trait;
use base64::Engine as _;

use super::{Result, StoreError};

/// One row in canonical form: column name to value.
pub type Row = serde_json::Map<String, serde_json::Value>;

/// What a column holds, which decides its canonical JSON form and its type in each backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColumnKind {
    Int,
    Float,
    Text,
    Bool,
    Timestamp,
    Json,
    /// A list of strings: a JSON array in SQLite, `text[]` in PostgreSQL.
    TextList,
    /// Little-endian `f32`s: a BLOB in SQLite, `vector` or `real[]` in PostgreSQL.
    Vector,
}

/// One table as backup and restore see it.
#[derive(Debug)]
pub struct TableSpec {
    pub name: &'static str,
    /// The key rows are paged by (keyset pagination), ascending; every key column is an integer.
    pub key: &'static [&'static str],
    pub columns: &'static [(&'static str, ColumnKind)],
}

impl TableSpec {
    /// The kind of a column, `None` when the table has no such column.
    pub fn column(&self, name: &str) -> Option<ColumnKind> {
        self.columns.iter().find(|(c, _)| *c == name).map(|(_, k)| *k)
    }

    /// Whether the table has an `id` identity column (a sequence to reset in PostgreSQL).
    pub fn has_id(&self) -> bool {
        self.key == ["id"]
    }
}

use ColumnKind::{Bool, Float, Int, Json, Text, TextList, Timestamp, Vector};

/// Every table of the schema, parents before children (the order a restore inserts in). Views,
/// SQLite's FTS index and PostgreSQL's generated `tsvector` are derived and not listed.
pub static TABLES: &[TableSpec] = &[
    TableSpec {
        name: "users",
        key: &["id"],
        columns: &[
            ("id", Int),
            ("email", Text),
            ("username", Text),
            ("display_name", Text),
            ("github_username", Text),
            ("is_active", Bool),
            ("is_admin", Bool),
            ("preferences", Json),
            ("last_login_at", Timestamp),
            ("created_at", Timestamp),
            ("updated_at", Timestamp),
        ],
    },
    TableSpec {
        name: "api_tokens",
        key: &["id"],
        columns: &[
            ("id", Int),
            ("user_id", Int),
            ("name", Text),
            ("token_hash", Text),
            ("prefix", Text),
            ("scopes", TextList),
            ("expires_at", Timestamp),
            ("last_used_at", Timestamp),
            ("revoked_at", Timestamp),
            ("created_at", Timestamp),
        ],
    },
    TableSpec {
        name: "projects",
        key: &["id"],
        columns: &[
            ("id", Int),
            ("owner_id", Int),
            ("name", Text),
            ("root_path", Text),
            ("repository_url", Text),
            ("default_branch", Text),
            ("settings", Json),
            ("total_files", Int),
            ("total_size_bytes", Int),
            ("total_chunks", Int),
            ("last_indexed_commit", Text),
            ("last_indexed_at", Timestamp),
            ("created_at", Timestamp),
            ("updated_at", Timestamp),
        ],
    },
    TableSpec {
        name: "project_members",
        key: &["project_id", "user_id"],
        columns: &[("project_id", Int), ("user_id", Int), ("role", Text), ("created_at", Timestamp)],
    },
    TableSpec {
        name: "index_runs",
        key: &["id"],
        columns: &[
            ("id", Int),
            ("project_id", Int),
            ("trigger", Text),
            ("status", Text),
            ("paths", TextList),
            ("commit_sha", Text),
            ("files_indexed", Int),
            ("files_skipped", Int),
            ("files_deleted", Int),
            ("chunks", Int),
            ("chunks_embedded", Int),
            ("embedding_cache_hits", Int),
            ("tokens_embedded", Int),
            ("error", Text),
            ("lease_owner", Text),
            ("lease_expires_at", Timestamp),
            ("created_at", Timestamp),
            ("started_at", Timestamp),
            ("finished_at", Timestamp),
            ("updated_at", Timestamp),
        ],
    },
    TableSpec {
        name: "index_run_events",
        key: &["id"],
        columns: &[
            ("id", Int),
            ("run_id", Int),
            ("phase", Text),
            ("event", Text),
            ("message", Text),
            ("data", Json),
            ("created_at", Timestamp),
        ],
    },
    TableSpec {
        name: "commits",
        key: &["id"],
        columns: &[
            ("id", Int),
            ("project_id", Int),
            ("sha", Text),
            ("parents", TextList),
            ("message", Text),
            ("author_name", Text),
            ("author_email", Text),
            ("branch", Text),
            ("committed_at", Timestamp),
            ("files_changed", Int),
            ("additions", Int),
            ("deletions", Int),
            ("created_at", Timestamp),
        ],
    },
    TableSpec {
        name: "files",
        key: &["id"],
        columns: &[
            ("id", Int),
            ("project_id", Int),
            ("path", Text),
            ("language", Text),
            ("size", Int),
            ("line_count", Int),
            ("content_hash", Text),
            ("mtime_ns", Int),
            ("is_binary", Bool),
            ("is_generated", Bool),
            ("skip_reason", Text),
            ("diagnostics_count", Int),
            ("chunker_version", Int),
            ("indexed_at", Timestamp),
            ("created_at", Timestamp),
            ("updated_at", Timestamp),
        ],
    },
    TableSpec {
        name: "symbols",
        key: &["id"],
        columns: &[
            ("id", Int),
            ("file_id", Int),
            ("project_id", Int),
            ("parent_id", Int),
            ("name", Text),
            ("qualified_name", Text),
            ("kind", Text),
            ("signature", Text),
            ("start_line", Int),
            ("end_line", Int),
            ("start_byte", Int),
            ("end_byte", Int),
            ("exported", Bool),
        ],
    },
    TableSpec {
        name: "imports",
        key: &["id"],
        columns: &[
            ("id", Int),
            ("file_id", Int),
            ("project_id", Int),
            ("specifier", Text),
            ("resolved_path", Text),
            ("resolved_file_id", Int),
            ("external_package", Text),
            ("kind", Text),
            ("names", TextList),
            ("line", Int),
        ],
    },
    TableSpec {
        name: "chunks",
        key: &["id"],
        columns: &[
            ("id", Int),
            ("file_id", Int),
            ("project_id", Int),
            ("ordinal", Int),
            ("content", Text),
            ("content_hash", Text),
            ("start_line", Int),
            ("end_line", Int),
            ("start_byte", Int),
            ("end_byte", Int),
            ("symbol_path", Text),
            ("kind", Text),
            ("language", Text),
            ("token_count", Int),
            ("commit_sha", Text),
            ("index_run_id", Int),
            ("lexical", Text),
        ],
    },
    TableSpec {
        name: "embedding_models",
        key: &["id"],
        columns: &[
            ("id", Int),
            ("provider", Text),
            ("model", Text),
            ("dimensions", Int),
            ("created_at", Timestamp),
        ],
    },
    TableSpec {
        name: "embeddings",
        key: &["id"],
        columns: &[
            ("id", Int),
            ("model_id", Int),
            ("content_hash", Text),
            ("vector", Vector),
            ("created_at", Timestamp),
            ("input_mode", Text),
        ],
    },
    TableSpec {
        name: "agents",
        key: &["id"],
        columns: &[
            ("id", Int),
            ("name", Text),
            ("kind", Text),
            ("model", Text),
            ("config", Json),
            ("is_active", Bool),
            ("created_at", Timestamp),
            ("updated_at", Timestamp),
        ],
    },
    TableSpec {
        name: "tasks",
        key: &["id"],
        columns: &[
            ("id", Int),
            ("project_id", Int),
            ("parent_id", Int),
            ("title", Text),
            ("description", Text),
            ("status", Text),
            ("priority", Int),
            ("assigned_agent_id", Int),
            ("created_by", Int),
            ("created_at", Timestamp),
            ("updated_at", Timestamp),
            ("completed_at", Timestamp),
        ],
    },
    TableSpec {
        name: "executions",
        key: &["id"],
        columns: &[
            ("id", Int),
            ("task_id", Int),
            ("agent_id", Int),
            ("status", Text),
            ("input_tokens", Int),
            ("output_tokens", Int),
            ("cost_usd", Float),
            ("duration_ms", Int),
            ("error", Text),
            ("started_at", Timestamp),
            ("finished_at", Timestamp),
        ],
    },
    TableSpec {
        name: "reviews",
        key: &["id"],
        columns: &[
            ("id", Int),
            ("project_id", Int),
            ("commit_id", Int),
            ("reviewer_agent_id", Int),
            ("reviewer_user_id", Int),
            ("score", Int),
            ("summary", Text),
            ("issues", Json),
            ("suggestions", Json),
            ("created_at", Timestamp),
            ("updated_at", Timestamp),
        ],
    },
    TableSpec {
        name: "activity_log",
        key: &["id"],
        columns: &[
            ("id", Int),
            ("project_id", Int),
            ("user_id", Int),
            ("action", Text),
            ("source", Text),
            ("subject_type", Text),
            ("subject_id", Int),
            ("details", Json),
            ("created_at", Timestamp),
        ],
    },
];

/// The catalog entry of a table, `None` for a name that is not one of the schema's tables.
pub fn table(name: &str) -> Option<&'static TableSpec> {
    TABLES.iter().find(|t| t.name == name)
}

/// The catalog entry of a table, or `Invalid` naming it.
pub(crate) fn table_or_invalid(name: &str) -> Result<&'static TableSpec> {
    table(name).ok_or_else(|| StoreError::Invalid(format!("unknown table {name:?}")))
}

/// A consistent, read-only view of the whole store (one read transaction), paged table by table.
#[async_trait]
pub trait ExportSnapshot: Send {
    /// Up to `limit` rows of `table` in key order, starting after the key `after` (the key
    /// columns' values of the last row of the previous page; `None` for the first page).
    async fn export_rows(&mut self, table: &str, after: Option<&[i64]>, limit: i64) -> Result<Vec<Row>>;
}

/// A restore in progress: one write transaction in which triggers that would re-derive stored
/// values (stats, `updated_at`, activity entries) are held off, so rows land exactly as given.
/// Dropping the session without [`RestoreSession::finish`] rolls everything back.
#[async_trait]
pub trait RestoreSession: Send {
    /// Inserts rows of `table` as they are, ids included. Rows must be in canonical form
    /// (see [`validate_row`]); tables must come in [`TABLES`] order.
    async fn import_rows(&mut self, table: &str, rows: &[Row]) -> Result<u64>;
    /// Recomputes project stats from the restored rows (one count, once), moves id sequences past
    /// the restored ids, rebuilds what is derived (full-text index, per-model vector indexes),
    /// restores the held-off triggers and commits.
    async fn finish(self: Box<Self>) -> Result<()>;
}

/// The key of a row: the values of the table's key columns.
pub fn row_key(spec: &TableSpec, row: &Row) -> Result<Vec<i64>> {
    spec.key
        .iter()
        .map(|k| {
            row.get(*k)
                .and_then(serde_json::Value::as_i64)
                .ok_or_else(|| StoreError::Invalid(format!("{} row without an integer {k}", spec.name)))
        })
        .collect()
}

/// Checks that a row has exactly the table's columns, each null or of its kind's canonical form.
/// Constraints (NOT NULL, CHECKs, foreign keys) are the database's to enforce.
pub fn validate_row(spec: &TableSpec, row: &Row) -> Result<()> {
    let invalid = |what: String| StoreError::Invalid(format!("{} row: {what}", spec.name));
    if row.len() != spec.columns.len() {
        for key in row.keys() {
            if spec.column(key).is_none() {
                return Err(invalid(format!("unknown column {key:?}")));
            }
        }
        for (name, _) in spec.columns {
            if !row.contains_key(*name) {
                return Err(invalid(format!("missing column {name:?}")));
            }
        }
    }
    for (name, kind) in spec.columns {
        let value = row.get(*name).ok_or_else(|| invalid(format!("missing column {name:?}")))?;
        if value.is_null() {
            continue;
        }
        let ok = match kind {
            Int => value.is_i64(),
            Float => value.is_number(),
            Text => value.is_string(),
            Bool => value.is_boolean(),
            Timestamp => value.as_str().is_some_and(|s| parse_timestamp(s).is_some()),
            Json => true,
            TextList => value.as_array().is_some_and(|a| a.iter().all(serde_json::Value::is_string)),
            Vector => value.as_str().is_some_and(|s| decode_vector(s).is_ok()),
        };
        if !ok {
            return Err(invalid(format!("column {name:?} is not a valid {kind:?} value")));
        }
    }
    for key in spec.key {
        if !row.get(*key).is_some_and(serde_json::Value::is_i64) {
            return Err(invalid(format!("key column {key:?} is not an integer")));
        }
    }
    Ok(())
}

/// Parses a timestamp in RFC 3339 or SQLite's `YYYY-MM-DD HH:MM:SS[.fff]` (UTC) form.
pub fn parse_timestamp(text: &str) -> Option<chrono::DateTime<chrono::Utc>> {
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(text) {
        return Some(t.with_timezone(&chrono::Utc));
    }
    chrono::NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S%.f").ok().map(|t| t.and_utc())
}

/// The canonical text of a timestamp: RFC 3339 UTC with six fractional digits.
pub fn format_timestamp(t: chrono::DateTime<chrono::Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
}

/// A JSON value with every object's keys sorted, so equal documents serialise equally whichever
/// backend stored them.
pub fn canonical_json(value: serde_json::Value) -> serde_json::Value {
    match value {
        serde_json::Value::Object(map) => {
            let mut entries: Vec<(String, serde_json::Value)> = map.into_iter().collect();
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            serde_json::Value::Object(entries.into_iter().map(|(k, v)| (k, canonical_json(v))).collect())
        }
        serde_json::Value::Array(items) => {
            serde_json::Value::Array(items.into_iter().map(canonical_json).collect())
        }
        other => other,
    }
}

/// The canonical text of a vector's little-endian bytes.
pub fn encode_vector_bytes(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// The canonical text of a vector.
pub fn encode_vector(vector: &[f32]) -> String {
    let bytes: Vec<u8> = vector.iter().flat_map(|x| x.to_le_bytes()).collect();
    encode_vector_bytes(&bytes)
}

/// The little-endian bytes of a canonical vector.
pub fn decode_vector_bytes(text: &str) -> Result<Vec<u8>> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(text)
        .map_err(|e| StoreError::Invalid(format!("vector is not base64: {e}")))?;
    if bytes.is_empty() || !bytes.len().is_multiple_of(4) {
        return Err(StoreError::Invalid(format!("vector of {} bytes is not a list of f32", bytes.len())));
    }
    Ok(bytes)
}

/// The `f32`s of a canonical vector.
pub fn decode_vector(text: &str) -> Result<Vec<f32>> {
    let bytes = decode_vector_bytes(text)?;
    Ok(bytes.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn catalog_keys_are_columns() {
        for spec in TABLES {
            for key in spec.key {
                assert_eq!(spec.column(key), Some(Int), "{}.{key}", spec.name);
            }
        }
        assert!(table("chunks").is_some());
        assert!(table("chunks_fts").is_none());
    }

    #[test]
    fn vectors_round_trip_through_base64() {
        let v = [0.1f32, -2.5, 1e-30];
        assert_eq!(decode_vector(&encode_vector(&v)).unwrap(), v);
        assert!(decode_vector("AAA=").is_err());
        assert!(decode_vector("not base64!").is_err());
    }

    #[test]
    fn timestamps_are_canonical_from_either_backend() {
        let sqlite = parse_timestamp("2024-05-06T07:08:09.123Z").unwrap();
        let pg = parse_timestamp("2024-05-06 07:08:09.123").unwrap();
        assert_eq!(format_timestamp(sqlite), "2024-05-06T07:08:09.123000Z");
        assert_eq!(sqlite, pg);
    }

    #[test]
    fn json_keys_are_sorted_deeply() {
        let v = serde_json::json!({"b": 1, "a": [{"d": 1, "c": 2}]});
        assert_eq!(canonical_json(v).to_string(), r#"{"a":[{"c":2,"d":1}],"b":1}"#);
    }

    #[test]
    fn rows_are_checked_against_the_catalog() {
        let spec = table("embedding_models").unwrap();
        let mut row: Row = serde_json::from_value(serde_json::json!({
            "id": 1, "provider": "builtin", "model": "m", "dimensions": 4,
            "created_at": "2024-05-06T07:08:09.123000Z"
        }))
        .unwrap();
        validate_row(spec, &row).unwrap();
        row.insert("dimensions".into(), serde_json::json!("four"));
        assert!(validate_row(spec, &row).is_err());
        row.insert("dimensions".into(), serde_json::json!(4));
        row.insert("extra".into(), serde_json::json!(1));
        assert!(validate_row(spec, &row).unwrap_err().to_string().contains("extra"));
    }
}
