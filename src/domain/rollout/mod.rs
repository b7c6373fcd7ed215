//! Rollout plans: a version's way from gray to stable in steps, each baked
//! under a health gate, then watched after its release. Pure: what a plan
//! request may say and the steps it expands to (`request.rs`), and what a
//! plan does next at a given time with a given gate (`plan.rs`). The store
//! claims and applies the moves, a scheduler actor wakes for them.

mod plan;
mod request;

pub use plan::{Control, GateFigures, Move, Plan, PlanState, due_after, next_move};
pub use request::{
    MAX_BAKE_S, MAX_GATE_MIN_SOURCES, MAX_STEPS, PlanError, PlanRequest, Step, StepRequest, Strategy, expand,
};
