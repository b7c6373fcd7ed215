//! Releases: the management operations (configs, versions, release pointers,
//! test cases, secrets). Not an actor: writes go to the Store in a
//! transaction, then the ConfigCache is told and the change is announced, so
//! a slow write never holds up resolution.

use std::sync::Arc;
use std::time::Duration;

use super::announce::Announcer;
use super::test_runs::{self, CaseResult, TestRun};
use crate::actors::evaluator::{EvalError, EvaluatorPoolHandle};
use crate::domain::Meta;
use crate::domain::change::Change;
use crate::domain::identity::content_code_id;
use crate::domain::model::{ConfigIdError, ReleaseEvent, TestCase, now_millis, validate_new_config_id};
use crate::domain::params::{self, ParamError};
use crate::domain::rules::{self, RuleError};
use crate::domain::{Config, ConfigStatus, Lang, Version};
use crate::store::{Missing, NewConfig, NewTestCase, NewVersion, Store, StoreError, same_content};

/// Why a management operation was refused; rendered at the edge.
#[derive(Debug, thiserror::Error)]
pub enum ReleaseError {
    /// The config id is not one Vane can put in a URL or key.
    #[error(transparent)]
    ConfigId(#[from] ConfigIdError),
    /// A test case's params are not a JSON object.
    #[error("`params` must be a JSON object")]
    TestParams,
    /// An uploaded rule is malformed.
    #[error(transparent)]
    Rule(#[from] RuleError),
    /// An uploaded parameter schema is malformed.
    #[error(transparent)]
    Schema(#[from] ParamError),
    /// The source does not compile, or the pool could not check it.
    #[error(transparent)]
    Eval(#[from] EvalError),
    /// The store refused or failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Publishing was refused because stored tests failed.
    #[error("{} of the version's {} tests failed; publish with `force: true` to override", .0.failed, .0.failed + .0.passed)]
    TestsFailed(TestRun),
}

/// A test case as uploaded for a version.
pub struct NewTest {
    /// For operators.
    pub name: String,
    /// The request metadata it runs with.
    pub meta: Meta,
    /// The params it runs with (must be a JSON object).
    pub params: serde_json::Value,
    /// The result it must give.
    pub expected: serde_json::Value,
}

/// A version as uploaded: rules and schema still raw JSON, so that a bad
/// entry is refused with its position.
pub struct VersionUpload {
    /// The language of `source`.
    pub lang: Lang,
    /// The body of a function of `p`.
    pub source: String,
    /// Who may be served it, as uploaded.
    pub rules: Vec<serde_json::Value>,
    /// The params a request must carry, as uploaded.
    pub params: Vec<serde_json::Value>,
}

/// The management operations, behind a cloneable handle.
#[derive(Clone)]
pub struct ReleasesHandle {
    store: Arc<dyn Store>,
    pool: EvaluatorPoolHandle,
    announcer: Announcer,
}

impl ReleasesHandle {
    /// The service over `store`, announcing what it commits.
    pub fn new(store: Arc<dyn Store>, pool: EvaluatorPoolHandle, announcer: Announcer) -> Self {
        Self { store, pool, announcer }
    }

    /// Announces a change committed to `config` (by this service or another
    /// of the node's): memory, subscribers, other nodes.
    pub async fn announce(&self, config: &Config, code_id: Option<&str>) {
        self.announcer.committed(config, code_id).await;
    }

    /// Creates a config with a new secret, and announces it.
    pub async fn create_config(&self, id: String, description: String, actor: &str) -> Result<Config, ReleaseError> {
        validate_new_config_id(&id)?;
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
        self.announce(&config, None).await;
        Ok(config)
    }

    /// A config from the store.
    pub async fn config(&self, id: &str) -> Result<Config, ReleaseError> {
        Ok(self.store.existing_config(id).await?)
    }

    /// Every config, from the store.
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

    /// Sets how many approvals the config's changes need. Clients see
    /// nothing, so nothing is announced.
    pub async fn set_approvals_required(&self, id: &str, n: u32, actor: &str) -> Result<Config, ReleaseError> {
        Ok(self.store.set_approvals_required(id, n, actor).await?)
    }

    /// Validates rules and schema, compile-checks the source in a worker, then
    /// stores the version; `false` beside a version that was there already
    /// (the same content uploaded to the config before: a version is its
    /// content, so nothing new is stored and no event written).
    pub async fn create_version(
        &self,
        config_id: &str,
        upload: VersionUpload,
        actor: &str,
    ) -> Result<(Version, bool), ReleaseError> {
        let rules = rules::from_upload(upload.rules)?;
        let params = params::from_upload(upload.params)?;
        self.config(config_id).await?;
        let new = NewVersion {
            config_id: config_id.to_owned(),
            lang: upload.lang,
            source: upload.source,
            rules,
            params,
            created_by: actor.to_owned(),
        };
        let code_id = content_code_id(config_id, new.lang, &new.source, &new.rules, &new.params);
        if let Some(existing) = self.store.get_version(&code_id).await?
            && same_content(&existing, &new)
        {
            return Ok((existing, false));
        }
        self.pool.check(new.lang, new.source.clone()).await?;
        Ok((self.store.create_version(new).await?, true))
    }

    /// A version of the config.
    pub async fn version(&self, config_id: &str, code_id: &str) -> Result<Version, ReleaseError> {
        match self.store.get_version(code_id).await? {
            Some(v) if v.config_id == config_id => Ok(v),
            _ => Err(StoreError::NotFound(Missing::version(config_id, code_id)).into()),
        }
    }

    /// The config's versions, oldest first.
    pub async fn versions(&self, config_id: &str) -> Result<Vec<Version>, ReleaseError> {
        self.config(config_id).await?;
        Ok(self.store.list_versions(config_id).await?)
    }

    /// Applies a pointer or status change and announces it. A change to the
    /// state already in force records and announces nothing.
    pub async fn apply(&self, config_id: &str, change: Change, actor: &str) -> Result<Config, ReleaseError> {
        let before = self.config(config_id).await?.revision;
        let health_of = match &change {
            Change::Broken { code_id } | Change::Unbroken { code_id } => Some(code_id.clone()),
            _ => None,
        };
        let config = self.store.apply(config_id, change, actor).await?;
        if config.revision != before {
            self.announce(&config, health_of.as_deref()).await;
        }
        Ok(config)
    }

    /// Releases a version or sets a gray share above 0%, after its stored
    /// tests pass (unless `forced`, which the event records).
    pub async fn publish(&self, config_id: &str, change: Change, actor: &str) -> Result<Config, ReleaseError> {
        let gated = match &change {
            Change::Release { code_id, forced: false } => Some(code_id),
            Change::Gray {
                code_id,
                percentage,
                forced: false,
            } if *percentage > 0 => Some(code_id),
            _ => None,
        };
        if let Some(code_id) = gated {
            let run = self.run_tests(config_id, code_id).await?;
            if !run.all_passed() {
                return Err(ReleaseError::TestsFailed(run));
            }
        }
        self.apply(config_id, change, actor).await
    }

    /// Stores a test case for a version of the config.
    pub async fn create_test(&self, config_id: &str, code_id: &str, test: NewTest) -> Result<TestCase, ReleaseError> {
        if !test.params.is_object() {
            return Err(ReleaseError::TestParams);
        }
        let new = NewTestCase {
            config_id: config_id.to_owned(),
            code_id: code_id.to_owned(),
            name: test.name,
            meta: test.meta,
            params: test.params,
            expected: test.expected,
        };
        Ok(self.store.create_test(new).await?)
    }

    /// A version's test cases.
    pub async fn tests(&self, config_id: &str, code_id: &str) -> Result<Vec<TestCase>, ReleaseError> {
        self.version(config_id, code_id).await?;
        Ok(self.store.list_tests(code_id).await?)
    }

    /// Deletes a test case of a version of the config.
    pub async fn delete_test(&self, config_id: &str, code_id: &str, test_id: &str) -> Result<(), ReleaseError> {
        match self.store.get_test(test_id).await? {
            Some(t) if t.config_id == config_id && t.code_id == code_id => {
                self.store.delete_test(test_id).await?;
                Ok(())
            }
            _ => Err(StoreError::NotFound(Missing::TestOf {
                code_id: code_id.to_owned(),
                test_id: test_id.to_owned(),
            })
            .into()),
        }
    }

    /// Runs a version's stored tests through the pool.
    pub async fn run_tests(&self, config_id: &str, code_id: &str) -> Result<TestRun, ReleaseError> {
        let version = Arc::new(self.version(config_id, code_id).await?);
        let cases = self.store.list_tests(code_id).await?;
        Ok(test_runs::run_all(&self.pool, &version, &cases).await)
    }

    /// Runs one stored test by its id (the original `GET /test/{id}`).
    pub async fn run_test(&self, test_id: &str) -> Result<CaseResult, ReleaseError> {
        let case = self
            .store
            .get_test(test_id)
            .await?
            .ok_or_else(|| StoreError::NotFound(Missing::Test(test_id.to_owned())))?;
        let version = Arc::new(self.version(&case.config_id, &case.code_id).await?);
        Ok(test_runs::run_case(&self.pool, &version, &case).await)
    }

    /// Gives the config a new secret; the old one keeps working for
    /// `grace`. Announced like any change, so every node's memory holds the
    /// new secret before the call returns here and soon after elsewhere.
    pub async fn rotate_secret(&self, config_id: &str, grace: Duration, actor: &str) -> Result<Config, ReleaseError> {
        let until = now_millis() + grace.as_millis() as i64;
        let secret = crate::secrets::random_token();
        let config = self.store.rotate_secret(config_id, &secret, until, actor).await?;
        self.announce(&config, None).await;
        Ok(config)
    }

    /// The config's release log, newest first.
    pub async fn events(&self, config_id: &str) -> Result<Vec<ReleaseEvent>, ReleaseError> {
        self.config(config_id).await?;
        Ok(self.store.list_events(config_id).await?)
    }

    /// Whether the store answers within `limit`; a hung store is unreachable.
    pub async fn store_reachable(&self, limit: std::time::Duration) -> bool {
        matches!(tokio::time::timeout(limit, self.store.ping()).await, Ok(Ok(())))
    }
}
