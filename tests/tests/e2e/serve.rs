//! `semdex serve` as editors and agents use it: register a repository over HTTP, let the job
//! runner index it, search, change a file, queue a run for the changed path, and see search
//! follow; cancel a run; shut down cleanly on SIGTERM; two daemons sharing one PostgreSQL queue.

use semdex_tests::{
    Daemon, Semdex, copy_dir, corpus, count_files, eventually, fixture, largest_file, write_file,
};
use serde_json::json;

fn repo() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&fixture("ts-app"), dir.path());
    dir
}

fn register(daemon: &Daemon, name: &str, root: &std::path::Path) -> (i64, i64) {
    let (status, body) =
        daemon.post("/v1/projects", &json!({ "name": name, "root_path": root.to_str().unwrap() }));
    assert_eq!(status, 201, "{body}");
    (body["id"].as_i64().unwrap(), body["run_id"].as_i64().expect("a first run is queued"))
}

fn top_paths(body: &serde_json::Value) -> Vec<String> {
    body["results"]
        .as_array()
        .expect("results")
        .iter()
        .map(|r| r["path"].as_str().unwrap().to_string())
        .collect()
}

fn serve_index_search_edit(semdex: &Semdex) {
    let repo = repo();
    let root = std::fs::canonicalize(repo.path()).unwrap();
    let roots = root.parent().unwrap().to_str().unwrap().to_string();
    let daemon = semdex.serve(&[("SEMDEX_ALLOWED_ROOTS", &roots)]);
    assert_eq!(daemon.get("/healthz"), (200, json!({ "status": "ok" })));
    let (status, ready) = daemon.get("/readyz");
    assert_eq!((status, ready["status"].as_str()), (200, Some("ready")), "{ready}");

    let (project, run) = register(&daemon, "app", &root);
    let run = daemon.wait_run(run);
    assert_eq!(run["status"], "succeeded", "{run}");
    assert!(run["files_indexed"].as_i64().unwrap() > 50, "{run}");

    let (status, found) = daemon.post("/v1/search", &json!({ "query": "hash a password", "top_k": 3 }));
    assert_eq!(status, 200, "{found}");
    assert_eq!(top_paths(&found).first().map(String::as_str), Some("src/auth/password.ts"), "{found}");

    // One file with its symbols.
    let (status, file) = daemon.get(&format!("/v1/projects/{project}/file?path=src/auth/password.ts"));
    assert_eq!(status, 200, "{file}");
    let names: Vec<&str> =
        file["symbols"].as_array().unwrap().iter().map(|s| s["name"].as_str().unwrap()).collect();
    assert!(names.contains(&"hashPassword"), "{names:?}");

    // An edit, reported as a changed path, is searchable once its run ends.
    write_file(
        &root,
        "src/billing/rebates.ts",
        "/** Quarterly rebate for loyal customers. */\nexport function computeQuarterlyRebate(total: number): number {\n  return total * 0.02;\n}\n",
    );
    let (status, queued) =
        daemon.post(&format!("/v1/projects/{project}/runs"), &json!({ "paths": ["src/billing/rebates.ts"] }));
    assert_eq!(status, 202, "{queued}");
    let run_id = queued["run_id"].as_i64().unwrap();
    let run = daemon.wait_run(run_id);
    assert_eq!(
        (run["status"].as_str(), run["files_indexed"].as_i64()),
        (Some("succeeded"), Some(1)),
        "{run}"
    );
    let (_, found) = daemon.post(
        "/v1/search",
        &json!({ "query": "computeQuarterlyRebate", "mode": "lexical", "projects": ["app"] }),
    );
    assert_eq!(top_paths(&found).first().map(String::as_str), Some("src/billing/rebates.ts"), "{found}");

    // The timeline of the run is recorded.
    let (_, events) = daemon.get(&format!("/v1/runs/{run_id}/events"));
    let phases: Vec<String> = events["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["event"] == "start")
        .map(|e| e["phase"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(phases, ["walk", "analyze", "write", "embed"], "{events}");

    // The CLI on the same data directory asks the daemon, and says so in status.
    let (_, before) = daemon.get("/metrics");
    let via_cli = semdex.json(&["search", "computeQuarterlyRebate", "--mode", "lexical", "--json"]);
    assert_eq!(top_paths(&via_cli).first().map(String::as_str), Some("src/billing/rebates.ts"), "{via_cli}");
    let (_, after) = daemon.get("/metrics");
    assert_ne!(search_count(&before), search_count(&after), "the CLI search did not reach the daemon");
    let status = semdex.json(&["status", "--json"]);
    assert_eq!(status["daemon"].as_str(), Some(daemon.base.as_str()), "{status}");
    let local = semdex.json(&["search", "computeQuarterlyRebate", "--mode", "lexical", "--json", "--local"]);
    assert_eq!(top_paths(&local), top_paths(&via_cli));

    let status = daemon.terminate();
    assert!(status.success(), "semdex serve exited with {status}");
    // Once it is gone, the CLI searches on its own.
    let alone = semdex.json(&["search", "computeQuarterlyRebate", "--mode", "lexical", "--json"]);
    assert_eq!(top_paths(&alone), top_paths(&via_cli));
    assert_eq!(semdex.json(&["status", "--json"])["daemon"], serde_json::Value::Null);
}

/// The number of successful searches the daemon served, from its metrics.
fn search_count(metrics: &serde_json::Value) -> u64 {
    let text = metrics.as_str().expect("metrics are text");
    text.lines()
        .filter(|l| {
            l.starts_with("semdex_http_requests_total{route=\"/v1/search\",method=\"POST\",status=\"200\"}")
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

#[test]
fn serve_registers_indexes_searches_and_follows_an_edit() {
    serve_index_search_edit(&Semdex::embedded());
    if let Some(server) = crate::server_mode() {
        serve_index_search_edit(&server);
    }
}

/// A run cancelled while it executes ends as cancelled, and the store keeps every file it
/// finished whole; the next run completes the index.
#[test]
fn a_cancelled_run_ends_cancelled_and_the_next_run_completes() {
    let semdex = Semdex::embedded();
    let repo = corpus(12);
    let root = std::fs::canonicalize(repo.path()).unwrap();
    let roots = root.parent().unwrap().to_str().unwrap().to_string();
    let daemon = semdex.serve(&[("SEMDEX_ALLOWED_ROOTS", &roots)]);
    let (project, run) = register(&daemon, "big", &root);
    let (status, cancelled) = daemon.post(&format!("/v1/runs/{run}/cancel"), &json!({}));
    assert_eq!(status, 200, "{cancelled}");
    assert_eq!(cancelled["status"], "cancelled");
    let (status, again) = daemon.post(&format!("/v1/runs/{run}/cancel"), &json!({}));
    assert_eq!((status, again["error"]["code"].as_str()), (409, Some("conflict")), "{again}");
    // The runner notices and stops; the run stays cancelled.
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert_eq!(daemon.wait_run(run)["status"], "cancelled");

    let (status, queued) = daemon.post(&format!("/v1/projects/{project}/runs"), &json!({}));
    assert_eq!(status, 202, "{queued}");
    let done = daemon.wait_run(queued["run_id"].as_i64().unwrap());
    assert_eq!(done["status"], "succeeded", "{done}");
    let (_, p) = daemon.get(&format!("/v1/projects/{project}"));
    let files_on_disk = count_files(&root);
    assert!(p["stats"]["files"].as_i64().unwrap() >= files_on_disk as i64 - 120, "{p}");
    // A further run finds nothing to do: the cancelled one left nothing half-written.
    let (_, queued) = daemon.post(&format!("/v1/projects/{project}/runs"), &json!({}));
    let again = daemon.wait_run(queued["run_id"].as_i64().unwrap());
    assert_eq!(
        (again["files_indexed"].as_i64(), again["chunks_embedded"].as_i64()),
        (Some(0), Some(0)),
        "{again}"
    );
}

/// Two daemons on one PostgreSQL share the queue: every run is executed exactly once.
#[test]
fn two_daemons_share_one_queue_without_running_a_run_twice() {
    let Some(semdex) = crate::server_mode() else { return };
    let repos: Vec<_> = (0..3).map(|_| repo()).collect();
    let roots: Vec<_> = repos.iter().map(|r| std::fs::canonicalize(r.path()).unwrap()).collect();
    let allowed = roots[0].parent().unwrap().to_str().unwrap().to_string();
    let env = [("SEMDEX_ALLOWED_ROOTS", allowed.as_str())];
    let a = semdex.serve(&env);
    let b = semdex.serve(&env);
    let mut runs = Vec::new();
    for (i, root) in roots.iter().enumerate() {
        let (project, first) = register(&a, &format!("p{i}"), root);
        runs.push(first);
        for n in 0..3 {
            let daemon = if n % 2 == 0 { &a } else { &b };
            let (status, queued) = daemon.post(&format!("/v1/projects/{project}/runs"), &json!({}));
            assert_eq!(status, 202, "{queued}");
            runs.push(queued["run_id"].as_i64().unwrap());
        }
    }
    for run in &runs {
        let done = a.wait_run(*run);
        assert_eq!(done["status"], "succeeded", "{done}");
        let (_, events) = b.get(&format!("/v1/runs/{run}/events"));
        let walks = events["events"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["phase"] == "walk" && e["event"] == "start")
            .count();
        assert_eq!(walks, 1, "run {run} was executed {walks} times: {events}");
    }
    assert!(a.terminate().success());
    assert!(b.terminate().success());
}

/// A daemon killed while it executes a run leaves the run leased; another daemon takes it over
/// once the lease lapses and completes it, and nothing is left to do afterwards.
fn takeover(semdex: &Semdex) {
    std::fs::write(
        semdex.data_dir.path().join("semdex.toml"),
        "[server]\nlease_secs = 3\npoll_millis = 100\n",
    )
    .unwrap();
    let repo = corpus(30);
    let root = std::fs::canonicalize(repo.path()).unwrap();
    let roots = root.parent().unwrap().to_str().unwrap().to_string();
    let first = semdex.serve(&[("SEMDEX_ALLOWED_ROOTS", &roots)]);
    let (project, run) = register(&first, "takeover", &root);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    // Killed once it is writing: it has walked and analyzed, and holds its lease.
    let writing = || {
        let (_, events) = first.get(&format!("/v1/runs/{run}/events"));
        events["events"]
            .as_array()
            .is_some_and(|e| e.iter().any(|e| e["phase"] == "write" && e["event"] == "start"))
    };
    while !writing() {
        assert!(std::time::Instant::now() < deadline, "the run never started writing");
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    // SIGKILL: no release, no cleanup; the lease stays until it lapses.
    drop(first);
    let second = semdex.serve(&[("SEMDEX_ALLOWED_ROOTS", &roots)]);
    let done = second.wait_run(run);
    assert_eq!(done["status"], "succeeded", "{done}");
    let (_, events) = second.get(&format!("/v1/runs/{run}/events"));
    let walks = events["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["phase"] == "walk" && e["event"] == "start")
        .count();
    assert_eq!(walks, 2, "started by the first daemon, taken over by the second: {events}");
    let (_, queued) = second.post(&format!("/v1/projects/{project}/runs"), &json!({}));
    let again = second.wait_run(queued["run_id"].as_i64().unwrap());
    assert_eq!(
        (again["files_indexed"].as_i64(), again["chunks_embedded"].as_i64()),
        (Some(0), Some(0)),
        "{again}"
    );
    assert!(second.terminate().success());
}

#[test]
fn a_run_whose_daemon_died_is_taken_over_when_its_lease_lapses() {
    takeover(&Semdex::embedded());
    if let Some(server) = crate::server_mode() {
        takeover(&server);
    }
}

/// Index runs this daemon finished with `outcome`, from its metrics.
fn runs_finished(daemon: &Daemon, outcome: &str) -> u64 {
    let (_, metrics) = daemon.get("/metrics");
    let line = format!("semdex_index_runs_total{{outcome=\"{outcome}\"}} ");
    let text = metrics.as_str().expect("metrics are text");
    text.lines().filter_map(|l| l.strip_prefix(&line)?.parse::<u64>().ok()).sum()
}

/// The disk fills while the daemon indexes: the run fails, and once there is room again the same
/// daemon indexes without a restart (a connection whose rollback failed on the full disk is not
/// reused), and the index equals a clean one. A run whose end could not be written is taken over
/// when its lease lapses.
#[test]
fn a_full_disk_fails_a_run_and_the_daemon_recovers_without_a_restart() {
    let repo = corpus(3);
    let root = std::fs::canonicalize(repo.path()).unwrap();
    let roots = root.parent().unwrap().to_str().unwrap().to_string();
    let reference = Semdex::embedded();
    let clean = reference.json(&["index", root.to_str().unwrap(), "--project", "full", "--json"]);
    assert_eq!(clean["status"], "succeeded", "{clean}");
    let largest = largest_file(reference.data_dir.path());

    let semdex = Semdex::embedded();
    std::fs::write(
        semdex.data_dir.path().join("semdex.toml"),
        "[server]\nlease_secs = 3\npoll_millis = 100\n",
    )
    .unwrap();
    // A third of the database's full size: the run fails while writing.
    let daemon = semdex.serve_with_file_size_limit(largest / 3 / 1024, &[("SEMDEX_ALLOWED_ROOTS", &roots)]);
    let (project, first) = register(&daemon, "full", &root);
    eventually("the run to fail on the full disk", || runs_finished(&daemon, "failed") >= 1);

    daemon.lift_file_size_limit();
    let (status, queued) = daemon.post(&format!("/v1/projects/{project}/runs"), &json!({}));
    assert_eq!(status, 202, "{queued}");
    let next = daemon.wait_run(queued["run_id"].as_i64().unwrap());
    assert_eq!(next["status"], "succeeded", "{next}");
    let first = daemon.wait_run(first);
    assert!(matches!(first["status"].as_str(), Some("failed" | "succeeded")), "{first}");

    assert_eq!(semdex.fingerprint(), reference.fingerprint(), "the recovered index equals a clean one");
    assert!(daemon.terminate().success());
}
