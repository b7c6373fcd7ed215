//! The parameter schema of a version: a list of `{name, type}`, each optionally
//! `"optional": true` or with a `"default"` (which makes it optional). A
//! request must carry each required parameter with its type; a missing
//! optional one gets its default, if it has one.

use std::borrow::Cow;
use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::{Map, Value};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
/// A parameter's type as the schema names it.
pub enum ParamType {
    /// A JSON string.
    String,
    /// A JSON integer.
    Int,
    /// Any JSON number.
    Float,
    /// `true` or `false`.
    Bool,
    /// A JSON array.
    Array,
    /// A JSON object.
    Dictionary,
}

impl ParamType {
    fn matches(self, v: &Value) -> bool {
        match self {
            Self::String => v.is_string(),
            Self::Int => v.is_i64() || v.is_u64(),
            Self::Float => v.is_number(),
            Self::Bool => v.is_boolean(),
            Self::Array => v.is_array(),
            Self::Dictionary => v.is_object(),
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::String => "string",
            Self::Int => "int",
            Self::Float => "float",
            Self::Bool => "bool",
            Self::Array => "array",
            Self::Dictionary => "dictionary",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
/// One parameter of a schema.
pub struct ParamSpec {
    /// The key in the request's params.
    pub name: String,
    #[serde(rename = "type")]
    /// Its type.
    pub kind: ParamType,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    /// Whether a request may leave it out.
    pub optional: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    /// The value used when a request leaves it out.
    pub default: Option<Value>,
}

impl ParamSpec {
    fn required(&self) -> bool {
        !self.optional && self.default.is_none()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
/// Why params or a schema were refused.
pub enum ParamError {
    #[error("params must be a JSON object")]
    /// The params are not a JSON object.
    NotAnObject,
    #[error("missing parameter `{0}`")]
    /// A required parameter is absent.
    Missing(String),
    #[error("parameter `{name}` must be of type {expected}, got {got}")]
    /// A parameter has another type than the schema's.
    WrongType {
        /// The parameter.
        name: String,
        /// The schema's type.
        expected: &'static str,
        /// The type sent.
        got: &'static str,
    },
    #[error("parameter schema: {0}")]
    /// An uploaded schema is malformed.
    Schema(String),
    /// Params a JSON value cannot hold (a lone surrogate, nesting past
    /// `MAX_DEPTH`), named.
    #[error("params: {0}")]
    Unreadable(String),
}

/// Reads and checks a schema as uploaded JSON, naming a malformed entry.
pub fn from_upload(raw: Vec<Value>) -> Result<Vec<ParamSpec>, ParamError> {
    let specs = raw
        .into_iter()
        .enumerate()
        .map(|(i, v)| serde_json::from_value(v).map_err(|e| ParamError::Schema(format!("entry {}: {e}", i + 1))))
        .collect::<Result<Vec<ParamSpec>, _>>()?;
    validate_schema(&specs)?;
    Ok(specs)
}

/// Checks an uploaded schema: names non-empty and unique.
fn validate_schema(specs: &[ParamSpec]) -> Result<(), ParamError> {
    let mut seen = std::collections::HashSet::new();
    for (i, spec) in specs.iter().enumerate() {
        if spec.name.is_empty() {
            return Err(ParamError::Schema(format!("entry {} has an empty name", i + 1)));
        }
        if !seen.insert(spec.name.as_str()) {
            return Err(ParamError::Schema(format!(
                "parameter `{}` is declared twice",
                spec.name
            )));
        }
        if let Some(default) = &spec.default
            && !spec.kind.matches(default)
        {
            return Err(ParamError::Schema(format!(
                "the default of `{}` must be of type {}, got {}",
                spec.name,
                spec.kind.name(),
                json_type(default)
            )));
        }
    }
    Ok(())
}

/// Checks `params` and fills in the defaults of missing optional ones.
pub fn prepare(specs: &[ParamSpec], mut params: Value) -> Result<Value, ParamError> {
    check(specs, &params)?;
    if let Value::Object(map) = &mut params {
        for spec in specs {
            if let Some(default) = &spec.default
                && !map.contains_key(&spec.name)
            {
                map.insert(spec.name.clone(), default.clone());
            }
        }
    }
    Ok(params)
}

/// How deep params may nest: serde_json reads no deeper (128 levels), and
/// the worker reads them with serde_json.
const MAX_DEPTH: usize = 127;

/// The key serde_json gives a number it keeps as text (the
/// `arbitrary_precision` feature a dependency turns on): an object with it
/// reads as a number, so params carrying it are read as a value first.
const NUMBER_KEY: &str = "serde_json::private::Number";

/// `prepare` for params as the JSON text a fetch sent: the text itself when
/// it needs no default, so a fetch never builds a value of its params (the
/// worker reads the text). Only declared parameters are read, each checked
/// as `prepare` checks it; defaults are appended to the text. A repeated
/// key counts by its last value, as everywhere else. Text with an escape
/// (where a lone surrogate or a disguised key can hide) or serde_json's
/// number key goes through a value, as every fetch once did.
pub fn prepare_text(specs: &[ParamSpec], params: Box<RawValue>) -> Result<Box<RawValue>, ParamError> {
    let text = params.get();
    if !text.starts_with('{') {
        return Err(ParamError::NotAnObject);
    }
    let unreadable = |e: serde_json::Error| ParamError::Unreadable(e.to_string());
    let shape = scan(text);
    if shape.escaped || text.contains(NUMBER_KEY) {
        let value: Value = serde_json::from_str(text).map_err(unreadable)?;
        let value = prepare(specs, value)?;
        return serde_json::value::to_raw_value(&value).map_err(unreadable);
    }
    if shape.depth > MAX_DEPTH {
        return Err(ParamError::Unreadable(format!(
            "nested more than {MAX_DEPTH} levels deep"
        )));
    }
    if specs.is_empty() {
        return Ok(params);
    }
    let map: HashMap<Name<'_>, &RawValue> = serde_json::from_str(text).map_err(unreadable)?;
    let mut defaults = Vec::new();
    for spec in specs {
        match map.get(spec.name.as_str()) {
            None if spec.required() => return Err(ParamError::Missing(spec.name.clone())),
            None => defaults.extend(spec.default.as_ref().map(|d| (&spec.name, d))),
            Some(raw) => {
                let value: Value = serde_json::from_str(raw.get()).map_err(unreadable)?;
                if !spec.kind.matches(&value) {
                    return Err(ParamError::WrongType {
                        name: spec.name.clone(),
                        expected: spec.kind.name(),
                        got: json_type(&value),
                    });
                }
            }
        }
    }
    if defaults.is_empty() {
        return Ok(params);
    }
    // `{...}` without its `}`, then `,"name":default` for each.
    let mut out = String::with_capacity(text.len() + 32 * defaults.len());
    out.push_str(&text[..text.len() - 1]);
    for (i, (name, default)) in defaults.into_iter().enumerate() {
        if i > 0 || !map.is_empty() {
            out.push(',');
        }
        out.push_str(&serde_json::to_string(name).expect("a string writes"));
        out.push(':');
        out.push_str(&serde_json::to_string(default).expect("a value writes"));
    }
    out.push('}');
    RawValue::from_string(out).map_err(unreadable)
}

/// What a look at JSON text finds: whether it has an escape, and (the
/// answer only holds without one, when a `"` always opens or closes a
/// string) how deep its arrays and objects nest, or an upper bound of it
/// when that is within `MAX_DEPTH`.
struct Shape {
    escaped: bool,
    depth: usize,
}

/// Byte by byte, this was an eighth of the server's time on a fetch with
/// 5 KB of params; memchr's searches take a fraction of that.
fn scan(text: &str) -> Shape {
    let bytes = text.as_bytes();
    if memchr::memchr(b'\\', bytes).is_some() {
        return Shape {
            escaped: true,
            depth: 0,
        };
    }
    // Every `{` and `[` (in strings too) bounds the depth: most params have
    // fewer than the limit and need no walk.
    let openers = memchr::memchr2_iter(b'{', b'[', bytes).count();
    if openers <= MAX_DEPTH {
        return Shape {
            escaped: false,
            depth: openers,
        };
    }
    let (mut depth, mut deepest, mut at) = (0usize, 0, 0);
    while at < bytes.len() {
        match bytes[at] {
            // With no escape, the next `"` closes the string.
            b'"' => at += 1 + memchr::memchr(b'"', &bytes[at + 1..]).unwrap_or(bytes.len()),
            b'{' | b'[' => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
        at += 1;
    }
    Shape {
        escaped: false,
        depth: deepest,
    }
}

/// A key of the params object, borrowed from the text unless escaped.
#[derive(PartialEq, Eq, Hash, Deserialize)]
struct Name<'a>(#[serde(borrow)] Cow<'a, str>);

impl std::borrow::Borrow<str> for Name<'_> {
    fn borrow(&self) -> &str {
        &self.0
    }
}

/// Checks that `params` carries every required parameter, and every declared
/// one it carries, with its type. Undeclared parameters pass through untouched.
pub fn check<'a>(specs: &[ParamSpec], params: &'a Value) -> Result<&'a Map<String, Value>, ParamError> {
    let map = params.as_object().ok_or(ParamError::NotAnObject)?;
    for spec in specs {
        let Some(value) = map.get(&spec.name) else {
            if spec.required() {
                return Err(ParamError::Missing(spec.name.clone()));
            }
            continue;
        };
        if !spec.kind.matches(value) {
            return Err(ParamError::WrongType {
                name: spec.name.clone(),
                expected: spec.kind.name(),
                got: json_type(value),
            });
        }
    }
    Ok(map)
}

fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(n) if n.is_i64() || n.is_u64() => "int",
        // Written as an integer, but no 64-bit integer holds it.
        Value::Number(n) if !n.to_string().contains(['.', 'e', 'E']) => "an integer outside the 64-bit range",
        Value::Number(_) => "float",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "dictionary",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn specs(v: Value) -> Vec<ParamSpec> {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn every_type_accepts_and_rejects() {
        let s = specs(json!([
            {"name": "s", "type": "string"}, {"name": "i", "type": "int"}, {"name": "f", "type": "float"},
            {"name": "b", "type": "bool"}, {"name": "a", "type": "array"}, {"name": "d", "type": "dictionary"}
        ]));
        let good = json!({"s": "x", "i": 3, "f": 1.5, "b": true, "a": [1], "d": {"k": 1}, "extra": null});
        assert!(check(&s, &good).is_ok());
        let int_as_float = json!({"s": "x", "i": 3, "f": 2, "b": true, "a": [], "d": {}});
        assert!(check(&s, &int_as_float).is_ok(), "an int is a valid float");
        let bad = json!({"s": "x", "i": 3.5, "f": 1.5, "b": true, "a": [1], "d": {}});
        assert_eq!(
            check(&s, &bad).unwrap_err(),
            ParamError::WrongType {
                name: "i".into(),
                expected: "int",
                got: "float"
            }
        );
        let bad = json!({"s": 1, "i": 3, "f": 1.5, "b": true, "a": [1], "d": {}});
        assert!(
            check(&s, &bad)
                .unwrap_err()
                .to_string()
                .contains("`s` must be of type string")
        );
        let huge: Value =
            serde_json::from_str(r#"{"s": "x", "i": 99999999999999999999999, "f": 1, "b": true, "a": [], "d": {}}"#)
                .unwrap();
        let message = check(&s, &huge).unwrap_err().to_string();
        assert!(message.contains("outside the 64-bit range"), "{message}");
    }

    #[test]
    fn missing_and_not_object() {
        let s = specs(json!([{"name": "version_code", "type": "int"}]));
        assert_eq!(
            check(&s, &json!({})).unwrap_err(),
            ParamError::Missing("version_code".into())
        );
        assert_eq!(check(&s, &json!([1])).unwrap_err(), ParamError::NotAnObject);
    }

    #[test]
    fn schema_checks() {
        assert!(
            validate_schema(&specs(
                json!([{"name": "a", "type": "int"}, {"name": "a", "type": "bool"}])
            ))
            .is_err()
        );
        assert!(validate_schema(&specs(json!([{"name": "", "type": "int"}]))).is_err());
        assert!(serde_json::from_value::<Vec<ParamSpec>>(json!([{"name": "a", "type": "integer"}])).is_err());
    }

    #[test]
    fn optional_parameters_and_defaults() {
        let s = specs(json!([
            {"name": "n", "type": "int"},
            {"name": "region", "type": "string", "default": "eu"},
            {"name": "beta", "type": "bool", "optional": true}
        ]));
        validate_schema(&s).unwrap();
        assert_eq!(prepare(&s, json!({"n": 1})).unwrap(), json!({"n": 1, "region": "eu"}));
        assert_eq!(
            prepare(&s, json!({"n": 1, "region": "us", "beta": true})).unwrap(),
            json!({"n": 1, "region": "us", "beta": true})
        );
        assert_eq!(prepare(&s, json!({})).unwrap_err(), ParamError::Missing("n".into()));
        assert!(
            prepare(&s, json!({"n": 1, "beta": "yes"})).is_err(),
            "a given optional is still typed"
        );
        let bad = specs(json!([{"name": "r", "type": "string", "default": 3}]));
        assert!(
            validate_schema(&bad)
                .unwrap_err()
                .to_string()
                .contains("default of `r`")
        );
        assert!(serde_json::from_value::<Vec<ParamSpec>>(json!([{"name": "a", "type": "int", "dflt": 1}])).is_err());
    }

    #[test]
    fn text_is_checked_as_a_value_is_and_defaults_are_appended() {
        let s = specs(json!([
            {"name": "n", "type": "int"}, {"name": "tags", "type": "array", "optional": true},
            {"name": "region", "type": "string", "default": "eu"}, {"name": "x y", "type": "float", "default": 1.5}
        ]));
        let text = |t: &str| prepare_text(&s, RawValue::from_string(t.to_owned()).unwrap());
        for t in [
            r#"{"n": 1}"#,
            r#"{ "n": 1, "tags": ["a"], "region": "us" }"#,
            r#"{"\u006e": 2, "extra": {"deep": [1]}}"#,
            r#"{"n": "one", "n": 3}"#,
            r#"{"n": 1.5}"#,
            r#"{"n": 12345678901234567890123}"#,
            r#"{"tags": 1, "n": 1}"#,
            r#"{"region": "us"}"#,
            r#"[1]"#,
            "null",
            r#""{}""#,
        ] {
            let by_text = text(t).map(|raw| serde_json::from_str::<Value>(raw.get()).unwrap());
            let by_value = prepare(&s, serde_json::from_str(t).unwrap());
            assert_eq!(by_text, by_value, "{t}");
        }
        // Nothing to add: the very text sent.
        assert_eq!(
            text(r#"{"n":1,"region":"us","x y":2}"#).unwrap().get(),
            r#"{"n":1,"region":"us","x y":2}"#
        );
        assert_eq!(
            prepare_text(&[], RawValue::from_string("{ }".into()).unwrap())
                .unwrap()
                .get(),
            "{ }"
        );
        // What a value cannot hold is named, not passed on to the worker.
        for (t, why) in [
            (r#"{"n": 1, "s": "\ud800"}"#, "hex escape"),
            (
                &format!(r#"{{"n": 1, "deep": {}{}}}"#, "[".repeat(127), "]".repeat(127)),
                "127 levels",
            ),
        ] {
            match text(t) {
                Err(ParamError::Unreadable(message)) => assert!(message.contains(why), "{t}: {message}"),
                other => panic!("{t}: {other:?}"),
            }
        }
        assert!(
            text(&format!(
                r#"{{"n": 1, "deep": {}{}}}"#,
                "[".repeat(126),
                "]".repeat(126)
            ))
            .is_ok()
        );
        // Past the limit in openers but not in depth: walked, and passed.
        let wide = format!(
            r#"{{"n": 1, "list": [{}{{}}], "s": "{}"}}"#,
            "{},".repeat(200),
            "[{".repeat(200)
        );
        assert!(text(&wide).is_ok(), "{wide}");
        // Deep, with brackets in strings on the way that must not count.
        let deep = format!(r#"{{"n": 1, "d": {}"]]" {}}}"#, "[\"]\",".repeat(128), "]".repeat(128));
        assert!(matches!(text(&deep), Err(ParamError::Unreadable(_))), "{deep}");
        // serde_json's number key, plain or escaped, reads as the number it
        // makes of it, never as an object the worker would see differently.
        let key = "$serde_json::private::Number";
        assert_eq!(
            text(&format!(r#"{{"{key}": "5"}}"#)).unwrap_err(),
            ParamError::NotAnObject
        );
        let escaped = r#"{"n": 1, "x": {"$serde_json::private::Number": "5"}}"#;
        assert_eq!(text(escaped).unwrap().get(), r#"{"n":1,"region":"eu","x":5,"x y":1.5}"#);
        let empty = specs(json!([{"name": "d", "type": "dictionary", "default": {"k": null}}]));
        let added = prepare_text(&empty, RawValue::from_string("{ }".into()).unwrap()).unwrap();
        assert_eq!(added.get(), r#"{ "d":{"k":null}}"#);
    }
}
