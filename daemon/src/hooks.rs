//! Git hooks: installing and removing semdex's `post-commit`, `post-merge`, `post-checkout` and
//! `post-rewrite` hooks, computing what a hook event changed ([`GitNotification`]), delivering it
//! to the daemon or spooling it, and accepting it on the daemon side ([`accept`]).
//!
//! **Installed hooks.** Each hook is a small POSIX `sh` script carrying [`MARKER`]. It starts
//! `semdex hooks notify` in the background (`&`, every standard stream on `/dev/null`, `SIGHUP`
//! ignored), so git never waits for the daemon and never sees semdex fail. The repository is
//! found at run time with `git rev-parse --show-toplevel` (falling back to the root the hook was
//! installed for), because one hooks directory can serve several worktrees, or several
//! repositories through `core.hooksPath`.
//!
//! **Chaining.** A hook that is already there and is not ours is never overwritten: it is
//! renamed to `<hook>.semdex-chained` (keeping its mode, or its symlink) and our script runs it
//! first, in the foreground, with the same arguments and standard input, and exits with its
//! status, so git sees exactly what it saw before. `uninstall` removes our script and renames the
//! chained hook back, restoring the directory as it was. A chained hook that is not executable
//! stays disabled, as git would have treated it.
//!
//! **Delivery.** `notify` posts the notification to `http://<listen>/v1/hooks/git` with a two
//! second budget. When the daemon does not answer (no connection, timeout, 5xx, 408 or 429) the
//! notification is written to the spool, `<data_dir>/spool/<unix_nanos>-<random>.json`, which the
//! daemon drains when it starts ([`read_spool`], [`remove_spooled`]). A daemon that answers with
//! another 4xx rejected the notification on purpose, and it is dropped with a warning.

use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::store::{self, CommitRecord, IndexRun, Project, Store};

/// The hooks semdex installs.
pub const HOOKS: [&str; 4] = ["post-commit", "post-merge", "post-checkout", "post-rewrite"];

/// The line that marks a hook script as ours.
pub const MARKER: &str =
    "# semdex-hook: installed by `semdex hooks install`; `semdex hooks uninstall` removes it";

/// The suffix a foreign hook gets when ours takes its place and chains it.
pub const CHAINED_SUFFIX: &str = ".semdex-chained";

/// The most commits one notification records.
pub const MAX_COMMITS: usize = 1000;

/// How long `notify` waits for the daemon, all included.
pub const DELIVERY_TIMEOUT: Duration = Duration::from_secs(2);

/// Result alias for hook operations.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What can go wrong installing hooks, reading a repository or accepting a notification.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The path is not inside a git work tree.
    #[error("{} is not a git repository", path.display())]
    NotARepository { path: PathBuf },
    /// `git` could not be run or failed.
    #[error("git {args} failed: {message}")]
    Git { args: String, message: String },
    /// A file in the hooks directory or the spool could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A hook would be overwritten: a foreign hook and a chained hook both exist.
    #[error("{}: a foreign hook and {CHAINED_SUFFIX} both exist; move one away first", path.display())]
    Conflict { path: PathBuf },
    /// A notification carries something that is not what a hook sends.
    #[error("invalid notification: {0}")]
    Invalid(String),
    #[error(transparent)]
    Store(#[from] store::StoreError),
    /// A blocking task running git panicked or was cancelled.
    #[error("background task failed: {0}")]
    Task(String),
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Io { path: path.to_path_buf(), source }
}

// Wire types ----------------------------------------------------------------------------------

/// What a hook event changed in a repository, as sent to `POST /v1/hooks/git` and spooled.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GitNotification {
    /// The canonical root of the work tree.
    pub repo: String,
    /// `post-commit`, `post-merge`, `post-checkout` or `post-rewrite`.
    pub hook: String,
    /// The commit before the event; `None` when there was none (a first commit, a clone), in
    /// which case `changes` lists every file of `new`.
    pub old: Option<String>,
    /// The commit after the event.
    pub new: String,
    /// The branch checked out after the event; `None` on a detached HEAD.
    pub branch: Option<String>,
    pub changes: Vec<Change>,
}

/// One changed path, as `git diff --name-status` reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Change {
    /// `A`, `M`, `D`, `R`, `C` or `T` (also `U`, `X` should git ever report them).
    pub status: String,
    pub path: String,
    /// The source path of a rename or copy.
    pub from: Option<String>,
}

impl GitNotification {
    /// Every path the event touched: changed paths and the sources of renames and copies,
    /// deduplicated and sorted.
    pub fn paths(&self) -> Vec<String> {
        let mut set = BTreeSet::new();
        for c in &self.changes {
            set.insert(c.path.clone());
            if let Some(from) = &c.from {
                set.insert(from.clone());
            }
        }
        set.into_iter().collect()
    }
}

// Git -----------------------------------------------------------------------------------------

/// A `git` command run in `dir`, with the variables a hook inherits from git removed so that
/// `dir` alone decides the repository.
fn git(dir: &Path) -> Command {
    let mut cmd = Command::new("git");
    cmd.arg("-C").arg(dir);
    for var in ["GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE", "GIT_PREFIX", "GIT_COMMON_DIR"] {
        cmd.env_remove(var);
    }
    cmd.stdin(Stdio::null());
    cmd
}

/// Runs git and returns its standard output; a non-zero exit is an error.
fn git_output(dir: &Path, args: &[&str]) -> Result<Vec<u8>> {
    let out = git(dir)
        .args(args)
        .output()
        .map_err(|e| Error::Git { args: args.join(" "), message: e.to_string() })?;
    if !out.status.success() {
        return Err(Error::Git {
            args: args.join(" "),
            message: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(out.stdout)
}

/// Runs git for one line of output; `None` when git fails or prints nothing.
fn git_line(dir: &Path, args: &[&str]) -> Option<String> {
    let out = git_output(dir, args).ok()?;
    let line = String::from_utf8(out).ok()?.trim_end_matches(['\n', '\r']).to_string();
    (!line.is_empty()).then_some(line)
}

/// The canonical root of the work tree holding `path`.
pub fn repo_root(path: &Path) -> Result<PathBuf> {
    let not_repo = || Error::NotARepository { path: path.to_path_buf() };
    if !path.is_dir() {
        return Err(not_repo());
    }
    let top = git_line(path, &["rev-parse", "--show-toplevel"]).ok_or_else(not_repo)?;
    std::fs::canonicalize(&top).map_err(io_err(Path::new(&top)))
}

/// The hooks directory git uses for the repository at `root` (honours `core.hooksPath` and
/// linked worktrees).
pub fn hooks_dir(root: &Path) -> Result<PathBuf> {
    let dir = git_line(root, &["rev-parse", "--git-path", "hooks"])
        .ok_or_else(|| Error::NotARepository { path: root.to_path_buf() })?;
    let dir = PathBuf::from(dir);
    Ok(if dir.is_absolute() { dir } else { root.join(dir) })
}

/// The commit `rev` names, as a full sha; `None` when it does not exist.
fn resolve(root: &Path, rev: &str) -> Option<String> {
    git_line(root, &["rev-parse", "--verify", "-q", "--end-of-options", &format!("{rev}^{{commit}}")])
}

/// Whether `s` looks like an object name (so it can never be read as an option).
fn is_sha(s: &str) -> bool {
    (7..=64).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
}

/// Whether `s` is git's all-zero object name (no commit: the `prev` of a fresh clone).
fn is_null_sha(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b == b'0')
}

// Install -------------------------------------------------------------------------------------

/// What `install` did to one hook.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InstallAction {
    /// Written where there was no hook.
    Installed,
    /// Written in place of a foreign hook, which now runs first from `<hook>.semdex-chained`.
    Chained,
    /// Ours was there with other contents (another binary or data dir) and was rewritten.
    Updated,
    /// Ours was there already, exactly as it would be written.
    Unchanged,
}

/// What `uninstall` did to one hook.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UninstallAction {
    /// Ours was removed; there was nothing to restore.
    Removed,
    /// Ours was removed and the chained hook moved back into place.
    Restored,
    /// The hook is not ours (or absent) and was left alone.
    NotInstalled,
}

/// The result of [`install`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstallReport {
    pub root: PathBuf,
    pub hooks_dir: PathBuf,
    pub hooks: Vec<(&'static str, InstallAction)>,
}

/// The result of [`uninstall`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UninstallReport {
    pub root: PathBuf,
    pub hooks_dir: PathBuf,
    pub hooks: Vec<(&'static str, UninstallAction)>,
}

/// `s` as one single-quoted `sh` word.
fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// The script for one hook.
fn hook_script(hook: &str, root: &Path, semdex_bin: &Path, data_dir: Option<&Path>) -> String {
    let bin = sh_quote(&semdex_bin.to_string_lossy());
    let root = sh_quote(&root.to_string_lossy());
    let data_dir =
        data_dir.map(|d| format!(" --data-dir {}", sh_quote(&d.to_string_lossy()))).unwrap_or_default();
    let chained = format!("{hook}{CHAINED_SUFFIX}");
    let mut s = String::new();
    s.push_str("#!/bin/sh\n");
    s.push_str(MARKER);
    s.push('\n');
    s.push_str(
        "# Tells the semdex daemon what changed, in the background: never blocks nor fails git.\n\
         # A hook that was here before runs first, from ",
    );
    s.push_str(&chained);
    s.push_str(", and its exit status is kept.\n");
    s.push_str(&format!("chained=\"$(dirname -- \"$0\")/{chained}\"\n"));
    // What HEAD, ORIG_HEAD and the branch are now, before git moves on: the background part
    // may run after the next command has already changed them.
    s.push_str(
        "head=$(git rev-parse -q --verify HEAD 2>/dev/null)\n\
         orig=$(git rev-parse -q --verify ORIG_HEAD 2>/dev/null)\n\
         branch=$(git symbolic-ref --short -q HEAD 2>/dev/null)\n",
    );
    if hook == "post-rewrite" {
        // The rewritten commits come on standard input, which both the chained hook and semdex
        // read: keep a copy.
        s.push_str(
            "input=$(mktemp \"${TMPDIR:-/tmp}/semdex-hook.XXXXXX\" 2>/dev/null) || input=\n\
             if [ -n \"$input\" ]; then cat > \"$input\"; else input=/dev/null; fi\n\
             status=0\n\
             if [ -x \"$chained\" ]; then \"$chained\" \"$@\" < \"$input\"; status=$?; fi\n",
        );
    } else {
        s.push_str(
            "input=/dev/null\n\
             status=0\n\
             if [ -x \"$chained\" ]; then \"$chained\" \"$@\"; status=$?; fi\n",
        );
    }
    s.push_str(&format!(
        "(\n\
         \x20 trap '' HUP\n\
         \x20 repo=$(git rev-parse --show-toplevel 2>/dev/null) || repo={root}\n\
         \x20 {bin}{data_dir} hooks notify --repo \"$repo\" --hook {hook} \\\n\
         \x20   --head \"$head\" --orig-head \"$orig\" --branch \"$branch\" -- \"$@\" < \"$input\"\n\
         \x20 if [ \"$input\" != /dev/null ]; then rm -f \"$input\"; fi\n\
         ) < /dev/null > /dev/null 2>&1 &\n\
         exit $status\n"
    ));
    s
}

fn is_ours(path: &Path) -> bool {
    std::fs::read(path)
        .map(|bytes| String::from_utf8_lossy(&bytes).lines().any(|l| l == MARKER))
        .unwrap_or(false)
}

/// Whether anything (a file, or a symlink even a dangling one) is at `path`.
fn exists(path: &Path) -> bool {
    path.symlink_metadata().is_ok()
}

/// Installs semdex's hooks in the repository holding `repo`. Idempotent; foreign hooks are
/// chained, never overwritten. `data_dir` is passed to `semdex` by the hooks when given (else
/// the hook's environment and the config decide).
pub fn install(repo: &Path, semdex_bin: &Path, data_dir: Option<&Path>) -> Result<InstallReport> {
    let root = repo_root(repo)?;
    let dir = hooks_dir(&root)?;
    // Hooks run in the work tree's root, so a relative path would mean something else there.
    let data_dir = data_dir.map(|d| std::path::absolute(d).map_err(io_err(d))).transpose()?;
    let data_dir = data_dir.as_deref();
    std::fs::create_dir_all(&dir).map_err(io_err(&dir))?;
    let mut report = InstallReport { root: root.clone(), hooks_dir: dir.clone(), hooks: Vec::new() };
    for hook in HOOKS {
        let path = dir.join(hook);
        let chained = dir.join(format!("{hook}{CHAINED_SUFFIX}"));
        let script = hook_script(hook, &root, semdex_bin, data_dir);
        let action = if !exists(&path) {
            InstallAction::Installed
        } else if is_ours(&path) {
            if std::fs::read(&path).map_err(io_err(&path))? == script.as_bytes() {
                report.hooks.push((hook, InstallAction::Unchanged));
                continue;
            }
            InstallAction::Updated
        } else {
            if exists(&chained) {
                return Err(Error::Conflict { path });
            }
            std::fs::rename(&path, &chained).map_err(io_err(&path))?;
            InstallAction::Chained
        };
        write_executable(&path, &script)?;
        report.hooks.push((hook, action));
    }
    Ok(report)
}

/// Removes semdex's hooks from the repository holding `repo`, moving chained hooks back.
pub fn uninstall(repo: &Path) -> Result<UninstallReport> {
    let root = repo_root(repo)?;
    let dir = hooks_dir(&root)?;
    let mut report = UninstallReport { root, hooks_dir: dir.clone(), hooks: Vec::new() };
    for hook in HOOKS {
        let path = dir.join(hook);
        let chained = dir.join(format!("{hook}{CHAINED_SUFFIX}"));
        if !exists(&path) || !is_ours(&path) {
            report.hooks.push((hook, UninstallAction::NotInstalled));
            continue;
        }
        if exists(&chained) {
            // rename replaces our script in one step, so there is never a moment without a hook.
            std::fs::rename(&chained, &path).map_err(io_err(&chained))?;
            report.hooks.push((hook, UninstallAction::Restored));
        } else {
            std::fs::remove_file(&path).map_err(io_err(&path))?;
            report.hooks.push((hook, UninstallAction::Removed));
        }
    }
    Ok(report)
}

/// Writes an executable file atomically (temp file, then rename), so git never runs half a hook.
fn write_executable(path: &Path, contents: &str) -> Result<()> {
    let tmp = path.with_file_name(format!(
        ".{}.semdex-tmp-{}",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("hook"),
        std::process::id()
    ));
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(contents.as_bytes())?;
        f.sync_all()?;
        set_executable(&tmp)?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.map_err(io_err(path))
}

#[cfg(unix)]
fn set_executable(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))
}

#[cfg(not(unix))]
fn set_executable(_path: &Path) -> std::io::Result<()> {
    Ok(())
}

// Notifications -------------------------------------------------------------------------------

/// The repository's `HEAD`, `ORIG_HEAD` and branch at one moment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HookState {
    pub head: Option<String>,
    pub orig_head: Option<String>,
    /// The checked-out branch; `None` on a detached `HEAD`.
    pub branch: Option<String>,
}

impl HookState {
    /// Reads the state of the repository at `root` now.
    pub fn read(root: &Path) -> HookState {
        HookState {
            head: resolve(root, "HEAD"),
            orig_head: resolve(root, "ORIG_HEAD"),
            branch: git_line(root, &["symbolic-ref", "--short", "-q", "HEAD"]),
        }
    }
}

/// Computes what a hook event changed. `args` are the hook's arguments and `stdin` its standard
/// input (read only by `post-rewrite`). `Ok(None)` when there is nothing to tell: a
/// `post-checkout` of files rather than a branch, an unknown hook, or no `HEAD` yet.
///
/// `state` is what `HEAD`, `ORIG_HEAD` and the branch were when the hook ran (the installed
/// scripts read them in the foreground, before git moves on, and pass them along); `None` reads
/// them now.
pub fn notification(
    repo: &Path,
    hook: &str,
    args: &[String],
    stdin: &str,
    state: Option<&HookState>,
) -> Result<Option<GitNotification>> {
    let root = repo_root(repo)?;
    let state = match state {
        Some(s) => s.clone(),
        None => HookState::read(&root),
    };
    for sha in state.head.iter().chain(&state.orig_head) {
        if !is_sha(sha) {
            return Err(Error::Invalid(format!("{sha:?} is not a commit sha")));
        }
    }
    let head = || state.head.as_deref().and_then(|h| resolve(&root, h));
    let orig_head = || state.orig_head.as_deref().and_then(|h| resolve(&root, h));
    let (old, new) = match hook {
        "post-commit" => {
            let Some(new) = head() else { return Ok(None) };
            (resolve(&root, &format!("{new}~1")), new)
        }
        "post-merge" => {
            let Some(new) = head() else { return Ok(None) };
            (orig_head(), new)
        }
        "post-checkout" => {
            let [prev, new, flag, ..] = args else { return Ok(None) };
            // Flag 0: files were checked out, the branch did not move.
            if flag != "1" || !is_sha(new) {
                return Ok(None);
            }
            let old = (is_sha(prev) && !is_null_sha(prev)).then(|| resolve(&root, prev)).flatten();
            let Some(new) = resolve(&root, new) else { return Ok(None) };
            (old, new)
        }
        "post-rewrite" => {
            let Some(new) = head() else { return Ok(None) };
            // stdin: "<old> <new>[ <extra>]" per rewritten commit, oldest first. An amend
            // rewrote the commit named on its one line; a rebase started from ORIG_HEAD.
            let first_old = stdin
                .lines()
                .filter_map(|l| l.split_whitespace().next())
                .find(|s| is_sha(s))
                .and_then(|s| resolve(&root, s));
            let old = match args.first().map(String::as_str) {
                Some("rebase") => orig_head().or(first_old),
                _ => first_old,
            };
            (old, new)
        }
        _ => return Ok(None),
    };
    let changes = match &old {
        Some(old) => diff(&root, old, &new)?,
        None => all_files(&root, &new)?,
    };
    let branch = state.branch.filter(|b| !b.is_empty());
    Ok(Some(GitNotification {
        repo: root.to_string_lossy().into_owned(),
        hook: hook.to_string(),
        old,
        new,
        branch,
        changes,
    }))
}

/// `git diff --name-status -M -z old new`, parsed.
fn diff(root: &Path, old: &str, new: &str) -> Result<Vec<Change>> {
    let out = git_output(
        root,
        &[
            "diff",
            "--name-status",
            "-M",
            "-z",
            "--no-ext-diff",
            "--no-relative",
            "--end-of-options",
            old,
            new,
        ],
    )?;
    parse_name_status(&out)
}

/// Every file of `commit`, as additions.
fn all_files(root: &Path, commit: &str) -> Result<Vec<Change>> {
    let out =
        git_output(root, &["ls-tree", "-r", "-z", "--name-only", "--full-tree", "--end-of-options", commit])?;
    Ok(out
        .split(|b| *b == 0)
        .filter(|p| !p.is_empty())
        .map(|p| Change { status: "A".into(), path: String::from_utf8_lossy(p).into_owned(), from: None })
        .collect())
}

/// Parses `git diff --name-status -z`: `STATUS NUL path NUL`, or for renames and copies
/// `R<score> NUL from NUL to NUL`.
fn parse_name_status(out: &[u8]) -> Result<Vec<Change>> {
    // Every field ends with NUL: drop the last one, then split.
    let body = out.strip_suffix(&[0]).unwrap_or(out);
    let mut changes = Vec::new();
    if body.is_empty() {
        return Ok(changes);
    }
    let mut fields = body.split(|b| *b == 0);
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    let missing =
        |status: &str| Error::Invalid(format!("git diff output lacks a path after status {status:?}"));
    while let Some(status) = fields.next() {
        let status = text(status);
        let Some(letter) = status.chars().next().filter(char::is_ascii_uppercase) else {
            return Err(Error::Invalid(format!("git diff output has status {status:?}")));
        };
        let mut path = || fields.next().filter(|p| !p.is_empty()).map(text).ok_or_else(|| missing(&status));
        if letter == 'R' || letter == 'C' {
            let from = path()?;
            let to = path()?;
            changes.push(Change { status: letter.to_string(), path: to, from: Some(from) });
        } else {
            changes.push(Change { status: letter.to_string(), path: path()?, from: None });
        }
    }
    Ok(changes)
}

// Commits -------------------------------------------------------------------------------------

/// The commits reachable from `new` and not from `old` (all of `new`'s history when `old` is
/// `None`), newest first, at most [`MAX_COMMITS`], with their file and line counts.
pub fn commits_between(
    repo: &Path,
    old: Option<&str>,
    new: &str,
    branch: Option<&str>,
) -> Result<Vec<CommitRecord>> {
    for sha in old.iter().chain([&new]) {
        if !is_sha(sha) {
            return Err(Error::Invalid(format!("{sha:?} is not a commit sha")));
        }
    }
    let range = match old {
        Some(old) => format!("{old}..{new}"),
        None => new.to_string(),
    };
    let max = format!("--max-count={MAX_COMMITS}");
    let out = git_output(
        repo,
        &[
            "-c",
            "log.showSignature=false",
            "log",
            &max,
            "--no-color",
            "--numstat",
            "--format=%x1e%H%x1f%P%x1f%an%x1f%ae%x1f%cI%x1f%B%x1f",
            "--end-of-options",
            &range,
            "--",
        ],
    )?;
    Ok(parse_log(&String::from_utf8_lossy(&out), branch))
}

/// Parses the output of [`commits_between`]'s `git log`: one record per commit, opened by RS
/// (0x1e), fields separated by US (0x1f), the numstat lines after the last field.
fn parse_log(out: &str, branch: Option<&str>) -> Vec<CommitRecord> {
    let opt = |s: &str| (!s.is_empty()).then(|| s.to_string());
    out.split('\x1e')
        .filter_map(|record| {
            let mut f = record.splitn(7, '\x1f');
            let sha = f.next()?.trim().to_string();
            if !is_sha(&sha) {
                return None;
            }
            let parents = f.next()?.split_whitespace().map(String::from).collect();
            let author_name = opt(f.next()?);
            let author_email = opt(f.next()?);
            let committed_at = chrono::DateTime::parse_from_rfc3339(f.next()?.trim())
                .ok()
                .map(|t| t.with_timezone(&chrono::Utc));
            let message = f.next()?.trim_end().to_string();
            let (mut files, mut additions, mut deletions) = (0i64, 0i64, 0i64);
            for line in f.next().unwrap_or("").lines() {
                let mut parts = line.splitn(3, '\t');
                let (Some(a), Some(d), Some(_path)) = (parts.next(), parts.next(), parts.next()) else {
                    continue;
                };
                files += 1;
                // Binary files show "-" for both counts.
                additions += a.parse::<i64>().unwrap_or(0);
                deletions += d.parse::<i64>().unwrap_or(0);
            }
            let clamp = |n: i64| i32::try_from(n).unwrap_or(i32::MAX);
            Some(CommitRecord {
                sha,
                parents,
                message,
                author_name,
                author_email,
                branch: branch.map(String::from),
                committed_at,
                files_changed: clamp(files),
                additions: clamp(additions),
                deletions: clamp(deletions),
            })
        })
        .collect()
}

// Delivery and the spool ----------------------------------------------------------------------

/// How a notification left `notify`.
#[derive(Debug)]
pub enum Delivery {
    /// The daemon accepted it.
    Delivered,
    /// The daemon did not answer; the notification is in the spool at this path.
    Spooled(PathBuf),
    /// The daemon refused it (a 4xx other than 408 and 429); it is dropped.
    Rejected(u16),
}

/// Where the daemon listens, as a client reaches it: a wildcard address means this machine.
fn client_addr(listen: std::net::SocketAddr) -> std::net::SocketAddr {
    let mut addr = listen;
    if addr.ip().is_unspecified() {
        addr.set_ip(match addr {
            std::net::SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
            std::net::SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
        });
    }
    addr
}

/// Posts `n` to the daemon at `listen`, or spools it in `data_dir` when the daemon does not
/// answer. Errors only when it can be neither delivered nor spooled.
pub async fn deliver(
    n: &GitNotification,
    listen: std::net::SocketAddr,
    token: Option<&str>,
    data_dir: &Path,
) -> Result<Delivery> {
    let url = format!("http://{}/v1/hooks/git", client_addr(listen));
    let attempt = async {
        let client = reqwest::Client::builder().timeout(DELIVERY_TIMEOUT).no_proxy().build()?;
        let mut req = client.post(&url).json(n);
        if let Some(token) = token {
            req = req.bearer_auth(token);
        }
        req.send().await
    };
    let status = match tokio::time::timeout(DELIVERY_TIMEOUT, attempt).await {
        Ok(Ok(response)) => Some(response.status()),
        Ok(Err(e)) => {
            tracing::warn!(url, error = %e, "the daemon did not answer; spooling the notification");
            None
        }
        Err(_) => {
            tracing::warn!(url, "the daemon did not answer in time; spooling the notification");
            None
        }
    };
    match status {
        Some(s) if s.is_success() => Ok(Delivery::Delivered),
        Some(s) if s.is_client_error() && s.as_u16() != 408 && s.as_u16() != 429 => {
            tracing::warn!(url, status = s.as_u16(), "the daemon refused the notification");
            Ok(Delivery::Rejected(s.as_u16()))
        }
        other => {
            if let Some(s) = other {
                tracing::warn!(url, status = s.as_u16(), "the daemon failed; spooling the notification");
            }
            Ok(Delivery::Spooled(spool(data_dir, n)?))
        }
    }
}

/// What `semdex hooks notify` does: computes the notification for a hook event and delivers
/// or spools it with the configuration's listen address, token and data directory.
/// `Ok(None)` when the event needs no notification.
pub async fn notify(
    config: &crate::config::Config,
    repo: &Path,
    hook: &str,
    args: &[String],
    stdin: &str,
    state: Option<&HookState>,
) -> Result<Option<Delivery>> {
    let (repo, hook_name, args_owned, stdin_owned, state) =
        (repo.to_path_buf(), hook.to_string(), args.to_vec(), stdin.to_string(), state.cloned());
    let n = tokio::task::spawn_blocking(move || {
        notification(&repo, &hook_name, &args_owned, &stdin_owned, state.as_ref())
    })
    .await
    .map_err(|e| Error::Task(format!("computing the notification: {e}")))??;
    let Some(n) = n else { return Ok(None) };
    deliver(&n, config.listen, config.token.as_deref(), &config.data_dir).await.map(Some)
}

/// The spool directory in a data directory.
pub fn spool_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("spool")
}

/// Writes `n` to the spool atomically (temp file, fsync, rename) and returns its path. Names
/// start with the time in nanoseconds, zero-padded, so they sort oldest first.
pub fn spool(data_dir: &Path, n: &GitNotification) -> Result<PathBuf> {
    let dir = spool_dir(data_dir);
    std::fs::create_dir_all(&dir).map_err(io_err(&dir))?;
    let nanos =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    let name = format!("{nanos:020}-{:016x}.json", fastrand::u64(..));
    let path = dir.join(&name);
    let tmp = dir.join(format!(".{name}.tmp"));
    let body = serde_json::to_vec(n).map_err(|e| Error::Invalid(e.to_string()))?;
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(&body)?;
        f.sync_all()?;
        std::fs::rename(&tmp, &path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.map_err(io_err(&path))?;
    Ok(path)
}

/// The spooled notifications, oldest first. A file that cannot be read or parsed is renamed to
/// `<name>.bad` (kept for inspection, never read again) and skipped. A missing spool is empty.
pub fn read_spool(data_dir: &Path) -> Vec<(PathBuf, GitNotification)> {
    let dir = spool_dir(data_dir);
    let Ok(entries) = std::fs::read_dir(&dir) else { return Vec::new() };
    let mut paths: Vec<PathBuf> = entries
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| {
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
            !name.starts_with('.') && name.ends_with(".json")
        })
        .collect();
    paths.sort();
    let mut out = Vec::new();
    for path in paths {
        let parsed = std::fs::read(&path)
            .map_err(|e| e.to_string())
            .and_then(|bytes| serde_json::from_slice::<GitNotification>(&bytes).map_err(|e| e.to_string()));
        match parsed {
            Ok(n) => out.push((path, n)),
            Err(error) => {
                tracing::warn!(path = %path.display(), error, "unreadable spooled notification set aside");
                let _ = std::fs::rename(&path, path.with_extension("bad"));
            }
        }
    }
    out
}

/// Removes a spooled notification once it has been accepted; a file already gone is fine.
pub fn remove_spooled(path: &Path) -> Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io_err(path)(e)),
        _ => Ok(()),
    }
}

// The daemon side -----------------------------------------------------------------------------

/// Accepts a notification: finds the project whose root is `n.repo` (`Ok(None)` when there is
/// none), records the commits the event brought, and queues a `git_hook` run over the changed
/// paths (every changed path and the sources of renames and copies) at `n.new`. With no changed
/// path the commits are still recorded but no run is queued (`Ok(None)`).
///
/// Failing to read the commits (the repository moved, a commit is gone) is logged and does not
/// stop the run: the index following the tree matters more than the history.
pub async fn accept(store: &dyn Store, n: &GitNotification) -> Result<Option<IndexRun>> {
    check_shas(n)?;
    let Some(project) = store.project_by_root(&n.repo).await? else { return Ok(None) };
    accept_for(store, &project, n).await
}

/// The shas come over HTTP: they must be shas before any git command sees them.
fn check_shas(n: &GitNotification) -> Result<()> {
    match n.old.iter().chain([&n.new]).find(|sha| !is_sha(sha)) {
        Some(sha) => Err(Error::Invalid(format!("{sha:?} is not a commit sha"))),
        None => Ok(()),
    }
}

/// [`accept`] for the project already found for `n.repo` (the API looks it up first to check
/// the caller's access).
pub async fn accept_for(
    store: &dyn Store,
    project: &Project,
    n: &GitNotification,
) -> Result<Option<IndexRun>> {
    check_shas(n)?;
    let root = PathBuf::from(&n.repo);
    let (old, new, branch) = (n.old.clone(), n.new.clone(), n.branch.clone());
    let commits =
        tokio::task::spawn_blocking(move || commits_between(&root, old.as_deref(), &new, branch.as_deref()))
            .await
            .map_err(|e| Error::Task(format!("reading commits: {e}")))?;
    match commits {
        Ok(mut commits) => {
            // Oldest first, so row ids follow the history.
            commits.reverse();
            store.record_commits(project.id, &commits).await?;
        }
        Err(error) => {
            tracing::warn!(project = %project.name, %error, "cannot read the commits of a git notification");
        }
    }
    let paths = n.paths();
    if paths.is_empty() {
        return Ok(None);
    }
    let run = store.create_run(project.id, "git_hook", Some(&paths), Some(&n.new)).await?;
    Ok(Some(run))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn name_status_parses_renames_and_odd_paths() {
        let out = b"M\0src/a.ts\0R087\0old name.ts\0new\nname.ts\0D\0gone.ts\0C100\0x.ts\0y.ts\0T\0link\0";
        let changes = parse_name_status(out).unwrap();
        let got: Vec<(&str, &str, Option<&str>)> =
            changes.iter().map(|c| (c.status.as_str(), c.path.as_str(), c.from.as_deref())).collect();
        assert_eq!(
            got,
            vec![
                ("M", "src/a.ts", None),
                ("R", "new\nname.ts", Some("old name.ts")),
                ("D", "gone.ts", None),
                ("C", "y.ts", Some("x.ts")),
                ("T", "link", None),
            ]
        );
        assert!(parse_name_status(b"R100\0only-from\0").is_err());
        assert!(parse_name_status(b"M\0").is_err());
        assert!(parse_name_status(b"M\0a\0\0b\0").is_err());
        assert!(parse_name_status(b"").unwrap().is_empty());
    }

    #[test]
    fn log_records_parse_with_numstat() {
        let sha1 = "a".repeat(40);
        let sha2 = "b".repeat(40);
        let out = format!(
            "\x1e{sha1}\x1f{sha2}\x1fAda\x1fada@example.com\x1f2024-01-02T03:04:05+01:00\x1fsubject\n\nbody\x1f\n\
             3\t1\tsrc/a.ts\n-\t-\timg.png\n10\t0\tsrc/{{a => b}}.ts\n\
             \x1e{sha2}\x1f\x1f\x1f\x1f2024-01-01T00:00:00Z\x1froot\x1f\n"
        );
        let records = parse_log(&out, Some("main"));
        assert_eq!(records.len(), 2);
        assert_eq!(records[0].sha, sha1);
        assert_eq!(records[0].parents, vec![sha2.clone()]);
        assert_eq!(records[0].message, "subject\n\nbody");
        assert_eq!(records[0].author_name.as_deref(), Some("Ada"));
        assert_eq!((records[0].files_changed, records[0].additions, records[0].deletions), (3, 13, 1));
        assert_eq!(records[0].committed_at.unwrap().to_rfc3339(), "2024-01-02T02:04:05+00:00");
        assert_eq!(records[0].branch.as_deref(), Some("main"));
        assert!(records[1].parents.is_empty());
        assert_eq!(records[1].author_name, None);
        assert_eq!(records[1].files_changed, 0);
    }

    #[test]
    fn shell_quoting_survives_quotes() {
        assert_eq!(sh_quote("/a b/it's"), r"'/a b/it'\''s'");
    }

    #[test]
    fn only_hex_shas_pass() {
        assert!(is_sha(&"0123456789abcdef".repeat(2)));
        assert!(!is_sha("--output=/etc/passwd"));
        assert!(!is_sha("ABCDEF1"));
        assert!(!is_sha("abc"));
        assert!(is_null_sha(&"0".repeat(40)));
    }
}
