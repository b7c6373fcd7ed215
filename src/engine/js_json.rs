//! JSON text for JavaScript results made of plain data, written here instead
//! of by boa's `JSON.stringify`, which took over a third of a worker's time.
//! Anything stringify treats specially (a `toJSON`, a getter, a Date, a Map, a
//! boxed primitive, a BigInt, a proxy, a lone surrogate) makes this give up,
//! and the caller uses stringify itself, so the text is always stringify's.
//! The realm's prototypes are frozen, so a plain object or array can only
//! carry a `toJSON` of its own, which is checked.

use boa_engine::property::PropertyKey;
use boa_engine::value::JsVariant;
use boa_engine::{Context, JsObject, JsString, JsValue};

use super::{EngineError, Limits};

/// Stringify's text for `value`, or `None` when it is not plain data. Errs
/// when the value is deeper or larger than the output limits allow.
pub fn plain_json(value: &JsValue, context: &mut Context, limits: &Limits) -> Result<Option<String>, EngineError> {
    let intrinsics = context.intrinsics().constructors();
    let mut walk = Walk {
        object_proto: intrinsics.object().prototype(),
        array_proto: intrinsics.array().prototype(),
        limits,
        visits: 0,
        out: String::new(),
    };
    Ok(walk.value(value, 0, context)?.then_some(walk.out))
}

struct Walk<'a> {
    object_proto: JsObject,
    array_proto: JsObject,
    limits: &'a Limits,
    visits: usize,
    out: String,
}

/// What stringify does with a property's value.
enum Kind {
    Written,
    /// Left out of an object, `null` in an array: undefined and functions.
    Skipped,
}

impl Walk<'_> {
    /// Writes `value`; `false` when it is not plain data.
    fn value(&mut self, value: &JsValue, depth: usize, context: &mut Context) -> Result<bool, EngineError> {
        Ok(matches!(self.member(value, depth, context)?, Some(Kind::Written)))
    }

    fn member(&mut self, value: &JsValue, depth: usize, context: &mut Context) -> Result<Option<Kind>, EngineError> {
        self.visits += 1;
        if self.visits > self.limits.max_output_bytes {
            return Err(EngineError::output_size(self.visits, self.limits));
        }
        match value.variant() {
            JsVariant::Null => self.out.push_str("null"),
            JsVariant::Undefined => return Ok(Some(Kind::Skipped)),
            JsVariant::Boolean(b) => self.out.push_str(if b { "true" } else { "false" }),
            JsVariant::Integer32(n) => self.out.push_str(itoa::Buffer::new().format(n)),
            JsVariant::Float64(n) if n.is_finite() => self.out.push_str(ryu_js::Buffer::new().format_finite(n)),
            JsVariant::Float64(_) => self.out.push_str("null"),
            JsVariant::String(s) => return Ok(self.string(&s).then_some(Kind::Written)),
            JsVariant::BigInt(_) | JsVariant::Symbol(_) => return Ok(None),
            JsVariant::Object(object) if object.is_callable() => return Ok(Some(Kind::Skipped)),
            JsVariant::Object(object) => {
                if depth >= self.limits.max_output_depth {
                    return Err(EngineError::OutputDepth {
                        limit: self.limits.max_output_depth,
                    });
                }
                let plain = if object.is_array() {
                    self.array(&object, depth, context)?
                } else {
                    self.object(&object, depth, context)?
                };
                return Ok(plain.then_some(Kind::Written));
            }
        }
        Ok(Some(Kind::Written))
    }

    fn string(&mut self, s: &JsString) -> bool {
        // A lone surrogate is written as an escape by stringify.
        let Ok(text) = s.to_std_string() else {
            return false;
        };
        // serde_json escapes exactly what stringify does: `"`, `\` and
        // control characters, with the same short forms.
        let escaped = serde_json::to_string(&text).expect("a string serializes");
        self.out.push_str(&escaped);
        true
    }

    fn array(&mut self, array: &JsObject, depth: usize, context: &mut Context) -> Result<bool, EngineError> {
        if !matches!(array.prototype(), Some(p) if JsObject::equals(&p, &self.array_proto)) {
            return Ok(false);
        }
        let Ok(keys) = array.own_property_keys(context) else {
            return Ok(false);
        };
        if keys.iter().any(|k| !matches!(k, PropertyKey::Index(_)) && !is_length(k)) {
            // Extra properties are ignored by stringify but may be a toJSON.
            return Ok(false);
        }
        let Some(len) = length(array) else {
            return Ok(false);
        };
        self.out.push('[');
        for i in 0..len {
            if i > 0 {
                self.out.push(',');
            }
            // Stringify reads every index, enumerable or not; a hole reads
            // the frozen, index-free Array.prototype: undefined.
            let item = match data_property(array, &PropertyKey::from(i)) {
                Property::Data(item, _) => item,
                Property::Missing => JsValue::undefined(),
                Property::Accessor => return Ok(false),
            };
            match self.member(&item, depth + 1, context)? {
                Some(Kind::Written) => {}
                Some(Kind::Skipped) => self.out.push_str("null"),
                None => return Ok(false),
            }
        }
        self.out.push(']');
        Ok(true)
    }

    fn object(&mut self, object: &JsObject, depth: usize, context: &mut Context) -> Result<bool, EngineError> {
        let plain_proto = match object.prototype() {
            None => true,
            Some(p) => JsObject::equals(&p, &self.object_proto),
        };
        if !object.is_ordinary() || !plain_proto {
            return Ok(false);
        }
        let Ok(keys) = object.own_property_keys(context) else {
            return Ok(false);
        };
        self.out.push('{');
        let mut first = true;
        for key in keys {
            let name = match &key {
                PropertyKey::Symbol(_) => continue,
                PropertyKey::String(name) => name.clone(),
                PropertyKey::Index(i) => JsString::from(i.get().to_string()),
            };
            if name == "toJSON" {
                return Ok(false);
            }
            let item = match data_property(object, &key) {
                Property::Data(item, true) => item,
                Property::Data(_, false) | Property::Missing => continue,
                Property::Accessor => return Ok(false),
            };
            let mark = self.out.len();
            if !first {
                self.out.push(',');
            }
            if !self.string(&name) {
                return Ok(false);
            }
            self.out.push(':');
            match self.member(&item, depth + 1, context)? {
                Some(Kind::Written) => first = false,
                Some(Kind::Skipped) => self.out.truncate(mark),
                None => return Ok(false),
            }
        }
        self.out.push('}');
        Ok(true)
    }
}

enum Property {
    /// A data property's value, and whether it is enumerable.
    Data(JsValue, bool),
    Missing,
    Accessor,
}

fn data_property(object: &JsObject, key: &PropertyKey) -> Property {
    let Some(descriptor) = object.borrow().properties().get(key) else {
        return Property::Missing;
    };
    if descriptor.is_accessor_descriptor() {
        return Property::Accessor;
    }
    match descriptor.value() {
        Some(value) => Property::Data(value.clone(), descriptor.enumerable() == Some(true)),
        None => Property::Missing,
    }
}

fn is_length(key: &PropertyKey) -> bool {
    matches!(key, PropertyKey::String(name) if *name == "length")
}

fn length(array: &JsObject) -> Option<u32> {
    match data_property(array, &PropertyKey::String(JsString::from("length"))) {
        Property::Data(length, _) => length.as_number().map(|n| n as u32),
        _ => None,
    }
}
