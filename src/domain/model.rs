//! The data Vane is about: configs, versions, request metadata, release events.

use serde::{Deserialize, Serialize};

use super::health::ReportKind;
pub use super::meta::Meta;
use super::params::ParamSpec;
use super::rules::PlatformRules;

/// Whether a config answers its clients.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ConfigStatus {
    /// Served.
    Active,
    /// Refused with 403, as the original did; nothing else changes.
    Inactive,
}

impl ConfigStatus {
    /// As stored and sent.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Inactive => "inactive",
        }
    }

    /// The status `as_str` gave, if it is one.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "active" => Some(Self::Active),
            "inactive" => Some(Self::Inactive),
            _ => None,
        }
    }
}

/// The language of a version's code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Lang {
    /// Deterministic by construction, so its results may be memoized.
    Starlark,
    /// Run by Boa.
    Javascript,
}

impl Lang {
    /// As stored and sent.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Starlark => "starlark",
            Self::Javascript => "javascript",
        }
    }

    /// The language `as_str` gave, if it is one.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "starlark" => Some(Self::Starlark),
            "javascript" => Some(Self::Javascript),
            _ => None,
        }
    }
}

/// The stable version of a config.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Release {
    /// The version every device not in gray gets.
    pub code_id: String,
}

/// A version served to a share of the devices (`domain::gray`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Gray {
    /// The version in gray.
    pub code_id: String,
    /// The share of devices, 0 to 100, by their bucket.
    pub percentage: u8,
}

/// A named slot clients fetch by id. `revision` grows by one on every change
/// clients must see.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Config {
    /// Letters, digits, `-`, `_`, `.`, not `.` or `..` (`validate_new_config_id`).
    pub id: String,
    /// For operators.
    pub description: String,
    /// Whether clients are answered.
    pub status: ConfigStatus,
    /// What clients present to subscribe and report. Built into every app,
    /// so public: nothing that matters rests on it alone.
    pub secret: String,
    /// Grows by one on every change clients must see.
    pub revision: i64,
    /// The stable version, once one was released.
    pub release: Option<Release>,
    /// The gray version and its share, if any.
    pub gray: Option<Gray>,
    /// Unix milliseconds.
    pub created_at: i64,
    /// Unix milliseconds of the last change.
    pub updated_at: i64,
    /// The secret before the last rotation, accepted until
    /// `previous_secret_until` (unix ms) so apps can move to the new one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_secret: Option<String>,
    /// Unix milliseconds; 0 when there is no previous secret.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub previous_secret_until: i64,
    /// Every secret rotated away whose grace has not ended when the next
    /// rotation happened, newest first, at most `MAX_PREVIOUS_SECRETS`: each
    /// keeps its own grace however many rotations follow.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub previous_secrets: Vec<PreviousSecret>,
    /// Approvals a release, gray, rollback, status change or plan start
    /// needs before it applies; 0: none (four eyes off).
    #[serde(default)]
    pub approvals_required: u32,
}

/// The most previous secrets a config keeps; a rotation past it drops the
/// oldest at once (eight rotations within one grace is an emergency, and
/// the list is read on every secret check).
pub const MAX_PREVIOUS_SECRETS: usize = 8;

/// A secret rotated away, accepted until `until`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PreviousSecret {
    /// The secret.
    pub secret: String,
    /// Unix milliseconds when its grace ends.
    pub until: i64,
}

/// How a presented secret stands with a config.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecretStanding {
    /// The current secret.
    Current,
    /// A previous secret, accepted until this unix millisecond.
    Until(i64),
    /// Neither.
    Refused,
}

fn is_zero(n: &i64) -> bool {
    *n == 0
}

impl Config {
    /// Whether a client presenting `secret` at `now_ms` may subscribe or
    /// report: the current secret, or the previous one within its grace.
    pub fn accepts_secret(&self, secret: &str, now_ms: i64) -> bool {
        self.secret_standing(secret, now_ms) != SecretStanding::Refused
    }

    /// Whether `secret` is the current one, a previous one within its
    /// grace (and until when), or neither.
    pub fn secret_standing(&self, secret: &str, now_ms: i64) -> SecretStanding {
        if crate::secrets::equal(&self.secret, secret) {
            return SecretStanding::Current;
        }
        // A config read before the list existed holds only the newest.
        let legacy = self.previous_secrets.is_empty().then(|| PreviousSecret {
            secret: self.previous_secret.clone().unwrap_or_default(),
            until: self.previous_secret_until,
        });
        self.previous_secrets
            .iter()
            .chain(legacy.as_ref())
            .find(|p| now_ms < p.until && !p.secret.is_empty() && crate::secrets::equal(&p.secret, secret))
            .map_or(SecretStanding::Refused, |p| SecretStanding::Until(p.until))
    }

    /// The previous secrets after rotating the current one away with a
    /// grace ending at `until`: it first, then those still in their grace
    /// at `now_ms`, at most `MAX_PREVIOUS_SECRETS`.
    pub fn rotated_previous(&self, until: i64, now_ms: i64) -> Vec<PreviousSecret> {
        let legacy = self.previous_secrets.is_empty().then(|| PreviousSecret {
            secret: self.previous_secret.clone().unwrap_or_default(),
            until: self.previous_secret_until,
        });
        let kept = self
            .previous_secrets
            .iter()
            .chain(legacy.as_ref())
            .filter(|p| now_ms < p.until && !p.secret.is_empty())
            .cloned();
        std::iter::once(PreviousSecret {
            secret: self.secret.clone(),
            until,
        })
        .chain(kept)
        .take(MAX_PREVIOUS_SECRETS)
        .collect()
    }
}

/// One immutable version of a config's code, plus its mutable health fields.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Version {
    /// Its id, unique across configs.
    pub code_id: String,
    /// The config it belongs to.
    pub config_id: String,
    /// The language of `source`.
    pub lang: Lang,
    /// The body of a function of `p`, the request's params.
    pub source: String,
    /// Who may be served it (`domain::rules`).
    pub rules: Vec<PlatformRules>,
    /// The params a request must carry (`domain::params`).
    pub params: Vec<ParamSpec>,
    /// Reports that counted against it (`domain::health`).
    pub error_count: i64,
    /// Marked broken: by reports, or by hand; never served while marked,
    /// unless `still_served`.
    pub broken: bool,
    /// Broken by reports with no healthy earlier version to fall back to:
    /// served on (reports alone never take a config offline) until an
    /// operator marks it broken by hand, clears the mark or releases
    /// another version.
    #[serde(default)]
    pub still_served: bool,
    /// The operator who uploaded it.
    pub created_by: String,
    /// Unix milliseconds.
    pub created_at: i64,
}

/// Kinds of entries in the append-only release log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// The config was created.
    Created,
    /// A version became stable.
    Release,
    /// A version went to gray, or its share changed.
    Gray,
    /// Gray ended.
    GrayRemoved,
    /// The release went back to an earlier stable version (by hand, or by
    /// `reports` when the stable version broke).
    Rollback,
    /// The config was made active or inactive.
    Status,
    /// A version was marked broken (by hand, or by `reports`).
    Broken,
    /// A version's broken mark was cleared.
    Unbroken,
    /// The config's secret was replaced (the log never holds secrets).
    SecretRotated,
    /// A version was uploaded. Clients see nothing yet, so the revision
    /// stays; the log says who brought the code in.
    Uploaded,
    /// A rollout plan was paused by hand (its moves stop; gray stays).
    PlanPaused,
    /// A paused rollout plan was resumed by hand.
    PlanResumed,
    /// A rollout plan was aborted by hand (its gray, if any, is removed by a
    /// `gray_removed` event of its own).
    PlanAborted,
    /// The approvals a config's changes need were set (`approvals_required`).
    Approvals,
    /// A rollout plan was started through an approved change request.
    PlanStarted,
}

impl EventKind {
    /// As stored and sent.
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
            Self::Uploaded => "uploaded",
            Self::PlanPaused => "plan_paused",
            Self::PlanResumed => "plan_resumed",
            Self::PlanAborted => "plan_aborted",
            Self::Approvals => "approvals",
            Self::PlanStarted => "plan_started",
        }
    }

    /// The kind `as_str` gave, if it is one.
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
            Self::Uploaded,
            Self::PlanPaused,
            Self::PlanResumed,
            Self::PlanAborted,
            Self::Approvals,
            Self::PlanStarted,
        ]
        .into_iter()
        .find(|k| k.as_str() == s)
    }
}

/// One audit-log entry: who changed what, when, from what to what.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReleaseEvent {
    /// Grows with every event, across configs.
    pub id: i64,
    /// The config changed.
    pub config_id: String,
    /// The config's revision after the change.
    pub revision: i64,
    /// What changed.
    pub kind: EventKind,
    /// The operator's token name, or `reports`.
    pub actor: String,
    /// The changed part before (release, gray, status; or a version's mark).
    pub from: serde_json::Value,
    /// The changed part after.
    pub to: serde_json::Value,
    /// Published although stored tests failed (`force: true`).
    pub forced: bool,
    /// Unix milliseconds.
    pub created_at: i64,
    /// Why an automatic change happened: the evidence of a break by reports.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<serde_json::Value>,
}

/// A stored test of one version: run it with `meta` and `params`, expect
/// `expected`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TestCase {
    /// Its id (the original `GET /test/{test_id}` takes it).
    pub test_id: String,
    /// The config of its version.
    pub config_id: String,
    /// The version it tests.
    pub code_id: String,
    /// For operators.
    pub name: String,
    /// The request metadata it runs with.
    pub meta: Meta,
    /// The params it runs with (a JSON object).
    pub params: serde_json::Value,
    /// The result it must give, compared as JSON values.
    pub expected: serde_json::Value,
    /// Unix milliseconds.
    pub created_at: i64,
}

/// One error a client reported against a version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorReport {
    /// Grows with every report.
    pub id: i64,
    /// The config reported against.
    pub config_id: String,
    /// The version reported against.
    pub code_id: String,
    /// When the client saw it, as it says (unix seconds in the original).
    pub err_time: i64,
    /// What the client said, at most 8192 bytes.
    pub message: String,
    /// Unix milliseconds, by this service's clock.
    pub received_at: i64,
    /// What went wrong, as the reporter saw it.
    pub kind: ReportKind,
    /// `device:<id>`, or `address:<ip>` for the original's route.
    pub source: String,
    /// Whether it counted toward breaking the version (see `domain::health`).
    pub counted: bool,
}

/// Unix milliseconds now (0 if the clock is before 1970).
pub fn now_millis() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Why a config id was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigIdError {
    /// Empty or longer than 128 bytes.
    #[error("config id must be 1 to 128 characters, got {0}")]
    Length(usize),
    /// A character other than a letter, digit, `-`, `_` or `.`.
    #[error("config id `{0}` may contain only letters, digits, `-`, `_` and `.`")]
    Characters(String),
    /// `.` or `..`: a path segment clients and browsers resolve away.
    #[error(
        "config id `{0}` is not a clean path segment: `.` and `..` are resolved away by browsers and HTTP \
         clients that normalise paths, so no client could reach it"
    )]
    DotSegment(String),
}

/// Config ids appear in URLs and Redis keys: keep them plain.
pub fn validate_config_id(id: &str) -> Result<(), ConfigIdError> {
    if id.is_empty() || id.len() > 128 {
        return Err(ConfigIdError::Length(id.len()));
    }
    if !id
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
    {
        return Err(ConfigIdError::Characters(id.to_owned()));
    }
    Ok(())
}

/// The rule for a new id: `validate_config_id`, and a clean path segment
/// (`.` and `..` are not). Lookups keep the looser rule, so a config made
/// before this one still answers whoever can name it.
pub fn validate_new_config_id(id: &str) -> Result<(), ConfigIdError> {
    validate_config_id(id)?;
    if matches!(id, "." | "..") {
        return Err(ConfigIdError::DotSegment(id.to_owned()));
    }
    Ok(())
}

#[cfg(test)]
mod secret_tests {
    use super::*;

    #[test]
    fn each_previous_secret_keeps_its_grace_and_the_list_is_bounded() {
        let mut config = Config {
            id: "c".into(),
            description: String::new(),
            status: ConfigStatus::Active,
            secret: "s0".into(),
            revision: 1,
            release: None,
            gray: None,
            created_at: 0,
            updated_at: 0,
            previous_secret: None,
            previous_secret_until: 0,
            previous_secrets: Vec::new(),
            approvals_required: 0,
        };
        for i in 1..=10 {
            let now = i * 10;
            config.previous_secrets = config.rotated_previous(now + 1_000, now);
            config.secret = format!("s{i}");
        }
        assert_eq!(config.previous_secrets.len(), MAX_PREVIOUS_SECRETS);
        assert_eq!(config.secret_standing("s10", 100), SecretStanding::Current);
        assert_eq!(config.secret_standing("s9", 100), SecretStanding::Until(1_100));
        assert_eq!(config.secret_standing("s2", 100), SecretStanding::Until(1_030));
        // The two oldest were dropped.
        assert_eq!(config.secret_standing("s1", 100), SecretStanding::Refused);
        assert_eq!(config.secret_standing("s0", 100), SecretStanding::Refused);
        assert_eq!(config.secret_standing("s2", 1_030), SecretStanding::Refused);
        assert_eq!(config.secret_standing("s9", 1_050), SecretStanding::Until(1_100));
        // Ended graces are not carried into the next rotation.
        // s9 to s5 are still in theirs at 1050: five, and the one rotated away.
        assert_eq!(config.rotated_previous(3_000, 1_050).len(), 6);
    }
}
