//! Backup and restore through the store: a backup taken from SQLite restored into PostgreSQL and
//! back into a fresh SQLite keeps every table's rows (vectors included) identical; damaged,
//! truncated or wrong-version files fail with a clear message and change nothing; a store
//! holding data is replaced only with `force`, all or nothing.

use std::path::Path;

use semdex::backup::{self, BackupError};
use semdex::store::{self as st, NewToken, PgStore, SqliteStore, Store, TermMatch};
use serde_json::{Value, json};

use crate::store::{file, project, scope};
use crate::support;

/// A migrated SQLite store in a fresh directory.
async fn sqlite() -> (tempfile::TempDir, SqliteStore) {
    let (dir, path) = support::temp_sqlite();
    let store = SqliteStore::open(&path).await.unwrap();
    store.migrate_up().await.unwrap();
    (dir, store)
}

/// A migrated PostgreSQL store on a fresh database, or `None` when no server is configured
/// (never under `CI=true`).
async fn postgres() -> Option<PgStore> {
    let url = support::pg_database().await?;
    let store = PgStore::connect(&url).await.unwrap();
    store.migrate_up().await.unwrap();
    Some(store)
}

/// Fills a store through its ordinary API: two projects with files, symbols (nested), imports,
/// chunks, a finished run with events, a token, embeddings, and the activity the triggers write.
async fn populate(store: &dyn Store) {
    let a = project(store, "alpha").await;
    let b = project(store, "beta").await;
    let run =
        store.create_run(a.id, "cli", None, Some("0123456789abcdef0123456789abcdef01234567")).await.unwrap();
    assert!(store.claim_run(run.id, "test", 60).await.unwrap());
    store
        .add_run_event(run.id, "walk", "start", Some("walking"), json!({"files": 3, "z": [1, 2]}))
        .await
        .unwrap();
    let files = [
        file("src/user.ts")
            .chunk("UserService", "export class UserService { createUser(name: string) {} }")
            .chunk("UserService.deleteUser", "deleteUser(id: string) { return db.remove(id); }")
            .symbol("UserService", "class", true, None)
            .symbol("UserService.deleteUser", "method", false, Some(0))
            .import("./db", Some("src/db.ts"), "static")
            .import("lodash", None, "require")
            .build(),
        file("src/db.ts").chunk("Database", "export class Database { remove(id) {} }").build(),
        file("src/ignored.min.js").skipped("generated").build(),
    ];
    for f in &files {
        store.replace_file(a.id, f, Some(run.id), Some("0123456789abcdef")).await.unwrap();
    }
    store
        .replace_file(
            b.id,
            &file("lib/x.js").language("javascript").chunk("", "let x = 1;").build(),
            None,
            None,
        )
        .await
        .unwrap();
    store.finish_run(run.id, st::RunStatus::Succeeded, None).await.unwrap();
    store.set_last_indexed_commit(a.id, Some("0123456789abcdef")).await.unwrap();
    let model = store.register_model("builtin", "semdex-lexical", 8).await.unwrap();
    let pending = store.pending_embeddings(model.id, None, None, 100).await.unwrap();
    assert!(pending.len() >= 4);
    let vectors: Vec<(String, Vec<f32>)> = pending
        .iter()
        .enumerate()
        .map(|(i, (h, _))| (h.clone(), (0..8).map(|d| ((i * 8 + d) as f32 * 0.37).sin() / 3.0).collect()))
        .collect();
    // Every input mode, so the round trips carry each.
    let modes: Vec<st::InputMode> = (0..vectors.len())
        .map(|i| [st::InputMode::Whole, st::InputMode::Split, st::InputMode::Truncated][i % 3])
        .collect();
    store.put_embeddings_with_modes(model.id, &vectors, &modes).await.unwrap();
    let token = store
        .create_token(NewToken {
            name: "ci".into(),
            token_hash: st_hash("token"),
            prefix: "sdx_ab".into(),
            scopes: vec!["read".into(), "write".into()],
            ..NewToken::default()
        })
        .await
        .unwrap();
    assert!(store.revoke_token(token.id).await.unwrap());
}

fn st_hash(text: &str) -> String {
    blake3::hash(text.as_bytes()).to_hex().to_string()
}

/// Rows the store API cannot write (accounts, members, commits, agent work), added to a backup
/// file. A task's parent comes after it, so restore must not need parents first.
fn extra_rows() -> Vec<(&'static str, Value)> {
    let t = "2024-05-06T07:08:09.123000Z";
    vec![
        (
            "users",
            json!({"id": 1, "email": "ada@example.com", "username": "ada", "display_name": "Ada",
            "github_username": "ada", "is_active": true, "is_admin": false, "preferences": {"theme": "dark", "a": 1},
            "last_login_at": null, "created_at": t, "updated_at": t}),
        ),
        ("project_members", json!({"project_id": 1, "user_id": 1, "role": "admin", "created_at": t})),
        (
            "commits",
            json!({"id": 1, "project_id": 1, "sha": "0123456789abcdef", "parents": ["fedcba9876543210"],
            "message": "init", "author_name": "Ada", "author_email": "ada@example.com", "branch": "main",
            "committed_at": t, "files_changed": 3, "additions": 10, "deletions": 0, "created_at": t}),
        ),
        (
            "agents",
            json!({"id": 1, "name": "reviewer", "kind": "assistant", "model": "m", "config": {"k": [1]},
            "is_active": true, "created_at": t, "updated_at": t}),
        ),
        (
            "tasks",
            json!({"id": 1, "project_id": 1, "parent_id": 2, "title": "child", "description": "",
            "status": "pending", "priority": 1, "assigned_agent_id": 1, "created_by": 1, "created_at": t,
            "updated_at": t, "completed_at": null}),
        ),
        (
            "tasks",
            json!({"id": 2, "project_id": 1, "parent_id": null, "title": "parent", "description": "d",
            "status": "done", "priority": 0, "assigned_agent_id": null, "created_by": null, "created_at": t,
            "updated_at": t, "completed_at": t}),
        ),
        (
            "executions",
            json!({"id": 1, "task_id": 1, "agent_id": 1, "status": "succeeded", "input_tokens": 100,
            "output_tokens": 20, "cost_usd": 0.0125, "duration_ms": 1500, "error": null, "started_at": t,
            "finished_at": t}),
        ),
        (
            "reviews",
            json!({"id": 1, "project_id": 1, "commit_id": 1, "reviewer_agent_id": 1,
            "reviewer_user_id": 1, "score": 87, "summary": "ok", "issues": [{"line": 3, "msg": "x"}],
            "suggestions": [], "created_at": t, "updated_at": t}),
        ),
    ]
}

/// The lines of a backup file, parsed.
fn read_lines(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

/// Writes `header` and `rows` as a backup with a correct trailer (rows must be in table order).
fn seal(path: &Path, header: &Value, rows: &[(String, Value)]) {
    let mut text = String::new();
    text.push_str(&header.to_string());
    text.push('\n');
    let mut counts: serde_json::Map<String, Value> =
        st::TABLES.iter().map(|t| (t.name.to_string(), json!(0))).collect();
    for (table, row) in rows {
        text.push_str(&json!({"table": table, "row": row}).to_string());
        text.push('\n');
        let n = counts[table.as_str()].as_u64().unwrap();
        counts.insert(table.clone(), json!(n + 1));
    }
    let checksum = blake3::hash(text.as_bytes()).to_hex().to_string();
    text.push_str(&json!({"trailer": {"rows": counts, "blake3": checksum}}).to_string());
    text.push('\n');
    std::fs::write(path, text).unwrap();
}

/// A backup's header and rows.
fn unseal(path: &Path) -> (Value, Vec<(String, Value)>) {
    let mut lines = read_lines(path);
    lines.pop();
    let header = lines.remove(0);
    let rows =
        lines.into_iter().map(|l| (l["table"].as_str().unwrap().to_string(), l["row"].clone())).collect();
    (header, rows)
}

/// Adds [`extra_rows`] to a backup, keeping table order.
fn add_extra_rows(path: &Path) {
    let (header, mut rows) = unseal(path);
    rows.extend(extra_rows().into_iter().map(|(t, r)| (t.to_string(), r)));
    let order = |t: &str| st::TABLES.iter().position(|s| s.name == t).unwrap();
    rows.sort_by_key(|(t, _)| order(t)); // stable: rows keep their order within a table
    seal(path, &header, &rows);
}

/// Per table: row count and a blake3 of every row in canonical form, read through a snapshot
/// in small pages (so keyset pagination is exercised).
async fn checksums(store: &dyn Store) -> Vec<(String, u64, String)> {
    let mut snapshot = store.begin_export().await.unwrap();
    let mut out = Vec::new();
    for spec in st::TABLES {
        let mut hasher = blake3::Hasher::new();
        let mut count = 0;
        let mut after: Option<Vec<i64>> = None;
        loop {
            let rows = snapshot.export_rows(spec.name, after.as_deref(), 3).await.unwrap();
            for row in &rows {
                hasher.update(serde_json::to_string(row).unwrap().as_bytes());
                count += 1;
            }
            if rows.len() < 3 {
                break;
            }
            after = Some(st::row_key(spec, rows.last().unwrap()).unwrap());
        }
        out.push((spec.name.to_string(), count, hasher.finalize().to_hex().to_string()));
    }
    out
}

fn count(sums: &[(String, u64, String)], table: &str) -> u64 {
    sums.iter().find(|(t, _, _)| t == table).unwrap().1
}

/// A restored store works as a live one: search finds restored chunks, vectors read back, new
/// rows get fresh ids and the stats and activity triggers are back on.
async fn check_live(store: &dyn Store) {
    let alpha = store.project_by_name("alpha").await.unwrap().expect("alpha restored");
    assert_eq!((alpha.total_files, alpha.total_chunks), (3, 3));
    let hits =
        store.lexical_search(&["deleteuser".into()], TermMatch::Any, &scope(&[alpha.id]), 10).await.unwrap();
    assert_eq!(hits.len(), 1, "full-text index rebuilt");
    let model = store.register_model("builtin", "semdex-lexical", 8).await.unwrap();
    let page = store.embeddings_page(model.id, 0, 100).await.unwrap();
    assert_eq!(page.len(), 4);
    assert!(page.iter().all(|(_, _, v)| v.len() == 8 && v.iter().any(|x| *x != 0.0)));

    let activity_before = store.activity(None, None, 1000).await.unwrap().len();
    let gamma = project(store, "gamma").await;
    assert!(gamma.id > alpha.id, "ids continue after the restored ones");
    store.replace_file(gamma.id, &file("a.ts").chunk("", "let a = 1;").build(), None, None).await.unwrap();
    let gamma = store.project(gamma.id).await.unwrap().unwrap();
    assert_eq!((gamma.total_files, gamma.total_chunks), (1, 1), "stats triggers are back on");
    assert_eq!(store.activity(None, None, 1000).await.unwrap().len(), activity_before + 1);
}

#[tokio::test]
async fn sqlite_to_postgres_and_back_keeps_every_row() {
    let work = tempfile::tempdir().unwrap();
    let first = work.path().join("first.jsonl");

    // The source: a populated SQLite plus rows only a backup can carry.
    let (_d0, origin) = sqlite().await;
    populate(&origin).await;
    backup::backup(&origin, &first).await.unwrap();
    add_extra_rows(&first);
    let (_d1, source) = sqlite().await;
    backup::restore(&source, &first, false).await.unwrap();
    let expected = checksums(&source).await;
    for (table, rows, _) in &expected {
        assert!(*rows > 0, "{table} is empty in the source: the round trip would not cover it");
    }

    let from_sqlite = work.path().join("from-sqlite.jsonl");
    let summary = backup::backup(&source, &from_sqlite).await.unwrap();
    assert_eq!(summary.header.backend, "sqlite");
    assert_eq!(
        summary.rows.iter().map(|(t, n)| (t.clone(), *n)).collect::<Vec<_>>(),
        expected.iter().map(|(t, n, _)| (t.clone(), *n)).collect::<Vec<_>>()
    );

    let back_from = match postgres().await {
        Some(pg) => {
            backup::restore(&pg, &from_sqlite, false).await.unwrap();
            assert_eq!(checksums(&pg).await, expected, "SQLite -> PostgreSQL changed rows");
            let from_pg = work.path().join("from-pg.jsonl");
            let summary = backup::backup(&pg, &from_pg).await.unwrap();
            assert_eq!(summary.header.backend, "postgres");
            check_live(&pg).await;
            from_pg
        }
        None => from_sqlite,
    };
    let (_d2, target) = sqlite().await;
    backup::restore(&target, &back_from, false).await.unwrap();
    assert_eq!(checksums(&target).await, expected, "back into SQLite changed rows");
    // The triggers held off during the restore are back, exactly as the migration made them.
    let (_d3, fresh) = sqlite().await;
    assert_eq!(target.schema_dump().await.unwrap(), fresh.schema_dump().await.unwrap());
    check_live(&target).await;
}

/// A backup written at schema version 1, before embeddings recorded their input mode, restores
/// into the current schema with every embedding read as sent whole.
#[tokio::test]
async fn a_backup_from_schema_version_1_restores_with_whole_inputs() {
    let work = tempfile::tempdir().unwrap();
    let (_d0, origin) = sqlite().await;
    populate(&origin).await;
    let current = work.path().join("current.jsonl");
    backup::backup(&origin, &current).await.unwrap();

    // As 0001 wrote it: no input_mode column.
    let (mut header, mut rows) = unseal(&current);
    header["schema_version"] = json!(1);
    for (table, row) in &mut rows {
        if table == "embeddings" {
            assert!(row.as_object_mut().unwrap().remove("input_mode").is_some());
        }
    }
    let old = work.path().join("v1.jsonl");
    seal(&old, &header, &rows);
    assert_eq!(backup::validate(&old).unwrap().header.schema_version, 1);

    let mut targets: Vec<Box<dyn Store>> = Vec::new();
    let (_d1, sqlite_target) = sqlite().await;
    targets.push(Box::new(sqlite_target));
    if let Some(pg) = postgres().await {
        targets.push(Box::new(pg));
    }
    for target in &targets {
        backup::restore(target.as_ref(), &old, false).await.unwrap();
        let model = target.register_model("builtin", "semdex-lexical", 8).await.unwrap();
        let hashes: Vec<String> =
            target.embeddings_page(model.id, 0, 100).await.unwrap().into_iter().map(|(_, h, _)| h).collect();
        assert_eq!(hashes.len(), 4);
        let modes = target.embedding_input_modes(model.id, &hashes).await.unwrap();
        assert_eq!(modes.len(), 4);
        assert!(modes.iter().all(|(_, m)| *m == st::InputMode::Whole), "{modes:?}");
        // The rest is as in the current backup, row for row.
        let (_, now) = unseal(&current);
        let mut restored = work.path().join("again.jsonl");
        restored.set_extension(format!("{}.jsonl", target.status().await.unwrap().backend.name()));
        backup::backup(target.as_ref(), &restored).await.unwrap();
        let (_, again) = unseal(&restored);
        let without_modes = |rows: Vec<(String, Value)>| -> Vec<(String, Value)> {
            rows.into_iter()
                .map(|(t, mut r)| {
                    if t == "embeddings" {
                        r.as_object_mut().unwrap().remove("input_mode");
                    }
                    (t, r)
                })
                .collect()
        };
        assert_eq!(without_modes(again), without_modes(now));
    }
}

/// Ways a backup file can be damaged, each with the words its error must contain.
fn damaged_copies(dir: &Path, good: &Path) -> Vec<(String, std::path::PathBuf, &'static str)> {
    let text = std::fs::read_to_string(good).unwrap();
    let mut out = Vec::new();
    let mut put = |name: &str, contents: String, expect: &'static str| {
        let path = dir.join(name);
        std::fs::write(&path, contents).unwrap();
        out.push((name.to_string(), path, expect));
    };
    put("cut-mid-line", text[..text.len() / 2].to_string(), "truncated");
    let without_trailer: String = {
        let mut lines: Vec<&str> = text.lines().collect();
        lines.pop();
        lines.iter().map(|l| format!("{l}\n")).collect()
    };
    put("no-trailer", without_trailer, "no trailer");
    put("flipped-content", text.replacen("deleteUser", "deleteUsex", 1), "checksum");
    put("not-json", text.replacen("\"table\":\"files\"", "\"table\";\"files\"", 1), "not JSON");
    put("wrong-version", text.replacen("\"version\":1", "\"version\":2", 1), "version 2");
    put("not-a-backup", "hello\n".to_string(), "not a semdex backup");
    put("empty", String::new(), "empty");
    put("unknown-table", text.replacen("\"table\":\"files\"", "\"table\":\"filez\"", 1), "unknown table");
    put("after-trailer", format!("{text}{{}}\n"), "after the trailer");
    out
}

async fn check_bad_files_change_nothing(store: &dyn Store) {
    populate(store).await;
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.jsonl");
    backup::backup(store, &good).await.unwrap();
    let before = checksums(store).await;

    for (name, path, expect) in damaged_copies(dir.path(), &good) {
        let err = backup::restore(store, &path, true).await.expect_err(&name);
        assert!(err.to_string().contains(expect), "{name}: {err}");
        assert!(backup::validate(&path).is_err(), "{name} validates");
        assert_eq!(checksums(store).await, before, "{name} changed the store");
    }

    // Valid as a file but not as data (chunks without their files): the database refuses it
    // midway, and the wipe that --force did first is rolled back with everything else.
    let (header, rows) = unseal(&good);
    let orphans: Vec<(String, Value)> = rows.into_iter().filter(|(t, _)| t != "files").collect();
    let bad_data = dir.path().join("orphans.jsonl");
    seal(&bad_data, &header, &orphans);
    backup::validate(&bad_data).unwrap();
    let err = backup::restore(store, &bad_data, true).await.expect_err("orphan rows restored");
    assert!(matches!(err, BackupError::Store(st::StoreError::Invalid(_))), "{err:?}");
    assert_eq!(checksums(store).await, before, "a failed restore changed the store");

    // A backup from another schema version is refused before anything is touched.
    let (mut header, rows) = unseal(&good);
    header["schema_version"] = json!(99);
    let future = dir.path().join("future.jsonl");
    seal(&future, &header, &rows);
    let err = backup::restore(store, &future, true).await.unwrap_err();
    assert!(matches!(err, BackupError::SchemaMismatch { found: 99, .. }), "{err}");
    assert_eq!(checksums(store).await, before);
}

async fn check_non_empty_needs_force(store: &dyn Store) {
    let (_d, other) = sqlite().await;
    populate(&other).await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("other.jsonl");
    backup::backup(&other, &path).await.unwrap();
    let wanted = checksums(&other).await;

    // Any row makes a store non-empty, here a single project.
    project(store, "mine").await;
    let before = checksums(store).await;
    let err = backup::restore(store, &path, false).await.unwrap_err();
    assert!(err.to_string().contains("not empty") && err.to_string().contains("--force"), "{err}");
    assert_eq!(checksums(store).await, before);

    backup::restore(store, &path, true).await.unwrap();
    assert_eq!(checksums(store).await, wanted, "--force replaces the contents exactly");
    assert!(store.project_by_name("mine").await.unwrap().is_none());
    assert_eq!(count(&wanted, "activity_log"), count(&checksums(store).await, "activity_log"));
}

#[tokio::test]
async fn sqlite_bad_files_fail_clearly_and_change_nothing() {
    let (_d, store) = sqlite().await;
    check_bad_files_change_nothing(&store).await;
}

#[tokio::test]
async fn postgres_bad_files_fail_clearly_and_change_nothing() {
    let Some(store) = postgres().await else { return };
    check_bad_files_change_nothing(&store).await;
}

#[tokio::test]
async fn sqlite_non_empty_target_needs_force() {
    let (_d, store) = sqlite().await;
    check_non_empty_needs_force(&store).await;
}

#[tokio::test]
async fn postgres_non_empty_target_needs_force() {
    let Some(store) = postgres().await else { return };
    check_non_empty_needs_force(&store).await;
}

#[tokio::test]
async fn backup_of_an_unmigrated_store_is_refused() {
    let (_dir, path) = support::temp_sqlite();
    let store = SqliteStore::open(&path).await.unwrap();
    let out = path.with_file_name("b.jsonl");
    let err = backup::backup(&store, &out).await.unwrap_err();
    assert!(err.to_string().contains("semdex migrate up"), "{err}");
    assert!(!out.exists());
}

/// `url` with its user replaced by `user` (no password: the test server trusts loopback).
fn with_user(url: &str, user: &str) -> String {
    let start = url.find("://").map_or(0, |i| i + 3);
    let authority_end = url[start..].find('/').map_or(url.len(), |i| start + i);
    let host = match url[start..authority_end].rfind('@') {
        Some(at) => &url[start + at + 1..],
        None => &url[start..],
    };
    format!("{}{user}@{host}", &url[..start])
}

/// A server without pgvector (as a role that cannot create it) keeps vectors as `real[]`; a
/// restore there, by a role that owns the schema but is no superuser, keeps every row too.
#[tokio::test]
async fn restore_into_postgres_without_pgvector_as_a_plain_owner() {
    use sqlx::Connection;
    let Some(url) = support::pg_database().await else { return };
    let role = format!("semdex_restore_{:08x}", fastrand::u32(..));
    let mut admin = sqlx::PgConnection::connect(&url).await.unwrap();
    let db: String =
        sqlx::query_scalar("SELECT current_database()::text").fetch_one(&mut admin).await.unwrap();
    sqlx::query(&format!("CREATE ROLE {role} LOGIN")).execute(&mut admin).await.unwrap();
    sqlx::query(&format!("ALTER DATABASE {db} OWNER TO {role}")).execute(&mut admin).await.unwrap();

    let (_d, source) = sqlite().await;
    populate(&source).await;
    let expected = checksums(&source).await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("b.jsonl");
    backup::backup(&source, &path).await.unwrap();

    let store = PgStore::connect(&with_user(&url, &role)).await.unwrap();
    store.migrate_up().await.unwrap();
    assert!(!store.has_pgvector_column().await.unwrap());
    backup::restore(&store, &path, false).await.unwrap();
    assert_eq!(checksums(&store).await, expected);
    check_live(&store).await;

    store.close().await;
    sqlx::query(&format!("ALTER DATABASE {db} OWNER TO CURRENT_USER")).execute(&mut admin).await.unwrap();
    sqlx::query(&format!("REASSIGN OWNED BY {role} TO CURRENT_USER")).execute(&mut admin).await.unwrap();
    sqlx::query(&format!("DROP ROLE {role}")).execute(&mut admin).await.unwrap();
}
