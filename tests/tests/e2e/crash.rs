//! Crash safety: `semdex index` is killed with SIGKILL at random points of a cold index
//! (walking, parsing, writing, embedding, writing the local HNSW files), then run again. The
//! recovered index must equal one built without a crash: the same files, symbols, imports,
//! chunks and embeddings (nothing lost, nothing duplicated), nothing left pending, and the same
//! semantic search answers (the local HNSW agrees with the store).
//!
//! `SEMDEX_CRASH_ITERATIONS` sets the kills per backend (default 20); `scripts/crash-soak.sh`
//! runs many more. `SEMDEX_CRASH_SEED` replays a failing sequence of kill times.

use std::time::{Duration, Instant};

use semdex_tests::{Semdex, corpus, largest_file};
use serde_json::Value;

fn index(semdex: &Semdex, root: &std::path::Path) -> Value {
    semdex.json(&["index", root.to_str().unwrap(), "--project", "crash", "--json"])
}

fn crash_and_recover(new_instance: &dyn Fn() -> Semdex, backend: &str) {
    let repo = corpus(3);
    let root = repo.path();
    let reference_instance = new_instance();
    let started = Instant::now();
    let cold = index(&reference_instance, root);
    let cold_time = started.elapsed();
    assert_eq!(cold["status"], "succeeded", "{cold}");
    let reference = reference_instance.fingerprint();
    assert!(reference["rows"][3][1].as_i64().unwrap() > 100, "the corpus makes chunks: {reference}");

    let iterations: usize =
        std::env::var("SEMDEX_CRASH_ITERATIONS").ok().and_then(|v| v.parse().ok()).unwrap_or(20);
    let seed: u64 = std::env::var("SEMDEX_CRASH_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| fastrand::u64(..));
    let mut rng = fastrand::Rng::with_seed(seed);
    // Kill times spread over the whole cold run (and a little past it, where the local HNSW
    // files are written), including process start-up. A run that ends before its kill time shows
    // how long a cold run takes now, and the window follows it: the machine's load changes while
    // the test runs, and a window sized by one slow run would let most kills land after the end.
    let window_for = |run: Duration| run.as_millis() as u64 * 11 / 10 + 1;
    let mut window = window_for(cold_time);
    let mut killed_midway = 0;
    for i in 0..iterations {
        let semdex = new_instance();
        let delay = Duration::from_millis(rng.u64(0..window));
        let mut child = semdex
            .command()
            .args(["index", root.to_str().unwrap(), "--project", "crash", "--json"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("starting semdex index");
        let spawned = Instant::now();
        let mut ended_after = None;
        while ended_after.is_none() && spawned.elapsed() < delay {
            if child.try_wait().expect("polling semdex").is_some() {
                ended_after = Some(spawned.elapsed());
            } else {
                std::thread::sleep(delay.saturating_sub(spawned.elapsed()).min(Duration::from_millis(2)));
            }
        }
        match ended_after {
            Some(run) => window = window_for(run),
            None if child.try_wait().expect("polling semdex").is_none() => killed_midway += 1,
            None => {}
        }
        child.kill().expect("SIGKILL");
        let _ = child.wait();

        let recovered = index(&semdex, root);
        let context = format!("{backend}, iteration {i}, kill after {delay:?}, seed {seed}");
        assert_eq!(recovered["status"], "succeeded", "{context}: {recovered}");
        assert!(!recovered["embedding_paused"].as_bool().unwrap(), "{context}");
        let got = semdex.fingerprint();
        assert_eq!(got, reference, "{context}: the recovered index differs from a clean one");
        // Nothing was left pending or half-written.
        let again = index(&semdex, root);
        assert_eq!(
            (
                again["files_indexed"].as_i64(),
                again["chunks_embedded"].as_i64(),
                again["files_deleted"].as_i64()
            ),
            (Some(0), Some(0), Some(0)),
            "{context}: {again}"
        );
    }
    // The kill times must actually land inside runs, or the test proves nothing.
    assert!(
        iterations < 4 || killed_midway * 2 >= iterations,
        "{backend}: only {killed_midway} of {iterations} kills landed mid-run (seed {seed})"
    );
}

#[test]
fn sigkill_during_indexing_loses_and_duplicates_nothing_embedded() {
    crash_and_recover(&Semdex::embedded, "sqlite");
}

#[test]
fn sigkill_during_indexing_loses_and_duplicates_nothing_in_server_mode() {
    if crate::server_mode().is_none() {
        return;
    }
    crash_and_recover(&|| crate::server_mode().expect("server mode"), "postgres");
}

/// A full disk in the middle of indexing: every write past a size limit fails (`ulimit -f`, with
/// SIGXFSZ ignored, so writes return an error as on a full disk instead of killing the process).
/// The run must fail with an error, not a panic, and the next run on a disk with room must
/// produce exactly the index a clean run does.
#[test]
fn a_full_disk_during_indexing_loses_and_duplicates_nothing() {
    let repo = corpus(3);
    let root = repo.path().to_str().unwrap();
    let reference_instance = Semdex::embedded();
    assert_eq!(index(&reference_instance, repo.path())["status"], "succeeded");
    let reference = reference_instance.fingerprint();
    let largest = largest_file(reference_instance.data_dir.path());
    assert!(largest > 256 * 1024, "the data directory has a file of some size: {largest} bytes");

    let mut failed = 0;
    for percent in [5, 30, 50, 70, 85, 95] {
        let semdex = Semdex::embedded();
        // `ulimit -f` counts blocks of 1,024 bytes.
        let limit = (largest * percent / 100 / 1024).max(1);
        let out = semdex
            .with_file_size_limit(limit)
            .args(["index", root, "--project", "crash", "--json"])
            .output()
            .expect("running semdex under a file size limit");
        let stderr = String::from_utf8_lossy(&out.stderr);
        let context = format!("limit {limit} KiB ({percent}% of {largest} bytes)");
        if !out.status.success() {
            failed += 1;
            assert_eq!(out.status.code(), Some(1), "{context}: an error exit, not a crash: {stderr}");
            assert!(!stderr.contains("panicked"), "{context}: {stderr}");
            // The database is the largest file, so it is the one that fails: the message says
            // what to check, and says it once.
            assert_eq!(stderr.matches("(is the disk full?)").count(), 1, "{context}: {stderr}");
            assert_eq!(stderr.matches("disk I/O error").count(), 2, "{context}: {stderr}");
        }

        let recovered = index(&semdex, repo.path());
        assert_eq!(recovered["status"], "succeeded", "{context}: {recovered}");
        assert_eq!(
            semdex.fingerprint(),
            reference,
            "{context}: the recovered index differs from a clean one"
        );
        let again = index(&semdex, repo.path());
        assert_eq!(
            (again["files_indexed"].as_i64(), again["chunks_embedded"].as_i64()),
            (Some(0), Some(0)),
            "{context}: nothing is left pending: {again}"
        );
    }
    assert!(failed >= 4, "only {failed} of 6 size limits made the run fail");
}
