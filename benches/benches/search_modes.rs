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
use semdex_benches::{cpu_time, env_or, load_average, ms};
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

    // `SEMDEX_BENCH_KEEP_DIR` keeps the corpus copy and the index between runs (indexed once).
    let keep = std::env::var_os("SEMDEX_BENCH_KEEP_DIR").map(std::path::PathBuf::from);
    let temp = tempfile::tempdir().expect("tempdir");
    let base = keep.clone().unwrap_or_else(|| temp.path().to_path_buf());
    std::fs::create_dir_all(base.join("repo")).expect("bench dir");
    let root = std::fs::canonicalize(base.join("repo")).expect("canonical root");
    let semdex = Semdex::embedded();
    let data_dir = keep.as_ref().map_or_else(|| semdex.data_dir.path().to_path_buf(), |k| k.join("data"));
    if keep.is_none() || !root.join("ts-app").exists() {
        copy_dir(&fixture("ts-app"), &root.join("ts-app"));
        for i in 0..copies {
            copy_dir(&source, &root.join(format!("copy{i}")));
        }
        let t0 = Instant::now();
        let out = semdex
            .command()
            .env("SEMDEX_EMBEDDING_DIMS", dims.to_string())
            .env("SEMDEX_DATA_DIR", &data_dir)
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
    }

    let runtime =
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    runtime.block_on(async {
        let overrides = Overrides { data_dir: Some(data_dir.clone()), ..Overrides::default() };
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

        // The symbol table a daemon loads at start (and again after changes, in the background).
        let t0 = Instant::now();
        assert!(engine.symbols.load(engine.store.as_ref()).await.expect("symbol table"));
        let took = t0.elapsed();
        let table = engine.symbols.loaded().expect("symbol table");
        println!(
            "symbol table: {} symbols loaded in {} ms, {} bytes ({} per symbol)",
            table.len(),
            ms(took),
            table.heap_bytes(),
            table.heap_bytes() / table.len().max(1)
        );

        let mut latencies: Vec<Vec<Duration>> = vec![Vec::new(); MODES.len()];
        let mut results = [0usize; MODES.len()];
        let mut cpu = [Duration::ZERO; MODES.len()];
        // `SEMDEX_BENCH_MODES=symbol,lexical` runs only those (for profiling one signal).
        let only = std::env::var("SEMDEX_BENCH_MODES").unwrap_or_default();
        let wanted = |mode: Mode| only.is_empty() || only.split(',').any(|m| m.trim() == mode.name());
        let mut per_query: std::collections::HashMap<(&str, usize), Vec<Duration>> = Default::default();
        let load_start = load_average();
        // Round 0 warms up (loads the HNSW, fills the query cache) and is not counted.
        for round in 0..=rounds {
            for query in QUERIES {
                for (m, mode) in MODES.iter().enumerate().filter(|(_, mode)| wanted(**mode)) {
                    let mut req = SearchRequest::new(query, vec![project.id]);
                    req.mode = *mode;
                    let (t0, cpu0) = (Instant::now(), cpu_time());
                    let response = search::search(&engine, &req).await.expect("search");
                    let took = t0.elapsed();
                    if round > 0 {
                        cpu[m] += cpu_time().saturating_sub(cpu0);
                        per_query.entry((query, m)).or_default().push(took);
                        latencies[m].push(took);
                        results[m] += response.results.len();
                    }
                }
            }
        }
        println!("load during the searches: {load_start} at start, {} at end", load_average());
        println!();
        println!(
            "| mode | searches | mean results | p50 ms | p90 ms | p99 ms | max ms | CPU ms per search |"
        );
        println!("|---|---|---|---|---|---|---|---|");
        let mut p99 = [Duration::ZERO; MODES.len()];
        for (m, mode) in MODES.iter().enumerate().filter(|(_, mode)| wanted(**mode)) {
            let lat = &mut latencies[m];
            lat.sort_unstable();
            let pick = |q: f64| lat[((lat.len() as f64 * q).ceil() as usize).clamp(1, lat.len()) - 1];
            p99[m] = pick(0.99);
            println!(
                "| {} | {} | {:.1} | {} | {} | {} | {} | {} |",
                mode.name(),
                lat.len(),
                results[m] as f64 / lat.len() as f64,
                ms(pick(0.5)),
                ms(pick(0.9)),
                ms(pick(0.99)),
                ms(lat[lat.len() - 1]),
                ms(cpu[m] / lat.len() as u32)
            );
        }
        println!();
        if std::env::var_os("SEMDEX_BENCH_BREAKDOWN").is_some() && only.is_empty() {
            breakdown(&engine, project.id, &mut per_query).await;
        }
        if p99[0] > Duration::ZERO && p99[1] > Duration::ZERO {
            println!(
                "hybrid p99 / semantic (dense-only) p99 = **{:.2}x** (goal at most 2x)",
                p99[1].as_secs_f64() / p99[0].as_secs_f64()
            );
        }
    });
}

/// Per query: each mode's median and maximum, then the store calls behind the lexical and
/// symbol signals timed alone (median of 10), to see where a slow search spends its time.
async fn breakdown(
    engine: &Engine,
    project_id: i64,
    per_query: &mut std::collections::HashMap<(&str, usize), Vec<Duration>>,
) {
    use semdex::store::{SearchScope, TermMatch};
    let scope = SearchScope { project_ids: vec![project_id], languages: Vec::new(), kinds: Vec::new() };
    let median = |f: &mut Vec<Duration>| {
        f.sort_unstable();
        f[f.len() / 2]
    };
    let mut trivial = Vec::new();
    for _ in 0..200 {
        let t0 = Instant::now();
        engine.store.project(project_id).await.expect("project");
        trivial.push(t0.elapsed());
    }
    println!("one store round trip (a project by id): median {} ms", ms(median(&mut trivial)));
    let words: Vec<String> = ["cache", "invalidation", "queries"].map(String::from).to_vec();
    let mut t = Vec::new();
    for _ in 0..20 {
        let t0 = Instant::now();
        engine.store.symbol_search_words(&words, &scope, 50).await.expect("symbols");
        t.push(t0.elapsed());
    }
    println!("symbol_search_words({words:?}): median {} ms", ms(median(&mut t)));
    println!(
        "| query | semantic | hybrid | lexical | symbol | store lexical_search (any term) | store chunks(50) | store symbol_search (per word) | lexical top 10 in any-term top 10 |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    for query in QUERIES {
        let mut cells = Vec::new();
        for m in 0..MODES.len() {
            let lat = per_query.get_mut(&(query, m)).expect("timed");
            let max = *lat.iter().max().expect("timed");
            cells.push(format!("{} / {}", ms(median(lat)), ms(max)));
        }
        let terms = semdex::lexical::lexical_terms(query);
        let mut lex = Vec::new();
        let mut fetch = Vec::new();
        let mut scored = Vec::new();
        for _ in 0..10 {
            let t0 = Instant::now();
            scored = engine.store.lexical_search(&terms, TermMatch::Any, &scope, 50).await.expect("lexical");
            lex.push(t0.elapsed());
            let ids: Vec<i64> = scored.iter().map(|s| s.chunk_id).collect();
            let t0 = Instant::now();
            engine.store.chunks(&ids).await.expect("chunks");
            fetch.push(t0.elapsed());
        }
        // How much of the lexical signal's top 10 (which may rank only the chunks holding every
        // term, or all but one) the ranking of every chunk holding any term has in its top 10.
        let top10 = |hits: &[semdex::store::ScoredChunk]| -> Vec<i64> {
            hits.iter().take(10).map(|s| s.chunk_id).collect()
        };
        let any = top10(&scored);
        let top = top10(
            &search::lexical_ranking(engine.store.as_ref(), &terms, &scope, 50).await.expect("ranking"),
        );
        let shared = top.iter().filter(|id| any.contains(id)).count();
        let mut words = Vec::new();
        for word in query.split(' ').filter(|w| w.len() >= 3) {
            let mut t = Vec::new();
            for _ in 0..10 {
                let t0 = Instant::now();
                engine.store.symbol_search(word, &scope, 50).await.expect("symbols");
                t.push(t0.elapsed());
            }
            words.push(format!("{word} {}", ms(median(&mut t))));
        }
        println!(
            "| {query} | {} | {} | {} | {} | {} | {} | {} | {shared}/{} |",
            cells[0],
            cells[1],
            cells[2],
            cells[3],
            ms(median(&mut lex)),
            ms(median(&mut fetch)),
            words.join(", "),
            top.len()
        );
    }
    println!();
}
