//! Four eyes: releases, grays, rollbacks, status changes and plan starts on
//! a config that requires approvals become change requests; the last
//! approval runs the test gate again and applies the change in the store's
//! transaction. Automatic moves (a break by reports, a plan's steps) never
//! pass here.

use std::sync::Arc;

use serde::Serialize;

use super::plans::{PlanOpError, PlansHandle};
use super::releases::{ReleaseError, ReleasesHandle};
use super::test_runs::TestRun;
use crate::domain::Config;
use crate::domain::access::{Caller, Role};
use crate::domain::approval::{ApprovalRefusal, ChangeRequest, ChangeState, Proposal, may_approve};
use crate::domain::model::now_millis;
use crate::domain::rollout::{Plan, PlanRequest};
use crate::store::{Applying, Decided, Decision, Missing, NewChange, Store, StoreError};

/// Why a change request operation was refused; rendered at the edge.
#[derive(Debug, thiserror::Error)]
pub enum ApprovalError {
    /// The versions, tests or store refused.
    #[error(transparent)]
    Release(#[from] ReleaseError),
    /// A plan request that cannot start.
    #[error(transparent)]
    Plan(#[from] PlanOpError),
    /// Four eyes means someone else, once (403).
    #[error(transparent)]
    NotYours(#[from] ApprovalRefusal),
    /// Only the author cancels (403).
    #[error("only the author (`{0}`) can cancel a change request")]
    NotAuthor(String),
    /// The caller lacks the role over the request's config (403).
    #[error("this needs the `{role}` role over config `{config_id}`")]
    Role {
        /// The role needed.
        role: Role,
        /// Over which config.
        config_id: String,
    },
    /// A rejection or break glass with no reason, or one past
    /// `MOST_REASON_CHARS` (400).
    #[error("`reason` must say why, in at most {MOST_REASON_CHARS} characters")]
    Reason,
    /// The version's stored tests fail at the last approval (409); the
    /// request stays open.
    #[error("{} of the version's {} stored tests fail now; the request stays open: fix the tests, or reject it and ask again with `force: true`", .0.failed, .0.failed + .0.passed)]
    GateFailed(TestRun),
    /// The config changed since the request was opened (409).
    #[error("config `{}` changed since change request `{}` was opened; it is stale and applies nothing", .0.config_id, .0.id)]
    Stale(Box<ChangeRequest>),
}

impl From<StoreError> for ApprovalError {
    fn from(e: StoreError) -> Self {
        Self::Release(ReleaseError::Store(e))
    }
}

/// What asking for a change did.
#[derive(Debug)]
pub enum Held {
    /// The config needs no approvals: go on as before.
    Proceed,
    /// A change request waits for approvals (202).
    Opened(Box<ChangeRequest>),
    /// Applied at once (break glass).
    Applied(Box<Applied>),
}

/// A change request applied.
#[derive(Debug, Serialize)]
pub struct Applied {
    /// The request afterwards.
    pub change_request: ChangeRequest,
    /// The config afterwards.
    pub config: Option<Config>,
    /// The plan it started.
    pub plan: Option<Plan>,
}

/// A change request with what it would do.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Details {
    /// The request.
    pub change_request: ChangeRequest,
    /// The proposal's version against the stable one, if it names a version.
    pub diff: Option<VersionDiff>,
    /// The stored tests of the proposal's version, run now.
    #[schema(value_type = Option<Object>)]
    pub tests: Option<TestRun>,
}

/// What a proposed version changes against the stable one.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct VersionDiff {
    /// The stable version now, if there is one.
    pub from: Option<String>,
    /// The proposed version.
    pub to: String,
    /// Unified diff of the sources.
    pub source: String,
    /// Unified diff of the rules (pretty JSON).
    pub rules: String,
    /// Unified diff of the parameter schema (pretty JSON).
    pub params: String,
}

/// Change requests, behind a cloneable handle.
#[derive(Clone)]
pub struct ApprovalsHandle {
    store: Arc<dyn Store>,
    releases: ReleasesHandle,
    plans: PlansHandle,
}

/// The longest reason kept: a reason is a sentence, and every listing of
/// requests carries it.
pub const MOST_REASON_CHARS: usize = 1000;

fn check_reason(reason: &str) -> Result<(), ApprovalError> {
    match reason.trim().is_empty() || reason.chars().count() > MOST_REASON_CHARS {
        true => Err(ApprovalError::Reason),
        false => Ok(()),
    }
}

fn unified(from: &str, to: &str) -> String {
    similar::TextDiff::from_lines(from, to)
        .unified_diff()
        .context_radius(3)
        .header("stable", "proposed")
        .to_string()
}

fn pretty(value: &impl Serialize) -> String {
    serde_json::to_string_pretty(value).unwrap_or_default() + "\n"
}

impl ApprovalsHandle {
    /// Change requests over `store`, applied through `releases` and `plans`.
    pub fn new(store: Arc<dyn Store>, releases: ReleasesHandle, plans: PlansHandle) -> Self {
        Self { store, releases, plans }
    }

    /// What `proposal` applies, checked now so a request that could never
    /// apply is refused when it is asked for.
    async fn applying(&self, config_id: &str, proposal: &Proposal, author: &str) -> Result<Applying, ApprovalError> {
        if let Some(change) = proposal.change() {
            if let Some(code_id) = proposal.code_id() {
                self.releases.version(config_id, code_id).await?;
            }
            return Ok(Applying::Change(change));
        }
        let Proposal::Plan { request } = proposal else {
            return Err(StoreError::Refused(format!("`{}` neither a change nor a plan", config_id)).into());
        };
        let mut request = request.clone();
        // A start time that passed while the request waited: it starts now.
        if request
            .get("start_at")
            .and_then(|at| at.as_f64())
            .is_some_and(|at| at < now_millis() as f64)
        {
            request.as_object_mut().map(|r| r.remove("start_at"));
        }
        let request: PlanRequest = serde_json::from_value(request)
            .map_err(|e| PlanOpError::Request(crate::domain::rollout::PlanError::new("body", e.to_string())))?;
        Ok(Applying::Plan(self.plans.prepare(config_id, request, author).await?))
    }

    /// Holds `proposal` for approvals if the config requires them; with
    /// `break_glass` (an admin's reason), applies it at once, recorded.
    pub async fn hold(
        &self,
        config_id: &str,
        proposal: Proposal,
        caller: &Caller,
        break_glass: Option<String>,
    ) -> Result<Held, ApprovalError> {
        let config = self.releases.config(config_id).await?;
        // Nothing to approve: no approvals asked, or the change is in force
        // already (the plain path answers with the config as it stands).
        if config.approvals_required == 0 || proposal.in_force(&config) {
            return Ok(Held::Proceed);
        }
        if let Some(reason) = &break_glass {
            check_reason(reason)?;
        }
        let applying = self.applying(config_id, &proposal, &caller.who).await?;
        // A version whose tests fail now is refused now, as without
        // approvals; the last approval runs them again.
        self.gate(config_id, &proposal).await?;
        let new = NewChange {
            config_id: config_id.to_owned(),
            proposal,
            author: caller.who.clone(),
        };
        let request = self.store.open_change(new).await?;
        let Some(reason) = break_glass else {
            return Ok(Held::Opened(Box::new(request)));
        };
        let decision = Decision::BreakGlass { applying, reason };
        let decided = self.store.decide_change(&request.id, decision, &caller.who).await?;
        Ok(Held::Applied(Box::new(self.settle(decided).await?)))
    }

    /// The proposal's stored tests must pass (unless it is forced).
    async fn gate(&self, config_id: &str, proposal: &Proposal) -> Result<(), ApprovalError> {
        if let Some(code_id) = proposal.gated_version() {
            let run = self.releases.run_tests(config_id, &code_id).await?;
            if !run.all_passed() {
                return Err(ReleaseError::TestsFailed(run).into());
            }
        }
        Ok(())
    }

    /// The gate at the last approval: a failure leaves the request open.
    async fn gate_again(&self, request: &ChangeRequest) -> Result<(), ApprovalError> {
        match self.gate(&request.config_id, &request.proposal).await {
            Err(ApprovalError::Release(ReleaseError::TestsFailed(run))) => Err(ApprovalError::GateFailed(run)),
            other => other,
        }
    }

    /// Announces what an applied request changed; a stale one is refused.
    async fn settle(&self, decided: Decided) -> Result<Applied, ApprovalError> {
        match decided {
            Decided::Applied { request, config, plan } => {
                let config = match config {
                    Some(config) => {
                        self.releases.announce(&config, None).await;
                        Some(*config)
                    }
                    // In force already: the config as it stands.
                    None if plan.is_none() => Some(self.releases.config(&request.config_id).await?),
                    None => None,
                };
                if plan.is_some() {
                    self.plans.wake();
                }
                Ok(Applied {
                    change_request: request,
                    config,
                    plan: plan.map(|p| *p),
                })
            }
            Decided::Stale(request) => Err(ApprovalError::Stale(Box::new(request))),
            Decided::Approved(request) | Decided::Closed(request) => Ok(Applied {
                change_request: request,
                config: None,
                plan: None,
            }),
            // Only an approval asks for the gate, and `approve` runs it first.
            Decided::GateNeeded => {
                Err(StoreError::Refused("the test gate did not run before the last approval".into()).into())
            }
        }
    }

    /// A request, or 404.
    pub async fn get(&self, id: &str) -> Result<ChangeRequest, ApprovalError> {
        Ok(self
            .store
            .get_change(id)
            .await?
            .ok_or_else(|| StoreError::NotFound(Missing::Change(id.to_owned())))?)
    }

    /// A request the caller may act on with `role` over its config.
    async fn get_as(&self, id: &str, caller: &Caller, role: Role) -> Result<ChangeRequest, ApprovalError> {
        let request = self.get(id).await?;
        if !caller.may(Role::Viewer, &request.config_id) {
            // Outside the grant, it does not exist for them.
            return Err(StoreError::NotFound(Missing::Change(id.to_owned())).into());
        }
        if !caller.may(role, &request.config_id) {
            return Err(ApprovalError::Role {
                role,
                config_id: request.config_id,
            });
        }
        Ok(request)
    }

    /// Requests the caller may see, newest first, by config and state.
    pub async fn list(
        &self,
        caller: &Caller,
        config_id: Option<&str>,
        state: Option<ChangeState>,
    ) -> Result<Vec<ChangeRequest>, ApprovalError> {
        let all = self.store.list_changes(config_id).await?;
        Ok(all
            .into_iter()
            .filter(|r| caller.may(Role::Viewer, &r.config_id))
            .filter(|r| state.is_none_or(|s| r.state == s))
            .collect())
    }

    /// A request with its diff and its tests run now.
    pub async fn details(&self, id: &str, caller: &Caller) -> Result<Details, ApprovalError> {
        let request = self.get_as(id, caller, Role::Viewer).await?;
        let Some(code_id) = request.proposal.code_id().map(str::to_owned) else {
            return Ok(Details {
                change_request: request,
                diff: None,
                tests: None,
            });
        };
        let config = self.releases.config(&request.config_id).await?;
        let proposed = self.releases.version(&request.config_id, &code_id).await?;
        let stable = match &config.release {
            Some(release) => Some(self.releases.version(&request.config_id, &release.code_id).await?),
            None => None,
        };
        let (from_source, from_rules, from_params) = match &stable {
            Some(v) => (v.source.clone(), pretty(&v.rules), pretty(&v.params)),
            None => (String::new(), String::new(), String::new()),
        };
        let diff = VersionDiff {
            from: stable.map(|v| v.code_id),
            to: code_id.clone(),
            source: unified(&from_source, &proposed.source),
            rules: unified(&from_rules, &pretty(&proposed.rules)),
            params: unified(&from_params, &pretty(&proposed.params)),
        };
        let tests = self.releases.run_tests(&request.config_id, &code_id).await?;
        Ok(Details {
            change_request: request,
            diff: Some(diff),
            tests: Some(tests),
        })
    }

    /// One more approval; the last applies the change, after the test gate.
    pub async fn approve(&self, id: &str, caller: &Caller) -> Result<Applied, ApprovalError> {
        let request = self.get_as(id, caller, Role::Publisher).await?;
        if request.state == ChangeState::Stale {
            let decided = self.store.decide_change(id, Decision::Cancel, &caller.who).await?;
            return self.settle(decided).await;
        }
        may_approve(&request, &caller.who)?;
        let applying = self
            .applying(&request.config_id, &request.proposal, &request.author)
            .await?;
        let mut gate_passed = request.proposal.gated_version().is_none();
        if !gate_passed && request.completes() {
            self.gate_again(&request).await?;
            gate_passed = true;
        }
        loop {
            let decision = Decision::Approve {
                applying: applying.clone(),
                gate_passed,
            };
            match self.store.decide_change(id, decision, &caller.who).await? {
                Decided::GateNeeded => {
                    // Another approval landed since: this one completes it.
                    self.gate_again(&request).await?;
                    gate_passed = true;
                }
                decided => return self.settle(decided).await,
            }
        }
    }

    /// Refuses the request, with a reason.
    pub async fn reject(&self, id: &str, caller: &Caller, reason: String) -> Result<Applied, ApprovalError> {
        check_reason(&reason)?;
        self.get_as(id, caller, Role::Publisher).await?;
        let decided = self
            .store
            .decide_change(id, Decision::Reject { reason }, &caller.who)
            .await?;
        self.settle(decided).await
    }

    /// Withdraws the request: its author only.
    pub async fn cancel(&self, id: &str, caller: &Caller) -> Result<Applied, ApprovalError> {
        let request = self.get_as(id, caller, Role::Viewer).await?;
        if request.author != caller.who {
            return Err(ApprovalError::NotAuthor(request.author));
        }
        let decided = self.store.decide_change(id, Decision::Cancel, &caller.who).await?;
        self.settle(decided).await
    }
}
