//! `vane watch`: the consumer-side agent. Keeps files rendered from configs in
//! step with Vane, in the spirit of confd and consul-template: one task per
//! resource, so a failing resource never stops the others.

mod config;
mod files;
mod render;
mod resource;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::Router;
use axum::routing::get;

pub use config::{AgentConfig, Resource};
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
    fn add(&self, counter: &AtomicU64) {
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

/// Renders every resource once; false if any failed.
pub async fn once(config: AgentConfig) -> bool {
    let counters = Arc::new(Counters::default());
    let mut ok = true;
    for resource in config.resources {
        ok &= Watcher::new(resource, counters.clone()).pass_and_report().await;
    }
    ok
}

/// Watches every resource until the process ends.
pub async fn run(config: AgentConfig, counters: Arc<Counters>) -> anyhow::Result<()> {
    if let Some(addr) = config.metrics_listen {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let metrics = counters.clone();
        let router = Router::new().route("/metrics", get(move || async move { metrics.prometheus() }));
        tokio::spawn(async move { axum::serve(listener, router).await });
        tracing::info!(%addr, "watch metrics listening");
    }
    let tasks: Vec<_> = config
        .resources
        .into_iter()
        .map(|resource| tokio::spawn(Watcher::new(resource, counters.clone()).watch()))
        .collect();
    for task in tasks {
        task.await?;
    }
    Ok(())
}
