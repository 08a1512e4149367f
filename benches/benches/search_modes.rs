//! Hybrid against dense-only search latency (issue 5: "a hybrid query's p99 is at most 2x a
//! dense-only query's p99"), through the library call the CLI and the HTTP API serve,
//! `semdex::search::search`, on a real index.
//!
//! Corpus: the `ts-app` fixture plus the fetched TypeScript sources (`benches/fetch-corpus.sh`)
//! copied `SEMDEX_BENCH_COPIES` times (3), indexed by the release `semdex index` in embedded mode
//! (SQLite + local HNSW) with the builtin embedder at `SEMDEX_BENCH_DIMS` (3072) dimensions.
//! Then, in this process, one search at a time: every query in every mode in turn (so load
//! changes hit all modes alike), `SEMDEX_BENCH_ROUNDS` (20) rounds after a warm-up round.
//! Query vectors are cached after the first round in every mode alike, as in the daemon.
//!
//! Run: `cargo bench -p semdex-benches --bench search_modes`.

use std::time::{Duration, Instant};

use semdex::config::{Config, Overrides};
use semdex::engine::Engine;
use semdex::search::{self, Mode, SearchRequest};
use semdex_tests::{Semdex, copy_dir, fixture};

use semdex_benches::SEARCH_QUERIES as QUERIES;
use semdex_benches::{env_or, load_average, ms};
const MODES: [Mode; 4] = [Mode::Semantic, Mode::Hybrid, Mode::Lexical, Mode::Symbol];

fn main() {
    if std::env::args().any(|a| a == "--list") {
        println!("search_modes: bench");
        return;
    }
    let copies: usize = env_or("SEMDEX_BENCH_COPIES", 3);
    let dims: usize = env_or("SEMDEX_BENCH_DIMS", 3072);
    let rounds: usize = env_or("SEMDEX_BENCH_ROUNDS", 20);

    let repo_root = semdex_tests::workspace_root();
    semdex_benches::build_release_binary(&repo_root);
    let source = semdex_benches::fetch_corpus(&repo_root);

    let dir = tempfile::tempdir().expect("tempdir");
    let root = std::fs::canonicalize(dir.path()).expect("canonical root");
    copy_dir(&fixture("ts-app"), &root.join("ts-app"));
    for i in 0..copies {
        copy_dir(&source, &root.join(format!("copy{i}")));
    }
    let semdex = Semdex::embedded();
    let t0 = Instant::now();
    let out = semdex
        .command()
        .env("SEMDEX_EMBEDDING_DIMS", dims.to_string())
        .args(["index", root.to_str().expect("utf-8 path"), "--json"])
        .output()
        .expect("semdex index");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).expect("index summary");
    println!(
        "indexed in {:.1} s: {} files, {} chunks, dims {dims}; load {}",
        t0.elapsed().as_secs_f64(),
        summary["files_indexed"],
        summary["chunks"],
        load_average()
    );

    let runtime =
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    runtime.block_on(async {
        let overrides =
            Overrides { data_dir: Some(semdex.data_dir.path().to_path_buf()), ..Overrides::default() };
        let dims_value = dims.to_string();
        let env = move |name: &str| (name == "SEMDEX_EMBEDDING_DIMS").then(|| dims_value.clone());
        let config = Config::load_with(&overrides, &env).expect("config");
        let engine = Engine::open(config).await.expect("engine");
        let project = engine
            .store
            .project_by_root(root.to_str().expect("utf-8 path"))
            .await
            .expect("store")
            .expect("indexed project");

        let mut latencies: Vec<Vec<Duration>> = vec![Vec::new(); MODES.len()];
        let mut results = [0usize; MODES.len()];
        let load_start = load_average();
        // Round 0 warms up (loads the HNSW, fills the query cache) and is not counted.
        for round in 0..=rounds {
            for query in QUERIES {
                for (m, mode) in MODES.iter().enumerate() {
                    let mut req = SearchRequest::new(query, vec![project.id]);
                    req.mode = *mode;
                    let t0 = Instant::now();
                    let response = search::search(&engine, &req).await.expect("search");
                    let took = t0.elapsed();
                    if round > 0 {
                        latencies[m].push(took);
                        results[m] += response.results.len();
                    }
                }
            }
        }
        println!("load during the searches: {load_start} at start, {} at end", load_average());
        println!();
        println!("| mode | searches | mean results | p50 ms | p90 ms | p99 ms | max ms |");
        println!("|---|---|---|---|---|---|---|");
        let mut p99 = Vec::new();
        for (m, mode) in MODES.iter().enumerate() {
            let lat = &mut latencies[m];
            lat.sort_unstable();
            let pick = |q: f64| lat[((lat.len() as f64 * q).ceil() as usize).clamp(1, lat.len()) - 1];
            p99.push(pick(0.99));
            println!(
                "| {} | {} | {:.1} | {} | {} | {} | {} |",
                mode.name(),
                lat.len(),
                results[m] as f64 / lat.len() as f64,
                ms(pick(0.5)),
                ms(pick(0.9)),
                ms(pick(0.99)),
                ms(lat[lat.len() - 1])
            );
        }
        println!();
        println!(
            "hybrid p99 / semantic (dense-only) p99 = **{:.2}x** (goal at most 2x)",
            p99[1].as_secs_f64() / p99[0].as_secs_f64()
        );
    });
}
