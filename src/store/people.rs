//! Who may use Vane: API tokens made at run time. A token is kept only as
//! its SHA-256; the value is random (256 bits), so a plain hash is enough
//! and a lookup by it leaks nothing a guess could use.

use async_trait::async_trait;
use sqlx::Row;
use sqlx::any::AnyRow;

use super::dialect::sql;
use super::rows::corrupt;
use super::sql::SqlStore;
use super::{Missing, StoreError};
use crate::domain::access::{ApiToken, Role};

/// A token to store: its listing and the hash of its value.
#[derive(Debug, Clone)]
pub struct NewToken {
    /// What it is listed as.
    pub token: ApiToken,
    /// SHA-256 of its value, hex.
    pub hash: String,
}

/// People and programs: tokens.
#[async_trait]
pub trait People: Send + Sync {
    /// Stores a token; `Exists` when the name is taken.
    async fn create_token(&self, new: NewToken) -> Result<ApiToken, StoreError>;
    /// Every token, by name.
    async fn list_tokens(&self) -> Result<Vec<ApiToken>, StoreError>;
    /// Deletes a token; `NotFound` when there is none by that name.
    async fn delete_token(&self, name: &str) -> Result<(), StoreError>;
    /// The token whose value hashes to `hash`, expired or not.
    async fn token_by_hash(&self, hash: &str) -> Result<Option<ApiToken>, StoreError>;
}

fn token_from_row(row: &AnyRow) -> Result<ApiToken, StoreError> {
    let role: String = row.try_get("role")?;
    let configs: String = row.try_get("configs")?;
    Ok(ApiToken {
        name: row.try_get("name")?,
        role: Role::parse(&role).ok_or_else(|| corrupt("token role", &role))?,
        configs: serde_json::from_str(&configs).map_err(|e| corrupt("token configs", &e.to_string()))?,
        expires_at: row.try_get("expires_at")?,
        created_by: row.try_get("created_by")?,
        created_at: row.try_get("created_at")?,
    })
}

macro_rules! token_columns {
    () => {
        "name, role, configs, expires_at, created_by, created_at"
    };
}

#[async_trait]
impl People for SqlStore {
    async fn create_token(&self, new: NewToken) -> Result<ApiToken, StoreError> {
        let t = &new.token;
        let configs = serde_json::to_string(&t.configs).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let inserted = sqlx::query(sql!(
            self.dialect,
            "INSERT INTO api_tokens (name, role, configs, token_hash, expires_at, created_by, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)"
        ))
        .bind(&t.name)
        .bind(t.role.as_str())
        .bind(configs)
        .bind(&new.hash)
        .bind(t.expires_at)
        .bind(&t.created_by)
        .bind(t.created_at)
        .execute(&self.pool)
        .await;
        match inserted.map_err(StoreError::from) {
            Err(StoreError::Exists(_)) => Err(StoreError::Exists(format!("token `{}`", t.name))),
            other => other.map(|_| new.token),
        }
    }

    async fn list_tokens(&self) -> Result<Vec<ApiToken>, StoreError> {
        let rows = sqlx::query(sql!(
            self.dialect,
            concat!("SELECT ", token_columns!(), " FROM api_tokens ORDER BY name")
        ))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(token_from_row).collect()
    }

    async fn delete_token(&self, name: &str) -> Result<(), StoreError> {
        let done = sqlx::query(sql!(self.dialect, "DELETE FROM api_tokens WHERE name = $1"))
            .bind(name)
            .execute(&self.pool)
            .await?;
        match done.rows_affected() {
            0 => Err(StoreError::NotFound(Missing::Token(name.to_owned()))),
            _ => Ok(()),
        }
    }

    async fn token_by_hash(&self, hash: &str) -> Result<Option<ApiToken>, StoreError> {
        let row = sqlx::query(sql!(
            self.dialect,
            concat!("SELECT ", token_columns!(), " FROM api_tokens WHERE token_hash = $1")
        ))
        .bind(hash)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(token_from_row).transpose()
    }
}
