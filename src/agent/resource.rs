//! One resource's loop: subscribe to its configs with the revisions in
//! force, and on each notice (debounced) fetch, render and put the file in
//! place. A pass that failed for a reason that may pass (Vane unreachable,
//! a full pool, a failed reload) is retried with backoff until it succeeds;
//! one that failed on the version (check, render) waits for the next
//! notice. Reconnects with backoff and jitter, reset once a subscription is
//! taken; while Vane is unreachable the file on disk is left as it is.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_tungstenite::connect_async;
use tokio_tungstenite::tungstenite::Message;

use super::Counters;
use super::config::{Fetch, Resource};
use super::errors::{FetchError, PassError, SubscribeError, WatchError};
use super::exec::Rendered;
use super::files::{Applied, ApplyError, Target};
use super::render::{Inputs, render};
use super::report::report as tell_vane;
use super::services::{Followed, NAMES_EVERY, read_missing, token_holds};
use super::text::{chain, hostname};
use crate::domain::health::ReportKind;

const FIRST_BACKOFF: Duration = Duration::from_millis(200);
const MAX_BACKOFF: Duration = Duration::from_secs(30);
const HTTP_LIMIT: Duration = Duration::from_secs(10);

#[derive(Deserialize)]
struct FetchedResult {
    result: Value,
    code_id: String,
    revision: i64,
}

/// How a session ended.
struct Ended {
    /// Vane took every subscription of the session.
    subscribed: bool,
    reason: String,
    refused: Option<(String, String)>,
}

/// Follows one resource: subscribes, fetches, renders, writes and reloads.
pub struct Watcher {
    resource: Resource,
    http: reqwest::Client,
    counters: Arc<Counters>,
    /// The revision of each config whose output is in force.
    applied: HashMap<String, i64>,
    /// What this run has reported already: once per version and kind.
    reported: HashSet<(String, ReportKind)>,
    /// When to try a failed pass again, and the wait after that.
    retry: Option<(Instant, Duration)>,
    rendered: Vec<mpsc::UnboundedSender<Rendered>>,
    /// The registry services the template reads, as last heard.
    followed: std::sync::Mutex<Followed>,
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
            applied: HashMap::new(),
            reported: HashSet::new(),
            retry: None,
            rendered: Vec::new(),
            followed: Default::default(),
        }
    }

    /// Tells `to` (too) of every pass that put the file in force.
    pub fn telling(mut self, to: mpsc::UnboundedSender<Rendered>) -> Self {
        self.rendered.push(to);
        self
    }

    /// Runs until the task is dropped, or Vane refuses its first subscription.
    pub async fn watch(mut self) -> Result<(), WatchError> {
        let (resource, server) = (self.resource.name.clone(), self.resource.server.clone());
        if let Err(message) = token_holds(&self.http, &server, self.resource.token.as_deref()).await {
            return Err(WatchError::Refused {
                resource,
                config_id: "its token".into(),
                message,
            });
        }
        let mut backoff = FIRST_BACKOFF;
        let mut ever_subscribed = false;
        loop {
            let ended = self.session().await;
            if ended.subscribed {
                ever_subscribed = true;
                backoff = FIRST_BACKOFF;
            }
            match ended.refused {
                Some((config_id, message)) if !ever_subscribed => {
                    return Err(WatchError::Refused {
                        resource: self.resource.name.clone(),
                        config_id,
                        message,
                    });
                }
                Some((config_id, message)) => {
                    tracing::error!(
                        resource = self.resource.name,
                        config_id,
                        message,
                        ?backoff,
                        "vane refused the subscription; fix watch.toml and send SIGHUP"
                    )
                }
                None => tracing::warn!(
                    resource = self.resource.name,
                    reason = ended.reason,
                    ?backoff,
                    "vane unreachable; keeping the current file"
                ),
            }
            self.counters.add(&self.counters.reconnects);
            let jitter = Duration::from_millis(rand::random::<u64>() % (backoff.as_millis() as u64 / 2 + 1));
            tokio::time::sleep(backoff + jitter).await;
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }

    /// One WebSocket session: subscribes to each config with the revision in
    /// force (so Vane says at once if there is something newer), renders on
    /// notices after the debounce window, and retries a failed pass when due.
    async fn session(&mut self) -> Ended {
        let mut ended = Ended {
            subscribed: false,
            reason: String::new(),
            refused: None,
        };
        let mut socket = match self.subscribe().await {
            Ok(socket) => socket,
            Err(e) => {
                ended.reason = e.to_string();
                return ended;
            }
        };
        // With no config to be told of, the first render is now: it learns
        // which services the template reads.
        let mut render_at = self.resource.fetches().is_empty().then(Instant::now);
        let mut waiting: HashSet<String> = self.resource.fetches().iter().map(|f| f.config_id.to_owned()).collect();
        let mut following = self.followed().read.clone();
        loop {
            let due = [render_at, self.retry.map(|(at, _)| at)].into_iter().flatten().min();
            let frame = tokio::select! {
                frame = socket.next() => frame,
                () = sleep_until(due) => {
                    render_at = None;
                    self.pass_and_report().await;
                    if self.followed().read_names {
                        render_at = Some(Instant::now() + NAMES_EVERY);
                    }
                    // A render may read services it did not before.
                    let followed = self.followed().clone();
                    for service in followed.read.difference(&following) {
                        if let Err(e) = socket.send(followed.subscribe(service)).await {
                            ended.reason = chain(&e);
                            return ended;
                        }
                    }
                    following = followed.read;
                    continue;
                }
            };
            let reason = match frame {
                None => "connection closed".to_owned(),
                Some(Err(e)) => chain(&e),
                Some(Ok(Message::Text(text))) => {
                    let message: Value = match serde_json::from_str(&text) {
                        Ok(message) => message,
                        Err(e) => {
                            ended.reason = format!("unreadable message from vane: {e}");
                            return ended;
                        }
                    };
                    match message["type"].as_str() {
                        Some("subscribed") => {
                            waiting.remove(message["config_id"].as_str().unwrap_or_default());
                            ended.subscribed = waiting.is_empty();
                        }
                        // Notices within the window become one render.
                        Some("update") => {
                            render_at.get_or_insert(Instant::now() + self.resource.debounce());
                        }
                        Some("service") if self.followed().take(&message) => {
                            render_at.get_or_insert(Instant::now() + self.resource.debounce());
                        }
                        Some("error") => {
                            let config_id = message["config_id"].as_str().or(message["service"].as_str());
                            let config_id = config_id.unwrap_or_default().to_owned();
                            let text = message["message"].as_str().unwrap_or("no reason given").to_owned();
                            ended.refused = Some((config_id, text));
                        }
                        _ => {}
                    }
                    if ended.refused.is_none() {
                        continue;
                    }
                    "vane refused a subscription".to_owned()
                }
                Some(Ok(_)) => continue,
            };
            ended.reason = reason;
            return ended;
        }
    }

    async fn subscribe(
        &self,
    ) -> Result<
        tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>,
        SubscribeError,
    > {
        use tokio_tungstenite::tungstenite::client::IntoClientRequest;
        let url = format!("{}/api/v1/subscribe", self.resource.server.replacen("http", "ws", 1));
        let mut request = url.into_client_request()?;
        if let Some(token) = &self.resource.token
            && let Ok(value) = format!("Bearer {token}").parse()
        {
            request.headers_mut().insert("authorization", value);
        }
        let (mut socket, _) = connect_async(request).await?;
        for fetch in self.resource.fetches() {
            let subscribe = json!({"type": "subscribe", "config_id": fetch.config_id,
                                   "secret": fetch.secret, "revision": self.applied.get(fetch.config_id)});
            socket.send(Message::text(subscribe.to_string())).await?;
        }
        let followed = self.followed().clone();
        for service in &followed.read {
            socket.send(followed.subscribe(service)).await?;
        }
        tracing::info!(resource = self.resource.name, revisions = ?self.applied, "subscribing");
        Ok(socket)
    }

    /// Subscribes once, to learn whether Vane takes the secrets (the fetch
    /// route needs none, so `--once` would not notice a wrong one).
    pub async fn check_subscriptions(&self) -> Result<(), SubscribeError> {
        let checked = async {
            let mut socket = self.subscribe().await?;
            let mut waiting: HashSet<&str> = self.resource.fetches().iter().map(|f| f.config_id).collect();
            while !waiting.is_empty() {
                let frame = socket.next().await.ok_or(SubscribeError::Closed)?;
                let Message::Text(text) = frame? else {
                    continue;
                };
                let mut message: Value = serde_json::from_str(&text)?;
                let config_id = message["config_id"].as_str().unwrap_or_default();
                match message["type"].as_str() {
                    Some("subscribed") => {
                        waiting.remove(config_id);
                    }
                    Some("error") => {
                        return Err(SubscribeError::Refused {
                            config_id: config_id.to_owned(),
                            message: message["message"].take(),
                        });
                    }
                    _ => {}
                }
            }
            Ok(())
        };
        tokio::time::timeout(HTTP_LIMIT, checked)
            .await
            .unwrap_or(Err(SubscribeError::TimedOut))
    }

    /// Applies once, reporting a failure that is the version's fault; a
    /// transient failure is tried again after a backoff.
    pub async fn pass_and_report(&mut self) -> bool {
        let failure = match self.pass().await {
            Ok(()) => {
                self.retry = None;
                return true;
            }
            Err(failure) => failure,
        };
        self.counters.add(&self.counters.failures);
        match failure {
            PassError::Transient(e) => {
                let wait = self
                    .retry
                    .map_or(FIRST_BACKOFF, |(_, wait)| (wait * 2).min(MAX_BACKOFF));
                self.retry = Some((Instant::now() + wait, wait));
                tracing::warn!(resource = self.resource.name, error = e, retry_in = ?wait,
                               "file left as it was; trying again");
            }
            PassError::Version {
                code_id,
                message,
                report,
            } => {
                self.retry = None;
                tracing::error!(
                    resource = self.resource.name,
                    code_id,
                    error = message,
                    "file not updated"
                );
                if let (Some(kind), Some(code_id)) = (report, code_id)
                    && self.reported.insert((code_id.clone(), kind))
                {
                    tell_vane(&self.resource, &self.http, &self.counters, &code_id, kind, &message).await;
                }
            }
        }
        false
    }

    /// The file's content as it would be written now (`--dry-run`).
    pub async fn dry_run(&self) -> Result<String, PassError> {
        self.render().await.map(|(content, _)| content)
    }

    /// Fetches every config and renders the file's content. A render that
    /// reads a registry service not yet heard of renders it as empty; the
    /// service is then read and the render done again.
    async fn render(&self) -> Result<(String, Vec<(String, FetchedResult)>), PassError> {
        let mut fetched = Vec::new();
        for fetch in self.resource.fetches() {
            let evaluated = self
                .fetch(&fetch)
                .await
                .map_err(|e| PassError::Transient(e.to_string()))?;
            fetched.push((fetch.name.map(str::to_owned), fetch.config_id.to_owned(), evaluated));
        }
        let template_name = self.resource.template_name();
        let transient = super::services::pass_error;
        let (server, token) = (&self.resource.server, self.resource.token.as_deref());
        let stale_names = self.followed().read_names;
        if stale_names {
            self.followed().data.names = None;
        }
        for _ in 0..4 {
            let mut followed = self.followed().clone();
            let inputs = Inputs {
                name: &template_name,
                template: self.resource.template.as_deref().unwrap_or_default(),
                own: fetched
                    .iter()
                    .find(|(name, ..)| name.is_none())
                    .map(|(_, _, e)| &e.result),
                named: fetched
                    .iter()
                    .filter_map(|(name, _, e)| Some((name.as_deref()?, &e.result)))
                    .collect(),
                defaults: &self.resource.defaults,
                allowed_env: &self.resource.allowed_env,
                services: &followed.data,
            };
            // The template is the operator's: a name it uses that the output
            // lacks, or an unknown filter, is not evidence against the version.
            let (content, wanted) = render(&inputs).map_err(|error| PassError::Version {
                code_id: blamed(&fetched),
                message: error.to_string(),
                report: Some(ReportKind::Render),
            })?;
            if followed.has_all(&wanted) {
                let mut now = self.followed();
                (now.read, now.read_names) = (wanted.services, wanted.names);
                drop(now);
                let revisions = fetched.into_iter().map(|(_, id, e)| (id, e)).collect();
                return Ok((content, revisions));
            }
            read_missing(&self.http, server, token, &wanted, &mut followed)
                .await
                .map_err(transient)?;
            *self.followed() = followed;
        }
        Err(PassError::Transient(
            "the template reads services whose names keep changing".into(),
        ))
    }

    fn followed(&self) -> std::sync::MutexGuard<'_, Followed> {
        self.followed.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Fetch, render, put in place.
    pub async fn pass(&mut self) -> Result<(), PassError> {
        let (content, fetched) = self.render().await?;
        let target = Target {
            destination: &self.resource.destination,
            mode: self.resource.file_mode().unwrap_or(0o644),
            owner: self.resource.owner,
            backup: &self.resource.backup,
            keep_candidate: self.resource.keep_candidate,
            check: self.resource.check.as_deref(),
            reload: self.resource.reload.as_deref(),
            reload_timeout: self.resource.reload_timeout(),
        };
        let code_id = (fetched.len() == 1).then(|| fetched[0].1.code_id.clone());
        let revisions: HashMap<String, i64> = fetched.iter().map(|(id, e)| (id.clone(), e.revision)).collect();
        let (name, path) = (&self.resource.name, self.resource.destination.display());
        let changed = match target.apply(&content).await {
            Ok(Applied::Unchanged) => {
                tracing::info!(resource = name, ?revisions, "file already current");
                false
            }
            Ok(Applied::Replaced { reloaded }) => {
                self.counters.add(&self.counters.writes);
                let what = if reloaded {
                    "file replaced and reloaded"
                } else {
                    "file replaced"
                };
                tracing::info!(resource = name, ?revisions, %path, "{what}");
                true
            }
            Err(e @ ApplyError::Io { .. }) => return Err(PassError::Transient(e.to_string())),
            // Counted against the version only when one version made the file.
            Err(e @ ApplyError::Check(_)) => {
                return Err(PassError::Version {
                    code_id,
                    message: e.to_string(),
                    report: Some(ReportKind::Check),
                });
            }
            // A reload fails for the machine's reasons as often as the
            // file's: never blamed on the version, and tried again.
            Err(e @ ApplyError::Reload { .. }) => return Err(PassError::Transient(e.to_string())),
        };
        self.applied.extend(revisions);
        for to in &self.rendered {
            let _ = to.send(Rendered {
                resource: name.clone(),
                changed,
            });
        }
        Ok(())
    }

    async fn fetch(&self, fetch: &Fetch<'_>) -> Result<FetchedResult, FetchError> {
        let url = format!("{}/api/v1/configs/{}/evaluate", self.resource.server, fetch.config_id);
        let body = json!({"meta": self.resource.meta, "params": fetch.params});
        let failed = |error| FetchError::Http {
            config_id: fetch.config_id.to_owned(),
            error,
        };
        let response = self.http.post(url).json(&body).send().await.map_err(failed)?;
        let status = response.status();
        if !status.is_success() {
            let text = response.text().await.unwrap_or_default();
            return Err(FetchError::Refused {
                config_id: fetch.config_id.to_owned(),
                status,
                text,
            });
        }
        response.json().await.map_err(failed)
    }
}

/// The version a render failure is reported against: only when one config
/// made the file, since with several the fault could be any of them.
fn blamed(fetched: &[(Option<String>, String, FetchedResult)]) -> Option<String> {
    match fetched {
        [(_, _, only)] => Some(only.code_id.clone()),
        _ => None,
    }
}

async fn sleep_until(due: Option<Instant>) {
    match due {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
