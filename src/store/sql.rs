//! The SQL every backend runs, over sqlx's Any driver. Statements are
//! written with `$n` placeholders in bind order (`dialect.rs` rewrites them
//! for MySQL) and without `RETURNING`, which MySQL lacks: a write is read
//! back in its transaction.

use async_trait::async_trait;
use serde_json::json;
use sqlx::AnyPool;

use super::dialect::{Dialect, sql};
use super::direct::DirectReads;
use super::revisions;
use super::rows::{config_from_row, event_from_row, version_from_row};
use super::tx::{
    NewEvent, apply_change, config_columns, insert_event, lock_config, new_code_id, not_found_config, read_config,
    state_of, version_columns,
};
use super::{
    Advanced, Breaking, Change, ImportedVersion, NewConfig, NewPlan, NewReport, NewTestCase, NewVersion, ReportCount,
    ReportOutcome, Revision, Store, StoreError, cases, health, plans,
};
use crate::domain::identity::content_code_id;
use crate::domain::model::{ErrorReport, EventKind, ReleaseEvent, TestCase, now_millis};
use crate::domain::rollout::{Control, GateFigures, Plan};
use crate::domain::{Config, Version};

pub struct SqlStore {
    pub(super) pool: AnyPool,
    pub(super) dialect: Dialect,
    /// SQLite's revision reads without a thread hop (see `direct.rs`).
    direct: Option<DirectReads>,
}

impl SqlStore {
    /// Stores a version under `code_id`; `Exists` when the id is taken. An
    /// upload (`logged`) writes its `uploaded` event in the same
    /// transaction, so the log never misses a version that exists; an
    /// import brings versions in without one, as they were.
    async fn insert_version(
        &self,
        code_id: &str,
        new: NewVersion,
        error_count: i64,
        broken: bool,
        logged: bool,
    ) -> Result<Version, StoreError> {
        let rules = serde_json::to_string(&new.rules).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let params = serde_json::to_string(&new.params).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let d = self.dialect;
        let mut tx = self.pool.begin().await?;
        let inserted = sqlx::query(sql!(
            d,
            "INSERT INTO versions (code_id, config_id, lang, source, rules, params, error_count, broken, created_by, \
             created_at) SELECT $1, id, $2, $3, $4, $5, $6, $7, $8, $9 FROM configs WHERE id = $10"
        ))
        .bind(code_id)
        .bind(new.lang.as_str())
        .bind(&new.source)
        .bind(rules)
        .bind(params)
        .bind(error_count)
        .bind(i64::from(broken))
        .bind(&new.created_by)
        .bind(now_millis())
        .bind(&new.config_id)
        .execute(&mut *tx)
        .await;
        let inserted = match inserted.map_err(StoreError::from) {
            Err(StoreError::Exists(_)) => return Err(StoreError::Exists(format!("version `{code_id}`"))),
            other => other?,
        };
        if inserted.rows_affected() == 0 {
            return Err(not_found_config(&new.config_id));
        }
        if logged {
            // Clients see nothing new, so the revision stays; the event
            // carries the revision the config is at.
            let config = read_config(&mut *tx, d, &new.config_id)
                .await?
                .ok_or_else(|| not_found_config(&new.config_id))?;
            let to = json!({ "code_id": code_id, "lang": new.lang.as_str() });
            let event = NewEvent::new(EventKind::Uploaded, &new.created_by, json!(null), to);
            insert_event(&mut tx, d, &config, event).await?;
        }
        tx.commit().await?;
        // Versions never change, so the read needs no transaction.
        self.get_version(code_id)
            .await?
            .ok_or_else(|| StoreError::Unavailable(format!("version `{code_id}` vanished after its insert")))
    }

    pub fn new(pool: AnyPool, dialect: Dialect) -> Self {
        Self {
            pool,
            dialect,
            direct: None,
        }
    }

    pub fn with_direct_reads(self, direct: Option<DirectReads>) -> Self {
        Self { direct, ..self }
    }
}

#[async_trait]
impl Store for SqlStore {
    async fn ping(&self) -> Result<(), StoreError> {
        let d = self.dialect;
        sqlx::query(sql!(d, "SELECT 1")).execute(&self.pool).await?;
        Ok(())
    }

    async fn create_config(&self, new: NewConfig, actor: &str) -> Result<Config, StoreError> {
        let d = self.dialect;
        let now = now_millis();
        let mut tx = self.pool.begin().await?;
        let inserted = sqlx::query(sql!(
            d,
            "INSERT INTO configs (id, description, status, secret, revision, created_at, updated_at) \
             VALUES ($1, $2, 'active', $3, 1, $4, $5)"
        ))
        .bind(&new.id)
        .bind(&new.description)
        .bind(&new.secret)
        .bind(now)
        .bind(now)
        .execute(&mut *tx)
        .await;
        match inserted.map_err(StoreError::from) {
            Err(StoreError::Exists(_)) => return Err(StoreError::Exists(format!("config `{}`", new.id))),
            other => other?,
        };
        let config = read_config(&mut *tx, d, &new.id)
            .await?
            .ok_or_else(|| not_found_config(&new.id))?;
        let event = NewEvent::new(EventKind::Created, actor, json!(null), state_of(&config));
        insert_event(&mut tx, d, &config, event).await?;
        tx.commit().await?;
        Ok(config)
    }

    async fn get_config(&self, id: &str) -> Result<Option<Config>, StoreError> {
        read_config(&self.pool, self.dialect, id).await
    }

    async fn config_revisions(&self, ids: &[String]) -> Result<Vec<(String, i64)>, StoreError> {
        match &self.direct {
            Some(direct) => direct.revisions(ids),
            None => revisions::of_configs(&self.pool, self.dialect, ids).await,
        }
    }

    async fn revisions(&self) -> Result<Vec<Revision>, StoreError> {
        revisions::all(&self.pool, self.dialect).await
    }

    async fn list_configs(&self) -> Result<Vec<Config>, StoreError> {
        let d = self.dialect;
        let rows = sqlx::query(sql!(
            d,
            concat!("SELECT ", config_columns!(), " FROM configs ORDER BY id")
        ))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(config_from_row).collect()
    }

    async fn set_description(&self, id: &str, description: &str) -> Result<Config, StoreError> {
        let d = self.dialect;
        let mut tx = self.pool.begin().await?;
        sqlx::query(sql!(
            d,
            "UPDATE configs SET description = $1, updated_at = $2 WHERE id = $3"
        ))
        .bind(description)
        .bind(now_millis())
        .bind(id)
        .execute(&mut *tx)
        .await?;
        let config = read_config(&mut *tx, d, id)
            .await?
            .ok_or_else(|| not_found_config(id))?;
        tx.commit().await?;
        Ok(config)
    }

    async fn create_version(&self, new: NewVersion) -> Result<Version, StoreError> {
        let code_id = content_code_id(&new.config_id, new.lang, &new.source, &new.rules, &new.params);
        match self.insert_version(&code_id, new.clone(), 0, false, true).await {
            // The same content uploaded again (or at the same moment): the
            // version it already is.
            Err(StoreError::Exists(exists)) => match self.get_version(&code_id).await? {
                Some(v) if same_content(&v, &new) => Ok(v),
                _ => Err(StoreError::Exists(exists)),
            },
            other => other,
        }
    }

    async fn import_version(&self, imported: ImportedVersion) -> Result<Version, StoreError> {
        let ImportedVersion {
            new,
            code_id,
            error_count,
            broken,
        } = imported;
        self.insert_version(&code_id, new, error_count, broken, false).await
    }

    async fn get_version(&self, code_id: &str) -> Result<Option<Version>, StoreError> {
        let d = self.dialect;
        let row = sqlx::query(sql!(
            d,
            concat!("SELECT ", version_columns!(), " FROM versions WHERE code_id = $1")
        ))
        .bind(code_id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(version_from_row).transpose()
    }

    async fn list_versions(&self, config_id: &str) -> Result<Vec<Version>, StoreError> {
        let d = self.dialect;
        let rows = sqlx::query(sql!(
            d,
            concat!(
                "SELECT ",
                version_columns!(),
                " FROM versions WHERE config_id = $1 ORDER BY created_at, code_id"
            )
        ))
        .bind(config_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(version_from_row).collect()
    }

    async fn apply(&self, config_id: &str, change: Change, actor: &str) -> Result<Config, StoreError> {
        let mut tx = self.pool.begin().await?;
        let (before, after) = apply_in(&mut tx, self.dialect, config_id, &change, actor, None).await?;
        let Some(after) = after else {
            // Already in force: nothing to record. Ended now, not when the
            // connection is next used, so the config's lock goes at once.
            tx.rollback().await?;
            return Ok(before);
        };
        tx.commit().await?;
        Ok(after)
    }

    async fn list_events(&self, config_id: &str) -> Result<Vec<ReleaseEvent>, StoreError> {
        let d = self.dialect;
        let rows = sqlx::query(sql!(
            d,
            "SELECT id, config_id, revision, kind, actor, from_state, to_state, forced, created_at, detail \
             FROM release_events WHERE config_id = $1 ORDER BY id DESC",
        ))
        .bind(config_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(event_from_row).collect()
    }

    async fn create_test(&self, new: NewTestCase) -> Result<TestCase, StoreError> {
        cases::create(&self.pool, self.dialect, new, &new_code_id()).await
    }

    async fn import_test(&self, new: NewTestCase, test_id: &str) -> Result<TestCase, StoreError> {
        cases::create(&self.pool, self.dialect, new, test_id).await
    }

    async fn list_tests(&self, code_id: &str) -> Result<Vec<TestCase>, StoreError> {
        cases::list(&self.pool, self.dialect, code_id).await
    }

    async fn get_test(&self, test_id: &str) -> Result<Option<TestCase>, StoreError> {
        cases::get(&self.pool, self.dialect, test_id).await
    }

    async fn delete_test(&self, test_id: &str) -> Result<bool, StoreError> {
        cases::delete(&self.pool, self.dialect, test_id).await
    }

    async fn add_report(&self, report: NewReport, breaking: &Breaking) -> Result<ReportOutcome, StoreError> {
        health::add_report(&self.pool, self.dialect, report, breaking).await
    }

    async fn list_reports(&self, code_id: &str, limit: i64) -> Result<Vec<ErrorReport>, StoreError> {
        health::list_reports(&self.pool, self.dialect, code_id, limit).await
    }

    async fn report_counts(&self, code_id: &str, since_ms: i64) -> Result<Vec<ReportCount>, StoreError> {
        health::report_counts(&self.pool, self.dialect, code_id, since_ms).await
    }

    async fn rotate_secret(
        &self,
        config_id: &str,
        secret: &str,
        grace_until_ms: i64,
        actor: &str,
    ) -> Result<Config, StoreError> {
        health::rotate_secret(&self.pool, self.dialect, config_id, secret, grace_until_ms, actor).await
    }

    async fn create_plan(&self, new: NewPlan) -> Result<Plan, StoreError> {
        plans::create(&self.pool, self.dialect, new).await
    }

    async fn get_plan(&self, id: &str) -> Result<Option<Plan>, StoreError> {
        plans::get(&self.pool, self.dialect, id).await
    }

    async fn list_plans(&self, config_id: Option<&str>) -> Result<Vec<Plan>, StoreError> {
        plans::list(&self.pool, self.dialect, config_id).await
    }

    async fn next_plan_due(&self) -> Result<Option<i64>, StoreError> {
        plans::next_due(&self.pool, self.dialect).await
    }

    async fn due_plans(&self, now_ms: i64) -> Result<Vec<Plan>, StoreError> {
        plans::due(&self.pool, self.dialect, now_ms).await
    }

    async fn advance_plan(
        &self,
        id: &str,
        now_ms: i64,
        gate: Option<GateFigures>,
    ) -> Result<Option<Advanced>, StoreError> {
        plans::advance(&self.pool, self.dialect, id, now_ms, gate).await
    }

    async fn control_plan(&self, id: &str, control: Control, actor: &str) -> Result<Advanced, StoreError> {
        plans::control(&self.pool, self.dialect, id, control, actor).await
    }
}

/// Whether `version` holds what `new` would upload.
pub fn same_content(version: &Version, new: &NewVersion) -> bool {
    version.config_id == new.config_id
        && version.lang == new.lang
        && version.source == new.source
        && version.rules == new.rules
        && version.params == new.params
}

/// Applies `change` to the config in `tx`: the config before, and after
/// (`None` when the change was already in force and nothing was written).
/// `note` joins the event's detail (a change request's approvals).
pub(super) async fn apply_in(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    d: Dialect,
    config_id: &str,
    change: &Change,
    actor: &str,
    note: Option<serde_json::Value>,
) -> Result<(Config, Option<Config>), StoreError> {
    // A release, gray or rollback by hand takes the config out of its
    // rollout plan's hands: the plan pauses, and the event says so.
    let manual = matches!(
        change,
        Change::Release { .. } | Change::Gray { .. } | Change::RemoveGray | Change::Rollback
    );
    let paused = match manual {
        true => plans::pause_for_manual(tx, d, config_id, actor).await?,
        false => None,
    };
    let mut detail = paused.map(|plan| json!({"plan_paused": plan, "why": "a change by hand pauses the rollout plan"}));
    if let Some(serde_json::Value::Object(note)) = note {
        let merged = detail.get_or_insert_with(|| json!({}));
        for (key, value) in note {
            merged[key] = value;
        }
    }
    let before = lock_config(tx, d, config_id).await?;
    let after = match change {
        Change::Broken { code_id } => health::set_broken(tx, d, &before, code_id, true, actor, None).await?,
        Change::Unbroken { code_id } => health::set_broken(tx, d, &before, code_id, false, actor, None).await?,
        _ => apply_change(tx, d, &before, change, actor, detail).await?,
    };
    Ok((before, after))
}
