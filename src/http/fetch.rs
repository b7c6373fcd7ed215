//! The fetch path: the original `POST /config/{id}` and the native evaluate.

use std::net::IpAddr;

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::value::RawValue;

use super::AppState;
use super::error::{ApiError, CompatError};
use super::extract::{Body, ClientAddress, CompatBody};
use crate::actors::config_cache::Resolved;
use crate::actors::evaluator::{EvalError, Evaluated};
use crate::domain::{Meta, Version};

/// Unknown fields are ignored, as the original service did.
#[derive(Deserialize, utoipa::ToSchema)]
pub struct FetchRequest {
    #[serde(default)]
    #[schema(value_type = Object)]
    meta: Meta,
    #[serde(default = "default_cached")]
    cached: bool,
    /// Kept as the text it came as: the worker reads it (see
    /// `EvaluatorPoolHandle::evaluate_text`).
    #[serde(default = "empty_object")]
    #[schema(value_type = Object)]
    params: Box<RawValue>,
}

fn default_cached() -> bool {
    true
}

fn empty_object() -> Box<RawValue> {
    RawValue::from_string("{}".to_owned()).expect("{} is JSON")
}

/// Resolves and runs a fetch.
async fn run(
    app: &AppState,
    config_id: &str,
    request: FetchRequest,
    address: IpAddr,
) -> Result<(Resolved, Arc<Evaluated>), ApiError> {
    let resolved = app.cache.resolve(config_id, &request.meta, !request.cached).await?;
    let result = serve(app, &resolved.version, address, request.params).await?;
    Ok((resolved, result))
}

/// Runs the version chosen for a request, first recording the client's
/// network as served it for the health signals: reports count by network,
/// on every route, so the served side is counted the same way.
pub(super) async fn serve(
    app: &AppState,
    version: &Arc<Version>,
    address: IpAddr,
    params: Box<RawValue>,
) -> Result<Arc<Evaluated>, EvalError> {
    app.reports.served(&version.code_id, address);
    // Even for `cached: false`: a version's compiled code and memoized results
    // never go stale.
    app.pool.evaluate_text(version.clone(), params).await
}

/// `{"data":{"result":"<the result's JSON as a string>","code_id":"..."},"message":"success"}`,
/// written straight into one buffer of the right size: every fetch answers
/// with it, and a memoized result's string is escaped only once.
pub async fn compat_fetch(
    State(app): State<AppState>,
    Path(config_id): Path<String>,
    ClientAddress(address): ClientAddress,
    CompatBody(request): CompatBody<FetchRequest>,
) -> Result<Response, CompatError> {
    let (resolved, result) = run(&app, &config_id, request, address).await?;
    let quoted = result.quoted();
    let code_id = &resolved.version.code_id;
    let mut body = Vec::with_capacity(quoted.len() + code_id.len() + 64);
    body.extend_from_slice(br#"{"data":{"result":"#);
    body.extend_from_slice(quoted.as_bytes());
    body.extend_from_slice(br#","code_id":"#);
    push_string(&mut body, code_id);
    body.extend_from_slice(br#"},"message":"success"}"#);
    Ok(json_response(body))
}

#[utoipa::path(
    post,
    path = "/api/v1/configs/{config_id}/evaluate",
    summary = "Evaluate a config for a client",
    request_body = FetchRequest,
    responses(
        (status = 200, description = "ok; header `Vane-Stale: 1` when `cached: false` was answered from the last known state because the store did not answer in time"),
        crate::http::error::Failures,
        (status = 503, description = "the config is not in memory and the store did not answer in time (Retry-After)")
    ),
    params(("config_id" = String, Path, description = "config id"))
)]
pub async fn evaluate(
    State(app): State<AppState>,
    Path(config_id): Path<String>,
    ClientAddress(address): ClientAddress,
    Body(request): Body<FetchRequest>,
) -> Result<Response, ApiError> {
    let (resolved, result) = run(&app, &config_id, request, address).await?;
    // `{"result":<JSON>,"code_id":"...","revision":N}`, in one buffer.
    let code_id = &resolved.version.code_id;
    let mut body = Vec::with_capacity(result.get().len() + code_id.len() + 64);
    body.extend_from_slice(br#"{"result":"#);
    body.extend_from_slice(result.get().as_bytes());
    body.extend_from_slice(br#","code_id":"#);
    push_string(&mut body, code_id);
    body.extend_from_slice(br#","revision":"#);
    body.extend_from_slice(itoa::Buffer::new().format(resolved.revision).as_bytes());
    body.push(b'}');
    let response = json_response(body);
    // The original route's body has no room for it, so only this one says so.
    Ok(match resolved.stale {
        true => ([(STALE_HEADER, HeaderValue::from_static("1"))], response).into_response(),
        false => response,
    })
}

fn push_string(body: &mut Vec<u8>, text: &str) {
    // Writing a str into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *body, text);
}

/// A JSON body already written, with its content type.
pub(super) fn json_response(body: Vec<u8>) -> Response {
    (
        [(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))],
        body,
    )
        .into_response()
}

/// Set on a `cached: false` answer served from the last known state because
/// the store did not answer within `store.wait_ms`.
const STALE_HEADER: &str = "vane-stale";
