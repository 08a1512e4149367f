//! Content hashing with blake3: per file, per chunk, and a Merkle hash per directory so an
//! unchanged subtree is recognised with one comparison.

use std::collections::BTreeMap;
use std::fmt;

/// A blake3 digest of some content.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ContentHash([u8; 32]);

impl ContentHash {
    /// Hashes bytes.
    pub fn of(bytes: &[u8]) -> ContentHash {
        ContentHash(*blake3::hash(bytes).as_bytes())
    }

    /// Wraps a digest computed elsewhere.
    pub fn from_bytes(bytes: [u8; 32]) -> ContentHash {
        ContentHash(bytes)
    }

    /// Parses the 64-character lowercase hex form.
    pub fn from_hex(hex: &str) -> Option<ContentHash> {
        blake3::Hash::from_hex(hex).ok().map(|h| ContentHash(*h.as_bytes()))
    }

    /// The raw digest.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// The 64-character lowercase hex form, as stored in the database.
    pub fn to_hex(&self) -> String {
        blake3::Hash::from_bytes(self.0).to_hex().to_string()
    }
}

impl fmt::Debug for ContentHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ContentHash({})", &self.to_hex()[..16])
    }
}

impl fmt::Display for ContentHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

/// Merkle hashes of every directory of a set of files, keyed by relative directory path
/// (`""` is the root). A directory's hash covers the names and hashes of everything below it, so
/// two scans agree on a directory exactly when nothing under it changed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DirHashes {
    dirs: BTreeMap<String, ContentHash>,
}

impl DirHashes {
    /// Builds the directory hashes from `(relative path, file hash)` pairs with `/` separators.
    pub fn build<'a>(files: impl IntoIterator<Item = (&'a str, ContentHash)>) -> DirHashes {
        // Children of each directory: name -> hash (files) or name/ -> subdirectory (filled later).
        let mut children: BTreeMap<String, BTreeMap<String, Option<ContentHash>>> = BTreeMap::new();
        children.entry(String::new()).or_default();
        for (path, hash) in files {
            let (dir, name) = path.rsplit_once('/').unwrap_or(("", path));
            children.entry(dir.to_string()).or_default().insert(name.to_string(), Some(hash));
            // Register every ancestor directory with its child directory.
            let mut dir = dir;
            while !dir.is_empty() {
                let (parent, child) = dir.rsplit_once('/').unwrap_or(("", dir));
                children.entry(parent.to_string()).or_default().insert(format!("{child}/"), None);
                dir = parent;
            }
        }
        // Deepest directories first, so every subdirectory is hashed before its parent.
        let mut order: Vec<&String> = children.keys().collect();
        order.sort_by_key(|d| std::cmp::Reverse(if d.is_empty() { 0 } else { d.matches('/').count() + 1 }));
        let mut dirs = BTreeMap::new();
        for dir in order {
            let mut hasher = blake3::Hasher::new();
            for (name, hash) in &children[dir] {
                let hash = match hash {
                    Some(h) => *h,
                    None => {
                        let sub = name.trim_end_matches('/');
                        let full = if dir.is_empty() { sub.to_string() } else { format!("{dir}/{sub}") };
                        dirs[&full]
                    }
                };
                hasher.update(&(name.len() as u64).to_le_bytes());
                hasher.update(name.as_bytes());
                hasher.update(hash.as_bytes());
            }
            dirs.insert(dir.clone(), ContentHash(*hasher.finalize().as_bytes()));
        }
        DirHashes { dirs }
    }

    /// The hash of a directory (`""` for the root).
    pub fn get(&self, dir: &str) -> Option<ContentHash> {
        self.dirs.get(dir).copied()
    }

    /// The root hash.
    pub fn root(&self) -> ContentHash {
        self.dirs[""]
    }

    /// Directories whose hash differs from `other` or that exist on only one side.
    pub fn changed_dirs<'a>(&'a self, other: &'a DirHashes) -> Vec<&'a str> {
        let mut out: Vec<&str> = Vec::new();
        for (dir, hash) in &self.dirs {
            if other.dirs.get(dir) != Some(hash) {
                out.push(dir);
            }
        }
        for dir in other.dirs.keys() {
            if !self.dirs.contains_key(dir) {
                out.push(dir);
            }
        }
        out.sort_unstable();
        out
    }

    /// Iterates over `(directory, hash)` in path order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, ContentHash)> {
        self.dirs.iter().map(|(d, h)| (d.as_str(), *h))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(s: &str) -> ContentHash {
        ContentHash::of(s.as_bytes())
    }

    #[test]
    fn same_bytes_same_hash_and_hex_round_trips() {
        assert_eq!(h("abc"), h("abc"));
        assert_ne!(h("abc"), h("abd"));
        let hex = h("abc").to_hex();
        assert_eq!(hex.len(), 64);
        assert_eq!(ContentHash::from_hex(&hex), Some(h("abc")));
        assert_eq!(ContentHash::from_hex("zz"), None);
    }

    #[test]
    fn merkle_changes_only_along_the_changed_path() {
        let a = DirHashes::build([("src/a.ts", h("1")), ("src/lib/b.ts", h("2")), ("test/c.ts", h("3"))]);
        let b = DirHashes::build([("src/a.ts", h("1")), ("src/lib/b.ts", h("2!")), ("test/c.ts", h("3"))]);
        assert_eq!(a.changed_dirs(&b), vec!["", "src", "src/lib"]);
        assert_eq!(a.get("test"), b.get("test"));
        let same = DirHashes::build([("test/c.ts", h("3")), ("src/lib/b.ts", h("2")), ("src/a.ts", h("1"))]);
        assert_eq!(a, same, "order of input does not matter");
    }

    #[test]
    fn moving_a_file_changes_both_directories() {
        let a = DirHashes::build([("x/a.ts", h("1")), ("y/b.ts", h("2"))]);
        let b = DirHashes::build([("y/a.ts", h("1")), ("y/b.ts", h("2"))]);
        assert_eq!(a.changed_dirs(&b), vec!["", "x", "y"]);
    }
}
