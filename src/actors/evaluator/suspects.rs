//! Suspects: code that lately ran a worker past a deadline (killed, or
//! stopped by its interpreter at the deadline). A worker runs its jobs one
//! after another, so every run queued behind such a job waits out its
//! deadline too, and behind a kill it is handed back to the pool. A
//! suspect's runs are therefore sent alone: never handed past the pool,
//! and no other job is put behind one in its worker (`Pipeline::depth`).
//! One slow script then costs a worker for its deadline, not the fast runs
//! that happened to share the worker's pipe. A run that answers in time
//! clears its code: otherwise one slow request a minute (params that make
//! a hot config loop to its deadline) would keep that config's runs from
//! being pipelined, a cliff in its throughput for the price of a request.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::sync::Locked;

/// How long code stays a suspect after it last overran.
pub const SUSPECT_FOR: Duration = Duration::from_secs(60);
/// Most code ids remembered; past it the oldest is forgotten, so code
/// uploaded to fill the list costs memory once, not forever.
const MAX_SUSPECTS: usize = 1024;

/// Code ids that overran, with when they last did.
#[derive(Debug, Default)]
pub struct Suspects {
    seen: Mutex<HashMap<String, Instant>>,
    /// How many `seen` holds, read without its lock: every run asks, and
    /// almost always there are none.
    count: AtomicUsize,
}

impl Suspects {
    /// `code_id` ran past a deadline now.
    pub fn overran(&self, code_id: &str) {
        let now = Instant::now();
        let mut seen = self.seen.locked();
        if seen.len() >= MAX_SUSPECTS && !seen.contains_key(code_id) {
            seen.retain(|_, at| now.saturating_duration_since(*at) < SUSPECT_FOR);
            if seen.len() >= MAX_SUSPECTS
                && let Some(oldest) = seen.iter().min_by_key(|(_, at)| **at).map(|(id, _)| id.clone())
            {
                seen.remove(&oldest);
            }
        }
        seen.insert(code_id.to_owned(), now);
        self.count.store(seen.len(), Ordering::Relaxed);
    }

    /// A run of `code_id` answered in time: it is no suspect.
    pub fn ran(&self, code_id: &str) {
        if self.count.load(Ordering::Relaxed) == 0 {
            return;
        }
        let mut seen = self.seen.locked();
        seen.remove(code_id);
        self.count.store(seen.len(), Ordering::Relaxed);
    }

    /// Whether runs of `code_id` go alone.
    pub fn holds(&self, code_id: &str) -> bool {
        self.count.load(Ordering::Relaxed) > 0
            && self
                .seen
                .locked()
                .get(code_id)
                .is_some_and(|at| at.elapsed() < SUSPECT_FOR)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn code_is_suspect_after_it_overran_and_the_list_stays_bounded() {
        let suspects = Suspects::default();
        assert!(!suspects.holds("a"));
        suspects.overran("a");
        assert!(suspects.holds("a"));
        assert!(!suspects.holds("b"), "other code still runs in company");
        suspects.ran("a");
        assert!(!suspects.holds("a"), "a run in time clears it");
        suspects.overran("a");
        for i in 0..MAX_SUSPECTS * 2 {
            suspects.overran(&format!("flood {i}"));
        }
        assert!(suspects.seen.locked().len() <= MAX_SUSPECTS);
        assert!(
            suspects.holds(&format!("flood {}", MAX_SUSPECTS * 2 - 1)),
            "the newest is kept"
        );
    }
}
