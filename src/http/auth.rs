//! Who a request acts as: a bearer token, from settings (`auth.admin_tokens`,
//! admins over every config) or made at run time (`/api/v1/tokens`, looked
//! up by hash on every request, so a deletion holds on every node at once).
//! What the caller may do is `roles.rs`'s business.

use std::sync::Arc;

use axum::http::HeaderMap;
use axum::http::header::AUTHORIZATION;
use sha2::{Digest, Sha256};

use super::codes::ErrorCode;
use super::error::ApiError;
use crate::domain::access::{Caller, Grant, Role};
use crate::domain::model::now_millis;
use crate::secrets;
use crate::settings::admin_token_parts;
use crate::store::Store;

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

    /// The tokens' names.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(|(name, _)| name.as_str())
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

/// Finds the caller of a request.
pub struct Authenticator {
    /// `auth.admin_tokens`.
    pub admin_tokens: AdminTokens,
    /// Where tokens made at run time are kept.
    pub store: Arc<dyn Store>,
}

/// SHA-256 of a token's value, hex: what the store keeps.
pub fn token_hash(token: &str) -> String {
    secrets::hex(&Sha256::digest(token.as_bytes()))
}

impl Authenticator {
    /// The caller the request's bearer token names; 401 for none, an unknown
    /// one or one past its expiry.
    pub async fn caller(&self, headers: &HeaderMap) -> Result<Caller, ApiError> {
        let presented = bearer(headers)
            .ok_or_else(|| ApiError::Unauthorized("missing `Authorization: Bearer <token>` header".into()))?;
        if let Some(name) = self.admin_tokens.who(presented) {
            return Ok(Caller {
                who: format!("token:{name}"),
                grants: vec![Grant::everywhere(Role::Admin)],
            });
        }
        match self.store.token_by_hash(&token_hash(presented)).await? {
            Some(token) if token.expired(now_millis()) => {
                Err(ApiError::Unauthorized(format!("token `{}` has expired", token.name)))
            }
            Some(token) => Ok(token.caller()),
            None => Err(ApiError::Unauthorized("invalid token".into())),
        }
    }
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
