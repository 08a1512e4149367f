//! The store suite. Each `suite_*` function checks one behaviour through `&dyn Store` only, so the
//! same functions run against every backend: here on SQLite (a fresh file per test, migrated),
//! and from the PostgreSQL runner on a fresh database. SQLite-only checks (pragmas, FTS
//! integrity, raw catalog) are at the end.

use semdex::store::{
    ChunkRecord, FileRecord, FileWrite, ImportRecord, NewProject, NewToken, Project, RunCounts, RunStatus,
    SearchScope, SqliteStore, Store, StoreError, SymbolRecord, TermMatch,
};

// Fixtures ----------------------------------------------------------------------------------

/// blake3 hex of a text, as the indexer computes content hashes.
pub fn hash(text: &str) -> String {
    blake3::hash(text.as_bytes()).to_hex().to_string()
}

/// Builds a [`FileWrite`] the way the indexer would: chunks tile the file in order, lines and
/// bytes follow from the contents, the lexical document from path, symbol path and content.
pub struct FileBuilder {
    path: String,
    language: String,
    contents: Vec<(String, String)>,
    symbols: Vec<SymbolRecord>,
    imports: Vec<ImportRecord>,
    skip_reason: Option<String>,
}

pub fn file(path: &str) -> FileBuilder {
    FileBuilder {
        path: path.to_string(),
        language: "typescript".into(),
        contents: Vec::new(),
        symbols: Vec::new(),
        imports: Vec::new(),
        skip_reason: None,
    }
}

impl FileBuilder {
    pub fn language(mut self, language: &str) -> Self {
        self.language = language.to_string();
        self
    }

    /// Appends a chunk (on its own lines) under `symbol_path`.
    pub fn chunk(mut self, symbol_path: &str, content: &str) -> Self {
        self.contents.push((symbol_path.to_string(), content.to_string()));
        self
    }

    /// Adds a symbol spanning line 1; `parent` indexes earlier symbols.
    pub fn symbol(mut self, qualified_name: &str, kind: &str, exported: bool, parent: Option<usize>) -> Self {
        let name = qualified_name.rsplit('.').next().unwrap_or(qualified_name).to_string();
        self.symbols.push(SymbolRecord {
            name,
            qualified_name: qualified_name.to_string(),
            kind: kind.to_string(),
            signature: format!("{qualified_name}()"),
            start_line: 1,
            end_line: 1,
            start_byte: 0,
            end_byte: 1,
            exported,
            parent,
        });
        self
    }

    /// Adds a symbol starting and ending on `line`.
    pub fn symbol_at(self, line: i32, qualified_name: &str, kind: &str, exported: bool) -> Self {
        let mut this = self.symbol(qualified_name, kind, exported, None);
        let added = this.symbols.last_mut().unwrap();
        (added.start_line, added.end_line) = (line, line);
        this
    }

    /// Adds an import resolved to `target` (a path in the same project) when given.
    pub fn import(mut self, specifier: &str, target: Option<&str>, kind: &str) -> Self {
        self.imports.push(ImportRecord {
            specifier: specifier.to_string(),
            resolved_path: target.map(str::to_string),
            external_package: if target.is_none() { Some(specifier.to_string()) } else { None },
            kind: kind.to_string(),
            names: vec!["default".into(), "x".into()],
            line: self.imports.len() as i32 + 1,
        });
        self
    }

    pub fn skipped(mut self, reason: &str) -> Self {
        self.skip_reason = Some(reason.to_string());
        self
    }

    pub fn build(self) -> FileWrite {
        let mut chunks = Vec::new();
        let mut text = String::new();
        let mut line = 1;
        for (ordinal, (symbol_path, content)) in self.contents.iter().enumerate() {
            let lines = content.lines().count().max(1) as i32;
            let start_byte = text.len() as i64;
            text.push_str(content);
            text.push('\n');
            chunks.push(ChunkRecord {
                ordinal: ordinal as i32,
                content: content.clone(),
                content_hash: hash(content),
                start_line: line,
                end_line: line + lines - 1,
                start_byte,
                end_byte: text.len() as i64,
                symbol_path: symbol_path.clone(),
                kind: "symbol".into(),
                language: self.language.clone(),
                token_count: content.split_whitespace().count() as i32,
                lexical: semdex::lexical::document(&self.path, symbol_path, content),
            });
            line += lines;
        }
        let skipped = self.skip_reason.is_some();
        FileWrite {
            file: FileRecord {
                path: self.path,
                language: Some(self.language),
                size: text.len() as i64,
                line_count: line - 1,
                content_hash: (!skipped).then(|| hash(&text)),
                mtime_ns: 1_700_000_000_000_000_000,
                is_binary: false,
                is_generated: false,
                skip_reason: self.skip_reason,
                diagnostics_count: 0,
                chunker_version: 1,
            },
            symbols: self.symbols,
            imports: self.imports,
            chunks,
        }
    }
}

pub async fn project(store: &dyn Store, name: &str) -> Project {
    store
        .create_project(NewProject {
            name: name.to_string(),
            root_path: Some(format!("/src/{name}")),
            settings: serde_json::json!({"exclude": ["dist/**"]}),
            ..NewProject::default()
        })
        .await
        .unwrap()
}

pub fn scope(project_ids: &[i64]) -> SearchScope {
    SearchScope { project_ids: project_ids.to_vec(), ..SearchScope::default() }
}

/// Row count of a table as `status` reports it.
pub async fn rows(store: &dyn Store, table: &str) -> i64 {
    let status = store.status().await.unwrap();
    status
        .row_counts
        .iter()
        .find(|(t, _)| t == table)
        .map(|(_, n)| *n)
        .unwrap_or_else(|| panic!("no {table}"))
}

async fn stats(store: &dyn Store, id: i64) -> (i64, i64, i64) {
    let p = store.project(id).await.unwrap().unwrap();
    (p.total_files, p.total_size_bytes, p.total_chunks)
}

async fn lexical(store: &dyn Store, terms: &[&str], scope: &SearchScope) -> Vec<String> {
    lexical_matching(store, terms, TermMatch::Any, scope).await
}

async fn lexical_matching(
    store: &dyn Store,
    terms: &[&str],
    matching: TermMatch,
    scope: &SearchScope,
) -> Vec<String> {
    let terms: Vec<String> = terms.iter().map(|t| t.to_string()).collect();
    let hits = store.lexical_search(&terms, matching, scope, 10).await.unwrap();
    let ids: Vec<i64> = hits.iter().map(|h| h.chunk_id).collect();
    for pair in hits.windows(2) {
        assert!(pair[0].score >= pair[1].score, "scores not descending: {hits:?}");
    }
    store.chunks(&ids).await.unwrap().into_iter().map(|c| format!("{}#{}", c.path, c.ordinal)).collect()
}

const ALL_TABLES: [&str; 18] = [
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

// The suite ---------------------------------------------------------------------------------

/// Up, down (with data in place), up again: the schema is the same object for object, and down
/// leaves nothing behind.
pub async fn suite_migrations_round_trip(store: &dyn Store) {
    let status = store.status().await.unwrap();
    assert_eq!(status.schema_version, Some(status.latest_version));
    let before = store.schema_dump().await.unwrap();
    for table in ALL_TABLES {
        assert!(before.iter().any(|o| o.contains(table)), "{table} missing from the schema dump");
    }

    let p = project(store, "round-trip").await;
    store.replace_file(p.id, &file("a.ts").chunk("", "let a = 1;").build(), None, None).await.unwrap();

    // One step down reverts the latest migration only; its up gives the same schema back (a
    // version can change nothing on one backend: both number their schemas alike).
    store.migrate_down(None).await.unwrap();
    assert_eq!(store.status().await.unwrap().schema_version, Some(status.latest_version - 1));
    store.migrate_up().await.unwrap();
    assert_eq!(store.schema_dump().await.unwrap(), before);
    // Down to 0001: what the later ones added is gone; up again restores it all.
    store.migrate_down(Some(1)).await.unwrap();
    assert_eq!(store.status().await.unwrap().schema_version, Some(1));
    let first = store.schema_dump().await.unwrap();
    assert_ne!(first, before);
    assert!(!first.iter().any(|o| o.contains("input_mode")), "0002 left its column behind");
    assert!(!first.iter().any(|o| o.contains("symbols_trigram")), "0004 left its index behind");
    store.migrate_up().await.unwrap();
    assert_eq!(store.schema_dump().await.unwrap(), before);

    store.migrate_down(Some(0)).await.unwrap();
    assert_eq!(store.status().await.unwrap().schema_version, None);
    assert_eq!(store.schema_dump().await.unwrap(), Vec::<String>::new(), "down left objects behind");
    // Nothing left to revert.
    store.migrate_down(None).await.unwrap();

    store.migrate_up().await.unwrap();
    assert_eq!(store.schema_dump().await.unwrap(), before);
    store.migrate_up().await.unwrap();
    assert_eq!(store.schema_dump().await.unwrap(), before);
    assert_eq!(store.status().await.unwrap().schema_version, Some(status.latest_version));

    store.migrate_down(Some(0)).await.unwrap();
    assert_eq!(store.schema_dump().await.unwrap(), Vec::<String>::new());
    store.migrate_up().await.unwrap();
    assert_eq!(store.schema_dump().await.unwrap(), before);
    assert!(store.list_projects().await.unwrap().is_empty());
}

/// `status` reports every table, the schema version and a size.
pub async fn suite_status(store: &dyn Store) {
    let p = project(store, "status").await;
    store.replace_file(p.id, &file("a.ts").chunk("", "let a = 1;").build(), None, None).await.unwrap();
    let status = store.status().await.unwrap();
    let tables: Vec<&str> = status.row_counts.iter().map(|(t, _)| t.as_str()).collect();
    for table in ALL_TABLES {
        assert!(tables.contains(&table), "{table} missing from {tables:?}");
    }
    assert_eq!(rows(store, "projects").await, 1);
    assert_eq!(rows(store, "chunks").await, 1);
    assert!(status.size_bytes.unwrap_or(0) > 0);
}

/// Replacing a file twice with the same rows leaves the same rows and stats; replacing with
/// other rows replaces them all.
pub async fn suite_replace_file_idempotent(store: &dyn Store) {
    let p = project(store, "idem").await;
    let write = file("src/user.ts")
        .chunk("UserService", "export class UserService {\n  createUser() {}\n}")
        .chunk("helper", "function helper() { return 1; }")
        .symbol("UserService", "class", true, None)
        .symbol("UserService.createUser", "method", false, Some(0))
        .symbol("helper", "function", false, None)
        .import("./db", Some("src/db.ts"), "static")
        .import("lodash", None, "static")
        .build();

    store.replace_file(p.id, &write, None, Some("abc1234")).await.unwrap();
    let states = store.file_states(p.id).await.unwrap();
    let stats_once = stats(store, p.id).await;
    let counts_once =
        (rows(store, "symbols").await, rows(store, "imports").await, rows(store, "chunks").await);
    let chunk_once = store.chunk_at(p.id, "src/user.ts", 2).await.unwrap().unwrap();

    store.replace_file(p.id, &write, None, Some("abc1234")).await.unwrap();
    assert_eq!(store.file_states(p.id).await.unwrap(), states);
    assert_eq!(stats(store, p.id).await, stats_once);
    assert_eq!(
        (rows(store, "symbols").await, rows(store, "imports").await, rows(store, "chunks").await),
        counts_once
    );
    assert_eq!(counts_once, (3, 2, 2));
    let chunk_twice = store.chunk_at(p.id, "src/user.ts", 2).await.unwrap().unwrap();
    assert_eq!(ChunkViewSansId::from(&chunk_twice), ChunkViewSansId::from(&chunk_once));
    assert_eq!(chunk_twice.commit_sha.as_deref(), Some("abc1234"));
    assert_eq!(chunk_twice.project, "idem");

    assert_eq!(states.len(), 1);
    assert_eq!(states[0].path, "src/user.ts");
    assert_eq!(states[0].content_hash, write.file.content_hash);
    assert_eq!(states[0].chunker_version, 1);

    // A smaller version of the file replaces everything.
    let smaller = file("src/user.ts").chunk("", "export {};").build();
    store.replace_file(p.id, &smaller, None, None).await.unwrap();
    assert_eq!(
        (rows(store, "symbols").await, rows(store, "imports").await, rows(store, "chunks").await),
        (0, 0, 1)
    );
    assert_eq!(stats(store, p.id).await, (1, smaller.file.size, 1));
    assert!(store.chunk_at(p.id, "src/user.ts", 3).await.unwrap().is_none());
}

/// The comparable part of a chunk, without its id (a replaced chunk may get a new one).
#[derive(Debug, PartialEq)]
struct ChunkViewSansId(String, String, i32, String, String, i32, i32, String, String, String, i32);

impl From<&semdex::store::ChunkView> for ChunkViewSansId {
    fn from(c: &semdex::store::ChunkView) -> Self {
        ChunkViewSansId(
            c.project.clone(),
            c.path.clone(),
            c.ordinal,
            c.content.clone(),
            c.content_hash.clone(),
            c.start_line,
            c.end_line,
            c.symbol_path.clone(),
            c.kind.clone(),
            c.language.clone(),
            c.token_count,
        )
    }
}

/// Project stats follow inserts, replacements and deletions, per project.
pub async fn suite_stats_incremental(store: &dyn Store) {
    let p = project(store, "stats").await;
    let other = project(store, "other").await;
    assert_eq!(stats(store, p.id).await, (0, 0, 0));

    let a = file("a.ts").chunk("", "let a = 1;").chunk("", "let b = 2;").build();
    let b = file("b.ts").chunk("", "let c = 3;").build();
    let skipped = file("big.min.js").skipped("too_large").build();
    store.replace_file(p.id, &a, None, None).await.unwrap();
    store.replace_file(p.id, &b, None, None).await.unwrap();
    store.replace_file(p.id, &skipped, None, None).await.unwrap();
    store.replace_file(other.id, &b, None, None).await.unwrap();
    assert_eq!(stats(store, p.id).await, (3, a.file.size + b.file.size, 3));
    assert_eq!(stats(store, other.id).await, (1, b.file.size, 1));

    let a2 = file("a.ts").chunk("", "let a = 100;").chunk("", "let b = 2;").chunk("", "let z = 0;").build();
    store.replace_file(p.id, &a2, None, None).await.unwrap();
    assert_eq!(stats(store, p.id).await, (3, a2.file.size + b.file.size, 4));

    assert_eq!(store.delete_files(p.id, &["b.ts".into(), "nope.ts".into()]).await.unwrap(), 1);
    assert_eq!(stats(store, p.id).await, (2, a2.file.size, 3));
    assert_eq!(stats(store, other.id).await, (1, b.file.size, 1));

    assert_eq!(store.delete_files(p.id, &["a.ts".into(), "big.min.js".into()]).await.unwrap(), 2);
    assert_eq!(stats(store, p.id).await, (0, 0, 0));
    assert_eq!(store.delete_files(p.id, &[]).await.unwrap(), 0);
}

/// Natural keys: a second project with the same name, a second token with the same hash.
pub async fn suite_duplicate_conflict(store: &dyn Store) {
    project(store, "dup").await;
    match store.create_project(NewProject { name: "dup".into(), ..NewProject::default() }).await {
        Err(StoreError::Conflict(msg)) => assert!(msg.contains("dup"), "{msg}"),
        other => panic!("expected a conflict, got {other:?}"),
    }
    assert_eq!(store.list_projects().await.unwrap().len(), 1);

    let token = NewToken {
        name: "ci".into(),
        token_hash: hash("secret"),
        prefix: "sdx_ab".into(),
        scopes: vec!["read".into()],
        ..NewToken::default()
    };
    store.create_token(token.clone()).await.unwrap();
    assert!(matches!(store.create_token(token).await, Err(StoreError::Conflict(_))));

    // Two chunks of one file with the same ordinal.
    let p = store.project_by_name("dup").await.unwrap().unwrap();
    let mut write = file("a.ts").chunk("", "a").chunk("", "b").build();
    write.chunks[1].ordinal = 0;
    assert!(matches!(store.replace_file(p.id, &write, None, None).await, Err(StoreError::Conflict(_))));
    assert!(store.file_states(p.id).await.unwrap().is_empty(), "the failed write left rows");
}

/// Values outside an enum or a range are rejected as invalid, and the whole write with them.
pub async fn suite_bad_values_invalid(store: &dyn Store) {
    let p = project(store, "bad").await;
    let good = file("a.ts").chunk("f", "function f() {}").symbol("f", "function", true, None).import(
        "./b",
        Some("b.ts"),
        "static",
    );
    let good = good.build();
    store.replace_file(p.id, &good, None, None).await.unwrap();
    let before = (store.file_states(p.id).await.unwrap(), stats(store, p.id).await);

    let mut cases: Vec<(&str, FileWrite)> = Vec::new();
    let mut w = good.clone();
    w.symbols[0].kind = "widget".into();
    cases.push(("symbol kind", w));
    let mut w = good.clone();
    w.imports[0].kind = "weird".into();
    cases.push(("import kind", w));
    let mut w = good.clone();
    w.chunks[0].kind = "paragraph".into();
    cases.push(("chunk kind", w));
    let mut w = good.clone();
    w.chunks[0].start_line = 0;
    cases.push(("line 0", w));
    let mut w = good.clone();
    w.chunks[0].end_line = w.chunks[0].start_line - 1;
    cases.push(("end before start", w));
    let mut w = good.clone();
    w.symbols[0].end_byte = -1;
    cases.push(("end byte before start", w));
    let mut w = good.clone();
    w.chunks[0].content_hash = "not-a-hash".into();
    cases.push(("content hash", w));
    let mut w = good.clone();
    w.file.size = -5;
    cases.push(("negative size", w));
    let mut w = good.clone();
    w.symbols[0].parent = Some(7);
    cases.push(("parent out of range", w));
    let mut w = good.clone();
    w.file.path = String::new();
    cases.push(("empty path", w));

    for (what, write) in cases {
        match store.replace_file(p.id, &write, None, None).await {
            Err(StoreError::Invalid(_)) => {}
            other => panic!("{what}: expected invalid, got {other:?}"),
        }
        assert_eq!((store.file_states(p.id).await.unwrap(), stats(store, p.id).await), before, "{what}");
    }

    assert!(matches!(store.create_run(p.id, "cron", None, None).await, Err(StoreError::Invalid(_))));
    let run = store.create_run(p.id, "cli", None, None).await.unwrap();
    assert!(matches!(
        store.add_run_event(run.id, "walk", "exploded", None, serde_json::json!({})).await,
        Err(StoreError::Invalid(_))
    ));
    assert!(matches!(store.lease_run("w", -1).await, Err(StoreError::Invalid(_))));
    assert!(matches!(store.finish_run(run.id, RunStatus::Running, None).await, Err(StoreError::Invalid(_))));
    assert!(matches!(store.register_model("openai", "m", 0).await, Err(StoreError::Invalid(_))));
    assert!(matches!(
        store.create_project(NewProject { name: String::new(), ..NewProject::default() }).await,
        Err(StoreError::Invalid(_))
    ));
    assert!(matches!(
        store
            .create_project(NewProject {
                name: "array-settings".into(),
                settings: serde_json::json!([1]),
                ..NewProject::default()
            })
            .await,
        Err(StoreError::Invalid(_))
    ));
}

/// References to rows that do not exist are invalid.
pub async fn suite_orphan_fk_invalid(store: &dyn Store) {
    let missing = 987_654;
    let write = file("a.ts").chunk("", "let a;").build();
    assert!(matches!(store.replace_file(missing, &write, None, None).await, Err(StoreError::Invalid(_))));
    let p = project(store, "fk").await;
    assert!(matches!(
        store.replace_file(p.id, &write, Some(missing), None).await,
        Err(StoreError::Invalid(_))
    ));
    assert!(store.file_states(p.id).await.unwrap().is_empty());
    assert_eq!(stats(store, p.id).await, (0, 0, 0));
    assert!(matches!(store.create_run(missing, "cli", None, None).await, Err(StoreError::Invalid(_))));
    assert!(matches!(
        store.add_run_event(missing, "walk", "start", None, serde_json::json!({})).await,
        Err(StoreError::Invalid(_))
    ));
    let token = NewToken {
        user_id: Some(missing),
        name: "t".into(),
        token_hash: hash("t"),
        prefix: "sdx_".into(),
        ..NewToken::default()
    };
    assert!(matches!(store.create_token(token).await, Err(StoreError::Invalid(_))));
    assert!(matches!(
        store.set_last_indexed_commit(missing, Some("abc")).await,
        Err(StoreError::NotFound(_))
    ));
    assert!(matches!(
        store.update_run_counts(missing, &RunCounts::default()).await,
        Err(StoreError::NotFound(_))
    ));
    assert!(matches!(store.finish_run(missing, RunStatus::Failed, None).await, Err(StoreError::NotFound(_))));
    assert!(matches!(
        store.put_embeddings(missing, &[(hash("x"), vec![1.0])]).await,
        Err(StoreError::NotFound(_))
    ));
}

/// Full-text search: the denser match first, identifiers kept whole (`user_id` is one term),
/// prefixes, and the scope's projects and languages.
pub async fn suite_lexical_search(store: &dyn Store) {
    let p = project(store, "lex").await;
    let q = project(store, "lex-other").await;
    store
        .replace_file(
            p.id,
            &file("src/users.ts")
                .chunk(
                    "createUser",
                    "function createUser(user_id) { createUser(user_id); return createUser; }",
                )
                .chunk("other", "function other(user, id) { return user + id + 1 + 2 + 3 + 4 + 5; }")
                .build(),
            None,
            None,
        )
        .await
        .unwrap();
    store
        .replace_file(
            p.id,
            &file("src/misc.ts")
                .chunk("misc", "function misc() { const createUserLater = 1; return createUserLater; }")
                .build(),
            None,
            None,
        )
        .await
        .unwrap();
    store
        .replace_file(
            p.id,
            &file("lib/legacy.js").language("javascript").chunk("legacy", "function createUser() {}").build(),
            None,
            None,
        )
        .await
        .unwrap();
    store
        .replace_file(
            q.id,
            &file("src/users.ts").chunk("createUser", "function createUser() {}").build(),
            None,
            None,
        )
        .await
        .unwrap();

    let in_p = scope(&[p.id]);
    assert_eq!(lexical(store, &["createuser"], &in_p).await, ["src/users.ts#0", "lib/legacy.js#0"]);
    assert_eq!(lexical(store, &["user_id"], &in_p).await, ["src/users.ts#0"]);
    let mut prefix = lexical(store, &["createuserl*"], &in_p).await;
    prefix.sort();
    assert_eq!(prefix, ["src/misc.ts#0"]);
    // ORed: either term matches.
    let either = lexical(store, &["misc", "legacy"], &in_p).await;
    assert_eq!(either.len(), 2, "{either:?}");
    // ANDed: only chunks holding every term.
    assert!(lexical_matching(store, &["misc", "legacy"], TermMatch::All, &in_p).await.is_empty());
    assert_eq!(
        lexical_matching(store, &["createuser", "user_id"], TermMatch::All, &in_p).await,
        ["src/users.ts#0"]
    );
    let mut all = lexical_matching(store, &["function", "creat*"], TermMatch::All, &in_p).await;
    all.sort();
    assert_eq!(all, ["lib/legacy.js#0", "src/misc.ts#0", "src/users.ts#0"]);

    let ts_only =
        SearchScope { project_ids: vec![p.id], languages: vec!["typescript".into()], kinds: vec![] };
    assert_eq!(lexical(store, &["createuser"], &ts_only).await, ["src/users.ts#0"]);
    assert_eq!(lexical(store, &["createuser"], &scope(&[q.id])).await, ["src/users.ts#0"]);
    assert_eq!(lexical(store, &["createuser"], &scope(&[p.id, q.id])).await.len(), 3);
    assert!(lexical(store, &["createuser"], &scope(&[])).await.is_empty());
    assert!(lexical(store, &["\"", "*", "-"], &in_p).await.is_empty());
    // Query syntax inside a term is just text.
    assert!(lexical(store, &["NEAR(a b)", "x OR"], &in_p).await.is_empty());

    // Deleted and replaced chunks leave the index.
    store.delete_files(p.id, &["lib/legacy.js".into()]).await.unwrap();
    assert_eq!(lexical(store, &["createuser"], &in_p).await, ["src/users.ts#0"]);
    store
        .replace_file(p.id, &file("src/users.ts").chunk("", "const nothing = 0;").build(), None, None)
        .await
        .unwrap();
    assert!(lexical(store, &["createuser"], &in_p).await.is_empty());
}

/// A project whose matches rank below hundreds of another project's still gets all of them,
/// best first (the SQLite store ranks the full-text index's own top rows before the scope and
/// must look further when the scope filters those away).
pub async fn suite_lexical_search_scope_past_other_projects(store: &dyn Store) {
    let big = project(store, "lex-big").await;
    let small = project(store, "lex-small").await;
    for f in 0..15 {
        let mut w = file(&format!("f{f}.ts"));
        for c in 0..20 {
            w = w.chunk("", &format!("beacon beacon beacon {f} {c}"));
        }
        store.replace_file(big.id, &w.build(), None, None).await.unwrap();
    }
    let filler = "word ".repeat(40);
    let mut w = file("small.ts");
    for n in 1..=3 {
        w = w.chunk("", &format!("beacon {} {filler}", "pad ".repeat(n * 10)));
    }
    store.replace_file(small.id, &w.build(), None, None).await.unwrap();
    assert_eq!(
        lexical(store, &["beacon"], &scope(&[small.id])).await,
        ["small.ts#0", "small.ts#1", "small.ts#2"]
    );
    let both = lexical(store, &["beacon"], &scope(&[big.id, small.id])).await;
    assert_eq!(both.len(), 10);
    assert!(both.iter().all(|c| c.starts_with('f')), "{both:?}");
    // One of the small project's chunks now ranks among the best: the first answer holds it
    // alone, and the rest are still found further down.
    let strong = file("strong.ts").chunk("", "beacon beacon beacon beacon").build();
    store.replace_file(small.id, &strong, None, None).await.unwrap();
    assert_eq!(
        lexical(store, &["beacon"], &scope(&[small.id])).await,
        ["strong.ts#0", "small.ts#0", "small.ts#1", "small.ts#2"]
    );
}

/// Symbol search: exact, then prefix, then substring, case-insensitively; exported first.
pub async fn suite_symbol_search(store: &dyn Store) {
    let p = project(store, "sym").await;
    let q = project(store, "sym-other").await;
    store
        .replace_file(
            p.id,
            &file("a.ts")
                .chunk("", "x")
                .symbol("parse", "function", false, None)
                .symbol("reparse", "function", true, None)
                .symbol("Parser", "class", true, None)
                .symbol("Parser.parseBody", "method", false, Some(2))
                .build(),
            None,
            None,
        )
        .await
        .unwrap();
    store
        .replace_file(
            p.id,
            &file("b.ts")
                .chunk("", "y")
                .symbol("parse", "function", true, None)
                .symbol("parseHeaderLine", "function", true, None)
                .symbol("unrelated", "variable", true, None)
                .build(),
            None,
            None,
        )
        .await
        .unwrap();
    store
        .replace_file(
            q.id,
            &file("c.ts").chunk("", "z").symbol("parse", "function", true, None).build(),
            None,
            None,
        )
        .await
        .unwrap();

    let found = |results: Vec<semdex::store::SymbolView>| -> Vec<String> {
        results.into_iter().map(|s| format!("{}:{}", s.path, s.qualified_name)).collect()
    };
    let expected = [
        "b.ts:parse",
        "a.ts:parse",
        "a.ts:Parser",
        "b.ts:parseHeaderLine",
        "a.ts:Parser.parseBody",
        "a.ts:reparse",
    ];
    assert_eq!(found(store.symbol_search("parse", &scope(&[p.id]), 20).await.unwrap()), expected);
    assert_eq!(found(store.symbol_search("PARSE", &scope(&[p.id]), 20).await.unwrap()), expected);
    assert_eq!(found(store.symbol_search("parse", &scope(&[p.id]), 3).await.unwrap()), expected[..3]);
    // Qualified names match too.
    assert_eq!(
        found(store.symbol_search("parser.parsebody", &scope(&[p.id]), 20).await.unwrap()),
        ["a.ts:Parser.parseBody"]
    );
    assert_eq!(found(store.symbol_search("parse", &scope(&[q.id]), 20).await.unwrap()), ["c.ts:parse"]);
    // A prefix of the qualified name alone (a class's members) ranks after every prefix of a
    // name, and is found while there is room.
    let r = project(store, "sym-members").await;
    store
        .replace_file(
            r.id,
            &file("d.ts")
                .chunk("", "w")
                .symbol("Queue", "class", true, None)
                .symbol("Queue.push", "method", true, Some(0))
                .symbol("Queue.pop", "method", true, Some(0))
                .symbol("queueLength", "function", false, None)
                .build(),
            None,
            None,
        )
        .await
        .unwrap();
    let queue = ["d.ts:Queue", "d.ts:queueLength", "d.ts:Queue.pop", "d.ts:Queue.push"];
    for limit in 1..=5 {
        let got = found(store.symbol_search("queue", &scope(&[r.id]), limit as i64).await.unwrap());
        assert_eq!(got, queue[..limit.min(4)], "limit {limit}");
    }
    assert!(store.symbol_search("", &scope(&[p.id]), 20).await.unwrap().is_empty());
    assert!(store.symbol_search("zzz", &scope(&[p.id]), 20).await.unwrap().is_empty());
    // Substring matches only, in the phase's order (name matches, exported, shorter, name,
    // path), one list per word: through the trigram index when every word has three characters
    // or more, through a scan when one is shorter.
    let arse = [
        "b.ts:parse",
        "a.ts:Parser",
        "a.ts:reparse",
        "b.ts:parseHeaderLine",
        "a.ts:parse",
        "a.ts:Parser.parseBody",
    ];
    assert_eq!(found(store.symbol_search("ARSE", &scope(&[p.id]), 20).await.unwrap()), arse);
    for words in [["arse", "header"], ["arse", "ne"]] {
        let words: Vec<String> = words.map(String::from).to_vec();
        let lists = store.symbol_search_words(&words, &scope(&[p.id]), 20).await.unwrap();
        let lists: Vec<Vec<String>> = lists.into_iter().map(found).collect();
        assert_eq!(
            lists,
            [arse.map(String::from).to_vec(), vec!["b.ts:parseHeaderLine".to_string()]],
            "{words:?}"
        );
    }
    let view = store.symbol_search("parseHeaderLine", &scope(&[p.id]), 1).await.unwrap().remove(0);
    assert_eq!(
        (view.name.as_str(), view.kind.as_str(), view.exported),
        ("parseHeaderLine", "function", true)
    );
}

/// The symbol-kind filter: a chunk passes when a symbol of one of the kinds starts on one of its
/// lines, in every scoped query (lexical, symbols, vector hits, the allowed set, dense search
/// in the database); a symbol passes when it is of one of the kinds.
pub async fn suite_kind_filter(store: &dyn Store) {
    let p = project(store, "kinds").await;
    store
        .replace_file(
            p.id,
            &file("src/shapes.ts")
                .chunk("Circle", "export class Circle { area() { return radius * radius; } }")
                .chunk("circleArea", "export function circleArea(radius) { return radius * radius; }")
                .chunk("", "const radius = 2;")
                .symbol_at(1, "Circle", "class", true)
                .symbol_at(1, "Circle.area", "method", false)
                .symbol_at(2, "circleArea", "function", true)
                .symbol_at(3, "radius", "variable", false)
                .build(),
            None,
            None,
        )
        .await
        .unwrap();
    store
        .replace_file(p.id, &file("src/notes.ts").chunk("", "// radius of a circle").build(), None, None)
        .await
        .unwrap();
    let kinds = |kinds: &[&str]| SearchScope {
        project_ids: vec![p.id],
        kinds: kinds.iter().map(|k| k.to_string()).collect(),
        ..SearchScope::default()
    };
    let mut all = lexical(store, &["radius"], &kinds(&[])).await;
    all.sort();
    assert_eq!(all, ["src/notes.ts#0", "src/shapes.ts#0", "src/shapes.ts#1", "src/shapes.ts#2"]);
    assert_eq!(lexical(store, &["radius"], &kinds(&["function"])).await, ["src/shapes.ts#1"]);
    assert_eq!(lexical(store, &["radius"], &kinds(&["class"])).await, ["src/shapes.ts#0"]);
    assert_eq!(lexical(store, &["radius"], &kinds(&["method"])).await, ["src/shapes.ts#0"]);
    let mut two = lexical(store, &["radius"], &kinds(&["function", "variable"])).await;
    two.sort();
    assert_eq!(two, ["src/shapes.ts#1", "src/shapes.ts#2"]);
    assert!(lexical(store, &["radius"], &kinds(&["enum"])).await.is_empty());

    let found = |results: Vec<semdex::store::SymbolView>| -> Vec<String> {
        results.into_iter().map(|s| format!("{}:{}", s.kind, s.qualified_name)).collect()
    };
    assert_eq!(
        found(store.symbol_search("circle", &kinds(&[]), 10).await.unwrap()),
        ["class:Circle", "function:circleArea", "method:Circle.area"]
    );
    assert_eq!(
        found(store.symbol_search("circle", &kinds(&["function"]), 10).await.unwrap()),
        ["function:circleArea"]
    );
    assert_eq!(
        found(store.symbol_search("circle", &kinds(&["class", "method"]), 10).await.unwrap()),
        ["class:Circle", "method:Circle.area"]
    );
    assert!(store.symbol_search("circle", &kinds(&["interface"]), 10).await.unwrap().is_empty());
    // The limit is filled from the kinds asked for, not cut before the filter.
    assert_eq!(
        found(store.symbol_search("circle", &kinds(&["method"]), 1).await.unwrap()),
        ["method:Circle.area"]
    );
    // Every symbol found under a filter maps to a chunk that passes the same filter.
    let symbols = store.symbol_search("circle", &kinds(&["function"]), 10).await.unwrap();
    let links = store.symbol_chunk_ids(&[symbols[0].id]).await.unwrap();
    let chunk = store.chunks(&[links[0].1]).await.unwrap().remove(0);
    assert_eq!((chunk.path.as_str(), chunk.ordinal), ("src/shapes.ts", 1));

    // Vector hits and the allowed set.
    let m = store.register_model("builtin", "kinds-test", 2).await.unwrap();
    let texts = [
        "export class Circle { area() { return radius * radius; } }",
        "export function circleArea(radius) { return radius * radius; }",
        "const radius = 2;",
        "// radius of a circle",
    ];
    let vectors: Vec<(String, Vec<f32>)> =
        texts.iter().enumerate().map(|(i, t)| (hash(t), vec![1.0, i as f32 / 10.0])).collect();
    store.put_embeddings(m.id, &vectors).await.unwrap();
    let page = store.embeddings_page(m.id, 0, 10).await.unwrap();
    let id_of = |text: &str| page.iter().find(|(_, h, _)| *h == hash(text)).unwrap().0;
    let ids: Vec<i64> = texts.iter().map(|t| id_of(t)).collect();
    let paths = |hits: Vec<(i64, semdex::store::ChunkView)>| -> Vec<String> {
        hits.into_iter().map(|(_, c)| format!("{}#{}", c.path, c.ordinal)).collect()
    };
    assert_eq!(store.chunks_for_embeddings(m.id, &ids, &kinds(&[])).await.unwrap().len(), 4);
    assert_eq!(
        paths(store.chunks_for_embeddings(m.id, &ids, &kinds(&["variable", "class"])).await.unwrap()),
        ["src/shapes.ts#0", "src/shapes.ts#2"]
    );
    assert_eq!(store.embedding_ids_in_scope(m.id, &kinds(&["function"])).await.unwrap(), [ids[1]]);
    assert!(store.embedding_ids_in_scope(m.id, &kinds(&["enum"])).await.unwrap().is_empty());
    // Where the database searches vectors itself (pgvector), it honours the filter too.
    let unit = |v: [f32; 2]| {
        let n = (v[0] * v[0] + v[1] * v[1]).sqrt();
        vec![v[0] / n, v[1] / n]
    };
    let stored: Vec<(String, Vec<f32>)> =
        texts.iter().enumerate().map(|(i, t)| (hash(t), unit([1.0, i as f32 / 10.0]))).collect();
    let m = store.register_model("builtin", "kinds-test-unit", 2).await.unwrap();
    store.put_embeddings(m.id, &stored).await.unwrap();
    let function_id = store.embedding_ids_in_scope(m.id, &kinds(&["function"])).await.unwrap();
    if let Some(hits) = store.dense_search(&m, &unit([1.0, 0.3]), &kinds(&["function"]), 10).await.unwrap() {
        assert_eq!(hits.iter().map(|h| h.0).collect::<Vec<_>>(), function_id);
        let all = store.dense_search(&m, &unit([1.0, 0.3]), &kinds(&[]), 10).await.unwrap().unwrap();
        assert_eq!(all.len(), 4);
    }
}

/// Fuzzy symbol matches for typos, after exact, prefix and substring: one edit for names of 4
/// to 7 characters, two from 8, by distance, then exported first, then shorter.
pub async fn suite_symbol_fuzzy(store: &dyn Store) {
    let p = project(store, "fuzzy").await;
    store
        .replace_file(
            p.id,
            &file("src/users.ts")
                .chunk("", "users")
                .symbol("UserService", "class", true, None)
                .symbol("UserService.createUser", "method", false, Some(0))
                .symbol("createUsers", "function", true, None)
                .symbol("deleteUser", "function", true, None)
                .symbol("parse", "function", false, None)
                .symbol("Parse", "function", true, None)
                .build(),
            None,
            None,
        )
        .await
        .unwrap();
    let found = |results: Vec<semdex::store::SymbolView>| -> Vec<String> {
        results.into_iter().map(|s| s.qualified_name).collect()
    };
    let search = |q: &'static str, kinds: &[&str], limit: i64| {
        let scope = SearchScope {
            project_ids: vec![p.id],
            kinds: kinds.iter().map(|k| k.to_string()).collect(),
            ..SearchScope::default()
        };
        async move { found(store.symbol_search(q, &scope, limit).await.unwrap()) }
    };
    // A missing letter, an extra one, a swapped pair.
    assert_eq!(search("UserServce", &[], 10).await, ["UserService"]);
    assert_eq!(search("creatUser", &[], 10).await, ["UserService.createUser", "createUsers"]);
    assert_eq!(search("USERSERVICEE", &[], 10).await, ["UserService"]);
    assert_eq!(search("prase", &[], 10).await, ["Parse", "parse"]);
    // Exact, prefix and substring matches come first; fuzzy ones fill what is left.
    assert_eq!(search("createUser", &[], 10).await, ["UserService.createUser", "createUsers"]);
    assert_eq!(search("creatUser", &[], 1).await, ["UserService.createUser"]);
    // Two edits are too many below 8 characters; three are too many at any length.
    assert!(search("pxrsx", &[], 10).await.is_empty());
    assert!(search("UsxrSxrvxce", &[], 10).await.is_empty());
    // Nothing for nonsense, for a query under 4 characters, or under another kind.
    assert!(search("qwxzvbnm", &[], 10).await.is_empty());
    assert!(search("prs", &[], 10).await.is_empty());
    assert!(search("creatUser", &["class"], 10).await.is_empty());
    assert_eq!(search("UserServce", &["class"], 10).await, ["UserService"]);
}

/// Import graph walks: cycles terminate, each file at its shortest distance, edges resolve
/// whichever file is written first, and deleting a file unresolves edges to it until it returns.
pub async fn suite_import_neighbours(store: &dyn Store) {
    let p = project(store, "graph").await;
    // a -> b -> c -> a (a cycle), b -> d, c -> d, d -> lodash (external).
    let a = file("a.ts").chunk("", "a").import("./b", Some("b.ts"), "static").build();
    let b = file("b.ts")
        .chunk("", "b")
        .import("./c", Some("c.ts"), "static")
        .import("./d", Some("d.ts"), "type_only")
        .build();
    let c = file("c.ts")
        .chunk("", "c")
        .import("./a", Some("a.ts"), "dynamic")
        .import("./d", Some("d.ts"), "require")
        .build();
    let d = file("d.ts").chunk("", "d").import("lodash", None, "static").build();
    // Importers first: their edges resolve when the targets arrive.
    for w in [&a, &b, &c, &d] {
        store.replace_file(p.id, w, None, None).await.unwrap();
    }

    let walk = |path: &'static str, reverse: bool, depth: u32| async move {
        store.import_neighbours(p.id, path, reverse, depth).await.unwrap()
    };
    let pairs =
        |v: &[(&str, u32)]| -> Vec<(String, u32)> { v.iter().map(|(p, d)| (p.to_string(), *d)).collect() };

    assert_eq!(walk("a.ts", false, 0).await, pairs(&[]));
    assert_eq!(walk("a.ts", false, 1).await, pairs(&[("b.ts", 1)]));
    assert_eq!(walk("a.ts", false, 2).await, pairs(&[("b.ts", 1), ("c.ts", 2), ("d.ts", 2)]));
    assert_eq!(walk("a.ts", false, 50).await, pairs(&[("b.ts", 1), ("c.ts", 2), ("d.ts", 2)]));
    assert_eq!(walk("a.ts", false, u32::MAX).await, pairs(&[("b.ts", 1), ("c.ts", 2), ("d.ts", 2)]));
    assert_eq!(walk("d.ts", true, 1).await, pairs(&[("b.ts", 1), ("c.ts", 1)]));
    assert_eq!(walk("d.ts", true, 10).await, pairs(&[("b.ts", 1), ("c.ts", 1), ("a.ts", 2)]));
    assert_eq!(walk("d.ts", false, 10).await, pairs(&[]));
    assert_eq!(walk("missing.ts", false, 10).await, pairs(&[]));

    // Deleting b cuts the graph; writing it again restores both directions.
    store.delete_files(p.id, &["b.ts".into()]).await.unwrap();
    assert_eq!(walk("a.ts", false, 10).await, pairs(&[]));
    assert_eq!(walk("d.ts", true, 10).await, pairs(&[("c.ts", 1)]));
    store.replace_file(p.id, &b, None, None).await.unwrap();
    assert_eq!(walk("a.ts", false, 10).await, pairs(&[("b.ts", 1), ("c.ts", 2), ("d.ts", 2)]));
    // Replacing a target keeps edges into it.
    store.replace_file(p.id, &d, None, None).await.unwrap();
    assert_eq!(walk("d.ts", true, 1).await, pairs(&[("b.ts", 1), ("c.ts", 1)]));
}

/// Runs: queued, leased oldest first, heartbeats only by the holder, taken over once the lease
/// lapses, finished once; counts and paths round-trip.
pub async fn suite_run_lifecycle(store: &dyn Store) {
    let p = project(store, "runs").await;
    let paths = vec!["src/a.ts".to_string(), "src/b.ts".to_string()];
    let first = store.create_run(p.id, "git_hook", Some(&paths), Some("abc1234")).await.unwrap();
    let second = store.create_run(p.id, "cli", None, None).await.unwrap();
    assert_eq!(first.status, RunStatus::Queued);
    assert_eq!(first.paths.as_deref(), Some(&paths[..]));
    assert_eq!(first.trigger, "git_hook");
    assert_eq!(first.commit_sha.as_deref(), Some("abc1234"));
    assert_eq!(second.paths, None);
    assert!(first.lease_owner.is_none() && first.started_at.is_none() && first.finished_at.is_none());

    let leased = store.lease_run("w1", 600).await.unwrap().unwrap();
    assert_eq!(leased.id, first.id);
    assert_eq!(leased.status, RunStatus::Running);
    assert_eq!(leased.lease_owner.as_deref(), Some("w1"));
    assert!(leased.lease_expires_at.unwrap() > leased.started_at.unwrap());
    let leased2 = store.lease_run("w2", 600).await.unwrap().unwrap();
    assert_eq!(leased2.id, second.id);
    // Nothing queued and no lease lapsed.
    assert!(store.lease_run("w3", 600).await.unwrap().is_none());

    assert!(store.heartbeat_run(first.id, "w1", 600).await.unwrap());
    assert!(!store.heartbeat_run(first.id, "w2", 600).await.unwrap());

    // A zero-length lease lapses at once: the run is taken over by the next worker.
    assert!(store.heartbeat_run(first.id, "w1", 0).await.unwrap());
    let taken = store.lease_run("w3", 600).await.unwrap().unwrap();
    assert_eq!(taken.id, first.id);
    assert_eq!(taken.lease_owner.as_deref(), Some("w3"));
    assert_eq!(taken.started_at, leased.started_at, "a takeover keeps the original start");
    assert!(!store.heartbeat_run(first.id, "w1", 600).await.unwrap());

    let counts = RunCounts {
        files_indexed: 10,
        files_skipped: 2,
        files_deleted: 1,
        chunks: 40,
        chunks_embedded: 30,
        embedding_cache_hits: 10,
        tokens_embedded: 12_345,
    };
    store.update_run_counts(first.id, &counts).await.unwrap();
    store.finish_run(first.id, RunStatus::Succeeded, None).await.unwrap();
    let done = store.run(first.id).await.unwrap().unwrap();
    assert_eq!(done.status, RunStatus::Succeeded);
    assert_eq!((done.files_indexed, done.files_skipped, done.files_deleted, done.chunks), (10, 2, 1, 40));
    assert_eq!((done.chunks_embedded, done.embedding_cache_hits, done.tokens_embedded), (30, 10, 12_345));
    assert!(done.finished_at.is_some() && done.lease_owner.is_none() && done.lease_expires_at.is_none());
    assert!(!store.heartbeat_run(first.id, "w3", 600).await.unwrap());
    assert!(matches!(
        store.finish_run(first.id, RunStatus::Failed, None).await,
        Err(StoreError::Conflict(_))
    ));

    store.finish_run(second.id, RunStatus::Failed, Some("parse budget exceeded")).await.unwrap();
    let failed = store.run(second.id).await.unwrap().unwrap();
    assert_eq!((failed.status, failed.error.as_deref()), (RunStatus::Failed, Some("parse budget exceeded")));

    // A queued run can be cancelled without ever running.
    let third = store.create_run(p.id, "schedule", None, None).await.unwrap();
    store.finish_run(third.id, RunStatus::Cancelled, None).await.unwrap();
    assert!(store.lease_run("w1", 600).await.unwrap().is_none());
    assert!(store.run(987_654).await.unwrap().is_none());
}

/// A run's timeline comes back in order with its data, and only its own.
pub async fn suite_run_events(store: &dyn Store) {
    let p = project(store, "events").await;
    let run = store.create_run(p.id, "api", None, None).await.unwrap();
    let other = store.create_run(p.id, "api", None, None).await.unwrap();
    store.add_run_event(run.id, "walk", "start", None, serde_json::json!({})).await.unwrap();
    store
        .add_run_event(
            run.id,
            "walk",
            "progress",
            Some("120 files"),
            serde_json::json!({"files": 120, "ok": true}),
        )
        .await
        .unwrap();
    store
        .add_run_event(other.id, "embed", "error", Some("upstream 503"), serde_json::json!({}))
        .await
        .unwrap();
    store
        .add_run_event(run.id, "walk", "complete", None, serde_json::json!({"paths": ["a.ts", "b.ts"]}))
        .await
        .unwrap();

    let events = store.run_events(run.id).await.unwrap();
    let summary: Vec<(&str, &str, Option<&str>)> =
        events.iter().map(|e| (e.phase.as_str(), e.event.as_str(), e.message.as_deref())).collect();
    assert_eq!(
        summary,
        [("walk", "start", None), ("walk", "progress", Some("120 files")), ("walk", "complete", None)]
    );
    assert_eq!(events[1].data, serde_json::json!({"files": 120, "ok": true}));
    assert_eq!(events[2].data, serde_json::json!({"paths": ["a.ts", "b.ts"]}));
    assert!(events.iter().all(|e| e.run_id == run.id));
    assert!(events.windows(2).all(|w| w[0].id < w[1].id && w[0].created_at <= w[1].created_at));
    assert_eq!(store.run_events(other.id).await.unwrap().len(), 1);
}

/// The embedding cache: models registered once, vectors stored once per (model, hash) across
/// projects, pending hashes computed from chunks, pages and extents for index rebuilds.
pub async fn suite_embeddings(store: &dyn Store) {
    let m = store.register_model("builtin", "hash-v1", 4).await.unwrap();
    assert_eq!(store.register_model("builtin", "hash-v1", 4).await.unwrap(), m);
    let m8 = store.register_model("builtin", "hash-v1", 8).await.unwrap();
    assert_ne!(m8.id, m.id);
    assert_eq!((m.provider.as_str(), m.model.as_str(), m.dimensions), ("builtin", "hash-v1", 4));

    let p = project(store, "emb-a").await;
    let q = project(store, "emb-b").await;
    // "shared" is in both projects, twice in p.
    store
        .replace_file(
            p.id,
            &file("a.ts").chunk("", "shared").chunk("", "only in a").chunk("", "shared").build(),
            None,
            None,
        )
        .await
        .unwrap();
    store
        .replace_file(q.id, &file("b.ts").chunk("", "shared").chunk("", "only in b").build(), None, None)
        .await
        .unwrap();

    // In content-hash order.
    let all = store.pending_embeddings(m.id, None, None, 100).await.unwrap();
    let mut expected = vec![
        (hash("only in a"), "only in a".to_string()),
        (hash("only in b"), "only in b".into()),
        (hash("shared"), "shared".into()),
    ];
    expected.sort();
    assert_eq!(all, expected);
    let mut in_q: Vec<String> = store
        .pending_embeddings(m.id, Some(q.id), None, 100)
        .await
        .unwrap()
        .into_iter()
        .map(|(h, _)| h)
        .collect();
    in_q.sort();
    let mut expected_q = vec![hash("only in b"), hash("shared")];
    expected_q.sort();
    assert_eq!(in_q, expected_q);
    assert_eq!(store.pending_embeddings(m.id, None, None, 2).await.unwrap().len(), 2);

    let v_shared = vec![0.5f32, -0.5, 0.25, 1.0e-7];
    assert_eq!(store.put_embeddings(m.id, &[(hash("shared"), v_shared.clone())]).await.unwrap(), 1);
    // Idempotent: the existing vector is kept.
    assert_eq!(store.put_embeddings(m.id, &[(hash("shared"), vec![9.0; 4])]).await.unwrap(), 0);
    let mut left: Vec<String> =
        store.pending_embeddings(m.id, None, None, 100).await.unwrap().into_iter().map(|(h, _)| h).collect();
    left.sort();
    let mut expected_left = vec![hash("only in a"), hash("only in b")];
    expected_left.sort();
    assert_eq!(left, expected_left);
    // Another model still needs everything.
    assert_eq!(store.pending_embeddings(m8.id, None, None, 100).await.unwrap().len(), 3);

    // Malformed batches store nothing.
    let extent = store.embeddings_extent(m.id).await.unwrap();
    assert!(matches!(
        store
            .put_embeddings(m.id, &[(hash("only in a"), vec![1.0; 4]), (hash("only in b"), vec![1.0; 3])])
            .await,
        Err(StoreError::Invalid(_))
    ));
    assert!(matches!(
        store.put_embeddings(m.id, &[(hash("only in a"), vec![1.0, f32::NAN, 0.0, 0.0])]).await,
        Err(StoreError::Invalid(_))
    ));
    assert!(matches!(
        store.put_embeddings(m.id, &[("nothex".into(), vec![1.0; 4])]).await,
        Err(StoreError::Invalid(_))
    ));
    assert_eq!(store.embeddings_extent(m.id).await.unwrap(), extent);
    assert_eq!(extent.0, 1);

    let batch: Vec<(String, Vec<f32>)> =
        (0..5).map(|i| (hash(&format!("v{i}")), vec![i as f32, 1.0, 2.0, 3.0])).collect();
    assert_eq!(store.put_embeddings(m.id, &batch).await.unwrap(), 5);
    let (count, max_id) = store.embeddings_extent(m.id).await.unwrap();
    assert_eq!(count, 6);
    let mut after = 0;
    let mut seen = Vec::new();
    loop {
        let page = store.embeddings_page(m.id, after, 4).await.unwrap();
        if page.is_empty() {
            break;
        }
        assert!(page.len() <= 4);
        after = page.last().unwrap().0;
        seen.extend(page);
    }
    assert_eq!(seen.len(), 6);
    assert_eq!(seen.last().unwrap().0, max_id);
    assert!(seen.windows(2).all(|w| w[0].0 < w[1].0));
    assert_eq!(seen[0], (seen[0].0, hash("shared"), v_shared));
    assert_eq!(seen[3].2, vec![2.0, 1.0, 2.0, 3.0]);
    assert_eq!(store.embeddings_extent(m8.id).await.unwrap(), (0, 0));
    assert!(store.embeddings_page(m8.id, 0, 10).await.unwrap().is_empty());
}

/// Vector hits map back to every chunk holding the text, within the scope.
pub async fn suite_chunks_for_embeddings(store: &dyn Store) {
    let m = store.register_model("openai", "text-embedding-3-small", 2).await.unwrap();
    let other_model = store.register_model("openai", "other", 2).await.unwrap();
    let p = project(store, "cfe-a").await;
    let q = project(store, "cfe-b").await;
    store
        .replace_file(p.id, &file("a.ts").chunk("", "shared").chunk("", "only a").build(), None, None)
        .await
        .unwrap();
    store
        .replace_file(q.id, &file("b.js").language("javascript").chunk("", "shared").build(), None, None)
        .await
        .unwrap();
    store
        .put_embeddings(m.id, &[(hash("only a"), vec![1.0, 0.0]), (hash("shared"), vec![0.0, 1.0])])
        .await
        .unwrap();
    store.put_embeddings(other_model.id, &[(hash("shared"), vec![0.0, 1.0])]).await.unwrap();
    let page = store.embeddings_page(m.id, 0, 10).await.unwrap();
    let id_of = |h: &str| page.iter().find(|(_, hash, _)| hash == h).unwrap().0;
    let (only_a, shared) = (id_of(&hash("only a")), id_of(&hash("shared")));

    let both = scope(&[p.id, q.id]);
    let hits = store.chunks_for_embeddings(m.id, &[shared, only_a], &both).await.unwrap();
    let got: Vec<(i64, String)> =
        hits.iter().map(|(e, c)| (*e, format!("{}:{}", c.project, c.path))).collect();
    assert_eq!(
        got,
        [(shared, "cfe-a:a.ts".to_string()), (shared, "cfe-b:b.js".into()), (only_a, "cfe-a:a.ts".into())]
    );
    assert_eq!(hits[0].1.content, "shared");
    let only_p = store.chunks_for_embeddings(m.id, &[shared, only_a], &scope(&[p.id])).await.unwrap();
    assert_eq!(only_p.len(), 2);
    let js =
        SearchScope { project_ids: vec![p.id, q.id], languages: vec!["javascript".into()], kinds: vec![] };
    let js_hits = store.chunks_for_embeddings(m.id, &[shared, only_a], &js).await.unwrap();
    assert_eq!(js_hits.len(), 1);
    assert_eq!(js_hits[0].1.path, "b.js");
    // An id of another model maps to nothing under this one.
    let foreign = store.embeddings_page(other_model.id, 0, 1).await.unwrap()[0].0;
    assert!(store.chunks_for_embeddings(m.id, &[foreign], &both).await.unwrap().is_empty());

    let mut ids = store.embedding_ids_in_scope(m.id, &both).await.unwrap();
    ids.sort();
    let mut expected = vec![shared, only_a];
    expected.sort();
    assert_eq!(ids, expected);
    assert_eq!(store.embedding_ids_in_scope(m.id, &scope(&[q.id])).await.unwrap(), [shared]);
    assert_eq!(store.embedding_ids_in_scope(m.id, &js).await.unwrap(), [shared]);
    assert!(store.embedding_ids_in_scope(m.id, &scope(&[])).await.unwrap().is_empty());
}

/// Chunks read back by id (in the order asked) and by line, with the run and commit that
/// wrote them.
pub async fn suite_chunk_lookups(store: &dyn Store) {
    let p = project(store, "lookups").await;
    let run = store.create_run(p.id, "ci", None, Some("deadbeef")).await.unwrap();
    let write = file("src/x.ts")
        .chunk("A", "line 1\nline 2")
        .chunk("B", "line 3")
        .chunk("C", "line 4\nline 5\nline 6")
        .build();
    store.replace_file(p.id, &write, Some(run.id), Some("deadbeef")).await.unwrap();
    let at =
        |line| async move { store.chunk_at(p.id, "src/x.ts", line).await.unwrap().map(|c| c.symbol_path) };
    assert_eq!(at(1).await.as_deref(), Some("A"));
    assert_eq!(at(2).await.as_deref(), Some("A"));
    assert_eq!(at(3).await.as_deref(), Some("B"));
    assert_eq!(at(6).await.as_deref(), Some("C"));
    assert_eq!(at(7).await, None);
    assert!(store.chunk_at(p.id, "src/y.ts", 1).await.unwrap().is_none());

    let c = store.chunk_at(p.id, "src/x.ts", 5).await.unwrap().unwrap();
    assert_eq!((c.start_line, c.end_line, c.ordinal), (4, 6, 2));
    assert_eq!(c.index_run_id, Some(run.id));
    assert_eq!(c.commit_sha.as_deref(), Some("deadbeef"));
    assert_eq!(c.content_hash, hash("line 4\nline 5\nline 6"));
    assert_eq!(
        (c.project_id, c.project.as_str(), c.language.as_str(), c.kind.as_str()),
        (p.id, "lookups", "typescript", "symbol")
    );
    assert_eq!(c.token_count, 6);

    let a = store.chunk_at(p.id, "src/x.ts", 1).await.unwrap().unwrap();
    let got: Vec<i32> =
        store.chunks(&[c.id, 987_654, a.id]).await.unwrap().iter().map(|c| c.ordinal).collect();
    assert_eq!(got, [2, 0]);
    assert!(store.chunks(&[]).await.unwrap().is_empty());
}

/// Projects: read back by name and id, listed, last indexed commit recorded, deleted with
/// everything they own except the shared embedding cache.
pub async fn suite_projects(store: &dyn Store) {
    let p = project(store, "beta").await;
    let a = project(store, "alpha").await;
    assert_eq!(p.settings, serde_json::json!({"exclude": ["dist/**"]}));
    assert_eq!(p.root_path.as_deref(), Some("/src/beta"));
    assert_eq!(store.project_by_name("beta").await.unwrap().as_ref(), Some(&p));
    assert_eq!(store.project(p.id).await.unwrap().as_ref(), Some(&p));
    assert!(store.project_by_name("gamma").await.unwrap().is_none());
    let names: Vec<String> = store.list_projects().await.unwrap().into_iter().map(|p| p.name).collect();
    assert_eq!(names, ["alpha", "beta"]);
    let bare =
        store.create_project(NewProject { name: "bare".into(), ..NewProject::default() }).await.unwrap();
    assert_eq!(bare.settings, serde_json::json!({}));

    store.set_last_indexed_commit(p.id, Some("0123abc")).await.unwrap();
    let updated = store.project(p.id).await.unwrap().unwrap();
    assert_eq!(updated.last_indexed_commit.as_deref(), Some("0123abc"));
    assert!(updated.updated_at >= p.updated_at);

    let m = store.register_model("builtin", "b", 2).await.unwrap();
    let w = file("a.ts")
        .chunk("f", "x")
        .symbol("f", "function", true, None)
        .import("./b", Some("b.ts"), "static")
        .build();
    store.replace_file(p.id, &w, None, None).await.unwrap();
    store.replace_file(a.id, &w, None, None).await.unwrap();
    let run = store.create_run(p.id, "cli", None, None).await.unwrap();
    store.add_run_event(run.id, "walk", "start", None, serde_json::json!({})).await.unwrap();
    store.put_embeddings(m.id, &[(hash("x"), vec![1.0, 0.0])]).await.unwrap();

    assert!(store.delete_project(p.id).await.unwrap());
    assert!(!store.delete_project(p.id).await.unwrap());
    assert!(store.project(p.id).await.unwrap().is_none());
    assert!(store.run(run.id).await.unwrap().is_none());
    for (table, n) in [
        ("files", 1),
        ("symbols", 1),
        ("imports", 1),
        ("chunks", 1),
        ("index_runs", 0),
        ("index_run_events", 0),
    ] {
        assert_eq!(rows(store, table).await, n, "{table}");
    }
    assert_eq!(rows(store, "embeddings").await, 1, "embeddings are a cache shared across projects");
    assert_eq!(stats(store, a.id).await.2, 1);
}

/// Triggers write the audit trail for projects, tokens and runs; it pages by id.
pub async fn suite_activity_log(store: &dyn Store) {
    let p = project(store, "audited").await;
    let token = store
        .create_token(NewToken {
            name: "laptop".into(),
            token_hash: hash("tok"),
            prefix: "sdx_12".into(),
            scopes: vec!["read".into(), "write".into()],
            expires_at: Some(chrono::Utc::now() + chrono::Duration::days(30)),
            ..NewToken::default()
        })
        .await
        .unwrap();
    assert_eq!(token.scopes, ["read", "write"]);
    assert!(token.revoked_at.is_none() && token.expires_at.is_some());
    assert_eq!(store.token_by_hash(&hash("tok")).await.unwrap().as_ref(), Some(&token));
    assert!(store.token_by_hash(&hash("nope")).await.unwrap().is_none());
    assert!(store.revoke_token(token.id).await.unwrap());
    assert!(!store.revoke_token(token.id).await.unwrap());
    assert!(store.token_by_hash(&hash("tok")).await.unwrap().unwrap().revoked_at.is_some());

    let run = store.create_run(p.id, "git_hook", None, None).await.unwrap();
    store.lease_run("w", 60).await.unwrap().unwrap();
    store.update_run_counts(run.id, &RunCounts::default()).await.unwrap();
    store.finish_run(run.id, RunStatus::Succeeded, None).await.unwrap();
    store.replace_file(p.id, &file("a.ts").chunk("", "x").build(), None, None).await.unwrap();

    let entries = store.activity(None, None, 100).await.unwrap();
    let actions: Vec<(&str, &str)> = entries.iter().map(|e| (e.action.as_str(), e.source.as_str())).collect();
    assert_eq!(
        actions,
        [
            ("run.succeeded", "git_hook"),
            ("run.running", "git_hook"),
            ("run.queued", "git_hook"),
            ("token.revoked", "system"),
            ("token.created", "system"),
            ("project.created", "system"),
        ],
        "stats and count updates write no entries"
    );
    let created = entries.last().unwrap();
    assert_eq!((created.project_id, created.subject_id), (Some(p.id), Some(p.id)));
    assert_eq!(created.details["name"], "audited");
    assert_eq!(entries[3].subject_id, Some(token.id));
    assert_eq!(entries[0].subject_id, Some(run.id));

    // Cursor pagination, newest first.
    let page1 = store.activity(None, None, 4).await.unwrap();
    let page2 = store.activity(None, Some(page1.last().unwrap().id), 4).await.unwrap();
    assert_eq!(page1.len() + page2.len(), entries.len());
    assert_eq!(
        page1.iter().chain(&page2).map(|e| e.id).collect::<Vec<_>>(),
        entries.iter().map(|e| e.id).collect::<Vec<_>>()
    );
    assert_eq!(store.activity(Some(p.id), None, 100).await.unwrap().len(), 4);

    // Deleting the project keeps the trail and records the deletion.
    store.delete_project(p.id).await.unwrap();
    let after = store.activity(None, None, 100).await.unwrap();
    assert_eq!(after.len(), entries.len() + 1);
    assert_eq!(after[0].action, "project.deleted");
    assert_eq!((after[0].project_id, after[0].subject_id), (None, Some(p.id)));
    assert_eq!(after[0].details["name"], "audited");
    assert!(store.activity(Some(p.id), None, 100).await.unwrap().is_empty());
}

// SQLite ------------------------------------------------------------------------------------

async fn sqlite_store() -> (tempfile::TempDir, SqliteStore) {
    let dir = tempfile::tempdir().unwrap();
    // A nested path: open creates the missing directories.
    let store = SqliteStore::open(&dir.path().join("data/nested/semdex.db")).await.unwrap();
    store.migrate_up().await.unwrap();
    (dir, store)
}

/// A plain connection to the same file, for checks below the `Store` interface.
async fn raw(store: &SqliteStore) -> sqlx::SqlitePool {
    sqlx::sqlite::SqlitePoolOptions::new()
        .max_connections(1)
        .connect_with(sqlx::sqlite::SqliteConnectOptions::new().filename(store.path()).foreign_keys(true))
        .await
        .unwrap()
}

macro_rules! on_sqlite {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test]
                async fn $name() {
                    let (_dir, store) = super::sqlite_store().await;
                    super::$name(&store).await;
                }
            )*
        }
    };
}

on_sqlite!(
    suite_migrations_round_trip,
    suite_status,
    suite_replace_file_idempotent,
    suite_stats_incremental,
    suite_duplicate_conflict,
    suite_bad_values_invalid,
    suite_orphan_fk_invalid,
    suite_lexical_search,
    suite_lexical_search_scope_past_other_projects,
    suite_symbol_search,
    suite_kind_filter,
    suite_symbol_fuzzy,
    suite_import_neighbours,
    suite_run_lifecycle,
    suite_run_events,
    suite_embeddings,
    suite_chunks_for_embeddings,
    suite_chunk_lookups,
    suite_projects,
    suite_activity_log,
);

#[tokio::test]
async fn sqlite_open_sets_wal_and_foreign_keys() {
    let (dir, store) = sqlite_store().await;
    assert!(dir.path().join("data/nested/semdex.db").is_file());
    let pool = raw(&store).await;
    let mode: String = sqlx::query_scalar("PRAGMA journal_mode").fetch_one(&pool).await.unwrap();
    assert_eq!(mode, "wal");
    let status = store.status().await.unwrap();
    assert_eq!(status.backend, semdex::store::Backend::Sqlite);
    assert_eq!(status.pgvector, None);
    // Reopening an existing, migrated file works and sees the data.
    project(&store, "kept").await;
    store.close().await;
    let again = SqliteStore::open(store.path()).await.unwrap();
    again.migrate_up().await.unwrap();
    assert!(again.project_by_name("kept").await.unwrap().is_some());
}

/// The external-content FTS index matches the chunks table after inserts, replacements and
/// deletions (FTS5's own integrity check compares them).
#[tokio::test]
async fn sqlite_fts_stays_in_sync() {
    let (_dir, store) = sqlite_store().await;
    let p = project(&store, "fts").await;
    for i in 0..5 {
        let w = file(&format!("f{i}.ts"))
            .chunk("", &format!("const value{i} = {i};"))
            .chunk("", "shared_name")
            .build();
        store.replace_file(p.id, &w, None, None).await.unwrap();
    }
    store.replace_file(p.id, &file("f0.ts").chunk("", "changed").build(), None, None).await.unwrap();
    store.delete_files(p.id, &["f1.ts".into()]).await.unwrap();
    let pool = raw(&store).await;
    sqlx::query("INSERT INTO chunks_fts (chunks_fts, rank) VALUES ('integrity-check', 1)")
        .execute(&pool)
        .await
        .unwrap();
    let indexed: i64 =
        sqlx::query_scalar("SELECT count(*) FROM chunks_fts WHERE chunks_fts MATCH 'shared_name'")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(indexed, 3);
    // Deleting the project empties the index through the cascades.
    store.delete_project(p.id).await.unwrap();
    sqlx::query("INSERT INTO chunks_fts (chunks_fts, rank) VALUES ('integrity-check', 1)")
        .execute(&pool)
        .await
        .unwrap();
    let left: i64 =
        sqlx::query_scalar("SELECT count(*) FROM chunks_fts WHERE chunks_fts MATCH 'shared_name'")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(left, 0);
}

/// The symbol-name trigram index matches the symbols table after inserts, replacements,
/// deletions and a project's deletion (FTS5's own integrity check compares them).
#[tokio::test]
async fn sqlite_symbol_trigrams_stay_in_sync() {
    let (_dir, store) = sqlite_store().await;
    let p = project(&store, "trigrams").await;
    for i in 0..5 {
        let w = file(&format!("f{i}.ts")).chunk("", "x").symbol(
            &format!("hashPassword{i}"),
            "function",
            true,
            None,
        );
        store.replace_file(p.id, &w.build(), None, None).await.unwrap();
    }
    let renamed = file("f0.ts").chunk("", "x").symbol("checkToken", "function", true, None).build();
    store.replace_file(p.id, &renamed, None, None).await.unwrap();
    store.delete_files(p.id, &["f1.ts".into()]).await.unwrap();
    let pool = raw(&store).await;
    let check = || async {
        sqlx::query("INSERT INTO symbols_trigram (symbols_trigram, rank) VALUES ('integrity-check', 1)")
            .execute(&pool)
            .await
            .unwrap();
        let count = |q: &'static str| {
            sqlx::query_scalar::<_, i64>("SELECT count(*) FROM symbols_trigram WHERE symbols_trigram MATCH ?")
                .bind(q)
                .fetch_one(&pool)
        };
        (count("password").await.unwrap(), count("token").await.unwrap())
    };
    assert_eq!(check().await, (3, 1));
    let names = |r: Vec<semdex::store::SymbolView>| r.into_iter().map(|s| s.name).collect::<Vec<_>>();
    assert_eq!(
        names(store.symbol_search("password", &scope(&[p.id]), 10).await.unwrap()),
        ["hashPassword2", "hashPassword3", "hashPassword4"]
    );
    store.delete_project(p.id).await.unwrap();
    assert_eq!(check().await, (0, 0));
}

/// Substring matches come in the same order whether the trigram index finds them (words of three
/// characters or more) or a scan of every name does (shorter words), with few or many matches.
#[tokio::test]
async fn sqlite_substring_matches_rank_alike_with_and_without_trigrams() {
    let (_dir, store) = sqlite_store().await;
    let p = project(&store, "many").await;
    let names = |r: Vec<semdex::store::SymbolView>| r.into_iter().map(|s| s.name).collect::<Vec<_>>();
    let expected = ["xitem0", "xitem1", "xitem2", "xitem3", "xitem4"];
    for count in [20, 5_010] {
        let mut w = file("many.ts").chunk("", "x");
        for n in (0..count).rev() {
            w = w.symbol(&format!("xitem{n}"), "variable", true, None);
        }
        store.replace_file(p.id, &w.build(), None, None).await.unwrap();
        assert_eq!(
            names(store.symbol_search("ITEM", &scope(&[p.id]), 5).await.unwrap()),
            expected,
            "{count}"
        );
        let words = ["item".to_string(), "it".to_string()];
        let lists = store.symbol_search_words(&words, &scope(&[p.id]), 5).await.unwrap();
        assert_eq!(lists.into_iter().map(names).collect::<Vec<_>>(), [expected, expected], "{count}");
    }
}

/// Stats kept by triggers agree with counting, and a run's deletion keeps its chunks.
#[tokio::test]
async fn sqlite_stats_match_counts_and_runs_set_null() {
    let (_dir, store) = sqlite_store().await;
    let p = project(&store, "counts").await;
    let run = store.create_run(p.id, "cli", None, None).await.unwrap();
    for i in 0..20 {
        let mut b = file(&format!("src/{i}.ts"));
        for j in 0..(i % 4) {
            b = b.chunk("", &format!("chunk {i} {j}"));
        }
        store.replace_file(p.id, &b.build(), Some(run.id), None).await.unwrap();
    }
    store.delete_files(p.id, &["src/3.ts".into(), "src/7.ts".into()]).await.unwrap();
    let pool = raw(&store).await;
    let counted: (i64, i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM files WHERE project_id = ?1), \
         (SELECT coalesce(sum(size), 0) FROM files WHERE project_id = ?1), \
         (SELECT count(*) FROM chunks WHERE project_id = ?1)",
    )
    .bind(p.id)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(stats(&store, p.id).await, counted);
    assert_eq!(counted.0, 18);

    sqlx::query("DELETE FROM index_runs WHERE id = ?").bind(run.id).execute(&pool).await.unwrap();
    let c = store.chunk_at(p.id, "src/1.ts", 1).await.unwrap().unwrap();
    assert_eq!(c.index_run_id, None);
}

/// A database migrated by a newer semdex is refused, not silently used.
#[tokio::test]
async fn sqlite_refuses_newer_schema() {
    let (_dir, store) = sqlite_store().await;
    let pool = raw(&store).await;
    sqlx::query(
        "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
         VALUES (9999, 'from the future', 1, x'00', 0)",
    )
    .execute(&pool)
    .await
    .unwrap();
    match store.migrate_up().await {
        Err(StoreError::Migration(msg)) => assert!(msg.contains("9999"), "{msg}"),
        other => panic!("expected a migration error, got {other:?}"),
    }
}

/// The project-overview and active-runs views read the maintained stats and the run state.
#[tokio::test]
async fn sqlite_views_answer() {
    let (_dir, store) = sqlite_store().await;
    let p = project(&store, "viewed").await;
    store.replace_file(p.id, &file("a.ts").chunk("", "x").chunk("", "y").build(), None, None).await.unwrap();
    let run = store.create_run(p.id, "watch", None, None).await.unwrap();
    store.lease_run("w", 0).await.unwrap().unwrap();
    let pool = raw(&store).await;
    let overview: (String, i64, i64, i64, i64, String) = sqlx::query_as(
        "SELECT name, total_files, total_chunks, last_run_id, active_runs, last_run_status FROM project_overview",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(overview, ("viewed".into(), 1, 2, run.id, 1, "running".into()));
    let active: (i64, String, String, i64) =
        sqlx::query_as("SELECT id, project, lease_owner, lease_expired FROM active_runs")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(active, (run.id, "viewed".into(), "w".into(), 1));
}

/// Concurrent writes and reads through one store all succeed: writes queue on the single
/// writer instead of failing with SQLITE_BUSY, reads run beside them.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_concurrent_writes_queue() {
    let (_dir, store) = sqlite_store().await;
    let store = std::sync::Arc::new(store);
    let p = project(store.as_ref(), "busy").await;
    let mut tasks = Vec::new();
    for i in 0..24 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let w =
                file(&format!("f{i}.ts")).chunk("", &format!("const v{i} = {i};")).chunk("", "same").build();
            store.replace_file(p.id, &w, None, None).await?;
            store.lexical_search(&["same".to_string()], TermMatch::Any, &scope(&[p.id]), 5).await?;
            store.file_states(p.id).await.map(|_| ())
        }));
    }
    for task in tasks {
        task.await.unwrap().unwrap();
    }
    assert_eq!(stats(store.as_ref(), p.id).await.0, 24);
    assert_eq!(stats(store.as_ref(), p.id).await.2, 48);
}
