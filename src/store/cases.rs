//! Stored test cases of versions.

use sqlx::any::AnyRow;
use sqlx::{AnyPool, Row};

use super::dialect::{Dialect, sql};
use super::rows::corrupt;
use super::{Missing, NewTestCase, StoreError};
use crate::domain::model::{TestCase, now_millis};

macro_rules! test_columns {
    () => {
        "test_id, config_id, code_id, name, meta, params, expected, created_at"
    };
}

/// Stores a test case under `test_id`; `Exists` when the id is taken.
pub async fn create(pool: &AnyPool, d: Dialect, new: NewTestCase, test_id: &str) -> Result<TestCase, StoreError> {
    let text = |v: &serde_json::Value| v.to_string();
    let meta = serde_json::to_string(&new.meta).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    let inserted = sqlx::query(sql!(
        d,
        "INSERT INTO test_cases (test_id, config_id, code_id, name, meta, params, expected, created_at) \
         SELECT $1, config_id, code_id, $2, $3, $4, $5, $6 FROM versions WHERE code_id = $7 AND config_id = $8"
    ))
    .bind(test_id)
    .bind(&new.name)
    .bind(meta)
    .bind(text(&new.params))
    .bind(text(&new.expected))
    .bind(now_millis())
    .bind(&new.code_id)
    .bind(&new.config_id)
    .execute(pool)
    .await;
    let inserted = match inserted.map_err(StoreError::from) {
        Err(StoreError::Exists(_)) => return Err(StoreError::Exists(format!("test `{test_id}`"))),
        other => other?,
    };
    if inserted.rows_affected() == 0 {
        return Err(StoreError::NotFound(Missing::version(&new.config_id, &new.code_id)));
    }
    // A test case never changes; only a delete could race this read.
    get(pool, d, test_id)
        .await?
        .ok_or_else(|| StoreError::NotFound(Missing::Test(test_id.to_owned())))
}

pub async fn list(pool: &AnyPool, d: Dialect, code_id: &str) -> Result<Vec<TestCase>, StoreError> {
    let rows = sqlx::query(sql!(
        d,
        concat!(
            "SELECT ",
            test_columns!(),
            " FROM test_cases WHERE code_id = $1 ORDER BY created_at, test_id"
        )
    ))
    .bind(code_id)
    .fetch_all(pool)
    .await?;
    rows.iter().map(test_from_row).collect()
}

pub async fn get(pool: &AnyPool, d: Dialect, test_id: &str) -> Result<Option<TestCase>, StoreError> {
    let row = sqlx::query(sql!(
        d,
        concat!("SELECT ", test_columns!(), " FROM test_cases WHERE test_id = $1")
    ))
    .bind(test_id)
    .fetch_optional(pool)
    .await?;
    row.as_ref().map(test_from_row).transpose()
}

pub async fn delete(pool: &AnyPool, d: Dialect, test_id: &str) -> Result<bool, StoreError> {
    let done = sqlx::query(sql!(d, "DELETE FROM test_cases WHERE test_id = $1"))
        .bind(test_id)
        .execute(pool)
        .await?;
    Ok(done.rows_affected() > 0)
}

fn test_from_row(row: &AnyRow) -> Result<TestCase, StoreError> {
    let json = |column: &str| -> Result<serde_json::Value, StoreError> {
        let text: String = row.try_get(column)?;
        serde_json::from_str(&text).map_err(|e| corrupt(column, &e.to_string()))
    };
    let meta: String = row.try_get("meta")?;
    Ok(TestCase {
        test_id: row.try_get("test_id")?,
        config_id: row.try_get("config_id")?,
        code_id: row.try_get("code_id")?,
        name: row.try_get("name")?,
        meta: serde_json::from_str(&meta).map_err(|e| corrupt("meta", &e.to_string()))?,
        params: json("params")?,
        expected: json("expected")?,
        created_at: row.try_get("created_at")?,
    })
}
