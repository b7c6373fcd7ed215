//! The actor tree (each actor's file says what it does and what a restart loses). HTTP code sees only the handles defined
//! here; every call through a handle has a timeout.

pub mod change_bus;
pub mod config_cache;
pub mod evaluator;
pub mod push;
pub mod releases;
pub mod supervisor;
pub mod test_runs;

use std::sync::{Arc, RwLock};
use std::time::Duration;

use crate::sync::RwLocked;
use ractor::rpc::CallResult;
use ractor::{ActorRef, RpcReplyPort};

/// Why a call to an actor got no answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallError {
    #[error("{0} did not answer in time")]
    Timeout(&'static str),
    #[error("{0} is unavailable")]
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
    pub fn new(actor: ActorRef<M>) -> Self {
        Self(Arc::new(RwLock::new(actor)))
    }

    pub fn get(&self) -> ActorRef<M> {
        self.0.reading().clone()
    }

    pub fn set(&self, actor: ActorRef<M>) {
        *self.0.writing() = actor;
    }

    pub fn is_alive(&self) -> bool {
        self.get().get_status() == ractor::ActorStatus::Running
    }

    /// Asks the actor and waits at most `timeout` for the reply.
    pub async fn ask<T: Send + 'static>(
        &self,
        name: &'static str,
        timeout: Duration,
        message: impl FnOnce(RpcReplyPort<T>) -> M,
    ) -> Result<T, CallError> {
        count_send(name);
        match self.get().call(message, Some(timeout)).await {
            Ok(CallResult::Success(reply)) => Ok(reply),
            Ok(CallResult::Timeout) => Err(CallError::Timeout(name)),
            Ok(CallResult::SenderError) | Err(_) => Err(CallError::Unavailable(name)),
        }
    }

    /// Sends without waiting; fails only when the actor is gone.
    pub fn tell(&self, name: &'static str, message: M) -> Result<(), CallError> {
        count_send(name);
        self.get().cast(message).map_err(|_| CallError::Unavailable(name))
    }
}

/// Actors that count what they take from their mailbox (ractor exposes no
/// queue length), so sends to them are counted too.
fn count_send(name: &'static str) {
    if crate::metrics::COUNTED_ACTORS.contains(&name) {
        crate::metrics::sent(name);
    }
}
