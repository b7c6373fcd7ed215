//! Push over WebSocket: the original `GET /push/{id}` and `POST /update/{id}`,
//! and the native `GET /api/v1/subscribe`.

use axum::Json;
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{Path, State};
use axum::http::header::AUTHORIZATION;
use axum::http::{HeaderMap, Method};
use axum::response::Response;
use serde::Serialize;

use super::AppState;
use super::auth::{check_secret, secret_header};
use super::codes::ErrorCode;
use super::error::{ApiError, CompatError};
use super::extract::ClientAddress;
use std::net::IpAddr;

use crate::actors::push::{Protocol, Reader, SocketPermit};
use crate::domain::model::now_millis;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// tungstenite reads into a 128 KiB buffer per socket by default; clients
/// send almost nothing, so a small one keeps idle sockets cheap.
const READ_BUFFER: usize = 4 << 10;
const WRITE_BUFFER: usize = 4 << 10;
/// Client messages are small JSON; anything larger is refused.
const MAX_MESSAGE: usize = 64 << 10;

fn sized(ws: WebSocketUpgrade) -> WebSocketUpgrade {
    ws.read_buffer_size(READ_BUFFER)
        .write_buffer_size(WRITE_BUFFER)
        .max_message_size(MAX_MESSAGE)
        .max_frame_size(MAX_MESSAGE)
}

/// The config's secret is checked before the upgrade, so a refusal is an
/// ordinary HTTP error (400 missing or unknown config, 403 wrong secret).
pub async fn compat_push(
    State(app): State<AppState>,
    headers: HeaderMap,
    ClientAddress(address): ClientAddress,
    Path(config_id): Path<String>,
    ws: WebSocketUpgrade,
) -> Result<Response, CompatError> {
    let config = app.releases.config(&config_id).await?;
    let secret = secret_header(&headers)?;
    if !config.accepts_secret(secret, now_millis()) {
        return Err(ApiError::forbidden(ErrorCode::WrongSecret, "wrong secret").into());
    }
    // The socket keeps the secret: it is closed when that secret's grace ends.
    let initial = (config_id, secret.to_owned());
    let permit = admit(&app, address)?;
    let push = app.push.clone();
    Ok(sized(ws).on_upgrade(move |socket| async move {
        push.connect(socket, permit, Protocol::Compat, Some(initial), None)
            .await;
    }))
}

fn admit(app: &AppState, address: IpAddr) -> Result<SocketPermit, ApiError> {
    app.push.admit(address).ok_or_else(|| {
        let limit = app.push.max_sockets_per_address();
        // Spread over ten seconds, so that clients refused together do not
        // all come back at the same moment.
        let retry_after_s = RETRY_AFTER_MIN_S + rand::random::<u64>() % RETRY_AFTER_SPREAD_S;
        ApiError::TooManyRequests {
            message: format!(
                "{address} already holds {limit} push sockets, the most one address may hold \
                 (push.max_sockets_per_address); close one, or retry after {retry_after_s} s. \
                 If many clients share this address (a NAT or a proxy), raise the setting."
            ),
            retry_after_s,
        }
    })
}

/// A refused socket is told to wait between 5 and 14 seconds.
const RETRY_AFTER_MIN_S: u64 = 5;
const RETRY_AFTER_SPREAD_S: u64 = 10;

/// One socket, many configs: each `subscribe` message carries its secret.
#[utoipa::path(
    get,
    path = "/api/v1/subscribe",
    summary = "WebSocket: subscribe to configs by revision",
    responses((status = 101, description = "switching to WebSocket"), crate::http::error::Failures)
)]
pub async fn subscribe(
    State(app): State<AppState>,
    ClientAddress(address): ClientAddress,
    headers: HeaderMap,
    ws: WebSocketUpgrade,
) -> Result<Response, ApiError> {
    // A token is needed only to follow registry services; one that is sent
    // must be valid, so a wrong one is told at once rather than at subscribe.
    // The socket asks again at each subscribe and each message.
    let reader = match headers.contains_key(AUTHORIZATION) {
        true => Some(reader_of(&app, headers).await?),
        false => None,
    };
    let permit = admit(&app, address)?;
    let push = app.push.clone();
    Ok(sized(ws).on_upgrade(move |socket| async move {
        push.connect(socket, permit, Protocol::Native, None, reader).await;
    }))
}

/// How long a socket's token lookup stands: every subscriber of a service
/// is told of each change, and each would otherwise ask the store at once.
const READER_FOR: Duration = Duration::from_secs(1);

/// Who the socket's token is, asked again when its last answer is older
/// than `READER_FOR`; a wrong token refuses the upgrade.
async fn reader_of(app: &AppState, headers: HeaderMap) -> Result<Reader, ApiError> {
    let caller = app.auth.identify(&Method::GET, &headers).await?.caller;
    let last = Arc::new(Mutex::new((Instant::now(), Some(caller))));
    let auth = app.auth.clone();
    Ok(Arc::new(move || {
        let (auth, headers, last) = (auth.clone(), headers.clone(), last.clone());
        Box::pin(async move {
            let known = last
                .lock()
                .ok()
                .filter(|l| l.0.elapsed() < READER_FOR)
                .map(|l| l.1.clone());
            if let Some(caller) = known {
                return caller;
            }
            let caller = auth.identify(&Method::GET, &headers).await.ok().map(|i| i.caller);
            if let Ok(mut l) = last.lock() {
                *l = (Instant::now(), caller.clone());
            }
            caller
        })
    }))
}

#[derive(Serialize)]
struct UpdateData {
    client_num: usize,
}

#[derive(Serialize)]
pub struct UpdateReply {
    data: UpdateData,
    message: &'static str,
}

/// Tells this node's subscribers of the config to fetch again, without a
/// change; answers how many there were.
pub async fn compat_update(
    State(app): State<AppState>,
    headers: HeaderMap,
    Path(config_id): Path<String>,
) -> Result<Json<UpdateReply>, CompatError> {
    check_secret(&headers, &app.update_secret)?;
    let config = app.releases.config(&config_id).await?;
    let client_num = app.push.subscribers(&config_id).await?;
    app.announcer.nudge(&config)?;
    Ok(Json(UpdateReply {
        data: UpdateData { client_num },
        message: "success",
    }))
}
