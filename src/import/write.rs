//! Writes a plan into Vane's store, row by row, so that a second run finds
//! everything in place and changes nothing: a config, version or test that
//! exists is left as it is (a config's pointers and status are brought to
//! the original's), and a report already imported is known by its source.
//! A row the store refuses is listed with the rest and the import goes on;
//! a store that stops answering stops the import.

use std::collections::{HashMap, HashSet};

use super::plan::{ACTOR, ConfigPlan, ImportPlan, RefusedRow};
use crate::domain::Config;
use crate::domain::health::BreakRule;
use crate::domain::model::{Gray, Release};
use crate::store::{Breaking, Change, NewConfig, Store, StoreError};

/// What happened to the rows of one table.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// Written new.
    pub created: usize,
    /// Found and brought to the original's state (configs only).
    pub updated: usize,
    /// Found as they should be.
    pub unchanged: usize,
}

/// What an import did, or (dry run) would do.
#[derive(Debug, Clone, Default)]
pub struct ImportOutcome {
    /// Configs.
    pub configs: Counts,
    /// Versions.
    pub versions: Counts,
    /// Test cases.
    pub tests: Counts,
    /// Reports.
    pub reports: Counts,
    /// Rows left out, the plan's and the store's.
    pub refused: Vec<RefusedRow>,
}

/// Writes `plan` (or, with `dry_run`, only reads what it would change).
pub async fn apply(store: &dyn Store, plan: ImportPlan, dry_run: bool) -> Result<ImportOutcome, StoreError> {
    let mut out = ImportOutcome {
        refused: plan.refused,
        ..ImportOutcome::default()
    };
    let mut found: HashMap<String, Option<Config>> = HashMap::new();
    // Configs Vane has with another secret (another config by the same id,
    // or one whose secret was rotated in Vane), or could not create: what
    // they hold is not written either.
    let mut untouched: HashSet<String> = HashSet::new();
    for config in &plan.configs {
        let existing = store.get_config(&config.id).await?;
        if existing.is_none() && !dry_run {
            let new = NewConfig {
                id: config.id.clone(),
                description: "imported from the Go service".into(),
                secret: config.secret.clone(),
            };
            let created = store_row(
                store.create_config(new, ACTOR).await,
                &mut out.refused,
                "config",
                &format!("config_id `{}`", config.id),
            )?;
            if created.is_none() {
                untouched.insert(config.id.clone());
                continue;
            }
        }
        if let Some(existing) = &existing
            && existing.secret != config.secret
        {
            out.refused.push(RefusedRow {
                table: "config",
                row: format!("config_id `{}`", config.id),
                reason: "Vane has a config by this id with another secret; it is left as it is, with what it holds"
                    .into(),
            });
            untouched.insert(config.id.clone());
            continue;
        }
        found.insert(config.id.clone(), existing);
    }
    let left_alone = |table: &'static str, row: String, config_id: &str| RefusedRow {
        table,
        row,
        reason: format!("its config `{config_id}` is left as it is (see that row)"),
    };
    for version in plan.versions {
        let row = version.code_id.clone();
        if untouched.contains(&version.new.config_id) {
            out.refused
                .push(left_alone("code", format!("code_id `{row}`"), &version.new.config_id));
            continue;
        }
        match store.get_version(&version.code_id).await? {
            Some(v) if v.config_id == version.new.config_id => out.versions.unchanged += 1,
            Some(v) => out.refused.push(RefusedRow {
                table: "code",
                row: format!("code_id `{row}`"),
                reason: format!("Vane has this code id in config `{}`", v.config_id),
            }),
            None if dry_run => out.versions.created += 1,
            None => {
                if store_row(
                    store.import_version(version).await,
                    &mut out.refused,
                    "code",
                    &format!("code_id `{row}`"),
                )?
                .is_some()
                {
                    out.versions.created += 1;
                }
            }
        }
    }
    for config in plan.configs.iter().filter(|c| !untouched.contains(&c.id)) {
        let existing = found.get(&config.id).cloned().flatten();
        let changes = changes(existing.as_ref(), config);
        let counts = &mut out.configs;
        match (&existing, changes.is_empty()) {
            (None, _) => counts.created += 1,
            (Some(_), true) => counts.unchanged += 1,
            (Some(_), false) => counts.updated += 1,
        }
        if dry_run {
            continue;
        }
        for change in changes {
            let applied = store.apply(&config.id, change, ACTOR).await;
            store_row(
                applied,
                &mut out.refused,
                "config",
                &format!("config_id `{}`", config.id),
            )?;
        }
    }
    for (test_id, new) in plan.tests {
        if untouched.contains(&new.config_id) {
            out.refused
                .push(left_alone("unittest", format!("test_id `{test_id}`"), &new.config_id));
            continue;
        }
        match store.get_test(&test_id).await? {
            Some(t) if t.code_id == new.code_id => out.tests.unchanged += 1,
            Some(t) => out.refused.push(RefusedRow {
                table: "unittest",
                row: format!("test_id `{test_id}`"),
                reason: format!("Vane has this test id for version `{}`", t.code_id),
            }),
            None if dry_run => out.tests.created += 1,
            None => {
                if store_row(
                    store.import_test(new, &test_id).await,
                    &mut out.refused,
                    "unittest",
                    &format!("test_id `{test_id}`"),
                )?
                .is_some()
                {
                    out.tests.created += 1;
                }
            }
        }
    }
    let mut imported: HashMap<String, HashSet<String>> = HashMap::new();
    for report in plan.reports {
        if untouched.contains(&report.config_id) {
            let row = format!("id {}", report.source.trim_start_matches("import:"));
            out.refused.push(left_alone("error_report", row, &report.config_id));
            continue;
        }
        if !imported.contains_key(&report.code_id) {
            let sources = store
                .list_reports(&report.code_id, i64::MAX)
                .await
                .or_else(|e| not_there_yet(e, dry_run))?
                .into_iter()
                .map(|r| r.source)
                .filter(|s| s.starts_with("import:"));
            imported.insert(report.code_id.clone(), sources.collect());
        }
        if imported[&report.code_id].contains(&report.source) {
            out.reports.unchanged += 1;
            continue;
        }
        if dry_run {
            out.reports.created += 1;
            continue;
        }
        let row = format!("id {}", report.source.trim_start_matches("import:"));
        if store_row(
            store.add_report(report, &NEVER_BREAKS).await,
            &mut out.refused,
            "error_report",
            &row,
        )?
        .is_some()
        {
            out.reports.created += 1;
        }
    }
    Ok(out)
}

/// Imported reports are not candidates, so no rule judges them.
const NEVER_BREAKS: Breaking = Breaking {
    rule: BreakRule::Count { threshold: u64::MAX },
    window_s: 0,
    served_networks: None,
};

/// A dry run reads reports of versions it has not written.
fn not_there_yet<T: Default>(e: StoreError, dry_run: bool) -> Result<T, StoreError> {
    match (e, dry_run) {
        (StoreError::NotFound(_), true) => Ok(T::default()),
        (e, _) => Err(e),
    }
}

/// The changes that bring `existing` (or a config just created: active,
/// nothing released) to the original's state, in the order they apply.
fn changes(existing: Option<&Config>, want: &ConfigPlan) -> Vec<Change> {
    let status = existing.map_or(crate::domain::ConfigStatus::Active, |c| c.status);
    let release = existing.and_then(|c| c.release.clone());
    let gray = existing.and_then(|c| c.gray.clone());
    let mut changes = Vec::new();
    if status != want.status {
        changes.push(Change::Status(want.status));
    }
    if let Some(code_id) = &want.release
        && release
            != Some(Release {
                code_id: code_id.clone(),
            })
    {
        changes.push(Change::Release {
            code_id: code_id.clone(),
            forced: false,
        });
    }
    let want_gray = want.gray.as_ref().map(|(code_id, percentage)| Gray {
        code_id: code_id.clone(),
        percentage: *percentage,
    });
    match want_gray {
        Some(g) if gray.as_ref() != Some(&g) => changes.push(Change::Gray {
            code_id: g.code_id,
            percentage: g.percentage,
            forced: false,
        }),
        None if gray.is_some() => changes.push(Change::RemoveGray),
        _ => {}
    }
    changes
}

/// A store call for one row: a refusal of the row is listed and the import
/// goes on (`None`); a store that is unavailable stops it.
fn store_row<T>(
    result: Result<T, StoreError>,
    refused: &mut Vec<RefusedRow>,
    table: &'static str,
    row: &str,
) -> Result<Option<T>, StoreError> {
    match result {
        Ok(value) => Ok(Some(value)),
        Err(e @ StoreError::Unavailable(_)) => Err(e),
        Err(e) => {
            refused.push(RefusedRow {
                table,
                row: row.to_owned(),
                reason: format!("the store refused it: {e}"),
            });
            Ok(None)
        }
    }
}
