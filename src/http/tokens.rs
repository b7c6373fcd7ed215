//! API tokens made at run time (`/api/v1/tokens`), and `GET /api/v1/me`:
//! who the caller is and what they may do, for the console to show only that
//! (and, in a console session, the CSRF token its writes carry).

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{delete, get, post};
use axum::{Extension, Json, Router};
use serde::{Deserialize, Serialize};

use super::AppState;
use super::auth::SessionCsrf;
use super::codes::ErrorCode;
use super::error::ApiError;
use super::extract::Body;
use crate::domain::access::{ApiToken, Caller, Grant, Role, check_patterns};
use crate::domain::model::{now_millis, validate_new_config_id};
use crate::store::NewToken;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/tokens", post(create).get(list))
        .route("/api/v1/tokens/{name}", delete(remove))
        .route("/api/v1/me", get(me))
        .route("/api/v1/sessions", delete(end_sessions))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct NewTokenBody {
    /// Unique; letters, digits, `-`, `_`, `.`; 1 to 128 of them.
    name: String,
    /// `viewer`, `editor`, `publisher` or `admin`.
    role: String,
    /// Config-id patterns: `*`, `app-*`, `banner`.
    configs: Vec<String>,
    /// Unix milliseconds after which the token is refused; none: never.
    #[serde(default, deserialize_with = "crate::domain::whole::maybe_whole")]
    expires_at: Option<i64>,
}

fn invalid(field: &str, problem: impl std::fmt::Display) -> ApiError {
    ApiError::unprocessable(ErrorCode::Invalid, format!("{field}: {problem}"))
}

#[utoipa::path(
    post,
    path = "/api/v1/tokens",
    summary = "Make an API token (shown once)",
    request_body = NewTokenBody,
    responses((status = 201, description = "ok; `token` is the value, shown only here"), crate::http::error::Failures),
    security(("bearer" = []))
)]
async fn create(
    State(app): State<AppState>,
    Extension(who): Extension<Caller>,
    Body(body): Body<NewTokenBody>,
) -> Result<(StatusCode, Json<serde_json::Value>), ApiError> {
    if validate_new_config_id(&body.name).is_err() {
        return Err(invalid(
            "name",
            "must be 1 to 128 letters, digits, `-`, `_` and `.`, and not `.` or `..`",
        ));
    }
    // Names differing only in case read as one person in the release log.
    let same = |name: &str| name.eq_ignore_ascii_case(&body.name);
    if let Some(taken) = app.auth.admin_tokens.names().find(|n| same(n)) {
        let message = format!("token `{taken}` already exists (in auth.admin_tokens)");
        return Err(ApiError::Conflict(message));
    }
    if let Some(taken) = app.auth.store.list_tokens().await?.into_iter().find(|t| same(&t.name)) {
        return Err(ApiError::Conflict(format!("token `{}` already exists", taken.name)));
    }
    let role = Role::parse(&body.role).ok_or_else(|| {
        invalid(
            "role",
            format!("unknown role `{}`; one of viewer, editor, publisher, admin", body.role),
        )
    })?;
    check_patterns(&body.configs).map_err(|e| invalid("configs", e))?;
    let now = now_millis();
    if body.expires_at.is_some_and(|at| at <= now) {
        return Err(invalid("expires_at", "is not in the future (unix milliseconds)"));
    }
    let value = format!("vane_{}", crate::secrets::random_token());
    let token = ApiToken {
        name: body.name,
        role,
        configs: body.configs,
        expires_at: body.expires_at,
        created_by: who.who,
        created_at: now,
    };
    let hash = super::auth::token_hash(&value);
    let token = app.auth.store.create_token(NewToken { token, hash }).await?;
    let mut shown = serde_json::to_value(&token).map_err(|e| ApiError::Internal(e.to_string()))?;
    shown["token"] = value.into();
    Ok((StatusCode::CREATED, Json(shown)))
}

#[utoipa::path(
    get,
    path = "/api/v1/tokens",
    summary = "List API tokens (never their values)",
    responses((status = 200, description = "ok", body = [ApiToken]), crate::http::error::Failures),
    security(("bearer" = []))
)]
async fn list(State(app): State<AppState>) -> Result<Json<Vec<ApiToken>>, ApiError> {
    Ok(Json(app.auth.store.list_tokens().await?))
}

#[utoipa::path(
    delete,
    path = "/api/v1/tokens/{name}",
    summary = "Delete an API token; refused on every node at once",
    responses((status = 204, description = "deleted"), crate::http::error::Failures),
    params(("name" = String, Path, description = "token name")),
    security(("bearer" = []))
)]
async fn remove(State(app): State<AppState>, Path(name): Path<String>) -> Result<StatusCode, ApiError> {
    if app.auth.admin_tokens.names().any(|n| n == name) {
        return Err(ApiError::Conflict(format!(
            "token `{name}` is in the settings (auth.admin_tokens): remove it there and reload"
        )));
    }
    app.auth.store.delete_token(&name).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Who the caller is.
#[derive(Serialize, utoipa::ToSchema)]
struct Me {
    /// What the release log records for them.
    who: String,
    /// What they may do.
    grants: Vec<Grant>,
    /// For a console session (not a bearer token): the token every write
    /// must carry as `X-CSRF-Token`.
    #[serde(skip_serializing_if = "Option::is_none")]
    csrf: Option<String>,
}

#[utoipa::path(
    get,
    path = "/api/v1/me",
    summary = "Who the caller is and what they may do",
    responses((status = 200, description = "ok", body = Me), crate::http::error::Failures),
    security(("bearer" = []))
)]
async fn me(Extension(who): Extension<Caller>, csrf: Option<Extension<SessionCsrf>>) -> Json<Me> {
    Json(Me {
        who: who.who,
        grants: who.grants,
        csrf: csrf.map(|Extension(SessionCsrf(csrf))| csrf),
    })
}

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
struct EndQuery {
    /// Only this person's sessions (`oidc:<email or subject>`); none: all.
    who: Option<String>,
}

#[utoipa::path(
    delete,
    path = "/api/v1/sessions",
    summary = "End console sessions (a person's, or all), on every node at once",
    params(EndQuery),
    responses((status = 200, description = "{\"ended\": n}"), crate::http::error::Failures),
    security(("bearer" = []))
)]
async fn end_sessions(
    State(app): State<AppState>,
    axum::extract::Query(query): axum::extract::Query<EndQuery>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let who = query.who.filter(|w| !w.is_empty());
    let ended = app.auth.store.end_sessions(who.as_deref()).await?;
    Ok(Json(serde_json::json!({ "ended": ended })))
}
