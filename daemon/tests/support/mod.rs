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
/// Databases are not dropped afterwards: the provisioned server is thrown away as a whole.
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
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut admin)
        .await
        .unwrap_or_else(|e| panic!("cannot create test database {name}: {e}"));
    let _ = admin.close().await;
    Some(with_database(&admin_url, &name))
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
