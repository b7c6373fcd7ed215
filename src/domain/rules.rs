//! Targeting rules in the original JSON shape: per platform, an OR of AND-groups
//! of conditions on request metadata. Besides the original integer comparison
//! on `version`, a condition can compare `app_version` as a semantic version,
//! test `device_id` (allow and deny lists), and use `in` / `not_in` with a
//! list. An entry for platform `*` applies to every platform, on top of the
//! platform's own entry. Rules are checked when a version is uploaded, so a
//! stored rule can never fail at request time.

use serde::{Deserialize, Serialize};

use super::model::Meta;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("rule {entry} ({platform}), group {group}, condition {condition}: {reason}")]
pub struct RuleError {
    pub entry: usize,
    pub platform: String,
    pub group: usize,
    pub condition: usize,
    pub reason: String,
}

/// The platform entry that applies to every request.
pub const ANY_PLATFORM: &str = "*";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Lt,
    Le,
    Eq,
    Ne,
    Gt,
    Ge,
    In,
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
pub struct PlatformRules {
    pub platform: String,
    /// OR of AND-groups; an empty list places no constraint.
    pub rules: Vec<Vec<Condition>>,
}

/// The shape as uploaded, before validation.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPlatformRules {
    pub platform: String,
    #[serde(default)]
    pub rules: Vec<Vec<RawCondition>>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCondition {
    pub field: String,
    pub compare: String,
    pub value: serde_json::Value,
}

impl TryFrom<RawCondition> for Condition {
    type Error = String;

    fn try_from(raw: RawCondition) -> Result<Self, String> {
        condition(&raw)
    }
}

impl From<Condition> for RawCondition {
    fn from(c: Condition) -> Self {
        let text = |items: Vec<String>, list: bool| {
            if list {
                serde_json::Value::from(items)
            } else {
                serde_json::Value::from(items.into_iter().next().unwrap_or_default())
            }
        };
        let list = c.compare.is_list();
        let value = match c.value {
            Operand::Int(v) => text(v.iter().map(i64::to_string).collect(), list),
            Operand::Semver(v) => text(v.iter().map(ToString::to_string).collect(), list),
            Operand::Text(v) => text(v, list),
        };
        RawCondition {
            field: c.field.as_str().into(),
            compare: c.compare.as_str().into(),
            value,
        }
    }
}

/// Reads and validates rules as uploaded JSON, so that even a malformed
/// entry or condition (a misspelt key, a missing value) is named by position.
pub fn from_upload(raw: Vec<serde_json::Value>) -> Result<Vec<PlatformRules>, RuleError> {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Entry {
        platform: String,
        #[serde(default)]
        rules: Vec<Vec<serde_json::Value>>,
    }
    let mut entries = Vec::with_capacity(raw.len());
    for (i, value) in raw.into_iter().enumerate() {
        let platform = value.get("platform").and_then(|p| p.as_str()).unwrap_or("?").to_owned();
        let fail = |group, condition, reason: String| RuleError {
            entry: i + 1,
            platform: platform.clone(),
            group,
            condition,
            reason,
        };
        let entry: Entry = serde_json::from_value(value).map_err(|e| fail(0, 0, e.to_string()))?;
        let mut groups = Vec::with_capacity(entry.rules.len());
        for (g, group) in entry.rules.into_iter().enumerate() {
            let conditions = group
                .into_iter()
                .enumerate()
                .map(|(c, raw)| serde_json::from_value(raw).map_err(|e| fail(g + 1, c + 1, e.to_string())))
                .collect::<Result<Vec<RawCondition>, _>>()?;
            groups.push(conditions);
        }
        entries.push(RawPlatformRules {
            platform: entry.platform,
            rules: groups,
        });
    }
    validate(entries)
}

/// Validates uploaded rules, naming the first bad one.
pub fn validate(raw: Vec<RawPlatformRules>) -> Result<Vec<PlatformRules>, RuleError> {
    let mut seen = std::collections::HashSet::new();
    raw.into_iter()
        .enumerate()
        .map(|(i, entry)| {
            let fail = |group, condition, reason: String| RuleError {
                entry: i + 1,
                platform: entry.platform.clone(),
                group,
                condition,
                reason,
            };
            if entry.platform.is_empty() {
                return Err(fail(0, 0, "platform must not be empty".into()));
            }
            if !seen.insert(entry.platform.clone()) {
                return Err(fail(0, 0, "platform appears more than once".into()));
            }
            let mut groups = Vec::with_capacity(entry.rules.len());
            for (g, group) in entry.rules.iter().enumerate() {
                let conditions = group
                    .iter()
                    .enumerate()
                    .map(|(c, raw)| condition(raw).map_err(|reason| fail(g + 1, c + 1, reason)))
                    .collect::<Result<Vec<_>, _>>()?;
                groups.push(conditions);
            }
            Ok(PlatformRules {
                platform: entry.platform.clone(),
                rules: groups,
            })
        })
        .collect()
}

fn condition(raw: &RawCondition) -> Result<Condition, String> {
    let field = Field::parse(&raw.field)
        .ok_or_else(|| format!("unknown field `{}` (known: version, app_version, device_id)", raw.field))?;
    let compare = Op::parse(&raw.compare)
        .ok_or_else(|| format!("unknown operator `{}` (known: < <= = != > >= in not_in)", raw.compare))?;
    if field == Field::DeviceId && !matches!(compare, Op::Eq | Op::Ne | Op::In | Op::NotIn) {
        return Err(format!(
            "operator `{}` does not apply to device_id (use = != in not_in)",
            raw.compare
        ));
    }
    let items: Vec<&serde_json::Value> = match (&raw.value, compare.is_list()) {
        (serde_json::Value::Array(items), true) if !items.is_empty() => items.iter().collect(),
        (_, true) => return Err(format!("`{}` needs a non-empty list of values", raw.compare)),
        (serde_json::Value::Array(_), false) => {
            return Err(format!("`{}` compares with one value, not a list", raw.compare));
        }
        (one, false) => vec![one],
    };
    let value = match field {
        Field::Version => Operand::Int(items.into_iter().map(integer).collect::<Result<_, _>>()?),
        Field::AppVersion => Operand::Semver(items.into_iter().map(semantic).collect::<Result<_, _>>()?),
        Field::DeviceId => Operand::Text(items.into_iter().map(text).collect::<Result<_, _>>()?),
    };
    Ok(Condition { field, compare, value })
}

fn integer(v: &serde_json::Value) -> Result<i64, String> {
    match v {
        serde_json::Value::Number(n) => n.as_i64(),
        serde_json::Value::String(s) => s.trim().parse::<i64>().ok(),
        _ => None,
    }
    .ok_or_else(|| format!("value {v} is not an integer"))
}

fn semantic(v: &serde_json::Value) -> Result<semver::Version, String> {
    v.as_str()
        .and_then(parse_semver)
        .ok_or_else(|| format!("value {v} is not a semantic version such as \"2.1.0\""))
}

fn text(v: &serde_json::Value) -> Result<String, String> {
    v.as_str()
        .map(str::to_owned)
        .ok_or_else(|| format!("value {v} is not a string"))
}

/// Accepts "2", "2.1", "2.1.0" and a leading "v", as app stores show them.
pub fn parse_semver(s: &str) -> Option<semver::Version> {
    let s = s.trim();
    let s = s.strip_prefix('v').unwrap_or(s);
    let core_end = s.find(['-', '+']).unwrap_or(s.len());
    let dots = s[..core_end].matches('.').count();
    let padded = match dots {
        0 => format!("{}.0.0{}", &s[..core_end], &s[core_end..]),
        1 => format!("{}.0{}", &s[..core_end], &s[core_end..]),
        _ => s.to_owned(),
    };
    semver::Version::parse(&padded).ok()
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
    fn bad_rules_are_named() {
        let err = parse(json!([{"platform": "web", "rules": [[{"field": "height", "compare": "<", "value": 1}]]}]))
            .unwrap_err();
        assert_eq!((err.entry, err.group, err.condition), (1, 1, 1));
        assert!(err.to_string().contains("unknown field `height`"), "{err}");
        let err = parse(json!([{"platform": "web", "rules": [[{"field": "version", "compare": "=>", "value": 1}]]}]))
            .unwrap_err();
        assert!(err.to_string().contains("unknown operator `=>`"), "{err}");
        let err =
            parse(json!([{"platform": "web", "rules": [[{"field": "version", "compare": "<", "value": "ten"}]]}]))
                .unwrap_err();
        assert!(err.to_string().contains("not an integer"), "{err}");
    }

    #[test]
    fn stored_shape_round_trips() {
        let rules =
            parse(json!([{"platform": "iphone", "rules": [[{"field": "version", "compare": ">=", "value": "10"}]]}]))
                .unwrap();
        let text = serde_json::to_value(&rules).unwrap();
        assert_eq!(
            text,
            json!([{"platform": "iphone", "rules": [[{"field": "version", "compare": ">=", "value": "10"}]]}])
        );
        let back: Vec<PlatformRules> = serde_json::from_value(text).unwrap();
        assert_eq!(back, rules);
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

    #[test]
    fn new_rules_are_checked_at_upload() {
        for (rule, needle) in [
            (
                json!({"field": "app_version", "compare": ">", "value": "two"}),
                "not a semantic version",
            ),
            (
                json!({"field": "version", "compare": "in", "value": 3}),
                "non-empty list",
            ),
            (
                json!({"field": "version", "compare": "in", "value": []}),
                "non-empty list",
            ),
            (json!({"field": "version", "compare": "<", "value": [1]}), "not a list"),
            (
                json!({"field": "device_id", "compare": ">", "value": "a"}),
                "does not apply to device_id",
            ),
            (
                json!({"field": "device_id", "compare": "=", "value": 7}),
                "not a string",
            ),
            (
                json!({"field": "version", "compare": "<", "value": 1, "extra": 1}),
                "unknown field `extra`",
            ),
        ] {
            let got = validate(vec![RawPlatformRules {
                platform: "web".into(),
                rules: vec![vec![match serde_json::from_value::<RawCondition>(rule.clone()) {
                    Ok(raw) => raw,
                    Err(e) => {
                        assert!(e.to_string().contains(needle), "{rule}: {e}");
                        continue;
                    }
                }]],
            }]);
            let err = got.unwrap_err();
            assert!(err.to_string().contains(needle), "{rule}: {err}");
        }
    }

    #[test]
    fn malformed_uploads_are_named_by_position() {
        let err = from_upload(vec![
            json!({"platform": "ios"}),
            json!({"platform": "web", "rules": [[{"field": "version", "compare": "<", "value": 1}],
                                                [{"field": "version", "comparison": "<", "value": 1}]]}),
        ])
        .unwrap_err();
        assert_eq!((err.entry, err.group, err.condition), (2, 2, 1), "{err}");
        assert!(err.to_string().contains("comparison"), "{err}");
        let err = from_upload(vec![json!({"platform": "ios", "rule": []})]).unwrap_err();
        assert_eq!((err.entry, err.group), (1, 0));
        assert!(err.to_string().contains("unknown field `rule`"), "{err}");
    }

    #[test]
    fn new_rules_round_trip_through_storage() {
        let upload = json!([{"platform": "*", "rules": [[
            {"field": "app_version", "compare": ">=", "value": "2.1.0"},
            {"field": "device_id", "compare": "not_in", "value": ["a", "b"]},
            {"field": "version", "compare": "in", "value": ["1", "2"]}
        ]]}]);
        let rules = parse(upload.clone()).unwrap();
        let stored = serde_json::to_value(&rules).unwrap();
        assert_eq!(stored, upload);
        let back: Vec<PlatformRules> = serde_json::from_value(stored).unwrap();
        assert_eq!(back, rules);
    }
}
