//! `cargo xtask bench`: figures measured side by side in one run, written to target/bench/report.md.
//!
//! Timings on a shared machine are noisy, so each comparison runs its cases back to back
//! under the same load and reports their ratio, not only their absolute values.

use crate::util::{self, Collector};
use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

/// Concurrent clients in the ingest benchmark, each opening a new connection per heartbeat.
const CLIENTS: usize = 32;
const NODES_PER_CLIENT: usize = 32;
const RUN: Duration = Duration::from_secs(5);

pub fn run(args: &[&str]) -> Result<(), String> {
    let (ingest, footprint) = match args {
        [] => (true, true),
        ["ingest"] => (true, false),
        ["footprint"] => (false, true),
        _ => return Err("usage: cargo xtask bench [ingest|footprint]".into()),
    };
    util::build(&["--release"])?;
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut example = Command::new(cargo);
    example.current_dir(util::root()).args(["build", "--release", "-p", "hearth-collector"]);
    util::output(example.args(["--example", "bare_tiny_http"]))?;
    let out = util::root().join("target/bench");
    let _ = std::fs::remove_dir_all(&out);
    std::fs::create_dir_all(&out).map_err(|e| e.to_string())?;
    let mut report = String::from("# Hearth benchmark report\n\n");
    let _ = writeln!(report, "Machine: {} cores; figures from one run, side by side.\n", cores());
    if ingest {
        report.push_str(&ingest_report(&out)?);
    }
    if footprint {
        report.push_str(&footprint_report(&out)?);
    }
    let path = out.join("report.md");
    std::fs::write(&path, &report).map_err(|e| e.to_string())?;
    println!("{report}\nwritten to {}", path.display());
    Ok(())
}

struct Load {
    ok: usize,
    failed: usize,
    elapsed: Duration,
    latencies_us: Vec<u64>,
}

impl Load {
    fn rate(&self) -> f64 {
        self.ok as f64 / self.elapsed.as_secs_f64()
    }

    fn percentile_ms(&self, p: f64) -> f64 {
        let i = ((self.latencies_us.len() as f64 - 1.0) * p).round() as usize;
        self.latencies_us.get(i).map_or(0.0, |us| *us as f64 / 1000.0)
    }
}

fn ingest_report(out: &Path) -> Result<String, String> {
    let release = util::root().join("target/release");
    let (collector, bare) = (release.join("hearth-collector"), release.join("examples/bare_tiny_http"));
    let modes = [
        ("group commit (--max-batch 256)", &collector, "256"),
        ("one commit per request (--max-batch 1)", &collector, "1"),
        ("bare tiny_http: read the body, answer ok (the ceiling)", &bare, ""),
    ];
    let mut loads = Vec::new();
    for (i, (_, bin, batch)) in modes.iter().enumerate() {
        let server =
            Collector::start(bin, &out.join(format!("ingest-{i}")), &["--allow-anonymous", "--max-batch", batch])?;
        load(server.addr(), Duration::from_secs(1)); // warm up: node records created, caches hot
        loads.push(load(server.addr(), RUN));
    }
    let mut text = format!(
        "## Durable ingest\n\n{CLIENTS} clients, each posting V1 heartbeats for {NODES_PER_CLIENT} nodes on a new connection per request, \
         for {} s per mode; every answer is sent after its fsync'd commit.\n\n\
         | mode | heartbeats/s | p50 ms | p99 ms | max ms | failed |\n|---|---:|---:|---:|---:|---:|\n",
        RUN.as_secs()
    );
    for ((name, _, _), load) in modes.iter().zip(&loads) {
        let max = load.latencies_us.last().copied().unwrap_or(0) as f64 / 1000.0;
        let _ = writeln!(
            text,
            "| {name} | {:.0} | {:.2} | {:.2} | {max:.2} | {} |",
            load.rate(),
            load.percentile_ms(0.5),
            load.percentile_ms(0.99),
            load.failed
        );
    }
    let ceiling = loads[0].rate() / loads[2].rate().max(1.0);
    let _ = writeln!(
        text,
        "\nGroup commit / one commit per request: **{:.1}×**. \
         Durable ingest / bare tiny_http: **{ceiling:.2}×** (target ≥ 0.8×: {}).\n",
        loads[0].rate() / loads[1].rate().max(1.0),
        if ceiling >= 0.8 { "met" } else { "not met" }
    );
    Ok(text)
}

/// Runs the load for `duration` and gathers every latency.
fn load(addr: SocketAddr, duration: Duration) -> Load {
    let started = Instant::now();
    let workers: Vec<_> = (0..CLIENTS)
        .map(|client| {
            std::thread::spawn(move || {
                let nodes: Vec<String> = (0..NODES_PER_CLIENT).map(|n| node_id(client, n)).collect();
                let (mut ok, mut failed, mut latencies) = (0, 0, Vec::new());
                let mut i = 0;
                while started.elapsed() < duration {
                    let sent = Instant::now();
                    match post(addr, &heartbeat(&nodes[i % nodes.len()])) {
                        Some(200) => {
                            ok += 1;
                            latencies.push(sent.elapsed().as_micros() as u64);
                        }
                        _ => failed += 1,
                    }
                    i += 1;
                }
                (ok, failed, latencies)
            })
        })
        .collect();
    let mut total = Load { ok: 0, failed: 0, elapsed: Duration::ZERO, latencies_us: Vec::new() };
    for worker in workers {
        let (ok, failed, latencies) = worker.join().unwrap();
        total.ok += ok;
        total.failed += failed;
        total.latencies_us.extend(latencies);
    }
    total.elapsed = started.elapsed();
    total.latencies_us.sort_unstable();
    total
}

fn post(addr: SocketAddr, body: &str) -> Option<u16> {
    let mut stream = TcpStream::connect(addr).ok()?;
    let request = format!(
        "POST /api/agent/heartbeat HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).ok()?;
    let mut reader = BufReader::new(stream);
    let mut status = String::new();
    reader.read_line(&mut status).ok()?;
    let mut rest = Vec::new();
    reader.read_to_end(&mut rest).ok()?;
    status.split_whitespace().nth(1)?.parse().ok()
}

fn node_id(client: usize, n: usize) -> String {
    format!("{:08x}-0000-4000-8000-{:012x}", client, n)
}

fn heartbeat(node_id: &str) -> String {
    format!(
        r#"{{"node_id":"{node_id}","hostname":"bench","os_profile":"bench","cloudflare_ok":true,"services_ok":true,"vaultmesh_root":"/","timestamp":"2026-11-22T10:00:00Z","seq":1,"interval_secs":30,"load":[0.1,0.2,0.3]}}"#
    )
}

fn footprint_report(out: &Path) -> Result<String, String> {
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

fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}
