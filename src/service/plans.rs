//! Rollout plans as operators and the scheduler use them. Not an actor: a
//! plan's moves are claimed and applied in the store's transactions, then
//! announced like any change (`ReleasesHandle::announce`); the Scheduler
//! actor (`actors/scheduler.rs`) only decides when to ask.

use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use tokio::sync::Notify;

use super::releases::{ReleaseError, ReleasesHandle};
use crate::actors::scheduler::{DueMoves, POLL, RETRY};
use crate::domain::model::now_millis;
use crate::domain::rollout::{self, Control, Plan, PlanError, PlanRequest, PlanState};
use crate::service::reports::{ReportError, ReportsHandle};
use crate::store::{Advanced, Missing, NewPlan, Store, StoreError};

/// Why a plan operation was refused; rendered at the edge.
#[derive(Debug, thiserror::Error)]
pub enum PlanOpError {
    /// The request is malformed (422, naming the field).
    #[error(transparent)]
    Request(#[from] PlanError),
    /// The version, its tests or the store refused.
    #[error(transparent)]
    Release(#[from] ReleaseError),
}

impl From<StoreError> for PlanOpError {
    fn from(e: StoreError) -> Self {
        Self::Release(ReleaseError::Store(e))
    }
}

/// Plans, behind a cloneable handle.
#[derive(Clone)]
pub struct PlansHandle {
    store: Arc<dyn Store>,
    releases: ReleasesHandle,
    /// The health signal each bake is judged by.
    reports: ReportsHandle,
    /// Wakes this node's Scheduler when a plan is made or controlled.
    wake: Arc<Notify>,
}

impl PlansHandle {
    /// Plans over `store`, announcing their changes through `releases`
    /// and judging bakes by `reports`.
    pub fn new(store: Arc<dyn Store>, releases: ReleasesHandle, reports: ReportsHandle, wake: Arc<Notify>) -> Self {
        Self {
            store,
            releases,
            reports,
            wake,
        }
    }

    /// Checks and stores a plan for a version of the config. Its stored
    /// tests must pass, unless `force`.
    pub async fn create(&self, config_id: &str, request: PlanRequest, actor: &str) -> Result<Plan, PlanOpError> {
        let new = self.prepare(config_id, request, actor).await?;
        if !new.forced {
            let run = self.releases.run_tests(config_id, &new.code_id).await?;
            if !run.all_passed() {
                return Err(ReleaseError::TestsFailed(run).into());
            }
        }
        let plan = self.store.create_plan(new).await?;
        self.wake();
        Ok(plan)
    }

    /// Checks a plan request against the config (it exists, `code_id` is
    /// its version, the steps expand) and makes the plan to store; no tests
    /// run here.
    pub async fn prepare(&self, config_id: &str, request: PlanRequest, actor: &str) -> Result<NewPlan, PlanOpError> {
        let now = now_millis();
        // An unknown config is 404, not a `code_id` that is not its version.
        self.releases.config(config_id).await?;
        let steps = rollout::expand(&request, now)?;
        match self.releases.version(config_id, &request.code_id).await {
            Err(ReleaseError::Store(StoreError::NotFound(Missing::Version { .. }))) => {
                let problem = format!("is not a version of config `{config_id}`");
                return Err(PlanError::new("code_id", problem).into());
            }
            other => other?,
        };
        Ok(NewPlan {
            config_id: config_id.to_owned(),
            gate_min_sources: request.gate_floor(),
            code_id: request.code_id,
            steps,
            forced: request.force,
            start_at: request.start_at.unwrap_or(now).max(now),
            created_by: actor.to_owned(),
        })
    }

    /// Wakes this node's Scheduler: a plan was made or controlled.
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// A plan of the config.
    pub async fn get(&self, config_id: &str, id: &str) -> Result<Plan, PlanOpError> {
        match self.store.get_plan(id).await? {
            Some(plan) if plan.config_id == config_id => Ok(plan),
            _ => Err(StoreError::NotFound(Missing::Plan(id.to_owned())).into()),
        }
    }

    /// A config's plans, newest first, or (no config) every open plan.
    pub async fn list(&self, config_id: Option<&str>) -> Result<Vec<Plan>, PlanOpError> {
        if let Some(config_id) = config_id {
            self.releases.config(config_id).await?;
        }
        Ok(self.store.list_plans(config_id).await?)
    }

    /// Pauses, resumes or aborts a plan of the config.
    pub async fn control(&self, config_id: &str, id: &str, control: Control, actor: &str) -> Result<Plan, PlanOpError> {
        self.get(config_id, id).await?;
        let advanced = self.store.control_plan(id, control, actor).await?;
        self.wake.notify_one();
        Ok(self.announced(advanced).await)
    }

    /// When the next active plan is due, if any is.
    pub async fn next_due(&self) -> Result<Option<i64>, StoreError> {
        self.store.next_plan_due().await
    }

    /// Applies every due plan's move, judging each bake by the reports;
    /// returns the plans that moved here (another node may have taken some).
    pub async fn advance_due(&self) -> Result<Vec<Plan>, ReportError> {
        let now = now_millis();
        let mut moved = Vec::new();
        for plan in self.store.due_plans(now).await? {
            // One plan that fails is logged and tried at the next wake; the
            // others still move.
            match self.advance(&plan, now).await {
                Ok(Some(advanced)) => moved.push(self.announced(advanced).await),
                Ok(None) => {}
                Err(error) => tracing::warn!(plan = plan.id, %error, "rollout plan not advanced"),
            }
        }
        Ok(moved)
    }

    async fn advance(&self, plan: &Plan, now: i64) -> Result<Option<Advanced>, ReportError> {
        let gate = match plan.step_started_at {
            Some(since) if plan.applied > 0 => {
                Some(self.reports.gate(&plan.code_id, since, plan.gate_min_sources).await?)
            }
            _ => None,
        };
        Ok(self.store.advance_plan(&plan.id, now, gate).await?)
    }

    async fn announced(&self, advanced: Advanced) -> Plan {
        if let Some(config) = &advanced.config {
            self.releases.announce(config, None).await;
        }
        advanced.plan
    }
}

impl DueMoves for PlansHandle {
    fn apply_due(&self) -> BoxFuture<'_, Duration> {
        Box::pin(async move {
            match self.advance_due().await {
                Ok(moved) => {
                    for plan in &moved {
                        tracing::info!(
                            plan = plan.id,
                            config_id = plan.config_id,
                            state = plan.state.as_str(),
                            applied = plan.applied,
                            of = plan.steps.len(),
                            "rollout plan moved"
                        );
                        crate::metrics::plan_moved(plan.state.as_str());
                    }
                }
                Err(error) => {
                    tracing::warn!(%error, "rollout plans not advanced; trying again");
                    return RETRY;
                }
            }
            if let Ok(open) = self.list(None).await {
                let active = open.iter().filter(|p| p.state == PlanState::Active).count();
                crate::metrics::open_plans(active, open.len() - active);
            }
            match self.next_due().await {
                Ok(Some(at)) => Duration::from_millis((at - now_millis()).clamp(0, POLL.as_millis() as i64) as u64),
                Ok(None) => POLL,
                Err(error) => {
                    tracing::warn!(%error, "could not read when the next rollout step is due");
                    RETRY
                }
            }
        })
    }
}
