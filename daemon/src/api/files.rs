//! What the indexer found, over HTTP: files, one file's symbols and imports, symbols by name,
//! the import graph, and chunks by id.

use axum::extract::State;
use serde::Deserialize;
use serde_json::{Value, json};

use super::runs::check_relative_path;
use super::{ApiError, ApiResult, AppState, Json, Path, Principal, Query, Scope};
use crate::store::{FileView, SearchScope, SymbolView};

fn file_json(f: &FileView) -> Value {
    let r = &f.file;
    json!({
        "id": f.id,
        "path": r.path,
        "language": r.language,
        "size": r.size,
        "line_count": r.line_count,
        "content_hash": r.content_hash,
        "binary": r.is_binary,
        "generated": r.is_generated,
        "skip_reason": r.skip_reason,
        "diagnostics": r.diagnostics_count,
        "indexed_at": f.indexed_at,
    })
}

fn symbol_json(s: &SymbolView) -> Value {
    json!({
        "id": s.id,
        "path": s.path,
        "name": s.name,
        "qualified_name": s.qualified_name,
        "kind": s.kind,
        "signature": s.signature,
        "start_line": s.start_line,
        "end_line": s.end_line,
        "exported": s.exported,
    })
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    after: Option<String>,
    limit: Option<i64>,
}

pub async fn list(
    State(state): State<AppState>,
    principal: Principal,
    Path(project_id): Path<i64>,
    Query(q): Query<ListQuery>,
) -> ApiResult<Json<Value>> {
    principal.check_project(&state.engine.store, project_id, Scope::Read).await?;
    let limit = q.limit.unwrap_or(100).clamp(1, 1000);
    let files = state.engine.store.list_files(project_id, q.after.as_deref(), limit).await?;
    let next = (files.len() as i64 == limit).then(|| files.last().map(|f| f.file.path.clone())).flatten();
    Ok(Json(json!({ "files": files.iter().map(file_json).collect::<Vec<_>>(), "next_after": next })))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PathQuery {
    path: String,
}

pub async fn detail(
    State(state): State<AppState>,
    principal: Principal,
    Path(project_id): Path<i64>,
    Query(q): Query<PathQuery>,
) -> ApiResult<Json<Value>> {
    principal.check_project(&state.engine.store, project_id, Scope::Read).await?;
    check_relative_path(&q.path)?;
    let store = &state.engine.store;
    let detail = store
        .file_detail(project_id, &q.path)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("file {:?}", q.path)))?;
    let importers = store.import_neighbours(project_id, &q.path, true, 1).await?;
    let mut out = file_json(&detail.file);
    out["symbols"] = detail.symbols.iter().map(symbol_json).collect();
    out["imports"] = detail
        .imports
        .iter()
        .map(|i| {
            json!({
                "specifier": i.specifier,
                "resolved_path": i.resolved_path,
                "external_package": i.external_package,
                "kind": i.kind,
                "names": i.names,
                "line": i.line,
            })
        })
        .collect();
    out["importers"] = importers.iter().map(|(p, _)| json!(p)).collect();
    Ok(Json(out))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SymbolQuery {
    q: String,
    kind: Option<String>,
    limit: Option<i64>,
}

pub async fn symbols(
    State(state): State<AppState>,
    principal: Principal,
    Path(project_id): Path<i64>,
    Query(q): Query<SymbolQuery>,
) -> ApiResult<Json<Value>> {
    principal.check_project(&state.engine.store, project_id, Scope::Read).await?;
    if q.q.trim().is_empty() || q.q.len() > 512 {
        return Err(ApiError::BadRequest("q must be 1 to 512 bytes".into()));
    }
    let kinds: Vec<String> = q.kind.into_iter().collect();
    crate::search::check_kinds(&kinds)?;
    let limit = q.limit.unwrap_or(50).clamp(1, 500);
    // The kind filter runs in the store, so matches of other kinds do not crowd out the ones
    // asked for.
    let scope = SearchScope { project_ids: vec![project_id], languages: Vec::new(), kinds };
    let found = state.engine.store.symbol_search(&q.q, &scope, limit).await?;
    let symbols: Vec<Value> = found.iter().map(symbol_json).collect();
    Ok(Json(json!({ "symbols": symbols })))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GraphQuery {
    path: String,
    /// `imports` (default) or `importers`.
    direction: Option<String>,
    depth: Option<u32>,
}

pub async fn graph(
    State(state): State<AppState>,
    principal: Principal,
    Path(project_id): Path<i64>,
    Query(q): Query<GraphQuery>,
) -> ApiResult<Json<Value>> {
    principal.check_project(&state.engine.store, project_id, Scope::Read).await?;
    check_relative_path(&q.path)?;
    let reverse = match q.direction.as_deref() {
        None | Some("imports") => false,
        Some("importers") => true,
        Some(other) => {
            return Err(ApiError::BadRequest(format!(
                "direction must be imports or importers, not {other:?}"
            )));
        }
    };
    let depth = q.depth.unwrap_or(1);
    if !(1..=10).contains(&depth) {
        return Err(ApiError::BadRequest("depth must be between 1 and 10".into()));
    }
    let store = &state.engine.store;
    if store.file_detail(project_id, &q.path).await?.is_none() {
        return Err(ApiError::NotFound(format!("file {:?}", q.path)));
    }
    let found = store.import_neighbours(project_id, &q.path, reverse, depth).await?;
    let nodes: Vec<Value> = found.iter().map(|(p, d)| json!({ "path": p, "depth": d })).collect();
    Ok(Json(json!({
        "path": q.path,
        "direction": if reverse { "importers" } else { "imports" },
        "files": nodes,
    })))
}

pub async fn chunk(
    State(state): State<AppState>,
    principal: Principal,
    Path(chunk_id): Path<i64>,
) -> ApiResult<Json<Value>> {
    let not_found = || ApiError::NotFound(format!("chunk {chunk_id}"));
    let store = &state.engine.store;
    let chunk = store.chunks(&[chunk_id]).await?.into_iter().next().ok_or_else(not_found)?;
    match principal.check_project(store, chunk.project_id, Scope::Read).await {
        Ok(_) => {}
        Err(ApiError::NotFound(_)) => return Err(not_found()),
        Err(e) => return Err(e),
    }
    // The chunk's vector under the configured model, if it has one yet, and how its text was
    // sent: whole, or split or truncated for being longer than the provider takes.
    let model = &state.engine.model;
    let embedding = store
        .embedding_input_modes(model.id, std::slice::from_ref(&chunk.content_hash))
        .await?
        .into_iter()
        .next()
        .map(|(_, mode)| json!({ "model": model.model, "dimensions": model.dimensions, "input_mode": mode.as_str() }));
    Ok(Json(json!({
        "id": chunk.id,
        "project": chunk.project,
        "project_id": chunk.project_id,
        "path": chunk.path,
        "ordinal": chunk.ordinal,
        "start_line": chunk.start_line,
        "end_line": chunk.end_line,
        "symbol_path": chunk.symbol_path,
        "kind": chunk.kind,
        "language": chunk.language,
        "token_count": chunk.token_count,
        "content_hash": chunk.content_hash,
        "content": chunk.content,
        "commit": chunk.commit_sha,
        "index_run_id": chunk.index_run_id,
        "embedding": embedding,
    })))
}
