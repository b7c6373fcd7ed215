//! The server as the directory commands reach it: the native HTTP API with
//! a bearer token, each refusal kept with its status, code and message.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::domain::Lang;
use crate::domain::access::Grant;

/// Why a call did not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The server could not be reached, or its answer read.
    #[error("{0}")]
    Transport(String),
    /// The server said no.
    #[error("{status}{}{code}: {message}", if code.is_empty() { "" } else { " " })]
    Refused {
        /// The HTTP status.
        status: u16,
        /// The error code (`docs/API.md`, "Error codes").
        code: String,
        /// Its message.
        message: String,
        /// A test gate's failing results, when that was the reason.
        results: Option<Value>,
    },
}

/// A config as the server shows it.
#[derive(Debug, Clone, Deserialize)]
pub struct RemoteConfig {
    /// Its id.
    pub id: String,
    /// For people.
    #[serde(default)]
    pub description: String,
    /// `active` or `inactive`.
    pub status: String,
    /// Moves with every change clients see.
    pub revision: i64,
    /// The stable version.
    pub release: Option<Pointer>,
    /// The gray version and its share.
    pub gray: Option<Pointer>,
    /// Approvals a change needs.
    #[serde(default)]
    pub approvals_required: u32,
}

/// A release or gray pointer.
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct Pointer {
    /// The version.
    pub code_id: String,
    /// With gray: its share of devices.
    #[serde(default)]
    pub percentage: Option<u8>,
}

/// A version as the server shows it.
#[derive(Debug, Clone, Deserialize)]
pub struct RemoteVersion {
    /// Its id.
    pub code_id: String,
    /// Its language.
    pub lang: Lang,
    /// Its source.
    pub source: String,
    /// Its rules, in the upload shape.
    #[serde(default)]
    pub rules: Vec<Value>,
    /// Its parameter schema, in the upload shape.
    #[serde(default)]
    pub params: Vec<Value>,
}

/// A stored test case.
#[derive(Debug, Clone, Deserialize)]
pub struct RemoteTest {
    /// Its id.
    pub test_id: String,
    /// For people.
    pub name: String,
    /// The metadata it runs with.
    pub meta: Value,
    /// The params it runs with.
    pub params: Value,
    /// What it must give.
    pub expected: Value,
}

/// An open change request, as far as the commands read it.
#[derive(Debug, Clone, Deserialize)]
pub struct RemoteChange {
    /// Its id.
    pub id: String,
    /// What it would do (`{"kind", ...}`).
    pub proposal: Value,
    /// Who opened it.
    #[serde(default)]
    pub author: String,
}

/// Who the token is.
#[derive(Debug, Clone, Deserialize)]
pub struct Me {
    /// As the release log names it.
    pub who: String,
    /// What it may do.
    pub grants: Vec<Grant>,
}

/// A connection to one server.
#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    base: String,
    token: Option<String>,
}

impl Client {
    /// A client of `server` (`http://host:port`) using `token`.
    pub fn new(server: &str, token: Option<String>) -> Result<Self, ClientError> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()
            .map_err(|e| ClientError::Transport(chain(&e)))?;
        if reqwest::Url::parse(server).is_err() {
            return Err(ClientError::Transport(format!(
                "the server `{server}` is not a URL (http://host:port)"
            )));
        }
        Ok(Self {
            http,
            base: server.trim_end_matches('/').to_owned(),
            token: token.filter(|t| !t.is_empty()),
        })
    }

    /// The server's address.
    pub fn server(&self) -> &str {
        &self.base
    }

    /// Sends a call; a 2xx answer's status and JSON body (null when empty).
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<(StatusCode, Value), ClientError> {
        let mut request = self.http.request(method.clone(), format!("{}{path}", self.base));
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        let transport = |e: reqwest::Error| ClientError::Transport(format!("{method} {path}: {}", chain(&e)));
        let response = request.send().await.map_err(transport)?;
        let status = response.status();
        let bytes = response.bytes().await.map_err(transport)?;
        let json: Value = match bytes.is_empty() {
            true => Value::Null,
            false => {
                serde_json::from_slice(&bytes).unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into()))
            }
        };
        if status.is_success() {
            return Ok((status, json));
        }
        // The native envelope, or the original routes' (the playground's).
        let error = &json["error"];
        let message = error["message"].as_str().or(json["message"].as_str());
        Err(ClientError::Refused {
            status: status.as_u16(),
            code: error["code"].as_str().unwrap_or("").to_owned(),
            message: message.map_or_else(|| json.to_string(), str::to_owned),
            results: error.get("results").cloned(),
        })
    }

    async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<Option<T>, ClientError> {
        match self.call(Method::GET, path, None).await {
            Ok((_, json)) => serde_json::from_value(json)
                .map(Some)
                .map_err(|e| ClientError::Transport(format!("GET {path}: unexpected answer: {e}"))),
            Err(ClientError::Refused { status: 404, .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Who the token is and what it may do.
    pub async fn me(&self) -> Result<Me, ClientError> {
        self.get("/api/v1/me").await?.ok_or_else(|| missing("/api/v1/me"))
    }

    /// Every config the token may read.
    pub async fn configs(&self) -> Result<Vec<RemoteConfig>, ClientError> {
        self.get("/api/v1/configs")
            .await?
            .ok_or_else(|| missing("/api/v1/configs"))
    }

    /// One config, if it exists.
    pub async fn config(&self, id: &str) -> Result<Option<RemoteConfig>, ClientError> {
        self.get(&format!("/api/v1/configs/{id}")).await
    }

    /// One version of a config, if it exists.
    pub async fn version(&self, id: &str, code_id: &str) -> Result<Option<RemoteVersion>, ClientError> {
        self.get(&format!("/api/v1/configs/{id}/versions/{code_id}")).await
    }

    /// A version's stored tests.
    pub async fn tests(&self, id: &str, code_id: &str) -> Result<Vec<RemoteTest>, ClientError> {
        Ok(self
            .get(&format!("/api/v1/configs/{id}/versions/{code_id}/tests"))
            .await?
            .unwrap_or_default())
    }

    /// The config's open change requests.
    pub async fn open_changes(&self, id: &str) -> Result<Vec<RemoteChange>, ClientError> {
        Ok(self
            .get(&format!("/api/v1/changes?config_id={id}&state=open"))
            .await?
            .unwrap_or_default())
    }
}

/// An error with its causes ("connection refused" is a cause of "error
/// sending request").
fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        text = format!("{text}: {cause}");
        source = cause.source();
    }
    text
}

fn missing(path: &str) -> ClientError {
    ClientError::Transport(format!("GET {path}: not found; is this a Vane server?"))
}
