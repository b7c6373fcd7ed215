//! PoolSeat: the Evaluator a worker works for, as the pool knows it. What
//! leaves a worker goes through it: an answer to a job's caller, a job
//! handed back to the pool, and word that the Evaluator can take more.

use std::sync::Arc;

use ractor::factory::{FactoryMessage, Job};
use ractor::{ActorRef, MessagingErr};
use serde_json::value::RawValue;

use super::stats::{Count, PoolStats};
use super::{EvalError, EvalJob, PoolMsg, PoolSettings};

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
    /// worker failed under it; a job is given back for that only once.
    pub fn back_to_pool(&self, mut job: Job<(), EvalJob>, failed: bool) {
        if failed && job.msg.retried {
            let error = EvalError::Unavailable("its worker failed twice before running it".into());
            return self.answer(job, Err(error));
        }
        job.msg.retried |= failed;
        self.stats.add(Count::Finished);
        if failed {
            self.stats.add(Count::Requeued);
        }
        self.to_pool(job);
    }

    /// Puts a job that was never started in the pool's queue.
    pub fn to_pool(&self, job: Job<(), EvalJob>) {
        self.stats.queue_moved(1);
        if let Err(MessagingErr::SendErr(FactoryMessage::Dispatch(mut job))) =
            self.factory.cast(FactoryMessage::Dispatch(job))
            && let Some(reply) = job.msg.reply.take()
        {
            let _ = reply.send(Err(EvalError::Unavailable("the pool stopped".into())));
        }
    }
}
