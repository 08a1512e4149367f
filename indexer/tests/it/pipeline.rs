//! The whole pipeline over the fixture project: a summary snapshot (files, edges, skips), chunk
//! snapshots of a few files, equality across thread counts and runs, what a one-file edit changes,
//! and the nasty corpus end to end.

use std::fmt::Write as _;
use std::fs;
use std::path::Path;
use std::sync::atomic::AtomicBool;

use indexer::{ChunkKind, FileAnalysis, Pipeline, RepoIndex, WalkItem};

use crate::fixture;

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

fn pipeline(root: &Path) -> Pipeline {
    Pipeline::builder(root).build().expect("pipeline builds")
}

fn run(pipeline: &Pipeline) -> RepoIndex {
    pipeline.run(&AtomicBool::new(false)).expect("pipeline runs")
}

/// Runs the pipeline inside a dedicated rayon pool of `threads` workers.
fn run_on(pipeline: &Pipeline, threads: usize) -> RepoIndex {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .expect("rayon pool builds")
        .install(|| run(pipeline))
}

fn file<'a>(index: &'a RepoIndex, path: &str) -> &'a FileAnalysis {
    index.files.iter().find(|f| f.path == path).unwrap_or_else(|| panic!("{path} is indexed"))
}

/// One block per indexed file (path, language, counts), then every resolved edge of the graph,
/// then every skipped file with its reason.
fn summary(index: &RepoIndex) -> String {
    let width = index.files.iter().map(|f| f.path.len()).max().unwrap_or(0);
    let mut out = String::from("# files: path  language  symbols imports chunks diagnostics\n");
    for f in &index.files {
        writeln!(
            out,
            "{:width$}  {:<10}  sym={:<3} imp={:<3} chk={:<3} diag={}",
            f.path,
            f.language.name(),
            f.symbols.len(),
            f.imports.len(),
            f.chunks.len(),
            f.diagnostics.len(),
        )
        .expect("write to string");
    }
    out.push_str("\n# edges\n");
    for (from, to) in index.graph.edges() {
        writeln!(out, "{from} -> {to}").expect("write to string");
    }
    out.push_str("\n# skipped\n");
    for s in &index.skipped {
        writeln!(out, "{}  {}", s.path, s.reason.code()).expect("write to string");
    }
    out
}

/// Every chunk of `path`: ordinal, lines, kind, symbol path, tokens.
fn chunk_table(index: &RepoIndex, path: &str) -> String {
    let f = file(index, path);
    let mut out = format!("# {path} ({} lines)\n", f.line_count);
    for c in &f.chunks {
        writeln!(
            out,
            "{:>2}  {:>3}-{:<3}  {:<11}  {:>4} tok  {}",
            c.ordinal,
            c.start_line,
            c.end_line,
            c.kind.name(),
            c.token_count,
            if c.symbol_path.is_empty() { "-" } else { &c.symbol_path },
        )
        .expect("write to string");
    }
    out
}

/// Asserts two indexes are equal in every field. `FileAnalysis` and `RepoIndex` do not implement
/// `PartialEq`, so the parts that do are compared directly (full hashes) and the rest through
/// their `Debug` form, which prints every field.
fn assert_same(a: &RepoIndex, b: &RepoIndex, what: &str) {
    let paths = |i: &RepoIndex| i.files.iter().map(|f| f.path.clone()).collect::<Vec<_>>();
    assert_eq!(paths(a), paths(b), "{what}: indexed paths");
    for (fa, fb) in a.files.iter().zip(&b.files) {
        assert_eq!(fa.content_hash, fb.content_hash, "{what}: {} content hash", fa.path);
        assert_eq!(fa.symbols, fb.symbols, "{what}: {} symbols", fa.path);
        assert_eq!(fa.imports, fb.imports, "{what}: {} imports", fa.path);
        assert_eq!(fa.chunks, fb.chunks, "{what}: {} chunks", fa.path);
        assert_eq!(fa.diagnostics, fb.diagnostics, "{what}: {} diagnostics", fa.path);
        assert_eq!(format!("{fa:?}"), format!("{fb:?}"), "{what}: {} analysis", fa.path);
    }
    assert_eq!(a.skipped, b.skipped, "{what}: skipped");
    assert_eq!(a.resolutions, b.resolutions, "{what}: resolutions");
    assert_eq!(a.graph, b.graph, "{what}: graph");
    assert_eq!(a.dirs, b.dirs, "{what}: directory hashes");
    assert_eq!(format!("{a:?}"), format!("{b:?}"), "{what}: whole index");
}

/// Chunks of each file tile its text in order: consecutive ordinals, increasing disjoint byte
/// ranges on char boundaries, and nothing but whitespace between or around them.
fn assert_tiles(f: &FileAnalysis) {
    let mut pos = 0;
    for (i, c) in f.chunks.iter().enumerate() {
        assert_eq!(c.ordinal as usize, i, "{}: ordinals", f.path);
        assert!(c.start_byte >= pos && c.end_byte > c.start_byte, "{}: chunk {i} range", f.path);
        assert!(f.text.is_char_boundary(c.start_byte) && f.text.is_char_boundary(c.end_byte));
        assert!(f.text[pos..c.start_byte].trim().is_empty(), "{}: gap before chunk {i}", f.path);
        assert!(c.start_line <= c.end_line && c.end_line <= f.line_count, "{}: chunk {i} lines", f.path);
        pos = c.end_byte;
    }
    assert!(f.text[pos..].trim().is_empty(), "{}: text after the last chunk", f.path);
}

/// Copies the directory tree `from` into `to` (files and directories only, dotfiles included).
fn copy_tree(from: &Path, to: &Path) {
    fs::create_dir_all(to).expect("mkdir");
    for entry in fs::read_dir(from).expect("read_dir") {
        let entry = entry.expect("dir entry");
        let kind = entry.file_type().expect("file type");
        let dest = to.join(entry.file_name());
        if kind.is_dir() {
            copy_tree(&entry.path(), &dest);
        } else if kind.is_file() {
            fs::copy(entry.path(), dest).expect("copy");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The fixture project
// ---------------------------------------------------------------------------------------------

#[test]
fn ts_app_summary() {
    let index = run(&pipeline(&fixture("ts-app")));
    assert!(index.files.len() >= 45, "the fixture has 45+ source files, got {}", index.files.len());
    assert_eq!(index.resolutions.len(), index.files.len(), "one resolution list per file");
    for (f, rs) in index.files.iter().zip(&index.resolutions) {
        assert_eq!(rs.len(), f.imports.len(), "{}: one resolution per import", f.path);
        assert_tiles(f);
    }
    assert!(!index.graph.cycles().is_empty(), "the fixture has an import cycle");
    insta::assert_snapshot!(summary(&index));
}

#[test]
fn ts_app_chunks_of_interesting_files() {
    let index = run(&pipeline(&fixture("ts-app")));
    let tables: Vec<String> =
        ["src/orders/order.service.ts", "src/ui/components/OrderTable.tsx", "src/legacy/strings.cjs"]
            .iter()
            .map(|p| chunk_table(&index, p))
            .collect();
    insta::assert_snapshot!(tables.join("\n"));
}

#[test]
fn one_two_and_default_threads_give_the_same_index() {
    let pipeline = pipeline(&fixture("ts-app"));
    let one = run_on(&pipeline, 1);
    let two = run_on(&pipeline, 2);
    let default = run(&pipeline);
    assert_same(&one, &two, "1 vs 2 threads");
    assert_same(&one, &default, "1 thread vs the global pool");
}

#[test]
fn reindexing_changes_nothing() {
    let first = run(&pipeline(&fixture("ts-app")));
    // A fresh pipeline, as after a daemon restart.
    let second = run(&pipeline(&fixture("ts-app")));
    let chunk_hashes = |i: &RepoIndex| {
        i.files
            .iter()
            .flat_map(|f| f.chunks.iter().map(move |c| (f.path.clone(), c.ordinal, c.content_hash)))
            .collect::<Vec<_>>()
    };
    assert_eq!(chunk_hashes(&first), chunk_hashes(&second));
    assert_eq!(first.dirs, second.dirs);
    assert_eq!(first.dirs.root(), second.dirs.root());
    assert!(first.dirs.changed_dirs(&second.dirs).is_empty());
    assert_same(&first, &second, "two runs");
}

#[test]
fn editing_one_file_changes_its_chunks_and_its_directories_only() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    copy_tree(&fixture("ts-app"), root);
    let before = run(&pipeline(root));

    let edited = "src/utils/strings.ts";
    let path = root.join(edited);
    let mut text = fs::read_to_string(&path).expect("read");
    text.push_str("\nexport function shout(s: string): string {\n  return s.toUpperCase() + '!';\n}\n");
    fs::write(&path, text).expect("write");
    let after = run(&pipeline(root));

    assert_eq!(after.dirs.changed_dirs(&before.dirs), vec!["", "src", "src/utils"]);
    for (b, a) in before.files.iter().zip(&after.files) {
        assert_eq!(a.path, b.path);
        if a.path == edited {
            assert_ne!(a.content_hash, b.content_hash);
            assert!(a.symbols.iter().any(|s| s.name == "shout"), "the new function is extracted");
            let new = a.chunks.iter().filter(|c| !b.chunks.iter().any(|o| o.content_hash == c.content_hash));
            assert!(new.count() >= 1, "the edit makes at least one new chunk");
        } else {
            assert_eq!(a.content_hash, b.content_hash, "{}", a.path);
            assert_eq!(a.chunks, b.chunks, "{}", a.path);
        }
    }
    assert_eq!(after.graph, before.graph, "appending a function adds no import");
}

// ---------------------------------------------------------------------------------------------
// The nasty corpus
// ---------------------------------------------------------------------------------------------

#[test]
fn nasty_corpus_through_the_whole_pipeline() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    copy_tree(&fixture("nasty"), root);
    // 5 MB of valid TypeScript: over the default 1 MiB limit.
    let line = "export const value = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16];\n";
    fs::write(root.join("big.ts"), line.repeat(5 * 1024 * 1024 / line.len() + 1)).expect("write");
    // 50,000-deep nesting on short lines, so the minified check does not catch it first.
    let mut deep = String::from("export const deep = ");
    let brackets = std::iter::repeat_n('[', 50_000).chain(std::iter::repeat_n(']', 50_000));
    for (i, bracket) in brackets.enumerate() {
        deep.push(bracket);
        if i % 100 == 99 {
            deep.push('\n');
        }
    }
    deep.push_str(";\n");
    fs::write(root.join("deep.ts"), &deep).expect("write");
    fs::create_dir_all(root.join("nested")).expect("mkdir");
    fs::write(root.join("nested/n.ts"), "import { deep } from '../deep';\nexport const n = deep;\n")
        .expect("write");
    #[cfg(unix)]
    {
        use std::os::unix::fs::symlink;
        symlink("loop-b.ts", root.join("loop-a.ts")).expect("symlink");
        symlink("loop-a.ts", root.join("loop-b.ts")).expect("symlink");
        symlink("..", root.join("nested/up")).expect("symlink");
        symlink(".", root.join("nested/self")).expect("symlink");
    }

    let pipeline = pipeline(root);
    let listed: Vec<String> = pipeline
        .walk()
        .list(&AtomicBool::new(false))
        .expect("walk lists")
        .into_iter()
        .map(|item| match item {
            WalkItem::File(f) => f.path,
            WalkItem::Skipped(s) => s.path,
        })
        .collect();
    let index = run_on(&pipeline, 2);

    // Every listed path comes out exactly once, indexed or skipped.
    let mut out: Vec<String> = index
        .files
        .iter()
        .map(|f| f.path.clone())
        .chain(index.skipped.iter().map(|s| s.path.clone()))
        .collect();
    out.sort();
    assert_eq!(out, listed, "every listed file is indexed or skipped, once");

    let reasons: Vec<(&str, &str)> =
        index.skipped.iter().map(|s| (s.path.as_str(), s.reason.code())).collect();
    for (path, code) in [
        (".env", "secret"),
        ("id_rsa", "secret"),
        ("server.pem", "secret"),
        ("big.ts", "too_large"),
        ("binary.ts", "binary"),
        ("latin1.ts", "invalid_utf8"),
        ("minified.js", "minified"),
        ("one-line.min.js", "minified"),
    ] {
        assert!(reasons.contains(&(path, code)), "{path} skipped as {code}: {reasons:?}");
    }
    #[cfg(unix)]
    for path in ["loop-a.ts", "loop-b.ts", "nested/up", "nested/self"] {
        let skip = index.skipped.iter().find(|s| s.path == path);
        assert!(
            skip.is_some() || !index.files.iter().any(|f| f.path.starts_with(path)),
            "{path} is neither indexed nor followed"
        );
    }
    for s in &index.skipped {
        assert!(!s.reason.code().is_empty(), "{} has a reason", s.path);
    }

    let indexed: Vec<&str> = index.files.iter().map(|f| f.path.as_str()).collect();
    assert_eq!(indexed, ["bom.ts", "crlf.ts", "deep.ts", "empty.ts", "nested/n.ts"]);
    for f in &index.files {
        assert_tiles(f);
    }
    let deep_file = file(&index, "deep.ts");
    assert!(
        deep_file.diagnostics.iter().any(|d| d.code == "too_deep"),
        "deep.ts: {:?}",
        deep_file.diagnostics
    );
    assert!(deep_file.symbols.is_empty(), "no tree, no symbols");
    assert!(!deep_file.chunks.is_empty(), "deep.ts still gets chunks");
    assert!(deep_file.chunks.iter().all(|c| c.kind == ChunkKind::Lines), "deep.ts: line chunks only");
    assert!(file(&index, "empty.ts").chunks.is_empty(), "an empty file has no chunks");
    assert_eq!(index.graph.imports_of("nested/n.ts"), ["deep.ts"], "imports of a deep file still resolve");
}
