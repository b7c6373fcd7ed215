//! One version's served networks in one bucket of time, in fixed-size
//! sketches (Apache DataSketches): Bloom filters answer "was this network
//! served" and a HyperLogLog "how many distinct networks".
//!
//! The Bloom filters grow by adding a filter twice the size of the last (a
//! scalable Bloom filter), so a rarely fetched version costs a few kilobytes
//! and a popular one about five bytes a network, up to a cap past which the
//! last filter fills. Each new filter halves the false-positive rate of the
//! one before, so all together stay under `FALSE_POSITIVES`: a forger
//! reporting from networks never served needs about a million of them for
//! one to pass as served. Only the last filter changes, so only it (and the
//! HLL) is shared again.

use datasketches::bloom::{BloomFilter, BloomFilterBuilder};
use datasketches::hll::{HllSketch, HllType, HllUnion};

use crate::domain::health::Network;

/// 2^12 registers: about 1.6% standard error, 4 KiB once dense.
const HLL_LG_K: u8 = 12;
/// All filters of a sketch together pass a stranger this rarely.
const FALSE_POSITIVES: f64 = 1e-6;
const FIRST_CAPACITY: u64 = 1024;

/// One version's served networks in one bucket, on this node.
pub struct Sketch {
    filters: Vec<Filter>,
    networks: HllSketch,
    networks_changed: bool,
    /// Networks the filters may hold in all, past which the last one fills.
    cap: u64,
}

struct Filter {
    bloom: BloomFilter,
    capacity: u64,
    fpp: f64,
    held: u64,
    changed: bool,
}

/// One shared part of a sketch, named by its field suffix: `n` for the
/// networks' HLL, the filter's index for a Bloom filter. (Nodes from before
/// sources were networks shared devices' HLLs as `d`: those are skipped.)
pub enum Part {
    /// The networks served, counted.
    Networks(HllSketch),
    /// One of the filters of networks served.
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
    /// An empty sketch whose filters hold `cap` networks in all.
    pub fn new(cap: u64) -> Self {
        let cap = cap.max(1);
        Self {
            filters: vec![Filter::new(FIRST_CAPACITY.min(cap), FALSE_POSITIVES / 2.0)],
            networks: HllSketch::new(HLL_LG_K, HllType::Hll8).expect("a valid lg_k"),
            networks_changed: false,
            cap,
        }
    }

    /// Records a network served.
    pub fn add(&mut self, network: &Network) {
        if self.contains(network) {
            return;
        }
        let held: u64 = self.filters.iter().map(|f| f.capacity).sum();
        let last = self.filters.last().expect("never empty");
        if last.held >= last.capacity && held < self.cap {
            let next = Filter::new((last.capacity * 2).min(self.cap - held), last.fpp / 2.0);
            self.filters.push(next);
        }
        let last = self.filters.last_mut().expect("never empty");
        last.bloom.insert(network);
        last.held += 1;
        last.changed = true;
        self.networks.update(network.bytes());
        self.networks_changed = true;
    }

    /// Whether `network` was added (or, rarely, looks as if it was).
    pub fn contains(&self, network: &Network) -> bool {
        self.filters.iter().any(|f| f.bloom.contains(network))
    }

    /// Adds the networks counted here to `union`.
    pub fn add_networks_to(&self, union: &mut HllUnion) {
        union.update(&self.networks);
    }

    /// The parts changed since the last call, encoded for other nodes, each
    /// with its field suffix.
    pub fn take_changed(&mut self) -> Vec<(String, Vec<u8>)> {
        let mut parts = Vec::new();
        if std::mem::take(&mut self.networks_changed) {
            parts.push(("n".to_owned(), self.networks.serialize()));
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
            "n" => HllSketch::deserialize(bytes).map(Part::Networks).map_err(unreadable),
            index if index.parse::<u32>().is_ok() => {
                BloomFilter::deserialize(bytes).map(Part::Filter).map_err(unreadable)
            }
            other => Err(Unreadable(format!("unknown part `{other}`"))),
        }
    }
}

impl Part {
    /// Whether this part is a filter that holds `network`.
    pub fn contains(&self, network: &Network) -> bool {
        matches!(self, Self::Filter(f) if f.contains(network))
    }

    /// Adds the networks this part counts (if it counts any) to `union`.
    pub fn add_networks_to(&self, union: &mut HllUnion) {
        if let Self::Networks(hll) = self {
            union.update(hll);
        }
    }
}

/// An empty union of network counts, of the sketches' precision.
pub fn network_union() -> HllUnion {
    HllUnion::new(HLL_LG_K).expect("a valid lg_k")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::health::Prefixes;

    /// One /56 network per index (2001:db8:<i>::/56).
    fn networks(range: std::ops::Range<u32>) -> Vec<Network> {
        range
            .map(|i| {
                let ip = (0x2001_0db8_u128 << 96) | (u128::from(i) << 72);
                Prefixes::default().network(std::net::Ipv6Addr::from(ip).into())
            })
            .collect()
    }

    #[test]
    fn grows_past_its_first_filter_and_counts_networks() {
        let mut sketch = Sketch::new(1_000_000);
        let held = networks(0..20_000);
        for network in &held {
            sketch.add(network);
        }
        assert!(sketch.filters.len() > 4, "filters were added");
        assert!(held.iter().all(|n| sketch.contains(n)));
        // At one in a million, 200,000 strangers pass as served rarely.
        let strangers = networks(100_000..300_000);
        let false_hits = strangers.iter().filter(|n| sketch.contains(n)).count();
        assert!(false_hits <= 2, "{false_hits} of 200000 strangers looked served");
        let mut union = network_union();
        sketch.add_networks_to(&mut union);
        let estimate = union.estimate();
        assert!((19_000.0..21_000.0).contains(&estimate), "{estimate}");
    }

    #[test]
    fn addresses_of_one_network_are_one() {
        let mut sketch = Sketch::new(1000);
        let prefixes = Prefixes::default();
        for host in 1..=200u8 {
            sketch.add(&prefixes.network(std::net::Ipv4Addr::new(10, 1, 2, host).into()));
        }
        assert!(sketch.contains(&prefixes.network("10.1.2.254".parse().unwrap())));
        assert!(!sketch.contains(&prefixes.network("10.1.3.1".parse().unwrap())));
        let mut union = network_union();
        sketch.add_networks_to(&mut union);
        assert_eq!(union.estimate().round(), 1.0);
    }

    #[test]
    fn only_changed_parts_are_shared_and_read_back() {
        let mut sketch = Sketch::new(1_000_000);
        let held = networks(0..3001);
        for network in &held[..3000] {
            sketch.add(network);
        }
        let first = sketch.take_changed();
        assert_eq!(first.len(), 1 + sketch.filters.len());
        sketch.add(&held[3000]);
        let second = sketch.take_changed();
        let suffixes: Vec<&str> = second.iter().map(|(s, _)| s.as_str()).collect();
        assert_eq!(suffixes, ["n", &(sketch.filters.len() - 1).to_string()]);
        let parts: Vec<Part> = first
            .iter()
            .chain(&second)
            .map(|(suffix, bytes)| Sketch::decode(suffix, bytes).unwrap())
            .collect();
        assert!(parts.iter().any(|p| p.contains(&held[2999])));
        assert!(parts.iter().any(|p| p.contains(&held[3000])));
        let mut union = network_union();
        for part in &parts {
            part.add_networks_to(&mut union);
        }
        let estimate = union.estimate();
        assert!((2900.0..3100.0).contains(&estimate), "{estimate}");
        assert!(Sketch::decode("n", &[1, 2]).is_err());
        assert!(Sketch::decode("x", &[]).is_err());
    }
}
