//! `cargo xtask chaos`: the fault tests at full size, on release builds, with their
//! figures gathered into target/chaos/report.md. `cargo test` runs the same tests smaller.
//!
//! - kill -9 under load, 20 times (collector/tests/it/durability.rs)
//! - a full store, and a data directory that cannot be used (the same file)
//! - 1,000 slow clients, 64 MiB headers, 100 MiB bodies and garbage at once
//!   (collector/tests/it/chaos.rs)
//! - the collector gone, then failing, for 30 s each, under a running agent
//!   (agent/tests/it/daemon.rs)
//! - clients that never read large answers and a login flood, beside heartbeats
//!   (collector/tests/it/isolation.rs)

use crate::util;
use std::process::Command;

/// (package, test name filter) for each fault.
const TESTS: [(&str, &str); 6] = [
    ("hearth-collector", "durability::kill_9_under_load_loses_no_acknowledged_write"),
    ("hearth-collector", "durability::a_full_store_answers_507"),
    ("hearth-collector", "durability::a_data_directory_that_cannot_be_used"),
    ("hearth-collector", "chaos::hostile_clients"),
    ("hearth-agent", "daemon::a_long_outage_then_a_failing_collector"),
    ("hearth-collector", "isolation::non_readers_and_a_login_flood"),
];

pub fn run(args: &[&str]) -> Result<(), String> {
    let (rounds, seconds) = match args {
        [] => ("20", "30"),
        ["--quick"] => ("5", "8"),
        _ => return Err("usage: cargo xtask chaos [--quick]".into()),
    };
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut report = format!(
        "# Hearth fault report\n\nkill -9 rounds: {rounds}; each hostile or outage phase: {seconds} s. \
         Re-run with `cargo xtask chaos`.\n\n"
    );
    for (package, test) in TESTS {
        println!("== {package}: {test}");
        let out = Command::new(&cargo)
            .current_dir(util::root())
            .args(["test", "--release", "-p", package, "--test", "it", test, "--", "--nocapture"])
            .env("HEARTH_CHAOS_ROUNDS", rounds)
            .env("HEARTH_CHAOS_SECONDS", seconds)
            .env("CI", "1")
            .output()
            .map_err(|e| format!("cannot run cargo test: {e}"))?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        let stdout = String::from_utf8_lossy(&out.stdout);
        let passed = out.status.success() && !stdout.contains(" 0 passed");
        let figures: Vec<&str> = stderr
            .lines()
            .filter(|l| ["kill -9", "hostile mix", "outage", "isolation"].iter().any(|p| l.starts_with(p)))
            .collect();
        report.push_str(&format!("- `{test}`: **{}**", if passed { "passed" } else { "FAILED" }));
        for line in &figures {
            report.push_str(&format!("\n  {line}"));
        }
        report.push('\n');
        if !passed {
            println!("{stdout}\n{stderr}");
        }
    }
    let dir = util::root().join("target/chaos");
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    std::fs::write(dir.join("report.md"), &report).map_err(|e| e.to_string())?;
    println!("\n{report}\nwritten to target/chaos/report.md");
    if report.contains("FAILED") {
        return Err("a fault test failed".into());
    }
    Ok(())
}
