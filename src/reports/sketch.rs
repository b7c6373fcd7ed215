//! One version's served sources in one bucket of time, in fixed-size
//! sketches (Apache DataSketches): Bloom filters answer "was this source
//! served" and a HyperLogLog "how many distinct devices".
//!
//! The Bloom filters grow by adding a filter twice the size of the last (a
//! scalable Bloom filter), so a rarely fetched version costs a few kilobytes
//! and a popular one about five bytes a device, up to a cap past which the
//! last filter fills. Each new filter halves the false-positive rate of the
//! one before, so all together stay under `FALSE_POSITIVES`: a forger who
//! guesses device ids needs about a million guesses for one to pass as
//! served (and `repeats.rs` caps the guesses a node checks per window). Only
//! the last filter changes, so only it (and the HLL) is shared again.

use datasketches::bloom::{BloomFilter, BloomFilterBuilder};
use datasketches::hll::{HllSketch, HllType, HllUnion};

use crate::domain::health::Source;

/// 2^12 registers: about 1.6% standard error, 4 KiB once dense.
const HLL_LG_K: u8 = 12;
/// All filters of a sketch together pass a stranger this rarely.
const FALSE_POSITIVES: f64 = 1e-6;
const FIRST_CAPACITY: u64 = 1024;

/// One version's served sources in one bucket, on this node.
pub struct Sketch {
    filters: Vec<Filter>,
    devices: HllSketch,
    devices_changed: bool,
    /// Sources the filters may hold in all, past which the last one fills.
    cap: u64,
}

struct Filter {
    bloom: BloomFilter,
    capacity: u64,
    fpp: f64,
    held: u64,
    changed: bool,
}

/// One shared part of a sketch, named by its field suffix: `d` for the
/// devices' HLL, the filter's index for a Bloom filter.
pub enum Part {
    /// The devices served, counted.
    Devices(HllSketch),
    /// One of the filters of sources served.
    Filter(BloomFilter),
}

/// A part another node shared that this one cannot read (another version of
/// Vane, or damage); it is skipped.
#[derive(Debug, thiserror::Error)]
#[error("served sketch from another node is unreadable: {0}")]
pub struct Unreadable(String);

impl Filter {
    fn new(capacity: u64, fpp: f64) -> Self {
        let bloom = BloomFilterBuilder::with_accuracy(capacity, fpp)
            .build()
            .expect("a positive capacity and a probability in (0, 1] always build");
        Self {
            bloom,
            capacity,
            fpp,
            held: 0,
            changed: false,
        }
    }
}

impl Sketch {
    /// An empty sketch whose filters hold `cap` sources in all.
    pub fn new(cap: u64) -> Self {
        let cap = cap.max(1);
        Self {
            filters: vec![Filter::new(FIRST_CAPACITY.min(cap), FALSE_POSITIVES / 2.0)],
            devices: HllSketch::new(HLL_LG_K, HllType::Hll8).expect("a valid lg_k"),
            devices_changed: false,
            cap,
        }
    }

    /// Records a source served; only devices count toward the served total.
    pub fn add(&mut self, source: &Source) {
        if self.contains(source) {
            return;
        }
        let held: u64 = self.filters.iter().map(|f| f.capacity).sum();
        let last = self.filters.last().expect("never empty");
        if last.held >= last.capacity && held < self.cap {
            let next = Filter::new((last.capacity * 2).min(self.cap - held), last.fpp / 2.0);
            self.filters.push(next);
        }
        let last = self.filters.last_mut().expect("never empty");
        last.bloom.insert(source);
        last.held += 1;
        last.changed = true;
        if let Source::Device(id) = source {
            self.devices.update(id.as_bytes());
            self.devices_changed = true;
        }
    }

    /// Whether `source` was added (or, rarely, looks as if it was).
    pub fn contains(&self, source: &Source) -> bool {
        self.filters.iter().any(|f| f.bloom.contains(source))
    }

    /// Adds the devices counted here to `union`.
    pub fn add_devices_to(&self, union: &mut HllUnion) {
        union.update(&self.devices);
    }

    /// The parts changed since the last call, encoded for other nodes, each
    /// with its field suffix.
    pub fn take_changed(&mut self) -> Vec<(String, Vec<u8>)> {
        let mut parts = Vec::new();
        if std::mem::take(&mut self.devices_changed) {
            parts.push(("d".to_owned(), self.devices.serialize()));
        }
        for (i, filter) in self.filters.iter_mut().enumerate() {
            if std::mem::take(&mut filter.changed) {
                parts.push((i.to_string(), filter.bloom.serialize()));
            }
        }
        parts
    }

    /// A part another node shared under `suffix`.
    pub fn decode(suffix: &str, bytes: &[u8]) -> Result<Part, Unreadable> {
        let unreadable = |e: datasketches::error::Error| Unreadable(e.to_string());
        match suffix {
            "d" => HllSketch::deserialize(bytes).map(Part::Devices).map_err(unreadable),
            index if index.parse::<u32>().is_ok() => {
                BloomFilter::deserialize(bytes).map(Part::Filter).map_err(unreadable)
            }
            other => Err(Unreadable(format!("unknown part `{other}`"))),
        }
    }
}

impl Part {
    /// Whether this part is a filter that holds `source`.
    pub fn contains(&self, source: &Source) -> bool {
        matches!(self, Self::Filter(f) if f.contains(source))
    }

    /// Adds the devices this part counts (if it counts any) to `union`.
    pub fn add_devices_to(&self, union: &mut HllUnion) {
        if let Self::Devices(hll) = self {
            union.update(hll);
        }
    }
}

/// An empty union of device counts, of the sketches' precision.
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
        let ids = devices(0..20_000);
        for id in &ids {
            sketch.add(&Source::Device(id));
        }
        assert!(sketch.filters.len() > 4, "filters were added");
        assert!(ids.iter().all(|id| sketch.contains(&Source::Device(id))));
        // At one in a million, 200,000 strangers pass as served rarely.
        let strangers = devices(100_000..300_000);
        let false_hits = strangers
            .iter()
            .filter(|id| sketch.contains(&Source::Device(id)))
            .count();
        assert!(false_hits <= 2, "{false_hits} of 200000 strangers looked served");
        let mut union = device_union();
        sketch.add_devices_to(&mut union);
        let estimate = union.estimate();
        assert!((19_000.0..21_000.0).contains(&estimate), "{estimate}");
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
    fn only_changed_parts_are_shared_and_read_back() {
        let mut sketch = Sketch::new(1_000_000);
        for id in devices(0..3000) {
            sketch.add(&Source::Device(&id));
        }
        let first = sketch.take_changed();
        assert_eq!(first.len(), 1 + sketch.filters.len());
        sketch.add(&Source::Device("one-more"));
        let second = sketch.take_changed();
        let suffixes: Vec<&str> = second.iter().map(|(s, _)| s.as_str()).collect();
        assert_eq!(suffixes, ["d", &(sketch.filters.len() - 1).to_string()]);
        let parts: Vec<Part> = first
            .iter()
            .chain(&second)
            .map(|(suffix, bytes)| Sketch::decode(suffix, bytes).unwrap())
            .collect();
        assert!(parts.iter().any(|p| p.contains(&Source::Device("device-2999"))));
        assert!(parts.iter().any(|p| p.contains(&Source::Device("one-more"))));
        let mut union = device_union();
        for part in &parts {
            part.add_devices_to(&mut union);
        }
        let estimate = union.estimate();
        assert!((2900.0..3100.0).contains(&estimate), "{estimate}");
        assert!(Sketch::decode("d", &[1, 2]).is_err());
        assert!(Sketch::decode("x", &[]).is_err());
    }
}
