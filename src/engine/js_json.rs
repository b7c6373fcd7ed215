//! JSON text for JavaScript results made of plain data, written here instead
//! of by boa's `JSON.stringify`, which took over a third of a worker's time.
//! Anything stringify treats specially (a `toJSON`, a getter, a Date, a Map, a
//! boxed primitive, a BigInt, a proxy, a lone surrogate) makes this give up,
//! and the caller uses stringify itself, so the text is always stringify's.
//! The realm's prototypes are frozen, so a plain object or array can only
//! carry a `toJSON` of its own, which is checked. `check_shape` bounds a
//! value before stringify gets it.

use boa_engine::object::builtins::JsArray;
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
        if keys
            .iter()
            .any(|k| !matches!(k, PropertyKey::Index(_)) && !is_length(k))
        {
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

/// Walks the result before serializing it: native JSON.stringify recurses
/// without a bound, and a value shared many times over would be written out
/// many times over. Every visited value adds at least a byte to the output.
pub fn check_shape(
    value: &JsValue,
    depth: usize,
    visits: &mut usize,
    limits: &Limits,
    context: &mut Context,
) -> Result<(), EngineError> {
    *visits += 1;
    if *visits > limits.max_output_bytes {
        return Err(EngineError::output_size(*visits, limits));
    }
    let Some(object) = value.as_object() else {
        return Ok(());
    };
    if object.is_callable() {
        return Ok(());
    }
    if depth >= limits.max_output_depth {
        return Err(EngineError::OutputDepth {
            limit: limits.max_output_depth,
        });
    }
    let error = |e| super::js_errors::runtime_error(e, limits);
    if let Ok(array) = JsArray::from_object(object.clone()) {
        let len = array.length(context).map_err(error)?;
        for i in 0..len {
            let item = array.get(i, context).map_err(error)?;
            check_shape(&item, depth + 1, visits, limits, context)?;
        }
        return Ok(());
    }
    for key in object.own_property_keys(context).map_err(error)? {
        if matches!(key, PropertyKey::Symbol(_)) {
            continue;
        }
        let item = object.get(key, context).map_err(error)?;
        check_shape(&item, depth + 1, visits, limits, context)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use boa_engine::{JsResult, Source, js_string};

    use super::*;

    /// Each case: a JavaScript expression, and whether it is plain data that
    /// is written without `JSON.stringify`. Either way the text must be
    /// stringify's.
    const STRINGIFY_CASES: &[(&str, bool)] = &[
        (r#"({a: 1, b: [1, 2, {c: "x"}], d: null, e: true, f: false})"#, true),
        (
            "[0, -0, 1.5, 1e21, 1e-7, 123456789012345680000, NaN, Infinity, -Infinity, 0.1 + 0.2]",
            true,
        ),
        (
            "[2 ** 53, -1, 2147483648, 5e-324, 1.7976931348623157e308, 1.0, 100, 1e100, -1e-100, 0.000001, 1.5e-7]",
            true,
        ),
        (r#""\u0000\u001f\"\\\n\t\b\f\r\u2028é😀/""#, true),
        (
            r#"({u: undefined, f: function () {}, s: "k", n: [undefined, function () {}]})"#,
            true,
        ),
        ("[1, , 3]", true),
        (r#"({"2": 1, "1": 2, b: 3, a: 4, "-1": 5, "01": 6})"#, true),
        ("[{}, [], [[[]]]]", true),
        ("Object.assign(Object.create(null), {x: 1})", true),
        (
            r#"Object.defineProperty({a: 1}, "hidden", {value: 2, enumerable: false})"#,
            true,
        ),
        ("Object.defineProperty([1, 2], 0, {value: 9, enumerable: false})", true),
        (r#"({[Symbol("k")]: 1, a: 2})"#, true),
        (r#"({a: {b: {c: [1, {d: "e"}]}}, "é": "ü", "\n": 1})"#, true),
        ("({get g() { return 1 }})", false),
        ("({toJSON() { return 5 }})", false),
        ("[{toJSON() { return 5 }}]", false),
        ("new Date(0)", false),
        (r#"[new Number(3), new String("s"), new Boolean(false)]"#, false),
        ("new Map([[1, 2]])", false),
        (r#"Symbol("s")"#, false),
        ("undefined", false),
        ("(function () {})", false),
        (r#""\ud800""#, false),
        ("Object.assign([1, 2], {extra: 3})", false),
        ("new (class A { constructor() { this.x = 1 } })()", false),
        ("new Proxy({a: 1}, {})", false),
    ];

    /// `JSON.stringify(value)` as text; stringify's `undefined` is "null",
    /// as the engine answers it.
    fn stringify(value: &JsValue, context: &mut Context) -> JsResult<String> {
        let json = context.intrinsics().objects().json();
        let stringify = json.get(js_string!("stringify"), context)?;
        let text = stringify.as_callable().expect("JSON.stringify is callable").call(
            &JsValue::undefined(),
            std::slice::from_ref(value),
            context,
        )?;
        Ok(text
            .as_string()
            .map_or_else(|| "null".into(), |t| t.to_std_string_lossy()))
    }

    #[test]
    fn plain_results_are_written_as_json_stringify_writes_them() {
        let mut context = Context::default();
        let limits = Limits::roomy();
        for (source, plain) in STRINGIFY_CASES {
            let value = context.eval(Source::from_bytes(source)).unwrap();
            let native = stringify(&value, &mut context).unwrap();
            let fast = plain_json(&value, &mut context, &limits).unwrap();
            assert_eq!(fast.is_some(), *plain, "{source}: {fast:?}");
            if let Some(fast) = fast {
                assert_eq!(fast, native, "{source}");
            }
        }
        // A BigInt is refused by stringify, and so left to it.
        let big = context.eval(Source::from_bytes("[1n]")).unwrap();
        assert!(plain_json(&big, &mut context, &limits).unwrap().is_none());
        assert!(stringify(&big, &mut context).is_err());
    }
}
