//! EvaluatorPool: a ractor factory of Evaluators with pull-based routing (an
//! idle Evaluator takes the next job), a bounded queue that sheds when full,
//! and a queue deadline after which a waiting job is dropped, not run.
//!
//! A worker is what runs scripts: a `vane worker` process, or a thread with
//! `sandbox.isolation = "thread"`. Each Evaluator owns one worker at a time
//! (ractor calls the Evaluators themselves its workers; Vane does not). The
//! pool runs between `sandbox.min_workers` and `sandbox.workers` Evaluators,
//! and so workers, as many as its worker processes' CPU use calls for
//! (`demand.rs`): an idle worker process costs a wake-up per job.
//!
//! Supervised by the root Supervisor; the factory itself respawns a failed
//! Evaluator. A restart of the whole pool loses queued jobs (their callers get
//! `Unavailable`) and every worker process.
//!
//! # The job path, file by file
//! ```text
//! caller (handle.rs) ── a run of code a worker holds ──> lanes.rs: written to the first
//!    │                   worker not busy, or queued for the next to answer (the pool's bound and wait)
//!    └─ anything else ──> pool queue (this file): shed when full (503), dropped past queue_wait_ms
//!    └─ Dispatch ──> Evaluator (actor.rs): encode, make sure its worker is live
//!          └─ send ──> Worker (worker.rs): the job joins the worker's pipeline; frame written
//!                 process.rs | thread.rs, pipes in pipes.rs; engine/worker.rs inside
//!          reader task (reader.rs), per reply:
//!             Done        -> the caller is answered
//!             NeedSource  -> back to the pool, to be sent again with its source
//!             overrun     -> worker killed: the running job fails naming the limit,
//!                            the jobs behind it go back to the pool (within
//!                            their queue wait); its code becomes a suspect
//!                            (suspects.rs), whose runs go alone
//! ```
//!
//! # An Evaluator's capacity, as the pool sees it
//! The factory routes a job only to an Evaluator that said `Finished`. Its
//! worker's pipeline says it whenever the worker can hold another job:
//! ```text
//!            send, pipeline < depth: Finished at once
//!          ┌──────────┐
//!          v          │
//!        Free ────────┘
//!          │  send, pipeline reaches depth
//!          v
//!        Full ── reply leaves pipeline < depth ──> Free (Finished)
//!          └──── worker failed ────────────────> Free (Finished; a new worker next)
//! ```
//! `depth` is `sandbox.pipeline_depth`, or about `sandbox.pipeline_budget_ms`
//! of work by the worker's mean run time (a new worker starts from its
//! predecessor's), or 1 until its first reply is timed, or 1 while it holds
//! a suspect's run. A job that never reaches a worker (it cannot be encoded, or no
//! worker starts) is answered by the Evaluator, which then says `Finished`
//! itself (`actor.rs`, `finish`).

mod actor;
mod demand;
mod evaluated;
mod handle;
mod job;
mod lanes;
mod memo;
mod pipeline;
mod pipes;
mod process;
mod reader;
mod seat;
mod settings;
mod stats;
mod suspects;
mod thread;
mod worker;

use std::sync::Arc;

use ractor::factory::queues::DefaultQueue;
use ractor::factory::routing::QueuerRouting;
use ractor::factory::{
    DiscardHandler, DiscardMode, DiscardReason, DiscardSettings, Factory, FactoryArguments, FactoryMessage, Job,
};
use ractor::{Actor, ActorCell, ActorRef, SpawnErr};

use serde::Serialize;

use super::Slot;
use crate::settings::Sandbox;
pub use actor::Evaluator;
use actor::EvaluatorBuilder;
pub use evaluated::Evaluated;
pub use handle::EvaluatorPoolHandle;
pub use job::{EvalError, EvalJob, Work};
pub use process::ProcessSettings;
pub use settings::{LiveSettings, PoolSettings};
pub use stats::{Count, PoolSnapshot, PoolStats, WorkerInfo, WorkerState};

/// What the pool (a ractor factory) takes.
pub type PoolMsg = FactoryMessage<(), EvalJob>;

/// Answers discarded jobs so their callers learn why at once.
struct Discarder {
    stats: Arc<PoolStats>,
}

impl DiscardHandler<(), EvalJob> for Discarder {
    fn discard(&self, reason: DiscardReason, job: &mut Job<(), EvalJob>) {
        let error = match reason {
            DiscardReason::TtlExpired => {
                self.stats.add(Count::Expired);
                EvalError::Expired
            }
            DiscardReason::Loadshed | DiscardReason::RateLimited => {
                self.stats.add(Count::Shed);
                EvalError::Overloaded
            }
            DiscardReason::Shutdown => {
                self.stats.answered_unstarted();
                EvalError::Unavailable("shutting down".into())
            }
        };
        if let Some(reply) = job.msg.reply.take() {
            let _ = reply.send(Err(error));
        }
    }
}

/// What outlives a restart of the pool, shared by its handle, the
/// supervisor that restarts it and every Evaluator: the settings as a reload
/// leaves them, and the counters.
#[derive(Clone)]
pub struct PoolShared {
    /// The settings now; a reload replaces them.
    pub settings: LiveSettings,
    /// The counters and each worker's state: runtime, never reloaded.
    pub stats: Arc<PoolStats>,
    /// The workers callers may hand runs to directly.
    lanes: Arc<lanes::Lanes>,
    /// Code that overran lately, whose runs go alone.
    suspects: Arc<suspects::Suspects>,
}

impl PoolShared {
    /// The settings `[sandbox]` gives, and counters at zero.
    pub fn new(sandbox: &Sandbox) -> Self {
        let stats = Arc::<PoolStats>::default();
        Self {
            settings: PoolSettings::live(sandbox),
            stats: stats.clone(),
            lanes: Arc::new(lanes::Lanes::new(stats)),
            suspects: Arc::default(),
        }
    }

    /// The settings as of now.
    fn current(&self) -> Arc<PoolSettings> {
        self.settings.borrow().clone()
    }
}

/// Starts the pool linked to `supervisor`, with its Evaluators.
pub async fn spawn(shared: &PoolShared, supervisor: ActorCell) -> Result<ActorRef<PoolMsg>, SpawnErr> {
    let (pool, _) = Actor::spawn_linked(None, PoolFactory::default(), arguments(shared), supervisor).await?;
    Ok(pool)
}

/// Starts a pool with no supervisor, for a command that runs scripts and
/// exits (`vane test`): the same Evaluators, workers and limits as a server's.
pub async fn spawn_alone(shared: &PoolShared) -> Result<(EvaluatorPoolHandle, ActorRef<PoolMsg>), SpawnErr> {
    let (pool, _) = Actor::spawn(None, PoolFactory::default(), arguments(shared)).await?;
    let handle = EvaluatorPoolHandle::new(Slot::new(pool.clone()), shared.clone());
    Ok((handle, pool))
}

type PoolFactory = Factory<(), EvalJob, PoolShared, Evaluator, QueuerRouting<(), EvalJob>, DefaultQueue<(), EvalJob>>;

fn arguments(
    shared: &PoolShared,
) -> FactoryArguments<(), EvalJob, PoolShared, Evaluator, QueuerRouting<(), EvalJob>, DefaultQueue<(), EvalJob>> {
    let current = shared.current();
    FactoryArguments::builder()
        .worker_builder(Box::new(EvaluatorBuilder { shared: shared.clone() }))
        .num_initial_workers(current.workers)
        .queue(DefaultQueue::default())
        .router(QueuerRouting::default())
        .discard_handler(Arc::new(Discarder {
            stats: shared.stats.clone(),
        }))
        .discard_settings(discard_settings(current.queue_bound))
        .capacity_controller(Box::new(demand::Demand::new(shared.clone())))
        .build()
}

fn discard_settings(queue_bound: usize) -> DiscardSettings {
    DiscardSettings::Static {
        limit: queue_bound,
        mode: DiscardMode::Newest,
    }
}

/// Whether the pool takes new jobs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Gate {
    /// Jobs run.
    Open,
    /// Jobs wait (or are shed, per `sandbox.paused_jobs`) until resumed.
    Paused,
    /// Shutting down: new jobs are refused, queued ones finish.
    Draining,
}

/// The pool as an operator sees it.
#[derive(Debug, Clone, Serialize)]
pub struct PoolStatus {
    /// Whether it takes jobs.
    pub gate: Gate,
    /// Most Evaluators, so workers (`worker_list` has the running ones).
    pub workers: usize,
    /// Fewest: below `workers`, idle ones are stopped (`demand.rs`).
    pub min_workers: usize,
    /// Jobs waiting for an Evaluator.
    pub queued: usize,
    /// Its counters.
    #[serde(flatten)]
    pub counts: PoolSnapshot,
    /// Each running worker's state.
    pub worker_list: Vec<WorkerInfo>,
}

/// Not a valid code_id of any version (those are hex), so a playground run
/// never shares a worker's compiled-code cache entry with a version.
pub(crate) const SCRATCH_CODE_ID: &str = "playground run";
