//! Benchmark support shared by the benches in `benches/benches/`.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Searches the benches that query a real index send, in turn: natural-language questions over
/// the fetched corpus and the `ts-app` fixture, and one qualified symbol name.
pub const SEARCH_QUERIES: [&str; 12] = [
    "hash a password",
    "subscribe to an observable",
    "parse a string schema",
    "retry a failed query",
    "merge map operator",
    "validate an email address",
    "cache invalidation of queries",
    "debounce time",
    "send a notification",
    "error formatting of issues",
    "UserService.createUser",
    "mutation observer",
];

/// Builds the release `semdex` binary (the end-to-end helpers find it beside the bench's own
/// binary); panics when the build fails.
pub fn build_release_binary(repo_root: &Path) {
    let status = Command::new(env!("CARGO"))
        .args(["build", "--release", "-p", "semdex", "--bin", "semdex"])
        .current_dir(repo_root)
        .status()
        .expect("cargo build");
    assert!(status.success(), "building the release semdex binary failed");
}

/// The corpus folder `benches/fetch-corpus.sh` fetches (once) and prints.
pub fn fetch_corpus(repo_root: &Path) -> PathBuf {
    let out =
        Command::new("bash").arg(repo_root.join("benches/fetch-corpus.sh")).output().expect("fetch corpus");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    PathBuf::from(String::from_utf8(out.stdout).expect("utf-8 corpus path").trim())
}

/// The environment variable `name` parsed as `T`, or `default` when unset or unparsable.
pub fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name).ok().and_then(|v| v.trim().parse().ok()).unwrap_or(default)
}

/// The 1, 5 and 15 minute load averages, as `/proc/loadavg` gives them ("?" elsewhere).
pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

/// Milliseconds with two decimals, for latency tables.
pub fn ms(d: std::time::Duration) -> String {
    format!("{:.2}", d.as_secs_f64() * 1000.0)
}

/// CPU time of the whole process: the sum over its threads of the nanoseconds each spent
/// running (`/proc/self/task/*/schedstat`, first field). Thread pools live for the whole run, so
/// no thread's time is lost between two readings. Zero where `/proc` is missing.
pub fn cpu_time() -> std::time::Duration {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return std::time::Duration::ZERO;
    };
    let nanos: u64 = tasks
        .flatten()
        .filter_map(|task| std::fs::read_to_string(task.path().join("schedstat")).ok())
        .filter_map(|s| s.split_whitespace().next().and_then(|n| n.parse::<u64>().ok()))
        .sum();
    std::time::Duration::from_nanos(nanos)
}
