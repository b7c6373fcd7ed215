//! Sharing served records between nodes through Redis, so a device may fetch
//! on one node and report on another. Each node writes the sketches that
//! changed, once per `reports.share_ms`, in one round trip (never a call per
//! fetch); a report reads the other nodes' sketches of its version at most
//! once per interval, shared by every report waiting on that version.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Mutex, Semaphore};
use tokio::time::Instant;

use super::served::{RemoteView, ServedRecord};
use super::sketch::Sketch;
use crate::cache::RedisCache;
use crate::domain::model::now_millis;

/// Reports waiting at once for other nodes' sketches; past this, a report
/// is judged on what this node knows.
const MAX_WAITING: usize = 1024;

pub struct Share {
    redis: RedisCache,
    node: String,
    interval: Duration,
    record: Arc<ServedRecord>,
    /// One read of other nodes' sketches at a time.
    reading: Mutex<()>,
    waiting: Semaphore,
}

impl Share {
    pub fn new(redis: RedisCache, record: Arc<ServedRecord>, interval: Duration) -> Self {
        Self {
            redis,
            node: crate::secrets::random_token(),
            interval,
            record,
            reading: Mutex::new(()),
            waiting: Semaphore::new(MAX_WAITING),
        }
    }

    /// How long sketches live in Redis: the span a report looks at, and a
    /// bucket more.
    fn ttl(&self) -> Duration {
        let window = Duration::from_secs(self.record.window_s());
        window * 2 + self.interval
    }

    /// Writes the sketches that changed since the last share.
    pub async fn push_changed(&self) {
        let changed = self.record.take_changed();
        if changed.is_empty() {
            return;
        }
        let sketches = changed
            .into_iter()
            .map(|s| (s.code_id, s.bucket, format!("{}:{}", self.node, s.suffix), s.bytes))
            .collect();
        if !self.redis.share_served(sketches, self.ttl()).await {
            tracing::debug!("served sketches not shared this round");
        }
    }

    /// Makes sure the other nodes' view of `code_id` was read at or after
    /// `not_before`, waiting until then if it is ahead. `false` when Redis
    /// did not answer (the view is then older).
    pub async fn read_after(&self, code_id: &str, not_before: Instant) -> bool {
        let _waiting = match self.waiting.try_acquire() {
            Ok(permit) => permit,
            Err(_) => return false,
        };
        tokio::time::sleep_until(not_before).await;
        let _reading = self.reading.lock().await;
        if self
            .record
            .remote_view(code_id)
            .is_some_and(|v| Instant::from_std(v.read_at) >= not_before)
        {
            return true;
        }
        let read_at = std::time::Instant::now();
        let (current, oldest) = self.record.span(now_millis());
        let buckets: Vec<u64> = (oldest..=current).collect();
        let Some(found) = self.redis.served(code_id, &buckets).await else {
            return false;
        };
        let mine = format!("{}:", self.node);
        let parts = found
            .into_iter()
            .filter(|(_, field, _)| !field.starts_with(&mine))
            .filter_map(|(bucket, field, bytes)| {
                let suffix = field.rsplit(':').next().unwrap_or_default();
                match Sketch::decode(suffix, &bytes) {
                    Ok(part) => Some((bucket, part)),
                    Err(error) => {
                        tracing::warn!(code_id, %error, "skipping a served sketch");
                        None
                    }
                }
            })
            .collect();
        self.record.set_remote_view(code_id, RemoteView { read_at, parts });
        true
    }

    /// When a fetch made on another node before `arrived` is surely in
    /// Redis: after that node's next share.
    pub fn landed_by(&self, arrived: Instant) -> Instant {
        arrived + self.interval + Duration::from_millis(50)
    }

    pub fn interval(&self) -> Duration {
        self.interval
    }
}
