//! Boa's errors as Vane's: what a script's author can act on, with the limit
//! named when one was hit. Shared by the engine and the JSON conversion.

use boa_engine::JsError;

use super::{EngineError, Limits};

/// Iterations of any one loop; the deadline normally stops a loop first.
pub const LOOP_ITERATIONS: u64 = 100_000_000;

pub fn runtime_error(e: JsError, limits: &Limits) -> EngineError {
    let mut message = e.to_string();
    // boa appends the wrapper's call site, which means nothing to the author.
    if let Some(at) = message.find(" (unknown at ") {
        message.truncate(at);
    }
    if message.contains("maximum number of recursive calls") || message.contains("maximum stack size") {
        return EngineError::Recursion {
            limit: limits.max_callstack,
        };
    }
    if message.contains("iteration loops") {
        return EngineError::Runtime {
            message: format!("loop iteration limit exceeded: a loop ran more than {LOOP_ITERATIONS} times"),
        };
    }
    EngineError::Runtime { message }
}
