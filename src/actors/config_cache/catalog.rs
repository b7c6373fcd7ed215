//! The ids of every config, for bulk evaluation: read from the store at most
//! once per `ofrep.catalog_max_age_ms`, one read shared by everyone waiting
//! for it. Entries themselves come from memory; only the list is read here.
//!
//! When a read fails the last list read keeps answering, so a store outage
//! never fails a bulk evaluation that succeeded before it; with no list yet,
//! callers within the max age of a failure are refused at once instead of
//! queueing behind one slow read each.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Mutex;
use tokio::time::Instant;

use super::ResolveError;
use crate::store::Store;
use crate::sync::RwLocked;

/// Every config's id, a little stale at most.
pub struct Catalog {
    store: Arc<dyn Store>,
    max_age: Duration,
    /// The longest one read may take (`store.wait_ms`).
    wait: Duration,
    /// The last good list and when it was read: every caller reads it,
    /// under a read lock only, while it is fresh.
    recent: std::sync::RwLock<Option<(Instant, Arc<[String]>)>>,
    /// When the store was last asked, whatever it answered; taken only to
    /// ask, so one read serves everyone waiting.
    asked: Mutex<Option<Instant>>,
}

impl Catalog {
    /// A catalog over `store`, read again once a list is `max_age` old.
    pub fn new(store: Arc<dyn Store>, max_age: Duration, wait: Duration) -> Self {
        Self {
            store,
            max_age,
            wait,
            recent: Default::default(),
            asked: Mutex::default(),
        }
    }

    /// The ids, sorted.
    pub async fn ids(&self) -> Result<Arc<[String]>, ResolveError> {
        let last = || self.recent.reading().as_ref().map(|(at, ids)| (*at, ids.clone()));
        if let Some((at, ids)) = last()
            && at.elapsed() < self.max_age
        {
            return Ok(ids);
        }
        let waited = || ResolveError::Waited {
            config_id: "(every config)".into(),
            waited_ms: self.wait.as_millis() as u64,
        };
        let mut asked = tokio::time::timeout(self.wait, self.asked.lock())
            .await
            .map_err(|_| waited())?;
        // Asked just now by someone else: what that read left stands.
        if asked.is_some_and(|at| at.elapsed() < self.max_age) {
            return last().map(|(_, ids)| ids).ok_or(ResolveError::Store);
        }
        let read = tokio::time::timeout(self.wait, self.store.revisions()).await;
        *asked = Some(Instant::now());
        match read {
            Ok(Ok(revisions)) => {
                let mut ids: Vec<String> = revisions.into_iter().map(|r| r.config_id).collect();
                ids.sort_unstable();
                let ids: Arc<[String]> = ids.into();
                *self.recent.writing() = Some((Instant::now(), ids.clone()));
                Ok(ids)
            }
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "could not list configs");
                last().map(|(_, ids)| ids).ok_or(ResolveError::Store)
            }
            Err(_) => last().map(|(_, ids)| ids).ok_or_else(waited),
        }
    }
}
