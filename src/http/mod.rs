//! HTTP: parse, ask the actors through their handles, render. One file per
//! surface; errors are mapped in `error.rs`.

mod admin;
mod auth;
mod cases;
mod changes;
pub mod codes;
mod console;
mod edge;
pub mod error;
mod extract;
mod fetch;
mod health;
mod observe;
mod ofrep;
mod openapi;
pub mod ops;
mod playground;
mod proxies;
mod push;
mod reports;
mod roles;
mod rollout;
mod schema;
mod services;
mod sso;
mod throttle;
mod tokens;

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::middleware;
use axum::routing::{get, post};

use crate::actors::Slot;
use crate::actors::change_bus::ChangeBusHandle;
use crate::actors::config_cache::{Catalog, ConfigCacheHandle};
use crate::actors::evaluator::EvaluatorPoolHandle;
use crate::actors::push::PushHandle;
use crate::actors::scheduler::SchedulerMsg;
use crate::service::announce::Announcer;
use crate::service::approvals::ApprovalsHandle;
use crate::service::plans::PlansHandle;
use crate::service::releases::ReleasesHandle;
use crate::service::reports::ReportsHandle;
use crate::shared::Shared;
pub use auth::{AdminTokens, Authenticator};
pub use ofrep::LiveAccess;
pub use proxies::Proxies;

/// What every handler reaches, behind one `Arc`: axum clones the state for
/// each request, and cloning a dozen handles cost more than the handler.
#[derive(Clone)]
pub struct AppState(Arc<Services>);

impl AppState {
    /// Shares `services` among the routes.
    pub fn new(services: Services) -> Self {
        Self(Arc::new(services))
    }
}

impl std::ops::Deref for AppState {
    type Target = Services;

    fn deref(&self) -> &Services {
        &self.0
    }
}

/// What the routes use.
pub struct Services {
    /// Configs and versions in memory.
    pub cache: ConfigCacheHandle,
    /// The sandbox workers.
    pub pool: EvaluatorPoolHandle,
    /// The management service (publish, rollback, tests).
    pub releases: ReleasesHandle,
    /// The push registry: WebSocket subscribers.
    pub push: PushHandle,
    /// Changes to and from the other nodes (over Redis, or by polling).
    pub bus: ChangeBusHandle,
    /// Where a change is announced (the original's update route nudges).
    pub announcer: Announcer,
    /// What nodes share through Redis, when there is one.
    pub shared: Option<Shared>,
    /// Who a request to an operator route acts as.
    pub auth: Arc<Authenticator>,
    /// Single sign-on for the console, when `[auth.oidc]` is set.
    pub sso: Option<Arc<crate::service::sso::Sso>>,
    /// Who may read what over OpenFeature (OFREP), as reloaded.
    pub ofrep: Arc<LiveAccess>,
    /// Every config id, for OFREP's bulk evaluation.
    pub catalog: Arc<Catalog>,
    /// The playground routes need no admin token.
    pub playground_open: bool,
    /// The `Secret` of the original `GET /test/{id}`.
    pub tests_secret: Arc<str>,
    /// The `Secret` of the original `POST /update/{id}`.
    pub update_secret: Arc<str>,
    /// Settings reload, log level and stats.
    pub reloader: Arc<crate::reload::Reloader>,
    /// Client reports and the served record.
    pub reports: ReportsHandle,
    /// Rollout plans.
    pub plans: PlansHandle,
    /// Change requests (four eyes).
    pub approvals: ApprovalsHandle,
    /// The service registry: instances and their leases.
    pub registry: crate::service::registry::RegistryHandle,
    /// The rollout Scheduler, for its liveness.
    pub scheduler: Slot<SchedulerMsg>,
    /// Whose forwarding headers are believed (`server.trusted_proxies`).
    pub proxies: Proxies,
    /// `server.original_routes`: off, the original service's routes answer 410.
    pub original_routes: bool,
}

/// The routes of each listener.
pub struct Routers {
    /// Clients' and operators' routes, on `server.listen`.
    pub public: Router,
    /// The observation routes, tokenless, for `server.admin_listen`; `None`
    /// when they stay on the public listener behind the admin token.
    pub admin: Option<Router>,
}

/// Every route, with tracing and the body limit. The observation routes
/// (metrics, stats, dashboard, OpenAPI) show worker pids, traffic and the
/// API's shape: on their own listener when `separate`, else behind the admin
/// token (the dashboard page holds no data and asks for the token).
pub fn routers(state: AppState, max_body_bytes: usize, separate: bool) -> Routers {
    let require_admin = || middleware::from_fn_with_state(state.auth.clone(), roles::guard);
    let observed = Router::new()
        .route("/metrics", get(observe::prometheus))
        .route("/api/v1/stats", get(observe::stats_route))
        .route("/api/v1/openapi.json", get(openapi::document));
    let admin = admin::routes()
        .merge(cases::admin_routes())
        .merge(reports::admin_routes())
        .merge(rollout::routes())
        .merge(ops::routes())
        .merge(tokens::routes())
        .merge(changes::routes())
        .merge(services::routes())
        .route_layer(require_admin());
    let mut public = Router::new().merge(admin);
    let mut tokenless = None;
    if separate {
        tokenless = Some(finish(
            observed.route("/dashboard", get(observe::dashboard)),
            &state,
            max_body_bytes,
        ));
    } else {
        public = public
            .merge(observed.route_layer(require_admin()))
            .route("/dashboard", get(observe::dashboard));
    }
    Routers {
        public: finish(client_routes(public, state.original_routes), &state, max_body_bytes),
        admin: tokenless,
    }
}

/// The original service's routes: answered, or with `server.original_routes`
/// off, refused before any of them reads its path, body or secret.
fn original_routes(on: bool) -> Router<AppState> {
    let routes = Router::new()
        .route("/config/{config_id}", post(fetch::compat_fetch))
        .route("/push/{config_id}", get(push::compat_push))
        .route("/update/{config_id}", post(push::compat_update))
        .merge(cases::compat_routes())
        .merge(reports::compat_routes());
    match on {
        true => routes,
        false => routes.route_layer(middleware::from_fn(error::original_routes_off)),
    }
}

fn client_routes(router: Router<AppState>, original: bool) -> Router<AppState> {
    router
        .merge(original_routes(original))
        .route("/api/v1/configs/{config_id}/evaluate", post(fetch::evaluate))
        .route("/api/v1/subscribe", get(push::subscribe))
        .route("/playground/starlark", post(playground::starlark))
        .route("/playground/js", post(playground::javascript))
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .merge(reports::client_routes())
        .merge(ofrep::routes())
        .merge(console::routes())
        .merge(sso::routes())
}

/// Request metrics, tracing, the body limit and the state.
fn finish(router: Router<AppState>, state: &AppState, max_body_bytes: usize) -> Router {
    router
        // A route layer, so the span can name the matched route.
        .route_layer(middleware::from_fn(observe::track))
        .fallback(edge::no_route)
        .method_not_allowed_fallback(edge::wrong_method)
        .layer(DefaultBodyLimit::max(max_body_bytes))
        .layer(middleware::from_fn_with_state(max_body_bytes, edge::guard))
        .with_state(state.clone())
}
