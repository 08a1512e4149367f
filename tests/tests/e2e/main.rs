//! End-to-end tests: the real `semdex` binary, run as a user or a CI job would run it.

#[path = "../../../daemon/tests/support/mod.rs"]
mod support;

/// `semdex backup`, `restore`, `migrate` and `status` on fresh data directories.
mod backup;
/// `semdex index` and `semdex search`, on the embedded default and in server mode.
mod cli;
/// SIGKILL at random points of indexing, then recovery: nothing lost, nothing duplicated.
mod crash;
/// Git hooks installed by `semdex hooks install`, feeding a running daemon or the spool.
mod hooks;
/// The `openai` provider through the real binary, against a local OpenAI-compatible server.
mod openai;
/// `semdex serve`: the HTTP API and the job runner, through the real binary.
mod serve;
/// The file watcher of `semdex serve`.
mod watch;

use semdex_tests::Semdex;

/// A server-mode instance on a fresh PostgreSQL database, or `None` when no test server is
/// configured (a failure under `CI=true`, see `support::pg_database`).
pub fn server_mode() -> Option<Semdex> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    runtime.block_on(support::pg_database()).map(Semdex::server)
}
