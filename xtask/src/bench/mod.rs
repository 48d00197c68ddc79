//! `cargo xtask bench`: figures measured side by side in one run, written to target/bench/report.md.
//!
//! Timings on a shared machine are noisy, so each comparison runs its cases back to back
//! under the same load and reports their ratio, not only their absolute values.
//! Load comes from `wrk` with `xtask/bench/heartbeat.lua`; enrolling the simulated nodes
//! (which wrk cannot do) is `seed.rs`'s job.

mod dashboard;
mod footprint;
mod ingest;
mod load;
mod scale;
mod seed;

use crate::util;
use std::fmt::Write as _;
use std::process::Command;

pub fn run(args: &[&str]) -> Result<(), String> {
    let all = ["ingest", "scale", "footprint"];
    let parts: Vec<&str> = if args.is_empty() { all.to_vec() } else { args.to_vec() };
    if let Some(unknown) = parts.iter().find(|p| !all.contains(p)) {
        return Err(format!("unknown part `{unknown}`; usage: cargo xtask bench [ingest] [scale] [footprint]"));
    }
    if !Command::new("wrk").arg("--version").output().is_ok_and(|o| !o.stdout.is_empty() || !o.stderr.is_empty()) {
        return Err("wrk is missing (apt-get install wrk)".into());
    }
    util::build(&["--release"])?;
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut example = Command::new(cargo);
    example.current_dir(util::root()).args(["build", "--release", "-p", "hearth-collector"]);
    util::output(example.args(["--example", "bare_tiny_http"]))?;
    let out = util::root().join("target/bench");
    let _ = std::fs::remove_dir_all(&out);
    std::fs::create_dir_all(&out).map_err(|e| e.to_string())?;
    let mut report = String::from("# Hearth benchmark report\n\n");
    let _ = writeln!(
        report,
        "Machine: {} cores, shared; every figure below comes from this one run, its cases measured back to back.\n\
         Re-run with `cargo xtask bench` (or one part: `cargo xtask bench ingest|scale|footprint`).\n",
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    let mut verdicts = Vec::new();
    for part in parts {
        println!("== bench {part}");
        let (text, mut targets) = match part {
            "ingest" => ingest::report(&out)?,
            "scale" => scale::report(&out)?,
            _ => (footprint::report(&out)?, Vec::new()),
        };
        report.push_str(&text);
        verdicts.append(&mut targets);
    }
    if !verdicts.is_empty() {
        report.push_str("## Targets\n\n| target | measured | met |\n|---|---|---|\n");
        for target in &verdicts {
            let _ = writeln!(
                report,
                "| {} | {} | {} |",
                target.what,
                target.measured,
                if target.met { "yes" } else { "**no**" }
            );
        }
        report.push('\n');
    }
    let path = out.join("report.md");
    std::fs::write(&path, &report).map_err(|e| e.to_string())?;
    println!("{report}\nwritten to {}", path.display());
    Ok(())
}

/// One of the targets, and whether this run met it.
pub struct Target {
    pub what: &'static str,
    pub measured: String,
    pub met: bool,
}

/// What /proc says of a process: CPU time used so far and resident memory.
#[derive(Clone, Copy, Default)]
pub struct Usage {
    pub cpu_secs: f64,
    pub rss_kib: u64,
    pub peak_rss_kib: u64,
}

impl Usage {
    pub fn of(pid: u32) -> Usage {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        // The fields after the command name, which is in parentheses and may hold spaces.
        let fields: Vec<&str> = stat.rsplit_once(')').map_or("", |(_, rest)| rest).split_whitespace().collect();
        // SAFETY: sysconf has no preconditions.
        let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
        let field = |i: usize| fields.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
        // utime and stime are fields 14 and 15 of stat(5); `fields` starts at field 3.
        let cpu_secs = (field(11) + field(12)) / ticks;
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        let kib = |name: &str| {
            let line = status.lines().find(|l| l.starts_with(name));
            line.and_then(|l| l.split_whitespace().nth(1)?.parse().ok()).unwrap_or(0)
        };
        Usage { cpu_secs, rss_kib: kib("VmRSS:"), peak_rss_kib: kib("VmHWM:") }
    }
}

pub fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}
