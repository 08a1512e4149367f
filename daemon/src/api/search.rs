//! `POST /v1/search`: the search request and response of the search issue, limited to the
//! projects the caller may read (the filter goes into the query itself).

use axum::extract::State;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{ApiError, ApiResult, AppState, Json, Principal};
use crate::search::{self, Expansion, Mode, SearchRequest, SearchResponse, Weights};

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum ProjectRef {
    Id(i64),
    Name(String),
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Filters {
    #[serde(default)]
    path_include: Vec<String>,
    #[serde(default)]
    path_exclude: Vec<String>,
    #[serde(default)]
    languages: Vec<String>,
    /// Symbol kinds as the indexer names them (`function`, `class`, ...).
    #[serde(default)]
    kinds: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ExpandRequest {
    #[serde(default)]
    imports: bool,
    #[serde(default)]
    importers: bool,
    decay: Option<f64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct WeightsRequest {
    dense: Option<f64>,
    lexical: Option<f64>,
    symbol: Option<f64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SearchBody {
    query: String,
    /// Project ids or names; all readable projects when absent.
    projects: Option<Vec<ProjectRef>>,
    top_k: Option<usize>,
    mode: Option<String>,
    #[serde(default)]
    filters: Filters,
    expand: Option<ExpandRequest>,
    #[serde(default)]
    explain: bool,
    weights: Option<WeightsRequest>,
    rrf_k: Option<f64>,
    max_per_file: Option<usize>,
}

pub async fn search(
    State(state): State<AppState>,
    principal: Principal,
    Json(body): Json<SearchBody>,
) -> ApiResult<Json<Value>> {
    let server = &state.engine.config.server;
    if body.query.trim().is_empty() {
        return Err(ApiError::BadRequest("query must not be empty".into()));
    }
    if body.query.len() > server.max_query_bytes {
        return Err(ApiError::BadRequest(format!("query longer than {} bytes", server.max_query_bytes)));
    }
    let top_k = body.top_k.unwrap_or(10);
    if top_k == 0 || top_k > server.max_top_k {
        return Err(ApiError::BadRequest(format!("top_k must be between 1 and {}", server.max_top_k)));
    }
    let mode = match body.mode.as_deref() {
        None => Mode::Hybrid,
        Some(m) => Mode::parse(m).ok_or_else(|| {
            ApiError::BadRequest(format!("unknown mode {m:?} (expected hybrid, semantic, lexical or symbol)"))
        })?,
    };
    // Before the projects are resolved, so an unknown kind is refused even where nothing is
    // readable.
    search::check_kinds(&body.filters.kinds)?;
    let store = &state.engine.store;
    let allowed = principal.project_ids(store).await?;
    let all = store.list_projects().await?;
    let readable: Vec<&crate::store::Project> =
        all.iter().filter(|p| allowed.as_ref().is_none_or(|ids| ids.contains(&p.id))).collect();
    let project_ids: Vec<i64> = match &body.projects {
        None => readable.iter().map(|p| p.id).collect(),
        Some(refs) => {
            let mut ids = Vec::new();
            for r in refs {
                let found = readable.iter().find(|p| match r {
                    ProjectRef::Id(id) => p.id == *id,
                    ProjectRef::Name(name) => &p.name == name,
                });
                match found {
                    Some(p) => ids.push(p.id),
                    // The same answer whether the project is missing or not the caller's.
                    None => {
                        let what = match r {
                            ProjectRef::Id(id) => id.to_string(),
                            ProjectRef::Name(name) => format!("{name:?}"),
                        };
                        return Err(ApiError::NotFound(format!("project {what}")));
                    }
                }
            }
            ids
        }
    };
    if project_ids.is_empty() {
        return Ok(Json(json!({ "results": [] })));
    }
    let mut req = SearchRequest::new(body.query, project_ids);
    req.top_k = top_k;
    req.mode = mode;
    req.path_include = body.filters.path_include;
    req.path_exclude = body.filters.path_exclude;
    req.languages = body.filters.languages;
    req.kinds = body.filters.kinds;
    req.explain = body.explain;
    if let Some(e) = body.expand {
        let decay = e.decay.unwrap_or(0.5);
        if !(0.0..=1.0).contains(&decay) {
            return Err(ApiError::BadRequest("expand.decay must be between 0 and 1".into()));
        }
        req.expand = Some(Expansion { imports: e.imports, importers: e.importers, decay });
    }
    if let Some(w) = body.weights {
        let d = Weights::default();
        req.weights = Weights {
            dense: w.dense.unwrap_or(d.dense),
            lexical: w.lexical.unwrap_or(d.lexical),
            symbol: w.symbol.unwrap_or(d.symbol),
        };
        let all = [req.weights.dense, req.weights.lexical, req.weights.symbol];
        if all.iter().any(|x| !x.is_finite() || *x < 0.0 || *x > 100.0) {
            return Err(ApiError::BadRequest("weights must be between 0 and 100".into()));
        }
    }
    if let Some(k) = body.rrf_k {
        if !k.is_finite() || !(1.0..=10_000.0).contains(&k) {
            return Err(ApiError::BadRequest("rrf_k must be between 1 and 10000".into()));
        }
        req.rrf_k = k;
    }
    if let Some(n) = body.max_per_file {
        req.max_per_file = n.clamp(1, 1000);
    }
    let response = search::search(&state.engine, &req).await?;
    Ok(Json(response_json(&response, req.explain)))
}

/// The search response in the contract's shape, shared by the API and `semdex search --json`.
pub fn response_json(response: &SearchResponse, explain: bool) -> Value {
    let results: Vec<Value> = response
        .results
        .iter()
        .map(|h| {
            let mut v = json!({
                "project": h.chunk.project,
                "path": h.chunk.path,
                "start_line": h.start_line,
                "end_line": h.end_line,
                "symbol_path": h.chunk.symbol_path,
                "language": h.chunk.language,
                "score": h.score,
                "snippet": h.snippet,
                "highlights": h.highlights.iter().map(|(l, s, e)| [l, s, e]).collect::<Vec<_>>(),
                "chunk_id": h.chunk.id,
                "commit": h.chunk.commit_sha,
                "index_run_id": h.chunk.index_run_id,
            });
            if explain {
                v["signals"] = serde_json::to_value(&h.signals).unwrap_or_default();
            }
            v
        })
        .collect();
    let mut out = json!({ "results": results });
    if let Some(d) = &response.degraded {
        out["degraded"] = json!(d);
    }
    out
}
