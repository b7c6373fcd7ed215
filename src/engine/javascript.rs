//! JavaScript on boa: one long-lived Context per worker whose globals and
//! built-in prototypes are frozen after set-up, so a request can leave nothing
//! behind for the next. A version's source becomes the body of a function that
//! is created afresh by every run of its cached script, so even properties set
//! on the function itself do not survive.
//!
//! boa has no interrupt: the script runs with an instruction budget and is
//! polled until the deadline, then dropped. A Context whose run was dropped
//! midway is discarded. Native callbacks (`forEach`) run outside the budget;
//! the process around this engine kills it at the deadline plus a grace.

use std::num::NonZeroUsize;
use std::pin::pin;
use std::rc::Rc;
use std::task::{Context as TaskContext, Poll, Waker};
use std::time::Instant;

use boa_engine::job::IdleJobExecutor;
use boa_engine::{Context, JsError, JsObject, JsResult, JsValue, NativeFunction, Script, Source, js_string};
use lru::LruCache;

use super::js_errors::{LOOP_ITERATIONS, runtime_error};
use super::{Engine, EngineError, Limits, guard, js_json};
use crate::domain::Lang;

/// Instructions between two looks at the clock.
const BUDGET: u32 = 2_000;
/// Values on the operand stack.
const STACK_SIZE: usize = 64 * 1024;
const PARAMS_FN: &str = "__vane_params";

/// The wrapper's first line; the source starts on line 2.
const PREFIX: &str = "(function (p) {\n";
const SUFFIX: &str = "\n})(__vane_params())";

const FREEZE: &str = r#"(function () {
  const roots = [
    globalThis,
    Object.getPrototypeOf(function* () {}),
    Object.getPrototypeOf((function* () {})()),
    Object.getPrototypeOf(async function () {}),
    Object.getPrototypeOf(async function* () {}),
    Object.getPrototypeOf([][Symbol.iterator]()),
    Object.getPrototypeOf(new Map()[Symbol.iterator]()),
    Object.getPrototypeOf(new Set()[Symbol.iterator]()),
    Object.getPrototypeOf(""[Symbol.iterator]()),
    Object.getPrototypeOf("a".matchAll(/a/g)),
  ];
  const seen = new Set();
  const stack = roots.slice();
  while (stack.length > 0) {
    const o = stack.pop();
    if (o === null || (typeof o !== "object" && typeof o !== "function") || seen.has(o)) continue;
    seen.add(o);
    stack.push(Object.getPrototypeOf(o));
    for (const key of Reflect.ownKeys(o)) {
      const d = Object.getOwnPropertyDescriptor(o, key);
      if (d !== undefined) stack.push(d.value, d.get, d.set);
    }
  }
  for (const o of seen) Object.freeze(o);
  return JSON.stringify;
})()"#;

/// Params of the run in progress, read by `__vane_params()`.
struct Params(JsValue);

/// The JavaScript engine (Boa), with its compiled-code cache.
pub struct JsEngine {
    cache_entries: NonZeroUsize,
    runtime: Option<Runtime>,
    /// Contexts thrown away after a deadline, for the worker's recycling.
    pub discarded: u64,
}

/// Field order is drop order: compiled scripts go before their Context.
struct Runtime {
    scripts: LruCache<String, Script>,
    stringify: JsObject,
    context: Context,
}

impl JsEngine {
    /// An engine keeping up to `cache_entries` compiled versions.
    pub fn new(cache_entries: usize) -> Self {
        let cache_entries = NonZeroUsize::new(cache_entries.max(1)).expect("non-zero");
        Self {
            cache_entries,
            // Built before the worker says it is ready: the parent's kill timer
            // would otherwise charge the set-up to the first request.
            runtime: Runtime::new(cache_entries).ok(),
            discarded: 0,
        }
    }

    /// Builds a discarded Context again; the worker calls this between
    /// requests so no request waits for it.
    pub fn prepare(&mut self) {
        if self.runtime.is_none() {
            self.runtime = Runtime::new(self.cache_entries).ok();
        }
    }

    fn runtime(&mut self) -> Result<&mut Runtime, EngineError> {
        if self.runtime.is_none() {
            self.runtime = Some(Runtime::new(self.cache_entries)?);
        }
        Ok(self.runtime.as_mut().expect("set above"))
    }
}

impl Runtime {
    fn new(cache_entries: NonZeroUsize) -> Result<Self, EngineError> {
        let setup = |e: JsError| EngineError::Runtime {
            message: format!("javascript set-up failed: {e}"),
        };
        let mut context = Context::builder()
            .job_executor(Rc::new(IdleJobExecutor))
            .build()
            .map_err(setup)?;
        let params = NativeFunction::from_fn_ptr(|_, _, context| {
            Ok(context.get_data::<Params>().map(|p| p.0.clone()).unwrap_or_default())
        });
        context
            .register_global_builtin_callable(js_string!(PARAMS_FN), 0, params)
            .map_err(setup)?;
        let stringify = context.eval(Source::from_bytes(FREEZE)).map_err(setup)?;
        let stringify = stringify.as_object().ok_or_else(|| EngineError::Runtime {
            message: "javascript set-up failed: JSON.stringify is not an object".into(),
        })?;
        Ok(Self {
            scripts: LruCache::new(cache_entries),
            stringify,
            context,
        })
    }

    fn compile(&mut self, code_id: &str, source: &str) -> Result<Script, EngineError> {
        if let Some(script) = self.scripts.get(code_id) {
            return Ok(script.clone());
        }
        let script = parse(source, &mut self.context)?;
        self.scripts.put(code_id.to_owned(), script.clone());
        Ok(script)
    }

    /// Runs `script` under the budget until it finishes or the deadline
    /// passes. `Err(None)` means the deadline passed and the Context is now
    /// unusable.
    fn evaluate(&mut self, script: &Script, deadline: Instant) -> Result<JsResult<JsValue>, ()> {
        let mut run = pin!(script.evaluate_async_with_budget(&mut self.context, BUDGET));
        let mut task = TaskContext::from_waker(Waker::noop());
        loop {
            if let Poll::Ready(result) = run.as_mut().poll(&mut task) {
                return Ok(result);
            }
            if Instant::now() >= deadline {
                return Err(());
            }
        }
    }

    fn serialize(&mut self, value: JsValue, limits: &Limits) -> Result<String, EngineError> {
        let text = match js_json::plain_json(&value, &mut self.context, limits)? {
            Some(text) => text,
            None => self.stringify(value, limits)?,
        };
        if text.len() > limits.max_output_bytes {
            return Err(EngineError::output_size(text.len(), limits));
        }
        Ok(text)
    }

    /// The realm's own `JSON.stringify`, for results that are not plain data.
    fn stringify(&mut self, value: JsValue, limits: &Limits) -> Result<String, EngineError> {
        let mut visits = 0;
        js_json::check_shape(&value, 0, &mut visits, limits, &mut self.context)?;
        let text = self
            .stringify
            .call(&JsValue::undefined(), &[value], &mut self.context)
            .map_err(|e| runtime_error(e, limits))?;
        Ok(text
            .as_string()
            .map_or_else(|| "null".into(), |text| text.to_std_string_lossy()))
    }
}

impl Engine for JsEngine {
    fn compile(&mut self, code_id: &str, source: &str) -> Result<(), EngineError> {
        self.runtime()?.compile(code_id, source).map(|_| ())
    }

    fn check(&mut self, source: &str) -> Result<(), EngineError> {
        let runtime = self.runtime()?;
        parse(source, &mut runtime.context).map(|_| ())
    }

    fn forget(&mut self, code_id: &str) {
        if let Some(runtime) = &mut self.runtime {
            runtime.scripts.pop(code_id);
        }
    }

    fn has(&self, code_id: &str) -> bool {
        self.runtime.as_ref().is_some_and(|r| r.scripts.contains(code_id))
    }

    fn run(
        &mut self,
        code_id: &str,
        source: &str,
        params: &serde_json::Value,
        limits: &Limits,
    ) -> Result<String, EngineError> {
        let runtime = self.runtime()?;
        let deadline = limits.deadline_from(Instant::now());
        let script = runtime.compile(code_id, source)?;
        let js_params = JsValue::from_json(params, &mut runtime.context).map_err(|e| runtime_error(e, limits))?;
        runtime.context.insert_data(Params(js_params));
        let bounds = runtime.context.runtime_limits_mut();
        bounds.set_loop_iteration_limit(LOOP_ITERATIONS);
        bounds.set_recursion_limit(limits.max_callstack);
        bounds.set_stack_size_limit(STACK_SIZE);
        let outcome = runtime.evaluate(&script, deadline);
        runtime.context.remove_data::<Params>();
        let value = match outcome {
            Ok(result) => result.map_err(|e| runtime_error(e, limits))?,
            Err(()) => {
                // Rebuilt by `prepare`, after this reply has gone out.
                self.runtime = None;
                self.discarded += 1;
                return Err(EngineError::Deadline {
                    deadline_ms: limits.deadline_ms,
                });
            }
        };
        let out = runtime.serialize(value, limits);
        if Instant::now() >= deadline {
            // Getters and toJSON ran outside the budget; the answer is late.
            return Err(EngineError::Deadline {
                deadline_ms: limits.deadline_ms,
            });
        }
        out
    }
}

fn parse(source: &str, context: &mut Context) -> Result<Script, EngineError> {
    guard::check_source(Lang::Javascript, source)?;
    let wrapped = format!("{PREFIX}{source}{SUFFIX}");
    let script =
        Script::parse(Source::from_bytes(wrapped.as_bytes()), None, context).map_err(|e| compile_error(e, source))?;
    // Early errors (such as a duplicate `let`) surface while compiling.
    script.codeblock(context).map_err(|e| compile_error(e, source))?;
    Ok(script)
}

/// Positions are given in the author's source: boa's count includes the
/// wrapper's first line, and an error in its last line (a missing `}`) is
/// reported at the end of the source.
fn compile_error(e: JsError, source: &str) -> EngineError {
    let mut message = e.to_string();
    let position = position(&message);
    if let Some(at) = message.rfind(" at line ") {
        message.truncate(at);
    }
    let lines = source.lines().count().max(1);
    let (line, column) = match position {
        Some((line, column)) if (2..=lines + 1).contains(&line) => (line - 1, column),
        Some(_) => (lines, source.lines().last().map_or(0, |l| l.chars().count()) + 1),
        None => (0, 0),
    };
    EngineError::Compile { message, line, column }
}

/// boa puts the position in the message: "... at line 3, col 5".
fn position(message: &str) -> Option<(usize, usize)> {
    let at = message.rfind(" at line ")?;
    let rest = &message[at + " at line ".len()..];
    let (line, rest) = rest.split_once(", col ")?;
    let column: String = rest.chars().take_while(char::is_ascii_digit).collect();
    Some((line.trim().parse().ok()?, column.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn run(
        engine: &mut JsEngine,
        code_id: &str,
        source: &str,
        params: serde_json::Value,
    ) -> Result<String, EngineError> {
        engine.run(code_id, source, &params, &Limits::roomy())
    }

    #[test]
    fn returns_json_text() {
        let mut engine = JsEngine::new(4);
        let src = "if (p.version_code > 100) {\n  return \"valid\"\n}\nreturn \"invalid\"";
        assert_eq!(
            run(&mut engine, "a", src, json!({"version_code": 101})).unwrap(),
            "\"valid\""
        );
        assert_eq!(
            run(&mut engine, "a", src, json!({"version_code": 1})).unwrap(),
            "\"invalid\""
        );
        let src = "return {a: [1, 2.5, true, null], b: undefined, f() {}}";
        assert_eq!(
            run(&mut engine, "b", src, json!({})).unwrap(),
            r#"{"a":[1,2.5,true,null]}"#
        );
        assert_eq!(run(&mut engine, "c", "", json!({})).unwrap(), "null");
    }

    #[test]
    fn compile_error_has_line_and_column() {
        let err = JsEngine::new(4)
            .check("let x = 1;\nlet y = = 2;\nreturn x")
            .unwrap_err();
        match err {
            EngineError::Compile { line, column, .. } => assert_eq!((line, column), (2, 9)),
            other => panic!("{other:?}"),
        }
        let err = JsEngine::new(4).check("let x = 1;\nreturn (").unwrap_err();
        match err {
            EngineError::Compile { line, column, message } => {
                assert_eq!((line, column), (2, 9));
                assert!(!message.contains(" at line "), "{message}");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn requests_cannot_leave_anything_behind() {
        let mut engine = JsEngine::new(4);
        let attacks = [
            "globalThis.x = 1; return 1",
            "Array.prototype.includes = function () { return true }; return 1",
            "Object.prototype.polluted = 1; return 1",
            "JSON.stringify = function () { return '\"owned\"' }; return 1",
            "arguments.callee.seen = (arguments.callee.seen || 0) + 1; return arguments.callee.seen",
        ];
        for (i, attack) in attacks.iter().enumerate() {
            // Sloppy mode ignores writes to frozen objects; strict mode throws.
            let _ = run(&mut engine, &format!("attack{i}"), attack, json!({}));
            let _ = run(&mut engine, &format!("attack{i}"), attack, json!({}));
        }
        let probe = "return [typeof globalThis.x, [1].includes(2), ({}).polluted === undefined, \
                     arguments.callee.seen === undefined]";
        assert_eq!(
            run(&mut engine, "probe", probe, json!({})).unwrap(),
            r#"["undefined",false,true,true]"#
        );
        let again = run(&mut engine, "attack4", attacks[4], json!({})).unwrap();
        assert_eq!(again, "1", "a property set on the function survived a run");
    }

    #[test]
    fn loops_hit_the_deadline_and_the_engine_recovers() {
        let mut engine = JsEngine::new(4);
        let limits = Limits {
            deadline_ms: 30,
            ..Limits::default()
        };
        for src in ["while (true) {}", "for (;;) {}", "let i = 0; do { i++ } while (i >= 0)"] {
            let started = Instant::now();
            let err = engine.run("loop", src, &json!({}), &limits).unwrap_err();
            assert_eq!(err, EngineError::Deadline { deadline_ms: 30 }, "{src}");
            assert!(started.elapsed().as_millis() < 5000);
            assert_eq!(run(&mut engine, "ok", "return p.n + 1", json!({"n": 1})).unwrap(), "2");
        }
        assert_eq!(engine.discarded, 3);
    }

    #[test]
    fn recursion_and_output_limits_are_named() {
        let mut engine = JsEngine::new(4);
        // Debug builds are slow; these are about limits other than time. A
        // debug build took 5 s of CPU to visit the default million values of
        // the DAG below, past the deadline on a loaded machine: a smaller
        // output limit is met as surely and sooner.
        let run = |engine: &mut JsEngine, id: &str, src: &str, params| {
            let limits = Limits {
                max_output_bytes: 64 << 10,
                ..Limits::roomy()
            };
            engine.run(id, src, &params, &limits)
        };
        let got = run(
            &mut engine,
            "r",
            "function f(n) { return f(n + 1) }\nreturn f(0)",
            json!({}),
        );
        assert!(matches!(got, Err(EngineError::Recursion { .. })), "{got:?}");
        let got = run(
            &mut engine,
            "d",
            "let a = []; for (let i = 0; i < 2000; i++) a = [a]; return a",
            json!({}),
        );
        assert!(matches!(got, Err(EngineError::OutputDepth { .. })), "{got:?}");
        let got = run(&mut engine, "cyc", "const a = {}; a.self = a; return a", json!({}));
        assert!(matches!(got, Err(EngineError::OutputDepth { .. })), "{got:?}");
        let got = run(
            &mut engine,
            "dag",
            "let a = [1]; for (let i = 0; i < 40; i++) a = [a, a]; return a",
            json!({}),
        );
        assert!(matches!(got, Err(EngineError::OutputSize { .. })), "{got:?}");
        let got = run(&mut engine, "big", "return 'x'.repeat(2 << 20)", json!({}));
        assert!(matches!(got, Err(EngineError::OutputSize { .. })), "{got:?}");
    }

    #[test]
    fn runtime_errors_are_reported() {
        let got = run(&mut JsEngine::new(4), "e", "return p.missing.field", json!({}));
        assert!(
            matches!(&got, Err(EngineError::Runtime { message }) if message.contains("TypeError")),
            "{got:?}"
        );
    }
}
