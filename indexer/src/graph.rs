//! The import graph of a repository: file -> file edges with each file's imports and importers.

use std::collections::BTreeMap;

/// Directed edges between files (relative paths). Cycles are allowed; traversals visit each file
/// once.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImportGraph {
    imports: BTreeMap<String, Vec<String>>,
    importers: BTreeMap<String, Vec<String>>,
}

impl ImportGraph {
    /// Builds the graph from `(importer, imported)` edges; duplicates collapse.
    pub fn from_edges(edges: impl IntoIterator<Item = (String, String)>) -> ImportGraph {
        let _ = edges.into_iter();
        todo!("graph helper")
    }

    /// Files `path` imports directly, sorted.
    pub fn imports_of(&self, path: &str) -> &[String] {
        self.imports.get(path).map(Vec::as_slice).unwrap_or(&[])
    }

    /// Files that import `path` directly, sorted.
    pub fn importers_of(&self, path: &str) -> &[String] {
        self.importers.get(path).map(Vec::as_slice).unwrap_or(&[])
    }
}
