//! Sharing served records between nodes through Redis, so a client may fetch
//! on one node and report on another. Each node writes the sketches that
//! changed, once per `reports.share_ms`, in one round trip (never a call per
//! fetch); reports read the other nodes' sketches of their version a few
//! times per interval at most, one read shared by every report waiting then.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Mutex, Semaphore};
use tokio::time::Instant;

use super::served::{RemoteView, ServedRecord};
use super::sketch::Sketch;
use crate::domain::model::now_millis;
use crate::shared::Shared;

/// Reports waiting at once for other nodes' sketches; past this, a report
/// is judged on what this node knows.
const MAX_WAITING: usize = 1024;

/// This node's side of the served records in Redis.
pub struct Share {
    redis: Shared,
    node: String,
    interval: Duration,
    record: Arc<ServedRecord>,
    /// One read of other nodes' sketches at a time.
    reading: Mutex<()>,
    waiting: Semaphore,
    /// Where the grid of read times starts (see `landed_by`).
    epoch: Instant,
}

impl Share {
    /// Shares `record` through `redis` every `interval`, as a node of its own.
    pub fn new(redis: Shared, record: Arc<ServedRecord>, interval: Duration) -> Self {
        Self {
            redis,
            node: crate::secrets::random_token(),
            interval,
            record,
            reading: Mutex::new(()),
            waiting: Semaphore::new(MAX_WAITING),
            epoch: Instant::now(),
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
    /// Redis: after that node's next share. Rounded up to a grid of a
    /// quarter interval, so reports arriving close together wait for the
    /// same read: a storm of unknown sources costs at most four reads of a
    /// version per interval.
    pub fn landed_by(&self, arrived: Instant) -> Instant {
        let due = arrived + self.interval + Duration::from_millis(50);
        let step = (self.interval / 4).max(Duration::from_millis(1));
        let since = due.saturating_duration_since(self.epoch).as_nanos();
        let rounded = since.div_ceil(step.as_nanos()) * step.as_nanos();
        self.epoch + Duration::from_nanos(u64::try_from(rounded).unwrap_or(u64::MAX))
    }

    /// How often nodes share (`reports.share_ms`).
    pub fn interval(&self) -> Duration {
        self.interval
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn reports_arriving_close_together_wait_for_one_read() {
        let settings = crate::settings::Redis {
            url: "redis://127.0.0.1:1".into(),
            ..Default::default()
        };
        let redis = Shared::connect(&settings).unwrap();
        let interval = Duration::from_millis(1000);
        let share = Share::new(redis, Arc::new(ServedRecord::new(600, 1024)), interval);
        let now = Instant::now();
        let first = share.landed_by(now);
        assert!(first >= now + interval, "after the other nodes' next share");
        assert!(first < now + interval + interval / 4 + Duration::from_millis(51));
        let reads: std::collections::HashSet<Instant> = (0..100)
            .map(|i| share.landed_by(now + Duration::from_millis(i * 10)))
            .collect();
        assert!(reads.len() <= 5, "{} reads for a second of reports", reads.len());
    }
}
