//! PostgreSQL, for clusters of nodes sharing one database.

use sqlx::Connection;
use sqlx::any::AnyPoolOptions;

use super::StoreError;
use super::dialect::Dialect;
use super::sql::SqlStore;

pub async fn connect(url: &str, max_connections: u32) -> Result<SqlStore, StoreError> {
    let mut conn = sqlx::PgConnection::connect(url).await?;
    sqlx::migrate!("migrations/postgres")
        .run(&mut conn)
        .await
        .map_err(|e| StoreError::Unavailable(format!("migrating: {e}")))?;
    conn.close().await?;
    let pool = AnyPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(super::ACQUIRE_TIMEOUT)
        .connect(url)
        .await?;
    Ok(SqlStore::new(pool, Dialect::Postgres))
}
