//! Log lines that a flood of requests would write once each, let through
//! once a second with a count of the rest. A leaf: std only.

use std::sync::LazyLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

/// Lets one log line a second through and counts the rest, for lines that
/// a flood of requests would otherwise write once each.
pub struct Throttle {
    second: AtomicU64,
    held: AtomicU64,
}

impl Throttle {
    pub const fn new() -> Self {
        Self {
            second: AtomicU64::new(0),
            held: AtomicU64::new(0),
        }
    }

    /// `Some(lines held back since the last one)` when this line may go.
    pub fn pass(&self) -> Option<u64> {
        static START: LazyLock<Instant> = LazyLock::new(Instant::now);
        let now = START.elapsed().as_secs() + 1;
        let last = self.second.load(Ordering::Relaxed);
        if last != now
            && self
                .second
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            return Some(self.held.swap(0, Ordering::Relaxed));
        }
        self.held.fetch_add(1, Ordering::Relaxed);
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_a_second_goes_with_the_count_of_those_held() {
        let throttle = Throttle::new();
        assert_eq!(throttle.pass(), Some(0), "the first line goes");
        let (mut held, mut reported, mut went) = (0, 0, 0);
        for _ in 0..1000 {
            match throttle.pass() {
                None => held += 1,
                Some(count) => (reported, went) = (reported + count, went + 1),
            }
        }
        assert!(held >= 998 && went <= 2, "{held} held, {went} went");
        // The next second's first line says how many were held.
        let started = Instant::now();
        loop {
            match throttle.pass() {
                None => held += 1,
                Some(count) => {
                    assert_eq!(reported + count, held, "every line held is counted once");
                    break;
                }
            }
            assert!(started.elapsed().as_secs() < 5, "no line went in 5 s");
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }
}
