//! semdex, the daemon: configuration, stores, embedders, vector indexes, search, the job runner,
//! the HTTP API and the CLI. The thin binary in `main.rs` calls [`cli::main`].

pub mod api;
pub mod backup;
pub mod cli;
pub mod config;
pub mod embed;
pub mod engine;
pub mod hooks;
pub mod indexing;
pub mod lexical;
pub mod runner;
pub mod search;
pub mod serve;
pub mod store;
pub mod vector;
pub mod watch;

/// An error and its causes on one line, each said once: a driver's error often ends with its
/// cause's text, which the chain then gives again.
pub fn error_line(e: &anyhow::Error) -> String {
    let mut line = String::new();
    let mut last = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if !last.is_empty() && last.ends_with(&text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
        last = text;
    }
    line
}

#[cfg(test)]
mod tests {
    #[derive(Debug, thiserror::Error)]
    #[error("error returned from database: {0}")]
    struct Driver(#[source] Cause);

    #[derive(Debug, thiserror::Error)]
    #[error("disk I/O error")]
    struct Cause;

    #[test]
    fn error_line_says_each_cause_once() {
        let e = anyhow::Error::new(Driver(Cause)).context("indexing");
        assert_eq!(super::error_line(&e), "indexing: error returned from database: disk I/O error");
        let e = anyhow::anyhow!("disk I/O error").context("writing: disk I/O error").context("run");
        assert_eq!(super::error_line(&e), "run: writing: disk I/O error");
        let e = anyhow::anyhow!("plain").context("outer");
        assert_eq!(super::error_line(&e), "outer: plain");
    }
}
