//! `cargo xtask TASK`: Hearth's chores, written in Rust so they run wherever cargo does.

mod bench;
mod deb;
mod demo;
mod dist;
mod e2e_arm;
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
  bench [ingest|footprint]
                       ingest: heartbeats/s and latency with group commit and without, side
                       by side, on release builds. footprint: the agent's binary size and
                       peak RSS across one heartbeat. Both by default.
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
