//! `/v1/projects`: register, list, get, update and delete projects.

use std::path::PathBuf;

use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{ApiError, ApiResult, AppState, Json, Path, Principal, Scope};
use crate::store::{NewProject, Project};

/// A project as the API shows it.
pub fn project_json(p: &Project) -> Value {
    json!({
        "id": p.id,
        "name": p.name,
        "root_path": p.root_path,
        "repository_url": p.repository_url,
        "default_branch": p.default_branch,
        "settings": p.settings,
        "stats": { "files": p.total_files, "size_bytes": p.total_size_bytes, "chunks": p.total_chunks },
        "last_indexed_commit": p.last_indexed_commit,
        "created_at": p.created_at,
        "updated_at": p.updated_at,
    })
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateProject {
    name: String,
    root_path: Option<String>,
    repository_url: Option<String>,
    default_branch: Option<String>,
    settings: Option<Value>,
    /// Queue a first index run (default true when a root path is given).
    index: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateProject {
    name: Option<String>,
    #[serde(default, deserialize_with = "super::nullable")]
    repository_url: Option<Option<String>>,
    #[serde(default, deserialize_with = "super::nullable")]
    default_branch: Option<Option<String>>,
    settings: Option<Value>,
}

pub async fn list(State(state): State<AppState>, principal: Principal) -> ApiResult<Json<Value>> {
    let allowed = principal.project_ids(&state.engine.store).await?;
    let projects: Vec<Value> = state
        .engine
        .store
        .list_projects()
        .await?
        .iter()
        .filter(|p| allowed.as_ref().is_none_or(|ids| ids.contains(&p.id)))
        .map(project_json)
        .collect();
    Ok(Json(json!({ "projects": projects })))
}

pub async fn get(
    State(state): State<AppState>,
    principal: Principal,
    Path(project_id): Path<i64>,
) -> ApiResult<Json<Value>> {
    let project = principal.check_project(&state.engine.store, project_id, Scope::Read).await?;
    Ok(Json(project_json(&project)))
}

pub async fn create(
    State(state): State<AppState>,
    principal: Principal,
    Json(body): Json<CreateProject>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    // A token confined to some projects must not register new ones beyond its reach.
    principal.check_global_admin(&state.engine.store).await?;
    check_name(&body.name)?;
    if body.root_path.is_none() && body.repository_url.is_none() {
        return Err(ApiError::BadRequest("give a root_path or a repository_url".into()));
    }
    let root = match &body.root_path {
        Some(path) => Some(allowed_root(&state, path)?),
        None => None,
    };
    let settings = body.settings.unwrap_or_else(|| json!({}));
    if !settings.is_object() {
        return Err(ApiError::BadRequest("settings must be a JSON object".into()));
    }
    let project = state
        .engine
        .store
        .create_project(NewProject {
            name: body.name,
            root_path: root,
            repository_url: body.repository_url,
            default_branch: body.default_branch,
            settings,
        })
        .await?;
    state.runner.projects_changed();
    let mut out = project_json(&project);
    if project.root_path.is_some() && body.index.unwrap_or(true) {
        let run = state.runner.enqueue(project.id, "api", None, None).await?;
        out["run_id"] = json!(run.id);
    }
    Ok((StatusCode::CREATED, Json(out)))
}

pub async fn update(
    State(state): State<AppState>,
    principal: Principal,
    Path(project_id): Path<i64>,
    Json(body): Json<UpdateProject>,
) -> ApiResult<Json<Value>> {
    let current = principal.check_project(&state.engine.store, project_id, Scope::Admin).await?;
    if let Some(name) = &body.name {
        check_name(name)?;
    }
    if body.settings.as_ref().is_some_and(|s| !s.is_object()) {
        return Err(ApiError::BadRequest("settings must be a JSON object".into()));
    }
    let update = NewProject {
        name: body.name.unwrap_or(current.name),
        root_path: current.root_path,
        repository_url: body.repository_url.unwrap_or(current.repository_url),
        default_branch: body.default_branch.unwrap_or(current.default_branch),
        settings: body.settings.unwrap_or(current.settings),
    };
    let project = state.engine.store.update_project(project_id, &update).await?;
    state.runner.projects_changed();
    Ok(Json(project_json(&project)))
}

pub async fn remove(
    State(state): State<AppState>,
    principal: Principal,
    Path(project_id): Path<i64>,
) -> ApiResult<StatusCode> {
    principal.check_project(&state.engine.store, project_id, Scope::Admin).await?;
    if state.engine.store.delete_project(project_id).await? {
        state.runner.projects_changed();
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::NotFound(format!("project {project_id}")))
    }
}

fn check_name(name: &str) -> ApiResult<()> {
    let ok = !name.is_empty()
        && name.len() <= 200
        && name.chars().all(|c| c.is_alphanumeric() || "-_.".contains(c))
        && !name.starts_with('.');
    if ok {
        Ok(())
    } else {
        Err(ApiError::BadRequest(
            "name must be 1 to 200 letters, digits, '-', '_' or '.', not starting with '.'".into(),
        ))
    }
}

/// The canonical form of `path` when it is an existing directory inside an allowed root. Every
/// refusal gives the same message, so a caller cannot probe what exists outside the roots.
fn allowed_root(state: &AppState, path: &str) -> ApiResult<String> {
    let refused = || {
        ApiError::BadRequest(
            "root_path must be an absolute path to an existing directory within the allowed roots".into(),
        )
    };
    let given = PathBuf::from(path);
    let parent = given.components().any(|c| matches!(c, std::path::Component::ParentDir));
    if path.contains('\0') || !given.is_absolute() || parent {
        return Err(refused());
    }
    let roots: Vec<PathBuf> = state
        .engine
        .config
        .server
        .allowed_roots
        .iter()
        .filter_map(|r| std::fs::canonicalize(r).ok())
        .collect();
    // Lexically first: nothing outside the roots is even looked at.
    if !roots.iter().any(|r| given.starts_with(r))
        && !state.engine.config.server.allowed_roots.iter().any(|r| given.starts_with(r))
    {
        return Err(refused());
    }
    // Then for real, symlinks resolved: a link inside a root that leads out of it is refused.
    let canonical = std::fs::canonicalize(&given).map_err(|_| refused())?;
    if !canonical.is_dir() || !roots.iter().any(|r| canonical.starts_with(r)) {
        return Err(refused());
    }
    canonical.to_str().map(str::to_string).ok_or_else(refused)
}
