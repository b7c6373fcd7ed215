//! Change requests (`/api/v1/changes`), and the hold every release, gray,
//! rollback, status change and plan start passes when its config requires
//! approvals.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use serde::Deserialize;
use serde_json::json;

use super::AppState;
use super::codes::ErrorCode;
use super::error::ApiError;
use super::extract::Body;
use super::roles::require;
use crate::domain::access::{Caller, Role};
use crate::domain::approval::{ChangeRequest, ChangeState, Proposal};
use crate::service::approvals::{Applied, ApprovalError, Details, Held};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/changes", get(list))
        .route("/api/v1/changes/{change_id}", get(details))
        .route("/api/v1/changes/{change_id}/approve", post(approve))
        .route("/api/v1/changes/{change_id}/reject", post(reject))
        .route("/api/v1/changes/{change_id}/cancel", post(cancel))
}

impl From<ApprovalError> for ApiError {
    fn from(e: ApprovalError) -> Self {
        let message = e.to_string();
        match e {
            ApprovalError::Release(e) => e.into(),
            ApprovalError::Plan(e) => e.into(),
            ApprovalError::NotYours(_) | ApprovalError::NotAuthor(_) => Self::forbidden(ErrorCode::FourEyes, message),
            ApprovalError::Role { .. } => Self::forbidden(ErrorCode::RoleRequired, message),
            ApprovalError::Reason => Self::unprocessable(ErrorCode::Invalid, message),
            ApprovalError::Stale(_) => Self::Conflict(message),
            ApprovalError::GateFailed(run) => Self::TestsFailed {
                message,
                results: serde_json::to_value(&run).unwrap_or_default(),
            },
        }
    }
}

/// `break_glass` and `reason`, beside a change's own fields.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Glass {
    /// An admin applies at once, past the config's approvals.
    #[serde(default)]
    pub break_glass: bool,
    /// Why (required with `break_glass`); the event records it.
    pub reason: Option<String>,
}

/// Where the caller's change goes: on as before (`None`), or a reply: 202
/// with the change request it now waits in, or (break glass) what applying
/// it gave, as `shown` renders it.
pub async fn hold(
    app: &AppState,
    config_id: &str,
    proposal: Proposal,
    who: &Caller,
    glass: Glass,
    shown: impl FnOnce(Applied) -> Response,
) -> Result<Option<Response>, ApiError> {
    let break_glass = match (glass.break_glass, glass.reason) {
        (true, reason) => {
            require(who, Role::Admin, config_id)?;
            Some(reason.unwrap_or_default())
        }
        (false, Some(_)) => {
            return Err(ApiError::unprocessable(
                ErrorCode::Invalid,
                "`reason` goes with `break_glass: true` (a rejection's reason goes to /api/v1/changes/{id}/reject)",
            ));
        }
        (false, None) => None,
    };
    Ok(match app.approvals.hold(config_id, proposal, who, break_glass).await? {
        Held::Proceed => None,
        Held::Opened(request) => {
            Some((StatusCode::ACCEPTED, Json(json!({ "change_request": request }))).into_response())
        }
        Held::Applied(applied) => Some(shown(*applied)),
    })
}

/// An optional body of only `break_glass` and `reason` (rollback, removing
/// gray): empty is none.
pub fn glass_of(bytes: &[u8]) -> Result<Glass, ApiError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(Glass::default());
    }
    let malformed =
        |e: serde_json::Error| ApiError::bad_request(ErrorCode::MalformedBody, format!("malformed JSON body: {e}"));
    match serde_json::from_slice(bytes).map_err(malformed)? {
        serde_json::Value::Null => Ok(Glass::default()),
        body @ serde_json::Value::Object(_) => serde_json::from_value(body).map_err(malformed),
        _ => Err(ApiError::bad_request(
            ErrorCode::MalformedBody,
            "the body must be a JSON object",
        )),
    }
}

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    /// Only this config's requests.
    config_id: Option<String>,
    /// `open`, `applied`, `rejected`, `cancelled` or `stale`.
    #[param(value_type = Option<ChangeState>)]
    state: Option<String>,
}

#[utoipa::path(
    get,
    path = "/api/v1/changes",
    summary = "Change requests the caller may see, newest first",
    params(ListQuery),
    responses((status = 200, description = "ok", body = [ChangeRequest]), crate::http::error::Failures),
    security(("bearer" = []))
)]
async fn list(
    State(app): State<AppState>,
    Extension(who): Extension<Caller>,
    Query(query): Query<ListQuery>,
) -> Result<Json<Vec<ChangeRequest>>, ApiError> {
    let state = match query.state.as_deref() {
        None => None,
        Some(name) => Some(ChangeState::parse(name).ok_or_else(|| {
            ApiError::bad_request(
                ErrorCode::InvalidQuery,
                format!("state: `{name}` is not one of open, applied, rejected, cancelled, stale"),
            )
        })?),
    };
    let config_id = query.config_id.as_deref().filter(|id| !id.is_empty());
    Ok(Json(app.approvals.list(&who, config_id, state).await?))
}

#[utoipa::path(
    get,
    path = "/api/v1/changes/{change_id}",
    summary = "A change request: what it would do (diffs) and its version's stored tests run now",
    params(("change_id" = String, Path, description = "change request id")),
    responses((status = 200, description = "ok", body = Details), crate::http::error::Failures),
    security(("bearer" = []))
)]
async fn details(
    State(app): State<AppState>,
    Extension(who): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<Json<Details>, ApiError> {
    Ok(Json(app.approvals.details(&id, &who).await?))
}

fn decided(applied: Applied) -> Json<serde_json::Value> {
    Json(json!({
        "change_request": applied.change_request,
        "config": applied.config,
        "plan": applied.plan,
    }))
}

#[utoipa::path(
    post,
    path = "/api/v1/changes/{change_id}/approve",
    summary = "Approve (not your own); the last approval runs the test gate and applies",
    params(("change_id" = String, Path, description = "change request id")),
    responses((status = 200, description = "{\"change_request\",\"config\",\"plan\"}"), crate::http::error::Failures),
    security(("bearer" = []))
)]
async fn approve(
    State(app): State<AppState>,
    Extension(who): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    Ok(decided(app.approvals.approve(&id, &who).await?))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct RejectBody {
    /// Why.
    reason: String,
}

#[utoipa::path(
    post,
    path = "/api/v1/changes/{change_id}/reject",
    summary = "Reject, with a reason",
    request_body = RejectBody,
    params(("change_id" = String, Path, description = "change request id")),
    responses((status = 200, description = "{\"change_request\"}"), crate::http::error::Failures),
    security(("bearer" = []))
)]
async fn reject(
    State(app): State<AppState>,
    Extension(who): Extension<Caller>,
    Path(id): Path<String>,
    Body(body): Body<RejectBody>,
) -> Result<Json<serde_json::Value>, ApiError> {
    Ok(decided(app.approvals.reject(&id, &who, body.reason).await?))
}

#[utoipa::path(
    post,
    path = "/api/v1/changes/{change_id}/cancel",
    summary = "Withdraw your own request",
    params(("change_id" = String, Path, description = "change request id")),
    responses((status = 200, description = "{\"change_request\"}"), crate::http::error::Failures),
    security(("bearer" = []))
)]
async fn cancel(
    State(app): State<AppState>,
    Extension(who): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    Ok(decided(app.approvals.cancel(&id, &who).await?))
}
