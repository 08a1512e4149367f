//! Git hooks against real `git` in temporary repositories: install and uninstall (idempotence,
//! chaining a hook that was there, `core.hooksPath`), the notifications a commit, merge,
//! checkout, amend and rebase produce, delivery to a live HTTP server or the spool when no daemon
//! answers, and `accept` on SQLite and PostgreSQL.
//!
//! Every git command runs with an empty global and system configuration, and with
//! `SEMDEX_LISTEN` on a closed port and `SEMDEX_DATA_DIR` in the test's temporary directory, so
//! the installed hooks never reach a real daemon on this machine. Hooks notify in the
//! background: tests poll the spool until the expected notification appears, with a generous
//! deadline that only a broken hook reaches.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use semdex::hooks::{self, GitNotification, InstallAction, UninstallAction};
use semdex::store::{NewProject, PgStore, RunStatus, SqliteStore, Store};

use crate::support;

const SEMDEX: &str = env!("CARGO_BIN_EXE_semdex");

/// How long a test waits for a background hook before failing.
const HOOK_DEADLINE: Duration = Duration::from_secs(30);

/// A port nothing listens on: bound, then released.
fn closed_port() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    drop(listener);
    addr.to_string()
}

/// A git repository in a temporary directory, with a data directory beside it.
struct Repo {
    _dir: tempfile::TempDir,
    root: PathBuf,
    data: PathBuf,
    /// Extra environment for every command (`SEMDEX_LISTEN`, `SEMDEX_TOKEN`, ...).
    env: BTreeMap<String, String>,
    /// Commits made through [`Repo::commit`], which dates each a minute after the one before so
    /// that commit times order them.
    commits: std::cell::Cell<i64>,
}

impl Repo {
    fn new() -> Repo {
        let dir = tempfile::tempdir().expect("temp dir");
        let base = std::fs::canonicalize(dir.path()).expect("canonical temp dir");
        let root = base.join("repo");
        let data = base.join("data");
        std::fs::create_dir_all(&root).unwrap();
        let mut env = BTreeMap::new();
        env.insert("SEMDEX_LISTEN".to_string(), closed_port());
        env.insert("SEMDEX_DATA_DIR".to_string(), data.to_string_lossy().into_owned());
        let repo = Repo { _dir: dir, root, data, env, commits: std::cell::Cell::new(0) };
        repo.git(&["-c", "init.defaultBranch=main", "init", "-q"]);
        repo
    }

    fn command(&self, program: &str) -> Command {
        let mut cmd = Command::new(program);
        cmd.current_dir(&self.root)
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_AUTHOR_NAME", "Ada Lovelace")
            .env("GIT_AUTHOR_EMAIL", "ada@example.com")
            .env("GIT_COMMITTER_NAME", "Ada Lovelace")
            .env("GIT_COMMITTER_EMAIL", "ada@example.com")
            .env("GIT_EDITOR", "true")
            .env("GIT_TERMINAL_PROMPT", "0")
            .env_remove("SEMDEX_TOKEN")
            .env_remove("SEMDEX_CONFIG")
            .env_remove("SEMDEX_LOG")
            .env_remove("GIT_DIR")
            .env_remove("GIT_WORK_TREE");
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        cmd
    }

    /// Runs git, whatever its exit status.
    fn git_output(&self, args: &[&str]) -> Output {
        self.command("git").args(args).output().expect("run git")
    }

    /// Runs git, which must succeed; returns its trimmed standard output.
    fn git(&self, args: &[&str]) -> String {
        let out = self.git_output(args);
        assert!(
            out.status.success(),
            "git {args:?} failed: {}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    }

    fn semdex(&self, args: &[&str]) -> Output {
        self.command(SEMDEX).args(args).output().expect("run semdex")
    }

    fn write(&self, path: &str, contents: &str) {
        let path = self.root.join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, contents).unwrap();
    }

    /// Stages everything and commits; returns the new HEAD.
    fn commit(&self, message: &str) -> String {
        self.git(&["add", "-A"]);
        let n = self.commits.get() + 1;
        self.commits.set(n);
        let date = format!("@{} +0000", 1_700_000_000 + n * 60);
        let out = self
            .command("git")
            .args(["commit", "-q", "-m", message])
            .env("GIT_AUTHOR_DATE", &date)
            .env("GIT_COMMITTER_DATE", &date)
            .output()
            .expect("run git commit");
        assert!(out.status.success(), "git commit failed: {}", String::from_utf8_lossy(&out.stderr));
        self.head()
    }

    fn head(&self) -> String {
        self.git(&["rev-parse", "HEAD"])
    }

    fn hooks_dir(&self) -> PathBuf {
        self.root.join(".git/hooks")
    }

    fn install(&self) -> hooks::InstallReport {
        hooks::install(&self.root, Path::new(SEMDEX), None).expect("install hooks")
    }

    fn root_text(&self) -> String {
        self.root.to_string_lossy().into_owned()
    }

    /// Waits until the spool holds a notification matching `want`, and returns it.
    fn wait_for(&self, what: &str, want: impl Fn(&GitNotification) -> bool) -> GitNotification {
        let start = Instant::now();
        loop {
            let spooled = hooks::read_spool(&self.data);
            if let Some((_, n)) = spooled.iter().find(|(_, n)| want(n)) {
                return n.clone();
            }
            assert!(
                start.elapsed() < HOOK_DEADLINE,
                "no spooled notification for {what} after {HOOK_DEADLINE:?}; spool holds {:#?}",
                spooled.iter().map(|(_, n)| n).collect::<Vec<_>>()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// `(status, path, from)` of every change, sorted, for comparisons.
fn changes(n: &GitNotification) -> Vec<(String, String, Option<String>)> {
    let mut v: Vec<_> =
        n.changes.iter().map(|c| (c.status.clone(), c.path.clone(), c.from.clone())).collect();
    v.sort();
    v
}

fn change(status: &str, path: &str, from: Option<&str>) -> (String, String, Option<String>) {
    (status.to_string(), path.to_string(), from.map(String::from))
}

/// Name, contents and permission bits of every file in a directory.
fn snapshot(dir: &Path) -> BTreeMap<String, (Vec<u8>, u32)> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            let meta = std::fs::symlink_metadata(e.path()).unwrap();
            (
                e.file_name().to_string_lossy().into_owned(),
                (std::fs::read(e.path()).unwrap(), meta.permissions().mode()),
            )
        })
        .collect()
}

// Install and uninstall -----------------------------------------------------------------------

#[test]
fn install_is_idempotent_and_uninstall_leaves_nothing() {
    let repo = Repo::new();
    let before = snapshot(&repo.hooks_dir());

    let first = repo.install();
    assert_eq!(first.hooks_dir, repo.hooks_dir());
    assert_eq!(first.root, repo.root);
    assert_eq!(first.hooks, hooks::HOOKS.iter().map(|h| (*h, InstallAction::Installed)).collect::<Vec<_>>());
    let installed = snapshot(&repo.hooks_dir());
    for hook in hooks::HOOKS {
        let (contents, mode) = &installed[hook];
        assert!(String::from_utf8_lossy(contents).contains(hooks::MARKER), "{hook} carries the marker");
        assert_eq!(mode & 0o111, 0o111, "{hook} is executable");
    }

    let second = repo.install();
    assert_eq!(second.hooks, hooks::HOOKS.iter().map(|h| (*h, InstallAction::Unchanged)).collect::<Vec<_>>());
    assert_eq!(snapshot(&repo.hooks_dir()), installed, "a second install changes nothing");

    let removed = hooks::uninstall(&repo.root).unwrap();
    assert_eq!(
        removed.hooks,
        hooks::HOOKS.iter().map(|h| (*h, UninstallAction::Removed)).collect::<Vec<_>>()
    );
    assert_eq!(snapshot(&repo.hooks_dir()), before);
    let again = hooks::uninstall(&repo.root).unwrap();
    assert!(again.hooks.iter().all(|(_, a)| *a == UninstallAction::NotInstalled));
}

#[test]
fn an_existing_hook_is_chained_keeps_its_exit_status_and_input_and_is_restored() {
    use std::os::unix::fs::PermissionsExt;
    let repo = Repo::new();
    repo.write("a.txt", "a\n");
    repo.commit("first");

    // A post-checkout hook's exit status becomes `git checkout`'s: it shows whether the chained
    // hook's status reaches git. The post-rewrite hook shows that the input reaches it too.
    let log = repo.root.join("../chained.log");
    let stdin_copy = repo.root.join("../rewrite.stdin");
    let checkout_hook = format!("#!/bin/sh\necho \"checkout $*\" >> '{}'\nexit 3\n", log.display());
    let rewrite_hook =
        format!("#!/bin/sh\ncat > '{}'\necho \"rewrite $*\" >> '{}'\n", stdin_copy.display(), log.display());
    std::fs::write(repo.hooks_dir().join("post-checkout"), &checkout_hook).unwrap();
    std::fs::set_permissions(repo.hooks_dir().join("post-checkout"), std::fs::Permissions::from_mode(0o750))
        .unwrap();
    std::fs::write(repo.hooks_dir().join("post-rewrite"), &rewrite_hook).unwrap();
    std::fs::set_permissions(repo.hooks_dir().join("post-rewrite"), std::fs::Permissions::from_mode(0o700))
        .unwrap();
    let before = snapshot(&repo.hooks_dir());
    let git_status_before = repo.git_output(&["checkout", "-q", "-b", "before-install"]).status.code();
    assert_ne!(git_status_before, Some(0), "git reports the failing hook");

    let report = repo.install();
    let actions: BTreeMap<_, _> = report.hooks.iter().cloned().collect();
    assert_eq!(actions["post-checkout"], InstallAction::Chained);
    assert_eq!(actions["post-rewrite"], InstallAction::Chained);
    assert_eq!(actions["post-commit"], InstallAction::Installed);
    assert_eq!(
        std::fs::read_to_string(repo.hooks_dir().join("post-checkout.semdex-chained")).unwrap(),
        checkout_hook
    );
    // Installing again neither chains our own hook nor touches the chained one.
    let snapshot_installed = snapshot(&repo.hooks_dir());
    assert!(repo.install().hooks.iter().all(|(_, a)| *a == InstallAction::Unchanged));
    assert_eq!(snapshot(&repo.hooks_dir()), snapshot_installed);

    let old = repo.head();
    let switch = repo.git_output(&["checkout", "-q", "-b", "after-install"]);
    assert_eq!(switch.status.code(), git_status_before, "git sees the chained hook's failure as before");
    // Run directly, our hook exits with the chained hook's own status.
    let direct = repo
        .command(&repo.hooks_dir().join("post-checkout").to_string_lossy())
        .args([&old, &old, "0"])
        .output()
        .unwrap();
    assert_eq!(direct.status.code(), Some(3));
    repo.git(&["commit", "-q", "--amend", "-m", "first, amended"]);
    let new = repo.head();
    assert_eq!(
        std::fs::read_to_string(&log).unwrap(),
        format!("checkout {old} {old} 1\ncheckout {old} {old} 1\ncheckout {old} {old} 0\nrewrite amend\n")
    );
    assert_eq!(std::fs::read_to_string(&stdin_copy).unwrap(), format!("{old} {new}\n"));
    // Our part ran as well.
    let n = repo.wait_for("the amend", |n| n.hook == "post-rewrite");
    assert_eq!((n.old.as_deref(), n.new.as_str()), (Some(old.as_str()), new.as_str()));

    let removed = hooks::uninstall(&repo.root).unwrap();
    let actions: BTreeMap<_, _> = removed.hooks.iter().cloned().collect();
    assert_eq!(actions["post-checkout"], UninstallAction::Restored);
    assert_eq!(actions["post-rewrite"], UninstallAction::Restored);
    assert_eq!(actions["post-commit"], UninstallAction::Removed);
    assert_eq!(snapshot(&repo.hooks_dir()), before, "uninstall restores the hooks byte for byte, modes too");
}

#[test]
fn a_foreign_hook_beside_a_chained_one_is_refused() {
    let repo = Repo::new();
    std::fs::write(repo.hooks_dir().join("post-merge"), "#!/bin/sh\nexit 0\n").unwrap();
    std::fs::write(repo.hooks_dir().join("post-merge.semdex-chained"), "#!/bin/sh\nexit 1\n").unwrap();
    let before = snapshot(&repo.hooks_dir());
    let err = hooks::install(&repo.root, Path::new(SEMDEX), None).unwrap_err();
    assert!(matches!(err, hooks::Error::Conflict { .. }), "{err}");
    assert_eq!(
        std::fs::read(repo.hooks_dir().join("post-merge")).unwrap(),
        before["post-merge"].0,
        "the foreign hook is not overwritten"
    );
}

#[test]
fn core_hooks_path_is_honoured() {
    let repo = Repo::new();
    repo.git(&["config", "core.hooksPath", "shared-hooks"]);
    let report = repo.install();
    assert_eq!(report.hooks_dir, repo.root.join("shared-hooks"));
    assert!(repo.root.join("shared-hooks/post-commit").exists());
    assert!(!repo.hooks_dir().join("post-commit").exists());

    repo.write("src/main.ts", "export const x = 1;\n");
    let head = repo.commit("first");
    let n = repo.wait_for("the commit", |n| n.hook == "post-commit" && n.new == head);
    assert_eq!(n.repo, repo.root_text());

    hooks::uninstall(&repo.root).unwrap();
    assert!(!repo.root.join("shared-hooks/post-commit").exists());
}

#[test]
fn the_cli_installs_and_reports_usage_and_repository_errors() {
    let repo = Repo::new();
    let out = repo.semdex(&["hooks", "install"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let script = std::fs::read_to_string(repo.hooks_dir().join("post-commit")).unwrap();
    assert!(script.contains(SEMDEX), "the hook calls this binary: {script}");
    let out = repo.semdex(&["hooks", "uninstall", "--repo", &repo.root_text()]);
    assert!(out.status.success());
    assert!(!repo.hooks_dir().join("post-commit").exists());

    // A data dir given to install is written into the hooks, made absolute.
    let out = repo.semdex(&["--data-dir", "custom data", "hooks", "install"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let script = std::fs::read_to_string(repo.hooks_dir().join("post-merge")).unwrap();
    let expected = format!("--data-dir '{}'", repo.root.join("custom data").display());
    assert!(script.contains(&expected), "{expected} in {script}");
    hooks::uninstall(&repo.root).unwrap();

    let not_repo = tempfile::tempdir().unwrap();
    let out = repo.semdex(&["hooks", "install", "--repo", &not_repo.path().to_string_lossy()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("is not a git repository"));
    assert_eq!(repo.semdex(&["hooks", "frobnicate"]).status.code(), Some(2));
    assert_eq!(repo.semdex(&["hooks", "install", "--bogus"]).status.code(), Some(2));
}

// Notifications -------------------------------------------------------------------------------

#[test]
fn commits_tell_additions_modifications_deletions_and_renames() {
    let repo = Repo::new();
    repo.install();
    repo.write("a.ts", "export const a = 1;\n");
    repo.write("b.ts", "export const b = 2;\n");
    repo.write("dir/c.ts", "export function c() {\n  return 'a long enough body to be a rename';\n}\n");
    let first = repo.commit("first");
    let n = repo.wait_for("the first commit", |n| n.new == first);
    assert_eq!(n.hook, "post-commit");
    assert_eq!(n.old, None, "a root commit has no old side");
    assert_eq!(n.branch.as_deref(), Some("main"));
    assert_eq!(
        changes(&n),
        vec![change("A", "a.ts", None), change("A", "b.ts", None), change("A", "dir/c.ts", None)]
    );

    repo.write("a.ts", "export const a = 10;\n");
    std::fs::remove_file(repo.root.join("b.ts")).unwrap();
    std::fs::rename(repo.root.join("dir/c.ts"), repo.root.join("dir/renamed.ts")).unwrap();
    repo.write("new file.ts", "export {};\n");
    let second = repo.commit("second");
    let n = repo.wait_for("the second commit", |n| n.new == second);
    assert_eq!(n.old.as_deref(), Some(first.as_str()));
    assert_eq!(
        changes(&n),
        vec![
            change("A", "new file.ts", None),
            change("D", "b.ts", None),
            change("M", "a.ts", None),
            change("R", "dir/renamed.ts", Some("dir/c.ts")),
        ]
    );
    assert_eq!(n.paths(), vec!["a.ts", "b.ts", "dir/c.ts", "dir/renamed.ts", "new file.ts"]);
}

#[test]
fn each_commit_is_described_as_it_was_even_when_the_next_one_follows_at_once() {
    let repo = Repo::new();
    repo.install();
    let mut heads = Vec::new();
    for i in 0..4 {
        repo.write(&format!("f{i}.ts"), "export {};\n");
        heads.push(repo.commit(&format!("commit {i}")));
    }
    for (i, head) in heads.iter().enumerate() {
        let n = repo.wait_for("each commit", |n| n.new == *head);
        assert_eq!(changes(&n), vec![change("A", &format!("f{i}.ts"), None)]);
        assert_eq!(n.old, if i == 0 { None } else { Some(heads[i - 1].clone()) });
    }
}

#[test]
fn a_merge_spans_orig_head_to_the_merge_commit() {
    let repo = Repo::new();
    repo.write("base.ts", "export {};\n");
    repo.commit("base");
    repo.git(&["checkout", "-q", "-b", "feature"]);
    repo.write("feature.ts", "export const f = 1;\n");
    repo.commit("feature");
    repo.git(&["checkout", "-q", "main"]);
    repo.write("main.ts", "export const m = 1;\n");
    let before = repo.commit("main");
    repo.install();

    repo.git(&["merge", "-q", "--no-edit", "feature"]);
    let merge = repo.head();
    let n = repo.wait_for("the merge", |n| n.hook == "post-merge");
    assert_eq!(n.old.as_deref(), Some(before.as_str()));
    assert_eq!(n.new, merge);
    assert_eq!(n.branch.as_deref(), Some("main"));
    assert_eq!(changes(&n), vec![change("A", "feature.ts", None)]);
}

#[test]
fn a_branch_switch_tells_the_difference_and_a_file_checkout_nothing() {
    let repo = Repo::new();
    repo.write("shared.ts", "export const v = 1;\n");
    repo.write("only-main.ts", "export const main = 'main';\n");
    let main = repo.commit("main");
    repo.git(&["checkout", "-q", "-b", "topic"]);
    repo.write("shared.ts", "export const v = 2;\n");
    std::fs::remove_file(repo.root.join("only-main.ts")).unwrap();
    repo.write("only-topic.ts", "export function topic() {\n  return 42;\n}\n");
    let topic = repo.commit("topic");
    repo.install();

    repo.git(&["checkout", "-q", "main"]);
    let n = repo.wait_for("the switch", |n| n.hook == "post-checkout");
    assert_eq!((n.old.as_deref(), n.new.as_str()), (Some(topic.as_str()), main.as_str()));
    assert_eq!(n.branch.as_deref(), Some("main"));
    assert_eq!(
        changes(&n),
        vec![
            change("A", "only-main.ts", None),
            change("D", "only-topic.ts", None),
            change("M", "shared.ts", None)
        ]
    );

    // Checking out files (flag 0) moves no branch: there is nothing to tell.
    let args = [topic.clone(), main.clone(), "0".to_string()];
    assert_eq!(hooks::notification(&repo.root, "post-checkout", &args, "", None).unwrap(), None);
    // A detached HEAD has no branch.
    repo.git(&["checkout", "-q", "--detach", &topic]);
    let n = repo.wait_for("the detached checkout", |n| n.hook == "post-checkout" && n.new == topic);
    assert_eq!(n.branch, None);
}

#[test]
fn amend_and_rebase_span_the_rewrite() {
    let repo = Repo::new();
    repo.write("base.ts", "export {};\n");
    repo.commit("base");
    repo.git(&["checkout", "-q", "-b", "topic"]);
    repo.write("t1.ts", "export const t = 1;\n");
    repo.commit("t1");
    repo.write("t2.ts", "export const t = 2;\n");
    let topic_before = repo.commit("t2");
    repo.git(&["checkout", "-q", "main"]);
    repo.write("upstream.ts", "export const u = 1;\n");
    repo.commit("upstream");
    repo.git(&["checkout", "-q", "topic"]);
    repo.install();

    repo.git(&["rebase", "-q", "main"]);
    let rebased = repo.head();
    let n = repo.wait_for("the rebase", |n| n.hook == "post-rewrite");
    assert_eq!(n.old.as_deref(), Some(topic_before.as_str()), "a rebase starts from ORIG_HEAD");
    assert_eq!(n.new, rebased);
    assert_eq!(n.branch.as_deref(), Some("topic"));
    assert_eq!(changes(&n), vec![change("A", "upstream.ts", None)]);

    repo.write("t2.ts", "export const t = 22;\n");
    repo.git(&["add", "-A"]);
    repo.git(&["commit", "-q", "--amend", "--no-edit"]);
    let amended = repo.head();
    let n = repo.wait_for("the amend", |n| n.hook == "post-rewrite" && n.new == amended);
    assert_eq!(n.old.as_deref(), Some(rebased.as_str()), "an amend starts from the amended commit");
    assert_eq!(changes(&n), vec![change("M", "t2.ts", None)]);
}

// Delivery and the spool ----------------------------------------------------------------------

#[test]
fn a_commit_with_no_daemon_succeeds_and_leaves_a_spool_file() {
    let repo = Repo::new();
    repo.install();
    repo.write("a.ts", "export {};\n");
    repo.git(&["add", "-A"]);
    let out = repo.git_output(&["commit", "-q", "-m", "no daemon"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.stderr.is_empty(), "the hook prints nothing: {}", String::from_utf8_lossy(&out.stderr));
    let head = repo.head();
    let n = repo.wait_for("the commit", |n| n.new == head);
    assert_eq!(n.repo, repo.root_text());

    let spooled = hooks::read_spool(&repo.data);
    assert_eq!(spooled.len(), 1);
    let (path, _) = &spooled[0];
    assert!(path.starts_with(hooks::spool_dir(&repo.data)));
    assert_eq!(path.extension().and_then(|e| e.to_str()), Some("json"));

    // A damaged file is set aside, and the good ones still read, oldest first.
    let bad = hooks::spool_dir(&repo.data).join("00000000000000000001-0000000000000000.json");
    std::fs::write(&bad, "{ not json").unwrap();
    let later = hooks::spool(&repo.data, &n).unwrap();
    let spooled = hooks::read_spool(&repo.data);
    assert_eq!(spooled.iter().map(|(p, _)| p.clone()).collect::<Vec<_>>(), vec![path.clone(), later.clone()]);
    assert!(!bad.exists());
    assert!(bad.with_extension("bad").exists());

    hooks::remove_spooled(path).unwrap();
    hooks::remove_spooled(path).unwrap();
    assert_eq!(hooks::read_spool(&repo.data).len(), 1);
}

/// What the test daemon received: authorization header and body.
type Received = Arc<Mutex<Vec<(Option<String>, String)>>>;

/// A tiny daemon on 127.0.0.1 answering `POST /v1/hooks/git` with `status` and recording each
/// request.
async fn test_daemon(status: u16) -> (std::net::SocketAddr, Received) {
    use axum::http::{HeaderMap, StatusCode};
    let received: Received = Arc::default();
    let seen = received.clone();
    let app = axum::Router::new().route(
        "/v1/hooks/git",
        axum::routing::post(move |headers: HeaderMap, body: String| {
            let seen = seen.clone();
            async move {
                let auth = headers.get("authorization").and_then(|v| v.to_str().ok()).map(String::from);
                seen.lock().unwrap().push((auth, body));
                StatusCode::from_u16(status).unwrap()
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (addr, received)
}

/// Waits until the test daemon has received a request.
async fn wait_received(received: &Received) -> (Option<String>, String) {
    let start = Instant::now();
    loop {
        if let Some(first) = received.lock().unwrap().first().cloned() {
            return first;
        }
        assert!(start.elapsed() < HOOK_DEADLINE, "the daemon received nothing after {HOOK_DEADLINE:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listening_daemon_receives_the_notification() {
    let (addr, received) = test_daemon(202).await;
    let mut repo = Repo::new();
    repo.env.insert("SEMDEX_LISTEN".into(), addr.to_string());
    repo.env.insert("SEMDEX_TOKEN".into(), "s3cret".into());
    repo.install();
    repo.write("src/a.ts", "export const a = 1;\n");
    let head = tokio::task::block_in_place(|| repo.commit("delivered"));

    let (auth, body) = wait_received(&received).await;
    assert_eq!(auth.as_deref(), Some("Bearer s3cret"));
    let n: GitNotification = serde_json::from_str(&body).expect("the body is a notification");
    assert_eq!(n.hook, "post-commit");
    assert_eq!(n.new, head);
    assert_eq!(n.repo, repo.root_text());
    assert_eq!(changes(&n), vec![change("A", "src/a.ts", None)]);
    let value: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert!(value["old"].is_null(), "the wire form spells out null: {body}");
    assert_eq!(value["changes"][0]["from"], serde_json::Value::Null);
    // Delivered, so nothing is spooled.
    assert!(hooks::read_spool(&repo.data).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_daemon_means_the_spool_and_a_refusing_one_drops_it() {
    let (failing, received) = test_daemon(503).await;
    let repo = Repo::new();
    repo.write("a.ts", "export {};\n");
    let head = tokio::task::block_in_place(|| repo.commit("first"));
    let n = hooks::notification(&repo.root, "post-commit", &[], "", None).unwrap().unwrap();
    assert_eq!(n.new, head);

    let outcome = hooks::deliver(&n, failing, None, &repo.data).await.unwrap();
    let hooks::Delivery::Spooled(path) = outcome else { panic!("a 503 spools, got {outcome:?}") };
    assert_eq!(received.lock().unwrap().len(), 1, "the daemon was asked once");
    assert_eq!(hooks::read_spool(&repo.data), vec![(path, n.clone())]);
    assert_eq!(received.lock().unwrap()[0].0, None, "no token, no authorization header");

    let (refusing, _) = test_daemon(400).await;
    let outcome = hooks::deliver(&n, refusing, None, &repo.data).await.unwrap();
    assert!(matches!(outcome, hooks::Delivery::Rejected(400)), "{outcome:?}");
    assert_eq!(hooks::read_spool(&repo.data).len(), 1, "a refused notification is not spooled");
}

// Accepting notifications ---------------------------------------------------------------------

/// `accept` through `&dyn Store`, run on each backend.
async fn accept_suite(store: &dyn Store) {
    let repo = Repo::new();
    repo.write("a.ts", "export const a = 1;\n");
    repo.write("b.ts", "export function b() {\n  return 'long enough to be detected as a rename';\n}\n");
    let first = repo.commit("first\n\nwith a body");
    repo.write("a.ts", "export const a = 2;\nexport const aa = 3;\n");
    std::fs::rename(repo.root.join("b.ts"), repo.root.join("c.ts")).unwrap();
    let second = repo.commit("second");

    let project = store
        .create_project(NewProject {
            name: "hooked".into(),
            root_path: Some(repo.root_text()),
            settings: serde_json::json!({}),
            ..NewProject::default()
        })
        .await
        .unwrap();
    assert_eq!(store.project_by_root(&repo.root_text()).await.unwrap().map(|p| p.id), Some(project.id));

    let n = hooks::notification(&repo.root, "post-commit", &[], "", None).unwrap().unwrap();
    assert_eq!((n.old.as_deref(), n.new.as_str()), (Some(first.as_str()), second.as_str()));
    let run = hooks::accept(store, &n).await.unwrap().expect("a run is queued");
    assert_eq!(run.project_id, project.id);
    assert_eq!(run.trigger, "git_hook");
    assert_eq!(run.status, RunStatus::Queued);
    assert_eq!(run.commit_sha.as_deref(), Some(second.as_str()));
    assert_eq!(run.paths, Some(vec!["a.ts".to_string(), "b.ts".to_string(), "c.ts".to_string()]));

    let commits = store.commits(project.id, 10).await.unwrap();
    assert_eq!(commits.len(), 1, "only the commit the event brought: {commits:?}");
    let c = &commits[0];
    assert_eq!(c.sha, second);
    assert_eq!(c.parents, vec![first.clone()]);
    assert_eq!(c.message, "second");
    assert_eq!(c.author_name.as_deref(), Some("Ada Lovelace"));
    assert_eq!(c.author_email.as_deref(), Some("ada@example.com"));
    assert_eq!(c.branch.as_deref(), Some("main"));
    assert!(c.committed_at.is_some());
    assert_eq!((c.files_changed, c.additions, c.deletions), (2, 2, 1));

    // Accepting again records nothing twice.
    hooks::accept(store, &n).await.unwrap().expect("a second run");
    assert_eq!(store.commits(project.id, 10).await.unwrap(), commits);

    // The whole history (no old side): only the first commit is new, newest first.
    let mut whole = n.clone();
    whole.old = None;
    hooks::accept(store, &whole).await.unwrap();
    let all = store.commits(project.id, 10).await.unwrap();
    assert_eq!(all.iter().map(|c| c.sha.as_str()).collect::<Vec<_>>(), vec![second.as_str(), first.as_str()]);
    assert_eq!(all[1].message, "first\n\nwith a body");
    assert!(all[1].parents.is_empty());
    assert_eq!(store.commits(project.id, 1).await.unwrap().len(), 1);

    // No changed path: commits are recorded, no run is queued.
    let mut unchanged = n.clone();
    unchanged.hook = "post-checkout".into();
    unchanged.changes.clear();
    assert_eq!(hooks::accept(store, &unchanged).await.unwrap(), None);

    // A repository no project indexes is ignored; a malformed sha is refused before git runs.
    let mut elsewhere = n.clone();
    elsewhere.repo = "/nowhere/at/all".into();
    assert_eq!(hooks::accept(store, &elsewhere).await.unwrap(), None);
    let mut hostile = n.clone();
    hostile.new = "--output=/tmp/x".into();
    assert!(matches!(hooks::accept(store, &hostile).await, Err(hooks::Error::Invalid(_))));
}

#[tokio::test]
async fn accept_records_commits_once_and_queues_a_run_on_sqlite() {
    let (_dir, path) = support::temp_sqlite();
    let store = SqliteStore::open(&path).await.unwrap();
    store.migrate_up().await.unwrap();
    accept_suite(&store).await;
}

#[tokio::test]
async fn accept_records_commits_once_and_queues_a_run_on_postgres() {
    let Some(url) = support::pg_database().await else { return };
    let store = PgStore::connect(&url).await.unwrap();
    store.migrate_up().await.unwrap();
    accept_suite(&store).await;
}
