//! JSON bodies parsed with our own errors. The content type is not required:
//! the original service's clients do not always send one.

use std::net::{IpAddr, SocketAddr};

use axum::body::Bytes;
use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, Request};
use axum::http::StatusCode;
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use super::AppState;
use super::codes::ErrorCode;
use super::error::{ApiError, CompatError};

pub struct Body<T>(pub T);

/// Built once: building a searcher took as long as searching a fetch's body.
static ESCAPED_NUL: std::sync::LazyLock<memchr::memmem::Finder<'static>> =
    std::sync::LazyLock::new(|| memchr::memmem::Finder::new(b"\\u0000"));

pub struct CompatBody<T>(pub T);

/// The whole body, within `server.max_body_bytes` and `server.body_timeout_ms`.
pub(super) async fn read_bytes(req: Request) -> Result<Bytes, ApiError> {
    Bytes::from_request(req, &()).await.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::PayloadTooLarge("the request body is over the limit set by server.max_body_bytes".into())
        } else if timed_out(&e) {
            crate::metrics::connection_closed("body_timeout");
            ApiError::BodyTimeout("the request body did not arrive in time".into())
        } else {
            ApiError::bad_request(ErrorCode::MalformedBody, format!("could not read body: {e}"))
        }
    })
}

async fn parse<T: DeserializeOwned>(req: Request) -> Result<T, ApiError> {
    let bytes = read_bytes(req).await?;
    // serde reads a struct from an array by position (`[null, null]`):
    // every body Vane takes is an object, so anything else is refused.
    if bytes.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(ApiError::bad_request(
            ErrorCode::MalformedBody,
            "the body must be a JSON object",
        ));
    }
    // PostgreSQL stores no NUL in text and SQLite and MySQL would: refused
    // here for all, naming where it is. JSON can carry one only escaped, and its
    // `\u` is lower-case; every fetch passes here, so a SIMD search.
    if ESCAPED_NUL.find(&bytes).is_some() {
        let value: serde_json::Value = serde_json::from_slice(&bytes)
            .map_err(|e| ApiError::bad_request(ErrorCode::MalformedBody, format!("malformed JSON body: {e}")))?;
        if let Some(place) = nul_at(&value, "body") {
            // Well-formed and of the right shape, but not storable: 422.
            return Err(ApiError::unprocessable(
                ErrorCode::NulCharacter,
                format!("{place} contains a NUL character (\\u0000), which Vane does not accept"),
            ));
        }
    }
    serde_json::from_slice(&bytes)
        .map_err(|e| ApiError::bad_request(ErrorCode::MalformedBody, format!("malformed JSON body: {e}")))
}

/// Where in `value` a string or key holds a NUL, as `body.params.name`.
pub(super) fn nul_at(value: &serde_json::Value, place: &str) -> Option<String> {
    use serde_json::Value;
    match value {
        Value::String(s) if s.contains('\0') => Some(place.to_owned()),
        Value::Array(items) => items
            .iter()
            .enumerate()
            .find_map(|(i, v)| nul_at(v, &format!("{place}[{i}]"))),
        Value::Object(map) => map.iter().find_map(|(k, v)| {
            let here = format!("{place}.{}", k.replace('\0', "\\u0000"));
            if k.contains('\0') { Some(here) } else { nul_at(v, &here) }
        }),
        _ => None,
    }
}

/// Refuses a path with an encoded NUL (`/push/a%00`) before any route
/// looks it up, so no store sees it.
pub(super) fn nul_in_path(request: &Request) -> Option<axum::response::Response> {
    use axum::response::IntoResponse;
    let path = request.uri().path().as_bytes();
    path.windows(3).any(|w| w.eq_ignore_ascii_case(b"%00")).then(|| {
        ApiError::bad_request(ErrorCode::NulCharacter, "the path contains a NUL character (%00)").into_response()
    })
}

/// Whether reading the body failed at `server.body_timeout_ms`.
fn timed_out(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause = Some(e);
    while let Some(error) = cause {
        if error.is::<crate::server::BodyTimedOut>() {
            return true;
        }
        cause = error.source();
    }
    false
}

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for Body<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, _: &S) -> Result<Self, Self::Rejection> {
        parse(req).await.map(Body)
    }
}

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for CompatBody<T> {
    type Rejection = CompatError;

    async fn from_request(req: Request, _: &S) -> Result<Self, Self::Rejection> {
        parse(req).await.map(CompatBody).map_err(CompatError)
    }
}

/// The client's address: the peer's, or, when the peer is a trusted proxy
/// (`server.trusted_proxies`), the right-most untrusted address in
/// `server.client_address_header` (`proxies.rs`).
pub struct ClientAddress(pub IpAddr);

impl FromRequestParts<AppState> for ClientAddress {
    type Rejection = CompatError;

    async fn from_request_parts(parts: &mut Parts, app: &AppState) -> Result<Self, Self::Rejection> {
        match parts.extensions.get::<ConnectInfo<SocketAddr>>() {
            Some(peer) => Ok(Self(app.proxies.client(peer.0.ip(), &parts.headers))),
            None => Err(CompatError(ApiError::Internal(
                "the server was started without peer addresses".into(),
            ))),
        }
    }
}
