//! Settings reload (the admin route and SIGHUP): what changed between the
//! running settings and a newly loaded file, which of those changes apply
//! at run time, and the settings in force afterwards (`plan`, pure); the
//! `Reloader` holds the settings in force and hands each reload to the
//! services through `Deliver`, which `app.rs` builds.

use std::path::PathBuf;
use std::sync::{Mutex, OnceLock};

use serde::Serialize;
use serde_json::{Map, Value};

use crate::settings::{Settings, SettingsError};
use crate::sync::Locked;

/// Keys a running node takes without a restart.
const LIVE: &[&str] = &[
    "sandbox.workers",
    "sandbox.min_workers",
    "sandbox.deadline_ms",
    "sandbox.memory_mb",
    "sandbox.queue_bound",
    "sandbox.queue_wait_ms",
    "sandbox.kill_grace_ms",
    "sandbox.paused_jobs",
    "sandbox.recycle_after_runs",
    "sandbox.recycle_rss_mb",
    "sandbox.code_cache_entries",
    "sandbox.pipeline_depth",
    "sandbox.pipeline_budget_ms",
    "reports.rule",
    "reports.min_sources",
    "reports.break_ratio",
    "reports.break_threshold",
    "reports.max_ignored",
    "reports.max_lookups",
    "auth.secret_grace_s",
    "push.ping_interval_ms",
    "push.pong_timeout_ms",
    "push.write_timeout_ms",
    "push.max_subscriptions",
    "push.subscribe_deadline_ms",
    "push.max_sockets_per_address",
    "ofrep.client_tokens",
    "ofrep.require_credentials",
    "ofrep.max_bulk_flags",
    "ofrep.public_url",
    "ofrep.inactivity_delay_s",
    "log.level",
];

/// Keys whose values never appear in a report.
const SECRET: &[&str] = &[
    "auth.admin_tokens",
    "auth.oidc",
    "ofrep.client_tokens",
    "push.update_secret",
    "tests.secret",
    "store.url",
    "redis.url",
];

#[derive(Debug, Clone, PartialEq, Serialize)]
/// One setting that differs between the running and the reloaded settings.
pub struct SettingChange {
    /// The setting's dotted key (`sandbox.deadline_ms`).
    pub key: String,
    /// Its value before.
    pub from: Value,
    /// Its value after.
    pub to: Value,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
/// What a reload does with each change.
pub struct ReloadPlan {
    /// Taken at once.
    pub applied: Vec<SettingChange>,
    /// Logged and left as they were until the next restart.
    pub restart_required: Vec<SettingChange>,
}

impl ReloadPlan {
    /// Whether a change applied now is under `section`.
    pub fn touches(&self, section: &str) -> bool {
        self.applied.iter().any(|c| c.key.starts_with(section))
    }
}

/// Compares `running` with `loaded` and returns the plan and the settings in
/// force after it: `running` with the live keys taken from `loaded`.
/// Secrets the node generated at start (empty in the file) are not changes.
pub fn plan(running: &Settings, mut loaded: Settings) -> (ReloadPlan, Settings) {
    if loaded.auth.admin_tokens.is_empty() {
        loaded.auth.admin_tokens = running.auth.admin_tokens.clone();
    }
    if loaded.tests.secret.is_empty() {
        loaded.tests.secret = running.tests.secret.clone();
    }
    if loaded.push.update_secret.is_empty() {
        loaded.push.update_secret = running.push.update_secret.clone();
    }
    let old = flatten(running);
    let new = flatten(&loaded);
    let mut plan = ReloadPlan::default();
    let mut effective = serde_json::to_value(running).unwrap_or_default();
    for (key, to) in &new {
        let from = old.get(key).cloned().unwrap_or(Value::Null);
        if &from == to {
            continue;
        }
        let live = LIVE.contains(&key.as_str());
        if live && let Some((section, field)) = key.split_once('.') {
            effective[section][field] = to.clone();
        }
        let change = if SECRET.contains(&key.as_str()) {
            SettingChange {
                key: key.clone(),
                from: Value::from("(hidden)"),
                to: Value::from("(hidden)"),
            }
        } else {
            SettingChange {
                key: key.clone(),
                from,
                to: to.clone(),
            }
        };
        if live {
            plan.applied.push(change);
        } else {
            plan.restart_required.push(change);
        }
    }
    let effective = serde_json::from_value(effective).unwrap_or_else(|_| running.clone());
    (plan, effective)
}

/// Sets the log filter to a new level (given by `main`, which installs the
/// subscriber).
pub type SetLogLevel = Box<dyn Fn(&str) -> Result<(), LogLevelError> + Send + Sync>;

/// Why the log filter kept its level.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct LogLevelError(pub Box<dyn std::error::Error + Send + Sync>);

/// Hands a reload's settings to the services that take them live; built in
/// `app.rs`, the one place that knows which service takes which section.
pub type Deliver = Box<dyn Fn(&ReloadPlan, &Settings) -> Result<(), ReloadError> + Send + Sync>;

/// Why a reload changed nothing.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// The file or the environment does not hold valid settings.
    #[error(transparent)]
    Settings(#[from] SettingsError),
    /// A running service refused the new settings.
    #[error("the {service} did not take the new settings: {source}")]
    NotTaken {
        /// The service, as its actor is named.
        service: &'static str,
        /// Its own error.
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

/// The settings in force, where they came from, and who takes a reload.
pub struct Reloader {
    current: Mutex<Settings>,
    source: Mutex<Option<(PathBuf, bool)>>,
    deliver: Deliver,
    log_level: OnceLock<SetLogLevel>,
}

impl Reloader {
    /// `deliver` hands each reload to the services (see `app.rs`).
    pub fn new(settings: Settings, deliver: Deliver) -> Self {
        Self {
            current: Mutex::new(settings),
            source: Mutex::new(None),
            deliver,
            log_level: OnceLock::new(),
        }
    }

    /// How a reload changes the log filter, once `main` has installed it.
    pub fn set_log_level_setter(&self, set: SetLogLevel) {
        let _ = self.log_level.set(set);
    }

    /// Changes the log filter, if this process has one to change.
    pub fn set_log_level(&self, level: &str) -> Result<(), LogLevelError> {
        match self.log_level.get() {
            Some(set) => set(level),
            None => Ok(()),
        }
    }

    /// The file a reload reads (with environment overrides on top);
    /// `required` makes a missing file an error.
    pub fn set_source(&self, path: PathBuf, required: bool) {
        *self.source.locked() = Some((path, required));
    }

    /// The settings in force, reloads included.
    pub fn settings(&self) -> Settings {
        self.current.locked().clone()
    }

    /// Loads the settings source again and applies what can change at run time.
    /// An invalid source changes nothing.
    pub fn reload(&self) -> Result<ReloadPlan, ReloadError> {
        let source = self.source.locked().clone();
        let (path, required) = source.unwrap_or_else(|| (PathBuf::from("config.toml"), false));
        let loaded = Settings::load(&path, required)?;
        let mut current = self.current.locked();
        let (plan, effective) = plan(&current, loaded);
        (self.deliver)(&plan, &effective)?;
        if plan.touches("log.")
            && let Err(e) = self.set_log_level(&effective.log.level)
        {
            tracing::warn!(error = %e, "log level not changed");
        }
        for change in &plan.applied {
            tracing::info!(key = change.key, from = %change.from, to = %change.to, "setting reloaded");
        }
        for change in &plan.restart_required {
            tracing::warn!(
                key = change.key,
                "setting changed in the file but needs a restart; left as it was"
            );
        }
        *current = effective;
        Ok(plan)
    }
}

/// `section.key` -> value.
fn flatten(settings: &Settings) -> Map<String, Value> {
    let mut out = Map::new();
    if let Ok(Value::Object(sections)) = serde_json::to_value(settings) {
        for (section, fields) in sections {
            if let Value::Object(fields) = fields {
                for (field, value) in fields {
                    out.insert(format!("{section}.{field}"), value);
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn live_keys_apply_and_the_rest_wait_for_a_restart() {
        let running = Settings::default();
        let mut loaded = Settings::default();
        loaded.sandbox.workers = 7;
        loaded.sandbox.deadline_ms = 75;
        loaded.log.level = "debug".into();
        loaded.server.listen = "127.0.0.1:9999".parse().unwrap();
        loaded.store.url = "sqlite://elsewhere.db".into();
        let (plan, effective) = plan(&running, loaded);
        let applied: Vec<_> = plan.applied.iter().map(|c| c.key.as_str()).collect();
        assert_eq!(applied, ["log.level", "sandbox.deadline_ms", "sandbox.workers"]);
        let waiting: Vec<_> = plan.restart_required.iter().map(|c| c.key.as_str()).collect();
        assert_eq!(waiting, ["server.listen", "store.url"]);
        assert_eq!(
            plan.restart_required[1].to,
            Value::from("(hidden)"),
            "secrets stay hidden"
        );
        assert_eq!((effective.sandbox.workers, effective.sandbox.deadline_ms), (7, 75));
        assert_eq!(effective.server.listen, running.server.listen, "left unchanged");
        assert_eq!(effective.store.url, running.store.url);
        assert!(plan.touches("sandbox.") && !plan.touches("push."));
    }

    #[test]
    fn generated_secrets_are_not_changes() {
        let mut running = Settings::default();
        running.tests.secret = "generated-at-start".into();
        running.auth.admin_tokens = vec!["generated-token-0123456789".into()];
        let (plan, effective) = plan(&running, Settings::default());
        assert_eq!(plan, ReloadPlan::default());
        assert_eq!(effective.tests.secret, "generated-at-start");
    }
}
