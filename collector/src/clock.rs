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
