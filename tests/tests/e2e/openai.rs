//! `semdex index` and `semdex search` with the `openai` provider against an OpenAI-compatible
//! server on 127.0.0.1 that the test runs: the cache fills, unchanged code is never sent again,
//! the key goes only to the server, and a dead upstream leaves chunks pending without failing.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use semdex_tests::Semdex;

const DIMS: usize = 256;
const KEY: &str = "sk-e2e-test-key";

/// A minimal OpenAI-compatible `/v1/embeddings` server. Vectors are derived from the input
/// text's words so that similar texts get similar vectors; `fail` makes it answer 500.
struct FakeOpenAi {
    addr: String,
    calls: Arc<AtomicUsize>,
    inputs: Arc<AtomicUsize>,
    fail: Arc<AtomicBool>,
    authorized: Arc<AtomicBool>,
}

impl FakeOpenAi {
    fn start() -> FakeOpenAi {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = format!("http://{}", listener.local_addr().unwrap());
        let server = FakeOpenAi {
            addr,
            calls: Arc::new(AtomicUsize::new(0)),
            inputs: Arc::new(AtomicUsize::new(0)),
            fail: Arc::new(AtomicBool::new(false)),
            authorized: Arc::new(AtomicBool::new(true)),
        };
        let (calls, inputs, fail, authorized) =
            (server.calls.clone(), server.inputs.clone(), server.fail.clone(), server.authorized.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let (calls, inputs, fail, authorized) =
                    (calls.clone(), inputs.clone(), fail.clone(), authorized.clone());
                std::thread::spawn(move || {
                    let _ = serve(stream, &calls, &inputs, &fail, &authorized);
                });
            }
        });
        server
    }
}

fn serve(
    stream: TcpStream,
    calls: &AtomicUsize,
    inputs: &AtomicUsize,
    fail: &AtomicBool,
    authorized: &AtomicBool,
) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    loop {
        let mut request_line = String::new();
        if reader.read_line(&mut request_line)? == 0 {
            return Ok(());
        }
        let mut length = 0usize;
        let mut auth = String::new();
        loop {
            let mut line = String::new();
            reader.read_line(&mut line)?;
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            let (name, value) = line.split_once(':').unwrap_or((line, ""));
            match name.to_ascii_lowercase().as_str() {
                "content-length" => length = value.trim().parse().unwrap_or(0),
                "authorization" => auth = value.trim().to_string(),
                _ => {}
            }
        }
        let mut body = vec![0; length];
        reader.read_exact(&mut body)?;
        calls.fetch_add(1, Ordering::SeqCst);
        if auth != format!("Bearer {KEY}") {
            authorized.store(false, Ordering::SeqCst);
        }
        let (status, payload) = if fail.load(Ordering::SeqCst) {
            ("500 Internal Server Error", r#"{"error":{"message":"upstream down"}}"#.to_string())
        } else {
            let request: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
            let texts: Vec<String> = request["input"]
                .as_array()
                .map(|a| a.iter().map(|t| t.as_str().unwrap_or("").to_string()).collect())
                .unwrap_or_default();
            inputs.fetch_add(texts.len(), Ordering::SeqCst);
            // Base64 of little-endian f32s when asked, as OpenAI does; floats otherwise.
            let base64 = request["encoding_format"] == "base64";
            let data: Vec<serde_json::Value> = texts
                .iter()
                .enumerate()
                .map(|(i, t)| {
                    let v = vector(t);
                    let embedding = if base64 {
                        use base64::Engine as _;
                        let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
                        serde_json::json!(base64::engine::general_purpose::STANDARD.encode(bytes))
                    } else {
                        serde_json::json!(v)
                    };
                    serde_json::json!({"object": "embedding", "index": i, "embedding": embedding})
                })
                .collect();
            let tokens: usize = texts.iter().map(|t| t.split_whitespace().count()).sum();
            let body = serde_json::json!({
                "object": "list", "data": data, "model": "fake-embed",
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens}
            });
            ("200 OK", body.to_string())
        };
        let mut stream = reader.get_ref().try_clone()?;
        write!(
            stream,
            "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{payload}",
            payload.len()
        )?;
        stream.flush()?;
    }
}

/// Bag of lowercase words hashed into `DIMS` buckets (FNV-1a), plus a constant so no vector is zero.
fn vector(text: &str) -> Vec<f32> {
    let mut v = vec![0.0f32; DIMS];
    v[0] = 0.1;
    for word in text.split(|c: char| !c.is_alphanumeric()).filter(|w| !w.is_empty()) {
        let mut h: u64 = 0xcbf29ce484222325;
        for b in word.to_lowercase().bytes() {
            h = (h ^ u64::from(b)).wrapping_mul(0x100000001b3);
        }
        v[(h % DIMS as u64) as usize] += 1.0;
    }
    v
}

fn openai(semdex: &Semdex, server: &FakeOpenAi, args: &[&str]) -> std::process::Output {
    let mut cmd = semdex.command();
    cmd.env("SEMDEX_EMBEDDER", "openai")
        .env("SEMDEX_EMBEDDING_URL", &server.addr)
        .env("SEMDEX_EMBEDDING_API_KEY", KEY)
        .env("SEMDEX_EMBEDDING_MODEL", "fake-embed")
        .env("SEMDEX_EMBEDDING_DIMS", DIMS.to_string());
    cmd.args(args).output().expect("running semdex")
}

fn json(out: &std::process::Output) -> serde_json::Value {
    assert!(
        out.status.success(),
        "semdex failed ({}): {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("JSON output")
}

#[test]
fn the_openai_provider_fills_the_cache_and_never_pays_twice() {
    let server = FakeOpenAi::start();
    let semdex = Semdex::embedded();
    let root = semdex_tests::fixture("ts-app");
    let root = root.to_str().unwrap();

    let first = json(&openai(&semdex, &server, &["index", root, "--json"]));
    let chunks = first["chunks"].as_i64().unwrap();
    assert!(chunks > 100, "{first}");
    let calls = server.calls.load(Ordering::SeqCst);
    assert!(calls >= 1, "no embedding call was made");
    // Identical chunk texts are sent once: the server saw each distinct text once.
    assert_eq!(server.inputs.load(Ordering::SeqCst) as i64, first["chunks_embedded"].as_i64().unwrap());
    assert!(first["chunks_embedded"].as_i64().unwrap() <= chunks);
    assert!(first["tokens_embedded"].as_i64().unwrap() > 0, "usage is recorded: {first}");
    assert!(server.authorized.load(Ordering::SeqCst), "every call carried the bearer key");

    // Nothing changed: zero calls.
    let again = json(&openai(&semdex, &server, &["index", root, "--json"]));
    assert_eq!(again["chunks_embedded"], 0, "{again}");
    assert_eq!(server.calls.load(Ordering::SeqCst), calls, "re-indexing unchanged code called the API");

    // The same code under another project name is served from the cache too.
    let other = json(&openai(&semdex, &server, &["index", root, "--project", "copy", "--json"]));
    assert_eq!(other["chunks_embedded"], 0, "{other}");
    assert_eq!(other["files_indexed"], first["files_indexed"], "{other}");
    assert!(other["embedding_cache_hits"].as_i64().unwrap() > 0, "{other}");
    assert_eq!(server.calls.load(Ordering::SeqCst), calls);

    // Search embeds the query with the same provider: one call. (The fake server's vectors are
    // word hashes, so ranking quality is not what this test checks.)
    let out = openai(
        &semdex,
        &server,
        &[
            "search",
            "withRetry maxAttempts baseDelayMs",
            "--project",
            "ts-app",
            "--mode",
            "semantic",
            "--json",
        ],
    );
    let v = json(&out);
    let paths: Vec<&str> =
        v["results"].as_array().unwrap().iter().map(|r| r["path"].as_str().unwrap()).collect();
    assert_eq!(paths.len(), 10, "{paths:?}");
    assert_eq!(server.calls.load(Ordering::SeqCst), calls + 1);
}

#[test]
fn a_dead_upstream_leaves_chunks_pending_and_a_later_run_embeds_them() {
    let server = FakeOpenAi::start();
    server.fail.store(true, Ordering::SeqCst);
    let semdex = Semdex::embedded();
    std::fs::write(
        semdex.data_dir.path().join("semdex.toml"),
        "[embedding]\nmax_retries = 1\ntimeout_secs = 5\n",
    )
    .unwrap();
    let repo = tempfile::tempdir().unwrap();
    std::fs::write(repo.path().join("a.ts"), "export function alpha(): number {\n  return 1;\n}\n").unwrap();
    let root = repo.path().to_str().unwrap();

    let out = openai(&semdex, &server, &["index", root, "--json"]);
    let down = json(&out);
    assert_eq!(down["status"], "succeeded", "files are indexed even when embedding is down: {down}");
    assert_eq!(down["chunks_embedded"], 0, "{down}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains(KEY), "the key leaked into the output: {stderr}");
    // Lexical search works without any embedding.
    let v = json(&openai(&semdex, &server, &["search", "alpha", "--mode", "lexical", "--json"]));
    assert_eq!(v["results"][0]["path"], "a.ts");

    // The upstream is back: the next run embeds what was left pending, with no file changed.
    server.fail.store(false, Ordering::SeqCst);
    let up = json(&openai(&semdex, &server, &["index", root, "--json"]));
    assert_eq!(up["files_indexed"], 0, "{up}");
    assert_eq!(up["chunks_embedded"], 1, "{up}");
}
