//! Embedding providers against real HTTP servers on 127.0.0.1 that misbehave on purpose, and
//! the builtin embedder's lexical behaviour.
//!
//! The server is a few dozen lines of raw HTTP/1.1 over tokio so that it can do what a
//! framework would not: hang, reset the connection, send invalid JSON. Each request is scripted
//! by a closure that sees the call number and the parsed request. Timing is only asserted as a
//! lower bound the client must honour (a `Retry-After`, a rate-limit reset, a timeout) and as a
//! generous upper bound from the backoff schedule; backoffs are a few milliseconds in tests.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use semdex::embed::{
    BuiltinEmbedder, CircuitState, EmbedError, Embedder, EncodingFormat, InputAdjustment, OpenAiConfig,
    OpenAiEmbedder, OverLongPolicy, QueryEmbedder,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// `embed_pending` and the embedding cache against a real SQLite store.
mod cache;

const KEY: &str = "sk-test-7f3a9c1e5b2d4680-SECRET";
const DIMS: usize = 8;

/// A request as the server saw it.
#[derive(Debug, Clone)]
struct Seen {
    /// 1-based call number.
    n: usize,
    at: Instant,
    /// Path and query.
    target: String,
    headers: Vec<(String, String)>,
    body: serde_json::Value,
}

impl Seen {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    fn inputs(&self) -> Vec<String> {
        self.body["input"]
            .as_array()
            .map(|a| a.iter().filter_map(|v| v.as_str().map(str::to_string)).collect())
            .unwrap_or_default()
    }
}

/// What the server does with one request.
enum Reply {
    /// 200 with a correct batch.
    Normal,
    /// Any status, extra headers and body.
    Raw { status: u16, headers: Vec<(String, String)>, body: String },
    /// Waits, then replies.
    After(Duration, Box<Reply>),
    /// Never answers.
    Hang,
    /// Closes the connection with a TCP reset, without a response.
    Reset,
}

impl Reply {
    fn status(status: u16, body: &str) -> Reply {
        Reply::Raw { status, headers: Vec::new(), body: body.to_string() }
    }

    fn ok_body(body: String) -> Reply {
        Reply::Raw { status: 200, headers: Vec::new(), body }
    }

    fn with_headers(status: u16, headers: &[(&str, &str)], body: String) -> Reply {
        Reply::Raw {
            status,
            headers: headers.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            body,
        }
    }
}

type Script = dyn Fn(&Seen) -> Reply + Send + Sync;

struct ServerState {
    script: Box<Script>,
    /// Dimensions returned when the request does not say.
    default_dims: usize,
    calls: AtomicUsize,
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
    seen: Mutex<Vec<Seen>>,
}

struct Server {
    addr: std::net::SocketAddr,
    state: Arc<ServerState>,
}

impl Server {
    async fn start(script: impl Fn(&Seen) -> Reply + Send + Sync + 'static) -> Server {
        Server::start_with_dims(DIMS, script).await
    }

    async fn start_with_dims(
        default_dims: usize,
        script: impl Fn(&Seen) -> Reply + Send + Sync + 'static,
    ) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let state = Arc::new(ServerState {
            script: Box::new(script),
            default_dims,
            calls: AtomicUsize::new(0),
            in_flight: AtomicUsize::new(0),
            max_in_flight: AtomicUsize::new(0),
            seen: Mutex::new(Vec::new()),
        });
        let shared = state.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(serve(stream, shared.clone()));
            }
        });
        Server { addr, state }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn calls(&self) -> usize {
        self.state.calls.load(Ordering::SeqCst)
    }

    fn max_in_flight(&self) -> usize {
        self.state.max_in_flight.load(Ordering::SeqCst)
    }

    fn seen(&self) -> Vec<Seen> {
        self.state.seen.lock().unwrap().clone()
    }
}

async fn serve(mut stream: TcpStream, state: Arc<ServerState>) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let mut lines = head.split("\r\n");
    let target = lines.next().and_then(|l| l.split(' ').nth(1)).unwrap_or("").to_string();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let length: usize =
        headers.iter().find(|(k, _)| k == "content-length").and_then(|(_, v)| v.parse().ok()).unwrap_or(0);
    while buf.len() < head_end + length {
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    let body: serde_json::Value =
        serde_json::from_slice(&buf[head_end..head_end + length]).unwrap_or_default();

    let n = state.calls.fetch_add(1, Ordering::SeqCst) + 1;
    let now = state.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
    state.max_in_flight.fetch_max(now, Ordering::SeqCst);
    let seen = Seen { n, at: Instant::now(), target, headers, body };
    state.seen.lock().unwrap().push(seen.clone());
    let mut reply = (state.script)(&seen);
    loop {
        match reply {
            Reply::After(delay, next) => {
                tokio::time::sleep(delay).await;
                reply = *next;
            }
            Reply::Hang => {
                tokio::time::sleep(Duration::from_secs(600)).await;
                return;
            }
            Reply::Reset => {
                state.in_flight.fetch_sub(1, Ordering::SeqCst);
                let _ = stream.set_zero_linger();
                drop(stream);
                return;
            }
            Reply::Normal => {
                reply = Reply::ok_body(normal_body(&seen, state.default_dims).to_string());
            }
            Reply::Raw { status, headers, body } => {
                let mut out = format!(
                    "HTTP/1.1 {status} Scripted\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\
                     connection: close\r\n",
                    body.len()
                );
                for (k, v) in headers {
                    out.push_str(&format!("{k}: {v}\r\n"));
                }
                out.push_str("\r\n");
                out.push_str(&body);
                let _ = stream.write_all(out.as_bytes()).await;
                let _ = stream.shutdown().await;
                state.in_flight.fetch_sub(1, Ordering::SeqCst);
                return;
            }
        }
    }
}

/// The raw (unnormalised) vector the server returns for a text: deterministic, from blake3.
fn server_vector(text: &str, dims: usize) -> Vec<f32> {
    let hash = blake3::hash(text.as_bytes());
    let seed = u64::from_le_bytes(hash.as_bytes()[..8].try_into().unwrap());
    let mut rng = fastrand::Rng::with_seed(seed);
    (0..dims).map(|_| rng.f32() * 2.0 - 1.0).collect()
}

/// What the client must return for a text the server embedded whole.
fn expected(text: &str, dims: usize) -> Vec<f32> {
    let mut v = server_vector(text, dims);
    assert!(semdex::embed::normalize(&mut v));
    v
}

/// The standard base64 of a vector's little-endian `f32`s, as `encoding_format: "base64"` asks.
fn base64_vector(vector: &[f32]) -> String {
    use base64::Engine as _;
    let bytes: Vec<u8> = vector.iter().flat_map(|x| x.to_le_bytes()).collect();
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// A correct answer: one vector per input, in order, in the encoding the request asked for
/// (floats when it did not say), and usage of 1000 + inputs.
fn normal_body(seen: &Seen, default_dims: usize) -> serde_json::Value {
    let dims = seen.body["dimensions"].as_u64().map_or(default_dims, |d| d as usize);
    let base64 = seen.body["encoding_format"] == "base64";
    let inputs = seen.inputs();
    let data: Vec<serde_json::Value> = inputs
        .iter()
        .enumerate()
        .map(|(i, text)| {
            let vector = server_vector(text, dims);
            let embedding =
                if base64 { serde_json::json!(base64_vector(&vector)) } else { serde_json::json!(vector) };
            serde_json::json!({"object": "embedding", "index": i, "embedding": embedding})
        })
        .collect();
    serde_json::json!({
        "object": "list",
        "data": data,
        "model": seen.body["model"],
        "usage": {"prompt_tokens": 1000 + inputs.len(), "total_tokens": 1000 + inputs.len()},
    })
}

fn config(server: &Server) -> OpenAiConfig {
    OpenAiConfig {
        base_url: server.url(),
        api_key: Some(KEY.to_string()),
        model: "test-embed".to_string(),
        dimensions: DIMS,
        timeout: Duration::from_secs(5),
        connect_timeout: Duration::from_secs(2),
        max_retries: 3,
        backoff_base: Duration::from_millis(10),
        backoff_cap: Duration::from_millis(40),
        retry_after_cap: Duration::from_secs(5),
        // High so that only the breaker tests see it open.
        breaker_threshold: 1000,
        ..OpenAiConfig::default()
    }
}

fn texts(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

fn assert_close(actual: &[f32], expected: &[f32]) {
    assert_eq!(actual.len(), expected.len());
    for (a, e) in actual.iter().zip(expected) {
        assert!((a - e).abs() < 1e-6, "{actual:?} != {expected:?}");
    }
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// Upper bound on the time retries may sleep under `config`: every backoff at its cap.
fn backoff_ceiling(config: &OpenAiConfig, retries: u32) -> Duration {
    config.backoff_cap * retries
}

/// Generous allowance for everything that is not a scheduled sleep (loopback HTTP, a loaded CI).
const SLACK: Duration = Duration::from_secs(3);

#[tokio::test]
async fn normal_batch_is_sent_once_and_returned_in_order() {
    let server = Server::start(|_| Reply::Normal).await;
    let embedder = OpenAiEmbedder::new(config(&server)).unwrap();
    let inputs = texts(&["function createUser() {}", "class UserService {}", ""]);
    let out = embedder.embed(&inputs).await.unwrap();

    assert_eq!(server.calls(), 1);
    assert_eq!(out.vectors.len(), 3);
    assert_close(&out.vectors[0], &expected(&inputs[0], DIMS));
    assert_close(&out.vectors[1], &expected(&inputs[1], DIMS));
    // The API rejects empty strings, so an empty input is sent as a space.
    assert_close(&out.vectors[2], &expected(" ", DIMS));
    assert_eq!(out.tokens, 1003, "usage.total_tokens is reported as is");
    assert_eq!(out.adjustments, [InputAdjustment::None; 3]);

    let seen = &server.seen()[0];
    assert_eq!(seen.target, "/v1/embeddings");
    assert_eq!(seen.header("authorization"), Some(format!("Bearer {KEY}").as_str()));
    assert_eq!(seen.header("content-type"), Some("application/json"));
    assert_eq!(
        seen.body,
        serde_json::json!({
            "model": "test-embed",
            "input": ["function createUser() {}", "class UserService {}", " "],
            "dimensions": DIMS,
            "encoding_format": "base64",
        })
    );
    assert_eq!(embedder.circuit_state(), CircuitState::Closed);
    assert_eq!(embedder.spec().provider, "openai");
    assert_eq!(embedder.metrics().requests, 1);
    assert_eq!(embedder.metrics().retries, 0);
}

#[tokio::test]
async fn float_arrays_are_accepted_from_a_server_that_ignores_the_encoding() {
    // The client asks for base64 (the default); the server answers floats anyway.
    let server = Server::start(|seen| {
        let mut plain = seen.clone();
        plain.body["encoding_format"] = serde_json::json!("float");
        Reply::ok_body(normal_body(&plain, DIMS).to_string())
    })
    .await;
    let embedder = OpenAiEmbedder::new(config(&server)).unwrap();
    let inputs = texts(&["fn a() {}", "fn b() {}"]);
    let out = embedder.embed(&inputs).await.unwrap();
    assert_eq!(server.seen()[0].body["encoding_format"], "base64");
    assert_eq!(server.calls(), 1);
    for (v, text) in out.vectors.iter().zip(&inputs) {
        assert_close(v, &expected(text, DIMS));
    }
}

#[tokio::test]
async fn float_encoding_can_be_configured() {
    let server = Server::start(|_| Reply::Normal).await;
    let mut cfg = config(&server);
    cfg.encoding_format = EncodingFormat::Float;
    let embedder = OpenAiEmbedder::new(cfg).unwrap();
    let out = embedder.embed(&texts(&["fn a() {}"])).await.unwrap();
    let seen = &server.seen()[0];
    assert_eq!(seen.body["encoding_format"], "float");
    assert!(seen.body["input"].is_array());
    assert_close(&out.vectors[0], &expected("fn a() {}", DIMS));
}

#[tokio::test]
async fn a_broken_base64_answer_is_retried_and_never_returned() {
    // Three bytes are not a whole f32; then NaN bits; then a good answer.
    let server = Server::start(|seen| {
        let mut body = normal_body(seen, DIMS);
        match seen.n {
            1 => body["data"][0]["embedding"] = serde_json::json!("AAAA"),
            2 => body["data"][0]["embedding"] = serde_json::json!(base64_vector(&[f32::NAN; DIMS])),
            _ => {}
        }
        Reply::ok_body(body.to_string())
    })
    .await;
    let embedder = OpenAiEmbedder::new(config(&server)).unwrap();
    let out = embedder.embed(&texts(&["x"])).await.unwrap();
    assert_eq!(server.calls(), 3);
    assert_close(&out.vectors[0], &expected("x", DIMS));
}

#[tokio::test]
async fn missing_usage_falls_back_to_the_estimate() {
    let server = Server::start(|seen| {
        let mut body = normal_body(seen, DIMS);
        body.as_object_mut().unwrap().remove("usage");
        Reply::ok_body(body.to_string())
    })
    .await;
    let embedder = OpenAiEmbedder::new(config(&server)).unwrap();
    let inputs = texts(&["const answer = 42;", "export default answer"]);
    let out = embedder.embed(&inputs).await.unwrap();
    let estimate: usize = inputs.iter().map(|t| indexer::count_tokens(t)).sum();
    assert_eq!(out.tokens, estimate as u64);
    assert_eq!(server.calls(), 1);
}

#[tokio::test]
async fn servers_without_dimensions_get_no_dimensions_field() {
    // Like Ollama: the field is not sent, the model's own size must match the configuration.
    let server = Server::start_with_dims(DIMS, |_| Reply::Normal).await;
    let mut cfg = config(&server);
    cfg.send_dimensions = false;
    cfg.api_key = None;
    cfg.base_url = format!("{}/v1/", server.url());
    let embedder = OpenAiEmbedder::new(cfg).unwrap();
    let out = embedder.embed(&texts(&["hello"])).await.unwrap();
    assert_close(&out.vectors[0], &expected("hello", DIMS));
    let seen = &server.seen()[0];
    assert_eq!(seen.target, "/v1/embeddings");
    assert!(seen.body.get("dimensions").is_none(), "{}", seen.body);
    assert_eq!(seen.header("authorization"), None);
}

#[tokio::test]
async fn azure_style_headers_and_query_are_sent_and_their_secret_never_shown() {
    const AZURE_KEY: &str = "azure-0123456789abcdef-SECRET";
    let server = Server::start(|seen| {
        if seen.n == 1 {
            Reply::Normal
        } else {
            Reply::status(403, &format!(r#"{{"error":{{"message":"key {AZURE_KEY} is not allowed"}}}}"#))
        }
    })
    .await;
    let mut cfg = config(&server);
    cfg.api_key = None;
    cfg.base_url = format!("{}/openai/deployments/emb/embeddings", server.url());
    cfg.headers = vec![("api-key".to_string(), AZURE_KEY.to_string())];
    cfg.query = vec![("api-version".to_string(), "2024-10-21".to_string())];
    assert!(!format!("{cfg:?}").contains(AZURE_KEY));
    let embedder = OpenAiEmbedder::new(cfg).unwrap();
    embedder.embed(&texts(&["x"])).await.unwrap();
    let seen = &server.seen()[0];
    assert_eq!(seen.target, "/openai/deployments/emb/embeddings?api-version=2024-10-21");
    assert_eq!(seen.header("api-key"), Some(AZURE_KEY));
    assert_eq!(seen.header("authorization"), None);

    let err = embedder.embed(&texts(&["y"])).await.unwrap_err();
    assert!(matches!(err, EmbedError::Rejected { status: 403, .. }), "{err:?}");
    assert!(!err.to_string().contains(AZURE_KEY), "{err}");
    assert!(!format!("{err:?}").contains(AZURE_KEY));
    assert!(!format!("{embedder:?}").contains(AZURE_KEY));
    assert_eq!(server.calls(), 2);
}

#[tokio::test]
async fn unauthorized_fails_fast_with_the_upstream_message_and_never_the_key() {
    let server = Server::start(|_| {
        Reply::status(
            401,
            &format!(
                r#"{{"error":{{"message":"Incorrect API key provided: {KEY}. Find your key at example.com","type":"invalid_request_error"}}}}"#
            ),
        )
    })
    .await;
    let cfg = config(&server);
    assert!(!format!("{cfg:?}").contains(KEY));
    let embedder = OpenAiEmbedder::new(cfg).unwrap();
    let err = embedder.embed(&texts(&["a", "b"])).await.unwrap_err();

    assert_eq!(server.calls(), 1, "a 401 is not retried");
    let EmbedError::Rejected { status, message } = &err else { panic!("{err:?}") };
    assert_eq!(*status, 401);
    assert_eq!(message, "Incorrect API key provided: [redacted]. Find your key at example.com");
    for shown in [err.to_string(), format!("{err:?}"), format!("{embedder:?}")] {
        assert!(!shown.contains(KEY), "{shown}");
        assert!(!shown.contains("7f3a9c1e"), "{shown}");
    }
    // An answer, even a refusal, shows the upstream is up.
    assert_eq!(embedder.circuit_state(), CircuitState::Closed);
}

#[tokio::test]
async fn other_client_errors_fail_fast() {
    for status in [400u16, 404, 422] {
        let server = Server::start(move |_| Reply::status(status, r#"{"error":"model not found"}"#)).await;
        let embedder = OpenAiEmbedder::new(config(&server)).unwrap();
        let err = embedder.embed(&texts(&["a"])).await.unwrap_err();
        assert_eq!(server.calls(), 1, "{status}");
        let EmbedError::Rejected { status: got, message } = err else { panic!("{status}") };
        assert_eq!((got, message.as_str()), (status, "model not found"));
    }
}

#[tokio::test]
async fn retry_after_seconds_is_honoured() {
    let server = Server::start(|seen| {
        if seen.n == 1 {
            Reply::with_headers(429, &[("retry-after", "1")], r#"{"error":{"message":"slow down"}}"#.into())
        } else {
            Reply::Normal
        }
    })
    .await;
    let cfg = config(&server);
    let embedder = OpenAiEmbedder::new(cfg).unwrap();
    let start = Instant::now();
    let out = embedder.embed(&texts(&["a"])).await.unwrap();
    let elapsed = start.elapsed();

    assert_eq!(server.calls(), 2);
    assert_close(&out.vectors[0], &expected("a", DIMS));
    let seen = server.seen();
    let gap = seen[1].at - seen[0].at;
    assert!(gap >= Duration::from_millis(990), "second call after {gap:?}");
    assert!(elapsed < Duration::from_secs(1) + SLACK, "{elapsed:?}");
    assert_eq!(embedder.metrics().retries, 1);
}

#[tokio::test]
async fn retry_after_ms_wins_and_long_waits_are_capped() {
    // retry-after-ms (300 ms) is preferred to Retry-After (10 s).
    let server = Server::start(|seen| match seen.n {
        1 => Reply::with_headers(429, &[("retry-after-ms", "300"), ("retry-after", "10")], "{}".into()),
        _ => Reply::Normal,
    })
    .await;
    let mut cfg = config(&server);
    cfg.retry_after_cap = Duration::from_secs(30);
    let embedder = OpenAiEmbedder::new(cfg).unwrap();
    embedder.embed(&texts(&["a"])).await.unwrap();
    assert_eq!(server.calls(), 2);
    let seen = server.seen();
    let gap = seen[1].at - seen[0].at;
    assert!(gap >= Duration::from_millis(295) && gap < Duration::from_millis(300) + SLACK, "{gap:?}");

    // An hour is capped to retry_after_cap.
    let server = Server::start(|seen| match seen.n {
        1 => Reply::with_headers(503, &[("retry-after", "3600")], "{}".into()),
        _ => Reply::Normal,
    })
    .await;
    let mut cfg = config(&server);
    cfg.retry_after_cap = Duration::from_millis(400);
    let embedder = OpenAiEmbedder::new(cfg).unwrap();
    embedder.embed(&texts(&["a"])).await.unwrap();
    assert_eq!(server.calls(), 2);
    let seen = server.seen();
    let gap = seen[1].at - seen[0].at;
    assert!(gap >= Duration::from_millis(395) && gap < Duration::from_millis(400) + SLACK, "{gap:?}");
}

#[tokio::test]
async fn a_burst_of_server_errors_is_retried_with_backoff() {
    let server =
        Server::start(|seen| if seen.n <= 3 { Reply::status(500, "oops") } else { Reply::Normal }).await;
    let mut cfg = config(&server);
    cfg.max_retries = 5;
    let ceiling = backoff_ceiling(&cfg, 3);
    let embedder = OpenAiEmbedder::new(cfg).unwrap();
    let start = Instant::now();
    let out = embedder.embed(&texts(&["x", "y"])).await.unwrap();

    assert_eq!(server.calls(), 4);
    assert_close(&out.vectors[1], &expected("y", DIMS));
    assert!(start.elapsed() < ceiling + SLACK);
    let m = embedder.metrics();
    assert_eq!((m.requests, m.retries, m.failed_requests), (4, 3, 0));
}

#[tokio::test]
async fn retryable_statuses_make_at_most_max_retries_plus_one_calls() {
    for status in [408u16, 409, 429, 500, 502, 503, 504] {
        let server = Server::start(move |_| Reply::status(status, r#"{"error":{"message":"down"}}"#)).await;
        let mut cfg = config(&server);
        cfg.max_retries = 2;
        let embedder = OpenAiEmbedder::new(cfg).unwrap();
        let err = embedder.embed(&texts(&["x"])).await.unwrap_err();
        assert_eq!(server.calls(), 3, "{status}");
        let EmbedError::Exhausted { attempts, last } = &err else { panic!("{status}: {err:?}") };
        assert_eq!(*attempts, 3);
        assert_eq!(last, &format!("status {status}: down"));
    }
}

#[tokio::test]
async fn a_hung_response_times_out_and_is_retried() {
    let server = Server::start(|seen| if seen.n == 1 { Reply::Hang } else { Reply::Normal }).await;
    let mut cfg = config(&server);
    cfg.timeout = Duration::from_millis(300);
    let embedder = OpenAiEmbedder::new(cfg).unwrap();
    let start = Instant::now();
    let out = embedder.embed(&texts(&["z"])).await.unwrap();
    assert_eq!(server.calls(), 2);
    assert_close(&out.vectors[0], &expected("z", DIMS));
    assert!(start.elapsed() >= Duration::from_millis(300));

    // Hanging for good: every attempt times out.
    let server = Server::start(|_| Reply::Hang).await;
    let mut cfg = config(&server);
    cfg.timeout = Duration::from_millis(100);
    cfg.max_retries = 1;
    let embedder = OpenAiEmbedder::new(cfg).unwrap();
    let err = embedder.embed(&texts(&["z"])).await.unwrap_err();
    assert_eq!(server.calls(), 2);
    assert!(
        matches!(&err, EmbedError::Exhausted { attempts: 2, last } if last.starts_with("timed out")),
        "{err:?}"
    );
}

#[tokio::test]
async fn a_reset_connection_is_retried() {
    let server = Server::start(|seen| if seen.n <= 2 { Reply::Reset } else { Reply::Normal }).await;
    let embedder = OpenAiEmbedder::new(config(&server)).unwrap();
    let out = embedder.embed(&texts(&["r"])).await.unwrap();
    assert_eq!(server.calls(), 3);
    assert_close(&out.vectors[0], &expected("r", DIMS));
}

#[tokio::test]
async fn a_refused_connection_is_retried_then_reported() {
    // Bind then drop a listener: the port is closed.
    let addr = TcpListener::bind("127.0.0.1:0").await.unwrap().local_addr().unwrap();
    let cfg = OpenAiConfig { base_url: format!("http://{addr}"), max_retries: 2, ..config_for_url() };
    let embedder = OpenAiEmbedder::new(cfg).unwrap();
    let err = embedder.embed(&texts(&["r"])).await.unwrap_err();
    assert!(matches!(&err, EmbedError::Exhausted { attempts: 3, .. }), "{err:?}");
    assert_eq!(embedder.metrics().requests, 3);
}

fn config_for_url() -> OpenAiConfig {
    OpenAiConfig {
        api_key: Some(KEY.to_string()),
        dimensions: DIMS,
        timeout: Duration::from_secs(2),
        backoff_base: Duration::from_millis(5),
        backoff_cap: Duration::from_millis(20),
        breaker_threshold: 1000,
        ..OpenAiConfig::default()
    }
}

#[tokio::test]
async fn malformed_json_is_retried_then_rejected_whole() {
    let server =
        Server::start(|_| Reply::ok_body(r#"{"data": [{"index": 0, "embedding": [0.1, 0.2"#.into())).await;
    let mut cfg = config(&server);
    cfg.max_retries = 2;
    let embedder = OpenAiEmbedder::new(cfg).unwrap();
    let err = embedder.embed(&texts(&["m"])).await.unwrap_err();
    assert_eq!(server.calls(), 3);
    let EmbedError::InvalidResponse(message) = &err else { panic!("{err:?}") };
    assert!(message.starts_with("malformed embedding response"), "{message}");
    assert!(message.ends_with("(after 3 attempts)"), "{message}");
}

#[tokio::test]
async fn a_wrong_count_is_retried_and_never_returned_in_part() {
    let server = Server::start(|seen| {
        let mut body = normal_body(seen, DIMS);
        if seen.n == 1 {
            body["data"].as_array_mut().unwrap().pop();
        }
        Reply::ok_body(body.to_string())
    })
    .await;
    let embedder = OpenAiEmbedder::new(config(&server)).unwrap();
    let inputs = texts(&["one", "two", "three"]);
    let out = embedder.embed(&inputs).await.unwrap();
    assert_eq!(server.calls(), 2);
    for (v, text) in out.vectors.iter().zip(&inputs) {
        assert_close(v, &expected(text, DIMS));
    }
}

#[tokio::test]
async fn wrong_dimensions_fail_fast_as_a_configuration_error() {
    let server = Server::start_with_dims(4, |_| Reply::Normal).await;
    let mut cfg = config(&server);
    cfg.send_dimensions = false;
    let embedder = OpenAiEmbedder::new(cfg).unwrap();
    let err = embedder.embed(&texts(&["a", "b"])).await.unwrap_err();
    assert_eq!(server.calls(), 1);
    assert!(matches!(err, EmbedError::DimensionMismatch { expected: DIMS, got: 4 }), "{err:?}");
}

#[tokio::test]
async fn invalid_values_are_retried_one_by_one() {
    // null (invalid as a float), an exponent out of f64 range, a value out of f32 range, all
    // zeros, a vector of the wrong length among good ones, a duplicate index: each is a bad batch
    // that is retried, then a good answer is accepted.
    let server = Server::start(|seen| {
        let good = normal_body(seen, DIMS);
        let first = good["data"][0]["embedding"][0].to_string();
        let text = good.to_string();
        let bad = match seen.n {
            1 => text.replacen(&first, "null", 1),
            2 => text.replacen(&first, "1e999", 1),
            3 => text.replacen(&first, "1e39", 1),
            4 => {
                let mut b = good.clone();
                b["data"][1]["embedding"] = serde_json::json!(vec![0.0; DIMS]);
                b.to_string()
            }
            5 => {
                let mut b = good.clone();
                b["data"][1]["embedding"].as_array_mut().unwrap().pop();
                b.to_string()
            }
            6 => {
                let mut b = good.clone();
                b["data"][1]["index"] = serde_json::json!(0);
                b.to_string()
            }
            _ => text,
        };
        Reply::ok_body(bad)
    })
    .await;
    let mut cfg = config(&server);
    // The faults are written into float arrays.
    cfg.encoding_format = EncodingFormat::Float;
    cfg.max_retries = 6;
    let embedder = OpenAiEmbedder::new(cfg).unwrap();
    let inputs = texts(&["p", "q"]);
    let out = embedder.embed(&inputs).await.unwrap();
    assert_eq!(server.calls(), 7);
    assert_close(&out.vectors[0], &expected("p", DIMS));
    assert_close(&out.vectors[1], &expected("q", DIMS));
    for v in &out.vectors {
        assert!(v.iter().all(|x| x.is_finite()));
        assert!((dot(v, v) - 1.0).abs() < 1e-5);
    }
}

#[tokio::test]
async fn non_finite_values_every_time_reject_the_batch() {
    let server = Server::start(|seen| {
        let good = normal_body(seen, DIMS);
        let first = good["data"][0]["embedding"][0].to_string();
        Reply::ok_body(good.to_string().replacen(&first, "1e39", 1))
    })
    .await;
    let mut cfg = config(&server);
    cfg.encoding_format = EncodingFormat::Float;
    cfg.max_retries = 1;
    let embedder = OpenAiEmbedder::new(cfg).unwrap();
    let err = embedder.embed(&texts(&["p"])).await.unwrap_err();
    assert_eq!(server.calls(), 2);
    assert!(matches!(&err, EmbedError::InvalidResponse(m) if m.contains("non-finite")), "{err:?}");
}

#[tokio::test]
async fn out_of_order_indices_are_matched_by_index() {
    let server = Server::start(|seen| {
        let mut body = normal_body(seen, DIMS);
        body["data"].as_array_mut().unwrap().reverse();
        Reply::ok_body(body.to_string())
    })
    .await;
    let embedder = OpenAiEmbedder::new(config(&server)).unwrap();
    let inputs = texts(&["alpha", "beta", "gamma", "delta"]);
    let out = embedder.embed(&inputs).await.unwrap();
    assert_eq!(server.calls(), 1);
    for (v, text) in out.vectors.iter().zip(&inputs) {
        assert_close(v, &expected(text, DIMS));
    }
}

#[tokio::test]
async fn rate_limit_headers_pause_before_the_next_request() {
    let server = Server::start(|seen| match seen.n {
        1 => Reply::with_headers(
            200,
            &[
                ("x-ratelimit-remaining-requests", "0"),
                ("x-ratelimit-reset-requests", "500ms"),
                ("x-ratelimit-remaining-tokens", "100000"),
                ("x-ratelimit-reset-tokens", "6m0s"),
            ],
            normal_body(seen, DIMS).to_string(),
        ),
        2 => Reply::with_headers(
            200,
            &[
                ("x-ratelimit-remaining-requests", "10"),
                ("x-ratelimit-reset-requests", "1s"),
                ("x-ratelimit-remaining-tokens", "0"),
                ("x-ratelimit-reset-tokens", "0.3s"),
            ],
            normal_body(seen, DIMS).to_string(),
        ),
        _ => Reply::Normal,
    })
    .await;
    let embedder = OpenAiEmbedder::new(config(&server)).unwrap();
    embedder.embed(&texts(&["a"])).await.unwrap();
    embedder.embed(&texts(&["b"])).await.unwrap();
    embedder.embed(&texts(&["c"])).await.unwrap();
    assert_eq!(server.calls(), 3, "the pauses avoided any 429 round trip");
    let seen = server.seen();
    let first = seen[1].at - seen[0].at;
    let second = seen[2].at - seen[1].at;
    assert!(first >= Duration::from_millis(450), "requests window: {first:?}");
    assert!(second >= Duration::from_millis(250), "tokens window: {second:?}");
    assert!(first < Duration::from_millis(500) + SLACK && second < Duration::from_millis(300) + SLACK);
    assert_eq!(embedder.metrics().rate_limit_pauses, 2);
}

#[tokio::test]
async fn the_circuit_opens_fails_fast_and_closes_after_the_cool_down() {
    let healthy = Arc::new(AtomicBool::new(false));
    let flag = healthy.clone();
    let server = Server::start(move |_| {
        if flag.load(Ordering::SeqCst) { Reply::Normal } else { Reply::status(503, "unavailable") }
    })
    .await;
    let mut cfg = config(&server);
    cfg.max_retries = 1;
    cfg.breaker_threshold = 3;
    cfg.breaker_cooldown = Duration::from_millis(300);
    let embedder = OpenAiEmbedder::new(cfg).unwrap();

    for i in 0..3 {
        assert_eq!(embedder.circuit_state(), CircuitState::Closed, "before failure {i}");
        let err = embedder.embed(&texts(&["x"])).await.unwrap_err();
        assert!(matches!(err, EmbedError::Exhausted { attempts: 2, .. }), "{err:?}");
    }
    assert_eq!(server.calls(), 6);
    assert_eq!(embedder.circuit_state(), CircuitState::Open);

    // Open: fails fast, the server sees nothing.
    let start = Instant::now();
    for _ in 0..5 {
        assert!(matches!(embedder.embed(&texts(&["x"])).await, Err(EmbedError::CircuitOpen)));
    }
    assert!(start.elapsed() < SLACK);
    assert_eq!(server.calls(), 6);
    assert_eq!(embedder.metrics().circuit_rejections, 5);

    // After the cool-down a single probe (one attempt, no retries) that fails re-opens it.
    tokio::time::sleep(Duration::from_millis(350)).await;
    assert_eq!(embedder.circuit_state(), CircuitState::HalfOpen);
    assert!(matches!(embedder.embed(&texts(&["x"])).await, Err(EmbedError::Exhausted { attempts: 1, .. })));
    assert_eq!(server.calls(), 7);
    assert_eq!(embedder.circuit_state(), CircuitState::Open);
    assert!(matches!(embedder.embed(&texts(&["x"])).await, Err(EmbedError::CircuitOpen)));
    assert_eq!(server.calls(), 7);

    // The upstream recovers: the next probe closes the circuit.
    healthy.store(true, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(350)).await;
    let out = embedder.embed(&texts(&["x"])).await.unwrap();
    assert_close(&out.vectors[0], &expected("x", DIMS));
    assert_eq!(server.calls(), 8);
    assert_eq!(embedder.circuit_state(), CircuitState::Closed);
}

#[tokio::test]
async fn an_open_circuit_stops_retries_of_requests_already_backing_off() {
    // Request "a" fails fast four times and opens the circuit (threshold 1); request "b", told
    // to come back in a second, finds the circuit open when it wakes and gives up without a
    // second call.
    let server = Server::start(|seen| {
        if seen.inputs() == ["a"] {
            Reply::status(500, "down")
        } else {
            Reply::with_headers(503, &[("retry-after", "1")], "{}".into())
        }
    })
    .await;
    let mut cfg = config(&server);
    cfg.max_retries = 3;
    cfg.breaker_threshold = 1;
    let embedder = OpenAiEmbedder::new(cfg).unwrap();
    let (input_a, input_b) = (texts(&["a"]), texts(&["b"]));
    let (a, b) = tokio::join!(embedder.embed(&input_a), embedder.embed(&input_b));
    assert!(matches!(a, Err(EmbedError::Exhausted { attempts: 4, .. })), "{a:?}");
    assert!(matches!(b, Err(EmbedError::CircuitOpen)), "{b:?}");
    let seen = server.seen();
    assert_eq!(seen.iter().filter(|s| s.inputs() == ["a"]).count(), 4);
    assert_eq!(seen.iter().filter(|s| s.inputs() == ["b"]).count(), 1);
    assert_eq!(embedder.circuit_state(), CircuitState::Open);
}

#[tokio::test]
async fn requests_in_flight_never_exceed_the_concurrency() {
    let server = Server::start(|_| Reply::After(Duration::from_millis(60), Box::new(Reply::Normal))).await;
    let mut cfg = config(&server);
    cfg.concurrency = 2;
    cfg.max_batch_inputs = 1;
    let embedder = OpenAiEmbedder::new(cfg).unwrap();
    let inputs: Vec<String> = (0..8).map(|i| format!("input {i}")).collect();
    let out = embedder.embed(&inputs).await.unwrap();
    assert_eq!(server.calls(), 8);
    assert_eq!(server.max_in_flight(), 2);
    for (v, text) in out.vectors.iter().zip(&inputs) {
        assert_close(v, &expected(text, DIMS));
    }
    assert_eq!(out.tokens, 8 * 1001);

    // Several callers share the same cap.
    let embedder = Arc::new(embedder);
    let server_calls_before = server.calls();
    let tasks: Vec<_> = (0..4)
        .map(|i| {
            let e = embedder.clone();
            tokio::spawn(async move { e.embed(&[format!("caller {i}")]).await })
        })
        .collect();
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    assert_eq!(server.calls() - server_calls_before, 4);
    assert_eq!(server.max_in_flight(), 2);
}

#[tokio::test]
async fn batches_are_split_by_count_and_tokens_inside_one_call() {
    let server = Server::start(|_| Reply::Normal).await;
    let mut cfg = config(&server);
    cfg.max_batch_inputs = 2;
    let embedder = OpenAiEmbedder::new(cfg).unwrap();
    let inputs = texts(&["a", "b", "c", "d", "e"]);
    let out = embedder.embed(&inputs).await.unwrap();
    assert_eq!(server.calls(), 3);
    let mut sizes: Vec<usize> = server.seen().iter().map(|s| s.inputs().len()).collect();
    sizes.sort();
    assert_eq!(sizes, [1, 2, 2]);
    for (v, text) in out.vectors.iter().zip(&inputs) {
        assert_close(v, &expected(text, DIMS));
    }

    let server = Server::start(|_| Reply::Normal).await;
    let mut cfg = config(&server);
    let long = "word ".repeat(40);
    let per_input = indexer::count_tokens(&long);
    cfg.max_batch_tokens = per_input * 2;
    let embedder = OpenAiEmbedder::new(cfg).unwrap();
    let inputs = vec![long.clone(); 5];
    embedder.embed(&inputs).await.unwrap();
    for seen in server.seen() {
        let tokens: usize = seen.inputs().iter().map(|t| indexer::count_tokens(t)).sum();
        assert!(tokens <= per_input * 2, "{tokens}");
    }
    assert_eq!(server.calls(), 3);
}

/// Source text long enough to need splitting at small limits.
fn long_source() -> String {
    (0..60)
        .map(|i| format!("export function handler{i}(request) {{ return respond(request, {i}); }}\n"))
        .collect()
}

#[tokio::test]
async fn an_over_long_input_is_split_and_its_parts_averaged() {
    let server = Server::start(|_| Reply::Normal).await;
    let mut cfg = config(&server);
    cfg.max_input_tokens = 200;
    cfg.over_long = OverLongPolicy::Split;
    let embedder = OpenAiEmbedder::new(cfg).unwrap();
    let long = long_source();
    assert!(indexer::count_tokens(&long) > 200);
    let inputs = vec!["short".to_string(), long.clone()];
    let out = embedder.embed(&inputs).await.unwrap();

    let InputAdjustment::Split { parts } = out.adjustments[1] else { panic!("{:?}", out.adjustments) };
    assert_eq!(out.adjustments[0], InputAdjustment::None);
    let sent: Vec<String> = server.seen().iter().flat_map(|s| s.inputs()).collect();
    assert_eq!(sent.len(), 1 + parts);
    assert_eq!(sent[0], "short");
    let pieces = &sent[1..];
    assert_eq!(pieces.concat(), long, "the pieces tile the input");
    let mut average = vec![0.0f32; DIMS];
    for piece in pieces {
        let tokens = indexer::count_tokens(piece);
        assert!(tokens <= 200, "{tokens}");
        for (a, x) in average.iter_mut().zip(expected(piece, DIMS)) {
            *a += tokens as f32 * x;
        }
    }
    assert!(semdex::embed::normalize(&mut average));
    assert_close(&out.vectors[1], &average);
    assert_close(&out.vectors[0], &expected("short", DIMS));
}

#[tokio::test]
async fn an_over_long_input_can_be_truncated_instead() {
    let server = Server::start(|_| Reply::Normal).await;
    let mut cfg = config(&server);
    cfg.max_input_tokens = 200;
    cfg.over_long = OverLongPolicy::Truncate;
    let embedder = OpenAiEmbedder::new(cfg).unwrap();
    let long = long_source();
    let out = embedder.embed(std::slice::from_ref(&long)).await.unwrap();
    assert_eq!(out.adjustments, [InputAdjustment::Truncated]);
    assert_eq!(server.calls(), 1);
    let sent = server.seen()[0].inputs();
    assert_eq!(sent.len(), 1);
    assert!(long.starts_with(&sent[0]) && sent[0].len() < long.len());
    assert!(indexer::count_tokens(&sent[0]) <= 200);
    assert_close(&out.vectors[0], &expected(&sent[0], DIMS));
}

#[tokio::test]
async fn query_embeddings_are_cached() {
    let server = Server::start(|_| Reply::Normal).await;
    let embedder: Arc<dyn Embedder> = Arc::new(OpenAiEmbedder::new(config(&server)).unwrap());
    let queries = QueryEmbedder::new(embedder, 2, QueryEmbedder::DEFAULT_DEADLINE);
    let a = queries.embed_query("create user").await.unwrap();
    assert_close(&a, &expected("create user", DIMS));
    assert_eq!(queries.embed_query("create user").await.unwrap(), a);
    assert_eq!(server.calls(), 1);
    queries.embed_query("delete user").await.unwrap();
    queries.embed_query("list users").await.unwrap();
    assert_eq!(server.calls(), 3);
    assert_eq!(queries.cached(), 2);
    // "create user" was the least recently used and has been evicted.
    queries.embed_query("create user").await.unwrap();
    assert_eq!(server.calls(), 4);
}

#[tokio::test]
async fn query_failures_are_not_cached() {
    let server =
        Server::start(|seen| if seen.n == 1 { Reply::status(400, "no") } else { Reply::Normal }).await;
    let embedder: Arc<dyn Embedder> = Arc::new(OpenAiEmbedder::new(config(&server)).unwrap());
    let queries =
        QueryEmbedder::new(embedder, QueryEmbedder::DEFAULT_CAPACITY, QueryEmbedder::DEFAULT_DEADLINE);
    assert!(queries.embed_query("q").await.is_err());
    assert!(queries.embed_query("q").await.is_ok());
    assert_eq!(server.calls(), 2);
}

#[tokio::test]
async fn a_query_waits_no_longer_than_its_deadline() {
    let server = Server::start(|seen| if seen.n == 1 { Reply::Hang } else { Reply::Normal }).await;
    let embedder: Arc<dyn Embedder> = Arc::new(OpenAiEmbedder::new(config(&server)).unwrap());
    let queries = QueryEmbedder::new(embedder, 8, Duration::from_millis(200));
    let start = Instant::now();
    let err = queries.embed_query("q").await.unwrap_err();
    assert!(matches!(err, EmbedError::DeadlineExceeded(d) if d == Duration::from_millis(200)), "{err:?}");
    // The client's own timeout is 5 s: the deadline cut the wait short.
    assert!(start.elapsed() < Duration::from_secs(5));
    assert_eq!(queries.cached(), 0);
    assert_close(&queries.embed_query("q").await.unwrap(), &expected("q", DIMS));
    assert_eq!(server.calls(), 2);
}

#[tokio::test]
async fn an_exhausted_quota_is_not_retried() {
    let server = Server::start(|_| {
        Reply::status(
            429,
            r#"{"error":{"message":"You exceeded your current quota","type":"insufficient_quota","code":"insufficient_quota"}}"#,
        )
    })
    .await;
    let embedder = OpenAiEmbedder::new(config(&server)).unwrap();
    let err = embedder.embed(&texts(&["a"])).await.unwrap_err();
    assert_eq!(server.calls(), 1);
    assert!(
        matches!(&err, EmbedError::Rejected { status: 429, message } if message == "You exceeded your current quota")
    );
}

#[test]
fn bad_configurations_are_refused_without_echoing_the_key() {
    let bad = [
        OpenAiConfig { base_url: "not a url".into(), ..OpenAiConfig::default() },
        OpenAiConfig { base_url: "ftp://example.com".into(), ..OpenAiConfig::default() },
        OpenAiConfig { dimensions: 0, ..OpenAiConfig::default() },
        OpenAiConfig { concurrency: 0, ..OpenAiConfig::default() },
        OpenAiConfig { max_batch_inputs: 0, ..OpenAiConfig::default() },
        OpenAiConfig { api_key: Some(format!("{KEY}\n")), ..OpenAiConfig::default() },
        OpenAiConfig { headers: vec![("bad header".into(), "x".into())], ..OpenAiConfig::default() },
    ];
    for cfg in bad {
        let err = OpenAiEmbedder::new(cfg).unwrap_err();
        assert!(matches!(err, EmbedError::Config(_)), "{err:?}");
        assert!(!err.to_string().contains(KEY));
    }
}

#[test]
fn openai_defaults_match_the_stable_contract() {
    let cfg = OpenAiConfig::default();
    assert_eq!(cfg.base_url, "https://api.openai.com");
    assert_eq!(cfg.model, "text-embedding-3-large");
    assert_eq!(cfg.dimensions, 3072);
    assert_eq!((cfg.max_batch_inputs, cfg.max_batch_tokens, cfg.max_input_tokens), (2048, 300_000, 8192));
    assert_eq!(cfg.max_retries, 5);
    let embedder = OpenAiEmbedder::new(cfg).unwrap();
    assert_eq!(embedder.endpoint(), "https://api.openai.com/v1/embeddings");
}

// The builtin embedder.

fn builtin_vec(text: &str) -> Vec<f32> {
    BuiltinEmbedder::default().embed_one(text)
}

#[tokio::test]
async fn builtin_is_deterministic_and_unit_length() {
    let embedder = BuiltinEmbedder::default();
    assert_eq!(embedder.spec().provider, "builtin");
    assert_eq!(embedder.spec().model, "semdex-lexical-v1");
    assert_eq!(embedder.spec().dimensions, 3072);
    let inputs = texts(&["function createUser(name) { return db.insert(name); }", "", "{}();", "x"]);
    let a = embedder.embed(&inputs).await.unwrap();
    let b = BuiltinEmbedder::new(3072).embed(&inputs).await.unwrap();
    assert_eq!(a, b);
    for v in &a.vectors {
        assert_eq!(v.len(), 3072);
        assert!(v.iter().all(|x| x.is_finite()));
        assert!((dot(v, v) - 1.0).abs() < 1e-5);
    }
    assert_eq!(a.adjustments, [InputAdjustment::None; 4]);
    assert_eq!(BuiltinEmbedder::new(64).embed_one("hello").len(), 64);
    assert_eq!(embedder.circuit_state(), CircuitState::Closed);
}

#[test]
fn builtin_similar_code_is_closer_than_unrelated_code() {
    let a = builtin_vec("async function fetchUserProfile(userId) { return api.get(`/users/${userId}`); }");
    let b = builtin_vec(
        "export async function fetchUserSettings(userId) { return api.get(`/users/${userId}/settings`); }",
    );
    let c = builtin_vec("const matrix = rotate(points, angle); drawPolygon(canvas, matrix);");
    assert!(dot(&a, &b) > dot(&a, &c) + 0.2, "{} vs {}", dot(&a, &b), dot(&a, &c));
    assert!(dot(&a, &a) > dot(&a, &b));
}

#[test]
fn builtin_splits_identifiers_so_words_find_them() {
    let query = builtin_vec("create user");
    let camel = builtin_vec("function createUser(input) { validate(input); }");
    let snake = builtin_vec("def create_user(input): validate(input)");
    let other = builtin_vec("function deleteInvoice(input) { validate(input); }");
    assert!(
        dot(&query, &camel) > dot(&query, &other) + 0.1,
        "{} vs {}",
        dot(&query, &camel),
        dot(&query, &other)
    );
    assert!(dot(&query, &snake) > dot(&query, &other) + 0.1);
    // The whole identifier matches itself best.
    let exact = builtin_vec("createUser");
    assert!(dot(&exact, &camel) > dot(&query, &camel));
    // Keywords weigh little: two chunks sharing only keywords stay far apart.
    let k1 = builtin_vec("export const alpha = async function () { return await this; }");
    let k2 = builtin_vec("export const omega = async function () { return await this; }");
    assert!(dot(&k1, &k2) < 0.6, "{}", dot(&k1, &k2));
}
