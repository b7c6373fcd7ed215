//! One resource's loop: subscribe with the last applied revision, and on
//! each notice (debounced) fetch, render and put the file in place. Reconnects
//! with exponential backoff and jitter; while Vane is unreachable the file on
//! disk is left as it is.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio_tungstenite::connect_async;
use tokio_tungstenite::tungstenite::Message;

use super::Counters;
use super::config::Resource;
use super::files::{Applied, ApplyError, Target};
use super::render::render;
use crate::domain::health::{MAX_MESSAGE_BYTES, ReportKind};

const FIRST_BACKOFF: Duration = Duration::from_millis(200);
const MAX_BACKOFF: Duration = Duration::from_secs(30);
const HTTP_LIMIT: Duration = Duration::from_secs(10);

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

fn truncate_at_char(text: &mut String, max: usize) {
    if text.len() > max {
        let mut end = max;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
    }
}

#[derive(Deserialize)]
struct Evaluated {
    result: Value,
    code_id: String,
    revision: i64,
}

/// Why one pass did not put a file in force.
#[derive(Debug, thiserror::Error)]
pub enum PassError {
    #[error("fetch: {0}")]
    Fetch(String),
    /// The version's output could not be put in force here; reported as
    /// `report` if that is a kind worth telling Vane.
    #[error("{message}")]
    Version {
        code_id: String,
        message: String,
        report: Option<ReportKind>,
    },
}

/// Follows one resource: subscribes, fetches, renders, writes and reloads.
pub struct Watcher {
    resource: Resource,
    http: reqwest::Client,
    counters: Arc<Counters>,
    /// The revision whose file is in force.
    applied: Option<i64>,
    /// What this run has reported already: once per version and kind.
    reported: HashSet<(String, ReportKind)>,
}

impl Watcher {
    /// A watcher for `resource`, counting into `counters`.
    pub fn new(mut resource: Resource, counters: Arc<Counters>) -> Self {
        // Vane counts a report only from a device it served: the agent is
        // one, under a name that stays the same across restarts.
        if resource.meta.device_id.is_empty() {
            resource.meta.device_id = format!("vane-watch:{}:{}", hostname(), resource.name);
        }
        let http = reqwest::Client::builder()
            .timeout(HTTP_LIMIT)
            .build()
            .unwrap_or_default();
        Self {
            resource,
            http,
            counters,
            applied: None,
            reported: HashSet::new(),
        }
    }

    /// Runs until the task is dropped.
    pub async fn watch(mut self) {
        let mut backoff = FIRST_BACKOFF;
        loop {
            match self.session().await {
                Ok(()) => backoff = FIRST_BACKOFF,
                Err(e) => {
                    tracing::warn!(resource = self.resource.name, error = %e, ?backoff, "vane unreachable; keeping the current file")
                }
            }
            self.counters.add(&self.counters.reconnects);
            let jitter = Duration::from_millis(rand::random::<u64>() % (backoff.as_millis() as u64 / 2 + 1));
            tokio::time::sleep(backoff + jitter).await;
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }

    /// One WebSocket session: subscribes with the applied revision (so Vane
    /// says at once if there is something newer) and applies each notice.
    async fn session(&mut self) -> anyhow::Result<()> {
        let url = format!("{}/api/v1/subscribe", self.resource.server.replacen("http", "ws", 1));
        let (mut socket, _) = connect_async(url).await?;
        let subscribe = json!({"type": "subscribe", "config_id": self.resource.config_id,
                               "secret": self.resource.secret, "revision": self.applied});
        socket.send(Message::text(subscribe.to_string())).await?;
        tracing::info!(resource = self.resource.name, revision = ?self.applied, "subscribed");
        loop {
            let Some(frame) = socket.next().await else {
                anyhow::bail!("connection closed");
            };
            let Message::Text(text) = frame? else {
                continue;
            };
            let message: Value = serde_json::from_str(&text)?;
            match message["type"].as_str() {
                Some("update") => {
                    // Notices within the window become one render.
                    let _ = tokio::time::timeout(self.resource.debounce(), async {
                        while let Some(Ok(_)) = socket.next().await {}
                    })
                    .await;
                    self.pass_and_report().await;
                }
                Some("error") => anyhow::bail!("vane refused the subscription: {}", message["message"]),
                _ => {}
            }
        }
    }

    /// Applies once, reporting a failure that is the version's fault.
    pub async fn pass_and_report(&mut self) -> bool {
        match self.pass().await {
            Ok(()) => true,
            Err(PassError::Fetch(e)) => {
                self.counters.add(&self.counters.failures);
                tracing::warn!(
                    resource = self.resource.name,
                    error = e,
                    "fetch failed; file left as it was"
                );
                false
            }
            Err(PassError::Version {
                code_id,
                message,
                report,
            }) => {
                self.counters.add(&self.counters.failures);
                tracing::error!(
                    resource = self.resource.name,
                    code_id,
                    error = message,
                    "file not updated"
                );
                if let Some(kind) = report
                    && self.reported.insert((code_id.clone(), kind))
                {
                    self.report(&code_id, kind, &message).await;
                }
                false
            }
        }
    }

    /// Fetch, render, put in place.
    pub async fn pass(&mut self) -> Result<(), PassError> {
        let evaluated = self.fetch().await.map_err(PassError::Fetch)?;
        let version_error = |message: String, report: Option<ReportKind>| PassError::Version {
            code_id: evaluated.code_id.clone(),
            message,
            report,
        };
        let template = self.resource.template.as_deref().unwrap_or_default();
        // The template is the operator's: a name it uses that the output
        // lacks, or an unknown filter, is not evidence against the version.
        let content = render(template, &evaluated.result).map_err(|e| version_error(e, Some(ReportKind::Render)))?;
        let target = Target {
            destination: &self.resource.destination,
            mode: self.resource.file_mode().unwrap_or(0o644),
            check: self.resource.check.as_deref(),
            reload: self.resource.reload.as_deref(),
            reload_timeout: self.resource.reload_timeout(),
        };
        match target.apply(&content).await {
            Ok(Applied::Unchanged) => {
                tracing::info!(
                    resource = self.resource.name,
                    revision = evaluated.revision,
                    "file already current"
                );
            }
            Ok(Applied::Replaced) => {
                self.counters.add(&self.counters.writes);
                tracing::info!(resource = self.resource.name, revision = evaluated.revision,
                               path = %self.resource.destination.display(), "file replaced and reloaded");
            }
            Err(e @ ApplyError::Io { .. }) => return Err(PassError::Fetch(e.to_string())),
            Err(e @ ApplyError::Check(_)) => return Err(version_error(e.to_string(), Some(ReportKind::Check))),
            // A reload fails for the machine's reasons as often as the
            // file's: never blamed on the version.
            Err(e @ ApplyError::Reload(_)) => return Err(version_error(e.to_string(), None)),
        }
        self.applied = Some(evaluated.revision);
        Ok(())
    }

    async fn fetch(&self) -> Result<Evaluated, String> {
        let url = format!(
            "{}/api/v1/configs/{}/evaluate",
            self.resource.server, self.resource.config_id
        );
        let body = json!({"meta": self.resource.meta, "params": self.resource.params});
        let response = self
            .http
            .post(url)
            .json(&body)
            .send()
            .await
            .map_err(|e| e.to_string())?;
        let status = response.status();
        if !status.is_success() {
            let text = response.text().await.unwrap_or_default();
            return Err(format!("{status}: {text}"));
        }
        response.json().await.map_err(|e| e.to_string())
    }

    /// Tells Vane: a `check` report counts toward breaking the version, a
    /// `render` one is shown to the operator.
    async fn report(&self, code_id: &str, kind: ReportKind, message: &str) {
        let url = format!(
            "{}/api/v1/configs/{}/reports",
            self.resource.server, self.resource.config_id
        );
        let mut message = format!("vane watch ({}): {message}", self.resource.name);
        truncate_at_char(&mut message, MAX_MESSAGE_BYTES);
        let body = json!({"code_id": code_id, "device_id": self.resource.meta.device_id,
                          "kind": kind, "message": message.replace('\0', "")});
        let sent = self
            .http
            .post(url)
            .header("Secret", &self.resource.secret)
            .json(&body)
            .send()
            .await;
        match sent {
            Ok(r) if r.status().is_success() => self.counters.add(&self.counters.reports),
            Ok(r) => tracing::warn!(resource = self.resource.name, status = %r.status(), "report refused"),
            Err(e) => tracing::warn!(resource = self.resource.name, error = %e, "report not sent"),
        }
    }
}
