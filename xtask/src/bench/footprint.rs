//! The agent's footprint: binary size per target, and peak RSS and CPU time for one heartbeat.

use crate::util::{self, Collector};
use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

pub fn report(out: &Path) -> Result<String, String> {
    let root = util::root();
    let collector = Collector::start(&root.join("target/release/hearth-collector"), &out.join("footprint"), &[])?;
    let mut builds = vec![(format!("{} (host, dynamic)", std::env::consts::ARCH), util::build_agent_for(None)?)];
    let musl = format!("{}-unknown-linux-musl", std::env::consts::ARCH);
    match util::build_agent_for(Some(&musl)) {
        Ok(bin) => builds.push((format!("{musl} (static)"), bin)),
        Err(why) => println!("skipping {musl}: {why}"),
    }
    let mut text = String::from(
        "## Agent footprint\n\nThe agent as it ships (`--profile agent`: LTO, opt-level z, panic = abort). Peak RSS is the `VmHWM` of one `hearth-agent once` process as it exits \
         (start, facts, checks, one heartbeat over HTTP on loopback); CPU time is its user + system time.\n\n\
         | build | binary size | peak RSS | CPU time |\n|---|---:|---:|---:|\n",
    );
    for (i, (name, agent)) in builds.iter().enumerate() {
        let size = std::fs::metadata(agent).map_err(|e| format!("{}: {e}", agent.display()))?.len();
        let state = out.join(format!("footprint-agent-{i}"));
        let config = out.join("footprint-agent.env");
        std::fs::write(&config, "HEARTH_CHECK_SERVICES=cloudflared\n").map_err(|e| e.to_string())?;
        let token = collector.admin(&["token", "create"])?;
        let agent_command = |args: &[&str]| {
            let mut command = Command::new(agent);
            command
                .args([
                    "--state-dir",
                    state.to_str().unwrap(),
                    "--config",
                    config.to_str().unwrap(),
                    "--collector",
                    &collector.url,
                ])
                .args(args)
                .env("RUST_LOG", "warn");
            command
        };
        util::output(&mut agent_command(&["enroll", "--token", token.trim()]))?;
        let (max_rss_kib, cpu) = measure(agent_command(&["once"]))?;
        let _ = writeln!(
            text,
            "| {name} | {:.2} MiB ({size} bytes) | {:.2} MiB | {:.1} ms |",
            size as f64 / 1_048_576.0,
            max_rss_kib as f64 / 1024.0,
            cpu.as_secs_f64() * 1000.0
        );
    }
    // Cross-built agents (cargo xtask dist): their size; their RSS cannot be measured here,
    // since under qemu-user it would be the emulator's.
    for (target, _) in crate::dist::TARGETS.iter().filter(|(t, _)| *t != musl) {
        let bin = root.join("target").join(target).join("agent/hearth-agent");
        if let Ok(meta) = std::fs::metadata(&bin) {
            let size = meta.len();
            let _ = writeln!(
                text,
                "| {target} (static, from dist) | {:.2} MiB ({size} bytes) | n/a under qemu | n/a |",
                size as f64 / 1_048_576.0
            );
        }
    }
    Ok(text)
}

/// Runs `command` to completion and returns its peak RSS (KiB) and CPU time.
///
/// wait4's `ru_maxrss` will not do: exec records the replaced address space's peak too,
/// so a child forked (or vforked) from this large process would report this process's
/// pages. Instead the child runs under ptrace, stops as it exits, and its own `VmHWM`
/// is read from /proc before it goes.
fn measure(mut command: Command) -> Result<(u64, Duration), String> {
    use std::os::unix::process::CommandExt;
    // SAFETY: the closure only calls ptrace(2), which is async-signal-safe.
    unsafe {
        command.pre_exec(|| match libc::ptrace(libc::PTRACE_TRACEME, 0, 0, 0) {
            -1 => Err(std::io::Error::last_os_error()),
            _ => Ok(()),
        });
    }
    let child = command.spawn().map_err(|e| format!("cannot start {:?}: {e}", command.get_program()))?;
    let pid = child.id() as libc::pid_t;
    let mut peak_kib = None;
    let mut status = 0;
    // SAFETY: rusage is plain old data; every call below acts on our own traced child.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // The first stop is the exec; from there on, also stop at exit.
    unsafe {
        libc::waitpid(pid, &mut status, 0);
        libc::ptrace(libc::PTRACE_SETOPTIONS, pid, 0, libc::PTRACE_O_TRACEEXIT);
        libc::ptrace(libc::PTRACE_CONT, pid, 0, 0);
    }
    loop {
        // SAFETY: as above.
        if unsafe { libc::wait4(pid, &mut status, 0, &mut usage) } < 0 {
            return Err(format!("lost the measured process: {}", std::io::Error::last_os_error()));
        }
        if libc::WIFEXITED(status) || libc::WIFSIGNALED(status) {
            break;
        }
        let signal = match status >> 8 {
            event if event == libc::SIGTRAP | (libc::PTRACE_EVENT_EXIT << 8) => {
                peak_kib = vm_hwm_kib(pid);
                0
            }
            _ => libc::WSTOPSIG(status),
        };
        // SAFETY: as above; a signal that stopped the child is passed on.
        unsafe { libc::ptrace(libc::PTRACE_CONT, pid, 0, signal) };
    }
    if !libc::WIFEXITED(status) || libc::WEXITSTATUS(status) != 0 {
        return Err(format!("the measured command failed (wait status {status})"));
    }
    let time = |t: libc::timeval| Duration::from_secs(t.tv_sec as u64) + Duration::from_micros(t.tv_usec as u64);
    let peak = peak_kib.ok_or("could not read the measured process's VmHWM")?;
    Ok((peak, time(usage.ru_utime) + time(usage.ru_stime)))
}

fn vm_hwm_kib(pid: libc::pid_t) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}
