//! `cargo xtask dist`: static musl release builds of both binaries for every homelab board.
//!
//! Builds with cargo-zigbuild and zig (from the `ziglang` package on PyPI), installing both
//! when missing, so no Docker and no per-target C cross-compiler are needed. Targets whose
//! prebuilt standard library rustup cannot supply are built with `-Z build-std`.

use crate::util::{self, output};
use sha2::{Digest, Sha256};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Every target a release carries, with the machine name `uname -m` reports on such a board.
pub const TARGETS: &[(&str, &str)] = &[
    ("x86_64-unknown-linux-musl", "x86_64"),
    ("aarch64-unknown-linux-musl", "aarch64"),
    ("armv7-unknown-linux-musleabihf", "armv7l"),
    ("arm-unknown-linux-musleabihf", "armv6l"),
    ("riscv64gc-unknown-linux-musl", "riscv64"),
];

pub fn run(args: &[&str]) -> Result<(), String> {
    let mut chosen = Vec::new();
    let mut words = args.iter();
    while let Some(word) = words.next() {
        match *word {
            "--target" => chosen.push(*words.next().ok_or("--target takes a target triple")?),
            other => return Err(format!("unknown argument `{other}`; usage: cargo xtask dist [--target T]…")),
        }
    }
    let targets: Vec<&str> = if chosen.is_empty() { TARGETS.iter().map(|(t, _)| *t).collect() } else { chosen };
    let dist = util::root().join("target/dist");
    // Start empty: SHA256SUMS lists what this run built, never a stale tarball from an earlier one.
    if dist.exists() {
        std::fs::remove_dir_all(&dist).map_err(|e| format!("cannot empty {}: {e}", dist.display()))?;
    }
    std::fs::create_dir_all(&dist).map_err(|e| e.to_string())?;
    let version = env!("CARGO_PKG_VERSION");
    let mut table = String::from("| target | board | hearth-agent | hearth-collector |\n|---|---|---:|---:|\n");
    let mut failures = Vec::new();
    for target in targets {
        let arch = arch_of(target).ok_or_else(|| format!("unknown target {target}; known: {}", known()))?;
        println!("== {target}");
        match build(target) {
            Ok([agent, collector]) => {
                let sizes = [&agent, &collector].map(|p| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0));
                for (name, bin) in [("hearth-agent", &agent), ("hearth-collector", &collector)] {
                    package(&dist, name, bin, version, target)?;
                }
                // The layout the collector's --agent-dir serves: agent/linux/<uname -m>/hearth-agent.
                let served = dist.join("agent/linux").join(arch);
                std::fs::create_dir_all(&served).map_err(|e| e.to_string())?;
                std::fs::copy(&agent, served.join("hearth-agent")).map_err(|e| e.to_string())?;
                let _ = writeln!(table, "| {target} | {} | {} | {} |", board(arch), bytes(sizes[0]), bytes(sizes[1]));
            }
            Err(why) => {
                println!("   {target} did not build: {why}");
                let _ = writeln!(table, "| {target} | {} | did not build | |", board(arch));
                failures.push(target);
            }
        }
    }
    write_sums(&dist)?;
    std::fs::write(dist.join("SIZES.md"), &table).map_err(|e| e.to_string())?;
    println!("\n{table}\nin {}", dist.display());
    match failures.as_slice() {
        [] => Ok(()),
        // RISC-V is built where it builds; the boards Hearth promises must.
        ["riscv64gc-unknown-linux-musl"] => Ok(()),
        _ => Err(format!("these targets did not build: {}", failures.join(", "))),
    }
}

fn known() -> String {
    TARGETS.iter().map(|(t, _)| *t).collect::<Vec<_>>().join(", ")
}

pub fn arch_of(target: &str) -> Option<&'static str> {
    TARGETS.iter().find(|(t, _)| *t == target).map(|(_, a)| *a)
}

fn board(arch: &str) -> &'static str {
    match arch {
        "x86_64" => "x86 mini PCs, servers",
        "aarch64" => "Raspberry Pi 3/4/5 (64-bit OS)",
        "armv7l" => "Raspberry Pi 2/3/4 (32-bit OS)",
        "armv6l" => "Raspberry Pi Zero, Pi 1",
        _ => "RISC-V boards",
    }
}

fn bytes(n: u64) -> String {
    format!("{:.2} MiB ({n} bytes)", n as f64 / 1_048_576.0)
}

/// Installs zig (PyPI `ziglang`) and cargo-zigbuild if they are missing.
fn ensure_zigbuild() -> Result<(), String> {
    let zig_ok = Command::new("python3").args(["-m", "ziglang", "version"]).output().is_ok_and(|o| o.status.success());
    if !zig_ok && Command::new("zig").arg("version").output().is_err() {
        println!("== installing zig (pip install ziglang)");
        output(Command::new("python3").args(["-m", "pip", "install", "--quiet", "ziglang"]))?;
    }
    if Command::new("cargo-zigbuild").arg("--version").output().is_err() {
        println!("== installing cargo-zigbuild");
        output(Command::new(cargo()).args(["install", "--locked", "--quiet", "cargo-zigbuild"]))?;
    }
    Ok(())
}

fn cargo() -> String {
    std::env::var("CARGO").unwrap_or_else(|_| "cargo".into())
}

/// Builds the agent (its size-tuned profile) and the collector for `target`; returns both paths.
pub fn build(target: &str) -> Result<[PathBuf; 2], String> {
    let agent = build_agent(target)?;
    zigbuild(target, "hearth-collector", "release")?;
    Ok([agent, util::root().join("target").join(target).join("release/hearth-collector")])
}

/// Builds the agent alone for `target`; returns its path.
pub fn build_agent(target: &str) -> Result<PathBuf, String> {
    ensure_zigbuild()?;
    zigbuild(target, "hearth-agent", "agent")?;
    Ok(util::root().join("target").join(target).join("agent/hearth-agent"))
}

fn zigbuild(target: &str, package: &str, profile: &str) -> Result<String, String> {
    let prebuilt = Command::new("rustup").args(["target", "add", target]).output().is_ok_and(|o| o.status.success());
    let mut command = Command::new(cargo());
    command.current_dir(util::root()).args(["zigbuild", "-p", package, "--profile", profile, "--target", target]);
    if !prebuilt {
        // No prebuilt std for this target here: build it from source (needs rust-src),
        // and let zig supply musl's startup files, which a prebuilt std would have carried.
        let _ = Command::new("rustup").args(["component", "add", "rust-src"]).output();
        command.args(["-Z", "build-std=std,panic_abort"]).env("RUSTC_BOOTSTRAP", "1");
        let flags = format!("CARGO_TARGET_{}_RUSTFLAGS", target.to_uppercase().replace('-', "_"));
        command.env(flags, "-C link-self-contained=no");
    }
    output(&mut command)
}

/// `target/dist/NAME-VERSION-TARGET.tar.gz` holding the binary.
fn package(dist: &Path, name: &str, bin: &Path, version: &str, target: &str) -> Result<(), String> {
    let stage = dist.join("stage").join(format!("{name}-{version}-{target}"));
    std::fs::create_dir_all(&stage).map_err(|e| e.to_string())?;
    std::fs::copy(bin, stage.join(name)).map_err(|e| e.to_string())?;
    let archive = dist.join(format!("{name}-{version}-{target}.tar.gz"));
    output(
        Command::new("tar")
            .arg("-czf")
            .arg(&archive)
            .arg("-C")
            .arg(stage.parent().unwrap())
            .arg(stage.file_name().unwrap()),
    )?;
    Ok(())
}

/// SHA256SUMS over every archive and served binary, in `sha256sum -c` form.
fn write_sums(dist: &Path) -> Result<(), String> {
    let mut files = Vec::new();
    collect(dist, dist, &mut files);
    files.sort();
    let mut sums = String::new();
    for relative in files {
        let data = std::fs::read(dist.join(&relative)).map_err(|e| e.to_string())?;
        let digest = Sha256::digest(&data);
        let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
        let _ = writeln!(sums, "{hex}  {relative}");
    }
    std::fs::write(dist.join("SHA256SUMS"), sums).map_err(|e| e.to_string())
}

fn collect(root: &Path, dir: &Path, out: &mut Vec<String>) {
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        let relative = path.strip_prefix(root).unwrap().display().to_string();
        if relative.starts_with("stage") {
            continue;
        }
        if path.is_dir() {
            collect(root, &path, out);
        } else if relative.ends_with(".tar.gz") || relative.starts_with("agent/") {
            out.push(relative);
        }
    }
}
