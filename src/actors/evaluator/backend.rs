//! Where an Evaluator's scripts run: a worker process or a worker thread,
//! spoken to in the same frames.

use std::time::Duration;

use super::process::{ProcessError, ProcessSettings, WorkerProcess};
use super::thread::WorkerThread;
use crate::settings::Isolation;

pub enum Backend {
    Process(Box<WorkerProcess>),
    Thread(WorkerThread),
}

impl Backend {
    pub async fn spawn(settings: &ProcessSettings) -> Result<Self, ProcessError> {
        Ok(match settings.isolation {
            Isolation::Process => Self::Process(Box::new(WorkerProcess::spawn(settings).await?)),
            Isolation::Thread => Self::Thread(WorkerThread::spawn(settings.code_cache_entries)?),
        })
    }

    pub async fn call(&mut self, request: &[u8], limit: Duration) -> Result<Vec<u8>, ProcessError> {
        match self {
            Self::Process(p) => p.call(request, limit).await,
            Self::Thread(t) => t.call(request, limit).await,
        }
    }

    /// Whether the worker died while idle.
    pub fn has_exited(&mut self) -> bool {
        match self {
            Self::Process(p) => p.has_exited(),
            Self::Thread(_) => false,
        }
    }

    pub fn pid(&self) -> Option<u32> {
        match self {
            Self::Process(p) => p.pid(),
            Self::Thread(_) => None,
        }
    }

    /// Resident memory of a worker process; threads share the server's.
    pub fn rss_bytes(&self) -> Option<u64> {
        super::stats::rss_bytes(self.pid()?)
    }

    /// Stops the worker: kills a process; lets a thread finish and exit.
    pub async fn stop(self) {
        match self {
            Self::Process(p) => p.kill().await,
            Self::Thread(t) => drop(t),
        }
    }
}
