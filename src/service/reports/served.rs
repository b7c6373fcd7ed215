//! The served record: for each version fetched recently, which networks it
//! was served to and how many distinct ones, in sketches per bucket of half a
//! window (`domain::health`). Every fetch records here, so a fetch costs a
//! read lock, a mutex and a few hashes, never I/O. Other nodes' records
//! arrive as remote views (`share.rs`); a question about a version answers
//! from this node's record and the last remote view together.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Instant;

use super::sketch::{Part, Sketch, network_union};
use crate::domain::health::{BUCKETS_IN_VIEW, Network, bucket};
use crate::sync::{Locked, RwLocked};

/// This node's record of who each version was served to, and the other
/// nodes' as last read.
pub struct ServedRecord {
    window_s: u64,
    /// Networks one sketch may hold (`reports.served_capacity`).
    capacity: u64,
    versions: RwLock<HashMap<String, Arc<Mutex<Buckets>>>>,
    remote: Mutex<HashMap<String, Arc<RemoteView>>>,
}

#[derive(Default)]
struct Buckets(Vec<Bucket>);

struct Bucket {
    index: u64,
    sketch: Sketch,
}

/// The other nodes' sketches of one version, as last read: their parts by
/// bucket.
pub struct RemoteView {
    /// When the read started: anything shared before then is in it.
    pub read_at: Instant,
    /// Each part with its bucket.
    pub parts: Vec<(u64, Part)>,
}

/// A part of one version's sketch in one bucket, encoded to share with other
/// nodes under its suffix (`sketch.rs`).
pub struct SharedPart {
    /// The version served.
    pub code_id: String,
    /// The bucket of time.
    pub bucket: u64,
    /// Which part (`sketch.rs`).
    pub suffix: String,
    /// The part, encoded.
    pub bytes: Vec<u8>,
}

impl ServedRecord {
    /// An empty record for `reports.window_s` and `reports.served_capacity`.
    pub fn new(window_s: u64, capacity: u64) -> Self {
        Self {
            window_s,
            capacity,
            versions: RwLock::default(),
            remote: Mutex::default(),
        }
    }

    /// The window reports and served networks are counted over, in seconds.
    pub fn window_s(&self) -> u64 {
        self.window_s
    }

    /// The bucket `now_ms` falls in, and the oldest one a report looks at.
    pub fn span(&self, now_ms: i64) -> (u64, u64) {
        let current = bucket(now_ms, self.window_s);
        (current, current.saturating_sub(BUCKETS_IN_VIEW - 1))
    }

    /// A fetch from `network` was served `code_id`.
    pub fn record(&self, code_id: &str, network: &Network, now_ms: i64) {
        let buckets = self.buckets_of(code_id);
        let (current, oldest) = self.span(now_ms);
        let mut buckets = buckets.locked();
        buckets.0.retain(|b| b.index >= oldest);
        if buckets.0.last().is_none_or(|b| b.index < current) {
            buckets.0.push(Bucket {
                index: current,
                sketch: Sketch::new(self.capacity),
            });
        }
        buckets.0.last_mut().expect("just ensured").sketch.add(network);
    }

    fn buckets_of(&self, code_id: &str) -> Arc<Mutex<Buckets>> {
        if let Some(found) = self.versions.reading().get(code_id) {
            return found.clone();
        }
        let mut versions = self.versions.writing();
        versions.entry(code_id.to_owned()).or_default().clone()
    }

    fn local(&self, code_id: &str) -> Option<Arc<Mutex<Buckets>>> {
        self.versions.reading().get(code_id).cloned()
    }

    /// Whether `network` was served `code_id` in the view, here or (as last
    /// read) on another node.
    pub fn was_served(&self, code_id: &str, network: &Network, now_ms: i64) -> bool {
        let (_, oldest) = self.span(now_ms);
        let here = self.local(code_id).is_some_and(|b| {
            let buckets = b.locked();
            buckets
                .0
                .iter()
                .any(|b| b.index >= oldest && b.sketch.contains(network))
        });
        here || self
            .remote_view(code_id)
            .is_some_and(|v| v.parts.iter().any(|(i, p)| *i >= oldest && p.contains(network)))
    }

    /// Distinct networks served `code_id` in the view, on every node.
    pub fn served_networks(&self, code_id: &str, now_ms: i64) -> u64 {
        let (_, oldest) = self.span(now_ms);
        let mut union = network_union();
        if let Some(b) = self.local(code_id) {
            let buckets = b.locked();
            for b in buckets.0.iter().filter(|b| b.index >= oldest) {
                b.sketch.add_networks_to(&mut union);
            }
        }
        if let Some(view) = self.remote_view(code_id) {
            for (_, part) in view.parts.iter().filter(|(i, _)| *i >= oldest) {
                part.add_networks_to(&mut union);
            }
        }
        union.estimate().round() as u64
    }

    /// The other nodes' record of `code_id`, as last read.
    pub fn remote_view(&self, code_id: &str) -> Option<Arc<RemoteView>> {
        self.remote.locked().get(code_id).cloned()
    }

    /// Replaces the other nodes' record of `code_id` with a newer read.
    pub fn set_remote_view(&self, code_id: &str, view: RemoteView) {
        let mut remote = self.remote.locked();
        remote.insert(code_id.to_owned(), Arc::new(view));
    }

    /// Encodes the parts changed since the last call, for other nodes.
    pub fn take_changed(&self) -> Vec<SharedPart> {
        let versions: Vec<(String, Arc<Mutex<Buckets>>)> = {
            let map = self.versions.reading();
            map.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
        };
        let mut changed = Vec::new();
        for (code_id, buckets) in versions {
            let mut buckets = buckets.locked();
            for b in buckets.0.iter_mut() {
                for (suffix, bytes) in b.sketch.take_changed() {
                    changed.push(SharedPart {
                        code_id: code_id.clone(),
                        bucket: b.index,
                        suffix,
                        bytes,
                    });
                }
            }
        }
        changed
    }

    /// Forgets versions not served within the view, here and remotely.
    pub fn sweep(&self, now_ms: i64) {
        let (_, oldest) = self.span(now_ms);
        let mut versions = self.versions.writing();
        versions.retain(|_, b| {
            let buckets = b.locked();
            buckets.0.last().is_some_and(|b| b.index >= oldest)
        });
        drop(versions);
        let mut remote = self.remote.locked();
        remote.retain(|_, v| v.parts.iter().any(|(i, _)| *i >= oldest));
    }

    /// Versions with a local record.
    #[cfg(test)]
    fn versions_held(&self) -> usize {
        self.versions.reading().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::health::Prefixes;

    const WINDOW_S: u64 = 600;
    const HALF_MS: i64 = 300_000;

    fn net(ip: &str) -> Network {
        Prefixes::default().network(ip.parse().unwrap())
    }

    #[test]
    fn a_network_is_served_for_the_view_then_forgotten() {
        let record = ServedRecord::new(WINDOW_S, 10_000);
        let t0 = 10 * HALF_MS;
        record.record("v1", &net("10.0.0.1"), t0);
        assert!(record.was_served("v1", &net("10.0.0.200"), t0), "the same /24");
        assert!(!record.was_served("v1", &net("10.0.1.1"), t0));
        assert!(!record.was_served("v2", &net("10.0.0.1"), t0));
        assert!(record.was_served("v1", &net("10.0.0.1"), t0 + 2 * HALF_MS));
        assert!(!record.was_served("v1", &net("10.0.0.1"), t0 + 3 * HALF_MS));
        record.sweep(t0 + 3 * HALF_MS);
        assert_eq!(record.versions_held(), 0);
    }

    #[test]
    fn networks_are_counted_once_across_buckets() {
        let record = ServedRecord::new(WINDOW_S, 10_000);
        let t0 = 10 * HALF_MS;
        for i in 0..40 {
            for host in [1, 2] {
                let ip = format!("10.0.{i}.{host}");
                record.record("v1", &net(&ip), t0);
                record.record("v1", &net(&ip), t0 + HALF_MS);
            }
        }
        assert_eq!(record.served_networks("v1", t0 + HALF_MS), 40);
    }

    #[test]
    fn changed_buckets_are_shared_once_and_read_remotely() {
        let here = ServedRecord::new(WINDOW_S, 10_000);
        let there = ServedRecord::new(WINDOW_S, 10_000);
        let t0 = 10 * HALF_MS;
        here.record("v1", &net("10.0.0.9"), t0);
        here.record("v1", &net("2001:db8::9"), t0);
        let shared = here.take_changed();
        assert_eq!(shared.len(), 2, "the networks' count and the one filter");
        assert!(here.take_changed().is_empty(), "nothing changed since");
        let parts = shared
            .iter()
            .map(|s| (s.bucket, Sketch::decode(&s.suffix, &s.bytes).unwrap()))
            .collect();
        there.set_remote_view(
            "v1",
            RemoteView {
                read_at: Instant::now(),
                parts,
            },
        );
        assert!(there.was_served("v1", &net("10.0.0.77"), t0));
        assert!(there.was_served("v1", &net("2001:db8::1"), t0));
        assert!(!there.was_served("v1", &net("10.0.1.9"), t0));
        assert_eq!(there.served_networks("v1", t0), 2);
    }
}
