//! Embedding pipeline throughput: `embed_pending` with an `OpenAiEmbedder` against a local
//! OpenAI-compatible server that takes a fixed 200 ms per request and refuses (429) requests
//! above its concurrency cap, over a synthetic corpus indexed into a real SQLite store.
//!
//! Reports, per (concurrency C, batch size B), the throughput in inputs/s as a share of the
//! theoretical maximum C x B / latency, where the time goes (the server's hold, the client's
//! HTTP and JSON work per call, the gaps between calls in which `embed_pending` reads pages and
//! writes vectors), and checks that a second pass over the unchanged corpus makes no call.
//! Results and their reading are written down in `benches/results/embed.md`.
//!
//! Run: `cargo bench -p semdex-benches --bench embed`. Knobs (environment):
//! - `SEMDEX_BENCH_EMBED_CONFIGS`: `CxB[@all][/float]` items, comma-separated (default
//!   `4x64,8x128,4x2048,4x2048@all`); `@all` embeds the large corpus instead of the small one,
//!   `/float` asks for `encoding_format: "float"` instead of the default base64 (the server
//!   honours the request's encoding, as OpenAI does).
//! - `SEMDEX_BENCH_EMBED_DIMS` (default 768), `SEMDEX_BENCH_EMBED_REPEATS` (default 3).
//! - `SEMDEX_BENCH_EMBED_SMALL` / `SEMDEX_BENCH_EMBED_ALL` (default 24,576 / 98,304 chunks).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use semdex::embed::{
    EmbedStats, Embedded, Embedder, EncodingFormat, ModelSpec, OpenAiConfig, OpenAiEmbedder,
    Result as EmbedResult, embed_pending,
};
use semdex::store::{ChunkRecord, FileRecord, FileWrite, NewProject, SqliteStore, Store};
use tokio_util::sync::CancellationToken;

/// What every request costs at the server, however small.
const LATENCY: Duration = Duration::from_millis(200);
/// Requests the server serves at once; one more is answered 429 at once (see `serve`).
const SERVER_CAP: usize = 8;
/// Largest batch the server accepts (OpenAI's limit); more is a 400.
const SERVER_MAX_INPUTS: usize = 2048;
/// Chunks per synthetic file.
const CHUNKS_PER_FILE: usize = 64;
/// Distinct vectors the server hands out (chosen by a hash of the input): enough to be
/// realistic, few enough that the server renders none at request time.
const VECTOR_VARIANTS: usize = 101;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.trim().replace('_', "").parse().ok()).unwrap_or(default)
}

// ---------------------------------------------------------------------------------------------
// The server

/// Counters the server keeps; the bench reads them around each pass.
struct ServerState {
    dims: usize,
    /// `VECTOR_VARIANTS` vectors, each already rendered as a JSON array.
    vectors: Vec<String>,
    /// The same vectors as JSON strings of the base64 of their little-endian f32s.
    vectors_base64: Vec<String>,
    cap: Arc<tokio::sync::Semaphore>,
    requests: AtomicU64,
    inputs: AtomicU64,
    rejected_429: AtomicU64,
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
    /// Sum over requests of the time from the handler's start to the response being ready.
    held_ns: AtomicU64,
    /// Sum over requests of the server's own work (parse the request, render the answer).
    work_ns: AtomicU64,
}

impl ServerState {
    fn new(dims: usize) -> ServerState {
        let unit: Vec<Vec<f32>> = (0..VECTOR_VARIANTS)
            .map(|v| {
                let mut rng = fastrand_like(v as u64 + 1);
                let raw: Vec<f32> = (0..dims).map(|_| rng() * 2.0 - 1.0).collect();
                let norm = raw.iter().map(|x| x * x).sum::<f32>().sqrt();
                raw.iter().map(|x| x / norm).collect()
            })
            .collect();
        let vectors = unit
            .iter()
            .map(|v| {
                let parts: Vec<String> = v.iter().map(|x| format!("{x}")).collect();
                format!("[{}]", parts.join(","))
            })
            .collect();
        let vectors_base64 = unit
            .iter()
            .map(|v| {
                use base64::Engine as _;
                let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
                format!("\"{}\"", base64::engine::general_purpose::STANDARD.encode(bytes))
            })
            .collect();
        ServerState {
            dims,
            vectors,
            vectors_base64,
            cap: Arc::new(tokio::sync::Semaphore::new(SERVER_CAP)),
            requests: AtomicU64::new(0),
            inputs: AtomicU64::new(0),
            rejected_429: AtomicU64::new(0),
            in_flight: AtomicUsize::new(0),
            max_in_flight: AtomicUsize::new(0),
            held_ns: AtomicU64::new(0),
            work_ns: AtomicU64::new(0),
        }
    }

    fn snapshot(&self) -> ServerCounts {
        ServerCounts {
            requests: self.requests.load(Ordering::SeqCst),
            inputs: self.inputs.load(Ordering::SeqCst),
            rejected_429: self.rejected_429.load(Ordering::SeqCst),
            held: Duration::from_nanos(self.held_ns.load(Ordering::SeqCst)),
            work: Duration::from_nanos(self.work_ns.load(Ordering::SeqCst)),
        }
    }
}

#[derive(Debug, Clone, Copy, Default)]
struct ServerCounts {
    requests: u64,
    inputs: u64,
    rejected_429: u64,
    held: Duration,
    work: Duration,
}

impl std::ops::Sub for ServerCounts {
    type Output = ServerCounts;
    fn sub(self, o: ServerCounts) -> ServerCounts {
        ServerCounts {
            requests: self.requests - o.requests,
            inputs: self.inputs - o.inputs,
            rejected_429: self.rejected_429 - o.rejected_429,
            held: self.held.saturating_sub(o.held),
            work: self.work.saturating_sub(o.work),
        }
    }
}

/// A tiny deterministic generator (xorshift), so the bench needs no RNG crate.
fn fastrand_like(seed: u64) -> impl FnMut() -> f32 {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    move || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        (s >> 40) as f32 / (1u64 << 24) as f32
    }
}

/// `POST /v1/embeddings`. Above the cap: 429 at once, with `retry-after-ms`, so that a client
/// overrunning the cap shows up as rejections (the bench requires none) rather than hiding in a
/// queue. Within it: the answer is ready `LATENCY` after the request arrived (or when rendered,
/// if that took longer), so the server's own work is part of the 200 ms, as at a real provider.
async fn serve(State(state): State<Arc<ServerState>>, body: Bytes) -> Response {
    let arrived = Instant::now();
    let Ok(_permit) = state.cap.clone().try_acquire_owned() else {
        state.rejected_429.fetch_add(1, Ordering::SeqCst);
        let body = r#"{"error":{"message":"too many concurrent requests","type":"rate_limit"}}"#;
        return (StatusCode::TOO_MANY_REQUESTS, [("retry-after-ms", "50")], body).into_response();
    };
    let now = state.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
    state.max_in_flight.fetch_max(now, Ordering::SeqCst);
    let answer = render(&state, &body);
    state.work_ns.fetch_add(arrived.elapsed().as_nanos() as u64, Ordering::SeqCst);
    tokio::time::sleep_until((arrived + LATENCY).into()).await;
    state.in_flight.fetch_sub(1, Ordering::SeqCst);
    state.held_ns.fetch_add(arrived.elapsed().as_nanos() as u64, Ordering::SeqCst);
    answer
}

fn render(state: &ServerState, body: &[u8]) -> Response {
    let bad =
        |m: &str| (StatusCode::BAD_REQUEST, format!(r#"{{"error":{{"message":"{m}"}}}}"#)).into_response();
    let Ok(request) = serde_json::from_slice::<serde_json::Value>(body) else { return bad("malformed JSON") };
    let Some(inputs) = request["input"].as_array() else { return bad("input must be an array") };
    if inputs.is_empty() || inputs.len() > SERVER_MAX_INPUTS {
        return bad("between 1 and 2048 inputs");
    }
    if request["dimensions"].as_u64().is_some_and(|d| d as usize != state.dims) {
        return bad("unsupported dimensions");
    }
    // The encoding asked for, floats when the request does not say (as OpenAI).
    let vectors = if request["encoding_format"] == "base64" { &state.vectors_base64 } else { &state.vectors };
    let mut out = String::with_capacity(inputs.len() * (vectors[0].len() + 48) + 128);
    out.push_str(r#"{"object":"list","data":["#);
    let mut bytes = 0usize;
    for (i, input) in inputs.iter().enumerate() {
        let text = input.as_str().unwrap_or("");
        bytes += text.len();
        let variant = blake3::hash(text.as_bytes()).as_bytes()[0] as usize % VECTOR_VARIANTS;
        if i > 0 {
            out.push(',');
        }
        out.push_str(r#"{"object":"embedding","index":"#);
        out.push_str(&i.to_string());
        out.push_str(r#","embedding":"#);
        out.push_str(&vectors[variant]);
        out.push('}');
    }
    let tokens = bytes / 4;
    out.push_str(&format!(
        r#"],"model":"bench","usage":{{"prompt_tokens":{tokens},"total_tokens":{tokens}}}}}"#
    ));
    state.requests.fetch_add(1, Ordering::SeqCst);
    state.inputs.fetch_add(inputs.len() as u64, Ordering::SeqCst);
    ([(header::CONTENT_TYPE, "application/json")], out).into_response()
}

/// Starts the server on its own single-worker runtime (its own OS thread, named so its CPU time
/// can be told apart from the client's).
fn start_server(dims: usize) -> (tokio::runtime::Runtime, SocketAddr, Arc<ServerState>) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("bench-server")
        .enable_all()
        .build()
        .expect("server runtime");
    let state = Arc::new(ServerState::new(dims));
    let app = axum::Router::new()
        .route("/v1/embeddings", axum::routing::post(serve))
        .layer(DefaultBodyLimit::disable())
        .with_state(state.clone());
    let listener = runtime.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).expect("bind 127.0.0.1");
    let addr = listener.local_addr().expect("local addr");
    runtime.spawn(async move { axum::serve(listener, app).await });
    (runtime, addr, state)
}

// ---------------------------------------------------------------------------------------------
// The corpus

/// A distinct TypeScript function of about 110 tokens (the estimate), so that 2,048 of them fit
/// one request's 300,000-token budget: batches are then cut by count, as configured.
fn chunk_text(i: usize) -> String {
    format!(
        "export async function handleOrder{i}(request: OrderRequest, options: HandlerOptions = {{}}): Promise<Result<Order>> {{\n\
         \x20 const value = normalizeOrder(request.payload, options.limit ?? {limit});\n\
         \x20 if (!value.ok) {{\n\
         \x20   logger.warn(\"handleOrder{i} rejected\", {{ id: request.id, reason: value.reason }});\n\
         \x20   return err(new ValidationError(`handleOrder{i}: ${{value.reason}}`));\n\
         \x20 }}\n\
         \x20 const saved = await orderRepository{repo}.save(value.data, {{ retries: {retries}, tag: \"t{i}\" }});\n\
         \x20 return ok(saved);\n\
         }}",
        limit = i % 97,
        repo = i % 13,
        retries = i % 7,
    )
}

fn content_hash(text: &str) -> String {
    blake3::hash(text.as_bytes()).to_hex().to_string()
}

/// One synthetic file holding chunks `first..first + n`, as the indexer would write it.
fn file_write(path: &str, first: usize, n: usize) -> FileWrite {
    let mut chunks = Vec::with_capacity(n);
    let mut texts = Vec::with_capacity(n);
    let (mut line, mut byte) = (1i32, 0i64);
    for (ordinal, i) in (first..first + n).enumerate() {
        let content = chunk_text(i);
        let lines = content.lines().count() as i32;
        chunks.push(ChunkRecord {
            ordinal: ordinal as i32,
            content_hash: content_hash(&content),
            start_line: line,
            end_line: line + lines - 1,
            start_byte: byte,
            end_byte: byte + content.len() as i64,
            symbol_path: format!("handleOrder{i}"),
            kind: "symbol".to_string(),
            language: "typescript".to_string(),
            token_count: indexer::count_tokens(&content) as i32,
            lexical: semdex::lexical::document(path, &format!("handleOrder{i}"), &content),
            content: content.clone(),
        });
        line += lines + 1;
        byte += content.len() as i64 + 2;
        texts.push(content);
    }
    let text = texts.join("\n\n");
    FileWrite {
        file: FileRecord {
            path: path.to_string(),
            language: Some("typescript".to_string()),
            size: text.len() as i64,
            line_count: line - 1,
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

/// Writes chunks `first..first + n` as a project of 64-chunk files; returns its id.
async fn index_project(store: &SqliteStore, name: &str, first: usize, n: usize) -> i64 {
    let project = store
        .create_project(NewProject {
            name: name.into(),
            settings: serde_json::json!({}),
            ..NewProject::default()
        })
        .await
        .expect("create project");
    let mut at = first;
    while at < first + n {
        let take = CHUNKS_PER_FILE.min(first + n - at);
        let path = format!("src/orders/handler_{at:06}.ts");
        store.replace_file(project.id, &file_write(&path, at, take), None, None).await.expect("replace_file");
        at += take;
    }
    project.id
}

// ---------------------------------------------------------------------------------------------
// Measuring the client

/// Delegates to the real embedder and records when each `embed` call started and ended.
#[derive(Debug)]
struct Timed {
    inner: OpenAiEmbedder,
    calls: Mutex<Vec<(Instant, Instant, usize)>>,
}

#[async_trait::async_trait]
impl Embedder for Timed {
    fn spec(&self) -> &ModelSpec {
        self.inner.spec()
    }
    fn max_batch_inputs(&self) -> usize {
        self.inner.max_batch_inputs()
    }
    fn max_batch_tokens(&self) -> usize {
        self.inner.max_batch_tokens()
    }
    fn concurrency(&self) -> usize {
        self.inner.concurrency()
    }
    async fn embed(&self, inputs: &[String]) -> EmbedResult<Embedded> {
        let start = Instant::now();
        let result = self.inner.embed(inputs).await;
        let end = Instant::now();
        self.calls.lock().unwrap_or_else(PoisonError::into_inner).push((start, end, inputs.len()));
        result
    }
}

/// CPU seconds used so far by this process's threads, split into the server's and the rest.
fn cpu_seconds() -> (f64, f64) {
    let ticks = 100.0; // USER_HZ on Linux
    let (mut server, mut client) = (0.0, 0.0);
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else { return (0.0, 0.0) };
    for task in tasks.flatten() {
        let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        let stat = std::fs::read_to_string(task.path().join("stat")).unwrap_or_default();
        // Fields after the parenthesised name: state is field 3, utime 14, stime 15.
        let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else { continue };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let used = fields.get(11).and_then(|u| u.parse::<f64>().ok()).unwrap_or(0.0)
            + fields.get(12).and_then(|s| s.parse::<f64>().ok()).unwrap_or(0.0);
        if comm.trim().starts_with("bench-server") {
            server += used / ticks;
        } else {
            client += used / ticks;
        }
    }
    (server, client)
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

#[derive(Debug, Clone, Copy)]
struct Setup {
    concurrency: usize,
    batch: usize,
    all: bool,
    encoding: EncodingFormat,
}

impl Setup {
    fn parse(item: &str) -> Option<Setup> {
        let (item, encoding) = match item.trim().split_once('/') {
            Some((item, "float")) => (item, EncodingFormat::Float),
            Some((item, "base64")) => (item, EncodingFormat::Base64),
            Some(_) => return None,
            None => (item.trim(), EncodingFormat::Base64),
        };
        let (shape, all) = match item.split_once('@') {
            Some((shape, "all")) => (shape, true),
            Some(_) => return None,
            None => (item, false),
        };
        let (c, b) = shape.split_once('x')?;
        Some(Setup { concurrency: c.parse().ok()?, batch: b.parse().ok()?, all, encoding })
    }

    fn label(&self) -> String {
        format!(
            "{}x{}{}{}",
            self.concurrency,
            self.batch,
            if self.all { "@all" } else { "" },
            if self.encoding == EncodingFormat::Float { "/float" } else { "" }
        )
    }
}

/// One measured pass.
#[derive(Debug, Clone)]
struct Pass {
    inputs: u64,
    wall: Duration,
    calls: u64,
    server: ServerCounts,
    /// Mean duration of an `embed` call as the pipeline sees it.
    mean_call: Duration,
    /// Share of C x wall during which a call was in `embed`.
    occupancy: f64,
    /// From the pass's start to the first call (the first page read and its packing).
    first_call: Duration,
    /// From the last call's end to the pass's end (its store write, the final read).
    tail: Duration,
    /// Calls made by the second pass over the unchanged corpus (asserted to be 0).
    second_pass_calls: u64,
    cpu_server: f64,
    cpu_client: f64,
    load: String,
}

impl Pass {
    fn throughput(&self) -> f64 {
        self.inputs as f64 / self.wall.as_secs_f64()
    }
}

fn theoretical(setup: Setup) -> f64 {
    (setup.concurrency * setup.batch) as f64 / LATENCY.as_secs_f64()
}

/// The best a perfect pipeline could do on `inputs`: whole rounds of C batches of 200 ms.
fn round_bound(setup: Setup, inputs: u64) -> f64 {
    let batches = inputs.div_ceil(setup.batch as u64);
    let rounds = batches.div_ceil(setup.concurrency as u64);
    inputs as f64 / (rounds as f64 * LATENCY.as_secs_f64()) / theoretical(setup)
}

#[allow(clippy::too_many_arguments)]
async fn measure(
    store: &SqliteStore,
    addr: SocketAddr,
    server: &ServerState,
    dims: usize,
    setup: Setup,
    scope: Option<i64>,
    expected_inputs: u64,
    run: usize,
) -> Pass {
    let model = format!("bench-{}-run{run}", setup.label().replace('/', "-"));
    let config = OpenAiConfig {
        base_url: format!("http://{addr}"),
        api_key: Some("sk-bench".to_string()),
        model: model.clone(),
        dimensions: dims,
        max_batch_inputs: setup.batch,
        concurrency: setup.concurrency,
        encoding_format: setup.encoding,
        timeout: Duration::from_secs(60),
        ..OpenAiConfig::default()
    };
    let embedder =
        Timed { inner: OpenAiEmbedder::new(config).expect("embedder"), calls: Mutex::new(Vec::new()) };
    let model_id = store.register_model("openai", &model, dims as i32).await.expect("register model").id;
    let cancel = CancellationToken::new();

    let load = loadavg();
    let before = server.snapshot();
    let (cpu_s0, cpu_c0) = cpu_seconds();
    let start = Instant::now();
    let stats = embed_pending(store, model_id, &embedder, scope, &cancel, None).await.expect("embed_pending");
    let wall = start.elapsed();
    let end = Instant::now();
    let (cpu_s1, cpu_c1) = cpu_seconds();
    let counts = server.snapshot() - before;

    assert_eq!(stats.chunks_embedded, expected_inputs, "{stats:?}");
    assert_eq!((stats.failures, stats.paused, stats.cancelled), (0, false, false), "{stats:?}");
    assert_eq!(counts.rejected_429, 0, "the client stayed within the server's cap");
    assert_eq!(counts.requests, stats.calls, "one HTTP request per batch, no retries");
    assert_eq!(counts.inputs, expected_inputs);

    // Unchanged corpus: a second pass finds nothing pending and makes no call.
    let again = embed_pending(store, model_id, &embedder, scope, &cancel, None).await.expect("second pass");
    assert_eq!(again, EmbedStats::default(), "re-embedding an unchanged corpus");
    assert_eq!(server.snapshot().requests, before.requests + counts.requests, "0 calls on the second pass");

    let calls = embedder.calls.into_inner().unwrap_or_else(PoisonError::into_inner);
    let busy: Duration = calls.iter().map(|(s, e, _)| *e - *s).sum();
    let first = calls.iter().map(|c| c.0).min().unwrap_or(end);
    let last = calls.iter().map(|c| c.1).max().unwrap_or(end);
    Pass {
        inputs: stats.chunks_embedded,
        wall,
        calls: stats.calls,
        server: counts,
        mean_call: busy / (calls.len().max(1) as u32),
        occupancy: busy.as_secs_f64() / (setup.concurrency as f64 * wall.as_secs_f64()),
        first_call: first - start,
        tail: end.saturating_duration_since(last),
        second_pass_calls: again.calls,
        cpu_server: cpu_s1 - cpu_s0,
        cpu_client: cpu_c1 - cpu_c0,
        load,
    }
}

/// Times the client's decoding of one answer of `batch` vectors on its own, in the encoding
/// asked for: a serde shape like the embedder's `parse_batch` (floats read as f64, or a base64
/// string decoded to little-endian f32s), then normalised.
fn parse_cost(server: &ServerState, batch: usize, encoding: EncodingFormat) -> (usize, Duration) {
    #[derive(serde::Deserialize)]
    struct Response {
        data: Vec<Item>,
    }
    #[derive(serde::Deserialize)]
    struct Item {
        #[allow(dead_code)]
        index: Option<usize>,
        embedding: serde_json::Value,
    }
    #[derive(serde::Deserialize)]
    struct FloatResponse {
        data: Vec<FloatItem>,
    }
    #[derive(serde::Deserialize)]
    struct FloatItem {
        #[allow(dead_code)]
        index: Option<usize>,
        embedding: Vec<f64>,
    }
    let inputs: Vec<String> = (0..batch).map(chunk_text).collect();
    let request = serde_json::json!({
        "model": "bench", "input": inputs, "dimensions": server.dims, "encoding_format": encoding.as_str(),
    });
    // The same renderer as the server (its counters move, which no pass reads any more).
    let response = render(server, request.to_string().as_bytes());
    let bytes = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime")
        .block_on(axum::body::to_bytes(response.into_body(), usize::MAX))
        .expect("body");
    let body = String::from_utf8(bytes.to_vec()).expect("utf-8");
    let mut times = Vec::new();
    for _ in 0..5 {
        let t = Instant::now();
        let vectors: Vec<Vec<f32>> = match encoding {
            EncodingFormat::Float => {
                let parsed: FloatResponse = serde_json::from_str(&body).expect("parse");
                parsed
                    .data
                    .into_iter()
                    .map(|item| item.embedding.iter().map(|&x| x as f32).collect())
                    .collect()
            }
            EncodingFormat::Base64 => {
                use base64::Engine as _;
                let parsed: Response = serde_json::from_str(&body).expect("parse");
                parsed
                    .data
                    .into_iter()
                    .map(|item| {
                        let text = item.embedding.as_str().expect("a base64 string");
                        let bytes = base64::engine::general_purpose::STANDARD.decode(text).expect("base64");
                        bytes.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect()
                    })
                    .collect()
            }
        };
        let mut total = 0.0f32;
        for mut v in vectors {
            semdex::embed::normalize(&mut v);
            total += v[0];
        }
        std::hint::black_box(total);
        times.push(t.elapsed());
    }
    times.sort();
    (body.len(), times[2])
}

/// Times the store operations `embed_pending` performs between calls, on their own.
async fn store_costs(store: &SqliteStore, dims: usize, shapes: &[(usize, usize)], scope: i64) {
    println!("\nstore operations on their own ({dims} dims, median of 5):");
    let model_id = store.register_model("openai", "bench-store-costs", dims as i32).await.expect("model").id;
    for &(concurrency, batch) in shapes {
        // Reads: a later page as embed_pending asks for it (two rounds of batches; the first is one).
        let page = (batch * concurrency * 2).clamp(64, 16_384);
        let mut reads = Vec::new();
        let mut rows = Vec::new();
        for _ in 0..5 {
            let t = Instant::now();
            rows = store.pending_embeddings(model_id, Some(scope), None, page as i64).await.expect("pending");
            reads.push(t.elapsed());
        }
        let t = Instant::now();
        let tokens: usize = rows.iter().map(|(_, c)| indexer::count_tokens(c)).sum();
        let counting = t.elapsed();
        reads.sort();
        // Writes: batches of fresh hashes (a new model each time keeps them fresh).
        let mut writes = Vec::new();
        for round in 0..5 {
            let id = store
                .register_model(
                    "openai",
                    &format!("bench-store-costs-{concurrency}x{batch}-{round}"),
                    dims as i32,
                )
                .await
                .expect("model")
                .id;
            let vectors: Vec<(String, Vec<f32>)> = rows
                .iter()
                .take(batch)
                .map(|(h, _)| (h.clone(), vec![1.0 / (dims as f32).sqrt(); dims]))
                .collect();
            let t = Instant::now();
            store.put_embeddings(id, &vectors).await.expect("put");
            writes.push(t.elapsed());
        }
        writes.sort();
        println!(
            "  C={concurrency} B={batch:>4}: read a page of {:>5} rows {:>8.1} ms, count its tokens ({tokens} tokens) {:>7.1} ms, \
             store {batch} vectors {:>7.1} ms",
            rows.len(),
            reads[2].as_secs_f64() * 1e3,
            counting.as_secs_f64() * 1e3,
            writes[2].as_secs_f64() * 1e3,
        );
    }
}

fn main() {
    let dims = env_usize("SEMDEX_BENCH_EMBED_DIMS", 768);
    let repeats = env_usize("SEMDEX_BENCH_EMBED_REPEATS", 3).max(1);
    let small = env_usize("SEMDEX_BENCH_EMBED_SMALL", 24_576);
    let all = env_usize("SEMDEX_BENCH_EMBED_ALL", 98_304).max(small);
    let configs =
        std::env::var("SEMDEX_BENCH_EMBED_CONFIGS").unwrap_or_else(|_| "4x64,8x128,4x2048,4x2048@all".into());
    let setups: Vec<Setup> = configs
        .split(',')
        .filter(|s| !s.trim().is_empty())
        .map(|s| Setup::parse(s).unwrap_or_else(|| panic!("bad config {s:?}: want CxB or CxB@all")))
        .collect();
    for s in &setups {
        assert!(
            s.concurrency <= SERVER_CAP && s.batch <= SERVER_MAX_INPUTS,
            "{} exceeds the server's cap",
            s.label()
        );
    }
    // `cargo bench` passes `--bench`; a filter argument, if any, is ignored.
    let (server_rt, addr, server) = start_server(dims);
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    runtime.block_on(async {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = SqliteStore::open(&dir.path().join("semdex.db")).await.expect("open store");
        store.migrate_up().await.expect("migrate");

        let t = Instant::now();
        let small_id = index_project(&store, "small", 0, small).await;
        let need_all = setups.iter().any(|s| s.all);
        if need_all {
            index_project(&store, "rest", small, all - small).await;
        }
        let indexed = if need_all { all } else { small };
        let mean_tokens = (0..1000).map(|i| indexer::count_tokens(&chunk_text(i))).sum::<usize>() as f64 / 1000.0;
        println!(
            "corpus: {indexed} distinct chunks (~{mean_tokens:.0} estimated tokens each) indexed into SQLite in {:.1} s; \
             server: {} ms per request, cap {SERVER_CAP} concurrent (429 above), {dims} dims",
            t.elapsed().as_secs_f64(),
            LATENCY.as_millis()
        );

        let mut results: BTreeMap<usize, Vec<Pass>> = BTreeMap::new();
        for run in 0..repeats {
            for (i, setup) in setups.iter().enumerate() {
                let (scope, n) = if setup.all { (None, all) } else { (Some(small_id), small) };
                let pass = measure(&store, addr, &server, dims, *setup, scope, n as u64, run).await;
                println!(
                    "run {run} {:<11} {:>7} inputs in {:>6.2} s: {:>8.0} inputs/s = {:>5.1}% of {:.0} \
                     (round bound {:.1}%); {} calls, mean call {:.0} ms, occupancy {:.1}%, first call after {:.0} ms, \
                     tail {:.0} ms, server work {:.1} ms/call, CPU client {:.2} s server {:.2} s, load {}",
                    setup.label(),
                    pass.inputs,
                    pass.wall.as_secs_f64(),
                    pass.throughput(),
                    100.0 * pass.throughput() / theoretical(*setup),
                    theoretical(*setup),
                    100.0 * round_bound(*setup, pass.inputs),
                    pass.calls,
                    pass.mean_call.as_secs_f64() * 1e3,
                    100.0 * pass.occupancy,
                    pass.first_call.as_secs_f64() * 1e3,
                    pass.tail.as_secs_f64() * 1e3,
                    pass.server.work.as_secs_f64() * 1e3 / pass.server.requests.max(1) as f64,
                    pass.cpu_client,
                    pass.cpu_server,
                    pass.load,
                );
                results.entry(i).or_default().push(pass);
            }
        }

        println!("\n| C | B | corpus | theoretical (inputs/s) | median (inputs/s) | share (median) | share (best) | round bound | calls | 429s | 2nd-pass calls |");
        println!("|---|---|---|---|---|---|---|---|---|---|---|");
        for (i, setup) in setups.iter().enumerate() {
            let passes = &results[&i];
            let mut rates: Vec<f64> = passes.iter().map(Pass::throughput).collect();
            rates.sort_by(f64::total_cmp);
            let median = rates[rates.len() / 2];
            let best = rates[rates.len() - 1];
            let max = theoretical(*setup);
            println!(
                "| {} | {} | {} | {:.0} | {:.0} | {:.1}% | {:.1}% | {:.1}% | {} | {} | {} |",
                setup.concurrency,
                setup.batch,
                passes[0].inputs,
                max,
                median,
                100.0 * median / max,
                100.0 * best / max,
                100.0 * round_bound(*setup, passes[0].inputs),
                passes[0].calls,
                passes.iter().map(|p| p.server.rejected_429).sum::<u64>(),
                passes.iter().map(|p| p.second_pass_calls).sum::<u64>(),
            );
        }

        let mut shapes: Vec<(usize, usize)> = setups.iter().map(|s| (s.concurrency, s.batch)).collect();
        shapes.sort_unstable();
        shapes.dedup();
        store_costs(&store, dims, &shapes, small_id).await;
        println!("\nclient decoding of one answer on its own (one thread, median of 5):");
        for &(concurrency, batch) in &shapes {
            for encoding in [EncodingFormat::Base64, EncodingFormat::Float] {
                let (size, time) = tokio::task::block_in_place(|| parse_cost(&server, batch, encoding));
                println!(
                    "  C={concurrency} B={batch:>4} {:<6}: {:.1} MB of JSON, {:.1} ms to decode; x C = {:.1} ms of CPU \
                     per round of calls (on the blocking pool, in parallel where cores allow)",
                    encoding.as_str(),
                    size as f64 / 1e6,
                    time.as_secs_f64() * 1e3,
                    time.as_secs_f64() * 1e3 * concurrency as f64,
                );
            }
        }
        store.close().await;
    });
    drop(server_rt);
}
