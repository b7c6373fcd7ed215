//! One `vane worker` child process: spawned with its memory cap, spoken to in
//! frames over its stdin/stdout, killed when it overruns. `worker.rs` writes
//! the requests and `reader.rs` reads the replies.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use bytes::BytesMut;
use futures_util::{FutureExt, StreamExt};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, ChildStderr, ChildStdin, ChildStdout, Command};
use tokio::task::JoinHandle;
use tokio_util::codec::{FramedRead, LengthDelimitedCodec};

use crate::confine::Identity;
use crate::engine::protocol::codec;
use crate::settings::Isolation;

/// How long a new worker process may take to say it is ready.
const START_LIMIT: Duration = Duration::from_secs(10);

#[derive(Debug, Clone)]
/// How to start a worker process.
pub struct ProcessSettings {
    /// The executable, run as `<exe> worker`.
    pub exe: PathBuf,
    /// The process's memory cap (its address-space limit).
    pub memory_bytes: u64,
    /// Compiled versions the worker keeps.
    pub code_cache_entries: usize,
    /// Process or thread isolation.
    pub isolation: Isolation,
    /// The user it drops to (`sandbox.user`, when the server is root).
    pub identity: Option<Identity>,
}

#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    #[error("could not start worker process {exe}: {error}")]
    Spawn { exe: String, error: std::io::Error },
    #[error("no answer within {0:?}")]
    Overran(Duration),
    #[error("worker process died ({0})")]
    Died(String),
    /// An allocation failed: the address-space cap was reached.
    #[error("worker process ran out of its memory cap")]
    OutOfMemory,
}

/// A started worker process, split into the side requests are written to
/// and the side replies come from.
pub struct WorkerProcess {
    pub input: ChildStdin,
    pub output: ProcessOutput,
}

/// The reply side: owns the child, so whoever reads the replies also reaps
/// or kills it.
pub struct ProcessOutput {
    child: Child,
    frames: FramedRead<ChildStdout, LengthDelimitedCodec>,
    /// Forwards the worker's stderr to the log and keeps its last line,
    /// which says why a dying worker died.
    stderr: Option<JoinHandle<String>>,
}

impl WorkerProcess {
    /// Starts the process and waits for its ready frame.
    pub async fn spawn(settings: &ProcessSettings) -> Result<Self, ProcessError> {
        let mut command = Command::new(&settings.exe);
        command
            .arg("worker")
            .arg("--code-cache-entries")
            .arg(settings.code_cache_entries.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // Nothing of the server's environment (its admin tokens, the
            // store's URL) reaches a worker; it needs none of it.
            .env_clear()
            .kill_on_drop(true);
        if let Some(Identity { uid, gid }) = settings.identity {
            command
                .arg("--uid")
                .arg(uid.to_string())
                .arg("--gid")
                .arg(gid.to_string());
        }
        let memory = settings.memory_bytes;
        // SAFETY: only async-signal-safe calls (setrlimit, prctl) between fork and exec.
        unsafe {
            command.pre_exec(move || limit_child(memory));
        }
        let mut child = command.spawn().map_err(|error| ProcessError::Spawn {
            exe: settings.exe.display().to_string(),
            error,
        })?;
        let pid = child.id();
        let input = child.stdin.take().expect("piped");
        let frames = FramedRead::new(child.stdout.take().expect("piped"), codec());
        let stderr = child.stderr.take().map(|e| tokio::spawn(forward_stderr(e, pid)));
        let mut output = ProcessOutput { child, frames, stderr };
        match tokio::time::timeout(START_LIMIT, output.next()).await {
            Ok(Ok(frame)) if frame.is_empty() => Ok(Self { input, output }),
            Ok(Ok(_)) => Err(ProcessError::Died("sent something other than its ready frame".into())),
            Ok(Err(io)) => Err(output.exit_error(io).await),
            Err(_) => Err(ProcessError::Overran(START_LIMIT)),
        }
    }
}

impl ProcessOutput {
    /// The next reply; an end of stream is an `UnexpectedEof` error.
    /// Cancel-safe: a partly read frame stays buffered.
    pub async fn next(&mut self) -> std::io::Result<BytesMut> {
        match self.frames.next().await {
            Some(frame) => frame,
            None => Err(std::io::ErrorKind::UnexpectedEof.into()),
        }
    }

    /// A reply that can be had without waiting, if any.
    pub fn ready(&mut self) -> Option<std::io::Result<BytesMut>> {
        self.frames.next().now_or_never().flatten()
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    pub async fn kill(&mut self) {
        let _ = self.child.kill().await;
    }

    /// Why the process stopped answering, from its exit status and the last
    /// line it wrote to stderr.
    pub async fn exit_error(&mut self, io: std::io::Error) -> ProcessError {
        let status = match tokio::time::timeout(Duration::from_millis(200), self.child.wait()).await {
            Ok(Ok(status)) => status,
            _ => return ProcessError::Died(format!("pipe error: {io}")),
        };
        // The pipe closes with the process, so its last line comes at once.
        let last_line = match self.stderr.take() {
            Some(task) => tokio::time::timeout(Duration::from_millis(200), task)
                .await
                .ok()
                .and_then(Result::ok)
                .unwrap_or_default(),
            None => String::new(),
        };
        if last_line.contains("memory allocation of") {
            ProcessError::OutOfMemory
        } else if last_line.contains("stack overflow") || last_line.contains("overflowed its stack") {
            ProcessError::Died("it overflowed its stack: the source or its data nests too deeply".into())
        } else if last_line.is_empty() {
            ProcessError::Died(describe_exit(status))
        } else {
            ProcessError::Died(format!("{}: {last_line}", describe_exit(status)))
        }
    }
}

/// Returns the last line that is not a `note:` (Rust adds one after the
/// message that matters).
async fn forward_stderr(stderr: ChildStderr, pid: Option<u32>) -> String {
    let mut lines = BufReader::new(stderr).lines();
    let mut last = String::new();
    while let Ok(Some(line)) = lines.next_line().await {
        tracing::warn!(pid, "worker: {line}");
        if !line.starts_with("note:") {
            last = line;
        }
    }
    last
}

fn describe_exit(status: std::process::ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (_, Some(libc::SIGKILL)) => "killed".into(),
        (_, Some(libc::SIGABRT)) => "aborted".into(),
        (_, Some(libc::SIGSEGV)) => "crashed, most likely by overflowing its stack".into(),
        (_, Some(signal)) => format!("signal {signal}"),
        (Some(code), None) => format!("exit code {code}"),
        (None, None) => "unknown exit".into(),
    }
}

fn limit_child(memory_bytes: u64) -> std::io::Result<()> {
    let limit = libc::rlimit {
        rlim_cur: memory_bytes as libc::rlim_t,
        rlim_max: memory_bytes as libc::rlim_t,
    };
    // SAFETY: plain syscalls on a valid struct.
    unsafe {
        if libc::setrlimit(libc::RLIMIT_AS, &limit) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        // The worker must not outlive the server if the server is killed.
        #[cfg(target_os = "linux")]
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
        // A crashing worker leaves no core with a script's data in it.
        let none = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        libc::setrlimit(libc::RLIMIT_CORE, &none);
    }
    Ok(())
}
