//! What a resource follows of the service registry: the services its
//! template read at its last render, each one's instances and revision as
//! last heard, and the calls that read them (`GET /api/v1/services/...`,
//! with the resource's token) when a render asks for one not yet heard of.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

use super::errors::{FetchError, PassError};
use super::render::{Services, Wanted};

/// The registry as one resource knows it.
#[derive(Debug, Clone, Default)]
pub struct Followed {
    /// What the template sees.
    pub data: Services,
    /// Each service's revision as last heard.
    pub revisions: BTreeMap<String, i64>,
    /// The services the last render read.
    pub read: BTreeSet<String>,
    /// Whether the last render listed every service (`services()`): no push
    /// says when one appears, so the names are read again at every render
    /// and a render comes every `NAMES_EVERY`.
    pub read_names: bool,
}

/// How often a template that lists every service is rendered again.
pub const NAMES_EVERY: std::time::Duration = std::time::Duration::from_secs(10);

/// A failed read of the registry as a pass's failure: a refusal (the token
/// or its grant) waits for the operator, anything else is tried again.
pub fn pass_error(e: FetchError) -> PassError {
    match &e {
        FetchError::Refused { status, .. } if status.as_u16() == 401 || status.as_u16() == 403 => PassError::Version {
            code_id: None,
            message: e.to_string(),
            report: None,
        },
        _ => PassError::Transient(e.to_string()),
    }
}

/// Whether Vane takes `token` (checked at start, so a wrong one stops the
/// agent as a refused subscription does); unreachable is not a refusal.
pub async fn token_holds(http: &reqwest::Client, server: &str, token: Option<&str>) -> Result<(), String> {
    let Some(token) = token else { return Ok(()) };
    match http.get(format!("{server}/api/v1/me")).bearer_auth(token).send().await {
        Ok(r) if r.status().as_u16() == 401 => Err(format!(
            "vane refused the token: {}",
            r.text().await.unwrap_or_default()
        )),
        _ => Ok(()),
    }
}

impl Followed {
    /// Takes a `{"type":"service"}` message; whether the members moved.
    pub fn take(&mut self, message: &Value) -> bool {
        let Some(service) = message["service"].as_str() else {
            return false;
        };
        let revision = message["revision"].as_i64().unwrap_or_default();
        let moved = self.revisions.get(service) != Some(&revision);
        self.revisions.insert(service.to_owned(), revision);
        self.data
            .instances
            .insert(service.to_owned(), message["instances"].clone());
        moved
    }

    /// Whether every service `wanted` read (and the names, if listed) was
    /// known to the render.
    pub fn has_all(&self, wanted: &Wanted) -> bool {
        wanted.services.iter().all(|s| self.data.instances.contains_key(s))
            && !(wanted.names && self.data.names.is_none())
    }

    /// The subscribe message for `service`, with the revision in hand.
    pub fn subscribe(&self, service: &str) -> Message {
        let revision = self.revisions.get(service);
        Message::text(json!({"type": "subscribe", "service": service, "revision": revision}).to_string())
    }
}

/// One GET with the resource's token; the JSON answered.
async fn get(http: &reqwest::Client, url: String, token: Option<&str>, what: &str) -> Result<Value, FetchError> {
    let mut request = http.get(url);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let failed = |error| FetchError::Http {
        config_id: what.to_owned(),
        error,
    };
    let response = request.send().await.map_err(failed)?;
    let status = response.status();
    if !status.is_success() {
        return Err(FetchError::Refused {
            config_id: what.to_owned(),
            status,
            text: response.text().await.unwrap_or_default(),
        });
    }
    response.json().await.map_err(failed)
}

/// Reads what a render asked for and `followed` lacked.
pub async fn read_missing(
    http: &reqwest::Client,
    server: &str,
    token: Option<&str>,
    wanted: &Wanted,
    followed: &mut Followed,
) -> Result<(), FetchError> {
    let unheard: Vec<&String> = wanted
        .services
        .iter()
        .filter(|s| !followed.data.instances.contains_key(*s))
        .collect();
    for service in unheard {
        fetch_service(http, server, token, service, followed).await?;
    }
    if wanted.names && followed.data.names.is_none() {
        fetch_names(http, server, token, followed).await?;
    }
    Ok(())
}

/// Reads `service` into `followed`.
async fn fetch_service(
    http: &reqwest::Client,
    server: &str,
    token: Option<&str>,
    service: &str,
    followed: &mut Followed,
) -> Result<(), FetchError> {
    let url = format!("{server}/api/v1/services/{service}");
    let members = get(http, url, token, &format!("service {service}")).await?;
    followed.take(&members);
    Ok(())
}

/// Reads every service's name into `followed`.
async fn fetch_names(
    http: &reqwest::Client,
    server: &str,
    token: Option<&str>,
    followed: &mut Followed,
) -> Result<(), FetchError> {
    let listed = get(http, format!("{server}/api/v1/services"), token, "the services").await?;
    let names = listed
        .as_array()
        .map(|all| {
            all.iter()
                .filter_map(|s| s["service"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    followed.data.names = Some(names);
    Ok(())
}
