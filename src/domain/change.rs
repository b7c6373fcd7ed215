//! The vocabulary of changes: what an operator (or the reports) can change
//! about a config, and what every node's subscribers are told when it does.
//! A leaf, shared by the store, the management service, the change bus and
//! push, so none of them depends on another for it.

use serde::Serialize;

use super::ConfigStatus;

/// A change clients must see: each bumps the revision and appends a release
/// event in the same transaction.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    Release {
        code_id: String,
        forced: bool,
    },
    Gray {
        code_id: String,
        percentage: u8,
        forced: bool,
    },
    RemoveGray,
    /// Release points back to the stable version before the current one.
    Rollback,
    Status(ConfigStatus),
    /// Marks a version broken (or clears the mark and its error count).
    Broken {
        code_id: String,
    },
    Unbroken {
        code_id: String,
    },
}

/// What every node's subscribers are told when a config changes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChangeNotice {
    pub config_id: String,
    pub revision: i64,
    /// Unix seconds, as the original push frames carry it.
    pub update_time: i64,
    /// Sent by `POST /update/{id}` without a change: delivered even to
    /// clients that already have this revision.
    #[serde(skip)]
    pub manual: bool,
}
