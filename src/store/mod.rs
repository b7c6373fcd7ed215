//! Durable state behind one trait. Both backends share the SQL in `sql.rs`
//! (sqlx's Any driver; the schema keeps to types both read the same way) and
//! differ only in how they connect and migrate.

mod postgres;
mod sql;
mod sqlite;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use crate::domain::model::ReleaseEvent;
use crate::domain::params::ParamSpec;
use crate::domain::rules::PlatformRules;
use crate::domain::{Config, ConfigStatus, Lang, Version};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{0} not found")]
    NotFound(String),
    #[error("{0} already exists")]
    Conflict(String),
    #[error("{0}")]
    Invalid(String),
    #[error("store unavailable: {0}")]
    Unavailable(String),
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        match &e {
            sqlx::Error::Database(db) if db.is_unique_violation() => Self::Conflict(db.message().to_owned()),
            // SQLSTATE class 22, data exception: the value itself was refused
            // (PostgreSQL will not store a NUL byte in text, for one).
            sqlx::Error::Database(db) if db.code().is_some_and(|c| c.starts_with("22")) => {
                Self::Invalid(db.message().to_owned())
            }
            sqlx::Error::ColumnDecode { .. } | sqlx::Error::Decode(_) | sqlx::Error::ColumnNotFound(_) => {
                Self::Corrupt(e.to_string())
            }
            _ => Self::Unavailable(e.to_string()),
        }
    }
}

#[derive(Debug, Clone)]
pub struct NewConfig {
    pub id: String,
    pub description: String,
    pub secret: String,
}

#[derive(Debug, Clone)]
pub struct NewVersion {
    pub config_id: String,
    pub lang: Lang,
    pub source: String,
    pub rules: Vec<PlatformRules>,
    pub params: Vec<ParamSpec>,
    pub created_by: String,
}

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
    Status(ConfigStatus),
}

#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Succeeds when the store answers a trivial query.
    async fn ping(&self) -> Result<(), StoreError>;
    async fn create_config(&self, new: NewConfig, actor: &str) -> Result<Config, StoreError>;
    async fn get_config(&self, id: &str) -> Result<Option<Config>, StoreError>;
    async fn list_configs(&self) -> Result<Vec<Config>, StoreError>;
    /// Changes what clients do not see (no revision bump, no event).
    async fn set_description(&self, id: &str, description: &str) -> Result<Config, StoreError>;
    async fn create_version(&self, new: NewVersion) -> Result<Version, StoreError>;
    async fn get_version(&self, code_id: &str) -> Result<Option<Version>, StoreError>;
    async fn list_versions(&self, config_id: &str) -> Result<Vec<Version>, StoreError>;
    /// Applies `change` atomically; a change to the state already in force is
    /// a no-op that returns the config unchanged.
    async fn apply(&self, config_id: &str, change: Change, actor: &str) -> Result<Config, StoreError>;
    /// The release log, newest first.
    async fn list_events(&self, config_id: &str) -> Result<Vec<ReleaseEvent>, StoreError>;
}

/// How long a query waits for a pooled connection before the store counts as
/// unavailable (sqlx's default of 30 s would hold requests far too long).
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);

/// Opens the store named by `url`, creating and migrating it as needed.
pub async fn connect(url: &str, max_connections: u32) -> Result<Arc<dyn Store>, StoreError> {
    sqlx::any::install_default_drivers();
    let store = if url.starts_with("sqlite:") {
        sqlite::connect(url, max_connections).await?
    } else {
        postgres::connect(url, max_connections).await?
    };
    Ok(Arc::new(store))
}
