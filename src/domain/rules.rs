//! Targeting rules in the original JSON shape: per platform, an OR of AND-groups
//! of comparisons on request metadata. Rules are checked when a version is
//! uploaded, so a stored rule can never fail at request time.

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

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Op {
    #[serde(rename = "<")]
    Lt,
    #[serde(rename = "<=")]
    Le,
    #[serde(rename = "=")]
    Eq,
    #[serde(rename = ">")]
    Gt,
    #[serde(rename = ">=")]
    Ge,
}

impl Op {
    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "<" => Self::Lt,
            "<=" => Self::Le,
            "=" | "==" => Self::Eq,
            ">" => Self::Gt,
            ">=" => Self::Ge,
            _ => return None,
        })
    }

    fn holds(self, left: i64, right: i64) -> bool {
        match self {
            Self::Lt => left < right,
            Self::Le => left <= right,
            Self::Eq => left == right,
            Self::Gt => left > right,
            Self::Ge => left >= right,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Field {
    Version,
}

/// One validated comparison. Stored back in the original shape, with the value
/// as a string as the original clients send it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Condition {
    pub field: Field,
    pub compare: Op,
    #[serde(with = "number_as_string")]
    pub value: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlatformRules {
    pub platform: String,
    /// OR of AND-groups; an empty list places no constraint.
    pub rules: Vec<Vec<Condition>>,
}

/// The shape as uploaded, before validation.
#[derive(Debug, Deserialize)]
pub struct RawPlatformRules {
    pub platform: String,
    #[serde(default)]
    pub rules: Vec<Vec<RawCondition>>,
}

#[derive(Debug, Deserialize)]
pub struct RawCondition {
    pub field: String,
    pub compare: String,
    pub value: serde_json::Value,
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
    let field = match raw.field.as_str() {
        "version" => Field::Version,
        other => return Err(format!("unknown field `{other}` (known: version)")),
    };
    let compare =
        Op::parse(&raw.compare).ok_or_else(|| format!("unknown operator `{}` (known: < <= = > >=)", raw.compare))?;
    let value = match &raw.value {
        serde_json::Value::Number(n) => n.as_i64(),
        serde_json::Value::String(s) => s.trim().parse::<i64>().ok(),
        _ => None,
    }
    .ok_or_else(|| format!("value {} is not an integer", raw.value))?;
    Ok(Condition { field, compare, value })
}

/// True when the request's metadata passes the rules for its platform. A
/// platform without an entry is allowed.
pub fn allows(rules: &[PlatformRules], meta: &Meta) -> bool {
    let Some(entry) = rules.iter().find(|r| r.platform == meta.platform) else {
        return true;
    };
    entry.rules.is_empty()
        || entry
            .rules
            .iter()
            .any(|group| group.iter().all(|c| condition_holds(c, meta)))
}

fn condition_holds(c: &Condition, meta: &Meta) -> bool {
    match c.field {
        Field::Version => meta.version.is_some_and(|v| c.compare.holds(v, c.value)),
    }
}

mod number_as_string {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &i64, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&v.to_string())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Either {
            N(i64),
            S(String),
        }
        match Either::deserialize(d)? {
            Either::N(n) => Ok(n),
            Either::S(s) => s.trim().parse().map_err(serde::de::Error::custom),
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
}
