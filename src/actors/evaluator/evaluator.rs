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

use super::process::{ProcessError, ProcessSettings, WorkerProcess};
use super::{EvalError, EvalJob, PoolSettings, Work};
use crate::engine::protocol::{Request, Response};

/// Crashes within this window count towards the respawn backoff.
const CRASH_WINDOW: Duration = Duration::from_secs(10);
/// Crashes in the window that respawn at once, before backoff starts.
const FREE_RESPAWNS: usize = 3;
const MAX_BACKOFF: Duration = Duration::from_secs(2);

pub type EvaluatorContext = WorkerStartContext<(), EvalJob, Arc<PoolSettings>>;

pub struct EvaluatorState {
    context: EvaluatorContext,
    process: Option<WorkerProcess>,
    crashes: VecDeque<Instant>,
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
        let process = WorkerProcess::spawn(&context.custom_start.process)
            .await
            .map_err(|e| tracing::error!(error = %e, "worker process did not start"))
            .ok();
        Ok(EvaluatorState {
            context,
            process,
            crashes: VecDeque::new(),
        })
    }

    async fn post_stop(&self, _: ActorRef<Self::Msg>, state: &mut Self::State) -> Result<(), ActorProcessingErr> {
        if let Some(process) = state.process.take() {
            process.kill().await;
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
                let result = state.run(&job.msg.work).await;
                if let Some(reply) = job.msg.reply.take() {
                    let _ = reply.send(result);
                }
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
    async fn run(&mut self, work: &Work) -> Result<Box<serde_json::value::RawValue>, EvalError> {
        let settings = self.context.custom_start.clone();
        let request = encode(work, &settings)?;
        let process = self.ready_process(&settings.process).await?;
        let limit = match work {
            Work::Run { .. } => Duration::from_millis(settings.limits.deadline_ms) + settings.kill_grace,
            Work::Check { .. } => settings.check_limit,
        };
        match process.call(&request, limit).await {
            Ok(reply) => decode(&reply),
            Err(error) => {
                let process = self.process.take().expect("used above");
                let pid = process.pid();
                process.kill().await;
                self.crashes.push_back(Instant::now());
                tracing::warn!(wid = self.context.wid, pid, %error, "worker process replaced");
                Err(match error {
                    ProcessError::Overran(_) => EvalError::Killed {
                        deadline_ms: settings.limits.deadline_ms,
                    },
                    other => EvalError::Crashed(other.to_string()),
                })
            }
        }
    }

    /// The live process, respawning a dead one; repeated crashes back off so a
    /// crashing script cannot turn the pool into a fork loop.
    async fn ready_process(&mut self, settings: &ProcessSettings) -> Result<&mut WorkerProcess, EvalError> {
        if self.process.as_mut().is_some_and(WorkerProcess::has_exited) {
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
            let process = WorkerProcess::spawn(settings).await.map_err(|e| {
                self.crashes.push_back(Instant::now());
                EvalError::Unavailable(e.to_string())
            })?;
            self.process = Some(process);
        }
        Ok(self.process.as_mut().expect("set above"))
    }
}

fn encode(work: &Work, settings: &PoolSettings) -> Result<Vec<u8>, EvalError> {
    let request = match work {
        Work::Run { version, params, fresh } => Request::Run {
            code_id: version.code_id.as_str().into(),
            fresh: *fresh,
            lang: version.lang,
            source: version.source.as_str().into(),
            params: Cow::Borrowed(params),
            limits: settings.limits,
        },
        Work::Check { lang, source } => Request::Check {
            lang: *lang,
            source: source.as_str().into(),
        },
    };
    serde_json::to_vec(&request).map_err(|e| EvalError::Unavailable(format!("encoding request: {e}")))
}

fn decode(reply: &[u8]) -> Result<Box<serde_json::value::RawValue>, EvalError> {
    match serde_json::from_slice::<Response>(reply) {
        Ok(Response::Ok(value)) => Ok(value),
        Ok(Response::Err(e)) => Err(EvalError::Engine(e)),
        Err(e) => Err(EvalError::Crashed(format!("unreadable reply: {e}"))),
    }
}

/// Builds Evaluators for the factory, on start and on every respawn.
pub struct EvaluatorBuilder {
    pub settings: Arc<PoolSettings>,
}

impl WorkerBuilder<Evaluator, Arc<PoolSettings>> for EvaluatorBuilder {
    fn build(&mut self, _wid: usize) -> (Evaluator, Arc<PoolSettings>) {
        (Evaluator, self.settings.clone())
    }
}
