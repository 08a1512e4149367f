//! Index lifecycle figures (issue 6), measured through the real `semdex` binary and real git:
//!
//! - **hook latency**: from `git commit` of a one-file change returning (its post-commit hook
//!   has fired in the background) to a lexical search that finds the change, p50 and p90 over
//!   repeated commits; goal p50 <= 200 ms;
//! - **no-change run**: a full run with nothing changed, as a share of the cold index (same
//!   run, same machine); goal <= 2%;
//! - **branch switch**: checking out a branch that changes 10% of the files, as a share of the
//!   cold index (goal about 10%), and the embedding cache hits when that content was seen before
//!   (goal 100%).
//!
//! Corpus: the fetched TypeScript sources (`benches/fetch-corpus.sh`) copied ten times with a
//! distinct comment per copy, over 5,000 files. Embedded mode, builtin embedder at 3072
//! dimensions (`SEMDEX_BENCH_DIMS` to change).
//! Run: `cargo bench -p semdex-benches --bench lifecycle` (builds the release binary first).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use semdex_tests::{Daemon, Semdex, copy_dir, count_files};
use serde_json::json;

const COPIES: usize = 10;
const COMMITS: usize = 30;

fn main() {
    if std::env::args().any(|a| a == "--list") {
        println!("lifecycle: bench");
        return;
    }
    let repo_root = semdex_tests::workspace_root();
    semdex_benches::build_release_binary(&repo_root);
    let target =
        std::env::var("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|_| repo_root.join("target"));
    // The end-to-end helpers find `target/release/semdex` beside this bench's own binary.
    let bin = target.join("release/semdex");
    let source = semdex_benches::fetch_corpus(&repo_root);

    let dir = tempfile::tempdir().unwrap();
    let root = std::fs::canonicalize(dir.path()).unwrap();
    for i in 0..COPIES {
        copy_dir(&source, &root.join(format!("copy{i}")));
        mark(&root.join(format!("copy{i}")), i);
    }
    let files = count_files(&root);
    println!("corpus: {files} files in {COPIES} copies of {}", source.display());

    let semdex = Semdex::embedded();
    let git =
        Git { root: root.clone(), data_dir: semdex.data_dir.path().to_path_buf(), listen: String::new() };
    git.run(&["init", "-q", "-b", "main"]);
    git.run(&["add", "-A"]);
    git.run(&["commit", "-q", "-m", "corpus"]);

    assert!(bin.exists(), "{} was not built", bin.display());
    let allowed = root.parent().unwrap().to_str().unwrap().to_string();
    // The default dimensions unless SEMDEX_BENCH_DIMS says otherwise.
    let dims = std::env::var("SEMDEX_BENCH_DIMS").unwrap_or_else(|_| "3072".into());
    println!("embedding dimensions: {dims}");
    let daemon = semdex.serve(&[
        ("SEMDEX_ALLOWED_ROOTS", allowed.as_str()),
        ("SEMDEX_LOG", "warn"),
        ("SEMDEX_EMBEDDING_DIMS", dims.as_str()),
    ]);
    let git = Git { listen: daemon.base.trim_start_matches("http://").to_string(), ..git };

    // Cold index.
    let started = Instant::now();
    let (status, created) =
        daemon.post("/v1/projects", &json!({ "name": "corpus", "root_path": root.to_str().unwrap() }));
    assert_eq!(status, 201, "{created}");
    let project = created["id"].as_i64().unwrap();
    let cold_run = daemon_wait(&daemon, created["run_id"].as_i64().unwrap());
    let cold = started.elapsed();
    println!(
        "cold index: {:.2} s, {} files, {} chunks, {} embedded",
        cold.as_secs_f64(),
        cold_run["files_indexed"],
        cold_run["chunks"],
        cold_run["chunks_embedded"]
    );
    let out = semdex.command().args(["hooks", "install", "--repo", root.to_str().unwrap()]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    // No-change run.
    let mut nochange = Vec::new();
    for _ in 0..5 {
        let t = Instant::now();
        let (_, queued) = daemon.post(&format!("/v1/projects/{project}/runs"), &json!({}));
        let run = daemon_wait(&daemon, queued["run_id"].as_i64().unwrap());
        assert_eq!(run["files_indexed"], 0, "{run}");
        nochange.push(t.elapsed());
    }
    nochange.sort();
    let nochange_median = nochange[nochange.len() / 2];
    println!(
        "no-change run: median {:.1} ms of 5 = {:.2}% of the cold index",
        ms(nochange_median),
        100.0 * nochange_median.as_secs_f64() / cold.as_secs_f64()
    );

    // Hook latency: one-file commits.
    let target_file = first_ts(&root.join("copy0"));
    let rel = target_file.strip_prefix(&root).unwrap().to_str().unwrap().to_string();
    let original = std::fs::read_to_string(&target_file).unwrap();
    let mut latencies = Vec::new();
    for i in 0..COMMITS {
        let marker = format!("hookLatencyMarker{i}x{}", fastrand::u32(..));
        std::fs::write(
            &target_file,
            format!("{original}\nexport function {marker}(): number {{ return {i}; }}\n"),
        )
        .unwrap();
        git.run(&["commit", "-q", "-a", "-m", &format!("change {i}")]);
        let t = Instant::now();
        loop {
            let (status, found) =
                daemon.post("/v1/search", &json!({ "query": marker, "mode": "lexical", "top_k": 1 }));
            assert_eq!(status, 200, "{found}");
            if found["results"][0]["path"].as_str() == Some(rel.as_str()) {
                break;
            }
            assert!(t.elapsed() < Duration::from_secs(60), "commit {i} never became searchable");
            std::thread::sleep(Duration::from_millis(2));
        }
        latencies.push(t.elapsed());
    }
    latencies.sort();
    println!(
        "hook to searchable ({COMMITS} one-file commits): p50 {:.0} ms, p90 {:.0} ms, min {:.0} ms, max {:.0} ms",
        ms(latencies[COMMITS / 2]),
        ms(latencies[COMMITS * 9 / 10]),
        ms(latencies[0]),
        ms(latencies[COMMITS - 1])
    );
    wait_idle(&daemon, project);

    // Branch switch touching 10% of the files.
    git.run(&["checkout", "-q", "-b", "tenth"]);
    let mut changed = 0;
    for (n, path) in all_ts(&root).into_iter().enumerate() {
        if n % 10 == 0 {
            let text = std::fs::read_to_string(&path).unwrap();
            std::fs::write(&path, format!("{text}\n// branch tenth {n}\n")).unwrap();
            changed += 1;
        }
    }
    git.run(&["commit", "-q", "-a", "-m", "tenth"]);
    wait_idle(&daemon, project);
    git.run(&["checkout", "-q", "main"]);
    wait_idle(&daemon, project);
    // Now switch to content the index has seen before.
    let t = Instant::now();
    git.run(&["checkout", "-q", "tenth"]);
    let run = wait_idle(&daemon, project);
    let switch = t.elapsed();
    let embedded = run["chunks_embedded"].as_i64().unwrap_or(-1);
    let hits = run["embedding_cache_hits"].as_i64().unwrap_or(-1);
    println!(
        "branch switch ({changed} files changed): {:.2} s = {:.1}% of the cold index; {} files indexed, \
         {embedded} chunks embedded, {hits} cache hits ({:.0}% hits)",
        switch.as_secs_f64(),
        100.0 * switch.as_secs_f64() / cold.as_secs_f64(),
        run["files_indexed"],
        if embedded + hits > 0 { 100.0 * hits as f64 / (embedded + hits) as f64 } else { 100.0 }
    );
    assert!(daemon.terminate().success());
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn daemon_wait(daemon: &Daemon, run: i64) -> serde_json::Value {
    let done = daemon.wait_run(run);
    assert_eq!(done["status"], "succeeded", "{done}");
    done
}

/// Waits until the project has no queued or running run and returns the newest one.
fn wait_idle(daemon: &Daemon, project: i64) -> serde_json::Value {
    // The hook's notification is asynchronous: give it a moment to queue its run.
    std::thread::sleep(Duration::from_millis(300));
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let (_, runs) = daemon.get(&format!("/v1/projects/{project}/runs?limit=5"));
        let list = runs["runs"].as_array().unwrap();
        if list.iter().all(|r| !matches!(r["status"].as_str(), Some("queued" | "running"))) {
            return list[0].clone();
        }
        assert!(Instant::now() < deadline, "runs did not finish");
        std::thread::sleep(Duration::from_millis(5));
    }
}

struct Git {
    root: PathBuf,
    data_dir: PathBuf,
    listen: String,
}

impl Git {
    fn run(&self, args: &[&str]) {
        let out = Command::new("git")
            .current_dir(&self.root)
            .args(args)
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_AUTHOR_NAME", "Bench")
            .env("GIT_AUTHOR_EMAIL", "bench@example.com")
            .env("GIT_COMMITTER_NAME", "Bench")
            .env("GIT_COMMITTER_EMAIL", "bench@example.com")
            .env("SEMDEX_LISTEN", &self.listen)
            .env("SEMDEX_DATA_DIR", &self.data_dir)
            .output()
            .expect("git");
        assert!(out.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    }
}

fn mark(dir: &Path, copy: usize) {
    for path in all_ts(dir) {
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        std::fs::write(&path, format!("{text}\n// copy {copy}\n")).unwrap();
    }
}

fn all_ts(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let mut entries: Vec<_> = std::fs::read_dir(&d).unwrap().map(|e| e.unwrap().path()).collect();
        entries.sort();
        for p in entries {
            if p.file_name().is_some_and(|n| n == ".git") {
                continue;
            }
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|e| e == "ts" || e == "tsx") {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

fn first_ts(dir: &Path) -> PathBuf {
    all_ts(dir).into_iter().next().expect("a TypeScript file")
}
