//! EvaluatorPool: a ractor factory of Evaluators with pull-based routing (an
//! idle Evaluator takes the next job), a bounded queue that sheds when full,
//! and a queue deadline after which a waiting job is dropped, not run.
//!
//! Supervised by the root Supervisor; the factory itself respawns a failed
//! Evaluator. A restart of the whole pool loses queued jobs (their callers get
//! `Unavailable`) and every worker process.

mod evaluator;
mod process;

use std::sync::Arc;
use std::time::Duration;

use ractor::factory::queues::DefaultQueue;
use ractor::factory::routing::QueuerRouting;
use ractor::factory::{
    DiscardHandler, DiscardMode, DiscardReason, DiscardSettings, Factory, FactoryArguments, FactoryMessage, Job,
    JobOptions,
};
use ractor::{Actor, ActorCell, ActorRef, SpawnErr};
use serde_json::value::RawValue;
use tokio::sync::oneshot;

use super::Slot;
use crate::domain::params::{self, ParamError};
use crate::domain::{Lang, Version};
use crate::engine::{EngineError, Limits};
use crate::settings::Sandbox;
pub use evaluator::Evaluator;
use evaluator::EvaluatorBuilder;
pub use process::ProcessSettings;

pub type PoolMsg = FactoryMessage<(), EvalJob>;

/// What an Evaluator is asked to do.
#[derive(Debug)]
pub enum Work {
    Run {
        version: Arc<Version>,
        params: serde_json::Value,
        fresh: bool,
    },
    Check {
        lang: Lang,
        source: String,
    },
}

pub struct EvalJob {
    pub work: Work,
    /// Taken by whoever answers: the Evaluator, or the discard handler.
    pub reply: Option<oneshot::Sender<Result<Box<RawValue>, EvalError>>>,
}

impl std::fmt::Debug for EvalJob {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EvalJob").field("work", &self.work).finish()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EvalError {
    /// The script's own failure: compile, runtime or a limit it hit.
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error(transparent)]
    Params(#[from] ParamError),
    /// Killed from outside after running past its deadline plus grace.
    #[error("deadline exceeded: evaluation ran past {deadline_ms} ms and was stopped")]
    Killed { deadline_ms: u64 },
    /// The worker process died under the script, e.g. by exhausting memory.
    #[error("the sandbox process died: {0}")]
    Crashed(String),
    #[error("evaluation queue is full")]
    Overloaded,
    #[error("request waited in the evaluation queue past its deadline")]
    Expired,
    #[error("evaluator unavailable: {0}")]
    Unavailable(String),
    #[error("evaluation did not finish in time")]
    Timeout,
}

/// What every Evaluator is started with.
#[derive(Debug, Clone)]
pub struct PoolSettings {
    pub process: ProcessSettings,
    pub limits: Limits,
    pub kill_grace: Duration,
    /// Compile checks of uploads may take longer than a request's deadline.
    pub check_limit: Duration,
}

impl PoolSettings {
    pub fn from_sandbox(sandbox: &Sandbox) -> Self {
        Self {
            process: ProcessSettings {
                exe: sandbox.worker_exe(),
                memory_bytes: sandbox.memory_mb << 20,
                code_cache_entries: sandbox.code_cache_entries,
            },
            limits: Limits {
                deadline_ms: sandbox.deadline_ms,
                heap_bytes: (sandbox.memory_mb as usize) << 19,
                ..Limits::default()
            },
            kill_grace: sandbox.kill_grace(),
            check_limit: (sandbox.deadline() * 10).max(Duration::from_secs(2)),
        }
    }
}

/// Answers discarded jobs so their callers learn why at once.
struct Discarder;

impl DiscardHandler<(), EvalJob> for Discarder {
    fn discard(&self, reason: DiscardReason, job: &mut Job<(), EvalJob>) {
        let error = match reason {
            DiscardReason::TtlExpired => EvalError::Expired,
            DiscardReason::Loadshed | DiscardReason::RateLimited => EvalError::Overloaded,
            DiscardReason::Shutdown => EvalError::Unavailable("shutting down".into()),
        };
        if let Some(reply) = job.msg.reply.take() {
            let _ = reply.send(Err(error));
        }
    }
}

pub async fn spawn(sandbox: &Sandbox, supervisor: ActorCell) -> Result<ActorRef<PoolMsg>, SpawnErr> {
    let settings = Arc::new(PoolSettings::from_sandbox(sandbox));
    let factory = Factory::<
        (),
        EvalJob,
        Arc<PoolSettings>,
        Evaluator,
        QueuerRouting<(), EvalJob>,
        DefaultQueue<(), EvalJob>,
    >::default();
    let arguments = FactoryArguments::builder()
        .worker_builder(Box::new(EvaluatorBuilder { settings }))
        .num_initial_workers(sandbox.worker_count())
        .queue(DefaultQueue::default())
        .router(QueuerRouting::default())
        .discard_handler(Arc::new(Discarder))
        .discard_settings(DiscardSettings::Static {
            limit: sandbox.queue_bound,
            mode: DiscardMode::Newest,
        })
        .build();
    let (pool, _) = Actor::spawn_linked(None, factory, arguments, supervisor).await?;
    Ok(pool)
}

/// What callers hold to reach the EvaluatorPool.
#[derive(Clone)]
pub struct EvaluatorPoolHandle {
    slot: Slot<PoolMsg>,
    deadline: Duration,
    /// Longest a caller waits: queue wait + run + kill grace + respawn margin.
    wait_limit: Duration,
}

impl EvaluatorPoolHandle {
    pub fn new(slot: Slot<PoolMsg>, sandbox: &Sandbox) -> Self {
        let deadline = sandbox.deadline();
        let wait_limit = deadline * 2 + sandbox.kill_grace() + Duration::from_secs(2);
        Self {
            slot,
            deadline,
            wait_limit,
        }
    }

    /// Checks `params` against the version's schema, then runs it; returns the
    /// JSON text of the result.
    pub async fn evaluate(
        &self,
        version: Arc<Version>,
        params: serde_json::Value,
        fresh: bool,
    ) -> Result<Box<RawValue>, EvalError> {
        params::check(&version.params, &params)?;
        self.submit(Work::Run { version, params, fresh }).await
    }

    /// Compiles `source` in a worker to check it, caching nothing.
    pub async fn check(&self, lang: Lang, source: String) -> Result<(), EvalError> {
        self.submit(Work::Check { lang, source }).await.map(|_| ())
    }

    async fn submit(&self, work: Work) -> Result<Box<RawValue>, EvalError> {
        let (reply, answer) = oneshot::channel();
        let job = Job {
            key: (),
            msg: EvalJob {
                work,
                reply: Some(reply),
            },
            options: JobOptions::new(Some(self.deadline)),
            accepted: None,
        };
        self.slot
            .tell("evaluator pool", FactoryMessage::Dispatch(job))
            .map_err(|e| EvalError::Unavailable(e.to_string()))?;
        match tokio::time::timeout(self.wait_limit, answer).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(EvalError::Unavailable("the evaluator stopped before answering".into())),
            Err(_) => Err(EvalError::Timeout),
        }
    }

    pub fn is_alive(&self) -> bool {
        self.slot.is_alive()
    }
}
