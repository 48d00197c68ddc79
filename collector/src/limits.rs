//! Rate limits on what a client can make the collector store: counts per key over a
//! fixed window, in memory, by the collector's clock. Past `MAX_KEYS` keys, the stalest
//! windows are forgotten.
//!
//! Limits are taken inside a batch's write transaction, which runs again from the start
//! when the store's map has to grow: each request carries a sequence number
//! (`api::Request::seq`), and a request already counted is not counted twice.

use std::collections::HashMap;
use std::sync::Mutex;

const MAX_KEYS: usize = 10_000;

/// A limit: at most `count` per `window_ms`.
#[derive(Debug, Clone, Copy)]
pub struct Limit {
    pub count: u32,
    pub window_ms: i64,
}

/// Failed logins written to the audit log, from everyone together; past it they are
/// only counted in the log, so a flood cannot crowd out the rest of the trail.
pub const AUDITED_LOGIN_FAILURES: Limit = Limit { count: 600, window_ms: 3_600_000 };

/// One key's window: when it started, how many it counted, and the last request counted.
#[derive(Debug, Clone, Copy)]
struct Window {
    start: i64,
    count: u32,
    last_seq: u64,
}

/// The limits, and the windows counted against them.
#[derive(Debug, Default)]
pub struct RateLimits {
    /// New nodes one source (an address, IPv6 by /64) may register by anonymous heartbeat.
    pub anonymous_per_source: Limit,
    /// Enrolment tokens one user may mint.
    pub mints_per_user: Limit,
    windows: Mutex<HashMap<String, Window>>,
}

impl Default for Limit {
    fn default() -> Limit {
        Limit { count: u32::MAX, window_ms: 1 }
    }
}

impl RateLimits {
    /// The limits `serve` was given: `--anonymous-per-minute`, `--mints-per-hour`.
    pub fn new(anonymous_per_minute: u32, mints_per_hour: u32) -> RateLimits {
        RateLimits {
            anonymous_per_source: Limit { count: anonymous_per_minute, window_ms: 60_000 },
            mints_per_user: Limit { count: mints_per_hour, window_ms: 3_600_000 },
            windows: Mutex::default(),
        }
    }

    /// Counts request `seq` for `key` if `limit` allows it; else how many milliseconds
    /// until it does. A request counted already (the same `seq`, or an earlier one) is
    /// allowed again without counting; `seq` 0 is always counted.
    pub fn take(&self, key: &str, limit: Limit, now: i64, seq: u64) -> Result<(), i64> {
        let mut windows = self.windows.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if windows.len() >= MAX_KEYS && !windows.contains_key(key) {
            windows.retain(|_, w| now - w.start < limit.window_ms);
            if windows.len() >= MAX_KEYS {
                windows.clear();
            }
        }
        let window = windows.entry(key.to_owned()).or_insert(Window { start: now, count: 0, last_seq: 0 });
        if seq != 0 && seq <= window.last_seq {
            return Ok(());
        }
        if now - window.start >= limit.window_ms || now < window.start {
            (window.start, window.count) = (now, 0);
        }
        if window.count >= limit.count {
            return Err(window.start + limit.window_ms - now);
        }
        window.count += 1;
        window.last_seq = seq;
        Ok(())
    }
}

/// Password checks (argon2id: tens of ms of a core each) for everyone together: a burst
/// of up to 40, then 4 a second. A login flood costs at most about a third of one core;
/// a person logging in never notices.
#[derive(Debug)]
pub struct PasswordChecks {
    /// Checks that may start now, and when that was counted.
    bucket: Mutex<(f64, std::time::Instant)>,
}

const CHECKS_BURST: f64 = 40.0;
const CHECKS_PER_SEC: f64 = 4.0;

impl Default for PasswordChecks {
    fn default() -> PasswordChecks {
        PasswordChecks { bucket: Mutex::new((CHECKS_BURST, std::time::Instant::now())) }
    }
}

impl PasswordChecks {
    /// Takes one check if one may start; else how many milliseconds until one may.
    pub fn take(&self) -> Result<(), i64> {
        self.take_at(std::time::Instant::now())
    }

    fn take_at(&self, now: std::time::Instant) -> Result<(), i64> {
        let mut bucket = self.bucket.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let (tokens, counted) = *bucket;
        let tokens = (tokens + now.saturating_duration_since(counted).as_secs_f64() * CHECKS_PER_SEC).min(CHECKS_BURST);
        if tokens < 1.0 {
            *bucket = (tokens, now);
            return Err(((1.0 - tokens) / CHECKS_PER_SEC * 1000.0).ceil() as i64);
        }
        *bucket = (tokens - 1.0, now);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_gets_its_count_per_window() {
        let limits = RateLimits::default();
        let limit = Limit { count: 2, window_ms: 1000 };
        assert_eq!(limits.take("a", limit, 0, 0), Ok(()));
        assert_eq!(limits.take("a", limit, 10, 0), Ok(()));
        assert_eq!(limits.take("a", limit, 400, 0), Err(600));
        assert_eq!(limits.take("b", limit, 400, 0), Ok(()), "keys are apart");
        assert_eq!(limits.take("a", limit, 1000, 0), Ok(()), "a new window");
    }

    #[test]
    fn password_checks_allow_a_burst_then_a_steady_rate() {
        let checks = PasswordChecks::default();
        let start = std::time::Instant::now();
        for _ in 0..40 {
            assert_eq!(checks.take_at(start), Ok(()));
        }
        assert_eq!(checks.take_at(start), Err(250));
        let later = start + std::time::Duration::from_millis(500);
        assert_eq!(checks.take_at(later), Ok(()));
        assert_eq!(checks.take_at(later), Ok(()));
        assert!(checks.take_at(later).is_err());
    }

    #[test]
    fn a_request_run_again_is_not_counted_again() {
        let limits = RateLimits::default();
        let limit = Limit { count: 2, window_ms: 1000 };
        assert_eq!(limits.take("a", limit, 0, 1), Ok(()));
        assert_eq!(limits.take("a", limit, 0, 2), Ok(()));
        // The batch ran again after the map grew: requests 1 and 2 come again.
        assert_eq!(limits.take("a", limit, 0, 1), Ok(()));
        assert_eq!(limits.take("a", limit, 0, 2), Ok(()));
        assert_eq!(limits.take("a", limit, 0, 3), Err(1000), "only two were counted");
        assert_eq!(limits.take("a", limit, 0, 3), Err(1000), "and a refusal stays one");
    }
}
