//! Test support shared by the daemon's integration tests: a fresh PostgreSQL database per test
//! (from the server `scripts/test-postgres.sh` provisions) and a temporary SQLite file.
//! See main.rs.

// Each test binary uses a different part of this module.
#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};

use sqlx::Connection;

/// The variable naming the admin URL of the test server (set by `scripts/test.sh`).
pub const DATABASE_URL_VAR: &str = "SEMDEX_TEST_DATABASE_URL";

/// Creates a fresh, uniquely named database on the test server and returns its URL, so tests
/// run in parallel without seeing each other's rows. Returns `None` when no server is configured;
/// under `CI=true` that is a failure instead, because no PostgreSQL test may be skipped in CI.
///
/// Each test runs in a process of its own (nextest), whose id is in the database's name. A test
/// cannot drop its database on the way out (it may be panicking, and the pools close in the
/// background), so each new one first drops those whose process has ended: the server then holds
/// about as many databases as tests run at once, not one per test run so far.
pub async fn pg_database() -> Option<String> {
    let Some(admin_url) = std::env::var(DATABASE_URL_VAR).ok().filter(|u| !u.is_empty()) else {
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            panic!(
                "{DATABASE_URL_VAR} is not set but CI=true: PostgreSQL tests must not be skipped in CI \
                 (run them through scripts/test.sh, which provisions a server)"
            );
        }
        eprintln!("skipping PostgreSQL test: {DATABASE_URL_VAR} is not set (scripts/test.sh sets it)");
        return None;
    };

    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let name = format!(
        "semdex_test_{}_{}_{:08x}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed),
        fastrand::u32(..)
    );
    let mut admin = sqlx::PgConnection::connect(&admin_url)
        .await
        .unwrap_or_else(|e| panic!("cannot connect to {DATABASE_URL_VAR}: {e}"));
    drop_databases_of_ended_tests(&mut admin).await;
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut admin)
        .await
        .unwrap_or_else(|e| panic!("cannot create test database {name}: {e}"));
    let _ = admin.close().await;
    Some(with_database(&admin_url, &name))
}

/// Drops the test databases whose creating process is gone. Errors are ignored: another test may
/// be dropping the same database, and a database left over costs only disk.
async fn drop_databases_of_ended_tests(admin: &mut sqlx::PgConnection) {
    let names: Vec<String> =
        sqlx::query_scalar(r"SELECT datname FROM pg_database WHERE datname LIKE 'semdex\_test\_%'")
            .fetch_all(&mut *admin)
            .await
            .unwrap_or_default();
    for name in names {
        let Some(pid) = name.strip_prefix("semdex_test_").and_then(|rest| rest.split('_').next()) else {
            continue;
        };
        if process_may_be_running(pid) {
            continue;
        }
        let _ =
            sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).execute(&mut *admin).await;
    }
}

/// Whether the process `pid` may still be running. Without `/proc` nothing is known, so yes.
fn process_may_be_running(pid: &str) -> bool {
    let proc = std::path::Path::new("/proc");
    !proc.join("self").exists() || proc.join(pid).exists()
}

/// `url` with its database replaced by `name`, keeping any query parameters.
fn with_database(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let authority_start = base.find("://").map_or(0, |i| i + 3);
    let server = match base[authority_start..].find('/') {
        Some(slash) => &base[..authority_start + slash],
        None => base,
    };
    match query {
        Some(query) => format!("{server}/{name}?{query}"),
        None => format!("{server}/{name}"),
    }
}

/// A temporary directory and the path of a (not yet created) SQLite file inside it; the file
/// goes away with the directory.
pub fn temp_sqlite() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("create a temporary directory");
    let path = dir.path().join("semdex.sqlite3");
    (dir, path)
}

#[test]
fn database_is_replaced_in_urls() {
    assert_eq!(with_database("postgres://u@h:5/postgres", "x"), "postgres://u@h:5/x");
    assert_eq!(with_database("postgres://u@h:5", "x"), "postgres://u@h:5/x");
    assert_eq!(with_database("postgres://h/db?sslmode=disable", "x"), "postgres://h/x?sslmode=disable");
}
