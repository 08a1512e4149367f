//! Index runs: queue (202 with `Location`), list, get, cancel, the timeline, and live progress
//! as server-sent events.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::IntoResponse;
use axum::response::sse::{Event, KeepAlive, Sse};
use bytes::Bytes;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{ApiError, ApiResult, AppState, BeforeQuery, Json, Path, Principal, Query, Scope};
use crate::store::{IndexRun, RunEvent, RunStatus};

pub fn run_json(r: &IndexRun) -> Value {
    json!({
        "id": r.id,
        "project_id": r.project_id,
        "trigger": r.trigger,
        "status": r.status.name(),
        "paths": r.paths,
        "commit": r.commit_sha,
        "files_indexed": r.files_indexed,
        "files_skipped": r.files_skipped,
        "files_deleted": r.files_deleted,
        "chunks": r.chunks,
        "chunks_embedded": r.chunks_embedded,
        "embedding_cache_hits": r.embedding_cache_hits,
        "tokens_embedded": r.tokens_embedded,
        "error": r.error,
        "created_at": r.created_at,
        "started_at": r.started_at,
        "finished_at": r.finished_at,
    })
}

fn event_json(e: &RunEvent) -> Value {
    json!({
        "id": e.id,
        "phase": e.phase,
        "event": e.event,
        "message": e.message,
        "data": e.data,
        "at": e.created_at,
    })
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateRun {
    /// Changed paths, relative to the project root; absent means a full walk.
    paths: Option<Vec<String>>,
}

pub async fn list(
    State(state): State<AppState>,
    principal: Principal,
    Path(project_id): Path<i64>,
    Query(q): Query<BeforeQuery>,
) -> ApiResult<Json<Value>> {
    principal.check_project(&state.engine.store, project_id, Scope::Read).await?;
    let limit = q.limit.unwrap_or(50).clamp(1, 500);
    let runs = state.engine.store.list_runs(project_id, q.before, limit).await?;
    let next = (runs.len() as i64 == limit).then(|| runs.last().map(|r| r.id)).flatten();
    Ok(Json(json!({ "runs": runs.iter().map(run_json).collect::<Vec<_>>(), "next_before": next })))
}

pub async fn create(
    State(state): State<AppState>,
    principal: Principal,
    Path(project_id): Path<i64>,
    body: Bytes,
) -> ApiResult<impl IntoResponse> {
    let project = principal.check_project(&state.engine.store, project_id, Scope::Write).await?;
    if project.root_path.is_none() {
        return Err(ApiError::Conflict("the project has no local root path to index".into()));
    }
    let request: CreateRun = if body.iter().all(u8::is_ascii_whitespace) {
        CreateRun { paths: None }
    } else {
        serde_json::from_slice(&body).map_err(|e| ApiError::BadRequest(format!("invalid JSON body: {e}")))?
    };
    if let Some(paths) = &request.paths {
        if paths.len() > 100_000 {
            return Err(ApiError::BadRequest("at most 100000 paths per run".into()));
        }
        for p in paths {
            check_relative_path(p)?;
        }
    }
    let run = state.runner.enqueue(project_id, "api", request.paths.as_deref(), None).await?;
    let mut headers = HeaderMap::new();
    if let Ok(v) = HeaderValue::from_str(&format!("/v1/runs/{}", run.id)) {
        headers.insert(header::LOCATION, v);
    }
    Ok((StatusCode::ACCEPTED, headers, Json(json!({ "run_id": run.id, "run": run_json(&run) }))))
}

/// A path inside a project: relative, `/`-separated, without `..`, NUL or backslashes.
pub fn check_relative_path(p: &str) -> ApiResult<()> {
    let bad = p.is_empty()
        || p.len() > 4096
        || p.starts_with('/')
        || p.contains('\0')
        || p.contains('\\')
        || p.split('/').any(|seg| seg == ".." || seg == "." || seg.is_empty());
    if bad {
        return Err(ApiError::BadRequest(
            "paths must be relative to the project root, '/'-separated, without '.', '..', NUL or backslashes".into(),
        ));
    }
    Ok(())
}

async fn readable_run(
    state: &AppState,
    principal: &Principal,
    run_id: i64,
    scope: Scope,
) -> ApiResult<IndexRun> {
    let not_found = || ApiError::NotFound(format!("index run {run_id}"));
    let run = state.engine.store.run(run_id).await?.ok_or_else(not_found)?;
    match principal.check_project(&state.engine.store, run.project_id, scope).await {
        Ok(_) => Ok(run),
        Err(ApiError::NotFound(_)) => Err(not_found()),
        Err(e) => Err(e),
    }
}

pub async fn get(
    State(state): State<AppState>,
    principal: Principal,
    Path(run_id): Path<i64>,
) -> ApiResult<Json<Value>> {
    let run = readable_run(&state, &principal, run_id, Scope::Read).await?;
    Ok(Json(run_json(&run)))
}

pub async fn cancel(
    State(state): State<AppState>,
    principal: Principal,
    Path(run_id): Path<i64>,
) -> ApiResult<Json<Value>> {
    readable_run(&state, &principal, run_id, Scope::Write).await?;
    let run = state.runner.cancel(run_id).await?;
    Ok(Json(run_json(&run)))
}

pub async fn events(
    State(state): State<AppState>,
    principal: Principal,
    Path(run_id): Path<i64>,
) -> ApiResult<Json<Value>> {
    readable_run(&state, &principal, run_id, Scope::Read).await?;
    let events = state.engine.store.run_events(run_id).await?;
    Ok(Json(json!({ "events": events.iter().map(event_json).collect::<Vec<_>>() })))
}

/// Server-sent events: each new timeline entry as an event named after it (`start`,
/// `progress`, `complete`, `error`), a `run` event whenever the run's status or counters
/// change, and the stream ends after the run finishes. It reads the store, so it follows runs
/// executing in any process.
pub async fn stream(
    State(state): State<AppState>,
    principal: Principal,
    Path(run_id): Path<i64>,
) -> ApiResult<impl IntoResponse> {
    let first = readable_run(&state, &principal, run_id, Scope::Read).await?;
    let store = state.engine.store.clone();
    let stream = async_stream(move |tx| async move {
        let mut last_event = 0i64;
        let mut last_run: Option<Value> = None;
        let mut run = first;
        loop {
            if let Ok(events) = store.run_events(run_id).await {
                let seen = last_event;
                for e in events.iter().filter(|e| e.id > seen) {
                    last_event = e.id;
                    let ev =
                        Event::default().event(e.event.clone()).id(e.id.to_string()).json_data(event_json(e));
                    if let Ok(ev) = ev
                        && tx.send(ev).await.is_err()
                    {
                        return;
                    }
                }
            }
            let now = run_json(&run);
            if last_run.as_ref() != Some(&now) {
                if let Ok(ev) = Event::default().event("run").json_data(&now)
                    && tx.send(ev).await.is_err()
                {
                    return;
                }
                last_run = Some(now);
            }
            if !matches!(run.status, RunStatus::Queued | RunStatus::Running) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
            match store.run(run_id).await {
                Ok(Some(r)) => run = r,
                _ => return,
            }
        }
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}

/// A stream fed by a task through a bounded channel; the task stops when the client leaves.
fn async_stream<F, Fut>(f: F) -> impl futures::Stream<Item = Result<Event, Infallible>>
where
    F: FnOnce(tokio::sync::mpsc::Sender<Event>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let (tx, rx) = tokio::sync::mpsc::channel(16);
    tokio::spawn(f(tx));
    futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|ev| (Ok(ev), rx)) })
}
