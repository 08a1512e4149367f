//! The HTTP API, driven in-process through `semdex::api::app` with `tower::ServiceExt::oneshot`
//! (no socket), on SQLite and on PostgreSQL: every route's happy path and documented errors, the
//! authorization matrix over every route of the table and every kind of caller, path traversal
//! on every path and query parameter, and the OpenAPI document against the route table.

use std::collections::HashMap;
use std::path::PathBuf;

use axum::Router;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use serde_json::{Value, json};
use sqlx::Connection;
use tower::ServiceExt;

use semdex::api::{self, AppState};
use semdex::config::{Config, Overrides};
use semdex::engine::Engine;
use semdex::runner::Runner;
use semdex::store::{self as st, NewProject, NewToken, NewUser, SharedStore};

use crate::Backend;
use crate::support;

/// The name of the project the "other project's member" must never see.
const HIDDEN: &str = "alpha-hidden";
/// Text in a file outside the allowed roots: it must never appear in a response.
const OUTSIDE: &str = "OUTSIDE_ROOT_SENTINEL";
/// The fallback's body for an unknown route.
const FALLBACK: &str = r#"{"error":{"code":"not_found","message":"route not found"}}"#;

/// Ids of the rows every request is built from: project A (`HIDDEN`) holds one of everything,
/// project B belongs to the member user.
#[derive(Debug, Default, Clone)]
struct Ids {
    a: i64,
    b: i64,
    run_a: i64,
    run_b: i64,
    chunk_a: i64,
    chunk_b: i64,
    task_a: i64,
    task_b: i64,
    execution_a: i64,
    execution_b: i64,
    review_a: i64,
    review_b: i64,
    commit_a: i64,
    commit_b: i64,
    agent: i64,
    /// A user who is a read member of A (target of the user and member routes).
    user_v: i64,
    /// The user who is an admin member of B only.
    user_member: i64,
    /// A token for the revoke route.
    victim_token: i64,
}

/// Secrets of each kind of caller.
#[derive(Debug, Default, Clone)]
struct Tokens {
    read: String,
    write: String,
    admin: String,
    expired: String,
    revoked: String,
    member: String,
}

struct Harness {
    _dir: tempfile::TempDir,
    roots: PathBuf,
    outside: PathBuf,
    state: AppState,
    app: Router,
    backend: Backend,
    database_url: Option<String>,
    ids: Ids,
    tokens: Tokens,
}

struct Response {
    status: StatusCode,
    body: Value,
    text: String,
}

impl Harness {
    fn store(&self) -> &SharedStore {
        &self.state.engine.store
    }

    async fn call(&self, method: Method, uri: &str, token: Option<&str>, body: Option<&Value>) -> Response {
        let mut request = Request::builder().method(method).uri(uri);
        if let Some(t) = token {
            request = request.header(header::AUTHORIZATION, format!("Bearer {t}"));
        }
        let request = match body {
            Some(b) => {
                request.header(header::CONTENT_TYPE, "application/json").body(Body::from(b.to_string()))
            }
            None => request.body(Body::empty()),
        }
        .unwrap();
        let response = self.app.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let streaming = response
            .headers()
            .get(header::CONTENT_TYPE)
            .is_some_and(|v| v.to_str().unwrap_or("").starts_with("text/event-stream"));
        if streaming {
            // A live stream of a queued run never ends; its status is what matters here.
            return Response { status, body: Value::Null, text: String::new() };
        }
        let bytes = axum::body::to_bytes(response.into_body(), 16 << 20).await.unwrap();
        let text = String::from_utf8_lossy(&bytes).to_string();
        let body = serde_json::from_str(&text).unwrap_or(Value::Null);
        Response { status, body, text }
    }

    async fn get(&self, uri: &str) -> Response {
        self.call(Method::GET, uri, Some(&self.tokens.admin), None).await
    }

    async fn send(&self, method: Method, uri: &str, body: Value) -> Response {
        self.call(method, uri, Some(&self.tokens.admin), Some(&body)).await
    }

    /// Runs one statement directly on the database, for rows no route writes (commits) and
    /// states no route reaches (an expired token).
    /// Returns the first column of the first row, if any (`RETURNING id`).
    async fn sql(&self, sqlite: &str, postgres: &str) -> Option<i64> {
        use sqlx::Row;
        match self.backend {
            Backend::Sqlite => {
                let options = sqlx::sqlite::SqliteConnectOptions::new()
                    .filename(self.state.engine.config.sqlite_path());
                let mut c = sqlx::SqliteConnection::connect_with(&options).await.unwrap();
                let row = sqlx::query(sqlite).fetch_optional(&mut c).await.unwrap();
                c.close().await.unwrap();
                row.map(|r| r.get::<i64, _>(0))
            }
            Backend::Postgres => {
                let url = self.database_url.as_deref().unwrap();
                let mut c = sqlx::PgConnection::connect(url).await.unwrap();
                let row = sqlx::query(postgres).fetch_optional(&mut c).await.unwrap();
                c.close().await.unwrap();
                row.map(|r| r.get::<i64, _>(0))
            }
        }
    }
}

/// A fresh engine on `backend` with auth mode `auth`, the fixture directories, and the rows of
/// [`Ids`]. `None` when PostgreSQL is asked for but not configured (see `support`).
async fn harness(backend: Backend, auth: &str) -> Option<Harness> {
    let database_url = match backend {
        Backend::Sqlite => None,
        Backend::Postgres => Some(support::pg_database().await?),
    };
    let dir = tempfile::tempdir().unwrap();
    let roots = dir.path().join("roots");
    let outside = dir.path().join("outside");
    for d in [roots.join("alpha/src"), roots.join("beta/src"), roots.join("gamma"), outside.clone()] {
        std::fs::create_dir_all(d).unwrap();
    }
    std::fs::write(roots.join("alpha/src/a.ts"), "export function alphaThing() {}\n").unwrap();
    std::fs::write(outside.join("secret.ts"), format!("export const s = '{OUTSIDE}';\n")).unwrap();
    std::os::unix::fs::symlink(&outside, roots.join("escape")).unwrap();
    let roots = std::fs::canonicalize(&roots).unwrap();
    let outside = std::fs::canonicalize(&outside).unwrap();

    let mut env: HashMap<&str, String> = HashMap::new();
    env.insert("SEMDEX_EMBEDDING_DIMS", "64".into());
    env.insert("SEMDEX_AUTH", auth.into());
    env.insert("SEMDEX_ALLOWED_ROOTS", roots.display().to_string());
    let overrides = Overrides {
        data_dir: Some(dir.path().join("data")),
        database_url: database_url.clone(),
        ..Overrides::default()
    };
    let config = Config::load_with(&overrides, &|name| env.get(name).cloned()).unwrap();
    let engine = Engine::open(config).await.unwrap();
    let runner = Runner::new(engine.clone());
    let state = AppState::new(engine, runner);
    let app = api::app(state.clone());
    let mut h = Harness {
        _dir: dir,
        roots,
        outside,
        state,
        app,
        backend,
        database_url,
        ids: Ids::default(),
        tokens: Tokens::default(),
    };
    seed(&mut h).await;
    Some(h)
}

async fn token(store: &SharedStore, user_id: Option<i64>, scope: &str) -> (i64, String) {
    let secret = api::new_token_secret().unwrap();
    let t = store
        .create_token(NewToken {
            user_id,
            name: format!("{scope} token"),
            token_hash: api::hash_token(&secret),
            prefix: secret[..8].to_string(),
            scopes: vec![scope.to_string()],
            expires_at: None,
        })
        .await
        .unwrap();
    (t.id, secret)
}

fn user(name: &str) -> NewUser {
    NewUser {
        email: format!("{name}@example.com"),
        username: name.to_string(),
        is_active: true,
        preferences: json!({}),
        ..NewUser::default()
    }
}

async fn seed(h: &mut Harness) {
    let store = h.store().clone();
    let mut ids = Ids::default();
    let project = |name: &str, dir: &str| NewProject {
        name: name.to_string(),
        root_path: Some(h.roots.join(dir).display().to_string()),
        settings: json!({}),
        ..NewProject::default()
    };
    let a = store.create_project(project(HIDDEN, "alpha")).await.unwrap();
    let b = store.create_project(project("beta", "beta")).await.unwrap();
    ids.a = a.id;
    ids.b = b.id;
    let a_file = crate::store::file("src/a.ts")
        .chunk("alphaThing", "export function alphaThing() { return bravo(); }")
        .symbol("alphaThing", "function", true, None)
        .import("./b", Some("src/b.ts"), "static")
        .build();
    let b_file = crate::store::file("src/b.ts").chunk("bravo", "export function bravo() {}").build();
    store.replace_file(a.id, &a_file, None, None).await.unwrap();
    store.replace_file(a.id, &b_file, None, None).await.unwrap();
    let secret = crate::store::file("src/b.ts").chunk("betaOnly", "export const betaOnly = 1;").build();
    store.replace_file(b.id, &secret, None, None).await.unwrap();
    ids.chunk_a = store.chunk_at(a.id, "src/a.ts", 1).await.unwrap().unwrap().id;
    ids.chunk_b = store.chunk_at(b.id, "src/b.ts", 1).await.unwrap().unwrap().id;
    ids.run_a = store.create_run(a.id, "api", None, None).await.unwrap().id;
    ids.run_b = store.create_run(b.id, "api", None, None).await.unwrap().id;

    let v = store.create_user(user("victor")).await.unwrap();
    let m = store.create_user(user("mallory")).await.unwrap();
    ids.user_v = v.id;
    ids.user_member = m.id;
    store.set_member(a.id, v.id, "read").await.unwrap();
    store.set_member(b.id, m.id, "admin").await.unwrap();

    ids.agent = store
        .create_agent(semdex::store::NewAgent {
            name: "reviewer".into(),
            kind: "assistant".into(),
            config: json!({}),
            is_active: true,
            ..Default::default()
        })
        .await
        .unwrap()
        .id;
    let task = |project_id: i64| semdex::store::NewTask {
        project_id: Some(project_id),
        parent_id: None,
        title: "fix it".into(),
        description: String::new(),
        status: "pending".into(),
        priority: 2,
        assigned_agent_id: None,
        created_by: None,
    };
    ids.task_a = store.create_task(task(a.id)).await.unwrap().id;
    ids.task_b = store.create_task(task(b.id)).await.unwrap().id;
    let execution = |task_id: i64| semdex::store::NewExecution {
        task_id,
        agent_id: Some(ids.agent),
        status: "running".into(),
        input_tokens: 1,
        output_tokens: 2,
        cost_usd: 0.5,
        duration_ms: None,
        error: None,
    };
    ids.execution_a = store.create_execution(execution(ids.task_a)).await.unwrap().id;
    ids.execution_b = store.create_execution(execution(ids.task_b)).await.unwrap().id;

    let mut commits = Vec::new();
    for (project_id, sha) in [(a.id, "abcdef1"), (b.id, "bcdef12")] {
        let stmt = format!(
            "INSERT INTO commits (project_id, sha, message) VALUES ({project_id}, '{sha}', 'x') RETURNING id"
        );
        commits.push(h.sql(&stmt, &stmt).await.unwrap());
    }
    ids.commit_a = commits[0];
    ids.commit_b = commits[1];
    let review = |project_id: i64, commit_id: i64| semdex::store::NewReview {
        project_id,
        commit_id,
        reviewer_agent_id: Some(ids.agent),
        reviewer_user_id: None,
        score: Some(80),
        summary: "ok".into(),
        issues: json!([]),
        suggestions: json!([]),
    };
    ids.review_a = store.create_review(review(a.id, commits[0])).await.unwrap().id;
    ids.review_b = store.create_review(review(b.id, commits[1])).await.unwrap().id;

    let (revoked, revoked_secret) = token(&store, None, "admin").await;
    store.revoke_token(revoked).await.unwrap();
    let (expired, expired_secret) = token(&store, None, "admin").await;
    h.sql(
        &format!(
            "UPDATE api_tokens SET created_at = '2020-01-01T00:00:00.000Z', expires_at = '2020-01-02T00:00:00.000Z' \
             WHERE id = {expired}"
        ),
        &format!(
            "UPDATE api_tokens SET created_at = now() - interval '2 days', expires_at = now() - interval '1 day' \
             WHERE id = {expired}"
        ),
    )
    .await;
    let tokens = Tokens {
        read: token(&store, None, "read").await.1,
        write: token(&store, None, "write").await.1,
        admin: token(&store, None, "admin").await.1,
        expired: expired_secret,
        revoked: revoked_secret,
        member: token(&store, Some(m.id), "admin").await.1,
    };
    ids.victim_token = token(&store, None, "read").await.0;
    h.ids = ids;
    h.tokens = tokens;
}

// The route table, as requests --------------------------------------------------------------

/// A request for a route of the table on `h`'s rows, and the status it gets from a caller
/// allowed to make it. Panics for a route it does not know, so a new route must be added here
/// (and so to the matrix and the traversal tests).
fn request_for(h: &Harness, method: &Method, path: &str) -> (String, Option<Value>, StatusCode) {
    request_with(h, method, path, None)
}

/// Every path parameter of the table, with the id of `h`'s row it names.
fn parameters(h: &Harness) -> Vec<(&'static str, i64)> {
    let i = &h.ids;
    vec![
        ("{project_id}", i.a),
        ("{run_id}", i.run_a),
        ("{chunk_id}", i.chunk_a),
        ("{user_id}", i.user_v),
        ("{token_id}", i.victim_token),
        ("{task_id}", i.task_a),
        ("{execution_id}", i.execution_a),
        ("{agent_id}", i.agent),
        ("{review_id}", i.review_a),
    ]
}

/// [`request_for`] with one path parameter given as raw text instead of its id.
fn request_with(
    h: &Harness,
    method: &Method,
    path: &str,
    raw: Option<(&str, &str)>,
) -> (String, Option<Value>, StatusCode) {
    let i = &h.ids;
    let mut uri = path.to_string();
    for (param, id) in parameters(h) {
        let value = match raw {
            Some((p, text)) if p == param => text.to_string(),
            _ => id.to_string(),
        };
        uri = uri.replace(param, &value);
    }
    assert!(!uri.contains('{'), "unfilled parameter in {uri}");
    use StatusCode as S;
    let (query, body, ok): (&str, Option<Value>, StatusCode) = match (method.as_str(), path) {
        ("GET", "/healthz" | "/readyz" | "/openapi.json" | "/metrics") => ("", None, S::OK),
        ("GET", "/v1/projects") => ("", None, S::OK),
        ("POST", "/v1/projects") => (
            "",
            Some(json!({ "name": "gamma", "root_path": h.roots.join("gamma"), "index": false })),
            S::CREATED,
        ),
        ("GET", "/v1/projects/{project_id}") => ("", None, S::OK),
        ("PATCH", "/v1/projects/{project_id}") => ("", Some(json!({ "default_branch": "main" })), S::OK),
        ("DELETE", "/v1/projects/{project_id}") => ("", None, S::NO_CONTENT),
        ("GET", "/v1/projects/{project_id}/runs") => ("", None, S::OK),
        ("POST", "/v1/projects/{project_id}/runs") => {
            ("", Some(json!({ "paths": ["src/a.ts"] })), S::ACCEPTED)
        }
        ("GET", "/v1/runs/{run_id}") => ("", None, S::OK),
        ("POST", "/v1/runs/{run_id}/cancel") => ("", None, S::OK),
        ("GET", "/v1/runs/{run_id}/events" | "/v1/runs/{run_id}/stream") => ("", None, S::OK),
        ("POST", "/v1/search") => (
            "",
            Some(json!({ "query": "alphaThing", "mode": "lexical", "filters": { "kinds": ["function"] } })),
            S::OK,
        ),
        ("GET", "/v1/projects/{project_id}/files") => ("", None, S::OK),
        ("GET", "/v1/projects/{project_id}/file") => ("?path=src/a.ts", None, S::OK),
        ("GET", "/v1/projects/{project_id}/symbols") => ("?q=alpha", None, S::OK),
        ("GET", "/v1/projects/{project_id}/graph") => ("?path=src/a.ts", None, S::OK),
        ("GET", "/v1/chunks/{chunk_id}") => ("", None, S::OK),
        ("GET", "/v1/users") => ("", None, S::OK),
        ("POST", "/v1/users") => {
            ("", Some(json!({ "email": "new@example.com", "username": "newbie" })), S::CREATED)
        }
        ("GET", "/v1/users/{user_id}") => ("", None, S::OK),
        ("PATCH", "/v1/users/{user_id}") => ("", Some(json!({ "display_name": "Victor" })), S::OK),
        ("DELETE", "/v1/users/{user_id}") => ("", None, S::NO_CONTENT),
        ("GET", "/v1/tokens") => ("", None, S::OK),
        ("POST", "/v1/tokens") => ("", Some(json!({ "name": "ci", "scopes": ["read"] })), S::CREATED),
        ("POST", "/v1/tokens/{token_id}/revoke") => ("", None, S::OK),
        ("GET", "/v1/projects/{project_id}/members") => ("", None, S::OK),
        ("POST", "/v1/projects/{project_id}/members") => {
            ("", Some(json!({ "user_id": i.user_v, "role": "write" })), S::OK)
        }
        ("DELETE", "/v1/projects/{project_id}/members/{user_id}") => ("", None, S::NO_CONTENT),
        ("GET", "/v1/projects/{project_id}/tasks") => ("?status=pending", None, S::OK),
        ("POST", "/v1/projects/{project_id}/tasks") => {
            ("", Some(json!({ "title": "subtask", "parent_id": i.task_a })), S::CREATED)
        }
        ("GET", "/v1/tasks/{task_id}") => ("", None, S::OK),
        ("PATCH", "/v1/tasks/{task_id}") => ("", Some(json!({ "status": "done", "priority": 0 })), S::OK),
        ("DELETE", "/v1/tasks/{task_id}") => ("", None, S::NO_CONTENT),
        ("GET", "/v1/tasks/{task_id}/executions") => ("", None, S::OK),
        ("POST", "/v1/tasks/{task_id}/executions") => {
            ("", Some(json!({ "agent_id": i.agent, "input_tokens": 10 })), S::CREATED)
        }
        ("GET", "/v1/executions/{execution_id}") => ("", None, S::OK),
        ("PATCH", "/v1/executions/{execution_id}") => {
            ("", Some(json!({ "status": "succeeded", "duration_ms": 5, "cost_usd": 0.25 })), S::OK)
        }
        ("GET", "/v1/agents") => ("", None, S::OK),
        ("POST", "/v1/agents") => ("", Some(json!({ "name": "planner", "model": "m1" })), S::CREATED),
        ("GET", "/v1/agents/{agent_id}") => ("", None, S::OK),
        ("PATCH", "/v1/agents/{agent_id}") => ("", Some(json!({ "model": null, "is_active": false })), S::OK),
        ("DELETE", "/v1/agents/{agent_id}") => ("", None, S::NO_CONTENT),
        ("GET", "/v1/agents/{agent_id}/executions") => ("", None, S::OK),
        ("GET", "/v1/projects/{project_id}/reviews") => ("", None, S::OK),
        ("POST", "/v1/projects/{project_id}/reviews") => {
            ("", Some(json!({ "commit_id": i.commit_a, "score": 90, "issues": ["x"] })), S::CREATED)
        }
        ("GET", "/v1/reviews/{review_id}") => ("", None, S::OK),
        ("GET", "/v1/activity") => ("", None, S::OK),
        ("GET", "/v1/projects/{project_id}/commits") => ("?limit=10", None, S::OK),
        ("POST", "/v1/hooks/git") => (
            "",
            Some(json!({
                "repo": h.roots.join("alpha").display().to_string(),
                "hook": "post-commit",
                "old": null,
                "new": "0123456789abcdef0123456789abcdef01234567",
                "branch": "main",
                "changes": [{ "status": "M", "path": "src/a.ts", "from": null }],
            })),
            S::ACCEPTED,
        ),
        (m, p) => panic!("no request for {m} {p}: add the route to request_for"),
    };
    (format!("{uri}{query}"), body, ok)
}

/// Routes in an order where nothing a later request needs is destroyed first: destructive
/// requests last, the project's deletion at the very end.
fn ordered_routes() -> Vec<api::Route> {
    let mut routes = api::routes();
    let rank = |r: &api::Route| match (r.method.as_str(), r.path) {
        ("DELETE", "/v1/projects/{project_id}") => 9,
        ("DELETE", "/v1/users/{user_id}") => 8,
        ("DELETE", _) => 7,
        (_, "/v1/runs/{run_id}/cancel" | "/v1/tokens/{token_id}/revoke") => 6,
        _ => 0,
    };
    routes.sort_by_key(rank);
    routes
}

/// Whether anything in `v` belongs to project A: a `project_id` equal to A's, or its name.
fn mentions_hidden(v: &Value, a: i64) -> bool {
    match v {
        Value::Object(m) => {
            m.iter().any(|(k, x)| (k == "project_id" && x.as_i64() == Some(a)) || mentions_hidden(x, a))
        }
        Value::Array(xs) => xs.iter().any(|x| mentions_hidden(x, a)),
        Value::String(s) => s.contains(HIDDEN),
        _ => false,
    }
}

// Happy paths -------------------------------------------------------------------------------

/// Every route of the table answers its success status to an admin token, in an order where
/// each finds what it needs.
async fn every_route_succeeds(backend: Backend) {
    let Some(h) = harness(backend, "token").await else { return };
    for r in ordered_routes() {
        let (uri, body, ok) = request_for(&h, &r.method, r.path);
        let res = h.call(r.method.clone(), &uri, Some(&h.tokens.admin), body.as_ref()).await;
        assert_eq!(res.status, ok, "{} {uri}: {}", r.method, res.text);
    }
}
both!(every_route_succeeds_for_an_admin, every_route_succeeds);

/// The same in auth mode `none`, where every caller is the local user.
async fn every_route_succeeds_locally(backend: Backend) {
    let Some(h) = harness(backend, "none").await else { return };
    for r in ordered_routes() {
        let (uri, body, ok) = request_for(&h, &r.method, r.path);
        let res = h.call(r.method.clone(), &uri, None, body.as_ref()).await;
        assert_eq!(res.status, ok, "{} {uri}: {}", r.method, res.text);
    }
}
both!(every_route_succeeds_without_auth, every_route_succeeds_locally);

async fn users_tokens_and_members(backend: Backend) {
    let Some(h) = harness(backend, "token").await else { return };
    // Users: create, conflict, bad input, cursor pagination, update, clear, delete.
    let created =
        h.send(Method::POST, "/v1/users", json!({ "email": "Ann@Example.com", "username": "ann" })).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
    let ann = created.body["id"].as_i64().unwrap();
    assert_eq!(created.body["is_active"], json!(true));
    for (body, status) in [
        (json!({ "email": "ann@example.com", "username": "ann2" }), StatusCode::CONFLICT),
        (json!({ "email": "x@example.com", "username": "ann" }), StatusCode::CONFLICT),
        (json!({ "email": "nope", "username": "x" }), StatusCode::BAD_REQUEST),
        (json!({ "email": "a@b.c", "username": "" }), StatusCode::BAD_REQUEST),
        (json!({ "email": "a@b.c", "username": "x", "preferences": [] }), StatusCode::BAD_REQUEST),
        (json!({ "email": "a@b.c", "username": "x", "role": "god" }), StatusCode::BAD_REQUEST),
        (
            json!({ "email": "a@b.c", "username": "x", "github_username": "x".repeat(40) }),
            StatusCode::BAD_REQUEST,
        ),
    ] {
        let res = h.send(Method::POST, "/v1/users", body.clone()).await;
        assert_eq!(res.status, status, "{body}: {}", res.text);
        assert!(res.body["error"]["code"].is_string(), "{}", res.text);
    }
    let page = h.get("/v1/users?limit=2").await;
    assert_eq!(page.body["users"].as_array().unwrap().len(), 2);
    let after = page.body["next_after"].as_i64().unwrap();
    let rest = h.get(&format!("/v1/users?after={after}&limit=2")).await;
    assert_eq!(rest.body["users"][0]["id"], json!(ann));
    assert_eq!(rest.body["next_after"], Value::Null);
    let res =
        h.send(Method::PATCH, &format!("/v1/users/{ann}"), json!({ "github_username": "ann-gh" })).await;
    assert_eq!(res.body["github_username"], json!("ann-gh"), "{}", res.text);
    let res = h.send(Method::PATCH, &format!("/v1/users/{ann}"), json!({ "github_username": null })).await;
    assert_eq!(res.body["github_username"], Value::Null, "{}", res.text);
    let res = h.send(Method::PATCH, &format!("/v1/users/{ann}"), json!({ "username": "victor" })).await;
    assert_eq!(res.status, StatusCode::CONFLICT, "{}", res.text);
    assert_eq!(h.get("/v1/users/999999").await.status, StatusCode::NOT_FOUND);
    assert_eq!(h.send(Method::PATCH, "/v1/users/999999", json!({})).await.status, StatusCode::NOT_FOUND);
    assert_eq!(h.get("/v1/users/abc").await.status, StatusCode::BAD_REQUEST);

    // Tokens: the secret once, never the hash; it works; revocation; expiry in the past.
    let res = h
        .send(
            Method::POST,
            "/v1/tokens",
            json!({ "name": "ann", "scopes": ["write", "read"], "user_id": ann }),
        )
        .await;
    assert_eq!(res.status, StatusCode::CREATED, "{}", res.text);
    let secret = res.body["secret"].as_str().unwrap().to_string();
    let id = res.body["token"]["id"].as_i64().unwrap();
    assert!(secret.starts_with(res.body["token"]["prefix"].as_str().unwrap()));
    assert!(!res.text.contains(&api::hash_token(&secret)));
    let listed = h.get("/v1/tokens").await;
    assert!(!listed.text.contains(&secret) && !listed.text.contains(&api::hash_token(&secret)));
    assert!(listed.body["tokens"].as_array().unwrap().iter().any(|t| t["id"] == json!(id)));
    let page = h.get("/v1/tokens?limit=1").await;
    let before = page.body["next_before"].as_i64().unwrap();
    let next = h.get(&format!("/v1/tokens?before={before}&limit=100")).await;
    assert!(next.body["tokens"].as_array().unwrap().iter().all(|t| t["id"].as_i64().unwrap() < before));
    // Ann is a member of nothing: her token reaches no project.
    let mine = h.call(Method::GET, "/v1/projects", Some(&secret), None).await;
    assert_eq!(mine.body["projects"], json!([]));
    for body in [
        json!({ "name": "", "scopes": ["read"] }),
        json!({ "name": "x", "scopes": [] }),
        json!({ "name": "x", "scopes": ["root"] }),
        json!({ "name": "x", "expires_at": "2001-01-01T00:00:00Z" }),
        json!({ "name": "x", "expires_at": "tomorrow" }),
        json!({ "name": "x", "secret": "mine" }),
    ] {
        let res = h.send(Method::POST, "/v1/tokens", body.clone()).await;
        assert_eq!(res.status, StatusCode::BAD_REQUEST, "{body}: {}", res.text);
    }
    let res = h.send(Method::POST, "/v1/tokens", json!({ "name": "x", "user_id": 999999 })).await;
    assert_eq!(res.status, StatusCode::NOT_FOUND, "{}", res.text);
    let res = h.send(Method::POST, &format!("/v1/tokens/{id}/revoke"), json!(null)).await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.text);
    assert!(res.body["revoked_at"].is_string());
    assert_eq!(
        h.call(Method::GET, "/v1/projects", Some(&secret), None).await.status,
        StatusCode::UNAUTHORIZED
    );
    let again = h.send(Method::POST, &format!("/v1/tokens/{id}/revoke"), json!(null)).await;
    assert_eq!(again.status, StatusCode::CONFLICT);
    let res = h.send(Method::POST, "/v1/tokens/999999/revoke", json!(null)).await;
    assert_eq!(res.status, StatusCode::NOT_FOUND);

    // Members: add, change role, list, remove; unknown users and roles.
    let a = h.ids.a;
    let members = format!("/v1/projects/{a}/members");
    let res = h.send(Method::POST, &members, json!({ "user_id": ann, "role": "write" })).await;
    assert_eq!(res.body["role"], json!("write"), "{}", res.text);
    let res = h.send(Method::POST, &members, json!({ "user_id": ann, "role": "admin" })).await;
    assert_eq!(res.body["role"], json!("admin"), "{}", res.text);
    let list = h.get(&members).await;
    let roles: Vec<(i64, String)> = list.body["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| (m["user_id"].as_i64().unwrap(), m["role"].as_str().unwrap().to_string()))
        .collect();
    assert_eq!(roles, vec![(h.ids.user_v, "read".into()), (ann, "admin".into())]);
    let res = h.send(Method::POST, &members, json!({ "user_id": ann, "role": "owner" })).await;
    assert_eq!(res.status, StatusCode::BAD_REQUEST);
    let res = h.send(Method::POST, &members, json!({ "user_id": 999999 })).await;
    assert_eq!(res.status, StatusCode::NOT_FOUND);
    let res = h.send(Method::POST, "/v1/projects/999999/members", json!({ "user_id": ann })).await;
    assert_eq!(res.status, StatusCode::NOT_FOUND);
    let res = h.call(Method::DELETE, &format!("{members}/{ann}"), Some(&h.tokens.admin), None).await;
    assert_eq!(res.status, StatusCode::NO_CONTENT);
    let res = h.call(Method::DELETE, &format!("{members}/{ann}"), Some(&h.tokens.admin), None).await;
    assert_eq!(res.status, StatusCode::NOT_FOUND);

    // A project admin (not a global admin) manages their project's members, and nothing global.
    let member = h.tokens.member.clone();
    let b = h.ids.b;
    let res = h
        .call(
            Method::POST,
            &format!("/v1/projects/{b}/members"),
            Some(&member),
            Some(&json!({ "user_id": ann })),
        )
        .await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.text);
    for (method, uri) in [(Method::GET, "/v1/users"), (Method::GET, "/v1/tokens"), (Method::GET, "/metrics")]
    {
        assert_eq!(h.call(method, uri, Some(&member), None).await.status, StatusCode::FORBIDDEN, "{uri}");
    }
    let res = h.call(Method::POST, "/v1/tokens", Some(&member), Some(&json!({ "name": "escalate" }))).await;
    assert_eq!(res.status, StatusCode::FORBIDDEN);

    // A user flagged admin is a global admin through their own tokens.
    let root = h
        .send(
            Method::POST,
            "/v1/users",
            json!({ "email": "root@x.io", "username": "root", "is_admin": true }),
        )
        .await;
    let (_, root_secret) = token(h.store(), root.body["id"].as_i64(), "admin").await;
    assert_eq!(h.call(Method::GET, "/v1/users", Some(&root_secret), None).await.status, StatusCode::OK);
    let res =
        h.send(Method::PATCH, &format!("/v1/users/{}", root.body["id"]), json!({ "is_admin": false })).await;
    assert_eq!(res.status, StatusCode::OK);
    assert_eq!(
        h.call(Method::GET, "/v1/users", Some(&root_secret), None).await.status,
        StatusCode::FORBIDDEN
    );

    // A deactivated user's tokens stop working, and work again on reactivation.
    let (victor_id, victor) = token(h.store(), Some(h.ids.user_v), "read").await;
    let last_used = async |id: i64| {
        h.store().list_tokens().await.unwrap().into_iter().find(|t| t.id == id).unwrap().last_used_at
    };
    assert_eq!(last_used(victor_id).await, None, "a token never used");
    let uri = format!("/v1/projects/{a}");
    assert_eq!(h.call(Method::GET, &uri, Some(&victor), None).await.status, StatusCode::OK);
    assert!(last_used(victor_id).await.is_some(), "its use is recorded");
    let res =
        h.send(Method::PATCH, &format!("/v1/users/{}", h.ids.user_v), json!({ "is_active": false })).await;
    assert_eq!(res.body["is_active"], json!(false), "{}", res.text);
    assert_eq!(h.call(Method::GET, &uri, Some(&victor), None).await.status, StatusCode::UNAUTHORIZED);
    h.send(Method::PATCH, &format!("/v1/users/{}", h.ids.user_v), json!({ "is_active": true })).await;
    assert_eq!(h.call(Method::GET, &uri, Some(&victor), None).await.status, StatusCode::OK);

    // Deleting a user takes their tokens and memberships with them.
    let res = h.call(Method::DELETE, &format!("/v1/users/{ann}"), Some(&h.tokens.admin), None).await;
    assert_eq!(res.status, StatusCode::NO_CONTENT);
    assert!(h.store().member_projects(ann).await.unwrap().is_empty());
    let res = h.call(Method::DELETE, &format!("/v1/users/{ann}"), Some(&h.tokens.admin), None).await;
    assert_eq!(res.status, StatusCode::NOT_FOUND);
}
both!(users_tokens_and_members_work, users_tokens_and_members);

async fn tasks_agents_executions_reviews(backend: Backend) {
    let Some(h) = harness(backend, "token").await else { return };
    let (a, b) = (h.ids.a, h.ids.b);
    let tasks = format!("/v1/projects/{a}/tasks");
    // Tasks with subtasks, filters and cursor.
    let parent = h.send(Method::POST, &tasks, json!({ "title": "epic", "priority": 1 })).await;
    assert_eq!(parent.status, StatusCode::CREATED, "{}", parent.text);
    let parent_id = parent.body["id"].as_i64().unwrap();
    assert_eq!(parent.body["status"], json!("pending"));
    for n in 0..3 {
        let res = h
            .send(Method::POST, &tasks, json!({ "title": format!("part {n}"), "parent_id": parent_id }))
            .await;
        assert_eq!(res.status, StatusCode::CREATED, "{}", res.text);
    }
    let got = h.get(&format!("/v1/tasks/{parent_id}")).await;
    assert_eq!(got.body["subtasks"].as_array().unwrap().len(), 3, "{}", got.text);
    let subtasks = h.get(&format!("{tasks}?parent_id={parent_id}&limit=2")).await;
    assert_eq!(subtasks.body["tasks"].as_array().unwrap().len(), 2);
    let after = subtasks.body["next_after"].as_i64().unwrap();
    let rest = h.get(&format!("{tasks}?parent_id={parent_id}&after={after}&limit=2")).await;
    assert_eq!(rest.body["tasks"].as_array().unwrap().len(), 1);
    assert_eq!(rest.body["next_after"], Value::Null);
    let done = h.send(Method::PATCH, &format!("/v1/tasks/{parent_id}"), json!({ "status": "done" })).await;
    assert!(done.body["completed_at"].is_string(), "{}", done.text);
    let listed = h.get(&format!("{tasks}?status=done")).await;
    assert_eq!(listed.body["tasks"].as_array().unwrap().len(), 1);
    let reopened =
        h.send(Method::PATCH, &format!("/v1/tasks/{parent_id}"), json!({ "status": "blocked" })).await;
    assert_eq!(reopened.body["completed_at"], Value::Null);
    // Task errors: bad values, a parent in another project, unknown agents and tasks.
    for body in [
        json!({ "title": "" }),
        json!({ "title": "x".repeat(501) }),
        json!({ "title": "x", "status": "started" }),
        json!({ "title": "x", "priority": 5 }),
        json!({ "title": "x", "priority": -1 }),
        json!({ "title": "x", "parent_id": h.ids.task_b }),
        json!({ "title": "x", "parent_id": 999999 }),
        json!({ "title": "x", "assigned_agent_id": 999999 }),
        json!({ "title": "x", "project_id": b }),
        json!({ "title": 5 }),
    ] {
        let res = h.send(Method::POST, &tasks, body.clone()).await;
        assert_eq!(res.status, StatusCode::BAD_REQUEST, "{body}: {}", res.text);
    }
    assert_eq!(h.get(&format!("{tasks}?status=bogus")).await.status, StatusCode::BAD_REQUEST);
    let res = h.send(Method::PATCH, &format!("/v1/tasks/{parent_id}"), json!({ "priority": 9 })).await;
    assert_eq!(res.status, StatusCode::BAD_REQUEST);
    assert_eq!(h.get("/v1/tasks/999999").await.status, StatusCode::NOT_FOUND);
    assert_eq!(
        h.send(Method::POST, "/v1/projects/999999/tasks", json!({ "title": "x" })).await.status,
        StatusCode::NOT_FOUND
    );
    // Deleting a task deletes its subtasks.
    let res = h.call(Method::DELETE, &format!("/v1/tasks/{parent_id}"), Some(&h.tokens.admin), None).await;
    assert_eq!(res.status, StatusCode::NO_CONTENT);
    let left = h.get(&format!("{tasks}?parent_id={parent_id}")).await;
    assert_eq!(left.body["tasks"], json!([]));
    let res = h.call(Method::DELETE, &format!("/v1/tasks/{parent_id}"), Some(&h.tokens.admin), None).await;
    assert_eq!(res.status, StatusCode::NOT_FOUND);

    // Agents: unique names, validation, a cleared model.
    let res = h.send(Method::POST, "/v1/agents", json!({ "name": "reviewer" })).await;
    assert_eq!(res.status, StatusCode::CONFLICT, "{}", res.text);
    for body in
        [json!({ "name": "" }), json!({ "name": "x", "config": [1] }), json!({ "name": "x", "kind": "" })]
    {
        assert_eq!(
            h.send(Method::POST, "/v1/agents", body.clone()).await.status,
            StatusCode::BAD_REQUEST,
            "{body}"
        );
    }
    let coder = h
        .send(Method::POST, "/v1/agents", json!({ "name": "coder", "model": "m", "config": { "t": 1 } }))
        .await;
    let coder_id = coder.body["id"].as_i64().unwrap();
    let res = h.send(Method::PATCH, &format!("/v1/agents/{coder_id}"), json!({ "model": null })).await;
    assert_eq!(res.body["model"], Value::Null, "{}", res.text);
    assert_eq!(res.body["config"], json!({ "t": 1 }));
    let res = h.send(Method::PATCH, &format!("/v1/agents/{coder_id}"), json!({ "name": "reviewer" })).await;
    assert_eq!(res.status, StatusCode::CONFLICT);
    assert_eq!(h.get("/v1/agents/999999").await.status, StatusCode::NOT_FOUND);
    let page = h.get("/v1/agents?limit=1").await;
    assert_eq!(page.body["next_after"], json!(h.ids.agent));

    // Executions: create, finish, validation, listing by task and by agent.
    let runs = format!("/v1/tasks/{}/executions", h.ids.task_a);
    let res = h
        .send(Method::POST, &runs, json!({ "agent_id": coder_id, "status": "failed", "error": "boom" }))
        .await;
    assert_eq!(res.status, StatusCode::CREATED, "{}", res.text);
    assert!(res.body["finished_at"].is_string());
    let exec = res.body["id"].as_i64().unwrap();
    for body in [
        json!({ "status": "paused" }),
        json!({ "input_tokens": -1 }),
        json!({ "cost_usd": -0.5 }),
        json!({ "duration_ms": -3 }),
        json!({ "agent_id": 999999 }),
    ] {
        assert_eq!(h.send(Method::POST, &runs, body.clone()).await.status, StatusCode::BAD_REQUEST, "{body}");
    }
    let res = h
        .send(Method::PATCH, &format!("/v1/executions/{exec}"), json!({ "status": "running", "error": null }))
        .await;
    assert_eq!(res.body["finished_at"], Value::Null, "{}", res.text);
    assert_eq!(res.body["error"], Value::Null);
    let res = h.send(Method::PATCH, &format!("/v1/executions/{exec}"), json!({ "output_tokens": -1 })).await;
    assert_eq!(res.status, StatusCode::BAD_REQUEST);
    assert_eq!(h.get("/v1/executions/999999").await.status, StatusCode::NOT_FOUND);
    let by_task = h.get(&runs).await;
    assert_eq!(by_task.body["executions"].as_array().unwrap().len(), 2, "{}", by_task.text);
    let by_agent = h.get(&format!("/v1/agents/{coder_id}/executions")).await;
    assert_eq!(by_agent.body["executions"].as_array().unwrap().len(), 1, "{}", by_agent.text);
    assert_eq!(h.get("/v1/tasks/999999/executions").await.status, StatusCode::NOT_FOUND);
    assert_eq!(h.get("/v1/agents/999999/executions").await.status, StatusCode::NOT_FOUND);

    // Reviews: a commit of the project only; score and lists checked.
    let reviews = format!("/v1/projects/{a}/reviews");
    let res = h.send(Method::POST, &reviews, json!({ "commit_id": h.ids.commit_a, "summary": "fine" })).await;
    assert_eq!(res.status, StatusCode::CREATED, "{}", res.text);
    for body in [
        json!({ "commit_id": h.ids.commit_b }),
        json!({ "commit_id": 999999 }),
        json!({ "commit_id": h.ids.commit_a, "score": 101 }),
        json!({ "commit_id": h.ids.commit_a, "issues": {} }),
        json!({ "commit_id": h.ids.commit_a, "reviewer_agent_id": 999999 }),
        json!({ "commit_id": h.ids.commit_a, "reviewer_user_id": 999999 }),
        json!({}),
    ] {
        assert_eq!(
            h.send(Method::POST, &reviews, body.clone()).await.status,
            StatusCode::BAD_REQUEST,
            "{body}"
        );
    }
    let listed = h.get(&reviews).await;
    assert_eq!(listed.body["reviews"].as_array().unwrap().len(), 2, "{}", listed.text);
    assert_eq!(h.get("/v1/reviews/999999").await.status, StatusCode::NOT_FOUND);

    // Activity: newest first, by project, with a cursor.
    let all = h.get("/v1/activity?limit=3").await;
    let entries = all.body["activity"].as_array().unwrap();
    assert_eq!(entries.len(), 3);
    assert!(entries[0]["id"].as_i64() > entries[1]["id"].as_i64());
    let before = all.body["next_before"].as_i64().unwrap();
    let older = h.get(&format!("/v1/activity?before={before}")).await;
    assert!(older.body["activity"].as_array().unwrap().iter().all(|e| e["id"].as_i64().unwrap() < before));
    let of_b = h.get(&format!("/v1/activity?project_id={b}")).await;
    assert!(of_b.body["activity"].as_array().unwrap().iter().all(|e| e["project_id"] == json!(b)));
    assert_eq!(h.get("/v1/activity?project_id=999999").await.status, StatusCode::NOT_FOUND);
    assert_eq!(h.get("/v1/activity?limit=x").await.status, StatusCode::BAD_REQUEST);
    assert_eq!(h.get("/v1/activity?unknown=1").await.status, StatusCode::BAD_REQUEST);
}
both!(tasks_agents_executions_and_reviews_work, tasks_agents_executions_reviews);

/// The documented errors of the routes that existed before this module: unknown ids, bad
/// input, conflicts, bad JSON, unknown fields.
async fn existing_route_errors(backend: Backend) {
    let Some(h) = harness(backend, "token").await else { return };
    let a = h.ids.a;
    let bad = StatusCode::BAD_REQUEST;
    let missing = StatusCode::NOT_FOUND;
    let cases: Vec<(Method, String, Option<Value>, StatusCode)> = vec![
        (Method::GET, "/v1/projects/999999".into(), None, missing),
        (Method::GET, "/v1/projects/x".into(), None, bad),
        (
            Method::POST,
            "/v1/projects".into(),
            Some(json!({ "name": "beta", "repository_url": "u" })),
            StatusCode::CONFLICT,
        ),
        (Method::POST, "/v1/projects".into(), Some(json!({ "name": ".x", "repository_url": "u" })), bad),
        (Method::POST, "/v1/projects".into(), Some(json!({ "name": "x" })), bad),
        (
            Method::POST,
            "/v1/projects".into(),
            Some(json!({ "name": "x", "repository_url": "u", "settings": 1 })),
            bad,
        ),
        (Method::POST, "/v1/projects".into(), Some(json!({ "name": "x", "owner": 1 })), bad),
        (Method::PATCH, format!("/v1/projects/{a}"), Some(json!({ "name": "beta" })), StatusCode::CONFLICT),
        (Method::PATCH, format!("/v1/projects/{a}"), Some(json!({ "settings": [] })), bad),
        (Method::PATCH, "/v1/projects/999999".into(), Some(json!({})), missing),
        (Method::DELETE, "/v1/projects/999999".into(), None, missing),
        (Method::GET, "/v1/projects/999999/runs".into(), None, missing),
        (Method::GET, format!("/v1/projects/{a}/runs?limit=x"), None, bad),
        (Method::POST, "/v1/projects/999999/runs".into(), None, missing),
        (Method::POST, format!("/v1/projects/{a}/runs"), Some(json!({ "paths": "x" })), bad),
        (Method::GET, "/v1/runs/999999".into(), None, missing),
        (Method::POST, "/v1/runs/999999/cancel".into(), None, missing),
        (Method::GET, "/v1/runs/999999/events".into(), None, missing),
        (Method::GET, "/v1/runs/999999/stream".into(), None, missing),
        (Method::POST, "/v1/search".into(), Some(json!({ "query": "" })), bad),
        (Method::POST, "/v1/search".into(), Some(json!({ "query": "x", "top_k": 0 })), bad),
        (Method::POST, "/v1/search".into(), Some(json!({ "query": "x", "top_k": 100000 })), bad),
        (Method::POST, "/v1/search".into(), Some(json!({ "query": "x", "mode": "magic" })), bad),
        (Method::POST, "/v1/search".into(), Some(json!({ "query": "x".repeat(5000) })), bad),
        (Method::POST, "/v1/search".into(), Some(json!({ "query": "x", "projects": [999999] })), missing),
        (Method::POST, "/v1/search".into(), Some(json!({ "query": "x", "rrf_k": 0 })), bad),
        (Method::GET, "/v1/projects/999999/files".into(), None, missing),
        (Method::GET, format!("/v1/projects/{a}/file?path=nope.ts"), None, missing),
        (Method::GET, format!("/v1/projects/{a}/file"), None, bad),
        (Method::GET, format!("/v1/projects/{a}/symbols?q="), None, bad),
        (Method::GET, format!("/v1/projects/{a}/symbols?q=user&kind=widget"), None, bad),
        (Method::GET, format!("/v1/projects/{a}/graph?path=src/a.ts&depth=11"), None, bad),
        (Method::GET, format!("/v1/projects/{a}/graph?path=src/a.ts&direction=up"), None, bad),
        (Method::GET, format!("/v1/projects/{a}/graph?path=nope.ts"), None, missing),
        (Method::GET, "/v1/chunks/999999".into(), None, missing),
        (Method::GET, "/v1/nowhere".into(), None, missing),
    ];
    for (method, uri, body, status) in cases {
        let res = h.call(method.clone(), &uri, Some(&h.tokens.admin), body.as_ref()).await;
        assert_eq!(res.status, status, "{method} {uri}: {}", res.text);
        assert!(
            res.body["error"]["code"].is_string() && res.body["error"]["message"].is_string(),
            "{}",
            res.text
        );
    }
    // Malformed JSON is a 400 in the error shape, as is a missing content type.
    let request = Request::post("/v1/search")
        .header(header::AUTHORIZATION, format!("Bearer {}", h.tokens.admin))
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from("{\"query\": "))
        .unwrap();
    let res = h.app.clone().oneshot(request).await.unwrap();
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    // Clearing a nullable project field with null.
    let res = h.send(Method::PATCH, &format!("/v1/projects/{a}"), json!({ "default_branch": "dev" })).await;
    assert_eq!(res.body["default_branch"], json!("dev"));
    let res = h.send(Method::PATCH, &format!("/v1/projects/{a}"), json!({ "default_branch": null })).await;
    assert_eq!(res.body["default_branch"], Value::Null, "null must clear the field: {}", res.text);
    // A run of a project without a root path cannot be queued.
    let remote = h
        .send(Method::POST, "/v1/projects", json!({ "name": "remote", "repository_url": "https://x" }))
        .await;
    let remote = remote.body["id"].as_i64().unwrap();
    let res = h.call(Method::POST, &format!("/v1/projects/{remote}/runs"), Some(&h.tokens.admin), None).await;
    assert_eq!(res.status, StatusCode::CONFLICT);
    // Cancelling a finished run conflicts.
    let run = format!("/v1/runs/{}/cancel", h.ids.run_b);
    assert_eq!(h.call(Method::POST, &run, Some(&h.tokens.admin), None).await.status, StatusCode::OK);
    assert_eq!(h.call(Method::POST, &run, Some(&h.tokens.admin), None).await.status, StatusCode::CONFLICT);
}
both!(existing_routes_report_their_errors, existing_route_errors);

// Authorization -----------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq)]
enum Caller {
    Anonymous,
    Read,
    Write,
    Admin,
    Expired,
    Revoked,
    /// A user token (admin scope) of an admin member of project B only.
    OtherMember,
}

/// Routes about one of project A's rows (as opposed to global ones).
fn about_project_a(path: &str) -> bool {
    // The git hook route names project A by its repository root in the body.
    path == "/v1/hooks/git"
        || ["{project_id}", "{run_id}", "{chunk_id}", "{task_id}", "{execution_id}", "{review_id}"]
            .iter()
            .any(|p| path.contains(p))
}

/// Global routes only an unconfined administrator may use.
fn global_admin_only(method: &Method, path: &str) -> bool {
    path.starts_with("/v1/users")
        || path.starts_with("/v1/tokens")
        || path == "/metrics"
        || (method == Method::POST && path == "/v1/projects")
}

async fn authorization_matrix(backend: Backend) {
    for caller in [
        Caller::Anonymous,
        Caller::Read,
        Caller::Write,
        Caller::Admin,
        Caller::Expired,
        Caller::Revoked,
        Caller::OtherMember,
    ] {
        // A fresh store per caller, so what one caller may destroy does not change the next.
        let Some(h) = harness(backend, "token").await else { return };
        let secret = match caller {
            Caller::Anonymous => None,
            Caller::Read => Some(h.tokens.read.clone()),
            Caller::Write => Some(h.tokens.write.clone()),
            Caller::Admin => Some(h.tokens.admin.clone()),
            Caller::Expired => Some(h.tokens.expired.clone()),
            Caller::Revoked => Some(h.tokens.revoked.clone()),
            Caller::OtherMember => Some(h.tokens.member.clone()),
        };
        for r in ordered_routes() {
            let (uri, body, ok) = request_for(&h, &r.method, r.path);
            let res = h.call(r.method.clone(), &uri, secret.as_deref(), body.as_ref()).await;
            let what = format!("{caller:?} {} {uri}: {} {}", r.method, res.status, res.text);
            assert!(!res.status.is_server_error(), "{what}");
            let Some(needed) = r.scope else {
                assert_eq!(res.status, ok, "{what}");
                continue;
            };
            match caller {
                Caller::Anonymous | Caller::Expired | Caller::Revoked => {
                    assert_eq!(res.status, StatusCode::UNAUTHORIZED, "{what}");
                    assert_eq!(res.body["error"]["code"], json!("unauthorized"), "{what}");
                }
                Caller::Read | Caller::Write | Caller::Admin => {
                    let has = match caller {
                        Caller::Read => api::Scope::Read,
                        Caller::Write => api::Scope::Write,
                        _ => api::Scope::Admin,
                    };
                    if has >= needed {
                        assert_eq!(res.status, ok, "{what}");
                    } else {
                        assert_eq!(res.status, StatusCode::FORBIDDEN, "{what}");
                    }
                }
                Caller::OtherMember => {
                    if global_admin_only(&r.method, r.path) {
                        assert_eq!(res.status, StatusCode::FORBIDDEN, "{what}");
                    } else if about_project_a(r.path) {
                        assert!(
                            res.status == StatusCode::NOT_FOUND || res.status == StatusCode::FORBIDDEN,
                            "{what}"
                        );
                        assert!(!res.text.contains(HIDDEN), "{what}");
                    } else {
                        // Global lists and agents: allowed, without a trace of project A.
                        assert!(res.status.is_success(), "{what}");
                        assert!(!mentions_hidden(&res.body, h.ids.a), "{what}");
                    }
                }
            }
        }
    }
}
both!(authorization_matrix_has_no_unexpected_success, authorization_matrix);

/// A chunk shows whether it has a vector under the configured model, and how its text was sent
/// (issue 4: "the chunk records which").
async fn chunk_shows_its_embedding(backend: Backend) {
    let Some(h) = harness(backend, "none").await else { return };
    let uri = format!("/v1/chunks/{}", h.ids.chunk_a);
    let res = h.call(Method::GET, &uri, None, None).await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.text);
    assert!(res.body["embedding"].is_null(), "not embedded yet: {}", res.text);

    let store = h.store().clone();
    let model = &h.state.engine.model;
    let hash = res.body["content_hash"].as_str().unwrap().to_string();
    let vector = vec![0.125; model.dimensions as usize];
    store.put_embeddings_with_modes(model.id, &[(hash, vector)], &[st::InputMode::Truncated]).await.unwrap();
    let res = h.call(Method::GET, &uri, None, None).await;
    assert_eq!(
        res.body["embedding"],
        json!({"model": model.model, "dimensions": model.dimensions, "input_mode": "truncated"}),
        "{}",
        res.text
    );
}
both!(chunk_shows_its_embedding_and_how_it_was_sent, chunk_shows_its_embedding);

/// The other project's member does reach their own project, and its lists hold only its rows.
async fn member_reaches_own_project(backend: Backend) {
    let Some(h) = harness(backend, "token").await else { return };
    let t = Some(h.tokens.member.as_str());
    let b = h.ids.b;
    for uri in [
        format!("/v1/projects/{b}"),
        format!("/v1/projects/{b}/tasks"),
        format!("/v1/tasks/{}", h.ids.task_b),
        format!("/v1/executions/{}", h.ids.execution_b),
        format!("/v1/reviews/{}", h.ids.review_b),
        format!("/v1/chunks/{}", h.ids.chunk_b),
        format!("/v1/runs/{}", h.ids.run_b),
        format!("/v1/projects/{b}/members"),
        format!("/v1/agents/{}/executions", h.ids.agent),
        "/v1/activity".to_string(),
        "/v1/projects".to_string(),
    ] {
        let res = h.call(Method::GET, &uri, t, None).await;
        assert_eq!(res.status, StatusCode::OK, "{uri}: {}", res.text);
        assert!(!mentions_hidden(&res.body, h.ids.a), "{uri}: {}", res.text);
    }
    let execs = h.call(Method::GET, &format!("/v1/agents/{}/executions", h.ids.agent), t, None).await;
    assert_eq!(execs.body["executions"].as_array().unwrap().len(), 1, "{}", execs.text);
    let activity = h.call(Method::GET, "/v1/activity", t, None).await;
    assert!(!activity.body["activity"].as_array().unwrap().is_empty());
    let search = h
        .call(
            Method::POST,
            "/v1/search",
            t,
            Some(&json!({ "query": "alphaThing betaOnly", "mode": "lexical" })),
        )
        .await;
    assert_eq!(search.status, StatusCode::OK);
    assert!(
        search.body["results"].as_array().unwrap().iter().all(|r| r["project"] == json!("beta")),
        "{}",
        search.text
    );
    let named =
        h.call(Method::POST, "/v1/search", t, Some(&json!({ "query": "x", "projects": [HIDDEN] }))).await;
    assert_eq!(named.status, StatusCode::NOT_FOUND);
    // A read member may read but not write.
    let (_, reader) = token(h.store(), Some(h.ids.user_v), "write").await;
    let res = h.call(Method::GET, &format!("/v1/projects/{}/tasks", h.ids.a), Some(&reader), None).await;
    assert_eq!(res.status, StatusCode::OK);
    let res = h
        .call(
            Method::POST,
            &format!("/v1/projects/{}/tasks", h.ids.a),
            Some(&reader),
            Some(&json!({ "title": "x" })),
        )
        .await;
    assert_eq!(res.status, StatusCode::FORBIDDEN, "{}", res.text);
    let res = h
        .call(
            Method::PATCH,
            &format!("/v1/tasks/{}", h.ids.task_a),
            Some(&reader),
            Some(&json!({ "title": "y" })),
        )
        .await;
    assert_eq!(res.status, StatusCode::FORBIDDEN, "{}", res.text);
}
both!(a_member_reaches_only_their_projects, member_reaches_own_project);

// Path traversal ----------------------------------------------------------------------------

const TRAVERSALS: [&str; 12] = [
    "..",
    "../",
    "../../etc/passwd",
    "..%2F..%2Fetc%2Fpasswd",
    "%2E%2E%2F%2E%2E",
    "%2Fetc%2Fpasswd",
    "/etc/passwd",
    "a%00b",
    "%00",
    "..%5C..%5Cwindows",
    "src%5C..%5C..%5Ca.ts",
    "src/../../outside/secret.ts",
];

async fn path_traversal(backend: Backend) {
    let Some(h) = harness(backend, "none").await else { return };
    // Every path parameter of every route.
    for r in ordered_routes() {
        if !r.path.contains('{') {
            continue;
        }
        for bad in TRAVERSALS {
            for (param, _) in parameters(&h) {
                if !r.path.contains(param) {
                    continue;
                }
                let (uri, body, _) = request_with(&h, &r.method, r.path, Some((param, bad)));
                let Ok(parsed) = uri.parse::<axum::http::Uri>() else { continue };
                let res = h.call(r.method.clone(), &parsed.to_string(), None, body.as_ref()).await;
                assert!(res.status.is_client_error(), "{} {uri}: {} {}", r.method, res.status, res.text);
                assert!(!res.text.contains(OUTSIDE), "{uri}");
            }
        }
    }
    // Every path-like query parameter.
    let a = h.ids.a;
    for bad in TRAVERSALS {
        for uri in [
            format!("/v1/projects/{a}/file?path={bad}"),
            format!("/v1/projects/{a}/graph?path={bad}"),
            format!("/v1/projects/{a}/files?after={bad}"),
            format!("/v1/projects/{a}/tasks?status={bad}"),
            format!("/v1/activity?project_id={bad}"),
            format!("/v1/projects/{a}/runs?before={bad}"),
        ] {
            let res = h.call(Method::GET, &uri, None, None).await;
            let files_cursor = uri.contains("/files?after=");
            if files_cursor {
                // A cursor is compared, never opened: any text is a valid (empty) page.
                assert!(res.status == StatusCode::OK || res.status.is_client_error(), "{uri}: {}", res.text);
            } else {
                assert!(res.status.is_client_error(), "{uri}: {} {}", res.status, res.text);
            }
            assert!(!res.text.contains(OUTSIDE), "{uri}");
        }
    }
    // In a JSON body nothing is percent-decoded, so the raw forms: `..`, absolute paths,
    // backslashes, NUL.
    for bad in [
        "..",
        "../",
        "../../etc/passwd",
        "src/../../outside/secret.ts",
        "./src/a.ts",
        "/etc/passwd",
        "",
        "..\\..\\x",
        "a\u{0}b",
        "src\\a.ts",
    ] {
        let res = h
            .call(Method::POST, &format!("/v1/projects/{a}/runs"), None, Some(&json!({ "paths": [bad] })))
            .await;
        assert_eq!(res.status, StatusCode::BAD_REQUEST, "{bad:?}");
    }
    // Project registration: only existing directories inside the roots, symlinks resolved.
    let roots = h.roots.display().to_string();
    let cases = [
        format!("{roots}/escape"),
        format!("{roots}/escape/"),
        format!("{roots}/../outside"),
        format!("{roots}/gamma/../../outside"),
        h.outside.display().to_string(),
        "/etc".to_string(),
        "/".to_string(),
        "relative/path".to_string(),
        format!("{roots}/gamma\u{0}"),
        format!("{roots}/does-not-exist"),
        format!("{roots}/alpha/src/a.ts"),
        format!("{roots}\\..\\outside"),
    ];
    for (n, path) in cases.iter().enumerate() {
        let body = json!({ "name": format!("p{n}"), "root_path": path });
        let res = h.call(Method::POST, "/v1/projects", None, Some(&body)).await;
        assert_eq!(res.status, StatusCode::BAD_REQUEST, "{path:?}: {}", res.text);
        assert!(!res.text.contains(OUTSIDE));
    }
    let list = h.call(Method::GET, "/v1/projects", None, None).await;
    assert!(!list.text.contains(&h.outside.display().to_string()));
}
both!(path_traversal_is_refused_everywhere, path_traversal);

// OpenAPI -----------------------------------------------------------------------------------

async fn openapi(backend: Backend) {
    let Some(h) = harness(backend, "none").await else { return };
    let doc = h.call(Method::GET, "/openapi.json", None, None).await;
    assert_eq!(doc.status, StatusCode::OK);
    assert_eq!(doc.body["openapi"], json!("3.1.0"));
    let paths = doc.body["paths"].as_object().unwrap();
    let routes = api::routes();
    for r in &routes {
        let op = &paths[r.path][r.method.as_str().to_ascii_lowercase()];
        assert!(op.is_object(), "{} {} is not documented", r.method, r.path);
        assert_eq!(op["summary"], json!(r.summary));
    }
    // Every documented query parameter is one the route accepts (query structs refuse others):
    // sent all at once with their examples, each parameterised route still succeeds.
    for r in &routes {
        let params = api::query_parameters(&r.method, r.path);
        if params.is_empty() {
            continue;
        }
        let documented: Vec<&str> = paths[r.path][r.method.as_str().to_ascii_lowercase()]["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|p| p["in"] == "query")
            .map(|p| p["name"].as_str().unwrap())
            .collect();
        assert_eq!(documented, params.iter().map(|p| p.name).collect::<Vec<_>>(), "{} {}", r.method, r.path);
        let (uri, _, ok) = request_for(&h, &r.method, r.path);
        let base = uri.split('?').next().unwrap();
        let query: Vec<String> = params.iter().map(|p| format!("{}={}", p.name, p.example)).collect();
        let res = h.call(r.method.clone(), &format!("{base}?{}", query.join("&")), None, None).await;
        assert_eq!(res.status, ok, "{} {base}?{}: {}", r.method, query.join("&"), res.text);
    }
    // Every body a test sends uses documented properties only, with every required one; every
    // route that reads a body documents it.
    for r in &routes {
        let (_, body, _) = request_for(&h, &r.method, r.path);
        let schema = &paths[r.path][r.method.as_str().to_ascii_lowercase()]["requestBody"]["content"]["application/json"]
            ["schema"];
        let Some(body) = body else { continue };
        let Some(sent) = body.as_object().filter(|o| !o.is_empty()) else { continue };
        assert!(
            schema["properties"].is_object(),
            "{} {} reads a body it does not document",
            r.method,
            r.path
        );
        let undocumented = undocumented(sent, schema);
        assert!(undocumented.is_empty(), "{} {}: {undocumented:?} not documented", r.method, r.path);
        for required in schema["required"].as_array().unwrap() {
            assert!(
                sent.contains_key(required.as_str().unwrap()),
                "{} {}: {required} is required",
                r.method,
                r.path
            );
        }
    }
    let mut documented = 0;
    for (path, ops) in paths {
        for (method, _) in ops.as_object().unwrap() {
            documented += 1;
            let method = Method::from_bytes(method.to_ascii_uppercase().as_bytes()).unwrap();
            let route = routes.iter().find(|r| r.path == path && r.method == method);
            assert!(route.is_some(), "{method} {path} is documented but not in the route table");
            let (uri, body, ok) = request_for(&h, &method, path);
            // The documented success status is the one the route answers.
            let success: Vec<&String> = ops[method.as_str().to_ascii_lowercase().as_str()]["responses"]
                .as_object()
                .unwrap()
                .keys()
                .filter(|code| code.starts_with('2'))
                .collect();
            assert_eq!(success, [&ok.as_u16().to_string()], "{method} {path}");
            let res = h.call(method.clone(), &uri, None, body.as_ref()).await;
            assert_ne!(res.text, FALLBACK, "{method} {path} is documented but not served");
            assert_ne!(res.status, StatusCode::METHOD_NOT_ALLOWED, "{method} {path}");
        }
    }
    assert_eq!(documented, routes.len());
    let unknown = h.call(Method::GET, "/v1/unknown", None, None).await;
    assert_eq!(unknown.text, FALLBACK);
}
both!(openapi_documents_every_route_and_only_those, openapi);

/// The properties of a sent body, nested objects and enum values included, that `schema` does
/// not document.
fn undocumented(sent: &serde_json::Map<String, Value>, schema: &Value) -> Vec<String> {
    let mut out = Vec::new();
    for (key, value) in sent {
        let Some(property) = schema["properties"].get(key) else {
            out.push(key.clone());
            continue;
        };
        if let Some(nested) = value.as_object().filter(|_| property["properties"].is_object()) {
            out.extend(undocumented(nested, property).into_iter().map(|k| format!("{key}.{k}")));
        }
        if let (Some(items), Some(allowed)) = (value.as_array(), property["items"]["enum"].as_array()) {
            out.extend(items.iter().filter(|i| !allowed.contains(i)).map(|i| format!("{key}={i}")));
        }
    }
    out
}

// Search filters ----------------------------------------------------------------------------

/// The symbol-kind filter over HTTP: it restricts results, and an unknown kind is a 400 naming
/// the kinds there are, the same list the OpenAPI document gives.
async fn search_kinds(backend: Backend) {
    let Some(h) = harness(backend, "token").await else { return };
    let search = |kinds: Value| json!({ "query": "alphaThing bravo", "mode": "lexical", "filters": { "kinds": kinds } });
    let all =
        h.send(Method::POST, "/v1/search", json!({ "query": "alphaThing bravo", "mode": "lexical" })).await;
    assert_eq!(all.status, StatusCode::OK, "{}", all.text);
    let mut every: Vec<&str> =
        all.body["results"].as_array().unwrap().iter().map(|r| r["path"].as_str().unwrap()).collect();
    every.sort();
    assert_eq!(every, ["src/a.ts", "src/b.ts"], "{}", all.text);
    let functions = h.send(Method::POST, "/v1/search", search(json!(["function"]))).await;
    assert_eq!(functions.status, StatusCode::OK, "{}", functions.text);
    let found: Vec<&str> =
        functions.body["results"].as_array().unwrap().iter().map(|r| r["path"].as_str().unwrap()).collect();
    assert_eq!(found, ["src/a.ts"], "{}", functions.text);
    let classes = h.send(Method::POST, "/v1/search", search(json!(["class", "interface"]))).await;
    assert_eq!(classes.status, StatusCode::OK, "{}", classes.text);
    assert_eq!(classes.body["results"], json!([]), "{}", classes.text);

    let bad = h.send(Method::POST, "/v1/search", search(json!(["function", "widget"]))).await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST, "{}", bad.text);
    assert_eq!(bad.body["error"]["code"], json!("bad_request"), "{}", bad.text);
    let message = bad.body["error"]["message"].as_str().unwrap();
    let doc = h.call(Method::GET, "/openapi.json", None, None).await;
    let kinds = &doc.body["paths"]["/v1/search"]["post"]["requestBody"]["content"]["application/json"]["schema"]
        ["properties"]["filters"]["properties"]["kinds"]["items"]["enum"];
    let kinds: Vec<&str> = kinds.as_array().unwrap().iter().map(|k| k.as_str().unwrap()).collect();
    assert!(kinds.contains(&"type_alias") && kinds.len() == 13, "{kinds:?}");
    assert!(message.contains("\"widget\"") && message.contains(&kinds.join(", ")), "{message}");
    // Refused even for a caller who can read no project.
    let empty = h
        .send(
            Method::POST,
            "/v1/search",
            json!({ "query": "x", "projects": [], "filters": { "kinds": ["widget"] } }),
        )
        .await;
    assert_eq!(empty.status, StatusCode::BAD_REQUEST, "{}", empty.text);
}
both!(search_kind_filter_and_unknown_kinds, search_kinds);
