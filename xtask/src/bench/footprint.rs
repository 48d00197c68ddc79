//! The agent's footprint: binary size per target, and peak RSS and CPU time for one heartbeat.

use crate::util::{self, Collector};

#[path = "../../../agent/tests/it/edge.rs"]
mod edge;
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
    let fixtures = root.join("agent/tests/it/fixtures");
    let https = format!("https://localhost:{}", edge::start(&fixtures, collector.addr())?.port());
    let mut text = String::from(
        "## Agent footprint\n\nThe agent as it ships (`--profile agent`: LTO, opt-level z, panic = abort). Peak RSS is the `VmHWM` of one `hearth-agent once` process as it exits \
         (start, facts, checks, one heartbeat); CPU time is its user + system time. Over HTTP it talks to the collector on loopback; \
         over HTTPS to a rustls terminator in front of it (agent/tests/it/edge.rs), trusting the test CA alone through `SSL_CERT_FILE`, \
         so the handshake is measured but not the reading of a full system CA bundle.\n\n\
         | build | binary size | peak RSS, HTTP | CPU, HTTP | peak RSS, HTTPS | CPU per HTTPS heartbeat |\n|---|---:|---:|---:|---:|---:|\n",
    );
    for (i, (name, agent)) in builds.iter().enumerate() {
        let size = std::fs::metadata(agent).map_err(|e| format!("{}: {e}", agent.display()))?.len();
        let state = out.join(format!("footprint-agent-{i}"));
        let config = out.join("footprint-agent.env");
        std::fs::write(&config, "HEARTH_CHECK_SERVICES=cloudflared\n").map_err(|e| e.to_string())?;
        let token = collector.admin(&["token", "create"])?;
        let agent_command = |collector_url: &str, args: &[&str]| {
            let mut command = Command::new(agent);
            command
                .args([
                    "--state-dir",
                    state.to_str().unwrap(),
                    "--config",
                    config.to_str().unwrap(),
                    "--collector",
                    collector_url,
                ])
                .args(args)
                .env("RUST_LOG", "warn");
            command
        };
        util::output(&mut agent_command(&collector.url, &["enroll", "--token", token.trim()]))?;
        let (max_rss_kib, cpu) = measure(agent_command(&collector.url, &["once"]))?;
        let mut over_tls = agent_command(&https, &["once"]);
        over_tls.env("SSL_CERT_FILE", fixtures.join("ca.pem")).env_remove("HTTPS_PROXY").env_remove("https_proxy");
        let (tls_rss_kib, tls_cpu) = measure(over_tls)?;
        let _ = writeln!(
            text,
            "| {name} | {:.2} MiB ({size} bytes) | {:.2} MiB | {:.1} ms | {:.2} MiB | {:.1} ms |",
            size as f64 / 1_048_576.0,
            max_rss_kib as f64 / 1024.0,
            cpu.as_secs_f64() * 1000.0,
            tls_rss_kib as f64 / 1024.0,
            tls_cpu.as_secs_f64() * 1000.0
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
                "| {target} (static, from dist) | {:.2} MiB ({size} bytes) | n/a under qemu | | | |",
                size as f64 / 1_048_576.0
            );
        }
    }
    // The daemon, as it runs for months: CPU per heartbeat without the process start.
    if let Some((name, agent)) = builds.last() {
        text.push_str(&daemon_row(name, agent, &out.join("footprint-daemon"), &collector, &https, &fixtures)?);
    }
    Ok(text)
}

/// `hearth-agent run --interval 1` over HTTPS for `DAEMON_SECS`: CPU time per heartbeat,
/// resident memory at the end and at its peak.
fn daemon_row(
    name: &str,
    agent: &Path,
    state: &Path,
    collector: &Collector,
    https: &str,
    fixtures: &Path,
) -> Result<String, String> {
    const DAEMON_SECS: u64 = 12;
    let token = collector.admin(&["token", "create"])?;
    let config = state.with_extension("env");
    std::fs::write(&config, "HEARTH_CHECK_SERVICES=cloudflared\n").map_err(|e| e.to_string())?;
    let command = |args: &[&str]| {
        let mut command = Command::new(agent);
        command
            .arg("--state-dir")
            .arg(state)
            .arg("--config")
            .arg(&config)
            .args(["--collector", https])
            .args(args)
            .env("SSL_CERT_FILE", fixtures.join("ca.pem"))
            .env_remove("HTTPS_PROXY")
            .env_remove("https_proxy")
            .env("RUST_LOG", "warn");
        command
    };
    util::output(&mut command(&["enroll", "--token", token.trim()]))?;
    let mut child = command(&["run", "--interval", "1"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .map_err(|e| e.to_string())?;
    // After the first heartbeat (the random first delay is at most one interval).
    std::thread::sleep(Duration::from_secs(2));
    let start = super::Usage::of(child.id());
    std::thread::sleep(Duration::from_secs(DAEMON_SECS));
    let end = super::Usage::of(child.id());
    let _ = child.kill();
    let _ = child.wait();
    let per_beat = (end.cpu_secs - start.cpu_secs) / DAEMON_SECS as f64 * 1000.0;
    Ok(format!(
        "\n`hearth-agent run --interval 1` ({name}) over HTTPS for {DAEMON_SECS} s, after its first heartbeat: \
         **{per_beat:.2} ms of CPU per heartbeat** (a new TLS connection each), RSS {:.2} MiB, peak {:.2} MiB. \
         At the default 30 s interval that is {:.4} % of one core.\n\n",
        super::mib(end.rss_kib),
        super::mib(end.peak_rss_kib),
        per_beat / 30_000.0 * 100.0
    ))
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
