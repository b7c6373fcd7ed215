//! Four eyes: a change a config's approvals hold back until other people
//! agree. Pure: what a request proposes, where it stands, who may decide.

use serde::{Deserialize, Serialize};

use super::ConfigStatus;
use super::change::Change;

/// What a change request would do once approved.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Proposal {
    /// Release `code_id` as the stable version.
    Release {
        /// The version.
        code_id: String,
        /// Past failing stored tests.
        #[serde(default)]
        force: bool,
    },
    /// Serve `code_id` to `percentage` of devices.
    Gray {
        /// The version.
        code_id: String,
        /// 0 to 100.
        percentage: u8,
        /// Past failing stored tests.
        #[serde(default)]
        force: bool,
    },
    /// End the gray release.
    RemoveGray,
    /// Go back to the stable version before the current one.
    Rollback,
    /// Make the config active or inactive.
    Status {
        /// The status it would take.
        #[schema(value_type = String)]
        status: ConfigStatus,
    },
    /// Start a rollout plan: the request as sent (`PlanRequest`).
    Plan {
        /// The plan request.
        request: serde_json::Value,
    },
}

impl Proposal {
    /// The pointer or status change it makes; `None` for a plan.
    pub fn change(&self) -> Option<Change> {
        Some(match self.clone() {
            Self::Release { code_id, force } => Change::Release { code_id, forced: force },
            Self::Gray {
                code_id,
                percentage,
                force,
            } => Change::Gray {
                code_id,
                percentage,
                forced: force,
            },
            Self::RemoveGray => Change::RemoveGray,
            Self::Rollback => Change::Rollback,
            Self::Status { status } => Change::Status(status),
            Self::Plan { .. } => return None,
        })
    }

    /// The version whose stored tests must pass before it applies, if any:
    /// what publishing without approvals would check.
    pub fn gated_version(&self) -> Option<String> {
        match self {
            Self::Release { code_id, force: false } => Some(code_id.clone()),
            Self::Gray {
                code_id,
                percentage,
                force: false,
            } if *percentage > 0 => Some(code_id.clone()),
            Self::Plan { request } if request.get("force") != Some(&serde_json::Value::Bool(true)) => {
                request.get("code_id").and_then(|c| c.as_str()).map(str::to_owned)
            }
            _ => None,
        }
    }

    /// Whether `config` already stands where it would put it: nothing to
    /// approve then.
    pub fn in_force(&self, config: &super::Config) -> bool {
        match self {
            Self::Release { code_id, .. } => config.release.as_ref().is_some_and(|r| &r.code_id == code_id),
            Self::Gray {
                code_id, percentage, ..
            } => match &config.gray {
                Some(g) => &g.code_id == code_id && g.percentage == *percentage,
                None => *percentage == 0,
            },
            Self::RemoveGray => config.gray.is_none(),
            Self::Status { status } => config.status == *status,
            Self::Rollback | Self::Plan { .. } => false,
        }
    }

    /// The versions it names, for the request's diff.
    pub fn code_id(&self) -> Option<&str> {
        match self {
            Self::Release { code_id, .. } | Self::Gray { code_id, .. } => Some(code_id),
            Self::Plan { request } => request.get("code_id").and_then(|c| c.as_str()),
            _ => None,
        }
    }
}

/// Where a change request stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ChangeState {
    /// Waiting for approvals.
    Open,
    /// Approved and applied.
    Applied,
    /// Refused by a publisher, with a reason.
    Rejected,
    /// Withdrawn by its author.
    Cancelled,
    /// Its config changed since it was opened: it applies nothing.
    Stale,
}

impl ChangeState {
    /// Every state.
    pub const ALL: [ChangeState; 5] = [
        ChangeState::Open,
        ChangeState::Applied,
        ChangeState::Rejected,
        ChangeState::Cancelled,
        ChangeState::Stale,
    ];

    /// As stored and sent.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Open => "open",
            Self::Applied => "applied",
            Self::Rejected => "rejected",
            Self::Cancelled => "cancelled",
            Self::Stale => "stale",
        }
    }

    /// The state named `name`.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == name)
    }
}

/// One person's approval.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Approval {
    /// Who approved (`token:<name>`, `oidc:<email>`).
    pub who: String,
    /// Unix milliseconds.
    pub at: i64,
}

/// A change held back for approvals.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct ChangeRequest {
    /// Its id.
    pub id: String,
    /// The config it changes.
    pub config_id: String,
    /// What it would do.
    pub proposal: Proposal,
    /// Where it stands.
    pub state: ChangeState,
    /// Who asked for it.
    pub author: String,
    /// Who approved it so far.
    pub approvals: Vec<Approval>,
    /// How many approvals it needs (the config's setting when it was opened).
    pub approvals_required: u32,
    /// The config's revision when it was opened.
    pub base_revision: i64,
    /// Why it was rejected, or the break-glass reason.
    pub reason: Option<String>,
    /// Who applied, rejected or cancelled it.
    pub decided_by: Option<String>,
    /// Unix milliseconds.
    pub created_at: i64,
    /// Unix milliseconds.
    pub updated_at: i64,
}

impl ChangeRequest {
    /// The state as it stands against the config's revision now: an open
    /// request whose config moved is stale.
    pub fn standing(mut self, revision_now: i64) -> Self {
        if self.state == ChangeState::Open && revision_now != self.base_revision {
            self.state = ChangeState::Stale;
        }
        self
    }

    /// Whether `who` approving now would be the last approval needed.
    pub fn completes(&self) -> bool {
        self.approvals.len() + 1 >= self.approvals_required as usize
    }
}

/// Why a person may not approve a request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApprovalRefusal {
    /// The author asked; four eyes means someone else.
    #[error("the author of a change request cannot approve it")]
    OwnRequest,
    /// They approved it already.
    #[error("`{0}` has already approved this change request")]
    Twice(String),
}

/// Whether `who` may add an approval to `request`.
pub fn may_approve(request: &ChangeRequest, who: &str) -> Result<(), ApprovalRefusal> {
    if request.author == who {
        return Err(ApprovalRefusal::OwnRequest);
    }
    if request.approvals.iter().any(|a| a.who == who) {
        return Err(ApprovalRefusal::Twice(who.to_owned()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(approvals: &[&str], required: u32) -> ChangeRequest {
        ChangeRequest {
            id: "r".into(),
            config_id: "c".into(),
            proposal: Proposal::Rollback,
            state: ChangeState::Open,
            author: "token:alice".into(),
            approvals: approvals
                .iter()
                .map(|w| Approval {
                    who: (*w).into(),
                    at: 1,
                })
                .collect(),
            approvals_required: required,
            base_revision: 3,
            reason: None,
            decided_by: None,
            created_at: 1,
            updated_at: 1,
        }
    }

    #[test]
    fn four_eyes_means_someone_else_once() {
        let r = request(&["token:bob"], 2);
        assert_eq!(may_approve(&r, "token:alice"), Err(ApprovalRefusal::OwnRequest));
        assert_eq!(
            may_approve(&r, "token:bob"),
            Err(ApprovalRefusal::Twice("token:bob".into()))
        );
        assert_eq!(may_approve(&r, "token:carol"), Ok(()));
        assert!(r.completes());
        assert!(!request(&[], 2).completes());
    }

    #[test]
    fn an_open_request_whose_config_moved_is_stale() {
        assert_eq!(request(&[], 1).standing(3).state, ChangeState::Open);
        assert_eq!(request(&[], 1).standing(4).state, ChangeState::Stale);
        let mut done = request(&[], 1);
        done.state = ChangeState::Applied;
        assert_eq!(done.standing(9).state, ChangeState::Applied);
    }

    #[test]
    fn the_gate_runs_for_what_publishing_would_check() {
        let release = Proposal::Release {
            code_id: "v".into(),
            force: false,
        };
        assert_eq!(release.gated_version().as_deref(), Some("v"));
        let forced = Proposal::Release {
            code_id: "v".into(),
            force: true,
        };
        assert_eq!(forced.gated_version(), None);
        let plan = Proposal::Plan {
            request: serde_json::json!({"code_id": "p", "steps": []}),
        };
        assert_eq!(plan.gated_version().as_deref(), Some("p"));
        assert_eq!(Proposal::Rollback.gated_version(), None);
        let back: Proposal = serde_json::from_value(serde_json::to_value(&release).unwrap()).unwrap();
        assert_eq!(back, release);
    }
}
