//! Exec mode, as consul-template has it: the agent supervises one child. It
//! starts the child once every file the child depends on has been rendered,
//! signals it when one of them changes, restarts it with backoff when it
//! exits, forwards SIGTERM and SIGINT to it, and then exits with its status.

use std::collections::HashSet;
use std::process::ExitStatus;
use std::time::Duration;

use serde::Deserialize;
use tokio::process::{Child, Command};
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::mpsc;
use tokio::time::Instant;

const FIRST_BACKOFF: Duration = Duration::from_millis(200);
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// A child that ran this long before exiting restarts without waiting.
const STEADY: Duration = Duration::from_secs(10);

/// A pass that put the resource's file in force (or found it current).
#[derive(Debug, Clone)]
pub struct Rendered {
    /// The resource's name.
    pub resource: String,
    /// Whether the file on disk changed.
    pub changed: bool,
}

/// An `[exec]` section that cannot run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExecError {
    /// `command` is empty.
    #[error("`command` must name a program")]
    NoProgram,
    /// `reload_signal` is no signal the agent sends.
    #[error("`reload_signal` {0:?} is not a signal")]
    UnknownSignal(String),
    /// `resources` names a resource the file does not have.
    #[error("`resources` names {0:?}, which is no resource")]
    UnknownResource(String),
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
/// `[exec]` in `watch.toml`.
pub struct Exec {
    /// The program and its arguments (no shell).
    pub command: Vec<String>,
    /// Sent to the child when a file it depends on changes; "" sends none.
    #[serde(default = "default_reload_signal")]
    pub reload_signal: String,
    /// The resources whose files the child reads; empty means all of them.
    #[serde(default)]
    pub resources: Vec<String>,
    /// After a forwarded SIGTERM or SIGINT, how long the child has before
    /// it is killed.
    #[serde(default = "default_kill_timeout")]
    pub kill_timeout_ms: u64,
    #[serde(skip)]
    signal: Option<i32>,
}

fn default_reload_signal() -> String {
    "SIGHUP".into()
}

fn default_kill_timeout() -> u64 {
    30_000
}

impl Exec {
    /// Checks the section against the resources it names.
    pub fn prepare(&mut self, names: &HashSet<String>) -> Result<(), ExecError> {
        if self.command.first().is_none_or(|program| program.is_empty()) {
            return Err(ExecError::NoProgram);
        }
        self.signal = match self.reload_signal.as_str() {
            "" => None,
            name => Some(signal_number(name).ok_or_else(|| ExecError::UnknownSignal(name.to_owned()))?),
        };
        if let Some(unknown) = self.resources.iter().find(|r| !names.contains(*r)) {
            return Err(ExecError::UnknownResource(unknown.clone()));
        }
        if self.resources.is_empty() {
            self.resources = names.iter().cloned().collect();
        }
        Ok(())
    }

    fn spawn(&self) -> std::io::Result<Child> {
        // A resource stopped or changed on SIGHUP drops its supervisor: its
        // child must not outlive it unsupervised.
        Command::new(&self.command[0])
            .args(&self.command[1..])
            .kill_on_drop(true)
            .spawn()
    }
}

fn signal_number(name: &str) -> Option<i32> {
    let name = name.trim_start_matches("SIG");
    Some(match name {
        "HUP" => libc::SIGHUP,
        "INT" => libc::SIGINT,
        "QUIT" => libc::SIGQUIT,
        "TERM" => libc::SIGTERM,
        "USR1" => libc::SIGUSR1,
        "USR2" => libc::SIGUSR2,
        "WINCH" => libc::SIGWINCH,
        "KILL" => libc::SIGKILL,
        _ => return None,
    })
}

fn send(child: &Child, signal: i32) {
    if let Some(pid) = child.id() {
        // SAFETY: kill has no memory preconditions; the pid is our child's.
        unsafe { libc::kill(pid as i32, signal) };
    }
}

enum Stop {
    /// The child exited by itself: start it again.
    Exited(ExitStatus),
    /// The agent was told to stop: pass the signal on and wait.
    Forward(i32),
}

/// Supervises the child until the agent is told to stop; returns the
/// child's last status.
pub async fn supervise(exec: Exec, mut rendered: mpsc::UnboundedReceiver<Rendered>) -> std::io::Result<ExitStatus> {
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let depends: HashSet<String> = exec.resources.iter().cloned().collect();
    let mut ready = HashSet::new();
    // Not before every file it reads is there.
    while ready.len() < depends.len() {
        tokio::select! {
            Some(r) = rendered.recv() => if depends.contains(&r.resource) { ready.insert(r.resource); },
            // Told to stop before there was a child: nothing failed.
            _ = term.recv() => return Ok(std::os::unix::process::ExitStatusExt::from_raw(0)),
            _ = int.recv() => return Ok(std::os::unix::process::ExitStatusExt::from_raw(0)),
        }
    }
    let mut backoff = FIRST_BACKOFF;
    loop {
        let mut child = exec.spawn()?;
        let started = Instant::now();
        tracing::info!(command = ?exec.command, pid = child.id().unwrap_or(0), "child started");
        let stop = loop {
            tokio::select! {
                Some(r) = rendered.recv() => {
                    if let (true, true, Some(signal)) = (r.changed, depends.contains(&r.resource), exec.signal) {
                        tracing::info!(resource = r.resource, signal = exec.reload_signal, "signalling the child");
                        send(&child, signal);
                    }
                }
                status = child.wait() => {
                    let status = status?;
                    tracing::warn!(%status, "child exited");
                    break Stop::Exited(status);
                }
                _ = term.recv() => break Stop::Forward(libc::SIGTERM),
                _ = int.recv() => break Stop::Forward(libc::SIGINT),
            }
        };
        match stop {
            Stop::Forward(signal) => {
                send(&child, signal);
                let limit = Duration::from_millis(exec.kill_timeout_ms);
                return match tokio::time::timeout(limit, child.wait()).await {
                    Ok(status) => status,
                    Err(_) => {
                        tracing::warn!(?limit, "child did not stop in time; killing it");
                        child.kill().await?;
                        child.wait().await
                    }
                };
            }
            Stop::Exited(status) => {
                if started.elapsed() >= STEADY {
                    backoff = FIRST_BACKOFF;
                }
                tracing::info!(?backoff, "restarting the child");
                tokio::select! {
                    () = tokio::time::sleep(backoff) => {}
                    // Told to stop while there is no child: its last status.
                    _ = term.recv() => return Ok(status),
                    _ = int.recv() => return Ok(status),
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exec(command: &[&str], signal: &str, resources: &[&str]) -> Exec {
        Exec {
            command: command.iter().map(|s| s.to_string()).collect(),
            reload_signal: signal.into(),
            resources: resources.iter().map(|s| s.to_string()).collect(),
            kill_timeout_ms: 1000,
            signal: None,
        }
    }

    #[test]
    fn checks_the_command_the_signal_and_the_resources() {
        let names: HashSet<String> = ["a".to_owned(), "b".to_owned()].into();
        let mut ok = exec(&["nginx"], "SIGHUP", &[]);
        ok.prepare(&names).unwrap();
        assert_eq!((ok.signal, ok.resources.len()), (Some(libc::SIGHUP), 2));
        assert!(
            exec(&[], "HUP", &[])
                .prepare(&names)
                .unwrap_err()
                .to_string()
                .contains("command")
        );
        assert!(
            exec(&["x"], "SIGNOPE", &[])
                .prepare(&names)
                .unwrap_err()
                .to_string()
                .contains("SIGNOPE")
        );
        assert!(
            exec(&["x"], "USR1", &["c"])
                .prepare(&names)
                .unwrap_err()
                .to_string()
                .contains("\"c\"")
        );
    }
}
