//! Load from `wrk` running `xtask/bench/heartbeat.lua`, and what it measured.

use crate::util;
use std::path::Path;
use std::process::Command;

/// How wrk loads the server.
#[derive(Clone, Copy)]
pub struct Shape {
    pub connections: usize,
    pub seconds: u64,
    /// A new connection per request (the agent's way), or keep-alive.
    pub close: bool,
    /// Each connection waits this long before each request: a paced load.
    pub delay_ms: Option<u32>,
    /// Pushgateway pushes instead of heartbeats.
    pub push: bool,
    /// The nodes taken in turn, each beating as regularly as an agent, rather than at random.
    pub in_turn: bool,
    /// The interval the nodes announce, if not heartbeat.json's 30 s.
    pub interval_secs: Option<u32>,
}

/// What wrk reported: answers, errors (refused, cut, non-2xx/3xx, or no answer within
/// wrk's 2 s timeout) and latency from the request's first byte to the answer's last.
#[derive(Clone, Copy, Default)]
pub struct Measured {
    pub requests: u64,
    pub seconds: f64,
    pub errors: u64,
    pub timeouts: u64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
}

impl Measured {
    pub fn rate(&self) -> f64 {
        self.requests.saturating_sub(self.errors) as f64 / self.seconds.max(1e-9)
    }
}

pub fn wrk(url: &str, nodes: &Path, shape: Shape) -> Result<Measured, String> {
    let script = util::root().join("xtask/bench/heartbeat.lua");
    let mut command = Command::new("wrk");
    command
        .args(["-t", "2", "-c", &shape.connections.to_string(), "-d", &format!("{}s", shape.seconds)])
        .arg("-s")
        .arg(&script)
        .arg(url)
        .env("HEARTH_BENCH_NODES", nodes)
        .env("HEARTH_BENCH_HEARTBEAT", util::root().join("xtask/bench/heartbeat.json"))
        .env("HEARTH_BENCH_CLOSE", if shape.close { "1" } else { "0" })
        .env("HEARTH_BENCH_PUSH", if shape.push { "1" } else { "0" });
    if shape.in_turn {
        command.env("HEARTH_BENCH_IN_TURN", "1");
    }
    if let Some(interval) = shape.interval_secs {
        command.env("HEARTH_BENCH_INTERVAL", interval.to_string());
    }
    if let Some(delay) = shape.delay_ms {
        command.env("HEARTH_BENCH_DELAY_MS", delay.to_string());
    }
    let out = util::output(&mut command)?;
    let line =
        out.lines().find(|l| l.starts_with("{\"wrk\":")).ok_or_else(|| format!("wrk said nothing usable:\n{out}"))?;
    let object: miniserde::json::Object =
        miniserde::json::from_str(line).map_err(|_| format!("wrk's summary is not JSON: {line}"))?;
    let number = |key: &str| match object.get(key) {
        Some(miniserde::json::Value::Number(n)) => match *n {
            miniserde::json::Number::U64(v) => v as f64,
            miniserde::json::Number::I64(v) => v as f64,
            miniserde::json::Number::F64(v) => v,
        },
        _ => 0.0,
    };
    let errors = ["connect", "read", "write", "status", "timeout"].iter().map(|k| number(k)).sum::<f64>() as u64;
    Ok(Measured {
        requests: number("requests") as u64,
        seconds: number("duration_us") / 1e6,
        errors,
        timeouts: number("timeout") as u64,
        p50_ms: number("p50_us") / 1000.0,
        p99_ms: number("p99_us") / 1000.0,
        p999_ms: number("p999_us") / 1000.0,
        max_ms: number("max_us") / 1000.0,
    })
}
