//! Maintenance windows, silences and acknowledgements end to end: a real collector on a
//! test clock, its one channel a receiver on loopback. "Nothing was sent" is shown by
//! order, not by waiting: a sentinel node outside the window alerts after the moment a
//! wrong alert would have been made, and the receiver must hear the sentinel alone.

use crate::support::*;
use std::path::Path;
use std::process::Command;

const S: i64 = 1000;

/// A heartbeat every 10 s from a node with `tags`.
fn beat(node: &str, tags: &str, state: &str) -> String {
    let v1 = v1_heartbeat(node);
    format!(
        r#"{},"interval_secs":10,"tags":[{tags}],"state":"{state}","name":"n-{}"}}"#,
        &v1[..v1.len() - 1],
        &node[..4]
    )
}

fn channels(dir: &Path, receiver: std::net::SocketAddr) -> std::path::PathBuf {
    let path = dir.join("alerts.conf");
    std::fs::write(&path, format!("[channel hook]\ntype = webhook\nurl = http://{receiver}/webhook\n")).unwrap();
    path
}

/// Waits (bounded) until an event of `kind` about `node` is stored, and returns the events.
fn wait_for_event(collector: &Collector, key: &str, node: &str, kind: &str) -> String {
    for _ in 0..200 {
        let events = collector.get(&format!("/api/events?node={node}"), key).body;
        if events.contains(&format!(r#""kind":"{kind}""#)) {
            return events;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    panic!("no {kind} event about {node}");
}

fn post_json(collector: &Collector, path: &str, key: &str, body: &str) -> Response {
    let auth = format!("Bearer {key}");
    collector.post(path, &[("Authorization", &auth), ("Content-Type", "application/json")], body)
}

#[test]
fn an_outage_inside_a_window_pages_no_one_and_one_still_going_at_its_end_pages_once() {
    let temp = tempfile::tempdir().unwrap();
    let receiver = Receiver::start();
    let clock = TestClock::new(temp.path());
    let conf = channels(temp.path(), receiver.addr);
    let args = ["--allow-anonymous", "--remind-hours", "0", "--alerts", conf.to_str().unwrap()];
    let collector = Collector::start_with_env("127.0.0.1:0", &temp.path().join("db"), &args, &[clock.env()]);
    let key = collector.api_key();
    let start = clock.now_ms();
    let at = |secs: i64| hearth_wire::format_rfc3339(start + secs * S);

    // The window, from the command line: the next 10 minutes, for nodes tagged `rack`.
    let id = collector.admin(&[
        "maintenance",
        "add",
        "--start",
        &at(0),
        "--end",
        &at(600),
        "--tags",
        "rack",
        "--reason",
        "rewiring the rack",
    ]);
    let listed = collector.get("/api/maintenance", &key);
    assert!(listed.body.contains(&id) && listed.body.contains(r#""active":true"#), "{}", listed.body);
    let (back, down, sentinel) = (new_node_id(), new_node_id(), new_node_id());
    let send = |node: &str, tags: &str, state: &str| {
        assert_eq!(collector.post("/api/agent/heartbeat", &[], &beat(node, tags, state)).status, 200);
    };
    send(&back, r#""rack""#, "running");
    send(&down, r#""rack""#, "running");
    // /metrics marks both held from the start, before anything about them was held, so
    // that Prometheus rules (HearthCheckFailing) hold what the channels hold.
    let metrics = || collector.get("/metrics", &key).body;
    let has = |text: &str, family: &str, node: &str| text.contains(&format!("{family}{{node_id=\"{node}\""));
    // On /metrics/nodes too, in the same scrape as the checks HearthCheckFailing reads.
    for text in [metrics(), collector.get("/metrics/nodes", &key).body] {
        assert!(has(&text, "hearth_node_alerts_held", &back) && has(&text, "hearth_node_alerts_held", &down), "{text}");
    }

    // Both go silent and are declared offline inside the window: events, held, no alert,
    // and not down in /metrics, as the channels are not told.
    clock.set(start + 60 * S);
    let events = wait_for_event(&collector, &key, &down, "offline");
    assert!(events.contains(r#""held":"maintenance: rewiring the rack""#), "{events}");
    let text = metrics();
    assert!(!has(&text, "hearth_node_down_since_timestamp_seconds", &down), "{text}");
    wait_for_event(&collector, &key, &back, "offline");
    // One comes back inside the window, and then stops cleanly.
    clock.set(start + 100 * S);
    send(&back, r#""rack""#, "running");
    let events = wait_for_event(&collector, &key, &back, "recovered");
    assert!(events.contains("its offline alert was held"), "{events}");
    clock.set(start + 600 * S);
    send(&back, r#""rack""#, "stopping");
    // The window has ended with the other still down: one offline alert, then. The sentinel,
    // outside the window, goes offline after that moment.
    send(&sentinel, r#""attic""#, "running");
    clock.set(start + 660 * S);
    let hits = receiver.wait_for(2);
    let offline_of =
        |node: &str| hits.iter().filter(|h| h.body.contains(node) && h.body.contains(r#""kind":"offline""#)).count();
    assert_eq!(offline_of(&down), 1, "{hits:#?}");
    let released = hits.iter().find(|h| h.body.contains(&down)).unwrap();
    assert!(released.body.contains("still offline when its maintenance window"), "{}", released.body);
    assert_eq!(offline_of(&sentinel), 1, "{hits:#?}");
    let text = metrics();
    for node in [&down, &sentinel] {
        assert!(has(&text, "hearth_node_down_since_timestamp_seconds", node), "{text}");
    }
    assert!(!has(&text, "hearth_node_alerts_held", &down), "{text}");
    assert!(hits.iter().all(|h| !h.body.contains(&back)), "the node back inside the window paged: {hits:#?}");
    let alerts = collector.get("/api/alerts", &key).body;
    assert!(!alerts.contains(&back), "{alerts}");

    // Its uptime holds the time inside the window as maintenance, the rest as offline.
    let uptime = collector.get(&format!("/api/nodes/{down}/uptime"), &key).body;
    assert!(uptime.contains(r#""cause":"maintenance""#) && uptime.contains(r#""cause":"offline""#), "{uptime}");

    // Acknowledged, with an audit entry; a node that is up cannot be.
    let acked = post_json(&collector, &format!("/api/nodes/{down}/ack"), &key, "{}");
    assert_eq!(acked.status, 200, "{}", acked.body);
    post_json(&collector, &format!("/api/nodes/{back}/ack"), &key, "{}").assert_error(
        409,
        "not_alerting",
        "nothing to acknowledge",
    );
    let audit = collector.get("/api/audit", &key).body;
    for action in ["maintenance_added", "node_acknowledged"] {
        assert!(audit.contains(action), "{action} missing from {audit}");
    }
}

#[test]
fn silences_and_windows_are_kept_checked_and_audited() {
    let temp = tempfile::tempdir().unwrap();
    let clock = TestClock::new(temp.path());
    let collector = Collector::start_with_env("127.0.0.1:0", &temp.path().join("db"), &[], &[clock.env()]);
    let key = collector.api_key();
    let made =
        post_json(&collector, "/api/silences", &key, r#"{"tag":"attic","duration_secs":3600,"reason":"moving house"}"#);
    assert_eq!(made.status, 201, "{}", made.body);
    let silence = made.field("id");
    let recurring = post_json(
        &collector,
        "/api/maintenance",
        &key,
        r#"{"reason":"patch night","cron":"0 2 * * 0","duration_secs":7200,"time_zone":"Europe/Berlin"}"#,
    );
    assert_eq!(recurring.status, 201, "{}", recurring.body);
    // Jobs spell the time zone `tz`: a window takes that too.
    let body = r#"{"reason":"backups","cron":"0 3 * * *","duration_secs":3600,"tz":"Asia/Tokyo"}"#;
    let spelled = post_json(&collector, "/api/maintenance", &key, body);
    assert!(spelled.status == 201 && spelled.body.contains(r#""time_zone":"Asia/Tokyo""#), "{}", spelled.body);
    for (body, says) in [
        (r#"{"reason":"x","cron":"0 2 * *","duration_secs":7200}"#, "5 cron fields"),
        (r#"{"reason":"x","cron":"0 2 * * 0","duration_secs":7200,"time_zone":"Mars/Base"}"#, "not a time zone"),
        (r#"{"reason":"x","start":"2026-01-01T00:00:00Z"}"#, "either one-off"),
        (r#"{"cron":"0 2 * * 0","duration_secs":7200}"#, "give a reason"),
        (r#"{"reason":"x","start":"yesterday","end":"today"}"#, "RFC 3339"),
        // Windows that would hold nothing: their owner would count on them, and be paged.
        (r#"{"reason":"x","cron":"0 0 30 2 *","duration_secs":3600}"#, "names no date that exists"),
        (r#"{"reason":"x","start":"2020-01-01T00:00:00Z","end":"2020-01-02T00:00:00Z"}"#, "ended already"),
        (r#"{"reason":"x","cron":"0 2 * * 0","duration_secs":7200,"node_ids":["not-a-node"]}"#, "no node has the id"),
        // A misspelt field is refused, not dropped: this window would have covered every node.
        (
            r#"{"reason":"x","start":"2030-01-01T00:00:00Z","end":"2030-01-02T00:00:00Z","nodes":["a"]}"#,
            "no field `nodes`",
        ),
        (r#"{"reason":"x","cron":"0 2 * * 0","duration_secs":7200,"tz":"UTC","time_zone":"Asia/Tokyo"}"#, "differ"),
    ] {
        let refused = post_json(&collector, "/api/maintenance", &key, body);
        assert_eq!(refused.status, 400, "{body}: {}", refused.body);
        assert!(refused.body.contains(says) || refused.body.contains("has 4 fields"), "{body}: {}", refused.body);
    }
    post_json(&collector, "/api/silences", &key, r#"{"duration_secs":3600,"reason":"x"}"#).assert_error(
        400,
        "invalid_request",
        "one node",
    );
    let body = r#"{"tag":" ","duration_secs":3600,"reason":"x"}"#;
    post_json(&collector, "/api/silences", &key, body).assert_error(400, "invalid_request", "matches no node");
    let body = r#"{"node_id":"00000000-0000-4000-8000-000000000000","duration_secs":3600,"reason":"x"}"#;
    post_json(&collector, "/api/silences", &key, body).assert_error(400, "invalid_request", "no node has the id");
    // The command line refuses the same, before anything is stored.
    for args in [
        &[
            "maintenance",
            "add",
            "--nodes",
            "not-a-node",
            "--start",
            "2030-01-01T00:00:00Z",
            "--end",
            "2030-01-02T00:00:00Z",
            "--reason",
            "x",
        ][..],
        &["maintenance", "add", "--cron", "0 0 30 2 *", "--duration", "1h", "--reason", "x"],
        &["silence", "add", "--node", "00000000-0000-4000-8000-000000000000", "--duration", "1h", "--reason", "x"],
    ] {
        let out = collector.admin_with_input(args, "");
        let said = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?}");
        assert!(said.contains("no node has the id") || said.contains("names no date"), "{args:?}: {said}");
    }

    // Kept across a restart.
    let data = temp.path().join("db");
    drop(collector);
    let collector = Collector::start_with_env("127.0.0.1:0", &data, &[], &[clock.env()]);
    let silences = collector.get("/api/silences", &key).body;
    assert!(silences.contains(&silence) && silences.contains("moving house"), "{silences}");
    assert!(collector.get("/api/maintenance", &key).body.contains("patch night"));
    assert!(collector.admin(&["maintenance", "list"]).contains("patch night"));
    let auth = format!("Bearer {key}");
    let removed = send(collector.addr, "DELETE", &format!("/api/silences/{silence}"), &[("Authorization", &auth)], b"");
    assert_eq!(removed.status, 200, "{}", removed.body);
    assert!(!collector.get("/api/silences", &key).body.contains(&silence));
    // From the command line too; removing what is gone names the command that lists.
    let listed = collector.admin(&["maintenance", "list"]);
    let window = listed.lines().find(|l| l.contains("patch night")).and_then(|l| l.split_whitespace().next()).unwrap();
    assert_eq!(collector.admin(&["maintenance", "remove", window]), format!("maintenance window {window} removed"));
    assert!(!collector.get("/api/maintenance", &key).body.contains("patch night"));
    for (kind, id) in [("maintenance", window), ("silence", silence.as_str())] {
        let again = Command::new(collector_bin()).args([kind, "remove", id, "--data-dir"]).arg(&data).output().unwrap();
        let said = String::from_utf8_lossy(&again.stderr);
        assert_eq!(again.status.code(), Some(1), "{said}");
        assert!(
            said.contains(&format!("has the id {id}")) && said.contains(&format!("`hearth-collector {kind} list`")),
            "{said}"
        );
    }
    let audit = collector.get("/api/audit", &key).body;
    for action in ["silence_added", "silence_removed", "maintenance_added", "maintenance_removed"] {
        assert!(audit.contains(action), "{action} missing from {audit}");
    }
}
