//! The push actors' messages, apart from the actors, so the registry and
//! its connections each depend on this vocabulary and not on each other.

use axum::extract::ws::Message;
use ractor::{ActorId, ActorRef, RpcReplyPort};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::domain::change::ChangeNotice;
use crate::names::ActorName;

/// How the registry is named in metrics and errors.
pub const NAME: ActorName = ActorName::PushRegistry;

/// What the PushRegistry handles.
pub enum PushMsg {
    /// Registers `conn` for `config_id`, replying once it is registered, so
    /// the caller can read the current revision only afterwards.
    Subscribe {
        /// The config followed.
        config_id: String,
        /// The Connection to tell.
        conn: ActorRef<ConnectionMsg>,
        /// Answered once registered.
        reply: RpcReplyPort<()>,
    },
    /// Stops telling `conn` of `config_id`.
    Unsubscribe {
        /// The config no longer followed.
        config_id: String,
        /// The Connection that stops following it.
        conn: ActorId,
    },
    /// Fans a notice out to the config's subscribers.
    Notify(ChangeNotice),
    /// How many sockets follow a config.
    Count {
        /// The config asked about.
        config_id: String,
        /// Where the count goes.
        reply: RpcReplyPort<usize>,
    },
    /// Reply with the registry's counters.
    Stats(RpcReplyPort<PushStats>),
    /// Closes every socket with `code` (1001: the server is going away, so
    /// clients reconnect elsewhere).
    CloseAll(u16),
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
/// The registry's counters, as the stats route shows them.
pub struct PushStats {
    /// Sockets following at least one config.
    pub connections: usize,
    /// Pairs of (socket, config) followed.
    pub subscriptions: usize,
    /// Notices handed to Connections since start.
    pub notices_sent: u64,
}

/// What a Connection handles.
pub enum ConnectionMsg {
    /// A config it follows changed.
    Notice(ChangeNotice),
    /// A text frame from the client.
    Text(String),
    /// Any other frame from the client (pong, ping, binary): it is alive.
    Heard,
    /// The client closed the socket or it failed.
    PeerGone,
    /// The writer sent everything queued: send what waited meanwhile.
    WriterIdle,
    /// A write failed (or took too long): the client is gone or too slow.
    WriterFailed(String),
    /// Heartbeat: ping, and close if the client has been silent too long.
    Tick,
    /// Closes the socket with this code (1001 when the server is going away).
    Close(u16),
    /// The pong to the ping sent at this instant is due: close if nothing
    /// was heard since that ping. Each ping carries its own instant, since
    /// with a pong timeout longer than the ping interval several are out.
    PongDue(std::time::Instant),
    /// A native socket's time to subscribe has passed.
    SubscribeDue,
    /// The grace of the secret this config was followed with may have
    /// ended: close (1008) if it has.
    SecretDue(String),
    /// A followed registry service's members moved (or, first, are these).
    Service(std::sync::Arc<crate::domain::registry::Membership>),
}

/// What a native socket's client sends.
#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ClientMessage {
    /// A config (with its secret) or a registry service.
    Subscribe {
        #[serde(default)]
        config_id: Option<String>,
        #[serde(default)]
        secret: Option<String>,
        #[serde(default)]
        service: Option<String>,
        revision: Option<i64>,
    },
    /// Stops following a config or a service.
    Unsubscribe {
        #[serde(default)]
        config_id: Option<String>,
        #[serde(default)]
        service: Option<String>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
/// Which WebSocket route the client came in on.
pub enum Protocol {
    /// `GET /push/{id}`: one config, `{"update_time","config_id"}` frames.
    Compat,
    /// `GET /api/v1/subscribe`: many configs, typed JSON messages.
    Native,
}

/// A notice as the client's protocol writes it.
pub fn frame(protocol: Protocol, notice: &ChangeNotice) -> Message {
    let body = match protocol {
        Protocol::Compat => json!({"update_time": notice.update_time, "config_id": notice.config_id}),
        Protocol::Native => json!({
            "type": "update",
            "config_id": notice.config_id,
            "revision": notice.revision,
            "update_time": notice.update_time,
        }),
    };
    Message::Text(body.to_string().into())
}
