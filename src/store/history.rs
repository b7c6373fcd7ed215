//! Where a rollback goes: the stable versions a config was released at, read
//! from its release log as a stack. A release pushes; a rollback pops down
//! to the version it went to, so repeated rollbacks walk further back, and an
//! automatic rollback that skipped broken versions leaves the stack true.

use sqlx::{Any, Row, Transaction};

use super::StoreError;
use super::dialect::{Dialect, sql};
use super::rows::corrupt;
use crate::domain::Config;
use crate::domain::model::EventKind;

/// The stable version before the current one, for an operator's rollback:
/// refused when it is marked broken.
pub(super) async fn rollback_target(
    tx: &mut Transaction<'_, Any>,
    d: Dialect,
    config: &Config,
) -> Result<String, StoreError> {
    let stack = released(tx, d, &config.id).await?;
    let target = stack
        .iter()
        .rev()
        .nth(1)
        .cloned()
        .ok_or_else(|| StoreError::NoRollbackTarget {
            config_id: config.id.clone(),
        })?;
    if is_broken(tx, d, &target).await? {
        return Err(StoreError::RollbackTargetBroken { code_id: target });
    }
    Ok(target)
}

/// The most recent earlier stable version that is not broken, for the
/// automatic rollback of a broken stable version; `None` if there is none.
pub(super) async fn healthy_target(
    tx: &mut Transaction<'_, Any>,
    d: Dialect,
    config: &Config,
) -> Result<Option<String>, StoreError> {
    let current = config.release.as_ref().map(|r| r.code_id.as_str());
    let stack = released(tx, d, &config.id).await?;
    for code_id in stack.iter().rev().skip(1) {
        if Some(code_id.as_str()) != current && !is_broken(tx, d, code_id).await? {
            return Ok(Some(code_id.clone()));
        }
    }
    Ok(None)
}

async fn released(tx: &mut Transaction<'_, Any>, d: Dialect, config_id: &str) -> Result<Vec<String>, StoreError> {
    let rows = sqlx::query(sql!(
        d,
        "SELECT kind, to_state FROM release_events WHERE config_id = $1 AND kind IN ('release', 'rollback') \
         ORDER BY id",
    ))
    .bind(config_id)
    .fetch_all(&mut **tx)
    .await?;
    let mut stack: Vec<String> = Vec::new();
    for row in &rows {
        let kind: String = row.try_get("kind")?;
        let to: String = row.try_get("to_state")?;
        let to: serde_json::Value = serde_json::from_str(&to).map_err(|e| corrupt("event state", &e.to_string()))?;
        let Some(code_id) = to["release"]["code_id"].as_str() else {
            continue;
        };
        if kind == EventKind::Rollback.as_str() {
            while stack.last().is_some_and(|top| top != code_id) {
                stack.pop();
            }
            if stack.is_empty() {
                stack.push(code_id.to_owned());
            }
        } else {
            stack.push(code_id.to_owned());
        }
    }
    Ok(stack)
}

async fn is_broken(tx: &mut Transaction<'_, Any>, d: Dialect, code_id: &str) -> Result<bool, StoreError> {
    let row = sqlx::query(sql!(d, "SELECT broken FROM versions WHERE code_id = $1"))
        .bind(code_id)
        .fetch_one(&mut **tx)
        .await?;
    Ok(row.try_get::<i64, _>("broken")? != 0)
}
