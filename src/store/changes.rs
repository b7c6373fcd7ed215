//! Change requests (four eyes) in the store. A decision takes the request's
//! row, then the config's, in one transaction: of two people approving at the
//! same moment one applies the change and the other finds it applied. The
//! approval that completes a request applies its change in that transaction.

use async_trait::async_trait;
use serde_json::json;
use sqlx::any::AnyRow;
use sqlx::{Any, Row, Transaction};

use super::dialect::{Dialect, sql};
use super::rows::corrupt;
use super::sql::{SqlStore, apply_in};
use super::tx::{NewEvent, insert_event, lock_config, new_code_id};
use super::{Missing, NewPlan, StoreError, plans};
use crate::domain::Config;
use crate::domain::approval::{Approval, ChangeRequest, ChangeState, Proposal};
use crate::domain::model::{EventKind, now_millis};
use crate::domain::rollout::Plan;

macro_rules! change_columns {
    () => {
        "r.id, r.config_id, r.proposal, r.state, r.author, r.approvals, r.required, r.base_revision, r.reason, \
         r.decided_by, r.created_at, r.updated_at, c.revision AS revision_now"
    };
}

/// What a change request applies once approved, prepared by the service
/// (a plan's steps are expanded when it applies).
#[derive(Debug, Clone)]
pub enum Applying {
    /// A pointer or status change.
    Change(crate::domain::change::Change),
    /// A rollout plan to start.
    Plan(NewPlan),
}

/// A decision on an open request.
#[derive(Debug, Clone)]
pub enum Decision {
    /// One more approval by `who`; the last one applies `applying`.
    Approve {
        /// What the request applies.
        applying: Applying,
        /// The test gate passed just now (or the proposal needs none). The
        /// last approval without it applies nothing: `GateNeeded`.
        gate_passed: bool,
    },
    /// An admin applies it at once, approvals or not.
    BreakGlass {
        /// What the request applies.
        applying: Applying,
        /// Why, for the record.
        reason: String,
    },
    /// Refused, with a reason.
    Reject {
        /// Why.
        reason: String,
    },
    /// Withdrawn by its author.
    Cancel,
}

/// What a decision did.
#[derive(Debug, Clone)]
pub enum Decided {
    /// Recorded; more approvals are needed.
    Approved(ChangeRequest),
    /// Applied: the request, the config after (if it changed), the plan
    /// started (if it was one).
    Applied {
        /// The request afterwards.
        request: ChangeRequest,
        /// The config, when the change moved it (clients must hear of it).
        config: Option<Box<Config>>,
        /// The plan it started.
        plan: Option<Box<Plan>>,
    },
    /// This approval would complete the request, and the test gate has not
    /// run: nothing was recorded.
    GateNeeded,
    /// The config moved since the request was opened; it is now stale.
    Stale(ChangeRequest),
    /// Rejected or cancelled.
    Closed(ChangeRequest),
}

/// A request to open.
#[derive(Debug, Clone)]
pub struct NewChange {
    /// The config it changes.
    pub config_id: String,
    /// What it would do.
    pub proposal: Proposal,
    /// Who asks.
    pub author: String,
}

/// Four eyes: requests and the setting that asks for them.
#[async_trait]
pub trait Changes: Send + Sync {
    /// Sets how many approvals the config's changes need, with an
    /// `approvals` event (clients see nothing, so the revision stays).
    async fn set_approvals_required(&self, config_id: &str, n: u32, actor: &str) -> Result<Config, StoreError>;
    /// Opens a request against the config as it stands.
    async fn open_change(&self, new: NewChange) -> Result<ChangeRequest, StoreError>;
    /// A request by id, its state as it stands against its config.
    async fn get_change(&self, id: &str) -> Result<Option<ChangeRequest>, StoreError>;
    /// Requests, newest first: a config's or every one (at most 500).
    async fn list_changes(&self, config_id: Option<&str>) -> Result<Vec<ChangeRequest>, StoreError>;
    /// Decides on an open request in one transaction.
    async fn decide_change(&self, id: &str, decision: Decision, who: &str) -> Result<Decided, StoreError>;
}

fn change_from_row(row: &AnyRow) -> Result<ChangeRequest, StoreError> {
    let proposal: String = row.try_get("proposal")?;
    let state: String = row.try_get("state")?;
    let approvals: String = row.try_get("approvals")?;
    let request = ChangeRequest {
        id: row.try_get("id")?,
        config_id: row.try_get("config_id")?,
        proposal: serde_json::from_str(&proposal).map_err(|e| corrupt("change proposal", &e.to_string()))?,
        state: ChangeState::parse(&state).ok_or_else(|| corrupt("change state", &state))?,
        author: row.try_get("author")?,
        approvals: serde_json::from_str(&approvals).map_err(|e| corrupt("change approvals", &e.to_string()))?,
        approvals_required: row.try_get::<i64, _>("required")?.clamp(0, i64::from(u32::MAX)) as u32,
        base_revision: row.try_get("base_revision")?,
        reason: row.try_get("reason")?,
        decided_by: row.try_get("decided_by")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    };
    Ok(request.standing(row.try_get("revision_now")?))
}

fn to_json<T: serde::Serialize>(value: &T) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(|e| StoreError::Corrupt(e.to_string()))
}

/// Reads the request, taking its row for the transaction (SQLite: the write
/// lock, by writing the row first).
async fn take(tx: &mut Transaction<'_, Any>, d: Dialect, id: &str) -> Result<ChangeRequest, StoreError> {
    let touched = sqlx::query(sql!(
        d,
        "UPDATE change_requests SET updated_at = updated_at WHERE id = $1"
    ))
    .bind(id)
    .execute(&mut **tx)
    .await?;
    if touched.rows_affected() == 0 {
        return Err(StoreError::NotFound(Missing::Change(id.to_owned())));
    }
    let query = match d.row_locks() {
        true => sql!(
            d,
            concat!(
                "SELECT ",
                change_columns!(),
                " FROM change_requests r JOIN configs c ON c.id = r.config_id WHERE r.id = $1 FOR UPDATE"
            )
        ),
        false => sql!(
            d,
            concat!(
                "SELECT ",
                change_columns!(),
                " FROM change_requests r JOIN configs c ON c.id = r.config_id WHERE r.id = $1"
            )
        ),
    };
    let row = sqlx::query(query).bind(id).fetch_one(&mut **tx).await?;
    change_from_row(&row)
}

async fn write(tx: &mut Transaction<'_, Any>, d: Dialect, r: &ChangeRequest) -> Result<(), StoreError> {
    sqlx::query(sql!(
        d,
        "UPDATE change_requests SET state = $1, approvals = $2, reason = $3, decided_by = $4, updated_at = $5 \
         WHERE id = $6"
    ))
    .bind(r.state.as_str())
    .bind(to_json(&r.approvals)?)
    .bind(&r.reason)
    .bind(&r.decided_by)
    .bind(r.updated_at)
    .bind(&r.id)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Applies the request's change in `tx`, its event naming the author and
/// carrying the approvals (or the break-glass reason).
async fn apply(
    tx: &mut Transaction<'_, Any>,
    d: Dialect,
    r: &ChangeRequest,
    applying: Applying,
    note: serde_json::Value,
) -> Result<(Option<Config>, Option<Plan>), StoreError> {
    match applying {
        Applying::Change(change) => {
            let (_, after) = apply_in(tx, d, &r.config_id, &change, &r.author, Some(note)).await?;
            Ok((after, None))
        }
        Applying::Plan(new) => {
            let plan = plans::create_in(tx, d, new).await?;
            let config = lock_config(tx, d, &r.config_id).await?;
            let to = json!({"plan": plan.id, "code_id": plan.code_id, "state": "active"});
            let event = NewEvent {
                detail: Some(note),
                forced: plan.forced,
                ..NewEvent::new(EventKind::PlanStarted, &r.author, serde_json::Value::Null, to)
            };
            insert_event(tx, d, &config, event).await?;
            Ok((None, Some(plan)))
        }
    }
}

#[async_trait]
impl Changes for SqlStore {
    async fn set_approvals_required(&self, config_id: &str, n: u32, actor: &str) -> Result<Config, StoreError> {
        let d = self.dialect;
        let mut tx = self.pool.begin().await?;
        let before = lock_config(&mut tx, d, config_id).await?;
        if before.approvals_required == n {
            tx.rollback().await?;
            return Ok(before);
        }
        sqlx::query(sql!(d, "UPDATE configs SET approvals_required = $1 WHERE id = $2"))
            .bind(i64::from(n))
            .bind(config_id)
            .execute(&mut *tx)
            .await?;
        let after = Config {
            approvals_required: n,
            ..before.clone()
        };
        let event = NewEvent::new(
            EventKind::Approvals,
            actor,
            json!({"approvals_required": before.approvals_required}),
            json!({"approvals_required": n}),
        );
        insert_event(&mut tx, d, &after, event).await?;
        tx.commit().await?;
        Ok(after)
    }

    async fn open_change(&self, new: NewChange) -> Result<ChangeRequest, StoreError> {
        let d = self.dialect;
        let mut tx = self.pool.begin().await?;
        // The config's row first, a write: on SQLite a transaction that
        // read first and wrote after could not wait for the write lock.
        let config = lock_config(&mut tx, d, &new.config_id).await?;
        let now = now_millis();
        let request = ChangeRequest {
            id: format!("cr-{}", new_code_id()),
            config_id: new.config_id,
            proposal: new.proposal,
            state: ChangeState::Open,
            author: new.author,
            approvals: Vec::new(),
            approvals_required: config.approvals_required.max(1),
            base_revision: config.revision,
            reason: None,
            decided_by: None,
            created_at: now,
            updated_at: now,
        };
        sqlx::query(sql!(
            d,
            "INSERT INTO change_requests (id, config_id, proposal, state, author, approvals, required, base_revision, \
             created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
        ))
        .bind(&request.id)
        .bind(&request.config_id)
        .bind(to_json(&request.proposal)?)
        .bind(request.state.as_str())
        .bind(&request.author)
        .bind(to_json(&request.approvals)?)
        .bind(i64::from(request.approvals_required))
        .bind(request.base_revision)
        .bind(now)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(request)
    }

    async fn get_change(&self, id: &str) -> Result<Option<ChangeRequest>, StoreError> {
        let row = sqlx::query(sql!(
            self.dialect,
            concat!(
                "SELECT ",
                change_columns!(),
                " FROM change_requests r JOIN configs c ON c.id = r.config_id WHERE r.id = $1"
            )
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(change_from_row).transpose()
    }

    async fn list_changes(&self, config_id: Option<&str>) -> Result<Vec<ChangeRequest>, StoreError> {
        let rows = match config_id {
            Some(config_id) => {
                sqlx::query(sql!(
                    self.dialect,
                    concat!(
                        "SELECT ",
                        change_columns!(),
                        " FROM change_requests r JOIN configs c ON c.id = r.config_id WHERE r.config_id = $1 \
                         ORDER BY r.created_at DESC, r.id LIMIT 500"
                    )
                ))
                .bind(config_id)
                .fetch_all(&self.pool)
                .await?
            }
            None => {
                sqlx::query(sql!(
                    self.dialect,
                    concat!(
                        "SELECT ",
                        change_columns!(),
                        " FROM change_requests r JOIN configs c ON c.id = r.config_id \
                         ORDER BY r.created_at DESC, r.id LIMIT 500"
                    )
                ))
                .fetch_all(&self.pool)
                .await?
            }
        };
        rows.iter().map(change_from_row).collect()
    }

    async fn decide_change(&self, id: &str, decision: Decision, who: &str) -> Result<Decided, StoreError> {
        let d = self.dialect;
        let mut tx = self.pool.begin().await?;
        let mut request = take(&mut tx, d, id).await?;
        let now = now_millis();
        if request.state == ChangeState::Stale {
            // Recorded, so the list's filter and the row agree.
            request.updated_at = now;
            write(&mut tx, d, &request).await?;
            tx.commit().await?;
            return Ok(Decided::Stale(request));
        }
        if request.state != ChangeState::Open {
            return Err(StoreError::ChangeState {
                id: id.to_owned(),
                state: request.state.as_str(),
            });
        }
        // The config's row after the request's, as every path here takes them.
        let config = lock_config(&mut tx, d, &request.config_id).await?;
        if config.revision != request.base_revision {
            request.state = ChangeState::Stale;
            request.updated_at = now;
            write(&mut tx, d, &request).await?;
            tx.commit().await?;
            return Ok(Decided::Stale(request));
        }
        request.updated_at = now;
        // A bar raised since the request opened holds it too.
        request.approvals_required = request.approvals_required.max(config.approvals_required);
        let (applying, note) = match decision {
            Decision::Reject { reason } => {
                request.state = ChangeState::Rejected;
                request.reason = Some(reason);
                request.decided_by = Some(who.to_owned());
                write(&mut tx, d, &request).await?;
                tx.commit().await?;
                return Ok(Decided::Closed(request));
            }
            Decision::Cancel => {
                request.state = ChangeState::Cancelled;
                request.decided_by = Some(who.to_owned());
                write(&mut tx, d, &request).await?;
                tx.commit().await?;
                return Ok(Decided::Closed(request));
            }
            Decision::Approve { applying, gate_passed } => {
                if request.approvals.iter().any(|a| a.who == who) || request.author == who {
                    return Err(StoreError::Refused(format!(
                        "`{who}` may not approve change request `{id}` (its author, or approved already)"
                    )));
                }
                let completes = request.completes();
                if completes && !gate_passed {
                    return Ok(Decided::GateNeeded);
                }
                request.approvals.push(Approval {
                    who: who.to_owned(),
                    at: now,
                });
                if !completes {
                    write(&mut tx, d, &request).await?;
                    tx.commit().await?;
                    return Ok(Decided::Approved(request));
                }
                let approvers: Vec<&str> = request.approvals.iter().map(|a| a.who.as_str()).collect();
                let note = json!({"change_request": request.id, "approved_by": approvers});
                (applying, note)
            }
            Decision::BreakGlass { applying, reason } => {
                request.reason = Some(reason.clone());
                let note = json!({"change_request": request.id, "break_glass": true, "reason": reason, "by": who});
                (applying, note)
            }
        };
        request.state = ChangeState::Applied;
        request.decided_by = Some(who.to_owned());
        let (config, plan) = apply(&mut tx, d, &request, applying, note).await?;
        write(&mut tx, d, &request).await?;
        tx.commit().await?;
        Ok(Decided::Applied {
            request,
            config: config.map(Box::new),
            plan: plan.map(Box::new),
        })
    }
}
