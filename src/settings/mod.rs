//! Settings: `config.toml` merged with `VANE_SECTION__KEY` environment overrides,
//! validated once into typed values. A bad value stops start-up with a message
//! naming the key.

use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Deserializer, Serialize};

mod network;
mod ofrep;
mod oidc;
mod reports;
mod sandbox;
mod storage;
pub use network::{Push, Server};
pub use ofrep::{ClientToken, Ofrep};
pub use oidc::{CALLBACK_PATH, GroupGrant, Oidc};
pub use reports::Reports;
pub use sandbox::{Isolation, PausedJobs, Sandbox};
pub use storage::{Redis, Store};

#[derive(Debug, thiserror::Error)]
/// Why settings were refused; start-up stops with the message.
pub enum SettingsError {
    /// `--config` named a file that is not there.
    #[error("settings file {0} does not exist")]
    MissingFile(PathBuf),
    /// The file or an environment variable could not be read as settings.
    #[error("invalid settings: {0}")]
    Parse(String),
    /// A value out of its range, named by its key.
    #[error("invalid setting `{key}`: {reason}")]
    Invalid {
        /// `section.key`.
        key: &'static str,
        /// What the value must be.
        reason: String,
    },
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
/// Every setting, by section, as `config.toml` documents them.
pub struct Settings {
    /// `[server]`: the listener and request limits.
    pub server: Server,
    /// `[store]`: the database and how fetches wait on it.
    pub store: Store,
    /// `[redis]`: the shared cache and the change bus.
    pub redis: Redis,
    /// `[auth]`: admin tokens and the secret grace.
    pub auth: Auth,
    /// `[push]`: WebSocket subscribers.
    pub push: Push,
    /// `[tests]`: the original test route's secret.
    pub tests: Tests,
    /// `[reports]`: when client reports break a version.
    pub reports: Reports,
    /// `[sandbox]`: the evaluator pool and its limits.
    pub sandbox: Sandbox,
    /// `[playground]`: the playground routes.
    pub playground: Playground,
    /// `[ofrep]`: the OpenFeature routes and their client tokens.
    pub ofrep: Ofrep,
    /// `[log]`: level and format.
    pub log: Log,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
/// `[auth]`.
pub struct Auth {
    /// Entries are `name=token` or a bare token; an empty list makes the
    /// service generate one at first start.
    #[serde(deserialize_with = "string_or_list")]
    pub admin_tokens: Vec<String>,
    /// How long a config's old secret keeps working after a rotation.
    pub secret_grace_s: u64,
    /// `[auth.oidc]`: single sign-on for the console; none, token sign-in only.
    pub oidc: Option<Oidc>,
}

impl Default for Auth {
    fn default() -> Self {
        Self {
            admin_tokens: Vec::new(),
            secret_grace_s: 7 * 86_400,
            oidc: None,
        }
    }
}

impl Auth {
    /// `secret_grace_s`.
    pub fn secret_grace(&self) -> Duration {
        Duration::from_secs(self.secret_grace_s)
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
/// `[tests]`.
pub struct Tests {
    /// The `Secret` of the original `GET /test/{id}`.
    pub secret: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
/// `[playground]`.
pub struct Playground {
    /// The playground routes need no admin token.
    pub open: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
/// `[log]`.
pub struct Log {
    /// A tracing filter directive, e.g. `info` or `vane=debug,info`.
    pub level: String,
    /// `human` or `json`.
    pub format: String,
}

impl Default for Log {
    fn default() -> Self {
        Self {
            level: "info".into(),
            format: "human".into(),
        }
    }
}

impl Settings {
    /// Reads `path` (which must exist when `required`), applies environment
    /// overrides and validates the result.
    pub fn load(path: &Path, required: bool) -> Result<Self, SettingsError> {
        if required && !path.exists() {
            return Err(SettingsError::MissingFile(path.to_path_buf()));
        }
        let settings: Settings = Figment::from(Serialized::defaults(Settings::default()))
            .merge(Toml::file(path))
            // Only `VANE_SECTION__KEY` names are settings; other VANE_
            // variables (the tests' VANE_TEST_*, say) are not ours to refuse.
            .merge(
                Env::prefixed("VANE_")
                    .filter(|key| key.as_str().contains("__"))
                    .split("__"),
            )
            .extract()
            .map_err(|e| SettingsError::Parse(e.to_string()))?;
        settings.validate()?;
        Ok(settings)
    }

    /// Checks every value's range; the first one out names its key.
    pub fn validate(&self) -> Result<(), SettingsError> {
        let url = &self.store.url;
        let schemes = ["sqlite:", "postgres://", "postgresql://", "mysql://"];
        if !schemes.iter().any(|scheme| url.starts_with(scheme)) {
            return invalid(
                "store.url",
                "must start with sqlite:, postgres://, postgresql:// or mysql://",
            );
        }
        if self.store.max_connections == 0 {
            return invalid("store.max_connections", "must be at least 1");
        }
        if !(1..=60_000).contains(&self.store.wait_ms) {
            return invalid("store.wait_ms", "must be between 1 and 60000");
        }
        if !(10..=3_600_000).contains(&self.store.poll_ms) {
            return invalid("store.poll_ms", "must be between 10 and 3600000");
        }
        if self.store.revision_read_gap_ms > 1000 {
            return invalid("store.revision_read_gap_ms", "must be at most 1000");
        }
        if !(1..=60_000).contains(&self.sandbox.deadline_ms) {
            return invalid("sandbox.deadline_ms", "must be between 1 and 60000");
        }
        if self.sandbox.memory_mb < 64 {
            return invalid("sandbox.memory_mb", "must be at least 64");
        }
        if self.sandbox.workers > 1024 {
            return invalid("sandbox.workers", "must be at most 1024 (0 means one per core)");
        }
        if !(1..=256).contains(&self.sandbox.pipeline_depth) {
            return invalid("sandbox.pipeline_depth", "must be between 1 and 256");
        }
        if !(1..=60_000).contains(&self.sandbox.pipeline_budget_ms) {
            return invalid("sandbox.pipeline_budget_ms", "must be between 1 and 60000");
        }
        if self.sandbox.queue_bound == 0 {
            return invalid("sandbox.queue_bound", "must be at least 1");
        }
        if !(1..=60_000).contains(&self.sandbox.queue_wait_ms) {
            return invalid("sandbox.queue_wait_ms", "must be between 1 and 60000");
        }
        if self.sandbox.recycle_rss_mb > self.sandbox.memory_mb {
            return invalid("sandbox.recycle_rss_mb", "must not exceed sandbox.memory_mb");
        }
        if !self.sandbox.user.is_empty()
            && crate::confine::running_as_root()
            && self.sandbox.worker_identity().is_none()
        {
            return invalid("sandbox.user", "names no user on this machine");
        }
        if self.sandbox.code_cache_entries == 0 {
            return invalid("sandbox.code_cache_entries", "must be at least 1");
        }
        self.server.validate()?;
        if self.redis.enabled() && !self.redis.url.starts_with("redis://") && !self.redis.url.starts_with("rediss://") {
            return invalid("redis.url", "must start with redis:// or rediss:// (or be empty)");
        }
        if self.redis.ttl_s == 0 || self.redis.timeout_ms == 0 || self.redis.reconcile_interval_ms == 0 {
            return invalid(
                "redis.ttl_s",
                "redis ttl, timeout and reconcile interval must be positive",
            );
        }
        self.push.validate()?;
        self.reports.validate()?;
        self.ofrep.validate()?;
        if self.auth.secret_grace_s > 366 * 86_400 {
            return invalid("auth.secret_grace_s", "must be at most a year (31622400)");
        }
        if !matches!(self.log.format.as_str(), "human" | "json") {
            return invalid("log.format", "must be `human` or `json`");
        }
        if tracing_subscriber::EnvFilter::try_new(&self.log.level).is_err() {
            return invalid("log.level", "is not a valid filter (try `info` or `vane=debug`)");
        }
        if self.auth.admin_tokens.iter().any(|t| admin_token_parts(t).1.len() < 16) {
            return invalid("auth.admin_tokens", "every token must be at least 16 characters");
        }
        if let Some(oidc) = &self.auth.oidc {
            oidc.validate()?;
        }
        Ok(())
    }

    /// `server.call_timeout_ms`.
    pub fn call_timeout(&self) -> Duration {
        Duration::from_millis(self.server.call_timeout_ms)
    }
}

/// A value out of its range, named by its key, as a validation's answer.
fn invalid<T>(key: &'static str, reason: &str) -> Result<T, SettingsError> {
    Err(SettingsError::Invalid {
        key,
        reason: reason.into(),
    })
}

/// Splits a `name=token` entry; a bare token is named by its position.
pub fn admin_token_parts(entry: &str) -> (Option<&str>, &str) {
    match entry.split_once('=') {
        Some((name, token)) if !name.is_empty() => (Some(name), token),
        _ => (None, entry),
    }
}

/// Accepts `["a","b"]` from TOML and `a,b` from an environment variable.
fn string_or_list<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Either {
        One(String),
        Many(Vec<String>),
    }
    Ok(match Either::deserialize(d)? {
        Either::One(s) => s
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(String::from)
            .collect(),
        Either::Many(v) => v,
    })
}

#[cfg(test)]
// figment::Jail's closures must return figment's own (large) error.
#[allow(clippy::result_large_err)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        Settings::default().validate().unwrap();
    }

    #[test]
    fn the_shipped_config_toml_loads() {
        let path = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/config.toml"));
        let loaded = Settings::load(path, true).unwrap();
        assert_eq!(loaded.ofrep.max_bulk_flags, Ofrep::default().max_bulk_flags);
    }

    #[test]
    fn client_tokens_come_from_the_environment_as_config_toml_shows() {
        figment::Jail::expect_with(|jail| {
            let tokens = r#"[{name="web", token="web-client-token-0123456789", configs=["app-*"]}]"#;
            jail.set_env("VANE_OFREP__CLIENT_TOKENS", tokens);
            let loaded = Settings::load(Path::new("none.toml"), false).unwrap();
            assert_eq!(loaded.ofrep.client_tokens[0].name, "web");
            assert_eq!(loaded.ofrep.client_tokens[0].configs, ["app-*"]);
            Ok(())
        });
    }

    #[test]
    fn client_tokens_are_checked() {
        let token = |name: &str, token: &str, configs: &[&str]| ClientToken {
            name: name.into(),
            token: token.into(),
            configs: configs.iter().map(|c| c.to_string()).collect(),
        };
        let refused = |tokens: Vec<ClientToken>| {
            let mut s = Settings::default();
            s.ofrep.client_tokens = tokens;
            s.validate().unwrap_err().to_string()
        };
        let long = "0123456789abcdef";
        assert!(refused(vec![token("web", "short", &["a"])]).contains("16 characters"));
        assert!(refused(vec![token("web", long, &[])]).contains("name the configs"));
        assert!(refused(vec![token("web", long, &["a b"])]).contains("`a b`"));
        let twice = refused(vec![token("web", long, &["a"]), token("web", long, &["b"])]);
        assert!(
            twice.contains("ofrep.client_tokens") && twice.contains("name of its own"),
            "{twice}"
        );
    }

    #[test]
    fn store_urls_name_a_backend() {
        let check = |url: &str| {
            let mut s = Settings::default();
            s.store.url = url.into();
            s.validate().map_err(|e| e.to_string())
        };
        for url in [
            "sqlite://vane.db",
            "postgres://u@h/db",
            "postgresql://u@h/db",
            "mysql://u:p@h:3306/db",
        ] {
            assert!(check(url).is_ok(), "{url}");
        }
        let err = check("mariadb://u@h/db").unwrap_err();
        assert!(err.contains("store.url") && err.contains("mysql://"), "{err}");
    }

    #[test]
    fn trusted_proxies_are_ranges_and_a_bad_one_is_named() {
        let mut s = Settings::default();
        s.server.trusted_proxies = vec!["10.0.0.0/8".into(), "::1".into(), "192.168.1.7".into()];
        s.validate().unwrap();
        assert_eq!(s.server.trusted_proxy_ranges().unwrap().len(), 3);
        s.server.trusted_proxies.push("10.0.0.0/33".into());
        let err = s.validate().unwrap_err().to_string();
        assert!(
            err.contains("server.trusted_proxies") && err.contains("`10.0.0.0/33`"),
            "{err}"
        );
        figment::Jail::expect_with(|jail| {
            jail.set_env("VANE_SERVER__TRUSTED_PROXIES", "10.1.0.0/16, 127.0.0.1");
            let loaded = Settings::load(Path::new("none.toml"), false).unwrap();
            assert_eq!(loaded.server.trusted_proxies, ["10.1.0.0/16", "127.0.0.1"]);
            Ok(())
        });
    }

    #[test]
    fn bad_value_names_the_key() {
        let mut s = Settings::default();
        s.sandbox.deadline_ms = 0;
        let err = s.validate().unwrap_err().to_string();
        assert!(err.contains("sandbox.deadline_ms"), "{err}");
    }

    #[test]
    fn source_prefixes_and_the_storm_cap_are_checked() {
        let refused = |tweak: fn(&mut Settings)| {
            let mut s = Settings::default();
            tweak(&mut s);
            s.validate().unwrap_err().to_string()
        };
        assert!(refused(|s| s.reports.source_prefix_v4 = 33).contains("reports.source_prefix_v4"));
        assert!(refused(|s| s.reports.source_prefix_v4 = 4).contains("reports.source_prefix_v4"));
        assert!(refused(|s| s.reports.source_prefix_v6 = 129).contains("reports.source_prefix_v6"));
        assert!(refused(|s| s.reports.max_lookups = 0).contains("reports.max_lookups"));
        assert_eq!(
            Settings::default().reports.prefixes(),
            crate::domain::health::Prefixes { v4: 24, v6: 56 }
        );
    }

    #[test]
    fn oidc_comes_from_toml_or_the_environment_as_the_readme_shows() {
        figment::Jail::expect_with(|jail| {
            jail.create_file(
                "vane.toml",
                "[auth.oidc]\nissuer = \"https://id.example.com\"\nclient_id = \"vane\"\n\
                 redirect_url = \"https://vane.example.com/auth/callback\"\n\
                 [auth.oidc.groups]\nops = [{ role = \"publisher\", configs = [\"*\"] }]\n",
            )?;
            jail.set_env("VANE_AUTH__OIDC__CLIENT_SECRET", "from-the-environment");
            let loaded = Settings::load(Path::new("vane.toml"), true).unwrap();
            let oidc = loaded.auth.oidc.unwrap();
            assert_eq!(oidc.client_secret, "from-the-environment");
            assert_eq!(oidc.scopes, ["openid", "email", "profile"]);
            assert_eq!(oidc.session_ttl_s, 8 * 3600);
            assert_eq!(oidc.groups["ops"][0].role, "publisher");
            Ok(())
        });
        figment::Jail::expect_with(|jail| {
            jail.set_env("VANE_AUTH__OIDC__ISSUER", "http://127.0.0.1:9000");
            jail.set_env("VANE_AUTH__OIDC__CLIENT_ID", "vane");
            jail.set_env("VANE_AUTH__OIDC__REDIRECT_URL", "http://127.0.0.1:8080/auth/callback");
            jail.set_env("VANE_AUTH__OIDC__SCOPES", r#"["openid","email","profile","groups"]"#);
            jail.set_env(
                "VANE_AUTH__OIDC__GROUPS",
                r#"{ops=[{role="publisher",configs=["*"]}],support=[{role="viewer",configs=["*"]}]}"#,
            );
            let oidc = Settings::load(Path::new("none.toml"), false)
                .unwrap()
                .auth
                .oidc
                .unwrap();
            assert_eq!(oidc.groups.len(), 2);
            assert_eq!(oidc.scopes.len(), 4);
            Ok(())
        });
        figment::Jail::expect_with(|jail| {
            jail.create_file(
                "vane.toml",
                "[auth.oidc]\nissuer = \"https://id.example.com\"\nclient_id = \"vane\"\n\
                 redirect_url = \"https://vane.example.com/auth/callback\"\n\
                 [auth.oidc.groups]\nops = [{ role = \"owner\", configs = [\"*\"] }]\n",
            )?;
            let err = Settings::load(Path::new("vane.toml"), true).unwrap_err().to_string();
            assert!(err.contains("auth.oidc.groups") && err.contains("owner"), "{err}");
            Ok(())
        });
        assert!(Settings::default().auth.oidc.is_none());
    }

    #[test]
    fn toml_and_env_merge() {
        figment::Jail::expect_with(|jail| {
            jail.create_file("vane.toml", "[sandbox]\ndeadline_ms = 70\nworkers = 3\n")?;
            jail.set_env("VANE_SANDBOX__WORKERS", "5");
            jail.set_env("VANE_TEST_DATABASE_URL", "postgres://elsewhere/db");
            jail.set_env(
                "VANE_AUTH__ADMIN_TOKENS",
                "ops=aaaaaaaaaaaaaaaaaaaa, bbbbbbbbbbbbbbbbbbbb",
            );
            let s = Settings::load(Path::new("vane.toml"), true).unwrap();
            assert_eq!(s.sandbox.deadline_ms, 70);
            assert_eq!(s.sandbox.workers, 5);
            assert_eq!(
                s.auth.admin_tokens,
                vec!["ops=aaaaaaaaaaaaaaaaaaaa", "bbbbbbbbbbbbbbbbbbbb"]
            );
            Ok(())
        });
    }

    #[test]
    fn type_error_names_the_key() {
        figment::Jail::expect_with(|jail| {
            jail.set_env("VANE_SANDBOX__DEADLINE_MS", "soon");
            let err = Settings::load(Path::new("none.toml"), false)
                .unwrap_err()
                .to_string()
                .to_lowercase();
            assert!(err.contains("sandbox.deadline_ms"), "{err}");
            Ok(())
        });
    }

    #[test]
    fn unknown_key_is_refused() {
        figment::Jail::expect_with(|jail| {
            jail.create_file("vane.toml", "[sandbox]\ndeadline = 70\n")?;
            let err = Settings::load(Path::new("vane.toml"), true).unwrap_err().to_string();
            assert!(err.contains("deadline"), "{err}");
            Ok(())
        });
    }
}
