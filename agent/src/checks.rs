//! Health checks: systemd services (`systemctl is-active`) and paths that must be directories.
//! A service the host does not have is left out when it was only a default (`cloudflared`).

use async_io::Timer;
use hearth_wire::Check;
use std::io::Read;
use std::path::Path;
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// How long one `systemctl is-active` may take before it counts as failed.
pub const SERVICE_TIMEOUT: Duration = Duration::from_secs(5);

/// The service whose state is reported as `cloudflare_ok`.
pub const CLOUDFLARED: &str = "cloudflared";

/// Every check's outcome, and the two V1 verdicts drawn from them.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    pub checks: Vec<Check>,
    pub cloudflare_ok: bool,
    pub services_ok: bool,
}

/// What a service this host does not have (no such unit, or no systemd) counts as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Absent {
    /// Left out of the heartbeat: the default list names services a host may well not run.
    Skipped,
    /// A failed check: the operator named the service, so its absence (or a typo) must show.
    Failing,
}

/// What systemd says about one unit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServiceState {
    Active,
    /// Loaded, but `systemctl is-active` exited with this code.
    Inactive(i32),
    /// systemd knows no unit of that name.
    NotFound,
    /// systemd is not running on this host.
    NoSystemd,
    /// systemctl could not be run, or did not answer.
    Unknown(String),
}

pub async fn run(root: &str, services: &[String], paths: &[String], absent: Absent) -> Outcome {
    let systemd = Path::new("/run/systemd/system").is_dir();
    let mut checks = vec![path_check(root)];
    let mut cloudflared = None;
    for service in services {
        let state = service_state(service, systemd).await;
        if service == CLOUDFLARED {
            cloudflared = Some(state.clone());
        }
        match service_check(service, &state, absent) {
            Some(check) => checks.push(check),
            None => log::debug!("service check {service} skipped: {}", describe(&state)),
        }
    }
    for path in paths {
        // A path listed twice (or the root again) is one check, not the same one twice.
        if !checks.iter().any(|c| c.name == *path) {
            checks.push(path_check(path));
        }
    }
    let cloudflare_ok = match cloudflared {
        Some(state) => state == ServiceState::Active,
        None => service_state(CLOUDFLARED, systemd).await == ServiceState::Active,
    };
    let services_ok = checks.iter().all(|c| c.ok);
    Outcome { checks, cloudflare_ok, services_ok }
}

fn path_check(path: &str) -> Check {
    let (ok, detail) = match std::fs::metadata(path) {
        Ok(meta) if meta.is_dir() => (true, "is a directory".to_owned()),
        Ok(_) => (false, "exists but is not a directory".to_owned()),
        Err(e) => (false, e.to_string()),
    };
    Check { name: path.to_owned(), ok, detail }
}

/// The check a service's state makes, or `None` if it is left out.
fn service_check(name: &str, state: &ServiceState, absent: Absent) -> Option<Check> {
    let ok = match state {
        ServiceState::Active => true,
        ServiceState::NotFound | ServiceState::NoSystemd if absent == Absent::Skipped => return None,
        _ => false,
    };
    Some(Check { name: name.to_owned(), ok, detail: describe(state) })
}

fn describe(state: &ServiceState) -> String {
    match state {
        ServiceState::Active => "active".to_owned(),
        ServiceState::Inactive(code) => format!("not active (systemctl is-active exited with {code})"),
        ServiceState::NotFound => {
            "systemd has no such unit; install the service, or fix its name in HEARTH_CHECK_SERVICES".to_owned()
        }
        ServiceState::NoSystemd => "systemd is not running on this host, so this service cannot be checked".to_owned(),
        ServiceState::Unknown(reason) => reason.clone(),
    }
}

async fn service_state(name: &str, systemd: bool) -> ServiceState {
    if !systemd {
        return ServiceState::NoSystemd;
    }
    let mut is_active = Command::new("systemctl");
    is_active.args(["is-active", "--quiet", name]);
    let is_active = run_with_timeout(is_active, SERVICE_TIMEOUT).await.map(|(status, _)| status.code().unwrap_or(-1));
    let load_state = match is_active {
        Ok(code) if code != 0 => {
            let mut show = Command::new("systemctl");
            show.args(["show", "--property", "LoadState", "--value", name]);
            run_with_timeout(show, SERVICE_TIMEOUT).await.ok().map(|(_, stdout)| stdout)
        }
        _ => None,
    };
    read_service_state(is_active, load_state.as_deref())
}

/// Reads systemd's answers about a unit: the exit code of `systemctl is-active --quiet`
/// and, when that was not 0, the output of `systemctl show --property LoadState --value`.
fn read_service_state(is_active: Result<i32, String>, load_state: Option<&str>) -> ServiceState {
    match (is_active, load_state.map(str::trim)) {
        (Ok(0), _) => ServiceState::Active,
        (Ok(_), Some("not-found")) => ServiceState::NotFound,
        // Without LoadState, trust is-active's own "no such unit" (LSB status 4).
        (Ok(4), None) => ServiceState::NotFound,
        (Ok(code), _) => ServiceState::Inactive(code),
        (Err(reason), _) => ServiceState::Unknown(reason),
    }
}

/// The most of a command's output that is kept.
const MAX_OUTPUT: u64 = 4096;

/// Runs `command`, killing it if it has not finished within `timeout`; returns its exit
/// status and the start of its output.
pub async fn run_with_timeout(mut command: Command, timeout: Duration) -> Result<(ExitStatus, String), String> {
    let program = command.get_program().to_string_lossy().into_owned();
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot run {program}: {e}"))?;
    let deadline = Instant::now() + timeout;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => {
                let mut stdout = Vec::new();
                if let Some(out) = child.stdout.take() {
                    let _ = out.take(MAX_OUTPUT).read_to_end(&mut stdout);
                }
                return Ok((status, String::from_utf8_lossy(&stdout).into_owned()));
            }
            Ok(None) if Instant::now() < deadline => {
                Timer::after(Duration::from_millis(20)).await;
            }
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("{program} did not answer within {} s", timeout.as_secs_f32()));
            }
            Err(e) => return Err(format!("cannot wait for {program}: {e}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hung_command_is_cut_off() {
        let mut command = Command::new("sleep");
        command.arg("30");
        let started = Instant::now();
        let result = smol::block_on(run_with_timeout(command, Duration::from_millis(200)));
        assert_eq!(result, Err("sleep did not answer within 0.2 s".to_owned()));
        assert!(started.elapsed() < Duration::from_secs(10), "the child was not killed");
    }

    #[test]
    fn missing_programs_and_exit_codes() {
        let err = smol::block_on(run_with_timeout(Command::new("/nonexistent/systemctl"), SERVICE_TIMEOUT));
        assert!(err.unwrap_err().starts_with("cannot run /nonexistent/systemctl"));
        let (status, _) = smol::block_on(run_with_timeout(Command::new("false"), SERVICE_TIMEOUT)).unwrap();
        assert!(!status.success());
        let mut echo = Command::new("echo");
        echo.arg("not-found");
        let (status, out) = smol::block_on(run_with_timeout(echo, SERVICE_TIMEOUT)).unwrap();
        assert!(status.success() && out == "not-found\n", "{out:?}");
    }

    #[test]
    fn systemds_answers() {
        let cases: [(Result<i32, String>, Option<&str>, ServiceState); 7] = [
            (Ok(0), None, ServiceState::Active),
            (Ok(3), Some("loaded\n"), ServiceState::Inactive(3)),
            (Ok(3), Some("not-found\n"), ServiceState::NotFound),
            (Ok(4), Some("not-found"), ServiceState::NotFound),
            (Ok(4), None, ServiceState::NotFound),
            (Ok(3), None, ServiceState::Inactive(3)),
            (
                Err("systemctl did not answer within 5 s".into()),
                None,
                ServiceState::Unknown("systemctl did not answer within 5 s".into()),
            ),
        ];
        for (is_active, load_state, expected) in cases {
            let got = read_service_state(is_active.clone(), load_state);
            assert_eq!(got, expected, "is-active {is_active:?}, LoadState {load_state:?}");
        }
    }

    #[test]
    fn an_absent_default_service_is_left_out_and_a_named_one_fails() {
        let check = |state: ServiceState, absent| service_check("cloudflared", &state, absent).map(|c| c.ok);
        for state in [ServiceState::NotFound, ServiceState::NoSystemd] {
            assert_eq!(check(state.clone(), Absent::Skipped), None, "{state:?}");
            assert_eq!(check(state.clone(), Absent::Failing), Some(false), "{state:?}");
        }
        for absent in [Absent::Skipped, Absent::Failing] {
            assert_eq!(check(ServiceState::Active, absent), Some(true));
            assert_eq!(check(ServiceState::Inactive(3), absent), Some(false), "a stopped service always fails");
            assert_eq!(check(ServiceState::Unknown("hung".into()), absent), Some(false));
        }
        let named = service_check("nginx", &ServiceState::NotFound, Absent::Failing).unwrap();
        assert!(named.detail.contains("HEARTH_CHECK_SERVICES"), "{named:?}");
        let none = service_check("nginx", &ServiceState::NoSystemd, Absent::Failing).unwrap();
        assert!(none.detail.contains("systemd is not running"), "{none:?}");
    }

    #[test]
    fn root_and_paths_decide_services_ok() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_str().unwrap();
        let ok = smol::block_on(run(root, &[], &[root.to_owned(), root.to_owned()], Absent::Failing));
        assert!(ok.services_ok, "{ok:?}");
        assert_eq!(ok.checks.len(), 1, "the root listed again is one check: {ok:?}");
        let missing = smol::block_on(run("/nonexistent/root", &[], &[], Absent::Failing));
        assert!(!missing.services_ok && missing.checks[0].name == "/nonexistent/root");
        let file = dir.path().join("f");
        std::fs::write(&file, "").unwrap();
        let not_dir = smol::block_on(run(root, &[], &[file.display().to_string()], Absent::Failing));
        assert!(!not_dir.services_ok && not_dir.checks[1].detail == "exists but is not a directory");
    }
}
