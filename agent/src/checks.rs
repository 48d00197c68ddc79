//! Health checks: systemd services (`systemctl is-active`) and paths that must be directories.

use async_io::Timer;
use hearth_wire::Check;
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

pub async fn run(root: &str, services: &[String], paths: &[String]) -> Outcome {
    let systemd = Path::new("/run/systemd/system").is_dir();
    let mut checks = vec![path_check(root)];
    for service in services {
        checks.push(service_check(service, systemd).await);
    }
    checks.extend(paths.iter().map(|p| path_check(p)));
    let cloudflare_ok = match checks.iter().find(|c| services.contains(&c.name) && c.name == CLOUDFLARED) {
        Some(check) => check.ok,
        None => service_check(CLOUDFLARED, systemd).await.ok,
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

async fn service_check(name: &str, systemd: bool) -> Check {
    let (ok, detail) = if !systemd {
        (false, "systemd is not running on this host, so this service cannot be checked".to_owned())
    } else {
        let mut command = Command::new("systemctl");
        command.args(["is-active", "--quiet", name]);
        match run_with_timeout(command, SERVICE_TIMEOUT).await {
            Ok(status) if status.success() => (true, "active".to_owned()),
            Ok(status) => {
                (false, format!("not active (systemctl is-active exited with {})", status.code().unwrap_or(-1)))
            }
            Err(reason) => (false, reason),
        }
    };
    Check { name: name.to_owned(), ok, detail }
}

/// Runs `command`, killing it if it has not finished within `timeout`.
pub async fn run_with_timeout(mut command: Command, timeout: Duration) -> Result<ExitStatus, String> {
    let program = command.get_program().to_string_lossy().into_owned();
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot run {program}: {e}"))?;
    let deadline = Instant::now() + timeout;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Ok(status),
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
        let status = smol::block_on(run_with_timeout(Command::new("false"), SERVICE_TIMEOUT)).unwrap();
        assert!(!status.success());
    }

    #[test]
    fn without_systemd_the_detail_says_so() {
        let check = smol::block_on(service_check("cloudflared", false));
        assert!(!check.ok && check.detail.contains("systemd is not running"), "{check:?}");
    }

    #[test]
    fn root_and_paths_decide_services_ok() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_str().unwrap();
        let ok = smol::block_on(run(root, &[], &[root.to_owned()]));
        assert!(ok.services_ok, "{ok:?}");
        let missing = smol::block_on(run("/nonexistent/root", &[], &[]));
        assert!(!missing.services_ok && missing.checks[0].name == "/nonexistent/root");
        let file = dir.path().join("f");
        std::fs::write(&file, "").unwrap();
        let not_dir = smol::block_on(run(root, &[], &[file.display().to_string()]));
        assert!(!not_dir.services_ok && not_dir.checks[1].detail == "exists but is not a directory");
    }
}
