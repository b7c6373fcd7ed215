//! A worker's two pipes as the Evaluator's side uses them: requests go in
//! through the `RequestPipe`, replies come out of the `ReplyPipe`. For a
//! worker process they are its stdin and stdout; for a worker thread, two
//! channels.

use std::io::Write;

use bytes::Bytes;
use tokio::sync::mpsc;

use super::process::{ProcessError, ProcessOutput, ProcessSettings, WorkerProcess};
use super::thread::WorkerThread;
use crate::settings::Isolation;

/// Where requests are written to a worker, by whoever holds its lock (the
/// Evaluator, or a caller handing a run over directly; `worker.rs`): a
/// blocking write that never waits, because no more is written than the
/// pipe has room for (`capacity`).
pub enum RequestPipe {
    Process(std::fs::File),
    Thread(std::sync::mpsc::Sender<Vec<u8>>),
    /// Closed: the worker finishes what it holds and exits.
    Closed,
}

/// Where a worker's replies are read; it owns a worker process, so it also
/// says its pid, kills it and reads why it died.
pub enum ReplyPipe {
    Process(Box<ProcessOutput>),
    Thread(mpsc::UnboundedReceiver<Vec<u8>>),
}

/// Most bytes a worker's request pipe is asked to hold; Linux lets an
/// unprivileged process grow a pipe to 1 MiB (`fs.pipe-max-size`).
const PIPE_BYTES: libc::c_int = 1 << 20;

/// Starts a worker of the kind `process` names; the number is how many
/// bytes of requests it can be handed before a write would wait.
pub async fn start(process: &ProcessSettings) -> Result<(RequestPipe, ReplyPipe, usize), ProcessError> {
    Ok(match process.isolation {
        Isolation::Process => {
            let worker = WorkerProcess::spawn(process).await?;
            let died = |e: std::io::Error| ProcessError::Died(format!("its request pipe: {e}"));
            let input = std::fs::File::from(worker.input.into_owned_fd().map_err(died)?);
            let capacity = grow(&input);
            (
                RequestPipe::Process(input),
                ReplyPipe::Process(Box::new(worker.output)),
                capacity,
            )
        }
        Isolation::Thread => {
            let worker = WorkerThread::spawn(process.code_cache_entries)?;
            (
                RequestPipe::Thread(worker.input),
                ReplyPipe::Thread(worker.output),
                usize::MAX,
            )
        }
    })
}

/// Grows the pipe as far as allowed and says how large it is.
fn grow(pipe: &std::fs::File) -> usize {
    use std::os::fd::AsRawFd;
    let fd = pipe.as_raw_fd();
    // SAFETY: fcntl on a descriptor this process owns.
    let size = unsafe {
        libc::fcntl(fd, libc::F_SETPIPE_SZ, PIPE_BYTES);
        libc::fcntl(fd, libc::F_GETPIPE_SZ)
    };
    // 4 KiB, the least any pipe holds, if it cannot be asked.
    usize::try_from(size).unwrap_or(4096).max(4096)
}

impl RequestPipe {
    /// Writes a whole frame (its length prefix included). A failed write is
    /// not reported here: the worker is gone, and its ReplyPipe says so.
    pub fn write(&mut self, frame: Vec<u8>) {
        match self {
            Self::Process(input) => {
                let _ = input.write_all(&frame);
            }
            Self::Thread(input) => {
                let _ = input.send(frame);
            }
            Self::Closed => {}
        }
    }

    /// Writes whole frames in order: into a process's pipe in one write
    /// (one wake-up for the worker), into a thread's inbox one message
    /// each, as the thread reads them.
    pub fn write_frames(&mut self, frames: Vec<Vec<u8>>) {
        match self {
            Self::Process(input) => {
                let _ = input.write_all(&frames.concat());
            }
            Self::Thread(input) => {
                for frame in frames {
                    let _ = input.send(frame);
                }
            }
            Self::Closed => {}
        }
    }
}

impl ReplyPipe {
    pub fn pid(&self) -> Option<u32> {
        match self {
            Self::Process(p) => p.pid(),
            Self::Thread(_) => None,
        }
    }

    pub async fn next(&mut self) -> std::io::Result<Bytes> {
        match self {
            Self::Process(p) => p.next().await.map(|frame| frame.freeze()),
            Self::Thread(replies) => replies
                .recv()
                .await
                .map(Bytes::from)
                .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "worker thread stopped")),
        }
    }

    pub fn ready(&mut self) -> Option<std::io::Result<Bytes>> {
        match self {
            Self::Process(p) => p.ready().map(|frame| frame.map(|f| f.freeze())),
            Self::Thread(replies) => replies.try_recv().ok().map(|frame| Ok(Bytes::from(frame))),
        }
    }

    /// Kills a process; a thread cannot be killed and is abandoned.
    pub async fn kill(&mut self) {
        if let Self::Process(p) = self {
            p.kill().await;
        }
    }

    pub async fn exit_error(&mut self, io: std::io::Error) -> ProcessError {
        match self {
            Self::Process(p) => p.exit_error(io).await,
            Self::Thread(_) => ProcessError::Died("worker thread stopped".into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_written_together_reach_a_thread_one_message_each() {
        let (input, inbox) = std::sync::mpsc::channel();
        let mut pipe = RequestPipe::Thread(input);
        pipe.write_frames(vec![b"one".to_vec(), b"two".to_vec()]);
        assert_eq!(inbox.try_iter().collect::<Vec<_>>(), [b"one".to_vec(), b"two".to_vec()]);
    }
}
