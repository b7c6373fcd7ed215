//! Health signals: which client error reports may count against a version,
//! and when the counted ones are enough to break it. A config's secret is
//! built into every app, so it is public: a report proves nothing by itself.
//! It counts only when it is the version's fault (its kind), comes from a
//! source (a client network) the version was served to, and is that
//! source's first in the window; and a version breaks on a share of the
//! networks it was served to, not on a bare count. Pure: the served record,
//! the store and the routes apply it.

use std::hash::{Hash, Hasher};
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

/// The longest report message kept, in bytes: enough for a stack trace's
/// top. Longer ones are refused, so senders cut theirs to fit.
pub const MAX_MESSAGE_BYTES: usize = 8192;

/// What went wrong, as the reporter saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ReportKind {
    /// The client app could not use the version's output.
    Client,
    /// The consumer's own validator refused the version's output.
    Check,
    /// A template failed to render the output (the operator's template).
    Render,
    /// The program reading the output failed to reload (the machine's fault).
    Reload,
}

impl ReportKind {
    /// Every kind, in the order they are documented.
    pub const ALL: [Self; 4] = [Self::Client, Self::Check, Self::Render, Self::Reload];

    /// As sent and stored.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Client => "client",
            Self::Check => "check",
            Self::Render => "render",
            Self::Reload => "reload",
        }
    }

    /// The kind `as_str` gave, if it is one.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// Whether a report of this kind is evidence against the version; the
    /// others are stored and shown, never counted.
    pub fn counts(self) -> bool {
        matches!(self, Self::Client | Self::Check)
    }
}

/// The prefix lengths that group client addresses into networks
/// (`reports.source_prefix_v4`, `reports.source_prefix_v6`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Prefixes {
    /// Bits of an IPv4 address that name its network (24 by default).
    pub v4: u8,
    /// Bits of an IPv6 address that name its network (56 by default: what
    /// one home or office is usually given).
    pub v6: u8,
}

impl Default for Prefixes {
    fn default() -> Self {
        Self { v4: 24, v6: 56 }
    }
}

impl Prefixes {
    /// The network `ip` belongs to. An IPv4-mapped IPv6 address is its IPv4
    /// address, so one client is one network on either stack.
    pub fn network(self, ip: IpAddr) -> Network {
        match ip.to_canonical() {
            IpAddr::V4(v4) => {
                let prefix = self.v4.min(32);
                let mask = u32::MAX.checked_shl(u32::from(32 - prefix)).unwrap_or(0);
                Network {
                    base: IpAddr::V4((u32::from(v4) & mask).into()),
                    prefix,
                }
            }
            IpAddr::V6(v6) => {
                let prefix = self.v6.min(128);
                let mask = u128::MAX.checked_shl(u32::from(128 - prefix)).unwrap_or(0);
                Network {
                    base: IpAddr::V6((u128::from(v6) & mask).into()),
                    prefix,
                }
            }
        }
    }
}

/// Who sent a report, or was served a version: the client's network, never
/// what the client says it is. A device id is free to invent (the secret is
/// public and fetching needs no credential), so counting ids let one machine
/// pose as a fleet; an address is the one thing a client cannot choose
/// freely, and a network (not the address) is counted because one machine,
/// or one office, may hold many addresses of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Network {
    /// The network's first address (the address with its host bits cleared).
    base: IpAddr,
    /// Its prefix length.
    prefix: u8,
}

impl Network {
    /// How the source is stored with its reports: `network:203.0.113.0/24`.
    pub fn key(&self) -> String {
        format!("network:{}/{}", self.base, self.prefix)
    }

    /// The same bytes on every node (sketches from several nodes are
    /// merged): a tag, the prefix, then the base address's octets.
    pub fn bytes(&self) -> Vec<u8> {
        let mut bytes = vec![b'n', self.prefix];
        match self.base {
            IpAddr::V4(v4) => bytes.extend_from_slice(&v4.octets()),
            IpAddr::V6(v6) => bytes.extend_from_slice(&v6.octets()),
        }
        bytes
    }
}

/// Hashes `bytes()`, so the Bloom filters' hash is the same on every node.
impl Hash for Network {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write(&self.bytes());
    }
}

/// When counted reports break a version.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum BreakRule {
    /// At least `min_sources` distinct counted networks in the window, and
    /// at least `ratio` of the distinct networks served the version in it.
    Rate {
        /// The least distinct counted networks.
        min_sources: u64,
        /// The least share of the networks served.
        ratio: f64,
    },
    /// The original's absolute count of reports, from anyone: unsafe when
    /// the secret is public (one machine can break any version).
    Count {
        /// Reports that break a version.
        threshold: u64,
    },
}

/// Why a version was broken, recorded with the break and the rollback.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Evidence {
    /// `rate` or `count`.
    pub rule: String,
    /// Distinct networks whose reports counted in the window.
    pub counted_sources: u64,
    /// Distinct networks served the version in the window (an estimate).
    /// Events recorded before sources were networks call it `served_devices`.
    #[serde(alias = "served_devices")]
    pub served_networks: u64,
    /// The window both were counted over, in seconds.
    pub window_s: u64,
    /// `counted_sources / served_networks`.
    pub ratio: f64,
    /// What the rule asked for: the least sources (rate), or the count
    /// (count).
    pub required_sources: u64,
    /// The least share the rule asked for (rate; 0 for count).
    pub required_ratio: f64,
}

/// What the store knows when a report has counted.
#[derive(Debug, Clone, Copy)]
pub struct Tally {
    /// Distinct networks whose reports counted in the window.
    pub counted_sources: u64,
    /// The version's counted reports ever (the original's error count).
    pub error_count: u64,
    /// Distinct networks served the version in the window, on every node.
    pub served_networks: u64,
    /// The window, in seconds.
    pub window_s: u64,
}

/// The served networks as judged, and the share of them that reported.
/// Served networks are an estimate: the served count is never below the
/// counted sources, so the share never passes one.
pub fn share(counted_sources: u64, served_networks: u64) -> (u64, f64) {
    let served = served_networks.max(counted_sources);
    let ratio = match served {
        0 => 0.0,
        n => counted_sources as f64 / n as f64,
    };
    (served, ratio)
}

/// The evidence that breaks the version, if the tally is enough.
pub fn judge(rule: BreakRule, tally: Tally) -> Option<Evidence> {
    let (served, ratio) = share(tally.counted_sources, tally.served_networks);
    let (broken, rule_name, required_sources, required_ratio) = match rule {
        BreakRule::Rate {
            min_sources,
            ratio: wanted,
        } => (
            tally.counted_sources >= min_sources.max(1) && ratio >= wanted,
            "rate",
            min_sources,
            wanted,
        ),
        BreakRule::Count { threshold } => (tally.error_count >= threshold.max(1), "count", threshold, 0.0),
    };
    broken.then(|| Evidence {
        rule: rule_name.into(),
        counted_sources: tally.counted_sources,
        served_networks: served,
        window_s: tally.window_s,
        ratio,
        required_sources,
        required_ratio,
    })
}

/// Served records are kept in buckets of half a window; a report looks at
/// the current bucket and the two before it, so "served recently" and the
/// served count cover between one and one and a half windows. The longer
/// span only lowers the share, never raises it.
pub const BUCKETS_IN_VIEW: u64 = 3;

/// The bucket `now_ms` falls in.
pub fn bucket(now_ms: i64, window_s: u64) -> u64 {
    now_ms.max(0) as u64 / bucket_ms(window_s)
}

/// How long a bucket is: half a window, in milliseconds.
fn bucket_ms(window_s: u64) -> u64 {
    (window_s.max(1) * 1000 / 2).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    const RATE: BreakRule = BreakRule::Rate {
        min_sources: 10,
        ratio: 0.1,
    };

    fn tally(counted_sources: u64, served_networks: u64) -> Tally {
        Tally {
            counted_sources,
            error_count: counted_sources,
            served_networks,
            window_s: 600,
        }
    }

    #[test]
    fn rate_needs_both_enough_sources_and_enough_share() {
        assert_eq!(judge(RATE, tally(9, 20)), None, "too few sources");
        assert_eq!(judge(RATE, tally(10, 101)), None, "too small a share");
        let evidence = judge(RATE, tally(16, 40)).expect("40% of 40 served");
        assert_eq!((evidence.counted_sources, evidence.served_networks), (16, 40));
        assert!((evidence.ratio - 0.4).abs() < 1e-9);
        assert_eq!(evidence.rule, "rate");
    }

    #[test]
    fn the_share_never_passes_one() {
        let evidence = judge(RATE, tally(12, 3)).unwrap();
        assert_eq!((evidence.served_networks, evidence.ratio), (12, 1.0));
    }

    #[test]
    fn count_is_the_originals_threshold() {
        let rule = BreakRule::Count { threshold: 3 };
        let mut t = tally(1, 0);
        t.error_count = 2;
        assert_eq!(judge(rule, t), None);
        t.error_count = 3;
        assert_eq!(judge(rule, t).unwrap().rule, "count");
    }

    #[test]
    fn kinds_parse_and_only_the_versions_fault_counts() {
        for kind in ReportKind::ALL {
            assert_eq!(ReportKind::parse(kind.as_str()), Some(kind));
        }
        assert_eq!(ReportKind::parse("crash"), None);
        let counting: Vec<_> = ReportKind::ALL.into_iter().filter(|k| k.counts()).collect();
        assert_eq!(counting, [ReportKind::Client, ReportKind::Check]);
    }

    #[test]
    fn addresses_group_into_networks_and_mapped_v4_is_v4() {
        let prefixes = Prefixes::default();
        let net = |ip: &str| prefixes.network(ip.parse().unwrap());
        assert_eq!(net("203.0.113.7"), net("203.0.113.250"));
        assert_ne!(net("203.0.113.7"), net("203.0.114.7"));
        assert_eq!(net("::ffff:203.0.113.9"), net("203.0.113.7"));
        assert_eq!(net("203.0.113.7").key(), "network:203.0.113.0/24");
        assert_eq!(net("2001:db8:1:ff::1").key(), "network:2001:db8:1::/56");
        assert_eq!(net("2001:db8:1:ff::1"), net("2001:db8:1:aa:1::9"));
        assert_ne!(net("2001:db8:1:1ff::1"), net("2001:db8:1:ff::1"));
        let whole = Prefixes { v4: 32, v6: 128 };
        assert_eq!(whole.network("10.0.0.1".parse().unwrap()).key(), "network:10.0.0.1/32");
        assert_eq!(net("10.1.2.3").bytes(), [b'n', 24, 10, 1, 2, 0]);
    }

    #[test]
    fn buckets_are_half_windows() {
        assert_eq!(bucket_ms(600), 300_000);
        assert_eq!(bucket(299_999, 600), 0);
        assert_eq!(bucket(300_000, 600), 1);
    }
}
