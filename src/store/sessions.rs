//! Console sessions after single sign-on, kept by the SHA-256 of their id
//! (the id is 256 random bits, so a plain hash is enough) so that every
//! node knows a session and a sign-out holds on all of them at once.

use async_trait::async_trait;
use sqlx::Row;

use super::StoreError;
use super::dialect::sql;
use super::rows::corrupt;
use super::sql::SqlStore;
use crate::domain::access::Session;

/// Console sessions.
#[async_trait]
pub trait Sessions: Send + Sync {
    /// Stores a session under the hash of its id, and drops the sessions
    /// that ended before `session.created_at` (nothing else cleans them).
    async fn create_session(&self, id_hash: &str, session: &Session) -> Result<(), StoreError>;
    /// The session whose id hashes to `id_hash`, ended or not.
    async fn session_by_hash(&self, id_hash: &str) -> Result<Option<Session>, StoreError>;
    /// Deletes a session; whether there was one.
    async fn delete_session(&self, id_hash: &str) -> Result<bool, StoreError>;
    /// Ends every session of `who`, or every session; how many there were.
    async fn end_sessions(&self, who: Option<&str>) -> Result<u64, StoreError>;
}

#[async_trait]
impl Sessions for SqlStore {
    async fn create_session(&self, id_hash: &str, session: &Session) -> Result<(), StoreError> {
        let grants = serde_json::to_string(&session.grants).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        sqlx::query(sql!(self.dialect, "DELETE FROM sessions WHERE expires_at <= $1"))
            .bind(session.created_at)
            .execute(&self.pool)
            .await?;
        sqlx::query(sql!(
            self.dialect,
            "INSERT INTO sessions (id_hash, who, grants, csrf, created_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5, $6)"
        ))
        .bind(id_hash)
        .bind(&session.who)
        .bind(grants)
        .bind(&session.csrf)
        .bind(session.created_at)
        .bind(session.expires_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn session_by_hash(&self, id_hash: &str) -> Result<Option<Session>, StoreError> {
        let row = sqlx::query(sql!(
            self.dialect,
            "SELECT who, grants, csrf, created_at, expires_at FROM sessions WHERE id_hash = $1"
        ))
        .bind(id_hash)
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else { return Ok(None) };
        let grants: String = row.try_get("grants")?;
        Ok(Some(Session {
            who: row.try_get("who")?,
            grants: serde_json::from_str(&grants).map_err(|e| corrupt("session grants", &e.to_string()))?,
            csrf: row.try_get("csrf")?,
            created_at: row.try_get("created_at")?,
            expires_at: row.try_get("expires_at")?,
        }))
    }

    async fn delete_session(&self, id_hash: &str) -> Result<bool, StoreError> {
        let done = sqlx::query(sql!(self.dialect, "DELETE FROM sessions WHERE id_hash = $1"))
            .bind(id_hash)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    async fn end_sessions(&self, who: Option<&str>) -> Result<u64, StoreError> {
        let done = match who {
            Some(who) => {
                sqlx::query(sql!(self.dialect, "DELETE FROM sessions WHERE who = $1"))
                    .bind(who)
                    .execute(&self.pool)
                    .await?
            }
            None => sqlx::query("DELETE FROM sessions").execute(&self.pool).await?,
        };
        Ok(done.rows_affected())
    }
}
