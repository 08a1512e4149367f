//! The API's limits and cross-cutting layers, driven in-process: body size (413), query length
//! and `top_k` caps, load shedding (503 with `Retry-After`), per-request timeouts, CORS off
//! unless an allow-list is configured, and request ids.

use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use serde_json::{Value, json};
use tower::ServiceExt;

use semdex::api::{self, AppState};
use semdex::config::{Config, Overrides};
use semdex::engine::Engine;
use semdex::runner::Runner;

/// An app whose configuration file holds `server` settings.
async fn app_with(server: &str) -> (tempfile::TempDir, axum::Router) {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(data.join("semdex.toml"), format!("[server]\n{server}\n")).unwrap();
    let overrides = Overrides { data_dir: Some(data), ..Overrides::default() };
    let env = |name: &str| (name == "SEMDEX_EMBEDDING_DIMS").then(|| "32".to_string());
    let config = Config::load_with(&overrides, &env).unwrap();
    let engine = Engine::open(config).await.unwrap();
    let runner = Runner::new(engine.clone());
    (dir, api::app(AppState::new(engine, runner)))
}

async fn body_json(res: axum::response::Response) -> Value {
    let bytes = axum::body::to_bytes(res.into_body(), 1 << 20).await.unwrap();
    serde_json::from_slice(&bytes).unwrap_or(Value::Null)
}

fn post_json(uri: &str, body: String) -> Request<Body> {
    Request::builder()
        .method(Method::POST)
        .uri(uri)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body))
        .unwrap()
}

/// A request whose body never arrives: it holds its slot until it is dropped or times out.
fn stalled(uri: &str) -> Request<Body> {
    let never = futures::stream::pending::<Result<bytes::Bytes, std::io::Error>>();
    Request::builder()
        .method(Method::POST)
        .uri(uri)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from_stream(never))
        .unwrap()
}

#[tokio::test]
async fn oversized_bodies_get_413_in_the_error_shape() {
    let (_dir, app) = app_with("max_body_bytes = 1024").await;
    let big = json!({ "query": "x".repeat(4000) }).to_string();
    let res = app.clone().oneshot(post_json("/v1/search", big)).await.unwrap();
    assert_eq!(res.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(body_json(res).await["error"]["code"], "payload_too_large");
    // Under the limit, the same route answers normally.
    let res = app.oneshot(post_json("/v1/search", json!({ "query": "x" }).to_string())).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
}

#[tokio::test]
async fn query_length_and_top_k_are_capped() {
    let (_dir, app) = app_with("max_query_bytes = 64\nmax_top_k = 20").await;
    for (body, expect) in [
        (json!({ "query": "a".repeat(65) }), StatusCode::BAD_REQUEST),
        (json!({ "query": "a".repeat(64) }), StatusCode::OK),
        (json!({ "query": "a", "top_k": 21 }), StatusCode::BAD_REQUEST),
        (json!({ "query": "a", "top_k": 0 }), StatusCode::BAD_REQUEST),
        (json!({ "query": "a", "top_k": 20 }), StatusCode::OK),
        (json!({ "query": "   " }), StatusCode::BAD_REQUEST),
        (json!({ "query": "a", "mode": "telepathic" }), StatusCode::BAD_REQUEST),
        (json!({ "query": "a", "surprise": 1 }), StatusCode::BAD_REQUEST),
    ] {
        let res = app.clone().oneshot(post_json("/v1/search", body.to_string())).await.unwrap();
        assert_eq!(res.status(), expect, "{body}");
        if expect == StatusCode::BAD_REQUEST {
            assert_eq!(body_json(res).await["error"]["code"], "bad_request", "{body}");
        }
    }
    let res = app.oneshot(post_json("/v1/search", "{not json".into())).await.unwrap();
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn requests_past_the_concurrency_limit_are_shed_with_retry_after() {
    let (_dir, app) = app_with("max_concurrent_requests = 1\nrequest_timeout_secs = 30").await;
    // Polled once, the stalled request passes the shedding layer, takes the only slot and
    // waits for its body.
    let mut holder = Box::pin(app.clone().oneshot(stalled("/v1/search")));
    assert!(futures::poll!(&mut holder).is_pending());
    let res = app.clone().oneshot(Request::get("/v1/projects").body(Body::empty()).unwrap()).await.unwrap();
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(res.headers().get(header::RETRY_AFTER).map(|v| v.to_str().unwrap()), Some("1"));
    assert_eq!(body_json(res).await["error"]["code"], "overloaded");
    drop(holder);
    // With the slot free again, requests are served.
    let res = app.oneshot(Request::get("/v1/projects").body(Body::empty()).unwrap()).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
}

#[tokio::test]
async fn a_request_past_its_deadline_times_out() {
    let (_dir, app) = app_with("request_timeout_secs = 1").await;
    let res = app.oneshot(stalled("/v1/search")).await.unwrap();
    assert_eq!(res.status(), StatusCode::GATEWAY_TIMEOUT);
    assert_eq!(body_json(res).await["error"]["code"], "timeout");
}

fn with_origin(origin: &str) -> Request<Body> {
    Request::get("/v1/projects").header(header::ORIGIN, origin).body(Body::empty()).unwrap()
}

#[tokio::test]
async fn cors_is_off_unless_origins_are_allowed() {
    let (_dir, app) = app_with("").await;
    let res = app.oneshot(with_origin("https://editor.example")).await.unwrap();
    assert!(res.headers().get(header::ACCESS_CONTROL_ALLOW_ORIGIN).is_none());

    let (_dir, app) = app_with("cors_origins = [\"https://editor.example\"]").await;
    let res = app.clone().oneshot(with_origin("https://editor.example")).await.unwrap();
    assert_eq!(
        res.headers().get(header::ACCESS_CONTROL_ALLOW_ORIGIN).map(|v| v.to_str().unwrap()),
        Some("https://editor.example")
    );
    let res = app.oneshot(with_origin("https://elsewhere.example")).await.unwrap();
    assert!(res.headers().get(header::ACCESS_CONTROL_ALLOW_ORIGIN).is_none());
}

#[tokio::test]
async fn every_response_carries_a_request_id() {
    let (_dir, app) = app_with("").await;
    let res = app.clone().oneshot(Request::get("/healthz").body(Body::empty()).unwrap()).await.unwrap();
    let id = res.headers().get("x-request-id").expect("a request id").to_str().unwrap().to_string();
    assert!(id.starts_with("req-"), "{id}");
    // A sane id from the client is kept, so logs on both sides line up; anything else is replaced.
    let res = app
        .clone()
        .oneshot(Request::get("/v1/nowhere").header("x-request-id", "editor-42").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    assert_eq!(res.headers().get("x-request-id").unwrap(), "editor-42");
    let res = app
        .oneshot(Request::get("/healthz").header("x-request-id", "a b\"c").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_ne!(res.headers().get("x-request-id").unwrap(), "a b\"c");
}
