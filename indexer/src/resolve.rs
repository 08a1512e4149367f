//! Import resolution: from a specifier in a file to another file of the repository, or to an
//! external package. Pure: it works on the list of paths and the tsconfig texts the walk read.

use std::collections::BTreeSet;

/// Where an import points.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resolution {
    /// A file of the repository (relative path).
    File(String),
    /// A package outside the repository (`react`, `@scope/pkg`), by package name.
    External(String),
    /// Looks local but matches no file.
    Unresolved,
}

/// Resolves specifiers for one repository.
#[derive(Debug, Clone)]
pub struct Resolver {
    files: BTreeSet<String>,
}

impl Resolver {
    /// A resolver over the repository's file paths and its `(path, text)` tsconfig/jsconfig files.
    /// Broken tsconfig files are ignored (with `extends` followed within the repository).
    pub fn new(files: impl IntoIterator<Item = String>, tsconfigs: &[(String, String)]) -> Resolver {
        let _ = tsconfigs;
        Resolver { files: files.into_iter().collect() }
    }

    /// Resolves `specifier` imported from the file `from` (relative path).
    pub fn resolve(&self, from: &str, specifier: &str) -> Resolution {
        let _ = (from, specifier, &self.files);
        todo!("resolve helper")
    }
}
