//! One in-process worker thread, for `sandbox.isolation = "thread"`: the same
//! engines and frames as a worker process, without the process. There is no
//! hard memory cap and nothing can be killed: a run that overruns its
//! deadline plus grace is abandoned (the thread finishes it and exits) and a
//! fresh thread takes over. For deployments that trust their scripts.
//!
//! A plain OS thread rather than a tokio task or a thread-local actor: the
//! interpreters are not `Send`, block for the whole run, and need a larger
//! stack than runtime threads get.

use std::sync::mpsc;
use std::time::Duration;

use tokio::sync::oneshot;

use super::process::ProcessError;
use crate::engine::Engines;
use crate::engine::worker::handle_frame;

/// Parsers and compilers recurse; sources are bounded by `engine::guard`.
const STACK_BYTES: usize = 64 << 20;

type Call = (Vec<u8>, oneshot::Sender<Vec<u8>>);

pub struct WorkerThread {
    calls: mpsc::Sender<Call>,
}

impl WorkerThread {
    pub fn spawn(code_cache_entries: usize) -> Result<Self, ProcessError> {
        let (calls, inbox) = mpsc::channel::<Call>();
        std::thread::Builder::new()
            .name("vane-eval".into())
            .stack_size(STACK_BYTES)
            .spawn(move || serve(inbox, code_cache_entries))
            .map_err(|error| ProcessError::Spawn {
                exe: "worker thread".into(),
                error,
            })?;
        Ok(Self { calls })
    }

    pub async fn call(&mut self, request: &[u8], limit: Duration) -> Result<Vec<u8>, ProcessError> {
        let (reply, answer) = oneshot::channel();
        self.calls
            .send((request.to_vec(), reply))
            .map_err(|_| ProcessError::Died("worker thread stopped".into()))?;
        match tokio::time::timeout(limit, answer).await {
            Err(_) => Err(ProcessError::Overran(limit)),
            Ok(Ok(frame)) => Ok(frame),
            Ok(Err(_)) => Err(ProcessError::Died("worker thread panicked".into())),
        }
    }
}

fn serve(inbox: mpsc::Receiver<Call>, code_cache_entries: usize) {
    let mut engines = Engines::new(code_cache_entries);
    // Ends when the WorkerThread is dropped: after an overrun, once the
    // abandoned run finishes.
    while let Ok((request, reply)) = inbox.recv() {
        let (frame, poisoned) = handle_frame(&mut engines, &request);
        let _ = reply.send(frame);
        if poisoned {
            // Engine state may be torn; the next call finds this thread gone
            // and a fresh one replaces it.
            return;
        }
        engines.prepare();
    }
}
