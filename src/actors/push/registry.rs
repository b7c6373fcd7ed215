//! PushRegistry: config id -> the Connection actors following it.
//!
//! Supervised by the root Supervisor. It is itself the supervisor of every
//! Connection (they are spawned linked to it) and drops a connection from
//! every config when its actor stops, however it stops. A restart of the
//! registry stops all Connections; their clients reconnect and catch up by
//! revision.

use std::collections::{HashMap, HashSet};

use ractor::{Actor, ActorId, ActorProcessingErr, ActorRef, SupervisionEvent};

use super::feed::NoticeFeed;
use super::messages::{ConnectionMsg, NAME, PushMsg, PushStats};

pub struct RegistryState {
    /// Where every notice also goes, for the event streams.
    feed: NoticeFeed,
    by_config: HashMap<String, HashMap<ActorId, ActorRef<ConnectionMsg>>>,
    /// The reverse index, to drop a stopped connection everywhere at once.
    by_connection: HashMap<ActorId, HashSet<String>>,
    notices_sent: u64,
}

/// Who follows which config, on this node; fans notices out to them.
pub struct PushRegistry;

impl Actor for PushRegistry {
    type Msg = PushMsg;
    type State = RegistryState;
    type Arguments = NoticeFeed;

    async fn pre_start(&self, _: ActorRef<Self::Msg>, feed: NoticeFeed) -> Result<Self::State, ActorProcessingErr> {
        Ok(RegistryState {
            feed,
            by_config: HashMap::new(),
            by_connection: HashMap::new(),
            notices_sent: 0,
        })
    }

    async fn handle(
        &self,
        _: ActorRef<Self::Msg>,
        message: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        let started = crate::metrics::taken(NAME);
        match message {
            PushMsg::Subscribe { config_id, conn, reply } => {
                state
                    .by_connection
                    .entry(conn.get_id())
                    .or_default()
                    .insert(config_id.clone());
                state
                    .by_config
                    .entry(config_id)
                    .or_default()
                    .insert(conn.get_id(), conn);
                let _ = reply.send(());
            }
            PushMsg::Unsubscribe { config_id, conn } => state.remove(&config_id, conn),
            PushMsg::Notify(notice) => {
                state.feed.send(&notice);
                if let Some(conns) = state.by_config.get(&notice.config_id) {
                    for conn in conns.values() {
                        // A cast never waits: a slow client only grows its
                        // own (coalescing) outbox.
                        let _ = conn.cast(ConnectionMsg::Notice(notice.clone()));
                    }
                    state.notices_sent += conns.len() as u64;
                }
            }
            PushMsg::Count { config_id, reply } => {
                let _ = reply.send(state.by_config.get(&config_id).map_or(0, HashMap::len));
            }
            PushMsg::CloseAll(code) => {
                let everyone: HashMap<&ActorId, &ActorRef<ConnectionMsg>> =
                    state.by_config.values().flat_map(|c| c.iter()).collect();
                for conn in everyone.into_values() {
                    let _ = conn.cast(ConnectionMsg::Close(code));
                }
            }
            PushMsg::Stats(reply) => {
                let _ = reply.send(PushStats {
                    connections: state.by_connection.len(),
                    subscriptions: state.by_connection.values().map(HashSet::len).sum(),
                    notices_sent: state.notices_sent,
                });
            }
        }
        crate::metrics::handled(NAME, started);
        Ok(())
    }

    /// A Connection stopped or failed: forget it. Its failure is its own
    /// client's problem, never the registry's.
    async fn handle_supervisor_evt(
        &self,
        _: ActorRef<Self::Msg>,
        event: SupervisionEvent,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        let gone = match &event {
            SupervisionEvent::ActorTerminated(cell, ..) => cell.get_id(),
            SupervisionEvent::ActorFailed(cell, error) => {
                tracing::warn!(%error, "push connection failed");
                cell.get_id()
            }
            _ => return Ok(()),
        };
        for config_id in state.by_connection.remove(&gone).unwrap_or_default() {
            if let Some(conns) = state.by_config.get_mut(&config_id) {
                conns.remove(&gone);
                if conns.is_empty() {
                    state.by_config.remove(&config_id);
                }
            }
        }
        Ok(())
    }
}

impl RegistryState {
    fn remove(&mut self, config_id: &str, conn: ActorId) {
        if let Some(conns) = self.by_config.get_mut(config_id) {
            conns.remove(&conn);
            if conns.is_empty() {
                self.by_config.remove(config_id);
            }
        }
        if let Some(configs) = self.by_connection.get_mut(&conn) {
            configs.remove(config_id);
            if configs.is_empty() {
                self.by_connection.remove(&conn);
            }
        }
    }
}
