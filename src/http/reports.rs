//! Error reports from clients: the original `POST /report/{config_id}/{code_id}`,
//! its native equivalent, and the admin view of a version's reports.

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

use super::AppState;
use super::auth::secret_header;
use super::error::{ApiError, CompatError};
use super::extract::{Body, CompatBody};
use crate::domain::model::ErrorReport;

/// Reports kept per listing at most.
const MAX_LISTED: i64 = 1000;

pub fn client_routes() -> Router<AppState> {
    Router::new()
        .route("/report/{config_id}/{code_id}", post(compat_report))
        .route("/api/v1/configs/{config_id}/reports", post(report))
}

pub fn admin_routes() -> Router<AppState> {
    Router::new().route("/api/v1/configs/{config_id}/versions/{code_id}/reports", get(list))
}

#[derive(Deserialize)]
struct CompatReportBody {
    err_time: i64,
    message: String,
}

#[derive(Serialize)]
struct CompatReply {
    data: &'static str,
    message: &'static str,
}

async fn compat_report(
    State(app): State<AppState>,
    headers: HeaderMap,
    Path((config_id, code_id)): Path<(String, String)>,
    CompatBody(body): CompatBody<CompatReportBody>,
) -> Result<Json<CompatReply>, CompatError> {
    let secret = secret_header(&headers)?;
    app.releases
        .report(&config_id, &code_id, secret, body.err_time, body.message)
        .await?;
    Ok(Json(CompatReply {
        data: "",
        message: "success",
    }))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct ReportBody {
    code_id: String,
    /// Unix seconds when the client saw the error; now if absent.
    err_time: Option<i64>,
    message: String,
}

#[derive(Serialize)]
struct ReportReply {
    error_count: i64,
    /// Whether this report marked the version broken.
    broke: bool,
}

#[utoipa::path(
    post,
    path = "/api/v1/configs/{config_id}/reports",
    summary = "Report a client error (header Secret: config secret)",
    request_body = ReportBody,
    responses((status = 201, description = "ok"), (status = "4XX", description = "error: {\"error\":{\"code\",\"message\"}}")),
    params(("config_id" = String, Path, description = "config id"))
)]
async fn report(
    State(app): State<AppState>,
    headers: HeaderMap,
    Path(config_id): Path<String>,
    Body(body): Body<ReportBody>,
) -> Result<(StatusCode, Json<ReportReply>), ApiError> {
    let secret = secret_header(&headers)?;
    let err_time = body
        .err_time
        .unwrap_or_else(|| crate::domain::model::now_millis() / 1000);
    let outcome = app
        .releases
        .report(&config_id, &body.code_id, secret, err_time, body.message)
        .await?;
    let reply = ReportReply {
        error_count: outcome.error_count,
        broke: outcome.broke.is_some(),
    };
    Ok((StatusCode::CREATED, Json(reply)))
}

#[derive(Deserialize)]
struct ListQuery {
    limit: Option<i64>,
}

#[utoipa::path(
    get,
    path = "/api/v1/configs/{config_id}/versions/{code_id}/reports",
    summary = "List a version's reports",
    responses((status = 200, description = "ok"), (status = "4XX", description = "error: {\"error\":{\"code\",\"message\"}}")),
    params(("config_id" = String, Path, description = "config id"), ("code_id" = String, Path, description = "version code id")),
    security(("bearer" = []))
)]
async fn list(
    State(app): State<AppState>,
    Path((config_id, code_id)): Path<(String, String)>,
    Query(query): Query<ListQuery>,
) -> Result<Json<Vec<ErrorReport>>, ApiError> {
    let limit = query.limit.unwrap_or(100).clamp(1, MAX_LISTED);
    Ok(Json(app.releases.reports(&config_id, &code_id, limit).await?))
}
