//! Operations: settings reload (also on SIGHUP) and control of the evaluator
//! pool, behind the admin token.

use std::path::PathBuf;
use std::sync::{Mutex, OnceLock};

use axum::extract::State;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;

use super::AppState;
use super::codes::ErrorCode;
use super::error::ApiError;
use super::extract::Body;
use crate::actors::evaluator::PoolStatus;
use crate::reload::{self, Plan, ReloadError};
use crate::settings::Settings;
use crate::sync::Locked;

/// The settings in force, and where they came from.
pub struct Ops {
    current: Mutex<Settings>,
    source: Mutex<Option<(PathBuf, bool)>>,
    deliver: reload::Deliver,
    log_level: OnceLock<reload::SetLogLevel>,
}

impl Ops {
    /// `deliver` hands each reload to the services (see `app.rs`).
    pub fn new(settings: Settings, deliver: reload::Deliver) -> Self {
        Self {
            current: Mutex::new(settings),
            source: Mutex::new(None),
            deliver,
            log_level: OnceLock::new(),
        }
    }

    /// How a reload changes the log filter, once `main` has installed it.
    pub fn set_log_level_setter(&self, set: reload::SetLogLevel) {
        let _ = self.log_level.set(set);
    }

    /// Changes the log filter, if this process has one to change.
    pub fn set_log_level(&self, level: &str) -> Result<(), String> {
        match self.log_level.get() {
            Some(set) => set(level),
            None => Ok(()),
        }
    }

    /// The file a reload reads (with environment overrides on top);
    /// `required` makes a missing file an error.
    pub fn set_source(&self, path: PathBuf, required: bool) {
        *self.source.locked() = Some((path, required));
    }

    /// The settings in force, reloads included.
    pub fn settings(&self) -> Settings {
        self.current.locked().clone()
    }
}

/// The operations routes: reload, log level, stats.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/admin/reload", post(reload_route))
        .route("/api/v1/admin/pool", get(pool_status))
        .route("/api/v1/admin/pool/pause", post(pause))
        .route("/api/v1/admin/pool/resume", post(resume))
        .route("/api/v1/admin/pool/resize", post(resize))
}

/// Loads the settings source again and applies what can change at run time.
/// An invalid source changes nothing.
pub fn reload(app: &AppState) -> Result<Plan, ReloadError> {
    let source = app.ops.source.locked().clone();
    let (path, required) = source.unwrap_or_else(|| (PathBuf::from("config.toml"), false));
    let loaded = Settings::load(&path, required)?;
    let mut current = app.ops.current.locked();
    let (plan, effective) = reload::plan(&current, loaded);
    (app.ops.deliver)(&plan, &effective)?;
    if plan.touches("log.")
        && let Err(e) = app.ops.set_log_level(&effective.log.level)
    {
        tracing::warn!(error = %e, "log level not changed");
    }
    for change in &plan.applied {
        tracing::info!(key = change.key, from = %change.from, to = %change.to, "setting reloaded");
    }
    for change in &plan.restart_required {
        tracing::warn!(
            key = change.key,
            "setting changed in the file but needs a restart; left as it was"
        );
    }
    *current = effective;
    Ok(plan)
}

#[utoipa::path(
    post,
    path = "/api/v1/admin/reload",
    summary = "Reload settings (what changed, what needs a restart)",
    responses((status = 200, description = "ok"), crate::http::error::Failures),
    security(("bearer" = []))
)]
async fn reload_route(State(app): State<AppState>) -> Result<Json<Plan>, ApiError> {
    match reload(&app) {
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
