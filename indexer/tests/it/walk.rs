//! Walking: ignore files, globs, symlinks, skip reasons, the nasty corpus.

use std::fmt::Write as _;
use std::fs;
use std::path::Path;
use std::sync::atomic::AtomicBool;

use indexer::{ContentHash, Error, SkipReason, Walk, WalkBuilder, WalkItem};

use crate::fixture;

fn walk(root: &Path) -> Walk {
    WalkBuilder::new(root).build().expect("walk builds")
}

fn list(walk: &Walk) -> Vec<WalkItem> {
    walk.list(&AtomicBool::new(false)).expect("walk lists")
}

/// Writes `content` at `rel` under `root`, creating the directories.
fn write(root: &Path, rel: &str, content: impl AsRef<[u8]>) {
    let path = root.join(rel);
    fs::create_dir_all(path.parent().expect("has a parent")).expect("mkdir");
    fs::write(path, content).expect("write");
}

fn path_of(item: &WalkItem) -> &str {
    match item {
        WalkItem::File(f) => &f.path,
        WalkItem::Skipped(s) => &s.path,
    }
}

/// `path -> outcome` for every listed item, where the outcome is the language of a listed file
/// or the code of the skip reason.
fn outcomes(items: &[WalkItem]) -> Vec<(String, String)> {
    items
        .iter()
        .map(|item| match item {
            WalkItem::File(f) => (f.path.clone(), f.language.name().to_string()),
            WalkItem::Skipped(s) => (s.path.clone(), format!("skip:{}", s.reason.code())),
        })
        .collect()
}

/// Like [`outcomes`], but listed files are also read, and a read that refuses them shows the reason.
fn outcomes_after_read(walk: &Walk, items: &[WalkItem]) -> Vec<(String, String)> {
    items
        .iter()
        .map(|item| match item {
            WalkItem::File(f) => match walk.read(f) {
                Ok(source) => (f.path.clone(), source.language.name().to_string()),
                Err(reason) => (f.path.clone(), format!("read:{}", reason.code())),
            },
            WalkItem::Skipped(s) => (s.path.clone(), format!("skip:{}", s.reason.code())),
        })
        .collect()
}

fn pairs(expected: &[(&str, &str)]) -> Vec<(String, String)> {
    expected.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect()
}

fn render(rows: &[(String, String)]) -> String {
    let width = rows.iter().map(|(p, _)| p.len()).max().unwrap_or(0);
    let mut out = String::new();
    for (path, outcome) in rows {
        writeln!(out, "{path:width$}  {outcome}").expect("write to string");
    }
    out
}

#[test]
fn ts_app_listing() {
    let walk = walk(&fixture("ts-app"));
    let items = list(&walk);
    let rows = outcomes_after_read(&walk, &items);
    let paths: Vec<&str> = rows.iter().map(|(p, _)| p.as_str()).collect();
    let mut sorted = paths.clone();
    sorted.sort_unstable();
    assert_eq!(paths, sorted, "sorted by path");
    assert!(!paths.iter().any(|p| p.starts_with("generated/")), ".gitignore: generated/");
    assert!(!paths.contains(&"debug.log"), ".gitignore: *.log");
    assert!(!paths.iter().any(|p| p.starts_with("scratch/")), ".semdexignore: scratch/");
    assert!(paths.contains(&"dist/"), "dist is pruned as one entry");
    let indexed = rows.iter().filter(|(_, o)| !o.starts_with("skip") && !o.starts_with("read")).count();
    assert!(indexed >= 45, "the fixture has 45+ source files, got {indexed}");
    insta::assert_snapshot!(render(&rows));
}

/// Copies the committed part of the nasty corpus into `dest`.
fn copy_nasty(dest: &Path) {
    for entry in fs::read_dir(fixture("nasty")).expect("nasty fixture") {
        let entry = entry.expect("dir entry");
        fs::copy(entry.path(), dest.join(entry.file_name())).expect("copy");
    }
}

#[test]
fn nasty_corpus_every_item_has_its_reason() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    copy_nasty(root);
    // The generated part: 5 MB of valid TypeScript, and 50,000-deep nesting on short lines.
    let line = "export const value = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16];\n";
    write(root, "big.ts", line.repeat(5 * 1024 * 1024 / line.len() + 1));
    let mut deep = String::from("export const deep = ");
    for i in 0..50_000 {
        deep.push('[');
        if i % 100 == 99 {
            deep.push('\n');
        }
    }
    for i in 0..50_000 {
        deep.push(']');
        if i % 100 == 99 {
            deep.push('\n');
        }
    }
    write(root, "deep.ts", deep);
    #[cfg(unix)]
    {
        let outside = tempfile::tempdir().expect("tempdir");
        write(outside.path(), "stolen.ts", "export const stolen = 1;\n");
        std::os::unix::fs::symlink(outside.path().join("stolen.ts"), root.join("escape.ts"))
            .expect("symlink");
        std::os::unix::fs::symlink(outside.path(), root.join("escape-dir")).expect("symlink");
        std::os::unix::fs::symlink(root.join("loop-b.ts"), root.join("loop-a.ts")).expect("symlink");
        std::os::unix::fs::symlink(root.join("loop-a.ts"), root.join("loop-b.ts")).expect("symlink");
        std::os::unix::fs::symlink("..", root.join("sub-up")).expect("symlink");
        write(root, "nested/n.ts", "export const n = 1;\n");
        std::os::unix::fs::symlink("..", root.join("nested/loop")).expect("symlink");
        let walk = walk(root);
        let rows = outcomes_after_read(&walk, &list(&walk));
        let expected = pairs(&[
            (".env", "skip:secret"),
            (".gitattributes", "skip:unsupported_language"),
            (".npmrc", "skip:secret"),
            ("README.md", "skip:unsupported_language"),
            ("big.ts", "skip:too_large"),
            ("binary.ts", "read:binary"),
            ("bom.ts", "typescript"),
            ("crlf.ts", "typescript"),
            ("deep.ts", "typescript"),
            ("empty.ts", "typescript"),
            ("escape-dir", "skip:symlink_outside_root"),
            ("escape.ts", "skip:symlink_outside_root"),
            ("id_rsa", "skip:secret"),
            ("latin1.ts", "read:invalid_utf8"),
            ("loop-a.ts", "skip:symlink_outside_root"),
            ("loop-b.ts", "skip:symlink_outside_root"),
            ("minified.js", "read:minified"),
            ("nested/n.ts", "typescript"),
            ("one-line.min.js", "skip:minified"),
            ("server.pem", "skip:secret"),
            ("sub-up", "skip:symlink_outside_root"),
        ]);
        assert_eq!(rows, expected, "\n{}", render(&rows));
    }
}

#[test]
fn odd_but_valid_text_is_read_faithfully() {
    let walk = walk(&fixture("nasty"));
    let files: Vec<_> = list(&walk)
        .into_iter()
        .filter_map(|item| match item {
            WalkItem::File(f) => Some(f),
            WalkItem::Skipped(_) => None,
        })
        .collect();
    let read = |name: &str| {
        let entry = files.iter().find(|f| f.path == name).expect("listed");
        (walk.read(entry).expect("readable"), fs::read(&entry.abs_path).expect("raw bytes"))
    };
    let (bom, raw) = read("bom.ts");
    assert!(raw.starts_with(b"\xEF\xBB\xBF"));
    assert!(bom.text.starts_with("// A file"), "BOM stripped from the text");
    assert_eq!(bom.content_hash, ContentHash::of(&raw), "hash of the bytes on disk");
    assert_eq!(bom.size, raw.len() as u64);
    let (crlf, _) = read("crlf.ts");
    assert!(crlf.text.contains("{\r\n  return"), "line endings kept");
    let (empty, _) = read("empty.ts");
    assert_eq!(empty.text, "");
    assert_eq!(empty.content_hash, ContentHash::of(b""));
}

#[test]
fn ignore_files_are_honoured_in_a_git_repository() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    write(root, ".git/HEAD", "ref: refs/heads/main\n");
    write(root, ".git/config.js", "never walked\n");
    write(root, ".git/info/exclude", "excluded-by-git.ts\n");
    write(root, ".gitignore", "*.gen.ts\nignored-dir/\n");
    write(root, ".ignore", "from-dot-ignore.ts\n");
    write(root, ".semdexignore", "from-semdexignore.ts\n!wanted.gen.ts\n");
    write(root, "sub/.gitignore", "local.ts\n");
    for rel in [
        "kept.ts",
        "excluded-by-git.ts",
        "api.gen.ts",
        "wanted.gen.ts",
        "ignored-dir/a.ts",
        "from-dot-ignore.ts",
        "from-semdexignore.ts",
        "sub/local.ts",
        "local.ts",
        ".hidden/visible.ts",
    ] {
        write(root, rel, "export {};\n");
    }
    let walk = walk(root);
    let rows: Vec<(String, String)> =
        outcomes(&list(&walk)).into_iter().filter(|(p, _)| !p.ends_with("ignore")).collect();
    assert_eq!(
        rows,
        pairs(&[
            (".hidden/visible.ts", "typescript"),
            ("kept.ts", "typescript"),
            ("local.ts", "typescript"),
            ("wanted.gen.ts", "typescript"),
        ]),
        "\n{}",
        render(&rows)
    );
}

#[test]
fn gitignore_applies_without_git_but_info_exclude_needs_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    write(root, ".gitignore", "secret-plans.ts\n");
    write(root, "secret-plans.ts", "export {};\n");
    write(root, "plans.ts", "export {};\n");
    let rows = outcomes(&list(&walk(root)));
    assert_eq!(rows, pairs(&[(".gitignore", "skip:unsupported_language"), ("plans.ts", "typescript")]));
}

#[test]
fn ignore_files_above_the_root_do_not_apply() {
    let dir = tempfile::tempdir().expect("tempdir");
    write(dir.path(), ".gitignore", "*.ts\n");
    write(dir.path(), "repo/a.ts", "export {};\n");
    let rows = outcomes(&list(&walk(&dir.path().join("repo"))));
    assert_eq!(rows, pairs(&[("a.ts", "typescript")]));
}

#[test]
fn generated_directories_are_pruned_as_one_entry_each() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    for rel in [
        "node_modules/react/index.js",
        "node_modules/react/package.json",
        "packages/a/dist/index.js",
        "packages/a/src/index.ts",
        "coverage/lcov.info",
        ".next/server/page.js",
        "src/build.ts",
        "src/output.ts",
        "yarn.lock",
        "pnpm-lock.yaml",
        "src/app.js.map",
        "vendor/jquery.min.js",
        "vendor/app.bundle.js",
    ] {
        write(root, rel, "export {};\n");
    }
    let rows = outcomes(&list(&walk(root)));
    assert_eq!(
        rows,
        pairs(&[
            (".next/", "skip:generated"),
            ("coverage/", "skip:generated"),
            ("node_modules/", "skip:generated"),
            ("packages/a/dist/", "skip:generated"),
            ("packages/a/src/index.ts", "typescript"),
            ("pnpm-lock.yaml", "skip:generated"),
            ("src/app.js.map", "skip:generated"),
            ("src/build.ts", "typescript"),
            ("src/output.ts", "typescript"),
            ("vendor/app.bundle.js", "skip:minified"),
            ("vendor/jquery.min.js", "skip:minified"),
            ("yarn.lock", "skip:generated"),
        ]),
        "\n{}",
        render(&rows)
    );
}

#[test]
fn include_and_exclude_globs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    for rel in
        ["src/a.ts", "src/a.test.ts", "src/deep/b.tsx", "scripts/c.js", "vendor/lib/d.js", "tools/e.ts"]
    {
        write(root, rel, "export {};\n");
    }
    write(root, "README.md", "# x\n");
    let walk = WalkBuilder::new(root)
        .include(["src", "scripts/**"])
        .exclude(["*.test.ts", "vendor"])
        .build()
        .expect("valid globs");
    assert_eq!(
        outcomes(&list(&walk)),
        pairs(&[
            ("README.md", "skip:excluded"),
            ("scripts/c.js", "javascript"),
            ("src/a.test.ts", "skip:excluded"),
            ("src/a.ts", "typescript"),
            ("src/deep/b.tsx", "tsx"),
            ("tools/e.ts", "skip:excluded"),
            ("vendor/lib/d.js", "skip:excluded"),
        ])
    );
    let only_exclude = WalkBuilder::new(root).exclude(["src/*.ts"]).build().expect("valid glob");
    let rows = outcomes(&list(&only_exclude));
    assert!(rows.contains(&("src/a.ts".into(), "skip:excluded".into())));
    assert!(rows.contains(&("src/deep/b.tsx".into(), "tsx".into())), "* does not cross /");
    assert!(rows.contains(&("tools/e.ts".into(), "typescript".into())));
}

#[test]
fn bad_settings_fail_to_build() {
    let dir = tempfile::tempdir().expect("tempdir");
    match WalkBuilder::new(dir.path()).exclude(["src/[a"]).build() {
        Err(Error::InvalidGlob { glob, .. }) => assert_eq!(glob, "src/[a"),
        other => panic!("expected an invalid glob error, got {other:?}"),
    }
    match WalkBuilder::new(dir.path().join("missing")).build() {
        Err(Error::WithPath { path, .. }) => assert!(path.ends_with("missing")),
        other => panic!("expected a missing root error, got {other:?}"),
    }
    write(dir.path(), "file.ts", "");
    assert!(WalkBuilder::new(dir.path().join("file.ts")).build().is_err(), "a root must be a directory");
}

#[test]
fn limits_are_configurable_and_rechecked_on_read() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    write(root, "small.ts", "export const a = 1;\n");
    write(root, "wide.ts", "export const a = 1;\nexport const b = 'a long line';\n");
    let strict = WalkBuilder::new(root).max_file_size(10).build().expect("builds");
    let rows = outcomes(&list(&strict));
    assert_eq!(rows, pairs(&[("small.ts", "skip:too_large"), ("wide.ts", "skip:too_large")]));
    let items = list(&strict);
    let WalkItem::Skipped(skipped) = &items[0] else { panic!("skipped") };
    assert_eq!(skipped.reason, SkipReason::TooLarge { size: 20, limit: 10 });

    let narrow = WalkBuilder::new(root).max_line_length(20).build().expect("builds");
    assert_eq!(
        outcomes_after_read(&narrow, &list(&narrow)),
        pairs(&[("small.ts", "typescript"), ("wide.ts", "read:minified")])
    );

    // A file that grows between list and read is refused by the read.
    let walk = WalkBuilder::new(root).max_file_size(100).build().expect("builds");
    let items = list(&walk);
    let WalkItem::File(entry) = &items[0] else { panic!("listed as a file") };
    write(root, "small.ts", "x".repeat(500));
    assert_eq!(walk.read(entry), Err(SkipReason::TooLarge { size: 500, limit: 100 }));
    fs::remove_file(root.join("small.ts")).expect("rm");
    assert!(matches!(walk.read(entry), Err(SkipReason::Unreadable(_))), "vanished file");
}

#[test]
fn the_stop_flag_stops_the_walk() {
    let walk = walk(&fixture("ts-app"));
    assert!(matches!(walk.list(&AtomicBool::new(true)), Err(Error::Stopped)));
}

#[cfg(unix)]
#[test]
fn symlinks_never_lead_out_of_the_root_and_loops_terminate() {
    use std::os::unix::fs::symlink;
    let outside = tempfile::tempdir().expect("tempdir");
    write(outside.path(), "secret.ts", "export const leaked = true;\n");
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    write(root, "src/real.ts", "export const real = 1;\n");
    write(root, "config/.env", "API_KEY=sk-test-not-a-real-key\n");
    symlink(outside.path().join("secret.ts"), root.join("src/escape.ts")).expect("symlink");
    symlink(outside.path(), root.join("src/escape-dir")).expect("symlink");
    // `../../..` from inside the root climbs out of it.
    symlink("../../..", root.join("src/up-and-out")).expect("symlink");
    symlink("real.ts", root.join("src/alias.ts")).expect("symlink");
    symlink("../config/.env", root.join("src/settings.ts")).expect("symlink");
    symlink(".", root.join("src/self")).expect("symlink");
    symlink("..", root.join("src/parent")).expect("symlink");
    symlink("missing.ts", root.join("src/dangling.ts")).expect("symlink");
    symlink("loop2.ts", root.join("src/loop1.ts")).expect("symlink");
    symlink("loop1.ts", root.join("src/loop2.ts")).expect("symlink");
    let walk = walk(root);
    let items = list(&walk);
    let rows = outcomes(&items);
    assert_eq!(
        rows,
        pairs(&[
            ("config/.env", "skip:secret"),
            ("src/alias.ts", "typescript"),
            ("src/dangling.ts", "skip:unreadable"),
            ("src/escape-dir", "skip:symlink_outside_root"),
            ("src/escape.ts", "skip:symlink_outside_root"),
            ("src/loop1.ts", "skip:symlink_outside_root"),
            ("src/loop2.ts", "skip:symlink_outside_root"),
            ("src/real.ts", "typescript"),
            ("src/settings.ts", "skip:secret"),
            ("src/up-and-out", "skip:symlink_outside_root"),
        ]),
        "\n{}",
        render(&rows)
    );
    let alias = items.iter().find_map(|i| match i {
        WalkItem::File(f) if f.path == "src/alias.ts" => Some(f),
        _ => None,
    });
    let source = walk.read(alias.expect("alias listed")).expect("alias readable");
    assert_eq!(source.text, "export const real = 1;\n");
    // Repointed outside the root between list and read: the read refuses it.
    fs::remove_file(root.join("src/alias.ts")).expect("rm");
    symlink(outside.path().join("secret.ts"), root.join("src/alias.ts")).expect("symlink");
    assert_eq!(walk.read(alias.expect("alias listed")), Err(SkipReason::SymlinkOutsideRoot));
    assert!(walk.read_tsconfigs().is_empty());
}

#[cfg(unix)]
#[test]
fn a_symlinked_root_is_walked_through_its_target() {
    let dir = tempfile::tempdir().expect("tempdir");
    write(dir.path(), "real/a.ts", "export {};\n");
    std::os::unix::fs::symlink(dir.path().join("real"), dir.path().join("link")).expect("symlink");
    let walk = walk(&dir.path().join("link"));
    assert_eq!(walk.root(), dir.path().join("link"));
    assert_eq!(outcomes(&list(&walk)), pairs(&[("a.ts", "typescript")]));
}

#[test]
fn list_paths_reports_existing_skipped_and_gone() {
    let walk = walk(&fixture("ts-app"));
    let asked: Vec<String> = [
        "src/core/logger.ts",
        "./src//main.ts",
        "src/gone.ts",
        "generated/api-client.ts",
        "scratch/experiment.ts",
        "README.md",
        "dist/app.js",
        "src",
        "../ts-app/src/main.ts",
        "/etc/passwd",
        ".git/HEAD",
    ]
    .map(String::from)
    .to_vec();
    let got: Vec<(String, String)> = walk
        .list_paths(&asked)
        .into_iter()
        .map(|(path, item)| {
            let outcome = match item {
                None => "gone".to_string(),
                Some(WalkItem::File(f)) => format!("{} {}", f.path, f.language.name()),
                Some(WalkItem::Skipped(s)) => format!("{} skip:{}", s.path, s.reason.code()),
            };
            (path, outcome)
        })
        .collect();
    assert_eq!(
        got,
        pairs(&[
            ("src/core/logger.ts", "src/core/logger.ts typescript"),
            ("./src//main.ts", "src/main.ts typescript"),
            ("src/gone.ts", "gone"),
            ("generated/api-client.ts", "gone"),
            ("scratch/experiment.ts", "gone"),
            ("README.md", "README.md skip:unsupported_language"),
            ("dist/app.js", "dist/app.js skip:generated"),
            ("src", "gone"),
            ("../ts-app/src/main.ts", "gone"),
            ("/etc/passwd", "gone"),
            (".git/HEAD", "gone"),
        ])
    );
    assert!(walk.list_paths(&[]).is_empty());
}

#[test]
fn list_paths_agrees_with_list() {
    let walk = walk(&fixture("ts-app"));
    let items: Vec<WalkItem> = list(&walk).into_iter().filter(|i| !path_of(i).ends_with('/')).collect();
    let paths: Vec<String> = items.iter().map(|i| path_of(i).to_string()).collect();
    let targeted: Vec<WalkItem> =
        walk.list_paths(&paths).into_iter().map(|(_, item)| item.expect("exists")).collect();
    assert_eq!(targeted, items);
}

#[test]
fn tsconfigs_are_found_at_any_depth_regardless_of_globs() {
    let walk = WalkBuilder::new(fixture("ts-app")).include(["src"]).build().expect("builds");
    let configs = walk.read_tsconfigs();
    let names: Vec<&str> = configs.iter().map(|(p, _)| p.as_str()).collect();
    assert_eq!(names, ["tests/tsconfig.json", "tsconfig.base.json", "tsconfig.json"]);
    let root = &configs[2].1;
    assert!(root.contains("\"extends\": \"./tsconfig.base.json\""));

    let dir = tempfile::tempdir().expect("tempdir");
    write(dir.path(), "jsconfig.json", "{}");
    write(dir.path(), "node_modules/pkg/tsconfig.json", "{}");
    write(dir.path(), "ignored/tsconfig.json", "{}");
    write(dir.path(), ".gitignore", "ignored/\n");
    write(dir.path(), "app/tsconfig.app.json", "\u{feff}{\"compilerOptions\": {}}");
    let configs = WalkBuilder::new(dir.path()).build().expect("builds").read_tsconfigs();
    assert_eq!(
        configs,
        vec![
            ("app/tsconfig.app.json".to_string(), "{\"compilerOptions\": {}}".to_string()),
            ("jsconfig.json".to_string(), "{}".to_string()),
        ]
    );
}
