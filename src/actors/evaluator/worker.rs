//! Worker: what runs scripts (a `vane worker` process, or a thread with
//! `isolation = "thread"`) as the Evaluator that owns it sees it: the jobs
//! handed to it, in the order it runs them (its pipeline), and the task that
//! reads its replies and answers each job's caller.
//!
//! Under load a worker finds its next job already in its pipe, so it never
//! idles for a round trip through the pool, and jobs travel in batches: one
//! write and one wake-up each way for many jobs. How many may wait adapts to
//! how long jobs take: about `pipeline_budget` of work, at most
//! `pipeline_depth`, and one until the worker's first reply has been timed.
//! So slow scripts still wait in the pool's queue, where its deadline and
//! shedding apply.
//!
//! The reader enforces each job's deadline, timing it from when the worker
//! could start it (the reply before it, or its sending if the worker was
//! idle). A worker that overruns is killed (a thread is abandoned); the
//! running job's caller is told why, and the jobs behind it, which never
//! started, go back to the pool with their original queue deadline.
//!
//! A run of code the worker already holds need not pass through the pool
//! at all: a caller may hand it to a worker with room itself (`hand`, see
//! `lanes.rs`), so the job costs one wake-up on the way in, not three.
//! Requests are written under one lock, in the order the pipeline lists
//! them, and never more than the pipe holds, so a write never waits.

use std::collections::{HashSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::Bytes;
use ractor::factory::Job;
use serde_json::value::RawValue;
use tokio::sync::Notify;

use super::pipes::{self, ReplyPipe, RequestPipe};
use super::process::{ProcessError, ProcessSettings};
use super::seat::PoolSeat;
use super::stats::{Count, WorkerState};
use super::{EvalError, EvalJob, PoolSettings, Work};
use crate::domain::Lang;
use crate::engine::EngineError;
use crate::engine::protocol::Response;
use crate::sync::Locked;

/// The weight of the newest run in the mean, as 1/N.
const MEAN_WEIGHT: u32 = 8;
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
const MAX_KNOWN_SOURCES: usize = 4096;

/// A running worker, owned by one Evaluator: dropping it lets the worker
/// finish the jobs it holds and exit.
pub struct Worker {
    shared: Lane,
    pid: Option<u32>,
}

/// A worker as callers may hand it a job directly (`lanes.rs`).
pub type Lane = Arc<PipelineState>;

/// Called by a worker's reader when the worker has answered and may have
/// room for more (`Lanes::refill`).
pub type OnRoom = Arc<dyn Fn(&Lane) + Send + Sync>;

pub struct PipelineState {
    pipeline: Mutex<Pipeline>,
    /// Where requests go; locked before `pipeline`, held from a job's place
    /// in the pipeline until its frame is written, so the two agree.
    requests: Mutex<RequestPipe>,
    /// Bytes of requests the pipe holds without a write waiting.
    capacity: usize,
    /// Wakes the reader when an idle worker is given a job, to time it.
    woken: Notify,
    seat: PoolSeat,
    on_room: OnRoom,
}

/// The jobs in a worker's hands and how many more it may take.
struct Pipeline {
    jobs: VecDeque<SentJob>,
    /// The pool has not been told that this Evaluator can take more.
    owes_finished: bool,
    /// The worker stopped answering; the Evaluator replaces it.
    dead: bool,
    retired: bool,
    last_reply: Instant,
    mean_run: Option<Duration>,
    max_depth: usize,
    budget: Duration,
    runs: u64,
    discards: u32,
    /// Request bytes written and not yet answered: what the pipe may hold.
    in_flight: usize,
    /// Code ids whose source this worker was sent (a guess: the worker
    /// answers `NeedSource` when it is wrong).
    sources: HashSet<String>,
    /// When the Evaluator last sent a job here.
    visited: Instant,
}

/// A job in the worker's hands.
struct SentJob {
    job: Job<(), EvalJob>,
    at: Instant,
    limits: JobLimits,
    bytes: usize,
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
        }
    }
}

impl Worker {
    /// Starts a worker of the kind `process` names and the task reading it.
    pub async fn spawn(process: &ProcessSettings, seat: PoolSeat, on_room: OnRoom) -> Result<Self, ProcessError> {
        let (requests, replies, capacity) = pipes::start(process).await?;
        let pid = replies.pid();
        let shared = Arc::new(PipelineState {
            pipeline: Mutex::new(Pipeline {
                jobs: VecDeque::new(),
                owes_finished: false,
                dead: false,
                retired: false,
                last_reply: Instant::now(),
                mean_run: None,
                max_depth: seat.settings.pipeline_depth,
                budget: seat.settings.pipeline_budget,
                runs: 0,
                discards: 0,
                in_flight: 0,
                sources: HashSet::new(),
                visited: Instant::now(),
            }),
            requests: Mutex::new(requests),
            capacity,
            woken: Notify::new(),
            seat,
            on_room,
        });
        tokio::spawn(read(shared.clone(), replies));
        Ok(Self { shared, pid })
    }

    pub fn pid(&self) -> Option<u32> {
        self.pid
    }

    /// The worker as callers may hand it jobs.
    pub fn lane(&self) -> Lane {
        self.shared.clone()
    }

    /// Whether the worker stopped answering (died, overran, or poisoned).
    pub fn is_dead(&self) -> bool {
        self.shared.lock().dead
    }

    /// Evaluations answered and JavaScript contexts discarded so far.
    pub fn counts(&self) -> (u64, u32) {
        let pipeline = self.shared.lock();
        (pipeline.runs, pipeline.discards)
    }

    /// Whether the worker has `code_id` compiled, so needs only its id.
    pub fn holds(&self, code_id: &str) -> bool {
        self.shared.lock().sources.contains(code_id)
    }

    /// Hands `job` (encoded as `frame`, carrying the source of `compiled`
    /// if any) to the worker and tells the pool this Evaluator can take
    /// another unless the worker has enough queued. Gives the job back if
    /// the worker is known to be gone; if the write fails, the reader sees
    /// the worker die and answers or requeues the job. A frame the pipe has
    /// no room for yet is written off the runtime's threads.
    // A job refused is handed back by value, as ractor passes jobs around:
    // boxing it would cost an allocation on every run.
    #[allow(clippy::result_large_err)]
    pub async fn send(
        &mut self,
        job: Job<(), EvalJob>,
        frame: Vec<u8>,
        limits: JobLimits,
        compiled: Option<String>,
    ) -> Result<(), Job<(), EvalJob>> {
        let routed = Routed::Pool { compiled };
        let take_more = match self.shared.put(job, frame, limits, routed, Wait::No) {
            Put::Sent(take_more) => take_more,
            Put::Refused(job, ..) => return Err(job),
            Put::NoRoom(job, frame, routed) => {
                let lane = self.shared.clone();
                let put = move || match lane.put(job, frame, limits, routed, Wait::Yes) {
                    Put::Sent(take_more) => Ok(take_more),
                    Put::Refused(job, ..) | Put::NoRoom(job, ..) => Err(job),
                };
                match tokio::task::spawn_blocking(put).await {
                    Ok(sent) => sent?,
                    // The write's thread panicked: the reader sees what
                    // became of the worker; nothing is owed to the pool.
                    Err(_) => false,
                }
            }
        };
        if take_more {
            self.shared.seat.finished();
        }
        Ok(())
    }
}

/// How a job reached a worker.
enum Routed {
    /// Through the pool and this worker's Evaluator, which the pool then
    /// counts busy until told `Finished`.
    Pool { compiled: Option<String> },
    /// Handed over by its caller (or taken from the lanes' queue, with no
    /// code id: a worker that lacks the code asks for it): only if the
    /// worker has room and its Evaluator need not look at it first.
    Direct { code_id: Option<String> },
}

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
}

/// Whether a write may wait for the worker to read.
#[derive(PartialEq)]
enum Wait {
    No,
    Yes,
}

/// A job a worker did not take, its frame, and why.
pub type Refused = (Job<(), EvalJob>, Vec<u8>, Why);

enum Put {
    /// In the pipeline and written; whether the pool is owed `Finished`.
    Sent(bool),
    /// The worker is gone, or (handed directly) cannot take it now.
    Refused(Job<(), EvalJob>, Vec<u8>, Why),
    /// The pipe has no room for the frame without a wait.
    NoRoom(Job<(), EvalJob>, Vec<u8>, Routed),
}

impl PipelineState {
    /// The Evaluator it works for.
    pub fn seat(&self) -> &PoolSeat {
        &self.seat
    }

    /// Whether its Evaluator must see a job before it takes fresh runs.
    pub fn is_due(&self, now: Instant) -> bool {
        self.lock().is_due(now, &self.seat.settings)
    }

    /// Hands a run to the worker, skipping the pool, if it can take it at
    /// once; gives the job and frame back if not. `held`: only if the
    /// worker holds the run's code.
    // A job refused is handed back by value, as ractor passes jobs around:
    // boxing it would cost an allocation on every run.
    #[allow(clippy::result_large_err)]
    pub fn hand(&self, job: Job<(), EvalJob>, frame: Vec<u8>, limits: JobLimits, held: bool) -> Result<(), Refused> {
        let code_id = match &job.msg.work {
            Work::Run { version, .. } => held.then(|| version.code_id.clone()),
            _ => return Err((job, frame, Why::NotHeld)),
        };
        match self.put(job, frame, limits, Routed::Direct { code_id }, Wait::No) {
            Put::Sent(take_more) => {
                // Owed from before: the worker's depth grew since.
                if take_more {
                    self.seat.finished();
                }
                Ok(())
            }
            Put::Refused(job, frame, why) => Err((job, frame, why)),
            Put::NoRoom(job, frame, _) => Err((job, frame, Why::Full)),
        }
    }

    fn put(&self, job: Job<(), EvalJob>, frame: Vec<u8>, limits: JobLimits, routed: Routed, wait: Wait) -> Put {
        let mut requests = match &routed {
            Routed::Direct { .. } => match self.requests.try_lock() {
                Ok(requests) => requests,
                // Another write is under way, perhaps a long one.
                Err(_) => return Put::Refused(job, frame, Why::Full),
            },
            Routed::Pool { .. } => self.requests.locked(),
        };
        let now = Instant::now();
        let (was_idle, take_more) = {
            let mut pipeline = self.lock();
            if pipeline.dead || matches!(*requests, RequestPipe::Closed) {
                return Put::Refused(job, frame, Why::Gone);
            }
            let fits = pipeline.in_flight + frame.len() <= self.capacity;
            match &routed {
                Routed::Direct { code_id } => {
                    let why = pipeline.refusal(code_id.as_deref(), now, &self.seat.settings);
                    if let Some(why) = why.or((!fits).then_some(Why::Full)) {
                        return Put::Refused(job, frame, why);
                    }
                }
                Routed::Pool { .. } if !fits && wait == Wait::No && !pipeline.jobs.is_empty() => {
                    return Put::NoRoom(job, frame, routed);
                }
                Routed::Pool { compiled } => {
                    pipeline.visited = now;
                    // The pool counts this Evaluator busy from the moment
                    // it routed the job here, until told `Finished`.
                    pipeline.owes_finished = true;
                    (pipeline.max_depth, pipeline.budget) = (limits.depth, limits.budget);
                    if let Some(code_id) = compiled {
                        if pipeline.sources.len() >= MAX_KNOWN_SOURCES {
                            pipeline.sources.clear();
                        }
                        pipeline.sources.insert(code_id.clone());
                        self.seat.stats.add(Count::Compiled);
                    }
                }
            }
            let was_idle = pipeline.jobs.is_empty();
            pipeline.in_flight += frame.len();
            pipeline.jobs.push_back(SentJob {
                job,
                at: now,
                limits,
                bytes: frame.len(),
            });
            (was_idle, pipeline.settle())
        };
        if was_idle {
            self.seat.stats.worker_state(self.seat.wid, WorkerState::Busy);
            self.woken.notify_one();
        }
        requests.write(frame);
        Put::Sent(take_more)
    }
}

impl Drop for Worker {
    /// Closing the requests lets the worker finish what it holds and exit; its
    /// reader answers those jobs (and tells the pool when the Evaluator is
    /// free, if it was full) and then pipes.
    fn drop(&mut self) {
        let mut requests = self.shared.requests.locked();
        self.shared.lock().retired = true;
        *requests = RequestPipe::Closed;
    }
}

impl Pipeline {
    /// How many jobs the worker may hold.
    fn depth(&self) -> usize {
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
    fn settle(&mut self) -> bool {
        let free = self.owes_finished && (self.dead || self.jobs.len() < self.depth());
        self.owes_finished &= !free;
        free
    }

    /// Why a caller may not hand it a run (of `code_id`, if it must hold
    /// it) now, if it may not: it is retired, its Evaluator has something
    /// to check first (a recycle by runs, discards or memory, at least
    /// every `RSS_EVERY`), it has no room, or it lacks the code.
    /// A run from the lanes' queue (no `code_id`) is taken even when the
    /// Evaluator is due: the next fresh run goes to the pool for it, and the
    /// queue must not stall while the Evaluator replaces the worker.
    fn refusal(&self, code_id: Option<&str>, now: Instant, settings: &PoolSettings) -> Option<Why> {
        if self.retired {
            Some(Why::Gone)
        } else if code_id.is_some() && self.is_due(now, settings) {
            Some(Why::Due)
        } else if self.jobs.len() >= self.depth() {
            Some(Why::Full)
        } else if code_id.is_some_and(|code_id| !self.sources.contains(code_id)) {
            Some(Why::NotHeld)
        } else {
            None
        }
    }

    /// Whether its Evaluator has something to check before it takes more
    /// handed runs.
    fn is_due(&self, now: Instant, settings: &PoolSettings) -> bool {
        let recycle_runs = settings.recycle_after_runs;
        (recycle_runs > 0 && self.runs >= recycle_runs)
            || self.discards >= MAX_DISCARDS
            || now.saturating_duration_since(self.visited) >= RSS_EVERY
    }

    /// When the worker must have answered the job at the head.
    fn due(&self) -> Option<Instant> {
        let head = self.jobs.front()?;
        Some(head.at.max(self.last_reply) + head.limits.limit)
    }
}

impl PipelineState {
    fn lock(&self) -> MutexGuard<'_, Pipeline> {
        self.pipeline.locked()
    }

    /// Answers the job at the head with `frame`. Errs when the worker has
    /// stopped serving after this reply, or replied to nothing.
    fn replied(&self, frame: &[u8]) -> Result<(), Stop> {
        let decoded = decode(frame);
        let now = Instant::now();
        let mut pipeline = self.lock();
        let Some(sent) = pipeline.jobs.pop_front() else {
            return Err(Stop::Unasked);
        };
        pipeline.in_flight -= sent.bytes;
        let run = now.saturating_duration_since(sent.at.max(pipeline.last_reply));
        pipeline.last_reply = now;
        pipeline.runs += 1;
        pipeline.mean_run = Some(match pipeline.mean_run {
            None => run,
            Some(mean) => mean - mean / MEAN_WEIGHT + run / MEAN_WEIGHT,
        });
        let lang = sent.job.msg.work.script_lang();
        let discarded = lang == Some(Lang::Javascript)
            && matches!(
                decoded,
                Decoded::Done(Err(EvalError::Engine(EngineError::Deadline { .. })), _)
            );
        pipeline.discards += u32::from(discarded);
        let release = pipeline.settle();
        let idle = pipeline.jobs.is_empty();
        drop(pipeline);

        let seat = &self.seat;
        let stopped = match decoded {
            Decoded::NeedSource => {
                let mut job = sent.job;
                job.msg.with_source = true;
                seat.back_to_pool(job, false);
                false
            }
            Decoded::Done(result, poisoned) => {
                if let Some(lang) = lang {
                    crate::metrics::evaluated(lang.as_str(), run);
                }
                seat.answer(sent.job, result);
                seat.stats.job_done(seat.wid);
                poisoned
            }
        };
        if idle {
            seat.stats.worker_state(seat.wid, WorkerState::Idle);
        }
        if release {
            seat.finished();
        }
        if stopped { Err(Stop::Poisoned) } else { Ok(()) }
    }

    /// The worker is gone: the job it was running gets `error` (if there was
    /// one), the jobs behind it go back to the pool.
    fn failed(&self, error: Option<ProcessError>, pid: Option<u32>) {
        let mut pipeline = self.lock();
        pipeline.dead = true;
        pipeline.in_flight = 0;
        let mut jobs = std::mem::take(&mut pipeline.jobs);
        let owed = pipeline.settle();
        let retired = pipeline.retired;
        drop(pipeline);
        let seat = &self.seat;
        match (jobs.pop_front(), error) {
            (Some(head), Some(error)) => {
                tracing::warn!(wid = seat.wid, pid, %error, "worker replaced");
                seat.answer(head.job, Err(failure(error, head.limits.deadline_ms, seat)));
            }
            (Some(head), None) => jobs.push_front(head),
            (None, Some(error)) if !retired => {
                tracing::warn!(wid = seat.wid, pid, %error, "idle worker died, replacing it");
            }
            (None, _) => {}
        }
        for sent in jobs {
            seat.back_to_pool(sent.job, true);
        }
        seat.stats.worker_state(seat.wid, WorkerState::Idle);
        if owed {
            seat.finished();
        }
    }
}

enum Stop {
    /// The worker's interpreter panicked; it exits after its reply.
    Poisoned,
    /// A reply to no request: the worker is confused.
    Unasked,
}

/// Reads replies until the worker exits, overruns or stops serving.
async fn read(shared: Arc<PipelineState>, mut replies: ReplyPipe) {
    let pid = replies.pid();
    // One timer, moved to each head's due time rather than made anew for
    // every batch of replies.
    let sleep = tokio::time::sleep_until(far_future().into());
    tokio::pin!(sleep);
    let error = loop {
        let due = shared.lock().due();
        if let Some(due) = due {
            sleep.as_mut().reset(due.into());
        }
        tokio::select! {
            biased;
            frame = replies.next() => match frame {
                Ok(frame) => match replied_all(&shared, &mut replies, frame) {
                    Ok(()) => (shared.on_room)(&shared),
                    Err(error) => break error,
                },
                Err(io) => {
                    let quiet = {
                        let pipeline = shared.lock();
                        pipeline.retired && pipeline.jobs.is_empty()
                    };
                    break if quiet { None } else { Some(replies.exit_error(io).await) };
                }
            },
            () = &mut sleep, if due.is_some() => {
                replies.kill().await;
                let limit = shared.lock().jobs.front().map_or(Duration::ZERO, |s| s.limits.limit);
                break Some(ProcessError::Overran(limit));
            }
            () = shared.woken.notified() => {}
        }
    };
    shared.failed(error, pid);
}

/// Answers `first` and every further reply already waiting.
fn replied_all(shared: &PipelineState, replies: &mut ReplyPipe, first: Bytes) -> Result<(), Option<ProcessError>> {
    let mut frame = first;
    loop {
        match shared.replied(&frame) {
            Ok(()) => {}
            Err(Stop::Poisoned) => {
                shared.seat.stats.add(Count::Crashed);
                return Err(None);
            }
            Err(Stop::Unasked) => return Err(Some(ProcessError::Died("it replied to nothing".into()))),
        }
        frame = match replies.ready() {
            Some(Ok(next)) => next,
            // A read error shows again on the next read, which handles it.
            Some(Err(_)) | None => return Ok(()),
        };
    }
}

fn far_future() -> Instant {
    Instant::now() + Duration::from_secs(86_400)
}

/// What a caller is told when its worker failed under it.
fn failure(error: ProcessError, deadline_ms: u64, seat: &PoolSeat) -> EvalError {
    match error {
        ProcessError::Overran(_) => {
            seat.stats.add(Count::Killed);
            EvalError::Killed { deadline_ms }
        }
        ProcessError::OutOfMemory => {
            seat.stats.add(Count::Crashed);
            EvalError::Engine(EngineError::Memory {
                message: format!(
                    "the script used up its sandbox's {} MiB and the sandbox was replaced",
                    seat.settings.process.memory_bytes >> 20
                ),
            })
        }
        other => {
            seat.stats.add(Count::Crashed);
            EvalError::Crashed(other.to_string())
        }
    }
}

/// A worker's reply, read once.
enum Decoded {
    /// The result, and whether the worker has stopped serving.
    Done(Result<Box<RawValue>, EvalError>, bool),
    /// It does not hold the code: send the source.
    NeedSource,
}

fn decode(reply: &[u8]) -> Decoded {
    match serde_json::from_slice::<Response>(reply) {
        Ok(Response::Ok(value)) => Decoded::Done(Ok(value), false),
        Ok(Response::Err(e)) => Decoded::Done(Err(EvalError::Engine(e)), false),
        Ok(Response::Poisoned(e)) => Decoded::Done(Err(EvalError::Engine(e)), true),
        Ok(Response::NeedSource) => Decoded::NeedSource,
        Err(e) => Decoded::Done(Err(EvalError::Crashed(format!("unreadable reply: {e}"))), true),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pipeline(mean_run: Option<Duration>) -> Pipeline {
        Pipeline {
            jobs: VecDeque::new(),
            owes_finished: false,
            dead: false,
            retired: false,
            last_reply: Instant::now(),
            mean_run,
            max_depth: 16,
            budget: Duration::from_millis(2),
            runs: 0,
            discards: 0,
            in_flight: 0,
            sources: HashSet::new(),
            visited: Instant::now(),
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
}
