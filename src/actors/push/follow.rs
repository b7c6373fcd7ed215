//! Following registry services on the native socket: what a Connection
//! needs of the registry (`ServiceFeed`, which the service layer's registry
//! implements), and the task that hands a service's membership to the
//! Connection, at most one message per `COALESCE` however many moves.

use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use ractor::ActorRef;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::messages::ConnectionMsg;
use crate::domain::access::{Caller, Role};
use crate::domain::registry::{Membership, check_service};

/// Moves within this window after the first are one message: a burst of
/// registrations is a few renders downstream, never one per instance.
pub const COALESCE: Duration = Duration::from_millis(100);

/// Who the socket's token is now, asked again at each subscribe and each
/// message, so a deleted token or a narrowed grant holds at once (`None`:
/// the token no longer holds).
pub type Reader = Arc<dyn Fn() -> BoxFuture<'static, Option<Caller>> + Send + Sync>;

/// Whether the socket's token still reads `service`.
pub async fn still_reads(reader: Option<&Reader>, service: &str) -> bool {
    match reader {
        Some(reader) => reader().await.is_some_and(|c| c.may(Role::Viewer, service)),
        None => false,
    }
}

/// Where a Connection follows services.
pub trait ServiceFeed: Send + Sync {
    /// The service's membership now, marked changed on every move.
    fn follow(&self, service: &str) -> watch::Receiver<Arc<Membership>>;
}

/// The feed to follow `service` from, or why the socket may not: it has no
/// token, its grant does not cover the service, or it follows all it may.
pub async fn allowed<'a>(
    services: Option<&'a dyn ServiceFeed>,
    reader: Option<&Reader>,
    service: &str,
    room: bool,
    most: usize,
) -> Result<&'a dyn ServiceFeed, String> {
    let feed = services.ok_or("this node has no service registry")?;
    check_service(service).map_err(|e| e.to_string())?;
    let reader = reader.ok_or("following a service needs a token: open the socket with Authorization: Bearer")?;
    let reader = reader().await.ok_or("the socket's token is no longer valid")?;
    if !reader.may(Role::Viewer, service) {
        return Err(format!("this needs the `viewer` role over service `{service}`"));
    }
    if !room {
        return Err(format!("a socket may follow at most {most} configs and services"));
    }
    Ok(feed)
}

/// Forwards `service`'s membership to `conn`: at once unless the client
/// already has `revision`, then on every move, coalesced.
pub fn forward(
    mut members: watch::Receiver<Arc<Membership>>,
    revision: Option<i64>,
    conn: ActorRef<ConnectionMsg>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let now = members.borrow_and_update().clone();
        if revision != Some(now.revision) && conn.cast(ConnectionMsg::Service(now)).is_err() {
            return;
        }
        while members.changed().await.is_ok() {
            tokio::time::sleep(COALESCE).await;
            let now = members.borrow_and_update().clone();
            if conn.cast(ConnectionMsg::Service(now)).is_err() {
                return;
            }
        }
    })
}
