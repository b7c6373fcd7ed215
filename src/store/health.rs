//! Error reports and the broken mark: the report that reaches the threshold
//! breaks its version in the same transaction, as a release event.

use serde_json::json;
use sqlx::any::AnyRow;
use sqlx::{Any, AnyPool, Row, Transaction};

use super::sql::{bump, insert_event, lock_config};
use super::{NewReport, ReportOutcome, StoreError};
use crate::domain::Config;
use crate::domain::model::{ErrorReport, EventKind, now_millis};

/// Who a break by reports is recorded as.
pub const REPORTS_ACTOR: &str = "reports";

pub async fn add_report(pool: &AnyPool, report: NewReport, break_threshold: i64) -> Result<ReportOutcome, StoreError> {
    let mut tx = pool.begin().await?;
    let config = lock_config(&mut tx, &report.config_id).await?;
    let counted = sqlx::query(
        "UPDATE versions SET error_count = error_count + 1 WHERE code_id = $1 AND config_id = $2 \
         RETURNING error_count, broken",
    )
    .bind(&report.code_id)
    .bind(&report.config_id)
    .fetch_optional(&mut *tx)
    .await?
    .ok_or_else(|| StoreError::NotFound(format!("version `{}` of config `{}`", report.code_id, report.config_id)))?;
    let error_count: i64 = counted.try_get("error_count")?;
    sqlx::query(
        "INSERT INTO error_reports (config_id, code_id, err_time, message, received_at) VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(&report.config_id)
    .bind(&report.code_id)
    .bind(report.err_time)
    .bind(&report.message)
    .bind(now_millis())
    .execute(&mut *tx)
    .await?;
    let broke = if error_count >= break_threshold {
        set_broken(&mut tx, &config, &report.code_id, true, REPORTS_ACTOR).await?
    } else {
        None
    };
    tx.commit().await?;
    Ok(ReportOutcome { error_count, broke })
}

/// Sets or clears a version's broken mark (clearing also resets its error
/// count), bumping the config's revision with an event. `None` when the mark
/// was already so.
pub async fn set_broken(
    tx: &mut Transaction<'_, Any>,
    config: &Config,
    code_id: &str,
    broken: bool,
    actor: &str,
) -> Result<Option<Config>, StoreError> {
    let changed = if broken {
        sqlx::query("UPDATE versions SET broken = 1 WHERE code_id = $1 AND config_id = $2 AND broken = 0")
    } else {
        sqlx::query(
            "UPDATE versions SET broken = 0, error_count = 0 WHERE code_id = $1 AND config_id = $2 AND broken = 1",
        )
    }
    .bind(code_id)
    .bind(&config.id)
    .execute(&mut **tx)
    .await?;
    if changed.rows_affected() == 0 {
        super::sql::ensure_version_of(tx, &config.id, code_id).await?;
        return Ok(None);
    }
    let after = bump(tx, config.clone()).await?;
    let kind = if broken { EventKind::Broken } else { EventKind::Unbroken };
    let state = |b: bool| json!({ "code_id": code_id, "broken": b });
    insert_event(tx, &after, kind, actor, state(!broken), state(broken), false).await?;
    Ok(Some(after))
}

pub async fn list_reports(pool: &AnyPool, code_id: &str, limit: i64) -> Result<Vec<ErrorReport>, StoreError> {
    let rows = sqlx::query(
        "SELECT id, config_id, code_id, err_time, message, received_at FROM error_reports \
         WHERE code_id = $1 ORDER BY id DESC LIMIT $2",
    )
    .bind(code_id)
    .bind(limit)
    .fetch_all(pool)
    .await?;
    rows.iter().map(report_from_row).collect()
}

fn report_from_row(row: &AnyRow) -> Result<ErrorReport, StoreError> {
    Ok(ErrorReport {
        id: row.try_get("id")?,
        config_id: row.try_get("config_id")?,
        code_id: row.try_get("code_id")?,
        err_time: row.try_get("err_time")?,
        message: row.try_get("message")?,
        received_at: row.try_get("received_at")?,
    })
}
