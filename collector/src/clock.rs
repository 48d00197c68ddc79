//! The collector's clock. Every liveness decision reads it.
//!
//! `HEARTH_CLOCK_FILE=PATH` makes it read Unix milliseconds from PATH instead, so that
//! tests can move time forward past a grace period without waiting for it.

use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

#[derive(Debug, Clone)]
pub enum Clock {
    System,
    /// A file holding Unix milliseconds, for tests.
    File(PathBuf),
}

impl Clock {
    pub fn from_env() -> Clock {
        match std::env::var_os("HEARTH_CLOCK_FILE") {
            Some(path) => {
                log::warn!(
                    "reading the time from {} (HEARTH_CLOCK_FILE); for tests only",
                    PathBuf::from(&path).display()
                );
                Clock::File(path.into())
            }
            None => Clock::System,
        }
    }

    pub fn now_ms(&self) -> i64 {
        match self {
            Clock::System => system_ms(),
            Clock::File(path) => {
                std::fs::read_to_string(path).ok().and_then(|t| t.trim().parse().ok()).unwrap_or_else(system_ms)
            }
        }
    }
}

fn system_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

/// Notices, between two readings on the request thread, time the collector did not run:
/// the process was stopped (the monotonic clock passed with no reading), or the wall clock
/// moved further than the monotonic one (the host slept, or the clock stepped forward).
/// A test clock's steps are the test moving time on, not an absence: with one, only a
/// stopped process counts.
#[derive(Debug)]
pub struct Running {
    /// The wall clock (ms) and the monotonic one at the last reading.
    last: std::sync::Mutex<(i64, std::time::Instant)>,
}

impl Running {
    pub fn new(now_ms: i64) -> Running {
        Running { last: std::sync::Mutex::new((now_ms, std::time::Instant::now())) }
    }

    /// Takes a reading at `now_ms` (by `clock`). Returns the wall clock's gap since the
    /// last reading, and whether the collector did not run for more than `limit_ms` of it.
    pub fn reading(&self, clock: &Clock, now_ms: i64, limit_ms: i64) -> (i64, bool) {
        let mut last = self.last.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let (wall_before, at) = std::mem::replace(&mut *last, (now_ms, std::time::Instant::now()));
        let ran_ms = at.elapsed().as_millis().min(i64::MAX as u128) as i64;
        let wall_ms = now_ms.saturating_sub(wall_before);
        (wall_ms, away(wall_ms, ran_ms, matches!(clock, Clock::System), limit_ms))
    }
}

/// Whether a gap of `wall_ms` by the wall clock, over which `ran_ms` passed by the
/// monotonic one, holds more than `limit_ms` in which the collector did not run.
fn away(wall_ms: i64, ran_ms: i64, wall_is_real: bool, limit_ms: i64) -> bool {
    ran_ms > limit_ms || (wall_is_real && wall_ms.saturating_sub(ran_ms) > limit_ms)
}

#[cfg(test)]
mod tests {
    use super::away;

    #[test]
    fn an_absence_is_a_stopped_process_or_a_wall_clock_ahead_of_the_monotonic_one() {
        const LIMIT: i64 = 15_000;
        let cases = [
            // (wall ms, monotonic ms, real wall clock, away)
            (1_000, 1_000, true, false),
            (14_000, 14_000, true, false),
            (40_000, 40_000, true, true), // stopped (SIGSTOP): both clocks moved, no reading
            (40_000, 40_000, false, true),
            (3_600_000, 1_000, true, true),   // suspended, or the clock stepped forward
            (3_600_000, 1_000, false, false), // a test moving its clock on
            (16_000, 2_000, true, false),     // within the limit
            (-3_600_000, 1_000, true, false), // the clock stepped back: no absence
        ];
        for (wall, ran, real, expected) in cases {
            assert_eq!(away(wall, ran, real, LIMIT), expected, "{wall} {ran} {real}");
        }
    }
}
