//! Parsing with tree-sitter under a time budget and a nesting budget. Parsing never fails: a file
//! tree-sitter struggles with gives a tree (or none) plus diagnostics, never an `Err` or a crash.
//!
//! Two budgets guard the indexer against hostile or generated input:
//! - **Nesting.** Before parsing, one linear pass estimates bracket (and, for JSX-capable
//!   languages, element) nesting. Beyond [`ParseLimits::max_depth`] the file is not parsed at all:
//!   tree-sitter itself copes, but every later consumer of the tree would have to be written for
//!   50,000-deep input, and such files are never hand-written code.
//! - **Time.** tree-sitter's progress callback checks a deadline and cancels the parse when it
//!   passes.
//!
//! Syntax errors do not stop anything: tree-sitter recovers, the tree keeps its `ERROR` and
//! `MISSING` nodes, and this module reports them (capped) as diagnostics.

use std::cell::RefCell;
use std::time::{Duration, Instant};

use tree_sitter::{Node, ParseOptions, ParseState, Parser, Tree};

use crate::lang::Language;

/// At most this many syntax diagnostics per file: past the first few, more say nothing new and a
/// garbage file would otherwise produce one per token.
const MAX_SYNTAX_DIAGNOSTICS: usize = 100;

/// Length of the source excerpt quoted in a syntax error message.
const EXCERPT_CHARS: usize = 40;

/// Budgets for one parse.
#[derive(Debug, Clone, Copy)]
pub struct ParseLimits {
    /// Wall-clock budget per file, enforced through tree-sitter's progress callback.
    pub timeout: Duration,
    /// Bracket nesting beyond this is refused before parsing: later tree walks would recurse too
    /// deep and such files are never hand-written code.
    pub max_depth: usize,
}

impl Default for ParseLimits {
    fn default() -> ParseLimits {
        ParseLimits { timeout: Duration::from_secs(5), max_depth: 1000 }
    }
}

/// A problem found while parsing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// Stable code: `syntax_error`, `missing_node`, `timeout`, `too_deep`.
    pub code: &'static str,
    pub message: String,
    /// 1-based line.
    pub line: u32,
}

/// The result of parsing: a tree when one could be built, and what went wrong.
#[derive(Debug)]
pub struct Parsed {
    pub tree: Option<tree_sitter::Tree>,
    pub diagnostics: Vec<Diagnostic>,
}

/// A parser and the language it is set to.
struct CachedParser {
    parser: Parser,
    language: Option<Language>,
}

thread_local! {
    /// One parser per rayon worker, reused across files: creating a parser allocates its stacks
    /// and lexer buffers, which is measurable on small files.
    static PARSER: RefCell<CachedParser> = RefCell::new(CachedParser { parser: Parser::new(), language: None });
}

/// Parses `text` as `language` within `limits`.
pub fn parse(language: Language, text: &str, limits: &ParseLimits) -> Parsed {
    if let Some(line) = exceeds_depth(language, text.as_bytes(), limits.max_depth) {
        return Parsed {
            tree: None,
            diagnostics: vec![Diagnostic {
                code: "too_deep",
                message: format!("nesting deeper than {} levels; the file is not parsed", limits.max_depth),
                line,
            }],
        };
    }

    let tree = PARSER.with(|cell| match cell.try_borrow_mut() {
        Ok(mut cached) => parse_with(&mut cached, language, text, limits.timeout),
        // Only reachable if parsing re-entered itself on this thread; a fresh parser keeps the
        // promise of never failing.
        Err(_) => {
            let mut fresh = CachedParser { parser: Parser::new(), language: None };
            parse_with(&mut fresh, language, text, limits.timeout)
        }
    });

    match tree {
        Ok(tree) => {
            let diagnostics = syntax_diagnostics(tree.root_node(), text);
            Parsed { tree: Some(tree), diagnostics }
        }
        Err(failure) => Parsed { tree: None, diagnostics: vec![failure] },
    }
}

/// Runs one parse with a deadline; the error is the diagnostic to report.
fn parse_with(
    cached: &mut CachedParser,
    language: Language,
    text: &str,
    timeout: Duration,
) -> Result<Tree, Diagnostic> {
    if cached.language != Some(language) {
        cached.language = None;
        if let Err(err) = cached.parser.set_language(&language.grammar()) {
            // A grammar built for an incompatible tree-sitter ABI; a unit test in `lang` catches
            // this, so it only happens with a broken build.
            return Err(Diagnostic {
                code: "syntax_error",
                message: format!("no usable {} grammar: {err}", language.name()),
                line: 1,
            });
        }
        cached.language = Some(language);
    }
    let parser = &mut cached.parser;
    let bytes = text.as_bytes();
    let started = Instant::now();
    // `checked_add` guards against `Duration::MAX` used as "no limit".
    let deadline = started.checked_add(timeout);
    let mut reached = 0usize;
    let mut progress = |state: &ParseState| {
        reached = state.current_byte_offset();
        // Returning true cancels the parse.
        deadline.is_some_and(|d| Instant::now() >= d)
    };
    let options = ParseOptions::new().progress_callback(&mut progress);
    let tree = parser.parse_with_options(
        &mut |offset: usize, _| bytes.get(offset..).unwrap_or_default(),
        None,
        Some(options),
    );
    match tree {
        Some(tree) => Ok(tree),
        None => {
            // A cancelled parser would otherwise try to resume this parse on its next call.
            parser.reset();
            let line = line_of(bytes, reached);
            Err(Diagnostic {
                code: "timeout",
                message: format!(
                    "parsing took longer than {} ms (stopped near byte {reached}); the file is not parsed",
                    timeout.as_millis()
                ),
                line,
            })
        }
    }
}

/// 1-based line of byte `offset`.
fn line_of(bytes: &[u8], offset: usize) -> u32 {
    let end = offset.min(bytes.len());
    (memchr::memchr_iter(b'\n', &bytes[..end]).count() + 1) as u32
}

/// Estimates the nesting depth of `bytes` in one pass and returns the 1-based line where it
/// first goes beyond `max_depth`, if it does.
///
/// The estimate counts `(`, `[` and `{` (which covers `${` in templates), skipping comments and
/// single-line strings, and for JSX-capable languages adds element nesting: `<Tag` or `<>` right
/// after a token that can start an expression opens, `</` and `/>` close. It is deliberately
/// rough: regular expressions and template text are not understood, and a JSX open it guesses
/// wrong never closes. Both errors are tiny next to the limit, which real code stays far below.
fn exceeds_depth(language: Language, bytes: &[u8], max_depth: usize) -> Option<u32> {
    let jsx = matches!(language, Language::Tsx | Language::JavaScript);
    let mut depth = 0usize;
    let mut line = 1u32;
    // The last byte that was not whitespace, to tell a JSX `<` from a comparison or generic.
    let mut prev = b'\n';
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if !DEPTH_SPECIAL[usize::from(b)] {
            // Most bytes only move `prev`: skip their run in a tight loop.
            let start = i;
            while i < bytes.len() && !DEPTH_SPECIAL[usize::from(bytes[i])] {
                i += 1;
            }
            if let Some(&last) = bytes[start..i].iter().rev().find(|b| !b.is_ascii_whitespace()) {
                prev = last;
            }
            continue;
        }
        match b {
            b'\n' => line += 1,
            b'(' | b'[' | b'{' => {
                depth += 1;
                if depth > max_depth {
                    return Some(line);
                }
            }
            b')' | b']' | b'}' => depth = depth.saturating_sub(1),
            // `//` right after `:` is a URL in JSX text, not a comment.
            b'/' if bytes.get(i + 1) == Some(&b'/') && (i == 0 || bytes[i - 1] != b':') => {
                i = memchr::memchr(b'\n', &bytes[i..]).map_or(bytes.len(), |n| i + n);
                continue;
            }
            b'/' if bytes.get(i + 1) == Some(&b'*') => {
                let end = memchr::memmem::find(&bytes[i + 2..], b"*/").map_or(bytes.len(), |n| i + 2 + n + 2);
                line += memchr::memchr_iter(b'\n', &bytes[i..end]).count() as u32;
                i = end;
                continue;
            }
            b'/' if jsx && bytes.get(i + 1) == Some(&b'>') => depth = depth.saturating_sub(1),
            // A quote right after a letter is an apostrophe in JSX text (`Don't`), not a string.
            b'\'' | b'"' if !(jsx && i > 0 && bytes[i - 1].is_ascii_alphanumeric()) => {
                // A string ends at its quote or, if unterminated (or an apostrophe in JSX text),
                // at the end of the line, so one stray quote cannot hide the rest of the file.
                let mut j = i + 1;
                while j < bytes.len() && bytes[j] != b && bytes[j] != b'\n' {
                    j += if bytes[j] == b'\\' { 2 } else { 1 };
                }
                prev = b;
                i = j.min(bytes.len()).saturating_add(usize::from(bytes.get(j) == Some(&b)));
                continue;
            }
            b'<' if jsx => match bytes.get(i + 1) {
                Some(b'/') => depth = depth.saturating_sub(1),
                Some(next)
                    if (next.is_ascii_alphabetic() || *next == b'>')
                        && matches!(
                            prev,
                            b'(' | b'{'
                                | b'['
                                | b','
                                | b'='
                                | b'>'
                                | b'?'
                                | b':'
                                | b'&'
                                | b'|'
                                | b'\n'
                                | b';'
                                | b'}'
                        ) =>
                {
                    depth += 1;
                    if depth > max_depth {
                        return Some(line);
                    }
                }
                _ => {}
            },
            _ => {}
        }
        if !b.is_ascii_whitespace() {
            prev = b;
        }
        i += 1;
    }
    None
}

/// The bytes [`exceeds_depth`] looks at: line breaks, brackets, slashes, quotes and `<`.
static DEPTH_SPECIAL: [bool; 256] = {
    let mut table = [false; 256];
    let special = b"\n([{)]}/'\"<";
    let mut k = 0;
    while k < special.len() {
        table[special[k] as usize] = true;
        k += 1;
    }
    table
};

/// Collects `ERROR` and `MISSING` nodes, capped, walking with a cursor (never recursion) and
/// entering only subtrees that contain an error, so a clean tree costs one check.
fn syntax_diagnostics(root: Node<'_>, text: &str) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    if !root.has_error() {
        return out;
    }
    let mut cursor = root.walk();
    loop {
        let node = cursor.node();
        let mut descend = node.has_error();
        if node.is_missing() {
            out.push(Diagnostic {
                code: "missing_node",
                message: format!("missing `{}`", node.kind()),
                line: node.start_position().row as u32 + 1,
            });
            descend = false;
        } else if node.is_error() {
            out.push(Diagnostic {
                code: "syntax_error",
                message: format!("unexpected `{}`", excerpt(text, node.start_byte(), node.end_byte())),
                line: node.start_position().row as u32 + 1,
            });
            // Errors nested in an error repeat it.
            descend = false;
        }
        if out.len() >= MAX_SYNTAX_DIAGNOSTICS {
            break;
        }
        if descend && cursor.goto_first_child() {
            continue;
        }
        // Next sibling, else the nearest ancestor's next sibling.
        loop {
            if cursor.goto_next_sibling() {
                break;
            }
            if !cursor.goto_parent() {
                return out;
            }
        }
    }
    out
}

/// The first line of `text[start..end]`, trimmed and shortened for a message.
fn excerpt(text: &str, start: usize, end: usize) -> String {
    let slice = text.get(start..end.min(text.len())).unwrap_or_default();
    let first = slice.lines().map(str::trim).find(|l| !l.is_empty()).unwrap_or_default();
    let mut out: String = first.chars().take(EXCERPT_CHARS).collect();
    if first.chars().nth(EXCERPT_CHARS).is_some() {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn depth_scan_skips_strings_and_comments() {
        let text = "const a = '((((('; // ((((\n/* [[[[ */ const b = \"{{{{\";";
        assert_eq!(exceeds_depth(Language::TypeScript, text.as_bytes(), 2), None);
        assert_eq!(exceeds_depth(Language::TypeScript, b"f(g(h(x)))", 2), Some(1));
    }

    #[test]
    fn depth_scan_counts_jsx_elements_but_not_generics() {
        // The parenthesis, `a`, `b` and the self-closing `c`: four levels.
        let jsx = "const x = (<a><b><c/></b></a>);";
        assert_eq!(exceeds_depth(Language::Tsx, jsx.as_bytes(), 4), None);
        assert_eq!(exceeds_depth(Language::Tsx, jsx.as_bytes(), 3), Some(1));
        let generic = "let m: Map<string, Array<number>> = new Map<string, Array<number>>(); if (a<b) {}";
        assert_eq!(exceeds_depth(Language::Tsx, generic.as_bytes(), 2), None);
    }

    #[test]
    fn jsx_text_does_not_skew_the_count() {
        // Apostrophes and URLs in JSX text must not hide closing tags: repeated, each would
        // leave the count one level too deep.
        let line = "<p>Don't miss https://example.com</p>\n";
        let text = format!("const x = <div>\n{}</div>;\nf(((x)));", line.repeat(50));
        assert_eq!(exceeds_depth(Language::Tsx, text.as_bytes(), 3), None);
        assert_eq!(exceeds_depth(Language::Tsx, text.as_bytes(), 2), Some(53));
    }
}
