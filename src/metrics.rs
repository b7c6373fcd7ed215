//! Every metric Vane exports, named in one place, and the Prometheus
//! recorder. Counters kept elsewhere (the pool's, the registry's, the change
//! bus's, the Redis cache's) are copied in when `/metrics` is scraped, so the
//! hot paths touch only their own atomics.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{LazyLock, OnceLock};
use std::time::{Duration, Instant};

use metrics::{Counter, Histogram, counter, gauge, histogram};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

use crate::actors::names::ActorName;

pub const HTTP_REQUESTS: &str = "vane_http_requests_total";
pub const HTTP_SECONDS: &str = "vane_http_request_duration_seconds";
pub const ACTOR_MAILBOX: &str = "vane_actor_mailbox_depth";
pub const ACTOR_MESSAGES: &str = "vane_actor_messages_total";
pub const ACTOR_SECONDS: &str = "vane_actor_handle_seconds";
pub const ACTOR_RESTARTS: &str = "vane_actor_restarts_total";
pub const EVAL_SECONDS: &str = "vane_eval_duration_seconds";
pub const POOL_QUEUED: &str = "vane_pool_queued";
pub const POOL_RUNNING: &str = "vane_pool_running";
pub const POOL_WORKERS: &str = "vane_pool_workers";
pub const POOL_JOBS: &str = "vane_pool_jobs_total";
pub const WORKER_RSS: &str = "vane_pool_worker_rss_bytes";
pub const CACHE_HITS: &str = "vane_cache_hits_total";
pub const CACHE_MISSES: &str = "vane_cache_misses_total";
pub const CACHE_ERRORS: &str = "vane_cache_errors_total";
pub const PUSH_CONNECTIONS: &str = "vane_push_connections";
pub const PUSH_SUBSCRIPTIONS: &str = "vane_push_subscriptions";
pub const PUSH_NOTICES: &str = "vane_push_notices_total";
pub const PUSH_DROPPED: &str = "vane_push_dropped_clients_total";
pub const BUS_LAG_MS: &str = "vane_bus_lag_ms";
pub const BUS_EVENTS: &str = "vane_bus_events_total";
pub const REVISION_READS: &str = "vane_store_revision_reads_total";
pub const FRESH_FETCHES: &str = "vane_fresh_fetches_total";
pub const REPORTS: &str = "vane_reports_total";
pub const BROKEN_BY_REPORTS: &str = "vane_versions_broken_by_reports_total";

/// How often histograms are compacted.
const UPKEEP: Duration = Duration::from_secs(5);

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Installs the recorder once per process (tests start several apps) and
/// keeps its upkeep running.
pub fn install() -> PrometheusHandle {
    HANDLE
        .get_or_init(|| {
            let handle = PrometheusBuilder::new()
                .install_recorder()
                .unwrap_or_else(|_| PrometheusBuilder::new().build_recorder().handle());
            let upkeep = handle.clone();
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(UPKEEP).await;
                    upkeep.run_upkeep();
                }
            });
            handle
        })
        .clone()
}

/// Depth and messages handled per actor (`ActorName::index`), readable for
/// the dashboard (the recorder's values are write-only).
static MAILBOXES: [(AtomicI64, AtomicU64); ActorName::ALL.len()] =
    [const { (AtomicI64::new(0), AtomicU64::new(0)) }; ActorName::ALL.len()];
static REQUESTS: AtomicU64 = AtomicU64::new(0);
static REQUEST_MICROS: AtomicU64 = AtomicU64::new(0);

fn mailbox(actor: ActorName) -> Option<&'static (AtomicI64, AtomicU64)> {
    actor.counts_mailbox().then(|| &MAILBOXES[actor.index()])
}

/// (depth, handled) of an actor that counts its mailbox.
pub fn mailbox_of(actor: ActorName) -> (i64, u64) {
    mailbox(actor).map_or((0, 0), |(d, h)| {
        (d.load(Ordering::Relaxed).max(0), h.load(Ordering::Relaxed))
    })
}

/// (requests, total microseconds) served so far.
pub fn requests() -> (u64, u64) {
    (REQUESTS.load(Ordering::Relaxed), REQUEST_MICROS.load(Ordering::Relaxed))
}

pub fn request_served(took: Duration) {
    REQUESTS.fetch_add(1, Ordering::Relaxed);
    REQUEST_MICROS.fetch_add(took.as_micros() as u64, Ordering::Relaxed);
}

/// A message is on its way to `actor` (counted only for actors that count
/// their mailbox, since only they count what they take).
pub fn sent(actor: ActorName) {
    if let Some((depth, _)) = mailbox(actor) {
        gauge!(ACTOR_MAILBOX, "actor" => actor.as_str()).increment(1.0);
        depth.fetch_add(1, Ordering::Relaxed);
    }
}

/// `actor` took a message from its mailbox; returns when, for `handled`.
pub fn taken(actor: ActorName) -> Instant {
    if let Some((depth, _)) = mailbox(actor) {
        depth.fetch_sub(1, Ordering::Relaxed);
        gauge!(ACTOR_MAILBOX, "actor" => actor.as_str()).decrement(1.0);
    }
    Instant::now()
}

/// `actor` finished a message it took at `started`.
pub fn handled(actor: ActorName, started: Instant) {
    if let Some((_, handled)) = mailbox(actor) {
        handled.fetch_add(1, Ordering::Relaxed);
    }
    counter!(ACTOR_MESSAGES, "actor" => actor.as_str()).increment(1);
    histogram!(ACTOR_SECONDS, "actor" => actor.as_str()).record(started.elapsed().as_secs_f64());
}

pub fn restarted(actor: ActorName) {
    counter!(ACTOR_RESTARTS, "actor" => actor.as_str()).increment(1);
}

// The per-request metrics keep their handles: looking one up hashes its
// name and labels every time. They are registered on first use, after the
// app installed the recorder.

pub fn evaluated(lang: &'static str, took: Duration) {
    static STARLARK: LazyLock<Histogram> = LazyLock::new(|| histogram!(EVAL_SECONDS, "lang" => "starlark"));
    static JAVASCRIPT: LazyLock<Histogram> = LazyLock::new(|| histogram!(EVAL_SECONDS, "lang" => "javascript"));
    match lang {
        "starlark" => STARLARK.record(took.as_secs_f64()),
        "javascript" => JAVASCRIPT.record(took.as_secs_f64()),
        other => histogram!(EVAL_SECONDS, "lang" => other).record(took.as_secs_f64()),
    }
}

pub fn dropped_push_client() {
    counter!(PUSH_DROPPED).increment(1);
}

pub fn result_cache(hit: bool) {
    static HITS: LazyLock<Counter> = LazyLock::new(|| counter!(CACHE_HITS, "layer" => "result"));
    static MISSES: LazyLock<Counter> = LazyLock::new(|| counter!(CACHE_MISSES, "layer" => "result"));
    if hit { &HITS } else { &MISSES }.increment(1);
}

pub fn memory_cache(hit: bool) {
    static HITS: LazyLock<Counter> = LazyLock::new(|| counter!(CACHE_HITS, "layer" => "memory"));
    static MISSES: LazyLock<Counter> = LazyLock::new(|| counter!(CACHE_MISSES, "layer" => "memory"));
    if hit { &HITS } else { &MISSES }.increment(1);
}

/// The store was asked for a config's revision (one read serves a batch).
pub fn revision_read() {
    static READS: LazyLock<Counter> = LazyLock::new(|| counter!(REVISION_READS));
    READS.increment(1);
}

/// How a `cached: false` fetch was answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Freshness {
    /// Memory held the store's revision.
    Current,
    /// The config was reloaded to the store's revision first.
    Reloaded,
    /// The store did not answer in time: the last known state was served.
    Stale,
}

pub fn fresh_fetch(outcome: Freshness) {
    static CURRENT: LazyLock<Counter> = LazyLock::new(|| counter!(FRESH_FETCHES, "outcome" => "current"));
    static RELOADED: LazyLock<Counter> = LazyLock::new(|| counter!(FRESH_FETCHES, "outcome" => "reloaded"));
    static STALE: LazyLock<Counter> = LazyLock::new(|| counter!(FRESH_FETCHES, "outcome" => "stale"));
    match outcome {
        Freshness::Current => &CURRENT,
        Freshness::Reloaded => &RELOADED,
        Freshness::Stale => &STALE,
    }
    .increment(1);
}

/// What became of a client's error report: `outcome` is `counted`, the
/// reason it did not count (`kind`, `not_served`, `repeat`, `storm`), or `dropped`
/// (not stored: past the caps for reports that cannot count).
pub fn report(outcome: &'static str) {
    counter!(REPORTS, "outcome" => outcome).increment(1);
}

/// Reports broke a version; `rolled_back` when it was stable and the release
/// went back to an earlier one.
pub fn broken_by_reports(rolled_back: bool) {
    counter!(BROKEN_BY_REPORTS, "rolled_back" => if rolled_back { "true" } else { "false" }).increment(1);
}
