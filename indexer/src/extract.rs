//! Extraction of symbols, imports and exports from a syntax tree.
//!
//! One pre-order walk with a [`tree_sitter::TreeCursor`] keeps the ancestors and the enclosing
//! symbols on explicit stacks, so nesting depth costs heap, never call stack. At each named node
//! the walk looks up the node's kind in the language's *rules table* (kind → handler, resolved
//! to kind ids once per language) and runs the handler, which emits symbols and imports through
//! the [`Walker`]'s small API (`emit`, `bind`, `mark_exported`, `import`, `opaque`). Subtrees in
//! which no *landmark* word starts (`function`, `class`, `=>`, `require` ...) are not entered,
//! which skips most expressions and function bodies; inside an anonymous function, whose
//! declarations are locals, only the words of module loads and exports count. Export flags,
//! overload signatures and order are settled once at the end.
//!
//! **Adding a language** (Python, Rust, Go ...): add its variant and grammar in `lang.rs`, then a
//! module beside `extract/ecmascript.rs` holding a `RULES` table of `(node kind, handler)` pairs,
//! its `LANDMARKS` words (with the `local_words` of whatever its handlers still record inside an
//! anonymous function) and the handlers: a declaration handler reads the name field and calls
//! `Walker::emit` (the walker computes parents, qualified names, lines and signatures); an
//! import handler calls `Walker::import`; function-like nodes that are not symbols call
//! `Walker::opaque` so their locals stay out. Finally map the language to both in [`rules`].
//! Nothing else changes: parse, chunk and pipeline only see [`Symbol`] and [`Import`].
//!
//! Choices for TypeScript and JavaScript (see `extract/ecmascript.rs`):
//! - Symbol ranges include decorators and the `export`/`declare` keywords, so the chunker keeps
//!   them together; leading doc comments are not included (the chunker attaches them).
//! - Module-level `const`s are symbols even when not exported (configuration values and tables
//!   are worth finding); module-level `let`/`var` and `const x = require(..)` only when exported.
//! - Functions and classes declared inside an *anonymous* function (a callback, a test body) are
//!   locals and are left out; inside a named function or method they are its children.

mod ecmascript;

use std::collections::{HashMap, HashSet};
use std::sync::OnceLock;

use tree_sitter::{Node, Point, TreeCursor};

use crate::lang::{Language, NodeExt};

/// What kind of declaration a symbol is. Stored as [`SymbolKind::name`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SymbolKind {
    Function,
    Class,
    Method,
    Constructor,
    Getter,
    Setter,
    Property,
    Interface,
    TypeAlias,
    Enum,
    Namespace,
    Variable,
    Constant,
}

impl SymbolKind {
    pub const ALL: [SymbolKind; 13] = [
        SymbolKind::Function,
        SymbolKind::Class,
        SymbolKind::Method,
        SymbolKind::Constructor,
        SymbolKind::Getter,
        SymbolKind::Setter,
        SymbolKind::Property,
        SymbolKind::Interface,
        SymbolKind::TypeAlias,
        SymbolKind::Enum,
        SymbolKind::Namespace,
        SymbolKind::Variable,
        SymbolKind::Constant,
    ];

    /// The stable lowercase name stored in the database.
    pub fn name(self) -> &'static str {
        match self {
            SymbolKind::Function => "function",
            SymbolKind::Class => "class",
            SymbolKind::Method => "method",
            SymbolKind::Constructor => "constructor",
            SymbolKind::Getter => "getter",
            SymbolKind::Setter => "setter",
            SymbolKind::Property => "property",
            SymbolKind::Interface => "interface",
            SymbolKind::TypeAlias => "type_alias",
            SymbolKind::Enum => "enum",
            SymbolKind::Namespace => "namespace",
            SymbolKind::Variable => "variable",
            SymbolKind::Constant => "constant",
        }
    }

    /// The kind with the given stable name.
    pub fn from_name(name: &str) -> Option<SymbolKind> {
        SymbolKind::ALL.into_iter().find(|k| k.name() == name)
    }
}

/// A declaration in a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Symbol {
    pub name: String,
    /// Dotted path through enclosing symbols: `UserService.createUser`.
    pub qualified_name: String,
    pub kind: SymbolKind,
    /// The declaration's first line, trimmed.
    pub signature: String,
    /// 1-based, inclusive.
    pub start_line: u32,
    pub end_line: u32,
    /// Byte range in the file text, end exclusive.
    pub start_byte: usize,
    pub end_byte: usize,
    /// Exported from its module (`export`, `export default`, `export =`, `module.exports`,
    /// `exports.x`, or a member of an exported class/namespace).
    pub exported: bool,
    /// Index of the enclosing symbol in the same list.
    pub parent: Option<usize>,
}

/// How a module refers to another. Stored as [`ImportKind::name`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ImportKind {
    /// `import x from`, `import { a }`, `import * as ns`.
    Static,
    /// `import type { T }` (or every name type-only).
    TypeOnly,
    /// `import "./polyfill"`.
    SideEffect,
    /// `import("./lazy")`.
    Dynamic,
    /// `require("./x")` and `import x = require("./x")`.
    Require,
    /// `export { a } from`, `export * from`, `export * as ns from`.
    ReExport,
}

impl ImportKind {
    /// The stable lowercase name stored in the database.
    pub fn name(self) -> &'static str {
        match self {
            ImportKind::Static => "static",
            ImportKind::TypeOnly => "type_only",
            ImportKind::SideEffect => "side_effect",
            ImportKind::Dynamic => "dynamic",
            ImportKind::Require => "require",
            ImportKind::ReExport => "re_export",
        }
    }

    /// The kind with the given stable name.
    pub fn from_name(name: &str) -> Option<ImportKind> {
        [
            ImportKind::Static,
            ImportKind::TypeOnly,
            ImportKind::SideEffect,
            ImportKind::Dynamic,
            ImportKind::Require,
            ImportKind::ReExport,
        ]
        .into_iter()
        .find(|k| k.name() == name)
    }
}

/// One name brought in by an import: `default`, `*` for a namespace or `export *`, or a
/// named binding, with its local alias when renamed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportedName {
    pub name: String,
    pub alias: Option<String>,
}

/// An import, re-export, `require()` or dynamic `import()` of a module.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Import {
    /// The module specifier as written (`./user`, `@app/core`, `react`).
    pub specifier: String,
    pub kind: ImportKind,
    pub names: Vec<ImportedName>,
    /// 1-based line of the statement.
    pub line: u32,
}

/// Everything extracted from one file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Extracted {
    /// In source order (by start byte); parents come before children.
    pub symbols: Vec<Symbol>,
    /// In source order.
    pub imports: Vec<Import>,
}

/// Extracts symbols and imports. Never recurses on the tree (it uses a cursor), so deep trees
/// cannot exhaust the stack.
pub fn extract(language: Language, text: &str, tree: &tree_sitter::Tree) -> Extracted {
    let rules = rules(language);
    let mut walker = Walker::new(text);
    walker.run(rules, tree.root_node());
    walker.finish()
}

/// The rules table of a language, built once: a handler per node kind id.
fn rules(language: Language) -> &'static Rules {
    static TS: OnceLock<Rules> = OnceLock::new();
    static TSX: OnceLock<Rules> = OnceLock::new();
    static JS: OnceLock<Rules> = OnceLock::new();
    let (cell, table, landmarks) = match language {
        Language::TypeScript => (&TS, ecmascript::RULES, &ecmascript::LANDMARKS),
        Language::Tsx => (&TSX, ecmascript::RULES, &ecmascript::LANDMARKS),
        Language::JavaScript => (&JS, ecmascript::RULES, &ecmascript::LANDMARKS),
    };
    cell.get_or_init(|| Rules::new(&language.grammar(), table, landmarks))
}

/// Whether the walk enters a node's children.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Descend {
    Yes,
    No,
}

/// What the walk runs at a node of one kind.
pub(crate) type Handler = for<'w, 's, 't> fn(&'w mut Walker<'s, 't>, &Visit<'t>) -> Descend;

/// A language's handlers indexed by node kind id.
struct Rules {
    by_kind: Vec<Option<Handler>>,
    landmarks: &'static LandmarkSpec,
}

impl Rules {
    /// Resolves a `(kind name, handler)` table against a grammar. Every id carrying a named kind
    /// is mapped, because grammars alias several ids to one visible kind name.
    fn new(
        grammar: &tree_sitter::Language,
        table: &[(&str, Handler)],
        landmarks: &'static LandmarkSpec,
    ) -> Rules {
        let count = grammar.node_kind_count();
        let mut by_kind = vec![None; count];
        for (id, slot) in by_kind.iter_mut().enumerate() {
            let Ok(id) = u16::try_from(id) else { break };
            if !grammar.node_kind_is_named(id) {
                continue;
            }
            let Some(kind) = grammar.node_kind_for_id(id) else { continue };
            *slot = table.iter().find(|(name, _)| *name == kind).map(|(_, handler)| *handler);
        }
        Rules { by_kind, landmarks }
    }

    /// The handler for a named node.
    fn handler(&self, node: &Node<'_>) -> Option<Handler> {
        self.by_kind.get(usize::from(node.kind_id())).copied().flatten()
    }
}

/// The node being visited, with where it sits.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Visit<'t> {
    pub node: Node<'t>,
    /// Root is 0.
    pub depth: usize,
    /// The field the node fills in its parent (`name`, `value` ...).
    pub field: Option<&'static str>,
    /// Start of a run of preceding siblings that belong to this node (decorators in a TypeScript
    /// class body), set by [`Walker::lead`].
    pub lead: Option<Pos>,
}

/// A position in the text: byte offset and tree-sitter point.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Pos {
    pub byte: usize,
    pub point: Point,
}

impl Pos {
    pub fn start(node: &Node<'_>) -> Pos {
        Pos { byte: node.start_byte(), point: node.start_position() }
    }

    pub fn end(node: &Node<'_>) -> Pos {
        Pos { byte: node.end_byte(), point: node.end_position() }
    }
}

/// Which symbols survive the end of the walk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Keep {
    Always,
    /// Only when something exports it (`let` at module level, `const x = require(..)`).
    IfExported,
    /// An overload or ambient signature: dropped when an implementation of the same name exists
    /// beside it.
    UnlessImplemented,
}

/// A declaration a handler found.
#[derive(Debug, Clone)]
pub(crate) struct Decl {
    pub name: String,
    pub kind: SymbolKind,
    /// The whole declaration, decorators and `export` included.
    pub start: Pos,
    pub end: Pos,
    /// Where the signature line starts (after decorators).
    pub sig_start: usize,
    /// Carries its own `export` (or equivalent).
    pub explicit_export: bool,
    /// Declared in an ambient context (`declare`), where every member is visible.
    pub ambient: bool,
    pub keep: Keep,
    /// Symbols found inside become its children.
    pub opens_scope: bool,
}

/// A symbol to emit when the walk reaches a given node: `const f = () => ..` is seen at the
/// declarator but its scope is the arrow function.
#[derive(Debug, Clone)]
struct Binding {
    /// Where the bound node starts, so the walk does not skip past it.
    start: usize,
    decl: Decl,
}

/// An enclosing node that owns the symbols found inside it.
#[derive(Debug, Clone, Copy)]
struct Scope {
    depth: usize,
    /// `None` for an anonymous function: declarations inside are locals, not symbols.
    symbol: Option<usize>,
}

/// A symbol under construction, with what the end of the walk needs to settle it.
#[derive(Debug, Clone)]
struct Draft {
    symbol: Symbol,
    explicit_export: bool,
    ambient: bool,
    keep: Keep,
}

/// The walk's state; handlers drive it through the `pub(crate)` methods.
pub(crate) struct Walker<'s, 't> {
    text: &'s str,
    /// The visited node and its ancestors: `path[d]` is the node at depth `d`.
    path: Vec<Node<'t>>,
    scopes: Vec<Scope>,
    drafts: Vec<Draft>,
    imports: Vec<Import>,
    /// Module-level names exported by a separate statement (`export { a }`, `module.exports`).
    exported_names: HashSet<String>,
    /// Symbols to emit at a later node, keyed by node id.
    bindings: HashMap<usize, Binding>,
    /// A pending run of leading siblings: (parent node id, start).
    lead: Option<(usize, Pos)>,
}

impl<'s, 't> Walker<'s, 't> {
    fn new(text: &'s str) -> Walker<'s, 't> {
        Walker {
            text,
            path: Vec::new(),
            scopes: Vec::new(),
            drafts: Vec::new(),
            imports: Vec::new(),
            exported_names: HashSet::new(),
            bindings: HashMap::new(),
            lead: None,
        }
    }

    /// The pre-order walk: a cursor plus explicit depth, never recursion.
    fn run(&mut self, rules: &Rules, root: Node<'t>) {
        let landmarks = Landmarks::find(self.text, rules.landmarks);
        let mut cursor = root.walk();
        let mut depth = 0usize;
        loop {
            let node = cursor.node();
            // Anonymous nodes are punctuation and keywords: nothing to extract in or under them.
            if node.is_named() {
                let descend = self.visit(rules, &cursor, node, depth);
                if descend == Descend::Yes && !self.skippable(&node, &landmarks) && cursor.goto_first_child()
                {
                    depth += 1;
                    continue;
                }
            }
            loop {
                if cursor.goto_next_sibling() {
                    break;
                }
                if !cursor.goto_parent() {
                    return;
                }
                depth -= 1;
            }
        }
    }

    fn visit(&mut self, rules: &Rules, cursor: &TreeCursor<'t>, node: Node<'t>, depth: usize) -> Descend {
        // Scopes opened at this depth or deeper belong to nodes the walk has left.
        while self.scopes.last().is_some_and(|s| s.depth >= depth) {
            self.scopes.pop();
        }
        self.path.truncate(depth);
        self.path.push(node);

        let mut lead = None;
        if let Some((parent_id, pos)) = self.lead
            && !node.is_extra()
            && depth > 0
            && self.path[depth - 1].id() == parent_id
        {
            // The first named sibling after the run owns it, whatever handler it has.
            lead = Some(pos);
            self.lead = None;
        }

        if !self.bindings.is_empty()
            && let Some(binding) = self.bindings.remove(&node.id())
        {
            let visit = Visit { node, depth, field: node.field_name(cursor.field_id()), lead };
            if self.emit(&visit, binding.decl).is_none() {
                self.opaque(&visit);
            }
            return Descend::Yes;
        }
        match rules.handler(&node) {
            Some(handler) => {
                handler(self, &Visit { node, depth, field: node.field_name(cursor.field_id()), lead })
            }
            None => Descend::Yes,
        }
    }

    /// Whether the children of `node` (already visited) can be skipped because no landmark of
    /// anything extractable starts inside it. Inside a function body only nested functions,
    /// classes, type declarations, module loads and CommonJS exports matter; at module level
    /// declarations too; inside an anonymous function, whose declarations are locals, only
    /// module loads and exports. A class body is always entered: its members carry no keyword.
    /// Most of a file's expressions and function bodies are skipped this way, which keeps
    /// extraction cheap next to parsing.
    fn skippable(&self, node: &Node<'_>, landmarks: &Landmarks) -> bool {
        let offsets = match self.scopes.last() {
            None => &landmarks.all,
            Some(Scope { symbol: None, .. }) => &landmarks.local,
            Some(Scope { symbol: Some(i), .. }) => match self.drafts[*i].symbol.kind {
                SymbolKind::Class => return false,
                SymbolKind::Function
                | SymbolKind::Method
                | SymbolKind::Constructor
                | SymbolKind::Getter
                | SymbolKind::Setter => &landmarks.inner,
                _ => &landmarks.all,
            },
        };
        let (start, end) = (node.start_byte(), node.end_byte());
        !Landmarks::any_within(offsets, start, end)
            && !self.bindings.values().any(|b| (start..end).contains(&b.start))
    }

    /// The source text of `node` (empty if its range is not in the text).
    pub fn node_text(&self, node: &Node<'_>) -> &'s str {
        self.text.get(node.start_byte()..node.end_byte()).unwrap_or_default()
    }

    /// The ancestor `up` levels above the visited node (1 is the parent).
    pub fn ancestor(&self, visit: &Visit<'_>, up: usize) -> Option<Node<'t>> {
        visit.depth.checked_sub(up).and_then(|d| self.path.get(d)).copied()
    }

    /// The innermost enclosing symbol, if the innermost scope is one.
    pub fn scope_symbol(&self) -> Option<(SymbolKind, usize)> {
        let scope = self.scopes.last()?;
        let index = scope.symbol?;
        Some((self.drafts[index].symbol.kind, scope.depth))
    }

    /// Whether the visited node is at module level or directly in a namespace.
    pub fn at_module_scope(&self) -> bool {
        match self.scopes.last() {
            None => true,
            Some(Scope { symbol: Some(i), .. }) => self.drafts[*i].symbol.kind == SymbolKind::Namespace,
            Some(Scope { symbol: None, .. }) => false,
        }
    }

    /// Whether the innermost enclosing symbol was declared in an ambient context.
    pub fn in_ambient(&self) -> bool {
        self.scopes.last().and_then(|s| s.symbol).is_some_and(|i| self.drafts[i].ambient)
    }

    /// Starts (or continues) a run of siblings that belongs to the next named sibling.
    pub fn lead(&mut self, visit: &Visit<'_>) {
        let Some(parent) = self.ancestor(visit, 1) else { return };
        match self.lead {
            Some((id, _)) if id == parent.id() => {}
            _ => self.lead = Some((parent.id(), Pos::start(&visit.node))),
        }
    }

    /// Records a symbol at the visited node. Returns its index, or `None` when the node sits in
    /// an anonymous function (a local, not a symbol).
    pub fn emit(&mut self, visit: &Visit<'_>, decl: Decl) -> Option<usize> {
        let parent = match self.scopes.last() {
            None => None,
            Some(Scope { symbol: None, .. }) => return None,
            Some(Scope { symbol: Some(i), .. }) => Some(*i),
        };
        let qualified_name = match parent {
            Some(p) => format!("{}.{}", self.drafts[p].symbol.qualified_name, decl.name),
            None => decl.name.clone(),
        };
        let signature = signature(self.text, decl.sig_start, decl.end.byte);
        let index = self.drafts.len();
        self.drafts.push(Draft {
            symbol: Symbol {
                name: decl.name,
                qualified_name,
                kind: decl.kind,
                signature,
                start_line: decl.start.point.row as u32 + 1,
                end_line: end_line(decl.start, decl.end),
                start_byte: decl.start.byte,
                end_byte: decl.end.byte,
                exported: false,
                parent,
            },
            explicit_export: decl.explicit_export,
            ambient: decl.ambient || parent.is_some_and(|p| self.drafts[p].ambient),
            keep: decl.keep,
        });
        if decl.opens_scope {
            self.scopes.push(Scope { depth: visit.depth, symbol: Some(index) });
        }
        Some(index)
    }

    /// Emits `decl` when the walk reaches `node` (a descendant of the visited node).
    pub fn bind(&mut self, node: &Node<'_>, decl: Decl) {
        self.bindings.insert(node.id(), Binding { start: node.start_byte(), decl });
    }

    /// Marks the visited node as an anonymous function: declarations inside are locals.
    pub fn opaque(&mut self, visit: &Visit<'_>) {
        self.scopes.push(Scope { depth: visit.depth, symbol: None });
    }

    /// Marks a module-level name as exported by a separate statement.
    pub fn mark_exported(&mut self, name: &str) {
        if !self.exported_names.contains(name) {
            self.exported_names.insert(name.to_owned());
        }
    }

    /// Records an import.
    pub fn import(&mut self, import: Import) {
        self.imports.push(import);
    }

    /// Settles export flags, drops unexported candidates and implemented signatures, and orders
    /// symbols by start with parents first.
    fn finish(self) -> Extracted {
        let Walker { drafts, imports, exported_names, .. } = self;

        // Overload signatures give way to the implementation beside them.
        let implemented: HashSet<(Option<usize>, &str, SymbolKind)> = drafts
            .iter()
            .filter(|d| d.keep != Keep::UnlessImplemented)
            .map(|d| (d.symbol.parent, d.symbol.name.as_str(), d.symbol.kind))
            .collect();

        // Parents come before children, so a parent's flag is final when its children are seen.
        let mut exported = vec![false; drafts.len()];
        for (i, d) in drafts.iter().enumerate() {
            exported[i] = match d.symbol.parent {
                None => d.explicit_export || exported_names.contains(&d.symbol.name),
                Some(p) => match drafts[p].symbol.kind {
                    SymbolKind::Class => exported[p],
                    SymbolKind::Namespace => exported[p] && (d.explicit_export || drafts[p].ambient),
                    _ => false,
                },
            };
        }

        let keep: Vec<bool> = drafts
            .iter()
            .enumerate()
            .map(|(i, d)| match d.keep {
                Keep::Always => true,
                // `export let` inside a namespace nobody exports still says it matters.
                Keep::IfExported => exported[i] || d.explicit_export,
                Keep::UnlessImplemented => {
                    !implemented.contains(&(d.symbol.parent, d.symbol.name.as_str(), d.symbol.kind))
                }
            })
            .collect();

        // Order kept symbols by start (stable, so a parent sharing its child's start stays first)
        // and renumber parents; a dropped parent hands its children to its own parent.
        let mut order: Vec<usize> = (0..drafts.len()).filter(|&i| keep[i]).collect();
        order.sort_by_key(|&i| drafts[i].symbol.start_byte);
        let mut new_index = vec![None; drafts.len()];
        for (new, &old) in order.iter().enumerate() {
            new_index[old] = Some(new);
        }
        let symbols = order
            .iter()
            .map(|&old| {
                let mut symbol = drafts[old].symbol.clone();
                symbol.exported = exported[old];
                let mut parent = symbol.parent;
                while let Some(p) = parent {
                    if new_index[p].is_some() {
                        break;
                    }
                    parent = drafts[p].symbol.parent;
                }
                symbol.parent = parent.and_then(|p| new_index[p]);
                symbol
            })
            .collect();
        Extracted { symbols, imports }
    }
}

/// The words and punctuation that announce something a language's handlers extract
/// (`function`, `class`, `=>`, `require` ...).
#[derive(Debug)]
pub(crate) struct LandmarkSpec {
    /// Whole words that matter anywhere, including inside function bodies.
    pub words: &'static [&'static str],
    /// Whole words that matter only outside function bodies (`const`, `export` ...).
    pub module_words: &'static [&'static str],
    /// Punctuation that matters anywhere, matched at any position.
    pub punctuation: &'static [&'static str],
    /// The words (of either list above) that matter inside an anonymous function, where
    /// declarations are locals: what loads a module or exports from one.
    pub local_words: &'static [&'static str],
}

/// Sorted byte offsets of landmarks in one text. Strings and comments are not excluded: a
/// landmark there only costs a subtree that could have been skipped.
struct Landmarks {
    /// Landmarks that matter anywhere.
    inner: Vec<usize>,
    /// Every landmark.
    all: Vec<usize>,
    /// Landmarks that matter inside anonymous functions.
    local: Vec<usize>,
}

impl Landmarks {
    fn find(text: &str, spec: &LandmarkSpec) -> Landmarks {
        let bytes = text.as_bytes();
        // Which (first byte, length) pairs any landmark word has, so that most words are
        // rejected without comparing them; bit 31 stands for every length from 31 up.
        let mut shapes = [0u32; 256];
        for word in spec.words.iter().chain(spec.module_words) {
            if let Some(&first) = word.as_bytes().first() {
                shapes[usize::from(first)] |= 1 << word.len().min(31);
            }
        }
        let mut punctuation_starts = [false; 256];
        for p in spec.punctuation {
            match p.as_bytes().first() {
                Some(&first) => punctuation_starts[usize::from(first)] = true,
                None => punctuation_starts = [true; 256],
            }
        }
        let mut inner = Vec::new();
        let mut all = Vec::new();
        let mut local = Vec::new();
        let mut i = 0;
        while i < bytes.len() {
            let b = bytes[i];
            if WORD_BYTE[usize::from(b)] {
                let start = i;
                i += 1;
                while i < bytes.len() && WORD_BYTE[usize::from(bytes[i])] {
                    i += 1;
                }
                let word = &bytes[start..i];
                if shapes[usize::from(b)] & (1 << word.len().min(31)) == 0 {
                    continue;
                }
                if spec.words.iter().any(|w| w.as_bytes() == word) {
                    inner.push(start);
                    all.push(start);
                } else if spec.module_words.iter().any(|w| w.as_bytes() == word) {
                    all.push(start);
                } else {
                    continue;
                }
                if spec.local_words.iter().any(|w| w.as_bytes() == word) {
                    local.push(start);
                }
                continue;
            }
            if punctuation_starts[usize::from(b)]
                && spec.punctuation.iter().any(|p| bytes[i..].starts_with(p.as_bytes()))
            {
                inner.push(i);
                all.push(i);
            }
            i += 1;
        }
        Landmarks { inner, all, local }
    }

    /// Whether one of `offsets` (one of the sorted lists above) lies in `start..end`.
    fn any_within(offsets: &[usize], start: usize, end: usize) -> bool {
        let i = offsets.partition_point(|&o| o < start);
        offsets.get(i).is_some_and(|&o| o < end)
    }
}

/// The bytes words are made of: ASCII letters and digits, `_`, `$`, and every byte of a
/// non-ASCII character.
static WORD_BYTE: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        let byte = b as u8;
        table[b] = byte.is_ascii_alphanumeric() || byte == b'_' || byte == b'$' || byte >= 0x80;
        b += 1;
    }
    table
};

/// The longest signature kept, in characters.
const MAX_SIGNATURE_CHARS: usize = 200;

/// The declaration's first line from `start`, trimmed and capped, never past `end`.
fn signature(text: &str, start: usize, end: usize) -> String {
    let rest = text.get(start..end.max(start).min(text.len())).unwrap_or_default();
    let line = rest.split('\n').next().unwrap_or_default().trim();
    match line.char_indices().nth(MAX_SIGNATURE_CHARS) {
        Some((cut, _)) => line[..cut].trim_end().to_owned(),
        None => line.to_owned(),
    }
}

/// 1-based last line of a range; a range ending right after a newline ends on that line.
fn end_line(start: Pos, end: Pos) -> u32 {
    if end.point.column == 0 && end.byte > start.byte {
        end.point.row as u32
    } else {
        end.point.row as u32 + 1
    }
}
