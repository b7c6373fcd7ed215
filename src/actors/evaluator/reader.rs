//! A worker's reader: the task that answers each job as its reply arrives,
//! kills a worker that overruns its deadline, hands back the jobs a dead
//! worker held, and has the worker take queued runs when it has room.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde_json::value::RawValue;

use super::EvalError;
use super::pipeline::{MEAN_WEIGHT, PipelineState};
use super::pipes::ReplyPipe;
use super::process::ProcessError;
use super::seat::PoolSeat;
use super::stats::{Count, WorkerState};
use crate::domain::Lang;
use crate::engine::EngineError;
use crate::engine::protocol::Response;

impl PipelineState {
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
        pipeline.solo -= usize::from(sent.limits.solo);
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
        let overran = matches!(
            decoded,
            Decoded::Done(Err(EvalError::Engine(EngineError::Deadline { .. })), _)
        );
        let release = pipeline.settle();
        let idle = pipeline.jobs.is_empty();
        drop(pipeline);

        let seat = &self.seat;
        match &decoded {
            _ if overran => seat.overran(&sent.job),
            Decoded::Done(..) => seat.ran(&sent.job),
            Decoded::NeedSource => {}
        }
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
        pipeline.overran = matches!(error, Some(ProcessError::Overran(_)));
        pipeline.in_flight = 0;
        pipeline.solo = 0;
        let mut jobs = std::mem::take(&mut pipeline.jobs);
        let owed = pipeline.settle();
        let retired = pipeline.retired;
        drop(pipeline);
        let seat = &self.seat;
        match (jobs.pop_front(), error) {
            // It held more than the head, which did not go alone: replies
            // are written in batches, so the head may have been answered
            // into a buffer the worker's death lost, and which job killed it
            // is not known. Each goes back to run alone (its frame has the
            // worker send what it holds first): the one that kills a worker
            // alone is answered with why.
            (Some(head), Some(error)) if !jobs.is_empty() && !head.limits.solo => {
                tracing::warn!(wid = seat.wid, pid, %error, held = jobs.len() + 1, "worker replaced; its jobs run again, each alone");
                // Counted as the worker's death it is; the job that caused
                // it is counted again when it kills a worker alone.
                let _ = failure(error, head.limits.deadline_ms, seat);
                jobs.push_front(head);
                for sent in &mut jobs {
                    sent.job.msg.alone = true;
                }
            }
            (Some(head), Some(error)) => {
                tracing::warn!(wid = seat.wid, pid, %error, "worker replaced");
                if matches!(error, ProcessError::Overran(_)) {
                    seat.overran(&head.job);
                }
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
pub(super) async fn read(shared: Arc<PipelineState>, mut replies: ReplyPipe) {
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
                // Its CPU counts for demand sizing: a worker killed for a
                // hang spent its whole deadline on a core.
                if let Some(ticks) = pid.and_then(super::demand::cpu_ticks) {
                    shared.seat.stats.retired(ticks);
                }
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
