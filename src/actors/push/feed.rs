//! Every notice this node's registry fans out, for listeners that are not
//! WebSockets (the OpenFeature event streams), and whether the node is
//! closing, so such listeners end when its sockets do.
//!
//! A broadcast channel: a listener that falls behind loses notices, learns
//! that it did, and treats it as "something changed". Created by the app and
//! handed to every incarnation of the registry, so it outlives restarts.

use tokio::sync::{broadcast, watch};

use crate::domain::change::ChangeNotice;

/// Notices a slow listener may fall behind by before it lags.
const CAPACITY: usize = 1024;

/// The sending side, held by the registry and the push handle.
#[derive(Clone)]
pub struct NoticeFeed {
    notices: broadcast::Sender<ChangeNotice>,
    closing: watch::Sender<bool>,
}

/// One listener's side.
pub struct Listener {
    /// Every notice from when it was made.
    pub notices: broadcast::Receiver<ChangeNotice>,
    /// Turns true when the node is closing.
    pub closing: watch::Receiver<bool>,
}

impl Default for NoticeFeed {
    fn default() -> Self {
        Self {
            notices: broadcast::channel(CAPACITY).0,
            closing: watch::channel(false).0,
        }
    }
}

impl NoticeFeed {
    /// Passes `notice` to every listener (none listening is fine).
    pub fn send(&self, notice: &ChangeNotice) {
        if self.notices.receiver_count() > 0 {
            let _ = self.notices.send(notice.clone());
        }
    }

    /// A listener for notices from now on.
    pub fn listen(&self) -> Listener {
        Listener {
            notices: self.notices.subscribe(),
            closing: self.closing.subscribe(),
        }
    }

    /// Tells every listener that the node is closing.
    pub fn close(&self) {
        self.closing.send_replace(true);
    }

    /// Listeners now.
    pub fn listeners(&self) -> usize {
        self.notices.receiver_count()
    }
}
