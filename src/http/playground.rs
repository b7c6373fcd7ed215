//! The original playground: run a snippet once, without storing anything.

use axum::Json;
use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use serde::{Deserialize, Serialize};

use super::AppState;
use super::auth::admin_name;
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
    _: PlaygroundAccess,
    State(app): State<AppState>,
    body: CompatBody<PlaygroundRequest>,
) -> Result<Json<PlaygroundResponse>, CompatError> {
    run(app, Lang::Starlark, body).await
}

pub async fn javascript(
    _: PlaygroundAccess,
    State(app): State<AppState>,
    body: CompatBody<PlaygroundRequest>,
) -> Result<Json<PlaygroundResponse>, CompatError> {
    run(app, Lang::Javascript, body).await
}

/// The admin token, unless `playground.open`. An extractor, so it is
/// checked before the body is read: a stranger learns nothing from a 400.
pub struct PlaygroundAccess;

impl FromRequestParts<AppState> for PlaygroundAccess {
    type Rejection = CompatError;

    async fn from_request_parts(parts: &mut Parts, app: &AppState) -> Result<Self, Self::Rejection> {
        if !app.playground_open {
            admin_name(&app.admin_tokens, &parts.headers)?;
        }
        Ok(Self)
    }
}

async fn run(
    app: AppState,
    lang: Lang,
    CompatBody(request): CompatBody<PlaygroundRequest>,
) -> Result<Json<PlaygroundResponse>, CompatError> {
    if !request.params.is_object() {
        return Err(ApiError::bad_request("invalid_params", "`params` must be a JSON object").into());
    }
    let result = app.pool.try_source(lang, request.code, request.params).await?;
    Ok(Json(PlaygroundResponse {
        data: result.into(),
        message: "success",
    }))
}
