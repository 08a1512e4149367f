//! Language detection and the tree-sitter grammar for each supported language.
//!
//! Adding a language means: a variant here, its extensions in `from_path`, its grammar in
//! `grammar`, and its extraction rules in `extract` (see ARCHITECTURE.md).

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
