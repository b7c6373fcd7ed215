//! `[[register]]`: an instance this agent keeps in the service registry.
//! Every `interval_s` the agent runs the instance's check (a command, or a
//! GET of a URL) and, while it passes, registers again, which renews the
//! lease; when the check fails it stops, and the lease runs out after
//! `ttl_s`. On SIGTERM or SIGINT the agent deregisters before it exits.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;
use serde_json::json;

use crate::domain::registry::{RegistrationBody, check_instance_id, check_service};

/// One instance to register.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Register {
    /// Vane's base URL.
    pub server: String,
    /// A token whose grant covers the service with role `registrar`.
    #[serde(default)]
    pub token: Option<String>,
    /// The service.
    pub service: String,
    /// The instance's id; `<hostname>-<port>` when unset.
    #[serde(default)]
    pub instance_id: Option<String>,
    /// Where clients reach it.
    pub address: String,
    /// Its port.
    pub port: u16,
    /// Strings for templates.
    #[serde(default)]
    pub meta: BTreeMap<String, String>,
    /// A command that exits 0 while the instance is healthy (`sh -c`).
    #[serde(default)]
    pub check: Option<String>,
    /// A URL that answers 2xx while the instance is healthy.
    #[serde(default)]
    pub http_check: Option<String>,
    /// Seconds between checks (and renewals).
    #[serde(default = "default_interval")]
    pub interval_s: u64,
    /// The lease: how long after the last renewal the instance stays listed.
    #[serde(default = "default_ttl")]
    pub ttl_s: u32,
}

fn default_interval() -> u64 {
    5
}

fn default_ttl() -> u32 {
    15
}

impl Register {
    /// The instance id.
    pub fn id(&self) -> String {
        self.instance_id
            .clone()
            .unwrap_or_else(|| format!("{}-{}", super::text::hostname(), self.port))
    }

    /// Why the entry cannot work, if it cannot.
    pub fn problem(&self) -> Option<String> {
        if !(self.server.starts_with("http://") || self.server.starts_with("https://")) {
            return Some("`server` must be an http:// or https:// URL".into());
        }
        if let Err(e) = check_service(&self.service).and_then(|()| check_instance_id(&self.id())) {
            return Some(e.to_string());
        }
        if self.check.is_some() && self.http_check.is_some() {
            return Some("give `check` or `http_check`, not both".into());
        }
        if let Some(url) = &self.http_check
            && !(url.starts_with("http://") || url.starts_with("https://"))
        {
            return Some("`http_check` must be an http:// or https:// URL".into());
        }
        if self.token.as_deref().is_some_and(str::is_empty) {
            return Some("`token` is empty".into());
        }
        let body = RegistrationBody {
            address: self.address.clone(),
            port: i64::from(self.port),
            meta: self.meta.clone(),
            ttl_s: i64::from(self.ttl_s),
        };
        if let Err(e) = body.check() {
            return Some(e.to_string());
        }
        if self.interval_s == 0 || u64::from(self.ttl_s) <= self.interval_s {
            return Some(format!(
                "`ttl_s` ({}) must be longer than `interval_s` ({}), or one missed renewal drops the instance",
                self.ttl_s, self.interval_s
            ));
        }
        None
    }

    fn url(&self) -> String {
        format!(
            "{}/api/v1/services/{}/instances/{}",
            self.server.trim_end_matches('/'),
            self.service,
            self.id()
        )
    }

    /// What `--dry-run` says.
    pub fn describe(&self) -> String {
        let check = match (&self.check, &self.http_check) {
            (Some(c), _) => format!("while `{c}` exits 0"),
            (_, Some(u)) => format!("while {u} answers 2xx"),
            _ => "with no check (unconditionally)".into(),
        };
        format!(
            "# vane watch --dry-run: would register {}:{} as {} of service {} at {} every {} s (ttl {} s), {check}",
            self.address,
            self.port,
            self.id(),
            self.service,
            self.server,
            self.interval_s,
            self.ttl_s
        )
    }

    async fn healthy(&self, http: &reqwest::Client) -> bool {
        let limit = Duration::from_secs(self.interval_s);
        if let Some(command) = &self.check {
            let run = tokio::process::Command::new("sh")
                .args(["-c", command])
                .kill_on_drop(true)
                .status();
            return matches!(tokio::time::timeout(limit, run).await, Ok(Ok(status)) if status.success());
        }
        if let Some(url) = &self.http_check {
            let got = tokio::time::timeout(limit, http.get(url).send()).await;
            return matches!(got, Ok(Ok(response)) if response.status().is_success());
        }
        true
    }

    /// Checks and renews, every `interval_s`, until the task is dropped. A
    /// first registration Vane refuses (a bad field, a wrong token, a grant
    /// that does not cover the service) is sent to `refused` and ends it, as
    /// a refused subscription ends a resource; later refusals are logged and
    /// tried again (a grant may be fixed meanwhile).
    pub async fn keep(self, http: reqwest::Client, refused: tokio::sync::mpsc::UnboundedSender<String>) {
        let mut registered = false;
        let body = json!({"address": self.address, "port": self.port, "meta": self.meta, "ttl_s": self.ttl_s});
        let mut every = tokio::time::interval(Duration::from_secs(self.interval_s));
        let mut was_healthy = None;
        loop {
            every.tick().await;
            let healthy = self.healthy(&http).await;
            if was_healthy != Some(healthy) {
                tracing::info!(service = self.service, instance = self.id(), healthy, "health check");
                was_healthy = Some(healthy);
            }
            if !healthy {
                continue;
            }
            let mut request = http.put(self.url()).json(&body);
            if let Some(token) = &self.token {
                request = request.bearer_auth(token);
            }
            match request.send().await {
                Ok(r) if r.status().is_success() => registered = true,
                Ok(r) => {
                    let status = r.status();
                    let text = r.text().await.unwrap_or_default();
                    if !registered && status.is_client_error() {
                        let _ = refused.send(format!(
                            "register {} of {}: vane refused it: {status} {text}",
                            self.id(),
                            self.service
                        ));
                        return;
                    }
                    tracing::error!(service = self.service, %status, text, "registration refused");
                }
                Err(e) => tracing::warn!(service = self.service, error = %e, "registration not sent"),
            }
        }
    }

    /// Deregisters at once (on the agent's way out).
    pub async fn leave(&self, http: &reqwest::Client) {
        let mut request = http.delete(self.url());
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        match tokio::time::timeout(Duration::from_secs(3), request.send()).await {
            Ok(Ok(_)) => tracing::info!(service = self.service, instance = self.id(), "deregistered"),
            _ => tracing::warn!(service = self.service, "not deregistered; the lease will run out"),
        }
    }
}
