//! A run's params, from the JSON text of the request frame straight onto a
//! Starlark heap: no `serde_json::Value` between (building one and copying
//! it onto the heap took a tenth of a worker's time under load). The values
//! are the ones starlark's own `heap.alloc(&serde_json::Value)` makes, dict
//! keys in the same (sorted) order and the last of a repeated key kept, so
//! scripts see what they saw before.

use std::borrow::Cow;
use std::cell::RefCell;
use std::fmt;
use std::str::FromStr;

use serde::de::{DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use starlark::collections::{Hashed, SmallMap};
use starlark::values::dict::Dict;
use starlark::values::list::AllocList;
use starlark::values::{Heap, Value};

/// The key serde_json gives a number it keeps as text
/// (`arbitrary_precision`, which a dependency turns on).
const NUMBER_KEY: &str = "$serde_json::private::Number";

/// Keys of nested dicts allocated once per call and shared by every dict
/// that has them: params are often a list of objects with the same keys (a
/// catalog of 64 entries has five keys 64 times), and a shared key is
/// hashed once. The top level's keys are each met once, so they are not
/// looked up.
const MAX_SHARED_KEYS: usize = 64;

/// Key orders of nested dicts remembered per call: a list of objects
/// written by one program has a handful of them.
const MAX_SHAPES: usize = 16;

/// `text` (JSON) as a value on `heap`.
pub fn alloc<'v>(heap: Heap<'v>, text: &str) -> serde_json::Result<Value<'v>> {
    let mut deserializer = serde_json::Deserializer::from_str(text);
    let keys = RefCell::default();
    let value = OnHeap(heap, &keys, false).deserialize(&mut deserializer)?;
    deserializer.end()?;
    Ok(value)
}

/// What one call has met in nested dicts so far: their keys, on the heap
/// and hashed, and their shapes.
#[derive(Default)]
struct Met<'v> {
    keys: Vec<Hashed<Value<'v>>>,
    shapes: Vec<Shape<'v>>,
}

type Keys<'v> = RefCell<Met<'v>>;

/// The keys of a dict in the order they came, and what a dict with them
/// is made of: which entry goes where (sorted, the last of a repeated key)
/// under which key. The next dict with the same keys in the same order (a
/// catalog's 64 entries) skips the sort and every key lookup.
struct Shape<'v> {
    names: Vec<Box<str>>,
    picks: Vec<(usize, Hashed<Value<'v>>)>,
}

impl Shape<'_> {
    fn fits(&self, entries: &[(Cow<'_, str>, Value<'_>)]) -> bool {
        self.names.len() == entries.len() && self.names.iter().zip(entries).all(|(n, (k, _))| **n == **k)
    }
}

/// The heap, the keys met so far, and whether the value read now is
/// nested in another.
#[derive(Clone, Copy)]
struct OnHeap<'v, 'k>(Heap<'v>, &'k Keys<'v>, bool);

impl<'v> OnHeap<'v, '_> {
    /// `key` on the heap, hashed: the one already made for it if any.
    fn key(&self, key: &str) -> Hashed<Value<'v>> {
        let made = |key: &str| self.0.alloc_str(key).to_value().get_hashed().expect("strings hash");
        if !self.2 {
            return made(key);
        }
        let keys = &mut self.1.borrow_mut().keys;
        if let Some(value) = keys.iter().find(|k| k.key().unpack_str() == Some(key)) {
            return *value;
        }
        let hashed = made(key);
        if keys.len() < MAX_SHARED_KEYS {
            keys.push(hashed);
        }
        hashed
    }

    /// The dict of `entries` (in the order they came): sorted by key, the
    /// last of a repeated key kept, as serde_json's map is.
    fn dict(&self, entries: Vec<(Cow<'_, str>, Value<'v>)>) -> Value<'v> {
        let known = self.2.then(|| {
            let met = self.1.borrow();
            let shape = met.shapes.iter().find(|shape| shape.fits(&entries))?;
            let mut dict = SmallMap::with_capacity(shape.picks.len());
            for (at, key) in &shape.picks {
                dict.insert_hashed_unique_unchecked(*key, entries[*at].1);
            }
            Some(dict)
        });
        if let Some(Some(dict)) = known {
            return self.0.alloc(Dict::new(dict));
        }
        let mut order: Vec<usize> = (0..entries.len()).collect();
        if !entries.is_sorted_by(|a, b| a.0 < b.0) {
            // Stable: of a repeated key, the last comes last.
            order.sort_by(|a, b| entries[*a].0.cmp(&entries[*b].0));
        }
        let mut picks = Vec::with_capacity(order.len());
        for (i, at) in order.iter().enumerate() {
            if order.get(i + 1).is_some_and(|next| entries[*next].0 == entries[*at].0) {
                continue;
            }
            picks.push((*at, self.key(&entries[*at].0)));
        }
        let mut dict = SmallMap::with_capacity(picks.len());
        for (at, key) in &picks {
            dict.insert_hashed_unique_unchecked(*key, entries[*at].1);
        }
        let mut met = self.1.borrow_mut();
        if self.2 && met.shapes.len() < MAX_SHAPES {
            let names = entries.iter().map(|(k, _)| Box::from(&**k)).collect();
            met.shapes.push(Shape { names, picks });
        }
        self.0.alloc(Dict::new(dict))
    }

    /// The same, for the values inside this one.
    fn inner(self) -> Self {
        Self(self.0, self.1, true)
    }
}

impl<'de, 'v> DeserializeSeed<'de> for OnHeap<'v, '_> {
    type Value = Value<'v>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value<'v>, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de, 'v> Visitor<'de> for OnHeap<'v, '_> {
    type Value = Value<'v>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("JSON")
    }

    fn visit_unit<E>(self) -> Result<Value<'v>, E> {
        Ok(Value::new_none())
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value<'v>, E> {
        Ok(Value::new_bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value<'v>, E> {
        Ok(self.0.alloc(v))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value<'v>, E> {
        Ok(self.0.alloc(v))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Value<'v>, E> {
        Ok(self.0.alloc(v))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value<'v>, E> {
        Ok(self.0.alloc(v))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value<'v>, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0));
        while let Some(item) = seq.next_element_seed(self.inner())? {
            items.push(item);
        }
        Ok(self.0.alloc(AllocList(items)))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value<'v>, A::Error> {
        let mut entries: Vec<(Cow<'de, str>, Value<'v>)> = Vec::new();
        while let Some(key) = map.next_key_seed(Key)? {
            if entries.is_empty() && key == NUMBER_KEY {
                let text: Cow<'de, str> = map.next_value_seed(Key)?;
                return number(self.0, &text).map_err(serde::de::Error::custom);
            }
            entries.push((key, map.next_value_seed(self.inner())?));
        }
        Ok(self.dict(entries))
    }
}

/// A number kept as text, as starlark allocates a `serde_json::Number`,
/// except that one no Starlark number holds (`1e400`: too big for a float,
/// not an integer) is refused, where starlark's own allocation panics.
fn number<'v>(heap: Heap<'v>, text: &str) -> Result<Value<'v>, String> {
    let number = serde_json::Number::from_str(text).map_err(|e| format!("the number {text}: {e}"))?;
    let fits = number.as_u64().is_some()
        || number.as_i64().is_some()
        || number.as_f64().is_some()
        || !text.contains(['.', 'e', 'E']);
    match fits {
        true => Ok(heap.alloc(&number)),
        false => Err(format!("the number {text} is out of range")),
    }
}

/// A map key (or a number's text), borrowed from the frame when it has no
/// escapes.
struct Key;

impl<'de> DeserializeSeed<'de> for Key {
    type Value = Cow<'de, str>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Cow<'de, str>, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for Key {
    type Value = Cow<'de, str>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a string")
    }

    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Cow<'de, str>, E> {
        Ok(Cow::Borrowed(v))
    }

    fn visit_str<E>(self, v: &str) -> Result<Cow<'de, str>, E> {
        Ok(Cow::Owned(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Cow<'de, str>, E> {
        Ok(Cow::Owned(v))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use starlark::environment::Module;

    /// The heap's value for `text`, by this walk and by starlark's own
    /// allocation of a parsed `serde_json::Value`, as repr strings.
    fn both(text: &str) -> (String, String) {
        Module::with_temp_heap(|module| {
            let heap = module.heap();
            let direct = alloc(heap, text).unwrap();
            let parsed: serde_json::Value = serde_json::from_str(text).unwrap();
            let via_value = heap.alloc(&parsed);
            assert_eq!(direct.get_type(), via_value.get_type(), "{text}");
            (direct.to_repr(), via_value.to_repr())
        })
    }

    #[test]
    fn the_values_are_those_of_a_parsed_value() {
        for text in [
            r#"{"b": 1, "a": [true, null, 2.5, "x\"y"], "c": {"z": {}, "y": []}}"#,
            r#"{"k": 1, "k": 2, "a\u00e9": -3}"#,
            r#"{"big": 123456789012345678901234567890, "neg": -9223372036854775808, "u": 18446744073709551615}"#,
            r#"{"f": 1e300, "g": -0.0, "h": 1.0, "i": 0}"#,
            r#"[1, "two", [3], {"four": 4}]"#,
            // Keys shared by nested dicts, one also a top-level key.
            r#"{"a": [{"a": 1, "b": [2]}, {"b": 3, "a": 4}, {"b": 5, "b": 6}], "b": {"a": {"a": 7}}}"#,
            // Shapes met again: the same keys in the same order, another
            // order, a repeated key, one key more, escaped keys.
            r#"[{"b": 1, "a": 2}, {"b": 3, "a": 4}, {"a": 5, "b": 6}, {"b": 7, "b": 8, "a": 9}, {"b": 7, "b": 8, "a": 9}, {"b": 1, "a": 2, "c": 3}, {"\u0062": 1, "a": 2}]"#,
            r#""plain""#,
            "null",
            "{}",
        ] {
            let (direct, via_value) = both(text);
            assert_eq!(direct, via_value, "{text}");
        }
    }

    #[test]
    fn text_that_is_not_json_is_refused() {
        Module::with_temp_heap(|module| {
            for text in ["{", "{\"a\": }", "[1,]", "{} x", "", "{\"x\": 1e400}", "[-1e309]"] {
                assert!(alloc(module.heap(), text).is_err(), "{text}");
            }
        });
    }
}
