//! The push actors' messages, apart from the actors, so the registry and
//! its connections each depend on this vocabulary and not on each other.

use ractor::{ActorId, ActorRef, RpcReplyPort};
use serde::Serialize;

use crate::actors::names::ActorName;
use crate::domain::change::ChangeNotice;

/// How the registry is named in metrics and errors.
pub const NAME: ActorName = ActorName::SubscriptionRegistry;

pub enum RegistryMsg {
    /// Registers `conn` for `config_id`, replying once it is registered, so
    /// the caller can read the current revision only afterwards.
    Subscribe {
        config_id: String,
        conn: ActorRef<ConnectionMsg>,
        reply: RpcReplyPort<()>,
    },
    Unsubscribe {
        config_id: String,
        conn: ActorId,
    },
    /// Fans a notice out to the config's subscribers.
    Notify(ChangeNotice),
    Count {
        config_id: String,
        reply: RpcReplyPort<usize>,
    },
    Stats(RpcReplyPort<RegistryStats>),
    /// Closes every socket with `code` (1001: the server is going away, so
    /// clients reconnect elsewhere).
    CloseAll(u16),
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct RegistryStats {
    /// Sockets following at least one config.
    pub connections: usize,
    pub subscriptions: usize,
    pub notices_sent: u64,
}

pub enum ConnectionMsg {
    Notice(ChangeNotice),
    /// A text frame from the client.
    Text(String),
    /// Any other frame from the client (pong, ping, binary): it is alive.
    Heard,
    PeerGone,
    WriterIdle,
    WriterFailed(String),
    Tick,
    /// Closes the socket with this code (1001 when the server is going away).
    Close(u16),
}
