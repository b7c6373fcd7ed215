//! Evaluator: one factory worker of the EvaluatorPool, owning one worker
//! process. It takes one job at a time, so the pool only hands it work when it
//! is idle.
//!
//! Supervised by the pool (the ractor factory), which respawns it if it fails.
//! A restart loses the worker process and its compiled-code cache. A worker
//! process that dies or overruns is replaced here, without failing the actor:
//! its caller gets a clear error and the next job gets a fresh process.

use std::borrow::Cow;
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ractor::factory::{FactoryMessage, WorkerBuilder, WorkerMessage, WorkerStartContext};
use ractor::{Actor, ActorProcessingErr, ActorRef};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::backend::Backend;
use super::process::{ProcessError, ProcessSettings};
use super::stats::{Count, WorkerState};
use super::{EvalError, EvalJob, PoolSettings, SCRATCH_CODE_ID, Work};
use crate::domain::Lang;
use crate::engine::EngineError;
use crate::engine::protocol::{Request, Response};
use crate::settings::Isolation;

/// Crashes within this window count towards the respawn backoff.
const CRASH_WINDOW: Duration = Duration::from_secs(10);
/// Crashes in the window that respawn at once, before backoff starts.
const FREE_RESPAWNS: usize = 3;
const MAX_BACKOFF: Duration = Duration::from_secs(2);
/// JavaScript contexts discarded after a deadline before the worker is
/// replaced: their garbage makes later collections slow (100+ ms measured
/// after hundreds).
const MAX_DISCARDS: u32 = 16;
/// Evaluations between two readings of a worker process's memory.
const RSS_EVERY: u64 = 32;
/// Code ids remembered as sent to a worker before the list starts over.
const MAX_KNOWN_SOURCES: usize = 4096;

pub type EvaluatorContext = WorkerStartContext<(), EvalJob, watch::Receiver<Arc<PoolSettings>>>;

pub struct EvaluatorState {
    context: EvaluatorContext,
    process: Option<Backend>,
    crashes: VecDeque<Instant>,
    /// Evaluations and discarded JavaScript contexts of the current worker.
    runs: u64,
    discards: u32,
    /// A fresh worker starting up to take over from this one.
    replacement: Option<JoinHandle<Result<Backend, ProcessError>>>,
    /// Code ids whose source the current worker was sent (a guess: the
    /// worker answers `NeedSource` when it is wrong).
    sources: std::collections::HashSet<String>,
}

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
        // Start the process now so the first request does not pay for it; a
        // failure here is retried on the first job rather than failing start.
        let settings = context.custom_start.borrow().clone();
        let process = Backend::spawn(&settings.process)
            .await
            .map_err(|e| tracing::error!(error = %e, "worker process did not start"))
            .ok();
        settings
            .stats
            .worker_started(context.wid, process.as_ref().and_then(Backend::pid));
        Ok(EvaluatorState {
            context,
            process,
            crashes: VecDeque::new(),
            runs: 0,
            discards: 0,
            replacement: None,
            sources: Default::default(),
        })
    }

    async fn post_stop(&self, _: ActorRef<Self::Msg>, state: &mut Self::State) -> Result<(), ActorProcessingErr> {
        if let Some(process) = state.process.take() {
            process.stop().await;
        }
        state.settings().stats.worker_gone(state.context.wid);
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
            WorkerMessage::Dispatch(mut job) => {
                let stats = state.settings().stats.clone();
                stats.add(Count::Started);
                stats.worker_state(state.context.wid, WorkerState::Busy);
                let began = Instant::now();
                let result = state.run(&job.msg.work).await;
                if let Some(lang) = match &job.msg.work {
                    Work::Run { version, .. } => Some(version.lang),
                    Work::Try { lang, .. } => Some(*lang),
                    Work::Check { .. } => None,
                } {
                    crate::metrics::evaluated(lang.as_str(), began.elapsed());
                }
                let javascript = match &job.msg.work {
                    Work::Run { version, .. } => version.lang == Lang::Javascript,
                    Work::Try { lang, .. } => *lang == Lang::Javascript,
                    Work::Check { .. } => false,
                };
                let discarded = javascript && matches!(result, Err(EvalError::Engine(EngineError::Deadline { .. })));
                if let Some(reply) = job.msg.reply.take() {
                    let _ = reply.send(result);
                }
                stats.add(Count::Finished);
                stats.worker_state(state.context.wid, WorkerState::Idle);
                state.recycle_if_due(discarded);
                state
                    .context
                    .factory
                    .cast(FactoryMessage::Finished(state.context.wid, job.key))?;
            }
        }
        Ok(())
    }
}

impl EvaluatorState {
    /// The pool's settings as of now (they change on reload).
    fn settings(&self) -> Arc<PoolSettings> {
        self.context.custom_start.borrow().clone()
    }

    async fn run(&mut self, work: &Work) -> Result<Box<serde_json::value::RawValue>, EvalError> {
        let settings = self.settings();
        // A worker that has the code compiled needs only its id.
        let elide = matches!(work, Work::Run { version, fresh: false, .. } if self.sources.contains(&version.code_id));
        let request = encode(work, &settings, !elide)?;
        let limit = match work {
            Work::Run { .. } | Work::Try { .. } => {
                Duration::from_millis(settings.limits.deadline_ms) + settings.kill_grace
            }
            Work::Check { .. } => settings.check_limit,
        };
        if settings.process.isolation == Isolation::Thread && !matches!(work, Work::Run { .. }) {
            return run_once_in_a_process(&request, limit, &settings).await;
        }
        let process = self.ready_process(&settings.process).await?;
        let mut outcome = process.call(&request, limit).await.map(|reply| decode(&reply));
        if matches!(outcome, Ok(Decoded::NeedSource)) {
            let request = encode(work, &settings, true)?;
            outcome = process.call(&request, limit).await.map(|reply| decode(&reply));
        }
        match outcome {
            Ok(Decoded::NeedSource) => Err(EvalError::Crashed("the worker asked for the source twice".into())),
            Ok(Decoded::Done(result, poisoned)) => {
                if let (Work::Run { version, .. }, Ok(_)) = (work, &result)
                    && !self.sources.contains(&version.code_id)
                {
                    if self.sources.len() >= MAX_KNOWN_SOURCES {
                        self.sources.clear();
                    }
                    self.sources.insert(version.code_id.clone());
                }
                if poisoned {
                    // The worker stops after this reply; replace it now so
                    // the next job does not find it gone.
                    if let Some(process) = self.process.take() {
                        process.stop().await;
                    }
                    settings.stats.add(Count::Crashed);
                    self.crashes.push_back(Instant::now());
                }
                result
            }
            Err(error) => {
                let process = self.process.take().expect("used above");
                let pid = process.pid();
                process.stop().await;
                self.crashes.push_back(Instant::now());
                tracing::warn!(wid = self.context.wid, pid, %error, "worker replaced");
                Err(failure(error, &settings))
            }
        }
    }

    /// Starts a replacement for a worker that has run long enough to be
    /// worth a fresh one: by evaluations, by discarded JavaScript contexts, or
    /// by memory. The old worker keeps serving until the new one is ready, so
    /// no queued job waits for a start-up.
    fn recycle_if_due(&mut self, discarded: bool) {
        let settings = self.settings();
        self.runs += 1;
        self.discards += u32::from(discarded);
        let Some(process) = &self.process else {
            return;
        };
        if self.replacement.is_some() {
            return;
        }
        let reason = if settings.recycle_after_runs > 0 && self.runs >= settings.recycle_after_runs {
            "run count"
        } else if self.discards >= MAX_DISCARDS {
            "discarded javascript contexts"
        } else if self.runs.is_multiple_of(RSS_EVERY)
            && process.rss_bytes().is_some_and(|rss| rss > settings.recycle_rss_bytes)
        {
            "resident memory"
        } else {
            return;
        };
        tracing::info!(wid = self.context.wid, runs = self.runs, reason, "recycling worker");
        self.replacement = Some(tokio::spawn(async move { Backend::spawn(&settings.process).await }));
    }

    /// Swaps in a replacement that has finished starting.
    async fn swap_in_replacement(&mut self) {
        if !self.replacement.as_ref().is_some_and(JoinHandle::is_finished) {
            return;
        }
        let Some(task) = self.replacement.take() else {
            return;
        };
        match task.await {
            Ok(Ok(fresh)) => {
                self.sources.clear();
                self.settings().stats.worker_started(self.context.wid, fresh.pid());
                if let Some(old) = self.process.replace(fresh) {
                    tokio::spawn(old.stop());
                }
                self.runs = 0;
                self.discards = 0;
                self.settings().stats.add(Count::Recycled);
            }
            Ok(Err(e)) => tracing::error!(wid = self.context.wid, error = %e, "replacement worker did not start"),
            Err(e) => tracing::error!(wid = self.context.wid, error = %e, "replacement worker task failed"),
        }
    }

    /// The live process, respawning a dead one; repeated crashes back off so a
    /// crashing script cannot turn the pool into a fork loop.
    async fn ready_process(&mut self, settings: &ProcessSettings) -> Result<&mut Backend, EvalError> {
        self.swap_in_replacement().await;
        if self.process.as_mut().is_some_and(Backend::has_exited) {
            tracing::warn!(wid = self.context.wid, "idle worker process died, replacing it");
            self.process = None;
            self.crashes.push_back(Instant::now());
        }
        if self.process.is_none() {
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
            let process = Backend::spawn(settings).await.map_err(|e| {
                self.crashes.push_back(Instant::now());
                EvalError::Unavailable(e.to_string())
            })?;
            self.sources.clear();
            self.settings().stats.add(Count::Restarted);
            self.settings().stats.worker_started(self.context.wid, process.pid());
            self.runs = 0;
            self.discards = 0;
            self.process = Some(process);
        }
        Ok(self.process.as_mut().expect("set above"))
    }
}

fn encode(work: &Work, settings: &PoolSettings, with_source: bool) -> Result<Vec<u8>, EvalError> {
    let request = match work {
        Work::Run { version, params, fresh } => Request::Run {
            code_id: version.code_id.as_str().into(),
            fresh: *fresh,
            lang: version.lang,
            source: with_source.then(|| version.source.as_str().into()),
            params: Cow::Borrowed(params),
            limits: settings.limits,
        },
        Work::Check { lang, source } => Request::Check {
            lang: *lang,
            source: source.as_str().into(),
        },
        Work::Try { lang, source, params } => Request::Run {
            code_id: SCRATCH_CODE_ID.into(),
            fresh: true,
            lang: *lang,
            source: Some(source.as_str().into()),
            params: Cow::Borrowed(params),
            limits: settings.limits,
        },
    };
    serde_json::to_vec(&request).map_err(|e| EvalError::Unavailable(format!("encoding request: {e}")))
}

/// Sources that have not passed a compile check yet (uploads, playground
/// runs) could overflow a parser's stack, which in a thread would take the
/// server down; with `isolation = "thread"` they run once in a worker process
/// instead. Stored versions compiled there first, so threads, whose stacks
/// are larger than a process's main thread, can compile them again safely.
async fn run_once_in_a_process(
    request: &[u8],
    limit: Duration,
    settings: &PoolSettings,
) -> Result<Box<serde_json::value::RawValue>, EvalError> {
    let process_settings = ProcessSettings {
        isolation: Isolation::Process,
        ..settings.process.clone()
    };
    let mut process = Backend::spawn(&process_settings)
        .await
        .map_err(|e| EvalError::Unavailable(e.to_string()))?;
    let outcome = process.call(request, limit).await;
    process.stop().await;
    match outcome {
        Ok(reply) => match decode(&reply) {
            Decoded::Done(result, _) => result,
            // One-shot requests always carry their source.
            Decoded::NeedSource => Err(EvalError::Crashed("the worker asked for a source it was sent".into())),
        },
        Err(error) => Err(failure(error, settings)),
    }
}

/// What a caller is told when its worker failed under it.
fn failure(error: ProcessError, settings: &PoolSettings) -> EvalError {
    match error {
        ProcessError::Overran(_) => {
            settings.stats.add(Count::Killed);
            EvalError::Killed {
                deadline_ms: settings.limits.deadline_ms,
            }
        }
        ProcessError::OutOfMemory => {
            settings.stats.add(Count::Crashed);
            EvalError::Engine(EngineError::Memory {
                message: format!(
                    "the script used up its sandbox's {} MiB and the sandbox was replaced",
                    settings.process.memory_bytes >> 20
                ),
            })
        }
        other => {
            settings.stats.add(Count::Crashed);
            EvalError::Crashed(other.to_string())
        }
    }
}

/// A worker's reply, read once.
enum Decoded {
    /// The result, and whether the worker has stopped serving.
    Done(Result<Box<serde_json::value::RawValue>, EvalError>, bool),
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

/// Builds Evaluators for the factory, on start and on every respawn.
pub struct EvaluatorBuilder {
    pub settings: watch::Receiver<Arc<PoolSettings>>,
}

impl WorkerBuilder<Evaluator, watch::Receiver<Arc<PoolSettings>>> for EvaluatorBuilder {
    fn build(&mut self, _wid: usize) -> (Evaluator, watch::Receiver<Arc<PoolSettings>>) {
        (Evaluator, self.settings.clone())
    }
}
