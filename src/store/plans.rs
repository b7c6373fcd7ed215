//! Rollout plans in the store. A plan's move is claimed and applied in one
//! transaction: on PostgreSQL and MySQL the plan row is taken with `FOR
//! UPDATE SKIP LOCKED`, so of several nodes one applies a step and the others
//! skip it;
//! on SQLite a write to the plan row takes the database's write lock first.
//! Every path takes the plan row before the config row, so a manual change
//! and a scheduled step can never hold each other's lock.

use serde_json::json;
use sqlx::any::AnyRow;
use sqlx::{Any, AnyPool, Row, Transaction};

use super::dialect::{Dialect, sql};
use super::rows::corrupt;
use super::tx::{NewEvent, apply_change, ensure_version_of, insert_event, lock_config, new_code_id, read_config};
use super::{Change, Missing, StoreError};
use crate::domain::Config;
use crate::domain::model::{EventKind, now_millis};
use crate::domain::rollout::{Control, GateFigures, Move, Plan, PlanState, Step, due_after, next_move};

/// Who the release log names for a plan's own moves.
pub const ACTOR: &str = "rollout";

macro_rules! plan_columns {
    () => {
        "id, config_id, code_id, steps, forced, gate_min_sources, state, applied, next_at, step_started_at, remaining_ms, \
         reason, gate, created_by, created_at, updated_at"
    };
}

/// A plan to store, its request already checked.
#[derive(Debug, Clone)]
pub struct NewPlan {
    /// The config it changes.
    pub config_id: String,
    /// The version it rolls out.
    pub code_id: String,
    /// Its steps, the last the release.
    pub steps: Vec<Step>,
    /// Started although stored tests failed.
    pub forced: bool,
    /// The plan's own gate floor, if it sets one.
    pub gate_min_sources: Option<u64>,
    /// Unix milliseconds of its first move.
    pub start_at: i64,
    /// Who made it.
    pub created_by: String,
}

/// A plan's move, applied.
#[derive(Debug, Clone)]
pub struct Advanced {
    /// The plan afterwards.
    pub plan: Plan,
    /// The config, when the move changed it (clients must hear of it).
    pub config: Option<Config>,
}

fn plan_from_row(row: &AnyRow) -> Result<Plan, StoreError> {
    let steps: String = row.try_get("steps")?;
    let state: String = row.try_get("state")?;
    let gate: Option<String> = row.try_get("gate")?;
    Ok(Plan {
        id: row.try_get("id")?,
        config_id: row.try_get("config_id")?,
        code_id: row.try_get("code_id")?,
        steps: serde_json::from_str(&steps).map_err(|e| corrupt("plan steps", &e.to_string()))?,
        forced: row.try_get::<i64, _>("forced")? != 0,
        gate_min_sources: row
            .try_get::<Option<i64>, _>("gate_min_sources")?
            .map(|n| n.max(1) as u64),
        state: PlanState::parse(&state).ok_or_else(|| corrupt("plan state", &state))?,
        applied: row.try_get::<i64, _>("applied")?.max(0) as usize,
        next_at: row.try_get("next_at")?,
        step_started_at: row.try_get("step_started_at")?,
        remaining_ms: row.try_get("remaining_ms")?,
        reason: row.try_get("reason")?,
        gate: gate
            .map(|g| serde_json::from_str(&g).map_err(|e| corrupt("plan gate", &e.to_string())))
            .transpose()?,
        created_by: row.try_get("created_by")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

/// Stores an active plan; a config holds one open plan at most.
pub(super) async fn create(pool: &AnyPool, d: Dialect, new: NewPlan) -> Result<Plan, StoreError> {
    let mut tx = pool.begin().await?;
    let plan = create_in(&mut tx, d, new).await?;
    tx.commit().await?;
    Ok(plan)
}

/// Stores a plan in `tx` (a change request's approval applies it there).
pub(super) async fn create_in(tx: &mut Transaction<'_, Any>, d: Dialect, new: NewPlan) -> Result<Plan, StoreError> {
    let tx = &mut *tx;
    lock_config(tx, d, &new.config_id).await?;
    ensure_version_of(tx, d, &new.config_id, &new.code_id).await?;
    let id = new_code_id();
    let now = now_millis();
    let steps = serde_json::to_string(&new.steps).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    let inserted = sqlx::query(sql!(
        d,
        "INSERT INTO rollout_plans (id, config_id, code_id, steps, forced, gate_min_sources, state, applied, next_at, \
         created_by, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, 'active', 0, $7, $8, $9, $10)",
    ))
    .bind(&id)
    .bind(&new.config_id)
    .bind(&new.code_id)
    .bind(steps)
    .bind(i64::from(new.forced))
    .bind(new.gate_min_sources.map(|n| n.min(i64::MAX as u64) as i64))
    .bind(new.start_at)
    .bind(&new.created_by)
    .bind(now)
    .bind(now)
    .execute(&mut **tx)
    .await;
    if let Err(e) = inserted {
        return Err(match StoreError::from(e) {
            StoreError::Exists(_) => StoreError::Exists(format!("an open rollout plan for config `{}`", new.config_id)),
            other => other,
        });
    }
    read(tx, d, &id, Lock::None).await?.ok_or_else(|| missing(&id))
}

/// A plan by id.
pub(super) async fn get(pool: &AnyPool, d: Dialect, id: &str) -> Result<Option<Plan>, StoreError> {
    let row = sqlx::query(sql!(
        d,
        concat!("SELECT ", plan_columns!(), " FROM rollout_plans WHERE id = $1")
    ))
    .bind(id)
    .fetch_optional(pool)
    .await?;
    row.as_ref().map(plan_from_row).transpose()
}

/// Plans, newest first: a config's, or every open one.
pub(super) async fn list(pool: &AnyPool, d: Dialect, config_id: Option<&str>) -> Result<Vec<Plan>, StoreError> {
    let rows = match config_id {
        Some(config_id) => {
            sqlx::query(sql!(
                d,
                concat!(
                    "SELECT ",
                    plan_columns!(),
                    " FROM rollout_plans WHERE config_id = $1 ORDER BY created_at DESC, id"
                )
            ))
            .bind(config_id)
            .fetch_all(pool)
            .await?
        }
        None => {
            sqlx::query(sql!(
                d,
                concat!(
                    "SELECT ",
                    plan_columns!(),
                    " FROM rollout_plans WHERE state IN ('active', 'paused') ORDER BY created_at DESC, id"
                )
            ))
            .fetch_all(pool)
            .await?
        }
    };
    rows.iter().map(plan_from_row).collect()
}

/// When the earliest active plan is due, if any is.
pub(super) async fn next_due(pool: &AnyPool, d: Dialect) -> Result<Option<i64>, StoreError> {
    let row = sqlx::query(sql!(
        d,
        "SELECT MIN(next_at) AS earliest FROM rollout_plans WHERE state = 'active'"
    ))
    .fetch_one(pool)
    .await?;
    Ok(row.try_get("earliest")?)
}

/// Active plans due at `now`, earliest first.
pub(super) async fn due(pool: &AnyPool, d: Dialect, now: i64) -> Result<Vec<Plan>, StoreError> {
    let rows = sqlx::query(sql!(
        d,
        concat!(
            "SELECT ",
            plan_columns!(),
            " FROM rollout_plans WHERE state = 'active' AND next_at <= $1 ORDER BY next_at, id"
        )
    ))
    .bind(now)
    .fetch_all(pool)
    .await?;
    rows.iter().map(plan_from_row).collect()
}

/// How a transaction takes a plan's row where rows are locked one by one.
#[derive(Clone, Copy)]
enum Lock {
    /// A plain read (the row was just written in this transaction).
    None,
    /// `FOR UPDATE SKIP LOCKED`: a scheduler leaves a row another node holds.
    Skip,
    /// `FOR UPDATE`: an operator's control waits for a step being applied.
    Wait,
}

/// Reads the plan row, taking it for this transaction as `lock` says where
/// rows are locked; on SQLite a write to the row takes the write lock first.
async fn read(tx: &mut Transaction<'_, Any>, d: Dialect, id: &str, lock: Lock) -> Result<Option<Plan>, StoreError> {
    let row_locks = d.row_locks();
    if !row_locks && !matches!(lock, Lock::None) {
        sqlx::query(sql!(
            d,
            "UPDATE rollout_plans SET updated_at = updated_at WHERE id = $1"
        ))
        .bind(id)
        .execute(&mut **tx)
        .await?;
    }
    let query = match (row_locks, lock) {
        (true, Lock::Skip) => sql!(
            d,
            concat!(
                "SELECT ",
                plan_columns!(),
                " FROM rollout_plans WHERE id = $1 FOR UPDATE SKIP LOCKED"
            )
        ),
        (true, Lock::Wait) => sql!(
            d,
            concat!(
                "SELECT ",
                plan_columns!(),
                " FROM rollout_plans WHERE id = $1 FOR UPDATE"
            )
        ),
        _ => sql!(
            d,
            concat!("SELECT ", plan_columns!(), " FROM rollout_plans WHERE id = $1")
        ),
    };
    let row = sqlx::query(query).bind(id).fetch_optional(&mut **tx).await?;
    row.as_ref().map(plan_from_row).transpose()
}

async fn write(tx: &mut Transaction<'_, Any>, d: Dialect, plan: &Plan) -> Result<(), StoreError> {
    let gate = plan.gate.map(|g| json!(g).to_string());
    sqlx::query(sql!(
        d,
        "UPDATE rollout_plans SET state = $1, applied = $2, next_at = $3, step_started_at = $4, remaining_ms = $5, \
         reason = $6, gate = $7, updated_at = $8 WHERE id = $9",
    ))
    .bind(plan.state.as_str())
    .bind(plan.applied as i64)
    .bind(plan.next_at)
    .bind(plan.step_started_at)
    .bind(plan.remaining_ms)
    .bind(&plan.reason)
    .bind(gate)
    .bind(now_millis())
    .bind(&plan.id)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Whether the version is marked broken, read in the transaction.
async fn broken(tx: &mut Transaction<'_, Any>, d: Dialect, code_id: &str) -> Result<bool, StoreError> {
    let row = sqlx::query(sql!(d, "SELECT broken FROM versions WHERE code_id = $1"))
        .bind(code_id)
        .fetch_one(&mut **tx)
        .await?;
    Ok(row.try_get::<i64, _>("broken")? != 0)
}

/// Applies the plan's next move if it is still active and due: `None` when
/// another node did (or it was paused or aborted meanwhile). `gate` holds
/// the figures of the bake just ended; the broken mark is read here.
pub(super) async fn advance(
    pool: &AnyPool,
    d: Dialect,
    id: &str,
    now: i64,
    gate: Option<GateFigures>,
) -> Result<Option<Advanced>, StoreError> {
    let mut tx = pool.begin().await?;
    // Ended at once when there is nothing to do: a transaction only dropped
    // rolls back when its connection is next used, and until then keeps the
    // plan's row locked, so the next claim would skip it.
    let Some(mut plan) = read(&mut tx, d, id, Lock::Skip).await? else {
        tx.rollback().await?;
        return Ok(None);
    };
    if plan.state != PlanState::Active || plan.next_at.is_none_or(|at| at > now) {
        tx.rollback().await?;
        return Ok(None);
    }
    let before = lock_config(&mut tx, d, &plan.config_id).await?;
    let gate = match gate {
        Some(g) if plan.applied > 0 => Some(GateFigures {
            broken: g.broken || broken(&mut tx, d, &plan.code_id).await?,
            ..g
        }),
        _ => None,
    };
    let mut config = None;
    match next_move(&plan.steps, plan.applied, &plan.code_id, plan.forced, gate.as_ref()) {
        Move::Step { index, change } => {
            let detail = json!({"plan": plan.id, "step": index + 1, "of": plan.steps.len(),
                                "percentage": plan.steps[index].percentage, "gate": gate});
            config = apply_change(&mut tx, d, &before, &change, ACTOR, Some(detail)).await?;
            plan.applied = index + 1;
            plan.step_started_at = Some(now);
            plan.next_at = due_after(&plan.steps, plan.applied, now);
        }
        Move::Complete => {
            plan.state = PlanState::Completed;
            plan.next_at = None;
            plan.reason = Some("released, and the watch after release passed".into());
        }
        Move::Abort { change } => {
            let figures = gate.expect("an abort is judged by a gate");
            let mut why = abort_reason(&plan, &figures);
            let detail = json!({"plan": plan.id, "aborted": why, "gate": figures});
            config = match apply_change(&mut tx, d, &before, &change, ACTOR, Some(detail)).await {
                Ok(config) => config,
                // Nothing to roll back to: the plan still stops, and says so,
                // rather than failing the same way at every tick.
                Err(e @ (StoreError::NoRollbackTarget { .. } | StoreError::RollbackTargetBroken { .. })) => {
                    why = format!("{why}; the release stays: {e}");
                    None
                }
                Err(e) => return Err(e),
            };
            plan.state = PlanState::Aborted;
            plan.next_at = None;
            plan.reason = Some(why);
        }
    }
    plan.gate = gate.or(plan.gate);
    write(&mut tx, d, &plan).await?;
    tx.commit().await?;
    plan.updated_at = now_millis();
    Ok(Some(Advanced { plan, config }))
}

fn abort_reason(plan: &Plan, gate: &GateFigures) -> String {
    let step = &plan.steps[plan.applied - 1];
    let at = if step.percentage == 100 {
        "in the watch after release".to_owned()
    } else {
        format!("at step {} ({} %)", plan.applied, step.percentage)
    };
    if gate.broken {
        return format!("the version was marked broken {at}");
    }
    format!(
        "the health gate failed {at}: {} of {} served networks reported (ratio {:.3}, threshold {}, at least {} networks)",
        gate.counted_sources, gate.served_networks, gate.ratio, gate.threshold, gate.min_sources
    )
}

/// Pauses, resumes or aborts a plan. Aborting removes gray if the plan's
/// version is in gray, in the same transaction.
pub(super) async fn control(
    pool: &AnyPool,
    d: Dialect,
    id: &str,
    control: Control,
    actor: &str,
) -> Result<Advanced, StoreError> {
    let mut tx = pool.begin().await?;
    // Waits for a node applying a step, rather than skipping it.
    let mut plan = read(&mut tx, d, id, Lock::Wait).await?.ok_or_else(|| missing(id))?;
    let now = now_millis();
    let mut config = None;
    let was = plan.state;
    match (control, plan.state) {
        (Control::Pause, PlanState::Active) => {
            plan.state = PlanState::Paused;
            plan.remaining_ms = plan.next_at.map(|at| (at - now).max(0));
            plan.next_at = None;
            plan.reason = Some(format!("paused by {actor}"));
        }
        (Control::Resume, PlanState::Paused) => {
            plan.state = PlanState::Active;
            plan.next_at = Some(now + plan.remaining_ms.unwrap_or(0));
            plan.remaining_ms = None;
            plan.reason = None;
        }
        (Control::Abort, state) if state.is_open() => {
            let before = lock_config(&mut tx, d, &plan.config_id).await?;
            if before.gray.as_ref().is_some_and(|g| g.code_id == plan.code_id) {
                let detail = json!({"plan": plan.id, "aborted": format!("aborted by {actor}")});
                config = apply_change(&mut tx, d, &before, &Change::RemoveGray, actor, Some(detail)).await?;
            }
            plan.state = PlanState::Aborted;
            plan.next_at = None;
            plan.remaining_ms = None;
            plan.reason = Some(format!("aborted by {actor}"));
        }
        (_, state) => {
            return Err(StoreError::PlanState {
                id: plan.id,
                state: state.as_str(),
            });
        }
    }
    write(&mut tx, d, &plan).await?;
    log_control(&mut tx, d, &plan, was, config.as_ref(), actor).await?;
    tx.commit().await?;
    Ok(Advanced { plan, config })
}

/// The release log's entry for an operator's pause, resume or abort, in the
/// control's transaction: who stopped or restarted a rollout is as much a
/// part of a config's history as the moves themselves. A control changes no
/// pointer (an abort's gray removal has its own event), so the entry carries
/// the revision the config is at.
async fn log_control(
    tx: &mut Transaction<'_, Any>,
    d: Dialect,
    plan: &Plan,
    was: PlanState,
    changed: Option<&Config>,
    actor: &str,
) -> Result<(), StoreError> {
    let kind = match plan.state {
        PlanState::Paused => EventKind::PlanPaused,
        PlanState::Active => EventKind::PlanResumed,
        _ => EventKind::PlanAborted,
    };
    let config = match changed {
        Some(config) => config.clone(),
        None => read_config(&mut **tx, d, &plan.config_id)
            .await?
            .ok_or_else(|| StoreError::NotFound(Missing::Config(plan.config_id.clone())))?,
    };
    let percentage = plan
        .applied
        .checked_sub(1)
        .and_then(|i| plan.steps.get(i))
        .map(|s| s.percentage);
    let state = |s: PlanState| json!({ "plan": plan.id, "code_id": plan.code_id, "state": s.as_str() });
    let event = NewEvent {
        detail: Some(json!({
            "plan": plan.id, "code_id": plan.code_id, "step": plan.applied, "of": plan.steps.len(),
            "percentage": percentage, "gray_removed": changed.is_some(),
        })),
        ..NewEvent::new(kind, actor, state(was), state(plan.state))
    };
    insert_event(tx, d, &config, event).await
}

/// Pauses the config's active plan, if it has one, because `actor` changed
/// the config by hand; returns its id for the change's event. Called before
/// the config is locked, keeping the plan-then-config lock order.
pub(super) async fn pause_for_manual(
    tx: &mut Transaction<'_, Any>,
    d: Dialect,
    config_id: &str,
    actor: &str,
) -> Result<Option<String>, StoreError> {
    let now = now_millis();
    // The write comes first, so SQLite takes its write lock at once. MySQL
    // assigns left to right: `remaining_ms` is worked out before `next_at`
    // is cleared.
    let paused = sqlx::query(sql!(
        d,
        "UPDATE rollout_plans SET state = 'paused', remaining_ms = CASE WHEN next_at > $1 THEN next_at - $2 ELSE 0 END, \
         next_at = NULL, reason = $3, updated_at = $4 WHERE config_id = $5 AND state = 'active'"
    ))
    .bind(now)
    .bind(now)
    .bind(format!("paused: {actor} changed the config by hand"))
    .bind(now)
    .bind(config_id)
    .execute(&mut **tx)
    .await?;
    if paused.rows_affected() == 0 {
        return Ok(None);
    }
    // A config holds one open plan at most, so the paused one is this one.
    let row = sqlx::query(sql!(
        d,
        "SELECT id FROM rollout_plans WHERE config_id = $1 AND state = 'paused'"
    ))
    .bind(config_id)
    .fetch_one(&mut **tx)
    .await?;
    Ok(Some(row.try_get("id")?))
}

fn missing(id: &str) -> StoreError {
    StoreError::NotFound(Missing::Plan(id.to_owned()))
}
