//! Rows into domain values; a value the domain cannot read is `Corrupt`.

use sqlx::Row;
use sqlx::any::AnyRow;

use super::StoreError;
use crate::domain::model::{EventKind, Gray, Release, ReleaseEvent};
use crate::domain::{Config, ConfigStatus, Lang, Version};

pub(super) fn corrupt(what: &str, value: &str) -> StoreError {
    StoreError::Corrupt(format!("{what} `{value}`"))
}

pub(super) fn config_from_row(row: &AnyRow) -> Result<Config, StoreError> {
    let status: String = row.try_get("status")?;
    let gray_code_id: Option<String> = row.try_get("gray_code_id")?;
    let percentage: i64 = row.try_get("gray_percentage")?;
    Ok(Config {
        id: row.try_get("id")?,
        description: row.try_get("description")?,
        status: ConfigStatus::parse(&status).ok_or_else(|| corrupt("status", &status))?,
        secret: row.try_get("secret")?,
        revision: row.try_get("revision")?,
        release: row
            .try_get::<Option<String>, _>("release_code_id")?
            .map(|code_id| Release { code_id }),
        gray: gray_code_id.map(|code_id| Gray {
            code_id,
            percentage: percentage.clamp(0, 100) as u8,
        }),
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
        previous_secret: row.try_get("previous_secret")?,
        previous_secret_until: row.try_get("previous_secret_until")?,
        approvals_required: row
            .try_get::<i64, _>("approvals_required")?
            .clamp(0, i64::from(u32::MAX)) as u32,
        previous_secrets: match row.try_get::<Option<String>, _>("previous_secrets")? {
            Some(text) if !text.is_empty() => {
                serde_json::from_str(&text).map_err(|e| corrupt("previous_secrets", &e.to_string()))?
            }
            _ => Vec::new(),
        },
    })
}

pub(super) fn version_from_row(row: &AnyRow) -> Result<Version, StoreError> {
    let lang: String = row.try_get("lang")?;
    let rules: String = row.try_get("rules")?;
    let params: String = row.try_get("params")?;
    Ok(Version {
        code_id: row.try_get("code_id")?,
        config_id: row.try_get("config_id")?,
        lang: Lang::parse(&lang).ok_or_else(|| corrupt("lang", &lang))?,
        source: row.try_get("source")?,
        rules: serde_json::from_str(&rules).map_err(|e| corrupt("rules", &e.to_string()))?,
        params: serde_json::from_str(&params).map_err(|e| corrupt("params", &e.to_string()))?,
        error_count: row.try_get("error_count")?,
        broken: row.try_get::<i64, _>("broken")? != 0,
        still_served: row.try_get::<i64, _>("still_served")? != 0,
        created_by: row.try_get("created_by")?,
        created_at: row.try_get("created_at")?,
    })
}

pub(super) fn event_from_row(row: &AnyRow) -> Result<ReleaseEvent, StoreError> {
    let kind: String = row.try_get("kind")?;
    let from: String = row.try_get("from_state")?;
    let to: String = row.try_get("to_state")?;
    Ok(ReleaseEvent {
        id: row.try_get("id")?,
        config_id: row.try_get("config_id")?,
        revision: row.try_get("revision")?,
        kind: EventKind::parse(&kind).ok_or_else(|| corrupt("event kind", &kind))?,
        actor: row.try_get("actor")?,
        from: serde_json::from_str(&from).map_err(|e| corrupt("event state", &e.to_string()))?,
        to: serde_json::from_str(&to).map_err(|e| corrupt("event state", &e.to_string()))?,
        forced: row.try_get::<i64, _>("forced")? != 0,
        created_at: row.try_get("created_at")?,
        detail: row
            .try_get::<Option<String>, _>("detail")?
            .map(|d| serde_json::from_str(&d).map_err(|e| corrupt("event detail", &e.to_string())))
            .transpose()?,
    })
}
