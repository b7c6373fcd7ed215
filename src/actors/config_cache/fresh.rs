//! The `cached: false` path of the handle: nothing older than the store's
//! state when the request arrived, unless the store does not answer within
//! `store.wait_ms`; then the last known state, marked stale. While the store
//! is known not to answer, that state answers at once: waiting out a read
//! that is already known to hang would only add `store.wait_ms` to every
//! fresh fetch.

use std::sync::Arc;

use super::revisions::ReadFailed;
use super::{ConfigCacheHandle, Entry, ResolveError};
use crate::domain::resolve::Refusal;
use crate::metrics::{self, Freshness};

impl ConfigCacheHandle {
    pub(super) async fn fresh(&self, config_id: &str) -> Result<(Arc<Entry>, bool), ResolveError> {
        let deadline = tokio::time::Instant::now() + self.wait;
        let held = self.ready.get(config_id);
        if let Some(entry) = held.as_ref()
            && self.reads.unanswered(self.wait)
        {
            self.reads.probe(config_id);
            metrics::fresh_fetch(Freshness::StoreUnanswered);
            return Ok((entry.clone(), true));
        }
        let revision = match tokio::time::timeout_at(deadline, self.reads.read(config_id)).await {
            Ok(Ok(Some(revision))) => revision,
            Ok(Ok(None)) => return Err(Refusal::UnknownConfig(config_id.to_owned()).into()),
            Ok(Err(ReadFailed)) | Err(_) => return self.stale(config_id, held),
        };
        if let Some(entry) = held.as_ref()
            && entry.config.revision >= revision
        {
            metrics::fresh_fetch(Freshness::Current);
            return Ok((entry.clone(), false));
        }
        let within = deadline.saturating_duration_since(tokio::time::Instant::now());
        match self.get(config_id, Some(revision), within).await {
            Ok(entry) if entry.config.revision >= revision => {
                metrics::fresh_fetch(Freshness::Reloaded);
                Ok((entry, false))
            }
            Ok(behind) => self.stale(config_id, Some(behind)),
            Err(ResolveError::Refused(refusal)) => Err(refusal.into()),
            Err(_) => self.stale(config_id, held),
        }
    }

    /// The last known state for a fresh request the store did not serve.
    fn stale(&self, config_id: &str, held: Option<Arc<Entry>>) -> Result<(Arc<Entry>, bool), ResolveError> {
        match held {
            Some(entry) => {
                metrics::fresh_fetch(Freshness::Stale);
                Ok((entry, true))
            }
            None => Err(self.waited(config_id)),
        }
    }

    pub(super) fn waited(&self, config_id: &str) -> ResolveError {
        ResolveError::Waited {
            config_id: config_id.to_owned(),
            waited_ms: self.wait.as_millis() as u64,
        }
    }
}
