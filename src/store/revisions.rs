//! Revisions alone: what `cached: false` fetches and polling nodes read.

use sqlx::{AnyPool, Row};

use super::dialect::{Dialect, sql};
use super::{Revision, StoreError};

/// Ids in one query; more take several.
const MAX_IDS_PER_QUERY: usize = 128;

/// The revisions of the configs named that exist.
pub(super) async fn of_configs(pool: &AnyPool, d: Dialect, ids: &[String]) -> Result<Vec<(String, i64)>, StoreError> {
    let mut found = Vec::with_capacity(ids.len());
    for chunk in ids.chunks(MAX_IDS_PER_QUERY) {
        // Padded to a power of two by repeating an id, so a connection
        // prepares at most a few shapes of this statement.
        let slots = chunk.len().next_power_of_two();
        let placeholders: Vec<String> = match d {
            Dialect::MySql => vec!["?".to_owned(); slots],
            _ => (1..=slots).map(|i| format!("${i}")).collect(),
        };
        let sql = format!(
            "SELECT id, revision FROM configs WHERE id IN ({})",
            placeholders.join(", ")
        );
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
        for i in 0..slots {
            query = query.bind(&chunk[i.min(chunk.len() - 1)]);
        }
        for row in query.fetch_all(pool).await? {
            found.push((row.try_get(0)?, row.try_get(1)?));
        }
    }
    Ok(found)
}

/// Every config's revision.
pub(super) async fn all(pool: &AnyPool, d: Dialect) -> Result<Vec<Revision>, StoreError> {
    let rows = sqlx::query(sql!(d, "SELECT id, revision, updated_at FROM configs"))
        .fetch_all(pool)
        .await?;
    rows.iter()
        .map(|row| {
            Ok(Revision {
                config_id: row.try_get(0)?,
                revision: row.try_get(1)?,
                updated_at: row.try_get(2)?,
            })
        })
        .collect()
}
