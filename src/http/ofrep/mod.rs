//! The OpenFeature Remote Evaluation Protocol (OFREP), so any OpenFeature
//! SDK's OFREP provider reads Vane: a flag is a config, its key the config
//! id, its value the config's result, its variant the code id.
//!
//! Single evaluation (`evaluate.rs`) serves server-side providers, one
//! request per evaluation; bulk evaluation serves client-side providers, one
//! request per context, scoped by a client token (`access.rs`), with an
//! ETag and a Server-Sent Events stream that says when to fetch again
//! (`events.rs`). Answers and error codes are shaped in `answer.rs`.

mod access;
mod answer;
mod evaluate;
mod events;

use axum::Router;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

pub use access::LiveAccess;
pub use evaluate::{__path_bulk, __path_single};

use super::AppState;

/// The OFREP routes; no admin token: clients call them.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/ofrep/v1/evaluate/flags/{key}", post(evaluate::single))
        .route("/ofrep/v1/evaluate/flags", post(evaluate::bulk))
        .route("/ofrep/v1/events", get(events::stream))
        .route("/ofrep/v1/configuration", get(configuration))
}

/// What a provider that asks may assume: it may poll, every type is served.
const CONFIGURATION: &str = r#"{"name":"vane","capabilities":{"cacheInvalidation":{"polling":{"enabled":true,"minPollingIntervalMs":1000}},"flagEvaluation":{"supportedTypes":["int","float","string","boolean","object"]}}}"#;

/// Changes only with Vane itself.
const CONFIGURATION_ETAG: &str = concat!("\"vane-", env!("CARGO_PKG_VERSION"), "\"");

async fn configuration(headers: HeaderMap) -> Response {
    let etag = HeaderValue::from_static(CONFIGURATION_ETAG);
    if evaluate::not_modified(&headers, &etag) {
        return (StatusCode::NOT_MODIFIED, [(header::ETAG, etag)]).into_response();
    }
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static("application/json")),
            (header::ETAG, etag),
        ],
        CONFIGURATION,
    )
        .into_response()
}
