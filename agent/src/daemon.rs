//! The `run` loop: a heartbeat every interval, until SIGTERM or SIGINT.
//!
//! The first beat waits a random part of the interval, so a fleet that boots together
//! does not stampede; later beats come every interval ± 10 %. A failed beat is retried
//! with exponential backoff plus jitter, capped at the interval. Nothing but a signal
//! ends the loop: not the network, not the collector. A signal cuts short a heartbeat
//! in flight; the `stopping` heartbeat then gets at most [`STOP_BUDGET`].

use crate::beat;
use crate::config::Config;
use crate::transport::{Collector, SendError};
use async_signal::{Signal, Signals};
use hearth_wire::{Heartbeat, State};
use nanorand::{Rng, WyRand};
use smol::{future, stream::StreamExt};
use std::time::Duration;

use hearth_wire::paths::HEARTBEAT as HEARTBEAT_PATH;
/// How long one heartbeat may take on the wire.
const SEND_TIMEOUT_SECS: u64 = 15;
/// How long the final `stopping` heartbeat may take on the wire.
const STOP_TIMEOUT_SECS: u64 = 3;
/// How long stopping may take in all, checks included: well within the unit's
/// `TimeoutStopSec=15`, after which systemd kills the agent.
const STOP_BUDGET: Duration = Duration::from_secs(5);

pub struct Daemon {
    pub config: Config,
    pub collector: Collector,
    pub node_id: String,
    pub token: Option<String>,
    /// Where `token` and `node_id` came from: read again when a heartbeat is refused,
    /// since `hearth-agent enroll` (or the installer) may have enrolled this node anew
    /// while the loop ran, revoking the token it holds.
    pub state: crate::state::State,
}

enum Wake {
    Tick,
    Stop,
}

impl Daemon {
    pub async fn run(mut self) -> Result<(), String> {
        let mut signals =
            Signals::new([Signal::Term, Signal::Int]).map_err(|e| format!("cannot watch for signals: {e}"))?;
        let mut rng = seeded_rng()?;
        let interval_ms = self.config.interval_secs * 1000;
        let mut delay_ms = rng.generate_range(0..interval_ms.max(1));
        let mut seq = 0;
        let mut failures: u32 = 0;
        log::info!(
            "reporting node {} to {} every {} s{}",
            self.node_id,
            self.collector.base,
            self.config.interval_secs,
            if self.token.is_some() { "" } else { " without a token (anonymous)" }
        );
        loop {
            let tick = async {
                async_io::Timer::after(Duration::from_millis(delay_ms)).await;
                Wake::Tick
            };
            let stop = async {
                signals.next().await;
                Wake::Stop
            };
            if let Wake::Stop = future::or(stop, tick).await {
                break;
            }
            seq += 1;
            // A send can hang for SEND_TIMEOUT_SECS; a signal must not wait for it, or
            // systemd's TimeoutStopSec runs out before the `stopping` heartbeat goes.
            let beat = async {
                let heartbeat = beat::build(&self.config, &self.collector, &self.node_id, seq, State::Running).await;
                Some(self.send_off(&heartbeat, SEND_TIMEOUT_SECS).await)
            };
            let stop = async {
                signals.next().await;
                None
            };
            let Some(sent) = future::or(stop, beat).await else {
                log::info!("heartbeat {seq} abandoned: a signal arrived while it was being sent");
                break;
            };
            match sent {
                Ok(()) => {
                    if failures > 0 {
                        log::info!("heartbeat {seq} delivered after {failures} failed attempts");
                    }
                    failures = 0;
                    delay_ms = jitter(&mut rng, interval_ms);
                }
                Err(e) => {
                    failures = failures.saturating_add(1);
                    delay_ms = backoff(&mut rng, failures, interval_ms);
                    if e.is_auth() && self.take_new_enrolment() {
                        log::info!("heartbeat {seq} refused ({e}), but this node has enrolled again since; sending with its new agent token");
                        delay_ms = 0;
                    } else if e.is_auth() {
                        // The collector's refusal usually says how to enrol; said once is enough.
                        let text = e.to_string();
                        let hint = if text.contains("hearth-agent enroll") {
                            ""
                        } else {
                            "; re-enrol with `hearth-agent enroll --token TOKEN`"
                        };
                        log::error!("heartbeat {seq} refused: {text}{hint}");
                    } else {
                        log::warn!("heartbeat {seq} failed: {e}; retrying in {:.1} s", delay_ms as f64 / 1000.0);
                    }
                }
            }
        }
        seq += 1;
        log::info!("stopping; telling the collector");
        let stopping = async {
            let heartbeat = beat::build(&self.config, &self.collector, &self.node_id, seq, State::Stopping).await;
            self.send_off(&heartbeat, STOP_TIMEOUT_SECS).await.map_err(|e| e.to_string())
        };
        let give_up = async {
            async_io::Timer::after(STOP_BUDGET).await;
            Err(format!("it took longer than {} s", STOP_BUDGET.as_secs()))
        };
        let again = async {
            signals.next().await;
            Err("a second signal arrived".to_owned())
        };
        if let Err(e) = future::or(stopping, future::or(give_up, again)).await {
            log::warn!("could not send the stopping heartbeat: {e}");
        }
        Ok(())
    }

    /// Takes the agent token (and node id, unless configured) saved since the loop began,
    /// if they changed; says whether they did. Unchanged or unreadable, the loop keeps
    /// what it holds, so a refusal is retried with backoff, not at once.
    fn take_new_enrolment(&mut self) -> bool {
        let token = match self.state.token() {
            Ok(token) if token.is_some() && token != self.token => token,
            Ok(_) => return false,
            Err(e) => {
                log::warn!("{e}");
                return false;
            }
        };
        if self.config.node_id.is_none() {
            match self.state.node_id() {
                Ok(Some(id)) => self.node_id = id,
                Ok(None) => {}
                Err(e) => {
                    log::warn!("{e}");
                    return false;
                }
            }
        }
        self.token = token;
        true
    }

    /// Sends one heartbeat on a blocking thread, so that the loop can stop waiting for it.
    /// Dropping the future abandons the send; its thread ends at the send's timeout.
    async fn send_off(&self, heartbeat: &Heartbeat, timeout_secs: u64) -> Result<(), SendError> {
        let (collector, token) = (self.collector.clone(), self.token.clone());
        let body = miniserde::json::to_string(heartbeat);
        smol::unblock(move || collector.post(HEARTBEAT_PATH, &body, token.as_deref(), timeout_secs).map(drop)).await
    }

    /// Sends one heartbeat.
    pub fn send(&self, heartbeat: &Heartbeat, timeout_secs: u64) -> Result<(), SendError> {
        let body = miniserde::json::to_string(heartbeat);
        self.collector.post(HEARTBEAT_PATH, &body, self.token.as_deref(), timeout_secs).map(drop)
    }
}

/// nanorand seeds itself from the OS too, but silently falls back to zeros early in boot;
/// every node would then jitter alike. Seed from getrandom, which waits for the kernel.
fn seeded_rng() -> Result<WyRand, String> {
    let mut seed = [0u8; 8];
    getrandom::fill(&mut seed).map_err(|e| format!("cannot seed the random generator: {e}"))?;
    Ok(WyRand::new_seed(u64::from_le_bytes(seed)))
}

/// How long to wait before the next try after `failures` failures in a row: [`backoff`]
/// capped at `cap_ms`, from a freshly seeded generator.
pub fn retry_delay(failures: u32, cap_ms: u64) -> Result<Duration, String> {
    Ok(Duration::from_millis(backoff(&mut seeded_rng()?, failures, cap_ms)))
}

/// The interval ± 10 %.
fn jitter(rng: &mut WyRand, interval_ms: u64) -> u64 {
    let spread = interval_ms / 10;
    interval_ms - spread + rng.generate_range(0..=2 * spread)
}

/// 1 s, 2 s, 4 s… capped at the interval, each drawn from its upper half so retries spread out.
fn backoff(rng: &mut WyRand, failures: u32, interval_ms: u64) -> u64 {
    let ceiling = 1000u64.saturating_mul(1 << failures.clamp(1, 20).saturating_sub(1)).min(interval_ms);
    ceiling / 2 + rng.generate_range(0..=ceiling / 2)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_stays_within_ten_percent() {
        let mut rng = WyRand::new_seed(7);
        let draws: Vec<u64> = (0..1000).map(|_| jitter(&mut rng, 30_000)).collect();
        assert!(draws.iter().all(|d| (27_000..=33_000).contains(d)));
        assert!(draws.iter().any(|d| *d < 29_000) && draws.iter().any(|d| *d > 31_000), "no spread");
    }

    #[test]
    fn backoff_doubles_up_to_the_interval() {
        let mut rng = WyRand::new_seed(7);
        for (failures, low, high) in
            [(1, 500, 1000), (2, 1000, 2000), (3, 2000, 4000), (6, 15_000, 30_000), (40, 15_000, 30_000)]
        {
            for _ in 0..100 {
                let d = backoff(&mut rng, failures, 30_000);
                assert!((low..=high).contains(&d), "failures={failures}: {d}");
            }
        }
    }

    #[test]
    fn seeds_differ() {
        let a = seeded_rng().unwrap().generate::<u64>();
        let b = seeded_rng().unwrap().generate::<u64>();
        assert_ne!(a, b);
    }
}
