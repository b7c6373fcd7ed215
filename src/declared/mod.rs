//! Configs as code: a directory of configs (`configs/<id>/config.toml` and
//! the source it names) is read here, tested offline with the server's own
//! engines, compared with a server and applied to it through the HTTP API as
//! an operator would, or written from a server. The words: a *declared*
//! config is what the directory says; the *remote* one is what the server has.

pub mod apply;
pub mod client;
pub mod commands;
pub mod export;
pub mod junit;
pub mod load;
pub mod offline;
pub mod plan;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::domain::identity::content_code_id;
use crate::domain::{Lang, params, rules};

/// What a directory says about one config.
#[derive(Debug, Clone)]
pub struct DeclaredConfig {
    /// The folder's name.
    pub id: String,
    /// `None`: leave the server's as it is.
    pub description: Option<String>,
    /// Active (served) or not.
    pub active: bool,
    /// The version the directory releases (or grays, or only uploads).
    pub version: DeclaredVersion,
    /// What becomes of `version`.
    pub release: Release,
    /// With `release = "gray"`: the stable version beside it, when the
    /// directory names one (`[stable]`); otherwise the server's is kept.
    pub stable: Option<DeclaredVersion>,
    /// `None`: leave the server's as it is.
    pub approvals_required: Option<u32>,
}

/// One version's content and its tests.
#[derive(Debug, Clone)]
pub struct DeclaredVersion {
    /// The source file, relative to the config's folder.
    pub file: String,
    /// Its language.
    pub lang: Lang,
    /// The file's text.
    pub source: String,
    /// Parameter schema, in the API's upload shape.
    pub params: Vec<Value>,
    /// Rules, in the API's upload shape.
    pub rules: Vec<Value>,
    /// Its test cases, in the file's order.
    pub tests: Vec<DeclaredTest>,
}

impl DeclaredVersion {
    /// The code id the server gives this content under `config_id` (a
    /// version is its content), or why the rules or schema are refused.
    pub fn code_id(&self, config_id: &str) -> Result<String, String> {
        let rules = rules::from_upload(self.rules.clone()).map_err(|e| format!("rules: {e}"))?;
        let params = params::from_upload(self.params.clone()).map_err(|e| format!("params: {e}"))?;
        Ok(content_code_id(config_id, self.lang, &self.source, &rules, &params))
    }
}

/// A stored test case as the directory writes it.
#[derive(Debug, Clone, PartialEq)]
pub struct DeclaredTest {
    /// For people.
    pub name: String,
    /// The request metadata it runs with.
    pub meta: TestMeta,
    /// The params it runs with (a table).
    pub params: Value,
    /// The result it must give (`expected`, or `expected_json` for what
    /// TOML cannot write, such as `null`).
    pub expected: Value,
}

/// A test's request metadata, with the names a fetch's `meta` has; any
/// other key is a mistake, so it is refused with its line.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TestMeta {
    /// The platform the rules pick.
    #[serde(default)]
    pub platform: String,
    /// The client's integer version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<i64>,
    /// The device.
    #[serde(default)]
    pub device_id: String,
    /// A semantic version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app_version: Option<String>,
}

impl TestMeta {
    /// As the server's tests carry it.
    pub fn to_json(&self) -> Value {
        serde_json::to_value(self).unwrap_or_default()
    }
}

/// What `apply` does with the declared version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Release {
    /// Every device is served it; no gray beside it.
    Stable,
    /// This share of devices is served it.
    Gray(u8),
    /// Uploaded with its tests, released by other means (a plan, by hand).
    None,
}

#[cfg(test)]
mod tests;
