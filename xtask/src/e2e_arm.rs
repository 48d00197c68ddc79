//! `cargo xtask e2e-arm`: the agent's end-to-end tests, run against ARM builds under qemu-user.
//!
//! The agent is cross-built (static musl, as it ships) and the agent's integration tests run
//! with `HEARTH_AGENT_BIN` and `HEARTH_AGENT_RUNNER` set, so every test starts the ARM agent
//! under Debian's qemu-user-static against a native collector on loopback: enrolment and
//! heartbeats over HTTPS with a test CA, the daemon, a clean stop. The collector is not
//! emulated (LMDB's robust mutexes need `get_robust_list`, which qemu-user lacks).

use crate::{dist, util};
use std::process::Command;

/// Each case: target, runner command, what `uname -m` must say under it.
const CASES: &[(&str, &str, &str)] = &[
    ("aarch64-unknown-linux-musl", "qemu-aarch64-static", "aarch64"),
    // A Pi Zero or Pi 1 is an ARM1176: an armv7 binary would die there with SIGILL.
    ("arm-unknown-linux-musleabihf", "qemu-arm-static -cpu arm1176", "armv6l"),
];

pub fn run(args: &[&str]) -> Result<(), String> {
    let chosen: Vec<&(&str, &str, &str)> = match args {
        [] => CASES.iter().collect(),
        ["--target", target] => CASES.iter().filter(|(t, _, _)| t == target).collect(),
        _ => {
            return Err(
                "usage: cargo xtask e2e-arm [--target aarch64-unknown-linux-musl|arm-unknown-linux-musleabihf]".into()
            )
        }
    };
    if chosen.is_empty() {
        return Err(format!("e2e-arm knows {}", CASES.iter().map(|c| c.0).collect::<Vec<_>>().join(" and ")));
    }
    ensure_qemu()?;
    for (target, runner, machine) in chosen {
        println!("== {target} under {runner}");
        let agent = dist::build_agent(target)?;
        let program = runner.split_whitespace().next().unwrap_or_default();
        let said =
            util::output(Command::new(program).args(runner.split_whitespace().skip(1)).arg(&agent).arg("--version"))?;
        println!("   {}", said.trim());
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        util::output(Command::new(&cargo).current_dir(util::root()).args(["build", "-p", "hearth-collector"]))?;
        let status = Command::new(cargo)
            .current_dir(util::root())
            .args(["test", "-p", "hearth-agent", "--test", "it", "--", "--test-threads", "2"])
            .env("HEARTH_AGENT_BIN", &agent)
            .env("HEARTH_AGENT_RUNNER", runner)
            .env("HEARTH_AGENT_MACHINE", machine)
            .status()
            .map_err(|e| format!("cannot run cargo test: {e}"))?;
        if !status.success() {
            return Err(format!("the agent's end-to-end tests failed for {target} under {runner}"));
        }
    }
    Ok(())
}

fn ensure_qemu() -> Result<(), String> {
    if Command::new("qemu-aarch64-static").arg("--version").output().is_ok_and(|o| o.status.success()) {
        return Ok(());
    }
    println!("== installing qemu-user-static");
    util::output(Command::new("apt-get").args(["install", "-y", "-qq", "qemu-user-static"]))
        .or_else(|_| {
            util::output(Command::new("apt-get").arg("update").arg("-qq"))?;
            util::output(Command::new("apt-get").args(["install", "-y", "-qq", "qemu-user-static"]))
        })
        .map(drop)
}
