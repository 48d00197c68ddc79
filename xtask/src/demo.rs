//! `cargo xtask demo`: a collector and an agent on this machine, and the node table as it changes.

use crate::util::{self, output, Collector};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_interrupt(_: libc::c_int) {
    STOP.store(true, Ordering::SeqCst);
}

pub fn run(args: &[&str]) -> Result<(), String> {
    let seconds = match args {
        [] => None,
        ["--seconds", n] => Some(n.parse::<u64>().map_err(|_| format!("--seconds takes a number, not `{n}`"))?),
        _ => return Err("usage: cargo xtask demo [--seconds N]".into()),
    };
    util::build(&[])?;
    let root = util::root();
    let bin = root.join("target/debug");
    let demo = root.join("target/demo");
    let _ = std::fs::remove_dir_all(&demo);
    std::fs::create_dir_all(&demo).map_err(|e| format!("cannot create {}: {e}", demo.display()))?;

    let collector = Collector::start(&bin.join("hearth-collector"), &demo.join("collector"), &[])?;
    println!("collector: {} (data in {})", collector.url, demo.join("collector").display());
    add_demo_user(&bin, &demo.join("collector"))?;
    println!("dashboard: {}/ (log in as demo, password {DEMO_PASSWORD})", collector.url);
    let token = collector.admin(&["token", "create", "--name", "demo"])?;
    let agent_env = demo.join("agent.env");
    std::fs::write(&agent_env, "# The demo agent's settings.\nHEARTH_CHECK_SERVICES=\n").map_err(|e| e.to_string())?;
    let agent = |args: &[&str]| {
        let mut command = Command::new(bin.join("hearth-agent"));
        command
            .args(["--state-dir", demo.join("agent").to_str().unwrap(), "--config", agent_env.to_str().unwrap()])
            .args(["--collector", &collector.url])
            .args(args);
        command
    };
    print!("{}", output(agent(&["init", "--name", "demo-node"]).env("RUST_LOG", "warn"))?);
    print!("{}", output(agent(&["enroll", "--token", token.trim()]).env("RUST_LOG", "warn"))?);

    // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
    unsafe { libc::signal(libc::SIGINT, on_interrupt as *const () as libc::sighandler_t) };
    let mut child = agent(&["run", "--interval", "5"]).stdout(Stdio::null()).spawn().map_err(|e| e.to_string())?;
    println!("agent running every 5 s; Ctrl-C stops it all\n");

    let deadline = seconds.map(|s| Instant::now() + Duration::from_secs(s));
    let mut last = String::new();
    while !STOP.load(Ordering::SeqCst) && deadline.is_none_or(|d| Instant::now() < d) {
        last = show_changes(&collector, &last)?;
        std::thread::sleep(Duration::from_millis(500));
    }
    // Ctrl-C reached the agent too; stop it ourselves when the clock ran out.
    // SAFETY: kill(2) on our own child, which has not been reaped.
    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
    let status = child.wait().map_err(|e| e.to_string())?;
    show_changes(&collector, &last)?;
    println!("\nagent stopped ({status}); stopping the collector");
    Ok(())
}

const DEMO_PASSWORD: &str = "hearth-demo";

/// An admin for the dashboard; the password goes in on stdin, as an operator would pipe it.
fn add_demo_user(bin: &std::path::Path, data_dir: &std::path::Path) -> Result<(), String> {
    let args = ["user", "add", "demo", "--role", "admin"];
    util::admin(&bin.join("hearth-collector"), data_dir, &args, &format!("{DEMO_PASSWORD}\n")).map(drop)
}

/// Prints the node table when a node's status or latest heartbeat changed; returns the new state.
fn show_changes(collector: &Collector, last: &str) -> Result<String, String> {
    let json = collector.admin(&["nodes", "--json"])?;
    let nodes: Vec<miniserde::json::Object> = miniserde::json::from_str(json.trim()).map_err(|_| "bad node list")?;
    let state: String =
        nodes.iter().map(|n| format!("{:?}{:?}{:?};", n.get("status"), n.get("seq"), n.get("state"))).collect();
    if state != last {
        println!("{}", collector.admin(&["nodes"])?);
    }
    Ok(state)
}
