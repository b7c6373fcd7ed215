//! `watch.toml`: the agent's resources, each a config rendered into a file.

use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::Figment;
use figment::providers::{Format, Toml};
use serde::Deserialize;

use crate::domain::Meta;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
/// A `vane watch` configuration file.
pub struct AgentConfig {
    /// Serve counters at `http://<metrics_listen>/metrics`; none if unset.
    #[serde(default)]
    pub metrics_listen: Option<std::net::SocketAddr>,
    #[serde(rename = "resource")]
    /// The configs to render, each into its own file.
    pub resources: Vec<Resource>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
/// One config rendered into one file.
pub struct Resource {
    /// Names the resource in logs and counters; defaults to the config id.
    #[serde(default)]
    pub name: String,
    /// Vane's base URL, e.g. `http://127.0.0.1:8080`.
    pub server: String,
    /// The config to fetch.
    pub config_id: String,
    /// The config's client secret.
    pub secret: String,
    #[serde(default)]
    /// Who the agent is to Vane (platform, version, device id).
    pub meta: Meta,
    #[serde(default = "empty_object")]
    /// The parameters sent with every fetch.
    pub params: serde_json::Value,
    /// A minijinja template, inline or from `template_file`; the result is
    /// its context (an object's keys at the top level, and `result`).
    #[serde(default)]
    pub template: Option<String>,
    #[serde(default)]
    /// A file holding the template, read at start.
    pub template_file: Option<PathBuf>,
    /// The file written, atomically, when the result changes.
    pub destination: PathBuf,
    /// Octal, e.g. "0644".
    #[serde(default = "default_mode")]
    pub mode: String,
    /// Run on the candidate file before it replaces the destination; `{}` in
    /// the command (and `$VANE_CANDIDATE`) is the candidate's path.
    #[serde(default)]
    pub check: Option<String>,
    /// Run after the destination changed, killed after `reload_timeout_ms`.
    #[serde(default)]
    pub reload: Option<String>,
    #[serde(default = "default_reload_timeout")]
    /// How long `reload` may run before it is killed.
    pub reload_timeout_ms: u64,
    /// Notices within this window are rendered once.
    #[serde(default = "default_debounce")]
    pub debounce_ms: u64,
}

fn empty_object() -> serde_json::Value {
    serde_json::Value::Object(Default::default())
}

fn default_mode() -> String {
    "0644".into()
}

fn default_reload_timeout() -> u64 {
    10_000
}

fn default_debounce() -> u64 {
    200
}

impl AgentConfig {
    /// Reads and checks the file, naming the resource and key at fault.
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let mut config: Self = Figment::from(Toml::file_exact(path))
            .extract()
            .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        anyhow::ensure!(
            !config.resources.is_empty(),
            "{}: no [[resource]] entries",
            path.display()
        );
        let base = path.parent().unwrap_or(Path::new("."));
        for (i, resource) in config.resources.iter_mut().enumerate() {
            if resource.name.is_empty() {
                resource.name = resource.config_id.clone();
            }
            let at = format!("resource {} ({})", i + 1, resource.name);
            anyhow::ensure!(
                resource.server.starts_with("http://") || resource.server.starts_with("https://"),
                "{at}: `server` must be an http:// or https:// URL"
            );
            resource.server = resource.server.trim_end_matches('/').to_owned();
            anyhow::ensure!(resource.params.is_object(), "{at}: `params` must be a table");
            if let Some(file) = &resource.template_file {
                let file = base.join(file);
                let text = std::fs::read_to_string(&file)
                    .map_err(|e| anyhow::anyhow!("{at}: template_file {}: {e}", file.display()))?;
                resource.template = Some(text);
            }
            let template = resource
                .template
                .as_deref()
                .ok_or_else(|| anyhow::anyhow!("{at}: needs `template` or `template_file`"))?;
            super::render::check_template(template).map_err(|e| anyhow::anyhow!("{at}: {e}"))?;
            resource.file_mode().map_err(|e| anyhow::anyhow!("{at}: {e}"))?;
            anyhow::ensure!(
                resource.reload_timeout_ms > 0,
                "{at}: `reload_timeout_ms` must be positive"
            );
        }
        Ok(config)
    }
}

impl Resource {
    /// The destination's permission bits, from the octal `mode`.
    pub fn file_mode(&self) -> Result<u32, String> {
        u32::from_str_radix(self.mode.trim_start_matches("0o"), 8)
            .ok()
            .filter(|m| *m <= 0o7777)
            .ok_or_else(|| format!("`mode` {:?} is not an octal file mode", self.mode))
    }

    /// `reload_timeout_ms` as a duration.
    pub fn reload_timeout(&self) -> Duration {
        Duration::from_millis(self.reload_timeout_ms)
    }

    /// `debounce_ms` as a duration.
    pub fn debounce(&self) -> Duration {
        Duration::from_millis(self.debounce_ms)
    }
}
