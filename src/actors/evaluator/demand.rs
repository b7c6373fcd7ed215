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
//! it (`/proc/<pid>/stat`), which a starved or descheduled worker does not
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
    quiet: u32,
}

impl Demand {
    /// A controller reading the pool's live settings and its workers' pids.
    pub fn new(pool: PoolShared) -> Self {
        Self {
            pool,
            since: Instant::now(),
            ticks: HashMap::new(),
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
        // Only processes seen at both ends count: a new one's past is not
        // this window's, and a gone one's last ticks are unknown.
        let used: u64 = ticks
            .iter()
            .filter_map(|(pid, now)| Some(now.saturating_sub(*self.ticks.get(pid)?)))
            .sum();
        let cores = used as f64 / ticks_per_second() / elapsed.as_secs_f64().max(1e-3);
        (self.since, self.ticks) = (now, ticks);
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

/// CPU time a process has used (user + system), in clock ticks.
fn cpu_ticks(pid: u32) -> Option<u64> {
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
