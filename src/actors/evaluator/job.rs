//! A job of the pool: what it asks (`Work`), the job itself as it waits in
//! the queue and in a worker (`EvalJob`), and why it can fail (`EvalError`).

use std::sync::Arc;

use serde_json::value::RawValue;
use tokio::sync::oneshot;

use crate::domain::params::ParamError;
use crate::domain::{Lang, Version};
use crate::engine::EngineError;

/// What an Evaluator is asked to do.
#[derive(Debug)]
pub enum Work {
    /// Runs a stored version. Versions are immutable, so its compiled code
    /// and memoized results never go stale, even for a `cached: false` fetch.
    Run {
        /// The version to run.
        version: Arc<Version>,
        /// The request's params, checked against its schema first, as
        /// canonical JSON text (shared with the memo's key).
        params: Arc<RawValue>,
    },
    /// Compiles an uploaded source, to refuse one that does not compile.
    Check {
        /// Its language.
        lang: Lang,
        /// The source.
        source: String,
    },
    /// Debug builds only: tries what a confined worker must not do.
    #[cfg(debug_assertions)]
    Probe(crate::engine::protocol::Probe),
    /// Runs a source that is not a stored version (the playground).
    Try {
        /// Its language.
        lang: Lang,
        /// The source.
        source: String,
        /// The params to run it with.
        params: serde_json::Value,
    },
}

impl Work {
    /// The language of the script it runs, if it runs one (a check only
    /// compiles): what its run time is counted under.
    pub fn script_lang(&self) -> Option<Lang> {
        match self {
            Self::Run { version, .. } => Some(version.lang),
            Self::Try { lang, .. } => Some(*lang),
            Self::Check { .. } => None,
            #[cfg(debug_assertions)]
            Self::Probe(_) => None,
        }
    }
}

/// One job in the pool's queue.
pub struct EvalJob {
    /// What to do.
    pub work: Work,
    /// Taken by whoever answers: the worker's reader, the Evaluator, or the
    /// discard handler.
    pub reply: Option<oneshot::Sender<Result<Box<RawValue>, EvalError>>>,
    /// Send the source even if the worker is thought to hold the code: it
    /// said it does not.
    pub with_source: bool,
    /// Run it alone: its worker died while holding it and others, and
    /// which of them killed it is not known.
    pub alone: bool,
}

impl std::fmt::Debug for EvalJob {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EvalJob").field("work", &self.work).finish()
    }
}

/// Why an evaluation gave no result; rendered at the edge.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EvalError {
    /// The script's own failure: compile, runtime or a limit it hit.
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// The request's params do not fit the version's schema.
    #[error(transparent)]
    Params(#[from] ParamError),
    /// Killed from outside after running past its deadline plus grace.
    #[error("deadline exceeded: evaluation ran past {deadline_ms} ms and was stopped")]
    Killed {
        /// The deadline it ran past.
        deadline_ms: u64,
    },
    /// The worker process died under the script, e.g. by exhausting memory.
    #[error("the sandbox process died: {0}")]
    Crashed(String),
    /// Shed: the queue is at `sandbox.queue_bound` (503).
    #[error("evaluation queue is full")]
    Overloaded,
    /// Its code overran lately, and such code already holds all the
    /// workers it may have (half the pool), so configs that hang cannot
    /// take them all (503).
    #[error(
        "this config's code ran past its deadline lately, and such code already holds as many workers as it may have"
    )]
    Crowded,
    /// Waited in the queue past `sandbox.queue_wait_ms` (503).
    #[error("request waited in the evaluation queue past its deadline")]
    Expired,
    /// No worker could take it (the detail is logged at the edge).
    #[error("evaluator unavailable: {0}")]
    Unavailable(String),
    /// No answer within the caller's limit.
    #[error("evaluation did not finish in time")]
    Timeout,
}
