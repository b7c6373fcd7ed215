//! The embedded default: one file, WAL, zero setup.

use sqlx::{Connection, Executor};

use super::StoreError;
use super::dialect::Dialect;
use super::direct::DirectReads;
use super::sql::SqlStore;

pub async fn connect(url: &str, max_connections: u32) -> Result<SqlStore, StoreError> {
    // Create the file if missing; sqlx opens read-write without creating by default.
    let url = if url.contains('?') {
        url.to_owned()
    } else {
        format!("{url}?mode=rwc")
    };
    let migrate_url = url.clone();
    let mut conn = sqlx::SqliteConnection::connect(&migrate_url).await?;
    conn.execute("PRAGMA journal_mode = WAL").await?;
    sqlx::migrate!("migrations/sqlite")
        .run(&mut conn)
        .await
        .map_err(|e| StoreError::Unavailable(format!("migrating {url}: {e}")))?;
    conn.close().await?;
    let pool = super::pool_options(max_connections)
        // A file in this process cannot go away under a connection; the ping
        // sqlx sends by default would double the cost of every small read.
        .test_before_acquire(false)
        .after_connect(|conn, _| {
            Box::pin(async move {
                conn.execute("PRAGMA busy_timeout = 5000; PRAGMA foreign_keys = ON; PRAGMA synchronous = NORMAL")
                    .await?;
                Ok(())
            })
        })
        .connect(&url)
        .await?;
    let direct = DirectReads::open(file_path(&url))?;
    Ok(SqlStore::new(pool, Dialect::Sqlite).with_direct_reads(direct))
}

/// The file of a `sqlite:` URL.
fn file_path(url: &str) -> &str {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
        .unwrap_or(url);
    rest.split('?').next().unwrap_or(rest)
}
