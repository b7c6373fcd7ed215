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
//! at all: a caller may hand it itself to a worker that is not busy
//! (`hand`, see `lanes.rs`), so the job costs one wake-up on the way in,
//! not three; a
//! busy worker's runs wait in the lanes' queue and its reader writes them
//! together when its replies make room (`Batch`).
//! Requests are written under one lock, in the order the pipeline lists
//! them, and never more than the pipe holds, so a write never waits.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ractor::factory::Job;
use tokio::sync::Notify;

use super::pipeline::{JobLimits, Lane, MAX_KNOWN_SOURCES, OnRoom, Pipeline, PipelineState, Room, SentJob, Why};
use super::pipes::{self, RequestPipe};
use super::process::{ProcessError, ProcessSettings};
use super::reader::read;
use super::seat::PoolSeat;
use super::stats::{Count, WorkerState};
use super::{EvalJob, Work};
use crate::sync::Locked;

/// A running worker, owned by one Evaluator: dropping it lets the worker
/// finish the jobs it holds and exit.
pub struct Worker {
    shared: Lane,
    pid: Option<u32>,
}

impl Worker {
    /// Starts a worker of the kind `process` names and the task reading it.
    pub async fn spawn(process: &ProcessSettings, seat: PoolSeat, on_room: OnRoom) -> Result<Self, ProcessError> {
        let (requests, replies, capacity) = pipes::start(process).await?;
        let pid = replies.pid();
        let shared = Arc::new(PipelineState {
            pipeline: Mutex::new(Pipeline::new(
                seat.settings.pipeline_depth,
                seat.settings.pipeline_budget,
            )),
            requests: Mutex::new(requests),
            capacity,
            woken: Notify::new(),
            seat,
            on_room,
            missed: AtomicBool::new(false),
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

    /// Whether it was killed because a job overran its deadline.
    pub fn overran(&self) -> bool {
        self.shared.lock().overran
    }

    /// Evaluations answered and JavaScript contexts discarded so far.
    pub fn counts(&self) -> (u64, u32) {
        let pipeline = self.shared.lock();
        (pipeline.runs, pipeline.discards)
    }

    /// Its mean run time, once it has answered.
    pub fn mean_run(&self) -> Option<Duration> {
        self.shared.lock().mean_run
    }

    /// Starts from a predecessor's mean run time, unless it has timed runs
    /// of its own.
    pub fn inherit(&self, mean_run: Option<Duration>) {
        let mut pipeline = self.shared.lock();
        if pipeline.mean_run.is_none() {
            pipeline.mean_run = mean_run;
        }
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
            Ok(take_more) => take_more,
            Err(Unplaced::Refused(job, ..)) => return Err(job),
            Err(Unplaced::NoRoom(job, frame, routed)) => {
                let lane = self.shared.clone();
                let put = move || match lane.put(job, frame, limits, routed, Wait::Yes) {
                    Ok(take_more) => Ok(take_more),
                    Err(Unplaced::Refused(job, ..) | Unplaced::NoRoom(job, ..)) => Err(job),
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
    /// Handed over by its caller, or taken from the lanes' queue
    /// (`queued`): a run, only if the worker holds its code and has room
    /// (as far as `room` lets it fill), and, unless queued, its Evaluator
    /// need not look at it first.
    Direct { queued: bool, room: Room },
}

#[derive(PartialEq)]
enum Wait {
    No,
    Yes,
}

/// A job a worker did not take, its frame, and why.
pub type Refused = (Job<(), EvalJob>, Vec<u8>, Why);

/// Why a job was not put in a worker's pipeline.
enum Unplaced {
    /// The worker is gone, or (handed directly) cannot take it now.
    Refused(Job<(), EvalJob>, Vec<u8>, Why),
    /// The pipe has no room for the frame without a wait.
    NoRoom(Job<(), EvalJob>, Vec<u8>, Routed),
}

impl Unplaced {
    /// As a caller handing a run directly is told: room that a wait would
    /// make is no room now.
    fn refused(self) -> Refused {
        match self {
            Self::Refused(job, frame, why) => (job, frame, why),
            Self::NoRoom(job, frame, _) => (job, frame, Why::Full),
        }
    }
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

    /// Hands a run whose code the worker holds to it, skipping the pool,
    /// if it can take it at once; gives the job and frame back if not.
    // A job refused is handed back by value, as ractor passes jobs around:
    // boxing it would cost an allocation on every run.
    #[allow(clippy::result_large_err)]
    pub fn hand(&self, job: Job<(), EvalJob>, frame: Vec<u8>, limits: JobLimits) -> Result<(), Refused> {
        let routed = Routed::Direct {
            queued: false,
            room: Room::Idle,
        };
        let take_more = self
            .put(job, frame, limits, routed, Wait::No)
            .map_err(Unplaced::refused)?;
        // Owed from before: the worker's depth grew since.
        if take_more {
            self.seat.finished();
        }
        Ok(())
    }

    /// In the pipeline and written, and whether the pool is owed
    /// `Finished`; or why not.
    #[allow(clippy::result_large_err)]
    fn put(
        &self,
        job: Job<(), EvalJob>,
        frame: Vec<u8>,
        limits: JobLimits,
        routed: Routed,
        wait: Wait,
    ) -> Result<bool, Unplaced> {
        let mut requests = match &routed {
            Routed::Direct { .. } => match self.requests.try_lock() {
                Ok(requests) => requests,
                // Another write is under way, perhaps a long one.
                Err(_) => return Err(Unplaced::Refused(job, frame, Why::Full)),
            },
            Routed::Pool { .. } => self.requests.locked(),
        };
        let (take_more, frame) = self.place(&requests, job, frame, limits, routed, wait)?;
        requests.write(frame);
        Ok(take_more)
    }

    /// Puts a job in the pipeline, its frame to be written next by the
    /// caller, who holds `requests`; or says why not.
    #[allow(clippy::result_large_err)]
    fn place(
        &self,
        requests: &RequestPipe,
        job: Job<(), EvalJob>,
        frame: Vec<u8>,
        limits: JobLimits,
        routed: Routed,
        wait: Wait,
    ) -> Result<(bool, Vec<u8>), Unplaced> {
        let now = Instant::now();
        let (was_idle, take_more) = {
            let mut pipeline = self.lock();
            if pipeline.dead || matches!(*requests, RequestPipe::Closed) {
                return Err(Unplaced::Refused(job, frame, Why::Gone));
            }
            let fits = pipeline.in_flight + frame.len() <= self.capacity;
            match &routed {
                Routed::Direct { .. } if frame.len() > self.capacity => {
                    return Err(Unplaced::Refused(job, frame, Why::Large));
                }
                Routed::Direct { queued, room } => {
                    let Work::Run { version, .. } = &job.msg.work else {
                        return Err(Unplaced::Refused(job, frame, Why::NotHeld));
                    };
                    let why = pipeline.refusal(&version.code_id, *queued, *room, now, &self.seat.settings);
                    if let Some(why) = why.or((!fits).then_some(Why::Full)) {
                        return Err(Unplaced::Refused(job, frame, why));
                    }
                }
                Routed::Pool { .. } if !fits && wait == Wait::No && !pipeline.jobs.is_empty() => {
                    return Err(Unplaced::NoRoom(job, frame, routed));
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
            pipeline.solo += usize::from(limits.solo);
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
        Ok((take_more, frame))
    }

    /// A batch of runs for this worker, filling it as far as `room` lets,
    /// if no other write is under way; if one is, whoever holds the pipe
    /// is told to look again (`missed_refill`).
    pub fn batch(&self, room: Room) -> Option<Batch<'_>> {
        let Ok(requests) = self.requests.try_lock() else {
            self.missed.store(true, Ordering::Release);
            return None;
        };
        Some(Batch {
            lane: self,
            requests,
            room,
            frames: Vec::new(),
        })
    }

    /// Whether a refill found the pipe held since this was last asked.
    pub fn missed_refill(&self) -> bool {
        self.missed.swap(false, Ordering::AcqRel)
    }
}

/// Runs handed to a worker under one hold of its request pipe and written
/// in one go when the batch ends: a batch of replies makes room for
/// several waiting runs, and one write wakes the worker once (a write per
/// run was most of what handing runs over cost the server).
pub struct Batch<'a> {
    lane: &'a PipelineState,
    requests: std::sync::MutexGuard<'a, RequestPipe>,
    room: Room,
    frames: Vec<Vec<u8>>,
}

impl Batch<'_> {
    /// As `PipelineState::hand`, of a run from the lanes' queue: taken
    /// even when its Evaluator is due; its frame goes with the batch.
    #[allow(clippy::result_large_err)]
    pub fn hand(&mut self, job: Job<(), EvalJob>, frame: Vec<u8>, limits: JobLimits) -> Result<(), Refused> {
        let routed = Routed::Direct {
            queued: true,
            room: self.room,
        };
        let (take_more, frame) = self
            .lane
            .place(&self.requests, job, frame, limits, routed, Wait::No)
            .map_err(Unplaced::refused)?;
        if take_more {
            self.lane.seat.finished();
        }
        self.frames.push(frame);
        Ok(())
    }
}

impl Drop for Batch<'_> {
    fn drop(&mut self) {
        match self.frames.len() {
            0 => {}
            1 => self.requests.write(self.frames.pop().unwrap_or_default()),
            _ => self.requests.write_frames(std::mem::take(&mut self.frames)),
        }
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
