//! `semdex serve`: the daemon. Opens the engine, starts the job runner, serves the HTTP API,
//! and shuts down gracefully on ctrl-c or SIGTERM: stop accepting, drain requests (with a
//! timeout), stop runs at their next file boundary and release them to the queue, wait.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::api::{self, AppState};
use crate::config::{AuthMode, Config};
use crate::engine::Engine;
use crate::runner::Runner;
use crate::watch;

/// How long in-flight requests and runs get to finish once shutdown starts.
const DRAIN: Duration = Duration::from_secs(20);

/// The least time between two saves of the local HNSW files.
const VECTOR_SAVE_INTERVAL: Duration = Duration::from_secs(30);

pub async fn serve(config: Config) -> anyhow::Result<ExitCode> {
    if config.server.auth == AuthMode::None && !config.listen.ip().is_loopback() {
        bail!("refusing to listen on {} without authentication", config.listen);
    }
    let listen = config.listen;
    let engine = Engine::open(config).await?;
    if engine.config.server.auth == AuthMode::Token && engine.store.list_tokens().await?.is_empty() {
        bail!("auth mode token needs at least one token: create one with `semdex token create`");
    }
    let listener =
        tokio::net::TcpListener::bind(listen).await.with_context(|| format!("cannot listen on {listen}"))?;
    let local = listener.local_addr().context("reading the bound address")?;

    // Bring the local vector index up to date with the store before answering searches.
    let local_vectors = !engine.store.serves_dense_search().await.unwrap_or(false);
    // Every run syncs the local HNSW; rewriting its files after each one would make a one-file
    // commit cost a save of the whole graph.
    engine.vectors.defer_saves(VECTOR_SAVE_INTERVAL);
    if local_vectors && let Err(e) = engine.vectors.sync(engine.store.as_ref()).await {
        tracing::warn!(error = %e, "could not bring the local vector index up to date; it is rebuilt on next use");
    }
    // And the symbols held in memory (embedded mode), kept current from now on, so that symbol
    // searches need not go to the store. The first load runs in the background: a large table
    // takes seconds, and the store answers until it is in.
    engine.symbols.hold(&engine.store);

    let shutdown = CancellationToken::new();
    let tracker = TaskTracker::new();
    let runner = Runner::new(engine.clone());
    runner.start(&tracker, shutdown.clone());
    tracker.spawn(watch::run(engine.clone(), runner.clone(), shutdown.clone()));
    let state = AppState::new(engine, runner.clone());
    {
        // Notifications spooled by hooks while no daemon answered: at start, then now and then.
        let (state, shutdown) = (state.clone(), shutdown.clone());
        tracker.spawn(async move {
            loop {
                api::drain_spool(&state).await;
                if let Err(e) = state.engine.vectors.flush(true).await {
                    tracing::warn!(error = %e, "could not save the local vector index");
                }
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = tokio::time::sleep(Duration::from_secs(5)) => {}
                }
            }
        });
    }
    let data_dir = state.engine.config.data_dir.clone();
    let vectors = state.engine.vectors.clone();
    let app = api::app(state);

    let marker = DaemonFile::write(&data_dir, local)?;
    tracing::info!(address = %local, owner = runner.owner(), "semdex listening");
    // The one line scripts and tests read to learn the bound address (port 0 picks a free one).
    println!("semdex listening on http://{local}");

    let stop = shutdown.clone();
    let server = axum::serve(listener, app).with_graceful_shutdown(async move {
        wait_for_signal().await;
        tracing::info!("shutting down: draining requests and releasing runs");
        stop.cancel();
    });
    let served = tokio::spawn(async move { server.await });

    shutdown.cancelled().await;
    tracker.close();
    if tokio::time::timeout(DRAIN, tracker.wait()).await.is_err() {
        tracing::warn!("index runs did not stop in time; their leases lapse and another start resumes them");
    }
    if let Err(e) = vectors.flush(false).await {
        tracing::warn!(error = %e, "could not save the local vector index; the next start catches up");
    }
    match tokio::time::timeout(DRAIN, served).await {
        Ok(Ok(Ok(()))) => {}
        Ok(Ok(Err(e))) => tracing::warn!(error = %e, "server error during shutdown"),
        Ok(Err(e)) => tracing::warn!(error = %e, "server task failed"),
        Err(_) => tracing::warn!("requests did not drain in time"),
    }
    marker.remove();
    tracing::info!("stopped");
    Ok(ExitCode::SUCCESS)
}

async fn wait_for_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}

/// `daemon.json` in the data directory: where the daemon serving it listens, so the CLI on the
/// same data directory can reach it. Written at start, removed at shutdown; a stale file left
/// by a crash is harmless, as the CLI checks that the daemon answers.
struct DaemonFile(std::path::PathBuf);

impl DaemonFile {
    fn write(data_dir: &std::path::Path, address: std::net::SocketAddr) -> anyhow::Result<DaemonFile> {
        std::fs::create_dir_all(data_dir).with_context(|| format!("creating {}", data_dir.display()))?;
        let path = data_dir.join("daemon.json");
        let tmp = data_dir.join(format!(".daemon.json.{}", std::process::id()));
        let body = serde_json::json!({ "address": address.to_string(), "pid": std::process::id() });
        std::fs::write(&tmp, body.to_string()).with_context(|| format!("writing {}", tmp.display()))?;
        std::fs::rename(&tmp, &path).with_context(|| format!("writing {}", path.display()))?;
        Ok(DaemonFile(path))
    }

    fn remove(self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// A daemon reachable over HTTP.
pub struct DaemonClient {
    base: String,
    client: reqwest::Client,
}

/// The daemon serving this configuration's data directory, when one answers.
pub async fn running_daemon(config: &Config) -> Option<DaemonClient> {
    let text = std::fs::read_to_string(config.data_dir.join("daemon.json")).ok()?;
    let info: serde_json::Value = serde_json::from_str(&text).ok()?;
    let address: std::net::SocketAddr = info["address"].as_str()?.parse().ok()?;
    let client = reqwest::Client::builder().timeout(Duration::from_secs(60)).build().ok()?;
    let base = format!("http://{address}");
    let alive = client.get(format!("{base}/healthz")).timeout(Duration::from_millis(500)).send().await;
    alive.ok().filter(|r| r.status().is_success())?;
    Some(DaemonClient { base, client })
}

impl DaemonClient {
    /// `http://address:port`
    pub fn base(&self) -> &str {
        &self.base
    }

    /// POSTs JSON and returns the JSON answer; an error answer becomes an error with the
    /// daemon's message.
    pub async fn post(
        &self,
        path: &str,
        body: &serde_json::Value,
        token: Option<&str>,
    ) -> anyhow::Result<serde_json::Value> {
        let mut req = self.client.post(format!("{}{path}", self.base)).json(body);
        if let Some(token) = token {
            req = req.bearer_auth(token);
        }
        let resp = req.send().await.with_context(|| format!("asking the daemon at {}", self.base))?;
        let status = resp.status();
        let value: serde_json::Value = resp.json().await.context("reading the daemon's answer")?;
        if !status.is_success() {
            let message = value["error"]["message"].as_str().unwrap_or("request failed");
            bail!("the daemon answered {status}: {message}");
        }
        Ok(value)
    }
}
