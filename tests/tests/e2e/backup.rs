//! `semdex backup` then `semdex restore` into a fresh data directory gives the same search
//! results; `migrate down` then `migrate up` works; failures exit 1 and usage errors 2.

use std::process::Output;

use semdex_tests::{Semdex, write_file as write};

fn repo() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "src/auth/password.ts",
        "import { createHash } from \"crypto\";\n\n/** Hashes a password with a salt. */\n\
         export function hashPassword(password: string, salt: string): string {\n  \
         return createHash(\"sha256\").update(salt + password).digest(\"hex\");\n}\n",
    );
    write(
        dir.path(),
        "src/http/retry.js",
        "// Retries a request with exponential backoff.\nasync function fetchWithRetry(url, attempts = 3) {\n  \
         for (let i = 0; i < attempts; i++) {\n    try { return await fetch(url); } catch (e) {}\n  }\n  \
         throw new Error(\"request failed\");\n}\nmodule.exports = { fetchWithRetry };\n",
    );
    write(
        dir.path(),
        "src/users/service.ts",
        "import { hashPassword } from \"../auth/password\";\n\nexport class UserService {\n  \
         createUser(email: string, password: string) {\n    return { email, hash: hashPassword(password, email) };\n  }\n}\n",
    );
    dir
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn assert_exit(out: &Output, code: i32, args: &str) {
    assert_eq!(out.status.code(), Some(code), "semdex {args}: stderr: {}", stderr(out));
}

/// What a search returned, without scores (which need not agree to the last bit).
fn hits(v: &serde_json::Value) -> Vec<String> {
    v["results"]
        .as_array()
        .expect("results")
        .iter()
        .map(|r| format!("{}:{}-{} {}", r["path"], r["start_line"], r["end_line"], r["symbol_path"]))
        .collect()
}

#[test]
fn backup_restore_into_a_fresh_data_dir_searches_the_same() {
    let repo = repo();
    let root = repo.path().to_str().unwrap();
    let files = tempfile::tempdir().unwrap();
    let backup = files.path().join("semdex-backup.jsonl");
    let backup_arg = backup.to_str().unwrap();

    let source = Semdex::embedded();
    source.json(&["index", root, "--project", "demo", "--json"]);
    let queries = [
        ["search", "hash a password", "--json"],
        ["search", "retry with backoff", "--json"],
        ["search", "fetchWithRetry", "--json"],
    ];
    let lexical = ["search", "password", "--mode", "lexical", "--json"];
    let before: Vec<Vec<String>> = queries.iter().map(|q| hits(&source.json(q))).collect();
    let before_lexical = source.json(&lexical);
    assert!(!before[0].is_empty());

    let out = source.run(&["backup", "--output", backup_arg]);
    assert_exit(&out, 0, "backup");
    let header: serde_json::Value =
        serde_json::from_str(std::fs::read_to_string(&backup).unwrap().lines().next().unwrap()).unwrap();
    assert_eq!(header["format"], "semdex-backup");
    assert_eq!(header["version"], 1);

    let target = Semdex::embedded();
    let out = target.run(&["restore", backup_arg]);
    assert_exit(&out, 0, "restore");
    let after: Vec<Vec<String>> = queries.iter().map(|q| hits(&target.json(q))).collect();
    assert_eq!(after, before);
    assert_eq!(target.json(&lexical), before_lexical);
    let (s, t) = (source.json(&["status", "--json"]), target.json(&["status", "--json"]));
    assert_eq!(t["rows"], s["rows"]);
    assert_eq!(t["backend"], "sqlite");
    assert_eq!(t["pgvector_status"], "absent: local HNSW serves search");
    assert!(t["size_bytes"].as_i64().unwrap() > 0);

    // The target now holds data: a second restore needs --force.
    let out = target.run(&["restore", backup_arg]);
    assert_exit(&out, 1, "restore into a non-empty store");
    assert!(stderr(&out).contains("--force"), "{}", stderr(&out));
    assert_exit(&target.run(&["restore", backup_arg, "--force"]), 0, "restore --force");
    assert_eq!(hits(&target.json(&queries[0])), before[0]);

    // A damaged file fails with a clear message and leaves the store alone.
    let text = std::fs::read(&backup).unwrap();
    let cut = files.path().join("cut.jsonl");
    std::fs::write(&cut, &text[..text.len() - 10]).unwrap();
    let out = target.run(&["restore", cut.to_str().unwrap(), "--force"]);
    assert_exit(&out, 1, "restore of a truncated file");
    assert!(stderr(&out).contains("truncated"), "{}", stderr(&out));
    assert_eq!(target.json(&["status", "--json"])["rows"], s["rows"]);
}

#[test]
fn migrate_down_then_up() {
    let semdex = Semdex::embedded();
    assert_exit(&semdex.run(&["migrate", "up"]), 0, "migrate up");
    let status = semdex.json(&["migrate", "status", "--json"]);
    let migrations = status["migrations"].as_array().unwrap();
    assert!(!migrations.is_empty());
    assert!(migrations.iter().all(|m| m["applied"] == true), "{status}");
    assert_eq!(
        semdex.json(&["status", "--json"])["schema_version"],
        semdex.json(&["status", "--json"])["latest_version"]
    );

    assert_exit(&semdex.run(&["migrate", "down"]), 0, "migrate down");
    let status = semdex.json(&["migrate", "status", "--json"]);
    let applied = status["migrations"].as_array().unwrap().iter().filter(|m| m["applied"] == true).count();
    assert_eq!(applied, migrations.len() - 1, "{status}");
    let text = String::from_utf8(semdex.run(&["migrate", "status"]).stdout).unwrap();
    assert!(text.contains("pending"), "{text}");

    assert_exit(&semdex.run(&["migrate", "down", "--to", "0"]), 0, "migrate down --to 0");
    assert!(semdex.json(&["status", "--json"])["schema_version"].is_null());
    assert_exit(&semdex.run(&["migrate", "up"]), 0, "migrate up again");
    let status = semdex.json(&["migrate", "status", "--json"]);
    assert!(status["migrations"].as_array().unwrap().iter().all(|m| m["applied"] == true), "{status}");

    // The schema works after the round trip.
    let repo = repo();
    let summary = semdex.json(&["index", repo.path().to_str().unwrap(), "--json"]);
    assert_eq!(summary["files_indexed"], 3, "{summary}");
}

#[test]
fn failures_exit_1_and_usage_errors_exit_2() {
    let semdex = Semdex::embedded();
    assert_exit(&semdex.run(&["migrate", "sideways"]), 2, "migrate sideways");
    assert_exit(&semdex.run(&["migrate", "down", "--to", "x"]), 2, "migrate down --to x");
    assert_exit(&semdex.run(&["backup"]), 2, "backup without --output");
    assert_exit(&semdex.run(&["restore"]), 2, "restore without a file");

    let missing = semdex.data_dir.path().join("missing.jsonl");
    let out = semdex.run(&["restore", missing.to_str().unwrap()]);
    assert_exit(&out, 1, "restore of a missing file");
    let garbage = semdex.data_dir.path().join("garbage.jsonl");
    std::fs::write(&garbage, "{\"format\":\"semdex-backup\",\"version\":7}\n").unwrap();
    let out = semdex.run(&["restore", garbage.to_str().unwrap()]);
    assert_exit(&out, 1, "restore of a newer format");
    assert!(stderr(&out).contains("unsupported backup format version 7"), "{}", stderr(&out));
    // Nothing was touched: the store was not even created.
    assert!(!semdex.data_dir.path().join("semdex.db").exists());

    // Backing up a store that was never migrated fails rather than writing an empty file.
    let out_file = semdex.data_dir.path().join("b.jsonl");
    let out = semdex.run(&["backup", "--output", out_file.to_str().unwrap()]);
    assert_exit(&out, 1, "backup of an unmigrated store");
    assert!(!out_file.exists());
}

/// A laptop's embedded index moves to a team's PostgreSQL: restored there, search answers the
/// same, and a backup of the server restores back into a fresh embedded store.
#[test]
fn embedded_backup_restores_into_server_mode_and_back() {
    let Some(server) = crate::server_mode() else { return };
    let repo = repo();
    let root = repo.path().to_str().unwrap();
    let files = tempfile::tempdir().unwrap();
    let (first, second) = (files.path().join("a.jsonl"), files.path().join("b.jsonl"));

    let laptop = Semdex::embedded();
    laptop.json(&["index", root, "--project", "demo", "--json"]);
    let query = ["search", "hash a password", "--mode", "lexical", "--json"];
    let before = hits(&laptop.json(&query));
    assert!(!before.is_empty());
    assert_exit(&laptop.run(&["backup", "--output", first.to_str().unwrap()]), 0, "backup");

    assert_exit(&server.run(&["restore", first.to_str().unwrap()]), 0, "restore into PostgreSQL");
    let status = server.json(&["status", "--json"]);
    assert_eq!(status["backend"], "postgres");
    assert_eq!(status["rows"], laptop.json(&["status", "--json"])["rows"]);
    assert_eq!(hits(&server.json(&query)), before);
    // Semantic search works there too: vectors came along.
    let semantic = server.json(&["search", "hash a password", "--mode", "semantic", "--json"]);
    assert!(!hits(&semantic).is_empty(), "{semantic}");

    assert_exit(&server.run(&["backup", "--output", second.to_str().unwrap()]), 0, "backup of PostgreSQL");
    let back = Semdex::embedded();
    assert_exit(&back.run(&["restore", second.to_str().unwrap()]), 0, "restore into SQLite");
    assert_eq!(hits(&back.json(&query)), before);
}
