//! `watch.toml`: the agent's resources, each one or more configs rendered
//! into a file.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::Figment;
use figment::providers::{Format, Toml};
use serde::{Deserialize, Deserializer};

use super::exec::{Exec, ExecError};
use super::owner::{Owner, OwnerError};
use super::render::TemplateError;
use crate::domain::Meta;

/// What is wrong with one `[[resource]]`; `AgentConfig::load` names the
/// resource.
#[derive(Debug, thiserror::Error)]
pub enum ResourceError {
    /// `server` is no http(s) URL.
    #[error("`server` must be an http:// or https:// URL")]
    Server,
    /// Nothing to fetch.
    #[error("needs `config_id`, a `configs` table, or a `token` to read services with")]
    NoConfig,
    /// A resource that reads services only, with no name.
    #[error("a resource with no `config_id` needs a `name`")]
    NoName,
    /// `params` or `defaults` is not a table.
    #[error("`params` and `defaults` must be tables")]
    NotTables,
    /// A config fetched without a secret.
    #[error("config {0:?} needs a `secret`")]
    NoSecret(String),
    /// A config's own `params` is not a table.
    #[error("config {0:?}: `params` must be a table")]
    ParamsNotTable(String),
    /// `template_file` cannot be read.
    #[error("template_file {path}: {error}")]
    TemplateFile {
        /// The file, resolved against `watch.toml`'s folder.
        path: String,
        /// Why it cannot be read.
        error: std::io::Error,
    },
    /// Neither `template` nor `template_file`.
    #[error("needs `template` or `template_file`")]
    NoTemplate,
    /// The template does not compile.
    #[error(transparent)]
    Template(#[from] TemplateError),
    /// `destination` is a folder, or names none.
    #[error("`destination` {0} must name a file")]
    Destination(String),
    /// `mode` is not octal permission bits.
    #[error("`mode` {0:?} is not an octal file mode")]
    Mode(String),
    /// `reload_timeout_ms` is 0.
    #[error("`reload_timeout_ms` must be positive")]
    ReloadTimeout,
    /// `backup` names a folder that is not there.
    #[error("`backup` directory {0} does not exist")]
    BackupDir(String),
    /// `keep_candidate` without anywhere to keep it.
    #[error("`keep_candidate` keeps a rejected file where the backups go: set `backup`")]
    KeepCandidate,
    /// `user` or `group` names no one here.
    #[error(transparent)]
    Owner(#[from] OwnerError),
    /// The resource's own `[resource.exec]` cannot run.
    #[error("[resource.exec]: {0}")]
    Exec(ExecError),
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
/// A `vane watch` configuration file.
pub struct AgentConfig {
    /// Serve counters at `http://<metrics_listen>/metrics`; none if unset.
    #[serde(default)]
    pub metrics_listen: Option<std::net::SocketAddr>,
    /// Environment variables templates may read with `env("NAME")`; any
    /// other name is a render error, so a template cannot leak the agent's
    /// environment into a file.
    #[serde(default)]
    pub env: Vec<String>,
    /// A child the agent supervises (consul-template's exec mode).
    #[serde(default)]
    pub exec: Option<Exec>,
    #[serde(rename = "resource", default)]
    /// The files to render.
    pub resources: Vec<Resource>,
    /// Instances this agent registers in the service registry.
    #[serde(rename = "register", default)]
    pub registrations: Vec<super::register::Register>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
/// One file rendered from one or more configs.
pub struct Resource {
    /// Names the resource in logs and counters; defaults to the config id.
    #[serde(default)]
    pub name: String,
    /// Vane's base URL, e.g. `http://127.0.0.1:8080`.
    pub server: String,
    /// The config whose result is the template's context (its keys at the
    /// top level, and `result`); optional when `configs` names others.
    #[serde(default)]
    pub config_id: String,
    /// That config's client secret (the default for `configs` too).
    #[serde(default)]
    pub secret: String,
    /// A token whose grant covers the registry services the template reads
    /// with `service("name")` (role viewer); needed only for services.
    #[serde(default)]
    pub token: Option<String>,
    #[serde(default)]
    /// Who the agent is to Vane (platform, version, device id).
    pub meta: Meta,
    #[serde(default = "empty_object")]
    /// The parameters sent with every fetch (the default for `configs` too).
    pub params: serde_json::Value,
    /// More configs, each seen by the template under its name here.
    #[serde(default)]
    pub configs: BTreeMap<String, Source>,
    /// Values the template sees when no config's result has them.
    #[serde(default = "empty_object")]
    pub defaults: serde_json::Value,
    /// A minijinja template, inline or from `template_file`.
    #[serde(default)]
    pub template: Option<String>,
    #[serde(default)]
    /// A file holding the template, read at start and on SIGHUP.
    pub template_file: Option<PathBuf>,
    /// The file written, atomically, when its content changes.
    pub destination: PathBuf,
    /// Octal, e.g. "0644".
    #[serde(default = "default_mode")]
    pub mode: String,
    /// The written file's owner, a name or a number; unchanged if unset.
    #[serde(default)]
    pub user: Option<String>,
    /// Its group, a name or a number.
    #[serde(default)]
    pub group: Option<String>,
    /// Where the previous file is kept: "none", "beside" (`<file>.bak`), or
    /// a directory. Not beside by default: a directory loaded by a glob
    /// (nginx's `include conf.d/*;`) would load the backup too.
    #[serde(default)]
    pub backup: Backup,
    /// Keep a candidate the check or the reload refused as
    /// `<file>.rejected`, where the backups go.
    #[serde(default)]
    pub keep_candidate: bool,
    /// Run on the candidate file before it replaces the destination; `{}` in
    /// the command (and `$VANE_CANDIDATE`) is the candidate's path.
    #[serde(default)]
    pub check: Option<String>,
    /// Run after the destination changed, killed after `reload_timeout_ms`.
    #[serde(default)]
    pub reload: Option<String>,
    #[serde(default = "default_reload_timeout")]
    /// How long `check` or `reload` may run before it is killed.
    pub reload_timeout_ms: u64,
    /// Notices within this window are rendered once.
    #[serde(default = "default_debounce")]
    pub debounce_ms: u64,
    /// A child that reads only this resource's file, supervised with it
    /// (`[resource.exec]`, as the agent's `[exec]`).
    #[serde(default)]
    pub exec: Option<Exec>,
    /// The agent's `env` list, copied here so a change to it restarts the
    /// resources on SIGHUP.
    #[serde(skip)]
    pub allowed_env: Vec<String>,
    /// `user` and `group` as numbers, resolved at load.
    #[serde(skip)]
    pub owner: Owner,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
/// A config a resource reads besides (or instead of) its `config_id`.
pub struct Source {
    /// The config.
    pub config_id: String,
    /// Its secret; the resource's when empty.
    #[serde(default)]
    pub secret: String,
    /// Its params; the resource's when unset.
    #[serde(default)]
    pub params: Option<serde_json::Value>,
}

/// A config as one fetch needs it.
#[derive(Debug, Clone, PartialEq)]
pub struct Fetch<'a> {
    /// The template variable it fills; `None` for the resource's own config.
    pub name: Option<&'a str>,
    /// The config.
    pub config_id: &'a str,
    /// Its secret.
    pub secret: &'a str,
    /// The params sent.
    pub params: &'a serde_json::Value,
}

#[derive(Debug, Clone, Default, PartialEq)]
/// Where the previous file is kept.
pub enum Backup {
    /// Nowhere on disk (it is held in memory for a failed reload).
    #[default]
    None,
    /// `<file>.bak` next to it.
    Beside,
    /// `<dir>/<file>.bak`.
    Dir(PathBuf),
}

impl<'de> Deserialize<'de> for Backup {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Ok(match text.as_str() {
            "none" | "" => Backup::None,
            "beside" => Backup::Beside,
            dir => Backup::Dir(PathBuf::from(dir)),
        })
    }
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
            !config.resources.is_empty() || !config.registrations.is_empty(),
            "{}: no [[resource]] or [[register]] entries",
            path.display()
        );
        let base = path.parent().unwrap_or(Path::new("."));
        let mut names = std::collections::HashSet::new();
        for (i, resource) in config.resources.iter_mut().enumerate() {
            if resource.name.is_empty() {
                resource.name = resource.config_id.clone();
            }
            let at = format!("resource {} ({})", i + 1, resource.name);
            resource
                .prepare(base, &config.env)
                .map_err(|e| anyhow::anyhow!("{at}: {e}"))?;
            anyhow::ensure!(
                names.insert(resource.name.clone()),
                "{at}: another resource has the name {:?}; give each its own `name`",
                resource.name
            );
        }
        for (i, register) in config.registrations.iter().enumerate() {
            if let Some(problem) = register.problem() {
                anyhow::bail!(
                    "{}: register {} ({}): {problem}",
                    path.display(),
                    i + 1,
                    register.service
                );
            }
        }
        if let Some(exec) = &mut config.exec {
            exec.prepare(&names)
                .map_err(|e| anyhow::anyhow!("{}: [exec]: {e}", path.display()))?;
        }
        Ok(config)
    }
}

impl Resource {
    /// Checks the resource and fills in what is derived from it.
    fn prepare(&mut self, base: &Path, env: &[String]) -> Result<(), ResourceError> {
        if !(self.server.starts_with("http://") || self.server.starts_with("https://")) {
            return Err(ResourceError::Server);
        }
        self.server = self.server.trim_end_matches('/').to_owned();
        if self.config_id.is_empty() && self.configs.is_empty() && self.token.is_none() {
            return Err(ResourceError::NoConfig);
        }
        if self.name.is_empty() {
            return Err(ResourceError::NoName);
        }
        if !self.params.is_object() || !self.defaults.is_object() {
            return Err(ResourceError::NotTables);
        }
        for fetch in self.fetches() {
            if fetch.secret.is_empty() {
                return Err(ResourceError::NoSecret(fetch.config_id.to_owned()));
            }
            if !fetch.params.is_object() {
                return Err(ResourceError::ParamsNotTable(fetch.config_id.to_owned()));
            }
        }
        if let Some(file) = &self.template_file {
            let file = base.join(file);
            let text = std::fs::read_to_string(&file).map_err(|error| ResourceError::TemplateFile {
                path: file.display().to_string(),
                error,
            })?;
            self.template = Some(text);
            self.template_file = Some(file);
        }
        let template = self.template.as_deref().ok_or(ResourceError::NoTemplate)?;
        super::render::check_template(&self.template_name(), template)?;
        if self.destination.file_name().is_none() || self.destination.is_dir() {
            return Err(ResourceError::Destination(self.destination.display().to_string()));
        }
        self.file_mode()?;
        if self.reload_timeout_ms == 0 {
            return Err(ResourceError::ReloadTimeout);
        }
        if let Backup::Dir(dir) = &self.backup {
            let dir = base.join(dir);
            if !dir.is_dir() {
                return Err(ResourceError::BackupDir(dir.display().to_string()));
            }
            self.backup = Backup::Dir(dir);
        }
        if self.keep_candidate && self.backup == Backup::None {
            return Err(ResourceError::KeepCandidate);
        }
        self.owner = Owner::resolve(self.user.as_deref(), self.group.as_deref())?;
        if let Some(exec) = &mut self.exec {
            exec.prepare(&[self.name.clone()].into()).map_err(ResourceError::Exec)?;
        }
        self.allowed_env = env.to_vec();
        Ok(())
    }

    /// The configs this resource fetches, its own first.
    pub fn fetches(&self) -> Vec<Fetch<'_>> {
        let own = (!self.config_id.is_empty()).then(|| Fetch {
            name: None,
            config_id: &self.config_id,
            secret: &self.secret,
            params: &self.params,
        });
        let named = self.configs.iter().map(|(name, source)| Fetch {
            name: Some(name),
            config_id: &source.config_id,
            secret: if source.secret.is_empty() {
                &self.secret
            } else {
                &source.secret
            },
            params: source.params.as_ref().unwrap_or(&self.params),
        });
        own.into_iter().chain(named).collect()
    }

    /// How errors name the template: its file, or the resource.
    pub fn template_name(&self) -> String {
        match &self.template_file {
            Some(file) => file.display().to_string(),
            None => format!("resource {}", self.name),
        }
    }

    /// The destination's permission bits, from the octal `mode`.
    pub fn file_mode(&self) -> Result<u32, ResourceError> {
        u32::from_str_radix(self.mode.trim_start_matches("0o"), 8)
            .ok()
            .filter(|m| *m <= 0o7777)
            .ok_or_else(|| ResourceError::Mode(self.mode.clone()))
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
