//! Push: WebSocket subscribers told when a config they follow changes.
//!
//! The PushRegistry (one per node, under the root Supervisor) maps
//! config ids to Connection actors, one per socket, spawned linked to the
//! registry and never restarted (the client reconnects). Fan-out is a cast to
//! each Connection, so a slow client never holds up the registry; each
//! Connection keeps at most one pending notice per config.

mod connection;
mod feed;
mod follow;
mod messages;
mod outbox;
mod registry;
mod sockets;

use std::net::IpAddr;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use axum::extract::ws::WebSocket;
use ractor::Actor;

use super::config_cache::ConfigCacheHandle;
use super::{CallError, Slot};
use crate::domain::change::ChangeNotice;
use crate::names::ActorName;
use crate::settings::Push;
use crate::store::Store;
use crate::sync::RwLocked;
pub use connection::{Connection, ConnectionArgs};
pub use feed::{Listener, NoticeFeed};
pub use follow::{COALESCE, Reader, ServiceFeed};
pub use messages::{ConnectionMsg, Protocol, PushMsg, PushStats};
pub use outbox::Outbox;
pub use registry::PushRegistry;
pub use sockets::{SocketPermit, Sockets};

/// The WebSocket close code for "server going away".
const GOING_AWAY: u16 = 1001;

/// What callers hold to reach the PushRegistry.
#[derive(Clone)]
pub struct PushHandle {
    registry: Slot<PushMsg>,
    cache: ConfigCacheHandle,
    store: Arc<dyn Store>,
    /// Read by each new Connection; a reload replaces it.
    settings: Arc<RwLock<Arc<Push>>>,
    sockets: Arc<Sockets>,
    feed: NoticeFeed,
    timeout: Duration,
    services: Option<Arc<dyn ServiceFeed>>,
}

impl PushHandle {
    /// A handle over the registry; calls wait at most the settings' call timeout.
    pub fn new(
        registry: Slot<PushMsg>,
        cache: ConfigCacheHandle,
        store: Arc<dyn Store>,
        feed: NoticeFeed,
        settings: &Push,
        timeout: Duration,
    ) -> Self {
        Self {
            registry,
            cache,
            store,
            settings: Arc::new(RwLock::new(Arc::new(settings.clone()))),
            sockets: Arc::default(),
            feed,
            timeout,
            services: None,
        }
    }

    /// Lets native sockets follow registry services from `feed`.
    pub fn with_services(mut self, feed: Arc<dyn ServiceFeed>) -> Self {
        self.services = Some(feed);
        self
    }

    /// Every notice the registry fans out from now on, and word of closing.
    pub fn listen(&self) -> Listener {
        self.feed.listen()
    }

    /// Event streams open on this node.
    pub fn event_streams(&self) -> usize {
        self.feed.listeners()
    }

    /// A place for one more socket from `address`, unless it holds
    /// `push.max_sockets_per_address` already (counted as dropped).
    pub fn admit(&self, address: IpAddr) -> Option<SocketPermit> {
        let limit = self.settings.reading().max_sockets_per_address;
        let permit = self.sockets.admit(address, limit);
        if permit.is_none() {
            crate::metrics::dropped_push_client("per_address");
        }
        permit
    }

    /// `push.max_sockets_per_address` as it is now.
    pub fn max_sockets_per_address(&self) -> usize {
        self.settings.reading().max_sockets_per_address
    }

    /// Sockets open on this node, whether they follow anything or not.
    pub fn open_sockets(&self) -> usize {
        self.sockets.open()
    }

    /// Serves `socket` with a Connection actor linked to the registry. For the
    /// original protocol, `initial` is the one config it follows and the
    /// secret it was opened with.
    pub async fn connect(
        &self,
        socket: WebSocket,
        permit: SocketPermit,
        protocol: Protocol,
        initial: Option<(String, String)>,
        reader: Option<Reader>,
    ) {
        let registry = self.registry.get();
        let args = ConnectionArgs {
            socket,
            permit,
            protocol,
            initial,
            registry: registry.clone(),
            cache: self.cache.clone(),
            store: self.store.clone(),
            settings: self.settings.reading().clone(),
            call_timeout: self.timeout,
            services: self.services.clone(),
            reader,
        };
        if let Err(e) = Actor::spawn_linked(None, Connection, args, registry.get_cell()).await {
            tracing::warn!(error = %e, "could not start a push connection");
        }
    }

    /// Settings for sockets opened from now on (open ones keep theirs).
    pub fn set_settings(&self, settings: &Push) {
        *self.settings.writing() = Arc::new(settings.clone());
    }

    /// Tells this node's subscribers of `notice.config_id`.
    pub fn notify(&self, notice: ChangeNotice) -> Result<(), CallError> {
        self.registry.tell(ActorName::PushRegistry, PushMsg::Notify(notice))
    }

    /// How many of this node's sockets follow `config_id`.
    pub async fn subscribers(&self, config_id: &str) -> Result<usize, CallError> {
        let config_id = config_id.to_owned();
        self.registry
            .ask(ActorName::PushRegistry, self.timeout, |reply| PushMsg::Count {
                config_id,
                reply,
            })
            .await
    }

    /// The registry's counters.
    pub async fn stats(&self) -> Result<PushStats, CallError> {
        self.registry
            .ask(ActorName::PushRegistry, self.timeout, PushMsg::Stats)
            .await
    }

    /// Closes every subscribed socket with 1001 (going away), and ends
    /// every event stream.
    pub fn close_all(&self) -> Result<(), CallError> {
        self.feed.close();
        self.registry
            .tell(ActorName::PushRegistry, PushMsg::CloseAll(GOING_AWAY))
    }

    /// Whether the registry is running.
    pub fn is_alive(&self) -> bool {
        self.registry.is_alive()
    }
}
