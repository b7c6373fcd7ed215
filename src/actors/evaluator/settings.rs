//! The pool's settings: what every Evaluator is started with, taken from
//! `[sandbox]`, and the channel a reload updates them through.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use super::process::ProcessSettings;
use crate::engine::Limits;
use crate::settings::{PausedJobs, Sandbox};

/// What every Evaluator is started with.
#[derive(Debug, Clone)]
pub struct PoolSettings {
    /// How worker processes (or threads) are started.
    pub process: ProcessSettings,
    /// The per-evaluation limits the engines enforce.
    pub limits: Limits,
    /// Past the deadline, how long before a worker is killed.
    pub kill_grace: Duration,
    /// How long a job may wait in the queue before it is answered 503.
    pub queue_wait: Duration,
    /// Compile checks of uploads may take longer than a request's deadline.
    pub check_limit: Duration,
    /// A worker is replaced after this many runs (0: never).
    pub recycle_after_runs: u64,
    /// ... or past this resident memory.
    pub recycle_rss_bytes: u64,
    /// Most Evaluators in the pool, so workers.
    pub workers: usize,
    /// Fewest, when demand is low (thread workers: always `workers`).
    pub min_workers: usize,
    /// Jobs waiting past this are shed.
    pub queue_bound: usize,
    /// What jobs do while the pool is paused.
    pub paused_jobs: PausedJobs,
    /// Remembered Starlark results; read once when the pool starts.
    pub memo_entries: usize,
    /// Most jobs a worker holds at once, and about how much work.
    pub pipeline_depth: usize,
    /// ... and about this much work by the worker's mean run time.
    pub pipeline_budget: Duration,
}

/// The pool's settings as they are now: Evaluators read them per job, so a
/// reload reaches them without a restart (a new memory cap reaches new worker
/// processes).
pub type LiveSettings = Arc<watch::Sender<Arc<PoolSettings>>>;

impl PoolSettings {
    /// The settings `[sandbox]` gives, in a channel a reload updates.
    pub fn live(sandbox: &Sandbox) -> LiveSettings {
        Arc::new(watch::Sender::new(Arc::new(Self::from_sandbox(sandbox))))
    }

    /// The settings `[sandbox]` gives.
    pub fn from_sandbox(sandbox: &Sandbox) -> Self {
        Self {
            process: ProcessSettings {
                exe: sandbox.worker_exe(),
                memory_bytes: sandbox.memory_mb << 20,
                code_cache_entries: sandbox.code_cache_entries,
                isolation: sandbox.isolation,
                identity: sandbox.worker_identity(),
            },
            limits: Limits {
                deadline_ms: sandbox.deadline_ms,
                heap_bytes: (sandbox.memory_mb as usize) << 19,
                ..Limits::default()
            },
            kill_grace: sandbox.kill_grace(),
            queue_wait: sandbox.queue_wait(),
            check_limit: (sandbox.deadline() * 10).max(Duration::from_secs(2)),
            recycle_after_runs: sandbox.recycle_after_runs,
            recycle_rss_bytes: sandbox.recycle_rss_bytes(),
            workers: sandbox.worker_count(),
            min_workers: sandbox.min_workers,
            queue_bound: sandbox.queue_bound,
            paused_jobs: sandbox.paused_jobs,
            memo_entries: sandbox.memo_entries,
            pipeline_depth: sandbox.pipeline_depth,
            pipeline_budget: Duration::from_millis(sandbox.pipeline_budget_ms),
        }
    }

    /// One evaluation's wall-clock limit.
    pub fn deadline(&self) -> Duration {
        Duration::from_millis(self.limits.deadline_ms)
    }

    /// Longest a caller waits: queue wait + run + kill grace + respawn margin.
    pub(super) fn wait_limit(&self) -> Duration {
        self.queue_wait + self.deadline() + self.kill_grace + Duration::from_secs(2)
    }
}
