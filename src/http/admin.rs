//! Admin routes under `/api/v1/configs`, behind bearer tokens.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use serde::Deserialize;

use super::AppState;
use super::changes::{Glass, glass_of, hold};
use super::codes::ErrorCode;
use super::error::ApiError;
use super::extract::Body;
use super::roles::require;
use crate::domain::access::{Caller, Role};
use crate::domain::approval::Proposal;
use crate::domain::change::Change;
use crate::domain::model::ReleaseEvent;
use crate::domain::{Config, ConfigStatus, Lang, Version};
use crate::service::approvals::Applied;
use crate::service::releases::VersionUpload;
use axum::body::Bytes;
use axum::response::{IntoResponse, Response};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/configs", post(create_config).get(list_configs))
        .route("/api/v1/configs/{config_id}", get(get_config).patch(update_config))
        .route(
            "/api/v1/configs/{config_id}/versions",
            post(create_version).get(list_versions),
        )
        .route("/api/v1/configs/{config_id}/versions/{code_id}", get(get_version))
        .route("/api/v1/configs/{config_id}/release", post(release))
        .route("/api/v1/configs/{config_id}/gray", post(set_gray).delete(remove_gray))
        .route("/api/v1/configs/{config_id}/rollback", post(rollback))
        .route("/api/v1/configs/{config_id}/secret/rotate", post(rotate_secret))
        .route(
            "/api/v1/configs/{config_id}/versions/{code_id}/broken",
            post(mark_broken).delete(clear_broken),
        )
        .route("/api/v1/configs/{config_id}/events", get(list_events))
}

type Reply<T> = Result<Json<T>, ApiError>;

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct NewConfigBody {
    /// Letters, digits, `-`, `_`, `.`; 1 to 128 of them.
    #[schema(pattern = r"^[A-Za-z0-9._-]{1,128}$", min_length = 1, max_length = 128)]
    id: String,
    #[serde(default)]
    description: String,
}

#[utoipa::path(
    post,
    path = "/api/v1/configs",
    summary = "Create a config",
    request_body = NewConfigBody,
    responses((status = 201, description = "ok"), crate::http::error::Failures),
    security(("bearer" = []))
)]
async fn create_config(
    State(app): State<AppState>,
    Extension(who): Extension<Caller>,
    Body(body): Body<NewConfigBody>,
) -> Result<(StatusCode, Json<Config>), ApiError> {
    require(&who, Role::Editor, &body.id)?;
    let config = app.releases.create_config(body.id, body.description, &who.who).await?;
    Ok((StatusCode::CREATED, Json(config)))
}

#[utoipa::path(
    get,
    path = "/api/v1/configs",
    summary = "List configs",
    responses((status = 200, description = "ok"), crate::http::error::Failures),
    security(("bearer" = []))
)]
async fn list_configs(State(app): State<AppState>, Extension(who): Extension<Caller>) -> Reply<Vec<Config>> {
    let configs = app.releases.configs().await?;
    Ok(Json(
        configs
            .into_iter()
            .filter(|c| who.may(Role::Viewer, &c.id))
            .map(|c| shown(&who, c))
            .collect(),
    ))
}

/// The config as `who` may see it: its secrets only for editors and above.
fn shown(who: &Caller, mut config: Config) -> Config {
    if !who.may(Role::Editor, &config.id) {
        config.secret = String::new();
        config.previous_secret = None;
        config.previous_secret_until = 0;
        config.previous_secrets.clear();
    }
    config
}

#[utoipa::path(
    get,
    path = "/api/v1/configs/{config_id}",
    summary = "Get a config",
    responses((status = 200, description = "ok"), crate::http::error::Failures),
    params(("config_id" = String, Path, description = "config id")),
    security(("bearer" = []))
)]
async fn get_config(
    State(app): State<AppState>,
    Extension(who): Extension<Caller>,
    Path(config_id): Path<String>,
) -> Reply<Config> {
    Ok(Json(shown(&who, app.releases.config(&config_id).await?)))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct UpdateConfigBody {
    #[schema(value_type = Option<crate::http::schema::StatusName>)]
    status: Option<ConfigStatus>,
    description: Option<String>,
    /// Approvals a release, gray, rollback, status change or plan start
    /// needs (0: none); admins only.
    #[schema(minimum = 0, maximum = 10)]
    #[serde(default, deserialize_with = "crate::domain::whole::maybe_whole")]
    approvals_required: Option<i64>,
    #[serde(default)]
    break_glass: bool,
    reason: Option<String>,
}

/// The most approvals a config may require: more people than a team has
/// would hold every change forever.
const MOST_APPROVALS: u32 = 10;

#[utoipa::path(
    patch,
    path = "/api/v1/configs/{config_id}",
    summary = "Change status or description",
    request_body = UpdateConfigBody,
    responses((status = 200, description = "ok"), (status = 202, description = "a status change held for approvals: {\"change_request\"}"), crate::http::error::Failures),
    params(("config_id" = String, Path, description = "config id")),
    security(("bearer" = []))
)]
async fn update_config(
    State(app): State<AppState>,
    Extension(who): Extension<Caller>,
    Path(config_id): Path<String>,
    Body(body): Body<UpdateConfigBody>,
) -> Result<Response, ApiError> {
    let approvals = match body.approvals_required {
        Some(n) => {
            require(&who, Role::Admin, &config_id)?;
            let refused = || format!("approvals_required must be 0 to {MOST_APPROVALS}, got {n}");
            let n = u32::try_from(n)
                .ok()
                .filter(|n| *n <= MOST_APPROVALS)
                .ok_or_else(|| ApiError::unprocessable(ErrorCode::Invalid, refused()))?;
            Some(n)
        }
        None => None,
    };
    let glass = Glass {
        break_glass: body.break_glass,
        reason: body.reason,
    };
    // Description and approvals need no approval; a status change may, and
    // then goes alone, so a 202 never hides a change made at once.
    if body.status.is_some() && (body.description.is_some() || approvals.is_some()) && !body.break_glass {
        let config = app.releases.config(&config_id).await?;
        if config.approvals_required > 0 {
            return Err(ApiError::unprocessable(
                ErrorCode::Invalid,
                format!(
                    "config `{config_id}` requires approvals for a status change: send `status` on its own, and `description` or `approvals_required` apart"
                ),
            ));
        }
    }
    let held = match body.status {
        Some(status) => hold(&app, &config_id, Proposal::Status { status }, &who, glass, shown_config).await?,
        None => None,
    };
    let status = body.status.filter(|_| held.is_none());
    let mut config = app
        .releases
        .update_config(&config_id, status, body.description, &who.who)
        .await?;
    if let Some(n) = approvals {
        config = app.releases.set_approvals_required(&config_id, n, &who.who).await?;
    }
    Ok(held.unwrap_or_else(|| Json(config).into_response()))
}

/// A change applied past its approvals (break glass): the config, as the
/// route answers without approvals.
fn shown_config(applied: Applied) -> Response {
    Json(applied.config).into_response()
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct NewVersionBody {
    #[schema(value_type = crate::http::schema::LangName)]
    lang: Lang,
    source: String,
    #[serde(default)]
    #[schema(value_type = Vec<crate::http::schema::RulesEntry>)]
    rules: Vec<serde_json::Value>,
    #[serde(default)]
    #[schema(value_type = Vec<crate::http::schema::ParamEntry>)]
    params: Vec<serde_json::Value>,
}

#[utoipa::path(
    post,
    path = "/api/v1/configs/{config_id}/versions",
    summary = "Upload a version (compile-checked; 422 names the line or rule); the same content again is the version it already is",
    request_body = NewVersionBody,
    responses((status = 201, description = "stored"), (status = 200, description = "the same content was uploaded to this config before: that version"), crate::http::error::Failures),
    params(("config_id" = String, Path, description = "config id")),
    security(("bearer" = []))
)]
async fn create_version(
    State(app): State<AppState>,
    Extension(who): Extension<Caller>,
    Path(config_id): Path<String>,
    Body(body): Body<NewVersionBody>,
) -> Result<(StatusCode, Json<Version>), ApiError> {
    let upload = VersionUpload {
        lang: body.lang,
        source: body.source,
        rules: body.rules,
        params: body.params,
    };
    let (version, created) = app.releases.create_version(&config_id, upload, &who.who).await?;
    let status = if created { StatusCode::CREATED } else { StatusCode::OK };
    Ok((status, Json(version)))
}

#[utoipa::path(
    get,
    path = "/api/v1/configs/{config_id}/versions",
    summary = "List versions",
    responses((status = 200, description = "ok"), crate::http::error::Failures),
    params(("config_id" = String, Path, description = "config id")),
    security(("bearer" = []))
)]
async fn list_versions(State(app): State<AppState>, Path(config_id): Path<String>) -> Reply<Vec<Version>> {
    Ok(Json(app.releases.versions(&config_id).await?))
}

#[utoipa::path(
    get,
    path = "/api/v1/configs/{config_id}/versions/{code_id}",
    summary = "Get a version",
    responses((status = 200, description = "ok"), crate::http::error::Failures),
    params(("config_id" = String, Path, description = "config id"), ("code_id" = String, Path, description = "version code id")),
    security(("bearer" = []))
)]
async fn get_version(
    State(app): State<AppState>,
    Path((config_id, code_id)): Path<(String, String)>,
) -> Reply<Version> {
    Ok(Json(app.releases.version(&config_id, &code_id).await?))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct ReleaseBody {
    code_id: String,
    #[serde(default)]
    force: bool,
    #[serde(default)]
    break_glass: bool,
    reason: Option<String>,
}

#[utoipa::path(
    post,
    path = "/api/v1/configs/{config_id}/release",
    summary = "Release a version (stored tests gate it; 409 with results unless force)",
    request_body = ReleaseBody,
    responses((status = 200, description = "ok"), (status = 202, description = "held for approvals: {\"change_request\"}"), crate::http::error::Failures),
    params(("config_id" = String, Path, description = "config id")),
    security(("bearer" = []))
)]
async fn release(
    State(app): State<AppState>,
    Extension(who): Extension<Caller>,
    Path(config_id): Path<String>,
    Body(body): Body<ReleaseBody>,
) -> Result<Response, ApiError> {
    let proposal = Proposal::Release {
        code_id: body.code_id.clone(),
        force: body.force,
    };
    let glass = Glass {
        break_glass: body.break_glass,
        reason: body.reason,
    };
    if let Some(reply) = hold(&app, &config_id, proposal, &who, glass, shown_config).await? {
        return Ok(reply);
    }
    let change = Change::Release {
        code_id: body.code_id,
        forced: body.force,
    };
    Ok(Json(app.releases.publish(&config_id, change, &who.who).await?).into_response())
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct GrayBody {
    code_id: String,
    /// The share of devices, by a stable hash of their id.
    #[schema(minimum = 0, maximum = 100)]
    #[serde(deserialize_with = "crate::domain::whole::whole")]
    percentage: i64,
    #[serde(default)]
    force: bool,
    #[serde(default)]
    break_glass: bool,
    reason: Option<String>,
}

#[utoipa::path(
    post,
    path = "/api/v1/configs/{config_id}/gray",
    summary = "Set or change the gray release",
    request_body = GrayBody,
    responses((status = 200, description = "ok"), (status = 202, description = "held for approvals: {\"change_request\"}"), crate::http::error::Failures),
    params(("config_id" = String, Path, description = "config id")),
    security(("bearer" = []))
)]
async fn set_gray(
    State(app): State<AppState>,
    Extension(who): Extension<Caller>,
    Path(config_id): Path<String>,
    Body(body): Body<GrayBody>,
) -> Result<Response, ApiError> {
    let percentage = u8::try_from(body.percentage)
        .ok()
        .filter(|p| *p <= 100)
        .ok_or_else(|| ApiError::Unprocessable {
            code: ErrorCode::Invalid,
            message: format!("percentage must be 0 to 100, got {}", body.percentage),
        })?;
    let proposal = Proposal::Gray {
        code_id: body.code_id.clone(),
        percentage,
        force: body.force,
    };
    let glass = Glass {
        break_glass: body.break_glass,
        reason: body.reason,
    };
    if let Some(reply) = hold(&app, &config_id, proposal, &who, glass, shown_config).await? {
        return Ok(reply);
    }
    let change = Change::Gray {
        code_id: body.code_id,
        percentage,
        forced: body.force,
    };
    Ok(Json(app.releases.publish(&config_id, change, &who.who).await?).into_response())
}

#[utoipa::path(
    delete,
    path = "/api/v1/configs/{config_id}/gray",
    summary = "Remove the gray release",
    request_body(content = Option<Glass>, description = "optional: `break_glass` and `reason`"),
    responses((status = 200, description = "ok"), (status = 202, description = "held for approvals: {\"change_request\"}"), crate::http::error::Failures),
    params(("config_id" = String, Path, description = "config id")),
    security(("bearer" = []))
)]
async fn remove_gray(
    State(app): State<AppState>,
    Extension(who): Extension<Caller>,
    Path(config_id): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let glass = glass_of(&body)?;
    if let Some(reply) = hold(&app, &config_id, Proposal::RemoveGray, &who, glass, shown_config).await? {
        return Ok(reply);
    }
    let config = app.releases.apply(&config_id, Change::RemoveGray, &who.who).await?;
    Ok(Json(config).into_response())
}

#[utoipa::path(
    post,
    path = "/api/v1/configs/{config_id}/rollback",
    summary = "Roll back to the previous stable version",
    request_body(content = Option<Glass>, description = "optional: `break_glass` and `reason`"),
    responses((status = 200, description = "ok"), (status = 202, description = "held for approvals: {\"change_request\"}"), crate::http::error::Failures),
    params(("config_id" = String, Path, description = "config id")),
    security(("bearer" = []))
)]
async fn rollback(
    State(app): State<AppState>,
    Extension(who): Extension<Caller>,
    Path(config_id): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let glass = glass_of(&body)?;
    if let Some(reply) = hold(&app, &config_id, Proposal::Rollback, &who, glass, shown_config).await? {
        return Ok(reply);
    }
    let config = app.releases.apply(&config_id, Change::Rollback, &who.who).await?;
    Ok(Json(config).into_response())
}

#[utoipa::path(
    post,
    path = "/api/v1/configs/{config_id}/secret/rotate",
    summary = "Give the config a new secret; the old one keeps working for `auth.secret_grace_s`",
    responses((status = 200, description = "the config, with its new secret"), crate::http::error::Failures),
    params(("config_id" = String, Path, description = "config id")),
    security(("bearer" = []))
)]
pub(super) async fn rotate_secret(
    State(app): State<AppState>,
    Extension(who): Extension<Caller>,
    Path(config_id): Path<String>,
) -> Reply<Config> {
    let grace = app.reloader.settings().auth.secret_grace();
    Ok(Json(app.releases.rotate_secret(&config_id, grace, &who.who).await?))
}

#[utoipa::path(
    post,
    path = "/api/v1/configs/{config_id}/versions/{code_id}/broken",
    summary = "Mark a version broken",
    responses((status = 200, description = "ok"), crate::http::error::Failures),
    params(("config_id" = String, Path, description = "config id"), ("code_id" = String, Path, description = "version code id")),
    security(("bearer" = []))
)]
async fn mark_broken(
    State(app): State<AppState>,
    Extension(who): Extension<Caller>,
    Path((config_id, code_id)): Path<(String, String)>,
) -> Reply<Config> {
    Ok(Json(
        app.releases
            .apply(&config_id, Change::Broken { code_id }, &who.who)
            .await?,
    ))
}

#[utoipa::path(
    delete,
    path = "/api/v1/configs/{config_id}/versions/{code_id}/broken",
    summary = "Clear the broken mark",
    responses((status = 200, description = "ok"), crate::http::error::Failures),
    params(("config_id" = String, Path, description = "config id"), ("code_id" = String, Path, description = "version code id")),
    security(("bearer" = []))
)]
async fn clear_broken(
    State(app): State<AppState>,
    Extension(who): Extension<Caller>,
    Path((config_id, code_id)): Path<(String, String)>,
) -> Reply<Config> {
    Ok(Json(
        app.releases
            .apply(&config_id, Change::Unbroken { code_id }, &who.who)
            .await?,
    ))
}

#[utoipa::path(
    get,
    path = "/api/v1/configs/{config_id}/events",
    summary = "The release log, newest first",
    responses((status = 200, description = "ok"), crate::http::error::Failures),
    params(("config_id" = String, Path, description = "config id")),
    security(("bearer" = []))
)]
async fn list_events(State(app): State<AppState>, Path(config_id): Path<String>) -> Reply<Vec<ReleaseEvent>> {
    Ok(Json(app.releases.events(&config_id).await?))
}
