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

use std::collections::VecDeque;
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
use super::{EvalError, EvalJob};
use crate::domain::Lang;
use crate::engine::EngineError;
use crate::engine::protocol::Response;
use crate::sync::Locked;

/// The weight of the newest run in the mean, as 1/N.
const MEAN_WEIGHT: u32 = 8;

/// A running worker, owned by one Evaluator: dropping it lets the worker
/// finish the jobs it holds and exit.
pub struct Worker {
    requests: RequestPipe,
    shared: Arc<PipelineState>,
    pid: Option<u32>,
}

struct PipelineState {
    pipeline: Mutex<Pipeline>,
    /// Wakes the reader when an idle worker is given a job, to time it.
    woken: Notify,
    seat: PoolSeat,
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
}

/// A job in the worker's hands.
struct SentJob {
    job: Job<(), EvalJob>,
    at: Instant,
    limits: JobLimits,
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

impl Worker {
    /// Starts a worker of the kind `process` names and the task reading it.
    pub async fn spawn(process: &ProcessSettings, seat: PoolSeat) -> Result<Self, ProcessError> {
        let (requests, replies) = pipes::start(process).await?;
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
            }),
            woken: Notify::new(),
            seat,
        });
        tokio::spawn(read(shared.clone(), replies));
        Ok(Self { requests, shared, pid })
    }

    pub fn pid(&self) -> Option<u32> {
        self.pid
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

    /// Hands `job` (encoded as `frame`) to the worker and tells the pool this
    /// Evaluator can take another unless the worker has enough queued. Gives
    /// the job back if the worker is known to be gone; if the write fails,
    /// the reader sees the worker die and answers or requeues the job.
    pub async fn send(
        &mut self,
        job: Job<(), EvalJob>,
        frame: Vec<u8>,
        limits: JobLimits,
    ) -> Result<(), Job<(), EvalJob>> {
        let (was_idle, take_more) = {
            let mut pipeline = self.shared.lock();
            if pipeline.dead {
                return Err(job);
            }
            let was_idle = pipeline.jobs.is_empty();
            pipeline.jobs.push_back(SentJob {
                job,
                at: Instant::now(),
                limits,
            });
            (pipeline.max_depth, pipeline.budget) = (limits.depth, limits.budget);
            // The pool counts this Evaluator busy from the moment it routed
            // the job here, until told `Finished`.
            pipeline.owes_finished = true;
            (was_idle, pipeline.settle())
        };
        let seat = &self.shared.seat;
        if was_idle {
            seat.stats.worker_state(seat.wid, WorkerState::Busy);
            self.shared.woken.notify_one();
        }
        self.requests.send(frame).await;
        if take_more {
            seat.finished();
        }
        Ok(())
    }
}

impl Drop for Worker {
    /// Closing the requests lets the worker finish what it holds and exit; its
    /// reader answers those jobs (and tells the pool when the Evaluator is
    /// free, if it was full) and then pipes.
    fn drop(&mut self) {
        self.shared.lock().retired = true;
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
                    Ok(()) => continue,
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
