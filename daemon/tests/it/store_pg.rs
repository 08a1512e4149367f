//! PostgreSQL-specific store tests, against the server `scripts/test.sh` provisions (each test in
//! its own fresh database): migrations and the catalog, pgvector and the per-model HNSW indexes,
//! dense search in the database, the fallback without pgvector, binary COPY ingest, typed
//! constraint errors and run leasing across workers.

use semdex::store::{
    ChunkRecord, FileRecord, FileWrite, ImportRecord, LexicalTsvector, NewProject, PgStore, RunStatus,
    SearchScope, Store, StoreError, SymbolRecord, TermMatch,
};
use sqlx::Connection;

use crate::support;

/// A migrated store on a fresh database, or `None` when no server is configured (locally).
async fn pg_store() -> Option<PgStore> {
    let url = support::pg_database().await?;
    let store = PgStore::connect(&url).await.expect("connect to the test database");
    store.migrate_up().await.expect("migrate up");
    Some(store)
}

fn hash(text: &str) -> String {
    blake3::hash(text.as_bytes()).to_hex().to_string()
}

fn file(path: &str, chunks: &[&str]) -> FileWrite {
    let text = chunks.join("\n");
    FileWrite {
        file: FileRecord {
            path: path.into(),
            language: Some("typescript".into()),
            size: text.len() as i64,
            line_count: chunks.len() as i32,
            content_hash: Some(hash(&text)),
            mtime_ns: 1,
            is_binary: false,
            is_generated: false,
            skip_reason: None,
            diagnostics_count: 0,
            chunker_version: 1,
        },
        symbols: vec![],
        imports: vec![],
        chunks: chunks
            .iter()
            .enumerate()
            .map(|(i, content)| ChunkRecord {
                ordinal: i as i32,
                content: (*content).into(),
                content_hash: hash(content),
                start_line: i as i32 + 1,
                end_line: i as i32 + 1,
                start_byte: 0,
                end_byte: content.len() as i64,
                symbol_path: String::new(),
                kind: "lines".into(),
                language: "typescript".into(),
                token_count: 3,
                lexical: semdex::lexical::tokens(content).join(" "),
            })
            .collect(),
    }
}

fn symbol(name: &str, kind: &str, parent: Option<usize>) -> SymbolRecord {
    SymbolRecord {
        name: name.into(),
        qualified_name: name.into(),
        kind: kind.into(),
        signature: String::new(),
        start_line: 1,
        end_line: 1,
        start_byte: 0,
        end_byte: 1,
        exported: true,
        parent,
    }
}

fn unit(v: &[f32]) -> Vec<f32> {
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    v.iter().map(|x| x / norm).collect()
}

async fn new_project(store: &PgStore, name: &str) -> i64 {
    store
        .create_project(NewProject { name: name.into(), ..NewProject::default() })
        .await
        .expect("create project")
        .id
}

#[tokio::test]
async fn test_server_has_pgvector() {
    let Some(url) = support::pg_database().await else { return };
    let mut conn = sqlx::PgConnection::connect(&url).await.expect("connect to the test database");
    let version: Option<String> =
        sqlx::query_scalar("SELECT default_version FROM pg_available_extensions WHERE name = 'vector'")
            .fetch_optional(&mut conn)
            .await
            .expect("query pg_available_extensions");
    assert!(version.is_some(), "the test server must offer pgvector");
}

#[tokio::test]
async fn migrations_up_down_up_leave_an_identical_schema() {
    let Some(store) = pg_store().await else { return };
    let first = store.schema_dump().await.unwrap();
    // Every entity of the design is there, with its triggers and both views.
    for needle in [
        "column embeddings.embedding #5 vector not null",
        "column embeddings.input_mode #6 text not null default 'whole'::text",
        "constraint embeddings_input_mode_check on embeddings: CHECK ((input_mode = ANY (ARRAY['whole'::text, 'split'::text, 'truncated'::text])))",
        "column chunks.lexical_tsv #18 tsvector not null",
        "index chunks_lexical_idx on chunks: CREATE INDEX chunks_lexical_idx ON public.chunks USING gin (lexical_tsv)",
        "trigger chunks_stats_insert on chunks",
        "trigger projects_activity_insert on projects",
        "trigger index_runs_updated_at on index_runs",
        "view project_overview:",
        "view active_runs:",
        "constraint files_project_id_path_key on files: UNIQUE (project_id, path)",
    ] {
        assert!(first.iter().any(|l| l.starts_with(needle)), "schema dump lacks {needle:?}");
    }
    let status = store.status().await.unwrap();
    assert_eq!(status.schema_version, Some(status.latest_version));
    assert_eq!(status.row_counts.len(), 18);

    // One step down reverts the latest alone, and its up gives the same schema back.
    store.migrate_down(None).await.unwrap();
    assert_eq!(store.status().await.unwrap().schema_version, Some(status.latest_version - 1));
    store.migrate_up().await.unwrap();
    assert_eq!(store.schema_dump().await.unwrap(), first);

    // Down to 0002 reverts 0003 (the tsvector is generated by the server again, at the same
    // position, with its index), and up gives the same schema back.
    store.migrate_down(Some(2)).await.unwrap();
    let before_0003 = store.schema_dump().await.unwrap();
    assert!(
        before_0003.iter().any(|l| l.starts_with("column chunks.lexical_tsv #18 tsvector generated default")),
        "{before_0003:#?}"
    );
    assert!(before_0003.iter().any(|l| l.starts_with("index chunks_lexical_idx on chunks")));
    store.migrate_up().await.unwrap();
    assert_eq!(store.schema_dump().await.unwrap(), first);

    // Down to 0001 reverts 0002 as well, and up gives the same schema back (the dump numbers
    // columns by position among the live ones, so the dropped column's hole does not show).
    store.migrate_down(Some(1)).await.unwrap();
    assert!(!store.schema_dump().await.unwrap().iter().any(|l| l.contains("input_mode")));
    store.migrate_up().await.unwrap();
    assert_eq!(store.schema_dump().await.unwrap(), first);

    store.migrate_down(Some(0)).await.unwrap();
    assert_eq!(store.schema_dump().await.unwrap(), Vec::<String>::new(), "down leaves nothing behind");
    assert_eq!(store.status().await.unwrap().schema_version, None);

    store.migrate_up().await.unwrap();
    let second = store.schema_dump().await.unwrap();
    assert_eq!(first, second);
}

#[tokio::test]
async fn registering_a_model_creates_its_partial_hnsw_index() {
    let Some(store) = pg_store().await else { return };
    assert!(store.status().await.unwrap().pgvector.is_some_and(|v| v.starts_with("0.")));
    assert!(store.has_pgvector_column().await.unwrap());

    let small = store.register_model("openai", "text-embedding-3-small", 1536).await.unwrap();
    let again = store.register_model("openai", "text-embedding-3-small", 1536).await.unwrap();
    assert_eq!(small, again, "registering twice finds the same model");
    let large = store.register_model("openai", "text-embedding-3-large", 3072).await.unwrap();
    let huge = store.register_model("local", "huge", 4096).await.unwrap();

    let indexes: Vec<(String, String)> = sqlx::query_as(
        "SELECT indexname::text, indexdef FROM pg_indexes WHERE tablename = 'embeddings' \
         AND indexname LIKE 'embeddings_hnsw_%' ORDER BY indexname",
    )
    .fetch_all(store.pool())
    .await
    .unwrap();
    let names: Vec<&str> = indexes.iter().map(|(n, _)| n.as_str()).collect();
    let mut expected =
        vec![format!("embeddings_hnsw_m{}", small.id), format!("embeddings_hnsw_m{}", large.id)];
    expected.sort();
    assert_eq!(names, expected, "one index per model up to 4,000 dimensions, none for {huge:?}");
    let (_, large_def) = indexes.iter().find(|(n, _)| n.ends_with(&format!("m{}", large.id))).unwrap();
    assert!(large_def.contains("USING hnsw (((embedding)::halfvec(3072)) halfvec_ip_ops)"), "{large_def}");
    assert!(large_def.contains(&format!("WHERE (model_id = {})", large.id)), "{large_def}");
}

#[tokio::test]
async fn dense_search_uses_the_index_expression_and_respects_scope() {
    let Some(store) = pg_store().await else { return };
    let model = store.register_model("test", "tiny", 3).await.unwrap();
    let a = new_project(&store, "a").await;
    let b = new_project(&store, "b").await;
    store.replace_file(a, &file("x.ts", &["alpha one", "beta two"]), None, None).await.unwrap();
    store.replace_file(b, &file("y.ts", &["gamma three"]), None, None).await.unwrap();

    let vectors = vec![
        (hash("alpha one"), unit(&[1.0, 0.0, 0.0])),
        (hash("beta two"), unit(&[0.0, 1.0, 0.0])),
        (hash("gamma three"), unit(&[0.9, 0.1, 0.0])),
    ];
    assert_eq!(store.put_embeddings(model.id, &vectors).await.unwrap(), 3);
    assert_eq!(store.put_embeddings(model.id, &vectors).await.unwrap(), 0, "idempotent");
    let (count, max_id) = store.embeddings_extent(model.id).await.unwrap();
    assert_eq!(count, 3);
    let page = store.embeddings_page(model.id, 0, 10).await.unwrap();
    assert_eq!(page.len(), 3);
    assert_eq!(page.last().unwrap().0, max_id);
    assert_eq!(page[1].1, hash("beta two"));
    assert_eq!(page[1].2, vectors[1].1, "vectors read back exactly");

    let query = unit(&[1.0, 0.05, 0.0]);
    let all = store.dense_search(model.id, 3, &query, None, 3, 40).await.unwrap();
    let ids: Vec<i64> = all.iter().map(|h| h.0).collect();
    assert_eq!(ids, [page[0].0, page[2].0, page[1].0]);
    assert!((all[0].1 - 0.9987).abs() < 0.01, "cosine similarity, got {}", all[0].1);

    let only_b = SearchScope { project_ids: vec![b], ..SearchScope::default() };
    let scoped = store.dense_search(model.id, 3, &query, Some(&only_b), 3, 40).await.unwrap();
    assert_eq!(scoped.iter().map(|h| h.0).collect::<Vec<_>>(), [page[2].0]);

    let err = store.dense_search(model.id, 3, &[1.0, 0.0], None, 3, 40).await.unwrap_err();
    assert!(matches!(err, StoreError::Invalid(_)), "{err:?}");

    // The planner takes the partial index for the same expression and predicate.
    let plan: Vec<String> = {
        let mut tx = store.pool().begin().await.unwrap();
        // A handful of rows: make every alternative look expensive so the choice shows whether
        // the index can serve this query at all.
        for off in ["enable_seqscan", "enable_bitmapscan", "enable_sort"] {
            sqlx::query(&format!("SET LOCAL {off} = off")).execute(&mut *tx).await.unwrap();
        }
        let id = model.id;
        sqlx::query_scalar(&format!(
            "EXPLAIN SELECT e.id FROM embeddings e WHERE e.model_id = {id} \
             ORDER BY (e.embedding::halfvec(3)) <#> '[1,0,0]'::halfvec(3) LIMIT 3"
        ))
        .fetch_all(&mut *tx)
        .await
        .unwrap()
    };
    assert!(
        plan.iter().any(|l| l.contains(&format!("embeddings_hnsw_m{}", model.id))),
        "plan does not use the HNSW index:\n{}",
        plan.join("\n")
    );
}

#[tokio::test]
async fn put_embeddings_rejects_wrong_dimensions_and_non_finite_values_whole() {
    let Some(store) = pg_store().await else { return };
    let model = store.register_model("test", "tiny", 3).await.unwrap();
    let good = (hash("a"), vec![1.0, 0.0, 0.0]);
    let short = (hash("b"), vec![1.0, 0.0]);
    let nan = (hash("c"), vec![f32::NAN, 0.0, 0.0]);
    for bad in [short, nan] {
        let err = store.put_embeddings(model.id, &[good.clone(), bad]).await.unwrap_err();
        assert!(matches!(err, StoreError::Invalid(_)), "{err:?}");
    }
    assert_eq!(store.embeddings_extent(model.id).await.unwrap().0, 0, "nothing of a bad batch is stored");
    let err = store.put_embeddings(model.id + 100, &[good]).await.unwrap_err();
    assert!(matches!(err, StoreError::NotFound(_)), "{err:?}");

    // The database itself refuses a vector of the wrong length, whoever writes it.
    let err =
        sqlx::query("INSERT INTO embeddings (model_id, content_hash, embedding) VALUES ($1, $2, '[1,2]')")
            .bind(model.id)
            .bind(hash("d"))
            .execute(store.pool())
            .await
            .unwrap_err();
    let db = err.as_database_error().expect("a database error");
    assert_eq!(db.code().as_deref(), Some("23514"), "{db}");
}

#[tokio::test]
async fn without_pgvector_vectors_are_kept_as_real_arrays() {
    let Some(url) = support::pg_database().await else { return };
    // pgvector is not a trusted extension: a role that is not superuser cannot create it, which
    // is what a managed server without pgvector looks like to the migration.
    let role = format!("semdex_plain_{:08x}", fastrand::u32(..));
    let mut admin = sqlx::PgConnection::connect(&url).await.unwrap();
    let db: String =
        sqlx::query_scalar("SELECT current_database()::text").fetch_one(&mut admin).await.unwrap();
    sqlx::query(&format!("CREATE ROLE {role} LOGIN")).execute(&mut admin).await.unwrap();
    sqlx::query(&format!("ALTER DATABASE {db} OWNER TO {role}")).execute(&mut admin).await.unwrap();
    let url = with_user(&url, &role);

    let store = PgStore::connect(&url).await.unwrap();
    store.migrate_up().await.unwrap();
    assert!(!store.has_pgvector_column().await.unwrap());
    assert_eq!(store.status().await.unwrap().pgvector, None);
    let dump = store.schema_dump().await.unwrap();
    assert!(
        dump.iter().any(|l| l.starts_with("column embeddings.embedding #5 real[] not null")),
        "{dump:#?}"
    );

    let model = store.register_model("test", "tiny", 3).await.unwrap();
    let vectors = vec![(hash("a"), vec![0.25, -1.5, 3.0]), (hash("b"), vec![1.0, 0.0, 0.0])];
    assert_eq!(store.put_embeddings(model.id, &vectors).await.unwrap(), 2);
    let page = store.embeddings_page(model.id, 0, 10).await.unwrap();
    assert_eq!(page.iter().map(|(_, h, v)| (h.clone(), v.clone())).collect::<Vec<_>>(), vectors);
    let err = store.put_embeddings(model.id, &[(hash("c"), vec![1.0])]).await.unwrap_err();
    assert!(matches!(err, StoreError::Invalid(_)), "{err:?}");
    let err = store.dense_search(model.id, 3, &[1.0, 0.0, 0.0], None, 3, 40).await.unwrap_err();
    assert!(matches!(err, StoreError::Invalid(_)), "{err:?}");

    store.migrate_down(None).await.unwrap();
    store.migrate_up().await.unwrap();
    assert_eq!(store.schema_dump().await.unwrap(), dump);

    // Roles are server-wide: leave none behind.
    store.close().await;
    sqlx::query(&format!("ALTER DATABASE {db} OWNER TO CURRENT_USER")).execute(&mut admin).await.unwrap();
    sqlx::query(&format!("REASSIGN OWNED BY {role} TO CURRENT_USER")).execute(&mut admin).await.unwrap();
    sqlx::query(&format!("DROP ROLE {role}")).execute(&mut admin).await.unwrap();
}

/// `url` with its user replaced by `user` (no password: the test server trusts loopback).
fn with_user(url: &str, user: &str) -> String {
    let start = url.find("://").map_or(0, |i| i + 3);
    let authority_end = url[start..].find('/').map_or(url.len(), |i| start + i);
    let host = match url[start..authority_end].rfind('@') {
        Some(at) => &url[start + at + 1..],
        None => &url[start..],
    };
    format!("{}{user}@{host}", &url[..start])
}

#[tokio::test]
async fn replace_file_writes_everything_and_keeps_stats_incrementally() {
    let Some(store) = pg_store().await else { return };
    let p = new_project(&store, "proj").await;
    let run = store.create_run(p, "cli", None, Some("abc1234")).await.unwrap();

    let mut main = file("src/main.ts", &["import { userId } from './util'", "function parseUserId() {}"]);
    main.symbols = vec![symbol("Main", "class", None), symbol("parseUserId", "method", Some(0))];
    main.imports = vec![ImportRecord {
        specifier: "./util".into(),
        resolved_path: Some("src/util.ts".into()),
        external_package: None,
        kind: "static".into(),
        names: vec!["userId".into(), "x".into()],
        line: 1,
    }];
    store.replace_file(p, &main, Some(run.id), Some("abc1234")).await.unwrap();
    let util = file("src/util.ts", &["export const user_id = 1"]);
    store.replace_file(p, &util, Some(run.id), Some("abc1234")).await.unwrap();

    let project = store.project(p).await.unwrap().unwrap();
    assert_eq!((project.total_files, project.total_chunks), (2, 3));
    assert_eq!(project.total_size_bytes, main.file.size + util.file.size);

    // The edge written before its target existed resolves once the target is written.
    assert_eq!(
        store.import_neighbours(p, "src/main.ts", false, 3).await.unwrap(),
        [("src/util.ts".into(), 1)]
    );
    assert_eq!(
        store.import_neighbours(p, "src/util.ts", true, 3).await.unwrap(),
        [("src/main.ts".into(), 1)]
    );
    assert_eq!(store.import_neighbours(p, "src/util.ts", true, u32::MAX).await.unwrap().len(), 1);

    let scope = SearchScope { project_ids: vec![p], ..SearchScope::default() };
    let hits = store.lexical_search(&["user_id".into()], TermMatch::Any, &scope, 10).await.unwrap();
    let chunks = store.chunks(&hits.iter().map(|h| h.chunk_id).collect::<Vec<_>>()).await.unwrap();
    assert_eq!(chunks.first().map(|c| c.path.as_str()), Some("src/util.ts"));
    assert_eq!(chunks[0].commit_sha.as_deref(), Some("abc1234"));
    assert_eq!(chunks[0].index_run_id, Some(run.id));
    let prefixed = store.lexical_search(&["pars*".into()], TermMatch::Any, &scope, 10).await.unwrap();
    assert_eq!(prefixed.len(), 1);
    let symbols = store.symbol_search("parseuser", &scope, 10).await.unwrap();
    assert_eq!(symbols.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(), ["parseUserId"]);
    let parent: Option<i64> = sqlx::query_scalar("SELECT parent_id FROM symbols WHERE name = 'parseUserId'")
        .fetch_one(store.pool())
        .await
        .unwrap();
    let main_id: i64 = sqlx::query_scalar("SELECT id FROM symbols WHERE name = 'Main'")
        .fetch_one(store.pool())
        .await
        .unwrap();
    assert_eq!(parent, Some(main_id));
    let at = store.chunk_at(p, "src/main.ts", 2).await.unwrap().unwrap();
    assert_eq!(at.content, "function parseUserId() {}");

    // Replacing shrinks, deleting removes, and the counters follow.
    store.replace_file(p, &file("src/main.ts", &["// gone"]), None, None).await.unwrap();
    let project = store.project(p).await.unwrap().unwrap();
    assert_eq!((project.total_files, project.total_chunks), (2, 2));
    assert_eq!(store.delete_files(p, &["src/util.ts".into(), "nope.ts".into()]).await.unwrap(), 1);
    let project = store.project(p).await.unwrap().unwrap();
    assert_eq!((project.total_files, project.total_chunks), (1, 1));
    assert_eq!(project.total_size_bytes, "// gone".len() as i64);
}

/// `replace_file` clears a file's old rows and resolves other files' edges to it: a file
/// importing itself, written twice, keeps one resolved edge, and an edge to a file deleted and
/// written again resolves again.
#[tokio::test]
async fn replace_file_resolves_edges_to_itself_and_to_files_written_again() {
    let Some(store) = pg_store().await else { return };
    let p = new_project(&store, "edges").await;
    let import = |target: &str| ImportRecord {
        specifier: format!("./{target}"),
        resolved_path: Some(format!("src/{target}.ts")),
        external_package: None,
        kind: "static".into(),
        names: vec![],
        line: 1,
    };
    let mut selfish = file("src/self.ts", &["import './self'"]);
    selfish.imports = vec![import("self")];
    let mut main = file("src/main.ts", &["import './util'"]);
    main.imports = vec![import("util")];
    let util = file("src/util.ts", &["export const x = 1"]);
    for write in [&selfish, &selfish, &main, &util, &util] {
        store.replace_file(p, write, None, None).await.unwrap();
    }
    let edges = || async {
        sqlx::query_as::<_, (String, Option<String>)>(
            "SELECT f.path, t.path FROM imports i JOIN files f ON f.id = i.file_id \
             LEFT JOIN files t ON t.id = i.resolved_file_id ORDER BY f.path",
        )
        .fetch_all(store.pool())
        .await
        .unwrap()
    };
    let expected = vec![
        ("src/main.ts".to_string(), Some("src/util.ts".to_string())),
        ("src/self.ts".to_string(), Some("src/self.ts".to_string())),
    ];
    assert_eq!(edges().await, expected);
    assert_eq!(store.delete_files(p, &["src/util.ts".into()]).await.unwrap(), 1);
    store.replace_file(p, &util, None, None).await.unwrap();
    assert_eq!(edges().await, expected);
    let project = store.project(p).await.unwrap().unwrap();
    assert_eq!((project.total_files, project.total_chunks), (3, 3));
}

/// Writers of the same file at once take turns on its row: each sees the rows the previous one
/// committed and replaces them, so none fails on the chunks' unique ordinals.
#[tokio::test]
async fn concurrent_writers_of_one_file_replace_each_other() {
    let Some(store) = pg_store().await else { return };
    let store = std::sync::Arc::new(store);
    let p = new_project(&store, "busy").await;
    let write = file("src/busy.ts", &["one", "two", "three"]);
    let writers: Vec<_> = (0..8)
        .map(|_| {
            let (store, write) = (store.clone(), write.clone());
            tokio::spawn(async move { store.replace_file(p, &write, None, None).await })
        })
        .collect();
    for writer in writers {
        writer.await.unwrap().unwrap();
    }
    let project = store.project(p).await.unwrap().unwrap();
    assert_eq!((project.total_files, project.total_chunks), (1, 3));
}

#[tokio::test]
async fn constraint_violations_are_typed_errors() {
    let Some(store) = pg_store().await else { return };
    let p = new_project(&store, "proj").await;

    let err =
        store.create_project(NewProject { name: "proj".into(), ..NewProject::default() }).await.unwrap_err();
    assert!(matches!(err, StoreError::Conflict(ref m) if m.contains("proj")), "{err:?}");

    let err = store.create_run(p, "telepathy", None, None).await.unwrap_err();
    assert!(matches!(err, StoreError::Invalid(ref m) if m.contains("index_runs_trigger_check")), "{err:?}");

    let err = store.create_run(p + 1000, "cli", None, None).await.unwrap_err();
    assert!(matches!(err, StoreError::Invalid(ref m) if m.contains("foreign key")), "{err:?}");

    let mut bad_kind = file("a.ts", &["x"]);
    bad_kind.symbols = vec![symbol("f", "gizmo", None)];
    let err = store.replace_file(p, &bad_kind, None, None).await.unwrap_err();
    assert!(matches!(err, StoreError::Invalid(ref m) if m.contains("symbols_kind_check")), "{err:?}");

    let mut same_ordinal = file("a.ts", &["x", "y"]);
    same_ordinal.chunks[1].ordinal = 0;
    let err = store.replace_file(p, &same_ordinal, None, None).await.unwrap_err();
    assert!(matches!(err, StoreError::Conflict(ref m) if m.contains("a.ts")), "{err:?}");

    let mut orphan_parent = file("a.ts", &["x"]);
    orphan_parent.symbols = vec![symbol("f", "function", Some(5))];
    let err = store.replace_file(p, &orphan_parent, None, None).await.unwrap_err();
    assert!(matches!(err, StoreError::Invalid(_)), "{err:?}");

    let err = store.replace_file(p + 1000, &file("a.ts", &["x"]), None, None).await.unwrap_err();
    assert!(matches!(err, StoreError::Invalid(_)), "{err:?}");

    // Failed writes left nothing behind.
    assert!(store.file_states(p).await.unwrap().is_empty());
    let project = store.project(p).await.unwrap().unwrap();
    assert_eq!((project.total_files, project.total_chunks), (0, 0));
}

#[tokio::test]
async fn runs_are_leased_once_each_across_workers() {
    let Some(store) = pg_store().await else { return };
    let p = new_project(&store, "proj").await;
    let mut created = Vec::new();
    for _ in 0..6 {
        created.push(store.create_run(p, "ci", None, None).await.unwrap().id);
    }
    let store = std::sync::Arc::new(store);
    let workers: Vec<_> = (0..4)
        .map(|w| {
            let store = store.clone();
            tokio::spawn(async move {
                let mut taken = Vec::new();
                while let Some(run) = store.lease_run(&format!("worker-{w}"), 60).await.unwrap() {
                    assert_eq!(run.status, RunStatus::Running);
                    taken.push(run.id);
                }
                taken
            })
        })
        .collect();
    let mut taken = Vec::new();
    for worker in workers {
        taken.extend(worker.await.unwrap());
    }
    taken.sort();
    assert_eq!(taken, created, "every run leased exactly once");

    // An expired lease is taken over; a finished run never is.
    let first = created[0];
    assert!(store.heartbeat_run(first, "someone-else", 60).await.is_ok_and(|ok| !ok));
    sqlx::query("UPDATE index_runs SET lease_expires_at = now() - interval '1 second' WHERE id = $1")
        .bind(first)
        .execute(store.pool())
        .await
        .unwrap();
    let again = store.lease_run("rescuer", 60).await.unwrap().unwrap();
    assert_eq!((again.id, again.lease_owner.as_deref()), (first, Some("rescuer")));
    store.finish_run(first, RunStatus::Succeeded, None).await.unwrap();
    let err = store.finish_run(first, RunStatus::Failed, Some("late")).await.unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");

    let actions: Vec<String> =
        store.activity(Some(p), None, 100).await.unwrap().into_iter().map(|a| a.action).collect();
    assert!(actions.contains(&"run.succeeded".to_string()), "{actions:?}");
    assert_eq!(actions.last().map(String::as_str), Some("project.created"));
}

// The shared suite on PostgreSQL ------------------------------------------------------------

macro_rules! on_postgres {
    ($($name:ident),* $(,)?) => {
        mod suite {
            $(
                #[tokio::test]
                async fn $name() {
                    let Some(store) = super::pg_store().await else { return };
                    crate::store::$name(&store).await;
                }
            )*
        }
    };
}

on_postgres!(
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

/// The trait's dense search picks an exact scan for small scopes and the HNSW index for large
/// ones, and both agree with a brute-force ranking computed here.
#[tokio::test]
async fn trait_dense_search_is_exact_for_small_scopes_and_indexed_for_large_ones() {
    let Some(store) = pg_store().await else { return };
    let model = store.register_model("test", "tiny8", 8).await.unwrap();
    let big = new_project(&store, "big").await;
    let small = new_project(&store, "small").await;
    let n = semdex::store::PgStore::EXACT_SCAN_BELOW as usize + 500;
    let texts: Vec<String> = (0..n).map(|i| format!("chunk number {i}")).collect();
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    store.replace_file(big, &file("big.ts", &refs), None, None).await.unwrap();
    store.replace_file(small, &file("small.ts", &refs[..10]), None, None).await.unwrap();
    // Deterministic vectors spread over the sphere.
    let vector = |i: usize| unit(&(0..8).map(|d| ((i * 31 + d * 17) % 97) as f32 - 48.0).collect::<Vec<_>>());
    let vectors: Vec<(String, Vec<f32>)> = (0..n).map(|i| (hash(&texts[i]), vector(i))).collect();
    store.put_embeddings(model.id, &vectors).await.unwrap();
    let page = store.embeddings_page(model.id, 0, n as i64 + 1).await.unwrap();
    let query = vector(7);
    let brute = |allowed: usize| -> Vec<i64> {
        let mut scored: Vec<(i64, f32)> = page[..allowed]
            .iter()
            .map(|(id, _, v)| (*id, v.iter().zip(&query).map(|(a, b)| a * b).sum::<f32>()))
            .collect();
        scored.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        scored.into_iter().take(5).map(|s| s.0).collect()
    };
    for (project, allowed) in [(small, 10), (big, n)] {
        let scope = SearchScope { project_ids: vec![project], ..SearchScope::default() };
        let hits = Store::dense_search(&store, &model, &query, &scope, 5).await.unwrap().expect("pgvector");
        let ids: Vec<i64> = hits.iter().map(|h| h.0).collect();
        let expected = brute(allowed);
        // The best hit is exact on both paths; the HNSW path may swap near-ties below it.
        assert_eq!(ids[0], expected[0], "scope of {allowed}: {ids:?} vs {expected:?}");
        let overlap = ids.iter().filter(|i| expected.contains(i)).count();
        assert!(overlap >= 4, "scope of {allowed}: {ids:?} vs {expected:?}");
        if allowed == 10 {
            assert_eq!(ids, expected, "the exact path is exact");
        }
    }
}

// The chunks' tsvector, computed by semdex --------------------------------------------------

/// Every chunk's `lexical_tsv` against what `semdex_lexical_tsvector(lexical)` gives for it on
/// the server: `(rows, rows that differ)`.
async fn tsvector_mismatches(conn: &mut sqlx::PgConnection) -> (i64, Vec<String>) {
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM chunks").fetch_one(&mut *conn).await.unwrap();
    let differ: Vec<String> = sqlx::query_scalar(
        "SELECT left(lexical, 200) FROM chunks WHERE lexical_tsv IS DISTINCT FROM semdex_lexical_tsvector(lexical)",
    )
    .fetch_all(&mut *conn)
    .await
    .unwrap();
    (rows, differ)
}

/// Indexes every fixture repository on PostgreSQL: each chunk's tsvector, written by the store
/// in its COPY, equals the SQL function's, and the store computed every one of them itself.
#[tokio::test]
async fn chunk_tsvectors_equal_the_sql_function_on_the_fixtures() {
    use std::collections::HashMap;

    use semdex::config::{Config, Overrides};
    use semdex::engine::Engine;

    let Some(url) = support::pg_database().await else { return };
    let dir = tempfile::tempdir().unwrap();
    let env: HashMap<&str, String> = HashMap::from([("SEMDEX_EMBEDDING_DIMS", "16".to_string())]);
    let overrides = Overrides {
        data_dir: Some(dir.path().join("data")),
        database_url: Some(url.clone()),
        ..Overrides::default()
    };
    let config = Config::load_with(&overrides, &|name| env.get(name).cloned()).unwrap();
    let engine = Engine::open(config).await.unwrap();
    for name in ["ts-app", "nasty", "syntax", "tokens", "chunking"] {
        crate::search::index_fixture(&engine, name).await;
    }

    let mut conn = sqlx::PgConnection::connect(&url).await.unwrap();
    let (rows, differ) = tsvector_mismatches(&mut conn).await;
    assert!(rows > 100, "the fixtures gave only {rows} chunks");
    assert!(differ.is_empty(), "{} of {rows} chunks differ from the SQL function: {differ:#?}", differ.len());
    // Every document the indexer writes is one the store computes itself (none was left to the
    // server), and the text form agrees with the server's too.
    let docs: Vec<(String, String)> =
        sqlx::query_as("SELECT lexical, lexical_tsv::text FROM chunks").fetch_all(&mut conn).await.unwrap();
    for (doc, server) in &docs {
        let ours = LexicalTsvector::new(doc).unwrap_or_else(|| panic!("left to the server: {doc:?}"));
        assert_eq!(&ours.to_text(), server);
    }
    assert!(docs.iter().any(|(doc, _)| !doc.is_ascii()), "the fixtures have non-ASCII documents");
}

/// Chunks of a file `replace_file` writes with COPY rather than one INSERT (from 256).
const LARGE_FILE_CHUNKS: usize = 300;

/// Documents `lexical::document` never writes, which a restored backup could still hold:
/// quotes, backslashes, non-ASCII (some only the server may lowercase), more than 16,383 words,
/// a word more than 256 times, pieces either side of the 2,046-byte lexeme limit, odd whitespace,
/// nothing at all.
fn edge_documents() -> Vec<String> {
    let many: Vec<String> = (0..17_000).map(|i| format!("w{}", i % 300)).collect();
    vec![
        String::new(),
        " ".into(),
        "it's a 'quoted' word".into(),
        "back\\slash \\\\ \\' '\\ ''".into(),
        "straße ünïcode 数据 库 ǆ ω ς".into(),
        "Upper MiXeD İstanbul ÀÉ ǅ".into(),
        "tab\tnew\nline\r\nform\x0Cvert\x0Bend".into(),
        "  leading and trailing  ".into(),
        "nbsp\u{a0}inside zero\u{200b}width".into(),
        many.join(" "),
        vec!["same"; 20_000].join(" "),
        format!("{} {} {} tail", "x".repeat(2047), "y".repeat(2048), "z".repeat(2046)),
        format!("{} é{} é{}", "a".repeat(2046), "b".repeat(2044), "c".repeat(2045)),
        "$dollar _under_ score$ 0x1f 1e10 a-b a.b a,b a:b a&b a|b a!b a(b)".into(),
    ]
}

/// The edge documents written by `replace_file` (bound in a multi-row INSERT for a small file and
/// sent by COPY for a large one, with the server computing the ones the client leaves to it),
/// bound as parameters, and restored from a backup: all equal the SQL function.
#[tokio::test]
async fn chunk_tsvectors_equal_the_sql_function_on_edge_cases() {
    let Some(store) = pg_store().await else { return };
    let p = new_project(&store, "edges").await;
    let docs = edge_documents();
    let contents: Vec<String> = (0..docs.len()).map(|i| format!("chunk {i}")).collect();
    let refs: Vec<&str> = contents.iter().map(String::as_str).collect();
    let mut write = file("edges.ts", &refs);
    for (chunk, doc) in write.chunks.iter_mut().zip(&docs) {
        chunk.lexical = doc.clone();
    }
    store.replace_file(p, &write, None, None).await.unwrap();
    // The same documents again and again in one file, large enough for COPY.
    let large: Vec<String> = (0..LARGE_FILE_CHUNKS).map(|i| format!("large chunk {i}")).collect();
    let refs: Vec<&str> = large.iter().map(String::as_str).collect();
    let mut large_write = file("large.ts", &refs);
    for (chunk, doc) in large_write.chunks.iter_mut().zip(docs.iter().cycle()) {
        chunk.lexical = doc.clone();
    }
    store.replace_file(p, &large_write, None, None).await.unwrap();
    let mut conn = store.pool().acquire().await.unwrap();
    let (rows, differ) = tsvector_mismatches(&mut conn).await;
    assert_eq!(rows, (docs.len() + LARGE_FILE_CHUNKS) as i64);
    assert!(differ.is_empty(), "differ from the SQL function: {differ:#?}");
    let computed = docs.iter().filter(|d| LexicalTsvector::new(d).is_some()).count();
    assert!(computed >= 10 && computed < docs.len(), "{computed} of {} computed by the client", docs.len());

    // The binary form as a bound parameter, and the text form through tsvectorin.
    for doc in docs.iter().filter_map(|d| LexicalTsvector::new(d).map(|t| (d, t))) {
        let (doc, tsv) = doc;
        let (binary_equal, text_equal): (bool, bool) = sqlx::query_as(
            "SELECT $1 = semdex_lexical_tsvector($2), $3::tsvector = semdex_lexical_tsvector($2)",
        )
        .bind(&tsv)
        .bind(doc)
        .bind(tsv.to_text())
        .fetch_one(&mut *conn)
        .await
        .unwrap();
        assert!(binary_equal && text_equal, "{:?}", &doc[..doc.len().min(80)]);
    }

    // Restored from a backup, which carries no tsvector: computed again, the same.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("edges.jsonl");
    semdex::backup::backup(&store, &path).await.unwrap();
    let Some(restored) = pg_store().await else { return };
    semdex::backup::restore(&restored, &path, false).await.unwrap();
    let mut conn = restored.pool().acquire().await.unwrap();
    let (rows, differ) = tsvector_mismatches(&mut conn).await;
    assert_eq!(rows, (docs.len() + LARGE_FILE_CHUNKS) as i64);
    assert!(differ.is_empty(), "restored rows differ from the SQL function: {differ:#?}");
}

// put_embeddings: one INSERT of arrays that keeps stored hashes, also when a writer races ------

fn batch(prefix: &str, n: usize, dims: usize) -> Vec<(String, Vec<f32>)> {
    (0..n)
        .map(|i| {
            (
                hash(&format!("{prefix} {i}")),
                unit(&(0..dims).map(|d| ((i + d) % 7) as f32 + 1.0).collect::<Vec<_>>()),
            )
        })
        .collect()
}

/// New batches go in whole with their input modes and ids in batch order; a batch with a stored
/// hash or a repeated one writes only what is new; the count returned is what was written.
#[tokio::test]
async fn put_embeddings_writes_new_batches_whole_and_only_the_new_rest() {
    use semdex::store::InputMode;

    let Some(store) = pg_store().await else { return };
    let model = store.register_model("test", "tiny4", 4).await.unwrap();
    let first = batch("first", 5, 4);
    let modes =
        [InputMode::Whole, InputMode::Split, InputMode::Truncated, InputMode::Whole, InputMode::Split];
    assert_eq!(store.put_embeddings_with_modes(model.id, &first, &modes).await.unwrap(), 5);
    let page = store.embeddings_page(model.id, 0, 100).await.unwrap();
    let order: Vec<&String> = page.iter().map(|(_, h, _)| h).collect();
    assert_eq!(order, first.iter().map(|(h, _)| h).collect::<Vec<_>>(), "ids follow the batch order");
    assert_eq!(page[2].2, first[2].1);
    let hashes: Vec<String> = first.iter().map(|(h, _)| h.clone()).collect();
    let read = store.embedding_input_modes(model.id, &hashes).await.unwrap();
    for (h, mode) in &read {
        let i = hashes.iter().position(|x| x == h).unwrap();
        assert_eq!(*mode, modes[i]);
    }

    // Two stored, two new, one of them twice.
    let mut mixed = batch("first", 2, 4);
    mixed.extend(batch("second", 2, 4));
    mixed.push(mixed[3].clone());
    assert_eq!(store.put_embeddings(model.id, &mixed).await.unwrap(), 2);
    // A new batch repeating a hash.
    let mut repeated = batch("third", 3, 4);
    repeated.push(repeated[0].clone());
    assert_eq!(store.put_embeddings(model.id, &repeated).await.unwrap(), 3);
    assert_eq!(store.put_embeddings(model.id, &repeated).await.unwrap(), 0);
    assert_eq!(store.embeddings_extent(model.id).await.unwrap().0, 10);
}

/// A writer has one of a batch's hashes inserted but not committed when the batch is written:
/// the batch's INSERT waits on the unique key, then skips that hash and writes the rest, without
/// an error or a duplicate.
#[tokio::test]
async fn put_embeddings_skips_a_hash_a_concurrent_writer_stores_first() {
    let Some(store) = pg_store().await else { return };
    let store = std::sync::Arc::new(store);
    let model = store.register_model("test", "tiny4", 4).await.unwrap();
    let vectors = batch("raced", 6, 4);

    // The other writer: one of the hashes, inserted but not committed yet, so the batch's INSERT
    // waits on the unique key.
    let mut other = store.pool().begin().await.unwrap();
    sqlx::query("INSERT INTO embeddings (model_id, content_hash, embedding) VALUES ($1, $2, '[1,0,0,0]')")
        .bind(model.id)
        .bind(&vectors[3].0)
        .execute(&mut *other)
        .await
        .unwrap();
    let writer = {
        let store = store.clone();
        let vectors = vectors.clone();
        tokio::spawn(async move { store.put_embeddings(model.id, &vectors).await })
    };
    // Commit once the batch's INSERT is waiting for the other transaction.
    let mut waited = 0;
    loop {
        let waiting: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() \
             AND wait_event_type = 'Lock' AND query LIKE 'INSERT INTO embeddings%'",
        )
        .fetch_one(store.pool())
        .await
        .unwrap();
        if waiting > 0 {
            break;
        }
        waited += 1;
        assert!(waited < 600, "the batch's INSERT never waited on the other writer");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    other.commit().await.unwrap();
    assert_eq!(writer.await.unwrap().unwrap(), 5, "the other writer's hash is not counted");
    assert_eq!(store.embeddings_extent(model.id).await.unwrap().0, 6);
    let dups: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM (SELECT content_hash FROM embeddings GROUP BY model_id, content_hash HAVING count(*) > 1) d",
    )
    .fetch_one(store.pool())
    .await
    .unwrap();
    assert_eq!(dups, 0);
}

/// `put_embeddings` keeps each model's dimensions in the store. Another process that deletes the
/// model, or gives its id other dimensions (as a restore can), makes the cached value stale: the
/// store reads the model again, so a call fails or succeeds as an uncached one would.
#[tokio::test]
async fn put_embeddings_reads_a_model_again_when_its_cached_dimensions_are_stale() {
    let Some(store) = pg_store().await else { return };
    let model = store.register_model("test", "tiny4", 4).await.unwrap();
    assert_eq!(store.put_embeddings(model.id, &batch("four", 2, 4)).await.unwrap(), 2);

    // Behind the store's back: the model's id now has 3 dimensions.
    for sql in [
        format!("DROP INDEX IF EXISTS embeddings_hnsw_m{}", model.id),
        format!("DELETE FROM embeddings WHERE model_id = {}", model.id),
        format!("DELETE FROM embedding_models WHERE id = {}", model.id),
        format!(
            "INSERT INTO embedding_models (id, provider, model, dimensions) VALUES ({}, 'test', 'tiny3', 3)",
            model.id
        ),
    ] {
        sqlx::query(&sql).execute(store.pool()).await.unwrap();
    }
    let err = store.put_embeddings(model.id, &batch("four again", 2, 4)).await.unwrap_err();
    assert!(matches!(err, StoreError::Invalid(_)), "{err:?}");
    assert_eq!(store.put_embeddings(model.id, &batch("three", 3, 3)).await.unwrap(), 3);

    // Deleted: not found, as for a model never registered.
    for sql in [
        format!("DELETE FROM embeddings WHERE model_id = {}", model.id),
        format!("DELETE FROM embedding_models WHERE id = {}", model.id),
    ] {
        sqlx::query(&sql).execute(store.pool()).await.unwrap();
    }
    let err = store.put_embeddings(model.id, &batch("three again", 2, 3)).await.unwrap_err();
    assert!(matches!(err, StoreError::NotFound(_)), "{err:?}");
    assert_eq!(store.embeddings_extent(model.id).await.unwrap().0, 0);
}

/// Two writers of the same batches at once, round after round: every vector is stored once,
/// neither fails, and the counts they return add up to the batch.
#[tokio::test]
async fn concurrent_writers_of_one_batch_store_each_vector_once() {
    let Some(store) = pg_store().await else { return };
    let store = std::sync::Arc::new(store);
    let model = store.register_model("test", "tiny4", 4).await.unwrap();
    let mut total = 0i64;
    for round in 0..20 {
        let vectors = batch(&format!("round {round}"), 64, 4);
        let a = {
            let (store, vectors) = (store.clone(), vectors.clone());
            tokio::spawn(async move { store.put_embeddings(model.id, &vectors).await })
        };
        let b = {
            let (store, vectors) = (store.clone(), vectors.clone());
            tokio::spawn(async move { store.put_embeddings(model.id, &vectors).await })
        };
        let (a, b) = (a.await.unwrap().unwrap(), b.await.unwrap().unwrap());
        assert_eq!(a + b, 64, "round {round}: {a} + {b}");
        total += 64;
        assert_eq!(store.embeddings_extent(model.id).await.unwrap().0, total);
    }
}
