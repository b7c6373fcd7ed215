//! A plan request as an operator sends it, checked field by field, and the
//! steps it expands to: explicit, or by a linear or exponential strategy,
//! always ending with the release. Pure.

use serde::{Deserialize, Serialize};

/// The most steps a plan may have (a linear plan of 1 % steps has 100).
pub const MAX_STEPS: usize = 100;
/// The longest bake or watch: 30 days, in seconds.
pub const MAX_BAKE_S: i64 = 30 * 86_400;
/// How far ahead a plan may start: a year (366 days), in milliseconds. A
/// plan far in the future would hold the config's one open plan for good,
/// and past `i64` arithmetic on it overflows.
pub const MAX_START_AHEAD_MS: i64 = 366 * 86_400_000;

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
    #[serde(default, deserialize_with = "crate::domain::whole::maybe_whole")]
    pub start_at: Option<i64>,
    /// How long the released version is watched (seconds); a failed watch
    /// rolls back. Not with an explicit 100 % step, whose bake is this.
    #[serde(default, deserialize_with = "crate::domain::whole::maybe_whole")]
    pub bake_after_release_s: Option<i64>,
    /// Start although the version's stored tests fail.
    #[serde(default)]
    pub force: bool,
    /// The least distinct reporting networks that fail the health gate, in
    /// place of `reports.min_sources` (which also breaks versions): lower
    /// it for a plan whose version is served to few networks. 1 lets one
    /// network's report abort the plan, so it is never the default.
    #[serde(default, deserialize_with = "crate::domain::whole::maybe_whole")]
    pub gate_min_sources: Option<i64>,
}

/// The highest `gate_min_sources` a plan may set.
pub const MAX_GATE_MIN_SOURCES: i64 = 1_000_000;

impl PlanRequest {
    /// The plan's own gate floor, if it sets one (checked by `expand`).
    pub fn gate_floor(&self) -> Option<u64> {
        self.gate_min_sources.map(|n| n.max(1) as u64)
    }
}

/// One explicit step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StepRequest {
    /// The share of devices served the version, 1 to 100.
    #[serde(deserialize_with = "crate::domain::whole::whole")]
    pub percentage: i64,
    /// How long the step runs under the gate before the next, in seconds.
    #[serde(deserialize_with = "crate::domain::whole::whole")]
    pub bake_s: i64,
}

/// Steps by a rule.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize, utoipa::ToSchema)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Strategy {
    /// `step`, 2 x `step`, ... up to 100, each baked `interval_s`.
    Linear {
        /// The percentage added each step.
        #[serde(deserialize_with = "crate::domain::whole::whole")]
        step: i64,
        /// Each step's bake, in seconds.
        #[serde(deserialize_with = "crate::domain::whole::whole")]
        interval_s: i64,
    },
    /// `start`, `start` x `factor`, ... up to 100, each baked `interval_s`.
    Exponential {
        /// The first percentage.
        #[serde(deserialize_with = "crate::domain::whole::whole")]
        start: i64,
        /// What each step multiplies the share by (over 1).
        #[serde(deserialize_with = "crate::domain::whole::real")]
        factor: f64,
        /// Each step's bake, in seconds.
        #[serde(deserialize_with = "crate::domain::whole::whole")]
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
    if request
        .start_at
        .is_some_and(|at| at > now_ms.saturating_add(MAX_START_AHEAD_MS))
    {
        return Err(refuse(
            "start_at",
            format!(
                "is more than a year ahead: it must be at most {} (now + {MAX_START_AHEAD_MS} ms, 366 days)",
                now_ms.saturating_add(MAX_START_AHEAD_MS)
            ),
        ));
    }
    if request
        .gate_min_sources
        .is_some_and(|n| !(1..=MAX_GATE_MIN_SOURCES).contains(&n))
    {
        return Err(refuse(
            "gate_min_sources",
            format!("must be between 1 and {MAX_GATE_MIN_SOURCES}"),
        ));
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
            gate_min_sources: None,
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
        let exponential =
            r#"{"code_id": "c", "strategy": {"kind": "exponential", "start": 10, "factor": 1.5e0, "interval_s": 1}}"#;
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
        for far in [
            10_000 + MAX_START_AHEAD_MS + 1,
            253_402_300_800_000,
            9_223_372_036_854_775_000,
        ] {
            let error = expand(
                &PlanRequest {
                    start_at: Some(far),
                    ..request(&[(10, 1)])
                },
                10_000,
            )
            .unwrap_err();
            assert_eq!(error.field, "start_at");
            assert!(error.problem.contains("a year ahead"), "{error}");
        }
        let at_the_bound = PlanRequest {
            start_at: Some(10_000 + MAX_START_AHEAD_MS),
            ..request(&[(10, 1)])
        };
        assert!(expand(&at_the_bound, 10_000).is_ok());
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
        for floor in [0, -1, MAX_GATE_MIN_SOURCES + 1] {
            let floored = PlanRequest {
                gate_min_sources: Some(floor),
                ..request(&[(10, 1)])
            };
            assert_eq!(field(floored), "gate_min_sources");
        }
        let lowered = PlanRequest {
            gate_min_sources: Some(3),
            ..request(&[(10, 1)])
        };
        assert!(expand(&lowered, 10_000).is_ok());
        assert_eq!(lowered.gate_floor(), Some(3));
    }
}
