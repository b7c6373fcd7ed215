//! `[server]` and `[push]`: what a client's connection may hold. Each limit
//! bounds what one client can take from the others; a hit is counted in
//! `/metrics` (`vane_connections_closed_total`, `vane_push_dropped_clients_total`).

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use super::{SettingsError, invalid};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
/// `[server]`.
pub struct Server {
    /// Address and port to listen on.
    pub listen: SocketAddr,
    /// Largest request body accepted, in bytes.
    pub max_body_bytes: usize,
    /// How long an actor call may take before the caller gets 503.
    pub call_timeout_ms: u64,
    /// On SIGTERM/SIGINT, how long requests in flight may take to finish.
    pub shutdown_grace_ms: u64,
    /// A header a trusted proxy in front sets to the client's address (e.g.
    /// `X-Forwarded-For`); empty = the peer's address. Read only from a peer
    /// in `trusted_proxies`, since clients can send it too.
    pub client_address_header: String,
    /// The proxies whose `client_address_header` (and `X-Forwarded-Proto` /
    /// `X-Forwarded-Host`) is believed: addresses or CIDR ranges, such as
    /// `10.0.0.0/8` or `::1`. Through them, the client is the right-most
    /// address in the header that is not one of them. Empty: none.
    #[serde(deserialize_with = "super::string_or_list")]
    pub trusted_proxies: Vec<String>,
    /// Whether the original service's routes (`/config`, `/push`, `/update`,
    /// `/report`, `/test`) are served; off, they answer 410 saying so.
    pub original_routes: bool,
    /// A request's head must arrive whole within this of its first byte (or
    /// of the connection opening); a connection that trickles it is closed.
    pub header_timeout_ms: u64,
    /// A request's body must arrive whole within this of its head (408).
    pub body_timeout_ms: u64,
    /// A kept-alive connection with no request for this long is closed.
    pub idle_timeout_ms: u64,
    /// Open connections (WebSockets included). A connection past it waits
    /// up to 100 ms for one to close, then gets 503 and is closed; the
    /// connections already open are served as before.
    pub max_connections: usize,
    /// Where `/metrics`, `/api/v1/stats`, `/dashboard` and the OpenAPI
    /// document are served without a token, e.g. `127.0.0.1:9090`; empty
    /// keeps them on `listen`, behind an admin token.
    pub admin_listen: String,
}

impl Default for Server {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            max_body_bytes: 1024 * 1024,
            call_timeout_ms: 5000,
            shutdown_grace_ms: 10_000,
            client_address_header: String::new(),
            trusted_proxies: Vec::new(),
            original_routes: true,
            header_timeout_ms: 10_000,
            body_timeout_ms: 30_000,
            idle_timeout_ms: 60_000,
            max_connections: 16_384,
            admin_listen: String::new(),
        }
    }
}

impl Server {
    /// `header_timeout_ms`.
    pub fn header_timeout(&self) -> Duration {
        Duration::from_millis(self.header_timeout_ms)
    }

    /// `body_timeout_ms`.
    pub fn body_timeout(&self) -> Duration {
        Duration::from_millis(self.body_timeout_ms)
    }

    /// `idle_timeout_ms`.
    pub fn idle_timeout(&self) -> Duration {
        Duration::from_millis(self.idle_timeout_ms)
    }

    /// `admin_listen` as an address, if set.
    pub fn admin_address(&self) -> Result<Option<SocketAddr>, SettingsError> {
        if self.admin_listen.is_empty() {
            return Ok(None);
        }
        self.admin_listen.parse().map(Some).map_err(|_| SettingsError::Invalid {
            key: "server.admin_listen",
            reason: "must be an address and port such as 127.0.0.1:9090 (or empty)".into(),
        })
    }

    /// `trusted_proxies` as ranges (a bare address is a range of one), or
    /// the first entry that is neither, named.
    pub fn trusted_proxy_ranges(&self) -> Result<Vec<IpNet>, SettingsError> {
        self.trusted_proxies
            .iter()
            .map(|entry| {
                let entry = entry.trim();
                entry
                    .parse::<IpNet>()
                    .or_else(|_| entry.parse::<IpAddr>().map(IpNet::from))
                    .map(|net| net.trunc())
                    .map_err(|_| SettingsError::Invalid {
                        key: "server.trusted_proxies",
                        reason: format!(
                            "`{entry}` is neither an address nor a CIDR range (such as 10.0.0.0/8 or fd00::/8)"
                        ),
                    })
            })
            .collect()
    }

    /// Refuses values that cannot work, naming the key.
    pub fn validate(&self) -> Result<(), SettingsError> {
        if self.call_timeout_ms == 0 {
            return invalid("server.call_timeout_ms", "must be at least 1");
        }
        for (key, value) in [
            ("server.header_timeout_ms", self.header_timeout_ms),
            ("server.body_timeout_ms", self.body_timeout_ms),
            ("server.idle_timeout_ms", self.idle_timeout_ms),
        ] {
            if !(100..=3_600_000).contains(&value) {
                return invalid(key, "must be between 100 and 3600000");
            }
        }
        if self.max_connections == 0 {
            return invalid("server.max_connections", "must be at least 1");
        }
        self.admin_address()?;
        self.trusted_proxy_ranges()?;
        Ok(())
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
/// `[push]`.
pub struct Push {
    /// The `Secret` of the original `POST /update/{id}`.
    pub update_secret: String,
    /// How often each socket is pinged.
    pub ping_interval_ms: u64,
    /// How long after a ping a silent socket is kept.
    pub pong_timeout_ms: u64,
    /// A client whose socket accepts nothing for this long is disconnected.
    pub write_timeout_ms: u64,
    /// Configs one native socket may subscribe to.
    pub max_subscriptions: usize,
    /// A native socket that follows no config this long after opening is
    /// closed (code 1008): it costs memory and follows nothing.
    pub subscribe_deadline_ms: u64,
    /// Sockets one client address may hold open. Apps behind a carrier's
    /// NAT share an address, so this is generous; it stops one host from
    /// taking every socket.
    pub max_sockets_per_address: usize,
}

impl Default for Push {
    fn default() -> Self {
        Self {
            update_secret: String::new(),
            ping_interval_ms: 30_000,
            pong_timeout_ms: 10_000,
            write_timeout_ms: 10_000,
            max_subscriptions: 1024,
            subscribe_deadline_ms: 10_000,
            max_sockets_per_address: 1024,
        }
    }
}

impl Push {
    /// `ping_interval_ms`.
    pub fn ping_interval(&self) -> Duration {
        Duration::from_millis(self.ping_interval_ms)
    }

    /// `pong_timeout_ms`.
    pub fn pong_timeout(&self) -> Duration {
        Duration::from_millis(self.pong_timeout_ms)
    }

    /// `write_timeout_ms`.
    pub fn write_timeout(&self) -> Duration {
        Duration::from_millis(self.write_timeout_ms)
    }

    /// `subscribe_deadline_ms`.
    pub fn subscribe_deadline(&self) -> Duration {
        Duration::from_millis(self.subscribe_deadline_ms)
    }

    /// Refuses values that cannot work, naming the key.
    pub fn validate(&self) -> Result<(), SettingsError> {
        if self.write_timeout_ms == 0 {
            return invalid("push.write_timeout_ms", "must be at least 1");
        }
        if self.max_subscriptions == 0 {
            return invalid("push.max_subscriptions", "must be at least 1");
        }
        if self.ping_interval_ms == 0 || self.pong_timeout_ms == 0 {
            return invalid(
                "push.ping_interval_ms",
                "ping interval and pong timeout must be positive",
            );
        }
        if self.subscribe_deadline_ms == 0 {
            return invalid("push.subscribe_deadline_ms", "must be at least 1");
        }
        if self.max_sockets_per_address == 0 {
            return invalid("push.max_sockets_per_address", "must be at least 1");
        }
        Ok(())
    }
}
