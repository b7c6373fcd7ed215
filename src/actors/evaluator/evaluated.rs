//! A run's result as the fetch routes send it: its JSON text, and the same
//! text as a JSON string, which is what the original route's `result`
//! holds. The string is escaped once, when first asked for, so a memoized
//! result is never escaped again.

use std::sync::OnceLock;

use serde_json::value::RawValue;

/// A result, shared by the memo and every request it answers.
#[derive(Debug)]
pub struct Evaluated {
    json: Box<RawValue>,
    quoted: OnceLock<Box<str>>,
}

impl Evaluated {
    /// Wraps a worker's result.
    pub fn new(json: Box<RawValue>) -> Self {
        Self {
            json,
            quoted: OnceLock::new(),
        }
    }

    /// The result as a JSON string literal (quotes included), escaped once.
    pub fn quoted(&self) -> &str {
        self.quoted.get_or_init(|| {
            // Room for the text, its quotes and some escapes at once:
            // grown from serde_json's 128 bytes, a few KB of result was
            // copied five times over.
            let text = self.json.get();
            let mut out = Vec::with_capacity(text.len() + text.len() / 4 + 2);
            // Writing a str into a Vec cannot fail, and writes UTF-8.
            let _ = serde_json::to_writer(&mut out, text);
            String::from_utf8(out).unwrap_or_default().into()
        })
    }
}

impl std::ops::Deref for Evaluated {
    type Target = RawValue;

    fn deref(&self) -> &RawValue {
        &self.json
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_quoted_form_is_the_json_text_as_a_string() {
        let raw = RawValue::from_string(r#"{"a":"x\"y","b":[1]}"#.into()).unwrap();
        let evaluated = Evaluated::new(raw);
        assert_eq!(evaluated.quoted(), r#""{\"a\":\"x\\\"y\",\"b\":[1]}""#);
        let back: String = serde_json::from_str(evaluated.quoted()).unwrap();
        assert_eq!(back, evaluated.get());
    }
}
