//! Interpreters behind one small trait, the frame protocol between an Evaluator
//! and its worker, and the worker process's loop. No actors, no HTTP.

pub mod folding;
mod go_json;
pub mod guard;
pub mod javascript;
mod js_errors;
mod js_json;
pub mod protocol;
pub mod star_params;
pub mod starlark;
pub mod worker;

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::domain::Lang;

/// Per-call limits. Each limit hit becomes an error that names it.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct Limits {
    /// Wall-clock time a run may take.
    pub deadline_ms: u64,
    /// Heap a run may allocate.
    pub heap_bytes: usize,
    /// Nested calls a run may make.
    pub max_callstack: usize,
    /// Bytes the result's JSON may take.
    pub max_output_bytes: usize,
    /// Levels the result may nest.
    pub max_output_depth: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            deadline_ms: 50,
            heap_bytes: 256 << 20,
            max_callstack: 50,
            max_output_bytes: 1 << 20,
            max_output_depth: 64,
        }
    }
}

impl Limits {
    /// Limits for tests about something other than time: on a loaded
    /// machine the 50 ms default turns them into deadline failures.
    #[cfg(test)]
    pub fn roomy() -> Self {
        Self {
            deadline_ms: 10_000,
            ..Self::default()
        }
    }

    /// When a run started at `start` must end.
    pub fn deadline_from(&self, start: Instant) -> Instant {
        start + Duration::from_millis(self.deadline_ms)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[serde(tag = "kind", rename_all = "snake_case")]
/// Why a run or a compile failed; each names the limit or the place.
pub enum EngineError {
    #[error("compile error at line {line}, column {column}: {message}")]
    /// The source does not compile.
    Compile {
        /// The compiler's message.
        message: String,
        /// Where: line, from 1.
        line: usize,
        /// Where: column, from 1.
        column: usize,
    },
    /// The script failed while running (an exception, a type error, ...).
    #[error("execution error: {message}")]
    Runtime {
        /// The interpreter's message.
        message: String,
    },
    /// The run took longer than its deadline.
    #[error("deadline exceeded: evaluation ran past {deadline_ms} ms")]
    Deadline {
        /// The deadline it ran past.
        deadline_ms: u64,
    },
    /// The run allocated more than its heap limit.
    #[error("memory limit exceeded: {message}")]
    Memory {
        /// What ran out.
        message: String,
    },
    /// The run nested calls deeper than its limit.
    #[error("recursion limit exceeded: more than {limit} nested calls")]
    Recursion {
        /// The call depth allowed.
        limit: usize,
    },
    /// The result's JSON is larger than allowed.
    #[error("output too large: {bytes} bytes is over the {limit} byte limit")]
    OutputSize {
        /// The result's size.
        bytes: usize,
        /// The size allowed.
        limit: usize,
    },
    /// The result nests deeper than allowed, or refers to itself.
    #[error("output too deep: the result nests more than {limit} levels (or refers to itself)")]
    OutputDepth {
        /// The depth allowed.
        limit: usize,
    },
}

impl EngineError {
    pub(crate) fn output_size(bytes: usize, limits: &Limits) -> Self {
        Self::OutputSize {
            bytes,
            limit: limits.max_output_bytes,
        }
    }
}

/// An interpreter with a compiled-code cache keyed by code_id. Versions are
/// immutable, so a cached entry never goes stale.
pub trait Engine {
    /// Compiles `source` (the body of `run(p)`), caching it under `code_id`.
    fn compile(&mut self, code_id: &str, source: &str) -> Result<(), EngineError>;

    /// Compiles `source` without caching it.
    fn check(&mut self, source: &str) -> Result<(), EngineError>;

    /// Drops the compiled code of `code_id`, if cached.
    fn forget(&mut self, code_id: &str);

    /// Whether `code_id` is compiled and cached, so a run needs no source.
    fn has(&self, code_id: &str) -> bool;

    /// Runs the cached `code_id` (compiling `source` first if it is not cached)
    /// and returns the JSON text of the result.
    fn run(
        &mut self,
        code_id: &str,
        source: &str,
        params: &serde_json::Value,
        limits: &Limits,
    ) -> Result<String, EngineError>;

    /// `run` with the params as the JSON text a request frame carries. By
    /// default parsed into a value first; an engine that can read the text
    /// directly does.
    fn run_text(&mut self, code_id: &str, source: &str, params: &str, limits: &Limits) -> Result<String, EngineError> {
        let params = serde_json::from_str(params).map_err(unreadable_params)?;
        self.run(code_id, source, &params, limits)
    }
}

/// Params a worker could not read (a number no engine holds, say).
pub fn unreadable_params(e: impl std::fmt::Display) -> EngineError {
    EngineError::Runtime {
        message: format!("params could not be read: {e}"),
    }
}

/// One engine per language, as held by a worker.
pub struct Engines {
    starlark: starlark::StarlarkEngine,
    javascript: javascript::JsEngine,
}

impl Engines {
    /// Engines keeping up to `code_cache_entries` compiled versions each.
    pub fn new(code_cache_entries: usize) -> Self {
        Self {
            starlark: starlark::StarlarkEngine::new(code_cache_entries),
            javascript: javascript::JsEngine::new(code_cache_entries),
        }
    }

    /// Work between requests: rebuilds what a request had to throw away.
    pub fn prepare(&mut self) {
        self.javascript.prepare();
    }

    /// The engine for `lang`.
    pub fn get(&mut self, lang: Lang) -> &mut dyn Engine {
        match lang {
            Lang::Starlark => &mut self.starlark,
            Lang::Javascript => &mut self.javascript,
        }
    }
}
