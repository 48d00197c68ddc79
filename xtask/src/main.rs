//! `cargo xtask TASK`: Hearth's chores, written in Rust so they run wherever cargo does.

mod bench;
mod chaos;
mod deb;
mod demo;
mod dist;
mod e2e_arm;
mod fuzz;
mod schemathesis;
mod screenshots;
mod util;

use std::process::ExitCode;

const HELP: &str = "\
cargo xtask TASK

Tasks:
  demo [--seconds N]   build both binaries, start a collector on loopback (its LMDB under
                       target/demo), mint a token, enrol a local agent, run it, and print
                       the node table as it changes. Ctrl-C stops it all; --seconds N stops
                       by itself after N seconds.
  dist [--target T]…   static musl builds of both binaries (default: x86_64, aarch64, armv7,
                       armv6 and, where it builds, riscv64) into target/dist: tarballs, the
                       agents laid out as the collector's --agent-dir serves them
                       (agent/linux/<uname -m>/hearth-agent), SHA256SUMS and SIZES.md.
                       Installs zig (PyPI) and cargo-zigbuild when missing; no Docker.
  e2e-arm [--target T] the agent's end-to-end tests against its aarch64 and armv6 builds,
                       run under qemu-user (qemu-arm -cpu arm1176 for armv6), with a native
                       collector on loopback; installs qemu-user-static when missing
  deb [--arch A]       a .deb per architecture (amd64, arm64, armhf = the ARMv6 build,
                       riscv64) into target/deb: both binaries, the units, and an example
                       /etc/hearth/agent.env kept on upgrade
  bench [ingest] [scale] [footprint]
                       side by side on release builds, into target/bench/report.md, with
                       each target met or not. ingest: 10,000 enrolled nodes' heartbeats
                       from wrk, new connection and keep-alive, against a bare tiny_http
                       responder and Prometheus Pushgateway. scale: 100,000 nodes stored:
                       bytes per node, GET /api/nodes, /metrics, RSS, cold start. footprint:
                       the agent's size, peak RSS and CPU for one heartbeat. All by default.
                       Needs wrk and prometheus-pushgateway (Debian packages).
  fuzz [--seconds N]   each cargo-fuzz target in fuzz/ (heartbeat and enrol bodies, the
                       agent's env-file parser, a request through the collector's routing and
                       handlers) for N seconds [default 10], after replaying the inputs in
                       fuzz/regressions/; installs cargo-fuzz when missing
  schemathesis [--max-examples N]
                       a collector on loopback checked against docs/openapi.yaml by
                       schemathesis (PyPI, installed into target/ when missing): no 5xx,
                       no status, content type or body the file does not describe
  screenshots          PNGs of every dashboard page and the public status page, at desktop
                       (1280 px) and phone (390 px) width, into target/screenshots/: a demo
                       collector with six nodes and a week of history, in headless Chromium
                       through chromedriver (Debian's chromium and chromium-driver)
  chaos [--quick]      the fault tests at full size, into target/chaos/report.md: kill -9
                       under load 20 times, a full store, an unusable data directory, 1,000
                       slow clients with huge headers, bodies and garbage at once, and an
                       agent through a 30 s outage then 30 s of 500s
";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let result = match args.as_slice() {
        ["demo", rest @ ..] => demo::run(rest),
        ["dist", rest @ ..] => dist::run(rest),
        ["e2e-arm", rest @ ..] => e2e_arm::run(rest),
        ["deb", rest @ ..] => deb::run(rest),
        ["bench", rest @ ..] => bench::run(rest),
        ["chaos", rest @ ..] => chaos::run(rest),
        ["fuzz", rest @ ..] => fuzz::run(rest),
        ["schemathesis", rest @ ..] => schemathesis::run(rest),
        ["screenshots", rest @ ..] => screenshots::run(rest),
        [] | ["help" | "--help" | "-h"] => {
            print!("{HELP}");
            Ok(())
        }
        other => Err(format!("unknown task `{}`\n\n{HELP}", other.join(" "))),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("xtask: {message}");
            ExitCode::FAILURE
        }
    }
}
