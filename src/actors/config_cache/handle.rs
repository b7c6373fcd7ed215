//! What callers hold to reach the ConfigCache: the ready entries read
//! without asking the actor, the shared revision reads of fresh requests
//! (`fresh.rs`), and asks with a timeout for everything else.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use super::ready::ReadyEntries;
use super::revisions::RevisionReads;
use super::{ConfigCacheMsg, Entry, NAME, ResolveError, Resolved, Sources};
use crate::actors::{CallError, Slot};
use crate::domain::Meta;
use crate::domain::model::validate_config_id;
use crate::domain::resolve::{Refusal, choose};
use crate::metrics;

fn answer(entry: &Entry, meta: &Meta, stale: bool) -> Result<Resolved, ResolveError> {
    let chosen = choose(&entry.config, entry.release.as_ref(), entry.gray.as_ref(), meta)?;
    Ok(Resolved {
        config_id: entry.config.id.clone(),
        revision: entry.config.revision,
        version: chosen.version.clone(),
        split: chosen.split,
        targeted: chosen.targeted,
        stale,
    })
}

impl Entry {
    /// The version this entry serves `meta`, chosen as a cached fetch's is.
    pub fn resolve(&self, meta: &Meta) -> Result<Resolved, ResolveError> {
        answer(self, meta, false)
    }
}

/// How fetches wait on the store (`[store]` settings).
#[derive(Debug, Clone, Copy)]
pub struct StoreWait {
    /// The longest a fetch waits on the store (`store.wait_ms`).
    pub wait: Duration,
    /// The least time between the starts of two revision reads.
    pub read_gap: Duration,
}

/// What callers hold to reach the ConfigCache.
#[derive(Clone)]
pub struct ConfigCacheHandle {
    slot: Slot<ConfigCacheMsg>,
    pub(super) ready: Arc<ReadyEntries>,
    pub(super) reads: Arc<RevisionReads>,
    timeout: Duration,
    /// The longest a fetch waits on the store (`store.wait_ms`).
    pub(super) wait: Duration,
}

impl ConfigCacheHandle {
    /// A handle over `slot` reading `sources`; calls wait at most `timeout`.
    pub fn new(slot: Slot<ConfigCacheMsg>, sources: &Sources, timeout: Duration, store_wait: StoreWait) -> Self {
        Self {
            slot,
            ready: sources.ready.clone(),
            reads: Arc::new(RevisionReads::new(
                sources.store.clone(),
                store_wait.wait,
                store_wait.read_gap,
            )),
            timeout,
            wait: store_wait.wait,
        }
    }

    /// Resolves a request to the version to run. `fresh` (`cached: false`)
    /// serves nothing older than the store's state when it arrived, unless
    /// the store does not answer within `store.wait_ms`: then the last known
    /// state, marked `stale`.
    pub async fn resolve(&self, config_id: &str, meta: &Meta, fresh: bool) -> Result<Resolved, ResolveError> {
        // An id no config can have is unknown without asking the store.
        if validate_config_id(config_id).is_err() {
            return Err(Refusal::UnknownConfig(config_id.to_owned()).into());
        }
        if !fresh && let Some(entry) = self.ready.get(config_id) {
            metrics::memory_cache(true);
            return answer(&entry, meta, false);
        }
        let (entry, stale) = match fresh {
            true => self.fresh(config_id).await?,
            false => (self.get(config_id, None, self.wait).await?, false),
        };
        answer(&entry, meta, stale)
    }

    /// The config and its current versions as memory holds them (loading
    /// them if it holds none): for checks that may lag a change by a moment,
    /// such as a report's secret.
    pub async fn entry(&self, config_id: &str) -> Result<Arc<Entry>, ResolveError> {
        if validate_config_id(config_id).is_err() {
            return Err(Refusal::UnknownConfig(config_id.to_owned()).into());
        }
        match self.ready.get(config_id) {
            Some(entry) => Ok(entry),
            None => self.get(config_id, None, self.wait).await,
        }
    }

    /// The entries memory holds for `ids`, without loading any (`None`
    /// for those it does not hold).
    pub fn held(&self, ids: &[String]) -> Vec<Option<Arc<Entry>>> {
        self.ready.get_many(ids)
    }

    pub(super) async fn get(
        &self,
        config_id: &str,
        min_revision: Option<i64>,
        within: Duration,
    ) -> Result<Arc<Entry>, ResolveError> {
        self.ask_get(config_id, min_revision, false, within).await
    }

    async fn ask_get(
        &self,
        config_id: &str,
        min_revision: Option<i64>,
        if_held: bool,
        within: Duration,
    ) -> Result<Arc<Entry>, ResolveError> {
        let id = config_id.to_owned();
        let asked = self
            .slot
            .ask(NAME, within, |reply| ConfigCacheMsg::Get {
                config_id: id,
                min_revision,
                if_held,
                reply,
            })
            .await;
        match asked {
            Ok(result) => result,
            Err(CallError::Timeout(_)) => Err(self.waited(config_id)),
            Err(e) => Err(e.into()),
        }
    }

    /// Returns once memory serves `revision` of `config_id` or newer (or its
    /// reload failed, and a retry is scheduled), serving the old entry until
    /// then; a config not in memory is left to load on its next request.
    /// Changes call this before telling subscribers, so a client told of a
    /// change never fetches what it replaced from this node.
    pub async fn refresh(&self, config_id: &str, revision: i64) -> Result<(), ResolveError> {
        match self.ask_get(config_id, Some(revision), true, self.timeout).await {
            Ok(_) | Err(ResolveError::Refused(Refusal::UnknownConfig(_))) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// The revision of every config held in memory.
    pub async fn revisions(&self) -> Result<HashMap<String, i64>, CallError> {
        self.slot.ask(NAME, self.timeout, ConfigCacheMsg::Revisions).await
    }

    /// Store reads made for fresh requests so far (each serves a batch).
    pub fn revision_reads(&self) -> u64 {
        self.reads.reads()
    }

    /// The actor's slot, for tests that kill it.
    #[cfg(test)]
    pub fn slot(&self) -> &Slot<ConfigCacheMsg> {
        &self.slot
    }

    /// Whether the actor is running (between a crash and its restart it is not).
    pub fn is_alive(&self) -> bool {
        self.slot.is_alive()
    }
}
