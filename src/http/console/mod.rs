//! `GET /console`: the management console, plain ES modules and a style
//! sheet compiled into the binary, so `vane serve` alone serves it. The page
//! holds no data: it signs in with an admin token kept for the tab and calls
//! the admin API like any client.

use axum::Router;
use axum::extract::Path;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use super::AppState;

/// Every file the console has, with its type.
const ASSETS: &[(&str, &str, &str)] = &[
    ("index.html", "text/html; charset=utf-8", include_str!("index.html")),
    ("console.css", CSS, include_str!("console.css")),
    ("app.js", JS, include_str!("app.js")),
    ("api.js", JS, include_str!("api.js")),
    ("dom.js", JS, include_str!("dom.js")),
    ("editor.js", JS, include_str!("editor.js")),
    ("configs.js", JS, include_str!("configs.js")),
    ("config.js", JS, include_str!("config.js")),
    ("events.js", JS, include_str!("events.js")),
    ("tests.js", JS, include_str!("tests.js")),
    ("plans.js", JS, include_str!("plans.js")),
    ("live.js", JS, include_str!("live.js")),
    ("compare.js", JS, include_str!("compare.js")),
    ("reports.js", JS, include_str!("reports.js")),
    ("highlight.js", JS, include_str!("highlight.js")),
    ("health.js", JS, include_str!("health.js")),
    ("serving.js", JS, include_str!("serving.js")),
    ("versions.js", JS, include_str!("versions.js")),
    ("version.js", JS, include_str!("version.js")),
    ("gate.js", JS, include_str!("gate.js")),
    ("upload.js", JS, include_str!("upload.js")),
    ("playground.js", JS, include_str!("playground.js")),
    ("sentence.js", JS, include_str!("sentence.js")),
    ("changes.js", JS, include_str!("changes.js")),
    // jsdiff 9.0.0 (BSD-3-Clause, vendor/diff.LICENSE), as npm ships it;
    // `.ci/console-vendor.sh` checks the copy.
    ("vendor/diff.min.js", JS, include_str!("vendor/diff.min.js")),
    // highlight.js 11.12.0 (BSD-3-Clause, vendor/hljs.LICENSE), likewise.
    ("vendor/hljs-core.min.js", JS, include_str!("vendor/hljs-core.min.js")),
    (
        "vendor/hljs-python.min.js",
        JS,
        include_str!("vendor/hljs-python.min.js"),
    ),
    (
        "vendor/hljs-javascript.min.js",
        JS,
        include_str!("vendor/hljs-javascript.min.js"),
    ),
    (
        "vendor/hljs-github.min.css",
        CSS,
        include_str!("vendor/hljs-github.min.css"),
    ),
];

const JS: &str = "text/javascript; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";

/// Only this server's own files run and are fetched, and nothing frames the
/// page: an injected script or a clickjacking frame gets nothing.
const POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; \
    img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// The console's routes; tokenless, since the page holds no data.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/console", get(async || asset("index.html")))
        .route("/console/", get(async || asset("index.html")))
        .route("/console/{file}", get(async |Path(file): Path<String>| asset(&file)))
        .route(
            "/console/vendor/{file}",
            get(async |Path(file): Path<String>| asset(&format!("vendor/{file}"))),
        )
}

fn asset(file: &str) -> Response {
    let Some((_, kind, body)) = ASSETS.iter().find(|(name, ..)| *name == file) else {
        // A 404 is a page of the console's origin too: the same policy, or a
        // browser sniffing it could run what an address put in the message.
        let mut response = (StatusCode::NOT_FOUND, format!("the console has no file `{file}`")).into_response();
        guarded(&mut response, "text/plain; charset=utf-8");
        return response;
    };
    let mut response = (*body).into_response();
    guarded(&mut response, kind);
    // Small, and changed only with Vane: revalidated on each load.
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

/// The type, and the headers every console response carries.
fn guarded(response: &mut Response, kind: &'static str) {
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(kind));
    headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(POLICY));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
}
