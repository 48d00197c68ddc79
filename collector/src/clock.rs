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

/// Tells when the collector did not run while it was running: the process was stopped
/// (the monotonic clock passed with no reading: readings come every second from a ticker
/// thread, and at every write), or the wall clock moved further than the monotonic one
/// (the host slept: the monotonic clock stands still meanwhile; or the clock stepped
/// forward). Such an absence is kept until a write records it (`pending`, `recorded`). A test clock's steps are the test moving time on, not an
/// absence: with one, only a stopped process counts.
#[derive(Debug)]
pub struct Running {
    state: std::sync::Mutex<RunState>,
}

#[derive(Debug)]
struct RunState {
    /// The wall clock (ms) and the monotonic one at the last reading.
    wall_ms: i64,
    at: std::time::Instant,
    /// When the collector last ran before an absence no write has recorded yet.
    away_from: Option<i64>,
    /// Counts absences, so that recording one does not drop another noticed meanwhile.
    absences: u64,
}

/// What a reading found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reading {
    Running,
    /// Not running since this wall-clock time, for this long (ms).
    Away {
        from: i64,
        gap_ms: i64,
    },
    /// The wall clock went back this far (ms).
    WentBack {
        by_ms: i64,
    },
}

impl Running {
    pub fn new(now_ms: i64) -> Running {
        Running {
            state: std::sync::Mutex::new(RunState {
                wall_ms: now_ms,
                at: std::time::Instant::now(),
                away_from: None,
                absences: 0,
            }),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, RunState> {
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Takes a reading at `now_ms` (by `clock`): every second from the ticker thread, and
    /// at every write (which may come before the ticker's first reading after a resume).
    /// An absence longer than `limit_ms` is kept.
    pub fn read(&self, clock: &Clock, now_ms: i64, limit_ms: i64) -> Reading {
        let mut state = self.state();
        let ran_ms = state.at.elapsed().as_millis().min(i64::MAX as u128) as i64;
        let wall_ms = now_ms.saturating_sub(state.wall_ms);
        let from = state.wall_ms;
        (state.wall_ms, state.at) = (now_ms, std::time::Instant::now());
        let real = matches!(clock, Clock::System);
        if away(wall_ms, ran_ms, real, limit_ms) {
            state.away_from = Some(state.away_from.map_or(from, |earlier| earlier.min(from)));
            state.absences += 1;
            return Reading::Away { from, gap_ms: wall_ms.max(ran_ms) };
        }
        if real && -wall_ms > limit_ms {
            return Reading::WentBack { by_ms: -wall_ms };
        }
        Reading::Running
    }

    /// When the collector last ran before an absence no write has recorded yet, with
    /// which absence that is, for `recorded`.
    pub fn pending(&self) -> Option<Absence> {
        let state = self.state();
        state.away_from.map(|from| Absence { from, seen: state.absences })
    }

    /// A write committed `absence` (`pending`); one noticed since stays pending.
    pub fn recorded(&self, absence: Absence) {
        let mut state = self.state();
        if state.absences == absence.seen {
            state.away_from = None;
        }
    }
}

/// An absence to record: since when the collector did not run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Absence {
    pub from: i64,
    seen: u64,
}

/// Whether a gap of `wall_ms` by the wall clock, over which `ran_ms` passed by the
/// monotonic one, holds more than `limit_ms` in which the collector did not run.
fn away(wall_ms: i64, ran_ms: i64, wall_is_real: bool, limit_ms: i64) -> bool {
    ran_ms > limit_ms || (wall_is_real && wall_ms.saturating_sub(ran_ms) > limit_ms)
}

#[cfg(test)]
mod tests {
    use super::{away, Clock, Reading, Running};

    #[test]
    fn an_absence_is_kept_until_a_write_records_it() {
        let test_clock = Clock::File("/nonexistent".into());
        let running = Running::new(1_000);
        // A test moving its clock on an hour is no absence.
        assert_eq!(running.read(&test_clock, 3_601_000, 10), Reading::Running);
        std::thread::sleep(std::time::Duration::from_millis(30));
        // Stopped for longer than the limit: kept, from when it last ran.
        let reading = running.read(&test_clock, 3_601_000, 10);
        assert!(matches!(reading, Reading::Away { from: 3_601_000, gap_ms } if gap_ms >= 30), "{reading:?}");
        let first = running.pending().unwrap();
        assert_eq!(first.from, 3_601_000);
        // Another absence while a write records the first: it stays pending.
        std::thread::sleep(std::time::Duration::from_millis(30));
        assert!(matches!(running.read(&test_clock, 3_602_000, 10), Reading::Away { from: 3_601_000, .. }));
        running.recorded(first);
        let second = running.pending().expect("the second absence was dropped");
        running.recorded(second);
        assert_eq!(running.pending(), None);
        // The real clock going back is said, and is no absence.
        assert_eq!(running.read(&Clock::System, 0, 10), Reading::WentBack { by_ms: 3_602_000 });
        assert_eq!(running.pending(), None);
    }

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
