//! Every metric the server exports, named in one place (`vane watch` writes
//! its own `vane_watch_*` file, agent/mod.rs), and the Prometheus
//! recorder. Counters kept elsewhere (the pool's, the registry's, the change
//! bus's, the shared copies') are copied in when `/metrics` is scraped, so the
//! hot paths touch only their own atomics.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{LazyLock, OnceLock};
use std::time::{Duration, Instant};

use metrics::{Counter, Histogram, counter, gauge, histogram};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

use crate::names::ActorName;

/// Requests answered, by route and status.
pub const HTTP_REQUESTS: &str = "vane_http_requests_total";
/// Time to answer a request, by route.
pub const HTTP_SECONDS: &str = "vane_http_request_duration_seconds";
/// Messages waiting for an actor that counts its mailbox.
const ACTOR_MAILBOX: &str = "vane_actor_mailbox_depth";
/// Messages an actor handled.
const ACTOR_MESSAGES: &str = "vane_actor_messages_total";
/// Time an actor took per message.
const ACTOR_SECONDS: &str = "vane_actor_handle_seconds";
/// Restarts of a supervised actor.
const ACTOR_RESTARTS: &str = "vane_actor_restarts_total";
/// Time a worker took per evaluation, by language.
const EVAL_SECONDS: &str = "vane_eval_duration_seconds";
/// Jobs waiting for an Evaluator.
pub const POOL_QUEUED: &str = "vane_pool_queued";
/// Jobs in workers' hands.
pub const POOL_RUNNING: &str = "vane_pool_running";
/// Evaluators in the pool.
pub const POOL_WORKERS: &str = "vane_pool_workers";
/// Jobs by outcome (finished, shed, timed_out, killed, ...).
pub const POOL_JOBS: &str = "vane_pool_jobs_total";
/// Resident memory of each worker process.
pub const WORKER_RSS: &str = "vane_pool_worker_rss_bytes";
/// Cache hits, by layer (memory, redis, result).
pub const CACHE_HITS: &str = "vane_cache_hits_total";
/// Cache misses, by layer.
pub const CACHE_MISSES: &str = "vane_cache_misses_total";
/// Failed calls to Redis for shared copies.
pub const CACHE_ERRORS: &str = "vane_cache_errors_total";
/// Open push sockets.
pub const PUSH_CONNECTIONS: &str = "vane_push_connections";
/// Configs followed over all sockets.
pub const PUSH_SUBSCRIPTIONS: &str = "vane_push_subscriptions";
/// Change notices sent to sockets.
pub const PUSH_NOTICES: &str = "vane_push_notices_total";
/// Push sockets the server dropped, by reason: `slow` (writes failed or
/// timed out), `silent` (no pong), `no_subscription` (followed nothing by
/// `push.subscribe_deadline_ms`), `per_address` (refused at
/// `push.max_sockets_per_address`).
const PUSH_DROPPED: &str = "vane_push_dropped_clients_total";
/// OpenFeature event streams (Server-Sent Events) open now.
const OFREP_STREAMS: &str = "vane_ofrep_event_streams";
/// Connections open now, WebSockets included.
const CONNECTIONS_OPEN: &str = "vane_connections_open";
/// Connections the server closed or refused, by reason: `header_timeout`,
/// `body_timeout`, `idle_timeout`, `max_connections`.
const CONNECTIONS_CLOSED: &str = "vane_connections_closed_total";
/// Time from a change on one node to its arrival on this one.
pub const BUS_LAG_MS: &str = "vane_bus_lag_ms";
/// Change bus events, by kind (published: sent to the others, received, polls, ...).
pub const BUS_EVENTS: &str = "vane_bus_events_total";
/// Reads of configs' revisions for `cached: false` fetches.
const REVISION_READS: &str = "vane_store_revision_reads_total";
/// How `cached: false` fetches were answered (current, reloaded, stale).
const FRESH_FETCHES: &str = "vane_fresh_fetches_total";
/// Client error reports, by outcome (see `report`).
const REPORTS: &str = "vane_reports_total";
/// Versions broken by reports, and whether a rollback followed.
const BROKEN_BY_REPORTS: &str = "vane_versions_broken_by_reports_total";
/// Stable versions broken by reports with no healthy earlier version: still
/// served, and an operator must decide (alert on any increase).
const BROKEN_WITHOUT_FALLBACK: &str = "vane_broken_without_fallback_total";
/// Rollout plans' moves applied on this node, by what they led to.
const ROLLOUT_MOVES: &str = "vane_rollout_moves_total";
/// Open rollout plans, by state (active, paused), as the store holds them.
const ROLLOUT_PLANS: &str = "vane_rollout_plans";

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

/// A request was answered after `took`.
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

/// The supervisor restarted `actor`.
pub fn restarted(actor: ActorName) {
    counter!(ACTOR_RESTARTS, "actor" => actor.as_str()).increment(1);
}

// The per-request metrics keep their handles: looking one up hashes its
// name and labels every time. They are registered on first use, after the
// app installed the recorder.

/// A worker ran a `lang` evaluation in `took`.
pub fn evaluated(lang: &'static str, took: Duration) {
    static STARLARK: LazyLock<Histogram> = LazyLock::new(|| histogram!(EVAL_SECONDS, "lang" => "starlark"));
    static JAVASCRIPT: LazyLock<Histogram> = LazyLock::new(|| histogram!(EVAL_SECONDS, "lang" => "javascript"));
    match lang {
        "starlark" => STARLARK.record(took.as_secs_f64()),
        "javascript" => JAVASCRIPT.record(took.as_secs_f64()),
        other => histogram!(EVAL_SECONDS, "lang" => other).record(took.as_secs_f64()),
    }
}

/// The server dropped a push socket (see `PUSH_DROPPED` for the reasons).
pub fn dropped_push_client(reason: &'static str) {
    counter!(PUSH_DROPPED, "reason" => reason).increment(1);
}

/// An OpenFeature event stream opened (`1.0`) or ended (`-1.0`).
pub fn event_streams_open(delta: f64) {
    gauge!(OFREP_STREAMS).increment(delta);
}

/// A connection opened (`1.0`) or closed (`-1.0`).
pub fn connections_open(delta: f64) {
    gauge!(CONNECTIONS_OPEN).increment(delta);
}

/// The server closed or refused a connection at one of its limits.
pub fn connection_closed(reason: &'static str) {
    counter!(CONNECTIONS_CLOSED, "reason" => reason).increment(1);
}

/// The Starlark result memo was asked.
pub fn result_cache(hit: bool) {
    static HITS: LazyLock<Counter> = LazyLock::new(|| counter!(CACHE_HITS, "layer" => "result"));
    static MISSES: LazyLock<Counter> = LazyLock::new(|| counter!(CACHE_MISSES, "layer" => "result"));
    if hit { &HITS } else { &MISSES }.increment(1);
}

/// The ConfigCache's ready entries were asked.
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
    /// The store was already known not to answer (its last read failed, or
    /// one has been out past `store.wait_ms`): the last known state was
    /// served at once, without waiting.
    StoreUnanswered,
}

/// A `cached: false` fetch was answered so.
pub fn fresh_fetch(outcome: Freshness) {
    static CURRENT: LazyLock<Counter> = LazyLock::new(|| counter!(FRESH_FETCHES, "outcome" => "current"));
    static RELOADED: LazyLock<Counter> = LazyLock::new(|| counter!(FRESH_FETCHES, "outcome" => "reloaded"));
    static STALE: LazyLock<Counter> = LazyLock::new(|| counter!(FRESH_FETCHES, "outcome" => "stale"));
    static UNANSWERED: LazyLock<Counter> =
        LazyLock::new(|| counter!(FRESH_FETCHES, "outcome" => "stale_store_unanswered"));
    match outcome {
        Freshness::Current => &CURRENT,
        Freshness::Reloaded => &RELOADED,
        Freshness::Stale => &STALE,
        Freshness::StoreUnanswered => &UNANSWERED,
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

/// Reports broke a stable version with nothing healthy to fall back to; it
/// is still served until an operator acts.
pub fn broken_without_fallback() {
    counter!(BROKEN_WITHOUT_FALLBACK).increment(1);
}

/// A rollout plan moved on this node: a step (`active`), or it ended
/// (`completed`, `aborted`).
pub fn plan_moved(state: &'static str) {
    counter!(ROLLOUT_MOVES, "state" => state).increment(1);
}

/// The open rollout plans, as the Scheduler last read them.
pub fn open_plans(active: usize, paused: usize) {
    gauge!(ROLLOUT_PLANS, "state" => "active").set(active as f64);
    gauge!(ROLLOUT_PLANS, "state" => "paused").set(paused as f64);
}
