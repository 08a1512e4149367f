//! Git hooks through the real binary and a real daemon: `semdex hooks install`, then commit,
//! branch switch, merge, amend and rebase in a real repository, each followed by the index; with the
//! daemon stopped, git still succeeds and the spooled notification is picked up at the next
//! start.

use std::path::Path;
use std::process::Command;

use semdex_tests::{Daemon, Semdex, copy_dir, eventually, fixture, write_file};
use serde_json::json;

struct Repo<'a> {
    root: &'a Path,
    listen: String,
    data_dir: &'a Path,
}

impl Repo<'_> {
    fn git(&self, args: &[&str]) {
        let out = Command::new("git")
            .current_dir(self.root)
            .args(args)
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_AUTHOR_NAME", "Ada Lovelace")
            .env("GIT_AUTHOR_EMAIL", "ada@example.com")
            .env("GIT_COMMITTER_NAME", "Ada Lovelace")
            .env("GIT_COMMITTER_EMAIL", "ada@example.com")
            .env("GIT_EDITOR", "true")
            // What the hooks read to find the daemon and the spool.
            .env("SEMDEX_LISTEN", &self.listen)
            .env("SEMDEX_DATA_DIR", self.data_dir)
            .env_remove("SEMDEX_TOKEN")
            .output()
            .expect("running git");
        assert!(out.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    }
}

fn symbols(daemon: &Daemon, project: i64, path: &str) -> Option<Vec<String>> {
    let (status, file) = daemon.get(&format!("/v1/projects/{project}/file?path={path}"));
    (status == 200).then(|| {
        file["symbols"].as_array().unwrap().iter().map(|s| s["name"].as_str().unwrap().to_string()).collect()
    })
}

fn listen_of(daemon: &Daemon) -> String {
    daemon.base.trim_start_matches("http://").to_string()
}

#[test]
fn the_index_follows_commits_checkouts_merges_and_amends_through_hooks() {
    let semdex = Semdex::embedded();
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&fixture("ts-app"), dir.path());
    let root = std::fs::canonicalize(dir.path()).unwrap();
    let allowed = root.parent().unwrap().to_str().unwrap().to_string();
    let daemon = semdex.serve(&[("SEMDEX_ALLOWED_ROOTS", allowed.as_str())]);
    let mut repo = Repo { root: &root, listen: listen_of(&daemon), data_dir: semdex.data_dir.path() };
    repo.git(&["init", "-q", "-b", "main"]);
    repo.git(&["add", "-A"]);
    repo.git(&["commit", "-q", "-m", "initial"]);

    let (status, created) =
        daemon.post("/v1/projects", &json!({ "name": "hooked", "root_path": root.to_str().unwrap() }));
    assert_eq!(status, 201, "{created}");
    let project = created["id"].as_i64().unwrap();
    assert_eq!(daemon.wait_run(created["run_id"].as_i64().unwrap())["status"], "succeeded");
    let out = semdex.run(&["hooks", "install", "--repo", root.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    // A commit.
    write_file(&root, "src/hooked/rates.ts", "export function exchangeRate(): number {\n  return 1.1;\n}\n");
    repo.git(&["add", "-A"]);
    repo.git(&["commit", "-q", "-m", "add rates"]);
    eventually("a commit", || {
        symbols(&daemon, project, "src/hooked/rates.ts") == Some(vec!["exchangeRate".into()])
    });
    let (_, runs) = daemon.get(&format!("/v1/projects/{project}/runs"));
    let last = &runs["runs"][0];
    assert_eq!(
        (last["trigger"].as_str(), last["paths"].clone()),
        (Some("git_hook"), json!(["src/hooked/rates.ts"]))
    );

    let (status, commits) = daemon.get(&format!("/v1/projects/{project}/commits"));
    assert_eq!(status, 200, "{commits}");
    let first = &commits["commits"][0];
    assert_eq!(
        (first["message"].as_str(), first["author_name"].as_str()),
        (Some("add rates"), Some("Ada Lovelace"))
    );
    assert_eq!((first["files_changed"].as_i64(), first["additions"].as_i64()), (Some(1), Some(3)), "{first}");

    // A branch with a new file, then back to main: the file leaves the index.
    repo.git(&["checkout", "-q", "-b", "feature"]);
    write_file(&root, "src/hooked/fees.ts", "export function serviceFee(): number {\n  return 3;\n}\n");
    repo.git(&["add", "-A"]);
    repo.git(&["commit", "-q", "-m", "add fees"]);
    eventually("a commit on a branch", || symbols(&daemon, project, "src/hooked/fees.ts").is_some());
    repo.git(&["checkout", "-q", "main"]);
    eventually("a branch switch", || symbols(&daemon, project, "src/hooked/fees.ts").is_none());

    // A merge brings it back.
    repo.git(&["merge", "-q", "--no-edit", "--no-ff", "feature"]);
    eventually("a merge", || {
        symbols(&daemon, project, "src/hooked/fees.ts") == Some(vec!["serviceFee".into()])
    });

    // An amend that renames the function.
    write_file(&root, "src/hooked/fees.ts", "export function platformFee(): number {\n  return 4;\n}\n");
    repo.git(&["commit", "-q", "-a", "--amend", "--no-edit"]);
    eventually("an amend", || {
        symbols(&daemon, project, "src/hooked/fees.ts") == Some(vec!["platformFee".into()])
    });

    // A rebase: a topic branch from before the merge, replayed onto main.
    repo.git(&["checkout", "-q", "-b", "topic", "HEAD~1"]);
    eventually("a checkout of an older commit", || symbols(&daemon, project, "src/hooked/fees.ts").is_none());
    write_file(&root, "src/hooked/tax.ts", "export function vatRate(): number {\n  return 0.2;\n}\n");
    repo.git(&["add", "-A"]);
    repo.git(&["commit", "-q", "-m", "add tax"]);
    repo.git(&["rebase", "-q", "main"]);
    eventually("a rebase", || {
        symbols(&daemon, project, "src/hooked/fees.ts") == Some(vec!["platformFee".into()])
            && symbols(&daemon, project, "src/hooked/tax.ts") == Some(vec!["vatRate".into()])
    });
    repo.git(&["checkout", "-q", "main"]);
    eventually("back on main", || symbols(&daemon, project, "src/hooked/tax.ts").is_none());

    // With the daemon stopped, git is not held up and the notification waits in the spool.
    assert!(daemon.terminate().success());
    write_file(&root, "src/hooked/rates.ts", "export function spotRate(): number {\n  return 1.2;\n}\n");
    repo.git(&["commit", "-q", "-a", "-m", "spot rate"]);
    let spool = semdex.data_dir.path().join("spool");
    eventually("a spooled notification", || std::fs::read_dir(&spool).is_ok_and(|d| d.count() > 0));
    let daemon = semdex.serve(&[("SEMDEX_ALLOWED_ROOTS", allowed.as_str())]);
    repo.listen = listen_of(&daemon);
    eventually("a spooled commit", || {
        symbols(&daemon, project, "src/hooked/rates.ts") == Some(vec!["spotRate".into()])
    });
    eventually("the spool emptied", || std::fs::read_dir(&spool).is_ok_and(|d| d.count() == 0));
    assert!(daemon.terminate().success());
}
