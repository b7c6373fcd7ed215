//! The store's revision of a config, read for `cached: false` fetches and
//! coalesced per config: every request that arrives before a read starts
//! shares that read, so one config has at most one read in flight and one
//! batch of requests gathering for the next. Under any load that is at most
//! one read per config per store round trip, however many clients ask.
//!
//! Not an actor: a mutex held for a map lookup, and one task per config that
//! loops while requests keep arriving and ends when none wait.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::oneshot;

use crate::store::{Store, StoreError};

/// The store did not give the revision in time (the error was logged here).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadFailed;

/// The revision, or `None` when the store has no such config.
pub type Outcome = Result<Option<i64>, ReadFailed>;

type Waiters = Vec<oneshot::Sender<Outcome>>;

pub struct RevisionReads {
    store: Arc<dyn Store>,
    /// A read slower than this fails its batch, so a hung store never holds
    /// the next batch behind it for longer.
    limit: Duration,
    /// Present while a config's read loop runs: the requests for its next read.
    next: Mutex<HashMap<String, Waiters>>,
    reads: AtomicU64,
    failing: AtomicBool,
}

impl RevisionReads {
    pub fn new(store: Arc<dyn Store>, limit: Duration) -> Self {
        Self {
            store,
            limit,
            next: Mutex::default(),
            reads: AtomicU64::new(0),
            failing: AtomicBool::new(false),
        }
    }

    /// The store's revision of `config_id` as of a read that started after
    /// this call.
    pub async fn read(self: &Arc<Self>, config_id: &str) -> Outcome {
        let (sender, outcome) = oneshot::channel();
        let start = {
            let mut next = self.next.lock().unwrap_or_else(|e| e.into_inner());
            match next.get_mut(config_id) {
                Some(waiters) => {
                    waiters.push(sender);
                    false
                }
                None => {
                    next.insert(config_id.to_owned(), vec![sender]);
                    true
                }
            }
        };
        if start {
            tokio::spawn(self.clone().read_while_asked(config_id.to_owned()));
        }
        outcome.await.unwrap_or(Err(ReadFailed))
    }

    /// Store reads made so far.
    pub fn reads(&self) -> u64 {
        self.reads.load(Ordering::Relaxed)
    }

    async fn read_while_asked(self: Arc<Self>, config_id: String) {
        loop {
            let batch = {
                let mut next = self.next.lock().unwrap_or_else(|e| e.into_inner());
                let Some(waiters) = next.get_mut(&config_id) else {
                    return;
                };
                if waiters.is_empty() {
                    next.remove(&config_id);
                    return;
                }
                std::mem::take(waiters)
            };
            let outcome = self.read_once(&config_id).await;
            for waiter in batch {
                let _ = waiter.send(outcome);
            }
        }
    }

    async fn read_once(&self, config_id: &str) -> Outcome {
        self.reads.fetch_add(1, Ordering::Relaxed);
        crate::metrics::revision_read();
        let result = match tokio::time::timeout(self.limit, self.store.config_revision(config_id)).await {
            Ok(result) => result,
            Err(_) => Err(StoreError::Unavailable(format!("no answer within {:?}", self.limit))),
        };
        match result {
            Ok(revision) => {
                if self.failing.swap(false, Ordering::Relaxed) {
                    tracing::info!("revision reads answer again");
                }
                Ok(revision)
            }
            Err(error) => {
                // Once per outage, not once per read.
                if !self.failing.swap(true, Ordering::Relaxed) {
                    tracing::warn!(config_id, %error, "revision read failed; fresh fetches get the last known state");
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
    async fn requests_arriving_during_a_read_share_the_next_one() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("r.db").display());
        let store = crate::store::connect(&url, 1).await.unwrap();
        let reads = Arc::new(RevisionReads::new(store, Duration::from_secs(5)));
        let asks: Vec<_> = (0..50)
            .map(|_| {
                let reads = reads.clone();
                tokio::spawn(async move { reads.read("absent").await })
            })
            .collect();
        for ask in asks {
            assert_eq!(ask.await.unwrap(), Ok(None));
        }
        assert!(reads.reads() <= 2, "{} reads for 50 requests", reads.reads());
        // The loop ended; the next request reads again.
        assert_eq!(reads.read("absent").await, Ok(None));
        assert!(reads.next.lock().unwrap().is_empty());
    }
}
