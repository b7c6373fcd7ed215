//! The actor tree, one actor per file or folder (each says what it does and
//! what a restart loses), and what reaching them takes: `Slot`, `CallError`,
//! `ask` and `tell`. Callers see only the actors' handles; every call
//! through a handle has a timeout.

pub mod change_bus;
pub mod config_cache;
pub mod evaluator;
pub mod push;
pub mod scheduler;
pub mod supervisor;

use std::sync::{Arc, RwLock};
use std::time::Duration;

use crate::sync::RwLocked;
use ractor::rpc::CallResult;
use ractor::{ActorRef, RpcReplyPort};

use crate::names::ActorName;

/// Why a call to an actor got no answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallError {
    #[error("{0} did not answer in time")]
    /// The actor did not answer within the handle's timeout.
    Timeout(&'static str),
    #[error("{0} is unavailable")]
    /// The actor is down (crashed, not yet restarted).
    Unavailable(&'static str),
}

/// Where a handle finds an actor that its supervisor may replace after a
/// crash. Between the crash and the restart, calls fail fast as unavailable.
pub struct Slot<M>(Arc<RwLock<ActorRef<M>>>);

impl<M> Clone for Slot<M> {
    fn clone(&self) -> Self {
        Self(self.0.clone())
    }
}

impl<M: ractor::Message> Slot<M> {
    /// A slot holding `actor`.
    pub fn new(actor: ActorRef<M>) -> Self {
        Self(Arc::new(RwLock::new(actor)))
    }

    /// The actor in the slot now.
    pub fn get(&self) -> ActorRef<M> {
        self.0.reading().clone()
    }

    /// Puts a restarted actor in the slot.
    pub fn set(&self, actor: ActorRef<M>) {
        *self.0.writing() = actor;
    }

    /// Whether the actor in the slot is running.
    pub fn is_alive(&self) -> bool {
        self.get().get_status() == ractor::ActorStatus::Running
    }

    /// Asks the actor and waits at most `timeout` for the reply.
    pub async fn ask<T: Send + 'static>(
        &self,
        name: ActorName,
        timeout: Duration,
        message: impl FnOnce(RpcReplyPort<T>) -> M,
    ) -> Result<T, CallError> {
        ask(&self.get(), name, timeout, message).await
    }

    /// Sends without waiting; fails only when the actor is gone.
    pub fn tell(&self, name: ActorName, message: M) -> Result<(), CallError> {
        tell(&self.get(), name, message)
    }
}

/// Asks `actor`, counting the send (every message to an actor goes through
/// here or `tell`, so mailbox depths stay true).
pub async fn ask<M: ractor::Message, T: Send + 'static>(
    actor: &ActorRef<M>,
    name: ActorName,
    timeout: Duration,
    message: impl FnOnce(RpcReplyPort<T>) -> M,
) -> Result<T, CallError> {
    crate::metrics::sent(name);
    match actor.call(message, Some(timeout)).await {
        Ok(CallResult::Success(reply)) => Ok(reply),
        Ok(CallResult::Timeout) => Err(CallError::Timeout(name.as_str())),
        Ok(CallResult::SenderError) | Err(_) => Err(CallError::Unavailable(name.as_str())),
    }
}

/// Sends to `actor` without waiting, counting the send.
pub fn tell<M: ractor::Message>(actor: &ActorRef<M>, name: ActorName, message: M) -> Result<(), CallError> {
    crate::metrics::sent(name);
    actor.cast(message).map_err(|_| CallError::Unavailable(name.as_str()))
}
