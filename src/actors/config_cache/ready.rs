//! The ConfigCache's ready entries, for handles to read without
//! asking the actor. Only the actor writes here, and it replaces an entry
//! only with a newer one that has finished loading, so readers always find
//! the last known state.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use super::Entry;
use crate::sync::RwLocked;

/// Ready entries, read by handles without asking the actor.
#[derive(Default)]
pub struct ReadyEntries(RwLock<HashMap<String, Arc<Entry>>>);

impl ReadyEntries {
    pub(super) fn get(&self, config_id: &str) -> Option<Arc<Entry>> {
        self.0.reading().get(config_id).cloned()
    }

    /// Each id's entry, under one read lock.
    pub(super) fn get_many(&self, ids: &[String]) -> Vec<Option<Arc<Entry>>> {
        let ready = self.0.reading();
        ids.iter().map(|id| ready.get(id).cloned()).collect()
    }

    pub(super) fn put(&self, config_id: &str, entry: &Arc<Entry>) {
        let mut ready = self.0.writing();
        ready.insert(config_id.to_owned(), entry.clone());
    }

    /// The store has no such config any more.
    pub(super) fn remove(&self, config_id: &str) {
        self.0.writing().remove(config_id);
    }

    /// A new actor starts empty.
    pub(super) fn clear(&self) {
        self.0.writing().clear();
    }
}
