//! A Store that wraps the real one and misbehaves on demand: it counts the
//! revision reads, slows them down, fails every call, or holds every call
//! until released, as a store outage does.

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::watch;
use vane::domain::access::{ApiToken, Session};
use vane::domain::approval::ChangeRequest;
use vane::domain::model::{ErrorReport, ReleaseEvent, TestCase};
use vane::domain::registry::Instance;
use vane::domain::rollout::{Control, GateFigures, Plan};
use vane::domain::{Config, Version};
use vane::store::{
    Advanced, Breaking, Change, ImportedVersion, NewConfig, NewPlan, NewReport, NewTestCase, NewVersion, ReportCount,
    ReportOutcome, Revision, Store, StoreError,
};
use vane::store::{Changes, Decided, Decision, NewChange, NewToken, People, Registry, Sessions, StoredInstance};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Mode {
    Normal = 0,
    /// Every call fails at once, as with the database refusing connections.
    Fail = 1,
    /// Every call waits until the mode changes, as with a hung database.
    Block = 2,
}

pub struct FaultyStore {
    inner: Arc<dyn Store>,
    mode: AtomicU8,
    changed: watch::Sender<()>,
    revision_delay_ms: AtomicU64,
    revision_reads: AtomicU64,
}

impl FaultyStore {
    pub fn new(inner: Arc<dyn Store>) -> Arc<Self> {
        Arc::new(Self {
            inner,
            mode: AtomicU8::new(Mode::Normal as u8),
            changed: watch::channel(()).0,
            revision_delay_ms: AtomicU64::new(0),
            revision_reads: AtomicU64::new(0),
        })
    }

    /// The real store, for changes made behind the node's back.
    pub fn inner(&self) -> &Arc<dyn Store> {
        &self.inner
    }

    pub fn set_mode(&self, mode: Mode) {
        self.mode.store(mode as u8, Ordering::SeqCst);
        self.changed.send_replace(());
    }

    pub fn delay_revision_reads(&self, delay: Duration) {
        self.revision_delay_ms.store(delay.as_millis() as u64, Ordering::SeqCst);
    }

    pub fn revision_reads(&self) -> u64 {
        self.revision_reads.load(Ordering::SeqCst)
    }

    fn mode(&self) -> Mode {
        match self.mode.load(Ordering::SeqCst) {
            1 => Mode::Fail,
            2 => Mode::Block,
            _ => Mode::Normal,
        }
    }

    /// Passes in normal mode, fails in `Fail`, waits out `Block`.
    async fn gate(&self) -> Result<(), StoreError> {
        let mut changed = self.changed.subscribe();
        loop {
            match self.mode() {
                Mode::Normal => return Ok(()),
                Mode::Fail => return Err(StoreError::Unavailable("the test cut the store off".into())),
                Mode::Block => {
                    let _ = changed.changed().await;
                }
            }
        }
    }
}

#[async_trait]
impl People for FaultyStore {
    async fn create_token(&self, new: NewToken) -> Result<ApiToken, StoreError> {
        self.gate().await?;
        self.inner.create_token(new).await
    }
    async fn list_tokens(&self) -> Result<Vec<ApiToken>, StoreError> {
        self.gate().await?;
        self.inner.list_tokens().await
    }
    async fn delete_token(&self, name: &str) -> Result<(), StoreError> {
        self.gate().await?;
        self.inner.delete_token(name).await
    }
    async fn token_by_hash(&self, hash: &str) -> Result<Option<ApiToken>, StoreError> {
        self.gate().await?;
        self.inner.token_by_hash(hash).await
    }
}

#[async_trait]
impl Changes for FaultyStore {
    async fn set_approvals_required(&self, config_id: &str, n: u32, actor: &str) -> Result<Config, StoreError> {
        self.gate().await?;
        self.inner.set_approvals_required(config_id, n, actor).await
    }
    async fn open_change(&self, new: NewChange) -> Result<ChangeRequest, StoreError> {
        self.gate().await?;
        self.inner.open_change(new).await
    }
    async fn get_change(&self, id: &str) -> Result<Option<ChangeRequest>, StoreError> {
        self.gate().await?;
        self.inner.get_change(id).await
    }
    async fn list_changes(&self, config_id: Option<&str>) -> Result<Vec<ChangeRequest>, StoreError> {
        self.gate().await?;
        self.inner.list_changes(config_id).await
    }
    async fn decide_change(&self, id: &str, decision: Decision, who: &str) -> Result<Decided, StoreError> {
        self.gate().await?;
        self.inner.decide_change(id, decision, who).await
    }
}

#[async_trait]
impl Registry for FaultyStore {
    async fn put_instance(&self, service: &str, instance: &Instance, node: &str) -> Result<(), StoreError> {
        self.gate().await?;
        self.inner.put_instance(service, instance, node).await
    }
    async fn remove_instance(&self, service: &str, instance_id: &str, node: Option<&str>) -> Result<bool, StoreError> {
        self.gate().await?;
        self.inner.remove_instance(service, instance_id, node).await
    }
    async fn registry_revision(&self) -> Result<i64, StoreError> {
        self.gate().await?;
        self.inner.registry_revision().await
    }
    async fn node_alive(&self, node: &str, until: i64, forget_before: i64) -> Result<(), StoreError> {
        self.gate().await?;
        self.inner.node_alive(node, until, forget_before).await
    }
    async fn alive_nodes(&self, now: i64) -> Result<Vec<String>, StoreError> {
        self.gate().await?;
        self.inner.alive_nodes(now).await
    }
    async fn live_instances(&self, now: i64) -> Result<Vec<StoredInstance>, StoreError> {
        self.gate().await?;
        self.inner.live_instances(now).await
    }
}

#[async_trait]
impl Sessions for FaultyStore {
    async fn create_session(&self, id_hash: &str, session: &Session) -> Result<(), StoreError> {
        self.gate().await?;
        self.inner.create_session(id_hash, session).await
    }
    async fn session_by_hash(&self, id_hash: &str) -> Result<Option<Session>, StoreError> {
        self.gate().await?;
        self.inner.session_by_hash(id_hash).await
    }
    async fn delete_session(&self, id_hash: &str) -> Result<bool, StoreError> {
        self.gate().await?;
        self.inner.delete_session(id_hash).await
    }
    async fn end_sessions(&self, who: Option<&str>) -> Result<u64, StoreError> {
        self.gate().await?;
        self.inner.end_sessions(who).await
    }
}

#[async_trait]
impl Store for FaultyStore {
    async fn ping(&self) -> Result<(), StoreError> {
        self.gate().await?;
        self.inner.ping().await
    }
    async fn create_config(&self, new: NewConfig, actor: &str) -> Result<Config, StoreError> {
        self.gate().await?;
        self.inner.create_config(new, actor).await
    }
    async fn get_config(&self, id: &str) -> Result<Option<Config>, StoreError> {
        self.gate().await?;
        self.inner.get_config(id).await
    }
    async fn config_revisions(&self, ids: &[String]) -> Result<Vec<(String, i64)>, StoreError> {
        self.revision_reads.fetch_add(1, Ordering::SeqCst);
        let delay = self.revision_delay_ms.load(Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(delay)).await;
        self.gate().await?;
        self.inner.config_revisions(ids).await
    }
    async fn revisions(&self) -> Result<Vec<Revision>, StoreError> {
        self.gate().await?;
        self.inner.revisions().await
    }
    async fn list_configs(&self) -> Result<Vec<Config>, StoreError> {
        self.gate().await?;
        self.inner.list_configs().await
    }
    async fn set_description(&self, id: &str, description: &str) -> Result<Config, StoreError> {
        self.gate().await?;
        self.inner.set_description(id, description).await
    }
    async fn create_version(&self, new: NewVersion) -> Result<Version, StoreError> {
        self.gate().await?;
        self.inner.create_version(new).await
    }
    async fn import_version(&self, imported: ImportedVersion) -> Result<Version, StoreError> {
        self.gate().await?;
        self.inner.import_version(imported).await
    }
    async fn get_version(&self, code_id: &str) -> Result<Option<Version>, StoreError> {
        self.gate().await?;
        self.inner.get_version(code_id).await
    }
    async fn list_versions(&self, config_id: &str) -> Result<Vec<Version>, StoreError> {
        self.gate().await?;
        self.inner.list_versions(config_id).await
    }
    async fn apply(&self, config_id: &str, change: Change, actor: &str) -> Result<Config, StoreError> {
        self.gate().await?;
        self.inner.apply(config_id, change, actor).await
    }
    async fn list_events(&self, config_id: &str) -> Result<Vec<ReleaseEvent>, StoreError> {
        self.gate().await?;
        self.inner.list_events(config_id).await
    }
    async fn create_test(&self, new: NewTestCase) -> Result<TestCase, StoreError> {
        self.gate().await?;
        self.inner.create_test(new).await
    }
    async fn import_test(&self, new: NewTestCase, test_id: &str) -> Result<TestCase, StoreError> {
        self.gate().await?;
        self.inner.import_test(new, test_id).await
    }
    async fn list_tests(&self, code_id: &str) -> Result<Vec<TestCase>, StoreError> {
        self.gate().await?;
        self.inner.list_tests(code_id).await
    }
    async fn get_test(&self, test_id: &str) -> Result<Option<TestCase>, StoreError> {
        self.gate().await?;
        self.inner.get_test(test_id).await
    }
    async fn delete_test(&self, test_id: &str) -> Result<bool, StoreError> {
        self.gate().await?;
        self.inner.delete_test(test_id).await
    }
    async fn add_report(&self, report: NewReport, breaking: &Breaking) -> Result<ReportOutcome, StoreError> {
        self.gate().await?;
        self.inner.add_report(report, breaking).await
    }
    async fn list_reports(&self, code_id: &str, limit: i64) -> Result<Vec<ErrorReport>, StoreError> {
        self.gate().await?;
        self.inner.list_reports(code_id, limit).await
    }
    async fn report_counts(&self, code_id: &str, since_ms: i64) -> Result<Vec<ReportCount>, StoreError> {
        self.gate().await?;
        self.inner.report_counts(code_id, since_ms).await
    }
    async fn rotate_secret(
        &self,
        config_id: &str,
        secret: &str,
        grace_until_ms: i64,
        actor: &str,
    ) -> Result<Config, StoreError> {
        self.gate().await?;
        self.inner.rotate_secret(config_id, secret, grace_until_ms, actor).await
    }
    async fn create_plan(&self, new: NewPlan) -> Result<Plan, StoreError> {
        self.gate().await?;
        self.inner.create_plan(new).await
    }
    async fn get_plan(&self, id: &str) -> Result<Option<Plan>, StoreError> {
        self.gate().await?;
        self.inner.get_plan(id).await
    }
    async fn list_plans(&self, config_id: Option<&str>) -> Result<Vec<Plan>, StoreError> {
        self.gate().await?;
        self.inner.list_plans(config_id).await
    }
    async fn next_plan_due(&self) -> Result<Option<i64>, StoreError> {
        self.gate().await?;
        self.inner.next_plan_due().await
    }
    async fn due_plans(&self, now_ms: i64) -> Result<Vec<Plan>, StoreError> {
        self.gate().await?;
        self.inner.due_plans(now_ms).await
    }
    async fn advance_plan(
        &self,
        id: &str,
        now_ms: i64,
        gate: Option<GateFigures>,
    ) -> Result<Option<Advanced>, StoreError> {
        self.gate().await?;
        self.inner.advance_plan(id, now_ms, gate).await
    }
    async fn control_plan(&self, id: &str, control: Control, actor: &str) -> Result<Advanced, StoreError> {
        self.gate().await?;
        self.inner.control_plan(id, control, actor).await
    }
}
