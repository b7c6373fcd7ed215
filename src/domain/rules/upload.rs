//! Rules as uploaded: read from raw JSON entry by entry, validated, and
//! written back in the uploaded shape for storage.

use serde::{Deserialize, Serialize};

use super::{Condition, Field, Op, Operand, PlatformRules, RuleError, RuleProblem};

/// The shape as uploaded, before validation.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPlatformRules {
    /// The platform it applies to, or `*`.
    pub platform: String,
    #[serde(default)]
    /// OR of AND-groups of conditions.
    pub rules: Vec<Vec<RawCondition>>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
/// One condition as uploaded.
pub struct RawCondition {
    /// The request field (`version`, `app_version`, ...).
    pub field: String,
    /// The comparison (`<`, `==`, `in`, ...).
    pub compare: String,
    /// What the field is compared with.
    pub value: serde_json::Value,
}

impl TryFrom<RawCondition> for Condition {
    type Error = RuleProblem;

    fn try_from(raw: RawCondition) -> Result<Self, RuleProblem> {
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
    struct RawRule {
        platform: String,
        #[serde(default)]
        rules: Vec<Vec<serde_json::Value>>,
    }
    let mut entries = Vec::with_capacity(raw.len());
    for (i, value) in raw.into_iter().enumerate() {
        let platform = value.get("platform").and_then(|p| p.as_str()).unwrap_or("?").to_owned();
        let fail = |group, condition, reason: RuleProblem| RuleError {
            entry: i + 1,
            platform: platform.clone(),
            group,
            condition,
            reason,
        };
        let malformed = |e: serde_json::Error| RuleProblem::Malformed(e.to_string());
        let entry: RawRule = serde_json::from_value(value).map_err(|e| fail(0, 0, malformed(e)))?;
        let mut groups = Vec::with_capacity(entry.rules.len());
        for (g, group) in entry.rules.into_iter().enumerate() {
            let conditions = group
                .into_iter()
                .enumerate()
                .map(|(c, raw)| serde_json::from_value(raw).map_err(|e| fail(g + 1, c + 1, malformed(e))))
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
            let fail = |group, condition, reason: RuleProblem| RuleError {
                entry: i + 1,
                platform: entry.platform.clone(),
                group,
                condition,
                reason,
            };
            if entry.platform.is_empty() {
                return Err(fail(0, 0, RuleProblem::EmptyPlatform));
            }
            if !seen.insert(entry.platform.clone()) {
                return Err(fail(0, 0, RuleProblem::RepeatedPlatform));
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

fn condition(raw: &RawCondition) -> Result<Condition, RuleProblem> {
    let field = Field::parse(&raw.field).ok_or_else(|| RuleProblem::UnknownField(raw.field.clone()))?;
    let compare = Op::parse(&raw.compare).ok_or_else(|| RuleProblem::UnknownOperator(raw.compare.clone()))?;
    if field == Field::DeviceId && !matches!(compare, Op::Eq | Op::Ne | Op::In | Op::NotIn) {
        return Err(RuleProblem::NotForDeviceId(raw.compare.clone()));
    }
    let items: Vec<&serde_json::Value> = match (&raw.value, compare.is_list()) {
        (serde_json::Value::Array(items), true) if !items.is_empty() => items.iter().collect(),
        (_, true) => return Err(RuleProblem::NeedsList(raw.compare.clone())),
        (serde_json::Value::Array(_), false) => return Err(RuleProblem::NeedsOne(raw.compare.clone())),
        (one, false) => vec![one],
    };
    let value = match field {
        Field::Version => Operand::Int(items.into_iter().map(integer).collect::<Result<_, _>>()?),
        Field::AppVersion => Operand::Semver(items.into_iter().map(semantic).collect::<Result<_, _>>()?),
        Field::DeviceId => Operand::Text(items.into_iter().map(text).collect::<Result<_, _>>()?),
    };
    Ok(Condition { field, compare, value })
}

fn integer(v: &serde_json::Value) -> Result<i64, RuleProblem> {
    match v {
        serde_json::Value::Number(n) => n.as_i64(),
        serde_json::Value::String(s) => s.trim().parse::<i64>().ok(),
        _ => None,
    }
    .ok_or_else(|| RuleProblem::NotInteger(v.to_string()))
}

fn semantic(v: &serde_json::Value) -> Result<semver::Version, RuleProblem> {
    v.as_str()
        .and_then(parse_semver)
        .ok_or_else(|| RuleProblem::NotSemver(v.to_string()))
}

fn text(v: &serde_json::Value) -> Result<String, RuleProblem> {
    v.as_str()
        .map(str::to_owned)
        .ok_or_else(|| RuleProblem::NotText(v.to_string()))
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(v: serde_json::Value) -> Result<Vec<PlatformRules>, RuleError> {
        validate(serde_json::from_value(v).unwrap())
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
