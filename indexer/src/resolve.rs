//! Import resolution: from a specifier in a file to another file of the repository, or to an
//! external package. Pure: it works on the list of paths and the tsconfig texts the walk read.
//!
//! What it follows, in TypeScript's order:
//! - Relative specifiers (`./x`, `../x`, `.`): the exact file, then the file with each of
//!   [`EXTENSIONS`] appended, then `index` plus each extension inside the directory. A specifier
//!   written with a JavaScript extension tries the TypeScript source first (`./a.js` gives `a.ts`,
//!   `a.tsx` or `a.d.ts`; `.jsx` gives `.tsx`; `.mjs` gives `.mts`; `.cjs` gives `.cts`), then the
//!   JavaScript file itself. A specifier ending in `/` only looks for the directory's index.
//! - The tsconfig that applies to the importing file: the one in the nearest ancestor directory
//!   (per directory `tsconfig.json`, then `jsconfig.json`, then other `tsconfig*.json` by name).
//!   Its `compilerOptions.paths` (exact patterns, then the `*` pattern with the longest prefix;
//!   targets tried in order, relative to `baseUrl`, else to the file that declared `paths`), then
//!   its `baseUrl`. `extends` (a string or an array, later entries winning) is followed for
//!   relative paths inside the repository; package extends (`@tsconfig/node20`) are ignored.
//! - Anything else is a package: `External` with the package name, `name` or `@scope/name`
//!   without the subpath (and only when the name is one npm accepts). Node builtins written with the scheme keep it (`node:fs/promises` gives
//!   `node:fs`), bare builtins are plain names (`fs`). A specifier that matched a non-catch-all
//!   `paths` pattern, or that looks like an alias (`~/x`, `#x`, `@/x`), is local: `Unresolved`
//!   when no file matches.
//!
//! The resolver only knows the paths it was given (the indexed files), so an import of a JSON
//! file or of a skipped file is `Unresolved` too.

use std::collections::{BTreeMap, BTreeSet, HashSet};

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

/// Extensions probed after a specifier without one, in order.
const EXTENSIONS: [&str; 9] = [".ts", ".tsx", ".d.ts", ".js", ".jsx", ".mjs", ".cjs", ".mts", ".cts"];

/// The TypeScript sources a JavaScript extension may stand for, tried before the JavaScript file.
const JS_TO_TS: [(&str, &[&str]); 4] = [
    (".js", &[".ts", ".tsx", ".d.ts"]),
    (".jsx", &[".tsx"]),
    (".mjs", &[".mts", ".d.mts"]),
    (".cjs", &[".cts", ".d.cts"]),
];

/// How deep `extends` chains are followed; deeper (or cyclic) chains stop there.
const MAX_EXTENDS_DEPTH: usize = 16;

/// Resolves specifiers for one repository.
#[derive(Debug, Clone)]
pub struct Resolver {
    files: BTreeSet<String>,
    /// The effective settings of the tsconfig that governs each directory holding one, keyed by
    /// directory (`""` is the root).
    configs: BTreeMap<String, Config>,
}

/// The resolution settings of one tsconfig after `extends` is applied.
#[derive(Debug, Clone, Default)]
struct Config {
    /// `compilerOptions.baseUrl` as a repository-relative directory.
    base_url: Option<String>,
    /// `compilerOptions.paths`, in declaration order.
    paths: Option<Paths>,
}

#[derive(Debug, Clone)]
struct Paths {
    patterns: Vec<(String, Vec<String>)>,
    /// Directory of the tsconfig that declared `paths`: targets are relative to it when there is
    /// no `baseUrl`.
    dir: String,
}

/// What one tsconfig file says by itself.
#[derive(Debug, Clone, Default)]
struct RawConfig {
    extends: Vec<String>,
    base_url: Option<String>,
    paths: Option<Vec<(String, Vec<String>)>>,
}

impl Resolver {
    /// A resolver over the repository's file paths and its `(path, text)` tsconfig/jsconfig files.
    /// Broken tsconfig files are ignored (with `extends` followed within the repository).
    pub fn new(files: impl IntoIterator<Item = String>, tsconfigs: &[(String, String)]) -> Resolver {
        let raw: BTreeMap<&str, RawConfig> = tsconfigs
            .iter()
            .filter_map(|(path, text)| Some((path.as_str(), RawConfig::parse(text)?)))
            .collect();
        // One governing config per directory, by name preference.
        let mut chosen: BTreeMap<String, &str> = BTreeMap::new();
        for path in raw.keys() {
            let (dir, name) = split_dir(path);
            let better = match chosen.get(dir) {
                None => true,
                Some(current) => config_rank(name) < config_rank(split_dir(current).1),
            };
            if better {
                chosen.insert(dir.to_string(), path);
            }
        }
        let configs =
            chosen.into_iter().map(|(dir, path)| (dir, effective(&raw, path, &mut HashSet::new()))).collect();
        Resolver { files: files.into_iter().collect(), configs }
    }

    /// Resolves `specifier` imported from the file `from` (relative path).
    pub fn resolve(&self, from: &str, specifier: &str) -> Resolution {
        let spec = strip_query(specifier.trim());
        if spec.is_empty() || spec.starts_with('/') {
            return Resolution::Unresolved;
        }
        if is_relative(spec) {
            let found = join(split_dir(from).0, spec).and_then(|p| self.probe(&p, spec.ends_with('/')));
            return found.map_or(Resolution::Unresolved, Resolution::File);
        }
        if let Some(module) = spec.strip_prefix("node:") {
            let name = module.split('/').next().unwrap_or(module);
            return Resolution::External(format!("node:{name}"));
        }
        let mut local = false;
        if let Some(config) = self.config_for(from) {
            if let Some(paths) = &config.paths {
                let base = config.base_url.as_deref().unwrap_or(&paths.dir);
                if let Some((pattern, captured, targets)) = match_paths(&paths.patterns, spec) {
                    for target in targets {
                        let substituted = target.replacen('*', captured, 1);
                        if let Some(found) =
                            join(base, &substituted).and_then(|p| self.probe(&p, substituted.ends_with('/')))
                        {
                            return Resolution::File(found);
                        }
                    }
                    local = pattern != "*";
                }
            }
            if let Some(base) = &config.base_url
                && let Some(found) = join(base, spec).and_then(|p| self.probe(&p, spec.ends_with('/')))
            {
                return Resolution::File(found);
            }
        }
        if local {
            return Resolution::Unresolved;
        }
        package_name(spec).map_or(Resolution::Unresolved, Resolution::External)
    }

    /// The settings of the tsconfig in the nearest directory at or above `from`'s directory.
    fn config_for(&self, from: &str) -> Option<&Config> {
        let mut dir = split_dir(from).0;
        loop {
            if let Some(config) = self.configs.get(dir) {
                return Some(config);
            }
            if dir.is_empty() {
                return None;
            }
            dir = split_dir(dir).0;
        }
    }

    /// The file a candidate path stands for: TypeScript sources for JavaScript names, the exact
    /// file, the file with an extension, or the directory's index (only the index when the
    /// specifier ended with `/`).
    fn probe(&self, candidate: &str, directory: bool) -> Option<String> {
        let has = |path: &str| self.files.contains(path).then(|| path.to_string());
        let index = if candidate.is_empty() { "index".to_string() } else { format!("{candidate}/index") };
        if directory {
            return EXTENSIONS.iter().find_map(|ext| has(&format!("{index}{ext}")));
        }
        for (js, sources) in JS_TO_TS {
            if let Some(stem) = candidate.strip_suffix(js)
                && let Some(found) = sources.iter().find_map(|ts| has(&format!("{stem}{ts}")))
            {
                return Some(found);
            }
        }
        if !candidate.is_empty()
            && let Some(found) = has(candidate)
        {
            return Some(found);
        }
        if !candidate.is_empty()
            && let Some(found) = EXTENSIONS.iter().find_map(|ext| has(&format!("{candidate}{ext}")))
        {
            return Some(found);
        }
        EXTENSIONS.iter().find_map(|ext| has(&format!("{index}{ext}")))
    }
}

/// Lower ranks win when several configs share a directory.
fn config_rank(name: &str) -> (u8, &str) {
    match name {
        "tsconfig.json" => (0, name),
        "jsconfig.json" => (1, name),
        _ => (2, name),
    }
}

/// The settings of the config at `path` with its `extends` chain applied. `seen` breaks cycles.
fn effective(raw: &BTreeMap<&str, RawConfig>, path: &str, seen: &mut HashSet<String>) -> Config {
    let mut config = Config::default();
    let Some(own) = raw.get(path) else { return config };
    if seen.len() >= MAX_EXTENDS_DEPTH || !seen.insert(path.to_string()) {
        return config;
    }
    let dir = split_dir(path).0;
    for parent in &own.extends {
        // Only paths: a bare name is a package in node_modules, which the walk never lists.
        if !is_relative(parent) {
            continue;
        }
        let Some(target) = join(dir, parent) else { continue };
        let target = if raw.contains_key(target.as_str()) { target } else { format!("{target}.json") };
        let inherited = effective(raw, &target, seen);
        if inherited.base_url.is_some() {
            config.base_url = inherited.base_url;
        }
        if inherited.paths.is_some() {
            config.paths = inherited.paths;
        }
    }
    seen.remove(path);
    if let Some(base_url) = own.base_url.as_deref().and_then(|b| join(dir, b)) {
        config.base_url = Some(base_url);
    }
    if let Some(patterns) = &own.paths {
        config.paths = Some(Paths { patterns: patterns.clone(), dir: dir.to_string() });
    }
    config
}

/// The `paths` entry for `spec`: an exact pattern, else the `*` pattern with the longest prefix.
/// Returns the pattern, the text `*` stands for, and the targets.
fn match_paths<'a>(
    patterns: &'a [(String, Vec<String>)],
    spec: &'a str,
) -> Option<(&'a str, &'a str, &'a [String])> {
    if let Some((pattern, targets)) = patterns.iter().find(|(p, _)| !p.contains('*') && p == spec) {
        return Some((pattern, "", targets));
    }
    let mut best: Option<(&str, &str, &[String], usize)> = None;
    for (pattern, targets) in patterns {
        let Some((prefix, suffix)) = pattern.split_once('*') else { continue };
        if spec.len() >= prefix.len() + suffix.len() && spec.starts_with(prefix) && spec.ends_with(suffix) {
            let captured = &spec[prefix.len()..spec.len() - suffix.len()];
            if best.is_none_or(|(_, _, _, len)| prefix.len() > len) {
                best = Some((pattern, captured, targets, prefix.len()));
            }
        }
    }
    best.map(|(pattern, captured, targets, _)| (pattern, captured, targets))
}

/// The package a bare specifier names, or `None` when it does not look like a package.
fn package_name(spec: &str) -> Option<String> {
    if let Some(rest) = spec.strip_prefix("npm:") {
        // `npm:lodash@4/fp` names `lodash`; `npm:@scope/pkg@1` names `@scope/pkg`.
        let version_at = rest.char_indices().skip(1).find(|&(_, c)| c == '@').map_or(rest.len(), |(i, _)| i);
        return package_name(&rest[..version_at]);
    }
    if spec.contains(':') {
        // Another scheme (`https:`, `data:`, `bun:`, `jsr:`): external, named by the whole text.
        return Some(spec.to_string());
    }
    let mut parts = spec.split('/');
    let first = parts.next()?;
    // npm's rule: URL-safe characters, not starting with `.` or `_`. Aliases (`~/x`, `$lib/x`,
    // `#x`) fail it, which is what keeps them from passing for packages.
    let valid = |s: &str| {
        !s.is_empty()
            && !s.starts_with(['.', '_', '~'])
            && s.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_' | '~'))
    };
    if let Some(scope) = first.strip_prefix('@') {
        let name = parts.next()?;
        return (valid(scope) && valid(name)).then(|| format!("@{scope}/{name}"));
    }
    valid(first).then(|| first.to_string())
}

fn is_relative(spec: &str) -> bool {
    spec == "." || spec == ".." || spec.starts_with("./") || spec.starts_with("../")
}

/// Drops a bundler query (`./a.css?inline`) or hash; a leading `#` is a package import, kept.
fn strip_query(spec: &str) -> &str {
    let cut = spec.char_indices().skip(1).find(|&(_, c)| c == '?' || c == '#').map(|(i, _)| i);
    cut.map_or(spec, |i| &spec[..i])
}

/// `(directory, name)` of a `/`-separated path; the directory of a top-level file is `""`.
fn split_dir(path: &str) -> (&str, &str) {
    path.rsplit_once('/').unwrap_or(("", path))
}

/// Joins a relative path onto a repository-relative directory, folding `.` and `..`; `None` if
/// it climbs out of the repository.
fn join(dir: &str, rel: &str) -> Option<String> {
    let mut parts: Vec<&str> = dir.split('/').filter(|p| !p.is_empty()).collect();
    for part in rel.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop()?;
            }
            part => parts.push(part),
        }
    }
    Some(parts.join("/"))
}

impl RawConfig {
    /// Reads what resolution needs from a tsconfig; `None` when it is not a JSONC object.
    fn parse(text: &str) -> Option<RawConfig> {
        let root = jsonc::parse(text)?;
        root.as_object()?;
        let strings = |v: &jsonc::Value| -> Vec<String> {
            match v {
                jsonc::Value::String(s) => vec![s.clone()],
                jsonc::Value::Array(items) => {
                    items.iter().filter_map(|i| i.as_str().map(str::to_string)).collect()
                }
                _ => Vec::new(),
            }
        };
        let extends = root.get("extends").map(strings).unwrap_or_default();
        let options = root.get("compilerOptions");
        let base_url = options.and_then(|o| o.get("baseUrl")).and_then(|v| v.as_str()).map(str::to_string);
        let paths = options.and_then(|o| o.get("paths")).and_then(|p| p.as_object()).map(|entries| {
            entries.iter().map(|(pattern, targets)| (pattern.clone(), strings(targets))).collect()
        });
        Some(RawConfig { extends, base_url, paths })
    }
}

/// A small tolerant JSON reader for tsconfig files: comments (`//`, `/* */`) and trailing commas
/// are accepted, numbers are skipped, nesting is bounded so hostile input cannot exhaust the
/// stack. Anything else malformed gives `None`.
mod jsonc {
    /// Nesting deeper than this is refused.
    const MAX_DEPTH: usize = 64;

    #[derive(Debug, Clone, PartialEq)]
    pub enum Value {
        Null,
        Bool(bool),
        /// Numbers are not needed for resolution, only skipped.
        Number,
        String(String),
        Array(Vec<Value>),
        /// Members in order; on duplicate keys the last wins, as in JavaScript.
        Object(Vec<(String, Value)>),
    }

    impl Value {
        pub fn get(&self, key: &str) -> Option<&Value> {
            self.as_object()?.iter().rev().find(|(k, _)| k == key).map(|(_, v)| v)
        }

        pub fn as_object(&self) -> Option<&[(String, Value)]> {
            match self {
                Value::Object(members) => Some(members),
                _ => None,
            }
        }

        pub fn as_str(&self) -> Option<&str> {
            match self {
                Value::String(s) => Some(s),
                _ => None,
            }
        }
    }

    /// Parses one value filling the whole text (a leading BOM is allowed).
    pub fn parse(text: &str) -> Option<Value> {
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        let mut parser = Parser { bytes: text.as_bytes(), pos: 0 };
        let value = parser.value(0)?;
        parser.skip_blank();
        (parser.pos == parser.bytes.len()).then_some(value)
    }

    struct Parser<'a> {
        bytes: &'a [u8],
        pos: usize,
    }

    impl Parser<'_> {
        fn peek(&self) -> Option<u8> {
            self.bytes.get(self.pos).copied()
        }

        fn eat(&mut self, byte: u8) -> bool {
            let hit = self.peek() == Some(byte);
            self.pos += usize::from(hit);
            hit
        }

        /// Skips whitespace and comments; an unterminated block comment runs to the end.
        fn skip_blank(&mut self) {
            loop {
                match (self.peek(), self.bytes.get(self.pos + 1)) {
                    (Some(b' ' | b'\t' | b'\n' | b'\r'), _) => self.pos += 1,
                    (Some(b'/'), Some(b'/')) => {
                        while self.peek().is_some_and(|b| b != b'\n') {
                            self.pos += 1;
                        }
                    }
                    (Some(b'/'), Some(b'*')) => {
                        self.pos += 2;
                        while self.pos < self.bytes.len() && !self.bytes[self.pos..].starts_with(b"*/") {
                            self.pos += 1;
                        }
                        self.pos = (self.pos + 2).min(self.bytes.len());
                    }
                    _ => return,
                }
            }
        }

        fn value(&mut self, depth: usize) -> Option<Value> {
            if depth > MAX_DEPTH {
                return None;
            }
            self.skip_blank();
            match self.peek()? {
                b'{' => {
                    self.pos += 1;
                    let mut members = Vec::new();
                    loop {
                        self.skip_blank();
                        if self.eat(b'}') {
                            return Some(Value::Object(members));
                        }
                        let key = self.string()?;
                        self.skip_blank();
                        if !self.eat(b':') {
                            return None;
                        }
                        members.push((key, self.value(depth + 1)?));
                        self.skip_blank();
                        if !self.eat(b',') && self.peek() != Some(b'}') {
                            return None;
                        }
                    }
                }
                b'[' => {
                    self.pos += 1;
                    let mut items = Vec::new();
                    loop {
                        self.skip_blank();
                        if self.eat(b']') {
                            return Some(Value::Array(items));
                        }
                        items.push(self.value(depth + 1)?);
                        self.skip_blank();
                        if !self.eat(b',') && self.peek() != Some(b']') {
                            return None;
                        }
                    }
                }
                b'"' => self.string().map(Value::String),
                b'-' | b'0'..=b'9' => {
                    while self
                        .peek()
                        .is_some_and(|b| matches!(b, b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E'))
                    {
                        self.pos += 1;
                    }
                    Some(Value::Number)
                }
                _ => {
                    for (word, value) in
                        [("true", Value::Bool(true)), ("false", Value::Bool(false)), ("null", Value::Null)]
                    {
                        if self.bytes[self.pos..].starts_with(word.as_bytes()) {
                            self.pos += word.len();
                            return Some(value);
                        }
                    }
                    None
                }
            }
        }

        /// A double-quoted string with JSON escapes; bad `\u` escapes become U+FFFD.
        fn string(&mut self) -> Option<String> {
            if !self.eat(b'"') {
                return None;
            }
            let mut out: Vec<u8> = Vec::new();
            loop {
                let byte = self.peek()?;
                self.pos += 1;
                match byte {
                    b'"' => return String::from_utf8(out).ok(),
                    b'\\' => {
                        let escaped = self.peek()?;
                        self.pos += 1;
                        let c = match escaped {
                            b'n' => '\n',
                            b't' => '\t',
                            b'r' => '\r',
                            b'b' => '\u{8}',
                            b'f' => '\u{c}',
                            b'u' => self.unicode_escape(),
                            other => char::from(other),
                        };
                        out.extend_from_slice(c.encode_utf8(&mut [0; 4]).as_bytes());
                    }
                    other => out.push(other),
                }
            }
        }

        /// The character of a `\uXXXX` escape (the `\u` already read), joining surrogate pairs.
        fn unicode_escape(&mut self) -> char {
            let Some(high) = self.hex4() else { return char::REPLACEMENT_CHARACTER };
            if (0xD800..0xDC00).contains(&high) && self.bytes[self.pos..].starts_with(b"\\u") {
                let save = self.pos;
                self.pos += 2;
                if let Some(low) = self.hex4().filter(|low| (0xDC00..0xE000).contains(low)) {
                    let code = 0x10000 + ((high - 0xD800) << 10) + (low - 0xDC00);
                    return char::from_u32(code).unwrap_or(char::REPLACEMENT_CHARACTER);
                }
                self.pos = save;
            }
            char::from_u32(high).unwrap_or(char::REPLACEMENT_CHARACTER)
        }

        fn hex4(&mut self) -> Option<u32> {
            let digits = self.bytes.get(self.pos..self.pos + 4)?;
            let value = u32::from_str_radix(std::str::from_utf8(digits).ok()?, 16).ok()?;
            self.pos += 4;
            Some(value)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::jsonc::{Value, parse};
    use super::*;

    #[test]
    fn jsonc_accepts_comments_and_trailing_commas() {
        let text = "\u{feff}{\n // line\n \"a\": [1, -2.5e3, true, null, \"x\\u0041\\n\",], /* block */ \"b\": {},\n}";
        let value = parse(text).expect("parses");
        assert_eq!(
            value.get("a"),
            Some(&Value::Array(vec![
                Value::Number,
                Value::Number,
                Value::Bool(true),
                Value::Null,
                Value::String("xA\n".into())
            ]))
        );
        assert_eq!(value.get("b"), Some(&Value::Object(vec![])));
    }

    #[test]
    fn jsonc_refuses_garbage_and_deep_nesting() {
        for bad in ["", "{", "{\"a\" 1}", "{\"a\": 1} x", "[1 2]", "{'a': 1}", "\"unterminated"] {
            assert_eq!(parse(bad), None, "{bad:?}");
        }
        assert_eq!(parse(&"[".repeat(100_000)), None);
        assert!(parse(&format!("{}{}", "[".repeat(60), "]".repeat(60))).is_some());
    }

    #[test]
    fn jsonc_surrogate_pairs() {
        assert_eq!(parse("\"\\ud83d\\ude00\""), Some(Value::String("😀".into())));
        assert_eq!(parse("\"\\ud83d\""), Some(Value::String("\u{fffd}".into())));
    }

    #[test]
    fn helpers() {
        assert_eq!(join("src/a", "../b/./c").as_deref(), Some("src/b/c"));
        assert_eq!(join("", ".."), None);
        assert_eq!(join("src", ".").as_deref(), Some("src"));
        assert_eq!(strip_query("./a.css?inline"), "./a.css");
        assert_eq!(strip_query("#internal/x"), "#internal/x");
        assert_eq!(package_name("lodash/fp").as_deref(), Some("lodash"));
        assert_eq!(package_name("@scope/pkg/sub/path").as_deref(), Some("@scope/pkg"));
        assert_eq!(package_name("npm:@scope/pkg@1.2.3/x").as_deref(), Some("@scope/pkg"));
        assert_eq!(package_name("npm:lodash@4").as_deref(), Some("lodash"));
        assert_eq!(package_name("@scope"), None);
        assert_eq!(package_name("@/components/x"), None);
        assert_eq!(package_name("~/lib"), None);
        assert_eq!(package_name("#internal"), None);
        assert_eq!(package_name("$lib/x"), None);
        assert_eq!(package_name("_private"), None);
        assert_eq!(package_name("JSONStream").as_deref(), Some("JSONStream"));
    }

    #[test]
    fn extends_cycles_terminate() {
        let configs = vec![
            ("a/tsconfig.json".to_string(), r#"{"extends": "../b/tsconfig.json"}"#.to_string()),
            (
                "b/tsconfig.json".to_string(),
                r#"{"extends": "../a/tsconfig", "compilerOptions": {"baseUrl": "."}}"#.to_string(),
            ),
        ];
        let resolver = Resolver::new(["b/x.ts".to_string()], &configs);
        assert_eq!(resolver.resolve("a/main.ts", "x"), Resolution::File("b/x.ts".into()));
    }
}
