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
