//! One in-process worker thread, for `sandbox.isolation = "thread"`: the same
//! engines and frames as a worker process, without the process. There is no
//! hard memory cap and nothing can be killed: a run that overruns its
//! deadline plus grace is abandoned (the thread finishes it and exits) and a
//! new thread takes over. For deployments that trust their scripts.
//!
//! A plain OS thread rather than a tokio task or a thread-local actor: the
//! interpreters are not `Send`, block for the whole run, and need a larger
//! stack than runtime threads get.

use std::sync::mpsc;

use tokio::sync::mpsc as async_mpsc;

use super::process::ProcessError;
use crate::engine::Engines;
use crate::engine::worker::handle_frame;

/// Parsers and compilers recurse; sources are bounded by `engine::guard`.
const STACK_BYTES: usize = 64 << 20;

/// Requests go in on `input` (framed as for a process, the length first),
/// replies come back on `output`, in order.
pub struct WorkerThread {
    pub input: mpsc::Sender<Vec<u8>>,
    pub output: async_mpsc::UnboundedReceiver<Vec<u8>>,
}

impl WorkerThread {
    pub fn spawn(code_cache_entries: usize) -> Result<Self, ProcessError> {
        let (input, inbox) = mpsc::channel();
        let (replies, output) = async_mpsc::unbounded_channel();
        std::thread::Builder::new()
            .name("vane-eval".into())
            .stack_size(STACK_BYTES)
            .spawn(move || serve(inbox, replies, code_cache_entries))
            .map_err(|error| ProcessError::Spawn {
                exe: "worker thread".into(),
                error,
            })?;
        Ok(Self { input, output })
    }
}

fn serve(inbox: mpsc::Receiver<Vec<u8>>, replies: async_mpsc::UnboundedSender<Vec<u8>>, code_cache_entries: usize) {
    let mut engines = Engines::new(code_cache_entries);
    // Ends when the input is dropped (after an overrun, once the abandoned
    // run finishes) or nobody reads the replies any more.
    while let Ok(request) = inbox.recv() {
        let (frame, poisoned) = handle_frame(&mut engines, request.get(4..).unwrap_or_default());
        if replies.send(frame).is_err() || poisoned {
            // A poisoned engine's state may be torn; its reader sees the
            // replies end and a new thread replaces this one.
            return;
        }
        engines.prepare();
    }
}
