//! Fleet keys from the agent's side: Beacon's command names, and the flashed image that
//! enrols each node by itself on its first `run`.

use crate::agent::*;
use crate::support::*;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn fleet_key(data_dir: &std::path::Path, max_uses: &str) -> String {
    let out = Command::new(collector_bin())
        .args(["fleetkey", "create", "--name", "pi-image", "--max-uses", max_uses, "--data-dir"])
        .arg(data_dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

fn wait_for(what: &str, mut probe: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !probe() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn beacons_command_names_log_in_start_and_log_out() {
    let collector = Collector::start(&[]);
    let key = fleet_key(&collector.data_dir, "5");
    let url = format!("http://{}", collector.addr);
    for (i, login) in [&["login"][..], &["cloud", "login"]].into_iter().enumerate() {
        let agent = Agent::new(&url);
        let name = format!("pi-{i}");
        let mut args = login.to_vec();
        args.extend(["--api-key", &key, "--name", &name]);
        let out = agent.ok(&args);
        assert!(out.contains("enrolled"), "{out}");
        let node = agent.node_id();
        let view = node_view(&collector, &node);
        assert!(
            view.body.contains(&format!(r#""name":"{name}""#)) && view.body.contains(r#""auth":"agent_token""#),
            "{}",
            view.body
        );
        // `start` is `run`: it reports until told to stop.
        let mut child =
            agent.command(&["start", "--interval", "1"]).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
        wait_for("a heartbeat from `start`", || node_view(&collector, &node).body.contains(r#""status":"online""#));
        child.kill().unwrap();
        child.wait().unwrap();
        let out = agent.ok(&["cloud", "logout"]);
        assert!(out.contains("token forgotten"), "{out}");
        assert!(!state_path(&agent, "token").exists());
    }
    // The key is never printed by the agent.
    let agent = Agent::new(&url);
    let out = agent.run(&["login", "--api-key", "usr_not_a_key"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("401") && !stderr(&out).contains("usr_not_a_key"), "{}", stderr(&out));
}

/// One image for every Pi: an env file with the collector's URL and a fleet key. Each
/// copy's first `run` enrols by itself, waiting out a collector that is not up yet.
#[test]
fn a_flashed_image_enrols_itself_on_first_run_even_before_the_collector_is_up() {
    let temp = tempfile::tempdir().unwrap();
    let data_dir = temp.path().join("db");
    let key = fleet_key(&data_dir, "2");
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let url = format!("http://127.0.0.1:{port}");
    let pis: Vec<Agent> = (0..2).map(|_| Agent::new(&url)).collect();
    let mut children = Vec::new();
    // The image was made carelessly, with the master's node id in it: every copy holds it.
    let cloned = new_node_id();
    for pi in &pis {
        std::fs::write(pi.state.path().join("node_id"), format!("{cloned}\n")).unwrap();
    }
    for pi in &pis {
        let env_file = pi.state.path().join("test-agent.env");
        std::fs::write(&env_file, format!("HEARTH_COLLECTOR_URL={url}\nHEARTH_TOKEN={key}\n")).unwrap();
        let child =
            pi.command(&["run", "--interval", "1"]).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap();
        children.push(child);
    }
    std::thread::sleep(Duration::from_secs(2));
    for child in &mut children {
        assert!(child.try_wait().unwrap().is_none(), "an agent exited while the collector was away");
    }
    let collector = Collector::start_on(&format!("127.0.0.1:{port}"), &data_dir, &[]);
    for pi in &pis {
        wait_for("the agent to enrol", || state_path(pi, "token").exists());
        let node = pi.node_id();
        wait_for("its first heartbeat", || node_view(&collector, &node).body.contains(r#""status":"online""#));
    }
    assert_ne!(pis[0].node_id(), pis[1].node_id(), "each copy of the image is its own node");
    for child in &mut children {
        child.kill().unwrap();
        let out = stderr_of(child);
        assert!(out.contains("retrying in"), "the wait for the collector is logged: {out}");
        assert!(!out.contains(&key), "the key never reaches the log");
    }
    // A third copy of the image finds the key used up: it says so and exits, rather than retrying forever.
    let third = Agent::new(&url);
    std::fs::write(third.state.path().join("test-agent.env"), format!("HEARTH_TOKEN={key}\n")).unwrap();
    let out = third.run(&["run", "--interval", "1"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("410") && stderr(&out).contains("HEARTH_TOKEN"), "{}", stderr(&out));
}

/// What a killed child wrote to stderr.
fn stderr_of(child: &mut std::process::Child) -> String {
    child.wait().unwrap();
    let mut err = String::new();
    std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut err).unwrap();
    err
}
