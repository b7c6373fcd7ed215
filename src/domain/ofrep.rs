//! The OpenFeature Remote Evaluation Protocol's vocabulary over Vane's: an
//! evaluation context read as request metadata and parameters, the reason an
//! answer gives, and the config-id patterns client tokens are scoped by.

use serde_json::{Map, Value};

use super::meta::{MAX_DEVICE_ID_BYTES, Meta};

/// The context attribute that is the device id.
pub const TARGETING_KEY: &str = "targetingKey";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
/// Why a context is refused (`INVALID_CONTEXT`).
pub enum ContextError {
    /// `context` is there but is no object.
    #[error("`context` must be a JSON object")]
    NotAnObject,
    /// A request-metadata attribute of the wrong type.
    #[error("context attribute `{name}` must be {expected}")]
    WrongType {
        /// The attribute.
        name: &'static str,
        /// What it must be.
        expected: &'static str,
    },
}

/// A context split into who is asking and the config's parameters: every
/// attribute but the targeting key, `platform`, `version` and `app_version`.
#[derive(Debug, Clone, PartialEq)]
pub struct Split {
    /// The request metadata.
    pub meta: Meta,
    /// Whether the context named a targeting key.
    pub has_targeting_key: bool,
    /// The parameters, an object.
    pub params: Value,
}

/// Reads `context` (absent or `null` is an empty one).
pub fn split(context: Option<Value>) -> Result<Split, ContextError> {
    let mut attributes = match context {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(map)) => map,
        Some(_) => return Err(ContextError::NotAnObject),
    };
    let mut meta = Meta::default();
    let has_targeting_key = match attributes.remove(TARGETING_KEY) {
        None | Some(Value::Null) => false,
        Some(Value::String(key)) if key.len() > MAX_DEVICE_ID_BYTES => {
            return Err(wrong(TARGETING_KEY, "a string of at most 256 bytes"));
        }
        Some(Value::String(key)) => {
            meta.device_id = key;
            !meta.device_id.is_empty()
        }
        Some(_) => return Err(wrong(TARGETING_KEY, "a string")),
    };
    if let Some(platform) = attributes.remove("platform") {
        meta.platform = match platform {
            Value::String(p) => p,
            Value::Null => String::new(),
            _ => return Err(wrong("platform", "a string")),
        };
    }
    if let Some(version) = attributes.remove("version") {
        meta.version = match version {
            Value::Null => None,
            number => Some(integer(&number).ok_or_else(|| wrong("version", "an integer"))?),
        };
    }
    if let Some(app_version) = attributes.remove("app_version") {
        meta.app_version = match app_version {
            Value::String(v) => Some(v),
            Value::Null => None,
            _ => return Err(wrong("app_version", "a string")),
        };
    }
    Ok(Split {
        meta,
        has_targeting_key,
        params: Value::Object(attributes),
    })
}

fn wrong(name: &'static str, expected: &'static str) -> ContextError {
    ContextError::WrongType { name, expected }
}

/// An integer, or a number with nothing after its point (`12.0`), as
/// clients that hold every number as a float send.
fn integer(value: &Value) -> Option<i64> {
    let number = value.as_number()?;
    if let Some(n) = number.as_i64() {
        return Some(n);
    }
    let float = number.as_f64()?;
    (float.fract() == 0.0 && float.abs() < 9.0e15).then_some(float as i64)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
/// Why an evaluation answered as it did, in OpenFeature's words.
pub enum Reason {
    /// The same answer for everyone asking with these parameters.
    Static,
    /// Rules applied to the request and it passed them.
    TargetingMatch,
    /// A gray release's bucket chose the version.
    Split,
    /// The config is switched off: the caller's default stands.
    Disabled,
    /// Nothing released yet: the caller's default stands.
    Default,
}

impl Reason {
    /// How a served version was chosen: the split decides first.
    pub fn of(split: bool, targeted: bool) -> Self {
        match (split, targeted) {
            (true, _) => Self::Split,
            (false, true) => Self::TargetingMatch,
            (false, false) => Self::Static,
        }
    }

    /// The name OpenFeature gives it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Static => "STATIC",
            Self::TargetingMatch => "TARGETING_MATCH",
            Self::Split => "SPLIT",
            Self::Disabled => "DISABLED",
            Self::Default => "DEFAULT",
        }
    }
}

/// A config id, or a pattern where `*` stands for any run of characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pattern(Vec<String>);

/// A pattern no config id could match, as it was written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("config pattern `{0}` must be 1 to 128 letters, digits, `-`, `_`, `.` or `*`")]
pub struct PatternError(pub String);

impl Pattern {
    /// Refuses a pattern no config id could match, naming it.
    pub fn new(text: &str) -> Result<Self, PatternError> {
        let valid = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'*');
        if text.is_empty() || text.len() > 128 || !text.bytes().all(valid) {
            return Err(PatternError(text.to_owned()));
        }
        Ok(Self(text.split('*').map(str::to_owned).collect()))
    }

    /// Whether `id` matches: the pieces between stars appear in order, the
    /// first at the start and the last at the end.
    pub fn matches(&self, id: &str) -> bool {
        let (first, rest) = self.0.split_first().expect("split yields at least one piece");
        let Some(mut remaining) = id.strip_prefix(first.as_str()) else {
            return false;
        };
        let Some((last, middle)) = rest.split_last() else {
            return remaining.is_empty();
        };
        for piece in middle {
            match remaining.find(piece.as_str()) {
                Some(at) => remaining = &remaining[at + piece.len()..],
                None => return false,
            }
        }
        remaining.ends_with(last.as_str())
    }
}

/// The configs a client token may read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Scope(Vec<Pattern>);

impl Scope {
    /// From settings entries, already validated.
    pub fn new(patterns: &[String]) -> Result<Self, PatternError> {
        patterns
            .iter()
            .map(|p| Pattern::new(p))
            .collect::<Result<_, _>>()
            .map(Self)
    }

    /// Whether the token may read `config_id`.
    pub fn covers(&self, config_id: &str) -> bool {
        self.0.iter().any(|p| p.matches(config_id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_context_splits_into_meta_and_params() {
        let context = json!({
            "targetingKey": "device-7", "platform": "ios", "version": 12.0,
            "app_version": "2.1.0", "city": "Oslo", "n": 3
        });
        let split = split(Some(context)).unwrap();
        assert_eq!(split.meta.device_id, "device-7");
        assert_eq!(split.meta.platform, "ios");
        assert_eq!(split.meta.version, Some(12));
        assert_eq!(split.meta.app_version.as_deref(), Some("2.1.0"));
        assert!(split.has_targeting_key);
        assert_eq!(split.params, json!({"city": "Oslo", "n": 3}));

        let empty = super::split(None).unwrap();
        assert!(!empty.has_targeting_key);
        assert_eq!(empty.params, json!({}));
        assert!(
            !super::split(Some(json!({"targetingKey": ""})))
                .unwrap()
                .has_targeting_key
        );
    }

    #[test]
    fn a_bad_context_names_the_attribute() {
        assert_eq!(split(Some(json!([1]))), Err(ContextError::NotAnObject));
        let err = split(Some(json!({"targetingKey": 5}))).unwrap_err();
        assert_eq!(err.to_string(), "context attribute `targetingKey` must be a string");
        let err = split(Some(json!({"version": 1.5}))).unwrap_err();
        assert_eq!(err.to_string(), "context attribute `version` must be an integer");
        assert!(split(Some(json!({"version": "12"}))).is_err());
        assert!(split(Some(json!({"platform": true}))).is_err());
    }

    #[test]
    fn the_split_decides_before_targeting() {
        assert_eq!(Reason::of(true, true), Reason::Split);
        assert_eq!(Reason::of(false, true), Reason::TargetingMatch);
        assert_eq!(Reason::of(false, false).as_str(), "STATIC");
    }

    #[test]
    fn patterns_match_ids() {
        let cases = [
            ("app-*", "app-banner", true),
            ("app-*", "app-", true),
            ("app-*", "web-app-x", false),
            ("*-flag", "new-flag", true),
            ("*-flag", "new-flags", false),
            ("a*b*c", "aXbYc", true),
            ("a*b*c", "acb", false),
            ("a*a", "a", false),
            ("*", "anything", true),
            ("exact", "exact", true),
            ("exact", "exactly", false),
        ];
        for (pattern, id, expect) in cases {
            assert_eq!(Pattern::new(pattern).unwrap().matches(id), expect, "{pattern} {id}");
        }
        assert!(Pattern::new("").is_err());
        assert!(Pattern::new("a b").unwrap_err().to_string().contains("`a b`"));
        let scope = Scope::new(&["app-*".into(), "banner".into()]).unwrap();
        assert!(scope.covers("banner") && scope.covers("app-x") && !scope.covers("other"));
    }
}
