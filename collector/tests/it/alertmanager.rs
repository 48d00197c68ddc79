//! The alerts as a real Alertmanager (Debian's `prometheus-alertmanager`) takes them:
//! a node that goes offline is an active `HearthNodeOffline`, its recovery resolves it,
//! and `watchdog = true` keeps `HearthWatchdog` active.

use crate::support::*;
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Alertmanager {
    child: Child,
    addr: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Drop for Alertmanager {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts Alertmanager on a free loopback port; `None` (or a failure in CI) without it.
fn alertmanager() -> Option<Alertmanager> {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("am.yml");
    std::fs::write(&config, "route:\n  receiver: none\nreceivers:\n  - name: none\n").unwrap();
    let addr: SocketAddr = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        probe.local_addr().unwrap()
    };
    let spawned = Command::new("prometheus-alertmanager")
        .arg(format!("--config.file={}", config.display()))
        .arg(format!("--storage.path={}", dir.path().join("data").display()))
        .arg(format!("--web.listen-address={addr}"))
        .arg("--cluster.listen-address=")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn();
    let child = match spawned {
        Ok(child) => child,
        Err(e) if std::env::var_os("CI").is_none() => {
            eprintln!(
                "skipping: prometheus-alertmanager is not installed ({e}); apt-get install prometheus-alertmanager"
            );
            return None;
        }
        Err(e) => panic!("prometheus-alertmanager is needed in CI: {e}"),
    };
    let am = Alertmanager { child, addr, _dir: dir };
    let deadline = Instant::now() + Duration::from_secs(20);
    while exchange(addr, &request_bytes(addr, "GET", "/-/ready", &[], b""), false).is_none_or(|r| r.status != 200) {
        assert!(Instant::now() < deadline, "Alertmanager did not become ready");
        std::thread::sleep(Duration::from_millis(100));
    }
    Some(am)
}

/// A channels file in `dir` with one Alertmanager channel, `am`, and `extra` lines.
fn am_channel(dir: &std::path::Path, am: &Alertmanager, extra: &str) -> std::path::PathBuf {
    let conf = dir.join("alerts.conf");
    std::fs::write(&conf, format!("[channel am]\ntype = alertmanager\nurl = http://{}\n{extra}", am.addr)).unwrap();
    conf
}

/// A collector in `dir` with the channels file `conf` (and `extra` flags), on a test clock
/// 600 s behind: after the 500 s of silence the tests wait through, it is still behind
/// Alertmanager's, so a recovery's `endsAt` (the collector's now) is past.
fn behind_alertmanager(dir: &std::path::Path, conf: &std::path::Path, extra: &[&str]) -> (TestClock, Collector) {
    let clock = TestClock::new(dir);
    let real_now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64;
    clock.set(real_now - 600_000);
    let mut args = vec!["--allow-anonymous", "--alerts", conf.to_str().unwrap()];
    args.extend_from_slice(extra);
    let collector = Collector::start_with_env("127.0.0.1:0", &dir.join("db"), &args, &[clock.env()]);
    (clock, collector)
}

/// Alertmanager's active alerts (`GET /api/v2/alerts?active=true`), as JSON text.
fn active(am: &Alertmanager) -> String {
    send(am.addr, "GET", "/api/v2/alerts?active=true&silenced=false&inhibited=false", &[], b"").body
}

fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !done() {
        assert!(Instant::now() < deadline, "waited 30 s for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn a_real_alertmanager_sees_offline_recovery_and_the_watchdog() {
    let Some(am) = alertmanager() else { return };
    let temp = tempfile::tempdir().unwrap();
    let conf = am_channel(temp.path(), &am, "watchdog = true\n");
    let (clock, c) = behind_alertmanager(temp.path(), &conf, &["--watchdog-secs", "1"]);
    let node = new_node_id();
    assert_eq!(c.post("/api/agent/heartbeat", &[], &v1_heartbeat(&node)).status, 200);
    wait_until("HearthWatchdog to be active", || active(&am).contains(r#""alertname":"HearthWatchdog""#));

    // Silent past grace (V1 announces no interval: 120 s until its cadence is known, so
    // 480 s): the sweep declares the node offline, and Alertmanager has it.
    clock.advance_secs(500);
    wait_until("HearthNodeOffline to be active", || {
        let alerts = active(&am);
        alerts.contains(r#""alertname":"HearthNodeOffline""#) && alerts.contains(&node)
    });
    // Back: the recovery resolves it.
    assert_eq!(c.post("/api/agent/heartbeat", &[], &v1_heartbeat(&node)).status, 200);
    wait_until("HearthNodeOffline to be resolved", || !active(&am).contains(r#""alertname":"HearthNodeOffline""#));
    assert!(active(&am).contains(r#""alertname":"HearthWatchdog""#), "the watchdog stays active");
}

/// `alert test` reaches Alertmanager as an active alert, so that its routes and receivers
/// are tried too: one posted already ended would be told to nobody.
#[test]
fn alert_test_is_active_in_a_real_alertmanager() {
    let Some(am) = alertmanager() else { return };
    let temp = tempfile::tempdir().unwrap();
    let conf = am_channel(temp.path(), &am, "");
    let out =
        Command::new(collector_bin()).args(["alert", "test", "--alerts", conf.to_str().unwrap()]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    wait_until("HearthTest to be active", || active(&am).contains(r#""alertname":"HearthTest""#));
}

/// Deleting a node that is offline, with a failing check, ends both its alerts in
/// Alertmanager: nothing else ever could.
#[test]
fn deleting_an_offline_node_ends_its_alerts_in_a_real_alertmanager() {
    let Some(am) = alertmanager() else { return };
    let temp = tempfile::tempdir().unwrap();
    let conf = am_channel(temp.path(), &am, "");
    let (clock, c) = behind_alertmanager(temp.path(), &conf, &[]);
    let node = new_node_id();
    let v1 = v1_heartbeat(&node);
    let failing = format!(r#"{},"checks":[{{"name":"disk","ok":false,"detail":"full"}}]}}"#, &v1[..v1.len() - 1]);
    assert_eq!(c.post("/api/agent/heartbeat", &[], &failing).status, 200);
    wait_until("HearthCheckFailing to be active", || active(&am).contains(r#""alertname":"HearthCheckFailing""#));
    clock.advance_secs(500);
    wait_until("HearthNodeOffline to be active", || active(&am).contains(r#""alertname":"HearthNodeOffline""#));

    let auth = format!("Bearer {}", c.api_key());
    let deleted = send(c.addr, "DELETE", &format!("/api/nodes/{node}"), &[("Authorization", &auth)], b"");
    assert_eq!(deleted.status, 200, "{}", deleted.body);
    wait_until("both alerts to end", || {
        let alerts = active(&am);
        !alerts.contains("HearthNodeOffline") && !alerts.contains("HearthCheckFailing")
    });
}

/// Pausing a failed job ends `HearthJobFailed` in Alertmanager, which would otherwise
/// remind the receiver of it (every `repeat_interval`) for a week.
#[test]
fn pausing_a_failed_job_ends_its_alert_in_a_real_alertmanager() {
    let Some(am) = alertmanager() else { return };
    let temp = tempfile::tempdir().unwrap();
    let conf = am_channel(temp.path(), &am, "");
    let (_clock, c) = behind_alertmanager(temp.path(), &conf, &[]);
    let auth = format!("Bearer {}", c.api_key());
    let added = c.post("/api/jobs", &[("Authorization", &auth)], r#"{"name":"backup","period_secs":86400}"#);
    assert_eq!(added.status, 201, "{}", added.body);
    let id = added.field("id");
    let uuid = added.field("ping_url").rsplit('/').next().unwrap().to_owned();
    assert_eq!(send(c.addr, "POST", &format!("/ping/{uuid}/fail"), &[], b"").status, 200);
    wait_until("HearthJobFailed to be active", || active(&am).contains(r#""alertname":"HearthJobFailed""#));

    let paused = send(c.addr, "PUT", &format!("/api/jobs/{id}"), &[("Authorization", &auth)], br#"{"paused":true}"#);
    assert_eq!(paused.status, 200, "{}", paused.body);
    wait_until("HearthJobFailed to end", || !active(&am).contains("HearthJobFailed"));
}
