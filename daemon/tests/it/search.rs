//! Search through the library on the fixture project (`fixtures/ts-app`, indexed with the
//! builtin embedder), on SQLite and on PostgreSQL: the symbol-kind filter in every mode and
//! through graph expansion, and fuzzy symbol matches for typos.

use std::collections::HashMap;

use semdex::config::{Config, Overrides};
use semdex::engine::Engine;
use semdex::indexing::{self, IndexOptions};
use semdex::search::symtab::SymbolIndex;
use semdex::search::{self, Expansion, Mode, SearchError, SearchHit, SearchRequest};
use semdex::store::{NewProject, Project, SearchScope, TermMatch};
use tokio_util::sync::CancellationToken;

use crate::Backend;
use crate::support;

struct Indexed {
    _dir: tempfile::TempDir,
    engine: Engine,
    project: i64,
}

/// A fresh engine on `backend` with `fixtures/ts-app` indexed; `None` when PostgreSQL is asked
/// for but not configured (see `support`).
async fn indexed(backend: Backend) -> Option<Indexed> {
    indexed_with(backend, |engine, _| Box::pin(async move { index_fixture(engine, "ts-app").await })).await
}

/// A fresh engine on `backend` with the project `index` registers and indexes; it is given the
/// engine and a scratch directory that lives as long as the result.
async fn indexed_with(
    backend: Backend,
    index: impl for<'a> FnOnce(&'a Engine, &'a std::path::Path) -> futures::future::BoxFuture<'a, Project>,
) -> Option<Indexed> {
    let database_url = match backend {
        Backend::Sqlite => None,
        Backend::Postgres => Some(support::pg_database().await?),
    };
    let dir = tempfile::tempdir().unwrap();
    let env: HashMap<&str, String> = HashMap::from([("SEMDEX_EMBEDDING_DIMS", "64".to_string())]);
    let overrides =
        Overrides { data_dir: Some(dir.path().join("data")), database_url, ..Overrides::default() };
    let config = Config::load_with(&overrides, &|name| env.get(name).cloned()).unwrap();
    let engine = Engine::open(config).await.unwrap();
    let project = index(&engine, dir.path()).await;
    Some(Indexed { _dir: dir, engine, project: project.id })
}

/// Registers `fixtures/<name>` as a project named `name` and indexes it in one run.
pub async fn index_fixture(engine: &Engine, name: &str) -> Project {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures").join(name);
    index_dir(engine, name, &root).await
}

/// Registers `root` as a project named `name` and indexes it in one run.
async fn index_dir(engine: &Engine, name: &str, root: &std::path::Path) -> Project {
    let root = std::fs::canonicalize(root).unwrap();
    let project = engine
        .store
        .create_project(NewProject {
            name: name.into(),
            root_path: Some(root.display().to_string()),
            settings: serde_json::json!({}),
            ..NewProject::default()
        })
        .await
        .unwrap();
    let run = engine.store.create_run(project.id, "cli", None, None).await.unwrap();
    assert!(engine.store.claim_run(run.id, "fixture-tests", 300).await.unwrap());
    indexing::index_project(engine, &project, &run, &IndexOptions::default(), &CancellationToken::new())
        .await
        .unwrap();
    project
}

impl Indexed {
    async fn search(&self, query: &str, mode: Mode, kinds: &[&str]) -> Vec<SearchHit> {
        let mut req = SearchRequest::new(query, vec![self.project]);
        req.mode = mode;
        req.kinds = kinds.iter().map(|k| k.to_string()).collect();
        req.explain = true;
        search::search(&self.engine, &req).await.unwrap().results
    }

    /// The kinds of the symbols whose definition starts within the hit's chunk.
    async fn kinds_defined(&self, hit: &SearchHit) -> Vec<String> {
        let detail = self.engine.store.file_detail(self.project, &hit.chunk.path).await.unwrap().unwrap();
        detail
            .symbols
            .iter()
            .filter(|s| (hit.chunk.start_line..=hit.chunk.end_line).contains(&s.start_line))
            .map(|s| s.kind.clone())
            .collect()
    }

    /// Panics unless every hit's chunk defines a symbol of one of `kinds`.
    async fn assert_all_define(&self, hits: &[SearchHit], kinds: &[&str], what: &str) {
        for hit in hits {
            let defined = self.kinds_defined(hit).await;
            assert!(
                defined.iter().any(|k| kinds.contains(&k.as_str())),
                "{what}: {}:{}-{} defines {defined:?}, none of {kinds:?}",
                hit.chunk.path,
                hit.chunk.start_line,
                hit.chunk.end_line
            );
        }
    }
}

fn paths(hits: &[SearchHit]) -> Vec<&str> {
    hits.iter().map(|h| h.chunk.path.as_str()).collect()
}

/// The symbol signal's own score of a hit.
fn symbol_score(hit: &SearchHit) -> Option<f64> {
    hit.signals.iter().find(|s| s.signal == "symbol").map(|s| s.score)
}

async fn kind_filter(backend: Backend) {
    let Some(ix) = indexed(backend).await else { return };
    let modes = [Mode::Hybrid, Mode::Symbol, Mode::Lexical, Mode::Semantic];
    for (query, kinds) in [
        ("user", &["class"][..]),
        ("create a user account", &["interface"][..]),
        ("retry with backoff", &["function", "method"][..]),
    ] {
        // Unfiltered, some results define none of the kinds: the filter has work to do.
        let unfiltered = ix.search(query, Mode::Hybrid, &[]).await;
        let mut outside = 0;
        for hit in &unfiltered {
            if !ix.kinds_defined(hit).await.iter().any(|k| kinds.contains(&k.as_str())) {
                outside += 1;
            }
        }
        assert!(outside > 0, "{query:?}: every unfiltered hit already defines one of {kinds:?}");
        for mode in modes {
            let hits = ix.search(query, mode, kinds).await;
            if matches!(mode, Mode::Hybrid | Mode::Semantic) {
                assert_eq!(
                    hits.len(),
                    10,
                    "{query:?} [{mode:?}] {kinds:?}: top_k not filled: {:?}",
                    paths(&hits)
                );
            }
            ix.assert_all_define(&hits, kinds, &format!("{query:?} [{mode:?}]")).await;
        }
    }
    // Known answers: the class, and the interface beside it, in symbol and hybrid modes.
    for mode in [Mode::Symbol, Mode::Hybrid] {
        let hits = ix.search("UserService", mode, &["class"]).await;
        assert_eq!(hits[0].chunk.path, "src/users/user.service.ts", "{mode:?}: {:?}", paths(&hits));
        assert!(hits[0].chunk.content.contains("export class UserService"), "{mode:?}");
        let hits = ix.search("UserService", mode, &["interface"]).await;
        assert_eq!(hits[0].chunk.path, "src/users/user.service.ts", "{mode:?}: {:?}", paths(&hits));
        assert!(hits[0].chunk.content.contains("interface UserServiceOptions"), "{mode:?}");
        assert!(!hits[0].chunk.content.contains("export class UserService"), "{mode:?}");
    }
    // A kind nothing of the query's symbols has: the symbol signal finds nothing.
    assert!(ix.search("withRetry", Mode::Symbol, &["enum"]).await.is_empty());
    // Graph expansion brings in only neighbours defining one of the kinds.
    let mut req = SearchRequest::new("withRetry", vec![ix.project]);
    req.mode = Mode::Symbol;
    req.kinds = vec!["function".into()];
    req.expand = Some(Expansion { imports: true, importers: true, decay: 0.5 });
    req.explain = true;
    let hits = search::search(&ix.engine, &req).await.unwrap().results;
    let graph = hits.iter().filter(|h| h.signals.iter().any(|s| s.signal == "graph")).count();
    assert!(graph > 0, "no expansion: {:?}", paths(&hits));
    ix.assert_all_define(&hits, &["function"], "expansion").await;
    // Path globs hold for the neighbours expansion brings in as well.
    let neighbour = hits
        .iter()
        .find(|h| h.signals.iter().any(|s| s.signal == "graph"))
        .map(|h| h.chunk.path.clone())
        .expect("a neighbour");
    req.path_exclude = vec![neighbour.clone()];
    let hits = search::search(&ix.engine, &req).await.unwrap().results;
    assert!(!hits.is_empty(), "the seeds remain");
    assert!(hits.iter().all(|h| h.chunk.path != neighbour), "{neighbour} excluded: {:?}", paths(&hits));
    // A kind the indexer never stores is refused, naming the ones it does.
    let mut req = SearchRequest::new("user", vec![ix.project]);
    req.kinds = vec!["widget".into()];
    match search::search(&ix.engine, &req).await {
        Err(SearchError::Invalid(m)) => {
            assert!(m.contains("\"widget\"") && m.contains("function, class, method"), "{m}")
        }
        other => panic!("expected Invalid, got {other:?}"),
    }
}
both!(kind_filter_restricts_every_mode, kind_filter);

async fn fuzzy_symbols(backend: Backend) {
    let Some(ix) = indexed(backend).await else { return };
    for (typo, expected) in [
        ("UserServce", "src/users/user.service.ts"),
        ("creatUser", "src/users/user.service.ts"),
        ("withRerty", "src/core/retry.ts"),
        ("hashPasword", "src/auth/password.ts"),
    ] {
        let hits = ix.search(typo, Mode::Symbol, &[]).await;
        assert_eq!(hits.first().map(|h| h.chunk.path.as_str()), Some(expected), "{typo}: {:?}", paths(&hits));
        // A fuzzy match explains itself below a substring match.
        assert_eq!(symbol_score(&hits[0]), Some(0.5), "{typo}");
        let hybrid = ix.search(typo, Mode::Hybrid, &[]).await;
        assert!(paths(&hybrid)[..3].contains(&expected), "{typo} [hybrid]: {:?}", paths(&hybrid));
    }
    // A substring match scores 1, not 0.5.
    let hits = ix.search("reateUser", Mode::Symbol, &[]).await;
    assert_eq!(hits[0].chunk.path, "src/users/user.service.ts");
    assert_eq!(symbol_score(&hits[0]), Some(1.0));
    // Nonsense finds nothing, fuzzily or otherwise.
    assert!(ix.search("qwxzvbnmkj", Mode::Symbol, &[]).await.is_empty());
    assert!(ix.search("zzyzx", Mode::Symbol, &[]).await.is_empty());
}
both!(fuzzy_symbol_matches_find_typos, fuzzy_symbols);

/// The lexical signal ranks only the chunks holding every term when there are at least as many
/// as it fetches (50), else those holding all terms but one (three terms or more) when there are
/// enough, and every chunk holding any term otherwise. The corpus is built so that the rankings
/// differ: short chunks repeating one term outrank long chunks holding two.
async fn lexical_all_terms(backend: Backend) {
    let ix = indexed_with(backend, |engine, dir| {
        Box::pin(async move {
            let root = dir.join("repo");
            std::fs::create_dir_all(&root).unwrap();
            // Long chunks: fifteen lines of filler inside the function body.
            let filler = format!("  // {}\n", "padding ".repeat(10)).repeat(15);
            let write = |name: String, body: String| std::fs::write(root.join(name), body).unwrap();
            for i in 0..60 {
                write(
                    format!("both{i}.ts"),
                    format!("export function both{i}() {{\n{filler}  return \"alpha beta\";\n}}\n"),
                );
            }
            for i in 0..8 {
                write(
                    format!("few{i}.ts"),
                    format!("export function few{i}() {{\n{filler}  return \"alpha gamma\";\n}}\n"),
                );
            }
            for i in 0..80 {
                write(format!("one{i}.ts"), format!("export const one{i} = \"alpha alpha alpha alpha\";\n"));
                write(format!("two{i}.ts"), format!("export const two{i} = \"beta beta beta beta\";\n"));
            }
            index_dir(engine, "terms", &root).await
        })
    })
    .await;
    let Some(ix) = ix else { return };
    let holds = |hit: &SearchHit, term: &str| {
        hit.chunk.content.split(|c: char| !c.is_alphanumeric()).any(|w| w == term)
    };
    let scope =
        semdex::store::SearchScope { project_ids: vec![ix.project], languages: vec![], kinds: vec![] };
    // Chunks holding alpha and beta: 60; alpha and gamma: 8; two terms of three: 68.
    for (query, least) in [("alpha beta", 2), ("alpha gamma", 1), ("alpha beta gamma", 2)] {
        let terms: Vec<String> = query.split(' ').map(String::from).collect();
        let held = |hit: &SearchHit| terms.iter().filter(|t| holds(hit, t)).count();
        // Ranking every chunk holding any term puts short chunks holding one term first.
        let any = ix.engine.store.lexical_search(&terms, TermMatch::Any, &scope, 10).await.unwrap();
        let any = ix.engine.store.chunks(&any.iter().map(|h| h.chunk_id).collect::<Vec<_>>()).await.unwrap();
        assert!(
            any.iter().any(|c| c.path.starts_with("one")),
            "{query:?}: {:?}",
            any.iter().map(|c| &c.path).collect::<Vec<_>>()
        );
        let hits = ix.search(query, Mode::Lexical, &[]).await;
        assert_eq!(hits.len(), 10, "{query:?}: {:?}", paths(&hits));
        assert!(hits.iter().all(|h| held(h) >= least), "{query:?}: {:?}", paths(&hits));
        if least == 1 {
            // Too few chunks hold two terms: the ranking of any term stands, as the store gives it.
            let expected: Vec<&str> = any.iter().map(|c| c.path.as_str()).collect();
            assert_eq!(paths(&hits), expected, "{query:?}");
            assert!(hits.iter().any(|h| held(h) == 1), "{query:?}: {:?}", paths(&hits));
        }
    }
}
both!(lexical_signal_ranks_chunks_holding_every_term_when_enough_do, lexical_all_terms);

/// Names that differ by case, by one letter, by a typo or by LIKE's wildcards, non-ASCII
/// letters, members sharing their class's prefix, and more `get` names than a limit holds: in
/// files exported and not, so that every order the symbol search applies decides somewhere.
fn write_lookalikes(root: &std::path::Path) {
    let names = [
        "createUser",
        "createUsers",
        "CreateUser",
        "creatUser",
        "createuser",
        "create_user",
        "createXuser",
        "deleteUser",
        "userService",
        "UserService",
        "user$",
        "$user",
        "parse",
        "reparse",
        "parseHeader",
        "Parser",
        "café",
        "Café",
        "CAFÉ",
        "ärger",
        "Ärger",
        "a_b",
        "aXb",
        "get",
        "getter",
        "getItem",
        "itemGet",
        "Query",
        "queryKey",
    ];
    for (path, exported) in [("a.ts", true), ("b.ts", false), ("c/d.ts", true), ("c/e.ts", false)] {
        let export = if exported { "export " } else { "" };
        let mut src = String::new();
        for name in names {
            src.push_str(&format!("{export}function {name}() {{\n  return 1;\n}}\n\n"));
        }
        for class in ["Query", "UserService"] {
            src.push_str(&format!("{export}class {class} {{\n"));
            for member in ["fetch", "fetchAll", "query", "queryKey", "refetch", "get", "createUser"] {
                src.push_str(&format!("  {member}() {{\n    return 2;\n  }}\n"));
            }
            src.push_str("}\n\n");
        }
        for i in 0..30 {
            src.push_str(&format!("{export}const get{i} = {i};\n"));
        }
        let file = root.join(path);
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        std::fs::write(file, src).unwrap();
    }
}

/// Words a user could type for `name`: itself, its start, a piece of its middle, a typo and a
/// longer word.
fn words_for(name: &str) -> Vec<String> {
    let chars: Vec<char> = name.chars().collect();
    let piece =
        |from: usize, to: usize| chars[from.min(chars.len())..to.min(chars.len())].iter().collect::<String>();
    let mut typo = chars.clone();
    if typo.len() > 2 {
        typo.swap(1, 2);
    }
    vec![
        name.to_string(),
        piece(0, 3),
        piece(0, 4),
        piece(1, 5),
        typo.into_iter().collect(),
        format!("{name}x"),
    ]
}

/// The in-memory symbol table answers every word as the store does: the same symbols in the
/// same order with the same chunks, over the fixtures and a corpus of look-alike names, at
/// several limits and scopes.
async fn symbol_table_agrees(backend: Backend) {
    let ix = indexed_with(backend, |engine, dir| {
        Box::pin(async move {
            let lookalikes = dir.join("lookalikes");
            write_lookalikes(&lookalikes);
            index_dir(engine, "lookalikes", &lookalikes).await;
            for name in ["syntax", "tokens", "chunking"] {
                index_fixture(engine, name).await;
            }
            index_fixture(engine, "ts-app").await
        })
    })
    .await;
    let Some(ix) = ix else { return };
    let store = ix.engine.store.as_ref();
    let index = SymbolIndex::default();
    let loaded = index.load(store).await.unwrap();
    if ix.engine.store.backend() == semdex::store::Backend::Postgres {
        // PostgreSQL keeps no symbols version: symbol search stays in the store.
        assert!(!loaded);
        assert_eq!(store.symbols_version().await.unwrap(), None);
        return;
    }
    assert!(loaded);
    let table = index.loaded().expect("a table");
    assert_eq!(Some(table.version()), store.symbols_version().await.unwrap());
    let projects: Vec<i64> = store.list_projects().await.unwrap().iter().map(|p| p.id).collect();
    let lookalikes = store.project_by_name("lookalikes").await.unwrap().unwrap().id;

    let snapshot = store.symbol_snapshot().await.unwrap().unwrap();
    assert_eq!(table.len(), snapshot.symbols.len());
    let mut words: std::collections::BTreeSet<String> = snapshot
        .symbols
        .iter()
        .flat_map(|s| [words_for(&s.name), vec![s.qualified_name.clone()]].concat())
        .collect();
    words.extend(["", "%", "_", "a_b", "ab", "CAF", "ÄRGER", "é", "$", "x"].map(String::from));
    let words: Vec<String> = words.into_iter().collect();
    let some: Vec<String> = words.iter().step_by(7).cloned().collect();

    let scope = |projects: Vec<i64>, languages: &[&str], kinds: &[&str]| SearchScope {
        project_ids: projects,
        languages: languages.iter().map(|l| l.to_string()).collect(),
        kinds: kinds.iter().map(|k| k.to_string()).collect(),
    };
    let cases = [
        (scope(projects.clone(), &[], &[]), 50, &words),
        (scope(projects.clone(), &[], &[]), 2, &words),
        (scope(vec![lookalikes], &[], &[]), 50, &some),
        (scope(projects.clone(), &["typescript"], &[]), 50, &some),
        (scope(projects.clone(), &[], &["method", "class"]), 5, &some),
    ];
    let (mut hits, mut full, mut fuzzy_only) = (0, 0, 0);
    for (scope, limit, words) in cases {
        let expected = store.symbol_search_words(words, &scope, limit).await.unwrap();
        let ids: Vec<i64> = expected.iter().flatten().map(|s| s.id).collect();
        let chunk_of: HashMap<i64, i64> = store.symbol_chunk_ids(&ids).await.unwrap().into_iter().collect();
        let got = table.search_words(words, &scope, limit);
        assert_eq!(got.len(), words.len());
        for ((word, expected), got) in words.iter().zip(expected).zip(got) {
            let expected: Vec<(i64, Option<i64>)> =
                expected.iter().map(|s| (s.id, chunk_of.get(&s.id).copied())).collect();
            let got: Vec<(i64, Option<i64>)> = got.iter().map(|h| (h.id, h.chunk_id)).collect();
            assert_eq!(got, expected, "word {word:?}, limit {limit}, scope {scope:?}");
            hits += got.len();
            full += usize::from(got.len() as i64 == limit);
            fuzzy_only += usize::from(
                !got.is_empty() && !word.is_empty() && {
                    let lw = word.to_ascii_lowercase();
                    let names = snapshot.symbols.iter().filter(|s| got.iter().any(|g| g.0 == s.id));
                    names.clone().all(|s| !s.qualified_name.to_ascii_lowercase().contains(&lw))
                },
            );
        }
    }
    // The corpus reaches every phase: full lists, and words found only as typos.
    assert!(
        hits > 10_000 && full > 500 && fuzzy_only > 50,
        "hits {hits}, full lists {full}, typos only {fuzzy_only}"
    );
}
both!(symbol_table_answers_as_the_store_does, symbol_table_agrees);

/// A symbol table loaded before files change is not used after: searches go to the store until
/// a table at the store's new version is loaded, so a renamed symbol is never found under its
/// old name, in either path. Deleting files and projects moves the version too.
#[tokio::test]
async fn symbol_table_is_never_used_stale() {
    let ix = indexed_with(Backend::Sqlite, |engine, dir| {
        Box::pin(async move {
            let root = dir.join("renames");
            std::fs::create_dir_all(&root).unwrap();
            std::fs::write(root.join("a.ts"), "export function ghostlyThing() {\n  return 1;\n}\n").unwrap();
            std::fs::write(root.join("b.ts"), "export function steadyThing() {\n  return 2;\n}\n").unwrap();
            index_dir(engine, "renames", &root).await
        })
    })
    .await
    .unwrap();
    let (engine, store) = (&ix.engine, &ix.engine.store);
    let found = |hits: Vec<SearchHit>, name: &str| hits.iter().any(|h| h.chunk.content.contains(name));
    let current = || async { engine.symbols.current(store).await.unwrap().is_some() };

    // A process that never loaded the table (a one-shot `semdex search`) searches the store and
    // never reads the symbols into memory.
    assert!(found(ix.search("ghostlyThing", Mode::Symbol, &[]).await, "ghostlyThing"));
    assert!(!current().await);
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert!(engine.symbols.loaded().is_none());

    assert!(engine.symbols.load(store.as_ref()).await.unwrap());
    assert!(current().await);
    assert!(found(ix.search("ghostlyThing", Mode::Symbol, &[]).await, "ghostlyThing"));
    let before = store.symbols_version().await.unwrap().unwrap();

    // Rename the symbol and index again: the table is stale and the search asks the store.
    let project = store.project(ix.project).await.unwrap().unwrap();
    let root = std::path::PathBuf::from(project.root_path.clone().unwrap());
    std::fs::write(root.join("a.ts"), "export function otherThing() {\n  return 1;\n}\n").unwrap();
    let run = store.create_run(project.id, "cli", None, None).await.unwrap();
    assert!(store.claim_run(run.id, "fixture-tests", 300).await.unwrap());
    indexing::index_project(engine, &project, &run, &IndexOptions::default(), &CancellationToken::new())
        .await
        .unwrap();
    let after = store.symbols_version().await.unwrap().unwrap();
    assert_ne!(after, before);
    assert_eq!(engine.symbols.loaded().unwrap().version(), before);
    assert!(!current().await, "a table of an older version must not be used");
    assert!(!found(ix.search("ghostlyThing", Mode::Symbol, &[]).await, "ghostlyThing"));
    assert!(found(ix.search("otherThing", Mode::Symbol, &[]).await, "otherThing"));

    // Loaded again, the table answers the same.
    assert!(engine.symbols.load(store.as_ref()).await.unwrap());
    assert!(current().await);
    assert!(!found(ix.search("ghostlyThing", Mode::Symbol, &[]).await, "ghostlyThing"));
    assert!(found(ix.search("otherThing", Mode::Symbol, &[]).await, "otherThing"));

    // Touching a file leaves its symbols alone; deleting files and projects does not.
    store.touch_file(project.id, "b.ts", 1, 1).await.unwrap();
    assert!(current().await);
    assert_eq!(store.delete_files(project.id, &["b.ts".to_string()]).await.unwrap(), 1);
    assert!(!current().await);
    assert!(!found(ix.search("steadyThing", Mode::Symbol, &[]).await, "steadyThing"));
    assert!(engine.symbols.load(store.as_ref()).await.unwrap());
    assert!(current().await);
    assert!(store.delete_project(project.id).await.unwrap());
    assert!(!current().await);
}
