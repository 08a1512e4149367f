//! The job runner: leases index runs from the store and executes them.
//!
//! **Run loop.** Each worker is a tokio task that asks the store for work (`lease_run`: the
//! oldest queued run, or a running one whose lease lapsed because its worker died). With nothing
//! to do it sleeps until it is woken (a run was queued in this process) or the poll interval
//! passes (runs queued by other processes sharing one PostgreSQL). With a run, it executes
//! [`indexing::index_project`]: walking and analysis run on rayon's pool behind a stop flag, the
//! writes and embedding calls on the async runtime.
//!
//! **Leases.** While a run executes, a companion task renews its lease every few seconds and
//! writes throttled progress events to the run's timeline. A failed renewal means the run is no
//! longer this worker's: it was cancelled through the store (by this or another process) or taken
//! over after a stall. The run is then stopped at the next file boundary and left as the store
//! has it.
//!
//! **Shutdown.** Cancelling the shutdown token stops each run at its next file boundary and
//! releases it to the queue, so the next start resumes it; nothing acknowledged is lost, since
//! every file's rows are written in one transaction and unembedded chunks stay pending.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::engine::Engine;
use crate::indexing::{self, IndexOptions, Progress};
use crate::store::{self, IndexRun, RunStatus, StoreError};

/// Counters the metrics endpoint reports.
#[derive(Debug, Default)]
pub struct RunnerStats {
    pub succeeded: AtomicU64,
    pub failed: AtomicU64,
    pub cancelled: AtomicU64,
    pub released: AtomicU64,
}

/// Leases and executes index runs; one per process.
#[derive(Debug)]
pub struct Runner {
    engine: Engine,
    owner: String,
    wake: Notify,
    /// Signalled when projects are registered, changed or deleted, so watchers follow at once.
    projects: Notify,
    /// Cancellation handles of the runs executing in this process.
    running: Mutex<HashMap<i64, CancellationToken>>,
    pub stats: RunnerStats,
}

impl Runner {
    pub fn new(engine: Engine) -> Arc<Runner> {
        let owner = format!(
            "{}-{}-{:08x}",
            hostname().unwrap_or_else(|| "semdex".into()),
            std::process::id(),
            fastrand::u32(..)
        );
        Arc::new(Runner {
            engine,
            owner,
            wake: Notify::new(),
            projects: Notify::new(),
            running: Mutex::new(HashMap::new()),
            stats: RunnerStats::default(),
        })
    }

    /// The name this process leases runs under.
    pub fn owner(&self) -> &str {
        &self.owner
    }

    /// Starts the configured number of workers on `tracker`; they stop when `shutdown` is
    /// cancelled, releasing what they hold.
    pub fn start(self: &Arc<Runner>, tracker: &TaskTracker, shutdown: CancellationToken) {
        for _ in 0..self.engine.config.server.workers {
            let runner = self.clone();
            let shutdown = shutdown.clone();
            tracker.spawn(async move { runner.worker(shutdown).await });
        }
    }

    /// Wakes idle workers: a run was just queued.
    pub fn notify(&self) {
        self.wake.notify_waiters();
        self.wake.notify_one();
    }

    /// Tells the watcher that the set of projects changed.
    pub fn projects_changed(&self) {
        self.projects.notify_one();
    }

    /// Waits until [`Runner::projects_changed`] is called.
    pub async fn projects_change(&self) {
        self.projects.notified().await;
    }

    /// Queues a run for a project and wakes a worker.
    pub async fn enqueue(
        &self,
        project_id: i64,
        trigger: &str,
        paths: Option<&[String]>,
        commit: Option<&str>,
    ) -> store::Result<IndexRun> {
        let run = self.engine.store.create_run(project_id, trigger, paths, commit).await?;
        self.notify();
        Ok(run)
    }

    /// Cancels a queued or running run. A run executing here stops at its next file boundary;
    /// one executing in another process stops when its next lease renewal fails.
    pub async fn cancel(&self, run_id: i64) -> store::Result<IndexRun> {
        let store = &self.engine.store;
        store.finish_run(run_id, RunStatus::Cancelled, Some("cancelled on request")).await?;
        if let Some(token) = self.running.lock().ok().and_then(|r| r.get(&run_id).cloned()) {
            token.cancel();
        }
        store.run(run_id).await?.ok_or_else(|| StoreError::NotFound(format!("index run {run_id}")))
    }

    /// Runs executing in this process.
    pub fn running(&self) -> usize {
        self.running.lock().map(|r| r.len()).unwrap_or(0)
    }

    async fn worker(self: Arc<Runner>, shutdown: CancellationToken) {
        let poll = Duration::from_millis(self.engine.config.server.poll_millis);
        let lease = self.engine.config.server.lease_secs;
        while !shutdown.is_cancelled() {
            let leased = self.engine.store.lease_run(&self.owner, lease).await;
            match leased {
                Ok(Some(run)) => {
                    self.execute(run, &shutdown).await;
                    continue;
                }
                Ok(None) => {}
                Err(e) => tracing::warn!(error = %e, "could not lease an index run"),
            }
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(poll) => {}
            }
        }
    }

    async fn execute(&self, run: IndexRun, shutdown: &CancellationToken) {
        let store = self.engine.store.clone();
        let run_id = run.id;
        let project = match store.project(run.project_id).await {
            Ok(Some(p)) => p,
            Ok(None) => {
                let _ =
                    store.finish_run(run_id, RunStatus::Failed, Some("the project no longer exists")).await;
                return;
            }
            Err(e) => {
                // Leave the lease to lapse; another attempt will follow.
                tracing::warn!(run = run_id, error = %e, "could not load the run's project");
                return;
            }
        };
        tracing::info!(run = run_id, project = %project.name, trigger = %run.trigger, "index run started");
        let token = shutdown.child_token();
        if let Ok(mut running) = self.running.lock() {
            running.insert(run_id, token.clone());
        }
        let latest: Arc<Mutex<Option<Progress>>> = Arc::new(Mutex::new(None));
        let lost = Arc::new(AtomicBool::new(false));
        let keeper = {
            let (store, owner, token, lost, latest) =
                (store.clone(), self.owner.clone(), token.clone(), lost.clone(), latest.clone());
            let lease = self.engine.config.server.lease_secs;
            tokio::spawn(async move {
                let renew_every = Duration::from_secs((lease as u64 / 3).clamp(1, 2));
                let mut last_renewal = tokio::time::Instant::now();
                let mut last_progress: Option<Progress> = None;
                loop {
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    let current = latest.lock().ok().and_then(|p| p.clone());
                    if current.is_some() && current != last_progress {
                        if let Some(p) = &current {
                            let data = serde_json::json!({ "done": p.done, "total": p.total });
                            let _ = store.add_run_event(run_id, p.phase, "progress", None, data).await;
                        }
                        last_progress = current;
                    }
                    if last_renewal.elapsed() >= renew_every {
                        last_renewal = tokio::time::Instant::now();
                        match store.heartbeat_run(run_id, &owner, lease).await {
                            Ok(true) => {}
                            Ok(false) => {
                                lost.store(true, Ordering::SeqCst);
                                token.cancel();
                                break;
                            }
                            Err(e) => tracing::warn!(run = run_id, error = %e, "could not renew the lease"),
                        }
                    }
                }
            })
        };
        let options = IndexOptions {
            dry_run: false,
            progress: Some(Box::new(move |p: &Progress| {
                if let Ok(mut latest) = latest.lock() {
                    *latest = Some(p.clone());
                }
            })),
        };
        let result = indexing::index_project(&self.engine, &project, &run, &options, &token).await;
        keeper.abort();
        if let Ok(mut running) = self.running.lock() {
            running.remove(&run_id);
        }
        if lost.load(Ordering::SeqCst) {
            tracing::info!(run = run_id, "index run stopped: cancelled or taken over");
            self.stats.cancelled.fetch_add(1, Ordering::Relaxed);
            return;
        }
        match result {
            Ok(summary) => {
                match store.finish_run(run_id, RunStatus::Succeeded, None).await {
                    Ok(()) => {
                        self.stats.succeeded.fetch_add(1, Ordering::Relaxed);
                        if let Some(sha) = run.commit_sha.as_deref() {
                            let _ = store.set_last_indexed_commit(project.id, Some(sha)).await;
                        }
                    }
                    // Cancelled through the store just as it finished.
                    Err(StoreError::Conflict(_)) => {}
                    Err(e) => tracing::warn!(run = run_id, error = %e, "could not record the run's end"),
                }
                tracing::info!(
                    run = run_id,
                    files = summary.files_indexed,
                    chunks = summary.chunks,
                    embedded = summary.chunks_embedded,
                    ms = summary.duration_ms,
                    "index run succeeded"
                );
            }
            Err(e) if e.downcast_ref::<indexing::Cancelled>().is_some() || token.is_cancelled() => {
                if shutdown.is_cancelled() {
                    // Stopping, not cancelled: the next start resumes it.
                    match store.release_run(run_id, &self.owner).await {
                        Ok(_) => self.stats.released.fetch_add(1, Ordering::Relaxed),
                        Err(e) => {
                            tracing::warn!(run = run_id, error = %e, "could not release the run");
                            0
                        }
                    };
                } else {
                    let _ =
                        store.finish_run(run_id, RunStatus::Cancelled, Some("cancelled on request")).await;
                    self.stats.cancelled.fetch_add(1, Ordering::Relaxed);
                }
            }
            Err(e) => {
                let message = crate::error_line(&e);
                tracing::warn!(run = run_id, error = %message, "index run failed");
                let _ =
                    store.add_run_event(run_id, "run", "error", Some(&message), serde_json::json!({})).await;
                let _ = store.finish_run(run_id, RunStatus::Failed, Some(&message)).await;
                self.stats.failed.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

fn hostname() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
}
