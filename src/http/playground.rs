//! The original playground: run a snippet once, without storing anything.
//! Beyond the original's `code` and `params`, a request may carry the
//! request metadata, rules and parameter schema of the version being
//! written, and they are checked as a fetch checks them (rules against the
//! metadata, params against the schema, defaults filled in), so an operator
//! can try targeting before uploading. Each refusal is a 400 naming what.

use axum::Json;
use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use serde::{Deserialize, Serialize};

use super::AppState;
use super::codes::ErrorCode;
use super::error::{ApiError, CompatError};
use super::extract::CompatBody;
use super::roles::refuse;
use crate::domain::access::Role;
use crate::domain::{Lang, Meta, params, rules};

#[derive(Deserialize)]
pub struct PlaygroundRequest {
    code: String,
    #[serde(default = "empty_object")]
    params: serde_json::Value,
    /// Who is asking, as a fetch's `meta`; checked against `rules`.
    #[serde(default)]
    meta: Meta,
    /// The rules as a version's upload takes them.
    #[serde(default)]
    rules: Option<Vec<serde_json::Value>>,
    /// The parameter schema as a version's upload takes it (a version's
    /// `params`; named apart here, where `params` are the values).
    #[serde(default)]
    params_schema: Option<Vec<serde_json::Value>>,
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
            let caller = app.auth.caller(&parts.method, &parts.headers).await?;
            if !caller.may_somewhere(Role::Editor) {
                return Err(refuse(Role::Editor, "some config").into());
            }
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
        return Err(ApiError::bad_request(ErrorCode::InvalidParams, "`params` must be a JSON object").into());
    }
    if let Some(raw) = request.rules {
        let rules = rules::from_upload(raw)
            .map_err(|e| ApiError::bad_request(ErrorCode::InvalidRules, format!("rules: {e}")))?;
        if !rules::allows(&rules, &request.meta) {
            let message = format!("rules: they do not admit this request ({})", described(&request.meta));
            return Err(ApiError::bad_request(ErrorCode::RulesReject, message).into());
        }
    }
    let mut values = request.params;
    if let Some(raw) = request.params_schema {
        let schema = params::from_upload(raw)
            .map_err(|e| ApiError::bad_request(ErrorCode::InvalidParamsSchema, format!("params_schema: {e}")))?;
        values = params::prepare(&schema, values)
            .map_err(|e| ApiError::bad_request(ErrorCode::InvalidParams, format!("params: {e}")))?;
    }
    let result = app.pool.try_source(lang, request.code, values).await?;
    Ok(Json(PlaygroundResponse {
        data: result.into(),
        message: "success",
    }))
}

/// The metadata a rule reads, for a refusal's message.
fn described(meta: &Meta) -> String {
    let version = meta.version.map_or("none".to_owned(), |v| v.to_string());
    format!(
        "platform `{}`, version {version}, app_version {}, device_id `{}`",
        meta.platform,
        meta.app_version
            .as_deref()
            .map_or("none".to_owned(), |v| format!("`{v}`")),
        meta.device_id
    )
}
