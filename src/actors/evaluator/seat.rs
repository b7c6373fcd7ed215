//! PoolSeat: the Evaluator a worker works for, as the pool knows it. What
//! leaves a worker goes through it: an answer to a job's caller, a job
//! handed back to the pool, and word that the Evaluator can take more.

use std::sync::Arc;

use ractor::factory::{FactoryMessage, Job};
use ractor::{ActorRef, MessagingErr};
use serde_json::value::RawValue;

use super::stats::{Count, PoolStats};
use super::suspects::Suspects;
use super::{EvalError, EvalJob, PoolMsg, PoolSettings, Work};

/// The Evaluator a worker works for, as the pool knows it: where its
/// jobs' answers and its capacity are reported.
#[derive(Clone)]
pub struct PoolSeat {
    /// The Evaluator's number in the pool (ractor's worker id).
    pub wid: usize,
    /// The pool, told when the Evaluator can take another job.
    pub factory: ActorRef<PoolMsg>,
    /// The pool's settings as of the worker's start.
    pub settings: Arc<PoolSettings>,
    /// The pool's counters.
    pub stats: Arc<PoolStats>,
    /// Code that overran lately, whose runs go alone.
    pub suspects: Arc<Suspects>,
}

impl PoolSeat {
    /// Tells the pool this Evaluator can take another job.
    pub fn finished(&self) {
        let _ = self.factory.cast(FactoryMessage::Finished(self.wid, ()));
    }

    /// Answers a job's caller and counts it done.
    pub fn answer(&self, mut job: Job<(), EvalJob>, result: Result<Box<RawValue>, EvalError>) {
        if let Some(reply) = job.msg.reply.take() {
            let _ = reply.send(result);
        }
        self.stats.add(Count::Finished);
    }

    /// Hands a job that did not run back to the pool. `failed` says its
    /// worker failed under it (running the job before it). It may come back
    /// more than once, each time for another job's failure, but never past
    /// its own queue deadline, which the pool still applies.
    pub fn back_to_pool(&self, job: Job<(), EvalJob>, failed: bool) {
        self.stats.add(Count::Returned);
        if failed {
            self.stats.add(Count::Requeued);
        }
        self.to_pool(job);
    }

    /// `job` ran past a deadline: its code's runs go alone for a while.
    pub fn overran(&self, job: &Job<(), EvalJob>) {
        if let Work::Run { version, .. } = &job.msg.work {
            self.suspects.overran(&version.code_id);
        }
    }

    /// `job` answered in time: its code's runs may share a worker again.
    pub fn ran(&self, job: &Job<(), EvalJob>) {
        if let Work::Run { version, .. } = &job.msg.work {
            self.suspects.ran(&version.code_id);
        }
    }

    /// Puts a job that was never started in the pool's queue.
    pub fn to_pool(&self, job: Job<(), EvalJob>) {
        if let Err(MessagingErr::SendErr(FactoryMessage::Dispatch(mut job))) =
            self.factory.cast(FactoryMessage::Dispatch(job))
        {
            self.stats.answered_unstarted();
            if let Some(reply) = job.msg.reply.take() {
                let _ = reply.send(Err(EvalError::Unavailable("the pool stopped".into())));
            }
        }
    }
}
