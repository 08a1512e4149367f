//! Chunking: snapshots of the chunks of the inputs under `fixtures/chunking/`, property tests of
//! the tiling invariants with and without a syntax tree, the token budget, and the calibration of
//! `count_tokens` against the real cl100k tokenizer.
//!
//! Trees come straight from tree-sitter and symbols from a small walk in this file, so these
//! tests do not depend on `parse` and `extract`.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use indexer::{Chunk, ChunkKind, Chunker, ContentHash, Language, Symbol, SymbolKind, count_tokens};
use proptest::prelude::*;

use crate::fixture;

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

fn parse(language: Language, text: &str) -> tree_sitter::Tree {
    let mut parser = tree_sitter::Parser::new();
    parser.set_language(&language.grammar()).expect("grammar loads");
    parser.parse(text, None).expect("tree-sitter returns a tree without a timeout")
}

/// Functions, classes, methods, interfaces, enums, type aliases and functions bound to names,
/// with their nesting: enough to check symbol paths without `extract`.
fn symbols_of(tree: &tree_sitter::Tree, text: &str) -> Vec<Symbol> {
    fn kind_of(node: tree_sitter::Node<'_>) -> Option<SymbolKind> {
        let function_value = || {
            node.child_by_field_name("value")
                .is_some_and(|v| matches!(v.kind(), "arrow_function" | "function_expression"))
        };
        Some(match node.kind() {
            "function_declaration" => SymbolKind::Function,
            "class_declaration" | "abstract_class_declaration" => SymbolKind::Class,
            "method_definition" => SymbolKind::Method,
            "interface_declaration" => SymbolKind::Interface,
            "enum_declaration" => SymbolKind::Enum,
            "type_alias_declaration" => SymbolKind::TypeAlias,
            "variable_declarator" if function_value() => SymbolKind::Function,
            "public_field_definition" if function_value() => SymbolKind::Method,
            _ => return None,
        })
    }
    let mut symbols: Vec<Symbol> = Vec::new();
    // (node, index of the enclosing symbol)
    let mut stack = vec![(tree.root_node(), None::<usize>)];
    while let Some((node, parent)) = stack.pop() {
        let mut parent_here = parent;
        if let Some(kind) = kind_of(node) {
            let name = node
                .child_by_field_name("name")
                .map(|n| text[n.byte_range()].to_string())
                .unwrap_or_else(|| "<anonymous>".to_string());
            let qualified_name = match parent {
                Some(p) => format!("{}.{}", symbols[p].qualified_name, name),
                None => name.clone(),
            };
            symbols.push(Symbol {
                signature: text[node.byte_range()].lines().next().unwrap_or("").trim().to_string(),
                name,
                qualified_name,
                kind,
                start_line: node.start_position().row as u32 + 1,
                end_line: node.end_position().row as u32 + 1,
                start_byte: node.start_byte(),
                end_byte: node.end_byte(),
                exported: false,
                parent,
            });
            parent_here = Some(symbols.len() - 1);
        }
        let mut cursor = node.walk();
        let children: Vec<_> = node.named_children(&mut cursor).collect();
        for child in children.into_iter().rev() {
            stack.push((child, parent_here));
        }
    }
    symbols
}

/// A readable table of chunks: ordinal, lines, kind, tokens, symbol path, first line of text.
fn render(text: &str, chunks: &[Chunk]) -> String {
    let mut out = String::new();
    for c in chunks {
        let first = c.text(text).lines().next().unwrap_or("");
        let first: String = first.chars().take(60).collect();
        let path = if c.symbol_path.is_empty() { "-" } else { &c.symbol_path };
        writeln!(
            out,
            "{:>2} {:>3}-{:<3} {:<11} {:>3}t  {:<28} | {}",
            c.ordinal,
            c.start_line,
            c.end_line,
            c.kind.name(),
            c.token_count,
            path,
            first
        )
        .unwrap();
    }
    out
}

fn language_of(name: &str) -> Language {
    Language::from_path(name).expect("fixture has a TS/JS extension")
}

/// Chunks a file under `fixtures/chunking/` with its tree and symbols, checks the invariants
/// and returns the rendered table.
fn check(name: &str) -> String {
    check_with(name, &Chunker::default())
}

fn check_with(name: &str, chunker: &Chunker) -> String {
    let text = std::fs::read_to_string(fixture("chunking").join(name)).expect("fixture exists");
    let language = language_of(name);
    let tree = parse(language, &text);
    let symbols = symbols_of(&tree, &text);
    let chunks = chunker.chunk(language, &text, Some(&tree), &symbols);
    assert_invariants(&text, &chunks, chunker.max_tokens());
    assert_eq!(chunks, chunker.chunk(language, &text, Some(&tree), &symbols), "deterministic");
    render(&text, &chunks)
}

/// The chunker's contract, checked on any output.
fn assert_invariants(text: &str, chunks: &[Chunk], max_tokens: u32) {
    let mut position = 0;
    for (i, c) in chunks.iter().enumerate() {
        assert_eq!(c.ordinal as usize, i, "ordinals count up from 0");
        assert!(c.start_byte < c.end_byte, "chunk {i} is not empty");
        assert!(position <= c.start_byte, "chunk {i} starts after the previous one ends");
        assert!(
            text.is_char_boundary(c.start_byte) && text.is_char_boundary(c.end_byte),
            "chunk {i} on char boundaries"
        );
        let gap = &text[position..c.start_byte];
        assert!(gap.trim().is_empty(), "only whitespace before chunk {i}: {gap:?}");
        let body = c.text(text);
        assert_eq!(body.trim(), body, "chunk {i} starts and ends on non-whitespace");
        assert_eq!(c.token_count as usize, count_tokens(body), "chunk {i} token count");
        assert!(
            c.token_count <= max_tokens || c.start_line == c.end_line,
            "chunk {i} has {} tokens over {max_tokens} across lines {}-{}",
            c.token_count,
            c.start_line,
            c.end_line
        );
        let line_of =
            |byte: usize| text.as_bytes()[..byte].iter().filter(|&&b| b == b'\n').count() as u32 + 1;
        assert_eq!(c.start_line, line_of(c.start_byte), "chunk {i} start line");
        assert_eq!(c.end_line, line_of(c.end_byte - 1), "chunk {i} end line");
        assert_eq!(c.content_hash, ContentHash::of(body.as_bytes()), "chunk {i} hash");
        position = c.end_byte;
    }
    assert!(text[position..].trim().is_empty(), "only whitespace after the last chunk");
}

// ---------------------------------------------------------------------------------------------
// Snapshots
// ---------------------------------------------------------------------------------------------

#[test]
fn large_class_splits_into_member_runs() {
    let table = check("class_large.ts");
    insta::assert_snapshot!("class_large", table);
}

#[test]
fn small_functions_merge() {
    let table = check("small_functions.ts");
    insta::assert_snapshot!("small_functions", table);
}

#[test]
fn huge_function_splits_at_statements() {
    let table = check("huge_function.ts");
    insta::assert_snapshot!("huge_function", table);
}

#[test]
fn statements_only_file() {
    let table = check("statements.ts");
    insta::assert_snapshot!("statements", table);
}

#[test]
fn jsx_component() {
    let table = check("component.tsx");
    insta::assert_snapshot!("component", table);
}

#[test]
fn doc_comments_stay_with_their_symbol() {
    let table = check("doc_comments.ts");
    insta::assert_snapshot!("doc_comments", table);
    // A small budget splits the class: each method keeps its doc comment and decorator.
    let table = check_with("doc_comments.ts", &Chunker::builder().max_tokens(64).min_tokens(16).build());
    insta::assert_snapshot!("doc_comments_small_budget", table);
}

#[test]
fn without_a_tree_lines_are_packed() {
    let text = std::fs::read_to_string(fixture("chunking").join("class_large.ts")).unwrap();
    let chunker = Chunker::builder().max_tokens(200).build();
    let chunks = chunker.chunk(Language::TypeScript, &text, None, &[]);
    assert_invariants(&text, &chunks, 200);
    assert!(chunks.iter().all(|c| c.kind == ChunkKind::Lines));
    insta::assert_snapshot!("class_large_lines", render(&text, &chunks));
}

// ---------------------------------------------------------------------------------------------
// Targeted behaviour
// ---------------------------------------------------------------------------------------------

#[test]
fn empty_and_blank_text_give_no_chunks() {
    let chunker = Chunker::default();
    for text in ["", " ", "\n\n\t  \r\n", "\u{3000}\u{a0}"] {
        let tree = parse(Language::TypeScript, text);
        assert!(chunker.chunk(Language::TypeScript, text, Some(&tree), &[]).is_empty(), "{text:?}");
        assert!(chunker.chunk(Language::TypeScript, text, None, &[]).is_empty(), "{text:?}");
    }
}

#[test]
fn class_header_goes_with_the_first_part_and_doc_comment_with_its_method() {
    let text = std::fs::read_to_string(fixture("chunking").join("class_large.ts")).unwrap();
    let tree = parse(Language::TypeScript, &text);
    let symbols = symbols_of(&tree, &text);
    let chunks = Chunker::default().chunk(Language::TypeScript, &text, Some(&tree), &symbols);
    let parts: Vec<&Chunk> = chunks.iter().filter(|c| c.symbol_path.starts_with("LruCache")).collect();
    assert!(parts.len() >= 3, "the ~1500-token class is split: {}", render(&text, &chunks));
    let first = parts[0].text(&text);
    assert!(
        first.starts_with("/**\n * A size-bounded LRU cache"),
        "doc comment leads the first part: {first}"
    );
    assert!(first.contains("export class LruCache<K extends string, V> {"), "header in the first part");
    // Every method's doc comment is in the same chunk as the method's signature.
    for (doc, signature) in [
        ("/** Returns the value for `key`", "get(key: K): V | undefined {"),
        ("/** Drops every expired entry", "purgeExpired(): number {"),
        ("/** A stable fingerprint", "fingerprint(): string {"),
    ] {
        let holder = chunks.iter().find(|c| c.text(&text).contains(doc)).expect("doc comment chunked");
        assert!(holder.text(&text).contains(signature), "{doc} is chunked with {signature}");
    }
    let last = parts.last().unwrap().text(&text);
    assert!(last.ends_with('}'), "the class's closing brace ends its last part");
}

#[test]
fn small_functions_share_chunks_and_paths_name_single_symbols() {
    let text = std::fs::read_to_string(fixture("chunking").join("small_functions.ts")).unwrap();
    let tree = parse(Language::TypeScript, &text);
    let symbols = symbols_of(&tree, &text);
    let chunks = Chunker::default().chunk(Language::TypeScript, &text, Some(&tree), &symbols);
    let functions = symbols.iter().filter(|s| s.parent.is_none()).count();
    assert!(chunks.len() < functions, "{} chunks for {functions} functions", chunks.len());
    for c in &chunks {
        if c.kind == ChunkKind::Symbol {
            assert!(!c.symbol_path.is_empty(), "a whole symbol has a path");
        }
    }
}

#[test]
fn budget_is_configurable_and_respected() {
    let text = std::fs::read_to_string(fixture("chunking").join("huge_function.ts")).unwrap();
    let tree = parse(Language::TypeScript, &text);
    for max in [16, 40, 100, 300, 512, 2000] {
        let chunker = Chunker::builder().max_tokens(max).min_tokens(max / 8).build();
        let chunks = chunker.chunk(Language::TypeScript, &text, Some(&tree), &[]);
        assert_invariants(&text, &chunks, chunker.max_tokens());
        assert!(chunks.iter().all(|c| c.token_count <= chunker.max_tokens()), "max {max}");
    }
}

#[test]
fn every_fixture_respects_the_default_budget() {
    let chunker = Chunker::default();
    let files = code_files(&fixture(""));
    assert!(files.len() >= 12, "the chunking and token fixtures are found");
    for path in files {
        let Ok(text) = std::fs::read_to_string(&path) else { continue };
        let language = language_of(&path.to_string_lossy());
        let tree = parse(language, &text);
        let chunks = chunker.chunk(language, &text, Some(&tree), &symbols_of(&tree, &text));
        assert_invariants(&text, &chunks, chunker.max_tokens());
        let untreed = chunker.chunk(language, &text, None, &[]);
        assert_invariants(&text, &untreed, chunker.max_tokens());
    }
}

#[test]
fn an_overlong_line_is_cut_at_whitespace_and_a_long_word_stays_whole() {
    let words: Vec<String> = (0..400).map(|i| format!("word{i}")).collect();
    let word = "x".repeat(3000);
    let text = format!("const a = 1;\n{}\n{word}\nconst b = 2;\n", words.join(" "));
    let chunker = Chunker::builder().max_tokens(64).build();
    for tree in [None, Some(parse(Language::TypeScript, &text))] {
        let chunks = chunker.chunk(Language::TypeScript, &text, tree.as_ref(), &[]);
        assert_invariants(&text, &chunks, 64);
        let long: Vec<&Chunk> = chunks.iter().filter(|c| c.token_count > 64).collect();
        assert_eq!(long.len(), 1, "{}", render(&text, &chunks));
        assert_eq!(long[0].text(&text), word, "the whitespace-free run is one chunk");
        let line2: Vec<&Chunk> = chunks.iter().filter(|c| c.start_line == 2).collect();
        assert!(line2.len() > 1, "the long line of words is cut at whitespace");
    }
}

#[test]
fn deep_nesting_does_not_overflow_the_stack() {
    let depth = 20_000;
    let text = format!("const deep = {}1{};\n", "[".repeat(depth), "]".repeat(depth));
    let tree = parse(Language::JavaScript, &text);
    let chunker = Chunker::builder().max_tokens(64).build();
    let chunks = chunker.chunk(Language::JavaScript, &text, Some(&tree), &[]);
    assert_invariants(&text, &chunks, 64);
}

#[test]
fn a_tree_for_other_text_falls_back_to_lines() {
    let text = "function a() {\n  return 1;\n}\n";
    let other = "class VeryLongName { method() { return [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]; } }\n".repeat(3);
    let tree = parse(Language::TypeScript, &other);
    let chunks = Chunker::default().chunk(Language::TypeScript, text, Some(&tree), &[]);
    assert_invariants(text, &chunks, 512);
    assert!(!chunks.is_empty());
}

#[test]
fn symbol_path_is_the_chain_of_enclosing_symbols() {
    let text = "export class Outer {\n  /** doc */\n  inner(): number {\n    return 1;\n  }\n}\n";
    let tree = parse(Language::TypeScript, text);
    let symbols = symbols_of(&tree, text);
    // A budget so small that the method must be its own chunk.
    let chunker = Chunker::builder().max_tokens(16).min_tokens(1).build();
    let chunks = chunker.chunk(Language::TypeScript, text, Some(&tree), &symbols);
    assert_invariants(text, &chunks, 16);
    let method = chunks.iter().find(|c| c.text(text).contains("inner()")).unwrap();
    assert_eq!(method.symbol_path, "Outer > inner", "{}", render(text, &chunks));
    assert!(method.text(text).starts_with("/** doc */"));
    // Without symbols there is no path.
    let bare = chunker.chunk(Language::TypeScript, text, Some(&tree), &[]);
    assert!(bare.iter().all(|c| c.symbol_path.is_empty()));
}

// ---------------------------------------------------------------------------------------------
// Property tests
// ---------------------------------------------------------------------------------------------

/// Small TypeScript snippets, some malformed, to build code-like files from.
fn snippet() -> impl Strategy<Value = String> {
    let ident = "[a-z][a-zA-Z0-9]{0,12}";
    prop_oneof![
        (ident, 0u32..100_000).prop_map(|(n, v)| format!("const {n} = {v};")),
        (ident, "[a-zé ]{0,30}").prop_map(|(n, s)| format!("let {n}: string = \"{s}\";")),
        "[a-z ]{0,40}".prop_map(|s| format!("// {s}")),
        "[a-z ]{0,40}".prop_map(|s| format!("/** {s} */")),
        (ident, ident, 0u32..99)
            .prop_map(|(f, a, v)| format!("function {f}({a}: number) {{\n  return {a} + {v};\n}}")),
        (ident, prop::collection::vec((ident, 0u32..9), 0..12)).prop_map(|(c, members)| {
            let body: String = members
                .iter()
                .map(|(m, v)| format!("  /** {m} */\n  {m}(): number {{\n    return {v};\n  }}\n"))
                .collect();
            format!("export class C{c} {{\n{body}}}")
        }),
        (ident, prop::collection::vec(ident, 0..20)).prop_map(|(f, calls)| {
            let body: String =
                calls.iter().map(|c| format!("  if ({c}) {{\n    {c}({c}, 1);\n  }}\n")).collect();
            format!("export const {f} = async () => {{\n{body}}};")
        }),
        (ident, "[a-z]{0,8}").prop_map(|(t, s)| format!("<{t} a=\"{s}\">{{x}} text</{t}>;")),
        "[{}()\\[\\];,=<>\"'`/*]{1,6}".prop_map(String::from),
        Just("\u{1F600} 中文 — ünïcode".to_string()),
        Just(String::new()),
    ]
}

fn code_like_file() -> impl Strategy<Value = String> {
    let separator = prop_oneof![Just("\n"), Just("\n\n"), Just(" "), Just("\r\n"), Just("\n    "), Just("")];
    prop::collection::vec((snippet(), separator), 0..40)
        .prop_map(|parts| parts.into_iter().map(|(s, sep)| s + sep).collect())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    #[test]
    fn chunks_tile_code_with_a_tree(text in code_like_file(), max in 16u32..200, tsx in any::<bool>()) {
        let language = if tsx { Language::Tsx } else { Language::TypeScript };
        let tree = parse(language, &text);
        let symbols = symbols_of(&tree, &text);
        let chunker = Chunker::builder().max_tokens(max).min_tokens(max / 4).build();
        let chunks = chunker.chunk(language, &text, Some(&tree), &symbols);
        assert_invariants(&text, &chunks, chunker.max_tokens());
        prop_assert_eq!(&chunks, &chunker.chunk(language, &text, Some(&tree), &symbols));
    }

    #[test]
    fn chunks_tile_code_without_a_tree(text in code_like_file(), max in 16u32..200) {
        let chunker = Chunker::builder().max_tokens(max).build();
        let chunks = chunker.chunk(Language::JavaScript, &text, None, &[]);
        assert_invariants(&text, &chunks, chunker.max_tokens());
        prop_assert!(chunks.iter().all(|c| c.kind == ChunkKind::Lines));
        prop_assert_eq!(&chunks, &chunker.chunk(Language::JavaScript, &text, None, &[]));
    }

    #[test]
    fn chunks_tile_arbitrary_text(text in any::<String>(), max in 16u32..100) {
        let chunker = Chunker::builder().max_tokens(max).build();
        let chunks = chunker.chunk(Language::JavaScript, &text, None, &[]);
        assert_invariants(&text, &chunks, chunker.max_tokens());
        // A tree of arbitrary text is mostly ERROR nodes: the chunker copes all the same.
        let tree = parse(Language::JavaScript, &text);
        let chunks = chunker.chunk(Language::JavaScript, &text, Some(&tree), &[]);
        assert_invariants(&text, &chunks, chunker.max_tokens());
    }

    #[test]
    fn count_tokens_is_bounded_by_bytes(text in any::<String>()) {
        let tokens = count_tokens(&text);
        prop_assert_eq!(tokens == 0, text.is_empty());
        // cl100k never uses more tokens than bytes; the estimate stays within its margin of that.
        prop_assert!(tokens <= text.len() * 6 / 5 + 1, "{} tokens for {} bytes", tokens, text.len());
    }
}

// ---------------------------------------------------------------------------------------------
// Token counting against the real cl100k tokenizer
// ---------------------------------------------------------------------------------------------

/// TypeScript and JavaScript files under `dir`, recursively, not following symlinks, in order.
fn code_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else { continue };
        for entry in entries.flatten() {
            let path = entry.path();
            let Ok(meta) = std::fs::symlink_metadata(&path) else { continue };
            if meta.is_dir() {
                pending.push(path);
            } else if meta.is_file()
                && meta.len() <= 1 << 20
                && Language::from_path(&path.to_string_lossy()).is_some()
            {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

/// The estimate must not undercount by more than 5% nor overcount by more than 50%.
const LOWER: f64 = 0.95;
const UPPER: f64 = 1.5;
/// Minified text (which the walker skips before chunking) is held to a looser lower bound: its
/// random short names are rare words to cl100k.
const LOWER_MINIFIED: f64 = 0.85;

#[test]
fn tokens_track_cl100k_on_fixtures() {
    let bpe = tiktoken_rs::cl100k_base().expect("cl100k ranks are embedded in tiktoken-rs");
    let mut checked = Vec::new();
    let mut failures = Vec::new();
    let mut check_sample = |label: String, sample: &str, lower: f64| {
        let real = bpe.encode_ordinary(sample).len();
        // Ratios of tiny samples are noise: one token either way is a large fraction.
        if real < 40 {
            return;
        }
        let estimate = count_tokens(sample);
        let ratio = estimate as f64 / real as f64;
        if !(lower..=UPPER).contains(&ratio) {
            failures.push(format!("{label}: estimate {estimate}, cl100k {real}, ratio {ratio:.3}"));
        }
        checked.push((label, ratio));
    };
    for path in code_files(&fixture("")) {
        let Ok(text) = std::fs::read_to_string(&path) else { continue };
        let minified = text.lines().any(|l| l.len() > 1000);
        let lower = if minified { LOWER_MINIFIED } else { LOWER };
        check_sample(path.display().to_string(), &text, lower);
        // Chunk-sized windows of this crate's own samples too: 30 lines at a time.
        let own = path.starts_with(fixture("tokens")) || path.starts_with(fixture("chunking"));
        if own && !minified {
            let lines: Vec<&str> = text.split_inclusive('\n').collect();
            for (k, window) in lines.chunks(30).enumerate() {
                check_sample(format!("{} lines {}..", path.display(), k * 30 + 1), &window.concat(), lower);
            }
        }
    }
    let samples = checked.len();
    assert!(samples >= 20, "the token fixtures are found ({samples} samples)");
    assert!(failures.is_empty(), "estimates out of [{LOWER}, {UPPER}] x cl100k:\n{}", failures.join("\n"));
    // On average the estimate must be above the real count, but not by much.
    let mean = checked.iter().map(|(_, r)| r).sum::<f64>() / samples as f64;
    assert!((1.0..1.35).contains(&mean), "mean ratio {mean:.3}");
}

#[test]
fn tokens_of_known_strings() {
    let bpe = tiktoken_rs::cl100k_base().unwrap();
    for text in [
        "hello world",
        "const x = 1;",
        "    return this.items.filter((item) => item.id !== id);\n",
        "getElementById XMLHttpRequest MAX_RETRY_COUNT",
        "// ============================================================\n",
        "naïve café — 中文注释 🚀",
        "0x7fffffff 3.14159 1e-10",
    ] {
        let real = bpe.encode_ordinary(text).len();
        let estimate = count_tokens(text);
        assert!(estimate >= real && estimate <= real * 2 + 1, "{text:?}: estimate {estimate}, cl100k {real}");
    }
}

#[test]
fn a_comment_and_an_oversized_line_stay_apart() {
    // Found by `chunks_tile_code_with_a_tree`: a short comment line before a JSX-like line
    // whose tokens alone exceed the budget.
    let text = "// a  a\n    <a0A0aAAaA a=\"a\">{x} text</a0A0aAAaA>;\n";
    let tree = parse(Language::TypeScript, text);
    let symbols = symbols_of(&tree, text);
    let chunker = Chunker::builder().max_tokens(35).min_tokens(8).build();
    let chunks = chunker.chunk(Language::TypeScript, text, Some(&tree), &symbols);
    assert_invariants(text, &chunks, chunker.max_tokens());
    assert_eq!(chunks.len(), 2, "{}", render(text, &chunks));
}
