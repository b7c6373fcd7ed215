//! Counters of the EvaluatorPool, shared by its handle, its Evaluators and
//! its discard handler, and kept across pool restarts. Metrics read them.
//! Runtime state, so they sit beside the settings in `PoolShared`, not in
//! them: a reload replaces the settings and keeps the counts.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use crate::sync::Locked;
use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
/// What a worker is doing.
pub enum WorkerState {
    /// Holds no job.
    Idle,
    /// Holds jobs: runs one, the rest wait in its pipe.
    Busy,
}

/// One worker as an operator sees it.
#[derive(Debug, Clone, Serialize)]
pub struct WorkerInfo {
    /// The number in the pool of the Evaluator that owns it.
    pub wid: usize,
    /// Idle or busy.
    pub state: WorkerState,
    /// Jobs its Evaluator's workers finished since the pool started.
    pub jobs_done: u64,
    /// The worker process (none for a worker thread).
    pub pid: Option<u32>,
    /// The worker process's resident memory, when it has one.
    pub rss_bytes: Option<u64>,
    /// Seconds since it started (a replaced worker starts again).
    pub age_s: f64,
}

#[derive(Debug)]
struct WorkerEntry {
    state: WorkerState,
    jobs_done: u64,
    pid: Option<u32>,
    since: Instant,
}

#[derive(Debug, Default)]
/// The pool's counters and per-worker view; outlives pool restarts.
pub struct PoolStats {
    workers: Mutex<BTreeMap<usize, WorkerEntry>>,
    submitted: AtomicU64,
    started: AtomicU64,
    finished: AtomicU64,
    shed: AtomicU64,
    expired: AtomicU64,
    killed: AtomicU64,
    crashed: AtomicU64,
    restarted: AtomicU64,
    recycled: AtomicU64,
    requeued: AtomicU64,
    compiled: AtomicU64,
    handed: AtomicU64,
    /// Jobs given back to the pool unanswered (requeued, or sent again
    /// with their source): started again later, so not running meanwhile.
    returned: AtomicU64,
    /// CPU ticks of worker processes as they were replaced or stopped:
    /// demand sizing counts the part of them its window saw.
    retired_ticks: AtomicU64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
/// A counter of the pool.
pub enum Count {
    /// Accepted into the queue.
    Submitted,
    /// Taken by an Evaluator.
    Started,
    /// Answered, whatever the result.
    Finished,
    /// Refused because the queue was full or the pool paused with `shed`.
    Shed,
    /// Dropped after waiting past its deadline.
    Expired,
    /// Overran its deadline plus grace and was killed (or abandoned).
    Killed,
    /// The worker died under it.
    Crashed,
    /// A worker process or thread started in place of one that failed.
    Restarted,
    /// A worker replaced after its run count, memory or discarded contexts.
    Recycled,
    /// Handed back to the pool without running: its worker failed while
    /// running the job before it.
    Requeued,
    /// A version's source sent to a worker to compile: once per version and
    /// worker, again only after the worker was replaced or evicted it.
    Compiled,
    /// Handed to a worker by its caller, past the queue (also `Started`).
    Handed,
    /// Given back to the pool unanswered, to be started again: not
    /// running until then, and not finished (an operator's counts add up:
    /// every job submitted is finished, shed or expired once).
    Returned,
}

/// A point-in-time copy, with the gauges derived from the counters.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq, Eq)]
pub struct PoolSnapshot {
    /// Jobs accepted.
    pub submitted: u64,
    /// Jobs started and not yet finished.
    pub running: u64,
    /// Jobs answered.
    pub finished: u64,
    /// See [`Count::Shed`].
    pub shed: u64,
    /// See [`Count::Expired`].
    pub expired: u64,
    /// See [`Count::Killed`].
    pub killed: u64,
    /// See [`Count::Crashed`].
    pub crashed: u64,
    /// See [`Count::Restarted`].
    pub restarted: u64,
    /// See [`Count::Recycled`].
    pub recycled: u64,
    /// See [`Count::Requeued`].
    pub requeued: u64,
    /// See [`Count::Compiled`].
    pub compiled: u64,
    /// See [`Count::Handed`].
    pub handed: u64,
}

impl PoolStats {
    /// A worker process or thread started for Evaluator `wid`.
    pub fn worker_started(&self, wid: usize, pid: Option<u32>) {
        let mut workers = self.workers.locked();
        let entry = workers.entry(wid).or_insert(WorkerEntry {
            state: WorkerState::Idle,
            jobs_done: 0,
            pid,
            since: Instant::now(),
        });
        entry.pid = pid;
        entry.since = Instant::now();
    }

    /// Records what Evaluator `wid`'s worker is doing.
    pub fn worker_state(&self, wid: usize, state: WorkerState) {
        let mut workers = self.workers.locked();
        if let Some(entry) = workers.get_mut(&wid) {
            entry.state = state;
        }
    }

    /// Counts a job finished by Evaluator `wid`'s worker.
    pub fn job_done(&self, wid: usize) {
        let mut workers = self.workers.locked();
        if let Some(entry) = workers.get_mut(&wid) {
            entry.jobs_done += 1;
        }
    }

    /// Evaluator `wid` stopped: it leaves the view.
    pub fn worker_gone(&self, wid: usize) {
        self.workers.locked().remove(&wid);
    }

    /// The workers, with their memory read now.
    pub fn workers(&self) -> Vec<WorkerInfo> {
        let workers = self.workers.locked();
        workers
            .iter()
            .map(|(wid, w)| WorkerInfo {
                wid: *wid,
                state: w.state,
                jobs_done: w.jobs_done,
                pid: w.pid,
                rss_bytes: w.pid.and_then(rss_bytes),
                age_s: w.since.elapsed().as_secs_f64(),
            })
            .collect()
    }

    /// The running worker processes.
    pub fn pids(&self) -> Vec<u32> {
        self.workers.locked().values().filter_map(|w| w.pid).collect()
    }

    /// A worker process was replaced or stopped, having used `ticks`.
    pub fn retired(&self, ticks: u64) {
        self.retired_ticks.fetch_add(ticks, Ordering::Relaxed);
    }

    /// CPU ticks of every worker process replaced or stopped so far.
    pub fn retired_ticks(&self) -> u64 {
        self.retired_ticks.load(Ordering::Relaxed)
    }

    /// A job answered with an error before it started (the pool stopped or
    /// is shutting down): counted started and finished at once, so the
    /// counts still add up and `running` stays right.
    pub fn answered_unstarted(&self) {
        self.add(Count::Started);
        self.add(Count::Finished);
    }

    /// Adds one to a counter.
    pub fn add(&self, count: Count) {
        self.counter(count).fetch_add(1, Ordering::Relaxed);
    }

    fn counter(&self, count: Count) -> &AtomicU64 {
        match count {
            Count::Submitted => &self.submitted,
            Count::Started => &self.started,
            Count::Finished => &self.finished,
            Count::Shed => &self.shed,
            Count::Expired => &self.expired,
            Count::Killed => &self.killed,
            Count::Crashed => &self.crashed,
            Count::Restarted => &self.restarted,
            Count::Recycled => &self.recycled,
            Count::Requeued => &self.requeued,
            Count::Compiled => &self.compiled,
            Count::Handed => &self.handed,
            Count::Returned => &self.returned,
        }
    }

    /// A copy of the counters.
    pub fn snapshot(&self) -> PoolSnapshot {
        let get = |c| self.counter(c).load(Ordering::Relaxed);
        let finished = get(Count::Finished);
        PoolSnapshot {
            submitted: get(Count::Submitted),
            running: get(Count::Started).saturating_sub(finished + get(Count::Returned)),
            finished,
            shed: get(Count::Shed),
            expired: get(Count::Expired),
            killed: get(Count::Killed),
            crashed: get(Count::Crashed),
            restarted: get(Count::Restarted),
            recycled: get(Count::Recycled),
            requeued: get(Count::Requeued),
            compiled: get(Count::Compiled),
            handed: get(Count::Handed),
        }
    }
}

pub fn rss_bytes(pid: u32) -> Option<u64> {
    let statm = std::fs::read_to_string(format!("/proc/{pid}/statm")).ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    Some(pages * page.max(0) as u64)
}
