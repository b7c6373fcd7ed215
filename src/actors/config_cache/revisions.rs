//! The store's revisions of configs, read for `cached: false` fetches and
//! coalesced: every request that arrives before a read starts shares that
//! read, and one read serves every config that requests wait on. So at most
//! one read is in flight, with one batch of requests gathering for the next:
//! however many clients ask, about however many configs, freshness costs the
//! store one small read per read's round trip at most, and a fresh request
//! at most two reads of latency. `store.revision_read_gap_ms` spaces reads
//! further apart, for a store whose reads are dear.
//!
//! A store that stops answering (a partition rather than a refusal) would
//! make every fresh fetch wait out its read. Once a read has failed, or one
//! has been out longer than `store.wait_ms`, the store
//! counts as unanswered and fresh fetches answer from memory at once
//! ([`RevisionReads::unanswered`]), each asking for the next read without
//! waiting for it ([`RevisionReads::probe`]), until one succeeds again.
//!
//! Not an actor: a mutex held to push a waiter, and one task that loops while
//! requests keep arriving and ends when none wait.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::oneshot;
use tokio::time::Instant;

use crate::store::{Store, StoreError};
use crate::sync::Locked;

/// The store did not give the revision in time (the error was logged here).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadFailed;

/// The revision, or `None` when the store has no such config.
type Outcome = Result<Option<i64>, ReadFailed>;

type Waiters = HashMap<String, Vec<oneshot::Sender<Outcome>>>;

#[derive(Default)]
struct Next {
    waiters: Waiters,
    /// Whether the read loop runs; it takes `waiters` as its next batch.
    reading: bool,
}

pub struct RevisionReads {
    store: Arc<dyn Store>,
    /// A read slower than this fails its batch, so a hung store never holds
    /// the next batch behind it for longer.
    limit: Duration,
    /// The least time from the start of one read to the start of the next.
    gap: Duration,
    next: Mutex<Next>,
    reads: AtomicU64,
    failing: AtomicBool,
    /// When the read in flight started, in milliseconds after `epoch` plus
    /// one; 0 while none is.
    started: AtomicU64,
    epoch: Instant,
}

impl RevisionReads {
    pub fn new(store: Arc<dyn Store>, limit: Duration, gap: Duration) -> Self {
        Self {
            store,
            limit,
            gap,
            next: Mutex::default(),
            reads: AtomicU64::new(0),
            failing: AtomicBool::new(false),
            started: AtomicU64::new(0),
            epoch: Instant::now(),
        }
    }

    /// Whether the store is known not to answer: the last read failed, or
    /// the one in flight has been out longer than `wait`.
    pub fn unanswered(&self, wait: Duration) -> bool {
        if self.failing.load(Ordering::Relaxed) {
            return true;
        }
        let started = self.started.load(Ordering::Relaxed);
        started != 0 && self.now() > started + wait.as_millis() as u64
    }

    /// Asks for a read of `config_id` without waiting for it, so that the
    /// store's return is noticed while fetches are answered from memory. A
    /// read already gathering or in flight is enough.
    pub fn probe(self: &Arc<Self>, config_id: &str) {
        let start = {
            let mut next = self.next.locked();
            if !next.waiters.contains_key(config_id) {
                next.waiters.insert(config_id.to_owned(), Vec::new());
            }
            !std::mem::replace(&mut next.reading, true)
        };
        if start {
            tokio::spawn(self.clone().read_while_asked());
        }
    }

    fn now(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64 + 1
    }

    /// The store's revision of `config_id` as of a read that started after
    /// this call.
    pub async fn read(self: &Arc<Self>, config_id: &str) -> Outcome {
        let (sender, outcome) = oneshot::channel();
        let start = {
            let mut next = self.next.locked();
            match next.waiters.get_mut(config_id) {
                Some(waiters) => waiters.push(sender),
                None => {
                    next.waiters.insert(config_id.to_owned(), vec![sender]);
                }
            }
            !std::mem::replace(&mut next.reading, true)
        };
        if start {
            tokio::spawn(self.clone().read_while_asked());
        }
        outcome.await.unwrap_or(Err(ReadFailed))
    }

    /// Store reads made so far.
    pub fn reads(&self) -> u64 {
        self.reads.load(Ordering::Relaxed)
    }

    async fn read_while_asked(self: Arc<Self>) {
        loop {
            let batch = {
                let mut next = self.next.locked();
                if next.waiters.is_empty() {
                    next.reading = false;
                    return;
                }
                std::mem::take(&mut next.waiters)
            };
            let started = Instant::now();
            let ids: Vec<String> = batch.keys().cloned().collect();
            let found = self.read_once(&ids).await;
            for (config_id, waiters) in batch {
                let outcome = found
                    .as_ref()
                    .map(|f| f.get(&config_id).copied())
                    .map_err(|_| ReadFailed);
                for waiter in waiters {
                    let _ = waiter.send(outcome);
                }
            }
            // Requests arriving meanwhile gather for the next read.
            match self.gap.is_zero() {
                true => tokio::task::yield_now().await,
                false => tokio::time::sleep_until(started + self.gap).await,
            }
        }
    }

    async fn read_once(&self, ids: &[String]) -> Result<HashMap<String, i64>, ReadFailed> {
        self.reads.fetch_add(1, Ordering::Relaxed);
        crate::metrics::revision_read();
        self.started.store(self.now(), Ordering::Relaxed);
        let result = match tokio::time::timeout(self.limit, self.store.config_revisions(ids)).await {
            Ok(result) => result,
            Err(_) => Err(StoreError::Unavailable(format!("no answer within {:?}", self.limit))),
        };
        self.started.store(0, Ordering::Relaxed);
        match result {
            Ok(found) => {
                if self.failing.swap(false, Ordering::Relaxed) {
                    tracing::info!("revision reads answer again");
                }
                Ok(found.into_iter().collect())
            }
            Err(error) => {
                // Once per outage, not once per read.
                if !self.failing.swap(true, Ordering::Relaxed) {
                    tracing::warn!(%error, "revision read failed; fresh fetches get the last known state");
                }
                Err(ReadFailed)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn requests_arriving_during_a_read_share_the_next_one_whatever_their_config() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("r.db").display());
        let store = crate::store::connect(&url, 1).await.unwrap();
        let new = crate::store::NewConfig {
            id: "present".into(),
            description: String::new(),
            secret: "s".repeat(16),
        };
        store.create_config(new, "test").await.unwrap();
        let gap = Duration::from_millis(1);
        let reads = Arc::new(RevisionReads::new(store, Duration::from_secs(5), gap));
        let asks: Vec<_> = (0..60)
            .map(|i| {
                let reads = reads.clone();
                let id = ["present", "absent", "other"][i % 3];
                tokio::spawn(async move { (id, reads.read(id).await) })
            })
            .collect();
        for ask in asks {
            let (id, outcome) = ask.await.unwrap();
            assert_eq!(outcome, Ok((id == "present").then_some(1)), "{id}");
        }
        assert!(reads.reads() <= 2, "{} reads for 60 requests", reads.reads());
        // The loop ends once nobody waits (however busy the machine is);
        // the next request reads again.
        assert_eq!(reads.read("absent").await, Ok(None));
        let idle = || {
            let next = reads.next.lock().unwrap();
            next.waiters.is_empty() && !next.reading
        };
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while !idle() && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(gap).await;
        }
        assert!(idle(), "the read loop is still running");
    }
}
