//! The one-line install: the collector's /install.sh run for real against this build of
//! the agent, under a temporary root (`HEARTH_PREFIX`) and without systemd.

use crate::agent::agent_command;
use crate::support::{send, Collector};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const PASSWORD: &str = "correct horse battery";

/// Under an emulator (`cargo xtask e2e-arm`) the served binary would not run on this
/// host; the installer is the collector's business and is tested natively.
fn native() -> bool {
    std::env::var_os("HEARTH_AGENT_RUNNER").is_none()
}

fn machine() -> String {
    let out = Command::new("uname").arg("-m").output().unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

/// An `--agent-dir` holding this build as the agent for this machine.
fn agent_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("linux").join(machine());
    std::fs::create_dir_all(&target).unwrap();
    std::fs::copy(env!("CARGO_BIN_EXE_hearth-agent"), target.join("hearth-agent")).unwrap();
    dir
}

/// Mints a token the way an operator does (logged in, over HTTP) and returns the install command.
fn install_command(c: &Collector) -> String {
    c.add_user("otto", "operator", PASSWORD);
    let cookie = c.login("otto", PASSWORD);
    let headers = [("Cookie", cookie.as_str()), ("Content-Type", "application/json")];
    let r = send(c.addr, "POST", "/api/enrollment-tokens", &headers, br#"{"name":"second-host"}"#);
    assert_eq!(r.status, 200, "{}", r.body);
    r.field("install_command")
}

/// Runs the one-liner as given, with `sudo` swapped for the test's settings.
fn run_line(line: &str, root: &Path, env: &[(&str, &str)]) -> Output {
    assert!(line.contains("| sudo "), "{line}");
    let root = root.to_str().unwrap();
    let line = line.replace("| sudo ", &format!("| HEARTH_PREFIX={root} HEARTH_NO_SYSTEMD=1 "));
    Command::new("sh").arg("-c").arg(line).envs(env.iter().copied()).output().unwrap()
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn the_one_line_install_enrols_a_host_that_then_reports() {
    if !native() {
        return;
    }
    let dir = agent_dir();
    let c = Collector::start(&["--agent-dir", dir.path().to_str().unwrap()]);
    let line = install_command(&c);
    let root = tempfile::tempdir().unwrap();
    let out = run_line(&line, root.path(), &[]);
    assert!(out.status.success(), "the installer failed: {}", stderr(&out));

    let bin: PathBuf = root.path().join("usr/local/bin/hearth-agent");
    let env_file = root.path().join("etc/hearth/agent.env");
    let state = root.path().join("var/lib/hearth-agent");
    assert_eq!(std::fs::read(&bin).unwrap(), std::fs::read(env!("CARGO_BIN_EXE_hearth-agent")).unwrap());
    assert_eq!(mode(&bin), 0o755);
    assert_eq!((mode(&env_file), mode(env_file.parent().unwrap()), mode(&state)), (0o600, 0o700, 0o700));
    let server = format!("http://{}", c.addr);
    assert!(std::fs::read_to_string(&env_file).unwrap().contains(&format!("HEARTH_COLLECTOR_URL={server}")));
    assert!(state.join("token").exists());
    assert!(stderr(&out).contains("HEARTH_CONFIG="), "it says how to run the agent without systemd: {}", stderr(&out));

    // The new node is enrolled under the name on the token, and reports once the agent runs.
    let key = c.api_key();
    let node_id = std::fs::read_to_string(state.join("node_id")).unwrap();
    let node = c.get(&format!("/api/nodes/{}", node_id.trim()), &key);
    assert_eq!((node.field("name"), node.field("status")), ("second-host".into(), "pending".into()));
    let once = Command::new(&bin)
        .arg("once")
        .env("HEARTH_CONFIG", &env_file)
        .env("HEARTH_STATE_DIR", &state)
        .output()
        .unwrap();
    assert!(once.status.success(), "{}", stderr(&once));
    assert_eq!(c.get(&format!("/api/nodes/{}", node_id.trim()), &key).field("status"), "online");

    // Again: nothing changes.
    let before = std::fs::metadata(&bin).unwrap().modified().unwrap();
    let again = run_line(&line, root.path(), &[]);
    assert!(again.status.success(), "{}", stderr(&again));
    assert!(stderr(&again).contains("already installed"), "{}", stderr(&again));
    assert_eq!(std::fs::metadata(&bin).unwrap().modified().unwrap(), before);
    // Forced, with the token already spent: a clear word about the token.
    let forced = run_line(&line, root.path(), &[("HEARTH_FORCE_REENROLL", "1")]);
    assert!(!forced.status.success());
    assert!(stderr(&forced).contains("expired or was already used: mint a fresh one"), "{}", stderr(&forced));
    // The spent token on a host without the agent: refused, and nothing left behind.
    let fresh = tempfile::tempdir().unwrap();
    let refused = run_line(&line, fresh.path(), &[]);
    assert!(!refused.status.success() && stderr(&refused).contains("already used"), "{}", stderr(&refused));
    for made in ["etc/hearth", "var/lib/hearth-agent", "usr/local/bin"] {
        assert!(!fresh.path().join(made).exists(), "a refused token left {made}");
    }
}

/// restic-manager's onboarding as its document gives it: log in, mint a token with its
/// fields, run its install line under bash, then poll `GET /api/hosts` until the host is
/// online with its repository ready.
#[test]
fn restic_managers_onboarding_installs_enrols_and_reports() {
    if !native() {
        return;
    }
    let dir = agent_dir();
    let c = Collector::start(&["--agent-dir", dir.path().to_str().unwrap()]);
    c.add_user("rm", "operator", PASSWORD);
    let login = format!(r#"{{"username": "rm", "password": "{PASSWORD}"}}"#);
    let r = send(c.addr, "POST", "/api/auth/login", &[("Content-Type", "application/json")], login.as_bytes());
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!((r.field("user_id"), r.field("role")), ("rm".into(), "operator".into()));
    let cookie = r.set_cookie().unwrap();
    let jar = [("Cookie", cookie.as_str()), ("Content-Type", "application/json")];
    // Its repository fields mean nothing to Hearth, and are neither refused nor kept.
    let mint = br#"{"hostname":"newhost.example","repo_url":"rest:https://rest.example/newhost","repo_username":"u","repo_password":"p"}"#;
    let r = send(c.addr, "POST", "/api/enrollment-tokens", &jar, mint);
    assert!((200..300).contains(&r.status), "{}", r.body);
    let token = r.field("token");

    let server = format!("http://{}", c.addr);
    let line = format!("curl -fsSL {server}/install/install.sh | sudo RM_SERVER={server} RM_TOKEN={token} bash");
    let root = tempfile::tempdir().unwrap();
    let out = run_line(&line, root.path(), &[]);
    assert!(out.status.success(), "the installer failed: {}", stderr(&out));
    let (env_file, state) = (root.path().join("etc/hearth/agent.env"), root.path().join("var/lib/hearth-agent"));
    assert!(std::fs::read_to_string(&env_file).unwrap().contains(&format!("HEARTH_COLLECTOR_URL={server}")));
    let node_id = std::fs::read_to_string(state.join("node_id")).unwrap();
    let bin = root.path().join("usr/local/bin/hearth-agent");
    let once = Command::new(&bin).arg("once").env("HEARTH_CONFIG", &env_file).env("HEARTH_STATE_DIR", &state).output();
    assert!(once.unwrap().status.success());

    let hosts = send(c.addr, "GET", "/api/hosts", &jar, b"");
    assert_eq!(hosts.status, 200, "{}", hosts.body);
    let list: Vec<miniserde::json::Value> = miniserde::json::from_str(&hosts.body).unwrap();
    let text = |host: &miniserde::json::Object, name: &str| match host.get(name) {
        Some(miniserde::json::Value::String(s)) => s.clone(),
        _ => String::new(),
    };
    let found = list.iter().find_map(|host| match host {
        miniserde::json::Value::Object(o) if text(o, "hostname") == "newhost.example" => Some(o),
        _ => None,
    });
    let host = found.unwrap_or_else(|| panic!("no host newhost.example in {}", hosts.body));
    let text = |name: &str| text(host, name);
    assert_eq!(
        (text("host_id"), text("status"), text("repo_status")),
        (node_id.trim().into(), "online".into(), "ready".into())
    );

    // Re-running is a no-op; RM_FORCE_REENROLL=1 tries again (and the spent token says so),
    // leaving the agent that runs here and its settings as they were.
    assert!(run_line(&line, root.path(), &[]).status.success());
    let mut running = std::fs::read(&bin).unwrap();
    running.extend_from_slice(b"\0an older build"); // bytes past the ELF's end change nothing
    std::fs::write(&bin, &running).unwrap();
    let settings = "HEARTH_COLLECTOR_URL=http://127.0.0.1:9\nHEARTH_NAME=backup-box\n";
    std::fs::write(&env_file, settings).unwrap();
    let forced = run_line(&line, root.path(), &[("RM_FORCE_REENROLL", "1")]);
    assert!(!forced.status.success() && stderr(&forced).contains("already used"), "{}", stderr(&forced));
    assert!(std::fs::read(&bin).unwrap() == running, "a refused token replaced the agent");
    assert_eq!(std::fs::read_to_string(&env_file).unwrap(), settings, "a refused token rewrote agent.env");
    assert!(!bin.with_extension("new").exists(), "the new binary was left beside the old");
    // With a fresh token it enrols again as the same node (its agent token proves the id
    // is its own): one host, not a second one beside a first left to go offline.
    let fresh = send(c.addr, "POST", "/api/enrollment-tokens", &jar, br#"{"hostname":"newhost.example"}"#);
    let line = line.replace(&token, &fresh.field("token"));
    let forced = run_line(&line, root.path(), &[("RM_FORCE_REENROLL", "1")]);
    assert!(forced.status.success(), "forced re-enrolment failed: {}", stderr(&forced));
    assert_eq!(std::fs::read_to_string(state.join("node_id")).unwrap(), node_id, "the same node");
    assert!(std::fs::read(&bin).unwrap() == std::fs::read(env!("CARGO_BIN_EXE_hearth-agent")).unwrap());
    let kept = std::fs::read_to_string(&env_file).unwrap();
    assert!(kept.contains("HEARTH_NAME=backup-box"), "the operator's settings were lost: {kept}");
    assert!(kept.contains(&format!("HEARTH_COLLECTOR_URL={server}")) && !kept.contains(":9\n"), "{kept}");
    let once = Command::new(&bin).arg("once").env("HEARTH_CONFIG", &env_file).env("HEARTH_STATE_DIR", &state).output();
    assert!(once.unwrap().status.success(), "its new agent token works");
    let hosts = send(c.addr, "GET", "/api/hosts", &jar, b"").body;
    assert_eq!(hosts.matches(node_id.trim()).count(), 1, "{hosts}");
    assert!(hosts.contains(r#""hostname":"backup-box""#), "it reports with the settings it kept: {hosts}");
    // The installer fetches by Go's names as well as uname's.
    let (amd, arm) = (
        send(c.addr, "GET", "/agent/binary.sha256?os=linux&arch=amd64", &[], b""),
        send(c.addr, "GET", "/agent/binary.sha256?os=linux&arch=arm64", &[], b""),
    );
    match machine().as_str() {
        "x86_64" => assert_eq!((amd.status, arm.status), (200, 404)),
        "aarch64" => assert_eq!((amd.status, arm.status), (404, 200)),
        _ => {}
    }
}

/// An agent.env kept from an earlier install ends up naming this collector whatever shape
/// it is in, or the installer stops before it changes anything and says why.
#[test]
fn a_kept_agent_env_is_mended_or_refused_never_half_changed() {
    if !native() {
        return;
    }
    let dir = agent_dir();
    let c = Collector::start(&["--agent-dir", dir.path().to_str().unwrap()]);
    let server = format!("http://{}", c.addr);
    let line =
        |token: &str| format!("curl -fsSL {server}/install.sh | sudo HEARTH_SERVER={server} HEARTH_TOKEN={token} sh");
    let root = tempfile::tempdir().unwrap();
    let out = run_line(&line(&c.enroll_token()), root.path(), &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let (env_file, bin) = (root.path().join("etc/hearth/agent.env"), root.path().join("usr/local/bin/hearth-agent"));
    let force = [("HEARTH_FORCE_REENROLL", "1")];
    let shows = |what: &str| {
        let out = Command::new(&bin).args(["config", "show"]).env("HEARTH_CONFIG", &env_file).output().unwrap();
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>() == ["collector:", what])
    };
    // The agent reads the last of two URL lines, and a line ending in `\` runs on.
    for kept in [
        format!("HEARTH_COLLECTOR_URL={server}\nHEARTH_NAME=kept\nHEARTH_COLLECTOR_URL=http://127.0.0.1:9\n"),
        "HEARTH_NAME=kept\nexport HEARTH_COLLECTOR_URL = http://127.0.0.1:9\nHEARTH_TAGS=a,b\\".to_owned(),
    ] {
        std::fs::write(&env_file, &kept).unwrap();
        let out = run_line(&line(&c.enroll_token()), root.path(), &force);
        assert!(out.status.success(), "{kept:?}: {}", stderr(&out));
        let now = std::fs::read_to_string(&env_file).unwrap();
        assert!(shows(&server) && now.contains("HEARTH_NAME=kept"), "{kept:?} became {now:?}");
        assert_eq!(mode(&env_file), 0o600);
    }
    // What the installer will not rewrite, it leaves alone, before spending the token.
    let elsewhere = root.path().join("managed.env");
    std::fs::write(&elsewhere, "HEARTH_COLLECTOR_URL=http://127.0.0.1:9\n").unwrap();
    std::fs::remove_file(&env_file).unwrap();
    std::os::unix::fs::symlink(&elsewhere, &env_file).unwrap();
    let state_dir = format!("HEARTH_COLLECTOR_URL={server}\nHEARTH_STATE_DIR=/srv/agent\n");
    let token = c.enroll_token();
    for (case, why) in [("link", "is a link"), ("state", "sets HEARTH_STATE_DIR")] {
        if case == "state" {
            std::fs::remove_file(&env_file).unwrap();
            std::fs::write(&env_file, &state_dir).unwrap();
        }
        let before = std::fs::read(&bin).unwrap();
        let out = run_line(&line(&token), root.path(), &force);
        assert!(!out.status.success() && stderr(&out).contains(why), "{case}: {}", stderr(&out));
        assert!(stderr(&out).contains("Nothing was changed"), "{}", stderr(&out));
        assert!(std::fs::read(&bin).unwrap() == before && !bin.with_extension("new").exists());
        assert!(!root.path().join("etc/hearth/agent.env.new").exists());
    }
    assert_eq!(std::fs::read_to_string(&elsewhere).unwrap(), "HEARTH_COLLECTOR_URL=http://127.0.0.1:9\n");
    assert!(std::fs::symlink_metadata(&env_file).unwrap().is_file());
    // The token was never spent: with the line put right, it enrols.
    std::fs::write(&env_file, "HEARTH_NAME=kept\n").unwrap();
    let out = run_line(&line(&token), root.path(), &force);
    assert!(out.status.success(), "{}", stderr(&out));
}

/// A download cut short must not run half an installer and must not pass for success.
#[test]
fn a_truncated_installer_runs_nothing_and_fails() {
    let c = Collector::start(&[]);
    let script = send(c.addr, "GET", "/install/install.sh", &[], b"").body;
    let cut = &script[..script.len() * 2 / 3];
    let root = tempfile::tempdir().unwrap();
    for shell in ["sh", "bash"] {
        let mut child = Command::new(shell)
            .env("HEARTH_PREFIX", root.path())
            .env("HEARTH_SERVER", format!("http://{}", c.addr))
            .env("HEARTH_TOKEN", "hen_x")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        std::io::Write::write_all(&mut child.stdin.take().unwrap(), cut.as_bytes()).unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(!out.status.success(), "{shell}: a cut script exited 0");
        assert!(!stderr(&out).contains("hearth-install:"), "{shell} ran part of it: {}", stderr(&out));
        assert_eq!(std::fs::read_dir(root.path()).unwrap().count(), 0, "{shell} created files");
    }
}

#[test]
fn the_installer_says_what_went_wrong() {
    if !native() {
        return;
    }
    let bare = Collector::start(&[]); // no --agent-dir
    let script = send(bare.addr, "GET", "/install.sh", &[], b"").body;
    let temp = tempfile::tempdir().unwrap();
    let path = temp.path().join("install.sh");
    std::fs::write(&path, script).unwrap();
    // The same script under sh and under bash (restic-manager pipes it to bash).
    let run = |env: &[(&str, &str)]| {
        let shell = if env.len() % 2 == 0 { "sh" } else { "bash" };
        let out = Command::new(shell)
            .arg(&path)
            .env("HEARTH_PREFIX", temp.path().join("root"))
            .env("HEARTH_NO_SYSTEMD", "1")
            .env_remove("HEARTH_SERVER")
            .env_remove("HEARTH_TOKEN")
            .envs(env.iter().copied())
            .output()
            .unwrap();
        assert!(!out.status.success(), "{env:?} should fail");
        stderr(&out)
    };
    let server = format!("http://{}", bare.addr);
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", listener.local_addr().unwrap())
    };
    // Plain http is taken from a private address (restic-manager's own example line) and
    // refused from any other; HEARTH_ARCH stops the run before it would download.
    let no_arch = |server| [("HEARTH_SERVER", server), ("HEARTH_TOKEN", "hen_x"), ("HEARTH_ARCH", "sparc64")];
    for server in ["http://192.168.1.10:8088", "http://10.0.0.5/", "http://[fd00::5]:8088", "http://100.64.1.2"] {
        assert!(run(&no_arch(server)).contains("no Hearth agent for this machine"), "{server} refused");
    }
    for server in ["http://172.32.0.1", "http://10.evil.example", "http://8.8.8.8:80", "http://[2001:db8::1]"] {
        assert!(run(&no_arch(server)).contains("plain http"), "{server} let through");
    }
    let cases: [(&[(&str, &str)], &str); 8] = [
        (&[("HEARTH_SERVER", "http://0.0.0.0:1"), ("HEARTH_TOKEN", "hen_x")], "plain http"),
        (&[("HEARTH_SERVER", "http://127.0.0.1:1@0.0.0.0"), ("HEARTH_TOKEN", "hen_x")], "user name or password"),
        (&[("HEARTH_SERVER", "ftp://0.0.0.0:1"), ("HEARTH_TOKEN", "hen_x")], "https://"),
        (&[], "HEARTH_SERVER is not set"),
        (&[("HEARTH_SERVER", &server)], "HEARTH_TOKEN is not set"),
        (
            &[("HEARTH_SERVER", &server), ("HEARTH_TOKEN", "hen_x"), ("HEARTH_ARCH", "sparc64")],
            "no Hearth agent for this machine",
        ),
        (&[("HEARTH_SERVER", &closed), ("HEARTH_TOKEN", "hen_x")], "cannot reach the collector"),
        (&[("HEARTH_SERVER", &server), ("HEARTH_TOKEN", "hen_x")], "--agent-dir"),
    ];
    for (env, expected) in cases {
        let said = run(env);
        assert!(said.contains(expected), "{env:?}: expected {expected:?} in {said}");
    }
    // A missing binary is a JSON 404 naming the file looked for.
    let dir = tempfile::tempdir().unwrap();
    let c = Collector::start(&["--agent-dir", dir.path().to_str().unwrap()]);
    let r = send(c.addr, "GET", "/agent/binary?os=linux&arch=armv6l", &[], b"");
    r.assert_error(404, "binary_missing", &format!("{}/linux/armv6l/hearth-agent", dir.path().display()));
    send(c.addr, "GET", "/agent/binary?os=linux&arch=../../etc", &[], b"").assert_error(
        400,
        "unsupported_platform",
        "armv7l",
    );
}

#[test]
fn install_service_writes_a_user_unit_for_this_binary() {
    let home = tempfile::tempdir().unwrap();
    let out = agent_command()
        .args(["install-service", "--user"])
        .env("HOME", home.path())
        .env("HEARTH_NO_SYSTEMD", "1")
        .env("HEARTH_CHECK_SERVICES", "")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let unit = std::fs::read_to_string(home.path().join(".config/systemd/user/hearth-agent.service")).unwrap();
    let exec = unit.lines().find(|l| l.starts_with("ExecStart=")).unwrap();
    assert!(exec.ends_with("/.config/hearth/agent.env run"), "{exec}");
    assert!(!exec.contains("%h/.local/bin"), "the unit runs this very binary: {exec}");
    assert_eq!(mode(&home.path().join(".config/hearth/agent.env")), 0o600);
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.contains("systemctl --user daemon-reload"), "{said}");
}
