//! The request bodies of the OpenAPI document: one JSON schema per route that reads a body.
//! Every body struct rejects unknown fields; the API tests check that the bodies they send use
//! only documented properties and carry every required one.

use axum::http::Method;
use serde_json::{Value, json};

fn object(required: &[&str], properties: Value) -> Value {
    json!({ "type": "object", "additionalProperties": false, "required": required, "properties": properties })
}

const STRING: &str = "string";

fn t(kind: &str) -> Value {
    json!({ "type": kind })
}

fn nullable(kind: &str) -> Value {
    json!({ "type": [kind, "null"] })
}

fn strings() -> Value {
    json!({ "type": "array", "items": { "type": STRING } })
}

/// The JSON schema of the body `method path` reads, if it reads one.
pub fn request_body(method: &Method, path: &str) -> Option<Value> {
    let any = json!({});
    Some(match (method.as_str(), path) {
        ("POST", "/v1/projects") => object(
            &["name"],
            json!({
                "name": t(STRING), "root_path": t(STRING), "repository_url": t(STRING),
                "default_branch": t(STRING), "settings": t("object"), "index": t("boolean"),
            }),
        ),
        ("PATCH", "/v1/projects/{project_id}") => object(
            &[],
            json!({
                "name": t(STRING), "repository_url": nullable(STRING), "default_branch": nullable(STRING),
                "settings": t("object"),
            }),
        ),
        ("POST", "/v1/projects/{project_id}/runs") => object(&[], json!({ "paths": strings() })),
        ("POST", "/v1/search") => object(
            &["query"],
            json!({
                "query": t(STRING),
                "projects": { "type": "array", "items": { "type": ["integer", "string"] } },
                "top_k": t("integer"),
                "mode": { "type": STRING, "enum": ["hybrid", "semantic", "lexical", "symbol"] },
                "filters": object(&[], json!({
                    "path_include": strings(), "path_exclude": strings(), "languages": strings(),
                    "kinds": {
                        "type": "array",
                        "items": { "type": STRING, "enum": crate::search::symbol_kinds() },
                    },
                })),
                "expand": object(&[], json!({
                    "imports": t("boolean"), "importers": t("boolean"), "decay": t("number"),
                })),
                "explain": t("boolean"),
                "weights": object(&[], json!({
                    "dense": t("number"), "lexical": t("number"), "symbol": t("number"),
                })),
                "rrf_k": t("number"),
                "max_per_file": t("integer"),
            }),
        ),
        ("POST", "/v1/hooks/git") => object(
            &["repo", "hook", "new", "changes"],
            json!({
                "repo": t(STRING), "hook": t(STRING), "old": nullable(STRING), "new": t(STRING),
                "branch": nullable(STRING),
                "changes": { "type": "array", "items": object(&["status", "path"], json!({
                    "status": t(STRING), "path": t(STRING), "from": nullable(STRING),
                })) },
            }),
        ),
        ("POST", "/v1/users") => object(
            &["email", "username"],
            json!({
                "email": t(STRING), "username": t(STRING), "display_name": t(STRING),
                "github_username": t(STRING), "is_active": t("boolean"), "is_admin": t("boolean"),
                "preferences": t("object"),
            }),
        ),
        ("PATCH", "/v1/users/{user_id}") => object(
            &[],
            json!({
                "email": t(STRING), "username": t(STRING), "display_name": nullable(STRING),
                "github_username": nullable(STRING), "is_active": t("boolean"), "is_admin": t("boolean"),
                "preferences": t("object"),
            }),
        ),
        ("POST", "/v1/tokens") => object(
            &["name"],
            json!({
                "name": t(STRING), "scopes": strings(), "user_id": t("integer"),
                "expires_at": { "type": STRING, "format": "date-time" },
            }),
        ),
        ("POST", "/v1/projects/{project_id}/members") => {
            object(&["user_id"], json!({ "user_id": t("integer"), "role": t(STRING) }))
        }
        ("POST", "/v1/projects/{project_id}/tasks") => object(
            &["title"],
            json!({
                "title": t(STRING), "description": t(STRING), "status": t(STRING), "priority": t("integer"),
                "parent_id": t("integer"), "assigned_agent_id": t("integer"),
            }),
        ),
        ("PATCH", "/v1/tasks/{task_id}") => object(
            &[],
            json!({
                "title": t(STRING), "description": t(STRING), "status": t(STRING), "priority": t("integer"),
                "assigned_agent_id": nullable("integer"),
            }),
        ),
        ("POST", "/v1/agents") => object(
            &["name"],
            json!({
                "name": t(STRING), "kind": t(STRING), "model": t(STRING), "config": t("object"),
                "is_active": t("boolean"),
            }),
        ),
        ("PATCH", "/v1/agents/{agent_id}") => object(
            &[],
            json!({
                "name": t(STRING), "kind": t(STRING), "model": nullable(STRING), "config": t("object"),
                "is_active": t("boolean"),
            }),
        ),
        ("POST", "/v1/tasks/{task_id}/executions") => object(
            &[],
            json!({
                "agent_id": t("integer"), "status": t(STRING), "input_tokens": t("integer"),
                "output_tokens": t("integer"), "cost_usd": t("number"), "duration_ms": t("integer"),
                "error": t(STRING),
            }),
        ),
        ("PATCH", "/v1/executions/{execution_id}") => object(
            &[],
            json!({
                "status": t(STRING), "input_tokens": t("integer"), "output_tokens": t("integer"),
                "cost_usd": t("number"), "duration_ms": nullable("integer"), "error": nullable(STRING),
            }),
        ),
        ("POST", "/v1/projects/{project_id}/reviews") => object(
            &["commit_id"],
            json!({
                "commit_id": t("integer"), "reviewer_agent_id": t("integer"), "reviewer_user_id": t("integer"),
                "score": t("integer"), "summary": t(STRING), "issues": any, "suggestions": any,
            }),
        ),
        _ => return None,
    })
}
