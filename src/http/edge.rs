//! What the router answers before or around a handler, in the error shape
//! of the route family it was meant for: axum's own rejections of a path
//! or query (plain text: `%FF` in a path, `?limit=x`) and a declared body
//! length over `server.max_body_bytes`, refused before any byte is read.

use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::codes::{ErrorCode, OfrepErrorCode};
use super::error::{ApiError, CompatError};

/// The original service's path prefixes (`server.original_routes`).
const ORIGINAL: &[&str] = &["/config/", "/push/", "/update/", "/report/", "/test/"];

/// The most of a plain-text rejection read to reshape; axum's are short.
const MAX_REJECTION: usize = 16 << 10;

/// `error` as the route family at `path` renders errors: the original's
/// envelope, OFREP's `errorCode`/`errorDetails`, or the native shape.
fn shaped(path: &str, error: ApiError) -> Response {
    if ORIGINAL.iter().any(|prefix| path.starts_with(prefix)) {
        return CompatError(error).into_response();
    }
    if path.starts_with("/ofrep/") {
        let status = error.status();
        let details = error.public_message();
        let body = match status {
            StatusCode::BAD_REQUEST => json!({"errorCode": OfrepErrorCode::ParseError, "errorDetails": details}),
            _ => json!({"errorDetails": details}),
        };
        return (status, axum::Json(body)).into_response();
    }
    error.into_response()
}

/// Every request's checks around the router, in one layer (a layer is a
/// boxed future and a cloned service on every request, a measurable part
/// of a memoized fetch): a NUL in the path, a declared body length over
/// the limit, and axum's plain-text rejections reshaped on the way out.
pub async fn guard(State(limit): State<usize>, request: Request, next: Next) -> Response {
    if let Some(refused) = super::extract::nul_in_path(&request) {
        return refused;
    }
    if let Some(refused) = declared_too_long(limit, &request) {
        return refused;
    }
    let uri = request.uri().clone();
    let response = next.run(request).await;
    json_rejection(uri.path(), response).await
}

/// A `Content-Length` over the limit is 413 at once: reading first would
/// hold the connection until `server.body_timeout_ms` for a body that
/// would be refused anyway.
fn declared_too_long(limit: usize, request: &Request) -> Option<Response> {
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    let length = declared.filter(|&length| length > limit as u64)?;
    let message = format!("the request body is {length} bytes, over the limit of {limit} (server.max_body_bytes)");
    Some(shaped(request.uri().path(), ApiError::PayloadTooLarge(message)))
}

/// axum answers a path or query it cannot read with a plain-text 400;
/// every route here answers JSON, so such an answer is reshaped, its text
/// kept as the message. The console's own plain pages are left alone.
async fn json_rejection(path: &str, response: Response) -> Response {
    let plain = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/plain"));
    if response.status() != StatusCode::BAD_REQUEST || !plain || path.starts_with("/console") {
        return response;
    }
    let text = match axum::body::to_bytes(response.into_body(), MAX_REJECTION).await {
        Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
        Err(_) => String::new(),
    };
    let code = if text.starts_with("Failed to deserialize query string") {
        ErrorCode::InvalidQuery
    } else if text.starts_with("Invalid URL") || text.contains("path") {
        ErrorCode::InvalidPath
    } else {
        ErrorCode::BadRequest
    };
    shaped(path, ApiError::bad_request(code, text))
}

/// A path no route has: 404 in its route family's JSON shape (axum's own
/// answer has no body at all).
pub async fn no_route(uri: axum::http::Uri) -> Response {
    shaped(uri.path(), ApiError::NotFound(format!("no route {}", uri.path())))
}

/// A route asked with a method it does not take: 405, in JSON, keeping the
/// `Allow` header axum names the methods in.
pub async fn wrong_method(method: axum::http::Method, uri: axum::http::Uri) -> Response {
    let message = format!("{} does not take {method}", uri.path());
    let mut response = shaped(uri.path(), ApiError::bad_request(ErrorCode::MethodNotAllowed, message));
    *response.status_mut() = StatusCode::METHOD_NOT_ALLOWED;
    response
}
