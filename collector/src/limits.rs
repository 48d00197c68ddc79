//! Rate limits on what a client can make the collector store: counts per key over a
//! fixed window, in memory, by the collector's clock. Past `MAX_KEYS` keys, the stalest
//! windows are forgotten.

use std::collections::HashMap;
use std::sync::Mutex;

const MAX_KEYS: usize = 10_000;

/// A limit: at most `count` per `window_ms`.
#[derive(Debug, Clone, Copy)]
pub struct Limit {
    pub count: u32,
    pub window_ms: i64,
}

/// Enrolment tokens one user may mint.
pub const MINTS_PER_USER: Limit = Limit { count: 60, window_ms: 3_600_000 };
/// Failed logins written to the audit log, from everyone together; past it they are
/// only counted in the log, so a flood cannot crowd out the rest of the trail.
pub const AUDITED_LOGIN_FAILURES: Limit = Limit { count: 600, window_ms: 3_600_000 };

#[derive(Debug, Default)]
pub struct RateLimits {
    windows: Mutex<HashMap<String, (i64, u32)>>,
}

impl RateLimits {
    /// Counts one for `key` if `limit` allows it; else how many milliseconds until it does.
    pub fn take(&self, key: &str, limit: Limit, now: i64) -> Result<(), i64> {
        let mut windows = self.windows.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if windows.len() >= MAX_KEYS && !windows.contains_key(key) {
            windows.retain(|_, (start, _)| now - *start < limit.window_ms);
            if windows.len() >= MAX_KEYS {
                windows.clear();
            }
        }
        let (start, count) = windows.entry(key.to_owned()).or_insert((now, 0));
        if now - *start >= limit.window_ms || now < *start {
            (*start, *count) = (now, 0);
        }
        if *count >= limit.count {
            return Err(*start + limit.window_ms - now);
        }
        *count += 1;
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
        assert_eq!(limits.take("a", limit, 0), Ok(()));
        assert_eq!(limits.take("a", limit, 10), Ok(()));
        assert_eq!(limits.take("a", limit, 400), Err(600));
        assert_eq!(limits.take("b", limit, 400), Ok(()), "keys are apart");
        assert_eq!(limits.take("a", limit, 1000), Ok(()), "a new window");
    }
}
