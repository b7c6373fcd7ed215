//! Results of Starlark runs, remembered: Starlark code is a pure function of
//! its params (it cannot read the clock, the network or the request's meta),
//! so the same version with the same params gives the same JSON. Bounded,
//! sharded to keep lock contention low, skipped for `cached: false`.

use std::hash::{BuildHasher, Hash, Hasher};
use std::num::NonZeroUsize;
use std::sync::Mutex;

use lru::LruCache;
use serde_json::value::RawValue;

const SHARDS: usize = 16;
/// Larger results are not worth keeping.
const MAX_RESULT_BYTES: usize = 64 << 10;

pub struct Memo {
    shards: Vec<Mutex<LruCache<(String, String), Box<RawValue>>>>,
    hasher: std::collections::hash_map::RandomState,
}

impl Memo {
    /// `None` when `entries` is 0 (memoization off).
    pub fn new(entries: usize) -> Option<Self> {
        let per_shard = NonZeroUsize::new(entries.div_ceil(SHARDS))?;
        Some(Self {
            shards: (0..SHARDS).map(|_| Mutex::new(LruCache::new(per_shard))).collect(),
            hasher: Default::default(),
        })
    }

    /// The key: code_id and the params in canonical form (serde_json's maps
    /// are sorted, so equal params print equal).
    pub fn key(code_id: &str, params: &serde_json::Value) -> (String, String) {
        (code_id.to_owned(), params.to_string())
    }

    fn shard(&self, key: &(String, String)) -> &Mutex<LruCache<(String, String), Box<RawValue>>> {
        let mut hasher = self.hasher.build_hasher();
        key.hash(&mut hasher);
        &self.shards[hasher.finish() as usize % SHARDS]
    }

    pub fn get(&self, key: &(String, String)) -> Option<Box<RawValue>> {
        self.shard(key)
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(key)
            .cloned()
    }

    pub fn put(&self, key: (String, String), result: &RawValue) {
        if result.get().len() <= MAX_RESULT_BYTES {
            let shard = self.shard(&key);
            shard
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .put(key, result.to_owned());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn equal_params_share_an_entry_and_the_bound_holds() {
        let memo = Memo::new(32).unwrap();
        let raw = RawValue::from_string("{\"a\":1}".into()).unwrap();
        memo.put(Memo::key("c1", &json!({"x": 1, "y": 2})), &raw);
        let same = Memo::key("c1", &serde_json::from_str(r#"{"y": 2, "x": 1}"#).unwrap());
        assert_eq!(memo.get(&same).unwrap().get(), "{\"a\":1}");
        assert!(memo.get(&Memo::key("c2", &json!({"x": 1, "y": 2}))).is_none());
        for i in 0..10_000 {
            memo.put(Memo::key("c1", &json!({"i": i})), &raw);
        }
        let held: usize = memo.shards.iter().map(|s| s.lock().unwrap().len()).sum();
        assert!(held <= 32 + SHARDS, "{held}");
        assert!(Memo::new(0).is_none());
    }
}
