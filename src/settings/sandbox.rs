//! `[sandbox]`: where and under which limits scripts run.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
/// `[sandbox]`: the worker pool and each run's limits.
pub struct Sandbox {
    /// Wall-clock limit of one run.
    pub deadline_ms: u64,
    /// Memory cap of one worker process.
    pub memory_mb: u64,
    /// Most workers (processes or threads that run scripts), one per
    /// Evaluator; 0 means one per core.
    pub workers: usize,
    /// Fewest workers: between the two the pool runs as many as its
    /// workers' CPU use calls for (`actors/evaluator/demand.rs`). At least 1;
    /// `workers` or more makes the pool fixed.
    pub min_workers: usize,
    /// Jobs waiting for a free Evaluator beyond this are shed with 503.
    pub queue_bound: usize,
    /// How long a job may wait for an Evaluator before it is answered 503. Apart
    /// from the deadline, so a change wave (every client fetching at once)
    /// queues for a moment instead of being shed and retried.
    pub queue_wait_ms: u64,
    /// Extra time past the deadline before a worker process is killed.
    pub kill_grace_ms: u64,
    /// Compiled versions kept per worker.
    pub code_cache_entries: usize,
    /// The executable run as `<exe> worker`; empty means this executable.
    pub worker_exe: String,
    /// When the server runs as root, worker processes run as this user;
    /// empty keeps them root (not recommended).
    pub user: String,
    /// Where scripts run: worker processes (hard memory cap, killable) or
    /// threads in the server (faster, for trusted scripts only).
    pub isolation: Isolation,
    /// While the pool is paused, new jobs wait (up to `queue_wait_ms`) or are
    /// shed at once.
    pub paused_jobs: PausedJobs,
    /// A worker is replaced after this many evaluations; 0 = never.
    pub recycle_after_runs: u64,
    /// A worker process is replaced once its resident memory passes this, in
    /// MiB; 0 = three quarters of `memory_mb`.
    pub recycle_rss_mb: u64,
    /// Starlark results remembered by version and params (Starlark code is a
    /// pure function of its params); 0 = off.
    pub memo_entries: usize,
    /// Most jobs queued inside one worker behind the one it is running, so a
    /// busy worker never waits for its next job; fewer when jobs are slow.
    /// 1 = one job at a time.
    pub pipeline_depth: usize,
    /// About how much work, by the worker's recent mean run time, it may
    /// hold queued: slow scripts get a shallower pipeline.
    pub pipeline_budget_ms: u64,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
/// Where scripts run.
pub enum Isolation {
    #[default]
    /// In worker processes, each with its own memory cap; a crash stays there.
    Process,
    /// In threads of the server (trusted scripts only): no memory cap, no
    /// kill, none of the worker confinement (`confine`).
    Thread,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
/// What happens to jobs while the pool is paused.
pub enum PausedJobs {
    #[default]
    /// They wait in the queue until it resumes.
    Wait,
    /// They are refused at once (503).
    Shed,
}

impl Default for Sandbox {
    fn default() -> Self {
        Self {
            deadline_ms: 50,
            memory_mb: 512,
            workers: 0,
            min_workers: 1,
            queue_bound: 16_384,
            queue_wait_ms: 1000,
            kill_grace_ms: 100,
            code_cache_entries: 256,
            worker_exe: String::new(),
            user: "nobody".into(),
            isolation: Isolation::Process,
            paused_jobs: PausedJobs::Wait,
            recycle_after_runs: 100_000,
            recycle_rss_mb: 0,
            memo_entries: 10_000,
            pipeline_depth: 16,
            pipeline_budget_ms: 2,
        }
    }
}

impl Sandbox {
    /// `deadline_ms` as a duration.
    pub fn deadline(&self) -> Duration {
        Duration::from_millis(self.deadline_ms)
    }

    /// `queue_wait_ms` as a duration.
    pub fn queue_wait(&self) -> Duration {
        Duration::from_millis(self.queue_wait_ms)
    }

    /// `kill_grace_ms` as a duration.
    pub fn kill_grace(&self) -> Duration {
        Duration::from_millis(self.kill_grace_ms)
    }

    /// `workers`, or one per core when 0.
    pub fn worker_count(&self) -> usize {
        if self.workers > 0 {
            return self.workers;
        }
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2)
    }

    /// `recycle_rss_mb` in bytes, or 3/4 of `memory_mb` when 0.
    pub fn recycle_rss_bytes(&self) -> u64 {
        let mb = if self.recycle_rss_mb == 0 {
            self.memory_mb * 3 / 4
        } else {
            self.recycle_rss_mb
        };
        mb << 20
    }

    /// Who worker processes run as: `user` when the server runs as root.
    pub fn worker_identity(&self) -> Option<crate::confine::Identity> {
        if self.user.is_empty() || !crate::confine::running_as_root() {
            return None;
        }
        crate::confine::identity(&self.user)
    }

    /// `worker_exe`, or this executable when empty.
    pub fn worker_exe(&self) -> PathBuf {
        if self.worker_exe.is_empty() {
            std::env::current_exe().unwrap_or_else(|_| PathBuf::from("vane"))
        } else {
            PathBuf::from(&self.worker_exe)
        }
    }
}
