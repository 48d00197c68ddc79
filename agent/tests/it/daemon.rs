//! The `run` loop: it reports, survives a missing collector, and says goodbye on SIGTERM.

use crate::agent::*;
use crate::support::*;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

fn spawn_run(agent: &Agent) -> Running {
    Running(agent.command(&["run", "--interval", "1"]).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap())
}

/// A running agent, killed when dropped: a test that fails midway leaves no agent behind.
struct Running(Child);

impl std::ops::Deref for Running {
    type Target = Child;
    fn deref(&self) -> &Child {
        &self.0
    }
}

impl std::ops::DerefMut for Running {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.0
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// Polls `probe` every 100 ms for up to 20 s.
fn wait_for(what: &str, mut probe: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !probe() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn terminate(child: &mut Child) -> (std::process::ExitStatus, String) {
    // SAFETY: kill(2) on a child we spawned and have not yet reaped.
    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let mut err = String::new();
            std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut err).unwrap();
            return (status, err);
        }
        assert!(Instant::now() < deadline, "the agent did not stop within 15 s of SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn seq(view: &Response) -> u64 {
    match view.json().get("seq") {
        Some(miniserde::json::Value::Number(miniserde::json::Number::U64(n))) => *n,
        _ => 0,
    }
}

#[test]
fn run_reports_every_interval_and_sigterm_sends_stopping() {
    let collector = Collector::start(&[]);
    let agent = Agent::new(&format!("http://{}", collector.addr));
    agent.ok(&["enroll", "--token", &collector.enroll_token()]);
    let mut child = spawn_run(&agent);
    let node = agent.node_id();
    wait_for("two heartbeats", || seq(&node_view(&collector, &node)) >= 2);
    assert_eq!(node_view(&collector, &node).field("status"), "online");
    let (status, log) = terminate(&mut child);
    assert!(status.success(), "exit: {status}; log: {log}");
    let view = node_view(&collector, &node);
    assert_eq!(view.field("status"), "stopped", "{}", view.body);
    assert_eq!(view.field("state"), "stopping");
}

#[test]
fn the_agent_outlives_a_missing_collector_and_reports_when_it_returns() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let agent = Agent::new(&format!("http://127.0.0.1:{port}"));
    agent.ok(&["init"]);
    let mut child = spawn_run(&agent);
    std::thread::sleep(Duration::from_secs(3));
    assert!(child.try_wait().unwrap().is_none(), "the agent exited while the collector was away");

    let temp = tempfile::tempdir().unwrap();
    let collector = Collector::start_on(&format!("127.0.0.1:{port}"), &temp.path().join("db"), &["--allow-anonymous"]);
    let node = agent.node_id();
    wait_for("the first heartbeat after the collector returned", || node_view(&collector, &node).status == 200);
    let (status, log) = terminate(&mut child);
    assert!(status.success(), "{log}");
    assert!(log.contains("failed") && log.contains("retrying in"), "each failure should be logged: {log}");
}

#[test]
fn a_refused_token_is_logged_with_how_to_re_enrol_and_the_agent_keeps_going() {
    let collector = Collector::start(&[]);
    let agent = Agent::new(&format!("http://{}", collector.addr));
    agent.ok(&["enroll", "--token", &collector.enroll_token()]);
    std::fs::write(state_path(&agent, "token"), "hag_revoked\n").unwrap();
    let mut child = spawn_run(&agent);
    std::thread::sleep(Duration::from_secs(3));
    assert!(child.try_wait().unwrap().is_none(), "the agent exited on a 401");
    let (status, log) = terminate(&mut child);
    assert!(status.success());
    assert!(log.contains("`hearth-agent enroll --token TOKEN`"), "it says how to enrol again: {log}");
    assert!(log.lines().all(|l| l.matches("hearth-agent enroll").count() <= 1), "said twice in a line: {log}");
    assert!(!log.contains("hag_revoked"), "the token leaked into the log: {log}");
}

/// Enrolling again while the service runs (by hand, or the installer with
/// `HEARTH_FORCE_REENROLL=1`) revokes the token the running loop holds. The loop takes the
/// new one at its first refusal, so the node never goes silent for want of a restart.
#[test]
fn a_node_enrolled_again_while_running_keeps_reporting_with_its_new_token() {
    let collector = Collector::start(&[]);
    let agent = Agent::new(&format!("http://{}", collector.addr));
    agent.ok(&["enroll", "--token", &collector.enroll_token()]);
    let old_token = std::fs::read_to_string(state_path(&agent, "token")).unwrap();
    let mut child = spawn_run(&agent);
    let node = agent.node_id();
    wait_for("a first heartbeat", || seq(&node_view(&collector, &node)) >= 1);
    agent.ok(&["enroll", "--token", &collector.enroll_token()]);
    assert_eq!(agent.node_id(), node, "it enrolled again as itself");
    assert_ne!(std::fs::read_to_string(state_path(&agent, "token")).unwrap(), old_token);
    let before = seq(&node_view(&collector, &node));
    wait_for("heartbeats with the new token", || seq(&node_view(&collector, &node)) >= before + 2);
    let (status, log) = terminate(&mut child);
    assert!(status.success(), "exit: {status}; log: {log}");
    assert!(log.contains("enrolled again since"), "{log}");
    assert!(!log.contains("re-enrol with"), "a refusal it recovered from was reported as one to act on: {log}");
    assert_eq!(node_view(&collector, &node).field("status"), "stopped", "the stopping heartbeat got through");
}

/// The collector vanishes for a long while, compressed here with a 2 s interval
/// (`HEARTH_CHAOS_SECONDS` per phase; `cargo xtask chaos` makes it longer), then answers
/// 500 for as long, then comes back. The agent keeps running with flat memory, backs off
/// with jitter and never longer than its interval, and reports within one interval of
/// the collector's return.
#[test]
fn a_long_outage_then_a_failing_collector_cost_the_agent_nothing() {
    if std::env::var_os("HEARTH_AGENT_RUNNER").is_some() {
        return; // under qemu-user, memory and timing are the emulator's
    }
    let phase =
        Duration::from_secs(std::env::var("HEARTH_CHAOS_SECONDS").ok().and_then(|s| s.parse().ok()).unwrap_or(6));
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let agent = Agent::new(&format!("http://127.0.0.1:{port}"));
    agent.ok(&["init"]);
    let mut child = Running(
        agent.command(&["run", "--interval", "2"]).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap(),
    );
    // Both ways of failing run once first, so that their code is paged in before the
    // baseline: what must stay flat is what the outage costs, not first use.
    std::thread::sleep(Duration::from_millis(1500));
    let warm_up = FailingServer::start(port);
    std::thread::sleep(Duration::from_millis(2500));
    warm_up.stop();
    let settled = proc_status_kib(child.id(), "VmRSS");
    let mut peak = settled;
    let mut watch = |child: &mut Child, for_how_long: Duration| {
        let until = Instant::now() + for_how_long;
        while Instant::now() < until {
            assert!(child.try_wait().unwrap().is_none(), "the agent exited while the collector was failing");
            peak = peak.max(proc_status_kib(child.id(), "VmRSS"));
            std::thread::sleep(Duration::from_millis(250));
        }
    };
    watch(&mut child, phase);
    let failing = FailingServer::start(port);
    watch(&mut child, phase);
    let refused = failing.stop();

    let temp = tempfile::tempdir().unwrap();
    let returned = Instant::now();
    let collector = Collector::start_on(&format!("127.0.0.1:{port}"), &temp.path().join("db"), &["--allow-anonymous"]);
    let node = agent.node_id();
    wait_for("the first heartbeat after the collector returned", || node_view(&collector, &node).status == 200);
    let back_after = returned.elapsed();
    let (status, log) = terminate(&mut child);
    assert!(status.success(), "{log}");

    let delays: Vec<f64> =
        log.lines().filter_map(|l| l.split("retrying in ").nth(1)?.strip_suffix(" s")?.parse().ok()).collect();
    eprintln!(
        "outage {} s then 500s for {} s: agent RSS {settled} KiB settled, {peak} KiB peak; {refused} heartbeats \
         answered 500; retry delays {delays:?} s; reported {:.2} s after the collector returned",
        phase.as_secs(),
        phase.as_secs(),
        back_after.as_secs_f64()
    );
    assert!(peak * 100 <= settled * 105, "the agent's RSS grew from {settled} KiB to {peak} KiB during the outage");
    assert!(refused >= 2, "the agent stopped trying while the collector answered 500");
    assert!(delays.len() >= 4, "each failure should be logged with its retry delay: {log}");
    assert!(delays.iter().all(|d| *d <= 2.0), "a retry waited longer than the interval: {delays:?}");
    let mut distinct = delays.clone();
    distinct.sort_by(f64::total_cmp);
    distinct.dedup();
    assert!(distinct.len() >= 3, "retries are not jittered: {delays:?}");
    // The last retry was drawn before the collector returned, and is at most one interval.
    assert!(back_after < Duration::from_millis(2000 + 1000), "back only {back_after:?} after the collector returned");
}

/// A collector that answers every request `500` with Hearth's error body; counts them.
struct FailingServer {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: std::thread::JoinHandle<usize>,
}

impl FailingServer {
    fn start(port: u16) -> FailingServer {
        use std::io::{BufReader, Read, Write};
        use std::sync::atomic::Ordering;
        let listener = std::net::TcpListener::bind(("127.0.0.1", port)).unwrap();
        listener.set_nonblocking(true).unwrap();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stopping = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut answered = 0;
            while !stopping.load(Ordering::Relaxed) {
                let Ok((stream, _)) = listener.accept() else {
                    std::thread::sleep(Duration::from_millis(20));
                    continue;
                };
                stream.set_nonblocking(false).unwrap();
                stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                let mut reader = BufReader::new(stream);
                let length = read_content_length(&mut reader);
                let _ = reader.by_ref().take(length).read_to_end(&mut Vec::new());
                let body = r#"{"code":"storage_error","error":"the store failed"}"#;
                let answer = format!(
                    "HTTP/1.1 500 Internal Server Error\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = reader.get_mut().write_all(answer.as_bytes());
                answered += 1;
            }
            answered
        });
        FailingServer { stop, thread }
    }

    /// Stops answering and frees the port; returns how many requests it answered.
    fn stop(self) -> usize {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.thread.join().unwrap()
    }
}

/// A collector stand-in that reads every request and never answers; keeps the bodies.
struct Mute {
    addr: std::net::SocketAddr,
    bodies: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl Mute {
    fn start() -> Mute {
        use std::io::{BufReader, Read};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let bodies: std::sync::Arc<std::sync::Mutex<Vec<String>>> = Default::default();
        let record = bodies.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let record = record.clone();
                std::thread::spawn(move || {
                    stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
                    let mut reader = BufReader::new(&stream);
                    let length = read_content_length(&mut reader);
                    let mut body = String::new();
                    let _ = reader.take(length).read_to_string(&mut body);
                    record.lock().unwrap().push(body);
                    // Hold the connection open, answering nothing, until the agent hangs up.
                    let _ = std::io::Read::read(&mut &stream, &mut [0; 1]);
                });
            }
        });
        Mute { addr, bodies }
    }

    fn bodies(&self) -> Vec<String> {
        self.bodies.lock().unwrap().clone()
    }
}

/// systemd's unit gives the agent `TimeoutStopSec=15` before SIGKILL. A heartbeat hung on a
/// collector that never answers must not hold SIGTERM up: the agent abandons it, tries the
/// `stopping` heartbeat briefly, and exits well within the limit.
#[test]
fn sigterm_during_a_hung_send_exits_well_before_systemd_kills_it() {
    let mute = Mute::start();
    let agent = Agent::new(&format!("http://{}", mute.addr));
    agent.ok(&["init"]);
    let mut child = spawn_run(&agent);
    wait_for("the first heartbeat to hang", || !mute.bodies().is_empty());
    // SAFETY: kill(2) on a child we spawned and have not yet reaped.
    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
    let deadline = Instant::now() + Duration::from_secs(12);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the agent was still running 12 s after SIGTERM; systemd kills it at 15 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut log = String::new();
    std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut log).unwrap();
    assert!(status.success(), "exit: {status}; log: {log}");
    let bodies = mute.bodies();
    assert!(
        bodies.iter().any(|b| b.contains(r#""state":"stopping""#)),
        "the stopping heartbeat was not even tried: {bodies:#?}; log: {log}"
    );
}
