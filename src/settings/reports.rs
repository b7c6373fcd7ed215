//! `[reports]`: when client error reports break a version (the health-signal
//! model in `domain::health`).

use serde::{Deserialize, Serialize};

use super::{SettingsError, invalid};
use crate::domain::health::{BreakRule, Prefixes};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
/// `[reports]`: how client reports break a version.
pub struct Reports {
    /// `rate`: a share of the networks served; `count`: the original's
    /// absolute `break_threshold`, unsafe when the secret is public.
    pub rule: String,
    /// The span reports and served networks are counted over, in seconds.
    pub window_s: u64,
    /// Distinct counted sources (client networks) a break needs at least
    /// (rate); also the rollout gate's floor unless a plan sets its own.
    pub min_sources: u64,
    /// The share of the networks served that must have reported (rate).
    pub break_ratio: f64,
    /// Reports that break a version (count).
    pub break_threshold: u32,
    /// Sources one version's served sketch holds per half window before it
    /// stops growing (about five bytes each).
    pub served_capacity: u64,
    /// Reports that cannot count stored per version and half window, per
    /// node; past it they are dropped (and counted in metrics).
    pub max_ignored: u32,
    /// Networks not known as served that a node looks up further (waiting
    /// for the other nodes' sketches) per version and half window; past it
    /// such reports are refused as `storm`. Served networks never count
    /// against it.
    pub max_lookups: u32,
    /// How often each node shares its served sketches through Redis.
    pub share_ms: u64,
    /// Bits of an IPv4 client address that name its network, the source a
    /// report counts as (8 to 32).
    pub source_prefix_v4: u8,
    /// Bits of an IPv6 client address that name its network (16 to 128).
    pub source_prefix_v6: u8,
}

impl Default for Reports {
    fn default() -> Self {
        Self {
            rule: "rate".into(),
            window_s: 600,
            min_sources: 10,
            break_ratio: 0.1,
            break_threshold: 10,
            served_capacity: 1_000_000,
            max_ignored: 1000,
            max_lookups: 100_000,
            share_ms: 1000,
            source_prefix_v4: Prefixes::default().v4,
            source_prefix_v6: Prefixes::default().v6,
        }
    }
}

impl Reports {
    /// The rule the store judges with.
    pub fn break_rule(&self) -> BreakRule {
        match self.rule.as_str() {
            "count" => BreakRule::Count {
                threshold: u64::from(self.break_threshold),
            },
            _ => BreakRule::Rate {
                min_sources: self.min_sources,
                ratio: self.break_ratio,
            },
        }
    }

    /// How client addresses group into networks.
    pub fn prefixes(&self) -> Prefixes {
        Prefixes {
            v4: self.source_prefix_v4,
            v6: self.source_prefix_v6,
        }
    }

    /// `share_ms` as a duration.
    pub fn share_interval(&self) -> std::time::Duration {
        std::time::Duration::from_millis(self.share_ms)
    }

    /// Refuses values that cannot work, naming the key.
    pub fn validate(&self) -> Result<(), SettingsError> {
        if !matches!(self.rule.as_str(), "rate" | "count") {
            return invalid("reports.rule", "must be `rate` or `count`");
        }
        if !(10..=86_400).contains(&self.window_s) {
            return invalid("reports.window_s", "must be between 10 and 86400");
        }
        if self.min_sources == 0 {
            return invalid("reports.min_sources", "must be at least 1");
        }
        if !(self.break_ratio > 0.0 && self.break_ratio <= 1.0) {
            return invalid("reports.break_ratio", "must be above 0 and at most 1");
        }
        if self.break_threshold == 0 {
            return invalid("reports.break_threshold", "must be at least 1");
        }
        if !(1024..=100_000_000).contains(&self.served_capacity) {
            return invalid("reports.served_capacity", "must be between 1024 and 100000000");
        }
        if !(100..=10_000_000).contains(&self.max_lookups) {
            return invalid("reports.max_lookups", "must be between 100 and 10000000");
        }
        if !(10..=60_000).contains(&self.share_ms) {
            return invalid("reports.share_ms", "must be between 10 and 60000");
        }
        // Wider than a /8 or a /16 would lump unrelated clients into one
        // source; narrower than an address is no network.
        if !(8..=32).contains(&self.source_prefix_v4) {
            return invalid("reports.source_prefix_v4", "must be between 8 and 32");
        }
        if !(16..=128).contains(&self.source_prefix_v6) {
            return invalid("reports.source_prefix_v6", "must be between 16 and 128");
        }
        Ok(())
    }
}
