//! Extraction of symbols, imports and exports from a syntax tree.

use crate::lang::Language;

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
    let _ = (language, text, tree);
    todo!("extract helper")
}
