//! A worker's two pipes as the Evaluator's side uses them: requests go in
//! through the `RequestPipe`, replies come out of the `ReplyPipe`. For a
//! worker process they are its stdin and stdout; for a worker thread, two
//! channels.

use bytes::Bytes;
use futures_util::SinkExt;
use tokio::process::ChildStdin;
use tokio::sync::mpsc;
use tokio_util::codec::{FramedWrite, LengthDelimitedCodec};

use super::process::{ProcessError, ProcessOutput, ProcessSettings, WorkerProcess};
use super::thread::WorkerThread;
use crate::engine::protocol::codec;
use crate::settings::Isolation;

/// Where requests are written to a worker.
pub enum RequestPipe {
    /// Written by the Evaluator itself: a task between would cost a
    /// wake-up on every request when the server is not busy.
    Process(Box<FramedWrite<ChildStdin, LengthDelimitedCodec>>),
    Thread(std::sync::mpsc::Sender<Vec<u8>>),
}

/// Where a worker's replies are read; it owns a worker process, so it also
/// says its pid, kills it and reads why it died.
pub enum ReplyPipe {
    Process(Box<ProcessOutput>),
    Thread(mpsc::UnboundedReceiver<Vec<u8>>),
}

/// Starts a worker of the kind `process` names.
pub async fn start(process: &ProcessSettings) -> Result<(RequestPipe, ReplyPipe), ProcessError> {
    Ok(match process.isolation {
        Isolation::Process => {
            let worker = WorkerProcess::spawn(process).await?;
            let input = Box::new(FramedWrite::new(worker.input, codec()));
            (RequestPipe::Process(input), ReplyPipe::Process(Box::new(worker.output)))
        }
        Isolation::Thread => {
            let worker = WorkerThread::spawn(process.code_cache_entries)?;
            (RequestPipe::Thread(worker.input), ReplyPipe::Thread(worker.output))
        }
    })
}

impl RequestPipe {
    /// A failed write is not reported here: the worker is gone, and its
    /// ReplyPipe says so.
    pub async fn send(&mut self, frame: Vec<u8>) {
        match self {
            Self::Process(input) => {
                let _ = input.send(Bytes::from(frame)).await;
            }
            Self::Thread(input) => {
                let _ = input.send(frame);
            }
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
