//! The embedding cache: `embed_pending` against a real SQLite store (a fresh migrated file per
//! test) and the scripted server of the parent module. Asserts what was sent (each distinct
//! text once), what was stored (exactly the expected vectors, whole batches only) and what stays
//! pending.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use semdex::embed::{
    BuiltinEmbedder, CircuitState, EmbedError, EmbedStats, Embedder, ModelSpec, OpenAiEmbedder,
    OverLongPolicy, embed_pending,
};
use semdex::store::{ChunkRecord, FileRecord, FileWrite, InputMode, NewProject, PgStore, SqliteStore, Store};
use tokio_util::sync::CancellationToken;

use super::{DIMS, Reply, Server, assert_close, config, expected, long_source, normal_body};
use crate::support;

/// A migrated SQLite store in a temporary directory (kept alive by the returned guard).
async fn sqlite_store() -> (tempfile::TempDir, SqliteStore) {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("semdex.db")).await.unwrap();
    store.migrate_up().await.unwrap();
    (dir, store)
}

fn content_hash(text: &str) -> String {
    blake3::hash(text.as_bytes()).to_hex().to_string()
}

/// A file whose chunks are `contents`, one per line range, as the indexer would write it.
fn file_write(path: &str, contents: &[&str]) -> FileWrite {
    let mut line = 1;
    let mut byte = 0i64;
    let mut chunks = Vec::new();
    for (ordinal, content) in contents.iter().enumerate() {
        let lines = content.lines().count().max(1) as i32;
        chunks.push(ChunkRecord {
            ordinal: ordinal as i32,
            content: content.to_string(),
            content_hash: content_hash(content),
            start_line: line,
            end_line: line + lines - 1,
            start_byte: byte,
            end_byte: byte + content.len() as i64,
            symbol_path: String::new(),
            kind: "statements".to_string(),
            language: "typescript".to_string(),
            token_count: indexer::count_tokens(content) as i32,
            lexical: semdex::lexical::document(path, "", content),
        });
        line += lines;
        byte += content.len() as i64 + 1;
    }
    let text = contents.join("\n");
    FileWrite {
        file: FileRecord {
            path: path.to_string(),
            language: Some("typescript".to_string()),
            size: text.len() as i64,
            line_count: (line - 1).max(1),
            content_hash: Some(content_hash(&text)),
            mtime_ns: 0,
            is_binary: false,
            is_generated: false,
            skip_reason: None,
            diagnostics_count: 0,
            chunker_version: 1,
        },
        symbols: Vec::new(),
        imports: Vec::new(),
        chunks,
    }
}

/// A project with `files` written, and the test model registered.
async fn project_with(store: &dyn Store, files: &[FileWrite], spec: &ModelSpec) -> (i64, i64) {
    let project = store
        .create_project(NewProject {
            name: "p".into(),
            settings: serde_json::json!({}),
            ..NewProject::default()
        })
        .await
        .unwrap();
    for f in files {
        store.replace_file(project.id, f, None, None).await.unwrap();
    }
    let model = store.register_model(&spec.provider, &spec.model, spec.dimensions as i32).await.unwrap();
    (project.id, model.id)
}

/// Every stored vector of a model, by content hash.
async fn stored(store: &dyn Store, model_id: i64) -> std::collections::BTreeMap<String, Vec<f32>> {
    store.embeddings_page(model_id, 0, 1_000_000).await.unwrap().into_iter().map(|(_, h, v)| (h, v)).collect()
}

fn chunk_texts(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("export function step{i}(input) {{ return transform(input, {i}); }}")).collect()
}

#[tokio::test]
async fn embed_pending_sends_each_missing_hash_once_and_stores_every_vector() {
    let server = Server::start(|_| Reply::Normal).await;
    let mut cfg = config(&server);
    cfg.max_batch_inputs = 4;
    cfg.concurrency = 2;
    let embedder = OpenAiEmbedder::new(cfg).unwrap();
    let texts = chunk_texts(10);
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    // The same chunks in two files, and one repeated inside a file: 10 distinct hashes.
    let files =
        [file_write("a.ts", &refs), file_write("b.ts", &refs[..5]), file_write("c.ts", &[refs[0], refs[0]])];
    let (_dir, store) = sqlite_store().await;
    let (project, model) = project_with(&store, &files, embedder.spec()).await;

    let cancel = CancellationToken::new();
    let stats = embed_pending(&store, model, &embedder, Some(project), &cancel, None).await.unwrap();
    assert_eq!(stats.chunks_embedded, 10);
    assert_eq!(stats.calls, 3, "10 hashes in batches of at most 4");
    assert_eq!(stats.tokens, 1004 + 1004 + 1002, "usage of each request");
    assert_eq!((stats.failures, stats.paused, stats.cancelled), (0, false, false));
    assert_eq!(server.calls(), 3);
    assert!(server.max_in_flight() <= 2);
    let mut sent: Vec<String> = server.seen().iter().flat_map(|s| s.inputs()).collect();
    sent.sort();
    let mut distinct = texts.clone();
    distinct.sort();
    assert_eq!(sent, distinct, "each distinct text sent exactly once");

    let vectors = stored(&store, model).await;
    assert_eq!(vectors.len(), 10);
    for text in &texts {
        assert_close(&vectors[&content_hash(text)], &expected(text, DIMS));
    }

    // Nothing pending: a second pass makes no call.
    let again = embed_pending(&store, model, &embedder, Some(project), &cancel, None).await.unwrap();
    assert_eq!(again, EmbedStats::default());
    assert_eq!(server.calls(), 3);
}

#[tokio::test]
async fn embed_pending_packs_batches_by_tokens_and_keeps_the_concurrency() {
    let server = Server::start(|_| Reply::After(Duration::from_millis(30), Box::new(Reply::Normal))).await;
    let mut cfg = config(&server);
    let texts = chunk_texts(40);
    let per_text = texts.iter().map(|t| indexer::count_tokens(t)).max().unwrap();
    cfg.max_batch_tokens = per_text * 3;
    cfg.concurrency = 3;
    let embedder = OpenAiEmbedder::new(cfg).unwrap();
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let (_dir, store) = sqlite_store().await;
    let (project, model) = project_with(&store, &[file_write("a.ts", &refs)], embedder.spec()).await;

    let seen_progress = AtomicUsize::new(0);
    let progress = |s: &EmbedStats| {
        seen_progress.fetch_add(1, Ordering::SeqCst);
        assert!(s.chunks_embedded <= 40);
    };
    let cancel = CancellationToken::new();
    let stats =
        embed_pending(&store, model, &embedder, Some(project), &cancel, Some(&progress)).await.unwrap();
    assert_eq!(stats.chunks_embedded, 40);
    for seen in server.seen() {
        let tokens: usize = seen.inputs().iter().map(|t| indexer::count_tokens(t)).sum();
        assert!(tokens <= per_text * 3, "{tokens}");
    }
    assert_eq!(stats.calls as usize, server.calls());
    assert_eq!(seen_progress.load(Ordering::SeqCst), server.calls());
    assert_eq!(server.max_in_flight(), 3);
    assert_eq!(stored(&store, model).await.len(), 40);
}

#[tokio::test]
async fn pages_read_while_batches_run_never_send_a_hash_twice() {
    // 300 hashes, pages of 64, batches of 2, 3 in flight with jittered latencies: the store is
    // read again while batches are running and being stored.
    let server = Server::start(|seen| {
        let delay = Duration::from_millis(seen.n as u64 * 7 % 13);
        Reply::After(delay, Box::new(Reply::Normal))
    })
    .await;
    let mut cfg = config(&server);
    cfg.max_batch_inputs = 2;
    cfg.concurrency = 3;
    let embedder = OpenAiEmbedder::new(cfg).unwrap();
    let texts = chunk_texts(300);
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let (_dir, store) = sqlite_store().await;
    let (project, model) = project_with(&store, &[file_write("a.ts", &refs)], embedder.spec()).await;
    let cancel = CancellationToken::new();
    let stats = embed_pending(&store, model, &embedder, Some(project), &cancel, None).await.unwrap();
    assert_eq!((stats.chunks_embedded, stats.calls), (300, 150));
    assert_eq!(server.calls(), 150);
    assert_eq!(server.max_in_flight(), 3);
    let mut sent: Vec<String> = server.seen().iter().flat_map(|s| s.inputs()).collect();
    sent.sort();
    let mut distinct = texts.clone();
    distinct.sort();
    assert_eq!(sent, distinct);
    assert_eq!(stored(&store, model).await.len(), 300);
}

#[tokio::test]
async fn a_failed_batch_stores_nothing_and_stays_pending() {
    let texts = chunk_texts(6);
    let poison = texts[4].clone();
    let server = Server::start(move |seen| {
        if seen.inputs().contains(&poison) { Reply::status(400, "input rejected") } else { Reply::Normal }
    })
    .await;
    let mut cfg = config(&server);
    cfg.max_batch_inputs = 2;
    let embedder = OpenAiEmbedder::new(cfg).unwrap();
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let (_dir, store) = sqlite_store().await;
    let (project, model) = project_with(&store, &[file_write("a.ts", &refs)], embedder.spec()).await;

    let cancel = CancellationToken::new();
    let stats = embed_pending(&store, model, &embedder, Some(project), &cancel, None).await.unwrap();
    assert_eq!((stats.chunks_embedded, stats.failures, stats.failed_chunks, stats.calls), (4, 1, 2, 3));
    assert!(stats.last_error.as_deref().unwrap().contains("input rejected"));
    assert_eq!(server.calls(), 3, "the 400 is not retried and the failed batch not resent in the pass");
    let vectors = stored(&store, model).await;
    assert_eq!(vectors.len(), 4);
    // Pending hashes come in content-hash order, so the poisoned text's batch partner is
    // whichever text sorts next to it: both stay unstored, and exactly they stay pending.
    assert!(!vectors.contains_key(&content_hash(&texts[4])));
    let mut unstored: Vec<String> =
        texts.iter().map(|t| content_hash(t)).filter(|h| !vectors.contains_key(h)).collect();
    unstored.sort();
    let pending: Vec<String> = store
        .pending_embeddings(model, Some(project), None, 100)
        .await
        .unwrap()
        .into_iter()
        .map(|(h, _)| h)
        .collect();
    assert_eq!(pending, unstored);
}

#[tokio::test]
async fn an_invalid_answer_stores_nothing_of_the_batch() {
    let texts = chunk_texts(3);
    let server = Server::start(|seen| {
        let mut body = normal_body(seen, DIMS);
        body["data"][2]["embedding"] = serde_json::json!(vec![0.0; DIMS]);
        Reply::ok_body(body.to_string())
    })
    .await;
    let mut cfg = config(&server);
    cfg.max_retries = 1;
    let embedder = OpenAiEmbedder::new(cfg).unwrap();
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let (_dir, store) = sqlite_store().await;
    let (project, model) = project_with(&store, &[file_write("a.ts", &refs)], embedder.spec()).await;
    let cancel = CancellationToken::new();
    let stats = embed_pending(&store, model, &embedder, Some(project), &cancel, None).await.unwrap();
    assert_eq!((stats.chunks_embedded, stats.failures, stats.failed_chunks), (0, 1, 3));
    assert_eq!(server.calls(), 2);
    assert!(stored(&store, model).await.is_empty());
}

#[tokio::test]
async fn an_open_circuit_pauses_the_pass_and_leaves_chunks_pending() {
    let server = Server::start(|_| Reply::status(503, "down")).await;
    let mut cfg = config(&server);
    cfg.max_retries = 0;
    cfg.max_batch_inputs = 1;
    cfg.concurrency = 1;
    cfg.breaker_threshold = 2;
    let embedder = OpenAiEmbedder::new(cfg).unwrap();
    let texts = chunk_texts(10);
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let (_dir, store) = sqlite_store().await;
    let (project, model) = project_with(&store, &[file_write("a.ts", &refs)], embedder.spec()).await;

    let cancel = CancellationToken::new();
    let stats = embed_pending(&store, model, &embedder, Some(project), &cancel, None).await.unwrap();
    assert!(stats.paused);
    assert_eq!(server.calls(), 2, "the breaker opened after two failed batches");
    assert_eq!((stats.chunks_embedded, stats.failures, stats.calls), (0, 2, 3));
    assert_eq!(embedder.circuit_state(), CircuitState::Open);
    assert!(stored(&store, model).await.is_empty());
    assert_eq!(store.pending_embeddings(model, Some(project), None, 100).await.unwrap().len(), 10);
}

#[tokio::test]
async fn a_rejected_key_fails_the_pass() {
    let server = Server::start(|_| Reply::status(401, r#"{"error":{"message":"bad key"}}"#)).await;
    let mut cfg = config(&server);
    cfg.max_batch_inputs = 1;
    cfg.concurrency = 1;
    let embedder = OpenAiEmbedder::new(cfg).unwrap();
    let texts = chunk_texts(5);
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let (_dir, store) = sqlite_store().await;
    let (project, model) = project_with(&store, &[file_write("a.ts", &refs)], embedder.spec()).await;
    let cancel = CancellationToken::new();
    let err = embed_pending(&store, model, &embedder, Some(project), &cancel, None).await.unwrap_err();
    assert!(matches!(err, EmbedError::Rejected { status: 401, .. }), "{err:?}");
    assert_eq!(server.calls(), 1, "no point sending the other batches");
}

#[tokio::test]
async fn a_cancelled_pass_drops_in_flight_batches_and_stores_nothing_partial() {
    let server = Server::start(|_| Reply::Hang).await;
    let embedder = OpenAiEmbedder::new(config(&server)).unwrap();
    let texts = chunk_texts(3);
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let (_dir, store) = sqlite_store().await;
    let (project, model) = project_with(&store, &[file_write("a.ts", &refs)], embedder.spec()).await;
    let cancel = CancellationToken::new();
    let trigger = cancel.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(100)).await;
        trigger.cancel();
    });
    let stats = embed_pending(&store, model, &embedder, Some(project), &cancel, None).await.unwrap();
    assert!(stats.cancelled);
    assert_eq!(stats.chunks_embedded, 0);
    assert!(stored(&store, model).await.is_empty());
    assert_eq!(server.calls(), 1);

    // Already cancelled: nothing is sent.
    let stats = embed_pending(&store, model, &embedder, Some(project), &cancel, None).await.unwrap();
    assert!(stats.cancelled);
    assert_eq!(server.calls(), 1);
}

#[tokio::test]
async fn a_store_error_in_the_writer_stops_the_pass() {
    // Vectors for a model the store does not know: the first write fails, and the call loop
    // stops instead of sending the rest.
    let server = Server::start(|_| Reply::After(Duration::from_millis(20), Box::new(Reply::Normal))).await;
    let mut cfg = config(&server);
    cfg.max_batch_inputs = 2;
    cfg.concurrency = 2;
    let embedder = OpenAiEmbedder::new(cfg).unwrap();
    let texts = chunk_texts(40);
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let (_dir, store) = sqlite_store().await;
    let (project, model) = project_with(&store, &[file_write("a.ts", &refs)], embedder.spec()).await;
    let cancel = CancellationToken::new();
    let err = embed_pending(&store, model + 1000, &embedder, Some(project), &cancel, None).await.unwrap_err();
    assert!(matches!(err, EmbedError::Store(_)), "{err:?}");
    assert!(server.calls() < 20, "{} calls: the pass went on after the store failed", server.calls());
    assert!(stored(&store, model).await.is_empty());
}

#[tokio::test]
async fn the_builtin_embedder_fills_the_cache_offline() {
    let embedder = BuiltinEmbedder::new(64);
    let texts = chunk_texts(300);
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let (_dir, store) = sqlite_store().await;
    let (project, model) = project_with(&store, &[file_write("a.ts", &refs)], embedder.spec()).await;
    let cancel = CancellationToken::new();
    let stats = embed_pending(&store, model, &embedder, None, &cancel, None).await.unwrap();
    assert_eq!(stats.chunks_embedded, 300);
    assert_eq!(stats.calls, 2, "batches of 256");
    let vectors = stored(&store, model).await;
    for text in &texts {
        assert_eq!(vectors[&content_hash(text)], embedder.embed_one(text));
    }
    let again = embed_pending(&store, model, &embedder, Some(project), &cancel, None).await.unwrap();
    assert_eq!(again.calls, 0);
}

/// Issue 4: "an over-long input is split ... or truncated, by configuration, and the chunk
/// records which". Through `embed_pending` and a real server, each stored embedding records how
/// its text was sent, and a second pass sends nothing.
async fn check_over_long_inputs_are_recorded(store: &dyn Store) {
    let long = long_source();
    assert!(indexer::count_tokens(&long) > 200);
    let short = "export const short = 1;";
    let (project, _) = project_with(
        store,
        &[file_write("a.ts", &[short, &long])],
        &ModelSpec { provider: "openai".into(), model: "unused".into(), dimensions: DIMS },
    )
    .await;
    for (policy, mode) in
        [(OverLongPolicy::Split, InputMode::Split), (OverLongPolicy::Truncate, InputMode::Truncated)]
    {
        let server = Server::start(|_| Reply::Normal).await;
        let mut cfg = config(&server);
        cfg.model = format!("test-embed-{}", mode.as_str());
        cfg.max_input_tokens = 200;
        cfg.over_long = policy;
        let embedder = OpenAiEmbedder::new(cfg).unwrap();
        let spec = embedder.spec();
        let model =
            store.register_model(&spec.provider, &spec.model, spec.dimensions as i32).await.unwrap().id;
        let cancel = CancellationToken::new();
        let stats = embed_pending(store, model, &embedder, Some(project), &cancel, None).await.unwrap();
        assert_eq!(stats.chunks_embedded, 2);
        assert_eq!((stats.split, stats.truncated), if mode == InputMode::Split { (1, 0) } else { (0, 1) });
        let hashes = [content_hash(short), content_hash(&long)];
        let mut want = vec![(hashes[0].clone(), InputMode::Whole), (hashes[1].clone(), mode)];
        want.sort_by(|a, b| a.0.cmp(&b.0));
        let got = store.embedding_input_modes(model, &hashes).await.unwrap();
        assert_eq!(got, want, "{policy:?}: in content-hash order");
        let calls = server.calls();
        let again = embed_pending(store, model, &embedder, Some(project), &cancel, None).await.unwrap();
        assert_eq!((again, server.calls()), (EmbedStats::default(), calls));
    }
}

#[tokio::test]
async fn over_long_inputs_are_recorded_as_split_or_truncated_sqlite() {
    let (_dir, store) = sqlite_store().await;
    check_over_long_inputs_are_recorded(&store).await;
}

#[tokio::test]
async fn over_long_inputs_are_recorded_as_split_or_truncated_postgres() {
    let Some(url) = support::pg_database().await else { return };
    let store = PgStore::connect(&url).await.unwrap();
    store.migrate_up().await.unwrap();
    check_over_long_inputs_are_recorded(&store).await;
}
