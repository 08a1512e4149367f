//! The agent-work records over HTTP: tasks (with subtasks), agents, executions, reviews, and the
//! activity log.
//!
//! Tasks, executions and reviews belong to a project (an execution through its task), and every
//! route checks the caller may act on that project with [`Principal::check_project`]; a record
//! of a project the caller may not read is reported as not found. Agents are global: anyone
//! with `read` lists them, `admin` changes them; an agent's executions are listed only from
//! the projects the caller may read.

use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{AfterQuery, ApiError, ApiResult, AppState, Json, Path, Principal, Query, Scope};
use crate::store::{
    ActivityEntry, Agent, Execution, NewAgent, NewExecution, NewReview, NewTask, Review, Task, TaskFilter,
    TaskUpdate,
};

const TASK_STATUSES: [&str; 5] = ["pending", "in_progress", "blocked", "done", "cancelled"];
const EXECUTION_STATUSES: [&str; 4] = ["running", "succeeded", "failed", "cancelled"];
/// Longest free text (descriptions, summaries, errors) accepted, in bytes.
const MAX_TEXT: usize = 100_000;

fn task_json(t: &Task) -> Value {
    json!({
        "id": t.id,
        "project_id": t.project_id,
        "parent_id": t.parent_id,
        "title": t.title,
        "description": t.description,
        "status": t.status,
        "priority": t.priority,
        "assigned_agent_id": t.assigned_agent_id,
        "created_by": t.created_by,
        "created_at": t.created_at,
        "updated_at": t.updated_at,
        "completed_at": t.completed_at,
    })
}

fn agent_json(a: &Agent) -> Value {
    json!({
        "id": a.id,
        "name": a.name,
        "kind": a.kind,
        "model": a.model,
        "config": a.config,
        "is_active": a.is_active,
        "created_at": a.created_at,
        "updated_at": a.updated_at,
    })
}

fn execution_json(e: &Execution) -> Value {
    json!({
        "id": e.id,
        "task_id": e.task_id,
        "project_id": e.project_id,
        "agent_id": e.agent_id,
        "status": e.status,
        "input_tokens": e.input_tokens,
        "output_tokens": e.output_tokens,
        "cost_usd": e.cost_usd,
        "duration_ms": e.duration_ms,
        "error": e.error,
        "started_at": e.started_at,
        "finished_at": e.finished_at,
    })
}

fn review_json(r: &Review) -> Value {
    json!({
        "id": r.id,
        "project_id": r.project_id,
        "commit_id": r.commit_id,
        "reviewer_agent_id": r.reviewer_agent_id,
        "reviewer_user_id": r.reviewer_user_id,
        "score": r.score,
        "summary": r.summary,
        "issues": r.issues,
        "suggestions": r.suggestions,
        "created_at": r.created_at,
        "updated_at": r.updated_at,
    })
}

fn activity_json(a: &ActivityEntry) -> Value {
    json!({
        "id": a.id,
        "project_id": a.project_id,
        "user_id": a.user_id,
        "action": a.action,
        "source": a.source,
        "subject_type": a.subject_type,
        "subject_id": a.subject_id,
        "details": a.details,
        "created_at": a.created_at,
    })
}

fn user_of(principal: &Principal) -> Option<i64> {
    match principal {
        Principal::Token { user_id, .. } => *user_id,
        Principal::Local => None,
    }
}

/// Checks access to a record's project (`None`: a record of no project, visible only to
/// callers not confined to some projects), reporting a refused read as `what` not found.
async fn check_owner(
    state: &AppState,
    principal: &Principal,
    project_id: Option<i64>,
    scope: Scope,
    what: String,
) -> ApiResult<()> {
    let result = match project_id {
        Some(id) => principal.check_project(&state.engine.store, id, scope).await.map(drop),
        None => match principal.project_ids(&state.engine.store).await? {
            None => Ok(()),
            Some(_) => Err(ApiError::NotFound(what.clone())),
        },
    };
    match result {
        Err(ApiError::NotFound(_)) => Err(ApiError::NotFound(what)),
        other => other,
    }
}

fn check_text(field: &str, value: &str, min: usize, max_chars: usize) -> ApiResult<()> {
    let n = value.chars().count();
    if n < min || n > max_chars || value.len() > MAX_TEXT {
        return Err(ApiError::BadRequest(format!("{field} must be {min} to {max_chars} characters")));
    }
    Ok(())
}

fn check_status(field: &str, value: &str, allowed: &[&str]) -> ApiResult<()> {
    if allowed.contains(&value) {
        Ok(())
    } else {
        Err(ApiError::BadRequest(format!("{field} must be one of {}", allowed.join(", "))))
    }
}

fn page_limit(limit: Option<i64>) -> i64 {
    limit.unwrap_or(100).clamp(1, 500)
}

fn next_after<T>(items: &[T], limit: i64, id: impl Fn(&T) -> i64) -> Option<i64> {
    (items.len() as i64 == limit).then(|| items.last().map(id)).flatten()
}

// Tasks -------------------------------------------------------------------------------------

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateTask {
    title: String,
    description: Option<String>,
    status: Option<String>,
    priority: Option<i32>,
    /// A task of the same project.
    parent_id: Option<i64>,
    assigned_agent_id: Option<i64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateTask {
    title: Option<String>,
    description: Option<String>,
    status: Option<String>,
    priority: Option<i32>,
    #[serde(default, deserialize_with = "super::nullable")]
    assigned_agent_id: Option<Option<i64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskQuery {
    status: Option<String>,
    parent_id: Option<i64>,
    after: Option<i64>,
    limit: Option<i64>,
}

fn check_task(title: &str, description: &str, status: &str, priority: i32) -> ApiResult<()> {
    check_text("title", title, 1, 500)?;
    check_text("description", description, 0, MAX_TEXT)?;
    check_status("status", status, &TASK_STATUSES)?;
    if !(0..=4).contains(&priority) {
        return Err(ApiError::BadRequest("priority must be between 0 (most urgent) and 4".into()));
    }
    Ok(())
}

async fn existing_agent(state: &AppState, agent_id: Option<i64>) -> ApiResult<()> {
    if let Some(id) = agent_id
        && state.engine.store.agent(id).await?.is_none()
    {
        return Err(ApiError::BadRequest(format!("agent {id} does not exist")));
    }
    Ok(())
}

/// A task the caller may act on with `scope`.
async fn task_for(state: &AppState, principal: &Principal, task_id: i64, scope: Scope) -> ApiResult<Task> {
    let what = || format!("task {task_id}");
    let task = state.engine.store.task(task_id).await?.ok_or_else(|| ApiError::NotFound(what()))?;
    check_owner(state, principal, task.project_id, scope, what()).await?;
    Ok(task)
}

pub async fn list_tasks(
    State(state): State<AppState>,
    principal: Principal,
    Path(project_id): Path<i64>,
    Query(q): Query<TaskQuery>,
) -> ApiResult<Json<Value>> {
    principal.check_project(&state.engine.store, project_id, Scope::Read).await?;
    if let Some(s) = &q.status {
        check_status("status", s, &TASK_STATUSES)?;
    }
    let limit = page_limit(q.limit);
    let filter = TaskFilter { status: q.status, parent_id: q.parent_id };
    let tasks = state.engine.store.list_tasks(project_id, &filter, q.after, limit).await?;
    let next = next_after(&tasks, limit, |t| t.id);
    Ok(Json(json!({ "tasks": tasks.iter().map(task_json).collect::<Vec<_>>(), "next_after": next })))
}

pub async fn create_task(
    State(state): State<AppState>,
    principal: Principal,
    Path(project_id): Path<i64>,
    Json(body): Json<CreateTask>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    principal.check_project(&state.engine.store, project_id, Scope::Write).await?;
    let task = NewTask {
        project_id: Some(project_id),
        parent_id: body.parent_id,
        title: body.title,
        description: body.description.unwrap_or_default(),
        status: body.status.unwrap_or_else(|| "pending".into()),
        priority: body.priority.unwrap_or(2),
        assigned_agent_id: body.assigned_agent_id,
        created_by: user_of(&principal),
    };
    check_task(&task.title, &task.description, &task.status, task.priority)?;
    existing_agent(&state, task.assigned_agent_id).await?;
    let task = state.engine.store.create_task(task).await?;
    Ok((StatusCode::CREATED, Json(task_json(&task))))
}

pub async fn get_task(
    State(state): State<AppState>,
    principal: Principal,
    Path(task_id): Path<i64>,
) -> ApiResult<Json<Value>> {
    let task = task_for(&state, &principal, task_id, Scope::Read).await?;
    let mut out = task_json(&task);
    if let Some(project_id) = task.project_id {
        let filter = TaskFilter { status: None, parent_id: Some(task.id) };
        let children = state.engine.store.list_tasks(project_id, &filter, None, 500).await?;
        out["subtasks"] = children.iter().map(|t| json!(t.id)).collect();
    }
    Ok(Json(out))
}

pub async fn update_task(
    State(state): State<AppState>,
    principal: Principal,
    Path(task_id): Path<i64>,
    Json(body): Json<UpdateTask>,
) -> ApiResult<Json<Value>> {
    let current = task_for(&state, &principal, task_id, Scope::Write).await?;
    let update = TaskUpdate {
        title: body.title.unwrap_or(current.title),
        description: body.description.unwrap_or(current.description),
        status: body.status.unwrap_or(current.status),
        priority: body.priority.unwrap_or(current.priority),
        assigned_agent_id: body.assigned_agent_id.unwrap_or(current.assigned_agent_id),
    };
    check_task(&update.title, &update.description, &update.status, update.priority)?;
    existing_agent(&state, update.assigned_agent_id).await?;
    let task = state.engine.store.update_task(task_id, &update).await?;
    Ok(Json(task_json(&task)))
}

pub async fn delete_task(
    State(state): State<AppState>,
    principal: Principal,
    Path(task_id): Path<i64>,
) -> ApiResult<StatusCode> {
    task_for(&state, &principal, task_id, Scope::Write).await?;
    if state.engine.store.delete_task(task_id).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::NotFound(format!("task {task_id}")))
    }
}

// Agents ------------------------------------------------------------------------------------

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateAgent {
    name: String,
    kind: Option<String>,
    model: Option<String>,
    config: Option<Value>,
    is_active: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateAgent {
    name: Option<String>,
    kind: Option<String>,
    #[serde(default, deserialize_with = "super::nullable")]
    model: Option<Option<String>>,
    config: Option<Value>,
    is_active: Option<bool>,
}

fn check_agent(a: &NewAgent) -> ApiResult<()> {
    check_text("name", &a.name, 1, 200)?;
    check_text("kind", &a.kind, 1, 64)?;
    if let Some(m) = &a.model {
        check_text("model", m, 1, 200)?;
    }
    if !a.config.is_object() {
        return Err(ApiError::BadRequest("config must be a JSON object".into()));
    }
    Ok(())
}

async fn existing(state: &AppState, agent_id: i64) -> ApiResult<Agent> {
    state.engine.store.agent(agent_id).await?.ok_or_else(|| ApiError::NotFound(format!("agent {agent_id}")))
}

pub async fn list_agents(
    State(state): State<AppState>,
    Query(q): Query<AfterQuery>,
) -> ApiResult<Json<Value>> {
    let limit = page_limit(q.limit);
    let agents = state.engine.store.list_agents(q.after, limit).await?;
    let next = next_after(&agents, limit, |a| a.id);
    Ok(Json(json!({ "agents": agents.iter().map(agent_json).collect::<Vec<_>>(), "next_after": next })))
}

pub async fn create_agent(
    State(state): State<AppState>,
    Json(body): Json<CreateAgent>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let agent = NewAgent {
        name: body.name,
        kind: body.kind.unwrap_or_else(|| "assistant".into()),
        model: body.model,
        config: body.config.unwrap_or_else(|| json!({})),
        is_active: body.is_active.unwrap_or(true),
    };
    check_agent(&agent)?;
    let agent = state.engine.store.create_agent(agent).await?;
    Ok((StatusCode::CREATED, Json(agent_json(&agent))))
}

pub async fn get_agent(State(state): State<AppState>, Path(agent_id): Path<i64>) -> ApiResult<Json<Value>> {
    Ok(Json(agent_json(&existing(&state, agent_id).await?)))
}

pub async fn update_agent(
    State(state): State<AppState>,
    Path(agent_id): Path<i64>,
    Json(body): Json<UpdateAgent>,
) -> ApiResult<Json<Value>> {
    let current = existing(&state, agent_id).await?;
    let update = NewAgent {
        name: body.name.unwrap_or(current.name),
        kind: body.kind.unwrap_or(current.kind),
        model: body.model.unwrap_or(current.model),
        config: body.config.unwrap_or(current.config),
        is_active: body.is_active.unwrap_or(current.is_active),
    };
    check_agent(&update)?;
    let agent = state.engine.store.update_agent(agent_id, &update).await?;
    Ok(Json(agent_json(&agent)))
}

pub async fn delete_agent(State(state): State<AppState>, Path(agent_id): Path<i64>) -> ApiResult<StatusCode> {
    if state.engine.store.delete_agent(agent_id).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::NotFound(format!("agent {agent_id}")))
    }
}

pub async fn agent_executions(
    State(state): State<AppState>,
    principal: Principal,
    Path(agent_id): Path<i64>,
    Query(q): Query<AfterQuery>,
) -> ApiResult<Json<Value>> {
    existing(&state, agent_id).await?;
    let projects = principal.project_ids(&state.engine.store).await?;
    let limit = page_limit(q.limit);
    let found =
        state.engine.store.list_executions(None, Some(agent_id), projects.as_deref(), q.after, limit).await?;
    let next = next_after(&found, limit, |e| e.id);
    Ok(Json(
        json!({ "executions": found.iter().map(execution_json).collect::<Vec<_>>(), "next_after": next }),
    ))
}

// Executions --------------------------------------------------------------------------------

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateExecution {
    agent_id: Option<i64>,
    status: Option<String>,
    input_tokens: Option<i64>,
    output_tokens: Option<i64>,
    cost_usd: Option<f64>,
    duration_ms: Option<i64>,
    error: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateExecution {
    status: Option<String>,
    input_tokens: Option<i64>,
    output_tokens: Option<i64>,
    cost_usd: Option<f64>,
    #[serde(default, deserialize_with = "super::nullable")]
    duration_ms: Option<Option<i64>>,
    #[serde(default, deserialize_with = "super::nullable")]
    error: Option<Option<String>>,
}

fn check_execution(e: &NewExecution) -> ApiResult<()> {
    check_status("status", &e.status, &EXECUTION_STATUSES)?;
    if e.input_tokens < 0 || e.output_tokens < 0 || e.duration_ms.is_some_and(|d| d < 0) {
        return Err(ApiError::BadRequest("token counts and duration_ms must not be negative".into()));
    }
    if !e.cost_usd.is_finite() || e.cost_usd < 0.0 {
        return Err(ApiError::BadRequest("cost_usd must be a non-negative number".into()));
    }
    if let Some(error) = &e.error {
        check_text("error", error, 0, MAX_TEXT)?;
    }
    Ok(())
}

/// An execution the caller may act on with `scope`.
async fn execution_for(
    state: &AppState,
    principal: &Principal,
    execution_id: i64,
    scope: Scope,
) -> ApiResult<Execution> {
    let what = || format!("execution {execution_id}");
    let found =
        state.engine.store.execution(execution_id).await?.ok_or_else(|| ApiError::NotFound(what()))?;
    check_owner(state, principal, found.project_id, scope, what()).await?;
    Ok(found)
}

pub async fn task_executions(
    State(state): State<AppState>,
    principal: Principal,
    Path(task_id): Path<i64>,
    Query(q): Query<AfterQuery>,
) -> ApiResult<Json<Value>> {
    task_for(&state, &principal, task_id, Scope::Read).await?;
    let limit = page_limit(q.limit);
    let found = state.engine.store.list_executions(Some(task_id), None, None, q.after, limit).await?;
    let next = next_after(&found, limit, |e| e.id);
    Ok(Json(
        json!({ "executions": found.iter().map(execution_json).collect::<Vec<_>>(), "next_after": next }),
    ))
}

pub async fn create_execution(
    State(state): State<AppState>,
    principal: Principal,
    Path(task_id): Path<i64>,
    Json(body): Json<CreateExecution>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    task_for(&state, &principal, task_id, Scope::Write).await?;
    let execution = NewExecution {
        task_id,
        agent_id: body.agent_id,
        status: body.status.unwrap_or_else(|| "running".into()),
        input_tokens: body.input_tokens.unwrap_or(0),
        output_tokens: body.output_tokens.unwrap_or(0),
        cost_usd: body.cost_usd.unwrap_or(0.0),
        duration_ms: body.duration_ms,
        error: body.error,
    };
    check_execution(&execution)?;
    existing_agent(&state, execution.agent_id).await?;
    let execution = state.engine.store.create_execution(execution).await?;
    Ok((StatusCode::CREATED, Json(execution_json(&execution))))
}

pub async fn get_execution(
    State(state): State<AppState>,
    principal: Principal,
    Path(execution_id): Path<i64>,
) -> ApiResult<Json<Value>> {
    let found = execution_for(&state, &principal, execution_id, Scope::Read).await?;
    Ok(Json(execution_json(&found)))
}

pub async fn update_execution(
    State(state): State<AppState>,
    principal: Principal,
    Path(execution_id): Path<i64>,
    Json(body): Json<UpdateExecution>,
) -> ApiResult<Json<Value>> {
    let current = execution_for(&state, &principal, execution_id, Scope::Write).await?;
    let update = NewExecution {
        task_id: current.task_id,
        agent_id: current.agent_id,
        status: body.status.unwrap_or(current.status),
        input_tokens: body.input_tokens.unwrap_or(current.input_tokens),
        output_tokens: body.output_tokens.unwrap_or(current.output_tokens),
        cost_usd: body.cost_usd.unwrap_or(current.cost_usd),
        duration_ms: body.duration_ms.unwrap_or(current.duration_ms),
        error: body.error.unwrap_or(current.error),
    };
    check_execution(&update)?;
    let found = state.engine.store.update_execution(execution_id, &update).await?;
    Ok(Json(execution_json(&found)))
}

// Reviews -----------------------------------------------------------------------------------

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateReview {
    /// A commit of the project.
    commit_id: i64,
    reviewer_agent_id: Option<i64>,
    /// Defaults to the caller's user.
    reviewer_user_id: Option<i64>,
    score: Option<i32>,
    summary: Option<String>,
    issues: Option<Value>,
    suggestions: Option<Value>,
}

pub async fn list_reviews(
    State(state): State<AppState>,
    principal: Principal,
    Path(project_id): Path<i64>,
    Query(q): Query<AfterQuery>,
) -> ApiResult<Json<Value>> {
    principal.check_project(&state.engine.store, project_id, Scope::Read).await?;
    let limit = page_limit(q.limit);
    let reviews = state.engine.store.list_reviews(project_id, q.after, limit).await?;
    let next = next_after(&reviews, limit, |r| r.id);
    Ok(Json(json!({ "reviews": reviews.iter().map(review_json).collect::<Vec<_>>(), "next_after": next })))
}

pub async fn create_review(
    State(state): State<AppState>,
    principal: Principal,
    Path(project_id): Path<i64>,
    Json(body): Json<CreateReview>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    principal.check_project(&state.engine.store, project_id, Scope::Write).await?;
    let review = NewReview {
        project_id,
        commit_id: body.commit_id,
        reviewer_agent_id: body.reviewer_agent_id,
        reviewer_user_id: body.reviewer_user_id.or_else(|| user_of(&principal)),
        score: body.score,
        summary: body.summary.unwrap_or_default(),
        issues: body.issues.unwrap_or_else(|| json!([])),
        suggestions: body.suggestions.unwrap_or_else(|| json!([])),
    };
    if review.score.is_some_and(|s| !(0..=100).contains(&s)) {
        return Err(ApiError::BadRequest("score must be between 0 and 100".into()));
    }
    check_text("summary", &review.summary, 0, MAX_TEXT)?;
    if !review.issues.is_array() || !review.suggestions.is_array() {
        return Err(ApiError::BadRequest("issues and suggestions must be JSON arrays".into()));
    }
    existing_agent(&state, review.reviewer_agent_id).await?;
    if let Some(user) = review.reviewer_user_id
        && state.engine.store.user(user).await?.is_none()
    {
        return Err(ApiError::BadRequest(format!("user {user} does not exist")));
    }
    let review = state.engine.store.create_review(review).await?;
    Ok((StatusCode::CREATED, Json(review_json(&review))))
}

pub async fn get_review(
    State(state): State<AppState>,
    principal: Principal,
    Path(review_id): Path<i64>,
) -> ApiResult<Json<Value>> {
    let what = || format!("review {review_id}");
    let review = state.engine.store.review(review_id).await?.ok_or_else(|| ApiError::NotFound(what()))?;
    check_owner(&state, &principal, Some(review.project_id), Scope::Read, what()).await?;
    Ok(Json(review_json(&review)))
}

// Activity ----------------------------------------------------------------------------------

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActivityQuery {
    project_id: Option<i64>,
    before: Option<i64>,
    limit: Option<i64>,
}

pub async fn activity(
    State(state): State<AppState>,
    principal: Principal,
    Query(q): Query<ActivityQuery>,
) -> ApiResult<Json<Value>> {
    let store = &state.engine.store;
    let limit = page_limit(q.limit);
    let entries = match q.project_id {
        Some(id) => {
            principal.check_project(store, id, Scope::Read).await?;
            store.activity(Some(id), q.before, limit).await?
        }
        None => match principal.project_ids(store).await? {
            None => store.activity(None, q.before, limit).await?,
            Some(ids) => store.activity_in(&ids, q.before, limit).await?,
        },
    };
    let next = next_after(&entries, limit, |a| a.id);
    Ok(Json(
        json!({ "activity": entries.iter().map(activity_json).collect::<Vec<_>>(), "next_before": next }),
    ))
}
