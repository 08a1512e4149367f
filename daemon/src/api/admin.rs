//! Accounts and access: users, bearer tokens (the secret is shown once, at creation) and project
//! members.
//!
//! Users and tokens are global: besides the `admin` scope the route table asks for, they need a
//! caller that is not confined to some projects (the local user, a service token, or a token of
//! a user flagged admin). Otherwise a user's admin token could mint a service token reaching
//! every project. Members are managed by whoever administers the project.

use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{
    AfterQuery, ApiError, ApiResult, AppState, BeforeQuery, Json, Path, Principal, Query, Scope, hash_token,
    new_token_secret,
};
use crate::store::{ApiToken, Member, NewToken, NewUser, User};

pub fn user_json(u: &User) -> Value {
    json!({
        "id": u.id,
        "email": u.email,
        "username": u.username,
        "display_name": u.display_name,
        "github_username": u.github_username,
        "is_active": u.is_active,
        "is_admin": u.is_admin,
        "preferences": u.preferences,
        "last_login_at": u.last_login_at,
        "created_at": u.created_at,
        "updated_at": u.updated_at,
    })
}

/// A token as listed: never its hash, and the secret only in the creation response.
pub fn token_json(t: &ApiToken) -> Value {
    json!({
        "id": t.id,
        "user_id": t.user_id,
        "name": t.name,
        "prefix": t.prefix,
        "scopes": t.scopes,
        "expires_at": t.expires_at,
        "last_used_at": t.last_used_at,
        "revoked_at": t.revoked_at,
        "created_at": t.created_at,
    })
}

fn member_json(m: &Member) -> Value {
    json!({ "project_id": m.project_id, "user_id": m.user_id, "role": m.role, "created_at": m.created_at })
}

async fn require_global_admin(state: &AppState, principal: &Principal) -> ApiResult<()> {
    principal.check_global_admin(&state.engine.store).await
}

// Users -------------------------------------------------------------------------------------

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateUser {
    email: String,
    username: String,
    display_name: Option<String>,
    github_username: Option<String>,
    is_active: Option<bool>,
    is_admin: Option<bool>,
    preferences: Option<Value>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateUser {
    email: Option<String>,
    username: Option<String>,
    #[serde(default, deserialize_with = "super::nullable")]
    display_name: Option<Option<String>>,
    #[serde(default, deserialize_with = "super::nullable")]
    github_username: Option<Option<String>>,
    is_active: Option<bool>,
    is_admin: Option<bool>,
    preferences: Option<Value>,
}

fn check_user(u: &NewUser) -> ApiResult<()> {
    let email_ok = (3..=320).contains(&u.email.chars().count())
        && u.email.split_once('@').is_some_and(|(a, b)| !a.is_empty() && !b.is_empty())
        && !u.email.chars().any(char::is_whitespace);
    if !email_ok {
        return Err(ApiError::BadRequest("email must be an address of 3 to 320 characters".into()));
    }
    if !name_ok(&u.username, 64) {
        return Err(ApiError::BadRequest("username must be 1 to 64 letters, digits, '-', '_' or '.'".into()));
    }
    if u.github_username.as_ref().is_some_and(|g| !name_ok(g, 39)) {
        return Err(ApiError::BadRequest("github_username must be 1 to 39 letters, digits or '-'".into()));
    }
    if u.display_name.as_ref().is_some_and(|d| d.chars().count() > 200 || d.contains('\0')) {
        return Err(ApiError::BadRequest("display_name must be at most 200 characters".into()));
    }
    if !u.preferences.is_object() {
        return Err(ApiError::BadRequest("preferences must be a JSON object".into()));
    }
    Ok(())
}

fn name_ok(name: &str, max: usize) -> bool {
    !name.is_empty()
        && name.chars().count() <= max
        && name.chars().all(|c| c.is_alphanumeric() || "-_.".contains(c))
}

pub async fn list_users(
    State(state): State<AppState>,
    principal: Principal,
    Query(q): Query<AfterQuery>,
) -> ApiResult<Json<Value>> {
    require_global_admin(&state, &principal).await?;
    let limit = q.limit.unwrap_or(100).clamp(1, 500);
    let users = state.engine.store.list_users(q.after, limit).await?;
    let next = (users.len() as i64 == limit).then(|| users.last().map(|u| u.id)).flatten();
    Ok(Json(json!({ "users": users.iter().map(user_json).collect::<Vec<_>>(), "next_after": next })))
}

pub async fn create_user(
    State(state): State<AppState>,
    principal: Principal,
    Json(body): Json<CreateUser>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    require_global_admin(&state, &principal).await?;
    let user = NewUser {
        email: body.email,
        username: body.username,
        display_name: body.display_name,
        github_username: body.github_username,
        is_active: body.is_active.unwrap_or(true),
        is_admin: body.is_admin.unwrap_or(false),
        preferences: body.preferences.unwrap_or_else(|| json!({})),
    };
    check_user(&user)?;
    let user = state.engine.store.create_user(user).await?;
    Ok((StatusCode::CREATED, Json(user_json(&user))))
}

async fn existing_user(state: &AppState, user_id: i64) -> ApiResult<User> {
    state.engine.store.user(user_id).await?.ok_or_else(|| ApiError::NotFound(format!("user {user_id}")))
}

pub async fn get_user(
    State(state): State<AppState>,
    principal: Principal,
    Path(user_id): Path<i64>,
) -> ApiResult<Json<Value>> {
    require_global_admin(&state, &principal).await?;
    Ok(Json(user_json(&existing_user(&state, user_id).await?)))
}

pub async fn update_user(
    State(state): State<AppState>,
    principal: Principal,
    Path(user_id): Path<i64>,
    Json(body): Json<UpdateUser>,
) -> ApiResult<Json<Value>> {
    require_global_admin(&state, &principal).await?;
    let current = existing_user(&state, user_id).await?;
    let update = NewUser {
        email: body.email.unwrap_or(current.email),
        username: body.username.unwrap_or(current.username),
        display_name: body.display_name.unwrap_or(current.display_name),
        github_username: body.github_username.unwrap_or(current.github_username),
        is_active: body.is_active.unwrap_or(current.is_active),
        is_admin: body.is_admin.unwrap_or(current.is_admin),
        preferences: body.preferences.unwrap_or(current.preferences),
    };
    check_user(&update)?;
    let user = state.engine.store.update_user(user_id, &update).await?;
    Ok(Json(user_json(&user)))
}

pub async fn delete_user(
    State(state): State<AppState>,
    principal: Principal,
    Path(user_id): Path<i64>,
) -> ApiResult<StatusCode> {
    require_global_admin(&state, &principal).await?;
    if state.engine.store.delete_user(user_id).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::NotFound(format!("user {user_id}")))
    }
}

// Tokens ------------------------------------------------------------------------------------

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateToken {
    name: String,
    /// `read`, `write`, `admin`; default `["read"]`.
    scopes: Option<Vec<String>>,
    /// The user the token acts for; absent for a service token.
    user_id: Option<i64>,
    /// RFC 3339; must be in the future.
    expires_at: Option<chrono::DateTime<chrono::Utc>>,
}

pub async fn list_tokens(
    State(state): State<AppState>,
    principal: Principal,
    Query(q): Query<BeforeQuery>,
) -> ApiResult<Json<Value>> {
    require_global_admin(&state, &principal).await?;
    let limit = q.limit.unwrap_or(100).clamp(1, 500);
    // Newest first; the table is small enough to page in memory.
    let tokens: Vec<ApiToken> = state
        .engine
        .store
        .list_tokens()
        .await?
        .into_iter()
        .filter(|t| q.before.is_none_or(|b| t.id < b))
        .take(limit as usize)
        .collect();
    let next = (tokens.len() as i64 == limit).then(|| tokens.last().map(|t| t.id)).flatten();
    Ok(Json(json!({ "tokens": tokens.iter().map(token_json).collect::<Vec<_>>(), "next_before": next })))
}

pub async fn create_token(
    State(state): State<AppState>,
    principal: Principal,
    Json(body): Json<CreateToken>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    require_global_admin(&state, &principal).await?;
    if body.name.trim().is_empty() || body.name.chars().count() > 200 || body.name.contains('\0') {
        return Err(ApiError::BadRequest("name must be 1 to 200 characters".into()));
    }
    let mut scopes = body.scopes.unwrap_or_else(|| vec!["read".into()]);
    if scopes.is_empty() || scopes.iter().any(|s| Scope::parse(s).is_none()) {
        return Err(ApiError::BadRequest("scopes must be a non-empty list of read, write, admin".into()));
    }
    scopes.sort_by_key(|s| Scope::parse(s));
    scopes.dedup();
    if body.expires_at.is_some_and(|at| at <= chrono::Utc::now()) {
        return Err(ApiError::BadRequest("expires_at must be in the future".into()));
    }
    if let Some(user) = body.user_id {
        existing_user(&state, user).await?;
    }
    let secret = new_token_secret().map_err(ApiError::internal)?;
    let token = state
        .engine
        .store
        .create_token(NewToken {
            user_id: body.user_id,
            name: body.name,
            token_hash: hash_token(&secret),
            prefix: secret[..8].to_string(),
            scopes,
            expires_at: body.expires_at,
        })
        .await?;
    Ok((StatusCode::CREATED, Json(json!({ "token": token_json(&token), "secret": secret }))))
}

pub async fn revoke_token(
    State(state): State<AppState>,
    principal: Principal,
    Path(token_id): Path<i64>,
) -> ApiResult<Json<Value>> {
    require_global_admin(&state, &principal).await?;
    let store = &state.engine.store;
    let not_found = || ApiError::NotFound(format!("token {token_id}"));
    let token = store.token(token_id).await?.ok_or_else(not_found)?;
    if token.revoked_at.is_some() || !store.revoke_token(token_id).await? {
        return Err(ApiError::Conflict(format!("token {token_id} is already revoked")));
    }
    let token = store.token(token_id).await?.ok_or_else(not_found)?;
    Ok(Json(token_json(&token)))
}

// Members -----------------------------------------------------------------------------------

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetMember {
    user_id: i64,
    /// `read` (default), `write` or `admin`.
    role: Option<String>,
}

pub async fn list_members(
    State(state): State<AppState>,
    principal: Principal,
    Path(project_id): Path<i64>,
) -> ApiResult<Json<Value>> {
    principal.check_project(&state.engine.store, project_id, Scope::Admin).await?;
    let members = state.engine.store.list_members(project_id).await?;
    Ok(Json(json!({ "members": members.iter().map(member_json).collect::<Vec<_>>() })))
}

pub async fn set_member(
    State(state): State<AppState>,
    principal: Principal,
    Path(project_id): Path<i64>,
    Json(body): Json<SetMember>,
) -> ApiResult<Json<Value>> {
    principal.check_project(&state.engine.store, project_id, Scope::Admin).await?;
    let role = body.role.unwrap_or_else(|| "read".into());
    if Scope::parse(&role).is_none() {
        return Err(ApiError::BadRequest("role must be read, write or admin".into()));
    }
    existing_user(&state, body.user_id).await?;
    let member = state.engine.store.set_member(project_id, body.user_id, &role).await?;
    Ok(Json(member_json(&member)))
}

pub async fn remove_member(
    State(state): State<AppState>,
    principal: Principal,
    Path((project_id, user_id)): Path<(i64, i64)>,
) -> ApiResult<StatusCode> {
    principal.check_project(&state.engine.store, project_id, Scope::Admin).await?;
    if state.engine.store.remove_member(project_id, user_id).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::NotFound(format!("member {user_id} of project {project_id}")))
    }
}
