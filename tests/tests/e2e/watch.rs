//! The file watcher through the real daemon: create, modify, rename (an editor's atomic save
//! and a plain move), delete and a directory removal are each followed by the index, with no
//! hook and no explicit run.

use semdex_tests::{Daemon, Semdex, copy_dir, eventually, fixture, write_file};
use serde_json::json;

fn file_status(daemon: &Daemon, project: i64, path: &str) -> u16 {
    daemon.get(&format!("/v1/projects/{project}/file?path={path}")).0
}

fn symbol_names(daemon: &Daemon, project: i64, path: &str) -> Vec<String> {
    let (status, file) = daemon.get(&format!("/v1/projects/{project}/file?path={path}"));
    if status != 200 {
        return Vec::new();
    }
    file["symbols"].as_array().unwrap().iter().map(|s| s["name"].as_str().unwrap().to_string()).collect()
}

#[test]
fn the_watcher_follows_creates_edits_renames_and_deletes() {
    let semdex = Semdex::embedded();
    let repo = tempfile::tempdir().unwrap();
    copy_dir(&fixture("ts-app"), repo.path());
    let root = std::fs::canonicalize(repo.path()).unwrap();
    let allowed = root.parent().unwrap().to_str().unwrap().to_string();
    let daemon = semdex.serve(&[("SEMDEX_ALLOWED_ROOTS", allowed.as_str()), ("SEMDEX_WATCH", "1")]);
    let (status, created) =
        daemon.post("/v1/projects", &json!({ "name": "watched", "root_path": root.to_str().unwrap() }));
    assert_eq!(status, 201, "{created}");
    let project = created["id"].as_i64().unwrap();
    assert_eq!(daemon.wait_run(created["run_id"].as_i64().unwrap())["status"], "succeeded");

    // Create.
    write_file(&root, "src/watched/alpha.ts", "export function alphaOne(): number {\n  return 1;\n}\n");
    eventually("a created file", || symbol_names(&daemon, project, "src/watched/alpha.ts") == ["alphaOne"]);

    // Modify in place.
    write_file(&root, "src/watched/alpha.ts", "export function alphaTwo(): number {\n  return 2;\n}\n");
    eventually("an edited file", || symbol_names(&daemon, project, "src/watched/alpha.ts") == ["alphaTwo"]);

    // An editor's atomic save: write a temporary file, rename it over the target.
    write_file(
        &root,
        "src/watched/.alpha.ts.swp",
        "export function alphaThree(): number {\n  return 3;\n}\n",
    );
    std::fs::rename(root.join("src/watched/.alpha.ts.swp"), root.join("src/watched/alpha.ts")).unwrap();
    eventually("an atomic save", || symbol_names(&daemon, project, "src/watched/alpha.ts") == ["alphaThree"]);
    assert_eq!(file_status(&daemon, project, "src/watched/.alpha.ts.swp"), 404);

    // A move: the old path goes, the new one comes.
    std::fs::rename(root.join("src/watched/alpha.ts"), root.join("src/watched/beta.ts")).unwrap();
    eventually("a rename", || {
        file_status(&daemon, project, "src/watched/alpha.ts") == 404
            && symbol_names(&daemon, project, "src/watched/beta.ts") == ["alphaThree"]
    });

    // Delete a file, then a whole directory.
    std::fs::remove_file(root.join("src/watched/beta.ts")).unwrap();
    eventually("a delete", || file_status(&daemon, project, "src/watched/beta.ts") == 404);
    assert_eq!(file_status(&daemon, project, "src/auth/password.ts"), 200);
    std::fs::remove_dir_all(root.join("src/auth")).unwrap();
    eventually("a removed directory", || file_status(&daemon, project, "src/auth/password.ts") == 404);

    // Nothing under .git is indexed.
    write_file(&root, ".git/HEAD", "ref: refs/heads/main\n");
    write_file(&root, "src/watched/gamma.ts", "export const gamma = 3;\n");
    eventually("a file after a .git change", || {
        symbol_names(&daemon, project, "src/watched/gamma.ts") == ["gamma"]
    });
    assert_eq!(file_status(&daemon, project, ".git/HEAD"), 404);
    assert!(daemon.terminate().success());
}
