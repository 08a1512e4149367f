//! Authentication and authorization: who is calling, and what they may touch.
//!
//! With auth mode `none` (allowed only on loopback) every caller is [`Principal::Local`]. With
//! `token`, a route that needs a scope requires `Authorization: Bearer <secret>`; the secret's
//! blake3 hash is looked up, and the stored hash compared in constant time. Revoked and expired
//! tokens, and tokens of deactivated users, are refused like unknown ones (401), so a caller
//! learns nothing about which it was.
//!
//! The scope a route needs comes from the route table, enforced here once for every route.
//! Project access is checked by the handlers through [`Principal::project_ids`] and
//! [`Principal::check_project`]: a token tied to a user reaches the projects that user is a
//! member of, with the member's role capping the token's scopes; a service token (no user)
//! reaches every project within its scopes. A project the caller may not read is reported as
//! not found, never as forbidden, so its existence does not leak.

use std::collections::HashMap;
use std::sync::OnceLock;

use axum::extract::{FromRequestParts, MatchedPath, Request, State};
use axum::http::Method;
use axum::http::request::Parts;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::ops::RouteLabel;
use super::{ApiError, AppState};
use crate::config::AuthMode;
use crate::store::{Project, SharedStore};

/// What a token may do; each scope implies the ones below it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Scope {
    Read,
    Write,
    Admin,
}

impl Scope {
    pub fn name(self) -> &'static str {
        match self {
            Scope::Read => "read",
            Scope::Write => "write",
            Scope::Admin => "admin",
        }
    }

    pub fn parse(s: &str) -> Option<Scope> {
        [Scope::Read, Scope::Write, Scope::Admin].into_iter().find(|x| x.name() == s)
    }
}

/// The authenticated caller.
#[derive(Debug, Clone, PartialEq)]
pub enum Principal {
    /// Auth mode `none` on loopback: the local user, allowed everything.
    Local,
    Token {
        token_id: i64,
        user_id: Option<i64>,
        /// The highest scope the token carries.
        scope: Scope,
    },
}

impl Principal {
    fn scope(&self) -> Scope {
        match self {
            Principal::Local => Scope::Admin,
            Principal::Token { scope, .. } => *scope,
        }
    }

    /// The projects the caller may read: `None` for all of them.
    pub async fn project_ids(&self, store: &SharedStore) -> Result<Option<Vec<i64>>, ApiError> {
        match self {
            Principal::Local | Principal::Token { user_id: None, .. } => Ok(None),
            Principal::Token { user_id: Some(user), .. } => {
                Ok(Some(store.member_projects(*user).await?.into_iter().map(|(id, _)| id).collect()))
            }
        }
    }

    /// Refuses (403) a caller confined to some projects: global operations (users, tokens,
    /// registering projects, metrics) are for the local user, service tokens, and tokens of
    /// active users flagged admin. Otherwise a member's admin token could mint a service token
    /// or register projects beyond its reach.
    pub async fn check_global_admin(&self, store: &SharedStore) -> Result<(), ApiError> {
        match self {
            Principal::Local | Principal::Token { user_id: None, .. } => Ok(()),
            Principal::Token { user_id: Some(user), .. } => match store.user(*user).await? {
                Some(u) if u.is_admin && u.is_active => Ok(()),
                _ => Err(ApiError::Forbidden),
            },
        }
    }

    /// Loads a project the caller may act on with `scope`; one the caller may not even read
    /// is reported as not found.
    pub async fn check_project(
        &self,
        store: &SharedStore,
        project_id: i64,
        scope: Scope,
    ) -> Result<Project, ApiError> {
        let not_found = || ApiError::NotFound(format!("project {project_id}"));
        let project = store.project(project_id).await?.ok_or_else(not_found)?;
        match self {
            Principal::Local | Principal::Token { user_id: None, .. } => {}
            Principal::Token { user_id: Some(user), .. } => {
                let role = store
                    .member_projects(*user)
                    .await?
                    .into_iter()
                    .find(|(id, _)| *id == project_id)
                    .and_then(|(_, role)| Scope::parse(&role))
                    .ok_or_else(not_found)?;
                if role < scope {
                    return Err(ApiError::Forbidden);
                }
            }
        }
        if self.scope() < scope {
            return Err(ApiError::Forbidden);
        }
        Ok(project)
    }
}

impl FromRequestParts<AppState> for Principal {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &AppState) -> Result<Principal, ApiError> {
        parts.extensions.get::<Principal>().cloned().ok_or(ApiError::Unauthorized)
    }
}

/// The scope each (method, path) needs, from the route table.
fn route_scopes() -> &'static HashMap<(Method, &'static str), Option<Scope>> {
    static SCOPES: OnceLock<HashMap<(Method, &'static str), Option<Scope>>> = OnceLock::new();
    SCOPES.get_or_init(|| super::routes().into_iter().map(|r| ((r.method, r.path), r.scope)).collect())
}

/// Middleware run after routing: authenticates the caller, enforces the route's scope, and
/// labels the response with its route for the metrics.
pub async fn authenticate(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let path = request.extensions().get::<MatchedPath>().map(|p| p.as_str().to_string());
    let mut response = check(&state, path.as_deref(), request, next).await;
    if let Some(path) = path {
        response.extensions_mut().insert(RouteLabel(path));
    }
    response
}

async fn check(state: &AppState, path: Option<&str>, mut request: Request, next: Next) -> Response {
    let needed = path.and_then(|p| route_scopes().get(&(request.method().clone(), p)).copied().flatten());
    let Some(needed) = needed else { return next.run(request).await };
    let principal = match state.engine.config.server.auth {
        AuthMode::None => Principal::Local,
        AuthMode::Token => match bearer(&request) {
            None => return ApiError::Unauthorized.into_response(),
            Some(secret) => match token_principal(&state.engine.store, &secret).await {
                Ok(Some(p)) => p,
                Ok(None) => return ApiError::Unauthorized.into_response(),
                Err(e) => return e.into_response(),
            },
        },
    };
    if principal.scope() < needed {
        return ApiError::Forbidden.into_response();
    }
    request.extensions_mut().insert(principal);
    next.run(request).await
}

fn bearer(request: &Request) -> Option<String> {
    let value = request.headers().get(axum::http::header::AUTHORIZATION)?.to_str().ok()?;
    let (kind, secret) = value.split_once(' ')?;
    (kind.eq_ignore_ascii_case("bearer") && !secret.trim().is_empty()).then(|| secret.trim().to_string())
}

async fn token_principal(store: &SharedStore, secret: &str) -> Result<Option<Principal>, ApiError> {
    let computed = blake3::hash(secret.as_bytes());
    let Some(token) = store.token_by_hash(&computed.to_hex()).await? else { return Ok(None) };
    // blake3::Hash compares in constant time.
    let stored = blake3::Hash::from_hex(&token.token_hash).map_err(ApiError::internal)?;
    if stored != computed || token.revoked_at.is_some() {
        return Ok(None);
    }
    if token.expires_at.is_some_and(|at| at <= chrono::Utc::now()) {
        return Ok(None);
    }
    let Some(scope) = token.scopes.iter().filter_map(|s| Scope::parse(s)).max() else { return Ok(None) };
    // Last use is kept to the minute: a write per request would contend with indexing.
    if token.last_used_at.is_none_or(|at| chrono::Utc::now() - at > chrono::Duration::seconds(60))
        && let Err(e) = store.touch_token(token.id).await
    {
        tracing::warn!(token = token.id, error = %e, "could not record a token's use");
    }
    // A deactivated account keeps its tokens (reactivation restores them) but cannot use them.
    if let Some(user) = token.user_id
        && !store.user(user).await?.is_some_and(|u| u.is_active)
    {
        return Ok(None);
    }
    Ok(Some(Principal::Token { token_id: token.id, user_id: token.user_id, scope }))
}

/// The stored form of a token secret: lowercase hex of its blake3 hash.
pub fn hash_token(secret: &str) -> String {
    blake3::hash(secret.as_bytes()).to_hex().to_string()
}

/// A fresh token secret from the operating system's CSPRNG: `sdx_` and 64 hex digits.
pub fn new_token_secret() -> anyhow::Result<String> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| anyhow::anyhow!("no randomness available: {e}"))?;
    Ok(format!("sdx_{}", hex::encode(bytes)))
}
