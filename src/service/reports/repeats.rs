//! What this node has already taken from each source, per version and
//! bucket, so a storm from one source costs a hash lookup, not a write: a
//! source is a candidate once per bucket, and reports that cannot count are
//! stored only up to a few per source and a cap per version, then dropped.
//! Bounded: past `MAX_SOURCES` sources tracked in all, new ones are not
//! (the store still counts a source once per window).

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::Mutex;

use crate::domain::health::Network;
use crate::sync::Locked;

/// Reports that cannot count, stored per source and bucket at most.
const STORED_PER_SOURCE: u16 = 3;
/// About 5 MiB of sources, across every version.
const MAX_SOURCES: usize = 200_000;

/// What this node took from each source, per version and bucket.
pub struct Repeats {
    hasher: RandomState,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    versions: HashMap<String, Taken>,
    /// Sources tracked across every version.
    tracked: usize,
}

#[derive(Default)]
struct Taken {
    bucket: u64,
    sources: HashMap<u64, Seen>,
    ignored_stored: u32,
    checks: u32,
}

/// A source's reports before this one, in this bucket on this node.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Seen {
    /// Reports from this source before this one, in this bucket.
    pub reports: u16,
    /// Whether one of them was a candidate (it may have counted).
    pub candidate: bool,
}

impl Default for Repeats {
    fn default() -> Self {
        Self::new()
    }
}

impl Repeats {
    /// Nothing taken yet.
    pub fn new() -> Self {
        Self {
            hasher: RandomState::new(),
            state: Mutex::default(),
        }
    }

    /// Notes a report from `source` and says what came before it.
    pub fn note(&self, code_id: &str, source: &Network, bucket: u64) -> Seen {
        let key = self.hasher.hash_one(source);
        let mut state = self.state.locked();
        let State { versions, tracked } = &mut *state;
        let taken = versions.entry(code_id.to_owned()).or_default();
        if taken.bucket != bucket {
            *tracked -= taken.sources.len();
            *taken = Taken {
                bucket,
                ..Taken::default()
            };
        }
        if !taken.sources.contains_key(&key) {
            if *tracked >= MAX_SOURCES {
                return Seen::default();
            }
            *tracked += 1;
        }
        let seen = taken.sources.entry(key).or_default();
        let before = *seen;
        seen.reports = seen.reports.saturating_add(1);
        before
    }

    /// Remembers that `source` sent a candidate in this bucket: its further
    /// reports are repeats.
    pub fn mark_candidate(&self, code_id: &str, source: &Network) {
        let key = self.hasher.hash_one(source);
        let mut state = self.state.locked();
        if let Some(seen) = state.versions.get_mut(code_id).and_then(|t| t.sources.get_mut(&key)) {
            seen.candidate = true;
        }
    }

    /// Whether a network memory does not know as served may be looked up
    /// further: false once the version's lookups in this bucket reached
    /// `cap` (`reports.max_lookups`). A network memory knows as served is
    /// never held back by it, so a storm from networks never served cannot
    /// hide the served ones; past it, a storm of unknown networks is judged
    /// on memory alone (outcome `storm`) until the next bucket.
    pub fn may_check(&self, code_id: &str, cap: u32) -> bool {
        let mut state = self.state.locked();
        let Some(taken) = state.versions.get_mut(code_id) else {
            return true;
        };
        if taken.checks >= cap {
            return false;
        }
        taken.checks += 1;
        true
    }

    /// Whether a report that cannot count is stored: the source's first few
    /// in the bucket, while the version's stored ones stay under `cap`.
    pub fn may_store_ignored(&self, code_id: &str, seen: Seen, cap: u32) -> bool {
        if seen.reports >= STORED_PER_SOURCE {
            return false;
        }
        let mut state = self.state.locked();
        let Some(taken) = state.versions.get_mut(code_id) else {
            return false;
        };
        if taken.ignored_stored >= cap {
            return false;
        }
        taken.ignored_stored += 1;
        true
    }

    /// Forgets versions whose bucket has passed.
    pub fn sweep(&self, bucket: u64) {
        let mut state = self.state.locked();
        let State { versions, tracked } = &mut *state;
        versions.retain(|_, t| {
            let keep = t.bucket >= bucket;
            if !keep {
                *tracked -= t.sources.len();
            }
            keep
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::health::Prefixes;

    /// A distinct network per name (its hash picks a /24).
    fn net(name: &str) -> Network {
        let n = name
            .bytes()
            .fold(0u32, |h, b| h.wrapping_mul(31).wrapping_add(u32::from(b)));
        Prefixes::default().network(std::net::Ipv4Addr::from(n << 8).into())
    }

    #[test]
    fn a_storm_from_one_source_is_stored_a_few_times_then_dropped() {
        let repeats = Repeats::new();
        let me = net("me");
        let mut stored = 0;
        for _ in 0..1000 {
            let seen = repeats.note("v1", &me, 7);
            if repeats.may_store_ignored("v1", seen, 1000) {
                stored += 1;
            }
        }
        assert_eq!(stored, STORED_PER_SOURCE);
        assert_eq!(repeats.note("v1", &me, 8).reports, 0, "a new bucket starts over");
    }

    #[test]
    fn a_candidate_is_remembered_and_the_version_cap_holds() {
        let repeats = Repeats::new();
        let first = net("a");
        assert_eq!(repeats.note("v1", &first, 1), Seen::default());
        repeats.mark_candidate("v1", &first);
        assert!(repeats.note("v1", &first, 1).candidate);
        let mut stored = 0;
        for i in 0..50 {
            let id = format!("d{i}");
            let seen = repeats.note("v1", &net(&id), 1);
            stored += u32::from(repeats.may_store_ignored("v1", seen, 10));
        }
        assert_eq!(stored, 10);
    }

    #[test]
    fn checks_stop_at_the_cap_until_the_next_bucket() {
        let repeats = Repeats::new();
        repeats.note("v1", &net("a"), 1);
        assert!((0..1000).all(|_| repeats.may_check("v1", 1000)));
        assert!(!repeats.may_check("v1", 1000));
        repeats.note("v1", &net("a"), 2);
        assert!(repeats.may_check("v1", 1000));
    }

    #[test]
    fn sources_past_the_cap_are_not_tracked_and_a_sweep_frees_them() {
        let repeats = Repeats::new();
        for i in 0..MAX_SOURCES {
            let network = Prefixes::default().network(std::net::Ipv4Addr::from((i as u32 + 1) << 8).into());
            repeats.note("v1", &network, 1);
        }
        let late = Prefixes::default().network("203.0.113.1".parse().unwrap());
        repeats.note("v2", &late, 1);
        assert_eq!(repeats.note("v2", &late, 1).reports, 0, "not tracked");
        repeats.sweep(2);
        repeats.note("v2", &late, 2);
        assert_eq!(repeats.note("v2", &late, 2).reports, 1);
    }
}
