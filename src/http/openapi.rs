//! `GET /api/v1/openapi.json`: the native API, generated from the handlers'
//! annotations (utoipa), so it cannot drift from the routes.

use axum::Json;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, OpenApi};

use super::{admin, cases, changes, fetch, observe, ofrep, ops, push, reports, roles, rollout, services, tokens};

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
        rollout::create_plan, rollout::list_plans, rollout::open_plans, rollout::get_plan,
        rollout::pause, rollout::resume, rollout::abort,
        ops::reload_route, ops::pool_status, ops::pause, ops::resume, ops::resize,
        fetch::evaluate, push::subscribe, observe::stats_route,
        ofrep::single, ofrep::bulk,
        tokens::create, tokens::list, tokens::remove, tokens::me, tokens::end_sessions,
        changes::list, changes::details, changes::approve, changes::reject, changes::cancel,
        services::register, services::deregister, services::list, services::show,
    ),
    modifiers(&BearerAuth, &ClosedStrategies, &Roles)
)]
struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme("bearer", SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)));
    }
}

/// serde refuses unknown fields in a rollout strategy (a tagged enum), which
/// utoipa does not state for enum variants: stated here, so a client (or a
/// fuzzer) is not told a field is allowed that the server refuses.
struct ClosedStrategies;

impl Modify for ClosedStrategies {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::RefOr;
        use utoipa::openapi::schema::{AdditionalProperties, Schema};
        let strategy = openapi.components.as_mut().and_then(|c| c.schemas.get_mut("Strategy"));
        if let Some(RefOr::T(Schema::OneOf(one_of))) = strategy {
            for variant in &mut one_of.items {
                if let RefOr::T(Schema::Object(object)) = variant {
                    object.additional_properties = Some(Box::new(AdditionalProperties::FreeForm(false)));
                }
            }
        }
    }
}

/// Each operator route's role, from the table the guard reads: in the
/// operation's description and as `x-vane-role` and `x-vane-scope`.
struct Roles;

impl Modify for Roles {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::extensions::ExtensionsBuilder;
        for need in roles::NEEDS {
            let Some(item) = openapi.paths.paths.get_mut(need.path) else {
                continue;
            };
            let operation = match need.method {
                "GET" => item.get.as_mut(),
                "POST" => item.post.as_mut(),
                "PATCH" => item.patch.as_mut(),
                "DELETE" => item.delete.as_mut(),
                "PUT" => item.put.as_mut(),
                _ => None,
            };
            let Some(operation) = operation else { continue };
            let over = match need.scope {
                roles::Scope::Config => "the config in the path",
                roles::Scope::Some => "the configs it touches",
                roles::Scope::All => "every config (`*`)",
                roles::Scope::Service => "the service in the path",
            };
            let said = format!("Needs the `{}` role over {over}.", need.role);
            operation.description = Some(match operation.description.take() {
                Some(d) if !d.is_empty() => format!("{d}\n\n{said}"),
                _ => said,
            });
            let extensions = ExtensionsBuilder::new()
                .add("x-vane-role", need.role.as_str())
                .add("x-vane-scope", format!("{:?}", need.scope).to_lowercase())
                .build();
            match operation.extensions.as_mut() {
                Some(e) => e.merge(extensions),
                None => operation.extensions = Some(extensions),
            }
        }
    }
}

pub async fn document() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}
