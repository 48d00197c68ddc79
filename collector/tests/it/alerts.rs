//! The dead-man's switch, end to end: a real collector, time moved through HEARTH_CLOCK_FILE,
//! and a receiver on loopback standing in for every channel.

use crate::support::*;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// One channel of each type, all pointing at `receiver`, plus two filtered ones.
fn alerts_file(dir: &Path, receiver: SocketAddr) -> PathBuf {
    let path = dir.join("alerts.conf");
    let text = format!(
        "# every kind of channel, at the test receiver\n\
         [channel hook]\ntype = webhook\nurl = http://{receiver}/webhook\n\n\
         [channel phone]\ntype = ntfy\nurl = http://{receiver}/ntfy/hearth\ntoken = tk_test\n\n\
         [channel discord]\ntype = discord\nurl = http://{receiver}/discord\n\n\
         [channel slack]\ntype = slack\nurl = http://{receiver}/slack\n\n\
         [channel gotify]\ntype = gotify\nurl = http://{receiver}/gotify\ntoken = app_test\n\n\
         [channel am]\ntype = alertmanager\nurl = http://{receiver}/am\n\n\
         [channel kitchen]\ntype = webhook\nurl = http://{receiver}/kitchen\ntags = kitchen\n\n\
         [channel reboots]\ntype = webhook\nurl = http://{receiver}/reboots\ntags = garage\nreboot = true\n"
    );
    std::fs::write(&path, text).unwrap();
    path
}

/// A heartbeat every 10 s from a node tagged `garage`.
fn beat(node: &str, boot: &str, state: &str) -> String {
    let v1 = v1_heartbeat(node);
    let extras =
        format!(r#","interval_secs":10,"tags":["garage"],"boot_id":"{boot}","state":"{state}","name":"garage-pi"}}"#);
    format!("{}{extras}", &v1[..v1.len() - 1])
}

/// A collector on a test clock, whose channels (`conf`, given the receiver's address) all
/// point at a receiver on loopback.
struct Watch {
    _temp: tempfile::TempDir,
    receiver: Receiver,
    clock: TestClock,
    collector: Collector,
}

fn watch(conf: impl Fn(&Path, SocketAddr) -> PathBuf, extra: &[&str]) -> Watch {
    let temp = tempfile::tempdir().unwrap();
    let receiver = Receiver::start();
    let clock = TestClock::new(temp.path());
    let conf = conf(temp.path(), receiver.addr);
    let mut args = vec!["--allow-anonymous", "--alerts", conf.to_str().unwrap()];
    args.extend_from_slice(extra);
    let collector = Collector::start_with_env("127.0.0.1:0", &temp.path().join("db"), &args, &[clock.env()]);
    Watch { _temp: temp, receiver, clock, collector }
}

/// A channels file with one webhook channel.
fn one_webhook(dir: &Path, receiver: SocketAddr) -> PathBuf {
    let path = dir.join("one.conf");
    std::fs::write(&path, format!("[channel hook]\ntype = webhook\nurl = http://{receiver}/webhook\n")).unwrap();
    path
}

/// How many alerts were written (`GET /api/alerts`).
fn alert_count(collector: &Collector) -> usize {
    collector.get("/api/alerts?limit=1000", &collector.api_key()).body.matches(r#""kind":""#).count()
}

/// Waits until no delivery is pending (`hearth_alerts_pending 0` with at least one alert
/// sent): what was due has been delivered and recorded, so nothing more will be sent.
fn wait_until_settled(collector: &Collector) {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let text = send(collector.addr, "GET", "/metrics", &[], b"").body;
        if text.lines().any(|l| l == "hearth_alerts_pending 0") {
            return;
        }
        assert!(std::time::Instant::now() < deadline, "alerts still pending after 20 s");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// No alert was written: the outbox and the alert list are empty, whatever the channels
/// have heard so far (an alert is written by the sweep before any channel hears of it).
fn assert_no_alert(collector: &Collector) {
    let alerts = collector.get("/api/alerts", &collector.api_key());
    assert_eq!(alerts.body, r#"{"alerts":[]}"#, "an alert was written");
}

fn by_path<'a>(hits: &'a [Hit], path: &str) -> Vec<&'a Hit> {
    hits.iter().filter(|h| h.path == path).collect()
}

#[test]
fn every_channel_hears_offline_and_recovery_in_its_own_form() {
    let Watch { _temp, receiver, clock, collector } = watch(alerts_file, &[]);
    let node = new_node_id();
    assert_eq!(collector.post("/api/agent/heartbeat", &[], &beat(&node, "b1", "running")).status, 200);

    // Interval 10 s: grace 30 s, then one interval more before the node is declared offline.
    clock.advance_secs(39);
    collector.wait_for_sweeps(2);
    assert_no_alert(&collector);
    assert!(receiver.hits().is_empty(), "paged before grace and minimum down time: {:?}", receiver.hits());
    clock.advance_secs(2);
    let hits = receiver.wait_for(7);
    let webhook = by_path(&hits, "/webhook")[0];
    for field in
        [r#""kind":"offline""#, &format!(r#""node_id":"{node}""#), r#""name":"garage-pi""#, r#""tags":["garage"]"#]
    {
        assert!(webhook.body.contains(field), "{field} missing from {}", webhook.body);
    }
    let ntfy = by_path(&hits, "/ntfy/hearth")[0];
    assert!(ntfy.body.starts_with("garage-pi is offline: no heartbeat for 41 s"), "{}", ntfy.body);
    assert!(ntfy.head.contains("Priority: 5") && ntfy.head.contains("Authorization: Bearer tk_test"), "{}", ntfy.head);
    assert!(by_path(&hits, "/discord")[0].body.starts_with(r#"{"content":"garage-pi is offline"#));
    assert!(by_path(&hits, "/slack")[0].body.starts_with(r#"{"text":"garage-pi is offline"#));
    let gotify = by_path(&hits, "/gotify/message")[0];
    assert!(gotify.head.contains("X-Gotify-Key: app_test") && gotify.body.contains(r#""priority":8"#), "{gotify:?}");
    let am = by_path(&hits, "/am/api/v2/alerts")[0];
    assert!(am.body.contains(r#""alertname":"HearthNodeOffline""#) && am.body.contains("startsAt"), "{}", am.body);
    assert_eq!(by_path(&hits, "/reboots").len(), 1, "the garage channel hears the offline alert too");
    assert!(by_path(&hits, "/kitchen").is_empty(), "a channel for other tags heard about the garage");
    let key = collector.api_key();
    let node_status = collector.get(&format!("/api/nodes/{node}"), &key);
    assert_eq!(node_status.field("status"), "offline");
    assert!(!node_status.field("down_since").is_empty());

    // Back: every channel hears it once; Alertmanager gets endsAt, which resolves the alert.
    assert_eq!(collector.post("/api/agent/heartbeat", &[], &beat(&node, "b1", "running")).status, 200);
    let hits = receiver.wait_for(14);
    let webhooks = by_path(&hits, "/webhook");
    assert!(webhooks[1].body.contains(r#""kind":"recovered""#), "{}", webhooks[1].body);
    assert!(by_path(&hits, "/ntfy/hearth")[1].body.starts_with("garage-pi is back online"));

    // A reboot reaches only the channel that asked for reboots.
    assert_eq!(collector.post("/api/agent/heartbeat", &[], &beat(&node, "b2", "running")).status, 200);
    let hits = receiver.wait_for(15);
    assert!(by_path(&hits, "/reboots")[2].body.contains(r#""kind":"reboot""#));
    // Every alert settled (each channel's delivery recorded), so no more will come.
    wait_until_settled(&collector);
    assert_eq!(receiver.hits().len(), 15, "{:#?}", receiver.hits());

    let events = collector.get(&format!("/api/events?node={node}"), &key);
    let kinds: Vec<&str> = ["offline", "recovered", "reboot"]
        .into_iter()
        .filter(|k| events.body.contains(&format!(r#""kind":"{k}""#)))
        .collect();
    assert_eq!(kinds, ["offline", "recovered", "reboot"], "{}", events.body);
    let alerts = collector.get("/api/alerts", &key);
    assert!(
        alerts.body.contains(r#""state":"delivered""#) && !alerts.body.contains(r#""state":"pending""#),
        "{}",
        alerts.body
    );
}

#[test]
fn a_missed_beat_and_a_clean_stop_never_page() {
    let Watch { _temp, receiver, clock, collector } = watch(alerts_file, &[]);
    let node = new_node_id();
    collector.post("/api/agent/heartbeat", &[], &beat(&node, "b1", "running"));
    clock.advance_secs(25); // one beat missed, the next one late
    collector.wait_for_sweeps(2);
    collector.post("/api/agent/heartbeat", &[], &beat(&node, "b1", "running"));
    collector.post("/api/agent/heartbeat", &[], &beat(&node, "b1", "stopping"));
    clock.advance_secs(6 * 3600);
    collector.wait_for_sweeps(2);
    assert_no_alert(&collector);
    assert!(receiver.hits().is_empty(), "{:#?}", receiver.hits());
    let view = collector.get(&format!("/api/nodes/{node}"), &collector.api_key());
    assert_eq!(view.field("status"), "stopped");
    let events = collector.get(&format!("/api/events?node={node}"), &collector.api_key());
    assert!(events.body.contains(r#""kind":"stopped""#) && !events.body.contains("offline"), "{}", events.body);
}

#[test]
fn a_node_that_stays_away_pages_once_reminds_on_schedule_and_recovers_once() {
    let Watch { _temp, receiver, clock, collector } = watch(one_webhook, &["--remind-hours", "1"]);
    let node = new_node_id();
    collector.post("/api/agent/heartbeat", &[], &beat(&node, "b1", "running"));
    let kinds = |n| -> Vec<String> {
        let hits = receiver.wait_for(n);
        hits.iter().map(|h| h.body.split(r#""kind":""#).nth(1).unwrap().split('"').next().unwrap().to_owned()).collect()
    };
    clock.advance_secs(45);
    assert_eq!(kinds(1), ["offline"]);
    clock.advance_secs(1800);
    collector.wait_for_sweeps(2);
    assert_eq!(alert_count(&collector), 1, "reminded early");
    clock.advance_secs(1800);
    assert_eq!(kinds(2), ["offline", "reminder"]);
    clock.advance_secs(3600);
    assert_eq!(kinds(3), ["offline", "reminder", "reminder"]);
    collector.post("/api/agent/heartbeat", &[], &beat(&node, "b1", "running"));
    assert_eq!(kinds(4), ["offline", "reminder", "reminder", "recovered"]);
    clock.advance_secs(3 * 3600);
    collector.post("/api/agent/heartbeat", &[], &beat(&node, "b1", "running"));
    collector.wait_for_sweeps(2);
    assert_eq!(alert_count(&collector), 4, "no alert for a node that was fine");
    assert_eq!(receiver.hits().len(), 4, "{:#?}", receiver.hits());
}

/// A store on a test clock whose one webhook channel points at a loopback port where
/// nobody listens yet (`Receiver::start_on` opens it).
struct Unheard {
    temp: tempfile::TempDir,
    port: SocketAddr,
    clock: TestClock,
}

impl Unheard {
    fn new() -> Unheard {
        let temp = tempfile::tempdir().unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap(); // closed at once
        let clock = TestClock::new(temp.path());
        let conf = format!("[channel hook]\ntype = webhook\nurl = http://{port}/webhook\n");
        std::fs::write(temp.path().join("one.conf"), conf).unwrap();
        Unheard { temp, port, clock }
    }

    /// Starts a collector on the store (again, after a kill).
    fn collector(&self) -> Collector {
        let conf = self.temp.path().join("one.conf");
        let args = ["--allow-anonymous", "--alerts", conf.to_str().unwrap()];
        Collector::start_with_env("127.0.0.1:0", &self.temp.path().join("db"), &args, &[self.clock.env()])
    }
}

/// The alert is in the outbox on disk before anyone is told; a SIGKILL before delivery
/// does not lose it, and it is delivered once after the restart.
#[test]
fn kill_9_between_the_state_change_and_delivery_still_delivers_once() {
    let unheard = Unheard::new();
    let (port, clock) = (unheard.port, &unheard.clock);
    let mut collector = unheard.collector();
    let key = collector.api_key();
    let node = new_node_id();
    collector.post("/api/agent/heartbeat", &[], &beat(&node, "b1", "running"));
    clock.advance_secs(45);
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !collector.get("/api/alerts", &key).body.contains(r#""attempts":1"#) {
        assert!(std::time::Instant::now() < deadline, "the offline alert was never attempted");
        std::thread::sleep(Duration::from_millis(100));
    }
    collector.kill9();

    let receiver = Receiver::start_on(&port.to_string());
    let _collector = unheard.collector();
    clock.advance_secs(5); // past the retry's backoff
    let hits = receiver.wait_for(1);
    assert!(hits[0].body.contains(r#""kind":"offline""#), "{}", hits[0].body);
    wait_until_settled(&_collector);
    assert_eq!(receiver.hits().len(), 1, "delivered more than once: {:#?}", receiver.hits());
}

/// A channel that was down while a node went offline and came back hears the two in that
/// order, whichever one's retry comes first: a recovery posted before its offline alert
/// would leave Alertmanager firing for a node that is back.
#[test]
fn after_a_channel_outage_the_offline_alert_still_comes_before_the_recovery() {
    let unheard = Unheard::new();
    let (port, clock) = (unheard.port, &unheard.clock);
    let collector = unheard.collector();
    let key = collector.api_key();
    let node = new_node_id();
    collector.post("/api/agent/heartbeat", &[], &beat(&node, "b1", "running"));
    clock.advance_secs(45);
    // The offline alert fails three times, so its next try is about 4 s away…
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !collector.get("/api/alerts", &key).body.contains(r#""attempts":3"#) {
        assert!(std::time::Instant::now() < deadline, "the offline alert was not tried three times");
        clock.advance_secs(1);
        std::thread::sleep(Duration::from_millis(600));
    }
    // …while the recovery, made now, would be tried within about a second.
    collector.post("/api/agent/heartbeat", &[], &beat(&node, "b1", "running"));
    let receiver = Receiver::start_on(&port.to_string());
    clock.advance_secs(2);
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(receiver.hits().len(), 0, "the recovery went before its offline alert: {:#?}", receiver.hits());
    clock.advance_secs(10);
    let kinds: Vec<String> = receiver
        .wait_for(2)
        .iter()
        .map(|h| h.body.split(r#""kind":""#).nth(1).unwrap().split('"').next().unwrap().to_owned())
        .collect();
    assert_eq!(kinds, ["offline", "recovered"]);
    wait_until_settled(&collector);
    assert_eq!(receiver.hits().len(), 2, "{:#?}", receiver.hits());
}

/// An alert a channel refuses for itself (a 400, say: it will never take it) does not hold
/// up the node's next alerts on that channel while it is retried; and once the recovery
/// that ends it has gone out, it is dropped, not sent after it (Alertmanager would then
/// keep the node that is back firing for a week).
#[test]
fn an_alert_the_channel_refuses_does_not_hold_up_the_next() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap();
    let heard: std::sync::Arc<std::sync::Mutex<Vec<String>>> = Default::default();
    let record = heard.clone();
    let mended = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let takes_all = mended.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut reader = std::io::BufReader::new(stream);
            let mut head = String::new();
            let mut length = 0;
            while std::io::BufRead::read_line(&mut reader, &mut head).unwrap_or(0) > 2 {
                let line = head.lines().last().unwrap_or("").to_ascii_lowercase();
                if let Some(v) = line.strip_prefix("content-length:") {
                    length = v.trim().parse().unwrap();
                }
            }
            let mut body = vec![0; length];
            let _ = std::io::Read::read_exact(&mut reader, &mut body);
            let body = String::from_utf8_lossy(&body).into_owned();
            let refused = body.contains(r#""kind":"offline""#) && !takes_all.load(std::sync::atomic::Ordering::SeqCst);
            let answer: &[u8] = if refused {
                b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            } else {
                b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            };
            record.lock().unwrap().push(body);
            let _ = std::io::Write::write_all(reader.get_mut(), answer);
        }
    });
    let Watch { _temp, receiver: _, clock, collector } = watch(move |dir, _| one_webhook(dir, port), &[]);
    let node = new_node_id();
    collector.post("/api/agent/heartbeat", &[], &beat(&node, "b1", "running"));
    clock.advance_secs(45);
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while heard.lock().unwrap().is_empty() {
        assert!(std::time::Instant::now() < deadline, "the offline alert was never tried");
        std::thread::sleep(Duration::from_millis(50));
    }
    collector.post("/api/agent/heartbeat", &[], &beat(&node, "b1", "running"));
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !heard.lock().unwrap().iter().any(|b| b.contains(r#""kind":"recovered""#)) {
        assert!(std::time::Instant::now() < deadline, "the recovery waited behind the refused offline alert");
        std::thread::sleep(Duration::from_millis(50));
    }
    // The channel takes everything now, and the refused offline alert is due again (its
    // first retries come seconds apart), while the node keeps beating.
    mended.store(true, std::sync::atomic::Ordering::SeqCst);
    let offline_tries = || heard.lock().unwrap().iter().filter(|b| b.contains(r#""kind":"offline""#)).count();
    let tried = offline_tries();
    for _ in 0..3 {
        clock.advance_secs(20);
        collector.post("/api/agent/heartbeat", &[], &beat(&node, "b1", "running"));
    }
    let key = collector.api_key();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let alerts = send(collector.addr, "GET", "/api/alerts", &[("Authorization", &format!("Bearer {key}"))], b"");
        if alerts.body.contains(r#""state":"dropped""#) {
            assert!(alerts.body.contains("a later word on the same, was sent first"), "{}", alerts.body);
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the ended offline alert was not dropped: {}", alerts.body);
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(offline_tries(), tried, "the offline alert was sent after its recovery");
}

#[test]
fn alert_test_reports_what_each_channel_answered() {
    let temp = tempfile::tempdir().unwrap();
    let receiver = Receiver::start();
    let conf = alerts_file(temp.path(), receiver.addr);
    let out = std::process::Command::new(collector_bin())
        .args(["alert", "test", "--alerts", conf.to_str().unwrap()])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    for channel in ["hook", "phone", "discord", "slack", "gotify", "am", "kitchen", "reboots"] {
        assert!(stdout.contains(&format!("{channel}: 200 OK")), "{channel} missing from {stdout}");
    }
    assert_eq!(receiver.hits().len(), 8);

    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    std::fs::write(&conf, format!("[channel gone]\ntype = slack\nurl = http://{closed}/x\n")).unwrap();
    let out = std::process::Command::new(collector_bin())
        .args(["alert", "test", "--alerts", conf.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains("gone: FAILED: cannot reach"));
}

#[test]
fn a_mistake_in_the_channels_file_names_its_line() {
    let temp = tempfile::tempdir().unwrap();
    let conf = temp.path().join("bad.conf");
    std::fs::write(&conf, "[channel a]\nurl = https://x\ntype = pager\n").unwrap();
    let out = std::process::Command::new(collector_bin())
        .args(["serve", "--listen", "127.0.0.1:0", "--alerts", conf.to_str().unwrap(), "--data-dir"])
        .arg(temp.path().join("db"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "a configuration error exits 2, like bad usage");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("bad.conf: line 3: unknown channel type `pager`"), "{stderr}");
}

#[test]
fn a_node_with_its_own_grace_pages_later_and_the_running_collector_heeds_it() {
    let Watch { _temp, receiver, clock, collector } = watch(one_webhook, &[]);
    let node = new_node_id();
    collector.post("/api/agent/heartbeat", &[], &beat(&node, "b1", "running"));
    // As the API: 0 or 5 s to a week; and what a grace under 2 intervals comes to is said.
    let out = collector.admin_with_input(&["node", "set", &node, "--grace-secs", "3"], "");
    assert_eq!(out.status.code(), Some(2), "{}", String::from_utf8_lossy(&out.stderr));
    let said = collector.admin(&["node", "set", &node, "--grace-secs", "5"]);
    assert!(said.contains("5 s of grace; it beats every 10 s") && said.contains("it gets 20 s"), "{said}");
    let said = collector.admin(&["node", "set", &node, "--grace-secs", "600"]);
    assert!(said.contains("600 s of grace"), "{said}");
    clock.advance_secs(300); // far past the default (30 s + 10 s), well within 600 s
    collector.wait_for_sweeps(2);
    assert_no_alert(&collector);
    assert!(receiver.hits().is_empty(), "paged despite the node's own grace: {:?}", receiver.hits());
    assert_eq!(collector.get(&format!("/api/nodes/{node}"), &collector.api_key()).field("status"), "late");
    clock.advance_secs(311); // 611 s of silence: past 600 s of grace plus one 10 s interval
    let hits = receiver.wait_for(1);
    assert!(
        hits[0].body.contains(r#""kind":"offline""#) && hits[0].body.contains("no heartbeat for 611 s"),
        "{}",
        hits[0].body
    );
}

/// The `at` of a webhook body, in Unix ms.
fn alert_at(body: &str) -> i64 {
    let at = body.split(r#""at":""#).nth(1).unwrap().split('"').next().unwrap();
    hearth_wire::parse_rfc3339(at).unwrap()
}

/// Down for 300 s, the collector comes back to a node it last heard from as it went: that
/// time counts against no node, so the node gets a fresh grace from the start, and the
/// offline alert says the collector was away.
#[test]
fn a_restarted_collector_gives_every_node_a_fresh_grace_and_says_it_was_away() {
    let temp = tempfile::tempdir().unwrap();
    let receiver = Receiver::start();
    let clock = TestClock::new(temp.path());
    let conf = one_webhook(temp.path(), receiver.addr);
    let args = ["--allow-anonymous", "--alerts", conf.to_str().unwrap()];
    let dir = temp.path().join("db");
    let mut collector = Collector::start_with_env("127.0.0.1:0", &dir, &args, &[clock.env()]);
    let node = new_node_id();
    assert_eq!(collector.post("/api/agent/heartbeat", &[], &beat(&node, "b1", "running")).status, 200);
    collector.kill9();

    clock.advance_secs(300);
    let restarted_at = clock.now_ms();
    let mut collector = Collector::start_with_env("127.0.0.1:0", &dir, &args, &[clock.env()]);
    // Nor does any view call it offline meanwhile: it is late, not yet heard from.
    let key = collector.api_key();
    assert_eq!(collector.get(&format!("/api/nodes/{node}"), &key).field("status"), "late");
    let metrics = send(collector.addr, "GET", "/metrics", &[], b"").body;
    assert!(metrics.contains("hearth_nodes{status=\"offline\"} 0\n"), "{metrics}");
    let out = std::process::Command::new(collector_bin())
        .args(["nodes", "--data-dir"])
        .arg(&dir)
        .env(clock.env().0, clock.env().1)
        .output()
        .unwrap();
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(table.contains("late") && !table.contains("offline"), "{table}");
    clock.advance_secs(41); // grace (30 s) and one interval, counted from the start
    let hits = receiver.wait_for(1);
    assert!(hits[0].body.contains(r#""kind":"offline""#), "{}", hits[0].body);
    assert!(
        alert_at(&hits[0].body) >= restarted_at + 40_000,
        "paged {} ms after the start, before a fresh grace ran out: {}",
        alert_at(&hits[0].body) - restarted_at,
        hits[0].body
    );
    assert!(hits[0].body.contains("the collector itself was not running for 300 s of that"), "{}", hits[0].body);
    assert_eq!(receiver.hits().len(), 1, "{:#?}", receiver.hits());
    assert_eq!(collector.get(&format!("/api/nodes/{node}"), &key).field("status"), "offline");

    // Declared offline, it stays so through the next restart.
    collector.kill9();
    let collector = Collector::start_with_env("127.0.0.1:0", &dir, &args, &[clock.env()]);
    assert_eq!(collector.get(&format!("/api/nodes/{node}"), &key).field("status"), "offline");
}

/// A collector that stops running without exiting (SIGSTOP here; a suspended VM, or a
/// clock stepped forward, look the same to it: `clock::Running`) notices when it runs
/// again, and blames nobody for the time it was not running: every node gets a fresh
/// grace, as after a restart. On the real clock: a test clock's steps are no absence.
#[test]
fn a_collector_that_was_stopped_blames_nobody_for_it() {
    let temp = tempfile::tempdir().unwrap();
    let receiver = Receiver::start();
    let conf = one_webhook(temp.path(), receiver.addr);
    let args = ["--allow-anonymous", "--alerts", conf.to_str().unwrap(), "--grace-secs", "10"];
    let collector = Collector::start_with_env("127.0.0.1:0", &temp.path().join("db"), &args, &[]);
    let node = new_node_id();
    // Every 5 s: offline 15 s after its last heartbeat (grace 10 s, then one interval).
    let v1 = v1_heartbeat(&node);
    let body = format!("{},\"interval_secs\":5}}", &v1[..v1.len() - 1]);
    assert_eq!(collector.post("/api/agent/heartbeat", &[], &body).status, 200);
    collector.wait_for_sweeps(1);
    let pid = collector.pid().to_string();
    let signal = |sig: &str| assert!(std::process::Command::new("kill").args([sig, &pid]).status().unwrap().success());
    signal("-STOP");
    std::thread::sleep(Duration::from_secs(17));
    signal("-CONT");
    collector.wait_for_sweeps(2);
    assert_no_alert(&collector);
    let key = collector.api_key();
    assert_eq!(collector.get(&format!("/api/nodes/{node}"), &key).field("status"), "late");
    assert!(receiver.hits().is_empty(), "{:#?}", receiver.hits());
}

/// `nodes` judges with the grace `serve` runs with, and reads only a store that exists.
#[test]
fn nodes_agrees_with_the_api_and_refuses_a_missing_store() {
    let Watch { _temp, receiver: _r, clock, collector } = watch(one_webhook, &["--grace-secs", "600"]);
    let node = new_node_id();
    collector.post("/api/agent/heartbeat", &[], &beat(&node, "b1", "running"));
    clock.advance_secs(100); // past the default grace (30 s), well within 600 s
    assert_eq!(collector.get(&format!("/api/nodes/{node}"), &collector.api_key()).field("status"), "late");
    let nodes = |extra: &[&str]| {
        let out = std::process::Command::new(collector_bin())
            .args(["nodes", "--json", "--data-dir"])
            .arg(&collector.data_dir)
            .args(extra)
            .env(clock.env().0, clock.env().1)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    };
    assert!(nodes(&[]).contains(r#""status":"late""#), "{}", nodes(&[]));
    assert!(nodes(&["--grace-secs", "50"]).contains(r#""status":"offline""#), "a flag overrides the stored grace");

    let missing = _temp.path().join("elsewhere");
    let out = std::process::Command::new(collector_bin()).args(["nodes", "--data-dir"]).arg(&missing).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains(missing.to_str().unwrap()) && stderr.contains("--data-dir"), "{stderr}");
    assert!(!missing.exists(), "a read command created a store");
}

/// With --pending-alert-secs, a node enrolled and never heard from pages once; its first
/// heartbeat is its recovery.
#[test]
fn a_node_that_never_shows_up_pages_when_asked_to() {
    let Watch { _temp, receiver, clock, collector } = watch(one_webhook, &["--pending-alert-secs", "600"]);
    let token = collector.admin(&["token", "create", "--ttl", "1000d"]);
    let r = collector.post("/api/agents/enroll", &[], &format!(r#"{{"token":"{token}","hostname":"cam-3"}}"#));
    assert_eq!(r.status, 200, "{}", r.body);
    let (node, agent_token) = (r.field("node_id"), r.field("agent_token"));
    let enrolled_at = clock.now_ms();
    clock.advance_secs(601);
    let hits = receiver.wait_for(1);
    assert!(
        hits[0].body.contains(r#""kind":"pending""#) && hits[0].body.contains("never heard from"),
        "{}",
        hits[0].body
    );
    assert!(alert_at(&hits[0].body) >= enrolled_at + 600_000, "{}", hits[0].body);
    let auth = format!("Bearer {agent_token}");
    let first = collector.post("/api/agent/heartbeat", &[("Authorization", &auth)], &beat(&node, "b1", "running"));
    assert_eq!(first.status, 200, "{}", first.body);
    let hits = receiver.wait_for(2);
    assert!(hits[1].body.contains(r#""kind":"recovered""#) && hits[1].body.contains("first time"), "{}", hits[1].body);
}

/// A channel's url is a secret: errors show its scheme and host, never its path or password.
#[test]
fn delivery_errors_never_show_a_channel_url() {
    let temp = tempfile::tempdir().unwrap();
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let conf = temp.path().join("secret.conf");
    std::fs::write(
        &conf,
        format!("[channel team]\ntype = discord\nurl = http://hearth:pw-s3cret@{closed}/api/webhooks/1/tok-s3cret\n"),
    )
    .unwrap();
    let clock = TestClock::new(temp.path());
    let log = temp.path().join("collector.log");
    let args = ["--allow-anonymous", "--alerts", conf.to_str().unwrap()];
    let collector = Collector::start_logged("127.0.0.1:0", &temp.path().join("db"), &args, &[clock.env()], Some(&log));
    let key = collector.api_key();
    collector.post("/api/agent/heartbeat", &[], &beat(&new_node_id(), "b1", "running"));
    clock.advance_secs(45);
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let alerts = loop {
        let alerts = collector.get("/api/alerts", &key).body;
        if alerts.contains(r#""attempts":1"#) {
            break alerts;
        }
        assert!(std::time::Instant::now() < deadline, "the offline alert was never attempted: {alerts}");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(alerts.contains(&format!("cannot reach http://{closed}")), "{alerts}");
    let out = std::process::Command::new(collector_bin())
        .args(["alert", "test", "--alerts", conf.to_str().unwrap()])
        .output()
        .unwrap();
    let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(said.contains(&format!("team: FAILED: cannot reach http://{closed}")), "{said}");
    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(logged.contains("cannot reach"), "{logged}");
    for (what, text) in [("GET /api/alerts", &alerts), ("alert test", &said), ("the log", &logged)] {
        assert!(!text.contains("s3cret"), "{what} shows the channel's secret: {text}");
    }

    // A receiver that echoes the request in its refusal (Express: `Cannot POST /path`, or
    // the headers back), in its body or its status line, is shown what it said, without the
    // secrets it echoed; and an error page that names the url over and over does not get
    // half a secret shown where what is shown is cut.
    let echo = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let echo_addr = echo.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in echo.incoming().flatten() {
            let mut reader = std::io::BufReader::new(stream);
            let mut head = String::new();
            while std::io::BufRead::read_line(&mut reader, &mut head).unwrap_or(0) > 2 && !head.ends_with("\r\n\r\n") {}
            let path = head.split_whitespace().nth(1).unwrap_or("").to_owned();
            let body = if path.contains("long") {
                format!("{}{path}", format!("{path} ").repeat(999 / (path.len() + 1)))
            } else {
                format!("Cannot POST {path}\n{head}")
            };
            let answer = format!(
                "HTTP/1.1 404 Not Found {path}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = std::io::Write::write_all(reader.get_mut(), answer.as_bytes());
        }
    });
    let conf = temp.path().join("echo.conf");
    std::fs::write(
        &conf,
        format!(
            "[channel echo]\ntype = slack\nurl = http://{echo_addr}/services/T0/B0/slack-s3cret\n\n\
             [channel phone]\ntype = ntfy\nurl = http://{echo_addr}/topic\ntoken = tk_ntfy-s3cret\n\n\
             [channel long]\ntype = discord\nurl = http://{echo_addr}/api/webhooks/123/long-{LONG_SECRET}\n"
        ),
    )
    .unwrap();
    let out =
        std::process::Command::new(collector_bin()).args(["alert", "test", "--alerts"]).arg(&conf).output().unwrap();
    let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(said.contains("answered 404 Not Found [hidden]: Cannot POST "), "{said}");
    assert!(!said.contains("s3cret"), "alert test shows what the receiver echoed of a secret: {said}");
    assert!(said.contains("long: FAILED"), "{said}");
    assert!(!said.contains(&LONG_SECRET[..8]), "alert test shows part of a secret: {said}");
}

/// A Discord-style webhook secret, long enough that a page echoing its url 14 times is
/// 1,000 characters long in the middle of the 15th.
const LONG_SECRET: &str = "AbCdEfGhIjKlMnOpQrStUvWxYz0123456789AbCdEfGh";

/// A url with `user:password@` is sent with `Authorization: Basic`, not resolved as a host;
/// `alert test` reads the channels file the last `serve` on the data directory read.
#[test]
fn alert_test_uses_the_file_serve_uses_and_basic_auth_from_the_url() {
    let temp = tempfile::tempdir().unwrap();
    let receiver = Receiver::start();
    let conf = temp.path().join("served.conf");
    let url = format!("http://hearth:pa%40ss@{}/am", receiver.addr);
    std::fs::write(&conf, format!("[channel am]\ntype = alertmanager\nurl = {url}\n")).unwrap();
    let dir = temp.path().join("db");
    drop(Collector::start_in(&dir, &["--alerts", conf.to_str().unwrap()]));
    let out = std::process::Command::new(collector_bin())
        .args(["alert", "test", "--data-dir"])
        .arg(&dir)
        .env_remove("HEARTH_ALERTS")
        .output()
        .unwrap();
    let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{said}");
    assert!(said.contains("am: 200 OK") && said.contains("served.conf"), "{said}");
    let hits = receiver.wait_for(1);
    assert_eq!(hits[0].path, "/am/api/v2/alerts");
    assert!(hits[0].head.contains("Authorization: Basic aGVhcnRoOnBhQHNz"), "{}", hits[0].head);

    let out = std::process::Command::new(collector_bin())
        .args(["alert", "test", "--data-dir"])
        .arg(temp.path().join("nothing-here"))
        .env_remove("HEARTH_ALERTS")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    // Unless this machine has /etc/hearth/alerts.conf, nothing is configured.
    if !Path::new("/etc/hearth/alerts.conf").exists() {
        assert!(!out.status.success() && stderr.contains("--alerts"), "{stderr}");
    }
}

/// A heartbeat from `node` whose 64 checks all pass or all fail.
fn beat_with_checks(node: &str, ok: bool) -> String {
    let checks: Vec<String> = (0..64)
        .map(|i| format!(r#"{{"name":"check-{i}","ok":{ok},"detail":"{}"}}"#, if ok { "active" } else { "inactive" }))
        .collect();
    let base = beat(node, "b1", "running");
    format!(r#"{},"checks":[{}]}}"#, &base[..base.len() - 1], checks.join(","))
}

/// A node flipping 64 checks every heartbeat, with its channel down, used to add 64 alerts
/// per heartbeat to the outbox. Now checks failing together are one alert, and past the
/// flap limit the node is reported as flapping once.
#[test]
fn a_node_flapping_64_checks_cannot_flood_the_outbox() {
    let temp = tempfile::tempdir().unwrap();
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let conf = temp.path().join("down.conf");
    std::fs::write(&conf, format!("[channel hook]\ntype = webhook\nurl = http://{closed}/hook\n")).unwrap();
    let clock = TestClock::new(temp.path());
    let args = ["--allow-anonymous", "--alerts", conf.to_str().unwrap()];
    let collector = Collector::start_with_env("127.0.0.1:0", &temp.path().join("db"), &args, &[clock.env()]);
    let node = new_node_id();
    for i in 0..40 {
        let r = collector.post("/api/agent/heartbeat", &[], &beat_with_checks(&node, i % 2 == 0));
        assert_eq!(r.status, 200, "{}", r.body);
        clock.advance_secs(10);
    }
    let alerts = collector.get("/api/alerts?limit=1000", &collector.api_key()).body;
    let kinds: Vec<&str> = alerts.split(r#""kind":""#).skip(1).map(|rest| rest.split('"').next().unwrap()).collect();
    assert_eq!(
        kinds.iter().rev().copied().collect::<Vec<_>>(),
        ["check_failed", "check_recovered", "check_failed", "check_recovered", "check_failed", "flapping"],
        "{alerts}"
    );
    assert!(alerts.contains("64 checks are failing: check-0 (inactive), check-1 (inactive)"), "{alerts}");
}

/// A channel that answers with a redirect gets an error, and the alert (with any Basic
/// credentials) never reaches where the redirect pointed.
#[test]
fn a_channel_redirect_is_not_followed() {
    use std::io::{Read, Write};
    let temp = tempfile::tempdir().unwrap();
    let elsewhere = Receiver::start();
    let redirector = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = redirector.local_addr().unwrap();
    let location = format!("http://{}/stolen", elsewhere.addr);
    let server = std::thread::spawn(move || {
        let (mut s, _) = redirector.accept().unwrap();
        s.set_read_timeout(Some(std::time::Duration::from_secs(5))).unwrap();
        let mut buf = [0u8; 4096];
        let _ = s.read(&mut buf);
        let answer = format!("HTTP/1.1 307 Temporary Redirect\r\nLocation: {location}\r\nContent-Length: 0\r\n\r\n");
        s.write_all(answer.as_bytes()).unwrap();
    });
    let conf = temp.path().join("alerts.conf");
    let url = format!("http://hearth:secret@{addr}/hook");
    std::fs::write(&conf, format!("[channel hook]\ntype = webhook\nurl = {url}\n")).unwrap();
    let out = std::process::Command::new(collector_bin())
        .args(["alert", "test", "--alerts"])
        .arg(&conf)
        .arg("--data-dir")
        .arg(temp.path().join("db"))
        .output()
        .unwrap();
    server.join().unwrap();
    let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(said.contains("redirect"), "{said}");
    assert!(!said.contains("secret") && !said.contains("/stolen"), "{said}");
    // The redirect's target heard nothing (the command sent what it sends before it exited).
    assert!(elsewhere.hits().is_empty(), "the alert followed the redirect");
}

/// Deleting a node that is fine tells nobody; deleting one that is offline says so once,
/// after its offline alert, so that whoever heard of the outage hears it is over.
#[test]
fn deleting_a_node_tells_only_when_something_was_told_of_it() {
    let Watch { _temp, receiver, clock, collector } = watch(one_webhook, &[]);
    let auth = format!("Bearer {}", collector.api_key());
    let delete = |node: &str| {
        let answer = send(collector.addr, "DELETE", &format!("/api/nodes/{node}"), &[("Authorization", &auth)], b"");
        assert_eq!(answer.status, 200, "{}", answer.body);
    };
    let fine = new_node_id();
    collector.post("/api/agent/heartbeat", &[], &beat(&fine, "b1", "running"));
    delete(&fine);
    assert_no_alert(&collector);

    let gone = new_node_id();
    collector.post("/api/agent/heartbeat", &[], &beat(&gone, "b1", "running"));
    clock.advance_secs(45);
    receiver.wait_for(1);
    delete(&gone);
    let hits = receiver.wait_for(2);
    assert!(hits[0].body.contains(r#""kind":"offline""#), "{}", hits[0].body);
    assert!(hits[1].body.contains(r#""kind":"deleted""#) && hits[1].body.contains(&gone), "{}", hits[1].body);
    wait_until_settled(&collector);
    assert_eq!(receiver.hits().len(), 2, "{:#?}", receiver.hits());

    // An outage a maintenance window held was told to nobody: its deletion is not either.
    let held = new_node_id();
    collector.post("/api/agent/heartbeat", &[], &beat(&held, "b1", "running"));
    let window = format!(r#"{{"reason":"rewiring","cron":"* * * * *","duration_secs":3600,"node_ids":["{held}"]}}"#);
    let made = collector.post("/api/maintenance", &[("Authorization", &auth)], &window);
    assert_eq!(made.status, 201, "{}", made.body);
    clock.advance_secs(45);
    collector.wait_for_sweeps(2);
    let node = collector.get(&format!("/api/nodes/{held}"), &collector.api_key());
    assert_eq!(node.field("status"), "offline", "{}", node.body);
    delete(&held);
    collector.wait_for_sweeps(2);
    let alerts = collector.get("/api/alerts?limit=1000", &collector.api_key()).body;
    assert!(!alerts.contains(&held), "{alerts}");
    assert_eq!(receiver.hits().len(), 2, "{:#?}", receiver.hits());
}
