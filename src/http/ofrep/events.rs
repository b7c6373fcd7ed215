//! `GET /ofrep/v1/events?ticket=...`: the Server-Sent Events stream a bulk
//! answer names in `eventStreams`. It says `refetchEvaluation` when a config
//! in the client token's scope changes, on any node (every notice reaches
//! each node's registry, which passes it to the feed read here).
//!
//! Notices that arrive while the client is still reading the last event are
//! folded into one: the client refetches everything anyway. A stream that
//! falls behind the feed cannot know what it missed, so it says refetch. It
//! holds one of its address's `push.max_sockets_per_address` places, and
//! ends when the node closes.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use tokio::sync::broadcast::error::{RecvError, TryRecvError};
use tokio::sync::watch;

use super::access::LiveAccess;
use super::answer::Failure;
use crate::actors::push::{Listener, SocketPermit};
use crate::domain::change::ChangeNotice;
use crate::domain::model::now_millis;
use crate::domain::ofrep::Scope;
use crate::http::AppState;
use crate::http::extract::ClientAddress;

/// A comment this often keeps proxies from closing an idle stream.
const KEEP_ALIVE: Duration = Duration::from_secs(15);

#[derive(Deserialize)]
pub struct EventsQuery {
    ticket: Option<String>,
}

/// Opens the stream for the client token whose ticket this is.
pub async fn stream(
    State(app): State<AppState>,
    ClientAddress(address): ClientAddress,
    Query(query): Query<EventsQuery>,
) -> Response {
    let ticket = query.ticket.unwrap_or_default();
    let changes = app.ofrep.changes();
    let Some(scope) = app.ofrep.current().by_ticket(&ticket).map(|c| c.scope.clone()) else {
        return Failure::Denied(StatusCode::UNAUTHORIZED).into_response();
    };
    let Some(permit) = app.push.admit(address) else {
        return Failure::Busy(
            StatusCode::TOO_MANY_REQUESTS,
            "this address holds as many sockets and streams as push.max_sockets_per_address allows".into(),
        )
        .into_response();
    };
    let listener = app.push.listen();
    if *listener.closing.borrow() {
        return Failure::Busy(StatusCode::SERVICE_UNAVAILABLE, "the node is shutting down".into()).into_response();
    }
    crate::metrics::event_streams_open(1.0);
    let state = Stream {
        listener,
        scope,
        ticket,
        access: app.ofrep.clone(),
        changes,
        _permit: permit,
    };
    Sse::new(futures_util::stream::unfold(state, next))
        .keep_alive(KeepAlive::new().interval(KEEP_ALIVE))
        .into_response()
}

struct Stream {
    listener: Listener,
    scope: Scope,
    ticket: String,
    /// Read again when the settings change: a removed token ends its
    /// stream, a changed scope applies at once.
    access: Arc<LiveAccess>,
    changes: watch::Receiver<()>,
    /// Released when the stream ends, however it ends.
    _permit: SocketPermit,
}

/// The next event, or `None` to end the stream.
async fn next(mut stream: Stream) -> Option<(Result<Event, Infallible>, Stream)> {
    loop {
        let got = tokio::select! {
            _ = stream.listener.closing.wait_for(|closing| *closing) => return None,
            _ = stream.changes.changed() => {
                stream.scope = stream.access.current().by_ticket(&stream.ticket)?.scope.clone();
                continue;
            }
            got = stream.listener.notices.recv() => got,
        };
        let last = match got {
            Ok(notice) if stream.scope.covers(&notice.config_id) => Some(notice),
            Ok(_) => continue,
            Err(RecvError::Lagged(_)) => None,
            Err(RecvError::Closed) => return None,
        };
        let last = stream.fold_waiting(last);
        return Some((Ok(refetch(last.as_ref())), stream));
    }
}

impl Drop for Stream {
    fn drop(&mut self) {
        crate::metrics::event_streams_open(-1.0);
    }
}

impl Stream {
    /// Drains the notices already waiting, keeping the last in scope.
    fn fold_waiting(&mut self, mut last: Option<ChangeNotice>) -> Option<ChangeNotice> {
        loop {
            match self.listener.notices.try_recv() {
                Ok(notice) if self.scope.covers(&notice.config_id) => last = Some(notice),
                Ok(_) | Err(TryRecvError::Lagged(_)) => {}
                Err(TryRecvError::Empty | TryRecvError::Closed) => return last,
            }
        }
    }
}

/// `data: {"type":"refetchEvaluation","lastModified":<unix seconds>}`, its id
/// naming the change that prompted it.
fn refetch(notice: Option<&ChangeNotice>) -> Event {
    let data = serde_json::json!({
        "type": "refetchEvaluation",
        "lastModified": now_millis() / 1000,
    });
    let event = Event::default().data(data.to_string());
    match notice {
        Some(n) => event.id(format!("{}@{}", n.config_id, n.revision)),
        None => event,
    }
}
