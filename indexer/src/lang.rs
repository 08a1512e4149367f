//! Language detection and the tree-sitter grammar for each supported language.
//!
//! Adding a language means: a variant here, its extensions in `from_path`, its grammar in
//! `grammar`, and its extraction rules in `extract` (see ARCHITECTURE.md).

use std::num::NonZeroU16;
use std::sync::OnceLock;

/// A language semdex parses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Language {
    TypeScript,
    Tsx,
    JavaScript,
}

impl Language {
    /// All supported languages.
    pub const ALL: [Language; 3] = [Language::TypeScript, Language::Tsx, Language::JavaScript];

    /// The language of a path, from its extension; `None` when semdex does not parse it.
    pub fn from_path(path: &str) -> Option<Language> {
        let name = path.rsplit('/').next().unwrap_or(path);
        let ext = name.rsplit_once('.')?.1.to_ascii_lowercase();
        match ext.as_str() {
            "ts" | "mts" | "cts" => Some(Language::TypeScript),
            "tsx" => Some(Language::Tsx),
            "js" | "mjs" | "cjs" | "jsx" => Some(Language::JavaScript),
            _ => None,
        }
    }

    /// The stable lowercase name stored in the database and shown to users.
    pub fn name(self) -> &'static str {
        match self {
            Language::TypeScript => "typescript",
            Language::Tsx => "tsx",
            Language::JavaScript => "javascript",
        }
    }

    /// The language with the given stable name.
    pub fn from_name(name: &str) -> Option<Language> {
        Language::ALL.into_iter().find(|l| l.name() == name)
    }

    /// The tree-sitter grammar.
    pub fn grammar(self) -> tree_sitter::Language {
        match self {
            Language::TypeScript => tree_sitter_typescript::LANGUAGE_TYPESCRIPT.into(),
            Language::Tsx => tree_sitter_typescript::LANGUAGE_TSX.into(),
            Language::JavaScript => tree_sitter_javascript::LANGUAGE.into(),
        }
    }
}

/// Cheaper [`tree_sitter::Node::kind`] and [`tree_sitter::Node::child_by_field_name`] for the
/// extraction and chunking walks, from tables built once per grammar: tree-sitter's `kind`
/// measures and validates a C string on every call, and `child_by_field_name` compares the name
/// with each field name of the grammar in turn.
pub(crate) trait NodeExt<'t> {
    /// The same string as `kind()`.
    fn kind_name(&self) -> &'static str;
    /// The same node as `child_by_field_name(name)`.
    fn field(&self, name: &str) -> Option<tree_sitter::Node<'t>>;
    /// The name of a field id of this node's grammar (`TreeCursor::field_id`), as
    /// `TreeCursor::field_name` gives it.
    fn field_name(&self, id: Option<NonZeroU16>) -> Option<&'static str>;
}

impl<'t> NodeExt<'t> for tree_sitter::Node<'t> {
    fn kind_name(&self) -> &'static str {
        match GrammarTables::of(self)
            .and_then(|t| t.kinds.get(usize::from(self.kind_id())).copied().flatten())
        {
            Some(kind) => kind,
            // `ERROR` and anything else outside the table.
            None => self.kind(),
        }
    }

    fn field(&self, name: &str) -> Option<tree_sitter::Node<'t>> {
        match GrammarTables::of(self) {
            Some(tables) => {
                let at = tables.fields.binary_search_by(|(field, _)| (*field).cmp(name)).ok()?;
                self.child_by_field_id(tables.fields[at].1)
            }
            None => self.child_by_field_name(name),
        }
    }

    fn field_name(&self, id: Option<NonZeroU16>) -> Option<&'static str> {
        let id = id?.get();
        match GrammarTables::of(self) {
            Some(tables) => tables.field_names.get(usize::from(id)).copied().flatten(),
            None => self.language().field_name_for_id(id),
        }
    }
}

/// A grammar's node kind names by kind id and field ids by name.
struct GrammarTables {
    grammar: tree_sitter::Language,
    kinds: Vec<Option<&'static str>>,
    /// Sorted by name.
    fields: Vec<(&'static str, u16)>,
    field_names: Vec<Option<&'static str>>,
}

impl GrammarTables {
    /// The tables of the grammar `node` was parsed with, if it is one of [`Language::ALL`].
    fn of(node: &tree_sitter::Node<'_>) -> Option<&'static GrammarTables> {
        static TABLES: OnceLock<Vec<GrammarTables>> = OnceLock::new();
        let grammar = node.language();
        TABLES
            .get_or_init(|| Language::ALL.into_iter().map(|l| GrammarTables::new(l.grammar())).collect())
            .iter()
            .find(|t| t.grammar == *grammar)
    }

    fn new(grammar: tree_sitter::Language) -> GrammarTables {
        let kinds = (0..grammar.node_kind_count())
            .map(|id| u16::try_from(id).ok().and_then(|id| grammar.node_kind_for_id(id)))
            .collect();
        let field_count = u16::try_from(grammar.field_count()).unwrap_or(u16::MAX);
        let field_names: Vec<Option<&'static str>> =
            (0..=field_count).map(|id| grammar.field_name_for_id(id)).collect();
        let mut fields: Vec<(&'static str, u16)> =
            (1..=field_count).filter_map(|id| Some((grammar.field_name_for_id(id)?, id))).collect();
        fields.sort_unstable();
        GrammarTables { grammar, kinds, fields, field_names }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detects_by_extension() {
        assert_eq!(Language::from_path("src/a.ts"), Some(Language::TypeScript));
        assert_eq!(Language::from_path("src/types.d.ts"), Some(Language::TypeScript));
        assert_eq!(Language::from_path("App.TSX"), Some(Language::Tsx));
        assert_eq!(Language::from_path("x/y.cjs"), Some(Language::JavaScript));
        assert_eq!(Language::from_path("x/y.jsx"), Some(Language::JavaScript));
        assert_eq!(Language::from_path("README.md"), None);
        assert_eq!(Language::from_path("Makefile"), None);
    }

    #[test]
    fn grammars_load() {
        for lang in Language::ALL {
            let mut parser = tree_sitter::Parser::new();
            parser.set_language(&lang.grammar()).expect("grammar version matches tree-sitter");
            assert_eq!(Language::from_name(lang.name()), Some(lang));
        }
    }
}
