//! OFREP evaluation: one flag (server-side providers, per evaluation) and
//! every flag a client token may read (client-side providers, per context).

use std::net::IpAddr;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use sha2::{Digest, Sha256};

use super::access::{self, Client, OfrepAccess};
use super::answer::{Failure, FlagOutcome, json};
use crate::actors::config_cache::{Entry, ResolveError};
use crate::actors::evaluator::EvalError;
use crate::domain::model::now_millis;
use crate::domain::ofrep::{self, Reason, Split};
use crate::http::AppState;
use crate::http::codes::OfrepErrorCode;
use crate::http::error::ApiError;
use crate::http::extract::{ClientAddress, read_bytes};
use crate::http::fetch::serve;

/// Flags of one bulk evaluation evaluated at once: enough to overlap their
/// round trips, few enough that one client cannot fill the pool's queue.
const BULK_CONCURRENCY: usize = 8;

/// `POST /ofrep/v1/evaluate/flags/{key}`: the config `key` for a context.
#[utoipa::path(
    post,
    path = "/ofrep/v1/evaluate/flags/{key}",
    tag = "OpenFeature (OFREP)",
    summary = "Evaluate one config as an OpenFeature flag",
    description = "The config's secret or a client token may be presented as `Authorization: Bearer` or \
        `X-API-Key`; with `ofrep.require_credentials` one must be. `targetingKey` is the device id, \
        `platform`, `version` and `app_version` the request metadata, the other attributes the parameters.",
    request_body(content = Option<EvaluationRequest>, content_type = "application/json", description = "optional: no body is an empty context"),
    responses(
        (status = 200, description = "the value, or no value and reason DISABLED or DEFAULT: the caller's default stands", body = Object),
        (status = 400, description = "errorCode PARSE_ERROR, TARGETING_KEY_MISSING, INVALID_CONTEXT or GENERAL", body = Object),
        (status = 401, description = "a credential that is neither the config's secret nor a client token"),
        (status = 403, description = "a client token whose configs do not include this one"),
        (status = 404, description = "errorCode FLAG_NOT_FOUND", body = Object),
        (status = 413, description = "the body is over the size limit", body = Object),
        (status = 503, description = "shed or the store is down; `Retry-After` says when to retry", body = Object),
    ),
    params(("key" = String, Path, description = "the config id"))
)]
pub async fn single(
    State(app): State<AppState>,
    Path(key): Path<String>,
    ClientAddress(address): ClientAddress,
    headers: HeaderMap,
    request: Request,
) -> Response {
    match single_outcome(&app, &key, &headers, address, request).await {
        Ok(outcome) => outcome.into_response(),
        Err(failure) => failure.into_response(),
    }
}

async fn single_outcome(
    app: &AppState,
    key: &str,
    headers: &HeaderMap,
    address: IpAddr,
    request: Request,
) -> Result<FlagOutcome, Failure> {
    let access = app.ofrep.current();
    let credential = access::presented(headers);
    if credential.is_none() && access.require_credentials {
        return Err(Failure::Denied(StatusCode::UNAUTHORIZED));
    }
    let context = read_context(request, Some(key)).await?;
    let client = credential.and_then(|c| access.client(c));
    if client.is_some_and(|c| !c.scope.covers(key)) {
        return Err(Failure::Denied(StatusCode::FORBIDDEN));
    }
    let entry = match app.cache.entry(key).await {
        Ok(entry) => entry,
        // Where credentials are required, a caller without good ones learns
        // nothing, not even which configs exist.
        Err(_) if access.require_credentials && client.is_none() => {
            return Err(Failure::Denied(StatusCode::UNAUTHORIZED));
        }
        Err(e) => return Ok(FlagOutcome::unresolved(key, e)),
    };
    // A credential that is no client token must be the config's secret.
    if let Some(secret) = credential.filter(|_| client.is_none())
        && !entry.config.accepts_secret(secret, now_millis())
    {
        return Err(Failure::Denied(StatusCode::UNAUTHORIZED));
    }
    Ok(flag(app, &entry, &context, address).await)
}

/// One config's outcome for a context, from the entry memory holds.
async fn flag(app: &AppState, entry: &Entry, context: &Split, address: IpAddr) -> FlagOutcome {
    let key = &entry.config.id;
    let revision = entry.config.revision;
    let resolved = match entry.resolve(&context.meta) {
        Ok(resolved) => resolved,
        Err(ResolveError::Refused(refusal)) => return FlagOutcome::refused(key, refusal, revision),
        Err(other) => return FlagOutcome::unresolved(key, other),
    };
    // Without the device the bucket is the same for every caller: refused,
    // rather than silently giving them all one side of the split.
    if resolved.split && !context.has_targeting_key {
        return FlagOutcome::Failed {
            key: key.clone(),
            code: OfrepErrorCode::TargetingKeyMissing,
            details: format!(
                "config `{key}` is in a gray release: the context needs a `targetingKey` (the device id) to choose its bucket"
            ),
        };
    }
    let served = match serde_json::value::to_raw_value(&context.params) {
        Ok(params) => serve(app, &resolved.version, address, params).await,
        Err(e) => Err(EvalError::Unavailable(format!("encoding params: {e}"))),
    };
    match served {
        Ok(value) => FlagOutcome::Served {
            key: key.clone(),
            value,
            reason: Reason::of(resolved.split, resolved.targeted),
            variant: resolved.version.code_id.clone(),
            revision,
        },
        Err(e) => FlagOutcome::unevaluated(key, e),
    }
}

/// `POST /ofrep/v1/evaluate/flags`: every config the client token may read.
#[utoipa::path(
    post,
    path = "/ofrep/v1/evaluate/flags",
    tag = "OpenFeature (OFREP)",
    summary = "Evaluate every config a client token may read",
    description = "Takes a client token from `[ofrep] client_tokens` (`Authorization: Bearer` or `X-API-Key`). \
        The answer carries an `ETag` from the configs' revisions and the context; `If-None-Match` with it \
        gets 304. `eventStreams` names a Server-Sent Events stream that says `refetchEvaluation` when \
        any of the token's configs changes.",
    request_body(content = Option<EvaluationRequest>, content_type = "application/json", description = "optional: no body is an empty context"),
    responses(
        (status = 200, description = "`flags`: each config's value or error; `eventStreams`", body = Object),
        (status = 304, description = "nothing changed since the `ETag` presented"),
        (status = 400, description = "errorCode PARSE_ERROR, INVALID_CONTEXT, or GENERAL when the token reads more configs than `ofrep.max_bulk_flags`", body = Object),
        (status = 401, description = "no client token, or an unknown one"),
        (status = 413, description = "the body is over the size limit", body = Object),
        (status = 503, description = "shed or the store is down; `Retry-After` says when to retry", body = Object),
    ),
    params(("If-None-Match" = Option<String>, Header, description = "the ETag of the last answer"))
)]
pub async fn bulk(
    State(app): State<AppState>,
    ClientAddress(address): ClientAddress,
    headers: HeaderMap,
    request: Request,
) -> Response {
    match bulk_answer(&app, &headers, address, request).await {
        Ok(response) => response,
        Err(failure) => failure.into_response(),
    }
}

async fn bulk_answer(
    app: &AppState,
    headers: &HeaderMap,
    address: IpAddr,
    request: Request,
) -> Result<Response, Failure> {
    let access = app.ofrep.current();
    let client = access::presented(headers)
        .and_then(|credential| access.client(credential))
        .ok_or(Failure::Denied(StatusCode::UNAUTHORIZED))?;
    let from_proxy = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .is_some_and(|peer| app.proxies.trusts(peer.0.ip()));
    let context = read_context(request, None).await?;
    let ids = app
        .catalog
        .ids()
        .await
        .map_err(|e| Failure::Busy(StatusCode::SERVICE_UNAVAILABLE, e.to_string()))?;
    let keys = client.covered(&ids);
    if keys.len() > access.max_bulk_flags {
        tracing::warn!(client = %client.name, configs = keys.len(), "an OFREP client token reads too many configs");
        return Err(Failure::Refused {
            key: None,
            code: OfrepErrorCode::General,
            details: format!(
                "client token `{}` reads {} configs, more than ofrep.max_bulk_flags ({})",
                client.name,
                keys.len(),
                access.max_bulk_flags
            ),
        });
    }
    let held = entries(app, &keys).await?;
    let etag = etag(client, &held, &context);
    if not_modified(headers, &etag) {
        return Ok((StatusCode::NOT_MODIFIED, [(header::ETAG, etag)]).into_response());
    }
    let context = Arc::new(context);
    let flags = futures_util::stream::iter(held)
        .map(|entry| {
            let (app, context) = (app.clone(), context.clone());
            async move { flag(&app, &entry, &context, address).await }
        })
        .buffered(BULK_CONCURRENCY)
        .collect::<Vec<_>>()
        .await;
    if let Some(FlagOutcome::Busy(details)) = flags.iter().find(|f| matches!(f, FlagOutcome::Busy(_))) {
        return Err(Failure::Busy(StatusCode::SERVICE_UNAVAILABLE, details.clone()));
    }
    let mut body = serde_json::json!({ "flags": flags });
    if let Some(url) = events_url(&access, headers, client, from_proxy) {
        body["eventStreams"] = serde_json::json!([{
            "type": "sse",
            "url": url,
            "inactivityDelaySec": access.inactivity_delay_s,
        }]);
    }
    let mut response = json(&body);
    response.headers_mut().insert(header::ETAG, etag);
    Ok(response)
}

/// The entries of `keys` in order: memory's, and those it lacks loaded a
/// few at a time. One deleted since the list was read is left out.
async fn entries(app: &AppState, keys: &[String]) -> Result<Vec<Arc<Entry>>, Failure> {
    let mut held = app.cache.held(keys);
    let missing: Vec<usize> = (0..keys.len()).filter(|&i| held[i].is_none()).collect();
    // Owned values in each future: borrowed ones defeat the handler's Send proof.
    let loaded = futures_util::stream::iter(missing)
        .map(|i| {
            let (app, key) = (app.clone(), keys[i].clone());
            async move { (i, app.cache.entry(&key).await) }
        })
        .buffered(BULK_CONCURRENCY)
        .collect::<Vec<_>>()
        .await;
    for (i, entry) in loaded {
        match entry {
            Ok(entry) => held[i] = Some(entry),
            Err(ResolveError::Refused(_)) => {}
            Err(e) => {
                return Err(Failure::Busy(
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!("config `{}`: {e}", keys[i]),
                ));
            }
        }
    }
    Ok(held.into_iter().flatten().collect())
}

/// The body OFREP evaluation takes: `{"context": {...}}`, both optional.
/// For the document only: `read_context` reads it, refusing as OFREP says.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub struct EvaluationRequest {
    context: Option<EvaluationContext>,
}

/// The evaluation context: who is asking, and the config's parameters.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
struct EvaluationContext {
    /// The device id: it picks the gray bucket.
    #[schema(rename = "targetingKey")]
    targeting_key: Option<String>,
    /// The platform the rules are chosen by.
    platform: Option<String>,
    /// The app's integer version, for `version` rules.
    version: Option<i64>,
    /// A semantic version ("2.1.0"), for `app_version` rules.
    app_version: Option<String>,
}

/// Reads the body's context, refusing it as the specification says.
async fn read_context(request: Request, key: Option<&str>) -> Result<Split, Failure> {
    let bytes = read_bytes(request).await.map_err(|e| match e {
        ApiError::PayloadTooLarge(details) => Failure::Body(StatusCode::PAYLOAD_TOO_LARGE, details),
        ApiError::BodyTimeout(details) => Failure::Body(StatusCode::REQUEST_TIMEOUT, details),
        other => parse_error(key, other.to_string()),
    })?;
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return ofrep::split(None).map_err(|e| Failure::context(key, e));
    }
    let body: serde_json::Value =
        serde_json::from_slice(&bytes).map_err(|e| parse_error(key, format!("malformed JSON body: {e}")))?;
    let context = match body {
        serde_json::Value::Object(mut body) => body.remove("context"),
        // As absent: what a client that serializes "no request" sends.
        serde_json::Value::Null => None,
        _ => return Err(parse_error(key, "the body must be a JSON object".into())),
    };
    ofrep::split(context).map_err(|e| Failure::context(key, e))
}

fn parse_error(key: Option<&str>, details: String) -> Failure {
    Failure::Refused {
        key: key.map(str::to_owned),
        code: OfrepErrorCode::ParseError,
        details,
    }
}

/// Changes with any config's revision, the set of configs, the token and
/// the context; the same on every node.
fn etag(client: &Client, entries: &[Arc<Entry>], context: &Split) -> HeaderValue {
    let mut hash = Sha256::new();
    hash.update(client.name.as_bytes());
    for entry in entries {
        hash.update(b"\0");
        hash.update(entry.config.id.as_bytes());
        hash.update(b"\0");
        hash.update(entry.config.revision.to_le_bytes());
    }
    // Serializing a Meta and a Value into a hasher cannot fail.
    let _ = serde_json::to_writer(HashWriter(&mut hash), &(&context.meta, &context.params));
    let digest = hash.finalize();
    let tag = format!("\"{}\"", crate::secrets::hex(&digest[..16]));
    HeaderValue::from_str(&tag).expect("hex is a valid header value")
}

struct HashWriter<'a>(&'a mut Sha256);

impl std::io::Write for HashWriter<'_> {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.update(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Whether `If-None-Match` names `etag` (weakly, as RFC 9110 compares for it) or is `*`.
pub(super) fn not_modified(headers: &HeaderMap, etag: &HeaderValue) -> bool {
    let ours = etag.to_str().unwrap_or_default();
    headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .any(|tag| tag == "*" || tag.trim_start_matches("W/") == ours)
}

/// The event stream's address: `ofrep.public_url`, else the `Host` the
/// client connected to, over http. `X-Forwarded-Host` and
/// `X-Forwarded-Proto` are believed only from a trusted proxy
/// (`server.trusted_proxies`): from anyone else they would let a caller
/// choose the address Vane hands out. A host that is not a plain host
/// name or address gets no `eventStreams`.
fn events_url(access: &OfrepAccess, headers: &HeaderMap, client: &Client, from_proxy: bool) -> Option<String> {
    let forwarded = |name: &str| {
        let value = headers.get(name).filter(|_| from_proxy)?.to_str().ok()?;
        // A chain of proxies appends; the last is the one Vane trusts.
        Some(value.rsplit(',').next()?.trim())
    };
    let base = match access.public_url.as_str() {
        "" => {
            let host = match forwarded("x-forwarded-host") {
                Some(host) => host,
                None => headers.get(header::HOST)?.to_str().ok()?,
            };
            let plain = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':' | b'[' | b']' | b'_');
            if host.is_empty() || !host.bytes().all(plain) {
                return None;
            }
            let scheme = forwarded("x-forwarded-proto")
                .filter(|p| matches!(*p, "http" | "https"))
                .unwrap_or("http");
            format!("{scheme}://{host}")
        }
        url => url.to_owned(),
    };
    Some(format!("{base}/ofrep/v1/events?ticket={}", client.ticket))
}
