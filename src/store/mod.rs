//! Durable state behind one trait. The three backends (SQLite, PostgreSQL,
//! MySQL/MariaDB) share the SQL in `sql.rs` (sqlx's Any driver; the schema
//! keeps to types all read the same way) and differ in how they connect and
//! migrate, and in the dialect details `dialect.rs` names.

mod cases;
mod changes;
mod dialect;
mod direct;
mod health;
mod history;
mod mysql;
mod people;
mod plans;
mod postgres;
mod registry;
mod revisions;
mod rows;
mod sessions;
mod sql;
mod sqlite;
mod tx;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

pub use crate::domain::change::Change;
use crate::domain::health::{BreakRule, Evidence, ReportKind};
use crate::domain::model::{ErrorReport, ReleaseEvent, TestCase};
use crate::domain::params::ParamSpec;
use crate::domain::rollout::{Control, GateFigures, Plan};
use crate::domain::rules::PlatformRules;
use crate::domain::{Config, Lang, Meta, Version};
pub use changes::{Applying, Changes, Decided, Decision, NewChange};
pub use people::{NewToken, People};
pub use plans::{ACTOR as ROLLOUT_ACTOR, Advanced, NewPlan};
pub use registry::{Registry, StoredInstance};
pub use sessions::Sessions;
pub use sql::same_content;

/// Why a store call failed; rendered into a status and message at the edge.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// What was asked for does not exist.
    #[error("{0} not found")]
    NotFound(Missing),
    /// What was to be created exists already.
    #[error("{0} already exists")]
    Exists(String),
    /// A rollback with no earlier stable version to go to.
    #[error("config `{config_id}` has no earlier stable version to roll back to")]
    NoRollbackTarget {
        /// The config asked to roll back.
        config_id: String,
    },
    /// A rollback to a version that is marked broken.
    #[error("the earlier stable version `{code_id}` is marked broken; clear the mark before rolling back to it")]
    RollbackTargetBroken {
        /// The version a rollback would go to.
        code_id: String,
    },
    /// The database refused a value; its own message says which.
    #[error("{0}")]
    Refused(String),
    /// A gray release's share over 100 %.
    #[error("percentage {0} is over 100")]
    Percentage(u8),
    /// A rollout plan cannot do that from where it stands.
    #[error("rollout plan `{id}` is {state}")]
    PlanState {
        /// The plan.
        id: String,
        /// Where it stands.
        state: &'static str,
    },
    /// A change request that is no longer open.
    #[error("change request `{id}` is {state}")]
    ChangeState {
        /// The request.
        id: String,
        /// Where it stands.
        state: &'static str,
    },
    /// The database did not answer, or failed; the detail is for the log.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// A stored value the domain cannot read.
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
}

/// What a store call did not find, named for the message at the edge.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Missing {
    /// A config, by id.
    #[error("config `{0}`")]
    Config(String),
    /// A version of a config.
    #[error("version `{code_id}` of config `{config_id}`")]
    Version {
        /// The config it should belong to.
        config_id: String,
        /// The version's id.
        code_id: String,
    },
    /// A test case, by id.
    #[error("test `{0}`")]
    Test(String),
    /// A rollout plan, by id.
    #[error("rollout plan `{0}`")]
    Plan(String),
    /// A change request, by id.
    #[error("change request `{0}`")]
    Change(String),
    /// An API token, by name.
    #[error("token `{0}`")]
    Token(String),
    /// A test case of a version.
    #[error("test `{test_id}` of version `{code_id}`")]
    TestOf {
        /// The version it should belong to.
        code_id: String,
        /// The test's id.
        test_id: String,
    },
}

impl Missing {
    /// `Missing::Version` from borrowed ids.
    pub fn version(config_id: &str, code_id: &str) -> Self {
        Self::Version {
            config_id: config_id.to_owned(),
            code_id: code_id.to_owned(),
        }
    }
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        match &e {
            sqlx::Error::Database(db) if db.is_unique_violation() => Self::Exists(db.message().to_owned()),
            // SQLSTATE class 22, data exception: the value itself was refused
            // (PostgreSQL will not store a NUL byte in text, for one).
            sqlx::Error::Database(db) if db.code().is_some_and(|c| c.starts_with("22")) => {
                Self::Refused(db.message().to_owned())
            }
            sqlx::Error::ColumnDecode { .. } | sqlx::Error::Decode(_) | sqlx::Error::ColumnNotFound(_) => {
                Self::Corrupt(e.to_string())
            }
            _ => Self::Unavailable(e.to_string()),
        }
    }
}

#[derive(Debug, Clone)]
/// A config to create.
pub struct NewConfig {
    /// Its id (`validate_config_id`).
    pub id: String,
    /// For operators.
    pub description: String,
    /// The client secret it starts with.
    pub secret: String,
}

#[derive(Debug, Clone)]
/// A version to store, already checked (it compiles, its rules and schema
/// are valid).
pub struct NewVersion {
    /// The config it belongs to.
    pub config_id: String,
    /// The language of `source`.
    pub lang: Lang,
    /// The body of a function of `p`.
    pub source: String,
    /// Who may be served it.
    pub rules: Vec<PlatformRules>,
    /// The params a request must carry.
    pub params: Vec<ParamSpec>,
    /// The operator uploading it.
    pub created_by: String,
}

#[derive(Debug, Clone)]
/// A version brought from another service (`vane import`): kept under the
/// code id its clients know, with its health.
pub struct ImportedVersion {
    /// The version, checked as an upload is.
    pub new: NewVersion,
    /// The code id it had.
    pub code_id: String,
    /// Its counted reports so far.
    pub error_count: i64,
    /// Whether it was marked broken.
    pub broken: bool,
}

#[derive(Debug, Clone)]
/// A test case to store (`TestCase` without its id and time).
pub struct NewTestCase {
    /// The config of its version.
    pub config_id: String,
    /// The version it tests.
    pub code_id: String,
    /// For operators.
    pub name: String,
    /// The request metadata it runs with.
    pub meta: Meta,
    /// The params it runs with.
    pub params: serde_json::Value,
    /// The result it must give.
    pub expected: serde_json::Value,
}

#[derive(Debug, Clone)]
/// A report to store (`ErrorReport` without its id, time and outcome).
pub struct NewReport {
    /// The config reported against.
    pub config_id: String,
    /// The version reported against.
    pub code_id: String,
    /// When the client saw it, as it says.
    pub err_time: i64,
    /// What the client said.
    pub message: String,
    /// What went wrong, as the reporter saw it.
    pub kind: ReportKind,
    /// `Source::key` of who sent it.
    pub source: String,
    /// It may count: its kind is the version's fault and (rate rule) its
    /// source was served the version. It still does not if the source has
    /// already counted in the window.
    pub candidate: bool,
}

/// How a counted report is judged (`domain::health`).
#[derive(Debug, Clone, Copy)]
pub struct Breaking {
    /// When counted reports break a version.
    pub rule: BreakRule,
    /// The window sources are counted over, in seconds.
    pub window_s: u64,
    /// Distinct networks served the version in the window, across nodes;
    /// `None` when other nodes' records could not be read, and the rate rule
    /// then breaks nothing until they can.
    pub served_networks: Option<u64>,
}

/// Where one config stands, as a poll reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Revision {
    /// The config.
    pub config_id: String,
    /// Its revision now.
    pub revision: i64,
    /// Unix milliseconds of the last change.
    pub updated_at: i64,
}

/// What storing a report did.
#[derive(Debug, Clone)]
pub struct ReportOutcome {
    /// Whether this report counted toward breaking the version.
    pub counted: bool,
    /// The version's counted reports ever, this one included (0 for a
    /// report that was not a candidate: it was only stored).
    pub error_count: i64,
    /// Distinct sources counted in the window, this one included.
    pub counted_sources: i64,
    /// The break this report caused, if it did.
    pub broke: Option<Broke>,
}

/// A version broken by reports, in the same transaction as the report.
#[derive(Debug, Clone)]
pub struct Broke {
    /// The config after the break (and the rollback, if there was one).
    pub config: Config,
    /// Why it broke.
    pub evidence: Evidence,
    /// The broken version was stable and the release went back to this one.
    pub rolled_back_to: Option<String>,
    /// The broken version was stable with no healthy earlier one, and is
    /// still served (rate rule): an operator must act.
    pub still_served: bool,
}

/// Reports of one kind that did or did not count, in a span of time.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct ReportCount {
    /// Their kind.
    pub kind: ReportKind,
    /// Whether they counted toward breaking the version.
    pub counted: bool,
    /// How many reports.
    pub reports: i64,
    /// From how many distinct sources.
    pub sources: i64,
}

/// Durable state: configs, versions, the release log, test cases, reports.
/// Every write that clients must see bumps the config's revision and
/// appends a release event in the same transaction.
#[async_trait]
pub trait Store: People + Changes + Sessions + Registry + Send + Sync + 'static {
    /// Succeeds when the store answers a trivial query.
    async fn ping(&self) -> Result<(), StoreError>;
    /// Creates a config at revision 1 with a `created` event by `actor`.
    async fn create_config(&self, new: NewConfig, actor: &str) -> Result<Config, StoreError>;
    /// A config by id, if it exists.
    async fn get_config(&self, id: &str) -> Result<Option<Config>, StoreError>;
    /// A config by id, or `NotFound` naming it.
    async fn existing_config(&self, id: &str) -> Result<Config, StoreError> {
        self.get_config(id)
            .await?
            .ok_or_else(|| StoreError::NotFound(Missing::Config(id.to_owned())))
    }
    /// The revisions of the configs named that exist: what `cached: false`
    /// fetches ask, in one read for all the configs they wait on.
    async fn config_revisions(&self, ids: &[String]) -> Result<Vec<(String, i64)>, StoreError>;
    /// Every config's revision, for nodes that poll for changes.
    async fn revisions(&self) -> Result<Vec<Revision>, StoreError>;
    /// Every config, by id.
    async fn list_configs(&self) -> Result<Vec<Config>, StoreError>;
    /// Changes what clients do not see (no revision bump, no event).
    async fn set_description(&self, id: &str, description: &str) -> Result<Config, StoreError>;
    /// Stores a version under a new code id (versions never change after),
    /// with an `uploaded` event by its `created_by` in the same transaction.
    async fn create_version(&self, new: NewVersion) -> Result<Version, StoreError>;
    /// Stores an imported version under its own code id; `Exists` when the id
    /// is taken. Its broken mark is stored as it was, without an event.
    async fn import_version(&self, imported: ImportedVersion) -> Result<Version, StoreError>;
    /// A version by code id, if it exists.
    async fn get_version(&self, code_id: &str) -> Result<Option<Version>, StoreError>;
    /// A config's versions, oldest first.
    async fn list_versions(&self, config_id: &str) -> Result<Vec<Version>, StoreError>;
    /// Applies `change` atomically; a change to the state already in force is
    /// a no-op that returns the config unchanged.
    async fn apply(&self, config_id: &str, change: Change, actor: &str) -> Result<Config, StoreError>;
    /// The release log, newest first.
    async fn list_events(&self, config_id: &str) -> Result<Vec<ReleaseEvent>, StoreError>;
    /// Stores a test case of a version of the config.
    async fn create_test(&self, new: NewTestCase) -> Result<TestCase, StoreError>;
    /// Stores an imported test case under its own id; `Exists` when the id is
    /// taken.
    async fn import_test(&self, new: NewTestCase, test_id: &str) -> Result<TestCase, StoreError>;
    /// A version's test cases, oldest first.
    async fn list_tests(&self, code_id: &str) -> Result<Vec<TestCase>, StoreError>;
    /// A test case by id, if it exists.
    async fn get_test(&self, test_id: &str) -> Result<Option<TestCase>, StoreError>;
    /// Whether there was such a test to delete.
    async fn delete_test(&self, test_id: &str) -> Result<bool, StoreError>;
    /// Stores a report; a candidate that is its source's first counted
    /// report in the window counts. The report that makes the tally enough
    /// marks the version broken (an event by `reports` with the evidence)
    /// and, if it was the stable version, rolls back to the latest earlier
    /// one not broken, all in one transaction.
    async fn add_report(&self, report: NewReport, breaking: &Breaking) -> Result<ReportOutcome, StoreError>;
    /// A version's latest reports, newest first.
    async fn list_reports(&self, code_id: &str, limit: i64) -> Result<Vec<ErrorReport>, StoreError>;
    /// A version's reports received since `since_ms`, by kind and whether
    /// they counted.
    async fn report_counts(&self, code_id: &str, since_ms: i64) -> Result<Vec<ReportCount>, StoreError>;
    /// Gives the config a new secret; the old one is accepted until
    /// `grace_until_ms`. A change clients' nodes must see (revision, event).
    async fn rotate_secret(
        &self,
        config_id: &str,
        secret: &str,
        grace_until_ms: i64,
        actor: &str,
    ) -> Result<Config, StoreError>;
    /// Stores an active rollout plan; a config holds one open plan at most
    /// (`Exists` otherwise).
    async fn create_plan(&self, new: NewPlan) -> Result<Plan, StoreError>;
    /// A rollout plan by id.
    async fn get_plan(&self, id: &str) -> Result<Option<Plan>, StoreError>;
    /// A config's plans, or every open plan, newest first.
    async fn list_plans(&self, config_id: Option<&str>) -> Result<Vec<Plan>, StoreError>;
    /// When the earliest active plan is due (unix ms), if any is.
    async fn next_plan_due(&self) -> Result<Option<i64>, StoreError>;
    /// Active plans due at `now_ms`.
    async fn due_plans(&self, now_ms: i64) -> Result<Vec<Plan>, StoreError>;
    /// Claims a due plan and applies its next move in one transaction, the
    /// change and its event by `rollout` included; `None` when it is no
    /// longer due (another node applied it, or it was paused).
    async fn advance_plan(
        &self,
        id: &str,
        now_ms: i64,
        gate: Option<GateFigures>,
    ) -> Result<Option<Advanced>, StoreError>;
    /// Pauses, resumes or aborts a plan for `actor`, with its event
    /// (`plan_paused`, `plan_resumed`, `plan_aborted`) in the same transaction.
    async fn control_plan(&self, id: &str, control: Control, actor: &str) -> Result<Advanced, StoreError>;
}

/// How long a query waits for a pooled connection before the store counts as
/// unavailable (sqlx's default of 30 s would hold requests far too long).
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);

/// What every backend's pool starts from.
fn pool_options(max_connections: u32) -> sqlx::any::AnyPoolOptions {
    sqlx::any::AnyPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(ACQUIRE_TIMEOUT)
}

/// A failed migration, which leaves the store unusable.
fn migrating(e: sqlx::migrate::MigrateError) -> StoreError {
    StoreError::Unavailable(format!("migrating: {e}"))
}

/// Opens the store named by `url`, creating and migrating it as needed.
pub async fn connect(url: &str, max_connections: u32) -> Result<Arc<dyn Store>, StoreError> {
    sqlx::any::install_default_drivers();
    let store = if url.starts_with("sqlite:") {
        sqlite::connect(url, max_connections).await?
    } else if url.starts_with("mysql:") {
        mysql::connect(url, max_connections).await?
    } else {
        postgres::connect(url, max_connections).await?
    };
    Ok(Arc::new(store))
}
