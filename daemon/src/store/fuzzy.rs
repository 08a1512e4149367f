//! Fuzzy symbol matching, the last phase of [`super::Store::symbol_search`]: which stored names
//! a misspelt query (`UserServce`, `creatUser`) may mean, and in what order.
//!
//! Both backends read the same bounded candidate list from an index range on `lower(name)`
//! (names sharing the query's first character, with a length the allowed distance can reach)
//! and rank it here with one distance function, so they return the same matches.

use super::SymbolView;

/// At most this many candidates are read for one fuzzy lookup, in `lower(name)` order: the
/// bound on the work a typo costs in a repository with many similar names.
pub(crate) const MAX_CANDIDATES: i64 = 2_000;

/// What a fuzzy lookup asks the database for, and how it ranks what comes back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Fuzzy {
    /// The query, ASCII-lowercased, as characters.
    query: Vec<char>,
    /// The largest edit distance accepted.
    max_distance: usize,
}

impl Fuzzy {
    /// The lookup for an ASCII-lowercased query; `None` when the query is too short to be
    /// matched fuzzily (below 4 characters almost every name is one edit away from another).
    /// Names of 4 to 7 characters accept one edit, longer ones two.
    pub(crate) fn new(query: &str) -> Option<Fuzzy> {
        let query: Vec<char> = query.chars().collect();
        let max_distance = match query.len() {
            0..=3 => return None,
            4..=7 => 1,
            _ => 2,
        };
        Some(Fuzzy { query, max_distance })
    }

    /// The first character every candidate's lowercased name starts with.
    pub(crate) fn first(&self) -> String {
        self.query[0].to_string()
    }

    /// The shortest and longest candidate names, in characters: each edit changes the length
    /// by at most one.
    pub(crate) fn lengths(&self) -> (i64, i64) {
        let n = self.query.len() as i64;
        let d = self.max_distance as i64;
        (n - d, n + d)
    }

    /// The ids of the candidates (id, name) whose name is within the allowed distance: the cheap
    /// first pass over the whole candidate list, on names alone.
    pub(crate) fn within<'a>(&self, candidates: impl IntoIterator<Item = (i64, &'a str)>) -> Vec<i64> {
        let mut name: Vec<char> = Vec::new();
        let mut rows = Rows::default();
        candidates
            .into_iter()
            .filter(|(_, n)| {
                name.clear();
                name.extend(n.chars().map(|c| c.to_ascii_lowercase()));
                rows.distance(&self.query, &name) <= self.max_distance
            })
            .map(|(id, _)| id)
            .collect()
    }

    /// The candidates within the allowed distance of the query, closest first, then exported
    /// first, then shorter names, then by name and path; at most `limit`.
    pub(crate) fn rank(&self, candidates: Vec<SymbolView>, limit: usize) -> Vec<SymbolView> {
        let mut kept: Vec<(usize, SymbolView)> = candidates
            .into_iter()
            .filter_map(|s| {
                let name: Vec<char> = s.name.to_ascii_lowercase().chars().collect();
                let d = osa_distance(&self.query, &name);
                (d <= self.max_distance).then_some((d, s))
            })
            .collect();
        kept.sort_by(|(da, a), (db, b)| {
            da.cmp(db)
                .then(b.exported.cmp(&a.exported))
                .then(a.name.chars().count().cmp(&b.name.chars().count()))
                .then_with(|| a.name.cmp(&b.name))
                .then_with(|| a.path.cmp(&b.path))
                .then_with(|| a.qualified_name.cmp(&b.qualified_name))
                .then(a.id.cmp(&b.id))
        });
        kept.into_iter().take(limit).map(|(_, s)| s).collect()
    }
}

/// The optimal string alignment distance (Damerau-Levenshtein where no substring is edited
/// twice): insertions, deletions, substitutions and transpositions of adjacent characters each
/// cost one.
pub(crate) fn osa_distance(a: &[char], b: &[char]) -> usize {
    Rows::default().distance(a, b)
}

/// The three rows of the dynamic programme (two back, for transpositions; one back; current),
/// kept between calls so that ranking many names allocates once.
#[derive(Default)]
struct Rows {
    before: Vec<usize>,
    previous: Vec<usize>,
    current: Vec<usize>,
}

impl Rows {
    fn distance(&mut self, a: &[char], b: &[char]) -> usize {
        let Rows { before, previous, current } = self;
        before.clear();
        before.resize(b.len() + 1, 0);
        previous.clear();
        previous.extend(0..=b.len());
        current.clear();
        current.resize(b.len() + 1, 0);
        for i in 1..=a.len() {
            current[0] = i;
            for j in 1..=b.len() {
                let cost = usize::from(a[i - 1] != b[j - 1]);
                let mut best = (previous[j] + 1).min(current[j - 1] + 1).min(previous[j - 1] + cost);
                if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                    best = best.min(before[j - 2] + 1);
                }
                current[j] = best;
            }
            std::mem::swap(before, previous);
            std::mem::swap(previous, current);
        }
        previous[b.len()]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(a: &str, b: &str) -> usize {
        let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
        osa_distance(&a, &b)
    }

    #[test]
    fn osa_counts_each_kind_of_edit_once() {
        assert_eq!(d("", ""), 0);
        assert_eq!(d("abc", ""), 3);
        assert_eq!(d("", "abc"), 3);
        assert_eq!(d("createuser", "createuser"), 0);
        assert_eq!(d("creatuser", "createuser"), 1, "deletion");
        assert_eq!(d("userservicee", "userservice"), 1, "insertion");
        assert_eq!(d("usarservice", "userservice"), 1, "substitution");
        assert_eq!(d("usreservice", "userservice"), 1, "transposition");
        assert_eq!(d("kitten", "sitting"), 3);
        // Optimal string alignment, not unrestricted Damerau-Levenshtein: "ca" -> "abc" is 3.
        assert_eq!(d("ca", "abc"), 3);
        assert_eq!(d("abc", "ca"), 3);
    }

    fn sym(id: i64, name: &str, exported: bool) -> SymbolView {
        SymbolView {
            id,
            project_id: 1,
            path: "a.ts".into(),
            name: name.into(),
            qualified_name: name.into(),
            kind: "function".into(),
            signature: String::new(),
            start_line: 1,
            end_line: 1,
            exported,
        }
    }

    #[test]
    fn thresholds_follow_the_query_length() {
        assert_eq!(Fuzzy::new("abc"), None);
        let four = Fuzzy::new("pars").unwrap();
        assert_eq!((four.first(), four.lengths()), ("p".to_string(), (3, 5)));
        let eight = Fuzzy::new("userserv").unwrap();
        assert_eq!(eight.lengths(), (6, 10));
        let names = |f: &Fuzzy, c: Vec<SymbolView>| -> Vec<String> {
            f.rank(c, 10).into_iter().map(|s| s.name).collect()
        };
        // Four to seven characters: one edit.
        assert_eq!(names(&four, vec![sym(1, "Park", true), sym(2, "pear", true)]), ["Park"]);
        // Eight and more: two.
        assert_eq!(
            names(&eight, vec![sym(1, "usrServ", true), sym(2, "uxerSexv", true), sym(3, "uxxrSxrv", true)]),
            ["usrServ", "uxerSexv"]
        );
    }

    #[test]
    fn within_keeps_the_names_rank_keeps() {
        let f = Fuzzy::new("creatuser").unwrap();
        let names =
            ["createUsers", "createUser", "CreateUser", "creatUsers", "deleteUser", "c", "creatuserxyz"];
        let candidates: Vec<(i64, String)> =
            names.iter().enumerate().map(|(i, n)| (i as i64, n.to_string())).collect();
        let views: Vec<SymbolView> = names.iter().enumerate().map(|(i, n)| sym(i as i64, n, true)).collect();
        let mut ranked: Vec<i64> = f.rank(views, 100).into_iter().map(|s| s.id).collect();
        ranked.sort_unstable();
        assert_eq!(f.within(candidates.iter().map(|(i, n)| (*i, n.as_str()))), ranked);
        assert_eq!(ranked, [0, 1, 2, 3]);
    }

    #[test]
    fn ranks_by_distance_then_exported_then_length() {
        let f = Fuzzy::new("creatuser").unwrap();
        let ranked = f.rank(
            vec![
                sym(1, "createUsers", true),
                sym(2, "createUser", false),
                sym(3, "CreateUser", true),
                sym(4, "creatUsers", true),
                sym(5, "deleteUser", true),
            ],
            10,
        );
        let ids: Vec<i64> = ranked.iter().map(|s| s.id).collect();
        // Distance 1: CreateUser (exported) before createUser, creatUsers; distance 2:
        // createUsers. deleteUser is 3 away.
        assert_eq!(ids, [3, 4, 2, 1]);
        assert_eq!(f.rank(ranked, 2).len(), 2);
    }
}
