//! Rollout plans: a version's way from gray to stable in steps, each baked
//! under a health gate, then watched after its release. Pure: what a plan
//! request may say, the steps it expands to, and what a plan does next at a
//! given time with a given gate. The store claims and applies the moves, a
//! scheduler actor wakes for them.

use serde::{Deserialize, Serialize};

use super::change::Change;

/// The most steps a plan may have (a linear plan of 1 % steps has 100).
pub const MAX_STEPS: usize = 100;
/// The longest bake or watch: 30 days, in seconds.
pub const MAX_BAKE_S: i64 = 30 * 86_400;

/// A plan as an operator asks for it.
#[derive(Debug, Clone, PartialEq, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PlanRequest {
    /// The version to roll out (a version of the config).
    pub code_id: String,
    /// Explicit steps: gray percentages, strictly increasing; a step of 100
    /// is the release itself.
    #[serde(default)]
    pub steps: Option<Vec<StepRequest>>,
    /// Or steps by a strategy.
    #[serde(default)]
    pub strategy: Option<Strategy>,
    /// Unix milliseconds of the first step; now if unset.
    #[serde(default, deserialize_with = "super::whole::maybe_whole")]
    pub start_at: Option<i64>,
    /// How long the released version is watched (seconds); a failed watch
    /// rolls back. Not with an explicit 100 % step, whose bake is this.
    #[serde(default, deserialize_with = "super::whole::maybe_whole")]
    pub bake_after_release_s: Option<i64>,
    /// Start although the version's stored tests fail.
    #[serde(default)]
    pub force: bool,
}

/// One explicit step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StepRequest {
    /// The share of devices served the version, 1 to 100.
    #[serde(deserialize_with = "super::whole::whole")]
    pub percentage: i64,
    /// How long the step runs under the gate before the next, in seconds.
    #[serde(deserialize_with = "super::whole::whole")]
    pub bake_s: i64,
}

/// Steps by a rule.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize, utoipa::ToSchema)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Strategy {
    /// `step`, 2 x `step`, ... up to 100, each baked `interval_s`.
    Linear {
        /// The percentage added each step.
        #[serde(deserialize_with = "super::whole::whole")]
        step: i64,
        /// Each step's bake, in seconds.
        #[serde(deserialize_with = "super::whole::whole")]
        interval_s: i64,
    },
    /// `start`, `start` x `factor`, ... up to 100, each baked `interval_s`.
    Exponential {
        /// The first percentage.
        #[serde(deserialize_with = "super::whole::whole")]
        start: i64,
        /// What each step multiplies the share by (over 1).
        #[serde(deserialize_with = "super::whole::real")]
        factor: f64,
        /// Each step's bake, in seconds.
        #[serde(deserialize_with = "super::whole::whole")]
        interval_s: i64,
    },
}

/// One step of a plan: gray at `percentage` (below 100), or the release (at
/// 100), then `bake_s` under the gate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Step {
    /// The share of devices; 100 is the release.
    pub percentage: u8,
    /// How long it is watched, in seconds (0 only for the release: no watch).
    pub bake_s: u64,
}

/// Why a plan request was refused, naming the field.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("`{field}` {problem}")]
pub struct PlanError {
    /// The field at fault, as the request names it (`steps[1].percentage`).
    pub field: String,
    /// What is wrong with it.
    pub problem: String,
}

impl PlanError {
    /// The field at fault and what is wrong with it.
    pub fn new(field: impl Into<String>, problem: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            problem: problem.into(),
        }
    }
}

fn refuse(field: impl Into<String>, problem: impl Into<String>) -> PlanError {
    PlanError::new(field, problem)
}

/// The plan's steps, always ending with the release (100 %), or why not.
pub fn expand(request: &PlanRequest, now_ms: i64) -> Result<Vec<Step>, PlanError> {
    if request.start_at.is_some_and(|at| at < now_ms - 1_000) {
        return Err(refuse("start_at", "is in the past"));
    }
    let mut steps = match (&request.steps, &request.strategy) {
        (Some(_), Some(_)) => return Err(refuse("strategy", "cannot be given with `steps`")),
        (None, None) => return Err(refuse("steps", "or `strategy` is required")),
        (Some(steps), None) => explicit(steps)?,
        (None, Some(strategy)) => by_strategy(*strategy)?,
    };
    let after = request.bake_after_release_s;
    if after.is_some_and(|a| !(0..=MAX_BAKE_S).contains(&a)) {
        return Err(refuse(
            "bake_after_release_s",
            format!("must be between 0 and {MAX_BAKE_S} (30 days)"),
        ));
    }
    let after = after.map(|a| a as u64);
    match steps.last() {
        Some(last) if last.percentage == 100 && request.steps.is_some() => {
            if after.is_some() {
                return Err(refuse(
                    "bake_after_release_s",
                    "cannot be given with a 100 % step: that step's bake_s is the watch after release",
                ));
            }
        }
        Some(last) if last.percentage == 100 => steps.last_mut().expect("non-empty").bake_s = after.unwrap_or(0),
        _ => steps.push(Step {
            percentage: 100,
            bake_s: after.unwrap_or(0),
        }),
    }
    Ok(steps)
}

fn explicit(steps: &[StepRequest]) -> Result<Vec<Step>, PlanError> {
    if steps.is_empty() {
        return Err(refuse("steps", "is empty"));
    }
    if steps.len() > MAX_STEPS {
        return Err(refuse("steps", format!("has more than {MAX_STEPS} steps")));
    }
    let mut last = 0;
    steps
        .iter()
        .enumerate()
        .map(|(i, s)| {
            if !(1..=100).contains(&s.percentage) {
                return Err(refuse(format!("steps[{i}].percentage"), "must be between 1 and 100"));
            }
            if s.percentage <= last {
                return Err(refuse(
                    format!("steps[{i}].percentage"),
                    format!("must be greater than the step before ({last})"),
                ));
            }
            if !(1..=MAX_BAKE_S).contains(&s.bake_s) {
                return Err(refuse(
                    format!("steps[{i}].bake_s"),
                    format!("must be between 1 and {MAX_BAKE_S} (30 days)"),
                ));
            }
            last = s.percentage;
            Ok(Step {
                percentage: s.percentage as u8,
                bake_s: s.bake_s as u64,
            })
        })
        .collect()
}

fn by_strategy(strategy: Strategy) -> Result<Vec<Step>, PlanError> {
    let (first, interval_s) = match strategy {
        Strategy::Linear { step, interval_s } => (step, interval_s),
        Strategy::Exponential { start, interval_s, .. } => (start, interval_s),
    };
    let name = match strategy {
        Strategy::Linear { .. } => "strategy.step",
        Strategy::Exponential { .. } => "strategy.start",
    };
    if !(1..=100).contains(&first) {
        return Err(refuse(name, "must be between 1 and 100"));
    }
    if !(1..=MAX_BAKE_S).contains(&interval_s) {
        return Err(refuse(
            "strategy.interval_s",
            format!("must be between 1 and {MAX_BAKE_S} (30 days)"),
        ));
    }
    if let Strategy::Exponential { factor, .. } = strategy
        && !(factor > 1.0 && factor.is_finite())
    {
        return Err(refuse("strategy.factor", "must be over 1"));
    }
    let mut shares = vec![first as f64];
    while *shares.last().expect("non-empty") < 100.0 {
        let last = *shares.last().expect("non-empty");
        let next = match strategy {
            Strategy::Linear { step, .. } => last + step as f64,
            // Rounded, and at least one more, so small starts still climb.
            Strategy::Exponential { factor, .. } => (last * factor).round().max(last + 1.0),
        };
        shares.push(next.min(100.0));
    }
    Ok(shares
        .into_iter()
        .map(|p| Step {
            percentage: p as u8,
            bake_s: interval_s as u64,
        })
        .collect())
}

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
    /// Distinct sources whose reports counted during the bake.
    pub counted_sources: u64,
    /// Distinct devices served the version (an estimate).
    pub served_devices: u64,
    /// `counted_sources / served_devices`.
    pub ratio: f64,
    /// The ratio the gate refuses at (`reports.break_ratio`).
    pub threshold: f64,
}

impl GateFigures {
    /// The figures, with the ratio the way breaking judges it.
    pub fn new(broken: bool, counted_sources: u64, served_devices: u64, threshold: f64) -> Self {
        let (served, ratio) = super::health::share(counted_sources, served_devices);
        Self {
            broken,
            counted_sources,
            served_devices: served,
            ratio,
            threshold,
        }
    }

    /// Passes when the version is not broken and the ratio stayed under
    /// the threshold. Any counted report fails a gate with no served device.
    pub fn passes(&self) -> bool {
        !self.broken && self.ratio < self.threshold
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

    fn request(steps: &[(i64, i64)]) -> PlanRequest {
        PlanRequest {
            code_id: "c".into(),
            steps: Some(
                steps
                    .iter()
                    .map(|&(percentage, bake_s)| StepRequest { percentage, bake_s })
                    .collect(),
            ),
            strategy: None,
            start_at: None,
            bake_after_release_s: None,
            force: false,
        }
    }

    fn shares(steps: &[Step]) -> Vec<u8> {
        steps.iter().map(|s| s.percentage).collect()
    }

    #[test]
    fn explicit_steps_end_with_the_release() {
        let steps = expand(&request(&[(10, 1), (50, 1), (100, 1)]), 0).unwrap();
        assert_eq!(shares(&steps), [10, 50, 100]);
        assert_eq!(steps[2].bake_s, 1);
        let appended = PlanRequest {
            bake_after_release_s: Some(30),
            ..request(&[(10, 5)])
        };
        assert_eq!(
            expand(&appended, 0).unwrap(),
            [
                Step {
                    percentage: 10,
                    bake_s: 5
                },
                Step {
                    percentage: 100,
                    bake_s: 30
                }
            ]
        );
        // A scheduled publish: one step to 100 % at a time.
        let scheduled = PlanRequest {
            start_at: Some(5_000),
            ..request(&[(100, 1)])
        };
        assert_eq!(shares(&expand(&scheduled, 1_000).unwrap()), [100]);
    }

    #[test]
    fn whole_numbers_may_come_as_floats() {
        let body =
            r#"{"code_id": "c", "steps": [{"percentage": 10.0, "bake_s": 60.0}], "bake_after_release_s": 777623.0}"#;
        let request: PlanRequest = serde_json::from_str(body).unwrap();
        assert_eq!(request.bake_after_release_s, Some(777_623));
        let strategy = r#"{"code_id": "c", "strategy": {"kind": "linear", "step": 25.0, "interval_s": 1.0}}"#;
        let request: PlanRequest = serde_json::from_str(strategy).unwrap();
        assert_eq!(shares(&expand(&request, 0).unwrap()), [25, 50, 75, 100]);
        assert!(serde_json::from_str::<PlanRequest>(&body.replace("10.0", "10.5")).is_err());
        let exponential = r#"{"code_id": "c", "strategy": {"kind": "exponential", "start": 10, "factor": 1.5e0, "interval_s": 1}}"#;
        let request: PlanRequest = serde_json::from_str(exponential).unwrap();
        assert_eq!(shares(&expand(&request, 0).unwrap()), [10, 15, 23, 35, 53, 80, 100]);
    }

    #[test]
    fn strategies_climb_to_100() {
        let linear = PlanRequest {
            steps: None,
            strategy: Some(Strategy::Linear {
                step: 30,
                interval_s: 60,
            }),
            bake_after_release_s: Some(600),
            ..request(&[])
        };
        let steps = expand(&linear, 0).unwrap();
        assert_eq!(shares(&steps), [30, 60, 90, 100]);
        assert_eq!((steps[0].bake_s, steps[3].bake_s), (60, 600));
        let exponential = PlanRequest {
            strategy: Some(Strategy::Exponential {
                start: 1,
                factor: 2.0,
                interval_s: 10,
            }),
            ..linear
        };
        assert_eq!(shares(&expand(&exponential, 0).unwrap()), [1, 2, 4, 8, 16, 32, 64, 100]);
    }

    #[test]
    fn bad_requests_name_the_field() {
        let field = |r: PlanRequest| expand(&r, 10_000).unwrap_err().field;
        let negative = PlanRequest {
            bake_after_release_s: Some(-1),
            ..request(&[(10, 1)])
        };
        assert_eq!(field(negative), "bake_after_release_s");
        assert_eq!(field(request(&[(10, 1), (10, 1)])), "steps[1].percentage");
        assert_eq!(field(request(&[(50, 1), (20, 1)])), "steps[1].percentage");
        assert_eq!(field(request(&[(0, 1)])), "steps[0].percentage");
        assert_eq!(field(request(&[(101, 1)])), "steps[0].percentage");
        assert_eq!(field(request(&[(10, 0)])), "steps[0].bake_s");
        assert_eq!(field(request(&[(10, -5)])), "steps[0].bake_s");
        assert_eq!(field(request(&[])), "steps");
        assert_eq!(
            field(PlanRequest {
                start_at: Some(1),
                ..request(&[(10, 1)])
            }),
            "start_at"
        );
        let both = PlanRequest {
            strategy: Some(Strategy::Linear {
                step: 10,
                interval_s: 1,
            }),
            ..request(&[(10, 1)])
        };
        assert_eq!(field(both), "strategy");
        let twice = PlanRequest {
            bake_after_release_s: Some(5),
            ..request(&[(100, 1)])
        };
        assert_eq!(field(twice), "bake_after_release_s");
        let flat = PlanRequest {
            steps: None,
            strategy: Some(Strategy::Exponential {
                start: 5,
                factor: 1.0,
                interval_s: 1,
            }),
            ..request(&[])
        };
        assert_eq!(field(flat), "strategy.factor");
    }

    #[test]
    fn a_plan_moves_step_by_step_and_aborts_on_a_failed_gate() {
        let steps = expand(&request(&[(10, 1), (50, 1), (100, 1)]), 0).unwrap();
        let healthy = GateFigures::new(false, 0, 200, 0.05);
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

        let sick = GateFigures::new(false, 20, 200, 0.05);
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
        let broken = GateFigures::new(true, 0, 200, 0.05);
        assert!(!broken.passes());
        assert_eq!(due_after(&steps, 1, 1_000), Some(2_000));
        assert_eq!(due_after(&steps, 0, 1_000), None);
    }
}
