//! The original service's Starlark had starlark-go's `json` module members
//! predeclared at the top level, so its configs call `encode(x)`,
//! `decode(s)`, `indent(s)` and `encode_indent(x)` directly. These behave as
//! starlark-go's do: `encode` writes dict keys in sorted order, floats as Go
//! formats them (`1.0`, `1e+06`), and strings as Go quotes them; `indent`
//! reformats JSON text as Go's `json.Indent` does.

use starlark::environment::GlobalsBuilder;
use starlark::starlark_module;
use starlark::values::dict::DictRef;
use starlark::values::float::StarlarkFloat;
use starlark::values::list::ListRef;
use starlark::values::structs::StructRef;
use starlark::values::tuple::TupleRef;
use starlark::values::{Heap, Value, ValueLike};

/// Deeper than this is taken for a structure that holds itself.
const MAX_DEPTH: usize = 256;

/// Why a value cannot be written as JSON, and where in it.
#[derive(Debug, thiserror::Error)]
enum EncodeError {
    #[error("cycle in JSON structure")]
    Cycle,
    /// A NaN or infinity, as Starlark prints it.
    #[error("cannot encode non-finite float {0}")]
    NonFinite(String),
    /// A dict key that is not a string, by its type.
    #[error("dict has {0} key, want string")]
    DictKey(String),
    /// A value of a type JSON has no form for.
    #[error("cannot encode {0} as JSON")]
    Unsupported(String),
    /// The problem with an item, and where the item is.
    #[error("{at}: {inner}")]
    Inside { at: Place, inner: Box<EncodeError> },
}

/// Where an item sits in its container.
#[derive(Debug)]
enum Place {
    Key(String),
    Field(String),
    Index(&'static str, usize),
}

impl std::fmt::Display for Place {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Key(key) => write!(f, "in dict key \"{key}\""),
            Self::Field(name) => write!(f, "in field .{name}"),
            Self::Index(kind, i) => write!(f, "at {kind} index {i}"),
        }
    }
}

impl EncodeError {
    fn inside(at: Place) -> impl FnOnce(Self) -> Self {
        move |inner| Self::Inside {
            at,
            inner: Box::new(inner),
        }
    }
}

#[starlark_module]
pub fn original_json(globals: &mut GlobalsBuilder) {
    fn encode(#[starlark(require = pos)] x: Value) -> anyhow::Result<String> {
        let mut out = String::new();
        write(x, 0, &mut out).map_err(|e| anyhow::anyhow!("encode: {e}"))?;
        Ok(out)
    }

    fn decode<'v>(#[starlark(require = pos)] x: &str, heap: Heap<'v>) -> anyhow::Result<Value<'v>> {
        let value: serde_json::Value = serde_json::from_str(x).map_err(|e| anyhow::anyhow!("decode: {e}"))?;
        Ok(heap.alloc(value))
    }

    fn indent(
        #[starlark(require = pos)] x: &str,
        #[starlark(require = named, default = "")] prefix: &str,
        #[starlark(require = named, default = "\t")] indent: &str,
    ) -> anyhow::Result<String> {
        reindent(x, prefix, indent).map_err(|e| anyhow::anyhow!("indent: {e}"))
    }

    fn encode_indent(
        #[starlark(require = pos)] x: Value,
        #[starlark(require = named, default = "")] prefix: &str,
        #[starlark(require = named, default = "\t")] indent: &str,
    ) -> anyhow::Result<String> {
        let mut out = String::new();
        write(x, 0, &mut out).map_err(|e| anyhow::anyhow!("encode_indent: {e}"))?;
        reindent(&out, prefix, indent).map_err(|e| anyhow::anyhow!("encode_indent: {e}"))
    }
}

fn write(value: Value, depth: usize, out: &mut String) -> Result<(), EncodeError> {
    if depth > MAX_DEPTH {
        return Err(EncodeError::Cycle);
    }
    if value.is_none() {
        out.push_str("null");
    } else if let Some(b) = value.unpack_bool() {
        out.push_str(if b { "true" } else { "false" });
    } else if let Some(text) = value.unpack_str() {
        quote(text, out);
    } else if let Some(float) = value.downcast_ref::<StarlarkFloat>() {
        if !float.0.is_finite() {
            return Err(EncodeError::NonFinite(value.to_repr()));
        }
        out.push_str(&go_float(float.0));
    } else if value.get_type() == "int" {
        out.push_str(&value.to_repr());
    } else if let Some(dict) = DictRef::from_value(value) {
        let mut items = Vec::with_capacity(dict.len());
        for (key, item) in dict.iter() {
            let key = key
                .unpack_str()
                .ok_or_else(|| EncodeError::DictKey(key.get_type().to_owned()))?;
            items.push((key, item));
        }
        items.sort_by(|a, b| a.0.cmp(b.0));
        out.push('{');
        for (i, (key, item)) in items.into_iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            quote(key, out);
            out.push(':');
            write(item, depth + 1, out).map_err(EncodeError::inside(Place::Key(key.to_owned())))?;
        }
        out.push('}');
    } else if let Some(items) = ListRef::from_value(value).map(|l| l.iter().collect::<Vec<_>>()) {
        array(&items, "list", depth, out)?;
    } else if let Some(items) = TupleRef::from_value(value).map(|t| t.iter().collect::<Vec<_>>()) {
        array(&items, "tuple", depth, out)?;
    } else if let Some(fields) = StructRef::from_value(value) {
        let mut fields: Vec<_> = fields.iter().collect();
        fields.sort_by(|a, b| a.0.as_str().cmp(b.0.as_str()));
        out.push('{');
        for (i, (name, item)) in fields.into_iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            quote(name.as_str(), out);
            out.push(':');
            write(item, depth + 1, out).map_err(EncodeError::inside(Place::Field(name.as_str().to_owned())))?;
        }
        out.push('}');
    } else {
        return Err(EncodeError::Unsupported(value.get_type().to_owned()));
    }
    Ok(())
}

fn array(items: &[Value], kind: &'static str, depth: usize, out: &mut String) -> Result<(), EncodeError> {
    out.push('[');
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        write(*item, depth + 1, out).map_err(EncodeError::inside(Place::Index(kind, i)))?;
    }
    out.push(']');
    Ok(())
}

/// As starlark-go writes a float: Go's shortest `%g` (an exponent when the
/// decimal exponent is below -4 or 6 and above, as Go decides for the
/// shortest form), with `.0` added when there is neither a point nor an
/// exponent.
fn go_float(f: f64) -> String {
    if f == 0.0 {
        return if f.is_sign_negative() {
            "-0.0".into()
        } else {
            "0.0".into()
        };
    }
    // Rust's `{:e}` is the shortest round-trip digits with their exponent.
    let scientific = format!("{f:e}");
    let (mantissa, exponent) = scientific.split_once('e').expect("{:e} has an exponent");
    let exponent: i32 = exponent.parse().expect("an integer exponent");
    let negative = mantissa.starts_with('-');
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    let sign = if negative { "-" } else { "" };
    if !(-4..6).contains(&exponent) {
        let (first, rest) = digits.split_at(1);
        let point = if rest.is_empty() {
            String::new()
        } else {
            format!(".{rest}")
        };
        let exp_sign = if exponent < 0 { '-' } else { '+' };
        return format!("{sign}{first}{point}e{exp_sign}{:02}", exponent.abs());
    }
    let plain = if exponent < 0 {
        format!("0.{}{digits}", "0".repeat((-exponent - 1) as usize))
    } else {
        let whole = exponent as usize + 1;
        if digits.len() > whole {
            format!("{}.{}", &digits[..whole], &digits[whole..])
        } else {
            format!("{digits}{}", "0".repeat(whole - digits.len()))
        }
    };
    let dotted = if plain.contains('.') {
        plain
    } else {
        format!("{plain}.0")
    };
    format!("{sign}{dotted}")
}

/// As starlark-go quotes a string: printable ASCII as Go's `strconv.Quote`
/// does, anything else as Go's `encoding/json` does (which also escapes
/// `<`, `>`, `&`, U+2028 and U+2029).
fn quote(text: &str, out: &mut String) {
    let printable_ascii = text.bytes().all(|b| (0x20..0x80).contains(&b));
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '<' | '>' | '&' if !printable_ascii => out.push_str(&format!("\\u{:04x}", c as u32)),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{2028}' | '\u{2029}' => out.push_str(&format!("\\u{:04x}", c as u32)),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
}

/// As Go's `json.Indent`: the same tokens, one element per line, each line
/// after the first starting with `prefix` and `indent` once per level; an
/// empty array or object stays on one line.
fn reindent(text: &str, prefix: &str, indent: &str) -> Result<String, serde_json::Error> {
    serde_json::from_str::<serde::de::IgnoredAny>(text)?;
    let mut out = String::with_capacity(text.len() * 2);
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    let mut just_opened = false;
    let newline = |out: &mut String, depth: usize| {
        out.push('\n');
        out.push_str(prefix);
        for _ in 0..depth {
            out.push_str(indent);
        }
    };
    for c in text.trim_start().chars() {
        if in_string {
            out.push(c);
            match (escaped, c) {
                (true, _) => escaped = false,
                (false, '\\') => escaped = true,
                (false, '"') => in_string = false,
                _ => {}
            }
            continue;
        }
        if c.is_ascii_whitespace() {
            continue;
        }
        if just_opened {
            just_opened = false;
            if c != ']' && c != '}' {
                newline(&mut out, depth);
            } else {
                depth -= 1;
                out.push(c);
                continue;
            }
        }
        match c {
            '{' | '[' => {
                out.push(c);
                depth += 1;
                just_opened = true;
            }
            '}' | ']' => {
                depth -= 1;
                newline(&mut out, depth);
                out.push(c);
            }
            ',' => {
                out.push(c);
                newline(&mut out, depth);
            }
            ':' => out.push_str(": "),
            '"' => {
                in_string = true;
                out.push(c);
            }
            c => out.push(c),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floats_as_go_writes_them() {
        let cases = [
            (1.0, "1.0"),
            (0.5, "0.5"),
            (100000.0, "100000.0"),
            (1e6, "1e+06"),
            (1234567.0, "1.234567e+06"),
            (0.0001, "0.0001"),
            (0.00001, "1e-05"),
            (-2.5, "-2.5"),
            (123.456, "123.456"),
            (1e21, "1e+21"),
            (0.0, "0.0"),
        ];
        for (f, want) in cases {
            assert_eq!(go_float(f), want, "{f}");
        }
    }

    #[test]
    fn strings_as_go_quotes_them() {
        let q = |s: &str| {
            let mut out = String::new();
            quote(s, &mut out);
            out
        };
        assert_eq!(q("a<b & \"c\""), r#""a<b & \"c\"""#, "printable ASCII: strconv.Quote");
        assert_eq!(q("a<b\n"), r#""a\u003cb\n""#, "otherwise encoding/json");
        assert_eq!(q("héllo"), "\"héllo\"");
        assert_eq!(q("\u{1}"), r#""\u0001""#);
    }

    #[test]
    fn indent_as_go_does() {
        let out = reindent(r#" {"a": [1, 2], "b": {}, "c": [], "d": "x, y: {z}"}"#, "", "\t").unwrap();
        assert_eq!(
            out,
            "{\n\t\"a\": [\n\t\t1,\n\t\t2\n\t],\n\t\"b\": {},\n\t\"c\": [],\n\t\"d\": \"x, y: {z}\"\n}"
        );
        assert_eq!(reindent("[1]", "> ", "  ").unwrap(), "[\n>   1\n> ]");
        assert!(reindent("{", "", "\t").is_err());
    }
}
