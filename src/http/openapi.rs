//! `GET /api/v1/openapi.json`: the native API, generated from the handlers'
//! annotations (utoipa), so it cannot drift from the routes.

use axum::Json;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, OpenApi};

use super::{admin, cases, fetch, observe, ops, push, reports};

#[derive(OpenApi)]
#[openapi(
    info(title = "Vane", description = "Dynamic client configuration: the native API. \
        Admin routes take `Authorization: Bearer <token>`; errors are {\"error\":{\"code\",\"message\"}}. \
        The original service's routes (/config, /push, /update, /report, /test, /playground) are described in docs/API.md of the repository."),
    paths(
        admin::create_config, admin::list_configs, admin::get_config, admin::update_config,
        admin::create_version, admin::list_versions, admin::get_version,
        admin::release, admin::set_gray, admin::remove_gray, admin::rollback,
        admin::mark_broken, admin::clear_broken, admin::list_events,
        cases::create, cases::list, cases::remove, cases::run,
        reports::report, reports::list, reports::summary, admin::rotate_secret,
        ops::reload_route, ops::pool_status, ops::pause, ops::resume, ops::resize,
        fetch::evaluate, push::subscribe, observe::stats_route,
    ),
    modifiers(&BearerAuth)
)]
struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme("bearer", SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)));
    }
}

pub async fn document() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}

/// The error answers every native route shares, named once so each handler's
/// annotation lists only its success.
pub struct Failures;

// The error envelope, for the description only: `ApiError` builds it.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
struct ErrorBody {
    #[schema(inline)]
    error: ErrorDetail,
}

#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
struct ErrorDetail {
    /// Stable and machine-readable: `not_found`, `invalid_params`, ...
    code: String,
    /// Names the problem, for a person.
    message: String,
}

impl utoipa::IntoResponses for Failures {
    fn responses() -> std::collections::BTreeMap<String, utoipa::openapi::RefOr<utoipa::openapi::Response>> {
        use utoipa::PartialSchema;
        use utoipa::openapi::{ContentBuilder, ResponseBuilder, ResponsesBuilder};
        let body = || ContentBuilder::new().schema(Some(ErrorBody::schema())).build();
        ResponsesBuilder::new()
            .response(
                "4XX",
                ResponseBuilder::new()
                    .description("refused: the message names the problem")
                    .content("application/json", body()),
            )
            .response(
                "503",
                ResponseBuilder::new()
                    .description("a dependency is down or the pool is full; `Retry-After` says when to retry")
                    .content("application/json", body()),
            )
            .build()
            .into()
    }
}
