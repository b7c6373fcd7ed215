//! Targeting rules in the original JSON shape: per platform, an OR of AND-groups
//! of conditions on request metadata. Besides the original integer comparison
//! on `version`, a condition can compare `app_version` as a semantic version,
//! test `device_id` (allow and deny lists), and use `in` / `not_in` with a
//! list. An entry for platform `*` applies to every platform, on top of the
//! platform's own entry. Rules are checked when a version is uploaded, so a
//! stored rule can never fail at request time.

use serde::{Deserialize, Serialize};

use super::meta::Meta;

mod upload;

pub use upload::{RawCondition, RawPlatformRules, from_upload, parse_semver, validate};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("rule {entry} ({platform}), group {group}, condition {condition}: {reason}")]
/// A rule that failed validation, located by entry, group and condition.
pub struct RuleError {
    /// The platform entry's index.
    pub entry: usize,
    /// The platform entry's platform.
    pub platform: String,
    /// The AND-group's index.
    pub group: usize,
    /// The condition's index in its group.
    pub condition: usize,
    /// What is wrong with it.
    pub reason: RuleProblem,
}

/// What is wrong with one uploaded rule entry or condition.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RuleProblem {
    /// Its JSON has the wrong shape (a misspelt key, a missing value).
    #[error("{0}")]
    Malformed(String),
    /// An entry without a platform.
    #[error("platform must not be empty")]
    EmptyPlatform,
    /// Two entries for one platform.
    #[error("platform appears more than once")]
    RepeatedPlatform,
    /// A `field` no rule compares.
    #[error("unknown field `{0}` (known: version, app_version, device_id)")]
    UnknownField(String),
    /// A `compare` no rule knows.
    #[error("unknown operator `{0}` (known: < <= = != > >= in not_in)")]
    UnknownOperator(String),
    /// An ordering of device ids.
    #[error("operator `{0}` does not apply to device_id (use = != in not_in)")]
    NotForDeviceId(String),
    /// `in` or `not_in` without a list.
    #[error("`{0}` needs a non-empty list of values")]
    NeedsList(String),
    /// A list where one value is compared.
    #[error("`{0}` compares with one value, not a list")]
    NeedsOne(String),
    /// A `version` value that is no integer (the value's JSON).
    #[error("value {0} is not an integer")]
    NotInteger(String),
    /// An `app_version` value that is no semantic version.
    #[error("value {0} is not a semantic version such as \"2.1.0\"")]
    NotSemver(String),
    /// A `device_id` value that is no string.
    #[error("value {0} is not a string")]
    NotText(String),
}

/// The platform entry that applies to every request.
const ANY_PLATFORM: &str = "*";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
/// A comparison, as uploaded in `compare`.
pub enum Op {
    /// `<`
    Lt,
    /// `<=`
    Le,
    /// `==`
    Eq,
    /// `!=`
    Ne,
    /// `>`
    Gt,
    /// `>=`
    Ge,
    /// `in`: the value is one of a list.
    In,
    /// `not_in`: the value is none of a list.
    NotIn,
}

impl Op {
    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "<" => Self::Lt,
            "<=" => Self::Le,
            "=" | "==" => Self::Eq,
            "!=" => Self::Ne,
            ">" => Self::Gt,
            ">=" => Self::Ge,
            "in" => Self::In,
            "not_in" => Self::NotIn,
            _ => return None,
        })
    }

    fn as_str(self) -> &'static str {
        match self {
            Self::Lt => "<",
            Self::Le => "<=",
            Self::Eq => "=",
            Self::Ne => "!=",
            Self::Gt => ">",
            Self::Ge => ">=",
            Self::In => "in",
            Self::NotIn => "not_in",
        }
    }

    fn is_list(self) -> bool {
        matches!(self, Self::In | Self::NotIn)
    }

    fn compares(self, ordering: std::cmp::Ordering) -> bool {
        use std::cmp::Ordering::*;
        match self {
            Self::Lt => ordering == Less,
            Self::Le => ordering != Greater,
            Self::Eq => ordering == Equal,
            Self::Ne => ordering != Equal,
            Self::Gt => ordering == Greater,
            Self::Ge => ordering != Less,
            Self::In | Self::NotIn => false,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
/// The request field a condition reads.
pub enum Field {
    /// `meta.version`, an integer (the original rule).
    Version,
    /// `meta.app_version`, a semantic version string such as "2.1.0".
    AppVersion,
    /// `meta.device_id`.
    DeviceId,
}

impl Field {
    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "version" => Self::Version,
            "app_version" => Self::AppVersion,
            "device_id" => Self::DeviceId,
            _ => return None,
        })
    }

    fn as_str(self) -> &'static str {
        match self {
            Self::Version => "version",
            Self::AppVersion => "app_version",
            Self::DeviceId => "device_id",
        }
    }
}

/// What a condition compares against, typed by its field.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Operand {
    Int(Vec<i64>),
    Semver(Vec<semver::Version>),
    Text(Vec<String>),
}

/// One validated condition. Stored in the uploaded shape (`{"field",
/// "compare", "value"}`, integers as strings as the original clients send
/// them) and validated again when read back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "RawCondition", into = "RawCondition")]
pub struct Condition {
    field: Field,
    compare: Op,
    value: Operand,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
/// The rules for one platform (or `*` for any).
pub struct PlatformRules {
    /// The platform it applies to, or `*`.
    pub platform: String,
    /// OR of AND-groups; an empty list places no constraint.
    pub rules: Vec<Vec<Condition>>,
}

/// True when the request's metadata passes the rules for its platform and
/// the rules for every platform (`*`). A platform without an entry is allowed.
pub fn allows(rules: &[PlatformRules], meta: &Meta) -> bool {
    let entry_allows = |platform: &str| {
        rules.iter().find(|r| r.platform == platform).is_none_or(|entry| {
            entry.rules.is_empty() || entry.rules.iter().any(|group| group.iter().all(|c| c.holds(meta)))
        })
    };
    entry_allows(ANY_PLATFORM) && entry_allows(&meta.platform)
}

/// True when some rule applies to the request: a non-empty entry for its
/// platform or for every platform. An admitted request it applies to was
/// targeted, not merely let through.
pub fn constrains(rules: &[PlatformRules], meta: &Meta) -> bool {
    rules
        .iter()
        .any(|r| !r.rules.is_empty() && (r.platform == ANY_PLATFORM || r.platform == meta.platform))
}

impl Condition {
    fn holds(&self, meta: &Meta) -> bool {
        match &self.value {
            Operand::Int(values) => meta.version.is_some_and(|v| self.matches(&v, values)),
            Operand::Semver(values) => meta
                .app_version
                .as_deref()
                .and_then(parse_semver)
                .is_some_and(|v| self.matches(&v, values)),
            Operand::Text(values) => self.matches(&meta.device_id, values),
        }
    }

    fn matches<T: Ord>(&self, actual: &T, values: &[T]) -> bool {
        match self.compare {
            Op::In => values.contains(actual),
            Op::NotIn => !values.contains(actual),
            op => values.first().is_some_and(|v| op.compares(actual.cmp(v))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(v: serde_json::Value) -> Result<Vec<PlatformRules>, RuleError> {
        validate(serde_json::from_value(v).unwrap())
    }

    fn meta(platform: &str, version: Option<i64>) -> Meta {
        Meta {
            platform: platform.into(),
            version,
            device_id: "d".into(),
            app_version: None,
        }
    }

    fn app(platform: &str, app_version: &str, device_id: &str) -> Meta {
        Meta {
            platform: platform.into(),
            version: None,
            device_id: device_id.into(),
            app_version: Some(app_version.into()),
        }
    }

    #[test]
    fn or_of_and_groups() {
        let rules = parse(json!([{"platform": "iphone", "rules": [
            [{"field": "version", "compare": ">=", "value": "10"}, {"field": "version", "compare": "<", "value": 20}],
            [{"field": "version", "compare": "=", "value": "42"}]
        ]}]))
        .unwrap();
        assert!(allows(&rules, &meta("iphone", Some(10))));
        assert!(allows(&rules, &meta("iphone", Some(19))));
        assert!(!allows(&rules, &meta("iphone", Some(20))));
        assert!(allows(&rules, &meta("iphone", Some(42))));
        assert!(!allows(&rules, &meta("iphone", Some(9))));
        assert!(
            !allows(&rules, &meta("iphone", None)),
            "no version cannot satisfy a version rule"
        );
        assert!(
            allows(&rules, &meta("android", Some(1))),
            "platform without entry is allowed"
        );
    }

    #[test]
    fn every_operator() {
        for (op, v, expect) in [
            ("<", 4, true),
            ("<=", 5, true),
            ("=", 5, true),
            (">", 5, false),
            (">=", 5, true),
        ] {
            let rules =
                parse(json!([{"platform": "web", "rules": [[{"field": "version", "compare": op, "value": 5}]]}]))
                    .unwrap();
            assert_eq!(allows(&rules, &meta("web", Some(v))), expect, "{op} {v}");
        }
    }

    #[test]
    fn semantic_versions_compare_by_precedence() {
        let rules = parse(json!([{"platform": "ios", "rules": [
            [{"field": "app_version", "compare": ">=", "value": "2.10"}, {"field": "app_version", "compare": "!=", "value": "v2.11.1"}]
        ]}]))
        .unwrap();
        assert!(allows(&rules, &app("ios", "2.10.0", "d")));
        assert!(allows(&rules, &app("ios", "2.12", "d")));
        assert!(
            !allows(&rules, &app("ios", "2.9.9", "d")),
            "2.9.9 < 2.10 numerically, not as text"
        );
        assert!(!allows(&rules, &app("ios", "2.11.1", "d")));
        assert!(
            !allows(&rules, &app("ios", "2.10.0-beta.1", "d")),
            "a pre-release sorts before its release"
        );
        assert!(!allows(&rules, &app("ios", "not a version", "d")));
        assert!(
            !allows(&rules, &meta("ios", Some(3))),
            "no app_version cannot satisfy it"
        );
    }

    #[test]
    fn lists_and_device_allow_and_deny() {
        let rules = parse(json!([
            {"platform": "*", "rules": [[{"field": "device_id", "compare": "not_in", "value": ["banned"]}]]},
            {"platform": "android", "rules": [
                [{"field": "version", "compare": "in", "value": [10, "11"]}],
                [{"field": "device_id", "compare": "in", "value": ["tester-1", "tester-2"]}]
            ]}
        ]))
        .unwrap();
        let android = |version, device: &str| Meta {
            platform: "android".into(),
            version: Some(version),
            device_id: device.into(),
            app_version: None,
        };
        assert!(allows(&rules, &android(10, "d")));
        assert!(allows(&rules, &android(11, "d")));
        assert!(!allows(&rules, &android(12, "d")));
        assert!(allows(&rules, &android(12, "tester-2")), "allow list");
        assert!(!allows(&rules, &android(10, "banned")), "deny list for every platform");
        assert!(!allows(&rules, &app("ios", "1.0", "banned")));
        assert!(allows(&rules, &app("ios", "1.0", "someone")));
    }
}
