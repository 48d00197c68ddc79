//! `cargo xtask fuzz [--seconds N]`: every cargo-fuzz target in fuzz/, for N seconds each
//! (default 10), after replaying the inputs that once crashed it (fuzz/regressions/TARGET/).
//!
//! cargo-fuzz needs nightly flags; stable rustc accepts them under RUSTC_BOOTSTRAP=1, and
//! ships the AddressSanitizer runtime. cargo-fuzz is installed when missing.

use crate::util;
use std::process::Command;

const TARGETS: [&str; 4] = ["heartbeat", "enroll", "envfile", "request"];

pub fn run(args: &[&str]) -> Result<(), String> {
    let seconds: u64 = match args {
        [] => 10,
        ["--seconds", n] => n.parse().map_err(|_| format!("--seconds {n}: not a whole number"))?,
        _ => return Err("usage: cargo xtask fuzz [--seconds N]".into()),
    };
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    if !Command::new(&cargo).args(["fuzz", "--version"]).output().is_ok_and(|o| o.status.success()) {
        println!("== installing cargo-fuzz");
        util::output(Command::new(&cargo).args(["install", "cargo-fuzz", "--locked"]))?;
    }
    let root = util::root();
    let fuzz = |args: &[&str]| {
        let mut command = Command::new(&cargo);
        command.current_dir(&root).env("RUSTC_BOOTSTRAP", "1").args(["fuzz"]).args(args);
        command
    };
    println!("== cargo fuzz build");
    let status = fuzz(&["build", "-O"]).status().map_err(|e| e.to_string())?;
    if !status.success() {
        return Err(format!("cargo fuzz build failed ({status})"));
    }
    let mut summary = Vec::new();
    for target in TARGETS {
        let corpus = root.join("fuzz/corpus").join(target);
        std::fs::create_dir_all(&corpus).map_err(|e| e.to_string())?;
        let regressions: Vec<String> = std::fs::read_dir(root.join("fuzz/regressions").join(target))
            .map(|dir| dir.flatten().map(|e| e.path().display().to_string()).collect())
            .unwrap_or_default();
        if !regressions.is_empty() {
            println!("== {target}: replaying {} regression inputs", regressions.len());
            let args: Vec<&str> =
                ["run", "-O", target].into_iter().chain(regressions.iter().map(String::as_str)).collect();
            let out = fuzz(&args).output().map_err(|e| e.to_string())?;
            if !out.status.success() {
                return Err(format!(
                    "{target}: a regression input fails again:\n{}",
                    String::from_utf8_lossy(&out.stderr)
                ));
            }
        }
        println!("== {target}: fuzzing for {seconds} s");
        let seeds = root.join("fuzz/seeds").join(target);
        let time = format!("-max_total_time={seconds}");
        let (corpus, seeds) = (corpus.display().to_string(), seeds.display().to_string());
        let out = fuzz(&["run", "-O", target, &corpus, &seeds, "--", &time]).output().map_err(|e| e.to_string())?;
        let log = String::from_utf8_lossy(&out.stderr);
        if !out.status.success() {
            let tail: Vec<&str> = log.lines().rev().take(40).collect();
            return Err(format!(
                "{target} crashed; the input is under fuzz/artifacts/{target}/. Fix it, and move the input to \
                 fuzz/regressions/{target}/ so every run replays it.\n{}",
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            ));
        }
        let done = log.lines().find(|l| l.starts_with("Done ")).unwrap_or("(no summary)").to_owned();
        summary.push(format!("{target}: {done}"));
    }
    println!("\n{}", summary.join("\n"));
    Ok(())
}
