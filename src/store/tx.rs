//! What every write transaction of the SQL store shares: the config's lock,
//! the revision bump, the release log, and the column lists. Both `sql.rs`
//! and the modules it delegates to (`cases.rs`, `health.rs`) build on these,
//! so none of them depends on another.

use serde_json::json;
use sqlx::{Any, Transaction};

use super::dialect::{Dialect, sql};
use super::rows::config_from_row;
use super::{Change, Missing, StoreError, history};
use crate::domain::Config;
use crate::domain::model::{EventKind, Gray, Release, now_millis};

// Macros, not consts, so the SQL stays a static string (sqlx refuses
// strings built at run time).
macro_rules! config_columns {
    () => {
        "id, description, status, secret, revision, release_code_id, gray_code_id, gray_percentage, created_at, updated_at, \
         previous_secret, previous_secret_until, previous_secrets, approvals_required"
    };
}
macro_rules! version_columns {
    () => {
        "code_id, config_id, lang, source, rules, params, error_count, broken, still_served, created_by, created_at"
    };
}
pub(super) use {config_columns, version_columns};

/// Takes the config's write lock (a row lock on PostgreSQL and MySQL, the
/// database lock on SQLite) before reading it, so the read cannot go stale
/// before the write. (MySQL counts the rows matched, as sqlx connects with
/// `CLIENT_FOUND_ROWS`, so an update that changes nothing still counts.)
pub(super) async fn lock_config(
    tx: &mut Transaction<'_, Any>,
    d: Dialect,
    config_id: &str,
) -> Result<Config, StoreError> {
    let locked = sqlx::query(sql!(d, "UPDATE configs SET revision = revision WHERE id = $1"))
        .bind(config_id)
        .execute(&mut **tx)
        .await?;
    if locked.rows_affected() == 0 {
        return Err(not_found_config(config_id));
    }
    read_config(&mut **tx, d, config_id)
        .await?
        .ok_or_else(|| not_found_config(config_id))
}

/// A config by id, through the pool or inside a transaction.
pub(super) async fn read_config<'e, E: sqlx::Executor<'e, Database = Any>>(
    db: E,
    d: Dialect,
    id: &str,
) -> Result<Option<Config>, StoreError> {
    let row = sqlx::query(sql!(
        d,
        concat!("SELECT ", config_columns!(), " FROM configs WHERE id = $1")
    ))
    .bind(id)
    .fetch_optional(db)
    .await?;
    row.as_ref().map(config_from_row).transpose()
}

/// Writes `after` with the next revision.
pub(super) async fn bump(tx: &mut Transaction<'_, Any>, d: Dialect, after: Config) -> Result<Config, StoreError> {
    let after = Config {
        revision: after.revision + 1,
        updated_at: now_millis(),
        ..after
    };
    sqlx::query(sql!(
        d,
        "UPDATE configs SET status = $1, revision = $2, release_code_id = $3, gray_code_id = $4, \
         gray_percentage = $5, updated_at = $6 WHERE id = $7",
    ))
    .bind(after.status.as_str())
    .bind(after.revision)
    .bind(after.release.as_ref().map(|r| r.code_id.clone()))
    .bind(after.gray.as_ref().map(|g| g.code_id.clone()))
    .bind(after.gray.as_ref().map_or(0, |g| i64::from(g.percentage)))
    .bind(after.updated_at)
    .bind(&after.id)
    .execute(&mut **tx)
    .await?;
    Ok(after)
}

pub(super) async fn ensure_version_of(
    tx: &mut Transaction<'_, Any>,
    d: Dialect,
    config_id: &str,
    code_id: &str,
) -> Result<(), StoreError> {
    let found = sqlx::query(sql!(d, "SELECT 1 FROM versions WHERE code_id = $1 AND config_id = $2"))
        .bind(code_id)
        .bind(config_id)
        .fetch_optional(&mut **tx)
        .await?;
    match found {
        Some(_) => Ok(()),
        None => Err(StoreError::NotFound(Missing::version(config_id, code_id))),
    }
}

/// A release-log entry about to be written.
pub(super) struct NewEvent<'a> {
    pub kind: EventKind,
    pub actor: &'a str,
    pub from: serde_json::Value,
    pub to: serde_json::Value,
    pub forced: bool,
    pub detail: Option<serde_json::Value>,
}

impl<'a> NewEvent<'a> {
    pub fn new(kind: EventKind, actor: &'a str, from: serde_json::Value, to: serde_json::Value) -> Self {
        Self {
            kind,
            actor,
            from,
            to,
            forced: false,
            detail: None,
        }
    }
}

pub(super) async fn insert_event(
    tx: &mut Transaction<'_, Any>,
    d: Dialect,
    config: &Config,
    event: NewEvent<'_>,
) -> Result<(), StoreError> {
    sqlx::query(sql!(
        d,
        "INSERT INTO release_events (config_id, revision, kind, actor, from_state, to_state, forced, created_at, detail) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    ))
    .bind(&config.id)
    .bind(config.revision)
    .bind(event.kind.as_str())
    .bind(event.actor)
    .bind(event.from.to_string())
    .bind(event.to.to_string())
    .bind(i64::from(event.forced))
    .bind(now_millis())
    .bind(event.detail.map(|d| d.to_string()))
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// What an event records of a config: the parts a change can move.
pub(super) fn state_of(c: &Config) -> serde_json::Value {
    json!({ "status": c.status, "release": c.release, "gray": c.gray })
}

pub(super) fn new_code_id() -> String {
    format!("{:016x}", rand::random::<u64>())
}

pub(super) fn not_found_config(id: &str) -> StoreError {
    StoreError::NotFound(Missing::Config(id.to_owned()))
}

/// Applies a pointer change to the locked config `before`: the new revision
/// and its event (with `detail`, if any). `None` when the change is already
/// in force, so nothing is written.
pub(super) async fn apply_change(
    tx: &mut Transaction<'_, Any>,
    d: Dialect,
    before: &Config,
    change: &Change,
    actor: &str,
    detail: Option<serde_json::Value>,
) -> Result<Option<Config>, StoreError> {
    let (kind, forced, after) = changed(tx, d, before, change).await?;
    if after == *before {
        return Ok(None);
    }
    let after = bump(tx, d, after).await?;
    let event = NewEvent {
        forced,
        detail,
        ..NewEvent::new(kind, actor, state_of(before), state_of(&after))
    };
    insert_event(tx, d, &after, event).await?;
    Ok(Some(after))
}

/// The config as it would be after `change`, with the event kind and whether
/// it was forced. Checks that a named version belongs to this config.
async fn changed(
    tx: &mut Transaction<'_, Any>,
    d: Dialect,
    before: &Config,
    change: &Change,
) -> Result<(EventKind, bool, Config), StoreError> {
    let mut after = before.clone();
    let result = match change {
        Change::Release { code_id, forced } => {
            ensure_version_of(tx, d, &before.id, code_id).await?;
            after.release = Some(Release {
                code_id: code_id.clone(),
            });
            if after.gray.as_ref().is_some_and(|g| &g.code_id == code_id) {
                after.gray = None;
            }
            (EventKind::Release, *forced)
        }
        Change::Gray {
            code_id,
            percentage,
            forced,
        } => {
            if *percentage > 100 {
                return Err(StoreError::Percentage(*percentage));
            }
            ensure_version_of(tx, d, &before.id, code_id).await?;
            after.gray = Some(Gray {
                code_id: code_id.clone(),
                percentage: *percentage,
            });
            (EventKind::Gray, *forced)
        }
        Change::RemoveGray => {
            after.gray = None;
            (EventKind::GrayRemoved, false)
        }
        Change::Status(status) => {
            after.status = *status;
            (EventKind::Status, false)
        }
        Change::Rollback => {
            let target = history::rollback_target(tx, d, before).await?;
            if after.gray.as_ref().is_some_and(|g| g.code_id == target) {
                after.gray = None;
            }
            after.release = Some(Release { code_id: target });
            (EventKind::Rollback, false)
        }
        // Marks are stored by `set_broken`; a caller routing one here is a
        // bug, answered as one rather than stored as a pointer change.
        Change::Broken { .. } | Change::Unbroken { .. } => {
            return Err(StoreError::Corrupt("a broken mark sent as a pointer change".into()));
        }
    };
    Ok((result.0, result.1, after))
}
