//! Starlark: a version's source becomes the body of `def run(p)`, compiled once
//! into a frozen module; each call gets a new heap, so nothing leaks between
//! requests.

use std::cell::{Cell, RefCell};
use std::num::NonZeroUsize;
use std::time::Instant;

use lru::LruCache;
use starlark::ErrorKind;
use starlark::environment::{Globals, GlobalsBuilder, LibraryExtension, Module};
use starlark::eval::Evaluator;
use starlark::syntax::{AstModule, Dialect};
use starlark::values::dict::DictRef;
use starlark::values::list::ListRef;
use starlark::values::structs::StructRef;
use starlark::values::tuple::TupleRef;
use starlark::values::{Heap, OwnedFrozenValue, Value};

use super::{Engine, EngineError, Limits, folding, guard};
use crate::domain::Lang;

const INDENT: usize = 4;

/// The Starlark engine, with its compiled-code cache.
pub struct StarlarkEngine {
    globals: Globals,
    compiled: LruCache<String, OwnedFrozenValue>,
}

impl StarlarkEngine {
    /// An engine keeping up to `cache_entries` compiled versions.
    pub fn new(cache_entries: usize) -> Self {
        let globals = GlobalsBuilder::extended_by(&[
            LibraryExtension::StructType,
            LibraryExtension::Map,
            LibraryExtension::Filter,
            LibraryExtension::Partial,
            LibraryExtension::Json,
            LibraryExtension::SetType,
        ])
        // The original service's top-level json functions (`encode(x)`...).
        .with(super::go_json::original_json)
        .build();
        let cap = NonZeroUsize::new(cache_entries.max(1)).expect("non-zero");
        Self {
            globals,
            compiled: LruCache::new(cap),
        }
    }

    fn compile_run(&self, source: &str) -> Result<OwnedFrozenValue, EngineError> {
        guard::check_source(Lang::Starlark, source)?;
        let wrapped = wrap(source);
        let ast = AstModule::parse("config.star", wrapped, &Dialect::Extended).map_err(compile_error)?;
        folding::check(&ast, 1, INDENT)?;
        let frozen = Module::with_temp_heap(|module| {
            Evaluator::new(&module)
                .eval_module(ast, &self.globals)
                .map_err(compile_error)?;
            module
                .freeze()
                .map_err(|e| plain_compile_error(anyhow::Error::from(e).to_string()))
        })?;
        frozen.get("run").map_err(|e| plain_compile_error(e.to_string()))
    }
}

impl Engine for StarlarkEngine {
    fn compile(&mut self, code_id: &str, source: &str) -> Result<(), EngineError> {
        if !self.compiled.contains(code_id) {
            let run = self.compile_run(source)?;
            self.compiled.put(code_id.to_owned(), run);
        }
        Ok(())
    }

    fn check(&mut self, source: &str) -> Result<(), EngineError> {
        self.compile_run(source).map(|_| ())
    }

    fn forget(&mut self, code_id: &str) {
        self.compiled.pop(code_id);
    }

    fn has(&self, code_id: &str) -> bool {
        self.compiled.contains(code_id)
    }

    fn run(
        &mut self,
        code_id: &str,
        source: &str,
        params: &serde_json::Value,
        limits: &Limits,
    ) -> Result<String, EngineError> {
        self.run_on_heap(code_id, source, limits, |heap| Ok(heap.alloc(params)))
    }

    fn run_text(&mut self, code_id: &str, source: &str, params: &str, limits: &Limits) -> Result<String, EngineError> {
        self.run_on_heap(code_id, source, limits, |heap| {
            super::star_params::alloc(heap, params).map_err(super::unreadable_params)
        })
    }
}

impl StarlarkEngine {
    /// Runs `code_id` on a new heap, its params put there by `params`.
    fn run_on_heap(
        &mut self,
        code_id: &str,
        source: &str,
        limits: &Limits,
        params: impl for<'v> FnOnce(Heap<'v>) -> Result<Value<'v>, EngineError>,
    ) -> Result<String, EngineError> {
        let start = Instant::now();
        self.compile(code_id, source)?;
        let run = self.compiled.get(code_id).expect("compiled above").clone();
        let deadline = limits.deadline_from(start);
        let out = Module::with_temp_heap(|module| {
            let p = match params(module.heap()) {
                Ok(p) => p,
                Err(e) => return Ok(Err(e)),
            };
            let mut eval = Evaluator::new(&module);
            eval.set_max_callstack_size(limits.max_callstack)
                .map_err(starlark::Error::new_other)?;
            eval.set_max_heap_size(limits.heap_bytes)
                .map_err(starlark::Error::new_other)?;
            eval.set_check_cancelled(Box::new(move || Instant::now() >= deadline));
            let function = module.heap().access_owned_frozen_value(&run);
            let value = eval.eval_function(function, &[p], &[])?;
            Ok(to_json(value, limits))
        })
        .map_err(|e| runtime_error(e, limits, deadline))??;
        if out.len() > limits.max_output_bytes {
            return Err(EngineError::output_size(out.len(), limits));
        }
        Ok(out)
    }
}

/// The result as JSON text, written in one walk that is bounded in depth
/// and in values visited: starlark's own `to_json` recurses without a bound
/// (forever on a list that holds itself), writes a shared value out once per
/// reference, and goes through dynamic dispatch for every value (it took more
/// of a worker's time than running the script). Every visited value adds at
/// least a byte to the output, so the visit budget is the output limit.
fn to_json(value: Value, limits: &Limits) -> Result<String, EngineError> {
    let walk = Walk {
        limits,
        visits: Cell::new(0),
        refused: RefCell::new(None),
    };
    // serde_json starts from 128 bytes; a result of a few KB was copied
    // as often as it doubled.
    let mut out = Vec::with_capacity(OUTPUT_START);
    serde_json::to_writer(
        &mut out,
        &Json {
            value,
            depth: 0,
            walk: &walk,
        },
    )
    .map_err(|e| {
        walk.refused
            .take()
            .unwrap_or_else(|| EngineError::Runtime { message: e.to_string() })
    })?;
    // serde_json writes UTF-8.
    String::from_utf8(out).map_err(|e| EngineError::Runtime { message: e.to_string() })
}

/// The room a result's JSON starts with.
const OUTPUT_START: usize = 2048;

struct Walk<'a> {
    limits: &'a Limits,
    visits: Cell<usize>,
    /// Why the walk stopped, when a limit stopped it.
    refused: RefCell<Option<EngineError>>,
}

struct Json<'w, 'v> {
    value: Value<'v>,
    depth: usize,
    walk: &'w Walk<'w>,
}

impl Json<'_, '_> {
    fn child<'v>(&self, value: Value<'v>) -> Json<'_, 'v> {
        Json {
            value,
            depth: self.depth + 1,
            walk: self.walk,
        }
    }

    fn refuse<E: serde::ser::Error>(&self, error: EngineError) -> E {
        let message = error.to_string();
        *self.walk.refused.borrow_mut() = Some(error);
        E::custom(message)
    }
}

impl serde::Serialize for Json<'_, '_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::{SerializeMap, SerializeSeq};
        let limits = self.walk.limits;
        let visits = self.walk.visits.get() + 1;
        self.walk.visits.set(visits);
        if visits > limits.max_output_bytes {
            return Err(self.refuse(EngineError::output_size(visits, limits)));
        }
        let value = self.value;
        // The common scalars first, each one cheap check: most values are.
        if let Some(text) = value.unpack_str() {
            return serializer.serialize_str(text);
        }
        if value.is_none() {
            return serializer.serialize_unit();
        }
        if let Some(b) = value.unpack_bool() {
            return serializer.serialize_bool(b);
        }
        if let Some(i) = value.unpack_i32() {
            return serializer.serialize_i32(i);
        }
        let deep = || {
            Err(self.refuse(EngineError::OutputDepth {
                limit: limits.max_output_depth,
            }))
        };
        let too_deep = self.depth >= limits.max_output_depth;
        if let Some(list) = ListRef::from_value(value) {
            if too_deep {
                return deep();
            }
            let mut seq = serializer.serialize_seq(Some(list.len()))?;
            for item in list.iter() {
                seq.serialize_element(&self.child(item))?;
            }
            seq.end()
        } else if let Some(tuple) = TupleRef::from_value(value) {
            if too_deep {
                return deep();
            }
            let mut seq = serializer.serialize_seq(Some(tuple.len()))?;
            for item in tuple.iter() {
                seq.serialize_element(&self.child(item))?;
            }
            seq.end()
        } else if let Some(dict) = DictRef::from_value(value) {
            if too_deep {
                return deep();
            }
            let mut map = serializer.serialize_map(Some(dict.len()))?;
            for (key, item) in dict.iter() {
                // A key that is not a string goes through starlark's own
                // serializer, which decides as `to_json` does.
                match key.unpack_str() {
                    Some(key) => map.serialize_key(key)?,
                    None => map.serialize_key(&key)?,
                }
                map.serialize_value(&self.child(item))?;
            }
            map.end()
        } else if let Some(fields) = StructRef::from_value(value) {
            if too_deep {
                return deep();
            }
            let mut map = serializer.serialize_map(None)?;
            for (name, item) in fields.iter() {
                map.serialize_entry(name.as_str(), &self.child(item))?;
            }
            map.end()
        } else {
            // Scalars (None, bools, ints of any size, floats) and anything
            // else: starlark's serializer.
            value.serialize(serializer)
        }
    }
}

/// Makes the source the body of `def run(p):`. Line numbers stay the same
/// because the `def` line replaces line 0.
fn wrap(source: &str) -> String {
    let mut out = String::with_capacity(source.len() + source.lines().count() * INDENT + 16);
    out.push_str("def run(p):\n");
    let mut any = false;
    for line in source.lines() {
        out.push_str("    ");
        out.push_str(line);
        out.push('\n');
        any |= !line.trim().is_empty() && !line.trim_start().starts_with('#');
    }
    if !any {
        out.push_str("    return None\n");
    }
    out
}

fn compile_error(e: starlark::Error) -> EngineError {
    let (line, column) = e
        .span()
        .map(|s| {
            let pos = s.resolve_span().begin;
            (pos.line, (pos.column + 1).saturating_sub(INDENT))
        })
        .unwrap_or((0, 0));
    EngineError::Compile {
        message: e.without_diagnostic().to_string(),
        line,
        column: column.max(1),
    }
}

fn plain_compile_error(message: String) -> EngineError {
    EngineError::Compile {
        message,
        line: 0,
        column: 0,
    }
}

fn runtime_error(e: starlark::Error, limits: &Limits, deadline: Instant) -> EngineError {
    if Instant::now() >= deadline {
        return EngineError::Deadline {
            deadline_ms: limits.deadline_ms,
        };
    }
    let message = e.without_diagnostic().to_string();
    match e.kind() {
        ErrorKind::StackOverflow(_) => EngineError::Recursion {
            limit: limits.max_callstack,
        },
        _ if message.contains("heap") && message.contains("limit") => EngineError::Memory { message },
        _ => {
            let at = e.span().map(|s| s.resolve_span().begin.line).filter(|l| *l > 0);
            let message = match at {
                Some(line) => format!("line {line}: {message}"),
                None => message,
            };
            EngineError::Runtime { message }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn run(source: &str, params: serde_json::Value) -> Result<String, EngineError> {
        StarlarkEngine::new(4).run("c1", source, &params, &Limits::roomy())
    }

    #[test]
    fn the_originals_json_functions_are_predeclared() {
        let text = |src: &str| serde_json::from_str::<String>(&run(src, json!({})).unwrap()).unwrap();
        assert_eq!(
            text("return encode({'b': 1, 'a': [1.0, 'x', None, True], 'c': (2, 1e6)})"),
            r#"{"a":[1.0,"x",null,true],"b":1,"c":[2,1e+06]}"#,
            "keys sorted, floats as Go writes them"
        );
        assert_eq!(
            run(
                "d = decode('{\"n\": 1, \"f\": 1.5, \"l\": [true]}')\nreturn [d['n'] + 1, d['f'], d['l']]",
                json!({})
            )
            .unwrap(),
            "[2,1.5,[true]]"
        );
        assert_eq!(text("return indent('{\"a\":[1]}')"), "{\n\t\"a\": [\n\t\t1\n\t]\n}");
        assert_eq!(text("return encode_indent({'a': 1}, indent='  ')"), "{\n  \"a\": 1\n}");
        // Names a script defines itself still win.
        assert_eq!(run("encode = 5\nreturn encode", json!({})).unwrap(), "5");
        let err = run("return encode({1: 2})", json!({})).unwrap_err().to_string();
        assert!(err.contains("encode: dict has int key, want string"), "{err}");
        let err = run("l = []\nl.append(l)\nreturn encode(l)", json!({}))
            .unwrap_err()
            .to_string();
        assert!(err.contains("cycle in JSON structure"), "{err}");
    }

    #[test]
    fn returns_json_text() {
        let src = "if p[\"version_code\"] > 100:\n    return \"valid\"\nreturn \"invalid\"";
        assert_eq!(run(src, json!({"version_code": 101})).unwrap(), "\"valid\"");
        assert_eq!(run(src, json!({"version_code": 1})).unwrap(), "\"invalid\"");
        assert_eq!(
            run("return {'a': [1, 2.5, True, None]}", json!({})).unwrap(),
            r#"{"a":[1,2.5,true,null]}"#
        );
    }

    #[test]
    fn compile_error_has_line_and_column() {
        let err = StarlarkEngine::new(4)
            .compile("c", "x = 1\ny = = 2\nreturn x")
            .unwrap_err();
        match err {
            EngineError::Compile { line, column, .. } => assert_eq!((line, column), (2, 5)),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn runtime_error_names_the_line() {
        let err = run("x = 1\nreturn p['missing']", json!({})).unwrap_err();
        assert!(
            matches!(&err, EngineError::Runtime { message } if message.starts_with("line 2")),
            "{err:?}"
        );
    }

    #[test]
    fn loop_hits_the_deadline() {
        let limits = Limits {
            deadline_ms: 30,
            ..Limits::default()
        };
        let started = Instant::now();
        let err = StarlarkEngine::new(4)
            .run("c", "for i in range(2147483647):\n    pass", &json!({}), &limits)
            .unwrap_err();
        assert_eq!(err, EngineError::Deadline { deadline_ms: 30 });
        assert!(started.elapsed().as_millis() < 5000);
    }

    #[test]
    fn recursion_is_capped() {
        let src = "def f(n):\n    return f(n + 1)\nreturn f(0)";
        let got = run(src, json!({}));
        assert!(matches!(got, Err(EngineError::Recursion { .. })), "{got:?}");
    }

    #[test]
    fn calls_do_not_share_state() {
        let mut engine = StarlarkEngine::new(4);
        let src = "d = p['d']\nd['n'] = d.get('n', 0) + 1\nreturn d['n']";
        for _ in 0..3 {
            assert_eq!(engine.run("c", src, &json!({"d": {}}), &Limits::roomy()).unwrap(), "1");
        }
    }

    #[test]
    fn output_shape_limits_are_named() {
        let limits = Limits {
            max_output_bytes: 64 << 10,
            ..Limits::roomy()
        };
        let mut engine = StarlarkEngine::new(4);
        let mut run = |src: &str| engine.run(src, src, &json!({}), &limits);
        let got = run("a = []\nfor i in range(10000):\n    a = [a]\nreturn a");
        assert!(matches!(got, Err(EngineError::OutputDepth { .. })), "{got:?}");
        let got = run("a = []\na.append(a)\nreturn a");
        assert!(matches!(got, Err(EngineError::OutputDepth { .. })), "{got:?}");
        let got = run("a = [1]\nfor i in range(40):\n    a = [a, a]\nreturn a");
        assert!(matches!(got, Err(EngineError::OutputSize { .. })), "{got:?}");
        let got = run("return {'k': struct(v = [(1, 2)])}");
        assert_eq!(got.unwrap(), r#"{"k":{"v":[[1,2]]}}"#);
    }

    #[test]
    fn constant_folding_is_bounded() {
        let mut engine = StarlarkEngine::new(4);
        for src in [
            "return 'a' * 2000000000",
            "x = 1\nreturn [0] * (1000 * 1000 * 1000)",
            "return ('ab' * 500) * 2000000 + 'c'",
            "return 1 << (1 << 30)",
        ] {
            let got = engine.check(src);
            assert!(
                matches!(&got, Err(EngineError::Compile { message, .. }) if message.starts_with("compile limit")),
                "{src}: {got:?}"
            );
        }
        match engine.check("x = 1\ny = 2 + 'a' * 3000000") {
            Err(EngineError::Compile { line, column, .. }) => assert_eq!((line, column), (2, 9)),
            other => panic!("{other:?}"),
        }
        // Ordinary arithmetic on constants is not a repeat.
        engine.check("return 86400 * 1000 * 365 + len('a' * 1000)").unwrap();
    }
}
