//! Evaluator: one actor of the EvaluatorPool (ractor calls it a factory
//! worker), owning one worker (a `vane worker` process, or a thread with
//! `isolation = "thread"`; `worker.rs`). It hands each job to its worker and
//! returns at once; the worker's reader answers the job and tells the pool
//! when this Evaluator can take more, so under load several jobs wait in the
//! worker instead of one at a time.
//!
//! Supervised by the pool (the ractor factory), which respawns it if it fails.
//! A restart loses the worker and its compiled-code cache (jobs the worker
//! holds are still answered). A worker that dies or overruns is replaced
//! here, without failing the actor: its caller gets a clear error and the
//! next job gets a new worker.

use std::borrow::Cow;
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ractor::factory::{FactoryMessage, Job, WorkerBuilder, WorkerMessage, WorkerStartContext};
use ractor::{Actor, ActorProcessingErr, ActorRef};
use tokio::task::JoinHandle;

use super::demand;
use super::pipeline::{JobLimits, MAX_DISCARDS, OnRoom, RSS_EVERY, Successor};
use super::process::{ProcessError, ProcessSettings};
use super::seat::PoolSeat;
use super::stats::{Count, PoolStats, rss_bytes};
use super::worker::Worker;
use super::{EvalError, EvalJob, PoolSettings, PoolShared, SCRATCH_CODE_ID, Work};
use crate::engine::protocol::{Frame, MAX_FRAME, Params, Request};
use crate::settings::Isolation;

/// Crashes within this window count towards the respawn backoff.
const CRASH_WINDOW: Duration = Duration::from_secs(10);
/// Crashes in the window that respawn at once, before backoff starts.
const FREE_RESPAWNS: usize = 3;
const MAX_BACKOFF: Duration = Duration::from_secs(2);

type EvaluatorContext = WorkerStartContext<(), EvalJob, PoolShared>;

pub struct EvaluatorState {
    context: EvaluatorContext,
    worker: Option<Worker>,
    crashes: VecDeque<Instant>,
    /// When the worker's memory was last read.
    rss_read_at: Instant,
    /// A new worker starting up to take over from this one.
    replacement: Option<JoinHandle<Result<Worker, ProcessError>>>,
    /// The last worker's mean run time, for the next to start from.
    mean_run: Option<Duration>,
}

/// One Evaluator: owns one worker and hands it the jobs the pool routes here.
pub struct Evaluator;

impl Actor for Evaluator {
    type Msg = WorkerMessage<(), EvalJob>;
    type State = EvaluatorState;
    type Arguments = EvaluatorContext;

    async fn pre_start(
        &self,
        _: ActorRef<Self::Msg>,
        context: Self::Arguments,
    ) -> Result<Self::State, ActorProcessingErr> {
        let mut state = EvaluatorState {
            context,
            worker: None,
            crashes: VecDeque::new(),
            rss_read_at: Instant::now(),
            replacement: None,
            mean_run: None,
        };
        // Start the worker now so the first request does not pay for it; a
        // failure here is retried on the first job rather than failing start.
        let settings = state.settings();
        let worker = Worker::spawn(&settings.process, state.seat(&settings), state.on_room())
            .await
            .map_err(|e| tracing::error!(error = %e, "worker process did not start"))
            .ok();
        state
            .stats()
            .worker_started(state.context.wid, worker.as_ref().and_then(Worker::pid));
        state.set_worker(worker);
        Ok(state)
    }

    async fn post_stop(&self, _: ActorRef<Self::Msg>, state: &mut Self::State) -> Result<(), ActorProcessingErr> {
        // Dropping the worker lets it finish the jobs it holds, then exit.
        state.set_worker(None);
        state.stats().worker_gone(state.context.wid);
        if let Some(task) = state.replacement.take() {
            // Dropping a half-started worker kills it (`kill_on_drop`).
            task.abort();
        }
        Ok(())
    }

    async fn handle(
        &self,
        _: ActorRef<Self::Msg>,
        message: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            WorkerMessage::FactoryPing(sent) => {
                state
                    .context
                    .factory
                    .cast(FactoryMessage::WorkerPong(state.context.wid, sent.elapsed()))?;
            }
            WorkerMessage::Dispatch(job) => state.dispatch(job).await,
        }
        Ok(())
    }
}

impl EvaluatorState {
    /// The pool's settings as of now (they change on reload).
    fn settings(&self) -> Arc<PoolSettings> {
        self.context.custom_start.current()
    }

    /// The pool's counters.
    fn stats(&self) -> &Arc<PoolStats> {
        &self.context.custom_start.stats
    }

    /// Puts `worker` in place of the current one, where callers find it too.
    /// A successor takes on its predecessor's mean run time: a new worker
    /// holds one job until its first reply is timed, and after every recycle
    /// that would leave the pool a worker short for a moment under load.
    fn set_worker(&mut self, worker: Option<Worker>) {
        if let Some(old) = &self.worker {
            self.mean_run = old.mean_run().or(self.mean_run);
            // Read before it goes from the pool's list of workers, so demand
            // sizing still counts its CPU (a worker recycled every few
            // hundred runs was otherwise never counted, and the pool shrank
            // under full load); a dead one was counted by its reader, which
            // killed it or found it gone.
            if !old.is_dead()
                && let Some(ticks) = old.pid().and_then(demand::cpu_ticks)
            {
                self.stats().retired(ticks);
            }
        }
        if let Some(new) = &worker {
            new.inherit(self.mean_run);
        }
        let lanes = &self.context.custom_start.lanes;
        match (&worker, &self.worker) {
            (Some(worker), _) => lanes.open(self.context.wid, worker.lane()),
            (None, Some(old)) => lanes.close(self.context.wid, &old.lane()),
            (None, None) => {}
        }
        self.worker = worker;
    }

    /// What its workers' readers call when they have room again.
    fn on_room(&self) -> OnRoom {
        let lanes = self.context.custom_start.lanes.clone();
        Arc::new(move |lane| lanes.refill(lane))
    }

    fn seat(&self, settings: &Arc<PoolSettings>) -> PoolSeat {
        PoolSeat {
            wid: self.context.wid,
            factory: self.context.factory.clone(),
            settings: settings.clone(),
            stats: self.stats().clone(),
            suspects: self.context.custom_start.suspects.clone(),
        }
    }

    /// Hands the job to the worker, whose reader answers it. Only a job that
    /// cannot be handed over is answered here.
    async fn dispatch(&mut self, mut job: Job<(), EvalJob>) {
        // Its client hung up while it waited in the pool's queue: running
        // it would spend a worker on an answer nobody reads.
        if job.msg.reply.as_ref().is_some_and(|reply| reply.is_closed()) {
            self.stats().add(Count::Expired);
            let settings = self.settings();
            return self.seat(&settings).finished();
        }
        let settings = self.settings();
        self.stats().add(Count::Started);
        let mut limits = JobLimits::of(&job.msg.work, &settings);
        // Held until the job is in a worker's pipeline (or answered), where
        // `held_alone` sees it: starting a worker for it can take a while.
        let mut _starting = None;
        // A job handed back after an ambiguous death goes alone whatever it
        // is: a check can hang as well as a run.
        limits.solo = job.msg.alone;
        if let Work::Run { version, .. } = &job.msg.work {
            let suspect = self.context.custom_start.suspects.holds(&version.code_id);
            // Suspects together hold at most half the workers (one of
            // two), so configs that hang on every request, one or several,
            // leave the rest to others.
            if suspect && !job.msg.alone {
                let lanes = &self.context.custom_start.lanes;
                let starting = lanes.start_alone();
                if starting.others() + lanes.held_alone() >= (settings.workers / 2).max(1) {
                    return finish(&self.seat(&settings), job, Err(EvalError::Crowded));
                }
                _starting = Some(starting);
            }
            limits.solo |= suspect;
        }
        if settings.process.isolation == Isolation::Thread && !matches!(job.msg.work, Work::Run { .. }) {
            return run_once_in_a_process(job, limits, self.seat(&settings)).await;
        }
        // A worker found dead as the job is sent is replaced once.
        for _ in 0..2 {
            if let Err(e) = self.ready_worker(&settings).await {
                return finish(&self.seat(&settings), job, Err(e));
            }
            let worker = self.worker.as_mut().expect("ready above");
            // After `ready_worker`: a new worker holds no code yet.
            let compiled = match &job.msg.work {
                Work::Run { version, .. } if job.msg.with_source || !worker.holds(&version.code_id) => {
                    Some(version.code_id.clone())
                }
                _ => None,
            };
            let frame = match encode(&job.msg.work, &settings, compiled.is_some(), limits.solo) {
                Ok(frame) => frame,
                Err(e) => return finish(&self.seat(&settings), job, Err(e)),
            };
            match worker.send(job, frame, limits, compiled).await {
                Ok(()) => {
                    self.recycle_if_due(&settings);
                    return;
                }
                Err(back) => job = back,
            }
        }
        let error = EvalError::Unavailable("the worker failed as the job was sent".into());
        finish(&self.seat(&settings), job, Err(error));
    }

    /// Starts a replacement for a worker that has run long enough to be
    /// worth a new one: by evaluations, by discarded JavaScript contexts, or
    /// by memory. The old worker keeps serving until the new one is ready, so
    /// no queued job waits for a start-up.
    fn recycle_if_due(&mut self, settings: &Arc<PoolSettings>) {
        let Some(worker) = &self.worker else {
            return;
        };
        if self.replacement.is_some() {
            return;
        }
        let (runs, discards) = worker.counts();
        let reason = if settings.recycle_after_runs > 0 && runs >= settings.recycle_after_runs {
            "run count"
        } else if discards >= MAX_DISCARDS {
            "discarded javascript contexts"
        } else if self.rss_read_at.elapsed() >= RSS_EVERY {
            self.rss_read_at = Instant::now();
            let pid = worker.pid();
            if pid
                .and_then(rss_bytes)
                .is_some_and(|rss| rss > settings.recycle_rss_bytes)
            {
                "resident memory"
            } else {
                return;
            }
        } else {
            return;
        };
        tracing::info!(wid = self.context.wid, runs, reason, "recycling worker");
        let seat = self.seat(settings);
        let process = settings.process.clone();
        let on_room = self.on_room();
        let old = worker.lane();
        old.lock().successor = Successor::Starting;
        self.replacement = Some(tokio::spawn(async move {
            let new = Worker::spawn(&process, seat, on_room).await;
            // Ready or failed, the Evaluator must look: the next fresh run
            // goes through the pool to it.
            old.lock().successor = Successor::Ready;
            new
        }));
    }

    /// Swaps in a replacement that has finished starting; the old worker
    /// finishes the jobs it holds and exits.
    async fn swap_in_replacement(&mut self) {
        if !self.replacement.as_ref().is_some_and(JoinHandle::is_finished) {
            return;
        }
        let Some(task) = self.replacement.take() else {
            return;
        };
        match task.await {
            Ok(Ok(new)) => {
                self.rss_read_at = Instant::now();
                self.stats().worker_started(self.context.wid, new.pid());
                self.set_worker(Some(new));
                self.stats().add(Count::Recycled);
                return;
            }
            Ok(Err(e)) => tracing::error!(wid = self.context.wid, error = %e, "replacement worker did not start"),
            Err(e) => tracing::error!(wid = self.context.wid, error = %e, "replacement worker task failed"),
        }
        // The old worker serves on, and is recycled again when due.
        if let Some(old) = &self.worker {
            old.lane().lock().successor = Successor::None;
        }
    }

    /// The live worker, replacing a dead one; repeated crashes back off so a
    /// crashing script cannot turn the pool into a fork loop.
    async fn ready_worker(&mut self, settings: &Arc<PoolSettings>) -> Result<(), EvalError> {
        self.swap_in_replacement().await;
        if let Some(dead) = self.worker.as_ref().filter(|w| w.is_dead()) {
            // A kill for a script that overran is no sign of a worker that
            // cannot start: backing off for it made the quick run that
            // came next wait up to 2 s for each hang.
            if !dead.overran() {
                self.crashes.push_back(Instant::now());
            }
            self.set_worker(None);
        }
        if self.worker.is_none() {
            let now = Instant::now();
            while self
                .crashes
                .front()
                .is_some_and(|t| now.duration_since(*t) > CRASH_WINDOW)
            {
                self.crashes.pop_front();
            }
            let over = self.crashes.len().saturating_sub(FREE_RESPAWNS);
            if over > 0 {
                let backoff = Duration::from_millis(50u64 << over.min(6)).min(MAX_BACKOFF);
                tokio::time::sleep(backoff).await;
            }
            let worker = Worker::spawn(&settings.process, self.seat(settings), self.on_room())
                .await
                .map_err(|e| {
                    self.crashes.push_back(Instant::now());
                    EvalError::Unavailable(e.to_string())
                })?;
            self.rss_read_at = Instant::now();
            self.stats().add(Count::Restarted);
            self.stats().worker_started(self.context.wid, worker.pid());
            self.set_worker(Some(worker));
        }
        Ok(())
    }
}

/// Answers a job that never reached a worker and frees the Evaluator.
fn finish(seat: &PoolSeat, job: Job<(), EvalJob>, result: Result<Box<serde_json::value::RawValue>, EvalError>) {
    seat.answer(job, result);
    seat.finished();
}

/// `work` as a worker's request frame, its length first. A run's params
/// follow its JSON (`Frame::Split`), so the worker need not scan them to
/// find where the JSON ends. `alone`: the worker sends the replies it
/// holds before it starts this job.
pub(super) fn encode(
    work: &Work,
    settings: &PoolSettings,
    with_source: bool,
    alone: bool,
) -> Result<Vec<u8>, EvalError> {
    let (request, params) = match work {
        Work::Run { version, params } => (
            Request::Run {
                code_id: version.code_id.as_str().into(),
                recompile: false,
                lang: version.lang,
                source: with_source.then(|| version.source.as_str().into()),
                params: Params::Follow,
                limits: settings.limits,
            },
            Some(Params::Text(params)),
        ),
        Work::Check { lang, source } => (
            Request::Check {
                lang: *lang,
                source: source.as_str().into(),
            },
            None,
        ),
        #[cfg(debug_assertions)]
        Work::Probe(probe) => (Request::Probe(*probe), None),
        Work::Try { lang, source, params } => (
            Request::Run {
                code_id: SCRATCH_CODE_ID.into(),
                recompile: true,
                lang: *lang,
                source: Some(source.as_str().into()),
                params: Params::Follow,
                limits: settings.limits,
            },
            Some(Params::Value(Cow::Borrowed(params))),
        ),
    };
    let encoded = match params {
        Some(params) => Frame::write_split(&request, &params, alone),
        // Split only to carry the mark: the worker reads no params for these.
        None if alone => Frame::write_split(&request, &Params::Follow, true),
        None => {
            let mut frame = vec![0; 4];
            serde_json::to_writer(&mut frame, &request).map(|()| frame)
        }
    };
    let mut frame = encoded.map_err(|e| EvalError::Unavailable(format!("encoding request: {e}")))?;
    let len = frame.len() - 4;
    if len > MAX_FRAME {
        let message = format!("the request is {len} bytes, over a worker's frame limit of {MAX_FRAME}");
        return Err(EvalError::Unavailable(message));
    }
    frame[..4].copy_from_slice(&(len as u32).to_be_bytes());
    Ok(frame)
}

/// Sources that have not passed a compile check yet (uploads, playground
/// runs) could overflow a parser's stack, which in a thread would take the
/// server down; with `isolation = "thread"` they run once in a worker process
/// instead. Stored versions compiled there first, so threads, whose stacks
/// are larger than a process's main thread, can compile them again safely.
/// The one-off worker answers the job, frees the Evaluator and lets the
/// process exit.
async fn run_once_in_a_process(job: Job<(), EvalJob>, limits: JobLimits, seat: PoolSeat) {
    let settings = seat.settings.clone();
    let process = ProcessSettings {
        isolation: Isolation::Process,
        ..settings.process.clone()
    };
    let frame = match encode(&job.msg.work, &settings, true, false) {
        Ok(frame) => frame,
        Err(e) => return finish(&seat, job, Err(e)),
    };
    // Not a lane: nothing waiting is handed to a one-off worker.
    let mut worker = match Worker::spawn(&process, seat.clone(), Arc::new(|_| {})).await {
        Ok(worker) => worker,
        Err(e) => return finish(&seat, job, Err(EvalError::Unavailable(e.to_string()))),
    };
    // Depth 1: the pool hears the Evaluator is free only once this is answered.
    let limits = JobLimits { depth: 1, ..limits };
    let compiled = None;
    if let Err(job) = worker.send(job, frame, limits, compiled).await {
        finish(
            &seat,
            job,
            Err(EvalError::Unavailable("the worker process died at once".into())),
        );
    }
}

/// Builds Evaluators for the factory, on start and on every respawn.
pub struct EvaluatorBuilder {
    pub shared: PoolShared,
}

impl WorkerBuilder<Evaluator, PoolShared> for EvaluatorBuilder {
    fn build(&mut self, _wid: usize) -> (Evaluator, PoolShared) {
        (Evaluator, self.shared.clone())
    }
}
