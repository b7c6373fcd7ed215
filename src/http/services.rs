//! The service registry's routes (`/api/v1/services`): instances register
//! and renew their lease with one `PUT`, leave with a `DELETE`, and anyone
//! whose grant covers a service reads its live instances. Config secrets
//! grant nothing here: these routes take tokens only.

use axum::extract::{Path, Request, State};
use axum::http::StatusCode;
use axum::routing::{get, put};
use axum::{Extension, Json, Router};
use serde::Serialize;

use super::AppState;
use super::codes::ErrorCode;
use super::error::ApiError;
use super::extract::{nul_at, read_bytes};
use crate::domain::access::{Caller, Role};
use crate::domain::registry::{Membership, RegistrationBody, RegistryError, check_instance_id, check_service};

// Service names and instance ids as the document states them: the
// config-id rule, less names starting with a dot (the server takes `.x`; no
// client can reach `.` or `..`).
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)]
struct InstancePath {
    /// The service.
    #[param(pattern = r"^[A-Za-z0-9_-][A-Za-z0-9._-]{0,127}$")]
    service: String,
    /// The instance.
    #[param(pattern = r"^[A-Za-z0-9_-][A-Za-z0-9._-]{0,127}$")]
    instance_id: String,
}

#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)]
struct ServicePath {
    /// The service.
    #[param(pattern = r"^[A-Za-z0-9_-][A-Za-z0-9._-]{0,127}$")]
    service: String,
}

/// Most a registration's body may hold.
pub const MOST_BODY_BYTES: usize = 64 * 1024;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/services", get(list))
        .route("/api/v1/services/{service}", get(show))
        .route(
            "/api/v1/services/{service}/instances/{instance_id}",
            put(register).delete(deregister),
        )
}

impl From<RegistryError> for ApiError {
    fn from(e: RegistryError) -> Self {
        ApiError::bad_request(ErrorCode::InvalidRegistration, e.to_string())
    }
}

#[derive(Serialize, utoipa::ToSchema)]
struct RegisteredReply {
    service: String,
    instance_id: String,
    /// The service's revision after the registration.
    revision: i64,
    /// When the lease ends unless renewed, unix ms.
    expires_at: i64,
}

#[utoipa::path(
    put,
    path = "/api/v1/services/{service}/instances/{instance_id}",
    summary = "Register an instance, or renew its lease (the heartbeat)",
    params(InstancePath),
    request_body = RegistrationBody,
    responses((status = 200, description = "registered or renewed", body = RegisteredReply), crate::http::error::Failures),
    security(("bearer" = []))
)]
async fn register(
    State(app): State<AppState>,
    Path((service, instance_id)): Path<(String, String)>,
    request: Request,
) -> Result<Json<RegisteredReply>, ApiError> {
    check_service(&service)?;
    check_instance_id(&instance_id)?;
    let bytes = read_bytes(request).await?;
    if bytes.len() > MOST_BODY_BYTES {
        let message = format!(
            "body: {} bytes, over the {MOST_BODY_BYTES} a registration may hold",
            bytes.len()
        );
        return Err(ApiError::bad_request(ErrorCode::InvalidRegistration, message));
    }
    let value: serde_json::Value = serde_json::from_slice(&bytes)
        .map_err(|e| ApiError::bad_request(ErrorCode::MalformedBody, format!("malformed JSON body: {e}")))?;
    if let Some(place) = nul_at(&value, "body") {
        let message = format!("{place} contains a NUL character (\\u0000), which Vane does not accept");
        return Err(ApiError::unprocessable(ErrorCode::NulCharacter, message));
    }
    let body = RegistrationBody::parse(value)?;
    let registered = app.registry.register(&service, &instance_id, body.check()?).await?;
    Ok(Json(RegisteredReply {
        service,
        instance_id,
        revision: registered.revision,
        expires_at: registered.expires_at,
    }))
}

#[utoipa::path(
    delete,
    path = "/api/v1/services/{service}/instances/{instance_id}",
    summary = "Deregister an instance at once",
    params(InstancePath),
    responses((status = 204, description = "gone"), crate::http::error::Failures),
    security(("bearer" = []))
)]
async fn deregister(
    State(app): State<AppState>,
    Path((service, instance_id)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    check_service(&service)?;
    check_instance_id(&instance_id)?;
    match app.registry.deregister(&service, &instance_id).await? {
        true => Ok(StatusCode::NO_CONTENT),
        false => Err(ApiError::NotFound(format!(
            "no instance `{instance_id}` of service `{service}`"
        ))),
    }
}

#[derive(Serialize, utoipa::ToSchema)]
struct ServiceCount {
    service: String,
    /// Live instances.
    instances: usize,
}

#[utoipa::path(
    get,
    path = "/api/v1/services",
    summary = "Services with live instances the caller may read, and how many",
    responses((status = 200, description = "ok", body = [ServiceCount]), crate::http::error::Failures),
    security(("bearer" = []))
)]
async fn list(State(app): State<AppState>, Extension(who): Extension<Caller>) -> Json<Vec<ServiceCount>> {
    Json(
        app.registry
            .services()
            .into_iter()
            .filter(|(name, _)| who.may(Role::Viewer, name))
            .map(|(service, instances)| ServiceCount { service, instances })
            .collect(),
    )
}

#[utoipa::path(
    get,
    path = "/api/v1/services/{service}",
    summary = "A service's live instances, sorted by id (none: an empty list)",
    params(ServicePath),
    responses((status = 200, description = "ok", body = Membership), crate::http::error::Failures),
    security(("bearer" = []))
)]
async fn show(State(app): State<AppState>, Path(service): Path<String>) -> Result<Json<Membership>, ApiError> {
    check_service(&service)?;
    Ok(Json(app.registry.membership(&service)))
}
