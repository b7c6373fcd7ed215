//! The data Vane is about: configs, versions, request metadata, release events.

use serde::{Deserialize, Serialize};

use super::health::ReportKind;
pub use super::meta::Meta;
use super::params::ParamSpec;
use super::rules::PlatformRules;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ConfigStatus {
    Active,
    Inactive,
}

impl ConfigStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Inactive => "inactive",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "active" => Some(Self::Active),
            "inactive" => Some(Self::Inactive),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Lang {
    Starlark,
    Javascript,
}

impl Lang {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Starlark => "starlark",
            Self::Javascript => "javascript",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "starlark" => Some(Self::Starlark),
            "javascript" => Some(Self::Javascript),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Release {
    pub code_id: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Gray {
    pub code_id: String,
    pub percentage: u8,
}

/// A named slot clients fetch by id. `revision` grows by one on every change
/// clients must see.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Config {
    pub id: String,
    pub description: String,
    pub status: ConfigStatus,
    pub secret: String,
    pub revision: i64,
    pub release: Option<Release>,
    pub gray: Option<Gray>,
    pub created_at: i64,
    pub updated_at: i64,
    /// The secret before the last rotation, accepted until
    /// `previous_secret_until` (unix ms) so apps can move to the new one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_secret: Option<String>,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub previous_secret_until: i64,
}

fn is_zero(n: &i64) -> bool {
    *n == 0
}

impl Config {
    /// Whether a client presenting `secret` at `now_ms` may subscribe or
    /// report: the current secret, or the previous one within its grace.
    pub fn accepts_secret(&self, secret: &str, now_ms: i64) -> bool {
        crate::secrets::equal(&self.secret, secret)
            || (now_ms < self.previous_secret_until
                && self
                    .previous_secret
                    .as_deref()
                    .is_some_and(|previous| crate::secrets::equal(previous, secret)))
    }
}

/// One immutable version of a config's code, plus its mutable health fields.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Version {
    pub code_id: String,
    pub config_id: String,
    pub lang: Lang,
    pub source: String,
    pub rules: Vec<PlatformRules>,
    pub params: Vec<ParamSpec>,
    pub error_count: i64,
    pub broken: bool,
    pub created_by: String,
    pub created_at: i64,
}

/// Kinds of entries in the append-only release log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    Created,
    Release,
    Gray,
    GrayRemoved,
    Rollback,
    Status,
    Broken,
    Unbroken,
    SecretRotated,
}

impl EventKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Created => "created",
            Self::Release => "release",
            Self::Gray => "gray",
            Self::GrayRemoved => "gray_removed",
            Self::Rollback => "rollback",
            Self::Status => "status",
            Self::Broken => "broken",
            Self::Unbroken => "unbroken",
            Self::SecretRotated => "secret_rotated",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [
            Self::Created,
            Self::Release,
            Self::Gray,
            Self::GrayRemoved,
            Self::Rollback,
            Self::Status,
            Self::Broken,
            Self::Unbroken,
            Self::SecretRotated,
        ]
        .into_iter()
        .find(|k| k.as_str() == s)
    }
}

/// One audit-log entry: who changed what, when, from what to what.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReleaseEvent {
    pub id: i64,
    pub config_id: String,
    pub revision: i64,
    pub kind: EventKind,
    pub actor: String,
    pub from: serde_json::Value,
    pub to: serde_json::Value,
    pub forced: bool,
    pub created_at: i64,
    /// Why an automatic change happened: the evidence of a break by reports.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<serde_json::Value>,
}

/// A stored test of one version: run it with `meta` and `params`, expect
/// `expected`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TestCase {
    pub test_id: String,
    pub config_id: String,
    pub code_id: String,
    pub name: String,
    pub meta: Meta,
    pub params: serde_json::Value,
    pub expected: serde_json::Value,
    pub created_at: i64,
}

/// One error a client reported against a version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorReport {
    pub id: i64,
    pub config_id: String,
    pub code_id: String,
    /// When the client saw it, as it says (unix seconds in the original).
    pub err_time: i64,
    pub message: String,
    pub received_at: i64,
    pub kind: ReportKind,
    /// `device:<id>`, or `address:<ip>` for the original's route.
    pub source: String,
    /// Whether it counted toward breaking the version (see `domain::health`).
    pub counted: bool,
}

pub fn now_millis() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Config ids appear in URLs and Redis keys: keep them plain.
pub fn validate_config_id(id: &str) -> Result<(), String> {
    if id.is_empty() || id.len() > 128 {
        return Err("config id must be 1 to 128 characters".into());
    }
    if !id
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
    {
        return Err(format!(
            "config id `{id}` may contain only letters, digits, `-`, `_` and `.`"
        ));
    }
    Ok(())
}
