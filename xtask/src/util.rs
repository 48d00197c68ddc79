//! What the tasks share: the workspace root, cargo builds, and a collector to talk to.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_owned()
}

/// Builds both binaries with `cargo build` and the given extra arguments.
pub fn build(extra: &[&str]) -> Result<(), String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        .current_dir(root())
        .args(["build", "-p", "hearth-agent", "-p", "hearth-collector"])
        .args(extra)
        .status()
        .map_err(|e| format!("cannot run cargo: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("cargo build failed ({status})"))
    }
}

/// Builds the agent as it ships (the `agent` profile) for `target`, or for this machine
/// when `target` is `None`, and returns the binary's path. A musl target needs `musl-gcc`
/// for ring's C code.
pub fn build_agent_for(target: Option<&str>) -> Result<PathBuf, String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut command = Command::new(cargo);
    command.current_dir(root()).args(["build", "--profile", "agent", "-p", "hearth-agent"]);
    let Some(target) = target else {
        output(&mut command)?;
        return Ok(root().join("target/agent/hearth-agent"));
    };
    let installed = output(Command::new("rustup").args(["target", "list", "--installed"]))?;
    if !installed.lines().any(|t| t == target) {
        return Err(format!("the target is not installed (rustup target add {target})"));
    }
    command.args(["--target", target]);
    if target.ends_with("-musl") {
        let cc = format!("CC_{}", target.replace('-', "_"));
        if std::env::var_os(&cc).is_none() {
            if !Command::new("musl-gcc").arg("--version").output().is_ok_and(|o| o.status.success()) {
                return Err("musl-gcc is missing (apt-get install musl-tools)".into());
            }
            command.env(cc, "musl-gcc");
        }
    }
    output(&mut command)?;
    Ok(root().join("target").join(target).join("agent/hearth-agent"))
}

/// A collector started by a task; killed when dropped.
pub struct Collector {
    pub child: Child,
    pub url: String,
    pub bin: PathBuf,
    pub data_dir: PathBuf,
}

impl Collector {
    /// Starts `bin serve` on 127.0.0.1 port 0 in its own process group, so a Ctrl-C
    /// at the terminal reaches the task first and the task decides when it stops.
    pub fn start(bin: &Path, data_dir: &Path, args: &[&str]) -> Result<Collector, String> {
        Collector::start_with_env(bin, data_dir, args, &[])
    }

    /// Like `start`, with these environment variables set too.
    pub fn start_with_env(
        bin: &Path,
        data_dir: &Path,
        args: &[&str],
        env: &[(&str, &Path)],
    ) -> Result<Collector, String> {
        use std::os::unix::process::CommandExt;
        let mut child = Command::new(bin)
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(data_dir)
            .args(args)
            .envs(env.iter().copied())
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .process_group(0)
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", bin.display()))?;
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).map_err(|e| e.to_string())?;
        let url = line
            .trim()
            .strip_prefix("listening on ")
            .ok_or_else(|| format!("the collector did not start (it said {line:?})"))?
            .to_owned();
        Ok(Collector { child, url, bin: bin.to_owned(), data_dir: data_dir.to_owned() })
    }

    pub fn addr(&self) -> std::net::SocketAddr {
        self.url.trim_start_matches("http://").parse().unwrap()
    }

    /// Runs an administration command on the collector's data directory; returns stdout.
    pub fn admin(&self, args: &[&str]) -> Result<String, String> {
        admin(&self.bin, &self.data_dir, args, "")
    }

    /// The collector's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

/// Runs `bin ARGS --data-dir DIR` with `input` on its stdin (a password, say); returns stdout.
pub fn admin(bin: &Path, data_dir: &Path, args: &[&str], input: &str) -> Result<String, String> {
    use std::io::Write;
    let mut child = Command::new(bin)
        .args(args)
        .arg("--data-dir")
        .arg(data_dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run {}: {e}", bin.display()))?;
    let _ = child.stdin.take().expect("piped").write_all(input.as_bytes());
    let out = child.wait_with_output().map_err(|e| e.to_string())?;
    if !out.status.success() {
        return Err(format!("hearth-collector {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr)));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

impl Drop for Collector {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs a command to completion; its stdout, or an error naming it.
pub fn output(command: &mut Command) -> Result<String, String> {
    let out = command.output().map_err(|e| format!("cannot run {:?}: {e}", command.get_program()))?;
    if !out.status.success() {
        return Err(format!("{:?} failed: {}", command.get_program(), String::from_utf8_lossy(&out.stderr)));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// A memory cgroup holding one process, limited as the shipped unit limits the
/// collector (`MemoryMax=`), where this machine lets one be made (cgroup v2 or v1).
pub struct MemoryLimit {
    dir: PathBuf,
    v2: bool,
}

impl MemoryLimit {
    /// The unit's `MemoryMax=`, in bytes.
    pub fn of_unit() -> Result<u64, String> {
        let unit =
            std::fs::read_to_string(root().join("systemd/hearth-collector.service")).map_err(|e| e.to_string())?;
        let value = unit.lines().find_map(|l| l.strip_prefix("MemoryMax=")).ok_or("the unit sets no MemoryMax=")?;
        let (digits, unit) =
            value.trim().split_at(value.trim().find(|c: char| !c.is_ascii_digit()).unwrap_or(value.trim().len()));
        let scale = match unit {
            "" => 1,
            "K" => 1 << 10,
            "M" => 1 << 20,
            "G" => 1 << 30,
            other => return Err(format!("MemoryMax={value}: unknown unit {other}")),
        };
        Ok(digits.parse::<u64>().map_err(|e| e.to_string())? * scale)
    }

    /// Moves `pid` into a new cgroup limited to `bytes`.
    pub fn confine(pid: u32, bytes: u64) -> Result<MemoryLimit, String> {
        let (base, v2) = if Path::new("/sys/fs/cgroup/cgroup.controllers").exists() {
            (PathBuf::from("/sys/fs/cgroup"), true)
        } else {
            (PathBuf::from("/sys/fs/cgroup/memory"), false)
        };
        let dir = base.join(format!("hearth-bench-{pid}"));
        std::fs::create_dir_all(&dir).map_err(|e| format!("cannot make the cgroup {}: {e}", dir.display()))?;
        let limit = if v2 { "memory.max" } else { "memory.limit_in_bytes" };
        let write = |file: &str, value: String| {
            std::fs::write(dir.join(file), value).map_err(|e| format!("cannot write {}/{file}: {e}", dir.display()))
        };
        write(limit, bytes.to_string())?;
        write("cgroup.procs", pid.to_string())?;
        Ok(MemoryLimit { dir, v2 })
    }

    /// The most memory the cgroup held (RSS and page cache together), in bytes.
    pub fn peak_bytes(&self) -> Option<u64> {
        let file = if self.v2 { "memory.peak" } else { "memory.max_usage_in_bytes" };
        std::fs::read_to_string(self.dir.join(file)).ok()?.trim().parse().ok()
    }

    /// How often the cgroup reached its limit (the kernel reclaimed, or killed).
    pub fn hits(&self) -> u64 {
        let (file, key) = if self.v2 { ("memory.events", Some("max ")) } else { ("memory.failcnt", None) };
        let text = std::fs::read_to_string(self.dir.join(file)).unwrap_or_default();
        let value = match key {
            Some(key) => text.lines().find_map(|l| l.strip_prefix(key)).unwrap_or("0"),
            None => text.trim(),
        };
        value.trim().parse().unwrap_or(0)
    }
}

impl Drop for MemoryLimit {
    fn drop(&mut self) {
        // Empty once its process has exited; a cgroup with no process can be removed.
        let _ = std::fs::remove_dir(&self.dir);
    }
}
