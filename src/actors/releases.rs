//! Releases: the management operations (configs, versions, release pointers).
//! Not an actor: writes go to the Store in a transaction, then the
//! ConfigCache is told, so a slow write never holds up resolution.

use std::sync::Arc;

use super::config_cache::ConfigCacheHandle;
use super::evaluator::{EvalError, EvaluatorPoolHandle};
use crate::domain::model::{ReleaseEvent, validate_config_id};
use crate::domain::params::{self, ParamError};
use crate::domain::rules::{self, RuleError};
use crate::domain::{Config, ConfigStatus, Lang, Version};
use crate::store::{Change, NewConfig, NewVersion, Store, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum ReleaseError {
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Rule(#[from] RuleError),
    #[error(transparent)]
    Schema(#[from] ParamError),
    #[error(transparent)]
    Eval(#[from] EvalError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A version as uploaded: rules and schema still raw JSON, so that a bad
/// entry is refused with its position.
pub struct VersionUpload {
    pub lang: Lang,
    pub source: String,
    pub rules: Vec<serde_json::Value>,
    pub params: Vec<serde_json::Value>,
}

#[derive(Clone)]
pub struct ReleasesHandle {
    store: Arc<dyn Store>,
    cache: ConfigCacheHandle,
    pool: EvaluatorPoolHandle,
}

impl ReleasesHandle {
    pub fn new(store: Arc<dyn Store>, cache: ConfigCacheHandle, pool: EvaluatorPoolHandle) -> Self {
        Self { store, cache, pool }
    }

    pub async fn create_config(&self, id: String, description: String, actor: &str) -> Result<Config, ReleaseError> {
        validate_config_id(&id).map_err(ReleaseError::Invalid)?;
        let secret = crate::secrets::random_token();
        let config = self
            .store
            .create_config(
                NewConfig {
                    id,
                    description,
                    secret,
                },
                actor,
            )
            .await?;
        self.cache.invalidate(&config.id);
        Ok(config)
    }

    pub async fn config(&self, id: &str) -> Result<Config, ReleaseError> {
        self.store
            .get_config(id)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("config `{id}`")).into())
    }

    pub async fn configs(&self) -> Result<Vec<Config>, ReleaseError> {
        Ok(self.store.list_configs().await?)
    }

    /// Changes status and/or description; a status change is announced.
    pub async fn update_config(
        &self,
        id: &str,
        status: Option<ConfigStatus>,
        description: Option<String>,
        actor: &str,
    ) -> Result<Config, ReleaseError> {
        let mut config = self.config(id).await?;
        if let Some(description) = description {
            config = self.store.set_description(id, &description).await?;
        }
        if let Some(status) = status {
            config = self.apply(id, Change::Status(status), actor).await?;
        }
        Ok(config)
    }

    /// Validates rules and schema, compile-checks the source in a worker, then
    /// stores the version.
    pub async fn create_version(
        &self,
        config_id: &str,
        upload: VersionUpload,
        actor: &str,
    ) -> Result<Version, ReleaseError> {
        let rules = rules::from_upload(upload.rules)?;
        let params = params::from_upload(upload.params)?;
        self.config(config_id).await?;
        self.pool.check(upload.lang, upload.source.clone()).await?;
        let new = NewVersion {
            config_id: config_id.to_owned(),
            lang: upload.lang,
            source: upload.source,
            rules,
            params,
            created_by: actor.to_owned(),
        };
        Ok(self.store.create_version(new).await?)
    }

    pub async fn version(&self, config_id: &str, code_id: &str) -> Result<Version, ReleaseError> {
        match self.store.get_version(code_id).await? {
            Some(v) if v.config_id == config_id => Ok(v),
            _ => Err(StoreError::NotFound(format!("version `{code_id}` of config `{config_id}`")).into()),
        }
    }

    pub async fn versions(&self, config_id: &str) -> Result<Vec<Version>, ReleaseError> {
        self.config(config_id).await?;
        Ok(self.store.list_versions(config_id).await?)
    }

    pub async fn apply(&self, config_id: &str, change: Change, actor: &str) -> Result<Config, ReleaseError> {
        let config = self.store.apply(config_id, change, actor).await?;
        self.cache.invalidate(config_id);
        Ok(config)
    }

    pub async fn events(&self, config_id: &str) -> Result<Vec<ReleaseEvent>, ReleaseError> {
        self.config(config_id).await?;
        Ok(self.store.list_events(config_id).await?)
    }

    /// Whether the store answers within `limit`; a hung store is unreachable.
    pub async fn store_reachable(&self, limit: std::time::Duration) -> bool {
        matches!(tokio::time::timeout(limit, self.store.ping()).await, Ok(Ok(())))
    }
}
