//! Admin bearer tokens. The matched token's name is who an event records.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::HeaderMap;
use axum::http::header::AUTHORIZATION;
use axum::middleware::Next;
use axum::response::Response;

use super::codes::ErrorCode;
use super::error::ApiError;
use crate::secrets;
use crate::settings::admin_token_parts;

/// The name of the token an admin request was made with.
#[derive(Debug, Clone)]
pub struct Operator(pub String);

/// The admin tokens by name, compared in constant time.
pub struct AdminTokens(Vec<(String, String)>);

impl AdminTokens {
    /// From settings entries, `name=token` or a bare token (named `admin-N`).
    pub fn from_entries(entries: &[String]) -> Self {
        let tokens = entries
            .iter()
            .enumerate()
            .map(|(i, entry)| {
                let (name, token) = admin_token_parts(entry);
                (
                    name.map_or_else(|| format!("admin-{}", i + 1), str::to_owned),
                    token.to_owned(),
                )
            })
            .collect();
        Self(tokens)
    }

    /// The token's name; every candidate is compared so timing tells nothing.
    pub fn who(&self, presented: &str) -> Option<&str> {
        self.0.iter().fold(None, |found, (name, token)| {
            if secrets::equal(token, presented) {
                Some(name.as_str())
            } else {
                found
            }
        })
    }
}

pub async fn require_admin(
    State(tokens): State<Arc<AdminTokens>>,
    mut request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let name = admin_name(&tokens, request.headers())?;
    let operator = Operator(name.to_owned());
    request.extensions_mut().insert(operator);
    Ok(next.run(request).await)
}

/// The value in `Authorization: Bearer <value>`; the scheme is matched
/// without regard to case, as RFC 9110 says.
pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, value)| value.trim())
}

/// The name of the admin token in `Authorization: Bearer <token>`.
pub fn admin_name<'a>(tokens: &'a AdminTokens, headers: &HeaderMap) -> Result<&'a str, ApiError> {
    let presented = bearer(headers)
        .ok_or_else(|| ApiError::Unauthorized("missing `Authorization: Bearer <token>` header".into()))?;
    tokens
        .who(presented)
        .ok_or_else(|| ApiError::Unauthorized("invalid admin token".into()))
}

/// The `Secret` header of the original client routes.
/// A missing or empty header is a bad request, as the original answered.
pub fn secret_header(headers: &axum::http::HeaderMap) -> Result<&str, ApiError> {
    headers
        .get("secret")
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .ok_or_else(|| ApiError::bad_request(ErrorCode::MissingSecret, "missing `Secret` header"))
}

/// Missing is a bad request, wrong is forbidden, as the original answered;
/// the presented value is never echoed.
pub fn check_secret(headers: &axum::http::HeaderMap, expected: &str) -> Result<(), ApiError> {
    if secrets::equal(expected, secret_header(headers)?) {
        Ok(())
    } else {
        Err(ApiError::forbidden(ErrorCode::WrongSecret, "wrong secret"))
    }
}
