//! PostgreSQL, for clusters of nodes sharing one database.

use sqlx::Connection;

use super::StoreError;
use super::dialect::Dialect;
use super::sql::SqlStore;

pub async fn connect(url: &str, max_connections: u32) -> Result<SqlStore, StoreError> {
    let mut conn = sqlx::PgConnection::connect(url).await?;
    sqlx::migrate!("migrations/postgres")
        .run(&mut conn)
        .await
        .map_err(super::migrating)?;
    conn.close().await?;
    let pool = super::pool_options(max_connections).connect(url).await?;
    Ok(SqlStore::new(pool, Dialect::Postgres))
}
