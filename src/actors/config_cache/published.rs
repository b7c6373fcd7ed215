//! The ConfigCache's ready entries, published for handles to read without
//! asking the actor. Only the actor shows an entry; a handle hides one at
//! once when it sends an invalidation.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use super::Entry;

/// Ready entries, read by handles without asking the actor.
#[derive(Default)]
pub struct Published(RwLock<HashMap<String, Shown>>);

enum Shown {
    Ready(Arc<Entry>),
    /// Invalidations sent and not yet handled: nothing is shown until the
    /// actor has handled them all.
    Hidden(u32),
}

impl Published {
    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<String, Shown>> {
        self.0.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<String, Shown>> {
        self.0.write().unwrap_or_else(|e| e.into_inner())
    }

    pub(super) fn get(&self, config_id: &str) -> Option<Arc<Entry>> {
        match self.read().get(config_id) {
            Some(Shown::Ready(entry)) => Some(entry.clone()),
            _ => None,
        }
    }

    /// Shows `entry` unless an invalidation is on its way.
    pub(super) fn show(&self, config_id: &str, entry: &Arc<Entry>) {
        let mut shown = self.write();
        if !matches!(shown.get(config_id), Some(Shown::Hidden(_))) {
            shown.insert(config_id.to_owned(), Shown::Ready(entry.clone()));
        }
    }

    /// The actor stopped serving its entry (a reload started).
    pub(super) fn unshow(&self, config_id: &str) {
        let mut shown = self.write();
        if matches!(shown.get(config_id), Some(Shown::Ready(_))) {
            shown.remove(config_id);
        }
    }

    /// A handle sent an invalidation.
    pub(super) fn hide(&self, config_id: &str) {
        let mut shown = self.write();
        match shown.get_mut(config_id) {
            Some(Shown::Hidden(pending)) => *pending += 1,
            _ => {
                shown.insert(config_id.to_owned(), Shown::Hidden(1));
            }
        }
    }

    /// The actor handled an invalidation (or it was never delivered).
    pub(super) fn hidden_handled(&self, config_id: &str) {
        let mut shown = self.write();
        if let Some(Shown::Hidden(pending)) = shown.get_mut(config_id) {
            *pending -= 1;
            if *pending == 0 {
                shown.remove(config_id);
            }
        }
    }

    /// A new actor starts empty, its predecessor's mailbox lost.
    pub(super) fn clear(&self) {
        self.write().clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Config;
    use crate::domain::model::ConfigStatus;

    fn entry(revision: i64) -> Arc<Entry> {
        Arc::new(Entry {
            config: Config {
                id: "c".into(),
                description: String::new(),
                status: ConfigStatus::Active,
                secret: String::new(),
                revision,
                release: None,
                gray: None,
                created_at: 0,
                updated_at: 0,
            },
            release: None,
            gray: None,
        })
    }

    fn revision(published: &Published) -> Option<i64> {
        published.get("c").map(|e| e.config.revision)
    }

    #[test]
    fn an_invalidation_hides_the_entry_until_every_one_sent_is_handled() {
        let published = Published::default();
        published.show("c", &entry(1));
        assert_eq!(revision(&published), Some(1));
        // Two changes; a load that finished before the actor saw them must
        // not show what they replaced.
        published.hide("c");
        published.hide("c");
        published.show("c", &entry(1));
        assert_eq!(revision(&published), None);
        published.hidden_handled("c");
        published.show("c", &entry(1));
        assert_eq!(revision(&published), None);
        published.hidden_handled("c");
        published.show("c", &entry(3));
        assert_eq!(revision(&published), Some(3));
        // The actor's own reloads (`cached: false`) only take it down.
        published.unshow("c");
        assert_eq!(revision(&published), None);
    }
}
