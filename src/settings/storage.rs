//! `[store]` and `[redis]`: where state lives, and how long a fetch waits on it.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// `[store]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Store {
    /// `sqlite://path`, `postgres://...` or `mysql://...` (MySQL 8, MariaDB 10.6+).
    pub url: String,
    /// Connections in the pool.
    pub max_connections: u32,
    /// The longest a fetch waits on the store: a `cached: false` fetch is then
    /// answered from the last known state, and a fetch of a config not in
    /// memory gets 503 with `Retry-After`.
    pub wait_ms: u64,
    /// How often the store's revisions are read while no change bus carries
    /// changes (no Redis, or Redis unreachable).
    pub poll_ms: u64,
    /// The least time between the starts of two revision reads for
    /// `cached: false` fetches (which share them); 0 = back to back.
    pub revision_read_gap_ms: u64,
}

impl Default for Store {
    fn default() -> Self {
        Self {
            url: "sqlite://vane.db".into(),
            max_connections: 8,
            wait_ms: 500,
            poll_ms: 1000,
            revision_read_gap_ms: 0,
        }
    }
}

impl Store {
    /// `wait_ms`.
    pub fn wait(&self) -> Duration {
        Duration::from_millis(self.wait_ms)
    }

    /// `revision_read_gap_ms`.
    pub fn revision_read_gap(&self) -> Duration {
        Duration::from_millis(self.revision_read_gap_ms)
    }

    /// `poll_ms`.
    pub fn poll(&self) -> Duration {
        Duration::from_millis(self.poll_ms)
    }
}

/// `[redis]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Redis {
    /// Empty: one node, no shared cache, no change bus.
    pub url: String,
    /// Put before every key and the change channel, so several deployments
    /// (or tests) can share one Redis.
    pub prefix: String,
    /// How long configs and versions stay in Redis.
    pub ttl_s: u64,
    /// A Redis call slower than this counts as failed; the request goes on
    /// from memory and the store.
    pub timeout_ms: u64,
    /// How often a node compares its revisions with the store anyway, in case
    /// a notice was lost while it was connected.
    pub reconcile_interval_ms: u64,
}

impl Default for Redis {
    fn default() -> Self {
        Self {
            url: String::new(),
            prefix: "vane:".into(),
            ttl_s: 300,
            timeout_ms: 200,
            reconcile_interval_ms: 30_000,
        }
    }
}

impl Redis {
    /// Whether a Redis is configured.
    pub fn enabled(&self) -> bool {
        !self.url.is_empty()
    }

    /// `timeout_ms`.
    pub fn timeout(&self) -> Duration {
        Duration::from_millis(self.timeout_ms)
    }

    /// `reconcile_interval_ms`.
    pub fn reconcile_interval(&self) -> Duration {
        Duration::from_millis(self.reconcile_interval_ms)
    }
}
