//! ConfigCache: configs and their released versions in memory, loaded through
//! the shared copies and the Store; its handle resolves a request to the
//! version to run from the ready entries, without a message.
//!
//! Supervised by the root Supervisor. A restart loses only cached entries
//! (they reload on the next request) and fails the requests waiting on a load.
//! Loads run in spawned tasks so a slow store never blocks resolution of
//! configs already in memory; concurrent requests for one config share a load.
//!
//! Layers: memory, then Redis (when configured), then the store. A change
//! reloads from the store (and refreshes Redis).
//!
//! Entries ready to serve are put in a map (`ReadyEntries`) that handles read without
//! asking the actor, so a request for a cached config costs a read lock
//! instead of a round trip through the mailbox. Only the actor writes there, and
//! it replaces an entry only when the reload has finished: while a config
//! reloads for any reason, cached requests get the last known entry
//! (stale-while-revalidate), and a store outage never makes them wait.
//!
//! `cached: false` ("nothing older than the store's state when my request
//! arrived") reads only the config's revision, shared by every fresh request
//! that arrived before the read started (`revisions.rs`); the entry in memory
//! answers when it is that revision, and only a newer one reloads, once.
//! Versions are immutable, so nothing is ever recompiled for freshness.

use std::collections::HashMap;
use std::num::NonZeroUsize;
use std::sync::Arc;
use std::time::{Duration, Instant};

use lru::LruCache;
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};

use super::CallError;
use crate::domain::resolve::Refusal;
use crate::domain::{Config, Version};
use crate::metrics;
use crate::names::ActorName;
use crate::shared::Shared;
use crate::store::{Store, StoreError};
pub use catalog::Catalog;
pub use handle::{ConfigCacheHandle, StoreWait};
use load::load;
pub use ready::ReadyEntries;

mod catalog;
mod fresh;
mod handle;
mod load;
mod ready;
mod revisions;

/// How long "no such config" is remembered; a change to the config on this
/// node clears it at once.
const MISSING_TTL: Duration = Duration::from_secs(2);
const MISSING_CAPACITY: usize = 10_000;
/// After a reload failed short of a revision someone asked for, when it is
/// tried again.
const RETRY_AFTER_FAILURE: Duration = Duration::from_secs(1);
/// How this actor is named in metrics and errors.
const NAME: ActorName = ActorName::ConfigCache;

/// What the cache keeps across restarts: where entries come from below
/// memory, and where it puts the ready ones.
pub struct Sources {
    /// The store, read on a miss or a change.
    pub store: Arc<dyn Store>,
    /// The shared copies in Redis, read before the store on a cold load.
    pub shared: Option<Shared>,
    /// The lock-free map fetches read without asking the actor.
    pub ready: Arc<ReadyEntries>,
}

/// What the ConfigCache handles.
pub enum ConfigCacheMsg {
    /// An entry at `min_revision` or newer (any, when `None`): from memory,
    /// or after a load. A reload that fails answers with the entry held, if
    /// any; the caller tells by its revision.
    Get {
        /// The config wanted.
        config_id: String,
        /// The oldest revision the caller accepts.
        min_revision: Option<i64>,
        /// Only if memory holds the config or is loading it; otherwise
        /// answered at once as unknown (the next request loads it).
        if_held: bool,
        /// Where the entry (or why there is none) goes.
        reply: RpcReplyPort<Result<Arc<Entry>, ResolveError>>,
    },
    /// A load this actor started has finished.
    Loaded {
        /// The config loaded.
        config_id: String,
        /// Which load this is, so a late answer to an older one is ignored.
        generation: u64,
        /// The entry, `None` if the config does not exist, or the store's failure.
        result: Result<Option<Arc<Entry>>, StoreError>,
    },
    /// A reload that failed short of a wanted revision is due again.
    Retry(String),
    /// The revisions of the configs held, for catching up after a lost notice.
    Revisions(RpcReplyPort<HashMap<String, i64>>),
}

/// A config with the versions its pointers name.
#[derive(Debug)]
pub struct Entry {
    /// The config row: pointers, rules, schema, revision.
    pub config: Config,
    /// The stable version, if any.
    pub release: Option<Arc<Version>>,
    /// The gray-release version, if any.
    pub gray: Option<Arc<Version>>,
}

#[derive(Debug, Clone)]
/// The version a request should run, chosen from an entry.
pub struct Resolved {
    /// The config asked for.
    pub config_id: String,
    /// The config's revision when it was chosen.
    pub revision: i64,
    /// The stable or gray version chosen for this device.
    pub version: Arc<Version>,
    /// A gray release was in force: the device's bucket chose the version.
    pub split: bool,
    /// The version's rules apply to this request, and it passed them.
    pub targeted: bool,
    /// A fresh request answered from the last known state because the store
    /// did not answer in time.
    pub stale: bool,
}

#[derive(Debug, Clone, thiserror::Error)]
/// Why a fetch got no version to run.
pub enum ResolveError {
    #[error(transparent)]
    /// The config refuses this request (unknown, inactive, no release, rules).
    Refused(#[from] Refusal),
    /// The store failed while loading; the detail was logged here.
    #[error("store unavailable")]
    Store,
    /// The config is not in memory and the store did not answer in time.
    #[error("config `{config_id}` is not in memory and the store did not answer within {waited_ms} ms")]
    Waited {
        /// The config asked for.
        config_id: String,
        /// How long the request waited (`store.wait_ms`).
        waited_ms: u64,
    },
    #[error(transparent)]
    /// The ConfigCache did not answer.
    Call(#[from] CallError),
}

type Reply = RpcReplyPort<Result<Arc<Entry>, ResolveError>>;

struct Waiter {
    min_revision: Option<i64>,
    /// The newest load started when this waiter came: any later load read
    /// the store after it arrived, so is fresh enough for it.
    after: u64,
    reply: Reply,
}

#[derive(Default)]
struct Held {
    /// The entry served (and ready to read) until a reload replaces it.
    entry: Option<Arc<Entry>>,
    /// The generation of the load in flight.
    loading: Option<u64>,
    waiters: Vec<Waiter>,
    /// The newest revision asked for; a failed reload short of it is retried.
    wanted: i64,
    retry_scheduled: bool,
}

/// The ConfigCache's state; memory only, reloaded on demand after a restart.
pub struct ConfigCacheState {
    sources: Arc<Sources>,
    held: HashMap<String, Held>,
    missing: LruCache<String, Instant>,
    /// The generation of the newest load started.
    generation: u64,
}

/// Keeps configs and their versions in memory and loads them on demand.
pub struct ConfigCache;

impl Actor for ConfigCache {
    type Msg = ConfigCacheMsg;
    type State = ConfigCacheState;
    type Arguments = Arc<Sources>;

    async fn pre_start(
        &self,
        _: ActorRef<Self::Msg>,
        sources: Self::Arguments,
    ) -> Result<Self::State, ActorProcessingErr> {
        sources.ready.clear();
        Ok(ConfigCacheState {
            sources,
            held: HashMap::new(),
            missing: LruCache::new(NonZeroUsize::new(MISSING_CAPACITY).expect("non-zero")),
            generation: 0,
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        message: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        let started = metrics::taken(NAME);
        match message {
            ConfigCacheMsg::Get {
                config_id,
                min_revision,
                if_held,
                reply,
            } => {
                if if_held && !state.held.contains_key(&config_id) {
                    // It exists now, whatever was remembered.
                    state.missing.pop(&config_id);
                    let _ = reply.send(Err(Refusal::UnknownConfig(config_id).into()));
                } else {
                    state.get(&myself, config_id, min_revision, reply)
                }
            }
            ConfigCacheMsg::Loaded {
                config_id,
                generation,
                result,
            } => state.loaded(&myself, config_id, generation, result),
            ConfigCacheMsg::Retry(config_id) => state.retry(&myself, config_id),
            ConfigCacheMsg::Revisions(reply) => {
                let revisions = state
                    .held
                    .iter()
                    .filter_map(|(id, h)| Some((id.clone(), h.entry.as_ref()?.config.revision)))
                    .collect();
                let _ = reply.send(revisions);
            }
        }
        metrics::handled(NAME, started);
        Ok(())
    }
}

impl ConfigCacheState {
    fn get(&mut self, myself: &ActorRef<ConfigCacheMsg>, config_id: String, min_revision: Option<i64>, reply: Reply) {
        let held = self.held.get(&config_id).and_then(|h| h.entry.as_ref());
        if let Some(entry) = held
            && min_revision.is_none_or(|min| entry.config.revision >= min)
        {
            let _ = reply.send(Ok(entry.clone()));
            return;
        }
        match min_revision {
            // The store has a revision of it, so it exists.
            Some(_) => {
                self.missing.pop(&config_id);
            }
            None if self
                .missing
                .get(&config_id)
                .is_some_and(|until| *until > Instant::now()) =>
            {
                let _ = reply.send(Err(Refusal::UnknownConfig(config_id).into()));
                return;
            }
            None => metrics::memory_cache(false),
        }
        let after = self.generation;
        let held = self.held.entry(config_id.clone()).or_default();
        held.wanted = held.wanted.max(min_revision.unwrap_or(0));
        held.waiters.push(Waiter {
            min_revision,
            after,
            reply,
        });
        if held.loading.is_none() {
            // Only a first load may come from Redis: anything newer than
            // memory is asked for because the store has it.
            let from_store = min_revision.is_some() || held.entry.is_some();
            self.start_load(myself, &config_id, from_store);
        }
    }

    fn loaded(
        &mut self,
        myself: &ActorRef<ConfigCacheMsg>,
        config_id: String,
        generation: u64,
        result: Result<Option<Arc<Entry>>, StoreError>,
    ) {
        let Some(held) = self.held.get_mut(&config_id) else {
            return;
        };
        if held.loading != Some(generation) {
            return;
        }
        held.loading = None;
        match result {
            Ok(Some(loaded)) => {
                // A load from Redis may be older than what a notice brought.
                let older = held
                    .entry
                    .as_ref()
                    .is_some_and(|e| e.config.revision > loaded.config.revision);
                if !older {
                    self.sources.ready.put(&config_id, &loaded);
                    held.entry = Some(loaded);
                }
                let entry = held.entry.clone().expect("set above");
                let (answered, waiting): (Vec<_>, Vec<_>) = std::mem::take(&mut held.waiters)
                    .into_iter()
                    .partition(|w| generation > w.after || w.min_revision.is_none_or(|m| entry.config.revision >= m));
                held.waiters = waiting;
                for waiter in answered {
                    let _ = waiter.reply.send(Ok(entry.clone()));
                }
                if !held.waiters.is_empty() {
                    self.start_load(myself, &config_id, true);
                }
            }
            Ok(None) => {
                let held = self.held.remove(&config_id).expect("looked up above");
                self.sources.ready.remove(&config_id);
                for waiter in held.waiters {
                    let _ = waiter.reply.send(Err(Refusal::UnknownConfig(config_id.clone()).into()));
                }
                self.missing.put(config_id, Instant::now() + MISSING_TTL);
            }
            Err(error) => self.failed(myself, config_id, error),
        }
    }

    /// A load failed: its waiters get the entry held (which they can tell is
    /// behind) or an error, and a reload short of what was asked is retried.
    fn failed(&mut self, myself: &ActorRef<ConfigCacheMsg>, config_id: String, error: StoreError) {
        let Some(held) = self.held.get_mut(&config_id) else {
            return;
        };
        let last = held.entry.clone();
        for waiter in std::mem::take(&mut held.waiters) {
            let _ = waiter.reply.send(last.clone().ok_or(ResolveError::Store));
        }
        let Some(entry) = last else {
            tracing::warn!(config_id, %error, "config load failed");
            self.held.remove(&config_id);
            return;
        };
        if entry.config.revision < held.wanted && !held.retry_scheduled {
            tracing::warn!(config_id, %error, "config reload failed; serving the last known state");
            held.retry_scheduled = true;
            let myself = myself.clone();
            tokio::spawn(async move {
                tokio::time::sleep(RETRY_AFTER_FAILURE).await;
                let _ = super::tell(&myself, NAME, ConfigCacheMsg::Retry(config_id));
            });
        }
    }

    fn retry(&mut self, myself: &ActorRef<ConfigCacheMsg>, config_id: String) {
        let Some(held) = self.held.get_mut(&config_id) else {
            return;
        };
        held.retry_scheduled = false;
        let behind = held.entry.as_ref().is_some_and(|e| e.config.revision < held.wanted);
        if behind && held.loading.is_none() {
            self.start_load(myself, &config_id, true);
        }
    }

    /// `from_store` skips Redis, whose copy may be older than the store's.
    fn start_load(&mut self, myself: &ActorRef<ConfigCacheMsg>, config_id: &str, from_store: bool) {
        self.generation += 1;
        let generation = self.generation;
        if let Some(held) = self.held.get_mut(config_id) {
            held.loading = Some(generation);
        }
        let (sources, myself, config_id) = (self.sources.clone(), myself.clone(), config_id.to_owned());
        tokio::spawn(async move {
            let result = load(&sources, &config_id, from_store).await;
            let _ = super::tell(
                &myself,
                NAME,
                ConfigCacheMsg::Loaded {
                    config_id,
                    generation,
                    result,
                },
            );
        });
    }
}
