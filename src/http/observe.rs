//! `/metrics` (Prometheus text) and `/api/v1/stats` (JSON for the
//! dashboard), and the middleware that counts every request by matched route
//! and status.

use std::collections::HashMap;
use std::sync::{LazyLock, RwLock};
use std::time::Instant;

use axum::Json;
use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use metrics::{Counter, Histogram, counter, gauge, histogram};
use serde_json::{Value, json};
use tracing::Instrument;

use super::AppState;
use super::throttle::Throttle;
use crate::metrics::*;
use crate::names::ActorName;
use crate::shared::Shared;
use crate::sync::RwLocked;

/// Every routed request's span and metrics, in one layer: a layer is a
/// boxed future and a cloned service per request, a measurable part of a
/// memoized fetch (tower-http's `TraceLayer` was a second one). A 5xx is
/// logged as `TraceLayer` logged it, but a 503 (a shed, a store down) at
/// most once a second: a flood of them is counted by the metrics, and a
/// log line each wrote 363k lines in one overloaded run.
pub async fn track(request: Request, next: Next) -> Response {
    let route = request.extensions().get::<MatchedPath>().cloned();
    let route = route.as_ref().map_or("unmatched", MatchedPath::as_str);
    let span = tracing::info_span!("request", method = %request.method(), route, uri = %request.uri());
    let started = Instant::now();
    let response = next.run(request).instrument(span.clone()).await;
    let took = started.elapsed();
    let status = response.status();
    if status == axum::http::StatusCode::SERVICE_UNAVAILABLE {
        static LAST: Throttle = Throttle::new();
        if let Some(suppressed) = LAST.pass() {
            span.in_scope(|| tracing::warn!(latency = ?took, suppressed, "response failed: 503"));
        }
    } else if status.is_server_error() {
        span.in_scope(|| tracing::error!(status = status.as_u16(), latency = ?took, "response failed"));
    }
    let (requests, seconds) = route_metrics(route, status.as_u16());
    requests.increment(1);
    seconds.record(took.as_secs_f64());
    crate::metrics::request_served(took);
    response
}

/// The handles of a route's metrics, kept: registering them on every
/// request allocated their labels and hashed them each time.
fn route_metrics(route: &str, status: u16) -> (Counter, Histogram) {
    type Handles = HashMap<String, HashMap<u16, (Counter, Histogram)>>;
    static HANDLES: LazyLock<RwLock<Handles>> = LazyLock::new(Default::default);
    let known = HANDLES.reading();
    if let Some(found) = known.get(route).and_then(|by_status| by_status.get(&status)) {
        return found.clone();
    }
    drop(known);
    let made = (
        counter!(HTTP_REQUESTS, "route" => route.to_owned(), "status" => status.to_string()),
        histogram!(HTTP_SECONDS, "route" => route.to_owned()),
    );
    HANDLES
        .writing()
        .entry(route.to_owned())
        .or_default()
        .insert(status, made.clone());
    made
}

pub async fn prometheus(State(app): State<AppState>) -> Response {
    let _ = stats(&app).await;
    let body = crate::metrics::install().render();
    ([("content-type", "text/plain; version=0.0.4")], body).into_response()
}

#[utoipa::path(
    get,
    path = "/api/v1/stats",
    summary = "Live numbers for the dashboard",
    responses((status = 200, description = "ok"), crate::http::error::Failures)
)]
pub async fn stats_route(State(app): State<AppState>) -> Json<Value> {
    Json(stats(&app).await)
}

/// Longest the stats wait for the store's list of plans.
const PLANS_READ_LIMIT: std::time::Duration = std::time::Duration::from_secs(1);

/// Copies the counters kept by the actors into the recorder and returns
/// them as JSON.
async fn stats(app: &AppState) -> Value {
    let pool = app.pool.status().await.ok();
    if let Some(pool) = &pool {
        gauge!(POOL_QUEUED).set(pool.queued as f64);
        gauge!(POOL_RUNNING).set(pool.counts.running as f64);
        gauge!(POOL_WORKERS).set(pool.workers as f64);
        for (outcome, value) in [
            ("submitted", pool.counts.submitted),
            ("finished", pool.counts.finished),
            ("shed", pool.counts.shed),
            ("timed_out", pool.counts.expired),
            ("killed", pool.counts.killed),
            ("crashed", pool.counts.crashed),
            ("restarted", pool.counts.restarted),
            ("recycled", pool.counts.recycled),
            ("requeued", pool.counts.requeued),
            ("compiled", pool.counts.compiled),
            ("handed", pool.counts.handed),
        ] {
            counter!(POOL_JOBS, "outcome" => outcome).absolute(value);
        }
        for worker in &pool.worker_list {
            if let Some(rss) = worker.rss_bytes {
                gauge!(WORKER_RSS, "wid" => worker.wid.to_string()).set(rss as f64);
            }
        }
    }
    gauge!(PUSH_CONNECTIONS).set(app.push.open_sockets() as f64);
    let push = app.push.stats().await.ok();
    if let Some(push) = &push {
        gauge!(PUSH_SUBSCRIPTIONS).set(push.subscriptions as f64);
        counter!(PUSH_NOTICES).absolute(push.notices_sent);
    }
    let redis = app.shared.as_ref().map(Shared::counts);
    if let Some(redis) = &redis {
        counter!(CACHE_HITS, "layer" => "redis").absolute(redis.0);
        counter!(CACHE_MISSES, "layer" => "redis").absolute(redis.1);
        counter!(CACHE_ERRORS, "layer" => "redis").absolute(redis.2);
    }
    let bus = app.bus.stats().await.ok();
    if let Some(bus) = &bus {
        gauge!(BUS_LAG_MS).set(bus.last_lag_ms as f64);
        for (event, value) in [
            ("published", bus.published),
            ("publish_errors", bus.publish_errors),
            ("received", bus.received),
            ("reconnects", bus.reconnects),
            ("caught_up", bus.caught_up),
            ("polls", bus.polls),
        ] {
            counter!(BUS_EVENTS, "event" => event).absolute(value);
        }
    }
    let (requests, request_micros) = crate::metrics::requests();
    let alive = |actor: ActorName| match actor {
        ActorName::ConfigCache => app.cache.is_alive(),
        ActorName::EvaluatorPool => app.pool.is_alive(),
        ActorName::PushRegistry => app.push.is_alive(),
        ActorName::ChangeBus => app.bus.is_alive(),
        ActorName::Scheduler => app.scheduler.is_alive(),
    };
    let actors: Vec<Value> = ActorName::ALL
        .into_iter()
        .map(|actor| {
            let (depth, handled) = crate::metrics::mailbox_of(actor);
            json!({"name": actor.as_str(), "alive": alive(actor), "counts_mailbox": actor.counts_mailbox(),
                   "mailbox": depth, "handled": handled})
        })
        .collect();
    // Open rollout plans, as the dashboard lists them. Bounded: a store
    // that stops answering must not take the metrics with it, when they are
    // what shows the outage ("plans_unread" says they were left out).
    let listed = tokio::time::timeout(PLANS_READ_LIMIT, app.plans.list(None)).await;
    let plans_unread = !matches!(listed, Ok(Ok(_)));
    let plans: Vec<Value> = listed
        .ok()
        .and_then(Result::ok)
        .unwrap_or_default()
        .iter()
        .map(|p| {
            let share = p
                .applied
                .checked_sub(1)
                .and_then(|i| p.steps.get(i))
                .map(|s| s.percentage);
            json!({"id": p.id, "config_id": p.config_id, "code_id": p.code_id, "state": p.state,
                   "applied": p.applied, "steps": p.steps.len(), "percentage": share, "next_at": p.next_at})
        })
        .collect();
    json!({
        "requests": {"total": requests, "micros": request_micros},
        "plans": plans,
        "plans_unread": plans_unread,
        "pool": pool,
        "push": push,
        "redis": redis.map(|(hits, misses, errors)| json!({"hits": hits, "misses": misses, "errors": errors})),
        "bus": bus,
        "actors": actors,
    })
}

/// The live dashboard: one page, every asset inside it, polling the stats.
pub async fn dashboard() -> impl axum::response::IntoResponse {
    use axum::http::header;
    (
        [
            (header::CONTENT_SECURITY_POLICY, DASHBOARD_POLICY.as_str()),
            (header::X_FRAME_OPTIONS, "DENY"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::REFERRER_POLICY, "no-referrer"),
        ],
        axum::response::Html(DASHBOARD),
    )
}

const DASHBOARD: &str = include_str!("dashboard.html");

/// The page may run only its own script and style (by hash), talk only to
/// this server, and not be framed: an injected script or a clickjacking
/// frame gets nothing.
static DASHBOARD_POLICY: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    let digest = |open: &str, close: &str| {
        use base64::Engine;
        use sha2::Digest;
        let start = DASHBOARD.find(open).map_or(0, |i| i + open.len());
        let end = DASHBOARD[start..].find(close).map_or(start, |i| start + i);
        base64::engine::general_purpose::STANDARD.encode(sha2::Sha256::digest(&DASHBOARD[start..end]))
    };
    format!(
        "default-src 'none'; script-src 'sha256-{}'; style-src 'sha256-{}'; connect-src 'self'; \
         img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
        digest("<script>", "</script>"),
        digest("<style>", "</style>"),
    )
});
