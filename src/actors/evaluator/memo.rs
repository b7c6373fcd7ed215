//! Results of Starlark runs, remembered: Starlark code is a pure function of
//! its params (it cannot read the clock, the network or the request's meta),
//! so the same version with the same params gives the same JSON. Bounded,
//! sharded to keep lock contention low, skipped for `cached: false`.
//!
//! A result is kept the second time its key is computed, not the first: a
//! doorkeeper table remembers keys seen once by their hash. When every
//! request's params differ, nothing is copied into the cache only to be
//! evicted unread, and one-off keys never push out ones that repeat.

use std::hash::{BuildHasher, Hash, Hasher};
use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex};

use crate::sync::Locked;
use lru::LruCache;
use serde_json::value::RawValue;

use super::evaluated::Evaluated;

const SHARDS: usize = 16;
/// Larger results are not worth keeping.
const MAX_RESULT_BYTES: usize = 64 << 10;
/// Doorkeeper slots per cached entry.
const SEEN_PER_ENTRY: usize = 2;

/// code_id and the params' text, hashed once: as a fetch sent it (a client
/// sends the same params the same way), or written from a value (sorted).
/// The text is shared with the job, which sends it to the worker as it is.
pub struct Key {
    code_id: String,
    params: Arc<RawValue>,
    hash: u64,
}

impl PartialEq for Key {
    fn eq(&self, other: &Self) -> bool {
        self.hash == other.hash && self.code_id == other.code_id && self.params.get() == other.params.get()
    }
}

impl Eq for Key {}

impl Hash for Key {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u64(self.hash);
    }
}

struct Shard {
    results: LruCache<Key, Arc<Evaluated>>,
    /// Hashes of keys computed once, by slot.
    seen: Vec<u64>,
}

pub struct Memo {
    shards: Vec<Mutex<Shard>>,
    hasher: std::collections::hash_map::RandomState,
}

impl Memo {
    /// `None` when `entries` is 0 (memoization off).
    pub fn new(entries: usize) -> Option<Self> {
        let per_shard = NonZeroUsize::new(entries.div_ceil(SHARDS))?;
        let shard = || {
            Mutex::new(Shard {
                results: LruCache::new(per_shard),
                seen: vec![0; per_shard.get() * SEEN_PER_ENTRY],
            })
        };
        Some(Self {
            shards: (0..SHARDS).map(|_| shard()).collect(),
            hasher: Default::default(),
        })
    }

    /// The key of `code_id` run with `params`, the canonical text of its
    /// params.
    pub fn key(&self, code_id: &str, params: Arc<RawValue>) -> Key {
        let hash = self.hasher.hash_one((code_id, params.get()));
        Key {
            code_id: code_id.to_owned(),
            params,
            hash,
        }
    }

    fn shard(&self, key: &Key) -> std::sync::MutexGuard<'_, Shard> {
        self.shards[key.hash as usize % SHARDS].locked()
    }

    pub fn get(&self, key: &Key) -> Option<Arc<Evaluated>> {
        self.shard(key).results.get(key).cloned()
    }

    /// Keeps `result` if its key was computed before.
    pub fn put(&self, key: Key, result: &Arc<Evaluated>) {
        if result.get().len() > MAX_RESULT_BYTES {
            return;
        }
        let mut shard = self.shard(&key);
        let slot = (key.hash / SHARDS as u64) as usize % shard.seen.len();
        if shard.seen[slot] == key.hash {
            shard.results.put(key, result.clone());
        } else {
            shard.seen[slot] = key.hash;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn text(value: serde_json::Value) -> Arc<RawValue> {
        serde_json::value::to_raw_value(&value).unwrap().into()
    }

    fn result(json: &str) -> Arc<Evaluated> {
        Arc::new(Evaluated::new(RawValue::from_string(json.into()).unwrap()))
    }

    #[test]
    fn equal_params_share_an_entry_kept_on_its_second_computation() {
        let memo = Memo::new(32).unwrap();
        let raw = result("{\"a\":1}");
        memo.put(memo.key("c1", text(json!({"x": 1, "y": 2}))), &raw);
        let same = memo.key("c1", text(serde_json::from_str(r#"{"y": 2, "x": 1}"#).unwrap()));
        assert!(memo.get(&same).is_none(), "kept after one computation");
        memo.put(memo.key("c1", text(json!({"y": 2, "x": 1}))), &raw);
        assert_eq!(memo.get(&same).unwrap().get(), "{\"a\":1}");
        assert!(memo.get(&memo.key("c2", text(json!({"x": 1, "y": 2})))).is_none());
        assert!(Memo::new(0).is_none());
    }

    #[test]
    fn one_off_keys_are_not_kept_and_the_bound_holds() {
        let memo = Memo::new(32).unwrap();
        let raw = result("1");
        for i in 0..10_000 {
            memo.put(memo.key("c1", text(json!({"i": i}))), &raw);
        }
        let held = |memo: &Memo| -> usize { memo.shards.iter().map(|s| s.lock().unwrap().results.len()).sum() };
        assert_eq!(held(&memo), 0);
        for _ in 0..2 {
            for i in 0..10_000 {
                memo.put(memo.key("c1", text(json!({"i": i}))), &raw);
            }
        }
        assert!(held(&memo) <= 32 + SHARDS, "{}", held(&memo));
    }
}
