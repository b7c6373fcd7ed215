//! `[ofrep]`: the OpenFeature Remote Evaluation Protocol routes.

use serde::{Deserialize, Serialize};

use super::{SettingsError, invalid};
use crate::domain::ofrep::Pattern;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
/// `[ofrep]`.
pub struct Ofrep {
    /// Tokens of client-side providers, each naming the configs it may read.
    pub client_tokens: Vec<ClientToken>,
    /// OFREP single evaluation refuses a request with neither a config's
    /// secret nor a client token. Only that route: the native evaluate and
    /// the original routes take none (`server.original_routes` turns the
    /// latter off).
    pub require_credentials: bool,
    /// The most configs one bulk evaluation answers.
    pub max_bulk_flags: usize,
    /// The scheme and host clients reach Vane at (`https://flags.example.com`),
    /// for the event stream's address; empty: taken from the request.
    pub public_url: String,
    /// Seconds a backgrounded client keeps its event stream open.
    pub inactivity_delay_s: u64,
    /// How stale the list of config ids bulk evaluation reads may be.
    pub catalog_max_age_ms: u64,
}

impl Default for Ofrep {
    fn default() -> Self {
        Self {
            client_tokens: Vec::new(),
            require_credentials: false,
            max_bulk_flags: 200,
            public_url: String::new(),
            inactivity_delay_s: 120,
            catalog_max_age_ms: 1000,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
/// One client token: `{ name = "web", token = "...", configs = ["app-*"] }`.
pub struct ClientToken {
    /// Who holds it, for logs.
    pub name: String,
    /// The bearer value, at least 16 characters.
    pub token: String,
    /// Config ids or patterns with `*` (any run of characters).
    pub configs: Vec<String>,
}

impl Ofrep {
    /// Checks every value; the first one out names its key.
    pub fn validate(&self) -> Result<(), SettingsError> {
        let mut names = std::collections::HashSet::new();
        for token in &self.client_tokens {
            if token.name.is_empty() || !names.insert(token.name.as_str()) {
                return invalid("ofrep.client_tokens", "every token needs a name of its own");
            }
            if token.token.len() < 16 {
                return invalid("ofrep.client_tokens", "every token must be at least 16 characters");
            }
            if token.configs.is_empty() {
                return invalid("ofrep.client_tokens", "every token must name the configs it may read");
            }
            if let Some(bad) = token.configs.iter().find_map(|p| Pattern::new(p).err()) {
                return Err(SettingsError::Invalid {
                    key: "ofrep.client_tokens",
                    reason: bad.to_string(),
                });
            }
        }
        if !(1..=10_000).contains(&self.max_bulk_flags) {
            return invalid("ofrep.max_bulk_flags", "must be between 1 and 10000");
        }
        if !(self.public_url.is_empty()
            || self.public_url.starts_with("http://")
            || self.public_url.starts_with("https://"))
        {
            return invalid("ofrep.public_url", "must start with http:// or https://, or be empty");
        }
        if !(10..=60_000).contains(&self.catalog_max_age_ms) {
            return invalid("ofrep.catalog_max_age_ms", "must be between 10 and 60000");
        }
        Ok(())
    }
}
