//! Liveness and readiness.

use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde_json::{Value, json};

use super::AppState;

pub async fn healthz() -> &'static str {
    "ok"
}

/// A probe must answer quickly even when the store does not.
const STORE_PING_LIMIT: Duration = Duration::from_secs(2);

/// Ready when the store answers and the actors are running.
pub async fn readyz(State(app): State<AppState>) -> (StatusCode, Json<Value>) {
    let store = app.releases.store_reachable(STORE_PING_LIMIT).await;
    let actors = app.cache.is_alive() && app.pool.is_alive() && app.push.is_alive();
    let status = if store && actors {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    // Redis is not required: without it a node serves from memory and the
    // store, and catches up when it is back. Shown, not counted.
    let bus = match app.bus.stats().await {
        Ok(stats) if stats.redis => json!(stats.connected),
        Ok(_) => json!(null),
        Err(_) => json!(false),
    };
    let body = json!({
        "status": if status.is_success() { "ready" } else { "degraded" },
        "checks": { "store": store, "actors": actors, "change_bus": bus },
    });
    (status, Json(body))
}
