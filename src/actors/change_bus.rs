//! ChangeBus: one per node. It carries changes between nodes over Redis
//! pub/sub when Redis is configured: a change committed here is sent
//! once (a Redis PUBLISH); a change sent by another node is handed to this node's
//! Announcer (`service/announce.rs`), which loads it into memory and then
//! tells this node's subscribers.
//!
//! Pub/sub drops what is sent while a subscriber is disconnected, so on
//! every (re)connect, and every `redis.reconcile_interval_ms` anyway, the bus
//! compares the revisions it knows with the store and catches up on what
//! changed. While no bus carries changes (no Redis, or Redis unreachable) it
//! makes that comparison every `store.poll_ms`, and applies what changed
//! exactly as if it had come over the bus, so other nodes' changes still
//! arrive within about a second.
//!
//! Supervised by the root Supervisor; a restart reconnects and catches up.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use redis::AsyncCommands;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::Slot;
use super::config_cache::ConfigCacheHandle;
use crate::domain::change::ChangeNotice;
use crate::domain::model::now_millis;
use crate::names::ActorName;
use crate::settings::Redis;
use crate::shared::Shared;
use crate::store::Store;

/// How this actor is named in metrics and errors.
const NAME: ActorName = ActorName::ChangeBus;
const FIRST_BACKOFF: Duration = Duration::from_millis(200);
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// A catch-up gives up on a store slower than this and tries again later.
const STORE_LIMIT: Duration = Duration::from_secs(5);

/// What the ChangeBus handles.
pub enum BusMsg {
    /// A change committed on this node: sent once to the others.
    Committed(ChangeNotice),
    /// A change another node sent.
    Remote(Wire),
    /// The subscription is (re)established: catch up on what was missed.
    Connected,
    /// The subscription dropped, with the reason: poll the store until it is back.
    Disconnected(String),
    /// The periodic comparison with the store while the bus is connected.
    Reconcile,
    /// The frequent comparison with the store while no bus carries changes.
    Poll,
    /// Reply with the counters below.
    Stats(RpcReplyPort<BusStats>),
}

/// A notice as it travels between nodes.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Wire {
    origin: String,
    config_id: String,
    revision: i64,
    update_time: i64,
    manual: bool,
    /// When the origin sent it, for the lag figure.
    sent_ms: i64,
}

#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq, Eq)]
/// The ChangeBus's counters, as the stats route shows them.
pub struct BusStats {
    /// Whether Redis is configured at all.
    pub redis: bool,
    /// Whether the Redis subscription is up now.
    pub connected: bool,
    /// Notices this node sent (the stats keep Redis's word, `published`).
    pub published: u64,
    /// Publishes that failed (Redis down or slower than `redis.timeout_ms`).
    pub publish_errors: u64,
    /// Notices received from other nodes.
    pub received: u64,
    /// Times the subscription was established again after a drop.
    pub reconnects: u64,
    /// Comparisons with the store made because no bus carried changes.
    pub polls: u64,
    /// Configs found changed by a catch-up, a periodic check or a poll.
    pub caught_up: u64,
    /// Milliseconds from sending on another node to arrival here, last seen.
    pub last_lag_ms: i64,
}

/// What a ChangeBus starts from; kept by the Supervisor for restarts.
pub struct BusArgs {
    /// Redis settings and shared copies; `None` on a node without Redis, which only polls.
    pub redis: Option<(Redis, Shared)>,
    /// How often to read the store's revisions while no bus carries changes.
    pub poll: Duration,
    /// Where revisions are compared against, for catch-up and polling.
    pub store: std::sync::Arc<dyn Store>,
    /// The revisions memory holds, compared with the store's in a catch-up.
    pub cache: ConfigCacheHandle,
    /// Where changes other nodes made are handed over, to be announced
    /// on this node (`app.rs` wires it to the Announcer).
    pub arrivals: mpsc::UnboundedSender<ChangeNotice>,
}

/// The ChangeBus's state; lost on restart, rebuilt by a catch-up.
pub struct BusState {
    node: String,
    redis: Option<(String, Shared, Duration)>,
    store: std::sync::Arc<dyn Store>,
    cache: ConfigCacheHandle,
    arrivals: mpsc::UnboundedSender<ChangeNotice>,
    /// The newest revision this node knows of, per config.
    seen: HashMap<String, i64>,
    synced: bool,
    poll: Duration,
    last_check: Option<Instant>,
    stats: BusStats,
    listener: Option<JoinHandle<()>>,
}

/// Carries change notices between nodes (Redis pub/sub) or polls the store.
pub struct ChangeBus;

impl Actor for ChangeBus {
    type Msg = BusMsg;
    type State = BusState;
    type Arguments = BusArgs;

    async fn pre_start(&self, myself: ActorRef<Self::Msg>, args: BusArgs) -> Result<Self::State, ActorProcessingErr> {
        let mut listener = None;
        let mut redis = None;
        if let Some((settings, shared)) = args.redis {
            let channel = format!("{}changes", settings.prefix);
            let client = redis::Client::open(settings.url.as_str())?;
            listener = Some(tokio::spawn(listen(client, channel.clone(), myself.clone())));
            myself.send_interval(settings.reconcile_interval(), || BusMsg::Reconcile);
            redis = Some((channel, shared, settings.timeout()));
        }
        myself.send_interval(args.poll, || BusMsg::Poll);
        Ok(BusState {
            node: crate::secrets::random_token(),
            stats: BusStats {
                redis: redis.is_some(),
                ..BusStats::default()
            },
            redis,
            store: args.store,
            cache: args.cache,
            arrivals: args.arrivals,
            seen: HashMap::new(),
            synced: false,
            poll: args.poll,
            last_check: None,
            listener,
        })
    }

    async fn post_stop(&self, _: ActorRef<Self::Msg>, state: &mut Self::State) -> Result<(), ActorProcessingErr> {
        if let Some(listener) = &state.listener {
            listener.abort();
        }
        Ok(())
    }

    async fn handle(
        &self,
        _: ActorRef<Self::Msg>,
        message: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        // The periodic checks come from timers, which are not counted in.
        let counted = !matches!(message, BusMsg::Reconcile | BusMsg::Poll);
        let started = if counted {
            crate::metrics::taken(NAME)
        } else {
            std::time::Instant::now()
        };
        match message {
            BusMsg::Committed(notice) => state.send_to_others(notice).await,
            BusMsg::Remote(wire) => state.remote(wire),
            BusMsg::Connected => {
                if state.stats.connected {
                    return Ok(());
                }
                state.stats.connected = true;
                tracing::info!("change bus connected");
                state.catch_up().await;
            }
            BusMsg::Disconnected(why) => {
                if state.stats.connected {
                    state.stats.connected = false;
                    state.stats.reconnects += 1;
                    tracing::warn!(why, "change bus disconnected; polling the store until it is back");
                }
            }
            BusMsg::Reconcile if state.stats.connected => state.catch_up().await,
            BusMsg::Reconcile => {}
            // Ticks queued behind a slow catch-up are not each a new poll.
            BusMsg::Poll if !state.stats.connected && state.due() => {
                state.stats.polls += 1;
                state.catch_up().await;
            }
            BusMsg::Poll => {}
            BusMsg::Stats(reply) => {
                let _ = reply.send(state.stats);
            }
        }
        if counted {
            crate::metrics::handled(NAME, started);
        }
        Ok(())
    }
}

impl BusState {
    async fn send_to_others(&mut self, notice: ChangeNotice) {
        self.saw(&notice.config_id, notice.revision);
        // Tried even while this node's subscription is down: Redis may be
        // back before the listener notices, and nodes that are connected
        // poll nothing. If it fails, the others find the change by polling.
        let Some((channel, redis, timeout)) = self.redis.as_ref() else {
            return;
        };
        let wire = Wire {
            origin: self.node.clone(),
            config_id: notice.config_id,
            revision: notice.revision,
            update_time: notice.update_time,
            manual: notice.manual,
            sent_ms: now_millis(),
        };
        let Ok(payload) = serde_json::to_string(&wire) else {
            return;
        };
        let mut conn = redis.connection();
        let sent = tokio::time::timeout(*timeout, conn.publish::<_, _, ()>(channel, payload)).await;
        match sent {
            Ok(Ok(())) => self.stats.published += 1,
            outcome => {
                self.stats.publish_errors += 1;
                let error = match outcome {
                    Ok(Err(e)) => e.to_string(),
                    _ => "timed out".into(),
                };
                // Other nodes find the change at their next periodic check.
                tracing::warn!(%error, config_id = wire.config_id, "change not sent to other nodes");
            }
        }
    }

    fn remote(&mut self, wire: Wire) {
        if wire.origin == self.node {
            return;
        }
        self.stats.received += 1;
        self.stats.last_lag_ms = now_millis() - wire.sent_ms;
        let newer = self.seen.get(&wire.config_id).is_none_or(|r| *r < wire.revision);
        if !newer && !wire.manual {
            return;
        }
        self.saw(&wire.config_id, wire.revision);
        self.tell(ChangeNotice {
            config_id: wire.config_id,
            revision: wire.revision,
            update_time: wire.update_time,
            manual: wire.manual,
        });
    }

    fn saw(&mut self, config_id: &str, revision: i64) {
        let known = self.seen.entry(config_id.to_owned()).or_insert(revision);
        *known = (*known).max(revision);
    }

    /// Hands a change another node made to this node's Announcer.
    fn tell(&self, notice: ChangeNotice) {
        if self.arrivals.send(notice).is_err() {
            tracing::warn!("a change from another node arrived while this node is stopping");
        }
    }

    /// Whether a poll is due: not when the last check ended just now.
    fn due(&self) -> bool {
        self.last_check.is_none_or(|at| at.elapsed() >= self.poll / 2)
    }

    /// Compares the store's revisions with what this node knows and acts on
    /// every config that moved on without a notice reaching it.
    async fn catch_up(&mut self) {
        let started = Instant::now();
        let read = tokio::time::timeout(STORE_LIMIT, self.store.revisions()).await;
        self.last_check = Some(Instant::now());
        let revisions = match read {
            Ok(Ok(revisions)) => revisions,
            Ok(Err(e)) => return tracing::debug!(error = %e, "catch-up skipped: store unavailable"),
            Err(_) => return tracing::debug!("catch-up skipped: store too slow"),
        };
        // What the cache holds counts as known, so a first sync still reloads
        // entries that went stale before the bus was ever connected.
        let held = self.cache.revisions().await.unwrap_or_default();
        let mut changed = 0;
        for config in revisions {
            let known = match (self.seen.get(&config.config_id), held.get(&config.config_id)) {
                (Some(seen), Some(held)) => Some(*seen.max(held)),
                (seen, held) => seen.or(held).copied(),
            };
            let behind = match known {
                Some(revision) => revision < config.revision,
                None => self.synced,
            };
            self.saw(&config.config_id, config.revision);
            if behind {
                changed += 1;
                self.tell(ChangeNotice {
                    config_id: config.config_id,
                    revision: config.revision,
                    update_time: config.updated_at / 1000,
                    manual: false,
                });
            }
        }
        self.synced = true;
        self.stats.caught_up += changed;
        if changed > 0 {
            tracing::info!(changed, took = ?started.elapsed(), "caught up on changes missed by this node");
        }
    }
}

/// Holds the subscription, reconnecting with exponential backoff and jitter.
async fn listen(client: redis::Client, channel: String, bus: ActorRef<BusMsg>) {
    let mut backoff = FIRST_BACKOFF;
    loop {
        let error = match client.get_async_pubsub().await {
            Ok(mut pubsub) => match pubsub.subscribe(&channel).await {
                Ok(()) => {
                    backoff = FIRST_BACKOFF;
                    if super::tell(&bus, NAME, BusMsg::Connected).is_err() {
                        return;
                    }
                    let mut messages = pubsub.into_on_message();
                    while let Some(message) = messages.next().await {
                        let wire = message
                            .get_payload::<String>()
                            .ok()
                            .and_then(|p| serde_json::from_str::<Wire>(&p).ok());
                        if let Some(wire) = wire
                            && super::tell(&bus, NAME, BusMsg::Remote(wire)).is_err()
                        {
                            return;
                        }
                    }
                    "subscription closed".to_owned()
                }
                Err(e) => e.to_string(),
            },
            Err(e) => e.to_string(),
        };
        if super::tell(&bus, NAME, BusMsg::Disconnected(error)).is_err() {
            return;
        }
        let jitter = Duration::from_millis(rand::random::<u64>() % (backoff.as_millis() as u64 / 2 + 1));
        tokio::time::sleep(backoff + jitter).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// What callers hold to reach the ChangeBus.
#[derive(Clone)]
pub struct ChangeBusHandle {
    slot: Slot<BusMsg>,
    timeout: Duration,
}

impl ChangeBusHandle {
    /// A handle whose calls wait at most `timeout`.
    pub fn new(slot: Slot<BusMsg>, timeout: Duration) -> Self {
        Self { slot, timeout }
    }

    /// Sends a change committed on this node to the other nodes.
    pub fn tell_others(&self, notice: ChangeNotice) {
        if let Err(e) = self.slot.tell(NAME, BusMsg::Committed(notice)) {
            tracing::warn!(error = %e, "change not handed to the change bus");
        }
    }

    /// The bus's counters.
    pub async fn stats(&self) -> Result<BusStats, super::CallError> {
        self.slot.ask(NAME, self.timeout, BusMsg::Stats).await
    }

    /// Whether the actor is running (between a crash and its restart it is not).
    pub fn is_alive(&self) -> bool {
        self.slot.is_alive()
    }
}
