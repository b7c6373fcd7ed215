//! Error reports from clients: the original `POST /report/{config_id}/{code_id}`,
//! its native equivalent, and the admin view of a version's reports. What a
//! report counts for is decided in `reports` (the health-signal model).

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

use super::AppState;
use super::auth::secret_header;
use super::codes::ErrorCode;
use super::error::{ApiError, CompatError};
use super::extract::{Body, ClientAddress, CompatBody};
use crate::domain::health::{MAX_MESSAGE_BYTES, ReportKind};
use crate::domain::meta::MAX_DEVICE_ID_BYTES;
use crate::domain::model::{ErrorReport, now_millis};
use crate::service::reports::{ClientReport, Receipt, ReportSummary};

/// Reports kept per listing at most.
const MAX_LISTED: i64 = 1000;

pub fn client_routes() -> Router<AppState> {
    Router::new().route("/api/v1/configs/{config_id}/reports", post(report))
}

/// The original service's report route.
pub fn compat_routes() -> Router<AppState> {
    Router::new().route("/report/{config_id}/{code_id}", post(compat_report))
}

pub fn admin_routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/configs/{config_id}/versions/{code_id}/reports", get(list))
        .route(
            "/api/v1/configs/{config_id}/versions/{code_id}/reports/summary",
            get(summary),
        )
}

#[derive(Deserialize)]
struct CompatReportBody {
    #[serde(deserialize_with = "crate::domain::whole::whole")]
    err_time: i64,
    message: String,
}

#[derive(Serialize)]
struct CompatReply {
    data: &'static str,
    message: &'static str,
}

/// The original's route: the client's network is the source (as on the
/// native route), and every report is of kind `client`.
async fn compat_report(
    State(app): State<AppState>,
    headers: HeaderMap,
    Path((config_id, code_id)): Path<(String, String)>,
    ClientAddress(address): ClientAddress,
    CompatBody(body): CompatBody<CompatReportBody>,
) -> Result<Json<CompatReply>, CompatError> {
    let secret = secret_header(&headers)?.to_owned();
    check_message(&body.message)?;
    let report = ClientReport {
        config_id,
        code_id,
        secret,
        address,
        kind: ReportKind::Client,
        err_time: body.err_time,
        message: body.message,
    };
    app.reports.report(report).await?;
    Ok(Json(CompatReply {
        data: "",
        message: "success",
    }))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct ReportBody {
    code_id: String,
    /// The reporting device, as it sends `meta.device_id` when it fetches.
    /// Checked and required, but not the source: anyone may invent a device
    /// id, so the source is the client's network, as on the original route.
    #[schema(min_length = 1, max_length = 256, pattern = r"^[^\u0000-\u001F\u007F-\u009F]+$")]
    device_id: String,
    /// `client` (default), `check`, `render` or `reload`; only `client` and
    /// `check` count toward breaking the version.
    #[schema(value_type = Option<crate::http::schema::KindName>)]
    kind: Option<String>,
    /// Unix seconds when the client saw the error; now if absent.
    #[serde(default, deserialize_with = "crate::domain::whole::maybe_whole")]
    err_time: Option<i64>,
    /// At most 8192 bytes, no NUL.
    message: String,
}

#[utoipa::path(
    post,
    path = "/api/v1/configs/{config_id}/reports",
    summary = "Report a client error (header Secret: config secret)",
    request_body = ReportBody,
    responses(
        (status = 201, description = "stored", body = Receipt),
        (status = 202, description = "accepted but not stored: the source's repeats or the version's stored reports that cannot count reached their cap", body = Receipt),
        crate::http::error::Failures
    ),
    params(
        ("config_id" = String, Path, description = "config id"),
        ("Secret" = String, Header, description = "the config's client secret")
    )
)]
async fn report(
    State(app): State<AppState>,
    headers: HeaderMap,
    Path(config_id): Path<String>,
    ClientAddress(address): ClientAddress,
    Body(body): Body<ReportBody>,
) -> Result<(StatusCode, Json<Receipt>), ApiError> {
    // The native route has no original to follow: no secret is no credential.
    let secret = secret_header(&headers)
        .map_err(|_| ApiError::Unauthorized("missing `Secret` header (the config's client secret)".into()))?
        .to_owned();
    let kind = match body.kind.as_deref() {
        None => ReportKind::Client,
        Some(kind) => ReportKind::parse(kind).ok_or_else(|| {
            ApiError::bad_request(
                ErrorCode::InvalidKind,
                format!(
                    "`kind` must be `client`, `check`, `render` or `reload`, not `{}`",
                    clip(kind)
                ),
            )
        })?,
    };
    check_device_id(&body.device_id)?;
    check_message(&body.message)?;
    let report = ClientReport {
        config_id,
        code_id: body.code_id,
        secret,
        address,
        kind,
        err_time: body.err_time.unwrap_or_else(|| now_millis() / 1000),
        message: body.message,
    };
    let receipt = app.reports.report(report).await?;
    let status = if receipt.stored {
        StatusCode::CREATED
    } else {
        StatusCode::ACCEPTED
    };
    Ok((status, Json(receipt)))
}

fn check_device_id(device_id: &str) -> Result<(), ApiError> {
    let problem = if device_id.is_empty() {
        "must not be empty"
    } else if device_id.len() > MAX_DEVICE_ID_BYTES {
        "must be at most 256 bytes"
    } else if device_id.chars().any(char::is_control) {
        "must not contain control characters"
    } else {
        return Ok(());
    };
    Err(ApiError::bad_request(
        ErrorCode::InvalidDeviceId,
        format!("`device_id` {problem}"),
    ))
}

fn check_message(message: &str) -> Result<(), ApiError> {
    if message.len() > MAX_MESSAGE_BYTES {
        // Bytes, which the document's character count cannot state: 422.
        return Err(ApiError::unprocessable(
            ErrorCode::MessageTooLong,
            format!(
                "`message` is {} bytes; at most {MAX_MESSAGE_BYTES} are kept",
                message.len()
            ),
        ));
    }
    if message.contains('\0') {
        return Err(ApiError::bad_request(
            ErrorCode::InvalidMessage,
            "`message` must not contain NUL bytes",
        ));
    }
    Ok(())
}

/// A client's value quoted back, cut short.
fn clip(value: &str) -> String {
    value.chars().take(32).filter(|c| !c.is_control()).collect()
}

#[derive(Deserialize)]
struct ListQuery {
    limit: Option<i64>,
}

#[utoipa::path(
    get,
    path = "/api/v1/configs/{config_id}/versions/{code_id}/reports",
    summary = "List a version's reports, newest first",
    responses((status = 200, description = "ok"), crate::http::error::Failures),
    params(("config_id" = String, Path, description = "config id"), ("code_id" = String, Path, description = "version code id")),
    security(("bearer" = []))
)]
async fn list(
    State(app): State<AppState>,
    Path((config_id, code_id)): Path<(String, String)>,
    Query(query): Query<ListQuery>,
) -> Result<Json<Vec<ErrorReport>>, ApiError> {
    let limit = query.limit.unwrap_or(100);
    if !(1..=MAX_LISTED).contains(&limit) {
        let message = format!("limit must be between 1 and {MAX_LISTED}, not {limit}");
        return Err(ApiError::bad_request(ErrorCode::InvalidQuery, message));
    }
    Ok(Json(app.reports.list(&config_id, &code_id, limit).await?))
}

#[utoipa::path(
    get,
    path = "/api/v1/configs/{config_id}/versions/{code_id}/reports/summary",
    summary = "A version's health: reports counted and ignored by kind, distinct networks reporting and served, the share",
    responses((status = 200, description = "ok", body = ReportSummary), crate::http::error::Failures),
    params(("config_id" = String, Path, description = "config id"), ("code_id" = String, Path, description = "version code id")),
    security(("bearer" = []))
)]
async fn summary(
    State(app): State<AppState>,
    Path((config_id, code_id)): Path<(String, String)>,
) -> Result<Json<ReportSummary>, ApiError> {
    Ok(Json(app.reports.summary(&config_id, &code_id).await?))
}
