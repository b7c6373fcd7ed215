//! EvaluatorPoolHandle: what callers hold to reach the pool. A run passes
//! the memo, then goes to a worker directly (`lanes.rs`) or through the
//! pool's queue; the handle also pauses, resumes, resizes and drains it.

use std::sync::Arc;
use std::time::Duration;

use ractor::factory::{FactoryMessage, Job, JobOptions, UpdateSettingsRequest};
use serde_json::value::RawValue;
use tokio::sync::{oneshot, watch};

use super::lanes::{self, Handed};
use super::pipeline::JobLimits;
use super::suspects::Suspects;
use super::{
    Count, EvalError, EvalJob, Gate, LiveSettings, PoolMsg, PoolSettings, PoolShared, PoolSnapshot, PoolStats,
    PoolStatus, Work, actor, discard_settings, evaluated::Evaluated, memo,
};
use crate::actors::Slot;
use crate::domain::params;
use crate::domain::{Lang, Version};
use crate::names::ActorName;
use crate::settings::{PausedJobs, Sandbox};

/// What callers hold to reach the EvaluatorPool.
#[derive(Clone)]
pub struct EvaluatorPoolHandle {
    slot: Slot<PoolMsg>,
    live: LiveSettings,
    stats: Arc<PoolStats>,
    gate: Arc<watch::Sender<Gate>>,
    memo: Option<Arc<memo::Memo>>,
    lanes: Arc<lanes::Lanes>,
    suspects: Arc<Suspects>,
}

impl EvaluatorPoolHandle {
    /// The handle of the pool in `slot`, started with `shared`.
    pub fn new(slot: Slot<PoolMsg>, shared: PoolShared) -> Self {
        let memo = memo::Memo::new(shared.current().memo_entries).map(Arc::new);
        Self {
            slot,
            live: shared.settings,
            stats: shared.stats,
            gate: Arc::new(watch::Sender::new(Gate::Open)),
            memo,
            lanes: shared.lanes,
            suspects: shared.suspects,
        }
    }

    fn current(&self) -> Arc<PoolSettings> {
        self.live.borrow().clone()
    }

    /// Takes new sandbox settings: workers are added or retired (each
    /// finishing its job first), the queue bound and deadline apply to the
    /// next job, a new memory cap to worker processes started from now on.
    pub fn reconfigure(&self, sandbox: &Sandbox) -> Result<(), EvalError> {
        let next = PoolSettings::from_sandbox(sandbox);
        let update = UpdateSettingsRequest {
            discard_handler: None,
            discard_settings: Some(discard_settings(next.queue_bound)),
            dead_mans_switch: None,
            capacity_controller: None,
            lifecycle_hooks: None,
            stats: None,
            worker_count: Some(next.workers),
        };
        self.live.send_replace(Arc::new(next));
        self.slot
            .tell(ActorName::EvaluatorPool, FactoryMessage::UpdateSettings(update))
            .map_err(|e| EvalError::Unavailable(e.to_string()))
    }

    /// Checks `params` against the version's schema, then runs it; returns the
    /// result, shared with the memo.
    pub async fn evaluate(
        &self,
        version: Arc<Version>,
        params: serde_json::Value,
    ) -> Result<Arc<Evaluated>, EvalError> {
        // Checked once, as text, by `evaluate_text`.
        let params = serde_json::value::to_raw_value(&params)
            .map_err(|e| EvalError::Unavailable(format!("encoding params: {e}")))?;
        self.evaluate_text(version, params).await
    }

    /// `evaluate` for params as the JSON text a fetch sent: checked without
    /// building a value of them, then the memo's key and, as they are, the
    /// worker's frame.
    pub async fn evaluate_text(
        &self,
        version: Arc<Version>,
        params: Box<RawValue>,
    ) -> Result<Arc<Evaluated>, EvalError> {
        let params: Arc<RawValue> = params::prepare_text(&version.params, params)?.into();
        let memo = self.memo.as_ref().filter(|_| version.lang == Lang::Starlark);
        let Some(memo) = memo else {
            return self.run(version, params).await;
        };
        let key = memo.key(&version.code_id, params.clone());
        if let Some(result) = memo.get(&key) {
            crate::metrics::result_cache(true);
            return Ok(result);
        }
        crate::metrics::result_cache(false);
        let result = self.run(version, params).await?;
        memo.put(key, &result);
        Ok(result)
    }

    async fn run(&self, version: Arc<Version>, params: Arc<RawValue>) -> Result<Arc<Evaluated>, EvalError> {
        let result = self.submit(Work::Run { version, params }).await?;
        Ok(Arc::new(Evaluated::new(result)))
    }

    /// Compiles `source` in a worker to check it, caching nothing.
    pub async fn check(&self, lang: Lang, source: String) -> Result<(), EvalError> {
        self.submit(Work::Check { lang, source }).await.map(|_| ())
    }

    /// Debug builds only: has a worker try what confinement forbids.
    #[cfg(debug_assertions)]
    pub async fn probe(&self, probe: crate::engine::protocol::Probe) -> Result<Box<RawValue>, EvalError> {
        self.submit(Work::Probe(probe)).await
    }

    /// Runs `source` once, as the playground does: compiled anew, cached
    /// under a key no version can have, and dropped again by the next call.
    pub async fn try_source(
        &self,
        lang: Lang,
        source: String,
        params: serde_json::Value,
    ) -> Result<Box<RawValue>, EvalError> {
        self.submit(Work::Try { lang, source, params }).await
    }

    async fn submit(&self, work: Work) -> Result<Box<RawValue>, EvalError> {
        // Counted once past the gate, or with the gate's own refusal, so
        // every job submitted is finished, shed or expired exactly once (a
        // caller that goes away while the gate is shut leaves no count).
        self.pass_gate().await?;
        self.stats.add(Count::Submitted);
        let settings = self.current();
        let (reply, mut answer) = oneshot::channel();
        let job = Job {
            key: (),
            msg: EvalJob {
                work,
                reply: Some(reply),
                with_source: false,
                alone: false,
            },
            options: JobOptions::new(Some(settings.queue_wait)),
            accepted: None,
        };
        let deadline = tokio::time::Instant::now() + settings.wait_limit();
        match self.hand(job, &settings) {
            Ok(Handed::Now) => {}
            Ok(Handed::Queued(ticket)) => {
                // A caller that goes away (its client hung up) takes its
                // run out of the queue with it, rather than leave it there
                // holding a place under the bound.
                let place = lanes::Place::new(self.lanes.clone(), ticket);
                let expires = tokio::time::Instant::now() + settings.queue_wait;
                loop {
                    let wake = expires.min(tokio::time::Instant::now() + KICK_AFTER);
                    if let Ok(answered) = tokio::time::timeout_at(wake, &mut answer).await {
                        place.left();
                        return answered.unwrap_or_else(|_| Err(stopped()));
                    }
                    if wake >= expires {
                        break;
                    }
                    self.lanes.kick();
                }
                if place.withdraw() {
                    return Err(EvalError::Expired);
                }
            }
            Err(job) => {
                if let Err(e) = self.slot.tell(ActorName::EvaluatorPool, FactoryMessage::Dispatch(job)) {
                    self.stats.answered_unstarted();
                    return Err(EvalError::Unavailable(e.to_string()));
                }
            }
        }
        match tokio::time::timeout_at(deadline, answer).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(stopped()),
            Err(_) => Err(EvalError::Timeout),
        }
    }

    /// Hands a run straight to a worker that holds its code and is not
    /// busy, or queues it for the next to make room (`lanes.rs`); gives it
    /// back for the pool if no worker may take it.
    // Even while jobs wait in the pool's own queue: they are not starved
    // (each reply that leaves a worker below its depth lets its Evaluator
    // take one), and sending every run after them there too kept that
    // queue from emptying under steady load, so the pool's slower path
    // took every run for good.
    // A job refused is handed back by value, as ractor passes jobs around:
    // boxing it would cost an allocation on every run.
    #[allow(clippy::result_large_err)]
    fn hand(&self, job: Job<(), EvalJob>, settings: &PoolSettings) -> Result<Handed, Job<(), EvalJob>> {
        let Work::Run { version, .. } = &job.msg.work else {
            return Err(job);
        };
        // A suspect goes alone, which its Evaluator arranges.
        if self.suspects.holds(&version.code_id) {
            return Err(job);
        }
        let Ok(frame) = actor::encode(&job.msg.work, settings, false, false) else {
            return Err(job);
        };
        let limits = JobLimits::of(&job.msg.work, settings);
        self.lanes.hand(job, frame, limits, settings)
    }

    /// Lets a job through an open gate; while paused it waits up to the
    /// queue wait or is shed, per `sandbox.paused_jobs`.
    async fn pass_gate(&self) -> Result<(), EvalError> {
        let gate = *self.gate.borrow();
        match gate {
            Gate::Open => Ok(()),
            Gate::Draining => {
                self.stats.add(Count::Submitted);
                self.stats.answered_unstarted();
                Err(EvalError::Unavailable("shutting down".into()))
            }
            Gate::Paused if self.current().paused_jobs == PausedJobs::Shed => {
                self.stats.add(Count::Submitted);
                self.stats.add(Count::Shed);
                Err(EvalError::Overloaded)
            }
            Gate::Paused => {
                let mut gate = self.gate.subscribe();
                let wait = self.current().queue_wait;
                match tokio::time::timeout(wait, gate.wait_for(|g| *g != Gate::Paused)).await {
                    Ok(Ok(g)) if *g == Gate::Open => Ok(()),
                    Ok(_) => {
                        self.stats.add(Count::Submitted);
                        self.stats.answered_unstarted();
                        Err(EvalError::Unavailable("shutting down".into()))
                    }
                    Err(_) => {
                        self.stats.add(Count::Submitted);
                        self.stats.add(Count::Expired);
                        Err(EvalError::Expired)
                    }
                }
            }
        }
    }

    /// Stops handing out new jobs; queued and running ones finish.
    pub fn pause(&self) {
        self.gate.send_if_modified(|g| replace_unless_draining(g, Gate::Paused));
    }

    /// Opens the gate after a pause.
    pub fn resume(&self) {
        self.gate.send_if_modified(|g| replace_unless_draining(g, Gate::Open));
    }

    /// Sets the most Evaluators (so workers); surplus ones finish their
    /// jobs first.
    pub fn resize(&self, workers: usize) -> Result<(), EvalError> {
        self.lanes.close_from(workers);
        self.slot
            .tell(ActorName::EvaluatorPool, FactoryMessage::AdjustWorkerPool(workers))
            .map_err(|e| EvalError::Unavailable(e.to_string()))?;
        // A restarted pool starts at this size too.
        self.live.send_modify(|s| {
            let mut resized = PoolSettings::clone(s);
            resized.workers = workers;
            *s = Arc::new(resized);
        });
        Ok(())
    }

    /// Refuses new jobs and waits up to `limit` for queued and running ones
    /// to finish. Returns whether the pool went idle in time.
    pub async fn drain(&self, limit: Duration) -> bool {
        self.gate.send_replace(Gate::Draining);
        let idle = async {
            loop {
                let queued = self.queue_depth().await.unwrap_or(0);
                if queued == 0 && self.stats.snapshot().running == 0 {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        };
        tokio::time::timeout(limit, idle).await.is_ok()
    }

    /// The pool as an operator sees it.
    pub async fn status(&self) -> Result<PoolStatus, EvalError> {
        let queued = self.queue_depth().await?;
        let gate = *self.gate.borrow();
        Ok(PoolStatus {
            gate,
            workers: self.current().workers,
            min_workers: self.current().min_workers.clamp(1, self.current().workers),
            queued,
            counts: self.stats.snapshot(),
            worker_list: self.stats.workers(),
        })
    }

    /// Jobs waiting: in the pool's queue and for a worker with room.
    async fn queue_depth(&self) -> Result<usize, EvalError> {
        let pool = self
            .slot
            .ask(ActorName::EvaluatorPool, STATUS_LIMIT, FactoryMessage::GetQueueDepth)
            .await
            .map_err(|e| EvalError::Unavailable(e.to_string()))?;
        Ok(pool + self.lanes.waiting())
    }

    /// Its counters, without asking the pool.
    pub fn stats(&self) -> PoolSnapshot {
        self.stats.snapshot()
    }

    /// Whether the pool actor runs.
    pub fn is_alive(&self) -> bool {
        self.slot.is_alive()
    }
}

const STATUS_LIMIT: Duration = Duration::from_secs(2);

/// How long a run waits in the lanes' queue before its caller has the
/// workers look at the queue again. Workers take queued runs when they
/// answer, so this fires only if that was missed (a worker that stopped
/// answering while the queue filled, or one left idle when the runs it
/// was offered were of code it lacked): a delay, not a stall.
const KICK_AFTER: Duration = Duration::from_millis(50);

fn stopped() -> EvalError {
    EvalError::Unavailable("the evaluator stopped before answering".into())
}

fn replace_unless_draining(gate: &mut Gate, new: Gate) -> bool {
    if *gate == Gate::Draining || *gate == new {
        return false;
    }
    *gate = new;
    true
}
