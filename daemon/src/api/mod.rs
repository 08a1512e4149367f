//! The HTTP API under `/v1`, plus `/healthz`, `/readyz`, `/metrics` and `/openapi.json`.
//!
//! Every route is one entry of [`routes`]: its method, path, summary and the scope it needs. The
//! router is built from that table and the OpenAPI document is generated from it, so a route
//! cannot exist undocumented nor be documented without existing.
//!
//! Layers, outermost first: request id and logging, load shedding (503 with `Retry-After` past
//! the concurrency limit), per-request timeout, body-size limit (413), CORS when an allow-list
//! is configured, then authentication, which puts a [`auth::Principal`] in the request.

mod admin;
mod auth;
mod error;
mod files;
mod hooks;
mod ops;
mod projects;
mod runs;
mod schema;
mod search;
mod work;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::{HeaderValue, Method};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::MethodRouter;
use tokio::sync::Semaphore;

pub use self::auth::{Principal, Scope, hash_token, new_token_secret};
pub use self::error::{ApiError, ApiResult};
pub use self::hooks::drain_spool;
pub use self::ops::{Metrics, QueryParameter, query_parameters};
pub use self::schema::request_body;
pub use self::search::response_json as search_response_json;

use crate::engine::Engine;
use crate::runner::Runner;

/// What every handler shares.
#[derive(Clone, Debug)]
pub struct AppState {
    pub engine: Engine,
    pub runner: Arc<Runner>,
    pub metrics: Arc<Metrics>,
    load: Arc<Semaphore>,
}

impl AppState {
    pub fn new(engine: Engine, runner: Arc<Runner>) -> AppState {
        let permits = engine.config.server.max_concurrent_requests;
        AppState {
            engine,
            runner,
            metrics: Arc::new(Metrics::default()),
            load: Arc::new(Semaphore::new(permits)),
        }
    }
}

/// One documented route.
pub struct Route {
    pub method: Method,
    /// The axum path, with `{param}` segments (the same syntax OpenAPI uses).
    pub path: &'static str,
    pub summary: &'static str,
    /// The scope a token needs; `None` for the unauthenticated operations routes.
    pub scope: Option<Scope>,
    handler: MethodRouter<AppState>,
}

fn route(
    method: Method,
    path: &'static str,
    scope: Option<Scope>,
    summary: &'static str,
    handler: MethodRouter<AppState>,
) -> Route {
    Route { method, path, summary, scope, handler }
}

/// Every route the API serves.
pub fn routes() -> Vec<Route> {
    use Scope::{Admin, Read, Write};
    use axum::routing::{delete, get, patch, post};
    vec![
        route(Method::GET, "/healthz", None, "Liveness: the process answers", get(ops::healthz)),
        route(
            Method::GET,
            "/readyz",
            None,
            "Readiness: database reachable, migrations current, embedder circuit state",
            get(ops::readyz),
        ),
        route(Method::GET, "/openapi.json", None, "This document", get(ops::openapi)),
        route(Method::GET, "/metrics", Some(Admin), "Prometheus metrics", get(ops::metrics)),
        route(
            Method::GET,
            "/v1/projects",
            Some(Read),
            "List the projects the caller may read",
            get(projects::list),
        ),
        route(
            Method::POST,
            "/v1/projects",
            Some(Admin),
            "Register a local repository as a project (and queue its first index run)",
            post(projects::create),
        ),
        route(Method::GET, "/v1/projects/{project_id}", Some(Read), "Get a project", get(projects::get)),
        route(
            Method::PATCH,
            "/v1/projects/{project_id}",
            Some(Admin),
            "Update a project's repository URL, default branch or settings",
            patch(projects::update),
        ),
        route(
            Method::DELETE,
            "/v1/projects/{project_id}",
            Some(Admin),
            "Delete a project and everything indexed for it",
            delete(projects::remove),
        ),
        route(
            Method::GET,
            "/v1/projects/{project_id}/runs",
            Some(Read),
            "List a project's index runs, newest first",
            get(runs::list),
        ),
        route(
            Method::POST,
            "/v1/projects/{project_id}/runs",
            Some(Write),
            "Queue an index run (202 with its id and Location)",
            post(runs::create),
        ),
        route(Method::GET, "/v1/runs/{run_id}", Some(Read), "Get an index run", get(runs::get)),
        route(
            Method::POST,
            "/v1/runs/{run_id}/cancel",
            Some(Write),
            "Cancel a queued or running index run",
            post(runs::cancel),
        ),
        route(
            Method::GET,
            "/v1/runs/{run_id}/events",
            Some(Read),
            "An index run's timeline",
            get(runs::events),
        ),
        route(
            Method::GET,
            "/v1/runs/{run_id}/stream",
            Some(Read),
            "An index run's live progress as server-sent events",
            get(runs::stream),
        ),
        route(Method::POST, "/v1/search", Some(Read), "Search indexed code", post(search::search)),
        route(
            Method::GET,
            "/v1/projects/{project_id}/files",
            Some(Read),
            "List a project's files with skip reasons and stats (cursor pagination)",
            get(files::list),
        ),
        route(
            Method::GET,
            "/v1/projects/{project_id}/file",
            Some(Read),
            "One file (?path=) with its symbols, imports and importers",
            get(files::detail),
        ),
        route(
            Method::GET,
            "/v1/projects/{project_id}/symbols",
            Some(Read),
            "Symbols by name, prefix or substring (?q=), optionally of one kind",
            get(files::symbols),
        ),
        route(
            Method::GET,
            "/v1/projects/{project_id}/graph",
            Some(Read),
            "A file's imports or importers (?path=&direction=&depth=)",
            get(files::graph),
        ),
        route(Method::GET, "/v1/chunks/{chunk_id}", Some(Read), "A chunk by id", get(files::chunk)),
        route(
            Method::POST,
            "/v1/hooks/git",
            Some(Write),
            "A git hook's notification: record the commits and queue a run for the changed paths",
            post(hooks::git),
        ),
        route(
            Method::GET,
            "/v1/projects/{project_id}/commits",
            Some(Read),
            "The commits git hooks recorded for a project, newest first (?limit=)",
            get(hooks::commits),
        ),
        route(
            Method::GET,
            "/v1/users",
            Some(Admin),
            "List users (cursor pagination)",
            get(admin::list_users),
        ),
        route(Method::POST, "/v1/users", Some(Admin), "Create a user", post(admin::create_user)),
        route(Method::GET, "/v1/users/{user_id}", Some(Admin), "Get a user", get(admin::get_user)),
        route(Method::PATCH, "/v1/users/{user_id}", Some(Admin), "Update a user", patch(admin::update_user)),
        route(
            Method::DELETE,
            "/v1/users/{user_id}",
            Some(Admin),
            "Delete a user with their tokens and memberships",
            delete(admin::delete_user),
        ),
        route(
            Method::GET,
            "/v1/tokens",
            Some(Admin),
            "List tokens, newest first, without secrets",
            get(admin::list_tokens),
        ),
        route(
            Method::POST,
            "/v1/tokens",
            Some(Admin),
            "Create a token; the response carries its secret, shown this once",
            post(admin::create_token),
        ),
        route(
            Method::POST,
            "/v1/tokens/{token_id}/revoke",
            Some(Admin),
            "Revoke a token",
            post(admin::revoke_token),
        ),
        route(
            Method::GET,
            "/v1/projects/{project_id}/members",
            Some(Admin),
            "List a project's members",
            get(admin::list_members),
        ),
        route(
            Method::POST,
            "/v1/projects/{project_id}/members",
            Some(Admin),
            "Add a member to a project or change their role",
            post(admin::set_member),
        ),
        route(
            Method::DELETE,
            "/v1/projects/{project_id}/members/{user_id}",
            Some(Admin),
            "Remove a member from a project",
            delete(admin::remove_member),
        ),
        route(
            Method::GET,
            "/v1/projects/{project_id}/tasks",
            Some(Read),
            "List a project's tasks (?status=&parent_id=, cursor pagination)",
            get(work::list_tasks),
        ),
        route(
            Method::POST,
            "/v1/projects/{project_id}/tasks",
            Some(Write),
            "Create a task, or a subtask with parent_id",
            post(work::create_task),
        ),
        route(
            Method::GET,
            "/v1/tasks/{task_id}",
            Some(Read),
            "Get a task with its subtasks",
            get(work::get_task),
        ),
        route(
            Method::PATCH,
            "/v1/tasks/{task_id}",
            Some(Write),
            "Update a task's title, description, status, priority or agent",
            patch(work::update_task),
        ),
        route(
            Method::DELETE,
            "/v1/tasks/{task_id}",
            Some(Write),
            "Delete a task with its subtasks and executions",
            delete(work::delete_task),
        ),
        route(
            Method::GET,
            "/v1/tasks/{task_id}/executions",
            Some(Read),
            "List a task's executions",
            get(work::task_executions),
        ),
        route(
            Method::POST,
            "/v1/tasks/{task_id}/executions",
            Some(Write),
            "Record an execution of a task",
            post(work::create_execution),
        ),
        route(
            Method::GET,
            "/v1/executions/{execution_id}",
            Some(Read),
            "Get an execution",
            get(work::get_execution),
        ),
        route(
            Method::PATCH,
            "/v1/executions/{execution_id}",
            Some(Write),
            "Update an execution's status, tokens, cost, duration or error",
            patch(work::update_execution),
        ),
        route(Method::GET, "/v1/agents", Some(Read), "List agents", get(work::list_agents)),
        route(Method::POST, "/v1/agents", Some(Admin), "Create an agent", post(work::create_agent)),
        route(Method::GET, "/v1/agents/{agent_id}", Some(Read), "Get an agent", get(work::get_agent)),
        route(
            Method::PATCH,
            "/v1/agents/{agent_id}",
            Some(Admin),
            "Update an agent",
            patch(work::update_agent),
        ),
        route(
            Method::DELETE,
            "/v1/agents/{agent_id}",
            Some(Admin),
            "Delete an agent",
            delete(work::delete_agent),
        ),
        route(
            Method::GET,
            "/v1/agents/{agent_id}/executions",
            Some(Read),
            "List an agent's executions in the projects the caller may read",
            get(work::agent_executions),
        ),
        route(
            Method::GET,
            "/v1/projects/{project_id}/reviews",
            Some(Read),
            "List a project's reviews",
            get(work::list_reviews),
        ),
        route(
            Method::POST,
            "/v1/projects/{project_id}/reviews",
            Some(Write),
            "Record a review of one of the project's commits",
            post(work::create_review),
        ),
        route(Method::GET, "/v1/reviews/{review_id}", Some(Read), "Get a review", get(work::get_review)),
        route(
            Method::GET,
            "/v1/activity",
            Some(Read),
            "The activity log, newest first, of the projects the caller may read (?project_id=&before=&limit=)",
            get(work::activity),
        ),
    ]
}

/// The application: every route, behind the layers described in the module doc.
pub fn app(state: AppState) -> Router {
    let mut router: Router<AppState> = Router::new();
    for r in routes() {
        router = router.route(r.path, r.handler);
    }
    let server = &state.engine.config.server;
    let mut router = router
        .fallback(|| async { ApiError::NotFound("route".into()) })
        .route_layer(middleware::from_fn_with_state(state.clone(), auth::authenticate))
        .layer(axum::extract::DefaultBodyLimit::max(server.max_body_bytes))
        .layer(tower_http::limit::RequestBodyLimitLayer::new(server.max_body_bytes));
    if !server.cors_origins.is_empty() {
        let origins: Vec<HeaderValue> = server.cors_origins.iter().filter_map(|o| o.parse().ok()).collect();
        router = router.layer(
            tower_http::cors::CorsLayer::new()
                .allow_origin(origins)
                .allow_methods([Method::GET, Method::POST, Method::PATCH, Method::DELETE])
                .allow_headers([axum::http::header::AUTHORIZATION, axum::http::header::CONTENT_TYPE]),
        );
    }
    router
        .layer(middleware::from_fn_with_state(state.clone(), guard))
        .layer(middleware::from_fn_with_state(state.clone(), ops::observe))
        .with_state(state)
}

/// Load shedding and the per-request timeout. Server-sent event streams hold no permit and
/// have no timeout: they end when the run does or the client leaves.
async fn guard(
    axum::extract::State(state): axum::extract::State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    if request.uri().path().ends_with("/stream") {
        return next.run(request).await;
    }
    let Ok(_permit) = state.load.clone().try_acquire_owned() else {
        return ApiError::Overloaded.into_response();
    };
    let timeout = Duration::from_secs(state.engine.config.server.request_timeout_secs);
    match tokio::time::timeout(timeout, next.run(request)).await {
        Ok(response) => {
            // A body-limit rejection from tower-http comes back as a bare 413: give it our shape.
            if response.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE
                && response
                    .headers()
                    .get(axum::http::header::CONTENT_TYPE)
                    .is_none_or(|v| v != "application/json")
            {
                return ApiError::PayloadTooLarge.into_response();
            }
            response
        }
        Err(_) => ApiError::Timeout.into_response(),
    }
}

/// Cursor pagination by id, ascending: `?after=&limit=`.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AfterQuery {
    pub after: Option<i64>,
    pub limit: Option<i64>,
}

/// Cursor pagination by id, newest first: `?before=&limit=`.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BeforeQuery {
    pub before: Option<i64>,
    pub limit: Option<i64>,
}

/// `Json` whose rejections are [`ApiError`]s.
#[derive(FromRequest)]
#[from_request(via(axum::Json), rejection(ApiError))]
pub struct Json<T>(pub T);

impl<T: serde::Serialize> IntoResponse for Json<T> {
    fn into_response(self) -> Response {
        axum::Json(self.0).into_response()
    }
}

/// `Path` whose rejections are [`ApiError`]s.
#[derive(FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(ApiError))]
pub struct Path<T>(pub T);

/// `Query` whose rejections are [`ApiError`]s.
#[derive(FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(ApiError))]
pub struct Query<T>(pub T);

/// For `Option<Option<T>>` fields of update bodies: absent is `None` (keep), `null` is
/// `Some(None)` (clear). Use with `#[serde(default, deserialize_with = "nullable")]`.
pub(crate) fn nullable<'de, D, T>(deserializer: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: serde::Deserialize<'de>,
{
    <Option<T> as serde::Deserialize>::deserialize(deserializer).map(Some)
}
