//! ConfigCache: configs and their released versions in memory, loaded through
//! the Store; resolves a request to the version to run.
//!
//! Supervised by the root Supervisor. A restart loses only cached entries
//! (they reload on the next request) and fails the requests waiting on a load.
//! Loads run in spawned tasks so a slow store never blocks resolution of
//! configs already in memory; concurrent requests for one config share a load.
//!
//! Layers: memory, then Redis (when configured), then the store. A change
//! reloads from the store (and refreshes Redis). If the store fails, the last
//! known entry keeps being served and a reload is retried in the background.
//!
//! Entries ready to serve are also published in a map that handles read
//! without asking the actor, so a request for a cached config costs a read
//! lock instead of a round trip through the mailbox. Only the actor publishes;
//! an invalidation hides the entry at once, before its message is handled, so
//! a fetch that follows a change never sees what the change replaced.

use std::collections::HashMap;
use std::num::NonZeroUsize;
use std::sync::Arc;
use std::time::{Duration, Instant};

use lru::LruCache;
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};

use super::{CallError, Slot};
pub use published::Published;
use crate::cache::RedisCache;
use crate::domain::model::validate_config_id;
use crate::domain::resolve::{Refusal, choose};
use crate::domain::{Config, Meta, Version};
use crate::metrics;
use crate::store::{Store, StoreError};

mod published;

/// How long "no such config" is remembered; creation on this node clears it
/// at once.
const MISSING_TTL: Duration = Duration::from_secs(2);
const MISSING_CAPACITY: usize = 10_000;
/// While the store fails, how often a config served stale is reloaded.
const STALE_RETRY: Duration = Duration::from_secs(1);
/// How this actor is named in metrics and errors.
const NAME: &str = "config cache";

/// What the cache keeps across restarts: where entries come from below
/// memory, and where it publishes the ready ones.
pub struct Sources {
    pub store: Arc<dyn Store>,
    pub redis: Option<RedisCache>,
    pub published: Arc<Published>,
}

pub enum ConfigCacheMsg {
    /// Resolve a request to the version to run. `fresh` reloads from the store.
    Resolve {
        config_id: String,
        meta: Meta,
        fresh: bool,
        reply: RpcReplyPort<Result<Resolved, ResolveError>>,
    },
    /// Forget a config; the next request loads it again.
    Invalidate(String),
    /// A load this actor started has finished.
    Loaded {
        config_id: String,
        generation: u64,
        result: Result<Option<Arc<Entry>>, StoreError>,
    },
    /// The revisions of the configs held, for catching up after a lost notice.
    Revisions(RpcReplyPort<HashMap<String, i64>>),
}

/// A config with the versions its pointers name.
#[derive(Debug)]
pub struct Entry {
    pub config: Config,
    pub release: Option<Arc<Version>>,
    pub gray: Option<Arc<Version>>,
}

#[derive(Debug, Clone)]
pub struct Resolved {
    pub config_id: String,
    pub revision: i64,
    pub version: Arc<Version>,
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum ResolveError {
    #[error(transparent)]
    Refused(#[from] Refusal),
    /// The store failed while loading; the detail was logged here.
    #[error("store unavailable")]
    Store,
    #[error(transparent)]
    Call(#[from] CallError),
}

type Waiter = (Meta, RpcReplyPort<Result<Resolved, ResolveError>>);

enum CacheSlot {
    Ready(Arc<Entry>),
    Loading {
        generation: u64,
        waiters: Vec<Waiter>,
        /// The entry before the change, served if the load fails.
        stale: Option<Arc<Entry>>,
    },
    /// The store failed: served as is until a reload succeeds.
    Stale {
        entry: Arc<Entry>,
        retry_at: Instant,
    },
}

pub struct ConfigCacheState {
    sources: Arc<Sources>,
    slots: HashMap<String, CacheSlot>,
    missing: LruCache<String, Instant>,
    next_generation: u64,
}

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
        sources.published.clear();
        Ok(ConfigCacheState {
            sources,
            slots: HashMap::new(),
            missing: LruCache::new(NonZeroUsize::new(MISSING_CAPACITY).expect("non-zero")),
            next_generation: 0,
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
            ConfigCacheMsg::Resolve {
                config_id,
                meta,
                fresh,
                reply,
            } => state.resolve(&myself, config_id, meta, fresh, reply),
            ConfigCacheMsg::Invalidate(config_id) => {
                state.sources.published.hidden_handled(&config_id);
                state.invalidate(&myself, config_id)
            }
            ConfigCacheMsg::Loaded {
                config_id,
                generation,
                result,
            } => state.loaded(config_id, generation, result),
            ConfigCacheMsg::Revisions(reply) => {
                let revisions = state
                    .slots
                    .iter()
                    .filter_map(|(id, slot)| match slot {
                        CacheSlot::Ready(entry) | CacheSlot::Stale { entry, .. } => {
                            Some((id.clone(), entry.config.revision))
                        }
                        CacheSlot::Loading { stale, .. } => stale.as_ref().map(|e| (id.clone(), e.config.revision)),
                    })
                    .collect();
                let _ = reply.send(revisions);
            }
        }
        metrics::handled(NAME, started);
        Ok(())
    }
}

impl ConfigCacheState {
    fn resolve(
        &mut self,
        myself: &ActorRef<ConfigCacheMsg>,
        config_id: String,
        meta: Meta,
        fresh: bool,
        reply: RpcReplyPort<Result<Resolved, ResolveError>>,
    ) {
        if fresh {
            self.invalidate(myself, config_id.clone());
        }
        if !fresh
            && self
                .missing
                .get(&config_id)
                .is_some_and(|until| *until > Instant::now())
        {
            let _ = reply.send(Err(Refusal::UnknownConfig(config_id).into()));
            return;
        }
        match self.slots.get_mut(&config_id) {
            Some(CacheSlot::Ready(entry)) => {
                metrics::memory_cache(true);
                let _ = reply.send(answer(entry, &meta));
            }
            Some(CacheSlot::Loading { waiters, .. }) => waiters.push((meta, reply)),
            Some(CacheSlot::Stale { entry, retry_at }) => {
                let _ = reply.send(answer(entry, &meta));
                if *retry_at <= Instant::now() {
                    let stale = Some(entry.clone());
                    let generation = self.start_load(myself, &config_id, true);
                    self.slots.insert(
                        config_id,
                        CacheSlot::Loading {
                            generation,
                            waiters: Vec::new(),
                            stale,
                        },
                    );
                }
            }
            None => {
                metrics::memory_cache(false);
                let generation = self.start_load(myself, &config_id, fresh);
                self.slots.insert(
                    config_id,
                    CacheSlot::Loading {
                        generation,
                        waiters: vec![(meta, reply)],
                        stale: None,
                    },
                );
            }
        }
    }

    /// Reloads from the store at once (a load in flight is superseded, so its
    /// waiters see the state after the change), keeping what was cached to
    /// serve if the store fails.
    fn invalidate(&mut self, myself: &ActorRef<ConfigCacheMsg>, config_id: String) {
        self.missing.pop(&config_id);
        self.sources.published.unshow(&config_id);
        let (waiters, stale) = match self.slots.remove(&config_id) {
            Some(CacheSlot::Loading { waiters, stale, .. }) => (waiters, stale),
            Some(CacheSlot::Ready(entry) | CacheSlot::Stale { entry, .. }) => (Vec::new(), Some(entry)),
            None => return,
        };
        let generation = self.start_load(myself, &config_id, true);
        self.slots.insert(
            config_id,
            CacheSlot::Loading {
                generation,
                waiters,
                stale,
            },
        );
    }

    fn loaded(&mut self, config_id: String, generation: u64, result: Result<Option<Arc<Entry>>, StoreError>) {
        let current =
            matches!(self.slots.get(&config_id), Some(CacheSlot::Loading { generation: g, .. }) if *g == generation);
        if !current {
            return;
        }
        let Some(CacheSlot::Loading { waiters, stale, .. }) = self.slots.remove(&config_id) else {
            return;
        };
        match result {
            Ok(Some(entry)) => {
                for (meta, reply) in waiters {
                    let _ = reply.send(answer(&entry, &meta));
                }
                self.sources.published.show(&config_id, &entry);
                self.slots.insert(config_id, CacheSlot::Ready(entry));
            }
            Ok(None) => {
                for (_, reply) in waiters {
                    let _ = reply.send(Err(Refusal::UnknownConfig(config_id.clone()).into()));
                }
                self.missing.put(config_id, Instant::now() + MISSING_TTL);
            }
            Err(e) => match stale {
                Some(entry) => {
                    tracing::warn!(config_id, error = %e, "config load failed; serving the last known state");
                    for (meta, reply) in waiters {
                        let _ = reply.send(answer(&entry, &meta));
                    }
                    let retry_at = Instant::now() + STALE_RETRY;
                    self.slots.insert(config_id, CacheSlot::Stale { entry, retry_at });
                }
                None => {
                    tracing::warn!(config_id, error = %e, "config load failed");
                    for (_, reply) in waiters {
                        let _ = reply.send(Err(ResolveError::Store));
                    }
                }
            },
        }
    }

    /// `from_store` skips Redis: after a change, or for `cached: false`.
    fn start_load(&mut self, myself: &ActorRef<ConfigCacheMsg>, config_id: &str, from_store: bool) -> u64 {
        self.next_generation += 1;
        let generation = self.next_generation;
        let (sources, myself, config_id) = (self.sources.clone(), myself.clone(), config_id.to_owned());
        tokio::spawn(async move {
            let result = load(&sources, &config_id, from_store).await;
            metrics::sent(NAME);
            let _ = myself.cast(ConfigCacheMsg::Loaded {
                config_id,
                generation,
                result,
            });
        });
        generation
    }
}

fn answer(entry: &Entry, meta: &Meta) -> Result<Resolved, ResolveError> {
    let version = choose(&entry.config, entry.release.as_ref(), entry.gray.as_ref(), meta)?.clone();
    Ok(Resolved {
        config_id: entry.config.id.clone(),
        revision: entry.config.revision,
        version,
    })
}

async fn load(sources: &Sources, config_id: &str, from_store: bool) -> Result<Option<Arc<Entry>>, StoreError> {
    let shared = sources.redis.as_ref().filter(|_| !from_store);
    let cached = match shared {
        Some(redis) => redis.config(config_id).await,
        None => None,
    };
    let config = match cached {
        Some(config) => config,
        None => {
            let Some(config) = sources.store.get_config(config_id).await? else {
                return Ok(None);
            };
            if let Some(redis) = &sources.redis {
                redis.put_config(&config).await;
            }
            config
        }
    };
    let release = match &config.release {
        Some(r) => version(sources, &r.code_id, from_store).await?,
        None => None,
    };
    let gray = match &config.gray {
        Some(g) => version(sources, &g.code_id, from_store).await?,
        None => None,
    };
    Ok(Some(Arc::new(Entry { config, release, gray })))
}

async fn version(sources: &Sources, code_id: &str, from_store: bool) -> Result<Option<Arc<Version>>, StoreError> {
    if let Some(redis) = sources.redis.as_ref().filter(|_| !from_store)
        && let Some(version) = redis.version(code_id).await
    {
        return Ok(Some(Arc::new(version)));
    }
    let version = sources.store.get_version(code_id).await?;
    if let (Some(redis), Some(version)) = (&sources.redis, &version) {
        redis.put_version(version).await;
    }
    Ok(version.map(Arc::new))
}

/// What callers hold to reach the ConfigCache.
#[derive(Clone)]
pub struct ConfigCacheHandle {
    slot: Slot<ConfigCacheMsg>,
    published: Arc<Published>,
    timeout: Duration,
}

impl ConfigCacheHandle {
    pub fn new(slot: Slot<ConfigCacheMsg>, sources: &Sources, timeout: Duration) -> Self {
        Self {
            slot,
            published: sources.published.clone(),
            timeout,
        }
    }

    pub async fn resolve(&self, config_id: &str, meta: Meta, fresh: bool) -> Result<Resolved, ResolveError> {
        // An id no config can have is unknown without asking the store.
        if validate_config_id(config_id).is_err() {
            return Err(Refusal::UnknownConfig(config_id.to_owned()).into());
        }
        if !fresh && let Some(entry) = self.published.get(config_id) {
            metrics::memory_cache(true);
            return answer(&entry, &meta);
        }
        let config_id = config_id.to_owned();
        self.slot
            .ask(NAME, self.timeout, |reply| ConfigCacheMsg::Resolve {
                config_id,
                meta,
                fresh,
                reply,
            })
            .await?
    }

    pub fn invalidate(&self, config_id: &str) {
        self.published.hide(config_id);
        if let Err(e) = self.slot.tell(NAME, ConfigCacheMsg::Invalidate(config_id.to_owned())) {
            self.published.hidden_handled(config_id);
            // A restarted cache starts empty, so nothing stale survives.
            tracing::debug!(config_id, error = %e, "invalidate not delivered");
        }
    }

    /// The revision of every config held in memory.
    pub async fn revisions(&self) -> Result<HashMap<String, i64>, CallError> {
        self.slot
            .ask("config cache", self.timeout, ConfigCacheMsg::Revisions)
            .await
    }

    pub fn is_alive(&self) -> bool {
        self.slot.is_alive()
    }
}
