//! `vane watch`: the consumer-side agent. Keeps files rendered from configs in
//! step with Vane, in the spirit of confd and consul-template: one task per
//! resource, so a failing resource never stops the others. SIGHUP reloads
//! `watch.toml`, restarting only the resources that changed; `[exec]`
//! supervises a child that reads the files.

mod config;
mod errors;
mod exec;
mod files;
mod owner;
mod register;
mod render;
mod report;
mod resource;
mod services;
mod text;

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::ExitStatus;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::Router;
use axum::routing::get;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

pub use config::{AgentConfig, Backup, Resource, ResourceError, Source};
pub use errors::WatchError;
pub use exec::{Exec, ExecError};
pub use owner::{Owner, OwnerError};
pub use resource::Watcher;

/// Counters for the optional metrics port, across all resources.
#[derive(Debug, Default)]
pub struct Counters {
    /// Destination files written.
    pub writes: AtomicU64,
    /// Fetches, renders, checks or reloads that failed.
    pub failures: AtomicU64,
    /// Reports sent to Vane.
    pub reports: AtomicU64,
    /// WebSocket reconnections.
    pub reconnects: AtomicU64,
}

impl Counters {
    pub(crate) fn add(&self, counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    fn prometheus(&self) -> String {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        format!(
            "# TYPE vane_watch_writes_total counter\nvane_watch_writes_total {}\n\
             # TYPE vane_watch_failures_total counter\nvane_watch_failures_total {}\n\
             # TYPE vane_watch_reports_total counter\nvane_watch_reports_total {}\n\
             # TYPE vane_watch_reconnects_total counter\nvane_watch_reconnects_total {}\n",
            get(&self.writes),
            get(&self.failures),
            get(&self.reports),
            get(&self.reconnects),
        )
    }
}

/// Renders every resource once; false if any failed. A wrong secret fails
/// too, though the fetch route does not need it: watching would.
pub async fn once(config: AgentConfig) -> bool {
    let counters = Arc::new(Counters::default());
    let mut ok = true;
    for resource in config.resources {
        let name = resource.name.clone();
        let mut watcher = Watcher::new(resource, counters.clone());
        if let Err(e) = watcher.check_subscriptions().await {
            tracing::error!(resource = name, error = %e, "not rendered");
            ok = false;
            continue;
        }
        ok &= watcher.pass_and_report().await;
    }
    ok
}

/// Renders every resource to standard output, writing, checking, reloading
/// and reporting nothing; false if any failed.
pub async fn dry_run(config: AgentConfig) -> bool {
    let counters = Arc::new(Counters::default());
    let mut ok = true;
    for register in &config.registrations {
        println!("{}", register.describe());
    }
    for resource in config.resources {
        let header = format!(
            "# vane watch --dry-run: resource {} -> {}",
            resource.name,
            resource.destination.display()
        );
        match Watcher::new(resource, counters.clone()).dry_run().await {
            Ok(content) => println!("{header}\n{content}"),
            Err(e) => {
                eprintln!("{header}: {e}");
                ok = false;
            }
        }
    }
    ok
}

/// The running watchers, by resource name.
struct Running {
    tasks: HashMap<String, (Resource, JoinHandle<()>)>,
    counters: Arc<Counters>,
    refused: mpsc::UnboundedSender<WatchError>,
    /// Feeds the agent's `[exec]` child, if it has one.
    rendered: Option<mpsc::UnboundedSender<exec::Rendered>>,
    /// Where every exec supervisor's last status goes.
    exited: mpsc::UnboundedSender<std::io::Result<ExitStatus>>,
}

impl Running {
    fn start(&mut self, resource: Resource) {
        let mut watcher = Watcher::new(resource.clone(), self.counters.clone());
        if let Some(rendered) = &self.rendered {
            watcher = watcher.telling(rendered.clone());
        }
        let own = match resource.exec.clone() {
            Some(exec) => {
                let (to, from) = mpsc::unbounded_channel();
                watcher = watcher.telling(to);
                Some((exec, from))
            }
            None => None,
        };
        let (refused, exited) = (self.refused.clone(), self.exited.clone());
        let task = tokio::spawn(async move {
            let watched = match own {
                None => watcher.watch().await,
                // The child lives as long as the resource's task: a
                // resource stopped or changed on SIGHUP takes it along.
                Some((exec, from)) => tokio::select! {
                    watched = watcher.watch() => watched,
                    status = exec::supervise(exec, from) => {
                        let _ = exited.send(status);
                        Ok(())
                    }
                },
            };
            if let Err(e) = watched {
                let _ = refused.send(e);
            }
        });
        self.tasks.insert(resource.name.clone(), (resource, task));
    }

    /// Applies a reloaded file: stops removed and changed resources, starts
    /// changed and new ones, and leaves the rest running.
    fn reload(&mut self, config: AgentConfig) {
        let mut next: HashMap<String, Resource> = config.resources.into_iter().map(|r| (r.name.clone(), r)).collect();
        self.tasks.retain(|name, (running, task)| {
            let keep = next.get(name) == Some(running);
            if keep {
                next.remove(name);
            } else {
                task.abort();
                tracing::info!(resource = name, "stopped: removed or changed in watch.toml");
            }
            keep
        });
        for (_, resource) in next {
            tracing::info!(resource = resource.name, "started from the reloaded watch.toml");
            self.start(resource);
        }
    }

    /// Exec supervisors running: the agent's and each resource's.
    fn supervisors(&self) -> usize {
        usize::from(self.rendered.is_some())
            + self
                .tasks
                .values()
                .filter(|(r, t)| r.exec.is_some() && !t.is_finished())
                .count()
    }
}

/// Watches every resource until the process is told to stop. Returns the
/// exit code: 0, or the status of the exec children (the first that failed).
pub async fn run(path: PathBuf, config: AgentConfig, counters: Arc<Counters>) -> anyhow::Result<i32> {
    if let Some(addr) = config.metrics_listen {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let metrics = counters.clone();
        let router = Router::new().route("/metrics", get(move || async move { metrics.prometheus() }));
        tokio::spawn(async move { axum::serve(listener, router).await });
        tracing::info!(%addr, "watch metrics listening");
    }
    let mut hangup = signal(SignalKind::hangup())?;
    let (refused, mut refusals) = mpsc::unbounded_channel();
    let (exited, mut exits) = mpsc::unbounded_channel();
    let rendered = config.exec.clone().map(|exec| {
        let (to, from) = mpsc::unbounded_channel();
        let exited = exited.clone();
        tokio::spawn(async move {
            let _ = exited.send(exec::supervise(exec, from).await);
        });
        to
    });
    let mut running = Running {
        tasks: HashMap::new(),
        counters,
        refused,
        rendered,
        exited,
    };
    let (exec, metrics_listen) = (config.exec.clone(), config.metrics_listen);
    let longest_stop = config
        .resources
        .iter()
        .filter_map(|r| r.exec.as_ref())
        .chain(&config.exec)
        .map(|e| e.kill_timeout_ms)
        .max()
        .unwrap_or(0);
    for resource in config.resources {
        running.start(resource);
    }
    let http = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(10))
        .build()
        .unwrap_or_default();
    let registrations = config.registrations.clone();
    let (register_refused, mut register_refusals) = mpsc::unbounded_channel();
    let keepers: Vec<JoinHandle<()>> = registrations
        .iter()
        .map(|r| tokio::spawn(r.clone().keep(http.clone(), register_refused.clone())))
        .collect();
    // Only an agent that registers listens for these: without it, the
    // signals end the process as they always did.
    let mut leaving = match registrations.is_empty() {
        true => None,
        false => Some((signal(SignalKind::terminate())?, signal(SignalKind::interrupt())?)),
    };
    loop {
        tokio::select! {
            () = async {
                match &mut leaving {
                    Some((term, int)) => tokio::select! { _ = term.recv() => {}, _ = int.recv() => {} },
                    None => std::future::pending().await,
                }
            } => {
                for keeper in &keepers {
                    keeper.abort();
                }
                futures_util::future::join_all(registrations.iter().map(|r| r.leave(&http))).await;
                leaving = None;
                if running.supervisors() == 0 {
                    return Ok(0);
                }
            }
            _ = hangup.recv() => match AgentConfig::load(&path) {
                Ok(next) => {
                    if next.exec != exec || next.metrics_listen != metrics_listen {
                        tracing::warn!("`exec` and `metrics_listen` change only on restart; the rest is reloaded");
                    }
                    running.reload(next);
                }
                Err(e) => tracing::error!(error = format!("{e:#}"), "watch.toml not reloaded; nothing changed"),
            },
            Some(e) = refusals.recv() => anyhow::bail!(e),
            Some(why) = register_refusals.recv() => anyhow::bail!(why),
            // A supervisor ends only when its child cannot start or the
            // agent is told to stop (SIGTERM, SIGINT), which every
            // supervisor hears: wait for the others' children too.
            Some(first) = exits.recv() => {
                let mut code = exit_code(first?);
                let others = running.supervisors().saturating_sub(1);
                let limit = std::time::Duration::from_millis(longest_stop + 5_000);
                let rest = async {
                    for _ in 0..others {
                        match exits.recv().await {
                            Some(status) => code = code.max(exit_code(status?)),
                            None => break,
                        }
                    }
                    anyhow::Ok(())
                };
                tokio::time::timeout(limit, rest).await.unwrap_or(Ok(()))?;
                return Ok(code);
            }
        }
    }
}

/// An exit status as a shell reports it: the code, or 128 + the signal.
fn exit_code(status: ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    status.code().unwrap_or_else(|| 128 + status.signal().unwrap_or(0))
}
