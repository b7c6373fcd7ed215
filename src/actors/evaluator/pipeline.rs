//! A worker's pipeline: the jobs in its hands, in the order it answers them,
//! how many more it may take, and the state its Evaluator, its reader and
//! callers handing it runs share (`PipelineState`, a lane). `worker.rs`
//! puts jobs in, `reader.rs` takes them out as replies arrive.

use std::collections::{HashSet, VecDeque};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use ractor::factory::Job;
use tokio::sync::Notify;

use super::pipes::RequestPipe;
use super::seat::PoolSeat;
use super::{EvalJob, PoolSettings, Work};
use crate::sync::Locked;

/// The weight of the newest run in the mean, as 1/N.
pub(super) const MEAN_WEIGHT: u32 = 8;
/// JavaScript contexts discarded after a deadline before the worker is
/// replaced: their garbage makes later collections slow (100+ ms measured
/// after hundreds).
pub const MAX_DISCARDS: u32 = 16;
/// Least time between two readings of a worker process's memory (each is a
/// read of /proc; by run count they cost 1% of the CPU under load). Jobs
/// handed over directly leave the Evaluator out, so one goes through it at
/// least this often, for it to check.
pub const RSS_EVERY: Duration = Duration::from_secs(1);
/// Code ids remembered as sent to a worker before the list starts over.
pub(super) const MAX_KNOWN_SOURCES: usize = 4096;

/// A worker as callers may hand it a job directly (`lanes.rs`).
pub type Lane = Arc<PipelineState>;

/// Called by a worker's reader when the worker has answered and may have
/// room for more (`Lanes::refill`).
pub type OnRoom = Arc<dyn Fn(&Lane) + Send + Sync>;

pub struct PipelineState {
    pub(super) pipeline: Mutex<Pipeline>,
    /// Where requests go; locked before `pipeline`, held from a job's place
    /// in the pipeline until its frame is written, so the two agree.
    pub(super) requests: Mutex<RequestPipe>,
    /// Bytes of requests the pipe holds without a write waiting.
    pub(super) capacity: usize,
    /// Wakes the reader when an idle worker is given a job, to time it.
    pub(super) woken: Notify,
    pub(super) seat: PoolSeat,
    pub(super) on_room: OnRoom,
    /// A refill found the pipe held: the holder looks at the queue again
    /// once it has written, and takes all the worker has room for in one
    /// write (a reader's refill it kept out would have), so the runs are
    /// not left waiting for the worker's next replies or a kick.
    pub(super) missed: AtomicBool,
}

/// The jobs in a worker's hands and how many more it may take.
pub(super) struct Pipeline {
    pub(super) jobs: VecDeque<SentJob>,
    /// The pool has not been told that this Evaluator can take more.
    pub(super) owes_finished: bool,
    /// The worker stopped answering; the Evaluator replaces it.
    pub(super) dead: bool,
    /// It was killed for a job that overran: the script's fault, not the
    /// worker's, so no reason to back off before starting the next.
    pub(super) overran: bool,
    pub(super) retired: bool,
    pub(super) last_reply: Instant,
    pub(super) mean_run: Option<Duration>,
    pub(super) max_depth: usize,
    pub(super) budget: Duration,
    pub(super) runs: u64,
    pub(super) discards: u32,
    /// Request bytes written and not yet answered: what the pipe may hold.
    pub(super) in_flight: usize,
    /// Code ids whose source this worker was sent (a guess: the worker
    /// answers `NeedSource` when it is wrong).
    pub(super) sources: HashSet<String>,
    /// When the Evaluator last sent a job here.
    pub(super) visited: Instant,
    /// Jobs held that go alone (`JobLimits::solo`).
    pub(super) solo: usize,
    /// Where its recycle stands.
    pub(super) successor: Successor,
}

/// A worker's replacement, once its Evaluator has decided to recycle it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Successor {
    /// None asked for.
    None,
    /// Starting: the worker goes on taking handed runs meanwhile (refusing
    /// them sent every run through the pool for the whole start-up, and a
    /// small queue shed them).
    Starting,
    /// Ready: the Evaluator must see a run to swap it in.
    Ready,
}

/// A job in the worker's hands.
pub(super) struct SentJob {
    pub(super) job: Job<(), EvalJob>,
    pub(super) at: Instant,
    pub(super) limits: JobLimits,
    pub(super) bytes: usize,
}

/// A job's limits, by the pool's settings when it was sent (they change on
/// reload; the worker's own copy is as of its start): how long its worker
/// may take, and how many jobs may wait in that worker with it.
#[derive(Debug, Clone, Copy)]
pub struct JobLimits {
    /// Longest the worker may take to answer it.
    pub limit: Duration,
    /// The deadline named to its caller if it is killed.
    pub deadline_ms: u64,
    /// Most jobs the worker may hold ...
    pub depth: usize,
    /// ... and about how much work, by its mean run time.
    pub budget: Duration,
    /// Its code overran lately (`suspects.rs`): nothing is put behind it.
    pub solo: bool,
}

impl JobLimits {
    /// `work`'s limits by the pool's settings now.
    pub fn of(work: &Work, settings: &PoolSettings) -> Self {
        Self {
            limit: match work {
                Work::Run { .. } | Work::Try { .. } => settings.deadline() + settings.kill_grace,
                Work::Check { .. } => settings.check_limit,
                #[cfg(debug_assertions)]
                Work::Probe(_) => settings.check_limit,
            },
            deadline_ms: settings.limits.deadline_ms,
            depth: settings.pipeline_depth,
            budget: settings.pipeline_budget,
            solo: false,
        }
    }
}

/// How far a hand may fill a worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Room {
    /// Only while it holds fewer than `BUSY_AT` jobs: a caller's hand. A
    /// busy worker's next runs wait in the lanes' queue until its replies
    /// make room, and its reader writes them together: one write and one
    /// wake-up of the worker for many runs, where a write per run was most
    /// of what handing runs over cost the server.
    Idle,
    /// Up to its depth: its reader's, after replies, or a kick.
    All,
}

/// Jobs a worker holds from which a caller's hand waits for its replies
/// (`Room::Idle`).
pub const BUSY_AT: usize = 2;

/// Why a worker did not take a job handed to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Why {
    /// It holds all it may now.
    Full,
    /// It stopped, or is being replaced.
    Gone,
    /// Its Evaluator has something to check first (`RSS_EVERY`).
    Due,
    /// It does not hold the code.
    NotHeld,
    /// Its frame is larger than the worker's pipe holds: only its
    /// Evaluator writes it (off the runtime's threads), so it goes to the
    /// pool rather than wait for room that never comes.
    Large,
}

impl Pipeline {
    /// A new worker's: empty, untimed, holding no code.
    pub(super) fn new(max_depth: usize, budget: Duration) -> Self {
        Self {
            jobs: VecDeque::new(),
            owes_finished: false,
            dead: false,
            overran: false,
            retired: false,
            last_reply: Instant::now(),
            mean_run: None,
            max_depth,
            budget,
            runs: 0,
            discards: 0,
            in_flight: 0,
            sources: HashSet::new(),
            visited: Instant::now(),
            solo: 0,
            successor: Successor::None,
        }
    }

    /// How many jobs the worker may hold.
    pub(super) fn depth(&self) -> usize {
        if self.solo > 0 {
            return 1;
        }
        match self.mean_run {
            None => 1,
            Some(mean) => {
                let fits = self.budget.as_nanos() / mean.as_nanos().max(1);
                fits.clamp(1, self.max_depth.max(1) as u128) as usize
            }
        }
    }

    /// Whether the pool is owed `Finished` now: it counts this Evaluator
    /// busy, and the worker can hold another job (or is gone). The one place
    /// the capacity state changes; see the diagram in `mod.rs`.
    pub(super) fn settle(&mut self) -> bool {
        let free = self.owes_finished && (self.dead || self.jobs.len() < self.depth());
        self.owes_finished &= !free;
        free
    }

    /// Why a caller may not hand it a run of `code_id` now, filling it as
    /// far as `room` lets, if it may not: it is retired, its Evaluator has
    /// something to check first (a recycle by runs, discards or memory, at
    /// least every `RSS_EVERY`), it has no room, or it lacks the code (a
    /// new worker does until its Evaluator sends it).
    /// A run from the lanes' queue (`queued`) is taken even when the
    /// Evaluator is due: the next fresh run goes to the pool for it, and the
    /// queue must not stall while the Evaluator replaces the worker.
    pub(super) fn refusal(
        &self,
        code_id: &str,
        queued: bool,
        room: Room,
        now: Instant,
        settings: &PoolSettings,
    ) -> Option<Why> {
        let most = match room {
            Room::Idle => self.depth().min(BUSY_AT),
            Room::All => self.depth(),
        };
        if self.retired {
            Some(Why::Gone)
        } else if !queued && self.is_due(now, settings) {
            Some(Why::Due)
        } else if self.jobs.len() >= most {
            Some(Why::Full)
        } else if !self.sources.contains(code_id) {
            Some(Why::NotHeld)
        } else {
            None
        }
    }

    /// Whether its Evaluator has something to check before it takes more
    /// handed runs.
    pub(super) fn is_due(&self, now: Instant, settings: &PoolSettings) -> bool {
        let recycle_runs = settings.recycle_after_runs;
        let recycle = match self.successor {
            Successor::None => (recycle_runs > 0 && self.runs >= recycle_runs) || self.discards >= MAX_DISCARDS,
            Successor::Starting => false,
            Successor::Ready => true,
        };
        recycle || now.saturating_duration_since(self.visited) >= RSS_EVERY
    }

    /// When the worker must have answered the job at the head.
    pub(super) fn due(&self) -> Option<Instant> {
        let head = self.jobs.front()?;
        Some(head.at.max(self.last_reply) + head.limits.limit)
    }
}

impl PipelineState {
    pub(super) fn lock(&self) -> MutexGuard<'_, Pipeline> {
        self.pipeline.locked()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pipeline(mean_run: Option<Duration>) -> Pipeline {
        Pipeline {
            mean_run,
            ..Pipeline::new(16, Duration::from_millis(2))
        }
    }

    #[test]
    fn finished_is_owed_once_and_only_when_the_pool_counts_this_busy() {
        let mut f = pipeline(None);
        assert!(!f.settle(), "nothing routed here: nothing owed");
        f.owes_finished = true;
        assert!(f.settle(), "room in the worker: owed now");
        assert!(!f.settle(), "told once");
        f.owes_finished = true;
        f.dead = true;
        assert!(f.settle(), "a dead worker frees the Evaluator");
    }

    #[test]
    fn depth_follows_the_mean_run_time() {
        // Untimed: one job at a time until the first reply.
        assert_eq!(pipeline(None).depth(), 1);
        assert_eq!(pipeline(Some(Duration::from_micros(500))).depth(), 4);
        // Quick jobs are capped by the setting, slow ones never below one.
        assert_eq!(pipeline(Some(Duration::from_micros(10))).depth(), 16);
        assert_eq!(pipeline(Some(Duration::ZERO)).depth(), 16);
        assert_eq!(pipeline(Some(Duration::from_millis(40))).depth(), 1);
    }

    #[test]
    fn a_worker_due_for_recycling_takes_handed_runs_while_its_successor_starts() {
        let settings = PoolSettings::from_sandbox(&crate::settings::Sandbox {
            recycle_after_runs: 10,
            ..Default::default()
        });
        let now = Instant::now();
        let mut f = pipeline(Some(Duration::from_micros(50)));
        f.sources.insert("c".into());
        assert_eq!(f.refusal("c", false, Room::All, now, &settings), None);
        f.runs = 10;
        assert_eq!(
            f.refusal("c", false, Room::All, now, &settings),
            Some(Why::Due),
            "the Evaluator must see it"
        );
        f.successor = Successor::Starting;
        assert_eq!(
            f.refusal("c", false, Room::All, now, &settings),
            None,
            "served while the next starts"
        );
        assert_eq!(
            f.refusal("c", false, Room::All, f.visited + RSS_EVERY, &settings),
            Some(Why::Due),
            "memory is still read"
        );
        f.successor = Successor::Ready;
        assert_eq!(
            f.refusal("c", false, Room::All, now, &settings),
            Some(Why::Due),
            "swapped in by the next"
        );
        // A run from the lanes' queue is taken even so, if it holds the code.
        assert_eq!(f.refusal("c", true, Room::All, now, &settings), None);
        assert_eq!(
            f.refusal("d", true, Room::All, now, &settings),
            Some(Why::NotHeld),
            "a run of other code would come back asking for its source"
        );
    }

    #[test]
    fn a_caller_hands_a_busy_worker_nothing_its_reader_fills_it() {
        let settings = PoolSettings::from_sandbox(&crate::settings::Sandbox::default());
        let now = Instant::now();
        let mut f = pipeline(Some(Duration::from_micros(10)));
        f.sources.insert("c".into());
        let limits = JobLimits::of(&check_job().msg.work, &settings);
        for held in 0..16 {
            let caller = f.refusal("c", false, Room::Idle, now, &settings);
            let reader = f.refusal("c", true, Room::All, now, &settings);
            assert_eq!(caller, (held >= BUSY_AT).then_some(Why::Full), "{held} held");
            assert_eq!(reader, None, "room up to its depth, 16: {held} held");
            f.jobs.push_back(SentJob {
                job: check_job(),
                at: now,
                limits,
                bytes: 1,
            });
        }
        assert_eq!(f.refusal("c", true, Room::All, now, &settings), Some(Why::Full));
    }

    fn check_job() -> Job<(), EvalJob> {
        let work = super::super::Work::Check {
            lang: crate::domain::Lang::Starlark,
            source: String::new(),
        };
        Job {
            key: (),
            msg: EvalJob {
                work,
                reply: None,
                with_source: false,
                alone: false,
            },
            options: ractor::factory::JobOptions::default(),
            accepted: None,
        }
    }
}
