//! Scheduled jobs end to end: a real collector on a test clock (`HEARTH_CLOCK_FILE`),
//! channels pointing at a receiver on loopback, and pings sent by real `curl` lines as
//! Healthchecks documents them.

use crate::support::*;
use std::path::Path;
use std::process::Command;

/// 2027-01-20T00:00:00Z, a winter day: Berlin is UTC+1.
const DAY: i64 = 1_800_403_200_000;
const H: i64 = 3_600_000;
const MIN: i64 = 60_000;

/// A collector on a test clock set to `at`, with a webhook and an Alertmanager channel at a
/// receiver; reminders off.
fn watch(dir: &Path, at: i64) -> (Collector, Receiver, TestClock) {
    let receiver = Receiver::start();
    let clock = TestClock::new(dir);
    clock.set(at);
    let conf = dir.join("alerts.conf");
    let r = receiver.addr;
    let text = format!(
        "[channel hook]\ntype = webhook\nurl = http://{r}/webhook\n\n[channel am]\ntype = alertmanager\nurl = http://{r}/am\n"
    );
    std::fs::write(&conf, text).unwrap();
    let args = ["--alerts", conf.to_str().unwrap(), "--remind-hours", "0", "--allow-anonymous"];
    let log = dir.join("collector.log");
    let collector = Collector::start_logged("127.0.0.1:0", &dir.join("db"), &args, &[clock.env()], Some(&log));
    (collector, receiver, clock)
}

/// Adds a job through the API; returns (id, ping URL).
fn add_job(collector: &Collector, key: &str, body: &str) -> (String, String) {
    let auth = format!("Bearer {key}");
    let r = collector.post("/api/jobs", &[("Authorization", &auth)], body);
    assert_eq!(r.status, 201, "{body}: {}", r.body);
    (r.field("id"), r.field("ping_url"))
}

/// A ping by path, as a client without curl would send it.
fn ping(collector: &Collector, path: &str, body: &str) -> Response {
    send(collector.addr, "POST", path, &[("Content-Type", "text/plain")], body.as_bytes())
}

fn path_of(url: &str) -> String {
    let rest = url.split_once("://").unwrap().1;
    rest[rest.find('/').unwrap()..].to_owned()
}

/// The webhook bodies received so far, in order.
fn webhooks(hits: &[Hit]) -> Vec<String> {
    hits.iter().filter(|h| h.path == "/webhook").map(|h| h.body.clone()).collect()
}

/// Waits until the webhook has heard `count` alerts; returns their bodies.
fn wait_webhooks(receiver: &Receiver, count: usize) -> Vec<String> {
    for _ in 0..400 {
        let got = webhooks(&receiver.hits());
        if got.len() >= count {
            return got;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    panic!("waited for {count} webhook alerts, got {:#?}", webhooks(&receiver.hits()));
}

/// Whether an alert body is about the job named `name`, of `kind`.
fn is(body: &str, kind: &str, name: &str) -> bool {
    body.contains(&format!(r#""kind":"{kind}""#)) && body.contains(&format!(r#""name":"{name}""#))
}

/// Each "nothing was sent yet" below is proved by a sentinel job due just before: its
/// alert shows the sweep has looked at that moment, and the job under test was not due.
#[test]
fn a_cron_job_not_pinged_pages_once_after_its_grace_then_fails_and_recovers() {
    let temp = tempfile::tempdir().unwrap();
    let (collector, receiver, clock) = watch(temp.path(), DAY + H);
    let key = collector.api_key();
    // 03:00 in Berlin is 02:00 UTC: down at 03:00 UTC, after an hour's grace.
    let body = r#"{"name":"nightly backup","cron":"0 3 * * *","tz":"Europe/Berlin","grace_secs":3600}"#;
    let (id, url) = add_job(&collector, &key, body);
    add_job(&collector, &key, r#"{"name":"sentinel one","cron":"0 2 * * *","grace_secs":3540}"#);
    add_job(&collector, &key, r#"{"name":"sentinel two","cron":"0 9 * * *","grace_secs":60}"#);
    let job = collector.get(&format!("/api/jobs/{id}"), &key);
    assert_eq!(job.field("status"), "new");
    assert_eq!(job.field("next_expected"), "2027-01-20T02:00:00Z");
    // Maintenance windows spell it `time_zone`: a job takes that too (and no misspelling).
    let (copy, _) = add_job(&collector, &key, r#"{"name":"copy","cron":"0 3 * * *","time_zone":"Europe/Berlin"}"#);
    assert_eq!(collector.get(&format!("/api/jobs/{copy}"), &key).field("next_expected"), "2027-01-20T02:00:00Z");
    let auth = format!("Bearer {key}");
    assert_eq!(
        send(collector.addr, "DELETE", &format!("/api/jobs/{copy}"), &[("Authorization", &auth)], b"").status,
        200
    );
    let r = collector.post("/api/jobs", &[("Authorization", &auth)], r#"{"name":"x","period_secs":60,"grace":60}"#);
    r.assert_error(400, "unknown_field", "no field `grace`");

    clock.set(DAY + 2 * H + 59 * MIN + 30_000);
    let got = wait_webhooks(&receiver, 1);
    assert!(is(&got[0], "job_down", "sentinel one"), "{got:#?}");
    assert_eq!(collector.get(&format!("/api/jobs/{id}"), &key).field("status"), "grace");

    clock.set(DAY + 3 * H + 1000);
    let got = wait_webhooks(&receiver, 2);
    assert!(is(&got[1], "job_down", "nightly backup"), "{got:#?}");
    assert!(got[1].contains("expected at 2027-01-20T02:00:00Z"), "{}", got[1]);
    let am: Vec<Hit> = receiver.wait_for(4).into_iter().filter(|h| h.path == "/am/api/v2/alerts").collect();
    assert!(am.iter().any(|h| h.body.contains(r#""alertname":"HearthJobDown""#) && h.body.contains("nightly backup")));

    // Once: six hours on, only the second sentinel has paged since.
    clock.set(DAY + 9 * H + 2 * MIN);
    let got = wait_webhooks(&receiver, 3);
    assert!(is(&got[2], "job_down", "sentinel two"), "{got:#?}");
    assert_eq!(got.iter().filter(|b| b.contains("nightly backup")).count(), 1, "{got:#?}");

    // A failure pages at once, without the clock moving; a success recovers.
    let path = path_of(&url);
    assert_eq!(ping(&collector, &format!("{path}/start"), "").body, "OK");
    assert_eq!(ping(&collector, &format!("{path}/fail"), "restic: repository locked").body, "OK");
    let got = wait_webhooks(&receiver, 4);
    assert!(is(&got[3], "job_failed", "nightly backup"), "{got:#?}");
    assert_eq!(ping(&collector, &path, "").body, "OK");
    let got = wait_webhooks(&receiver, 5);
    assert!(is(&got[4], "job_recovered", "nightly backup"), "{got:#?}");
    let am = receiver.wait_for(10);
    let last = &am.iter().rfind(|h| h.path == "/am/api/v2/alerts").unwrap().body;
    assert!(last.contains("HearthJobDown") && last.contains("HearthJobFailed"), "both resolve: {last}");
    let job = collector.get(&format!("/api/jobs/{id}"), &key);
    assert_eq!(job.field("status"), "up");
    assert_eq!(job.field("next_expected"), "2027-01-21T02:00:00Z");
    assert!(!collector.admin(&["job", "list"]).is_empty());
}

/// Healthchecks' documented curl lines work with only the base URL changed.
#[test]
fn healthchecks_curl_lines_work_unchanged() {
    if Command::new("curl").arg("--version").output().is_err() {
        assert!(std::env::var_os("CI").is_none(), "curl is needed in CI");
        eprintln!("curl not found; skipping the curl lines");
        return;
    }
    let temp = tempfile::tempdir().unwrap();
    let (collector, _receiver, _clock) = watch(temp.path(), DAY + H);
    let key = collector.api_key();
    let (id, url) = add_job(&collector, &key, r#"{"name":"certbot","period_secs":86400,"grace_secs":3600}"#);
    let curl = |args: &[&str]| {
        let out = Command::new("curl").args(args).output().unwrap();
        let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(out.status.success(), "curl {args:?}: {stdout} {stderr}");
        stdout.into_owned()
    };
    let retry = ["-fsS", "-m", "10", "--retry", "5"];
    fn with<'a>(retry: &[&'a str], extra: &[&'a str]) -> Vec<&'a str> {
        [retry, extra].concat()
    }
    assert_eq!(curl(&with(&retry, &[&url])), "OK");
    assert_eq!(curl(&with(&retry, &["-o", "/dev/null", &format!("{url}/start")])), "");
    assert_eq!(curl(&with(&retry, &["--data-raw", "backup log: 3 files", &format!("{url}/fail")])), "OK");
    assert_eq!(curl(&with(&retry, &[&format!("{url}/1")])), "OK");
    assert_eq!(curl(&with(&retry, &[&format!("{url}/0")])), "OK");
    let log = temp.path().join("run.log");
    std::fs::write(&log, "line one\nline two\n").unwrap();
    assert_eq!(curl(&with(&retry, &["--data-binary", &format!("@{}", log.display()), &format!("{url}/log")])), "OK");
    assert!(curl(&["-fsSI", &url]).starts_with("HTTP/1.1 200"));
    let rid = "1ab2c3d4-0000-4000-8000-00000000beef";
    assert_eq!(curl(&with(&retry, &[&format!("{url}/start?rid={rid}")])), "OK");
    assert_eq!(curl(&with(&retry, &[&format!("{url}?rid={rid}")])), "OK");
    // Unknown checks and bad input answer as Healthchecks does (and `-f` fails on them).
    let status = |target: &str| curl(&["-sS", "-o", "/dev/null", "-w", "%{http_code}", target]);
    let base = url.rsplit_once("/ping/").unwrap().0.to_owned();
    assert_eq!(status(&format!("{base}/ping/00000000-0000-4000-8000-000000000000")), "404");
    assert_eq!(status(&format!("{url}/256")), "400");
    assert_eq!(curl(&["-sS", &format!("{base}/ping/00000000-0000-4000-8000-000000000000")]), "not found");
    // The slug form with the collector's ping key, and ?create=1.
    let ping_key = collector.admin(&["ping-key", "rotate"]);
    assert_eq!(status(&format!("{base}/ping/{ping_key}/zfs-scrub")), "404");
    assert_eq!(curl(&with(&retry, &[&format!("{base}/ping/{ping_key}/zfs-scrub?create=1")])), "Created");
    assert_eq!(curl(&with(&retry, &[&format!("{base}/ping/{ping_key}/zfs-scrub/start")])), "OK");

    let job = collector.get(&format!("/api/jobs/{id}"), &key);
    assert!(job.body.contains(r#""duration_ms":0"#), "the rid run was paired: {}", job.body);
    let kinds: Vec<&str> = job.body.split(r#""kind":""#).skip(1).map(|k| k.split('"').next().unwrap()).collect();
    assert_eq!(kinds, ["success", "start", "success", "log", "success", "fail", "fail", "start", "success"]);
    let fail =
        job.body.split(r#"{"#).find(|p| p.contains(r#""kind":"fail""#) && p.contains("exit_status\":null")).unwrap();
    let n = fail.split(r#""n":"#).nth(1).unwrap().split(',').next().unwrap();
    let log = collector.get(&format!("/api/jobs/{id}/pings/{n}"), &key);
    assert_eq!(log.field("log"), "backup log: 3 files");
    let jobs = collector.get("/api/jobs", &key);
    assert!(jobs.body.contains(r#""slug":"zfs-scrub""#), "{}", jobs.body);
    // The collector's log (at info) holds neither a run's log, nor a ping URL's UUID, nor the ping key.
    let logged = std::fs::read_to_string(temp.path().join("collector.log")).unwrap();
    assert!(logged.contains("zfs-scrub"), "the log was read: {logged}");
    let uuid = url.rsplit('/').next().unwrap();
    for secret in ["backup log: 3 files", "line one", uuid, ping_key.as_str()] {
        assert!(!logged.contains(secret), "{secret} reached the log: {logged}");
    }
}

/// A flood of pings with large bodies: the job keeps its last 100, and heartbeats are answered.
#[test]
fn a_ping_flood_keeps_the_store_bounded() {
    let temp = tempfile::tempdir().unwrap();
    let (collector, _receiver, _clock) = watch(temp.path(), DAY);
    let key = collector.api_key();
    let (id, url) = add_job(&collector, &key, r#"{"name":"flood","period_secs":60,"grace_secs":60}"#);
    let path = path_of(&url);
    let body = "y".repeat(100_000);
    let node = new_node_id();
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                for _ in 0..75 {
                    assert_eq!(ping(&collector, &path, &body).status, 200);
                }
            });
        }
        for seq in 0..20 {
            let r = collector.post("/api/agent/heartbeat", &[], &heartbeat(&node, seq, "running"));
            assert_eq!(r.status, 200, "a heartbeat during the flood: {}", r.body);
        }
    });
    let job = collector.get(&format!("/api/jobs/{id}"), &key);
    assert_eq!(job.body.matches(r#""kind":"success""#).count(), 100, "{}", &job.body[..400]);
    assert!(job.body.contains(r#""log_bytes":100000"#));
    let oldest = collector.get(&format!("/api/jobs/{id}/pings/199"), &key);
    assert_eq!(oldest.status, 404, "ping 199 of 300 was dropped");
    let newest = collector.get(&format!("/api/jobs/{id}/pings/299"), &key);
    assert_eq!(newest.field("log").len(), 10 * 1024, "each log is cut to 10 KB");
}

/// Pausing a failed job ends its alert everywhere (Alertmanager would otherwise page about
/// it until the alert's end, a week on), and a failure after the pause is told afresh;
/// removing a failed job from the command line ends it too, through the running
/// collector's channels.
#[test]
fn pausing_or_removing_a_failed_job_ends_its_alert() {
    let temp = tempfile::tempdir().unwrap();
    let (collector, receiver, _clock) = watch(temp.path(), DAY);
    let key = collector.api_key();
    let auth = format!("Bearer {key}");
    let (id, url) = add_job(&collector, &key, r#"{"name":"nightly backup","period_secs":86400,"grace_secs":3600}"#);
    let path = path_of(&url);
    assert_eq!(ping(&collector, &format!("{path}/fail"), "").body, "OK");
    assert!(is(&wait_webhooks(&receiver, 1)[0], "job_failed", "nightly backup"));

    let paused =
        send(collector.addr, "PUT", &format!("/api/jobs/{id}"), &[("Authorization", &auth)], br#"{"paused":true}"#);
    assert_eq!(paused.status, 200, "{}", paused.body);
    assert_eq!(paused.field("status"), "paused");
    let got = wait_webhooks(&receiver, 2);
    assert!(is(&got[1], "job_paused", "nightly backup"), "{got:#?}");
    let am = receiver.wait_for(4);
    let last = &am.iter().rfind(|h| h.path == "/am/api/v2/alerts").unwrap().body;
    // Both end now, not a week on (2027-01-27) as a firing alert would.
    assert!(
        last.contains("HearthJobDown") && last.contains("HearthJobFailed") && !last.contains("2027-01-27"),
        "{last}"
    );

    // A failure after the pause resumes the job and is told again.
    assert_eq!(ping(&collector, &format!("{path}/fail"), "").body, "OK");
    assert!(is(&wait_webhooks(&receiver, 3)[2], "job_failed", "nightly backup"));

    collector.admin(&["job", "remove", &id]);
    let got = wait_webhooks(&receiver, 4);
    assert!(is(&got[3], "job_removed", "nightly backup"), "{got:#?}");
    assert!(got[3].contains("removed by the command line"), "{}", got[3]);
    assert_eq!(collector.get(&format!("/api/jobs/{id}"), &key).status, 404);
}

/// `job add` and `ping-key rotate` print ping URLs where the running `serve` is reached:
/// its `--public-url`, else its address; a `--public-url` that is no URL is refused.
#[test]
fn the_command_line_prints_ping_urls_where_the_collector_is() {
    let collector = Collector::start(&[]);
    let url = collector.admin(&["job", "add", "nightly", "--period", "1d"]);
    assert!(url.starts_with(&format!("http://{}/ping/", collector.addr)), "{url}");
    let temp = tempfile::tempdir().unwrap();
    let public = Collector::start_with_env(
        "127.0.0.1:0",
        &temp.path().join("db"),
        &["--public-url", "https://hearth.example.com/"],
        &[],
    );
    let url = public.admin(&["job", "add", "nightly", "--period", "1d"]);
    assert!(url.starts_with("https://hearth.example.com/ping/"), "{url}");
    let out = public.admin_with_input(&["ping-key", "rotate"], "");
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(said.contains("slug URLs are now https://hearth.example.com/ping/<key>/<slug>"), "{said}");
    for args in [
        &["serve", "--listen", "127.0.0.1:0", "--public-url", "hearth.example.com"][..],
        &["job", "add", "x", "--period", "1d", "--public-url", "hearth.example.com"],
    ] {
        let out = public.admin_with_input(args, "");
        let said = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {said}");
        assert!(said.contains("--public-url must start with https:// or http://"), "{said}");
    }
}
