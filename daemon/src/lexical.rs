//! Code-aware tokens, shared by the lexical index, lexical queries and the builtin embedder:
//! identifiers are split on camelCase, snake_case, kebab-case and digits, and the whole
//! identifier is kept too, all lowercased.

/// Splits one identifier into its lowercase parts: `parseHTTPRequest2` -> `parse`, `http`,
/// `request`, `2`; `user_service` -> `user`, `service`.
pub fn split_identifier(word: &str) -> Vec<String> {
    let chars: Vec<char> = word.chars().collect();
    let mut parts = Vec::new();
    let mut cur = String::new();
    for (i, &c) in chars.iter().enumerate() {
        if c == '_' || c == '$' || c == '-' {
            if !cur.is_empty() {
                parts.push(std::mem::take(&mut cur));
            }
            continue;
        }
        if let Some(&prev) = cur.chars().last().as_ref() {
            let next = chars.get(i + 1).copied();
            let boundary = (prev.is_lowercase() && c.is_uppercase())
                || (prev.is_alphabetic() && c.is_ascii_digit())
                || (prev.is_ascii_digit() && c.is_alphabetic())
                // The last capital of an acronym starts the next word: HTTPRequest -> HTTP Request.
                || (prev.is_uppercase() && c.is_uppercase() && next.is_some_and(char::is_lowercase));
            if boundary {
                parts.push(std::mem::take(&mut cur));
            }
        }
        cur.push(c);
    }
    if !cur.is_empty() {
        parts.push(cur);
    }
    parts.into_iter().map(|p| p.to_lowercase()).collect()
}

/// Calls `f` with each token of `text`: each identifier-like word lowercased whole, then its
/// parts when it has more than one. Words are runs of letters, digits, `_` and `$`.
pub fn for_each_token(text: &str, mut f: impl FnMut(&str)) {
    for word in text.split(|c: char| !(c.is_alphanumeric() || c == '_' || c == '$')) {
        let word = word.trim_matches(|c| c == '_' || c == '$');
        if word.is_empty() || word.len() > 64 {
            continue;
        }
        let whole = word.to_lowercase();
        f(&whole);
        let parts = split_identifier(word);
        if parts.len() > 1 {
            for part in &parts {
                f(part);
            }
        }
    }
}

/// All tokens of `text`, in order, duplicates kept.
pub fn tokens(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for_each_token(text, |t| out.push(t.to_string()));
    out
}

/// The lexical document stored for a chunk: path segments, symbol path and content tokens,
/// space-separated, so a full-text index with a plain whitespace tokenizer sees code-aware terms.
pub fn document(path: &str, symbol_path: &str, content: &str) -> String {
    let mut doc = String::with_capacity(content.len() + path.len() + symbol_path.len());
    for text in [path, symbol_path, content] {
        for_each_token(text, |t| {
            doc.push_str(t);
            doc.push(' ');
        });
    }
    doc.pop();
    doc
}

/// The distinct terms of a query, in first-seen order.
pub fn query_terms(query: &str) -> Vec<String> {
    let mut seen = std::collections::HashSet::new();
    tokens(query).into_iter().filter(|t| seen.insert(t.clone())).collect()
}

/// The full-text terms of a search query, in the form both stores accept: a plain word gives
/// its code-aware tokens; `"a quoted phrase"` gives one term whose tokens must appear in order;
/// a word ending in `*` gives a prefix term (`creat*`). Distinct, in first-seen order.
pub fn lexical_terms(query: &str) -> Vec<String> {
    let mut terms = Vec::new();
    let mut push = |t: String| {
        if !t.trim_end_matches('*').is_empty() && !terms.contains(&t) {
            terms.push(t);
        }
    };
    for (i, segment) in query.split('"').enumerate() {
        // Odd segments sit between quotes: phrases. An unclosed quote still counts as a phrase.
        if i % 2 == 1 {
            let phrase = tokens(segment).join(" ");
            if !phrase.is_empty() {
                push(phrase);
            }
            continue;
        }
        for word in segment.split_whitespace() {
            match word.strip_suffix('*') {
                Some(stem) => {
                    let stem: String = stem
                        .chars()
                        .filter(|c| c.is_alphanumeric() || *c == '_' || *c == '$')
                        .collect::<String>()
                        .to_lowercase();
                    if !stem.is_empty() {
                        push(format!("{stem}*"));
                    }
                }
                None => tokens(word).into_iter().for_each(&mut push),
            }
        }
    }
    // Connecting words of a question ("how to hash a password") occur in nearly every chunk:
    // matching them scores most of the index for almost no ranking signal. They are dropped
    // when the query has other terms; alone, they are searched as typed.
    if terms.iter().any(|t| !STOPWORDS.contains(&t.as_str())) {
        terms.retain(|t| !STOPWORDS.contains(&t.as_str()));
    }
    terms
}

/// Plain English words dropped from lexical queries that have other terms (see
/// [`lexical_terms`]). Only words that are not common identifiers in code: `for`, `in`, `if`,
/// `new`, `this`, `get`, `set` and the like stay searchable.
const STOPWORDS: &[&str] = &[
    "a", "an", "the", "to", "of", "and", "or", "on", "at", "by", "with", "from", "into", "how", "what",
    "where", "which", "that", "does", "do", "is", "are", "be", "it", "its", "my", "we", "i",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_identifiers() {
        assert_eq!(split_identifier("parseHTTPRequest2"), ["parse", "http", "request", "2"]);
        assert_eq!(split_identifier("user_service"), ["user", "service"]);
        assert_eq!(split_identifier("UserService"), ["user", "service"]);
        assert_eq!(split_identifier("x"), ["x"]);
        assert_eq!(split_identifier("MAX_RETRIES"), ["max", "retries"]);
        assert_eq!(split_identifier("sha256sum"), ["sha", "256", "sum"]);
    }

    #[test]
    fn drops_connecting_words_unless_they_are_the_whole_query() {
        assert_eq!(lexical_terms("how to hash a password"), ["hash", "password"]);
        assert_eq!(lexical_terms("\"the end\" of it"), ["the end"]);
        assert_eq!(lexical_terms("to be"), ["to", "be"]);
        assert_eq!(lexical_terms("for item in list"), ["for", "item", "in", "list"]);
    }

    #[test]
    fn keeps_whole_identifier_and_parts() {
        assert_eq!(tokens("createUser(user_id)"), ["createuser", "create", "user", "user_id", "user", "id"]);
        assert_eq!(query_terms("user User createUser"), ["user", "createuser", "create"]);
    }

    #[test]
    fn query_syntax_gives_phrases_and_prefixes() {
        assert_eq!(lexical_terms("retry request"), ["retry", "request"]);
        assert_eq!(lexical_terms("\"retry the request\" creat*"), ["retry the request", "creat*"]);
        assert_eq!(lexical_terms("\"createUser(id)\""), ["createuser create user id"]);
        assert_eq!(lexical_terms("getUser* * \"\""), ["getuser*"]);
        assert_eq!(lexical_terms("\"unclosed phrase"), ["unclosed phrase"]);
    }

    #[test]
    fn document_has_path_and_symbol_terms() {
        let doc = document("src/services/userService.ts", "UserService > createUser", "return 1;");
        let terms: Vec<&str> = doc.split(' ').collect();
        for t in ["src", "services", "userservice", "service", "createuser", "return", "1"] {
            assert!(terms.contains(&t), "{t} missing from {doc}");
        }
    }
}
