//! File watching and the schedule: keeping projects fresh without a git hook.
//!
//! **Watcher.** For every project with a root path and watching enabled (the project's
//! `"watch"` setting, else `server.watch`), an OS watcher (inotify on Linux) reports changes
//! under the root. Events are coalesced per project: once no event has arrived for the debounce
//! time (or a burst has lasted ten debounce times), one run is queued with the changed paths.
//! Paths under `.git/` are dropped. An editor's atomic save (write a temporary file, rename it
//! over the target) reports both names: the target is indexed, and the temporary file, gone
//! by then, is a no-op delete. A directory created, removed or renamed queues a full run,
//! since the events do not list the files inside it. Ignored files are filtered by the run
//! itself, which applies the same walker rules as a full listing.
//!
//! **Reconciling.** Every few seconds the set of watched projects is compared with the store,
//! so projects registered or deleted through the API, or by another process, are picked up.
//!
//! **Verification.** Every `server.verify_interval_secs`, each project with a root path gets a
//! full run (trigger `schedule`) unless one is already queued or running: the mtime and hash
//! fast paths make it cheap, and it catches drift no hook or watcher reported.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use notify::{EventKind, RecursiveMode, Watcher as _};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::engine::Engine;
use crate::runner::Runner;
use crate::store::{Project, RunStatus};

const RECONCILE_EVERY: Duration = Duration::from_secs(3);

/// Changes seen for one project and not yet queued.
#[derive(Default)]
struct Pending {
    paths: HashSet<String>,
    full: bool,
    first: Option<Instant>,
    last: Option<Instant>,
}

/// Whether a project is watched: its own `"watch"` setting, else the server default.
pub fn watched(project: &Project, default: bool) -> bool {
    project.root_path.is_some() && project.settings.get("watch").and_then(|v| v.as_bool()).unwrap_or(default)
}

/// Runs the watchers and the verification schedule until `shutdown`.
pub async fn run(engine: Engine, runner: Arc<Runner>, shutdown: CancellationToken) {
    let (tx, mut rx) = mpsc::unbounded_channel::<(i64, notify::Event)>();
    let mut watchers: HashMap<i64, (PathBuf, notify::RecommendedWatcher)> = HashMap::new();
    let mut pending: HashMap<i64, Pending> = HashMap::new();
    let debounce = Duration::from_millis(engine.config.server.watch_debounce_millis);
    let verify_every = engine.config.server.verify_interval_secs;
    let mut next_verify = (verify_every > 0).then(|| Instant::now() + Duration::from_secs(verify_every));
    let mut next_reconcile = Instant::now();
    loop {
        if Instant::now() >= next_reconcile {
            reconcile(&engine, &runner, &tx, &mut watchers).await;
            next_reconcile = Instant::now() + RECONCILE_EVERY;
        }
        if let Some(at) = next_verify
            && Instant::now() >= at
        {
            verify(&engine, &runner).await;
            next_verify = Some(Instant::now() + Duration::from_secs(verify_every));
        }
        // Queue the projects whose changes have settled.
        let now = Instant::now();
        let due: Vec<i64> = pending
            .iter()
            .filter(|(_, p)| {
                p.last.is_some_and(|l| now.duration_since(l) >= debounce)
                    || p.first.is_some_and(|f| now.duration_since(f) >= debounce * 10)
            })
            .map(|(id, _)| *id)
            .collect();
        for id in due {
            if let Some(p) = pending.remove(&id) {
                let paths: Vec<String> = {
                    let mut v: Vec<String> = p.paths.into_iter().collect();
                    v.sort();
                    v
                };
                let paths = (!p.full).then_some(paths);
                match runner.enqueue(id, "watch", paths.as_deref(), None).await {
                    Ok(run) => tracing::info!(project = id, run = run.id, "queued a run for watched changes"),
                    Err(e) => {
                        tracing::warn!(project = id, error = %e, "could not queue a run for watched changes")
                    }
                }
            }
        }
        let wake = pending
            .values()
            .filter_map(|p| p.last.map(|l| l + debounce))
            .chain(pending.values().filter_map(|p| p.first.map(|f| f + debounce * 10)))
            .chain(std::iter::once(next_reconcile))
            .min()
            .unwrap_or(next_reconcile);
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tokio::time::sleep_until(wake) => {}
            _ = runner.projects_change() => next_reconcile = Instant::now(),
            event = rx.recv() => {
                let Some((id, event)) = event else { break };
                if let Some((root, _)) = watchers.get(&id) {
                    note(pending.entry(id).or_default(), root, &event);
                }
            }
        }
    }
}

/// Starts and stops watchers to match the store.
async fn reconcile(
    engine: &Engine,
    runner: &Runner,
    tx: &mpsc::UnboundedSender<(i64, notify::Event)>,
    watchers: &mut HashMap<i64, (PathBuf, notify::RecommendedWatcher)>,
) {
    let projects = match engine.store.list_projects().await {
        Ok(p) => p,
        Err(e) => {
            tracing::warn!(error = %e, "could not list projects to watch");
            return;
        }
    };
    let default = engine.config.server.watch;
    let wanted: HashMap<i64, PathBuf> = projects
        .iter()
        .filter(|p| watched(p, default))
        .filter_map(|p| p.root_path.as_ref().map(|r| (p.id, PathBuf::from(r))))
        .collect();
    watchers.retain(|id, (root, _)| wanted.get(id) == Some(root));
    for (id, root) in wanted {
        if watchers.contains_key(&id) {
            continue;
        }
        let tx = tx.clone();
        let handler = move |res: notify::Result<notify::Event>| {
            if let Ok(event) = res {
                let _ = tx.send((id, event));
            }
        };
        let started = notify::recommended_watcher(handler).and_then(|mut w| {
            w.watch(&root, RecursiveMode::Recursive)?;
            Ok(w)
        });
        match started {
            Ok(w) => {
                tracing::info!(project = id, root = %root.display(), "watching");
                watchers.insert(id, (root, w));
                // Changes made before the watcher started (while the daemon was down, or since
                // the last run) were not seen: a full run catches up, unless one is pending.
                catch_up(engine, runner, id, "watch").await;
            }
            Err(e) => tracing::warn!(project = id, root = %root.display(), error = %e, "cannot watch"),
        }
    }
}

/// Adds one event's paths to a project's pending changes.
fn note(pending: &mut Pending, root: &Path, event: &notify::Event) {
    use notify::event::{CreateKind, ModifyKind, RemoveKind};
    if matches!(event.kind, EventKind::Access(_)) {
        return;
    }
    let folder =
        matches!(event.kind, EventKind::Create(CreateKind::Folder) | EventKind::Remove(RemoveKind::Folder));
    let mut relevant = false;
    for path in &event.paths {
        let Ok(rel) = path.strip_prefix(root) else { continue };
        let Some(rel) = rel.to_str() else { continue };
        if rel.is_empty() || rel == ".git" || rel.starts_with(".git/") {
            continue;
        }
        relevant = true;
        if folder || (matches!(event.kind, EventKind::Modify(ModifyKind::Name(_))) && path.is_dir()) {
            pending.full = true;
        } else {
            pending.paths.insert(rel.replace('\\', "/"));
        }
    }
    if relevant {
        let now = Instant::now();
        pending.first.get_or_insert(now);
        pending.last = Some(now);
    }
}

/// Queues a full run for every project that has no run queued or running.
async fn verify(engine: &Engine, runner: &Runner) {
    let Ok(projects) = engine.store.list_projects().await else { return };
    for p in projects.iter().filter(|p| p.root_path.is_some()) {
        catch_up(engine, runner, p.id, "schedule").await;
    }
}

/// Queues a full run for a project unless one is already queued or running.
async fn catch_up(engine: &Engine, runner: &Runner, project_id: i64, trigger: &str) {
    let busy = match engine.store.list_runs(project_id, None, 20).await {
        Ok(runs) => runs.iter().any(|r| matches!(r.status, RunStatus::Queued | RunStatus::Running)),
        Err(_) => true,
    };
    if !busy && let Err(e) = runner.enqueue(project_id, trigger, None, None).await {
        tracing::warn!(project = project_id, error = %e, "could not queue a catch-up run");
    }
}
