//! Operations routes, behind the admin token: settings reload (the work is
//! `crate::reload::Reloader`'s; SIGHUP calls it too) and control of the
//! evaluator pool.

use axum::extract::State;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;

use super::AppState;
use super::codes::ErrorCode;
use super::error::ApiError;
use super::extract::Body;
use crate::actors::evaluator::PoolStatus;
use crate::reload::{ReloadError, ReloadPlan};

/// The operations routes: reload, log level, stats.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/admin/reload", post(reload_route))
        .route("/api/v1/admin/pool", get(pool_status))
        .route("/api/v1/admin/pool/pause", post(pause))
        .route("/api/v1/admin/pool/resume", post(resume))
        .route("/api/v1/admin/pool/resize", post(resize))
}

#[utoipa::path(
    post,
    path = "/api/v1/admin/reload",
    summary = "Reload settings (what changed, what needs a restart)",
    responses((status = 200, description = "ok"), crate::http::error::Failures),
    security(("bearer" = []))
)]
async fn reload_route(State(app): State<AppState>) -> Result<Json<ReloadPlan>, ApiError> {
    match app.reloader.reload() {
        Ok(plan) => Ok(Json(plan)),
        Err(e @ ReloadError::Settings(_)) => {
            tracing::warn!(error = %e, "reload refused; settings unchanged");
            Err(ApiError::unprocessable(ErrorCode::InvalidSettings, e.to_string()))
        }
        Err(e @ ReloadError::NotTaken { service, .. }) => Err(ApiError::Down {
            what: service,
            detail: e.to_string(),
        }),
    }
}

#[utoipa::path(
    get,
    path = "/api/v1/admin/pool",
    summary = "Evaluator pool status",
    responses((status = 200, description = "ok"), crate::http::error::Failures),
    security(("bearer" = []))
)]
async fn pool_status(State(app): State<AppState>) -> Result<Json<PoolStatus>, ApiError> {
    Ok(Json(app.pool.status().await?))
}

#[utoipa::path(
    post,
    path = "/api/v1/admin/pool/pause",
    summary = "Pause the pool",
    responses((status = 200, description = "ok"), crate::http::error::Failures),
    security(("bearer" = []))
)]
async fn pause(State(app): State<AppState>) -> Result<Json<PoolStatus>, ApiError> {
    app.pool.pause();
    pool_status(State(app)).await
}

#[utoipa::path(
    post,
    path = "/api/v1/admin/pool/resume",
    summary = "Resume the pool",
    responses((status = 200, description = "ok"), crate::http::error::Failures),
    security(("bearer" = []))
)]
async fn resume(State(app): State<AppState>) -> Result<Json<PoolStatus>, ApiError> {
    app.pool.resume();
    pool_status(State(app)).await
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct ResizeBody {
    workers: usize,
}

#[utoipa::path(
    post,
    path = "/api/v1/admin/pool/resize",
    summary = "Resize the pool",
    request_body = ResizeBody,
    responses((status = 200, description = "ok"), crate::http::error::Failures),
    security(("bearer" = []))
)]
async fn resize(State(app): State<AppState>, Body(body): Body<ResizeBody>) -> Result<Json<PoolStatus>, ApiError> {
    if !(1..=1024).contains(&body.workers) {
        return Err(ApiError::unprocessable(
            ErrorCode::Invalid,
            "`workers` must be between 1 and 1024",
        ));
    }
    app.pool.resize(body.workers)?;
    pool_status(State(app)).await
}
