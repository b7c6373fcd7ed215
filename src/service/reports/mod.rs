//! Client error reports, judged by the health-signal model
//! (`domain::health`): a report is checked against memory (the config, its
//! secret, its current versions), then against this node's record of what
//! it took from the source (the client's network) and of which networks each
//! version was served to, and only
//! a candidate that may count reaches the store's judgement. So a storm of
//! reports that cannot count costs a few hash lookups each, and stores at
//! most a few per source and a capped number per version. Not an actor: the
//! state is in `served.rs` and `repeats.rs`, shared across requests.

pub mod receipt;
pub mod repeats;
pub mod served;
pub mod share;
pub mod sketch;

use std::net::IpAddr;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::actors::config_cache::{ConfigCacheHandle, ResolveError};
use crate::domain::ConfigStatus;
use crate::domain::health::{BreakRule, Network, Prefixes, ReportKind, share};
use crate::domain::model::{ErrorReport, EventKind, now_millis};
use crate::domain::rollout::GateFigures;
use crate::metrics;
use crate::service::releases::ReleasesHandle;
use crate::store::{Breaking, Missing, NewReport, Store, StoreError};
use crate::sync::RwLocked;
use receipt::receipt;
pub use receipt::{Receipt, ReportReason, ReportSummary};
use repeats::Repeats;
use served::ServedRecord;
use share::Share;

/// Why a report was refused (rendered at the edge as the original did).
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// The config is unknown, or memory and the store could not say.
    #[error(transparent)]
    Resolve(#[from] ResolveError),
    /// Neither the config's secret nor its previous one within the grace.
    #[error("wrong secret")]
    WrongSecret,
    /// The config is inactive.
    #[error("config `{0}` is inactive")]
    Inactive(String),
    /// The version is neither the stable nor the gray one.
    #[error("version `{code_id}` is not a current version of config `{config_id}`")]
    NotCurrent {
        /// The config reported against.
        config_id: String,
        /// The version named.
        code_id: String,
    },
    /// The version is already broken: nothing more to judge.
    #[error("version `{0}` is already marked broken")]
    Broken(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The rules that may change on reload.
#[derive(Debug, Clone, Copy)]
pub struct Rules {
    /// When counted reports break a version.
    pub rule: BreakRule,
    /// Reports that cannot count stored per version and bucket, per node.
    pub max_ignored: u32,
    /// Networks not known as served looked up further per version and
    /// bucket, per node (`repeats.rs`).
    pub max_lookups: u32,
}

impl Rules {
    /// The rules `[reports]` sets.
    pub fn from_settings(reports: &crate::settings::Reports) -> Self {
        Self {
            rule: reports.break_rule(),
            max_ignored: reports.max_ignored,
            max_lookups: reports.max_lookups,
        }
    }
}

/// A report as a route received it, checked for shape but not yet judged.
pub struct ClientReport {
    /// The config reported against.
    pub config_id: String,
    /// The version reported against.
    pub code_id: String,
    /// The secret the client presented.
    pub secret: String,
    /// The client's address: its network is the report's source, on every
    /// route (a device id is the client's word, and anyone may invent one).
    pub address: IpAddr,
    /// What went wrong, as the reporter saw it.
    pub kind: ReportKind,
    /// When the client saw it, as it says.
    pub err_time: i64,
    /// What the client said.
    pub message: String,
}

/// Judges client error reports; cloneable, shared by every request.
#[derive(Clone)]
pub struct ReportsHandle {
    inner: Arc<Inner>,
}

struct Inner {
    store: Arc<dyn Store>,
    cache: ConfigCacheHandle,
    releases: ReleasesHandle,
    served: Arc<ServedRecord>,
    repeats: Repeats,
    share: Option<Arc<Share>>,
    prefixes: Prefixes,
    rules: RwLock<Rules>,
}

/// Where reports come from and where they go.
pub struct Wiring {
    /// Where reports are stored and breaks decided.
    pub store: Arc<dyn Store>,
    /// The config, its secret and its current versions, from memory.
    pub cache: ConfigCacheHandle,
    /// Announces a break like any change.
    pub releases: ReleasesHandle,
    /// Which networks each version was served to.
    pub served: Arc<ServedRecord>,
    /// Other nodes' served records, with Redis.
    pub share: Option<Arc<Share>>,
    /// How client addresses group into networks (`reports.source_prefix_*`).
    pub prefixes: Prefixes,
}

impl ReportsHandle {
    /// Reports judged by `rules` until the next `set_rules`.
    pub fn new(wiring: Wiring, rules: Rules) -> Self {
        Self {
            inner: Arc::new(Inner {
                store: wiring.store,
                cache: wiring.cache,
                releases: wiring.releases,
                served: wiring.served,
                repeats: Repeats::new(),
                share: wiring.share,
                prefixes: wiring.prefixes,
                rules: RwLock::new(rules),
            }),
        }
    }

    /// The rules from a settings reload.
    pub fn set_rules(&self, rules: Rules) {
        *self.inner.rules.writing() = rules;
    }

    fn rules(&self) -> Rules {
        *self.inner.rules.reading()
    }

    /// A fetch from `address` was served `code_id`: the hot path, memory
    /// only. Its network is recorded, the way its reports will be counted.
    pub fn served(&self, code_id: &str, address: IpAddr) {
        let network = self.inner.prefixes.network(address);
        self.inner.served.record(code_id, &network, now_millis());
    }

    /// Judges a report: refused (bad secret, not current, ...), or stored
    /// and counted or not, or dropped past the caps; a counted one may
    /// break the version, which is then announced.
    pub async fn report(&self, report: ClientReport) -> Result<Receipt, ReportError> {
        let arrived = Instant::now();
        let inner = &self.inner;
        let entry = inner.cache.entry(&report.config_id).await?;
        let config = &entry.config;
        let now = now_millis();
        if !config.accepts_secret(&report.secret, now) {
            return Err(ReportError::WrongSecret);
        }
        if config.status == ConfigStatus::Inactive {
            return Err(ReportError::Inactive(config.id.clone()));
        }
        let version = [&entry.release, &entry.gray]
            .into_iter()
            .flatten()
            .find(|v| v.code_id == report.code_id)
            .ok_or_else(|| ReportError::NotCurrent {
                config_id: config.id.clone(),
                code_id: report.code_id.clone(),
            })?;
        if version.broken {
            return Err(ReportError::Broken(version.code_id.clone()));
        }
        let source = inner.prefixes.network(report.address);
        let (bucket, _) = inner.served.span(now);
        let seen = inner.repeats.note(&report.code_id, &source, bucket);
        let rules = self.rules();
        // The original's count takes every report; the rate takes a network
        // once per window, and only one the version was served to.
        let rate = matches!(rules.rule, BreakRule::Rate { .. });
        let ignored = if !report.kind.counts() {
            Some(ReportReason::Kind)
        } else if rate && seen.candidate {
            Some(ReportReason::Repeat)
        } else if rate {
            self.served_or_why_not(&report.code_id, &source, arrived).await
        } else {
            None
        };
        let Some(reason) = ignored else {
            inner.repeats.mark_candidate(&report.code_id, &source);
            return self.judge(report, &source, rules).await;
        };
        if !inner
            .repeats
            .may_store_ignored(&report.code_id, seen, rules.max_ignored)
        {
            metrics::report("dropped");
            return Ok(receipt(false, false, reason));
        }
        metrics::report(reason.as_str());
        let breaking = self.breaking(rules, Some(0));
        inner
            .store
            .add_report(new_report(report, &source, false), &breaking)
            .await?;
        Ok(receipt(false, true, reason))
    }

    async fn judge(&self, report: ClientReport, source: &Network, rules: Rules) -> Result<Receipt, ReportError> {
        let served = match rules.rule {
            BreakRule::Rate { .. } => self.served_networks(&report.code_id).await,
            BreakRule::Count { .. } => Some(0),
        };
        let code_id = report.code_id.clone();
        let outcome = self
            .inner
            .store
            .add_report(new_report(report, source, true), &self.breaking(rules, served))
            .await?;
        let reason = if outcome.counted {
            ReportReason::Counted
        } else {
            ReportReason::Repeat
        };
        metrics::report(reason.as_str());
        let mut receipt = receipt(outcome.counted, true, reason);
        if let Some(broke) = outcome.broke {
            tracing::warn!(
                config_id = broke.config.id,
                code_id,
                evidence = ?broke.evidence,
                rolled_back_to = broke.rolled_back_to,
                still_served = broke.still_served,
                "version marked broken by reports"
            );
            metrics::broken_by_reports(broke.rolled_back_to.is_some());
            if broke.still_served {
                // Nothing healthy to fall back to: served on, and someone
                // must decide whether to take the config offline.
                tracing::error!(
                    config_id = broke.config.id,
                    code_id,
                    "a version broken by reports has no healthy earlier version: still served until an operator acts"
                );
                metrics::broken_without_fallback();
            }
            self.inner.releases.announce(&broke.config, Some(&code_id)).await;
            receipt.broke = true;
            receipt.rolled_back_to = broke.rolled_back_to;
        }
        Ok(receipt)
    }

    fn breaking(&self, rules: Rules, served_networks: Option<u64>) -> Breaking {
        Breaking {
            rule: rules.rule,
            window_s: self.inner.served.window_s(),
            served_networks,
        }
    }

    /// `None` when the network was served the version, else why it does not
    /// count. Memory (this node's record and the other nodes' as last read)
    /// is asked first, before any cap, so a storm from networks never served
    /// cannot hide a served one. Only a network memory does not know is
    /// looked up further (with other nodes, waiting until a fetch made
    /// elsewhere before this report arrived has surely been shared), and
    /// only as many per version and half window as `repeats` allows.
    async fn served_or_why_not(&self, code_id: &str, network: &Network, arrived: Instant) -> Option<ReportReason> {
        let served = &self.inner.served;
        if served.was_served(code_id, network, now_millis()) {
            return None;
        }
        if !self.inner.repeats.may_check(code_id, self.rules().max_lookups) {
            // Past the cap nothing waits for the next share; but the other
            // nodes' view is kept at most an interval old (one read per
            // interval, shared), so a network served elsewhere still counts.
            if let Some(share) = &self.inner.share {
                let now = Instant::now();
                share
                    .read_after(code_id, now.checked_sub(share.interval()).unwrap_or(now))
                    .await;
                if served.was_served(code_id, network, now_millis()) {
                    return None;
                }
            }
            return Some(ReportReason::Storm);
        }
        let Some(share) = &self.inner.share else {
            return Some(ReportReason::NotServed);
        };
        share.read_after(code_id, share.landed_by(arrived)).await;
        match served.was_served(code_id, network, now_millis()) {
            true => None,
            false => Some(ReportReason::NotServed),
        }
    }

    /// Networks served the version on every node; `None` when other nodes'
    /// records could not be read lately.
    async fn served_networks(&self, code_id: &str) -> Option<u64> {
        if let Some(share) = &self.inner.share {
            let now = Instant::now();
            let recent = now.checked_sub(share.interval()).unwrap_or(now);
            if !share.read_after(code_id, recent).await {
                return None;
            }
        }
        Some(self.inner.served.served_networks(code_id, now_millis()))
    }

    /// A version's reports and served networks, for its operator.
    pub async fn summary(&self, config_id: &str, code_id: &str) -> Result<ReportSummary, ReportError> {
        let version = self
            .inner
            .store
            .get_version(code_id)
            .await?
            .filter(|v| v.config_id == config_id)
            .ok_or_else(|| StoreError::NotFound(Missing::version(config_id, code_id)))?;
        let window_s = self.inner.served.window_s();
        let since = now_millis() - window_s as i64 * 1000;
        let window = self.inner.store.report_counts(code_id, since).await?;
        let total = self.inner.store.report_counts(code_id, 0).await?;
        let served_networks = self.served_networks(code_id).await.unwrap_or(0);
        let counted_sources = window.iter().filter(|c| c.counted).map(|c| c.sources).sum::<i64>();
        let rules = self.rules();
        let (rule, min_sources, break_ratio, break_threshold) = match rules.rule {
            BreakRule::Rate { min_sources, ratio } => ("rate", min_sources, ratio, 0),
            BreakRule::Count { threshold } => ("count", 0, 0.0, threshold),
        };
        let broken_by = match version.broken {
            true => self.broken_by(config_id, code_id).await?,
            false => None,
        };
        Ok(ReportSummary {
            code_id: version.code_id,
            broken: version.broken,
            broken_by,
            error_count: version.error_count,
            window_s,
            served_networks,
            served_devices: served_networks,
            counted_sources,
            ratio: share(counted_sources.max(0) as u64, served_networks).1,
            rule: rule.into(),
            min_sources,
            break_ratio,
            break_threshold,
            window,
            total,
        })
    }

    /// Who made the version's latest broken mark: the release log says.
    async fn broken_by(&self, config_id: &str, code_id: &str) -> Result<Option<String>, ReportError> {
        let events = self.inner.store.list_events(config_id).await?;
        Ok(events
            .into_iter()
            .find(|e| e.kind == EventKind::Broken && e.to["code_id"] == code_id)
            .map(|e| e.actor))
    }

    /// A version's health since `since_ms`, as a rollout plan's gate judges
    /// it: counted networks since then against the networks served it, with
    /// the same floor as breaking (`reports.min_sources`, or the plan's own
    /// `min_sources`). Under the count rule the floor is its count of
    /// reports and the threshold every served network, so one report never
    /// aborts a plan there either.
    pub async fn gate(
        &self,
        code_id: &str,
        since_ms: i64,
        min_sources: Option<u64>,
    ) -> Result<GateFigures, ReportError> {
        let broken = self.inner.store.get_version(code_id).await?.is_some_and(|v| v.broken);
        let counts = self.inner.store.report_counts(code_id, since_ms).await?;
        let counted = counts
            .iter()
            .filter(|c| c.counted)
            .map(|c| c.sources.max(0) as u64)
            .sum();
        let served = self.served_networks(code_id).await.unwrap_or(0);
        let (threshold, floor) = match self.rules().rule {
            BreakRule::Rate {
                ratio,
                min_sources: floor,
            } => (ratio, min_sources.unwrap_or(floor)),
            BreakRule::Count { threshold } => (1.0, min_sources.unwrap_or(threshold)),
        };
        Ok(GateFigures::new(broken, counted, served, threshold, floor))
    }

    /// A version's latest reports, newest first.
    pub async fn list(&self, config_id: &str, code_id: &str, limit: i64) -> Result<Vec<ErrorReport>, ReportError> {
        match self.inner.store.get_version(code_id).await? {
            Some(v) if v.config_id == config_id => Ok(self.inner.store.list_reports(code_id, limit).await?),
            _ => Err(StoreError::NotFound(Missing::version(config_id, code_id)).into()),
        }
    }

    /// Keeps the served record and the repeats bounded and, with other
    /// nodes, shares what this one served; every `interval`.
    pub fn spawn_upkeep(&self, interval: Duration) -> JoinHandle<()> {
        let inner = self.inner.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let now = now_millis();
                inner.served.sweep(now);
                inner.repeats.sweep(inner.served.span(now).0);
                if let Some(share) = &inner.share {
                    share.push_changed().await;
                }
            }
        })
    }
}

fn new_report(report: ClientReport, source: &Network, candidate: bool) -> NewReport {
    NewReport {
        source: source.key(),
        config_id: report.config_id,
        code_id: report.code_id,
        err_time: report.err_time,
        message: report.message,
        kind: report.kind,
        candidate,
    }
}
