//! Helpers to run the agent, and the one-shot commands.

use crate::support::*;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The agent under test: this build, or, for `cargo xtask e2e-arm`, a cross-built one
/// (`HEARTH_AGENT_BIN`) run under an emulator (`HEARTH_AGENT_RUNNER`, e.g. `qemu-aarch64-static`).
pub fn agent_command() -> Command {
    let bin = std::env::var("HEARTH_AGENT_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_hearth-agent").into());
    match std::env::var("HEARTH_AGENT_RUNNER") {
        Ok(runner) => {
            let mut words = runner.split_whitespace();
            let mut command = Command::new(words.next().expect("HEARTH_AGENT_RUNNER names a program"));
            command.args(words).arg(bin);
            command
        }
        Err(_) => Command::new(bin),
    }
}

/// What the agent under test reports as `arch` (`uname -m`).
fn expected_machine() -> String {
    std::env::var("HEARTH_AGENT_MACHINE").unwrap_or_else(|_| std::env::consts::ARCH.into())
}

/// An agent with its own state directory and no config file of the host's.
pub struct Agent {
    pub state: tempfile::TempDir,
    pub collector_url: String,
}

impl Agent {
    pub fn new(collector_url: &str) -> Agent {
        Agent { state: tempfile::tempdir().unwrap(), collector_url: collector_url.to_owned() }
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut command = agent_command();
        command
            .args(["--state-dir", self.state.path().to_str().unwrap(), "--collector", &self.collector_url])
            .args(["--config", self.empty_config().to_str().unwrap()])
            .args(args)
            .env_remove("RUST_LOG")
            .env("HEARTH_CHECK_SERVICES", "");
        command
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().unwrap()
    }

    /// Runs a command that must succeed; returns its stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(out.status.success(), "{args:?} failed ({}): {}", out.status, String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    }

    fn empty_config(&self) -> PathBuf {
        let path = self.state.path().join("test-agent.env");
        if !path.exists() {
            std::fs::write(&path, "# empty: the host's /etc/hearth/agent.env must not leak into tests\n").unwrap();
        }
        path
    }

    pub fn node_id(&self) -> String {
        std::fs::read_to_string(self.state.path().join("node_id")).unwrap().trim().to_owned()
    }
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

pub fn node_view(collector: &Collector, node: &str) -> Response {
    collector.get(&format!("/api/nodes/{node}"), &collector.api_key())
}

#[test]
fn init_enroll_once_reports_the_node_with_its_facts() {
    let collector = Collector::start(&[]);
    let agent = Agent::new(&format!("http://{}", collector.addr));
    let out = agent.ok(&["init", "--name", "garage-pi"]);
    assert!(out.contains(&agent.node_id()), "{out}");
    let token = collector.enroll_token();
    let out = agent.ok(&["enroll", "--token", &token]);
    assert!(out.contains(&agent.node_id()), "{out}");
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(agent.state.path().join("token")).unwrap().permissions(),
    );
    assert_eq!(mode & 0o777, 0o600);
    assert_eq!(node_view(&collector, &agent.node_id()).field("status"), "pending");

    agent.ok(&["once"]);
    let view = node_view(&collector, &agent.node_id());
    assert_eq!(view.field("status"), "online");
    assert_eq!(view.field("name"), "garage-pi");
    assert_eq!(view.field("arch"), expected_machine());
    for fact in ["cpu_cores", "memory_mb", "disk_gb", "load", "uptime_secs", "boot_id", "checks", "kernel"] {
        assert!(
            !matches!(view.json().get(fact), None | Some(miniserde::json::Value::Null)),
            "{fact} missing: {}",
            view.body
        );
    }

    // A used token is refused with a reason, and nothing is overwritten.
    let again = agent.run(&["enroll", "--token", &token]);
    assert_eq!(again.status.code(), Some(1));
    assert!(stderr(&again).contains("token_used"), "{}", stderr(&again));
    agent.ok(&["once"]);
}

#[test]
fn check_prints_a_complete_heartbeat_and_sends_nothing() {
    let receiver = Receiver::start(); // records any request that would reach a collector
    let agent = Agent::new(&format!("http://{}", receiver.addr));
    let out = agent.ok(&["check"]);
    assert!(receiver.hits().is_empty(), "check sent {:?}", receiver.hits());
    let heartbeat = hearth_wire::Heartbeat::from_json(out.trim()).unwrap();
    assert_eq!(heartbeat.vaultmesh_root, "/");
    assert!(heartbeat.seq.is_some() && heartbeat.load.is_some());
}

/// The default `cloudflared` check, on a host without the unit or without systemd (as most
/// containers and CI runners are): left out, not failing, since a failing check paged on a
/// node's very first heartbeat. A service the operator names is still a failure when missing.
#[test]
fn the_default_service_check_is_left_out_where_the_host_lacks_it() {
    let agent = Agent::new("http://127.0.0.1:9");
    let check = |services: Option<&str>| {
        let mut command = agent.command(&["check"]);
        match services {
            Some(list) => command.env("HEARTH_CHECK_SERVICES", list),
            None => command.env_remove("HEARTH_CHECK_SERVICES"),
        };
        let out = command.output().unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
        hearth_wire::Heartbeat::from_json(String::from_utf8(out.stdout).unwrap().trim()).unwrap()
    };
    let lacking =
        |c: &&hearth_wire::Check| c.detail.contains("systemd is not running") || c.detail.contains("no such unit");

    let heartbeat = check(None);
    let checks = heartbeat.checks.unwrap();
    assert!(!checks.iter().any(|c| lacking(&c)), "the default check failed for a service this host lacks: {checks:#?}");

    let heartbeat = check(Some("hearth-test-no-such-unit"));
    let checks = heartbeat.checks.unwrap();
    let named = checks.iter().find(|c| c.name == "hearth-test-no-such-unit");
    assert!(named.is_some_and(|c| !c.ok && lacking(&c)), "{checks:#?}");
    assert!(!heartbeat.services_ok);
}

#[test]
fn config_show_says_whether_a_token_is_stored_but_never_shows_it() {
    let collector = Collector::start(&[]);
    let agent = Agent::new(&format!("http://{}", collector.addr));
    assert!(agent.ok(&["config", "show"]).contains("token stored:   no"));
    agent.ok(&["enroll", "--token", &collector.enroll_token()]);
    let token = std::fs::read_to_string(agent.state.path().join("token")).unwrap();
    let shown = agent.ok(&["config", "show"]);
    assert!(shown.contains("token stored:   yes") && shown.contains(&agent.node_id()), "{shown}");
    assert!(!shown.contains(token.trim()), "the token leaked into config show");
}

#[test]
fn logout_stops_reporting_until_the_next_enrolment() {
    let collector = Collector::start(&[]);
    let agent = Agent::new(&format!("http://{}", collector.addr));
    agent.ok(&["enroll", "--token", &collector.enroll_token()]);
    agent.ok(&["logout"]);
    assert!(!agent.state.path().join("token").exists());
    let run = agent.run(&["run"]);
    assert!(run.status.success(), "run after logout should exit quietly: {}", stderr(&run));
    assert!(stderr(&run).contains("reporting is off"), "{}", stderr(&run));
    assert_eq!(agent.run(&["once"]).status.code(), Some(2));
    // The node keeps its id, so enrolling it again takes a token bound to it.
    let rebind = collector.admin(&["token", "create", "--node", &agent.node_id()]);
    agent.ok(&["enroll", "--token", &rebind]);
    agent.ok(&["once"]);
}

/// The node id here is written as `/etc/machine-id` holds it (32 bare hex digits), as V1
/// suggests deriving it from there; it names the node whose UUID those digits are.
#[test]
fn an_existing_v1_env_file_works_unchanged() {
    let collector = Collector::start(&["--allow-anonymous"]);
    let agent = Agent::new("http://unused.invalid");
    let node = new_node_id();
    let machine_id = node.replace('-', "");
    let root = tempfile::tempdir().unwrap();
    let env_file = agent.state.path().join("vaultmesh-agent.env");
    std::fs::write(
        &env_file,
        format!(
            "VAULTMESH_NODE_ID={machine_id}\nVAULTMESH_CC_URL=http://{}\nVAULTMESH_OS_PROFILE=ArchVault\nVAULTMESH_ROOT={}\nVAULTMESH_HEARTBEAT_SECS=15\nRUST_LOG=info\n",
            collector.addr,
            root.path().display()
        ),
    )
    .unwrap();
    let out = agent_command()
        .args(["once", "--config", env_file.to_str().unwrap(), "--state-dir", agent.state.path().to_str().unwrap()])
        .env("HEARTH_CHECK_SERVICES", "")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let view = node_view(&collector, &node);
    assert_eq!(view.status, 200, "{}", view.body);
    assert_eq!(view.field("os_profile"), "ArchVault");
    assert_eq!(view.field("vaultmesh_root"), root.path().display().to_string());
    assert!(view.body.contains("\"services_ok\":true") && view.body.contains("\"interval_secs\":15"), "{}", view.body);
}

/// A configured node id may be a UUID of any version, as the collector takes; the agent
/// enrols under it, keeps it, and reports with it.
#[test]
fn a_configured_node_id_of_another_uuid_version_enrols_and_reports() {
    let collector = Collector::start(&[]);
    let agent = Agent::new(&format!("http://{}", collector.addr));
    let node = "6ba7b810-9dad-11d1-80b4-00c04fd430c8"; // version 1
    let enrol = agent.command(&["enroll", "--token", &collector.enroll_token()]).env("HEARTH_NODE_ID", node).output();
    let enrol = enrol.unwrap();
    assert!(enrol.status.success(), "{}", stderr(&enrol));
    assert_eq!(agent.node_id(), node);
    let once = agent.command(&["once"]).env("HEARTH_NODE_ID", node).output().unwrap();
    assert!(once.status.success(), "{}", stderr(&once));
    let once = agent.run(&["once"]);
    assert!(once.status.success(), "with the id it saved: {}", stderr(&once));
    assert_eq!(node_view(&collector, node).field("status"), "online");
}

/// A token file that holds no token (a careless hand, a bad disk) is mended by enrolling,
/// which is what the agent's error about it says to do.
#[test]
fn enrolling_mends_a_token_file_that_holds_no_token() {
    let collector = Collector::start(&[]);
    let agent = Agent::new(&format!("http://{}", collector.addr));
    std::fs::write(state_path(&agent, "token"), "not a token\n").unwrap();
    let out = agent.run(&["once"]);
    assert!(!out.status.success() && stderr(&out).contains("enrol again"), "{}", stderr(&out));
    agent.ok(&["enroll", "--token", &collector.enroll_token()]);
    agent.ok(&["once"]);
}

#[test]
fn mistakes_are_named_with_how_to_fix_them() {
    let agent = Agent::new("http://127.0.0.1:9");
    let bad = agent.state.path().join("bad.env");
    std::fs::write(&bad, "HEARTH_NAME=ok\nthis is not a setting\n").unwrap();
    let out = agent_command().args(["check", "--config", bad.to_str().unwrap()]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("bad.env: line 2"), "{}", stderr(&out));

    let out = agent.run(&["enroll"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("--token"), "{}", stderr(&out));

    let out = agent.run(&["enroll", "--token", "hen_x"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("check the collector URL"), "{}", stderr(&out));

    let out = agent_command().args(["run", "--interval", "0"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("from 1 to"), "{}", stderr(&out));

    let out = agent.run(&["fly"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("--help"), "{}", stderr(&out));
}

pub fn state_path(agent: &Agent, name: &str) -> PathBuf {
    Path::new(agent.state.path()).join(name)
}
