//! What role each operator route needs, in one table: the guard reads it on
//! every request, the OpenAPI document states it, and a test walks it with
//! every role. A route missing from the table refuses everyone, so a new
//! route cannot ship open.

use std::sync::Arc;

use axum::extract::{MatchedPath, RawPathParams, Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::Response;

use super::auth::{Authenticator, SessionCsrf};
use super::codes::ErrorCode;
use super::error::ApiError;
use crate::domain::access::{Caller, Role};

/// Over which configs a route's role must be held.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// The config named in the path (`{config_id}`).
    Config,
    /// Some config; the handler narrows to the ones it touches or lists.
    Some,
    /// Every config (`*`): the route is about the whole service.
    All,
    /// The registry service named in the path (`{service}`); grants cover
    /// service names with the same patterns as config ids.
    Service,
}

/// One route's need.
#[derive(Debug, Clone, Copy)]
pub struct Need {
    /// The method, upper case.
    pub method: &'static str,
    /// The route as the router writes it.
    pub path: &'static str,
    /// The least role that may call it.
    pub role: Role,
    /// Over which configs.
    pub scope: Scope,
}

const fn need(method: &'static str, path: &'static str, role: Role, scope: Scope) -> Need {
    Need {
        method,
        path,
        role,
        scope,
    }
}

use Role::{Admin, Editor, Publisher, Registrar, Viewer};
use Scope::{All, Config, Service, Some as Narrowed};

/// Every route behind a token, and what it needs.
pub const NEEDS: &[Need] = &[
    need("GET", "/api/v1/me", Viewer, Narrowed),
    need("GET", "/api/v1/services", Viewer, Narrowed),
    need("GET", "/api/v1/services/{service}", Viewer, Service),
    need(
        "PUT",
        "/api/v1/services/{service}/instances/{instance_id}",
        Registrar,
        Service,
    ),
    need(
        "DELETE",
        "/api/v1/services/{service}/instances/{instance_id}",
        Registrar,
        Service,
    ),
    need("POST", "/api/v1/configs", Editor, Narrowed),
    need("GET", "/api/v1/configs", Viewer, Narrowed),
    need("GET", "/api/v1/configs/{config_id}", Viewer, Config),
    need("PATCH", "/api/v1/configs/{config_id}", Publisher, Config),
    need("POST", "/api/v1/configs/{config_id}/versions", Editor, Config),
    need("GET", "/api/v1/configs/{config_id}/versions", Viewer, Config),
    need("GET", "/api/v1/configs/{config_id}/versions/{code_id}", Viewer, Config),
    need("POST", "/api/v1/configs/{config_id}/release", Publisher, Config),
    need("POST", "/api/v1/configs/{config_id}/gray", Publisher, Config),
    need("DELETE", "/api/v1/configs/{config_id}/gray", Publisher, Config),
    need("POST", "/api/v1/configs/{config_id}/rollback", Publisher, Config),
    need("POST", "/api/v1/configs/{config_id}/secret/rotate", Admin, Config),
    need(
        "POST",
        "/api/v1/configs/{config_id}/versions/{code_id}/broken",
        Publisher,
        Config,
    ),
    need(
        "DELETE",
        "/api/v1/configs/{config_id}/versions/{code_id}/broken",
        Publisher,
        Config,
    ),
    need("GET", "/api/v1/configs/{config_id}/events", Viewer, Config),
    need(
        "POST",
        "/api/v1/configs/{config_id}/versions/{code_id}/tests",
        Editor,
        Config,
    ),
    need(
        "GET",
        "/api/v1/configs/{config_id}/versions/{code_id}/tests",
        Viewer,
        Config,
    ),
    need(
        "POST",
        "/api/v1/configs/{config_id}/versions/{code_id}/tests/run",
        Editor,
        Config,
    ),
    need(
        "DELETE",
        "/api/v1/configs/{config_id}/versions/{code_id}/tests/{test_id}",
        Editor,
        Config,
    ),
    need(
        "GET",
        "/api/v1/configs/{config_id}/versions/{code_id}/reports",
        Viewer,
        Config,
    ),
    need(
        "GET",
        "/api/v1/configs/{config_id}/versions/{code_id}/reports/summary",
        Viewer,
        Config,
    ),
    need("GET", "/api/v1/plans", Viewer, Narrowed),
    need("POST", "/api/v1/configs/{config_id}/plans", Publisher, Config),
    need("GET", "/api/v1/configs/{config_id}/plans", Viewer, Config),
    need("GET", "/api/v1/configs/{config_id}/plans/{plan_id}", Viewer, Config),
    need(
        "POST",
        "/api/v1/configs/{config_id}/plans/{plan_id}/pause",
        Publisher,
        Config,
    ),
    need(
        "POST",
        "/api/v1/configs/{config_id}/plans/{plan_id}/resume",
        Publisher,
        Config,
    ),
    need(
        "POST",
        "/api/v1/configs/{config_id}/plans/{plan_id}/abort",
        Publisher,
        Config,
    ),
    need("GET", "/api/v1/changes", Viewer, Narrowed),
    need("GET", "/api/v1/changes/{change_id}", Viewer, Narrowed),
    need("POST", "/api/v1/changes/{change_id}/approve", Publisher, Narrowed),
    need("POST", "/api/v1/changes/{change_id}/reject", Publisher, Narrowed),
    need("POST", "/api/v1/changes/{change_id}/cancel", Viewer, Narrowed),
    need("POST", "/api/v1/tokens", Admin, All),
    need("GET", "/api/v1/tokens", Admin, All),
    need("DELETE", "/api/v1/tokens/{name}", Admin, All),
    need("DELETE", "/api/v1/sessions", Admin, All),
    need("POST", "/api/v1/admin/reload", Admin, All),
    need("GET", "/api/v1/admin/pool", Admin, All),
    need("POST", "/api/v1/admin/pool/pause", Admin, All),
    need("POST", "/api/v1/admin/pool/resume", Admin, All),
    need("POST", "/api/v1/admin/pool/resize", Admin, All),
    need("GET", "/metrics", Viewer, All),
    need("GET", "/api/v1/stats", Viewer, All),
    need("GET", "/api/v1/openapi.json", Viewer, Narrowed),
];

/// What `method path` needs, if the table names it.
pub fn need_of(method: &Method, path: &str) -> Option<&'static Need> {
    // axum answers HEAD with the GET route.
    let method = if method == Method::HEAD { "GET" } else { method.as_str() };
    NEEDS.iter().find(|n| n.path == path && n.method == method)
}

/// 403 naming the role and where it is needed.
pub fn refuse(role: Role, over: &str) -> ApiError {
    ApiError::forbidden(
        ErrorCode::RoleRequired,
        format!("this needs the `{role}` role over {over}"),
    )
}

/// Whether `caller` holds `role` over config `id`; 403 naming it if not.
pub fn require(caller: &Caller, role: Role, id: &str) -> Result<(), ApiError> {
    match caller.may(role, id) {
        true => Ok(()),
        false => Err(refuse(role, &format!("config `{id}`"))),
    }
}

/// Authenticates the request and checks its route's need; the `Caller` (and
/// a session's CSRF token) goes into the request's extensions for the handler.
pub async fn guard(
    State(auth): State<Arc<Authenticator>>,
    matched: Option<MatchedPath>,
    params: Result<RawPathParams, axum::extract::rejection::RawPathParamsRejection>,
    mut request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let identity = auth.identify(request.method(), request.headers()).await?;
    let caller = identity.caller;
    let path = matched.as_ref().map_or("", MatchedPath::as_str);
    let need = need_of(request.method(), path).ok_or_else(|| {
        ApiError::forbidden(
            ErrorCode::RoleRequired,
            format!("no role is set for `{path}`; refused to everyone"),
        )
    })?;
    match need.scope {
        Scope::Config => {
            // A path that is not UTF-8 goes on to the handler, whose own
            // extractor refuses it (400 `invalid_path`) before it acts.
            if let Ok(params) = &params {
                let id = params
                    .iter()
                    .find(|(key, _)| *key == "config_id")
                    .map(|(_, value)| value);
                require(&caller, need.role, id.unwrap_or_default())?;
            }
        }
        Scope::Service => {
            if let Ok(params) = &params {
                let name = params.iter().find(|(key, _)| *key == "service").map(|(_, value)| value);
                let name = name.unwrap_or_default();
                if !caller.may(need.role, name) {
                    return Err(refuse(need.role, &format!("service `{name}`")));
                }
            }
        }
        Scope::Some if !caller.may_somewhere(need.role) => return Err(refuse(need.role, "some config")),
        Scope::All if !caller.may_everywhere(need.role) => return Err(refuse(need.role, "every config (`*`)")),
        Scope::Some | Scope::All => {}
    }
    request.extensions_mut().insert(caller);
    if let Some(csrf) = identity.csrf {
        request.extensions_mut().insert(SessionCsrf(csrf));
    }
    Ok(next.run(request).await)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_names_each_route_once() {
        for (i, n) in NEEDS.iter().enumerate() {
            let again = NEEDS[..i].iter().any(|m| m.method == n.method && m.path == n.path);
            assert!(!again, "{} {} is named twice", n.method, n.path);
            assert_eq!(n.scope == Scope::Config, n.path.contains("{config_id}"), "{}", n.path);
        }
    }
}
