//! MySQL 8 and MariaDB 10.6+, for operators whose database is MySQL (the Go
//! service Vane replaces kept everything there).

use sqlx::{Connection, Executor};

use super::StoreError;
use super::dialect::Dialect;
use super::sql::SqlStore;

/// What every connection sets before its first query:
/// - READ COMMITTED, as PostgreSQL reads: a statement sees what committed
///   before it, not a snapshot from the transaction's first read (InnoDB's
///   default), so a read after a row lock sees the row as locked;
/// - strict mode, so a value too long for its column is an error, never
///   silently cut;
/// - UTC, although Vane stores times as integers, for anything that is not.
const SESSION: &str = "SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED; \
     SET SESSION sql_mode = 'STRICT_ALL_TABLES,NO_ZERO_DATE,NO_ZERO_IN_DATE,ERROR_FOR_DIVISION_BY_ZERO,NO_ENGINE_SUBSTITUTION'; \
     SET SESSION time_zone = '+00:00'";

pub async fn connect(url: &str, max_connections: u32) -> Result<SqlStore, StoreError> {
    let mut conn = sqlx::MySqlConnection::connect(url).await?;
    conn.execute(SESSION).await?;
    sqlx::migrate!("migrations/mysql")
        .run(&mut conn)
        .await
        .map_err(super::migrating)?;
    conn.close().await?;
    let pool = super::pool_options(max_connections)
        .after_connect(|conn, _| {
            Box::pin(async move {
                conn.execute(SESSION).await?;
                Ok(())
            })
        })
        .connect(url)
        .await?;
    Ok(SqlStore::new(pool, Dialect::MySql))
}
