//! A stored plan and how it moves: its state, the health gate over a step's
//! bake, and the next move of a due plan. Pure; the store claims and
//! applies the moves.

use serde::{Deserialize, Serialize};

use super::request::Step;
use crate::domain::change::Change;

/// Where a plan stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum PlanState {
    /// Waiting for its start or its next step.
    Active,
    /// Held by an operator (or by a manual release); resumes on request.
    Paused,
    /// Released and watched to the end.
    Completed,
    /// Stopped by its gate or an operator; gray removed or rolled back.
    Aborted,
}

impl PlanState {
    /// As stored and sent.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Paused => "paused",
            Self::Completed => "completed",
            Self::Aborted => "aborted",
        }
    }

    /// The state `as_str` gave, if it is one.
    pub fn parse(text: &str) -> Option<Self> {
        [Self::Active, Self::Paused, Self::Completed, Self::Aborted]
            .into_iter()
            .find(|s| s.as_str() == text)
    }

    /// Active or paused: the config's one open plan.
    pub fn is_open(self) -> bool {
        matches!(self, Self::Active | Self::Paused)
    }
}

/// A stored plan and how far it got.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Plan {
    /// Its id.
    pub id: String,
    /// The config it changes.
    pub config_id: String,
    /// The version it rolls out.
    pub code_id: String,
    /// Its steps; the last is the release.
    pub steps: Vec<Step>,
    /// Started although the version's stored tests failed.
    pub forced: bool,
    /// The plan's own gate floor (`gate_min_sources`); `None`:
    /// `reports.min_sources`.
    pub gate_min_sources: Option<u64>,
    /// Where it stands.
    pub state: PlanState,
    /// Steps applied so far (0: not started).
    pub applied: usize,
    /// Unix milliseconds of its next move, while active.
    pub next_at: Option<i64>,
    /// When the step now baking was applied (the gate's window starts here).
    pub step_started_at: Option<i64>,
    /// While paused: how much of the bake was left.
    pub remaining_ms: Option<i64>,
    /// Why it paused, completed or aborted.
    pub reason: Option<String>,
    /// The last gate's figures.
    pub gate: Option<GateFigures>,
    /// Who made it.
    pub created_by: String,
    /// Unix milliseconds.
    pub created_at: i64,
    /// Unix milliseconds of its last change.
    pub updated_at: i64,
}

/// What an operator does to a plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Control {
    /// Holds it; the bake left is kept.
    Pause,
    /// Lets a paused plan go on with the bake it had left.
    Resume,
    /// Stops it; gray is removed if the version is in gray.
    Abort,
}

/// A version's health over a step's bake, as the gate sees it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct GateFigures {
    /// The version is marked broken.
    pub broken: bool,
    /// Distinct networks whose reports counted during the bake.
    pub counted_sources: u64,
    /// Distinct networks served the version (an estimate). Figures stored
    /// before sources were networks call it `served_devices`.
    #[serde(alias = "served_devices")]
    pub served_networks: u64,
    /// `counted_sources / served_networks`.
    pub ratio: f64,
    /// The ratio the gate refuses at (`reports.break_ratio`).
    pub threshold: f64,
    /// The least counted networks the gate refuses at
    /// (`reports.min_sources`, or the plan's `gate_min_sources`); 0 in
    /// figures stored before the gate had a floor.
    #[serde(default)]
    pub min_sources: u64,
}

impl GateFigures {
    /// The figures, with the ratio the way breaking judges it.
    pub fn new(broken: bool, counted_sources: u64, served_networks: u64, threshold: f64, min_sources: u64) -> Self {
        let (served, ratio) = crate::domain::health::share(counted_sources, served_networks);
        Self {
            broken,
            counted_sources,
            served_networks: served,
            ratio,
            threshold,
            min_sources,
        }
    }

    /// Passes unless the version is marked broken, or at least
    /// `min_sources` networks reported and they reached the threshold: the
    /// same floor as breaking, so one network's report (anyone may send
    /// one) never aborts a plan.
    pub fn passes(&self) -> bool {
        let failed = self.counted_sources >= self.min_sources.max(1) && self.ratio >= self.threshold;
        !self.broken && !failed
    }
}

/// What a due plan does now.
#[derive(Debug, Clone, PartialEq)]
pub enum Move {
    /// Applies step `index` (the gate of the step before passed).
    Step {
        /// The step's index.
        index: usize,
        /// The change it makes.
        change: Change,
    },
    /// The last step's watch passed: the plan is done.
    Complete,
    /// The gate failed: undo with `change` and stop.
    Abort {
        /// Gray removed, or (after the release) the rollback.
        change: Change,
    },
}

/// The move of a plan that is due, having applied `applied` of `steps`
/// (0: not started), judged by `gate` over the bake just ended.
pub fn next_move(steps: &[Step], applied: usize, code_id: &str, forced: bool, gate: Option<&GateFigures>) -> Move {
    if applied > 0 && gate.is_some_and(|g| !g.passes()) {
        let released = steps.get(applied - 1).is_some_and(|s| s.percentage == 100);
        let change = if released { Change::Rollback } else { Change::RemoveGray };
        return Move::Abort { change };
    }
    match steps.get(applied) {
        None => Move::Complete,
        Some(step) if step.percentage == 100 => Move::Step {
            index: applied,
            change: Change::Release {
                code_id: code_id.to_owned(),
                forced,
            },
        },
        Some(step) => Move::Step {
            index: applied,
            change: Change::Gray {
                code_id: code_id.to_owned(),
                percentage: step.percentage,
                forced,
            },
        },
    }
}

/// When a plan that applied step `applied - 1` at `applied_at_ms` is due
/// again; `None` once the release has no watch left.
pub fn due_after(steps: &[Step], applied: usize, applied_at_ms: i64) -> Option<i64> {
    let step = steps.get(applied.checked_sub(1)?)?;
    Some(applied_at_ms + (step.bake_s as i64) * 1000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plan_moves_step_by_step_and_aborts_on_a_failed_gate() {
        let step = |percentage, bake_s| Step { percentage, bake_s };
        let steps = [step(10, 1), step(50, 1), step(100, 1)];
        let healthy = GateFigures::new(false, 0, 200, 0.05, 10);
        let gray = |percentage| Change::Gray {
            code_id: "c".into(),
            percentage,
            forced: false,
        };
        assert_eq!(
            next_move(&steps, 0, "c", false, None),
            Move::Step {
                index: 0,
                change: gray(10)
            }
        );
        assert_eq!(
            next_move(&steps, 1, "c", false, Some(&healthy)),
            Move::Step {
                index: 1,
                change: gray(50)
            }
        );
        let release = Change::Release {
            code_id: "c".into(),
            forced: false,
        };
        assert_eq!(
            next_move(&steps, 2, "c", false, Some(&healthy)),
            Move::Step {
                index: 2,
                change: release
            }
        );
        assert_eq!(next_move(&steps, 3, "c", false, Some(&healthy)), Move::Complete);

        let sick = GateFigures::new(false, 20, 200, 0.05, 10);
        assert!(!sick.passes() && (sick.ratio - 0.1).abs() < 1e-9);
        assert_eq!(
            next_move(&steps, 2, "c", false, Some(&sick)),
            Move::Abort {
                change: Change::RemoveGray
            }
        );
        assert_eq!(
            next_move(&steps, 3, "c", false, Some(&sick)),
            Move::Abort {
                change: Change::Rollback
            }
        );
        let broken = GateFigures::new(true, 0, 200, 0.05, 10);
        assert!(!broken.passes());
        // One network's report is the whole share of a version served to
        // one network, and still short of the floor.
        assert!(GateFigures::new(false, 1, 1, 0.05, 10).passes());
        assert!(!GateFigures::new(false, 10, 10, 0.05, 10).passes());
        assert!(!GateFigures::new(false, 2, 3, 0.05, 2).passes(), "a plan's lower floor");
        assert_eq!(due_after(&steps, 1, 1_000), Some(2_000));
        assert_eq!(due_after(&steps, 0, 1_000), None);
    }
}
