//! `POST /v1/hooks/git`: a git hook's notification (see [`crate::hooks`]). The repository must
//! be a registered project the caller may write; its commits are recorded and a run is queued
//! for the changed paths.

use axum::extract::State;
use axum::http::StatusCode;
use serde_json::{Value, json};

use super::runs::check_relative_path;
use super::{ApiError, ApiResult, AppState, Json, Principal, Scope};
use crate::hooks::{self, GitNotification};

pub async fn git(
    State(state): State<AppState>,
    principal: Principal,
    Json(n): Json<GitNotification>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    for path in n.paths() {
        check_relative_path(&path)?;
    }
    let store = &state.engine.store;
    let Some(project) = store.project_by_root(&n.repo).await? else {
        return Err(ApiError::NotFound("project for this repository".into()));
    };
    principal.check_project(store, project.id, Scope::Write).await.map_err(|e| match e {
        ApiError::NotFound(_) => ApiError::NotFound("project for this repository".into()),
        other => other,
    })?;
    let run = hooks::accept_for(store.as_ref(), &project, &n).await.map_err(|e| match e {
        hooks::Error::Invalid(m) => ApiError::BadRequest(m),
        hooks::Error::Store(e) => e.into(),
        other => ApiError::internal(other),
    })?;
    if run.is_some() {
        state.runner.notify();
    }
    Ok((StatusCode::ACCEPTED, Json(json!({ "project_id": project.id, "run_id": run.map(|r| r.id) }))))
}

/// Accepts the notifications hooks spooled while no daemon answered, oldest first. A
/// notification that cannot be accepted now (the database is down) stays for the next try.
pub async fn drain_spool(state: &AppState) {
    let data_dir = state.engine.config.data_dir.clone();
    let spooled = match tokio::task::spawn_blocking(move || hooks::read_spool(&data_dir)).await {
        Ok(s) => s,
        Err(_) => return,
    };
    for (path, n) in spooled {
        match hooks::accept(state.engine.store.as_ref(), &n).await {
            Ok(run) => {
                if let Some(run) = run {
                    tracing::info!(run = run.id, repo = %n.repo, "queued a run from a spooled git notification");
                    state.runner.notify();
                }
                if let Err(e) = hooks::remove_spooled(&path) {
                    tracing::warn!(error = %e, "could not remove a spooled notification");
                }
            }
            Err(hooks::Error::Store(e)) => {
                tracing::warn!(error = %e, "spooled git notifications wait for the database");
                return;
            }
            Err(e) => {
                tracing::warn!(error = %e, path = %path.display(), "dropping a spooled git notification");
                let _ = hooks::remove_spooled(&path);
            }
        }
    }
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CommitsQuery {
    limit: Option<i64>,
}

/// `GET /v1/projects/{project_id}/commits`: the commits git hooks recorded, newest first.
pub async fn commits(
    State(state): State<AppState>,
    principal: Principal,
    super::Path(project_id): super::Path<i64>,
    super::Query(q): super::Query<CommitsQuery>,
) -> ApiResult<Json<Value>> {
    principal.check_project(&state.engine.store, project_id, Scope::Read).await?;
    let limit = q.limit.unwrap_or(50).clamp(1, 1000);
    let commits = state.engine.store.commits(project_id, limit).await?;
    let list: Vec<Value> = commits
        .iter()
        .map(|c| {
            json!({
                "id": c.id,
                "sha": c.sha,
                "parents": c.parents,
                "message": c.message,
                "author_name": c.author_name,
                "author_email": c.author_email,
                "branch": c.branch,
                "committed_at": c.committed_at,
                "files_changed": c.files_changed,
                "additions": c.additions,
                "deletions": c.deletions,
            })
        })
        .collect();
    Ok(Json(json!({ "commits": list })))
}
