//! Demand: how many Evaluators the pool runs, between `sandbox.min_workers`
//! and `sandbox.workers`, from the CPU its worker processes used.
//!
//! Why: a worker process that is mostly idle is woken for almost every job,
//! and on a small machine those wake-ups cost more than the script. Measured
//! on two cores (loadtest/README.md, "Hot path"), one worker in place of two
//! took about a third less CPU per Starlark request, while slower JavaScript
//! needed both. So the pool keeps spare workers stopped until the scripts'
//! own CPU use says they are needed.
//!
//! The ractor factory asks [`Demand`] for a pool size every 100 ms; it
//! decides once per [`WINDOW`], by the CPU time the worker processes used in
//! it (`/proc/<pid>/stat`; a process recycled within the window counts up
//! to its retirement), which a starved or descheduled worker does not
//! inflate the way wall-clock busy time would. It grows at once and shrinks
//! only after [`SHRINK_AFTER`] quiet windows in a row, so a burst does not
//! stop and restart processes. Thread workers have no process to measure:
//! that pool stays at `workers`.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use futures_util::future::BoxFuture;
use ractor::factory::WorkerCapacityController;

use super::PoolShared;
use crate::settings::Isolation;

/// How long CPU use is summed before a decision.
pub const WINDOW: Duration = Duration::from_secs(1);
/// Quiet windows in a row before one Evaluator is stopped.
pub const SHRINK_AFTER: u32 = 5;
/// Past this share of a core per running worker, another one starts.
const GROW_ABOVE: f64 = 0.4;
/// Below this share per worker that would remain, one stops.
const SHRINK_BELOW: f64 = 0.25;

/// The bounds and the last window's CPU use: the pure part of the decision.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Load {
    /// Evaluators running now.
    pub current: usize,
    /// `sandbox.min_workers`, at most `max`.
    pub min: usize,
    /// `sandbox.workers`.
    pub max: usize,
    /// Cores the worker processes used over the window (1.0 = one core).
    pub cores: f64,
}

/// What one window says to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Adjustment {
    /// Start this many Evaluators in all.
    Resize(usize),
    /// Nothing now; a quiet window counts towards shrinking.
    Hold {
        /// The pool could do with one fewer.
        quiet: bool,
    },
}

/// The decision for one window.
pub fn step(load: Load) -> Adjustment {
    let Load {
        current,
        min,
        max,
        cores,
    } = load;
    let min = min.clamp(1, max.max(1));
    if current < min || current > max {
        return Adjustment::Resize(current.clamp(min, max));
    }
    if current < max && cores > GROW_ABOVE * current as f64 {
        return Adjustment::Resize(current + 1);
    }
    let quiet = current > min && cores < SHRINK_BELOW * (current - 1) as f64;
    Adjustment::Hold { quiet }
}

/// The pool's capacity controller.
pub struct Demand {
    pool: PoolShared,
    since: Instant,
    /// CPU ticks each worker process had used at `since`.
    ticks: HashMap<u32, u64>,
    /// The pool's `retired_ticks` at `since`.
    retired: u64,
    quiet: u32,
}

impl Demand {
    /// A controller reading the pool's live settings and its workers' pids.
    pub fn new(pool: PoolShared) -> Self {
        Self {
            pool,
            since: Instant::now(),
            ticks: HashMap::new(),
            retired: 0,
            quiet: 0,
        }
    }

    fn pool_size(&mut self, current: usize) -> usize {
        let settings = self.pool.current();
        let max = settings.workers;
        if settings.process.isolation == Isolation::Thread {
            return max;
        }
        let now = Instant::now();
        let elapsed = now.duration_since(self.since);
        if elapsed < WINDOW && (current >= settings.min_workers.min(max) && current <= max) {
            return current;
        }
        let ticks: HashMap<u32, u64> = self
            .pool
            .stats
            .pids()
            .into_iter()
            .filter_map(|pid| Some((pid, cpu_ticks(pid)?)))
            .collect();
        let retired = self.pool.stats.retired_ticks();
        let used = used(&self.ticks, &ticks, retired.saturating_sub(self.retired));
        let cores = used as f64 / ticks_per_second() / elapsed.as_secs_f64().max(1e-3);
        (self.since, self.ticks, self.retired) = (now, ticks, retired);
        let load = Load {
            current,
            min: settings.min_workers,
            max,
            cores,
        };
        match step(load) {
            Adjustment::Resize(size) => {
                self.quiet = 0;
                size
            }
            Adjustment::Hold { quiet: false } => {
                self.quiet = 0;
                current
            }
            Adjustment::Hold { quiet: true } => {
                self.quiet += 1;
                if self.quiet < SHRINK_AFTER {
                    return current;
                }
                self.quiet = 0;
                tracing::info!(cores, from = current, "worker processes idle: stopping one");
                current - 1
            }
        }
    }
}

impl WorkerCapacityController for Demand {
    fn get_pool_size(&mut self, current: usize) -> BoxFuture<'_, usize> {
        let size = self.pool_size(current);
        if size < current {
            // The pool stops the last Evaluators: callers stop handing
            // their workers runs now.
            self.pool.lanes.close_from(size);
        }
        Box::pin(std::future::ready(size))
    }
}

/// CPU ticks the worker processes used between two readings, `before`
/// and `after` (ticks by pid), given the ticks of those retired meanwhile
/// (as read when each was retired): a process new since `before` started
/// within the window, so all of its time counts; one retired within it
/// counts from its reading in `before` to its retirement.
fn used(before: &HashMap<u32, u64>, after: &HashMap<u32, u64>, retired: u64) -> u64 {
    let live: u64 = after
        .iter()
        .map(|(pid, now)| now.saturating_sub(before.get(pid).copied().unwrap_or(0)))
        .sum();
    let gone_before: u64 = before
        .iter()
        .filter(|(pid, _)| !after.contains_key(pid))
        .map(|(_, ticks)| ticks)
        .sum();
    live + retired.saturating_sub(gone_before)
}

/// CPU time a process has used (user + system), in clock ticks.
pub(super) fn cpu_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces and parentheses; fields follow the last ')'.
    let fields = &stat[stat.rfind(')')? + 1..];
    let mut fields = fields.split_whitespace().skip(11);
    let user: u64 = fields.next()?.parse().ok()?;
    let system: u64 = fields.next()?.parse().ok()?;
    Some(user + system)
}

fn ticks_per_second() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks > 0 { ticks as f64 } else { 100.0 }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(current: usize, cores: f64) -> Load {
        Load {
            current,
            min: 1,
            max: 4,
            cores,
        }
    }

    #[test]
    fn grows_one_at_a_time_when_the_workers_are_busy() {
        assert_eq!(step(load(1, 0.5)), Adjustment::Resize(2));
        assert_eq!(step(load(2, 0.9)), Adjustment::Resize(3));
        assert_eq!(step(load(4, 3.9)), Adjustment::Hold { quiet: false });
    }

    #[test]
    fn a_quiet_window_is_one_where_one_fewer_would_do() {
        assert_eq!(step(load(2, 0.1)), Adjustment::Hold { quiet: true });
        assert_eq!(step(load(2, 0.3)), Adjustment::Hold { quiet: false });
        assert_eq!(step(load(1, 0.0)), Adjustment::Hold { quiet: false });
        // Between the two thresholds nothing moves, so it cannot flap.
        assert_eq!(step(load(3, 0.7)), Adjustment::Hold { quiet: false });
    }

    #[test]
    fn bounds_win_over_load() {
        let fixed = Load {
            current: 2,
            min: 2,
            max: 2,
            cores: 0.0,
        };
        assert_eq!(step(fixed), Adjustment::Hold { quiet: false });
        assert_eq!(step(Load { max: 1, ..fixed }), Adjustment::Resize(1));
        assert_eq!(step(Load { current: 1, ..fixed }), Adjustment::Resize(2));
        // min above max means a fixed pool of max.
        assert_eq!(
            step(Load {
                min: 9,
                current: 3,
                max: 3,
                cores: 0.0
            }),
            Adjustment::Hold { quiet: false }
        );
    }

    #[test]
    fn workers_recycled_within_a_window_count_for_their_part_of_it() {
        let ticks = |pairs: &[(u32, u64)]| pairs.iter().copied().collect::<HashMap<_, _>>();
        // The same two processes: their deltas.
        assert_eq!(used(&ticks(&[(1, 100), (2, 50)]), &ticks(&[(1, 130), (2, 60)]), 0), 40);
        // 1 was retired at 140 ticks and 3 took its place with 25 of its
        // own; 4 came and went within the window (retired at 30).
        assert_eq!(
            used(&ticks(&[(1, 100), (2, 50)]), &ticks(&[(2, 60), (3, 25)]), 140 + 30),
            (140 - 100) + 10 + 25 + 30
        );
        // A retirement that could not be read counts as nothing, not less.
        assert_eq!(used(&ticks(&[(1, 100)]), &ticks(&[(3, 5)]), 0), 5);
    }

    #[test]
    fn reads_this_process_cpu() {
        let pid = std::process::id();
        let before = cpu_ticks(pid).expect("own /proc stat reads");
        let spin = Instant::now();
        while cpu_ticks(pid).unwrap() == before {
            assert!(
                spin.elapsed() < Duration::from_secs(10),
                "10 s of spinning used no CPU tick"
            );
        }
    }
}
