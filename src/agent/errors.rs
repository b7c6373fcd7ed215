//! Why a resource's watch stopped, a pass failed, or a subscription or
//! fetch did not go through.

use serde_json::Value;

use super::text::chain;
use crate::domain::health::ReportKind;

/// Why one pass did not put a file in force.
#[derive(Debug, thiserror::Error)]
pub enum PassError {
    /// Worth retrying: Vane or the machine, not the version.
    #[error("{0}")]
    Transient(String),
    /// The version's output could not be put in force here; reported as
    /// `report` if that is a kind worth telling Vane.
    #[error("{message}")]
    Version {
        code_id: Option<String>,
        message: String,
        report: Option<ReportKind>,
    },
}

/// Why subscribing to a resource's configs failed.
#[derive(Debug, thiserror::Error)]
pub enum SubscribeError {
    /// The socket failed (its text names the causes).
    #[error("{}", chain(.0))]
    Socket(#[from] tokio_tungstenite::tungstenite::Error),
    /// Vane closed the socket before taking every subscription.
    #[error("vane closed the connection")]
    Closed,
    /// Vane sent what is not JSON.
    #[error("{0}")]
    Unreadable(#[from] serde_json::Error),
    /// Vane refused a subscription; `message` is its word, as JSON.
    #[error("vane refused the subscription to {config_id}: {message}")]
    Refused {
        /// The config refused.
        config_id: String,
        /// What Vane said.
        message: Value,
    },
    /// Vane took too long to answer the subscriptions.
    #[error("vane did not answer the subscription in time")]
    TimedOut,
}

/// Why fetching a config's result failed.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// No answer, or one that is not a result (with its causes).
    #[error("fetching {config_id}: {}", chain(.error))]
    Http {
        /// The config.
        config_id: String,
        /// What failed.
        error: reqwest::Error,
    },
    /// Vane refused; `text` is its answer's body.
    #[error("fetching {config_id}: {status}: {text}")]
    Refused {
        /// The config.
        config_id: String,
        /// The answer's status.
        status: reqwest::StatusCode,
        /// The answer's body.
        text: String,
    },
}

/// Why the watch of a resource stopped for good.
#[derive(Debug, thiserror::Error)]
pub enum WatchError {
    /// Vane refused the first subscription (a wrong secret, an unknown
    /// config): retrying would not help.
    #[error("resource {resource}: vane refused the subscription to {config_id}: {message}")]
    Refused {
        /// The resource.
        resource: String,
        /// The config refused.
        config_id: String,
        /// What Vane said.
        message: String,
    },
}
