//! Lanes: the live workers, by Evaluator, that a caller may hand a run to
//! itself, and the queue where runs wait for one. Through the pool a job
//! wakes two actors before it is written to its worker (the factory, then
//! the Evaluator); handed over, it is written by the caller's own task to
//! a worker that is not busy (`Room::Idle`), or waits here for the reader
//! of a worker that has just answered and has room again, which writes all
//! it takes at once.
//!
//! Only runs go this way, and only to a worker that holds their code (runs
//! of code none holds may wait here, and leave for the pool from the
//! head); they may pass jobs waiting in the pool's own queue, which get a
//! worker's room as its replies make it. Everything else (a first run that
//! sends the source, a worker to start, recycle or check, checks and
//! playground runs) still goes through the pool and its Evaluators. The queue here keeps the
//! pool's rules: at most `sandbox.queue_bound` jobs (a job past it is shed,
//! 503) and none run after waiting `sandbox.queue_wait_ms` (503).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Instant;

use ractor::factory::Job;

use super::pipeline::{JobLimits, Lane, Room, Why};
use super::stats::{Count, PoolStats};
use super::worker::Batch;
use super::{EvalError, EvalJob, PoolSettings};
use crate::sync::{Locked, RwLocked};

/// One slot per Evaluator, holding its worker while it has one, and the
/// runs waiting for room in any of them.
pub struct Lanes {
    /// Tried in order, so a caller's runs go to the first worker that is
    /// not busy (`Room::Idle`), and waiting runs to whichever answers
    /// first: a worker kept busy takes its jobs in batches, and one left
    /// idle can be stopped (`demand.rs`).
    slots: RwLock<Vec<Option<Lane>>>,
    waiting: Mutex<VecDeque<Waiting>>,
    /// The next waiting run's ticket.
    tickets: AtomicU64,
    stats: Arc<PoolStats>,
    /// Suspects' runs between their Evaluator's check and their worker.
    starting_alone: AtomicUsize,
}

/// A suspect's run counted as on its way to a worker.
pub struct StartingAlone(Arc<Lanes>, usize);

impl StartingAlone {
    /// How many others were on their way when this one started.
    pub fn others(&self) -> usize {
        self.1
    }
}

impl Drop for StartingAlone {
    fn drop(&mut self) {
        self.0.starting_alone.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Where a handed run went.
pub enum Handed {
    /// To a worker, or answered already (shed: the queue was full).
    Now,
    /// Into the queue, under this ticket: its caller withdraws it once it
    /// has waited `sandbox.queue_wait_ms` (no timer here would wake for it).
    Queued(u64),
}

/// A caller's place in the queue: dropped while its run still waits (the
/// caller went away), it takes the run out.
pub struct Place {
    lanes: Arc<Lanes>,
    ticket: Option<u64>,
}

impl Place {
    pub fn new(lanes: Arc<Lanes>, ticket: u64) -> Self {
        Self {
            lanes,
            ticket: Some(ticket),
        }
    }

    /// The run left the queue and was answered.
    pub fn left(mut self) {
        self.ticket = None;
    }

    /// Takes the run out if it still waits; it has waited too long.
    pub fn withdraw(mut self) -> bool {
        self.ticket.take().is_some_and(|ticket| self.lanes.withdraw(ticket))
    }
}

impl Drop for Place {
    fn drop(&mut self) {
        if let Some(ticket) = self.ticket.take() {
            self.lanes.withdraw(ticket);
        }
    }
}

/// A run waiting for a worker with room.
struct Waiting {
    ticket: u64,
    job: Job<(), EvalJob>,
    frame: Vec<u8>,
    limits: JobLimits,
}

impl Lanes {
    pub fn new(stats: Arc<PoolStats>) -> Self {
        Self {
            slots: RwLock::default(),
            waiting: Mutex::default(),
            tickets: AtomicU64::new(0),
            stats,
            starting_alone: AtomicUsize::new(0),
        }
    }

    /// Evaluator `wid`'s worker is now `lane`; it takes what waits.
    pub fn open(&self, wid: usize, lane: Lane) {
        {
            let mut slots = self.slots.writing();
            if slots.len() <= wid {
                slots.resize(wid + 1, None);
            }
            slots[wid] = Some(lane.clone());
        }
        self.refill(&lane);
    }

    /// A suspect's run on its way to a worker, counted until dropped.
    pub fn start_alone(self: &Arc<Self>) -> StartingAlone {
        let before = self.starting_alone.fetch_add(1, Ordering::Relaxed);
        StartingAlone(self.clone(), before)
    }

    /// How many workers hold a run that goes alone (a suspect's, or one
    /// whose worker died under it).
    pub fn held_alone(&self) -> usize {
        let slots = self.slots.reading();
        let holds = |lane: &Lane| lane.lock().jobs.iter().any(|sent| sent.limits.solo);
        slots.iter().flatten().filter(|lane| holds(lane)).count()
    }

    /// Evaluator `wid`'s worker `lane` is gone (not a newer one that took
    /// its place).
    pub fn close(&self, wid: usize, lane: &Lane) {
        if let Some(slot) = self.slots.writing().get_mut(wid)
            && slot.as_ref().is_some_and(|open| Arc::ptr_eq(open, lane))
        {
            *slot = None;
        }
    }

    /// The pool is shrinking to `workers` Evaluators: those past it (the
    /// pool stops the last ones) take nothing more from now on.
    pub fn close_from(&self, workers: usize) {
        for slot in self.slots.writing().iter_mut().skip(workers) {
            *slot = None;
        }
    }

    /// Takes a run out of the queue if it still waits there; it has waited
    /// too long.
    pub fn withdraw(&self, ticket: u64) -> bool {
        let mut waiting = self.waiting.locked();
        let Some(at) = waiting.iter().position(|w| w.ticket == ticket) else {
            return false;
        };
        waiting.remove(at);
        self.stats.add(Count::Expired);
        true
    }

    /// Runs waiting for a worker.
    pub fn waiting(&self) -> usize {
        self.waiting.locked().len()
    }

    /// Hands `job` (a run, encoded as `frame`) to a worker that holds its
    /// code and is not busy, or queues it while every worker is. Gives it
    /// back for the pool when a worker lacks the code or needs its
    /// Evaluator, or there is no worker.
    // A job refused is handed back by value, as ractor passes jobs around:
    // boxing it would cost an allocation on every run.
    #[allow(clippy::result_large_err)]
    pub fn hand(
        &self,
        mut job: Job<(), EvalJob>,
        mut frame: Vec<u8>,
        limits: JobLimits,
        settings: &PoolSettings,
    ) -> Result<Handed, Job<(), EvalJob>> {
        let slots = self.slots.reading();
        if slots.iter().all(Option::is_none) {
            return Err(job);
        }
        // Whatever waits goes first, as far as workers have room (and runs
        // that waited too long leave), so an idle pool never turns a run
        // away for a queue it could empty.
        if !self.waiting.locked().is_empty() {
            for lane in slots.iter().flatten() {
                self.fill(lane, Room::Idle);
            }
        }
        if self.waiting.locked().is_empty() {
            for lane in slots.iter().flatten() {
                let handed = lane.hand(job, frame, limits);
                // A refill kept out while this held the pipe.
                if lane.missed_refill() {
                    self.refill(lane);
                }
                match handed {
                    Ok(()) => {
                        self.started();
                        return Ok(Handed::Now);
                    }
                    Err((back, unused, why)) => {
                        (job, frame) = (back, unused);
                        // The pool's Evaluators send the source, replace
                        // a dead worker or check one.
                        if why != Why::Full {
                            return Err(job);
                        }
                    }
                }
            }
        } else {
            // Queued runs keep going to a worker whose Evaluator is due to
            // check it; fresh ones go to the pool until it has.
            let now = Instant::now();
            if slots.iter().flatten().any(|lane| lane.is_due(now)) {
                return Err(job);
            }
        }
        let ticket = self.tickets.fetch_add(1, Ordering::Relaxed);
        {
            let mut waiting = self.waiting.locked();
            if waiting.len() >= settings.queue_bound {
                drop(waiting);
                self.stats.add(Count::Shed);
                answer(job, EvalError::Overloaded);
                return Ok(Handed::Now);
            }
            waiting.push_back(Waiting {
                ticket,
                job,
                frame,
                limits,
            });
        }
        // A worker may have made room since it was asked above, and found
        // the queue empty then.
        for lane in slots.iter().flatten() {
            self.fill(lane, Room::Idle);
        }
        Ok(Handed::Queued(ticket))
    }

    /// Has every worker take what waits, as far as it has room.
    pub fn kick(&self) {
        for lane in self.slots.reading().iter().flatten() {
            self.refill(lane);
        }
    }

    /// Gives `lane`'s worker the runs that wait, while it has room, written
    /// together.
    pub fn refill(&self, lane: &Lane) {
        self.fill(lane, Room::All);
    }

    /// As `refill`, as far as `room` lets it fill the worker.
    fn fill(&self, lane: &Lane, mut room: Room) {
        // A refill that finds the pipe held (by another refill's batch, or
        // a caller's hand) leaves the runs to its holder, who looks again
        // after writing and takes all there is room for, in one write.
        while !self.waiting.locked().is_empty() {
            let Some(batch) = lane.batch(room) else {
                return;
            };
            self.take_into(lane, batch);
            if !lane.missed_refill() {
                return;
            }
            room = Room::All;
        }
    }

    /// Hands waiting runs to the batch's worker until it is full; the batch
    /// writes them as it goes. Of runs whose code the worker lacks, the
    /// first goes to the pool, whose Evaluators send the source, and the
    /// next (up to `PASSED_BY`) keep their places while runs behind them
    /// go in.
    fn take_into(&self, lane: &Lane, mut batch: Batch<'_>) {
        let mut lacking = Vec::new();
        let mut sent_for_source = false;
        loop {
            let Some(next) = self.waiting.locked().pop_front() else {
                break;
            };
            // Its wait is counted from its submission (`sandbox.queue_wait_ms`).
            if next.job.is_expired() {
                self.stats.add(Count::Expired);
                answer(next.job, EvalError::Expired);
                continue;
            }
            match batch.hand(next.job, next.frame, next.limits) {
                Ok(()) => self.started(),
                Err((job, frame, Why::Full)) => {
                    self.waiting.locked().push_front(Waiting { job, frame, ..next });
                    break;
                }
                // Handed to a worker that lacks its code (a new one, or a
                // config just published), a run came back asking for its
                // source, through the pool anyway, and so did every other
                // of the batch.
                Err((job, _, Why::NotHeld)) if !sent_for_source => {
                    sent_for_source = true;
                    lane.seat().to_pool(job);
                }
                Err((job, frame, Why::NotHeld)) => {
                    lacking.push(Waiting { job, frame, ..next });
                    if lacking.len() >= PASSED_BY {
                        break;
                    }
                }
                // Gone: one job goes to the pool, so the worker's Evaluator
                // gets to replace it; the rest wait for another worker.
                Err((job, ..)) => {
                    lane.seat().to_pool(job);
                    break;
                }
            }
        }
        let mut waiting = self.waiting.locked();
        for kept in lacking.into_iter().rev() {
            waiting.push_front(kept);
        }
    }

    fn started(&self) {
        self.stats.add(Count::Started);
        self.stats.add(Count::Handed);
    }
}

/// Runs a refill steps past, whose code its worker lacks, before it stops:
/// each is taken out of the queue and put back.
const PASSED_BY: usize = 16;

fn answer(mut job: Job<(), EvalJob>, error: EvalError) {
    if let Some(reply) = job.msg.reply.take() {
        let _ = reply.send(Err(error));
    }
}
