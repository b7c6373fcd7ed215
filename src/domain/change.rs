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
    /// `code_id` becomes the stable version.
    Release {
        /// The version to release.
        code_id: String,
        /// Released although its stored tests failed.
        forced: bool,
    },
    /// `code_id` is served to `percentage` of the devices.
    Gray {
        /// The version to serve in gray.
        code_id: String,
        /// The share of devices, 0 to 100.
        percentage: u8,
        /// Set although its stored tests failed.
        forced: bool,
    },
    /// Gray ends; every device gets the stable version.
    RemoveGray,
    /// Release points back to the stable version before the current one.
    Rollback,
    /// The config becomes active or inactive.
    Status(ConfigStatus),
    /// Marks a version broken.
    Broken {
        /// The version to mark.
        code_id: String,
    },
    /// Clears a version's broken mark and its error count.
    Unbroken {
        /// The version to clear.
        code_id: String,
    },
}

/// What every node's subscribers are told when a config changes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChangeNotice {
    /// The config that changed.
    pub config_id: String,
    /// Its revision after the change: clients that hold it need not fetch.
    pub revision: i64,
    /// Unix seconds, as the original push frames carry it.
    pub update_time: i64,
    /// Sent by `POST /update/{id}` without a change: delivered even to
    /// clients that already have this revision.
    #[serde(skip)]
    pub manual: bool,
}
