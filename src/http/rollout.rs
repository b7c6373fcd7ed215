//! Rollout plan routes under `/api/v1/configs/{config_id}/plans`, behind
//! bearer tokens, and the open plans of every config for the dashboard.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Extension, Json, Router};

use super::AppState;
use super::changes::{Glass, hold};
use super::codes::ErrorCode;
use super::error::ApiError;
use super::extract::Body;
use crate::domain::access::{Caller, Role};
use crate::domain::approval::Proposal;
use crate::domain::rollout::{Control, GateFigures, Plan, PlanRequest, PlanState};
use crate::service::approvals::Applied;
use crate::service::plans::PlanOpError;
use axum::response::{IntoResponse, Response};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/plans", get(open_plans))
        .route("/api/v1/configs/{config_id}/plans", post(create_plan).get(list_plans))
        .route("/api/v1/configs/{config_id}/plans/{plan_id}", get(get_plan))
        .route("/api/v1/configs/{config_id}/plans/{plan_id}/pause", post(pause))
        .route("/api/v1/configs/{config_id}/plans/{plan_id}/resume", post(resume))
        .route("/api/v1/configs/{config_id}/plans/{plan_id}/abort", post(abort))
}

type Reply<T> = Result<Json<T>, ApiError>;

impl From<PlanOpError> for ApiError {
    fn from(e: PlanOpError) -> Self {
        match e {
            PlanOpError::Request(e) => Self::unprocessable(ErrorCode::InvalidPlan, e.to_string()),
            PlanOpError::Release(e) => e.into(),
        }
    }
}

#[utoipa::path(
    post,
    path = "/api/v1/configs/{config_id}/plans",
    summary = "Start a rollout plan (409 while the config has an open one)",
    request_body = PlanRequest,
    responses((status = 201, description = "created", body = Plan), (status = 202, description = "held for approvals: {\"change_request\"}"), crate::http::error::Failures),
    params(("config_id" = String, Path, description = "config id")),
    security(("bearer" = []))
)]
async fn create_plan(
    State(app): State<AppState>,
    Extension(who): Extension<Caller>,
    Path(config_id): Path<String>,
    Body(mut body): Body<serde_json::Map<String, serde_json::Value>>,
) -> Result<Response, ApiError> {
    // `break_glass` and `reason` ride beside the plan's own fields.
    let glass = Glass {
        break_glass: body.remove("break_glass").is_some_and(|v| v == true),
        reason: body.remove("reason").and_then(|v| v.as_str().map(str::to_owned)),
    };
    let body = serde_json::Value::Object(body);
    let request: PlanRequest = serde_json::from_value(body.clone())
        .map_err(|e| ApiError::bad_request(ErrorCode::MalformedBody, format!("malformed JSON body: {e}")))?;
    let proposal = Proposal::Plan { request: body };
    let started = |applied: Applied| (StatusCode::CREATED, Json(applied.plan)).into_response();
    if let Some(reply) = hold(&app, &config_id, proposal, &who, glass, started).await? {
        return Ok(reply);
    }
    let plan = app.plans.create(&config_id, request, &who.who).await?;
    Ok((StatusCode::CREATED, Json(plan)).into_response())
}

#[utoipa::path(
    get,
    path = "/api/v1/configs/{config_id}/plans",
    summary = "A config's rollout plans, newest first",
    responses((status = 200, description = "ok", body = [Plan]), crate::http::error::Failures),
    params(("config_id" = String, Path, description = "config id")),
    security(("bearer" = []))
)]
async fn list_plans(State(app): State<AppState>, Path(config_id): Path<String>) -> Reply<Vec<Plan>> {
    Ok(Json(app.plans.list(Some(&config_id)).await?))
}

#[utoipa::path(
    get,
    path = "/api/v1/plans",
    summary = "Every open (active or paused) rollout plan",
    responses((status = 200, description = "ok", body = [Plan]), crate::http::error::Failures),
    security(("bearer" = []))
)]
async fn open_plans(State(app): State<AppState>, Extension(who): Extension<Caller>) -> Reply<Vec<Plan>> {
    let plans = app.plans.list(None).await?;
    Ok(Json(
        plans
            .into_iter()
            .filter(|p| who.may(Role::Viewer, &p.config_id))
            .collect(),
    ))
}

#[utoipa::path(
    get,
    path = "/api/v1/configs/{config_id}/plans/{plan_id}",
    summary = "A rollout plan: its steps, how far it got, its next move, its last gate and the bake under way",
    responses((status = 200, description = "ok", body = PlanView), crate::http::error::Failures),
    params(
        ("config_id" = String, Path, description = "config id"),
        ("plan_id" = String, Path, description = "plan id")
    ),
    security(("bearer" = []))
)]
async fn get_plan(State(app): State<AppState>, Path((config_id, plan_id)): Path<(String, String)>) -> Reply<PlanView> {
    let plan = app.plans.get(&config_id, &plan_id).await?;
    // The bake under way, as its gate would judge it now.
    let gate_now = match (plan.state, plan.step_started_at) {
        (PlanState::Active | PlanState::Paused, Some(since)) => {
            Some(app.reports.gate(&plan.code_id, since, plan.gate_min_sources).await?)
        }
        _ => None,
    };
    Ok(Json(PlanView { plan, gate_now }))
}

/// A plan, with the figures of the bake under way.
#[derive(serde::Serialize, utoipa::ToSchema)]
struct PlanView {
    #[serde(flatten)]
    plan: Plan,
    /// While open: the version's health since its current step began, as
    /// the gate would judge it now.
    gate_now: Option<GateFigures>,
}

async fn control(app: AppState, who: Caller, config_id: String, plan_id: String, what: Control) -> Reply<Plan> {
    Ok(Json(app.plans.control(&config_id, &plan_id, what, &who.who).await?))
}

#[utoipa::path(
    post,
    path = "/api/v1/configs/{config_id}/plans/{plan_id}/pause",
    summary = "Pause an active plan, keeping the bake it has left",
    responses((status = 200, description = "ok", body = Plan), crate::http::error::Failures),
    params(
        ("config_id" = String, Path, description = "config id"),
        ("plan_id" = String, Path, description = "plan id")
    ),
    security(("bearer" = []))
)]
async fn pause(
    State(app): State<AppState>,
    Extension(who): Extension<Caller>,
    Path((config_id, plan_id)): Path<(String, String)>,
) -> Reply<Plan> {
    control(app, who, config_id, plan_id, Control::Pause).await
}

#[utoipa::path(
    post,
    path = "/api/v1/configs/{config_id}/plans/{plan_id}/resume",
    summary = "Resume a paused plan",
    responses((status = 200, description = "ok", body = Plan), crate::http::error::Failures),
    params(
        ("config_id" = String, Path, description = "config id"),
        ("plan_id" = String, Path, description = "plan id")
    ),
    security(("bearer" = []))
)]
async fn resume(
    State(app): State<AppState>,
    Extension(who): Extension<Caller>,
    Path((config_id, plan_id)): Path<(String, String)>,
) -> Reply<Plan> {
    control(app, who, config_id, plan_id, Control::Resume).await
}

#[utoipa::path(
    post,
    path = "/api/v1/configs/{config_id}/plans/{plan_id}/abort",
    summary = "Abort an open plan; its version's gray is removed",
    responses((status = 200, description = "ok", body = Plan), crate::http::error::Failures),
    params(
        ("config_id" = String, Path, description = "config id"),
        ("plan_id" = String, Path, description = "plan id")
    ),
    security(("bearer" = []))
)]
async fn abort(
    State(app): State<AppState>,
    Extension(who): Extension<Caller>,
    Path((config_id, plan_id)): Path<(String, String)>,
) -> Reply<Plan> {
    control(app, who, config_id, plan_id, Control::Abort).await
}
