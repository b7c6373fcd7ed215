//! What a Connection still has to send: at most one notice per config, the
//! newest, so a slow client costs memory bounded by what it follows.

use std::collections::{BTreeMap, HashMap};

use crate::domain::change::ChangeNotice;

#[derive(Debug, Default)]
/// A Connection's unsent notices, newest per config.
pub struct Outbox {
    pending: BTreeMap<String, ChangeNotice>,
    /// The newest revision sent per config, so a late, older notice (a
    /// catch-up racing a broadcast) is not sent after a newer one.
    sent: HashMap<String, i64>,
}

impl Outbox {
    /// Queues `notice` unless a newer one for its config was sent or waits.
    pub fn push(&mut self, notice: ChangeNotice) {
        let known = self.sent.get(&notice.config_id).copied();
        if !notice.manual && known.is_some_and(|r| r >= notice.revision) {
            return;
        }
        match self.pending.get(&notice.config_id) {
            Some(waiting) if waiting.revision > notice.revision => {}
            _ => {
                self.pending.insert(notice.config_id.clone(), notice);
            }
        }
    }

    /// Takes everything pending, recording it as sent.
    pub fn take(&mut self) -> Vec<ChangeNotice> {
        let taken: Vec<ChangeNotice> = std::mem::take(&mut self.pending).into_values().collect();
        for notice in &taken {
            let newest = self.sent.entry(notice.config_id.clone()).or_insert(notice.revision);
            *newest = (*newest).max(notice.revision);
        }
        taken
    }

    /// Drops what is pending or known for a config no longer followed.
    pub fn forget(&mut self, config_id: &str) {
        self.pending.remove(config_id);
        self.sent.remove(config_id);
    }

    /// Whether nothing waits to be sent.
    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn notice(config_id: &str, revision: i64, manual: bool) -> ChangeNotice {
        ChangeNotice {
            config_id: config_id.into(),
            revision,
            update_time: revision,
            manual,
        }
    }

    #[test]
    fn keeps_only_the_newest_per_config() {
        let mut outbox = Outbox::default();
        for revision in 1..=1000 {
            outbox.push(notice("a", revision, false));
        }
        outbox.push(notice("b", 7, false));
        outbox.push(notice("a", 3, false));
        let taken = outbox.take();
        assert_eq!(
            taken
                .iter()
                .map(|n| (n.config_id.as_str(), n.revision))
                .collect::<Vec<_>>(),
            [("a", 1000), ("b", 7)]
        );
        assert!(outbox.is_empty());
    }

    #[test]
    fn never_sends_an_older_revision_after_a_newer_one() {
        let mut outbox = Outbox::default();
        outbox.push(notice("a", 5, false));
        outbox.take();
        outbox.push(notice("a", 4, false));
        outbox.push(notice("a", 5, false));
        assert!(outbox.is_empty(), "already sent");
        outbox.push(notice("a", 5, true));
        assert_eq!(outbox.take().len(), 1, "a manual notify is sent again");
        outbox.forget("a");
        outbox.push(notice("a", 1, false));
        assert_eq!(outbox.take()[0].revision, 1, "after unsubscribing, history is gone");
    }
}
