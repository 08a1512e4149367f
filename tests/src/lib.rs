//! Support code for the end-to-end tests in `tests/tests/`: finding the real `semdex` binary,
//! running it with an isolated data directory, and reading its JSON output.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The workspace root.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("tests/ has a parent").to_path_buf()
}

/// A folder under `fixtures/`.
pub fn fixture(name: &str) -> PathBuf {
    workspace_root().join("fixtures").join(name)
}

/// The `semdex` binary of this build, built on demand when the test run did not build it.
/// `SEMDEX_BIN` names another binary instead (useful when several checkouts share one target
/// directory and `target/<profile>/semdex` may belong to another one).
pub fn semdex_bin() -> PathBuf {
    if let Some(bin) = std::env::var_os("SEMDEX_BIN").filter(|b| !b.is_empty()) {
        return PathBuf::from(bin);
    }
    let exe = std::env::current_exe().expect("test binary path");
    // target/<profile>/deps/<test> -> target/<profile>/semdex
    let profile_dir = exe.parent().and_then(Path::parent).expect("target/<profile>");
    let bin = profile_dir.join(format!("semdex{}", std::env::consts::EXE_SUFFIX));
    if !bin.exists() {
        let status = Command::new(env!("CARGO"))
            .args(["build", "-p", "semdex", "--bin", "semdex"])
            .current_dir(workspace_root())
            .status()
            .expect("running cargo build");
        assert!(status.success(), "building the semdex binary failed");
    }
    bin
}

/// Writes `text` to `root/rel`, creating parent folders: how tests lay out a repository.
pub fn write_file(root: &Path, rel: &str, text: &str) {
    let path = root.join(rel);
    std::fs::create_dir_all(path.parent().expect("a relative path with a parent")).expect("create folders");
    std::fs::write(path, text).expect("write file");
}

/// A `semdex` invocation with its own data directory and no inherited configuration.
pub struct Semdex {
    pub data_dir: tempfile::TempDir,
    pub database_url: Option<String>,
}

impl Semdex {
    /// An embedded-mode instance with a fresh data directory.
    pub fn embedded() -> Semdex {
        Semdex { data_dir: tempfile::tempdir().expect("tempdir"), database_url: None }
    }

    /// A server-mode instance on the given database.
    pub fn server(database_url: String) -> Semdex {
        Semdex { data_dir: tempfile::tempdir().expect("tempdir"), database_url: Some(database_url) }
    }

    /// The command with a clean environment: only PATH and HOME survive, plus the data dir
    /// and database URL of this instance.
    pub fn command(&self) -> Command {
        let mut cmd = Command::new(semdex_bin());
        cmd.env_clear();
        for key in ["PATH", "HOME"] {
            if let Some(v) = std::env::var_os(key) {
                cmd.env(key, v);
            }
        }
        cmd.env("SEMDEX_DATA_DIR", self.data_dir.path());
        // A small dimension keeps the tests fast; the default (3072) is exercised elsewhere.
        cmd.env("SEMDEX_EMBEDDING_DIMS", "256");
        if let Some(url) = &self.database_url {
            cmd.env("SEMDEX_DATABASE_URL", url);
        }
        cmd
    }

    /// Runs with `args` and returns the output; panics with stderr when it cannot start.
    pub fn run(&self, args: &[&str]) -> Output {
        self.command().args(args).output().expect("running semdex")
    }

    /// Runs with `args`, asserts success, and parses stdout as JSON.
    pub fn json(&self, args: &[&str]) -> serde_json::Value {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "semdex {args:?} failed ({}):\nstdout: {}\nstderr: {}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!("semdex {args:?} printed invalid JSON ({e}): {}", String::from_utf8_lossy(&out.stdout))
        })
    }
}
