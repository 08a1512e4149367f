//! Import resolution and the import graph over the fixture project.

use std::fmt::Write as _;
use std::sync::atomic::AtomicBool;

use indexer::{ImportGraph, Resolution, Resolver, WalkBuilder, WalkItem};

use crate::fixture;

fn file(path: &str) -> Resolution {
    Resolution::File(path.to_string())
}

fn external(name: &str) -> Resolution {
    Resolution::External(name.to_string())
}

/// Builds a resolver over `files` and `(path, text)` tsconfigs and checks each
/// `(from, specifier, expected)` case, reporting every mismatch at once.
fn check(files: &[&str], tsconfigs: &[(&str, &str)], cases: &[(&str, &str, Resolution)]) {
    let configs: Vec<(String, String)> =
        tsconfigs.iter().map(|(p, t)| (p.to_string(), t.to_string())).collect();
    let resolver = Resolver::new(files.iter().map(|f| f.to_string()), &configs);
    let mut failures = String::new();
    for (from, specifier, expected) in cases {
        let got = resolver.resolve(from, specifier);
        if &got != expected {
            writeln!(failures, "{from} imports {specifier:?}: expected {expected:?}, got {got:?}")
                .expect("write");
        }
    }
    assert!(failures.is_empty(), "\n{failures}");
}

#[test]
fn relative_specifiers_probe_extensions_then_index() {
    let files = [
        "src/a.ts",
        "src/b.tsx",
        "src/c.d.ts",
        "src/d.js",
        "src/e.jsx",
        "src/f.mjs",
        "src/g.cjs",
        "src/both.ts",
        "src/both/index.ts",
        "src/dir/index.tsx",
        "src/jsdir/index.js",
        "src/user.service.ts",
        "index.ts",
        "src/data.json.ts",
    ];
    check(
        &files,
        &[],
        &[
            ("src/main.ts", "./a", file("src/a.ts")),
            ("src/main.ts", "./a.ts", file("src/a.ts")),
            ("src/main.ts", "./b", file("src/b.tsx")),
            ("src/main.ts", "./c", file("src/c.d.ts")),
            ("src/main.ts", "./d", file("src/d.js")),
            ("src/main.ts", "./e", file("src/e.jsx")),
            ("src/main.ts", "./f", file("src/f.mjs")),
            ("src/main.ts", "./g", file("src/g.cjs")),
            ("src/main.ts", "./both", file("src/both.ts")),
            ("src/main.ts", "./both/", file("src/both/index.ts")),
            ("src/main.ts", "./dir", file("src/dir/index.tsx")),
            ("src/main.ts", "./jsdir", file("src/jsdir/index.js")),
            ("src/main.ts", "./user.service", file("src/user.service.ts")),
            ("src/deep/x.ts", "../a", file("src/a.ts")),
            ("src/deep/x.ts", "../../index", file("index.ts")),
            ("src/main.ts", "..", file("index.ts")),
            ("main.ts", ".", file("index.ts")),
            ("src/main.ts", "./a?raw", file("src/a.ts")),
            ("src/main.ts", "./missing", Resolution::Unresolved),
            ("src/main.ts", "./styles.css", Resolution::Unresolved),
            ("src/main.ts", "../../../outside", Resolution::Unresolved),
            ("src/main.ts", "/abs/path", Resolution::Unresolved),
            ("src/main.ts", "", Resolution::Unresolved),
        ],
    );
}

#[test]
fn javascript_extensions_written_for_typescript_sources() {
    let files = ["a.ts", "b.tsx", "c.mts", "d.cts", "e.js", "f.ts", "f.js", "g.d.ts", "h.tsx"];
    check(
        &files,
        &[],
        &[
            ("main.ts", "./a.js", file("a.ts")),
            ("main.ts", "./b.js", file("b.tsx")),
            ("main.ts", "./c.mjs", file("c.mts")),
            ("main.ts", "./d.cjs", file("d.cts")),
            ("main.ts", "./e.js", file("e.js")),
            ("main.ts", "./f.js", file("f.ts")),
            ("main.ts", "./g.js", file("g.d.ts")),
            ("main.ts", "./h.jsx", file("h.tsx")),
            ("main.ts", "./x.js", Resolution::Unresolved),
        ],
    );
}

#[test]
fn bare_specifiers_are_packages() {
    check(
        &["src/a.ts"],
        &[],
        &[
            ("src/a.ts", "react", external("react")),
            ("src/a.ts", "react-dom/client", external("react-dom")),
            ("src/a.ts", "@tanstack/react-query", external("@tanstack/react-query")),
            ("src/a.ts", "@scope/pkg/deep/path.js", external("@scope/pkg")),
            ("src/a.ts", "lodash/debounce", external("lodash")),
            ("src/a.ts", "fs", external("fs")),
            ("src/a.ts", "node:fs", external("node:fs")),
            ("src/a.ts", "node:fs/promises", external("node:fs")),
            ("src/a.ts", "npm:@scope/pkg@1.2.3", external("@scope/pkg")),
            ("src/a.ts", "https://esm.sh/preact", external("https://esm.sh/preact")),
            ("src/a.ts", "@/components/Button", Resolution::Unresolved),
            ("src/a.ts", "~/lib/util", Resolution::Unresolved),
            ("src/a.ts", "#internal/config", Resolution::Unresolved),
            ("src/a.ts", "@scope", Resolution::Unresolved),
        ],
    );
}

#[test]
fn tsconfig_paths_and_base_url() {
    let tsconfig = r#"{
      // JSONC: comments and trailing commas.
      "compilerOptions": {
        "baseUrl": "./src",
        "paths": {
          "@app/*": ["*"],
          "@ui/*": ["ui/*", "ui/components/*",],
          "@ui/special/*": ["special/*"],
          "@config": ["config/index.ts"],
          "@gen/*": ["../generated/*"],
          "@missing/*": ["nowhere/*"],
        },
      },
    }"#;
    let files = [
        "src/users/index.ts",
        "src/users/user.service.ts",
        "src/ui/App.tsx",
        "src/ui/components/Button.tsx",
        "src/special/x.ts",
        "src/config/index.ts",
        "src/utils/ids.ts",
        "generated/api.ts",
        "lodash.ts",
    ];
    check(
        &files,
        &[("tsconfig.json", tsconfig)],
        &[
            ("src/main.ts", "@app/users", file("src/users/index.ts")),
            ("src/main.ts", "@app/users/user.service.js", file("src/users/user.service.ts")),
            ("src/main.ts", "@ui/App", file("src/ui/App.tsx")),
            ("src/main.ts", "@ui/Button", file("src/ui/components/Button.tsx")),
            ("src/main.ts", "@ui/special/x", file("src/special/x.ts")),
            ("src/main.ts", "@config", file("src/config/index.ts")),
            ("src/main.ts", "@gen/api", file("generated/api.ts")),
            ("src/main.ts", "utils/ids", file("src/utils/ids.ts")),
            ("src/deep/er/x.ts", "utils/ids", file("src/utils/ids.ts")),
            ("src/main.ts", "@missing/thing", Resolution::Unresolved),
            ("src/main.ts", "@ui/Nope", Resolution::Unresolved),
            ("src/main.ts", "react", external("react")),
            // baseUrl is src, so a root-level file is not reachable by a bare name.
            ("src/main.ts", "lodash", external("lodash")),
        ],
    );
}

#[test]
fn paths_without_base_url_are_relative_to_their_tsconfig() {
    let files = ["packages/web/src/lib/a.ts", "packages/web/src/b.ts"];
    let tsconfig = r#"{"compilerOptions": {"paths": {"$lib/*": ["./src/lib/*"], "*": ["./src/*"]}}}"#;
    check(
        &files,
        &[("packages/web/tsconfig.json", tsconfig)],
        &[
            ("packages/web/src/x.ts", "$lib/a", file("packages/web/src/lib/a.ts")),
            ("packages/web/src/x.ts", "b", file("packages/web/src/b.ts")),
            // The catch-all pattern does not make every package local.
            ("packages/web/src/x.ts", "react", external("react")),
            // Outside the package, its tsconfig does not apply.
            ("other/x.ts", "$lib/a", Resolution::Unresolved),
        ],
    );
}

#[test]
fn extends_is_followed_and_the_nearest_tsconfig_applies() {
    let base = r#"{"compilerOptions": {"baseUrl": "src", "paths": {"@core/*": ["core/*"]}}}"#;
    let app = r#"{"extends": "./tsconfig.base", "compilerOptions": {"paths": {"@app/*": ["*"]}}}"#;
    let tests = r#"{"extends": ["@tsconfig/node20/tsconfig.json", "../tsconfig.json"]}"#;
    let isolated = r#"{"compilerOptions": {}}"#;
    let broken = r#"{"compilerOptions": {"baseUrl": "#;
    let files = ["src/core/log.ts", "src/app.ts", "src/other/x.ts"];
    check(
        &files,
        &[
            ("tsconfig.base.json", base),
            ("tsconfig.json", app),
            ("tests/tsconfig.json", tests),
            ("isolated/tsconfig.json", isolated),
            ("broken/tsconfig.json", broken),
            ("jsonly/jsconfig.json", r#"{"compilerOptions": {"baseUrl": "."}}"#),
        ],
        &[
            // The child's paths replace the base's paths; baseUrl is inherited, relative to the base.
            ("src/app.ts", "@app/core/log", file("src/core/log.ts")),
            ("src/app.ts", "@core/log", external("@core/log")),
            ("src/app.ts", "other/x", file("src/other/x.ts")),
            // tests/ extends ../tsconfig.json through an array; the package entry is ignored.
            ("tests/a.test.ts", "@app/app", file("src/app.ts")),
            // A nearer tsconfig without paths shadows the root one.
            ("isolated/a.ts", "@app/app", external("@app/app")),
            ("isolated/a.ts", "other/x", external("other")),
            // A broken tsconfig is ignored: the root one applies.
            ("broken/a.ts", "@app/app", file("src/app.ts")),
            // jsconfig.json counts, and baseUrl "." is its own directory.
            ("jsonly/a.js", "src/app", external("src")),
        ],
    );
    let base_only = r#"{"extends": "./tsconfig.base.json", "compilerOptions": {}}"#;
    check(
        &files,
        &[("tsconfig.base.json", base), ("tsconfig.json", base_only)],
        &[("src/app.ts", "@core/log", file("src/core/log.ts"))],
    );
}

#[test]
fn tsconfig_preference_within_one_directory() {
    let files = ["src/a.ts", "lib/a.ts"];
    check(
        &files,
        &[
            ("tsconfig.app.json", r#"{"compilerOptions": {"baseUrl": "lib"}}"#),
            ("tsconfig.json", r#"{"compilerOptions": {"baseUrl": "src"}}"#),
        ],
        &[("x.ts", "a", file("src/a.ts"))],
    );
    check(
        &files,
        &[("tsconfig.app.json", r#"{"compilerOptions": {"baseUrl": "lib"}}"#)],
        &[("x.ts", "a", file("lib/a.ts"))],
    );
}

/// The specifiers of a file, found with a rough scan (the real extractor lives in `extract`):
/// string literals after `from`, `import`, `import(` and `require(`, once each, in order.
fn specifiers(text: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for keyword in ["from", "import", "require"] {
        let mut start = 0;
        while let Some(found) = text[start..].find(keyword) {
            let at = start + found;
            start = at + keyword.len();
            let before = text[..at].chars().next_back();
            if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == '.' || c == '$') {
                continue;
            }
            let rest = text[start..].trim_start();
            let rest = rest.strip_prefix('(').map_or(rest, str::trim_start);
            let Some(quote) = rest.chars().next().filter(|c| *c == '"' || *c == '\'') else { continue };
            if let Some(end) = rest[1..].find(quote) {
                let spec = rest[1..1 + end].to_string();
                if !out.contains(&spec) {
                    out.push(spec);
                }
            }
        }
    }
    out
}

#[test]
fn the_rough_specifier_scan_finds_each_import_form() {
    let text = "import a from './a';\nimport type { B } from \"./b\";\nimport './side';\n\
                export * from './c';\nconst d = require('./d');\nimport e = require(\"./e\");\n\
                const f = await import('./f');\nconst notImport = reimport('./g');\n";
    assert_eq!(specifiers(text), ["./a", "./b", "./c", "./side", "./f", "./d", "./e"]);
}

#[test]
fn ts_app_edges() {
    let walk = WalkBuilder::new(fixture("ts-app")).build().expect("walk builds");
    let entries: Vec<_> = walk
        .list(&AtomicBool::new(false))
        .expect("lists")
        .into_iter()
        .filter_map(|item| match item {
            WalkItem::File(f) => Some(f),
            WalkItem::Skipped(_) => None,
        })
        .collect();
    let resolver = Resolver::new(entries.iter().map(|e| e.path.clone()), &walk.read_tsconfigs());
    let mut table = String::new();
    let mut edges = Vec::new();
    for entry in &entries {
        let source = walk.read(entry).expect("fixture files are readable");
        for spec in specifiers(&source.text) {
            let resolution = resolver.resolve(&entry.path, &spec);
            let shown = match &resolution {
                Resolution::File(target) => {
                    edges.push((entry.path.clone(), target.clone()));
                    target.clone()
                }
                Resolution::External(name) => format!("external {name}"),
                Resolution::Unresolved => "unresolved".to_string(),
            };
            writeln!(table, "{} {spec:?} -> {shown}", entry.path).expect("write");
        }
    }
    let graph = ImportGraph::from_edges(edges);
    writeln!(table, "\ncycles:").expect("write");
    for cycle in graph.cycles() {
        writeln!(table, "  {}", cycle.join(" <-> ")).expect("write");
    }
    writeln!(table, "\nimporters of src/core/errors.ts within 2:").expect("write");
    for (path, distance) in graph.neighbours("src/core/errors.ts", true, 2) {
        writeln!(table, "  {distance} {path}").expect("write");
    }
    insta::assert_snapshot!(table);

    // The known shapes the fixture was written to have.
    assert!(
        graph.cycles().contains(&vec!["src/orders/inventory.ts".into(), "src/orders/reservation.ts".into()])
    );
    assert!(graph.imports_of("src/auth/auth.service.ts").contains(&"src/auth/token.service.ts".to_string()));
    assert!(graph.imports_of("src/main.ts").contains(&"src/admin/admin.module.ts".to_string()));
    assert!(graph.importers_of("src/legacy/format.js").contains(&"src/compat/legacy-bridge.ts".to_string()));
    let reach = graph.neighbours("src/main.ts", false, u32::MAX);
    assert!(reach.iter().any(|(p, _)| p == "src/orders/reservation.ts"), "BFS crosses the cycle and ends");
}
