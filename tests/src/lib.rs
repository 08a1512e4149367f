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
        self.command_for(semdex_bin())
    }

    /// `program` (a script or a wrapper of semdex) with the environment [`Semdex::command`] gives.
    pub fn command_for(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut cmd = Command::new(program);
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

impl Semdex {
    /// What must be identical between an index that recovered (from a crash, a full disk) and a
    /// clean one: the row counts, the projects, and the top semantic results of a few queries.
    pub fn fingerprint(&self) -> serde_json::Value {
        use serde_json::{Value, json};
        const QUERIES: [&str; 3] =
            ["hash a password", "send an email notification", "parse the configuration"];
        const TABLES: [&str; 5] = ["files", "symbols", "imports", "chunks", "embeddings"];
        let status = self.json(&["status", "--json"]);
        let rows: Vec<Value> = TABLES.iter().map(|t| json!([t, status["rows"][t]])).collect();
        let projects = status["projects"].clone();
        let searches: Vec<Value> = QUERIES
            .iter()
            .map(|q| {
                let found = self.json(&["search", q, "--mode", "semantic", "--top-k", "5", "--json"]);
                found["results"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|r| json!([r["path"], r["start_line"], r["end_line"]]))
                    .collect()
            })
            .collect();
        json!({ "rows": rows, "projects": projects, "searches": searches })
    }
}

/// A running `semdex serve`, stopped (killed) when dropped.
pub struct Daemon {
    pub child: std::process::Child,
    /// `http://127.0.0.1:PORT`
    pub base: String,
    client: reqwest::blocking::Client,
    token: Option<String>,
}

impl Semdex {
    /// Starts `semdex serve` on a free loopback port with extra environment, and waits until
    /// it prints the address it listens on.
    pub fn serve(&self, env: &[(&str, &str)]) -> Daemon {
        self.serve_with(self.command(), env)
    }

    /// [`Semdex::serve`] with every file the daemon writes limited to `kib` KiB: a soft
    /// `ulimit -f` with SIGXFSZ ignored, so writes past it fail as on a full disk, until
    /// [`Daemon::lift_file_size_limit`].
    pub fn serve_with_file_size_limit(&self, kib: u64, env: &[(&str, &str)]) -> Daemon {
        self.serve_with(self.with_file_size_limit(kib), env)
    }

    /// This instance's command run through bash under a soft file size limit of `kib` KiB, with
    /// SIGXFSZ ignored (a write past the limit then fails with an error instead of killing).
    pub fn with_file_size_limit(&self, kib: u64) -> Command {
        let mut cmd = self.command_for("bash");
        cmd.args(["-c", "trap '' XFSZ; ulimit -S -f \"$0\"; exec \"$@\""])
            .arg(kib.to_string())
            .arg(semdex_bin());
        cmd
    }

    fn serve_with(&self, mut cmd: Command, env: &[(&str, &str)]) -> Daemon {
        use std::io::BufRead;
        cmd.arg("serve").env("SEMDEX_LISTEN", "127.0.0.1:0");
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::inherit())
            .spawn()
            .expect("starting semdex serve");
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = std::io::BufReader::new(stdout).lines();
            if let Some(Ok(line)) = lines.next() {
                let _ = tx.send(line);
            }
            // Keep draining so the daemon never blocks on a full pipe.
            for _ in lines {}
        });
        let line = match rx.recv_timeout(std::time::Duration::from_secs(60)) {
            Ok(line) => line,
            Err(_) => {
                let _ = child.kill();
                panic!("semdex serve did not report its address");
            }
        };
        let base = line
            .strip_prefix("semdex listening on ")
            .unwrap_or_else(|| panic!("unexpected first line from semdex serve: {line:?}"))
            .to_string();
        let client = reqwest::blocking::Client::builder()
            .timeout(std::time::Duration::from_secs(60))
            .build()
            .expect("http client");
        Daemon { child, base, client, token: None }
    }
}

impl Daemon {
    /// Sends `Authorization: Bearer token` from now on.
    pub fn with_token(mut self, token: &str) -> Daemon {
        self.token = Some(token.to_string());
        self
    }

    pub fn request(
        &self,
        method: &str,
        path: &str,
        body: Option<&serde_json::Value>,
    ) -> (u16, serde_json::Value) {
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let mut req = self.client.request(method, format!("{}{}", self.base, path));
        if let Some(token) = &self.token {
            req = req.bearer_auth(token);
        }
        if let Some(body) = body {
            req = req.json(body);
        }
        let resp = req.send().unwrap_or_else(|e| panic!("{path}: {e}"));
        let status = resp.status().as_u16();
        let text = resp.text().expect("response body");
        let json = if text.is_empty() {
            serde_json::Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text))
        };
        (status, json)
    }

    pub fn get(&self, path: &str) -> (u16, serde_json::Value) {
        self.request("GET", path, None)
    }

    pub fn post(&self, path: &str, body: &serde_json::Value) -> (u16, serde_json::Value) {
        self.request("POST", path, Some(body))
    }

    /// Lifts the limit set by [`Semdex::serve_with_file_size_limit`] (`prlimit`, util-linux).
    pub fn lift_file_size_limit(&self) {
        let status = Command::new("prlimit")
            .args(["--pid", &self.child.id().to_string(), "--fsize=unlimited:"])
            .status()
            .expect("running prlimit");
        assert!(status.success(), "prlimit could not lift the file size limit");
    }

    /// Polls a run until it finishes and returns it.
    pub fn wait_run(&self, run_id: i64) -> serde_json::Value {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
        loop {
            let (status, run) = self.get(&format!("/v1/runs/{run_id}"));
            assert_eq!(status, 200, "{run}");
            if !matches!(run["status"].as_str(), Some("queued" | "running")) {
                return run;
            }
            assert!(std::time::Instant::now() < deadline, "run {run_id} did not finish: {run}");
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }

    /// Sends SIGTERM and waits for the exit status.
    pub fn terminate(mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        // The shell's own `kill`: no dependency on a separate kill binary being installed.
        let _ = Command::new("sh").args(["-c", &format!("kill -TERM {pid}")]).status();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        loop {
            if let Some(status) = self.child.try_wait().expect("waiting for semdex") {
                return status;
            }
            assert!(std::time::Instant::now() < deadline, "semdex serve did not stop after SIGTERM");
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The size of the largest file under `dir`, in bytes.
pub fn largest_file(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .expect("read folder")
        .map(|entry| {
            let entry = entry.expect("folder entry");
            let meta = entry.metadata().expect("metadata");
            if meta.is_dir() { largest_file(&entry.path()) } else { meta.len() }
        })
        .max()
        .unwrap_or(0)
}

/// Copies a folder recursively (regular files and folders only).
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("create folder");
    for entry in std::fs::read_dir(from).expect("read folder") {
        let entry = entry.expect("folder entry");
        let kind = entry.file_type().expect("file type");
        let target = to.join(entry.file_name());
        if kind.is_dir() {
            copy_dir(&entry.path(), &target);
        } else if kind.is_file() {
            std::fs::copy(entry.path(), &target).expect("copy file");
        }
    }
}

/// A repository of `copies` copies of the `ts-app` fixture under `pkg<i>/`, each source file
/// given a distinct trailing comment so every copy is new text to chunk and embed.
pub fn corpus(copies: usize) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    for i in 0..copies {
        let root = dir.path().join(format!("pkg{i}"));
        copy_dir(&fixture("ts-app"), &root);
        mark_sources(&root, i);
    }
    dir
}

fn mark_sources(dir: &Path, copy: usize) {
    for entry in std::fs::read_dir(dir).expect("read folder") {
        let path = entry.expect("folder entry").path();
        if path.is_dir() {
            mark_sources(&path, copy);
        } else if path.extension().is_some_and(|e| e == "ts" || e == "tsx" || e == "js") {
            let mut text = std::fs::read_to_string(&path).unwrap_or_default();
            if text.is_empty() {
                continue;
            }
            text.push_str(&format!("\n// copy {copy}\n"));
            std::fs::write(&path, text).expect("write file");
        }
    }
}

/// Polls `check` every 50 ms until it holds, failing after 30 s with `what` the index did not
/// follow (the daemon follows hooks and the watcher asynchronously).
pub fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !check() {
        assert!(std::time::Instant::now() < deadline, "the index did not follow: {what}");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// The number of files under `dir`, recursively.
pub fn count_files(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .expect("read folder")
        .map(|e| {
            let p = e.expect("folder entry").path();
            if p.is_dir() { count_files(&p) } else { 1 }
        })
        .sum()
}
