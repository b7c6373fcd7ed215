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

/// A list read lately, for the path that takes no lock but a read lock.
type Recent = std::sync::RwLock<Option<(Instant, Arc<[String]>)>>;

#[derive(Default)]
struct Held {
    ids: Option<Arc<[String]>>,
    /// When `ids` was read, or the last read failed.
    at: Option<Instant>,
}

/// Every config's id, a little stale at most.
pub struct Catalog {
    store: Arc<dyn Store>,
    max_age: Duration,
    /// The longest one read may take (`store.wait_ms`).
    wait: Duration,
    /// The last good list, read by every caller while it is fresh.
    recent: Recent,
    /// Taken only to read the store, so one read serves everyone waiting.
    held: Mutex<Held>,
}

impl Catalog {
    /// A catalog over `store`, read again once a list is `max_age` old.
    pub fn new(store: Arc<dyn Store>, max_age: Duration, wait: Duration) -> Self {
        Self {
            store,
            max_age,
            wait,
            recent: Recent::default(),
            held: Mutex::default(),
        }
    }

    /// The ids, sorted.
    pub async fn ids(&self) -> Result<Arc<[String]>, ResolveError> {
        if let Some((at, ids)) = &*self.recent.reading()
            && at.elapsed() < self.max_age
        {
            return Ok(ids.clone());
        }
        let waited = || ResolveError::Waited {
            config_id: "(every config)".into(),
            waited_ms: self.wait.as_millis() as u64,
        };
        let mut held = tokio::time::timeout(self.wait, self.held.lock())
            .await
            .map_err(|_| waited())?;
        let recent = held.at.is_some_and(|at| at.elapsed() < self.max_age);
        match (&held.ids, recent) {
            (Some(ids), true) => return Ok(ids.clone()),
            (None, true) => return Err(ResolveError::Store),
            _ => {}
        }
        let read = tokio::time::timeout(self.wait, self.store.revisions()).await;
        held.at = Some(Instant::now());
        match read {
            Ok(Ok(revisions)) => {
                let mut ids: Vec<String> = revisions.into_iter().map(|r| r.config_id).collect();
                ids.sort_unstable();
                let ids: Arc<[String]> = ids.into();
                held.ids = Some(ids.clone());
                *self.recent.writing() = Some((Instant::now(), ids.clone()));
                Ok(ids)
            }
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "could not list configs");
                held.ids.clone().ok_or(ResolveError::Store)
            }
            Err(_) => held.ids.clone().ok_or_else(waited),
        }
    }
}
