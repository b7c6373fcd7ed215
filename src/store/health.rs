//! Error reports, the broken mark and the secret: a report that makes its
//! version's tally enough breaks it in the same transaction, as a release
//! event carrying the evidence, and rolls a broken stable version back; with
//! nothing to roll back to, the rate rule keeps serving it (`still_served`):
//! reports never take a config offline, an operator does.

use serde_json::json;
use sqlx::any::AnyRow;
use sqlx::{Any, AnyPool, Row, Transaction};

use super::dialect::{Dialect, sql};
use super::rows::corrupt;
use super::tx::{NewEvent, bump, ensure_version_of, insert_event, lock_config, state_of};
use super::{Breaking, Broke, Missing, NewReport, ReportCount, ReportOutcome, StoreError, history};
use crate::domain::Config;
use crate::domain::health::{BreakRule, Evidence, ReportKind, Tally, judge};
use crate::domain::model::{ErrorReport, EventKind, Release, now_millis};

/// Who a break by reports is recorded as.
const REPORTS_ACTOR: &str = "reports";

pub async fn add_report(
    pool: &AnyPool,
    d: Dialect,
    report: NewReport,
    breaking: &Breaking,
) -> Result<ReportOutcome, StoreError> {
    let now = now_millis();
    if !report.candidate {
        return store_ignored(pool, d, &report, now).await;
    }
    let since = now - breaking.window_s as i64 * 1000;
    let mut tx = pool.begin().await?;
    let config = lock_config(&mut tx, d, &report.config_id).await?;
    let version = sqlx::query(sql!(
        d,
        "SELECT error_count, broken FROM versions WHERE code_id = $1 AND config_id = $2"
    ))
    .bind(&report.code_id)
    .bind(&report.config_id)
    .fetch_optional(&mut *tx)
    .await?
    .ok_or_else(|| StoreError::NotFound(Missing::version(&report.config_id, &report.code_id)))?;
    let mut error_count: i64 = version.try_get("error_count")?;
    let broken = version.try_get::<i64, _>("broken")? != 0;
    let counted = matches!(breaking.rule, BreakRule::Count { .. })
        || !counted_before(&mut tx, d, &report.code_id, &report.source, since).await?;
    insert_report(&mut *tx, d, &report, now, counted).await?;
    let mut outcome = ReportOutcome {
        counted,
        error_count,
        counted_sources: 0,
        broke: None,
    };
    if counted {
        sqlx::query(sql!(
            d,
            "UPDATE versions SET error_count = error_count + 1 WHERE code_id = $1"
        ))
        .bind(&report.code_id)
        .execute(&mut *tx)
        .await?;
        error_count = sqlx::query(sql!(d, "SELECT error_count FROM versions WHERE code_id = $1"))
            .bind(&report.code_id)
            .fetch_one(&mut *tx)
            .await?
            .try_get("error_count")?;
        let sources: i64 = sqlx::query(sql!(
            d,
            "SELECT COUNT(DISTINCT source) AS n FROM error_reports \
             WHERE code_id = $1 AND counted = 1 AND received_at >= $2",
        ))
        .bind(&report.code_id)
        .bind(since)
        .fetch_one(&mut *tx)
        .await?
        .try_get("n")?;
        outcome.error_count = error_count;
        outcome.counted_sources = sources;
        let served = match breaking.rule {
            BreakRule::Rate { .. } => breaking.served_networks,
            BreakRule::Count { .. } => Some(0),
        };
        let tally = served.map(|served_networks| Tally {
            counted_sources: sources.max(0) as u64,
            error_count: error_count.max(0) as u64,
            served_networks,
            window_s: breaking.window_s,
        });
        if !broken && let Some(evidence) = tally.and_then(|t| judge(breaking.rule, t)) {
            let keep = matches!(breaking.rule, BreakRule::Rate { .. });
            outcome.broke = Some(break_version(&mut tx, d, &config, &report.code_id, evidence, keep).await?);
        }
    }
    tx.commit().await?;
    Ok(outcome)
}

/// Stores a report that cannot count: one statement that writes from the
/// start (so SQLite never has to upgrade a read lock under contention), and
/// without the config's lock, which releases and counted reports need.
async fn store_ignored(pool: &AnyPool, d: Dialect, report: &NewReport, now: i64) -> Result<ReportOutcome, StoreError> {
    let stored = insert_report(pool, d, report, now, false).await?;
    if !stored {
        return Err(StoreError::NotFound(Missing::version(
            &report.config_id,
            &report.code_id,
        )));
    }
    Ok(ReportOutcome {
        counted: false,
        error_count: 0,
        counted_sources: 0,
        broke: None,
    })
}

/// Stores one report if its version belongs to the config; whether it did.
async fn insert_report<'e, E: sqlx::Executor<'e, Database = Any>>(
    db: E,
    d: Dialect,
    report: &NewReport,
    now: i64,
    counted: bool,
) -> Result<bool, StoreError> {
    let stored = sqlx::query(sql!(
        d,
        "INSERT INTO error_reports (config_id, code_id, err_time, message, received_at, kind, source, counted) \
         SELECT config_id, code_id, $1, $2, $3, $4, $5, $6 FROM versions WHERE code_id = $7 AND config_id = $8",
    ))
    .bind(report.err_time)
    .bind(&report.message)
    .bind(now)
    .bind(report.kind.as_str())
    .bind(&report.source)
    .bind(i64::from(counted))
    .bind(&report.code_id)
    .bind(&report.config_id)
    .execute(db)
    .await?;
    Ok(stored.rows_affected() > 0)
}

async fn counted_before(
    tx: &mut Transaction<'_, Any>,
    d: Dialect,
    code_id: &str,
    source: &str,
    since: i64,
) -> Result<bool, StoreError> {
    let found = sqlx::query(sql!(
        d,
        "SELECT 1 FROM error_reports WHERE code_id = $1 AND counted = 1 AND received_at >= $2 AND source = $3 LIMIT 1",
    ))
    .bind(code_id)
    .bind(since)
    .bind(source)
    .fetch_optional(&mut **tx)
    .await?;
    Ok(found.is_some())
}

/// Marks the version broken with the evidence; a broken stable version rolls
/// back to the latest earlier one that is not broken, if there is one. With
/// none, and `keep` (the rate rule), the version is still served: the event
/// says so, and going offline is left to an operator. (The count rule keeps
/// the original's 403.)
async fn break_version(
    tx: &mut Transaction<'_, Any>,
    d: Dialect,
    config: &Config,
    code_id: &str,
    evidence: Evidence,
    keep: bool,
) -> Result<Broke, StoreError> {
    let stable = config.release.as_ref().is_some_and(|r| r.code_id == code_id);
    // The current release is never its own target, so the target does not
    // depend on the mark about to be set.
    let target = match stable {
        true => history::healthy_target(tx, d, config).await?,
        false => None,
    };
    let still_served = stable && keep && target.is_none();
    let detail = match still_served {
        true => json!({
            "evidence": evidence,
            "still_served": true,
            "why": "no earlier stable version is healthy: the version is still served until an operator acts",
        }),
        false => json!({ "evidence": evidence }),
    };
    if still_served {
        sqlx::query(sql!(d, "UPDATE versions SET still_served = 1 WHERE code_id = $1"))
            .bind(code_id)
            .execute(&mut **tx)
            .await?;
    }
    let after = set_broken(tx, d, config, code_id, true, REPORTS_ACTOR, Some(detail))
        .await?
        .unwrap_or_else(|| config.clone());
    let Some(target) = target else {
        return Ok(Broke {
            config: after,
            evidence,
            rolled_back_to: None,
            still_served,
        });
    };
    let mut rolled = after.clone();
    if rolled.gray.as_ref().is_some_and(|g| g.code_id == target) {
        rolled.gray = None;
    }
    rolled.release = Some(Release {
        code_id: target.clone(),
    });
    let rolled = bump(tx, d, rolled).await?;
    let state = state_of;
    let event = NewEvent {
        detail: Some(json!({ "evidence": evidence, "broken": code_id })),
        ..NewEvent::new(EventKind::Rollback, REPORTS_ACTOR, state(&after), state(&rolled))
    };
    insert_event(tx, d, &rolled, event).await?;
    Ok(Broke {
        config: rolled,
        evidence,
        rolled_back_to: Some(target),
        still_served: false,
    })
}

/// Sets or clears a version's broken mark (clearing also resets its error
/// count), bumping the config's revision with an event. `None` when the mark
/// was already so. Marking by hand a version reports left `still_served`
/// stops serving it: that is the operator's act reports never take.
pub async fn set_broken(
    tx: &mut Transaction<'_, Any>,
    d: Dialect,
    config: &Config,
    code_id: &str,
    broken: bool,
    actor: &str,
    detail: Option<serde_json::Value>,
) -> Result<Option<Config>, StoreError> {
    let changed = if broken {
        // By reports, a version's `still_served` is set just before this:
        // the mark is then new (broken = 0) and `still_served` is kept.
        let still = i64::from(actor == REPORTS_ACTOR);
        sqlx::query(sql!(
            d,
            "UPDATE versions SET broken = 1, still_served = still_served * $1 \
             WHERE code_id = $2 AND config_id = $3 AND (broken = 0 OR still_served = 1)"
        ))
        .bind(still)
    } else {
        sqlx::query(sql!(
            d,
            "UPDATE versions SET broken = 0, still_served = 0, error_count = 0 \
             WHERE code_id = $1 AND config_id = $2 AND broken = 1",
        ))
    }
    .bind(code_id)
    .bind(&config.id)
    .execute(&mut **tx)
    .await?;
    if changed.rows_affected() == 0 {
        ensure_version_of(tx, d, &config.id, code_id).await?;
        return Ok(None);
    }
    let after = bump(tx, d, config.clone()).await?;
    let kind = if broken { EventKind::Broken } else { EventKind::Unbroken };
    let state = |b: bool| json!({ "code_id": code_id, "broken": b });
    let event = NewEvent {
        detail,
        ..NewEvent::new(kind, actor, state(!broken), state(broken))
    };
    insert_event(tx, d, &after, event).await?;
    Ok(Some(after))
}

pub async fn list_reports(
    pool: &AnyPool,
    d: Dialect,
    code_id: &str,
    limit: i64,
) -> Result<Vec<ErrorReport>, StoreError> {
    let rows = sqlx::query(sql!(
        d,
        "SELECT id, config_id, code_id, err_time, message, received_at, kind, source, counted FROM error_reports \
         WHERE code_id = $1 ORDER BY id DESC LIMIT $2",
    ))
    .bind(code_id)
    .bind(limit)
    .fetch_all(pool)
    .await?;
    rows.iter().map(report_from_row).collect()
}

pub async fn report_counts(
    pool: &AnyPool,
    d: Dialect,
    code_id: &str,
    since_ms: i64,
) -> Result<Vec<ReportCount>, StoreError> {
    let rows = sqlx::query(sql!(
        d,
        "SELECT kind, counted, COUNT(*) AS reports, COUNT(DISTINCT source) AS sources FROM error_reports \
         WHERE code_id = $1 AND received_at >= $2 GROUP BY kind, counted ORDER BY kind, counted",
    ))
    .bind(code_id)
    .bind(since_ms)
    .fetch_all(pool)
    .await?;
    rows.iter()
        .map(|row| {
            Ok(ReportCount {
                kind: kind_of(row)?,
                counted: row.try_get::<i64, _>("counted")? != 0,
                reports: row.try_get("reports")?,
                sources: row.try_get("sources")?,
            })
        })
        .collect()
}

pub async fn rotate_secret(
    pool: &AnyPool,
    d: Dialect,
    config_id: &str,
    secret: &str,
    grace_until_ms: i64,
    actor: &str,
) -> Result<Config, StoreError> {
    let mut tx = pool.begin().await?;
    let before = lock_config(&mut tx, d, config_id).await?;
    // Every secret still in its grace keeps it (`Config::rotated_previous`);
    // the newest is also kept in the columns older readers know.
    let previous = before.rotated_previous(grace_until_ms, crate::domain::model::now_millis());
    let list = serde_json::to_string(&previous).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    sqlx::query(sql!(
        d,
        "UPDATE configs SET previous_secret = $1, previous_secret_until = $2, previous_secrets = $3, secret = $4 \
         WHERE id = $5"
    ))
    .bind(&before.secret)
    .bind(grace_until_ms)
    .bind(&list)
    .bind(secret)
    .bind(config_id)
    .execute(&mut *tx)
    .await?;
    let rotated = Config {
        previous_secret: Some(before.secret.clone()),
        previous_secret_until: grace_until_ms,
        previous_secrets: previous,
        secret: secret.to_owned(),
        ..before.clone()
    };
    let after = bump(&mut tx, d, rotated).await?;
    // Never the secrets themselves: the log is read by more people.
    let grace = |until: i64| json!({ "previous_secret_until": until });
    let event = NewEvent::new(
        EventKind::SecretRotated,
        actor,
        grace(before.previous_secret_until),
        grace(grace_until_ms),
    );
    insert_event(&mut tx, d, &after, event).await?;
    tx.commit().await?;
    Ok(after)
}

fn kind_of(row: &AnyRow) -> Result<ReportKind, StoreError> {
    let kind: String = row.try_get("kind")?;
    ReportKind::parse(&kind).ok_or_else(|| corrupt("report kind", &kind))
}

fn report_from_row(row: &AnyRow) -> Result<ErrorReport, StoreError> {
    Ok(ErrorReport {
        id: row.try_get("id")?,
        config_id: row.try_get("config_id")?,
        code_id: row.try_get("code_id")?,
        err_time: row.try_get("err_time")?,
        message: row.try_get("message")?,
        received_at: row.try_get("received_at")?,
        kind: kind_of(row)?,
        source: row.try_get("source")?,
        counted: row.try_get::<i64, _>("counted")? != 0,
    })
}
