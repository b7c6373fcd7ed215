//! Who a request acts as: a bearer token, from settings (`auth.admin_tokens`,
//! admins over every config) or made at run time (`/api/v1/tokens`, looked
//! up by hash on every request, so a deletion holds on every node at once).
//! Without a bearer token, a console session's cookie (after single sign-on,
//! `sso.rs`), looked up by hash the same way; a write through a session
//! must carry its CSRF token. What the caller may do is `roles.rs`'s business.

use std::sync::Arc;

use axum::http::header::{AUTHORIZATION, COOKIE};
use axum::http::{HeaderMap, Method};

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
    /// Where tokens made at run time and console sessions are kept.
    pub store: Arc<dyn Store>,
    /// With single sign-on on (`[auth.oidc]`), every grant its group
    /// mapping gives now; `None`: no session cookie is read, so turning SSO
    /// off ends every session at once. A session keeps only those of its
    /// grants still in the mapping, so narrowing it (and restarting)
    /// narrows every session at once.
    pub mapped: Option<Vec<Grant>>,
}

/// The cookie that carries a console session's id.
pub const SESSION_COOKIE: &str = "vane_session";

/// The header every write through a session carries its CSRF token in.
pub const CSRF_HEADER: &str = "x-csrf-token";

/// SHA-256 of a token's value, hex: what the store keeps.
pub fn token_hash(token: &str) -> String {
    secrets::sha256_hex(token)
}

/// Who a request acts as, and how it proved it.
pub struct Identity {
    /// Who, and what they may do.
    pub caller: Caller,
    /// The session's CSRF token, when the request came with a session
    /// cookie rather than a bearer token (`GET /api/v1/me` hands it over).
    pub csrf: Option<String>,
}

/// A request's CSRF token, for the handlers that show it (`/api/v1/me`).
#[derive(Debug, Clone)]
pub struct SessionCsrf(pub String);

impl Authenticator {
    /// The caller of the request (see `identify`).
    pub async fn caller(&self, method: &Method, headers: &HeaderMap) -> Result<Caller, ApiError> {
        Ok(self.identify(method, headers).await?.caller)
    }

    /// The caller the request's bearer token names or, with none, its
    /// console session. 401 for none, an unknown or expired token, and a
    /// session cookie that is forged, signed out or expired. A write
    /// (any method but GET, HEAD, OPTIONS) through a session must carry the
    /// session's CSRF token in `X-CSRF-Token`, else 403; a bearer token
    /// needs none, since no browser sends it on its own.
    pub async fn identify(&self, method: &Method, headers: &HeaderMap) -> Result<Identity, ApiError> {
        if let Some(presented) = bearer(headers) {
            let caller = self.by_token(presented).await?;
            return Ok(Identity { caller, csrf: None });
        }
        let cookie = self.mapped.as_ref().and(cookie(headers, SESSION_COOKIE));
        let Some(id) = cookie else {
            let missing = match self.mapped.is_some() {
                true => "missing `Authorization: Bearer <token>` header or console session (sign in at /console)",
                false => "missing `Authorization: Bearer <token>` header",
            };
            return Err(ApiError::Unauthorized(missing.into()));
        };
        let session = match self.store.session_by_hash(&token_hash(id)).await? {
            Some(session) if session.expired(now_millis()) => {
                return Err(ApiError::Unauthorized(
                    "the console session has expired; sign in again".into(),
                ));
            }
            Some(session) => session,
            None => {
                return Err(ApiError::Unauthorized(
                    "the console session is not valid (signed out, or never issued); sign in again".into(),
                ));
            }
        };
        if !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS) {
            check_csrf(headers, &session.csrf)?;
        }
        let mut caller = session.caller();
        let mapped = self.mapped.as_deref().unwrap_or_default();
        caller.grants.retain(|g| mapped.contains(g));
        Ok(Identity {
            caller,
            csrf: Some(session.csrf),
        })
    }

    async fn by_token(&self, presented: &str) -> Result<Caller, ApiError> {
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

/// 403 unless `X-CSRF-Token` is the session's, compared in constant time.
pub fn check_csrf(headers: &HeaderMap, expected: &str) -> Result<(), ApiError> {
    let presented = headers.get(CSRF_HEADER).and_then(|v| v.to_str().ok());
    match presented {
        Some(presented) if secrets::equal(expected, presented.trim()) => Ok(()),
        Some(_) => Err(ApiError::forbidden(
            ErrorCode::CsrfRequired,
            "wrong `X-CSRF-Token` for this session; nothing was changed (reload the console)",
        )),
        None => Err(ApiError::forbidden(
            ErrorCode::CsrfRequired,
            "a write through a console session needs the `X-CSRF-Token` header (from GET /api/v1/me); nothing was changed",
        )),
    }
}

/// The value of the cookie `name` in the request's `Cookie` headers.
pub fn cookie<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value.trim_matches('"'))
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
