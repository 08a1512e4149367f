//! `semdex index` then `semdex search` on a small repository written by the test, with the
//! builtin embedder (no network), on the embedded default (SQLite + local HNSW) and in server
//! mode (PostgreSQL + pgvector); both must behave the same.

use semdex_tests::{Semdex, write_file as write};

fn small_repo() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    write(
        root,
        "src/users/userService.ts",
        r#"import { Database } from "../db/database";
import { hashPassword } from "../auth/password";

/** Manages user accounts. */
export class UserService {
  constructor(private readonly db: Database) {}

  /** Creates a user with a hashed password and returns its id. */
  async createUser(email: string, password: string): Promise<string> {
    const hash = await hashPassword(password);
    return this.db.insert("users", { email, hash });
  }

  async deleteUser(id: string): Promise<void> {
    await this.db.remove("users", id);
  }
}
"#,
    );
    write(
        root,
        "src/auth/password.ts",
        r#"import { createHash } from "crypto";

/** Hashes a password with a per-user salt. */
export async function hashPassword(password: string): Promise<string> {
  const salt = Math.random().toString(36).slice(2);
  return salt + ":" + createHash("sha256").update(salt + password).digest("hex");
}

export function verifyPassword(password: string, stored: string): boolean {
  const [salt, digest] = stored.split(":");
  return createHash("sha256").update(salt + password).digest("hex") === digest;
}
"#,
    );
    write(
        root,
        "src/db/database.ts",
        r#"export interface Row { [key: string]: unknown }

export class Database {
  private tables = new Map<string, Map<string, Row>>();

  async insert(table: string, row: Row): Promise<string> {
    const id = String(this.tables.get(table)?.size ?? 0);
    if (!this.tables.has(table)) this.tables.set(table, new Map());
    this.tables.get(table)!.set(id, row);
    return id;
  }

  async remove(table: string, id: string): Promise<void> {
    this.tables.get(table)?.delete(id);
  }
}
"#,
    );
    write(
        root,
        "src/http/retry.js",
        r#"// Retries a request with exponential backoff.
async function fetchWithRetry(url, attempts = 3) {
  let delay = 100;
  for (let i = 0; i < attempts; i++) {
    try {
      return await fetch(url);
    } catch (err) {
      await new Promise((r) => setTimeout(r, delay));
      delay *= 2;
    }
  }
  throw new Error("request failed after retries: " + url);
}
module.exports = { fetchWithRetry };
"#,
    );
    write(root, ".env", "API_KEY=sk-test-not-a-real-key\n");
    // Refused when read (NUL bytes), not by its name.
    write(root, "src/blob.ts", "export const x = 1;\0\0\0\n");
    write(root, "README.md", "# demo\n");
    dir
}

fn results(v: &serde_json::Value) -> &Vec<serde_json::Value> {
    v["results"].as_array().expect("results array")
}

fn top_path(v: &serde_json::Value) -> String {
    results(v).first().map(|r| r["path"].as_str().unwrap().to_string()).unwrap_or_default()
}

/// Runs a scenario on both backends.
fn on_both(scenario: fn(&Semdex)) {
    scenario(&Semdex::embedded());
    if let Some(server) = crate::server_mode() {
        scenario(&server);
    }
}

#[test]
fn index_then_search_in_every_mode() {
    on_both(index_then_search);
}

#[test]
fn reindexing_is_incremental_and_leaves_no_ghosts() {
    on_both(incremental_without_ghosts);
}

#[test]
fn dry_run_writes_nothing() {
    on_both(dry_run);
}

fn index_then_search(semdex: &Semdex) {
    let repo = small_repo();
    let root = repo.path().to_str().unwrap();

    let summary = semdex.json(&["index", root, "--project", "demo", "--json"]);
    assert_eq!(summary["project"], "demo");
    assert_eq!(summary["status"], "succeeded");
    assert_eq!(summary["files_indexed"], 4, "{summary}");
    // .env (secret), README.md (unsupported language) and src/blob.ts (binary) are recorded as
    // skipped.
    assert_eq!(summary["files_skipped"], 3, "{summary}");
    assert!(summary["chunks"].as_i64().unwrap() >= 4, "{summary}");
    assert_eq!(summary["chunks_embedded"], summary["chunks"], "distinct chunks all embedded: {summary}");
    for key in ["run_id", "embedding_cache_hits", "tokens_embedded", "duration_ms"] {
        assert!(summary.get(key).is_some(), "{key} missing from {summary}");
    }

    let v = semdex.json(&["search", "create a user account", "--json"]);
    assert_eq!(top_path(&v), "src/users/userService.ts", "{v:#}");
    let first = &results(&v)[0];
    assert!(first["start_line"].as_i64().unwrap() >= 1);
    assert!(first["end_line"].as_i64().unwrap() >= first["start_line"].as_i64().unwrap());
    assert_eq!(first["language"], "typescript");
    assert!(first["snippet"].as_str().unwrap().contains("createUser"), "{first}");

    let v = semdex.json(&["search", "hashPassword", "--mode", "symbol", "--json"]);
    assert_eq!(top_path(&v), "src/auth/password.ts", "{v:#}");
    assert!(results(&v)[0]["snippet"].as_str().unwrap().contains("function hashPassword"), "{v:#}");

    let v = semdex.json(&["search", "exponential backoff retries", "--mode", "lexical", "--json"]);
    assert_eq!(top_path(&v), "src/http/retry.js", "{v:#}");

    let v = semdex.json(&["search", "retry request with backoff", "--mode", "semantic", "--json"]);
    assert_eq!(top_path(&v), "src/http/retry.js", "{v:#}");

    let v = semdex.json(&["search", "verify password", "--json", "--explain", "--top-k", "3"]);
    assert!(results(&v).len() <= 3);
    assert!(results(&v)[0]["signals"].as_array().is_some_and(|s| !s.is_empty()), "{v:#}");

    // The secret never reaches the index.
    let v = semdex.json(&["search", "sk-test-not-a-real-key API_KEY", "--mode", "lexical", "--json"]);
    assert!(results(&v).iter().all(|r| r["path"] != ".env"), "{v:#}");
}

fn incremental_without_ghosts(semdex: &Semdex) {
    let repo = small_repo();
    let root = repo.path().to_str().unwrap();
    let first = semdex.json(&["index", root, "--json"]);
    assert_eq!(first["files_indexed"], 4);

    // Nothing changed: nothing is parsed and nothing is embedded; skips stay skips.
    let again = semdex.json(&["index", root, "--json"]);
    assert_eq!(again["files_indexed"], 0, "{again}");
    assert_eq!(again["files_skipped"], first["files_skipped"], "{again}");
    assert_eq!(again["files_unchanged"], 4, "{again}");
    assert_eq!(again["chunks_embedded"], 0, "{again}");
    assert_eq!(again["tokens_embedded"], 0, "{again}");

    // One edit: one file re-indexed, and search sees the new code.
    write(
        repo.path(),
        "src/http/retry.js",
        "// Parses invoices from the billing export.\nfunction parseInvoiceLines(csv) {\n  return csv.split('\\n');\n}\nmodule.exports = { parseInvoiceLines };\n",
    );
    let edit = semdex.json(&["index", root, "--json"]);
    assert_eq!(edit["files_indexed"], 1, "{edit}");
    let v = semdex.json(&["search", "parseInvoiceLines", "--json"]);
    assert_eq!(top_path(&v), "src/http/retry.js", "{v:#}");
    for mode in ["hybrid", "lexical", "symbol", "semantic"] {
        let v = semdex.json(&["search", "fetchWithRetry exponential backoff", "--mode", mode, "--json"]);
        assert!(
            results(&v).iter().all(|r| !r["snippet"].as_str().unwrap().contains("fetchWithRetry")),
            "{mode}: stale chunk returned: {v:#}"
        );
    }

    // A deleted file leaves no result behind, in any mode.
    std::fs::remove_file(repo.path().join("src/db/database.ts")).unwrap();
    let del = semdex.json(&["index", root, "--json"]);
    assert_eq!(del["files_deleted"], 1, "{del}");
    for mode in ["hybrid", "semantic", "lexical", "symbol"] {
        let v = semdex.json(&["search", "Database insert remove table", "--mode", mode, "--json"]);
        assert!(results(&v).iter().all(|r| r["path"] != "src/db/database.ts"), "{mode}: ghost result {v:#}");
    }
}

fn dry_run(semdex: &Semdex) {
    let repo = small_repo();
    let root = repo.path().to_str().unwrap();
    let dry = semdex.json(&["index", root, "--dry-run", "--json"]);
    assert_eq!(dry["dry_run"], true);
    assert_eq!(dry["files_indexed"], 4);
    assert!(dry["estimated_tokens"].as_i64().unwrap() > 0, "{dry}");
    assert_eq!(dry["chunks_embedded"], 0);
    let out = semdex.run(&["search", "user", "--json"]);
    assert_eq!(out.status.code(), Some(1), "nothing indexed after a dry run");
    assert!(String::from_utf8_lossy(&out.stderr).contains("nothing is indexed"));

    // After a real run, a dry run of the same code under another project prices nothing: every
    // chunk text is already in the embedding cache.
    let real = semdex.json(&["index", root, "--json"]);
    assert!(real["chunks_embedded"].as_i64().unwrap() > 0, "{real}");
    let dry = semdex.json(&["index", root, "--project", "other", "--dry-run", "--json"]);
    assert_eq!(dry["files_indexed"], 4, "{dry}");
    assert_eq!(dry["estimated_tokens"], 0, "{dry}");
    assert_eq!(dry["embedding_cache_hits"], real["chunks_embedded"], "{dry}");
}

#[test]
fn exit_codes_follow_the_contract() {
    let semdex = Semdex::embedded();
    assert_eq!(semdex.run(&["index"]).status.code(), Some(2), "missing argument is a usage error");
    assert_eq!(semdex.run(&["frobnicate"]).status.code(), Some(2));
    assert_eq!(semdex.run(&["search", "x", "--mode", "psychic"]).status.code(), Some(2));
    let out = semdex.run(&["search", "x", "--kind", "function,widget"]);
    assert_eq!(out.status.code(), Some(2), "an unknown symbol kind is a usage error");
    assert!(String::from_utf8_lossy(&out.stderr).contains("expected one of: function, class"));
    let out = semdex.run(&["index", "/definitely/not/here"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/definitely/not/here"));
}

/// The README's first command, `scripts/quickstart.sh PATH QUERY`, with the path relative to
/// where it is run (not to the checkout) and a prebuilt binary (`SEMDEX_BIN`) instead of a
/// release build.
#[test]
fn quickstart_indexes_a_path_relative_to_the_callers_directory() {
    let work = tempfile::tempdir().unwrap();
    let repo = small_repo();
    semdex_tests::copy_dir(repo.path(), &work.path().join("app"));
    let semdex = Semdex::embedded();
    let quickstart = |args: &[&str]| {
        semdex
            .command_for("bash")
            .arg(semdex_tests::workspace_root().join("scripts/quickstart.sh"))
            .args(args)
            .current_dir(work.path())
            .env("SEMDEX_BIN", semdex_tests::semdex_bin())
            .output()
            .expect("running quickstart.sh")
    };

    let out = quickstart(&["app", "hash a password"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "quickstart failed: {stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("src/auth/password.ts"), "the best match is the password module: {stdout}");
    let status = semdex.json(&["status", "--json"]);
    let root = work.path().join("app").canonicalize().unwrap();
    assert!(status.to_string().contains(&format!("\"{}\"", root.display())), "{status}");

    let out = quickstart(&["no-such-dir", "x"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no-such-dir is not a directory"));
}

/// pgvector (server mode) and the local HNSW (embedded) answer the same on the fixture project.
#[test]
fn pgvector_and_local_hnsw_agree_on_the_fixture_project() {
    let Some(server) = crate::server_mode() else { return };
    let embedded = Semdex::embedded();
    let root = semdex_tests::fixture("ts-app");
    let root = root.to_str().unwrap();
    for s in [&embedded, &server] {
        let summary = s.json(&["index", root, "--json"]);
        assert_eq!(summary["status"], "succeeded", "{summary}");
    }
    let queries = [
        "retry a failed http request with backoff",
        "hash the user's password",
        "refund a payment",
        "cache entries expire after a time to live",
        "render the order list component",
    ];
    for q in queries {
        let top = |s: &Semdex| -> Vec<(String, i64)> {
            let v = s.json(&["search", q, "--mode", "semantic", "--top-k", "5", "--json"]);
            results(&v)
                .iter()
                .map(|r| (r["path"].as_str().unwrap().to_string(), r["start_line"].as_i64().unwrap()))
                .collect()
        };
        let (a, b) = (top(&embedded), top(&server));
        assert!(!a.is_empty(), "{q}: no results");
        assert_eq!(a[0], b[0], "{q}: different best result\nembedded: {a:?}\nserver:   {b:?}");
        let overlap = a.iter().filter(|x| b.contains(x)).count();
        assert!(overlap >= 4, "{q}: top 5 overlap only {overlap}\nembedded: {a:?}\nserver:   {b:?}");
    }
}

/// Known answers on the fixture project with the builtin embedder, in every mode and on both
/// backends: the file a developer would open is among the first three results.
#[test]
fn known_answers_on_the_fixture_project() {
    let root = semdex_tests::fixture("ts-app");
    let root = root.to_str().unwrap();
    let cases: [(&str, &[&str], &str); 10] = [
        ("hash a password", &["hybrid", "semantic", "lexical", "symbol"], "src/auth/password.ts"),
        ("exponential backoff retry", &["hybrid", "semantic", "lexical", "symbol"], "src/core/retry.ts"),
        ("JWT token verification", &["hybrid", "semantic", "lexical", "symbol"], "src/auth/token.service.ts"),
        ("refund a payment", &["hybrid", "lexical", "symbol"], "src/payments/payment.gateway.ts"),
        ("withRetry", &["symbol", "hybrid"], "src/core/retry.ts"),
        ("UserService.createUser", &["symbol", "hybrid"], "src/users/user.service.ts"),
        ("debounce", &["symbol", "hybrid", "lexical"], "src/utils/debounce.ts"),
        // Typos, found by the fuzzy symbol phase.
        ("UserServce", &["symbol", "hybrid"], "src/users/user.service.ts"),
        ("creatUser", &["symbol", "hybrid"], "src/users/user.service.ts"),
        ("withRerty", &["symbol", "hybrid"], "src/core/retry.ts"),
    ];
    let check = |semdex: &Semdex| {
        semdex.json(&["index", root, "--json"]);
        for (query, modes, expected) in cases {
            for mode in modes {
                let v = semdex.json(&["search", query, "--mode", mode, "--top-k", "3", "--json"]);
                let paths: Vec<&str> = results(&v).iter().map(|r| r["path"].as_str().unwrap()).collect();
                assert!(paths.contains(&expected), "{query:?} [{mode}]: {expected} not in {paths:?}");
            }
        }
        // A kind filter, repeated or as a comma list: the class, or the interface beside it.
        for args in
            [&["--kind", "class"][..], &["--kind", "enum,class"], &["--kind", "enum", "--kind", "class"]]
        {
            for mode in ["symbol", "hybrid"] {
                let mut argv = vec!["search", "UserService", "--mode", mode, "--json"];
                argv.extend_from_slice(args);
                let v = semdex.json(&argv);
                assert_eq!(top_path(&v), "src/users/user.service.ts", "{args:?} [{mode}]: {v:#}");
                let snippet = results(&v)[0]["snippet"].as_str().unwrap();
                assert!(snippet.contains("class UserService"), "{args:?} [{mode}]: {v:#}");
            }
        }
        let v = semdex.json(&["search", "UserService", "--mode", "symbol", "--kind", "interface", "--json"]);
        let snippet = results(&v)[0]["snippet"].as_str().unwrap();
        assert!(
            snippet.contains("interface UserServiceOptions") && !snippet.contains("class UserService"),
            "{v:#}"
        );
        let v = semdex.json(&["search", "withRetry", "--mode", "symbol", "--kind", "enum", "--json"]);
        assert!(results(&v).is_empty(), "{v:#}");
        // Nonsense finds nothing, not even fuzzily.
        let v = semdex.json(&["search", "qwxzvbnmkj", "--mode", "symbol", "--json"]);
        assert!(results(&v).is_empty(), "{v:#}");
    };
    check(&Semdex::embedded());
    if let Some(server) = crate::server_mode() {
        check(&server);
    }
}
