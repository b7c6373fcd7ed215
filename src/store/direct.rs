//! Revision reads on SQLite straight from the calling task. sqlx runs each
//! SQLite connection on a thread of its own, so every query costs two thread
//! wake-ups, which on a busy machine wait for a core: a `cached: false` fetch
//! would wait a millisecond or more for a lookup that takes microseconds.
//! This read-only connection answers in place instead. It only reads, and in
//! WAL mode a reader neither waits for nor blocks the writer.

use std::sync::Mutex;
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};

use super::StoreError;
use crate::sync::Locked;

/// How long a read waits for a lock (only a checkpoint takes one).
const BUSY_TIMEOUT: Duration = Duration::from_millis(100);

pub struct DirectReads(Mutex<Connection>);

impl DirectReads {
    /// Opens `path` read-only; `None` for an in-memory database, which has
    /// no file to share.
    pub fn open(path: &str) -> Result<Option<Self>, StoreError> {
        if path.is_empty() || path == ":memory:" {
            return Ok(None);
        }
        let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX | OpenFlags::SQLITE_OPEN_URI;
        let conn = Connection::open_with_flags(path, flags).map_err(unavailable)?;
        conn.busy_timeout(BUSY_TIMEOUT).map_err(unavailable)?;
        Ok(Some(Self(Mutex::new(conn))))
    }

    /// The revisions of the configs named that exist.
    pub fn revisions(&self, ids: &[String]) -> Result<Vec<(String, i64)>, StoreError> {
        let conn = self.0.locked();
        let mut statement = conn
            .prepare_cached("SELECT revision FROM configs WHERE id = ?1")
            .map_err(unavailable)?;
        let mut found = Vec::with_capacity(ids.len());
        for id in ids {
            let mut rows = statement.query([id]).map_err(unavailable)?;
            if let Some(row) = rows.next().map_err(unavailable)? {
                found.push((id.clone(), row.get(0).map_err(unavailable)?));
            }
        }
        Ok(found)
    }
}

fn unavailable(e: rusqlite::Error) -> StoreError {
    StoreError::Unavailable(e.to_string())
}
