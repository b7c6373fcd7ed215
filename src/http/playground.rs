//! The original playground: run a snippet once, without storing anything.

use axum::Json;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::http::header::AUTHORIZATION;
use serde::{Deserialize, Serialize};

use super::AppState;
use super::error::{ApiError, CompatError};
use super::extract::CompatBody;
use crate::domain::Lang;

#[derive(Deserialize)]
pub struct PlaygroundRequest {
    code: String,
    #[serde(default = "empty_object")]
    params: serde_json::Value,
}

fn empty_object() -> serde_json::Value {
    serde_json::Value::Object(Default::default())
}

#[derive(Serialize)]
pub struct PlaygroundResponse {
    /// The JSON text of the result, as a string.
    data: Box<str>,
    message: &'static str,
}

pub async fn starlark(
    State(app): State<AppState>,
    headers: HeaderMap,
    body: CompatBody<PlaygroundRequest>,
) -> Result<Json<PlaygroundResponse>, CompatError> {
    run(app, headers, Lang::Starlark, body).await
}

pub async fn javascript(
    State(app): State<AppState>,
    headers: HeaderMap,
    body: CompatBody<PlaygroundRequest>,
) -> Result<Json<PlaygroundResponse>, CompatError> {
    run(app, headers, Lang::Javascript, body).await
}

async fn run(
    app: AppState,
    headers: HeaderMap,
    lang: Lang,
    CompatBody(request): CompatBody<PlaygroundRequest>,
) -> Result<Json<PlaygroundResponse>, CompatError> {
    if !app.playground_open {
        let presented = headers
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        match presented {
            None => return Err(ApiError::Unauthorized("missing `Authorization: Bearer <token>` header".into()).into()),
            Some(token) if app.admin_tokens.who(token.trim()).is_none() => {
                return Err(ApiError::Unauthorized("invalid admin token".into()).into());
            }
            Some(_) => {}
        }
    }
    if !request.params.is_object() {
        return Err(ApiError::bad_request("invalid_params", "`params` must be a JSON object").into());
    }
    let result = app.pool.try_source(lang, request.code, request.params).await?;
    Ok(Json(PlaygroundResponse {
        data: result.into(),
        message: "success",
    }))
}
