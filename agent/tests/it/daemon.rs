//! The `run` loop: it reports, survives a missing collector, and says goodbye on SIGTERM.

use crate::agent::*;
use crate::support::*;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

fn spawn_run(agent: &Agent) -> Child {
    agent.command(&["run", "--interval", "1"]).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap()
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
    assert!(log.contains("re-enrol with `hearth-agent enroll"), "{log}");
    assert!(!log.contains("hag_revoked"), "the token leaked into the log: {log}");
}
