//! Stored test cases: the admin routes under a version, and the original
//! `GET /test/{test_id}`.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::AppState;
use super::auth::check_secret;
use super::codes::ErrorCode;
use super::error::{ApiError, CompatError};
use super::extract::Body;
use crate::domain::Meta;
use crate::domain::model::TestCase;
use crate::service::releases::NewTest;
use crate::service::test_runs::TestRun;

pub fn admin_routes() -> Router<AppState> {
    Router::new()
        .route(
            "/api/v1/configs/{config_id}/versions/{code_id}/tests",
            post(create).get(list),
        )
        .route("/api/v1/configs/{config_id}/versions/{code_id}/tests/run", post(run))
        .route(
            "/api/v1/configs/{config_id}/versions/{code_id}/tests/{test_id}",
            delete(remove),
        )
}

pub fn compat_routes() -> Router<AppState> {
    Router::new().route("/test/{test_id}", get(compat_run))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct NewTestBody {
    #[serde(default)]
    name: String,
    #[serde(default)]
    #[schema(value_type = Object)]
    meta: Meta,
    #[serde(default = "empty_object")]
    params: Value,
    expected: Value,
}

fn empty_object() -> Value {
    Value::Object(Default::default())
}

#[utoipa::path(
    post,
    path = "/api/v1/configs/{config_id}/versions/{code_id}/tests",
    summary = "Store a test case",
    request_body = NewTestBody,
    responses((status = 201, description = "ok"), crate::http::error::Failures),
    params(("config_id" = String, Path, description = "config id"), ("code_id" = String, Path, description = "version code id")),
    security(("bearer" = []))
)]
async fn create(
    State(app): State<AppState>,
    Path((config_id, code_id)): Path<(String, String)>,
    Body(body): Body<NewTestBody>,
) -> Result<(StatusCode, Json<TestCase>), ApiError> {
    let test = NewTest {
        name: body.name,
        meta: body.meta,
        params: body.params,
        expected: body.expected,
    };
    let case = app.releases.create_test(&config_id, &code_id, test).await?;
    Ok((StatusCode::CREATED, Json(case)))
}

#[utoipa::path(
    get,
    path = "/api/v1/configs/{config_id}/versions/{code_id}/tests",
    summary = "List test cases",
    responses((status = 200, description = "ok"), crate::http::error::Failures),
    params(("config_id" = String, Path, description = "config id"), ("code_id" = String, Path, description = "version code id")),
    security(("bearer" = []))
)]
async fn list(
    State(app): State<AppState>,
    Path((config_id, code_id)): Path<(String, String)>,
) -> Result<Json<Vec<TestCase>>, ApiError> {
    Ok(Json(app.releases.tests(&config_id, &code_id).await?))
}

#[utoipa::path(
    delete,
    path = "/api/v1/configs/{config_id}/versions/{code_id}/tests/{test_id}",
    summary = "Delete a test case",
    responses((status = 204, description = "ok"), crate::http::error::Failures),
    params(("config_id" = String, Path, description = "config id"), ("code_id" = String, Path, description = "version code id"), ("test_id" = String, Path, description = "test case id")),
    security(("bearer" = []))
)]
async fn remove(
    State(app): State<AppState>,
    Path((config_id, code_id, test_id)): Path<(String, String, String)>,
) -> Result<StatusCode, ApiError> {
    app.releases.delete_test(&config_id, &code_id, &test_id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(
    post,
    path = "/api/v1/configs/{config_id}/versions/{code_id}/tests/run",
    summary = "Run the stored tests",
    responses((status = 200, description = "ok"), crate::http::error::Failures),
    params(("config_id" = String, Path, description = "config id"), ("code_id" = String, Path, description = "version code id")),
    security(("bearer" = []))
)]
async fn run(
    State(app): State<AppState>,
    Path((config_id, code_id)): Path<(String, String)>,
) -> Result<Json<TestRun>, ApiError> {
    Ok(Json(app.releases.run_tests(&config_id, &code_id).await?))
}

#[derive(Serialize)]
struct CompatOutcome {
    duration: u64,
    succeed: bool,
}

#[derive(Serialize)]
struct CompatResult {
    data: CompatOutcome,
    message: String,
}

#[derive(Serialize)]
struct CompatReply {
    data: CompatResult,
    message: &'static str,
}

/// The original shape: an execution error is a 400; a wrong answer is a 200
/// whose inner message shows what came out.
async fn compat_run(
    State(app): State<AppState>,
    headers: HeaderMap,
    Path(test_id): Path<String>,
) -> Result<Json<CompatReply>, CompatError> {
    check_secret(&headers, &app.tests_secret)?;
    let result = app.releases.run_test(&test_id).await?;
    let Some(actual) = &result.actual else {
        let message = result.error.unwrap_or_else(|| "execution failed".into());
        return Err(ApiError::bad_request(ErrorCode::ExecutionError, message).into());
    };
    let message = if result.passed {
        "success".to_owned()
    } else {
        format!("wrong output:\n{actual}")
    };
    Ok(Json(CompatReply {
        data: CompatResult {
            data: CompatOutcome {
                duration: result.duration_us,
                succeed: result.passed,
            },
            message,
        },
        message: "success",
    }))
}
