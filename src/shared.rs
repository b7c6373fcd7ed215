//! What nodes share through Redis: copies of configs and versions under the original
//! keys (`config/{id}`, `code/{code_id}`), behind a prefix, with a TTL. Every
//! call is bounded by `redis.timeout_ms`; a failure is logged (once per
//! outage) and counted, and the caller goes on to the store. While Redis
//! fails, calls are skipped but for one try every `RETRY_FAILING`, so an
//! outage costs a load one timeout at most, not one per call. Nothing here
//! ever fails a request.

use std::sync::Arc;
use std::sync::LazyLock;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use redis::AsyncCommands;
use redis::aio::ConnectionManager;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::domain::{Config, Version};
use crate::settings::Redis;

/// While Redis fails, how often a call tries it again.
const RETRY_FAILING: Duration = Duration::from_secs(1);

/// Milliseconds on a clock that only goes forward.
fn monotonic_ms() -> u64 {
    static START: LazyLock<Instant> = LazyLock::new(Instant::now);
    START.elapsed().as_millis() as u64
}

/// Why a call to Redis gave nothing; logged, never shown to a client.
#[derive(Debug, thiserror::Error)]
enum SharedError {
    /// Redis is failing and this call was not the periodic retry.
    #[error("skipped while redis is failing")]
    Skipped,
    /// Redis answered with an error.
    #[error(transparent)]
    Redis(#[from] redis::RedisError),
    /// Redis did not answer in time.
    #[error("no answer within {0:?}")]
    Timeout(Duration),
}

#[derive(Debug, Default)]
/// The shared copies' counters.
pub struct SharedStats {
    /// Reads that found the key.
    pub hits: AtomicU64,
    /// Reads that did not.
    pub misses: AtomicU64,
    /// Calls that failed or timed out.
    pub errors: AtomicU64,
}

#[derive(Clone)]
/// Configs and versions shared between nodes in Redis, read before the store.
pub struct Shared {
    conn: ConnectionManager,
    prefix: Arc<str>,
    ttl_s: u64,
    timeout: Duration,
    /// Its counters, shared by every clone.
    pub stats: Arc<SharedStats>,
    failing: Arc<AtomicBool>,
    /// When a call last went to Redis while it was failing (`monotonic_ms`).
    last_try_ms: Arc<AtomicU64>,
}

impl Shared {
    /// Connects lazily: a Redis that is down at start (or later) only means
    /// calls fail fast until it is back; the manager reconnects by itself.
    pub fn connect(settings: &Redis) -> anyhow::Result<Self> {
        let client = redis::Client::open(settings.url.as_str())?;
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(settings.timeout()))
            .set_response_timeout(Some(settings.timeout()))
            .set_number_of_retries(1);
        let conn = ConnectionManager::new_lazy_with_config(client, config)?;
        Ok(Self {
            conn,
            prefix: settings.prefix.as_str().into(),
            ttl_s: settings.ttl_s,
            timeout: settings.timeout(),
            stats: Arc::default(),
            failing: Arc::default(),
            last_try_ms: Arc::default(),
        })
    }

    /// Hits, misses and errors so far.
    pub fn counts(&self) -> (u64, u64, u64) {
        let s = &self.stats;
        (
            s.hits.load(Ordering::Relaxed),
            s.misses.load(Ordering::Relaxed),
            s.errors.load(Ordering::Relaxed),
        )
    }

    /// The shared connection, for the bus and the served record.
    pub fn connection(&self) -> ConnectionManager {
        self.conn.clone()
    }

    /// The key prefix (`redis.prefix`) every key starts with.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    fn config_key(&self, id: &str) -> String {
        format!("{}config/{id}", self.prefix)
    }

    fn code_key(&self, code_id: &str) -> String {
        format!("{}code/{code_id}", self.prefix)
    }

    /// A config, if Redis holds it and answers in time.
    pub async fn config(&self, id: &str) -> Option<Config> {
        self.get(&self.config_key(id)).await
    }

    /// Stores a config for the other nodes; a failure is counted, not returned.
    pub async fn put_config(&self, config: &Config) {
        self.put(&self.config_key(&config.id), config).await;
    }

    /// A version by code id, if Redis holds it and answers in time.
    pub async fn version(&self, code_id: &str) -> Option<Version> {
        self.get(&self.code_key(code_id)).await
    }

    /// Stores a version for the other nodes; a failure is counted, not returned.
    pub async fn put_version(&self, version: &Version) {
        self.put(&self.code_key(&version.code_id), version).await;
    }

    /// Drops a config and, when its health changed, a version, before the
    /// change is announced, so no node reloads the old state from here.
    pub async fn forget(&self, config_id: &str, code_id: Option<&str>) {
        let mut keys = vec![self.config_key(config_id)];
        keys.extend(code_id.map(|c| self.code_key(c)));
        let mut conn = self.conn.clone();
        let outcome = self.bounded(async move { conn.del::<_, ()>(keys).await }).await;
        self.record(outcome);
    }

    fn served_key(&self, code_id: &str, bucket: u64) -> String {
        format!("{}served/{code_id}/{bucket}", self.prefix)
    }

    /// Writes parts of this node's served sketches, one hash per version and
    /// bucket and a field per node and part, each key expiring `ttl` after
    /// its last write. One round trip for all of them.
    pub async fn share_served(&self, parts: Vec<(String, u64, String, Vec<u8>)>, ttl: Duration) -> bool {
        let mut pipe = redis::pipe();
        for (code_id, bucket, field, bytes) in parts {
            let key = self.served_key(&code_id, bucket);
            pipe.hset(&key, field, bytes).ignore();
            pipe.pexpire(&key, ttl.as_millis() as i64).ignore();
        }
        let mut conn = self.conn.clone();
        let outcome = self
            .bounded(async move { pipe.query_async::<()>(&mut conn).await })
            .await;
        self.record(outcome).is_some()
    }

    /// Every node's served sketch parts of `code_id` in `buckets`, as
    /// (bucket, field, bytes); `None` when Redis did not answer.
    pub async fn served(&self, code_id: &str, buckets: &[u64]) -> Option<Vec<(u64, String, Vec<u8>)>> {
        let mut pipe = redis::pipe();
        for bucket in buckets {
            pipe.hgetall(self.served_key(code_id, *bucket));
        }
        let mut conn = self.conn.clone();
        let outcome = self
            .bounded(async move {
                pipe.query_async::<Vec<std::collections::HashMap<String, Vec<u8>>>>(&mut conn)
                    .await
            })
            .await;
        let per_bucket = self.record(outcome)?;
        let sketches = buckets
            .iter()
            .zip(per_bucket)
            .flat_map(|(bucket, fields)| fields.into_iter().map(move |(field, bytes)| (*bucket, field, bytes)))
            .collect();
        Some(sketches)
    }

    async fn get<T: DeserializeOwned>(&self, key: &str) -> Option<T> {
        let mut conn = self.conn.clone();
        let key = key.to_owned();
        let text: Option<String> = self.record(self.bounded(async move { conn.get(key).await }).await)?;
        match text.and_then(|t| serde_json::from_str(&t).ok()) {
            Some(value) => {
                self.stats.hits.fetch_add(1, Ordering::Relaxed);
                Some(value)
            }
            None => {
                self.stats.misses.fetch_add(1, Ordering::Relaxed);
                None
            }
        }
    }

    async fn put<T: Serialize>(&self, key: &str, value: &T) {
        let Ok(text) = serde_json::to_string(value) else {
            return;
        };
        let mut conn = self.conn.clone();
        let (key, ttl) = (key.to_owned(), self.ttl_s);
        let outcome = self
            .bounded(async move { conn.set_ex::<_, _, ()>(key, text, ttl).await })
            .await;
        self.record(outcome);
    }

    async fn bounded<T>(&self, call: impl Future<Output = redis::RedisResult<T>>) -> Result<T, SharedError> {
        if self.failing.load(Ordering::Relaxed) {
            let now = monotonic_ms();
            let last = self.last_try_ms.load(Ordering::Relaxed);
            let due = now.saturating_sub(last) >= RETRY_FAILING.as_millis() as u64;
            // One caller wins the retry; the others skip at once.
            if !due
                || self
                    .last_try_ms
                    .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                    .is_err()
            {
                return Err(SharedError::Skipped);
            }
        }
        match tokio::time::timeout(self.timeout, call).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(e)) => Err(SharedError::Redis(e)),
            Err(_) => Err(SharedError::Timeout(self.timeout)),
        }
    }

    /// Counts a failure and logs the start and end of an outage, not every
    /// failed call.
    fn record<T>(&self, outcome: Result<T, SharedError>) -> Option<T> {
        match outcome {
            Ok(value) => {
                if self.failing.swap(false, Ordering::Relaxed) {
                    tracing::info!("redis cache is answering again");
                }
                Some(value)
            }
            Err(error) => {
                self.stats.errors.fetch_add(1, Ordering::Relaxed);
                if !self.failing.swap(true, Ordering::Relaxed) {
                    self.last_try_ms.store(monotonic_ms(), Ordering::Relaxed);
                    tracing::warn!(%error, "redis cache unavailable; serving from memory and the store");
                }
                None
            }
        }
    }
}
