//! HTTP API under load (issue 7): 32 concurrent clients in this process search a `semdex
//! serve` daemon (a second process, release build) on loopback, first idle, then while a
//! reindex of the corpus runs. Reports QPS, p50 and p99 for both and the errors (goal: none,
//! and p99 during the reindex at most 3x the idle p99).
//!
//! Corpus: the `ts-app` fixture plus the fetched TypeScript sources (`benches/fetch-corpus.sh`)
//! copied three times. Embedded mode, builtin embedder, hybrid searches.
//! Run: `cargo bench -p semdex-benches --bench api_load`.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use semdex_tests::{Semdex, copy_dir, fixture};
use serde_json::json;

const CLIENTS: usize = 32;
const IDLE: Duration = Duration::from_secs(15);
use semdex_benches::SEARCH_QUERIES as QUERIES;

fn main() {
    if std::env::args().any(|a| a == "--list") {
        println!("api_load: bench");
        return;
    }
    let repo_root = semdex_tests::workspace_root();
    semdex_benches::build_release_binary(&repo_root);
    let source = semdex_benches::fetch_corpus(&repo_root);

    let dir = tempfile::tempdir().unwrap();
    let root = std::fs::canonicalize(dir.path()).unwrap();
    copy_dir(&fixture("ts-app"), &root.join("ts-app"));
    for i in 0..3 {
        copy_dir(&source, &root.join(format!("copy{i}")));
    }
    let semdex = Semdex::embedded();
    let allowed = root.parent().unwrap().to_str().unwrap().to_string();
    let daemon = Arc::new(semdex.serve(&[
        ("SEMDEX_ALLOWED_ROOTS", allowed.as_str()),
        ("SEMDEX_LOG", "warn"),
        ("SEMDEX_EMBEDDING_DIMS", "768"),
    ]));
    let (status, created) =
        daemon.post("/v1/projects", &json!({ "name": "load", "root_path": root.to_str().unwrap() }));
    assert_eq!(status, 201, "{created}");
    let project = created["id"].as_i64().unwrap();
    let cold = daemon.wait_run(created["run_id"].as_i64().unwrap());
    println!("corpus indexed: {} files, {} chunks", cold["files_indexed"], cold["chunks"]);

    // Warm-up, then idle load.
    load(&daemon, Duration::from_secs(2), None);
    let idle = load(&daemon, IDLE, None);
    report("idle", &idle);

    // Load while a reindex runs: every file of the copies changes, then a full run.
    for i in 0..3 {
        touch_sources(&root.join(format!("copy{i}")), i);
    }
    let (status, queued) = daemon.post(&format!("/v1/projects/{project}/runs"), &json!({}));
    assert_eq!(status, 202, "{queued}");
    let run_id = queued["run_id"].as_i64().unwrap();
    let done = Arc::new(AtomicBool::new(false));
    let watcher = {
        let (daemon, done) = (daemon.clone(), done.clone());
        std::thread::spawn(move || {
            let run = daemon.wait_run(run_id);
            done.store(true, Ordering::SeqCst);
            run
        })
    };
    let busy = load(&daemon, Duration::from_secs(600), Some(done));
    let run = watcher.join().unwrap();
    println!(
        "reindex: {} files, {} chunks embedded, status {}",
        run["files_indexed"], run["chunks_embedded"], run["status"]
    );
    report("during reindex", &busy);
    println!(
        "p99 during reindex / idle p99 = {:.2}x",
        percentile(&busy.latencies, 0.99).as_secs_f64() / percentile(&idle.latencies, 0.99).as_secs_f64()
    );
    if let Ok(d) = Arc::try_unwrap(daemon) {
        assert!(d.terminate().success());
    }
}

struct Outcome {
    latencies: Vec<Duration>,
    errors: usize,
    elapsed: Duration,
}

/// Runs the clients for `duration`, or until `until` is set.
fn load(daemon: &Arc<semdex_tests::Daemon>, duration: Duration, until: Option<Arc<AtomicBool>>) -> Outcome {
    let started = Instant::now();
    let threads: Vec<_> = (0..CLIENTS)
        .map(|c| {
            let daemon = daemon.clone();
            let until = until.clone();
            std::thread::spawn(move || {
                let mut latencies = Vec::new();
                let mut errors = 0;
                let mut n = c;
                while started.elapsed() < duration
                    && !until.as_ref().is_some_and(|u| u.load(Ordering::SeqCst))
                {
                    let q = QUERIES[n % QUERIES.len()];
                    n += 1;
                    let t = Instant::now();
                    let (status, _) = daemon.post("/v1/search", &json!({ "query": q, "top_k": 10 }));
                    latencies.push(t.elapsed());
                    if status != 200 {
                        errors += 1;
                    }
                }
                (latencies, errors)
            })
        })
        .collect();
    let mut latencies = Vec::new();
    let mut errors = 0;
    for t in threads {
        let (l, e) = t.join().unwrap();
        latencies.extend(l);
        errors += e;
    }
    latencies.sort();
    Outcome { latencies, errors, elapsed: started.elapsed() }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() as f64 * p) as usize).min(sorted.len() - 1)]
}

fn report(what: &str, o: &Outcome) {
    println!(
        "{what}: {} searches in {:.1} s = {:.0} QPS, p50 {:.1} ms, p99 {:.1} ms, errors {}",
        o.latencies.len(),
        o.elapsed.as_secs_f64(),
        o.latencies.len() as f64 / o.elapsed.as_secs_f64(),
        percentile(&o.latencies, 0.5).as_secs_f64() * 1e3,
        percentile(&o.latencies, 0.99).as_secs_f64() * 1e3,
        o.errors
    );
}

fn touch_sources(dir: &Path, copy: usize) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let p = entry.unwrap().path();
        if p.is_dir() {
            touch_sources(&p, copy);
        } else if p.extension().is_some_and(|e| e == "ts") {
            let text = std::fs::read_to_string(&p).unwrap_or_default();
            std::fs::write(&p, format!("{text}\n// reindexed {copy}\n")).unwrap();
        }
    }
}
