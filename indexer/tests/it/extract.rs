//! Parsing under budgets, and symbol and import extraction: snapshots of the fixtures under
//! `fixtures/syntax/` plus generated pathological inputs (deep nesting, huge files, BOM, CRLF).

use std::fmt::Write as _;
use std::time::Duration;

use indexer::{Extracted, Language, ParseLimits, Parsed, Symbol, extract, parse};

/// Parses and extracts `text`, checking the invariants every extraction must hold.
fn analyze(language: Language, text: &str, limits: &ParseLimits) -> (Parsed, Extracted) {
    let parsed = parse(language, text, limits);
    let extracted = match &parsed.tree {
        Some(tree) => extract(language, text, tree),
        None => Extracted::default(),
    };
    check_invariants(text, &extracted.symbols);
    (parsed, extracted)
}

/// Order, nesting and range invariants the chunker relies on.
fn check_invariants(text: &str, symbols: &[Symbol]) {
    for (i, s) in symbols.iter().enumerate() {
        assert!(s.start_byte <= s.end_byte && s.end_byte <= text.len(), "{s:?} out of range");
        assert!(text.is_char_boundary(s.start_byte) && text.is_char_boundary(s.end_byte), "{s:?}");
        assert!(s.start_line >= 1 && s.start_line <= s.end_line, "{s:?} lines");
        assert!(!s.name.is_empty(), "{s:?} has no name");
        assert!(!s.signature.contains('\n') && s.signature.chars().count() <= 200, "{s:?}");
        if i > 0 {
            assert!(symbols[i - 1].start_byte <= s.start_byte, "symbols out of order at {i}");
        }
        // Siblings never overlap, so the chunker can tile them.
        if let Some(prev) = symbols[..i].iter().rev().find(|o| o.parent == s.parent) {
            assert!(prev.end_byte <= s.start_byte, "{prev:?} overlaps {s:?}");
        }
        match s.parent {
            Some(p) => {
                assert!(p < i, "parent after child at {i}");
                let parent = &symbols[p];
                assert!(parent.start_byte <= s.start_byte && s.end_byte <= parent.end_byte, "{s:?}");
                assert_eq!(s.qualified_name, format!("{}.{}", parent.qualified_name, s.name));
            }
            None => assert_eq!(s.qualified_name, s.name),
        }
    }
}

/// A readable table: diagnostics, then one line per symbol, then one line per import.
fn render(parsed: &Parsed, extracted: &Extracted) -> String {
    let mut out = String::new();
    for d in &parsed.diagnostics {
        writeln!(out, "diagnostic {} L{}: {}", d.code, d.line, d.message).unwrap();
    }
    if !parsed.diagnostics.is_empty() {
        out.push('\n');
    }
    for (i, s) in extracted.symbols.iter().enumerate() {
        let parent = s.parent.map_or_else(|| "-".to_owned(), |p| format!("#{p}"));
        let lines = format!("L{}-{}", s.start_line, s.end_line);
        let exported = if s.exported { "exported" } else { "-" };
        writeln!(
            out,
            "#{i:<3} {:<11} {:<32} {lines:<9} {exported:<8} parent={parent:<4} | {}",
            s.kind.name(),
            s.qualified_name,
            s.signature
        )
        .unwrap();
    }
    if !extracted.imports.is_empty() {
        out.push('\n');
    }
    for import in &extracted.imports {
        let names: Vec<String> = import
            .names
            .iter()
            .map(|n| match &n.alias {
                Some(alias) => format!("{} as {alias}", n.name),
                None => n.name.clone(),
            })
            .collect();
        writeln!(
            out,
            "{:<11} {:<28} L{:<3} [{}]",
            import.kind.name(),
            import.specifier,
            import.line,
            names.join(", ")
        )
        .unwrap();
    }
    out
}

/// Snapshots the extraction of `fixtures/syntax/<name>`.
fn check(name: &str) {
    let path = crate::fixture("syntax").join(name);
    let text = std::fs::read_to_string(&path).expect("fixture is readable");
    let language = Language::from_path(name).expect("fixture has a known extension");
    let (parsed, extracted) = analyze(language, &text, &ParseLimits::default());
    assert!(parsed.tree.is_some());
    insta::assert_snapshot!(name, render(&parsed, &extracted));
}

#[test]
fn symbols_ts() {
    check("symbols.ts");
}

#[test]
fn exports_ts() {
    check("exports.ts");
}

#[test]
fn export_default_forms() {
    check("export-default-fn.ts");
    check("export-default-class.ts");
    check("export-default-arrow.ts");
    check("export-default-name.ts");
    check("export-equals.ts");
}

#[test]
fn imports_ts() {
    check("imports.ts");
}

#[test]
fn commonjs_js() {
    check("commonjs.js");
}

#[test]
fn esm_mjs() {
    check("esm.mjs");
}

#[test]
fn component_tsx() {
    check("component.tsx");
}

#[test]
fn decorators_ts() {
    check("decorators.ts");
}

#[test]
fn namespaces_ts() {
    check("namespaces.ts");
}

#[test]
fn broken_syntax_gives_diagnostics_and_symbols() {
    check("broken.ts");
    let text = std::fs::read_to_string(crate::fixture("syntax").join("broken.ts")).unwrap();
    let (parsed, extracted) = analyze(Language::TypeScript, &text, &ParseLimits::default());
    assert!(parsed.diagnostics.iter().any(|d| d.code == "syntax_error" || d.code == "missing_node"));
    let names: Vec<&str> = extracted.symbols.iter().map(|s| s.name.as_str()).collect();
    for expected in ["ok", "StillFound"] {
        assert!(names.contains(&expected), "{expected} missing from {names:?}");
    }
}

#[test]
fn garbage_is_capped_and_does_not_panic() {
    let text = ") } ] ; = => :: @ # ".repeat(5_000);
    for language in Language::ALL {
        let (parsed, _) = analyze(language, &text, &ParseLimits::default());
        assert!(!parsed.diagnostics.is_empty());
        assert!(parsed.diagnostics.len() <= 100, "{} diagnostics", parsed.diagnostics.len());
    }
    // NUL bytes, lone surrogates' replacement characters, right-to-left marks and emoji in
    // identifiers and strings: whatever tree-sitter makes of them, ranges stay on char boundaries.
    let odd = "export const a = 1;\0\0 function \u{fffd}f() {}\nclass \u{200f}K { m\u{1f600}() {} }\n\
               export function ok() { return \"\u{1f600}\0\"; }\n";
    for language in Language::ALL {
        let (_, extracted) = analyze(language, odd, &ParseLimits::default());
        assert!(extracted.symbols.iter().any(|s| s.name == "a"), "{:?}", extracted.symbols);
    }
}

#[test]
fn deep_nesting_is_refused_before_parsing() {
    let depth = 50_000;
    let inputs = [
        format!("const x = {}1{};", "[".repeat(depth), "]".repeat(depth)),
        format!("f{}{}", "(".repeat(depth), ")".repeat(depth)),
        format!("function f() {}{}", "{".repeat(depth), "}".repeat(depth)),
        // Unbalanced: a truncated or hostile file.
        "{(".repeat(depth),
        format!("const el = {}{};", "<div>".repeat(depth), "</div>".repeat(depth)),
    ];
    for (i, text) in inputs.iter().enumerate() {
        let language = if i == 4 { Language::Tsx } else { Language::TypeScript };
        let parsed = parse(language, text, &ParseLimits::default());
        assert!(parsed.tree.is_none(), "input {i} was parsed");
        assert_eq!(parsed.diagnostics.len(), 1, "input {i}");
        assert_eq!(parsed.diagnostics[0].code, "too_deep", "input {i}");
        assert_eq!(parsed.diagnostics[0].line, 1);
    }
}

/// The extraction walk keeps its stacks on the heap: a tree hundreds of levels deep is walked
/// on a thread whose stack would overflow at a few hundred recursive frames.
#[test]
fn deep_trees_are_walked_without_recursion() {
    let depth = 500;
    // Nested named functions, each a symbol, four tree levels and two brackets per level.
    let mut text = String::new();
    for i in 0..depth {
        write!(text, "function f{i}(x) {{ if (x) {{ ").unwrap();
    }
    text.push_str("require(\"./leaf\");");
    for _ in 0..depth {
        text.push_str(" } }");
    }
    // Left-deep binary expressions have no brackets at all and build the deepest trees.
    text.push_str("\nconst sum = ");
    text.push_str(&vec!["1"; 20_000].join(" + "));
    text.push_str(";\n");
    let limits = ParseLimits { max_depth: 4 * depth, ..ParseLimits::default() };

    let handle = std::thread::Builder::new()
        .stack_size(256 * 1024)
        .spawn(move || {
            let (parsed, extracted) = analyze(Language::JavaScript, &text, &limits);
            assert!(parsed.tree.is_some(), "{:?}", parsed.diagnostics);
            (extracted.symbols.len(), extracted.imports.len(), extracted.symbols.last().cloned())
        })
        .expect("thread starts");
    let (symbols, imports, last) = handle.join().expect("no stack overflow");
    assert_eq!(imports, 1);
    // 500 nested functions plus the `sum` constant.
    assert_eq!(symbols, depth + 1);
    assert_eq!(last.map(|s| s.qualified_name), Some("sum".to_owned()));
}

#[test]
fn timeout_gives_a_diagnostic_and_no_tree() {
    let mut text = String::new();
    for i in 0..20_000 {
        writeln!(text, "export function f{i}(a: number): number {{ return a * {i} + g(a, [1, 2, 3]); }}")
            .unwrap();
    }
    let limits = ParseLimits { timeout: Duration::from_nanos(1), ..ParseLimits::default() };
    let parsed = parse(Language::TypeScript, &text, &limits);
    assert!(parsed.tree.is_none());
    assert_eq!(parsed.diagnostics.len(), 1);
    assert_eq!(parsed.diagnostics[0].code, "timeout");

    // The thread's reused parser is not left half-way through the cancelled parse.
    let parsed = parse(Language::TypeScript, "export const x = 1;", &ParseLimits::default());
    assert!(parsed.tree.is_some() && parsed.diagnostics.is_empty());
    let extracted = extract(Language::TypeScript, "export const x = 1;", parsed.tree.as_ref().unwrap());
    assert_eq!(extracted.symbols.len(), 1);
}

#[test]
fn empty_and_blank_files() {
    for text in ["", "\n\n", "   ", "// only a comment\n"] {
        for language in Language::ALL {
            let (parsed, extracted) = analyze(language, text, &ParseLimits::default());
            assert!(parsed.tree.is_some());
            assert!(parsed.diagnostics.is_empty(), "{text:?}: {:?}", parsed.diagnostics);
            assert_eq!(extracted, Extracted::default());
        }
    }
}

#[test]
fn bom_stripped_text_parses_cleanly() {
    let raw = "\u{feff}export function hello() {}\n";
    // The walk hands over text without its BOM.
    let text = raw.strip_prefix('\u{feff}').unwrap();
    let (parsed, extracted) = analyze(Language::TypeScript, text, &ParseLimits::default());
    assert!(parsed.diagnostics.is_empty());
    assert_eq!(extracted.symbols.len(), 1);
    assert_eq!(extracted.symbols[0].start_byte, 0);
    assert_eq!(extracted.symbols[0].signature, "export function hello() {}");

    // Text that still carries one does not crash and keeps byte ranges valid for it.
    let (_, extracted) = analyze(Language::TypeScript, raw, &ParseLimits::default());
    assert!(extracted.symbols.iter().all(|s| raw.is_char_boundary(s.start_byte)));
}

#[test]
fn crlf_text_has_the_same_lines_and_clean_signatures() {
    let lf = std::fs::read_to_string(crate::fixture("syntax").join("symbols.ts")).unwrap();
    let crlf = lf.replace('\n', "\r\n");
    let (p1, lf_out) = analyze(Language::TypeScript, &lf, &ParseLimits::default());
    let (p2, crlf_out) = analyze(Language::TypeScript, &crlf, &ParseLimits::default());
    assert!(p1.diagnostics.is_empty() && p2.diagnostics.is_empty(), "{:?}", p2.diagnostics);
    assert_eq!(lf_out.symbols.len(), crlf_out.symbols.len());
    for (a, b) in lf_out.symbols.iter().zip(&crlf_out.symbols) {
        assert_eq!(
            (&a.qualified_name, a.start_line, a.end_line),
            (&b.qualified_name, b.start_line, b.end_line)
        );
        assert_eq!(a.signature, b.signature);
        assert!(!b.signature.ends_with('\r'));
        assert_eq!(a.exported, b.exported);
    }
    assert_eq!(lf_out.imports, crlf_out.imports);
}

#[test]
fn long_signatures_are_capped_on_a_char_boundary() {
    let text = format!("export function f(a = \"{}\") {{}}", "é".repeat(300));
    let (_, extracted) = analyze(Language::TypeScript, &text, &ParseLimits::default());
    assert_eq!(extracted.symbols[0].signature.chars().count(), 200);
}

#[test]
fn every_language_parses_its_own_syntax() {
    let jsx = "const A = () => <div>{[1].map((x) => <b key={x}>{x}</b>)}</div>;";
    for (language, text) in [
        (Language::Tsx, jsx),
        (Language::JavaScript, jsx),
        (Language::TypeScript, "const x = <number>y; function g<T>(a: T): T { return a; }"),
    ] {
        let parsed = parse(language, text, &ParseLimits::default());
        assert!(parsed.diagnostics.is_empty(), "{language:?}: {:?}", parsed.diagnostics);
    }
}
