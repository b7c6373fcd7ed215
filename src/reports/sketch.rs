//! One version's served sources in one bucket of time, in fixed-size
//! sketches (Apache DataSketches): a Bloom filter answers "was this source
//! served" and a HyperLogLog "how many distinct devices". The Bloom filter
//! grows by adding filters twice the size of the last (a scalable Bloom
//! filter), so a rarely fetched version costs a kilobyte and a popular one
//! about ten bits per device, up to a cap past which the last filter fills.

use datasketches::bloom::{BloomFilter, BloomFilterBuilder};
use datasketches::hll::{HllSketch, HllType, HllUnion};

use crate::domain::health::Source;

/// 2^12 registers: about 1.6% standard error, 4 KiB once dense.
pub const HLL_LG_K: u8 = 12;
const FIRST_CAPACITY: u64 = 1024;
const FALSE_POSITIVES: f64 = 0.01;

pub struct Sketch {
    filters: Vec<Filter>,
    devices: HllSketch,
    /// Sources the filters may hold in all, past which the last one fills.
    cap: u64,
}

struct Filter {
    bloom: BloomFilter,
    capacity: u64,
    held: u64,
}

#[derive(Debug, thiserror::Error)]
#[error("served sketch from another node is unreadable: {0}")]
pub struct Unreadable(String);

impl Filter {
    fn new(capacity: u64) -> Self {
        let bloom = BloomFilterBuilder::with_accuracy(capacity, FALSE_POSITIVES)
            .build()
            .expect("a positive capacity and a probability in (0, 1] always build");
        Self {
            bloom,
            capacity,
            held: 0,
        }
    }
}

impl Sketch {
    pub fn new(cap: u64) -> Self {
        Self {
            filters: vec![Filter::new(FIRST_CAPACITY.min(cap.max(1)))],
            devices: HllSketch::new(HLL_LG_K, HllType::Hll8).expect("a valid lg_k"),
            cap: cap.max(1),
        }
    }

    /// Records a source served; only devices count toward the served total.
    pub fn add(&mut self, source: &Source) {
        if self.filters.iter().any(|f| f.bloom.contains(source)) {
            return;
        }
        let held: u64 = self.filters.iter().map(|f| f.capacity).sum();
        let last = self.filters.last_mut().expect("never empty");
        if last.held >= last.capacity && held < self.cap {
            let next = (last.capacity * 2).min(self.cap - held).max(1);
            self.filters.push(Filter::new(next));
        }
        let last = self.filters.last_mut().expect("never empty");
        last.bloom.insert(source);
        last.held += 1;
        if let Source::Device(id) = source {
            self.devices.update(id.as_bytes());
        }
    }

    pub fn contains(&self, source: &Source) -> bool {
        self.filters.iter().any(|f| f.bloom.contains(source))
    }

    pub fn add_devices_to(&self, union: &mut HllUnion) {
        union.update(&self.devices);
    }

    /// The sketch as bytes another node can read: the HLL, then each filter,
    /// each with a length in front.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        let mut put = |bytes: &[u8]| {
            out.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
            out.extend_from_slice(bytes);
        };
        put(&self.devices.serialize());
        for filter in &self.filters {
            put(&filter.bloom.serialize());
        }
        out
    }

    /// Another node's sketch, for reading only.
    pub fn decode(mut bytes: &[u8]) -> Result<RemoteSketch, Unreadable> {
        let mut next = || -> Result<Option<&[u8]>, Unreadable> {
            if bytes.is_empty() {
                return Ok(None);
            }
            let len = bytes
                .get(..4)
                .map(|l| u32::from_le_bytes([l[0], l[1], l[2], l[3]]) as usize)
                .ok_or_else(|| Unreadable("truncated length".into()))?;
            let part = bytes
                .get(4..4 + len)
                .ok_or_else(|| Unreadable("truncated part".into()))?;
            bytes = &bytes[4 + len..];
            Ok(Some(part))
        };
        let hll = next()?.ok_or_else(|| Unreadable("empty".into()))?;
        let devices = HllSketch::deserialize(hll).map_err(|e| Unreadable(e.to_string()))?;
        let mut filters = Vec::new();
        while let Some(part) = next()? {
            filters.push(BloomFilter::deserialize(part).map_err(|e| Unreadable(e.to_string()))?);
        }
        Ok(RemoteSketch { filters, devices })
    }
}

/// A sketch another node shared.
pub struct RemoteSketch {
    filters: Vec<BloomFilter>,
    devices: HllSketch,
}

impl RemoteSketch {
    pub fn contains(&self, source: &Source) -> bool {
        self.filters.iter().any(|f| f.contains(source))
    }

    pub fn add_devices_to(&self, union: &mut HllUnion) {
        union.update(&self.devices);
    }
}

pub fn device_union() -> HllUnion {
    HllUnion::new(HLL_LG_K).expect("a valid lg_k")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn devices(range: std::ops::Range<u32>) -> Vec<String> {
        range.map(|i| format!("device-{i}")).collect()
    }

    #[test]
    fn grows_past_its_first_filter_and_counts_devices() {
        let mut sketch = Sketch::new(1_000_000);
        let ids = devices(0..5000);
        for id in &ids {
            sketch.add(&Source::Device(id));
        }
        assert!(sketch.filters.len() > 1, "a filter was added");
        assert!(ids.iter().all(|id| sketch.contains(&Source::Device(id))));
        let strangers = devices(10_000..20_000);
        let false_hits = strangers.iter().filter(|id| sketch.contains(&Source::Device(id))).count();
        assert!(false_hits < 500, "{false_hits} of 10000 strangers looked served");
        let mut union = device_union();
        sketch.add_devices_to(&mut union);
        let estimate = union.estimate();
        assert!((4800.0..5200.0).contains(&estimate), "{estimate}");
    }

    #[test]
    fn addresses_are_held_but_not_counted_as_devices() {
        let mut sketch = Sketch::new(1000);
        let ip = "10.1.2.3".parse().unwrap();
        sketch.add(&Source::Address(ip));
        assert!(sketch.contains(&Source::Address(ip)));
        assert!(!sketch.contains(&Source::Device("10.1.2.3")));
        let mut union = device_union();
        sketch.add_devices_to(&mut union);
        assert_eq!(union.estimate().round(), 0.0);
    }

    #[test]
    fn another_node_reads_what_this_one_encodes() {
        let mut sketch = Sketch::new(1_000_000);
        for id in devices(0..3000) {
            sketch.add(&Source::Device(&id));
        }
        let remote = Sketch::decode(&sketch.encode()).unwrap();
        assert!(remote.contains(&Source::Device("device-2999")));
        let mut union = device_union();
        remote.add_devices_to(&mut union);
        sketch.add_devices_to(&mut union);
        let estimate = union.estimate();
        assert!((2900.0..3100.0).contains(&estimate), "{estimate}");
        assert!(Sketch::decode(&[1, 2]).is_err());
        assert!(Sketch::decode(&[9, 0, 0, 0, 1]).is_err());
    }
}
