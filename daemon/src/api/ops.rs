//! Operations: health, readiness, Prometheus metrics, the OpenAPI document, and the outermost
//! middleware that gives every request an id, logs it and counts it.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::error::InternalDetail;
use super::{AppState, Json, routes};

/// Latency histogram bucket bounds, in seconds.
const BUCKETS: [f64; 12] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0];

/// The route template a response came from, set by the authentication layer after routing.
#[derive(Debug, Clone)]
pub struct RouteLabel(pub String);

#[derive(Debug, Default)]
struct Histogram {
    counts: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

/// Request counters and latency histograms, by route.
#[derive(Debug, Default)]
pub struct Metrics {
    requests: Mutex<BTreeMap<(String, String, u16), u64>>,
    latency: Mutex<BTreeMap<String, Histogram>>,
    next_id: AtomicU64,
}

impl Metrics {
    fn record(&self, route: &str, method: &str, status: u16, seconds: f64) {
        if let Ok(mut r) = self.requests.lock() {
            *r.entry((route.to_string(), method.to_string(), status)).or_default() += 1;
        }
        if let Ok(mut l) = self.latency.lock() {
            let h = l.entry(route.to_string()).or_default();
            for (i, bound) in BUCKETS.iter().enumerate() {
                if seconds <= *bound {
                    h.counts[i] += 1;
                }
            }
            h.count += 1;
            h.sum += seconds;
        }
    }
}

/// Gives the request an id (the client's `x-request-id` when it is sane), logs it, and counts
/// it by route and status. Internal error details are logged here, never sent.
pub async fn observe(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let id = request
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| {
            !v.is_empty()
                && v.len() <= 64
                && v.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        })
        .map(str::to_string)
        .unwrap_or_else(|| {
            format!("req-{:x}-{}", std::process::id(), state.metrics.next_id.fetch_add(1, Ordering::Relaxed))
        });
    let method = request.method().to_string();
    let mut response = next.run(request).await;
    let route =
        response.extensions().get::<RouteLabel>().map(|r| r.0.clone()).unwrap_or_else(|| "unmatched".into());
    let status = response.status();
    let seconds = started.elapsed().as_secs_f64();
    state.metrics.record(&route, &method, status.as_u16(), seconds);
    if status.is_server_error() {
        let detail = response.extensions().get::<InternalDetail>().map(|d| d.0.clone()).unwrap_or_default();
        tracing::error!(request_id = %id, %method, %route, status = status.as_u16(), detail = %detail, "request failed");
    } else {
        tracing::debug!(request_id = %id, %method, %route, status = status.as_u16(), ms = seconds * 1e3, "request");
    }
    if let Ok(v) = HeaderValue::from_str(&id) {
        response.headers_mut().insert("x-request-id", v);
    }
    response
}

pub async fn healthz() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

/// Ready when the database answers with the schema this binary expects; the embedder's circuit
/// state is reported but an open circuit does not make the daemon unready (search degrades).
pub async fn readyz(State(state): State<AppState>) -> Response {
    let circuit = state.engine.embedder.circuit_state().name();
    match state.engine.store.status().await {
        Ok(s) => {
            let current = s.schema_version == Some(s.latest_version);
            let body = json!({
                "status": if current { "ready" } else { "migrations_pending" },
                "database": "ok",
                "backend": s.backend.name(),
                "schema_version": s.schema_version,
                "latest_version": s.latest_version,
                "embedder_circuit": circuit,
            });
            let code = if current { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
            (code, axum::Json(body)).into_response()
        }
        Err(e) => {
            tracing::warn!(error = %e, "readiness check: database unavailable");
            let body =
                json!({ "status": "unavailable", "database": "unavailable", "embedder_circuit": circuit });
            (StatusCode::SERVICE_UNAVAILABLE, axum::Json(body)).into_response()
        }
    }
}

/// Prometheus text format.
pub async fn metrics(State(state): State<AppState>, principal: super::Principal) -> Response {
    // Queue depth and per-route counts span every project: not for project-confined tokens.
    if let Err(e) = principal.check_global_admin(&state.engine.store).await {
        return e.into_response();
    }
    let mut out = String::new();
    let _ = writeln!(out, "# HELP semdex_http_requests_total HTTP requests by route, method and status.");
    let _ = writeln!(out, "# TYPE semdex_http_requests_total counter");
    if let Ok(r) = state.metrics.requests.lock() {
        for ((route, method, status), n) in r.iter() {
            let _ = writeln!(
                out,
                "semdex_http_requests_total{{route=\"{}\",method=\"{method}\",status=\"{status}\"}} {n}",
                escape(route)
            );
        }
    }
    let _ = writeln!(out, "# HELP semdex_http_request_duration_seconds HTTP request latency by route.");
    let _ = writeln!(out, "# TYPE semdex_http_request_duration_seconds histogram");
    if let Ok(l) = state.metrics.latency.lock() {
        for (route, h) in l.iter() {
            let route = escape(route);
            for (bound, n) in BUCKETS.iter().zip(h.counts) {
                let _ = writeln!(
                    out,
                    "semdex_http_request_duration_seconds_bucket{{route=\"{route}\",le=\"{bound}\"}} {n}"
                );
            }
            let _ = writeln!(
                out,
                "semdex_http_request_duration_seconds_bucket{{route=\"{route}\",le=\"+Inf\"}} {}",
                h.count
            );
            let _ = writeln!(out, "semdex_http_request_duration_seconds_sum{{route=\"{route}\"}} {}", h.sum);
            let _ =
                writeln!(out, "semdex_http_request_duration_seconds_count{{route=\"{route}\"}} {}", h.count);
        }
    }
    let stats = &state.runner.stats;
    let _ = writeln!(out, "# HELP semdex_index_runs_total Index runs finished by this process, by outcome.");
    let _ = writeln!(out, "# TYPE semdex_index_runs_total counter");
    for (outcome, n) in [
        ("succeeded", &stats.succeeded),
        ("failed", &stats.failed),
        ("cancelled", &stats.cancelled),
        ("released", &stats.released),
    ] {
        let _ =
            writeln!(out, "semdex_index_runs_total{{outcome=\"{outcome}\"}} {}", n.load(Ordering::Relaxed));
    }
    let _ = writeln!(out, "# HELP semdex_index_runs_running Index runs executing in this process.");
    let _ = writeln!(out, "# TYPE semdex_index_runs_running gauge");
    let _ = writeln!(out, "semdex_index_runs_running {}", state.runner.running());
    if let Ok(depth) = state.engine.store.active_runs().await {
        let _ = writeln!(
            out,
            "# HELP semdex_index_queue_depth Index runs queued or running, over all processes."
        );
        let _ = writeln!(out, "# TYPE semdex_index_queue_depth gauge");
        let _ = writeln!(out, "semdex_index_queue_depth {depth}");
    }
    let _ = writeln!(out, "# HELP semdex_hnsw_vectors Vectors in the local HNSW index.");
    let _ = writeln!(out, "# TYPE semdex_hnsw_vectors gauge");
    let _ = writeln!(out, "semdex_hnsw_vectors {}", state.engine.vectors.len());
    let _ = writeln!(out, "# HELP semdex_query_embedding_cache_entries Query embeddings cached in memory.");
    let _ = writeln!(out, "# TYPE semdex_query_embedding_cache_entries gauge");
    let _ = writeln!(out, "semdex_query_embedding_cache_entries {}", state.engine.query_embedder.cached());
    let _ = writeln!(
        out,
        "# HELP semdex_embedder_circuit_open Whether the embedding upstream is considered down."
    );
    let _ = writeln!(out, "# TYPE semdex_embedder_circuit_open gauge");
    let open = state.engine.embedder.circuit_state().name() != "closed";
    let _ = writeln!(out, "semdex_embedder_circuit_open {}", u8::from(open));
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out).into_response()
}

fn escape(label: &str) -> String {
    label.replace('\\', "\\\\").replace('"', "\\\"")
}

/// The OpenAPI 3.1 document, generated from the route table.
pub async fn openapi() -> Json<Value> {
    Json(openapi_document())
}

/// Builds the OpenAPI document from [`routes`].
pub fn openapi_document() -> Value {
    let mut paths: BTreeMap<&str, serde_json::Map<String, Value>> = BTreeMap::new();
    for r in routes() {
        let mut params: Vec<Value> = r
            .path
            .split('/')
            .filter_map(|seg| seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
            .map(|name| json!({ "name": name, "in": "path", "required": true, "schema": { "type": "integer" } }))
            .collect();
        for q in query_parameters(&r.method, r.path) {
            params.push(json!({
                "name": q.name,
                "in": "query",
                "required": q.required,
                "schema": { "type": q.kind },
                "example": q.example,
            }));
        }
        let mut responses = serde_json::Map::new();
        let (code, description) = success(&r.method, r.path);
        responses.insert(code.into(), json!({ "description": description }));
        if r.scope.is_some() {
            responses.insert("401".into(), json!({ "$ref": "#/components/responses/Error" }));
            responses.insert("403".into(), json!({ "$ref": "#/components/responses/Error" }));
        }
        responses.insert("400".into(), json!({ "$ref": "#/components/responses/Error" }));
        responses.insert("404".into(), json!({ "$ref": "#/components/responses/Error" }));
        responses.insert("503".into(), json!({ "$ref": "#/components/responses/Error" }));
        let mut op = json!({
            "summary": r.summary,
            "operationId": operation_id(r.method.as_str(), r.path),
            "parameters": params,
            "responses": responses,
        });
        if let Some(schema) = super::schema::request_body(&r.method, r.path) {
            op["requestBody"] = json!({
                "required": !matches!(r.method, axum::http::Method::PATCH)
                    && r.path != "/v1/projects/{project_id}/runs",
                "content": { "application/json": { "schema": schema } },
            });
        }
        match r.scope {
            Some(scope) => {
                op["security"] = json!([{ "bearer": [] }]);
                op["x-semdex-scope"] = json!(scope.name());
            }
            None => op["security"] = json!([]),
        }
        paths.entry(r.path).or_default().insert(r.method.as_str().to_ascii_lowercase(), op);
    }
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "semdex",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Semantic code search and indexing. Errors are {\"error\": {\"code\", \"message\"}}.",
        },
        "paths": paths,
        "components": {
            "securitySchemes": { "bearer": { "type": "http", "scheme": "bearer" } },
            "responses": {
                "Error": {
                    "description": "An error with a stable code",
                    "content": { "application/json": { "schema": {
                        "type": "object",
                        "properties": { "error": { "type": "object", "properties": {
                            "code": { "type": "string" }, "message": { "type": "string" }
                        }, "required": ["code", "message"] } },
                        "required": ["error"],
                    } } },
                },
            },
        },
    })
}

/// A documented query parameter.
#[derive(Debug, Clone, Copy)]
pub struct QueryParameter {
    pub name: &'static str,
    /// `integer` or `string`.
    pub kind: &'static str,
    pub required: bool,
    /// A value the route accepts; the API tests send it.
    pub example: &'static str,
}

/// The query parameters each route reads (its query struct rejects any other).
pub fn query_parameters(method: &axum::http::Method, path: &str) -> Vec<QueryParameter> {
    let p = |name, kind, required, example| QueryParameter { name, kind, required, example };
    let after_id = || vec![p("after", "integer", false, "1"), p("limit", "integer", false, "10")];
    if method != axum::http::Method::GET {
        return Vec::new();
    }
    match path {
        "/v1/projects/{project_id}/runs" | "/v1/tokens" => {
            vec![p("before", "integer", false, "1000"), p("limit", "integer", false, "10")]
        }
        "/v1/projects/{project_id}/files" => {
            vec![p("after", "string", false, "src"), p("limit", "integer", false, "10")]
        }
        "/v1/projects/{project_id}/file" => vec![p("path", "string", true, "src/a.ts")],
        "/v1/projects/{project_id}/symbols" => vec![
            p("q", "string", true, "alpha"),
            p("kind", "string", false, "function"),
            p("limit", "integer", false, "10"),
        ],
        "/v1/projects/{project_id}/graph" => vec![
            p("path", "string", true, "src/a.ts"),
            p("direction", "string", false, "importers"),
            p("depth", "integer", false, "2"),
        ],
        "/v1/projects/{project_id}/commits" => vec![p("limit", "integer", false, "10")],
        "/v1/projects/{project_id}/tasks" => {
            let mut v = vec![p("status", "string", false, "pending"), p("parent_id", "integer", false, "1")];
            v.extend(after_id());
            v
        }
        "/v1/users"
        | "/v1/agents"
        | "/v1/agents/{agent_id}/executions"
        | "/v1/tasks/{task_id}/executions"
        | "/v1/projects/{project_id}/reviews" => after_id(),
        "/v1/activity" => vec![
            p("project_id", "integer", false, "1"),
            p("before", "integer", false, "1000"),
            p("limit", "integer", false, "10"),
        ],
        _ => Vec::new(),
    }
}

/// The status a route answers on success; the API tests check each against the route itself.
fn success(method: &axum::http::Method, path: &str) -> (&'static str, &'static str) {
    use axum::http::Method;
    match (method, path) {
        (&Method::DELETE, _) => ("204", "deleted"),
        (&Method::POST, "/v1/projects/{project_id}/runs" | "/v1/hooks/git") => {
            ("202", "accepted: a run is queued")
        }
        (
            &Method::POST,
            "/v1/projects"
            | "/v1/users"
            | "/v1/tokens"
            | "/v1/agents"
            | "/v1/projects/{project_id}/tasks"
            | "/v1/tasks/{task_id}/executions"
            | "/v1/projects/{project_id}/reviews",
        ) => ("201", "created"),
        _ => ("200", "success"),
    }
}

fn operation_id(method: &str, path: &str) -> String {
    let mut id = method.to_ascii_lowercase();
    for seg in path.split('/').filter(|s| !s.is_empty()) {
        id.push('_');
        id.push_str(&seg.replace(['{', '}'], "").replace(['.', '-'], "_"));
    }
    id
}
