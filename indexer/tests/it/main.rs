//! The indexer's integration tests: one binary, one module per indexer stage, driven by the
//! inputs under `fixtures/`.

/// Chunking: tiling, determinism, budgets; token counting.
mod chunk;
/// Parsing under budgets, and symbol and import extraction snapshots.
mod extract;
/// The whole pipeline over the fixture project: snapshots and sequential/parallel equality.
mod pipeline;
/// Import resolution and the import graph over the fixture project.
mod resolve;
/// Walking: ignore files, globs, symlinks, skip reasons, the nasty corpus.
mod walk;

/// Absolute path of a folder under `fixtures/`.
pub fn fixture(name: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures").join(name)
}
