//! Counters of the EvaluatorPool, shared by its handle, its Evaluators and
//! its discard handler, and kept across pool restarts. Metrics read them.

use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;

#[derive(Debug, Default)]
pub struct PoolStats {
    submitted: AtomicU64,
    started: AtomicU64,
    finished: AtomicU64,
    shed: AtomicU64,
    expired: AtomicU64,
    killed: AtomicU64,
    crashed: AtomicU64,
    restarted: AtomicU64,
    recycled: AtomicU64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Count {
    Submitted,
    Started,
    Finished,
    /// Refused because the queue was full or the pool paused with `shed`.
    Shed,
    /// Dropped after waiting past its deadline.
    Expired,
    /// Overran its deadline plus grace and was killed (or abandoned).
    Killed,
    /// The worker died under it.
    Crashed,
    /// A worker process or thread started in place of one that failed.
    Restarted,
    /// A worker replaced after its run count, memory or discarded contexts.
    Recycled,
}

/// A point-in-time copy, with the gauges derived from the counters.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq, Eq)]
pub struct PoolSnapshot {
    pub submitted: u64,
    pub running: u64,
    pub finished: u64,
    pub shed: u64,
    pub expired: u64,
    pub killed: u64,
    pub crashed: u64,
    pub restarted: u64,
    pub recycled: u64,
}

impl PoolStats {
    pub fn add(&self, count: Count) {
        self.counter(count).fetch_add(1, Ordering::Relaxed);
    }

    fn counter(&self, count: Count) -> &AtomicU64 {
        match count {
            Count::Submitted => &self.submitted,
            Count::Started => &self.started,
            Count::Finished => &self.finished,
            Count::Shed => &self.shed,
            Count::Expired => &self.expired,
            Count::Killed => &self.killed,
            Count::Crashed => &self.crashed,
            Count::Restarted => &self.restarted,
            Count::Recycled => &self.recycled,
        }
    }

    pub fn snapshot(&self) -> PoolSnapshot {
        let get = |c| self.counter(c).load(Ordering::Relaxed);
        let finished = get(Count::Finished);
        PoolSnapshot {
            submitted: get(Count::Submitted),
            running: get(Count::Started).saturating_sub(finished),
            finished,
            shed: get(Count::Shed),
            expired: get(Count::Expired),
            killed: get(Count::Killed),
            crashed: get(Count::Crashed),
            restarted: get(Count::Restarted),
            recycled: get(Count::Recycled),
        }
    }
}
